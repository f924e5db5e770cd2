//! Invariant checkers, one module each. Every checker is a pure function over what the run produced (the
//! client history, a god's-eye view of every node's documents, the answers the proxy gave) and returns the
//! first violation it finds. Each has a test that plants the bug it guards against and shows it fires.
//!
//! - [`lost_write`]: no acknowledged write is lost (reads through the proxy show the acknowledged state);
//! - [`resurrection`]: an acknowledged delete stays deleted on every replica;
//! - [`convergence`]: every replica of a shard holds the same state for every document whose fate is
//!   determined;
//! - [`duplicates`]: a document lives only on the owners of its shard, tagged with that shard;
//! - [`placement`]: after a migration, every document lives on exactly the owners of its shard;
//! - [`task_status`]: every acknowledged task ends `succeeded`, none stays enqueued or processing;
//! - [`idempotency`]: one Miroir task per idempotency key, whatever the retries;
//! - [`settings`]: after quiescence every node holds the same settings (changes repaired everywhere);
//! - [`oracle`]: searches through the proxy equal a single node holding the whole corpus.

pub mod convergence;
pub mod duplicates;
pub mod idempotency;
pub mod lost_write;
pub mod oracle;
pub mod placement;
pub mod resurrection;
pub mod settings;
pub mod task_status;

use crate::history::Doc;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

/// Every node's documents of the index under test, read directly from the node models.
#[derive(Debug, Clone, Default)]
pub struct FleetView {
    /// S.
    pub shards: u32,
    /// For each shard, its owners in every group.
    pub owners: Vec<BTreeSet<String>>,
    /// Each node's documents by canonical id, as stored (with `_miroir_shard`).
    pub nodes: BTreeMap<String, BTreeMap<String, Doc>>,
}

impl FleetView {
    /// The shard of a document id.
    pub fn shard_of(&self, id: &str) -> u32 {
        miroir_core::routing::shard_for_key(id, self.shards)
    }

    /// What `node` holds for `id`, without Miroir's fields.
    pub fn state_on(&self, node: &str, id: &str) -> Option<Doc> {
        self.nodes
            .get(node)
            .and_then(|docs| docs.get(id))
            .map(client_view)
    }
}

/// A stored document as the client sees it: every `_miroir_*` field removed.
pub fn client_view(doc: &Doc) -> Doc {
    doc.iter()
        .filter(|(k, _)| !k.starts_with(miroir_core::RESERVED_PREFIX))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// A compact rendering of a document state for messages.
pub fn show(state: &Option<Doc>) -> String {
    match state {
        Some(d) => Value::Object(d.clone()).to_string(),
        None => "absent".into(),
    }
}
