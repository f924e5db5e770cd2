//! Elastic fleet through the HTTP proxy on model nodes: a 3 → 4 → 3 node cycle under a live writer (no
//! acknowledged write lost, no delete resurrected, every document on exactly its owners), a proxy restart
//! in the middle of a migration (resumed from the stored record), and the admin routes' bad input.

mod common;

use common::*;
use miroir_proxy::dev::{DevFleet, DevOptions};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const INDEX: &str = "movies";

/// The API with the admin key (the `/_miroir` routes need it).
fn admin(api: Api) -> Api {
    with_admin_key(&api)
}

/// Waits until the committed topology reaches `epoch` and no migration runs; returns the last status.
async fn wait_epoch(api: &Api, epoch: u64) -> Value {
    let start = Instant::now();
    loop {
        let t = api.get("/_miroir/topology").await;
        assert_eq!(t.status, 200, "{}", t.body);
        let s = api.get("/_miroir/rebalance/status").await;
        assert_eq!(s.status, 200, "{}", s.body);
        if t.body["epoch"] == epoch && s.body["status"] == "idle" {
            return s.body;
        }
        assert!(
            start.elapsed() < Duration::from_secs(90),
            "epoch {epoch} never committed: {} / {}",
            t.body,
            s.body
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// How many documents of `INDEX` the nodes `on` hold together.
async fn count_on(f: &DevFleet, on: &[usize]) -> u64 {
    let mut n = 0;
    for i in on {
        n += node_docs(f, *i, INDEX).await.len() as u64;
    }
    n
}

/// The owners of each shard in the live placement (`/_miroir/shards`), group by group.
async fn owners(api: &Api) -> BTreeMap<u64, BTreeSet<String>> {
    let r = api.get("/_miroir/shards").await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let nodes = s["groups"]
                .as_array()
                .unwrap()
                .iter()
                .flat_map(|g| g["nodes"].as_array().unwrap().clone())
                .map(|n| n["id"].as_str().unwrap().to_string())
                .collect();
            (s["shard"].as_u64().unwrap(), nodes)
        })
        .collect()
}

/// Checks every node against what the writer acknowledged: each live document on exactly its owners with
/// its last acknowledged content, nothing else anywhere.
async fn check_placement(f: &DevFleet, api: &Api, expected: &BTreeMap<u64, Option<Value>>) {
    check_placement_without(f, api, expected, &[]).await
}

/// [`check_placement`] ignoring the nodes `skip` (down for good).
async fn check_placement_without(
    f: &DevFleet,
    api: &Api,
    expected: &BTreeMap<u64, Option<Value>>,
    skip: &[usize],
) {
    let owners = owners(api).await;
    let mut seen: BTreeMap<u64, BTreeSet<String>> = BTreeMap::new();
    let mut shard_of: BTreeMap<u64, u64> = BTreeMap::new();
    for (i, _) in f.nodes.iter().enumerate() {
        if skip.contains(&i) {
            continue;
        }
        let id = format!("node-{i}");
        for (doc_id, doc) in node_docs(f, i, INDEX).await {
            let shard = doc["_miroir_shard"].as_u64().expect("a shard tag");
            assert!(
                owners[&shard].contains(&id),
                "document {doc_id} (shard {shard}) on {id}, which does not own it"
            );
            match expected.get(&doc_id) {
                Some(Some(want)) => assert_eq!(
                    doc["v"], want["v"],
                    "document {doc_id} on {id} is stale: {doc} vs {want}"
                ),
                _ => panic!("document {doc_id} on {id} was deleted (or never written): {doc}"),
            }
            seen.entry(doc_id).or_default().insert(id.clone());
            shard_of.insert(doc_id, shard);
        }
    }
    for (doc_id, want) in expected {
        if want.is_none() {
            continue;
        }
        let Some(shard) = shard_of.get(doc_id) else {
            panic!("document {doc_id} is lost: on no node");
        };
        assert_eq!(
            seen[doc_id], owners[shard],
            "document {doc_id} is not on exactly the owners of shard {shard}"
        );
    }
}

async fn seed(api: &Api, n: u64) -> BTreeMap<u64, Option<Value>> {
    let docs = (0..n)
        .map(|id| json!({"id": id, "title": format!("movie {id}"), "v": 0}))
        .collect();
    seed_docs(api, INDEX, docs).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_joins_and_leaves_under_writes_without_losing_a_document() {
    let dir = tempfile::tempdir().unwrap();
    // a throttled copy, so the writer keeps writing through every phase (fences included)
    let o = DevOptions::new(3, dir.path().join("m.db").to_string_lossy().into_owned());
    let (mut f, api) = fleet_tweaked(o, |c| {
        c.rebalancer.throttle_docs_per_sec = 60;
        c.rebalancer.max_concurrent_migrations = 3;
        c.rebalancer.topology_poll_ms = 100;
    })
    .await;
    let api = admin(api);
    let initial = seed(&api, 600).await;
    let spare = spare_node(0x5eed + 3).await;
    let spare_url = spare.url();
    f.nodes.push(spare);

    let stop = Arc::new(AtomicBool::new(false));
    // two writers on disjoint ids, so writes are in flight together through every fence
    let writers = [
        spawn_writer(api.clone(), INDEX, "movie", 0, 400, Arc::clone(&stop)),
        spawn_writer(api.clone(), INDEX, "movie", 400, 400, Arc::clone(&stop)),
    ];
    tokio::time::sleep(Duration::from_millis(200)).await;

    // 3 → 4
    let add = api
        .post(
            "/_miroir/nodes",
            json!({"id": "node-3", "url": spare_url, "replicaGroup": 0}),
        )
        .await;
    assert_eq!(add.status, 202, "{}", add.body);
    assert_eq!(add.body["fromEpoch"], 1);
    assert_eq!(add.body["toEpoch"], 2);
    // one change at a time
    let again = api.post("/_miroir/nodes/node-0/drain", json!({})).await;
    assert_error(
        &again,
        409,
        "miroir_migration_in_progress",
        "invalid_request",
    );
    let status = wait_epoch(&api, 2).await;
    assert_eq!(status["last"]["status"], "succeeded", "{status}");
    let moved = node_docs(&f, 3, INDEX).await.len() as u64;
    let copies: u64 = doc_counts(&f, INDEX).await.iter().sum();
    println!(
        "documents moved to the 4th node: {moved} of {copies} copies ({:.1}%); the migration wrote {} documents",
        moved as f64 * 100.0 / copies as f64,
        status["last"]["documentsCopied"]
    );
    assert!(
        moved * 10 >= copies && moved * 100 <= copies * 45,
        "the 4th node holds {moved} of {copies} copies: not about a quarter"
    );
    let metrics = api.get("/metrics").await;
    let text = metrics.body.as_str().unwrap_or_default().to_string();
    let metric = |name: &str| -> f64 {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().last())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in {text}"))
    };
    assert!(metric("miroir_migration_shards_total") > 0.0);
    assert!(metric("miroir_migration_documents_total") > 0.0);
    assert_eq!(metric("miroir_topology_epoch"), 2.0);
    assert_eq!(metric("miroir_migration_running"), 0.0);
    let topology = api.get("/_miroir/topology").await;
    assert_eq!(topology.body["nodes"].as_array().unwrap().len(), 4);
    assert!(topology.body["nodes"][3]["shards"].as_u64().unwrap() > 0);

    // 4 → 3: drain, then remove
    let drain = api.post("/_miroir/nodes/node-3/drain", json!({})).await;
    assert_eq!(drain.status, 202, "{}", drain.body);
    wait_epoch(&api, 3).await;
    let remove = api.call("DELETE", "/_miroir/nodes/node-3", None).await;
    assert_eq!(remove.status, 202, "{}", remove.body);
    wait_epoch(&api, 4).await;
    let topology = api.get("/_miroir/topology").await;
    assert_eq!(topology.body["epoch"], 4);
    assert_eq!(topology.body["nodes"][3]["state"], "removed");
    assert_eq!(topology.body["nodes"][3]["shards"], 0);

    stop.store(true, Ordering::SeqCst);
    let mut expected = initial;
    let mut ops = 0;
    for w in writers {
        let (acked, n) = w.await.unwrap();
        expected.extend(acked);
        ops += n;
    }
    println!("the writers ran {ops} operations during the cycle");
    assert!(ops > 20, "the writers barely ran: {ops} operations");
    assert!(
        node_docs(&f, 3, INDEX).await.is_empty(),
        "the removed node still holds documents"
    );
    check_placement(&f, &api, &expected).await;
    // and through the proxy: exactly the live documents
    let listed = api
        .get(&format!("/indexes/{INDEX}/documents?limit=100000"))
        .await;
    let ids: BTreeSet<u64> = listed.body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_u64().unwrap())
        .collect();
    let live: BTreeSet<u64> = expected
        .iter()
        .filter(|(_, d)| d.is_some())
        .map(|(id, _)| *id)
        .collect();
    assert_eq!(ids, live);
    // what `miroir-ctl verify` asks: every shard's replicas hold the same documents, versions included
    let verify = api.post("/_miroir/verify", json!({"index": INDEX})).await;
    assert_eq!(verify.status, 200, "{}", verify.body);
    assert_eq!(verify.body["clean"], true, "{}", verify.body);
    assert!(
        verify.body["shardsScanned"].as_u64().unwrap() > 0,
        "{}",
        verify.body
    );
    f.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_proxy_resumes_the_migration() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("m.db");
    let mut o = DevOptions::new(3, store.to_string_lossy().into_owned());
    o.replication_factor = 1;
    let slow = |c: &mut miroir_core::config::Config| {
        c.rebalancer.throttle_docs_per_sec = 100;
        c.rebalancer.max_concurrent_migrations = 2;
        c.rebalancer.lease_ms = 600;
        c.rebalancer.topology_poll_ms = 50;
    };
    let (mut f, api) = fleet_tweaked(o.clone(), slow).await;
    let api = admin(api);
    let expected = seed(&api, 800).await;
    let add = add_spare_node(&mut f, &api, 0x5eed + 3, "node-3").await;
    assert_eq!(add.status, 202, "{}", add.body);
    // wait until it runs, then stop the proxy mid-way
    let start = Instant::now();
    loop {
        let s = api.get("/_miroir/rebalance/status").await;
        if s.body["status"] == "running" && s.body["documentsCopied"].as_u64().unwrap_or(0) > 0 {
            assert!(s.body["shardsTotal"].as_u64().unwrap() > 0);
            assert!(s.body["indexes"][INDEX]["shards"].is_array(), "{}", s.body);
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "{}", s.body);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // index-level changes wait for the end of the change (they would miss the joining node)
    let create = api.post("/indexes", json!({"uid": "other"})).await;
    assert_error(&create, 503, "miroir_migration_in_progress", "system");
    let delete = api.call("DELETE", &format!("/indexes/{INDEX}"), None).await;
    assert_error(&delete, 503, "miroir_migration_in_progress", "system");
    let swap = api
        .post("/swap-indexes", json!([{"indexes": [INDEX, "other"]}]))
        .await;
    assert_error(&swap, 503, "miroir_migration_in_progress", "system");
    // documents of the migrating index are still written (through the coordinator)
    let w = api
        .post(
            &format!("/indexes/{INDEX}/documents"),
            json!([{"id": 5, "title": "movie 5", "v": 5}]),
        )
        .await;
    assert_eq!(w.status, 202, "{}", w.body);
    let t = api.wait_task(w.body["taskUid"].as_u64().unwrap()).await;
    assert_eq!(t["status"], "succeeded", "{t}");
    let mut expected = expected;
    expected.insert(5, Some(json!({"id": 5, "title": "movie 5", "v": 5})));
    // the restarted proxy (same configuration: 3 nodes, epoch 1) resumes from the store; it is a new
    // instance: it takes the change over once its lease expired
    let f = restart_proxy(f, 3, |c| {
        c.rebalancer.throttle_docs_per_sec = 400;
        c.rebalancer.lease_ms = 600;
        c.rebalancer.topology_poll_ms = 50;
    })
    .await;
    let api = admin(Api::new(f.url()));
    // the coordinator is rebuilt from its stored record, not started afresh
    let start = Instant::now();
    loop {
        let s = api.get("/_miroir/rebalance/status").await;
        if s.body["status"] == "running" {
            assert_eq!(s.body["resumed"], true, "{}", s.body);
            break;
        }
        assert_ne!(
            s.body["status"], "idle",
            "finished before it was seen: {}",
            s.body
        );
        assert!(start.elapsed() < Duration::from_secs(30), "{}", s.body);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let status = wait_epoch(&api, 2).await;
    assert_eq!(status["last"]["resumed"], true, "{status}");
    check_placement(&f, &api, &expected).await;
    assert!(!node_docs(&f, 3, INDEX).await.is_empty());
    let search = api
        .post(
            &format!("/indexes/{INDEX}/search"),
            json!({"q": "movie", "limit": 1}),
        )
        .await;
    assert_eq!(search.body["estimatedTotalHits"], 800, "{}", search.body);
    f.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_proxy_refuses_writes_during_the_change_and_converges_on_the_new_topology() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = DevOptions::new(3, dir.path().join("m.db").to_string_lossy().into_owned());
    o.replication_factor = 1;
    let tweak = |c: &mut miroir_core::config::Config| {
        c.rebalancer.throttle_docs_per_sec = 50;
        c.rebalancer.topology_poll_ms = 50;
    };
    let (mut f, a) = fleet_tweaked(o.clone(), tweak).await;
    let a = admin(a);
    let mut expected = seed(&a, 600).await;
    // proxy B: same configuration, same store
    let (proxy_b, b) = second_proxy(&f, tweak).await;

    let add = add_spare_node(&mut f, &a, 0x5eed + 3, "node-3").await;
    assert_eq!(add.status, 202, "{}", add.body);
    // B sees the change A runs, refuses writes (A fences them) and a second change
    let start = Instant::now();
    loop {
        let w = b
            .post(
                &format!("/indexes/{INDEX}/documents"),
                json!([{"id": 1, "v": -1}]),
            )
            .await;
        if w.status == 503 {
            assert_error(&w, 503, "miroir_migration_in_progress", "system");
            break;
        }
        assert_eq!(w.status, 202, "{}", w.body);
        let t = b.wait_task(w.body["taskUid"].as_u64().unwrap()).await;
        assert_eq!(t["status"], "succeeded", "{t}");
        expected.insert(1, Some(json!({"id": 1, "v": -1})));
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "B never saw the change"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let again = b.post("/_miroir/nodes/node-0/drain", json!({})).await;
    assert_error(
        &again,
        409,
        "miroir_migration_in_progress",
        "invalid_request",
    );
    let status = b.get("/_miroir/rebalance/status").await;
    assert_eq!(status.body["status"], "enqueued", "{}", status.body);
    // A finishes; B converges on epoch 2 and routes by it
    wait_epoch(&a, 2).await;
    wait_epoch(&b, 2).await;
    let w = b
        .post(
            &format!("/indexes/{INDEX}/documents"),
            json!([{"id": 2, "v": -2}]),
        )
        .await;
    assert_eq!(w.status, 202, "{}", w.body);
    b.wait_task(w.body["taskUid"].as_u64().unwrap()).await;
    expected.insert(2, Some(json!({"id": 2, "v": -2})));
    check_placement(&f, &b, &expected).await;
    proxy_b.shutdown().await;
    f.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_node_is_re_replicated_and_a_replica_group_comes_and_goes() {
    let dir = tempfile::tempdir().unwrap();
    let o = DevOptions::new(3, dir.path().join("m.db").to_string_lossy().into_owned());
    let (mut f, api) = fleet_tweaked(o, |c| c.rebalancer.topology_poll_ms = 50).await;
    let api = admin(api);
    let mut expected = seed(&api, 300).await;

    // node-2 dies for good: its shards are copied again from the surviving replicas (RF = 2)
    f.nodes[2].set_down(true);
    let fail = api.post("/_miroir/nodes/node-2/fail", json!({})).await;
    assert_eq!(fail.status, 202, "{}", fail.body);
    assert!(
        fail.body["shardsToMove"].as_u64().unwrap() > 0,
        "{}",
        fail.body
    );
    wait_epoch(&api, 2).await;
    let w = api
        .post(
            &format!("/indexes/{INDEX}/documents"),
            json!([{"id": 7, "title": "movie 7", "v": 7}]),
        )
        .await;
    assert_eq!(
        api.wait_task(w.body["taskUid"].as_u64().unwrap()).await["status"],
        "succeeded"
    );
    expected.insert(7, Some(json!({"id": 7, "title": "movie 7", "v": 7})));
    check_placement_without(&f, &api, &expected, &[2]).await;
    let copies = count_on(&f, &[0, 1]).await;
    assert_eq!(copies, 600, "RF = 2 on the two survivors");

    // a second replica group of two new nodes is filled from the first
    for k in 3..5 {
        let spare = spare_node(0x5eed + k).await;
        f.nodes.push(spare);
    }
    let add = api
        .post(
            "/_miroir/groups",
            json!({"nodes": [{"id": "node-3", "url": f.nodes[3].url()}, {"id": "node-4", "url": f.nodes[4].url()}]}),
        )
        .await;
    assert_eq!(add.status, 202, "{}", add.body);
    wait_epoch(&api, 3).await;
    let topology = api.get("/_miroir/topology").await;
    assert_eq!(topology.body["replicaGroups"], 2, "{}", topology.body);
    check_placement_without(&f, &api, &expected, &[2]).await;
    let group1 = count_on(&f, &[3, 4]).await;
    assert_eq!(group1, 600, "the new group holds every document RF times");

    // and goes again: nothing is copied, its nodes are cleaned
    let remove = api.call("DELETE", "/_miroir/groups/1", None).await;
    assert_eq!(remove.status, 202, "{}", remove.body);
    wait_epoch(&api, 4).await;
    check_placement_without(&f, &api, &expected, &[2]).await;
    assert_eq!(count_on(&f, &[3, 4]).await, 0);
    let search = api
        .post(
            &format!("/indexes/{INDEX}/search"),
            json!({"q": "movie", "limit": 1}),
        )
        .await;
    assert_eq!(search.body["estimatedTotalHits"], 300, "{}", search.body);
    f.nodes[2].set_down(false);
    f.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_elastic_routes_refuse_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let (f, api) = fleet(2, 1, 1, &dir.path().join("m.db")).await;
    let api = admin(api);
    let cases: Vec<(&str, &str, Option<Value>, u16, &str)> = vec![
        (
            "POST",
            "/_miroir/nodes",
            Some(json!([])),
            400,
            "bad_request",
        ),
        (
            "POST",
            "/_miroir/nodes",
            Some(json!({"url": "http://x:1"})),
            400,
            "miroir_invalid_node_id",
        ),
        (
            "POST",
            "/_miroir/nodes",
            Some(json!({"id": "a b", "url": "http://x:1"})),
            400,
            "miroir_invalid_node_id",
        ),
        (
            "POST",
            "/_miroir/nodes",
            Some(json!({"id": "n9"})),
            400,
            "miroir_invalid_node_url",
        ),
        (
            "POST",
            "/_miroir/nodes",
            Some(json!({"id": "n9", "url": "ftp://x"})),
            400,
            "miroir_invalid_node_url",
        ),
        (
            "POST",
            "/_miroir/nodes",
            Some(json!({"id": "n9", "url": "http://x:1", "replicaGroup": "a"})),
            400,
            "miroir_invalid_replica_group",
        ),
        (
            "POST",
            "/_miroir/nodes",
            Some(json!({"id": "n9", "url": "http://x:1", "zone": 1})),
            400,
            "miroir_invalid_node",
        ),
        // nothing answers there
        (
            "POST",
            "/_miroir/nodes",
            Some(json!({"id": "n9", "url": "http://127.0.0.1:1"})),
            400,
            "miroir_node_unreachable",
        ),
        (
            "POST",
            "/_miroir/nodes/nope/drain",
            None,
            404,
            "miroir_node_not_found",
        ),
        (
            "POST",
            "/_miroir/nodes/nope/fail",
            None,
            404,
            "miroir_node_not_found",
        ),
        (
            "POST",
            "/_miroir/nodes/a%20b/drain",
            None,
            400,
            "miroir_invalid_node_id",
        ),
        (
            "DELETE",
            "/_miroir/nodes/nope",
            None,
            404,
            "miroir_node_not_found",
        ),
        // a placed node must be drained first
        (
            "DELETE",
            "/_miroir/nodes/node-0",
            None,
            409,
            "miroir_node_not_drained",
        ),
        (
            "POST",
            "/_miroir/groups",
            Some(json!({"nodes": []})),
            400,
            "miroir_invalid_group",
        ),
        (
            "POST",
            "/_miroir/groups",
            Some(json!({})),
            400,
            "miroir_invalid_group",
        ),
        (
            "POST",
            "/_miroir/groups",
            Some(json!({"nodes": [{"id": "g"}]})),
            400,
            "miroir_invalid_node_url",
        ),
        (
            "DELETE",
            "/_miroir/groups/x",
            None,
            400,
            "miroir_invalid_group_id",
        ),
        // the only group cannot go
        (
            "DELETE",
            "/_miroir/groups/0",
            None,
            400,
            "miroir_invalid_migration",
        ),
    ];
    for (method, path, body, status, code) in cases {
        let r = api.call(method, path, body.clone()).await;
        assert_eq!(r.status, status, "{method} {path} {body:?}: {}", r.body);
        assert_error(&r, status, code, "invalid_request");
    }
    // a malformed JSON body, and a missing content type
    let r = api
        .raw(
            "POST",
            "/_miroir/nodes",
            Some("application/json"),
            b"{".to_vec(),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.body);
    let r = api
        .raw("POST", "/_miroir/nodes", None, b"{}".to_vec())
        .await;
    assert!(r.status == 400 || r.status == 415, "{}", r.body);
    // nothing changed
    let t = api.get("/_miroir/topology").await;
    assert_eq!(t.body["epoch"], 1);
    let s = api.get("/_miroir/rebalance/status").await;
    assert_eq!(s.body["status"], "idle");
    assert_eq!(s.body["epoch"], 1);
    let r = api.post("/_miroir/rebalance", json!({})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["status"], "idle");
    // an unknown sub-route
    let r = api.get("/_miroir/nodes/node-0/whatever").await;
    assert_eq!(r.status, 404);
    f.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_proxy_reads_everything_while_another_moves_shards() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = DevOptions::new(3, dir.path().join("m.db").to_string_lossy().into_owned());
    // one copy per shard: a shard cleaned on its old owner is on its new owner only
    o.replication_factor = 1;
    let tweak = |c: &mut miroir_core::config::Config| {
        // two pages of 200 per moving shard: the throttle holds each shard ~2 s between its pages
        c.rebalancer.throttle_docs_per_sec = 100;
        c.rebalancer.topology_poll_ms = 50;
        c.rebalancer.max_concurrent_migrations = 2;
    };
    let (mut f, a) = fleet_tweaked(o.clone(), tweak).await;
    let a = admin(a);
    const N: u64 = 6_400;
    seed(&a, N).await;
    let all: BTreeSet<u64> = (0..N).collect();
    // searches count every hit
    a.write_ok(
        "PATCH",
        &format!("/indexes/{INDEX}/settings"),
        Some(json!({"pagination": {"maxTotalHits": 100_000}})),
    )
    .await;
    let (proxy_b, b) = second_proxy(&f, tweak).await;

    let add = add_spare_node(&mut f, &a, 0x5eed + 7, "node-3").await;
    assert_eq!(add.status, 202, "{}", add.body);
    // every search through B, all along the change, finds every document
    let start = Instant::now();
    let mut searches = 0;
    let mut moved_seen = false;
    loop {
        let r = b
            .post(
                &format!("/indexes/{INDEX}/search"),
                json!({"q": "movie", "limit": 20}),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(
            r.body["estimatedTotalHits"], N,
            "search {searches} through B missed documents"
        );
        assert_eq!(
            listed_ids(&b, INDEX).await,
            all,
            "document list {searches} through B missed documents"
        );
        searches += 1;
        // the new node holds documents once a shard was copied to it
        moved_seen |= !node_docs(&f, 3, INDEX).await.is_empty();
        let t = a.get("/_miroir/topology").await;
        let s = a.get("/_miroir/rebalance/status").await;
        if t.body["epoch"] == 2 && s.body["status"] == "idle" {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "the change never ended: {}",
            s.body
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!("{searches} searches through B during the change");
    assert!(
        moved_seen && searches > 10,
        "the change was too fast to test: {searches}"
    );
    wait_epoch(&b, 2).await;
    assert_eq!(listed_ids(&b, INDEX).await, all);
    proxy_b.shutdown().await;
    f.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_through_another_proxy_are_forwarded_to_the_one_moving_shards() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = DevOptions::new(3, dir.path().join("m.db").to_string_lossy().into_owned());
    o.replication_factor = 1;
    // No node fails here, and with RF=1 one node request timing out (or one node marked down) refuses a
    // write: generous timeouts keep a stall of the test machine (a CI VM losing the CPU for a second or
    // two) from being taken for a dead node.
    o.node_timeout_ms = 10_000;
    let tweak = |c: &mut miroir_core::config::Config| {
        c.rebalancer.throttle_docs_per_sec = 100;
        c.rebalancer.topology_poll_ms = 50;
        c.health.timeout_ms = 5_000;
    };
    let (mut f, a) = fleet_tweaked(o.clone(), tweak).await;
    let a = admin(a);
    // two pages of 200 per moving shard: the throttle holds each shard ~2 s between its pages
    let mut expected = seed(&a, 6_400).await;
    // proxy B advertises its URL and runs the change; A forwards its writes there
    let (proxy_b, b) = advertising_proxy(&f, tweak).await;
    let add = add_spare_node(&mut f, &b, 0x5eed + 9, "node-3").await;
    assert_eq!(add.status, 202, "{}", add.body);
    // every write through A is acknowledged while B moves the shards
    let stop = Arc::new(AtomicBool::new(false));
    let writer = spawn_writer(a.clone(), INDEX, "writer", 10_000, 100, Arc::clone(&stop));
    let mut seen_running = false;
    loop {
        let s = a.get("/_miroir/rebalance/status").await;
        seen_running |= s.body["status"] != "idle";
        let t = a.get("/_miroir/topology").await;
        if t.body["epoch"] == 2 && s.body["status"] == "idle" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.store(true, Ordering::SeqCst);
    let (acked, ops) = writer.await.unwrap();
    assert!(seen_running, "A never saw the change");
    assert!(ops > 20, "the writer through A barely ran: {ops}");
    expected.extend(acked);
    wait_epoch(&b, 2).await;
    check_placement(&f, &a, &expected).await;
    proxy_b.shutdown().await;
    f.shutdown().await;
}

/// A node that joins a group with more nodes than S gets no shard, so no index: index-level reads
/// never go to it (its id, `f`, sorts before the others, so a read trying nodes in id order would ask it
/// first).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_joining_without_a_shard_never_answers_index_reads() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = DevOptions::new(2, dir.path().join("m.db").to_string_lossy().into_owned());
    o.replication_factor = 1;
    o.shards = 2;
    let (mut f, api) = fleet_tweaked(o, |c| c.rebalancer.topology_poll_ms = 50).await;
    let api = admin(api);
    seed(&api, 50).await;
    api.write_ok(
        "PATCH",
        &format!("/indexes/{INDEX}/settings"),
        Some(json!({"filterableAttributes": ["v", "id"]})),
    )
    .await;
    let add = add_spare_node(&mut f, &api, 0x5eed + 9, "f").await;
    assert_eq!(add.status, 202, "{}", add.body);
    assert_eq!(
        add.body["shardsToMove"], 0,
        "the new node must get no shard"
    );
    wait_epoch(&api, 2).await;
    let bare = node_api(&f, 2);
    assert_eq!(bare.get("/indexes").await.body["total"], 0);
    for _ in 0..10 {
        for path in [
            format!("/indexes/{INDEX}"),
            format!("/indexes/{INDEX}/settings"),
            format!("/indexes/{INDEX}/settings/filterable-attributes"),
            format!("/indexes/{INDEX}/stats"),
            format!("/indexes/{INDEX}/documents/3"),
            "/indexes".to_string(),
            "/stats".to_string(),
        ] {
            let r = api.get(&path).await;
            assert_eq!(r.status, 200, "{path}: {}", r.body);
        }
        let r = api.get(&format!("/indexes/{INDEX}/settings")).await;
        assert_eq!(r.body["filterableAttributes"], json!(["v", "id"]));
        let r = api.get("/indexes").await;
        assert_eq!(r.body["total"], 1, "{}", r.body);
    }
    // index writes still succeed as tasks, and reads see them
    api.write_ok(
        "PATCH",
        &format!("/indexes/{INDEX}/settings"),
        Some(json!({"sortableAttributes": ["v"]})),
    )
    .await;
    api.write_ok(
        "POST",
        &format!("/indexes/{INDEX}/documents/delete"),
        Some(json!({"filter": "v = 0 AND id < 10"})),
    )
    .await;
    let r = api.get(&format!("/indexes/{INDEX}/settings")).await;
    assert_eq!(r.body["sortableAttributes"], json!(["v"]), "{}", r.body);
    let r = api.get(&format!("/indexes/{INDEX}/stats")).await;
    assert_eq!(r.body["numberOfDocuments"], 40, "{}", r.body);
    f.shutdown().await;
}
