//! Batches (`GET /batches`, `GET /batches/{uid}`): Miroir's view of them.
//!
//! Miroir has no batches of its own and the nodes' batches are per node (their uids differ from node to
//! node and mix shards), so Miroir shows each of its tasks as its own batch: the batch uid is the task uid,
//! the batch exists once the task left `enqueued` (exactly when the task object shows `batchUid`), and it
//! holds that one task. [`batch_view`] is a pure function of the aggregated [`TaskView`].
//!
//! Output: Meilisearch's batch object, in its key order: `uid, progress, details, stats {totalNbTasks,
//! status, types, indexUids}, duration, startedAt, finishedAt, batchStrategy`. `progress` is always `null`
//! (Miroir does not follow the nodes' progress steps); `details` are the task's; `batchStrategy` says the
//! batch holds one task.
//!
//! Invariants: a batch is shown iff its task has a `batchUid`; listing filters and paginates exactly like
//! `GET /tasks` (the same query parameters, over the batch's single task), newest first.

use super::filter::TaskFilter;
use super::TaskView;
use crate::error::MeiliError;
use serde_json::{json, Map, Value};

/// The batch of a task, or `None` while the task is enqueued (no batch yet).
pub fn batch_view(task: &TaskView) -> Option<Value> {
    let uid = task.batch_uid?;
    let m = task.meili.as_object();
    let field = |k: &str| m.and_then(|m| m.get(k)).cloned().unwrap_or(Value::Null);
    let details = match field("details") {
        Value::Object(d) => Value::Object(d),
        _ => Value::Object(Map::new()),
    };
    let mut index_uids = Map::new();
    if let Some(i) = &task.index_uid {
        index_uids.insert(i.clone(), json!(1));
    }
    let mut out = Map::new();
    out.insert("uid".into(), json!(uid));
    out.insert("progress".into(), Value::Null);
    out.insert("details".into(), details);
    out.insert(
        "stats".into(),
        json!({
            "totalNbTasks": 1,
            "status": {task.status.as_str(): 1},
            "types": {task.task_type.as_str(): 1},
            "indexUids": index_uids,
        }),
    );
    out.insert("duration".into(), field("duration"));
    out.insert("startedAt".into(), field("startedAt"));
    out.insert("finishedAt".into(), field("finishedAt"));
    out.insert(
        "batchStrategy".into(),
        Value::String(format!(
            "created batch containing only task with id {} of type `{}` that cannot be batched with any other task.",
            task.uid,
            task.task_type.as_str()
        )),
    );
    Some(Value::Object(out))
}

/// `404 batch_not_found`: `Batch `{uid}` not found.`
pub fn batch_not_found(uid: u64) -> MeiliError {
    MeiliError::invalid(404, "batch_not_found", format!("Batch `{uid}` not found."))
}

/// `GET /batches/{uid}` over the tasks: the batch, or `batch_not_found`.
pub fn get_batch<'a>(
    uid: u64,
    tasks: impl IntoIterator<Item = &'a TaskView>,
) -> Result<Value, MeiliError> {
    tasks
        .into_iter()
        .find(|t| t.batch_uid == Some(uid))
        .and_then(batch_view)
        .ok_or_else(|| batch_not_found(uid))
}

/// `GET /batches`: `{results, total, limit, from, next}` over the tasks' batches, filtered and paginated
/// as `GET /tasks` is.
pub fn list_batches<'a>(
    filter: &TaskFilter,
    tasks: impl IntoIterator<Item = &'a TaskView>,
) -> Value {
    let batches: Vec<TaskView> = tasks
        .into_iter()
        .filter_map(|t| {
            batch_view(t).map(|b| TaskView {
                meili: b,
                ..t.clone()
            })
        })
        .collect();
    filter.paginate(batches.iter())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tasks::{TaskStatus, TaskType};

    fn view(uid: u64, status: TaskStatus, index: Option<&str>) -> TaskView {
        let batch_uid = (status != TaskStatus::Enqueued).then_some(uid);
        TaskView {
            uid,
            batch_uid,
            index_uid: index.map(str::to_string),
            status,
            task_type: TaskType::DocumentAdditionOrUpdate,
            canceled_by: None,
            enqueued_at: 0,
            started_at: None,
            finished_at: None,
            miroir_pending_replicas: 0,
            meili: json!({
                "uid": uid, "batchUid": batch_uid, "indexUid": index, "status": status.as_str(),
                "type": "documentAdditionOrUpdate", "canceledBy": null,
                "details": {"receivedDocuments": 3, "indexedDocuments": 3}, "error": null,
                "duration": "PT1S", "enqueuedAt": "2026-01-01T00:00:00Z",
                "startedAt": "2026-01-01T00:00:01Z", "finishedAt": "2026-01-01T00:00:02Z",
            }),
        }
    }

    #[test]
    fn one_task_one_batch() {
        let b = batch_view(&view(7, TaskStatus::Succeeded, Some("movies"))).unwrap();
        let keys: Vec<&str> = b.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "uid",
                "progress",
                "details",
                "stats",
                "duration",
                "startedAt",
                "finishedAt",
                "batchStrategy"
            ]
        );
        assert_eq!(b["uid"], 7);
        assert_eq!(b["progress"], Value::Null);
        assert_eq!(b["details"]["indexedDocuments"], 3);
        assert_eq!(
            b["stats"],
            json!({"totalNbTasks": 1, "status": {"succeeded": 1}, "types": {"documentAdditionOrUpdate": 1}, "indexUids": {"movies": 1}})
        );
        assert_eq!(b["duration"], "PT1S");
        assert!(b["batchStrategy"]
            .as_str()
            .unwrap()
            .contains("task with id 7"));
        let no_index = batch_view(&view(8, TaskStatus::Failed, None)).unwrap();
        assert_eq!(no_index["stats"]["indexUids"], json!({}));
        assert!(batch_view(&view(9, TaskStatus::Enqueued, None)).is_none());
    }

    #[test]
    fn get_and_list() {
        let tasks = [
            view(1, TaskStatus::Succeeded, Some("a")),
            view(2, TaskStatus::Enqueued, Some("a")),
            view(3, TaskStatus::Processing, Some("b")),
        ];
        assert_eq!(get_batch(3, &tasks).unwrap()["uid"], 3);
        let e = get_batch(2, &tasks).unwrap_err();
        assert_eq!((e.status, e.code.as_str()), (404, "batch_not_found"));
        assert_eq!(e.message, "Batch `2` not found.");
        let all = TaskFilter::from_list_query(Vec::<(String, String)>::new()).unwrap();
        let r = list_batches(&all, &tasks);
        assert_eq!(r["total"], 2);
        assert_eq!(r["results"][0]["uid"], 3);
        assert_eq!(r["results"][1]["stats"]["totalNbTasks"], 1);
        let only_a = TaskFilter::from_list_query([("indexUids", "a"), ("limit", "1")]).unwrap();
        let r = list_batches(&only_a, &tasks);
        assert_eq!(
            (r["total"].clone(), r["results"][0]["uid"].clone()),
            (json!(1), json!(1))
        );
    }
}
