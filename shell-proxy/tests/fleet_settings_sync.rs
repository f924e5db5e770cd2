//! Two-phase settings end to end: a settings write is verified on every node and commits a settings
//! version (`X-Miroir-Settings-Version`), reads can demand a minimum version, and a settings change made
//! directly on one node (behind Miroir's back) is repaired by the drift check.

mod common;

use common::*;
use miroir_proxy::dev::{DevFleet, DevOptions};
use serde_json::{json, Value};
use std::time::Duration;

fn version(r: &Resp) -> Option<u64> {
    r.headers
        .get("x-miroir-settings-version")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

/// Polls `GET /indexes/movies/settings` through the proxy until its version header satisfies `ok`.
async fn wait_version(api: &Api, ok: impl Fn(u64) -> bool) -> u64 {
    for _ in 0..200 {
        let r = api.get("/indexes/movies/settings").await;
        if let Some(v) = version(&r).filter(|v| ok(*v)) {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("the settings version never reached the expected value");
}

async fn node_settings(f: &DevFleet, i: usize) -> Value {
    let r = node_api(f, i).get("/indexes/movies/settings").await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.body
}

async fn wait_node_task(f: &DevFleet, i: usize, uid: u64) {
    let n = node_api(f, i);
    for _ in 0..500 {
        let t = n.get(&format!("/tasks/{uid}")).await.body;
        if matches!(t["status"].as_str(), Some("succeeded" | "failed")) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("node task {uid} never finished");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_versions_and_drift_repair() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = DevOptions::new(3, dir.path().join("m.db").to_string_lossy().into_owned());
    o.replication_factor = 2;
    // a fast drift check
    let (f, api) = fleet_tweaked(o, |c| {
        c.settings_sync.drift_check_interval_ms = 100;
        c.settings_sync.max_repair_retries = 3;
        c.settings_sync.repair_backoff_ms = 50;
        c.settings_sync.verify_timeout_ms = 5000;
    })
    .await;

    api.write_ok(
        "POST",
        "/indexes",
        Some(json!({"uid": "movies", "primaryKey": "id"})),
    )
    .await;
    api.write_ok(
        "POST",
        "/indexes/movies/documents",
        Some(Value::Array(movies(20))),
    )
    .await;
    // the drift check commits the first agreement
    let v1 = wait_version(&api, |v| v >= 1).await;

    // a settings write through the proxy: verified on every node, then a new version
    let r = api
        .call(
            "PATCH",
            "/indexes/movies/settings",
            Some(json!({"filterableAttributes": ["genre"]})),
        )
        .await;
    assert_eq!(r.status, 202, "{}", r.body);
    api.wait_task(r.body["taskUid"].as_u64().unwrap()).await;
    let v2 = wait_version(&api, |v| v > v1).await;
    assert_eq!(v2, v1 + 1);
    let settled = node_settings(&f, 0).await;
    for i in 1..3 {
        assert_eq!(node_settings(&f, i).await, settled, "node {i}");
    }
    // the version is on search answers too, and reads can demand it
    let s = send_json_with_headers(
        &api.base,
        "POST",
        "/indexes/movies/search",
        &[("X-Miroir-Min-Settings-Version", &v2.to_string())],
        Some(json!({"q": "kw1", "filter": "genre = comedy"})),
    )
    .await;
    assert_eq!(s.status, 200, "{}", s.body);
    assert_eq!(version(&s), Some(v2));
    assert!(s.headers.get("x-miroir-settings-inconsistent").is_none());
    let stale = send_json_with_headers(
        &api.base,
        "POST",
        "/indexes/movies/search",
        &[("X-Miroir-Min-Settings-Version", "999")],
        Some(json!({"q": ""})),
    )
    .await;
    assert_eq!(stale.status, 503, "{}", stale.body);
    assert_eq!(stale.body["code"], "miroir_settings_version_stale");
    let bad = send_json_with_headers(
        &api.base,
        "GET",
        "/indexes/movies/settings",
        &[("X-Miroir-Min-Settings-Version", "soon")],
        None,
    )
    .await;
    assert_eq!(bad.status, 400);
    assert_eq!(bad.body["code"], "miroir_invalid_min_settings_version");

    // drift: node 1's settings changed behind Miroir's back
    let drift = node_api(&f, 1)
        .call(
            "PATCH",
            "/indexes/movies/settings",
            Some(json!({"filterableAttributes": ["year"], "rankingRules": ["sort", "words"]})),
        )
        .await;
    assert_eq!(drift.status, 202, "{}", drift.body);
    let drift_uid = drift.body["taskUid"].as_u64().unwrap();
    wait_node_task(&f, 1, drift_uid).await;
    // (the drift check may already have repaired it: the repair is the node's next settings task)
    let mut repaired = false;
    for _ in 0..200 {
        let next = node_api(&f, 1)
            .get(&format!("/tasks/{}", drift_uid + 1))
            .await;
        if next.status == 200
            && next.body["status"] == "succeeded"
            && node_settings(&f, 1).await == settled
        {
            assert_eq!(next.body["type"], "settingsUpdate", "{}", next.body);
            repaired = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(
        repaired,
        "the drift check repaired node 1: {}",
        node_settings(&f, 1).await
    );
    // a repair is not a new version
    let r = api.get("/indexes/movies/settings").await;
    assert_eq!(version(&r), Some(v2));
    assert_eq!(r.body["filterableAttributes"], json!(["genre"]));
    // searches filter on the repaired settings again
    let s = api
        .post(
            "/indexes/movies/search",
            json!({"q": "", "filter": "genre = comedy", "limit": 100}),
        )
        .await;
    assert_eq!(s.status, 200, "{}", s.body);
    assert_eq!(s.body["hits"].as_array().unwrap().len(), 4);
    f.shutdown().await;
}
