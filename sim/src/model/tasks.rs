//! The asynchronous task queue of one node.
//!
//! States of a task: `enqueued` → `processing` → `succeeded` | `failed`, or `enqueued` → `canceled`
//! (by a `taskCancelation` task). The model processes one task per batch, synchronously inside
//! [`Node::process_next`](super::Node::process_next), so `processing` is only observable through
//! [`NodeState::processing`] in between. Transitions: a write request appends an `enqueued` task;
//! [`Node::process_next`](super::Node::process_next) picks the next task
//! (task cancelations first, then task deletions, then the lowest uid, as Meilisearch's scheduler
//! prioritises them), applies it to the indexes and records its outcome.
//! Invariants: uids are dense and increasing; a finished task never changes again (except its
//! `indexUid` on an index swap, as Meilisearch rewrites history); document and settings changes are
//! visible only once their task has succeeded; the queue and the indexes survive a restart.

use std::collections::BTreeMap;

use miroir_core::{MeiliError, Millis};
use serde_json::{json, Map, Value};

use super::filter;
use super::index::Index;
use super::payload::Document;
use super::settings::{snake, SettingsPatch};
use super::time::{iso_duration, rfc3339};

/// The status of a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskStatus {
    /// Waiting.
    Enqueued,
    /// Being applied.
    Processing,
    /// Applied.
    Succeeded,
    /// Rejected with an error.
    Failed,
    /// Canceled before it ran.
    Canceled,
}

impl TaskStatus {
    /// The JSON name.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskStatus::Enqueued => "enqueued",
            TaskStatus::Processing => "processing",
            TaskStatus::Succeeded => "succeeded",
            TaskStatus::Failed => "failed",
            TaskStatus::Canceled => "canceled",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "enqueued" => TaskStatus::Enqueued,
            "processing" => TaskStatus::Processing,
            "succeeded" => TaskStatus::Succeeded,
            "failed" => TaskStatus::Failed,
            "canceled" => TaskStatus::Canceled,
            _ => return None,
        })
    }

    /// Whether the task is finished.
    pub fn is_finished(self) -> bool {
        matches!(
            self,
            TaskStatus::Succeeded | TaskStatus::Failed | TaskStatus::Canceled
        )
    }
}

/// What a task does.
#[derive(Debug, Clone, PartialEq)]
pub enum TaskKind {
    /// Create an index.
    IndexCreation {
        /// Primary key.
        primary_key: Option<String>,
    },
    /// Change an index's primary key.
    IndexUpdate {
        /// Primary key.
        primary_key: Option<String>,
    },
    /// Delete an index.
    IndexDeletion,
    /// Add (replace) or update (merge) documents.
    DocumentAdditionOrUpdate {
        /// Parsed documents.
        documents: Vec<Document>,
        /// `primaryKey` query parameter.
        primary_key: Option<String>,
        /// PUT (merge) rather than POST (replace).
        merge: bool,
    },
    /// Delete documents by id.
    DocumentDeletion {
        /// Canonical external ids.
        ids: Vec<String>,
    },
    /// Delete documents matching a filter.
    DocumentDeletionByFilter {
        /// The filter as given.
        filter: Value,
    },
    /// Delete all documents.
    DocumentClear,
    /// Update settings.
    SettingsUpdate {
        /// The validated patch.
        patch: SettingsPatch,
    },
    /// Swap pairs of indexes.
    IndexSwap {
        /// Pairs, and whether the first is renamed to the second instead of swapped.
        swaps: Vec<(String, String, bool)>,
    },
    /// Cancel tasks.
    TaskCancelation {
        /// The query string that selected them.
        query: String,
        /// Matched uids.
        tasks: Vec<u32>,
    },
    /// Delete finished tasks.
    TaskDeletion {
        /// The query string that selected them.
        query: String,
        /// Matched uids.
        tasks: Vec<u32>,
    },
    /// `POST /dumps`. The model writes no file: the task only records the dump uid it would have written.
    DumpCreation,
    /// `POST /snapshots`. The model writes no file: the task succeeds without doing anything.
    SnapshotCreation,
}

impl TaskKind {
    /// The `type` of the task.
    pub fn type_name(&self) -> &'static str {
        match self {
            TaskKind::IndexCreation { .. } => "indexCreation",
            TaskKind::IndexUpdate { .. } => "indexUpdate",
            TaskKind::IndexDeletion => "indexDeletion",
            TaskKind::DocumentAdditionOrUpdate { .. } => "documentAdditionOrUpdate",
            TaskKind::DocumentDeletion { .. }
            | TaskKind::DocumentDeletionByFilter { .. }
            | TaskKind::DocumentClear => "documentDeletion",
            TaskKind::SettingsUpdate { .. } => "settingsUpdate",
            TaskKind::IndexSwap { .. } => "indexSwap",
            TaskKind::TaskCancelation { .. } => "taskCancelation",
            TaskKind::TaskDeletion { .. } => "taskDeletion",
            TaskKind::DumpCreation => "dumpCreation",
            TaskKind::SnapshotCreation => "snapshotCreation",
        }
    }

    /// The details of a task not yet run.
    fn enqueued_details(&self) -> Value {
        match self {
            TaskKind::IndexCreation { primary_key } | TaskKind::IndexUpdate { primary_key } => {
                json!({"primaryKey": primary_key})
            }
            TaskKind::IndexDeletion | TaskKind::DocumentClear => json!({"deletedDocuments": null}),
            TaskKind::DocumentAdditionOrUpdate { documents, .. } => {
                json!({"receivedDocuments": documents.len(), "indexedDocuments": null})
            }
            TaskKind::DocumentDeletion { ids } => {
                json!({"providedIds": ids.len(), "deletedDocuments": null, "originalFilter": null})
            }
            TaskKind::DocumentDeletionByFilter { filter } => {
                json!({"providedIds": 0, "deletedDocuments": null, "originalFilter": filter.to_string()})
            }
            TaskKind::SettingsUpdate { patch } => Value::Object(patch.clone()),
            TaskKind::IndexSwap { swaps } => json!({
                "swaps": swaps.iter().map(|(a, b, r)| json!({"indexes": [a, b], "rename": r})).collect::<Vec<_>>()
            }),
            TaskKind::TaskCancelation { query, tasks } => {
                json!({"matchedTasks": tasks.len(), "canceledTasks": null, "originalFilter": query})
            }
            TaskKind::TaskDeletion { query, tasks } => {
                json!({"matchedTasks": tasks.len(), "deletedTasks": null, "originalFilter": query})
            }
            TaskKind::DumpCreation => json!({"dumpUid": null}),
            TaskKind::SnapshotCreation => Value::Null,
        }
    }

    /// The key of the details that holds the outcome count, if any.
    fn count_key(&self) -> Option<&'static str> {
        match self {
            TaskKind::IndexDeletion
            | TaskKind::DocumentClear
            | TaskKind::DocumentDeletion { .. }
            | TaskKind::DocumentDeletionByFilter { .. } => Some("deletedDocuments"),
            TaskKind::DocumentAdditionOrUpdate { .. } => Some("indexedDocuments"),
            TaskKind::TaskCancelation { .. } => Some("canceledTasks"),
            TaskKind::TaskDeletion { .. } => Some("deletedTasks"),
            _ => None,
        }
    }
}

/// One task.
#[derive(Debug, Clone, PartialEq)]
pub struct Task {
    /// Uid.
    pub uid: u32,
    /// Batch uid once processed.
    pub batch_uid: Option<u32>,
    /// Target index.
    pub index_uid: Option<String>,
    /// Status.
    pub status: TaskStatus,
    /// What it does.
    pub kind: TaskKind,
    /// Current details.
    pub details: Value,
    /// Error when failed.
    pub error: Option<MeiliError>,
    /// Uid of the cancelation task that canceled it.
    pub canceled_by: Option<u32>,
    /// Enqueue time.
    pub enqueued_at: Millis,
    /// Start time.
    pub started_at: Option<Millis>,
    /// End time.
    pub finished_at: Option<Millis>,
}

impl Task {
    /// The task object of `GET /tasks/{uid}`.
    pub fn to_json(&self) -> Value {
        let mut v = json!({
            "uid": self.uid,
            "batchUid": self.batch_uid,
            "indexUid": self.index_uid,
            "status": self.status.as_str(),
            "type": self.kind.type_name(),
            "canceledBy": self.canceled_by,
            "details": self.details,
            "error": self.error.as_ref().map(MeiliError::to_json),
            "duration": match (self.started_at, self.finished_at) {
                (Some(s), Some(f)) => Value::String(iso_duration(f.saturating_sub(s))),
                _ => Value::Null,
            },
            "enqueuedAt": rfc3339(self.enqueued_at),
            "startedAt": self.started_at.map(rfc3339),
            "finishedAt": self.finished_at.map(rfc3339),
        });
        // Meilisearch omits `details` for a task that has none (`snapshotCreation`).
        if self.details.is_null() {
            if let Some(m) = v.as_object_mut() {
                m.remove("details");
            }
        }
        v
    }

    /// The 202 body returned when the task is enqueued.
    pub fn summary(&self) -> Value {
        json!({
            "taskUid": self.uid,
            "indexUid": self.index_uid,
            "status": self.status.as_str(),
            "type": self.kind.type_name(),
            "enqueuedAt": rfc3339(self.enqueued_at),
        })
    }
}

/// Everything that survives a crash: indexes, the task queue and the counters.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NodeState {
    /// Indexes by uid.
    pub indexes: BTreeMap<String, Index>,
    /// Tasks by uid.
    pub tasks: BTreeMap<u32, Task>,
    /// Next task uid.
    pub next_task_uid: u32,
    /// Next batch uid.
    pub next_batch_uid: u32,
    /// The task currently processing, if any (only between [`NodeState::start_next`] and
    /// [`NodeState::finish`]).
    pub processing: Option<u32>,
    /// The API keys, in creation order.
    pub keys: Vec<super::keys::ApiKey>,
}

impl NodeState {
    /// Appends an enqueued task and returns it.
    pub fn enqueue(&mut self, index_uid: Option<String>, kind: TaskKind, now: Millis) -> &Task {
        let uid = self.next_task_uid;
        self.next_task_uid += 1;
        let details = kind.enqueued_details();
        self.tasks.insert(
            uid,
            Task {
                uid,
                batch_uid: None,
                index_uid,
                status: TaskStatus::Enqueued,
                kind,
                details,
                error: None,
                canceled_by: None,
                enqueued_at: now,
                started_at: None,
                finished_at: None,
            },
        );
        &self.tasks[&uid]
    }

    /// Whether some task is waiting.
    pub fn has_pending(&self) -> bool {
        self.tasks
            .values()
            .any(|t| t.status == TaskStatus::Enqueued)
    }

    /// Whether the index has a task waiting or processing.
    pub fn is_indexing(&self, uid: &str) -> bool {
        self.tasks.values().any(|t| {
            matches!(t.status, TaskStatus::Enqueued | TaskStatus::Processing)
                && t.index_uid.as_deref() == Some(uid)
        })
    }

    fn pick_next(&self) -> Option<u32> {
        let enqueued = || {
            self.tasks
                .values()
                .filter(|t| t.status == TaskStatus::Enqueued)
        };
        enqueued()
            .find(|t| matches!(t.kind, TaskKind::TaskCancelation { .. }))
            .or_else(|| enqueued().find(|t| matches!(t.kind, TaskKind::TaskDeletion { .. })))
            .or_else(|| enqueued().next())
            .map(|t| t.uid)
    }

    /// Moves the next task to `processing` and returns its uid. Does nothing if a task is already
    /// processing or none is enqueued.
    pub fn start_next(&mut self, now: Millis) -> Option<u32> {
        if self.processing.is_some() {
            return None;
        }
        let uid = self.pick_next()?;
        let batch = self.next_batch_uid;
        self.next_batch_uid += 1;
        if let Some(t) = self.tasks.get_mut(&uid) {
            t.status = TaskStatus::Processing;
            t.started_at = Some(now);
            t.batch_uid = Some(batch);
        }
        self.processing = Some(uid);
        Some(uid)
    }

    /// Applies the processing task and records its outcome.
    ///
    /// If a `taskCancelation` naming the processing task was enqueued meanwhile, the work is aborted
    /// instead (as Meilisearch stops the running batch): the task goes back to `enqueued`, nothing is
    /// applied, and the cancelation, which runs next, cancels it.
    pub fn finish(&mut self, now: Millis) -> Option<u32> {
        let uid = self.processing.take()?;
        let cancelable = !matches!(
            self.tasks.get(&uid).map(|t| &t.kind),
            Some(TaskKind::TaskCancelation { .. })
        );
        let aborted = cancelable && self.tasks.values().any(|t| {
            t.status == TaskStatus::Enqueued
                && matches!(&t.kind, TaskKind::TaskCancelation { tasks, .. } if tasks.contains(&uid))
        });
        if aborted {
            let t = self.tasks.get_mut(&uid)?;
            t.status = TaskStatus::Enqueued;
            t.started_at = None;
            t.batch_uid = None;
            return Some(uid);
        }
        let kind = self.tasks.get(&uid)?.kind.clone();
        let index_uid = self.tasks.get(&uid)?.index_uid.clone();
        let outcome = self.apply(uid, &kind, index_uid.as_deref(), now);
        let t = self.tasks.get_mut(&uid)?;
        t.finished_at = Some(now);
        match outcome {
            Ok(count) => {
                t.status = TaskStatus::Succeeded;
                if let (Some(k), Some(c), Some(d)) =
                    (kind.count_key(), count, t.details.as_object_mut())
                {
                    d.insert(k.into(), Value::from(c));
                }
            }
            Err(e) => {
                t.status = TaskStatus::Failed;
                if let (Some(k), Some(d)) = (kind.count_key(), t.details.as_object_mut()) {
                    d.insert(k.into(), Value::from(0));
                }
                t.error = Some(e);
            }
        }
        Some(uid)
    }

    fn index_not_found(uid: &str) -> MeiliError {
        MeiliError::invalid(404, "index_not_found", format!("Index `{uid}` not found."))
    }

    fn apply(
        &mut self,
        self_uid: u32,
        kind: &TaskKind,
        index_uid: Option<&str>,
        now: Millis,
    ) -> Result<Option<u64>, MeiliError> {
        let iuid = index_uid.unwrap_or_default().to_string();
        match kind {
            TaskKind::IndexCreation { primary_key } => {
                if self.indexes.contains_key(&iuid) {
                    return Err(MeiliError::invalid(
                        409,
                        "index_already_exists",
                        format!("Index `{iuid}` already exists."),
                    ));
                }
                self.indexes
                    .insert(iuid.clone(), Index::new(&iuid, primary_key.clone(), now));
                Ok(None)
            }
            TaskKind::IndexUpdate { primary_key } => {
                let idx = self
                    .indexes
                    .get_mut(&iuid)
                    .ok_or_else(|| Self::index_not_found(&iuid))?;
                if let Some(pk) = primary_key {
                    if idx.primary_key.as_deref() != Some(pk) {
                        if !idx.docs.is_empty() {
                            return Err(MeiliError::invalid(
                                400,
                                "index_primary_key_already_exists",
                                format!(
                                    "Index `{iuid}`: Index already has a primary key: `{}`.",
                                    idx.primary_key.clone().unwrap_or_default()
                                ),
                            ));
                        }
                        idx.primary_key = Some(pk.clone());
                    }
                }
                idx.updated_at = now;
                Ok(None)
            }
            TaskKind::IndexDeletion => {
                let idx = self
                    .indexes
                    .remove(&iuid)
                    .ok_or_else(|| Self::index_not_found(&iuid))?;
                Ok(Some(idx.docs.len() as u64))
            }
            TaskKind::DocumentAdditionOrUpdate {
                documents,
                primary_key,
                merge,
            } => {
                let idx = self
                    .indexes
                    .entry(iuid.clone())
                    .or_insert_with(|| Index::new(&iuid, None, now));
                idx.add_documents(documents, primary_key.as_deref(), *merge, now)
                    .map(Some)
            }
            TaskKind::DocumentDeletion { ids } => {
                let idx = self
                    .indexes
                    .get_mut(&iuid)
                    .ok_or_else(|| Self::index_not_found(&iuid))?;
                Ok(Some(idx.delete_ids(ids, now)))
            }
            TaskKind::DocumentDeletionByFilter { filter } => {
                let idx = self
                    .indexes
                    .get_mut(&iuid)
                    .ok_or_else(|| Self::index_not_found(&iuid))?;
                let parsed = match filter::parse_value(filter) {
                    Ok(p) => p,
                    Err(filter::FilterValueError::Parse(e)) => {
                        return Err(MeiliError::invalid(
                            400,
                            "invalid_document_filter",
                            e.message,
                        ))
                    }
                    Err(filter::FilterValueError::BadType(m)) => {
                        return Err(MeiliError::invalid(400, "invalid_document_filter", m))
                    }
                };
                let Some(parsed) = parsed else {
                    return Ok(Some(0));
                };
                if let Some(nf) = parsed.first_not_filterable(&idx.settings.filterable()) {
                    return Err(idx.not_filterable_error(
                        "invalid_document_filter",
                        &nf,
                        false,
                        true,
                    ));
                }
                Ok(Some(idx.delete_matching(&parsed, now)))
            }
            TaskKind::DocumentClear => {
                let idx = self
                    .indexes
                    .get_mut(&iuid)
                    .ok_or_else(|| Self::index_not_found(&iuid))?;
                Ok(Some(idx.clear(now)))
            }
            TaskKind::SettingsUpdate { patch } => {
                let idx = self
                    .indexes
                    .entry(iuid.clone())
                    .or_insert_with(|| Index::new(&iuid, None, now));
                let mut next = idx.settings.clone();
                next.apply(patch);
                let (one, two) = next.min_word_sizes();
                if one > two || two > 255 {
                    return Err(MeiliError::invalid(400, "invalid_settings_typo_tolerance", format!("`minWordSizeForTypos` setting is invalid. `oneTypo` and `twoTypos` fields should be between `0` and `255`, and `twoTypos` should be greater or equals to `oneTypo` but found `oneTypo: {one}` and twoTypos: {two}`.")));
                }
                idx.settings = next;
                idx.updated_at = now;
                Ok(None)
            }
            TaskKind::IndexSwap { swaps } => {
                let mut missing: Vec<String> = Vec::new();
                for (a, b, rename) in swaps {
                    let must_exist: &[&String] = if *rename { &[a] } else { &[a, b] };
                    for x in must_exist {
                        if !self.indexes.contains_key(*x) && !missing.contains(*x) {
                            missing.push((*x).clone());
                        }
                    }
                }
                if !missing.is_empty() {
                    let list = missing
                        .iter()
                        .map(|m| format!("`{m}`"))
                        .collect::<Vec<_>>()
                        .join(", ");
                    let msg = if missing.len() == 1 {
                        format!("Index {list} not found.")
                    } else {
                        format!("Indexes {list} not found.")
                    };
                    return Err(MeiliError::invalid(404, "index_not_found", msg));
                }
                if let Some((_, b, _)) = swaps
                    .iter()
                    .find(|(_, b, r)| *r && self.indexes.contains_key(b))
                {
                    return Err(MeiliError::invalid(
                        409,
                        "index_already_exists",
                        format!("Index `{b}` already exists."),
                    ));
                }
                for (a, b, rename) in swaps {
                    if *rename {
                        if let Some(mut ia) = self.indexes.remove(a) {
                            ia.uid = b.clone();
                            ia.updated_at = now;
                            self.indexes.insert(b.clone(), ia);
                        }
                    } else {
                        let (Some(mut ia), Some(mut ib)) =
                            (self.indexes.remove(a), self.indexes.remove(b))
                        else {
                            continue;
                        };
                        std::mem::swap(&mut ia.uid, &mut ib.uid);
                        ia.updated_at = now;
                        ib.updated_at = now;
                        self.indexes.insert(ia.uid.clone(), ia);
                        self.indexes.insert(ib.uid.clone(), ib);
                    }
                    for t in self.tasks.values_mut() {
                        if t.uid == self_uid {
                            continue;
                        }
                        if t.index_uid.as_deref() == Some(a.as_str()) {
                            t.index_uid = Some(b.clone());
                        } else if !*rename && t.index_uid.as_deref() == Some(b.as_str()) {
                            t.index_uid = Some(a.clone());
                        }
                    }
                }
                Ok(None)
            }
            TaskKind::TaskCancelation { tasks, .. } => {
                let mut n = 0;
                for uid in tasks {
                    if let Some(t) = self.tasks.get_mut(uid) {
                        if t.status == TaskStatus::Enqueued {
                            t.status = TaskStatus::Canceled;
                            t.canceled_by = Some(self_uid);
                            t.finished_at = Some(now);
                            if let (Some(k), Some(d)) =
                                (t.kind.count_key(), t.details.as_object_mut())
                            {
                                if d.get(k).is_some_and(Value::is_null) {
                                    d.insert(k.into(), Value::from(0));
                                }
                            }
                            n += 1;
                        }
                    }
                }
                Ok(Some(n))
            }
            TaskKind::TaskDeletion { tasks, .. } => {
                let mut n = 0;
                for uid in tasks {
                    if *uid == self_uid {
                        continue;
                    }
                    if self.tasks.get(uid).is_some_and(|t| t.status.is_finished()) {
                        self.tasks.remove(uid);
                        n += 1;
                    }
                }
                Ok(Some(n))
            }
            TaskKind::DumpCreation => {
                if let Some(d) = self
                    .tasks
                    .get_mut(&self_uid)
                    .and_then(|t| t.details.as_object_mut())
                {
                    d.insert("dumpUid".into(), Value::String(dump_uid(now)));
                }
                Ok(None)
            }
            TaskKind::SnapshotCreation => Ok(None),
        }
    }
}

/// The uid Meilisearch gives a dump started at `now`: `YYYYMMDD-HHMMSSmmm` (UTC).
pub fn dump_uid(now: Millis) -> String {
    let t = rfc3339(now - now % 1000);
    let digits: String = t.chars().take(19).filter(char::is_ascii_digit).collect();
    format!("{}-{}{:03}", &digits[..8], &digits[8..], now % 1000)
}

/// All task types, in Meilisearch's order (for error messages).
pub const TASK_TYPES: &[&str] = &[
    "documentAdditionOrUpdate",
    "documentEdition",
    "documentDeletion",
    "settingsUpdate",
    "indexCreation",
    "indexDeletion",
    "indexUpdate",
    "indexSwap",
    "taskCancelation",
    "taskDeletion",
    "dumpCreation",
    "snapshotCreation",
    "export",
    "upgradeDatabase",
    "indexCompaction",
    "networkTopologyChange",
];

const FILTER_PARAMS: &[&str] = &[
    "uids",
    "batchUids",
    "indexUids",
    "statuses",
    "types",
    "canceledBy",
    "beforeEnqueuedAt",
    "afterEnqueuedAt",
    "beforeStartedAt",
    "afterStartedAt",
    "beforeFinishedAt",
    "afterFinishedAt",
];

/// A parsed task filter (`GET /tasks`, `POST /tasks/cancel`, `DELETE /tasks`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TaskQuery {
    uids: Option<Vec<u32>>,
    batch_uids: Option<Vec<u32>>,
    index_uids: Option<Vec<String>>,
    statuses: Option<Vec<TaskStatus>>,
    types: Option<Vec<String>>,
    canceled_by: Option<Vec<u32>>,
    dates: Vec<(String, Millis)>,
    /// `limit` (list only).
    pub limit: usize,
    /// `from` (list only).
    pub from: Option<u32>,
    /// `reverse` (list only).
    pub reverse: bool,
    /// Whether any filter parameter was given.
    pub has_filters: bool,
}

fn split_list(v: &str) -> Vec<String> {
    v.split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

fn parse_u32_list(name: &str, code: &str, v: &str) -> Result<Option<Vec<u32>>, MeiliError> {
    let items = split_list(v);
    if items.iter().any(|i| i == "*") {
        return Ok(None);
    }
    items
        .iter()
        .map(|i| {
            i.parse::<u32>().map_err(|_| {
                MeiliError::invalid(400, code, format!("Invalid value in parameter `{name}`: could not parse `{i}` as a positive integer"))
            })
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

/// Parses `YYYY-MM-DD` or an RFC 3339 date-time into milliseconds since the epoch.
pub fn parse_date(s: &str) -> Option<Millis> {
    let b = s.as_bytes();
    if b.len() < 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> { s.get(r)?.parse().ok() };
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) {
        return None;
    }
    let (mut h, mut mi, mut se, mut ms) = (0, 0, 0, 0);
    if b.len() > 10 {
        if !(b[10] == b'T' || b[10] == b't' || b[10] == b' ') || b.len() < 20 {
            return None;
        }
        h = num(11..13)?;
        mi = num(14..16)?;
        se = num(17..19)?;
        let rest = s.get(19..)?;
        let rest = if let Some(frac) = rest.strip_prefix('.') {
            let digits: String = frac.chars().take_while(|c| c.is_ascii_digit()).collect();
            let mut three = digits.clone();
            three.truncate(3);
            while three.len() < 3 {
                three.push('0');
            }
            ms = three.parse().ok()?;
            frac.get(digits.len()..)?
        } else {
            rest
        };
        if rest != "Z" && rest != "z" && rest != "+00:00" {
            return None;
        }
    }
    // days from civil (Howard Hinnant)
    let y2 = if mo <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let total = ((days * 86_400 + h * 3600 + mi * 60 + se) * 1000) + ms;
    u64::try_from(total).ok()
}

impl TaskQuery {
    /// Parses query parameters. `list` enables `limit`/`from`/`reverse`.
    pub fn parse(params: &[(String, String)], list: bool) -> Result<Self, MeiliError> {
        let mut q = TaskQuery {
            limit: 20,
            ..Default::default()
        };
        for (k, v) in params {
            match k.as_str() {
                "limit" if list => {
                    q.limit = v.parse().map_err(|_| MeiliError::invalid(400, "invalid_task_limit", format!("Invalid value in parameter `limit`: could not parse `{v}` as a positive integer")))?;
                }
                "from" if list => {
                    q.from = Some(v.parse().map_err(|_| MeiliError::invalid(400, "invalid_task_from", format!("Invalid value in parameter `from`: could not parse `{v}` as a positive integer")))?);
                }
                "reverse" if list => {
                    q.reverse = match v.as_str() {
                        "true" => true,
                        "false" => false,
                        _ => return Err(MeiliError::invalid(400, "invalid_task_reverse", format!("Invalid value in parameter `reverse`: could not parse `{v}` as a boolean, expected either `true` or `false`"))),
                    };
                }
                "uids" => q.uids = parse_u32_list(k, "invalid_task_uids", v)?,
                "batchUids" => q.batch_uids = parse_u32_list(k, "invalid_task_batch_uids", v)?,
                "canceledBy" => q.canceled_by = parse_u32_list(k, "invalid_task_canceled_by", v)?,
                "statuses" => {
                    let items = split_list(v);
                    if !items.iter().any(|i| i == "*") {
                        let mut out = Vec::new();
                        for i in items {
                            out.push(TaskStatus::parse(&i).ok_or_else(|| MeiliError::invalid(400, "invalid_task_statuses", format!("Invalid value in parameter `statuses`: `{i}` is not a valid task status. Available statuses are `enqueued`, `processing`, `succeeded`, `failed`, `canceled`.")))?);
                        }
                        q.statuses = Some(out);
                    }
                }
                "types" => {
                    let items = split_list(v);
                    if !items.iter().any(|i| i == "*") {
                        for i in &items {
                            if !TASK_TYPES.contains(&i.as_str()) {
                                return Err(MeiliError::invalid(400, "invalid_task_types", format!("Invalid value in parameter `types`: `{i}` is not a valid task type. Available types are {}.", TASK_TYPES.iter().map(|t| format!("`{t}`")).collect::<Vec<_>>().join(", "))));
                            }
                        }
                        q.types = Some(items);
                    }
                }
                "indexUids" => {
                    let items = split_list(v);
                    if !items.iter().any(|i| i == "*") {
                        for i in &items {
                            if !super::valid_index_uid(i) {
                                return Err(MeiliError::invalid(400, "invalid_index_uid", format!("Invalid value in parameter `indexUids`: `{i}` is not a valid index uid. Index uid can be an integer or a string containing only alphanumeric characters, hyphens (-) and underscores (_), and can not be more than 512 bytes.")));
                            }
                        }
                        q.index_uids = Some(items);
                    }
                }
                "beforeEnqueuedAt" | "afterEnqueuedAt" | "beforeStartedAt" | "afterStartedAt"
                | "beforeFinishedAt" | "afterFinishedAt" => {
                    let ms = parse_date(v).ok_or_else(|| {
                        MeiliError::invalid(400, format!("invalid_task_{}", snake(k)), format!("`{v}` is an invalid date-time. It should follow the YYYY-MM-DD or RFC 3339 date-time format."))
                    })?;
                    q.dates.push((k.clone(), ms));
                }
                other => {
                    let mut expected: Vec<&str> = Vec::new();
                    if list {
                        expected.extend(["limit", "from", "reverse"]);
                    }
                    expected.extend([
                        "batchUids",
                        "uids",
                        "canceledBy",
                        "types",
                        "statuses",
                        "indexUids",
                        "afterEnqueuedAt",
                        "beforeEnqueuedAt",
                        "afterStartedAt",
                        "beforeStartedAt",
                        "afterFinishedAt",
                        "beforeFinishedAt",
                    ]);
                    return Err(MeiliError::invalid(
                        400,
                        "bad_request",
                        format!(
                            "Unknown parameter `{other}`: expected one of {}",
                            expected
                                .iter()
                                .map(|e| format!("`{e}`"))
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    ));
                }
            }
            if FILTER_PARAMS.contains(&k.as_str()) {
                q.has_filters = true;
            }
        }
        Ok(q)
    }

    /// Whether a task passes the filters (not `limit`/`from`).
    pub fn matches(&self, t: &Task) -> bool {
        if let Some(u) = &self.uids {
            if !u.contains(&t.uid) {
                return false;
            }
        }
        if let Some(u) = &self.batch_uids {
            if !t.batch_uid.is_some_and(|b| u.contains(&b)) {
                return false;
            }
        }
        if let Some(u) = &self.canceled_by {
            if !t.canceled_by.is_some_and(|b| u.contains(&b)) {
                return false;
            }
        }
        if let Some(s) = &self.statuses {
            if !s.contains(&t.status) {
                return false;
            }
        }
        if let Some(ty) = &self.types {
            if !ty.iter().any(|x| x == t.kind.type_name()) {
                return false;
            }
        }
        if let Some(i) = &self.index_uids {
            if !t.index_uid.as_ref().is_some_and(|x| i.contains(x)) {
                return false;
            }
        }
        for (k, ms) in &self.dates {
            let field = match k.as_str() {
                "beforeEnqueuedAt" | "afterEnqueuedAt" => Some(t.enqueued_at),
                "beforeStartedAt" | "afterStartedAt" => t.started_at,
                _ => t.finished_at,
            };
            let Some(f) = field else {
                return false;
            };
            let ok = if k.starts_with("before") {
                f < *ms
            } else {
                f > *ms
            };
            if !ok {
                return false;
            }
        }
        true
    }
}

/// The body of `GET /tasks`.
pub fn list(state: &NodeState, q: &TaskQuery) -> Value {
    let mut matching: Vec<&Task> = state.tasks.values().filter(|t| q.matches(t)).collect();
    let total = matching.len();
    if q.reverse {
        matching.retain(|t| q.from.is_none_or(|f| t.uid >= f));
    } else {
        matching.reverse();
        matching.retain(|t| q.from.is_none_or(|f| t.uid <= f));
    }
    let page: Vec<Value> = matching.iter().take(q.limit).map(|t| t.to_json()).collect();
    let next = matching.get(q.limit).map(|t| t.uid);
    let from = matching.first().map(|t| t.uid);
    let mut m = Map::new();
    m.insert("results".into(), Value::Array(page));
    m.insert("total".into(), Value::from(total));
    m.insert("limit".into(), Value::from(q.limit));
    m.insert("from".into(), json!(from));
    m.insert("next".into(), json!(next));
    Value::Object(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn create(state: &mut NodeState, uid: &str, now: Millis) -> u32 {
        state
            .enqueue(
                Some(uid.into()),
                TaskKind::IndexCreation { primary_key: None },
                now,
            )
            .uid
    }

    fn run(state: &mut NodeState, now: Millis) {
        while state.start_next(now).is_some() {
            state.finish(now);
        }
    }

    #[test]
    fn lifecycle_and_errors() {
        let mut s = NodeState::default();
        let a = create(&mut s, "a", 1);
        let b = create(&mut s, "a", 2);
        assert_eq!(s.tasks[&a].status, TaskStatus::Enqueued);
        assert!(s.is_indexing("a"));
        assert_eq!(s.start_next(3), Some(a));
        assert_eq!(s.tasks[&a].status, TaskStatus::Processing);
        assert_eq!(s.start_next(3), None, "one task at a time");
        s.finish(4);
        run(&mut s, 5);
        assert_eq!(s.tasks[&a].status, TaskStatus::Succeeded);
        assert_eq!(s.tasks[&b].status, TaskStatus::Failed);
        assert_eq!(
            s.tasks[&b].error.as_ref().unwrap().code,
            "index_already_exists"
        );
        let j = s.tasks[&a].to_json();
        assert_eq!(j["duration"], json!("PT0.001S"));
        assert_eq!(j["batchUid"], json!(0));
        let d = s
            .enqueue(Some("nope".into()), TaskKind::IndexDeletion, 6)
            .uid;
        run(&mut s, 7);
        assert_eq!(s.tasks[&d].error.as_ref().unwrap().code, "index_not_found");
        assert_eq!(s.tasks[&d].details, json!({"deletedDocuments": 0}));
    }

    #[test]
    fn canceling_a_processing_task_aborts_it() {
        let mut s = NodeState::default();
        let a = create(&mut s, "a", 1);
        assert_eq!(s.start_next(2), Some(a));
        let c = s
            .enqueue(
                None,
                TaskKind::TaskCancelation {
                    query: "?uids=0".into(),
                    tasks: vec![a],
                },
                3,
            )
            .uid;
        assert_eq!(s.finish(4), Some(a));
        assert!(s.indexes.is_empty(), "aborted work is not applied");
        run(&mut s, 5);
        assert_eq!(s.tasks[&a].status, TaskStatus::Canceled);
        assert_eq!(s.tasks[&a].canceled_by, Some(c));
        assert!(s.indexes.is_empty());
    }

    #[test]
    fn invalid_typo_sizes_fail_the_task() {
        let mut s = NodeState::default();
        let patch = super::super::settings::validate_patch(
            &json!({"typoTolerance": {"minWordSizeForTypos": {"oneTypo": 10}}}),
        )
        .unwrap();
        let t = s
            .enqueue(Some("a".into()), TaskKind::SettingsUpdate { patch }, 1)
            .uid;
        run(&mut s, 2);
        let e = s.tasks[&t].error.clone().unwrap();
        assert_eq!(e.code, "invalid_settings_typo_tolerance");
        assert!(e.message.contains("`oneTypo: 10` and twoTypos: 9`"));
        assert_eq!(
            s.indexes["a"].settings.min_word_sizes(),
            (5, 9),
            "a failed update changes nothing"
        );
    }

    #[test]
    fn cancelation_runs_first_and_cancels_enqueued() {
        let mut s = NodeState::default();
        let a = create(&mut s, "a", 1);
        let c = s
            .enqueue(
                None,
                TaskKind::TaskCancelation {
                    query: "?uids=0".into(),
                    tasks: vec![a],
                },
                2,
            )
            .uid;
        run(&mut s, 3);
        assert_eq!(s.tasks[&a].status, TaskStatus::Canceled);
        assert_eq!(s.tasks[&a].canceled_by, Some(c));
        assert_eq!(s.tasks[&c].details["canceledTasks"], json!(1));
        assert!(s.indexes.is_empty());
        let d = s
            .enqueue(
                None,
                TaskKind::TaskDeletion {
                    query: "?uids=0".into(),
                    tasks: vec![a],
                },
                4,
            )
            .uid;
        run(&mut s, 5);
        assert!(!s.tasks.contains_key(&a));
        assert_eq!(s.tasks[&d].details["deletedTasks"], json!(1));
    }

    #[test]
    fn query_parsing_and_listing() {
        let mut s = NodeState::default();
        for i in 0..5 {
            create(&mut s, if i % 2 == 0 { "a" } else { "b" }, i);
        }
        run(&mut s, 10);
        let p = |q: &str| -> Vec<(String, String)> {
            q.split('&')
                .filter(|x| !x.is_empty())
                .map(|kv| {
                    let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                    (k.to_string(), v.to_string())
                })
                .collect()
        };
        let q = TaskQuery::parse(&p("indexUids=a&limit=2"), true).unwrap();
        let l = list(&s, &q);
        assert_eq!(l["total"], json!(3));
        assert_eq!(l["from"], json!(4));
        assert_eq!(l["next"], json!(0));
        assert_eq!(l["results"].as_array().unwrap().len(), 2);
        let e = TaskQuery::parse(&p("statuses=notastatus"), true).unwrap_err();
        assert_eq!(e.message, "Invalid value in parameter `statuses`: `notastatus` is not a valid task status. Available statuses are `enqueued`, `processing`, `succeeded`, `failed`, `canceled`.");
        assert_eq!(
            TaskQuery::parse(&p("types=nope"), true).unwrap_err().code,
            "invalid_task_types"
        );
        assert_eq!(
            TaskQuery::parse(&p("uids=x"), true).unwrap_err().code,
            "invalid_task_uids"
        );
        assert_eq!(
            TaskQuery::parse(&p("limit=x"), true).unwrap_err().code,
            "invalid_task_limit"
        );
        assert_eq!(
            TaskQuery::parse(&p("foo=1"), true).unwrap_err().code,
            "bad_request"
        );
        assert_eq!(
            TaskQuery::parse(&p("limit=1"), false).unwrap_err().code,
            "bad_request"
        );
        assert_eq!(
            TaskQuery::parse(&p("afterEnqueuedAt=x"), true)
                .unwrap_err()
                .code,
            "invalid_task_after_enqueued_at"
        );
        assert!(!TaskQuery::parse(&p("limit=1"), true).unwrap().has_filters);
        let q = TaskQuery::parse(&p("beforeEnqueuedAt=1970-01-01T00:00:00.003Z"), true).unwrap();
        assert_eq!(list(&s, &q)["total"], json!(3));
        let q = TaskQuery::parse(&p("reverse=true&limit=1"), true).unwrap();
        assert_eq!(list(&s, &q)["results"][0]["uid"], json!(0));
        assert_eq!(parse_date("2026-11-27"), Some(1_795_737_600_000));
        assert_eq!(parse_date("2026-13-27"), None);
        assert_eq!(parse_date("2026-11-27T00:00:0é0Z"), None);
        assert_eq!(
            parse_date("2026-11-27T00:00:00.1234Z"),
            Some(1_795_737_600_123)
        );
    }

    #[test]
    fn dumps_and_snapshots_are_tasks_that_succeed() {
        use super::super::{Method, Node, Request};
        let mut n = Node::new(None);
        let r = n.handle(Request::new(Method::Post, "/dumps"), 1_000);
        assert_eq!(
            (r.status, r.body["type"].as_str()),
            (202, Some("dumpCreation"))
        );
        assert_eq!(r.body["indexUid"], Value::Null);
        let uid = r.body["taskUid"].as_u64().unwrap();
        let s = n.handle(Request::new(Method::Post, "/snapshots"), 1_000);
        assert_eq!(s.body["type"], "snapshotCreation");
        let enqueued = n.handle(Request::get(&format!("/tasks/{uid}")), 1_000);
        assert_eq!(enqueued.body["details"], json!({"dumpUid": null}));
        n.run_until_idle(1_700_000_000_123);
        let done = n.handle(Request::get(&format!("/tasks/{uid}")), 1);
        assert_eq!(done.body["status"], "succeeded");
        assert_eq!(done.body["details"]["dumpUid"], "20231114-221320123");
        let snap = n.handle(Request::get(&format!("/tasks/{}", uid + 1)), 1);
        assert_eq!(snap.body["status"], "succeeded");
        assert!(snap.body.get("details").is_none());
        assert_eq!(dump_uid(5), "19700101-000000005");
    }
}
