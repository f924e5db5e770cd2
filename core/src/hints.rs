//! Hinted handoff: node writes that did not reach their node, kept in order and replayed when it is back.
//!
//! A write is acknowledged once each of its shards reaches quorum in one replica group, so a replica can miss
//! it (node down, partition, lost message, timeout, node answering 5xx). Every such node request becomes a
//! [`Hint`]: the index, the target node, the exact request (method, path, body), the Miroir task uid of the
//! write (once known) and a sequence number. The hints of one *lane* (index, node) are replayed strictly in
//! sequence order once the node answers again.
//!
//! ## States
//!
//! Per lane (index, node): `Clear` (no hint: live writes go straight to the node) → `Pending` (hints queued;
//! every new write of the lane is queued behind them as a hint instead of being sent, so a replay never
//! overwrites newer data) → `Replaying` (the head hint was handed out and is in flight) → back to `Pending`
//! (failed, retried later) or, once the last hint is applied, `Clear`.
//! A lane whose queue overflowed is `Clear` again and listed in [`HintLog::anti_entropy`] until the shell
//! takes it with [`HintLog::take_anti_entropy`]: the node missed writes that only a replica comparison can
//! restore.
//!
//! ## Transitions
//!
//! - [`HintLog::admit`]: a live write request holding its lane's turn asks whether to send: `Send` on a
//!   `Clear` lane (unless the shell knows the node is down), else the request is queued as a hint.
//! - [`HintLog::add`]: a request failed, timed out or answered 5xx: it is queued as a hint.
//! - [`HintLog::next_replay`]: hands out the head hint of a `Pending` lane (at most one per lane).
//! - [`HintLog::on_replay`]: the replay's outcome ([`ReplayVerdict`]): `Applied` pops the hint, `Retry`
//!   keeps it at the head, `Refused` (the node answered a 4xx it will answer again) drops it and marks the
//!   lane for anti-entropy, so one poisoned hint cannot block a lane forever.
//! - Overflow: queuing a hint on a lane already holding `max_per_node` hints drops the lane's whole queue
//!   (the shell deletes the returned hints from the store), marks the lane for anti-entropy and counts the
//!   overflow.
//!
//! ## Invariants
//!
//! - per lane, hints are applied in the order of their sequence numbers, and a live write of a lane is
//!   never sent while the lane holds a hint (it becomes the lane's newest hint instead);
//! - sequence numbers are strictly increasing over the whole log, also across restarts
//!   ([`HintLog::restore`] continues after the largest restored one);
//! - a lane never holds more than `max_per_node` hints; a lane that lost hints is marked for
//!   anti-entropy;
//! - at most one hint per lane is handed out for replay at a time;
//! - every hint leaves the log only by being applied, refused (lane marked), dropped by an overflow
//!   (lane marked), or forgotten with its node when the node leaves the fleet for good
//!   ([`HintLog::forget_node`]: its shards were re-replicated from the survivors): a missed write is never
//!   silently forgotten.
//!
//! The log is a pure state machine; the shells persist each change in the task store (hints are durable
//! and survive a proxy restart) and hold the lane's write turn (`ops::lanes`) while admitting, adding and
//! replaying, so that hint order is the lanes' order.

use crate::ops::{Method, NodeRequest, RequestId};
use crate::topology::NodeId;
use crate::Millis;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// One node write that has not reached its node yet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Hint {
    /// The hint's sequence number: strictly increasing over the log, the replay order of a lane.
    pub seq: u64,
    /// The index the write is about (the lane's index).
    pub index: String,
    /// The node the write is for.
    pub node: NodeId,
    /// The request's method.
    #[serde(with = "method_name")]
    pub method: Method,
    /// The request's path and query string.
    pub path: String,
    /// The request's JSON body.
    pub body: Option<Value>,
    /// The Miroir task uid of the write, once allocated (`None` for a refused write or while undecided).
    pub task_uid: Option<u64>,
    /// When the hint was queued.
    pub created_at: Millis,
    /// How many replays failed so far.
    pub attempts: u32,
}

impl Hint {
    /// The hint as a node request to send (`id` is the caller's).
    pub fn request(&self, id: RequestId) -> NodeRequest {
        NodeRequest {
            id,
            node: self.node.clone(),
            method: self.method,
            path: self.path.clone(),
            body: self.body.clone(),
        }
    }

    /// Whether this hint deletes index `index` (`DELETE /indexes/{index}`).
    pub fn deletes_index(&self, index: &str) -> bool {
        self.method == Method::Delete && self.path == format!("/indexes/{index}")
    }

    /// The hint as stored (JSON).
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }

    /// A stored hint; `None` when the JSON is not one.
    pub fn from_json(v: &Value) -> Option<Hint> {
        serde_json::from_value(v.clone()).ok()
    }
}

mod method_name {
    use super::Method;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(m: &Method, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(m.as_str())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Method, D::Error> {
        let name = String::deserialize(d)?;
        Ok(match name.as_str() {
            "GET" => Method::Get,
            "POST" => Method::Post,
            "PUT" => Method::Put,
            "PATCH" => Method::Patch,
            "DELETE" => Method::Delete,
            other => {
                return Err(serde::de::Error::custom(format!(
                    "unknown method {other:?}"
                )))
            }
        })
    }
}

/// What a live write request must do on its lane.
#[derive(Debug, Clone, PartialEq)]
pub enum Admission {
    /// The lane is clear: send it.
    Send,
    /// The lane holds hints (or the node is down): the request was queued as this hint; persist it.
    Queued(Hint),
    /// Queuing overflowed the lane: these hints (the lane's whole queue, the new one included) were dropped
    /// and must be deleted from the store; the lane is marked for anti-entropy.
    Overflowed(Vec<Hint>),
    /// The request is never hinted (see [`hintable`]) and the lane holds hints: it must not overtake them,
    /// so it is not sent and counts as failed.
    Blocked,
}

/// Whether a node request may become a hint. An index creation (`POST /indexes`) may not: creating an
/// index is all or nothing (`ops::index`), a creation that missed a node is rolled back elsewhere, so
/// replaying it later would create an index nobody has. Everything else a write sends can be replayed.
pub fn hintable(request: &NodeRequest) -> bool {
    !(request.method == Method::Post && request.path == "/indexes")
}

/// How a replayed hint ended, from the node's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplayVerdict {
    /// The node enqueued it (2xx with a `taskUid`, or the node task uid is unknown but the effect holds).
    Applied(Option<u64>),
    /// The node is unreachable or answered 5xx: try again later.
    Retry,
    /// The node refused it with a 4xx it would repeat: drop it and repair by anti-entropy.
    Refused,
}

impl ReplayVerdict {
    /// Judges a node's HTTP answer to the replay of `hint`. A `DELETE /indexes/{uid}` answered 404 is
    /// applied (the index is already gone).
    pub fn from_response(hint: &Hint, status: u16, body: &Value) -> Self {
        match status {
            200..=299 => ReplayVerdict::Applied(body.get("taskUid").and_then(Value::as_u64)),
            404 if hint.method == Method::Delete && hint.path.starts_with("/indexes/") => {
                ReplayVerdict::Applied(None)
            }
            // 408 (request timeout) and 429 (too many requests) say "not now", not "never".
            408 | 429 => ReplayVerdict::Retry,
            400..=499 => ReplayVerdict::Refused,
            _ => ReplayVerdict::Retry,
        }
    }
}

/// What [`HintLog::on_replay`] did.
#[derive(Debug, Clone, PartialEq)]
pub enum ReplayOutcome {
    /// The hint left the log: delete it from the store. `task_uid` is the node's task for the write.
    Done {
        hint: Hint,
        node_task_uid: Option<u64>,
    },
    /// The hint stays at the head of its lane with one more attempt: persist it.
    Kept(Hint),
    /// The hint was refused and dropped: delete it from the store; its lane is marked for anti-entropy.
    Dropped(Hint),
    /// No such hint was being replayed (already settled): nothing to do.
    Unknown,
}

type Lane = (String, NodeId);

/// The hint log of a proxy. See the module documentation.
#[derive(Debug, Clone)]
pub struct HintLog {
    max_per_node: usize,
    next_seq: u64,
    lanes: BTreeMap<Lane, VecDeque<Hint>>,
    replaying: BTreeSet<Lane>,
    anti_entropy: BTreeSet<Lane>,
    overflows: u64,
}

/// The default bound on a lane's hints (`repair.max_hints_per_node`'s default).
pub const DEFAULT_MAX_HINTS_PER_NODE: usize = 10_000;

impl Default for HintLog {
    fn default() -> Self {
        HintLog::new(DEFAULT_MAX_HINTS_PER_NODE)
    }
}

impl HintLog {
    /// An empty log keeping at most `max_per_node` hints per lane (at least 1).
    pub fn new(max_per_node: usize) -> Self {
        HintLog {
            max_per_node: max_per_node.max(1),
            next_seq: 0,
            lanes: BTreeMap::new(),
            replaying: BTreeSet::new(),
            anti_entropy: BTreeSet::new(),
            overflows: 0,
        }
    }

    /// The same hints with no replay in flight: what a restarted proxy holds (an in-flight replay died
    /// with the process and is retried).
    pub fn restarted(&self) -> Self {
        HintLog {
            replaying: BTreeSet::new(),
            ..self.clone()
        }
    }

    /// The log rebuilt from stored hints (any order); sequence numbers continue after the largest one.
    /// Lanes restored above `max_per_node` keep their hints (they were accepted under an older limit).
    pub fn restore(max_per_node: usize, hints: impl IntoIterator<Item = Hint>) -> Self {
        let mut log = HintLog::new(max_per_node);
        let mut all: Vec<Hint> = hints.into_iter().collect();
        all.sort_by_key(|h| h.seq);
        for h in all {
            log.next_seq = log.next_seq.max(h.seq + 1);
            log.lanes
                .entry((h.index.clone(), h.node.clone()))
                .or_default()
                .push_back(h);
        }
        log
    }

    /// Whether lane (`index`, `node`) holds hints: a live write of the lane must then be queued.
    pub fn has_pending(&self, index: &str, node: &NodeId) -> bool {
        self.lanes
            .get(&(index.to_string(), node.clone()))
            .is_some_and(|q| !q.is_empty())
    }

    /// A live write `request` of `index` holding its lane's turn: send it, or queue it as a hint when the
    /// lane holds hints or `node_down` (the shell knows the node is failed and will not wait for it). A
    /// request that is not [`hintable`] is sent when the lane is clear (even to a node thought down: the
    /// probe may lag) and [`Admission::Blocked`] otherwise.
    pub fn admit(
        &mut self,
        index: &str,
        request: &NodeRequest,
        task_uid: Option<u64>,
        node_down: bool,
        now: Millis,
    ) -> Admission {
        let pending = self.has_pending(index, &request.node);
        if !hintable(request) {
            return if pending {
                Admission::Blocked
            } else {
                Admission::Send
            };
        }
        if !node_down && !pending {
            return Admission::Send;
        }
        self.add(index, request, task_uid, now)
    }

    /// Queues `request` of `index` as a hint (it failed, timed out, or answered 5xx). A request that is not
    /// [`hintable`] is not queued: [`Admission::Send`] says nothing was done.
    pub fn add(
        &mut self,
        index: &str,
        request: &NodeRequest,
        task_uid: Option<u64>,
        now: Millis,
    ) -> Admission {
        if !hintable(request) {
            return Admission::Send;
        }
        let hint = Hint {
            seq: self.next_seq,
            index: index.to_string(),
            node: request.node.clone(),
            method: request.method,
            path: request.path.clone(),
            body: request.body.clone(),
            task_uid,
            created_at: now,
            attempts: 0,
        };
        self.next_seq += 1;
        let lane = (index.to_string(), request.node.clone());
        let queue = self.lanes.entry(lane.clone()).or_default();
        if queue.len() >= self.max_per_node {
            let mut dropped: Vec<Hint> = queue.drain(..).collect();
            dropped.push(hint);
            self.lanes.remove(&lane);
            self.replaying.remove(&lane);
            self.anti_entropy.insert(lane);
            self.overflows += 1;
            return Admission::Overflowed(dropped);
        }
        queue.push_back(hint.clone());
        Admission::Queued(hint)
    }

    /// The lanes holding hints, in (index, node) order.
    pub fn pending_lanes(&self) -> Vec<(String, NodeId)> {
        self.lanes
            .iter()
            .filter(|(_, q)| !q.is_empty())
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// The head hint of lane (`index`, `node`) to replay now, unless the lane is empty or already has a
    /// replay in flight.
    pub fn next_replay(&mut self, index: &str, node: &NodeId) -> Option<Hint> {
        let lane = (index.to_string(), node.clone());
        if self.replaying.contains(&lane) {
            return None;
        }
        let head = self.lanes.get(&lane)?.front()?.clone();
        self.replaying.insert(lane);
        Some(head)
    }

    /// Feeds the verdict of the replay of hint `seq` (handed out by [`HintLog::next_replay`]).
    pub fn on_replay(&mut self, seq: u64, verdict: ReplayVerdict) -> ReplayOutcome {
        let Some(lane) = self
            .replaying
            .iter()
            .find(|l| {
                self.lanes
                    .get(*l)
                    .and_then(|q| q.front())
                    .is_some_and(|h| h.seq == seq)
            })
            .cloned()
        else {
            return ReplayOutcome::Unknown;
        };
        self.replaying.remove(&lane);
        let Some(queue) = self.lanes.get_mut(&lane) else {
            return ReplayOutcome::Unknown;
        };
        let outcome = match verdict {
            ReplayVerdict::Retry => match queue.front_mut() {
                Some(head) => {
                    head.attempts = head.attempts.saturating_add(1);
                    return ReplayOutcome::Kept(head.clone());
                }
                None => ReplayOutcome::Unknown,
            },
            ReplayVerdict::Applied(node_task_uid) => match queue.pop_front() {
                Some(hint) => ReplayOutcome::Done {
                    hint,
                    node_task_uid,
                },
                None => ReplayOutcome::Unknown,
            },
            ReplayVerdict::Refused => match queue.pop_front() {
                Some(hint) => {
                    self.anti_entropy.insert(lane.clone());
                    ReplayOutcome::Dropped(hint)
                }
                None => ReplayOutcome::Unknown,
            },
        };
        if queue.is_empty() {
            self.lanes.remove(&lane);
        }
        outcome
    }

    /// Gives the hints `seqs` (queued while the write was undecided) the write's Miroir task uid; returns
    /// the updated hints to persist.
    pub fn set_task_uid(&mut self, seqs: &[u64], task_uid: u64) -> Vec<Hint> {
        let mut changed = Vec::new();
        for q in self.lanes.values_mut() {
            for h in q.iter_mut() {
                if seqs.contains(&h.seq) && h.task_uid != Some(task_uid) {
                    h.task_uid = Some(task_uid);
                    changed.push(h.clone());
                }
            }
        }
        changed
    }

    /// How many replicas of Miroir task `task_uid` still wait for a hint (its `pendingReplicas`).
    pub fn pending_for_task(&self, task_uid: u64) -> usize {
        self.lanes
            .values()
            .flatten()
            .filter(|h| h.task_uid == Some(task_uid))
            .count()
    }

    /// Whether a deletion of index `index` is still queued for some node: the index must not be shown.
    pub fn deletion_pending(&self, index: &str) -> bool {
        self.lanes
            .iter()
            .filter(|((i, _), _)| i == index)
            .flat_map(|(_, q)| q)
            .any(|h| h.deletes_index(index))
    }

    /// Every hint, in sequence order.
    pub fn hints(&self) -> Vec<Hint> {
        let mut all: Vec<Hint> = self.lanes.values().flatten().cloned().collect();
        all.sort_by_key(|h| h.seq);
        all
    }

    /// How many hints the log holds.
    pub fn len(&self) -> usize {
        self.lanes.values().map(VecDeque::len).sum()
    }

    /// Whether the log holds no hint.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The lanes that lost hints (overflow or refusal) and need an anti-entropy pass.
    pub fn anti_entropy(&self) -> Vec<(String, NodeId)> {
        self.anti_entropy.iter().cloned().collect()
    }

    /// Forgets every hint for `node`, which left the fleet for good (removed after a drain, or failed for
    /// good and re-replicated from the survivors): no replay could reach it. Returns the forgotten hints, for
    /// the shell to delete from the store.
    pub fn forget_node(&mut self, node: &NodeId) -> Vec<Hint> {
        let lanes: Vec<Lane> = self
            .lanes
            .keys()
            .filter(|(_, n)| n == node)
            .cloned()
            .collect();
        let mut forgotten = Vec::new();
        for lane in lanes {
            self.replaying.remove(&lane);
            self.anti_entropy.remove(&lane);
            if let Some(q) = self.lanes.remove(&lane) {
                forgotten.extend(q);
            }
        }
        forgotten
    }

    /// Takes lane (`index`, `node`) off the anti-entropy list (a pass is starting); returns whether it
    /// was listed.
    pub fn take_anti_entropy(&mut self, index: &str, node: &NodeId) -> bool {
        self.anti_entropy.remove(&(index.to_string(), node.clone()))
    }

    /// How many lane overflows happened since this log was created (a metric).
    pub fn overflows(&self) -> u64 {
        self.overflows
    }
}

/// Records in a task record that `node` applied the write through a replayed hint as node task
/// `node_task_uid`, so the Miroir task finds it; returns whether the record changed. A node task the
/// record already names is kept.
pub fn record_replay(
    record: &mut crate::tasks::MiroirTask,
    node: &NodeId,
    node_task_uid: Option<u64>,
) -> bool {
    let Some(uid) = node_task_uid else {
        return false;
    };
    match record
        .node_tasks
        .iter_mut()
        .find(|t| &t.node == node && t.task_uid.is_none())
    {
        Some(t) => {
            t.task_uid = Some(uid);
            true
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn req(node: &str, n: u64) -> NodeRequest {
        NodeRequest {
            id: 0,
            node: NodeId::from(node),
            method: Method::Post,
            path: "/indexes/movies/documents?primaryKey=id".into(),
            body: Some(json!([{"id": n}])),
        }
    }

    fn queued(a: Admission) -> Hint {
        match a {
            Admission::Queued(h) => h,
            other => panic!("expected a queued hint, got {other:?}"),
        }
    }

    #[test]
    fn clear_lanes_send_and_pending_lanes_queue_behind() {
        let mut log = HintLog::new(10);
        let a = NodeId::from("a");
        assert_eq!(
            log.admit("movies", &req("a", 1), None, false, 5),
            Admission::Send
        );
        let h0 = queued(log.add("movies", &req("a", 1), Some(7), 5));
        assert_eq!((h0.seq, h0.task_uid, h0.created_at), (0, Some(7), 5));
        assert!(log.has_pending("movies", &a));
        assert!(
            !log.has_pending("books", &a),
            "another index is another lane"
        );
        assert_eq!(
            log.admit("books", &req("a", 1), None, false, 5),
            Admission::Send
        );
        let h1 = queued(log.admit("movies", &req("a", 2), Some(8), false, 6));
        assert_eq!(h1.seq, 1);
        let down = queued(log.admit("movies", &req("b", 3), None, true, 6));
        assert_eq!(
            down.node,
            NodeId::from("b"),
            "a node known down is not waited for"
        );
        assert_eq!(log.len(), 3);
        assert_eq!(log.pending_for_task(7), 1);
        assert_eq!(
            log.pending_lanes(),
            vec![
                ("movies".to_string(), a.clone()),
                ("movies".to_string(), NodeId::from("b"))
            ]
        );
        assert_eq!(h1.request(4).id, 4);
        assert_eq!(h1.request(4).body, Some(json!([{"id": 2}])));
    }

    #[test]
    fn index_creations_are_never_hinted_nor_sent_past_hints() {
        let mut log = HintLog::new(4);
        let create = NodeRequest {
            id: 0,
            node: NodeId::from("a"),
            method: Method::Post,
            path: "/indexes".into(),
            body: Some(json!({"uid": "movies"})),
        };
        assert!(!hintable(&create));
        assert!(hintable(&req("a", 0)));
        assert_eq!(
            log.admit("movies", &create, None, true, 0),
            Admission::Send,
            "a creation is tried even on a node thought down"
        );
        assert_eq!(log.add("movies", &create, None, 0), Admission::Send);
        assert!(log.is_empty(), "a failed creation leaves no hint");
        log.add("movies", &req("a", 1), None, 0);
        assert_eq!(
            log.admit("movies", &create, None, false, 0),
            Admission::Blocked
        );
        assert_eq!(log.len(), 1);
    }

    #[test]
    fn replays_go_in_order_one_at_a_time_and_retry_keeps_the_head() {
        let mut log = HintLog::new(10);
        let a = NodeId::from("a");
        for n in 0..3 {
            log.add("movies", &req("a", n), Some(n), 0);
        }
        let head = log.next_replay("movies", &a).unwrap();
        assert_eq!(head.seq, 0);
        assert!(
            log.next_replay("movies", &a).is_none(),
            "one replay in flight per lane"
        );
        match log.on_replay(0, ReplayVerdict::Retry) {
            ReplayOutcome::Kept(h) => assert_eq!((h.seq, h.attempts), (0, 1)),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            log.on_replay(0, ReplayVerdict::Retry),
            ReplayOutcome::Unknown,
            "not in flight any more"
        );
        let again = log.next_replay("movies", &a).unwrap();
        assert_eq!(again.seq, 0, "a failed replay is retried first");
        match log.on_replay(0, ReplayVerdict::Applied(Some(40))) {
            ReplayOutcome::Done {
                hint,
                node_task_uid,
            } => assert_eq!((hint.seq, node_task_uid), (0, Some(40))),
            other => panic!("{other:?}"),
        }
        assert_eq!(log.next_replay("movies", &a).unwrap().seq, 1);
        assert!(matches!(
            log.on_replay(1, ReplayVerdict::Applied(None)),
            ReplayOutcome::Done { .. }
        ));
        assert_eq!(log.next_replay("movies", &a).unwrap().seq, 2);
        assert!(matches!(
            log.on_replay(2, ReplayVerdict::Applied(Some(1))),
            ReplayOutcome::Done { .. }
        ));
        assert!(log.is_empty());
        assert!(!log.has_pending("movies", &a));
        assert_eq!(
            log.admit("movies", &req("a", 9), None, false, 0),
            Admission::Send
        );
        assert!(log.next_replay("movies", &a).is_none());
        assert!(log.anti_entropy().is_empty());
    }

    #[test]
    fn overflow_drops_the_lane_and_marks_it_for_anti_entropy() {
        let mut log = HintLog::new(2);
        let a = NodeId::from("a");
        log.add("movies", &req("a", 0), None, 0);
        log.add("movies", &req("a", 1), None, 0);
        log.add("movies", &req("b", 1), None, 0);
        let _ = log.next_replay("movies", &a);
        match log.add("movies", &req("a", 2), None, 0) {
            Admission::Overflowed(dropped) => {
                assert_eq!(
                    dropped.iter().map(|h| h.seq).collect::<Vec<_>>(),
                    vec![0, 1, 3]
                )
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(log.overflows(), 1);
        assert!(!log.has_pending("movies", &a));
        assert!(log.has_pending("movies", &NodeId::from("b")));
        assert_eq!(log.anti_entropy(), vec![("movies".to_string(), a.clone())]);
        assert_eq!(
            log.on_replay(0, ReplayVerdict::Applied(None)),
            ReplayOutcome::Unknown,
            "the dropped replay no longer settles anything"
        );
        assert!(log.take_anti_entropy("movies", &a));
        assert!(!log.take_anti_entropy("movies", &a));
        let next = queued(log.add("movies", &req("a", 3), None, 0));
        assert_eq!(next.seq, 4, "sequence numbers never go back");
    }

    #[test]
    fn refused_replays_are_dropped_and_mark_the_lane() {
        let mut log = HintLog::new(4);
        let a = NodeId::from("a");
        log.add("movies", &req("a", 0), None, 0);
        log.add("movies", &req("a", 1), None, 0);
        let h = log.next_replay("movies", &a).unwrap();
        let verdict = ReplayVerdict::from_response(
            &h,
            400,
            &json!({"code": "invalid_document_id", "message": "x", "type": "invalid_request", "link": ""}),
        );
        assert_eq!(verdict, ReplayVerdict::Refused);
        assert!(matches!(
            log.on_replay(h.seq, verdict),
            ReplayOutcome::Dropped(_)
        ));
        assert_eq!(log.anti_entropy().len(), 1);
        assert_eq!(
            log.next_replay("movies", &a).unwrap().seq,
            1,
            "the lane moves on"
        );
    }

    #[test]
    fn verdicts_follow_the_node_answer() {
        let docs = Hint {
            seq: 0,
            index: "movies".into(),
            node: NodeId::from("a"),
            method: Method::Post,
            path: "/indexes/movies/documents".into(),
            body: None,
            task_uid: None,
            created_at: 0,
            attempts: 0,
        };
        let delete = Hint {
            method: Method::Delete,
            path: "/indexes/movies".into(),
            ..docs.clone()
        };
        assert_eq!(
            ReplayVerdict::from_response(&docs, 202, &json!({"taskUid": 3})),
            ReplayVerdict::Applied(Some(3))
        );
        assert_eq!(
            ReplayVerdict::from_response(&docs, 503, &Value::Null),
            ReplayVerdict::Retry
        );
        assert_eq!(
            ReplayVerdict::from_response(&docs, 429, &Value::Null),
            ReplayVerdict::Retry
        );
        assert_eq!(
            ReplayVerdict::from_response(&docs, 302, &Value::Null),
            ReplayVerdict::Retry
        );
        assert_eq!(
            ReplayVerdict::from_response(&docs, 404, &Value::Null),
            ReplayVerdict::Refused
        );
        assert_eq!(
            ReplayVerdict::from_response(&delete, 404, &Value::Null),
            ReplayVerdict::Applied(None),
            "deleting an index that is already gone is done"
        );
        assert!(delete.deletes_index("movies"));
        assert!(!delete.deletes_index("movie"));
        assert!(!docs.deletes_index("movies"));
    }

    #[test]
    fn index_deletions_pending_and_task_uids() {
        let mut log = HintLog::new(4);
        let del = NodeRequest {
            id: 0,
            node: NodeId::from("b"),
            method: Method::Delete,
            path: "/indexes/movies".into(),
            body: None,
        };
        let h = queued(log.add("movies", &del, None, 1));
        assert!(log.deletion_pending("movies"));
        assert!(!log.deletion_pending("books"));
        let changed = log.set_task_uid(&[h.seq, 99], 12);
        assert_eq!(changed.len(), 1);
        assert_eq!(changed[0].task_uid, Some(12));
        assert!(log.set_task_uid(&[h.seq], 12).is_empty(), "already set");
        assert_eq!(log.pending_for_task(12), 1);
        let b = NodeId::from("b");
        let r = log.next_replay("movies", &b).unwrap();
        log.on_replay(r.seq, ReplayVerdict::Applied(None));
        assert!(!log.deletion_pending("movies"));
        assert_eq!(log.pending_for_task(12), 0);
    }

    #[test]
    fn hints_round_trip_through_json_and_restore_continues_the_sequence() {
        let mut log = HintLog::new(4);
        log.add("movies", &req("a", 0), Some(1), 3);
        log.add("movies", &req("b", 1), None, 4);
        log.add("movies", &req("a", 2), None, 5);
        let stored: Vec<Value> = log.hints().iter().rev().map(Hint::to_json).collect();
        assert_eq!(stored[0]["method"], "POST");
        let restored = HintLog::restore(4, stored.iter().filter_map(Hint::from_json));
        assert_eq!(restored.hints(), log.hints());
        let mut restored = restored;
        let h = queued(restored.add("movies", &req("a", 3), None, 6));
        assert_eq!(h.seq, 3);
        assert_eq!(
            restored
                .next_replay("movies", &NodeId::from("a"))
                .unwrap()
                .seq,
            0
        );
        assert!(Hint::from_json(&json!({"seq": 1})).is_none());
        let mut bad = stored[0].clone();
        bad["method"] = json!("BREW");
        assert!(Hint::from_json(&bad).is_none());
    }

    #[test]
    fn replays_complete_the_task_record_and_restarts_forget_in_flight_replays() {
        use crate::tasks::{MiroirTask, NodeTaskRef, TaskType};
        let mut record = MiroirTask::new(
            3,
            Some("movies".into()),
            TaskType::DocumentAdditionOrUpdate,
            0,
            None,
        );
        let node_ref = |n: &str, uid| NodeTaskRef {
            node: NodeId::from(n),
            task_uid: uid,
            shards: vec![0],
            group: 0,
        };
        record.node_tasks = vec![node_ref("a", Some(1)), node_ref("b", None)];
        assert!(!record_replay(&mut record, &NodeId::from("b"), None));
        assert!(
            !record_replay(&mut record, &NodeId::from("a"), Some(9)),
            "a known node task is kept"
        );
        assert!(!record_replay(&mut record, &NodeId::from("z"), Some(9)));
        assert!(record_replay(&mut record, &NodeId::from("b"), Some(9)));
        assert_eq!(record.node_tasks[1].task_uid, Some(9));

        let mut log = HintLog::default();
        let a = NodeId::from("a");
        log.add("movies", &req("a", 0), None, 0);
        assert!(log.next_replay("movies", &a).is_some());
        assert!(log.next_replay("movies", &a).is_none());
        let mut after = log.restarted();
        assert_eq!(after.next_replay("movies", &a).unwrap().seq, 0);
    }

    proptest! {
        /// Whatever the mix of failures, replays and outcomes, each lane applies its hints in sequence
        /// order, never holds more than the bound, and every hint is either applied or its lane marked.
        #[test]
        fn lanes_apply_in_order_within_bounds(ops in proptest::collection::vec((0u8..2, 0u8..4), 1..150)) {
            let nodes = ["a", "b"];
            let mut log = HintLog::new(5);
            let mut applied: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
            let mut lost: BTreeSet<&str> = BTreeSet::new();
            let mut added: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
            for (n, op) in ops {
                let node = nodes[n as usize];
                let id = NodeId::from(node);
                match op {
                    0 | 1 => match log.add("i", &req(node, 0), None, 0) {
                        Admission::Queued(h) => added.entry(node).or_default().push(h.seq),
                        Admission::Overflowed(_) => { lost.insert(node); added.remove(node); applied.remove(node); }
                        Admission::Send | Admission::Blocked => prop_assert!(false, "add always queues a hintable request"),
                    },
                    2 => if let Some(h) = log.next_replay("i", &id) {
                        if let ReplayOutcome::Done { hint, .. } = log.on_replay(h.seq, ReplayVerdict::Applied(None)) {
                            applied.entry(node).or_default().push(hint.seq);
                        }
                    },
                    _ => if let Some(h) = log.next_replay("i", &id) {
                        prop_assert!(matches!(log.on_replay(h.seq, ReplayVerdict::Retry), ReplayOutcome::Kept(_)));
                    },
                }
                for lane in log.pending_lanes() {
                    prop_assert!(log.lanes[&lane].len() <= 5);
                }
            }
            for node in nodes {
                let id = NodeId::from(node);
                while let Some(h) = log.next_replay("i", &id) {
                    if let ReplayOutcome::Done { hint, .. } = log.on_replay(h.seq, ReplayVerdict::Applied(None)) {
                        applied.entry(node).or_default().push(hint.seq);
                    }
                }
                let got = applied.get(node).cloned().unwrap_or_default();
                let want = added.get(node).cloned().unwrap_or_default();
                prop_assert_eq!(&got, &want);
                prop_assert!(got.windows(2).all(|w| w[0] < w[1]));
                prop_assert_eq!(lost.contains(node), log.anti_entropy().contains(&("i".to_string(), id)));
            }
            prop_assert!(log.is_empty());
        }
    }
    #[test]
    fn a_node_leaving_for_good_takes_its_hints_along() {
        let mut log = HintLog::new(10);
        let gone = NodeId::from("gone");
        let stays = NodeId::from("stays");
        for node in [&gone, &stays, &gone] {
            let r = NodeRequest {
                id: 0,
                node: node.clone(),
                method: Method::Post,
                path: "/indexes/i/documents".into(),
                body: Some(serde_json::json!([{"id": 1}])),
            };
            log.add("i", &r, Some(1), 0);
        }
        let forgotten = log.forget_node(&gone);
        assert_eq!(forgotten.len(), 2);
        assert!(forgotten.iter().all(|h| h.node == gone));
        assert!(!log.has_pending("i", &gone));
        assert!(log.has_pending("i", &stays));
        assert_eq!(log.len(), 1);
        assert!(log.forget_node(&gone).is_empty());
    }
}
