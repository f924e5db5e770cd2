//! A read scattered over a covering set, for requests other than search (facet search, per-shard counts),
//! and the scatter underneath [`super::search::ScatterSearch`]: each node of the cover receives the
//! client's body with its shard restriction AND-ed into `filter`, and a node that fails has its shards
//! re-planned on another healthy owner.
//!
//! States: `Scattering` (requests out, answers arriving) → `Done` (every shard in scope answered or given
//! up; [`CoverRead::outcome`] is available). A node error that is a client error (4xx with a Meilisearch
//! error body, e.g. an invalid filter) ends the read with that error at once.
//!
//! Options ([`CoverOptions`]):
//! - *scope*: only some shards are read (primary-key narrowing, see [`crate::search::pinned_shards`]);
//!   the others are neither asked nor unavailable: they cannot hold a matching document;
//! - *ranking*: a replica preference, best first (from a [`crate::select::Selector`]): each shard goes to
//!   its best-ranked healthy owner in the preferred group (so the best node takes every shard it holds and
//!   the read needs few requests); without one, owners rotate with `rotation`;
//! - *hedging* ([`HedgePolicy`]): a request still unanswered `delay(node)` ms after it was sent (see
//!   [`CoverRead::take_requests_at`], [`CoverRead::poll_timeout`], [`CoverRead::on_timeout`]) is sent again
//!   to other replicas holding its shards; the first usable answer for those shards wins.
//!
//! Invariants:
//! - every shard in scope is answered by exactly one accepted answer, or is listed unavailable: an answer is
//!   accepted only when none of its shards was answered already, so a late duplicate (the loser of a hedge,
//!   or a request overtaken by a retry) is never merged, and no hit, facet count or total counts twice;
//! - a shard is re-planned when no open request that could still be accepted covers it (its request failed,
//!   or an overlapping answer made it unacceptable); a failed request's answer is never used;
//! - a hedge is only sent when every shard of the slow request has another usable owner, and at most
//!   `max_hedges` times per read; writes never use this type;
//! - a request body differs from the client's only by its `filter`, which keeps the client's filter
//!   byte for byte (see [`crate::search::and_filter`]).

use super::{Method, NodeRequest, RequestId};
use crate::error::MeiliError;
use crate::routing::Placement;
use crate::search::{and_filter, shard_filter};
pub use crate::select::HedgePolicy;
use crate::topology::{GroupId, NodeId, ShardId};
use crate::Millis;
use serde_json::{Map, Value};
use std::collections::{BTreeMap, BTreeSet};

/// The id of a probe request ([`CoverRead::probe_request`]), never one of the read's own requests.
pub const PROBE_ID: RequestId = RequestId::MAX;

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

/// How a covering read is planned, beyond the placement and health. See the module documentation.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CoverOptions {
    /// The replica group tried first (taken modulo RG).
    pub preferred_group: GroupId,
    /// Spreads shards over replicas when `ranking` is empty.
    pub rotation: u64,
    /// Replica preference, best first; nodes not listed come after, in owner order. Empty: rotation.
    pub ranking: Vec<NodeId>,
    /// Only these shards are read; `None`: every shard.
    pub scope: Option<Vec<ShardId>>,
    /// Hedging of slow requests; `None`: never.
    pub hedge: Option<HedgePolicy>,
}

/// One covering read in flight. See the module documentation.
#[derive(Debug, Clone)]
pub struct CoverRead {
    path: String,
    body: Map<String, Value>,
    candidates: Vec<Vec<NodeId>>,
    held: BTreeMap<NodeId, Vec<ShardId>>,
    usable: BTreeMap<NodeId, bool>,
    scope: BTreeSet<ShardId>,
    requests: Vec<NodeRequest>,
    shards_of: Vec<Vec<ShardId>>,
    finished: Vec<bool>,
    sent_at: Vec<Option<Millis>>,
    is_hedge: Vec<bool>,
    hedged: Vec<bool>,
    sent: usize,
    answered: BTreeMap<ShardId, RequestId>,
    answers: Vec<CoverAnswer>,
    unavailable: BTreeSet<ShardId>,
    error: Option<MeiliError>,
    hedge: Option<HedgePolicy>,
    hedges_fired: u32,
    hedges_won: u32,
    /// Which 2xx bodies count as answers; any other body is a failure of that node (retried elsewhere).
    accepts: fn(&Value) -> bool,
}

impl CoverRead {
    /// Plans a POST of `body` to `path` on a covering set of `placement` (every shard, owners rotated by
    /// `rotation`, no hedging).
    pub fn new(
        path: String,
        body: Map<String, Value>,
        placement: &Placement,
        healthy: &dyn Fn(&NodeId) -> bool,
        preferred_group: GroupId,
        rotation: u64,
    ) -> Self {
        Self::with_options(
            path,
            body,
            placement,
            healthy,
            CoverOptions {
                preferred_group,
                rotation,
                ..CoverOptions::default()
            },
        )
    }

    /// Plans a POST of `body` to `path` on a covering set of `placement`, as `options` say.
    pub fn with_options(
        path: String,
        body: Map<String, Value>,
        placement: &Placement,
        healthy: &dyn Fn(&NodeId) -> bool,
        options: CoverOptions,
    ) -> Self {
        let CoverOptions {
            preferred_group,
            rotation,
            ranking,
            scope,
            hedge,
        } = options;
        let groups = placement.groups().max(1);
        let rank = |n: &NodeId| ranking.iter().position(|r| r == n).unwrap_or(usize::MAX);
        let mut usable = BTreeMap::new();
        let mut held = BTreeMap::new();
        let mut candidates = Vec::with_capacity(placement.shards() as usize);
        for shard in 0..placement.shards() {
            let mut list = Vec::new();
            for k in 0..groups {
                let group = (preferred_group % groups + k) % groups;
                let mut owners: Vec<&NodeId> = placement.owners(shard, group).iter().collect();
                if !ranking.is_empty() {
                    owners.sort_by_key(|n| rank(n));
                }
                for node in owners {
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
        let scope: BTreeSet<ShardId> = match scope {
            Some(s) => s.into_iter().filter(|s| *s < placement.shards()).collect(),
            None => (0..placement.shards()).collect(),
        };
        let mut read = CoverRead {
            path,
            body,
            candidates,
            held,
            usable,
            scope,
            requests: Vec::new(),
            shards_of: Vec::new(),
            finished: Vec::new(),
            sent_at: Vec::new(),
            is_hedge: Vec::new(),
            hedged: Vec::new(),
            sent: 0,
            answered: BTreeMap::new(),
            answers: Vec::new(),
            unavailable: BTreeSet::new(),
            error: None,
            hedge,
            hedges_fired: 0,
            hedges_won: 0,
            accepts: Value::is_object,
        };
        if ranking.is_empty() {
            let cover = placement.cover(
                &|n| read.usable.get(n).copied().unwrap_or(false),
                preferred_group,
                rotation,
            );
            read.unavailable = cover
                .unavailable
                .iter()
                .copied()
                .filter(|s| read.scope.contains(s))
                .collect();
            for (node, c) in cover.assignments {
                let shards: Vec<ShardId> = c
                    .shards
                    .into_iter()
                    .filter(|s| read.scope.contains(s))
                    .collect();
                if !shards.is_empty() {
                    read.push_request(node, shards, false);
                }
            }
        } else {
            // The best-ranked healthy owner of every shard, in the preferred group first.
            read.replan(read.scope.iter().copied().collect(), None);
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

    /// The shards this read covers (all of them unless narrowed).
    pub fn scope(&self) -> Vec<ShardId> {
        self.scope.iter().copied().collect()
    }

    /// Hedges sent so far, and how many of them gave the accepted answer.
    pub fn hedges(&self) -> (u32, u32) {
        (self.hedges_fired, self.hedges_won)
    }

    /// A shadow copy of this read for `node` (the selector's exploration probe): the client's body with no
    /// shard restriction, identified by [`PROBE_ID`]. Its answer must never be fed back: it is only timed.
    /// `None` when the node holds no shard of this read.
    pub fn probe_request(&self, node: &NodeId) -> Option<NodeRequest> {
        self.held.get(node).filter(|h| !h.is_empty())?;
        Some(NodeRequest {
            id: PROBE_ID,
            node: node.clone(),
            method: Method::Post,
            path: self.path.clone(),
            body: Some(Value::Object(self.body.clone())),
        })
    }

    /// Whether request `id` is a hedge (a duplicate of a slow request).
    pub fn is_hedge(&self, id: RequestId) -> bool {
        self.is_hedge.get(id).copied().unwrap_or(false)
    }

    fn push_request(&mut self, node: NodeId, shards: Vec<ShardId>, hedge: bool) {
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
        self.sent_at.push(None);
        self.is_hedge.push(hedge);
        self.hedged.push(false);
        if hedge {
            self.hedges_fired += 1;
        }
    }

    /// The requests created since the last call: send them all. They are never hedged (their send time is
    /// unknown); see [`CoverRead::take_requests_at`].
    pub fn take_requests(&mut self) -> Vec<NodeRequest> {
        let new = self.requests[self.sent..].to_vec();
        self.sent = self.requests.len();
        new
    }

    /// The requests created since the last call, sent at `now`: send them all.
    pub fn take_requests_at(&mut self, now: Millis) -> Vec<NodeRequest> {
        for at in &mut self.sent_at[self.sent..] {
            *at = Some(now);
        }
        self.take_requests()
    }

    /// Feeds a node's HTTP answer to request `id`.
    pub fn on_response(&mut self, id: RequestId, status: u16, body: Value) {
        if self.error.is_some() || !self.open(id) {
            return;
        }
        let duplicate = self.shards_of[id]
            .iter()
            .any(|s| self.answered.contains_key(s));
        match status {
            200..=299 if (self.accepts)(&body) => {
                self.finished[id] = true;
                if duplicate {
                    self.repair();
                    return;
                }
                let node = self.requests[id].node.clone();
                let shards = self.shards_of[id].clone();
                for &s in &shards {
                    self.answered.insert(s, id);
                }
                if self.is_hedge[id] {
                    self.hedges_won += 1;
                }
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
                self.repair();
            }
            400..=499 => match MeiliError::from_node_body(status, &body) {
                Some(_) if duplicate => {
                    self.finished[id] = true;
                    self.repair();
                }
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

    /// Open, and none of its shards answered: its answer could still be accepted.
    fn acceptable(&self, id: RequestId) -> bool {
        self.open(id)
            && self.shards_of[id]
                .iter()
                .all(|s| !self.answered.contains_key(s))
    }

    fn fail(&mut self, id: RequestId) {
        self.finished[id] = true;
        let failed = self.requests[id].node.clone();
        self.usable.insert(failed, false);
        self.repair();
    }

    /// Re-plans every shard in scope that is neither answered, nor unavailable, nor covered by an open
    /// request whose answer could still be accepted.
    fn repair(&mut self) {
        let mut covered: BTreeSet<ShardId> = BTreeSet::new();
        for id in 0..self.requests.len() {
            if self.acceptable(id) {
                covered.extend(self.shards_of[id].iter().copied());
            }
        }
        let stranded: Vec<ShardId> = self
            .scope
            .iter()
            .copied()
            .filter(|s| {
                !self.answered.contains_key(s)
                    && !self.unavailable.contains(s)
                    && !covered.contains(s)
            })
            .collect();
        if !stranded.is_empty() {
            self.replan(stranded, None);
        }
    }

    /// Sends `shards` to their first usable candidate (other than `avoid`); a shard with none becomes
    /// unavailable, unless `avoid` is given (a hedge), in which case nothing is sent and `false` returned.
    fn replan(&mut self, shards: Vec<ShardId>, avoid: Option<&NodeId>) -> bool {
        let mut moved: BTreeMap<NodeId, Vec<ShardId>> = BTreeMap::new();
        let mut lost = Vec::new();
        for shard in shards {
            let next = self.candidates[shard as usize]
                .iter()
                .find(|n| Some(*n) != avoid && self.usable.get(*n).copied().unwrap_or(false));
            match next {
                Some(node) => moved.entry(node.clone()).or_default().push(shard),
                None => lost.push(shard),
            }
        }
        if avoid.is_some() && !lost.is_empty() {
            return false;
        }
        self.unavailable.extend(lost);
        // Requests go out in candidate order of their first shard, so the best node's request comes first.
        let mut order: Vec<(NodeId, Vec<ShardId>)> = moved.into_iter().collect();
        order.sort_by_key(|(_, shards)| shards.first().copied());
        for (node, shards) in order {
            self.push_request(node, shards, avoid.is_some());
        }
        true
    }

    /// When the next hedge is due (a time to wake up at), if any can be sent.
    pub fn poll_timeout(&self) -> Option<Millis> {
        let policy = self.hedge.as_ref()?;
        if self.error.is_some() || self.hedges_fired >= policy.max_hedges || self.done() {
            return None;
        }
        (0..self.requests.len())
            .filter(|&id| !self.is_hedge[id] && !self.hedged[id] && self.acceptable(id))
            .filter_map(|id| {
                let at = self.sent_at[id]?;
                Some(at.saturating_add(policy.delay(&self.requests[id].node)))
            })
            .min()
    }

    /// Sends hedges for the requests whose delay passed at `now` (within the read's hedge budget): each
    /// goes to the best other usable owners of the slow request's shards; the first answer wins.
    pub fn on_timeout(&mut self, now: Millis) {
        let Some(policy) = self.hedge.clone() else {
            return;
        };
        if self.error.is_some() || self.done() {
            return;
        }
        for id in 0..self.requests.len() {
            if self.hedges_fired >= policy.max_hedges {
                break;
            }
            if self.is_hedge[id] || self.hedged[id] || !self.acceptable(id) {
                continue;
            }
            let node = self.requests[id].node.clone();
            let due =
                self.sent_at[id].is_some_and(|at| at.saturating_add(policy.delay(&node)) <= now);
            if !due {
                continue;
            }
            self.hedged[id] = true;
            let shards = self.shards_of[id].clone();
            // One other node holding every shard, when there is one; else the best owner per shard.
            let whole = self.candidates[shards[0] as usize]
                .iter()
                .find(|n| {
                    **n != node
                        && self.usable.get(*n).copied().unwrap_or(false)
                        && self
                            .held
                            .get(*n)
                            .is_some_and(|h| shards.iter().all(|s| h.binary_search(s).is_ok()))
                })
                .cloned();
            match whole {
                Some(other) => self.push_request(other, shards, true),
                None => {
                    self.replan(shards, Some(&node));
                }
            }
        }
    }

    fn done(&self) -> bool {
        self.scope
            .iter()
            .all(|s| self.answered.contains_key(s) || self.unavailable.contains(s))
    }

    /// How the read ended, once every shard in scope is answered or unavailable (or a client error ended
    /// it). Requests still in flight then are late duplicates: the shell may drop them.
    pub fn outcome(&self) -> Option<CoverOutcome> {
        if let Some(e) = &self.error {
            return Some(CoverOutcome::ClientError(e.clone()));
        }
        if !self.done() {
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

    fn all_shards(outcome: Option<CoverOutcome>) -> Vec<ShardId> {
        let Some(CoverOutcome::Answers { answers, .. }) = outcome else {
            panic!("done")
        };
        let mut shards: Vec<ShardId> = answers.iter().flat_map(|a| a.shards.clone()).collect();
        shards.sort_unstable();
        shards
    }

    fn hedged_options(delay: Millis, max: u32) -> CoverOptions {
        CoverOptions {
            hedge: Some(HedgePolicy {
                max_hedges: max,
                delays: BTreeMap::new(),
                default_delay: delay,
            }),
            ..CoverOptions::default()
        }
    }

    #[test]
    fn a_slow_request_is_hedged_and_the_first_answer_wins_once() {
        // RF=2 over 2 nodes: both hold everything.
        let p = placement(2, 2, 1, 4);
        for original_first in [false, true] {
            let mut r =
                CoverRead::with_options("/x".into(), body(), &p, &|_| true, hedged_options(10, 2));
            let first = r.take_requests_at(100);
            assert_eq!(first.len(), 2, "rotation spreads the shards");
            assert_eq!(r.poll_timeout(), Some(110));
            r.on_timeout(109);
            assert!(r.take_requests_at(109).is_empty(), "not due yet");
            r.on_timeout(110);
            let hedges = r.take_requests_at(110);
            assert_eq!(hedges.len(), first.len());
            assert!(hedges.iter().all(|h| r.is_hedge(h.id)));
            assert_eq!(r.hedges().0, first.len() as u32);
            assert_eq!(r.poll_timeout(), None, "budget spent");
            let (win, lose) = if original_first {
                (&first, &hedges)
            } else {
                (&hedges, &first)
            };
            for q in win {
                assert_ne!(
                    first.iter().find(|f| f.id == q.id).map(|f| &f.node),
                    hedges.iter().find(|h| h.id == q.id).map(|h| &h.node)
                );
                r.on_response(q.id, 200, json!({"n": q.node.as_str()}));
            }
            assert!(r.outcome().is_some(), "done without waiting for the losers");
            for q in lose {
                r.on_response(q.id, 200, json!({"late": true}));
            }
            assert_eq!(all_shards(r.outcome()), vec![0, 1, 2, 3], "each shard once");
            let Some(CoverOutcome::Answers { answers, .. }) = r.outcome() else {
                panic!()
            };
            assert!(answers.iter().all(|a| a.body.get("late").is_none()));
            assert_eq!(r.hedges().1, if original_first { 0 } else { 2 });
        }
    }

    #[test]
    fn overlapping_answers_are_never_merged_twice() {
        // 3 nodes RF=2: no other node holds all of a node's shards, so a hedge splits.
        let p = placement(3, 2, 1, 12);
        let mut r =
            CoverRead::with_options("/x".into(), body(), &p, &|_| true, hedged_options(5, 8));
        let first = r.take_requests_at(0);
        r.on_timeout(5);
        let hedges = r.take_requests_at(5);
        assert!(!hedges.is_empty());
        // Answer hedges first, then originals, then fail whatever is left: every shard exactly once.
        for q in hedges.iter().chain(first.iter()) {
            r.on_response(q.id, 200, json!({}));
        }
        loop {
            let more = r.take_requests_at(6);
            if more.is_empty() {
                break;
            }
            for q in more {
                r.on_response(q.id, 200, json!({}));
            }
        }
        assert_eq!(all_shards(r.outcome()), (0..12).collect::<Vec<_>>());
    }

    #[test]
    fn a_failed_hedge_or_original_leaves_the_other_in_charge() {
        let p = placement(2, 2, 1, 4);
        let mut r =
            CoverRead::with_options("/x".into(), body(), &p, &|_| true, hedged_options(1, 4));
        let first = r.take_requests_at(0);
        r.on_timeout(1);
        let hedges = r.take_requests_at(1);
        r.on_failure(hedges[0].id);
        assert!(
            r.take_requests().is_empty(),
            "the original still covers them"
        );
        for q in &first {
            r.on_response(q.id, 200, json!({}));
        }
        assert_eq!(all_shards(r.outcome()), vec![0, 1, 2, 3]);
        // without a send time nothing is hedged; without a policy neither
        let mut r =
            CoverRead::with_options("/x".into(), body(), &p, &|_| true, hedged_options(1, 4));
        r.take_requests();
        assert_eq!(r.poll_timeout(), None);
        let mut r = CoverRead::new("/x".into(), body(), &p, &|_| true, 0, 0);
        r.take_requests_at(0);
        assert_eq!(r.poll_timeout(), None);
        r.on_timeout(u64::MAX);
        assert!(r.take_requests().is_empty());
        // a single replica: no hedge possible
        let p = placement(1, 1, 1, 4);
        let mut r =
            CoverRead::with_options("/x".into(), body(), &p, &|_| true, hedged_options(1, 4));
        r.take_requests_at(0);
        r.on_timeout(10);
        assert!(r.take_requests().is_empty());
        assert_eq!(r.hedges(), (0, 0));
    }

    #[test]
    fn ranking_and_scope_shape_the_cover() {
        let p = placement(3, 3, 1, 6);
        let best = NodeId::new("n2");
        let mut r = CoverRead::with_options(
            "/x".into(),
            body(),
            &p,
            &|_| true,
            CoverOptions {
                ranking: vec![best.clone()],
                ..CoverOptions::default()
            },
        );
        let q = r.take_requests();
        assert_eq!(q.len(), 1, "the best node holds everything");
        assert_eq!(q[0].node, best);
        // unhealthy best node: the next one
        let mut r = CoverRead::with_options(
            "/x".into(),
            body(),
            &p,
            &|n| n != &best,
            CoverOptions {
                ranking: vec![best.clone(), NodeId::new("n0")],
                ..CoverOptions::default()
            },
        );
        assert_eq!(r.take_requests()[0].node.as_str(), "n0");
        let probe = r.probe_request(&best).unwrap();
        assert_eq!(probe.id, PROBE_ID);
        assert_eq!(
            probe.body,
            Some(Value::Object(body())),
            "no shard restriction"
        );
        r.on_response(PROBE_ID, 200, json!({}));
        assert!(r.outcome().is_none(), "a probe answer is not an answer");
        assert!(r.probe_request(&NodeId::new("stranger")).is_none());
        // scope: only shards 1 and 4 (99 is ignored)
        let mut r = CoverRead::with_options(
            "/x".into(),
            body(),
            &p,
            &|_| true,
            CoverOptions {
                scope: Some(vec![4, 1, 99]),
                ..CoverOptions::default()
            },
        );
        assert_eq!(r.scope(), vec![1, 4]);
        let q = r.take_requests();
        for x in &q {
            r.on_response(x.id, 200, json!({}));
        }
        assert_eq!(all_shards(r.outcome()), vec![1, 4]);
        let Some(CoverOutcome::Answers { unavailable, .. }) = r.outcome() else {
            panic!()
        };
        assert!(
            unavailable.is_empty(),
            "out-of-scope shards are not unavailable"
        );
    }
}
