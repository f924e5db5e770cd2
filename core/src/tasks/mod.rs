//! Miroir tasks: the one task a client sees for a write, and the node tasks behind it.
//!
//! A client write gets a *Miroir task* with its own uid, allocated by [`TaskUidAllocator`] (integers
//! increasing by one, as in Meilisearch; the proxy persists `next`). The proxy persists the
//! [`MiroirTask`] record as JSON: what the client asked (type, index, the details known up front), the
//! placement and quorum needed to judge it, and the node tasks it spawned ([`NodeTaskRef`]).
//! When a client reads the task, [`aggregate()`] turns the node tasks' current objects into ONE
//! Meilisearch task object; [`filter`] implements `GET /tasks` filtering and pagination and the
//! validation of `POST /tasks/cancel` / `DELETE /tasks`.
//!
//! ## States of a Miroir task
//!
//! `enqueued` → `processing` → `succeeded` | `failed` | `canceled`, derived (never stored) from the
//! node tasks at read time, with these rules (`q` = the quorum required in a group for a shard):
//! - **succeeded** once every shard has a group in which at least `q` of its owners' node tasks
//!   succeeded. Node tasks still pending, failed or lost are *pending repair*: counted in
//!   [`TaskView::miroir_pending_replicas`], never shown as a failure.
//! - **failed** once some shard can no longer reach `q` succeeded node tasks in any group. The error is
//!   the first failed node task's error (node-id order) among the owners of the impossible shards, or a
//!   `miroir_no_quorum` error naming the lost nodes when lost nodes alone made quorum impossible.
//!   A record with a pre-decided error (Miroir refused the batch itself) is failed at once, with that
//!   error, like Meilisearch's 202-then-failed.
//! - **canceled** when node cancellations are what made quorum impossible (counting the canceled node
//!   tasks as pending would have left every impossible shard reachable).
//! - otherwise **processing** if any node task started or finished, else **enqueued**.
//!
//! A node task whose object is unknown (node unreachable, or no `taskUid` recorded yet) counts as
//! pending until `now >= enqueued_at + lost_after`, then as *lost*: a dead node never leaves a task
//! `processing` forever.
//!
//! Invariants (proptested in `core/tests/tasks_props.rs`): never `succeeded` unless every shard has a
//! succeeded quorum in some group; never `enqueued`/`processing` once `lost_after` has passed and no node
//! answers; the output is a pure function of its inputs.

pub mod aggregate;
pub mod batch;
pub mod filter;
pub mod time;

pub use aggregate::{aggregate, NodeTaskView, TaskView};
pub use filter::{TaskFilter, TaskQueryKind};

use crate::error::{ErrorBody, MeiliError};
use crate::quorum::{ShardOwners, WriteQuorum};
use crate::topology::{GroupId, NodeId, ShardId};
use crate::Millis;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::fmt;

/// Allocates Miroir task uids: `0, 1, 2, ...`. Pure; the proxy persists `next`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskUidAllocator {
    /// The uid the next task gets.
    pub next: u64,
}

impl TaskUidAllocator {
    /// Resumes allocation at `next`.
    pub fn new(next: u64) -> Self {
        TaskUidAllocator { next }
    }

    /// Returns the next uid and advances. Saturates at `u64::MAX` rather than wrapping.
    pub fn allocate(&mut self) -> u64 {
        let uid = self.next;
        self.next = self.next.saturating_add(1);
        uid
    }
}

/// A Meilisearch task status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum TaskStatus {
    /// Waiting: no node started it.
    Enqueued,
    /// Some node started or finished it, quorum not decided yet.
    Processing,
    /// Every shard reached quorum in some group.
    Succeeded,
    /// Some shard can no longer reach quorum.
    Failed,
    /// Cancellations made quorum impossible.
    Canceled,
}

impl TaskStatus {
    /// Every status, in Meilisearch's order.
    pub const ALL: [TaskStatus; 5] = [
        TaskStatus::Enqueued,
        TaskStatus::Processing,
        TaskStatus::Succeeded,
        TaskStatus::Failed,
        TaskStatus::Canceled,
    ];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskStatus::Enqueued => "enqueued",
            TaskStatus::Processing => "processing",
            TaskStatus::Succeeded => "succeeded",
            TaskStatus::Failed => "failed",
            TaskStatus::Canceled => "canceled",
        }
    }

    /// Parses a status name, ignoring ASCII case as Meilisearch does.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|st| st.as_str().eq_ignore_ascii_case(s))
    }

    /// True for `succeeded`, `failed` and `canceled`.
    pub fn is_finished(self) -> bool {
        matches!(
            self,
            TaskStatus::Succeeded | TaskStatus::Failed | TaskStatus::Canceled
        )
    }
}

impl fmt::Display for TaskStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A Meilisearch task type (`type` field), in Meilisearch's declaration order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum TaskType {
    /// Adding or replacing/updating documents.
    DocumentAdditionOrUpdate,
    /// Editing documents with a function.
    DocumentEdition,
    /// Deleting documents (by ids, by filter, or all).
    DocumentDeletion,
    /// Updating or resetting settings.
    SettingsUpdate,
    /// Creating an index.
    IndexCreation,
    /// Deleting an index.
    IndexDeletion,
    /// Updating an index (primary key, rename).
    IndexUpdate,
    /// Swapping indexes.
    IndexSwap,
    /// Canceling tasks.
    TaskCancelation,
    /// Deleting tasks.
    TaskDeletion,
    /// Creating a dump.
    DumpCreation,
    /// Creating a snapshot.
    SnapshotCreation,
    /// Exporting to another instance.
    Export,
    /// Upgrading the database.
    UpgradeDatabase,
    /// Compacting an index.
    IndexCompaction,
    /// A network topology change (sharded Meilisearch).
    NetworkTopologyChange,
}

impl TaskType {
    /// Every type, in Meilisearch's order (the order of its "Available types" error message).
    pub const ALL: [TaskType; 16] = [
        TaskType::DocumentAdditionOrUpdate,
        TaskType::DocumentEdition,
        TaskType::DocumentDeletion,
        TaskType::SettingsUpdate,
        TaskType::IndexCreation,
        TaskType::IndexDeletion,
        TaskType::IndexUpdate,
        TaskType::IndexSwap,
        TaskType::TaskCancelation,
        TaskType::TaskDeletion,
        TaskType::DumpCreation,
        TaskType::SnapshotCreation,
        TaskType::Export,
        TaskType::UpgradeDatabase,
        TaskType::IndexCompaction,
        TaskType::NetworkTopologyChange,
    ];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskType::DocumentAdditionOrUpdate => "documentAdditionOrUpdate",
            TaskType::DocumentEdition => "documentEdition",
            TaskType::DocumentDeletion => "documentDeletion",
            TaskType::SettingsUpdate => "settingsUpdate",
            TaskType::IndexCreation => "indexCreation",
            TaskType::IndexDeletion => "indexDeletion",
            TaskType::IndexUpdate => "indexUpdate",
            TaskType::IndexSwap => "indexSwap",
            TaskType::TaskCancelation => "taskCancelation",
            TaskType::TaskDeletion => "taskDeletion",
            TaskType::DumpCreation => "dumpCreation",
            TaskType::SnapshotCreation => "snapshotCreation",
            TaskType::Export => "export",
            TaskType::UpgradeDatabase => "upgradeDatabase",
            TaskType::IndexCompaction => "indexCompaction",
            TaskType::NetworkTopologyChange => "networkTopologyChange",
        }
    }

    /// Parses a type name, ignoring ASCII case as Meilisearch does.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|t| t.as_str().eq_ignore_ascii_case(s))
    }
}

impl fmt::Display for TaskType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One node task behind a Miroir task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeTaskRef {
    /// The node the batch went to.
    pub node: NodeId,
    /// The node's task uid; `None` while the node has not acked (it may never).
    pub task_uid: Option<u64>,
    /// The shards the node's batch covered.
    pub shards: Vec<ShardId>,
    /// The node's replica group.
    pub group: GroupId,
}

/// The node tasks of a write placed as `placement`: one per node, covering every shard the node owns
/// (ascending), in node-id order. `task_uid` gives each node's acked task uid, if any (for example from
/// [`crate::quorum::QuorumTracker::node_states`]). A node listed in several groups keeps the lowest.
pub fn node_task_refs(
    placement: &ShardOwners,
    task_uid: impl Fn(&NodeId) -> Option<u64>,
) -> Vec<NodeTaskRef> {
    let mut by_node: std::collections::BTreeMap<&NodeId, (GroupId, Vec<ShardId>)> =
        std::collections::BTreeMap::new();
    for (&shard, groups) in placement {
        for (g, owners) in groups.iter().enumerate() {
            for node in owners {
                let entry = by_node.entry(node).or_insert((g as GroupId, Vec::new()));
                entry.0 = entry.0.min(g as GroupId);
                if !entry.1.contains(&shard) {
                    entry.1.push(shard);
                }
            }
        }
    }
    by_node
        .into_iter()
        .map(|(node, (group, shards))| NodeTaskRef {
            node: node.clone(),
            task_uid: task_uid(node),
            shards,
            group,
        })
        .collect()
}

/// The persisted record of one Miroir task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MiroirTask {
    /// The Miroir task uid the client sees.
    pub uid: u64,
    /// The index the task is about (`None` for swaps, dumps, task cancelations...).
    pub index_uid: Option<String>,
    /// The Meilisearch task type.
    #[serde(rename = "type")]
    pub task_type: TaskType,
    /// When Miroir enqueued it.
    pub enqueued_at: Millis,
    /// The client-facing `details` known up front, in Meilisearch's key order (see [`details`]).
    /// Result counters (`indexedDocuments`, `deletedDocuments`, ...) are `null` here and filled by
    /// [`aggregate()`]; a non-null counter is one Miroir knows itself and is kept on success.
    pub details: Option<Map<String, Value>>,
    /// The node tasks behind it.
    pub node_tasks: Vec<NodeTaskRef>,
    /// The owners per shard per group of the write, to judge quorum.
    pub placement: ShardOwners,
    /// The write quorum in force when the task was enqueued.
    pub quorum: WriteQuorum,
    /// An error Miroir decided itself before sending anything (the task is `failed` at once).
    pub error: Option<ErrorBody>,
    /// The Miroir task that canceled this one, if any.
    pub canceled_by: Option<u64>,
}

impl MiroirTask {
    /// A record with no node task, placement, error nor cancelation yet.
    pub fn new(
        uid: u64,
        index_uid: Option<String>,
        task_type: TaskType,
        enqueued_at: Millis,
        details: Option<Map<String, Value>>,
    ) -> Self {
        MiroirTask {
            uid,
            index_uid,
            task_type,
            enqueued_at,
            details,
            node_tasks: Vec::new(),
            placement: ShardOwners::new(),
            quorum: WriteQuorum::default(),
            error: None,
            canceled_by: None,
        }
    }

    /// Marks the task as failed by Miroir before anything was sent (e.g. an invalid document id).
    pub fn with_error(mut self, error: &MeiliError) -> Self {
        self.error = Some(error.body());
        self
    }

    /// The summarized task a write answers with (HTTP 202):
    /// `{taskUid, indexUid, status: "enqueued", type, enqueuedAt}`.
    pub fn summarized(&self) -> Value {
        let mut m = Map::new();
        m.insert("taskUid".into(), Value::from(self.uid));
        m.insert(
            "indexUid".into(),
            self.index_uid.clone().map_or(Value::Null, Value::String),
        );
        m.insert("status".into(), Value::from(TaskStatus::Enqueued.as_str()));
        m.insert("type".into(), Value::from(self.task_type.as_str()));
        m.insert(
            "enqueuedAt".into(),
            Value::String(time::format_rfc3339(time::millis_to_nanos(
                self.enqueued_at,
            ))),
        );
        Value::Object(m)
    }
}

/// Builders for the up-front `details` of each task type, with Meilisearch's key order
/// (`receivedDocuments, indexedDocuments, editedDocuments, primaryKey, providedIds, deletedDocuments,
/// matchedTasks, canceledTasks, deletedTasks, originalFilter, dumpUid, context, function, <settings>,
/// swaps`). Result counters start `null`.
pub mod details {
    use serde_json::{Map, Value};

    /// The keys [`super::aggregate()`] fills from node results.
    pub const RESULT_KEYS: [&str; 5] = [
        "indexedDocuments",
        "editedDocuments",
        "deletedDocuments",
        "canceledTasks",
        "deletedTasks",
    ];

    fn map(pairs: Vec<(&str, Value)>) -> Map<String, Value> {
        pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
    }

    /// `documentAdditionOrUpdate`: `{receivedDocuments, indexedDocuments}`.
    pub fn document_addition(received_documents: u64) -> Map<String, Value> {
        map(vec![
            ("receivedDocuments", Value::from(received_documents)),
            ("indexedDocuments", Value::Null),
        ])
    }

    /// `documentDeletion` by ids: `{providedIds, deletedDocuments, originalFilter: null}`.
    pub fn document_deletion(provided_ids: u64) -> Map<String, Value> {
        map(vec![
            ("providedIds", Value::from(provided_ids)),
            ("deletedDocuments", Value::Null),
            ("originalFilter", Value::Null),
        ])
    }

    /// `documentDeletion` by filter: `{providedIds: 0, deletedDocuments, originalFilter}` where
    /// `originalFilter` is the client's filter serialized as JSON (`"\"year < 1955\""`).
    pub fn document_deletion_by_filter(filter: &Value) -> Map<String, Value> {
        map(vec![
            ("providedIds", Value::from(0u64)),
            ("deletedDocuments", Value::Null),
            ("originalFilter", Value::String(filter.to_string())),
        ])
    }

    /// `documentDeletion` of every document, and `indexDeletion`: `{deletedDocuments}`.
    pub fn deleted_documents() -> Map<String, Value> {
        map(vec![("deletedDocuments", Value::Null)])
    }

    /// `documentEdition`: `{editedDocuments, deletedDocuments, originalFilter, context, function}`.
    pub fn document_edition(
        original_filter: Option<&Value>,
        context: Option<Value>,
        function: &str,
    ) -> Map<String, Value> {
        map(vec![
            ("editedDocuments", Value::Null),
            ("deletedDocuments", Value::Null),
            (
                "originalFilter",
                original_filter.map_or(Value::Null, |f| Value::String(f.to_string())),
            ),
            ("context", context.unwrap_or(Value::Null)),
            ("function", Value::from(function)),
        ])
    }

    /// `indexCreation` / `indexUpdate`: `{primaryKey}`.
    pub fn index_info(primary_key: Option<&str>) -> Map<String, Value> {
        map(vec![(
            "primaryKey",
            primary_key.map_or(Value::Null, Value::from),
        )])
    }

    /// `settingsUpdate`: the settings sent, flattened.
    pub fn settings(settings: &Map<String, Value>) -> Map<String, Value> {
        settings.clone()
    }

    /// `indexSwap`: `{swaps}`.
    pub fn swaps(swaps: Value) -> Map<String, Value> {
        map(vec![("swaps", swaps)])
    }

    /// `taskCancelation`: `{matchedTasks, canceledTasks, originalFilter}` (`originalFilter` is the query
    /// string, `?uids=1`).
    pub fn task_cancelation(matched_tasks: u64, original_filter: &str) -> Map<String, Value> {
        map(vec![
            ("matchedTasks", Value::from(matched_tasks)),
            ("canceledTasks", Value::Null),
            ("originalFilter", Value::from(original_filter)),
        ])
    }

    /// `taskDeletion`: `{matchedTasks, deletedTasks, originalFilter}`.
    pub fn task_deletion(matched_tasks: u64, original_filter: &str) -> Map<String, Value> {
        map(vec![
            ("matchedTasks", Value::from(matched_tasks)),
            ("deletedTasks", Value::Null),
            ("originalFilter", Value::from(original_filter)),
        ])
    }

    /// `dumpCreation`: `{dumpUid}`.
    pub fn dump(dump_uid: Option<&str>) -> Map<String, Value> {
        map(vec![("dumpUid", dump_uid.map_or(Value::Null, Value::from))])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn node_task_refs_group_shards_per_node() {
        let n = NodeId::new;
        let mut p = ShardOwners::new();
        p.insert(3, vec![vec![n("a"), n("b")], vec![n("c")]]);
        p.insert(1, vec![vec![n("b")], vec![n("c")]]);
        let refs = node_task_refs(&p, |node| (node.as_str() != "b").then_some(5));
        assert_eq!(
            refs,
            vec![
                NodeTaskRef {
                    node: n("a"),
                    task_uid: Some(5),
                    shards: vec![3],
                    group: 0
                },
                NodeTaskRef {
                    node: n("b"),
                    task_uid: None,
                    shards: vec![1, 3],
                    group: 0
                },
                NodeTaskRef {
                    node: n("c"),
                    task_uid: Some(5),
                    shards: vec![1, 3],
                    group: 1
                },
            ]
        );
    }

    #[test]
    fn allocator_counts_up_and_saturates() {
        let mut a = TaskUidAllocator::default();
        assert_eq!(a.allocate(), 0);
        assert_eq!(a.allocate(), 1);
        assert_eq!(a.next, 2);
        let mut b = TaskUidAllocator::new(u64::MAX);
        assert_eq!(b.allocate(), u64::MAX);
        assert_eq!(b.next, u64::MAX);
        assert_eq!(
            serde_json::to_value(TaskUidAllocator::new(7)).unwrap(),
            json!({"next": 7})
        );
    }

    #[test]
    fn names_round_trip() {
        for s in TaskStatus::ALL {
            assert_eq!(TaskStatus::parse(s.as_str()), Some(s));
            assert_eq!(serde_json::to_value(s).unwrap(), json!(s.as_str()));
        }
        for t in TaskType::ALL {
            assert_eq!(TaskType::parse(t.as_str()), Some(t));
            assert_eq!(serde_json::to_value(t).unwrap(), json!(t.to_string()));
        }
        assert_eq!(TaskStatus::parse("SUCCEEDED"), Some(TaskStatus::Succeeded));
        assert_eq!(
            TaskType::parse("documentadditionorupdate"),
            Some(TaskType::DocumentAdditionOrUpdate)
        );
        assert_eq!(TaskStatus::parse("finished"), None);
        assert_eq!(TaskType::parse("doggo"), None);
        assert!(TaskStatus::Canceled.is_finished());
        assert!(!TaskStatus::Processing.is_finished());
    }

    #[test]
    fn summarized_shape_matches_meilisearch() {
        let t = MiroirTask::new(
            3,
            Some("movies".into()),
            TaskType::DocumentAdditionOrUpdate,
            1_795_770_981_965,
            Some(details::document_addition(1)),
        );
        let s = t.summarized();
        assert_eq!(
            serde_json::to_string(&s).unwrap(),
            r#"{"taskUid":3,"indexUid":"movies","status":"enqueued","type":"documentAdditionOrUpdate","enqueuedAt":"2026-11-27T09:16:21.965Z"}"#
        );
        let swap = MiroirTask::new(27, None, TaskType::IndexSwap, 0, None);
        assert_eq!(swap.summarized()["indexUid"], Value::Null);
    }

    #[test]
    fn record_round_trips_as_json() {
        let mut t = MiroirTask::new(
            1,
            Some("movies".into()),
            TaskType::DocumentDeletion,
            5,
            Some(details::document_deletion_by_filter(&json!("year < 1955"))),
        )
        .with_error(&MeiliError::invalid(400, "invalid_document_id", "bad"));
        t.node_tasks.push(NodeTaskRef {
            node: NodeId::new("a"),
            task_uid: Some(4),
            shards: vec![0, 2],
            group: 0,
        });
        t.placement.insert(0, vec![vec![NodeId::new("a")]]);
        t.canceled_by = Some(9);
        let v = serde_json::to_value(&t).unwrap();
        assert_eq!(v["type"], json!("documentDeletion"));
        assert_eq!(v["details"]["originalFilter"], json!("\"year < 1955\""));
        assert_eq!(v["nodeTasks"][0]["taskUid"], json!(4));
        let back: MiroirTask = serde_json::from_value(v).unwrap();
        assert_eq!(back, t);
    }

    #[test]
    fn details_builders_use_meilisearch_order() {
        let keys = |m: Map<String, Value>| m.keys().cloned().collect::<Vec<_>>();
        assert_eq!(
            keys(details::document_deletion(3)),
            ["providedIds", "deletedDocuments", "originalFilter"]
        );
        assert_eq!(
            keys(details::document_edition(None, None, "doc.x = 1")),
            [
                "editedDocuments",
                "deletedDocuments",
                "originalFilter",
                "context",
                "function"
            ]
        );
        assert_eq!(
            keys(details::task_cancelation(2, "?uids=1")),
            ["matchedTasks", "canceledTasks", "originalFilter"]
        );
        assert_eq!(
            keys(details::task_deletion(2, "?uids=1")),
            ["matchedTasks", "deletedTasks", "originalFilter"]
        );
        assert_eq!(details::index_info(Some("id"))["primaryKey"], json!("id"));
        assert_eq!(details::index_info(None)["primaryKey"], Value::Null);
        assert_eq!(details::dump(None)["dumpUid"], Value::Null);
        assert_eq!(keys(details::deleted_documents()), ["deletedDocuments"]);
        let s: Map<String, Value> =
            serde_json::from_value(json!({"distinctAttribute": "director"})).unwrap();
        assert_eq!(details::settings(&s), s);
        assert_eq!(
            details::swaps(json!([{"indexes": ["a", "b"], "rename": false}]))["swaps"][0]["rename"],
            json!(false)
        );
    }
}
