//! Property tests of placement and covering plans.

use miroir_core::routing::Placement;
use miroir_core::topology::{GroupId, Node, NodeId, ShardId, Topology};
use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet};

/// A topology whose group `g` has `per_group[g]` active nodes named `meili-{i}` (i counts across groups).
fn topology(shards: u32, rf: u32, per_group: &[u32]) -> Topology {
    let mut nodes = Vec::new();
    let mut i = 0;
    for (g, count) in per_group.iter().enumerate() {
        for _ in 0..*count {
            nodes.push(Node::active(
                format!("meili-{i}"),
                format!("http://meili-{i}:7700"),
                g as GroupId,
            ));
            i += 1;
        }
    }
    Topology {
        epoch: 1,
        shards,
        replication_factor: rf,
        replica_groups: per_group.len() as u32,
        nodes,
    }
}

/// (rf, nodes per group) with every group holding at least rf nodes.
fn groups_strategy(max_nodes: u32) -> impl Strategy<Value = (u32, Vec<u32>)> {
    (1u32..=2).prop_flat_map(move |rf| {
        (
            Just(rf),
            prop::collection::vec(rf..=max_nodes.max(rf), 1..=3usize),
        )
    })
}

fn slots(p: &Placement, group: GroupId) -> BTreeSet<(ShardId, NodeId)> {
    (0..p.shards())
        .flat_map(|s| p.owners(s, group).iter().map(move |n| (s, n.clone())))
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn placement_is_deterministic((rf, groups) in groups_strategy(6), shards in 1u32..96) {
        let t = topology(shards, rf, &groups);
        let a = Placement::new(&t).unwrap();
        let mut shuffled = t.clone();
        shuffled.nodes.reverse();
        let b = Placement::new(&shuffled).unwrap();
        prop_assert_eq!(&a, &Placement::new(&t).unwrap());
        for s in 0..shards {
            for g in 0..groups.len() as u32 {
                prop_assert_eq!(a.owners(s, g), b.owners(s, g));
            }
        }
        let healthy = |id: &NodeId| !id.as_str().ends_with('1');
        prop_assert_eq!(a.cover(&healthy, 0, 3), a.cover(&healthy, 0, 3));
    }

    #[test]
    fn adding_a_node_moves_little_and_only_in_its_group(
        (rf, groups) in groups_strategy(12),
        mult in 1u32..=8,
        target in 0usize..3,
    ) {
        let target = target % groups.len();
        let ng = groups[target];
        let shards = 8 * ng * mult / 2 + 3;
        let before = topology(shards, rf, &groups);
        let mut after = before.clone();
        after.nodes.push(Node::active("meili-new", "http://meili-new:7700", target as GroupId));
        let p0 = Placement::new(&before).unwrap();
        let p1 = Placement::new(&after).unwrap();
        for g in 0..groups.len() as GroupId {
            let (s0, s1) = (slots(&p0, g), slots(&p1, g));
            if g as usize == target {
                let moved = s0.difference(&s1).count() as f64;
                let ideal = f64::from(shards * rf) / f64::from(ng + 1);
                // Rendezvous alone would move ~ideal; the capacity bound can cascade up to about twice that.
                prop_assert!(
                    moved <= 2.5 * ideal + 2.0 * f64::from(rf),
                    "moved {} slots, ideal {:.1} (S={}, RF={}, n={})", moved, ideal, shards, rf, ng
                );
                // The new node takes about its fair share.
                let taken = s1.iter().filter(|(_, n)| n.as_str() == "meili-new").count() as f64;
                prop_assert!((taken - ideal).abs() <= 1.0 + f64::from(rf));
            } else {
                prop_assert_eq!(s0, s1);
            }
        }
    }

    #[test]
    fn loads_are_balanced((rf, groups) in groups_strategy(16), extra in 0u32..64) {
        for (g, &ng) in groups.iter().enumerate() {
            let _ = g;
            prop_assume!(ng >= rf);
        }
        let max_ng = *groups.iter().max().unwrap();
        let shards = 8 * max_ng + extra;
        let t = topology(shards, rf, &groups);
        let p = Placement::new(&t).unwrap();
        for (g, &ng) in groups.iter().enumerate() {
            let mean = f64::from(shards * rf) / f64::from(ng);
            let (floor, ceil) = ((shards * rf) / ng, (shards * rf).div_ceil(ng));
            for node in t.placed_nodes_of_group(g as GroupId) {
                let held = p.shards_held_by(&node.id).len() as u32;
                prop_assert!(held == floor || held == ceil, "{} holds {}, not {}..={}", node.id, held, floor, ceil);
                let load = f64::from(held);
                prop_assert!(
                    (load - mean).abs() <= 0.4 * mean,
                    "node {} holds {} shards, mean {:.1}", node.id, load, mean
                );
            }
        }
    }

    #[test]
    fn every_document_slot_is_consistent((rf, groups) in groups_strategy(6), shards in 1u32..64) {
        let t = topology(shards, rf, &groups);
        let p = Placement::new(&t).unwrap();
        let mut held: BTreeMap<NodeId, Vec<ShardId>> = BTreeMap::new();
        for s in 0..shards {
            let targets = p.write_targets(s);
            prop_assert_eq!(targets.len(), (rf as usize) * groups.len());
            let distinct: BTreeSet<_> = targets.iter().collect();
            prop_assert_eq!(distinct.len(), targets.len());
            for g in 0..groups.len() as GroupId {
                for n in p.owners(s, g) {
                    prop_assert_eq!(t.node(n).unwrap().replica_group, g);
                    held.entry(n.clone()).or_default().push(s);
                }
            }
        }
        for n in &t.nodes {
            prop_assert_eq!(p.shards_held_by(&n.id), held.remove(&n.id).unwrap_or_default());
        }
    }

    #[test]
    fn healthy_cover_is_exact_and_stays_in_the_preferred_group(
        (rf, groups) in groups_strategy(6),
        shards in 1u32..64,
        preferred in 0u32..3,
        rotation in any::<u64>(),
    ) {
        let t = topology(shards, rf, &groups);
        let p = Placement::new(&t).unwrap();
        let plan = p.cover(&|_| true, preferred, rotation);
        prop_assert!(plan.unavailable.is_empty());
        let pg = preferred % groups.len() as u32;
        let mut seen = vec![0u32; shards as usize];
        for (node, nc) in &plan.assignments {
            prop_assert_eq!(t.node(node).unwrap().replica_group, pg);
            prop_assert!(!nc.shards.is_empty());
            prop_assert!(nc.shards.windows(2).all(|w| w[0] < w[1]));
            prop_assert_eq!(&nc.held, &p.shards_held_by(node));
            prop_assert_eq!(nc.covers_all_held, nc.shards == nc.held);
            for s in &nc.shards {
                prop_assert!(p.owners(*s, pg).contains(node));
                seen[*s as usize] += 1;
            }
        }
        prop_assert!(seen.iter().all(|&c| c == 1));
    }

    #[test]
    fn cover_under_failures(
        (rf, groups) in groups_strategy(5),
        shards in 1u32..48,
        preferred in 0u32..3,
        rotation in any::<u64>(),
        down_mask in any::<u32>(),
    ) {
        let t = topology(shards, rf, &groups);
        let p = Placement::new(&t).unwrap();
        let down: BTreeSet<NodeId> = t
            .nodes
            .iter()
            .enumerate()
            .filter(|(i, _)| down_mask & (1 << (i % 32)) != 0)
            .map(|(_, n)| n.id.clone())
            .collect();
        let healthy = |id: &NodeId| !down.contains(id);
        let plan = p.cover(&healthy, preferred, rotation);
        let rg = groups.len() as u32;
        let pg = preferred % rg;
        let mut seen = vec![0u32; shards as usize];
        for (node, nc) in &plan.assignments {
            prop_assert!(healthy(node), "assigned to unhealthy node {}", node);
            for s in &nc.shards {
                seen[*s as usize] += 1;
                // The answering group is the first group, from the preferred one on, with a healthy owner.
                let first = (0..rg)
                    .map(|k| (pg + k) % rg)
                    .find(|g| p.owners(*s, *g).iter().any(&healthy))
                    .unwrap();
                prop_assert!(p.owners(*s, first).contains(node));
            }
        }
        for s in 0..shards {
            let any_healthy = (0..rg).any(|g| p.owners(s, g).iter().any(&healthy));
            let unavailable = plan.unavailable.contains(&s);
            prop_assert_eq!(unavailable, !any_healthy, "shard {}", s);
            prop_assert_eq!(seen[s as usize], u32::from(any_healthy));
        }
        prop_assert!(plan.unavailable.windows(2).all(|w| w[0] < w[1]));
    }
}
