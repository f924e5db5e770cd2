//! Hostile-input limits of the proxy: the errors they answer with, the checks that need no I/O, and the
//! concurrency gate.
//!
//! Every limit has a knob under `server:` ([`miroir_core::config::ServerConfig`]) and answers with a
//! Meilisearch-shaped error (`message`, `code`, `type`, `link`):
//!
//! | limit | knob | answer |
//! |---|---|---|
//! | body size | `max_body_bytes` | 413 `payload_too_large` (Meilisearch's own, see [`crate::http_util`]) |
//! | request target length | `max_uri_bytes` | 414 `miroir_uri_too_long` |
//! | header size | `max_header_bytes` | 431 `miroir_headers_too_large` |
//! | JSON nesting | `max_json_depth` | 400 `miroir_json_too_deep` |
//! | documents per batch | `max_documents_per_batch` | 413 `miroir_too_many_documents` |
//! | whole request | `request_timeout_ms` | 504 `miroir_request_timeout` |
//! | slow body | `body_read_timeout_ms` | 408 `miroir_body_timeout` |
//! | slow head | `header_read_timeout_ms` | connection closed (hyper) |
//! | concurrency | `max_concurrent_requests` | 503 `miroir_overloaded` + `Retry-After` |
//! | node answer size | `max_node_response_bytes` | the node counts as failed ([`crate::node_client`]) |
//!
//! The gate ([`ConcurrencyGate`]) never queues: a request that finds every slot taken is refused at once,
//! so memory stays bounded under any load. A slot is held until the request's work is truly over, which
//! for a write that outlived its request timeout is when its node answers are in.

use http::HeaderMap;
use miroir_core::{ErrorType, MeiliError};
use std::sync::Arc;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Seconds a client refused with `miroir_overloaded` is told to wait (`Retry-After`).
pub const RETRY_AFTER_SECS: u64 = 1;

/// 414 `miroir_uri_too_long`: the request target (path and query) exceeds `server.max_uri_bytes`.
pub fn uri_too_long(len: usize, limit: u64) -> MeiliError {
    MeiliError::invalid(
        414,
        "miroir_uri_too_long",
        format!(
            "The request URI is {len} bytes long. The maximum accepted URI length is {limit} bytes."
        ),
    )
}

/// 431 `miroir_headers_too_large`: the request headers exceed `server.max_header_bytes`.
pub fn headers_too_large(len: u64, limit: u64) -> MeiliError {
    MeiliError::invalid(
        431,
        "miroir_headers_too_large",
        format!(
            "The request headers take {len} bytes. The maximum accepted size of the headers is {limit} bytes."
        ),
    )
}

/// 400 `miroir_json_too_deep`: a JSON body nests deeper than `server.max_json_depth`.
pub fn json_too_deep(limit: u32) -> MeiliError {
    MeiliError::invalid(
        400,
        "miroir_json_too_deep",
        format!(
            "The JSON payload nests arrays and objects deeper than the maximum accepted depth of {limit}."
        ),
    )
}

/// 413 `miroir_too_many_documents`: a batch holds more than `server.max_documents_per_batch` entries.
pub fn too_many_documents(count: usize, limit: u64) -> MeiliError {
    MeiliError::invalid(
        413,
        "miroir_too_many_documents",
        format!(
            "The batch holds {count} documents. The maximum accepted number of documents in one batch is {limit}; split it into smaller batches. Nothing was written."
        ),
    )
}

/// 504 `miroir_request_timeout`: the request was not answered within `server.request_timeout_ms`.
pub fn request_timeout(limit_ms: u64) -> MeiliError {
    MeiliError::new(
        504,
        "miroir_request_timeout",
        ErrorType::System,
        format!(
            "Miroir could not answer within {limit_ms} ms. A write already sent to the nodes keeps running and is recorded as a task: check `GET /tasks` before retrying it."
        ),
    )
}

/// 408 `miroir_body_timeout`: the client did not send its whole body within
/// `server.body_read_timeout_ms`.
pub fn body_timeout(limit_ms: u64) -> MeiliError {
    MeiliError::invalid(
        408,
        "miroir_body_timeout",
        format!("The request body was not received within {limit_ms} ms."),
    )
}

/// 503 `miroir_overloaded`: every one of the `server.max_concurrent_requests` slots is taken.
pub fn overloaded(limit: u32) -> MeiliError {
    MeiliError::new(
        503,
        "miroir_overloaded",
        ErrorType::System,
        format!(
            "Miroir is already serving its maximum of {limit} concurrent requests. Retry after {RETRY_AFTER_SECS} second(s)."
        ),
    )
}

/// The bytes the headers take: every name plus every value (what a client controls; the separators
/// are not counted).
pub fn header_bytes(headers: &HeaderMap) -> u64 {
    headers
        .iter()
        .map(|(k, v)| (k.as_str().len() + v.as_bytes().len()) as u64)
        .sum()
}

/// True when `body`, read as JSON (or newline-delimited JSON), opens more than `max` arrays and objects
/// inside one another. A single forward scan with a counter: it never recurses, allocates nothing, and
/// tolerates invalid JSON (the parser reports that later). Brackets inside strings do not count.
pub fn json_too_deep_in(body: &[u8], max: u32) -> bool {
    let mut depth: u32 = 0;
    let mut in_string = false;
    let mut escaped = false;
    for &b in body {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > max {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

/// True for the content types whose bodies are parsed as JSON: `application/json` and
/// `application/x-ndjson` (parameters ignored, case-insensitive).
pub fn is_json_content_type(ct: Option<&str>) -> bool {
    let Some(ct) = ct else {
        return false;
    };
    let essence = ct.split(';').next().unwrap_or("").trim();
    essence.eq_ignore_ascii_case("application/json")
        || essence.eq_ignore_ascii_case("application/x-ndjson")
}

/// Checks a batch's size against `server.max_documents_per_batch`.
pub fn check_batch(count: usize, limit: u64) -> Result<(), MeiliError> {
    if count as u64 > limit {
        Err(too_many_documents(count, limit))
    } else {
        Ok(())
    }
}

/// True when a node's answer to a read can be passed on: a 2xx with a JSON body (or 204), or a 4xx whose
/// body is a Meilisearch error object. Anything else (a 200 that is not JSON, a truncated body, a status no
/// Meilisearch route answers with a body of another shape, a 3xx) is a bad answer: the node counts as
/// failed for that read and the next one is asked.
pub fn plausible_node_answer(status: u16, body: &serde_json::Value) -> bool {
    match status {
        204 => true,
        200..=299 => !body.is_null(),
        400..=499 => MeiliError::from_node_body(status, body).is_some(),
        _ => false,
    }
}

/// The concurrency gate: at most `limit` requests at once, refused (never queued) beyond.
#[derive(Clone)]
pub struct ConcurrencyGate {
    slots: Arc<Semaphore>,
    limit: u32,
}

impl ConcurrencyGate {
    /// A gate with `limit` slots (at least one).
    pub fn new(limit: u32) -> ConcurrencyGate {
        let limit = limit.max(1);
        ConcurrencyGate {
            slots: Arc::new(Semaphore::new(limit as usize)),
            limit,
        }
    }

    /// Takes a slot, or answers 503 `miroir_overloaded` at once. The slot is freed when the permit drops.
    pub fn try_enter(&self) -> Result<OwnedSemaphorePermit, MeiliError> {
        Arc::clone(&self.slots)
            .try_acquire_owned()
            .map_err(|_| overloaded(self.limit))
    }

    /// Slots free right now.
    pub fn available(&self) -> usize {
        self.slots.available_permits()
    }

    /// The configured number of slots.
    pub fn limit(&self) -> u32 {
        self.limit
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn depth_scan_counts_only_structure() {
        assert!(!json_too_deep_in(b"", 1));
        assert!(!json_too_deep_in(b"[1,2,{\"a\":3}]", 2));
        assert!(json_too_deep_in(b"[1,2,{\"a\":3}]", 1));
        assert!(!json_too_deep_in(b"{\"a\":\"[[[[{{{{\"}", 1));
        // An escaped quote does not end the string.
        assert!(!json_too_deep_in(b"{\"a\":\"\\\"[[[[\"}", 1));
        assert!(json_too_deep_in(b"{\"a\":\"\\\\\"[[[[\"}", 2));
        // Siblings do not add up, NDJSON lines do not either.
        assert!(!json_too_deep_in(b"[[1],[2],[3]]\n[[4]]\n", 2));
        // Unbalanced closers never underflow.
        assert!(!json_too_deep_in(b"]]]]}}}}[", 1));
        let deep = "[".repeat(100_000);
        assert!(json_too_deep_in(deep.as_bytes(), 64));
        let ok = format!("{}{}", "[".repeat(64), "]".repeat(64));
        assert!(!json_too_deep_in(ok.as_bytes(), 64));
        assert!(json_too_deep_in(ok.as_bytes(), 63));
    }

    #[test]
    fn json_content_types() {
        assert!(is_json_content_type(Some("application/json")));
        assert!(is_json_content_type(Some(
            "Application/JSON; charset=utf-8"
        )));
        assert!(is_json_content_type(Some("application/x-ndjson")));
        assert!(!is_json_content_type(Some("text/csv")));
        assert!(!is_json_content_type(None));
    }

    #[test]
    fn headers_are_measured() {
        let mut h = HeaderMap::new();
        assert_eq!(header_bytes(&h), 0);
        h.insert("x-a", HeaderValue::from_static("12345"));
        h.append("x-a", HeaderValue::from_static("1"));
        assert_eq!(header_bytes(&h), 3 + 5 + 3 + 1);
    }

    #[test]
    fn errors_are_meilisearch_shaped() {
        for (e, status, code) in [
            (uri_too_long(20, 10), 414, "miroir_uri_too_long"),
            (headers_too_large(20, 10), 431, "miroir_headers_too_large"),
            (json_too_deep(64), 400, "miroir_json_too_deep"),
            (too_many_documents(5, 4), 413, "miroir_too_many_documents"),
            (request_timeout(100), 504, "miroir_request_timeout"),
            (body_timeout(100), 408, "miroir_body_timeout"),
            (overloaded(8), 503, "miroir_overloaded"),
        ] {
            assert_eq!(e.status, status);
            assert_eq!(e.code, code);
            let v = e.to_json();
            assert!(v["link"].as_str().unwrap().ends_with(code));
            assert!(!v["message"].as_str().unwrap().is_empty());
        }
        assert_eq!(request_timeout(1).error_type, ErrorType::System);
        assert_eq!(overloaded(1).error_type, ErrorType::System);
        assert_eq!(json_too_deep(1).error_type, ErrorType::InvalidRequest);
        assert!(check_batch(4, 4).is_ok());
        assert_eq!(check_batch(5, 4).unwrap_err().status, 413);
    }

    #[test]
    fn node_answers_are_checked_before_being_passed_on() {
        use serde_json::json;
        assert!(plausible_node_answer(200, &json!({"hits": []})));
        assert!(plausible_node_answer(200, &json!([])));
        assert!(plausible_node_answer(204, &serde_json::Value::Null));
        assert!(!plausible_node_answer(200, &serde_json::Value::Null));
        let err = json!({"message": "m", "code": "index_not_found", "type": "invalid_request", "link": ""});
        assert!(plausible_node_answer(404, &err));
        assert!(!plausible_node_answer(418, &json!({"unexpected": true})));
        assert!(!plausible_node_answer(404, &serde_json::Value::Null));
        assert!(!plausible_node_answer(302, &json!({})));
        assert!(!plausible_node_answer(500, &err));
    }

    #[test]
    fn the_gate_refuses_instead_of_queueing() {
        let g = ConcurrencyGate::new(2);
        let a = g.try_enter().unwrap();
        let _b = g.try_enter().unwrap();
        assert_eq!(g.available(), 0);
        let e = g.try_enter().unwrap_err();
        assert_eq!(e.code, "miroir_overloaded");
        drop(a);
        assert!(g.try_enter().is_ok());
        assert_eq!(ConcurrencyGate::new(0).limit(), 1);
    }
}
