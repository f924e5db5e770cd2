//! Routing: which shard a document belongs to, which nodes hold a shard, and which node answers for each
//! shard of a query.
//!
//! # Document → shard (a wire contract)
//!
//! ```text
//! shard = xxh3_64(canonical_id_utf8_bytes, seed = 0) mod S
//! ```
//! - `xxh3_64` is XXH3, 64-bit variant, seed 0 (`xxhash_rust::xxh3::xxh3_64`).
//! - The input is the UTF-8 bytes of the id's **canonical string form** ([`canonical_id`]): a string id is
//!   itself (no normalisation, no trimming), an integer id is its decimal representation (`-` sign for
//!   negative integers, no leading zeros, no `+`). Meilisearch treats `5` and `"5"` as the same document, so
//!   both route identically.
//! - The 64-bit hash is reduced with the unsigned remainder by S.
//!
//! This formula is persisted in effect: every stored document sits on the shard it gives. Changing any part
//! of it (hash, seed, canonical form, reduction) moves documents and breaks every existing deployment. The
//! golden vectors in the tests freeze it.
//!
//! # Shard → nodes: capacity-bounded rendezvous placement
//!
//! Every node of a group scores every shard with
//!
//! ```text
//! score(node, s) = xxh3_64(node_id_utf8_bytes ‖ 0x00 ‖ s as u32 little-endian (4 bytes), seed = 0)
//! ```
//! (an injective layout: the shard is a fixed-width suffix). This byte layout is part of the contract:
//! changing it reshuffles placement.
//!
//! Pure rendezvous hashing (each shard to its RF best-scored nodes) moves the minimum when nodes come and
//! go, but with few shards per node its loads are lopsided (with S = 8·N some nodes get up to +75 %/−50 % of the
//! mean), and a search is as slow as its most loaded node. So each replica group is placed independently
//! by rendezvous **with bounded loads**:
//! 1. The group has `n` placed nodes (`Active` or `Draining`) and `T = S·RF` shard-replica slots. Every
//!    node gets `⌊T/n⌋` or `⌈T/n⌉` slots; at most `T mod n` nodes get the ceiling.
//! 2. All (shard, node) pairs are visited by decreasing score (ties: shard ascending, then node id
//!    ascending). A pair is taken when the shard still needs owners and the node still has capacity (load
//!    below the floor, or at the floor while fewer than `T mod n` nodes went above it).
//! 3. Rarely, step 2 leaves a shard X short: every node with spare capacity (say A) already owns X. A
//!    then holds fewer slots than any full node B that does not own X, so B holds a shard Y that A does
//!    not: Y moves from B to A and X goes to B. The first such A (by id), then the first Y in pair order,
//!    then the lowest-scored such owner B of Y are chosen. Loads stay within the bounds.
//! 4. The owners of a shard in a group are listed by decreasing score (ties by node id).
//!
//! Properties (tested): a pure function of (S, RF, the group's node ids); groups never influence each
//! other; every node holds ⌊T/n⌋ or ⌈T/n⌉ slots; adding a node to a
//! group moves about 1/(n+1) of that group's slots, up to roughly twice that because freed capacity
//! cascades.
//!
//! A [`Placement`] is this computation done once for a validated topology.
//!
//! # Query covering sets
//!
//! A query must read every shard exactly once. [`Placement::cover`] assigns each shard to one healthy owner:
//! inside the preferred group it starts at owner `(rotation + shard) mod RF` and walks the owners in score
//! order, skipping unhealthy ones; if the preferred group has no healthy owner it tries groups
//! `preferred+1, preferred+2, … (mod RG)` the same way; a shard with no healthy owner anywhere is reported
//! in [`CoverPlan::unavailable`]. The planner is stateless: the caller supplies health and a rotation
//! counter (to spread load across replicas), so the plan is a pure function of its inputs.

use crate::topology::{GroupId, NodeId, ShardId, Topology, TopologyError};
use serde_json::Value;
use std::collections::BTreeMap;
use xxhash_rust::xxh3::xxh3_64;

/// The shard a document id belongs to: `xxh3_64(id bytes, seed 0) mod shards`.
///
/// `id` must already be in canonical form (see [`canonical_id`]). `shards` is never 0 in a validated
/// topology; for `shards == 0` this returns shard 0 rather than panicking.
pub fn shard_for_key(id: &str, shards: u32) -> ShardId {
    if shards == 0 {
        return 0;
    }
    (xxh3_64(id.as_bytes()) % u64::from(shards)) as ShardId
}

/// The canonical string form of a document id value: a string is itself, an integer (fits `u64` or
/// `i64`) is its decimal representation. Anything else (floats, booleans, null, arrays, objects) has no
/// canonical form and yields `None`. This does not check Meilisearch's id rules (characters, length);
/// see `documents::document_id` for that.
pub fn canonical_id(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => {
            if let Some(u) = n.as_u64() {
                Some(u.to_string())
            } else {
                n.as_i64().map(|i| i.to_string())
            }
        }
        _ => None,
    }
}

/// The rendezvous score of a node for a shard (see the module documentation for the byte layout).
pub fn rendezvous_score(node: &NodeId, shard: ShardId) -> u64 {
    let id = node.as_str().as_bytes();
    let mut buf = Vec::with_capacity(id.len() + 5);
    buf.extend_from_slice(id);
    buf.push(0);
    buf.extend_from_slice(&shard.to_le_bytes());
    xxh3_64(&buf)
}

/// Shard ownership for one validated topology, computed once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    shards: u32,
    rf: u32,
    groups: u32,
    /// Owners of (shard, group) at `[(shard * groups + group) * rf ..][..rf]`, best score first.
    owners: Vec<NodeId>,
    /// Every shard each placed node holds, sorted.
    held: BTreeMap<NodeId, Vec<ShardId>>,
}

/// Which shards one node must answer for in a query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeCover {
    /// Shards this node answers for, sorted.
    pub shards: Vec<ShardId>,
    /// Every shard the node holds, sorted.
    pub held: Vec<ShardId>,
    /// `shards == held`: the query needs no `_miroir_shard` restriction on this node.
    pub covers_all_held: bool,
}

/// A covering plan: every shard assigned to exactly one node, or listed as unavailable.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CoverPlan {
    /// Node → the shards it answers for.
    pub assignments: BTreeMap<NodeId, NodeCover>,
    /// Shards with no healthy owner in any group, sorted.
    pub unavailable: Vec<ShardId>,
}

/// Capacity-bounded rendezvous placement of one group (see the module documentation): for every shard,
/// its `rf` owners among `members`, best score first. `members` must hold at least `rf` distinct ids.
fn place_group<'a>(members: &[&'a NodeId], shards: u32, rf: u32) -> Vec<Vec<&'a NodeId>> {
    let mut members = members.to_vec();
    members.sort();
    members.dedup();
    let n = members.len() as u64;
    let rf_len = (rf as usize).min(members.len());
    let mut owners: Vec<Vec<u32>> = vec![Vec::with_capacity(rf_len); shards as usize];
    if n == 0 {
        return vec![Vec::new(); shards as usize];
    }
    let total = u64::from(shards) * rf_len as u64;
    let floor = total / n;
    let mut above_floor_left = total % n;
    // (score, shard, member index); member indexes follow id order, so ties break by id.
    let mut pairs: Vec<(u64, u32, u32)> = Vec::with_capacity(shards as usize * members.len());
    for shard in 0..shards {
        for (i, id) in members.iter().enumerate() {
            pairs.push((rendezvous_score(id, shard), shard, i as u32));
        }
    }
    pairs.sort_unstable_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
    let mut load = vec![0u64; members.len()];
    for &(_, shard, i) in &pairs {
        let slot = &mut owners[shard as usize];
        if slot.len() >= rf_len {
            continue;
        }
        let l = load[i as usize];
        if l < floor || (l == floor && above_floor_left > 0) {
            if l == floor {
                above_floor_left -= 1;
            }
            slot.push(i);
            load[i as usize] += 1;
        }
    }
    // Repair (rare): a shard X is short only when every node with spare capacity already owns it. Such a
    // node A holds fewer slots than any full node B that does not own X, so B holds a shard Y that A does
    // not: Y moves from B to A and B takes X. Loads stay within the bounds. Choices follow the pair order.
    for x in 0..owners.len() {
        while owners[x].len() < rf_len {
            let has_room = |l: u64, above: u64| l < floor || (l == floor && above > 0);
            let repaired = (0..members.len() as u32)
                .filter(|a| has_room(load[*a as usize], above_floor_left))
                .find_map(|a| {
                    pairs.iter().find_map(|&(_, y, cand)| {
                        if cand != a || owners[y as usize].contains(&a) {
                            return None;
                        }
                        // The weakest owner of Y that does not own X.
                        owners[y as usize]
                            .iter()
                            .rev()
                            .find(|b| !owners[x].contains(b))
                            .map(|b| (a, y, *b))
                    })
                });
            match repaired {
                Some((a, y, b)) => {
                    if load[a as usize] == floor {
                        above_floor_left -= 1;
                    }
                    load[a as usize] += 1;
                    let slot = &mut owners[y as usize];
                    if let Some(pos) = slot.iter().position(|n| *n == b) {
                        slot[pos] = a;
                    }
                    owners[x].push(b);
                }
                None => {
                    // Unreachable with RF <= n; stay total anyway: best-scored non-owner, no bound.
                    let extra = pairs
                        .iter()
                        .find(|&&(_, shard, i)| shard as usize == x && !owners[x].contains(&i))
                        .map(|&(_, _, i)| i);
                    match extra {
                        Some(i) => owners[x].push(i),
                        None => break,
                    }
                }
            }
        }
    }
    owners
        .into_iter()
        .enumerate()
        .map(|(shard, mut slot)| {
            let score = |i: &u32| rendezvous_score(members[*i as usize], shard as ShardId);
            slot.sort_by(|a, b| score(b).cmp(&score(a)).then(a.cmp(b)));
            slot.into_iter().map(|i| members[i as usize]).collect()
        })
        .collect()
}

impl Placement {
    /// Computes the placement of a topology; the topology is validated first.
    pub fn new(topology: &Topology) -> Result<Placement, TopologyError> {
        topology.validate()?;
        let shards = topology.shards;
        let rf = topology.replication_factor;
        let groups = topology.replica_groups;
        let per_group: Vec<Vec<Vec<&NodeId>>> = (0..groups)
            .map(|g| {
                let members: Vec<&NodeId> =
                    topology.placed_nodes_of_group(g).map(|n| &n.id).collect();
                place_group(&members, shards, rf)
            })
            .collect();
        let mut owners = Vec::with_capacity(shards as usize * groups as usize * rf as usize);
        let mut held: BTreeMap<NodeId, Vec<ShardId>> = topology
            .serving_nodes()
            .map(|n| (n.id.clone(), Vec::new()))
            .collect();
        for shard in 0..shards {
            for group in &per_group {
                for id in &group[shard as usize] {
                    owners.push((*id).clone());
                    if let Some(list) = held.get_mut(*id) {
                        list.push(shard);
                    }
                }
            }
        }
        // Shards are visited in increasing order, so every `held` list is already sorted and unique.
        Ok(Placement {
            shards,
            rf,
            groups,
            owners,
            held,
        })
    }

    /// Records that `node` physically holds `shard` without serving it (a shard migration's target before
    /// the cut-over, a leaving owner before its cleanup): a query covering every shard the node serves still
    /// restricts it with `_miroir_shard`, so the extra copies are never counted twice.
    pub fn add_held(&mut self, node: &NodeId, shard: ShardId) {
        let list = self.held.entry(node.clone()).or_default();
        if let Err(i) = list.binary_search(&shard) {
            list.insert(i, shard);
        }
    }

    /// A placement with explicit owners, laid out as `owners[(shard * groups + group) * rf ..][..rf]` (shard
    /// migrations build their read view with it). `None` when a count is 0 or the length is not `S·RG·RF`.
    pub fn from_owners(
        shards: u32,
        rf: u32,
        groups: u32,
        owners: Vec<NodeId>,
    ) -> Option<Placement> {
        if shards == 0 || rf == 0 || groups == 0 {
            return None;
        }
        if owners.len() != shards as usize * groups as usize * rf as usize {
            return None;
        }
        let mut held: BTreeMap<NodeId, Vec<ShardId>> = BTreeMap::new();
        for (i, id) in owners.iter().enumerate() {
            let shard = (i / (groups as usize * rf as usize)) as ShardId;
            let list = held.entry(id.clone()).or_default();
            if list.last() != Some(&shard) {
                list.push(shard);
            }
        }
        Some(Placement {
            shards,
            rf,
            groups,
            owners,
            held,
        })
    }

    /// S.
    pub fn shards(&self) -> u32 {
        self.shards
    }

    /// RG.
    pub fn groups(&self) -> u32 {
        self.groups
    }

    /// RF.
    pub fn rf(&self) -> u32 {
        self.rf
    }

    /// The shard of a canonical document id under this placement's shard count.
    pub fn shard_for_key(&self, id: &str) -> ShardId {
        shard_for_key(id, self.shards)
    }

    /// The RF owners of `shard` in `group`, best score first. Empty when either is out of range.
    pub fn owners(&self, shard: ShardId, group: GroupId) -> &[NodeId] {
        if shard >= self.shards || group >= self.groups {
            return &[];
        }
        let start = (shard as usize * self.groups as usize + group as usize) * self.rf as usize;
        &self.owners[start..start + self.rf as usize]
    }

    /// Every node that must receive a write to `shard`: the owners in every group (RF·RG nodes), group
    /// by group. Empty when the shard is out of range.
    pub fn write_targets(&self, shard: ShardId) -> Vec<NodeId> {
        (0..self.groups)
            .flat_map(|g| self.owners(shard, g).iter().cloned())
            .collect()
    }

    /// The shards a node holds, sorted. Empty for a node that is not placed.
    pub fn shards_held_by(&self, node: &NodeId) -> Vec<ShardId> {
        self.held.get(node).cloned().unwrap_or_default()
    }

    /// The nodes of `nodes` that hold a shard, in the given order: the ones an index-level read (the
    /// index, its settings, its stats) may ask. A node holding no shard (a group with more nodes than S)
    /// may lack the indexes: one that joined with nothing to receive never got them. All of `nodes` when
    /// none holds a shard.
    pub fn index_readers(&self, nodes: Vec<NodeId>) -> Vec<NodeId> {
        let holders: Vec<NodeId> = nodes
            .iter()
            .filter(|n| self.held.get(*n).is_some_and(|s| !s.is_empty()))
            .cloned()
            .collect();
        if holders.is_empty() {
            nodes
        } else {
            holders
        }
    }

    /// Assigns each shard to exactly one healthy owner (see the module documentation).
    ///
    /// `healthy` is asked at most once per node. `preferred_group` is taken modulo RG.
    pub fn cover(
        &self,
        healthy: &dyn Fn(&NodeId) -> bool,
        preferred_group: GroupId,
        rotation: u64,
    ) -> CoverPlan {
        let mut health: BTreeMap<&NodeId, bool> = BTreeMap::new();
        let mut assigned: BTreeMap<NodeId, Vec<ShardId>> = BTreeMap::new();
        let mut unavailable = Vec::new();
        let rf = u64::from(self.rf.max(1));
        for shard in 0..self.shards {
            let start = (rotation.wrapping_add(u64::from(shard)) % rf) as usize;
            let mut chosen: Option<&NodeId> = None;
            'groups: for k in 0..self.groups {
                let group = ((u64::from(preferred_group) + u64::from(k)) % u64::from(self.groups))
                    as GroupId;
                let owners = self.owners(shard, group);
                for i in 0..owners.len() {
                    let candidate = &owners[(start + i) % owners.len()];
                    if *health
                        .entry(candidate)
                        .or_insert_with(|| healthy(candidate))
                    {
                        chosen = Some(candidate);
                        break 'groups;
                    }
                }
            }
            match chosen {
                Some(node) => assigned.entry(node.clone()).or_default().push(shard),
                None => unavailable.push(shard),
            }
        }
        let assignments = assigned
            .into_iter()
            .map(|(node, shards)| {
                let held = self.shards_held_by(&node);
                let covers_all_held = shards == held;
                (
                    node,
                    NodeCover {
                        shards,
                        held,
                        covers_all_held,
                    },
                )
            })
            .collect();
        CoverPlan {
            assignments,
            unavailable,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topology::{Node, NodeState};
    use serde_json::json;

    fn topology(shards: u32, rf: u32, per_group: &[u32]) -> Topology {
        let mut nodes = Vec::new();
        let mut i = 0;
        for (g, count) in per_group.iter().enumerate() {
            for _ in 0..*count {
                nodes.push(Node::active(
                    format!("meili-{i}"),
                    format!("http://meili-{i}:7700"),
                    g as u32,
                ));
                i += 1;
            }
        }
        Topology {
            epoch: 1,
            shards,
            replication_factor: rf,
            replica_groups: per_group.len() as u32,
            nodes,
        }
    }

    #[test]
    fn xxh3_is_the_reference_xxh3() {
        // XXH3_64bits("") from the reference implementation.
        assert_eq!(xxh3_64(b""), 0x2D06_8005_38D3_94C2);
    }

    #[test]
    fn canonical_forms() {
        assert_eq!(canonical_id(&json!("abc")), Some("abc".into()));
        assert_eq!(canonical_id(&json!(" 1")), Some(" 1".into()));
        assert_eq!(canonical_id(&json!(1)), Some("1".into()));
        assert_eq!(canonical_id(&json!(-42)), Some("-42".into()));
        assert_eq!(
            canonical_id(&json!(u64::MAX)),
            Some("18446744073709551615".into())
        );
        assert_eq!(
            canonical_id(&json!(i64::MIN)),
            Some("-9223372036854775808".into())
        );
        assert_eq!(canonical_id(&json!(1.5)), None);
        assert_eq!(canonical_id(&json!(1.0)), None);
        assert_eq!(canonical_id(&json!(true)), None);
        assert_eq!(canonical_id(&Value::Null), None);
        assert_eq!(canonical_id(&json!([1])), None);
        assert_eq!(canonical_id(&json!({"a": 1})), None);
    }

    #[test]
    fn integer_and_string_ids_route_together() {
        for s in [1, 2, 7, 64, 1000] {
            let a = shard_for_key(&canonical_id(&json!(5)).unwrap(), s);
            let b = shard_for_key(&canonical_id(&json!("5")).unwrap(), s);
            assert_eq!(a, b);
        }
    }

    #[test]
    fn zero_shards_does_not_panic() {
        assert_eq!(shard_for_key("x", 0), 0);
    }

    #[test]
    fn placement_requires_a_valid_topology() {
        let mut t = topology(4, 2, &[2, 2]);
        t.shards = 0;
        assert_eq!(Placement::new(&t), Err(TopologyError::ZeroShards));
    }

    #[test]
    fn owners_are_rf_distinct_nodes_of_the_group_by_score() {
        let t = topology(16, 2, &[3, 4]);
        let p = Placement::new(&t).unwrap();
        assert_eq!((p.shards(), p.groups(), p.rf()), (16, 2, 2));
        for s in 0..16 {
            for g in 0..2 {
                let o = p.owners(s, g);
                assert_eq!(o.len(), 2);
                assert_ne!(o[0], o[1]);
                for id in o {
                    assert_eq!(t.node(id).unwrap().replica_group, g);
                }
                assert!(rendezvous_score(&o[0], s) >= rendezvous_score(&o[1], s));
            }
            let w = p.write_targets(s);
            assert_eq!(w.len(), 4);
            assert_eq!(&w[..2], p.owners(s, 0));
            assert_eq!(&w[2..], p.owners(s, 1));
        }
        assert!(p.owners(16, 0).is_empty());
        assert!(p.owners(0, 2).is_empty());
        assert!(p.write_targets(99).is_empty());
    }

    #[test]
    fn held_shards_match_owners() {
        let t = topology(32, 2, &[3, 3]);
        let p = Placement::new(&t).unwrap();
        let mut total = 0;
        for n in &t.nodes {
            let held = p.shards_held_by(&n.id);
            assert!(held.windows(2).all(|w| w[0] < w[1]));
            for s in 0..32 {
                let owns = p.owners(s, n.replica_group).contains(&n.id);
                assert_eq!(owns, held.contains(&s));
            }
            total += held.len();
        }
        assert_eq!(total, 32 * 2 * 2);
        assert!(p.shards_held_by(&NodeId::from("nope")).is_empty());
    }

    #[test]
    fn index_readers_are_the_nodes_holding_a_shard() {
        // S=2, RF=1, three nodes: one holds nothing
        let t = topology(2, 1, &[3]);
        let p = Placement::new(&t).unwrap();
        let all: Vec<NodeId> = t.nodes.iter().map(|n| n.id.clone()).collect();
        let readers = p.index_readers(all.clone());
        assert_eq!(readers.len(), 2);
        for n in &all {
            assert_eq!(readers.contains(n), !p.shards_held_by(n).is_empty(), "{n}");
        }
        // the given order is kept
        let reversed: Vec<NodeId> = all.iter().rev().cloned().collect();
        let mut again = p.index_readers(reversed);
        again.reverse();
        assert_eq!(again, readers);
        // nothing held among the given nodes: all of them
        let strangers = vec![NodeId::from("x"), NodeId::from("y")];
        assert_eq!(p.index_readers(strangers.clone()), strangers);
    }

    #[test]
    fn unplaced_nodes_hold_nothing() {
        let mut t = topology(16, 1, &[3]);
        t.nodes[0].state = NodeState::Joining;
        t.nodes[1].state = NodeState::Draining;
        let p = Placement::new(&t).unwrap();
        assert!(p.shards_held_by(&NodeId::from("meili-0")).is_empty());
        assert!(!p.shards_held_by(&NodeId::from("meili-1")).is_empty());
        for s in 0..16 {
            assert_ne!(p.owners(s, 0)[0].as_str(), "meili-0");
        }
    }

    #[test]
    fn cover_rotates_within_the_preferred_group() {
        let t = topology(8, 2, &[2, 2]);
        let p = Placement::new(&t).unwrap();
        let all = |_: &NodeId| true;
        let c0 = p.cover(&all, 0, 0);
        let c1 = p.cover(&all, 0, 1);
        assert!(c0.unavailable.is_empty());
        for s in 0..8u32 {
            let who0 = c0
                .assignments
                .iter()
                .find(|(_, c)| c.shards.contains(&s))
                .unwrap()
                .0;
            let who1 = c1
                .assignments
                .iter()
                .find(|(_, c)| c.shards.contains(&s))
                .unwrap()
                .0;
            let owners = p.owners(s, 0);
            assert_eq!(who0, &owners[(s as usize) % 2]);
            assert_eq!(who1, &owners[(s as usize + 1) % 2]);
        }
        // Group 1 preferred: only group-1 nodes answer.
        let c = p.cover(&all, 1, 0);
        for id in c.assignments.keys() {
            assert_eq!(t.node(id).unwrap().replica_group, 1);
        }
        // Out-of-range preferred groups wrap around.
        assert_eq!(p.cover(&all, 3, 0), c);
    }

    #[test]
    fn cover_with_rf1_covers_all_held() {
        let t = topology(12, 1, &[3, 3]);
        let p = Placement::new(&t).unwrap();
        let c = p.cover(&|_| true, 0, 7);
        for (id, nc) in &c.assignments {
            assert!(nc.covers_all_held, "{id}");
            assert_eq!(nc.shards, nc.held);
        }
    }

    #[test]
    fn cover_falls_back_and_reports_unavailable() {
        let t = topology(8, 1, &[1, 1]);
        let p = Placement::new(&t).unwrap();
        let down_a = |id: &NodeId| id.as_str() != "meili-0";
        let c = p.cover(&down_a, 0, 0);
        assert_eq!(c.assignments.len(), 1);
        let nc = &c.assignments[&NodeId::from("meili-1")];
        assert_eq!(nc.shards, (0..8).collect::<Vec<_>>());
        assert!(nc.covers_all_held);
        let none = p.cover(&|_| false, 0, 0);
        assert!(none.assignments.is_empty());
        assert_eq!(none.unavailable, (0..8).collect::<Vec<_>>());
    }

    #[test]
    fn from_owners_checks_its_shape() {
        let ids: Vec<NodeId> = ["a", "b", "a", "c"]
            .iter()
            .map(|s| NodeId::from(*s))
            .collect();
        assert!(Placement::from_owners(2, 1, 2, ids[..3].to_vec()).is_none());
        assert!(Placement::from_owners(0, 1, 2, Vec::new()).is_none());
        let p = Placement::from_owners(2, 1, 2, ids).unwrap();
        assert_eq!(p.owners(1, 0), &[NodeId::from("a")]);
        assert_eq!(p.shards_held_by(&NodeId::from("a")), vec![0, 1]);
        assert_eq!(
            p.write_targets(0),
            vec![NodeId::from("a"), NodeId::from("b")]
        );
    }

    #[test]
    fn extra_held_shards_make_the_cover_filter() {
        let ids: Vec<NodeId> = ["a", "b"].iter().map(|s| NodeId::from(*s)).collect();
        let mut p = Placement::from_owners(2, 1, 1, ids).unwrap();
        let a = NodeId::from("a");
        assert!(p.cover(&|_| true, 0, 0).assignments[&a].covers_all_held);
        p.add_held(&a, 1);
        p.add_held(&a, 1);
        assert_eq!(p.shards_held_by(&a), vec![0, 1]);
        let cover = p.cover(&|_| true, 0, 0);
        assert_eq!(cover.assignments[&a].shards, vec![0]);
        assert!(!cover.assignments[&a].covers_all_held);
        assert_eq!(p.owners(1, 0), &[NodeId::from("b")]);
    }

    #[test]
    fn health_is_asked_once_per_node() {
        use std::cell::Cell;
        let t = topology(64, 2, &[3, 3]);
        let p = Placement::new(&t).unwrap();
        let calls = Cell::new(0);
        let h = |_: &NodeId| {
            calls.set(calls.get() + 1);
            false
        };
        let c = p.cover(&h, 0, 0);
        assert_eq!(c.unavailable.len(), 64);
        assert_eq!(calls.get(), 6);
    }
}
