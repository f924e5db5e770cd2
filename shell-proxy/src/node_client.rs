//! The HTTP client Miroir uses to talk to its Meilisearch nodes: pooled keep-alive connections
//! (hyper-util's client), a per-request timeout covering the whole exchange (connect, headers and body),
//! `Authorization: Bearer <node_master_key>` on every request, and a typed error for everything that is
//! not an HTTP answer. Any HTTP status, including 4xx/5xx, is an answer (`Ok`): interpreting it is core's
//! job.
//!
//! Only `http://` node addresses are supported for now; `https://` ones give
//! [`NodeError::InvalidAddress`] (no TLS stack is built in yet).

use crate::metrics::Metrics;
use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE};
use http::{HeaderMap, HeaderValue, Method, Request, Uri};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use miroir_core::config::Secret;
use miroir_core::MeiliError;
use std::fmt;
use std::time::{Duration, Instant};

/// A node's answer.
#[derive(Debug, Clone)]
pub struct NodeResponse {
    /// HTTP status.
    pub status: u16,
    /// Response headers.
    pub headers: HeaderMap,
    /// The whole body.
    pub body: Bytes,
}

/// Why a node gave no HTTP answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeError {
    /// The address or path cannot form a request (bad URL, unsupported scheme).
    InvalidAddress(String),
    /// The TCP connection could not be established (refused, unreachable, DNS).
    Connect(String),
    /// No complete answer within the timeout.
    Timeout(Duration),
    /// The connection broke while sending or reading.
    Io(String),
    /// The answer is larger than `server.max_node_response_bytes` (the limit): a bad answer.
    TooLarge(u64),
}

impl fmt::Display for NodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NodeError::InvalidAddress(m) => write!(f, "invalid node address: {m}"),
            NodeError::Connect(m) => write!(f, "cannot connect: {m}"),
            NodeError::Timeout(d) => write!(f, "no answer within {} ms", d.as_millis()),
            NodeError::Io(m) => write!(f, "connection failed: {m}"),
            NodeError::TooLarge(limit) => {
                write!(f, "the answer is larger than the limit of {limit} bytes")
            }
        }
    }
}

impl std::error::Error for NodeError {}

impl NodeError {
    /// The `outcome` label of `miroir_node_requests_total`.
    pub fn outcome(&self) -> &'static str {
        match self {
            NodeError::Connect(_) => "connect_error",
            NodeError::Timeout(_) => "timeout",
            NodeError::InvalidAddress(_) | NodeError::Io(_) | NodeError::TooLarge(_) => "error",
        }
    }

    /// The Meilisearch-shaped error for a client when this node's failure cannot be hidden.
    pub fn to_meili(&self, node: &str) -> MeiliError {
        MeiliError::bad_node_response(node, &self.to_string())
    }
}

/// The pooled client. Cheap to clone.
#[derive(Clone)]
pub struct NodeClient {
    client: Client<HttpConnector, Full<Bytes>>,
    auth: Option<HeaderValue>,
    timeout: Duration,
    metrics: Option<Metrics>,
    max_response_bytes: u64,
}

impl NodeClient {
    /// A client sending `Bearer <node_master_key>` (nothing when the key is empty) with `timeout` as the
    /// default per-request timeout.
    pub fn new(node_master_key: &Secret, timeout: Duration) -> NodeClient {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(timeout));
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(32)
            .build(connector);
        let auth = if node_master_key.is_empty() {
            None
        } else {
            HeaderValue::from_str(&format!("Bearer {}", node_master_key.expose()))
                .ok()
                .map(|mut v| {
                    v.set_sensitive(true);
                    v
                })
        };
        NodeClient {
            client,
            auth,
            timeout,
            metrics: None,
            max_response_bytes: u64::MAX,
        }
    }

    /// Records every round trip in `metrics` (`miroir_node_requests_total`, `..._duration_seconds`).
    pub fn with_metrics(mut self, metrics: Metrics) -> NodeClient {
        self.metrics = Some(metrics);
        self
    }

    /// Refuses node answers whose body exceeds `limit` bytes ([`NodeError::TooLarge`]; the caller treats
    /// the node as failed for that request). Default: no limit.
    pub fn with_max_response_bytes(mut self, limit: u64) -> NodeClient {
        self.max_response_bytes = limit;
        self
    }

    /// The default timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Sends a request with the default timeout. `node` names the node in metrics; `address` is its base
    /// URL (`http://host:port`); `path_and_query` starts with `/`.
    pub async fn send(
        &self,
        node: &str,
        address: &str,
        method: Method,
        path_and_query: &str,
        content_type: Option<&str>,
        body: Bytes,
    ) -> Result<NodeResponse, NodeError> {
        self.send_with_timeout(
            node,
            address,
            method,
            path_and_query,
            content_type,
            body,
            self.timeout,
        )
        .await
    }

    /// Sends a request with an explicit timeout.
    #[allow(clippy::too_many_arguments)]
    pub async fn send_with_timeout(
        &self,
        node: &str,
        address: &str,
        method: Method,
        path_and_query: &str,
        content_type: Option<&str>,
        body: Bytes,
        timeout: Duration,
    ) -> Result<NodeResponse, NodeError> {
        let started = Instant::now();
        let result = self
            .exchange(address, method, path_and_query, content_type, body, timeout)
            .await;
        if let Some(m) = &self.metrics {
            let outcome = match &result {
                Ok(_) => "ok",
                Err(e) => e.outcome(),
            };
            m.observe_node(node, outcome, started.elapsed());
        }
        result
    }

    async fn exchange(
        &self,
        address: &str,
        method: Method,
        path_and_query: &str,
        content_type: Option<&str>,
        body: Bytes,
        timeout: Duration,
    ) -> Result<NodeResponse, NodeError> {
        if !address.starts_with("http://") {
            return Err(NodeError::InvalidAddress(format!(
                "{address}: only http:// node addresses are supported"
            )));
        }
        if !path_and_query.starts_with('/') {
            return Err(NodeError::InvalidAddress(format!(
                "path {path_and_query:?} must start with /"
            )));
        }
        let uri: Uri = format!("{}{path_and_query}", address.trim_end_matches('/'))
            .parse()
            .map_err(|e| NodeError::InvalidAddress(format!("{address}{path_and_query}: {e}")))?;
        let mut req = Request::builder().method(method).uri(uri);
        if let Some(auth) = &self.auth {
            req = req.header(AUTHORIZATION, auth.clone());
        }
        if let Some(ct) = content_type {
            req = req.header(CONTENT_TYPE, ct);
        }
        let req = req
            .body(Full::new(body))
            .map_err(|e| NodeError::InvalidAddress(e.to_string()))?;
        let exchange = async {
            let resp = self.client.request(req).await.map_err(|e| {
                if e.is_connect() {
                    NodeError::Connect(error_chain(&e))
                } else {
                    NodeError::Io(error_chain(&e))
                }
            })?;
            let (parts, body) = resp.into_parts();
            let limit = self.max_response_bytes;
            let announced = parts
                .headers
                .get(http::header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok());
            if announced.is_some_and(|len| len > limit) {
                return Err(NodeError::TooLarge(limit));
            }
            let limited = Limited::new(body, usize::try_from(limit).unwrap_or(usize::MAX));
            let body = match limited.collect().await {
                Ok(c) => c.to_bytes(),
                Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => {
                    return Err(NodeError::TooLarge(limit))
                }
                Err(e) => return Err(NodeError::Io(error_chain(&*e))),
            };
            Ok(NodeResponse {
                status: parts.status.as_u16(),
                headers: parts.headers,
                body,
            })
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| NodeError::Timeout(timeout))?
    }
}

/// An error and its sources, `: `-joined (hyper's top-level messages are terse).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// A one-shot raw HTTP server: records the request head, answers `response` (or nothing).
    async fn fake(response: Option<&'static str>) -> (String, Arc<Mutex<String>>) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = format!("http://{}", l.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(String::new()));
        let s = Arc::clone(&seen);
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = l.accept().await {
                let mut buf = vec![0u8; 4096];
                let n = sock.read(&mut buf).await.unwrap_or(0);
                *s.lock().unwrap() = String::from_utf8_lossy(&buf[..n]).into_owned();
                match response {
                    Some(r) => {
                        let _ = sock.write_all(r.as_bytes()).await;
                    }
                    None => tokio::time::sleep(Duration::from_secs(5)).await,
                }
            }
        });
        (addr, seen)
    }

    #[tokio::test]
    async fn sends_the_node_key_and_returns_any_status() {
        let (addr, seen) = fake(Some(
            "HTTP/1.1 404 Not Found\r\ncontent-type: application/json\r\ncontent-length: 11\r\nconnection: close\r\n\r\n{\"a\":\"b\"} \n",
        ))
        .await;
        let metrics = Metrics::new();
        let c = NodeClient::new(&Secret::new("node-key"), Duration::from_secs(2))
            .with_metrics(metrics.clone());
        let r = c
            .send(
                "n1",
                &addr,
                Method::POST,
                "/indexes/x/search?q=1",
                Some("application/json"),
                Bytes::from_static(b"{}"),
            )
            .await
            .unwrap();
        assert_eq!(r.status, 404);
        assert_eq!(&r.body[..], b"{\"a\":\"b\"} \n");
        assert_eq!(r.headers[CONTENT_TYPE], "application/json");
        let head = seen.lock().unwrap().clone();
        assert!(
            head.starts_with("POST /indexes/x/search?q=1 HTTP/1.1"),
            "{head}"
        );
        assert!(
            head.to_ascii_lowercase()
                .contains("authorization: bearer node-key"),
            "{head}"
        );
        assert!(head
            .to_ascii_lowercase()
            .contains("content-type: application/json"));
        assert!(metrics
            .render()
            .contains("miroir_node_requests_total{node=\"n1\",outcome=\"ok\"} 1"));
        assert_eq!(c.timeout(), Duration::from_secs(2));
    }

    #[tokio::test]
    async fn no_key_no_header() {
        let (addr, seen) = fake(Some(
            "HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
        ))
        .await;
        let c = NodeClient::new(&Secret::default(), Duration::from_secs(2));
        let r = c
            .send("n", &addr, Method::GET, "/health", None, Bytes::new())
            .await
            .unwrap();
        assert_eq!(r.status, 200);
        assert!(!seen
            .lock()
            .unwrap()
            .to_ascii_lowercase()
            .contains("authorization"));
    }

    #[tokio::test]
    async fn typed_errors() {
        let c = NodeClient::new(&Secret::new("k"), Duration::from_millis(300));
        // Nothing listens on port 1.
        let e = c
            .send(
                "n",
                "http://127.0.0.1:1",
                Method::GET,
                "/health",
                None,
                Bytes::new(),
            )
            .await
            .unwrap_err();
        assert!(matches!(e, NodeError::Connect(_)), "{e:?}");
        assert_eq!(e.outcome(), "connect_error");
        let (addr, _) = fake(None).await;
        let e = c
            .send("n", &addr, Method::GET, "/health", None, Bytes::new())
            .await
            .unwrap_err();
        assert_eq!(e, NodeError::Timeout(Duration::from_millis(300)));
        assert_eq!(e.to_string(), "no answer within 300 ms");
        assert_eq!(e.to_meili("n").status, 502);
        let e = c
            .send("n", "https://h", Method::GET, "/", None, Bytes::new())
            .await
            .unwrap_err();
        assert!(matches!(e, NodeError::InvalidAddress(_)));
        let e = c
            .send("n", "http://h", Method::GET, "nope", None, Bytes::new())
            .await
            .unwrap_err();
        assert!(matches!(e, NodeError::InvalidAddress(_)));
        let e = c
            .send("n", "http://h h", Method::GET, "/", None, Bytes::new())
            .await
            .unwrap_err();
        assert!(matches!(e, NodeError::InvalidAddress(_)));
        // An answer above the size limit, announced or streamed.
        let limited =
            NodeClient::new(&Secret::new("k"), Duration::from_secs(2)).with_max_response_bytes(4);
        let (addr, _) = fake(Some(
            "HTTP/1.1 200 OK\r\ncontent-length: 5\r\nconnection: close\r\n\r\n12345",
        ))
        .await;
        let e = limited
            .send("n", &addr, Method::GET, "/", None, Bytes::new())
            .await
            .unwrap_err();
        assert_eq!(e, NodeError::TooLarge(4));
        assert_eq!(e.outcome(), "error");
        assert_eq!(e.to_meili("n").code, "miroir_bad_node_response");
        let (addr, _) = fake(Some(
            "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n3\r\n123\r\n3\r\n456\r\n0\r\n\r\n",
        ))
        .await;
        let e = limited
            .send("n", &addr, Method::GET, "/", None, Bytes::new())
            .await
            .unwrap_err();
        assert_eq!(e, NodeError::TooLarge(4));
        let (addr, _) = fake(Some(
            "HTTP/1.1 200 OK\r\ncontent-length: 4\r\nconnection: close\r\n\r\n1234",
        ))
        .await;
        let r = limited
            .send("n", &addr, Method::GET, "/", None, Bytes::new())
            .await
            .unwrap();
        assert_eq!(&r.body[..], b"1234");
        // A connection closed without an answer.
        let (addr, _) = fake(Some("")).await;
        let e = c
            .send("n", &addr, Method::GET, "/", None, Bytes::new())
            .await
            .unwrap_err();
        assert!(matches!(e, NodeError::Io(_)), "{e:?}");
    }
}
