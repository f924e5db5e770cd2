//! Property tests of task aggregation: status soundness, no task stuck after `lost_after`, determinism.

use miroir_core::quorum::{ShardOwners, WriteQuorum};
use miroir_core::tasks::{
    aggregate, details, MiroirTask, NodeTaskRef, NodeTaskView, TaskStatus, TaskType,
};
use miroir_core::topology::NodeId;
use proptest::prelude::*;
use serde_json::json;
use std::collections::BTreeMap;

const ENQUEUED: u64 = 1_795_770_981_268;
const LOST_AFTER: u64 = 1_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NodeSays {
    Nothing,
    Enqueued,
    Processing,
    Succeeded,
    Failed,
    Canceled,
}

impl NodeSays {
    fn terminal(self) -> bool {
        matches!(
            self,
            NodeSays::Succeeded | NodeSays::Failed | NodeSays::Canceled
        )
    }
}

fn node_says() -> impl Strategy<Value = NodeSays> {
    prop_oneof![
        1 => Just(NodeSays::Nothing),
        1 => Just(NodeSays::Enqueued),
        1 => Just(NodeSays::Processing),
        3 => Just(NodeSays::Succeeded),
        1 => Just(NodeSays::Failed),
        1 => Just(NodeSays::Canceled),
    ]
}

#[derive(Debug, Clone)]
struct Scenario {
    task: MiroirTask,
    says: BTreeMap<NodeId, NodeSays>,
    now: u64,
}

fn scenario() -> impl Strategy<Value = Scenario> {
    (1usize..4, 1usize..3, 1usize..4, 0usize..3).prop_flat_map(|(shards, groups, rf, q)| {
        let per_group = rf + 1;
        let nodes = groups * per_group;
        (
            proptest::collection::vec(
                proptest::sample::subsequence((0..per_group).collect::<Vec<_>>(), rf),
                shards * groups,
            ),
            proptest::collection::vec(node_says(), nodes),
            proptest::collection::vec(any::<bool>(), nodes),
            proptest::collection::vec(0u64..400, nodes),
            0u64..(3 * LOST_AFTER),
        )
            .prop_map(move |(picks, says, acked, offsets, dt)| {
                let quorum = [WriteQuorum::Majority, WriteQuorum::One, WriteQuorum::All][q];
                let name = |g: usize, i: usize| NodeId::new(format!("g{g}-n{i}"));
                let mut placement = ShardOwners::new();
                for s in 0..shards {
                    placement.insert(
                        s as u32,
                        (0..groups)
                            .map(|g| picks[s * groups + g].iter().map(|&i| name(g, i)).collect())
                            .collect(),
                    );
                }
                let mut task = MiroirTask::new(
                    9,
                    Some("movies".into()),
                    TaskType::DocumentAdditionOrUpdate,
                    ENQUEUED,
                    Some(details::document_addition(10)),
                );
                task.quorum = quorum;
                let mut map = BTreeMap::new();
                for g in 0..groups {
                    for i in 0..per_group {
                        let k = g * per_group + i;
                        let node = name(g, i);
                        let owned: Vec<u32> = placement
                            .iter()
                            .filter(|(_, gs)| gs[g].contains(&node))
                            .map(|(s, _)| *s)
                            .collect();
                        if owned.is_empty() {
                            continue;
                        }
                        task.node_tasks.push(NodeTaskRef {
                            node: node.clone(),
                            task_uid: acked[k].then_some(offsets[k]),
                            shards: owned,
                            group: g as u32,
                        });
                        map.insert(node, if acked[k] { says[k] } else { NodeSays::Nothing });
                    }
                }
                task.placement = placement;
                Scenario {
                    task,
                    says: map,
                    now: ENQUEUED + dt,
                }
            })
    })
}

fn views(s: &Scenario) -> BTreeMap<(NodeId, u64), NodeTaskView> {
    let mut out = BTreeMap::new();
    for r in &s.task.node_tasks {
        let (Some(uid), Some(says)) = (r.task_uid, s.says.get(&r.node)) else {
            continue;
        };
        let start = format!("2026-11-27T09:16:22.{:03}Z", uid % 500);
        let finish = format!("2026-11-27T09:16:23.{:03}Z", uid);
        let v = match says {
            NodeSays::Nothing => continue,
            NodeSays::Enqueued => json!({"status": "enqueued"}),
            NodeSays::Processing => json!({"status": "processing", "startedAt": start}),
            NodeSays::Succeeded => {
                json!({"status": "succeeded", "startedAt": start, "finishedAt": finish,
                "details": {"receivedDocuments": 4, "indexedDocuments": 4}})
            }
            NodeSays::Failed => {
                json!({"status": "failed", "startedAt": start, "finishedAt": finish,
                "error": {"message": format!("m{uid}"), "code": "invalid_document_id", "type": "invalid_request", "link": ""}})
            }
            NodeSays::Canceled => json!({"status": "canceled", "finishedAt": finish}),
        };
        out.insert((r.node.clone(), uid), NodeTaskView::from_json(&v));
    }
    out
}

/// Reference: (every shard has `q` succeeded owners in a group, some shard is impossible everywhere).
fn reference(s: &Scenario) -> (bool, bool) {
    let lost = s.now >= ENQUEUED + LOST_AFTER;
    let mut all_ok = true;
    let mut some_impossible = false;
    for groups in s.task.placement.values() {
        let mut ok = false;
        let mut possible = false;
        for owners in groups {
            let q = s.task.quorum.required(owners.len());
            let said = |n: &NodeId| s.says.get(n).copied().unwrap_or(NodeSays::Nothing);
            let succ = owners
                .iter()
                .filter(|n| said(n) == NodeSays::Succeeded)
                .count();
            let pend = owners
                .iter()
                .filter(|n| match said(n) {
                    NodeSays::Enqueued | NodeSays::Processing => true,
                    NodeSays::Nothing => !lost,
                    _ => false,
                })
                .count();
            ok |= succ >= q;
            possible |= succ + pend >= q;
        }
        all_ok &= ok;
        some_impossible |= !possible;
    }
    (all_ok, some_impossible)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn status_is_sound(s in scenario()) {
        let v = aggregate(&s.task, &views(&s), s.now, LOST_AFTER);
        let (all_ok, impossible) = reference(&s);
        match v.status {
            TaskStatus::Succeeded => prop_assert!(all_ok, "succeeded without a quorum everywhere"),
            TaskStatus::Failed | TaskStatus::Canceled => prop_assert!(impossible),
            TaskStatus::Enqueued | TaskStatus::Processing => prop_assert!(!all_ok && !impossible),
        }
        if all_ok {
            prop_assert_eq!(v.status, TaskStatus::Succeeded);
        }
        prop_assert_eq!(&v.meili["status"], &json!(v.status.as_str()));
        prop_assert_eq!(v.meili["finishedAt"].is_null(), v.finished_at.is_none());
        if !v.status.is_finished() {
            prop_assert!(v.meili["finishedAt"].is_null() && v.meili["duration"].is_null());
        }
    }

    #[test]
    fn never_stuck_once_nodes_stop_answering(mut s in scenario()) {
        // Nodes that had not finished stop answering; lost_after has passed.
        for says in s.says.values_mut() {
            if !says.terminal() {
                *says = NodeSays::Nothing;
            }
        }
        s.now = s.now.max(ENQUEUED + LOST_AFTER);
        let v = aggregate(&s.task, &views(&s), s.now, LOST_AFTER);
        prop_assert!(v.status.is_finished(), "stuck {:?}", v.status);
        prop_assert!(v.finished_at.is_some() || v.status == TaskStatus::Succeeded);
    }

    #[test]
    fn output_is_deterministic(s in scenario(), rot in 0usize..8) {
        let nt = views(&s);
        let a = aggregate(&s.task, &nt, s.now, LOST_AFTER);
        let b = aggregate(&s.task, &nt, s.now, LOST_AFTER);
        prop_assert_eq!(&a, &b);
        // The order in which node tasks were recorded does not matter.
        let mut shuffled = s.task.clone();
        if !shuffled.node_tasks.is_empty() {
            let k = rot % shuffled.node_tasks.len();
            shuffled.node_tasks.rotate_left(k);
            shuffled.node_tasks.reverse();
        }
        let c = aggregate(&shuffled, &nt, s.now, LOST_AFTER);
        prop_assert_eq!(&a, &c);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Every instant from year 0 to 9999 survives formatting and parsing, in Meilisearch's shape.
    #[test]
    fn timestamps_round_trip(t in -62_167_219_200_000_000_000i128..253_402_300_799_999_999_999i128) {
        use miroir_core::tasks::time::{format_rfc3339, parse_rfc3339};
        let s = format_rfc3339(t);
        prop_assert_eq!(parse_rfc3339(&s), Some(t), "{}", s);
        prop_assert!(s.ends_with('Z'));
        if let Some(dot) = s.find('.') {
            // Fraction present only when non-zero, trailing zeros trimmed, at most nine digits.
            prop_assert!(!s.ends_with("0Z"), "{}", s);
            prop_assert!((1..=9).contains(&(s.len() - dot - 2)), "{}", s);
        } else {
            prop_assert_eq!(t.rem_euclid(1_000_000_000), 0);
        }
    }

    /// Following `next` from page to page visits every matching task exactly once, in order.
    #[test]
    fn pages_cover_the_matching_tasks(
        statuses in proptest::collection::vec(0usize..5, 0..40),
        limit in 0u32..7,
        reverse in any::<bool>(),
        wanted in 0usize..5,
    ) {
        use miroir_core::tasks::{TaskFilter, TaskView};
        let tasks: Vec<TaskView> = statuses
            .iter()
            .enumerate()
            .map(|(uid, &s)| TaskView {
                uid: uid as u64,
                batch_uid: Some(uid as u64),
                index_uid: Some("movies".into()),
                status: TaskStatus::ALL[s],
                task_type: TaskType::DocumentAdditionOrUpdate,
                canceled_by: None,
                enqueued_at: uid as i128,
                started_at: None,
                finished_at: None,
                miroir_pending_replicas: 0,
                meili: json!({"uid": uid}),
            })
            .collect();
        let status = TaskStatus::ALL[wanted].as_str();
        let mut expected: Vec<u64> = tasks
            .iter()
            .filter(|t| t.status == TaskStatus::ALL[wanted])
            .map(|t| t.uid)
            .collect();
        if !reverse {
            expected.reverse();
        }
        let limit_s = limit.max(1).to_string();
        let reverse_s = reverse.to_string();
        let mut seen = Vec::new();
        let mut from: Option<String> = None;
        for _ in 0..50 {
            let mut q = vec![("statuses", status.to_string()), ("limit", limit_s.clone()), ("reverse", reverse_s.clone())];
            if let Some(f) = &from {
                q.push(("from", f.clone()));
            }
            let page = TaskFilter::from_list_query(q).unwrap().paginate(&tasks);
            prop_assert_eq!(&page["total"], &json!(expected.len()));
            seen.extend(page["results"].as_array().unwrap().iter().map(|t| t["uid"].as_u64().unwrap()));
            match page["next"].as_u64() {
                Some(n) => from = Some(n.to_string()),
                None => break,
            }
        }
        prop_assert_eq!(seen, expected);
    }
}
