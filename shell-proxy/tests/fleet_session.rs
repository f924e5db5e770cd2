//! Read-your-writes end to end: with slow nodes (each node task takes two 400 ms ticks), a search right
//! after an acknowledged write misses it, unless both carry the same `X-Miroir-Session`: the session's read
//! then waits until the write's node tasks in an acknowledging group succeeded.

mod common;

use common::*;
use miroir_proxy::dev::DevOptions;
use serde_json::{json, Value};

async fn send(base: &str, method: &str, path: &str, session: Option<&str>, body: Value) -> Resp {
    let headers: Vec<(&str, &str)> = session
        .map(|s| ("X-Miroir-Session", s))
        .into_iter()
        .collect();
    send_json_with_headers(base, method, path, &headers, Some(body)).await
}

fn hits(r: &Resp) -> usize {
    r.body["hits"].as_array().map_or(0, Vec::len)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_reads_its_own_writes() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = DevOptions::new(2, dir.path().join("m.db").to_string_lossy().into_owned());
    o.replication_factor = 2;
    o.model_tick_ms = 400;
    let (f, api) = fleet_with(o).await;
    api.write_ok(
        "POST",
        "/indexes",
        Some(json!({"uid": "movies", "primaryKey": "id"})),
    )
    .await;
    // the index's initial node settings are applied after its creation task: wait for them on every node
    for i in 0..2 {
        let mut ready = false;
        for _ in 0..100 {
            let st = node_api(&f, i).get("/indexes/movies/settings").await;
            if st.body["filterableAttributes"]
                .as_array()
                .is_some_and(|a| a.iter().any(|x| x == "_miroir_shard"))
            {
                ready = true;
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        assert!(ready, "node {i} never got its initial settings");
    }

    // without a session: the acknowledged write is not visible yet
    let w = send(
        &api.base,
        "POST",
        "/indexes/movies/documents",
        None,
        json!([{"id": 1, "title": "alpha"}]),
    )
    .await;
    assert_eq!(w.status, 202, "{}", w.body);
    let r = send(
        &api.base,
        "POST",
        "/indexes/movies/search",
        None,
        json!({"q": "alpha"}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        hits(&r),
        0,
        "the nodes have not applied the write yet: {}",
        r.body
    );
    assert!(r.headers.get("x-miroir-session-wait").is_none());
    api.wait_task(w.body["taskUid"].as_u64().unwrap()).await;

    // with a session: the read waits for the session's write
    let w = send(
        &api.base,
        "POST",
        "/indexes/movies/documents",
        Some("s1"),
        json!([{"id": 2, "title": "bravo"}]),
    )
    .await;
    assert_eq!(w.status, 202, "{}", w.body);
    let r = send(
        &api.base,
        "POST",
        "/indexes/movies/search",
        Some("s1"),
        json!({"q": "bravo"}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(hits(&r), 1, "{}", r.body);
    assert_eq!(r.headers["x-miroir-session-wait"], "ready");

    // another session does not wait for s1's writes
    let w = send(
        &api.base,
        "POST",
        "/indexes/movies/documents",
        Some("s1"),
        json!([{"id": 3, "title": "charlie"}]),
    )
    .await;
    assert_eq!(w.status, 202);
    let other = send(
        &api.base,
        "POST",
        "/indexes/movies/search",
        Some("s2"),
        json!({"q": "charlie"}),
    )
    .await;
    assert_eq!(other.headers["x-miroir-session-wait"], "none");
    assert_eq!(hits(&other), 0, "{}", other.body);
    let mine = send(
        &api.base,
        "GET",
        "/indexes/movies/documents/3",
        Some("s1"),
        Value::Null,
    )
    .await;
    assert_eq!(mine.status, 200, "{}", mine.body);
    assert_eq!(mine.body["title"], "charlie");
    f.shutdown().await;
}

/// The wait is bounded by `session.max_wait_ms`: with very slow nodes the read goes ahead after it, saying
/// so (`X-Miroir-Session-Wait: timeout`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_read_waits_at_most_max_wait() {
    use miroir_core::config::Config;
    use miroir_proxy::dev::{self, DevFleet};
    use miroir_sim::serve::ModelHandle;
    let dir = tempfile::tempdir().unwrap();
    let mut o = DevOptions::new(2, dir.path().join("m.db").to_string_lossy().into_owned());
    o.replication_factor = 2;
    o.model_tick_ms = 300;
    let DevFleet {
        nodes,
        proxy,
        options,
    } = dev::start(o).await.unwrap();
    proxy.shutdown().await;
    let addresses: Vec<String> = nodes.iter().map(ModelHandle::url).collect();
    let yaml = format!(
        "{}  session: {{ strategy: block, max_wait_ms: 50 }}\n",
        dev::dev_config_yaml(&options, &addresses)
    );
    let mut config = Config::from_yaml_str(&yaml, &|_| None).unwrap();
    config.server.port = 0;
    let proxy = dev::start_proxy(config).await.unwrap();
    let api = Api::new(format!("http://{}", proxy.addr));
    api.write_ok(
        "POST",
        "/indexes",
        Some(json!({"uid": "movies", "primaryKey": "id"})),
    )
    .await;
    let w = send(
        &api.base,
        "POST",
        "/indexes/movies/documents",
        Some("s"),
        json!([{"id": 1, "title": "slow"}]),
    )
    .await;
    assert_eq!(w.status, 202, "{}", w.body);
    let r = send(
        &api.base,
        "GET",
        "/indexes/movies/documents/1",
        Some("s"),
        Value::Null,
    )
    .await;
    assert_eq!(r.headers["x-miroir-session-wait"], "timeout", "{}", r.body);
    proxy.shutdown().await;
    for n in nodes {
        n.shutdown().await;
    }
}
