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
//! back. Its task records live on its "disk" and survive a proxy crash.

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
use miroir_core::documents::{plan_batch, plan_delete_ids};
use miroir_core::ops::get::DocumentGet;
use miroir_core::ops::lanes::WriteLanes;
use miroir_core::ops::search::ScatterSearch;
use miroir_core::ops::task::{NodeTaskViews, TaskRead};
use miroir_core::ops::write::{FanoutWrite, WriteTask};
use miroir_core::ops::{Method, NodeRequest, Reply};
use miroir_core::quorum::WriteQuorum;
use miroir_core::routing::Placement;
use miroir_core::search::SearchContext;
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
    /// A fleet change during the safety phase (shard migration), if any.
    pub elastic: Option<super::migrate::ElasticSpec>,
}

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
}

/// The proxy's durable state: its task store.
#[derive(Default)]
struct ProxyDisk {
    next_uid: AtomicU64,
    tasks: Mutex<BTreeMap<u64, MiroirTask>>,
    views: Mutex<BTreeMap<u64, NodeTaskViews>>,
    requests: AtomicU64,
}

pub(crate) struct ProxyCtx {
    placement: Placement,
    addrs: BTreeMap<NodeId, SocketAddr>,
    pub(crate) quorum: WriteQuorum,
    disk: Arc<ProxyDisk>,
    pub(crate) elastic: super::migrate::Elastic,
}

impl ProxyCtx {
    /// The placement reads use: the migration's read view in elastic runs.
    fn read_placement(&self) -> Placement {
        self.elastic
            .read_placement()
            .unwrap_or_else(|| self.placement.clone())
    }
}

pub(crate) fn node_addr(i: usize) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 1, i as u8 + 1)), 7700)
}
const PROXY_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
fn proxy_addr() -> SocketAddr {
    SocketAddr::new(IpAddr::V4(PROXY_IP), 7700)
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

/// Sends the client's reply once, the moment an operation produces it.
pub(crate) struct Replier<'a> {
    ep: &'a Endpoint,
    to: SocketAddr,
    tag: u64,
    sent: bool,
}

impl Replier<'_> {
    pub(crate) async fn send(&mut self, r: Reply) {
        if !self.sent {
            self.sent = true;
            reply(self.ep, self.to, self.tag, r).await;
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
    // Each node receives the index's writes one at a time, in order (core's write lanes).
    let mut calls: FuturesUnordered<_> = write
        .requests()
        .to_vec()
        .into_iter()
        .map(|r| {
            let mut turn = LaneTurn::new(lanes, &r.node);
            async move {
                turn.acquire().await;
                let result = call(ctx, rpc, &r).await;
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
                    let record = write.record();
                    ctx.disk.tasks.lock().unwrap().insert(record.uid, record);
                }
                answer.send(r).await;
            }
        }
    }
    // late acknowledgements still reach the record
    if let Some(r) = write.reply() {
        if r.status == 202 {
            let record = write.record();
            ctx.disk.tasks.lock().unwrap().insert(record.uid, record);
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
        ProxyOp::Documents { replace, docs } => {
            let t = task(
                TaskType::DocumentAdditionOrUpdate,
                details::document_addition(docs.len() as u64),
            );
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
            let placement = ctx.read_placement();
            let groups = placement.groups().max(1);
            let search = ScatterSearch::new(
                INDEX,
                &body,
                &SearchContext::default(),
                &placement,
                &|_| true,
                (n % groups as u64) as u32,
                n,
                UnavailableShardPolicy::Partial,
            );
            let mut search = match search {
                Ok(s) => s,
                Err(e) => return answer.send(Reply::error(&e)).await,
            };
            loop {
                let reqs = search.take_requests();
                if reqs.is_empty() {
                    break;
                }
                let mut calls: FuturesUnordered<_> = reqs
                    .into_iter()
                    .map(|r| async move { (r.id, call(ctx, rpc, &r).await) })
                    .collect();
                while let Some((id, result)) = calls.next().await {
                    match result {
                        Ok(resp) => search.on_response(id, resp.status, resp.body),
                        Err(_) => search.on_failure(id),
                    }
                }
            }
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
            let placement = ctx.read_placement();
            let mut get = DocumentGet::new(INDEX, &id, None, &placement, &|_| true, 0);
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

fn spawn_proxy(handle: &Handle, ctx: Arc<ProxyCtx>) -> NodeHandle {
    handle
        .create_node()
        .name("proxy")
        .ip(IpAddr::V4(PROXY_IP))
        .init(move || {
            let ctx = ctx.clone();
            async move {
                let ep = Arc::new(Endpoint::bind(proxy_addr()).await.expect("proxy address"));
                let rpc = Arc::new(
                    RpcClient::bind(SocketAddr::new(IpAddr::V4(PROXY_IP), 0))
                        .await
                        .expect("proxy client address"),
                );
                super::migrate::spawn_driver(ctx.clone(), rpc.clone());
                // a new incarnation starts with idle lanes (the crashed one's requests died with it)
                let lanes: Lanes = Arc::default();
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
    trace: Mutex<Trace>,
    done: AtomicBool,
    start: u64,
}

impl Shared {
    fn log(&self, event: impl std::fmt::Display) {
        let t = now_ms().saturating_sub(self.start);
        self.trace.lock().unwrap().record(t, event);
    }
}

async fn client_call(rpc: &RpcClient, op: ProxyOp) -> Result<Reply, CallError> {
    rpc.call::<ProxyOp, Reply>(proxy_addr(), op, CLIENT_TIMEOUT)
        .await
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

async fn workload(spec: Spec, seed: u64, shared: Arc<Shared>) {
    let rpc = RpcClient::bind("10.0.2.1:0".parse().expect("client address"))
        .await
        .expect("client endpoint");
    let mut rng = SimRng::new(seed ^ 0xC11E47);
    for step in 0..spec.ops {
        time::sleep(Duration::from_millis(rng.range(5, 120))).await;
        let dice = rng.below(100);
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
            let result = client_call(
                &rpc,
                ProxyOp::Documents {
                    replace: true,
                    docs,
                },
            )
            .await;
            let outcome = outcome_of(&result);
            shared.log(format_args!("client#{step} add -> {outcome:?}"));
            shared.history.lock().unwrap().record(effects, outcome);
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
                .map(|d| (d["id"].to_string(), Effect::Merge(d.clone())))
                .collect();
            let result = client_call(
                &rpc,
                ProxyOp::Documents {
                    replace: false,
                    docs,
                },
            )
            .await;
            let outcome = outcome_of(&result);
            shared.log(format_args!("client#{step} update -> {outcome:?}"));
            shared.history.lock().unwrap().record(effects, outcome);
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
            let result =
                client_call(&rpc, ProxyOp::DeleteByFilter(format!("genre = {genre}"))).await;
            let outcome = outcome_of(&result);
            shared.log(format_args!(
                "client#{step} delete genre = {genre} -> {outcome:?}"
            ));
            shared.history.lock().unwrap().record(effects, outcome);
        } else if dice < 60 {
            let ids: Vec<String> = (0..rng.range(1, 3))
                .map(|_| rng.below(ID_SPACE).to_string())
                .collect();
            let effects = ids.iter().map(|id| (id.clone(), Effect::Delete)).collect();
            let result = client_call(&rpc, ProxyOp::DeleteIds(ids)).await;
            let outcome = outcome_of(&result);
            shared.log(format_args!("client#{step} delete -> {outcome:?}"));
            shared.history.lock().unwrap().record(effects, outcome);
        } else if dice < 80 {
            let q = json!({"q": rng.pick(&WORDS), "limit": rng.range(1, 10)})
                .as_object()
                .cloned()
                .unwrap_or_default();
            let result = client_call(&rpc, ProxyOp::Search(q)).await;
            shared.log(format_args!(
                "client#{step} search -> {:?}",
                result.as_ref().map(|r| r.status)
            ));
        } else if dice < 90 {
            let id = rng.below(ID_SPACE).to_string();
            let result = client_call(&rpc, ProxyOp::GetDocument(id)).await;
            shared.log(format_args!(
                "client#{step} get -> {:?}",
                result.as_ref().map(|r| r.status)
            ));
        } else {
            let acked = shared.history.lock().unwrap().acked_tasks();
            if !acked.is_empty() {
                let uid = *rng.pick(&acked);
                let result = client_call(&rpc, ProxyOp::GetTask(uid)).await;
                let status = result.ok().and_then(|r| r.body.get("status").cloned());
                shared.log(format_args!("client#{step} task {uid} -> {status:?}"));
            }
        }
    }
    shared.done.store(true, Ordering::SeqCst);
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
    let schedule = Schedule::draw(
        spec.faults,
        spec.nodes,
        SAFETY_MS,
        spec.slow_max_ms,
        &mut rng.fork(1),
    );
    let keep = std::env::var("MIROIR_SIM_TRACE").is_ok();
    let shared = Arc::new(Shared {
        history: Mutex::new(History::default()),
        trace: Mutex::new(Trace::new(keep)),
        done: AtomicBool::new(false),
        start: now_ms(),
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
        elastic: super::migrate::Elastic::new(spec.elastic, topology.clone()),
    });
    let proxy = spawn_proxy(&handle, ctx.clone());
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

    // 2. safety: workload under faults
    let client = {
        let (spec, shared) = (spec.clone(), shared.clone());
        handle
            .create_node()
            .name("client")
            .ip("10.0.2.1".parse().expect("ip"))
            .init(move || workload(spec.clone(), seed, shared.clone()))
            .build()
    };
    if schedule.loss_rate > 0.0 {
        let rate = schedule.loss_rate;
        net.update_config(|c| c.packet_loss_rate = rate);
    }
    for d in &disks {
        d.duplicate_per_mille
            .store((schedule.duplicate_rate * 1000.0) as u64, Ordering::SeqCst);
    }
    if let Some(e) = spec.elastic {
        let lost = e.lost_host().map(|i| hosts[i].id());
        let cut = e
            .partition
            .map(|(i, after, length)| (proxy.id(), hosts[i].id(), after, length));
        super::migrate::request_at(ctx.clone(), handle.clone(), e.at_ms, lost, cut);
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
    while !shared.done.load(Ordering::SeqCst) {
        if now_ms() > ops_deadline {
            return Err(fail(
                "liveness",
                "the client workload did not finish within 600 s of virtual time".into(),
                &schedule,
            ));
        }
        time::sleep(Duration::from_millis(50)).await;
    }
    drop(client);

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
    while !ctx.elastic.finished() {
        if now_ms() > liveness_deadline {
            return Err(fail(
                "liveness",
                format!("the migration did not finish within {LIVENESS_MS} ms of healing"),
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
    if ctx.elastic.enabled() {
        let at = |t: &AtomicU64| t.load(Ordering::SeqCst).saturating_sub(shared.start);
        shared.log(format_args!(
            "migration ran from t+{}ms to t+{}ms; resumed from its record {} time(s)",
            at(&ctx.elastic.started_at),
            at(&ctx.elastic.finished_at),
            ctx.elastic.resumes.load(Ordering::SeqCst)
        ));
    }
    let lost = ctx.elastic.lost();
    loop {
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
        if busy.is_empty() {
            break;
        }
        if now_ms() > liveness_deadline {
            return Err(fail(
                "liveness",
                format!(
                    "nodes {busy:?} still have unfinished tasks after {LIVENESS_MS} ms of healing"
                ),
                &schedule,
            ));
        }
        time::sleep(Duration::from_millis(100)).await;
    }
    let history = shared.history.lock().unwrap().clone();
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
        shards: spec.shards,
        owners: Vec::new(),
        nodes: BTreeMap::new(),
    };
    for s in 0..spec.shards {
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
        if let Some(index) = guard.0.state().indexes.get(INDEX) {
            for (external, internal) in &index.external {
                if let Some(doc) = index.docs.get(internal) {
                    docs.insert(external.clone(), doc.clone());
                }
            }
        }
        fleet.nodes.insert(ids[i].0.clone(), docs);
    }
    let check = |name: &str, r: Result<(), String>| r.map_err(|m| fail(name, m, &schedule));
    check("task_status", checkers::task_status::check(&acked, &finals))?;
    check("lost_write", checkers::lost_write::check(&expect, &reads))?;
    check(
        "resurrection",
        checkers::resurrection::check(&expect, &fleet),
    )?;
    check("convergence", checkers::convergence::check(&expect, &fleet))?;
    check("duplicates", checkers::duplicates::check(&fleet))?;
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
    shared.log(format_args!(
        "checks passed; oracle compared: {oracle_checked}; acknowledged writes: {}",
        acked.len()
    ));
    let trace = shared.trace.lock().unwrap();
    Ok(Outcome {
        trace_digest: trace.digest(),
        acknowledged: acked.len() as u64,
        trace_text: keep.then(|| trace.text().to_string()),
        oracle_checked,
    })
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
