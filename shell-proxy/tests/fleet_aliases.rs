//! Index aliases: every client route accepts an alias, a flip is atomic and persisted (seen by another
//! proxy on the same store), and the admin API refuses shadows, chains and dangling targets.

mod common;

use common::*;
use miroir_proxy::dev;
use serde_json::{json, Value};

fn admin(api: &Api) -> Api {
    with_admin_key(api)
}

fn code(r: &Resp) -> &str {
    r.body["code"].as_str().unwrap_or_default()
}

async fn total_hits(api: &Api, index: &str) -> u64 {
    let r = api
        .post(
            &format!("/indexes/{index}/search"),
            json!({"q": "", "limit": 0}),
        )
        .await;
    assert_eq!(r.status, 200, "{index}: {}", r.body);
    r.body["estimatedTotalHits"].as_u64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aliases_resolve_flip_and_refuse() {
    let dir = tempfile::tempdir().unwrap();
    let (f, api) = fleet(3, 1, 1, &dir.path().join("m.db")).await;
    let adm = admin(&api);
    let docs = movies(30);
    api.write_ok(
        "POST",
        "/indexes/movies_v1/documents",
        Some(Value::Array(docs[..10].to_vec())),
    )
    .await;
    api.write_ok(
        "POST",
        "/indexes/movies_v2/documents",
        Some(Value::Array(docs[..20].to_vec())),
    )
    .await;

    // The admin API needs the admin key.
    assert_eq!(api.get("/_miroir/aliases").await.status, 401);
    let r = adm
        .post(
            "/_miroir/aliases",
            json!({"name": "movies", "target": "movies_v1"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.body["target"], "movies_v1");

    // Reads and writes through the alias reach the target.
    assert_eq!(total_hits(&api, "movies").await, 10);
    let t = api
        .write_ok(
            "POST",
            "/indexes/movies/documents",
            Some(json!([docs[25].clone()])),
        )
        .await;
    assert_eq!(t["indexUid"], "movies_v1", "{t}");
    assert_eq!(total_hits(&api, "movies_v1").await, 11);
    let doc = api.get("/indexes/movies/documents/25").await;
    assert_eq!(doc.status, 200, "{}", doc.body);
    let multi = api
        .post(
            "/multi-search",
            json!({"queries": [{"indexUid": "movies", "q": "", "limit": 0}]}),
        )
        .await;
    assert_eq!(multi.status, 200, "{}", multi.body);
    assert_eq!(multi.body["results"][0]["estimatedTotalHits"], 11);

    // A second proxy on the same store sees the alias; a flip through the first reaches it within the
    // cache delay.
    let second = dev::start_proxy_for(&f.options, &f.nodes).await.unwrap();
    let api2 = Api::new(format!("http://{}", second.addr));
    assert_eq!(total_hits(&api2, "movies").await, 11);
    let r = adm
        .call(
            "PUT",
            "/_miroir/aliases/movies",
            Some(json!({"target": "movies_v2"})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["history"][0]["target"], "movies_v1", "{}", r.body);
    assert_eq!(total_hits(&api, "movies").await, 20);
    tokio::time::sleep(std::time::Duration::from_millis(1_100)).await;
    assert_eq!(total_hits(&api2, "movies").await, 20);
    second.shutdown().await;

    // Refusals.
    let r = adm
        .post(
            "/_miroir/aliases",
            json!({"name": "movies_v1", "target": "movies_v2"}),
        )
        .await;
    assert_eq!((r.status, code(&r)), (409, "miroir_alias_shadows_index"));
    let r = adm
        .post(
            "/_miroir/aliases",
            json!({"name": "films", "target": "nope"}),
        )
        .await;
    assert_eq!((r.status, code(&r)), (404, "miroir_alias_target_not_found"));
    let r = adm
        .post(
            "/_miroir/aliases",
            json!({"name": "films", "target": "movies"}),
        )
        .await;
    assert_eq!((r.status, code(&r)), (400, "miroir_alias_chain"));
    let r = adm
        .post(
            "/_miroir/aliases",
            json!({"name": "films", "target": "later", "force": true}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let r = adm
        .post(
            "/_miroir/aliases",
            json!({"name": "films", "target": "movies_v1"}),
        )
        .await;
    assert_eq!((r.status, code(&r)), (409, "miroir_alias_already_exists"));
    let r = api.post("/indexes", json!({"uid": "movies"})).await;
    assert_eq!((r.status, code(&r)), (409, "miroir_index_uid_is_alias"));
    for k in ["message", "type", "link"] {
        assert!(r.body[k].is_string(), "{}", r.body);
    }
    let list = adm.get("/_miroir/aliases").await;
    assert_eq!(list.body["total"], 2, "{}", list.body);
    assert_eq!(list.body["results"][0]["name"], "films");

    // Deleted: the name is an unknown index again.
    assert_eq!(
        adm.call("DELETE", "/_miroir/aliases/movies", None)
            .await
            .status,
        204
    );
    let r = adm.call("DELETE", "/_miroir/aliases/movies", None).await;
    assert_eq!((r.status, code(&r)), (404, "miroir_alias_not_found"));
    let r = api.get("/indexes/movies/search").await;
    assert_eq!((r.status, code(&r)), (404, "index_not_found"), "{}", r.body);
    f.shutdown().await;
}
