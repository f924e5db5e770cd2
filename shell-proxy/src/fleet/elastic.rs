//! Elastic fleet: the durable, dynamic topology and the migration driver (the shell around miroir-core's
//! `migration::Migration`, modelled on the simulator's `sim/src/world/migrate.rs`).
//!
//! # Topology
//! The committed topology (nodes with address, group and state; S, RF, RG; epoch) starts from the
//! configuration. Once an operator changes the fleet it lives in the task store's meta area under
//! [`TOPOLOGY_KEY`], written only by compare-and-set (`TaskStore::swap_meta`), so two proxies never both
//! commit epoch e+1. At start (before the first request is served) a stored topology whose epoch is at least
//! the configuration's wins; a background loop ([`Fleet::elastic_loop`]) polls the store every
//! `rebalancer.topology_poll_ms` so every proxy converges on the newest epoch. The committed view ([`View`]:
//! topology, placement) is an `Arc` snapshot swapped as a whole: a write captures it once (its
//! [`PlainPermit`]).
//!
//! # Claims
//! The claim names its owner (this proxy's random instance id) and a heartbeat the owner renews every third
//! of `rebalancer.lease_ms` (compare-and-set). Another proxy, or the owner restarted under a new instance id,
//! takes the change over once the heartbeat is older than the lease, and resumes it from the records.
//!
//! # Changes and migrations
//! An admin change (`POST /_miroir/nodes`, `.../drain`, `.../fail`, `DELETE /_miroir/nodes/{id}`,
//! `POST /_miroir/groups`, `DELETE /_miroir/groups/{id}`) is planned by core's `migration::plan_change`
//! against the committed topology, and claimed in the store under [`PENDING_KEY`] (compare-and-set from
//! absent: one change at a time, fleet-wide). The loop then runs it: one coordinator per index (the indexes
//! listed by a node when the change was claimed), their node requests sent concurrently, every
//! `Action::Persist` stored (under `elastic/record/<index>`) before `on_persisted` is called. Once every
//! coordinator is finished the new topology is committed (epoch + 1), the hints of the nodes that left are
//! forgotten, and the claim is released. A restarted proxy finds the claim and resumes every coordinator
//! from its stored record.
//!
//! # Writes and reads while a migration runs
//! Starting a migration must not race writes routed without it: the driver waits two store polls after the
//! claim (so the other proxies see it and refuse writes: they cannot be fenced by this proxy's
//! coordinators), then, while it starts one, new writes wait at a gate and the ones already routed by the
//! committed placement drain first
//! ([`Fleet::write_route`] hands out a [`PlainPermit`] for those). While it runs, writes of a migrating index
//! are built by `Migration::try_write` (waiting while their shard is fenced; `write_finished` once every
//! node answered) and reads use `Migration::read_placement`. A node write of the coordinator never
//! overtakes that node's pending hints: it is failed back to the coordinator, which retries it later.
//!
//! # Other proxies while a change runs
//! A proxy that sees a change claimed by another (live) owner refuses writes (503
//! `miroir_migration_in_progress`: they must be fenced by the owner's coordinators) and reads each index
//! by the owner's last stored record (`elastic/record/<index>`, polled every `rebalancer.topology_poll_ms`):
//! core's `Migration::resume(record).read_placement()` reads a shard from its old owners until its
//! cut-over record, from its new owners afterwards (their addresses taken from the claim's new
//! topology). The owner's coordinators wait `cleanup_grace_ms` = two polls plus the node timeout in each
//! shard's `cleanup` before deleting its copies on the leaving owners, so another proxy has seen the
//! cut-over (and reads the new owners), and every read planned before it is over, before the copies go. Once the claim is released (after the
//! commit) the new topology is adopted and the records are forgotten. A read through another proxy may
//! lag the owner by up to a poll: right after a cut-over it still reads the old owners, which miss the
//! writes acknowledged by the new owners since.
//!
//! Core decides everything; this module only executes.

use super::{json_body, now_ms, Answer, Fleet};
use crate::http_util::{json_response, ProxyResponse};
use crate::server::{AppState, ProxyRequest};
use bytes::Bytes;
use miroir_core::documents::{plan_batch, plan_delete_ids};
use miroir_core::migration::{
    self, Action, Change, Migration, MigrationParams, Phase, Plan, WriteIntent,
};
use miroir_core::ops::write::{FanoutWrite, WriteTask};
use miroir_core::ops::Method;
use miroir_core::quorum::WriteQuorum;
use miroir_core::routing::Placement;
use miroir_core::topology::{GroupId, Node, NodeId, NodeState, Topology};
use miroir_core::{MeiliError, Millis};
use prometheus::{IntCounter, IntGauge};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tokio::task::JoinSet;

/// Store meta key of the committed topology.
pub const TOPOLOGY_KEY: &str = "elastic/topology";
/// Store meta key of the change being carried out.
pub const PENDING_KEY: &str = "elastic/migration";
/// Store meta key prefix of the per-index migration records.
pub const RECORD_PREFIX: &str = "elastic/record/";
/// Documents per page read by a coordinator.
const PAGE_SIZE: usize = 200;

fn record_key(index: &str) -> String {
    format!("{RECORD_PREFIX}{index}")
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

// ----- errors -----

fn bad(code: &str, message: impl Into<String>) -> MeiliError {
    MeiliError::invalid(400, code, message)
}

/// A change was asked while another one runs.
fn in_progress() -> MeiliError {
    MeiliError::invalid(
        409,
        "miroir_migration_in_progress",
        "A fleet change is already in progress: wait for `GET /_miroir/rebalance/status` to report it done.",
    )
}

/// Whether an admin path (after `_miroir/`) belongs to this module.
pub(crate) fn is_elastic_path(path: &str) -> bool {
    ["nodes", "groups", "rebalance"]
        .iter()
        .any(|p| path == *p || path.starts_with(&format!("{p}/")))
}

/// A write that cannot run while the fleet is being rebalanced.
pub(crate) fn index_frozen(index: &str) -> MeiliError {
    MeiliError::new(
        503,
        "miroir_migration_in_progress",
        miroir_core::ErrorType::System,
        format!(
            "The fleet is being rebalanced: index `{index}` cannot be created, deleted or swapped, nor written \
             if it is not part of the migration; retry once `GET /_miroir/rebalance/status` reports it done."
        ),
    )
}

/// A write refused because another proxy runs a fleet change (its writes must be fenced by it).
fn migrating_elsewhere() -> MeiliError {
    MeiliError::new(
        503,
        "miroir_migration_in_progress",
        miroir_core::ErrorType::System,
        "Another proxy is rebalancing the fleet: writes go through that proxy until it is done.",
    )
}

/// Stores a coordinator record, retrying until the store takes it (a record is acknowledged to its
/// coordinator only once durable).
pub(super) async fn put_meta_until_stored(state: &AppState, key: &str, value: &Value, what: &str) {
    let mut tries = 0u32;
    while let Err(e) = state.store.put_meta(key, value).await {
        tries += 1;
        if tries == 1 || tries.is_multiple_of(50) {
            tracing::error!(key, error = %e, "cannot persist a {what} record");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The header of a forwarded write: it is never forwarded again (two proxies advertising each other).
pub(crate) const FORWARDED_HEADER: &str = "x-miroir-forwarded";

type ForwardClient = hyper_util::client::legacy::Client<
    hyper_util::client::legacy::connect::HttpConnector,
    http_body_util::Full<Bytes>,
>;

/// Headers that belong to one connection (and the ones the client recomputes): never copied through.
fn hop_by_hop(name: &str) -> bool {
    matches!(
        name,
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "transfer-encoding"
            | "te"
            | "trailer"
            | "upgrade"
            | "host"
            | "content-length"
    )
}

/// The index of a client write that may be forwarded to the proxy fencing it (documents and settings
/// writes).
fn forwardable_index(route: &crate::routes::Route) -> Option<&str> {
    use miroir_core::auth::Action as Permission;
    match route.action()? {
        (
            Permission::DocumentsAdd | Permission::DocumentsDelete | Permission::SettingsUpdate,
            Some(index),
        ) => Some(index),
        _ => None,
    }
}

/// Whether a route only reads an index (searches, document, settings and stats reads). Writes are never
/// pinned: one admitted after a resharding's swap must go to the index in force, whatever it saw before
/// waiting at the fence.
fn reads_only(route: &crate::routes::Route) -> bool {
    use miroir_core::auth::Action as Permission;
    matches!(
        route.action(),
        Some((
            Permission::Search
                | Permission::DocumentsGet
                | Permission::IndexesGet
                | Permission::SettingsGet
                | Permission::StatsGet,
            Some(_)
        ))
    )
}

fn store_error(e: crate::store::StoreError) -> MeiliError {
    MeiliError::from(e)
}

// ----- the committed view -----

/// One committed topology with its placement and node addresses; swapped as a whole.
#[derive(Debug)]
pub struct View {
    /// The committed topology (every node, removed ones included).
    pub topology: Arc<Topology>,
    /// The same without the removed nodes (what requests address).
    pub serving: Arc<Topology>,
    /// Its placement.
    pub placement: Arc<Placement>,
}

impl View {
    /// The view of `topology`; fails when it is invalid.
    pub fn new(topology: Topology) -> Result<View, MeiliError> {
        let placement = Placement::new(&topology)?;
        let mut serving = topology.clone();
        serving.nodes.retain(|n| n.state != NodeState::Removed);
        Ok(View {
            topology: Arc::new(topology),
            serving: Arc::new(serving),
            placement: Arc::new(placement),
        })
    }
}

/// The stored claim of a change (`PENDING_KEY`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Pending {
    /// What the operator asked, for the status.
    change: Value,
    old: Topology,
    new: Topology,
    lost: Vec<NodeId>,
    /// The migrated indexes and their primary keys (`None`: none yet, the index holds no document).
    indexes: BTreeMap<String, Option<String>>,
    started_at: Millis,
    /// The proxy instance running the change.
    #[serde(default)]
    owner: String,
    /// When the owner last renewed its claim.
    #[serde(default)]
    heartbeat: Millis,
    /// The owner's `server.advertise_url`: the other proxies forward their writes there.
    #[serde(default)]
    owner_url: Option<String>,
}

impl Pending {
    fn plan(&self) -> Result<Plan, MeiliError> {
        migration::plan(&self.old, &self.new, self.lost.iter().cloned().collect())
    }
}

/// One index's live coordinator.
struct Run {
    m: Migration,
    primary_key: Option<String>,
    docs_copied: u64,
}

/// The live migration of this proxy.
struct Live {
    pending: Pending,
    runs: BTreeMap<String, Run>,
    /// Whether a coordinator was resumed from a stored record (a proxy restarted mid-way).
    resumed: bool,
}

#[derive(Default)]
struct Gate {
    live: Option<Live>,
    /// How many tasks are switching the routing (a migration starting, a newer topology being adopted):
    /// new writes wait while it is not 0.
    starting: u32,
    /// Writes routed by the committed placement, still running.
    plain: u64,
    /// Another proxy runs a fleet change: writes are refused here.
    foreign: bool,
    /// A fleet change is claimed (seen in the store, or claimed here): index creations, deletions and
    /// swaps are refused.
    claimed: bool,
    /// Claims being made by this proxy right now (their index list is being taken).
    claiming: u32,
    /// Claims this proxy made (so the loop never clears a claim it has not seen yet).
    claims: u64,
}

/// Metrics of the migrations.
#[derive(Clone)]
struct ElasticMetrics {
    shards: IntCounter,
    docs: IntCounter,
    running: IntGauge,
    epoch: IntGauge,
}

impl ElasticMetrics {
    fn new(registry: &prometheus::Registry) -> ElasticMetrics {
        let m = ElasticMetrics {
            shards: IntCounter::new(
                "miroir_migration_shards_total",
                "Shard migrations finished (one per index and shard).",
            )
            .expect("valid metric definition"),
            docs: IntCounter::new(
                "miroir_migration_documents_total",
                "Documents written to new owners by migrations (copies and repairs).",
            )
            .expect("valid metric definition"),
            running: IntGauge::new(
                "miroir_migration_running",
                "1 while this proxy runs a fleet migration.",
            )
            .expect("valid metric definition"),
            epoch: IntGauge::new(
                "miroir_topology_epoch",
                "The epoch of the committed topology.",
            )
            .expect("valid metric definition"),
        };
        for c in [
            Box::new(m.shards.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(m.docs.clone()),
            Box::new(m.running.clone()),
            Box::new(m.epoch.clone()),
        ] {
            // A second fleet on the same registry (tests) keeps the first registration.
            let _ = registry.register(c);
        }
        m
    }
}

/// The elastic state of a fleet. See the module documentation.
pub struct Elastic {
    /// This proxy's instance id (owner of the changes it runs).
    instance: String,
    view: RwLock<Arc<View>>,
    gate: Mutex<Gate>,
    wake: tokio::sync::Notify,
    loaded: tokio::sync::OnceCell<()>,
    metrics: std::sync::OnceLock<ElasticMetrics>,
    /// The status of the last migration this proxy finished.
    last: Mutex<Option<Value>>,
    /// While another proxy runs a fleet change: per index, its last stored record and the read placement
    /// core derives from it (`Migration::resume(record).read_placement()`).
    followed: Mutex<BTreeMap<String, (Value, Arc<Placement>)>>,
    /// The topology another proxy's change moves to (the addresses of the nodes it adds).
    followed_new: Mutex<Option<Topology>>,
    /// The advertised URL of the proxy running the change another proxy claimed.
    owner_url: Mutex<Option<String>>,
    /// The client forwarding writes to the proxy that must fence them.
    forward_client: std::sync::OnceLock<ForwardClient>,
}

impl Elastic {
    /// The state over the configured topology.
    pub fn new(topology: Topology) -> Result<Elastic, MeiliError> {
        Ok(Elastic {
            instance: format!("{:032x}", super::random_u128()),
            view: RwLock::new(Arc::new(View::new(topology)?)),
            gate: Mutex::new(Gate::default()),
            wake: tokio::sync::Notify::new(),
            loaded: tokio::sync::OnceCell::new(),
            metrics: std::sync::OnceLock::new(),
            last: Mutex::new(None),
            followed: Mutex::new(BTreeMap::new()),
            followed_new: Mutex::new(None),
            owner_url: Mutex::new(None),
            forward_client: std::sync::OnceLock::new(),
        })
    }

    /// The committed view.
    pub fn view(&self) -> Arc<View> {
        Arc::clone(&self.view.read().unwrap_or_else(|p| p.into_inner()))
    }

    fn set_view(&self, view: View) {
        *self.view.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(view);
    }

    /// The address of `node`: in the committed topology, else in the topology a live migration moves to.
    pub fn address(&self, node: &NodeId) -> Option<String> {
        if let Some(n) = self.view().topology.node(node) {
            return Some(n.address.clone());
        }
        {
            let gate = lock(&self.gate);
            if let Some(live) = gate.live.as_ref() {
                return live
                    .pending
                    .new
                    .node(node)
                    .or_else(|| live.pending.old.node(node))
                    .map(|n| n.address.clone());
            }
        }
        lock(&self.followed_new)
            .as_ref()?
            .node(node)
            .map(|n| n.address.clone())
    }

    /// Forgets the records of another proxy's change (it is over, or this proxy runs it now).
    fn unfollow(&self) {
        lock(&self.followed).clear();
        *lock(&self.followed_new) = None;
        *lock(&self.owner_url) = None;
    }

    /// Every node requests may address: the committed serving nodes plus the ones a live migration adds.
    pub fn addresses(&self) -> BTreeMap<NodeId, String> {
        let mut out: BTreeMap<NodeId, String> = self
            .view()
            .serving
            .nodes
            .iter()
            .map(|n| (n.id.clone(), n.address.clone()))
            .collect();
        if let Some(live) = lock(&self.gate).live.as_ref() {
            for n in live
                .pending
                .new
                .nodes
                .iter()
                .filter(|n| n.state.is_placed())
            {
                out.entry(n.id.clone()).or_insert_with(|| n.address.clone());
            }
        }
        if let Some(new) = lock(&self.followed_new).as_ref() {
            for n in new.nodes.iter().filter(|n| n.state.is_placed()) {
                out.entry(n.id.clone()).or_insert_with(|| n.address.clone());
            }
        }
        out
    }

    /// The placement reads of `index` use now: the live coordinator's read placement while the index
    /// migrates, the committed one otherwise.
    pub fn read_placement(&self, index: &str) -> Arc<Placement> {
        if let Some(run) = lock(&self.gate)
            .live
            .as_ref()
            .and_then(|l| l.runs.get(index))
        {
            return Arc::new(run.m.read_placement().clone());
        }
        if let Some((_, p)) = lock(&self.followed).get(index) {
            return Arc::clone(p);
        }
        Arc::clone(&self.view().placement)
    }

    /// This proxy's instance id (the owner named in the claims and records it writes).
    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// Whether a migration runs on this proxy.
    pub fn is_migrating(&self) -> bool {
        lock(&self.gate).live.is_some()
    }
}

/// A write routed by the committed placement; the migration start waits for it to be dropped.
pub struct PlainPermit<'a> {
    gate: &'a Mutex<Gate>,
    /// The committed placement the write must use.
    pub placement: Arc<Placement>,
}

impl Drop for PlainPermit<'_> {
    fn drop(&mut self) {
        let mut g = lock(self.gate);
        g.plain = g.plain.saturating_sub(1);
    }
}

/// A closed write gate (see [`Fleet::close_gate`]); reopens it when dropped.
pub(super) struct GateGuard<'a>(&'a Mutex<Gate>);

impl Drop for GateGuard<'_> {
    fn drop(&mut self) {
        let mut g = lock(self.0);
        g.starting = g.starting.saturating_sub(1);
    }
}

/// A claim being made (see `Fleet::request_change`); counted down when dropped.
struct ClaimGuard<'a>(&'a Mutex<Gate>);

impl Drop for ClaimGuard<'_> {
    fn drop(&mut self) {
        let mut g = lock(self.0);
        g.claiming = g.claiming.saturating_sub(1);
    }
}

/// How a client write of an index is routed right now.
pub enum WriteRoute<'a> {
    /// By the committed placement (hold the permit until the write is decided).
    Plain(PlainPermit<'a>),
    /// Through the index's live coordinator ([`Fleet::migrating_write`]).
    Migrating,
}

// ----- admin input -----

fn node_id(v: &str) -> Result<NodeId, MeiliError> {
    let ok = !v.is_empty()
        && v.len() <= 128
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.');
    if !ok {
        return Err(bad(
            "miroir_invalid_node_id",
            format!(
                "Invalid node id `{v}`: a node id is 1 to 128 characters among `a-z A-Z 0-9 - _ .`."
            ),
        ));
    }
    Ok(NodeId::new(v))
}

fn node_url(v: &Value) -> Result<String, MeiliError> {
    let Some(s) = v.as_str() else {
        return Err(bad(
            "miroir_invalid_node_url",
            format!("Invalid value type at `.url`: expected a string, but found `{v}`."),
        ));
    };
    let parsed = s.parse::<http::Uri>().ok().filter(|u| {
        matches!(u.scheme_str(), Some("http") | Some("https"))
            && u.host().is_some_and(|h| !h.is_empty())
    });
    if parsed.is_none() {
        return Err(bad(
            "miroir_invalid_node_url",
            format!("Invalid node URL `{s}`: expected `http://host:port` or `https://host:port`."),
        ));
    }
    Ok(s.trim_end_matches('/').to_string())
}

fn object<'a>(body: &'a Value, what: &str) -> Result<&'a Map<String, Value>, MeiliError> {
    body.as_object().ok_or_else(|| {
        bad(
            "bad_request",
            format!("Invalid value type: expected {what} object, but found `{body}`."),
        )
    })
}

fn only_fields(m: &Map<String, Value>, allowed: &[&str], code: &str) -> Result<(), MeiliError> {
    if let Some(k) = m.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(bad(
            code,
            format!(
                "Unknown field `{k}`: expected one of {}.",
                allowed
                    .iter()
                    .map(|a| format!("`{a}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    }
    Ok(())
}

fn required_id(m: &Map<String, Value>) -> Result<NodeId, MeiliError> {
    match m.get("id") {
        Some(Value::String(s)) => node_id(s),
        Some(other) => Err(bad(
            "miroir_invalid_node_id",
            format!("Invalid value type at `.id`: expected a string, but found `{other}`."),
        )),
        None => Err(bad("miroir_invalid_node_id", "Missing field `id`.")),
    }
}

fn required_url(m: &Map<String, Value>) -> Result<String, MeiliError> {
    match m.get("url") {
        Some(v) => node_url(v),
        None => Err(bad("miroir_invalid_node_url", "Missing field `url`.")),
    }
}

/// `POST /_miroir/nodes` body → the node to add.
pub fn parse_add_node(body: &Value) -> Result<Node, MeiliError> {
    let m = object(body, "a node")?;
    only_fields(m, &["id", "url", "replicaGroup"], "miroir_invalid_node")?;
    let id = required_id(m)?;
    let url = required_url(m)?;
    let group = match m.get("replicaGroup") {
        None | Some(Value::Null) => 0,
        Some(v) => v
            .as_u64()
            .and_then(|g| GroupId::try_from(g).ok())
            .ok_or_else(|| {
                bad(
                    "miroir_invalid_replica_group",
                    format!(
                        "Invalid value at `.replicaGroup`: expected a non-negative integer, but found `{v}`."
                    ),
                )
            })?,
    };
    Ok(Node::active(id.0, url, group))
}

/// `POST /_miroir/groups` body → the nodes of the new group.
pub fn parse_add_group(body: &Value) -> Result<Vec<Node>, MeiliError> {
    let m = object(body, "a group")?;
    only_fields(m, &["nodes"], "miroir_invalid_group")?;
    let Some(nodes) = m.get("nodes").and_then(Value::as_array) else {
        return Err(bad(
            "miroir_invalid_group",
            "Invalid value at `.nodes`: expected a non-empty array of `{\"id\", \"url\"}` objects.",
        ));
    };
    if nodes.is_empty() {
        return Err(bad(
            "miroir_invalid_group",
            "Invalid value at `.nodes`: a replica group needs at least one node.",
        ));
    }
    let mut out: Vec<Node> = Vec::with_capacity(nodes.len());
    for n in nodes {
        let m = object(n, "a node")?;
        only_fields(m, &["id", "url"], "miroir_invalid_node")?;
        let id = required_id(m)?;
        if out.iter().any(|o| o.id == id) {
            return Err(bad(
                "miroir_invalid_group",
                format!("The node `{id}` is listed twice."),
            ));
        }
        out.push(Node::active(id.0, required_url(m)?, 0));
    }
    Ok(out)
}

fn group_id(s: &str) -> Result<GroupId, MeiliError> {
    s.parse::<GroupId>().map_err(|_| {
        bad(
            "miroir_invalid_group_id",
            format!("Invalid replica group id `{s}`: expected a non-negative integer."),
        )
    })
}

fn describe(change: &Change) -> Value {
    match change {
        Change::AddNode(n) => {
            json!({"type": "addNode", "node": n.id, "url": n.address, "replicaGroup": n.replica_group})
        }
        Change::DrainNode(id) => json!({"type": "drainNode", "node": id}),
        Change::RemoveNode(id) => json!({"type": "removeNode", "node": id}),
        Change::FailNode(id) => json!({"type": "failNode", "node": id}),
        Change::AddGroup(nodes) => {
            json!({"type": "addGroup", "nodes": nodes.iter().map(|n| &n.id).collect::<Vec<_>>()})
        }
        Change::RemoveGroup(g) => json!({"type": "removeGroup", "group": g}),
    }
}

// ----- status -----

fn phase_name(p: Phase) -> Value {
    serde_json::to_value(p).unwrap_or(Value::Null)
}

fn live_status(live: &Live, now: Millis) -> Value {
    let mut indexes = Map::new();
    let (mut total, mut done, mut copied) = (0u64, 0u64, 0u64);
    for (uid, run) in &live.runs {
        let failures = run.m.failures();
        let shards: Vec<Value> = run
            .m
            .phases()
            .into_iter()
            .map(|(s, p)| {
                json!({"shard": s, "phase": phase_name(p), "failures": failures.get(&s).copied().unwrap_or(0)})
            })
            .collect();
        let d = run
            .m
            .phases()
            .values()
            .filter(|p| **p == Phase::Done)
            .count() as u64;
        total += shards.len() as u64;
        done += d;
        copied += run.docs_copied;
        indexes.insert(
            uid.clone(),
            json!({"shardsTotal": shards.len(), "shardsDone": d, "documentsCopied": run.docs_copied, "shards": shards}),
        );
    }
    let elapsed_s = now.saturating_sub(live.pending.started_at) as f64 / 1000.0;
    let rate = if elapsed_s > 0.0 {
        copied as f64 / elapsed_s
    } else {
        0.0
    };
    let eta = (done > 0 && done < total).then(|| elapsed_s / done as f64 * (total - done) as f64);
    json!({
        "status": "running",
        "resumed": live.resumed,
        "change": live.pending.change,
        "fromEpoch": live.pending.old.epoch,
        "toEpoch": live.pending.new.epoch,
        "startedAt": live.pending.started_at,
        "shardsTotal": total,
        "shardsDone": done,
        "documentsCopied": copied,
        "documentsPerSecond": (rate * 10.0).round() / 10.0,
        "etaSeconds": eta.map(|e| (e * 10.0).round() / 10.0),
        "indexes": indexes,
    })
}

// ----- the fleet side -----

impl Fleet {
    /// The committed placement (index-independent decisions; reads of an index use
    /// `Fleet::read_placement`).
    pub fn placement(&self) -> Arc<Placement> {
        Arc::clone(&self.elastic.view().placement)
    }

    /// The committed topology's serving nodes.
    pub(crate) fn topology(&self) -> Arc<Topology> {
        Arc::clone(&self.elastic.view().serving)
    }

    /// The placement reads of `index` use now.
    pub(crate) fn read_placement(&self, index: &str) -> Arc<Placement> {
        if let Some(p) = self.reshard_placement(index) {
            return p;
        }
        self.elastic.read_placement(index)
    }

    /// The address of a node of the fleet (`""` when unknown: the request then fails as unreachable).
    pub(crate) fn node_address(&self, node: &NodeId) -> String {
        self.elastic.address(node).unwrap_or_default()
    }

    /// Every node the health probe watches.
    pub(crate) fn node_addresses(&self) -> BTreeMap<NodeId, String> {
        self.elastic.addresses()
    }

    fn elastic_metrics(&self, state: &AppState) -> ElasticMetrics {
        self.elastic
            .metrics
            .get_or_init(|| ElasticMetrics::new(state.metrics.registry()))
            .clone()
    }

    /// Loads the stored topology once, before the first request is served: one whose epoch is at least the
    /// configuration's wins. A store error is logged and retried on the next request.
    pub(crate) async fn elastic_ready(&self, state: &AppState) {
        let loaded = self
            .elastic
            .loaded
            .get_or_try_init(|| async {
                self.adopt_stored(state, true).await?;
                Ok::<(), MeiliError>(())
            })
            .await;
        if let Err(e) = loaded {
            tracing::error!(error = %e, "cannot load the stored topology");
        }
    }

    /// Adopts the stored topology when it is newer (or, `at_start`, as new) than the committed one.
    async fn adopt_stored(&self, state: &AppState, at_start: bool) -> Result<bool, MeiliError> {
        let Some(stored) = state
            .store
            .get_meta(TOPOLOGY_KEY)
            .await
            .map_err(store_error)?
        else {
            return Ok(false);
        };
        let topology: Topology = serde_json::from_value(stored)
            .map_err(|e| MeiliError::internal(format!("the stored topology is unreadable: {e}")))?;
        let current = self.elastic.view().topology.epoch;
        let newer = topology.epoch > current || (at_start && topology.epoch >= current);
        if !newer || *self.elastic.view().topology == topology {
            return Ok(false);
        }
        let view = View::new(topology)?;
        // Writes routed by the old placement drain before the view changes.
        let gate = self.close_gate().await;
        self.elastic_metrics(state)
            .epoch
            .set(view.topology.epoch as i64);
        tracing::info!(epoch = view.topology.epoch, "adopting the stored topology");
        self.elastic.set_view(view);
        drop(gate);
        Ok(true)
    }

    /// Closes the write gate and waits for the plainly routed writes to drain; the gate reopens when the
    /// guard is dropped (also when the caller is cancelled).
    pub(super) async fn close_gate(&self) -> GateGuard<'_> {
        lock(&self.elastic.gate).starting += 1;
        let guard = GateGuard(&self.elastic.gate);
        while lock(&self.elastic.gate).plain > 0 {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        guard
    }

    /// Refuses an index-level change (creation, deletion, swap) of `index` while a fleet change runs, here
    /// or on another proxy: it would miss the nodes joining, or leave a migration nothing to copy.
    pub(crate) fn refuse_while_migrating(&self, index: &str) -> Result<(), MeiliError> {
        self.refuse_while_resharding(index)?;
        let g = lock(&self.elastic.gate);
        if g.live.is_some() || g.foreign || g.claimed || g.claiming > 0 {
            return Err(index_frozen(index));
        }
        Ok(())
    }

    /// How a client write of `index` is routed now: waits while a migration starts; an index a live
    /// migration does not cover cannot be written until it ends.
    pub(crate) async fn write_route(&self, index: &str) -> Result<WriteRoute<'_>, MeiliError> {
        loop {
            {
                let mut g = lock(&self.elastic.gate);
                match &g.live {
                    Some(live) if live.runs.contains_key(index) => {
                        return Ok(WriteRoute::Migrating)
                    }
                    Some(_) => return Err(index_frozen(index)),
                    None if g.foreign => return Err(migrating_elsewhere()),
                    // checked under the gate lock: a resharding adopted from the store first marks the
                    // index, then closes the gate to drain the writes routed before (see reshard.rs)
                    None if self.reshard_foreign(index) => {
                        return Err(super::reshard::resharding_elsewhere(index))
                    }
                    None if g.starting == 0 => {
                        g.plain += 1;
                        drop(g);
                        return Ok(WriteRoute::Plain(PlainPermit {
                            gate: &self.elastic.gate,
                            placement: self
                                .reshard_placement(index)
                                .unwrap_or_else(|| self.placement()),
                        }));
                    }
                    None => {}
                }
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// A broadcast write of `index` (settings-free document deletions, empty batches): routed by the
    /// committed placement or through the live coordinator.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn broadcast_write(
        &self,
        state: &AppState,
        index: &str,
        task: WriteTask,
        method: Method,
        path: String,
        body: Option<Value>,
        quorum: WriteQuorum,
    ) -> Result<ProxyResponse, MeiliError> {
        match self.write_route(index).await? {
            WriteRoute::Plain(permit) if self.reshard_active(index) => {
                drop(permit);
                let intent = WriteIntent::Broadcast { method, path, body };
                self.reshard_write(state, index, intent, task, quorum).await
            }
            WriteRoute::Plain(permit) => {
                let write = FanoutWrite::broadcast(
                    task,
                    method,
                    path,
                    body,
                    &permit.placement,
                    quorum,
                    self.deadline(state),
                );
                let response = self.answer_write(state, write).await;
                drop(permit);
                response
            }
            WriteRoute::Migrating => {
                let intent = WriteIntent::Broadcast { method, path, body };
                self.migrating_write(state, index, intent, task, quorum)
                    .await
            }
        }
    }

    /// Runs a client write of a migrating index through its coordinator, waiting while a shard it
    /// touches is fenced; the reply waits for every node's answer (so `write_finished` comes after the
    /// last one). When the migration ended meanwhile, the write is routed by the committed placement.
    pub(crate) async fn migrating_write(
        &self,
        state: &AppState,
        index: &str,
        intent: WriteIntent,
        task: WriteTask,
        quorum: WriteQuorum,
    ) -> Result<ProxyResponse, MeiliError> {
        loop {
            let deadline = self.deadline(state);
            let admitted = {
                let mut g = lock(&self.elastic.gate);
                match g.live.as_mut().and_then(|l| l.runs.get_mut(index)) {
                    Some(run) => {
                        if run.primary_key.is_none()
                            && matches!(intent, WriteIntent::Documents { .. })
                        {
                            return Err(index_frozen(index));
                        }
                        Some(
                            run.m
                                .try_write(intent.clone(), task.clone(), quorum, deadline),
                        )
                    }
                    None => None,
                }
            };
            match admitted {
                Some(Ok(Some((write, ticket)))) => {
                    let (mut write, mut set) = self.drive_write(state, write).await;
                    while let Some(done) = set.join_next().await {
                        match done {
                            Ok((id, Ok((status, body)))) => write.on_response(id, status, &body),
                            Ok((id, Err(_))) => write.on_failure(id),
                            Err(_) => {}
                        }
                    }
                    let reply = self.finish_write(state, write, set, true).await;
                    if let Some(run) = lock(&self.elastic.gate)
                        .live
                        .as_mut()
                        .and_then(|l| l.runs.get_mut(index))
                    {
                        run.m.write_finished(ticket, now_ms());
                    }
                    self.elastic.wake.notify_one();
                    return Ok(super::reply_response(&reply?));
                }
                Some(Ok(None)) => tokio::time::sleep(Duration::from_millis(3)).await,
                Some(Err(e)) => return self.failed_task(state, task, &e).await,
                None => match self.write_route(index).await? {
                    WriteRoute::Migrating => {}
                    WriteRoute::Plain(permit) => {
                        let pk = self.cached_primary_key(index);
                        let write = match plain_write(
                            intent,
                            task.clone(),
                            index,
                            pk.as_deref(),
                            &permit.placement,
                            quorum,
                            deadline,
                        ) {
                            Ok(w) => w,
                            Err(e) => return self.failed_task(state, task, &e).await,
                        };
                        let response = self.answer_write(state, write).await;
                        drop(permit);
                        return response;
                    }
                },
            }
        }
    }

    // ----- forwarding -----

    /// Runs a request, forwarding a write another proxy must fence to that proxy: before the dispatch
    /// when this proxy already knows, and after a refusal (the record was seen meanwhile, or the change
    /// ended meanwhile: a refused write left nothing behind, its task uid is only taken once the write is
    /// routed, so it is simply tried again, a bounded number of times).
    pub(crate) async fn dispatch_or_forward(
        &self,
        state: &AppState,
        route: crate::routes::Route,
        request: ProxyRequest,
    ) -> Result<ProxyResponse, MeiliError> {
        /// Rounds of (forward, else dispatch here) before a refusal is returned.
        const ROUNDS: usize = 3;
        if reads_only(&route) {
            // a read resolves each index's resharding state once: planned and sent alike
            return self.with_pins(self.dispatch(state, route, request)).await;
        }
        if forwardable_index(&route).is_none() {
            return self.dispatch(state, route, request).await;
        }
        let mut round = 0;
        loop {
            round += 1;
            if let Some(forwarded) = self.forward_foreign_write(state, &route, &request).await {
                return Ok(forwarded);
            }
            match self.dispatch(state, route.clone(), request.clone()).await {
                Err(e)
                    if round < ROUNDS
                        && e.status == 503
                        && matches!(
                            e.code.as_str(),
                            "miroir_migration_in_progress" | "miroir_reshard_in_progress"
                        ) =>
                {
                    // the change's state is moving (its claim seen or released): look again
                    tokio::time::sleep(Duration::from_millis(
                        state.config.rebalancer.topology_poll_ms.clamp(1, 1_000),
                    ))
                    .await;
                }
                other => return other,
            }
        }
    }

    /// Where a client write of `index` goes instead of being refused here: the advertised URL of the
    /// proxy running the index's resharding or the fleet change (`None`: handled here).
    fn write_owner(&self, state: &AppState, index: &str) -> Option<String> {
        let url = self.reshard_owner_url(index).or_else(|| {
            let g = lock(&self.elastic.gate);
            if g.foreign && g.live.is_none() {
                lock(&self.elastic.owner_url).clone()
            } else {
                None
            }
        })?;
        (state.config.server.advertise_url.as_deref() != Some(url.as_str())).then_some(url)
    }

    /// A client write (documents, settings) this proxy would refuse because another proxy must fence
    /// it is sent to that proxy when it advertises a URL, and its answer returned as is (task uids are
    /// shared through the store). `None`: handled here (no owner URL, a forwarded request, or the owner
    /// unreachable: the write is then refused with 503 as without forwarding). The `Idempotency-Key`
    /// header is not passed on: this proxy keeps the key's record around the forwarded answer.
    pub(crate) async fn forward_foreign_write(
        &self,
        state: &AppState,
        route: &crate::routes::Route,
        request: &ProxyRequest,
    ) -> Option<ProxyResponse> {
        let index = forwardable_index(route)?;
        if request.headers.contains_key(FORWARDED_HEADER) {
            return None;
        }
        let url = self.write_owner(state, index)?;
        let path = request
            .uri
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/");
        let mut builder = http::Request::builder()
            .method(request.method.clone())
            .uri(format!("{url}{path}"));
        for (name, value) in request.headers.iter() {
            if !hop_by_hop(name.as_str()) && name.as_str() != "idempotency-key" {
                builder = builder.header(name, value);
            }
        }
        let forwarded = builder
            .header(FORWARDED_HEADER, "1")
            .body(http_body_util::Full::new(request.body.clone()))
            .ok()?;
        let client = self.elastic.forward_client.get_or_init(|| {
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build_http()
        });
        let timeout = Duration::from_millis(state.config.server.request_timeout_ms.max(1));
        let answer = async {
            let resp = client.request(forwarded).await.map_err(|e| e.to_string())?;
            let (parts, body) = resp.into_parts();
            let bytes = http_body_util::BodyExt::collect(body)
                .await
                .map_err(|e| e.to_string())?
                .to_bytes();
            Ok::<_, String>((parts, bytes))
        };
        let (parts, bytes) = match tokio::time::timeout(timeout, answer).await {
            Ok(Ok(a)) => a,
            Ok(Err(e)) => {
                tracing::warn!(
                    owner = url,
                    error = e,
                    "cannot forward a write to its owner"
                );
                return None;
            }
            Err(_) => {
                tracing::warn!(owner = url, "forwarding a write to its owner timed out");
                return None;
            }
        };
        let mut response = http::Response::builder().status(parts.status);
        for (name, value) in parts.headers.iter() {
            if !hop_by_hop(name.as_str()) {
                response = response.header(name, value);
            }
        }
        response.body(http_body_util::Full::new(bytes)).ok()
    }

    // ----- the loop -----

    /// Polls the store for a newer topology or a claimed change and runs the change's migration. Runs with
    /// the health probe.
    pub(crate) async fn elastic_loop(self: Arc<Self>, state: Arc<AppState>) {
        let metrics = self.elastic_metrics(&state);
        metrics.epoch.set(self.elastic.view().topology.epoch as i64);
        let poll = Duration::from_millis(state.config.rebalancer.topology_poll_ms.max(1));
        let lease = state.config.rebalancer.lease_ms;
        loop {
            self.elastic_ready(&state).await;
            let claims_before = lock(&self.elastic.gate).claims;
            match state.store.get_meta(PENDING_KEY).await {
                Ok(Some(v)) => match serde_json::from_value::<Pending>(v.clone()) {
                    Ok(p) => {
                        lock(&self.elastic.gate).claimed = true;
                        let now = now_ms();
                        let mine = p.owner == self.elastic.instance;
                        if mine || now.saturating_sub(p.heartbeat) > lease {
                            // Take the claim (or renew it): only one proxy runs a change.
                            let taken = Pending {
                                owner: self.elastic.instance.clone(),
                                heartbeat: now,
                                owner_url: state.config.server.advertise_url.clone(),
                                ..p
                            };
                            let value = serde_json::to_value(&taken).unwrap_or(Value::Null);
                            if let Ok(true) =
                                state.store.swap_meta(PENDING_KEY, Some(&v), &value).await
                            {
                                lock(&self.elastic.gate).foreign = false;
                                self.elastic.unfollow();
                                metrics.running.set(1);
                                self.run_migration(&state, taken, value).await;
                                metrics.running.set(0);
                                continue;
                            }
                        } else {
                            // where refused writes go, known before they are refused
                            *lock(&self.elastic.owner_url) = p.owner_url.clone();
                            let newly =
                                !std::mem::replace(&mut lock(&self.elastic.gate).foreign, true);
                            if newly {
                                // the writes routed by the committed placement before the mark drain
                                // now, well within the two polls the owner waits before it starts
                                drop(self.close_gate().await);
                            }
                            self.follow_records(&state, &p).await;
                        }
                    }
                    Err(e) => tracing::error!(error = %e, "the stored fleet change is unreadable"),
                },
                Ok(None) => {
                    // The claim is released after the commit: adopt the committed topology BEFORE
                    // routing writes again (a write routed by the old placement in between would land
                    // on an owner the change cleaned); until then they keep being forwarded or refused.
                    match self.adopt_stored(&state, false).await {
                        Ok(_) => {
                            let mut g = lock(&self.elastic.gate);
                            g.foreign = false;
                            // a claim this proxy made after the store was read is not seen yet
                            if g.live.is_none() && g.claims == claims_before {
                                g.claimed = false;
                            }
                            drop(g);
                            // the records are gone with the claim: reads follow the adopted topology
                            self.elastic.unfollow();
                        }
                        Err(e) => tracing::warn!(error = %e, "cannot adopt the stored topology"),
                    }
                }
                Err(e) => tracing::warn!(error = %e, "cannot read the stored fleet change"),
            }
            let _ = tokio::time::timeout(poll, self.elastic.wake.notified()).await;
        }
    }

    fn migration_params(&self, state: &AppState, index: &str, pk: Option<&str>) -> MigrationParams {
        let mut p = MigrationParams::new(index, pk.unwrap_or("id"));
        p.max_concurrent_migrations =
            (state.config.rebalancer.max_concurrent_migrations as usize).max(1);
        p.docs_per_second = state.config.rebalancer.throttle_docs_per_sec;
        p.page_size = PAGE_SIZE;
        p.retry_after_ms = 300;
        p.fence_timeout_ms = 5_000;
        // a shard's copies on its old owners stay until every read that may still use them is over: the
        // other proxies read by the records they last polled (two polls), and a read planned just before
        // the cut-over waits at most the node timeout
        p.cleanup_grace_ms =
            2 * state.config.rebalancer.topology_poll_ms + state.config.scatter.node_timeout_ms;
        p
    }

    /// Follows the records of a fleet change another proxy runs: reads of each index use the placement
    /// core derives from its last stored record (old owners until a shard's cut-over record, new ones
    /// from it on). An index without a record yet reads by the committed placement.
    async fn follow_records(&self, state: &AppState, pending: &Pending) {
        *lock(&self.elastic.followed_new) = Some(pending.new.clone());
        for (index, pk) in &pending.indexes {
            let record = match state.store.get_meta(&record_key(index)).await {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(index, error = %e, "cannot read a migration record");
                    continue;
                }
            };
            // none yet (the coordinator has not started: the committed placement applies), or none any
            // more (released after the commit: the last one followed stays until the new topology is
            // adopted)
            let Some(record) = record else {
                continue;
            };
            if lock(&self.elastic.followed)
                .get(index)
                .is_some_and(|(v, _)| *v == record)
            {
                continue;
            }
            let params = self.migration_params(state, index, pk.as_deref());
            match Migration::resume(&record, params) {
                Ok(m) => {
                    let p = Arc::new(m.read_placement().clone());
                    lock(&self.elastic.followed).insert(index.clone(), (record, p));
                }
                Err(e) => tracing::error!(index, error = %e, "unusable migration record"),
            }
        }
        lock(&self.elastic.followed).retain(|i, _| pending.indexes.contains_key(i));
    }

    /// Carries out a claimed change to the end (resuming stored records), then commits its topology.
    /// `claim` is the stored value of the claim, renewed (compare-and-set) every third of the lease; a
    /// claim taken over by another proxy stops this run.
    async fn run_migration(
        self: &Arc<Self>,
        state: &Arc<AppState>,
        pending: Pending,
        claim: Value,
    ) {
        // The committed topology must be the change's old one (or already its new one: a commit whose
        // claim was not yet released).
        if let Err(e) = self.adopt_stored(state, false).await {
            tracing::warn!(error = %e, "cannot adopt the stored topology");
        }
        let committed = self.elastic.view().topology.clone();
        if *committed == pending.new {
            self.release(state, &pending).await;
            return;
        }
        if *committed != pending.old {
            tracing::error!(
                committed = committed.epoch,
                planned_from = pending.old.epoch,
                "the claimed fleet change was planned on another topology: dropped"
            );
            self.release(state, &pending).await;
            return;
        }
        // The hints of an earlier run are loaded first: a coordinator write never overtakes them.
        let _ = self.write_hints(state).await;
        // Every other proxy polls the store: give them two polls to see the claim and stop routing writes
        // by the old placement before the coordinator starts dual-writing.
        let settle = pending.started_at + 2 * state.config.rebalancer.topology_poll_ms;
        let now = now_ms();
        if settle > now {
            tokio::time::sleep(Duration::from_millis(settle - now)).await;
        }
        let gate = self.close_gate().await;
        let mut runs = BTreeMap::new();
        let mut resumed = false;
        for (index, pk) in &pending.indexes {
            let params = self.migration_params(state, index, pk.as_deref());
            let started = match state.store.get_meta(&record_key(index)).await {
                Ok(Some(record)) => {
                    resumed = true;
                    Migration::resume(&record, params)
                }
                Ok(None) => pending.plan().and_then(|p| Migration::start(p, params)),
                Err(e) => Err(store_error(e)),
            };
            match started {
                Ok(m) => {
                    runs.insert(
                        index.clone(),
                        Run {
                            m,
                            primary_key: pk.clone(),
                            docs_copied: 0,
                        },
                    );
                }
                Err(e) => {
                    tracing::error!(index, error = %e, "the migration cannot start; retrying later");
                    drop(gate);
                    tokio::time::sleep(Duration::from_millis(
                        state.config.rebalancer.topology_poll_ms,
                    ))
                    .await;
                    return;
                }
            }
        }
        {
            let mut g = lock(&self.elastic.gate);
            g.live = Some(Live {
                pending: pending.clone(),
                runs,
                resumed,
            });
        }
        drop(gate);
        tracing::info!(change = %pending.change, "fleet migration running");
        let metrics = self.elastic_metrics(state);
        let mut set: JoinSet<(String, (usize, Answer))> = JoinSet::new();
        let mut claim = claim;
        let mut renewed_at = now_ms();
        let renew_every = (state.config.rebalancer.lease_ms / 3).max(1);
        loop {
            let now = now_ms();
            if now.saturating_sub(renewed_at) >= renew_every {
                let renewed = Pending {
                    heartbeat: now,
                    ..pending.clone()
                };
                let value = serde_json::to_value(&renewed).unwrap_or(Value::Null);
                match state
                    .store
                    .swap_meta(PENDING_KEY, Some(&claim), &value)
                    .await
                {
                    Ok(true) => {
                        claim = value;
                        renewed_at = now;
                    }
                    Ok(false) => {
                        tracing::error!(
                            "the fleet change was taken over by another proxy: stopping"
                        );
                        let mut g = lock(&self.elastic.gate);
                        g.live = None;
                        g.foreign = true;
                        return;
                    }
                    Err(e) => tracing::warn!(error = %e, "cannot renew the fleet change claim"),
                }
            }
            let mut actions = Vec::new();
            let (finished, wake) = {
                let mut g = lock(&self.elastic.gate);
                let Some(live) = g.live.as_mut() else { return };
                for (index, run) in live.runs.iter_mut() {
                    run.m.handle_timeout(now);
                    while let Some(a) = run.m.poll_action() {
                        actions.push((index.clone(), a));
                    }
                }
                let finished = live.runs.values().all(|r| r.m.is_finished());
                let wake = live.runs.values().filter_map(|r| r.m.poll_timeout()).min();
                (finished && actions.is_empty() && set.is_empty(), wake)
            };
            for (index, action) in actions {
                match action {
                    Action::Send(req) => {
                        let hinted = req.method != Method::Get
                            && lock(&self.hints).has_pending(&index, &req.node);
                        if hinted {
                            // A node write never overtakes the node's hints (they may hold this shard's
                            // older writes): failed back, retried once they are replayed.
                            self.with_run(&index, |m| m.on_failure(req.id, now_ms()));
                            continue;
                        }
                        if req.method == Method::Post && req.path.contains("/documents?") {
                            let n = req
                                .body
                                .as_ref()
                                .and_then(Value::as_array)
                                .map_or(0, Vec::len) as u64;
                            metrics.docs.inc_by(n);
                            if let Some(run) = lock(&self.elastic.gate)
                                .live
                                .as_mut()
                                .and_then(|l| l.runs.get_mut(&index))
                            {
                                run.docs_copied += n;
                            }
                        }
                        let send = self.request_future(state, req);
                        set.spawn(async move { (index, send.await) });
                    }
                    Action::Persist { seq, record } => {
                        put_meta_until_stored(state, &record_key(&index), &record, "migration")
                            .await;
                        self.with_run(&index, |m| m.on_persisted(seq, now_ms()));
                    }
                }
            }
            if finished {
                break;
            }
            let sleep = wake.map_or(20, |w| w.saturating_sub(now_ms()).clamp(1, 20));
            tokio::select! {
                Some(done) = set.join_next(), if !set.is_empty() => {
                    self.absorb(done);
                    while let Some(done) = set.try_join_next() {
                        self.absorb(done);
                    }
                }
                _ = tokio::time::sleep(Duration::from_millis(sleep)) => {}
                _ = self.elastic.wake.notified() => {}
            }
        }
        self.sync_joining_keys(state, &pending).await;
        self.commit(state, &pending).await;
    }

    /// Gives the nodes the change adds the fleet's API keys before it is committed (from then on the key
    /// ring may be read from them), retrying while a node fails.
    async fn sync_joining_keys(&self, state: &AppState, pending: &Pending) {
        let joining: Vec<NodeId> = pending
            .new
            .nodes
            .iter()
            .filter(|n| n.state.is_placed() && !pending.old.nodes.iter().any(|o| o.id == n.id))
            .map(|n| n.id.clone())
            .collect();
        while let Err(e) = self.sync_node_keys(state, &joining).await {
            tracing::warn!(error = %e, "cannot copy the API keys to the joining nodes; retrying");
            tokio::time::sleep(Duration::from_millis(
                state.config.rebalancer.topology_poll_ms,
            ))
            .await;
        }
    }

    /// Feeds an event to the live coordinator of `index` (if any) and counts the shards it finishes.
    fn with_run(&self, index: &str, f: impl FnOnce(&mut Migration)) {
        let mut g = lock(&self.elastic.gate);
        if let Some(run) = g.live.as_mut().and_then(|l| l.runs.get_mut(index)) {
            let before = done_count(&run.m);
            f(&mut run.m);
            let after = done_count(&run.m);
            if let Some(m) = self.elastic.metrics.get() {
                m.shards.inc_by(after.saturating_sub(before));
            }
        }
    }

    fn absorb(&self, done: Result<(String, (usize, Answer)), tokio::task::JoinError>) {
        let Ok((index, (id, answer))) = done else {
            return;
        };
        self.with_run(&index, |m| match &answer {
            Ok((status, body)) => m.on_response(id, *status, body, now_ms()),
            Err(e) => {
                tracing::warn!(index, error = %e, "migration request failed");
                m.on_failure(id, now_ms())
            }
        });
    }

    /// Commits a finished migration's topology (compare-and-set on the stored one), forgets the hints of
    /// the nodes that left and releases the claim.
    async fn commit(&self, state: &AppState, pending: &Pending) {
        let new = match serde_json::to_value(&pending.new) {
            Ok(v) => v,
            Err(e) => {
                tracing::error!(error = %e, "cannot encode the new topology");
                return;
            }
        };
        loop {
            let stored = match state.store.get_meta(TOPOLOGY_KEY).await {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!(error = %e, "cannot read the stored topology to commit");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            };
            let old_ok = match &stored {
                None => true,
                Some(v) => serde_json::from_value::<Topology>(v.clone())
                    .is_ok_and(|t| t == pending.old || t == pending.new),
            };
            if !old_ok {
                // Unreachable while claims are exclusive; the next loop pass adopts the stored topology
                // and drops this claim (planned on another topology).
                tracing::error!(
                    "the stored topology moved under a running migration: not committed"
                );
                lock(&self.elastic.gate).live = None;
                return;
            }
            if stored.as_ref() == Some(&new) {
                break;
            }
            match state
                .store
                .swap_meta(TOPOLOGY_KEY, stored.as_ref(), &new)
                .await
            {
                Ok(true) => break,
                Ok(false) => continue,
                Err(e) => {
                    tracing::error!(error = %e, "cannot commit the new topology");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
        let view = match View::new(pending.new.clone()) {
            Ok(v) => v,
            Err(e) => {
                tracing::error!(error = %e, "the new topology is invalid");
                return;
            }
        };
        let status = {
            let g = lock(&self.elastic.gate);
            g.live.as_ref().map(|l| live_status(l, now_ms()))
        };
        // Nodes that left take their hints along: their shards live elsewhere now.
        let gone: Vec<NodeId> = pending
            .old
            .nodes
            .iter()
            .filter(|n| pending.new.node(&n.id).is_none_or(|m| !m.state.is_placed()))
            .map(|n| n.id.clone())
            .chain(pending.lost.iter().cloned())
            .collect();
        let mut forgotten = Vec::new();
        {
            let mut hints = lock(&self.hints);
            for node in &gone {
                forgotten.extend(hints.forget_node(node));
            }
        }
        for h in forgotten {
            if let Err(e) = state.store.delete_hint(h.seq).await {
                tracing::warn!(error = %e, "cannot delete a forgotten hint");
            }
        }
        {
            let mut g = lock(&self.elastic.gate);
            self.elastic.set_view(view);
            g.live = None;
        }
        self.elastic_metrics(state)
            .epoch
            .set(pending.new.epoch as i64);
        if let Some(mut s) = status {
            s["status"] = json!("succeeded");
            s["finishedAt"] = json!(now_ms());
            s["etaSeconds"] = Value::Null;
            *lock(&self.elastic.last) = Some(s);
        }
        tracing::info!(epoch = pending.new.epoch, "fleet migration committed");
        self.release(state, pending).await;
    }

    /// Releases a change's claim and its records.
    async fn release(&self, state: &AppState, pending: &Pending) {
        for index in pending.indexes.keys() {
            if let Err(e) = state.store.delete_meta(&record_key(index)).await {
                tracing::warn!(error = %e, "cannot delete a migration record");
            }
        }
        if let Err(e) = state.store.delete_meta(PENDING_KEY).await {
            tracing::error!(error = %e, "cannot release the fleet change");
        }
    }

    // ----- admin -----

    /// `/_miroir/nodes|groups|rebalance` routes (`None`: not one of them).
    pub(crate) async fn admin_elastic(
        &self,
        state: &AppState,
        method: &http::Method,
        path: &str,
        request: &ProxyRequest,
    ) -> Option<Result<ProxyResponse, MeiliError>> {
        let segs: Vec<&str> = path.split('/').collect();
        let m = method.clone();
        let change = match (m, segs.as_slice()) {
            (http::Method::GET, ["rebalance", "status"]) => {
                return Some(
                    self.rebalance_status(state)
                        .await
                        .map(|v| json_response(200, &v)),
                )
            }
            (http::Method::POST, ["rebalance"]) => {
                self.elastic.wake.notify_one();
                return Some(
                    self.rebalance_status(state)
                        .await
                        .map(|v| json_response(200, &v)),
                );
            }
            (http::Method::POST, ["nodes"]) => json_body(request)
                .and_then(|b| parse_add_node(&b))
                .map(Change::AddNode),
            (http::Method::POST, ["nodes", id, "drain"]) => node_id(id).map(Change::DrainNode),
            (http::Method::POST, ["nodes", id, "fail"]) => node_id(id).map(Change::FailNode),
            (http::Method::DELETE, ["nodes", id]) => node_id(id).map(Change::RemoveNode),
            (http::Method::POST, ["groups"]) => json_body(request)
                .and_then(|b| parse_add_group(&b))
                .map(Change::AddGroup),
            (http::Method::DELETE, ["groups", g]) => group_id(g).map(Change::RemoveGroup),
            _ => return None,
        };
        Some(match change {
            Ok(c) => self.request_change(state, c).await,
            Err(e) => Err(e),
        })
    }

    /// Plans a change on the committed topology and claims it; the loop runs it.
    async fn request_change(
        &self,
        state: &AppState,
        change: Change,
    ) -> Result<ProxyResponse, MeiliError> {
        self.elastic_ready(state).await;
        self.reshard_ready(state).await;
        self.refuse_fleet_change_while_resharded()?;
        if self.elastic.is_migrating()
            || state
                .store
                .get_meta(PENDING_KEY)
                .await
                .map_err(store_error)?
                .is_some()
        {
            return Err(in_progress());
        }
        self.adopt_stored(state, false).await?;
        let current = self.elastic.view().topology.clone();
        if let Change::AddNode(n) = &change {
            self.check_reachable(state, &n.id, &n.address).await?;
        }
        if let Change::AddGroup(nodes) = &change {
            for n in nodes {
                self.check_reachable(state, &n.id, &n.address).await?;
            }
        }
        let plan = migration::plan_change(&current, &change)?;
        // From here no index is created or deleted through this proxy: the list below is the migrated set.
        lock(&self.elastic.gate).claiming += 1;
        let claiming = ClaimGuard(&self.elastic.gate);
        let claimed = self.claim_change(state, &change, &plan).await;
        if matches!(claimed, Ok(true)) {
            let mut g = lock(&self.elastic.gate);
            g.claimed = true;
            g.claims += 1;
        }
        drop(claiming);
        if !claimed? {
            return Err(in_progress());
        }
        self.elastic.wake.notify_one();
        Ok(json_response(
            202,
            &json!({
                "status": "enqueued",
                "change": describe(&change),
                "fromEpoch": plan.old.epoch,
                "toEpoch": plan.new.epoch,
                "shardsToMove": plan.moves.len(),
            }),
        ))
    }

    /// Lists the indexes and stores the claim of `change` (compare-and-set from absent); `Ok(false)`
    /// when another change was claimed first.
    async fn claim_change(
        &self,
        state: &AppState,
        change: &Change,
        plan: &Plan,
    ) -> Result<bool, MeiliError> {
        let indexes = self.list_indexes(state).await?;
        let pending = Pending {
            change: describe(change),
            old: plan.old.clone(),
            new: plan.new.clone(),
            lost: plan.lost.iter().cloned().collect(),
            indexes,
            started_at: now_ms(),
            owner: self.elastic.instance.clone(),
            heartbeat: now_ms(),
            owner_url: state.config.server.advertise_url.clone(),
        };
        let value = serde_json::to_value(&pending)
            .map_err(|e| MeiliError::internal(format!("cannot encode the fleet change: {e}")))?;
        state
            .store
            .swap_meta(PENDING_KEY, None, &value)
            .await
            .map_err(store_error)
    }

    async fn check_reachable(
        &self,
        state: &AppState,
        id: &NodeId,
        url: &str,
    ) -> Result<(), MeiliError> {
        let r = state
            .nodes
            .send_with_timeout(
                id.as_str(),
                url,
                http::Method::GET,
                "/health",
                None,
                Bytes::new(),
                Duration::from_secs(3),
            )
            .await;
        match r {
            Ok(a) if a.status == 200 => Ok(()),
            _ => Err(bad(
                "miroir_node_unreachable",
                format!("The node `{id}` does not answer `GET /health` at `{url}`."),
            )),
        }
    }

    /// Every index of the fleet with its primary key (listed by one node).
    async fn list_indexes(
        &self,
        state: &AppState,
    ) -> Result<BTreeMap<String, Option<String>>, MeiliError> {
        let mut out = BTreeMap::new();
        let mut offset = 0u64;
        loop {
            let path = format!("/indexes?offset={offset}&limit=1000");
            let (status, body) = self.read_one(state, None, Method::Get, &path, None).await?;
            if status != 200 {
                return Err(
                    MeiliError::from_node_body(status, &body).unwrap_or_else(|| {
                        MeiliError::bad_node_response("any", "the index list is unreadable")
                    }),
                );
            }
            let results = body
                .get("results")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            for i in &results {
                if let Some(uid) = i.get("uid").and_then(Value::as_str) {
                    let pk = i
                        .get("primaryKey")
                        .and_then(Value::as_str)
                        .map(str::to_string)
                        .or_else(|| self.cached_primary_key(uid));
                    out.insert(uid.to_string(), pk);
                }
            }
            let total = body.get("total").and_then(Value::as_u64).unwrap_or(0);
            offset += results.len() as u64;
            if results.is_empty() || offset >= total {
                return Ok(out);
            }
        }
    }

    /// `GET /_miroir/rebalance/status`: the live migration on this proxy, else the claimed one (run by
    /// another proxy or about to start), else the last finished one.
    async fn rebalance_status(&self, state: &AppState) -> Result<Value, MeiliError> {
        if let Some(s) = lock(&self.elastic.gate)
            .live
            .as_ref()
            .map(|l| live_status(l, now_ms()))
        {
            return Ok(s);
        }
        let epoch = self.elastic.view().topology.epoch;
        if let Some(v) = state
            .store
            .get_meta(PENDING_KEY)
            .await
            .map_err(store_error)?
        {
            if let Ok(p) = serde_json::from_value::<Pending>(v) {
                return Ok(json!({
                    "status": "enqueued",
                    "change": p.change,
                    "fromEpoch": p.old.epoch,
                    "toEpoch": p.new.epoch,
                    "startedAt": p.started_at,
                    "owner": p.owner,
                    "heartbeat": p.heartbeat,
                    "epoch": epoch,
                }));
            }
        }
        Ok(json!({
            "status": "idle",
            "epoch": epoch,
            "last": lock(&self.elastic.last).clone(),
        }))
    }
}

fn done_count(m: &Migration) -> u64 {
    m.phases().values().filter(|p| **p == Phase::Done).count() as u64
}

/// A write intent built by the committed placement (a write admitted while its migration ended).
pub(super) fn plain_write(
    intent: WriteIntent,
    task: WriteTask,
    index: &str,
    pk: Option<&str>,
    placement: &Placement,
    quorum: WriteQuorum,
    deadline: Millis,
) -> Result<FanoutWrite, MeiliError> {
    Ok(match intent {
        WriteIntent::Documents { docs, replace } => {
            let Some(pk) = pk else {
                return Err(MeiliError::internal(
                    "the primary key of the index is unknown",
                ));
            };
            let plan = plan_batch(docs, pk, placement)?;
            FanoutWrite::documents(task, index, pk, replace, plan, placement, quorum, deadline)
        }
        WriteIntent::DeleteIds(ids) => {
            let plan = plan_delete_ids(&ids, placement);
            FanoutWrite::delete_ids(task, index, plan, placement, quorum, deadline)
        }
        WriteIntent::Broadcast { method, path, body } => {
            FanoutWrite::broadcast(task, method, path, body, placement, quorum, deadline)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topo() -> Topology {
        Topology {
            epoch: 1,
            shards: 8,
            replication_factor: 1,
            replica_groups: 1,
            nodes: vec![
                Node::active("n0", "http://a:1", 0),
                Node::active("n1", "http://b:1", 0),
            ],
        }
    }

    #[test]
    fn add_node_bodies_are_checked() {
        let n = parse_add_node(&json!({"id": "n2", "url": "http://c:7700/", "replicaGroup": 0}))
            .unwrap();
        assert_eq!(n.id.as_str(), "n2");
        assert_eq!(n.address, "http://c:7700");
        assert_eq!(
            parse_add_node(&json!({"id": "n2", "url": "http://c:7700"}))
                .unwrap()
                .replica_group,
            0
        );
        let code = |b: Value| parse_add_node(&b).unwrap_err().code;
        assert_eq!(code(json!([])), "bad_request");
        assert_eq!(code(json!({"url": "http://c"})), "miroir_invalid_node_id");
        assert_eq!(
            code(json!({"id": "a b", "url": "http://c"})),
            "miroir_invalid_node_id"
        );
        assert_eq!(
            code(json!({"id": 3, "url": "http://c"})),
            "miroir_invalid_node_id"
        );
        assert_eq!(code(json!({"id": "n"})), "miroir_invalid_node_url");
        assert_eq!(
            code(json!({"id": "n", "url": "ftp://c"})),
            "miroir_invalid_node_url"
        );
        assert_eq!(
            code(json!({"id": "n", "url": "not a url"})),
            "miroir_invalid_node_url"
        );
        assert_eq!(
            code(json!({"id": "n", "url": 5})),
            "miroir_invalid_node_url"
        );
        assert_eq!(
            code(json!({"id": "n", "url": "http://c", "replicaGroup": -1})),
            "miroir_invalid_replica_group"
        );
        assert_eq!(
            code(json!({"id": "n", "url": "http://c", "extra": 1})),
            "miroir_invalid_node"
        );
    }

    #[test]
    fn add_group_bodies_are_checked() {
        let g = parse_add_group(&json!({"nodes": [{"id": "g0", "url": "http://x:1"}, {"id": "g1", "url": "http://y:1"}]}))
            .unwrap();
        assert_eq!(g.len(), 2);
        let code = |b: Value| parse_add_group(&b).unwrap_err().code;
        assert_eq!(code(json!({"nodes": []})), "miroir_invalid_group");
        assert_eq!(code(json!({})), "miroir_invalid_group");
        assert_eq!(code(json!({"nodes": "x"})), "miroir_invalid_group");
        assert_eq!(
            code(
                json!({"nodes": [{"id": "a", "url": "http://x"}, {"id": "a", "url": "http://y"}]})
            ),
            "miroir_invalid_group"
        );
        assert_eq!(
            code(json!({"nodes": [{"id": "a"}]})),
            "miroir_invalid_node_url"
        );
        assert_eq!(code(json!({"nodes": [3]})), "bad_request");
        assert_eq!(code(json!({"nodes": [], "x": 1})), "miroir_invalid_group");
        assert_eq!(group_id("x").unwrap_err().code, "miroir_invalid_group_id");
        assert_eq!(group_id("-1").unwrap_err().code, "miroir_invalid_group_id");
        assert_eq!(group_id("2").unwrap(), 2);
    }

    #[test]
    fn the_view_hides_removed_nodes_and_addresses_follow_the_live_migration() {
        let mut t = topo();
        t.nodes.push(Node {
            state: NodeState::Removed,
            ..Node::active("old", "http://old:1", 0)
        });
        let e = Elastic::new(t.clone()).unwrap();
        assert_eq!(e.view().serving.nodes.len(), 2);
        assert_eq!(e.view().topology.nodes.len(), 3);
        assert_eq!(e.address(&NodeId::new("n1")).as_deref(), Some("http://b:1"));
        assert_eq!(e.address(&NodeId::new("n9")), None);
        let plan =
            migration::plan_change(&t, &Change::AddNode(Node::active("n9", "http://n9:1", 0)))
                .unwrap();
        let pending = Pending {
            change: json!({}),
            old: plan.old.clone(),
            new: plan.new.clone(),
            lost: Vec::new(),
            indexes: BTreeMap::from([("movies".to_string(), Some("id".to_string()))]),
            started_at: 0,
            owner: String::new(),
            heartbeat: 0,
            owner_url: None,
        };
        let m = Migration::start(plan, MigrationParams::new("movies", "id")).unwrap();
        lock(&e.gate).live = Some(Live {
            pending,
            runs: BTreeMap::from([(
                "movies".to_string(),
                Run {
                    m,
                    primary_key: Some("id".into()),
                    docs_copied: 0,
                },
            )]),
            resumed: false,
        });
        assert_eq!(
            e.address(&NodeId::new("n9")).as_deref(),
            Some("http://n9:1")
        );
        assert!(e.addresses().contains_key(&NodeId::new("n9")));
        assert!(e.is_migrating());
        // no shard is cut over yet: reads keep the old owners (the target holds dual-written copies, so
        // it counts as holding them, and any read it served would be filtered, but it serves none)
        let read = e.read_placement("movies");
        let n9 = NodeId::new("n9");
        assert!((0..read.shards()).all(|s| !read.owners(s, 0).contains(&n9)));
        let status = live_status(lock(&e.gate).live.as_ref().unwrap(), 10);
        assert_eq!(status["status"], "running");
        assert_eq!(status["fromEpoch"], 1);
        assert_eq!(status["toEpoch"], 2);
        assert!(status["shardsTotal"].as_u64().unwrap() > 0);
        assert_eq!(status["shardsDone"], 0);
    }

    #[test]
    fn an_invalid_topology_has_no_view() {
        let mut t = topo();
        t.nodes.clear();
        assert!(View::new(t).is_err());
    }

    #[test]
    fn only_document_and_settings_writes_are_forwarded() {
        use crate::routes::Route;
        use http::Method as M;
        let index = |m: M, p: &str| {
            let route = Route::parse(&m, p).unwrap();
            forwardable_index(&route).map(str::to_string)
        };
        for (m, p) in [
            (M::POST, "/indexes/movies/documents"),
            (M::PUT, "/indexes/movies/documents"),
            (M::DELETE, "/indexes/movies/documents/3"),
            (M::POST, "/indexes/movies/documents/delete-batch"),
            (M::POST, "/indexes/movies/documents/delete"),
            (M::PATCH, "/indexes/movies/settings"),
            (M::DELETE, "/indexes/movies/settings"),
        ] {
            assert_eq!(index(m.clone(), p).as_deref(), Some("movies"), "{m} {p}");
        }
        for (m, p) in [
            (M::GET, "/indexes/movies/documents"),
            (M::POST, "/indexes/movies/search"),
            (M::GET, "/indexes/movies/settings"),
            (M::POST, "/indexes"),
            (M::DELETE, "/indexes/movies"),
            (M::GET, "/tasks"),
        ] {
            assert_eq!(index(m.clone(), p), None, "{m} {p}");
        }
        assert!(hop_by_hop("host") && hop_by_hop("content-length") && hop_by_hop("connection"));
        assert!(!hop_by_hop("authorization") && !hop_by_hop("content-type"));
    }

    #[test]
    fn changes_are_described() {
        assert_eq!(
            describe(&Change::DrainNode(NodeId::new("n1")))["type"],
            "drainNode"
        );
        assert_eq!(describe(&Change::RemoveGroup(1))["group"], 1);
        assert_eq!(
            describe(&Change::AddGroup(vec![Node::active("a", "http://a", 0)]))["nodes"],
            json!(["a"])
        );
    }
}
