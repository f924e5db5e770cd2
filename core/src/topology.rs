//! Topology: the nodes of the fleet, their replica groups, the shard count S and the replication factor RF.
//!
//! (The validation, the epoch and the rest of this module are completed by the Foundation work.)

use serde::{Deserialize, Serialize};
use std::fmt;

/// A node's stable id (for example `meili-0`). Ids are never reused after a node is removed.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct NodeId(pub String);

impl NodeId {
    pub fn new(id: impl Into<String>) -> Self {
        NodeId(id.into())
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for NodeId {
    fn from(s: &str) -> Self {
        NodeId(s.to_string())
    }
}

/// A replica group's index, `0..RG`.
pub type GroupId = u32;

/// A shard's index, `0..S`.
pub type ShardId = u32;
