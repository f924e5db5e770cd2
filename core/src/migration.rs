//! Shard migration ("cutover"): moving shards between nodes when the fleet changes shape, without losing or
//! resurrecting a single acknowledged write.
//!
//! # Planning
//!
//! A migration goes from an old topology (epoch e) to a new one (epoch e+1) with the same S and RF. For
//! every shard whose owner set changes in any replica group, [`plan`] lists per group the *sources* (old
//! owners that survive; a group with none, for example a new group, borrows the surviving old owners of the
//! other groups), the *targets* (new − old) and the *leaving* owners (old − new). Shards whose owners do not
//! change are not touched. [`plan_change`] derives the new topology from one [`Change`]: add a node, drain a
//! node, remove a drained node, fail a node for good (its copies are *lost*: never a source, never written,
//! never cleaned), add a replica group, remove the last replica group.
//!
//! # Per-shard states
//!
//! ```text
//!  planned ─► dual_write ─► copy ─► catch_up ─► fence ─► cut_over ─► cleanup ─► done
//!                ▲            │         │  ▲       │   (persist,       │
//!                └─ failure ──┴─────────┘  └─ dirty / failure / fence timeout
//! ```
//! - `planned`: waiting for one of `max_concurrent_migrations` slots. Routing is the old one.
//! - `dual_write`: client writes for the shard go to old ∪ new owners, but the acknowledgement quorum is judged
//!   on the old owners only, so nothing acknowledged depends on an incomplete target. The targets are
//!   prepared: the index is created on them with the source's settings.
//! - `copy`: pages of `_miroir_shard = s` are read from a source and written to every target, throttled to
//!   `docs_per_second` (the caller's `now` drives the throttle).
//! - `catch_up`: verify passes. A pass reads the id set and a content [`fingerprint`] of every document of the
//!   shard on the source and on each target, then repairs: documents missing or different on a target are
//!   written from the source, documents absent from the source are deleted on the target. Passes repeat
//!   until one is clean (or `max_catch_up_passes` were made), then → `fence`.
//! - `fence`: new client writes for the shard are held back ([`Migration::try_write`] answers "wait"), writes
//!   already admitted drain ([`Migration::write_finished`]), a barrier task is enqueued on the source and on
//!   every target and awaited (so every drained write is processed), then verify passes run until one is
//!   clean. This makes the catch-up unconditional: it never depends on remembering which writes failed, and
//!   a copy that raced a client delete cannot resurrect it. A fence that is not clean within
//!   `fence_timeout_ms` is lifted and the shard goes back to `catch_up`.
//! - `cut_over`: the shard's routing switches to the new owners. A [`Action::Persist`] is emitted and nothing
//!   else is sent until [`Migration::on_persisted`] acknowledges it; only then does the routing view switch
//!   and the fence lift.
//! - `cleanup`: `_miroir_shard = s` is deleted by filter on the leaving owners (never before the cut-over was
//!   persisted), each deletion awaited.
//! - `done`.
//!
//! A failed request (unreachable node, error answer, failed node task) pauses the shard for `retry_after_ms`,
//! rotates its source, and restarts the current phase (a fenced shard is unfenced and goes back to
//! `catch_up`). A shard is never cut over on incomplete data: the only way into `cut_over` is a clean verify
//! pass under the fence.
//!
//! # Events and actions (sans-IO)
//!
//! Events in: [`Migration::on_response`], [`Migration::on_failure`], [`Migration::on_persisted`],
//! [`Migration::handle_timeout`], [`Migration::write_finished`]. Actions out: [`Migration::poll_action`]
//! ([`Action::Send`] a node request, [`Action::Persist`] a record) and [`Migration::poll_timeout`] (when to
//! call `handle_timeout`). Client writes are built by [`Migration::try_write`] from the routing view; reads
//! use [`Migration::read_placement`].
//!
//! # Record and resume
//!
//! [`Migration::record`] is a JSON value (format in [`Migration::record`]); [`Migration::resume`] rebuilds a
//! machine from it: shards recorded before `cut_over` restart at `dual_write` (a copy restart is safe, the
//! verify under fence makes it so), `cut_over`/`cleanup` resume at `cleanup` with the new routing, `done`
//! stays done.
//!
//! # Invariants
//! - the acknowledgement set of a shard is its old owners (minus lost ones) until its cut-over is persisted,
//!   the new owners afterwards; write targets always include the acknowledgement set;
//! - a shard enters `cut_over` only after a clean verify pass between its source and every target, while no
//!   client write for it was in flight or admitted, after barriers on those nodes;
//! - cleanup of a shard is only sent after its cut-over was persisted;
//! - a replica group being added serves reads of a shard only once that shard is cut over; a group being
//!   removed is neither written nor read from the start.

use crate::documents::{check_reserved_fields, delete_batch_id, document_id, Document};
use crate::ops::write::{FanoutWrite, WriteTask};
use crate::ops::{encode_query_value, Method, NodeRequest, RequestId};
use crate::quorum::{ShardOwners, WriteQuorum};
use crate::routing::{canonical_id, shard_for_key, Placement};
use crate::topology::{GroupId, Node, NodeId, NodeState, ShardId, Topology};
use crate::{MeiliError, Millis, RESERVED_PREFIX, SHARD_FIELD};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use xxhash_rust::xxh3::xxh3_64;

const CODE: &str = "miroir_invalid_migration";
/// How long to wait between two polls of a node task.
const TASK_POLL_MS: Millis = 20;

fn invalid(msg: impl Into<String>) -> MeiliError {
    MeiliError::invalid(400, CODE, msg)
}

// ----- planning -----

/// One change of the fleet's shape.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// Adds a node (new id, or a `Joining` one) to its group as `Active`.
    AddNode(Node),
    /// Moves every shard off a placed node while it keeps serving; the new topology marks it `Removed`.
    DrainNode(NodeId),
    /// Forgets a node that holds nothing any more (drained, or never placed): no shard moves.
    RemoveNode(NodeId),
    /// A placed node is gone for good: its shards are re-replicated from the survivors to restore RF.
    FailNode(NodeId),
    /// Adds a replica group made of these nodes (their `replica_group` is overwritten with the new group id).
    AddGroup(Vec<Node>),
    /// Removes the last replica group (its id must be RG − 1): routing stops at once, nothing is copied.
    RemoveGroup(GroupId),
}

/// What changes for one shard in one replica group.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct GroupMove {
    /// Old owners that survive in this group, or (when there are none) in the other groups.
    pub sources: Vec<NodeId>,
    /// New owners that are not old owners.
    pub targets: Vec<NodeId>,
    /// Old owners that are not new owners (lost ones included; they are never cleaned).
    pub leaving: Vec<NodeId>,
}

/// A planned migration: the two topologies, the lost nodes, and every shard that moves.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// Topology at epoch e.
    pub old: Topology,
    /// Topology at epoch e+1.
    pub new: Topology,
    /// Nodes whose copies are gone for good.
    pub lost: BTreeSet<NodeId>,
    /// For every shard whose owners change, the move per group `0..max(RG_old, RG_new)`.
    pub moves: BTreeMap<ShardId, Vec<GroupMove>>,
}

/// Plans the migration from `old` to `new` (same S and RF, `new.epoch > old.epoch`), with `lost` nodes never
/// used as sources. Fails when a topology is invalid or when a moving shard has no surviving source.
pub fn plan(old: &Topology, new: &Topology, lost: BTreeSet<NodeId>) -> Result<Plan, MeiliError> {
    let old_p = Placement::new(old)?;
    let new_p = Placement::new(new)?;
    if old.shards != new.shards {
        return Err(invalid(format!(
            "A migration cannot change the number of shards ({} to {}).",
            old.shards, new.shards
        )));
    }
    if old.replication_factor != new.replication_factor {
        return Err(invalid(format!(
            "A migration cannot change the replication factor ({} to {}).",
            old.replication_factor, new.replication_factor
        )));
    }
    if !new.is_newer_than(old) {
        return Err(invalid(format!(
            "The new topology (epoch {}) must be newer than the current one (epoch {}).",
            new.epoch, old.epoch
        )));
    }
    for id in &lost {
        if new.node(id).is_some_and(|n| n.state.is_placed()) {
            return Err(invalid(format!(
                "The node `{id}` is declared lost but is still placed in the new topology."
            )));
        }
    }
    let groups = old_p.groups().max(new_p.groups());
    let mut moves = BTreeMap::new();
    for s in 0..old.shards {
        let mut per_group = Vec::with_capacity(groups as usize);
        let mut changed = false;
        for g in 0..groups {
            let old_o = old_p.owners(s, g);
            let new_o = new_p.owners(s, g);
            let targets: Vec<NodeId> = new_o.iter().filter(|n| !old_o.contains(n)).cloned().collect();
            let leaving: Vec<NodeId> = old_o.iter().filter(|n| !new_o.contains(n)).cloned().collect();
            changed |= !targets.is_empty() || !leaving.is_empty();
            let mut sources: Vec<NodeId> =
                old_o.iter().filter(|n| !lost.contains(*n)).cloned().collect();
            if sources.is_empty() {
                for h in (0..old_p.groups()).filter(|h| *h != g) {
                    sources.extend(old_p.owners(s, h).iter().filter(|n| !lost.contains(*n)).cloned());
                }
            }
            if !targets.is_empty() && sources.is_empty() {
                return Err(MeiliError::invalid(
                    409,
                    "miroir_shard_unrecoverable",
                    format!("Shard {s} has no surviving copy to re-replicate from."),
                ));
            }
            per_group.push(GroupMove {
                sources,
                targets,
                leaving,
            });
        }
        if changed {
            moves.insert(s, per_group);
        }
    }
    Ok(Plan {
        old: old.clone(),
        new: new.clone(),
        lost,
        moves,
    })
}

fn not_found(id: &NodeId) -> MeiliError {
    MeiliError::invalid(404, "miroir_node_not_found", format!("Node `{id}` not found."))
}

/// Derives the next topology from `change` and plans the migration to it.
pub fn plan_change(current: &Topology, change: &Change) -> Result<Plan, MeiliError> {
    let mut lost = BTreeSet::new();
    let new = match change {
        Change::AddNode(node) => {
            if node.replica_group >= current.replica_groups {
                return Err(invalid(format!(
                    "Replica group {} does not exist (there are {}).",
                    node.replica_group, current.replica_groups
                )));
            }
            match current.node(&node.id) {
                Some(n) if n.state != NodeState::Joining => {
                    return Err(invalid(format!("The node `{}` already exists.", node.id)))
                }
                _ => {}
            }
            let node = Node {
                state: NodeState::Active,
                ..node.clone()
            };
            current.next(|t| {
                t.nodes.retain(|n| n.id != node.id);
                t.nodes.push(node);
            })?
        }
        Change::DrainNode(id) | Change::FailNode(id) => {
            let Some(n) = current.node(id) else {
                return Err(not_found(id));
            };
            if !n.state.is_placed() {
                return Err(invalid(format!("The node `{id}` holds no shard.")));
            }
            if matches!(change, Change::FailNode(_)) {
                lost.insert(id.clone());
            }
            current.next(|t| set_state(t, id, NodeState::Removed))?
        }
        Change::RemoveNode(id) => {
            let Some(n) = current.node(id) else {
                return Err(not_found(id));
            };
            if n.state.is_placed() {
                return Err(MeiliError::invalid(
                    409,
                    "miroir_node_not_drained",
                    format!("The node `{id}` still holds shards: drain it first."),
                ));
            }
            current.next(|t| set_state(t, id, NodeState::Removed))?
        }
        Change::AddGroup(nodes) => {
            let g = current.replica_groups;
            for n in nodes {
                if current.node(&n.id).is_some() {
                    return Err(invalid(format!("The node `{}` already exists.", n.id)));
                }
            }
            current.next(|t| {
                t.replica_groups += 1;
                t.nodes.extend(nodes.iter().map(|n| Node {
                    replica_group: g,
                    state: NodeState::Active,
                    ..n.clone()
                }));
            })?
        }
        Change::RemoveGroup(g) => {
            if current.replica_groups < 2 || *g + 1 != current.replica_groups {
                return Err(invalid(format!(
                    "Only the last replica group ({}) can be removed, and never the only one; got {g}.",
                    current.replica_groups.saturating_sub(1)
                )));
            }
            current.next(|t| {
                t.replica_groups -= 1;
                for n in t.nodes.iter_mut().filter(|n| n.replica_group == *g) {
                    // Removed nodes keep their id reserved; their group must stay in range.
                    n.state = NodeState::Removed;
                    n.replica_group = 0;
                }
            })?
        }
    };
    plan(current, &new, lost)
}

fn set_state(t: &mut Topology, id: &NodeId, state: NodeState) {
    for n in t.nodes.iter_mut().filter(|n| n.id == *id) {
        n.state = state;
    }
}

// ----- fingerprints -----

fn canon(v: &Value, out: &mut String) {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                canon(&m[k], out);
            }
            out.push('}');
        }
        Value::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canon(x, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// A document's content fingerprint: XXH3 of its canonical JSON (object keys sorted at every level), with
/// every top-level `_miroir_*` field left out. Field order does not matter; any value change does.
pub fn fingerprint(doc: &Document) -> u64 {
    let visible: Map<String, Value> = doc
        .iter()
        .filter(|(k, _)| !k.starts_with(RESERVED_PREFIX))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let mut s = String::new();
    canon(&Value::Object(visible), &mut s);
    xxh3_64(s.as_bytes())
}

// ----- the machine -----

/// A shard's migration phase (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    Planned,
    DualWrite,
    Copy,
    CatchUp,
    Fence,
    CutOver,
    Cleanup,
    Done,
}

/// A deliberately broken coordinator, for tests that show the simulator's checkers catch it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PlantedBug {
    /// The correct machine.
    #[default]
    None,
    /// Cut over right after the copy: no catch-up, no fence, no final verify.
    SkipVerify,
    /// Verify without the fence: client writes keep flowing through the final verify and the cut-over.
    SkipFence,
}

/// Knobs of a migration.
#[derive(Debug, Clone, PartialEq)]
pub struct MigrationParams {
    /// The index being migrated.
    pub index_uid: String,
    /// Its primary key (stated on every copy write).
    pub primary_key: String,
    /// How many shards may be between `dual_write` and `cleanup` at once (at least 1 is used).
    pub max_concurrent_migrations: usize,
    /// Copy throttle: documents per second per shard (0 = unthrottled).
    pub docs_per_second: u64,
    /// Documents per page read from a node.
    pub page_size: usize,
    /// How long a shard pauses after a failure.
    pub retry_after_ms: Millis,
    /// How long a fence may hold client writes before it is lifted.
    pub fence_timeout_ms: Millis,
    /// Verify passes in `catch_up` before going to the fence even if the last one was not clean.
    pub max_catch_up_passes: u32,
    /// Test-only: plant a bug.
    pub planted: PlantedBug,
}

impl MigrationParams {
    /// Defaults for one index.
    pub fn new(index_uid: impl Into<String>, primary_key: impl Into<String>) -> Self {
        MigrationParams {
            index_uid: index_uid.into(),
            primary_key: primary_key.into(),
            max_concurrent_migrations: 2,
            docs_per_second: 5_000,
            page_size: 100,
            retry_after_ms: 500,
            fence_timeout_ms: 5_000,
            max_catch_up_passes: 3,
            planted: PlantedBug::None,
        }
    }
}

/// What the shell must do.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Send this request; feed the answer to [`Migration::on_response`] or [`Migration::on_failure`].
    Send(NodeRequest),
    /// Store this record durably, then call [`Migration::on_persisted`] with `seq`.
    Persist {
        /// Sequence number to acknowledge.
        seq: u64,
        /// The record (see [`Migration::record`]).
        record: Value,
    },
}

/// One shard's routes in the current view.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ShardRoute {
    /// Every node a client write for the shard goes to (deduplicated, group by group).
    pub write_targets: Vec<NodeId>,
    /// Per group (`0..RG_new`), the owners whose acknowledgements count.
    pub ack: Vec<Vec<NodeId>>,
}

/// Proof that a client write was admitted; give it back to [`Migration::write_finished`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub struct WriteTicket {
    shards: Vec<ShardId>,
}

/// A client write to build from the routing view.
#[derive(Debug, Clone, PartialEq)]
pub enum WriteIntent {
    /// Add or replace (`replace`, POST) or update (PUT) documents of the migrated index.
    Documents {
        /// Documents as the client sent them (without `_miroir_shard`).
        docs: Vec<Document>,
        /// POST (true) or PUT (false).
        replace: bool,
    },
    /// Delete documents by id (delete-batch values).
    DeleteIds(Vec<Value>),
    /// The same request to every node that owns or is receiving any shard (judged over all shards).
    Broadcast {
        method: Method,
        path: String,
        body: Option<Value>,
    },
}

#[derive(Debug, Clone, PartialEq)]
enum Work {
    GetSettings { node: NodeId },
    CreateIndex { node: NodeId },
    PatchSettings { node: NodeId },
    Fetch { node: NodeId, offset: usize, purpose: Scan },
    Write { node: NodeId, docs: Vec<Document> },
    Delete { node: NodeId, ids: Vec<String> },
    Barrier { node: NodeId },
    DeleteShard { node: NodeId },
    AwaitTask { node: NodeId, uid: u64, tolerate_failure: bool },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scan {
    Copy,
    Source,
    Target(usize),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FenceStage {
    Draining,
    Barriers,
    Verify,
}

#[derive(Debug, Clone)]
struct Job {
    phase: Phase,
    sources: Vec<NodeId>,
    targets: Vec<NodeId>,
    leaving: Vec<NodeId>,
    source_idx: usize,
    queue: VecDeque<Work>,
    waiting: Option<(RequestId, Work)>,
    not_before: Millis,
    started: bool,
    prepared: bool,
    settings: Option<Value>,
    copy_offset: usize,
    copy_done: bool,
    pass_running: bool,
    passes: u32,
    dirty: bool,
    src: BTreeMap<String, (u64, Document)>,
    tgt: BTreeMap<String, u64>,
    fenced: bool,
    fence_stage: FenceStage,
    fence_deadline: Millis,
    cut_persisted: bool,
    failures: u64,
}

impl Job {
    fn new(phase: Phase, moves: &[GroupMove], lost: &BTreeSet<NodeId>) -> Job {
        let mut sources = Vec::new();
        let mut targets = Vec::new();
        let mut leaving = Vec::new();
        for m in moves {
            for n in &m.sources {
                if !sources.contains(n) {
                    sources.push(n.clone());
                }
            }
            for n in &m.targets {
                if !targets.contains(n) {
                    targets.push(n.clone());
                }
            }
            for n in m.leaving.iter().filter(|n| !lost.contains(*n)) {
                if !leaving.contains(n) {
                    leaving.push(n.clone());
                }
            }
        }
        Job {
            phase,
            sources,
            targets,
            leaving,
            source_idx: 0,
            queue: VecDeque::new(),
            waiting: None,
            not_before: 0,
            started: false,
            prepared: false,
            settings: None,
            copy_offset: 0,
            copy_done: false,
            pass_running: false,
            passes: 0,
            dirty: false,
            src: BTreeMap::new(),
            tgt: BTreeMap::new(),
            fenced: false,
            fence_stage: FenceStage::Draining,
            fence_deadline: 0,
            cut_persisted: phase > Phase::CutOver,
            failures: 0,
        }
    }

    fn source(&self) -> Option<&NodeId> {
        if self.sources.is_empty() {
            None
        } else {
            self.sources.get(self.source_idx % self.sources.len())
        }
    }

    fn is_cut(&self) -> bool {
        self.phase > Phase::CutOver || (self.phase == Phase::CutOver && self.cut_persisted)
    }

    fn is_active(&self) -> bool {
        self.phase > Phase::Planned && self.phase < Phase::Done
    }
}

/// The persisted form of a migration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Record {
    version: u32,
    index_uid: String,
    primary_key: String,
    old: Topology,
    new: Topology,
    lost: Vec<NodeId>,
    shards: BTreeMap<String, Phase>,
}

/// The migration coordinator of one index. See the module documentation.
#[derive(Debug, Clone)]
pub struct Migration {
    plan: Plan,
    params: MigrationParams,
    old_p: Placement,
    new_p: Placement,
    jobs: BTreeMap<ShardId, Job>,
    outbox: VecDeque<Action>,
    requests: BTreeMap<RequestId, ShardId>,
    next_request: RequestId,
    seq: u64,
    awaiting_persist: Option<u64>,
    in_flight: BTreeMap<ShardId, u64>,
    routes: Vec<ShardRoute>,
    read: Placement,
}

impl Migration {
    /// Starts a planned migration; the first action is the persistence of its initial record.
    pub fn start(plan: Plan, params: MigrationParams) -> Result<Migration, MeiliError> {
        let phases = plan.moves.keys().map(|s| (*s, Phase::Planned)).collect();
        Self::build(plan, params, phases)
    }

    /// Rebuilds a coordinator from a record written by [`Migration::record`] (see the module documentation
    /// for where each shard resumes). The first action is the persistence of the resumed record.
    pub fn resume(record: &Value, params: MigrationParams) -> Result<Migration, MeiliError> {
        let r: Record = serde_json::from_value(record.clone())
            .map_err(|e| invalid(format!("The migration record is unreadable: {e}.")))?;
        if r.version != 1 {
            return Err(invalid(format!(
                "Unknown migration record version {}.",
                r.version
            )));
        }
        if r.index_uid != params.index_uid {
            return Err(invalid(format!(
                "The migration record is for index `{}`, not `{}`.",
                r.index_uid, params.index_uid
            )));
        }
        let plan = plan(&r.old, &r.new, r.lost.into_iter().collect())?;
        let mut phases = BTreeMap::new();
        for s in plan.moves.keys() {
            let recorded = r.shards.get(&s.to_string()).copied().ok_or_else(|| {
                invalid(format!("The migration record has no entry for shard {s}."))
            })?;
            let phase = match recorded {
                Phase::Planned => Phase::Planned,
                Phase::DualWrite | Phase::Copy | Phase::CatchUp | Phase::Fence => Phase::DualWrite,
                Phase::CutOver | Phase::Cleanup => Phase::Cleanup,
                Phase::Done => Phase::Done,
            };
            phases.insert(*s, phase);
        }
        Self::build(plan, params, phases)
    }

    fn build(
        plan: Plan,
        params: MigrationParams,
        phases: BTreeMap<ShardId, Phase>,
    ) -> Result<Migration, MeiliError> {
        let old_p = Placement::new(&plan.old)?;
        let new_p = Placement::new(&plan.new)?;
        let jobs = plan
            .moves
            .iter()
            .map(|(s, m)| {
                let phase = phases.get(s).copied().unwrap_or(Phase::Planned);
                (*s, Job::new(phase, m, &plan.lost))
            })
            .collect();
        let read = new_p.clone();
        let mut m = Migration {
            plan,
            params,
            old_p,
            new_p,
            jobs,
            outbox: VecDeque::new(),
            requests: BTreeMap::new(),
            next_request: 0,
            seq: 0,
            awaiting_persist: None,
            in_flight: BTreeMap::new(),
            routes: Vec::new(),
            read,
        };
        m.rebuild_view();
        m.persist();
        Ok(m)
    }

    /// The plan being carried out.
    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// The phase of every moving shard.
    pub fn phases(&self) -> BTreeMap<ShardId, Phase> {
        self.jobs.iter().map(|(s, j)| (*s, j.phase)).collect()
    }

    /// Whether every shard is done (the new topology is then in force: use `Placement::new(&plan().new)`).
    pub fn is_finished(&self) -> bool {
        self.jobs.values().all(|j| j.phase == Phase::Done)
    }

    /// How many failures (paused retries) each shard went through.
    pub fn failures(&self) -> BTreeMap<ShardId, u64> {
        self.jobs.iter().map(|(s, j)| (*s, j.failures)).collect()
    }

    /// The durable record:
    /// `{"version": 1, "indexUid", "primaryKey", "old": Topology, "new": Topology, "lost": [node ids],
    /// "shards": {"<shard>": "<phase>"}}` (phases in snake_case; only moving shards are listed).
    pub fn record(&self) -> Value {
        let r = Record {
            version: 1,
            index_uid: self.params.index_uid.clone(),
            primary_key: self.params.primary_key.clone(),
            old: self.plan.old.clone(),
            new: self.plan.new.clone(),
            lost: self.plan.lost.iter().cloned().collect(),
            shards: self
                .jobs
                .iter()
                .map(|(s, j)| (s.to_string(), j.phase))
                .collect(),
        };
        serde_json::to_value(r).unwrap_or(Value::Null)
    }

    fn persist(&mut self) {
        self.seq += 1;
        self.awaiting_persist = Some(self.seq);
        let record = self.record();
        self.outbox.push_back(Action::Persist {
            seq: self.seq,
            record,
        });
    }

    // ----- routing view -----

    fn rebuild_view(&mut self) {
        let shards = self.plan.new.shards;
        let rf = self.plan.new.replication_factor as usize;
        let g_old = self.old_p.groups();
        let g_new = self.new_p.groups();
        let lost = &self.plan.lost;
        let mut routes = Vec::with_capacity(shards as usize);
        let mut read_owners = Vec::with_capacity(shards as usize * g_new as usize * rf);
        for s in 0..shards {
            let job = self.jobs.get(&s);
            let cut = job.is_none_or(|j| j.is_cut());
            let dual = job.is_some_and(|j| j.phase >= Phase::DualWrite);
            let mut route = ShardRoute::default();
            let push = |route: &mut ShardRoute, n: &NodeId| {
                if !route.write_targets.contains(n) {
                    route.write_targets.push(n.clone());
                }
            };
            // read owners of old group h, lost nodes replaced by a survivor of the shard
            let survivors: Vec<&NodeId> = (0..g_old)
                .flat_map(|h| self.old_p.owners(s, h))
                .filter(|n| !lost.contains(*n))
                .collect();
            let old_read = |h: GroupId| -> Vec<NodeId> {
                let own = self.old_p.owners(s, h);
                let local: Vec<&NodeId> = own.iter().filter(|n| !lost.contains(*n)).collect();
                own.iter()
                    .map(|n| {
                        if !lost.contains(n) {
                            n.clone()
                        } else {
                            local
                                .first()
                                .or(survivors.first())
                                .map(|x| (*x).clone())
                                .unwrap_or_else(|| n.clone())
                        }
                    })
                    .collect()
            };
            for g in 0..g_new {
                let new_o = self.new_p.owners(s, g);
                if cut {
                    for n in new_o {
                        push(&mut route, n);
                    }
                    route.ack.push(new_o.to_vec());
                    read_owners.extend(new_o.iter().cloned());
                    continue;
                }
                let old_o: Vec<NodeId> = if g < g_old {
                    self.old_p
                        .owners(s, g)
                        .iter()
                        .filter(|n| !lost.contains(*n))
                        .cloned()
                        .collect()
                } else {
                    Vec::new()
                };
                for n in &old_o {
                    push(&mut route, n);
                }
                if dual {
                    for n in new_o {
                        push(&mut route, n);
                    }
                }
                route.ack.push(old_o);
                let read = if g < g_old {
                    old_read(g)
                } else {
                    old_read(g % g_old.max(1))
                };
                read_owners.extend(read);
            }
            routes.push(route);
        }
        self.routes = routes;
        if let Some(p) = Placement::from_owners(shards, rf as u32, g_new, read_owners) {
            self.read = p;
        }
    }

    /// The routes of `shard` right now (None when out of range).
    pub fn route(&self, shard: ShardId) -> Option<&ShardRoute> {
        self.routes.get(shard as usize)
    }

    /// The placement reads must use right now: per shard the old owners until its cut-over is persisted,
    /// the new ones afterwards (a group being added reads from an old group until then).
    pub fn read_placement(&self) -> &Placement {
        &self.read
    }

    /// Whether client writes to `shard` must wait (its fence is up).
    pub fn is_fenced(&self, shard: ShardId) -> bool {
        self.jobs.get(&shard).is_some_and(|j| j.fenced)
    }

    fn ack_owners(&self, shards: impl IntoIterator<Item = ShardId>) -> ShardOwners {
        shards
            .into_iter()
            .map(|s| {
                (
                    s,
                    self.routes
                        .get(s as usize)
                        .map(|r| r.ack.clone())
                        .unwrap_or_default(),
                )
            })
            .collect()
    }

    /// Admits a client write and builds it from the routing view: `Ok(Some((write, ticket)))` to run it
    /// (then give the ticket back to [`Migration::write_finished`] once every node answered or timed out),
    /// `Ok(None)` when a shard it touches is fenced (try again shortly), `Err` for an invalid document (the
    /// same errors as `documents::plan_batch`).
    pub fn try_write(
        &mut self,
        intent: WriteIntent,
        task: WriteTask,
        quorum: WriteQuorum,
        deadline: Millis,
    ) -> Result<Option<(FanoutWrite, WriteTicket)>, MeiliError> {
        let shards_n = self.plan.new.shards;
        let idx = self.params.index_uid.clone();
        let (shards, requests): (BTreeSet<ShardId>, Vec<(NodeId, Method, String, Option<Value>)>) =
            match intent {
                WriteIntent::Documents { docs, replace } => {
                    let pk = self.params.primary_key.clone();
                    let mut per_node: BTreeMap<NodeId, Vec<Value>> = BTreeMap::new();
                    let mut shards = BTreeSet::new();
                    let mut tagged = Vec::with_capacity(docs.len());
                    for mut doc in docs {
                        let id = document_id(&doc, &pk)?;
                        check_reserved_fields(&doc)?;
                        let s = shard_for_key(&id, shards_n);
                        doc.insert(SHARD_FIELD.to_string(), Value::from(s));
                        shards.insert(s);
                        tagged.push((s, doc));
                    }
                    if shards.iter().any(|s| self.is_fenced(*s)) {
                        return Ok(None);
                    }
                    for (s, doc) in tagged {
                        for n in self.routes[s as usize].write_targets.iter() {
                            per_node
                                .entry(n.clone())
                                .or_default()
                                .push(Value::Object(doc.clone()));
                        }
                    }
                    let path = format!(
                        "/indexes/{idx}/documents?primaryKey={}",
                        encode_query_value(&pk)
                    );
                    let method = if replace { Method::Post } else { Method::Put };
                    let requests = per_node
                        .into_iter()
                        .map(|(n, d)| (n, method, path.clone(), Some(Value::Array(d))))
                        .collect();
                    (shards, requests)
                }
                WriteIntent::DeleteIds(ids) => {
                    let mut per_node: BTreeMap<NodeId, Vec<Value>> = BTreeMap::new();
                    let mut shards = BTreeSet::new();
                    let mut routed = Vec::with_capacity(ids.len());
                    for v in &ids {
                        let id = delete_batch_id(v);
                        let s = shard_for_key(&id, shards_n);
                        shards.insert(s);
                        routed.push((s, id));
                    }
                    if shards.iter().any(|s| self.is_fenced(*s)) {
                        return Ok(None);
                    }
                    for (s, id) in routed {
                        for n in self.routes[s as usize].write_targets.iter() {
                            per_node
                                .entry(n.clone())
                                .or_default()
                                .push(Value::String(id.clone()));
                        }
                    }
                    let path = format!("/indexes/{idx}/documents/delete-batch");
                    let requests = per_node
                        .into_iter()
                        .map(|(n, d)| (n, Method::Post, path.clone(), Some(Value::Array(d))))
                        .collect();
                    (shards, requests)
                }
                WriteIntent::Broadcast { method, path, body } => {
                    let shards: BTreeSet<ShardId> = (0..shards_n).collect();
                    if shards.iter().any(|s| self.is_fenced(*s)) {
                        return Ok(None);
                    }
                    let nodes: BTreeSet<&NodeId> =
                        self.routes.iter().flat_map(|r| &r.write_targets).collect();
                    let requests = nodes
                        .into_iter()
                        .map(|n| (n.clone(), method, path.clone(), body.clone()))
                        .collect();
                    (shards, requests)
                }
            };
        for s in &shards {
            *self.in_flight.entry(*s).or_default() += 1;
        }
        let owners = self.ack_owners(shards.iter().copied());
        let write = FanoutWrite::new(task, owners, quorum, deadline, requests);
        Ok(Some((
            write,
            WriteTicket {
                shards: shards.into_iter().collect(),
            },
        )))
    }

    /// An admitted write is over: every node answered or timed out.
    pub fn write_finished(&mut self, ticket: WriteTicket, now: Millis) {
        for s in ticket.shards {
            if let Some(c) = self.in_flight.get_mut(&s) {
                *c = c.saturating_sub(1);
            }
        }
        self.pump(now);
    }

    // ----- events -----

    /// The next action to carry out, if any.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.outbox.pop_front()
    }

    /// When [`Migration::handle_timeout`] must be called (a paused or throttled shard, a fence deadline).
    pub fn poll_timeout(&self) -> Option<Millis> {
        if self.awaiting_persist.is_some() {
            return None;
        }
        self.jobs
            .values()
            .filter(|j| j.waiting.is_none() && j.phase != Phase::Done && j.phase != Phase::Planned)
            .map(|j| {
                if j.fenced {
                    j.not_before.min(j.fence_deadline)
                } else {
                    j.not_before
                }
            })
            .chain(
                self.jobs
                    .values()
                    .filter(|j| j.fenced && j.waiting.is_some())
                    .map(|j| j.fence_deadline),
            )
            .min()
    }

    /// The clock reached a wake-up time (or the shell just wants the machine to make progress).
    pub fn handle_timeout(&mut self, now: Millis) {
        self.pump(now);
    }

    /// The record with sequence `seq` is durable.
    pub fn on_persisted(&mut self, seq: u64, now: Millis) {
        if self.awaiting_persist != Some(seq) {
            return;
        }
        self.awaiting_persist = None;
        let mut changed = false;
        for job in self.jobs.values_mut() {
            if job.phase == Phase::CutOver && !job.cut_persisted {
                job.cut_persisted = true;
                job.fenced = false;
                changed = true;
            }
        }
        if changed {
            self.rebuild_view();
        }
        self.pump(now);
    }

    /// A node answered request `id`.
    pub fn on_response(&mut self, id: RequestId, status: u16, body: &Value, now: Millis) {
        let Some(shard) = self.requests.remove(&id) else {
            return;
        };
        let Some(job) = self.jobs.get_mut(&shard) else {
            return;
        };
        let Some((wid, work)) = job.waiting.take() else {
            return;
        };
        if wid != id {
            job.waiting = Some((wid, work));
            return;
        }
        let ok = (200..300).contains(&status);
        let outcome = if ok {
            Self::absorb(job, work, body, &self.params, now)
        } else {
            Err(())
        };
        if outcome.is_err() {
            self.fail(shard, now);
        }
        self.pump(now);
    }

    /// Request `id` could not be delivered or timed out.
    pub fn on_failure(&mut self, id: RequestId, now: Millis) {
        let Some(shard) = self.requests.remove(&id) else {
            return;
        };
        let Some(job) = self.jobs.get_mut(&shard) else {
            return;
        };
        if job.waiting.as_ref().is_some_and(|(w, _)| *w == id) {
            job.waiting = None;
            self.fail(shard, now);
        }
        self.pump(now);
    }

    fn fail(&mut self, shard: ShardId, now: Millis) {
        let retry = self.params.retry_after_ms;
        let mut unfenced = false;
        if let Some(job) = self.jobs.get_mut(&shard) {
            job.failures += 1;
            job.queue.clear();
            job.waiting = None;
            job.not_before = now.saturating_add(retry);
            job.source_idx += 1;
            job.started = false;
            job.pass_running = false;
            match job.phase {
                Phase::Fence => {
                    job.fenced = false;
                    unfenced = true;
                    job.phase = Phase::CatchUp;
                    job.passes = 0;
                }
                Phase::DualWrite => {
                    job.settings = None;
                    job.prepared = false;
                }
                _ => {}
            }
        }
        self.requests.retain(|_, s| *s != shard);
        if unfenced {
            self.rebuild_view();
        }
    }

    /// Takes in an answer; `Err` means the request failed in substance.
    fn absorb(
        job: &mut Job,
        work: Work,
        body: &Value,
        params: &MigrationParams,
        now: Millis,
    ) -> Result<(), ()> {
        let task_uid = || body.get("taskUid").and_then(Value::as_u64).ok_or(());
        match work {
            Work::GetSettings { .. } => {
                if !body.is_object() {
                    return Err(());
                }
                job.settings = Some(body.clone());
            }
            Work::CreateIndex { node } => {
                let uid = task_uid()?;
                job.queue.push_front(Work::AwaitTask {
                    node,
                    uid,
                    tolerate_failure: true,
                });
            }
            Work::PatchSettings { node }
            | Work::Write { node, .. }
            | Work::Delete { node, .. }
            | Work::Barrier { node }
            | Work::DeleteShard { node } => {
                let uid = task_uid()?;
                job.queue.push_front(Work::AwaitTask {
                    node,
                    uid,
                    tolerate_failure: false,
                });
            }
            Work::AwaitTask {
                node,
                uid,
                tolerate_failure,
            } => match body.get("status").and_then(Value::as_str) {
                Some("succeeded") => {}
                Some("failed") | Some("canceled") if tolerate_failure => {}
                Some("enqueued") | Some("processing") => {
                    job.queue.push_front(Work::AwaitTask {
                        node,
                        uid,
                        tolerate_failure,
                    });
                    job.not_before = now.saturating_add(TASK_POLL_MS);
                }
                _ => return Err(()),
            },
            Work::Fetch {
                node,
                offset,
                purpose,
            } => {
                let results = body.get("results").and_then(Value::as_array).ok_or(())?;
                let n = results.len();
                let mut docs = Vec::with_capacity(n);
                for r in results {
                    let doc = r.as_object().ok_or(())?.clone();
                    let id = doc
                        .get(&params.primary_key)
                        .and_then(canonical_id)
                        .ok_or(())?;
                    docs.push((id, doc));
                }
                let more = n >= params.page_size.max(1);
                match purpose {
                    Scan::Copy => {
                        job.copy_offset = offset + n;
                        job.copy_done = !more;
                        if n > 0 {
                            let batch: Vec<Document> = docs.into_iter().map(|(_, d)| d).collect();
                            for t in job.targets.iter().rev() {
                                job.queue.push_front(Work::Write {
                                    node: t.clone(),
                                    docs: batch.clone(),
                                });
                            }
                            if params.docs_per_second > 0 {
                                let wait = (n as u64).saturating_mul(1000) / params.docs_per_second;
                                job.not_before = now.saturating_add(wait);
                            }
                        }
                    }
                    Scan::Source => {
                        for (id, d) in docs {
                            job.src.insert(id, (fingerprint(&d), d));
                        }
                        if more {
                            job.queue.push_front(Work::Fetch {
                                node,
                                offset: offset + n,
                                purpose,
                            });
                        } else {
                            job.tgt.clear();
                            if let Some(t) = job.targets.first() {
                                job.queue.push_front(Work::Fetch {
                                    node: t.clone(),
                                    offset: 0,
                                    purpose: Scan::Target(0),
                                });
                            }
                        }
                    }
                    Scan::Target(i) => {
                        for (id, d) in docs {
                            job.tgt.insert(id, fingerprint(&d));
                        }
                        if more {
                            job.queue.push_front(Work::Fetch {
                                node,
                                offset: offset + n,
                                purpose,
                            });
                        } else {
                            let tgt = std::mem::take(&mut job.tgt);
                            let missing: Vec<Document> = job
                                .src
                                .iter()
                                .filter(|(id, (fp, _))| tgt.get(*id) != Some(fp))
                                .map(|(_, (_, d))| d.clone())
                                .collect();
                            let extra: Vec<String> = tgt
                                .keys()
                                .filter(|id| !job.src.contains_key(*id))
                                .cloned()
                                .collect();
                            // next target's scan goes after this target's repairs
                            if let Some(t) = job.targets.get(i + 1) {
                                job.queue.push_front(Work::Fetch {
                                    node: t.clone(),
                                    offset: 0,
                                    purpose: Scan::Target(i + 1),
                                });
                            }
                            if !extra.is_empty() {
                                job.dirty = true;
                                job.queue.push_front(Work::Delete {
                                    node: node.clone(),
                                    ids: extra,
                                });
                            }
                            if !missing.is_empty() {
                                job.dirty = true;
                                job.queue.push_front(Work::Write {
                                    node,
                                    docs: missing,
                                });
                            }
                        }
                    }
                }
            }
        }
        Ok(())
    }

    fn request_for(&self, s: ShardId, work: &Work) -> (NodeId, Method, String, Option<Value>) {
        let idx = &self.params.index_uid;
        let pk = &self.params.primary_key;
        let filter = format!("{SHARD_FIELD} = {s}");
        match work {
            Work::GetSettings { node } => (
                node.clone(),
                Method::Get,
                format!("/indexes/{idx}/settings"),
                None,
            ),
            Work::CreateIndex { node } => (
                node.clone(),
                Method::Post,
                "/indexes".into(),
                Some(json!({"uid": idx, "primaryKey": pk})),
            ),
            Work::PatchSettings { node } => (
                node.clone(),
                Method::Patch,
                format!("/indexes/{idx}/settings"),
                self.jobs.get(&s).and_then(|j| j.settings.clone()),
            ),
            Work::Fetch { node, offset, .. } => (
                node.clone(),
                Method::Post,
                format!("/indexes/{idx}/documents/fetch"),
                Some(json!({"filter": filter, "offset": offset, "limit": self.params.page_size.max(1)})),
            ),
            Work::Write { node, docs } => (
                node.clone(),
                Method::Post,
                format!(
                    "/indexes/{idx}/documents?primaryKey={}",
                    encode_query_value(pk)
                ),
                Some(Value::Array(docs.iter().cloned().map(Value::Object).collect())),
            ),
            Work::Delete { node, ids } => (
                node.clone(),
                Method::Post,
                format!("/indexes/{idx}/documents/delete-batch"),
                Some(Value::Array(ids.iter().cloned().map(Value::String).collect())),
            ),
            Work::Barrier { node } => (
                node.clone(),
                Method::Post,
                format!("/indexes/{idx}/documents/delete-batch"),
                Some(json!([])),
            ),
            Work::DeleteShard { node } => (
                node.clone(),
                Method::Post,
                format!("/indexes/{idx}/documents/delete"),
                Some(json!({ "filter": filter })),
            ),
            Work::AwaitTask { node, uid, .. } => {
                (node.clone(), Method::Get, format!("/tasks/{uid}"), None)
            }
        }
    }

    /// Drives every shard as far as it can go without an answer.
    fn pump(&mut self, now: Millis) {
        loop {
            if self.awaiting_persist.is_some() {
                return;
            }
            let mut progressed = false;
            let shards: Vec<ShardId> = self.jobs.keys().copied().collect();
            for s in shards {
                progressed |= self.step(s, now);
                if self.awaiting_persist.is_some() {
                    return;
                }
            }
            if !progressed {
                return;
            }
        }
    }

    /// One step of shard `s`; whether anything changed.
    fn step(&mut self, s: ShardId, now: Millis) -> bool {
        let active = self.jobs.values().filter(|j| j.is_active()).count();
        let max = self.params.max_concurrent_migrations.max(1);
        let planted = self.params.planted;
        let Some(job) = self.jobs.get_mut(&s) else {
            return false;
        };
        // a fence that overstays is lifted (even while a request is out: its answer is then ignored)
        if job.fenced && job.phase == Phase::Fence && now >= job.fence_deadline {
            job.fenced = false;
            job.phase = Phase::CatchUp;
            job.queue.clear();
            job.waiting = None;
            job.pass_running = false;
            job.passes = 0;
            job.failures += 1;
            self.requests.retain(|_, x| *x != s);
            self.rebuild_view();
            return true;
        }
        if job.waiting.is_some() || now < job.not_before || job.phase == Phase::Done {
            return false;
        }
        if let Some(work) = job.queue.pop_front() {
            let id = self.next_request;
            self.next_request += 1;
            let (node, method, path, body) = self.request_for(s, &work);
            let job = self.jobs.get_mut(&s).expect("job exists");
            job.waiting = Some((id, work));
            self.requests.insert(id, s);
            self.outbox.push_back(Action::Send(NodeRequest {
                id,
                node,
                method,
                path,
                body,
            }));
            return true;
        }
        // the queue is empty: the current stage is over
        match job.phase {
            Phase::Planned => {
                if active >= max {
                    return false;
                }
                job.phase = Phase::DualWrite;
                job.started = false;
                self.rebuild_view();
                true
            }
            Phase::DualWrite => {
                if job.targets.is_empty() {
                    // nothing to fill (a group is being removed): straight to the cut-over
                    job.phase = Phase::CutOver;
                    job.cut_persisted = false;
                    self.persist();
                    return true;
                }
                if !job.started {
                    job.started = true;
                    let Some(src) = job.source().cloned() else {
                        return false;
                    };
                    job.queue.push_back(Work::GetSettings { node: src });
                    return true;
                }
                if job.settings.is_none() {
                    job.started = false;
                    return true;
                }
                if !job.prepared {
                    job.prepared = true;
                    let targets = job.targets.clone();
                    for t in targets {
                        job.queue.push_back(Work::CreateIndex { node: t.clone() });
                        job.queue.push_back(Work::PatchSettings { node: t });
                    }
                    return true;
                }
                job.phase = Phase::Copy;
                job.copy_offset = 0;
                job.copy_done = false;
                true
            }
            Phase::Copy => {
                if !job.copy_done {
                    let Some(src) = job.source().cloned() else {
                        return false;
                    };
                    job.queue.push_back(Work::Fetch {
                        node: src,
                        offset: job.copy_offset,
                        purpose: Scan::Copy,
                    });
                    return true;
                }
                job.phase = Phase::CatchUp;
                job.passes = 0;
                job.pass_running = false;
                if planted == PlantedBug::SkipVerify {
                    job.phase = Phase::CutOver;
                    job.cut_persisted = false;
                    self.persist();
                }
                true
            }
            Phase::CatchUp => {
                if job.pass_running {
                    job.pass_running = false;
                    job.passes += 1;
                    if !job.dirty || job.passes >= self.params.max_catch_up_passes.max(1) {
                        job.phase = Phase::Fence;
                        job.fence_stage = FenceStage::Draining;
                        job.fence_deadline = now.saturating_add(self.params.fence_timeout_ms);
                        if planted != PlantedBug::SkipFence {
                            job.fenced = true;
                        }
                        return true;
                    }
                }
                Self::start_pass(job);
                true
            }
            Phase::Fence => match job.fence_stage {
                FenceStage::Draining => {
                    let busy = self.in_flight.get(&s).copied().unwrap_or(0) > 0;
                    if busy && planted != PlantedBug::SkipFence {
                        return false;
                    }
                    job.fence_stage = FenceStage::Barriers;
                    let mut nodes: Vec<NodeId> = job.source().cloned().into_iter().collect();
                    nodes.extend(job.targets.iter().cloned());
                    for n in nodes {
                        job.queue.push_back(Work::Barrier { node: n });
                    }
                    true
                }
                FenceStage::Barriers => {
                    job.fence_stage = FenceStage::Verify;
                    Self::start_pass(job);
                    true
                }
                FenceStage::Verify => {
                    if job.dirty {
                        Self::start_pass(job);
                        return true;
                    }
                    job.phase = Phase::CutOver;
                    job.cut_persisted = false;
                    self.persist();
                    true
                }
            },
            Phase::CutOver => {
                if !job.cut_persisted {
                    return false;
                }
                job.phase = Phase::Cleanup;
                job.started = false;
                true
            }
            Phase::Cleanup => {
                if !job.started {
                    job.started = true;
                    let leaving = job.leaving.clone();
                    for n in leaving {
                        job.queue.push_back(Work::DeleteShard { node: n });
                    }
                    return true;
                }
                job.phase = Phase::Done;
                self.persist();
                true
            }
            Phase::Done => false,
        }
    }

    fn start_pass(job: &mut Job) {
        job.pass_running = true;
        job.dirty = false;
        job.src.clear();
        job.tgt.clear();
        if let Some(src) = job.source().cloned() {
            job.queue.push_back(Work::Fetch {
                node: src,
                offset: 0,
                purpose: Scan::Source,
            });
        }
    }
}
