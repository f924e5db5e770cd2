//! `GET /tasks` filter parsing, matching and pagination; cancel/delete validation. Messages are checked
//! against the recorded Meilisearch 1.50 fixture and Meilisearch's own test snapshots.

use miroir_core::tasks::filter::{parse_task_uid, task_not_found};
use miroir_core::tasks::time::parse_rfc3339;
use miroir_core::tasks::{TaskFilter, TaskQueryKind, TaskStatus, TaskType, TaskView};
use miroir_core::MeiliError;
use serde_json::{json, Value};

fn list(q: &[(&str, &str)]) -> Result<TaskFilter, MeiliError> {
    TaskFilter::from_list_query(q.iter().copied())
}

fn err(q: &[(&str, &str)]) -> MeiliError {
    list(q).expect_err("should fail")
}

fn assert_err(e: &MeiliError, code: &str, message: &str) {
    assert_eq!(e.status, 400);
    assert_eq!(e.code, code);
    assert_eq!(e.message, message);
    assert_eq!(e.to_json()["type"], json!("invalid_request"));
}

#[test]
fn bad_status_matches_the_fixture() {
    assert_err(
        &err(&[("statuses", "notastatus")]),
        "invalid_task_statuses",
        "Invalid value in parameter `statuses`: `notastatus` is not a valid task status. Available statuses are `enqueued`, `processing`, `succeeded`, `failed`, `canceled`.",
    );
}

#[test]
fn bad_integers() {
    assert_err(
        &err(&[("uids", "doggo")]),
        "invalid_task_uids",
        "Invalid value in parameter `uids`: could not parse `doggo` as a positive integer",
    );
    assert_err(
        &err(&[("uids", "1,dogo")]),
        "invalid_task_uids",
        "Invalid value in parameter `uids[1]`: could not parse `dogo` as a positive integer",
    );
    assert_err(
        &err(&[("uids", "1, 2")]),
        "invalid_task_uids",
        "Invalid value in parameter `uids[1]`: could not parse ` 2` as a positive integer",
    );
    assert_err(
        &err(&[("canceledBy", "doggo")]),
        "invalid_task_canceled_by",
        "Invalid value in parameter `canceledBy`: could not parse `doggo` as a positive integer",
    );
    assert_err(
        &err(&[("batchUids", "-1")]),
        "invalid_batch_uids",
        "Invalid value in parameter `batchUids`: could not parse `-1` as a positive integer",
    );
    assert_err(
        &err(&[("limit", "doggo")]),
        "invalid_task_limit",
        "Invalid value in parameter `limit`: could not parse `doggo` as a positive integer",
    );
    assert_err(
        &err(&[("from", "doggo")]),
        "invalid_task_from",
        "Invalid value in parameter `from`: could not parse `doggo` as a positive integer",
    );
}

#[test]
fn bad_reverse_types_and_index_uids() {
    assert_err(
        &err(&[("reverse", "doggo")]),
        "invalid_task_reverse",
        "Invalid value in parameter `reverse`: could not parse `doggo` as a boolean, expected either `true` or `false`",
    );
    assert_err(
        &err(&[("reverse", "*")]),
        "invalid_task_reverse",
        "Invalid value in parameter `reverse`: could not parse `*` as a boolean, expected either `true` or `false`",
    );
    assert_err(
        &err(&[("types", "doggo")]),
        "invalid_task_types",
        "Invalid value in parameter `types`: `doggo` is not a valid task type. Available types are `documentAdditionOrUpdate`, `documentEdition`, `documentDeletion`, `settingsUpdate`, `indexCreation`, `indexDeletion`, `indexUpdate`, `indexSwap`, `taskCancelation`, `taskDeletion`, `dumpCreation`, `snapshotCreation`, `export`, `upgradeDatabase`, `indexCompaction`, `networkTopologyChange`.",
    );
    assert_err(
        &err(&[("indexUids", "the good doggo")]),
        "invalid_index_uid",
        "Invalid value in parameter `indexUids`: `the good doggo` is not a valid index uid. Index uid can be an integer or a string containing only alphanumeric characters, hyphens (-) and underscores (_), and can not be more than 512 bytes.",
    );
    let long = "a".repeat(513);
    assert_eq!(err(&[("indexUids", &long)]).code, "invalid_index_uid");
    assert!(list(&[("indexUids", &"a".repeat(512))]).is_ok());
}

#[test]
fn bad_dates_name_their_parameter() {
    for (param, code) in [
        ("afterEnqueuedAt", "invalid_task_after_enqueued_at"),
        ("beforeEnqueuedAt", "invalid_task_before_enqueued_at"),
        ("afterStartedAt", "invalid_task_after_started_at"),
        ("beforeStartedAt", "invalid_task_before_started_at"),
        ("afterFinishedAt", "invalid_task_after_finished_at"),
        ("beforeFinishedAt", "invalid_task_before_finished_at"),
    ] {
        assert_err(
            &err(&[(param, "doggo")]),
            code,
            &format!("Invalid value in parameter `{param}`: `doggo` is an invalid date-time. It should follow the YYYY-MM-DD or RFC 3339 date-time format."),
        );
        // The same errors on the cancel and delete routes.
        for kind in [TaskQueryKind::Cancel, TaskQueryKind::Delete] {
            let e = TaskFilter::from_cancel_or_delete_query([(param, "doggo")], kind).unwrap_err();
            assert_eq!(e.code, code);
        }
    }
}

#[test]
fn unknown_parameters() {
    assert_err(
        &err(&[("doggo", "1")]),
        "bad_request",
        "Unknown parameter `doggo`: expected one of `limit`, `from`, `reverse`, `batchUids`, `uids`, `canceledBy`, `types`, `statuses`, `indexUids`, `afterEnqueuedAt`, `beforeEnqueuedAt`, `afterStartedAt`, `beforeStartedAt`, `afterFinishedAt`, `beforeFinishedAt`",
    );
    for (kind, p) in [
        (TaskQueryKind::Cancel, "limit"),
        (TaskQueryKind::Delete, "from"),
        (TaskQueryKind::Cancel, "reverse"),
    ] {
        let e = TaskFilter::from_cancel_or_delete_query([(p, "doggo")], kind).unwrap_err();
        assert_err(
            &e,
            "bad_request",
            &format!("Unknown parameter `{p}`: expected one of `uids`, `batchUids`, `canceledBy`, `types`, `statuses`, `indexUids`, `afterEnqueuedAt`, `beforeEnqueuedAt`, `afterStartedAt`, `beforeStartedAt`, `afterFinishedAt`, `beforeFinishedAt`"),
        );
    }
}

#[test]
fn cancel_and_delete_need_a_filter() {
    let e =
        TaskFilter::from_cancel_or_delete_query(Vec::<(&str, &str)>::new(), TaskQueryKind::Cancel)
            .unwrap_err();
    assert_err(
        &e,
        "missing_task_filters",
        "Query parameters to filter the tasks to cancel are missing. Available query parameters are: `uids`, `indexUids`, `statuses`, `types`, `canceledBy`, `beforeEnqueuedAt`, `afterEnqueuedAt`, `beforeStartedAt`, `afterStartedAt`, `beforeFinishedAt`, `afterFinishedAt`.",
    );
    let e =
        TaskFilter::from_cancel_or_delete_query(Vec::<(&str, &str)>::new(), TaskQueryKind::Delete)
            .unwrap_err();
    assert_eq!(e.code, "missing_task_filters");
    assert!(e.message.contains("tasks to delete are missing"));
    // `*` is a filter (it selects everything), as in Meilisearch.
    let f =
        TaskFilter::from_cancel_or_delete_query([("uids", "*")], TaskQueryKind::Delete).unwrap();
    assert!(f.has_filters);
    assert_eq!(f.uids, None);
    let f = TaskFilter::from_cancel_or_delete_query(
        [("statuses", "enqueued,processing")],
        TaskQueryKind::Cancel,
    )
    .unwrap();
    assert_eq!(
        f.statuses,
        Some(vec![TaskStatus::Enqueued, TaskStatus::Processing])
    );
    // The list route never needs one.
    assert!(TaskFilter::from_cancel_or_delete_query(
        Vec::<(&str, &str)>::new(),
        TaskQueryKind::List
    )
    .is_ok());
}

#[test]
fn parses_values() {
    let f = list(&[
        ("limit", "3"),
        ("from", "25"),
        ("reverse", "true"),
        ("uids", "1,2,,3"),
        ("types", "documentAdditionOrUpdate,INDEXSWAP"),
        ("statuses", "*"),
        ("indexUids", "movies,*"),
        ("afterEnqueuedAt", "2026-11-27"),
        ("beforeEnqueuedAt", "2026-11-27"),
        ("afterStartedAt", "2026-11-27T09:16:21.5+01:00"),
        ("beforeFinishedAt", "*"),
    ])
    .unwrap();
    assert_eq!(f.limit, 3);
    assert_eq!(f.from, Some(25));
    assert!(f.reverse);
    assert_eq!(f.uids, Some(vec![1, 2, 3]));
    assert_eq!(
        f.types,
        Some(vec![
            TaskType::DocumentAdditionOrUpdate,
            TaskType::IndexSwap
        ])
    );
    assert_eq!(f.statuses, None);
    assert_eq!(f.index_uids, None);
    assert_eq!(f.after_enqueued_at, parse_rfc3339("2026-11-28T00:00:00Z"));
    assert_eq!(f.before_enqueued_at, parse_rfc3339("2026-11-27T00:00:00Z"));
    assert_eq!(f.after_started_at, parse_rfc3339("2026-11-27T08:16:21.5Z"));
    assert_eq!(f.before_finished_at, None);
    let d = list(&[]).unwrap();
    assert_eq!(d.limit, 20);
    assert!(!d.has_filters);
    assert!(!d.reverse);
}

fn task(uid: u64, status: TaskStatus, index: Option<&str>, task_type: TaskType) -> TaskView {
    let enqueued = parse_rfc3339("2026-11-27T09:16:21Z").unwrap() + uid as i128 * 1_000_000_000;
    let finished = status.is_finished().then_some(enqueued + 500_000_000);
    let started = (status != TaskStatus::Enqueued).then_some(enqueued + 100_000_000);
    let details = if task_type == TaskType::IndexSwap {
        json!({"swaps": [{"indexes": ["movies", "movies2"], "rename": false}]})
    } else {
        json!({})
    };
    TaskView {
        uid,
        batch_uid: (status != TaskStatus::Enqueued).then_some(uid),
        index_uid: index.map(str::to_string),
        status,
        task_type,
        canceled_by: (status == TaskStatus::Canceled).then_some(99),
        enqueued_at: enqueued,
        started_at: started,
        finished_at: finished,
        miroir_pending_replicas: 0,
        meili: json!({"uid": uid, "indexUid": index, "status": status.as_str(), "details": details}),
    }
}

/// The 29 tasks of the core fixture, with their index and status.
fn fixture_tasks() -> Vec<TaskView> {
    let failed = [1, 3, 4, 5, 7, 15, 16, 18, 25];
    (0..=28u64)
        .map(|uid| {
            let index = match uid {
                14 => Some("infer1"),
                15 => Some("infer2"),
                16 => Some("infer3"),
                17 | 18 => Some("infer4"),
                26 | 28 => Some("movies2"),
                27 => None,
                _ => Some("movies"),
            };
            let status = if failed.contains(&uid) {
                TaskStatus::Failed
            } else {
                TaskStatus::Succeeded
            };
            let ty = if uid == 27 {
                TaskType::IndexSwap
            } else {
                TaskType::DocumentAdditionOrUpdate
            };
            task(uid, status, index, ty)
        })
        .collect()
}

fn uids(page: &Value) -> Vec<u64> {
    page["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["uid"].as_u64().unwrap())
        .collect()
}

#[test]
fn paginates_like_the_fixture() {
    let tasks = fixture_tasks();
    let f = list(&[
        ("indexUids", "movies"),
        ("statuses", "failed"),
        ("limit", "3"),
    ])
    .unwrap();
    let page = f.paginate(&tasks);
    assert_eq!(uids(&page), vec![25, 7, 5]);
    let keys: Vec<&String> = page.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["results", "total", "limit", "from", "next"]);
    assert_eq!(page["total"], json!(6));
    assert_eq!(page["limit"], json!(3));
    assert_eq!(page["from"], json!(25));
    assert_eq!(page["next"], json!(4));
    // The next page starts at `next`; the last page has next = null.
    let f2 = list(&[
        ("indexUids", "movies"),
        ("statuses", "failed"),
        ("limit", "3"),
        ("from", "4"),
    ])
    .unwrap();
    let page2 = f2.paginate(&tasks);
    assert_eq!(uids(&page2), vec![4, 3, 1]);
    assert_eq!(page2["next"], Value::Null);
    assert_eq!(page2["total"], json!(6));
}

#[test]
fn reverse_limit_zero_and_empty_pages() {
    let tasks = fixture_tasks();
    let f = list(&[("reverse", "true"), ("limit", "2"), ("from", "3")]).unwrap();
    let page = f.paginate(&tasks);
    assert_eq!(uids(&page), vec![3, 4]);
    assert_eq!(page["next"], json!(5));
    assert_eq!(page["total"], json!(29));
    let f = list(&[("limit", "0")]).unwrap();
    let page = f.paginate(&tasks);
    assert_eq!(uids(&page), Vec::<u64>::new());
    assert_eq!(page["from"], Value::Null);
    assert_eq!(page["next"], json!(28));
    let f = list(&[("uids", "1000")]).unwrap();
    let page = f.paginate(&tasks);
    assert_eq!(page["total"], json!(0));
    assert_eq!(page["from"], Value::Null);
    assert_eq!(page["next"], Value::Null);
    let default = list(&[]).unwrap().paginate(&tasks);
    assert_eq!(uids(&default), (9..=28).rev().collect::<Vec<_>>());
    assert_eq!(default["next"], json!(8));
}

#[test]
fn matches_every_field() {
    let tasks = fixture_tasks();
    let count = |q: &[(&str, &str)]| tasks.iter().filter(|t| list(q).unwrap().matches(t)).count();
    assert_eq!(count(&[("uids", "1,2,3")]), 3);
    assert_eq!(count(&[("batchUids", "1,2")]), 2);
    assert_eq!(count(&[("types", "indexSwap")]), 1);
    assert_eq!(count(&[("types", "documentDeletion")]), 0);
    assert_eq!(count(&[("statuses", "failed,succeeded")]), 29);
    // The swap (index null) is registered under both indexes it swaps.
    assert_eq!(count(&[("indexUids", "movies2")]), 3);
    assert_eq!(
        count(&[("indexUids", "movies"), ("statuses", "succeeded")]),
        16
    );
    assert_eq!(count(&[("canceledBy", "99")]), 0);

    let canceled = task(
        50,
        TaskStatus::Canceled,
        Some("x"),
        TaskType::DocumentDeletion,
    );
    let enqueued = task(
        51,
        TaskStatus::Enqueued,
        Some("x"),
        TaskType::DocumentDeletion,
    );
    assert!(list(&[("canceledBy", "99")]).unwrap().matches(&canceled));
    assert!(!list(&[("canceledBy", "98")]).unwrap().matches(&canceled));
    assert!(!list(&[("batchUids", "51")]).unwrap().matches(&enqueued));
    // Bounds on startedAt/finishedAt never match a task without them.
    assert!(!list(&[("afterStartedAt", "2000-01-01")])
        .unwrap()
        .matches(&enqueued));
    assert!(!list(&[("beforeFinishedAt", "2100-01-01")])
        .unwrap()
        .matches(&enqueued));
    assert!(list(&[("beforeFinishedAt", "2100-01-01")])
        .unwrap()
        .matches(&canceled));
}

#[test]
fn date_bounds_are_exclusive() {
    let t = task(
        0,
        TaskStatus::Succeeded,
        Some("movies"),
        TaskType::IndexCreation,
    );
    let at = "2026-11-27T09:16:21Z";
    assert!(!list(&[("afterEnqueuedAt", at)]).unwrap().matches(&t));
    assert!(!list(&[("beforeEnqueuedAt", at)]).unwrap().matches(&t));
    assert!(
        list(&[("afterEnqueuedAt", "2026-11-27T09:16:20.999999999Z")])
            .unwrap()
            .matches(&t)
    );
    assert!(
        list(&[("beforeEnqueuedAt", "2026-11-27T09:16:21.000000001Z")])
            .unwrap()
            .matches(&t)
    );
    // A bare date means the whole day: after 2026-11-26 is from 2026-11-27 00:00 exclusive.
    assert!(list(&[("afterEnqueuedAt", "2026-11-26")])
        .unwrap()
        .matches(&t));
    assert!(!list(&[("afterEnqueuedAt", "2026-11-27")])
        .unwrap()
        .matches(&t));
    assert!(list(&[("beforeEnqueuedAt", "2026-11-28")])
        .unwrap()
        .matches(&t));
    assert!(!list(&[("beforeEnqueuedAt", "2026-11-27")])
        .unwrap()
        .matches(&t));
    assert!(list(&[
        ("afterStartedAt", "2026-11-27T09:16:21Z"),
        ("beforeStartedAt", "2026-11-27T09:16:21.2Z")
    ])
    .unwrap()
    .matches(&t));
    assert!(list(&[
        ("afterFinishedAt", "2026-11-27T09:16:21.4Z"),
        ("beforeFinishedAt", "2026-11-27T09:16:21.6Z")
    ])
    .unwrap()
    .matches(&t));
    assert!(!list(&[("afterFinishedAt", "2026-11-27T09:16:21.5Z")])
        .unwrap()
        .matches(&t));
}

#[test]
fn task_uid_path_and_not_found() {
    assert_eq!(parse_task_uid("25").unwrap(), 25);
    let e = parse_task_uid("abc").unwrap_err();
    assert_err(
        &e,
        "invalid_task_uids",
        "Task uid `abc` is invalid. It should only contain numeric characters.",
    );
    assert!(parse_task_uid("-1").is_err());
    assert!(parse_task_uid("4294967296").is_err());
    // Fixture "task missing".
    assert_eq!(
        task_not_found(999999).to_json(),
        json!({
            "code": "task_not_found",
            "link": "https://docs.meilisearch.com/errors#task_not_found",
            "message": "Task `999999` not found.",
            "type": "invalid_request"
        })
    );
    assert_eq!(task_not_found(1).status, 404);
}
