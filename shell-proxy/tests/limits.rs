//! Every hostile-input limit of `server:` against a proxy over model nodes: the exact status and
//! Meilisearch-shaped error, that nothing was written when a write was refused, and that the proxy keeps
//! serving afterwards.

mod common;

use common::*;
use miroir_proxy::dev::DevOptions;
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn opts(dir: &tempfile::TempDir) -> DevOptions {
    let mut o = DevOptions::new(3, dir.path().join("t.db").to_string_lossy().into_owned());
    o.replication_factor = 2;
    o
}

/// Seeds `movies` with `n` documents and waits for them.
async fn seed(api: &Api, n: usize) {
    api.write_ok(
        "POST",
        "/indexes/movies/documents",
        Some(Value::Array(movies(n))),
    )
    .await;
}

/// Writes `head` (and `body`) on a raw connection and reads until the server closes it or `wait`
/// passes; returns what was read and whether the connection was closed.
async fn raw_exchange(addr: std::net::SocketAddr, bytes: &[u8], wait: Duration) -> (String, bool) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(bytes).await.unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + wait;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (String::from_utf8_lossy(&out).into_owned(), true),
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            Err(_) => return (String::from_utf8_lossy(&out).into_owned(), false),
        }
    }
}

fn json_of(raw: &str) -> Value {
    let body = raw.split("\r\n\r\n").nth(1).unwrap_or("");
    serde_json::from_str(body).unwrap_or(Value::Null)
}

#[tokio::test]
async fn body_size_limit_is_meilisearch_payload_too_large() {
    let dir = tempfile::tempdir().unwrap();
    let (f, api) = fleet_tweaked(opts(&dir), |c| c.server.max_body_bytes = 1024).await;
    seed(&api, 5).await;
    let big = serde_json::to_vec(&movies(40)).unwrap();
    assert!(big.len() > 1024);
    let r = api
        .raw(
            "POST",
            "/indexes/movies/documents",
            Some("application/json"),
            big,
        )
        .await;
    assert_error(&r, 413, "payload_too_large", "invalid_request");
    assert_eq!(
        r.body["message"],
        "The provided payload reached the size limit. The maximum accepted payload size is 1 KiB."
    );
    assert_eq!(doc_counts(&f, "movies").await.iter().sum::<u64>(), 10);
    assert_healthy(&api, "movies").await;
    f.shutdown().await;

    // The default limit (100 MiB) is refused from the announced length alone, with Meilisearch's words.
    let dir = tempfile::tempdir().unwrap();
    let (f, _api) = fleet_tweaked(opts(&dir), |_| {}).await;
    let (raw, _) = raw_exchange(
        f.proxy.addr,
        b"POST /indexes/movies/documents HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 104857601\r\n\r\n[",
        Duration::from_secs(5),
    )
    .await;
    assert!(raw.starts_with("HTTP/1.1 413"), "{raw}");
    assert_eq!(
        json_of(&raw)["message"],
        "The provided payload reached the size limit. The maximum accepted payload size is 100 MiB."
    );
    f.shutdown().await;
}

#[tokio::test]
async fn uri_and_header_limits() {
    let dir = tempfile::tempdir().unwrap();
    let (f, api) = fleet_tweaked(opts(&dir), |c| {
        c.server.max_uri_bytes = 1024;
        c.server.max_header_bytes = 2048;
    })
    .await;
    seed(&api, 5).await;
    let long = format!("/indexes/movies/search?q={}", "a".repeat(1100));
    let r = api.get(&long).await;
    assert_error(&r, 414, "miroir_uri_too_long", "invalid_request");
    assert!(r.body["message"].as_str().unwrap().contains("1024 bytes"));
    // Exactly at the limit is fine.
    let path = "/indexes/movies/search?q=";
    let at = format!("{path}{}", "a".repeat(1024 - path.len()));
    assert_eq!(api.get(&at).await.status, 200);

    let big = "x".repeat(3000);
    let r = send_with_headers(
        &api,
        "GET",
        "/indexes/movies/search",
        &[("x-big", &big)],
        vec![],
    )
    .await;
    assert_error(&r, 431, "miroir_headers_too_large", "invalid_request");
    let fine = "x".repeat(1000);
    let r = send_with_headers(
        &api,
        "GET",
        "/indexes/movies/search",
        &[("x-ok", &fine)],
        vec![],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    // Many small headers add up too.
    let names: Vec<String> = (0..60).map(|i| format!("x-h{i}")).collect();
    let value = "v".repeat(40);
    let many: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), value.as_str())).collect();
    let r = send_with_headers(&api, "GET", "/indexes/movies/search", &many, vec![]).await;
    assert_error(&r, 431, "miroir_headers_too_large", "invalid_request");
    assert_healthy(&api, "movies").await;
    f.shutdown().await;

    // Default limits: the proxy's own errors, not hyper's bare ones, up to the configured size.
    let dir = tempfile::tempdir().unwrap();
    let (f, api) = fleet_tweaked(opts(&dir), |_| {}).await;
    seed(&api, 3).await;
    let r = api
        .get(&format!("/indexes/movies/search?q={}", "b".repeat(20_000)))
        .await;
    assert_error(&r, 414, "miroir_uri_too_long", "invalid_request");
    let big = "y".repeat(70_000);
    let r = send_with_headers(&api, "GET", "/health", &[("x-big", &big)], vec![]).await;
    assert_error(&r, 431, "miroir_headers_too_large", "invalid_request");
    let ok = "y".repeat(30_000);
    let r = send_with_headers(
        &api,
        "GET",
        "/indexes/movies/search",
        &[("x-big", &ok)],
        vec![],
    )
    .await;
    assert_eq!(r.status, 200);
    f.shutdown().await;
}

#[tokio::test]
async fn json_depth_is_checked_before_parsing() {
    let dir = tempfile::tempdir().unwrap();
    let (f, api) = fleet_tweaked(opts(&dir), |c| c.server.max_json_depth = 8).await;
    seed(&api, 5).await;
    let before = doc_counts(&f, "movies").await;
    // A document nesting 9 levels (array + object + 7 objects).
    let mut v = json!(1);
    for _ in 0..7 {
        v = json!({ "n": v });
    }
    let deep_doc = json!([{ "id": 100, "nested": v }]);
    let r = api.post("/indexes/movies/documents", deep_doc).await;
    assert_error(&r, 400, "miroir_json_too_deep", "invalid_request");
    assert!(r.body["message"].as_str().unwrap().contains("depth of 8"));
    // A search body, absurdly deep: a byte scan, no recursion, no crash.
    let absurd = format!("{{\"q\":\"x\",\"filter\":{}}}", "[".repeat(200_000));
    let r = api
        .raw(
            "POST",
            "/indexes/movies/search",
            Some("application/json"),
            absurd.into_bytes(),
        )
        .await;
    assert_error(&r, 400, "miroir_json_too_deep", "invalid_request");
    // NDJSON bodies are scanned too.
    let nd = b"{\"id\":7,\"a\":[[[[[[[[[1]]]]]]]]]}\n".to_vec();
    let r = api
        .raw(
            "POST",
            "/indexes/movies/documents",
            Some("application/x-ndjson"),
            nd,
        )
        .await;
    assert_error(&r, 400, "miroir_json_too_deep", "invalid_request");
    // Brackets inside strings do not count; CSV is not JSON.
    let r = api
        .post(
            "/indexes/movies/documents",
            json!([{ "id": 200, "title": "[[[[[[[[[[[[{{{{{{{{{{" }]),
        )
        .await;
    assert_eq!(r.status, 202, "{}", r.body);
    api.wait_task(r.body["taskUid"].as_u64().unwrap()).await;
    let r = api
        .raw(
            "POST",
            "/indexes/movies/documents",
            Some("text/csv"),
            b"id,title\n201,[[[[[[[[[[[[[[\n".to_vec(),
        )
        .await;
    assert_eq!(r.status, 202, "{}", r.body);
    api.wait_task(r.body["taskUid"].as_u64().unwrap()).await;
    let after = doc_counts(&f, "movies").await;
    assert_eq!(
        after.iter().sum::<u64>(),
        before.iter().sum::<u64>() + 4,
        "only the two accepted documents (RF 2) were added"
    );
    assert_healthy(&api, "movies").await;
    f.shutdown().await;
}

#[tokio::test]
async fn documents_per_batch_limit_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (f, api) = fleet_tweaked(opts(&dir), |c| c.server.max_documents_per_batch = 5).await;
    seed(&api, 5).await;
    let before = doc_counts(&f, "movies").await;
    let tasks_before = api.get("/tasks").await.body["total"].clone();
    let batch: Vec<Value> = (100..106).map(|i| json!({"id": i, "title": "x"})).collect();
    let r = api
        .post("/indexes/movies/documents", Value::Array(batch))
        .await;
    assert_error(&r, 413, "miroir_too_many_documents", "invalid_request");
    assert!(r.body["message"].as_str().unwrap().contains("6 documents"));
    let r = api
        .raw(
            "PUT",
            "/indexes/movies/documents",
            Some("text/csv"),
            b"id\n1\n2\n3\n4\n5\n6\n".to_vec(),
        )
        .await;
    assert_error(&r, 413, "miroir_too_many_documents", "invalid_request");
    let r = api
        .post(
            "/indexes/movies/documents/delete-batch",
            json!([0, 1, 2, 3, 4, 5]),
        )
        .await;
    assert_error(&r, 413, "miroir_too_many_documents", "invalid_request");
    // Nothing written, no task recorded.
    assert_eq!(doc_counts(&f, "movies").await, before);
    assert_eq!(api.get("/tasks").await.body["total"], tasks_before);
    // At the limit it goes through.
    let batch: Vec<Value> = (100..105).map(|i| json!({"id": i, "title": "x"})).collect();
    api.write_ok(
        "POST",
        "/indexes/movies/documents",
        Some(Value::Array(batch)),
    )
    .await;
    assert_healthy(&api, "movies").await;
    f.shutdown().await;
}

#[tokio::test]
async fn request_timeout_answers_504_and_keeps_the_write() {
    let dir = tempfile::tempdir().unwrap();
    let (f, api) = fleet_tweaked(opts(&dir), |c| {
        c.server.request_timeout_ms = 300;
        // Slow nodes stay healthy: only the client request times out.
        c.health.timeout_ms = 5_000;
    })
    .await;
    seed(&api, 5).await;
    for i in 0..3 {
        set_faults(&f, i, json!({"latencyMs": 1200})).await;
    }
    let started = Instant::now();
    let r = api
        .post("/indexes/movies/search", json!({"q": "movie"}))
        .await;
    assert_error(&r, 504, "miroir_request_timeout", "system");
    // Answered at the request timeout, well before any node.
    assert!(started.elapsed() < Duration::from_millis(1100));
    // A write that times out after being sent is still decided and recorded as a task.
    let tasks_before = api.get("/tasks").await.body["total"].as_u64().unwrap();
    let r = api
        .post(
            "/indexes/movies/documents",
            json!([{"id": 900, "title": "late write"}]),
        )
        .await;
    assert_error(&r, 504, "miroir_request_timeout", "system");
    assert!(r.body["message"].as_str().unwrap().contains("GET /tasks"));
    for i in 0..3 {
        set_faults(&f, i, json!({"latencyMs": 0})).await;
    }
    // The write finishes in the background: a new task appears and succeeds, the document is there.
    let mut found = None;
    for _ in 0..300 {
        let t = api.get("/tasks?types=documentAdditionOrUpdate").await;
        if t.body["total"].as_u64().unwrap_or(0) + 1 > tasks_before
            && t.body["results"][0]["details"]["receivedDocuments"] == 1
        {
            found = t.body["results"][0]["uid"].as_u64();
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let uid = found.expect("the timed-out write is recorded as a task");
    let t = api.wait_task(uid).await;
    assert_eq!(t["status"], "succeeded", "{t}");
    let d = api.get("/indexes/movies/documents/900").await;
    assert_eq!(d.status, 200, "{}", d.body);
    assert_eq!(d.body["title"], "late write");
    assert_eq!(doc_counts(&f, "movies").await.iter().sum::<u64>(), 12);
    assert_healthy(&api, "movies").await;
    f.shutdown().await;
}

#[tokio::test]
async fn slow_clients_are_cut() {
    let dir = tempfile::tempdir().unwrap();
    let (f, api) = fleet_tweaked(opts(&dir), |c| {
        c.server.header_read_timeout_ms = 300;
        c.server.body_read_timeout_ms = 300;
    })
    .await;
    seed(&api, 3).await;
    // A head that never ends: the connection is closed, without an answer to a request never made.
    let started = Instant::now();
    let (raw, closed) = raw_exchange(
        f.proxy.addr,
        b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: 1",
        Duration::from_secs(5),
    )
    .await;
    assert!(closed, "the slow head was not cut: {raw}");
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(!raw.contains("200 OK"), "{raw}");
    // A body that never ends: 408 miroir_body_timeout, then the connection is closed.
    let started = Instant::now();
    let (raw, closed) = raw_exchange(
        f.proxy.addr,
        b"POST /indexes/movies/search HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"q\":",
        Duration::from_secs(5),
    )
    .await;
    assert!(raw.starts_with("HTTP/1.1 408"), "{raw}");
    let body = json_of(&raw);
    assert_eq!(body["code"], "miroir_body_timeout", "{raw}");
    assert_eq!(body["type"], "invalid_request");
    assert!(closed);
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_healthy(&api, "movies").await;
    f.shutdown().await;
}

#[tokio::test]
async fn concurrency_limit_refuses_with_retry_after_and_never_queues() {
    let dir = tempfile::tempdir().unwrap();
    let (f, api) = fleet_tweaked(opts(&dir), |c| c.server.max_concurrent_requests = 2).await;
    seed(&api, 5).await;
    for i in 0..3 {
        set_faults(&f, i, json!({"latencyMs": 400})).await;
    }
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let api = api.clone();
        set.spawn(async move {
            api.post("/indexes/movies/search", json!({"q": "movie"}))
                .await
        });
    }
    // Health and metrics stay reachable while every slot is taken.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(api.get("/health").await.status, 200);
    assert_eq!(api.get("/metrics").await.status, 200);
    let (mut ok, mut refused) = (0, 0);
    while let Some(r) = set.join_next().await {
        let r = r.unwrap();
        if r.status == 200 {
            ok += 1;
        } else {
            assert_error(&r, 503, "miroir_overloaded", "system");
            assert_eq!(r.headers["retry-after"], "1");
            refused += 1;
        }
    }
    assert_eq!(ok + refused, 8);
    assert!(ok >= 2, "{ok} served");
    assert!(refused >= 1, "nothing refused");
    for i in 0..3 {
        set_faults(&f, i, json!({"latencyMs": 0})).await;
    }
    // Slots come back.
    assert_healthy(&api, "movies").await;
    assert_healthy(&api, "movies").await;
    f.shutdown().await;
}

#[tokio::test]
async fn oversized_node_answers_count_as_failures() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = opts(&dir);
    o.unavailable_shard_policy = "error".into();
    let (f, api) = fleet_tweaked(o, |c| c.server.max_node_response_bytes = 2048).await;
    seed(&api, 60).await;
    // Small answers pass.
    let r = api
        .post(
            "/indexes/movies/search",
            json!({"q": "kw7", "attributesToRetrieve": ["id"]}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["hits"][0]["id"], 7);
    // Every node's answer is above the limit: no node can serve, nothing made up.
    let r = api
        .post("/indexes/movies/search", json!({"q": "movie", "limit": 60}))
        .await;
    assert_error(&r, 503, "miroir_shard_unavailable", "system");
    // Still serving (small answers).
    assert_eq!(api.get("/health").await.status, 200);
    let r = api
        .post(
            "/indexes/movies/search",
            json!({"q": "kw9", "attributesToRetrieve": ["id"]}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    f.shutdown().await;
}
