//! The one error type of Miroir: it renders exactly the Meilisearch error object
//! (`message`, `code`, `type`, `link`) together with the HTTP status to answer with.
//!
//! Meilisearch's own codes link to Meilisearch's error reference, so a client that follows the link lands
//! on the same page it would reach with a single node. Miroir's own codes (`miroir_*`) link to Miroir's
//! error reference in `docs/errors.md`.

use serde::{Deserialize, Serialize};
use std::fmt;

/// The `type` field of a Meilisearch error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorType {
    InvalidRequest,
    Internal,
    Auth,
    System,
}

impl ErrorType {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorType::InvalidRequest => "invalid_request",
            ErrorType::Internal => "internal",
            ErrorType::Auth => "auth",
            ErrorType::System => "system",
        }
    }
}

const MEILI_ERRORS: &str = "https://docs.meilisearch.com/errors#";
const MIROIR_ERRORS: &str = "https://github.com/miroir-search/miroir/blob/main/docs/errors.md#";

/// A Meilisearch-shaped error plus the HTTP status it is answered with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeiliError {
    pub status: u16,
    pub code: String,
    pub error_type: ErrorType,
    pub message: String,
}

/// The JSON body of an error, field for field as Meilisearch writes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub message: String,
    pub code: String,
    #[serde(rename = "type")]
    pub error_type: ErrorType,
    pub link: String,
}

impl MeiliError {
    pub fn new(
        status: u16,
        code: impl Into<String>,
        error_type: ErrorType,
        message: impl Into<String>,
    ) -> Self {
        MeiliError {
            status,
            code: code.into(),
            error_type,
            message: message.into(),
        }
    }

    /// An `invalid_request` error with the given status.
    pub fn invalid(status: u16, code: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(status, code, ErrorType::InvalidRequest, message)
    }

    /// The documentation link for this error's code.
    pub fn link(&self) -> String {
        link_for(&self.code)
    }

    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            message: self.message.clone(),
            code: self.code.clone(),
            error_type: self.error_type,
            link: self.link(),
        }
    }

    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self.body()).expect("an error body always serializes")
    }

    /// Rebuilds an error from a body a node sent (for example a node task's `error`), keeping its code,
    /// type and message. Returns `None` when the value is not an error object.
    pub fn from_node_body(status: u16, body: &serde_json::Value) -> Option<Self> {
        let code = body.get("code")?.as_str()?;
        let message = body.get("message")?.as_str()?;
        let error_type = body
            .get("type")
            .and_then(|t| serde_json::from_value(t.clone()).ok())
            .unwrap_or(ErrorType::Internal);
        Some(MeiliError::new(status, code, error_type, message))
    }

    // ----- Miroir's own errors -----

    /// No replica group reached write quorum for the named shards.
    pub fn no_quorum(shards: &[u32]) -> Self {
        MeiliError::new(
            503,
            "miroir_no_quorum",
            ErrorType::System,
            format!(
                "The write could not reach quorum in any replica group for shard(s) {}. Nothing was acknowledged; retry once the nodes are back.",
                join_u32(shards)
            ),
        )
    }

    /// No reachable replica serves the named shards and the policy is `error`.
    pub fn shard_unavailable(shards: &[u32]) -> Self {
        MeiliError::new(
            503,
            "miroir_shard_unavailable",
            ErrorType::System,
            format!(
                "No healthy replica can serve shard(s) {}.",
                join_u32(shards)
            ),
        )
    }

    /// A client document carries a field whose name is reserved for Miroir.
    pub fn reserved_field(field: &str) -> Self {
        MeiliError::invalid(
            400,
            "miroir_reserved_field",
            format!("The field `{field}` is reserved by Miroir: fields starting with `_miroir_` cannot be sent by clients."),
        )
    }

    /// A node answered something Miroir cannot interpret.
    pub fn bad_node_response(node: &str, what: &str) -> Self {
        MeiliError::new(
            502,
            "miroir_bad_node_response",
            ErrorType::System,
            format!("Node `{node}` sent a response Miroir cannot use: {what}."),
        )
    }

    /// An `Idempotency-Key` was already used for a different request (method, path or body).
    pub fn idempotency_key_reused(key: &str) -> Self {
        MeiliError::invalid(
            409,
            "miroir_idempotency_key_reused",
            format!("The idempotency key `{key}` was already used for a different request (method, path or body). Use a new key for a new request."),
        )
    }

    /// The first request with this `Idempotency-Key` is still being served.
    pub fn idempotency_key_in_flight(key: &str) -> Self {
        MeiliError::invalid(
            409,
            "miroir_idempotency_key_in_flight",
            format!("A request with the idempotency key `{key}` is still being processed. Retry later to get its answer."),
        )
    }

    /// The `Idempotency-Key` header is malformed.
    pub fn invalid_idempotency_key(message: impl Into<String>) -> Self {
        MeiliError::invalid(400, "miroir_invalid_idempotency_key", message)
    }

    /// The index's nodes hold different settings and repairs did not converge: its writes are refused.
    pub fn settings_frozen(index: &str, diverging: &[&str]) -> Self {
        MeiliError::new(
            503,
            "miroir_settings_frozen",
            ErrorType::System,
            format!("Writes to index `{index}` are suspended: the settings of node(s) {} differ from the other nodes' and could not be repaired. Check those nodes, then change the settings again or wait for the drift check.", diverging.join(", ")),
        )
    }

    /// A read asked for a settings version the index has not committed yet.
    pub fn settings_version_stale(index: &str, wanted: u64, committed: u64) -> Self {
        MeiliError::new(
            503,
            "miroir_settings_version_stale",
            ErrorType::System,
            format!("Index `{index}` has settings version {committed}; the request needs at least version {wanted} (`X-Miroir-Min-Settings-Version`). Retry once the settings change is committed."),
        )
    }

    /// An unexpected internal failure.
    pub fn internal(message: impl Into<String>) -> Self {
        MeiliError::new(500, "internal", ErrorType::Internal, message)
    }
}

/// The documentation link for an error code.
pub fn link_for(code: &str) -> String {
    if code.starts_with("miroir_") {
        format!("{MIROIR_ERRORS}{code}")
    } else {
        format!("{MEILI_ERRORS}{code}")
    }
}

pub(crate) fn join_u32(values: &[u32]) -> String {
    values
        .iter()
        .map(|v| v.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

impl fmt::Display for MeiliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}): {}", self.code, self.status, self.message)
    }
}

impl std::error::Error for MeiliError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_meilisearch_shape() {
        let e = MeiliError::invalid(404, "index_not_found", "Index `nope` not found.");
        let v = e.to_json();
        assert_eq!(
            v,
            serde_json::json!({
                "message": "Index `nope` not found.",
                "code": "index_not_found",
                "type": "invalid_request",
                "link": "https://docs.meilisearch.com/errors#index_not_found"
            })
        );
        assert_eq!(e.status, 404);
    }

    #[test]
    fn miroir_codes_link_to_miroir_docs() {
        let e = MeiliError::no_quorum(&[3, 7]);
        assert_eq!(e.status, 503);
        assert_eq!(e.error_type, ErrorType::System);
        assert!(e.link().ends_with("docs/errors.md#miroir_no_quorum"));
        assert!(e.message.contains("3, 7"));
        let r = MeiliError::reserved_field("_miroir_shard");
        assert_eq!(r.status, 400);
        assert_eq!(r.code, "miroir_reserved_field");
        assert!(r.message.contains("_miroir_shard"));
        assert_eq!(
            MeiliError::shard_unavailable(&[1]).code,
            "miroir_shard_unavailable"
        );
        assert_eq!(
            MeiliError::bad_node_response("n1", "truncated body").status,
            502
        );
        assert_eq!(MeiliError::internal("x").error_type, ErrorType::Internal);
        let r = MeiliError::idempotency_key_reused("k1");
        assert_eq!((r.status, r.error_type), (409, ErrorType::InvalidRequest));
        assert!(r.link().ends_with("#miroir_idempotency_key_reused"));
        assert!(r.message.contains("`k1`"));
        let f = MeiliError::idempotency_key_in_flight("k2");
        assert_eq!(
            (f.status, f.code.as_str()),
            (409, "miroir_idempotency_key_in_flight")
        );
        let fz = MeiliError::settings_frozen("movies", &["n1", "n2"]);
        assert_eq!((fz.status, fz.error_type), (503, ErrorType::System));
        assert!(fz.message.contains("n1, n2") && fz.message.contains("`movies`"));
        let st = MeiliError::settings_version_stale("movies", 4, 3);
        assert_eq!(
            (st.status, st.code.as_str()),
            (503, "miroir_settings_version_stale")
        );
        assert!(st.message.contains("version 3") && st.message.contains("version 4"));
        let i = MeiliError::invalid_idempotency_key("bad");
        assert_eq!(
            (i.status, i.code.as_str(), i.message.as_str()),
            (400, "miroir_invalid_idempotency_key", "bad")
        );
    }

    #[test]
    fn reads_node_error_bodies() {
        let body = serde_json::json!({"message": "m", "code": "invalid_document_id", "type": "invalid_request", "link": "x"});
        let e = MeiliError::from_node_body(400, &body).unwrap();
        assert_eq!(e.code, "invalid_document_id");
        assert_eq!(e.error_type, ErrorType::InvalidRequest);
        assert!(MeiliError::from_node_body(400, &serde_json::json!({"hits": []})).is_none());
        let odd = serde_json::json!({"message": "m", "code": "c", "type": "weird"});
        assert_eq!(
            MeiliError::from_node_body(500, &odd).unwrap().error_type,
            ErrorType::Internal
        );
    }
}
