//! A write fanned out to nodes and judged by the write quorum.
//!
//! States: `Sending` (requests built, none answered) → `Collecting` (answers arrive as events) →
//! `Decided` (the quorum tracker acknowledged or rejected the write). Answers that arrive after the decision
//! are still recorded, so the task record learns every node task uid it can; they never change the decision.
//!
//! Events: [`FanoutWrite::on_response`] (a node's HTTP answer), [`FanoutWrite::on_failure`] (the request could
//! not be delivered or timed out), [`FanoutWrite::on_timeout`] (the caller's clock reached
//! [`FanoutWrite::poll_timeout`]).
//!
//! Invariants:
//! - the client is told "enqueued" (202) only once the tracker acknowledged: every shard of the write has a
//!   replica group where a quorum of its owners enqueued the write;
//! - the task record names every node task that acked, so task status and repair can find them;
//! - a node answer is matched to its request by id; an answer for an unknown id, or a second answer for the
//!   same request, is ignored.
//!
//! The constructors build the node requests of each kind of write: document batches (each node receives only
//! the documents of the shards it owns), deletions by id (likewise), and broadcasts (the same request to every
//! node that owns a shard: settings, deletion by filter, clearing, index creation and deletion).

use super::{encode_query_value, Method, NodeRequest, Reply, RequestId, DEGRADED_HEADER};
use crate::documents::{BatchPlan, DeletePlan};
use crate::quorum::{NodeOutcome, QuorumTracker, ShardOwners, WriteDecision, WriteQuorum};
use crate::routing::Placement;
use crate::tasks::{node_task_refs, MiroirTask, TaskType};
use crate::topology::{NodeId, ShardId};
use crate::Millis;
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// What a write is, for its task record.
#[derive(Debug, Clone, PartialEq)]
pub struct WriteTask {
    /// The Miroir task uid allocated for this write.
    pub uid: u64,
    pub index_uid: Option<String>,
    pub task_type: TaskType,
    /// The client-facing details known up front (see `tasks::details`).
    pub details: Option<Map<String, Value>>,
    /// When the write was accepted.
    pub enqueued_at: Millis,
}

/// One write in flight. See the module documentation.
#[derive(Debug, Clone)]
pub struct FanoutWrite {
    task: WriteTask,
    quorum: WriteQuorum,
    requests: Vec<NodeRequest>,
    answered: Vec<bool>,
    tracker: QuorumTracker,
}

/// The owners, per group, of each of `shards`.
pub fn shard_owners(
    placement: &Placement,
    shards: impl IntoIterator<Item = ShardId>,
) -> ShardOwners {
    shards
        .into_iter()
        .map(|s| {
            (
                s,
                (0..placement.groups())
                    .map(|g| placement.owners(s, g).to_vec())
                    .collect(),
            )
        })
        .collect()
}

impl FanoutWrite {
    /// A write made of `requests` (node, method, path, body), judged over `owners` with `quorum`; nodes that
    /// have not answered by `deadline` count as timed out.
    pub fn new(
        task: WriteTask,
        owners: ShardOwners,
        quorum: WriteQuorum,
        deadline: Millis,
        requests: Vec<(NodeId, Method, String, Option<Value>)>,
    ) -> Self {
        let requests: Vec<NodeRequest> = requests
            .into_iter()
            .enumerate()
            .map(|(id, (node, method, path, body))| NodeRequest {
                id,
                node,
                method,
                path,
                body,
            })
            .collect();
        FanoutWrite {
            task,
            quorum,
            answered: vec![false; requests.len()],
            requests,
            tracker: QuorumTracker::new(owners, quorum, deadline),
        }
    }

    /// Adds or replaces (`replace = true`, POST) or updates (PUT) documents: each node receives its share
    /// of `plan`, with the primary key stated explicitly so no node ever infers it on its own.
    #[allow(clippy::too_many_arguments)]
    pub fn documents(
        task: WriteTask,
        index_uid: &str,
        primary_key: &str,
        replace: bool,
        plan: BatchPlan,
        placement: &Placement,
        quorum: WriteQuorum,
        deadline: Millis,
    ) -> Self {
        let path = format!(
            "/indexes/{index_uid}/documents?primaryKey={}",
            encode_query_value(primary_key)
        );
        let method = if replace { Method::Post } else { Method::Put };
        let owners = shard_owners(placement, plan.shards.keys().copied());
        let requests = plan
            .per_node
            .into_iter()
            .map(|(node, docs)| {
                let body = Value::Array(docs.into_iter().map(Value::Object).collect());
                (node, method, path.clone(), Some(body))
            })
            .collect();
        Self::new(task, owners, quorum, deadline, requests)
    }

    /// Deletes documents by id: each node receives the ids of the shards it owns.
    pub fn delete_ids(
        task: WriteTask,
        index_uid: &str,
        plan: DeletePlan,
        placement: &Placement,
        quorum: WriteQuorum,
        deadline: Millis,
    ) -> Self {
        let path = format!("/indexes/{index_uid}/documents/delete-batch");
        let owners = shard_owners(placement, plan.shards.keys().copied());
        let requests = plan
            .per_node
            .into_iter()
            .map(|(node, ids)| {
                let body = Value::Array(ids.into_iter().map(Value::String).collect());
                (node, Method::Post, path.clone(), Some(body))
            })
            .collect();
        Self::new(task, owners, quorum, deadline, requests)
    }

    /// Sends the same request to every node that owns a shard, judged over all shards.
    pub fn broadcast(
        task: WriteTask,
        method: Method,
        path: String,
        body: Option<Value>,
        placement: &Placement,
        quorum: WriteQuorum,
        deadline: Millis,
    ) -> Self {
        let owners = shard_owners(placement, 0..placement.shards());
        let mut nodes: Vec<&NodeId> = owners.values().flatten().flatten().collect();
        nodes.sort();
        nodes.dedup();
        let requests = nodes
            .into_iter()
            .map(|n| (n.clone(), method, path.clone(), body.clone()))
            .collect();
        Self::new(task, owners, quorum, deadline, requests)
    }

    /// The node requests to send (all at once, in parallel).
    pub fn requests(&self) -> &[NodeRequest] {
        &self.requests
    }

    /// Stamps every document this write carries with the write version `version` (see `entropy`); requests
    /// that carry no documents are left as they are.
    pub fn stamp_version(&mut self, version: u64) {
        for r in &mut self.requests {
            crate::entropy::stamp_request(r, version);
        }
    }

    /// Feeds a node's HTTP answer to request `id`.
    pub fn on_response(&mut self, id: RequestId, status: u16, body: &Value) {
        let Some(node) = self.take(id) else { return };
        let outcome = NodeOutcome::from_node_response(&node, status, body);
        self.tracker.on_node_outcome(&node, outcome);
    }

    /// The request `id` could not be delivered, or timed out.
    pub fn on_failure(&mut self, id: RequestId) {
        let Some(node) = self.take(id) else { return };
        self.tracker.on_node_outcome(&node, NodeOutcome::TimedOut);
    }

    fn take(&mut self, id: RequestId) -> Option<NodeId> {
        let seen = self.answered.get_mut(id)?;
        if *seen {
            return None;
        }
        *seen = true;
        Some(self.requests[id].node.clone())
    }

    /// Restarts the nodes' deadline when the requests are actually sent (after the write's tombstones and
    /// version were stored, which must not eat the nodes' timeout). No effect once decided.
    pub fn set_deadline(&mut self, deadline: Millis) {
        self.tracker.set_deadline(deadline);
    }

    /// The caller's clock reached the deadline: every node still silent counts as timed out.
    pub fn on_timeout(&mut self, now: Millis) {
        self.tracker.on_timeout(now);
    }

    /// When the caller must call [`FanoutWrite::on_timeout`], while some node is still silent.
    pub fn poll_timeout(&self) -> Option<Millis> {
        self.tracker.poll_timeout()
    }

    /// Whether every request has been answered (or failed).
    pub fn all_answered(&self) -> bool {
        self.answered.iter().all(|a| *a)
    }

    pub fn decision(&self) -> Option<WriteDecision> {
        self.tracker.decision()
    }

    /// The task record to persist before replying: the write's owners and quorum, and every node task known.
    pub fn record(&self) -> MiroirTask {
        let mut record = MiroirTask::new(
            self.task.uid,
            self.task.index_uid.clone(),
            self.task.task_type,
            self.task.enqueued_at,
            self.task.details.clone(),
        );
        let acked: BTreeMap<NodeId, u64> = self.tracker.acked().into_iter().collect();
        record.node_tasks = node_task_refs(self.tracker.placement(), |n| acked.get(n).copied());
        record.placement = self.tracker.placement().clone();
        record.quorum = self.quorum;
        record
    }

    /// The client's reply once decided: 202 with the summarized task (and `X-Miroir-Degraded` when a group
    /// missed quorum), or the rejection error.
    pub fn reply(&self) -> Option<Reply> {
        match self.decision()? {
            WriteDecision::Acknowledged { degraded } => {
                let mut reply = Reply::json(202, self.record().summarized());
                if let Some(h) = degraded.header_value() {
                    reply.headers.push((DEGRADED_HEADER.to_string(), h));
                }
                Some(reply)
            }
            WriteDecision::Rejected(e) => Some(Reply::error(&e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::documents::{plan_batch, plan_delete_ids};
    use crate::tasks::details;
    use serde_json::json;

    fn placement(nodes: usize, rf: u32, groups: u32, shards: u32) -> Placement {
        crate::ops::test_placement(nodes, rf, groups, shards)
    }

    fn task(uid: u64, kind: TaskType) -> WriteTask {
        WriteTask {
            uid,
            index_uid: Some("movies".into()),
            task_type: kind,
            details: None,
            enqueued_at: 1_000,
        }
    }

    fn docs(n: usize) -> Vec<Map<String, Value>> {
        (0..n)
            .map(|i| {
                json!({"id": i, "title": format!("t{i}")})
                    .as_object()
                    .unwrap()
                    .clone()
            })
            .collect()
    }

    #[test]
    fn documents_split_by_owner_with_explicit_primary_key() {
        let p = placement(3, 2, 1, 8);
        let plan = plan_batch(docs(40), "id", &p).unwrap();
        let w = FanoutWrite::documents(
            task(7, TaskType::DocumentAdditionOrUpdate),
            "movies",
            "id",
            true,
            plan,
            &p,
            WriteQuorum::Majority,
            5_000,
        );
        assert_eq!(w.requests().len(), 3);
        let mut copies = 0;
        for r in w.requests() {
            assert_eq!(r.method, Method::Post);
            assert_eq!(r.path, "/indexes/movies/documents?primaryKey=id");
            let body = r.body.as_ref().unwrap().as_array().unwrap();
            for d in body {
                let shard = d["_miroir_shard"].as_u64().unwrap() as u32;
                assert!(
                    p.owners(shard, 0).contains(&r.node),
                    "only owners receive a shard's documents"
                );
            }
            copies += body.len();
        }
        assert_eq!(copies, 80, "RF=2: every document goes to exactly two nodes");
        let update = FanoutWrite::documents(
            task(8, TaskType::DocumentAdditionOrUpdate),
            "movies",
            "product id",
            false,
            plan_batch(docs(2), "id", &p).unwrap(),
            &p,
            WriteQuorum::Majority,
            5_000,
        );
        assert!(update
            .requests()
            .iter()
            .all(|r| r.method == Method::Put && r.path.ends_with("primaryKey=product%20id")));
    }

    #[test]
    fn acknowledges_at_quorum_and_records_node_tasks() {
        let p = placement(3, 1, 1, 4);
        let plan = plan_batch(docs(20), "id", &p).unwrap();
        let mut w = FanoutWrite::documents(
            task(3, TaskType::DocumentAdditionOrUpdate),
            "movies",
            "id",
            true,
            plan,
            &p,
            WriteQuorum::Majority,
            5_000,
        );
        let n = w.requests().len();
        assert!(w.reply().is_none());
        for id in 0..n {
            w.on_response(id, 202, &json!({"taskUid": 100 + id}));
        }
        let reply = w.reply().unwrap();
        assert_eq!(reply.status, 202);
        assert_eq!(reply.body["taskUid"], 3);
        assert_eq!(reply.body["status"], "enqueued");
        assert!(reply.headers.is_empty());
        let record = w.record();
        assert!(record.node_tasks.iter().all(|t| t.task_uid.is_some()));
        assert!(w.all_answered());
    }

    #[test]
    fn rejects_without_quorum_and_ignores_duplicate_answers() {
        let p = placement(2, 2, 1, 4);
        let plan = plan_batch(docs(10), "id", &p).unwrap();
        let mut w = FanoutWrite::documents(
            task(1, TaskType::DocumentAdditionOrUpdate),
            "movies",
            "id",
            true,
            plan,
            &p,
            WriteQuorum::Majority,
            5_000,
        );
        w.on_response(0, 202, &json!({"taskUid": 1}));
        w.on_response(
            0,
            500,
            &json!({"message": "x", "code": "internal", "type": "internal", "link": ""}),
        );
        assert!(
            w.decision().is_none(),
            "a second answer to the same request is ignored"
        );
        w.on_failure(1);
        let reply = w.reply().unwrap();
        assert_eq!(reply.status, 503);
        assert_eq!(reply.body["code"], "miroir_no_quorum");
        w.on_response(99, 202, &json!({"taskUid": 5}));
    }

    #[test]
    fn quorum_one_survives_a_replica_loss_and_a_lost_group_sets_the_header() {
        let p = placement(2, 2, 1, 4);
        let plan = plan_batch(docs(10), "id", &p).unwrap();
        let mut w = FanoutWrite::documents(
            task(1, TaskType::DocumentAdditionOrUpdate),
            "movies",
            "id",
            true,
            plan,
            &p,
            WriteQuorum::One,
            5_000,
        );
        w.on_failure(1);
        w.on_response(0, 202, &json!({"taskUid": 9}));
        let reply = w.reply().unwrap();
        assert_eq!(reply.status, 202);
        assert!(
            reply.headers.is_empty(),
            "the group still reached its quorum of one"
        );
        assert_eq!(
            w.record()
                .node_tasks
                .iter()
                .filter(|t| t.task_uid.is_some())
                .count(),
            1
        );

        // two groups of one node each: losing group 1 entirely still acknowledges, degraded
        let p = placement(2, 1, 2, 4);
        let plan = plan_batch(docs(10), "id", &p).unwrap();
        let mut w = FanoutWrite::documents(
            task(2, TaskType::DocumentAdditionOrUpdate),
            "movies",
            "id",
            true,
            plan,
            &p,
            WriteQuorum::Majority,
            5_000,
        );
        let g1 = w
            .requests()
            .iter()
            .find(|r| r.node.as_str() == "n1")
            .unwrap()
            .id;
        let g0 = w
            .requests()
            .iter()
            .find(|r| r.node.as_str() == "n0")
            .unwrap()
            .id;
        w.on_failure(g1);
        w.on_response(g0, 202, &json!({"taskUid": 4}));
        let reply = w.reply().unwrap();
        assert_eq!(reply.status, 202);
        assert_eq!(reply.headers[0].0, DEGRADED_HEADER);
        assert!(reply.headers[0].1.starts_with("groups=1;shards="));
    }

    #[test]
    fn timeout_decides_for_silent_nodes() {
        let p = placement(2, 1, 1, 4);
        let plan = plan_batch(docs(10), "id", &p).unwrap();
        let mut w = FanoutWrite::documents(
            task(1, TaskType::DocumentAdditionOrUpdate),
            "movies",
            "id",
            true,
            plan,
            &p,
            WriteQuorum::Majority,
            5_000,
        );
        assert_eq!(w.poll_timeout(), Some(5_000));
        w.on_response(0, 202, &json!({"taskUid": 9}));
        w.on_timeout(4_999);
        assert!(w.decision().is_none());
        w.on_timeout(5_000);
        assert_eq!(w.reply().unwrap().status, 503);
    }

    #[test]
    fn deletes_by_id_go_to_owners_and_broadcasts_to_every_owner() {
        let p = placement(4, 2, 2, 8);
        let ids: Vec<Value> = (0..30).map(|i| json!(i)).collect();
        let plan = plan_delete_ids(&ids, &p);
        let mut t = task(2, TaskType::DocumentDeletion);
        t.details = Some(details::document_deletion(30));
        let w = FanoutWrite::delete_ids(t, "movies", plan, &p, WriteQuorum::Majority, 5_000);
        let total: usize = w
            .requests()
            .iter()
            .map(|r| r.body.as_ref().unwrap().as_array().unwrap().len())
            .sum();
        assert_eq!(total, 30 * 2 * 2, "RF=2 in each of 2 groups");
        assert!(w
            .requests()
            .iter()
            .all(|r| r.path == "/indexes/movies/documents/delete-batch"));

        let b = FanoutWrite::broadcast(
            task(4, TaskType::SettingsUpdate),
            Method::Patch,
            "/indexes/movies/settings".into(),
            Some(json!({"rankingRules": ["words"]})),
            &p,
            WriteQuorum::All,
            5_000,
        );
        assert_eq!(b.requests().len(), 4);
        assert_eq!(b.record().placement.len(), 8);
    }
}
