//! Aggregation of node tasks into one Meilisearch task object: every status rule and the exact shape.

use miroir_core::quorum::{ShardOwners, WriteQuorum};
use miroir_core::tasks::time::{format_rfc3339, millis_to_nanos, parse_rfc3339};
use miroir_core::tasks::{
    aggregate, details, MiroirTask, NodeTaskRef, NodeTaskView, TaskStatus, TaskType,
};
use miroir_core::topology::NodeId;
use miroir_core::MeiliError;
use serde_json::{json, Value};
use std::collections::BTreeMap;

const ENQUEUED: u64 = 1_795_770_981_268; // 2026-11-27T09:16:21.268Z
const LOST_AFTER: u64 = 60_000;

fn n(s: &str) -> NodeId {
    NodeId::new(s)
}

/// Two shards, one group, RF=3, majority: shard 0 on a,b,c; shard 1 on b,c,d.
fn write_task() -> MiroirTask {
    let mut t = MiroirTask::new(
        2,
        Some("movies".into()),
        TaskType::DocumentAdditionOrUpdate,
        ENQUEUED,
        Some(details::document_addition(200)),
    );
    let mut p = ShardOwners::new();
    p.insert(0, vec![vec![n("a"), n("b"), n("c")]]);
    p.insert(1, vec![vec![n("b"), n("c"), n("d")]]);
    t.placement = p;
    t.quorum = WriteQuorum::Majority;
    for (node, uid, shards) in [
        ("a", 10, vec![0]),
        ("b", 11, vec![0, 1]),
        ("c", 12, vec![0, 1]),
        ("d", 13, vec![1]),
    ] {
        t.node_tasks.push(NodeTaskRef {
            node: n(node),
            task_uid: Some(uid),
            shards,
            group: 0,
        });
    }
    t
}

fn view(status: &str, started: Option<&str>, finished: Option<&str>) -> NodeTaskView {
    NodeTaskView::from_json(&json!({
        "status": status,
        "startedAt": started,
        "finishedAt": finished,
        "details": {"receivedDocuments": 100, "indexedDocuments": 100},
        "error": null,
    }))
}

fn failed_view(code: &str, finished: &str) -> NodeTaskView {
    NodeTaskView::from_json(&json!({
        "status": "failed",
        "startedAt": "2026-11-27T09:16:21.3Z",
        "finishedAt": finished,
        "error": {"message": format!("{code} happened"), "code": code, "type": "invalid_request", "link": "x"},
    }))
}

fn keys(v: &Value) -> Vec<String> {
    v.as_object().unwrap().keys().cloned().collect()
}

const KEY_ORDER: [&str; 12] = [
    "uid",
    "batchUid",
    "indexUid",
    "status",
    "type",
    "canceledBy",
    "details",
    "error",
    "duration",
    "enqueuedAt",
    "startedAt",
    "finishedAt",
];

#[test]
fn enqueued_while_no_node_started() {
    let t = write_task();
    let mut nt = BTreeMap::new();
    nt.insert((n("a"), 10), view("enqueued", None, None));
    let v = aggregate(&t, &nt, ENQUEUED + 10, LOST_AFTER);
    assert_eq!(v.status, TaskStatus::Enqueued);
    assert_eq!(keys(&v.meili), KEY_ORDER);
    assert_eq!(
        v.meili,
        json!({
            "uid": 2, "batchUid": null, "indexUid": "movies", "status": "enqueued",
            "type": "documentAdditionOrUpdate", "canceledBy": null,
            "details": {"receivedDocuments": 200, "indexedDocuments": null},
            "error": null, "duration": null, "enqueuedAt": "2026-11-27T09:16:21.268Z",
            "startedAt": null, "finishedAt": null
        })
    );
    assert_eq!(v.batch_uid, None);
    assert_eq!(v.miroir_pending_replicas, 4);
}

#[test]
fn processing_once_a_node_started() {
    let t = write_task();
    let mut nt = BTreeMap::new();
    nt.insert(
        (n("b"), 11),
        view("processing", Some("2026-11-27T09:16:21.26951096Z"), None),
    );
    let v = aggregate(&t, &nt, ENQUEUED + 10, LOST_AFTER);
    assert_eq!(v.status, TaskStatus::Processing);
    assert_eq!(v.meili["batchUid"], json!(2));
    assert_eq!(v.meili["startedAt"], json!("2026-11-27T09:16:21.26951096Z"));
    assert_eq!(v.meili["finishedAt"], Value::Null);
    assert_eq!(v.meili["duration"], Value::Null);
    assert_eq!(v.meili["details"]["indexedDocuments"], Value::Null);
    // A node that already succeeded also makes the task processing.
    let mut nt = BTreeMap::new();
    nt.insert(
        (n("a"), 10),
        view(
            "succeeded",
            Some("2026-11-27T09:16:21.3Z"),
            Some("2026-11-27T09:16:21.4Z"),
        ),
    );
    assert_eq!(
        aggregate(&t, &nt, ENQUEUED, LOST_AFTER).status,
        TaskStatus::Processing
    );
}

#[test]
fn succeeded_at_quorum_with_pending_repair() {
    let t = write_task();
    let mut nt = BTreeMap::new();
    nt.insert(
        (n("a"), 10),
        view(
            "succeeded",
            Some("2026-11-27T09:16:21.3Z"),
            Some("2026-11-27T09:16:21.9Z"),
        ),
    );
    nt.insert(
        (n("b"), 11),
        view(
            "succeeded",
            Some("2026-11-27T09:16:21.26951096Z"),
            Some("2026-11-27T09:16:21.5Z"),
        ),
    );
    nt.insert(
        (n("c"), 12),
        view(
            "succeeded",
            Some("2026-11-27T09:16:21.4Z"),
            Some("2026-11-27T09:16:21.931927962Z"),
        ),
    );
    // d never answers: still succeeded, d is pending repair.
    let v = aggregate(&t, &nt, ENQUEUED + 10, LOST_AFTER);
    assert_eq!(v.status, TaskStatus::Succeeded);
    assert_eq!(v.miroir_pending_replicas, 1);
    assert_eq!(keys(&v.meili), KEY_ORDER);
    assert_eq!(
        v.meili["details"],
        json!({"receivedDocuments": 200, "indexedDocuments": 200})
    );
    assert_eq!(v.meili["startedAt"], json!("2026-11-27T09:16:21.26951096Z"));
    // Shard 0 reached quorum at a's 0.9 (2nd of 0.5, 0.9, 0.93); shard 1 at c's 0.931927962.
    assert_eq!(
        v.meili["finishedAt"],
        json!("2026-11-27T09:16:21.931927962Z")
    );
    assert_eq!(v.meili["duration"], json!("PT0.662417002S"));
    assert_eq!(v.meili["error"], Value::Null);
    assert_eq!(v.meili["canceledBy"], Value::Null);
    assert!(!v
        .meili
        .as_object()
        .unwrap()
        .contains_key("miroirPendingReplicas"));
}

#[test]
fn failed_with_first_node_error_in_node_order() {
    let t = write_task();
    let mut nt = BTreeMap::new();
    nt.insert(
        (n("b"), 11),
        failed_view("invalid_document_id", "2026-11-27T09:16:22.1Z"),
    );
    nt.insert(
        (n("a"), 10),
        failed_view("missing_document_id", "2026-11-27T09:16:22.003971748Z"),
    );
    let v = aggregate(&t, &nt, ENQUEUED + 10, LOST_AFTER);
    assert_eq!(v.status, TaskStatus::Failed);
    assert_eq!(v.meili["error"]["code"], json!("missing_document_id"));
    assert_eq!(
        v.meili["error"]["link"],
        json!("https://docs.meilisearch.com/errors#missing_document_id")
    );
    assert_eq!(keys(&v.meili["error"]), ["message", "code", "type", "link"]);
    assert_eq!(
        v.meili["details"],
        json!({"receivedDocuments": 200, "indexedDocuments": 0})
    );
    assert_eq!(v.meili["finishedAt"], json!("2026-11-27T09:16:22.1Z"));
    assert_eq!(v.meili["startedAt"], json!("2026-11-27T09:16:21.3Z"));
    assert_eq!(v.meili["duration"], json!("PT0.800S"));
}

#[test]
fn failed_node_without_error_object_is_a_bad_node_response() {
    let t = write_task();
    let mut nt = BTreeMap::new();
    for (node, uid) in [("a", 10), ("b", 11)] {
        nt.insert(
            (n(node), uid),
            NodeTaskView::from_json(&json!({"status": "failed"})),
        );
    }
    let v = aggregate(&t, &nt, ENQUEUED, LOST_AFTER);
    assert_eq!(v.status, TaskStatus::Failed);
    assert_eq!(v.meili["error"]["code"], json!("miroir_bad_node_response"));
    assert!(v.meili["error"]["message"]
        .as_str()
        .unwrap()
        .contains("`a`"));
}

#[test]
fn dead_nodes_fail_the_task_after_lost_after() {
    let t = write_task();
    let nt = BTreeMap::new();
    let before = aggregate(&t, &nt, ENQUEUED + LOST_AFTER - 1, LOST_AFTER);
    assert_eq!(before.status, TaskStatus::Enqueued);
    let v = aggregate(&t, &nt, ENQUEUED + LOST_AFTER, LOST_AFTER);
    assert_eq!(v.status, TaskStatus::Failed);
    assert_eq!(v.meili["error"]["code"], json!("miroir_no_quorum"));
    assert_eq!(v.meili["error"]["type"], json!("system"));
    let msg = v.meili["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("0, 1") && msg.contains("`a`") && msg.contains("`d`"),
        "{msg}"
    );
    assert_eq!(v.finished_at, Some(millis_to_nanos(ENQUEUED + LOST_AFTER)));
    assert_eq!(v.meili["startedAt"], Value::Null);
    assert_eq!(v.meili["duration"], Value::Null);
}

#[test]
fn never_acked_nodes_count_as_lost_too() {
    let mut t = write_task();
    for r in &mut t.node_tasks {
        if r.node != n("a") {
            r.task_uid = None;
        }
    }
    let mut nt = BTreeMap::new();
    nt.insert(
        (n("a"), 10),
        view("processing", Some("2026-11-27T09:16:21.3Z"), None),
    );
    assert_eq!(
        aggregate(&t, &nt, ENQUEUED + 1, LOST_AFTER).status,
        TaskStatus::Processing
    );
    let v = aggregate(&t, &nt, ENQUEUED + LOST_AFTER, LOST_AFTER);
    assert_eq!(v.status, TaskStatus::Failed);
    assert_eq!(v.meili["error"]["code"], json!("miroir_no_quorum"));
}

#[test]
fn canceled_when_cancellations_break_quorum() {
    let mut t = write_task();
    t.canceled_by = Some(40);
    let mut nt = BTreeMap::new();
    for (node, uid) in [("a", 10), ("b", 11)] {
        nt.insert(
            (n(node), uid),
            NodeTaskView::from_json(&json!({
                "status": "canceled",
                "startedAt": null,
                "finishedAt": "2026-11-27T09:16:23Z",
                "canceledBy": 7
            })),
        );
    }
    let v = aggregate(&t, &nt, ENQUEUED, LOST_AFTER);
    assert_eq!(v.status, TaskStatus::Canceled);
    assert_eq!(v.meili["canceledBy"], json!(40));
    assert_eq!(v.canceled_by, Some(40));
    assert_eq!(v.meili["error"], Value::Null);
    assert_eq!(v.meili["details"]["indexedDocuments"], json!(0));
    assert_eq!(v.meili["finishedAt"], json!("2026-11-27T09:16:23Z"));

    // A failure among the causes makes it failed, not canceled.
    nt.insert(
        (n("b"), 11),
        failed_view("invalid_document_id", "2026-11-27T09:16:22Z"),
    );
    nt.insert(
        (n("c"), 12),
        failed_view("invalid_document_id", "2026-11-27T09:16:22Z"),
    );
    let v = aggregate(&t, &nt, ENQUEUED, LOST_AFTER);
    assert_eq!(v.status, TaskStatus::Failed);
    assert_eq!(v.meili["canceledBy"], Value::Null);
}

#[test]
fn pre_decided_error_fails_at_once() {
    let err = MeiliError::invalid(
        400,
        "invalid_document_id",
        "Document identifier `\"a b\"` is invalid.",
    );
    let t = write_task().with_error(&err);
    let v = aggregate(&t, &BTreeMap::new(), ENQUEUED, LOST_AFTER);
    assert_eq!(v.status, TaskStatus::Failed);
    assert_eq!(v.meili["error"], err.to_json());
    assert_eq!(v.meili["duration"], json!("PT0S"));
    assert_eq!(v.meili["startedAt"], v.meili["enqueuedAt"]);
    assert_eq!(v.meili["finishedAt"], v.meili["enqueuedAt"]);
    assert_eq!(v.meili["details"]["indexedDocuments"], json!(0));
}

/// Two groups, RF=2, one shard per node pair: deletedDocuments = sum over a group / RF.
fn deletion_task() -> MiroirTask {
    let mut t = MiroirTask::new(
        24,
        Some("movies".into()),
        TaskType::DocumentDeletion,
        ENQUEUED,
        Some(details::document_deletion_by_filter(&json!("year < 1955"))),
    );
    let mut p = ShardOwners::new();
    p.insert(0, vec![vec![n("a"), n("b")], vec![n("e"), n("f")]]);
    p.insert(1, vec![vec![n("c"), n("d")], vec![n("e"), n("f")]]);
    t.placement = p;
    for (node, group, shards) in [
        ("a", 0, vec![0]),
        ("b", 0, vec![0]),
        ("c", 0, vec![1]),
        ("d", 0, vec![1]),
        ("e", 1, vec![0, 1]),
        ("f", 1, vec![0, 1]),
    ] {
        t.node_tasks.push(NodeTaskRef {
            node: n(node),
            task_uid: Some(1),
            shards,
            group,
        });
    }
    t
}

fn deleted(count: u64) -> NodeTaskView {
    NodeTaskView::from_json(&json!({
        "status": "succeeded",
        "startedAt": "2026-11-27T09:16:33.965498023Z",
        "finishedAt": "2026-11-27T09:16:34.683922029Z",
        "details": {"providedIds": 0, "deletedDocuments": count, "originalFilter": "\"year < 1955\""}
    }))
}

#[test]
fn deleted_documents_from_a_fully_succeeded_group() {
    let t = deletion_task();
    let mut nt = BTreeMap::new();
    // Group 0: shard 0 deleted 5 (on a and b), shard 1 deleted 7 (on c and d).
    for (node, c) in [("a", 5), ("b", 5), ("c", 7), ("d", 7)] {
        nt.insert((n(node), 1), deleted(c));
    }
    // Group 1 reports something else on e, and f is still pending: group 0 is the complete one.
    nt.insert((n("e"), 1), deleted(3));
    let v = aggregate(&t, &nt, ENQUEUED, LOST_AFTER);
    assert_eq!(v.status, TaskStatus::Succeeded);
    assert_eq!(
        v.meili["details"],
        json!({"providedIds": 0, "deletedDocuments": 12, "originalFilter": "\"year < 1955\""})
    );
    assert_eq!(
        keys(&v.meili["details"]),
        ["providedIds", "deletedDocuments", "originalFilter"]
    );
    assert_eq!(v.miroir_pending_replicas, 1);

    // Group 1 alone: each node holds both shards and reports 12, so (12 + 12) / RF 2 = 12.
    let mut nt = BTreeMap::new();
    nt.insert((n("e"), 1), deleted(12));
    nt.insert((n("f"), 1), deleted(12));
    let v = aggregate(&t, &nt, ENQUEUED, LOST_AFTER);
    assert_eq!(v.status, TaskStatus::Succeeded);
    assert_eq!(v.meili["details"]["deletedDocuments"], json!(12));
}

#[test]
fn counters_fall_back_to_the_best_group_and_keep_known_values() {
    // Quorum `one`: shard 0 and shard 1 succeed, but no group has all its node tasks succeeded.
    let mut t = deletion_task();
    t.quorum = WriteQuorum::One;
    let mut nt = BTreeMap::new();
    nt.insert((n("a"), 1), deleted(5));
    nt.insert((n("b"), 1), deleted(5));
    nt.insert((n("c"), 1), failed_view("internal", "2026-11-27T09:16:34Z"));
    nt.insert((n("d"), 1), deleted(7));
    nt.insert((n("e"), 1), deleted(12));
    nt.insert((n("f"), 1), failed_view("internal", "2026-11-27T09:16:34Z"));
    let v = aggregate(&t, &nt, ENQUEUED, LOST_AFTER);
    assert_eq!(v.status, TaskStatus::Succeeded);
    assert_eq!(v.miroir_pending_replicas, 2);
    // Group 0 has the most succeeded node tasks (3 of 4): (5 + 5 + 7) / 2 = 8, a lower bound.
    assert_eq!(v.meili["details"]["deletedDocuments"], json!(8));

    let mut known = deletion_task();
    known.quorum = WriteQuorum::One;
    known
        .details
        .as_mut()
        .unwrap()
        .insert("deletedDocuments".into(), json!(99));
    let v = aggregate(&known, &nt, ENQUEUED, LOST_AFTER);
    assert_eq!(v.meili["details"]["deletedDocuments"], json!(99));

    // Nothing reported the counter: null.
    let mut nt2 = BTreeMap::new();
    for node in ["a", "b", "c", "d"] {
        nt2.insert(
            (n(node), 1),
            NodeTaskView::from_json(&json!({"status": "succeeded"})),
        );
    }
    let v = aggregate(&t, &nt2, ENQUEUED, LOST_AFTER);
    assert_eq!(v.status, TaskStatus::Succeeded);
    assert_eq!(v.meili["details"]["deletedDocuments"], Value::Null);
    // No timestamps anywhere: finishedAt unknown.
    assert_eq!(v.meili["finishedAt"], Value::Null);
}

#[test]
fn single_node_reproduces_the_fixture() {
    // One shard, one node, RF=1: the aggregate equals what the node said (but for Miroir's uid and
    // enqueuedAt), taken from v1.50.0-core.jsonl "add documents / task" and "bad id chars / task".
    let node_ok = json!({"batchUid": 2, "canceledBy": null, "details": {"indexedDocuments": 200, "receivedDocuments": 200}, "duration": "PT0.662417002S", "enqueuedAt": "2026-11-27T09:16:21.268159618Z", "error": null, "finishedAt": "2026-11-27T09:16:21.931927962Z", "indexUid": "movies", "startedAt": "2026-11-27T09:16:21.26951096Z", "status": "succeeded", "type": "documentAdditionOrUpdate", "uid": 2});
    let node_failed = json!({"batchUid": 3, "canceledBy": null, "details": {"indexedDocuments": 0, "receivedDocuments": 1}, "duration": "PT0.012116233S", "enqueuedAt": "2026-11-27T09:16:21.965597112Z", "error": {"code": "invalid_document_id", "link": "https://docs.meilisearch.com/errors#invalid_document_id", "message": "Document identifier `\"a b\"` is invalid. A document identifier can be of type integer or string, only composed of alphanumeric characters (a-z A-Z 0-9), hyphens (-) and underscores (_), and can not be more than 511 bytes.", "type": "invalid_request"}, "finishedAt": "2026-11-27T09:16:22.003971748Z", "indexUid": "movies", "startedAt": "2026-11-27T09:16:21.991855515Z", "status": "failed", "type": "documentAdditionOrUpdate", "uid": 3});
    for (node_task, received) in [(node_ok, 200), (node_failed, 1)] {
        let mut t = MiroirTask::new(
            node_task["uid"].as_u64().unwrap(),
            Some("movies".into()),
            TaskType::DocumentAdditionOrUpdate,
            ENQUEUED,
            Some(details::document_addition(received)),
        );
        t.placement.insert(0, vec![vec![n("m0")]]);
        t.node_tasks.push(NodeTaskRef {
            node: n("m0"),
            task_uid: Some(77),
            shards: vec![0],
            group: 0,
        });
        let mut nt = BTreeMap::new();
        nt.insert((n("m0"), 77), NodeTaskView::from_json(&node_task));
        let v = aggregate(&t, &nt, ENQUEUED, LOST_AFTER);
        let mut expected = node_task.clone();
        expected["enqueuedAt"] = json!(format_rfc3339(millis_to_nanos(ENQUEUED)));
        assert_eq!(v.meili, expected);
        assert_eq!(keys(&v.meili), KEY_ORDER);
    }
}

#[test]
fn node_task_views_parse_leniently() {
    let v = NodeTaskView::from_json(&json!("not an object"));
    assert_eq!(v, NodeTaskView::default());
    let v = NodeTaskView::from_json(&json!({
        "status": "weird", "startedAt": "yesterday", "finishedAt": 5, "details": [1], "error": null
    }));
    assert_eq!(v, NodeTaskView::default());
    let v = NodeTaskView::from_json(
        &json!({"status": "Succeeded", "startedAt": "2026-11-27T09:16:21Z"}),
    );
    assert_eq!(v.status, Some(TaskStatus::Succeeded));
    assert_eq!(v.started_at, parse_rfc3339("2026-11-27T09:16:21Z"));
}

#[test]
fn swap_and_taskless_records() {
    // A Miroir-only task (no placement, no node task) is succeeded at once with its known counters.
    let mut t = MiroirTask::new(
        40,
        None,
        TaskType::TaskCancelation,
        ENQUEUED,
        Some(details::task_cancelation(2, "?uids=1,2")),
    );
    t.details
        .as_mut()
        .unwrap()
        .insert("canceledTasks".into(), json!(2));
    let v = aggregate(&t, &BTreeMap::new(), ENQUEUED, LOST_AFTER);
    assert_eq!(v.status, TaskStatus::Succeeded);
    assert_eq!(v.meili["indexUid"], Value::Null);
    assert_eq!(
        v.meili["details"],
        json!({"matchedTasks": 2, "canceledTasks": 2, "originalFilter": "?uids=1,2"})
    );
    let no_details = MiroirTask::new(41, None, TaskType::SnapshotCreation, ENQUEUED, None);
    let v = aggregate(&no_details, &BTreeMap::new(), ENQUEUED, LOST_AFTER);
    assert!(!v.meili.as_object().unwrap().contains_key("details"));
}
