//! End to end over HTTP: model nodes, the proxy in front, documents, tasks, search.

mod common;

use common::*;
use serde_json::{json, Value};

async fn load(api: &Api, n: usize) {
    api.write_ok(
        "POST",
        "/indexes",
        Some(json!({"uid": "movies", "primaryKey": "id"})),
    )
    .await;
    api.write_ok(
        "POST",
        "/indexes/movies/documents",
        Some(Value::Array(movies(n))),
    )
    .await;
}

/// Every document by id and every keyword by search, with the copies spread over every node.
async fn every_document_is_retrievable_and_findable(nodes: usize, rf: u32, rg: u32) {
    let dir = tempfile::tempdir().unwrap();
    let (f, api) = fleet(nodes, rf, rg, &dir.path().join("m.db")).await;
    let n = 1000;
    load(&api, n).await;
    // every document by id, 8 clients at a time
    let mut set = tokio::task::JoinSet::new();
    for w in 0..8 {
        let api = api.clone();
        set.spawn(async move {
            for i in (w..n).step_by(8) {
                let r = api.get(&format!("/indexes/movies/documents/{i}")).await;
                assert_eq!(r.status, 200, "{}", r.body);
                assert_eq!(r.body["id"], i);
                assert!(r.body.get("_miroir_shard").is_none());
            }
        });
    }
    while let Some(done) = set.join_next().await {
        done.unwrap();
    }
    // spread: every node holds some documents, and the copies add up to RF x RG
    let mut copies = 0;
    for i in 0..nodes {
        let s = node_api(&f, i).get("/indexes/movies/stats").await;
        let c = s.body["numberOfDocuments"].as_u64().unwrap();
        assert!(c > 0, "node {i} holds nothing");
        copies += c;
    }
    assert_eq!(copies as usize, n * (rf * rg) as usize);
    // every keyword, through multi-search batches of 100 queries, 4 at a time
    let mut set = tokio::task::JoinSet::new();
    for chunk in 0..(n / 100) {
        let api = api.clone();
        set.spawn(async move {
            let queries: Vec<Value> = (chunk * 100..(chunk + 1) * 100)
                .map(|i| json!({"indexUid": "movies", "q": format!("kw{i}"), "limit": 1}))
                .collect();
            let r = api
                .post("/multi-search", json!({ "queries": queries }))
                .await;
            assert_eq!(r.status, 200, "{}", r.body);
            for (k, result) in r.body["results"].as_array().unwrap().iter().enumerate() {
                // `kw1` is also a prefix of `kw10`..: the exact match ranks first
                assert_eq!(result["hits"][0]["id"], chunk * 100 + k, "{result}");
            }
        });
    }
    while let Some(done) = set.join_next().await {
        done.unwrap();
    }
    let r = api.get("/indexes/movies/search?q=drama&limit=3").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["estimatedTotalHits"], 200);
    let stats = api.get("/indexes/movies/stats").await;
    assert_eq!(stats.status, 200, "{}", stats.body);
    assert_eq!(stats.body["numberOfDocuments"], n);
    assert!(stats.body["fieldDistribution"]
        .get("_miroir_shard")
        .is_none());
    f.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rf1_rg1() {
    every_document_is_retrievable_and_findable(3, 1, 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rf2_rg1() {
    every_document_is_retrievable_and_findable(3, 2, 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rf3_rg1() {
    every_document_is_retrievable_and_findable(4, 3, 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rf1_rg2() {
    every_document_is_retrievable_and_findable(4, 1, 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rf2_rg2() {
    every_document_is_retrievable_and_findable(6, 2, 2).await;
}
