//! The simulated proxy's migration driver: the shell around miroir-core's `migration::Migration`, as the HTTP
//! proxy will run it.
//!
//! A scenario with an [`ElasticSpec`] asks for one fleet change at a given time of the safety phase. The
//! proxy's driver task then plans it (`migration::plan_change`), runs the coordinator's actions (node requests
//! in parallel, records persisted on the proxy's disk before they are acknowledged) and sleeps until the next
//! wake-up. Client writes of the migrated index go through `Migration::try_write` while a migration is live
//! (waiting while their shard is fenced) and through the current placement otherwise; reads use the current
//! read placement. A proxy crash kills the live coordinator with the proxy; the next incarnation resumes it
//! from the persisted record.
//!
//! Starting a migration must not race writes routed without it: while the driver starts one, new writes wait
//! at a gate and the ones already routed by the plain placement drain first.
//!
//! Faults tied to the coordinator's progress ([`ElasticSpec::crash`], [`ElasticSpec::cutover_partition`])
//! fire when a shard first reaches the named phase: the driver notices it right after the step that took
//! the shard there, hands the fault to the fault task ([`progress_faults`]) and waits until it was carried
//! out, so the fault lands exactly at that point of the migration (a crashed proxy never resumes that
//! driver; its next incarnation resumes the migration from the record). Which phases were reached and which
//! faults fired is kept god's-eye ([`Elastic::fired`]) so a sweep can show every phase got its fault.
//!
//! In every elastic run, when a record that newly cuts a shard over is about to be persisted, the driver
//! checks on the nodes' own documents (god's-eye) that each target holds exactly one source's copy of the
//! shard ([`Elastic::incomplete_cutover`], reported by the run as the `cutover` checker).

use super::fleet::{call, run_write, FenceWait, Lanes, ProxyCtx, Replier, INDEX, NODE_TIMEOUT};
use super::net::{now_ms, RpcClient};
use madsim::time;
use miroir_core::migration::{
    self, Action, Change, Migration, MigrationParams, Phase, PlantedBug, WriteIntent,
};
use miroir_core::ops::write::{FanoutWrite, WriteTask};
use miroir_core::ops::{Method, Reply};
use miroir_core::routing::Placement;
use miroir_core::topology::{Node, NodeId, Topology};
use miroir_core::{MeiliError, SHARD_FIELD};
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The fleet change a scenario asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ElasticChange {
    /// One spare host joins group 0.
    AddNode,
    /// Node `i` is drained, then removed.
    DrainRemove(usize),
    /// Node `i` dies for good; its shards are re-replicated from the survivors.
    FailNode(usize),
    /// A new replica group of RF spare hosts.
    AddGroup,
    /// The last replica group goes.
    RemoveGroup,
}

/// What an elastic scenario does.
#[derive(Debug, Clone, Copy)]
pub struct ElasticSpec {
    pub change: ElasticChange,
    /// When, after the safety phase starts, the change is requested.
    pub at_ms: u64,
    /// A bug to plant in the coordinator.
    pub planted: PlantedBug,
    /// Copy throttle.
    pub docs_per_second: u64,
    /// Cut host `i` off from the proxy `after` ms after the request, for `length` ms: `(i, after, length)`.
    pub partition: Option<(usize, u64, u64)>,
    /// A crash of the proxy, of a source or of a target when a shard first reaches a phase.
    pub crash: Option<PhaseCrash>,
    /// A partition between the proxy and a node of a shard when it is fenced or cut over.
    pub cutover_partition: Option<CutoverPartition>,
    /// How many shards migrate at once (0 = the coordinator's default).
    pub max_concurrent: usize,
}

/// The label [`Elastic::fired`] adds when the migration admitted client writes after its fault fired.
pub const WRITES_AFTER_FAULT: &str = "writes after the fault";

/// Who crashes in a [`PhaseCrash`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Victim {
    /// The proxy running the coordinator (restarted after `down_ms`; the next incarnation resumes the
    /// migration from its persisted record).
    Proxy,
    /// An old owner of the shard, by the seed's parity above the phase choice (`seed / 6 % 2`): 0 its first
    /// source (the one its copy and verify passes read from first), 1 a leaving owner (the node giving the
    /// shard up, a source too, which the cleanup empties; labelled `leaving source`).
    Source,
    /// The shard's first target: the new owner the copy fills.
    Target,
}

impl Victim {
    /// The word fault labels use.
    pub fn label(self) -> &'static str {
        match self {
            Victim::Proxy => "proxy",
            Victim::Source => "source",
            Victim::Target => "target",
        }
    }
}

/// Which phase a phase-tied fault fires in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PhaseSel {
    /// When a shard first reaches this phase.
    In(Phase),
    /// In the phase the seed picks among [`MIGRATION_PHASES`] (`seed % len`).
    BySeed,
}

impl PhaseSel {
    /// The phase this selection names for `seed`.
    pub fn phase(self, seed: u64) -> Phase {
        match self {
            PhaseSel::In(p) => p,
            PhaseSel::BySeed => MIGRATION_PHASES[(seed % MIGRATION_PHASES.len() as u64) as usize],
        }
    }
}

/// The phases a moving shard of a non-planted migration passes through, in order (the waiting `Planned` and
/// the final `Done` are not part of a move). A shard with no target (a group removed) skips from
/// `DualWrite` to `CutOver`, and one with no leaving owner (a group added) spends no observable time in
/// `Cleanup` (nothing to delete): a change that must hit every phase moves shards off and onto nodes.
pub const MIGRATION_PHASES: [Phase; 6] = [
    Phase::DualWrite,
    Phase::Copy,
    Phase::CatchUp,
    Phase::Fence,
    Phase::CutOver,
    Phase::Cleanup,
];

/// A crash tied to the migration's progress: `who` dies when a shard first reaches the phase and comes back
/// `down_ms` later (a node with its disk: the model's documents and task queue survive).
///
/// A crash in `CutOver` lands, by the seed's parity above the phase choice (`seed / 6 % 2`), either just
/// before the cut-over record is persisted or just after it (before the coordinator hears it was: the
/// record says "cut over" while the live routing is still the old one). Node crashes always land after.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PhaseCrash {
    pub who: Victim,
    pub phase: PhaseSel,
    pub down_ms: u64,
}

/// A partition during the cut-over: the seed picks the node (`seed % 2`: 0 the shard's first target, 1 its
/// first source) and the moment (`seed / 2 % 2`: 0 when the shard's fence goes up, before its barriers and
/// final verify; 1 right after its cut-over was persisted, before the routing switches); the proxy loses
/// that node for `length_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CutoverPartition {
    pub length_ms: u64,
}

/// What the driver asks the fault task to do.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Firing {
    /// Kill the proxy.
    CrashProxy,
    /// Kill host `i`.
    CrashNode(usize),
    /// Cut host `i` off from the proxy.
    Cut(usize),
}

/// A fault the driver noticed is due, with its label for the trace and the outcome.
#[derive(Debug, Clone)]
struct Due {
    firing: Firing,
    label: String,
}

/// The phase-tied fault of a run, once its seed is known.
#[derive(Debug, Clone, Copy)]
struct Armed {
    phase: Phase,
    kind: ArmedKind,
    /// In `CutOver`: fire once the cut-over record is written (else just before).
    after_persist: bool,
    /// A source crash hits a leaving owner of the shard (the node giving it up) rather than its first source.
    leaving: bool,
}

#[derive(Debug, Clone, Copy)]
enum ArmedKind {
    Crash(Victim),
    /// Cut the shard's target (`true`) or source (`false`) off.
    Cut(bool),
}

impl ElasticSpec {
    /// The host that dies for good, if the change is a failure.
    pub fn lost_host(&self) -> Option<usize> {
        match self.change {
            ElasticChange::FailNode(i) => Some(i),
            _ => None,
        }
    }

    /// Hosts the scenario needs beyond the initial topology's.
    pub fn spare_hosts(&self, rf: u32) -> usize {
        match self.change {
            ElasticChange::AddNode => 1,
            ElasticChange::AddGroup => rf as usize,
            _ => 0,
        }
    }
}

/// The migration state of the simulated proxy. Fields marked durable live on its disk and survive a crash.
pub struct Elastic {
    spec: Option<ElasticSpec>,
    /// Durable: the committed topology (the old one until the migration is finished).
    topology: Mutex<Topology>,
    /// Durable: the last persisted migration record.
    record: Mutex<Option<Value>>,
    /// Durable: the change was requested by the operator.
    requested: AtomicBool,
    /// Durable: the migration finished and `topology` is the new one.
    finished: AtomicBool,
    /// This incarnation: the live coordinator.
    live: Mutex<Option<Migration>>,
    /// This incarnation: writes routed by the plain placement, still running.
    plain_in_flight: AtomicU64,
    /// This incarnation: a migration is being started; new writes wait.
    gate: AtomicBool,
    /// How many times a coordinator was resumed from a record.
    pub resumes: AtomicU64,
    /// Virtual time (ms) at which the migration started and finished (0 = not yet).
    pub started_at: AtomicU64,
    pub finished_at: AtomicU64,
    /// God's-eye: the phase-tied fault of this run (set by [`progress_faults`]).
    armed: Mutex<Option<Armed>>,
    /// God's-eye: the phases some shard reached, in order of first arrival.
    reached: Mutex<Vec<Phase>>,
    /// God's-eye: the fault the driver found due, waiting for the fault task (the driver waits too).
    due: Mutex<Option<Due>>,
    /// God's-eye: the armed fault was handed over (it fires once per run).
    handed: AtomicBool,
    /// God's-eye: the labels of the faults that fired, and `retried` when a coordinator paused on a failure.
    fired: Mutex<Vec<String>>,
    /// God's-eye: client writes a live coordinator admitted after the phase-tied fault fired.
    writes_after_fault: AtomicU64,
    /// God's-eye: reads the documents of the migrated index on host `i` (set by [`progress_faults`]).
    docs_of: Mutex<Option<DocsOf>>,
    /// God's-eye: the first shard found cut over on incomplete data (see [`Elastic::check_cutover`]).
    incomplete: Mutex<Option<String>>,
}

/// Reads the documents of the migrated index on host `i`: external id → document.
pub type DocsOf = Arc<dyn Fn(usize) -> BTreeMap<String, Value> + Send + Sync>;

impl Elastic {
    /// The state for a run; `spec = None` for scenarios without a fleet change.
    pub fn new(spec: Option<ElasticSpec>, topology: Topology) -> Self {
        Elastic {
            spec,
            topology: Mutex::new(topology),
            record: Mutex::new(None),
            requested: AtomicBool::new(false),
            finished: AtomicBool::new(false),
            live: Mutex::new(None),
            plain_in_flight: AtomicU64::new(0),
            gate: AtomicBool::new(false),
            resumes: AtomicU64::new(0),
            started_at: AtomicU64::new(0),
            finished_at: AtomicU64::new(0),
            armed: Mutex::new(None),
            reached: Mutex::new(Vec::new()),
            due: Mutex::new(None),
            handed: AtomicBool::new(false),
            fired: Mutex::new(Vec::new()),
            writes_after_fault: AtomicU64::new(0),
            docs_of: Mutex::new(None),
            incomplete: Mutex::new(None),
        }
    }

    /// The phases some shard reached, in order of first arrival (god's-eye).
    pub fn reached(&self) -> Vec<Phase> {
        self.reached.lock().unwrap().clone()
    }

    /// The labels of the phase-tied faults that fired (`"<proxy|source|leaving source|target> crash in
    /// <Phase>"`, `"proxy crash in CutOver before its record"`,
    /// `"partition of the <target|source> in <Fence|CutOver>"`), then `"retried"` if the coordinator paused
    /// on a failed request at least once, then `"writes after the fault"` if a live coordinator admitted a
    /// client write after the fault fired (the migration went on under the workload).
    pub fn fired(&self) -> Vec<String> {
        let mut fired = self.fired.lock().unwrap().clone();
        if self.writes_after_fault.load(Ordering::SeqCst) > 0 {
            fired.push(WRITES_AFTER_FAULT.into());
        }
        fired
    }

    /// The first shard that was cut over on incomplete data, if any (god's-eye: see
    /// [`Elastic::check_cutover`]).
    pub fn incomplete_cutover(&self) -> Option<String> {
        self.incomplete.lock().unwrap().clone()
    }

    /// God's-eye, when `record` is about to be persisted: every shard it newly records as cut over must
    /// hold, on each of its targets, exactly the documents (same ids, same contents) of one of its sources.
    /// That is the coordinator's promise (a shard enters `cut_over` only after a clean verify pass under
    /// its fence, after barriers), checked on the nodes' own state rather than on what the coordinator read.
    fn check_cutover(&self, m: &Migration, record: &Value) {
        let Some(docs_of) = self.docs_of.lock().unwrap().clone() else {
            return;
        };
        if self.incomplete.lock().unwrap().is_some() {
            return;
        }
        let before = self.record.lock().unwrap().clone();
        let was_cut = |s: &str| {
            before.as_ref().is_some_and(|r| {
                matches!(
                    r["shards"][s].as_str(),
                    Some("cut_over" | "cleanup" | "done")
                )
            })
        };
        let host =
            |id: &NodeId| -> Option<usize> { id.as_str().strip_prefix("node")?.parse().ok() };
        let Some(shards) = record["shards"].as_object() else {
            return;
        };
        for (key, phase) in shards {
            if phase.as_str() != Some("cut_over") || was_cut(key) {
                continue;
            }
            let Ok(shard) = key.parse::<u32>() else {
                continue;
            };
            let Some(moves) = m.plan().moves.get(&shard) else {
                continue;
            };
            let of_shard = |i: usize| -> BTreeMap<String, Value> {
                docs_of(i)
                    .into_iter()
                    .filter(|(_, d)| d[SHARD_FIELD].as_u64() == Some(u64::from(shard)))
                    .collect()
            };
            let mut sources: Vec<&NodeId> = moves.iter().flat_map(|g| &g.sources).collect();
            sources.dedup();
            let mut targets: Vec<&NodeId> = moves.iter().flat_map(|g| &g.targets).collect();
            targets.dedup();
            if targets.is_empty() {
                continue;
            }
            let target_docs: Vec<(&NodeId, BTreeMap<String, Value>)> = targets
                .iter()
                .filter_map(|t| Some((*t, of_shard(host(t)?))))
                .collect();
            let matched = sources.iter().filter_map(|s| host(s)).any(|i| {
                let src = of_shard(i);
                target_docs.iter().all(|(_, docs)| *docs == src)
            });
            if !matched {
                let show = |docs: &BTreeMap<String, Value>| -> Vec<String> {
                    docs.iter().map(|(id, d)| format!("{id}={d}")).collect()
                };
                let sources_docs: Vec<String> = sources
                    .iter()
                    .filter_map(|s| Some(format!("{s}: {:?}", show(&of_shard(host(s)?)))))
                    .collect();
                let targets_docs: Vec<String> = target_docs
                    .iter()
                    .map(|(t, docs)| format!("{t}: {:?}", show(docs)))
                    .collect();
                *self.incomplete.lock().unwrap() = Some(format!(
                    "shard {shard} was cut over while its targets held no source's exact documents: sources {sources_docs:?}, targets {targets_docs:?}"
                ));
                return;
            }
        }
    }

    /// Notes the phases the live coordinator's shards are in and returns the armed fault if a shard just
    /// reached its phase. `persisting` tells whether the action just taken is a record to persist (a fault
    /// armed for "after the cut-over record" waits for it).
    fn note(&self, m: &Migration, persisting: bool) -> Option<Due> {
        let phases = m.phases();
        {
            let mut reached = self.reached.lock().unwrap();
            for p in phases.values() {
                if !reached.contains(p) {
                    reached.push(*p);
                }
            }
        }
        if m.failures().values().any(|f| *f > 0) {
            let mut fired = self.fired.lock().unwrap();
            if !fired.iter().any(|l| l == "retried") {
                fired.push("retried".into());
            }
        }
        if self.handed.load(Ordering::SeqCst) {
            return None;
        }
        let armed = (*self.armed.lock().unwrap())?;
        if armed.phase == Phase::CutOver && armed.after_persist && !persisting {
            return None;
        }
        let (shard, _) = phases.iter().find(|(_, p)| **p == armed.phase)?;
        let moves = m.plan().moves.get(shard)?;
        let group = moves
            .iter()
            .find(|g| !g.targets.is_empty())
            .or(moves.first())?;
        let host = |id: Option<&NodeId>| -> Option<usize> {
            id?.as_str().strip_prefix("node")?.parse().ok()
        };
        let source = host(group.sources.first());
        let target = host(group.targets.first());
        let phase = armed.phase;
        let (firing, label) = match armed.kind {
            ArmedKind::Crash(Victim::Proxy) => (
                Firing::CrashProxy,
                format!(
                    "proxy crash in {phase:?}{}",
                    if armed.after_persist || phase != Phase::CutOver {
                        ""
                    } else {
                        " before its record"
                    }
                ),
            ),
            ArmedKind::Crash(Victim::Source) if armed.leaving => (
                Firing::CrashNode(host(group.leaving.first())?),
                format!("leaving source crash in {phase:?}"),
            ),
            ArmedKind::Crash(v @ Victim::Source) => (
                Firing::CrashNode(source?),
                format!("{} crash in {phase:?}", v.label()),
            ),
            ArmedKind::Crash(v @ Victim::Target) => (
                Firing::CrashNode(target?),
                format!("{} crash in {phase:?}", v.label()),
            ),
            ArmedKind::Cut(true) => (
                Firing::Cut(target?),
                format!("partition of the target in {phase:?}"),
            ),
            ArmedKind::Cut(false) => (
                Firing::Cut(source?),
                format!("partition of the source in {phase:?}"),
            ),
        };
        self.handed.store(true, Ordering::SeqCst);
        Some(Due { firing, label })
    }

    /// Whether this run changes the fleet.
    pub fn enabled(&self) -> bool {
        self.spec.is_some()
    }

    /// The operator asks for the change.
    pub fn request(&self) {
        self.requested.store(true, Ordering::SeqCst);
    }

    /// Whether the change was asked for and is finished (true when there is nothing to do).
    pub fn finished(&self) -> bool {
        self.spec.is_none() || self.finished.load(Ordering::SeqCst)
    }

    /// The placement reads use now.
    pub fn read_placement(&self) -> Option<Placement> {
        self.spec?;
        if let Some(m) = self.live.lock().unwrap().as_ref() {
            return Some(m.read_placement().clone());
        }
        Placement::new(&self.topology.lock().unwrap()).ok()
    }

    /// The distinct phases of the live coordinator's shards (`None` while no coordinator is live).
    pub fn live_phases(&self) -> Option<Vec<String>> {
        let guard = self.live.lock().unwrap();
        let m = guard.as_ref()?;
        let mut phases: Vec<String> = m.phases().values().map(|p| format!("{p:?}")).collect();
        phases.sort();
        phases.dedup();
        Some(phases)
    }

    /// Whether the scenario's change has no fault of its own (no node lost, no partition): the fleet stays
    /// whole, so searches must equal the oracle throughout.
    pub fn fault_free(&self) -> bool {
        self.spec.is_some_and(|s| {
            s.lost_host().is_none()
                && s.partition.is_none()
                && s.crash.is_none()
                && s.cutover_partition.is_none()
        })
    }

    /// The committed topology.
    pub fn topology(&self) -> Topology {
        self.topology.lock().unwrap().clone()
    }

    /// The nodes whose data is gone for good (excluded from the god's-eye view).
    pub fn lost(&self) -> Vec<String> {
        match self.spec.map(|s| s.change) {
            Some(ElasticChange::FailNode(i)) => vec![format!("node{i}")],
            _ => Vec::new(),
        }
    }

    /// A proxy incarnation starts: whatever was live died with the previous one.
    fn reset(&self) {
        *self.live.lock().unwrap() = None;
        self.plain_in_flight.store(0, Ordering::SeqCst);
        self.gate.store(false, Ordering::SeqCst);
    }
}

/// The change as a core `Change` against `current`.
fn change_for(spec: &ElasticSpec, current: &Topology) -> Change {
    let placed = current.nodes.len();
    match spec.change {
        ElasticChange::AddNode => Change::AddNode(Node::active(
            format!("node{placed}"),
            format!("http://{}", super::fleet::node_addr(placed)),
            0,
        )),
        ElasticChange::DrainRemove(i) => Change::DrainNode(NodeId::new(format!("node{i}"))),
        ElasticChange::FailNode(i) => Change::FailNode(NodeId::new(format!("node{i}"))),
        ElasticChange::AddGroup => Change::AddGroup(
            (0..current.replication_factor as usize)
                .map(|k| {
                    let i = placed + k;
                    Node::active(
                        format!("node{i}"),
                        format!("http://{}", super::fleet::node_addr(i)),
                        0,
                    )
                })
                .collect(),
        ),
        ElasticChange::RemoveGroup => Change::RemoveGroup(current.replica_groups - 1),
    }
}

fn params(spec: &ElasticSpec) -> MigrationParams {
    let mut p = MigrationParams::new(INDEX, "id");
    p.planted = spec.planted;
    p.docs_per_second = spec.docs_per_second;
    p.page_size = 2;
    p.retry_after_ms = 300;
    p.fence_timeout_ms = 3_000;
    if spec.max_concurrent > 0 {
        p.max_concurrent_migrations = spec.max_concurrent;
    }
    p
}

/// Starts the driver of one proxy incarnation (call it from the proxy's init).
pub(crate) fn spawn_driver(ctx: Arc<ProxyCtx>, rpc: Arc<RpcClient>) {
    ctx.elastic.reset();
    if !ctx.elastic.enabled() {
        return;
    }
    madsim::task::spawn_local(drive(ctx, rpc));
}

async fn drive(ctx: Arc<ProxyCtx>, rpc: Arc<RpcClient>) {
    let el = &ctx.elastic;
    let Some(spec) = el.spec else { return };
    let mut last_phases = std::collections::BTreeSet::new();
    loop {
        if el.finished.load(Ordering::SeqCst) {
            return;
        }
        let live = el.live.lock().unwrap().is_some();
        if !live {
            let record = el.record.lock().unwrap().clone();
            let started = match record {
                Some(r) => {
                    el.resumes.fetch_add(1, Ordering::SeqCst);
                    Migration::resume(&r, params(&spec))
                }
                None if el.requested.load(Ordering::SeqCst) => {
                    // close the gate and let plainly routed writes drain before routing by the coordinator
                    el.gate.store(true, Ordering::SeqCst);
                    while el.plain_in_flight.load(Ordering::SeqCst) > 0 {
                        time::sleep(Duration::from_millis(5)).await;
                    }
                    let current = el.topology();
                    migration::plan_change(&current, &change_for(&spec, &current))
                        .and_then(|plan| Migration::start(plan, params(&spec)))
                }
                None => {
                    time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            };
            match started {
                Ok(m) => {
                    let _ = el.started_at.compare_exchange(
                        0,
                        now_ms(),
                        Ordering::SeqCst,
                        Ordering::SeqCst,
                    );
                    *el.live.lock().unwrap() = Some(m)
                }
                Err(e) => panic!("the migration could not start: {e}"),
            }
            el.gate.store(false, Ordering::SeqCst);
        }
        // carry out every action
        loop {
            let (action, mut due) = {
                let mut guard = el.live.lock().unwrap();
                let Some(m) = guard.as_mut() else { break };
                m.handle_timeout(now_ms());
                let action = m.poll_action();
                let persisting = matches!(action, Some(Action::Persist { .. }));
                let due = el.note(m, persisting);
                (action, due)
            };
            // a phase-tied fault lands before the action, except one armed for after a persisted record
            let after_record = matches!(action, Some(Action::Persist { .. }))
                && el.armed.lock().unwrap().is_some_and(|a| a.after_persist);
            if !after_record {
                if let Some(d) = due.take() {
                    hand_over(el, d).await;
                }
            }
            match action {
                Some(Action::Send(req))
                    if req.method != Method::Get
                        && ctx.disk.hints.lock().unwrap().has_pending(INDEX, &req.node) =>
                {
                    // A node write never overtakes the node's hints (they may hold this shard's older
                    // writes, which a cleanup or a repair must come after): retried once they are replayed.
                    if let Some(m) = el.live.lock().unwrap().as_mut() {
                        m.on_failure(req.id, now_ms());
                    }
                }
                Some(Action::Send(req)) => {
                    let (ctx, rpc) = (ctx.clone(), rpc.clone());
                    madsim::task::spawn_local(async move {
                        let result = call(&ctx, &rpc, &req).await;
                        let mut guard = ctx.elastic.live.lock().unwrap();
                        if let Some(m) = guard.as_mut() {
                            match result {
                                Ok(resp) => {
                                    m.on_response(req.id, resp.status, &resp.body, now_ms())
                                }
                                Err(_) => m.on_failure(req.id, now_ms()),
                            }
                        }
                    });
                }
                Some(Action::Persist { seq, record }) => {
                    if let Some(m) = el.live.lock().unwrap().as_ref() {
                        el.check_cutover(m, &record);
                    }
                    *el.record.lock().unwrap() = Some(record);
                    if let Some(d) = due.take() {
                        hand_over(el, d).await;
                    }
                    if let Some(m) = el.live.lock().unwrap().as_mut() {
                        m.on_persisted(seq, now_ms());
                    }
                }
                None => break,
            }
        }
        let wake = {
            let mut guard = el.live.lock().unwrap();
            match guard.as_ref() {
                Some(m) if m.is_finished() => {
                    // Nodes that left the fleet take their hints along: their shards live elsewhere now.
                    let gone: Vec<NodeId> = m
                        .plan()
                        .old
                        .nodes
                        .iter()
                        .map(|n| n.id.clone())
                        .filter(|id| !m.plan().new.nodes.iter().any(|n| &n.id == id))
                        .chain(m.plan().lost.iter().cloned())
                        .collect();
                    for node in &gone {
                        ctx.disk.hints.lock().unwrap().forget_node(node);
                    }
                    *el.topology.lock().unwrap() = m.plan().new.clone();
                    el.finished_at.store(now_ms(), Ordering::SeqCst);
                    el.finished.store(true, Ordering::SeqCst);
                    *guard = None;
                    return;
                }
                Some(m) => m.poll_timeout(),
                None => None,
            }
        };
        ctx.oracle
            .pause_at_change(el.live_phases(), &mut last_phases)
            .await;
        let now = now_ms();
        let sleep = wake.map_or(20, |w| w.saturating_sub(now).clamp(1, 20));
        time::sleep(Duration::from_millis(sleep)).await;
    }
}

/// Hands a due fault to the fault task and waits until it was carried out (a crashed proxy never returns
/// from here: the task dies with it).
async fn hand_over(el: &Elastic, due: Due) {
    *el.due.lock().unwrap() = Some(due);
    while el.due.lock().unwrap().is_some() {
        time::sleep(Duration::from_millis(1)).await;
    }
}

/// A client write of an elastic run: through the coordinator while a migration is live (waiting while a
/// shard is fenced), through the committed placement otherwise. `plain` builds the write from a placement.
pub(crate) async fn serve_write(
    ctx: &ProxyCtx,
    rpc: &RpcClient,
    lanes: &Lanes,
    intent: WriteIntent,
    task: WriteTask,
    answer: &mut Replier<'_>,
    plain: impl Fn(&Placement, WriteTask, u64) -> Result<FanoutWrite, MeiliError>,
) {
    let el = &ctx.elastic;
    let mut fence_wait = FenceWait::default();
    loop {
        if ctx.oracle.frozen() {
            // a mid-run oracle comparison is running: this write (waiting at a fence) waits on
            fence_wait.mark(ctx);
            time::sleep(Duration::from_millis(5)).await;
            continue;
        }
        let deadline = now_ms() + NODE_TIMEOUT.as_millis() as u64;
        let admitted = {
            let mut guard = el.live.lock().unwrap();
            guard
                .as_mut()
                .map(|m| m.try_write(intent.clone(), task.clone(), ctx.quorum, deadline))
        };
        match admitted {
            Some(Ok(Some((write, ticket)))) => {
                fence_wait.done();
                if el.handed.load(Ordering::SeqCst) && el.due.lock().unwrap().is_none() {
                    el.writes_after_fault.fetch_add(1, Ordering::SeqCst);
                }
                run_write(ctx, rpc, lanes, write, answer).await;
                if let Some(m) = el.live.lock().unwrap().as_mut() {
                    m.write_finished(ticket, now_ms());
                }
                return;
            }
            Some(Ok(None)) => fence_wait.mark(ctx), // fenced: wait
            Some(Err(e)) => return answer.send(Reply::error(&e)).await,
            None if !el.gate.load(Ordering::SeqCst) => {
                let placement = match Placement::new(&el.topology()) {
                    Ok(p) => p,
                    Err(e) => return answer.send(Reply::error(&MeiliError::from(e))).await,
                };
                el.plain_in_flight.fetch_add(1, Ordering::SeqCst);
                match plain(&placement, task.clone(), deadline) {
                    Ok(w) => run_write(ctx, rpc, lanes, w, answer).await,
                    Err(e) => answer.send(Reply::error(&e)).await,
                }
                el.plain_in_flight.fetch_sub(1, Ordering::SeqCst);
                return;
            }
            None => {} // a migration is starting: wait
        }
        time::sleep(Duration::from_millis(5)).await;
    }
}

/// The broadcast intent of a write of the migrated index.
pub(crate) fn broadcast(method: Method, path: String, body: Option<Value>) -> WriteIntent {
    WriteIntent::Broadcast { method, path, body }
}

/// The operator's request, `at_ms` after now: for a node failure, the node dies (for good) first.
pub(crate) fn request_at(
    ctx: Arc<ProxyCtx>,
    handle: madsim::runtime::Handle,
    at_ms: u64,
    lost: Option<madsim::task::NodeId>,
    partition: Option<(madsim::task::NodeId, madsim::task::NodeId, u64, u64)>,
) {
    madsim::task::spawn(async move {
        time::sleep(Duration::from_millis(at_ms)).await;
        if let Some(id) = lost {
            handle.kill(id);
        }
        ctx.elastic.request();
        if let Some((proxy, host, after, length)) = partition {
            let net = madsim::net::NetSim::current();
            time::sleep(Duration::from_millis(after)).await;
            net.clog_link(proxy, host);
            net.clog_link(host, proxy);
            time::sleep(Duration::from_millis(length)).await;
            net.unclog_link(proxy, host);
            net.unclog_link(host, proxy);
        }
    });
}

/// A node lost for good no longer takes part in the tasks it had acknowledged: its node task is forgotten and
/// the task is judged on the surviving owners.
pub(crate) fn forget_lost(ctx: &ProxyCtx, record: &mut miroir_core::tasks::MiroirTask) {
    let lost = ctx.elastic.lost();
    if lost.is_empty() || !ctx.elastic.finished() {
        return;
    }
    record.node_tasks.retain(|t| !lost.contains(&t.node.0));
    for groups in record.placement.values_mut() {
        for owners in groups.iter_mut() {
            owners.retain(|n| !lost.contains(&n.0));
        }
    }
}

/// The phase-tied faults of an elastic run ([`ElasticSpec::crash`], [`ElasticSpec::cutover_partition`]),
/// and the god's-eye cut-over check of every elastic run (`docs_of` reads a host's documents): arms the
/// fault the seed picks, then carries out what the driver hands over (see [`hand_over`]): kills the
/// proxy or a node and restarts it `down_ms` later, or cuts a node off from the proxy for a while. `log`
/// records what fired in the run's trace.
pub(crate) fn progress_faults(
    ctx: Arc<ProxyCtx>,
    handle: madsim::runtime::Handle,
    proxy: madsim::task::NodeId,
    hosts: Vec<madsim::task::NodeId>,
    seed: u64,
    log: impl Fn(String) + Send + 'static,
    docs_of: DocsOf,
) {
    let Some(spec) = ctx.elastic.spec else { return };
    *ctx.elastic.docs_of.lock().unwrap() = Some(docs_of);
    let n = MIGRATION_PHASES.len() as u64;
    let (armed, down_ms) = match (spec.crash, spec.cutover_partition) {
        (Some(c), _) => (
            Armed {
                phase: c.phase.phase(seed),
                kind: ArmedKind::Crash(c.who),
                after_persist: c.who != Victim::Proxy || (seed / n).is_multiple_of(2),
                leaving: !(seed / n).is_multiple_of(2),
            },
            c.down_ms,
        ),
        (None, Some(p)) => (
            Armed {
                phase: if (seed / 2).is_multiple_of(2) {
                    Phase::Fence
                } else {
                    Phase::CutOver
                },
                kind: ArmedKind::Cut(seed.is_multiple_of(2)),
                after_persist: true,
                leaving: false,
            },
            p.length_ms,
        ),
        (None, None) => return,
    };
    *ctx.elastic.armed.lock().unwrap() = Some(armed);
    log(format!(
        "elastic fault armed: {:?} in {:?}{}",
        armed.kind,
        armed.phase,
        if armed.after_persist {
            ""
        } else {
            " (before the record)"
        }
    ));
    madsim::task::spawn(async move {
        let el = &ctx.elastic;
        let mut heal: Option<(u64, Box<dyn FnOnce() + Send>)> = None;
        loop {
            let now = now_ms();
            if heal.as_ref().is_some_and(|(t, _)| *t <= now) {
                if let Some((_, f)) = heal.take() {
                    f();
                }
                return;
            }
            // taking the due fault and carrying it out happen in one step: the driver sees it done at once
            let due = el.due.lock().unwrap().take();
            if let Some(d) = due {
                let whom = match d.firing {
                    Firing::CrashProxy => "the proxy".to_string(),
                    Firing::CrashNode(i) | Firing::Cut(i) => format!("node{i}"),
                };
                log(format!(
                    "elastic fault: {} ({whom}; recorded: {:?}); back in {down_ms} ms",
                    d.label,
                    el.record
                        .lock()
                        .unwrap()
                        .as_ref()
                        .map(|r| r["shards"].clone())
                ));
                el.fired.lock().unwrap().push(d.label);
                let h = handle.clone();
                heal = Some(match d.firing {
                    Firing::CrashProxy => {
                        handle.kill(proxy);
                        (now + down_ms, Box::new(move || h.restart(proxy)))
                    }
                    Firing::CrashNode(i) => {
                        let id = hosts[i];
                        handle.kill(id);
                        (now + down_ms, Box::new(move || h.restart(id)))
                    }
                    Firing::Cut(i) => {
                        let id = hosts[i];
                        let net = madsim::net::NetSim::current();
                        net.clog_link(proxy, id);
                        net.clog_link(id, proxy);
                        (
                            now + down_ms,
                            Box::new(move || {
                                let net = madsim::net::NetSim::current();
                                net.unclog_link(proxy, id);
                                net.unclog_link(id, proxy);
                            }),
                        )
                    }
                });
            }
            if heal.is_none() && el.finished() {
                return;
            }
            time::sleep(Duration::from_millis(1)).await;
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn by_seed_walks_every_phase_and_in_names_one() {
        let n = MIGRATION_PHASES.len() as u64;
        let picked: Vec<Phase> = (0..n).map(|s| PhaseSel::BySeed.phase(s)).collect();
        assert_eq!(picked, MIGRATION_PHASES.to_vec());
        assert_eq!(PhaseSel::BySeed.phase(n + 3), MIGRATION_PHASES[3]);
        assert_eq!(PhaseSel::In(Phase::Fence).phase(5), Phase::Fence);
    }

    fn spec() -> ElasticSpec {
        ElasticSpec {
            change: ElasticChange::AddNode,
            at_ms: 0,
            planted: PlantedBug::None,
            docs_per_second: 0,
            partition: None,
            crash: None,
            cutover_partition: None,
            max_concurrent: 0,
        }
    }

    /// Three nodes (RF=2, 8 shards) gain a fourth: the coordinator, the elastic state, and a record that cuts
    /// every moving shard over.
    fn cut_everything() -> (Elastic, Migration, Value, Vec<u32>) {
        let topology = Topology {
            epoch: 1,
            shards: 8,
            replication_factor: 2,
            replica_groups: 1,
            nodes: (0..3)
                .map(|i| Node::active(format!("node{i}"), format!("http://h{i}"), 0))
                .collect(),
        };
        let el = Elastic::new(Some(spec()), topology.clone());
        let plan = migration::plan_change(&topology, &change_for(&spec(), &topology)).unwrap();
        let m = Migration::start(plan, params(&spec())).unwrap();
        let mut record = m.record();
        let moving: Vec<u32> = m.plan().moves.keys().copied().collect();
        for s in &moving {
            record["shards"][s.to_string()] = json!("cut_over");
        }
        (el, m, record, moving)
    }

    /// One document per shard on every host, except `short` that lacks the one of `missing`.
    fn docs(short: usize, missing: u32) -> DocsOf {
        Arc::new(move |i: usize| {
            (0..8u32)
                .filter(|s| i != short || *s != missing)
                .map(|s| (s.to_string(), json!({"id": s, SHARD_FIELD: s})))
                .collect()
        })
    }

    #[test]
    fn a_cut_over_on_equal_copies_passes() {
        let (el, m, record, _) = cut_everything();
        *el.docs_of.lock().unwrap() = Some(docs(99, 0));
        el.check_cutover(&m, &record);
        assert_eq!(el.incomplete_cutover(), None);
    }

    #[test]
    fn a_target_short_of_a_document_is_caught() {
        let (el, m, record, moving) = cut_everything();
        // node3 is the added node: the target of every moving shard
        *el.docs_of.lock().unwrap() = Some(docs(3, moving[0]));
        el.check_cutover(&m, &record);
        let found = el.incomplete_cutover().expect("the short target is caught");
        assert!(
            found.starts_with(&format!("shard {} was cut over", moving[0])),
            "{found}"
        );
    }

    #[test]
    fn a_shard_already_cut_over_is_not_checked_again() {
        let (el, m, record, moving) = cut_everything();
        *el.record.lock().unwrap() = Some(record.clone());
        *el.docs_of.lock().unwrap() = Some(docs(3, moving[0]));
        el.check_cutover(&m, &record);
        assert_eq!(el.incomplete_cutover(), None);
    }
}
