//! Reading one document by id from the owners of its shard.
//!
//! States: `Trying(k)` (asking the k-th candidate owner) → `Done` (a reply exists). Candidates are the
//! owners of the document's shard in every group: healthy ones first (preferred group first), then the
//! others as a last resort. One request is in flight at a time.
//!
//! Invariants:
//! - an answer from an owner that is a Meilisearch answer (200 or a 4xx error such as
//!   `document_not_found`) is final and relayed; a 200 has every `_miroir_*` field stripped;
//! - a failure (no answer, 5xx, garbage) moves on to the next owner; with no owner left the reply is 503
//!   `miroir_shard_unavailable` naming the shard.

use super::{encode_query_value, Method, NodeRequest, Reply, RequestId};
use crate::routing::Placement;
use crate::topology::{GroupId, NodeId, ShardId};
use crate::MeiliError;
use serde_json::Value;

/// One read by id. See the module documentation.
#[derive(Debug, Clone)]
pub struct DocumentGet {
    shard: ShardId,
    path: String,
    candidates: Vec<NodeId>,
    next: usize,
    in_flight: Option<RequestId>,
    reply: Option<Reply>,
}

impl DocumentGet {
    /// Reads document `id` (as written in the path, percent-decoded) of `index_uid`; `query` is the client's
    /// query string (e.g. `fields=title`), passed through.
    pub fn new(
        index_uid: &str,
        id: &str,
        query: Option<&str>,
        placement: &Placement,
        healthy: &dyn Fn(&NodeId) -> bool,
        preferred_group: GroupId,
    ) -> Self {
        let shard = placement.shard_for_key(id);
        let groups = placement.groups().max(1);
        let mut owners: Vec<NodeId> = Vec::new();
        for k in 0..groups {
            for n in placement.owners(shard, (preferred_group % groups + k) % groups) {
                if !owners.contains(n) {
                    owners.push(n.clone());
                }
            }
        }
        let (mut candidates, rest): (Vec<NodeId>, Vec<NodeId>) =
            owners.into_iter().partition(|n| healthy(n));
        candidates.extend(rest);
        let mut path = format!("/indexes/{index_uid}/documents/{}", encode_query_value(id));
        if let Some(q) = query.filter(|q| !q.is_empty()) {
            path.push('?');
            path.push_str(q);
        }
        let mut get = DocumentGet {
            shard,
            path,
            candidates,
            next: 0,
            in_flight: None,
            reply: None,
        };
        get.exhausted_check();
        get
    }

    /// The next request to send, if one should go out now.
    pub fn next_request(&mut self) -> Option<NodeRequest> {
        if self.reply.is_some() || self.in_flight.is_some() || self.next >= self.candidates.len() {
            return None;
        }
        let id = self.next;
        self.next += 1;
        self.in_flight = Some(id);
        Some(NodeRequest {
            id,
            node: self.candidates[id].clone(),
            method: Method::Get,
            path: self.path.clone(),
            body: None,
        })
    }

    /// Feeds the answer to request `id`.
    pub fn on_response(&mut self, id: RequestId, status: u16, body: Value) {
        if self.in_flight != Some(id) {
            return;
        }
        self.in_flight = None;
        match status {
            200 => match body {
                Value::Object(mut doc) => {
                    doc.retain(|k, _| !k.starts_with(crate::RESERVED_PREFIX));
                    self.reply = Some(Reply::json(200, Value::Object(doc)));
                }
                _ => self.exhausted_check(),
            },
            400..=499 if MeiliError::from_node_body(status, &body).is_some() => {
                self.reply = Some(Reply::json(status, body));
            }
            _ => self.exhausted_check(),
        }
    }

    /// Request `id` failed; the next owner is tried.
    pub fn on_failure(&mut self, id: RequestId) {
        if self.in_flight == Some(id) {
            self.in_flight = None;
            self.exhausted_check();
        }
    }

    fn exhausted_check(&mut self) {
        if self.reply.is_none() && self.in_flight.is_none() && self.next >= self.candidates.len() {
            self.reply = Some(Reply::error(&MeiliError::shard_unavailable(&[self.shard])));
        }
    }

    pub fn reply(&self) -> Option<&Reply> {
        self.reply.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topology::{Node, Topology};
    use serde_json::json;

    fn placement() -> Placement {
        let topo = Topology {
            epoch: 1,
            shards: 4,
            replication_factor: 2,
            replica_groups: 1,
            nodes: (0..3)
                .map(|i| Node::active(format!("n{i}"), format!("http://n{i}"), 0))
                .collect(),
        };
        Placement::new(&topo).unwrap()
    }

    #[test]
    fn reads_from_an_owner_and_strips_miroir_fields() {
        let p = placement();
        let mut g = DocumentGet::new("movies", "42", Some("fields=title"), &p, &|_| true, 0);
        let r = g.next_request().unwrap();
        assert!(p.owners(p.shard_for_key("42"), 0).contains(&r.node));
        assert_eq!(r.path, "/indexes/movies/documents/42?fields=title");
        assert!(g.next_request().is_none(), "one request at a time");
        g.on_response(
            r.id,
            200,
            json!({"id": 42, "title": "x", "_miroir_shard": 1}),
        );
        assert_eq!(g.reply().unwrap().body, json!({"id": 42, "title": "x"}));
    }

    #[test]
    fn integer_and_string_ids_route_alike_and_failures_move_on() {
        let p = placement();
        let mut g = DocumentGet::new("movies", "7", None, &p, &|_| true, 0);
        let first = g.next_request().unwrap();
        g.on_failure(first.id);
        let second = g.next_request().unwrap();
        assert_ne!(first.node, second.node);
        g.on_response(second.id, 502, json!("garbage"));
        assert_eq!(g.reply().unwrap().status, 503);
        assert_eq!(g.reply().unwrap().body["code"], "miroir_shard_unavailable");
    }

    #[test]
    fn not_found_is_relayed_and_unhealthy_owners_come_last() {
        let p = placement();
        let owners = p.owners(p.shard_for_key("9"), 0).to_vec();
        let sick = owners[0].clone();
        let mut g = DocumentGet::new("movies", "9", None, &p, &|n| *n != sick, 0);
        let r = g.next_request().unwrap();
        assert_eq!(r.node, owners[1], "the healthy owner is asked first");
        let nf = json!({"message": "Document `9` not found.", "code": "document_not_found", "type": "invalid_request", "link": "https://docs.meilisearch.com/errors#document_not_found"});
        g.on_response(r.id, 404, nf.clone());
        assert_eq!(g.reply().unwrap(), &Reply::json(404, nf));
        assert!(g.next_request().is_none());
        assert!(DocumentGet::new("movies", "a b", None, &p, &|_| true, 0)
            .next_request()
            .unwrap()
            .path
            .ends_with("a%20b"));
    }
}
