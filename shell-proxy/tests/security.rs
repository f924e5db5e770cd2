//! Keys never leak: not in the proxy's logs (captured at TRACE level), not in any answer, whatever the
//! route class, the key sent, or what the nodes answer. Also: the admin routes never open without the
//! admin key, and the key comparison is the constant-time one.

mod common;

use common::*;
use miroir_core::config::Secret;
use miroir_proxy::dev::{DevOptions, DEV_NODE_KEY};
use serde_json::{json, Value};
use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

const MASTER: &str = "master-SECRET-aaaa1111";
const ADMIN: &str = "admin-SECRET-bbbb2222";
const WRONG: &str = "wrong-SECRET-cccc3333";
const WRONG_NODE_KEY: &str = "node-SECRET-dddd4444";

#[derive(Clone)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Every log line of this test binary, from the first call on.
fn logs() -> &'static Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let w = Capture(Arc::clone(&buf));
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || w.clone())
            .finish();
        tracing::subscriber::set_global_default(subscriber)
            .expect("one subscriber per test binary");
        buf
    })
}

fn assert_no_secret(what: &str, text: &str) {
    for secret in [MASTER, ADMIN, WRONG, DEV_NODE_KEY, WRONG_NODE_KEY] {
        assert!(!text.contains(secret), "{what} contains {secret:?}: {text}");
    }
}

fn with_key(api: &Api, key: Option<&str>) -> Api {
    let mut a = api.clone();
    a.key = key.map(str::to_string);
    a
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_never_reach_logs_or_answers() {
    let logs = logs();
    let dir = tempfile::tempdir().unwrap();
    let mut o = DevOptions::new(3, dir.path().join("t.db").to_string_lossy().into_owned());
    o.replication_factor = 2;
    o.master_key = MASTER.into();
    let (f, api) = fleet_tweaked(o, |c| c.admin.api_key = Secret::new(ADMIN)).await;
    let master = with_key(&api, Some(MASTER));
    master
        .write_ok(
            "POST",
            "/indexes/movies/documents",
            Some(Value::Array(movies(10))),
        )
        .await;

    let mut answers = Vec::new();
    // Every route class with every kind of key, right or wrong.
    let routes: [(&str, &str, Option<Value>); 12] = [
        ("GET", "/indexes", None),
        ("GET", "/indexes/movies", None),
        (
            "POST",
            "/indexes/movies/search",
            Some(json!({"q": "movie"})),
        ),
        (
            "POST",
            "/indexes/movies/documents",
            Some(json!([{"id": 99}])),
        ),
        ("GET", "/indexes/movies/documents/1", None),
        ("GET", "/indexes/movies/settings", None),
        ("GET", "/tasks", None),
        ("GET", "/keys", None),
        ("GET", "/metrics", None),
        ("GET", "/version", None),
        ("GET", "/_miroir/ready", None),
        ("GET", "/_miroir/topology", None),
    ];
    for key in [
        None,
        Some(WRONG),
        Some(DEV_NODE_KEY),
        Some(MASTER),
        Some(ADMIN),
    ] {
        let a = with_key(&api, key);
        for (method, path, body) in &routes {
            let r = a.call(method, path, body.clone()).await;
            if path.starts_with("/_miroir") && key != Some(ADMIN) {
                // Never reachable without the admin key.
                assert!(
                    r.status == 401 || r.status == 403,
                    "{path} with {key:?}: {} {}",
                    r.status,
                    r.body
                );
            }
            answers.push(format!(
                "{method} {path} {:?} {:?} {}",
                key.map(|_| "k"),
                r.headers,
                r.body
            ));
        }
    }
    // Nodes answering garbage, errors or nothing: what reaches the client and the logs.
    for mode in ["garbage", "truncated", "wrongStatus", "status", "drop"] {
        for i in 0..3 {
            set_faults(&f, i, json!({"failRate": 1.0, "failMode": mode})).await;
        }
        for (method, path, body) in &routes[..7] {
            let r = master.call(method, path, body.clone()).await;
            answers.push(format!("{mode} {method} {path} {:?} {}", r.headers, r.body));
        }
        for i in 0..3 {
            set_faults(&f, i, json!({"failRate": 0.0, "failMode": "status"})).await;
        }
    }
    f.shutdown().await;

    // A proxy holding the wrong node key: the nodes refuse it, and their refusals reach the client
    // without any key in them.
    let dir = tempfile::tempdir().unwrap();
    let mut o = DevOptions::new(2, dir.path().join("t.db").to_string_lossy().into_owned());
    o.replication_factor = 2;
    o.master_key = MASTER.into();
    let (f, api) = fleet_tweaked(o, |c| {
        c.admin.api_key = Secret::new(ADMIN);
        c.node_master_key = Secret::new(WRONG_NODE_KEY);
    })
    .await;
    let master = with_key(&api, Some(MASTER));
    for (method, path, body) in &routes[..10] {
        let r = master.call(method, path, body.clone()).await;
        assert_ne!(r.status, 0);
        answers.push(format!(
            "wrong node key {method} {path} {:?} {}",
            r.headers, r.body
        ));
    }
    f.shutdown().await;

    for a in &answers {
        assert_no_secret("an answer", a);
    }
    let text = String::from_utf8_lossy(&logs.lock().unwrap()).into_owned();
    assert!(text.contains("request"), "the logs were captured: {text}");
    assert!(
        text.contains("status=403") || text.contains("status: 403"),
        "wrong keys were logged as requests"
    );
    assert_no_secret("the logs", &text);
}

#[test]
fn key_comparison_is_constant_time_and_exact() {
    use miroir_proxy::auth::keys_match;
    assert!(keys_match(MASTER, MASTER));
    assert!(!keys_match(MASTER, ADMIN));
    assert!(!keys_match(&MASTER[..MASTER.len() - 1], MASTER));
    assert!(!keys_match(&format!("{MASTER}x"), MASTER));
    assert!(!keys_match("", MASTER));
}
