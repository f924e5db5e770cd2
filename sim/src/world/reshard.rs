//! The simulated proxy's resharding driver: the shell around miroir-core's `reshard::Reshard`, as the HTTP
//! proxy will run it (the same shape as the migration driver in `migrate.rs`).
//!
//! A scenario with a [`ReshardSpec`] asks for one change of S at a given time of the safety phase. The
//! proxy's driver task then starts the coordinator, carries out its actions (node requests in parallel,
//! records persisted on the proxy's disk before they are acknowledged) and sleeps until the next wake-up.
//! Once asked for, every client write of the index goes through `Reshard::try_write` (waiting while the
//! fence is up): the live part through the proxy's write lanes and hints like any write, the secondary part
//! (shadow, or retained old index) sent directly, best effort. Reads go to `Reshard::read_target`: the live
//! index and its placement. The coordinator is kept after it finished so the index name and S it leaves in
//! force keep routing. A proxy crash kills it with the proxy; the next incarnation resumes it from the
//! persisted record, and until then client writes wait (a write routed without it could miss the index in
//! force).
//!
//! Starting the coordinator must not race writes routed without it: while the driver starts one, new writes
//! wait at a gate and the ones already routed by the plain placement drain first.
//!
//! Faults tied to the coordinator's progress ([`ReshardSpec::proxy_crash`], [`ReshardSpec::node_crash`],
//! [`ReshardSpec::abort_after_docs`]) fire when it first reaches the named phase.

use super::fleet::{
    call, run_stamped_write, run_write, stamp_write, FenceWait, Lanes, ProxyCtx, Replier, INDEX,
    NODE_TIMEOUT,
};
use super::net::{now_ms, RpcClient};
use madsim::export::futures::future::join;
use madsim::export::futures::stream::{FuturesUnordered, StreamExt};
use madsim::time;
use miroir_core::ops::write::{FanoutWrite, WriteTask};
use miroir_core::ops::{Method, Reply};
use miroir_core::reshard::{
    Action, Phase, PlantedBug, Reshard, ReshardParams, ReshardWrite, WriteIntent,
};
use miroir_core::routing::Placement;
use miroir_core::topology::Topology;
use miroir_core::MeiliError;
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// When the proxy crashes during a resharding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyCrash {
    /// Never (beyond the scenario's fault schedule).
    Never,
    /// When the coordinator first reaches this phase (or a later one).
    InPhase(Phase),
    /// In the phase the seed picks among [`CRASH_PHASES`].
    BySeed,
}

/// The phases a [`ProxyCrash::BySeed`] run crashes in, by `seed % len`.
pub const CRASH_PHASES: [Phase; 7] = [
    Phase::CreateShadow,
    Phase::Backfill,
    Phase::Verify,
    Phase::Fence,
    Phase::Swap,
    Phase::Retain,
    Phase::Cleanup,
];

/// What a resharding scenario does.
#[derive(Debug, Clone, Copy)]
pub struct ReshardSpec {
    /// The new S (the old one is the scenario's `shards`).
    pub new_shards: u32,
    /// When, after the safety phase starts, the resharding is requested.
    pub at_ms: u64,
    /// A bug to plant in the coordinator.
    pub planted: PlantedBug,
    /// Backfill throttle.
    pub docs_per_second: u64,
    /// How long the old index is kept after the swap.
    pub retention_ms: u64,
    /// The proxy crashes (and restarts 300 ms later) in a phase.
    pub proxy_crash: ProxyCrash,
    /// A node (picked by the seed) crashes when the backfill starts and restarts this many ms later.
    pub node_crash: Option<u64>,
    /// Node `i` is cut off from the proxy once the backfill copied `docs` documents, for `ms`:
    /// `(i, docs, ms)`.
    pub partition: Option<(usize, u64, u64)>,
    /// The operator aborts once the backfill copied this many documents (in the verify at the latest).
    pub abort_after_docs: Option<u64>,
    /// Once the backfill copied `docs` documents, every dual write to the shadow is lost for `ms`:
    /// `(docs, ms)` (the shadow's nodes never see them; live writes are unaffected).
    pub shadow_loss: Option<(u64, u64)>,
}

impl ReshardSpec {
    /// A resharding to `new_shards` requested 1.2 s into the safety phase, with no fault of its own.
    pub fn to(new_shards: u32) -> Self {
        ReshardSpec {
            new_shards,
            at_ms: 1_200,
            planted: PlantedBug::None,
            docs_per_second: 20,
            retention_ms: 1_000,
            proxy_crash: ProxyCrash::Never,
            node_crash: None,
            partition: None,
            abort_after_docs: None,
            shadow_loss: None,
        }
    }
}

/// The resharding state of the simulated proxy. Fields marked durable live on its disk and survive a crash.
pub struct Resharding {
    spec: Option<ReshardSpec>,
    topology: Topology,
    /// Durable: the last persisted record.
    record: Mutex<Option<Value>>,
    /// Durable: the operator asked for the resharding.
    requested: AtomicBool,
    /// Durable: the operator asked for an abort.
    abort_requested: AtomicBool,
    /// This incarnation: the coordinator (kept once finished: it routes to the index left in force).
    live: Mutex<Option<Reshard>>,
    /// This incarnation: writes routed by the plain placement, still running.
    plain_in_flight: AtomicU64,
    /// This incarnation: the coordinator is being started; new writes wait.
    gate: AtomicBool,
    /// The phases reached (god's-eye, for the fault triggers).
    reached: Mutex<Vec<Phase>>,
    /// Documents the backfill copied (god's-eye, for the fault triggers).
    copied: AtomicU64,
    /// The fault of [`ReshardSpec::shadow_loss`] is on.
    shadow_lossy: Arc<AtomicBool>,
    /// How many times a coordinator was resumed from a record.
    pub resumes: AtomicU64,
    /// Virtual time (ms) at which the resharding started and finished (0 = not yet).
    pub started_at: AtomicU64,
    pub finished_at: AtomicU64,
}

fn params(spec: &ReshardSpec, topology: &Topology) -> ReshardParams {
    let mut p = ReshardParams::new(INDEX, "id", topology.clone(), spec.new_shards);
    p.planted = spec.planted;
    p.docs_per_second = spec.docs_per_second;
    p.retention_ms = spec.retention_ms;
    p.page_size = 3;
    p.retry_after_ms = 300;
    p.fence_timeout_ms = 3_000;
    p
}

impl Resharding {
    /// The state for a run; `spec = None` for scenarios without resharding.
    pub fn new(spec: Option<ReshardSpec>, topology: Topology) -> Self {
        Resharding {
            spec,
            topology,
            record: Mutex::new(None),
            requested: AtomicBool::new(false),
            abort_requested: AtomicBool::new(false),
            live: Mutex::new(None),
            plain_in_flight: AtomicU64::new(0),
            gate: AtomicBool::new(false),
            reached: Mutex::new(Vec::new()),
            copied: AtomicU64::new(0),
            shadow_lossy: Arc::default(),
            resumes: AtomicU64::new(0),
            started_at: AtomicU64::new(0),
            finished_at: AtomicU64::new(0),
        }
    }

    /// Whether this run reshards.
    pub fn enabled(&self) -> bool {
        self.spec.is_some()
    }

    /// The operator asks for the resharding.
    pub fn request(&self) {
        self.requested.store(true, Ordering::SeqCst);
    }

    /// Whether the resharding was asked for and is over (done or aborted); true when there is none.
    pub fn finished(&self) -> bool {
        self.spec.is_none() || self.finished_at.load(Ordering::SeqCst) > 0
    }

    /// The index reads use now and its placement (`None` when nothing is live: the plain index).
    pub fn read_target(&self) -> Option<(String, Placement)> {
        self.spec?;
        let guard = self.live.lock().unwrap();
        let m = guard.as_ref()?;
        let (index, p) = m.read_target();
        Some((index.to_string(), p.clone()))
    }

    /// The index in force and its S according to the durable record (god's-eye, after quiescence).
    pub fn in_force(&self, shards: u32) -> (String, u32) {
        let record = self.record.lock().unwrap().clone();
        let Some(r) = record else {
            return (INDEX.to_string(), shards);
        };
        let side = |k: &str| {
            (
                r[k]["index"].as_str().unwrap_or(INDEX).to_string(),
                r[k]["shards"].as_u64().unwrap_or(u64::from(shards)) as u32,
            )
        };
        match r["phase"].as_str() {
            Some("swap" | "retain" | "cleanup" | "done") => side("dst"),
            _ => side("src"),
        }
    }

    /// Whether the coordinator reached `phase` (or a later one on the way to done).
    pub fn reached(&self, phase: Phase) -> bool {
        self.reached.lock().unwrap().contains(&phase)
    }

    /// The live coordinator's phase (`None` while no coordinator is live).
    pub fn live_phase(&self) -> Option<String> {
        let guard = self.live.lock().unwrap();
        guard.as_ref().map(|m| format!("{:?}", m.phase()))
    }

    /// The last persisted phase (god's-eye).
    pub fn recorded_phase(&self) -> Option<String> {
        let r = self.record.lock().unwrap();
        r.as_ref()
            .and_then(|r| r["phase"].as_str().map(str::to_string))
    }

    fn note(&self, m: &Reshard) {
        self.copied
            .fetch_max(m.status().docs_copied, Ordering::SeqCst);
        let phase = m.phase();
        let mut reached = self.reached.lock().unwrap();
        // every phase up to the current one on the forward path counts as reached
        let upto: Vec<Phase> = match phase {
            Phase::Aborting | Phase::Aborted => vec![phase],
            p => CRASH_PHASES.iter().copied().filter(|x| *x <= p).collect(),
        };
        for p in upto {
            if !reached.contains(&p) {
                reached.push(p);
            }
        }
    }

    /// A proxy incarnation starts: whatever was live died with the previous one.
    fn reset(&self) {
        *self.live.lock().unwrap() = None;
        self.plain_in_flight.store(0, Ordering::SeqCst);
        self.gate.store(false, Ordering::SeqCst);
    }
}

/// Starts the driver of one proxy incarnation (call it from the proxy's init).
pub(crate) fn spawn_driver(ctx: Arc<ProxyCtx>, rpc: Arc<RpcClient>) {
    ctx.reshard.reset();
    if !ctx.reshard.enabled() {
        return;
    }
    madsim::task::spawn_local(drive(ctx, rpc));
}

async fn drive(ctx: Arc<ProxyCtx>, rpc: Arc<RpcClient>) {
    let rs = &ctx.reshard;
    let Some(spec) = rs.spec else { return };
    let mut last_phases = std::collections::BTreeSet::new();
    loop {
        let live = rs.live.lock().unwrap().is_some();
        if !live {
            let record = rs.record.lock().unwrap().clone();
            let started = match record {
                Some(r) => {
                    rs.resumes.fetch_add(1, Ordering::SeqCst);
                    Reshard::resume(&r, params(&spec, &rs.topology))
                }
                None if rs.requested.load(Ordering::SeqCst) => {
                    // close the gate and let plainly routed writes drain before routing by the coordinator
                    rs.gate.store(true, Ordering::SeqCst);
                    while rs.plain_in_flight.load(Ordering::SeqCst) > 0 {
                        time::sleep(Duration::from_millis(5)).await;
                    }
                    Reshard::start(params(&spec, &rs.topology))
                }
                None => {
                    time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            };
            match started {
                Ok(m) => {
                    let _ = rs.started_at.compare_exchange(
                        0,
                        now_ms(),
                        Ordering::SeqCst,
                        Ordering::SeqCst,
                    );
                    *rs.live.lock().unwrap() = Some(m);
                }
                Err(e) => panic!("the resharding could not start: {e}"),
            }
            rs.gate.store(false, Ordering::SeqCst);
        }
        // the operator's abort, once the backfill copied enough
        if let Some(n) = spec.abort_after_docs {
            let mut guard = rs.live.lock().unwrap();
            if let Some(m) = guard.as_mut() {
                let st = m.status();
                let asked = rs.abort_requested.load(Ordering::SeqCst);
                // (a backfill of fewer documents is aborted in the verify at the latest)
                let due = (st.phase == Phase::Backfill && st.docs_copied >= n)
                    || matches!(st.phase, Phase::Verify | Phase::Fence);
                if asked || due {
                    rs.abort_requested.store(true, Ordering::SeqCst);
                    if m.abort(now_ms()).is_err() {
                        // too late (the swap is recorded): the operator's abort is refused
                        rs.abort_requested.store(false, Ordering::SeqCst);
                    }
                }
            }
        }
        // carry out every action
        loop {
            let action = {
                let mut guard = rs.live.lock().unwrap();
                let Some(m) = guard.as_mut() else { break };
                m.handle_timeout(now_ms());
                rs.note(m);
                m.poll_action()
            };
            match action {
                Some(Action::Send(req))
                    if req.method != Method::Get
                        && ctx.disk.hints.lock().unwrap().has_pending(INDEX, &req.node) =>
                {
                    // A node request never overtakes the node's hints (they hold live writes the copy, the
                    // verify or a deletion must come after): retried once they are replayed.
                    if let Some(m) = rs.live.lock().unwrap().as_mut() {
                        m.on_failure(req.id, now_ms());
                    }
                }
                Some(Action::Send(req)) => {
                    let (ctx, rpc) = (ctx.clone(), rpc.clone());
                    madsim::task::spawn_local(async move {
                        let result = call(&ctx, &rpc, &req).await;
                        let mut guard = ctx.reshard.live.lock().unwrap();
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
                    *rs.record.lock().unwrap() = Some(record);
                    if let Some(m) = rs.live.lock().unwrap().as_mut() {
                        m.on_persisted(seq, now_ms());
                        rs.note(m);
                    }
                }
                None => break,
            }
        }
        let wake = {
            let guard = rs.live.lock().unwrap();
            match guard.as_ref() {
                Some(m) if m.is_finished() => {
                    let _ = rs.finished_at.compare_exchange(
                        0,
                        now_ms(),
                        Ordering::SeqCst,
                        Ordering::SeqCst,
                    );
                    return;
                }
                Some(m) => m.poll_timeout(),
                None => None,
            }
        };
        ctx.oracle
            .pause_at_change(rs.live_phase().map(|p| vec![p]), &mut last_phases)
            .await;
        let now = now_ms();
        let sleep = wake.map_or(20, |w| w.saturating_sub(now).clamp(1, 20));
        time::sleep(Duration::from_millis(sleep)).await;
    }
}

/// A client write of a resharding run: through the coordinator once the resharding was asked for (waiting
/// while the fence is up or while a crashed proxy's coordinator is being resumed), through the plain
/// placement before. `plain` builds the write from a placement.
pub(crate) async fn serve_write(
    ctx: &ProxyCtx,
    rpc: &RpcClient,
    lanes: &Lanes,
    intent: WriteIntent,
    task: WriteTask,
    answer: &mut Replier<'_>,
    plain: impl Fn(WriteTask, u64) -> Result<FanoutWrite, MeiliError>,
) {
    let rs = &ctx.reshard;
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
            let mut guard = rs.live.lock().unwrap();
            guard
                .as_mut()
                .map(|m| m.try_write(intent.clone(), task.clone(), ctx.quorum, deadline))
        };
        match admitted {
            Some(Ok(Some(ReshardWrite {
                mut live,
                mut secondary,
                ticket,
            }))) => {
                fence_wait.done();
                // one version for the client write on both indexes, or a copy on the secondary would be
                // older than a tombstone the write came after
                stamp_write(ctx, &mut live, &mut secondary, answer.op_tag).await;
                let lossy = rs.shadow_lossy.load(Ordering::SeqCst);
                let copies = async {
                    let mut calls: FuturesUnordered<_> = secondary
                        .iter()
                        .filter(|_| !lossy)
                        .map(|r| async move { call(ctx, rpc, r).await })
                        .collect();
                    while calls.next().await.is_some() {}
                };
                join(run_stamped_write(ctx, rpc, lanes, live, answer), copies).await;
                if let Some(m) = rs.live.lock().unwrap().as_mut() {
                    m.write_finished(ticket, now_ms());
                }
                return;
            }
            Some(Ok(None)) => fence_wait.mark(ctx), // fenced: wait
            Some(Err(e)) => return answer.send(Reply::error(&e)).await,
            None if !rs.gate.load(Ordering::SeqCst)
                && !rs.requested.load(Ordering::SeqCst)
                && rs.record.lock().unwrap().is_none() =>
            {
                rs.plain_in_flight.fetch_add(1, Ordering::SeqCst);
                match plain(task.clone(), deadline) {
                    Ok(w) => run_write(ctx, rpc, lanes, w, answer).await,
                    Err(e) => answer.send(Reply::error(&e)).await,
                }
                rs.plain_in_flight.fetch_sub(1, Ordering::SeqCst);
                return;
            }
            None => {} // the coordinator is starting or being resumed: wait
        }
        time::sleep(Duration::from_millis(5)).await;
    }
}

/// The operator's request, `at_ms` after now.
pub(crate) fn request_at(ctx: Arc<ProxyCtx>, at_ms: u64) {
    madsim::task::spawn(async move {
        time::sleep(Duration::from_millis(at_ms)).await;
        ctx.reshard.request();
    });
}

/// The faults tied to the coordinator's progress: the proxy crashes in a phase (restarting 300 ms later),
/// a node crashes or is cut off when the backfill starts. `log` records what fired in the run's trace.
pub(crate) fn progress_faults(
    ctx: Arc<ProxyCtx>,
    handle: madsim::runtime::Handle,
    proxy: madsim::task::NodeId,
    hosts: Vec<madsim::task::NodeId>,
    seed: u64,
    log: impl Fn(String) + Send + 'static,
) {
    let Some(spec) = ctx.reshard.spec else { return };
    let crash_in = match spec.proxy_crash {
        ProxyCrash::Never => None,
        ProxyCrash::InPhase(p) => Some(p),
        ProxyCrash::BySeed => Some(CRASH_PHASES[(seed % CRASH_PHASES.len() as u64) as usize]),
    };
    madsim::task::spawn(async move {
        let mut crashed = false;
        let mut node_fault = false;
        let mut cut = spec.partition.is_none();
        let mut lost = spec.shadow_loss.is_none();
        type Later = Box<dyn FnOnce() + Send>;
        let mut restarts: Vec<(u64, Later)> = Vec::new();
        loop {
            let now = now_ms();
            let (due, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut restarts)
                .into_iter()
                .partition(|(t, _)| *t <= now);
            restarts = rest;
            for (_, f) in due {
                f();
            }
            if let Some(p) = crash_in {
                if !crashed && ctx.reshard.reached(p) {
                    crashed = true;
                    log(format!(
                        "reshard fault: proxy crash in {p:?} (recorded {:?})",
                        ctx.reshard.recorded_phase()
                    ));
                    handle.kill(proxy);
                    let h = handle.clone();
                    restarts.push((now + 300, Box::new(move || h.restart(proxy))));
                }
            }
            if !node_fault && ctx.reshard.reached(Phase::Backfill) {
                node_fault = true;
                if let Some(ms) = spec.node_crash {
                    let i = (seed % hosts.len() as u64) as usize;
                    log(format!("reshard fault: node{i} crashes for {ms} ms"));
                    handle.kill(hosts[i]);
                    let h = handle.clone();
                    let id = hosts[i];
                    restarts.push((now + ms, Box::new(move || h.restart(id))));
                }
            }
            if !cut
                && ctx.reshard.copied.load(Ordering::SeqCst) >= spec.partition.map_or(0, |p| p.1)
            {
                cut = true;
                if let Some((i, docs, ms)) = spec.partition {
                    log(format!(
                        "reshard fault: node{i} cut off for {ms} ms after {docs} documents copied"
                    ));
                    let net = madsim::net::NetSim::current();
                    net.clog_link(proxy, hosts[i]);
                    net.clog_link(hosts[i], proxy);
                    let id = hosts[i];
                    restarts.push((
                        now + ms + 1,
                        Box::new(move || {
                            let net = madsim::net::NetSim::current();
                            net.unclog_link(proxy, id);
                            net.unclog_link(id, proxy);
                        }),
                    ));
                }
            }
            if !lost
                && ctx.reshard.copied.load(Ordering::SeqCst) >= spec.shadow_loss.map_or(0, |p| p.0)
            {
                lost = true;
                if let Some((docs, ms)) = spec.shadow_loss {
                    log(format!(
                        "reshard fault: dual writes to the shadow lost for {ms} ms after {docs} documents copied"
                    ));
                    ctx.reshard.shadow_lossy.store(true, Ordering::SeqCst);
                    let flag = ctx.reshard.shadow_lossy.clone();
                    restarts.push((
                        now + ms,
                        Box::new(move || flag.store(false, Ordering::SeqCst)),
                    ));
                }
            }
            let idle = crashed || crash_in.is_none();
            if idle && node_fault && cut && lost && restarts.is_empty() {
                return;
            }
            if ctx.reshard.finished() && restarts.is_empty() {
                return;
            }
            time::sleep(Duration::from_millis(2)).await;
        }
    });
}

impl Resharding {
    /// After quiescence: the resharding ended as the scenario asked (aborted when it aborts, done
    /// otherwise), and every node holds the index in force and no other (the shadow was deleted after an
    /// abort, the old index after the cleanup). `indexes` lists each node's index uids.
    pub fn check_end(&self, indexes: &BTreeMap<String, Vec<String>>) -> Result<(), String> {
        let Some(spec) = self.spec else {
            return Ok(());
        };
        let want = if spec.abort_after_docs.is_some() {
            "aborted"
        } else {
            "done"
        };
        let got = self.recorded_phase();
        if got.as_deref() != Some(want) {
            return Err(format!("the resharding ended in {got:?}, not `{want}`"));
        }
        let (in_force, _) = self.in_force(0);
        for (node, names) in indexes {
            if names.iter().any(|n| *n != in_force) {
                return Err(format!(
                    "node {node} holds indexes {names:?}; only `{in_force}` should be left after the resharding"
                ));
            }
            if !names.contains(&in_force) {
                return Err(format!("node {node} lacks the index in force `{in_force}`"));
            }
        }
        Ok(())
    }
}
