//! The Redis task store, for deployments where several proxies share one fleet.
//!
//! Keys (all under the configured prefix, default `miroir:`):
//! - `{prefix}task_uid`: string counter = the next uid to hand out (`INCR` → uid = value - 1).
//! - `{prefix}tasks`: hash uid → JSON record.
//! - `{prefix}task_index`: sorted set of uids (score = uid) for ordered listing. Scores are doubles, so
//!   uids are exact up to 2^53, far beyond any realistic task count.
//! - `{prefix}meta`: hash key → JSON value.
//! - `{prefix}hints`: hash seq → JSON hint (the hinted-handoff log; listed sorted by seq).
//! - `{prefix}tombstones:{index}`: hash tombstone key → version as a 20-digit zero-padded decimal (so Lua
//!   compares versions as strings, exactly: Lua numbers are doubles); raised and pruned by scripts.
//! - `{prefix}idempotency`: hash idempotency key → JSON record; `{prefix}idempotency_expiry`: sorted set of
//!   idempotency keys by `expires_at`, for pruning.
//!
//! `put_task` is one Lua script (hash + sorted set + counter bump), so it is atomic; so are the
//! idempotency claim, compare-and-swap, release and prune (each one script). The compare-and-swaps compare
//! the stored JSON text with the expected record encoded the same way (the records are always written by
//! this encoder, so a record read back and encoded again gives the same text).
//!
//! Durability is Redis's: a write is acknowledged once Redis has applied it. To keep the "no acknowledged
//! write lost" promise across a Redis crash, run Redis with `appendonly yes` and `appendfsync always`; on
//! open, the store logs a warning when it can read Redis's configuration and sees something weaker.

use super::{decode, encode, StoreError, TaskStore};
use async_trait::async_trait;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, Script};
use serde_json::Value;
use std::time::Duration;

const BACKEND: &str = "redis";

const PUT_TASK: &str = r"
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[1], ARGV[1])
local current = tonumber(redis.call('GET', KEYS[3]) or '0')
if current < tonumber(ARGV[3]) then redis.call('SET', KEYS[3], ARGV[3]) end
return 1
";

const PUT_TOMBSTONES: &str = r"
for i = 1, #ARGV, 2 do
  local current = redis.call('HGET', KEYS[1], ARGV[i])
  if (not current) or current < ARGV[i + 1] then redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
end
return 1
";

const PRUNE_TOMBSTONES: &str = r"
local all = redis.call('HGETALL', KEYS[1])
local n = 0
for i = 1, #all, 2 do
  if all[i + 1] < ARGV[1] then redis.call('HDEL', KEYS[1], all[i]); n = n + 1 end
end
return n
";

const CLAIM_IDEMPOTENCY: &str = r"
local current = redis.call('HGET', KEYS[1], ARGV[1])
if current then return current end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
return false
";

const REPLACE_IDEMPOTENCY: &str = r"
local current = redis.call('HGET', KEYS[1], ARGV[1])
if current ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
redis.call('ZADD', KEYS[2], ARGV[4], ARGV[1])
return 1
";

const RELEASE_IDEMPOTENCY: &str = r"
local current = redis.call('HGET', KEYS[1], ARGV[1])
if current ~= ARGV[2] then return 0 end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
return 1
";

/// Compare-and-set of a meta field: ARGV[2] = "1" when a value is expected (ARGV[3]), "0" when absent.
const SWAP_META: &str = r"
local current = redis.call('HGET', KEYS[1], ARGV[1])
if ARGV[2] == '1' then
  if current ~= ARGV[3] then return 0 end
else
  if current then return 0 end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[4])
return 1
";

const PRUNE_IDEMPOTENCY: &str = r"
local deleted = 0
local expired = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1])
for _, k in ipairs(expired) do
  redis.call('HDEL', KEYS[1], k)
  redis.call('ZREM', KEYS[2], k)
  deleted = deleted + 1
end
local count = redis.call('ZCARD', KEYS[2])
local max = tonumber(ARGV[2])
if count > max then
  local oldest = redis.call('ZRANGE', KEYS[2], 0, count - max - 1)
  for _, k in ipairs(oldest) do
    redis.call('HDEL', KEYS[1], k)
    redis.call('ZREM', KEYS[2], k)
    deleted = deleted + 1
  end
end
return deleted
";

/// The Redis backend of [`TaskStore`].
pub struct RedisStore {
    conn: ConnectionManager,
    counter_key: String,
    tasks_key: String,
    index_key: String,
    meta_key: String,
    hints_key: String,
    idempotency_key: String,
    idempotency_expiry_key: String,
    put_task: Script,
    claim_idempotency: Script,
    replace_idempotency: Script,
    release_idempotency: Script,
    prune_idempotency: Script,
    swap_meta: Script,
    tombstones_prefix: String,
    put_tombstones: Script,
    prune_tombstones: Script,
}

/// A version as stored: 20 digits, zero-padded, so string order is numeric order.
fn padded(version: u64) -> String {
    format!("{version:020}")
}

fn err(e: impl std::fmt::Display) -> StoreError {
    StoreError::new(BACKEND, e)
}

impl RedisStore {
    /// Connects to `url` (`redis://` or `rediss://`); fails when the server cannot be reached within 5 s.
    pub async fn open(url: &str, key_prefix: &str) -> Result<Self, StoreError> {
        let client = Client::open(url).map_err(|e| err(format!("invalid URL: {e}")))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(5)))
            .set_response_timeout(Some(Duration::from_secs(5)))
            .set_number_of_retries(3);
        let conn = ConnectionManager::new_with_config(client, config)
            .await
            .map_err(|e| err(format!("cannot connect: {e}")))?;
        let store = RedisStore {
            conn,
            counter_key: format!("{key_prefix}task_uid"),
            tasks_key: format!("{key_prefix}tasks"),
            index_key: format!("{key_prefix}task_index"),
            meta_key: format!("{key_prefix}meta"),
            hints_key: format!("{key_prefix}hints"),
            idempotency_key: format!("{key_prefix}idempotency"),
            idempotency_expiry_key: format!("{key_prefix}idempotency_expiry"),
            put_task: Script::new(PUT_TASK),
            claim_idempotency: Script::new(CLAIM_IDEMPOTENCY),
            replace_idempotency: Script::new(REPLACE_IDEMPOTENCY),
            release_idempotency: Script::new(RELEASE_IDEMPOTENCY),
            prune_idempotency: Script::new(PRUNE_IDEMPOTENCY),
            swap_meta: Script::new(SWAP_META),
            tombstones_prefix: format!("{key_prefix}tombstones:"),
            put_tombstones: Script::new(PUT_TOMBSTONES),
            prune_tombstones: Script::new(PRUNE_TOMBSTONES),
        };
        store.warn_on_weak_persistence().await;
        Ok(store)
    }

    /// The Redis key of the tombstones of `index` (used by tests to clean up).
    pub fn tombstones_key(&self, index: &str) -> String {
        format!("{}{index}", self.tombstones_prefix)
    }

    /// The Redis key of the hinted-handoff log (used by tests to clean up).
    pub fn hints_key(&self) -> &str {
        &self.hints_key
    }

    /// The Redis keys this store writes (used by tests to clean up).
    pub fn keys(&self) -> [&str; 6] {
        [
            &self.counter_key,
            &self.tasks_key,
            &self.index_key,
            &self.meta_key,
            &self.idempotency_key,
            &self.idempotency_expiry_key,
        ]
    }

    async fn warn_on_weak_persistence(&self) {
        let mut c = self.conn.clone();
        // CONFIG is often disabled on managed Redis: then there is nothing to check.
        let aof: Result<Vec<String>, _> = redis::cmd("CONFIG")
            .arg("GET")
            .arg("appendonly")
            .query_async(&mut c)
            .await;
        let fsync: Result<Vec<String>, _> = redis::cmd("CONFIG")
            .arg("GET")
            .arg("appendfsync")
            .query_async(&mut c)
            .await;
        if let (Ok(aof), Ok(fsync)) = (aof, fsync) {
            let aof = aof.get(1).map(String::as_str).unwrap_or("");
            let fsync = fsync.get(1).map(String::as_str).unwrap_or("");
            if aof != "yes" || fsync != "always" {
                tracing::warn!(
                    appendonly = aof,
                    appendfsync = fsync,
                    "Redis task store without appendonly=yes/appendfsync=always: a Redis crash can lose acknowledged tasks"
                );
            }
        }
    }

    fn records(&self, uids: &[String], raw: Vec<Option<String>>) -> Result<Vec<Value>, StoreError> {
        uids.iter()
            .zip(raw)
            // A uid deleted between the two reads simply drops out.
            .filter_map(|(uid, text)| text.map(|t| decode(BACKEND, &format!("task {uid}"), &t)))
            .collect()
    }
}

#[async_trait]
impl TaskStore for RedisStore {
    fn backend(&self) -> &'static str {
        BACKEND
    }

    async fn next_task_uid(&self) -> Result<u64, StoreError> {
        let mut c = self.conn.clone();
        let n: u64 = redis::cmd("INCR")
            .arg(&self.counter_key)
            .query_async(&mut c)
            .await
            .map_err(err)?;
        n.checked_sub(1)
            .ok_or_else(|| err("uid counter returned 0 after INCR"))
    }

    async fn put_task(&self, uid: u64, record: &Value) -> Result<(), StoreError> {
        let next = uid
            .checked_add(1)
            .ok_or_else(|| err(format!("task uid {uid} is too large")))?;
        let text = encode(BACKEND, record)?;
        let mut c = self.conn.clone();
        let _: i64 = self
            .put_task
            .key(&self.tasks_key)
            .key(&self.index_key)
            .key(&self.counter_key)
            .arg(uid.to_string())
            .arg(text)
            .arg(next.to_string())
            .invoke_async(&mut c)
            .await
            .map_err(err)?;
        Ok(())
    }

    async fn get_task(&self, uid: u64) -> Result<Option<Value>, StoreError> {
        let mut c = self.conn.clone();
        let text: Option<String> = redis::cmd("HGET")
            .arg(&self.tasks_key)
            .arg(uid.to_string())
            .query_async(&mut c)
            .await
            .map_err(err)?;
        text.map(|t| decode(BACKEND, &format!("task {uid}"), &t))
            .transpose()
    }

    async fn list_tasks(
        &self,
        from: Option<u64>,
        limit: usize,
        reverse: bool,
    ) -> Result<Vec<Value>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let mut c = self.conn.clone();
        let bound = from.map(|f| f.to_string());
        let mut cmd = if reverse {
            let mut cmd = redis::cmd("ZRANGEBYSCORE");
            cmd.arg(&self.index_key)
                .arg(bound.as_deref().unwrap_or("-inf"))
                .arg("+inf");
            cmd
        } else {
            let mut cmd = redis::cmd("ZREVRANGEBYSCORE");
            cmd.arg(&self.index_key)
                .arg(bound.as_deref().unwrap_or("+inf"))
                .arg("-inf");
            cmd
        };
        let uids: Vec<String> = cmd
            .arg("LIMIT")
            .arg(0)
            .arg(limit)
            .query_async(&mut c)
            .await
            .map_err(err)?;
        if uids.is_empty() {
            return Ok(Vec::new());
        }
        let raw: Vec<Option<String>> = redis::cmd("HMGET")
            .arg(&self.tasks_key)
            .arg(&uids)
            .query_async(&mut c)
            .await
            .map_err(err)?;
        self.records(&uids, raw)
    }

    async fn count_tasks(&self) -> Result<u64, StoreError> {
        let mut c = self.conn.clone();
        redis::cmd("ZCARD")
            .arg(&self.index_key)
            .query_async(&mut c)
            .await
            .map_err(err)
    }

    async fn delete_tasks(&self, uids: &[u64]) -> Result<u64, StoreError> {
        if uids.is_empty() {
            return Ok(0);
        }
        let ids: Vec<String> = uids.iter().map(u64::to_string).collect();
        let mut c = self.conn.clone();
        let (deleted, _): (u64, u64) = redis::pipe()
            .atomic()
            .cmd("HDEL")
            .arg(&self.tasks_key)
            .arg(&ids)
            .cmd("ZREM")
            .arg(&self.index_key)
            .arg(&ids)
            .query_async(&mut c)
            .await
            .map_err(err)?;
        Ok(deleted)
    }

    async fn claim_idempotency_key(
        &self,
        key: &str,
        record: &Value,
        expires_at: u64,
    ) -> Result<Option<Value>, StoreError> {
        let text = encode(BACKEND, record)?;
        let mut c = self.conn.clone();
        let current: Option<String> = self
            .claim_idempotency
            .key(&self.idempotency_key)
            .key(&self.idempotency_expiry_key)
            .arg(key)
            .arg(text)
            .arg(expires_at.to_string())
            .invoke_async(&mut c)
            .await
            .map_err(err)?;
        current
            .map(|t| decode(BACKEND, &format!("idempotency key {key:?}"), &t))
            .transpose()
    }

    async fn replace_idempotency_key(
        &self,
        key: &str,
        expected: &Value,
        record: &Value,
        expires_at: u64,
    ) -> Result<bool, StoreError> {
        let expected = encode(BACKEND, expected)?;
        let text = encode(BACKEND, record)?;
        let mut c = self.conn.clone();
        let done: i64 = self
            .replace_idempotency
            .key(&self.idempotency_key)
            .key(&self.idempotency_expiry_key)
            .arg(key)
            .arg(expected)
            .arg(text)
            .arg(expires_at.to_string())
            .invoke_async(&mut c)
            .await
            .map_err(err)?;
        Ok(done == 1)
    }

    async fn get_idempotency_key(&self, key: &str) -> Result<Option<Value>, StoreError> {
        let mut c = self.conn.clone();
        let text: Option<String> = redis::cmd("HGET")
            .arg(&self.idempotency_key)
            .arg(key)
            .query_async(&mut c)
            .await
            .map_err(err)?;
        text.map(|t| decode(BACKEND, &format!("idempotency key {key:?}"), &t))
            .transpose()
    }

    async fn release_idempotency_key(
        &self,
        key: &str,
        expected: &Value,
    ) -> Result<bool, StoreError> {
        let expected = encode(BACKEND, expected)?;
        let mut c = self.conn.clone();
        let done: i64 = self
            .release_idempotency
            .key(&self.idempotency_key)
            .key(&self.idempotency_expiry_key)
            .arg(key)
            .arg(expected)
            .invoke_async(&mut c)
            .await
            .map_err(err)?;
        Ok(done == 1)
    }

    async fn prune_idempotency_keys(&self, now: u64, max_keys: u64) -> Result<u64, StoreError> {
        let mut c = self.conn.clone();
        self.prune_idempotency
            .key(&self.idempotency_key)
            .key(&self.idempotency_expiry_key)
            .arg(now.to_string())
            .arg(max_keys.to_string())
            .invoke_async(&mut c)
            .await
            .map_err(err)
    }

    async fn put_meta(&self, key: &str, value: &Value) -> Result<(), StoreError> {
        let text = encode(BACKEND, value)?;
        let mut c = self.conn.clone();
        let _: i64 = redis::cmd("HSET")
            .arg(&self.meta_key)
            .arg(key)
            .arg(text)
            .query_async(&mut c)
            .await
            .map_err(err)?;
        Ok(())
    }

    async fn get_meta(&self, key: &str) -> Result<Option<Value>, StoreError> {
        let mut c = self.conn.clone();
        let text: Option<String> = redis::cmd("HGET")
            .arg(&self.meta_key)
            .arg(key)
            .query_async(&mut c)
            .await
            .map_err(err)?;
        text.map(|t| decode(BACKEND, &format!("meta {key:?}"), &t))
            .transpose()
    }

    async fn delete_meta(&self, key: &str) -> Result<bool, StoreError> {
        let mut c = self.conn.clone();
        let n: u64 = redis::cmd("HDEL")
            .arg(&self.meta_key)
            .arg(key)
            .query_async(&mut c)
            .await
            .map_err(err)?;
        Ok(n > 0)
    }

    async fn swap_meta(
        &self,
        key: &str,
        expected: Option<&Value>,
        value: &Value,
    ) -> Result<bool, StoreError> {
        // Values are stored as their encoding; a stored value equals `expected` when the encodings match
        // (every meta value is written through `encode`, which is deterministic).
        let (has, expected) = match expected {
            Some(v) => ("1", encode(BACKEND, v)?),
            None => ("0", String::new()),
        };
        let text = encode(BACKEND, value)?;
        let mut c = self.conn.clone();
        let stored: i64 = self
            .swap_meta
            .key(&self.meta_key)
            .arg(key)
            .arg(has)
            .arg(expected)
            .arg(text)
            .invoke_async(&mut c)
            .await
            .map_err(err)?;
        Ok(stored == 1)
    }

    async fn list_meta(&self, prefix: &str) -> Result<Vec<(String, Value)>, StoreError> {
        let mut c = self.conn.clone();
        let all: Vec<(String, String)> = redis::cmd("HGETALL")
            .arg(&self.meta_key)
            .query_async(&mut c)
            .await
            .map_err(err)?;
        let mut out = all
            .into_iter()
            .filter(|(k, _)| k.starts_with(prefix))
            .map(|(k, t)| {
                let v = decode(BACKEND, &format!("meta {k:?}"), &t)?;
                Ok((k, v))
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    async fn health(&self) -> Result<(), StoreError> {
        let mut c = self.conn.clone();
        let pong: String = redis::cmd("PING").query_async(&mut c).await.map_err(err)?;
        if pong == "PONG" {
            Ok(())
        } else {
            Err(err(format!("unexpected PING answer {pong:?}")))
        }
    }

    async fn put_hint(&self, seq: u64, hint: &Value) -> Result<(), StoreError> {
        let text = encode(BACKEND, hint)?;
        let mut c = self.conn.clone();
        let _: i64 = redis::cmd("HSET")
            .arg(&self.hints_key)
            .arg(seq)
            .arg(text)
            .query_async(&mut c)
            .await
            .map_err(err)?;
        Ok(())
    }

    async fn delete_hint(&self, seq: u64) -> Result<bool, StoreError> {
        let mut c = self.conn.clone();
        let n: u64 = redis::cmd("HDEL")
            .arg(&self.hints_key)
            .arg(seq)
            .query_async(&mut c)
            .await
            .map_err(err)?;
        Ok(n > 0)
    }

    async fn list_hints(&self) -> Result<Vec<Value>, StoreError> {
        let mut c = self.conn.clone();
        let all: Vec<(String, String)> = redis::cmd("HGETALL")
            .arg(&self.hints_key)
            .query_async(&mut c)
            .await
            .map_err(err)?;
        let mut out = all
            .into_iter()
            .map(|(k, t)| {
                let seq: u64 = k
                    .parse()
                    .map_err(|_| err(format!("corrupt hint key {k:?}")))?;
                Ok((seq, decode(BACKEND, &format!("hint {seq}"), &t)?))
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        out.sort_by_key(|(seq, _)| *seq);
        Ok(out.into_iter().map(|(_, v)| v).collect())
    }

    async fn put_tombstones(
        &self,
        index: &str,
        entries: &[(String, u64)],
    ) -> Result<(), StoreError> {
        if entries.is_empty() {
            return Ok(());
        }
        if let Some((_, v)) = entries.iter().find(|(_, v)| i64::try_from(*v).is_err()) {
            return Err(err(format!("tombstone version {v} is too large")));
        }
        let mut invocation = self.put_tombstones.key(self.tombstones_key(index));
        for (k, v) in entries {
            invocation.arg(k).arg(padded(*v));
        }
        let mut c = self.conn.clone();
        let _: i64 = invocation.invoke_async(&mut c).await.map_err(err)?;
        Ok(())
    }

    async fn list_tombstones(&self, index: &str) -> Result<Vec<(String, u64)>, StoreError> {
        let mut c = self.conn.clone();
        let all: Vec<(String, String)> = redis::cmd("HGETALL")
            .arg(self.tombstones_key(index))
            .query_async(&mut c)
            .await
            .map_err(err)?;
        let mut out = all
            .into_iter()
            .map(|(k, v)| {
                let version: u64 = v
                    .parse()
                    .map_err(|_| err(format!("corrupt tombstone {k:?}: version {v:?}")))?;
                Ok((k, version))
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        out.sort();
        Ok(out)
    }

    async fn prune_tombstones(&self, index: &str, before: u64) -> Result<u64, StoreError> {
        let mut c = self.conn.clone();
        let n: u64 = self
            .prune_tombstones
            .key(self.tombstones_key(index))
            .arg(padded(before))
            .invoke_async(&mut c)
            .await
            .map_err(err)?;
        Ok(n)
    }
}
