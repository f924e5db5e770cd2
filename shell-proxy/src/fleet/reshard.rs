//! Online resharding in the proxy: the shell around miroir-core's `reshard::Reshard` (modelled on the
//! simulator's `sim/src/world/reshard.rs` and on the migration driver of `elastic.rs`).
//!
//! # Records and names
//! Each index ever resharded has one store meta entry under [`RECORD_PREFIX`]`<uid>`: the coordinator's
//! last persisted record plus the knobs it runs with ([`Stored`]). The record names the physical index in
//! force (`src` before the swap, `dst` from the swap on) and its S, and its `generation`: the next
//! resharding of the index takes `generation + 1`, so a shadow name is never reused. A finished record
//! (done or aborted) is kept: it is what maps the client's uid to the physical index
//! (`<uid>__miroir_reshard_<n>`) and to the index's own S.
//!
//! # Routing
//! - Every node request built by the route handlers goes through `Fleet::request_future`, which rewrites
//!   `/indexes/<uid>…` to the physical index in force ([`Fleet::reshard_rewrite`]) and renames it back in
//!   the answer (`uid`, `indexUid`, error messages); index lists and global stats show the client's uid
//!   only and never a `__miroir_reshard_` index. The coordinator's own requests and the secondary dual
//!   writes bypass the rewrite (`Fleet::send_future`): they name physical indexes.
//! - Reads of an index use its own placement ([`Fleet::reshard_placement`]): the coordinator's
//!   `read_target` while it runs, the index's recorded S afterwards.
//! - A client write of an index with a live coordinator is built by `Reshard::try_write` (waiting while the
//!   fence is up): the live part through the normal quorum write path (write lanes, hints), the secondary
//!   part sent directly and best effort; `write_finished` once every request answered.
//!
//! # Lifecycle
//! `POST /_miroir/indexes/{uid}/reshard` checks the request, closes the elastic write gate (writes routed
//! by the plain placement drain first), starts the coordinator and stores its first record before
//! answering 202. A background loop ([`Fleet::reshard_loop`]) carries out every coordinator's actions:
//! node requests in parallel, every `Action::Persist` stored before `on_persisted`. A finished
//! coordinator is retired: its index is then routed by its record. At start (before the first request
//! is served) the stored records are read; one that is not final is resumed once its owner's heartbeat
//! is older than the lease (see below); client writes wait for the reading.
//!
//! A resharding and a fleet migration never run together: each refuses to start while the other runs
//! (409 `miroir_migration_in_progress` / `miroir_reshard_in_progress`), and a fleet change is refused
//! while an index has an S of its own (the migration plans with the fleet's S).
//!
//! # Several proxies on one store
//! One proxy runs a resharding: the record names its `owner` (the proxy's instance id) and a
//! `heartbeat` the owner renews every third of `rebalancer.lease_ms`; every record is stored by
//! compare-and-set on the value its writer last stored (the first one on the value the starting proxy
//! read: two proxies never both start one). Every proxy reads all the records at start and then every
//! `rebalancer.topology_poll_ms` ([`Fleet::reshard_poll`]):
//! - a finished record maps the uid to its physical index and S;
//! - a live record of another owner, renewed within the lease, is *foreign*: reads of the index follow
//!   core's `Reshard::resume(record).read_target()` (the old index and S until the swap record, the new
//!   ones from it on), and writes of the index are refused with 503 `miroir_reshard_in_progress`
//!   (index-level changes with 409);
//! - a live record whose owner went silent for the lease (or this proxy's own before a restart) is taken
//!   over (compare-and-set) and resumed; a coordinator whose record was taken over stops at its next store.
//!
//! Why no write accepted by another proxy B is lost: the coordinator A stores its first record, then does
//! nothing for two polls (`hold_until`): no dual write, no copy, no fence. Within a poll B reads the
//! record, marks the index foreign (from then on `write_route` refuses its writes, checked under the
//! write gate's lock) and then closes its write gate, i.e. waits for every write of B routed before the
//! mark to be answered by its nodes (so enqueued there). Hence every write acknowledged by B is in the
//! live index's node queues before A starts the backfill, a fortiori before the fence's barriers: the
//! backfill or a verify pass (the last one under the fence, after the barriers) brings it to the shadow
//! before the swap; B accepts no write of the index until the record is final, and then routes by the
//! final record like A. Symmetrically, whenever a stored record changes the physical index in force
//! (the swap, a rollback's swap back) the coordinator holds for two polls again, so the index B may still
//! read (it reads by the record it last saw) is not deleted before B saw the change: the old index is
//! deleted at the earliest two polls after the swap, the abandoned one of a rollback likewise. The bound
//! "two polls" assumes a poll pass (one store read) is shorter than a poll period and that a write B
//! routed before the mark is answered within that time, as the fleet change's start does (elastic.rs).
//!
//! Known limits: a write of B whose node request is still in the network when B gave up on it (timed out)
//! may arrive after the fence; an owner that stops renewing while alive (a store outage longer than the
//! lease) may run on until its next store while another proxy resumes the record. Index list pages hide
//! the shadow entries after paging, so a page may hold fewer entries than `limit`.

use super::{json_body, now_ms, reply_response, Answer, Fleet};
use crate::http_util::{json_response, ProxyResponse};
use crate::server::{AppState, ProxyRequest};
use miroir_core::migration::WriteIntent as MigrationIntent;
use miroir_core::ops::write::WriteTask;
use miroir_core::ops::Method;
use miroir_core::quorum::WriteQuorum;
use miroir_core::reshard::{self, Action, Phase, Reshard, ReshardParams, Side, WriteIntent};
use miroir_core::routing::Placement;
use miroir_core::{MeiliError, Millis};
use prometheus::{IntGauge, IntGaugeVec, Opts};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::task::JoinSet;

/// Store meta key prefix of the per-index resharding records.
pub const RECORD_PREFIX: &str = "reshard/record/";
/// What every shadow index name contains.
const MARKER: &str = "__miroir_reshard_";
/// Documents per page read by a coordinator.
const PAGE_SIZE: usize = 200;
/// The largest S a resharding may ask for.
pub const MAX_SHARDS: u64 = 4096;

fn record_key(uid: &str) -> String {
    format!("{RECORD_PREFIX}{uid}")
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn bad(message: impl Into<String>) -> MeiliError {
    MeiliError::invalid(400, "miroir_invalid_reshard", message)
}

fn in_progress(uid: &str) -> MeiliError {
    MeiliError::invalid(
        409,
        "miroir_reshard_in_progress",
        format!(
            "Index `{uid}` is being resharded: wait for `GET /_miroir/indexes/{uid}/reshard/status` to report it done."
        ),
    )
}

/// A write refused because another proxy runs the index's resharding (its writes must go through that
/// proxy's coordinator: dual writes and the fence).
pub(crate) fn resharding_elsewhere(uid: &str) -> MeiliError {
    MeiliError::new(
        503,
        "miroir_reshard_in_progress",
        miroir_core::ErrorType::System,
        format!(
            "Another proxy is resharding index `{uid}`: its writes go through that proxy until \
             `GET /_miroir/indexes/{uid}/reshard/status` reports it done."
        ),
    )
}

fn no_reshard(uid: &str) -> MeiliError {
    MeiliError::invalid(
        404,
        "miroir_reshard_not_found",
        format!("Index `{uid}` has no resharding in progress."),
    )
}

/// What is stored per index under [`RECORD_PREFIX`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Stored {
    /// The coordinator's last persisted record (see `Reshard::record`).
    pub record: Value,
    /// The backfill throttle.
    pub docs_per_second: u64,
    /// How long the old index is retained after the swap.
    pub retention_ms: Millis,
    /// When the resharding was asked for.
    pub started_at: Millis,
    /// S before the resharding.
    pub from_shards: u32,
    /// S asked for.
    pub to_shards: u32,
    /// The index was deleted since: its record only keeps the generation (the next index of that name
    /// starts with the fleet's S under its own name).
    #[serde(default)]
    pub dropped: bool,
    /// The proxy instance running the resharding (empty in records written before proxies shared them).
    #[serde(default)]
    pub owner: String,
    /// When the owner last stored the record; renewed every third of `rebalancer.lease_ms` while it runs.
    /// A live record older than the lease is taken over by another proxy.
    #[serde(default)]
    pub heartbeat: Millis,
    /// The owner's `server.advertise_url`: the other proxies forward the index's writes there.
    #[serde(default)]
    pub owner_url: Option<String>,
}

/// The physical index in force according to a record: `dst` from the swap on, `src` before.
pub fn in_force(record: &Value) -> Option<Side> {
    let side = |k: &str| serde_json::from_value::<Side>(record.get(k)?.clone()).ok();
    match record.get("phase")?.as_str()? {
        "swap" | "retain" | "cleanup" | "done" => side("dst"),
        _ => side("src"),
    }
}

fn phase_of(record: &Value) -> Option<Phase> {
    serde_json::from_value(record.get("phase")?.clone()).ok()
}

/// One index's live coordinator.
struct Run {
    m: Reshard,
    stored: Stored,
    resumed: bool,
    /// The value last stored for it (what the next compare-and-set expects).
    value: Value,
    /// No action is carried out before this time: the other proxies are given two polls to see the last
    /// stored record (see the module documentation).
    hold_until: Millis,
}

/// A live resharding run by another proxy: its record, rebuilt into a coordinator that is never driven
/// (core's `Reshard::resume` decides where the record's reads go: `read_target`).
struct Foreign {
    m: Reshard,
    /// The stored value it was rebuilt from.
    value: Value,
    /// Where the index's writes are forwarded (the owner's advertised URL).
    owner_url: Option<String>,
}

#[derive(Default)]
struct State {
    runs: BTreeMap<String, Run>,
    /// Live reshardings of other proxies (their indexes' writes are refused here).
    foreign: BTreeMap<String, Foreign>,
    /// Indexes resharded before, not resharding now: their physical index in force and S.
    settled: BTreeMap<String, Side>,
    /// Stored value of every index (finished ones included), for the status and generations.
    stored: BTreeMap<String, Stored>,
}

/// The resharding state of a proxy. See the module documentation.
#[derive(Default)]
pub struct Reshards {
    state: Mutex<State>,
    loaded: tokio::sync::OnceCell<()>,
    wake: tokio::sync::Notify,
    metrics: std::sync::OnceLock<ReshardMetrics>,
}

/// Metrics of the reshardings this proxy runs.
#[derive(Clone)]
struct ReshardMetrics {
    /// Per index: the phase's number (see [`phase_number`]).
    phase: IntGaugeVec,
    /// Per index: documents copied by the backfill.
    docs: IntGaugeVec,
    /// Reshardings running on this proxy.
    active: IntGauge,
}

/// A phase as the `miroir_reshard_phase` gauge shows it: create_shadow 0, backfill 1, verify 2, fence 3,
/// swap 4, retain 5, cleanup 6, done 7, aborting 8, aborted 9.
pub fn phase_number(p: Phase) -> i64 {
    match p {
        Phase::CreateShadow => 0,
        Phase::Backfill => 1,
        Phase::Verify => 2,
        Phase::Fence => 3,
        Phase::Swap => 4,
        Phase::Retain => 5,
        Phase::Cleanup => 6,
        Phase::Done => 7,
        Phase::Aborting => 8,
        Phase::Aborted => 9,
    }
}

impl ReshardMetrics {
    fn new(registry: &prometheus::Registry) -> ReshardMetrics {
        let m = ReshardMetrics {
            phase: IntGaugeVec::new(
                Opts::new(
                    "miroir_reshard_phase",
                    "Phase of the last resharding of an index run by this proxy: create_shadow 0, \
                     backfill 1, verify 2, fence 3, swap 4, retain 5, cleanup 6, done 7, aborting 8, aborted 9.",
                ),
                &["index"],
            )
            .expect("valid metric definition"),
            docs: IntGaugeVec::new(
                Opts::new(
                    "miroir_reshard_documents_copied",
                    "Documents copied to the shadow index by the last resharding of an index run by this proxy.",
                ),
                &["index"],
            )
            .expect("valid metric definition"),
            active: IntGauge::new(
                "miroir_reshard_active",
                "Reshardings running on this proxy.",
            )
            .expect("valid metric definition"),
        };
        for c in [
            Box::new(m.phase.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(m.docs.clone()),
            Box::new(m.active.clone()),
        ] {
            // A second fleet on the same registry (tests) keeps the first registration.
            let _ = registry.register(c);
        }
        m
    }
}

impl Reshards {
    /// The physical index of `uid` when it differs from `uid`.
    fn physical(st: &State, uid: &str) -> Option<String> {
        let name = match (st.runs.get(uid), st.foreign.get(uid)) {
            (Some(run), _) => run.m.read_target().0.to_string(),
            (None, Some(f)) => f.m.read_target().0.to_string(),
            (None, None) => st.settled.get(uid)?.index.clone(),
        };
        (name != uid).then_some(name)
    }
}

/// What a client request resolved for one index: its physical name (`None`: the uid itself) and its
/// placement (`None`: the committed one). See [`Fleet::pinned`].
#[derive(Clone)]
pub(super) struct Pin {
    physical: Option<String>,
    placement: Option<Arc<Placement>>,
}

tokio::task_local! {
    /// The resharding state each index had when the client request running in this task first
    /// needed it ([`Fleet::with_pins`]): a swap (or a rollback) in the middle of a request must not
    /// plan its reads with one S and send them to the index of the other.
    static PINNED: std::cell::RefCell<BTreeMap<String, Pin>>;
}

/// How a node answer is renamed back to the client's uids.
pub(super) enum AnswerFix {
    /// An answer about one index: `physical` is shown as `uid`.
    Index { physical: String, uid: String },
    /// `GET /indexes`: physical → client uids; retained old copies and shadows hidden.
    List(BTreeMap<String, String>),
    /// `GET /stats`: the same on the keys of `indexes`.
    Stats(BTreeMap<String, String>),
}

impl AnswerFix {
    /// Renames the index names of a node answer.
    pub(super) fn apply(&self, body: &mut Value) {
        match self {
            AnswerFix::Index { physical, uid } => {
                if let Some(o) = body.as_object_mut() {
                    for k in ["uid", "indexUid"] {
                        if o.get(k).and_then(Value::as_str) == Some(physical.as_str()) {
                            o.insert(k.into(), Value::String(uid.clone()));
                        }
                    }
                    if let Some(Value::String(m)) = o.get_mut("message") {
                        *m = m.replace(&format!("`{physical}`"), &format!("`{uid}`"));
                    }
                }
            }
            AnswerFix::List(names) => {
                let Some(results) = body.get_mut("results").and_then(Value::as_array_mut) else {
                    return;
                };
                let before = results.len();
                let hidden = |n: &str| {
                    n.contains(MARKER) && !names.contains_key(n)
                        || names.values().any(|u| u == n) && !names.contains_key(n)
                };
                results.retain(|i| !i.get("uid").and_then(Value::as_str).is_some_and(hidden));
                for i in results.iter_mut() {
                    let uid = i
                        .get("uid")
                        .and_then(Value::as_str)
                        .and_then(|n| names.get(n))
                        .cloned();
                    if let (Some(uid), Some(o)) = (uid, i.as_object_mut()) {
                        o.insert("uid".into(), Value::String(uid));
                    }
                }
                let gone = (before - results.len()) as u64;
                if let Some(t) = body.get("total").and_then(Value::as_u64) {
                    body["total"] = Value::from(t.saturating_sub(gone));
                }
            }
            AnswerFix::Stats(names) => {
                let Some(indexes) = body.get_mut("indexes").and_then(Value::as_object_mut) else {
                    return;
                };
                let old = std::mem::take(indexes);
                let clients: Vec<&String> = names.values().collect();
                for (k, v) in old {
                    if let Some(uid) = names.get(&k) {
                        indexes.insert(uid.clone(), v);
                    } else if !k.contains(MARKER) && !clients.contains(&&k) {
                        indexes.insert(k, v);
                    }
                }
            }
        }
    }
}

/// The index uid a node path names (`/indexes/<uid>` followed by `/`, `?` or nothing).
fn path_index(path: &str) -> Option<&str> {
    let rest = path.strip_prefix("/indexes/")?;
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    Some(&rest[..end]).filter(|s| !s.is_empty())
}

/// The body of `POST /_miroir/indexes/{uid}/reshard`.
#[derive(Debug, Clone, PartialEq)]
pub struct ReshardRequest {
    /// The new S.
    pub new_shards: u32,
    /// The backfill throttle (`None`: the configured default).
    pub throttle: Option<u64>,
    /// Only estimate.
    pub dry_run: bool,
}

/// Reads and checks the body of a resharding request.
pub fn parse_request(body: &Value) -> Result<ReshardRequest, MeiliError> {
    let Some(m) = body.as_object() else {
        return Err(bad(format!(
            "Invalid value type: expected an object, but found `{body}`."
        )));
    };
    if let Some(k) = m
        .keys()
        .find(|k| !["new_shards", "throttle_docs_per_sec", "dry_run"].contains(&k.as_str()))
    {
        return Err(bad(format!(
            "Unknown field `{k}`: expected one of `new_shards`, `throttle_docs_per_sec`, `dry_run`."
        )));
    }
    let new_shards = match m.get("new_shards") {
        None => return Err(bad("Missing field `new_shards`.")),
        Some(v) => match v.as_u64() {
            Some(n) if (1..=MAX_SHARDS).contains(&n) => n as u32,
            _ => {
                return Err(bad(format!(
                    "Invalid value at `.new_shards`: expected an integer from 1 to {MAX_SHARDS}, but found `{v}`."
                )))
            }
        },
    };
    let throttle = match m.get("throttle_docs_per_sec") {
        None | Some(Value::Null) => None,
        Some(v) => Some(v.as_u64().ok_or_else(|| {
            bad(format!(
                "Invalid value at `.throttle_docs_per_sec`: expected a non-negative integer, but found `{v}`."
            ))
        })?),
    };
    let dry_run = match m.get("dry_run") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(v) => {
            return Err(bad(format!(
                "Invalid value at `.dry_run`: expected a boolean, but found `{v}`."
            )))
        }
    };
    Ok(ReshardRequest {
        new_shards,
        throttle,
        dry_run,
    })
}

/// A migration intent as a resharding intent (a broadcast's path made relative to the index).
fn intent_of(intent: MigrationIntent, index: &str) -> Result<WriteIntent, MeiliError> {
    Ok(match intent {
        MigrationIntent::Documents { docs, replace } => WriteIntent::Documents { docs, replace },
        MigrationIntent::DeleteIds(ids) => WriteIntent::DeleteIds(ids),
        MigrationIntent::Broadcast { method, path, body } => {
            let suffix = path
                .strip_prefix(&format!("/indexes/{index}"))
                .filter(|s| s.is_empty() || s.starts_with('/') || s.starts_with('?'))
                .ok_or_else(|| MeiliError::internal(format!("unexpected write path `{path}`")))?;
            WriteIntent::IndexBroadcast {
                method,
                suffix: suffix.to_string(),
                body,
            }
        }
    })
}

fn status_json(uid: &str, stored: &Stored, run: Option<&Run>, now: Millis) -> Value {
    let mut out = Map::new();
    out.insert("indexUid".into(), json!(uid));
    out.insert("fromShards".into(), json!(stored.from_shards));
    out.insert("toShards".into(), json!(stored.to_shards));
    out.insert("throttleDocsPerSec".into(), json!(stored.docs_per_second));
    out.insert("startedAt".into(), json!(stored.started_at));
    match run {
        Some(run) => {
            let s = run.m.status();
            let elapsed = now.saturating_sub(stored.started_at).max(1);
            out.insert("phase".into(), json!(s.phase));
            out.insert("running".into(), json!(!run.m.is_finished()));
            out.insert("shards".into(), json!(s.live.shards));
            out.insert("docsCopied".into(), json!(s.docs_copied));
            out.insert("docsTotal".into(), json!(s.docs_total));
            out.insert(
                "docsPerSecond".into(),
                json!(s.docs_copied.saturating_mul(1000) / elapsed),
            );
            out.insert("etaMs".into(), json!(s.eta_ms));
            out.insert("verifyPasses".into(), json!(s.verify_passes));
            out.insert("failures".into(), json!(s.failures));
            out.insert("rollback".into(), json!(s.rollback));
            out.insert("resumed".into(), json!(run.resumed));
        }
        None => {
            let r = &stored.record;
            out.insert(
                "phase".into(),
                r.get("phase").cloned().unwrap_or(Value::Null),
            );
            // a live record without a coordinator here is run by another proxy
            out.insert(
                "running".into(),
                json!(!phase_of(r).is_none_or(Phase::is_final)),
            );
            out.insert(
                "shards".into(),
                json!(in_force(r).map(|s| s.shards).unwrap_or(stored.from_shards)),
            );
            out.insert(
                "docsCopied".into(),
                r.get("docsCopied").cloned().unwrap_or(json!(0)),
            );
            out.insert("docsTotal".into(), Value::Null);
            out.insert("docsPerSecond".into(), json!(0));
            out.insert("etaMs".into(), Value::Null);
            out.insert(
                "rollback".into(),
                r.get("rollback").cloned().unwrap_or(json!(false)),
            );
        }
    }
    Value::Object(out)
}

impl Fleet {
    // ----- routing -----

    /// The path of a node request with the index in force (see the module documentation), and how to
    /// rename the answer back.
    pub(super) fn reshard_rewrite(&self, path: &str) -> (Option<String>, Option<AnswerFix>) {
        let st = lock(&self.reshards.state);
        if st.runs.is_empty() && st.settled.is_empty() && st.foreign.is_empty() {
            return (None, None);
        }
        let names = || -> BTreeMap<String, String> {
            st.runs
                .keys()
                .chain(st.foreign.keys())
                .chain(st.settled.keys())
                .filter_map(|uid| Reshards::physical(&st, uid).map(|p| (p, uid.clone())))
                .collect()
        };
        let bare = path.split('?').next().unwrap_or(path);
        if bare == "/indexes" {
            return (None, Some(AnswerFix::List(names())));
        }
        if bare == "/stats" {
            return (None, Some(AnswerFix::Stats(names())));
        }
        let Some(uid) = path_index(path) else {
            return (None, None);
        };
        drop(st);
        let Some(physical) = self.pinned(uid).physical else {
            return (None, None);
        };
        let rewritten = format!(
            "/indexes/{physical}{}",
            &path["/indexes/".len() + uid.len()..]
        );
        (
            Some(rewritten),
            Some(AnswerFix::Index {
                physical,
                uid: uid.to_string(),
            }),
        )
    }

    /// The placement of an index resharded or resharding (`None`: the committed one applies).
    pub(super) fn reshard_placement(&self, uid: &str) -> Option<Arc<Placement>> {
        self.pinned(uid).placement
    }

    /// Runs `f` (one client request) with its resharding state pinned: the first time the request
    /// needs an index's physical name or placement both are resolved together and kept for the rest
    /// of the request ("resolution is captured once per request").
    pub(crate) async fn with_pins<T>(&self, f: impl std::future::Future<Output = T>) -> T {
        PINNED
            .scope(std::cell::RefCell::new(BTreeMap::new()), f)
            .await
    }

    /// `uid`'s physical name and placement: the pinned ones inside a client request, the current
    /// ones otherwise (the coordinators, background passes).
    fn pinned(&self, uid: &str) -> Pin {
        PINNED
            .try_with(|pins| {
                if let Some(p) = pins.borrow().get(uid) {
                    return p.clone();
                }
                let p = self.resolve(uid);
                pins.borrow_mut().insert(uid.to_string(), p.clone());
                p
            })
            .unwrap_or_else(|_| self.resolve(uid))
    }

    /// `uid`'s physical name and placement now, read under one lock.
    fn resolve(&self, uid: &str) -> Pin {
        let st = lock(&self.reshards.state);
        Pin {
            physical: Reshards::physical(&st, uid),
            placement: self.current_placement(&st, uid),
        }
    }

    fn current_placement(&self, st: &State, uid: &str) -> Option<Arc<Placement>> {
        if let Some(run) = st.runs.get(uid) {
            return Some(Arc::new(run.m.read_target().1.clone()));
        }
        if let Some(f) = st.foreign.get(uid) {
            return Some(Arc::new(f.m.read_target().1.clone()));
        }
        let side = st.settled.get(uid)?;
        let view = self.elastic.view();
        if side.shards == view.topology.shards {
            return None;
        }
        let mut t = (*view.topology).clone();
        t.shards = side.shards;
        Placement::new(&t).ok().map(Arc::new)
    }

    /// The node index and placement holding `uid`'s documents now, for a pass over its replicas: its own
    /// physical name and S once resharded (`None`: the uid and the committed placement). Refused while a
    /// resharding of `uid` has not swapped yet (its verify under the fence is the repair of both sides).
    pub(super) fn reshard_in_force(
        &self,
        uid: &str,
    ) -> Result<Option<(String, Arc<Placement>)>, MeiliError> {
        let physical = {
            let st = lock(&self.reshards.state);
            if st.foreign.contains_key(uid) {
                return Err(in_progress(uid));
            }
            if let Some(run) = st.runs.get(uid) {
                if !matches!(
                    run.m.phase(),
                    Phase::Retain | Phase::Cleanup | Phase::Done | Phase::Aborted
                ) {
                    return Err(in_progress(uid));
                }
            }
            Reshards::physical(&st, uid)
        };
        let placement = self.reshard_placement(uid);
        Ok(match (physical, placement) {
            (None, None) => None,
            (name, placement) => Some((
                name.unwrap_or_else(|| uid.to_string()),
                placement.unwrap_or_else(|| self.placement()),
            )),
        })
    }

    /// Whether client writes of `uid` go through a live coordinator.
    pub(super) fn reshard_active(&self, uid: &str) -> bool {
        lock(&self.reshards.state).runs.contains_key(uid)
    }

    /// Whether another proxy runs a resharding of `uid` (its writes are refused here).
    pub(super) fn reshard_foreign(&self, uid: &str) -> bool {
        lock(&self.reshards.state).foreign.contains_key(uid)
    }

    /// The advertised URL of the proxy running `uid`'s resharding, when another one does.
    pub(super) fn reshard_owner_url(&self, uid: &str) -> Option<String> {
        lock(&self.reshards.state)
            .foreign
            .get(uid)
            .and_then(|f| f.owner_url.clone())
    }

    /// Refuses an index-level change (creation, deletion, swap) of an index being resharded.
    pub(super) fn refuse_while_resharding(&self, uid: &str) -> Result<(), MeiliError> {
        let st = lock(&self.reshards.state);
        let busy =
            st.foreign.contains_key(uid) || st.runs.get(uid).is_some_and(|r| !r.m.is_finished());
        if busy {
            return Err(in_progress(uid));
        }
        Ok(())
    }

    /// Refuses a fleet change while an index reshards or has an S of its own.
    pub(super) fn refuse_fleet_change_while_resharded(&self) -> Result<(), MeiliError> {
        self.retire_finished();
        let st = lock(&self.reshards.state);
        let s = self.elastic.view().topology.shards;
        let busy = st
            .runs
            .keys()
            .chain(st.foreign.keys())
            .next()
            .cloned()
            .or_else(|| {
                st.settled
                    .iter()
                    .find(|(_, side)| side.shards != s)
                    .map(|(u, _)| u.clone())
            });
        match busy {
            Some(uid) => Err(MeiliError::invalid(
                409,
                "miroir_reshard_in_progress",
                format!(
                    "Index `{uid}` is resharding or has its own number of shards: fleet changes are refused while so."
                ),
            )),
            None => Ok(()),
        }
    }

    /// A client write of an index with a live coordinator: admitted by `Reshard::try_write` (waiting
    /// while fenced), routed plainly once the coordinator is retired.
    pub(super) async fn reshard_write(
        &self,
        state: &AppState,
        index: &str,
        intent: MigrationIntent,
        task: WriteTask,
        quorum: WriteQuorum,
    ) -> Result<ProxyResponse, MeiliError> {
        let core_intent = match intent_of(intent.clone(), index) {
            Ok(i) => i,
            Err(e) => return self.failed_task(state, task, &e).await,
        };
        loop {
            let deadline = self.deadline(state);
            let admitted = lock(&self.reshards.state).runs.get_mut(index).map(|r| {
                r.m.try_write(core_intent.clone(), task.clone(), quorum, deadline)
            });
            match admitted {
                Some(Ok(Some(mut w))) => {
                    // one version for the client write on both indexes: a copy on the other index older
                    // than a tombstone the write came after would be deleted by anti-entropy
                    let stamped = self
                        .stamp_or_refuse(state, &mut w.live, &mut w.secondary)
                        .await;
                    let mut secondary = JoinSet::new();
                    if stamped {
                        for r in w.secondary {
                            secondary.spawn(self.send_future(state, r));
                        }
                    }
                    let (mut write, mut set) = if stamped {
                        self.drive_stamped_write(state, w.live).await
                    } else {
                        (w.live, JoinSet::new())
                    };
                    while let Some(done) = set.join_next().await {
                        match done {
                            Ok((id, Ok((status, body)))) => write.on_response(id, status, &body),
                            Ok((id, Err(_))) => write.on_failure(id),
                            Err(_) => {}
                        }
                    }
                    let reply = self.finish_write(state, write, set, true).await;
                    while secondary.join_next().await.is_some() {}
                    if let Some(run) = lock(&self.reshards.state).runs.get_mut(index) {
                        run.m.write_finished(w.ticket, now_ms());
                    }
                    self.reshards.wake.notify_one();
                    return Ok(reply_response(&reply?));
                }
                Some(Ok(None)) => tokio::time::sleep(Duration::from_millis(3)).await,
                Some(Err(e)) => return self.failed_task(state, task, &e).await,
                None => {
                    return self
                        .plain_reshard_fallback(state, index, intent, task)
                        .await
                }
            }
        }
    }

    /// A write whose coordinator was retired meanwhile: routed by the index's own placement.
    async fn plain_reshard_fallback(
        &self,
        state: &AppState,
        index: &str,
        intent: MigrationIntent,
        task: WriteTask,
    ) -> Result<ProxyResponse, MeiliError> {
        let pk = self.cached_primary_key(index);
        match self.write_route(index).await? {
            super::elastic::WriteRoute::Plain(permit) => {
                let write = match super::elastic::plain_write(
                    intent,
                    task.clone(),
                    index,
                    pk.as_deref(),
                    &permit.placement,
                    self.quorum,
                    self.deadline(state),
                ) {
                    Ok(w) => w,
                    Err(e) => return self.failed_task(state, task, &e).await,
                };
                let response = self.answer_write(state, write).await;
                drop(permit);
                response
            }
            super::elastic::WriteRoute::Migrating => {
                self.migrating_write(state, index, intent, task, self.quorum)
                    .await
            }
        }
    }

    // ----- loading and the loop -----

    fn reshard_params(&self, uid: &str, pk: &str, stored: &Stored) -> ReshardParams {
        let topology = (*self.elastic.view().topology).clone();
        let mut p = ReshardParams::new(uid, pk, topology, stored.to_shards);
        p.docs_per_second = stored.docs_per_second;
        p.retention_ms = stored.retention_ms;
        p.page_size = PAGE_SIZE;
        p.retry_after_ms = 300;
        p.fence_timeout_ms = 5_000;
        p
    }

    /// Loads the stored records once, before the first request is served (client writes wait
    /// meanwhile); see [`Fleet::reshard_poll`]. A store error is logged and retried on the next request.
    pub(super) async fn reshard_ready(&self, state: &AppState) {
        let loaded = self
            .reshards
            .loaded
            .get_or_try_init(|| self.reshard_poll(state))
            .await;
        if let Err(e) = loaded {
            tracing::error!(error = %e, "cannot load the resharding records");
        }
    }

    /// Adopts the stored records (at start, then every `rebalancer.topology_poll_ms`): a finished one
    /// maps its index to the physical index and S in force; a live one whose owner renewed it within
    /// `rebalancer.lease_ms` is another proxy's (reads follow it, writes are refused, and the writes
    /// routed here before drain); a live one whose owner went silent (or this proxy's own, after a
    /// restart) is taken over and resumed. A coordinator of this proxy whose record another proxy took
    /// over is dropped.
    async fn reshard_poll(&self, state: &AppState) -> Result<(), MeiliError> {
        let entries = state.store.list_meta(RECORD_PREFIX).await?;
        let me = self.elastic.instance().to_string();
        let lease = state.config.rebalancer.lease_ms;
        let now = now_ms();
        let mut newly_foreign = false;
        let mut takeovers = Vec::new();
        {
            let mut st = lock(&self.reshards.state);
            let mut seen = std::collections::BTreeSet::new();
            for (key, value) in entries {
                let uid = key.strip_prefix(RECORD_PREFIX).unwrap_or(&key).to_string();
                seen.insert(uid.clone());
                let stored: Stored = match serde_json::from_value(value.clone()) {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::error!(index = uid, error = %e, "unreadable resharding record");
                        continue;
                    }
                };
                if let Some(run) = st.runs.get(&uid) {
                    if run.value == value || stored.owner == me {
                        continue;
                    }
                    tracing::error!(
                        index = uid,
                        "the resharding was taken over by another proxy: stopping here"
                    );
                    st.runs.remove(&uid);
                }
                let live = !phase_of(&stored.record).is_none_or(Phase::is_final);
                if live && stored.owner == me {
                    // being started here (stored, not yet registered as a run)
                    continue;
                }
                if !live {
                    st.foreign.remove(&uid);
                    match in_force(&stored.record).filter(|_| !stored.dropped) {
                        Some(side) => st.settled.insert(uid.clone(), side),
                        None => st.settled.remove(&uid),
                    };
                } else if stored.owner != me && now.saturating_sub(stored.heartbeat) <= lease {
                    if st.foreign.get(&uid).is_none_or(|f| f.value != value) {
                        let pk = stored.record["primaryKey"].as_str().unwrap_or("id");
                        let params = self.reshard_params(&uid, pk, &stored);
                        match Reshard::resume(&stored.record, params) {
                            Ok(m) => {
                                let f = Foreign {
                                    m,
                                    value: value.clone(),
                                    owner_url: stored.owner_url.clone(),
                                };
                                if st.foreign.insert(uid.clone(), f).is_none() {
                                    tracing::info!(index = uid, "another proxy reshards the index");
                                    newly_foreign = true;
                                }
                                st.settled.remove(&uid);
                            }
                            Err(e) => {
                                tracing::error!(index = uid, error = %e, "unusable resharding record")
                            }
                        }
                    }
                } else {
                    takeovers.push((uid.clone(), stored.clone(), value));
                }
                st.stored.insert(uid, stored);
            }
            st.foreign.retain(|uid, _| seen.contains(uid));
        }
        if newly_foreign {
            // The index is marked first, then the writes routed before drain (`write_route` checks the
            // mark under the gate lock): from here on no write of it leaves this proxy.
            drop(self.close_gate().await);
        }
        for (uid, stored, value) in takeovers {
            self.take_over_reshard(state, &uid, stored, value).await;
        }
        Ok(())
    }

    /// Takes over a live record whose owner went silent (compare-and-set on its stored value) and
    /// resumes its coordinator here.
    async fn take_over_reshard(&self, state: &AppState, uid: &str, stored: Stored, value: Value) {
        let taken = Stored {
            owner: self.elastic.instance().to_string(),
            heartbeat: now_ms(),
            owner_url: state.config.server.advertise_url.clone(),
            ..stored
        };
        let Ok(new_value) = serde_json::to_value(&taken) else {
            return;
        };
        match state
            .store
            .swap_meta(&record_key(uid), Some(&value), &new_value)
            .await
        {
            Ok(true) => {}
            Ok(false) => return,
            Err(e) => {
                tracing::warn!(index = uid, error = %e, "cannot take the resharding over");
                return;
            }
        }
        let pk = taken.record["primaryKey"].as_str().unwrap_or("id");
        let params = self.reshard_params(uid, pk, &taken);
        match Reshard::resume(&taken.record, params) {
            Ok(m) => {
                tracing::info!(index = uid, "resharding resumed");
                let mut st = lock(&self.reshards.state);
                st.foreign.remove(uid);
                st.stored.insert(uid.to_string(), taken.clone());
                st.runs.insert(
                    uid.to_string(),
                    Run {
                        m,
                        stored: taken,
                        resumed: true,
                        value: new_value,
                        hold_until: 0,
                    },
                );
            }
            Err(e) => tracing::error!(index = uid, error = %e, "the resharding cannot resume"),
        }
        self.reshards.wake.notify_one();
    }

    /// Stores a coordinator's record by compare-and-set on the value it last stored (retrying store
    /// errors). `Ok(false)`: another proxy took the record over; the coordinator is dropped here.
    async fn store_own_record(
        &self,
        state: &AppState,
        uid: &str,
        expected: &Value,
        value: &Value,
    ) -> bool {
        let key = record_key(uid);
        let mut tries = 0u32;
        loop {
            match state.store.swap_meta(&key, Some(expected), value).await {
                Ok(true) => return true,
                Ok(false) => {
                    // a store error may have hidden a write that went through
                    if let Ok(Some(now)) = state.store.get_meta(&key).await {
                        if now == *value {
                            return true;
                        }
                    }
                    tracing::error!(
                        index = uid,
                        "the resharding was taken over by another proxy: stopping here"
                    );
                    lock(&self.reshards.state).runs.remove(uid);
                    return false;
                }
                Err(e) => {
                    tries += 1;
                    if tries == 1 || tries.is_multiple_of(50) {
                        tracing::error!(index = uid, error = %e, "cannot persist a resharding record");
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }

    /// Stores a record of `uid`'s coordinator. When the physical index in force changes, the
    /// coordinator is held for two polls (the other proxies read by the record they last saw: the index
    /// they may still read is not deleted before they saw the change).
    async fn persist_reshard(&self, state: &AppState, uid: &str, record: Value) {
        let me = self.elastic.instance().to_string();
        let (expected, stored, moved) = {
            let mut st = lock(&self.reshards.state);
            let Some(run) = st.runs.get_mut(uid) else {
                return;
            };
            let moved = in_force(&run.stored.record) != in_force(&record);
            run.stored.record = record;
            run.stored.owner = me;
            run.stored.heartbeat = now_ms();
            (run.value.clone(), run.stored.clone(), moved)
        };
        let value = serde_json::to_value(&stored).unwrap_or(Value::Null);
        if !self.store_own_record(state, uid, &expected, &value).await {
            return;
        }
        let mut st = lock(&self.reshards.state);
        if let Some(run) = st.runs.get_mut(uid) {
            run.value = value;
            if moved {
                run.hold_until = now_ms() + 2 * state.config.rebalancer.topology_poll_ms;
            }
        }
        st.stored.insert(uid.to_string(), stored);
    }

    /// Renews the heartbeat of this proxy's live records (every third of `rebalancer.lease_ms`).
    async fn renew_reshards(&self, state: &AppState) {
        let due: Vec<(String, Value, Stored)> = {
            let st = lock(&self.reshards.state);
            st.runs
                .iter()
                .filter(|(_, r)| !r.m.is_finished())
                .map(|(u, r)| {
                    let mut s = r.stored.clone();
                    s.heartbeat = now_ms();
                    (u.clone(), r.value.clone(), s)
                })
                .collect()
        };
        for (uid, expected, stored) in due {
            let value = serde_json::to_value(&stored).unwrap_or(Value::Null);
            if self.store_own_record(state, &uid, &expected, &value).await {
                if let Some(run) = lock(&self.reshards.state).runs.get_mut(&uid) {
                    run.value = value;
                    run.stored.heartbeat = stored.heartbeat;
                }
            }
        }
    }

    /// Carries out the actions of every live coordinator and retires the finished ones. Runs with the
    /// health probe.
    pub(crate) async fn reshard_loop(self: Arc<Self>, state: Arc<AppState>) {
        let mut set: JoinSet<(String, (usize, Answer))> = JoinSet::new();
        let poll_every = state.config.rebalancer.topology_poll_ms.max(1);
        let renew_every = (state.config.rebalancer.lease_ms / 3).max(1);
        let (mut polled_at, mut renewed_at) = (now_ms(), now_ms());
        loop {
            self.reshard_ready(&state).await;
            if now_ms().saturating_sub(polled_at) >= poll_every {
                polled_at = now_ms();
                if let Err(e) = self.reshard_poll(&state).await {
                    tracing::warn!(error = %e, "cannot read the resharding records");
                }
            }
            if now_ms().saturating_sub(renewed_at) >= renew_every {
                renewed_at = now_ms();
                self.renew_reshards(&state).await;
            }
            let now = now_ms();
            let mut actions = Vec::new();
            let wake = {
                let mut st = lock(&self.reshards.state);
                for (uid, run) in st.runs.iter_mut() {
                    if run.hold_until > now {
                        continue;
                    }
                    run.m.handle_timeout(now);
                    while let Some(a) = run.m.poll_action() {
                        actions.push((uid.clone(), a));
                    }
                }
                st.runs
                    .values()
                    .filter_map(|r| match r.hold_until > now {
                        true => Some(r.hold_until),
                        false => r.m.poll_timeout(),
                    })
                    .chain([polled_at + poll_every])
                    .min()
            };
            let busy = !actions.is_empty();
            for (uid, action) in actions {
                match action {
                    Action::Send(req) => {
                        let hinted = req.method != Method::Get && {
                            let hints = lock(&self.hints);
                            hints.has_pending(&uid, &req.node)
                                || path_index(&req.path)
                                    .is_some_and(|i| hints.has_pending(i, &req.node))
                        };
                        if hinted {
                            // A node write never overtakes the node's hints: retried later.
                            if let Some(run) = lock(&self.reshards.state).runs.get_mut(&uid) {
                                run.m.on_failure(req.id, now_ms());
                            }
                            continue;
                        }
                        let send = self.send_future(&state, req);
                        set.spawn(async move { (uid, send.await) });
                    }
                    Action::Persist { seq, record } => {
                        self.persist_reshard(&state, &uid, record).await;
                        if let Some(run) = lock(&self.reshards.state).runs.get_mut(&uid) {
                            run.m.on_persisted(seq, now_ms());
                        }
                    }
                }
            }
            // answers already in are fed before more work is looked for (a busy loop must not starve them)
            while let Some(done) = set.try_join_next() {
                self.absorb_reshard(done);
            }
            self.reshard_metrics(&state);
            self.retire_finished();
            if busy {
                continue;
            }
            let sleep = wake.map_or(50, |w| w.saturating_sub(now_ms()).clamp(1, 50));
            tokio::select! {
                Some(done) = set.join_next(), if !set.is_empty() => {
                    self.absorb_reshard(done);
                    while let Some(done) = set.try_join_next() {
                        self.absorb_reshard(done);
                    }
                }
                _ = tokio::time::sleep(Duration::from_millis(sleep)) => {}
                _ = self.reshards.wake.notified() => {}
            }
        }
    }

    fn absorb_reshard(&self, done: Result<(String, (usize, Answer)), tokio::task::JoinError>) {
        let Ok((uid, (id, answer))) = done else {
            return;
        };
        let mut st = lock(&self.reshards.state);
        let Some(run) = st.runs.get_mut(&uid) else {
            return;
        };
        match &answer {
            Ok((status, body)) => run.m.on_response(id, *status, body, now_ms()),
            Err(e) => {
                tracing::warn!(index = uid, error = %e, "resharding request failed");
                run.m.on_failure(id, now_ms())
            }
        }
    }

    /// Sets the resharding metrics from this proxy's coordinators.
    fn reshard_metrics(&self, state: &AppState) {
        let m = self
            .reshards
            .metrics
            .get_or_init(|| ReshardMetrics::new(state.metrics.registry()));
        let st = lock(&self.reshards.state);
        let mut active = 0;
        for (uid, run) in &st.runs {
            let s = run.m.status();
            m.phase
                .with_label_values(&[uid.as_str()])
                .set(phase_number(s.phase));
            m.docs
                .with_label_values(&[uid.as_str()])
                .set(s.docs_copied as i64);
            active += i64::from(!run.m.is_finished());
        }
        m.active.set(active);
    }

    /// The indexes with an S of their own (resharded, or resharding here or on another proxy), for
    /// `GET /_miroir/topology` and `/_miroir/shards`: uid → physical index read now, its S, the phase of
    /// its last resharding and whether one runs.
    pub(super) fn reshard_indexes_view(&self) -> Value {
        let st = lock(&self.reshards.state);
        let mut out = Map::new();
        let phase = |uid: &str| {
            st.stored
                .get(uid)
                .and_then(|s| s.record.get("phase").cloned())
                .unwrap_or(Value::Null)
        };
        for (uid, side) in &st.settled {
            out.insert(
                uid.clone(),
                json!({"index": side.index, "shards": side.shards, "phase": phase(uid), "running": false}),
            );
        }
        let live = st
            .runs
            .iter()
            .map(|(u, r)| (u, r.m.read_target(), json!(r.m.phase())))
            .chain(
                st.foreign
                    .iter()
                    .map(|(u, f)| (u, f.m.read_target(), phase(u))),
            );
        for (uid, (index, placement), phase) in live {
            out.insert(
                uid.clone(),
                json!({"index": index, "shards": placement.shards(), "phase": phase, "running": true}),
            );
        }
        Value::Object(out)
    }

    /// Finished coordinators leave the routing to their record (atomically: name and S together).
    fn retire_finished(&self) {
        let mut st = lock(&self.reshards.state);
        let done: Vec<String> = st
            .runs
            .iter()
            .filter(|(_, r)| r.m.is_finished())
            .map(|(u, _)| u.clone())
            .collect();
        for uid in done {
            if let Some(run) = st.runs.remove(&uid) {
                tracing::info!(index = uid, phase = ?run.m.phase(), "resharding finished");
                st.settled.insert(uid.clone(), run.m.live().clone());
            }
        }
    }

    // ----- admin routes -----

    /// `/_miroir/indexes/{uid}/reshard[/status|/abort|/rollback]`; `None` when the path is not one.
    pub(crate) async fn admin_reshard(
        &self,
        state: &AppState,
        method: &http::Method,
        path: &str,
        request: &ProxyRequest,
    ) -> Option<Result<ProxyResponse, MeiliError>> {
        let segs: Vec<&str> = path.split('/').collect();
        let (uid, rest) = match segs.as_slice() {
            ["indexes", uid, "reshard", rest @ ..] => (*uid, rest),
            _ => return None,
        };
        self.reshard_ready(state).await;
        let uid = match crate::routes::IndexUid::parse(uid) {
            Ok(u) => u.as_str().to_string(),
            Err(e) => return Some(Err(e)),
        };
        let m = method.clone();
        Some(match (m, rest) {
            (http::Method::POST, []) => match json_body(request).and_then(|b| parse_request(&b)) {
                Ok(req) => self.start_reshard(state, &uid, req).await,
                Err(e) => Err(e),
            },
            (http::Method::GET, ["status"]) => self.reshard_status(&uid),
            (http::Method::POST, ["abort"]) => self.reshard_event(&uid, true),
            (http::Method::POST, ["rollback"]) => self.reshard_event(&uid, false),
            _ => return None,
        })
    }

    fn reshard_status(&self, uid: &str) -> Result<ProxyResponse, MeiliError> {
        let st = lock(&self.reshards.state);
        let run = st.runs.get(uid);
        let stored = run.map(|r| &r.stored).or_else(|| st.stored.get(uid));
        match stored {
            Some(s) => Ok(json_response(200, &status_json(uid, s, run, now_ms()))),
            None => Err(no_reshard(uid)),
        }
    }

    fn reshard_event(&self, uid: &str, abort: bool) -> Result<ProxyResponse, MeiliError> {
        let body = {
            let mut st = lock(&self.reshards.state);
            let Some(run) = st.runs.get_mut(uid) else {
                return Err(no_reshard(uid));
            };
            if abort {
                run.m.abort(now_ms())?;
            } else {
                run.m.rollback(now_ms())?;
            }
            status_json(uid, &run.stored, Some(run), now_ms())
        };
        self.reshards.wake.notify_one();
        Ok(json_response(202, &body))
    }

    /// The index was deleted: its physical name and S are forgotten (durably); the generation is kept so
    /// a later resharding never reuses a shadow name.
    pub(super) async fn forget_resharded(
        &self,
        state: &AppState,
        uid: &str,
    ) -> Result<(), MeiliError> {
        self.retire_finished();
        let stored = {
            let mut st = lock(&self.reshards.state);
            if st.settled.remove(uid).is_none() {
                return Ok(());
            }
            let Some(stored) = st.stored.get_mut(uid) else {
                return Ok(());
            };
            stored.dropped = true;
            stored.clone()
        };
        let value = serde_json::to_value(&stored)
            .map_err(|e| MeiliError::internal(format!("cannot encode the record: {e}")))?;
        state.store.put_meta(&record_key(uid), &value).await?;
        Ok(())
    }

    /// Refuses to start a resharding while one runs on the index or a fleet change runs.
    fn refuse_reshard_start(&self, uid: &str) -> Result<(), MeiliError> {
        // a coordinator that just finished leaves the routing to its record first
        self.retire_finished();
        if self.reshard_active(uid) || self.reshard_foreign(uid) {
            return Err(in_progress(uid));
        }
        self.refuse_while_migrating(uid).map_err(|_| {
            MeiliError::invalid(
                409,
                "miroir_migration_in_progress",
                "A fleet change is in progress: reshard once `GET /_miroir/rebalance/status` reports it done.",
            )
        })
    }

    async fn start_reshard(
        &self,
        state: &AppState,
        uid: &str,
        req: ReshardRequest,
    ) -> Result<ProxyResponse, MeiliError> {
        let Some(meta) = self.index_meta(state, uid).await? else {
            return Err(super::index_not_found(uid));
        };
        let Some(pk) = meta.primary_key else {
            return Err(bad(format!(
                "Index `{uid}` has no primary key yet: add documents before resharding it."
            )));
        };
        self.refuse_reshard_start(uid)?;
        // The stored record, read afresh (another proxy may have resharded the index since this one
        // last polled): it names the index in force and the last generation; the first record of this
        // resharding replaces exactly it (compare-and-set), so two proxies never both start one.
        let current = state.store.get_meta(&record_key(uid)).await?;
        let prior: Option<Stored> = current
            .as_ref()
            .and_then(|v| serde_json::from_value(v.clone()).ok());
        if prior
            .as_ref()
            .is_some_and(|p| !phase_of(&p.record).is_none_or(Phase::is_final))
        {
            return Err(in_progress(uid));
        }
        let generation = prior
            .as_ref()
            .and_then(|s| s.record.get("generation").and_then(Value::as_u64))
            .unwrap_or(0)
            + 1;
        let live = prior
            .as_ref()
            .filter(|p| !p.dropped)
            .and_then(|p| in_force(&p.record))
            .unwrap_or(Side {
                index: uid.to_string(),
                shards: self.elastic.view().topology.shards,
            });
        let stored = Stored {
            record: Value::Null,
            docs_per_second: req
                .throttle
                .unwrap_or(state.config.resharding.throttle_docs_per_sec),
            retention_ms: state.config.resharding.retention_ms,
            started_at: now_ms(),
            from_shards: live.shards,
            to_shards: req.new_shards,
            dropped: false,
            owner: self.elastic.instance().to_string(),
            heartbeat: now_ms(),
            owner_url: state.config.server.advertise_url.clone(),
        };
        let mut params = self.reshard_params(uid, &pk, &stored);
        params.topology.shards = live.shards;
        params.live_index = live.index.clone();
        params.generation = generation;
        // `start` checks the request (same S, …) without side effects: a dry run checks it too.
        let mut m = Reshard::start(params.clone()).map_err(|e| match e.status {
            409 => e,
            _ => bad(e.message),
        })?;
        if req.dry_run {
            let stats = self.index_stats(state, uid).await?;
            let docs = stats
                .get("numberOfDocuments")
                .and_then(Value::as_u64)
                .unwrap_or(0);
            let avg = stats
                .get("avgDocumentSize")
                .and_then(Value::as_u64)
                .or_else(|| {
                    stats
                        .get("rawDocumentDbSize")
                        .and_then(Value::as_u64)
                        .and_then(|b| b.checked_div(docs))
                })
                .unwrap_or(0);
            let e = reshard::dry_run(&params, docs, avg);
            return Ok(json_response(
                200,
                &json!({
                    "indexUid": uid,
                    "dryRun": true,
                    "fromShards": live.shards,
                    "toShards": req.new_shards,
                    "throttleDocsPerSec": stored.docs_per_second,
                    "docsToCopy": e.docs_to_copy,
                    "shadowCopies": e.shadow_copies,
                    "transientStorageFactor": 2,
                    "peakBytes": e.peak_bytes,
                    "durationMs": e.duration_ms,
                }),
            ));
        }
        // Writes routed by the plain placement drain before the coordinator routes them.
        let gate = self.close_gate().await;
        self.refuse_reshard_start(uid)?;
        // The first record is stored before the coordinator routes anything.
        let Some(Action::Persist { seq, record }) = m.poll_action() else {
            return Err(MeiliError::internal(
                "the resharding did not start with a record",
            ));
        };
        let mut first = stored;
        first.record = record;
        first.heartbeat = now_ms();
        let value = serde_json::to_value(&first)
            .map_err(|e| MeiliError::internal(format!("cannot encode the record: {e}")))?;
        if !state
            .store
            .swap_meta(&record_key(uid), current.as_ref(), &value)
            .await?
        {
            return Err(in_progress(uid));
        }
        m.on_persisted(seq, now_ms());
        // The other proxies see the record within a poll and refuse writes of the index from then on
        // (draining the ones they routed before): the coordinator does nothing for two polls.
        let hold_until = now_ms() + 2 * state.config.rebalancer.topology_poll_ms;
        let body = status_json(uid, &first, None, now_ms());
        {
            let mut st = lock(&self.reshards.state);
            st.stored.insert(uid.to_string(), first.clone());
            st.settled.remove(uid);
            st.runs.insert(
                uid.to_string(),
                Run {
                    m,
                    stored: first,
                    resumed: false,
                    value,
                    hold_until,
                },
            );
        }
        drop(gate);
        self.reshards.wake.notify_one();
        let mut body = body;
        body["phase"] = json!(Phase::CreateShadow);
        body["running"] = json!(true);
        Ok(json_response(202, &body))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_checked() {
        let ok = parse_request(&json!({"new_shards": 8})).unwrap();
        assert_eq!(
            ok,
            ReshardRequest {
                new_shards: 8,
                throttle: None,
                dry_run: false
            }
        );
        let ok =
            parse_request(&json!({"new_shards": 2, "throttle_docs_per_sec": 0, "dry_run": true}))
                .unwrap();
        assert_eq!(ok.throttle, Some(0));
        assert!(ok.dry_run);
        for bad in [
            json!([]),
            json!({}),
            json!({"new_shards": 0}),
            json!({"new_shards": -1}),
            json!({"new_shards": "8"}),
            json!({"new_shards": 1.5}),
            json!({"new_shards": MAX_SHARDS + 1}),
            json!({"new_shards": 8, "throttle_docs_per_sec": -2}),
            json!({"new_shards": 8, "dry_run": "yes"}),
            json!({"new_shards": 8, "extra": 1}),
        ] {
            let e = parse_request(&bad).unwrap_err();
            assert_eq!(e.status, 400, "{bad}");
            assert_eq!(e.code, "miroir_invalid_reshard");
        }
    }

    #[test]
    fn the_index_in_force_follows_the_swap() {
        let r = |phase: &str| {
            json!({"phase": phase, "src": {"index": "m", "shards": 4},
                   "dst": {"index": "m__miroir_reshard_1", "shards": 8}})
        };
        assert_eq!(in_force(&r("backfill")).unwrap().shards, 4);
        assert_eq!(in_force(&r("aborted")).unwrap().index, "m");
        assert_eq!(in_force(&r("retain")).unwrap().shards, 8);
        assert_eq!(in_force(&r("done")).unwrap().index, "m__miroir_reshard_1");
        assert!(in_force(&json!({})).is_none());
    }

    #[test]
    fn paths_name_their_index() {
        assert_eq!(path_index("/indexes/m/search"), Some("m"));
        assert_eq!(path_index("/indexes/m?x=1"), Some("m"));
        assert_eq!(path_index("/indexes/m"), Some("m"));
        assert_eq!(path_index("/indexes"), None);
        assert_eq!(path_index("/indexes/"), None);
        assert_eq!(path_index("/tasks/3"), None);
    }

    #[test]
    fn answers_are_renamed_back() {
        let fix = AnswerFix::Index {
            physical: "m__miroir_reshard_1".into(),
            uid: "m".into(),
        };
        let mut v = json!({"uid": "m__miroir_reshard_1", "message": "Index `m__miroir_reshard_1` not found."});
        fix.apply(&mut v);
        assert_eq!(v, json!({"uid": "m", "message": "Index `m` not found."}));

        let names: BTreeMap<String, String> =
            [("m__miroir_reshard_1".to_string(), "m".to_string())].into();
        let mut list = json!({"results": [
            {"uid": "a"}, {"uid": "m"}, {"uid": "m__miroir_reshard_1"}, {"uid": "x__miroir_reshard_2"}
        ], "total": 4});
        AnswerFix::List(names.clone()).apply(&mut list);
        assert_eq!(
            list,
            json!({"results": [{"uid": "a"}, {"uid": "m"}], "total": 2})
        );
        let mut stats = json!({"indexes": {"a": 1, "m": 2, "m__miroir_reshard_1": 3, "z__miroir_reshard_9": 4}});
        AnswerFix::Stats(names).apply(&mut stats);
        assert_eq!(stats, json!({"indexes": {"a": 1, "m": 3}}));
    }

    #[test]
    fn broadcast_intents_become_relative() {
        let i = intent_of(
            MigrationIntent::Broadcast {
                method: Method::Delete,
                path: "/indexes/m/documents".into(),
                body: None,
            },
            "m",
        )
        .unwrap();
        assert!(
            matches!(i, WriteIntent::IndexBroadcast { ref suffix, .. } if suffix == "/documents")
        );
        assert!(intent_of(
            MigrationIntent::Broadcast {
                method: Method::Delete,
                path: "/indexes/mm/documents".into(),
                body: None,
            },
            "m",
        )
        .is_err());
    }
}
