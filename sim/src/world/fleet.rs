//! One simulated run: model nodes, a Miroir proxy driving miroir-core's operations, a client workload, a fault
//! schedule, then the liveness phase and the invariant checks.
//!
//! Phases:
//! 1. **setup** (no faults): the index is created and configured through the proxy, on every node;
//! 2. **safety**: the client runs a seeded mix of writes (adds, replaces, deletes by id), searches, reads and
//!    task polls while the fault schedule of the seed plays (node and proxy crashes, partitions between the
//!    proxy and a node, slow nodes, message loss and duplication, as the scenario allows);
//! 3. **liveness**: every fault is healed; every node must drain its task queue and every acknowledged task
//!    must reach a final status within a bounded virtual time, or the run fails with its own message;
//! 4. **checks**: the invariant checkers judge the history against a god's-eye view of the nodes and against
//!    what the proxy answers, including searches compared with a single model node holding the corpus.
//!
//! The proxy here is the simulator's shell around miroir-core: like the HTTP proxy, it only carries out the
//! node requests that `ops::FanoutWrite`, `ops::ScatterSearch` and `ops::TaskRead` produce and feeds the answers
//! back. Its task records live on its "disk" and survive a proxy crash, and so do its hints: a node write
//! that fails, times out or answers 5xx becomes a hint (core's `hints::HintLog`), a lane (index, node) that
//! holds hints queues new writes behind them, and a replay loop sends them in order every 250 ms. The
//! liveness phase also waits until no hint and no node write is left, i.e. one full repair pass.

use super::faults::{FaultEvent, FaultKinds, Schedule};
use super::host::{spawn_host, Disk, SimulatedNode};
use super::net::{next_request, now_ms, reply, CallError, RpcClient};
use super::rng::SimRng;
use super::trace::Trace;
use crate::checkers::{self, client_view, FleetView};
use crate::history::{Doc, Effect, History, Outcome as WriteOutcome};
use crate::model::{self, Node as ModelNode};
use crate::runner::{Failure, Outcome};
use madsim::export::futures::stream::{FuturesUnordered, StreamExt};
use madsim::net::{Endpoint, NetSim};
use madsim::runtime::{Handle, NodeHandle};
use madsim::time;
use miroir_core::config::UnavailableShardPolicy;
use miroir_core::config::{IdempotencyConfig, SettingsSyncConfig};
use miroir_core::documents::{plan_batch, plan_delete_ids};
use miroir_core::entropy::{
    record_deletes, stamp_request, Action as EntropyAction, AntiEntropy, EntropyParams,
    PlantedBug as EntropyBug, Tombstones, VersionClock,
};
use miroir_core::hints::{record_replay, Admission, HintLog, ReplayOutcome, ReplayVerdict};
use miroir_core::idempotency::{
    decide, decide_missing_task, fingerprint, Decision, IdempotencyRecord,
};
use miroir_core::ops::get::DocumentGet;
use miroir_core::ops::lanes::WriteLanes;
use miroir_core::ops::search::ScatterSearch;
use miroir_core::ops::task::{NodeTaskViews, TaskRead};
use miroir_core::ops::write::{FanoutWrite, WriteTask};
use miroir_core::ops::{node_unavailable, Method, NodeRequest, Reply};
use miroir_core::quorum::WriteQuorum;
use miroir_core::routing::Placement;
use miroir_core::search::SearchContext;
use miroir_core::settings_sync::{settings_hash, Action as SettingsAction, Phase, SettingsSync};
use miroir_core::tasks::{details, MiroirTask, TaskType};
use miroir_core::topology::{Node, NodeId, Topology};
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The master key of every model node (the proxy sends it as the node key).
pub const NODE_KEY: &str = "sim-node-key";
/// The index every run works on.
pub const INDEX: &str = "docs";
/// How long the proxy waits for one node.
pub(crate) const NODE_TIMEOUT: Duration = Duration::from_millis(2_000);
/// How long the client waits for the proxy.
const CLIENT_TIMEOUT: Duration = Duration::from_millis(8_000);
/// When a silent node task counts as lost.
const LOST_AFTER_MS: u64 = 60_000;
/// The safety phase's length for fault scheduling.
const SAFETY_MS: u64 = 6_000;
/// The bound on the liveness phase.
const LIVENESS_MS: u64 = 120_000;
/// Document ids are drawn from `0..ID_SPACE` so writes collide.
const ID_SPACE: u64 = 24;
const WORDS: [&str; 10] = [
    "star", "night", "river", "dark", "blue", "storm", "king", "love", "ghost", "city",
];
const GENRES: [&str; 4] = ["action", "drama", "comedy", "horror"];

/// A scenario: the fleet's shape, the write quorum, the fault kinds a seed may enable, and the workload size.
#[derive(Debug, Clone)]
pub struct Spec {
    pub name: &'static str,
    pub nodes: usize,
    pub rf: u32,
    pub groups: u32,
    pub shards: u32,
    pub quorum: WriteQuorum,
    pub faults: FaultKinds,
    pub ops: usize,
    /// The most a slow node adds to an answer. Above the proxy's node timeout (2 s), a write can time out at
    /// the proxy yet still be applied later, after a newer write: see the `late_delivery` scenario.
    pub slow_max_ms: u64,
    /// A planted bug for the checkers' own test: the proxy's replay drops each hint without sending it.
    /// Always `false` except in the test that shows the checkers catch a replica left behind.
    pub skip_replay: bool,
    /// How the run's fault timeline is drawn.
    pub pattern: FaultPattern,
    /// Whether the client sends its writes with idempotency keys and retries them.
    pub idempotency: IdempotencyMode,
    /// Whether a settings change is made while a node is down.
    pub settings: SettingsMode,
    /// A fleet change during the safety phase (shard migration), if any.
    pub elastic: Option<super::migrate::ElasticSpec>,
    /// A change of S during the safety phase (online resharding), if any.
    pub reshard: Option<super::reshard::ReshardSpec>,
    /// The anti-entropy pass run after quiescence (`Some(PlantedBug::None)` = the real one), after which every
    /// replica of every shard must hold the same documents; `None` = no pass (the tests of the planted hint
    /// and migration bugs, which anti-entropy would repair behind their back).
    pub entropy: Option<EntropyBug>,
    /// How many proxies (1 or 2) share the durable store; with 2, a second client writes the same ids through
    /// the second proxy concurrently, and the history is judged in version order.
    pub proxies: usize,
}

/// How a scenario's fault timeline is drawn from its seed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultPattern {
    /// The swarm schedule of `faults::Schedule::draw` over the scenario's fault kinds.
    Swarm,
    /// One node (drawn) is down for most of the safety phase, writes keep coming, then it restarts.
    NodeDown,
    /// One node (drawn) goes down and comes back 3 to 5 times during the safety phase.
    Flapping,
    /// The proxy loses every node of one replica group (drawn) for a while, then the links heal.
    GroupPartition,
}

impl FaultPattern {
    /// The timeline of this pattern for a fleet of `nodes` nodes in `groups` groups (node i is in group
    /// i mod `groups`); `Swarm` uses the scenario's fault kinds.
    fn schedule(self, spec: &Spec, rng: &mut SimRng) -> Schedule {
        let kinds = |node_crash, partition| FaultKinds {
            node_crash,
            partition,
            ..FaultKinds::NONE
        };
        let node = rng.below(spec.nodes.max(1) as u64) as usize;
        let mut events = Vec::new();
        let kinds = match self {
            FaultPattern::Swarm => {
                return Schedule::draw(spec.faults, spec.nodes, SAFETY_MS, spec.slow_max_ms, rng)
            }
            FaultPattern::NodeDown => {
                let start = rng.below(SAFETY_MS / 5);
                let end = rng.range(SAFETY_MS * 3 / 4, SAFETY_MS);
                events.push((start, FaultEvent::KillNode(node)));
                events.push((end, FaultEvent::RestartNode(node)));
                kinds(true, false)
            }
            FaultPattern::Flapping => {
                let flaps = rng.range(3, 6);
                let mut t = rng.below(SAFETY_MS / 10);
                for _ in 0..flaps {
                    let down = rng.range(100, SAFETY_MS / 8);
                    events.push((t, FaultEvent::KillNode(node)));
                    events.push((t + down, FaultEvent::RestartNode(node)));
                    t += down + rng.range(50, SAFETY_MS / 8);
                }
                kinds(true, false)
            }
            FaultPattern::GroupPartition => {
                let group = rng.below(u64::from(spec.groups.max(1))) as usize;
                let start = rng.below(SAFETY_MS / 3);
                let end = start + rng.range(SAFETY_MS / 4, SAFETY_MS / 2);
                for i in (0..spec.nodes).filter(|i| i % spec.groups.max(1) as usize == group) {
                    events.push((start, FaultEvent::Partition(i)));
                    events.push((end, FaultEvent::Heal(i)));
                }
                kinds(false, true)
            }
        };
        events.sort_by_key(|(t, _)| *t);
        Schedule {
            kinds,
            loss_rate: 0.0,
            duplicate_rate: 0.0,
            events,
        }
    }
}

/// The settings part of a scenario.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SettingsMode {
    /// No settings change after the setup.
    #[default]
    Off,
    /// After the setup, one node is killed, a settings change is sent through the proxy (refused for lack of
    /// quorum `all`, yet applied by the live nodes), then the node restarts. After quiescence the proxy runs
    /// its settings check (core's `settings_sync`: read back, repair, commit) and the `settings` checker
    /// demands identical settings on every node.
    ChangeWhileNodeDown,
    /// A planted bug for the checker: the same change, but the proxy never runs its settings check.
    ChangeWithoutRepair,
}

/// The sim proxy's settings repair knobs.
const SETTINGS_SYNC: SettingsSyncConfig = SettingsSyncConfig {
    drift_check_interval_ms: 0,
    max_repair_retries: 5,
    repair_backoff_ms: 200,
    verify_timeout_ms: 10_000,
};

/// How the client and the proxy use idempotency keys.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum IdempotencyMode {
    /// Writes are sent once, without a key.
    #[default]
    Off,
    /// Every write carries a key; the client retries it (same key, same request) until it gets a definite
    /// answer; the proxy deduplicates through core's `idempotency` decisions, its records on its disk.
    Retries,
    /// A planted bug for the checker: the client retries with keys, but the proxy ignores them.
    RetriesIgnoredByProxy,
}

/// The sim proxy's idempotency settings: in-flight claims older than 10 s are abandoned (above any write's
/// duration here), so a retry after a proxy crash can take the key over.
const IDEMPOTENCY: IdempotencyConfig = IdempotencyConfig {
    enabled: true,
    ttl_secs: 3_600,
    max_keys: 100_000,
    in_flight_timeout_ms: 10_000,
};

/// The model node as a simulated host's payload.
struct ModelHost(ModelNode);

impl SimulatedNode for ModelHost {
    type Request = model::Request;
    type Response = model::Response;

    fn handle(&mut self, request: model::Request, now: u64) -> model::Response {
        self.0.handle(request, now)
    }

    fn process_one(&mut self, now: u64) -> bool {
        self.0.process_next(now).is_some()
    }

    fn recover(&mut self, _now: u64) {
        self.0 = ModelNode::restart_from(Some(NODE_KEY), self.0.durable_state());
    }
}

/// What a client asks the proxy.
#[derive(Debug, Clone)]
enum ProxyOp {
    /// Add or replace (`replace`, POST) or update (PUT) documents.
    Documents {
        replace: bool,
        docs: Vec<Doc>,
    },
    DeleteByFilter(String),
    DeleteIds(Vec<String>),
    Broadcast(TaskType, Method, String, Value),
    Search(Map<String, Value>),
    GetDocument(String),
    GetTask(u64),
    /// A write carrying an idempotency key.
    Keyed(String, Box<ProxyOp>),
    /// A client settings change (`PATCH /indexes/docs/settings`, quorum `all`) under the two-phase machine.
    SettingsChange(Value),
    /// Run the settings check now: read every node back, repair, commit (the HTTP proxy's drift check).
    SettingsCheck,
    /// A write whose version the proxy notes under this tag (god's-eye bookkeeping for two-proxy runs).
    Tagged(u64, Box<ProxyOp>),
    /// One anti-entropy pass over these shards of this node index and their replicas; answers the report.
    AntiEntropy {
        index: String,
        shards: Vec<(u32, Vec<NodeId>)>,
        repair: bool,
    },
}

/// The proxy's durable state: its task store, and the hints of the node writes replicas missed.
#[derive(Default)]
pub(crate) struct ProxyDisk {
    next_uid: AtomicU64,
    tasks: Mutex<BTreeMap<u64, MiroirTask>>,
    views: Mutex<BTreeMap<u64, NodeTaskViews>>,
    requests: AtomicU64,
    pub(crate) hints: Mutex<HintLog>,
    /// Node write requests in flight (not durable: each request's guard counts itself out when it ends or
    /// dies with a crashed proxy); quiescence waits for 0, as a request that fails becomes a hint.
    writes_in_flight: AtomicU64,
    /// The idempotency records, by key (the task store's records).
    idempotency: Mutex<BTreeMap<String, IdempotencyRecord>>,
    /// God's-eye bookkeeping for the checker (not proxy state): the key each stored task was created under.
    task_keys: Mutex<BTreeMap<u64, String>>,
    /// The index's two-phase settings machine (its committed settings are stored state).
    settings: Mutex<Option<SettingsSync>>,
    /// The tombstones of the deletes sent, per index (recorded before the deletes are sent).
    pub(crate) tombstones: Mutex<BTreeMap<String, Tombstones>>,
    /// God's-eye bookkeeping for the checker (not proxy state): the version each tagged write was stamped.
    stamps: Mutex<BTreeMap<u64, u64>>,
}

/// Counts one node write request in flight for as long as it lives.
struct InFlight<'a>(&'a AtomicU64);

impl<'a> InFlight<'a> {
    fn new(counter: &'a AtomicU64) -> Self {
        counter.fetch_add(1, Ordering::SeqCst);
        InFlight(counter)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl ProxyDisk {
    fn with_settings<T>(&self, f: impl FnOnce(&mut SettingsSync) -> T) -> T {
        let mut guard = self.settings.lock().unwrap();
        f(guard.get_or_insert_with(|| SettingsSync::new(None, &SETTINGS_SYNC)))
    }
}

/// Every node's settings of the index (`None` for a node that does not answer 200).
async fn read_settings(ctx: &ProxyCtx, rpc: &RpcClient) -> BTreeMap<NodeId, Option<Value>> {
    let mut calls: FuturesUnordered<_> = ctx
        .addrs
        .keys()
        .enumerate()
        .map(|(i, node)| {
            let r = NodeRequest {
                id: i,
                node: node.clone(),
                method: Method::Get,
                path: format!("/indexes/{INDEX}/settings"),
                body: None,
            };
            async move {
                let v = match call(ctx, rpc, &r).await {
                    Ok(resp) if resp.status == 200 => Some(resp.body),
                    _ => None,
                };
                (r.node, v)
            }
        })
        .collect();
    let mut out = BTreeMap::new();
    while let Some((node, v)) = calls.next().await {
        out.insert(node, v);
    }
    out
}

/// The settings check: drives core's machine (read back, repair with backoff, commit) until it has nothing
/// more to do now; answers the committed version and the phase.
async fn settings_check(ctx: &ProxyCtx, rpc: &RpcClient) -> Reply {
    let mut action = ctx.disk.with_settings(|m| {
        if *m.phase() == Phase::Verifying {
            SettingsAction::ReadAll
        } else {
            m.drift_check(now_ms())
        }
    });
    for _ in 0..64 {
        action = match action {
            SettingsAction::Nothing | SettingsAction::Commit(_) | SettingsAction::Freeze { .. } => {
                break
            }
            SettingsAction::ReadAll => {
                let reads = read_settings(ctx, rpc).await;
                ctx.disk.with_settings(|m| m.on_read(&reads, now_ms()))
            }
            SettingsAction::Repair {
                nodes,
                settings,
                read_at,
            } => {
                for (i, node) in nodes.iter().enumerate() {
                    let r = NodeRequest {
                        id: i,
                        node: node.clone(),
                        method: Method::Patch,
                        path: format!("/indexes/{INDEX}/settings"),
                        body: Some(settings.clone()),
                    };
                    let _ = call(ctx, rpc, &r).await;
                }
                let wait = read_at.saturating_sub(now_ms());
                time::sleep(Duration::from_millis(wait)).await;
                ctx.disk.with_settings(|m| m.drift_check(now_ms()))
            }
        };
    }
    let (version, phase) = ctx
        .disk
        .with_settings(|m| (m.version(), format!("{:?}", m.phase())));
    Reply::json(200, json!({"version": version, "phase": phase}))
}

pub(crate) struct ProxyCtx {
    placement: Placement,
    addrs: BTreeMap<NodeId, SocketAddr>,
    pub(crate) quorum: WriteQuorum,
    pub(crate) disk: Arc<ProxyDisk>,
    skip_replay: bool,
    idempotency: IdempotencyMode,
    /// Replica selection fed by every search answer (as the HTTP proxy's), with default hedging.
    selector: Mutex<miroir_core::select::Selector>,
    pub(crate) elastic: super::migrate::Elastic,
    pub(crate) reshard: super::reshard::Resharding,
    /// This proxy's version clock (core's hybrid logical clock, fed the simulated time).
    clock: Mutex<VersionClock>,
    /// The anti-entropy pass's planted bug, if any.
    entropy_bug: EntropyBug,
    /// The mid-run oracle's hold on the coordinators (god's-eye test plumbing, not proxy state).
    pub(crate) oracle: OracleHold,
}

/// How the mid-run oracle stops a coordinator at each of its phase changes: the driver asks for a comparison
/// (`hold`) and waits until the oracle has compared; client writes waiting at a fence are counted, since they
/// have not reached any node (the workload is quiet while they wait).
#[derive(Default)]
pub(crate) struct OracleHold {
    on: AtomicBool,
    hold: AtomicBool,
    fence_waiters: AtomicU64,
    /// A comparison is running: writes waiting at a fence keep waiting even if it lifts.
    frozen: AtomicBool,
}

impl OracleHold {
    /// Whether client writes must keep waiting (a mid-run comparison is running).
    pub(crate) fn frozen(&self) -> bool {
        self.frozen.load(Ordering::SeqCst)
    }

    /// Called by a driver after each round of actions with the coordinator's phases: when one of them was
    /// never `seen` before, waits (at most 20 s) for the mid-run oracle to compare.
    pub(crate) async fn pause_at_change(
        &self,
        phases: Option<Vec<String>>,
        seen: &mut BTreeSet<String>,
    ) {
        if !self.on.load(Ordering::SeqCst) {
            return;
        }
        let mut fresh = false;
        for p in phases.into_iter().flatten() {
            fresh |= seen.insert(p);
        }
        if !fresh {
            return;
        }
        self.hold.store(true, Ordering::SeqCst);
        let until = now_ms() + 20_000;
        while self.hold.load(Ordering::SeqCst) && now_ms() < until {
            time::sleep(Duration::from_millis(5)).await;
        }
    }
}

/// Counts a client write waiting at a fence (not sent anywhere yet) for as long as it waits.
#[derive(Default)]
pub(crate) struct FenceWait<'a>(Option<&'a AtomicU64>);

impl<'a> FenceWait<'a> {
    /// The write found its shard fenced.
    pub(crate) fn mark(&mut self, ctx: &'a ProxyCtx) {
        if self.0.is_none() {
            ctx.oracle.fence_waiters.fetch_add(1, Ordering::SeqCst);
            self.0 = Some(&ctx.oracle.fence_waiters);
        }
    }

    /// The write is admitted (or gives up).
    pub(crate) fn done(&mut self) {
        if let Some(c) = self.0.take() {
            c.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

impl Drop for FenceWait<'_> {
    fn drop(&mut self) {
        self.done();
    }
}

/// How often the proxy replays hints (as the HTTP proxy's `repair.replay_interval_ms`).
const REPLAY_INTERVAL: Duration = Duration::from_millis(250);

/// A write request's turn on its lane, as the HTTP proxy takes it: a lane holding hints queues the request
/// behind them as a hint (not sent); a request that is sent and fails, times out or answers 5xx becomes a
/// hint, queued while the lane's turn is still held, so hints keep the lane's order.
async fn send_or_hint(
    ctx: &ProxyCtx,
    rpc: &RpcClient,
    req: &NodeRequest,
    task_uid: u64,
) -> Result<model::Response, CallError> {
    let admitted =
        ctx.disk
            .hints
            .lock()
            .unwrap()
            .admit(INDEX, req, Some(task_uid), false, now_ms());
    if admitted != Admission::Send {
        return Err(CallError::Timeout);
    }
    let result = call(ctx, rpc, req).await;
    let missed = match &result {
        Ok(resp) => node_unavailable(resp.status),
        Err(_) => true,
    };
    if missed {
        ctx.disk
            .hints
            .lock()
            .unwrap()
            .add(INDEX, req, Some(task_uid), now_ms());
    }
    result
}

/// Replays the hints of every lane, in order, each while holding the lane's turn; a lane stops at its
/// first hint the node does not take. Runs for the life of a proxy incarnation.
async fn replay_hints(ctx: Arc<ProxyCtx>, rpc: Arc<RpcClient>, lanes: Lanes) {
    loop {
        time::sleep(REPLAY_INTERVAL).await;
        let pending = ctx.disk.hints.lock().unwrap().pending_lanes();
        let mut runs: FuturesUnordered<_> = pending
            .into_iter()
            .map(|(_, node)| {
                let (ctx, rpc) = (&ctx, &rpc);
                let mut turn = LaneTurn::new(&lanes, &node);
                async move {
                    turn.acquire().await;
                    loop {
                        let Some(hint) = ctx.disk.hints.lock().unwrap().next_replay(INDEX, &node)
                        else {
                            break;
                        };
                        let verdict = if ctx.skip_replay {
                            ReplayVerdict::Applied(None)
                        } else {
                            match call(ctx, rpc, &hint.request(0)).await {
                                Ok(resp) => {
                                    ReplayVerdict::from_response(&hint, resp.status, &resp.body)
                                }
                                Err(_) => ReplayVerdict::Retry,
                            }
                        };
                        let outcome = ctx.disk.hints.lock().unwrap().on_replay(hint.seq, verdict);
                        match outcome {
                            ReplayOutcome::Done {
                                hint,
                                node_task_uid,
                            } => {
                                if let Some(uid) = hint.task_uid {
                                    if let Some(record) =
                                        ctx.disk.tasks.lock().unwrap().get_mut(&uid)
                                    {
                                        record_replay(record, &hint.node, node_task_uid);
                                    }
                                }
                            }
                            ReplayOutcome::Dropped(_) => {}
                            ReplayOutcome::Kept(_) | ReplayOutcome::Unknown => break,
                        }
                    }
                    drop(turn);
                }
            })
            .collect();
        while runs.next().await.is_some() {}
    }
}

impl ProxyCtx {
    /// The placement reads use: the migration's read view in elastic runs.
    fn read_placement(&self) -> Placement {
        self.elastic
            .read_placement()
            .unwrap_or_else(|| self.placement.clone())
    }

    /// The index reads go to and its placement: the resharding's live index in resharding runs.
    fn read_target(&self) -> (String, Placement) {
        self.reshard
            .read_target()
            .unwrap_or_else(|| (INDEX.to_string(), self.read_placement()))
    }
}

pub(crate) fn node_addr(i: usize) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 1, i as u8 + 1)), 7700)
}
fn proxy_addr() -> SocketAddr {
    SocketAddr::new(IpAddr::V4(proxy_ip(0)), 7700)
}

fn to_model(req: &NodeRequest) -> model::Request {
    let method = match req.method {
        Method::Get => model::Method::Get,
        Method::Post => model::Method::Post,
        Method::Put => model::Method::Put,
        Method::Patch => model::Method::Patch,
        Method::Delete => model::Method::Delete,
    };
    let r = model::Request::new(method, &req.path).bearer(NODE_KEY);
    match &req.body {
        Some(b) => r.with_body("application/json", b.to_string().into_bytes()),
        None => r,
    }
}

pub(crate) async fn call(
    ctx: &ProxyCtx,
    rpc: &RpcClient,
    req: &NodeRequest,
) -> Result<model::Response, CallError> {
    let addr = ctx.addrs[&req.node];
    rpc.call::<model::Request, model::Response>(addr, to_model(req), NODE_TIMEOUT)
        .await
}

/// The proxy's write lanes (core's `WriteLanes`), one set per proxy incarnation, as in the HTTP proxy.
pub(crate) type Lanes = Arc<Mutex<WriteLanes<tokio::sync::oneshot::Sender<()>>>>;

/// One write request's turn on its lane: the same plumbing as the HTTP proxy's (`shell-proxy/src/fleet.rs`).
struct LaneTurn {
    lanes: Lanes,
    node: NodeId,
    wait: tokio::sync::oneshot::Receiver<()>,
    holding: bool,
}

impl LaneTurn {
    fn new(lanes: &Lanes, node: &NodeId) -> Self {
        let (go, wait) = tokio::sync::oneshot::channel();
        if let Some(go) = lanes.lock().unwrap().submit(INDEX, node, go) {
            let _ = go.send(());
        }
        LaneTurn {
            lanes: lanes.clone(),
            node: node.clone(),
            wait,
            holding: false,
        }
    }

    async fn acquire(&mut self) {
        let _ = (&mut self.wait).await;
        self.holding = true;
    }
}

impl Drop for LaneTurn {
    fn drop(&mut self) {
        if !(self.holding || self.wait.try_recv().is_ok()) {
            return;
        }
        let mut lanes = self.lanes.lock().unwrap_or_else(|p| p.into_inner());
        while let Some(next) = lanes.finished(INDEX, &self.node) {
            if next.send(()).is_ok() {
                break;
            }
        }
    }
}

/// The idempotency claim of the request being served.
struct Claim {
    key: String,
    /// The record as stored; `None` under the planted bug (the proxy claimed nothing).
    record: Option<IdempotencyRecord>,
    disk: Arc<ProxyDisk>,
}

/// Sends the client's reply once, the moment an operation produces it.
pub(crate) struct Replier<'a> {
    ep: &'a Endpoint,
    to: SocketAddr,
    tag: u64,
    sent: bool,
    claim: Option<Claim>,
    /// The client's tag of a `ProxyOp::Tagged` write.
    pub(crate) op_tag: Option<u64>,
}

/// One task store round trip: a proxy crash can land between two of them.
async fn store_round_trip() {
    time::sleep(Duration::from_millis(1)).await;
}

impl Replier<'_> {
    pub(crate) async fn send(&mut self, r: Reply) {
        if !self.sent {
            self.sent = true;
            if let Some(Claim {
                key,
                record: Some(record),
                disk,
            }) = self.claim.take()
            {
                // As the HTTP proxy: the answer is recorded under the key (or the key released) before the
                // client hears it.
                {
                    let mut records = disk.idempotency.lock().unwrap();
                    if records.get(&key) == Some(&record) {
                        match record.complete(r.status, &r.body) {
                            Some(done) => records.insert(key, done),
                            None => records.remove(&key),
                        };
                    }
                }
                store_round_trip().await;
            }
            reply(self.ep, self.to, self.tag, r).await;
        }
    }

    /// Stores an acknowledged task; under a claim its uid is noted in the key's record first (the HTTP
    /// proxy's `NotingStore`).
    async fn store_task(&mut self, ctx: &ProxyCtx, record: MiroirTask) {
        if let Some(claim) = &mut self.claim {
            let first = !ctx.disk.task_keys.lock().unwrap().contains_key(&record.uid);
            if let (Some(current), true) = (&claim.record, first) {
                if current.task_uid.is_none() {
                    let noted = current.with_task(record.uid);
                    let mut records = ctx.disk.idempotency.lock().unwrap();
                    if records.get(&claim.key) == Some(current) {
                        records.insert(claim.key.clone(), noted.clone());
                        claim.record = Some(noted);
                    }
                }
            }
            if first {
                store_round_trip().await;
            }
            ctx.disk
                .task_keys
                .lock()
                .unwrap()
                .insert(record.uid, claim.key.clone());
        }
        ctx.disk.tasks.lock().unwrap().insert(record.uid, record);
    }
}

/// Decides a keyed request with core's `idempotency`: returns the operation to serve (the key claimed in
/// `answer`) or `None` once it answered (a replay or a refusal).
async fn claim_key(
    ctx: &ProxyCtx,
    key: String,
    op: ProxyOp,
    answer: &mut Replier<'_>,
) -> Option<ProxyOp> {
    if ctx.idempotency == IdempotencyMode::RetriesIgnoredByProxy {
        answer.claim = Some(Claim {
            key,
            record: None,
            disk: ctx.disk.clone(),
        });
        return Some(op);
    }
    let fp = fingerprint("POST", "/sim", None, format!("{op:?}").as_bytes());
    store_round_trip().await;
    let now = now_ms();
    // decided and claimed under one lock: the claim is atomic, as the store's
    let outcome: Result<IdempotencyRecord, Reply> = {
        let mut records = ctx.disk.idempotency.lock().unwrap();
        let existing = records.get(&key).cloned();
        let mut decision = decide(&key, existing.as_ref(), &fp, now, &IDEMPOTENCY);
        if let Decision::ReplayTask(uid) = decision {
            let task = ctx.disk.tasks.lock().unwrap().get(&uid).cloned();
            decision = match (task, &existing) {
                (Some(task), _) => Decision::Replay(miroir_core::idempotency::StoredResponse {
                    status: 202,
                    body: task.summarized(),
                }),
                (None, Some(existing)) => decide_missing_task(&key, existing, now, &IDEMPOTENCY),
                (None, None) => {
                    Decision::Reject(miroir_core::MeiliError::internal("no idempotency record"))
                }
            };
        }
        match decision {
            Decision::Proceed { record, replaces } => {
                if records.get(&key) == replaces.as_ref() {
                    records.insert(key.clone(), record.clone());
                    Ok(record)
                } else {
                    Err(Reply::error(
                        &miroir_core::MeiliError::idempotency_key_in_flight(&key),
                    ))
                }
            }
            Decision::Replay(r) => Err(Reply::json(r.status, r.body)),
            Decision::Reject(e) => Err(Reply::error(&e)),
            Decision::ReplayTask(_) => Err(Reply::error(&miroir_core::MeiliError::internal(
                "inconsistent idempotency decision",
            ))),
        }
    };
    match outcome {
        Ok(record) => {
            answer.claim = Some(Claim {
                key,
                record: Some(record),
                disk: ctx.disk.clone(),
            });
            Some(op)
        }
        Err(reply) => {
            answer.send(reply).await;
            None
        }
    }
}

/// Runs a write to completion; replies to the client as soon as the quorum decides, keeps collecting late
/// acknowledgements into the persisted record.
pub(crate) async fn run_write(
    ctx: &ProxyCtx,
    rpc: &RpcClient,
    lanes: &Lanes,
    mut write: FanoutWrite,
    answer: &mut Replier<'_>,
) {
    stamp_write(ctx, &mut write, &mut [], answer.op_tag).await;
    run_stamped_write(ctx, rpc, lanes, write, answer).await
}

/// Gives a client write one version (last writer wins, judged by anti-entropy), also to `extra`: requests
/// carrying the same client write elsewhere (a resharding's copy to its other index), and records their
/// deletes as tombstones on the proxy's disk before any node hears of them.
pub(crate) async fn stamp_write(
    ctx: &ProxyCtx,
    write: &mut FanoutWrite,
    extra: &mut [NodeRequest],
    tag: Option<u64>,
) {
    let version = ctx.clock.lock().unwrap().stamp(now_ms());
    write.stamp_version(version);
    for r in extra.iter_mut() {
        stamp_request(r, version);
    }
    if let Some(tag) = tag {
        ctx.disk.stamps.lock().unwrap().insert(tag, version);
    }
    let recorded = {
        let mut tombstones = ctx.disk.tombstones.lock().unwrap();
        let live = record_deletes(&mut tombstones, write.requests(), version);
        record_deletes(&mut tombstones, extra, version) || live
    };
    if recorded {
        store_round_trip().await;
    }
}

/// [`run_write`] of a write [`stamp_write`] already stamped.
pub(crate) async fn run_stamped_write(
    ctx: &ProxyCtx,
    rpc: &RpcClient,
    lanes: &Lanes,
    mut write: FanoutWrite,
    answer: &mut Replier<'_>,
) {
    // Each node receives the index's writes one at a time, in order (core's write lanes); what a node
    // misses becomes a hint, replayed in order when it answers again.
    let uid = write.record().uid;
    let mut calls: FuturesUnordered<_> = write
        .requests()
        .to_vec()
        .into_iter()
        .map(|r| {
            let mut turn = LaneTurn::new(lanes, &r.node);
            let in_flight = InFlight::new(&ctx.disk.writes_in_flight);
            async move {
                turn.acquire().await;
                let result = send_or_hint(ctx, rpc, &r, uid).await;
                drop(in_flight);
                drop(turn);
                (r.id, result)
            }
        })
        .collect();
    while let Some((id, result)) = calls.next().await {
        match result {
            Ok(resp) => write.on_response(id, resp.status, &resp.body),
            Err(_) => write.on_failure(id),
        }
        if !answer.sent {
            if let Some(r) = write.reply() {
                // durable before the client hears of it
                if r.status == 202 {
                    answer.store_task(ctx, write.record()).await;
                }
                answer.send(r).await;
            }
        }
    }
    // late acknowledgements still reach the record
    if let Some(r) = write.reply() {
        if r.status == 202 {
            answer.store_task(ctx, write.record()).await;
        }
        answer.send(r).await;
    }
}

async fn serve_op(
    ctx: &ProxyCtx,
    rpc: &RpcClient,
    lanes: &Lanes,
    op: ProxyOp,
    answer: &mut Replier<'_>,
) {
    let now = now_ms();
    let deadline = now + NODE_TIMEOUT.as_millis() as u64;
    let task = |task_type, details| WriteTask {
        uid: ctx.disk.next_uid.fetch_add(1, Ordering::SeqCst),
        index_uid: Some(INDEX.to_string()),
        task_type,
        details: Some(details),
        enqueued_at: now,
    };
    match op {
        ProxyOp::SettingsCheck => {
            let r = settings_check(ctx, rpc).await;
            answer.send(r).await
        }
        ProxyOp::SettingsChange(body) => {
            ctx.disk.with_settings(SettingsSync::propose);
            let t = task(TaskType::SettingsUpdate, Map::new());
            let uid = t.uid;
            let w = FanoutWrite::broadcast(
                t,
                Method::Patch,
                format!("/indexes/{INDEX}/settings"),
                Some(body),
                &ctx.placement,
                WriteQuorum::All,
                deadline,
            );
            run_write(ctx, rpc, lanes, w, answer).await;
            let acked = ctx.disk.tasks.lock().unwrap().contains_key(&uid);
            ctx.disk.with_settings(|m| {
                if acked {
                    m.proposal_applied();
                } else {
                    m.proposal_refused();
                }
            });
        }
        ProxyOp::Tagged(tag, op) => {
            answer.op_tag = Some(tag);
            Box::pin(serve_op(ctx, rpc, lanes, *op, answer)).await
        }
        ProxyOp::AntiEntropy {
            index,
            shards,
            repair,
        } => {
            let r = anti_entropy(ctx, rpc, &index, shards, repair).await;
            answer.send(r).await
        }
        ProxyOp::Keyed(key, op) => {
            if let Some(op) = claim_key(ctx, key, *op, answer).await {
                Box::pin(serve_op(ctx, rpc, lanes, op, answer)).await
            }
        }
        ProxyOp::Documents { replace, docs } => {
            let t = task(
                TaskType::DocumentAdditionOrUpdate,
                details::document_addition(docs.len() as u64),
            );
            if ctx.reshard.enabled() {
                let intent = miroir_core::reshard::WriteIntent::Documents {
                    docs: docs.clone(),
                    replace,
                };
                let plain = |t: WriteTask, deadline: u64| {
                    let p = &ctx.placement;
                    let plan = plan_batch(docs.clone(), "id", p)?;
                    Ok(FanoutWrite::documents(
                        t, INDEX, "id", replace, plan, p, ctx.quorum, deadline,
                    ))
                };
                return super::reshard::serve_write(ctx, rpc, lanes, intent, t, answer, plain)
                    .await;
            }
            if ctx.elastic.enabled() {
                let intent = miroir_core::migration::WriteIntent::Documents {
                    docs: docs.clone(),
                    replace,
                };
                let plain = |p: &Placement, t: WriteTask, deadline: u64| {
                    let plan = plan_batch(docs.clone(), "id", p)?;
                    Ok(FanoutWrite::documents(
                        t, INDEX, "id", replace, plan, p, ctx.quorum, deadline,
                    ))
                };
                return super::migrate::serve_write(ctx, rpc, lanes, intent, t, answer, plain)
                    .await;
            }
            match plan_batch(docs, "id", &ctx.placement) {
                Ok(plan) => {
                    let w = FanoutWrite::documents(
                        t,
                        INDEX,
                        "id",
                        replace,
                        plan,
                        &ctx.placement,
                        ctx.quorum,
                        deadline,
                    );
                    run_write(ctx, rpc, lanes, w, answer).await
                }
                Err(e) => answer.send(Reply::error(&e)).await,
            }
        }
        ProxyOp::DeleteByFilter(filter) => {
            let filter = Value::String(filter);
            let t = task(
                TaskType::DocumentDeletion,
                details::document_deletion_by_filter(&filter),
            );
            let path = format!("/indexes/{INDEX}/documents/delete");
            let body = json!({ "filter": filter });
            if ctx.reshard.enabled() {
                let intent = miroir_core::reshard::WriteIntent::IndexBroadcast {
                    method: Method::Post,
                    suffix: "/documents/delete".into(),
                    body: Some(body.clone()),
                };
                let plain = |t: WriteTask, deadline: u64| {
                    Ok(FanoutWrite::broadcast(
                        t,
                        Method::Post,
                        path.clone(),
                        Some(body.clone()),
                        &ctx.placement,
                        ctx.quorum,
                        deadline,
                    ))
                };
                return super::reshard::serve_write(ctx, rpc, lanes, intent, t, answer, plain)
                    .await;
            }
            if ctx.elastic.enabled() {
                let intent =
                    super::migrate::broadcast(Method::Post, path.clone(), Some(body.clone()));
                let plain = |p: &Placement, t: WriteTask, deadline: u64| {
                    Ok(FanoutWrite::broadcast(
                        t,
                        Method::Post,
                        path.clone(),
                        Some(body.clone()),
                        p,
                        ctx.quorum,
                        deadline,
                    ))
                };
                return super::migrate::serve_write(ctx, rpc, lanes, intent, t, answer, plain)
                    .await;
            }
            let w = FanoutWrite::broadcast(
                t,
                Method::Post,
                path,
                Some(body),
                &ctx.placement,
                ctx.quorum,
                deadline,
            );
            run_write(ctx, rpc, lanes, w, answer).await
        }
        ProxyOp::DeleteIds(ids) => {
            let t = task(
                TaskType::DocumentDeletion,
                details::document_deletion(ids.len() as u64),
            );
            let values: Vec<Value> = ids.into_iter().map(Value::String).collect();
            if ctx.reshard.enabled() {
                let intent = miroir_core::reshard::WriteIntent::DeleteIds(values.clone());
                let plain = |t: WriteTask, deadline: u64| {
                    let p = &ctx.placement;
                    let plan = plan_delete_ids(&values, p);
                    Ok(FanoutWrite::delete_ids(
                        t, INDEX, plan, p, ctx.quorum, deadline,
                    ))
                };
                return super::reshard::serve_write(ctx, rpc, lanes, intent, t, answer, plain)
                    .await;
            }
            if ctx.elastic.enabled() {
                let intent = miroir_core::migration::WriteIntent::DeleteIds(values.clone());
                let plain = |p: &Placement, t: WriteTask, deadline: u64| {
                    let plan = plan_delete_ids(&values, p);
                    Ok(FanoutWrite::delete_ids(
                        t, INDEX, plan, p, ctx.quorum, deadline,
                    ))
                };
                return super::migrate::serve_write(ctx, rpc, lanes, intent, t, answer, plain)
                    .await;
            }
            let plan = plan_delete_ids(&values, &ctx.placement);
            let w = FanoutWrite::delete_ids(t, INDEX, plan, &ctx.placement, ctx.quorum, deadline);
            run_write(ctx, rpc, lanes, w, answer).await
        }
        ProxyOp::Broadcast(task_type, method, path, body) => {
            let t = task(task_type, Map::new());
            let w = FanoutWrite::broadcast(
                t,
                method,
                path,
                Some(body),
                &ctx.placement,
                WriteQuorum::All,
                deadline,
            );
            run_write(ctx, rpc, lanes, w, answer).await
        }
        ProxyOp::Search(body) => {
            let n = ctx.disk.requests.fetch_add(1, Ordering::SeqCst);
            let (index, placement) = ctx.read_target();
            let groups = placement.groups().max(1);
            let nodes: Vec<NodeId> = ctx.addrs.keys().cloned().collect();
            let options = super::speed::cover_options(
                &ctx.selector,
                &nodes,
                Some(&miroir_core::config::HedgingConfig::default()),
                (n % groups as u64) as u32,
                n,
            );
            let search = ScatterSearch::with_options(
                &index,
                &body,
                &SearchContext::default(),
                &placement,
                &|_| true,
                options,
                UnavailableShardPolicy::Partial,
                Some("id"),
            );
            let mut search = match search {
                Ok(s) => s,
                Err(e) => return answer.send(Reply::error(&e)).await,
            };
            super::speed::drive_search(
                &mut search,
                &ctx.selector,
                &nodes,
                |r: NodeRequest| async move { call(ctx, rpc, &r).await },
                |_| (),
            )
            .await;
            match search.reply() {
                Some(r) => answer.send(r.clone()).await,
                None => {
                    answer
                        .send(Reply::error(&miroir_core::MeiliError::internal(
                            "the search ended without a reply",
                        )))
                        .await
                }
            }
        }
        ProxyOp::GetDocument(id) => {
            let (index, placement) = ctx.read_target();
            let mut get = DocumentGet::new(&index, &id, None, &placement, &|_| true, 0);
            while let Some(r) = get.next_request() {
                match call(ctx, rpc, &r).await {
                    Ok(resp) => get.on_response(r.id, resp.status, resp.body),
                    Err(_) => get.on_failure(r.id),
                }
            }
            if let Some(r) = get.reply() {
                answer.send(r.clone()).await;
            }
        }
        ProxyOp::GetTask(uid) => {
            let Some(mut record) = ctx.disk.tasks.lock().unwrap().get(&uid).cloned() else {
                return answer
                    .send(Reply::json(404, json!({"code": "task_not_found"})))
                    .await;
            };
            super::migrate::forget_lost(ctx, &mut record);
            let cached = ctx
                .disk
                .views
                .lock()
                .unwrap()
                .get(&uid)
                .cloned()
                .unwrap_or_default();
            let mut read = TaskRead::new(record, cached);
            let mut calls: FuturesUnordered<_> = read
                .requests()
                .to_vec()
                .into_iter()
                .map(|r| async move { (r.id, call(ctx, rpc, &r).await) })
                .collect();
            while let Some((id, result)) = calls.next().await {
                match result {
                    Ok(resp) => read.on_response(id, resp.status, &resp.body),
                    Err(_) => read.on_failure(id),
                }
            }
            ctx.disk
                .views
                .lock()
                .unwrap()
                .insert(uid, read.finished_views());
            answer
                .send(Reply::json(200, read.view(now_ms(), LOST_AFTER_MS).meili))
                .await
        }
    }
}

/// One anti-entropy pass (core's `AntiEntropy`) over `shards`, driven to its end; answers its report.
async fn anti_entropy(
    ctx: &ProxyCtx,
    rpc: &RpcClient,
    index: &str,
    shards: Vec<(u32, Vec<NodeId>)>,
    repair: bool,
) -> Reply {
    let started = ctx.clock.lock().unwrap().stamp(now_ms());
    // the deletes recorded under the client's index and under the node index in force (a resharding's
    // shadow once swapped in): one client write's versions are the same on both
    let tombstones = {
        let all = ctx.disk.tombstones.lock().unwrap();
        let mut t = all.get(INDEX).cloned().unwrap_or_default();
        if index != INDEX {
            if let Some(more) = all.get(index) {
                t.merge(more);
            }
        }
        t
    };
    let params = EntropyParams {
        page_size: 20,
        buckets: 8,
        repair,
        retry_after_ms: 200,
        max_attempts: 10,
        task_poll_ms: 50,
        planted: ctx.entropy_bug,
        ..EntropyParams::default()
    };
    let mut pass = AntiEntropy::new(index, "id", shards, tombstones, params, started);
    loop {
        match pass.poll_action() {
            Some(EntropyAction::Send(r)) => match call(ctx, rpc, &r).await {
                Ok(resp) => pass.on_response(r.id, resp.status, &resp.body, now_ms()),
                Err(_) => pass.on_failure(r.id, now_ms()),
            },
            Some(EntropyAction::Finished) => break,
            None => match pass.poll_timeout() {
                Some(at) => {
                    time::sleep(Duration::from_millis(at.saturating_sub(now_ms()))).await;
                    pass.handle_timeout(now_ms());
                }
                None => break,
            },
        }
    }
    Reply::json(200, pass.report().to_json())
}

/// The address of proxy `i` (0 = the primary, which also replays hints and drives migrations).
fn proxy_ip(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 0, 0, 1 + i as u8)
}

/// God's-eye: the documents of the index on each host (external id → document), for the migration driver's
/// cut-over check.
fn docs_of(disks: Vec<Arc<Disk<ModelHost>>>) -> super::migrate::DocsOf {
    Arc::new(move |i: usize| {
        let mut docs = BTreeMap::new();
        if let Some(d) = disks.get(i) {
            let guard = d.lock();
            if let Some(index) = guard.0.state().indexes.get(INDEX) {
                for (external, internal) in &index.external {
                    if let Some(doc) = index.docs.get(internal) {
                        docs.insert(external.clone(), Value::Object(doc.clone()));
                    }
                }
            }
        }
        docs
    })
}

fn spawn_proxy(handle: &Handle, ctx: Arc<ProxyCtx>, i: usize) -> NodeHandle {
    handle
        .create_node()
        .name(if i == 0 {
            "proxy".to_string()
        } else {
            format!("proxy{i}")
        })
        .ip(IpAddr::V4(proxy_ip(i)))
        .init(move || {
            let ctx = ctx.clone();
            async move {
                let ep = Arc::new(
                    Endpoint::bind(SocketAddr::new(IpAddr::V4(proxy_ip(i)), 7700))
                        .await
                        .expect("proxy address"),
                );
                let rpc = Arc::new(
                    RpcClient::bind(SocketAddr::new(IpAddr::V4(proxy_ip(i)), 0))
                        .await
                        .expect("proxy client address"),
                );
                // a new incarnation starts with idle lanes (the crashed one's requests died with it) and
                // no replay in flight; its hints are on disk
                let lanes: Lanes = Arc::default();
                if i == 0 {
                    super::migrate::spawn_driver(ctx.clone(), rpc.clone());
                    super::reshard::spawn_driver(ctx.clone(), rpc.clone());
                    {
                        let mut hints = ctx.disk.hints.lock().unwrap();
                        *hints = hints.restarted();
                    }
                    madsim::task::spawn_local(replay_hints(
                        ctx.clone(),
                        rpc.clone(),
                        lanes.clone(),
                    ));
                }
                loop {
                    let Ok((op, from, tag)) = next_request::<ProxyOp>(&ep).await else {
                        continue;
                    };
                    let (ctx, rpc, ep, lanes) =
                        (ctx.clone(), rpc.clone(), ep.clone(), lanes.clone());
                    madsim::task::spawn_local(async move {
                        let mut answer = Replier {
                            ep: &ep,
                            to: from,
                            tag,
                            sent: false,
                            claim: None,
                            op_tag: None,
                        };
                        serve_op(&ctx, &rpc, &lanes, op, &mut answer).await;
                    });
                }
            }
        })
        .build()
}

/// The client's view of one answer.
fn outcome_of(result: &Result<Reply, CallError>) -> WriteOutcome {
    match result {
        Ok(r) if r.status == 202 => match r.body.get("taskUid").and_then(Value::as_u64) {
            Some(uid) => WriteOutcome::Acked(uid),
            None => WriteOutcome::Unknown,
        },
        Ok(_) => WriteOutcome::Rejected,
        Err(_) => WriteOutcome::Unknown,
    }
}

fn random_doc(rng: &mut SimRng, id: u64) -> Doc {
    let words: Vec<&str> = (0..rng.range(1, 4)).map(|_| *rng.pick(&WORDS)).collect();
    json!({
        "id": id,
        "title": words.join(" "),
        "genre": rng.pick(&GENRES),
        "year": rng.range(1950, 2025),
    })
    .as_object()
    .cloned()
    .unwrap_or_default()
}

struct Shared {
    history: Mutex<History>,
    /// The keyed writes' answers, for the idempotency checker.
    keyed: Mutex<checkers::idempotency::KeyedWrites>,
    trace: Mutex<Trace>,
    /// How many client workloads finished.
    done: AtomicU64,
    start: u64,
    /// The mid-run oracle asks the workloads to stop between two operations.
    pause: AtomicBool,
    /// How many workloads are stopped at the pause.
    parked: AtomicU64,
    /// Mid-run oracle comparisons made, and the first mismatch.
    oracle_during: AtomicU64,
    oracle_during_failure: Mutex<Option<String>>,
    /// Mid-run oracle attempts that did not compare, by reason (see `Skip`).
    oracle_skips: Mutex<BTreeMap<String, u64>>,
    /// Equal mid-run comparisons by coordinator phase (a comparison counts for each phase it saw).
    oracle_phases: Mutex<BTreeMap<String, u64>>,
    /// The mid-run oracle's task is over (or never started).
    prober_done: AtomicBool,
}

impl Shared {
    fn log(&self, event: impl std::fmt::Display) {
        let t = now_ms().saturating_sub(self.start);
        self.trace.lock().unwrap().record(t, event);
    }
}

async fn client_call(rpc: &RpcClient, op: ProxyOp) -> Result<Reply, CallError> {
    client_call_to(rpc, proxy_addr(), op).await
}

async fn client_call_to(rpc: &RpcClient, to: SocketAddr, op: ProxyOp) -> Result<Reply, CallError> {
    rpc.call::<ProxyOp, Reply>(to, op, CLIENT_TIMEOUT).await
}

/// How many times the client resends a keyed write that got no definite answer.
const KEYED_RETRIES: usize = 20;

/// Sends a write: once without keys; with idempotency keys, under the key `w<step>`, resent with the same key
/// after a timeout or a 409 `miroir_idempotency_key_in_flight` until it gets a definite answer.
async fn write_call(
    rpc: &RpcClient,
    to: SocketAddr,
    op: ProxyOp,
    step: usize,
    mode: IdempotencyMode,
    shared: &Shared,
) -> Result<Reply, CallError> {
    if mode == IdempotencyMode::Off {
        return client_call_to(rpc, to, op).await;
    }
    let key = format!("w{step}");
    let keyed = ProxyOp::Keyed(key.clone(), Box::new(op));
    let mut attempt = 0;
    loop {
        let result = client_call_to(rpc, to, keyed.clone()).await;
        let code = result.as_ref().ok().and_then(|r| {
            r.body
                .get("code")
                .and_then(Value::as_str)
                .map(str::to_string)
        });
        match (&result, code.as_deref()) {
            (Ok(r), _) if r.status == 202 => {
                if let Some(uid) = r.body.get("taskUid").and_then(Value::as_u64) {
                    shared
                        .keyed
                        .lock()
                        .unwrap()
                        .answers
                        .push((key.clone(), uid));
                }
                return result;
            }
            (Ok(_), Some("miroir_idempotency_key_reused")) => {
                shared.keyed.lock().unwrap().reused.push(key.clone());
                return result;
            }
            (Ok(_), Some("miroir_idempotency_key_in_flight")) | (Err(_), _) => {}
            (Ok(_), _) => return result,
        }
        attempt += 1;
        if attempt > KEYED_RETRIES {
            return result;
        }
        shared.log(format_args!("client#{step} retry {attempt} with key {key}"));
        time::sleep(Duration::from_millis(1_000)).await;
    }
}

/// Polls a task through the proxy until it reaches a final status or the deadline passes.
async fn wait_task(rpc: &RpcClient, uid: u64, until: u64) -> Option<String> {
    let mut last = None;
    while now_ms() < until {
        if let Ok(r) = client_call(rpc, ProxyOp::GetTask(uid)).await {
            if let Some(s) = r.body.get("status").and_then(Value::as_str) {
                last = Some(s.to_string());
                if matches!(s, "succeeded" | "failed" | "canceled") {
                    return last;
                }
            }
        }
        time::sleep(Duration::from_millis(200)).await;
    }
    last
}

/// The client tag of a write: unique over the run's clients.
fn write_tag(client: usize, step: usize) -> u64 {
    ((client as u64) << 32) | step as u64
}

/// One client's workload, sent to proxy `client`. With several proxies the writes are tagged (their
/// versions judge the history), partial updates are sent as replacements (last-writer-wins on whole
/// documents cannot order partial updates that two proxies deliver to a node in opposite orders) and
/// deletes by filter as deletes by id.
async fn workload(spec: Spec, seed: u64, shared: Arc<Shared>, client: usize) {
    let rpc = RpcClient::bind(SocketAddr::new(
        IpAddr::V4(Ipv4Addr::new(10, 0, 2, 1 + client as u8)),
        0,
    ))
    .await
    .expect("client endpoint");
    let to = SocketAddr::new(IpAddr::V4(proxy_ip(client)), 7700);
    let tagged = spec.proxies > 1;
    let mut rng = SimRng::new(seed ^ 0xC11E47 ^ ((client as u64) << 40));
    let record = |effects: Vec<(String, Effect)>, outcome: WriteOutcome, step: usize| {
        let mut h = shared.history.lock().unwrap();
        if tagged {
            h.record_tagged(effects, outcome, write_tag(client, step));
        } else {
            h.record(effects, outcome);
        }
    };
    let wrap = |op: ProxyOp, step: usize| {
        if tagged {
            ProxyOp::Tagged(write_tag(client, step), Box::new(op))
        } else {
            op
        }
    };
    for step in 0..spec.ops {
        time::sleep(Duration::from_millis(rng.range(5, 120))).await;
        if shared.pause.load(Ordering::SeqCst) {
            shared.parked.fetch_add(1, Ordering::SeqCst);
            while shared.pause.load(Ordering::SeqCst) {
                time::sleep(Duration::from_millis(5)).await;
            }
            shared.parked.fetch_sub(1, Ordering::SeqCst);
        }
        let dice = rng.below(100);
        // several writers: no delete by filter (see `entropy`'s known limits: a filter tombstone cannot
        // tell that a replica's older, non-matching copy was superseded by a matching one it deleted)
        let dice = if tagged && (45..50).contains(&dice) {
            55
        } else {
            dice
        };
        if dice < 35 {
            let docs: Vec<Doc> = (0..rng.range(1, 4))
                .map(|_| {
                    let id = rng.below(ID_SPACE);
                    random_doc(&mut rng, id)
                })
                .collect();
            let effects = docs
                .iter()
                .map(|d| (d["id"].to_string(), Effect::Put(d.clone())))
                .collect();
            let result = write_call(
                &rpc,
                to,
                wrap(
                    ProxyOp::Documents {
                        replace: true,
                        docs,
                    },
                    step,
                ),
                step,
                spec.idempotency,
                &shared,
            )
            .await;
            let outcome = outcome_of(&result);
            shared.log(format_args!("client#{step} add -> {outcome:?}"));
            record(effects, outcome, step);
        } else if dice < 45 {
            let docs: Vec<Doc> = (0..rng.range(1, 3))
                .map(|_| {
                    let id = rng.below(ID_SPACE);
                    let field = if rng.chance(0.5) {
                        json!({"id": id, "year": rng.range(1950, 2025)})
                    } else {
                        json!({"id": id, "genre": rng.pick(&GENRES)})
                    };
                    field.as_object().cloned().unwrap_or_default()
                })
                .collect();
            let effects = docs
                .iter()
                .map(|d| {
                    let effect = if tagged {
                        Effect::Put(d.clone())
                    } else {
                        Effect::Merge(d.clone())
                    };
                    (d["id"].to_string(), effect)
                })
                .collect();
            let result = write_call(
                &rpc,
                to,
                wrap(
                    ProxyOp::Documents {
                        replace: tagged,
                        docs,
                    },
                    step,
                ),
                step,
                spec.idempotency,
                &shared,
            )
            .await;
            let outcome = outcome_of(&result);
            shared.log(format_args!("client#{step} update -> {outcome:?}"));
            record(effects, outcome, step);
        } else if dice < 50 {
            let genre = *rng.pick(&GENRES);
            let effects = (0..ID_SPACE)
                .map(|id| {
                    (
                        id.to_string(),
                        Effect::DeleteWhere("genre".into(), json!(genre)),
                    )
                })
                .collect();
            let result = write_call(
                &rpc,
                to,
                wrap(ProxyOp::DeleteByFilter(format!("genre = {genre}")), step),
                step,
                spec.idempotency,
                &shared,
            )
            .await;
            let outcome = outcome_of(&result);
            shared.log(format_args!(
                "client#{step} delete genre = {genre} -> {outcome:?}"
            ));
            record(effects, outcome, step);
        } else if dice < 60 {
            let ids: Vec<String> = (0..rng.range(1, 3))
                .map(|_| rng.below(ID_SPACE).to_string())
                .collect();
            let effects = ids.iter().map(|id| (id.clone(), Effect::Delete)).collect();
            let result = write_call(
                &rpc,
                to,
                wrap(ProxyOp::DeleteIds(ids), step),
                step,
                spec.idempotency,
                &shared,
            )
            .await;
            let outcome = outcome_of(&result);
            shared.log(format_args!("client#{step} delete -> {outcome:?}"));
            record(effects, outcome, step);
        } else if dice < 80 {
            let q = json!({"q": rng.pick(&WORDS), "limit": rng.range(1, 10)})
                .as_object()
                .cloned()
                .unwrap_or_default();
            let result = client_call_to(&rpc, to, ProxyOp::Search(q)).await;
            shared.log(format_args!(
                "client#{step} search -> {:?}",
                result.as_ref().map(|r| r.status)
            ));
        } else if dice < 90 {
            let id = rng.below(ID_SPACE).to_string();
            let result = client_call_to(&rpc, to, ProxyOp::GetDocument(id)).await;
            shared.log(format_args!(
                "client#{step} get -> {:?}",
                result.as_ref().map(|r| r.status)
            ));
        } else {
            let acked = shared.history.lock().unwrap().acked_tasks();
            if !acked.is_empty() {
                let uid = *rng.pick(&acked);
                let result = client_call_to(&rpc, to, ProxyOp::GetTask(uid)).await;
                let status = result.ok().and_then(|r| r.body.get("status").cloned());
                shared.log(format_args!("client#{step} task {uid} -> {status:?}"));
            }
        }
    }
    shared.done.fetch_add(1, Ordering::SeqCst);
}

fn fail(checker: &str, message: String, schedule: &Schedule) -> Failure {
    Failure {
        checker: checker.to_string(),
        message,
        schedule: schedule.to_string(),
    }
}

/// Runs one seed of `spec`.
pub async fn run(seed: u64, spec: Spec) -> Result<Outcome, Failure> {
    let handle = Handle::current();
    let net = NetSim::current();
    let mut rng = SimRng::new(seed);
    let schedule = spec.pattern.schedule(&spec, &mut rng.fork(1));
    let keep = std::env::var("MIROIR_SIM_TRACE").is_ok();
    let shared = Arc::new(Shared {
        history: Mutex::new(History::default()),
        keyed: Mutex::new(Default::default()),
        trace: Mutex::new(Trace::new(keep)),
        done: AtomicU64::new(0),
        start: now_ms(),
        pause: AtomicBool::new(false),
        parked: AtomicU64::new(0),
        oracle_during: AtomicU64::new(0),
        oracle_during_failure: Mutex::new(None),
        oracle_skips: Mutex::new(BTreeMap::new()),
        oracle_phases: Mutex::new(BTreeMap::new()),
        prober_done: AtomicBool::new(true),
    });
    shared.log(format_args!("scenario {} seed {seed}", spec.name));
    shared.log(format_args!("{}", schedule.to_string().trim_end()));

    let topology = Topology {
        epoch: 1,
        shards: spec.shards,
        replication_factor: spec.rf,
        replica_groups: spec.groups,
        nodes: (0..spec.nodes)
            .map(|i| {
                Node::active(
                    format!("node{i}"),
                    format!("http://{}", node_addr(i)),
                    (i as u32) % spec.groups,
                )
            })
            .collect(),
    };
    let placement =
        Placement::new(&topology).map_err(|e| fail("setup", e.to_string(), &schedule))?;
    // spare hosts for nodes an elastic scenario adds (not in the topology yet)
    let hosts_n = spec.nodes + spec.elastic.map_or(0, |e| e.spare_hosts(spec.rf));
    let ids: Vec<NodeId> = (0..hosts_n)
        .map(|i| NodeId::new(format!("node{i}")))
        .collect();
    let disks: Vec<Arc<Disk<ModelHost>>> = (0..hosts_n)
        .map(|_| Disk::new(ModelHost(ModelNode::new(Some(NODE_KEY)))))
        .collect();
    let hosts: Vec<NodeHandle> = (0..hosts_n)
        .map(|i| {
            spawn_host(
                &handle,
                &format!("node{i}"),
                node_addr(i),
                disks[i].clone(),
                rng.next_u64(),
            )
        })
        .collect();
    let ctx = Arc::new(ProxyCtx {
        placement: placement.clone(),
        addrs: ids
            .iter()
            .cloned()
            .zip((0..hosts_n).map(node_addr))
            .collect(),
        quorum: spec.quorum,
        disk: Arc::new(ProxyDisk::default()),
        skip_replay: spec.skip_replay,
        idempotency: spec.idempotency,
        selector: Mutex::new(miroir_core::select::Selector::new(
            miroir_core::select::Strategy::Adaptive,
            0.05,
            seed,
        )),
        elastic: super::migrate::Elastic::new(spec.elastic, topology.clone()),
        reshard: super::reshard::Resharding::new(spec.reshard, topology.clone()),
        clock: Mutex::new(VersionClock::new()),
        entropy_bug: spec.entropy.unwrap_or_default(),
        oracle: OracleHold::default(),
    });
    let proxy = spawn_proxy(&handle, ctx.clone(), 0);
    let proxies = spec.proxies.clamp(1, 2);
    // a second proxy instance shares the first one's durable store (tasks, hints, tombstones, idempotency
    // records) but has its own clock, lanes and replica selector; only the first replays hints
    let _second_proxy = (proxies > 1).then(|| {
        let second = Arc::new(ProxyCtx {
            placement: placement.clone(),
            addrs: ctx.addrs.clone(),
            quorum: spec.quorum,
            disk: ctx.disk.clone(),
            skip_replay: spec.skip_replay,
            idempotency: spec.idempotency,
            selector: Mutex::new(miroir_core::select::Selector::new(
                miroir_core::select::Strategy::Adaptive,
                0.05,
                seed ^ 1,
            )),
            elastic: super::migrate::Elastic::new(None, topology.clone()),
            reshard: super::reshard::Resharding::new(None, topology.clone()),
            clock: Mutex::new(VersionClock::for_instance(1)),
            entropy_bug: spec.entropy.unwrap_or_default(),
            oracle: OracleHold::default(),
        });
        spawn_proxy(&handle, second, 1)
    });
    let admin_node = handle
        .create_node()
        .name("admin")
        .ip("10.0.3.1".parse().expect("ip"))
        .build();

    // 1. setup, without faults
    let setup = admin_node
        .spawn(async move {
            let rpc = RpcClient::bind("10.0.3.1:0".parse().expect("addr")).await.expect("admin endpoint");
            let create = ProxyOp::Broadcast(
                TaskType::IndexCreation,
                Method::Post,
                "/indexes".into(),
                json!({"uid": INDEX, "primaryKey": "id"}),
            );
            let settings = ProxyOp::Broadcast(
                TaskType::SettingsUpdate,
                Method::Patch,
                format!("/indexes/{INDEX}/settings"),
                json!({"filterableAttributes": ["_miroir_shard", "genre", "year"], "sortableAttributes": ["year", "id"]}),
            );
            let mut statuses = Vec::new();
            for op in [create, settings] {
                let uid = match client_call(&rpc, op).await {
                    Ok(r) if r.status == 202 => r.body["taskUid"].as_u64(),
                    _ => None,
                };
                let status = match uid {
                    Some(uid) => wait_task(&rpc, uid, now_ms() + 30_000).await,
                    None => None,
                };
                statuses.push(status);
            }
            statuses
        })
        .await
        .map_err(|_| fail("setup", "the setup task panicked".into(), &schedule))?;
    if setup.iter().any(|s| s.as_deref() != Some("succeeded")) {
        return Err(fail(
            "setup",
            format!("index setup did not succeed: {setup:?}"),
            &schedule,
        ));
    }

    if spec.settings != SettingsMode::Off {
        // the agreement after the setup, then a settings change while one node is down
        let victim = (seed % spec.nodes as u64) as usize;
        let first = admin_node
            .spawn(async move {
                let rpc = RpcClient::bind("10.0.3.1:0".parse().expect("addr"))
                    .await
                    .expect("admin endpoint");
                client_call(&rpc, ProxyOp::SettingsCheck)
                    .await
                    .ok()
                    .map(|r| r.body)
            })
            .await
            .map_err(|_| fail("setup", "the settings check panicked".into(), &schedule))?;
        shared.log(format_args!("settings check after setup -> {first:?}"));
        handle.kill(hosts[victim].id());
        shared.log(format_args!("settings change while node{victim} is down"));
        let change = admin_node
            .spawn(async move {
                let rpc = RpcClient::bind("10.0.3.1:0".parse().expect("addr"))
                    .await
                    .expect("admin endpoint");
                let body = json!({"sortableAttributes": ["year", "id", "title"]});
                client_call(&rpc, ProxyOp::SettingsChange(body))
                    .await
                    .ok()
                    .map(|r| r.status)
            })
            .await
            .map_err(|_| fail("setup", "the settings change panicked".into(), &schedule))?;
        shared.log(format_args!("settings change -> {change:?}"));
        handle.restart(hosts[victim].id());
    }

    // 2. safety: workload under faults
    let clients: Vec<NodeHandle> = (0..proxies)
        .map(|c| {
            let (spec, shared) = (spec.clone(), shared.clone());
            handle
                .create_node()
                .name(format!("client{c}"))
                .ip(IpAddr::V4(Ipv4Addr::new(10, 0, 2, 1 + c as u8)))
                .init(move || workload(spec.clone(), seed, shared.clone(), c))
                .build()
        })
        .collect();
    if schedule.loss_rate > 0.0 {
        let rate = schedule.loss_rate;
        net.update_config(|c| c.packet_loss_rate = rate);
    }
    for d in &disks {
        d.duplicate_per_mille
            .store((schedule.duplicate_rate * 1000.0) as u64, Ordering::SeqCst);
    }
    if mid_run_oracle(&spec, &ctx) {
        ctx.oracle.on.store(true, Ordering::SeqCst);
        shared.prober_done.store(false, Ordering::SeqCst);
        let (ctx, shared) = (ctx.clone(), shared.clone());
        let disks: HostDisks = ids.iter().cloned().zip(disks.iter().cloned()).collect();
        admin_node.spawn(oracle_prober(ctx, shared, proxies as u64, disks));
    }
    if let Some(e) = spec.elastic {
        let lost = e.lost_host().map(|i| hosts[i].id());
        let cut = e
            .partition
            .map(|(i, after, length)| (proxy.id(), hosts[i].id(), after, length));
        super::migrate::request_at(ctx.clone(), handle.clone(), e.at_ms, lost, cut);
        let log = shared.clone();
        super::migrate::progress_faults(
            ctx.clone(),
            handle.clone(),
            proxy.id(),
            hosts.iter().map(|h| h.id()).collect(),
            seed,
            move |m| log.log(m),
            docs_of(disks.clone()),
        );
    }
    if let Some(r) = spec.reshard {
        super::reshard::request_at(ctx.clone(), r.at_ms);
        let log = shared.clone();
        super::reshard::progress_faults(
            ctx.clone(),
            handle.clone(),
            proxy.id(),
            hosts.iter().map(|h| h.id()).collect(),
            seed,
            move |m| log.log(m),
        );
    }
    let start = now_ms();
    let mut down: BTreeSet<usize> = BTreeSet::new();
    let mut proxy_down = false;
    for (at, event) in &schedule.events {
        let wake = start + at;
        let now = now_ms();
        if wake > now {
            time::sleep(Duration::from_millis(wake - now)).await;
        }
        shared.log(format_args!("fault {event}"));
        match *event {
            FaultEvent::KillNode(i) => {
                handle.kill(hosts[i].id());
                down.insert(i);
            }
            FaultEvent::RestartNode(i) => {
                if down.remove(&i) {
                    handle.restart(hosts[i].id());
                }
            }
            FaultEvent::KillProxy => {
                handle.kill(proxy.id());
                proxy_down = true;
            }
            FaultEvent::RestartProxy => {
                if proxy_down {
                    handle.restart(proxy.id());
                    proxy_down = false;
                }
            }
            FaultEvent::Partition(i) => {
                net.clog_link(proxy.id(), hosts[i].id());
                net.clog_link(hosts[i].id(), proxy.id());
            }
            FaultEvent::Heal(i) => {
                net.unclog_link(proxy.id(), hosts[i].id());
                net.unclog_link(hosts[i].id(), proxy.id());
            }
            FaultEvent::Slow(i, ms) => disks[i].slow_ms.store(ms, Ordering::SeqCst),
            FaultEvent::Fast(i) => disks[i].slow_ms.store(0, Ordering::SeqCst),
        }
    }
    let ops_deadline = now_ms() + 600_000;
    while shared.done.load(Ordering::SeqCst) < proxies as u64 {
        if now_ms() > ops_deadline {
            return Err(fail(
                "liveness",
                "the client workload did not finish within 600 s of virtual time".into(),
                &schedule,
            ));
        }
        time::sleep(Duration::from_millis(50)).await;
    }
    drop(clients);

    // 3. liveness: heal everything, then demand convergence
    shared.log("liveness: heal all");
    net.update_config(|c| c.packet_loss_rate = 0.0);
    for (i, d) in disks.iter().enumerate() {
        d.slow_ms.store(0, Ordering::SeqCst);
        d.duplicate_per_mille.store(0, Ordering::SeqCst);
        net.unclog_link(proxy.id(), hosts[i].id());
        net.unclog_link(hosts[i].id(), proxy.id());
    }
    for i in std::mem::take(&mut down) {
        handle.restart(hosts[i].id());
    }
    if proxy_down {
        handle.restart(proxy.id());
    }
    let liveness_deadline = now_ms() + LIVENESS_MS;
    while !ctx.elastic.finished() || !ctx.reshard.finished() {
        if now_ms() > liveness_deadline {
            return Err(fail(
                "liveness",
                format!("the migration did not finish within {LIVENESS_MS} ms of healing"),
                &schedule,
            ));
        }
        time::sleep(Duration::from_millis(100)).await;
    }
    while !shared.prober_done.load(Ordering::SeqCst) {
        if now_ms() > liveness_deadline {
            return Err(fail(
                "liveness",
                "the mid-run oracle did not finish its last comparison".into(),
                &schedule,
            ));
        }
        time::sleep(Duration::from_millis(100)).await;
    }
    let placement = if ctx.elastic.enabled() {
        Placement::new(&ctx.elastic.topology())
            .map_err(|e| fail("migration", e.to_string(), &schedule))?
    } else {
        placement
    };
    if let Some(m) = ctx.elastic.incomplete_cutover() {
        return Err(fail("cutover", m, &schedule));
    }
    if ctx.elastic.enabled() {
        let at = |t: &AtomicU64| t.load(Ordering::SeqCst).saturating_sub(shared.start);
        shared.log(format_args!(
            "migration ran from t+{}ms to t+{}ms; resumed from its record {} time(s)",
            at(&ctx.elastic.started_at),
            at(&ctx.elastic.finished_at),
            ctx.elastic.resumes.load(Ordering::SeqCst)
        ));
    }
    // the index in force and its S (the resharding's new one once swapped)
    let (live_index, live_shards) = ctx.reshard.in_force(spec.shards);
    let placement = if live_shards != spec.shards {
        let mut t = topology.clone();
        t.shards = live_shards;
        Placement::new(&t).map_err(|e| fail("reshard", e.to_string(), &schedule))?
    } else {
        placement
    };
    if ctx.reshard.enabled() {
        let at = |t: &AtomicU64| t.load(Ordering::SeqCst).saturating_sub(shared.start);
        shared.log(format_args!(
            "resharding ran from t+{}ms to t+{}ms, ended {:?} with `{live_index}` (S={live_shards}); resumed from its record {} time(s)",
            at(&ctx.reshard.started_at),
            at(&ctx.reshard.finished_at),
            ctx.reshard.recorded_phase(),
            ctx.reshard.resumes.load(Ordering::SeqCst)
        ));
    }
    let lost = ctx.elastic.lost();
    // a node that was slow may still apply a request it received before the healing (up to its delay
    // later): the late writes land before the anti-entropy pass looks
    if schedule
        .events
        .iter()
        .any(|(_, e)| matches!(e, FaultEvent::Slow(..)))
    {
        time::sleep(Duration::from_millis(spec.slow_max_ms + 100)).await;
    }
    loop {
        // one repair pass: every hint replayed (the proxy is up and every node reachable again)
        let hints = ctx.disk.hints.lock().unwrap().len()
            + ctx.disk.writes_in_flight.load(Ordering::SeqCst) as usize;
        let busy: Vec<usize> = disks
            .iter()
            .enumerate()
            .filter(|(i, _)| !lost.contains(&ids[*i].0))
            .filter(|(_, d)| {
                d.lock().0.state().tasks.values().any(|t| {
                    matches!(
                        t.status,
                        crate::model::TaskStatus::Enqueued | crate::model::TaskStatus::Processing
                    )
                })
            })
            .map(|(i, _)| i)
            .collect();
        if busy.is_empty() && hints == 0 {
            break;
        }
        if now_ms() > liveness_deadline {
            return Err(fail(
                "liveness",
                format!(
                    "nodes {busy:?} still have unfinished tasks and the proxy {hints} hints to replay or writes in flight after {LIVENESS_MS} ms of healing"
                ),
                &schedule,
            ));
        }
        time::sleep(Duration::from_millis(100)).await;
    }
    if spec.settings == SettingsMode::ChangeWhileNodeDown {
        let checked = admin_node
            .spawn(async move {
                let rpc = RpcClient::bind("10.0.3.1:0".parse().expect("addr"))
                    .await
                    .expect("admin endpoint");
                client_call(&rpc, ProxyOp::SettingsCheck)
                    .await
                    .ok()
                    .map(|r| r.body)
            })
            .await
            .map_err(|_| fail("liveness", "the settings check panicked".into(), &schedule))?;
        shared.log(format_args!("settings check after healing -> {checked:?}"));
        // the repairs' node tasks finish too
        let deadline = now_ms() + LIVENESS_MS;
        while disks.iter().any(|d| {
            d.lock().0.state().tasks.values().any(|t| {
                matches!(
                    t.status,
                    crate::model::TaskStatus::Enqueued | crate::model::TaskStatus::Processing
                )
            })
        }) {
            if now_ms() > deadline {
                return Err(fail(
                    "liveness",
                    "settings repairs did not finish".into(),
                    &schedule,
                ));
            }
            time::sleep(Duration::from_millis(100)).await;
        }
    }
    if spec.settings != SettingsMode::Off {
        let hashes: BTreeMap<String, String> = disks
            .iter()
            .enumerate()
            .filter_map(|(i, d)| {
                let guard = d.lock();
                let index = guard.0.state().indexes.get(INDEX)?;
                Some((ids[i].0.clone(), settings_hash(&index.settings.to_json())))
            })
            .collect();
        if let Err(m) = checkers::settings::check(&hashes) {
            return Err(fail("settings", m, &schedule));
        }
    }
    if spec.entropy.is_some() {
        // one anti-entropy pass, as the HTTP proxy's scheduled runner: every replica of every shard is
        // compared and repaired (last writer wins, tombstones kill older copies), on the index in force
        // (a resharding's new one once swapped) with its S
        let shards: Vec<(u32, Vec<NodeId>)> = (0..live_shards)
            .map(|s| {
                let owners = placement
                    .write_targets(s)
                    .into_iter()
                    .filter(|n| !lost.contains(&n.0))
                    .collect();
                (s, owners)
            })
            .collect();
        let entropy_index = live_index.clone();
        let report = admin_node
            .spawn(async move {
                let rpc = RpcClient::bind("10.0.3.1:0".parse().expect("addr"))
                    .await
                    .expect("admin endpoint");
                let op = ProxyOp::AntiEntropy {
                    index: entropy_index,
                    shards,
                    repair: true,
                };
                rpc.call::<ProxyOp, Reply>(proxy_addr(), op, Duration::from_millis(LIVENESS_MS))
                    .await
                    .ok()
                    .map(|r| r.body)
            })
            .await
            .map_err(|_| {
                fail(
                    "liveness",
                    "the anti-entropy pass panicked".into(),
                    &schedule,
                )
            })?;
        let Some(report) = report else {
            return Err(fail(
                "liveness",
                "the anti-entropy pass did not answer".into(),
                &schedule,
            ));
        };
        shared.log(format_args!(
            "anti-entropy: {} shards scanned, {} buckets and {} ids mismatched, {} repairs",
            report["shardsScanned"],
            report["bucketsMismatched"],
            report["idsMismatched"],
            report["repairs"]
        ));
        if report["clean"] != json!(true) {
            return Err(fail(
                "anti_entropy",
                format!("the pass left differences behind: {report}"),
                &schedule,
            ));
        }
    }
    let history = shared.history.lock().unwrap().clone();
    let history = if proxies > 1 {
        history.in_version_order(&ctx.disk.stamps.lock().unwrap())
    } else {
        history
    };
    let acked = history.acked_tasks();
    let expect = history.expectations();
    let probe = {
        let acked = acked.clone();
        let ids: Vec<String> = expect.keys().cloned().collect();
        admin_node
            .spawn(async move {
                let rpc = RpcClient::bind("10.0.3.1:0".parse().expect("addr"))
                    .await
                    .expect("admin endpoint");
                let mut finals = BTreeMap::new();
                for uid in acked {
                    if let Some(s) = wait_task(&rpc, uid, liveness_deadline).await {
                        finals.insert(uid, s);
                    }
                }
                let mut reads = BTreeMap::new();
                for id in ids {
                    if let Ok(r) = client_call(&rpc, ProxyOp::GetDocument(id.clone())).await {
                        match r.status {
                            200 => {
                                reads.insert(id, r.body.as_object().cloned());
                            }
                            404 => {
                                reads.insert(id, None);
                            }
                            _ => {}
                        }
                    }
                }
                let mut searches = Vec::new();
                for q in oracle_queries() {
                    if let Ok(r) = client_call(&rpc, ProxyOp::Search(q.clone())).await {
                        searches.push((q, r));
                    }
                }
                (finals, reads, searches)
            })
            .await
            .map_err(|_| fail("liveness", "the final probe panicked".into(), &schedule))?
    };
    let (finals, reads, searches) = probe;

    // 4. checks
    let mut fleet = FleetView {
        shards: live_shards,
        owners: Vec::new(),
        nodes: BTreeMap::new(),
    };
    for s in 0..live_shards {
        fleet.owners.push(
            placement
                .write_targets(s)
                .into_iter()
                .map(|n| n.0)
                .collect(),
        );
    }
    for (i, d) in disks.iter().enumerate() {
        if lost.contains(&ids[i].0) {
            continue; // gone for good
        }
        let guard = d.lock();
        let mut docs = BTreeMap::new();
        if let Some(index) = guard.0.state().indexes.get(&live_index) {
            for (external, internal) in &index.external {
                if let Some(doc) = index.docs.get(internal) {
                    docs.insert(external.clone(), doc.clone());
                }
            }
        }
        fleet.nodes.insert(ids[i].0.clone(), docs);
    }
    let check = |name: &str, r: Result<(), String>| {
        r.map_err(|m| {
            if let Ok(path) = std::env::var("MIROIR_SIM_FAIL_TRACE") {
                let _ = std::fs::write(path, shared.trace.lock().unwrap().text());
            }
            fail(name, m, &schedule)
        })
    };
    if ctx.reshard.enabled() {
        let indexes: BTreeMap<String, Vec<String>> = disks
            .iter()
            .enumerate()
            .map(|(i, d)| {
                let names = d.lock().0.state().indexes.keys().cloned().collect();
                (ids[i].0.clone(), names)
            })
            .collect();
        check("reshard", ctx.reshard.check_end(&indexes))?;
    }
    check("task_status", checkers::task_status::check(&acked, &finals))?;
    check("lost_write", checkers::lost_write::check(&expect, &reads))?;
    check(
        "resurrection",
        checkers::resurrection::check(&expect, &fleet),
    )?;
    check("convergence", checkers::convergence::check(&expect, &fleet))?;
    if spec.entropy.is_some() {
        check("convergence", checkers::convergence::identical(&fleet))?;
    }
    check("duplicates", checkers::duplicates::check(&fleet))?;
    if spec.idempotency != IdempotencyMode::Off {
        let mut keyed = shared.keyed.lock().unwrap().clone();
        keyed.created = ctx.disk.task_keys.lock().unwrap().clone();
        check("idempotency", checkers::idempotency::check(&keyed))?;
    }
    check("placement", checkers::placement::check(&expect, &fleet))?;
    let oracle_checked = match oracle_corpus(&fleet) {
        Some(corpus) => {
            let mut oracle = oracle_node(&corpus);
            for (q, proxy_reply) in &searches {
                let want = oracle.handle(
                    model::Request::json(
                        model::Method::Post,
                        &format!("/indexes/{INDEX}/search"),
                        &Value::Object(q.clone()),
                    )
                    .bearer(NODE_KEY),
                    now_ms(),
                );
                check(
                    "oracle",
                    checkers::oracle::check(
                        &Value::Object(q.clone()),
                        &proxy_reply.body,
                        &want.body,
                    ),
                )?;
            }
            true
        }
        None => false,
    };
    // last, so that a planted bug the end-state checkers see is reported by them
    if let Some(m) = shared.oracle_during_failure.lock().unwrap().clone() {
        check("oracle_during", Err(m))?;
    }
    let oracle_during = shared.oracle_during.load(Ordering::SeqCst);
    let oracle_skips = shared.oracle_skips.lock().unwrap().clone();
    let oracle_phases = shared.oracle_phases.lock().unwrap().clone();
    shared.log(format_args!(
        "checks passed; oracle compared: {oracle_checked}; mid-run oracle comparisons: {oracle_during} {oracle_phases:?}, skipped: {oracle_skips:?}; acknowledged writes: {}",
        acked.len()
    ));
    let trace = shared.trace.lock().unwrap();
    Ok(Outcome {
        trace_digest: trace.digest(),
        acknowledged: acked.len() as u64,
        trace_text: keep.then(|| trace.text().to_string()),
        oracle_checked,
        oracle_during,
        elastic_faults: ctx.elastic.fired(),
        oracle_skips,
        oracle_phases,
    })
}

/// Whether the run compares searches with the oracle while its migration or resharding is live. Faults of
/// the run or of the change itself (crashes, partitions, lost messages, a node lost for good, an abort) do
/// not turn it off: a moment that does not determine what a correct fleet answers is skipped for a counted
/// reason (see [`Skip`]), every other moment is compared. Left out are runs the oracle does not model:
/// several proxies (only the first one runs the coordinator), keyed retries and a settings change (the
/// oracle's settings are fixed).
fn mid_run_oracle(spec: &Spec, ctx: &ProxyCtx) -> bool {
    spec.proxies == 1
        && spec.idempotency == IdempotencyMode::Off
        && spec.settings == SettingsMode::Off
        && (ctx.elastic.enabled() || ctx.reshard.enabled())
}

/// The labels of the coordinators' current state: `before` until the change starts, `resuming` while a
/// started change has no live coordinator (the proxy crashed and its next incarnation has not resumed it
/// yet), else the phases of the live coordinator (every shard's, for a migration).
fn phase_labels(ctx: &ProxyCtx) -> Vec<String> {
    let mut labels = Vec::new();
    if ctx.elastic.enabled() && !ctx.elastic.finished() {
        match ctx.elastic.live_phases() {
            Some(p) => labels.extend(p.into_iter().map(|p| format!("migration {p}"))),
            None if ctx.elastic.started_at.load(Ordering::SeqCst) > 0 => {
                labels.push("migration resuming".to_string())
            }
            None => labels.push("migration before".to_string()),
        }
    }
    if ctx.reshard.enabled() && !ctx.reshard.finished() {
        match ctx.reshard.live_phase() {
            Some(p) => labels.push(format!("reshard {p}")),
            None if ctx.reshard.started_at.load(Ordering::SeqCst) > 0 => {
                labels.push("reshard resuming".to_string())
            }
            None => labels.push("reshard before".to_string()),
        }
    }
    labels
}

/// The mid-run oracle compares at least this often while the change is live (besides each new phase)...
const ORACLE_DURING_EVERY_MS: u64 = 300;
/// ...up to this many periodic comparisons per run (a new phase is always compared). Each comparison stops
/// the workloads and asks every oracle query: this bounds the cost of a run.
const ORACLE_DURING_MAX: u32 = 2;
/// A phase whose comparison was skipped is tried again (after `ORACLE_DURING_EVERY_MS`) up to this many
/// times in all, while the coordinator stays in it.
const ORACLE_ATTEMPTS_PER_PHASE: u32 = 2;
/// How long the prober waits for the workloads to stop between two operations.
const ORACLE_QUIET_MS: u64 = CLIENT_TIMEOUT.as_millis() as u64 + 2_000;
/// How long a comparison waits, the workloads stopped, for the acknowledged writes' tasks to succeed.
const ORACLE_SETTLE_MS: u64 = 3_000;
/// How long the prober waits for one answer of the proxy, and how many times it asks (a search and a task
/// read are safe to repeat; a lost message is not a wrong answer).
const ORACLE_CALL_TIMEOUT: Duration = Duration::from_millis(5_000);
const ORACLE_CALL_TRIES: usize = 3;

/// Why a mid-run comparison was not made. Each is counted per run ([`Outcome::oracle_skips`]); none of them
/// is a verdict on the answers, and each is a moment where the single-node oracle does not say what a
/// correct fleet answers (or the proxy cannot be asked).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Skip {
    /// The proxy gives no answer (crashed and not restarted yet, or every try was lost): nothing to compare.
    ProxyUnreachable,
    /// A client write stayed in flight for [`ORACLE_QUIET_MS`] after the workloads were asked to stop (e.g.
    /// admitted before a held fence): the history does not hold its outcome yet.
    NotQuiet,
    /// An acknowledged write's task has not succeeded within [`ORACLE_SETTLE_MS`]: a replica that serves
    /// reads has not applied it yet (its node is down or cut off, its hint is not replayed). Meilisearch
    /// makes a write visible to searches once its task succeeded, not when it is enqueued.
    Unsettled,
    /// A write in doubt (no answer, or an error after it may have reached nodes) leaves a document with
    /// several possible states, and the replicas that serve its reads do not settle which one (they differ,
    /// a task or a hint is still pending, or the state changed while the searches ran).
    InDoubt,
    /// The proxy answered a query with the `X-Miroir-Degraded: shards=…` marker three times in a row (a
    /// shard had no reachable replica; the documented `partial` policy): not an equal comparison, but the
    /// answer was checked to be exactly what the oracle answers over the answered shards' documents (a
    /// mismatch fails the run), unless the index or S reads use changed while it was asked.
    Degraded,
}

impl Skip {
    fn name(self) -> &'static str {
        match self {
            Skip::ProxyUnreachable => "proxy_unreachable",
            Skip::NotQuiet => "not_quiet",
            Skip::Unsettled => "unsettled",
            Skip::InDoubt => "in_doubt",
            Skip::Degraded => "degraded",
        }
    }
}

/// The hosts' disks, for the god's-eye reads that settle a write in doubt (never for the expected answers
/// of writes whose outcome the client knows).
type HostDisks = Vec<(NodeId, Arc<Disk<ModelHost>>)>;

/// The mid-run oracle: every time the coordinator enters a phase for the first time (the driver holds it
/// meanwhile, see [`OracleHold`]), once before it starts, and every `ORACLE_DURING_EVERY_MS` besides (at most
/// `ORACLE_DURING_MAX` times), the workloads stop between two operations, every acknowledged write's task
/// must succeed (so its effect is visible on every node that serves reads), the oracle is built from the
/// acknowledged history (a write in doubt is settled by the replicas that serve its reads, within the
/// states the history allows), and the oracle queries through the proxy must answer what the oracle answers.
/// A moment that cannot be compared is skipped for a [`Skip`] reason, counted, and a phase skipped is tried
/// again while it lasts. The first mismatch is kept for the run's checks (`oracle_during`).
async fn oracle_prober(ctx: Arc<ProxyCtx>, shared: Arc<Shared>, clients: u64, disks: HostDisks) {
    let rpc = RpcClient::bind("10.0.3.1:0".parse().expect("addr"))
        .await
        .expect("oracle endpoint");
    let mut equal: BTreeSet<String> = BTreeSet::new();
    let mut attempts: BTreeMap<String, u32> = BTreeMap::new();
    let mut settled: BTreeSet<u64> = BTreeSet::new();
    let mut last = 0;
    let mut periodic = 0;
    loop {
        let labels = phase_labels(&ctx);
        if labels.is_empty() {
            break;
        }
        let held = ctx.oracle.hold.load(Ordering::SeqCst);
        let retry_due = now_ms() >= last + ORACLE_DURING_EVERY_MS;
        let fresh = labels.iter().any(|l| {
            !equal.contains(l)
                && match attempts.get(l) {
                    None => true,
                    Some(n) => *n < ORACLE_ATTEMPTS_PER_PHASE && retry_due,
                }
        });
        let live = !labels.iter().any(|l| l.ends_with(" before"));
        let due = live && periodic < ORACLE_DURING_MAX && retry_due;
        if !(held || fresh || due) {
            time::sleep(Duration::from_millis(25)).await;
            continue;
        }
        if !(held || fresh) {
            periodic += 1;
        }
        let label = labels.join("+");
        for l in &labels {
            *attempts.entry(l.clone()).or_default() += 1;
        }
        let verdict = if proxy_answers(&rpc).await {
            shared.pause.store(true, Ordering::SeqCst);
            // a write whose answer was lost waits out the client's timeout
            let until = now_ms() + ORACLE_QUIET_MS;
            let quiet = || {
                shared.parked.load(Ordering::SeqCst)
                    + shared.done.load(Ordering::SeqCst)
                    + ctx.oracle.fence_waiters.load(Ordering::SeqCst)
                    >= clients
            };
            while !quiet() && now_ms() < until {
                time::sleep(Duration::from_millis(5)).await;
            }
            ctx.oracle.frozen.store(true, Ordering::SeqCst);
            let verdict = if quiet() {
                compare_with_oracle(&rpc, &shared, &ctx, &disks, &mut settled).await
            } else {
                Ok(Err(Skip::NotQuiet))
            };
            ctx.oracle.frozen.store(false, Ordering::SeqCst);
            shared.pause.store(false, Ordering::SeqCst);
            verdict
        } else {
            Ok(Err(Skip::ProxyUnreachable))
        };
        ctx.oracle.hold.store(false, Ordering::SeqCst);
        last = now_ms();
        match verdict {
            Ok(Ok(())) => {
                shared.oracle_during.fetch_add(1, Ordering::SeqCst);
                let mut phases = shared.oracle_phases.lock().unwrap();
                for l in &labels {
                    equal.insert(l.clone());
                    *phases.entry(l.clone()).or_default() += 1;
                }
                shared.log(format_args!("mid-run oracle ({label}): equal"));
            }
            Ok(Err(skip)) => {
                *shared
                    .oracle_skips
                    .lock()
                    .unwrap()
                    .entry(skip.name().to_string())
                    .or_default() += 1;
                shared.log(format_args!(
                    "mid-run oracle ({label}): skipped, {}",
                    skip.name()
                ));
            }
            Err(m) => {
                shared.log(format_args!("mid-run oracle ({label}): MISMATCH"));
                *shared.oracle_during_failure.lock().unwrap() =
                    Some(format!("while the coordinator was in `{label}`: {m}"));
                ctx.oracle.on.store(false, Ordering::SeqCst);
                break;
            }
        }
        time::sleep(Duration::from_millis(25)).await;
    }
    shared.prober_done.store(true, Ordering::SeqCst);
}

/// Asks the proxy something that touches no node (a task that does not exist), so that the workloads are
/// not stopped while it is down.
async fn proxy_answers(rpc: &RpcClient) -> bool {
    oracle_call(rpc, ProxyOp::GetTask(u64::MAX)).await.is_some()
}

/// One read through the proxy on the prober's behalf, repeated when no answer comes.
async fn oracle_call(rpc: &RpcClient, op: ProxyOp) -> Option<Reply> {
    for _ in 0..ORACLE_CALL_TRIES {
        if let Ok(r) = rpc
            .call::<ProxyOp, Reply>(proxy_addr(), op.clone(), ORACLE_CALL_TIMEOUT)
            .await
        {
            return Some(r);
        }
    }
    None
}

/// One mid-run comparison with the workloads stopped: `Ok(Ok(()))` when every query answered what the
/// oracle answers, `Ok(Err(skip))` when the moment does not allow a comparison, `Err` on a mismatch.
/// `settled` keeps the acknowledged tasks already seen succeeded (a final status does not change).
async fn compare_with_oracle(
    rpc: &RpcClient,
    shared: &Shared,
    ctx: &ProxyCtx,
    disks: &HostDisks,
    settled: &mut BTreeSet<u64>,
) -> Result<Result<(), Skip>, String> {
    let history = shared.history.lock().unwrap().clone();
    let until = now_ms() + ORACLE_SETTLE_MS;
    for uid in history.acked_tasks() {
        if settled.contains(&uid) {
            continue;
        }
        let lost = ctx.elastic.lost();
        let status = if lost.is_empty() {
            wait_task(rpc, uid, until).await
        } else {
            // the proxy counts a lost node's node tasks until the migration is over (see
            // `migrate::forget_lost`): judge the task on the replicas that can serve reads
            wait_until(until, || applied_but_for(ctx, disks, uid, &lost)).await
        };
        if status.as_deref() != Some("succeeded") {
            return Ok(Err(Skip::Unsettled));
        }
        settled.insert(uid);
    }
    let mut corpus: BTreeMap<String, Doc> = BTreeMap::new();
    let mut doubts: BTreeMap<String, Vec<Option<Doc>>> = BTreeMap::new();
    for (id, e) in history.expectations() {
        match e {
            crate::history::Expect::Exactly(Some(doc)) => {
                corpus.insert(id, doc);
            }
            crate::history::Expect::Exactly(None) => {}
            crate::history::Expect::OneOf(states) => {
                doubts.insert(id, states);
            }
        }
    }
    let Some(resolved) = settle_doubts(ctx, disks, &doubts) else {
        return Ok(Err(Skip::InDoubt));
    };
    for (id, state) in &resolved {
        if let Some(doc) = state {
            corpus.insert(id.clone(), doc.clone());
        }
    }
    let mut oracle = oracle_node(&corpus);
    let mut pairs = Vec::new();
    let mut degraded = false;
    for q in oracle_queries() {
        let mut tries = 0;
        let (reply, missing, shards) = loop {
            let before = ctx.read_target();
            let Some(reply) = oracle_call(rpc, ProxyOp::Search(q.clone())).await else {
                return Ok(Err(Skip::ProxyUnreachable));
            };
            let Some(marker) =
                checkers::oracle::degraded_shards(reply.status, &reply.headers, &reply.body)
            else {
                break (reply, Vec::new(), 0);
            };
            tries += 1;
            if tries < ORACLE_CALL_TRIES {
                continue; // a shard whose replicas were both missed for a moment (lost messages)
            }
            // the same index and S before and after: the marker names shards of that S
            let after = ctx.read_target();
            if before.0 != after.0 || before.1.shards() != after.1.shards() {
                return Ok(Err(Skip::Degraded));
            }
            let missing = marker.map_err(|m| format!("query {}: {m}", Value::Object(q.clone())))?;
            break (reply, missing, after.1.shards());
        };
        if missing.is_empty() {
            pairs.push((q, reply, None));
        } else {
            // the documented partial answer: exactly what the answered shards hold
            degraded = true;
            let partial = checkers::oracle::answered_part(&corpus, &missing, shards);
            pairs.push((q, reply, Some(partial)));
        }
    }
    // a write in doubt that landed while the searches ran: the answers may mix both states
    if !doubts.is_empty() && settle_doubts(ctx, disks, &doubts).as_ref() != Some(&resolved) {
        return Ok(Err(Skip::InDoubt));
    }
    for (q, reply, partial) in pairs {
        let mut partial_oracle = partial.as_ref().map(oracle_node);
        let want = partial_oracle.as_mut().unwrap_or(&mut oracle).handle(
            model::Request::json(
                model::Method::Post,
                &format!("/indexes/{INDEX}/search"),
                &Value::Object(q.clone()),
            )
            .bearer(NODE_KEY),
            now_ms(),
        );
        if reply.status != 200 {
            return Err(format!(
                "query {}: the proxy answered {} {} where the oracle answers {}",
                Value::Object(q),
                reply.status,
                reply.body,
                want.body
            ));
        }
        checkers::oracle::check(&Value::Object(q), &reply.body, &want.body).map_err(|m| {
            let partial = if partial.is_some() {
                " (a degraded answer, compared with the answered shards' documents)"
            } else {
                ""
            };
            format!("{m}{partial}\n{}", fleet_picture(ctx, disks))
        })?;
    }
    Ok(if degraded {
        Err(Skip::Degraded)
    } else {
        Ok(())
    })
}

/// What each node holds in the index reads use (`id@shard`), and who serves each shard's reads: printed
/// with a mid-run mismatch, to tell a stale or cleaned-up replica from a wrong merge.
fn fleet_picture(ctx: &ProxyCtx, disks: &HostDisks) -> String {
    let (index, placement) = ctx.read_target();
    let mut out = format!("  reads: index `{index}`, S={}", placement.shards());
    for s in 0..placement.shards() {
        let owners: Vec<String> = (0..placement.groups())
            .flat_map(|g| placement.owners(s, g).iter().map(|n| n.0.clone()))
            .collect();
        out.push_str(&format!(" {s}:{owners:?}"));
    }
    for (node, disk) in disks {
        let guard = disk.lock();
        let held: Vec<String> = guard
            .0
            .state()
            .indexes
            .get(&index)
            .map(|ix| {
                ix.external
                    .iter()
                    .map(|(id, internal)| {
                        let shard = ix
                            .docs
                            .get(internal)
                            .and_then(|d| d.get(miroir_core::SHARD_FIELD).cloned());
                        format!("{id}@{}", shard.unwrap_or(Value::Null))
                    })
                    .collect()
            })
            .unwrap_or_default();
        out.push_str(&format!("\n  {node}: {held:?}"));
    }
    out
}

/// Polls `done` every 50 ms until it holds (`Some("succeeded")`) or `until` passes (`None`).
async fn wait_until(until: u64, done: impl Fn() -> bool) -> Option<String> {
    loop {
        if done() {
            return Some("succeeded".to_string());
        }
        if now_ms() >= until {
            return None;
        }
        time::sleep(Duration::from_millis(50)).await;
    }
}

/// Whether Miroir task `uid` succeeded on every node but the ones `lost` for good: each of its node tasks
/// on another node was acknowledged (directly or by a replayed hint) and succeeded there (god's-eye).
fn applied_but_for(ctx: &ProxyCtx, disks: &HostDisks, uid: u64, lost: &[String]) -> bool {
    let Some(record) = ctx.disk.tasks.lock().unwrap().get(&uid).cloned() else {
        return false;
    };
    record.error.is_none()
        && record
            .node_tasks
            .iter()
            .filter(|t| !lost.contains(&t.node.0))
            .all(|t| {
                let Some(node_uid) = t.task_uid else {
                    return false;
                };
                let Some((_, disk)) = disks.iter().find(|(n, _)| *n == t.node) else {
                    return false;
                };
                let guard = disk.lock();
                u32::try_from(node_uid)
                    .ok()
                    .and_then(|u| guard.0.state().tasks.get(&u).map(|task| task.status))
                    == Some(model::tasks::TaskStatus::Succeeded)
            })
}

/// The state of every document in doubt, as the replicas that serve its reads hold it now: `None` unless,
/// for each one, every such replica (the read placement's owners of its shard, in the index reads use)
/// holds the same state, one the history allows, with no task pending on them and no hint pending at the
/// proxy for a node that is not lost for good (either could still change it).
fn settle_doubts(
    ctx: &ProxyCtx,
    disks: &HostDisks,
    doubts: &BTreeMap<String, Vec<Option<Doc>>>,
) -> Option<BTreeMap<String, Option<Doc>>> {
    if doubts.is_empty() {
        return Some(BTreeMap::new());
    }
    let lost = ctx.elastic.lost();
    let hinted = ctx.disk.hints.lock().unwrap().pending_lanes();
    if hinted.iter().any(|(_, node)| !lost.contains(&node.0)) {
        return None;
    }
    let (index, placement) = ctx.read_target();
    let mut resolved = BTreeMap::new();
    for (id, allowed) in doubts {
        let shard = placement.shard_for_key(id);
        let mut seen: Option<Option<Doc>> = None;
        for owner in placement.write_targets(shard) {
            if lost.contains(&owner.0) {
                continue; // gone for good: serves nothing
            }
            let (_, disk) = disks.iter().find(|(n, _)| *n == owner)?;
            let guard = disk.lock();
            let state = guard.0.state();
            if state.has_pending() {
                return None;
            }
            let doc = state.indexes.get(&index).and_then(|ix| {
                let internal = ix.external.get(id)?;
                ix.docs.get(internal).map(client_view)
            });
            match &seen {
                Some(s) if *s != doc => return None,
                Some(_) => {}
                None => seen = Some(doc),
            }
        }
        let state = seen?;
        if !allowed.contains(&state) {
            return None;
        }
        resolved.insert(id.clone(), state);
    }
    Some(resolved)
}

/// The corpus the fleet holds, when every replica agrees on every document (else the oracle is not defined).
fn oracle_corpus(fleet: &FleetView) -> Option<BTreeMap<String, Doc>> {
    let mut corpus: BTreeMap<String, Doc> = BTreeMap::new();
    for docs in fleet.nodes.values() {
        for (id, doc) in docs {
            let doc = client_view(doc);
            match corpus.get(id) {
                Some(existing) if *existing != doc => return None,
                _ => {
                    corpus.insert(id.clone(), doc);
                }
            }
        }
    }
    for (id, _) in corpus.iter() {
        let shard = fleet.shard_of(id) as usize;
        let holders = fleet
            .nodes
            .iter()
            .filter(|(_, d)| d.contains_key(id))
            .count();
        if holders != fleet.owners[shard].len() {
            return None;
        }
    }
    Some(corpus)
}

fn oracle_node(corpus: &BTreeMap<String, Doc>) -> ModelNode {
    let mut node = ModelNode::new(Some(NODE_KEY));
    let now = 1_000;
    let post = |path: &str, body: Value| {
        model::Request::json(model::Method::Post, path, &body).bearer(NODE_KEY)
    };
    node.handle(
        post("/indexes", json!({"uid": INDEX, "primaryKey": "id"})),
        now,
    );
    node.handle(
        model::Request::json(
            model::Method::Patch,
            &format!("/indexes/{INDEX}/settings"),
            &json!({"filterableAttributes": ["genre", "year"], "sortableAttributes": ["year", "id"]}),
        )
        .bearer(NODE_KEY),
        now,
    );
    let docs: Vec<Value> = corpus.values().cloned().map(Value::Object).collect();
    if !docs.is_empty() {
        node.handle(
            post(&format!("/indexes/{INDEX}/documents"), Value::Array(docs)),
            now,
        );
    }
    node.run_until_idle(now);
    node
}

/// The searches compared with the oracle. Queries that return a window of the results break every tie with a
/// unique sort (`id`), because hits whose ranking details are identical may be cut differently at a window's
/// edge; queries without a unique order ask for every hit (`limit` above the id space), so each tie group is
/// whole and compared as a set.
fn oracle_queries() -> Vec<Map<String, Value>> {
    let mut qs = vec![
        json!({"q": "", "limit": 50, "showRankingScoreDetails": true}),
        json!({"q": "", "sort": ["year:asc", "id:asc"], "limit": 7, "showRankingScoreDetails": true}),
        json!({"q": "", "sort": ["year:desc", "id:desc"], "offset": 3, "limit": 5, "showRankingScoreDetails": true}),
        json!({"q": "", "facets": ["genre", "year"], "limit": 0}),
        json!({"q": "", "filter": "genre = drama", "sort": ["id:asc"], "page": 2, "hitsPerPage": 3, "showRankingScoreDetails": true}),
        json!({"q": "storm king", "limit": 50, "showRankingScoreDetails": true, "facets": ["genre"]}),
    ];
    for w in WORDS.iter().take(5) {
        qs.push(json!({"q": w, "limit": 50, "showRankingScoreDetails": true}));
        qs.push(json!({"q": w, "sort": ["id:desc"], "offset": 1, "limit": 3, "showRankingScoreDetails": true}));
    }
    qs.into_iter()
        .filter_map(|q| q.as_object().cloned())
        .collect()
}
