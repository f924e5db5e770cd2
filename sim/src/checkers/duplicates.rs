//! No duplicate across shards: every stored document sits on an owner of the shard its id hashes to, and its
//! `_miroir_shard` field names that shard. A document on a non-owner would be counted twice by searches that
//! cover both nodes.

use super::FleetView;
use serde_json::Value;

pub fn check(fleet: &FleetView) -> Result<(), String> {
    for (node, docs) in &fleet.nodes {
        for (id, doc) in docs {
            let shard = fleet.shard_of(id);
            let owners = fleet.owners.get(shard as usize);
            if !owners.is_some_and(|o| o.contains(node)) {
                return Err(format!("document {id:?} (shard {shard}) is stored on node {node}, which does not own that shard"));
            }
            if doc.get(miroir_core::SHARD_FIELD) != Some(&Value::from(shard)) {
                return Err(format!(
                    "document {id:?} on node {node} is tagged {:?} but belongs to shard {shard}",
                    doc.get(miroir_core::SHARD_FIELD)
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
    use std::collections::BTreeMap;

    #[test]
    fn fires_on_a_document_outside_its_owners_or_mistagged() {
        let id = "5".to_string();
        let mut fleet = FleetView {
            shards: 3,
            owners: vec![Default::default(); 3],
            ..Default::default()
        };
        let shard = fleet.shard_of(&id);
        fleet.owners[shard as usize].insert("a".into());
        let good = json!({"id": 5, "_miroir_shard": shard})
            .as_object()
            .unwrap()
            .clone();
        fleet.nodes.insert(
            "a".into(),
            [(id.clone(), good.clone())].into_iter().collect(),
        );
        assert!(check(&fleet).is_ok());
        fleet
            .nodes
            .insert("b".into(), [(id.clone(), good)].into_iter().collect()); // planted: a stray copy
        assert!(check(&fleet).unwrap_err().contains("node b"));
        fleet.nodes.remove("b");
        let wrong = json!({"id": 5, "_miroir_shard": shard + 1})
            .as_object()
            .unwrap()
            .clone();
        fleet
            .nodes
            .insert("a".into(), BTreeMap::from([(id, wrong)])); // planted: wrong tag
        assert!(check(&fleet).unwrap_err().contains("tagged"));
    }
}
