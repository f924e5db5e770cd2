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
//! - `cleanup`: first a wait of `cleanup_grace_ms` from entering the phase (also after a resume): a search
//!   planned with the old read placement just before the switch may still be on its way to a leaving owner,
//!   and other proxies read by the stored records they last saw; then `_miroir_shard = s` is deleted by
//!   filter on the leaving owners (never before the cut-over was persisted), each deletion awaited.
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
//! - cleanup of a shard is only sent after its cut-over was persisted, and at least `cleanup_grace_ms`
//!   after the shard entered `cleanup` (in the incarnation that sends it);
//! - a replica group being added serves reads of a shard only once that shard is cut over; a group being
//!   removed is neither written nor read from the start.
//!
//! # Known limits
//! - The chosen source is taken as the truth for its shard. With a quorum below "every owner" (RF=3
//!   `majority`, quorum `one`, several groups) a source can lack an acknowledged write another old owner
//!   has; the verify then copies its stale state. Until writes carry versions (repair), the source should be
//!   an owner that acknowledged everything, which `majority` with RF ≤ 2 in one group guarantees.
//! - One coordinator migrates one index; a fleet with several indexes runs one per index.
//! - Documents pages are read with offset/limit; a pass that races client writes may see a shifted page
//!   and repair wrongly, which only the fenced passes (no client writes) are trusted to undo.

use crate::docsync::{self, TaskPoll};
use crate::documents::{check_reserved_fields, delete_batch_id, document_id, Document};
use crate::ops::write::{FanoutWrite, WriteTask};
use crate::ops::{encode_query_value, Method, NodeRequest, RequestId};
use crate::quorum::{ShardOwners, WriteQuorum};
use crate::routing::{shard_for_key, Placement};
use crate::topology::{GroupId, Node, NodeId, NodeState, ShardId, Topology};
use crate::{MeiliError, Millis, SHARD_FIELD};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet, VecDeque};

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
            let targets: Vec<NodeId> = new_o
                .iter()
                .filter(|n| !old_o.contains(n))
                .cloned()
                .collect();
            let leaving: Vec<NodeId> = old_o
                .iter()
                .filter(|n| !new_o.contains(n))
                .cloned()
                .collect();
            changed |= !targets.is_empty() || !leaving.is_empty();
            let mut sources: Vec<NodeId> = old_o
                .iter()
                .filter(|n| !lost.contains(*n))
                .cloned()
                .collect();
            if sources.is_empty() {
                for h in (0..old_p.groups()).filter(|h| *h != g) {
                    sources.extend(
                        old_p
                            .owners(s, h)
                            .iter()
                            .filter(|n| !lost.contains(*n))
                            .cloned(),
                    );
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
    MeiliError::invalid(
        404,
        "miroir_node_not_found",
        format!("Node `{id}` not found."),
    )
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

/// A document's content fingerprint (shared with resharding, see [`crate::docsync::fingerprint`]).
pub use crate::docsync::fingerprint;

// ----- the machine -----

/// A shard's migration phase (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Waiting for a concurrency slot; old routing.
    Planned,
    /// Writes go to old ∪ new owners (acknowledged on the old ones); targets are being prepared.
    DualWrite,
    /// Pages of the shard are copied from a source to the targets.
    Copy,
    /// Verify passes repair the targets.
    CatchUp,
    /// Client writes for the shard are held; a final clean verify pass is required.
    Fence,
    /// Routing switches to the new owners once the record is persisted.
    CutOver,
    /// The leaving owners delete the shard.
    Cleanup,
    /// Finished.
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
    /// Never clean up: the leaving owners keep their copies of the shard after the cut-over.
    SkipCleanup,
    /// Delete the shard on the leaving owners as soon as the copy starts, long before the cut-over is
    /// persisted, while reads are still served by the old owners (and a leaving source copies nothing).
    CleanupBeforeCutover,
    /// Serve reads of a shard from its new owners as soon as dual writes start, before they hold the copy.
    ReadNewOwnersEarly,
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
    /// How long a shard waits in `cleanup` before deleting its copies on the leaving owners: reads planned
    /// with the old placement just before the switch (with their retries), here or on another proxy that
    /// reads by the records it last polled, must be answered by then, or they find the shard gone and miss
    /// its documents. At least the shell's longest read plus its store poll lag.
    pub cleanup_grace_ms: Millis,
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
            cleanup_grace_ms: 5_000,
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
        /// HTTP method.
        method: Method,
        /// Path and query string.
        path: String,
        /// JSON body, if any.
        body: Option<Value>,
    },
}

/// A node request before it gets an id: node, method, path, body.
type RequestSpec = (NodeId, Method, String, Option<Value>);

fn with_node(node: &NodeId, (method, path, body): docsync::RequestParts) -> RequestSpec {
    (node.clone(), method, path, body)
}

#[derive(Debug, Clone, PartialEq)]
enum Work {
    GetSettings {
        node: NodeId,
    },
    CreateIndex {
        node: NodeId,
    },
    PatchSettings {
        node: NodeId,
    },
    Fetch {
        node: NodeId,
        offset: usize,
        purpose: Scan,
    },
    Write {
        node: NodeId,
        docs: Vec<Document>,
    },
    Delete {
        node: NodeId,
        ids: Vec<String>,
    },
    Barrier {
        node: NodeId,
    },
    DeleteShard {
        node: NodeId,
    },
    AwaitTask {
        node: NodeId,
        uid: u64,
        tolerate_failure: bool,
    },
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
    /// Test-only ([`PlantedBug::CleanupBeforeCutover`]): the early cleanup was queued.
    cleaned_early: bool,
    settings: Option<Value>,
    copy_offset: usize,
    copy_done: bool,
    copy_next_at: Millis,
    pass_running: bool,
    passes: u32,
    dirty: bool,
    src: BTreeMap<String, (u64, Document)>,
    tgt: BTreeMap<String, u64>,
    fenced: bool,
    fence_stage: FenceStage,
    fence_deadline: Millis,
    cut_persisted: bool,
    /// When the shard's cleanup may start (set on entering `cleanup`: now + `cleanup_grace_ms`).
    cleanup_at: Option<Millis>,
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
            cleaned_early: false,
            settings: None,
            copy_offset: 0,
            copy_done: false,
            copy_next_at: 0,
            pass_running: false,
            passes: 0,
            dirty: false,
            src: BTreeMap::new(),
            tgt: BTreeMap::new(),
            fenced: false,
            fence_stage: FenceStage::Draining,
            fence_deadline: 0,
            cut_persisted: phase > Phase::CutOver,
            cleanup_at: None,
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

    /// Whether the shard holds a concurrency slot (cut-over and cleanup are cheap and do not).
    fn is_active(&self) -> bool {
        self.phase > Phase::Planned && self.phase < Phase::CutOver
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
    /// The latest `now` seen.
    now: Millis,
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
            now: 0,
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
                let read = if dual && self.params.planted == PlantedBug::ReadNewOwnersEarly {
                    new_o.to_vec()
                } else if g < g_old {
                    old_read(g)
                } else {
                    old_read(g % g_old.max(1))
                };
                read_owners.extend(read);
            }
            routes.push(route);
        }
        self.routes = routes;
        if let Some(mut p) = Placement::from_owners(shards, rf as u32, g_new, read_owners) {
            // targets and leaving owners hold shards they do not serve: reads must filter them out
            for (s, job) in &self.jobs {
                for n in job.targets.iter().chain(job.leaving.iter()) {
                    p.add_held(n, *s);
                }
            }
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
        let (shards, requests): (BTreeSet<ShardId>, Vec<RequestSpec>) = match intent {
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

    /// When [`Migration::handle_timeout`] must be called: the earliest time a paused, throttled or polling
    /// shard may go on, or a fence must be lifted. `None` when every shard waits for an event instead (an
    /// answer, a persistence acknowledgement, a finished write, a free slot) or everything is done.
    pub fn poll_timeout(&self) -> Option<Millis> {
        if self.awaiting_persist.is_some() {
            return None;
        }
        let now = self.now;
        self.jobs
            .values()
            .filter(|j| j.phase != Phase::Done)
            .flat_map(|j| {
                let resume = (j.waiting.is_none() && j.not_before > now).then_some(j.not_before);
                let fence = (j.fenced && j.phase == Phase::Fence).then_some(j.fence_deadline);
                resume.into_iter().chain(fence)
            })
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
        let task_uid = || docsync::task_uid(body).ok_or(());
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
            } => match docsync::task_poll(body) {
                TaskPoll::Succeeded => {}
                TaskPoll::Failed if tolerate_failure => {}
                TaskPoll::Pending => {
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
                let docs = docsync::parse_page(body, &params.primary_key).ok_or(())?;
                let n = docs.len();
                let more = docsync::has_more(n, params.page_size);
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
                            // the throttle delays the next page, never this page's writes
                            if let Some(at) = docsync::throttle_next(now, n, params.docs_per_second)
                            {
                                job.copy_next_at = at;
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
                            let (missing, extra) = docsync::diff(&job.src, &tgt);
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

    fn request_for(&self, s: ShardId, work: &Work) -> RequestSpec {
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
            Work::Fetch { node, offset, .. } => with_node(
                node,
                docsync::fetch_page(idx, Some(&filter), *offset, self.params.page_size),
            ),
            Work::Write { node, docs } => with_node(node, docsync::write_docs(idx, pk, docs)),
            Work::Delete { node, ids } => with_node(node, docsync::delete_ids(idx, ids)),
            Work::Barrier { node } => with_node(node, docsync::barrier(idx)),
            Work::DeleteShard { node } => (
                node.clone(),
                Method::Post,
                format!("/indexes/{idx}/documents/delete"),
                Some(json!({ "filter": filter })),
            ),
            Work::AwaitTask { node, uid, .. } => with_node(node, docsync::get_task(*uid)),
        }
    }

    /// Drives every shard as far as it can go without an answer.
    fn pump(&mut self, now: Millis) {
        self.now = self.now.max(now);
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
                if planted == PlantedBug::CleanupBeforeCutover && !job.cleaned_early {
                    job.cleaned_early = true;
                    let leaving = job.leaving.clone();
                    for n in leaving {
                        job.queue.push_back(Work::DeleteShard { node: n });
                    }
                    return true;
                }
                job.phase = Phase::Copy;
                job.copy_offset = 0;
                job.copy_done = false;
                true
            }
            Phase::Copy => {
                if !job.copy_done && now < job.copy_next_at {
                    job.not_before = job.copy_next_at;
                    return false;
                }
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
                    let at = *job
                        .cleanup_at
                        .get_or_insert(now.saturating_add(self.params.cleanup_grace_ms));
                    if now < at {
                        job.not_before = at;
                        return false;
                    }
                    job.started = true;
                    let leaving = if planted == PlantedBug::SkipCleanup {
                        Vec::new()
                    } else {
                        job.leaving.clone()
                    };
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routing::canonical_id;
    use proptest::prelude::*;

    fn topo(per_group: &[u32], rf: u32, shards: u32) -> Topology {
        let mut nodes = Vec::new();
        let mut i = 0;
        for (g, count) in per_group.iter().enumerate() {
            for _ in 0..*count {
                nodes.push(Node::active(
                    format!("n{i}"),
                    format!("http://n{i}"),
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

    fn task(uid: u64) -> WriteTask {
        WriteTask {
            uid,
            index_uid: Some("docs".into()),
            task_type: crate::tasks::TaskType::DocumentAdditionOrUpdate,
            details: None,
            enqueued_at: 0,
        }
    }

    /// A tiny in-memory Meilisearch: one index, tasks applied when `auto` (else on `process`).
    #[derive(Default, Clone)]
    struct FakeNode {
        has_index: bool,
        settings: Value,
        docs: BTreeMap<String, Document>,
        tasks: Vec<(String, Option<Value>, bool)>, // (kind, payload, done)
        down: bool,
        manual: bool,
    }

    impl FakeNode {
        fn enqueue(&mut self, kind: &str, payload: Option<Value>) -> Value {
            self.tasks.push((kind.into(), payload, false));
            let uid = self.tasks.len() as u64 - 1;
            if !self.manual {
                self.process();
            }
            json!({"taskUid": uid})
        }
        fn process(&mut self) {
            for i in 0..self.tasks.len() {
                if self.tasks[i].2 {
                    continue;
                }
                let (kind, payload, _) = self.tasks[i].clone();
                match kind.as_str() {
                    "create" => self.has_index = true,
                    "settings" => self.settings = payload.unwrap_or(Value::Null),
                    "add" => {
                        for d in payload.unwrap().as_array().unwrap() {
                            let d = d.as_object().unwrap().clone();
                            self.docs.insert(canonical_id(&d["id"]).unwrap(), d);
                        }
                    }
                    "del" => {
                        for id in payload.unwrap().as_array().unwrap() {
                            self.docs.remove(id.as_str().unwrap());
                        }
                    }
                    "delshard" => {
                        let f = payload.unwrap();
                        let s: u64 = f
                            .as_str()
                            .unwrap()
                            .rsplit(' ')
                            .next()
                            .unwrap()
                            .parse()
                            .unwrap();
                        self.docs.retain(|_, d| d[SHARD_FIELD] != json!(s));
                    }
                    _ => {}
                }
                self.tasks[i].2 = true;
            }
        }
        fn handle(&mut self, r: &NodeRequest) -> Option<(u16, Value)> {
            if self.down {
                return None;
            }
            let body = r.body.clone();
            let out = match (r.method, r.path.as_str()) {
                (Method::Get, p) if p.ends_with("/settings") => {
                    json!({"filterableAttributes": ["_miroir_shard"]})
                }
                (Method::Patch, _) => self.enqueue("settings", body),
                (Method::Post, "/indexes") => self.enqueue("create", None),
                (Method::Post, p) if p.ends_with("/documents/fetch") => {
                    let b = body.unwrap();
                    let f = b["filter"].as_str().unwrap().to_string();
                    let s: u64 = f.rsplit(' ').next().unwrap().parse().unwrap();
                    let (o, l) = (
                        b["offset"].as_u64().unwrap() as usize,
                        b["limit"].as_u64().unwrap() as usize,
                    );
                    let res: Vec<Value> = self
                        .docs
                        .values()
                        .filter(|d| d[SHARD_FIELD] == json!(s))
                        .skip(o)
                        .take(l)
                        .cloned()
                        .map(Value::Object)
                        .collect();
                    json!({"results": res})
                }
                (Method::Post, p) if p.contains("/documents?") => self.enqueue("add", body),
                (Method::Put, p) if p.contains("/documents?") => {
                    // partial update
                    let mut merged = Vec::new();
                    for d in body.unwrap().as_array().unwrap() {
                        let d = d.as_object().unwrap();
                        let mut cur = self
                            .docs
                            .get(&canonical_id(&d["id"]).unwrap())
                            .cloned()
                            .unwrap_or_default();
                        for (k, v) in d {
                            cur.insert(k.clone(), v.clone());
                        }
                        merged.push(Value::Object(cur));
                    }
                    self.enqueue("add", Some(Value::Array(merged)))
                }
                (Method::Post, p) if p.ends_with("/delete-batch") => self.enqueue("del", body),
                (Method::Post, p) if p.ends_with("/documents/delete") => {
                    self.enqueue("delshard", body.map(|b| b["filter"].clone()))
                }
                (Method::Get, p) if p.starts_with("/tasks/") => {
                    let uid: usize = p[7..].parse().unwrap();
                    match self.tasks.get(uid) {
                        Some(t) if t.2 => json!({"status": "succeeded"}),
                        Some(_) => json!({"status": "enqueued"}),
                        None => return Some((404, json!({"code": "task_not_found"}))),
                    }
                }
                _ => return Some((404, json!({}))),
            };
            Some((
                if r.method == Method::Get || r.path.ends_with("/fetch") {
                    200
                } else {
                    202
                },
                out,
            ))
        }
    }

    struct Harness {
        m: Migration,
        nodes: BTreeMap<NodeId, FakeNode>,
        now: Millis,
        persisted: Vec<Value>,
        persist_ack: bool,
        sent: Vec<NodeRequest>,
    }

    impl Harness {
        fn new(plan: Plan, params: MigrationParams, docs: &[u64]) -> Harness {
            let old_p = Placement::new(&plan.old).unwrap();
            let mut nodes: BTreeMap<NodeId, FakeNode> = plan
                .old
                .nodes
                .iter()
                .chain(plan.new.nodes.iter())
                .map(|n| (n.id.clone(), FakeNode::default()))
                .collect();
            for n in &plan.old.nodes {
                if n.state.is_placed() {
                    nodes.get_mut(&n.id).unwrap().has_index = true;
                }
            }
            for id in docs {
                let key = id.to_string();
                let s = shard_for_key(&key, plan.old.shards);
                for o in old_p.write_targets(s) {
                    let d = json!({"id": id, "v": 0, SHARD_FIELD: s})
                        .as_object()
                        .unwrap()
                        .clone();
                    nodes.get_mut(&o).unwrap().docs.insert(key.clone(), d);
                }
            }
            Harness {
                m: Migration::start(plan, params).unwrap(),
                nodes,
                now: 1_000,
                persisted: Vec::new(),
                persist_ack: true,
                sent: Vec::new(),
            }
        }

        /// Runs actions until nothing is left; then advances the clock to the next wake-up. `steps` bounds it.
        fn run(&mut self, steps: usize) {
            for _ in 0..steps {
                if self.m.is_finished() && self.m.outbox.is_empty() {
                    return;
                }
                match self.m.poll_action() {
                    Some(Action::Send(r)) => {
                        self.sent.push(r.clone());
                        let node = self.nodes.get_mut(&r.node).unwrap();
                        match node.handle(&r) {
                            Some((st, b)) => self.m.on_response(r.id, st, &b, self.now),
                            None => self.m.on_failure(r.id, self.now),
                        }
                    }
                    Some(Action::Persist { seq, record }) => {
                        self.persisted.push(record);
                        if self.persist_ack {
                            self.m.on_persisted(seq, self.now);
                        }
                    }
                    None => {
                        self.now = self
                            .m
                            .poll_timeout()
                            .unwrap_or(self.now + 10)
                            .max(self.now + 1);
                        self.m.handle_timeout(self.now);
                    }
                }
            }
        }

        /// What a client write does, through the routing view, with nodes applying at once.
        fn client_put(&mut self, id: u64, v: u64) -> bool {
            let doc = json!({"id": id, "v": v}).as_object().unwrap().clone();
            let Some((w, t)) = self
                .m
                .try_write(
                    WriteIntent::Documents {
                        docs: vec![doc],
                        replace: true,
                    },
                    task(1),
                    WriteQuorum::All,
                    self.now + 100,
                )
                .unwrap()
            else {
                return false;
            };
            let mut w = w;
            for r in w.requests().to_vec() {
                match self.nodes.get_mut(&r.node).unwrap().handle(&r) {
                    Some((st, b)) => w.on_response(r.id, st, &b),
                    None => w.on_failure(r.id),
                }
            }
            self.m.write_finished(t, self.now);
            matches!(
                w.decision(),
                Some(crate::quorum::WriteDecision::Acknowledged { .. })
            )
        }

        fn check_final(&self, docs: &BTreeMap<String, u64>) {
            let p = Placement::new(&self.m.plan().new).unwrap();
            for (id, node) in &self.nodes {
                for (doc_id, d) in &node.docs {
                    let s = shard_for_key(doc_id, p.shards());
                    assert!(p.write_targets(s).contains(id), "{doc_id} stray on {id}");
                    assert_eq!(
                        d["v"].as_u64(),
                        docs.get(doc_id).copied(),
                        "{doc_id} on {id}"
                    );
                }
            }
            for doc_id in docs.keys() {
                let s = shard_for_key(doc_id, p.shards());
                for o in p.write_targets(s) {
                    assert!(
                        self.nodes[&o].docs.contains_key(doc_id),
                        "{doc_id} missing on {o}"
                    );
                }
            }
        }
    }

    fn params() -> MigrationParams {
        let mut p = MigrationParams::new("docs", "id");
        p.page_size = 3;
        p
    }

    fn add_node_plan() -> Plan {
        let t = topo(&[3], 2, 8);
        plan_change(&t, &Change::AddNode(Node::active("n9", "http://n9", 0))).unwrap()
    }

    #[test]
    fn add_node_moves_shards_and_cleans_up() {
        let plan = add_node_plan();
        assert!(!plan.moves.is_empty());
        let ids: Vec<u64> = (0..40).collect();
        let mut h = Harness::new(plan, params(), &ids);
        h.run(20_000);
        assert!(h.m.is_finished(), "{:?}", h.m.phases());
        let want: BTreeMap<String, u64> = ids.iter().map(|i| (i.to_string(), 0)).collect();
        h.check_final(&want);
        assert!(h.nodes[&NodeId::from("n9")].has_index, "target prepared");
        let last = h.persisted.last().unwrap();
        assert!(last["shards"]
            .as_object()
            .unwrap()
            .values()
            .all(|p| p == "done"));
        // after the migration the view is the new placement
        let p = Placement::new(&h.m.plan().new).unwrap();
        for s in 0..8 {
            assert_eq!(h.m.route(s).unwrap().write_targets, p.write_targets(s));
        }
    }

    /// A search planned with the old read placement just before a shard's cut-over may reach a leaving
    /// owner after the switch: the cleanup waits `cleanup_grace_ms` after the read placement switched, so
    /// the shard is still there (the simulator's mid-run oracle saw a search miss a shard the cleanup had
    /// just deleted: `elastic_node_crash` seed 13).
    #[test]
    fn cleanup_waits_for_reads_planned_before_the_cut_over() {
        for grace in [0, 3_000] {
            let plan = add_node_plan();
            let old = Placement::new(&plan.old).unwrap();
            let ids: Vec<u64> = (0..40).collect();
            let mut p = params();
            p.max_concurrent_migrations = 8;
            p.cleanup_grace_ms = grace;
            let mut h = Harness::new(plan, p, &ids);
            let mut switched: BTreeMap<ShardId, Millis> = BTreeMap::new();
            // how long after its read switch each cleanup was sent
            let mut waited: Vec<Millis> = Vec::new();
            for _ in 0..50_000 {
                if h.m.is_finished() && h.m.outbox.is_empty() {
                    break;
                }
                for s in 0..8 {
                    if h.m.read_placement().write_targets(s) != old.write_targets(s) {
                        switched.entry(s).or_insert(h.now);
                    }
                }
                match h.m.poll_action() {
                    Some(Action::Send(r)) => {
                        if r.path.ends_with("/documents/delete") {
                            let filter = r.body.as_ref().and_then(|b| b["filter"].as_str());
                            let s = (0..8)
                                .find(|s| filter == Some(format!("{SHARD_FIELD} = {s}").as_str()))
                                .expect("a cleanup names its shard");
                            let at = *switched.get(&s).expect("cleanup after the switch");
                            waited.push(h.now - at);
                        }
                        let node = h.nodes.get_mut(&r.node).unwrap();
                        match node.handle(&r) {
                            Some((st, b)) => h.m.on_response(r.id, st, &b, h.now),
                            None => h.m.on_failure(r.id, h.now),
                        }
                    }
                    Some(Action::Persist { seq, record }) => {
                        h.persisted.push(record);
                        h.m.on_persisted(seq, h.now);
                    }
                    None => {
                        h.now = h.m.poll_timeout().unwrap_or(h.now + 10).max(h.now + 1);
                        h.m.handle_timeout(h.now);
                    }
                }
            }
            assert!(h.m.is_finished(), "{:?}", h.m.phases());
            assert!(
                !waited.is_empty(),
                "the add moved shards: leaving owners are cleaned up"
            );
            if grace == 0 {
                // without a grace the cleanup goes out the moment reads switch: the race
                assert!(waited.contains(&0), "{waited:?}");
            } else {
                assert!(waited.iter().all(|w| *w >= grace), "{waited:?}");
            }
            h.check_final(&ids.iter().map(|i| (i.to_string(), 0)).collect());
        }
    }

    #[test]
    fn copy_is_throttled() {
        let ids: Vec<u64> = (0..60).collect();
        let mut p = params();
        p.docs_per_second = 2;
        p.max_concurrent_migrations = 8;
        let mut h = Harness::new(add_node_plan(), p, &ids);
        h.run(50_000);
        assert!(h.m.is_finished());
        // a moved shard holds ~7 of the 60 documents: at 2 documents/s its copy takes seconds
        assert!(h.now > 1_000 + 3_000, "now = {}", h.now);
    }

    #[test]
    fn writes_during_migration_go_to_old_and_new_and_ack_on_old() {
        let plan = add_node_plan();
        let (&s, moves) = plan.moves.iter().next().unwrap();
        let target = moves[0].targets[0].clone();
        let mut h = Harness::new(plan, params(), &[]);
        // before the shard starts: old routing only
        let r = h.m.route(s).unwrap().clone();
        assert!(!r.write_targets.contains(&target));
        // let every shard start
        let mut p = params();
        p.max_concurrent_migrations = 8;
        h.m.params = p;
        h.run(1); // the initial record is persisted: shards start
        let r = h.m.route(s).unwrap().clone();
        assert!(r.write_targets.contains(&target), "dual write");
        assert!(!r.ack[0].contains(&target), "ack judged on old owners");
        // a write that fails on the target is still acknowledged
        h.nodes.get_mut(&target).unwrap().down = true;
        let id = (0..1000u64)
            .find(|i| shard_for_key(&i.to_string(), 8) == s)
            .unwrap();
        assert!(h.client_put(id, 1));
    }

    #[test]
    fn failed_target_pauses_and_never_cuts_over_until_back() {
        let plan = add_node_plan();
        let ids: Vec<u64> = (0..30).collect();
        let mut h = Harness::new(plan, params(), &ids);
        h.nodes.get_mut(&NodeId::from("n9")).unwrap().down = true;
        h.run(3_000);
        assert!(!h.m.is_finished());
        assert!(
            h.m.phases().values().all(|p| *p < Phase::CutOver),
            "{:?}",
            h.m.phases()
        );
        assert!(h.m.failures().values().any(|f| *f > 0));
        h.nodes.get_mut(&NodeId::from("n9")).unwrap().down = false;
        h.run(50_000);
        assert!(h.m.is_finished());
        h.check_final(&ids.iter().map(|i| (i.to_string(), 0)).collect());
    }

    #[test]
    fn failed_source_rotates_to_another_source() {
        let t = topo(&[3], 2, 8);
        let plan = plan_change(&t, &Change::AddNode(Node::active("n9", "x", 0))).unwrap();
        let ids: Vec<u64> = (0..30).collect();
        let mut h = Harness::new(plan, params(), &ids);
        h.nodes.get_mut(&NodeId::from("n0")).unwrap().down = true;
        h.run(20_000);
        // with RF=2 every shard has another source: all cut over; only cleanups on n0 wait for it
        let old = Placement::new(&h.m.plan().old).unwrap();
        for (s, p) in h.m.phases() {
            let n0_leaves = h.m.plan().moves[&s][0].leaving.contains(&"n0".into());
            assert_eq!(
                p,
                if n0_leaves {
                    Phase::Cleanup
                } else {
                    Phase::Done
                },
                "shard {s}"
            );
            let _ = &old;
        }
        h.nodes.get_mut(&NodeId::from("n0")).unwrap().down = false;
        h.run(20_000);
        assert!(h.m.is_finished());
        h.check_final(&ids.iter().map(|i| (i.to_string(), 0)).collect());
    }

    #[test]
    fn fence_waits_for_in_flight_writes_and_holds_new_ones() {
        let plan = add_node_plan();
        let mut p = params();
        p.max_concurrent_migrations = 1;
        let mut h = Harness::new(plan, p, &[1, 2, 3]);
        // admit a write for every shard and keep it in flight
        let doc = json!({"id": 77, "v": 1}).as_object().unwrap().clone();
        let (_, ticket) =
            h.m.try_write(
                WriteIntent::Broadcast {
                    method: Method::Post,
                    path: "/x".into(),
                    body: None,
                },
                task(1),
                WriteQuorum::One,
                0,
            )
            .unwrap()
            .unwrap();
        for _ in 0..5_000 {
            h.run(1);
            if h.m.phases().values().any(|p| *p == Phase::Fence) {
                break;
            }
        }
        let fenced: Vec<ShardId> =
            h.m.phases()
                .iter()
                .filter(|(_, p)| **p == Phase::Fence)
                .map(|(s, _)| *s)
                .collect();
        assert_eq!(fenced.len(), 1, "{:?}", h.m.phases());
        let s = fenced[0];
        assert!(h.m.is_fenced(s));
        // new writes to the shard wait
        let id = (0..1000u64)
            .find(|i| shard_for_key(&i.to_string(), 8) == s)
            .unwrap();
        let doc_s = json!({"id": id}).as_object().unwrap().clone();
        assert!(h
            .m
            .try_write(
                WriteIntent::Documents {
                    docs: vec![doc_s],
                    replace: true
                },
                task(2),
                WriteQuorum::One,
                0
            )
            .unwrap()
            .is_none());
        assert!(h
            .m
            .try_write(
                WriteIntent::DeleteIds(vec![json!(id)]),
                task(2),
                WriteQuorum::One,
                0
            )
            .unwrap()
            .is_none());
        let _ = doc;
        h.m.write_finished(ticket, h.now);
        h.run(50_000);
        assert!(h.m.is_finished(), "{:?}", h.m.phases());
    }

    #[test]
    fn fence_times_out_back_to_catch_up() {
        let plan = add_node_plan();
        let mut p = params();
        p.max_concurrent_migrations = 1;
        p.fence_timeout_ms = 200;
        let mut h = Harness::new(plan, p, &[1, 2, 3]);
        let (_, ticket) =
            h.m.try_write(
                WriteIntent::Broadcast {
                    method: Method::Post,
                    path: "/x".into(),
                    body: None,
                },
                task(1),
                WriteQuorum::One,
                0,
            )
            .unwrap()
            .unwrap();
        h.run(3_000);
        assert!(
            h.m.failures().values().any(|f| *f > 0),
            "the fence timed out at least once"
        );
        assert!(!h.m.is_finished());
        h.m.write_finished(ticket, h.now);
        h.run(50_000);
        assert!(h.m.is_finished());
    }

    #[test]
    fn verify_repairs_stale_and_resurrected_documents_under_the_fence() {
        let plan = add_node_plan();
        let ids: Vec<u64> = (0..80).collect();
        let mut p = params();
        p.max_concurrent_migrations = 8;
        let mut h = Harness::new(plan, p, &ids);
        // corrupt the target behind the machine's back once a shard is copied: a stale copy and a
        // resurrected document
        let n9 = NodeId::from("n9");
        let mut s = None;
        for _ in 0..5_000 {
            h.run(1);
            s =
                h.m.phases()
                    .into_iter()
                    .find(|(x, p)| {
                        *p == Phase::CatchUp
                            && h.m.plan().moves[x][0].targets.contains(&n9)
                            && h.nodes[&n9]
                                .docs
                                .keys()
                                .filter(|k| shard_for_key(k, 8) == *x)
                                .count()
                                >= 2
                    })
                    .map(|(x, _)| x);
            if s.is_some() {
                break;
            }
        }
        let s = s.expect("a shard reaches catch-up");
        let held: Vec<String> = h.nodes[&n9]
            .docs
            .keys()
            .filter(|k| shard_for_key(k, 8) == s)
            .cloned()
            .collect();
        assert!(held.len() >= 2, "{held:?}");
        if let Some(k) = held.first() {
            h.nodes
                .get_mut(&n9)
                .unwrap()
                .docs
                .get_mut(k)
                .unwrap()
                .insert("v".into(), json!(99));
        }
        let mut want: BTreeMap<String, u64> = ids.iter().map(|i| (i.to_string(), 0)).collect();
        if let Some(k) = held.get(1) {
            for n in h.nodes.values_mut() {
                n.docs.remove(k);
            }
            want.remove(k);
            // the target got it back from a racing copy
            let s = shard_for_key(k, 8);
            h.nodes.get_mut(&n9).unwrap().docs.insert(
                k.clone(),
                json!({"id": k.parse::<u64>().unwrap(), "v": 0, SHARD_FIELD: s})
                    .as_object()
                    .unwrap()
                    .clone(),
            );
        }
        h.run(50_000);
        assert!(h.m.is_finished());
        h.check_final(&want);
    }

    #[test]
    fn planted_skip_verify_leaves_a_stale_target() {
        let plan = add_node_plan();
        let ids: Vec<u64> = (0..80).collect();
        let mut p = params();
        p.planted = PlantedBug::SkipVerify;
        p.max_concurrent_migrations = 8;
        let mut h = Harness::new(plan.clone(), p, &ids);
        // a client write fails on the target only, during the copy
        h.m.handle_timeout(h.now);
        let n9 = NodeId::from("n9");
        let s = *plan
            .moves
            .iter()
            .find(|(_, m)| m[0].targets.contains(&n9))
            .unwrap()
            .0;
        let id = (0..80u64)
            .find(|i| shard_for_key(&i.to_string(), 8) == s)
            .expect("a document of the shard");
        h.run(30);
        h.nodes.get_mut(&n9).unwrap().down = true;
        assert!(h.client_put(id, 5));
        h.nodes.get_mut(&n9).unwrap().down = false;
        h.run(50_000);
        assert!(h.m.is_finished());
        let mut want: BTreeMap<String, u64> = ids.iter().map(|i| (i.to_string(), 0)).collect();
        want.insert(id.to_string(), 5);
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| h.check_final(&want)));
        assert!(r.is_err(), "without verify the target misses the write");
        // the correct machine repairs it
        let mut h = Harness::new(
            plan,
            {
                let mut p = params();
                p.max_concurrent_migrations = 8;
                p
            },
            &ids,
        );
        h.m.handle_timeout(h.now);
        h.run(30);
        h.nodes.get_mut(&n9).unwrap().down = true;
        assert!(h.client_put(id, 5));
        h.nodes.get_mut(&n9).unwrap().down = false;
        h.run(50_000);
        assert!(h.m.is_finished());
        h.check_final(&want);
    }

    /// Targets (filled by dual writes before they serve) and leaving owners (until cleaned) hold shards
    /// they do not serve: the read view counts those as held, so a search covering every shard a node
    /// serves still restricts it with `_miroir_shard` instead of counting the extra copies twice.
    #[test]
    fn read_view_counts_unserved_copies_as_held() {
        let plan = add_node_plan();
        let mut p = params();
        p.max_concurrent_migrations = 8;
        let mut h = Harness::new(plan.clone(), p, &(0..20).collect::<Vec<u64>>());
        h.m.handle_timeout(h.now);
        let read = h.m.read_placement();
        for (s, moves) in &plan.moves {
            for m in moves {
                for n in m.targets.iter().chain(m.leaving.iter()) {
                    assert!(read.shards_held_by(n).contains(s), "{n} holds shard {s}");
                }
            }
        }
        let cover = read.cover(&|_| true, 0, 0);
        let n9 = NodeId::from("n9");
        assert!(
            !cover.assignments.contains_key(&n9),
            "a target serves no read"
        );
        for (node, c) in &cover.assignments {
            let extra = plan.moves.iter().any(|(s, ms)| {
                ms.iter().any(|m| m.leaving.contains(node)) && !c.shards.contains(s)
            });
            if extra {
                assert!(!c.covers_all_held, "{node} must filter");
            }
        }
        h.run(50_000);
        assert!(h.m.is_finished());
    }

    /// The planted bugs of the simulator's tests each break what they claim to.
    #[test]
    fn planted_cleanup_and_read_bugs_break_their_invariants() {
        let plan = add_node_plan();
        let ids: Vec<u64> = (0..40).collect();
        let want: BTreeMap<String, u64> = ids.iter().map(|i| (i.to_string(), 0)).collect();
        let with = |bug: PlantedBug| {
            let mut p = params();
            p.planted = bug;
            Harness::new(plan.clone(), p, &ids)
        };
        // SkipCleanup: the leaving owners keep their copies
        let mut h = with(PlantedBug::SkipCleanup);
        h.run(50_000);
        assert!(h.m.is_finished());
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| h.check_final(&want)));
        assert!(r.is_err(), "stray copies stay on the leaving owners");
        // CleanupBeforeCutover: a shard is deleted while no cut-over was ever persisted
        for (bug, early) in [
            (PlantedBug::None, false),
            (PlantedBug::CleanupBeforeCutover, true),
        ] {
            let mut h = with(bug);
            h.run(1);
            h.persist_ack = false;
            h.run(50_000);
            let deleted = h.sent.iter().any(|r| r.path.ends_with("/documents/delete"));
            assert_eq!(deleted, early, "{bug:?}");
        }
        // ReadNewOwnersEarly: a shard in dual_write reads from its target
        let n9 = NodeId::from("n9");
        for (bug, early) in [
            (PlantedBug::None, false),
            (PlantedBug::ReadNewOwnersEarly, true),
        ] {
            let mut h = with(bug);
            h.run(1); // the initial record
            h.m.handle_timeout(h.now);
            assert!(h.m.phases().values().any(|p| *p == Phase::DualWrite));
            let reads_target = (0..8).any(|s| h.m.read_placement().owners(s, 0).contains(&n9));
            assert_eq!(reads_target, early, "{bug:?}");
        }
    }

    /// A write admitted before the fence, whose copy to the target is lost, lands on the source late. The
    /// fence waits for it and the final verify repairs the target; without the fence the shard is cut over
    /// before the write lands and the target misses it.
    fn in_flight_write_at_the_fence(planted: PlantedBug) -> Result<(), String> {
        let plan = add_node_plan();
        let n9 = NodeId::from("n9");
        let s = *plan
            .moves
            .iter()
            .find(|(_, m)| m[0].targets.contains(&n9))
            .unwrap()
            .0;
        let id = (0..1000u64)
            .find(|i| shard_for_key(&i.to_string(), 8) == s)
            .unwrap();
        let mut p = params();
        p.planted = planted;
        p.max_concurrent_migrations = 8;
        let mut h = Harness::new(plan, p, &[id]);
        h.run(1);
        let doc = json!({"id": id, "v": 7}).as_object().unwrap().clone();
        let (mut w, ticket) =
            h.m.try_write(
                WriteIntent::Documents {
                    docs: vec![doc],
                    replace: true,
                },
                task(3),
                WriteQuorum::All,
                h.now + 100_000,
            )
            .unwrap()
            .unwrap();
        // the migration runs while the write is still in flight
        h.run(20_000);
        // now the write lands: on every old owner, not on the target
        for r in w.requests().to_vec() {
            if r.node == n9 {
                w.on_failure(r.id);
            } else {
                let (st, b) = h.nodes.get_mut(&r.node).unwrap().handle(&r).unwrap();
                w.on_response(r.id, st, &b);
            }
        }
        assert!(matches!(
            w.decision(),
            Some(crate::quorum::WriteDecision::Acknowledged { .. })
        ));
        h.m.write_finished(ticket, h.now);
        h.run(50_000);
        if !h.m.is_finished() {
            return Err(format!("not finished: {:?}", h.m.phases()));
        }
        let want: BTreeMap<String, u64> = [(id.to_string(), 7)].into_iter().collect();
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| h.check_final(&want)))
            .map_err(|_| "the target misses the write".to_string())
    }

    #[test]
    fn fence_drains_in_flight_writes_planted_skip_fence_loses_one() {
        assert_eq!(in_flight_write_at_the_fence(PlantedBug::None), Ok(()));
        assert!(in_flight_write_at_the_fence(PlantedBug::SkipFence).is_err());
    }

    #[test]
    fn poll_timeout_names_only_time_driven_waits() {
        let mut p = params();
        p.docs_per_second = 1;
        let mut h = Harness::new(add_node_plan(), p, &(0..40).collect::<Vec<_>>());
        assert_eq!(
            h.m.poll_timeout(),
            None,
            "waiting for the first record to be persisted"
        );
        let mut throttled = false;
        for _ in 0..2_000 {
            h.run(1);
            if let Some(t) = h.m.poll_timeout() {
                assert!(t > h.m.now, "a wake-up in the future");
                if h.m.jobs.values().any(|j| j.phase == Phase::Copy) {
                    throttled = true;
                }
            }
        }
        assert!(throttled, "the copy throttle asks to be woken");
        h.run(100_000);
        assert!(h.m.is_finished());
        assert_eq!(h.m.poll_timeout(), None);
    }

    #[test]
    fn barrier_waits_for_node_tasks() {
        let plan = add_node_plan();
        let ids: Vec<u64> = (0..10).collect();
        let mut h = Harness::new(plan, params(), &ids);
        for n in h.nodes.values_mut() {
            n.manual = true;
        }
        h.run(2_000);
        assert!(
            h.m.phases().values().all(|p| *p <= Phase::DualWrite),
            "nothing processed, nothing advances"
        );
        for n in h.nodes.values_mut() {
            n.manual = false;
            n.process();
        }
        h.run(50_000);
        assert!(h.m.is_finished());
    }

    /// The shard a cleanup request deletes (`_miroir_shard = s`).
    fn cleaned_shard(r: &NodeRequest) -> Option<String> {
        if !r.path.ends_with("/documents/delete") {
            return None;
        }
        let f = r.body.as_ref()?["filter"].as_str()?;
        Some(f.rsplit(' ').next()?.to_string())
    }

    #[test]
    fn cleanup_waits_for_the_grace_after_the_cut_over_and_after_a_resume() {
        const GRACE: Millis = 10_000;
        let plan = add_node_plan();
        let ids: Vec<u64> = (0..20).collect();
        let mut p = params();
        p.cleanup_grace_ms = GRACE;
        let mut h = Harness::new(plan.clone(), p.clone(), &ids);
        let mut cut_at: BTreeMap<String, Millis> = BTreeMap::new();
        let mut cleaned: BTreeSet<String> = BTreeSet::new();
        let mut resumed_record = None;
        for _ in 0..500_000 {
            if h.m.is_finished() {
                break;
            }
            let (persisted, sent) = (h.persisted.len(), h.sent.len());
            h.run(1);
            for r in &h.persisted[persisted..] {
                for (s, ph) in r["shards"].as_object().unwrap() {
                    if ph == "cut_over" {
                        cut_at.entry(s.clone()).or_insert(h.now);
                        resumed_record.get_or_insert_with(|| r.clone());
                    }
                }
            }
            for r in &h.sent[sent..] {
                if let Some(s) = cleaned_shard(r) {
                    let cut = cut_at[&s];
                    assert!(
                        h.now >= cut + GRACE,
                        "shard {s} cleaned at {} though cut over at {cut}",
                        h.now
                    );
                    cleaned.insert(s);
                }
            }
        }
        assert!(h.m.is_finished());
        assert!(!cleaned.is_empty(), "a shard moved away from a node");
        // a record resumed mid-way waits again from the resume: the other proxies may not have seen it
        let record = resumed_record.unwrap();
        let mut m = Migration::resume(&record, p).unwrap();
        let resumed_at = 1_000_000;
        m.handle_timeout(resumed_at);
        let mut now = resumed_at;
        while let Some(a) = m.poll_action() {
            match a {
                Action::Persist { seq, .. } => m.on_persisted(seq, now),
                Action::Send(r) => {
                    assert!(
                        cleaned_shard(&r).is_none(),
                        "a cleanup right after the resume: {r:?}"
                    );
                    // the shards not yet cut over copy: answer nothing more, only the clock runs
                }
            }
        }
        let wake = m.poll_timeout().expect("the cleanup waits for a time");
        assert!(wake >= resumed_at + GRACE, "{wake}");
        now = wake;
        m.handle_timeout(now);
        let mut sent_cleanup = false;
        while let Some(a) = m.poll_action() {
            if let Action::Send(r) = a {
                sent_cleanup |= cleaned_shard(&r).is_some();
            }
        }
        assert!(sent_cleanup, "the cleanup starts once the grace is over");
    }

    #[test]
    fn cut_over_waits_for_persistence_and_cleanup_follows_it() {
        let plan = add_node_plan();
        let ids: Vec<u64> = (0..20).collect();
        let mut h = Harness::new(plan.clone(), params(), &ids);
        h.run(50_000);
        assert!(h.m.is_finished());
        // replay: stop acknowledging persistence at the first cut-over
        let mut h = Harness::new(plan, params(), &ids);
        h.run(1); // initial record
        h.persist_ack = false;
        h.run(50_000);
        let last = h.persisted.last().unwrap().clone();
        let cut: Vec<&String> = last["shards"]
            .as_object()
            .unwrap()
            .iter()
            .filter(|(_, p)| *p == "cut_over")
            .map(|(s, _)| s)
            .collect();
        assert_eq!(cut.len(), 1, "{last}");
        let s: ShardId = cut[0].parse().unwrap();
        assert!(h.m.is_fenced(s), "still fenced until persisted");
        assert!(
            h.m.poll_action().is_none(),
            "nothing else before the persist is acknowledged"
        );
        assert!(
            !h.sent.iter().any(|r| r.path.ends_with("/documents/delete")),
            "no cleanup yet"
        );
        let old = Placement::new(&h.m.plan().old).unwrap();
        assert_eq!(h.m.read_placement().owners(s, 0), old.owners(s, 0));
        let seq = h.m.seq;
        h.m.on_persisted(seq + 5, h.now); // wrong seq: ignored
        assert!(h.m.is_fenced(s));
        h.m.on_persisted(seq, h.now);
        assert!(!h.m.is_fenced(s));
        let new = Placement::new(&h.m.plan().new).unwrap();
        assert_eq!(h.m.read_placement().owners(s, 0), new.owners(s, 0));
        h.persist_ack = true;
        h.run(50_000);
        assert!(h.m.is_finished());
    }

    #[test]
    fn resume_from_record_restarts_copies_and_keeps_cut_overs() {
        let plan = add_node_plan();
        let ids: Vec<u64> = (0..30).collect();
        let mut slow = params();
        slow.docs_per_second = 5;
        let mut h = Harness::new(plan, slow, &ids);
        for _ in 0..5_000 {
            h.run(1);
            let ph = h.m.phases();
            if ph.values().any(|p| *p >= Phase::CutOver) && ph.values().any(|p| *p < Phase::CutOver)
            {
                break;
            }
        }
        assert!(!h.m.is_finished());
        let record = h.persisted.last().unwrap().clone();
        let m = Migration::resume(&record, params()).unwrap();
        for (s, p) in m.phases() {
            let was: Phase =
                serde_json::from_value(record["shards"][s.to_string()].clone()).unwrap();
            let want = match was {
                Phase::Planned => Phase::Planned,
                Phase::Done => Phase::Done,
                Phase::CutOver | Phase::Cleanup => Phase::Cleanup,
                _ => Phase::DualWrite,
            };
            assert_eq!(p, want);
        }
        h.m = m;
        h.run(50_000);
        assert!(h.m.is_finished());
        h.check_final(&ids.iter().map(|i| (i.to_string(), 0)).collect());
    }

    #[test]
    fn resume_rejects_bad_records() {
        let p = params();
        assert!(Migration::resume(&json!(1), p.clone()).is_err());
        let plan = add_node_plan();
        let m = Migration::start(plan, p.clone()).unwrap();
        let mut r = m.record();
        r["version"] = json!(2);
        assert!(Migration::resume(&r, p.clone()).is_err());
        let mut r = m.record();
        r["indexUid"] = json!("other");
        assert!(Migration::resume(&r, p.clone()).is_err());
        let mut r = m.record();
        r["shards"] = json!({});
        assert!(Migration::resume(&r, p.clone()).is_err());
        assert!(Migration::resume(&m.record(), p).is_ok());
    }

    #[test]
    fn drain_then_remove() {
        let t = topo(&[4], 2, 8);
        let plan = plan_change(&t, &Change::DrainNode("n1".into())).unwrap();
        let old = Placement::new(&plan.old).unwrap();
        for s in old.shards_held_by(&"n1".into()) {
            assert!(plan.moves[&s][0].leaving.contains(&"n1".into()));
        }
        let ids: Vec<u64> = (0..30).collect();
        let mut h = Harness::new(plan.clone(), params(), &ids);
        h.run(50_000);
        assert!(h.m.is_finished());
        h.check_final(&ids.iter().map(|i| (i.to_string(), 0)).collect());
        assert!(
            h.nodes[&NodeId::from("n1")].docs.is_empty(),
            "drained node cleaned"
        );
        // removing the drained node moves nothing; removing a placed one is refused
        let removed = plan_change(&plan.new, &Change::RemoveNode("n1".into())).unwrap();
        assert!(removed.moves.is_empty());
        let e = plan_change(&plan.new, &Change::RemoveNode("n2".into())).unwrap_err();
        assert_eq!(e.code, "miroir_node_not_drained");
        let e = plan_change(&plan.new, &Change::RemoveNode("zz".into())).unwrap_err();
        assert_eq!(e.code, "miroir_node_not_found");
    }

    #[test]
    fn fail_node_re_replicates_from_survivors() {
        let t = topo(&[4], 2, 8);
        let plan = plan_change(&t, &Change::FailNode("n1".into())).unwrap();
        assert!(plan.lost.contains(&NodeId::from("n1")));
        for m in plan.moves.values() {
            assert!(!m[0].sources.contains(&NodeId::from("n1")));
        }
        let ids: Vec<u64> = (0..30).collect();
        let mut h = Harness::new(plan.clone(), params(), &ids);
        h.nodes.get_mut(&NodeId::from("n1")).unwrap().down = true;
        // ack and writes exclude the lost node; reads never name it
        for s in plan.moves.keys() {
            let r = h.m.route(*s).unwrap();
            assert!(!r.write_targets.contains(&NodeId::from("n1")));
            assert!(!h
                .m
                .read_placement()
                .owners(*s, 0)
                .contains(&NodeId::from("n1")));
        }
        h.run(50_000);
        assert!(h.m.is_finished());
        h.nodes.remove(&NodeId::from("n1"));
        h.check_final(&ids.iter().map(|i| (i.to_string(), 0)).collect());
        // RF=1: nothing survives
        let t1 = topo(&[3], 1, 8);
        let e = plan_change(&t1, &Change::FailNode("n0".into())).unwrap_err();
        assert_eq!(e.code, "miroir_shard_unrecoverable");
    }

    #[test]
    fn add_group_reads_from_old_group_until_synced() {
        let t = topo(&[2], 1, 4);
        let plan = plan_change(
            &t,
            &Change::AddGroup(vec![
                Node::active("g1a", "a", 0),
                Node::active("g1b", "b", 0),
            ]),
        )
        .unwrap();
        assert_eq!(plan.new.replica_groups, 2);
        assert_eq!(plan.moves.len(), 4, "every shard fills the new group");
        let ids: Vec<u64> = (0..20).collect();
        let mut h = Harness::new(plan.clone(), params(), &ids);
        let old = Placement::new(&plan.old).unwrap();
        for s in 0..4 {
            assert_eq!(h.m.read_placement().owners(s, 1), old.owners(s, 0));
            assert!(h.m.route(s).unwrap().ack[1].is_empty());
        }
        h.run(50_000);
        assert!(h.m.is_finished());
        h.check_final(&ids.iter().map(|i| (i.to_string(), 0)).collect());
    }

    #[test]
    fn remove_group_stops_routing_at_once() {
        let t = topo(&[2, 2], 1, 4);
        let plan = plan_change(&t, &Change::RemoveGroup(1)).unwrap();
        let ids: Vec<u64> = (0..20).collect();
        let mut h = Harness::new(plan.clone(), params(), &ids);
        let old = Placement::new(&plan.old).unwrap();
        for s in 0..4 {
            let r = h.m.route(s).unwrap();
            for n in old.owners(s, 1) {
                assert!(!r.write_targets.contains(n));
            }
            assert_eq!(h.m.read_placement().groups(), 1);
        }
        h.run(50_000);
        assert!(h.m.is_finished());
        h.check_final(&ids.iter().map(|i| (i.to_string(), 0)).collect());
        assert!(
            !h.sent.iter().any(|r| r.path.ends_with("/fetch")),
            "nothing copied"
        );
        assert!(plan_change(&t, &Change::RemoveGroup(0)).is_err());
        assert!(plan_change(&topo(&[2], 1, 4), &Change::RemoveGroup(0)).is_err());
    }

    #[test]
    fn planning_errors() {
        let t = topo(&[3], 2, 8);
        assert!(plan_change(&t, &Change::AddNode(Node::active("n0", "x", 0))).is_err());
        assert!(plan_change(&t, &Change::AddNode(Node::active("n7", "x", 3))).is_err());
        assert!(plan_change(&t, &Change::AddGroup(vec![Node::active("n0", "x", 0)])).is_err());
        assert!(
            plan_change(&t, &Change::AddGroup(vec![Node::active("q", "x", 0)])).is_err(),
            "fewer than RF"
        );
        assert_eq!(
            plan_change(&t, &Change::DrainNode("zz".into()))
                .unwrap_err()
                .code,
            "miroir_node_not_found"
        );
        assert!(
            plan_change(&topo(&[2], 2, 8), &Change::DrainNode("n0".into())).is_err(),
            "fewer than RF left"
        );
        assert!(plan_change(&t, &Change::FailNode("zz".into())).is_err());
        let drained = plan_change(&t, &Change::DrainNode("n0".into()))
            .unwrap()
            .new;
        assert!(
            plan_change(&drained, &Change::DrainNode("n0".into())).is_err(),
            "not placed any more"
        );
        let mut other = t.clone();
        other.shards = 4;
        other.epoch = 2;
        assert!(plan(&t, &other, BTreeSet::new()).is_err());
        let mut other = t.clone();
        other.replication_factor = 1;
        other.epoch = 2;
        assert!(plan(&t, &other, BTreeSet::new()).is_err());
        assert!(plan(&t, &t, BTreeSet::new()).is_err(), "not newer");
        let next = t.next(|_| {}).unwrap();
        assert!(
            plan(&t, &next, ["n0".into()].into_iter().collect()).is_err(),
            "lost but placed"
        );
        // joining node becomes active
        let mut j = t.clone();
        j.nodes.push(Node {
            state: NodeState::Joining,
            ..Node::active("n5", "x", 0)
        });
        let p = plan_change(&j, &Change::AddNode(Node::active("n5", "x", 0))).unwrap();
        assert_eq!(p.new.node(&"n5".into()).unwrap().state, NodeState::Active);
    }

    #[test]
    fn fingerprint_ignores_order_and_miroir_fields() {
        let a = json!({"id": 1, "t": {"x": 1, "y": [1, 2]}, "_miroir_shard": 3});
        let b = json!({"t": {"y": [1, 2], "x": 1}, "id": 1});
        let c = json!({"t": {"y": [2, 1], "x": 1}, "id": 1});
        let f = |v: &Value| fingerprint(v.as_object().unwrap());
        assert_eq!(f(&a), f(&b));
        assert_ne!(f(&a), f(&c));
    }

    #[test]
    fn bad_answers_are_failures_not_panics() {
        let plan = add_node_plan();
        let mut m = Migration::start(plan, params()).unwrap();
        let mut now = 1_000;
        let mut answers = vec![
            json!(null),
            json!({"results": 5}),
            json!({"results": [1]}),
            json!({"results": [{"x": 1}]}),
            json!({"status": "failed"}),
            json!("x"),
        ];
        let mut steps = 0;
        while steps < 500 {
            steps += 1;
            match m.poll_action() {
                Some(Action::Persist { seq, .. }) => m.on_persisted(seq, now),
                Some(Action::Send(r)) => {
                    let a = answers.pop().unwrap_or(json!({}));
                    m.on_response(r.id, 200, &a, now);
                    m.on_response(r.id, 200, &a, now); // duplicate: ignored
                    m.on_failure(r.id, now); // late: ignored
                }
                None => {
                    now += 1_000;
                    m.handle_timeout(now);
                }
            }
        }
        assert!(!m.is_finished());
        m.on_response(9_999, 200, &json!({}), now);
        assert!(m.failures().values().any(|f| *f > 0));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn plan_moves_only_shards_whose_owners_change(
            n in 2u32..6, rf in 1u32..3, shards in 1u32..24, action in 0u8..3, pick in 0usize..8,
        ) {
            prop_assume!(rf <= n);
            let t = topo(&[n], rf, shards);
            let change = match action {
                0 => Change::AddNode(Node::active("new", "x", 0)),
                1 if n > rf => Change::DrainNode(NodeId::new(format!("n{}", pick % n as usize))),
                _ if n > rf && rf > 1 => Change::FailNode(NodeId::new(format!("n{}", pick % n as usize))),
                _ => Change::AddNode(Node::active("new", "x", 0)),
            };
            let plan = plan_change(&t, &change).unwrap();
            let old = Placement::new(&plan.old).unwrap();
            let new = Placement::new(&plan.new).unwrap();
            for s in 0..shards {
                let a: BTreeSet<_> = old.owners(s, 0).iter().collect();
                let b: BTreeSet<_> = new.owners(s, 0).iter().collect();
                prop_assert_eq!(plan.moves.contains_key(&s), a != b);
                if let Some(m) = plan.moves.get(&s) {
                    let t: BTreeSet<_> = m[0].targets.iter().collect();
                    let l: BTreeSet<_> = m[0].leaving.iter().collect();
                    prop_assert_eq!(t, b.difference(&a).copied().collect::<BTreeSet<_>>());
                    prop_assert_eq!(l, a.difference(&b).copied().collect::<BTreeSet<_>>());
                    prop_assert!(m[0].sources.iter().all(|x| a.contains(x) && !plan.lost.contains(x)));
                }
            }
        }
    }
}
