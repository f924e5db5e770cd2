//! Aggregation of node tasks into one Meilisearch task object.
//!
//! [`aggregate`] is a pure function of the [`MiroirTask`] record, the node task objects fetched so far
//! (`GET /tasks/{uid}` on each node, parsed leniently by [`NodeTaskView::from_json`]), `now` and
//! `lost_after`. The status rules are the invariants stated in the [`crate::tasks`] module header.
//!
//! ## Output
//!
//! [`TaskView::meili`] is exactly Meilisearch's task object, with its key order: `uid, batchUid,
//! indexUid, status, type, canceledBy, details, error, duration, enqueuedAt, startedAt, finishedAt`
//! (`details` omitted when the record has none). Miroir has no batches of its own: `batchUid` is the
//! task's own uid once it left `enqueued` (one task per batch), `null` before.
//!
//! - `enqueuedAt` is the Miroir task's own; `startedAt` the earliest node `startedAt`; `finishedAt`, for
//!   a succeeded task, the instant quorum was reached (per shard, the earliest group's `q`-th node
//!   `finishedAt`; then the latest shard), for a failed or canceled one the latest node `finishedAt`
//!   (or the instant lost nodes were declared lost); `duration = finishedAt - startedAt`. Enqueued and
//!   processing tasks have `null` `duration` and `finishedAt` (and `startedAt` while enqueued). A task
//!   failed by Miroir before sending anything starts and finishes when it was enqueued.
//! - `details`: the up-front details of the record. Result counters are `null` while enqueued or
//!   processing, `0` once failed or canceled (as Meilisearch's `to_failed`), and on success:
//!   `indexedDocuments = receivedDocuments`; other counters (`deletedDocuments`, `editedDocuments`...)
//!   are summed over the node tasks of one group and divided by that group's RF. Each shard of the
//!   group sits on exactly RF of its nodes and each node reports the count for the shards it holds, so
//!   the sum counts every document RF times. The group used is the lowest-id group whose node tasks all
//!   succeeded; when there is none, the group with the most succeeded node tasks, whose count is then a
//!   lower bound. A counter the record already holds (Miroir knew it) is kept.
//! - `error` on failure: the node's error object, normalised by [`MeiliError::from_node_body`].

use super::details::RESULT_KEYS;
use super::time::{format_duration, format_rfc3339, millis_to_nanos, parse_rfc3339, UnixNanos};
use super::{MiroirTask, NodeTaskRef, TaskStatus, TaskType};
use crate::error::{join_u32, ErrorType, MeiliError};
use crate::topology::{GroupId, NodeId, ShardId};
use crate::Millis;
use serde_json::{Map, Value};
use std::collections::{BTreeMap, BTreeSet};

/// What Miroir knows of one node task, parsed leniently from the node's task object.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NodeTaskView {
    /// The node task's status; `None` when absent or unknown.
    pub status: Option<TaskStatus>,
    /// The node task's `details` (empty when absent).
    pub details: Map<String, Value>,
    /// The node task's `error` object, when not `null`.
    pub error: Option<Value>,
    /// `startedAt`, when present and well-formed.
    pub started_at: Option<UnixNanos>,
    /// `finishedAt`, when present and well-formed.
    pub finished_at: Option<UnixNanos>,
}

impl NodeTaskView {
    /// Parses a node's task object; every field is optional and malformed fields are ignored.
    pub fn from_json(v: &Value) -> Self {
        let time = |k: &str| v.get(k).and_then(Value::as_str).and_then(parse_rfc3339);
        NodeTaskView {
            status: v
                .get("status")
                .and_then(Value::as_str)
                .and_then(TaskStatus::parse),
            details: v
                .get("details")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default(),
            error: v.get("error").filter(|e| !e.is_null()).cloned(),
            started_at: time("startedAt"),
            finished_at: time("finishedAt"),
        }
    }
}

/// One aggregated Miroir task: the typed fields filtering needs, and the Meilisearch object.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskView {
    /// The Miroir task uid.
    pub uid: u64,
    /// `batchUid` as shown.
    pub batch_uid: Option<u64>,
    /// `indexUid` as shown.
    pub index_uid: Option<String>,
    /// The aggregated status.
    pub status: TaskStatus,
    /// The task type.
    pub task_type: TaskType,
    /// `canceledBy` as shown.
    pub canceled_by: Option<u64>,
    /// `enqueuedAt`.
    pub enqueued_at: UnixNanos,
    /// `startedAt`.
    pub started_at: Option<UnixNanos>,
    /// `finishedAt`.
    pub finished_at: Option<UnixNanos>,
    /// Node tasks that have not succeeded (pending repair once the task succeeded). Not part of the
    /// Meilisearch object; the proxy may expose it in a Miroir header or admin API.
    pub miroir_pending_replicas: usize,
    /// The Meilisearch task object.
    pub meili: Value,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Succeeded,
    Pending,
    Failed,
    Canceled,
    Lost,
}

struct Classified<'a> {
    state: State,
    view: Option<&'a NodeTaskView>,
}

fn classify<'a>(
    r: &NodeTaskRef,
    node_tasks: &'a BTreeMap<(NodeId, u64), NodeTaskView>,
    lost: bool,
) -> Classified<'a> {
    let view = r
        .task_uid
        .and_then(|uid| node_tasks.get(&(r.node.clone(), uid)));
    let state = match view {
        None if lost => State::Lost,
        None => State::Pending,
        Some(v) => match v.status {
            Some(TaskStatus::Succeeded) => State::Succeeded,
            Some(TaskStatus::Failed) => State::Failed,
            Some(TaskStatus::Canceled) => State::Canceled,
            Some(TaskStatus::Enqueued | TaskStatus::Processing) | None => State::Pending,
        },
    };
    Classified { state, view }
}

#[derive(Default)]
struct Slot {
    succeeded: usize,
    pending: usize,
    canceled: usize,
    required: usize,
    succeeded_finish: Vec<UnixNanos>,
}

/// Aggregates a Miroir task. `node_tasks` maps `(node, node task uid)` to what that node said about the
/// task in the current read; `lost_after` is how long after `enqueued_at` an unknown node task counts as
/// lost. A node that does not answer now must be absent from `node_tasks` (a cached *finished* object may
/// stay, since finished node tasks never change): a stale `processing` object would keep the task
/// processing.
pub fn aggregate(
    task: &MiroirTask,
    node_tasks: &BTreeMap<(NodeId, u64), NodeTaskView>,
    now: Millis,
    lost_after: Millis,
) -> TaskView {
    let lost_at = task.enqueued_at.saturating_add(lost_after);
    let lost = now >= lost_at;
    let refs: Vec<(&NodeTaskRef, Classified)> = task
        .node_tasks
        .iter()
        .map(|r| (r, classify(r, node_tasks, lost)))
        .collect();

    // Per shard, per group tallies.
    let mut ok_shards: BTreeMap<ShardId, Option<UnixNanos>> = BTreeMap::new();
    let mut impossible: Vec<ShardId> = Vec::new();
    let mut cancel_caused = true;
    let mut all_ok = true;
    for (&shard, groups) in &task.placement {
        let mut slots = Vec::with_capacity(groups.len());
        for (g, owners) in groups.iter().enumerate() {
            let mut slot = Slot {
                required: task.quorum.required(owners.len()),
                ..Slot::default()
            };
            for owner in owners {
                let found = refs
                    .iter()
                    .filter(|(r, _)| r.node == *owner && r.shards.contains(&shard))
                    .min_by_key(|(r, _)| (r.group != g as GroupId, r.task_uid));
                match found.map(|(_, c)| (c.state, c.view)) {
                    Some((State::Succeeded, view)) => {
                        slot.succeeded += 1;
                        if let Some(f) = view.and_then(|v| v.finished_at) {
                            slot.succeeded_finish.push(f);
                        }
                    }
                    Some((State::Pending, _)) => slot.pending += 1,
                    Some((State::Canceled, _)) => slot.canceled += 1,
                    Some((State::Failed | State::Lost, _)) => {}
                    None if lost => {}
                    None => slot.pending += 1,
                }
            }
            slots.push(slot);
        }
        let reached: Vec<&Slot> = slots.iter().filter(|s| s.succeeded >= s.required).collect();
        if reached.is_empty() {
            all_ok = false;
        } else {
            // The instant this shard reached quorum: the earliest group's q-th finish.
            let at = reached
                .iter()
                .filter_map(|s| {
                    let mut f = s.succeeded_finish.clone();
                    f.sort_unstable();
                    f.get(s.required - 1).or(f.last()).copied()
                })
                .min();
            ok_shards.insert(shard, at);
        }
        if !slots.iter().any(|s| s.succeeded + s.pending >= s.required) {
            impossible.push(shard);
            if !slots
                .iter()
                .any(|s| s.succeeded + s.pending + s.canceled >= s.required)
            {
                cancel_caused = false;
            }
        }
    }

    let started_any = refs.iter().any(|(_, c)| {
        c.view.is_some_and(|v| {
            v.started_at.is_some()
                || matches!(
                    v.status,
                    Some(
                        TaskStatus::Processing
                            | TaskStatus::Succeeded
                            | TaskStatus::Failed
                            | TaskStatus::Canceled
                    )
                )
        })
    });
    let earliest_start = refs.iter().filter_map(|(_, c)| c.view?.started_at).min();
    let latest_finish = refs
        .iter()
        .filter(|(_, c)| matches!(c.state, State::Succeeded | State::Failed | State::Canceled))
        .filter_map(|(_, c)| c.view?.finished_at)
        .max();
    let enqueued_at = millis_to_nanos(task.enqueued_at);

    let (status, error, started_at, finished_at) = if let Some(body) = &task.error {
        let e = serde_json::to_value(body).unwrap_or(Value::Null);
        (TaskStatus::Failed, e, Some(enqueued_at), Some(enqueued_at))
    } else if !impossible.is_empty() {
        let owners_of_impossible: BTreeSet<&NodeId> = impossible
            .iter()
            .filter_map(|s| task.placement.get(s))
            .flatten()
            .flatten()
            .collect();
        let lost_nodes: BTreeSet<&NodeId> = owners_of_impossible
            .iter()
            .copied()
            .filter(|n| {
                let mine: Vec<_> = refs.iter().filter(|(r, _)| r.node == **n).collect();
                mine.is_empty() || mine.iter().any(|(_, c)| c.state == State::Lost)
            })
            .collect();
        let mut finish = latest_finish;
        if !lost_nodes.is_empty() {
            let l = millis_to_nanos(lost_at);
            finish = Some(finish.map_or(l, |f| f.max(l)));
        }
        if cancel_caused {
            (TaskStatus::Canceled, Value::Null, earliest_start, finish)
        } else {
            let failed = refs
                .iter()
                .filter(|(r, c)| c.state == State::Failed && owners_of_impossible.contains(&r.node))
                .min_by(|a, b| a.0.node.cmp(&b.0.node));
            let e = match failed {
                Some((r, c)) => node_error(&r.node, c.view),
                None => lost_error(&impossible, &lost_nodes).to_json(),
            };
            (TaskStatus::Failed, e, earliest_start, finish)
        }
    } else if all_ok {
        let reached_at = ok_shards.values().flatten().max().copied();
        let finish = reached_at.or(latest_finish).or(earliest_start);
        (TaskStatus::Succeeded, Value::Null, earliest_start, finish)
    } else if started_any {
        (TaskStatus::Processing, Value::Null, earliest_start, None)
    } else {
        (TaskStatus::Enqueued, Value::Null, None, None)
    };

    let details = task
        .details
        .as_ref()
        .map(|d| fill_details(d, status, task, &refs));
    let canceled_by = if status == TaskStatus::Canceled {
        task.canceled_by
    } else {
        None
    };
    let batch_uid = (status != TaskStatus::Enqueued).then_some(task.uid);
    let duration = match (started_at, finished_at) {
        (Some(s), Some(f)) => format_duration(f - s),
        _ => None,
    };
    let pending_replicas = refs
        .iter()
        .filter(|(_, c)| c.state != State::Succeeded)
        .count();

    let opt_time =
        |t: Option<UnixNanos>| t.map_or(Value::Null, |t| Value::String(format_rfc3339(t)));
    let mut m = Map::new();
    m.insert("uid".into(), Value::from(task.uid));
    m.insert(
        "batchUid".into(),
        batch_uid.map_or(Value::Null, Value::from),
    );
    m.insert(
        "indexUid".into(),
        task.index_uid.clone().map_or(Value::Null, Value::String),
    );
    m.insert("status".into(), Value::from(status.as_str()));
    m.insert("type".into(), Value::from(task.task_type.as_str()));
    m.insert(
        "canceledBy".into(),
        canceled_by.map_or(Value::Null, Value::from),
    );
    if let Some(d) = details {
        m.insert("details".into(), Value::Object(d));
    }
    m.insert("error".into(), error);
    m.insert(
        "duration".into(),
        duration.map_or(Value::Null, Value::String),
    );
    m.insert(
        "enqueuedAt".into(),
        Value::String(format_rfc3339(enqueued_at)),
    );
    m.insert("startedAt".into(), opt_time(started_at));
    m.insert("finishedAt".into(), opt_time(finished_at));

    TaskView {
        uid: task.uid,
        batch_uid,
        index_uid: task.index_uid.clone(),
        status,
        task_type: task.task_type,
        canceled_by,
        enqueued_at,
        started_at,
        finished_at,
        miroir_pending_replicas: pending_replicas,
        meili: Value::Object(m),
    }
}

fn node_error(node: &NodeId, view: Option<&NodeTaskView>) -> Value {
    view.and_then(|v| v.error.as_ref())
        .and_then(|e| MeiliError::from_node_body(400, e))
        .unwrap_or_else(|| {
            MeiliError::bad_node_response(node.as_str(), "a failed task without an error object")
        })
        .to_json()
}

/// The error of a task whose quorum became impossible because nodes stopped answering about it.
fn lost_error(shards: &[ShardId], nodes: &BTreeSet<&NodeId>) -> MeiliError {
    let names = nodes
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ");
    MeiliError::new(
        503,
        "miroir_no_quorum",
        ErrorType::System,
        format!(
            "The task could not reach quorum in any replica group for shard(s) {}: node(s) {} stopped answering about it.",
            join_u32(shards),
            if names.is_empty() { "-".to_string() } else { names }
        ),
    )
}

fn fill_details(
    record: &Map<String, Value>,
    status: TaskStatus,
    task: &MiroirTask,
    refs: &[(&NodeTaskRef, Classified)],
) -> Map<String, Value> {
    let mut d = record.clone();
    for key in RESULT_KEYS {
        let Some(current) = d.get(key).cloned() else {
            continue;
        };
        let value = match status {
            TaskStatus::Failed | TaskStatus::Canceled => Value::from(0u64),
            TaskStatus::Succeeded if current.is_null() => {
                if key == "indexedDocuments" {
                    record
                        .get("receivedDocuments")
                        .cloned()
                        .unwrap_or(Value::Null)
                } else {
                    group_count(key, task, refs)
                }
            }
            _ => current,
        };
        d.insert(key.to_string(), value);
    }
    d
}

/// Sum of `key` over one group's succeeded node tasks, divided by the group's RF.
fn group_count(key: &str, task: &MiroirTask, refs: &[(&NodeTaskRef, Classified)]) -> Value {
    let groups: BTreeSet<GroupId> = refs.iter().map(|(r, _)| r.group).collect();
    let succeeded_in = |g: GroupId| {
        refs.iter()
            .filter(|(r, c)| r.group == g && c.state == State::Succeeded)
            .count()
    };
    let all_in = |g: GroupId| refs.iter().filter(|(r, _)| r.group == g).count();
    let chosen = groups
        .iter()
        .copied()
        .find(|&g| succeeded_in(g) == all_in(g))
        .or_else(|| {
            groups
                .iter()
                .copied()
                .max_by_key(|&g| (succeeded_in(g), std::cmp::Reverse(g)))
        });
    let Some(g) = chosen else {
        return Value::Null;
    };
    let rf = task
        .placement
        .values()
        .filter_map(|groups| groups.get(g as usize))
        .map(Vec::len)
        .max()
        .unwrap_or(0) as u64;
    let counts: Vec<u64> = refs
        .iter()
        .filter(|(r, c)| r.group == g && c.state == State::Succeeded)
        .filter_map(|(_, c)| c.view?.details.get(key)?.as_u64())
        .collect();
    if rf == 0 || counts.is_empty() {
        return Value::Null;
    }
    Value::from(counts.iter().fold(0u64, |a, c| a.saturating_add(*c)) / rf)
}
