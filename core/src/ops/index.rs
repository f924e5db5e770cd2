//! Creating an index on every node, all or nothing.
//!
//! States: `Probing` (`GET /indexes/{uid}` on every node: where does the index exist already?) → `Creating`
//! (the index creation, then Miroir's own settings such as `_miroir_shard` filterable, each a write every node
//! must acknowledge) → `Created`, or `RolledBack` (the index deleted on every node) when a step was not
//! acknowledged everywhere.
//!
//! Invariants:
//! - a creation that was not acknowledged everywhere is never left half-done silently: the client gets the
//!   failure, and the index is rolled back when that is safe;
//! - a rollback deletes the index only on nodes that answered the probe that they lacked it, and only when no
//!   node had it, so it never deletes an index that existed before; when some node had it, the index exists in
//!   the fleet and the creation brings it to the nodes that lack it (those that have it fail their task with
//!   `index_already_exists`, as a single Meilisearch node does).

use super::Method;
use crate::topology::NodeId;

/// What the probe found: which nodes answered that they lack the index, and whether any node has it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Probe {
    /// Nodes that answered 404: a rollback may delete the index there.
    pub absent: Vec<NodeId>,
    /// Whether some node answered 200: the index exists in the fleet already.
    pub present: bool,
}

/// Reads the probe: each node's answer to `GET /indexes/{uid}` (`None` = no answer or not a Meilisearch
/// answer). 200 means the node has the index, 404 that it does not; anything else says nothing.
pub fn probe(answers: impl IntoIterator<Item = (NodeId, Option<u16>)>) -> Probe {
    let mut p = Probe::default();
    for (node, status) in answers {
        match status {
            Some(200) => p.present = true,
            Some(404) => p.absent.push(node),
            _ => {}
        }
    }
    p.absent.sort();
    p
}

/// The nodes to roll a creation back on when a step was not acknowledged everywhere: the nodes that said they
/// lacked the index (deleting it there only undoes this creation). When some node already had the index, the
/// index exists in the fleet: nothing is rolled back, and the creation (or the next attempt) completes it.
pub fn rollback_targets(probe: &Probe, created: bool, configured: bool) -> Vec<NodeId> {
    if probe.present || (created && configured) {
        Vec::new()
    } else {
        probe.absent.clone()
    }
}

/// The request that rolls a creation back on one node.
pub fn rollback_request(index_uid: &str) -> (Method, String) {
    (Method::Delete, format!("/indexes/{index_uid}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> NodeId {
        NodeId::from(s)
    }

    #[test]
    fn rolls_back_only_what_it_created() {
        let p = probe([(n("b"), Some(404)), (n("a"), Some(404)), (n("c"), None)]);
        assert_eq!(
            p,
            Probe {
                absent: vec![n("a"), n("b")],
                present: false
            }
        );
        assert_eq!(
            rollback_targets(&p, false, false),
            vec![n("a"), n("b")],
            "a silent node is left alone"
        );
        assert_eq!(
            rollback_targets(&p, true, false),
            vec![n("a"), n("b")],
            "created but not configured: undo"
        );
        assert!(rollback_targets(&p, true, true).is_empty());
        let existing = probe([
            (n("a"), Some(404)),
            (n("b"), Some(200)),
            (n("c"), Some(503)),
        ]);
        assert!(existing.present);
        assert!(
            rollback_targets(&existing, false, false).is_empty(),
            "never delete an index the fleet had"
        );
        assert_eq!(
            rollback_request("movies"),
            (Method::Delete, "/indexes/movies".to_string())
        );
    }
}
