//! Shared helpers of the fleet integration tests: a small HTTP client and task polling.
#![allow(dead_code)]

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use miroir_proxy::dev::{self, DevFleet, DevOptions};
use serde_json::{json, Value};
use std::time::Duration;

/// A response: status, headers, JSON body (`Null` when empty).
pub struct Resp {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Value,
}

/// A client for one base URL.
#[derive(Clone)]
pub struct Api {
    pub base: String,
    client: Client<HttpConnector, Full<Bytes>>,
    pub key: Option<String>,
}

impl Api {
    pub fn new(base: String) -> Api {
        Api {
            base,
            client: Client::builder(TokioExecutor::new()).build_http(),
            key: None,
        }
    }

    pub async fn raw(&self, method: &str, path: &str, ct: Option<&str>, body: Vec<u8>) -> Resp {
        let mut req = hyper::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base));
        if let Some(ct) = ct {
            req = req.header("Content-Type", ct);
        }
        if let Some(k) = &self.key {
            req = req.header("Authorization", format!("Bearer {k}"));
        }
        let resp = self
            .client
            .request(req.body(Full::new(Bytes::from(body))).unwrap())
            .await
            .expect("the proxy answers");
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        };
        Resp {
            status,
            headers,
            body,
        }
    }

    pub async fn call(&self, method: &str, path: &str, body: Option<Value>) -> Resp {
        match body {
            Some(b) => {
                self.raw(
                    method,
                    path,
                    Some("application/json"),
                    serde_json::to_vec(&b).unwrap(),
                )
                .await
            }
            None => self.raw(method, path, None, Vec::new()).await,
        }
    }

    pub async fn get(&self, path: &str) -> Resp {
        self.call("GET", path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Resp {
        self.call("POST", path, Some(body)).await
    }

    /// Polls a task until it is finished; returns the task object.
    pub async fn wait_task(&self, uid: u64) -> Value {
        for _ in 0..1_000 {
            let r = self.get(&format!("/tasks/{uid}")).await;
            assert_eq!(r.status, 200, "GET /tasks/{uid}: {}", r.body);
            let s = r.body["status"].as_str().unwrap_or_default();
            if matches!(s, "succeeded" | "failed" | "canceled") {
                return r.body;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("task {uid} never finished");
    }

    /// Sends a write, expects 202, waits for success.
    pub async fn write_ok(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let r = self.call(method, path, body).await;
        assert_eq!(r.status, 202, "{method} {path}: {}", r.body);
        let t = self.wait_task(r.body["taskUid"].as_u64().unwrap()).await;
        assert_eq!(t["status"], "succeeded", "{method} {path}: {t}");
        t
    }
}

/// Sends the proxies' and nodes' logs (`RUST_LOG`, default `warn`) to the test's captured output, so a
/// failing test prints what the proxies saw (a passing one prints nothing). Installed once per test binary;
/// the runtime threads of a test inherit its capture. A binary that installs its own subscriber before its
/// first fleet (`security.rs` records every line) keeps it.
pub fn init_logs() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let filter = tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_test_writer()
            .with_ansi(false)
            .try_init();
    });
}

/// Starts a fleet of model nodes plus the proxy.
pub async fn fleet(nodes: usize, rf: u32, rg: u32, store: &std::path::Path) -> (DevFleet, Api) {
    let mut o = DevOptions::new(nodes, store.to_string_lossy().into_owned());
    o.replication_factor = rf;
    o.replica_groups = rg;
    o.shards = 16;
    fleet_with(o).await
}

pub async fn fleet_with(o: DevOptions) -> (DevFleet, Api) {
    init_logs();
    let f = dev::start(o).await.expect("the dev fleet starts");
    let api = Api::new(f.url());
    (f, api)
}

/// An API directly on one model node (with the dev node key).
pub fn node_api(f: &DevFleet, i: usize) -> Api {
    let mut a = Api::new(f.nodes[i].url());
    a.key = Some(dev::DEV_NODE_KEY.to_string());
    a
}

pub const GENRES: [&str; 5] = ["drama", "comedy", "action", "horror", "scifi"];

/// `n` movie documents with a unique keyword each, a genre, a year and a sku shared by pairs.
pub fn movies(n: usize) -> Vec<Value> {
    (0..n)
        .map(|i| {
            json!({
                "id": i,
                "title": format!("movie kw{i} {}", GENRES[i % 5]),
                "genre": GENRES[i % 5],
                "year": 1950 + (i % 70),
                "sku": format!("sku{}", i / 2),
            })
        })
        .collect()
}

/// Starts model nodes and a proxy whose configuration `tweak` adjusts first (limits, timeouts): the same
/// fleet as [`fleet_with`], with a hook on the parsed configuration.
pub async fn fleet_tweaked(
    o: DevOptions,
    tweak: impl FnOnce(&mut miroir_core::config::Config),
) -> (DevFleet, Api) {
    init_logs();
    let mut nodes = Vec::with_capacity(o.nodes);
    for i in 0..o.nodes {
        let node = miroir_sim::serve::spawn(
            "127.0.0.1:0".parse().unwrap(),
            miroir_sim::serve::ModelOptions {
                master_key: Some(dev::DEV_NODE_KEY.into()),
                seed: 0x5eed + i as u64,
                tick_ms: o.model_tick_ms,
                ..miroir_sim::serve::ModelOptions::default()
            },
        )
        .await
        .expect("a model node starts");
        nodes.push(node);
    }
    let addresses: Vec<String> = nodes.iter().map(|n| n.url()).collect();
    let yaml = dev::dev_config_yaml(&o, &addresses);
    let mut config = miroir_core::config::Config::from_yaml_str(&yaml, &|_| None).unwrap();
    tweak(&mut config);
    config
        .validate()
        .expect("the tweaked configuration is valid");
    // Port 0 (ephemeral) is set after validation, which refuses it in a file.
    config.server.port = o.port;
    let proxy = dev::start_proxy(config).await.expect("the proxy starts");
    let f = DevFleet {
        nodes,
        proxy,
        options: o,
    };
    let api = Api::new(f.url());
    (f, api)
}

/// Sends a request with extra headers (on top of the API's key); `body` is sent as is.
pub async fn send_with_headers(
    api: &Api,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> Resp {
    let client: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    let mut req = hyper::Request::builder()
        .method(method)
        .uri(format!("{}{path}", api.base));
    if let Some(k) = &api.key {
        req = req.header("Authorization", format!("Bearer {k}"));
    }
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = client
        .request(req.body(Full::new(Bytes::from(body))).unwrap())
        .await
        .expect("the proxy answers");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
    };
    Resp {
        status,
        headers,
        body,
    }
}

/// Sets faults on model node `i` through its control route (`/_model/faults`).
pub async fn set_faults(f: &DevFleet, i: usize, patch: Value) {
    let r = Api::new(f.nodes[i].url())
        .post("/_model/faults", patch)
        .await;
    assert_eq!(r.status, 200, "faults: {}", r.body);
}

/// `numberOfDocuments` of `index` on every node (0 where the index does not exist).
pub async fn doc_counts(f: &DevFleet, index: &str) -> Vec<u64> {
    let mut counts = Vec::new();
    for i in 0..f.nodes.len() {
        let r = node_api(f, i).get(&format!("/indexes/{index}/stats")).await;
        counts.push(r.body["numberOfDocuments"].as_u64().unwrap_or(0));
    }
    counts
}

/// Asserts the proxy is healthy: `/health` answers 200 and a search on `index` answers 200.
pub async fn assert_healthy(api: &Api, index: &str) {
    let h = api.get("/health").await;
    assert_eq!(h.status, 200, "health: {}", h.body);
    let s = api
        .post(&format!("/indexes/{index}/search"), json!({"q": "movie"}))
        .await;
    assert_eq!(s.status, 200, "search after the case: {}", s.body);
}

/// Asserts a Meilisearch-shaped error: status, code, type, and a link ending with the code.
pub fn assert_error(r: &Resp, status: u16, code: &str, error_type: &str) {
    assert_eq!(r.status, status, "status: {}", r.body);
    assert_eq!(r.body["code"], code, "code: {}", r.body);
    assert_eq!(r.body["type"], error_type, "type: {}", r.body);
    assert!(
        r.body["link"].as_str().is_some_and(|l| l.ends_with(code)),
        "link: {}",
        r.body
    );
    assert!(r.body["message"].is_string(), "message: {}", r.body);
}

/// A JSON request with extra headers to `base` (no key): `body` as JSON with its Content-Type.
pub async fn send_json_with_headers(
    base: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<Value>,
) -> Resp {
    let mut all: Vec<(&str, &str)> = headers.to_vec();
    if body.is_some() {
        all.push(("Content-Type", "application/json"));
    }
    let bytes = body
        .map(|b| serde_json::to_vec(&b).unwrap())
        .unwrap_or_default();
    send_with_headers(&Api::new(base.to_string()), method, path, &all, bytes).await
}

/// The `id`s of a search answer's hits, as integers, sorted.
pub fn sorted_hit_ids(body: &Value) -> Vec<u64> {
    let mut v: Vec<u64> = body["hits"]
        .as_array()
        .unwrap_or_else(|| panic!("no hits: {body}"))
        .iter()
        .map(|h| h["id"].as_u64().unwrap())
        .collect();
    v.sort_unstable();
    v
}

/// A writer of add / update / delete operations on ids `from..from + ids` of `index`, one at a time
/// (documents `{"id", "title": "<title> <id>", "v": <op number>}`), recording what each acknowledged
/// (202) operation leaves; returns the expected final state and the number of operations.
pub fn spawn_writer(
    api: Api,
    index: &'static str,
    title: &'static str,
    from: u64,
    ids: u64,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> tokio::task::JoinHandle<(std::collections::BTreeMap<u64, Option<Value>>, u64)> {
    use std::sync::atomic::Ordering;
    tokio::spawn(async move {
        let mut expected = std::collections::BTreeMap::new();
        let mut rng: u64 = 0x9e37_79b9_7f4a_7c15 ^ from;
        let mut last_task = None;
        let mut n = 0u64;
        while !stop.load(Ordering::SeqCst) {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            let id = from + rng % ids;
            n += 1;
            let r = if rng.is_multiple_of(5) {
                let r = api
                    .post(
                        &format!("/indexes/{index}/documents/delete-batch"),
                        json!([id]),
                    )
                    .await;
                if r.status == 202 {
                    expected.insert(id, None);
                }
                r
            } else {
                let doc = json!({"id": id, "title": format!("{title} {id}"), "v": n});
                let r = api
                    .post(&format!("/indexes/{index}/documents"), json!([doc.clone()]))
                    .await;
                if r.status == 202 {
                    expected.insert(id, Some(doc));
                }
                r
            };
            assert_eq!(r.status, 202, "writer: {}", r.body);
            last_task = r.body["taskUid"].as_u64();
            // a bounded backlog: the nodes' task queues must not grow without end (a copy or migration
            // task queued behind thousands of client tasks would take minutes), so every 16 operations
            // the writer waits for its last one, as a client pacing itself on its tasks would
            if n.is_multiple_of(16) {
                if let Some(uid) = last_task {
                    api.wait_task(uid).await;
                }
            }
        }
        if let Some(uid) = last_task {
            let t = api.wait_task(uid).await;
            assert_eq!(t["status"], "succeeded", "{t}");
        }
        (expected, n)
    })
}

/// The API with the dev fleet's admin key (the `/_miroir` routes need it).
pub fn with_admin_key(api: &Api) -> Api {
    let mut a = api.clone();
    a.key = Some(dev::DEV_ADMIN_KEY.to_string());
    a
}

/// Every document of `index` on node `i`, by id (`_miroir_*` fields kept); empty when the node lacks the index.
pub async fn node_docs(
    f: &DevFleet,
    i: usize,
    index: &str,
) -> std::collections::BTreeMap<u64, Value> {
    let r = node_api(f, i)
        .get(&format!("/indexes/{index}/documents?limit=100000"))
        .await;
    if r.status == 404 {
        return std::collections::BTreeMap::new();
    }
    assert_eq!(r.status, 200, "node {i}: {}", r.body);
    docs_by_id(&r.body)
}

/// Creates `index` (primary key `id`) and adds `docs` through the proxy, waiting for both tasks; returns
/// the expected state by id.
pub async fn seed_docs(
    api: &Api,
    index: &str,
    docs: Vec<Value>,
) -> std::collections::BTreeMap<u64, Option<Value>> {
    api.write_ok(
        "POST",
        "/indexes",
        Some(json!({"uid": index, "primaryKey": "id"})),
    )
    .await;
    api.write_ok(
        "POST",
        &format!("/indexes/{index}/documents"),
        Some(Value::Array(docs.clone())),
    )
    .await;
    docs.into_iter()
        .map(|d| (d["id"].as_u64().unwrap(), Some(d)))
        .collect()
}

/// A model node outside the fleet (with the fleet's node key), to be added through the admin API.
pub async fn spare_node(seed: u64) -> miroir_sim::serve::ModelHandle {
    miroir_sim::serve::spawn(
        "127.0.0.1:0".parse().unwrap(),
        miroir_sim::serve::ModelOptions {
            master_key: Some(dev::DEV_NODE_KEY.into()),
            seed,
            tick_ms: 2,
            ..miroir_sim::serve::ModelOptions::default()
        },
    )
    .await
    .expect("a model node starts")
}

/// The proxy configuration of a dev fleet of `options` over `nodes` (as `dev::start` writes it).
pub fn dev_config(
    options: &DevOptions,
    nodes: &[miroir_sim::serve::ModelHandle],
) -> miroir_core::config::Config {
    let addresses: Vec<String> = nodes.iter().map(|n| n.url()).collect();
    let yaml = dev::dev_config_yaml(options, &addresses);
    miroir_core::config::Config::from_yaml_str(&yaml, &|_| None).unwrap()
}

/// Starts a second proxy on the fleet's nodes and store, with `tweak` applied to its configuration; its
/// API carries the admin key.
pub async fn second_proxy(
    f: &DevFleet,
    tweak: impl Fn(&mut miroir_core::config::Config),
) -> (dev::RunningProxy, Api) {
    let mut config = dev_config(&f.options, &f.nodes);
    config.server.port = 0;
    tweak(&mut config);
    let proxy = dev::start_proxy(config).await.unwrap();
    let api = with_admin_key(&Api::new(format!("http://{}", proxy.addr)));
    (proxy, api)
}

/// Every document of `index` listed through `api` (`extra`: more query parameters), by id.
pub async fn listed_docs(
    api: &Api,
    index: &str,
    extra: &str,
) -> std::collections::BTreeMap<u64, Value> {
    let r = api
        .get(&format!("/indexes/{index}/documents?limit=100000{extra}"))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    docs_by_id(&r.body)
}

/// The `results` of a documents listing, by id.
fn docs_by_id(listing: &Value) -> std::collections::BTreeMap<u64, Value> {
    listing["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| (d["id"].as_u64().unwrap(), d.clone()))
        .collect()
}

/// The ids of every document of `index` listed through `api`.
pub async fn listed_ids(api: &Api, index: &str) -> std::collections::BTreeSet<u64> {
    listed_docs(api, index, "&fields=id")
        .await
        .into_keys()
        .collect()
}

/// Starts a spare model node, adds it to the fleet's handles and asks `api` to add it to group 0 as `id`.
pub async fn add_spare_node(f: &mut DevFleet, api: &Api, seed: u64, id: &str) -> Resp {
    let spare = spare_node(seed).await;
    let url = spare.url();
    f.nodes.push(spare);
    api.post(
        "/_miroir/nodes",
        serde_json::json!({"id": id, "url": url, "replicaGroup": 0}),
    )
    .await
}

/// Starts a second proxy like [`second_proxy`] that advertises its URL (`server.advertise_url`), so the
/// other proxies forward to it the writes it must fence.
pub async fn advertising_proxy(
    f: &DevFleet,
    tweak: impl Fn(&mut miroir_core::config::Config),
) -> (dev::RunningProxy, Api) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    second_proxy(f, |c| {
        tweak(c);
        c.server.port = port;
        c.server.advertise_url = Some(format!("http://127.0.0.1:{port}"));
    })
    .await
}

/// Stops the fleet's proxy and starts a new one on the same store and nodes, configured with the first
/// `configured` nodes and `tweak` applied (a new instance: it takes over what the old one ran once the
/// old one's lease expired).
pub async fn restart_proxy(
    f: DevFleet,
    configured: usize,
    tweak: impl Fn(&mut miroir_core::config::Config),
) -> DevFleet {
    let DevFleet {
        nodes,
        proxy,
        options,
    } = f;
    proxy.shutdown().await;
    let mut config = dev_config(&options, &nodes[..configured]);
    config.server.port = 0;
    tweak(&mut config);
    let proxy = dev::start_proxy(config).await.unwrap();
    DevFleet {
        nodes,
        proxy,
        options,
    }
}
