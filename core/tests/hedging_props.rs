//! Hedged covering reads keep the exactly-once rule: whatever the order of answers, failures, late
//! duplicates and hedge timeouts, every shard in scope is answered by exactly one accepted answer or is
//! unavailable, and no accepted answers overlap.

use miroir_core::ops::cover::{CoverOptions, CoverOutcome, CoverRead, HedgePolicy, PROBE_ID};
use miroir_core::routing::Placement;
use miroir_core::topology::{Node, NodeId, Topology};
use proptest::prelude::*;
use serde_json::{json, Map};
use std::collections::{BTreeMap, BTreeSet};

fn placement(nodes: usize, rf: u32, shards: u32) -> Placement {
    Placement::new(&Topology {
        epoch: 1,
        shards,
        replication_factor: rf,
        replica_groups: 1,
        nodes: (0..nodes)
            .map(|i| Node::active(format!("n{i}"), format!("http://n{i}"), 0))
            .collect(),
    })
    .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn every_shard_once_whatever_the_event_order(
        nodes in 2usize..5,
        rf_pick in 0u32..3,
        shards in 1u32..12,
        scope_mask in any::<u16>(),
        ranked in any::<bool>(),
        max_hedges in 0u32..4,
        events in prop::collection::vec((any::<u8>(), 0u8..10), 1..80),
    ) {
        let rf = 1 + rf_pick % nodes as u32;
        let p = placement(nodes, rf, shards);
        let scope: Option<Vec<u32>> = (scope_mask % 3 != 0)
            .then(|| (0..shards).filter(|s| scope_mask >> (s % 16) & 1 == 1).collect());
        let options = CoverOptions {
            ranking: if ranked { (0..nodes).rev().map(|i| NodeId::new(format!("n{i}"))).collect() } else { vec![] },
            scope: scope.clone(),
            hedge: Some(HedgePolicy { max_hedges, delays: BTreeMap::new(), default_delay: 5 }),
            ..CoverOptions::default()
        };
        let mut r = CoverRead::with_options("/x".into(), Map::new(), &p, &|_| true, options);
        let mut now = 0u64;
        let mut outstanding: Vec<usize> = Vec::new();
        let mut i = 0;
        while r.outcome().is_none() {
            outstanding.extend(r.take_requests_at(now).iter().map(|q| q.id));
            if outstanding.is_empty() {
                break;
            }
            // After the scripted events, answer in order until the read ends.
            let (pick, what) = events.get(i).copied().unwrap_or((0, 0));
            i += 1;
            let k = pick as usize % outstanding.len();
            match what {
                0..=5 => {
                    let id = outstanding.swap_remove(k);
                    r.on_response(id, 200, json!({"id": id}));
                }
                6 => {
                    let id = outstanding.swap_remove(k);
                    r.on_failure(id);
                }
                7 => {
                    let id = outstanding.swap_remove(k);
                    r.on_response(id, 503, json!({}));
                }
                _ => {
                    now += 5;
                    r.on_timeout(now);
                }
            }
            // a probe answer is never taken
            r.on_response(PROBE_ID, 200, json!({}));
        }
        // late duplicates after the end change nothing
        let before = r.outcome();
        for id in outstanding {
            r.on_response(id, 200, json!({"late": true}));
        }
        prop_assert_eq!(r.outcome(), before.clone());
        let Some(CoverOutcome::Answers { answers, unavailable }) = before else {
            return Err(TestCaseError::fail("the read ends with answers"));
        };
        let mut seen = BTreeSet::new();
        for a in &answers {
            for s in &a.shards {
                prop_assert!(seen.insert(*s), "shard {} answered twice", s);
            }
        }
        let want: BTreeSet<u32> = scope.map(|s| s.into_iter().collect()).unwrap_or_else(|| (0..shards).collect());
        let got: BTreeSet<u32> = seen.union(&unavailable.iter().copied().collect()).copied().collect();
        prop_assert_eq!(got, want);
        prop_assert!(unavailable.iter().all(|s| !seen.contains(s)));
        let (fired, won) = r.hedges();
        prop_assert!(won <= fired);
    }
}
