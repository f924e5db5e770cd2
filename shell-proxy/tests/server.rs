//! End-to-end tests of the HTTP server: a real listener on an ephemeral port, a temporary SQLite task
//! store, a fake Meilisearch node for `/version`, and a real HTTP client.

use async_trait::async_trait;
use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::{TokioExecutor, TokioIo};
use miroir_core::config::Config;
use miroir_proxy::http_util::{json_response, ProxyResponse};
use miroir_proxy::routes::Route;
use miroir_proxy::server::{AppState, ProxyRequest, RouteHandler, Server};
use miroir_proxy::store::sqlite::SqliteStore;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

struct Running {
    addr: SocketAddr,
    metrics_addr: Option<SocketAddr>,
    stop: Option<oneshot::Sender<()>>,
    done: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
}

impl Running {
    async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        tokio::time::timeout(std::time::Duration::from_secs(10), self.done)
            .await
            .expect("server stops after the shutdown signal")
            .unwrap();
    }
}

/// A fake Meilisearch node answering `GET /version`; records the Authorization headers it sees.
async fn fake_node() -> (String, Arc<Mutex<Vec<String>>>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = format!("http://{}", l.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = Arc::clone(&seen);
    tokio::spawn(async move {
        loop {
            let Ok((sock, _)) = l.accept().await else {
                return;
            };
            let s = Arc::clone(&s);
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let s = Arc::clone(&s);
                    async move {
                        let auth = req
                            .headers()
                            .get("authorization")
                            .map(|v| v.to_str().unwrap().to_string())
                            .unwrap_or_default();
                        s.lock().unwrap().push(auth);
                        let body = if req.uri().path() == "/version" {
                            r#"{"commitSha":"abc","commitDate":"2026-01-01T00:00:00Z","pkgVersion":"1.50.0"}"#
                        } else {
                            "{}"
                        };
                        Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::from(
                            body,
                        ))))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(sock), svc)
                    .await;
            });
        }
    });
    (addr, seen)
}

/// Records what the server hands to the route handler.
struct Echo;

#[async_trait]
impl RouteHandler for Echo {
    async fn handle(&self, _state: &AppState, route: Route, req: ProxyRequest) -> ProxyResponse {
        json_response(
            200,
            &json!({
                "route": format!("{route:?}"),
                "body": String::from_utf8_lossy(&req.body),
                "query": req.uri.query(),
            }),
        )
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn start(
    nodes: &[&str],
    extra: &str,
    handler: Option<Arc<dyn RouteHandler>>,
    metrics_port: u16,
) -> Running {
    let dir = tempfile::tempdir().unwrap();
    let mut yaml = String::from("miroir:\n  master_key: mk\n  node_master_key: nodekey\n  replication_factor: 1\n  admin: {api_key: ak}\n  health: {timeout_ms: 500}\n  server: {bind: 127.0.0.1, max_body_bytes: 100}\n");
    yaml.push_str(extra);
    yaml.push_str("  nodes:\n");
    for (i, n) in nodes.iter().enumerate() {
        yaml.push_str(&format!("    - {{id: meili-{i}, address: '{n}'}}\n"));
    }
    let mut config = Config::from_yaml_str(&yaml, &|_| None).unwrap();
    config.server.port = 0;
    config.server.metrics_port = metrics_port;
    let store = Arc::new(
        SqliteStore::open(dir.path().join("miroir.db"))
            .await
            .unwrap(),
    );
    let state = Arc::new(AppState::new(config, store, handler));
    let server = Server::bind(state).await.unwrap();
    let addr = server.local_addr().unwrap();
    let metrics_addr = server.metrics_addr();
    let (tx, rx) = oneshot::channel::<()>();
    let done = tokio::spawn(server.run(async move {
        let _ = rx.await;
    }));
    Running {
        addr,
        metrics_addr,
        stop: Some(tx),
        done,
        _dir: dir,
    }
}

async fn call(
    addr: SocketAddr,
    method: Method,
    path: &str,
    key: Option<&str>,
    body: &[u8],
) -> (u16, HeaderMap, Bytes) {
    let client: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build(HttpConnector::new());
    let mut req = Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"));
    if let Some(k) = key {
        req = req.header("authorization", format!("Bearer {k}"));
    }
    if !body.is_empty() {
        req = req.header("content-type", "application/json");
    }
    let resp = client
        .request(req.body(Full::new(Bytes::copy_from_slice(body))).unwrap())
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, headers, body)
}

fn json_of(b: &Bytes) -> Value {
    serde_json::from_slice(b).unwrap_or_else(|e| panic!("not JSON ({e}): {b:?}"))
}

#[tokio::test]
async fn health_auth_and_unwired_routes() {
    let srv = start(&["http://127.0.0.1:1"], "", None, 0).await;
    let a = srv.addr;

    let (s, h, b) = call(a, Method::GET, "/health", None, b"").await;
    assert_eq!(s, 200);
    assert_eq!(h["content-type"], "application/json");
    assert_eq!(json_of(&b), json!({"status": "available"}));

    let (s, h, b) = call(a, Method::GET, "/indexes", None, b"").await;
    assert_eq!(s, 401);
    assert_eq!(h["content-type"], "application/json");
    assert_eq!(
        json_of(&b),
        json!({
            "message": "The Authorization header is missing. It must use the bearer authorization method.",
            "code": "missing_authorization_header",
            "type": "auth",
            "link": "https://docs.meilisearch.com/errors#missing_authorization_header"
        })
    );
    let (s, _, b) = call(a, Method::GET, "/indexes", Some("wrong"), b"").await;
    assert_eq!(s, 403);
    assert_eq!(
        json_of(&b),
        json!({
            "message": "The provided API key is invalid.",
            "code": "invalid_api_key",
            "type": "auth",
            "link": "https://docs.meilisearch.com/errors#invalid_api_key"
        })
    );
    // The admin key is not a client key.
    let (s, _, _) = call(a, Method::GET, "/indexes", Some("ak"), b"").await;
    assert_eq!(s, 403);

    // Known but not wired (no handler): 404 with an empty body, like an unknown route.
    let (s, _, b) = call(a, Method::GET, "/indexes", Some("mk"), b"").await;
    assert_eq!(s, 404);
    assert!(b.is_empty());
    let (s, _, b) = call(a, Method::GET, "/nope", None, b"").await;
    assert_eq!(s, 404);
    assert!(b.is_empty());

    // Wrong method: 405 with Allow.
    let (s, h, _) = call(a, Method::DELETE, "/health", None, b"").await;
    assert_eq!(s, 405);
    assert_eq!(h["allow"], "GET");

    // A bad index uid is reported after authentication.
    let (s, _, _) = call(a, Method::GET, "/indexes/bad!uid/search", None, b"").await;
    assert_eq!(s, 401);
    let (s, _, b) = call(a, Method::GET, "/indexes/bad!uid/search", Some("mk"), b"").await;
    assert_eq!(s, 400);
    assert_eq!(json_of(&b)["code"], "invalid_index_uid");
    srv.stop().await;
}

#[tokio::test]
async fn payload_too_large() {
    let srv = start(&["http://127.0.0.1:1"], "", Some(Arc::new(Echo)), 0).await;
    let a = srv.addr;
    let big = vec![b'x'; 101];
    // Authentication comes first.
    let (s, _, _) = call(a, Method::POST, "/indexes/movies/documents", None, &big).await;
    assert_eq!(s, 401);
    let (s, h, b) = call(
        a,
        Method::POST,
        "/indexes/movies/documents",
        Some("mk"),
        &big,
    )
    .await;
    assert_eq!(s, 413);
    assert_eq!(h["content-type"], "application/json");
    assert_eq!(
        json_of(&b),
        json!({
            "message": "The provided payload reached the size limit. The maximum accepted payload size is 100 B.",
            "code": "payload_too_large",
            "type": "invalid_request",
            "link": "https://docs.meilisearch.com/errors#payload_too_large"
        })
    );
    // At the limit it goes through to the handler, with the body and the query.
    let ok = vec![b'y'; 100];
    let (s, _, b) = call(
        a,
        Method::POST,
        "/indexes/movies/documents?primaryKey=id",
        Some("mk"),
        &ok,
    )
    .await;
    assert_eq!(s, 200);
    let v = json_of(&b);
    assert_eq!(v["route"], "AddDocuments(IndexUid(\"movies\"))");
    assert_eq!(v["body"], "y".repeat(100));
    assert_eq!(v["query"], "primaryKey=id");
    srv.stop().await;
}

#[tokio::test]
async fn metrics_endpoint() {
    let mport = free_port();
    let srv = start(&["http://127.0.0.1:1"], "", None, mport).await;
    let a = srv.addr;
    call(a, Method::GET, "/health", None, b"").await;
    call(a, Method::GET, "/indexes", None, b"").await;
    let (s, _, _) = call(a, Method::GET, "/metrics", None, b"").await;
    assert_eq!(s, 401);
    let (s, h, b) = call(a, Method::GET, "/metrics", Some("mk"), b"").await;
    assert_eq!(s, 200);
    assert!(h["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    let text = String::from_utf8(b.to_vec()).unwrap();
    assert!(
        text.contains(
            "miroir_http_requests_total{method=\"GET\",route=\"health\",status=\"200\"} 1"
        ),
        "{text}"
    );
    assert!(
        text.contains(
            "miroir_http_requests_total{method=\"GET\",route=\"indexes\",status=\"401\"} 1"
        ),
        "{text}"
    );
    assert!(text.contains("miroir_http_request_duration_seconds_bucket"));
    // Only the /metrics request itself is in flight.
    assert!(text.contains("miroir_http_requests_in_flight 1"), "{text}");

    // The metrics listener: /metrics and /health without a key, nothing else.
    let m = srv.metrics_addr.expect("metrics listener bound");
    assert_eq!(m.port(), mport);
    let (s, _, b) = call(m, Method::GET, "/metrics", None, b"").await;
    assert_eq!(s, 200);
    assert!(String::from_utf8_lossy(&b).contains("miroir_http_requests_total"));
    let (s, _, _) = call(m, Method::GET, "/health", None, b"").await;
    assert_eq!(s, 200);
    let (s, _, _) = call(m, Method::GET, "/indexes", Some("mk"), b"").await;
    assert_eq!(s, 404);
    let (s, _, _) = call(m, Method::GET, "/_miroir/ready", Some("ak"), b"").await;
    assert_eq!(s, 404);
    srv.stop().await;
}

#[tokio::test]
async fn admin_ready_needs_the_admin_key() {
    let srv = start(&["http://127.0.0.1:1"], "", None, 0).await;
    let a = srv.addr;
    let (s, _, b) = call(a, Method::GET, "/_miroir/ready", None, b"").await;
    assert_eq!(s, 401);
    assert_eq!(json_of(&b)["code"], "missing_authorization_header");
    let (s, _, b) = call(a, Method::GET, "/_miroir/ready", Some("mk"), b"").await;
    assert_eq!(s, 403);
    assert_eq!(json_of(&b)["code"], "invalid_api_key");
    let (s, _, b) = call(a, Method::GET, "/_miroir/ready", Some("ak"), b"").await;
    assert_eq!(s, 200);
    assert_eq!(
        json_of(&b),
        json!({"status": "ready", "taskStore": "sqlite"})
    );
    // Unknown admin paths do not reveal themselves without the key.
    let (s, _, _) = call(a, Method::POST, "/_miroir/whatever", None, b"").await;
    assert_eq!(s, 401);
    let (s, _, b) = call(a, Method::POST, "/_miroir/whatever", Some("ak"), b"").await;
    assert_eq!(s, 404);
    assert!(b.is_empty());
    srv.stop().await;
}

#[tokio::test]
async fn admin_disabled_is_never_reachable() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = "miroir:\n  master_key: mk\n  replication_factor: 1\n  admin: {enabled: false, api_key: ak}\n  server: {bind: 127.0.0.1}\n  nodes: [{id: a, address: 'http://127.0.0.1:1'}]\n";
    let mut config = Config::from_yaml_str(yaml, &|_| None).unwrap();
    config.server.port = 0;
    config.server.metrics_port = 0;
    let store = Arc::new(SqliteStore::open(dir.path().join("m.db")).await.unwrap());
    let server = Server::bind(Arc::new(AppState::new(config, store, None)))
        .await
        .unwrap();
    let a = server.local_addr().unwrap();
    let (tx, rx) = oneshot::channel::<()>();
    let done = tokio::spawn(server.run(async move {
        let _ = rx.await;
    }));
    let (s, _, _) = call(a, Method::GET, "/_miroir/ready", Some("ak"), b"").await;
    assert_eq!(s, 403);
    let _ = tx.send(());
    done.await.unwrap();
}

#[tokio::test]
async fn version_comes_from_the_first_node_that_answers() {
    let (node, seen) = fake_node().await;
    // The first node is down: the proxy moves on to the next.
    let srv = start(&["http://127.0.0.1:1", &node], "", None, 0).await;
    let (s, _, _) = call(srv.addr, Method::GET, "/version", None, b"").await;
    assert_eq!(s, 401);
    let (s, h, b) = call(srv.addr, Method::GET, "/version", Some("mk"), b"").await;
    assert_eq!(s, 200);
    assert_eq!(h["content-type"], "application/json");
    assert_eq!(json_of(&b)["pkgVersion"], "1.50.0");
    assert_eq!(seen.lock().unwrap().as_slice(), ["Bearer nodekey"]);
    let (_, _, metrics) = call(srv.addr, Method::GET, "/metrics", Some("mk"), b"").await;
    let text = String::from_utf8_lossy(&metrics);
    assert!(
        text.contains("miroir_node_requests_total{node=\"meili-0\",outcome=\"connect_error\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("miroir_node_requests_total{node=\"meili-1\",outcome=\"ok\"} 1"),
        "{text}"
    );
    srv.stop().await;

    // No node answers: 503 miroir_no_node_available.
    let srv = start(&["http://127.0.0.1:1"], "", None, 0).await;
    let (s, _, b) = call(srv.addr, Method::GET, "/version", Some("mk"), b"").await;
    assert_eq!(s, 503);
    assert_eq!(json_of(&b)["code"], "miroir_no_node_available");
    srv.stop().await;
}

#[tokio::test]
async fn shutdown_stops_accepting() {
    let srv = start(&["http://127.0.0.1:1"], "", None, 0).await;
    let a = srv.addr;
    let (s, _, _) = call(a, Method::GET, "/health", None, b"").await;
    assert_eq!(s, 200);
    srv.stop().await;
    assert!(tokio::net::TcpStream::connect(a).await.is_err());
}
