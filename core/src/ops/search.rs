//! A search scattered over a covering set and merged exactly.
//!
//! States: `Scattering` (requests out, answers arriving) → `Done` (a reply exists). While scattering, a node
//! that fails (no answer, a 5xx, or a body that is not a search result) has its shards re-planned onto
//! another healthy owner — another replica of its group first, then the other groups — and a new request goes
//! out restricted to exactly those shards. A shard with no owner left is *unavailable*.
//!
//! Events: [`ScatterSearch::on_response`], [`ScatterSearch::on_failure`]. Actions: [`ScatterSearch::take_requests`]
//! returns the requests created since the last call (the first call returns the initial scatter).
//!
//! Invariants:
//! - every shard is answered by exactly one node, or is unavailable: a retry only carries shards whose node
//!   failed, and a failed node's answer is never used, so no hit, facet count or total is counted twice;
//! - a client error from a node (4xx with a Meilisearch error, e.g. an invalid filter) ends the search with
//!   that error, as one node holding everything would answer;
//! - with unavailable shards, `scatter.unavailable_shard_policy` decides: `partial` merges what was answered
//!   and sets `X-Miroir-Degraded: shards=…`; `error` answers 503 `miroir_shard_unavailable`.

use super::Method;
use super::{NodeRequest, Reply, RequestId, DEGRADED_HEADER};
use crate::config::UnavailableShardPolicy;
use crate::error::{join_u32, MeiliError};
use crate::routing::Placement;
use crate::search::{
    merge_search, plan_search, NodeAnswer, SearchContext, SearchPlan, ShardRestriction,
};
use crate::topology::{GroupId, NodeId, ShardId};
use serde_json::{Map, Value};
use std::collections::{BTreeMap, BTreeSet};

/// One search in flight. See the module documentation.
#[derive(Debug, Clone)]
pub struct ScatterSearch {
    path: String,
    plan: SearchPlan,
    policy: UnavailableShardPolicy,
    /// For each shard, its owners in preference order (preferred group first, then the others).
    candidates: Vec<Vec<NodeId>>,
    held: BTreeMap<NodeId, Vec<ShardId>>,
    usable: BTreeMap<NodeId, bool>,
    requests: Vec<NodeRequest>,
    shards_of: Vec<Vec<ShardId>>,
    finished: Vec<bool>,
    sent: usize,
    answers: Vec<NodeAnswer>,
    unavailable: BTreeSet<ShardId>,
    reply: Option<Reply>,
}

impl ScatterSearch {
    /// Plans the search `client` (the POST body) on index `index_uid`. `healthy` is asked once per node;
    /// `preferred_group` and `rotation` spread queries over groups and replicas.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        index_uid: &str,
        client: &Map<String, Value>,
        ctx: &SearchContext,
        placement: &Placement,
        healthy: &dyn Fn(&NodeId) -> bool,
        preferred_group: GroupId,
        rotation: u64,
        policy: UnavailableShardPolicy,
    ) -> Result<Self, MeiliError> {
        let plan = plan_search(client, ctx)?;
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
        let mut search = ScatterSearch {
            path: format!("/indexes/{index_uid}/search"),
            plan,
            policy,
            candidates,
            held,
            usable,
            requests: Vec::new(),
            shards_of: Vec::new(),
            finished: Vec::new(),
            sent: 0,
            answers: Vec::new(),
            unavailable: cover.unavailable.iter().copied().collect(),
            reply: None,
        };
        for (node, c) in cover.assignments {
            search.push_request(node, c.shards);
        }
        search.settle();
        Ok(search)
    }

    fn push_request(&mut self, node: NodeId, shards: Vec<ShardId>) {
        let held = self.held.get(&node).cloned().unwrap_or_default();
        let restriction = ShardRestriction {
            assigned: shards.clone(),
            held,
        };
        let body = self.plan.node_request(Some(&restriction));
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
        if self.reply.is_some() || !self.open(id) {
            return;
        }
        match status {
            200..=299 if body.get("hits").is_some_and(Value::is_array) => {
                self.finished[id] = true;
                self.answers.push(NodeAnswer { order: id, body });
            }
            400..=499 => match MeiliError::from_node_body(status, &body) {
                Some(e) => self.reply = Some(Reply::error(&e)),
                None => self.fail(id),
            },
            _ => self.fail(id),
        }
        self.settle();
    }

    /// Request `id` could not be delivered, or timed out.
    pub fn on_failure(&mut self, id: RequestId) {
        if self.reply.is_some() || !self.open(id) {
            return;
        }
        self.fail(id);
        self.settle();
    }

    fn open(&self, id: RequestId) -> bool {
        self.finished.get(id).is_some_and(|f| !f)
    }

    /// Marks request `id` failed and re-plans its shards on other owners.
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

    /// Produces the reply once nothing is outstanding.
    fn settle(&mut self) {
        if self.reply.is_some() || self.finished.iter().any(|f| !f) {
            return;
        }
        let unavailable: Vec<ShardId> = self.unavailable.iter().copied().collect();
        if !unavailable.is_empty() && self.policy == UnavailableShardPolicy::Error {
            self.reply = Some(Reply::error(&MeiliError::shard_unavailable(&unavailable)));
            return;
        }
        let answers = std::mem::take(&mut self.answers);
        self.reply = Some(match merge_search(&self.plan, answers) {
            Ok(body) => {
                let mut r = Reply::json(200, body);
                if !unavailable.is_empty() {
                    r.headers.push((
                        DEGRADED_HEADER.to_string(),
                        format!("shards={}", join_u32(&unavailable).replace(", ", ",")),
                    ));
                }
                r
            }
            Err(e) => Reply::error(&e),
        });
    }

    /// The client's reply, once every shard was answered or given up.
    pub fn reply(&self) -> Option<&Reply> {
        self.reply.as_ref()
    }

    /// The shards no healthy owner could serve.
    pub fn unavailable(&self) -> Vec<ShardId> {
        self.unavailable.iter().copied().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topology::{Node, Topology};
    use serde_json::json;

    fn placement(nodes: usize, rf: u32, groups: u32, shards: u32) -> Placement {
        let topo = Topology {
            epoch: 1,
            shards,
            replication_factor: rf,
            replica_groups: groups,
            nodes: (0..nodes)
                .map(|i| Node::active(format!("n{i}"), format!("http://n{i}"), (i as u32) % groups))
                .collect(),
        };
        Placement::new(&topo).unwrap()
    }

    fn client() -> Map<String, Value> {
        json!({"q": "star", "limit": 2})
            .as_object()
            .unwrap()
            .clone()
    }

    /// The shards a request's filter restricts it to, read back from the assignment we made.
    fn answer_for(search: &ScatterSearch, id: RequestId) -> Value {
        let hits: Vec<Value> = search.shards_of[id]
            .iter()
            .map(|s| json!({"id": format!("d{s}"), "_miroir_shard": s, "_rankingScoreDetails": {"words": {"order": 0, "matchingWords": 1, "maxMatchingWords": 1, "score": 1.0 - *s as f64 / 100.0}}}))
            .collect();
        json!({"hits": hits, "query": "star", "processingTimeMs": 1, "limit": 2, "offset": 0, "estimatedTotalHits": search.shards_of[id].len()})
    }

    fn run(search: &mut ScatterSearch, fail: &dyn Fn(&NodeId) -> bool) {
        loop {
            let reqs = search.take_requests();
            if reqs.is_empty() {
                break;
            }
            for r in reqs {
                if fail(&r.node) {
                    search.on_failure(r.id);
                } else {
                    let body = answer_for(search, r.id);
                    search.on_response(r.id, 200, body);
                }
            }
        }
    }

    #[test]
    fn every_shard_answered_once_and_merged() {
        let p = placement(3, 2, 1, 6);
        let mut s = ScatterSearch::new(
            "movies",
            &client(),
            &SearchContext::default(),
            &p,
            &|_| true,
            0,
            0,
            UnavailableShardPolicy::Partial,
        )
        .unwrap();
        let first = s.take_requests();
        let mut covered: Vec<ShardId> = first
            .iter()
            .flat_map(|r| s.shards_of[r.id].clone())
            .collect();
        covered.sort();
        assert_eq!(covered, (0..6).collect::<Vec<_>>());
        for r in &first {
            assert_eq!(r.path, "/indexes/movies/search");
            let body = r.body.as_ref().unwrap();
            assert_eq!(body["showRankingScoreDetails"], true);
        }
        for r in first {
            let b = answer_for(&s, r.id);
            s.on_response(r.id, 200, b);
        }
        let reply = s.reply().unwrap();
        assert_eq!(reply.status, 200);
        assert_eq!(reply.body["estimatedTotalHits"], 6);
        assert_eq!(reply.body["hits"].as_array().unwrap().len(), 2);
        assert_eq!(reply.body["hits"][0]["id"], "d0");
        assert!(reply.body["hits"][0].get("_miroir_shard").is_none());
    }

    #[test]
    fn a_failed_node_is_replaced_by_another_replica() {
        let p = placement(3, 2, 1, 6);
        let mut s = ScatterSearch::new(
            "movies",
            &client(),
            &SearchContext::default(),
            &p,
            &|_| true,
            0,
            0,
            UnavailableShardPolicy::Error,
        )
        .unwrap();
        run(&mut s, &|n| n.as_str() == "n0");
        let reply = s.reply().unwrap();
        assert_eq!(
            reply.status, 200,
            "RF=2: every shard of n0 has another owner"
        );
        assert_eq!(
            reply.body["estimatedTotalHits"], 6,
            "no shard lost, none counted twice"
        );
        assert!(reply.headers.is_empty());
        assert!(s
            .requests
            .iter()
            .filter(|r| r.node.as_str() == "n0")
            .all(|r| s.answers.iter().all(|a| a.order != r.id)));
    }

    #[test]
    fn unavailable_shards_follow_the_policy() {
        let p = placement(3, 1, 1, 6);
        let lost: Vec<ShardId> = p.shards_held_by(&NodeId::from("n1"));
        let mut partial = ScatterSearch::new(
            "movies",
            &client(),
            &SearchContext::default(),
            &p,
            &|_| true,
            0,
            0,
            UnavailableShardPolicy::Partial,
        )
        .unwrap();
        run(&mut partial, &|n| n.as_str() == "n1");
        let r = partial.reply().unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.body["estimatedTotalHits"], 6 - lost.len());
        let expected = format!(
            "shards={}",
            lost.iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>()
                .join(",")
        );
        assert_eq!(r.headers, vec![(DEGRADED_HEADER.to_string(), expected)]);
        assert_eq!(partial.unavailable(), lost);

        let mut strict = ScatterSearch::new(
            "movies",
            &client(),
            &SearchContext::default(),
            &p,
            &|n| n.as_str() != "n1",
            0,
            0,
            UnavailableShardPolicy::Error,
        )
        .unwrap();
        run(&mut strict, &|_| false);
        let r = strict.reply().unwrap();
        assert_eq!(r.status, 503);
        assert_eq!(r.body["code"], "miroir_shard_unavailable");
    }

    #[test]
    fn node_client_errors_are_relayed_and_garbage_is_a_failure() {
        let p = placement(2, 2, 1, 4);
        let mut s = ScatterSearch::new(
            "movies",
            &client(),
            &SearchContext::default(),
            &p,
            &|_| true,
            0,
            0,
            UnavailableShardPolicy::Partial,
        )
        .unwrap();
        let reqs = s.take_requests();
        let err = json!({"message": "Attribute `x` is not filterable.", "code": "invalid_search_filter", "type": "invalid_request", "link": "https://docs.meilisearch.com/errors#invalid_search_filter"});
        s.on_response(reqs[0].id, 400, err.clone());
        let r = s.reply().unwrap();
        assert_eq!((r.status, r.body.clone()), (400, err));

        let mut g = ScatterSearch::new(
            "movies",
            &client(),
            &SearchContext::default(),
            &p,
            &|_| true,
            0,
            0,
            UnavailableShardPolicy::Partial,
        )
        .unwrap();
        let reqs = g.take_requests();
        g.on_response(reqs[0].id, 200, json!("not a search result"));
        assert!(
            g.reply().is_none(),
            "the garbage answer's shards are retried elsewhere"
        );
        assert!(!g.take_requests().is_empty());
    }

    #[test]
    fn invalid_client_search_is_refused_before_scattering() {
        let p = placement(2, 1, 1, 4);
        let bad = json!({"limit": -1}).as_object().unwrap().clone();
        let e = ScatterSearch::new(
            "movies",
            &bad,
            &SearchContext::default(),
            &p,
            &|_| true,
            0,
            0,
            UnavailableShardPolicy::Partial,
        )
        .unwrap_err();
        assert_eq!(e.code, "invalid_search_limit");
    }
}
