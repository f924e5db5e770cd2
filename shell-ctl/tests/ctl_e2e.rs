//! The CLI against a running proxy over model nodes: exit statuses, JSON output and the alias commands.

use miroir_proxy::dev::{self, DevOptions};
use serde_json::Value;
use std::process::Command;

/// Runs `miroir-ctl args…` against `url` with the dev admin key: (exit code, stdout, stderr).
async fn ctl(url: &str, args: &[&str]) -> (i32, String, String) {
    let url = url.to_string();
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let out = Command::new(env!("CARGO_BIN_EXE_miroir-ctl"))
            .args(&args)
            .env("MIROIR_URL", &url)
            .env("MIROIR_ADMIN_API_KEY", dev::DEV_ADMIN_KEY)
            .env_remove("MIROIR_MASTER_KEY")
            .output()
            .expect("miroir-ctl runs");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_topology_and_aliases() {
    let dir = tempfile::tempdir().unwrap();
    let f = dev::start(DevOptions::new(
        2,
        dir.path().join("m.db").to_string_lossy().into_owned(),
    ))
    .await
    .unwrap();
    let url = f.url();

    let (code, out, _) = ctl(&url, &["ready"]).await;
    assert_eq!(code, 0, "{out}");
    let (code, out, _) = ctl(&url, &["topology", "--json"]).await;
    assert_eq!(code, 0);
    let topo: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(topo["nodes"].as_array().unwrap().len(), 2);
    let (code, out, _) = ctl(&url, &["shards", "--output", "json"]).await;
    assert_eq!(code, 0);
    let shards: Value = serde_json::from_str(&out).unwrap();
    let n = shards["shards"].as_u64().unwrap();
    assert_eq!(shards["results"].as_array().unwrap().len() as u64, n);
    assert_eq!(
        shards["results"][0]["groups"][0]["nodes"]
            .as_array()
            .unwrap()
            .len() as u64,
        shards["replicationFactor"].as_u64().unwrap()
    );
    let (code, out, _) = ctl(&url, &["status"]).await;
    assert_eq!(code, 0);
    assert!(out.contains("nodes: 2 "), "{out}");
    let (code, out, _) = ctl(&url, &["completions", "bash"]).await;
    assert_eq!(code, 0);
    assert!(out.contains("miroir-ctl"), "{out}");

    // An alias to a missing index needs --force; then it can be flipped, read, listed and deleted.
    let (code, _, err) = ctl(&url, &["alias", "set", "movies", "movies_v1"]).await;
    assert_eq!(code, 1);
    assert!(err.contains("miroir_alias_target_not_found"), "{err}");
    let (code, out, err) = ctl(&url, &["alias", "set", "movies", "movies_v1", "--force"]).await;
    assert_eq!(code, 0, "{out}{err}");
    let (code, _, _) = ctl(&url, &["alias", "set", "movies", "movies_v2", "--force"]).await;
    assert_eq!(code, 0);
    let (code, out, _) = ctl(&url, &["alias", "get", "movies"]).await;
    assert_eq!(code, 0);
    assert!(
        out.contains("movies_v2") && out.contains("was movies_v1"),
        "{out}"
    );
    let (_, out, _) = ctl(&url, &["alias", "list", "--json"]).await;
    let list: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(list["total"], 1);
    let (code, _, _) = ctl(&url, &["alias", "delete", "movies"]).await;
    assert_eq!(code, 0);
    let (code, _, err) = ctl(&url, &["alias", "get", "movies"]).await;
    assert_eq!(code, 1);
    assert!(err.contains("miroir_alias_not_found"), "{err}");

    // A wrong admin key and an unreachable proxy have their own exit statuses.
    let (code, _, _) = tokio::task::spawn_blocking({
        let url = url.clone();
        move || {
            let out = Command::new(env!("CARGO_BIN_EXE_miroir-ctl"))
                .args(["--admin-key", "wrong", "ready"])
                .env("MIROIR_URL", &url)
                .output()
                .unwrap();
            (out.status.code().unwrap_or(-1), (), ())
        }
    })
    .await
    .unwrap();
    assert_eq!(code, 1);
    let (code, _, _) = ctl("http://127.0.0.1:1", &["ready"]).await;
    assert_eq!(code, 2);
    f.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_group_and_rebalance_commands() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = DevOptions::new(3, dir.path().join("m.db").to_string_lossy().into_owned());
    o.replication_factor = 1;
    let f = dev::start(o).await.unwrap();
    let url = f.url();

    let (code, out, _) = ctl(&url, &["rebalance", "status"]).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with("idle at epoch 1"), "{out}");

    // bad requests: a non-zero exit and the proxy's error code
    for (args, wanted) in [
        (vec!["node", "remove", "node-0"], "miroir_node_not_drained"),
        (vec!["node", "drain", "nope"], "miroir_node_not_found"),
        (vec!["node", "fail", "nope"], "miroir_node_not_found"),
        (
            vec!["node", "add", "n9", "http://127.0.0.1:1"],
            "miroir_node_unreachable",
        ),
        (
            vec!["node", "add", "n9", "not-a-url"],
            "miroir_invalid_node_url",
        ),
        (vec!["group", "remove", "0"], "miroir_invalid_migration"),
        (
            vec!["group", "add", "g0=http://127.0.0.1:1"],
            "miroir_node_unreachable",
        ),
    ] {
        let (code, out, err) = ctl(&url, &args).await;
        assert_eq!(code, 1, "{args:?}: {out}{err}");
        assert!(err.contains(wanted), "{args:?}: {err}");
    }
    // a malformed argument is refused by the CLI itself
    let (code, _, _) = ctl(&url, &["group", "add", "nourl"]).await;
    assert_eq!(code, 2);

    // drain node-2, watch it finish, then remove it
    let (code, out, err) = ctl(&url, &["node", "drain", "node-2"]).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.starts_with("enqueued drainNode node-2: epoch 1 -> 2"),
        "{out}"
    );
    let (code, out, err) = ctl(
        &url,
        &[
            "rebalance",
            "status",
            "--watch",
            "--interval-ms",
            "50",
            "--output",
            "json",
        ],
    )
    .await;
    assert_eq!(code, 0, "{out}{err}");
    let last: Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    assert_eq!(last["status"], "idle", "{out}");
    assert_eq!(last["epoch"], 2, "{out}");
    assert_eq!(last["last"]["status"], "succeeded", "{out}");
    let (code, out, err) = ctl(&url, &["node", "remove", "node-2", "--json"]).await;
    assert_eq!(code, 0, "{out}{err}");
    let change: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(change["toEpoch"], 3);
    let (code, out, _) = ctl(
        &url,
        &["rebalance", "status", "--watch", "--interval-ms", "50"],
    )
    .await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("idle at epoch 3"), "{out}");
    let (_, out, _) = ctl(&url, &["topology", "--json"]).await;
    let topo: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(topo["epoch"], 3);
    assert_eq!(topo["nodes"][2]["state"], "removed");
    assert_eq!(topo["nodes"][2]["shards"], 0);
    let (code, out, _) = ctl(&url, &["rebalance", "start"]).await;
    assert_eq!(code, 0, "{out}");
    f.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_exit_statuses() {
    let dir = tempfile::tempdir().unwrap();
    let f = dev::start(DevOptions::new(
        2,
        dir.path().join("m.db").to_string_lossy().into_owned(),
    ))
    .await
    .unwrap();
    let url = f.url();
    // no index yet: nothing differs
    let (code, out, err) = ctl(&url, &["verify", "--json"]).await;
    assert_eq!(code, 0, "{out} {err}");
    let body: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(body["clean"], true);
    assert_eq!(body["results"].as_array().unwrap().len(), 0);
    let (code, out, _) = ctl(&url, &["verify", "--repair"]).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with("INDEX"), "{out}");
    // an unknown index is the proxy's error
    let (code, _, err) = ctl(&url, &["verify", "--index", "nope"]).await;
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("index_not_found"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reshard_commands() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = DevOptions::new(3, dir.path().join("m.db").to_string_lossy().into_owned());
    o.shards = 4;
    let f = dev::start(o).await.unwrap();
    let url = f.url();
    // an index with documents (through the client API: no master key in the dev fleet)
    let docs: Vec<Value> = (0..60)
        .map(|i| serde_json::json!({"id": i, "title": format!("movie {i}")}))
        .collect();
    let body = serde_json::to_string(&docs).unwrap();
    let addr = url.trim_start_matches("http://").to_string();
    let status_line = tokio::task::spawn_blocking(move || {
        use std::io::{Read, Write};
        let mut c = std::net::TcpStream::connect(&addr).unwrap();
        write!(
            c,
            "POST /indexes/movies/documents?primaryKey=id HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut out = String::new();
        c.read_to_string(&mut out).unwrap();
        out.lines().next().unwrap_or_default().to_string()
    })
    .await
    .unwrap();
    assert!(status_line.contains(" 202"), "{status_line}");
    // wait until the documents are counted
    for _ in 0..200 {
        let (_, out, _) = ctl(
            &url,
            &[
                "reshard",
                "--index",
                "movies",
                "--new-shards",
                "8",
                "--dry-run",
                "--json",
            ],
        )
        .await;
        if serde_json::from_str::<Value>(&out).is_ok_and(|v| v["docsToCopy"] == 60) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let (code, out, err) = ctl(
        &url,
        &[
            "reshard",
            "--index",
            "movies",
            "--new-shards",
            "8",
            "--dry-run",
        ],
    )
    .await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.starts_with("dry run movies: S 4 -> 8, 60 document(s)"),
        "{out}"
    );

    // errors: non-zero exit with the proxy's code
    for (args, wanted) in [
        (
            vec!["reshard", "--index", "movies", "--new-shards", "4"],
            "miroir_invalid_reshard",
        ),
        (
            vec!["reshard", "--index", "nope", "--new-shards", "8"],
            "index_not_found",
        ),
        (
            vec!["reshard", "status", "--index", "movies"],
            "miroir_reshard_not_found",
        ),
        (
            vec!["reshard", "abort", "--index", "movies"],
            "miroir_reshard_not_found",
        ),
    ] {
        let (code, out, err) = ctl(&url, &args).await;
        assert_eq!(code, 1, "{args:?}: {out}{err}");
        assert!(err.contains(wanted), "{args:?}: {err}");
    }
    let (code, _, _) = ctl(&url, &["reshard", "--index", "movies"]).await;
    assert_eq!(code, 2, "a missing --new-shards is refused by the CLI");

    // start and watch to the end
    let (code, out, err) = ctl(
        &url,
        &[
            "reshard",
            "--index",
            "movies",
            "--new-shards",
            "8",
            "--throttle",
            "0",
            "--watch",
            "--interval-ms",
            "50",
            "--output",
            "json",
        ],
    )
    .await;
    assert_eq!(code, 0, "{out}{err}");
    let last: Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    // the swap ends the watch: the old index is retained (24 h by default) for a rollback
    assert_eq!(last["phase"], "retain", "{out}");
    assert_eq!(last["shards"], 8, "{out}");
    let (code, out, _) = ctl(&url, &["reshard", "status", "--index", "movies"]).await;
    assert_eq!(code, 0, "{out}");
    assert!(
        out.starts_with("retain movies: S 4 -> 8 (serving S=8)"),
        "{out}"
    );
    let (code, _, err) = ctl(&url, &["reshard", "abort", "--index", "movies"]).await;
    assert_eq!(code, 1, "too late to abort: {err}");
    assert!(err.contains("miroir_reshard_conflict"), "{err}");
    let (code, out, err) = ctl(&url, &["reshard", "rollback", "--index", "movies"]).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("(rollback)"), "{out}");
    f.shutdown().await;
}
