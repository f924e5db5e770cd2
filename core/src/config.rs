//! Miroir's configuration: parsing and validation of the YAML file, with environment overrides.
//!
//! This module is pure: it never reads a file or the process environment itself. The caller passes the
//! file's text and a lookup function for environment variables
//! ([`Config::from_yaml_str`]), so tests can feed any environment they like.
//!
//! # Shape
//!
//! Everything lives under one top-level `miroir:` mapping. Every key has a default except `nodes`. Unknown
//! keys are errors, at every level, so a typo never silently falls back to a default.
//!
//! ```yaml
//! miroir:
//!   master_key: ""                 # what clients send (Authorization: Bearer ...)
//!   node_master_key: ""            # what Miroir sends to the Meilisearch nodes
//!   shards: 64                     # S
//!   replication_factor: 2          # RF, per replica group
//!   replica_groups: 1              # RG
//!   write_quorum: majority         # majority | one | all (per group)
//!   task_store:
//!     backend: sqlite              # sqlite | redis
//!     path: ./data/miroir.db
//!     url: ""                      # redis://127.0.0.1:6379
//!     key_prefix: "miroir:"
//!   admin:
//!     enabled: true
//!     api_key: ""
//!   idempotency: { enabled: true, ttl_secs: 86400, max_keys: 100000, in_flight_timeout_ms: 60000 }
//!   settings_sync: { drift_check_interval_ms: 30000, max_repair_retries: 5, repair_backoff_ms: 1000, verify_timeout_ms: 60000 }
//!   session: { strategy: block, max_wait_ms: 5000, max_sessions: 10000, ttl_secs: 600 }
//!   nodes:
//!     - id: meili-0
//!       address: http://127.0.0.1:7701
//!       replica_group: 0
//!   health: { interval_ms: 5000, timeout_ms: 2000, unhealthy_threshold: 3, recovery_threshold: 2 }
//!   scatter: { node_timeout_ms: 5000, unavailable_shard_policy: partial }
//!   selection: { strategy: adaptive, exploration: 0.05 }   # adaptive | round_robin | random
//!   hedging: { enabled: true, multiplier: 1.5, floor_ms: 50, max_hedges_per_query: 2 }
//!   rebalancer: { max_concurrent_migrations: 4, throttle_docs_per_sec: 0, topology_poll_ms: 1000, lease_ms: 10000 }
//!   resharding: { throttle_docs_per_sec: 5000, retention_ms: 86400000 }
//!   repair: { max_hints_per_node: 10000, replay_interval_ms: 1000 }
//!   anti_entropy: { interval_ms: 3600000, repair: true, docs_per_second: 1000, page_size: 500, buckets: 64, tombstone_grace_ms: 600000 }
//!   server:
//!     bind: 0.0.0.0
//!     port: 7700
//!     max_body_bytes: 104857600
//!     metrics_port: 9090
//!     max_header_bytes: 65536
//!     max_uri_bytes: 16384
//!     max_json_depth: 64
//!     max_documents_per_batch: 1000000
//!     request_timeout_ms: 60000
//!     header_read_timeout_ms: 10000
//!     body_read_timeout_ms: 120000
//!     max_concurrent_requests: 1024
//!     max_node_response_bytes: 268435456
//!     advertise_url: ""            # http://proxy-0:7700: other proxies forward fenced writes here
//! ```
//!
//! # Environment overrides
//!
//! Every scalar key (everything except the `nodes` list) can be overridden by an environment variable whose
//! name is `MIROIR_` followed by the key's path below `miroir`, upper-cased, with `.` replaced by `_`:
//!
//! | key | variable |
//! |---|---|
//! | `master_key` | `MIROIR_MASTER_KEY` |
//! | `node_master_key` | `MIROIR_NODE_MASTER_KEY` |
//! | `shards` | `MIROIR_SHARDS` |
//! | `replication_factor` | `MIROIR_REPLICATION_FACTOR` |
//! | `replica_groups` | `MIROIR_REPLICA_GROUPS` |
//! | `write_quorum` | `MIROIR_WRITE_QUORUM` |
//! | `task_store.backend` / `.path` / `.url` / `.key_prefix` | `MIROIR_TASK_STORE_BACKEND` / `_PATH` / `_URL` / `_KEY_PREFIX` |
//! | `admin.enabled` / `.api_key` | `MIROIR_ADMIN_ENABLED` / `MIROIR_ADMIN_API_KEY` |
//! | `idempotency.enabled` / `.ttl_secs` / `.max_keys` / `.in_flight_timeout_ms` | `MIROIR_IDEMPOTENCY_ENABLED` / `MIROIR_IDEMPOTENCY_TTL_SECS` / ... |
//! | `settings_sync.drift_check_interval_ms` / `.max_repair_retries` / `.repair_backoff_ms` / `.verify_timeout_ms` | `MIROIR_SETTINGS_SYNC_DRIFT_CHECK_INTERVAL_MS` / ... |
//! | `session.strategy` / `.max_wait_ms` / `.max_sessions` / `.ttl_secs` | `MIROIR_SESSION_STRATEGY` / `MIROIR_SESSION_MAX_WAIT_MS` / ... |
//! | `health.interval_ms` / `.timeout_ms` / `.unhealthy_threshold` / `.recovery_threshold` | `MIROIR_HEALTH_INTERVAL_MS` / ... |
//! | `scatter.node_timeout_ms` / `.unavailable_shard_policy` | `MIROIR_SCATTER_NODE_TIMEOUT_MS` / `MIROIR_SCATTER_UNAVAILABLE_SHARD_POLICY` |
//! | `selection.strategy` / `.exploration` | `MIROIR_SELECTION_STRATEGY` / `MIROIR_SELECTION_EXPLORATION` |
//! | `hedging.enabled` / `.multiplier` / `.floor_ms` / `.max_hedges_per_query` | `MIROIR_HEDGING_ENABLED` / `MIROIR_HEDGING_MULTIPLIER` / `MIROIR_HEDGING_FLOOR_MS` / `MIROIR_HEDGING_MAX_HEDGES_PER_QUERY` |
//! | `rebalancer.max_concurrent_migrations` / `.throttle_docs_per_sec` | `MIROIR_REBALANCER_MAX_CONCURRENT_MIGRATIONS` / `MIROIR_REBALANCER_THROTTLE_DOCS_PER_SEC` |
//! | `rebalancer.topology_poll_ms` / `.lease_ms` | `MIROIR_REBALANCER_TOPOLOGY_POLL_MS` / `MIROIR_REBALANCER_LEASE_MS` |
//! | `resharding.throttle_docs_per_sec` / `.retention_ms` | `MIROIR_RESHARDING_THROTTLE_DOCS_PER_SEC` / `MIROIR_RESHARDING_RETENTION_MS` |
//! | `repair.max_hints_per_node` / `.replay_interval_ms` | `MIROIR_REPAIR_MAX_HINTS_PER_NODE` / `MIROIR_REPAIR_REPLAY_INTERVAL_MS` |
//! | `anti_entropy.interval_ms` / `.repair` / `.docs_per_second` / `.page_size` / `.buckets` / `.tombstone_grace_ms` | `MIROIR_ANTI_ENTROPY_INTERVAL_MS` / `MIROIR_ANTI_ENTROPY_REPAIR` / ... |
//! | `server.bind` / `.port` / `.max_body_bytes` / `.metrics_port` | `MIROIR_SERVER_BIND` / `MIROIR_SERVER_PORT` / `MIROIR_SERVER_MAX_BODY_BYTES` / `MIROIR_SERVER_METRICS_PORT` |
//! | `server.max_header_bytes` / `.max_uri_bytes` / `.max_json_depth` / `.max_documents_per_batch` | `MIROIR_SERVER_MAX_HEADER_BYTES` / `MIROIR_SERVER_MAX_URI_BYTES` / `MIROIR_SERVER_MAX_JSON_DEPTH` / `MIROIR_SERVER_MAX_DOCUMENTS_PER_BATCH` |
//! | `server.request_timeout_ms` / `.header_read_timeout_ms` / `.body_read_timeout_ms` | `MIROIR_SERVER_REQUEST_TIMEOUT_MS` / `MIROIR_SERVER_HEADER_READ_TIMEOUT_MS` / `MIROIR_SERVER_BODY_READ_TIMEOUT_MS` |
//! | `server.max_concurrent_requests` / `.max_node_response_bytes` | `MIROIR_SERVER_MAX_CONCURRENT_REQUESTS` / `MIROIR_SERVER_MAX_NODE_RESPONSE_BYTES` |
//! | `server.advertise_url` | `MIROIR_SERVER_ADVERTISE_URL` |
//!
//! An environment value wins over the file. Integers are written in decimal, decimals as `0.05`, booleans as `true` / `false`,
//! enums by their name. Secrets (`master_key`, `node_master_key`, `admin.api_key`) should come from the
//! environment in production; they are held in [`Secret`], whose `Debug` never prints them.
//!
//! # Errors
//!
//! A [`ConfigError`] names the field path and the problem, for example
//! `miroir.health.interval_ms: expected an integer, found "abc"`,
//! `miroir.nodes[2].id: duplicate node id "meili-1"` or
//! `miroir.write_quorum: unknown value "most", expected one of majority, one, all`.
//! A value that came from the environment says so: `miroir.server.port (from MIROIR_SERVER_PORT): ...`.

use crate::topology::{GroupId, NodeId};
use serde_norway::{Mapping, Value};
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::IpAddr;

/// A configuration error: the dotted path of the offending field and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Field path, e.g. `miroir.nodes[2].id`, with ` (from MIROIR_X)` appended when the value came from
    /// the environment. Empty for errors about the document as a whole (YAML syntax).
    pub path: String,
    /// What is wrong, e.g. `expected an integer, found "abc"`.
    pub problem: String,
}

impl ConfigError {
    fn new(path: impl Into<String>, problem: impl Into<String>) -> Self {
        ConfigError {
            path: path.into(),
            problem: problem.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.problem)
        } else {
            write!(f, "{}: {}", self.path, self.problem)
        }
    }
}

impl std::error::Error for ConfigError {}

/// A secret string (API key). `Debug` and `Display` print `[redacted]` (or `""` when empty) so a secret
/// never reaches a log line by accident; [`Secret::expose`] gives the value to the code that needs it.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }
    /// The secret itself. Never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
    /// True when no secret is configured.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            f.write_str("\"\"")
        } else {
            f.write_str("[redacted]")
        }
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// The whole configuration (the `miroir:` mapping).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// `master_key` (default `""`): the key clients send as `Authorization: Bearer <key>`. Empty means
    /// the proxy runs without client authentication, as Meilisearch does without a master key.
    pub master_key: Secret,
    /// `node_master_key` (default `""`): the key Miroir sends to the Meilisearch nodes.
    pub node_master_key: Secret,
    /// `shards` (default 64, > 0): S, the number of shards of every index, fixed at index creation.
    /// Choose about 8 × the largest number of nodes a replica group will ever have.
    pub shards: u32,
    /// `replication_factor` (default 2, > 0): RF, the copies of each shard inside one replica group.
    pub replication_factor: u32,
    /// `replica_groups` (default 1, > 0): RG, independent query pools; every write goes to all of them.
    pub replica_groups: u32,
    /// `write_quorum` (default `majority`): how many of a shard's RF copies in a group must acknowledge.
    pub write_quorum: WriteQuorumSetting,
    /// `task_store`: where Miroir keeps its task registry and metadata.
    pub task_store: TaskStoreConfig,
    /// `admin`: the `/_miroir/*` admin API.
    pub admin: AdminConfig,
    /// `idempotency`: deduplication of client retries that carry an `Idempotency-Key` header.
    pub idempotency: IdempotencyConfig,
    /// `settings_sync`: two-phase settings changes, read-back verification and drift repair.
    pub settings_sync: SettingsSyncConfig,
    /// `session`: read-your-writes for clients sending `X-Miroir-Session`.
    pub session: SessionConfig,
    /// `nodes` (required, at least one): the Meilisearch nodes. Ids are stable and never reused.
    pub nodes: Vec<NodeConfig>,
    /// `health`: node health checking.
    pub health: HealthConfig,
    /// `scatter`: fan-out of reads to the nodes.
    pub scatter: ScatterConfig,
    /// `selection`: which replica answers a read.
    pub selection: SelectionConfig,
    /// `hedging`: duplicate reads for slow replicas.
    pub hedging: HedgingConfig,
    /// `rebalancer`: shard migrations when the topology changes.
    pub rebalancer: RebalancerConfig,
    /// `resharding`: online changes of an index's number of shards.
    pub resharding: ReshardingConfig,
    /// `repair`: hinted handoff of the writes a replica missed.
    pub repair: RepairConfig,
    /// `anti_entropy`: the scheduled passes that compare every replica of every shard and repair them.
    pub anti_entropy: AntiEntropyConfig,
    /// `server`: the HTTP listener.
    pub server: ServerConfig,
}

/// `write_quorum`: how many copies of a shard inside one replica group must acknowledge a write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WriteQuorumSetting {
    /// `majority`: floor(RF / 2) + 1 copies.
    Majority,
    /// `one`: a single copy.
    One,
    /// `all`: every copy.
    All,
}

/// `task_store.backend`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TaskStoreBackend {
    /// `sqlite`: an embedded SQLite file at `task_store.path` (single proxy).
    Sqlite,
    /// `redis`: a Redis server at `task_store.url` (required when more than one proxy runs).
    Redis,
}

/// `task_store`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskStoreConfig {
    /// `backend` (default `sqlite`): `sqlite` or `redis`.
    pub backend: TaskStoreBackend,
    /// `path` (default `./data/miroir.db`): the SQLite file; must not be empty with the sqlite backend.
    pub path: String,
    /// `url` (default `""`): the Redis URL (`redis://` or `rediss://`); required with the redis backend.
    pub url: String,
    /// `key_prefix` (default `miroir:`): the prefix of every Redis key Miroir writes.
    pub key_prefix: String,
}

/// `admin`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminConfig {
    /// `enabled` (default `true`): whether `/_miroir/*` is served at all.
    pub enabled: bool,
    /// `api_key` (default `""`): the key guarding `/_miroir/*` (`Authorization: Bearer <api_key>`).
    /// While it is empty the admin API refuses every request.
    pub api_key: Secret,
}

/// `idempotency`: how long and how many `Idempotency-Key`s the task store remembers (see
/// [`crate::idempotency`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyConfig {
    /// `enabled` (default true): when false, the `Idempotency-Key` header is ignored.
    pub enabled: bool,
    /// `ttl_secs` (default 86400 = one day, > 0): how long a key is remembered after its first request.
    /// A retry after that is treated as a new request.
    pub ttl_secs: u64,
    /// `max_keys` (default 100000, > 0): the most keys kept; beyond it the keys closest to expiry are
    /// forgotten first.
    pub max_keys: u64,
    /// `in_flight_timeout_ms` (default 60000, > 0): how long a key whose first request has not answered
    /// yet refuses retries with 409 `miroir_idempotency_key_in_flight`; after that (a proxy died while
    /// serving it) a retry takes the key over, unless the first request already registered its task.
    pub in_flight_timeout_ms: u64,
}

impl Default for IdempotencyConfig {
    fn default() -> Self {
        IdempotencyConfig {
            enabled: true,
            ttl_secs: 86_400,
            max_keys: 100_000,
            in_flight_timeout_ms: 60_000,
        }
    }
}

/// `settings_sync`: how the nodes' settings are verified and repaired (see [`crate::settings_sync`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingsSyncConfig {
    /// `drift_check_interval_ms` (default 30000, 0 = off): how often every node's settings are read and
    /// compared with the committed ones (changes made behind Miroir's back are repaired).
    pub drift_check_interval_ms: u64,
    /// `max_repair_retries` (default 5, > 0): repairs of diverging nodes before the index's writes are
    /// frozen (503 `miroir_settings_frozen`).
    pub max_repair_retries: u32,
    /// `repair_backoff_ms` (default 1000, > 0): the wait before reading back after the first repair;
    /// doubled at every further attempt.
    pub repair_backoff_ms: u64,
    /// `verify_timeout_ms` (default 60000, > 0): the longest wait for a settings write's node tasks before
    /// its read-back.
    pub verify_timeout_ms: u64,
}

impl Default for SettingsSyncConfig {
    fn default() -> Self {
        SettingsSyncConfig {
            drift_check_interval_ms: 30_000,
            max_repair_retries: 5,
            repair_backoff_ms: 1_000,
            verify_timeout_ms: 60_000,
        }
    }
}

/// `session.strategy`: how a read of a session sees the session's last write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SessionStrategy {
    /// `block`: read from a group that acknowledged the write, after its node tasks there succeeded.
    Block,
    /// `route_pin`: read from a group that acknowledged the write, without waiting.
    RoutePin,
}

/// `session`: read-your-writes sessions (see [`crate::session`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionConfig {
    /// `strategy` (default `block`): `block` or `route_pin`.
    pub strategy: SessionStrategy,
    /// `max_wait_ms` (default 5000): the longest a `block` read waits for the session's write; then it is
    /// served anyway.
    pub max_wait_ms: u64,
    /// `max_sessions` (default 10000, > 0): sessions remembered per proxy (least recently used dropped).
    pub max_sessions: u64,
    /// `ttl_secs` (default 600, > 0): a session unused this long is forgotten.
    pub ttl_secs: u64,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            strategy: SessionStrategy::Block,
            max_wait_ms: 5_000,
            max_sessions: 10_000,
            ttl_secs: 600,
        }
    }
}

const SESSION_STRATEGIES: &[(&str, SessionStrategy)] = &[
    ("block", SessionStrategy::Block),
    ("route_pin", SessionStrategy::RoutePin),
];

/// One entry of `nodes`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeConfig {
    /// `id` (required): non-empty, unique, made of ASCII letters, digits, `-`, `_` and `.`.
    pub id: NodeId,
    /// `address` (required): `http://host[:port]` or `https://host[:port]`, without path, query or
    /// credentials. A trailing `/` is removed.
    pub address: String,
    /// `replica_group` (default 0): the group the node serves in, `0..replica_groups`.
    pub replica_group: GroupId,
}

/// `health`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthConfig {
    /// `interval_ms` (default 5000, > 0): time between two health checks of a node.
    pub interval_ms: u64,
    /// `timeout_ms` (default 2000, > 0): a health check slower than this fails.
    pub timeout_ms: u64,
    /// `unhealthy_threshold` (default 3, > 0): consecutive failures before a node is marked failed.
    pub unhealthy_threshold: u32,
    /// `recovery_threshold` (default 2, > 0): consecutive successes before it serves again.
    pub recovery_threshold: u32,
}

/// `scatter.unavailable_shard_policy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UnavailableShardPolicy {
    /// `partial`: answer with the shards that are available and the `X-Miroir-Degraded` header.
    Partial,
    /// `error`: answer 503 `miroir_shard_unavailable`.
    Error,
}

/// `scatter`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScatterConfig {
    /// `node_timeout_ms` (default 5000, > 0): per-node timeout of a scattered read.
    pub node_timeout_ms: u64,
    /// `unavailable_shard_policy` (default `partial`): `partial` or `error`.
    pub unavailable_shard_policy: UnavailableShardPolicy,
}

/// `selection`: how reads choose among the replicas of a shard (see [`crate::select`]).
#[derive(Debug, Clone, PartialEq)]
pub struct SelectionConfig {
    /// `strategy` (default `adaptive`): `adaptive`, `round_robin` or `random`.
    pub strategy: crate::select::Strategy,
    /// `exploration` (default 0.05, between 0 and 1): with `adaptive`, the share of queries that try the
    /// replicas in a random order, so a replica that became fast again is noticed.
    pub exploration: f64,
}

// Validation keeps every float finite, so equality is reflexive.
impl Eq for SelectionConfig {}

/// `hedging`: a read request still unanswered after its node's rolling p95 × `multiplier` (at least
/// `floor_ms`) is sent again to another replica, and the first answer wins. Writes are never hedged.
#[derive(Debug, Clone, PartialEq)]
pub struct HedgingConfig {
    /// `enabled` (default true).
    pub enabled: bool,
    /// `multiplier` (default 1.5, > 0): of the node's rolling p95 latency (capped by the fleet's median p95).
    pub multiplier: f64,
    /// `floor_ms` (default 50): the shortest delay before a hedge.
    pub floor_ms: u64,
    /// `max_hedges_per_query` (default 2): hedge requests one read may send.
    pub max_hedges_per_query: u32,
}

// Validation keeps every float finite, so equality is reflexive.
impl Eq for HedgingConfig {}

/// `rebalancer`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RebalancerConfig {
    /// `max_concurrent_migrations` (default 4, > 0).
    pub max_concurrent_migrations: u32,
    /// `throttle_docs_per_sec` (default 0 = unlimited).
    pub throttle_docs_per_sec: u64,
    /// `topology_poll_ms` (default 1000, > 0): how often a proxy looks in the task store for a newer
    /// topology or a fleet change to run.
    pub topology_poll_ms: u64,
    /// `lease_ms` (default 10000, > 0): how long the proxy running a fleet change may go without renewing
    /// its claim before another proxy (or its own restart) takes the change over.
    pub lease_ms: u64,
}

/// `resharding`: online changes of one index's S (see `reshard`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReshardingConfig {
    /// `throttle_docs_per_sec` (default 5000; 0 = unlimited): the backfill's copy rate when the request
    /// names none.
    pub throttle_docs_per_sec: u64,
    /// `retention_ms` (default 86400000 = 24 h, > 0): how long the old index is kept (and still written)
    /// after the swap, so a rollback loses nothing.
    pub retention_ms: u64,
}

impl Default for ReshardingConfig {
    fn default() -> Self {
        ReshardingConfig {
            throttle_docs_per_sec: 5_000,
            retention_ms: 24 * 3_600 * 1_000,
        }
    }
}

/// `repair`: hinted handoff (see `hints`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepairConfig {
    /// `max_hints_per_node` (default 10000, > 0): the most hints kept per (index, node); beyond it the
    /// node's queue is dropped and the pair is marked for anti-entropy.
    pub max_hints_per_node: u64,
    /// `replay_interval_ms` (default 1000, > 0): how often hints are replayed to nodes that answer again.
    pub replay_interval_ms: u64,
}

impl Default for RepairConfig {
    fn default() -> Self {
        RepairConfig {
            max_hints_per_node: 10_000,
            replay_interval_ms: 1_000,
        }
    }
}

/// `anti_entropy`: scheduled anti-entropy passes (see `entropy`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AntiEntropyConfig {
    /// `interval_ms` (default 3600000 = hourly, 0 = never scheduled: only `POST /_miroir/verify`): the pause
    /// between two scheduled passes over every index.
    pub interval_ms: u64,
    /// `repair` (default true): scheduled passes repair the differences they find; false = report only.
    pub repair: bool,
    /// `docs_per_second` (default 1000, 0 = unthrottled): the most documents a pass reads per second.
    pub docs_per_second: u32,
    /// `page_size` (default 500, > 0): documents per scan page.
    pub page_size: u32,
    /// `buckets` (default 64, > 0): digest buckets per shard.
    pub buckets: u32,
    /// `tombstone_grace_ms` (default 600000, > 0): how long a tombstone is kept at least, for writes older
    /// than the delete still in flight; older tombstones go once a clean pass confirmed them.
    pub tombstone_grace_ms: u64,
}

impl Default for AntiEntropyConfig {
    fn default() -> Self {
        AntiEntropyConfig {
            interval_ms: 3_600_000,
            repair: true,
            docs_per_second: 1_000,
            page_size: 500,
            buckets: 64,
            tombstone_grace_ms: 600_000,
        }
    }
}

/// `server`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    /// `bind` (default `0.0.0.0`): the IP address to listen on (IPv4 or IPv6 literal).
    pub bind: String,
    /// `port` (default 7700, 1..=65535): the port of the Meilisearch-compatible API.
    pub port: u16,
    /// `max_body_bytes` (default 104857600 = 100 MiB, as Meilisearch, > 0): larger request bodies are
    /// refused with 413 `payload_too_large`.
    pub max_body_bytes: u64,
    /// `metrics_port` (default 9090, 0 = off): a second listener serving only `/metrics` (and `/health`).
    /// `/metrics` is always served on `port` too. Must differ from `port`.
    pub metrics_port: u16,
    /// `max_header_bytes` (default 65536 = 64 KiB, > 0): the request headers (names plus values) may
    /// take at most this many bytes, else 431 `miroir_headers_too_large`.
    pub max_header_bytes: u64,
    /// `max_uri_bytes` (default 16384 = 16 KiB, 1..=65534): the request target (path and query) may
    /// take at most this many bytes, else 414 `miroir_uri_too_long`.
    pub max_uri_bytes: u64,
    /// `max_json_depth` (default 64, 1..=128): JSON bodies may nest arrays and objects at most this
    /// deep, else 400 `miroir_json_too_deep`. Checked by a byte scan before any parsing.
    pub max_json_depth: u32,
    /// `max_documents_per_batch` (default 1000000, > 0): a documents addition or a delete-by-ids batch
    /// may hold at most this many entries, else 413 `miroir_too_many_documents` and nothing is written.
    pub max_documents_per_batch: u64,
    /// `request_timeout_ms` (default 60000, > 0): a request not answered within this time gets 504
    /// `miroir_request_timeout`. A write already sent to the nodes keeps running and stays a task.
    pub request_timeout_ms: u64,
    /// `header_read_timeout_ms` (default 10000, > 0): a client must send its whole request head within
    /// this time, else the connection is closed (slow clients).
    pub header_read_timeout_ms: u64,
    /// `body_read_timeout_ms` (default 120000, > 0): a client must send its whole body within this
    /// time, else 408 `miroir_body_timeout` (slow clients).
    pub body_read_timeout_ms: u64,
    /// `max_concurrent_requests` (default 1024, > 0): requests served at once; one more is refused at
    /// once with 503 `miroir_overloaded` and `Retry-After` (never queued). `/health` and `/metrics` are
    /// exempt.
    pub max_concurrent_requests: u32,
    /// `max_node_response_bytes` (default 268435456 = 256 MiB, > 0): a node answer larger than this is
    /// a bad node response (the node counts as failed for that request).
    pub max_node_response_bytes: u64,
    /// `advertise_url` (default none; `http(s)://host[:port]`, no path): how the other proxies on the
    /// same task store reach this one. While this proxy runs a fleet change or a resharding, they
    /// forward the client writes it must fence to this URL instead of refusing them (503).
    pub advertise_url: Option<String>,
}

impl Default for TaskStoreConfig {
    fn default() -> Self {
        TaskStoreConfig {
            backend: TaskStoreBackend::Sqlite,
            path: "./data/miroir.db".to_string(),
            url: String::new(),
            key_prefix: "miroir:".to_string(),
        }
    }
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            enabled: true,
            api_key: Secret::default(),
        }
    }
}

impl Default for HealthConfig {
    fn default() -> Self {
        HealthConfig {
            interval_ms: 5000,
            timeout_ms: 2000,
            unhealthy_threshold: 3,
            recovery_threshold: 2,
        }
    }
}

impl Default for ScatterConfig {
    fn default() -> Self {
        ScatterConfig {
            node_timeout_ms: 5000,
            unavailable_shard_policy: UnavailableShardPolicy::Partial,
        }
    }
}

impl Default for SelectionConfig {
    fn default() -> Self {
        SelectionConfig {
            strategy: crate::select::Strategy::Adaptive,
            exploration: 0.05,
        }
    }
}

impl Default for HedgingConfig {
    fn default() -> Self {
        HedgingConfig {
            enabled: true,
            multiplier: 1.5,
            floor_ms: 50,
            max_hedges_per_query: 2,
        }
    }
}

impl Default for RebalancerConfig {
    fn default() -> Self {
        RebalancerConfig {
            max_concurrent_migrations: 4,
            throttle_docs_per_sec: 0,
            topology_poll_ms: 1_000,
            lease_ms: 10_000,
        }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            bind: "0.0.0.0".to_string(),
            port: 7700,
            max_body_bytes: 104_857_600,
            metrics_port: 9090,
            max_header_bytes: 65_536,
            max_uri_bytes: 16_384,
            max_json_depth: 64,
            max_documents_per_batch: 1_000_000,
            request_timeout_ms: 60_000,
            header_read_timeout_ms: 10_000,
            body_read_timeout_ms: 120_000,
            max_concurrent_requests: 1024,
            max_node_response_bytes: 268_435_456,
            advertise_url: None,
        }
    }
}

const WRITE_QUORUMS: &[(&str, WriteQuorumSetting)] = &[
    ("majority", WriteQuorumSetting::Majority),
    ("one", WriteQuorumSetting::One),
    ("all", WriteQuorumSetting::All),
];
const BACKENDS: &[(&str, TaskStoreBackend)] = &[
    ("sqlite", TaskStoreBackend::Sqlite),
    ("redis", TaskStoreBackend::Redis),
];
const STRATEGIES: &[(&str, crate::select::Strategy)] = &[
    ("adaptive", crate::select::Strategy::Adaptive),
    ("round_robin", crate::select::Strategy::RoundRobin),
    ("random", crate::select::Strategy::Random),
];
const SHARD_POLICIES: &[(&str, UnavailableShardPolicy)] = &[
    ("partial", UnavailableShardPolicy::Partial),
    ("error", UnavailableShardPolicy::Error),
];

impl Config {
    /// Parses and validates a configuration file's text. `env` looks up environment variables (pass
    /// `&|k| std::env::var(k).ok()` in the binary); see the module documentation for the overrides.
    pub fn from_yaml_str(
        text: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let doc: Value = serde_norway::from_str(text)
            .map_err(|e| ConfigError::new("", format!("invalid YAML: {e}")))?;
        let empty = Mapping::new();
        let root_map = match &doc {
            Value::Null => &empty,
            Value::Mapping(m) => m,
            other => {
                return Err(ConfigError::new(
                    "",
                    format!(
                        "expected a mapping with a `miroir` key at the top of the file, found {}",
                        describe(other)
                    ),
                ))
            }
        };
        let mut root = Section::new(String::new(), Some(root_map), env, false)?;
        let miroir_value = root.take("miroir");
        root.finish()?;
        let mut m = match miroir_value {
            None => return Err(ConfigError::new("miroir", "missing required section")),
            Some(v) => Section::from_value("miroir".to_string(), v, env, true)?,
        };

        let master_key = Secret(m.string("master_key", "")?);
        let node_master_key = Secret(m.string("node_master_key", "")?);
        let shards = m.u32("shards", 64)?;
        let replication_factor = m.u32("replication_factor", 2)?;
        let replica_groups = m.u32("replica_groups", 1)?;
        let write_quorum = m.choice("write_quorum", WriteQuorumSetting::Majority, WRITE_QUORUMS)?;

        let d = TaskStoreConfig::default();
        let mut s = m.section("task_store")?;
        let task_store = TaskStoreConfig {
            backend: s.choice("backend", d.backend, BACKENDS)?,
            path: s.string("path", &d.path)?,
            url: s.string("url", &d.url)?,
            key_prefix: s.string("key_prefix", &d.key_prefix)?,
        };
        s.finish()?;

        let d = AdminConfig::default();
        let mut s = m.section("admin")?;
        let admin = AdminConfig {
            enabled: s.bool("enabled", d.enabled)?,
            api_key: Secret(s.string("api_key", "")?),
        };
        s.finish()?;

        let d = IdempotencyConfig::default();
        let mut s = m.section("idempotency")?;
        let idempotency = IdempotencyConfig {
            enabled: s.bool("enabled", d.enabled)?,
            ttl_secs: s.u64("ttl_secs", d.ttl_secs)?,
            max_keys: s.u64("max_keys", d.max_keys)?,
            in_flight_timeout_ms: s.u64("in_flight_timeout_ms", d.in_flight_timeout_ms)?,
        };
        s.finish()?;

        let d = SettingsSyncConfig::default();
        let mut s = m.section("settings_sync")?;
        let settings_sync = SettingsSyncConfig {
            drift_check_interval_ms: s.u64("drift_check_interval_ms", d.drift_check_interval_ms)?,
            max_repair_retries: s.u32("max_repair_retries", d.max_repair_retries)?,
            repair_backoff_ms: s.u64("repair_backoff_ms", d.repair_backoff_ms)?,
            verify_timeout_ms: s.u64("verify_timeout_ms", d.verify_timeout_ms)?,
        };
        s.finish()?;

        let d = SessionConfig::default();
        let mut s = m.section("session")?;
        let session = SessionConfig {
            strategy: s.choice("strategy", d.strategy, SESSION_STRATEGIES)?,
            max_wait_ms: s.u64("max_wait_ms", d.max_wait_ms)?,
            max_sessions: s.u64("max_sessions", d.max_sessions)?,
            ttl_secs: s.u64("ttl_secs", d.ttl_secs)?,
        };
        s.finish()?;

        let nodes = m.nodes()?;

        let d = HealthConfig::default();
        let mut s = m.section("health")?;
        let health = HealthConfig {
            interval_ms: s.u64("interval_ms", d.interval_ms)?,
            timeout_ms: s.u64("timeout_ms", d.timeout_ms)?,
            unhealthy_threshold: s.u32("unhealthy_threshold", d.unhealthy_threshold)?,
            recovery_threshold: s.u32("recovery_threshold", d.recovery_threshold)?,
        };
        s.finish()?;

        let d = ScatterConfig::default();
        let mut s = m.section("scatter")?;
        let scatter = ScatterConfig {
            node_timeout_ms: s.u64("node_timeout_ms", d.node_timeout_ms)?,
            unavailable_shard_policy: s.choice(
                "unavailable_shard_policy",
                d.unavailable_shard_policy,
                SHARD_POLICIES,
            )?,
        };
        s.finish()?;

        let d = SelectionConfig::default();
        let mut s = m.section("selection")?;
        let selection = SelectionConfig {
            strategy: s.choice("strategy", d.strategy, STRATEGIES)?,
            exploration: s.float("exploration", d.exploration)?,
        };
        s.finish()?;

        let d = HedgingConfig::default();
        let mut s = m.section("hedging")?;
        let hedging = HedgingConfig {
            enabled: s.bool("enabled", d.enabled)?,
            multiplier: s.float("multiplier", d.multiplier)?,
            floor_ms: s.u64("floor_ms", d.floor_ms)?,
            max_hedges_per_query: s.u32("max_hedges_per_query", d.max_hedges_per_query)?,
        };
        s.finish()?;

        let d = RebalancerConfig::default();
        let mut s = m.section("rebalancer")?;
        let rebalancer = RebalancerConfig {
            max_concurrent_migrations: s
                .u32("max_concurrent_migrations", d.max_concurrent_migrations)?,
            throttle_docs_per_sec: s.u64("throttle_docs_per_sec", d.throttle_docs_per_sec)?,
            topology_poll_ms: s.u64("topology_poll_ms", d.topology_poll_ms)?,
            lease_ms: s.u64("lease_ms", d.lease_ms)?,
        };
        s.finish()?;

        let d = ReshardingConfig::default();
        let mut s = m.section("resharding")?;
        let resharding = ReshardingConfig {
            throttle_docs_per_sec: s.u64("throttle_docs_per_sec", d.throttle_docs_per_sec)?,
            retention_ms: s.u64("retention_ms", d.retention_ms)?,
        };
        s.finish()?;

        let d = RepairConfig::default();
        let mut s = m.section("repair")?;
        let repair = RepairConfig {
            max_hints_per_node: s.u64("max_hints_per_node", d.max_hints_per_node)?,
            replay_interval_ms: s.u64("replay_interval_ms", d.replay_interval_ms)?,
        };
        s.finish()?;

        let d = AntiEntropyConfig::default();
        let mut s = m.section("anti_entropy")?;
        let anti_entropy = AntiEntropyConfig {
            interval_ms: s.u64("interval_ms", d.interval_ms)?,
            repair: s.bool("repair", d.repair)?,
            docs_per_second: s.u32("docs_per_second", d.docs_per_second)?,
            page_size: s.u32("page_size", d.page_size)?,
            buckets: s.u32("buckets", d.buckets)?,
            tombstone_grace_ms: s.u64("tombstone_grace_ms", d.tombstone_grace_ms)?,
        };
        s.finish()?;

        let d = ServerConfig::default();
        let mut s = m.section("server")?;
        let server = ServerConfig {
            bind: s.string("bind", &d.bind)?,
            port: s.u16("port", d.port)?,
            max_body_bytes: s.u64("max_body_bytes", d.max_body_bytes)?,
            metrics_port: s.u16("metrics_port", d.metrics_port)?,
            max_header_bytes: s.u64("max_header_bytes", d.max_header_bytes)?,
            max_uri_bytes: s.u64("max_uri_bytes", d.max_uri_bytes)?,
            max_json_depth: s.u32("max_json_depth", d.max_json_depth)?,
            max_documents_per_batch: s.u64("max_documents_per_batch", d.max_documents_per_batch)?,
            request_timeout_ms: s.u64("request_timeout_ms", d.request_timeout_ms)?,
            header_read_timeout_ms: s.u64("header_read_timeout_ms", d.header_read_timeout_ms)?,
            body_read_timeout_ms: s.u64("body_read_timeout_ms", d.body_read_timeout_ms)?,
            max_concurrent_requests: s.u32("max_concurrent_requests", d.max_concurrent_requests)?,
            max_node_response_bytes: s.u64("max_node_response_bytes", d.max_node_response_bytes)?,
            advertise_url: {
                let url = s.string("advertise_url", "")?;
                let url = url.strip_suffix('/').unwrap_or(&url).to_string();
                (!url.is_empty()).then_some(url)
            },
        };
        s.finish()?;
        m.finish()?;

        let config = Config {
            master_key,
            node_master_key,
            shards,
            replication_factor,
            replica_groups,
            write_quorum,
            task_store,
            admin,
            idempotency,
            settings_sync,
            session,
            nodes,
            health,
            scatter,
            selection,
            hedging,
            rebalancer,
            resharding,
            repair,
            anti_entropy,
            server,
        };
        config.validate()?;
        Ok(config)
    }

    /// Checks the cross-field rules: positive counts and thresholds, unique well-formed node ids and
    /// addresses, every group in `0..replica_groups` holding at least `replication_factor` nodes, a Redis
    /// URL with the redis backend, valid ports and bind address. Called by [`Config::from_yaml_str`];
    /// public so code that edits a `Config` can re-check it.
    pub fn validate(&self) -> Result<(), ConfigError> {
        positive("miroir.shards", self.shards as u64)?;
        positive("miroir.replication_factor", self.replication_factor as u64)?;
        positive("miroir.replica_groups", self.replica_groups as u64)?;
        positive("miroir.health.interval_ms", self.health.interval_ms)?;
        positive("miroir.health.timeout_ms", self.health.timeout_ms)?;
        positive(
            "miroir.health.unhealthy_threshold",
            self.health.unhealthy_threshold as u64,
        )?;
        positive(
            "miroir.health.recovery_threshold",
            self.health.recovery_threshold as u64,
        )?;
        positive(
            "miroir.scatter.node_timeout_ms",
            self.scatter.node_timeout_ms,
        )?;
        if !(0.0..=1.0).contains(&self.selection.exploration) {
            return Err(ConfigError::new(
                "miroir.selection.exploration",
                format!(
                    "expected a number between 0 and 1, found {}",
                    self.selection.exploration
                ),
            ));
        }
        if !(self.hedging.multiplier.is_finite() && self.hedging.multiplier > 0.0) {
            return Err(ConfigError::new(
                "miroir.hedging.multiplier",
                format!(
                    "expected a positive number, found {}",
                    self.hedging.multiplier
                ),
            ));
        }
        positive(
            "miroir.rebalancer.max_concurrent_migrations",
            self.rebalancer.max_concurrent_migrations as u64,
        )?;
        positive(
            "miroir.rebalancer.topology_poll_ms",
            self.rebalancer.topology_poll_ms,
        )?;
        positive("miroir.rebalancer.lease_ms", self.rebalancer.lease_ms)?;
        positive(
            "miroir.resharding.retention_ms",
            self.resharding.retention_ms,
        )?;
        positive(
            "miroir.repair.max_hints_per_node",
            self.repair.max_hints_per_node,
        )?;
        positive(
            "miroir.repair.replay_interval_ms",
            self.repair.replay_interval_ms,
        )?;
        let ae = &self.anti_entropy;
        positive("miroir.anti_entropy.page_size", u64::from(ae.page_size))?;
        positive("miroir.anti_entropy.buckets", u64::from(ae.buckets))?;
        positive(
            "miroir.anti_entropy.tombstone_grace_ms",
            ae.tombstone_grace_ms,
        )?;
        positive("miroir.server.max_body_bytes", self.server.max_body_bytes)?;
        let sv = &self.server;
        positive("miroir.server.max_header_bytes", sv.max_header_bytes)?;
        positive("miroir.server.max_uri_bytes", sv.max_uri_bytes)?;
        positive("miroir.server.max_json_depth", sv.max_json_depth as u64)?;
        positive(
            "miroir.server.max_documents_per_batch",
            sv.max_documents_per_batch,
        )?;
        positive("miroir.server.request_timeout_ms", sv.request_timeout_ms)?;
        positive(
            "miroir.server.header_read_timeout_ms",
            sv.header_read_timeout_ms,
        )?;
        positive(
            "miroir.server.body_read_timeout_ms",
            sv.body_read_timeout_ms,
        )?;
        positive(
            "miroir.server.max_concurrent_requests",
            sv.max_concurrent_requests as u64,
        )?;
        positive(
            "miroir.server.max_node_response_bytes",
            sv.max_node_response_bytes,
        )?;
        if let Some(url) = &sv.advertise_url {
            check_node_address(url)
                .map_err(|p| ConfigError::new("miroir.server.advertise_url", p))?;
        }
        if sv.max_uri_bytes > MAX_URI_BYTES {
            return Err(ConfigError::new(
                "miroir.server.max_uri_bytes",
                format!(
                    "must be at most {MAX_URI_BYTES} (the HTTP layer refuses longer request targets), found {}",
                    sv.max_uri_bytes
                ),
            ));
        }
        if sv.max_json_depth > MAX_JSON_DEPTH {
            return Err(ConfigError::new(
                "miroir.server.max_json_depth",
                format!(
                    "must be at most {MAX_JSON_DEPTH} (deeper JSON cannot be parsed by the nodes either), found {}",
                    sv.max_json_depth
                ),
            ));
        }
        positive("miroir.idempotency.ttl_secs", self.idempotency.ttl_secs)?;
        positive("miroir.idempotency.max_keys", self.idempotency.max_keys)?;
        positive(
            "miroir.idempotency.in_flight_timeout_ms",
            self.idempotency.in_flight_timeout_ms,
        )?;
        positive(
            "miroir.settings_sync.max_repair_retries",
            u64::from(self.settings_sync.max_repair_retries),
        )?;
        positive(
            "miroir.settings_sync.repair_backoff_ms",
            self.settings_sync.repair_backoff_ms,
        )?;
        positive(
            "miroir.settings_sync.verify_timeout_ms",
            self.settings_sync.verify_timeout_ms,
        )?;
        positive("miroir.session.max_sessions", self.session.max_sessions)?;
        positive("miroir.session.ttl_secs", self.session.ttl_secs)?;

        match self.task_store.backend {
            TaskStoreBackend::Sqlite => {
                if self.task_store.path.is_empty() {
                    return Err(ConfigError::new(
                        "miroir.task_store.path",
                        "must not be empty when backend is sqlite",
                    ));
                }
            }
            TaskStoreBackend::Redis => {
                let url = &self.task_store.url;
                if url.is_empty() {
                    return Err(ConfigError::new(
                        "miroir.task_store.url",
                        "required when backend is redis",
                    ));
                }
                let rest = url
                    .strip_prefix("redis://")
                    .or_else(|| url.strip_prefix("rediss://"));
                if rest.is_none_or(str::is_empty) {
                    return Err(ConfigError::new(
                        "miroir.task_store.url",
                        format!("expected a redis:// or rediss:// URL, found {url:?}"),
                    ));
                }
            }
        }

        if self.server.port == 0 {
            return Err(ConfigError::new(
                "miroir.server.port",
                "expected a port between 1 and 65535, found 0",
            ));
        }
        if self.server.metrics_port != 0 && self.server.metrics_port == self.server.port {
            return Err(ConfigError::new(
                "miroir.server.metrics_port",
                format!(
                    "must differ from miroir.server.port ({}); use 0 to serve /metrics only on the main port",
                    self.server.port
                ),
            ));
        }
        if self.server.bind.parse::<IpAddr>().is_err() {
            return Err(ConfigError::new(
                "miroir.server.bind",
                format!(
                    "expected an IP address such as 0.0.0.0 or ::, found {:?}",
                    self.server.bind
                ),
            ));
        }

        if self.nodes.is_empty() {
            return Err(ConfigError::new(
                "miroir.nodes",
                "must list at least one node",
            ));
        }
        let mut ids: HashMap<&str, usize> = HashMap::new();
        let mut addresses: HashMap<&str, &str> = HashMap::new();
        let mut per_group: BTreeMap<GroupId, u32> = BTreeMap::new();
        for (i, node) in self.nodes.iter().enumerate() {
            let id = node.id.as_str();
            let path = format!("miroir.nodes[{i}]");
            if id.is_empty() {
                return Err(ConfigError::new(format!("{path}.id"), "must not be empty"));
            }
            if let Some(bad) = id
                .chars()
                .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
            {
                return Err(ConfigError::new(
                    format!("{path}.id"),
                    format!("invalid character {bad:?} in node id {id:?}: use ASCII letters, digits, '-', '_' and '.'"),
                ));
            }
            if ids.insert(id, i).is_some() {
                return Err(ConfigError::new(
                    format!("{path}.id"),
                    format!("duplicate node id {id:?}"),
                ));
            }
            check_node_address(&node.address)
                .map_err(|p| ConfigError::new(format!("{path}.address"), p))?;
            if let Some(other) = addresses.insert(node.address.as_str(), id) {
                return Err(ConfigError::new(
                    format!("{path}.address"),
                    format!(
                        "duplicate address {:?} (also used by node {other:?})",
                        node.address
                    ),
                ));
            }
            if node.replica_group >= self.replica_groups {
                return Err(ConfigError::new(
                    format!("{path}.replica_group"),
                    format!(
                        "group {} does not exist: replica_groups is {}, so groups are 0..={}",
                        node.replica_group,
                        self.replica_groups,
                        self.replica_groups - 1
                    ),
                ));
            }
            *per_group.entry(node.replica_group).or_default() += 1;
        }
        for group in 0..self.replica_groups {
            let count = per_group.get(&group).copied().unwrap_or(0);
            if count < self.replication_factor {
                return Err(ConfigError::new(
                    "miroir.nodes",
                    format!(
                        "replica group {group} has {count} node(s), fewer than replication_factor {}",
                        self.replication_factor
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The nodes of one replica group, in file order.
    pub fn group_nodes(&self, group: GroupId) -> impl Iterator<Item = &NodeConfig> {
        self.nodes.iter().filter(move |n| n.replica_group == group)
    }
}

/// The largest accepted `server.max_uri_bytes`: hyper refuses longer request targets itself.
pub const MAX_URI_BYTES: u64 = 65_534;

/// The largest accepted `server.max_json_depth`: serde_json (and so every Meilisearch node) stops at
/// this recursion depth.
pub const MAX_JSON_DEPTH: u32 = 128;

fn positive(path: &str, value: u64) -> Result<(), ConfigError> {
    if value == 0 {
        Err(ConfigError::new(path, "must be greater than 0"))
    } else {
        Ok(())
    }
}

/// Checks `http(s)://host[:port]` (the trailing `/` has already been removed by the parser).
fn check_node_address(address: &str) -> Result<(), String> {
    let found = || {
        format!(
            "expected an http:// or https:// URL such as http://127.0.0.1:7700, found {address:?}"
        )
    };
    let rest = address
        .strip_prefix("http://")
        .or_else(|| address.strip_prefix("https://"))
        .ok_or_else(found)?;
    if rest.is_empty() {
        return Err(format!("missing host in {address:?}"));
    }
    if rest.contains(['/', '?', '#']) {
        return Err(format!(
            "the address must not have a path, query or fragment, found {address:?}"
        ));
    }
    if rest.contains('@') {
        return Err(format!(
            "the address must not carry credentials (use node_master_key), found {address:?}"
        ));
    }
    let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
        let end = v6
            .find(']')
            .ok_or_else(|| format!("unterminated IPv6 address in {address:?}"))?;
        let ip = &v6[..end];
        if ip.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(format!("invalid IPv6 address {ip:?} in {address:?}"));
        }
        let after = &v6[end + 1..];
        match after.strip_prefix(':') {
            Some(p) => (ip, Some(p)),
            None if after.is_empty() => (ip, None),
            None => return Err(found()),
        }
    } else {
        match rest.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (rest, None),
        }
    };
    if host.is_empty() {
        return Err(format!("missing host in {address:?}"));
    }
    if !rest.starts_with('[') && host.contains(':') {
        return Err(format!(
            "IPv6 hosts must be written in brackets (http://[::1]:7700), found {address:?}"
        ));
    }
    if !host
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | ':'))
    {
        return Err(format!("invalid host {host:?} in {address:?}"));
    }
    if let Some(p) = port {
        match p.parse::<u16>() {
            Ok(n) if n > 0 && !p.starts_with('+') => {}
            _ => {
                return Err(format!(
                    "invalid port {p:?} in {address:?}: expected 1..=65535"
                ))
            }
        }
    }
    Ok(())
}

/// Short description of a YAML value for error messages.
fn describe(v: &Value) -> String {
    match v {
        Value::Null => "null".to_string(),
        Value::Bool(b) => format!("the boolean {b}"),
        Value::Number(n) => format!("the number {n}"),
        Value::String(s) => format!("{s:?}"),
        Value::Sequence(_) => "a list".to_string(),
        Value::Mapping(_) => "a mapping".to_string(),
        Value::Tagged(t) => format!("a value tagged {}", t.tag),
    }
}

/// Where a scalar came from: the file, or an environment variable.
enum Raw<'a> {
    Yaml(&'a Value),
    Env { var: String, value: String },
}

/// One mapping being decoded: remembers the keys read so `finish` can reject unknown ones.
struct Section<'a> {
    path: String,
    map: Option<&'a Mapping>,
    known: Vec<&'static str>,
    env: &'a dyn Fn(&str) -> Option<String>,
    env_enabled: bool,
}

impl<'a> Section<'a> {
    fn new(
        path: String,
        map: Option<&'a Mapping>,
        env: &'a dyn Fn(&str) -> Option<String>,
        env_enabled: bool,
    ) -> Result<Self, ConfigError> {
        if let Some(m) = map {
            for k in m.keys() {
                if !matches!(k, Value::String(_)) {
                    return Err(ConfigError::new(
                        if path.is_empty() {
                            "(top level)"
                        } else {
                            &path
                        }
                        .to_string(),
                        format!("keys must be strings, found {}", describe(k)),
                    ));
                }
            }
        }
        Ok(Section {
            path,
            map,
            known: Vec::new(),
            env,
            env_enabled,
        })
    }

    /// A section from a value: a mapping, or null (all defaults).
    fn from_value(
        path: String,
        v: &'a Value,
        env: &'a dyn Fn(&str) -> Option<String>,
        env_enabled: bool,
    ) -> Result<Self, ConfigError> {
        match v {
            Value::Mapping(m) => Section::new(path, Some(m), env, env_enabled),
            Value::Null => Section::new(path, None, env, env_enabled),
            other => Err(ConfigError::new(
                path,
                format!("expected a mapping, found {}", describe(other)),
            )),
        }
    }

    fn child_path(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    /// The environment variable that overrides `miroir.a.b` is `MIROIR_A_B`.
    fn env_var(&self, key: &str) -> String {
        let path = self.child_path(key);
        let below = path.strip_prefix("miroir.").unwrap_or(&path);
        format!("MIROIR_{}", below.to_ascii_uppercase().replace('.', "_"))
    }

    fn take(&mut self, key: &'static str) -> Option<&'a Value> {
        self.known.push(key);
        self.map.and_then(|m| m.get(key))
    }

    fn raw(&mut self, key: &'static str) -> Option<Raw<'a>> {
        let yaml = self.take(key);
        if self.env_enabled {
            let var = self.env_var(key);
            if let Some(value) = (self.env)(&var) {
                return Some(Raw::Env { var, value });
            }
        }
        match yaml {
            None | Some(Value::Null) => None,
            Some(v) => Some(Raw::Yaml(v)),
        }
    }

    fn err_path(&self, key: &str, raw: &Raw<'_>) -> String {
        match raw {
            Raw::Yaml(_) => self.child_path(key),
            Raw::Env { var, .. } => format!("{} (from {var})", self.child_path(key)),
        }
    }

    fn u64(&mut self, key: &'static str, default: u64) -> Result<u64, ConfigError> {
        self.int(key, default, u64::MAX)
    }

    fn u32(&mut self, key: &'static str, default: u32) -> Result<u32, ConfigError> {
        // The bound guarantees the conversion.
        self.int(key, default as u64, u32::MAX as u64)
            .map(|v| u32::try_from(v).unwrap_or(u32::MAX))
    }

    fn u16(&mut self, key: &'static str, default: u16) -> Result<u16, ConfigError> {
        self.int(key, default as u64, u16::MAX as u64)
            .map(|v| u16::try_from(v).unwrap_or(u16::MAX))
    }

    fn int(&mut self, key: &'static str, default: u64, max: u64) -> Result<u64, ConfigError> {
        let Some(raw) = self.raw(key) else {
            return Ok(default);
        };
        let parsed: Result<u64, String> = match &raw {
            Raw::Yaml(Value::Number(n)) => match n.as_u64() {
                Some(v) => Ok(v),
                None if n.as_i64().is_some() => {
                    Err(format!("expected a non-negative integer, found {n}"))
                }
                None => Err(format!("expected an integer, found {n}")),
            },
            Raw::Yaml(other) => Err(format!("expected an integer, found {}", describe(other))),
            Raw::Env { value, .. } => {
                let t = value.trim();
                if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) {
                    t.parse::<u64>()
                        .map_err(|_| format!("expected an integer at most {max}, found {t}"))
                } else {
                    Err(format!("expected an integer, found {value:?}"))
                }
            }
        };
        let v = parsed.map_err(|p| ConfigError::new(self.err_path(key, &raw), p))?;
        if v > max {
            return Err(ConfigError::new(
                self.err_path(key, &raw),
                format!("expected an integer at most {max}, found {v}"),
            ));
        }
        Ok(v)
    }

    fn float(&mut self, key: &'static str, default: f64) -> Result<f64, ConfigError> {
        let Some(raw) = self.raw(key) else {
            return Ok(default);
        };
        let parsed = match &raw {
            Raw::Yaml(Value::Number(n)) => n
                .as_f64()
                .ok_or_else(|| format!("expected a number, found {n}")),
            Raw::Yaml(other) => Err(format!("expected a number, found {}", describe(other))),
            Raw::Env { value, .. } => value
                .trim()
                .parse::<f64>()
                .ok()
                .filter(|v| v.is_finite())
                .ok_or_else(|| format!("expected a number, found {value:?}")),
        };
        parsed.map_err(|p| ConfigError::new(self.err_path(key, &raw), p))
    }

    fn bool(&mut self, key: &'static str, default: bool) -> Result<bool, ConfigError> {
        let Some(raw) = self.raw(key) else {
            return Ok(default);
        };
        let parsed = match &raw {
            Raw::Yaml(Value::Bool(b)) => Ok(*b),
            Raw::Yaml(other) => Err(format!(
                "expected a boolean (true or false), found {}",
                describe(other)
            )),
            Raw::Env { value, .. } => match value.trim() {
                "true" => Ok(true),
                "false" => Ok(false),
                _ => Err(format!(
                    "expected a boolean (true or false), found {value:?}"
                )),
            },
        };
        parsed.map_err(|p| ConfigError::new(self.err_path(key, &raw), p))
    }

    fn string(&mut self, key: &'static str, default: &str) -> Result<String, ConfigError> {
        let Some(raw) = self.raw(key) else {
            return Ok(default.to_string());
        };
        match &raw {
            Raw::Yaml(Value::String(s)) => Ok(s.clone()),
            Raw::Yaml(other) => Err(ConfigError::new(
                self.err_path(key, &raw),
                format!("expected a string, found {}", describe(other)),
            )),
            Raw::Env { value, .. } => Ok(value.clone()),
        }
    }

    fn choice<T: Copy>(
        &mut self,
        key: &'static str,
        default: T,
        options: &[(&str, T)],
    ) -> Result<T, ConfigError> {
        let Some(raw) = self.raw(key) else {
            return Ok(default);
        };
        let names = options
            .iter()
            .map(|(n, _)| *n)
            .collect::<Vec<_>>()
            .join(", ");
        let text = match &raw {
            Raw::Yaml(Value::String(s)) => s.as_str(),
            Raw::Yaml(other) => {
                return Err(ConfigError::new(
                    self.err_path(key, &raw),
                    format!("expected one of {names}, found {}", describe(other)),
                ))
            }
            Raw::Env { value, .. } => value.trim(),
        };
        options
            .iter()
            .find(|(n, _)| *n == text)
            .map(|(_, v)| *v)
            .ok_or_else(|| {
                ConfigError::new(
                    self.err_path(key, &raw),
                    format!("unknown value {text:?}, expected one of {names}"),
                )
            })
    }

    fn section(&mut self, key: &'static str) -> Result<Section<'a>, ConfigError> {
        let path = self.child_path(key);
        let env = self.env;
        let env_enabled = self.env_enabled;
        match self.take(key) {
            None => Section::new(path, None, env, env_enabled),
            Some(v) => Section::from_value(path, v, env, env_enabled),
        }
    }

    fn nodes(&mut self) -> Result<Vec<NodeConfig>, ConfigError> {
        let path = self.child_path("nodes");
        let list = match self.take("nodes") {
            None => return Err(ConfigError::new(path, "missing required field")),
            Some(Value::Sequence(s)) => s,
            Some(other) => {
                return Err(ConfigError::new(
                    path,
                    format!("expected a list of nodes, found {}", describe(other)),
                ))
            }
        };
        let mut nodes = Vec::with_capacity(list.len());
        for (i, item) in list.iter().enumerate() {
            let npath = format!("{path}[{i}]");
            let map = match item {
                Value::Mapping(m) => m,
                other => {
                    return Err(ConfigError::new(
                        npath,
                        format!(
                            "expected a mapping with id, address and replica_group, found {}",
                            describe(other)
                        ),
                    ))
                }
            };
            let mut s = Section::new(npath.clone(), Some(map), self.env, false)?;
            if s.map.is_some_and(|m| m.get("id").is_none()) {
                return Err(ConfigError::new(
                    format!("{npath}.id"),
                    "missing required field",
                ));
            }
            let id = s.string("id", "")?;
            if s.map.is_some_and(|m| m.get("address").is_none()) {
                return Err(ConfigError::new(
                    format!("{npath}.address"),
                    "missing required field",
                ));
            }
            let address = s.string("address", "")?;
            let address = address.strip_suffix('/').unwrap_or(&address).to_string();
            let replica_group = s.u32("replica_group", 0)?;
            s.finish()?;
            nodes.push(NodeConfig {
                id: NodeId::new(id),
                address,
                replica_group,
            });
        }
        Ok(nodes)
    }

    /// Rejects every key that was not read.
    fn finish(self) -> Result<(), ConfigError> {
        let Some(map) = self.map else {
            return Ok(());
        };
        for k in map.keys() {
            if let Value::String(name) = k {
                if !self.known.contains(&name.as_str()) {
                    return Err(ConfigError::new(
                        self.child_path(name),
                        format!("unknown field, expected one of {}", self.known.join(", ")),
                    ));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NODES: &str = "
  nodes:
    - id: meili-0
      address: http://127.0.0.1:7701
    - id: meili-1
      address: http://127.0.0.1:7702
    - id: meili-2
      address: http://127.0.0.1:7703
";

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn parse(extra: &str) -> Result<Config, ConfigError> {
        Config::from_yaml_str(&format!("miroir:\n{extra}{NODES}"), &no_env)
    }

    fn err(extra: &str) -> String {
        parse(extra).unwrap_err().to_string()
    }

    fn parse_env(text: &str, vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_yaml_str(text, &move |k| vars.get(k).cloned())
    }

    #[test]
    fn example_file_parses_with_documented_values() {
        let text = include_str!("../../shell-proxy/config.example.yaml");
        let c = Config::from_yaml_str(text, &no_env).unwrap();
        assert_eq!(c.shards, 64);
        assert_eq!(c.replication_factor, 2);
        assert_eq!(c.replica_groups, 1);
        assert_eq!(c.write_quorum, WriteQuorumSetting::Majority);
        assert_eq!(c.task_store.backend, TaskStoreBackend::Sqlite);
        assert_eq!(c.task_store.path, "./data/miroir.db");
        assert_eq!(c.nodes.len(), 3);
        assert_eq!(c.nodes[1].id, NodeId::from("meili-1"));
        assert_eq!(c.nodes[2].address, "http://127.0.0.1:7703");
        assert_eq!(c.health, HealthConfig::default());
        assert_eq!(c.scatter, ScatterConfig::default());
        assert_eq!(c.rebalancer, RebalancerConfig::default());
        assert_eq!(c.resharding, ReshardingConfig::default());
        assert_eq!(c.resharding.throttle_docs_per_sec, 5_000);
        assert_eq!(c.repair, RepairConfig::default());
        assert_eq!(c.server, ServerConfig::default());
        assert!(c.admin.enabled);
        assert!(c.master_key.is_empty());
    }

    #[test]
    fn defaults_apply_when_only_nodes_are_given() {
        let c = parse("").unwrap();
        assert_eq!(c.shards, 64);
        assert_eq!(c.task_store, TaskStoreConfig::default());
        assert_eq!(c.admin, AdminConfig::default());
        assert_eq!(c.server.port, 7700);
        assert_eq!(c.server.max_body_bytes, 104_857_600);
        assert_eq!(c.group_nodes(0).count(), 3);
        // Empty sections are fine too.
        let c = parse("  health:\n  server: {}\n").unwrap();
        assert_eq!(c.health, HealthConfig::default());
    }

    #[test]
    fn full_values_are_read() {
        let c = parse(
            "  shards: 8\n  replication_factor: 1\n  replica_groups: 1\n  write_quorum: all\n  master_key: mk\n  node_master_key: nk\n  task_store: {backend: redis, url: 'redis://10.0.0.1:6379', key_prefix: 'x:'}\n  admin: {enabled: false, api_key: ak}\n  health: {interval_ms: 10, timeout_ms: 20, unhealthy_threshold: 5, recovery_threshold: 6}\n  scatter: {node_timeout_ms: 99, unavailable_shard_policy: error}\n  rebalancer: {max_concurrent_migrations: 1, throttle_docs_per_sec: 1000}\n  server: {bind: '::', port: 8000, max_body_bytes: 10, metrics_port: 0}\n",
        )
        .unwrap();
        assert_eq!(c.shards, 8);
        assert_eq!(c.write_quorum, WriteQuorumSetting::All);
        assert_eq!(c.master_key.expose(), "mk");
        assert_eq!(c.node_master_key.expose(), "nk");
        assert_eq!(c.task_store.backend, TaskStoreBackend::Redis);
        assert_eq!(c.task_store.key_prefix, "x:");
        assert!(!c.admin.enabled);
        assert_eq!(c.admin.api_key.expose(), "ak");
        assert_eq!(c.health.recovery_threshold, 6);
        assert_eq!(
            c.scatter.unavailable_shard_policy,
            UnavailableShardPolicy::Error
        );
        assert_eq!(c.rebalancer.throttle_docs_per_sec, 1000);
        assert_eq!(c.server.bind, "::");
        assert_eq!(c.server.metrics_port, 0);
    }

    #[test]
    fn secrets_never_print() {
        let c = parse("  master_key: supersecret\n  admin: {api_key: adminsecret}\n").unwrap();
        let dbg = format!("{c:?}");
        assert!(!dbg.contains("supersecret"));
        assert!(!dbg.contains("adminsecret"));
        assert!(dbg.contains("[redacted]"));
        assert_eq!(format!("{}", Secret::default()), "\"\"");
    }

    #[test]
    fn type_errors_name_the_path() {
        assert_eq!(
            err("  health:\n    interval_ms: abc\n"),
            "miroir.health.interval_ms: expected an integer, found \"abc\""
        );
        assert_eq!(
            err("  shards: -1\n"),
            "miroir.shards: expected a non-negative integer, found -1"
        );
        assert_eq!(
            err("  shards: 1.5\n"),
            "miroir.shards: expected an integer, found 1.5"
        );
        assert_eq!(
            err("  shards: 5000000000\n"),
            "miroir.shards: expected an integer at most 4294967295, found 5000000000"
        );
        assert_eq!(
            err("  server: {port: 70000}\n"),
            "miroir.server.port: expected an integer at most 65535, found 70000"
        );
        assert_eq!(
            err("  admin: {enabled: yes please}\n"),
            "miroir.admin.enabled: expected a boolean (true or false), found \"yes please\""
        );
        assert_eq!(
            err("  master_key: [a]\n"),
            "miroir.master_key: expected a string, found a list"
        );
        assert_eq!(
            err("  health: 5\n"),
            "miroir.health: expected a mapping, found the number 5"
        );
        assert_eq!(
            err("  write_quorum: most\n"),
            "miroir.write_quorum: unknown value \"most\", expected one of majority, one, all"
        );
        assert_eq!(
            err("  write_quorum: 2\n"),
            "miroir.write_quorum: expected one of majority, one, all, found the number 2"
        );
        assert_eq!(
            err("  task_store: {backend: postgres}\n"),
            "miroir.task_store.backend: unknown value \"postgres\", expected one of sqlite, redis"
        );
        assert_eq!(
            err("  scatter: {unavailable_shard_policy: drop}\n"),
            "miroir.scatter.unavailable_shard_policy: unknown value \"drop\", expected one of partial, error"
        );
    }

    #[test]
    fn unknown_fields_are_errors() {
        assert_eq!(
            err("  health:\n    intervl_ms: 5\n"),
            "miroir.health.intervl_ms: unknown field, expected one of interval_ms, timeout_ms, unhealthy_threshold, recovery_threshold"
        );
        assert!(err("  sharts: 3\n").starts_with("miroir.sharts: unknown field"));
        let e = Config::from_yaml_str("miroir:\n  nodes: []\nextra: 1\n", &no_env).unwrap_err();
        assert_eq!(
            e.to_string(),
            "extra: unknown field, expected one of miroir"
        );
        let e = Config::from_yaml_str(
            "miroir:\n  nodes:\n    - {id: a, address: 'http://a', zone: x}\n  replication_factor: 1\n",
            &no_env,
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "miroir.nodes[0].zone: unknown field, expected one of id, address, replica_group"
        );
        assert!(err("  5: x\n").starts_with("miroir: keys must be strings"));
    }

    #[test]
    fn document_level_errors() {
        let e = Config::from_yaml_str("", &no_env).unwrap_err();
        assert_eq!(e.to_string(), "miroir: missing required section");
        let e = Config::from_yaml_str("- 1\n", &no_env).unwrap_err();
        assert!(e.to_string().starts_with("expected a mapping"), "{e}");
        let e = Config::from_yaml_str("miroir: [\n", &no_env).unwrap_err();
        assert!(e.to_string().starts_with("invalid YAML"), "{e}");
        assert_eq!(e.path, "");
        let e = Config::from_yaml_str("miroir: {a: 1, a: 2}\n", &no_env).unwrap_err();
        assert!(e.to_string().contains("duplicate"), "{e}");
        let e = Config::from_yaml_str("miroir: 3\n", &no_env).unwrap_err();
        assert_eq!(
            e.to_string(),
            "miroir: expected a mapping, found the number 3"
        );
    }

    #[test]
    fn node_errors() {
        let e = Config::from_yaml_str("miroir:\n  shards: 1\n", &no_env).unwrap_err();
        assert_eq!(e.to_string(), "miroir.nodes: missing required field");
        let e = Config::from_yaml_str("miroir:\n  nodes: []\n", &no_env).unwrap_err();
        assert_eq!(e.to_string(), "miroir.nodes: must list at least one node");
        let e = Config::from_yaml_str("miroir:\n  nodes: {a: 1}\n", &no_env).unwrap_err();
        assert_eq!(
            e.to_string(),
            "miroir.nodes: expected a list of nodes, found a mapping"
        );
        let e = Config::from_yaml_str("miroir:\n  nodes: [3]\n", &no_env).unwrap_err();
        assert!(e
            .to_string()
            .starts_with("miroir.nodes[0]: expected a mapping"));
        let base = |nodes: &str, extra: &str| {
            Config::from_yaml_str(&format!("miroir:\n{extra}  nodes:\n{nodes}"), &no_env)
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            base("    - {address: 'http://a:1'}\n", ""),
            "miroir.nodes[0].id: missing required field"
        );
        assert_eq!(
            base("    - {id: a}\n", ""),
            "miroir.nodes[0].address: missing required field"
        );
        assert_eq!(
            base("    - {id: '', address: 'http://a:1'}\n", ""),
            "miroir.nodes[0].id: must not be empty"
        );
        assert!(base("    - {id: 'a b', address: 'http://a:1'}\n", "")
            .starts_with("miroir.nodes[0].id: invalid character ' '"));
        assert_eq!(
            base(
                "    - {id: meili-0, address: 'http://a:1'}\n    - {id: meili-1, address: 'http://a:2'}\n    - {id: meili-1, address: 'http://a:3'}\n",
                ""
            ),
            "miroir.nodes[2].id: duplicate node id \"meili-1\""
        );
        assert_eq!(
            base(
                "    - {id: a, address: 'http://h:1'}\n    - {id: b, address: 'http://h:1/'}\n",
                ""
            ),
            "miroir.nodes[1].address: duplicate address \"http://h:1\" (also used by node \"a\")"
        );
        assert_eq!(
            base("    - {id: a, address: 'http://a:1', replica_group: 1}\n", "  replication_factor: 1\n"),
            "miroir.nodes[0].replica_group: group 1 does not exist: replica_groups is 1, so groups are 0..=0"
        );
        assert_eq!(
            base(
                "    - {id: a, address: 'http://a:1'}\n    - {id: b, address: 'http://b:1', replica_group: 1}\n",
                "  replica_groups: 2\n"
            ),
            "miroir.nodes: replica group 0 has 1 node(s), fewer than replication_factor 2"
        );
        assert_eq!(
            base(
                "    - {id: a, address: 'http://a:1'}\n",
                "  replica_groups: 2\n  replication_factor: 1\n"
            ),
            "miroir.nodes: replica group 1 has 0 node(s), fewer than replication_factor 1"
        );
        assert_eq!(
            base(
                "    - {id: a, address: 'http://a:1', replica_group: x}\n",
                ""
            ),
            "miroir.nodes[0].replica_group: expected an integer, found \"x\""
        );
    }

    #[test]
    fn node_addresses() {
        for ok in [
            "http://127.0.0.1:7700",
            "https://meili.example.com",
            "http://meili-0:7700/",
            "http://[::1]:7700",
            "http://[::1]",
        ] {
            let c = Config::from_yaml_str(
                &format!("miroir:\n  replication_factor: 1\n  nodes:\n    - {{id: a, address: '{ok}'}}\n"),
                &no_env,
            );
            assert!(c.is_ok(), "{ok}: {c:?}");
        }
        for bad in [
            "ftp://x",
            "127.0.0.1:7700",
            "http://",
            "http://:7700",
            "http://h:0",
            "http://h:99999",
            "http://h:abc",
            "http://h/path",
            "http://h?x=1",
            "http://u:p@h",
            "http://[zz]:1",
            "http://[::1",
            "http://h_h:1",
            "http://::1",
            "http://::1:7700",
        ] {
            let e = Config::from_yaml_str(
                &format!("miroir:\n  replication_factor: 1\n  nodes:\n    - {{id: a, address: '{bad}'}}\n"),
                &no_env,
            )
            .unwrap_err();
            assert_eq!(e.path, "miroir.nodes[0].address", "{bad}: {e}");
        }
        let c = Config::from_yaml_str(
            "miroir:\n  replication_factor: 1\n  nodes:\n    - {id: a, address: 'http://h:1/'}\n",
            &no_env,
        )
        .unwrap();
        assert_eq!(c.nodes[0].address, "http://h:1");
    }

    #[test]
    fn positive_counts_and_thresholds() {
        for (yaml, path) in [
            ("  shards: 0\n", "miroir.shards"),
            ("  replication_factor: 0\n", "miroir.replication_factor"),
            ("  replica_groups: 0\n", "miroir.replica_groups"),
            ("  health: {interval_ms: 0}\n", "miroir.health.interval_ms"),
            ("  health: {timeout_ms: 0}\n", "miroir.health.timeout_ms"),
            (
                "  health: {unhealthy_threshold: 0}\n",
                "miroir.health.unhealthy_threshold",
            ),
            (
                "  health: {recovery_threshold: 0}\n",
                "miroir.health.recovery_threshold",
            ),
            (
                "  scatter: {node_timeout_ms: 0}\n",
                "miroir.scatter.node_timeout_ms",
            ),
            (
                "  rebalancer: {max_concurrent_migrations: 0}\n",
                "miroir.rebalancer.max_concurrent_migrations",
            ),
            (
                "  rebalancer: {topology_poll_ms: 0}\n",
                "miroir.rebalancer.topology_poll_ms",
            ),
            (
                "  rebalancer: {lease_ms: 0}\n",
                "miroir.rebalancer.lease_ms",
            ),
            (
                "  resharding: {retention_ms: 0}\n",
                "miroir.resharding.retention_ms",
            ),
            (
                "  repair: {max_hints_per_node: 0}\n",
                "miroir.repair.max_hints_per_node",
            ),
            (
                "  repair: {replay_interval_ms: 0}\n",
                "miroir.repair.replay_interval_ms",
            ),
            (
                "  anti_entropy: {page_size: 0}\n",
                "miroir.anti_entropy.page_size",
            ),
            (
                "  anti_entropy: {buckets: 0}\n",
                "miroir.anti_entropy.buckets",
            ),
            (
                "  anti_entropy: {tombstone_grace_ms: 0}\n",
                "miroir.anti_entropy.tombstone_grace_ms",
            ),
            (
                "  server: {max_body_bytes: 0}\n",
                "miroir.server.max_body_bytes",
            ),
            (
                "  server: {max_header_bytes: 0}\n",
                "miroir.server.max_header_bytes",
            ),
            (
                "  server: {max_uri_bytes: 0}\n",
                "miroir.server.max_uri_bytes",
            ),
            (
                "  server: {max_json_depth: 0}\n",
                "miroir.server.max_json_depth",
            ),
            (
                "  server: {max_documents_per_batch: 0}\n",
                "miroir.server.max_documents_per_batch",
            ),
            (
                "  server: {request_timeout_ms: 0}\n",
                "miroir.server.request_timeout_ms",
            ),
            (
                "  server: {header_read_timeout_ms: 0}\n",
                "miroir.server.header_read_timeout_ms",
            ),
            (
                "  server: {body_read_timeout_ms: 0}\n",
                "miroir.server.body_read_timeout_ms",
            ),
            (
                "  server: {max_concurrent_requests: 0}\n",
                "miroir.server.max_concurrent_requests",
            ),
            (
                "  server: {max_node_response_bytes: 0}\n",
                "miroir.server.max_node_response_bytes",
            ),
        ] {
            assert_eq!(err(yaml), format!("{path}: must be greater than 0"));
        }
    }

    #[test]
    fn store_and_server_rules() {
        assert_eq!(
            err("  task_store: {backend: redis}\n"),
            "miroir.task_store.url: required when backend is redis"
        );
        assert_eq!(
            err("  task_store: {backend: redis, url: 'http://x'}\n"),
            "miroir.task_store.url: expected a redis:// or rediss:// URL, found \"http://x\""
        );
        assert!(err("  task_store: {backend: redis, url: 'redis://'}\n")
            .starts_with("miroir.task_store.url: expected a redis://"));
        assert!(parse("  task_store: {backend: redis, url: 'rediss://h:6380'}\n").is_ok());
        assert_eq!(
            err("  task_store: {path: ''}\n"),
            "miroir.task_store.path: must not be empty when backend is sqlite"
        );
        assert_eq!(
            err("  server: {port: 0}\n"),
            "miroir.server.port: expected a port between 1 and 65535, found 0"
        );
        assert!(
            err("  server: {port: 9090}\n").starts_with("miroir.server.metrics_port: must differ")
        );
        assert!(parse("  server: {port: 9090, metrics_port: 0}\n").is_ok());
        assert_eq!(
            err("  server: {bind: localhost}\n"),
            "miroir.server.bind: expected an IP address such as 0.0.0.0 or ::, found \"localhost\""
        );
    }

    #[test]
    fn server_limits_are_read_validated_and_overridable() {
        let d = ServerConfig::default();
        assert_eq!(d.max_header_bytes, 65_536);
        assert_eq!(d.max_uri_bytes, 16_384);
        assert_eq!(d.max_json_depth, 64);
        assert_eq!(d.max_documents_per_batch, 1_000_000);
        assert_eq!(d.request_timeout_ms, 60_000);
        assert_eq!(d.header_read_timeout_ms, 10_000);
        assert_eq!(d.body_read_timeout_ms, 120_000);
        assert_eq!(d.max_concurrent_requests, 1024);
        assert_eq!(d.max_node_response_bytes, 268_435_456);
        let c = parse(
            "  server:\n    max_header_bytes: 100\n    max_uri_bytes: 200\n    max_json_depth: 3\n    max_documents_per_batch: 4\n    request_timeout_ms: 5\n    header_read_timeout_ms: 6\n    body_read_timeout_ms: 7\n    max_concurrent_requests: 8\n    max_node_response_bytes: 9\n",
        )
        .unwrap();
        assert_eq!(c.server.max_header_bytes, 100);
        assert_eq!(c.server.max_uri_bytes, 200);
        assert_eq!(c.server.max_json_depth, 3);
        assert_eq!(c.server.max_documents_per_batch, 4);
        assert_eq!(c.server.request_timeout_ms, 5);
        assert_eq!(c.server.header_read_timeout_ms, 6);
        assert_eq!(c.server.body_read_timeout_ms, 7);
        assert_eq!(c.server.max_concurrent_requests, 8);
        assert_eq!(c.server.max_node_response_bytes, 9);
        // The upper bounds.
        assert!(parse("  server: {max_uri_bytes: 65534, max_json_depth: 128}\n").is_ok());
        assert_eq!(
            err("  server: {max_uri_bytes: 65535}\n"),
            "miroir.server.max_uri_bytes: must be at most 65534 (the HTTP layer refuses longer request targets), found 65535"
        );
        assert!(err("  server: {max_json_depth: 129}\n")
            .starts_with("miroir.server.max_json_depth: must be at most 128"));
        assert_eq!(
            err("  server: {max_concurrent_requests: 4294967296}\n"),
            "miroir.server.max_concurrent_requests: expected an integer at most 4294967295, found 4294967296"
        );
        assert!(
            err("  server: {request_timeout_ms: -1}\n").contains("expected a non-negative integer")
        );
        assert!(err("  server: {max_header_bytes: lots}\n").contains("expected an integer"));
        assert!(err("  server: {max_headers: 1}\n").contains("max_headers"));
        // Environment overrides.
        let text = format!("miroir:\n{NODES}");
        let c = parse_env(
            &text,
            &[
                ("MIROIR_SERVER_MAX_HEADER_BYTES", "11"),
                ("MIROIR_SERVER_MAX_URI_BYTES", "12"),
                ("MIROIR_SERVER_MAX_JSON_DEPTH", "13"),
                ("MIROIR_SERVER_MAX_DOCUMENTS_PER_BATCH", "14"),
                ("MIROIR_SERVER_REQUEST_TIMEOUT_MS", "15"),
                ("MIROIR_SERVER_HEADER_READ_TIMEOUT_MS", "16"),
                ("MIROIR_SERVER_BODY_READ_TIMEOUT_MS", "17"),
                ("MIROIR_SERVER_MAX_CONCURRENT_REQUESTS", "18"),
                ("MIROIR_SERVER_MAX_NODE_RESPONSE_BYTES", "19"),
            ],
        )
        .unwrap();
        assert_eq!(
            (
                c.server.max_header_bytes,
                c.server.max_uri_bytes,
                c.server.max_json_depth,
                c.server.max_documents_per_batch,
                c.server.request_timeout_ms,
                c.server.header_read_timeout_ms,
                c.server.body_read_timeout_ms,
                c.server.max_concurrent_requests,
                c.server.max_node_response_bytes
            ),
            (11, 12, 13, 14, 15, 16, 17, 18, 19)
        );
        let e = parse_env(&text, &[("MIROIR_SERVER_MAX_JSON_DEPTH", "0")]).unwrap_err();
        assert_eq!(e.path, "miroir.server.max_json_depth");
    }

    #[test]
    fn the_advertised_url_is_optional_checked_and_overridable() {
        assert_eq!(ServerConfig::default().advertise_url, None);
        let c = parse("  server: {advertise_url: 'http://proxy-0:7700/'}\n").unwrap();
        assert_eq!(
            c.server.advertise_url.as_deref(),
            Some("http://proxy-0:7700")
        );
        let c = parse("  server: {advertise_url: ''}\n").unwrap();
        assert_eq!(c.server.advertise_url, None);
        for bad in [
            "proxy-0:7700",
            "ftp://proxy-0",
            "http://proxy-0:7700/x",
            "http://user@proxy-0",
            "http://proxy-0:0",
        ] {
            let e = err(&format!("  server: {{advertise_url: '{bad}'}}\n"));
            assert!(e.starts_with("miroir.server.advertise_url: "), "{bad}: {e}");
        }
        assert!(err("  server: {advertise_url: 7}\n").contains("expected a string"));
        let text = format!("miroir:\n{NODES}");
        let c = parse_env(
            &text,
            &[("MIROIR_SERVER_ADVERTISE_URL", "http://10.0.0.1:7700")],
        )
        .unwrap();
        assert_eq!(
            c.server.advertise_url.as_deref(),
            Some("http://10.0.0.1:7700")
        );
        let e = parse_env(&text, &[("MIROIR_SERVER_ADVERTISE_URL", "nope")]).unwrap_err();
        assert_eq!(e.path, "miroir.server.advertise_url");
    }

    #[test]
    fn repair_section_is_read_from_file_and_environment() {
        let c = parse("  repair: {max_hints_per_node: 7, replay_interval_ms: 50}\n").unwrap();
        assert_eq!(c.repair.max_hints_per_node, 7);
        assert_eq!(c.repair.replay_interval_ms, 50);
        let text = format!("miroir:\n{NODES}");
        let c = parse_env(&text, &[("MIROIR_REPAIR_MAX_HINTS_PER_NODE", "3")]).unwrap();
        assert_eq!(c.repair.max_hints_per_node, 3);
        assert_eq!(c.repair.replay_interval_ms, 1_000);
        assert!(
            parse("  repair: {max_hints: 1}\n").is_err(),
            "unknown keys are refused"
        );
        assert!(parse("  repair: {replay_interval_ms: soon}\n").is_err());
    }

    #[test]
    fn anti_entropy_section_is_read_from_file_and_environment() {
        let c = parse("  repair: {}\n").unwrap();
        assert_eq!(c.anti_entropy, AntiEntropyConfig::default());
        let c = parse(
            "  anti_entropy: {interval_ms: 0, repair: false, docs_per_second: 0, page_size: 10, buckets: 4, tombstone_grace_ms: 5}\n",
        )
        .unwrap();
        assert_eq!(
            c.anti_entropy,
            AntiEntropyConfig {
                interval_ms: 0,
                repair: false,
                docs_per_second: 0,
                page_size: 10,
                buckets: 4,
                tombstone_grace_ms: 5,
            }
        );
        let text = format!("miroir:\n{NODES}");
        let c = parse_env(
            &text,
            &[
                ("MIROIR_ANTI_ENTROPY_INTERVAL_MS", "60000"),
                ("MIROIR_ANTI_ENTROPY_REPAIR", "false"),
            ],
        )
        .unwrap();
        assert_eq!(
            (c.anti_entropy.interval_ms, c.anti_entropy.repair),
            (60_000, false)
        );
        assert_eq!(c.anti_entropy.buckets, 64);
        assert!(
            parse("  anti_entropy: {every: 1}\n").is_err(),
            "unknown keys are refused"
        );
        assert!(parse("  anti_entropy: {repair: maybe}\n").is_err());
        let e = parse_env(&text, &[("MIROIR_ANTI_ENTROPY_BUCKETS", "0")]).unwrap_err();
        assert_eq!(e.path, "miroir.anti_entropy.buckets");
    }

    #[test]
    fn env_overrides_win_over_the_file() {
        let text = format!("miroir:\n  shards: 8\n  master_key: file\n{NODES}");
        let c = parse_env(
            &text,
            &[
                ("MIROIR_MASTER_KEY", "from-env"),
                ("MIROIR_NODE_MASTER_KEY", "node-env"),
                ("MIROIR_ADMIN_API_KEY", "admin-env"),
                ("MIROIR_SHARDS", "16"),
                ("MIROIR_SERVER_PORT", "7777"),
                ("MIROIR_TASK_STORE_BACKEND", "redis"),
                ("MIROIR_TASK_STORE_URL", "redis://127.0.0.1:6379"),
                ("MIROIR_TASK_STORE_PATH", "/tmp/x.db"),
                ("MIROIR_WRITE_QUORUM", "one"),
                ("MIROIR_ADMIN_ENABLED", "false"),
                ("MIROIR_HEALTH_INTERVAL_MS", " 250 "),
                ("MIROIR_SCATTER_UNAVAILABLE_SHARD_POLICY", "error"),
                ("MIROIR_REBALANCER_THROTTLE_DOCS_PER_SEC", "5"),
                ("MIROIR_REBALANCER_LEASE_MS", "1500"),
                ("MIROIR_SERVER_BIND", "127.0.0.1"),
            ],
        )
        .unwrap();
        assert_eq!(c.master_key.expose(), "from-env");
        assert_eq!(c.node_master_key.expose(), "node-env");
        assert_eq!(c.admin.api_key.expose(), "admin-env");
        assert_eq!(c.shards, 16);
        assert_eq!(c.server.port, 7777);
        assert_eq!(c.task_store.backend, TaskStoreBackend::Redis);
        assert_eq!(c.task_store.url, "redis://127.0.0.1:6379");
        assert_eq!(c.task_store.path, "/tmp/x.db");
        assert_eq!(c.write_quorum, WriteQuorumSetting::One);
        assert!(!c.admin.enabled);
        assert_eq!(c.health.interval_ms, 250);
        assert_eq!(
            c.scatter.unavailable_shard_policy,
            UnavailableShardPolicy::Error
        );
        assert_eq!(c.rebalancer.throttle_docs_per_sec, 5);
        assert_eq!(c.rebalancer.lease_ms, 1500);
        assert_eq!(c.rebalancer.topology_poll_ms, 1_000);
        assert_eq!(c.server.bind, "127.0.0.1");
    }

    #[test]
    fn resharding_section_is_read_from_the_file_and_the_env() {
        let text = format!(
            "miroir:\n  resharding: {{throttle_docs_per_sec: 0, retention_ms: 60000}}\n{NODES}"
        );
        let c = parse_env(&text, &[]).unwrap();
        assert_eq!(c.resharding.throttle_docs_per_sec, 0);
        assert_eq!(c.resharding.retention_ms, 60_000);
        let c = parse_env(
            &text,
            &[
                ("MIROIR_RESHARDING_THROTTLE_DOCS_PER_SEC", "70"),
                ("MIROIR_RESHARDING_RETENTION_MS", "1000"),
            ],
        )
        .unwrap();
        assert_eq!(c.resharding.throttle_docs_per_sec, 70);
        assert_eq!(c.resharding.retention_ms, 1_000);
        let bad = format!("miroir:\n  resharding: {{retention: 5}}\n{NODES}");
        assert!(parse_env(&bad, &[]).is_err());
        let bad = format!("miroir:\n  resharding: {{retention_ms: -5}}\n{NODES}");
        assert!(parse_env(&bad, &[]).is_err());
    }

    #[test]
    fn env_errors_name_the_variable() {
        let text = format!("miroir:\n{NODES}");
        let e = parse_env(&text, &[("MIROIR_SERVER_PORT", "abc")]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "miroir.server.port (from MIROIR_SERVER_PORT): expected an integer, found \"abc\""
        );
        let e = parse_env(&text, &[("MIROIR_SERVER_PORT", "70000")]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "miroir.server.port (from MIROIR_SERVER_PORT): expected an integer at most 65535, found 70000"
        );
        let e = parse_env(&text, &[("MIROIR_SHARDS", "-3")]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "miroir.shards (from MIROIR_SHARDS): expected an integer, found \"-3\""
        );
        let e = parse_env(&text, &[("MIROIR_SHARDS", "99999999999999999999999")]).unwrap_err();
        assert!(e.to_string().contains("at most"), "{e}");
        let e = parse_env(&text, &[("MIROIR_ADMIN_ENABLED", "maybe")]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "miroir.admin.enabled (from MIROIR_ADMIN_ENABLED): expected a boolean (true or false), found \"maybe\""
        );
        let e = parse_env(&text, &[("MIROIR_TASK_STORE_BACKEND", "mongo")]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "miroir.task_store.backend (from MIROIR_TASK_STORE_BACKEND): unknown value \"mongo\", expected one of sqlite, redis"
        );
        // Validation still applies to overridden values.
        let e = parse_env(&text, &[("MIROIR_SHARDS", "0")]).unwrap_err();
        assert_eq!(e.to_string(), "miroir.shards: must be greater than 0");
        let e = parse_env(&text, &[("MIROIR_TASK_STORE_BACKEND", "redis")]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "miroir.task_store.url: required when backend is redis"
        );
        // Nodes are never read from the environment.
        let e = parse_env("miroir:\n", &[("MIROIR_NODES", "x")]).unwrap_err();
        assert_eq!(e.to_string(), "miroir.nodes: missing required field");
    }

    #[test]
    fn idempotency_section() {
        let c = parse("").unwrap();
        assert_eq!(c.idempotency, IdempotencyConfig::default());
        assert!(c.idempotency.enabled);
        assert_eq!(c.idempotency.ttl_secs, 86_400);
        let c = parse(
            "  idempotency: {enabled: false, ttl_secs: 60, max_keys: 10, in_flight_timeout_ms: 5}\n",
        )
        .unwrap();
        assert_eq!(
            c.idempotency,
            IdempotencyConfig {
                enabled: false,
                ttl_secs: 60,
                max_keys: 10,
                in_flight_timeout_ms: 5,
            }
        );
        for (yaml, path) in [
            (
                "  idempotency: {ttl_secs: 0}\n",
                "miroir.idempotency.ttl_secs",
            ),
            (
                "  idempotency: {max_keys: 0}\n",
                "miroir.idempotency.max_keys",
            ),
            (
                "  idempotency: {in_flight_timeout_ms: 0}\n",
                "miroir.idempotency.in_flight_timeout_ms",
            ),
        ] {
            assert_eq!(err(yaml), format!("{path}: must be greater than 0"));
        }
        assert!(err("  idempotency: {ttl: 5}\n").contains("miroir.idempotency.ttl"));
        assert!(err("  idempotency: {enabled: maybe}\n").contains("miroir.idempotency.enabled"));
        let c = parse_env(
            &format!("miroir:\n{NODES}"),
            &[("MIROIR_IDEMPOTENCY_TTL_SECS", "7")],
        )
        .unwrap();
        assert_eq!(c.idempotency.ttl_secs, 7);
    }

    #[test]
    fn settings_sync_section() {
        let c = parse("").unwrap();
        assert_eq!(c.settings_sync, SettingsSyncConfig::default());
        let c = parse("  settings_sync: {drift_check_interval_ms: 0, max_repair_retries: 2, repair_backoff_ms: 5, verify_timeout_ms: 9}\n").unwrap();
        assert_eq!(
            c.settings_sync,
            SettingsSyncConfig {
                drift_check_interval_ms: 0,
                max_repair_retries: 2,
                repair_backoff_ms: 5,
                verify_timeout_ms: 9,
            }
        );
        for (yaml, path) in [
            (
                "  settings_sync: {max_repair_retries: 0}\n",
                "miroir.settings_sync.max_repair_retries",
            ),
            (
                "  settings_sync: {repair_backoff_ms: 0}\n",
                "miroir.settings_sync.repair_backoff_ms",
            ),
            (
                "  settings_sync: {verify_timeout_ms: 0}\n",
                "miroir.settings_sync.verify_timeout_ms",
            ),
        ] {
            assert_eq!(err(yaml), format!("{path}: must be greater than 0"));
        }
        assert!(err("  settings_sync: {interval: 1}\n").contains("miroir.settings_sync.interval"));
        let c = parse_env(
            &format!("miroir:\n{NODES}"),
            &[("MIROIR_SETTINGS_SYNC_DRIFT_CHECK_INTERVAL_MS", "77")],
        )
        .unwrap();
        assert_eq!(c.settings_sync.drift_check_interval_ms, 77);
    }

    #[test]
    fn session_section() {
        let c = parse("").unwrap();
        assert_eq!(c.session, SessionConfig::default());
        assert_eq!(c.session.strategy, SessionStrategy::Block);
        let c = parse(
            "  session: {strategy: route_pin, max_wait_ms: 0, max_sessions: 3, ttl_secs: 4}\n",
        )
        .unwrap();
        assert_eq!(
            c.session,
            SessionConfig {
                strategy: SessionStrategy::RoutePin,
                max_wait_ms: 0,
                max_sessions: 3,
                ttl_secs: 4,
            }
        );
        assert_eq!(
            err("  session: {strategy: wait}\n"),
            "miroir.session.strategy: unknown value \"wait\", expected one of block, route_pin"
        );
        assert_eq!(
            err("  session: {max_sessions: 0}\n"),
            "miroir.session.max_sessions: must be greater than 0"
        );
        assert_eq!(
            err("  session: {ttl_secs: 0}\n"),
            "miroir.session.ttl_secs: must be greater than 0"
        );
        let c = parse_env(
            &format!("miroir:\n{NODES}"),
            &[("MIROIR_SESSION_STRATEGY", "route_pin")],
        )
        .unwrap();
        assert_eq!(c.session.strategy, SessionStrategy::RoutePin);
    }

    #[test]
    fn selection_and_hedging_sections() {
        let c = parse("").unwrap();
        assert_eq!(c.selection, SelectionConfig::default());
        assert_eq!(c.hedging, HedgingConfig::default());
        assert_eq!(c.selection.strategy, crate::select::Strategy::Adaptive);
        assert!(c.hedging.enabled);
        let c = parse(
            "  selection: {strategy: round_robin, exploration: 0}\n  hedging: {enabled: false, multiplier: 3, floor_ms: 5, max_hedges_per_query: 0}\n",
        )
        .unwrap();
        assert_eq!(c.selection.strategy, crate::select::Strategy::RoundRobin);
        assert_eq!(c.selection.exploration, 0.0);
        assert!(!c.hedging.enabled);
        assert_eq!(c.hedging.multiplier, 3.0);
        assert_eq!(c.hedging.floor_ms, 5);
        assert_eq!(c.hedging.max_hedges_per_query, 0);
        let c = parse_env(
            &format!("miroir:\n  selection: {{strategy: random}}\n{NODES}"),
            &[
                ("MIROIR_SELECTION_EXPLORATION", "0.25"),
                ("MIROIR_HEDGING_MULTIPLIER", " 2.5 "),
                ("MIROIR_SELECTION_STRATEGY", "adaptive"),
            ],
        )
        .unwrap();
        assert_eq!(c.selection.exploration, 0.25);
        assert_eq!(c.hedging.multiplier, 2.5);
        assert_eq!(c.selection.strategy, crate::select::Strategy::Adaptive);
    }

    #[test]
    fn selection_and_hedging_errors() {
        for (extra, want) in [
            (
                "  selection: {strategy: fastest}\n",
                "miroir.selection.strategy: unknown value \"fastest\", expected one of adaptive, round_robin, random",
            ),
            (
                "  selection: {exploration: 1.5}\n",
                "miroir.selection.exploration: expected a number between 0 and 1, found 1.5",
            ),
            (
                "  selection: {exploration: -0.1}\n",
                "miroir.selection.exploration: expected a number between 0 and 1, found -0.1",
            ),
            (
                "  selection: {exploration: lots}\n",
                "miroir.selection.exploration: expected a number, found \"lots\"",
            ),
            (
                "  hedging: {multiplier: 0}\n",
                "miroir.hedging.multiplier: expected a positive number, found 0",
            ),
            (
                "  hedging: {enabled: 1}\n",
                "miroir.hedging.enabled: expected a boolean (true or false), found the number 1",
            ),
            (
                "  hedging: {floor: 1}\n",
                "miroir.hedging.floor: unknown field, expected one of enabled, multiplier, floor_ms, max_hedges_per_query",
            ),
        ] {
            let got = err(extra);
            assert_eq!(got, want);
        }
        let e = parse_env(
            &format!("miroir:\n{NODES}"),
            &[("MIROIR_HEDGING_MULTIPLIER", "inf")],
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "miroir.hedging.multiplier (from MIROIR_HEDGING_MULTIPLIER): expected a number, found \"inf\""
        );
        let e = parse_env(
            &format!("miroir:\n{NODES}"),
            &[("MIROIR_SELECTION_EXPLORATION", "x")],
        )
        .unwrap_err();
        assert!(e.to_string().contains("MIROIR_SELECTION_EXPLORATION"));
    }
}
