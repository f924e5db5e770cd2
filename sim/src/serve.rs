//! The node model over HTTP: one [`Node`] behind a mutex, served by tokio + hyper 1, with a background
//! scheduler and fault injection, so the proxy and its tests can talk to "Meilisearch nodes" without a
//! Meilisearch binary.
//!
//! States of a served node: `Up` (requests reach the model) and `Down` (every connection and request is
//! dropped without an answer, as a killed process would). Faults apply per request while up: an added
//! latency, and a failure rate at which the request fails instead of reaching the model — answered
//! `503` with a Meilisearch-shaped body, with the connection dropped, with a `200` whose body is not
//! JSON (`garbage`), or with a status no Meilisearch route answers and a body of the wrong shape
//! (`wrongStatus`) ([`FailMode`]). One mode differs: with `truncated` the request DOES reach the model
//! (a write is applied), and its answer is cut in half before it is sent (a node that dies mid-answer).
//!
//! Tasks run asynchronously like a real node: the scheduler wakes every `tick_ms`; each tick either starts
//! the next enqueued task or finishes the one processing, so a task is observably `enqueued`, then
//! `processing`, then `succeeded`/`failed`.
//!
//! Control route (never subject to faults, answered even while down, no authentication):
//! - `GET /_model/faults`: the current faults, `{"latencyMs":0,"failRate":0.0,"failMode":"status","down":false}`.
//! - `POST /_model/faults` with any subset of those fields: updates them and answers the new faults.
//!
//! Invariants: a request either reaches the model exactly once or not at all (a fault is decided before
//! the model sees it; with `truncated` it reaches it and only the answer is damaged); randomness comes only from the seed in [`ModelOptions`].

use crate::model::{Method, Node, Request};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How an injected failure looks to the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailMode {
    /// `503` with a Meilisearch-shaped error body.
    Status,
    /// The connection is closed without an answer.
    Drop,
    /// `200` with `content-type: application/json` and a body that is not JSON.
    Garbage,
    /// The model handles the request; its answer keeps its status but only the first half of its body.
    Truncated,
    /// `418` with a JSON body that is neither a Meilisearch answer nor a Meilisearch error.
    WrongStatus,
}

impl FailMode {
    fn as_str(self) -> &'static str {
        match self {
            FailMode::Status => "status",
            FailMode::Drop => "drop",
            FailMode::Garbage => "garbage",
            FailMode::Truncated => "truncated",
            FailMode::WrongStatus => "wrongStatus",
        }
    }

    fn parse(s: &str) -> Option<FailMode> {
        match s {
            "status" => Some(FailMode::Status),
            "drop" => Some(FailMode::Drop),
            "garbage" => Some(FailMode::Garbage),
            "truncated" => Some(FailMode::Truncated),
            "wrongStatus" => Some(FailMode::WrongStatus),
            _ => None,
        }
    }
}

/// The faults a served node injects.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Faults {
    /// Added to every request before it reaches the model.
    pub latency_ms: u64,
    /// Probability (0.0–1.0) that a request fails instead of reaching the model.
    pub fail_rate: f64,
    /// What a failure looks like.
    pub fail_mode: FailMode,
    /// When true, every request is dropped without an answer.
    pub down: bool,
}

impl Default for Faults {
    fn default() -> Self {
        Faults {
            latency_ms: 0,
            fail_rate: 0.0,
            fail_mode: FailMode::Status,
            down: false,
        }
    }
}

impl Faults {
    /// The JSON the control route answers.
    pub fn to_json(&self) -> Value {
        json!({
            "latencyMs": self.latency_ms,
            "failRate": self.fail_rate,
            "failMode": self.fail_mode.as_str(),
            "down": self.down,
        })
    }

    /// Applies the fields present in `patch` (see the module documentation); unknown or mistyped fields
    /// are an error and change nothing.
    pub fn apply_json(&self, patch: &Value) -> Result<Faults, String> {
        let obj = patch
            .as_object()
            .ok_or_else(|| "the body must be a JSON object".to_string())?;
        let mut next = *self;
        for (k, v) in obj {
            match k.as_str() {
                "latencyMs" => {
                    next.latency_ms = v
                        .as_u64()
                        .ok_or_else(|| "`latencyMs` must be a non-negative integer".to_string())?
                }
                "failRate" => {
                    let r = v
                        .as_f64()
                        .filter(|r| (0.0..=1.0).contains(r))
                        .ok_or_else(|| "`failRate` must be a number in 0.0..=1.0".to_string())?;
                    next.fail_rate = r;
                }
                "failMode" => {
                    next.fail_mode = v
                        .as_str()
                        .and_then(FailMode::parse)
                        .ok_or_else(|| {
                            "`failMode` must be `status`, `drop`, `garbage`, `truncated` or `wrongStatus`"
                                .to_string()
                        })?
                }
                "down" => {
                    next.down = v
                        .as_bool()
                        .ok_or_else(|| "`down` must be a boolean".to_string())?
                }
                other => return Err(format!("unknown field `{other}`")),
            }
        }
        Ok(next)
    }
}

/// How to start a served node.
#[derive(Debug, Clone)]
pub struct ModelOptions {
    /// The node's master key (`None`: no authentication).
    pub master_key: Option<String>,
    /// The faults at start.
    pub faults: Faults,
    /// The scheduler period.
    pub tick_ms: u64,
    /// Seed of the failure-rate draws.
    pub seed: u64,
}

impl Default for ModelOptions {
    fn default() -> Self {
        ModelOptions {
            master_key: None,
            faults: Faults::default(),
            tick_ms: 2,
            seed: 0x5eed,
        }
    }
}

struct Shared {
    node: Mutex<Node>,
    faults: Mutex<Faults>,
    rng: Mutex<u64>,
}

impl Shared {
    /// Draws whether this request fails (xorshift64*, seeded).
    fn draw_failure(&self, rate: f64) -> bool {
        if rate <= 0.0 {
            return false;
        }
        let mut s = self.rng.lock().unwrap_or_else(|p| p.into_inner());
        let mut x = *s;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *s = x;
        let unit = (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64;
        unit < rate
    }

    fn faults(&self) -> Faults {
        *self.faults.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A running served node. Dropping the handle does not stop it; call [`ModelHandle::shutdown`].
pub struct ModelHandle {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl ModelHandle {
    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ip:port`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The current faults.
    pub fn faults(&self) -> Faults {
        self.shared.faults()
    }

    /// Replaces the faults.
    pub fn set_faults(&self, faults: Faults) {
        *self.shared.faults.lock().unwrap_or_else(|p| p.into_inner()) = faults;
    }

    /// Takes the node down (every request dropped) or brings it back.
    pub fn set_down(&self, down: bool) {
        let mut f = self.faults();
        f.down = down;
        self.set_faults(f);
    }

    /// Runs `f` on the model (inspection in tests).
    pub fn with_node<R>(&self, f: impl FnOnce(&mut Node) -> R) -> R {
        let mut node = self.shared.node.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut node)
    }

    /// Stops accepting, closes every open connection and stops the scheduler.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Binds `addr` (port 0: an ephemeral port) and serves one model node on it.
pub async fn spawn(addr: SocketAddr, options: ModelOptions) -> std::io::Result<ModelHandle> {
    let listener = TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    let shared = Arc::new(Shared {
        node: Mutex::new(Node::new(options.master_key.as_deref())),
        faults: Mutex::new(options.faults),
        rng: Mutex::new(options.seed.max(1)),
    });
    let (stop, stop_rx) = watch::channel(false);
    let scheduler = tokio::spawn(scheduler(
        Arc::clone(&shared),
        options.tick_ms.max(1),
        stop_rx.clone(),
    ));
    let acceptor = tokio::spawn(accept_loop(listener, Arc::clone(&shared), stop_rx));
    Ok(ModelHandle {
        addr,
        shared,
        stop,
        tasks: vec![scheduler, acceptor],
    })
}

async fn scheduler(shared: Arc<Shared>, tick_ms: u64, mut stop: watch::Receiver<bool>) {
    let mut interval = tokio::time::interval(Duration::from_millis(tick_ms));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = interval.tick() => {
                let mut node = shared.node.lock().unwrap_or_else(|p| p.into_inner());
                let now = now_ms();
                // One step per tick: start the next task, or finish the one processing.
                if node.state().processing.is_some() {
                    node.finish_processing(now);
                } else {
                    node.start_next(now);
                }
            }
            _ = stop.changed() => return,
        }
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let shared = Arc::clone(&shared);
                let mut conn_stop = stop.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req| {
                        let shared = Arc::clone(&shared);
                        async move { serve_one(shared, req).await }
                    });
                    let conn = http1::Builder::new().serve_connection(TokioIo::new(stream), svc);
                    tokio::select! {
                        _ = conn => {}
                        _ = conn_stop.changed() => {}
                    }
                });
            }
            _ = stop.changed() => return,
        }
    }
}

/// The error that makes hyper close a connection without answering.
#[derive(Debug)]
struct Dropped;

impl std::fmt::Display for Dropped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection dropped by fault injection")
    }
}

impl std::error::Error for Dropped {}

fn respond(status: u16, body: &Value) -> hyper::Response<Full<Bytes>> {
    let bytes = if body.is_null() {
        Bytes::new()
    } else {
        Bytes::from(serde_json::to_vec(body).unwrap_or_default())
    };
    let mut r = hyper::Response::new(Full::new(bytes));
    *r.status_mut() =
        hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
    if !body.is_null() {
        r.headers_mut().insert(
            hyper::header::CONTENT_TYPE,
            hyper::header::HeaderValue::from_static("application/json"),
        );
    }
    r
}

async fn serve_one(
    shared: Arc<Shared>,
    req: hyper::Request<Incoming>,
) -> Result<hyper::Response<Full<Bytes>>, Dropped> {
    let (parts, body) = req.into_parts();
    let path = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| parts.uri.path().to_string());
    let body = match body.collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return Err(Dropped),
    };
    if parts.uri.path() == "/_model/faults" {
        return Ok(control(&shared, &parts.method, &body));
    }
    let faults = shared.faults();
    if faults.down {
        return Err(Dropped);
    }
    if faults.latency_ms > 0 {
        tokio::time::sleep(Duration::from_millis(faults.latency_ms)).await;
    }
    let failing = shared.draw_failure(faults.fail_rate);
    if failing && faults.fail_mode != FailMode::Truncated {
        return match faults.fail_mode {
            FailMode::Drop => Err(Dropped),
            FailMode::Garbage => {
                let mut r = hyper::Response::new(Full::new(Bytes::from_static(
                    b"<html><body>502 Bad Gateway</body></html>",
                )));
                r.headers_mut().insert(
                    hyper::header::CONTENT_TYPE,
                    hyper::header::HeaderValue::from_static("application/json"),
                );
                Ok(r)
            }
            FailMode::WrongStatus => Ok(respond(418, &json!({"unexpected": true}))),
            FailMode::Truncated | FailMode::Status => Ok(respond(
                503,
                &json!({
                    "message": "The node model injected a failure.",
                    "code": "model_fault_injected",
                    "type": "system",
                    "link": "",
                }),
            )),
        };
    }
    let Some(method) = Method::parse(parts.method.as_str()) else {
        return Ok(respond(405, &Value::Null));
    };
    let header = |name: hyper::header::HeaderName| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let request = Request {
        method,
        path,
        authorization: header(hyper::header::AUTHORIZATION),
        content_type: header(hyper::header::CONTENT_TYPE),
        body: body.to_vec(),
    };
    let response = {
        let mut node = shared.node.lock().unwrap_or_else(|p| p.into_inner());
        node.handle(request, now_ms())
    };
    // Re-check: a node taken down while this request waited answers nothing.
    if shared.faults().down {
        return Err(Dropped);
    }
    let mut answer = respond(response.status, &response.body);
    if failing {
        let full = serde_json::to_vec(&response.body).unwrap_or_default();
        *answer.body_mut() = Full::new(Bytes::from(full[..full.len() / 2].to_vec()));
    }
    Ok(answer)
}

fn control(shared: &Shared, method: &hyper::Method, body: &[u8]) -> hyper::Response<Full<Bytes>> {
    let bad = |msg: String| {
        respond(
            400,
            &json!({"message": msg, "code": "model_bad_request", "type": "invalid_request", "link": ""}),
        )
    };
    match *method {
        hyper::Method::GET => respond(200, &shared.faults().to_json()),
        hyper::Method::POST => {
            let patch: Value = match serde_json::from_slice(body) {
                Ok(v) => v,
                Err(e) => return bad(format!("invalid JSON: {e}")),
            };
            let mut faults = shared.faults.lock().unwrap_or_else(|p| p.into_inner());
            match faults.apply_json(&patch) {
                Ok(next) => {
                    *faults = next;
                    respond(200, &next.to_json())
                }
                Err(m) => bad(m),
            }
        }
        _ => respond(405, &Value::Null),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_patch_validates_every_field() {
        let f = Faults::default();
        let g = f
            .apply_json(&json!({"latencyMs": 5, "failRate": 0.5, "failMode": "drop", "down": true}))
            .unwrap();
        assert_eq!(g.latency_ms, 5);
        assert_eq!(g.fail_mode, FailMode::Drop);
        assert!(g.down);
        assert_eq!(g.to_json()["failRate"], 0.5);
        assert!(f.apply_json(&json!({"failRate": 2.0})).is_err());
        assert!(f.apply_json(&json!({"latencyMs": -1})).is_err());
        assert!(f.apply_json(&json!({"failMode": "x"})).is_err());
        for mode in ["status", "drop", "garbage", "truncated", "wrongStatus"] {
            let g = f.apply_json(&json!({ "failMode": mode })).unwrap();
            assert_eq!(g.to_json()["failMode"], mode);
        }
        assert!(f.apply_json(&json!({"down": 1})).is_err());
        assert!(f.apply_json(&json!({"nope": 1})).is_err());
        assert!(f.apply_json(&json!([1])).is_err());
    }

    #[test]
    fn failure_draws_follow_the_rate() {
        let shared = Shared {
            node: Mutex::new(Node::new(None)),
            faults: Mutex::new(Faults::default()),
            rng: Mutex::new(42),
        };
        assert!(!(0..100).any(|_| shared.draw_failure(0.0)));
        assert!((0..100).all(|_| shared.draw_failure(1.0)));
        let n = (0..10_000).filter(|_| shared.draw_failure(0.3)).count();
        assert!((2_500..3_500).contains(&n), "{n}");
    }
}
