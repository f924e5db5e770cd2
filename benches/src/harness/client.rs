//! A minimal HTTP/1.1 client for one Meilisearch-compatible target (hyper 1 + hyper-util's pooled client).
//!
//! Only `http://` URLs are supported (no TLS, to keep the harness quick to build); a URL may carry a path
//! prefix (`http://host:7700/meili`), which is prepended to every request path.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use hyper::{Method, Request, Uri};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use std::time::Duration;

/// Why a request got no HTTP answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// No answer within the request timeout.
    Timeout,
    /// The connection could not be established.
    Connect(String),
    /// The connection broke while sending or receiving.
    Io(String),
}

impl Failure {
    /// The short cause used in reports: `timeout`, `connect` or `io`.
    pub fn cause(&self) -> &'static str {
        match self {
            Failure::Timeout => "timeout",
            Failure::Connect(_) => "connect",
            Failure::Io(_) => "io",
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Timeout => write!(f, "timed out"),
            Failure::Connect(e) => write!(f, "cannot connect: {e}"),
            Failure::Io(e) => write!(f, "connection error: {e}"),
        }
    }
}

/// An HTTP answer: status and body.
#[derive(Debug, Clone)]
pub struct Answer {
    /// The status code.
    pub status: u16,
    /// The raw body.
    pub body: Bytes,
}

impl Answer {
    /// Whether the status is 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The body as JSON (`Null` when it is not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

/// One target: a base URL, an optional API key and a pooled client.
#[derive(Clone)]
pub struct Target {
    base: String,
    auth: Option<HeaderValue>,
    timeout: Duration,
    client: Client<HttpConnector, Full<Bytes>>,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("base", &self.base)
            .field("auth", &self.auth.is_some())
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// Checks and normalises a target URL: `http://host[:port][/prefix]`, without a trailing slash.
pub fn normalise_url(url: &str) -> Result<String, String> {
    let rest = url
        .trim()
        .strip_prefix("http://")
        .ok_or_else(|| format!("`{url}`: only http:// URLs are supported"))?
        .trim_end_matches('/');
    let trimmed = format!("http://{rest}");
    let authority = rest.split('/').next().unwrap_or("");
    if authority.is_empty() {
        return Err(format!("`{url}`: the URL has no host"));
    }
    let uri: Uri = trimmed
        .parse()
        .map_err(|e| format!("`{url}`: invalid URL: {e}"))?;
    if uri.query().is_some() {
        return Err(format!("`{url}`: the URL must not have a query string"));
    }
    Ok(trimmed)
}

impl Target {
    /// A target for `url` (see [`normalise_url`]), sending `Authorization: Bearer key` when `key` is set,
    /// keeping up to `pool` idle connections, and giving up on a request after `timeout`.
    pub fn new(
        url: &str,
        key: Option<&str>,
        timeout: Duration,
        pool: usize,
    ) -> Result<Target, String> {
        let base = normalise_url(url)?;
        let auth = match key {
            Some(k) if !k.is_empty() => Some(
                HeaderValue::from_str(&format!("Bearer {k}"))
                    .map_err(|_| "the API key contains characters not allowed in a header")?,
            ),
            _ => None,
        };
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(pool.max(1))
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        Ok(Target {
            base,
            auth,
            timeout,
            client,
        })
    }

    /// The base URL.
    pub fn url(&self) -> &str {
        &self.base
    }

    /// Sends `method path` with an optional JSON body and reads the whole answer.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
    ) -> Result<Answer, Failure> {
        let uri: Uri = format!("{}{}", self.base, path)
            .parse()
            .map_err(|e| Failure::Io(format!("invalid request URI: {e}")))?;
        let mut builder = Request::builder().method(method).uri(uri);
        if let Some(auth) = &self.auth {
            builder = builder.header(AUTHORIZATION, auth.clone());
        }
        if body.is_some() {
            builder = builder.header(CONTENT_TYPE, "application/json");
        }
        let req = builder
            .body(Full::new(body.unwrap_or_default()))
            .map_err(|e| Failure::Io(format!("cannot build the request: {e}")))?;
        let exchange = async {
            let resp = self.client.request(req).await.map_err(|e| {
                if e.is_connect() {
                    Failure::Connect(e.to_string())
                } else {
                    Failure::Io(e.to_string())
                }
            })?;
            let status = resp.status().as_u16();
            let body = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| Failure::Io(e.to_string()))?
                .to_bytes();
            Ok(Answer { status, body })
        };
        match tokio::time::timeout(self.timeout, exchange).await {
            Ok(r) => r,
            Err(_) => Err(Failure::Timeout),
        }
    }

    /// Sends a JSON value.
    pub async fn send_json(
        &self,
        method: Method,
        path: &str,
        body: &Value,
    ) -> Result<Answer, Failure> {
        let bytes = Bytes::from(serde_json::to_vec(body).unwrap_or_default());
        self.send(method, path, Some(bytes)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            normalise_url("http://127.0.0.1:7700/").unwrap(),
            "http://127.0.0.1:7700"
        );
        assert_eq!(
            normalise_url("http://localhost:7700/meili").unwrap(),
            "http://localhost:7700/meili"
        );
        assert!(normalise_url("https://x:1")
            .unwrap_err()
            .contains("http://"));
        assert!(normalise_url("127.0.0.1:7700").is_err());
        assert!(normalise_url("http://").unwrap_err().contains("no host"));
        assert!(normalise_url("http://a:1/?x=1").is_err());
        assert!(normalise_url("http://a b:1").is_err());
    }

    #[tokio::test]
    async fn bad_key_and_unreachable_target() {
        assert!(Target::new(
            "http://127.0.0.1:1",
            Some("a\nb"),
            Duration::from_secs(1),
            1
        )
        .is_err());
        let t = Target::new("http://127.0.0.1:1", Some("k"), Duration::from_secs(2), 1).unwrap();
        let e = t.send(Method::GET, "/health", None).await.unwrap_err();
        assert_eq!(e.cause(), "connect", "{e}");
        assert!(format!("{t:?}").contains("127.0.0.1:1"));
    }
}
