//! Self-healing replicas, through the proxy: every written document carries its write version on the
//! nodes (never shown to clients), and deletes leave tombstones in the task store before they are sent.

mod common;

use common::{fleet, movies, node_api};
use miroir_proxy::store::sqlite::SqliteStore;
use miroir_proxy::store::TaskStore;
use serde_json::json;

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
