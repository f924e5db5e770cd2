//! The task store: Miroir's durable registry of client-visible tasks and a small keyed metadata area.
//!
//! One contract ([`TaskStore`]), two backends:
//! - [`sqlite::SqliteStore`]: an embedded SQLite file (the default; one proxy).
//! - [`redis::RedisStore`]: a Redis server (required when several proxies share one fleet).
//!
//! Contract, which both backends pass through the same test suite (`contract_tests`):
//! - [`TaskStore::next_task_uid`] hands out uids `0, 1, 2, ...`: strictly increasing, durable, never
//!   reused, not even after a restart, and distinct under any concurrency.
//! - [`TaskStore::put_task`] is durable before it returns: the proxy answers its client only afterwards.
//!   Storing a uid the counter has not reached yet moves the counter past it, so it is never handed out.
//! - [`TaskStore::list_tasks`] returns newest first by default (`from` = highest uid to include), oldest
//!   first with `reverse` (`from` = lowest uid to include), like Meilisearch's `GET /tasks`.
//! - [`TaskStore::put_meta`] / [`TaskStore::get_meta`] / [`TaskStore::list_meta`]: a generic keyed JSON
//!   area for topology, index metadata (primary keys, client-visible settings) and the like.
//! - [`TaskStore::put_hint`] / [`TaskStore::delete_hint`] / [`TaskStore::list_hints`]: the hinted-handoff
//!   log (core's `hints`): node writes a replica missed, keyed by their sequence number, durable before
//!   `put_hint` returns and listed in ascending sequence order, so a restarted proxy replays them in order.
//! - The idempotency-key methods (`claim_` / `replace_` / `get_` / `release_` / `prune_idempotency_keys`):
//!   one record per key, claimed and swapped atomically (compare-and-swap on the whole record), so two
//!   proxies sharing the store never both serve one key (see `miroir_core::idempotency`).
//! - [`TaskStore::put_tombstones`] / [`TaskStore::list_tombstones`] / [`TaskStore::prune_tombstones`]: the
//!   delete tombstones of each index (core's `entropy::Tombstones::entries`), durable before the delete is
//!   sent; a key keeps the greatest version ever put (atomically, so proxies sharing the store never lower
//!   one), listed sorted by key, pruned below a version.

pub mod redis;
pub mod sqlite;

#[cfg(test)]
mod contract_tests;

use async_trait::async_trait;
use miroir_core::config::{TaskStoreBackend, TaskStoreConfig};
use miroir_core::MeiliError;
use serde_json::Value;
use std::fmt;
use std::sync::Arc;

/// A task store failure (I/O, corruption, unreachable server). Rendered to clients as a 500 `internal`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreError {
    /// Which backend failed (`sqlite` or `redis`).
    pub backend: &'static str,
    /// What failed.
    pub message: String,
}

impl StoreError {
    pub(crate) fn new(backend: &'static str, message: impl fmt::Display) -> Self {
        StoreError {
            backend,
            message: message.to_string(),
        }
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "task store ({}): {}", self.backend, self.message)
    }
}

impl std::error::Error for StoreError {}

impl From<StoreError> for MeiliError {
    fn from(e: StoreError) -> Self {
        MeiliError::internal(format!("An internal error has occurred. `{e}`."))
    }
}

/// The task store contract. All methods are safe to call concurrently.
#[async_trait]
pub trait TaskStore: Send + Sync {
    /// The backend's name, `sqlite` or `redis` (for logs and `/_miroir/ready`).
    fn backend(&self) -> &'static str;

    /// The next task uid: the first call on a fresh store returns 0, every later call a larger value. Durable
    /// once returned: a uid is never handed out twice, even across restarts.
    async fn next_task_uid(&self) -> Result<u64, StoreError>;

    /// Stores (or replaces) the record of task `uid`; durable when this returns.
    async fn put_task(&self, uid: u64, record: &Value) -> Result<(), StoreError>;

    /// The record of task `uid`, if stored.
    async fn get_task(&self, uid: u64) -> Result<Option<Value>, StoreError>;

    /// Up to `limit` records. Newest first when `reverse` is false, starting at uid `from` (inclusive) or
    /// at the newest task; oldest first when `reverse` is true, starting at `from` or at the oldest task.
    async fn list_tasks(
        &self,
        from: Option<u64>,
        limit: usize,
        reverse: bool,
    ) -> Result<Vec<Value>, StoreError>;

    /// How many tasks are stored (Meilisearch's `total` of an unfiltered `GET /tasks`).
    async fn count_tasks(&self) -> Result<u64, StoreError>;

    /// Deletes the given tasks and returns how many existed. Their uids stay retired.
    async fn delete_tasks(&self, uids: &[u64]) -> Result<u64, StoreError>;

    /// Stores `record` for the idempotency key `key` unless a record is stored for it: atomically. Returns
    /// `None` when `record` was stored (the key is claimed), else the stored record (nothing written).
    /// `expires_at` (ms since the epoch) orders the record for [`TaskStore::prune_idempotency_keys`].
    async fn claim_idempotency_key(
        &self,
        key: &str,
        record: &Value,
        expires_at: u64,
    ) -> Result<Option<Value>, StoreError>;

    /// Replaces the record of `key` with `record` only if the stored record equals `expected`
    /// (compare-and-swap); returns whether it did. A missing record never equals `expected`.
    async fn replace_idempotency_key(
        &self,
        key: &str,
        expected: &Value,
        record: &Value,
        expires_at: u64,
    ) -> Result<bool, StoreError>;

    /// The record of `key`, if stored (expired or not: expiry is the caller's decision).
    async fn get_idempotency_key(&self, key: &str) -> Result<Option<Value>, StoreError>;

    /// Deletes the record of `key` only if it equals `expected`; returns whether it did.
    async fn release_idempotency_key(
        &self,
        key: &str,
        expected: &Value,
    ) -> Result<bool, StoreError>;

    /// Deletes every record with `expires_at <= now`, then, while more than `max_keys` remain, the records
    /// closest to expiry (ties by key), as core's `idempotency::prune_plan`; returns how many it deleted.
    async fn prune_idempotency_keys(&self, now: u64, max_keys: u64) -> Result<u64, StoreError>;

    /// Stores (or replaces) a metadata value; durable when this returns.
    async fn put_meta(&self, key: &str, value: &Value) -> Result<(), StoreError>;

    /// A metadata value, if stored.
    async fn get_meta(&self, key: &str) -> Result<Option<Value>, StoreError>;

    /// Deletes a metadata value; returns whether it existed.
    async fn delete_meta(&self, key: &str) -> Result<bool, StoreError>;

    /// Every metadata entry whose key starts with `prefix`, sorted by key.
    async fn list_meta(&self, prefix: &str) -> Result<Vec<(String, Value)>, StoreError>;

    /// Compare-and-set of a metadata value: stores `value` only when the stored value equals `expected`
    /// (`None`: the key is absent), atomically, so two proxies never both move a value from the same
    /// `expected`; returns whether it stored. Durable when this returns `true`. The backends override this
    /// default, which is only atomic within one process (get then put).
    async fn swap_meta(
        &self,
        key: &str,
        expected: Option<&Value>,
        value: &Value,
    ) -> Result<bool, StoreError> {
        if self.get_meta(key).await?.as_ref() != expected {
            return Ok(false);
        }
        self.put_meta(key, value).await?;
        Ok(true)
    }

    /// Checks that the store answers (a trivial read); used by `/_miroir/ready`.
    async fn health(&self) -> Result<(), StoreError>;

    /// Stores (or replaces) hint `seq` of the hinted-handoff log; durable when this returns.
    async fn put_hint(&self, seq: u64, hint: &Value) -> Result<(), StoreError>;

    /// Deletes hint `seq` (applied or dropped); returns whether it existed.
    async fn delete_hint(&self, seq: u64) -> Result<bool, StoreError>;

    /// Every stored hint, in ascending `seq` order.
    async fn list_hints(&self) -> Result<Vec<Value>, StoreError>;

    /// Records tombstones of `index`: each `(key, version)` keeps the greater of the stored and the given
    /// version (atomically); durable when this returns. Versions above `i64::MAX` are refused.
    async fn put_tombstones(
        &self,
        index: &str,
        entries: &[(String, u64)],
    ) -> Result<(), StoreError>;

    /// Every tombstone of `index`, sorted by key.
    async fn list_tombstones(&self, index: &str) -> Result<Vec<(String, u64)>, StoreError>;

    /// Deletes the tombstones of `index` whose version is below `before`; returns how many it deleted.
    async fn prune_tombstones(&self, index: &str, before: u64) -> Result<u64, StoreError>;
}

/// Opens the store the configuration names, wrapped in the idempotency-key
/// [`crate::idempotency::NotingStore`].
pub async fn open(config: &TaskStoreConfig) -> Result<Arc<dyn TaskStore>, StoreError> {
    let backend: Arc<dyn TaskStore> = match config.backend {
        TaskStoreBackend::Sqlite => Arc::new(sqlite::SqliteStore::open(&config.path).await?),
        TaskStoreBackend::Redis => {
            Arc::new(redis::RedisStore::open(&config.url, &config.key_prefix).await?)
        }
    };
    Ok(Arc::new(crate::idempotency::NotingStore::new(backend)))
}

/// Serializes a record for storage.
pub(crate) fn encode(backend: &'static str, v: &Value) -> Result<String, StoreError> {
    serde_json::to_string(v).map_err(|e| StoreError::new(backend, format!("encoding: {e}")))
}

/// Parses a stored record.
pub(crate) fn decode(backend: &'static str, what: &str, text: &str) -> Result<Value, StoreError> {
    serde_json::from_str(text)
        .map_err(|e| StoreError::new(backend, format!("corrupt record {what}: {e}")))
}
