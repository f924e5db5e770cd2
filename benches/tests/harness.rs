//! The harness against in-process node models (`miroir_sim::serve`) on loopback: setup, search, ingest,
//! mixed, open loop and compare mode, each for well under a second with a small corpus.

use miroir_benches::harness::run::{setup, wait_task, Report};
use miroir_benches::harness::{corpus::Corpus, run, Options, Workload};
use miroir_sim::serve::{spawn, Faults, ModelHandle, ModelOptions};
use serde_json::Value;
use std::net::SocketAddr;
use std::time::Duration;

async fn model(key: Option<&str>) -> ModelHandle {
    let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
    spawn(
        addr,
        ModelOptions {
            master_key: key.map(String::from),
            tick_ms: 1,
            ..ModelOptions::default()
        },
    )
    .await
    .unwrap()
}

fn opts(url: &str) -> Options {
    let mut o = Options::new(url);
    o.docs = 300;
    o.setup_batch = 100;
    o.duration = Duration::from_millis(400);
    o.concurrency = 2;
    o.setup = true;
    o.seed = 9;
    o.task_timeout = Duration::from_secs(20);
    o
}

/// Nonzero throughput, zero errors, ordered sane percentiles.
fn assert_healthy(report: &Report, targets: usize) {
    assert_eq!(report.targets.len(), targets);
    for t in &report.targets {
        let s = &t.summary;
        assert!(s.ok > 0, "{}: no success", t.url);
        assert!(s.throughput > 0.0);
        assert_eq!(s.error_count(), 0, "{}: errors {:?}", t.url, s.errors);
        let (min, p50, p90, p99, p999, max) = (
            s.min_us.unwrap(),
            s.p50_us.unwrap(),
            s.p90_us.unwrap(),
            s.p99_us.unwrap(),
            s.p999_us.unwrap(),
            s.max_us.unwrap(),
        );
        assert!(min > 0);
        assert!(min <= p50 && p50 <= p90 && p90 <= p99 && p99 <= p999 && p999 <= max);
        assert!(max < 5_000_000, "a request took {max} us");
    }
    let j = report.to_json();
    assert!(j["targets"][0]["latencyMs"]["p99.9"].as_f64().unwrap() > 0.0);
    let table = report.to_table();
    assert!(table.contains("p99.9 ms"), "{table}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn setup_loads_the_corpus_with_settings() {
    let node = model(Some("master")).await;
    let mut o = opts(&node.url());
    o.key = Some("master".into());
    o.workload = Workload::Search;
    let report = run(&o).await.unwrap();
    assert_healthy(&report, 1);
    assert!(report.targets[0].setup_s.unwrap() > 0.0);

    // The corpus and the settings are in place: 300 documents, facet filters work.
    let t = miroir_benches::harness::client::Target::new(
        &node.url(),
        Some("master"),
        Duration::from_secs(5),
        1,
    )
    .unwrap();
    let a = t
        .send(hyper::Method::GET, "/indexes/bench/stats", None)
        .await
        .unwrap();
    assert_eq!(a.json()["numberOfDocuments"], 300, "{:?}", a.json());
    let a = t
        .send(hyper::Method::GET, "/indexes/bench/settings", None)
        .await
        .unwrap();
    let s = a.json();
    let filterable: Vec<&str> = s["filterableAttributes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for f in ["genre", "tags", "year", "rating"] {
        assert!(filterable.contains(&f), "{s}");
    }

    // Setup again on the existing index is fine (index_already_exists is tolerated).
    setup(&t, &o, &Corpus::new(o.seed)).await.unwrap();

    // Without the key, every request fails with 401 and the report says so.
    let mut no_key = o.clone();
    no_key.key = None;
    no_key.setup = false;
    no_key.requests = Some(5);
    let r = run(&no_key).await.unwrap();
    assert_eq!(r.targets[0].summary.ok, 0);
    assert_eq!(r.targets[0].summary.errors.get("401"), Some(&5));
    // And setup fails with a clear message.
    no_key.setup = true;
    let e = run(&no_key).await.unwrap_err();
    assert!(e.contains("401"), "{e}");
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_waiting_for_tasks() {
    let node = model(None).await;
    let mut o = opts(&node.url());
    o.workload = Workload::Ingest;
    o.batch = 20;
    o.wait_tasks = true;
    o.requests = Some(10);
    o.duration = Duration::from_secs(5);
    let report = run(&o).await.unwrap();
    assert_healthy(&report, 1);
    assert_eq!(report.targets[0].summary.ok, 10);
    // Ten batches of 20 new documents landed after the 300 of the corpus.
    let t =
        miroir_benches::harness::client::Target::new(&node.url(), None, Duration::from_secs(5), 1)
            .unwrap();
    let a = t
        .send(hyper::Method::GET, "/indexes/bench/stats", None)
        .await
        .unwrap();
    assert_eq!(a.json()["numberOfDocuments"], 500, "{:?}", a.json());
    // wait_task on a task that does not exist reports the status.
    let e = wait_task(&t, 999_999, Duration::from_secs(1))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("404"), "{e}");
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_open_loop_stops_by_itself() {
    let node = model(None).await;
    let mut o = opts(&node.url());
    o.workload = Workload::Mixed;
    o.search_share = 70;
    o.rate = Some(20.0);
    o.concurrency = 4;
    o.duration = Duration::from_millis(500);
    let started = std::time::Instant::now();
    let report = run(&o).await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_healthy(&report, 1);
    // 20 req/s for 0.5 s: slots due at 0, 50, ..., 450 ms, so at most 10 requests (fewer only if the
    // debug-build model is slow enough to hold all four permits).
    let n = report.targets[0].summary.requests;
    assert!((3..=10).contains(&n), "{n} requests\n{}", report.to_table());
    assert_eq!(report.to_json()["mode"], "open");
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compare_two_nodes_alternating() {
    let a = model(None).await;
    let b = model(Some("kb")).await;
    // B is slower by 25 ms per request (far above the debug model's own jitter): the ratios must show it.
    b.set_faults(Faults {
        latency_ms: 25,
        ..Faults::default()
    });
    let mut o = opts(&a.url());
    o.compare = Some(b.url());
    o.key2 = Some("kb".into());
    o.requests = Some(20);
    o.duration = Duration::from_secs(5);
    let report = run(&o).await.unwrap();
    assert_healthy(&report, 2);
    // The same operations went to both, alternating: the same count each.
    assert_eq!(report.targets[0].summary.ok, 20);
    assert_eq!(report.targets[1].summary.ok, 20);
    let ratios = report.ratios().unwrap();
    let p50 = ratios.iter().find(|(n, _)| *n == "p50").unwrap().1.unwrap();
    assert!(p50 > 1.0, "B/A p50 = {p50}");
    let j = report.to_json();
    assert!(j["ratiosBOverA"]["p99"].as_f64().unwrap() > 0.0);
    assert!(j["ratiosBOverA"]["throughput"].as_f64().unwrap() > 0.0);
    assert!(report.to_table().contains("B/A"));
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_are_counted_by_cause() {
    let node = model(None).await;
    let mut o = opts(&node.url());
    o.requests = Some(30);
    o.duration = Duration::from_secs(5);
    run(&o).await.unwrap();
    node.set_faults(Faults {
        fail_rate: 1.0,
        ..Faults::default()
    });
    o.setup = false;
    let r = run(&o).await.unwrap();
    assert_eq!(r.targets[0].summary.errors.get("503"), Some(&30));
    assert!(r.to_table().contains("errors A: 503=30"));
    // A target nobody listens on: connection errors, not a hang.
    let mut dead = Options::new("http://127.0.0.1:1");
    dead.requests = Some(3);
    dead.duration = Duration::from_secs(5);
    let r = run(&dead).await.unwrap();
    assert_eq!(r.targets[0].summary.errors.get("connect"), Some(&3));
    node.shutdown().await;
}
