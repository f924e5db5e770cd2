//! Topology: the nodes of the fleet, their replica groups, the shard count S and the replication factor RF.
//!
//! A [`Topology`] is a plain value, versioned by its `epoch`. It describes:
//! - `shards` (S): how many shards the logical index is split into (fixed for the life of an index);
//! - `replica_groups` (RG): how many independent copies of the whole index exist. Every group holds every shard;
//! - `replication_factor` (RF): how many nodes *inside one group* hold each shard;
//! - `nodes`: every node ever known, each belonging to exactly one group, with its membership [`NodeState`].
//!
//! # Membership states
//!
//! ```text
//!   Joining ──► Active ──► Draining ──► Removed
//! ```
//! - `Joining`: the node is known but holds no data yet. It is **not placed**: it owns no shard, receives no
//!   writes and serves no reads. The migration planner fills it, then a new epoch marks it `Active`.
//! - `Active`: placed; owns shards, receives writes, serves reads.
//! - `Draining`: **still placed**. It keeps owning, receiving and serving its shards until the migration
//!   planner has copied them to their owners in the next topology (the same topology with the node
//!   `Removed`); only then does a new epoch mark it `Removed`. Placement never changes because a node starts
//!   draining, so no read ever lands on a node that does not hold the data yet.
//! - `Removed`: not placed; kept only so that its id is never reused.
//!
//! "Placed" ([`NodeState::is_placed`]) is therefore `Active | Draining`. Health (reachable or not) is a
//! separate, fast-changing concern handled by the caller; it never changes placement.
//!
//! # Invariants kept by [`Topology::validate`]
//! S ≥ 1, RF ≥ 1, RG ≥ 1; node ids are unique and non-empty, addresses non-empty; every node's group is
//! `< RG`; every group has at least RF placed nodes (so in particular no group is empty).
//!
//! # Epochs
//! Every change produces a new topology with `epoch + 1` ([`Topology::next`]). A component holding a topology
//! only ever replaces it by one that [`Topology::is_newer_than`] it.

use crate::MeiliError;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::fmt;

/// A node's stable id (for example `meili-0`). Ids are never reused after a node is removed.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct NodeId(pub String);

impl NodeId {
    /// Wraps an id.
    pub fn new(id: impl Into<String>) -> Self {
        NodeId(id.into())
    }
    /// The id as a string slice.
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

/// A node's membership state (see the module documentation for the life cycle).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeState {
    /// Known, being filled by a migration; not placed.
    Joining,
    /// Placed: owns shards, receives writes, serves reads.
    Active,
    /// Still placed until its shards have been copied to their next owners.
    Draining,
    /// Gone; kept so its id is never reused. Not placed.
    Removed,
}

impl NodeState {
    /// Whether a node in this state takes part in shard placement (`Active` or `Draining`).
    pub fn is_placed(self) -> bool {
        matches!(self, NodeState::Active | NodeState::Draining)
    }
}

/// One Meilisearch node of the fleet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    /// Stable, unique id; the input of rendezvous placement.
    pub id: NodeId,
    /// Where the node listens, for example `http://meili-0:7700`.
    pub address: String,
    /// The replica group the node belongs to, `0..RG`.
    pub replica_group: GroupId,
    /// Membership state.
    pub state: NodeState,
}

impl Node {
    /// A node in the `Active` state.
    pub fn active(id: impl Into<String>, address: impl Into<String>, group: GroupId) -> Self {
        Node {
            id: NodeId::new(id),
            address: address.into(),
            replica_group: group,
            state: NodeState::Active,
        }
    }
}

/// The whole fleet description at one epoch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Topology {
    /// Version of this description; strictly increases with every change.
    pub epoch: u64,
    /// S, the number of shards.
    pub shards: u32,
    /// RF, how many nodes of each group hold each shard.
    pub replication_factor: u32,
    /// RG, the number of replica groups.
    pub replica_groups: u32,
    /// Every known node, in any state.
    pub nodes: Vec<Node>,
}

/// Why a topology is invalid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TopologyError {
    /// S = 0.
    ZeroShards,
    /// RF = 0.
    ZeroReplicationFactor,
    /// RG = 0.
    ZeroReplicaGroups,
    /// Two nodes share an id.
    DuplicateNodeId(NodeId),
    /// A node has an empty id.
    EmptyNodeId,
    /// A node has an empty address.
    EmptyAddress(NodeId),
    /// A node belongs to a group `>= RG`.
    GroupOutOfRange {
        node: NodeId,
        group: GroupId,
        replica_groups: u32,
    },
    /// A group has no placed (active or draining) node.
    EmptyGroup(GroupId),
    /// A group has fewer placed nodes than RF.
    NotEnoughNodes {
        group: GroupId,
        placed: u32,
        replication_factor: u32,
    },
    /// The epoch cannot be incremented any more.
    EpochExhausted,
}

impl fmt::Display for TopologyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TopologyError::ZeroShards => {
                f.write_str("Invalid topology: the number of shards must be at least 1, got 0.")
            }
            TopologyError::ZeroReplicationFactor => f.write_str(
                "Invalid topology: the replication factor must be at least 1, got 0.",
            ),
            TopologyError::ZeroReplicaGroups => f.write_str(
                "Invalid topology: the number of replica groups must be at least 1, got 0.",
            ),
            TopologyError::DuplicateNodeId(id) => {
                write!(f, "Invalid topology: the node id `{id}` is used more than once.")
            }
            TopologyError::EmptyNodeId => {
                f.write_str("Invalid topology: a node has an empty id.")
            }
            TopologyError::EmptyAddress(id) => {
                write!(f, "Invalid topology: the node `{id}` has an empty address.")
            }
            TopologyError::GroupOutOfRange {
                node,
                group,
                replica_groups,
            } => write!(
                f,
                "Invalid topology: the node `{node}` belongs to replica group {group}, but there are only {replica_groups} replica group(s) (0..{replica_groups})."
            ),
            TopologyError::EmptyGroup(group) => write!(
                f,
                "Invalid topology: replica group {group} has no active or draining node."
            ),
            TopologyError::NotEnoughNodes {
                group,
                placed,
                replication_factor,
            } => write!(
                f,
                "Invalid topology: replica group {group} has {placed} active or draining node(s), fewer than the replication factor {replication_factor}."
            ),
            TopologyError::EpochExhausted => {
                f.write_str("Invalid topology: the topology epoch cannot be incremented any more.")
            }
        }
    }
}

impl std::error::Error for TopologyError {}

impl From<TopologyError> for MeiliError {
    fn from(e: TopologyError) -> Self {
        MeiliError::invalid(400, "miroir_invalid_topology", e.to_string())
    }
}

impl Topology {
    /// Checks every invariant listed in the module documentation; the first violation is returned.
    pub fn validate(&self) -> Result<(), TopologyError> {
        if self.shards == 0 {
            return Err(TopologyError::ZeroShards);
        }
        if self.replication_factor == 0 {
            return Err(TopologyError::ZeroReplicationFactor);
        }
        if self.replica_groups == 0 {
            return Err(TopologyError::ZeroReplicaGroups);
        }
        let mut seen = BTreeSet::new();
        for node in &self.nodes {
            if node.id.as_str().is_empty() {
                return Err(TopologyError::EmptyNodeId);
            }
            if !seen.insert(&node.id) {
                return Err(TopologyError::DuplicateNodeId(node.id.clone()));
            }
            if node.address.trim().is_empty() {
                return Err(TopologyError::EmptyAddress(node.id.clone()));
            }
            if node.replica_group >= self.replica_groups {
                return Err(TopologyError::GroupOutOfRange {
                    node: node.id.clone(),
                    group: node.replica_group,
                    replica_groups: self.replica_groups,
                });
            }
        }
        for group in 0..self.replica_groups {
            let placed = self.placed_nodes_of_group(group).count() as u32;
            if placed == 0 {
                return Err(TopologyError::EmptyGroup(group));
            }
            if placed < self.replication_factor {
                return Err(TopologyError::NotEnoughNodes {
                    group,
                    placed,
                    replication_factor: self.replication_factor,
                });
            }
        }
        Ok(())
    }

    /// Whether this topology supersedes `other` (strictly greater epoch).
    pub fn is_newer_than(&self, other: &Topology) -> bool {
        self.epoch > other.epoch
    }

    /// The next topology: a copy with `epoch + 1`, modified by `change`, then validated.
    pub fn next(&self, change: impl FnOnce(&mut Topology)) -> Result<Topology, TopologyError> {
        let epoch = self
            .epoch
            .checked_add(1)
            .ok_or(TopologyError::EpochExhausted)?;
        let mut next = self.clone();
        change(&mut next);
        next.epoch = epoch;
        next.validate()?;
        Ok(next)
    }

    /// The node with this id, in any state.
    pub fn node(&self, id: &NodeId) -> Option<&Node> {
        self.nodes.iter().find(|n| &n.id == id)
    }

    /// Every node of a group, in any state, in declaration order.
    pub fn nodes_of_group(&self, group: GroupId) -> impl Iterator<Item = &Node> + '_ {
        self.nodes.iter().filter(move |n| n.replica_group == group)
    }

    /// The placed (active or draining) nodes of a group, in declaration order.
    pub fn placed_nodes_of_group(&self, group: GroupId) -> impl Iterator<Item = &Node> + '_ {
        self.nodes_of_group(group).filter(|n| n.state.is_placed())
    }

    /// Every placed (active or draining) node, in declaration order: the nodes that own shards.
    pub fn serving_nodes(&self) -> impl Iterator<Item = &Node> + '_ {
        self.nodes.iter().filter(|n| n.state.is_placed())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topo(shards: u32, rf: u32, rg: u32, nodes: Vec<Node>) -> Topology {
        Topology {
            epoch: 1,
            shards,
            replication_factor: rf,
            replica_groups: rg,
            nodes,
        }
    }

    fn two_by_two() -> Topology {
        topo(
            8,
            2,
            2,
            vec![
                Node::active("a0", "http://a0:7700", 0),
                Node::active("a1", "http://a1:7700", 0),
                Node::active("b0", "http://b0:7700", 1),
                Node::active("b1", "http://b1:7700", 1),
            ],
        )
    }

    #[test]
    fn a_valid_topology_passes() {
        assert_eq!(two_by_two().validate(), Ok(()));
    }

    #[test]
    fn zero_counts_are_rejected() {
        let mut t = two_by_two();
        t.shards = 0;
        assert_eq!(t.validate(), Err(TopologyError::ZeroShards));
        let mut t = two_by_two();
        t.replication_factor = 0;
        assert_eq!(t.validate(), Err(TopologyError::ZeroReplicationFactor));
        let mut t = two_by_two();
        t.replica_groups = 0;
        assert_eq!(t.validate(), Err(TopologyError::ZeroReplicaGroups));
    }

    #[test]
    fn duplicate_and_empty_ids_are_rejected() {
        let mut t = two_by_two();
        t.nodes[3].id = NodeId::from("a0");
        let e = t.validate().unwrap_err();
        assert_eq!(e, TopologyError::DuplicateNodeId(NodeId::from("a0")));
        assert!(e.to_string().contains("`a0`"));

        let mut t = two_by_two();
        t.nodes[1].id = NodeId::from("");
        assert_eq!(t.validate(), Err(TopologyError::EmptyNodeId));

        let mut t = two_by_two();
        t.nodes[2].address = "  ".into();
        let e = t.validate().unwrap_err();
        assert_eq!(e, TopologyError::EmptyAddress(NodeId::from("b0")));
        assert!(e.to_string().contains("empty address"));
    }

    #[test]
    fn a_removed_node_still_reserves_its_id() {
        let mut t = two_by_two();
        let mut ghost = Node::active("a1", "http://old:7700", 0);
        ghost.state = NodeState::Removed;
        t.nodes.push(ghost);
        assert_eq!(
            t.validate(),
            Err(TopologyError::DuplicateNodeId(NodeId::from("a1")))
        );
    }

    #[test]
    fn group_out_of_range_is_rejected() {
        let mut t = two_by_two();
        t.nodes[0].replica_group = 2;
        let e = t.validate().unwrap_err();
        assert_eq!(
            e,
            TopologyError::GroupOutOfRange {
                node: NodeId::from("a0"),
                group: 2,
                replica_groups: 2
            }
        );
        assert!(e.to_string().contains("replica group 2"));
    }

    #[test]
    fn empty_group_is_rejected_even_with_unplaced_nodes() {
        let mut t = two_by_two();
        t.nodes[2].state = NodeState::Joining;
        t.nodes[3].state = NodeState::Removed;
        let e = t.validate().unwrap_err();
        assert_eq!(e, TopologyError::EmptyGroup(1));
        assert!(e.to_string().contains("group 1"));
    }

    #[test]
    fn rf_larger_than_a_group_is_rejected() {
        let mut t = two_by_two();
        t.nodes[3].state = NodeState::Joining;
        let e = t.validate().unwrap_err();
        assert_eq!(
            e,
            TopologyError::NotEnoughNodes {
                group: 1,
                placed: 1,
                replication_factor: 2
            }
        );
        assert!(e.to_string().contains("replication factor 2"));
        // A draining node still counts: it keeps its data until migrated.
        let mut t = two_by_two();
        t.nodes[3].state = NodeState::Draining;
        assert_eq!(t.validate(), Ok(()));
    }

    #[test]
    fn errors_become_meilisearch_shaped() {
        let e: MeiliError = TopologyError::ZeroShards.into();
        assert_eq!(e.status, 400);
        assert_eq!(e.code, "miroir_invalid_topology");
        assert_eq!(e.error_type, crate::ErrorType::InvalidRequest);
        assert!(e.message.contains("shards"));
    }

    #[test]
    fn epochs_only_move_forward() {
        let t = two_by_two();
        let n = t
            .next(|t| t.nodes.push(Node::active("a2", "http://a2:7700", 0)))
            .unwrap();
        assert_eq!(n.epoch, 2);
        assert!(n.is_newer_than(&t));
        assert!(!t.is_newer_than(&n));
        assert!(!t.is_newer_than(&t));
        // An invalid change is refused.
        assert_eq!(
            t.next(|t| t.shards = 0).unwrap_err(),
            TopologyError::ZeroShards
        );
        // The change cannot tamper with the epoch.
        assert_eq!(t.next(|t| t.epoch = 100).unwrap().epoch, 2);
        let mut last = t.clone();
        last.epoch = u64::MAX;
        assert_eq!(last.next(|_| {}), Err(TopologyError::EpochExhausted));
    }

    #[test]
    fn helpers_filter_by_group_and_state() {
        let mut t = two_by_two();
        t.nodes[1].state = NodeState::Draining;
        t.nodes.push(Node {
            state: NodeState::Joining,
            ..Node::active("a2", "http://a2:7700", 0)
        });
        assert_eq!(t.nodes_of_group(0).count(), 3);
        let placed: Vec<_> = t.placed_nodes_of_group(0).map(|n| n.id.as_str()).collect();
        assert_eq!(placed, ["a0", "a1"]);
        assert_eq!(t.serving_nodes().count(), 4);
        assert_eq!(t.node(&NodeId::from("a2")).unwrap().replica_group, 0);
        assert!(t.node(&NodeId::from("zz")).is_none());
        assert!(!NodeState::Joining.is_placed());
        assert!(!NodeState::Removed.is_placed());
    }

    #[test]
    fn states_serialize_in_snake_case() {
        let n = Node {
            state: NodeState::Draining,
            ..Node::active("a0", "http://a0:7700", 0)
        };
        let v = serde_json::to_value(&n).unwrap();
        assert_eq!(v["state"], "draining");
        let back: Node = serde_json::from_value(v).unwrap();
        assert_eq!(back, n);
    }
}
