//! The fleet: the [`RouteHandler`] that carries out core's operations against the Meilisearch nodes.
//!
//! It holds the topology (from the configured nodes, S, RF, RG; then changed through `elastic`), its
//! placement, the nodes' [`FleetHealth`] (driven by [`Fleet::spawn_probe`]), a rotation counter for reads,
//! and an index-metadata cache: primary keys and the client's `faceting.maxValuesPerFacet` (nodes keep at
//! least S), persisted in the task store's meta area under `index:<uid>`; the search context, read from a
//! node's settings and kept for [`CONTEXT_TTL_MS`] (dropped when a settings write is sent or its task is
//! seen finished).
//!
//! It decides nothing itself: every decision is a core operation ([`FanoutWrite`], [`ScatterSearch`],
//! [`CoverRead`], [`TaskRead`], [`DocumentsPager`] with [`recover`], [`EveryNode`]) or a pure core function;
//! this module sends the operation's node requests concurrently, feeds the answers back by request id,
//! persists task records and replies.
//!
//! Routes:
//! - indexes: create (broadcast, quorum `all`, then the initial node settings), get and list (one node),
//!   update, delete, swap (broadcast);
//! - documents: add/replace/update (split per shard; the primary key is resolved once by the proxy; an
//!   invalid batch becomes a failed Miroir task; a missing index is created first), get by id (the shard's
//!   owners), list and fetch (documents pager), delete by id/batch (per shard), by filter and all
//!   (broadcast);
//! - search (GET/POST), multi-search (federated or not; federated queries merged by core's
//!   [`merge_federated`]), facet search, index and global stats;
//! - settings, whole and every sub-route (broadcast, quorum `all`; `_miroir_shard` hidden and kept);
//! - tasks: get, list, delete, cancel; experimental features; `GET /_miroir/topology` and `/shards`;
//! - the elastic fleet: `/_miroir/nodes`, `/_miroir/groups`, `/_miroir/rebalance` (see `fleet/elastic.rs`);
//! - dumps and snapshots: sent to every node, one Miroir task (quorum `all`); each node writes its own
//!   file of the shards it holds, so a dump's `dumpUid` stays `null` in the Miroir task (no one file);
//! - webhooks: kept by Miroir in the task store's meta area (`webhooks`), never sent to the nodes
//!   (core's `webhooks`); every Miroir task reaching a final status is POSTed to them (NDJSON,
//!   uncompressed, plain HTTP, best effort) by a watcher that runs with the health probe;
//! - batches: each Miroir task is its own batch (core's `tasks::batch`), list and get;
//! - API keys: list and get (one node), create, update, delete (every node, through core's [`KeysWrite`]:
//!   a created key gets a uid chosen here, sent explicitly to every node, so every node derives the same
//!   key value; a partial create is rolled back). The proxy itself accepts only its master key: keys
//!   created through it authenticate on the nodes, not on the proxy.
//!
//! Every other known route answers 501 `miroir_unsupported_route`.
//!
//! Writes: the task record is persisted before the client gets its 202; node answers arriving after the
//! decision are still collected in the background and the record is updated with them. Each node
//! receives the writes of one index one after the other, in the order they were queued, so replicas apply
//! them in one order; a slow node delays only its own queue.

use crate::http_util::{error_response, json_response, ProxyResponse};
use crate::routes::{AdminRoute, IndexUid, Route, Setting};
use crate::server::{no_node_available, AppState, ProxyRequest, RouteHandler};
use async_trait::async_trait;
use bytes::Bytes;
use http::{HeaderValue, StatusCode};
use miroir_core::auth::Access;
use miroir_core::config::UnavailableShardPolicy;
use miroir_core::config::{Config, WriteQuorumSetting};
use miroir_core::documents::{
    parse_csv_delimiter, parse_delete_ids, parse_request, plan_batch, plan_delete_ids,
    resolve_primary_key,
};
use miroir_core::health::{FleetHealth, HealthThresholds};
use miroir_core::ops::cover::{cover_without, recover, CoverOutcome, CoverRead, Recovery};
use miroir_core::ops::every::EveryNode;
use miroir_core::ops::index as index_ops;
use miroir_core::ops::keys::{self as key_ops, KeyDecision, KeyWrite, KeysWrite};
use miroir_core::ops::lanes::WriteLanes;
use miroir_core::ops::search::ScatterSearch;
use miroir_core::ops::settings as node_settings;
use miroir_core::ops::stats::{count_request, counted_documents, merge_index_stats, StatsPart};
use miroir_core::ops::task::{NodeTaskViews, TaskRead};
use miroir_core::ops::write::{FanoutWrite, WriteTask};
use miroir_core::ops::{node_unavailable, Method, NodeRequest, Reply};
use miroir_core::pager::{CoverEntry, DocumentsPager, DocumentsQuery, Step};
use miroir_core::quorum::WriteQuorum;
use miroir_core::search::federation::{
    check_non_federated, federated_query, merge_federated, Federation,
};
use miroir_core::search::{
    merge_facet_search, search_params_from_query, NodeAnswer, SearchContext,
};
use miroir_core::tasks::filter::task_not_found;
use miroir_core::tasks::{details, MiroirTask, NodeTaskView, TaskFilter, TaskQueryKind, TaskType};
use miroir_core::topology::{GroupId, Node, NodeId, Topology};
use miroir_core::webhooks::{notification_body, Notifier, Webhooks};
use miroir_core::{ErrorType, MeiliError, Millis};
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::task::JoinSet;

mod aliases;
mod elastic;
mod entropy;
mod keys;
mod repair;
mod reshard;

/// How long a node task may stay unknown before the task counts it as lost.
pub const LOST_AFTER_MS: Millis = 10 * 60 * 1000;

/// How long a search context read from a node's settings is reused.
pub const CONTEXT_TTL_MS: Millis = 1_000;

/// The store meta key of an index's metadata.
fn meta_key(uid: &str) -> String {
    format!("index:{uid}")
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> Millis {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as Millis)
        .unwrap_or(0)
}

/// 501 `miroir_unsupported_route`: a Meilisearch route Miroir does not carry (yet).
pub fn unsupported_route(what: &str) -> MeiliError {
    MeiliError::new(
        501,
        "miroir_unsupported_route",
        ErrorType::InvalidRequest,
        format!("Miroir does not support `{what}` on a sharded fleet."),
    )
}

fn missing_content_type_json() -> MeiliError {
    MeiliError::invalid(
        415,
        "missing_content_type",
        "A Content-Type header is missing. Accepted values for the Content-Type header are: `application/json`",
    )
}

fn invalid_content_type_json(ct: &str) -> MeiliError {
    MeiliError::invalid(
        415,
        "invalid_content_type",
        format!("The Content-Type `{ct}` is invalid. Accepted values for the Content-Type header are: `application/json`"),
    )
}

/// Parses a JSON request body as Meilisearch's JSON extractor does.
pub fn json_body(request: &ProxyRequest) -> Result<Value, MeiliError> {
    let ct = request
        .headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    match ct {
        None if request.body.is_empty() => {}
        None => return Err(missing_content_type_json()),
        Some(ct) => {
            let essence = ct.split(';').next().unwrap_or("").trim();
            if !essence.eq_ignore_ascii_case("application/json") {
                return Err(invalid_content_type_json(ct));
            }
        }
    }
    if request.body.is_empty() {
        return Err(MeiliError::invalid(
            400,
            "missing_payload",
            "A json payload is missing.",
        ));
    }
    serde_json::from_slice(&request.body).map_err(|e| {
        MeiliError::invalid(400, "bad_request", format!("Json deserialize error: {e}"))
    })
}

fn json_object(request: &ProxyRequest) -> Result<Map<String, Value>, MeiliError> {
    match json_body(request)? {
        Value::Object(m) => Ok(m),
        other => Err(MeiliError::invalid(
            400,
            "bad_request",
            format!(
                "Json deserialize error: invalid type: {}, expected a map at line 1 column 1",
                json_kind(&other)
            ),
        )),
    }
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "sequence",
        Value::Object(_) => "map",
    }
}

/// The query pairs of a URI, percent-decoded (`+` is a space), in order.
pub fn query_pairs(uri: &http::Uri) -> Vec<(String, String)> {
    let Some(q) = uri.query() else {
        return Vec::new();
    };
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn decode(s: &str) -> String {
    let s = s.replace('+', " ");
    percent_encoding::percent_decode_str(&s)
        .decode_utf8_lossy()
        .into_owned()
}

fn reply_response(reply: &Reply) -> ProxyResponse {
    let mut r = if reply.status == 204 {
        crate::http_util::empty_response(StatusCode::NO_CONTENT)
    } else {
        json_response(reply.status, &reply.body)
    };
    for (k, v) in &reply.headers {
        if let (Ok(name), Ok(value)) = (
            http::header::HeaderName::from_bytes(k.as_bytes()),
            HeaderValue::from_str(v),
        ) {
            r.headers_mut().insert(name, value);
        }
    }
    r
}

fn http_method(m: Method) -> http::Method {
    match m {
        Method::Get => http::Method::GET,
        Method::Post => http::Method::POST,
        Method::Put => http::Method::PUT,
        Method::Patch => http::Method::PATCH,
        Method::Delete => http::Method::DELETE,
    }
}

/// A node's answer: status and parsed body (`Null` when empty or not JSON).
type Answer = Result<(u16, Value), String>;

mod speed;

/// What the proxy keeps about an index (store meta `index:<uid>`).
#[derive(Debug, Clone, Default, PartialEq)]
struct IndexMeta {
    /// The primary key, once known.
    primary_key: Option<String>,
    /// The client's `faceting.maxValuesPerFacet` (`None`: the default); nodes keep at least S.
    max_values_per_facet: Option<u64>,
    /// The client's `displayedAttributes` (`None`: every field); nodes display everything.
    displayed: Option<Vec<String>>,
}

impl IndexMeta {
    fn from_json(v: &Value) -> IndexMeta {
        IndexMeta {
            primary_key: v
                .get("primaryKey")
                .and_then(Value::as_str)
                .map(str::to_string),
            max_values_per_facet: v.get("maxValuesPerFacet").and_then(Value::as_u64),
            displayed: v
                .get("displayedAttributes")
                .and_then(node_settings::client_displayed)
                .flatten(),
        }
    }

    fn to_json(&self, uid: &str) -> Value {
        json!({
            "uid": uid,
            "primaryKey": self.primary_key,
            "maxValuesPerFacet": self.max_values_per_facet,
            "displayedAttributes": self.displayed,
        })
    }

    fn kept(&self) -> node_settings::ClientSettings {
        node_settings::ClientSettings {
            max_values_per_facet: self.max_values_per_facet,
            displayed: self.displayed.clone(),
        }
    }

    fn max_values(&self) -> u64 {
        self.max_values_per_facet
            .unwrap_or(node_settings::DEFAULT_MAX_VALUES_PER_FACET)
    }
}

#[derive(Default)]
struct IndexCache {
    /// Indexes known to exist.
    indexes: HashMap<String, IndexMeta>,
    /// Indexes this proxy deleted: known not to exist (a node may still list one until its deletion task
    /// runs), so the next write creates them again instead of trusting a node's stale answer.
    deleted: std::collections::HashSet<String>,
    contexts: HashMap<String, (SearchContext, Millis)>,
}

/// The route handler over a fleet of nodes. See the module documentation.
pub struct Fleet {
    /// The committed topology, its placement and the live migration (see `fleet/elastic.rs`).
    elastic: elastic::Elastic,
    health: Mutex<FleetHealth>,
    quorum: WriteQuorum,
    counter: AtomicU64,
    cache: Mutex<IndexCache>,
    /// Per (index, node): core's write lanes; a queued request waits on its `go` signal.
    lanes: Arc<Mutex<WriteLanes<tokio::sync::oneshot::Sender<()>>>>,
    /// Serialises the read-modify-write of the webhooks kept in the store.
    webhooks: tokio::sync::Mutex<()>,
    /// The API keys the nodes hold (see `fleet/keys.rs`).
    keys: keys::KeyCache,
    /// The index aliases (see `fleet/aliases.rs`).
    aliases: aliases::AliasCache,
    /// Hinted handoff (core's `HintLog`, see `repair`): loaded from the store before the first write.
    hints: Arc<Mutex<miroir_core::hints::HintLog>>,
    hints_loaded: tokio::sync::OnceCell<()>,
    repair_metrics: std::sync::OnceLock<repair::RepairMetrics>,
    /// Two-phase settings: one machine per index (see [`crate::settings_sync`]).
    settings_sync: Arc<crate::settings_sync::SettingsSyncs>,
    /// Read-your-writes sessions (see [`crate::session`]).
    sessions: crate::session::SessionTable,
    /// Replica selection, fed by every node read answer (see `speed`).
    selector: Arc<Mutex<miroir_core::select::Selector>>,
    /// Online resharding (see `fleet/reshard.rs`).
    reshards: reshard::Reshards,
}

/// One write request's turn on its lane. `acquire` waits until the lane hands it the turn; dropping the
/// guard while holding the turn (answered, failed, or the task aborted) finishes the lane's in-flight request
/// and signals the next queued one. A guard dropped before its turn leaves its place to be skipped: the lane
/// hands its signal to a closed channel and moves on to the next.
struct LaneTurn {
    lanes: Arc<Mutex<WriteLanes<tokio::sync::oneshot::Sender<()>>>>,
    index: String,
    node: NodeId,
    wait: tokio::sync::oneshot::Receiver<()>,
    holding: bool,
}

impl LaneTurn {
    async fn acquire(&mut self) {
        // Err: the lanes were dropped with the fleet; nothing orders this request any more.
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
        while let Some(next) = lanes.finished(&self.index, &self.node) {
            if next.send(()).is_ok() {
                break;
            }
        }
    }
}

/// How often the webhook watcher looks for finished tasks.
pub const WEBHOOK_POLL_MS: u64 = 200;

/// The store meta key of the webhooks.
const WEBHOOKS_KEY: &str = "webhooks";

impl Fleet {
    /// Builds the fleet from the configuration's nodes, S, RF and RG.
    pub fn new(config: &Config) -> Result<Fleet, String> {
        let topology = Topology {
            epoch: 1,
            shards: config.shards,
            replication_factor: config.replication_factor,
            replica_groups: config.replica_groups,
            nodes: config
                .nodes
                .iter()
                .map(|n| Node::active(n.id.as_str(), n.address.clone(), n.replica_group))
                .collect(),
        };
        let elastic = elastic::Elastic::new(topology).map_err(|e| e.message)?;
        let quorum = match config.write_quorum {
            WriteQuorumSetting::Majority => WriteQuorum::Majority,
            WriteQuorumSetting::One => WriteQuorum::One,
            WriteQuorumSetting::All => WriteQuorum::All,
        };
        Ok(Fleet {
            elastic,
            health: Mutex::new(FleetHealth::new(HealthThresholds {
                unhealthy_threshold: config.health.unhealthy_threshold.max(1),
                recovery_threshold: config.health.recovery_threshold.max(1),
            })),
            quorum,
            counter: AtomicU64::new(0),
            cache: Mutex::new(IndexCache::default()),
            lanes: Arc::new(Mutex::new(WriteLanes::new())),
            webhooks: tokio::sync::Mutex::new(()),
            keys: keys::KeyCache::default(),
            aliases: aliases::AliasCache::default(),
            hints: Arc::default(),
            hints_loaded: tokio::sync::OnceCell::new(),
            repair_metrics: std::sync::OnceLock::new(),
            settings_sync: Arc::new(crate::settings_sync::SettingsSyncs::new(
                &config.settings_sync,
            )),
            sessions: crate::session::SessionTable::new(&config.session),
            selector: Fleet::new_selector(config),
            reshards: reshard::Reshards::default(),
        })
    }

    fn healthy(&self, node: &NodeId) -> bool {
        self.health
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .serves_reads(node)
    }

    /// Starts the periodic health probe (`GET /health` on every node every `health.interval_ms`).
    pub fn spawn_probe(self: &Arc<Self>, state: Arc<AppState>) -> tokio::task::JoinHandle<()> {
        let fleet = Arc::clone(self);
        let watcher = Arc::clone(self).watch_webhooks(Arc::clone(&state));
        let replay = Arc::clone(self).replay_loop(Arc::clone(&state));
        let drift =
            crate::settings_sync::drift_loop(Arc::clone(&self.settings_sync), Arc::clone(&state));
        let elastic = Arc::clone(self).elastic_loop(Arc::clone(&state));
        let entropy = Arc::clone(self).entropy_loop(Arc::clone(&state));
        let reshard = Arc::clone(self).reshard_loop(Arc::clone(&state));
        let probe = async move {
            let period = Duration::from_millis(state.config.health.interval_ms.max(10));
            let timeout = Duration::from_millis(state.config.health.timeout_ms.max(1));
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let mut set = JoinSet::new();
                for (node, address) in fleet.node_addresses() {
                    let client = state.nodes.clone();
                    set.spawn(async move {
                        let r = client
                            .send_with_timeout(
                                node.as_str(),
                                &address,
                                http::Method::GET,
                                "/health",
                                None,
                                Bytes::new(),
                                timeout,
                            )
                            .await;
                        (node, matches!(r, Ok(ref a) if a.status == 200))
                    });
                }
                while let Some(done) = set.join_next().await {
                    if let Ok((node, ok)) = done {
                        let changed = fleet
                            .health
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .observe(&node, ok, now_ms());
                        if let Some(s) = changed {
                            tracing::warn!(node = %node, state = ?s, "node health changed");
                        }
                    }
                }
            }
        };
        tokio::spawn(async move {
            tokio::join!(probe, watcher, replay, drift, elastic, entropy, reshard);
        })
    }

    /// Notifies the webhooks of every Miroir task that reaches a final status (core's [`Notifier`]
    /// decides which): the task object POSTed as NDJSON to each webhook URL with its headers, best effort
    /// (plain HTTP only, one attempt, failures logged). Runs alongside the health probe.
    async fn watch_webhooks(self: Arc<Self>, state: Arc<AppState>) {
        let client: hyper_util::client::legacy::Client<_, http_body_util::Full<Bytes>> =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build_http();
        let mut notifier = Notifier::new();
        let mut tick = tokio::time::interval(Duration::from_millis(WEBHOOK_POLL_MS));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let uid_of = |t: &Value| t.pointer("/record/uid").and_then(Value::as_u64);
            // The newest task first, webhooks second: a task stored while no webhook exists is never
            // notified.
            let Ok(newest) = state.store.list_tasks(None, 1, false).await else {
                continue;
            };
            let newest = newest.first().and_then(uid_of);
            let Ok(webhooks) = self.load_webhooks(&state).await else {
                continue;
            };
            if webhooks.is_empty() || !notifier.started() {
                notifier.no_webhooks(newest);
                continue;
            }
            let from = notifier.baseline().map_or(0, |b| b + 1);
            let Ok(stored) = state.store.list_tasks(Some(from), 10_000, true).await else {
                continue;
            };
            let uids: Vec<u64> = stored.iter().filter_map(uid_of).collect();
            for uid in notifier.candidates(&uids) {
                let Some(record) = stored.iter().find(|t| uid_of(t) == Some(uid)) else {
                    continue;
                };
                let Ok(view) = self.read_task(&state, record).await else {
                    continue;
                };
                if !notifier.on_task(uid, view.status.is_finished()) {
                    continue;
                }
                let body = Bytes::from(notification_body(std::slice::from_ref(&view.meili)));
                for target in webhooks.targets() {
                    let mut builder = http::Request::builder()
                        .method(http::Method::POST)
                        .uri(target.url.as_str())
                        .header(http::header::CONTENT_TYPE, "application/x-ndjson");
                    for (k, v) in &target.headers {
                        builder = builder.header(k.as_str(), v.as_str());
                    }
                    let Ok(request) = builder.body(http_body_util::Full::new(body.clone())) else {
                        tracing::warn!(url = %target.url, "webhook request cannot be built");
                        continue;
                    };
                    let send = client.request(request);
                    let url = target.url.clone();
                    tokio::spawn(async move {
                        match tokio::time::timeout(Duration::from_secs(10), send).await {
                            Ok(Ok(r)) if r.status().is_success() => {}
                            Ok(Ok(r)) => {
                                tracing::warn!(%url, status = %r.status(), "webhook refused")
                            }
                            Ok(Err(e)) => tracing::warn!(%url, error = %e, "webhook unreachable"),
                            Err(_) => tracing::warn!(%url, "webhook timed out"),
                        }
                    });
                }
            }
        }
    }

    /// Queues the write requests of one index on core's write lanes: each request is sent once the
    /// previous write request of the same index to the same node was answered (or failed). Every node thus
    /// receives the writes of an index in the order they were queued (replicas apply them in one order),
    /// while a slow node delays only its own lane. A request the node misses, or that would overtake the
    /// node's pending hints, becomes a hint (see `repair`).
    fn spawn_write_requests(
        &self,
        state: &AppState,
        set: &mut JoinSet<(usize, Answer)>,
        index: &str,
        requests: Vec<NodeRequest>,
    ) {
        let hints = self.loaded_hints(state);
        let mut lanes = self.lanes.lock().unwrap_or_else(|p| p.into_inner());
        for r in requests {
            let (go, wait) = tokio::sync::oneshot::channel::<()>();
            if let Some(go) = lanes.submit(index, &r.node, go) {
                let _ = go.send(());
            }
            let mut turn = LaneTurn {
                lanes: self.lanes.clone(),
                index: index.to_string(),
                node: r.node.clone(),
                wait,
                holding: false,
            };
            let node_down = self.node_down(&r.node);
            let index = index.to_string();
            let hints = hints.clone();
            let send = self.request_future(state, r.clone());
            set.spawn(async move {
                turn.acquire().await;
                let answer = match hints {
                    Some(h) => h.send_or_hint(&index, r, node_down, send).await,
                    None => send.await,
                };
                drop(turn);
                answer
            });
        }
    }

    fn next_rotation(&self) -> (GroupId, u64) {
        let r = self.counter.fetch_add(1, Ordering::Relaxed);
        let groups = u64::from(self.placement().groups().max(1));
        // a read-your-writes session pins its reads to a group that acknowledged its write
        if let Some(g) = crate::session::pinned_group().filter(|g| u64::from(*g) < groups) {
            return (g, r / groups);
        }
        ((r % groups) as GroupId, r / groups)
    }

    // ----- sending -----

    fn spawn_request(&self, state: &AppState, set: &mut JoinSet<(usize, Answer)>, r: NodeRequest) {
        set.spawn(self.request_future(state, r));
    }

    /// The exchange of one node request, as a future owning everything it needs. An index the request
    /// names by its client uid is addressed by its physical name when resharded (see `fleet/reshard.rs`).
    fn request_future(
        &self,
        state: &AppState,
        r: NodeRequest,
    ) -> impl std::future::Future<Output = (usize, Answer)> + Send + 'static {
        let (r, fix) = self.routed(r);
        let send = self.send_future(state, r);
        async move {
            let (id, mut answer) = send.await;
            if let (Some(fix), Ok((_, body))) = (&fix, &mut answer) {
                fix.apply(body);
            }
            (id, answer)
        }
    }

    /// A node request naming an index by its client uid, addressed to the index's physical name when it
    /// was resharded, and how to rename the answer back.
    fn routed(&self, mut r: NodeRequest) -> (NodeRequest, Option<reshard::AnswerFix>) {
        let (path, fix) = self.reshard_rewrite(&r.path);
        if let Some(path) = path {
            r.path = path;
        }
        (r, fix)
    }

    /// The exchange of one node request naming physical indexes (no renaming).
    fn send_future(
        &self,
        state: &AppState,
        r: NodeRequest,
    ) -> impl std::future::Future<Output = (usize, Answer)> + Send + 'static {
        self.request_future_with(state, r, |body| {
            serde_json::from_slice(&body).unwrap_or(Value::Null)
        })
    }

    /// [`Fleet::request_future`] with the answer's body turned into `T` by `decode`.
    pub(super) fn request_future_with<T: Send + 'static>(
        &self,
        state: &AppState,
        r: NodeRequest,
        decode: fn(Bytes) -> T,
    ) -> impl std::future::Future<Output = (usize, Result<(u16, T), String>)> + Send + 'static {
        let client = state.nodes.clone();
        let address = self.node_address(&r.node);
        async move {
            let (ct, body) = match &r.body {
                Some(b) => (
                    Some("application/json"),
                    Bytes::from(serde_json::to_vec(b).unwrap_or_default()),
                ),
                None => (None, Bytes::new()),
            };
            let answer = client
                .send(
                    r.node.as_str(),
                    &address,
                    http_method(r.method),
                    &r.path,
                    ct,
                    body,
                )
                .await
                .map(|resp| (resp.status, decode(resp.body)))
                .map_err(|e| e.to_string());
            (r.id, answer)
        }
    }

    /// Sends one request to one node.
    async fn send_one(
        &self,
        state: &AppState,
        node: &NodeId,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Answer {
        let mut set = JoinSet::new();
        self.spawn_request(
            state,
            &mut set,
            NodeRequest {
                id: 0,
                node: node.clone(),
                method,
                path: path.to_string(),
                body,
            },
        );
        match set.join_next().await {
            Some(Ok((_, a))) => a,
            _ => Err("request task failed".into()),
        }
    }

    /// The nodes to try for a single-node read, healthy ones first, rotated; by default the nodes that
    /// hold a shard (one holding none may lack the indexes).
    fn read_order(&self, among: Option<Vec<NodeId>>) -> Vec<NodeId> {
        let mut nodes: Vec<NodeId> = among.unwrap_or_else(|| {
            self.placement()
                .index_readers(self.topology().nodes.iter().map(|n| n.id.clone()).collect())
        });
        if nodes.is_empty() {
            return nodes;
        }
        nodes = self.ranked_nodes(nodes);
        let (mut ok, bad): (Vec<NodeId>, Vec<NodeId>) =
            nodes.into_iter().partition(|n| self.healthy(n));
        ok.extend(bad);
        ok
    }

    /// A read any one node can answer: the first node (healthy first) that gives an HTTP answer below 500.
    async fn read_one(
        &self,
        state: &AppState,
        among: Option<Vec<NodeId>>,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<(u16, Value), MeiliError> {
        self.read_preferring(state, among, method, path, body, |_, _| true)
            .await
    }

    /// A single-node read that keeps asking nodes (healthy first) until one gives a plausible answer
    /// `prefer` accepts; when none does, the first plausible answer.
    async fn read_preferring(
        &self,
        state: &AppState,
        among: Option<Vec<NodeId>>,
        method: Method,
        path: &str,
        body: Option<Value>,
        prefer: impl Fn(u16, &Value) -> bool,
    ) -> Result<(u16, Value), MeiliError> {
        let mut first = None;
        for node in self.read_order(among) {
            match self
                .send_read_one(state, &node, method, path, body.clone())
                .await
            {
                Ok((s, v)) if s < 500 && crate::limits::plausible_node_answer(s, &v) => {
                    if prefer(s, &v) {
                        return Ok((s, v));
                    }
                    first.get_or_insert((s, v));
                }
                Ok((s, _)) => tracing::warn!(node = %node, status = s, path, "node read failed"),
                Err(e) => tracing::warn!(node = %node, error = %e, path, "node unreachable"),
            }
        }
        first.ok_or_else(|| {
            no_node_available(&format!(
                "{} {}",
                method.as_str(),
                path.split('?').next().unwrap_or(path)
            ))
        })
    }

    /// Runs a write to its decision; persists the record (when `persist`) before returning the reply, and
    /// keeps collecting late answers in the background.
    async fn run_write(
        &self,
        state: &AppState,
        write: FanoutWrite,
        persist: bool,
    ) -> Result<Reply, MeiliError> {
        let (write, set) = self.drive_write(state, write).await;
        self.finish_write(state, write, set, persist).await
    }

    /// Runs a client-visible write (its task stored once acknowledged) and answers with its reply.
    async fn answer_write(
        &self,
        state: &AppState,
        write: FanoutWrite,
    ) -> Result<ProxyResponse, MeiliError> {
        let reply = self.run_write(state, write, true).await?;
        Ok(reply_response(&reply))
    }

    /// Sends a write's requests (on the write lanes) and feeds the answers until the quorum decides; the
    /// requests still in flight come back with the write.
    async fn drive_write(
        &self,
        state: &AppState,
        mut write: FanoutWrite,
    ) -> (FanoutWrite, JoinSet<(usize, Answer)>) {
        // A version for last-writer-wins, and tombstones for its deletes, durable before it is sent.
        if !self.stamp_or_refuse(state, &mut write, &mut []).await {
            return (write, JoinSet::new());
        }
        self.drive_stamped_write(state, write).await
    }

    /// Stamps a write (and `extra`, the same client write sent elsewhere) with one version and stores its
    /// tombstones; when the store refuses, every request of the write counts as failed (nothing is sent)
    /// and `false` is returned.
    pub(super) async fn stamp_or_refuse(
        &self,
        state: &AppState,
        write: &mut FanoutWrite,
        extra: &mut [NodeRequest],
    ) -> bool {
        match self.stamp_write(state, write, extra).await {
            Ok(_) => true,
            Err(e) => {
                tracing::error!(error = %e, "cannot store the write's tombstones: refused");
                for id in 0..write.requests().len() {
                    write.on_failure(id);
                }
                false
            }
        }
    }

    /// [`Fleet::drive_write`] of a write already stamped.
    pub(super) async fn drive_stamped_write(
        &self,
        state: &AppState,
        mut write: FanoutWrite,
    ) -> (FanoutWrite, JoinSet<(usize, Answer)>) {
        // Two writes in flight together could reach two replicas in different orders and leave them
        // different: each node receives an index's writes one after the other (see
        // `spawn_write_requests`).
        let index = write.record().index_uid.unwrap_or_default();
        // Loads the hints of an earlier run before the first write is sent.
        let _ = self.write_hints(state).await;
        // The nodes' timeout runs from here: storing the write's tombstones (and loading the hints)
        // may have taken a while on a busy store, which must not count against the nodes.
        write.set_deadline(self.deadline(state));
        let mut set = JoinSet::new();
        self.spawn_write_requests(state, &mut set, &index, write.requests().to_vec());
        while write.decision().is_none() {
            let wait = write
                .poll_timeout()
                .map(|at| Duration::from_millis(at.saturating_sub(now_ms())))
                .unwrap_or(Duration::from_secs(3600));
            match tokio::time::timeout(wait, set.join_next()).await {
                Ok(Some(Ok((id, Ok((status, body)))))) => write.on_response(id, status, &body),
                Ok(Some(Ok((id, Err(e))))) => {
                    tracing::warn!(error = %e, "node write failed");
                    write.on_failure(id)
                }
                Ok(Some(Err(_))) => {}
                Ok(None) => write.on_timeout(Millis::MAX),
                Err(_) => {
                    let now = now_ms();
                    if write.poll_timeout().is_some_and(|at| at <= now) {
                        tracing::warn!(
                            index,
                            timeout_ms = state.config.scatter.node_timeout_ms,
                            "a write's nodes did not all answer in time"
                        );
                    }
                    write.on_timeout(now)
                }
            }
        }
        (write, set)
    }

    /// The reply of a decided write; when acknowledged and `persist`, the task record is stored (with a
    /// fresh uid) before the reply, and late node answers keep updating it in the background.
    async fn finish_write(
        &self,
        state: &AppState,
        mut write: FanoutWrite,
        mut set: JoinSet<(usize, Answer)>,
        persist: bool,
    ) -> Result<Reply, MeiliError> {
        let mut reply = write
            .reply()
            .unwrap_or_else(|| Reply::error(&MeiliError::internal("the write has no decision")));
        let acknowledged = reply.status == 202;
        if persist && acknowledged {
            // The uid is allocated once the write is acknowledged, as Meilisearch allocates none for a
            // request it refuses.
            let uid = state.store.next_task_uid().await?;
            reply.body["taskUid"] = Value::from(uid);
            let mut record = write.record();
            record.uid = uid;
            state
                .store
                .put_task(record.uid, &record_json(&record, &[]))
                .await?;
            let hints = self.loaded_hints(state);
            if let Some(h) = &hints {
                h.tag(&write, uid).await;
            }
            if !set.is_empty() {
                let store = Arc::clone(&state.store);
                tokio::spawn(async move {
                    while let Some(done) = set.join_next().await {
                        match done {
                            Ok((id, Ok((status, body)))) => write.on_response(id, status, &body),
                            Ok((id, Err(_))) => write.on_failure(id),
                            Err(_) => {}
                        }
                    }
                    if let Some(h) = &hints {
                        h.tag(&write, uid).await;
                    }
                    let mut record = write.record();
                    record.uid = uid;
                    // Keep finished node views already cached by a task read meanwhile.
                    let finished = match store.get_task(record.uid).await {
                        Ok(Some(v)) => v.get("finished").cloned().unwrap_or(json!([])),
                        _ => json!([]),
                    };
                    let mut stored = record_json(&record, &[]);
                    stored["finished"] = finished;
                    if let Err(e) = store.put_task(record.uid, &stored).await {
                        tracing::error!(error = %e, "cannot update a task record with late node answers");
                    }
                });
            }
        } else if !set.is_empty() {
            tokio::spawn(async move { while set.join_next().await.is_some() {} });
        }
        Ok(reply)
    }

    async fn run_cover(&self, state: &AppState, mut read: CoverRead) -> CoverOutcome {
        self.drive_scatter(state, &mut read).await;
        read.outcome().unwrap_or_else(|| {
            CoverOutcome::ClientError(MeiliError::internal("the read ended without an outcome"))
        })
    }

    // ----- tasks -----

    /// A task about to be written. Its uid is allocated by [`Fleet::run_write`] once the nodes
    /// acknowledged (or by [`Fleet::failed_task`] / [`Fleet::local_task`]); until then it is 0.
    async fn new_task(
        &self,
        _state: &AppState,
        index_uid: Option<&str>,
        task_type: TaskType,
        details: Option<Map<String, Value>>,
    ) -> Result<WriteTask, MeiliError> {
        Ok(WriteTask {
            uid: 0,
            index_uid: index_uid.map(str::to_string),
            task_type,
            details,
            enqueued_at: now_ms(),
        })
    }

    /// Stores a task Miroir completes itself (nothing sent to nodes), with a fresh uid, and answers 202.
    async fn local_task(
        &self,
        state: &AppState,
        task: WriteTask,
        error: Option<&MeiliError>,
    ) -> Result<ProxyResponse, MeiliError> {
        let uid = state.store.next_task_uid().await?;
        let mut record = MiroirTask::new(
            uid,
            task.index_uid,
            task.task_type,
            task.enqueued_at,
            task.details,
        );
        if let Some(e) = error {
            record = record.with_error(e);
        }
        state
            .store
            .put_task(record.uid, &record_json(&record, &[]))
            .await?;
        Ok(json_response(202, &record.summarized()))
    }

    fn deadline(&self, state: &AppState) -> Millis {
        now_ms() + state.config.scatter.node_timeout_ms + 1_000
    }

    /// Records a task Miroir failed itself (nothing sent to nodes) and answers 202 with it.
    async fn failed_task(
        &self,
        state: &AppState,
        task: WriteTask,
        error: &MeiliError,
    ) -> Result<ProxyResponse, MeiliError> {
        self.local_task(state, task, Some(error)).await
    }

    /// Reads one task: the stored record plus its node tasks, aggregated.
    async fn read_task(
        &self,
        state: &AppState,
        stored: &Value,
    ) -> Result<miroir_core::tasks::TaskView, MeiliError> {
        let record: MiroirTask = serde_json::from_value(stored["record"].clone())
            .map_err(|e| MeiliError::internal(format!("corrupt task record: {e}")))?;
        let mut raw_finished: Vec<Value> = stored
            .get("finished")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let mut finished = NodeTaskViews::new();
        for f in &raw_finished {
            if let (Some(node), Some(uid)) = (f["node"].as_str(), f["taskUid"].as_u64()) {
                finished.insert(
                    (NodeId::new(node), uid),
                    NodeTaskView::from_json(&f["task"]),
                );
            }
        }
        let mut read = TaskRead::new(record, finished);
        let requests = read.requests().to_vec();
        let mut set = JoinSet::new();
        for r in requests.iter().cloned() {
            self.spawn_request(state, &mut set, r);
        }
        let mut newly_finished = false;
        while let Some(done) = set.join_next().await {
            match done {
                Ok((id, Ok((status, body)))) => {
                    let finished_now = status == 200
                        && matches!(
                            body.get("status").and_then(Value::as_str),
                            Some("succeeded" | "failed" | "canceled")
                        );
                    if finished_now {
                        if let Some(r) = requests.get(id) {
                            let uid = r
                                .path
                                .rsplit('/')
                                .next()
                                .and_then(|u| u.parse::<u64>().ok());
                            if let Some(uid) = uid {
                                raw_finished.push(json!({"node": r.node.as_str(), "taskUid": uid, "task": body.clone()}));
                                newly_finished = true;
                            }
                        }
                    }
                    read.on_response(id, status, &body);
                }
                Ok((id, Err(_))) => read.on_failure(id),
                Err(_) => {}
            }
        }
        let mut view = read.view(now_ms(), LOST_AFTER_MS);
        if let Some(error) = view.meili.get_mut("error") {
            node_settings::hide_shard_field_in_error(error);
        }
        // The hint log is loaded from the store first: a restarted proxy reports the hints it inherited
        // before its first write.
        let _ = self.write_hints(state).await;
        let pending = self.pending_replicas(view.uid);
        if let (true, Some(m)) = (pending > 0, view.meili.as_object_mut()) {
            // Miroir's own field, after Meilisearch's: replicas whose write still waits as a hint.
            m.insert("pendingReplicas".into(), Value::from(pending as u64));
        }
        if newly_finished {
            let mut updated = stored.clone();
            updated["finished"] = Value::Array(raw_finished);
            if let Err(e) = state.store.put_task(view.uid, &updated).await {
                tracing::warn!(error = %e, "cannot cache finished node tasks");
            }
        }
        if view.status.is_finished() {
            if let Some(index) = &view.index_uid {
                if matches!(
                    view.task_type,
                    TaskType::SettingsUpdate | TaskType::IndexDeletion | TaskType::IndexUpdate
                ) {
                    self.forget_context(index);
                }
                if newly_finished && view.task_type == TaskType::IndexUpdate {
                    // The nodes now hold the outcome: learn the primary key from them again.
                    self.refresh_primary_key(state, index).await;
                }
            }
            if newly_finished && view.task_type == TaskType::IndexSwap {
                self.settle_swap(state, &view).await;
            }
        }
        Ok(view)
    }

    // ----- index metadata -----

    fn forget_context(&self, uid: &str) {
        self.cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contexts
            .remove(uid);
    }

    fn forget_index(&self, uid: &str) {
        let mut c = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        c.contexts.remove(uid);
        c.indexes.remove(uid);
    }

    /// Whether the index exists, and its metadata: cache, then store, then a node.
    async fn index_meta(
        &self,
        state: &AppState,
        uid: &str,
    ) -> Result<Option<IndexMeta>, MeiliError> {
        if let Some(m) = self
            .cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .indexes
            .get(uid)
        {
            return Ok(Some(m.clone()));
        }
        if self
            .cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .deleted
            .contains(uid)
        {
            return Ok(None);
        }
        if let Some(v) = state.store.get_meta(&meta_key(uid)).await? {
            let meta = IndexMeta::from_json(&v);
            self.remember_index(uid, meta.clone());
            return Ok(Some(meta));
        }
        let (status, body) = self
            .read_one(state, None, Method::Get, &format!("/indexes/{uid}"), None)
            .await?;
        match status {
            200 => {
                let meta = IndexMeta {
                    primary_key: body
                        .get("primaryKey")
                        .and_then(Value::as_str)
                        .map(str::to_string),
                    max_values_per_facet: None,
                    displayed: None,
                };
                self.save_index(state, uid, meta.clone()).await?;
                Ok(Some(meta))
            }
            _ => Ok(None),
        }
    }

    fn remember_index(&self, uid: &str, meta: IndexMeta) {
        let mut c = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        c.deleted.remove(uid);
        c.indexes.insert(uid.to_string(), meta);
    }

    async fn save_index(
        &self,
        state: &AppState,
        uid: &str,
        meta: IndexMeta,
    ) -> Result<(), MeiliError> {
        state
            .store
            .put_meta(&meta_key(uid), &meta.to_json(uid))
            .await?;
        self.remember_index(uid, meta);
        Ok(())
    }

    /// The client's displayed attributes of an index (`None`: every field).
    async fn displayed(&self, state: &AppState, index: &str) -> Option<Vec<String>> {
        self.index_meta(state, index)
            .await
            .ok()
            .flatten()
            .and_then(|m| m.displayed)
    }

    /// Reads the index's primary key from a node into the metadata (after an index update finished).
    async fn refresh_primary_key(&self, state: &AppState, uid: &str) {
        match self.read_index(state, uid).await {
            Ok((200, body)) => {
                let pk = body
                    .get("primaryKey")
                    .and_then(Value::as_str)
                    .map(str::to_string);
                if let Err(e) = self.update_meta(state, uid, |m| m.primary_key = pk).await {
                    tracing::warn!(index = uid, error = %e, "cannot store index metadata");
                }
            }
            Ok((404, _)) => {
                self.forget_index(uid);
                if let Err(e) = state.store.delete_meta(&meta_key(uid)).await {
                    tracing::warn!(index = uid, error = %e, "cannot drop index metadata");
                }
            }
            _ => {}
        }
    }

    /// Changes the stored metadata of an existing (or just created) index.
    async fn update_meta(
        &self,
        state: &AppState,
        uid: &str,
        change: impl FnOnce(&mut IndexMeta),
    ) -> Result<(), MeiliError> {
        let mut meta = self.index_meta(state, uid).await?.unwrap_or_default();
        change(&mut meta);
        self.save_index(state, uid, meta).await
    }

    /// The search context of an index, from a node's settings (cached briefly).
    async fn search_context(&self, state: &AppState, uid: &str) -> SearchContext {
        let now = now_ms();
        if let Some((ctx, at)) = self
            .cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contexts
            .get(uid)
        {
            if now.saturating_sub(*at) < CONTEXT_TTL_MS {
                return ctx.clone();
            }
        }
        let ctx = match self
            .read_one(
                state,
                None,
                Method::Get,
                &format!("/indexes/{uid}/settings"),
                None,
            )
            .await
        {
            Ok((200, body)) => node_settings::search_context(&body),
            _ => SearchContext::default(),
        };
        let mut ctx = ctx;
        if let Ok(Some(meta)) = self.index_meta(state, uid).await {
            ctx.max_values_per_facet = meta.max_values() as usize;
        }
        self.cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contexts
            .insert(uid.to_string(), (ctx.clone(), now));
        ctx
    }

    /// Creates the index on every node (quorum `all`) and makes `_miroir_shard` filterable there.
    /// `task` is the client-visible task of the creation, or `None` for an implicit creation.
    async fn create_index(
        &self,
        state: &AppState,
        uid: &str,
        primary_key: Option<&str>,
        task: Option<WriteTask>,
    ) -> Result<Reply, MeiliError> {
        // An index created while the fleet reshapes would miss the nodes joining it.
        self.refuse_while_migrating(uid)?;
        let visible = task.is_some();
        let task = match task {
            Some(t) => t,
            None => WriteTask {
                uid: 0,
                index_uid: Some(uid.to_string()),
                task_type: TaskType::IndexCreation,
                details: None,
                enqueued_at: now_ms(),
            },
        };
        let mut body = Map::new();
        body.insert("uid".into(), Value::String(uid.to_string()));
        if let Some(pk) = primary_key {
            body.insert("primaryKey".into(), Value::String(pk.to_string()));
        }
        // Probe where the index exists, so a rollback never deletes an index a node already had.
        let topology = self.topology();
        let probe = {
            let mut set = JoinSet::new();
            for (id, n) in topology.nodes.iter().enumerate() {
                self.spawn_request(
                    state,
                    &mut set,
                    NodeRequest {
                        id,
                        node: n.id.clone(),
                        method: Method::Get,
                        path: format!("/indexes/{uid}"),
                        body: None,
                    },
                );
            }
            let mut answers = Vec::new();
            while let Some(done) = set.join_next().await {
                if let Ok((id, answer)) = done {
                    answers.push((
                        topology.nodes[id].id.clone(),
                        answer.ok().map(|(status, _)| status),
                    ));
                }
            }
            index_ops::probe(answers)
        };
        let create = FanoutWrite::broadcast(
            task.clone(),
            Method::Post,
            "/indexes".into(),
            Some(Value::Object(body)),
            &self.placement(),
            WriteQuorum::All,
            self.deadline(state),
        );
        let (create, create_pending) = self.drive_write(state, create).await;
        let created = create.reply().is_some_and(|r| r.status == 202);
        let configured = if created {
            let settings = FanoutWrite::broadcast(
                WriteTask {
                    task_type: TaskType::SettingsUpdate,
                    ..task.clone()
                },
                Method::Patch,
                format!("/indexes/{uid}/settings"),
                Some(node_settings::node_initial_settings(
                    self.placement().shards(),
                )),
                &self.placement(),
                WriteQuorum::All,
                self.deadline(state),
            );
            let internal = self.run_write(state, settings, false).await?;
            if internal.status != 202 {
                tracing::error!(
                    index = uid,
                    status = internal.status,
                    "cannot make _miroir_shard filterable on every node"
                );
            }
            Some(internal)
        } else {
            None
        };
        let configured_ok = configured.as_ref().is_some_and(|r| r.status == 202);
        if !(created && configured_ok) {
            // Nothing is promised: no task is stored, and the index is undone where that is safe.
            let failure = match &configured {
                Some(settings) if created => settings.clone(),
                _ => {
                    self.finish_write(state, create, create_pending, false)
                        .await?
                }
            };
            let targets = index_ops::rollback_targets(&probe, created, configured_ok);
            if !targets.is_empty() {
                // On the write lanes, so each node deletes after it applied the creation and the settings.
                let (method, path) = index_ops::rollback_request(uid);
                let requests = targets
                    .into_iter()
                    .enumerate()
                    .map(|(id, node)| NodeRequest {
                        id,
                        node,
                        method,
                        path: path.clone(),
                        body: None,
                    })
                    .collect();
                let mut set = JoinSet::new();
                self.spawn_write_requests(state, &mut set, uid, requests);
                while let Some(done) = set.join_next().await {
                    if let Ok((id, answer)) = done {
                        let status = answer.as_ref().map(|(s, _)| *s).ok();
                        tracing::warn!(
                            index = uid,
                            request = id,
                            ?status,
                            "rolled back a partial index creation"
                        );
                    }
                }
            }
            return Ok(failure);
        }
        let reply = self
            .finish_write(state, create, create_pending, visible)
            .await?;
        self.save_index(
            state,
            uid,
            IndexMeta {
                primary_key: primary_key.map(str::to_string),
                max_values_per_facet: None,
                displayed: None,
            },
        )
        .await?;
        Ok(reply)
    }

    // ----- routes -----

    async fn create_index_route(
        &self,
        state: &AppState,
        request: &ProxyRequest,
    ) -> Result<ProxyResponse, MeiliError> {
        let body = json_object(request)?;
        let uid = match body.get("uid") {
            Some(Value::String(s)) => IndexUid::parse(s).map_err(|e| MeiliError {
                message: format!("Invalid value at `.uid`: {}", e.message),
                ..e
            })?,
            Some(other) => {
                return Err(MeiliError::invalid(
                    400,
                    "invalid_index_uid",
                    format!(
                        "Invalid value type at `.uid`: expected a string, but found {}: `{other}`",
                        json_kind(other)
                    ),
                ))
            }
            None => {
                return Err(MeiliError::invalid(
                    400,
                    "missing_index_uid",
                    "Missing field `uid`",
                ))
            }
        };
        let pk = match body.get("primaryKey") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(other) => {
                return Err(MeiliError::invalid(
                    400,
                    "invalid_index_primary_key",
                    format!("Invalid value type at `.primaryKey`: expected a string, but found {}: `{other}`", json_kind(other)),
                ))
            }
        };
        let task = self
            .new_task(
                state,
                Some(uid.as_str()),
                TaskType::IndexCreation,
                Some(details::index_info(pk.as_deref())),
            )
            .await?;
        let reply = self
            .create_index(state, uid.as_str(), pk.as_deref(), Some(task))
            .await?;
        Ok(reply_response(&reply))
    }

    #[allow(clippy::too_many_arguments)]
    async fn broadcast_route(
        &self,
        state: &AppState,
        index: &str,
        task_type: TaskType,
        details: Option<Map<String, Value>>,
        method: Method,
        path: String,
        body: Option<Value>,
        quorum: WriteQuorum,
    ) -> Result<ProxyResponse, MeiliError> {
        let task = self
            .new_task(state, Some(index), task_type, details)
            .await?;
        self.broadcast_write(state, index, task, method, path, body, quorum)
            .await
    }

    async fn add_documents(
        &self,
        state: &AppState,
        index: &str,
        request: &ProxyRequest,
        replace: bool,
    ) -> Result<ProxyResponse, MeiliError> {
        let params = query_pairs(&request.uri);
        let param = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        let delimiter = match param("csvDelimiter") {
            Some(d) => Some(parse_csv_delimiter(&d)?),
            None => None,
        };
        let ct = request
            .headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok());
        let docs = parse_request(ct, delimiter, &request.body)?;
        crate::limits::check_batch(docs.len(), state.config.server.max_documents_per_batch)?;
        if let Some(doc) = docs.iter().find_map(|d| {
            d.keys()
                .find(|k| k.starts_with(miroir_core::RESERVED_PREFIX))
                .cloned()
        }) {
            return Err(MeiliError::reserved_field(&doc));
        }
        let pk_param = param("primaryKey");
        let task = self
            .new_task(
                state,
                Some(index),
                TaskType::DocumentAdditionOrUpdate,
                Some(details::document_addition(docs.len() as u64)),
            )
            .await?;
        let meta = self.index_meta(state, index).await?;
        let exists = meta.is_some();
        if !exists && !request.access.can_create_index(index) {
            // As Meilisearch: a key without `indexes.create` enqueues the batch, which fails.
            return self.failed_task(state, task, &index_not_found(index)).await;
        }
        let existing = meta.and_then(|m| m.primary_key);
        // A missing index is created only for a batch that will be sent (or an empty one): a batch
        // Miroir fails itself leaves no index behind, as the failed task would on one node.
        let pk = match resolve_primary_key(existing.as_deref(), pk_param.as_deref(), docs.first()) {
            Ok(Some(pk)) => pk,
            Ok(None) => {
                // An empty batch on an index without a key: every node runs it (and succeeds with no
                // document), so the task has node tasks and times like any other.
                return self
                    .empty_batch(state, index, exists, task, replace, None)
                    .await;
            }
            Err(e) => return self.failed_task(state, task, &e).await,
        };
        if docs.is_empty() {
            let response = self
                .empty_batch(state, index, exists, task, replace, Some(&pk))
                .await?;
            if response.status() == StatusCode::ACCEPTED && existing.as_deref() != Some(pk.as_str())
            {
                self.update_meta(state, index, |m| m.primary_key = Some(pk))
                    .await?;
            }
            return Ok(response);
        }
        let placement = match self.write_route(index).await? {
            elastic::WriteRoute::Plain(permit) => permit,
            elastic::WriteRoute::Migrating => {
                if existing.as_deref() != Some(pk.as_str()) {
                    let pk = pk.clone();
                    self.update_meta(state, index, |m| m.primary_key = Some(pk))
                        .await?;
                }
                let intent = miroir_core::migration::WriteIntent::Documents { docs, replace };
                return self
                    .migrating_write(state, index, intent, task, self.quorum)
                    .await;
            }
        };
        if self.reshard_active(index) {
            drop(placement);
            let intent = miroir_core::migration::WriteIntent::Documents { docs, replace };
            return self
                .reshard_write(state, index, intent, task, self.quorum)
                .await;
        }
        let plan = match plan_batch(docs, &pk, &placement.placement) {
            Ok(p) => p,
            Err(e) => return self.failed_task(state, task, &e).await,
        };
        if !exists {
            let created = self.create_index(state, index, None, None).await?;
            if created.status != 202 {
                return Ok(reply_response(&created));
            }
        }
        if existing.as_deref() != Some(pk.as_str()) {
            let pk = pk.clone();
            self.update_meta(state, index, |m| m.primary_key = Some(pk))
                .await?;
        }
        let write = FanoutWrite::documents(
            task,
            index,
            &pk,
            replace,
            plan,
            &placement.placement,
            self.quorum,
            self.deadline(state),
        );
        let response = self.answer_write(state, write).await;
        drop(placement);
        response
    }

    /// An empty documents batch: sent as is to every node (creating the index first when missing), so
    /// the nodes enqueue it as one node would.
    async fn empty_batch(
        &self,
        state: &AppState,
        index: &str,
        exists: bool,
        task: WriteTask,
        replace: bool,
        primary_key: Option<&str>,
    ) -> Result<ProxyResponse, MeiliError> {
        if !exists {
            let created = self.create_index(state, index, None, None).await?;
            if created.status != 202 {
                return Ok(reply_response(&created));
            }
        }
        let path = match primary_key {
            Some(pk) => format!(
                "/indexes/{index}/documents?primaryKey={}",
                miroir_core::ops::encode_query_value(pk)
            ),
            None => format!("/indexes/{index}/documents"),
        };
        let method = if replace { Method::Post } else { Method::Put };
        self.broadcast_write(
            state,
            index,
            task,
            method,
            path,
            Some(json!([])),
            self.quorum,
        )
        .await
    }

    async fn delete_ids(
        &self,
        state: &AppState,
        index: &str,
        ids: Vec<Value>,
    ) -> Result<ProxyResponse, MeiliError> {
        crate::limits::check_batch(ids.len(), state.config.server.max_documents_per_batch)?;
        let task = self
            .new_task(
                state,
                Some(index),
                TaskType::DocumentDeletion,
                Some(details::document_deletion(ids.len() as u64)),
            )
            .await?;
        let permit = match self.write_route(index).await? {
            elastic::WriteRoute::Plain(permit) => permit,
            elastic::WriteRoute::Migrating => {
                let intent = miroir_core::migration::WriteIntent::DeleteIds(ids);
                return self
                    .migrating_write(state, index, intent, task, self.quorum)
                    .await;
            }
        };
        if self.reshard_active(index) {
            drop(permit);
            let intent = miroir_core::migration::WriteIntent::DeleteIds(ids);
            return self
                .reshard_write(state, index, intent, task, self.quorum)
                .await;
        }
        let plan = plan_delete_ids(&ids, &permit.placement);
        let write = FanoutWrite::delete_ids(
            task,
            index,
            plan,
            &permit.placement,
            self.quorum,
            self.deadline(state),
        );
        let response = self.answer_write(state, write).await;
        drop(permit);
        response
    }

    async fn search(
        &self,
        state: &AppState,
        index: &str,
        body: &Map<String, Value>,
    ) -> Result<Reply, MeiliError> {
        let search = self.scatter_search(state, index, body).await?;
        Ok(match search.reply() {
            Some(reply) => reply.clone(),
            None => Reply::error(&MeiliError::internal("the search ended without a reply")),
        })
    }

    /// Plans a search, drives it to its reply (the index's displayed attributes applied to the hits) and
    /// returns it.
    async fn scatter_search(
        &self,
        state: &AppState,
        index: &str,
        body: &Map<String, Value>,
    ) -> Result<ScatterSearch, MeiliError> {
        let ctx = self.search_context(state, index).await;
        let (group, rotation) = self.next_rotation();
        let primary_key = self.cached_primary_key(index);
        let displayed = self.displayed(state, index).await;
        let mut search = ScatterSearch::with_options(
            index,
            body,
            &ctx,
            &self.read_placement(index),
            &|n| self.healthy(n),
            self.cover_options(state, group, rotation),
            state.config.scatter.unavailable_shard_policy,
            primary_key.as_deref(),
        )?
        .with_displayed(displayed);
        self.drive_scatter(state, &mut search).await;
        Ok(search)
    }

    async fn multi_search(
        &self,
        state: &AppState,
        request: &ProxyRequest,
    ) -> Result<ProxyResponse, MeiliError> {
        let body = json_object(request)?;
        let federation = match body.get("federation") {
            None | Some(Value::Null) => None,
            Some(f) => {
                let f = Federation::parse(f)?;
                if let Some(field) = f.unsupported() {
                    return Err(unsupported_route(&format!(
                        "POST /multi-search with `federation.{field}`"
                    )));
                }
                Some(f)
            }
        };
        let Some(Value::Array(queries)) = body.get("queries") else {
            return Err(MeiliError::invalid(
                400,
                "missing_multi_search_queries",
                "Missing field `queries`",
            ));
        };
        let mut results = Vec::with_capacity(queries.len());
        let mut federated = Vec::with_capacity(queries.len());
        let mut headers = Vec::new();
        for (i, q) in queries.iter().enumerate() {
            let inside = |e: MeiliError| MeiliError {
                message: format!("Inside `.queries[{i}]`: {}", e.message),
                ..e
            };
            let Value::Object(q) = q else {
                return Err(inside(MeiliError::invalid(
                    400,
                    "bad_request",
                    format!(
                        "Invalid value type: expected an object, but found {}",
                        json_kind(q)
                    ),
                )));
            };
            let uid = match q.get("indexUid") {
                Some(Value::String(s)) => IndexUid::parse(s)
                    .map_err(|e| MeiliError {
                        message: format!("Invalid value at `.indexUid`: {}", e.message),
                        ..e
                    })
                    .map_err(inside)?,
                _ => {
                    return Err(inside(MeiliError::invalid(
                        400,
                        "missing_index_uid",
                        "Missing field `indexUid`",
                    )))
                }
            };
            if !request.access.is_index_authorized(uid.as_str()) {
                return Err(inside(miroir_core::auth::invalid_api_key()));
            }
            let mut q = q.clone();
            with_search_rules(&request.access, uid.as_str(), &mut q);
            let q = &q;
            let query = match &federation {
                None => {
                    check_non_federated(i, q)?;
                    let mut query = q.clone();
                    query.remove("indexUid");
                    query.remove("federationOptions");
                    query
                }
                Some(f) => {
                    let pk = match self.index_meta(state, uid.as_str()).await {
                        Ok(Some(meta)) => meta.primary_key,
                        _ => None,
                    };
                    match federated_query(i, uid.as_str(), q, f, pk.as_deref())? {
                        Ok(fq) => {
                            let search = fq.search.clone();
                            federated.push(fq);
                            search
                        }
                        Err(field) => {
                            return Err(unsupported_route(&format!(
                                "POST /multi-search with `{field}`"
                            )))
                        }
                    }
                }
            };
            let reply = self
                .search(state, uid.as_str(), &query)
                .await
                .map_err(inside)?;
            if reply.status != 200 {
                let e = MeiliError::from_node_body(reply.status, &reply.body)
                    .unwrap_or_else(|| MeiliError::internal("search failed"));
                return Err(inside(e));
            }
            headers.extend(reply.headers.clone());
            if federation.is_some() {
                results.push(reply.body);
                continue;
            }
            let mut result = Map::new();
            result.insert("indexUid".into(), Value::String(uid.as_str().to_string()));
            if let Value::Object(m) = reply.body {
                result.extend(m);
            }
            results.push(Value::Object(result));
        }
        let mut reply = match &federation {
            Some(f) => Reply::json(200, merge_federated(&federated, &results, f)?),
            None => Reply::json(200, json!({ "results": results })),
        };
        headers.dedup();
        reply.headers = headers;
        Ok(reply_response(&reply))
    }

    /// A key write (`POST /keys`, `PATCH`/`DELETE /keys/{key}`) sent to every node through core's
    /// [`KeysWrite`]; a partial create is rolled back (best effort) before the error is returned.
    async fn key_write(
        &self,
        state: &AppState,
        kind: KeyWrite,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<ProxyResponse, MeiliError> {
        let nodes: Vec<NodeId> = self.topology().nodes.iter().map(|n| n.id.clone()).collect();
        let mut write = KeysWrite::new(&nodes, kind, method, path, body);
        let mut set = JoinSet::new();
        for r in write.requests().to_vec() {
            self.spawn_request(state, &mut set, r);
        }
        while let Some(done) = set.join_next().await {
            match done {
                Ok((id, Ok((status, body)))) => write.on_response(id, status, body),
                Ok((id, Err(_))) => write.on_failure(id),
                Err(_) => {}
            }
        }
        let reply = match write.decide() {
            Some(KeyDecision::Reply(reply)) => reply,
            Some(KeyDecision::Rollback { requests, reply }) => {
                tracing::warn!(
                    nodes = requests.len(),
                    "partial key creation: rolling it back"
                );
                let mut undo = JoinSet::new();
                for r in requests {
                    self.spawn_request(state, &mut undo, r);
                }
                while let Some(done) = undo.join_next().await {
                    if let Ok((_, Ok((status, body)))) = done {
                        if !(200..300).contains(&status) {
                            tracing::error!(status, %body, "a key rollback failed");
                        }
                    } else {
                        tracing::error!("a key rollback got no answer");
                    }
                }
                reply
            }
            None => Reply::error(&MeiliError::internal("a node request was lost")),
        };
        self.keys_changed();
        Ok(reply_response(&reply))
    }

    async fn create_key(
        &self,
        state: &AppState,
        request: &ProxyRequest,
    ) -> Result<ProxyResponse, MeiliError> {
        let body = json_object(request)?;
        let (body, uid) = key_ops::create_body(body, &key_ops::key_uid(random_u128()));
        self.key_write(
            state,
            KeyWrite::Create { uid },
            Method::Post,
            "/keys",
            Some(body),
        )
        .await
    }

    async fn facet_search(
        &self,
        state: &AppState,
        index: &str,
        request: &ProxyRequest,
    ) -> Result<ProxyResponse, MeiliError> {
        let mut body = json_object(request)?;
        with_search_rules(&request.access, index, &mut body);
        let facet = body
            .get("facetName")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let ctx = self.search_context(state, index).await;
        let (group, rotation) = self.next_rotation();
        let mut options = self.cover_options(state, group, rotation);
        if let Some(pk) = self.cached_primary_key(index) {
            options.scope = miroir_core::search::pinned_shards(
                body.get("filter"),
                &pk,
                self.placement().shards(),
            );
        }
        let read = CoverRead::with_options(
            format!("/indexes/{index}/facet-search"),
            body,
            &self.read_placement(index),
            &|n| self.healthy(n),
            options,
        );
        match self.run_cover(state, read).await {
            CoverOutcome::ClientError(e) => Err(e),
            CoverOutcome::Answers {
                answers,
                unavailable,
            } => {
                if !unavailable.is_empty()
                    && state.config.scatter.unavailable_shard_policy
                        == UnavailableShardPolicy::Error
                {
                    return Err(MeiliError::shard_unavailable(&unavailable));
                }
                let answers = answers
                    .into_iter()
                    .map(|a| NodeAnswer {
                        order: a.order,
                        body: a.body,
                    })
                    .collect();
                let merged =
                    merge_facet_search(answers, ctx.facet_order(&facet), ctx.max_values_per_facet)?;
                let mut reply = Reply::json(200, merged);
                degraded(&mut reply, &unavailable);
                Ok(reply_response(&reply))
            }
        }
    }

    async fn index_stats(&self, state: &AppState, index: &str) -> Result<Value, MeiliError> {
        let (group, rotation) = self.next_rotation();
        let read = CoverRead::with_options(
            format!("/indexes/{index}/search"),
            count_request(),
            &self.read_placement(index),
            &|n| self.healthy(n),
            self.cover_options(state, group, rotation),
        );
        let answers = match self.run_cover(state, read).await {
            CoverOutcome::ClientError(e) => return Err(e),
            CoverOutcome::Answers { answers, .. } => answers,
        };
        let mut parts = Vec::new();
        for a in answers {
            let (status, stats) = self
                .send_one(
                    state,
                    &a.node,
                    Method::Get,
                    &format!("/indexes/{index}/stats"),
                    None,
                )
                .await
                .map_err(|e| MeiliError::bad_node_response(a.node.as_str(), &e))?;
            if status != 200 {
                return Err(
                    MeiliError::from_node_body(status, &stats).unwrap_or_else(|| {
                        MeiliError::bad_node_response(a.node.as_str(), "stats without a body")
                    }),
                );
            }
            parts.push(StatsPart {
                documents: counted_documents(&a.body),
                whole_node: a.whole_node,
                node_stats: stats,
            });
        }
        Ok(merge_index_stats(&parts))
    }

    async fn global_stats(
        &self,
        state: &AppState,
        access: &Access,
    ) -> Result<ProxyResponse, MeiliError> {
        let (status, body) = self
            .read_one(state, None, Method::Get, "/stats", None)
            .await?;
        if status != 200 {
            return Ok(json_response(status, &body));
        }
        let mut out = body.clone();
        let mut indexes = Map::new();
        if let Some(Value::Object(m)) = body.get("indexes") {
            for uid in m.keys().filter(|u| access.is_index_authorized(u)) {
                indexes.insert(uid.clone(), self.index_stats(state, uid).await?);
            }
        }
        out["indexes"] = Value::Object(indexes);
        Ok(json_response(200, &out))
    }

    async fn get_document(
        &self,
        state: &AppState,
        index: &str,
        id: &str,
        request: &ProxyRequest,
    ) -> Result<ProxyResponse, MeiliError> {
        let placement = self.read_placement(index);
        let shard = placement.shard_for_key(id);
        let mut owners: Vec<NodeId> = Vec::new();
        for g in 0..placement.groups() {
            for n in placement.owners(shard, g) {
                if !owners.contains(n) {
                    owners.push(n.clone());
                }
            }
        }
        let path = match request.uri.query() {
            Some(q) => format!(
                "/indexes/{index}/documents/{}?{q}",
                miroir_core::ops::encode_query_value(id)
            ),
            None => format!(
                "/indexes/{index}/documents/{}",
                miroir_core::ops::encode_query_value(id)
            ),
        };
        let (status, mut body) = self
            .read_one(state, Some(owners), Method::Get, &path, None)
            .await?;
        if status == 200 {
            node_settings::strip_reserved(&mut body);
            let displayed = self.displayed(state, index).await;
            node_settings::apply_displayed(&mut body, displayed.as_deref());
        }
        Ok(json_response(status, &body))
    }

    /// `GET /indexes/{uid}/documents` and `POST /indexes/{uid}/documents/fetch`: core's documents pager
    /// over a covering set. A failed request goes where core's [`recover`] says: another replica holding
    /// the same shards, a fresh covering set without the failed nodes, or the unavailable-shard policy.
    async fn list_documents(
        &self,
        state: &AppState,
        index: &str,
        query: DocumentsQuery,
    ) -> Result<ProxyResponse, MeiliError> {
        let (group, rotation) = self.next_rotation();
        let policy = state.config.scatter.unavailable_shard_policy;
        let placement = &self.read_placement(index);
        let mut excluded: std::collections::BTreeSet<NodeId> = std::collections::BTreeSet::new();
        // Each restart excludes at least one more node, so this ends.
        'restart: loop {
            let cover = cover_without(placement, &excluded, &|n| self.healthy(n), group, rotation);
            // A filter pinning the primary key: only the shards owning those ids are read.
            let scope = self.cached_primary_key(index).and_then(|pk| {
                miroir_core::search::pinned_shards(query.filter.as_ref(), &pk, placement.shards())
            });
            let entries: Vec<CoverEntry> = cover
                .assignments
                .into_iter()
                .map(|(node, c)| {
                    let shards = match &scope {
                        Some(scope) => c.shards.into_iter().filter(|s| scope.contains(s)).collect(),
                        None => c.shards,
                    };
                    CoverEntry::new(node, shards, c.held)
                })
                .filter(|e| !e.assigned.is_empty())
                .collect();
            let mut pager =
                DocumentsPager::new(index, query.clone(), entries, placement.shards(), &|id| {
                    placement.shard_for_key(id)
                });
            if let Some(scope) = &scope {
                pager = pager.narrowed_to(scope);
            }
            let mut set = JoinSet::new();
            loop {
                match pager.poll() {
                    Step::Send(requests) => {
                        for r in requests {
                            self.spawn_request(
                                state,
                                &mut set,
                                NodeRequest {
                                    id: r.id,
                                    node: r.node,
                                    method: Method::Post,
                                    path: r.path,
                                    body: Some(r.body),
                                },
                            );
                        }
                    }
                    Step::Wait => match set.join_next().await {
                        Some(Ok((id, Ok((status, _))))) if node_unavailable(status) => {
                            pager.on_failure(id)
                        }
                        Some(Ok((id, Ok((status, body))))) => pager.on_response(id, status, &body),
                        Some(Ok((id, Err(_)))) => pager.on_failure(id),
                        Some(Err(_)) => {}
                        None => {
                            return Err(MeiliError::internal(
                                "the document listing waits for nothing",
                            ))
                        }
                    },
                    Step::Failed {
                        request,
                        node,
                        shards,
                    } => {
                        excluded.insert(node);
                        match recover(
                            placement,
                            &shards,
                            &excluded,
                            &|n| self.healthy(n),
                            group,
                            policy,
                        ) {
                            Recovery::Retry(next, held) => pager.retry(request, next, held)?,
                            Recovery::Restart => {
                                set.abort_all();
                                continue 'restart;
                            }
                            Recovery::Skip => pager.skip(request)?,
                            Recovery::Fail(e) => return Err(e),
                        }
                    }
                    Step::Done(mut body) => {
                        let displayed = self.displayed(state, index).await;
                        if let Some(Value::Array(docs)) = body.get_mut("results") {
                            for d in docs {
                                node_settings::apply_displayed(d, displayed.as_deref());
                            }
                        }
                        let unavailable = pager.unavailable_shards();
                        if !unavailable.is_empty() && policy == UnavailableShardPolicy::Error {
                            return Err(MeiliError::shard_unavailable(&unavailable));
                        }
                        let mut reply = Reply::json(200, body);
                        degraded(&mut reply, &unavailable);
                        return Ok(reply_response(&reply));
                    }
                    Step::Error(e) if e.code == "invalid_document_filter" => {
                        // The pager judged the filter through the search route; the documents route
                        // words its errors differently: ask one node's documents route for its own.
                        return Err(self.documents_filter_error(state, index, &query, e).await);
                    }
                    Step::Error(e) => return Err(e),
                }
            }
        }
    }

    /// The documents route's own error for the client's filter (from one node), else `fallback`.
    async fn documents_filter_error(
        &self,
        state: &AppState,
        index: &str,
        query: &DocumentsQuery,
        fallback: MeiliError,
    ) -> MeiliError {
        let Some(filter) = &query.filter else {
            return fallback;
        };
        let body = json!({"filter": filter, "limit": 0});
        match self
            .read_one(
                state,
                None,
                Method::Post,
                &format!("/indexes/{index}/documents/fetch"),
                Some(body),
            )
            .await
        {
            Ok((status, body)) if (400..500).contains(&status) => {
                MeiliError::from_node_body(status, &body).unwrap_or(fallback)
            }
            _ => fallback,
        }
    }

    async fn get_settings(
        &self,
        state: &AppState,
        index: &str,
        setting: Option<Setting>,
    ) -> Result<ProxyResponse, MeiliError> {
        let path = match setting {
            Some(s) => format!("/indexes/{index}/settings/{}", s.path()),
            None => format!("/indexes/{index}/settings"),
        };
        let (status, body) = self.read_one(state, None, Method::Get, &path, None).await?;
        if status != 200 {
            return Ok(json_response(status, &body));
        }
        let kept = self
            .index_meta(state, index)
            .await?
            .unwrap_or_default()
            .kept();
        let shown = match setting {
            Some(s) => node_settings::client_setting_value(
                &node_settings::setting_key(s.path()),
                &body,
                &kept,
            ),
            None => node_settings::client_settings(&body, &kept),
        };
        Ok(json_response(200, &shown))
    }

    async fn update_settings(
        &self,
        state: &AppState,
        index: &str,
        setting: Option<Setting>,
        request: &ProxyRequest,
    ) -> Result<ProxyResponse, MeiliError> {
        let (method, path, node_body, client_details) = match setting {
            None => {
                let body = json_object(request)?;
                let node = node_settings::node_settings_patch(&body, self.placement().shards());
                (
                    Method::Patch,
                    format!("/indexes/{index}/settings"),
                    Value::Object(node),
                    body,
                )
            }
            Some(s) => {
                let key = node_settings::setting_key(s.path());
                let value = json_body(request)?;
                let node =
                    node_settings::node_setting_value(&key, &value, self.placement().shards());
                let method = if s.update_method() == http::Method::PATCH {
                    Method::Patch
                } else {
                    Method::Put
                };
                let mut d = Map::new();
                d.insert(key, value);
                (
                    method,
                    format!("/indexes/{index}/settings/{}", s.path()),
                    node,
                    d,
                )
            }
        };
        if self.index_meta(state, index).await?.is_none() {
            let created = self.create_index(state, index, None, None).await?;
            if created.status != 202 {
                return Ok(reply_response(&created));
            }
        }
        if let Some(change) = client_details
            .get("faceting")
            .and_then(node_settings::client_max_values_per_facet)
        {
            self.update_meta(state, index, |m| m.max_values_per_facet = change)
                .await?;
        }
        if let Some(change) = client_details
            .get("displayedAttributes")
            .and_then(node_settings::client_displayed)
        {
            self.update_meta(state, index, |m| m.displayed = change)
                .await?;
        }
        self.forget_context(index);
        self.broadcast_route(
            state,
            index,
            TaskType::SettingsUpdate,
            Some(details::settings(&node_settings::settings_details(
                &client_details,
            ))),
            method,
            path,
            Some(node_body),
            WriteQuorum::All,
        )
        .await
    }

    async fn reset_settings(
        &self,
        state: &AppState,
        index: &str,
        setting: Option<Setting>,
    ) -> Result<ProxyResponse, MeiliError> {
        let (method, path, body, d) = match setting {
            None => {
                let (m, body) = node_settings::node_settings_reset(self.placement().shards());
                let mut d = Map::new();
                for k in node_settings::RESETTABLE {
                    d.insert(k.to_string(), Value::Null);
                }
                (m, format!("/indexes/{index}/settings"), Some(body), d)
            }
            Some(s) => {
                let key = node_settings::setting_key(s.path());
                let (m, body) = node_settings::node_setting_reset(&key, self.placement().shards());
                let mut d = Map::new();
                d.insert(key, Value::Null);
                (
                    m,
                    format!("/indexes/{index}/settings/{}", s.path()),
                    body,
                    d,
                )
            }
        };
        if self.index_meta(state, index).await?.is_some() {
            let (facets, displayed) = (
                d.contains_key("faceting"),
                d.contains_key("displayedAttributes"),
            );
            self.update_meta(state, index, |m| {
                if facets {
                    m.max_values_per_facet = None;
                }
                if displayed {
                    m.displayed = None;
                }
            })
            .await?;
        }
        self.forget_context(index);
        self.broadcast_route(
            state,
            index,
            TaskType::SettingsUpdate,
            Some(details::settings(&d)),
            method,
            path,
            body,
            WriteQuorum::All,
        )
        .await
    }

    async fn list_tasks(
        &self,
        state: &AppState,
        request: &ProxyRequest,
    ) -> Result<ProxyResponse, MeiliError> {
        let filter = TaskFilter::from_list_query(query_pairs(&request.uri))?;
        let views = self.all_task_views(state, &request.access).await?;
        Ok(json_response(200, &filter.paginate(views.iter())))
    }

    /// Every stored Miroir task `access` may see: the stored record with its aggregated view.
    async fn visible_tasks(
        &self,
        state: &AppState,
        access: &Access,
    ) -> Result<Vec<(Value, miroir_core::tasks::TaskView)>, MeiliError> {
        let stored = state.store.list_tasks(None, 100_000, false).await?;
        let mut tasks = Vec::with_capacity(stored.len());
        for s in stored {
            let view = self.read_task(state, &s).await?;
            if keys::task_visible(access, view.index_uid.as_deref()) {
                tasks.push((s, view));
            }
        }
        Ok(tasks)
    }

    /// Every stored Miroir task `access` may see, aggregated.
    async fn all_task_views(
        &self,
        state: &AppState,
        access: &Access,
    ) -> Result<Vec<miroir_core::tasks::TaskView>, MeiliError> {
        Ok(self
            .visible_tasks(state, access)
            .await?
            .into_iter()
            .map(|(_, view)| view)
            .collect())
    }

    /// `DELETE /tasks`: deletes the finished Miroir tasks matching the filter from the store, recorded as a
    /// `taskDeletion` task (done at once: nothing is sent to the nodes, whose own task queues stay).
    async fn delete_tasks(
        &self,
        state: &AppState,
        request: &ProxyRequest,
    ) -> Result<ProxyResponse, MeiliError> {
        let filter = TaskFilter::from_cancel_or_delete_query(
            query_pairs(&request.uri),
            TaskQueryKind::Delete,
        )?;
        let mut matched = 0u64;
        let mut finished = Vec::new();
        for view in self.all_task_views(state, &request.access).await? {
            if filter.matches(&view) {
                matched += 1;
                if view.status.is_finished() {
                    finished.push(view.uid);
                }
            }
        }
        let original = format!("?{}", request.uri.query().unwrap_or(""));
        let mut d = details::task_deletion(matched, &original);
        let deleted = state.store.delete_tasks(&finished).await?;
        d.insert("deletedTasks".into(), Value::from(deleted));
        let task = self
            .new_task(state, None, TaskType::TaskDeletion, Some(d))
            .await?;
        self.local_task(state, task, None).await
    }

    /// `POST /tasks/cancel`: each node cancels the node tasks behind the matching enqueued or processing
    /// Miroir tasks (`POST /tasks/cancel?uids=…` on that node); the `taskCancelation` Miroir task succeeds
    /// when every node's cancelation did (quorum `all` over one pseudo-shard), and the matched records get
    /// `canceledBy`, which shows once their node tasks are canceled.
    async fn cancel_tasks(
        &self,
        state: &AppState,
        request: &ProxyRequest,
    ) -> Result<ProxyResponse, MeiliError> {
        let filter = TaskFilter::from_cancel_or_delete_query(
            query_pairs(&request.uri),
            TaskQueryKind::Cancel,
        )?;
        let mut matched: Vec<Value> = Vec::new();
        let mut per_node: BTreeMap<NodeId, Vec<u64>> = BTreeMap::new();
        for (s, view) in self.visible_tasks(state, &request.access).await? {
            if view.status.is_finished() || !filter.matches(&view) {
                continue;
            }
            if let Ok(record) = serde_json::from_value::<MiroirTask>(s["record"].clone()) {
                for r in &record.node_tasks {
                    if let Some(uid) = r.task_uid {
                        per_node.entry(r.node.clone()).or_default().push(uid);
                    }
                }
            }
            matched.push(s);
        }
        let original = format!("?{}", request.uri.query().unwrap_or(""));
        let mut d = details::task_cancelation(matched.len() as u64, &original);
        d.insert("canceledTasks".into(), Value::from(matched.len() as u64));
        let task = self
            .new_task(state, None, TaskType::TaskCancelation, Some(d))
            .await?;
        let nodes: Vec<NodeId> = per_node.keys().cloned().collect();
        let mut owners = miroir_core::quorum::ShardOwners::new();
        if !nodes.is_empty() {
            owners.insert(0, vec![nodes]);
        }
        let requests = per_node
            .into_iter()
            .map(|(node, mut uids)| {
                uids.sort_unstable();
                uids.dedup();
                let list = uids
                    .iter()
                    .map(u64::to_string)
                    .collect::<Vec<_>>()
                    .join(",");
                (
                    node,
                    Method::Post,
                    format!("/tasks/cancel?uids={list}"),
                    None,
                )
            })
            .collect();
        let write = FanoutWrite::new(
            task,
            owners,
            WriteQuorum::All,
            self.deadline(state),
            requests,
        );
        let reply = self.run_write(state, write, true).await?;
        if let (202, Some(cancel_uid)) = (reply.status, reply.body["taskUid"].as_u64()) {
            for mut s in matched {
                let Some(uid) = s["record"]["uid"].as_u64() else {
                    continue;
                };
                s["record"]["canceledBy"] = Value::from(cancel_uid);
                state.store.put_task(uid, &s).await?;
            }
        }
        Ok(reply_response(&reply))
    }

    /// `POST /swap-indexes`: broadcast (quorum `all`); the proxy's index metadata follows the swap at once
    /// and is corrected when the task is seen finished ([`Fleet::settle_swap`]).
    /// `POST /dumps` / `POST /snapshots`: sent to every node, one Miroir task aggregated from the node
    /// tasks with quorum `all` (each node writes its own dump or snapshot, of the shards it holds).
    async fn maintenance_task(
        &self,
        state: &AppState,
        task_type: TaskType,
        path: &str,
    ) -> Result<ProxyResponse, MeiliError> {
        let details = (task_type == TaskType::DumpCreation).then(|| details::dump(None));
        let task = self.new_task(state, None, task_type, details).await?;
        let write = FanoutWrite::broadcast(
            task,
            Method::Post,
            path.into(),
            None,
            &self.placement(),
            WriteQuorum::All,
            self.deadline(state),
        );
        self.answer_write(state, write).await
    }

    /// The webhooks kept in the store.
    async fn load_webhooks(&self, state: &AppState) -> Result<Webhooks, MeiliError> {
        Ok(state
            .store
            .get_meta(WEBHOOKS_KEY)
            .await?
            .map(|v| Webhooks::from_json(&v))
            .unwrap_or_default())
    }

    /// Applies `change` to the stored webhooks and saves them when it succeeds.
    async fn change_webhooks<T>(
        &self,
        state: &AppState,
        change: impl FnOnce(&mut Webhooks) -> Result<T, MeiliError>,
    ) -> Result<T, MeiliError> {
        let _guard = self.webhooks.lock().await;
        let mut webhooks = self.load_webhooks(state).await?;
        let out = change(&mut webhooks)?;
        state
            .store
            .put_meta(WEBHOOKS_KEY, &webhooks.to_json())
            .await?;
        Ok(out)
    }

    async fn swap_indexes(
        &self,
        state: &AppState,
        request: &ProxyRequest,
    ) -> Result<ProxyResponse, MeiliError> {
        let body = json_body(request)?;
        for (a, _, _) in swap_pairs(&body) {
            self.refuse_while_migrating(&a)?;
        }
        if swap_pairs(&body).iter().any(|(a, b, _)| {
            !(request.access.is_index_authorized(a) && request.access.is_index_authorized(b))
        }) {
            return Err(miroir_core::auth::invalid_api_key());
        }
        let task = self
            .new_task(
                state,
                None,
                TaskType::IndexSwap,
                Some(details::swaps(swap_details(&body))),
            )
            .await?;
        let write = FanoutWrite::broadcast(
            task,
            Method::Post,
            "/swap-indexes".into(),
            Some(body.clone()),
            &self.placement(),
            WriteQuorum::All,
            self.deadline(state),
        );
        let reply = self.run_write(state, write, true).await?;
        if reply.status == 202 {
            for (a, b, rename) in swap_pairs(&body) {
                self.swap_meta(state, &a, &b, rename).await?;
            }
        }
        Ok(reply_response(&reply))
    }

    /// Exchanges the metadata of `a` and `b` (or moves `a`'s to `b` for a rename).
    async fn swap_meta(
        &self,
        state: &AppState,
        a: &str,
        b: &str,
        rename: bool,
    ) -> Result<(), MeiliError> {
        let ma = self.index_meta(state, a).await?;
        let mb = if rename {
            None
        } else {
            self.index_meta(state, b).await?
        };
        for (uid, meta) in [(b, ma), (a, mb)] {
            match meta {
                Some(m) => self.save_index(state, uid, m).await?,
                None => {
                    self.forget_index(uid);
                    state.store.delete_meta(&meta_key(uid)).await?;
                }
            }
        }
        Ok(())
    }

    /// A swap task finished: a failed swap puts the metadata back; either way the primary keys are read
    /// from the nodes again.
    async fn settle_swap(&self, state: &AppState, view: &miroir_core::tasks::TaskView) {
        let swaps = view
            .meili
            .pointer("/details/swaps")
            .cloned()
            .unwrap_or(Value::Null);
        for (a, b, rename) in swap_pairs(&swaps) {
            if view.status != miroir_core::tasks::TaskStatus::Succeeded && !rename {
                if let Err(e) = self.swap_meta(state, &a, &b, false).await {
                    tracing::warn!(error = %e, "cannot restore index metadata after a failed swap");
                }
            }
            self.refresh_primary_key(state, &a).await;
            self.refresh_primary_key(state, &b).await;
        }
    }

    /// `GET /_miroir/shards`: every shard's owners in each replica group.
    fn shards_view(&self) -> Value {
        let view = self.elastic.view();
        let (topology, placement) = (&view.topology, &view.placement);
        let health = self.health.lock().unwrap_or_else(|p| p.into_inner());
        let results: Vec<Value> = (0..placement.shards())
            .map(|shard| {
                let groups: Vec<Value> = (0..placement.groups())
                    .map(|group| {
                        let nodes: Vec<Value> = placement
                            .owners(shard, group)
                            .iter()
                            .map(|n| json!({"id": n.as_str(), "health": health.state(n)}))
                            .collect();
                        json!({"group": group, "nodes": nodes})
                    })
                    .collect();
                json!({"shard": shard, "groups": groups})
            })
            .collect();
        json!({
            "epoch": topology.epoch,
            "shards": placement.shards(),
            "replicationFactor": placement.rf(),
            "results": results,
            // indexes resharded to an S of their own (see reshard.rs)
            "indexes": self.reshard_indexes_view(),
        })
    }

    fn topology_view(&self) -> Value {
        let view = self.elastic.view();
        let (topology, placement) = (&view.topology, &view.placement);
        let health = self.health.lock().unwrap_or_else(|p| p.into_inner());
        let nodes: Vec<Value> = topology
            .nodes
            .iter()
            .map(|n| {
                json!({
                    "id": n.id.as_str(),
                    "address": n.address,
                    "replicaGroup": n.replica_group,
                    "state": n.state,
                    "health": health.state(&n.id),
                    "shards": placement.shards_held_by(&n.id).len(),
                })
            })
            .collect();
        json!({
            "epoch": topology.epoch,
            "shards": placement.shards(),
            "replicationFactor": placement.rf(),
            "replicaGroups": placement.groups(),
            "migrating": self.elastic.is_migrating(),
            "nodes": nodes,
            // indexes resharded to an S of their own (see reshard.rs)
            "indexes": self.reshard_indexes_view(),
        })
    }

    async fn dispatch(
        &self,
        state: &AppState,
        route: Route,
        request: ProxyRequest,
    ) -> Result<ProxyResponse, MeiliError> {
        use Route::*;
        // A stored topology newer than the configuration's is in force before the first request.
        self.elastic_ready(state).await;
        self.reshard_ready(state).await;
        let q = request
            .uri
            .query()
            .map(|q| format!("?{q}"))
            .unwrap_or_default();
        match route {
            ListIndexes => {
                let _ = self.write_hints(state).await;
                let (s, mut b) = self
                    .read_one(state, None, Method::Get, &format!("/indexes{q}"), None)
                    .await?;
                self.hide_deleted_indexes(&mut b);
                if s != 200 || request.access.all_indexes_authorized() {
                    return Ok(json_response(s, &b));
                }
                // A key restricted to some indexes pages through those only.
                let (s, mut all) = self
                    .read_one(
                        state,
                        None,
                        Method::Get,
                        "/indexes?offset=0&limit=1000000",
                        None,
                    )
                    .await?;
                if s != 200 {
                    return Ok(json_response(s, &all));
                }
                self.hide_deleted_indexes(&mut all);
                let number = |k: &str| b.get(k).and_then(Value::as_u64).unwrap_or(0) as usize;
                let page = keys::authorized_index_page(
                    &request.access,
                    &all,
                    number("offset"),
                    number("limit"),
                );
                Ok(json_response(200, &page))
            }
            CreateIndex => {
                if let Ok(Value::Object(body)) = json_body(&request) {
                    if let Some(uid) = body.get("uid").and_then(Value::as_str) {
                        if !request.access.can_create_index(uid) {
                            return Err(miroir_core::auth::invalid_api_key());
                        }
                        self.refuse_alias_name(state, uid).await?;
                    }
                }
                self.create_index_route(state, &request).await
            }
            GetIndex(u)
                if self.write_hints(state).await.is_some()
                    && self.index_deletion_pending(u.as_str()) =>
            {
                Err(index_not_found(u.as_str()))
            }
            GetIndex(u) => {
                let (s, b) = self.read_index(state, u.as_str()).await?;
                Ok(json_response(s, &b))
            }
            UpdateIndex(u) => {
                let body = json_object(&request)?;
                self.forget_index(u.as_str());
                if body.get("uid").is_some_and(Value::is_string) {
                    // A rename: the metadata is read again from the nodes under the new name.
                    state.store.delete_meta(&meta_key(u.as_str())).await?;
                }
                let mut d = Map::new();
                d.insert(
                    "primaryKey".into(),
                    body.get("primaryKey").cloned().unwrap_or(Value::Null),
                );
                if let Some(new_uid) = body.get("uid") {
                    d.insert("oldIndexUid".into(), Value::String(u.as_str().to_string()));
                    d.insert("newIndexUid".into(), new_uid.clone());
                }
                let new_pk = body
                    .get("primaryKey")
                    .and_then(Value::as_str)
                    .map(str::to_string);
                let renamed = body.get("uid").is_some_and(Value::is_string);
                let response = self
                    .broadcast_route(
                        state,
                        u.as_str(),
                        TaskType::IndexUpdate,
                        Some(d),
                        Method::Patch,
                        format!("/indexes/{u}"),
                        Some(Value::Object(body)),
                        WriteQuorum::All,
                    )
                    .await?;
                if let (Some(pk), false, StatusCode::ACCEPTED) =
                    (new_pk, renamed, response.status())
                {
                    // Batches sent from now on name the new key; the nodes apply the update first
                    // (each node runs its tasks in order). Re-read once the task finishes.
                    self.update_meta(state, u.as_str(), |m| m.primary_key = Some(pk))
                        .await?;
                }
                Ok(response)
            }
            DeleteIndex(u) => {
                // A deleted index would leave its migration nothing to copy, for ever.
                self.refuse_while_migrating(u.as_str())?;
                self.forget_index(u.as_str());
                state.store.delete_meta(&meta_key(u.as_str())).await?;
                self.cache
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .deleted
                    .insert(u.as_str().to_string());
                let response = self
                    .broadcast_route(
                        state,
                        u.as_str(),
                        TaskType::IndexDeletion,
                        Some(details::deleted_documents()),
                        Method::Delete,
                        format!("/indexes/{u}"),
                        None,
                        self.quorum,
                    )
                    .await?;
                if response.status() == StatusCode::ACCEPTED {
                    // a resharded index's physical name and S go with it
                    self.forget_resharded(state, u.as_str()).await?;
                }
                Ok(response)
            }
            AddDocuments(u) => self.add_documents(state, u.as_str(), &request, true).await,
            UpdateDocuments(u) => self.add_documents(state, u.as_str(), &request, false).await,
            GetDocuments(u) => {
                let query = DocumentsQuery::from_query_pairs(&query_pairs(&request.uri))?;
                self.list_documents(state, u.as_str(), query).await
            }
            FetchDocuments(u) => {
                let query = DocumentsQuery::from_fetch_body(&json_body(&request)?)?;
                self.list_documents(state, u.as_str(), query).await
            }
            GetDocument(u, id) => self.get_document(state, u.as_str(), &id, &request).await,
            DeleteDocument(u, id) => {
                self.delete_ids(state, u.as_str(), vec![Value::String(id)])
                    .await
            }
            DeleteDocumentsBatch(u) => {
                let ct = request
                    .headers
                    .get(http::header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok());
                let ids = parse_delete_ids(ct, &request.body)?;
                self.delete_ids(state, u.as_str(), ids).await
            }
            DeleteDocumentsByFilter(u) => {
                let body = json_object(&request)?;
                let filter = body.get("filter").cloned().unwrap_or(Value::Null);
                self.broadcast_route(
                    state,
                    u.as_str(),
                    TaskType::DocumentDeletion,
                    Some(details::document_deletion_by_filter(&filter)),
                    Method::Post,
                    format!("/indexes/{u}/documents/delete"),
                    Some(Value::Object(body)),
                    self.quorum,
                )
                .await
            }
            DeleteAllDocuments(u) => {
                self.broadcast_route(
                    state,
                    u.as_str(),
                    TaskType::DocumentDeletion,
                    Some(details::deleted_documents()),
                    Method::Delete,
                    format!("/indexes/{u}/documents"),
                    None,
                    self.quorum,
                )
                .await
            }
            SearchPost(u) => {
                let mut body = json_object(&request)?;
                with_search_rules(&request.access, u.as_str(), &mut body);
                self.search_response(state, u.as_str(), &body).await
            }
            SearchGet(u) => {
                let mut body = search_params_from_query(&query_pairs(&request.uri))?;
                with_search_rules(&request.access, u.as_str(), &mut body);
                self.search_response(state, u.as_str(), &body).await
            }
            MultiSearch => self.multi_search(state, &request).await,
            FacetSearch(u) => self.facet_search(state, u.as_str(), &request).await,
            GetSettings(u) => self.get_settings(state, u.as_str(), None).await,
            GetSetting(u, s) => self.get_settings(state, u.as_str(), Some(s)).await,
            UpdateSettings(u) => {
                self.update_settings(state, u.as_str(), None, &request)
                    .await
            }
            UpdateSetting(u, s) => {
                self.update_settings(state, u.as_str(), Some(s), &request)
                    .await
            }
            ResetSettings(u) => self.reset_settings(state, u.as_str(), None).await,
            ResetSetting(u, s) => self.reset_settings(state, u.as_str(), Some(s)).await,
            IndexStats(u) => {
                if self.index_meta(state, u.as_str()).await?.is_none() {
                    return Err(index_not_found(u.as_str()));
                }
                Ok(json_response(
                    200,
                    &self.index_stats(state, u.as_str()).await?,
                ))
            }
            Stats => self.global_stats(state, &request.access).await,
            GetTask(uid) => {
                let stored = state
                    .store
                    .get_task(uid)
                    .await?
                    .ok_or_else(|| task_not_found(uid))?;
                let view = self.read_task(state, &stored).await?;
                if !keys::task_visible(&request.access, view.index_uid.as_deref()) {
                    return Err(task_not_found(uid));
                }
                Ok(json_response(200, &view.meili))
            }
            GetExperimentalFeatures => {
                let (s, b) = self
                    .read_one(state, None, Method::Get, "/experimental-features", None)
                    .await?;
                Ok(json_response(s, &b))
            }
            UpdateExperimentalFeatures => {
                let body = json_body(&request)?;
                let nodes: Vec<NodeId> =
                    self.topology().nodes.iter().map(|n| n.id.clone()).collect();
                let mut every =
                    EveryNode::new(&nodes, Method::Patch, "/experimental-features", Some(body));
                let mut set = JoinSet::new();
                for r in every.requests().to_vec() {
                    self.spawn_request(state, &mut set, r);
                }
                while let Some(done) = set.join_next().await {
                    match done {
                        Ok((id, Ok((status, body)))) => every.on_response(id, status, body),
                        Ok((id, Err(_))) => every.on_failure(id),
                        Err(_) => {}
                    }
                }
                let reply = every.reply().unwrap_or_else(|| {
                    Reply::error(&MeiliError::internal("a node request was lost"))
                });
                Ok(reply_response(&reply))
            }
            ListKeys => {
                let q = request
                    .uri
                    .query()
                    .map(|q| format!("?{q}"))
                    .unwrap_or_default();
                let (s, b) = self
                    .read_one(state, None, Method::Get, &format!("/keys{q}"), None)
                    .await?;
                Ok(json_response(s, &b))
            }
            GetKey(k) => {
                let (s, b) = self
                    .read_one(
                        state,
                        None,
                        Method::Get,
                        &format!("/keys/{}", miroir_core::ops::encode_query_value(&k)),
                        None,
                    )
                    .await?;
                Ok(json_response(s, &b))
            }
            CreateKey => self.create_key(state, &request).await,
            UpdateKey(k) => {
                let body = json_body(&request)?;
                self.key_write(
                    state,
                    KeyWrite::Update,
                    Method::Patch,
                    &format!("/keys/{}", miroir_core::ops::encode_query_value(&k)),
                    Some(body),
                )
                .await
            }
            DeleteKey(k) => {
                self.key_write(
                    state,
                    KeyWrite::Delete,
                    Method::Delete,
                    &format!("/keys/{}", miroir_core::ops::encode_query_value(&k)),
                    None,
                )
                .await
            }
            ListBatches => {
                let filter = TaskFilter::from_list_query(query_pairs(&request.uri))?;
                let views = self.all_task_views(state, &request.access).await?;
                Ok(json_response(
                    200,
                    &miroir_core::tasks::batch::list_batches(&filter, views.iter()),
                ))
            }
            GetBatch(uid) => {
                let view = match state.store.get_task(uid).await? {
                    Some(stored) => Some(self.read_task(state, &stored).await?)
                        .filter(|v| keys::task_visible(&request.access, v.index_uid.as_deref())),
                    None => None,
                };
                Ok(json_response(
                    200,
                    &miroir_core::tasks::batch::get_batch(uid, view.iter())?,
                ))
            }
            CreateDump => {
                self.maintenance_task(state, TaskType::DumpCreation, "/dumps")
                    .await
            }
            CreateSnapshot => {
                self.maintenance_task(state, TaskType::SnapshotCreation, "/snapshots")
                    .await
            }
            ListWebhooks => Ok(json_response(200, &self.load_webhooks(state).await?.list())),
            GetWebhook(u) => Ok(json_response(
                200,
                &self.load_webhooks(state).await?.get(&u)?,
            )),
            CreateWebhook => {
                let body = json_body(&request)?;
                let uuid = key_ops::key_uid(random_u128());
                let view = self
                    .change_webhooks(state, |w| w.create(&body, &uuid))
                    .await?;
                Ok(json_response(201, &view))
            }
            UpdateWebhook(u) => {
                let body = json_body(&request)?;
                let view = self.change_webhooks(state, |w| w.update(&u, &body)).await?;
                Ok(json_response(200, &view))
            }
            DeleteWebhook(u) => {
                self.change_webhooks(state, |w| w.delete(&u)).await?;
                Ok(crate::http_util::empty_response(StatusCode::NO_CONTENT))
            }
            SwapIndexes => self.swap_indexes(state, &request).await,
            ListTasks => self.list_tasks(state, &request).await,
            DeleteTasks => self.delete_tasks(state, &request).await,
            CancelTasks => self.cancel_tasks(state, &request).await,
            Admin(AdminRoute::Other { method, path }) if path.starts_with("aliases") => self
                .admin_aliases(state, &method, &path, &request)
                .await
                .unwrap_or_else(|| Ok(crate::http_util::empty_response(StatusCode::NOT_FOUND))),
            Admin(AdminRoute::Other { method, path }) if path.starts_with("indexes/") => self
                .admin_reshard(state, &method, &path, &request)
                .await
                .unwrap_or_else(|| Ok(crate::http_util::empty_response(StatusCode::NOT_FOUND))),
            Admin(AdminRoute::Other { method, path }) if elastic::is_elastic_path(&path) => self
                .admin_elastic(state, &method, &path, &request)
                .await
                .unwrap_or_else(|| Ok(crate::http_util::empty_response(StatusCode::NOT_FOUND))),
            Admin(AdminRoute::Other { method, path })
                if method == http::Method::GET && path == "topology" =>
            {
                Ok(json_response(200, &self.topology_view()))
            }
            Admin(AdminRoute::Other { method, path })
                if method == http::Method::GET && path == "shards" =>
            {
                Ok(json_response(200, &self.shards_view()))
            }
            Admin(AdminRoute::Other { method, path })
                if method == http::Method::POST && path == "verify" =>
            {
                self.verify_route(state, &request).await
            }
            Admin(AdminRoute::Other { .. }) => {
                Ok(crate::http_util::empty_response(StatusCode::NOT_FOUND))
            }
            other => Err(unsupported_route(&format!(
                "{} {}",
                request.method,
                request.uri.path()
            )))
            .inspect_err(|_| tracing::debug!(route = other.class(), "unsupported route")),
        }
    }
}

/// 128 random bits for a key uid: std's randomly keyed hasher over the time and a counter (no extra
/// dependency; a key uid needs uniqueness, not secrecy: the key value is derived on the nodes).
fn random_u128() -> u128 {
    use std::hash::{BuildHasher, Hasher};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let half = || {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(nanos);
        h.write_u64(n);
        h.finish() as u128
    };
    (half() << 64) | half()
}

/// The `swaps` of an `indexSwap` task as Meilisearch reports them: each entry with `rename` (default
/// `false`).
fn swap_details(body: &Value) -> Value {
    match body {
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|item| match item {
                    Value::Object(m) => {
                        let mut m = m.clone();
                        m.entry("rename").or_insert(Value::Bool(false));
                        Value::Object(m)
                    }
                    other => other.clone(),
                })
                .collect(),
        ),
        other => other.clone(),
    }
}

/// The `(a, b, rename)` pairs of a swap-indexes body; malformed entries are skipped (the nodes reject
/// them).
fn swap_pairs(body: &Value) -> Vec<(String, String, bool)> {
    body.as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|item| {
                    let pair = item.get("indexes")?.as_array()?;
                    match pair.as_slice() {
                        [Value::String(a), Value::String(b)] => Some((
                            a.clone(),
                            b.clone(),
                            item.get("rename").and_then(Value::as_bool).unwrap_or(false),
                        )),
                        _ => None,
                    }
                })
                .collect()
        })
        .unwrap_or_default()
}

fn index_not_found(uid: &str) -> MeiliError {
    MeiliError::invalid(404, "index_not_found", format!("Index `{uid}` not found."))
}

fn degraded(reply: &mut Reply, unavailable: &[u32]) {
    if !unavailable.is_empty() {
        let list = unavailable
            .iter()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join(",");
        reply.headers.push((
            miroir_core::ops::DEGRADED_HEADER.to_string(),
            format!("shards={list}"),
        ));
    }
}

/// The stored form of a task: the record and the finished node task objects seen so far.
fn record_json(record: &MiroirTask, finished: &[Value]) -> Value {
    json!({
        "record": serde_json::to_value(record).unwrap_or(Value::Null),
        "finished": finished,
    })
}

/// An error answer as one node holding everything would word it (node messages list `_miroir_shard`
/// among the filterable attributes; see [`node_settings::hide_shard_field_in_message`]).
/// Adds a tenant token's search rule for `index` to a search body's `filter` (Meilisearch's
/// `add_search_rules`); nothing for other credentials.
fn with_search_rules(access: &Access, index: &str, body: &mut Map<String, Value>) {
    let filter = body.remove("filter").filter(|f| !f.is_null());
    if let Some(f) = access.apply_search_rules(index, filter) {
        body.insert("filter".into(), f);
    }
}

async fn hide_shard_field(response: ProxyResponse) -> ProxyResponse {
    use http_body_util::BodyExt;
    if response.status().as_u16() < 400 {
        return response;
    }
    let (parts, body) = response.into_parts();
    let bytes = match body.collect().await {
        Ok(b) => b.to_bytes(),
        Err(never) => match never {},
    };
    let bytes = match serde_json::from_slice::<Value>(&bytes) {
        Ok(mut v) => {
            node_settings::hide_shard_field_in_error(&mut v);
            Bytes::from(serde_json::to_vec(&v).unwrap_or_else(|_| bytes.to_vec()))
        }
        Err(_) => bytes,
    };
    ProxyResponse::from_parts(parts, http_body_util::Full::new(bytes))
}

#[async_trait]
impl RouteHandler for Fleet {
    async fn handle(&self, state: &AppState, route: Route, request: ProxyRequest) -> ProxyResponse {
        let mut request = request;
        let route = if route.is_admin() {
            route
        } else {
            self.resolve_aliases(state, route, &mut request).await
        };
        // Writes carrying an `Idempotency-Key` are deduplicated around the dispatch.
        // Requests about an index run under its two-phase settings machine, session requests under
        // read-your-writes.
        let route_ref = route.clone();
        let sync = &self.settings_sync;
        let response = crate::idempotency::serve(state, &route_ref, request, |request| {
            crate::settings_sync::around(sync, state, &route_ref, request, |r| {
                crate::session::around(&self.sessions, state, &route_ref, r, |r| async {
                    // a write another proxy must fence goes to that proxy (see elastic.rs)
                    match self.dispatch_or_forward(state, route, r).await {
                        Ok(r) => r,
                        Err(e) => error_response(&e),
                    }
                })
            })
        })
        .await;
        hide_shard_field(response).await
    }

    async fn authorize(
        &self,
        state: &AppState,
        route: &Route,
        headers: &http::HeaderMap,
    ) -> Result<Access, MeiliError> {
        self.authorize_request(state, route, headers).await
    }

    async fn authenticate(
        &self,
        state: &AppState,
        headers: &http::HeaderMap,
    ) -> Result<(), MeiliError> {
        self.authenticate_request(state, headers).await
    }
}

#[cfg(test)]
mod tests {
    /// Lane turns: the lane is released by a finished turn, and a request whose task died before its turn
    /// is skipped instead of blocking the lane forever.
    #[tokio::test]
    async fn lane_turns_release_in_order_and_skip_abandoned_requests() {
        let lanes: Arc<Mutex<WriteLanes<tokio::sync::oneshot::Sender<()>>>> = Arc::default();
        let node = NodeId::from("n0");
        let turn = |lanes: &Arc<Mutex<WriteLanes<_>>>| {
            let (go, wait) = tokio::sync::oneshot::channel::<()>();
            if let Some(go) = lanes.lock().unwrap().submit("movies", &node, go) {
                let _ = go.send(());
            }
            LaneTurn {
                lanes: lanes.clone(),
                index: "movies".into(),
                node: node.clone(),
                wait,
                holding: false,
            }
        };
        let mut first = turn(&lanes);
        let second = turn(&lanes);
        let mut third = turn(&lanes);
        first.acquire().await;
        drop(second); // its task died before its turn
        assert!(
            tokio::time::timeout(std::time::Duration::from_millis(20), third.acquire())
                .await
                .is_err(),
            "the third waits while the first holds the lane"
        );
        drop(first);
        tokio::time::timeout(std::time::Duration::from_secs(1), third.acquire())
            .await
            .expect("the abandoned second is skipped and the third gets the lane");
        drop(third);
        assert!(
            !lanes.lock().unwrap().is_busy("movies", &node),
            "the lane is idle again"
        );
        // a turn dropped after being handed the lane but before awaiting it still releases the lane
        let unpolled = turn(&lanes);
        drop(unpolled);
        assert!(!lanes.lock().unwrap().is_busy("movies", &node));
    }

    use super::*;

    fn request(ct: Option<&str>, body: &str) -> ProxyRequest {
        let mut headers = http::HeaderMap::new();
        if let Some(ct) = ct {
            headers.insert(
                http::header::CONTENT_TYPE,
                HeaderValue::from_str(ct).unwrap(),
            );
        }
        ProxyRequest {
            access: Access::Full,
            method: http::Method::POST,
            uri: "/indexes/a/search?q=a+b&x=%C3%BC&flag".parse().unwrap(),
            headers,
            body: Bytes::from(body.to_string()),
        }
    }

    #[test]
    fn query_pairs_are_decoded_in_order() {
        let r = request(None, "");
        assert_eq!(
            query_pairs(&r.uri),
            vec![
                ("q".to_string(), "a b".to_string()),
                ("x".to_string(), "ü".to_string()),
                ("flag".to_string(), String::new()),
            ]
        );
        assert!(query_pairs(&"/x".parse().unwrap()).is_empty());
    }

    #[test]
    fn json_bodies_follow_meilisearch_extractor_errors() {
        assert_eq!(
            json_body(&request(
                Some("application/json; charset=utf-8"),
                "{\"q\":1}"
            ))
            .unwrap(),
            json!({"q": 1})
        );
        let e = json_body(&request(None, "{}")).unwrap_err();
        assert_eq!((e.status, e.code.as_str()), (415, "missing_content_type"));
        let e = json_body(&request(Some("text/csv"), "{}")).unwrap_err();
        assert_eq!((e.status, e.code.as_str()), (415, "invalid_content_type"));
        let e = json_body(&request(Some("application/json"), "")).unwrap_err();
        assert_eq!((e.status, e.code.as_str()), (400, "missing_payload"));
        let e = json_body(&request(None, "")).unwrap_err();
        assert_eq!(e.code, "missing_payload");
        let e = json_body(&request(Some("application/json"), "{")).unwrap_err();
        assert_eq!((e.status, e.code.as_str()), (400, "bad_request"));
        assert!(e.message.starts_with("Json deserialize error: "));
        let e = json_object(&request(Some("application/json"), "[1]")).unwrap_err();
        assert_eq!(e.code, "bad_request");
        assert!(e.message.contains("sequence"), "{}", e.message);
    }

    #[test]
    fn swap_details_name_rename() {
        assert_eq!(
            swap_details(
                &json!([{"indexes": ["a", "b"]}, {"indexes": ["c", "d"], "rename": true}, 1])
            ),
            json!([{"indexes": ["a", "b"], "rename": false}, {"indexes": ["c", "d"], "rename": true}, 1])
        );
        assert_eq!(swap_details(&json!({})), json!({}));
    }

    #[test]
    fn swap_pairs_are_read_leniently() {
        let body = json!([
            {"indexes": ["a", "b"]},
            {"indexes": ["c", "d"], "rename": true},
            {"indexes": ["e"]},
            {"nope": 1},
            3
        ]);
        assert_eq!(
            swap_pairs(&body),
            vec![
                ("a".to_string(), "b".to_string(), false),
                ("c".to_string(), "d".to_string(), true)
            ]
        );
        assert!(swap_pairs(&json!({"indexes": ["a", "b"]})).is_empty());
    }

    #[test]
    fn unsupported_routes_name_themselves() {
        let e = unsupported_route("POST /swap-indexes");
        assert_eq!(
            (e.status, e.code.as_str()),
            (501, "miroir_unsupported_route")
        );
        assert!(e.message.contains("POST /swap-indexes"));
        assert!(e.to_json()["link"]
            .as_str()
            .unwrap()
            .contains("miroir_unsupported_route"));
    }

    #[test]
    fn index_metadata_round_trips() {
        let m = IndexMeta {
            primary_key: Some("sku".into()),
            max_values_per_facet: Some(3),
            displayed: Some(vec!["title".into()]),
        };
        assert_eq!(IndexMeta::from_json(&m.to_json("a")), m);
        assert_eq!(m.max_values(), 3);
        let d = IndexMeta::from_json(&json!({"uid": "a", "primaryKey": null}));
        assert_eq!(d, IndexMeta::default());
        assert_eq!(d.max_values(), 100);
    }

    #[test]
    fn replies_carry_their_headers() {
        let mut reply = Reply::json(200, json!({"hits": []}));
        degraded(&mut reply, &[1, 4]);
        degraded(&mut reply, &[]);
        let r = reply_response(&reply);
        assert_eq!(r.headers()["x-miroir-degraded"], "shards=1,4");
        assert_eq!(r.headers().get_all("x-miroir-degraded").iter().count(), 1);
    }

    #[test]
    fn fleet_topology_comes_from_the_configuration() {
        let yaml = "miroir:\n  shards: 8\n  replication_factor: 2\n  nodes:\n    - { id: a, address: \"http://127.0.0.1:1\" }\n    - { id: b, address: \"http://127.0.0.1:2\" }\n";
        let config = Config::from_yaml_str(yaml, &|_| None).unwrap();
        let fleet = Fleet::new(&config).unwrap();
        assert_eq!(fleet.placement().shards(), 8);
        let view = fleet.topology_view();
        assert_eq!(
            view["nodes"][0]["shards"], 8,
            "RF=2 on two nodes: each holds all"
        );
        assert_eq!(view["nodes"][1]["health"], "healthy");
        let (g, r0) = fleet.next_rotation();
        let (_, r1) = fleet.next_rotation();
        assert_eq!((g, r1), (0, r0 + 1));
        let bad = "miroir:\n  replication_factor: 3\n  nodes:\n    - { id: a, address: \"http://127.0.0.1:1\" }\n";
        if let Ok(c) = Config::from_yaml_str(bad, &|_| None) {
            assert!(
                Fleet::new(&c).is_err(),
                "RF above the group size is refused"
            );
        }
    }
}
