//! Self-healing replicas, through the proxy: every written document carries its write version on the
//! nodes (never shown to clients), deletes leave tombstones in the task store before they are sent, and
//! `POST /_miroir/verify` finds and repairs replicas changed behind the proxy's back.

mod common;

use common::{fleet, movies, node_api, Api};
use miroir_proxy::dev;
use miroir_proxy::store::sqlite::SqliteStore;
use miroir_proxy::store::TaskStore;
use serde_json::{json, Value};
use std::time::Duration;

/// Waits until node `i` has no task left to run.
async fn idle(node: &Api) {
    for _ in 0..200 {
        let r = node.get("/tasks?statuses=enqueued,processing").await;
        if r.body["total"] == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the node never went idle");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_reports_and_repairs_a_divergence() {
    let dir = tempfile::tempdir().unwrap();
    let (f, api) = fleet(2, 2, 1, &dir.path().join("m.db")).await;
    let mut admin = api.clone();
    admin.key = Some(dev::DEV_ADMIN_KEY.into());
    api.write_ok(
        "POST",
        "/indexes",
        Some(json!({"uid": "movies", "primaryKey": "id"})),
    )
    .await;
    api.write_ok("POST", "/indexes/movies/documents", Some(json!(movies(6))))
        .await;
    api.write_ok(
        "POST",
        "/indexes/movies/documents/delete-batch",
        Some(json!([5])),
    )
    .await;
    let clean = admin
        .post("/_miroir/verify", json!({"index": "movies"}))
        .await;
    assert_eq!(clean.status, 200, "{}", clean.body);
    assert_eq!(clean.body["clean"], true, "{}", clean.body);
    assert_eq!(clean.body["shardsScanned"], 16);
    // behind the proxy's back: node 1 regresses document 1 to an old version, node 0 loses document 2,
    // node 1 gets the deleted document 5 back
    let (n0, n1) = (node_api(&f, 0), node_api(&f, 1));
    let doc = |id: u64| {
        let n0 = n0.clone();
        async move {
            n0.get(&format!("/indexes/movies/documents/{id}"))
                .await
                .body
        }
    };
    let mut old = doc(1).await;
    old["title"] = json!("an old title");
    old["_miroir_v"] = json!(1);
    let mut ghost = doc(0).await;
    ghost["id"] = json!(5);
    ghost["_miroir_v"] = json!(2);
    ghost["_miroir_shard"] = Value::from(miroir_core::routing::shard_for_key("5", 16));
    let r = n1
        .post("/indexes/movies/documents", json!([old, ghost]))
        .await;
    assert_eq!(r.status, 202, "{}", r.body);
    let r = n0
        .post("/indexes/movies/documents/delete-batch", json!([2]))
        .await;
    assert_eq!(r.status, 202, "{}", r.body);
    idle(&n0).await;
    idle(&n1).await;
    let found = admin
        .post(
            "/_miroir/verify",
            json!({"index": "movies", "repair": false}),
        )
        .await;
    assert_eq!(found.status, 200, "{}", found.body);
    assert_eq!(found.body["clean"], false, "{}", found.body);
    assert_eq!(found.body["idsMismatched"], 3, "{}", found.body);
    assert_eq!(found.body["repairs"], 0);
    let shards = found.body["shards"].as_array().unwrap();
    let sum = |k: &str| shards.iter().map(|s| s[k].as_u64().unwrap()).sum::<u64>();
    assert_eq!(
        (sum("missingCopies"), sum("staleCopies"), sum("deadCopies")),
        (1, 1, 1)
    );
    let fixed = admin
        .post(
            "/_miroir/verify",
            json!({"index": "movies", "repair": true}),
        )
        .await;
    assert_eq!(fixed.status, 200, "{}", fixed.body);
    assert_eq!(fixed.body["repairs"], 3, "{}", fixed.body);
    assert_eq!(fixed.body["clean"], true, "{}", fixed.body);
    let again = admin
        .post("/_miroir/verify", json!({"index": "movies"}))
        .await;
    assert_eq!(again.body["idsMismatched"], 0, "{}", again.body);
    assert_eq!(again.body["clean"], true);
    for node in [&n0, &n1] {
        let r = node.get("/indexes/movies/documents/1").await;
        assert_ne!(r.body["title"], "an old title");
        assert_eq!(node.get("/indexes/movies/documents/2").await.status, 200);
        assert_eq!(node.get("/indexes/movies/documents/5").await.status, 404);
    }
    let metrics = reqwest_metrics(&api).await;
    assert!(
        metrics.contains("miroir_anti_entropy_repairs_total 3"),
        "{metrics}"
    );
    // refusals
    let all = admin.post("/_miroir/verify", json!({})).await;
    assert_eq!(all.status, 200, "{}", all.body);
    assert_eq!(all.body["clean"], true, "{}", all.body);
    assert_eq!(all.body["results"][0]["index"], "movies", "{}", all.body);
    let r = admin.post("/_miroir/verify", json!({"index": 7})).await;
    assert_eq!(
        (r.status, r.body["code"].as_str()),
        (400, Some("bad_request"))
    );
    let r = admin
        .post(
            "/_miroir/verify",
            json!({"index": "movies", "repair": "yes"}),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.body);
    let r = admin
        .post("/_miroir/verify", json!({"index": "movies", "deep": true}))
        .await;
    assert_eq!(r.status, 400, "{}", r.body);
    let r = admin
        .post("/_miroir/verify", json!({"index": "nope"}))
        .await;
    assert_eq!(
        (r.status, r.body["code"].as_str()),
        (404, Some("index_not_found"))
    );
    let r = api
        .post("/_miroir/verify", json!({"index": "movies"}))
        .await;
    assert!(r.status == 401 || r.status == 403, "admin only: {}", r.body);
}

async fn reqwest_metrics(api: &Api) -> String {
    let r = api.raw("GET", "/metrics", None, Vec::new()).await;
    match r.body {
        Value::String(s) => s,
        other => other.to_string(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_carry_versions_and_deletes_leave_tombstones() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.db");
    let (f, api) = fleet(2, 2, 1, &path).await;
    api.write_ok(
        "POST",
        "/indexes",
        Some(json!({"uid": "movies", "primaryKey": "id"})),
    )
    .await;
    api.write_ok("POST", "/indexes/movies/documents", Some(json!(movies(4))))
        .await;
    api.write_ok(
        "PUT",
        "/indexes/movies/documents",
        Some(json!([{"id": 1, "year": 1999}])),
    )
    .await;
    // both replicas hold the same versions; the update got a later one than the additions
    let version = |i: usize, id: u64| {
        let node = node_api(&f, i);
        async move {
            let r = node.get(&format!("/indexes/movies/documents/{id}")).await;
            assert_eq!(r.status, 200, "{}", r.body);
            r.body["_miroir_v"].as_u64().expect("a stored version")
        }
    };
    for id in 0..4 {
        assert_eq!(version(0, id).await, version(1, id).await, "document {id}");
    }
    assert!(version(0, 1).await > version(0, 0).await);
    // clients never see the field
    let r = api.get("/indexes/movies/documents/1").await;
    assert_eq!(r.status, 200);
    assert!(r.body.get("_miroir_v").is_none(), "{}", r.body);
    assert_eq!(r.body["year"], 1999);
    let listed = api.get("/indexes/movies/documents?limit=10").await;
    assert!(
        !listed.body.to_string().contains("_miroir"),
        "{}",
        listed.body
    );
    let searched = api.post("/indexes/movies/search", json!({"q": ""})).await;
    assert!(
        !searched.body.to_string().contains("_miroir"),
        "{}",
        searched.body
    );
    // a client may not set it
    let r = api
        .post(
            "/indexes/movies/documents",
            json!([{"id": 9, "_miroir_v": 1}]),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(r.body["code"], "miroir_reserved_field");
    // deletes: by id, by filter, all
    let before = version(0, 2).await;
    api.write_ok(
        "POST",
        "/indexes/movies/documents/delete-batch",
        Some(json!([2, "3"])),
    )
    .await;
    api.write_ok(
        "PATCH",
        "/indexes/movies/settings",
        Some(json!({"filterableAttributes": ["genre"]})),
    )
    .await;
    api.write_ok(
        "POST",
        "/indexes/movies/documents/delete",
        Some(json!({"filter": "genre = drama"})),
    )
    .await;
    api.write_ok("DELETE", "/indexes/movies/documents", None)
        .await;
    let store = SqliteStore::open(&path).await.unwrap();
    let tombstones = store.list_tombstones("movies").await.unwrap();
    let keys: Vec<&str> = tombstones.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        keys,
        vec!["all", "filter:\"genre = drama\"", "id:2", "id:3"],
        "{tombstones:?}"
    );
    let v = |k: &str| tombstones.iter().find(|(key, _)| key == k).unwrap().1;
    assert!(v("id:2") > before && v("id:2") == v("id:3"));
    assert!(v("filter:\"genre = drama\"") > v("id:2") && v("all") > v("filter:\"genre = drama\""));
}
