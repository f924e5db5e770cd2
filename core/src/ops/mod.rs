//! Operations: the request-level state machines both shells run.
//!
//! Each operation turns one client request into node requests (actions), takes the node answers back as
//! events, and ends with the reply for the client. The proxy runs them over HTTP, the simulator over its
//! simulated network; neither decides anything itself. Operations compose the planners of the other modules
//! (routing, documents, quorum, search, tasks) and add only what sits between them: building node paths and
//! bodies, matching answers to requests, retrying a failed node's shards elsewhere.
//!
//! - [`write::FanoutWrite`]: a write sent to a set of nodes and judged by the write quorum (documents,
//!   deletions, settings, index creation and deletion).
//! - [`search::ScatterSearch`]: a search scattered over a covering set and merged exactly.
//! - [`get::DocumentGet`]: one document read from the owners of its shard.
//! - [`index`]: creating an index on every node, all or nothing (probe, create, configure, roll back).
//! - [`lanes::WriteLanes`]: the order in which one index's writes reach one node.
//! - [`task::TaskRead`]: reading the node tasks behind a Miroir task and aggregating them.
//! - [`cover::CoverRead`]: any other read scattered over a covering set (facet search, counts).
//! - [`every::EveryNode`]: a synchronous request every node must apply (experimental features).
//! - [`keys::KeysWrite`]: an API key write every node must apply, rolled back when a create is partial.
//! - [`settings`]: client settings versus node settings (the hidden `_miroir_shard` filterable field).
//! - [`stats`]: index statistics merged over a covering set.

pub mod cover;
pub mod every;
pub mod get;
pub mod index;
pub mod keys;
pub mod lanes;
pub mod search;
pub mod settings;
pub mod stats;
pub mod task;
pub mod write;

use crate::topology::NodeId;
use serde_json::Value;

/// An HTTP method a node request uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    Get,
    Post,
    Put,
    Patch,
    Delete,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Patch => "PATCH",
            Method::Delete => "DELETE",
        }
    }
}

/// Identifies one node request inside its operation; answers are fed back with it.
pub type RequestId = usize;

/// One request for one node: the action a shell carries out.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeRequest {
    pub id: RequestId,
    pub node: NodeId,
    pub method: Method,
    /// Path and query string, e.g. `/indexes/movies/documents?primaryKey=id`.
    pub path: String,
    /// The JSON body, if any (sent as `application/json`).
    pub body: Option<Value>,
}

/// The reply an operation gives the client.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub status: u16,
    pub body: Value,
    /// Extra headers, e.g. `X-Miroir-Degraded`.
    pub headers: Vec<(String, String)>,
}

impl Reply {
    pub fn json(status: u16, body: Value) -> Self {
        Reply {
            status,
            body,
            headers: Vec::new(),
        }
    }

    pub fn error(e: &crate::MeiliError) -> Self {
        Reply::json(e.status, e.to_json())
    }
}

/// Whether a node's HTTP status means the node could not serve (to be retried elsewhere, like a failed
/// connection) rather than an answer to relay: any 5xx, as [`search::ScatterSearch`] and
/// [`cover::CoverRead`] judge. A 4xx is the node's verdict on the request and is relayed.
pub fn node_unavailable(status: u16) -> bool {
    status >= 500
}

/// The header that marks an answer served or acknowledged with part of the fleet missing.
pub const DEGRADED_HEADER: &str = "X-Miroir-Degraded";

/// Percent-encodes a query-string value (RFC 3986 unreserved characters pass through).
pub fn encode_query_value(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    for b in raw.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// A placement of `nodes` nodes (`n0`, `n1`, …, node i in group i mod `groups`) for the operations' tests.
#[cfg(test)]
pub(crate) fn test_placement(
    nodes: usize,
    rf: u32,
    groups: u32,
    shards: u32,
) -> crate::routing::Placement {
    use crate::topology::{Node, Topology};
    let topo = Topology {
        epoch: 1,
        shards,
        replication_factor: rf,
        replica_groups: groups,
        nodes: (0..nodes)
            .map(|i| Node::active(format!("n{i}"), format!("http://n{i}"), (i as u32) % groups))
            .collect(),
    };
    crate::routing::Placement::new(&topo).expect("a valid test topology")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_are_percent_encoded() {
        assert_eq!(encode_query_value("id"), "id");
        assert_eq!(encode_query_value("product id/ü"), "product%20id%2F%C3%BC");
    }

    #[test]
    fn error_replies_carry_status_and_meilisearch_body() {
        let r = Reply::error(&crate::MeiliError::no_quorum(&[1]));
        assert_eq!(r.status, 503);
        assert_eq!(r.body["code"], "miroir_no_quorum");
        assert_eq!(Method::Delete.as_str(), "DELETE");
        assert!(node_unavailable(503) && node_unavailable(500));
        assert!(!node_unavailable(404) && !node_unavailable(200));
    }
}
