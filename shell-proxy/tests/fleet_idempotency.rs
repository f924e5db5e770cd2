//! `Idempotency-Key` end to end: a retried write gets the first request's task and does no new work, a
//! reused key with another body is refused, and the dedup survives a proxy restart (SQLite) and holds
//! across two proxies sharing one Redis store.

mod common;

use common::*;
use miroir_proxy::dev::{self, DevOptions};
use serde_json::{json, Value};

async fn keyed(api: &Api, method: &str, path: &str, key: &str, body: Option<Value>) -> Resp {
    send_json_with_headers(&api.base, method, path, &[("Idempotency-Key", key)], body).await
}

fn replayed(r: &Resp) -> bool {
    r.headers
        .get("x-miroir-idempotent-replay")
        .is_some_and(|v| v == "true")
}

async fn total_tasks(api: &Api) -> u64 {
    api.get("/tasks").await.body["total"].as_u64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_get_the_first_task_and_a_reused_key_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (f, api) = fleet(3, 2, 1, &dir.path().join("m.db")).await;

    // index creation, keyed
    let create = json!({"uid": "movies", "primaryKey": "id"});
    let first = keyed(&api, "POST", "/indexes", "create-1", Some(create.clone())).await;
    assert_eq!(first.status, 202, "{}", first.body);
    assert!(!replayed(&first));
    let again = keyed(&api, "POST", "/indexes", "create-1", Some(create)).await;
    assert_eq!(again.status, 202);
    assert!(replayed(&again));
    assert_eq!(again.body, first.body, "the same answer, taskUid included");
    api.wait_task(first.body["taskUid"].as_u64().unwrap()).await;

    // documents: a retry with the same body in another key order and layout is the same request
    let docs = movies(20);
    let r1 = keyed(
        &api,
        "POST",
        "/indexes/movies/documents",
        "docs-1",
        Some(Value::Array(docs.clone())),
    )
    .await;
    assert_eq!(r1.status, 202, "{}", r1.body);
    let uid = r1.body["taskUid"].as_u64().unwrap();
    let tasks_before = total_tasks(&api).await;
    let reordered: Vec<Value> = docs
        .iter()
        .map(|d| {
            let mut m: Vec<(String, Value)> = d.as_object().unwrap().clone().into_iter().collect();
            m.reverse();
            Value::Object(m.into_iter().collect())
        })
        .collect();
    for _ in 0..3 {
        let r = keyed(
            &api,
            "POST",
            "/indexes/movies/documents",
            "docs-1",
            Some(Value::Array(reordered.clone())),
        )
        .await;
        assert_eq!(r.status, 202, "{}", r.body);
        assert!(replayed(&r));
        assert_eq!(r.body["taskUid"], uid);
    }
    assert_eq!(
        total_tasks(&api).await,
        tasks_before,
        "no new task for a retry"
    );
    let t = api.wait_task(uid).await;
    assert_eq!(t["status"], "succeeded", "{t}");

    // the same key with another body: 409, Meilisearch-shaped, nothing done
    let other = keyed(
        &api,
        "POST",
        "/indexes/movies/documents",
        "docs-1",
        Some(json!([{"id": 999}])),
    )
    .await;
    assert_eq!(other.status, 409, "{}", other.body);
    assert_eq!(other.body["code"], "miroir_idempotency_key_reused");
    assert_eq!(other.body["type"], "invalid_request");
    assert!(other.body["link"]
        .as_str()
        .unwrap()
        .ends_with("#miroir_idempotency_key_reused"));
    // ... or another route
    let other = keyed(
        &api,
        "DELETE",
        "/indexes/movies/documents/1",
        "docs-1",
        None,
    )
    .await;
    assert_eq!(other.status, 409);
    assert_eq!(api.get("/indexes/movies/documents/999").await.status, 404);
    assert_eq!(total_tasks(&api).await, tasks_before);

    // settings: replayed too
    let s1 = keyed(
        &api,
        "PATCH",
        "/indexes/movies/settings",
        "settings-1",
        Some(json!({"filterableAttributes": ["genre"]})),
    )
    .await;
    assert_eq!(s1.status, 202, "{}", s1.body);
    let s2 = keyed(
        &api,
        "PATCH",
        "/indexes/movies/settings",
        "settings-1",
        Some(json!({"filterableAttributes": ["genre"]})),
    )
    .await;
    assert_eq!(s2.body["taskUid"], s1.body["taskUid"]);

    // an answer that is an error is replayed as well (the same request fails the same way)
    let bad = keyed(
        &api,
        "POST",
        "/indexes/movies/documents",
        "bad-1",
        Some(json!({"not": "an array"})),
    )
    .await;
    let bad2 = keyed(
        &api,
        "POST",
        "/indexes/movies/documents",
        "bad-1",
        Some(json!({"not": "an array"})),
    )
    .await;
    assert_eq!((bad2.status, &bad2.body), (bad.status, &bad.body));
    assert!(replayed(&bad2));

    // a malformed key is refused before anything is done
    let r = send_json_with_headers(
        &api.base,
        "POST",
        "/indexes/movies/documents",
        &[("Idempotency-Key", "")],
        Some(json!([{"id": 1}])),
    )
    .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.body["code"], "miroir_invalid_idempotency_key");

    // reads are never replayed, even POST ones with a key
    let q1 = keyed(
        &api,
        "POST",
        "/indexes/movies/search",
        "search-1",
        Some(json!({"q": "kw3"})),
    )
    .await;
    assert_eq!(q1.status, 200);
    assert!(!replayed(&q1));
    let q2 = keyed(
        &api,
        "POST",
        "/indexes/movies/search",
        "search-1",
        Some(json!({"q": "kw4"})),
    )
    .await;
    assert_eq!(q2.status, 200, "a search key is not claimed: {}", q2.body);
    assert_eq!(q2.body["hits"][0]["id"], 4);

    // writes without a key are not affected
    let plain1 = api
        .post(
            "/indexes/movies/documents",
            json!([{"id": 1, "title": "x"}]),
        )
        .await;
    let plain2 = api
        .post(
            "/indexes/movies/documents",
            json!([{"id": 1, "title": "x"}]),
        )
        .await;
    assert_ne!(plain1.body["taskUid"], plain2.body["taskUid"]);
    f.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_with_one_key_make_one_task() {
    let dir = tempfile::tempdir().unwrap();
    let (f, api) = fleet(3, 2, 1, &dir.path().join("m.db")).await;
    api.write_ok(
        "POST",
        "/indexes",
        Some(json!({"uid": "movies", "primaryKey": "id"})),
    )
    .await;
    let before = total_tasks(&api).await;
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let api = api.clone();
        set.spawn(async move {
            keyed(
                &api,
                "POST",
                "/indexes/movies/documents",
                "race",
                Some(Value::Array(movies(30))),
            )
            .await
        });
    }
    let mut uids = std::collections::BTreeSet::new();
    while let Some(r) = set.join_next().await {
        let r = r.unwrap();
        match r.status {
            202 => {
                uids.insert(r.body["taskUid"].as_u64().unwrap());
            }
            409 => assert_eq!(
                r.body["code"], "miroir_idempotency_key_in_flight",
                "{}",
                r.body
            ),
            s => panic!("unexpected {s}: {}", r.body),
        }
    }
    assert_eq!(uids.len(), 1, "{uids:?}");
    assert_eq!(total_tasks(&api).await, before + 1);
    // once answered, every retry gets that task
    let r = keyed(
        &api,
        "POST",
        "/indexes/movies/documents",
        "race",
        Some(Value::Array(movies(30))),
    )
    .await;
    assert_eq!(r.body["taskUid"], *uids.iter().next().unwrap());
    f.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_after_a_proxy_restart_is_still_deduplicated() {
    let dir = tempfile::tempdir().unwrap();
    let (f, api) = fleet(3, 2, 1, &dir.path().join("m.db")).await;
    api.write_ok(
        "POST",
        "/indexes",
        Some(json!({"uid": "movies", "primaryKey": "id"})),
    )
    .await;
    let first = keyed(
        &api,
        "POST",
        "/indexes/movies/documents",
        "k-restart",
        Some(Value::Array(movies(10))),
    )
    .await;
    assert_eq!(first.status, 202);
    let before = total_tasks(&api).await;
    f.proxy.shutdown().await;

    let proxy = dev::start_proxy_for(&f.options, &f.nodes).await.unwrap();
    let api = Api::new(format!("http://{}", proxy.addr));
    let retry = keyed(
        &api,
        "POST",
        "/indexes/movies/documents",
        "k-restart",
        Some(Value::Array(movies(10))),
    )
    .await;
    assert_eq!(retry.status, 202, "{}", retry.body);
    assert!(replayed(&retry));
    assert_eq!(retry.body["taskUid"], first.body["taskUid"]);
    assert_eq!(total_tasks(&api).await, before);
    let other = keyed(
        &api,
        "POST",
        "/indexes/movies/documents",
        "k-restart",
        Some(Value::Array(movies(11))),
    )
    .await;
    assert_eq!(other.status, 409);
    proxy.shutdown().await;
    for n in f.nodes {
        n.shutdown().await;
    }
}

/// Two proxies sharing one Redis store: a retry through the other proxy is deduplicated. Needs a Redis
/// (`MIROIR_TEST_REDIS_URL`); skipped with a notice without one, failing in CI.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_through_another_proxy_is_deduplicated() {
    let url = match std::env::var("MIROIR_TEST_REDIS_URL") {
        Ok(u) => u,
        Err(_) if std::env::var("CI").is_ok() => panic!("CI needs MIROIR_TEST_REDIS_URL"),
        Err(_) => {
            eprintln!("skipped: MIROIR_TEST_REDIS_URL is not set");
            return;
        }
    };
    let dir = tempfile::tempdir().unwrap();
    let prefix = format!(
        "miroir-idem-test-{}:",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    );
    let mut o = DevOptions::new(
        3,
        dir.path().join("unused.db").to_string_lossy().into_owned(),
    );
    o.redis = Some((url, prefix));
    let (f, a) = fleet_with(o).await;
    let b_proxy = dev::start_proxy_for(&f.options, &f.nodes).await.unwrap();
    let b = Api::new(format!("http://{}", b_proxy.addr));
    a.write_ok(
        "POST",
        "/indexes",
        Some(json!({"uid": "movies", "primaryKey": "id"})),
    )
    .await;
    let first = keyed(
        &a,
        "POST",
        "/indexes/movies/documents",
        "shared",
        Some(Value::Array(movies(5))),
    )
    .await;
    assert_eq!(first.status, 202);
    let retry = keyed(
        &b,
        "POST",
        "/indexes/movies/documents",
        "shared",
        Some(Value::Array(movies(5))),
    )
    .await;
    assert_eq!(retry.status, 202);
    assert!(replayed(&retry));
    assert_eq!(retry.body["taskUid"], first.body["taskUid"]);
    let other = keyed(
        &b,
        "POST",
        "/indexes/movies/documents",
        "shared",
        Some(json!([])),
    )
    .await;
    assert_eq!(other.status, 409);
    b_proxy.shutdown().await;
    f.shutdown().await;
}

/// A proxy that died after noting its task's uid under the key but before recording its answer: a retry
/// through the restarted proxy is answered from that task (same uid, a 202 summary), without new work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_noted_task_without_a_recorded_answer_is_replayed_from_the_task() {
    use miroir_core::idempotency::IdempotencyRecord;
    use miroir_proxy::store::{sqlite::SqliteStore, TaskStore};
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("m.db");
    let (f, api) = fleet(3, 2, 1, &db).await;
    api.write_ok(
        "POST",
        "/indexes",
        Some(json!({"uid": "movies", "primaryKey": "id"})),
    )
    .await;
    let first = keyed(
        &api,
        "POST",
        "/indexes/movies/documents",
        "crashed",
        Some(Value::Array(movies(4))),
    )
    .await;
    assert_eq!(first.status, 202);
    let uid = first.body["taskUid"].as_u64().unwrap();
    f.proxy.shutdown().await;

    // rewind the key's record to "in flight, task noted, no answer", as a crash would have left it
    {
        let store = SqliteStore::open(&db).await.unwrap();
        let done = store.get_idempotency_key("crashed").await.unwrap().unwrap();
        let record = IdempotencyRecord::from_json(&done).unwrap();
        assert_eq!(record.task_uid, Some(uid));
        let mut crashed = record.clone();
        crashed.response = None;
        assert!(store
            .replace_idempotency_key("crashed", &done, &crashed.to_json(), crashed.expires_at)
            .await
            .unwrap());
    }
    let proxy = dev::start_proxy_for(&f.options, &f.nodes).await.unwrap();
    let api = Api::new(format!("http://{}", proxy.addr));
    let before = total_tasks(&api).await;
    let retry = keyed(
        &api,
        "POST",
        "/indexes/movies/documents",
        "crashed",
        Some(Value::Array(movies(4))),
    )
    .await;
    assert_eq!(retry.status, 202, "{}", retry.body);
    assert!(replayed(&retry));
    assert_eq!(retry.body["taskUid"], uid);
    assert_eq!(retry.body["status"], "enqueued");
    assert_eq!(retry.body["type"], "documentAdditionOrUpdate");
    assert_eq!(total_tasks(&api).await, before);
    proxy.shutdown().await;
    for n in f.nodes {
        n.shutdown().await;
    }
}
