//! Node failures and proxy restarts.

mod common;

use common::*;
use miroir_proxy::dev::{self, DevOptions};
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rf2_survives_a_dead_node_without_degrading() {
    let dir = tempfile::tempdir().unwrap();
    let (f, api) = fleet(3, 2, 1, &dir.path().join("m.db")).await;
    load(&api, 300).await;
    f.nodes[1].set_down(true);
    // immediately (before the probe notices) and after the probe marked the node failed
    for round in 0..2 {
        for i in (0..300).step_by(11) {
            let r = api.get(&format!("/indexes/movies/documents/{i}")).await;
            assert_eq!(r.status, 200, "round {round} doc {i}: {}", r.body);
        }
        let r = api
            .post("/indexes/movies/search", json!({"q": "", "limit": 300}))
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert!(r.headers.get("x-miroir-degraded").is_none());
        assert_eq!(r.body["estimatedTotalHits"], 300);
        assert_eq!(sorted_hit_ids(&r.body), (0..300).collect::<Vec<_>>());
        let s = api.get("/indexes/movies/stats").await;
        assert_eq!(s.body["numberOfDocuments"], 300, "{}", s.body);
        let l = api.get("/indexes/movies/documents?limit=1").await;
        assert_eq!(l.body["total"], 300, "{}", l.body);
        assert!(l.headers.get("x-miroir-degraded").is_none());
        tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    }
    let mut admin = api.clone();
    admin.key = Some(dev::DEV_ADMIN_KEY.into());
    let topo = admin.get("/_miroir/topology").await;
    assert_eq!(topo.status, 200, "{}", topo.body);
    assert_eq!(topo.body["nodes"][1]["health"], "failed", "{}", topo.body);
    assert_eq!(topo.body["nodes"][0]["health"], "healthy");
    f.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rf1_answers_partially_with_the_header_or_503() {
    let dir = tempfile::tempdir().unwrap();
    let (f, api) = fleet(3, 1, 1, &dir.path().join("m.db")).await;
    load(&api, 300).await;
    let held_by_1 = node_api(&f, 1).get("/indexes/movies/stats").await.body["numberOfDocuments"]
        .as_u64()
        .unwrap();
    f.nodes[1].set_down(true);
    let r = api
        .post("/indexes/movies/search", json!({"q": "", "limit": 300}))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let h = r
        .headers
        .get("x-miroir-degraded")
        .unwrap_or_else(|| panic!("degraded header: {:?} {}", r.headers, r.body));
    assert!(h.to_str().unwrap().starts_with("shards="), "{h:?}");
    assert_eq!(sorted_hit_ids(&r.body).len() as u64, 300 - held_by_1);
    let l = api.get("/indexes/movies/documents?limit=1").await;
    assert_eq!(l.status, 200, "{}", l.body);
    assert_eq!(l.body["total"].as_u64().unwrap(), 300 - held_by_1);
    assert!(l.headers.get("x-miroir-degraded").is_some());
    // a document on the dead node: no node can answer
    let missing = (0..300)
        .find(|i| !sorted_hit_ids(&r.body).contains(&(*i as u64)))
        .unwrap();
    let d = api
        .get(&format!("/indexes/movies/documents/{missing}"))
        .await;
    assert_eq!(d.status, 503, "{}", d.body);
    assert_eq!(d.body["code"], "miroir_no_node_available");
    assert!(d.body["link"].is_string() && d.body["type"].is_string());
    // writes need every shard's quorum: refused with a Meilisearch-shaped 503
    let w = api
        .post("/indexes/movies/documents", json!([{"id": 1, "title": "x"}, {"id": 2}, {"id": 3}, {"id": 4}, {"id": 5}, {"id": 6}, {"id": 7}, {"id": 8}]))
        .await;
    if w.status != 202 {
        assert_eq!(w.status, 503, "{}", w.body);
        assert_eq!(w.body["code"], "miroir_no_quorum");
    }
    f.proxy.shutdown().await;

    // the `error` policy answers 503 instead
    let mut o = DevOptions::new(3, dir.path().join("m.db").to_string_lossy().into_owned());
    o.replication_factor = 1;
    o.shards = 16;
    o.unavailable_shard_policy = "error".into();
    let proxy = dev::start_proxy_for(&o, &f.nodes).await.unwrap();
    let api = Api::new(format!("http://{}", proxy.addr));
    let r = api.post("/indexes/movies/search", json!({"q": ""})).await;
    assert_eq!(r.status, 503, "{}", r.body);
    assert_eq!(r.body["code"], "miroir_shard_unavailable");
    proxy.shutdown().await;
    for n in f.nodes {
        n.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_survive_a_proxy_restart() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("m.db");
    let (f, api) = fleet(3, 2, 1, &store).await;
    load(&api, 50).await;
    let r = api
        .post("/indexes/movies/documents", json!([{"id": "bad id!"}]))
        .await;
    assert_eq!(r.status, 202);
    let failed_uid = r.body["taskUid"].as_u64().unwrap();
    let before = api.get("/tasks").await.body;
    f.proxy.shutdown().await;

    let o = f.options.clone();
    let proxy = dev::start_proxy_for(&o, &f.nodes).await.unwrap();
    let api = Api::new(format!("http://{}", proxy.addr));
    let after = api.get("/tasks").await;
    assert_eq!(after.status, 200);
    assert_eq!(after.body["total"], before["total"]);
    assert_eq!(after.body["results"], before["results"]);
    let t = api.get(&format!("/tasks/{failed_uid}")).await.body;
    assert_eq!(t["status"], "failed");
    assert_eq!(t["error"]["code"], "invalid_document_id");
    // new tasks continue the uid sequence and documents still resolve their primary key
    let r = api
        .post(
            "/indexes/movies/documents",
            json!([{"id": 1000, "title": "new"}]),
        )
        .await;
    assert_eq!(r.status, 202);
    assert!(r.body["taskUid"].as_u64().unwrap() > failed_uid);
    api.wait_task(r.body["taskUid"].as_u64().unwrap()).await;
    assert_eq!(
        api.get("/indexes/movies/documents/1000").await.body["title"],
        "new"
    );
    proxy.shutdown().await;
    for n in f.nodes {
        n.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_failing_nodes_are_routed_around() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = DevOptions::new(3, dir.path().join("m.db").to_string_lossy().into_owned());
    o.replication_factor = 2;
    o.node_timeout_ms = 400;
    o.write_quorum = "one".into();
    let (f, api) = fleet_with(o).await;
    load(&api, 120).await;

    // a node slower than the node timeout: searches finish on the other replicas
    f.nodes[0].set_faults(miroir_sim::serve::Faults {
        latency_ms: 3_000,
        ..Default::default()
    });
    let started = std::time::Instant::now();
    let r = api
        .post("/indexes/movies/search", json!({"q": "", "limit": 500}))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(sorted_hit_ids(&r.body), (0..120).collect::<Vec<_>>());
    assert!(started.elapsed() < std::time::Duration::from_millis(2_500));

    // a node answering 503 to everything: same
    f.nodes[0].set_faults(miroir_sim::serve::Faults {
        fail_rate: 1.0,
        ..Default::default()
    });
    let r = api
        .post("/indexes/movies/search", json!({"q": "", "limit": 500}))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(sorted_hit_ids(&r.body), (0..120).collect::<Vec<_>>());
    let r = api.get("/indexes/movies/documents?limit=500").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["total"], 120);

    // with write_quorum `one`, a write is acknowledged and its task succeeds without the dead replica
    f.nodes[0].set_down(true);
    let t = api
        .write_ok(
            "POST",
            "/indexes/movies/documents",
            Some(json!([{"id": 500, "title": "late"}, {"id": 501, "title": "later"}])),
        )
        .await;
    assert_eq!(t["details"]["indexedDocuments"], 2);
    assert_eq!(
        api.get("/indexes/movies/documents/501").await.body["title"],
        "later"
    );
    f.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writes_leave_replicas_identical() {
    let dir = tempfile::tempdir().unwrap();
    let (f, api) = fleet(3, 3, 1, &dir.path().join("m.db")).await;
    api.write_ok(
        "POST",
        "/indexes",
        Some(json!({"uid": "movies", "primaryKey": "id"})),
    )
    .await;
    let mut set = tokio::task::JoinSet::new();
    for v in 0..24 {
        let api = api.clone();
        set.spawn(async move {
            let docs: Vec<Value> = (0..20).map(|id| json!({"id": id, "v": v})).collect();
            let r = api
                .post("/indexes/movies/documents", Value::Array(docs))
                .await;
            assert_eq!(r.status, 202, "{}", r.body);
            r.body["taskUid"].as_u64().unwrap()
        });
    }
    let mut uids = Vec::new();
    while let Some(done) = set.join_next().await {
        uids.push(done.unwrap());
    }
    for uid in uids {
        assert_eq!(api.wait_task(uid).await["status"], "succeeded");
    }
    for id in 0..20 {
        let values: Vec<Value> = {
            let mut v = Vec::new();
            for i in 0..3 {
                v.push(
                    node_api(&f, i)
                        .get(&format!("/indexes/movies/documents/{id}"))
                        .await
                        .body["v"]
                        .clone(),
                );
            }
            v
        };
        assert!(
            values.iter().all(|v| *v == values[0]),
            "doc {id}: replicas disagree {values:?}"
        );
    }
    f.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_replica_group_keeps_writes_and_complete_reads() {
    let dir = tempfile::tempdir().unwrap();
    let (f, api) = fleet(2, 1, 2, &dir.path().join("m.db")).await;
    load(&api, 40).await;
    f.nodes[1].set_down(true);
    let r = api
        .post(
            "/indexes/movies/documents",
            json!([{"id": 100, "title": "while down"}]),
        )
        .await;
    assert_eq!(r.status, 202, "{}", r.body);
    // The write is acknowledged as soon as one group reached quorum: the header shows only when group
    // 1's failure was known by then (core's tracker decides without waiting for the other groups).
    if let Some(h) = r.headers.get("x-miroir-degraded") {
        assert!(h.to_str().unwrap().starts_with("groups=1"), "{h:?}");
    }
    let t = api.wait_task(r.body["taskUid"].as_u64().unwrap()).await;
    assert_eq!(t["status"], "succeeded", "{t}");
    // reads are served by the surviving group, completely
    let s = api
        .post("/indexes/movies/search", json!({"q": "", "limit": 100}))
        .await;
    assert_eq!(s.status, 200);
    assert!(s.headers.get("x-miroir-degraded").is_none());
    assert_eq!(sorted_hit_ids(&s.body).len(), 41);
    f.shutdown().await;
}

/// The same restart with the Redis task store, when `MIROIR_TEST_REDIS_URL` names a server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_survive_a_proxy_restart_with_redis() {
    let Ok(url) = std::env::var("MIROIR_TEST_REDIS_URL") else {
        eprintln!("MIROIR_TEST_REDIS_URL is not set: skipping the Redis fleet test");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut o = DevOptions::new(
        3,
        dir.path().join("unused.db").to_string_lossy().into_owned(),
    );
    let prefix = format!(
        "miroir-fleet-test-{}-{}:",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    );
    o.redis = Some((url.clone(), prefix.clone()));
    let (f, api) = fleet_with(o).await;
    load(&api, 30).await;
    let before = api.get("/tasks").await.body;
    assert_eq!(before["total"], 2);
    f.proxy.shutdown().await;
    let proxy = dev::start_proxy_for(&f.options, &f.nodes).await.unwrap();
    let api = Api::new(format!("http://{}", proxy.addr));
    assert_eq!(api.get("/tasks").await.body["results"], before["results"]);
    let t = api
        .write_ok(
            "POST",
            "/indexes/movies/documents",
            Some(json!([{"id": 77}])),
        )
        .await;
    assert_eq!(t["uid"], 2);
    assert!(!dir.path().join("unused.db").exists());
    proxy.shutdown().await;
    for n in f.nodes {
        n.shutdown().await;
    }
    // leave the server as it was
    let client = redis::Client::open(url.as_str()).unwrap();
    let mut con = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query_async(&mut con)
        .await
        .unwrap();
    assert!(!keys.is_empty());
    redis::cmd("DEL")
        .arg(keys)
        .query_async::<()>(&mut con)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_replica_does_not_slow_down_writes() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = DevOptions::new(3, dir.path().join("m.db").to_string_lossy().into_owned());
    o.replication_factor = 3;
    o.node_timeout_ms = 1_500;
    let (f, api) = fleet_with(o).await;
    api.write_ok(
        "POST",
        "/indexes",
        Some(json!({"uid": "movies", "primaryKey": "id"})),
    )
    .await;
    // node 2 answers after 3 s, beyond the node timeout: a majority (2 of 3) still acknowledges
    f.nodes[2].set_faults(miroir_sim::serve::Faults {
        latency_ms: 3_000,
        ..Default::default()
    });
    let started = std::time::Instant::now();
    let mut uids = Vec::new();
    for b in 0..5 {
        let r = api
            .post(
                "/indexes/movies/documents",
                json!([{"id": b, "title": "x"}]),
            )
            .await;
        assert_eq!(r.status, 202, "{}", r.body);
        uids.push(r.body["taskUid"].as_u64().unwrap());
    }
    assert!(
        started.elapsed() < std::time::Duration::from_millis(1_400),
        "writes waited for the slow replica: {:?}",
        started.elapsed()
    );
    for uid in uids {
        assert_eq!(api.wait_task(uid).await["status"], "succeeded");
    }
    assert_eq!(
        api.get("/indexes/movies/documents?limit=0").await.body["total"],
        5
    );
    f.shutdown().await;
}

/// Polls a node until `GET path` answers `status` (the node applies its tasks asynchronously).
async fn eventually(api: &Api, path: &str, status: u16) -> bool {
    for _ in 0..200 {
        if api.get(path).await.status == status {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partial_index_creation_is_rolled_back_but_never_deletes_an_existing_index() {
    let dir = tempfile::tempdir().unwrap();
    let (f, api) = fleet(3, 2, 1, &dir.path().join("m.db")).await;
    f.nodes[2].set_down(true);
    let r = api
        .post("/indexes", json!({"uid": "half", "primaryKey": "id"}))
        .await;
    assert_eq!(r.status, 503, "{}", r.body);
    assert_eq!(r.body["code"], "miroir_no_quorum", "{}", r.body);
    // the nodes that created it delete it again: nothing is left half-done
    for i in 0..2 {
        assert!(
            eventually(&node_api(&f, i), "/indexes/half", 404).await,
            "node {i} kept the half-created index"
        );
    }
    let tasks = api.get("/tasks?types=indexCreation").await;
    assert_eq!(
        tasks.body["total"], 0,
        "a refused creation leaves no Miroir task: {}",
        tasks.body
    );
    f.nodes[2].set_down(false);
    let t = api
        .write_ok(
            "POST",
            "/indexes",
            Some(json!({"uid": "half", "primaryKey": "id"})),
        )
        .await;
    assert_eq!(t["status"], "succeeded", "{t}");
    for i in 0..3 {
        assert!(
            eventually(&node_api(&f, i), "/indexes/half", 200).await,
            "node {i} lacks the index"
        );
    }

    // an index one node already has is never deleted by a failed creation
    let own = node_api(&f, 0)
        .post("/indexes", json!({"uid": "mine"}))
        .await;
    assert_eq!(own.status, 202, "{}", own.body);
    assert!(eventually(&node_api(&f, 0), "/indexes/mine", 200).await);
    f.nodes[2].set_down(true);
    let r = api.post("/indexes", json!({"uid": "mine"})).await;
    assert_eq!(r.status, 503, "{}", r.body);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(
        node_api(&f, 0).get("/indexes/mine").await.status,
        200,
        "the existing index survived"
    );
    f.shutdown().await;
}
