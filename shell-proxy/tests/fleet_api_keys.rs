//! API keys and tenant tokens through the proxy: keys created through `/keys` open what their `actions`
//! and `indexes` allow, with Meilisearch's errors, and tenant tokens narrow searches.

mod common;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use common::*;
use hmac::{Hmac, Mac};
use miroir_proxy::dev::DevOptions;
use serde_json::{json, Value};
use sha2::Sha256;

fn with_key(api: &Api, key: &str) -> Api {
    let mut a = api.clone();
    a.key = Some(key.to_string());
    a
}

fn assert_auth_error(r: &Resp, status: u16, code: &str, message: &str) {
    assert_eq!(r.status, status, "{}", r.body);
    assert_eq!(r.body["code"], code, "{}", r.body);
    assert_eq!(r.body["type"], "auth", "{}", r.body);
    assert_eq!(r.body["message"], message, "{}", r.body);
    assert_eq!(
        r.body["link"],
        format!("https://docs.meilisearch.com/errors#{code}")
    );
}

fn tenant_token(key: &str, uid: &str, rules: Value) -> String {
    let h = URL_SAFE_NO_PAD.encode(json!({"alg": "HS256", "typ": "JWT"}).to_string());
    let p = URL_SAFE_NO_PAD.encode(json!({"apiKeyUid": uid, "searchRules": rules}).to_string());
    let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes()).unwrap();
    mac.update(format!("{h}.{p}").as_bytes());
    let sig = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    format!("{h}.{p}.{sig}")
}

async fn create_key(master: &Api, body: Value) -> (String, String) {
    let r = master.post("/keys", body).await;
    assert_eq!(r.status, 201, "{}", r.body);
    (
        r.body["uid"].as_str().unwrap().to_string(),
        r.body["key"].as_str().unwrap().to_string(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_keys_and_tenant_tokens_open_what_they_allow() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = DevOptions::new(3, dir.path().join("m.db").to_string_lossy().into_owned());
    o.master_key = "the-master-key".into();
    o.shards = 8;
    let (_f, open) = fleet_with(o).await;
    let master = with_key(&open, "the-master-key");

    for index in ["movies", "books"] {
        master
            .write_ok(
                "PATCH",
                &format!("/indexes/{index}/settings"),
                Some(json!({"filterableAttributes": ["genre"]})),
            )
            .await;
        master
            .write_ok(
                "POST",
                &format!("/indexes/{index}/documents"),
                Some(Value::Array(movies(20))),
            )
            .await;
    }

    // No header, an unknown key.
    assert_auth_error(
        &open.get("/indexes/movies/search?q=movie").await,
        401,
        "missing_authorization_header",
        "The Authorization header is missing. It must use the bearer authorization method.",
    );
    let unknown = with_key(&open, "not-a-key");
    assert_auth_error(
        &unknown.get("/indexes/movies/search?q=movie").await,
        403,
        "invalid_api_key",
        "The provided API key is invalid.",
    );

    // A search + documents.get key on `movies` only.
    let (uid, key) = create_key(
        &master,
        json!({"actions": ["search", "documents.get", "indexes.get", "tasks.get"], "indexes": ["movies"], "expiresAt": null}),
    )
    .await;
    let scoped = with_key(&open, &key);
    let r = scoped.get("/indexes/movies/search?q=movie&limit=50").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(sorted_hit_ids(&r.body).len(), 20);
    assert_eq!(scoped.get("/indexes/movies/documents/3").await.status, 200);
    assert_auth_error(
        &scoped.get("/indexes/books/search?q=movie").await,
        403,
        "invalid_api_key",
        "The API key cannot acces the index `books`, authorized indexes are [\"movies\"].",
    );
    assert_auth_error(
        &scoped
            .post("/indexes/movies/documents", json!([{"id": 99}]))
            .await,
        403,
        "invalid_api_key",
        "The provided API key is invalid.",
    );
    assert_auth_error(
        &scoped.get("/keys").await,
        403,
        "invalid_api_key",
        "The provided API key is invalid.",
    );
    // Index-less routes show only what the key opens.
    let list = scoped.get("/indexes").await;
    assert_eq!(list.status, 200, "{}", list.body);
    assert_eq!(list.body["total"], 1, "{}", list.body);
    assert_eq!(list.body["results"][0]["uid"], "movies");
    let all = master.get("/indexes").await;
    assert_eq!(all.body["total"], 2, "{}", all.body);
    let tasks = scoped.get("/tasks?limit=100").await;
    assert_eq!(tasks.status, 200, "{}", tasks.body);
    let results = tasks.body["results"].as_array().unwrap();
    assert!(!results.is_empty());
    assert!(
        results.iter().all(|t| t["indexUid"] == "movies"),
        "{}",
        tasks.body
    );
    let books_task = master.get("/tasks?indexUids=books&limit=1").await.body["results"][0]["uid"]
        .as_u64()
        .unwrap();
    assert_eq!(
        scoped.get(&format!("/tasks/{books_task}")).await.status,
        404
    );
    // Multi-search names the query that is refused.
    assert_auth_error(
        &scoped
            .post(
                "/multi-search",
                json!({"queries": [{"indexUid": "movies", "q": "movie"}, {"indexUid": "books", "q": "movie"}]}),
            )
            .await,
        403,
        "invalid_api_key",
        "Inside `.queries[1]`: The provided API key is invalid.",
    );

    // A tenant token signed with that key narrows its searches.
    let token = tenant_token(&key, &uid, json!({"movies": {"filter": "genre = horror"}}));
    let tenant = with_key(&open, &token);
    let r = tenant
        .post(
            "/indexes/movies/search",
            json!({"q": "movie", "limit": 50, "filter": "genre != drama"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(sorted_hit_ids(&r.body), vec![3, 8, 13, 18], "{}", r.body);
    let r = tenant
        .post(
            "/multi-search",
            json!({"queries": [{"indexUid": "movies", "q": "movie", "limit": 50}]}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["results"][0]["hits"].as_array().unwrap().len(), 4);
    let r = tenant
        .post(
            "/indexes/movies/facet-search",
            json!({"facetName": "genre"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.body["facetHits"],
        json!([{"value": "horror", "count": 4}]),
        "{}",
        r.body
    );
    let forged = tenant_token("not-the-key", &uid, json!(["*"]));
    assert_auth_error(
        &with_key(&open, &forged).get("/indexes/movies/search").await,
        403,
        "invalid_api_key",
        "Could not decode tenant token, InvalidSignature.",
    );
    // Tenant tokens open searches only.
    assert_auth_error(
        &tenant.get("/indexes/movies/documents/3").await,
        403,
        "invalid_api_key",
        "The provided API key is invalid.",
    );

    // A key without `indexes.create` cannot create an index by adding documents: the task fails.
    let (_, writer) = create_key(
        &master,
        json!({"actions": ["documents.add", "tasks.get"], "indexes": ["*"], "expiresAt": null}),
    )
    .await;
    let writer = with_key(&open, &writer);
    let r = writer
        .post("/indexes/fresh/documents", json!([{"id": 1}]))
        .await;
    assert_eq!(r.status, 202, "{}", r.body);
    let t = writer.wait_task(r.body["taskUid"].as_u64().unwrap()).await;
    assert_eq!(t["status"], "failed", "{t}");
    assert_eq!(t["error"]["code"], "index_not_found", "{t}");
    assert_eq!(master.get("/indexes/fresh").await.status, 404);
    let r = writer
        .post(
            "/indexes/movies/documents",
            json!([{"id": 500, "title": "new", "genre": "drama"}]),
        )
        .await;
    assert_eq!(r.status, 202, "{}", r.body);
    let t = writer.wait_task(r.body["taskUid"].as_u64().unwrap()).await;
    assert_eq!(t["status"], "succeeded", "{t}");

    // A key deleted through the proxy stops working at once.
    let r = master.call("DELETE", &format!("/keys/{uid}"), None).await;
    assert_eq!(r.status, 204, "{}", r.body);
    assert_auth_error(
        &scoped.get("/indexes/movies/search").await,
        403,
        "invalid_api_key",
        "The provided API key is invalid.",
    );
}
