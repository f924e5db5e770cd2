//! A read scattered over a covering set, for requests other than search (facet search, per-shard counts):
//! each node of the cover receives the client's body with its shard restriction AND-ed into `filter`, and a
//! node that fails has its shards re-planned on another healthy owner, exactly as [`super::search`] does.
//!
//! States: `Scattering` (requests out, answers arriving) → `Done` (every request answered or given up;
//! [`CoverRead::outcome`] is available). A node error that is a client error (4xx with a Meilisearch error
//! body, e.g. an invalid filter) ends the read with that error at once.
//!
//! Invariants:
//! - every shard is answered by exactly one successful request, or is listed unavailable; a retry carries
//!   only the failed request's shards, and a failed request's answer is never used;
//! - a request body differs from the client's only by its `filter`, which keeps the client's filter
//!   byte for byte (see [`crate::search::and_filter`]).

use super::{Method, NodeRequest, RequestId};
use crate::error::MeiliError;
use crate::routing::Placement;
use crate::search::{and_filter, shard_filter};
use crate::topology::{GroupId, NodeId, ShardId};
use serde_json::{Map, Value};
use std::collections::{BTreeMap, BTreeSet};

/// One successful answer of a covering read.
#[derive(Debug, Clone, PartialEq)]
pub struct CoverAnswer {
    /// The request id (a stable order for merging).
    pub order: usize,
    /// The node that answered.
    pub node: NodeId,
    /// The shards this answer stands for.
    pub shards: Vec<ShardId>,
    /// Whether the answer covers every shard the node holds (no restriction was applied).
    pub whole_node: bool,
    /// The body (status 2xx).
    pub body: Value,
}

/// How a covering read ended.
#[derive(Debug, Clone, PartialEq)]
pub enum CoverOutcome {
    /// Answers for every available shard, and the shards no healthy owner could serve.
    Answers {
        answers: Vec<CoverAnswer>,
        unavailable: Vec<ShardId>,
    },
    /// A node rejected the request as a client error: relay it.
    ClientError(MeiliError),
}

/// One covering read in flight. See the module documentation.
#[derive(Debug, Clone)]
pub struct CoverRead {
    path: String,
    body: Map<String, Value>,
    candidates: Vec<Vec<NodeId>>,
    held: BTreeMap<NodeId, Vec<ShardId>>,
    usable: BTreeMap<NodeId, bool>,
    requests: Vec<NodeRequest>,
    shards_of: Vec<Vec<ShardId>>,
    finished: Vec<bool>,
    sent: usize,
    answers: Vec<CoverAnswer>,
    unavailable: BTreeSet<ShardId>,
    error: Option<MeiliError>,
    /// Which 2xx bodies count as answers; any other body is a failure of that node (retried elsewhere).
    accepts: fn(&Value) -> bool,
}

impl CoverRead {
    /// Plans a POST of `body` to `path` on a covering set of `placement`.
    pub fn new(
        path: String,
        body: Map<String, Value>,
        placement: &Placement,
        healthy: &dyn Fn(&NodeId) -> bool,
        preferred_group: GroupId,
        rotation: u64,
    ) -> Self {
        let groups = placement.groups().max(1);
        let mut usable = BTreeMap::new();
        let mut held = BTreeMap::new();
        let mut candidates = Vec::with_capacity(placement.shards() as usize);
        for shard in 0..placement.shards() {
            let mut list = Vec::new();
            for k in 0..groups {
                let group = (preferred_group % groups + k) % groups;
                for node in placement.owners(shard, group) {
                    usable.entry(node.clone()).or_insert_with(|| healthy(node));
                    held.entry(node.clone())
                        .or_insert_with(|| placement.shards_held_by(node));
                    if !list.contains(node) {
                        list.push(node.clone());
                    }
                }
            }
            candidates.push(list);
        }
        let cover = placement.cover(
            &|n| usable.get(n).copied().unwrap_or(false),
            preferred_group,
            rotation,
        );
        let mut read = CoverRead {
            path,
            body,
            candidates,
            held,
            usable,
            requests: Vec::new(),
            shards_of: Vec::new(),
            finished: Vec::new(),
            sent: 0,
            answers: Vec::new(),
            unavailable: cover.unavailable.iter().copied().collect(),
            error: None,
            accepts: Value::is_object,
        };
        for (node, c) in cover.assignments {
            read.push_request(node, c.shards);
        }
        read
    }

    /// Only 2xx bodies for which `accepts` holds count as answers (the default accepts any JSON object).
    pub fn accepting(mut self, accepts: fn(&Value) -> bool) -> Self {
        self.accepts = accepts;
        self
    }

    /// The shards request `id` stands for.
    pub fn shards_of(&self, id: RequestId) -> &[ShardId] {
        self.shards_of.get(id).map(Vec::as_slice).unwrap_or(&[])
    }

    /// The shards no healthy owner could serve so far.
    pub fn unavailable(&self) -> Vec<ShardId> {
        self.unavailable.iter().copied().collect()
    }

    fn push_request(&mut self, node: NodeId, shards: Vec<ShardId>) {
        let held = self.held.get(&node).cloned().unwrap_or_default();
        let mut body = self.body.clone();
        if let Some(extra) = shard_filter(&shards, &held) {
            let filter = and_filter(body.get("filter"), &extra);
            body.insert("filter".into(), filter);
        }
        let id = self.requests.len();
        self.requests.push(NodeRequest {
            id,
            node,
            method: Method::Post,
            path: self.path.clone(),
            body: Some(Value::Object(body)),
        });
        self.shards_of.push(shards);
        self.finished.push(false);
    }

    /// The requests created since the last call: send them all.
    pub fn take_requests(&mut self) -> Vec<NodeRequest> {
        let new = self.requests[self.sent..].to_vec();
        self.sent = self.requests.len();
        new
    }

    /// Feeds a node's HTTP answer to request `id`.
    pub fn on_response(&mut self, id: RequestId, status: u16, body: Value) {
        if self.error.is_some() || !self.open(id) {
            return;
        }
        match status {
            200..=299 if (self.accepts)(&body) => {
                self.finished[id] = true;
                let node = self.requests[id].node.clone();
                let shards = self.shards_of[id].clone();
                let whole_node = self
                    .held
                    .get(&node)
                    .is_some_and(|h| shard_filter(&shards, h).is_none());
                self.answers.push(CoverAnswer {
                    order: id,
                    node,
                    shards,
                    whole_node,
                    body,
                });
            }
            400..=499 => match MeiliError::from_node_body(status, &body) {
                Some(e) => self.error = Some(e),
                None => self.fail(id),
            },
            _ => self.fail(id),
        }
    }

    /// Request `id` could not be delivered, or timed out.
    pub fn on_failure(&mut self, id: RequestId) {
        if self.error.is_some() || !self.open(id) {
            return;
        }
        self.fail(id);
    }

    fn open(&self, id: RequestId) -> bool {
        self.finished.get(id).is_some_and(|f| !f)
    }

    fn fail(&mut self, id: RequestId) {
        self.finished[id] = true;
        let failed = self.requests[id].node.clone();
        self.usable.insert(failed, false);
        let mut moved: BTreeMap<NodeId, Vec<ShardId>> = BTreeMap::new();
        for &shard in &self.shards_of[id] {
            let next = self.candidates[shard as usize]
                .iter()
                .find(|n| self.usable.get(*n).copied().unwrap_or(false));
            match next {
                Some(node) => moved.entry(node.clone()).or_default().push(shard),
                None => {
                    self.unavailable.insert(shard);
                }
            }
        }
        for (node, shards) in moved {
            self.push_request(node, shards);
        }
    }

    /// How the read ended, once nothing is outstanding (or a client error ended it).
    pub fn outcome(&self) -> Option<CoverOutcome> {
        if let Some(e) = &self.error {
            return Some(CoverOutcome::ClientError(e.clone()));
        }
        if self.finished.iter().any(|f| !f) {
            return None;
        }
        Some(CoverOutcome::Answers {
            answers: self.answers.clone(),
            unavailable: self.unavailable.iter().copied().collect(),
        })
    }
}

/// Where to re-send a request that failed on one node and served `shards`: the first node, in group
/// preference order (`preferred_group` first) and owner order, that holds every one of `shards`, is not in
/// `excluded`, and is healthy; failing that, one that is not known healthy (health is only a hint, and
/// trying beats giving up). Returns the node and every shard it holds; `None` when no node holds them all.
pub fn replacement(
    placement: &Placement,
    shards: &[ShardId],
    excluded: &BTreeSet<NodeId>,
    healthy: &dyn Fn(&NodeId) -> bool,
    preferred_group: GroupId,
) -> Option<(NodeId, Vec<ShardId>)> {
    let first = *shards.first()?;
    let groups = placement.groups().max(1);
    let mut candidates: Vec<(NodeId, Vec<ShardId>)> = Vec::new();
    for k in 0..groups {
        let group = (preferred_group % groups + k) % groups;
        for node in placement.owners(first, group) {
            if excluded.contains(node) || candidates.iter().any(|(n, _)| n == node) {
                continue;
            }
            let held = placement.shards_held_by(node);
            if shards.iter().all(|s| held.binary_search(s).is_ok()) {
                candidates.push((node.clone(), held));
            }
        }
    }
    let pick = candidates.iter().position(|(n, _)| healthy(n)).unwrap_or(0);
    (!candidates.is_empty()).then(|| candidates.swap_remove(pick))
}

/// What to do when a request of a multi-phase read (the documents pager) failed on a node.
#[derive(Debug, Clone, PartialEq)]
pub enum Recovery {
    /// Re-send the request to this node, which holds every shard it served (and these shards).
    Retry(NodeId, Vec<ShardId>),
    /// No single node holds all its shards, but the nodes not yet failed still cover every shard: start
    /// the read again on a covering set without the failed nodes.
    Restart,
    /// Nothing can serve these shards: leave them out (`partial` policy).
    Skip,
    /// Nothing can serve these shards: answer this error (`error` policy).
    Fail(MeiliError),
}

/// Decides how to recover from a failed request that served `shards`, given every node that failed so
/// far (`excluded`). See [`Recovery`]; [`replacement`] picks the retry target.
pub fn recover(
    placement: &Placement,
    shards: &[ShardId],
    excluded: &BTreeSet<NodeId>,
    healthy: &dyn Fn(&NodeId) -> bool,
    preferred_group: GroupId,
    policy: crate::config::UnavailableShardPolicy,
) -> Recovery {
    if let Some((node, held)) = replacement(placement, shards, excluded, healthy, preferred_group) {
        return Recovery::Retry(node, held);
    }
    if placement
        .cover(&|n| !excluded.contains(n), preferred_group, 0)
        .unavailable
        .is_empty()
    {
        return Recovery::Restart;
    }
    match policy {
        crate::config::UnavailableShardPolicy::Partial => Recovery::Skip,
        crate::config::UnavailableShardPolicy::Error => {
            Recovery::Fail(MeiliError::shard_unavailable(shards))
        }
    }
}

/// The covering set of a restarted read: healthy nodes not yet failed, or, when they leave a shard
/// uncovered, any node not yet failed (health is only a hint).
pub fn cover_without(
    placement: &Placement,
    excluded: &BTreeSet<NodeId>,
    healthy: &dyn Fn(&NodeId) -> bool,
    preferred_group: GroupId,
    rotation: u64,
) -> crate::routing::CoverPlan {
    let strict = placement.cover(
        &|n| !excluded.contains(n) && healthy(n),
        preferred_group,
        rotation,
    );
    if strict.unavailable.is_empty() {
        return strict;
    }
    placement.cover(&|n| !excluded.contains(n), preferred_group, rotation)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn placement(nodes: usize, rf: u32, groups: u32, shards: u32) -> Placement {
        crate::ops::test_placement(nodes, rf, groups, shards)
    }

    fn body() -> Map<String, Value> {
        json!({"facetName": "genre", "filter": "year > 2000"})
            .as_object()
            .unwrap()
            .clone()
    }

    #[test]
    fn every_shard_is_answered_once_with_restrictions() {
        let p = placement(3, 2, 1, 8);
        let mut r = CoverRead::new("/x".into(), body(), &p, &|_| true, 0, 0);
        let reqs = r.take_requests();
        let mut seen = Vec::new();
        for q in &reqs {
            let b = q.body.as_ref().unwrap();
            assert_eq!(b["facetName"], "genre");
            assert_eq!(b["filter"][0], "year > 2000", "client filter kept as is");
            seen.extend(r.shards_of[q.id].clone());
        }
        seen.sort_unstable();
        assert_eq!(seen, (0..8).collect::<Vec<_>>());
        assert!(r.outcome().is_none());
        for q in &reqs {
            r.on_response(q.id, 200, json!({"facetHits": []}));
        }
        let Some(CoverOutcome::Answers {
            answers,
            unavailable,
        }) = r.outcome()
        else {
            panic!("done")
        };
        assert_eq!(answers.len(), reqs.len());
        assert!(unavailable.is_empty());
    }

    #[test]
    fn failures_move_shards_and_client_errors_end_the_read() {
        let p = placement(2, 2, 1, 4);
        let mut r = CoverRead::new("/x".into(), Map::new(), &p, &|_| true, 0, 0);
        let first = r.take_requests();
        r.on_failure(first[0].id);
        let retry = r.take_requests();
        assert!(!retry.is_empty());
        assert_ne!(retry[0].node, first[0].node);
        for q in first.iter().skip(1).chain(retry.iter()) {
            r.on_response(q.id, 200, json!({}));
        }
        let Some(CoverOutcome::Answers {
            answers,
            unavailable,
        }) = r.outcome()
        else {
            panic!("done")
        };
        let mut shards: Vec<u32> = answers.iter().flat_map(|a| a.shards.clone()).collect();
        shards.sort_unstable();
        assert_eq!(shards, vec![0, 1, 2, 3]);
        assert!(unavailable.is_empty());

        // one node, failed: everything unavailable
        let p = placement(1, 1, 1, 4);
        let mut r = CoverRead::new("/x".into(), Map::new(), &p, &|_| true, 0, 0);
        let q = r.take_requests();
        assert!(q[0].body.as_ref().unwrap().get("filter").is_none());
        r.on_response(q[0].id, 503, json!({}));
        let Some(CoverOutcome::Answers { unavailable, .. }) = r.outcome() else {
            panic!("done")
        };
        assert_eq!(unavailable, vec![0, 1, 2, 3]);

        let mut r = CoverRead::new("/x".into(), Map::new(), &p, &|_| true, 0, 0);
        let q = r.take_requests();
        r.on_response(
            q[0].id,
            400,
            json!({"message": "bad", "code": "invalid_search_filter", "type": "invalid_request", "link": ""}),
        );
        assert!(
            matches!(r.outcome(), Some(CoverOutcome::ClientError(e)) if e.code == "invalid_search_filter")
        );
        r.on_response(q[0].id, 200, json!({}));
    }

    #[test]
    fn replacements_hold_every_shard_and_prefer_healthy_nodes() {
        let p = placement(3, 2, 1, 8);
        let owners = p.owners(0, 0).to_vec();
        let excluded: BTreeSet<NodeId> = [owners[0].clone()].into_iter().collect();
        let (n, held) = replacement(&p, &[0], &excluded, &|_| true, 0).unwrap();
        assert_eq!(n, owners[1]);
        assert!(held.contains(&0));
        // the only other owner is unhealthy: still tried
        let (n, _) = replacement(&p, &[0], &excluded, &|_| false, 0).unwrap();
        assert_eq!(n, owners[1]);
        let all: BTreeSet<NodeId> = owners.iter().cloned().collect();
        assert!(replacement(&p, &[0], &all, &|_| true, 0).is_none());
        assert!(replacement(&p, &[], &BTreeSet::new(), &|_| true, 0).is_none());
        // shards nobody holds together
        let none_holds_all = (0..8u32).collect::<Vec<_>>();
        assert!(replacement(&p, &none_holds_all, &BTreeSet::new(), &|_| true, 0).is_none());
        // RG=2: the preferred group's owner comes first
        let p = placement(2, 1, 2, 4);
        let (n, _) = replacement(&p, &[1], &BTreeSet::new(), &|_| true, 1).unwrap();
        assert_eq!(&n, &p.owners(1, 1)[0]);
        let (n, _) =
            replacement(&p, &[1], &BTreeSet::new(), &|n| n == &p.owners(1, 0)[0], 1).unwrap();
        assert_eq!(&n, &p.owners(1, 0)[0]);
    }

    #[test]
    fn recovery_retries_then_restarts_then_follows_the_policy() {
        use crate::config::UnavailableShardPolicy::{Error, Partial};
        let p = placement(3, 2, 1, 8);
        let n0 = NodeId::new("n0");
        let one: BTreeSet<NodeId> = [n0.clone()].into_iter().collect();
        let held0 = p.shards_held_by(&n0);
        // a single shard: another owner holds it
        assert!(matches!(
            recover(&p, &held0[..1], &one, &|_| true, 0, Partial),
            Recovery::Retry(n, _) if n != n0
        ));
        // everything n0 held: nobody else holds it all, but the two others still cover every shard
        assert_eq!(
            recover(&p, &held0, &one, &|_| true, 0, Partial),
            Recovery::Restart
        );
        let c = cover_without(&p, &one, &|_| true, 0, 0);
        assert!(c.unavailable.is_empty());
        assert!(!c.assignments.contains_key(&n0));
        // health is a hint: when healthy nodes leave gaps, unhealthy ones are used
        let c = cover_without(&p, &one, &|_| false, 0, 0);
        assert!(c.unavailable.is_empty());
        // two of three failed with RF=2: some shard is gone
        let two: BTreeSet<NodeId> = ["n0", "n1"].into_iter().map(NodeId::new).collect();
        let lost: Vec<u32> = (0..8)
            .filter(|s| p.owners(*s, 0).iter().all(|o| two.contains(o)))
            .collect();
        assert!(!lost.is_empty());
        assert_eq!(
            recover(&p, &lost, &two, &|_| true, 0, Partial),
            Recovery::Skip
        );
        assert!(matches!(
            recover(&p, &lost, &two, &|_| true, 0, Error),
            Recovery::Fail(e) if e.code == "miroir_shard_unavailable"
        ));
    }

    #[test]
    fn unhealthy_nodes_are_skipped_up_front() {
        let p = placement(2, 2, 1, 4);
        let mut r = CoverRead::new("/x".into(), Map::new(), &p, &|n| n.as_str() == "n1", 0, 0);
        let q = r.take_requests();
        assert!(q.iter().all(|q| q.node.as_str() == "n1"));
        r.on_response(q[0].id, 200, json!({"a": 1}));
        let Some(CoverOutcome::Answers { answers, .. }) = r.outcome() else {
            panic!("done")
        };
        assert!(answers[0].whole_node);
    }
}
