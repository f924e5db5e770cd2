//! No resurrected delete: a document whose last acknowledged write deleted it (with nothing later in doubt)
//! is absent from every node, not only from the replica a read happens to hit.

use super::FleetView;
use crate::history::Expect;
use std::collections::BTreeMap;

pub fn check(expect: &BTreeMap<String, Expect>, fleet: &FleetView) -> Result<(), String> {
    for (id, e) in expect {
        if *e != Expect::Exactly(None) {
            continue;
        }
        for (node, docs) in &fleet.nodes {
            if docs.contains_key(id) {
                return Err(format!(
                    "document {id:?} was deleted (acknowledged) but node {node} still holds it"
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
    fn fires_when_a_deleted_document_survives_on_any_replica() {
        let mut expect = BTreeMap::new();
        expect.insert("7".to_string(), Expect::Exactly(None));
        let mut fleet = FleetView {
            shards: 4,
            ..Default::default()
        };
        fleet.nodes.insert("n0".into(), BTreeMap::new());
        assert!(check(&expect, &fleet).is_ok());
        let doc = json!({"id": 7, "_miroir_shard": 1})
            .as_object()
            .unwrap()
            .clone();
        fleet
            .nodes
            .insert("n1".into(), [("7".to_string(), doc)].into_iter().collect()); // planted
        assert!(check(&expect, &fleet).unwrap_err().contains("node n1"));
    }
}
