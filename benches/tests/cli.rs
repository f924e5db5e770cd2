//! The `miroir-bench` binary end to end: `--json` output against a model node, usage errors, exit codes.

use miroir_sim::serve::{spawn, ModelOptions};
use serde_json::Value;
use std::process::{Command, Output};

fn bench(args: Vec<String>) -> Output {
    Command::new(env!("CARGO_BIN_EXE_miroir-bench"))
        .args(args)
        .output()
        .expect("the binary runs")
}

fn strings(s: &[&str]) -> Vec<String> {
    s.iter().map(|a| a.to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_report_against_a_model() {
    let node = spawn("127.0.0.1:0".parse().unwrap(), ModelOptions::default())
        .await
        .unwrap();
    let mut args = strings(&[
        "--setup",
        "--docs",
        "200",
        "--duration",
        "300ms",
        "--concurrency",
        "2",
        "--workload",
        "mixed",
        "--json",
        "--url",
    ]);
    args.push(node.url());
    let out = tokio::task::spawn_blocking(move || bench(args))
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let report: Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    assert_eq!(report["workload"], "mixed");
    assert_eq!(report["mode"], "closed");
    let t = &report["targets"][0];
    assert!(t["ok"].as_u64().unwrap() > 0, "{report}");
    assert_eq!(t["errors"], serde_json::json!({}));
    assert!(t["throughput"].as_f64().unwrap() > 0.0);
    let p50 = t["latencyMs"]["p50"].as_f64().unwrap();
    let p999 = t["latencyMs"]["p99.9"].as_f64().unwrap();
    assert!(p50 > 0.0 && p50 <= p999);
    assert!(t["setupS"].as_f64().unwrap() > 0.0);
    assert!(report.get("ratiosBOverA").is_none());
    node.shutdown().await;
}

#[test]
fn usage_errors_and_help() {
    let out = bench(strings(&["--help"]));
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("--compare URL2"));
    let out = bench(strings(&["--concurrency", "3"]));
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--url is required"));
    let out = bench(strings(&["--url", "https://127.0.0.1:1"]));
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("only http://"));
    // Nobody listens: the run ends by itself and exits 1 (no success).
    let out = bench(strings(&[
        "--url",
        "http://127.0.0.1:1",
        "--requests",
        "2",
        "--duration",
        "2s",
    ]));
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("errors A: connect=2"), "{stdout}");
}
