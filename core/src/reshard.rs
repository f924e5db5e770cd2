//! Online resharding: changing S, the number of shards of one index, while clients keep reading and writing
//! it, without losing or resurrecting a single acknowledged write.
//!
//! The index is rebuilt next to itself: a hidden *shadow* index (`<uid>__miroir_reshard_<n>`, see
//! [`shadow_name`]) with the new S on every node, filled from the *live* one, verified, then swapped in by
//! flipping the name mapping. The copy and verify primitives (pages, batch writes, barriers, fingerprints,
//! diffs) are the shard migration's, shared through [`crate::docsync`].
//!
//! # States
//!
//! ```text
//!  create_shadow ─► backfill ─► verify ─► fence ─► swap ─► retain ─► cleanup ─► done
//!        │              │   ▲      │  ▲     │  (persist,   │
//!        │              │   └─fail─┘  └─────┘   then flip) └─ rollback() ─► verify (roles reversed) ─► …
//!        └──────────────┴── abort() ──────────┴─► aborting ─► aborted
//! ```
//! - `create_shadow`: the live index's settings are read from one node (and its stats from every node, for
//!   the progress estimate); the shadow is created with the primary key on every placed node and given the
//!   same settings. Client writes go to the live index only.
//! - `backfill`: *dual-hash dual-write* is on: every client write goes to the live index routed with the
//!   old S (its acknowledgement is judged there only) and to the shadow routed with the new S (best effort).
//!   Each live shard is read page by page from one of its owners and written to the shadow, every
//!   document's `_miroir_shard` recomputed for the new S, throttled to `docs_per_second`. The progress (the
//!   next shard to copy) is persisted after each shard.
//! - `verify`: passes compare the live index (id → content [`fingerprint`](crate::docsync::fingerprint),
//!   read shard by shard) with the shadow on every node (what each node must hold under the new S) and
//!   repair the shadow: missing or different documents are written, documents that must not be there are
//!   deleted. Passes repeat until one is clean or `max_verify_passes` were made.
//! - `fence`: client writes are held ([`Reshard::try_write`] answers "wait"), admitted ones drain
//!   ([`Reshard::write_finished`]), a barrier task is awaited on both indexes of every node, then verify
//!   passes run until one is clean. So the swap never depends on which dual writes failed, and a copy that
//!   raced a client delete cannot resurrect it. A fence not clean within `fence_timeout_ms` is lifted and
//!   the machine goes back to `verify`.
//! - `swap`: an [`Action::Persist`] of the record naming the new index as live; nothing is sent and the
//!   fence stays up until [`Reshard::on_persisted`] acknowledges it, then reads and writes use the new index
//!   and the new S.
//! - `retain`: the old index is kept for `retention_ms` and still receives every client write (routed with
//!   the old S, best effort), so [`Reshard::rollback`] — the reverse flip, run as a reshard from the new
//!   index back to the old one starting at `verify` — loses nothing.
//! - `cleanup`: writes stop going to the old index, admitted ones drain, the old index is deleted on every
//!   node. After a rollback the abandoned new index is deleted instead (no retention).
//! - `aborting` ([`Reshard::abort`], only before the swap): writes stop going to the shadow, admitted ones
//!   drain, the shadow is deleted on every node; clients never saw it.
//!
//! A failed request (unreachable node, error answer, failed node task) pauses the machine for
//! `retry_after_ms`, rotates the source replicas, and restarts the current stage (a fence is lifted and the
//! machine goes back to `verify`).
//!
//! # Events and actions (sans-IO)
//!
//! Events in: [`Reshard::on_response`], [`Reshard::on_failure`], [`Reshard::on_persisted`],
//! [`Reshard::handle_timeout`], [`Reshard::write_finished`], [`Reshard::abort`], [`Reshard::rollback`].
//! Actions out: [`Reshard::poll_action`] and [`Reshard::poll_timeout`]. Client writes are built by
//! [`Reshard::try_write`]; reads use [`Reshard::read_target`].
//!
//! # Record and resume
//!
//! [`Reshard::record`] is a JSON value; [`Reshard::resume`] rebuilds the machine from it after a proxy
//! crash: `create_shadow` restarts; `backfill`, `verify` and `fence` restart the backfill at the recorded
//! shard (then a full verify under the fence repairs whatever the crash interrupted); a record in `swap` is
//! a persisted swap and resumes at `retain` (or `cleanup` after a rollback); the other phases resume where
//! they were.
//!
//! # Invariants
//! - until the swap is persisted reads and acknowledgements use the old index and the old S, afterwards the
//!   new index and the new S; the flip is a single persisted record;
//! - the swap happens only after a clean verify pass between the whole live index and the shadow on every
//!   node, while no client write was admitted or in flight, after barriers on every node;
//! - a shadow is deleted (abort) and an old index is deleted (cleanup) only after the writes that could still
//!   reach it drained;
//! - writes to the secondary index (shadow, or the retained old one) never decide an acknowledgement.
//!
//! # Known limits
//! - A verify pass holds the whole index (id → fingerprint and document) in memory; the live replica read
//!   for a shard is taken as the truth, as in the migration (a quorum below "every owner" needs a source
//!   that acknowledged everything).
//! - A node write of the previous proxy incarnation still in the network when an abort deletes the shadow
//!   could recreate it (a document addition creates its index).

use crate::docsync::{self, TaskPoll};
use crate::documents::{plan_batch, plan_delete_ids, Document};
use crate::ops::write::{FanoutWrite, WriteTask};
use crate::ops::{encode_query_value, Method, NodeRequest, RequestId};
use crate::quorum::WriteQuorum;
use crate::routing::{shard_for_key, Placement};
use crate::topology::{NodeId, ShardId, Topology};
use crate::{MeiliError, Millis, SHARD_FIELD};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet, VecDeque};

const CODE: &str = "miroir_invalid_reshard";
/// A node request before it gets an id: node, method, path, body.
type RequestSpec = (NodeId, Method, String, Option<Value>);
/// How long to wait between two polls of a node task.
const TASK_POLL_MS: Millis = 20;

fn invalid(msg: impl Into<String>) -> MeiliError {
    MeiliError::invalid(400, CODE, msg)
}

fn conflict(msg: impl Into<String>) -> MeiliError {
    MeiliError::invalid(409, "miroir_reshard_conflict", msg)
}

/// The hidden shadow index of generation `generation` of `index_uid`'s resharding.
pub fn shadow_name(index_uid: &str, generation: u64) -> String {
    format!("{index_uid}__miroir_reshard_{generation}")
}

/// Where a resharding stands (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// The shadow index is being created with the live index's settings.
    CreateShadow,
    /// Dual writes are on; the live shards are copied, re-hashed, into the shadow.
    Backfill,
    /// Verify passes repair the shadow.
    Verify,
    /// Client writes are held; a final clean verify pass is required.
    Fence,
    /// The flip is being persisted.
    Swap,
    /// The new index is live; the old one is kept (and still written) for the retention period.
    Retain,
    /// The old (or, after a rollback, the abandoned) index is deleted.
    Cleanup,
    /// Finished.
    Done,
    /// The shadow is being deleted.
    Aborting,
    /// Aborted before the swap: nothing changed for clients.
    Aborted,
}

impl Phase {
    /// Whether the machine has nothing left to do.
    pub fn is_final(self) -> bool {
        matches!(self, Phase::Done | Phase::Aborted)
    }
}

/// A deliberately broken coordinator, for tests that show the simulator's checkers catch it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PlantedBug {
    /// The correct machine.
    #[default]
    None,
    /// Swap right after the backfill: no verify, no fence.
    SwapBeforeVerify,
}

/// One of the two indexes: its physical uid on the nodes and its S.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Side {
    /// The index uid on the nodes.
    pub index: String,
    /// Its number of shards.
    pub shards: u32,
}

/// What a resharding does and its knobs.
#[derive(Debug, Clone, PartialEq)]
pub struct ReshardParams {
    /// The index as clients name it.
    pub index_uid: String,
    /// The physical index serving it now (the client uid itself, or an earlier reshard's shadow).
    pub live_index: String,
    /// `n` of the shadow's name `<uid>__miroir_reshard_<n>`; must differ from earlier reshards'.
    pub generation: u64,
    /// The primary key (stated on every copy write).
    pub primary_key: String,
    /// The fleet (nodes, RF, RG); its `shards` is the old S.
    pub topology: Topology,
    /// The new S.
    pub new_shards: u32,
    /// Copy throttle in documents per second (0 = unthrottled).
    pub docs_per_second: u64,
    /// Documents per page read from a node.
    pub page_size: usize,
    /// How long the machine pauses after a failure.
    pub retry_after_ms: Millis,
    /// How long a fence may hold client writes before it is lifted.
    pub fence_timeout_ms: Millis,
    /// Verify passes before going to the fence even if the last one was not clean.
    pub max_verify_passes: u32,
    /// How long the old index is kept (and written) after the swap.
    pub retention_ms: Millis,
    /// Test-only: plant a bug.
    pub planted: PlantedBug,
}

impl ReshardParams {
    /// Defaults for resharding `index_uid` (served by the index of the same name) on `topology` to
    /// `new_shards` shards.
    pub fn new(
        index_uid: impl Into<String>,
        primary_key: impl Into<String>,
        topology: Topology,
        new_shards: u32,
    ) -> Self {
        let index_uid = index_uid.into();
        ReshardParams {
            live_index: index_uid.clone(),
            index_uid,
            generation: 1,
            primary_key: primary_key.into(),
            topology,
            new_shards,
            docs_per_second: 5_000,
            page_size: 100,
            retry_after_ms: 500,
            fence_timeout_ms: 5_000,
            max_verify_passes: 3,
            retention_ms: 24 * 3_600 * 1_000,
            planted: PlantedBug::None,
        }
    }
}

/// What the shell must do.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Send this request; feed the answer to [`Reshard::on_response`] or [`Reshard::on_failure`].
    Send(NodeRequest),
    /// Store this record durably, then call [`Reshard::on_persisted`] with `seq`.
    Persist {
        /// Sequence number to acknowledge.
        seq: u64,
        /// The record (see [`Reshard::record`]).
        record: Value,
    },
}

/// A client write to build.
#[derive(Debug, Clone, PartialEq)]
pub enum WriteIntent {
    /// Add or replace (`replace`, POST) or update (PUT) documents.
    Documents {
        /// Documents as the client sent them (without `_miroir_shard`).
        docs: Vec<Document>,
        /// POST (true) or PUT (false).
        replace: bool,
    },
    /// Delete documents by id (delete-batch values).
    DeleteIds(Vec<Value>),
    /// The same request to every node, for each index: the path is `/indexes/<index>` followed by
    /// `suffix` (`/documents/delete` with a filter, `/documents` to clear, `/settings`, …).
    IndexBroadcast {
        /// HTTP method.
        method: Method,
        /// What follows `/indexes/<index>` in the path (query string included).
        suffix: String,
        /// JSON body, if any.
        body: Option<Value>,
    },
}

/// Proof that a client write was admitted; give it back to [`Reshard::write_finished`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub struct WriteTicket {
    _admitted: (),
}

/// An admitted client write.
#[derive(Debug)]
pub struct ReshardWrite {
    /// The write to the live index; the client's acknowledgement is judged on it alone.
    pub live: FanoutWrite,
    /// The same write to the secondary index (the shadow, or the retained old index), routed with its S.
    /// Best effort: send these and wait for their answers (or time-outs) before finishing the ticket, but
    /// their outcome decides nothing (the verify passes repair what they miss). Their ids follow the live
    /// write's.
    pub secondary: Vec<NodeRequest>,
    /// Give it back to [`Reshard::write_finished`] once every request (both parts) answered or timed out.
    pub ticket: WriteTicket,
}

/// Progress for the operator.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReshardStatus {
    /// The index as clients name it.
    pub index_uid: String,
    /// Where the machine stands.
    pub phase: Phase,
    /// The index serving reads and acknowledging writes now, and its S.
    pub live: Side,
    /// The index being built (or, after the swap, the one kept for the retention period).
    pub other: Side,
    /// Documents copied by the backfill so far.
    pub docs_copied: u64,
    /// The live index's size estimated from the nodes' stats, when known.
    pub docs_total: Option<u64>,
    /// Estimated time left for the backfill at the throttle, when known.
    pub eta_ms: Option<Millis>,
    /// Verify passes made (in `verify` and under the fence).
    pub verify_passes: u32,
    /// Failures (paused retries) so far.
    pub failures: u64,
    /// Whether this is a rollback to the old index.
    pub rollback: bool,
}

/// A dry run's estimate of a resharding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReshardEstimate {
    /// Documents the backfill reads (one copy of each).
    pub docs_to_copy: u64,
    /// Document copies the shadow holds across the fleet (each document on RF·RG nodes).
    pub shadow_copies: u64,
    /// Storage the fleet needs at the peak (live and shadow side by side): about twice today's.
    pub peak_bytes: u64,
    /// Backfill duration at the throttle (`None` when unthrottled).
    pub duration_ms: Option<Millis>,
}

/// The dry run: estimates a resharding of an index of `docs` documents averaging `avg_doc_bytes` bytes,
/// with `params`' topology and throttle, without touching anything (the shell reads the sizes from the
/// nodes' stats).
pub fn dry_run(params: &ReshardParams, docs: u64, avg_doc_bytes: u64) -> ReshardEstimate {
    let copies = params.topology.replication_factor as u64 * params.topology.replica_groups as u64;
    let shadow_copies = docs.saturating_mul(copies);
    ReshardEstimate {
        docs_to_copy: docs,
        shadow_copies,
        peak_bytes: shadow_copies
            .saturating_mul(avg_doc_bytes)
            .saturating_mul(2),
        duration_ms: docs
            .saturating_mul(1000)
            .checked_div(params.docs_per_second),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Which {
    Src,
    Dst,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scan {
    /// A backfill page of a live shard.
    Copy,
    /// A verify page of live shard `s`.
    Live(ShardId),
    /// A verify page of the shadow on node `i` (of `nodes`).
    Shadow(usize),
}

#[derive(Debug, Clone, PartialEq)]
enum Work {
    Stats {
        node: NodeId,
    },
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
        which: Which,
        shard: Option<ShardId>,
        offset: usize,
        scan: Scan,
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
        which: Which,
    },
    DropIndex {
        node: NodeId,
        which: Which,
    },
    AwaitTask {
        node: NodeId,
        uid: u64,
        tolerate_failure: bool,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FenceStage {
    Draining,
    Barriers,
    Verify,
}

/// The persisted form of a resharding.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Record {
    version: u32,
    index_uid: String,
    primary_key: String,
    generation: u64,
    topology: Topology,
    src: Side,
    dst: Side,
    phase: Phase,
    rollback: bool,
    backfill_shard: u32,
    docs_copied: u64,
    retain_until: Millis,
}

/// The resharding coordinator of one index. See the module documentation.
#[derive(Debug, Clone)]
pub struct Reshard {
    params: ReshardParams,
    /// The index being replaced (live until the swap).
    src: Side,
    /// The index being built (live after the swap).
    dst: Side,
    src_p: Placement,
    dst_p: Placement,
    /// Every placed node: the shadow is created, scanned, fenced and deleted on each.
    nodes: Vec<NodeId>,
    phase: Phase,
    swapped: bool,
    rollback: bool,
    retain_until: Millis,
    queue: VecDeque<Work>,
    waiting: Option<(RequestId, Work)>,
    /// A request abandoned by an abort: its answer is awaited (and ignored) before anything else is sent,
    /// so a copy write still on its way cannot recreate the shadow after its deletion.
    orphan: Option<RequestId>,
    not_before: Millis,
    started: bool,
    settings: Option<Value>,
    prepared: bool,
    stats: BTreeMap<NodeId, u64>,
    source_idx: usize,
    copy_shard: u32,
    copy_offset: usize,
    copy_next_at: Millis,
    progress_unsaved: bool,
    docs_copied: u64,
    pass_running: bool,
    passes: u32,
    total_passes: u32,
    dirty: bool,
    expect: BTreeMap<String, (u64, Document)>,
    actual: BTreeMap<String, u64>,
    fenced: bool,
    fence_stage: FenceStage,
    fence_deadline: Millis,
    in_flight: u64,
    failures: u64,
    outbox: VecDeque<Action>,
    next_request: RequestId,
    seq: u64,
    awaiting_persist: Option<u64>,
    now: Millis,
}

impl Reshard {
    /// Starts a resharding; the first action is the persistence of its initial record.
    pub fn start(params: ReshardParams) -> Result<Reshard, MeiliError> {
        if params.index_uid.is_empty() || params.live_index.is_empty() {
            return Err(invalid("A resharding needs an index uid."));
        }
        if params.new_shards == 0 {
            return Err(invalid("The new number of shards must be at least 1."));
        }
        if params.new_shards == params.topology.shards {
            return Err(invalid(format!(
                "The index already has {} shards.",
                params.new_shards
            )));
        }
        let shadow = shadow_name(&params.index_uid, params.generation);
        if shadow == params.live_index {
            return Err(invalid(format!(
                "The generation {} is the live index's own; pick a new one.",
                params.generation
            )));
        }
        let src = Side {
            index: params.live_index.clone(),
            shards: params.topology.shards,
        };
        let dst = Side {
            index: shadow,
            shards: params.new_shards,
        };
        Self::build(params, src, dst, Phase::CreateShadow, false, 0, 0, 0)
    }

    /// Rebuilds a coordinator from a record written by [`Reshard::record`] (see the module documentation
    /// for where it resumes). The record's structure wins; `params` gives the knobs (throttle, time-outs,
    /// retention, planted bug) and must name the same index. The first action is the persistence of the
    /// resumed record.
    pub fn resume(record: &Value, params: ReshardParams) -> Result<Reshard, MeiliError> {
        let r: Record = serde_json::from_value(record.clone())
            .map_err(|e| invalid(format!("The resharding record is unreadable: {e}.")))?;
        if r.version != 1 {
            return Err(invalid(format!(
                "Unknown resharding record version {}.",
                r.version
            )));
        }
        if r.index_uid != params.index_uid {
            return Err(invalid(format!(
                "The resharding record is for index `{}`, not `{}`.",
                r.index_uid, params.index_uid
            )));
        }
        if r.src.shards == 0 || r.dst.shards == 0 || r.backfill_shard > r.src.shards {
            return Err(invalid("The resharding record is inconsistent."));
        }
        let phase = match r.phase {
            Phase::CreateShadow => Phase::CreateShadow,
            Phase::Backfill | Phase::Verify | Phase::Fence => Phase::Backfill,
            Phase::Swap if r.rollback => Phase::Cleanup,
            Phase::Swap | Phase::Retain => Phase::Retain,
            other => other,
        };
        let mut topology = r.topology;
        topology.shards = r.src.shards;
        let params = ReshardParams {
            index_uid: r.index_uid,
            primary_key: r.primary_key,
            generation: r.generation,
            topology,
            live_index: r.src.index.clone(),
            new_shards: r.dst.shards,
            ..params
        };
        let mut m = Self::build(
            params,
            r.src,
            r.dst,
            phase,
            r.rollback,
            r.backfill_shard,
            r.docs_copied,
            r.retain_until,
        )?;
        m.swapped = r.phase >= Phase::Swap && r.phase <= Phase::Done;
        Ok(m)
    }

    #[allow(clippy::too_many_arguments)]
    fn build(
        params: ReshardParams,
        src: Side,
        dst: Side,
        phase: Phase,
        rollback: bool,
        backfill_shard: u32,
        docs_copied: u64,
        retain_until: Millis,
    ) -> Result<Reshard, MeiliError> {
        let with = |shards: u32| {
            let mut t = params.topology.clone();
            t.shards = shards;
            Placement::new(&t).map_err(|e| invalid(format!("The topology is invalid: {e}.")))
        };
        let src_p = with(src.shards)?;
        let dst_p = with(dst.shards)?;
        let nodes = params
            .topology
            .nodes
            .iter()
            .filter(|n| n.state.is_placed())
            .map(|n| n.id.clone())
            .collect();
        let mut m = Reshard {
            params,
            src,
            dst,
            src_p,
            dst_p,
            nodes,
            phase,
            swapped: false,
            rollback,
            retain_until,
            queue: VecDeque::new(),
            waiting: None,
            orphan: None,
            not_before: 0,
            started: false,
            settings: None,
            prepared: false,
            stats: BTreeMap::new(),
            source_idx: 0,
            copy_shard: backfill_shard,
            copy_offset: 0,
            copy_next_at: 0,
            progress_unsaved: false,
            docs_copied,
            pass_running: false,
            passes: 0,
            total_passes: 0,
            dirty: false,
            expect: BTreeMap::new(),
            actual: BTreeMap::new(),
            fenced: false,
            fence_stage: FenceStage::Draining,
            fence_deadline: 0,
            in_flight: 0,
            failures: 0,
            outbox: VecDeque::new(),
            next_request: 0,
            seq: 0,
            awaiting_persist: None,
            now: 0,
        };
        m.persist();
        Ok(m)
    }

    /// The current phase.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// Whether nothing is left to do (done or aborted).
    pub fn is_finished(&self) -> bool {
        self.phase.is_final() && self.outbox.is_empty()
    }

    /// The index serving reads and acknowledging writes now, and its S.
    pub fn live(&self) -> &Side {
        if self.swapped {
            &self.dst
        } else {
            &self.src
        }
    }

    /// The index that receives copies of client writes now, if any: the shadow from the backfill to the
    /// swap, the old index while it is retained.
    pub fn secondary(&self) -> Option<&Side> {
        match (self.phase, self.swapped) {
            (Phase::Backfill | Phase::Verify | Phase::Fence | Phase::Swap, false) => {
                Some(&self.dst)
            }
            (Phase::Retain, true) if !self.rollback => Some(&self.src),
            _ => None,
        }
    }

    fn placement_of(&self, side: &Side) -> &Placement {
        if side.index == self.src.index {
            &self.src_p
        } else {
            &self.dst_p
        }
    }

    /// Where reads go right now: the live index and its placement (the old S until the swap is persisted,
    /// the new S afterwards).
    pub fn read_target(&self) -> (&str, &Placement) {
        let live = self.live();
        (&live.index, self.placement_of(live))
    }

    /// Whether client writes must wait (the fence is up).
    pub fn is_fenced(&self) -> bool {
        self.fenced
    }

    /// Progress for the operator.
    pub fn status(&self) -> ReshardStatus {
        let copies = (self.params.topology.replication_factor as u64
            * self.params.topology.replica_groups as u64)
            .max(1);
        let docs_total = (self.stats.len() == self.nodes.len() && !self.nodes.is_empty())
            .then(|| self.stats.values().sum::<u64>() / copies);
        let eta_ms = match self.phase {
            Phase::CreateShadow | Phase::Backfill if !self.rollback => docs_total.and_then(|t| {
                t.saturating_sub(self.docs_copied)
                    .saturating_mul(1000)
                    .checked_div(self.params.docs_per_second)
            }),
            _ => None,
        };
        let other = if self.swapped { &self.src } else { &self.dst };
        ReshardStatus {
            index_uid: self.params.index_uid.clone(),
            phase: self.phase,
            live: self.live().clone(),
            other: other.clone(),
            docs_copied: self.docs_copied,
            docs_total,
            eta_ms,
            verify_passes: self.total_passes,
            failures: self.failures,
            rollback: self.rollback,
        }
    }

    /// The durable record: `{"version": 1, "indexUid", "primaryKey", "generation", "topology": Topology,
    /// "src": {"index", "shards"}, "dst": {…}, "phase", "rollback", "backfillShard", "docsCopied",
    /// "retainUntil"}`; `src` is the index being replaced, `dst` the one being built.
    pub fn record(&self) -> Value {
        let r = Record {
            version: 1,
            index_uid: self.params.index_uid.clone(),
            primary_key: self.params.primary_key.clone(),
            generation: self.params.generation,
            topology: self.params.topology.clone(),
            src: self.src.clone(),
            dst: self.dst.clone(),
            phase: self.phase,
            rollback: self.rollback,
            backfill_shard: self.copy_shard,
            docs_copied: self.docs_copied,
            retain_until: self.retain_until,
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

    /// Gives up before the swap: writes stop going to the shadow and it is deleted on every node. Refused
    /// once the swap is being persisted or done (use [`Reshard::rollback`] while the old index is retained).
    pub fn abort(&mut self, now: Millis) -> Result<(), MeiliError> {
        match self.phase {
            Phase::Aborting | Phase::Aborted => return Ok(()),
            Phase::CreateShadow | Phase::Backfill | Phase::Verify | Phase::Fence
                if !self.swapped && !self.rollback => {}
            _ => {
                return Err(conflict(format!(
                    "The resharding of `{}` can no longer be aborted (phase `{}`).",
                    self.params.index_uid,
                    phase_name(self.phase)
                )))
            }
        }
        let orphan = self.waiting.take().map(|(id, _)| id);
        self.reset_stage();
        self.orphan = orphan;
        self.fenced = false;
        self.not_before = 0;
        self.phase = Phase::Aborting;
        self.persist();
        self.pump(now);
        Ok(())
    }

    /// The reverse flip, while the old index is retained: the old index is verified against the new one
    /// under a fence, swapped back in, and the new one deleted. Refused outside `retain`.
    pub fn rollback(&mut self, now: Millis) -> Result<(), MeiliError> {
        if self.phase != Phase::Retain || self.rollback || !self.swapped {
            return Err(conflict(format!(
                "The resharding of `{}` can only be rolled back while the old index is retained (phase `{}`).",
                self.params.index_uid,
                phase_name(self.phase)
            )));
        }
        self.reset_stage();
        std::mem::swap(&mut self.src, &mut self.dst);
        std::mem::swap(&mut self.src_p, &mut self.dst_p);
        self.swapped = false;
        self.rollback = true;
        self.copy_shard = self.src.shards;
        self.phase = Phase::Verify;
        self.passes = 0;
        self.not_before = 0;
        self.persist();
        self.pump(now);
        Ok(())
    }

    fn reset_stage(&mut self) {
        self.queue.clear();
        self.waiting = None;
        self.started = false;
        self.pass_running = false;
        self.expect.clear();
        self.actual.clear();
    }

    // ----- client writes -----

    /// Admits a client write: `Ok(Some(write))` to run (then give its ticket back to
    /// [`Reshard::write_finished`]), `Ok(None)` while the fence is up (try again shortly), `Err` for an
    /// invalid document (the errors of `documents::plan_batch`).
    pub fn try_write(
        &mut self,
        intent: WriteIntent,
        task: WriteTask,
        quorum: WriteQuorum,
        deadline: Millis,
    ) -> Result<Option<ReshardWrite>, MeiliError> {
        if self.fenced {
            return Ok(None);
        }
        let live = self.live().clone();
        let live_p = self.placement_of(&live).clone();
        let secondary = self.secondary().cloned();
        let pk = self.params.primary_key.clone();
        let (write, sec_requests): (FanoutWrite, Vec<RequestSpec>) = match intent {
            WriteIntent::Documents { docs, replace } => {
                let plan = plan_batch(docs.clone(), &pk, &live_p)?;
                let write = FanoutWrite::documents(
                    task,
                    &live.index,
                    &pk,
                    replace,
                    plan,
                    &live_p,
                    quorum,
                    deadline,
                );
                let mut sec = Vec::new();
                if let Some(side) = &secondary {
                    let plan = plan_batch(docs, &pk, self.placement_of(side))?;
                    let path = format!(
                        "/indexes/{}/documents?primaryKey={}",
                        side.index,
                        encode_query_value(&pk)
                    );
                    let method = if replace { Method::Post } else { Method::Put };
                    for (node, docs) in plan.per_node {
                        let body = Value::Array(docs.into_iter().map(Value::Object).collect());
                        sec.push((node, method, path.clone(), Some(body)));
                    }
                }
                (write, sec)
            }
            WriteIntent::DeleteIds(ids) => {
                let plan = plan_delete_ids(&ids, &live_p);
                let write =
                    FanoutWrite::delete_ids(task, &live.index, plan, &live_p, quorum, deadline);
                let mut sec = Vec::new();
                if let Some(side) = &secondary {
                    let plan = plan_delete_ids(&ids, self.placement_of(side));
                    let path = format!("/indexes/{}/documents/delete-batch", side.index);
                    for (node, ids) in plan.per_node {
                        let body = Value::Array(ids.into_iter().map(Value::String).collect());
                        sec.push((node, Method::Post, path.clone(), Some(body)));
                    }
                }
                (write, sec)
            }
            WriteIntent::IndexBroadcast {
                method,
                suffix,
                body,
            } => {
                let write = FanoutWrite::broadcast(
                    task,
                    method,
                    format!("/indexes/{}{suffix}", live.index),
                    body.clone(),
                    &live_p,
                    quorum,
                    deadline,
                );
                let mut sec = Vec::new();
                if let Some(side) = &secondary {
                    let p = self.placement_of(side);
                    let nodes: BTreeSet<NodeId> =
                        (0..p.shards()).flat_map(|s| p.write_targets(s)).collect();
                    for n in nodes {
                        sec.push((
                            n,
                            method,
                            format!("/indexes/{}{suffix}", side.index),
                            body.clone(),
                        ));
                    }
                }
                (write, sec)
            }
        };
        let first = write.requests().len();
        let secondary = sec_requests
            .into_iter()
            .enumerate()
            .map(|(i, (node, method, path, body))| NodeRequest {
                id: first + i,
                node,
                method,
                path,
                body,
            })
            .collect();
        self.in_flight += 1;
        Ok(Some(ReshardWrite {
            live: write,
            secondary,
            ticket: WriteTicket { _admitted: () },
        }))
    }

    /// An admitted write is over: every request answered or timed out.
    pub fn write_finished(&mut self, ticket: WriteTicket, now: Millis) {
        let WriteTicket { _admitted: () } = ticket;
        self.in_flight = self.in_flight.saturating_sub(1);
        self.pump(now);
    }

    // ----- events -----

    /// The next action to carry out, if any.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.outbox.pop_front()
    }

    /// When [`Reshard::handle_timeout`] must be called: the end of a pause, of the throttle, of a task poll
    /// interval or of the retention, or the fence's deadline. `None` when the machine waits for an event
    /// (an answer, a persistence acknowledgement, a finished write) or is finished.
    pub fn poll_timeout(&self) -> Option<Millis> {
        if self.awaiting_persist.is_some() || self.phase.is_final() {
            return None;
        }
        let idle = self.waiting.is_none() && self.orphan.is_none();
        let resume = (idle && self.not_before > self.now).then_some(self.not_before);
        let fence = (self.fenced && self.phase == Phase::Fence).then_some(self.fence_deadline);
        resume.into_iter().chain(fence).min()
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
        if self.phase == Phase::Swap && !self.swapped {
            self.swapped = true;
            self.fenced = false;
        }
        self.pump(now);
    }

    /// A node answered request `id`.
    pub fn on_response(&mut self, id: RequestId, status: u16, body: &Value, now: Millis) {
        let Some(work) = self.take_waiting(id) else {
            self.pump(now);
            return;
        };
        let ok = (200..300).contains(&status);
        let outcome = match work {
            // progress estimates only: never a failure
            Work::Stats { node } => {
                if let Some(n) = body.get("numberOfDocuments").and_then(Value::as_u64) {
                    if ok {
                        self.stats.insert(node, n);
                    }
                }
                Ok(())
            }
            // an index already gone is deleted
            Work::DropIndex { .. } if status == 404 => Ok(()),
            work if ok => self.absorb(work, body, now),
            _ => Err(()),
        };
        if outcome.is_err() {
            self.fail(now);
        }
        self.pump(now);
    }

    /// Request `id` could not be delivered or timed out.
    pub fn on_failure(&mut self, id: RequestId, now: Millis) {
        let Some(work) = self.take_waiting(id) else {
            self.pump(now);
            return;
        };
        if !matches!(work, Work::Stats { .. }) {
            self.fail(now);
        }
        self.pump(now);
    }

    fn take_waiting(&mut self, id: RequestId) -> Option<Work> {
        if self.orphan == Some(id) {
            self.orphan = None;
            return None;
        }
        match self.waiting.take() {
            Some((w, work)) if w == id => Some(work),
            other => {
                self.waiting = other;
                None
            }
        }
    }

    fn fail(&mut self, now: Millis) {
        self.failures += 1;
        self.reset_stage();
        self.not_before = now.saturating_add(self.params.retry_after_ms);
        self.source_idx += 1;
        match self.phase {
            Phase::Fence => {
                self.fenced = false;
                self.phase = Phase::Verify;
                self.passes = 0;
            }
            Phase::CreateShadow => {
                self.settings = None;
                self.prepared = false;
                self.stats.clear();
            }
            _ => {}
        }
    }

    // ----- requests and answers -----

    fn index(&self, which: Which) -> &str {
        match which {
            Which::Src => &self.src.index,
            Which::Dst => &self.dst.index,
        }
    }

    fn request_for(&self, work: &Work) -> RequestSpec {
        let with = |node: &NodeId, (m, p, b): docsync::RequestParts| (node.clone(), m, p, b);
        let pk = &self.params.primary_key;
        match work {
            Work::Stats { node } => (
                node.clone(),
                Method::Get,
                format!("/indexes/{}/stats", self.src.index),
                None,
            ),
            Work::GetSettings { node } => (
                node.clone(),
                Method::Get,
                format!("/indexes/{}/settings", self.src.index),
                None,
            ),
            Work::CreateIndex { node } => (
                node.clone(),
                Method::Post,
                "/indexes".into(),
                Some(json!({"uid": self.dst.index, "primaryKey": pk})),
            ),
            Work::PatchSettings { node } => (
                node.clone(),
                Method::Patch,
                format!("/indexes/{}/settings", self.dst.index),
                self.settings.clone(),
            ),
            Work::Fetch {
                node,
                which,
                shard,
                offset,
                ..
            } => {
                let filter = shard.map(|s| format!("{SHARD_FIELD} = {s}"));
                with(
                    node,
                    docsync::fetch_page(
                        self.index(*which),
                        filter.as_deref(),
                        *offset,
                        self.params.page_size,
                    ),
                )
            }
            Work::Write { node, docs } => {
                with(node, docsync::write_docs(&self.dst.index, pk, docs))
            }
            Work::Delete { node, ids } => with(node, docsync::delete_ids(&self.dst.index, ids)),
            Work::Barrier { node, which } => with(node, docsync::barrier(self.index(*which))),
            Work::DropIndex { node, which } => (
                node.clone(),
                Method::Delete,
                format!("/indexes/{}", self.index(*which)),
                None,
            ),
            Work::AwaitTask { node, uid, .. } => with(node, docsync::get_task(*uid)),
        }
    }

    /// The live source for shard `s` of `src`, rotated by failures.
    fn source_for(&self, s: ShardId) -> Option<NodeId> {
        let owners = self.src_p.write_targets(s);
        if owners.is_empty() {
            return None;
        }
        owners.get(self.source_idx % owners.len()).cloned()
    }

    /// A live document as the shadow must hold it: tagged with its shard under the new S.
    fn retag(&self, id: &str, mut doc: Document) -> (ShardId, Document) {
        let s = shard_for_key(id, self.dst.shards);
        doc.insert(SHARD_FIELD.to_string(), Value::from(s));
        (s, doc)
    }

    /// Takes in an answer; `Err` means the request failed in substance.
    fn absorb(&mut self, work: Work, body: &Value, now: Millis) -> Result<(), ()> {
        let task_uid = || docsync::task_uid(body).ok_or(());
        match work {
            Work::Stats { .. } => {}
            Work::GetSettings { .. } => {
                if !body.is_object() {
                    return Err(());
                }
                self.settings = Some(body.clone());
            }
            Work::CreateIndex { node } | Work::DropIndex { node, .. } => {
                let uid = task_uid()?;
                self.queue.push_front(Work::AwaitTask {
                    node,
                    uid,
                    tolerate_failure: true,
                });
            }
            Work::PatchSettings { node }
            | Work::Write { node, .. }
            | Work::Delete { node, .. }
            | Work::Barrier { node, .. } => {
                let uid = task_uid()?;
                self.queue.push_front(Work::AwaitTask {
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
                    self.queue.push_front(Work::AwaitTask {
                        node,
                        uid,
                        tolerate_failure,
                    });
                    self.not_before = now.saturating_add(TASK_POLL_MS);
                }
                _ => return Err(()),
            },
            Work::Fetch {
                node,
                which,
                shard,
                offset,
                scan,
            } => {
                let docs = docsync::parse_page(body, &self.params.primary_key).ok_or(())?;
                let n = docs.len();
                let more = docsync::has_more(n, self.params.page_size);
                let next = Work::Fetch {
                    node: node.clone(),
                    which,
                    shard,
                    offset: offset + n,
                    scan,
                };
                match scan {
                    Scan::Copy => {
                        self.copy_offset = offset + n;
                        self.docs_copied += n as u64;
                        if !more {
                            self.copy_shard += 1;
                            self.copy_offset = 0;
                            self.progress_unsaved = true;
                        }
                        let mut per_node: BTreeMap<NodeId, Vec<Document>> = BTreeMap::new();
                        for (id, doc) in docs {
                            let (s, doc) = self.retag(&id, doc);
                            for o in self.dst_p.write_targets(s) {
                                per_node.entry(o).or_default().push(doc.clone());
                            }
                        }
                        for (node, docs) in per_node.into_iter().rev() {
                            self.queue.push_front(Work::Write { node, docs });
                        }
                        // the throttle delays the next page, never this page's writes
                        if let Some(at) =
                            docsync::throttle_next(now, n, self.params.docs_per_second)
                        {
                            self.copy_next_at = at;
                        }
                    }
                    Scan::Live(s) => {
                        for (id, doc) in docs {
                            let (_, doc) = self.retag(&id, doc);
                            self.expect.insert(id, (docsync::fingerprint(&doc), doc));
                        }
                        if more {
                            self.queue.push_front(next);
                        } else if s + 1 < self.src.shards {
                            let src = self.source_for(s + 1).ok_or(())?;
                            self.queue.push_front(Work::Fetch {
                                node: src,
                                which: Which::Src,
                                shard: Some(s + 1),
                                offset: 0,
                                scan: Scan::Live(s + 1),
                            });
                        } else {
                            self.actual.clear();
                            if let Some(first) = self.nodes.first().cloned() {
                                self.queue.push_front(Work::Fetch {
                                    node: first,
                                    which: Which::Dst,
                                    shard: None,
                                    offset: 0,
                                    scan: Scan::Shadow(0),
                                });
                            }
                        }
                    }
                    Scan::Shadow(i) => {
                        for (id, doc) in docs {
                            self.actual.insert(id, docsync::fingerprint(&doc));
                        }
                        if more {
                            self.queue.push_front(next);
                        } else {
                            let actual = std::mem::take(&mut self.actual);
                            let held: BTreeSet<ShardId> =
                                self.dst_p.shards_held_by(&node).into_iter().collect();
                            let shards = self.dst.shards;
                            let expected: BTreeMap<String, (u64, Document)> = self
                                .expect
                                .iter()
                                .filter(|(id, _)| held.contains(&shard_for_key(id, shards)))
                                .map(|(id, v)| (id.clone(), v.clone()))
                                .collect();
                            let (missing, extra) = docsync::diff(&expected, &actual);
                            // the next node's scan goes after this node's repairs
                            if let Some(next_node) = self.nodes.get(i + 1).cloned() {
                                self.queue.push_front(Work::Fetch {
                                    node: next_node,
                                    which: Which::Dst,
                                    shard: None,
                                    offset: 0,
                                    scan: Scan::Shadow(i + 1),
                                });
                            }
                            if !extra.is_empty() {
                                self.dirty = true;
                                self.queue.push_front(Work::Delete {
                                    node: node.clone(),
                                    ids: extra,
                                });
                            }
                            if !missing.is_empty() {
                                self.dirty = true;
                                self.queue.push_front(Work::Write {
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

    // ----- the machine -----

    fn pump(&mut self, now: Millis) {
        self.now = self.now.max(now);
        while self.awaiting_persist.is_none() && self.step(now) {}
    }

    fn send(&mut self, work: Work) {
        let id = self.next_request;
        self.next_request += 1;
        let (node, method, path, body) = self.request_for(&work);
        self.waiting = Some((id, work));
        self.outbox.push_back(Action::Send(NodeRequest {
            id,
            node,
            method,
            path,
            body,
        }));
    }

    fn enter_fence(&mut self, now: Millis) {
        self.phase = Phase::Fence;
        self.fence_stage = FenceStage::Draining;
        self.fence_deadline = now.saturating_add(self.params.fence_timeout_ms);
        self.fenced = true;
    }

    fn enter_swap(&mut self, now: Millis) {
        self.phase = Phase::Swap;
        self.retain_until = now.saturating_add(self.params.retention_ms);
        self.persist();
    }

    fn start_pass(&mut self) -> bool {
        self.pass_running = true;
        self.dirty = false;
        self.expect.clear();
        self.actual.clear();
        match self.source_for(0) {
            Some(src) => {
                self.queue.push_back(Work::Fetch {
                    node: src,
                    which: Which::Src,
                    shard: Some(0),
                    offset: 0,
                    scan: Scan::Live(0),
                });
                true
            }
            None => false,
        }
    }

    /// One step; whether anything changed.
    fn step(&mut self, now: Millis) -> bool {
        // a fence that overstays is lifted (even while a request is out: its answer is then ignored)
        if self.fenced && self.phase == Phase::Fence && now >= self.fence_deadline {
            self.reset_stage();
            self.fenced = false;
            self.phase = Phase::Verify;
            self.passes = 0;
            self.failures += 1;
            return true;
        }
        if self.waiting.is_some()
            || self.orphan.is_some()
            || now < self.not_before
            || self.phase.is_final()
        {
            return false;
        }
        if let Some(work) = self.queue.pop_front() {
            self.send(work);
            return true;
        }
        // the queue is empty: the current stage is over
        match self.phase {
            Phase::CreateShadow => {
                if !self.started {
                    self.started = true;
                    let Some(node) = self
                        .nodes
                        .get(self.source_idx % self.nodes.len().max(1))
                        .cloned()
                    else {
                        return false;
                    };
                    for n in self.nodes.clone() {
                        self.queue.push_back(Work::Stats { node: n });
                    }
                    self.queue.push_back(Work::GetSettings { node });
                    return true;
                }
                if self.settings.is_none() {
                    self.started = false;
                    return true;
                }
                if !self.prepared {
                    self.prepared = true;
                    for n in self.nodes.clone() {
                        self.queue.push_back(Work::CreateIndex { node: n.clone() });
                        self.queue.push_back(Work::PatchSettings { node: n });
                    }
                    return true;
                }
                self.phase = Phase::Backfill;
                self.copy_offset = 0;
                self.persist();
                true
            }
            Phase::Backfill => {
                if self.progress_unsaved {
                    self.progress_unsaved = false;
                    self.persist();
                    return true;
                }
                if self.copy_shard >= self.src.shards {
                    self.passes = 0;
                    self.pass_running = false;
                    if self.params.planted == PlantedBug::SwapBeforeVerify {
                        self.enter_swap(now);
                    } else {
                        self.phase = Phase::Verify;
                    }
                    return true;
                }
                if now < self.copy_next_at {
                    self.not_before = self.copy_next_at;
                    return false;
                }
                let Some(src) = self.source_for(self.copy_shard) else {
                    return false;
                };
                self.queue.push_back(Work::Fetch {
                    node: src,
                    which: Which::Src,
                    shard: Some(self.copy_shard),
                    offset: self.copy_offset,
                    scan: Scan::Copy,
                });
                true
            }
            Phase::Verify => {
                if self.pass_running {
                    self.pass_running = false;
                    self.passes += 1;
                    self.total_passes += 1;
                    if !self.dirty || self.passes >= self.params.max_verify_passes.max(1) {
                        self.enter_fence(now);
                        return true;
                    }
                }
                self.start_pass()
            }
            Phase::Fence => match self.fence_stage {
                FenceStage::Draining => {
                    if self.in_flight > 0 {
                        return false;
                    }
                    self.fence_stage = FenceStage::Barriers;
                    for n in self.nodes.clone() {
                        self.queue.push_back(Work::Barrier {
                            node: n.clone(),
                            which: Which::Src,
                        });
                        self.queue.push_back(Work::Barrier {
                            node: n,
                            which: Which::Dst,
                        });
                    }
                    true
                }
                FenceStage::Barriers => {
                    self.fence_stage = FenceStage::Verify;
                    self.start_pass()
                }
                FenceStage::Verify => {
                    self.pass_running = false;
                    self.total_passes += 1;
                    if self.dirty {
                        return self.start_pass();
                    }
                    self.enter_swap(now);
                    true
                }
            },
            Phase::Swap => {
                if !self.swapped {
                    return false;
                }
                if self.rollback {
                    self.phase = Phase::Cleanup;
                    self.started = false;
                    self.persist();
                } else {
                    self.phase = Phase::Retain;
                }
                true
            }
            Phase::Retain => {
                if now < self.retain_until {
                    self.not_before = self.retain_until;
                    return false;
                }
                self.phase = Phase::Cleanup;
                self.started = false;
                self.persist();
                true
            }
            Phase::Cleanup | Phase::Aborting => {
                if !self.started {
                    // writes that may still reach the index to delete drain first
                    if self.in_flight > 0 {
                        return false;
                    }
                    self.started = true;
                    let which = if self.phase == Phase::Cleanup {
                        Which::Src
                    } else {
                        Which::Dst
                    };
                    for n in self.nodes.clone() {
                        self.queue.push_back(Work::DropIndex { node: n, which });
                    }
                    return true;
                }
                self.phase = if self.phase == Phase::Cleanup {
                    Phase::Done
                } else {
                    Phase::Aborted
                };
                self.persist();
                true
            }
            Phase::Done | Phase::Aborted => false,
        }
    }
}

fn phase_name(p: Phase) -> String {
    serde_json::to_value(p)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quorum::WriteDecision;
    use crate::routing::canonical_id;
    use crate::topology::Node;

    fn topo(nodes: usize, rf: u32, groups: u32, shards: u32) -> Topology {
        Topology {
            epoch: 1,
            shards,
            replication_factor: rf,
            replica_groups: groups,
            nodes: (0..nodes)
                .map(|i| Node::active(format!("n{i}"), format!("http://n{i}"), i as u32 % groups))
                .collect(),
        }
    }

    fn task() -> WriteTask {
        WriteTask {
            uid: 1,
            index_uid: Some("docs".into()),
            task_type: crate::tasks::TaskType::DocumentAdditionOrUpdate,
            details: None,
            enqueued_at: 0,
        }
    }

    #[derive(Default, Clone, Debug)]
    struct FakeIndex {
        settings: Value,
        docs: BTreeMap<String, Document>,
    }

    /// A tiny in-memory Meilisearch with several indexes; tasks are applied at once unless `manual`.
    #[derive(Default, Clone, Debug)]
    struct FakeNode {
        indexes: BTreeMap<String, FakeIndex>,
        /// (index, kind, payload, status: None = enqueued, Some(ok))
        tasks: Vec<(String, String, Option<Value>, Option<bool>)>,
        down: bool,
        manual: bool,
    }

    impl FakeNode {
        fn enqueue(&mut self, index: &str, kind: &str, payload: Option<Value>) -> Value {
            self.tasks
                .push((index.to_string(), kind.to_string(), payload, None));
            if !self.manual {
                self.process();
            }
            json!({"taskUid": self.tasks.len() - 1})
        }

        fn process(&mut self) {
            for i in 0..self.tasks.len() {
                if self.tasks[i].3.is_some() {
                    continue;
                }
                let (index, kind, payload, _) = self.tasks[i].clone();
                let ok = match kind.as_str() {
                    "create" => self
                        .indexes
                        .insert(index.clone(), FakeIndex::default())
                        .is_none(),
                    "drop" => self.indexes.remove(&index).is_some(),
                    "settings" => match self.indexes.get_mut(&index) {
                        Some(ix) => {
                            ix.settings = payload.unwrap_or(Value::Null);
                            true
                        }
                        None => false,
                    },
                    "add" | "update" => {
                        let ix = self.indexes.entry(index.clone()).or_default();
                        for d in payload.unwrap().as_array().unwrap() {
                            let d = d.as_object().unwrap().clone();
                            let id = canonical_id(&d["id"]).unwrap();
                            if kind == "update" {
                                let cur = ix.docs.entry(id).or_default();
                                for (k, v) in d {
                                    cur.insert(k, v);
                                }
                            } else {
                                ix.docs.insert(id, d);
                            }
                        }
                        true
                    }
                    "del" => match self.indexes.get_mut(&index) {
                        Some(ix) => {
                            for id in payload.unwrap().as_array().unwrap() {
                                ix.docs.remove(id.as_str().unwrap());
                            }
                            true
                        }
                        None => false,
                    },
                    _ => false,
                };
                self.tasks[i].3 = Some(ok);
            }
        }

        fn handle(&mut self, r: &NodeRequest) -> Option<(u16, Value)> {
            if self.down {
                return None;
            }
            let body = r.body.clone();
            let segs: Vec<&str> = r.path.split(['/', '?']).filter(|s| !s.is_empty()).collect();
            let out = match (r.method, segs.as_slice()) {
                (Method::Get, ["indexes", i, "settings"]) => match self.indexes.get(*i) {
                    Some(ix) => ix.settings.clone(),
                    None => return Some((404, json!({"code": "index_not_found"}))),
                },
                (Method::Get, ["indexes", i, "stats"]) => match self.indexes.get(*i) {
                    Some(ix) => json!({"numberOfDocuments": ix.docs.len()}),
                    None => return Some((404, json!({"code": "index_not_found"}))),
                },
                (Method::Patch, ["indexes", i, "settings"]) => self.enqueue(i, "settings", body),
                (Method::Post, ["indexes"]) => {
                    let uid = body.unwrap()["uid"].as_str().unwrap().to_string();
                    self.enqueue(&uid, "create", None)
                }
                (Method::Delete, ["indexes", i]) => self.enqueue(i, "drop", None),
                (Method::Post, ["indexes", i, "documents", "fetch"]) => {
                    let Some(ix) = self.indexes.get(*i) else {
                        return Some((404, json!({"code": "index_not_found"})));
                    };
                    let b = body.unwrap();
                    let shard: Option<u64> = b
                        .get("filter")
                        .and_then(Value::as_str)
                        .map(|f| f.rsplit(' ').next().unwrap().parse().unwrap());
                    let (o, l) = (
                        b["offset"].as_u64().unwrap() as usize,
                        b["limit"].as_u64().unwrap() as usize,
                    );
                    let res: Vec<Value> = ix
                        .docs
                        .values()
                        .filter(|d| shard.is_none_or(|s| d[SHARD_FIELD] == json!(s)))
                        .skip(o)
                        .take(l)
                        .cloned()
                        .map(Value::Object)
                        .collect();
                    json!({"results": res})
                }
                (Method::Post, ["indexes", i, "documents", "delete-batch"]) => {
                    self.enqueue(i, "del", body)
                }
                (Method::Post, ["indexes", i, "documents", _]) => self.enqueue(i, "add", body),
                (Method::Put, ["indexes", i, "documents", _]) => self.enqueue(i, "update", body),
                (Method::Get, ["tasks", uid]) => {
                    let uid: usize = uid.parse().unwrap();
                    match self.tasks.get(uid).map(|t| t.3) {
                        Some(Some(true)) => json!({"status": "succeeded"}),
                        Some(Some(false)) => json!({"status": "failed"}),
                        Some(None) => json!({"status": "enqueued"}),
                        None => return Some((404, json!({"code": "task_not_found"}))),
                    }
                }
                _ => return Some((404, json!({}))),
            };
            let status = if r.method == Method::Get || r.path.ends_with("/fetch") {
                200
            } else {
                202
            };
            Some((status, out))
        }

        fn docs(&self, index: &str) -> BTreeMap<String, Document> {
            self.indexes
                .get(index)
                .map(|i| i.docs.clone())
                .unwrap_or_default()
        }
    }

    struct Harness {
        m: Reshard,
        nodes: BTreeMap<NodeId, FakeNode>,
        now: Millis,
        persisted: Vec<Value>,
        persist_ack: bool,
        sent: Vec<NodeRequest>,
        /// The acknowledged state every read must show.
        truth: BTreeMap<String, u64>,
    }

    fn params(t: Topology, new_shards: u32) -> ReshardParams {
        let mut p = ReshardParams::new("docs", "id", t, new_shards);
        p.page_size = 3;
        p.docs_per_second = 0;
        p.retention_ms = 1_000;
        p
    }

    impl Harness {
        /// A fleet holding `docs` (value 0) in the live index `docs` placed with the topology's S.
        fn new(p: ReshardParams, docs: u64) -> Harness {
            let live_p = Placement::new(&p.topology).unwrap();
            let mut nodes: BTreeMap<NodeId, FakeNode> = p
                .topology
                .nodes
                .iter()
                .map(|n| (n.id.clone(), FakeNode::default()))
                .collect();
            for node in nodes.values_mut() {
                node.indexes.insert(
                    "docs".into(),
                    FakeIndex {
                        settings: json!({"filterableAttributes": ["_miroir_shard"]}),
                        docs: BTreeMap::new(),
                    },
                );
            }
            let mut truth = BTreeMap::new();
            for id in 0..docs {
                let key = id.to_string();
                let s = shard_for_key(&key, live_p.shards());
                for o in live_p.write_targets(s) {
                    let d = json!({"id": id, "v": 0, SHARD_FIELD: s})
                        .as_object()
                        .unwrap()
                        .clone();
                    nodes
                        .get_mut(&o)
                        .unwrap()
                        .indexes
                        .get_mut("docs")
                        .unwrap()
                        .docs
                        .insert(key.clone(), d);
                }
                truth.insert(key, 0);
            }
            Harness {
                m: Reshard::start(p).unwrap(),
                nodes,
                now: 1_000,
                persisted: Vec::new(),
                persist_ack: true,
                sent: Vec::new(),
                truth,
            }
        }

        /// One action (or a clock advance when there is none); false once finished.
        fn tick(&mut self) -> bool {
            match self.m.poll_action() {
                Some(Action::Send(r)) => {
                    self.sent.push(r.clone());
                    let node = self.nodes.get_mut(&r.node).unwrap();
                    match node.handle(&r) {
                        Some((st, b)) => self.m.on_response(r.id, st, &b, self.now),
                        None => self.m.on_failure(r.id, self.now),
                    }
                    true
                }
                Some(Action::Persist { seq, record }) => {
                    self.persisted.push(record);
                    if self.persist_ack {
                        self.m.on_persisted(seq, self.now);
                    }
                    true
                }
                None if self.m.is_finished() => false,
                None => {
                    self.now = self
                        .m
                        .poll_timeout()
                        .unwrap_or(self.now + 10)
                        .max(self.now + 1);
                    self.m.handle_timeout(self.now);
                    true
                }
            }
        }

        fn run(&mut self, steps: usize) {
            for _ in 0..steps {
                if !self.tick() {
                    return;
                }
            }
        }

        fn run_until(&mut self, steps: usize, stop: impl Fn(&Reshard) -> bool) {
            for _ in 0..steps {
                if stop(&self.m) || !self.tick() {
                    return;
                }
            }
        }

        /// A client write through the coordinator, nodes applying at once; whether it was acknowledged
        /// (`None` while fenced).
        fn client(&mut self, intent: WriteIntent) -> Option<bool> {
            let w = self
                .m
                .try_write(intent, task(), WriteQuorum::All, self.now + 100)
                .unwrap()?;
            let ReshardWrite {
                mut live,
                secondary,
                ticket,
            } = w;
            for r in live.requests().to_vec() {
                match self.nodes.get_mut(&r.node).unwrap().handle(&r) {
                    Some((st, b)) => live.on_response(r.id, st, &b),
                    None => live.on_failure(r.id),
                }
            }
            for r in &secondary {
                let _ = self.nodes.get_mut(&r.node).unwrap().handle(r);
            }
            self.m.write_finished(ticket, self.now);
            Some(matches!(
                live.decision(),
                Some(WriteDecision::Acknowledged { .. })
            ))
        }

        fn put(&mut self, id: u64, v: u64) -> Option<bool> {
            let doc = json!({"id": id, "v": v}).as_object().unwrap().clone();
            let acked = self.client(WriteIntent::Documents {
                docs: vec![doc],
                replace: true,
            })?;
            if acked {
                self.truth.insert(id.to_string(), v);
            }
            Some(acked)
        }

        fn delete(&mut self, id: u64) -> Option<bool> {
            let acked = self.client(WriteIntent::DeleteIds(vec![json!(id.to_string())]))?;
            if acked {
                self.truth.remove(&id.to_string());
            }
            Some(acked)
        }

        /// Every node holds exactly its share of the truth in the live index, tagged with its shard, and no
        /// other index but the live one.
        fn check_final(&self) {
            let (index, p) = self.m.read_target();
            for (id, node) in &self.nodes {
                let names: Vec<&String> = node.indexes.keys().collect();
                assert_eq!(names, vec![index], "indexes left on {id}");
                let held: BTreeSet<ShardId> = p.shards_held_by(id).into_iter().collect();
                let docs = node.docs(index);
                for (doc_id, v) in &self.truth {
                    let s = shard_for_key(doc_id, p.shards());
                    if held.contains(&s) {
                        let d = docs
                            .get(doc_id)
                            .unwrap_or_else(|| panic!("{doc_id} missing on {id}"));
                        assert_eq!(d["v"].as_u64(), Some(*v), "{doc_id} on {id}");
                        assert_eq!(d[SHARD_FIELD], json!(s), "{doc_id} tag on {id}");
                    }
                }
                for doc_id in docs.keys() {
                    let s = shard_for_key(doc_id, p.shards());
                    assert!(held.contains(&s), "{doc_id} stray on {id}");
                    assert!(
                        self.truth.contains_key(doc_id),
                        "{doc_id} resurrected on {id}"
                    );
                }
            }
        }
    }

    fn phases(h: &Harness) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for r in &h.persisted {
            let p = r["phase"].as_str().unwrap().to_string();
            if out.last() != Some(&p) {
                out.push(p);
            }
        }
        out
    }

    #[test]
    fn reshard_4_to_16_copies_rehashes_swaps_and_cleans_up() {
        let mut h = Harness::new(params(topo(3, 2, 1, 4), 16), 60);
        assert_eq!(h.m.read_target().0, "docs");
        h.run(50_000);
        assert_eq!(h.m.phase(), Phase::Done);
        assert_eq!(h.m.live().index, "docs__miroir_reshard_1");
        assert_eq!(h.m.read_target().1.shards(), 16);
        h.check_final();
        assert_eq!(
            phases(&h),
            vec!["create_shadow", "backfill", "swap", "cleanup", "done"]
        );
        assert_eq!(h.m.status().docs_copied, 60);
        assert_eq!(h.m.status().docs_total, Some(60));
        // the shadow got the live index's settings
        let n0 = &h.nodes[&NodeId::from("n0")];
        assert_eq!(
            n0.indexes["docs__miroir_reshard_1"].settings,
            json!({"filterableAttributes": ["_miroir_shard"]})
        );
    }

    #[test]
    fn reshard_16_to_8_with_two_groups() {
        let mut h = Harness::new(params(topo(4, 1, 2, 16), 8), 50);
        h.run(50_000);
        assert_eq!(h.m.phase(), Phase::Done);
        assert_eq!(h.m.read_target().1.shards(), 8);
        h.check_final();
    }

    #[test]
    fn writes_go_to_live_and_shadow_with_their_own_s_and_ack_on_live() {
        let mut h = Harness::new(params(topo(3, 1, 1, 2), 6), 10);
        // before the backfill: live only
        let w =
            h.m.try_write(
                WriteIntent::DeleteIds(vec![json!("1")]),
                task(),
                WriteQuorum::All,
                0,
            )
            .unwrap()
            .unwrap();
        assert!(w.secondary.is_empty());
        h.m.write_finished(w.ticket, h.now);
        h.run_until(10_000, |m| m.phase() == Phase::Backfill);
        let doc = json!({"id": 7, "v": 1}).as_object().unwrap().clone();
        let w =
            h.m.try_write(
                WriteIntent::Documents {
                    docs: vec![doc],
                    replace: false,
                },
                task(),
                WriteQuorum::All,
                0,
            )
            .unwrap()
            .unwrap();
        let live_n = w.live.requests().len();
        assert!(w
            .live
            .requests()
            .iter()
            .all(|r| r.path.starts_with("/indexes/docs/documents")));
        assert_eq!(w.secondary.len(), 1);
        let r = &w.secondary[0];
        assert_eq!(r.id, live_n, "secondary ids follow the live ones");
        assert_eq!(r.method, Method::Put);
        assert!(r
            .path
            .starts_with("/indexes/docs__miroir_reshard_1/documents?"));
        let s6 = shard_for_key("7", 6);
        assert_eq!(r.body.as_ref().unwrap()[0][SHARD_FIELD], json!(s6));
        let p6 = h.m.dst_p.clone();
        assert_eq!(vec![r.node.clone()], p6.write_targets(s6));
        // the acknowledgement is judged on the live owners only
        let live_owners = h.m.src_p.write_targets(shard_for_key("7", 2));
        assert_eq!(
            w.live
                .requests()
                .iter()
                .map(|r| r.node.clone())
                .collect::<Vec<_>>(),
            live_owners
        );
        h.m.write_finished(w.ticket, h.now);
        // broadcasts reach every node of both indexes
        let w =
            h.m.try_write(
                WriteIntent::IndexBroadcast {
                    method: Method::Post,
                    suffix: "/documents/delete".into(),
                    body: Some(json!({"filter": "genre = x"})),
                },
                task(),
                WriteQuorum::All,
                0,
            )
            .unwrap()
            .unwrap();
        assert!(w
            .secondary
            .iter()
            .all(|r| r.path == "/indexes/docs__miroir_reshard_1/documents/delete"));
        assert!(!w.secondary.is_empty());
        h.m.write_finished(w.ticket, h.now);
        // invalid documents are refused like any write
        let bad = json!({"v": 1}).as_object().unwrap().clone();
        let err =
            h.m.try_write(
                WriteIntent::Documents {
                    docs: vec![bad],
                    replace: true,
                },
                task(),
                WriteQuorum::All,
                0,
            )
            .unwrap_err();
        assert_eq!(err.code, "missing_document_id");
    }

    #[test]
    fn concurrent_writes_updates_and_deletes_are_never_lost_or_resurrected() {
        let mut p = params(topo(3, 2, 1, 4), 7);
        p.docs_per_second = 50;
        let mut h = Harness::new(p, 40);
        let mut i = 0u64;
        let mut steps = 0u64;
        while !h.m.is_finished() && steps < 100_000 {
            steps += 1;
            h.tick();
            if steps.is_multiple_of(7) {
                i += 1;
                let id = (i * 13) % 50;
                let _ = if i.is_multiple_of(3) {
                    h.delete(id)
                } else {
                    h.put(id, i)
                };
            }
        }
        assert_eq!(h.m.phase(), Phase::Done);
        assert!(i > 20, "writes ran throughout ({i})");
        h.check_final();
    }

    #[test]
    fn fence_holds_writes_and_waits_for_in_flight_ones() {
        let mut h = Harness::new(params(topo(2, 1, 1, 2), 4), 10);
        h.run_until(10_000, |m| m.phase() == Phase::Verify);
        // a write admitted before the fence is still running
        let w =
            h.m.try_write(
                WriteIntent::DeleteIds(vec![json!("3")]),
                task(),
                WriteQuorum::All,
                0,
            )
            .unwrap()
            .unwrap();
        h.run_until(10_000, |m| m.phase() == Phase::Fence);
        assert!(h.m.is_fenced());
        assert!(h
            .m
            .try_write(
                WriteIntent::DeleteIds(vec![json!("4")]),
                task(),
                WriteQuorum::All,
                0
            )
            .unwrap()
            .is_none());
        // without the clock moving (the fence would time out), nothing more is sent
        while let Some(a) = h.m.poll_action() {
            assert!(
                !matches!(&a, Action::Send(r) if r.body == Some(json!([]))),
                "no barrier while a write is in flight"
            );
            if let Action::Send(r) = a {
                let (st, b) = h.nodes.get_mut(&r.node).unwrap().handle(&r).unwrap();
                h.m.on_response(r.id, st, &b, h.now);
            }
        }
        h.m.handle_timeout(h.now);
        assert!(h.m.poll_action().is_none());
        assert_eq!(h.m.phase(), Phase::Fence);
        // the write lands (on both indexes) and finishes: barriers, verify, swap
        let ReshardWrite {
            live,
            secondary,
            ticket,
        } = w;
        for r in live.requests().iter().chain(&secondary) {
            let _ = h.nodes.get_mut(&r.node).unwrap().handle(r);
        }
        h.truth.remove("3");
        h.m.write_finished(ticket, h.now);
        h.run(50_000);
        assert_eq!(h.m.phase(), Phase::Done);
        let barriers = h.sent.iter().filter(|r| r.body == Some(json!([]))).count();
        assert_eq!(barriers, 4, "one barrier per node and index");
        h.check_final();
    }

    /// Damage the shadow after the backfill (a stale document, a resurrected one, a missing one); returns
    /// what the truth is.
    fn damage_shadow(h: &mut Harness) {
        let shadow = "docs__miroir_reshard_1";
        let p = h.m.dst_p.clone();
        // a document deleted on the live index while its copy was in flight: still in the shadow
        let gone = "5".to_string();
        for n in h.nodes.values_mut() {
            n.indexes.get_mut("docs").unwrap().docs.remove(&gone);
        }
        h.truth.remove(&gone);
        for (id, n) in h.nodes.iter_mut() {
            let held: BTreeSet<ShardId> = p.shards_held_by(id).into_iter().collect();
            let ix = n.indexes.get_mut(shadow).unwrap();
            for key in ["1", "2", "5"] {
                let s = shard_for_key(key, p.shards());
                if !held.contains(&s) {
                    continue;
                }
                let doc = json!({"id": key.parse::<u64>().unwrap(), "v": 99, SHARD_FIELD: s})
                    .as_object()
                    .unwrap()
                    .clone();
                match key {
                    "1" => {
                        ix.docs.insert(key.into(), doc);
                    }
                    "2" => {
                        ix.docs.remove(key);
                    }
                    _ => {
                        ix.docs.insert(key.into(), doc);
                    }
                }
            }
        }
    }

    #[test]
    fn verify_repairs_stale_missing_and_resurrected_documents() {
        let mut h = Harness::new(params(topo(3, 2, 1, 4), 8), 20);
        h.run_until(50_000, |m| m.phase() == Phase::Verify);
        damage_shadow(&mut h);
        h.run(50_000);
        assert_eq!(h.m.phase(), Phase::Done);
        h.check_final();
        assert!(h.m.status().verify_passes >= 2);
    }

    #[test]
    fn planted_swap_before_verify_keeps_the_damage() {
        let mut p = params(topo(3, 2, 1, 4), 8);
        p.planted = PlantedBug::SwapBeforeVerify;
        let mut h = Harness::new(p, 20);
        // the backfill's last step swaps at once: damage the shadow just before
        h.run_until(50_000, |m| {
            m.phase() == Phase::Backfill && m.copy_shard >= m.src.shards
        });
        damage_shadow(&mut h);
        h.run(50_000);
        assert_eq!(h.m.phase(), Phase::Done);
        assert!(
            !h.sent.iter().any(|r| r.body == Some(json!([]))),
            "no fence"
        );
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| h.check_final()));
        assert!(caught.is_err(), "the damage survived the swap");
    }

    #[test]
    fn abort_during_backfill_removes_the_shadow_and_changes_nothing() {
        let mut p = params(topo(3, 2, 1, 4), 8);
        p.docs_per_second = 20;
        let mut h = Harness::new(p, 30);
        h.run_until(50_000, |m| {
            m.phase() == Phase::Backfill && m.docs_copied > 5
        });
        let before: BTreeMap<NodeId, BTreeMap<String, Document>> = h
            .nodes
            .iter()
            .map(|(id, n)| (id.clone(), n.docs("docs")))
            .collect();
        // a write admitted before the abort still runs; the shadow waits for it
        let w =
            h.m.try_write(
                WriteIntent::DeleteIds(vec![json!("100")]),
                task(),
                WriteQuorum::All,
                0,
            )
            .unwrap()
            .unwrap();
        h.m.abort(h.now).unwrap();
        assert_eq!(h.m.phase(), Phase::Aborting);
        assert!(h.m.secondary().is_none());
        h.run(500);
        assert!(
            !h.sent.iter().any(|r| r.method == Method::Delete),
            "no shadow deletion while a write may still reach it"
        );
        h.m.write_finished(w.ticket, h.now);
        h.run(50_000);
        assert_eq!(h.m.phase(), Phase::Aborted);
        assert_eq!(h.m.read_target().0, "docs");
        for (id, n) in &h.nodes {
            assert_eq!(n.indexes.keys().collect::<Vec<_>>(), vec!["docs"], "{id}");
            assert_eq!(n.docs("docs"), before[id]);
        }
        assert_eq!(h.persisted.last().unwrap()["phase"], "aborted");
        assert!(h.m.abort(h.now).is_ok(), "aborting twice is harmless");
        assert!(h.m.rollback(h.now).is_err());
    }

    #[test]
    fn abort_waits_for_the_request_on_its_way_before_deleting_the_shadow() {
        let mut h = Harness::new(params(topo(2, 1, 1, 2), 4), 12);
        h.run_until(50_000, |m| {
            m.phase() == Phase::Backfill && m.docs_copied > 0
        });
        // run until a copy write is out, unanswered
        let out = loop {
            match h.m.poll_action() {
                Some(Action::Send(r)) if r.path.contains("reshard_1/documents?") => break r,
                Some(Action::Send(r)) => {
                    let (st, b) = h.nodes.get_mut(&r.node).unwrap().handle(&r).unwrap();
                    h.m.on_response(r.id, st, &b, h.now);
                }
                Some(Action::Persist { seq, .. }) => h.m.on_persisted(seq, h.now),
                None => {
                    h.now += 100;
                    h.m.handle_timeout(h.now);
                }
            }
        };
        h.m.abort(h.now).unwrap();
        h.run(200);
        assert!(
            !h.sent.iter().any(|r| r.method == Method::Delete),
            "the shadow is not deleted before the copy write on its way is answered"
        );
        assert_eq!(
            h.m.poll_timeout(),
            None,
            "waiting for an answer, not for time"
        );
        // the write lands (recreating nothing after the deletion), then the shadow goes
        let (st, b) = h.nodes.get_mut(&out.node).unwrap().handle(&out).unwrap();
        h.m.on_response(out.id, st, &b, h.now);
        h.run(50_000);
        assert_eq!(h.m.phase(), Phase::Aborted);
        h.check_final();
    }

    #[test]
    fn abort_is_refused_once_the_swap_is_recorded() {
        let mut h = Harness::new(params(topo(2, 1, 1, 2), 4), 6);
        h.persist_ack = true;
        h.run_until(50_000, |m| m.phase() == Phase::Swap);
        let err = h.m.abort(h.now).unwrap_err();
        assert_eq!(err.status, 409);
        h.run_until(50_000, |m| m.phase() == Phase::Retain);
        assert_eq!(h.m.abort(h.now).unwrap_err().status, 409);
    }

    #[test]
    fn the_flip_waits_for_persistence() {
        let mut h = Harness::new(params(topo(2, 1, 1, 2), 4), 6);
        h.run_until(50_000, |m| m.phase() == Phase::Swap);
        // the swap record is out but not acknowledged
        h.persist_ack = false;
        h.run(20);
        assert_eq!(h.m.read_target().0, "docs");
        assert!(h.m.is_fenced());
        let seq = h.m.seq;
        h.m.on_persisted(seq + 7, h.now); // a stale or unknown ack changes nothing
        assert_eq!(h.m.read_target().0, "docs");
        h.m.on_persisted(seq, h.now);
        assert_eq!(h.m.read_target().0, "docs__miroir_reshard_1");
        assert_eq!(h.m.read_target().1.shards(), 4);
        assert!(!h.m.is_fenced());
        h.persist_ack = true;
        h.run(50_000);
        h.check_final();
    }

    #[test]
    fn retained_old_index_keeps_receiving_writes_and_rollback_restores_it() {
        let mut p = params(topo(3, 2, 1, 4), 8);
        p.retention_ms = 1_000_000;
        let mut h = Harness::new(p, 20);
        h.run_until(50_000, |m| m.phase() == Phase::Retain);
        assert_eq!(h.m.poll_timeout(), Some(h.m.retain_until));
        assert_eq!(h.m.secondary().unwrap().index, "docs");
        assert_eq!(h.put(3, 33), Some(true));
        assert_eq!(h.delete(4), Some(true));
        assert_eq!(h.put(25, 1), Some(true));
        h.m.rollback(h.now).unwrap();
        assert!(h.m.rollback(h.now).is_err(), "one rollback at a time");
        assert!(h.m.abort(h.now).is_err());
        // writes keep flowing during the rollback's verify
        h.run(30);
        let _ = h.put(6, 66);
        h.run(50_000);
        assert_eq!(h.m.phase(), Phase::Done);
        assert!(h.m.status().rollback);
        assert_eq!(h.m.read_target().0, "docs");
        assert_eq!(h.m.read_target().1.shards(), 4);
        h.check_final();
    }

    #[test]
    fn a_rollback_resumes_after_a_crash() {
        let mut p = params(topo(3, 2, 1, 4), 8);
        p.retention_ms = 1_000_000;
        let mut h = Harness::new(p.clone(), 20);
        h.run_until(50_000, |m| m.phase() == Phase::Retain);
        assert_eq!(h.put(2, 22), Some(true));
        h.m.rollback(h.now).unwrap();
        h.run(40);
        let record = h.persisted.last().cloned().unwrap();
        assert_eq!(record["rollback"], true);
        h.m = Reshard::resume(&record, p).unwrap();
        assert_eq!(
            h.m.read_target().0,
            "docs__miroir_reshard_1",
            "not flipped back yet"
        );
        assert_eq!(h.put(9, 99), Some(true));
        h.run(50_000);
        assert_eq!(h.m.phase(), Phase::Done);
        assert_eq!(h.m.read_target().0, "docs");
        h.check_final();
    }

    #[test]
    fn retention_then_cleanup_deletes_the_old_index() {
        let mut p = params(topo(2, 1, 1, 3), 5);
        p.retention_ms = 5_000;
        let mut h = Harness::new(p, 10);
        h.run_until(50_000, |m| m.phase() == Phase::Retain);
        let swapped_at = h.now;
        h.run(50_000);
        assert_eq!(h.m.phase(), Phase::Done);
        assert!(h.now >= swapped_at + 4_000, "kept for the retention period");
        h.check_final();
        assert!(h.m.rollback(h.now).is_err());
    }

    #[test]
    fn a_node_down_pauses_the_backfill_until_it_is_back() {
        let mut h = Harness::new(params(topo(3, 1, 1, 4), 8), 30);
        h.run_until(50_000, |m| {
            m.phase() == Phase::Backfill && m.docs_copied > 0
        });
        let n1 = NodeId::from("n1");
        h.nodes.get_mut(&n1).unwrap().down = true;
        h.run(3_000);
        assert!(h.m.status().failures > 0);
        assert!(h.m.phase() <= Phase::Fence, "no swap while a node is down");
        h.nodes.get_mut(&n1).unwrap().down = false;
        h.run(50_000);
        assert_eq!(h.m.phase(), Phase::Done);
        h.check_final();
    }

    #[test]
    fn fence_timeout_lifts_the_fence_and_goes_back_to_verify() {
        let mut p = params(topo(2, 1, 1, 2), 4);
        p.fence_timeout_ms = 100;
        let mut h = Harness::new(p, 6);
        h.run_until(50_000, |m| m.phase() == Phase::Verify);
        // a write admitted before the fence never finishes: the fence times out
        let stuck =
            h.m.try_write(WriteIntent::DeleteIds(vec![]), task(), WriteQuorum::All, 0)
                .unwrap()
                .unwrap();
        h.run_until(50_000, |m| m.phase() == Phase::Fence);
        let w =
            h.m.try_write(WriteIntent::DeleteIds(vec![]), task(), WriteQuorum::All, 0)
                .unwrap();
        assert!(w.is_none(), "fenced");
        assert_eq!(h.m.poll_timeout(), Some(h.m.fence_deadline));
        let failures = h.m.status().failures;
        h.run_until(50_000, |m| m.phase() == Phase::Verify);
        assert_eq!(h.m.phase(), Phase::Verify);
        assert_eq!(h.m.status().failures, failures + 1);
        assert!(!h.m.is_fenced());
        h.m.write_finished(stuck.ticket, h.now);
        h.run(50_000);
        assert_eq!(h.m.phase(), Phase::Done);
        h.check_final();
    }

    #[test]
    fn backfill_is_throttled_and_reports_an_eta() {
        let mut p = params(topo(2, 1, 1, 2), 4);
        p.docs_per_second = 10;
        let mut h = Harness::new(p, 30);
        h.run_until(50_000, |m| {
            m.phase() == Phase::Backfill && m.docs_copied > 0
        });
        let st = h.m.status();
        assert_eq!(st.docs_total, Some(30));
        assert_eq!(st.eta_ms, Some((30 - st.docs_copied) * 100));
        let start = h.now;
        h.run(50_000);
        assert_eq!(h.m.phase(), Phase::Done);
        // 30 documents at 10/s: at least ~2.7 s
        assert!(h.now >= start + 2_500, "took {} ms", h.now - start);
        assert_eq!(h.m.poll_timeout(), None);
    }

    #[test]
    fn dry_run_estimates_copy_storage_and_duration() {
        let mut p = params(topo(4, 2, 2, 4), 8);
        p.docs_per_second = 1_000;
        let e = dry_run(&p, 10_000, 500);
        assert_eq!(e.docs_to_copy, 10_000);
        assert_eq!(e.shadow_copies, 40_000);
        assert_eq!(e.peak_bytes, 40_000 * 500 * 2);
        assert_eq!(e.duration_ms, Some(10_000));
        p.docs_per_second = 0;
        assert_eq!(dry_run(&p, 10, 1).duration_ms, None);
    }

    #[test]
    fn start_rejects_bad_parameters() {
        let t = topo(2, 1, 1, 4);
        assert_eq!(Reshard::start(params(t.clone(), 4)).unwrap_err().code, CODE);
        assert!(Reshard::start(params(t.clone(), 0)).is_err());
        let mut p = params(t.clone(), 8);
        p.live_index = shadow_name("docs", 1);
        assert!(Reshard::start(p).is_err());
        let mut p = params(t.clone(), 8);
        p.index_uid = String::new();
        assert!(Reshard::start(p).is_err());
        let mut bad = t;
        bad.replication_factor = 5; // more than the group's nodes
        assert!(Reshard::start(params(bad, 8)).is_err());
    }

    /// The proxy crashes after any number of steps: a new coordinator resumes from the last persisted record
    /// (the writes in flight die with the proxy) and the result is still exact, with writes throughout.
    #[test]
    fn resume_after_a_crash_at_every_point() {
        let mut crash_at = 1;
        let mut seen_phases = BTreeSet::new();
        loop {
            let mut p = params(topo(3, 2, 1, 3), 5);
            p.retention_ms = 200;
            let mut h = Harness::new(p.clone(), 15);
            for k in 0..crash_at as u64 {
                h.tick();
                if k.is_multiple_of(5) {
                    let _ = h.put(k % 20, k);
                }
            }
            if h.m.is_finished() {
                break;
            }
            let record = h.persisted.last().cloned().unwrap();
            seen_phases.insert(record["phase"].as_str().unwrap().to_string());
            h.m = Reshard::resume(&record, p).unwrap();
            for k in 0..100_000u64 {
                if !h.tick() {
                    break;
                }
                if k.is_multiple_of(9) && k < 400 {
                    let _ = h.delete(k % 20);
                }
            }
            assert_eq!(h.m.phase(), Phase::Done, "crash at {crash_at}");
            h.check_final();
            crash_at += 3;
        }
        for p in ["create_shadow", "backfill", "swap", "cleanup"] {
            assert!(seen_phases.contains(p), "no crash in {p}: {seen_phases:?}");
        }
    }

    #[test]
    fn resume_keeps_the_swap_and_aborts() {
        let p = params(topo(2, 1, 1, 2), 4);
        let mut h = Harness::new(p.clone(), 6);
        h.run_until(50_000, |m| m.phase() == Phase::Retain);
        let r = h.m.record();
        assert_eq!(r["phase"], "retain");
        let m = Reshard::resume(&r, p.clone()).unwrap();
        assert_eq!(m.read_target().0, "docs__miroir_reshard_1");
        assert_eq!(m.phase(), Phase::Retain);
        let mut swap = r.clone();
        swap["phase"] = json!("swap");
        let m = Reshard::resume(&swap, p.clone()).unwrap();
        assert_eq!(m.phase(), Phase::Retain);
        assert_eq!(m.read_target().1.shards(), 4);
        let mut fence = r.clone();
        fence["phase"] = json!("fence");
        let m = Reshard::resume(&fence, p.clone()).unwrap();
        assert_eq!(m.phase(), Phase::Backfill);
        assert_eq!(m.read_target().0, "docs");
        let mut aborting = r.clone();
        aborting["phase"] = json!("aborting");
        let m = Reshard::resume(&aborting, p.clone()).unwrap();
        assert_eq!(m.phase(), Phase::Aborting);
        assert_eq!(m.read_target().0, "docs");
    }

    #[test]
    fn resume_rejects_bad_records() {
        let p = params(topo(2, 1, 1, 2), 4);
        let h = Harness::new(p.clone(), 3);
        let good = h.m.record();
        assert!(Reshard::resume(&good, p.clone()).is_ok());
        assert!(Reshard::resume(&json!({"nope": 1}), p.clone()).is_err());
        let mut v = good.clone();
        v["version"] = json!(2);
        assert!(Reshard::resume(&v, p.clone()).is_err());
        let mut v = good.clone();
        v["indexUid"] = json!("other");
        assert!(Reshard::resume(&v, p.clone()).is_err());
        let mut v = good.clone();
        v["backfillShard"] = json!(99);
        assert!(Reshard::resume(&v, p.clone()).is_err());
        let mut v = good.clone();
        v["dst"]["shards"] = json!(0);
        assert!(Reshard::resume(&v, p.clone()).is_err());
        let mut v = good;
        v["phase"] = json!("exploded");
        assert!(Reshard::resume(&v, p).is_err());
    }

    #[test]
    fn bad_answers_are_failures_not_panics() {
        let answers = [
            (200, json!(null)),
            (202, json!({"taskUid": "x"})),
            (200, json!({"results": [{"noid": 1}]})),
            (200, json!({"results": "x"})),
            (200, json!({"status": "weird"})),
            (500, json!({})),
            (404, json!({})),
        ];
        for (status, body) in answers {
            let mut h = Harness::new(params(topo(2, 1, 1, 2), 4), 6);
            for _ in 0..400 {
                match h.m.poll_action() {
                    Some(Action::Send(r)) => h.m.on_response(r.id, status, &body, h.now),
                    Some(Action::Persist { seq, .. }) => h.m.on_persisted(seq, h.now),
                    None => {
                        h.now += 1_000;
                        h.m.handle_timeout(h.now);
                    }
                }
                // unknown ids are ignored
                h.m.on_response(9_999, 200, &json!({}), h.now);
                h.m.on_failure(9_999, h.now);
            }
            assert!(h.m.phase() <= Phase::Backfill, "{status} {body}");
            assert!(h.m.status().failures > 0 || h.m.phase() == Phase::CreateShadow);
        }
    }
}
