//! Speed through the proxy: a slow replica does not slow searches down (adaptive selection and hedged
//! reads), and a filter pinning the primary key still finds exactly its documents.

mod common;

use common::*;
use miroir_sim::serve::Faults;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_replica_does_not_slow_searches_and_pinned_ids_are_found() {
    let dir = tempfile::tempdir().unwrap();
    let (f, api) = fleet(2, 2, 1, &dir.path().join("m.db")).await;
    api.write_ok(
        "POST",
        "/indexes",
        Some(json!({"uid": "movies", "primaryKey": "id"})),
    )
    .await;
    api.write_ok(
        "PATCH",
        "/indexes/movies/settings",
        Some(json!({"filterableAttributes": ["id", "genre"]})),
    )
    .await;
    api.write_ok(
        "POST",
        "/indexes/movies/documents",
        Some(Value::Array(movies(120))),
    )
    .await;
    let r = api
        .post("/indexes/movies/search", json!({"q": "movie", "limit": 0}))
        .await;
    assert_eq!(r.body["estimatedTotalHits"], 120, "{}", r.body);

    // One replica becomes very slow; both hold every shard (RF=2 over 2 nodes).
    f.nodes[0].set_faults(Faults {
        latency_ms: 1_500,
        ..Faults::default()
    });
    for round in 0..8u64 {
        let pinned = [round, round + 40, round + 80];
        let started = Instant::now();
        let r = api
            .post(
                "/indexes/movies/search",
                json!({"q": "movie", "filter": format!("id IN [{}, {}, {}] AND genre EXISTS", pinned[0], pinned[1], pinned[2])}),
            )
            .await;
        let took = started.elapsed();
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(sorted_hit_ids(&r.body), pinned.to_vec(), "round {round}");
        assert_eq!(r.body["estimatedTotalHits"], 3);
        let r2 = api
            .post(
                "/indexes/movies/search",
                json!({"q": "", "limit": 200, "filter": "genre = drama OR id = 1"}),
            )
            .await;
        assert_eq!(r2.status, 200, "{}", r2.body);
        let mut want: Vec<u64> = (0..120).filter(|i| i % 5 == 0 || *i == 1).collect();
        want.sort_unstable();
        assert_eq!(sorted_hit_ids(&r2.body), want);
        assert!(
            took < Duration::from_millis(1_200),
            "round {round}: a search waited for the slow replica ({took:?})"
        );
    }
    // documents fetch with pinned ids: exactly those, no degraded header
    let r = api
        .post(
            "/indexes/movies/documents/fetch",
            json!({"filter": "id IN [3, 77] AND genre EXISTS", "limit": 10}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.headers.get("x-miroir-degraded").is_none());
    let mut got: Vec<u64> = r.body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_u64().unwrap())
        .collect();
    got.sort_unstable();
    assert_eq!(got, vec![3, 77]);
    assert_eq!(r.body["total"], 2);
    let metrics = api.get("/metrics").await;
    let text = metrics.body.as_str().unwrap_or_default().to_string();
    if let Some(line) = text
        .lines()
        .find(|l| l.starts_with("miroir_hedged_requests_total{outcome=\"won\"}"))
    {
        let won: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
        assert!(won >= 1.0, "{line}");
    }
    f.shutdown().await;
}
