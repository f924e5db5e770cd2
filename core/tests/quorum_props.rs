//! Property tests of the write-quorum tracker against a brute-force reference.

use miroir_core::quorum::{NodeOutcome, QuorumTracker, ShardOwners, WriteDecision, WriteQuorum};
use miroir_core::topology::NodeId;
use miroir_core::MeiliError;
use proptest::prelude::*;
use std::collections::BTreeMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Ack,
    Client,
    Server,
    Timeout,
}

fn outcome(kind: Kind) -> NodeOutcome {
    match kind {
        Kind::Ack => NodeOutcome::Ack { task_uid: 1 },
        Kind::Client => {
            NodeOutcome::Failed(MeiliError::invalid(400, "invalid_document_id", "bad id"))
        }
        Kind::Server => NodeOutcome::Failed(MeiliError::internal("boom")),
        Kind::Timeout => NodeOutcome::TimedOut,
    }
}

/// A random write: placement plus one outcome per node, in a random order.
fn scenario() -> impl Strategy<Value = (ShardOwners, WriteQuorum, Vec<(NodeId, Kind)>)> {
    (1usize..4, 1usize..4, 1usize..4, 0usize..3).prop_flat_map(|(shards, groups, rf, q)| {
        let nodes_per_group = rf + 1;
        let quorum = [WriteQuorum::Majority, WriteQuorum::One, WriteQuorum::All][q];
        let owner_picks = proptest::collection::vec(
            proptest::sample::subsequence((0..nodes_per_group).collect::<Vec<_>>(), rf),
            shards * groups,
        );
        let kinds = proptest::collection::vec(
            prop_oneof![
                4 => Just(Kind::Ack),
                1 => Just(Kind::Client),
                1 => Just(Kind::Server),
                2 => Just(Kind::Timeout)
            ],
            groups * nodes_per_group,
        );
        (owner_picks, kinds, Just(quorum)).prop_flat_map(move |(picks, kinds, quorum)| {
            let mut placement = ShardOwners::new();
            for s in 0..shards {
                let per_group = (0..groups)
                    .map(|g| {
                        picks[s * groups + g]
                            .iter()
                            .map(|i| NodeId::new(format!("g{g}-n{i}")))
                            .collect()
                    })
                    .collect();
                placement.insert(s as u32 * 3, per_group);
            }
            let events: Vec<(NodeId, Kind)> = (0..groups)
                .flat_map(|g| (0..nodes_per_group).map(move |i| (g, i)))
                .map(|(g, i)| {
                    (
                        NodeId::new(format!("g{g}-n{i}")),
                        kinds[g * nodes_per_group + i],
                    )
                })
                .collect();
            (Just(placement), Just(quorum), Just(events).prop_shuffle())
        })
    })
}

/// Reference: (every shard has quorum acks in some group, some shard is impossible in every group).
fn reference(
    placement: &ShardOwners,
    quorum: WriteQuorum,
    states: &BTreeMap<NodeId, Option<Kind>>,
) -> (bool, bool) {
    let mut all_reached = true;
    let mut some_impossible = false;
    for groups in placement.values() {
        let mut reached = false;
        let mut possible = false;
        for owners in groups {
            let q = quorum.required(owners.len());
            let acks = owners
                .iter()
                .filter(|n| states.get(*n) == Some(&Some(Kind::Ack)))
                .count();
            let pending = owners
                .iter()
                .filter(|n| matches!(states.get(*n), Some(None) | None))
                .count();
            reached |= acks >= q;
            possible |= acks + pending >= q;
        }
        all_reached &= reached;
        some_impossible |= !possible;
    }
    (all_reached, some_impossible)
}

fn kind_of(d: Option<WriteDecision>) -> Option<bool> {
    d.map(|d| matches!(d, WriteDecision::Acknowledged { .. }))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn decisions_follow_the_reference((placement, quorum, events) in scenario()) {
        let mut tracker = QuorumTracker::new(placement.clone(), quorum, 100);
        let mut states: BTreeMap<NodeId, Option<Kind>> = BTreeMap::new();
        for groups in placement.values() {
            for n in groups.iter().flatten() {
                states.insert(n.clone(), None);
            }
        }
        let mut decided: Option<WriteDecision> = tracker.decision();
        for (node, kind) in &events {
            tracker.on_node_outcome(node, outcome(*kind));
            if states.contains_key(node) {
                states.insert(node.clone(), Some(*kind));
            }
            match (&decided, tracker.decision()) {
                // Monotone: once taken, the decision never changes.
                (Some(before), now) => prop_assert_eq!(Some(before.clone()), now),
                (None, None) => {
                    let (reached, impossible) = reference(&placement, quorum, &states);
                    prop_assert!(!reached && !impossible, "undecided although decidable");
                }
                (None, Some(now)) => {
                    let (reached, impossible) = reference(&placement, quorum, &states);
                    match &now {
                        WriteDecision::Acknowledged { degraded } => {
                            prop_assert!(reached, "acknowledged without quorum everywhere");
                            for n in &degraded.pending_nodes {
                                prop_assert_eq!(states.get(n), Some(&None));
                            }
                        }
                        WriteDecision::Rejected(e) => {
                            prop_assert!(impossible, "rejected although still possible");
                            prop_assert!(e.status == 503 || e.code == "invalid_document_id");
                        }
                    }
                    decided = Some(now);
                }
            }
        }
        // Every node answered: a decision exists and matches the final state.
        let (reached, impossible) = reference(&placement, quorum, &states);
        prop_assert!(reached != impossible);
        prop_assert_eq!(kind_of(tracker.decision()), Some(reached));
    }

    #[test]
    fn final_decision_kind_is_order_independent(
        (placement, quorum, events) in scenario(),
        seed in any::<u64>(),
    ) {
        let run = |order: &[(NodeId, Kind)]| {
            let mut t = QuorumTracker::new(placement.clone(), quorum, 100);
            for (n, k) in order {
                t.on_node_outcome(n, outcome(*k));
            }
            kind_of(t.decision())
        };
        let mut other = events.clone();
        // A deterministic rotation/reversal driven by the seed gives a second order.
        if !other.is_empty() {
            let k = (seed as usize) % other.len();
            other.rotate_left(k);
            if seed % 2 == 0 {
                other.reverse();
            }
        }
        prop_assert_eq!(run(&events), run(&other));
    }

    #[test]
    fn timeout_always_decides((placement, quorum, events) in scenario(), cut in 0usize..8) {
        let mut t = QuorumTracker::new(placement, quorum, 100);
        for (n, k) in events.iter().take(cut) {
            t.on_node_outcome(n, outcome(*k));
        }
        if t.decision().is_none() {
            prop_assert_eq!(t.poll_timeout(), Some(100));
        }
        t.on_timeout(100);
        prop_assert!(t.decision().is_some());
        prop_assert_eq!(t.poll_timeout(), None);
    }
}
