//! Replicas converge: after the liveness phase, every owner of a shard holds the same state for every
//! document whose fate the history determines, and that state is the acknowledged one.
//!
//! Documents whose last writes are in doubt (rejected or unanswered) are not judged by [`check`]: such a write
//! may have reached some replicas and not others. After an anti-entropy pass, [`identical`] judges them all:
//! every owner of a shard holds exactly the same stored documents (version stamp included).

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

/// Every owner of every shard holds the same stored documents: the same ids, each with the same content and
/// version (`_miroir_*` fields included).
pub fn identical(fleet: &FleetView) -> Result<(), String> {
    for (shard, owners) in fleet.owners.iter().enumerate() {
        let mut ids: std::collections::BTreeSet<&String> = Default::default();
        for node in owners {
            if let Some(docs) = fleet.nodes.get(node) {
                ids.extend(
                    docs.keys()
                        .filter(|id| fleet.shard_of(id) as usize == shard),
                );
            }
        }
        for id in ids {
            let states: Vec<(&String, Option<&crate::history::Doc>)> = owners
                .iter()
                .map(|n| (n, fleet.nodes.get(n).and_then(|d| d.get(id))))
                .collect();
            if let Some((first_node, first)) = states.first() {
                if let Some((node, got)) = states.iter().find(|(_, s)| s != first) {
                    let show_raw = |d: &Option<&crate::history::Doc>| show(&d.cloned());
                    return Err(format!(
                        "document {id:?} (shard {shard}) differs between replicas after anti-entropy: node {first_node} holds {} and node {node} holds {}",
                        show_raw(first),
                        show_raw(got)
                    ));
                }
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
        let doubtful: BTreeMap<_, _> = [(id.clone(), Expect::OneOf(vec![None]))]
            .into_iter()
            .collect();
        assert!(
            check(&doubtful, &fleet).is_ok(),
            "documents in doubt are left to repair"
        );
        assert!(
            identical(&fleet)
                .unwrap_err()
                .contains("node b holds absent"),
            "after anti-entropy, even documents in doubt must agree"
        );
        let mut newer = stored.clone();
        newer.insert("_miroir_v".into(), json!(9));
        fleet.nodes.get_mut("b").unwrap().insert(id.clone(), newer);
        assert!(
            identical(&fleet).unwrap_err().contains("_miroir_v"),
            "versions are compared too"
        );
        fleet.nodes.get_mut("b").unwrap().insert(id, stored);
        assert!(identical(&fleet).is_ok());
    }
}
