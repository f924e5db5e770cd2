//! A synchronous request every node must apply (no task behind it), e.g. `PATCH /experimental-features`.
//!
//! States: `Sending` → `Done` once every node answered or failed. Events: [`EveryNode::on_response`],
//! [`EveryNode::on_failure`].
//!
//! Invariants:
//! - the client gets a success only when every node succeeded (2xx), with the answer of the first node in
//!   configuration order, so the fleet never reports a state only some nodes are in;
//! - a node's client error (4xx with a Meilisearch error) is relayed as is: every node would give the same;
//! - a node that fails (no answer, 5xx, or an answer that is not a Meilisearch error) makes the request fail
//!   with `miroir_bad_node_response` naming it, whatever the others did; the client may retry, the request
//!   being idempotent.

use super::{Method, NodeRequest, Reply, RequestId};
use crate::error::MeiliError;
use crate::topology::NodeId;
use serde_json::Value;

#[derive(Debug, Clone, PartialEq)]
enum Outcome {
    Pending,
    Ok(Value),
    ClientError(MeiliError),
    Failed(String),
}

/// One request sent to every node. See the module documentation.
#[derive(Debug, Clone)]
pub struct EveryNode {
    requests: Vec<NodeRequest>,
    outcomes: Vec<Outcome>,
}

impl EveryNode {
    /// The same request for each of `nodes` (in configuration order).
    pub fn new(nodes: &[NodeId], method: Method, path: &str, body: Option<Value>) -> Self {
        let requests: Vec<NodeRequest> = nodes
            .iter()
            .enumerate()
            .map(|(id, node)| NodeRequest {
                id,
                node: node.clone(),
                method,
                path: path.to_string(),
                body: body.clone(),
            })
            .collect();
        EveryNode {
            outcomes: vec![Outcome::Pending; requests.len()],
            requests,
        }
    }

    /// The requests to send, all at once.
    pub fn requests(&self) -> &[NodeRequest] {
        &self.requests
    }

    /// Feeds a node's HTTP answer to request `id`.
    pub fn on_response(&mut self, id: RequestId, status: u16, body: Value) {
        let Some(slot) = self.outcomes.get_mut(id) else {
            return;
        };
        if *slot != Outcome::Pending {
            return;
        }
        *slot = match status {
            200..=299 => Outcome::Ok(body),
            400..=499 => match MeiliError::from_node_body(status, &body) {
                Some(e) => Outcome::ClientError(e),
                None => Outcome::Failed(format!("HTTP {status} without a Meilisearch error")),
            },
            _ => Outcome::Failed(format!("HTTP {status}")),
        };
    }

    /// Request `id` could not be delivered, or timed out.
    pub fn on_failure(&mut self, id: RequestId) {
        if let Some(slot) = self.outcomes.get_mut(id) {
            if *slot == Outcome::Pending {
                *slot = Outcome::Failed("no answer".into());
            }
        }
    }

    /// The client's reply once every node answered or failed.
    pub fn reply(&self) -> Option<Reply> {
        if self.outcomes.contains(&Outcome::Pending) {
            return None;
        }
        for (i, o) in self.outcomes.iter().enumerate() {
            if let Outcome::Failed(why) = o {
                return Some(Reply::error(&MeiliError::bad_node_response(
                    self.requests[i].node.as_str(),
                    why,
                )));
            }
        }
        for o in &self.outcomes {
            if let Outcome::ClientError(e) = o {
                return Some(Reply::error(e));
            }
        }
        match self.outcomes.first() {
            Some(Outcome::Ok(body)) => Some(Reply::json(200, body.clone())),
            _ => Some(Reply::error(&MeiliError::internal(
                "no node to send the request to",
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn nodes(n: usize) -> Vec<NodeId> {
        (0..n).map(|i| NodeId::new(format!("n{i}"))).collect()
    }

    #[test]
    fn succeeds_only_when_every_node_did() {
        let mut e = EveryNode::new(
            &nodes(3),
            Method::Patch,
            "/experimental-features",
            Some(json!({"containsFilter": true})),
        );
        assert_eq!(e.requests().len(), 3);
        assert!(e.requests().iter().all(|r| r.method == Method::Patch));
        e.on_response(1, 200, json!({"containsFilter": true, "n": 1}));
        assert!(e.reply().is_none());
        e.on_response(0, 200, json!({"containsFilter": true, "n": 0}));
        e.on_response(2, 200, json!({"containsFilter": true, "n": 2}));
        e.on_response(2, 500, json!({}));
        e.on_response(7, 500, json!({}));
        let r = e.reply().unwrap();
        assert_eq!((r.status, r.body["n"].clone()), (200, json!(0)));
    }

    #[test]
    fn a_failure_or_a_client_error_is_reported() {
        let mut e = EveryNode::new(&nodes(2), Method::Patch, "/x", None);
        e.on_response(0, 200, json!({}));
        e.on_failure(1);
        e.on_failure(1);
        let r = e.reply().unwrap();
        assert_eq!(r.body["code"], "miroir_bad_node_response");
        assert!(r.body["message"].as_str().unwrap().contains("n1"));

        let mut e = EveryNode::new(&nodes(2), Method::Patch, "/x", None);
        let bad =
            json!({"message": "m", "code": "bad_request", "type": "invalid_request", "link": ""});
        e.on_response(0, 400, bad.clone());
        e.on_response(1, 400, bad);
        let r = e.reply().unwrap();
        assert_eq!(
            (r.status, r.body["code"].clone()),
            (400, json!("bad_request"))
        );

        let mut e = EveryNode::new(&nodes(1), Method::Get, "/x", None);
        e.on_response(0, 418, json!("teapot"));
        assert_eq!(e.reply().unwrap().body["code"], "miroir_bad_node_response");
        let mut e = EveryNode::new(&nodes(1), Method::Get, "/x", None);
        e.on_response(0, 503, json!({}));
        assert_eq!(e.reply().unwrap().status, 502);
        let e = EveryNode::new(&[], Method::Get, "/x", None);
        assert_eq!(e.reply().unwrap().status, 500);
    }
}
