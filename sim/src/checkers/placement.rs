//! Every document lives on exactly its owners under the placement in force after quiescence (the new one
//! after a migration; after a resharding, the index in force with its S, so the view is built from that index
//! and `fleet.shards` is the new S): never on a node that does not own its shard (a leaving owner that was not cleaned,
//! a copy sent to the wrong node), and on every owner of its shard when its fate is determined (a target that
//! was cut over without the document). Documents whose last writes are in doubt may sit on some owners only
//! (a write that reached part of its replicas); those are left to repair.

use super::FleetView;
use crate::history::Expect;
use std::collections::{BTreeMap, BTreeSet};

pub fn check(expect: &BTreeMap<String, Expect>, fleet: &FleetView) -> Result<(), String> {
    let mut stored: BTreeSet<&String> = BTreeSet::new();
    for (node, docs) in &fleet.nodes {
        for id in docs.keys() {
            let shard = fleet.shard_of(id);
            if !fleet
                .owners
                .get(shard as usize)
                .is_some_and(|o| o.contains(node))
            {
                return Err(format!(
                    "document {id:?} (shard {shard}) is still on node {node}, which does not own that shard under the placement in force"
                ));
            }
            stored.insert(id);
        }
    }
    for id in stored {
        if matches!(expect.get(id), Some(Expect::OneOf(_))) {
            continue;
        }
        let shard = fleet.shard_of(id);
        for owner in fleet.owners.get(shard as usize).into_iter().flatten() {
            if !fleet.nodes.get(owner).is_some_and(|d| d.contains_key(id)) {
                return Err(format!(
                    "document {id:?} (shard {shard}) is missing on its owner {owner} under the placement in force"
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
    fn fires_on_a_stray_copy_and_on_a_missing_owner() {
        let id = "5".to_string();
        let mut fleet = FleetView {
            shards: 2,
            owners: vec![Default::default(); 2],
            ..Default::default()
        };
        let shard = fleet.shard_of(&id) as usize;
        fleet.owners[shard] = ["a".to_string(), "b".to_string()].into_iter().collect();
        let doc = json!({"id": 5, "_miroir_shard": shard})
            .as_object()
            .unwrap()
            .clone();
        for n in ["a", "b"] {
            fleet
                .nodes
                .insert(n.into(), [(id.clone(), doc.clone())].into_iter().collect());
        }
        fleet.nodes.insert("c".into(), BTreeMap::new());
        let expect = BTreeMap::new();
        assert!(check(&expect, &fleet).is_ok());
        // planted: the leaving owner c was not cleaned
        fleet
            .nodes
            .get_mut("c")
            .unwrap()
            .insert(id.clone(), doc.clone());
        assert!(check(&expect, &fleet).unwrap_err().contains("node c"));
        fleet.nodes.get_mut("c").unwrap().clear();
        // planted: the new owner b was cut over without the document
        fleet.nodes.get_mut("b").unwrap().clear();
        assert!(check(&expect, &fleet).unwrap_err().contains("owner b"));
        // in doubt: left to repair
        let doubtful: BTreeMap<_, _> = [(id, Expect::OneOf(vec![None]))].into_iter().collect();
        assert!(check(&doubtful, &fleet).is_ok());
    }

    /// After a resharding the view has the new S: a document left where the old S placed it is caught.
    #[test]
    fn fires_on_a_document_placed_by_the_old_s_after_a_resharding() {
        use miroir_core::routing::shard_for_key;
        let (old_s, new_s) = (4u32, 16u32);
        // owners by shard number modulo 3; an id whose owner differs between the two S
        let owner = |s: u32| ["a", "b", "c"][(s % 3) as usize];
        let id = (0..1000)
            .map(|i| i.to_string())
            .find(|id| owner(shard_for_key(id, old_s)) != owner(shard_for_key(id, new_s)))
            .unwrap();
        let mut fleet = FleetView {
            shards: new_s,
            owners: (0..new_s)
                .map(|s| [owner(s).to_string()].into_iter().collect())
                .collect(),
            ..Default::default()
        };
        let doc = json!({"id": id}).as_object().unwrap().clone();
        let stale = owner(shard_for_key(&id, old_s));
        let right = owner(shard_for_key(&id, new_s));
        fleet.nodes.insert(stale.into(), BTreeMap::new());
        fleet.nodes.insert(right.into(), BTreeMap::new());
        fleet
            .nodes
            .get_mut(right)
            .unwrap()
            .insert(id.clone(), doc.clone());
        let expect = BTreeMap::new();
        assert!(check(&expect, &fleet).is_ok());
        fleet.nodes.get_mut(right).unwrap().clear();
        fleet.nodes.get_mut(stale).unwrap().insert(id, doc);
        assert!(check(&expect, &fleet).is_err());
    }
}
