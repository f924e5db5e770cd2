//! Online resharding through the HTTP proxy on model nodes: 4 → 8 shards under a live writer (no
//! acknowledged write lost, no delete resurrected, every document on exactly its owners under the new S,
//! the same search results, old task uids still resolve, the shadow name never shown), an abort during the
//! backfill, a rollback during the retention, a proxy restart mid-way, and the admin routes' bad input.

mod common;

use common::*;
use miroir_core::routing::Placement;
use miroir_core::topology::{Node, Topology};
use miroir_proxy::dev::{DevFleet, DevOptions};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const INDEX: &str = "movies";
const SHADOW: &str = "movies__miroir_reshard_1";

fn admin(api: Api) -> Api {
    with_admin_key(&api)
}

fn options(dir: &tempfile::TempDir) -> DevOptions {
    let mut o = DevOptions::new(3, dir.path().join("r.db").to_string_lossy().into_owned());
    o.shards = 4;
    o.replication_factor = 2;
    o
}

async fn start(o: DevOptions, throttle: u64, retention_ms: u64) -> (DevFleet, Api) {
    let (f, api) = fleet_tweaked(o, |c| {
        c.resharding.throttle_docs_per_sec = throttle;
        c.resharding.retention_ms = retention_ms;
    })
    .await;
    (f, admin(api))
}

/// Seeds `n` movies (titles `movie kw<i> <genre>`).
async fn seed(api: &Api, n: usize) -> BTreeMap<u64, Option<Value>> {
    seed_docs(api, INDEX, movies(n)).await
}

async fn status(api: &Api) -> Value {
    let r = api
        .get(&format!("/_miroir/indexes/{INDEX}/reshard/status"))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.body
}

/// Polls the status until `done` accepts it.
async fn wait_status(api: &Api, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let start = Instant::now();
    let mut shown = Instant::now();
    loop {
        let s = status(api).await;
        if done(&s) {
            return s;
        }
        if shown.elapsed() > Duration::from_secs(3) {
            println!("waiting until {what}: {s}");
            shown = Instant::now();
        }
        assert!(
            start.elapsed() < Duration::from_secs(90),
            "never {what}: {s}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The fixed query set whose results must not change (the writer's documents never match it): every
/// hit of each query.
async fn searches(api: &Api) -> Vec<Value> {
    let mut out = Vec::new();
    for body in [
        json!({"q": "movie", "limit": 1000}),
        json!({"q": "kw17", "limit": 1000}),
        json!({"q": "drama", "limit": 1000}),
        json!({"q": "comedy kw3", "limit": 1000}),
        json!({"q": "kw1", "limit": 1000}),
    ] {
        let r = api
            .post(&format!("/indexes/{INDEX}/search"), body.clone())
            .await;
        assert_eq!(r.status, 200, "{body}: {}", r.body);
        // equal relevance leaves the order of ties open: the hit set and the count are compared
        let ids = sorted_hit_ids(&r.body);
        out.push(json!({"ids": ids, "total": r.body["estimatedTotalHits"]}));
    }
    out
}

/// What differs between two [`searches`] results, query by query: totals and the ids only one side has.
fn search_diff(a: &[Value], b: &[Value]) -> String {
    let ids = |v: &Value| -> BTreeSet<u64> {
        v["ids"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_u64).collect())
            .unwrap_or_default()
    };
    a.iter()
        .zip(b)
        .enumerate()
        .filter(|(_, (x, y))| x != y)
        .map(|(i, (x, y))| {
            let (l, r) = (ids(x), ids(y));
            format!(
                "query {i}: totals {} vs {}, only before {:?}, only now {:?}",
                x["total"],
                y["total"],
                l.difference(&r).collect::<Vec<_>>(),
                r.difference(&l).collect::<Vec<_>>()
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// The placement of the dev fleet with `shards` shards.
fn placement(f: &DevFleet, shards: u32) -> Placement {
    let o = &f.options;
    let t = Topology {
        epoch: 1,
        shards,
        replication_factor: o.replication_factor,
        replica_groups: o.replica_groups,
        nodes: (0..f.nodes.len())
            .map(|i| {
                Node::active(
                    format!("node-{i}").as_str(),
                    f.nodes[i].url(),
                    i as u32 % o.replica_groups.max(1),
                )
            })
            .collect(),
    };
    Placement::new(&t).unwrap()
}

/// Every document of the physical `index` sits on exactly its owners under `shards`, tagged with its
/// shard, with its last acknowledged content; nothing deleted or unknown anywhere.
async fn check_placement(
    f: &DevFleet,
    index: &str,
    shards: u32,
    expected: &BTreeMap<u64, Option<Value>>,
) {
    let p = placement(f, shards);
    let mut seen: BTreeMap<u64, BTreeSet<String>> = BTreeMap::new();
    for i in 0..f.nodes.len() {
        let node = format!("node-{i}");
        for (id, doc) in node_docs(f, i, index).await {
            let shard = p.shard_for_key(&id.to_string());
            assert_eq!(
                doc["_miroir_shard"], shard,
                "document {id} on {node}: {doc}"
            );
            assert!(
                p.write_targets(shard).iter().any(|n| n.as_str() == node),
                "document {id} (shard {shard}) on {node}, which does not own it"
            );
            match expected.get(&id) {
                Some(Some(want)) => {
                    assert_eq!(doc["v"], want["v"], "document {id} on {node} is stale");
                    assert_eq!(doc["title"], want["title"], "document {id} on {node}");
                }
                _ => panic!("document {id} on {node} was deleted (or never written): {doc}"),
            }
            seen.entry(id).or_default().insert(node.clone());
        }
    }
    for (id, want) in expected {
        if want.is_none() {
            assert!(!seen.contains_key(id), "deleted document {id} resurrected");
            continue;
        }
        let owners: BTreeSet<String> = p
            .write_targets(p.shard_for_key(&id.to_string()))
            .iter()
            .map(|n| n.to_string())
            .collect();
        assert_eq!(
            seen.get(id),
            Some(&owners),
            "document {id} is not on exactly its owners"
        );
    }
}

fn live_ids(expected: &BTreeMap<u64, Option<Value>>) -> BTreeSet<u64> {
    expected
        .iter()
        .filter(|(_, d)| d.is_some())
        .map(|(id, _)| *id)
        .collect()
}

/// The index list shows `movies` once and never a shadow.
async fn check_index_list(api: &Api) {
    let r = api.get("/indexes?limit=100").await;
    assert_eq!(r.status, 200, "{}", r.body);
    let uids: Vec<&str> = r.body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["uid"].as_str().unwrap())
        .collect();
    assert_eq!(uids, vec![INDEX], "{}", r.body);
    assert_eq!(r.body["total"], 1, "{}", r.body);
    let one = api.get(&format!("/indexes/{INDEX}")).await;
    assert_eq!(one.status, 200, "{}", one.body);
    assert_eq!(one.body["uid"], INDEX);
    assert_eq!(one.body["primaryKey"], "id");
    let stats = api.get("/stats").await;
    assert_eq!(stats.status, 200, "{}", stats.body);
    let names: Vec<&String> = stats.body["indexes"].as_object().unwrap().keys().collect();
    assert_eq!(names, vec![INDEX], "{}", stats.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reshard_4_to_8_under_a_live_writer_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (f, api) = start(options(&dir), 150, 1_500).await;
    let initial = seed(&api, 400).await;
    let before = searches(&api).await;
    // a task issued before the swap
    let early = api
        .post(
            &format!("/indexes/{INDEX}/documents"),
            json!([{"id": 5000, "title": "early bird", "v": 1}]),
        )
        .await;
    assert_eq!(early.status, 202, "{}", early.body);
    let early_uid = early.body["taskUid"].as_u64().unwrap();
    api.wait_task(early_uid).await;

    let stop = Arc::new(AtomicBool::new(false));
    let writers = [
        spawn_writer(api.clone(), INDEX, "writer", 1_000, 150, Arc::clone(&stop)),
        spawn_writer(api.clone(), INDEX, "writer", 2_000, 150, Arc::clone(&stop)),
    ];
    tokio::time::sleep(Duration::from_millis(150)).await;
    let r = api
        .post(
            &format!("/_miroir/indexes/{INDEX}/reshard"),
            json!({"new_shards": 8}),
        )
        .await;
    assert_eq!(r.status, 202, "{}", r.body);
    assert_eq!(r.body["fromShards"], 4);
    assert_eq!(r.body["toShards"], 8);
    assert_eq!(r.body["throttleDocsPerSec"], 150);
    // one resharding at a time; no fleet change meanwhile; no index deletion
    let again = api
        .post(
            &format!("/_miroir/indexes/{INDEX}/reshard"),
            json!({"new_shards": 2}),
        )
        .await;
    assert_error(&again, 409, "miroir_reshard_in_progress", "invalid_request");
    let drain = api.post("/_miroir/nodes/node-0/drain", json!({})).await;
    assert_error(&drain, 409, "miroir_reshard_in_progress", "invalid_request");
    let delete = api.call("DELETE", &format!("/indexes/{INDEX}"), None).await;
    assert_error(
        &delete,
        409,
        "miroir_reshard_in_progress",
        "invalid_request",
    );
    // progress is reported during the backfill
    let s = wait_status(&api, "copying", |s| {
        s["docsCopied"].as_u64().unwrap_or(0) > 0 || s["phase"] != "create_shadow"
    })
    .await;
    assert_eq!(s["running"], true, "{s}");
    // reads during the resharding are unchanged
    assert_eq!(searches(&api).await, before, "search changed mid-way");
    let done = wait_status(&api, "done", |s| s["phase"] == "done").await;
    assert_eq!(done["running"], false, "{done}");
    assert_eq!(done["shards"], 8, "{done}");
    stop.store(true, Ordering::SeqCst);
    let mut expected = initial;
    expected.insert(
        5000,
        Some(json!({"id": 5000, "title": "early bird", "v": 1})),
    );
    let mut ops = 0;
    for w in writers {
        let (acked, n) = w.await.unwrap();
        expected.extend(acked);
        ops += n;
    }
    println!("the writers ran {ops} operations during the resharding");
    assert!(ops > 20, "the writers barely ran: {ops}");

    // through the proxy: exactly the acknowledged documents, the same search results
    assert_eq!(listed_ids(&api, INDEX).await, live_ids(&expected));
    let stats = api.get(&format!("/indexes/{INDEX}/stats")).await;
    assert_eq!(
        stats.body["numberOfDocuments"],
        live_ids(&expected).len() as u64,
        "{}",
        stats.body
    );
    assert_eq!(searches(&api).await, before, "search changed");
    // on the nodes: every document on exactly its owners under S = 8, the old index gone
    check_placement(&f, SHADOW, 8, &expected).await;
    for i in 0..f.nodes.len() {
        let r = node_api(&f, i).get(&format!("/indexes/{INDEX}")).await;
        assert_eq!(
            r.status, 404,
            "the old index remains on node {i}: {}",
            r.body
        );
    }
    // the old task still resolves; names stay the client's
    let t = api.get(&format!("/tasks/{early_uid}")).await;
    assert_eq!(t.status, 200, "{}", t.body);
    assert_eq!(t.body["status"], "succeeded");
    assert_eq!(t.body["indexUid"], INDEX);
    check_index_list(&api).await;
    // writes after the resharding go to the new index with the new S
    let w = api
        .write_ok(
            "POST",
            &format!("/indexes/{INDEX}/documents"),
            Some(json!([{"id": 7000, "title": "late", "v": 2}])),
        )
        .await;
    assert_eq!(w["indexUid"], INDEX, "{w}");
    expected.insert(7000, Some(json!({"id": 7000, "title": "late", "v": 2})));
    let settings = api
        .write_ok(
            "PATCH",
            &format!("/indexes/{INDEX}/settings"),
            Some(json!({"filterableAttributes": ["genre"]})),
        )
        .await;
    assert_eq!(settings["status"], "succeeded");
    let filtered = api
        .post(
            &format!("/indexes/{INDEX}/search"),
            json!({"q": "", "filter": "genre = drama", "limit": 1000}),
        )
        .await;
    assert_eq!(filtered.status, 200, "{}", filtered.body);
    assert_eq!(filtered.body["estimatedTotalHits"], 80, "{}", filtered.body);
    check_placement(&f, SHADOW, 8, &expected).await;
    let doc = api.get(&format!("/indexes/{INDEX}/documents/7000")).await;
    assert_eq!(doc.status, 200, "{}", doc.body);
    // a second resharding back to 4 takes a fresh generation
    let back = api
        .post(
            &format!("/_miroir/indexes/{INDEX}/reshard"),
            json!({"new_shards": 4, "throttle_docs_per_sec": 0}),
        )
        .await;
    assert_eq!(back.status, 202, "{}", back.body);
    assert_eq!(back.body["fromShards"], 8);
    wait_status(&api, "done twice", |s| s["phase"] == "done").await;
    check_placement(&f, "movies__miroir_reshard_2", 4, &expected).await;
    assert!(node_docs(&f, 0, SHADOW).await.is_empty());
    assert_eq!(listed_ids(&api, INDEX).await, live_ids(&expected));
    assert_eq!(searches(&api).await, before, "search changed");
    check_index_list(&api).await;
    // what `miroir-ctl verify` asks, on the index in force (its own node index): replicas identical
    let verify = api.post("/_miroir/verify", json!({"index": INDEX})).await;
    assert_eq!(verify.status, 200, "{}", verify.body);
    assert_eq!(verify.body["clean"], true, "{}", verify.body);
    assert_eq!(verify.body["shardsScanned"], 4, "{}", verify.body);
    f.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abort_during_the_backfill_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (f, api) = start(options(&dir), 40, 60_000).await;
    let expected = seed(&api, 300).await;
    let before = searches(&api).await;
    let r = api
        .post(
            &format!("/_miroir/indexes/{INDEX}/reshard"),
            json!({"new_shards": 6}),
        )
        .await;
    assert_eq!(r.status, 202, "{}", r.body);
    wait_status(&api, "copying", |s| {
        s["phase"] == "backfill" && s["docsCopied"].as_u64().unwrap_or(0) > 0
    })
    .await;
    let abort = api
        .post(
            &format!("/_miroir/indexes/{INDEX}/reshard/abort"),
            json!({}),
        )
        .await;
    assert_eq!(abort.status, 202, "{}", abort.body);
    let s = wait_status(&api, "aborted", |s| s["phase"] == "aborted").await;
    assert_eq!(s["shards"], 4, "{s}");
    for i in 0..f.nodes.len() {
        let r = node_api(&f, i).get(&format!("/indexes/{SHADOW}")).await;
        assert_eq!(r.status, 404, "the shadow remains on node {i}: {}", r.body);
    }
    assert_eq!(searches(&api).await, before);
    assert_eq!(listed_ids(&api, INDEX).await, live_ids(&expected));
    check_placement(&f, INDEX, 4, &expected).await;
    check_index_list(&api).await;
    // nothing left to abort or roll back
    let again = api
        .post(
            &format!("/_miroir/indexes/{INDEX}/reshard/abort"),
            json!({}),
        )
        .await;
    assert_error(&again, 404, "miroir_reshard_not_found", "invalid_request");
    f.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollback_during_the_retention_restores_the_old_index() {
    let dir = tempfile::tempdir().unwrap();
    let (f, api) = start(options(&dir), 0, 60_000).await;
    let mut expected = seed(&api, 200).await;
    let before = searches(&api).await;
    let r = api
        .post(
            &format!("/_miroir/indexes/{INDEX}/reshard"),
            json!({"new_shards": 8}),
        )
        .await;
    assert_eq!(r.status, 202, "{}", r.body);
    let early = api
        .post(
            &format!("/_miroir/indexes/{INDEX}/reshard/rollback"),
            json!({}),
        )
        .await;
    assert_error(&early, 409, "miroir_reshard_conflict", "invalid_request");
    wait_status(&api, "retained", |s| s["phase"] == "retain").await;
    // a write during the retention reaches both indexes
    api.write_ok(
        "POST",
        &format!("/indexes/{INDEX}/documents"),
        Some(json!([{"id": 9000, "title": "retained", "v": 3}])),
    )
    .await;
    expected.insert(9000, Some(json!({"id": 9000, "title": "retained", "v": 3})));
    let abort = api
        .post(
            &format!("/_miroir/indexes/{INDEX}/reshard/abort"),
            json!({}),
        )
        .await;
    assert_error(&abort, 409, "miroir_reshard_conflict", "invalid_request");
    let rollback = api
        .post(
            &format!("/_miroir/indexes/{INDEX}/reshard/rollback"),
            json!({}),
        )
        .await;
    assert_eq!(rollback.status, 202, "{}", rollback.body);
    let s = wait_status(&api, "rolled back", |s| s["phase"] == "done").await;
    assert_eq!(s["shards"], 4, "{s}");
    assert_eq!(s["rollback"], true, "{s}");
    check_placement(&f, INDEX, 4, &expected).await;
    for i in 0..f.nodes.len() {
        let r = node_api(&f, i).get(&format!("/indexes/{SHADOW}")).await;
        assert_eq!(
            r.status, 404,
            "the new index remains on node {i}: {}",
            r.body
        );
    }
    assert_eq!(searches(&api).await, before);
    assert_eq!(listed_ids(&api, INDEX).await, live_ids(&expected));
    check_index_list(&api).await;
    f.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_proxy_resumes_the_resharding() {
    let dir = tempfile::tempdir().unwrap();
    let o = options(&dir);
    let (f, api) = start(o, 100, 500).await;
    let expected = seed(&api, 400).await;
    let before = searches(&api).await;
    let r = api
        .post(
            &format!("/_miroir/indexes/{INDEX}/reshard"),
            json!({"new_shards": 8}),
        )
        .await;
    assert_eq!(r.status, 202, "{}", r.body);
    wait_status(&api, "copying", |s| {
        s["phase"] == "backfill" && s["docsCopied"].as_u64().unwrap_or(0) > 0
    })
    .await;
    // the restarted proxy cannot tell its old self from another live proxy: it takes the record over
    // once the old owner's heartbeat is older than the lease
    let configured = f.nodes.len();
    let f = restart_proxy(f, configured, |c| {
        c.resharding.throttle_docs_per_sec = 1_000;
        c.resharding.retention_ms = 500;
        c.rebalancer.lease_ms = 400;
        c.rebalancer.topology_poll_ms = 50;
    })
    .await;
    let api = admin(Api::new(f.url()));
    let s = wait_status(&api, "resumed", |s| s["resumed"] == true).await;
    // the resumed coordinator keeps the throttle it was started with
    assert_eq!(s["throttleDocsPerSec"], 100, "{s}");
    wait_status(&api, "done", |s| s["phase"] == "done").await;
    check_placement(&f, SHADOW, 8, &expected).await;
    assert_eq!(searches(&api).await, before);
    assert_eq!(listed_ids(&api, INDEX).await, live_ids(&expected));
    check_index_list(&api).await;
    f.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_reshard_routes_refuse_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let (f, api) = start(options(&dir), 100, 1_000).await;
    seed(&api, 50).await;
    let path = format!("/_miroir/indexes/{INDEX}/reshard");
    for body in [
        json!({}),
        json!([]),
        json!({"new_shards": 0}),
        json!({"new_shards": "8"}),
        json!({"new_shards": -3}),
        json!({"new_shards": 100000}),
        json!({"new_shards": 8, "throttle_docs_per_sec": "fast"}),
        json!({"new_shards": 8, "dry_run": 1}),
        json!({"new_shards": 8, "bogus": true}),
        // the same S
        json!({"new_shards": 4}),
    ] {
        let r = api.post(&path, body.clone()).await;
        assert_error(&r, 400, "miroir_invalid_reshard", "invalid_request");
    }
    let r = api
        .raw("POST", &path, Some("application/json"), b"{".to_vec())
        .await;
    assert_eq!(r.status, 400, "{}", r.body);
    let r = api.raw("POST", &path, None, b"{}".to_vec()).await;
    assert!(r.status == 415 || r.status == 400, "{}", r.body);
    let r = api
        .post("/_miroir/indexes/nope/reshard", json!({"new_shards": 8}))
        .await;
    assert_error(&r, 404, "index_not_found", "invalid_request");
    let r = api
        .post(
            "/_miroir/indexes/bad%20uid/reshard",
            json!({"new_shards": 8}),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.body);
    let r = api.get(&format!("{path}/status")).await;
    assert_error(&r, 404, "miroir_reshard_not_found", "invalid_request");
    for action in ["abort", "rollback"] {
        let r = api.post(&format!("{path}/{action}"), json!({})).await;
        assert_error(&r, 404, "miroir_reshard_not_found", "invalid_request");
    }
    let r = api.get(&format!("{path}/nope")).await;
    assert_eq!(r.status, 404);
    // no admin key
    let plain = Api::new(f.url());
    let r = plain.post(&path, json!({"new_shards": 8})).await;
    assert!(r.status == 401 || r.status == 403, "{}", r.body);
    // a dry run estimates without touching anything
    let r = api
        .post(
            &path,
            json!({"new_shards": 8, "throttle_docs_per_sec": 10, "dry_run": true}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["docsToCopy"], 50, "{}", r.body);
    assert_eq!(r.body["shadowCopies"], 100, "{}", r.body);
    assert_eq!(r.body["durationMs"], 5_000, "{}", r.body);
    assert_eq!(r.body["transientStorageFactor"], 2, "{}", r.body);
    let r = api.get(&format!("{path}/status")).await;
    assert_eq!(r.status, 404, "a dry run started something: {}", r.body);
    for i in 0..f.nodes.len() {
        let r = node_api(&f, i).get(&format!("/indexes/{SHADOW}")).await;
        assert_eq!(r.status, 404);
    }
    f.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_resharded_index_comes_back_under_its_own_name() {
    let dir = tempfile::tempdir().unwrap();
    let o = options(&dir);
    let (f, api) = start(o.clone(), 0, 200).await;
    seed(&api, 100).await;
    let r = api
        .post(
            &format!("/_miroir/indexes/{INDEX}/reshard"),
            json!({"new_shards": 8}),
        )
        .await;
    assert_eq!(r.status, 202, "{}", r.body);
    wait_status(&api, "done", |s| s["phase"] == "done").await;
    // while the index has its own S, fleet changes are refused
    let drain = api.post("/_miroir/nodes/node-0/drain", json!({})).await;
    assert_error(&drain, 409, "miroir_reshard_in_progress", "invalid_request");
    api.write_ok("DELETE", &format!("/indexes/{INDEX}"), None)
        .await;
    let gone = api.get(&format!("/indexes/{INDEX}")).await;
    assert_error(&gone, 404, "index_not_found", "invalid_request");
    for i in 0..f.nodes.len() {
        let r = node_api(&f, i).get(&format!("/indexes/{SHADOW}")).await;
        assert_eq!(r.status, 404, "node {i}: {}", r.body);
    }
    // a new index of the same name lives under its own name with the fleet's S, also after a restart
    let expected = seed(&api, 40).await;
    check_placement(&f, INDEX, 4, &expected).await;
    assert_eq!(listed_ids(&api, INDEX).await, live_ids(&expected));
    let configured = f.nodes.len();
    let f = restart_proxy(f, configured, |_| {}).await;
    let api = admin(Api::new(f.url()));
    assert_eq!(listed_ids(&api, INDEX).await, live_ids(&expected));
    check_index_list(&api).await;
    // the next resharding takes a fresh generation
    let r = api
        .post(
            &format!("/_miroir/indexes/{INDEX}/reshard"),
            json!({"new_shards": 2, "throttle_docs_per_sec": 0}),
        )
        .await;
    assert_eq!(r.status, 202, "{}", r.body);
    assert_eq!(r.body["fromShards"], 4, "{}", r.body);
    wait_status(&api, "retained", |s| s["phase"] == "retain").await;
    check_placement(&f, "movies__miroir_reshard_2", 2, &expected).await;
    f.shutdown().await;
}

/// A writer through a proxy that may refuse writes of the index while another proxy reshards it (503
/// `miroir_reshard_in_progress`): records what each acknowledged operation leaves, and how many writes
/// were acknowledged and refused.
fn spawn_tolerant_writer(
    api: Api,
    from: u64,
    ids: u64,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<(BTreeMap<u64, Option<Value>>, u64, u64)> {
    tokio::spawn(async move {
        let mut expected = BTreeMap::new();
        let (mut acked, mut refused) = (0u64, 0u64);
        let mut n = 0u64;
        let mut last = None;
        while !stop.load(Ordering::SeqCst) {
            n += 1;
            let id = from + (n * 7) % ids;
            let r = if n.is_multiple_of(5) {
                api.post(
                    &format!("/indexes/{INDEX}/documents/delete-batch"),
                    json!([id]),
                )
                .await
            } else {
                api.post(
                    &format!("/indexes/{INDEX}/documents"),
                    json!([{"id": id, "title": format!("other {id}"), "v": n}]),
                )
                .await
            };
            match r.status {
                202 => {
                    acked += 1;
                    let doc = (!n.is_multiple_of(5))
                        .then(|| json!({"id": id, "title": format!("other {id}"), "v": n}));
                    expected.insert(id, doc);
                    last = r.body["taskUid"].as_u64();
                    if acked.is_multiple_of(16) {
                        if let Some(uid) = last {
                            api.wait_task(uid).await;
                        }
                    }
                }
                503 => {
                    assert_error(&r, 503, "miroir_reshard_in_progress", "system");
                    refused += 1;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                _ => panic!("write through B: {} {}", r.status, r.body),
            }
        }
        if let Some(uid) = last {
            let t = api.wait_task(uid).await;
            assert_eq!(t["status"], "succeeded", "{t}");
        }
        (expected, acked, refused)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_proxy_follows_a_resharding_run_by_another() {
    let dir = tempfile::tempdir().unwrap();
    let tweak = |c: &mut miroir_core::config::Config| {
        c.resharding.throttle_docs_per_sec = 150;
        c.resharding.retention_ms = 300;
        c.rebalancer.topology_poll_ms = 50;
    };
    let (f, a) = fleet_tweaked(options(&dir), tweak).await;
    let a = admin(a);
    let initial = seed(&a, 400).await;
    let (proxy_b, b) = second_proxy(&f, tweak).await;
    let before = searches(&a).await;
    assert_eq!(searches(&b).await, before);

    let stop = Arc::new(AtomicBool::new(false));
    let writer_a = spawn_writer(a.clone(), INDEX, "writer", 1_000, 150, Arc::clone(&stop));
    let writer_b = spawn_tolerant_writer(b.clone(), 2_000, 150, Arc::clone(&stop));
    tokio::time::sleep(Duration::from_millis(150)).await;
    let r = a
        .post(
            &format!("/_miroir/indexes/{INDEX}/reshard"),
            json!({"new_shards": 8}),
        )
        .await;
    assert_eq!(r.status, 202, "{}", r.body);
    // B sees the resharding A runs: the status, and no second one through B
    let start = Instant::now();
    let s = loop {
        let r = b
            .get(&format!("/_miroir/indexes/{INDEX}/reshard/status"))
            .await;
        if r.status == 200 && r.body["running"] == true {
            break r.body;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "B never saw it: {}",
            r.body
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(s["toShards"], 8, "{s}");
    let topology = b.get("/_miroir/topology").await;
    assert_eq!(
        topology.body["indexes"][INDEX]["running"], true,
        "{}",
        topology.body
    );
    let again = b
        .post(
            &format!("/_miroir/indexes/{INDEX}/reshard"),
            json!({"new_shards": 2}),
        )
        .await;
    assert_error(&again, 409, "miroir_reshard_in_progress", "invalid_request");
    let delete = b.call("DELETE", &format!("/indexes/{INDEX}"), None).await;
    assert_error(
        &delete,
        409,
        "miroir_reshard_in_progress",
        "invalid_request",
    );
    // reads through B during the resharding (and across the swap) are unchanged
    let start = Instant::now();
    loop {
        let now = searches(&b).await;
        assert!(
            now == before,
            "search through B changed mid-way (phase {}): {}",
            status(&a).await["phase"],
            search_diff(&before, &now)
        );
        let one = b.get(&format!("/indexes/{INDEX}/documents/17")).await;
        assert_eq!(one.status, 200, "{}", one.body);
        assert_eq!(one.body["title"], initial[&17].as_ref().unwrap()["title"]);
        if status(&a).await["phase"] == "done" {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(90), "never done");
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    // B keeps serving after the old index was deleted, and accepts writes again once it saw the end
    for _ in 0..10 {
        assert_eq!(
            searches(&b).await,
            before,
            "search through B after the cleanup"
        );
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    stop.store(true, Ordering::SeqCst);
    let mut expected = initial;
    let (acked_a, ops_a) = writer_a.await.unwrap();
    expected.extend(acked_a);
    let (acked_b, ok_b, refused_b) = writer_b.await.unwrap();
    expected.extend(acked_b);
    println!("A ran {ops_a} writes; B acknowledged {ok_b} and refused {refused_b}");
    assert!(ops_a > 20, "the writer through A barely ran: {ops_a}");
    assert!(
        ok_b > 5 && refused_b > 0,
        "B: {ok_b} acknowledged, {refused_b} refused"
    );
    let w = b
        .write_ok(
            "POST",
            &format!("/indexes/{INDEX}/documents"),
            Some(json!([{"id": 7000, "title": "late", "v": 2}])),
        )
        .await;
    assert_eq!(w["indexUid"], INDEX, "{w}");
    expected.insert(7000, Some(json!({"id": 7000, "title": "late", "v": 2})));

    // nothing lost, the same documents through both proxies, on exactly their owners under S = 8
    let through_a = listed_docs(&a, INDEX, "").await;
    let through_b = listed_docs(&b, INDEX, "").await;
    assert_eq!(
        through_a.keys().copied().collect::<BTreeSet<_>>(),
        live_ids(&expected)
    );
    assert_eq!(through_a, through_b);
    for (id, doc) in &expected {
        if let Some(doc) = doc {
            for k in ["title", "v"] {
                assert_eq!(through_b[id].get(k), doc.get(k), "document {id}");
            }
        }
    }
    for api in [&a, &b] {
        let stats = api.get(&format!("/indexes/{INDEX}/stats")).await;
        assert_eq!(
            stats.body["numberOfDocuments"],
            live_ids(&expected).len() as u64,
            "{}",
            stats.body
        );
        assert_eq!(searches(api).await, before, "search changed");
        check_index_list(api).await;
    }
    check_placement(&f, SHADOW, 8, &expected).await;
    for i in 0..f.nodes.len() {
        let r = node_api(&f, i).get(&format!("/indexes/{INDEX}")).await;
        assert_eq!(
            r.status, 404,
            "the old index remains on node {i}: {}",
            r.body
        );
    }
    // both proxies show the index's own S and physical index; the fleet's S is unchanged
    for api in [&a, &b] {
        for path in ["/_miroir/topology", "/_miroir/shards"] {
            let r = api.get(path).await;
            assert_eq!(r.status, 200, "{}", r.body);
            assert_eq!(r.body["shards"], 4, "{path}: {}", r.body);
            assert_eq!(
                r.body["indexes"],
                json!({INDEX: {"index": SHADOW, "shards": 8, "phase": "done", "running": false}}),
                "{path}"
            );
        }
    }
    // the metrics of the proxy that ran it
    let metrics = a.get("/metrics").await;
    assert_eq!(metrics.status, 200);
    let text = metrics.body.as_str().unwrap_or_default();
    assert!(
        text.contains("miroir_reshard_phase{index=\"movies\"} 7"),
        "{text}"
    );
    assert!(text.contains("miroir_reshard_active 0"), "{text}");
    let copied = text
        .lines()
        .find_map(|l| l.strip_prefix("miroir_reshard_documents_copied{index=\"movies\"} "))
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    assert!(copied >= 400, "{text}");
    proxy_b.shutdown().await;
    f.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_through_another_proxy_are_forwarded_to_the_resharding_one() {
    let dir = tempfile::tempdir().unwrap();
    let tweak = |c: &mut miroir_core::config::Config| {
        c.resharding.throttle_docs_per_sec = 150;
        c.resharding.retention_ms = 300;
        c.rebalancer.topology_poll_ms = 50;
    };
    let (f, a) = fleet_tweaked(options(&dir), tweak).await;
    let a = admin(a);
    let initial = seed(&a, 400).await;
    // proxy B advertises its URL and runs the resharding; A forwards the index's writes to it
    let (proxy_b, b) = advertising_proxy(&f, tweak).await;
    let before = searches(&a).await;
    let stop = Arc::new(AtomicBool::new(false));
    // every write through A is acknowledged (spawn_writer fails on anything but 202)
    let writer_a = spawn_writer(a.clone(), INDEX, "writer", 1_000, 150, Arc::clone(&stop));
    tokio::time::sleep(Duration::from_millis(100)).await;
    let r = b
        .post(
            &format!("/_miroir/indexes/{INDEX}/reshard"),
            json!({"new_shards": 8}),
        )
        .await;
    assert_eq!(r.status, 202, "{}", r.body);
    // A sees B's resharding, and a write through A is answered by B (the task resolves on both)
    let start = Instant::now();
    loop {
        let s = a
            .get(&format!("/_miroir/indexes/{INDEX}/reshard/status"))
            .await;
        if s.status == 200 && s.body["running"] == true {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "A never saw it");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let w = a
        .post(
            &format!("/indexes/{INDEX}/documents"),
            json!([{"id": 5000, "title": "forwarded", "v": 1}]),
        )
        .await;
    assert_eq!(w.status, 202, "{}", w.body);
    let uid = w.body["taskUid"].as_u64().unwrap();
    assert_eq!(b.wait_task(uid).await["status"], "succeeded");
    assert_eq!(a.wait_task(uid).await["indexUid"], INDEX);
    wait_status(&b, "done", |s| s["phase"] == "done").await;
    stop.store(true, Ordering::SeqCst);
    let mut expected = initial;
    expected.insert(
        5000,
        Some(json!({"id": 5000, "title": "forwarded", "v": 1})),
    );
    let (acked, ops) = writer_a.await.unwrap();
    assert!(ops > 20, "the writer through A barely ran: {ops}");
    expected.extend(acked);
    // A takes the end in, then lists exactly the acknowledged documents, as B does
    tokio::time::sleep(Duration::from_millis(200)).await;
    for api in [&a, &b] {
        assert_eq!(listed_ids(api, INDEX).await, live_ids(&expected));
        assert_eq!(searches(api).await, before, "search changed");
    }
    check_placement(&f, SHADOW, 8, &expected).await;
    proxy_b.shutdown().await;
    f.shutdown().await;
}
