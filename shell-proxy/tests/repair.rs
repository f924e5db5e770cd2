//! Replicas that heal themselves, through the proxy: a node that misses writes while it is down catches
//! up by itself once it is back (hinted handoff), also across a proxy restart, and an index deletion that
//! missed a node is finished there.

mod common;

use common::{fleet_with, movies, node_api, restart_proxy, Api};
use miroir_proxy::dev::{DevFleet, DevOptions};
use serde_json::{json, Value};
use std::time::Duration;

/// 4 nodes in 2 groups of RF=2 under `majority`: node-0 and node-2 hold the same shards in group 0.
fn options(dir: &std::path::Path) -> DevOptions {
    let mut o = DevOptions::new(4, dir.join("m.db").to_string_lossy().into_owned());
    o.replication_factor = 2;
    o.replica_groups = 2;
    o.shards = 8;
    o.node_timeout_ms = 500;
    o
}

/// Every document a node holds, sorted by id, with Miroir's reserved fields.
async fn node_docs(f: &DevFleet, i: usize) -> Vec<Value> {
    let r = node_api(f, i)
        .get("/indexes/movies/documents?limit=1000")
        .await;
    assert_eq!(r.status, 200, "node {i}: {}", r.body);
    let mut docs = r.body["results"].as_array().cloned().unwrap_or_default();
    docs.sort_by_key(|d| d["id"].as_u64());
    docs
}

/// Waits until node-0 holds exactly what its group peer node-2 holds, with no task left to run.
async fn wait_caught_up(f: &DevFleet) -> Vec<Value> {
    for _ in 0..200 {
        let (a, b) = (node_docs(f, 0).await, node_docs(f, 2).await);
        let idle = node_api(f, 0)
            .get("/tasks?statuses=enqueued,processing")
            .await;
        if a == b && idle.body["total"] == 0 {
            return a;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "node-0 never caught up: {} documents, node-2 has {}",
        node_docs(f, 0).await.len(),
        node_docs(f, 2).await.len()
    );
}

async fn wait_no_pending_replicas(api: &Api, uid: u64) -> Value {
    for _ in 0..200 {
        let t = api.get(&format!("/tasks/{uid}")).await.body;
        if t.get("pendingReplicas").is_none() {
            return t;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("task {uid} still has pending replicas");
}

async fn setup(api: &Api) {
    api.write_ok(
        "POST",
        "/indexes",
        Some(json!({"uid": "movies", "primaryKey": "id"})),
    )
    .await;
    api.write_ok("POST", "/indexes/movies/documents", Some(json!(movies(40))))
        .await;
}

/// The writes made while node-0 is down: an addition, a partial update and a deletion.
async fn writes_while_down(api: &Api) -> Vec<u64> {
    let mut uids = Vec::new();
    for (method, path, body) in [
        (
            "POST",
            "/indexes/movies/documents",
            json!((100..130)
                .map(|i| json!({"id": i, "title": format!("new {i}")}))
                .collect::<Vec<_>>()),
        ),
        (
            "PUT",
            "/indexes/movies/documents",
            json!([{"id": 3, "title": "renamed"}]),
        ),
        (
            "POST",
            "/indexes/movies/documents/delete-batch",
            json!([4, 5, 6, 7, 8, 9]),
        ),
    ] {
        let r = api.call(method, path, Some(body)).await;
        assert_eq!(r.status, 202, "{method} {path}: {}", r.body);
        let t = api.wait_task(r.body["taskUid"].as_u64().unwrap()).await;
        assert_eq!(t["status"], "succeeded", "{t}");
        uids.push(t["uid"].as_u64().unwrap());
    }
    uids
}

/// A node down during writes receives them, in order, once it is back, without any operator action;
/// meanwhile the tasks show their pending replicas.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_missed_writes_catches_up_when_it_is_back() {
    let dir = tempfile::tempdir().unwrap();
    let (f, api) = fleet_with(options(dir.path())).await;
    setup(&api).await;
    f.nodes[0].set_down(true);
    let uids = writes_while_down(&api).await;
    let t = api.get(&format!("/tasks/{}", uids[0])).await.body;
    assert!(
        t["pendingReplicas"].as_u64().unwrap_or(0) >= 1,
        "node-0 missed the write: {t}"
    );
    assert_eq!(t["status"], "succeeded");

    f.nodes[0].set_down(false);
    let docs = wait_caught_up(&f).await;
    assert!(docs.iter().any(|d| d["id"] == 3 && d["title"] == "renamed"));
    assert!(docs
        .iter()
        .all(|d| !(4..=9).contains(&d["id"].as_u64().unwrap())));
    for uid in uids {
        let t = wait_no_pending_replicas(&api, uid).await;
        assert_eq!(t["status"], "succeeded", "{t}");
    }
    f.shutdown().await;
}

/// Hints are durable: a proxy restarted while node-0 is still down replays them once node-0 is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hints_survive_a_proxy_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (f, api) = fleet_with(options(dir.path())).await;
    setup(&api).await;
    f.nodes[0].set_down(true);
    let uids = writes_while_down(&api).await;
    let nodes = f.nodes.len();
    let f = restart_proxy(f, nodes, |_| {}).await;
    let api = Api::new(f.url());
    let t = api.get(&format!("/tasks/{}", uids[2])).await.body;
    assert!(
        t["pendingReplicas"].as_u64().unwrap_or(0) >= 1,
        "the restarted proxy knows the hints: {t}"
    );
    f.nodes[0].set_down(false);
    let docs = wait_caught_up(&f).await;
    assert!(docs.iter().any(|d| d["id"] == 129));
    wait_no_pending_replicas(&api, uids[2]).await;
    f.shutdown().await;
}

/// An index deletion that missed node-0 is hidden at once and finished on node-0 once it is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missed_index_deletion_is_finished_later() {
    let dir = tempfile::tempdir().unwrap();
    let (f, api) = fleet_with(options(dir.path())).await;
    setup(&api).await;
    f.nodes[0].set_down(true);
    let r = api.call("DELETE", "/indexes/movies", None).await;
    assert_eq!(r.status, 202, "{}", r.body);
    let uid = r.body["taskUid"].as_u64().unwrap();
    let t = api.wait_task(uid).await;
    assert_eq!(t["status"], "succeeded", "{t}");
    assert_eq!(t["pendingReplicas"], 1, "{t}");
    let r = api.get("/indexes/movies").await;
    assert_eq!(r.status, 404, "{}", r.body);
    assert_eq!(r.body["code"], "index_not_found");
    let list = api.get("/indexes").await.body;
    assert_eq!(list["total"], 0, "{list}");

    f.nodes[0].set_down(false);
    for _ in 0..200 {
        if node_api(&f, 0).get("/indexes/movies").await.status == 404 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(node_api(&f, 0).get("/indexes/movies").await.status, 404);
    wait_no_pending_replicas(&api, uid).await;
    f.shutdown().await;
}
