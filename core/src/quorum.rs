//! The write-quorum tracker: a sans-IO state machine that decides whether one client write is acknowledged.
//!
//! A write touches some shards. Each shard is owned, in every replica group, by RF nodes (its *owners* in
//! that group); the placement arrives as plain data ([`ShardOwners`]: shard → group → owners), computed by
//! routing. The proxy sends each node one batch covering every shard the node owns, then feeds the node's
//! answer to the tracker with [`QuorumTracker::on_node_outcome`] and the clock with
//! [`QuorumTracker::on_timeout`]. It never reads a clock itself: [`QuorumTracker::poll_timeout`] says
//! when it wants to be woken, and [`QuorumTracker::set_deadline`] restarts the deadline when the proxy
//! sends the write later than it built it.
//!
//! ## States
//!
//! Per node: `Pending` → `Acked { task_uid }` | `Failed(error)` | `TimedOut`. A node's first terminal
//! outcome is final; later events for it (and events for nodes that own nothing in this write) are
//! ignored. One node outcome counts for every (shard, group) slot the node owns.
//!
//! Per write: `Undecided` → `Decided(Acknowledged | Rejected)`. The decision is taken by re-evaluating
//! after every event and is **monotone**: once taken it never changes, whatever arrives later (later
//! outcomes are still recorded so the proxy can register the node tasks for repair).
//!
//! ## Decision rule
//!
//! With `q = quorum.required(owners in that group)`, for every shard `s` of the write and group `g`:
//! `acks(s,g)` = owners of `s` in `g` that acked, `pending(s,g)` = owners still pending.
//! - **Acknowledged** as soon as *every* shard has a group with `acks(s,g) >= q`. Nothing waits for
//!   more acks than needed: the nodes still pending are listed in [`Degraded::pending_nodes`] and left
//!   to task aggregation and repair.
//! - **Rejected** as soon as *some* shard has `acks(s,g) + pending(s,g) < q` in every group (it can no
//!   longer reach quorum anywhere). The error is `503 miroir_no_quorum` naming those shards, **except**
//!   when no node acked and every node that answered (timeouts did not answer) failed with a 4xx of the
//!   same error code: that is the client's fault, the same request would fail on a single Meilisearch
//!   too, so the first such node error (in node-id order) is relayed unchanged (for example
//!   `400 invalid_document_id`, whose message names the first offending id the node saw).
//!
//! Invariants (proptested in `core/tests/quorum_props.rs`):
//! - never `Acknowledged` unless every shard has `>= q` acks among its owners in some group;
//! - `Rejected` exactly when some shard cannot reach quorum in any group any more;
//! - the decision never changes once taken;
//! - once every node has answered, the kind of decision does not depend on the order of the events
//!   (acks only accumulate, so "some shard impossible" and "every shard satisfied" exclude each other).
//!
//! A shard with no group, or a group with no owner for a shard, can never reach quorum there
//! (`required` is at least 1). A write that touches no shard is acknowledged at once.
//!
//! ## Degraded acknowledgements
//!
//! A group is *degraded* when, at decision time, it can no longer reach quorum for some shard of the
//! write (known failures or timeouts make it impossible). The acknowledged write then carries
//! `X-Miroir-Degraded: groups=<g,...>;shards=<s,...>` (ascending ids, comma separated, no spaces;
//! `shards` lists the shards that missed quorum in at least one group), see [`Degraded::header_value`].
//!
//! ## Availability matrix
//!
//! How many owner losses *per group* a write survives for a shard, per replication factor and quorum
//! (the write also survives losing whole groups, as long as one group per shard keeps its quorum):
//!
//! | RF | `majority` (q)     | `one` (q = 1) | `all` (q = RF) |
//! |----|--------------------|---------------|----------------|
//! | 1  | q=1: 0 losses      | 0 losses      | 0 losses       |
//! | 2  | q=2: 0 losses      | 1 loss        | 0 losses       |
//! | 3  | q=2: 1 loss        | 2 losses      | 0 losses       |
//!
//! With RF=2 and `majority`, one node down blocks writes for its shards in that group (majority of 2 is
//! 2); with a single group, those writes are rejected with `503 miroir_no_quorum`. `one` keeps them
//! available and relies on repair to bring the lagging replica up to date; `all` trades availability for
//! every replica being written before the client hears back.

use crate::error::MeiliError;
use crate::topology::{GroupId, NodeId, ShardId};
use crate::Millis;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

/// For each shard of a write, its owners per replica group: the outer index is the group id, the inner
/// vector that group's owners of the shard.
pub type ShardOwners = BTreeMap<ShardId, Vec<Vec<NodeId>>>;

/// How many owners of a shard, within one replica group, must acknowledge a write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WriteQuorum {
    /// `floor(RF/2) + 1` owners.
    #[default]
    Majority,
    /// A single owner.
    One,
    /// Every owner.
    All,
}

impl WriteQuorum {
    /// The number of acks needed among `rf` owners. Never 0: an empty owner set cannot reach quorum.
    pub fn required(self, rf: usize) -> usize {
        match self {
            WriteQuorum::Majority => rf / 2 + 1,
            WriteQuorum::One => 1,
            WriteQuorum::All => rf.max(1),
        }
    }
}

/// What one node answered to its batch of a write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeOutcome {
    /// A 2xx answer carrying an integer `taskUid`: the node enqueued the write.
    Ack {
        /// The node's own task uid for the batch.
        task_uid: u64,
    },
    /// The node refused the batch, or answered something unusable.
    Failed(MeiliError),
    /// No answer before the deadline (or the connection failed).
    TimedOut,
}

impl NodeOutcome {
    /// Classifies a node's HTTP answer: a 2xx with an integer `taskUid` is an [`NodeOutcome::Ack`]; a 2xx
    /// without one is `miroir_bad_node_response`; a 4xx/5xx relays the node's Meilisearch error (with its
    /// status) when the body is one, else `miroir_bad_node_response`; any other status is
    /// `miroir_bad_node_response`. The node is named `unknown` in messages; prefer
    /// [`NodeOutcome::from_node_response`] when the node id is at hand.
    pub fn from_response(status: u16, body: &Value) -> Self {
        Self::from_node_response(&NodeId::new("unknown"), status, body)
    }

    /// [`NodeOutcome::from_response`], naming `node` in `miroir_bad_node_response` messages.
    pub fn from_node_response(node: &NodeId, status: u16, body: &Value) -> Self {
        match status {
            200..=299 => match body.get("taskUid").and_then(Value::as_u64) {
                Some(task_uid) => NodeOutcome::Ack { task_uid },
                None => NodeOutcome::Failed(MeiliError::bad_node_response(
                    node.as_str(),
                    &format!("HTTP {status} without an integer `taskUid`"),
                )),
            },
            400..=599 => match MeiliError::from_node_body(status, body) {
                Some(error) => NodeOutcome::Failed(error),
                None => NodeOutcome::Failed(MeiliError::bad_node_response(
                    node.as_str(),
                    &format!("HTTP {status} without a Meilisearch error body"),
                )),
            },
            _ => NodeOutcome::Failed(MeiliError::bad_node_response(
                node.as_str(),
                &format!("unexpected HTTP status {status}"),
            )),
        }
    }
}

/// Where one node stands in the write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeState {
    /// No outcome yet.
    Pending,
    /// The node enqueued its batch as this task.
    Acked(u64),
    /// The node refused its batch.
    Failed(MeiliError),
    /// The node did not answer in time.
    TimedOut,
}

/// The groups and shards that missed quorum in an acknowledged write, and the nodes still pending.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Degraded {
    /// Groups that can no longer reach quorum for at least one shard of the write (ascending).
    pub groups: Vec<GroupId>,
    /// Shards that missed quorum in at least one group (ascending).
    pub shards: Vec<ShardId>,
    /// Nodes that had not answered when the write was acknowledged (ascending): left for repair.
    pub pending_nodes: Vec<NodeId>,
}

impl Degraded {
    /// True when no group missed quorum.
    pub fn is_empty(&self) -> bool {
        self.groups.is_empty() && self.shards.is_empty()
    }

    /// The `X-Miroir-Degraded` header value, `groups=1;shards=3,7`, or `None` when no group missed
    /// quorum (pending nodes alone do not degrade a write).
    pub fn header_value(&self) -> Option<String> {
        if self.is_empty() {
            return None;
        }
        let join = |v: &[u32]| {
            v.iter()
                .map(|x| x.to_string())
                .collect::<Vec<_>>()
                .join(",")
        };
        Some(format!(
            "groups={};shards={}",
            join(&self.groups),
            join(&self.shards)
        ))
    }
}

/// The tracker's verdict on a write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteDecision {
    /// Every shard reached quorum in some group: answer the client 202.
    Acknowledged {
        /// What missed quorum (for the `X-Miroir-Degraded` header) and what is still pending.
        degraded: Degraded,
    },
    /// Some shard can no longer reach quorum in any group: answer the client with this error.
    Rejected(MeiliError),
}

/// Tracks one write's node outcomes and decides acknowledgement. See the module documentation.
#[derive(Debug, Clone)]
pub struct QuorumTracker {
    placement: ShardOwners,
    quorum: WriteQuorum,
    deadline: Millis,
    nodes: BTreeMap<NodeId, NodeState>,
    decision: Option<WriteDecision>,
}

/// Per-(shard, group) tally.
#[derive(Debug, Clone, Copy, Default)]
struct Tally {
    acks: usize,
    pending: usize,
    required: usize,
}

impl Tally {
    fn reached(&self) -> bool {
        self.acks >= self.required
    }
    fn possible(&self) -> bool {
        self.acks + self.pending >= self.required
    }
}

impl QuorumTracker {
    /// Starts tracking a write placed as `placement`, acknowledged under `quorum`, whose pending nodes
    /// time out at `deadline`. A placement that can never reach quorum is rejected at once.
    pub fn new(placement: ShardOwners, quorum: WriteQuorum, deadline: Millis) -> Self {
        let nodes = placement
            .values()
            .flatten()
            .flatten()
            .map(|n| (n.clone(), NodeState::Pending))
            .collect();
        let mut tracker = QuorumTracker {
            placement,
            quorum,
            deadline,
            nodes,
            decision: None,
        };
        tracker.evaluate();
        tracker
    }

    /// Records `node`'s outcome. Ignored for nodes outside the placement and for nodes that already have
    /// a terminal outcome.
    pub fn on_node_outcome(&mut self, node: &NodeId, outcome: NodeOutcome) {
        let Some(state) = self.nodes.get_mut(node) else {
            return;
        };
        if *state != NodeState::Pending {
            return;
        }
        *state = match outcome {
            NodeOutcome::Ack { task_uid } => NodeState::Acked(task_uid),
            NodeOutcome::Failed(e) => NodeState::Failed(e),
            NodeOutcome::TimedOut => NodeState::TimedOut,
        };
        self.evaluate();
    }

    /// Moves the deadline to `deadline` while nothing is decided: the caller sends the write later than
    /// it built it (durable bookkeeping first), and the nodes get their whole timeout from the send.
    pub fn set_deadline(&mut self, deadline: Millis) {
        if self.decision.is_none() {
            self.deadline = deadline;
        }
    }

    /// Turns every still-pending node into `TimedOut` once `now >= deadline`.
    pub fn on_timeout(&mut self, now: Millis) {
        if now < self.deadline {
            return;
        }
        let mut changed = false;
        for state in self.nodes.values_mut() {
            if *state == NodeState::Pending {
                *state = NodeState::TimedOut;
                changed = true;
            }
        }
        if changed {
            self.evaluate();
        }
    }

    /// When the tracker wants [`QuorumTracker::on_timeout`] called: the deadline, while undecided with
    /// nodes pending; `None` otherwise.
    pub fn poll_timeout(&self) -> Option<Millis> {
        if self.decision.is_none() && self.nodes.values().any(|s| *s == NodeState::Pending) {
            Some(self.deadline)
        } else {
            None
        }
    }

    /// The decision, once taken. It never changes afterwards.
    pub fn decision(&self) -> Option<WriteDecision> {
        self.decision.clone()
    }

    /// Every node of the placement with its current state, in node-id order (including outcomes that
    /// arrived after the decision).
    pub fn node_states(&self) -> &BTreeMap<NodeId, NodeState> {
        &self.nodes
    }

    /// The nodes that acked, with their task uids, in node-id order.
    pub fn acked(&self) -> Vec<(NodeId, u64)> {
        self.nodes
            .iter()
            .filter_map(|(n, s)| match s {
                NodeState::Acked(uid) => Some((n.clone(), *uid)),
                _ => None,
            })
            .collect()
    }

    /// The placement this tracker judges.
    pub fn placement(&self) -> &ShardOwners {
        &self.placement
    }

    /// The quorum this tracker applies.
    pub fn quorum(&self) -> WriteQuorum {
        self.quorum
    }

    fn tally(&self, owners: &[NodeId]) -> Tally {
        let mut t = Tally {
            required: self.quorum.required(owners.len()),
            ..Tally::default()
        };
        for n in owners {
            match self.nodes.get(n) {
                Some(NodeState::Acked(_)) => t.acks += 1,
                Some(NodeState::Pending) => t.pending += 1,
                _ => {}
            }
        }
        t
    }

    fn evaluate(&mut self) {
        if self.decision.is_some() {
            return;
        }
        let mut impossible_shards = Vec::new();
        let mut all_reached = true;
        let mut degraded_groups = BTreeSet::new();
        let mut degraded_shards = BTreeSet::new();
        for (&shard, groups) in &self.placement {
            let tallies: Vec<Tally> = groups.iter().map(|o| self.tally(o)).collect();
            if !tallies.iter().any(Tally::reached) {
                all_reached = false;
            }
            if !tallies.iter().any(Tally::possible) {
                impossible_shards.push(shard);
            }
            for (g, t) in tallies.iter().enumerate() {
                if !t.possible() {
                    degraded_groups.insert(g as GroupId);
                    degraded_shards.insert(shard);
                }
            }
        }
        if !impossible_shards.is_empty() {
            self.decision = Some(WriteDecision::Rejected(
                self.client_error()
                    .unwrap_or_else(|| MeiliError::no_quorum(&impossible_shards)),
            ));
        } else if all_reached {
            let pending_nodes = self
                .nodes
                .iter()
                .filter(|(_, s)| **s == NodeState::Pending)
                .map(|(n, _)| n.clone())
                .collect();
            self.decision = Some(WriteDecision::Acknowledged {
                degraded: Degraded {
                    groups: degraded_groups.into_iter().collect(),
                    shards: degraded_shards.into_iter().collect(),
                    pending_nodes,
                },
            });
        }
    }

    /// The relayed client error: no ack, at least one failure, and every failure a 4xx with one code.
    fn client_error(&self) -> Option<MeiliError> {
        let mut first: Option<&MeiliError> = None;
        for state in self.nodes.values() {
            match state {
                NodeState::Acked(_) => return None,
                NodeState::Failed(e) => {
                    if !(400..500).contains(&e.status) {
                        return None;
                    }
                    match first {
                        None => first = Some(e),
                        Some(f) if f.code != e.code => return None,
                        Some(_) => {}
                    }
                }
                NodeState::Pending | NodeState::TimedOut => {}
            }
        }
        first.cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn n(s: &str) -> NodeId {
        NodeId::new(s)
    }

    fn owners(groups: &[&[&str]]) -> Vec<Vec<NodeId>> {
        groups
            .iter()
            .map(|g| g.iter().map(|s| n(s)).collect())
            .collect()
    }

    fn invalid_id() -> MeiliError {
        MeiliError::invalid(
            400,
            "invalid_document_id",
            "Document identifier `a b` is invalid.",
        )
    }

    #[test]
    fn required_counts() {
        assert_eq!(WriteQuorum::Majority.required(1), 1);
        assert_eq!(WriteQuorum::Majority.required(2), 2);
        assert_eq!(WriteQuorum::Majority.required(3), 2);
        assert_eq!(WriteQuorum::Majority.required(4), 3);
        assert_eq!(WriteQuorum::Majority.required(5), 3);
        assert_eq!(WriteQuorum::One.required(3), 1);
        assert_eq!(WriteQuorum::All.required(3), 3);
        assert_eq!(WriteQuorum::All.required(0), 1);
        assert_eq!(WriteQuorum::One.required(0), 1);
        assert_eq!(WriteQuorum::default(), WriteQuorum::Majority);
    }

    #[test]
    fn quorum_serde_names() {
        assert_eq!(
            serde_json::to_value(WriteQuorum::Majority).unwrap(),
            json!("majority")
        );
        assert_eq!(
            serde_json::from_value::<WriteQuorum>(json!("one")).unwrap(),
            WriteQuorum::One
        );
        assert_eq!(
            serde_json::from_value::<WriteQuorum>(json!("all")).unwrap(),
            WriteQuorum::All
        );
        assert!(serde_json::from_value::<WriteQuorum>(json!("most")).is_err());
    }

    #[test]
    fn classifies_responses() {
        let ack = NodeOutcome::from_response(202, &json!({"taskUid": 7, "status": "enqueued"}));
        assert_eq!(ack, NodeOutcome::Ack { task_uid: 7 });
        match NodeOutcome::from_node_response(&n("a"), 200, &json!({"taskUid": "7"})) {
            NodeOutcome::Failed(e) => {
                assert_eq!(e.code, "miroir_bad_node_response");
                assert!(e.message.contains("`a`"));
            }
            other => panic!("{other:?}"),
        }
        match NodeOutcome::from_response(202, &json!({"taskUid": -1})) {
            NodeOutcome::Failed(e) => assert_eq!(e.code, "miroir_bad_node_response"),
            other => panic!("{other:?}"),
        }
        let body = json!({"message": "m", "code": "index_not_found", "type": "invalid_request", "link": "x"});
        match NodeOutcome::from_response(404, &body) {
            NodeOutcome::Failed(e) => {
                assert_eq!(e.status, 404);
                assert_eq!(e.code, "index_not_found");
            }
            other => panic!("{other:?}"),
        }
        match NodeOutcome::from_response(502, &json!("gateway")) {
            NodeOutcome::Failed(e) => {
                assert_eq!(e.code, "miroir_bad_node_response");
                assert!(e.message.contains("502"));
            }
            other => panic!("{other:?}"),
        }
        match NodeOutcome::from_response(302, &json!({})) {
            NodeOutcome::Failed(e) => assert!(e.message.contains("302")),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn majority_rf3_acknowledges_on_second_ack_and_lists_pending() {
        let mut p = ShardOwners::new();
        p.insert(0, owners(&[&["a", "b", "c"]]));
        let mut t = QuorumTracker::new(p, WriteQuorum::Majority, 1000);
        assert_eq!(t.poll_timeout(), Some(1000));
        t.on_node_outcome(&n("a"), NodeOutcome::Ack { task_uid: 1 });
        assert!(t.decision().is_none());
        t.on_node_outcome(&n("c"), NodeOutcome::Ack { task_uid: 9 });
        match t.decision() {
            Some(WriteDecision::Acknowledged { degraded }) => {
                assert!(degraded.groups.is_empty());
                assert_eq!(degraded.pending_nodes, vec![n("b")]);
                assert_eq!(degraded.header_value(), None);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(t.poll_timeout(), None);
        // Late outcomes are recorded but do not change the decision.
        t.on_node_outcome(&n("b"), NodeOutcome::Ack { task_uid: 4 });
        assert_eq!(t.acked().len(), 3);
        assert!(matches!(
            t.decision(),
            Some(WriteDecision::Acknowledged { .. })
        ));
    }

    #[test]
    fn rf2_majority_one_node_down_rejects() {
        let mut p = ShardOwners::new();
        p.insert(3, owners(&[&["a", "b"]]));
        let mut t = QuorumTracker::new(p, WriteQuorum::Majority, 1000);
        t.on_node_outcome(&n("a"), NodeOutcome::TimedOut);
        match t.decision() {
            Some(WriteDecision::Rejected(e)) => {
                assert_eq!(e.status, 503);
                assert_eq!(e.code, "miroir_no_quorum");
                assert!(e.message.contains('3'));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn rf2_one_survives_a_node_down_degraded() {
        let mut p = ShardOwners::new();
        p.insert(3, owners(&[&["a", "b"]]));
        let mut t = QuorumTracker::new(p, WriteQuorum::One, 1000);
        t.on_node_outcome(&n("a"), NodeOutcome::TimedOut);
        assert!(t.decision().is_none());
        t.on_node_outcome(&n("b"), NodeOutcome::Ack { task_uid: 2 });
        assert!(matches!(
            t.decision(),
            Some(WriteDecision::Acknowledged { .. })
        ));
    }

    #[test]
    fn degraded_groups_and_header() {
        // Two groups; group 1 loses a node of shard 7 (RF=2, majority) while group 0 acks everything.
        let mut p = ShardOwners::new();
        p.insert(3, owners(&[&["a", "b"], &["c", "d"]]));
        p.insert(7, owners(&[&["a", "e"], &["c", "f"]]));
        let mut t = QuorumTracker::new(p, WriteQuorum::Majority, 1000);
        t.on_node_outcome(&n("f"), NodeOutcome::Failed(MeiliError::internal("disk")));
        for x in ["a", "b"] {
            t.on_node_outcome(&n(x), NodeOutcome::Ack { task_uid: 1 });
        }
        assert!(t.decision().is_none());
        t.on_node_outcome(&n("e"), NodeOutcome::Ack { task_uid: 1 });
        match t.decision() {
            Some(WriteDecision::Acknowledged { degraded }) => {
                assert_eq!(degraded.groups, vec![1]);
                assert_eq!(degraded.shards, vec![7]);
                assert_eq!(degraded.pending_nodes, vec![n("c"), n("d")]);
                assert_eq!(degraded.header_value().unwrap(), "groups=1;shards=7");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn rejection_waits_until_every_group_is_impossible() {
        let mut p = ShardOwners::new();
        p.insert(0, owners(&[&["a"], &["b"]]));
        let mut t = QuorumTracker::new(p, WriteQuorum::Majority, 1000);
        t.on_node_outcome(&n("a"), NodeOutcome::TimedOut);
        assert!(t.decision().is_none());
        t.on_node_outcome(&n("b"), NodeOutcome::Failed(MeiliError::internal("x")));
        match t.decision() {
            Some(WriteDecision::Rejected(e)) => assert_eq!(e.code, "miroir_no_quorum"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn relays_a_common_client_error() {
        let mut p = ShardOwners::new();
        p.insert(0, owners(&[&["a", "b", "c"]]));
        let mut t = QuorumTracker::new(p, WriteQuorum::Majority, 1000);
        t.on_node_outcome(&n("c"), NodeOutcome::TimedOut);
        t.on_node_outcome(&n("b"), NodeOutcome::Failed(invalid_id()));
        match t.decision() {
            Some(WriteDecision::Rejected(e)) => {
                assert_eq!(e.status, 400);
                assert_eq!(e.code, "invalid_document_id");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn mixed_errors_are_no_quorum() {
        let mut p = ShardOwners::new();
        p.insert(0, owners(&[&["a", "b", "c"]]));
        let mut t = QuorumTracker::new(p.clone(), WriteQuorum::Majority, 1000);
        t.on_node_outcome(&n("a"), NodeOutcome::Failed(invalid_id()));
        t.on_node_outcome(
            &n("b"),
            NodeOutcome::Failed(MeiliError::invalid(404, "index_not_found", "gone")),
        );
        match t.decision() {
            Some(WriteDecision::Rejected(e)) => assert_eq!(e.code, "miroir_no_quorum"),
            other => panic!("{other:?}"),
        }
        // A 5xx among the failures: not a client error.
        let mut t = QuorumTracker::new(p.clone(), WriteQuorum::Majority, 1000);
        t.on_node_outcome(&n("a"), NodeOutcome::Failed(invalid_id()));
        t.on_node_outcome(&n("b"), NodeOutcome::Failed(MeiliError::internal("x")));
        match t.decision() {
            Some(WriteDecision::Rejected(e)) => assert_eq!(e.code, "miroir_no_quorum"),
            other => panic!("{other:?}"),
        }
        // Any ack means a partial write: not the client's error alone.
        let mut t = QuorumTracker::new(p, WriteQuorum::All, 1000);
        t.on_node_outcome(&n("a"), NodeOutcome::Ack { task_uid: 1 });
        t.on_node_outcome(&n("b"), NodeOutcome::Failed(invalid_id()));
        match t.decision() {
            Some(WriteDecision::Rejected(e)) => assert_eq!(e.code, "miroir_no_quorum"),
            other => panic!("{other:?}"),
        }
        // Only timeouts: no node answered, no quorum.
    }

    #[test]
    fn timeout_turns_pending_into_timed_out() {
        let mut p = ShardOwners::new();
        p.insert(0, owners(&[&["a", "b", "c"]]));
        let mut t = QuorumTracker::new(p, WriteQuorum::Majority, 1000);
        t.on_node_outcome(&n("a"), NodeOutcome::Ack { task_uid: 1 });
        t.on_timeout(999);
        assert!(t.decision().is_none());
        assert_eq!(t.poll_timeout(), Some(1000));
        t.on_timeout(1000);
        assert_eq!(t.node_states()[&n("b")], NodeState::TimedOut);
        match t.decision() {
            Some(WriteDecision::Rejected(e)) => {
                assert_eq!(e.code, "miroir_no_quorum");
                assert_eq!(e.status, 503);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(t.poll_timeout(), None);
    }

    #[test]
    fn a_later_send_moves_the_deadline_until_decided() {
        let mut p = ShardOwners::new();
        p.insert(0, owners(&[&["a", "b", "c"]]));
        let mut t = QuorumTracker::new(p, WriteQuorum::Majority, 1000);
        // sent late: the nodes get their whole timeout from the send
        t.set_deadline(2500);
        t.on_timeout(1000);
        assert!(t.decision().is_none());
        assert_eq!(t.poll_timeout(), Some(2500));
        t.on_node_outcome(&n("a"), NodeOutcome::Ack { task_uid: 1 });
        t.on_node_outcome(&n("b"), NodeOutcome::Ack { task_uid: 2 });
        assert!(matches!(
            t.decision(),
            Some(WriteDecision::Acknowledged { .. })
        ));
        // decided: the decision never changes
        t.set_deadline(9000);
        t.on_timeout(9000);
        assert!(matches!(
            t.decision(),
            Some(WriteDecision::Acknowledged { .. })
        ));
    }

    #[test]
    fn ignores_unknown_and_repeated_outcomes() {
        let mut p = ShardOwners::new();
        p.insert(0, owners(&[&["a", "b", "c"]]));
        let mut t = QuorumTracker::new(p, WriteQuorum::Majority, 1000);
        t.on_node_outcome(&n("zz"), NodeOutcome::Ack { task_uid: 1 });
        t.on_node_outcome(&n("a"), NodeOutcome::Ack { task_uid: 1 });
        t.on_node_outcome(&n("a"), NodeOutcome::Ack { task_uid: 2 });
        assert!(t.decision().is_none());
        assert_eq!(t.acked(), vec![(n("a"), 1)]);
        assert_eq!(t.quorum(), WriteQuorum::Majority);
        assert_eq!(t.placement().len(), 1);
    }

    #[test]
    fn node_counts_for_all_its_shards() {
        let mut p = ShardOwners::new();
        p.insert(0, owners(&[&["a", "b"]]));
        p.insert(1, owners(&[&["b", "c"]]));
        let mut t = QuorumTracker::new(p, WriteQuorum::One, 1000);
        t.on_node_outcome(&n("b"), NodeOutcome::Ack { task_uid: 5 });
        match t.decision() {
            Some(WriteDecision::Acknowledged { degraded }) => {
                assert_eq!(degraded.pending_nodes, vec![n("a"), n("c")]);
                assert!(degraded.is_empty());
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn degenerate_placements() {
        let t = QuorumTracker::new(ShardOwners::new(), WriteQuorum::Majority, 0);
        assert_eq!(
            t.decision(),
            Some(WriteDecision::Acknowledged {
                degraded: Degraded::default()
            })
        );
        let mut p = ShardOwners::new();
        p.insert(4, vec![]);
        let t = QuorumTracker::new(p, WriteQuorum::One, 0);
        match t.decision() {
            Some(WriteDecision::Rejected(e)) => assert!(e.message.contains('4')),
            other => panic!("{other:?}"),
        }
        let mut p = ShardOwners::new();
        p.insert(4, vec![vec![]]);
        let t = QuorumTracker::new(p, WriteQuorum::All, 0);
        assert!(matches!(t.decision(), Some(WriteDecision::Rejected(_))));
    }
}
