//! Replicas converge: after the liveness phase, every owner of a shard holds the same state for every
//! document whose fate the history determines, and that state is the acknowledged one.
//!
//! Documents whose last writes are in doubt (rejected or unanswered) are not judged here: such a write may
//! have reached some replicas and not others. Hinted handoff brings most of them back together, but a write a
//! crashed proxy sent without recording its hint needs anti-entropy, which does not exist yet.

use super::{show, FleetView};
use crate::history::Expect;
use std::collections::BTreeMap;

pub fn check(expect: &BTreeMap<String, Expect>, fleet: &FleetView) -> Result<(), String> {
    for (id, e) in expect {
        let Expect::Exactly(want) = e else { continue };
        let shard = fleet.shard_of(id) as usize;
        let Some(owners) = fleet.owners.get(shard) else {
            return Err(format!(
                "document {id:?} maps to shard {shard}, which has no owners"
            ));
        };
        for node in owners {
            let got = fleet.state_on(node, id);
            if &got != want {
                return Err(format!(
                    "document {id:?} (shard {shard}): node {node} holds {} but the acknowledged state is {}",
                    show(&got),
                    show(want)
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn fires_when_one_replica_diverges() {
        let id = "42".to_string();
        let mut fleet = FleetView {
            shards: 2,
            owners: vec![Default::default(); 2],
            ..Default::default()
        };
        let shard = fleet.shard_of(&id) as usize;
        fleet.owners[shard] = ["a".to_string(), "b".to_string()].into_iter().collect();
        let stored = json!({"id": 42, "v": 1, "_miroir_shard": shard})
            .as_object()
            .unwrap()
            .clone();
        let client = json!({"id": 42, "v": 1}).as_object().unwrap().clone();
        for n in ["a", "b"] {
            fleet.nodes.insert(
                n.into(),
                [(id.clone(), stored.clone())].into_iter().collect(),
            );
        }
        let expect: BTreeMap<_, _> = [(id.clone(), Expect::Exactly(Some(client)))]
            .into_iter()
            .collect();
        assert!(check(&expect, &fleet).is_ok());
        fleet.nodes.get_mut("b").unwrap().clear(); // planted: replica b missed the write
        assert!(check(&expect, &fleet).unwrap_err().contains("node b"));
        let doubtful: BTreeMap<_, _> = [(id, Expect::OneOf(vec![None]))].into_iter().collect();
        assert!(
            check(&doubtful, &fleet).is_ok(),
            "documents in doubt are left to repair"
        );
    }
}
