//! The SQLite task store: one file, opened once per proxy.
//!
//! Durability: the database runs in WAL mode with `synchronous=FULL`, so every committed transaction is
//! fsynced to the WAL before `COMMIT` returns. `put_task`, `put_meta` and `next_task_uid` each commit before
//! returning, so a task acknowledged to a client survives a crash or power loss of the proxy's machine.
//! (`NORMAL` would be faster but can lose the last transactions on power loss, which would break the
//! "no acknowledged write lost" promise for the task registry.)
//!
//! Blocking SQLite calls run on tokio's blocking pool ([`tokio::task::spawn_blocking`]) behind one mutex:
//! the store is not a throughput path (one write per client write request).
//!
//! Schema (version 1, recorded in `PRAGMA user_version`; opening a file with a newer version fails):
//! - `tasks(uid INTEGER PRIMARY KEY, record TEXT)`: one JSON record per task.
//! - `meta(key TEXT PRIMARY KEY, value TEXT)`: the keyed metadata area.
//! - `counters(name TEXT PRIMARY KEY, value INTEGER)`: `next_task_uid` = the next uid to hand out.
//! - `tombstones(index_uid, key, version, PRIMARY KEY (index_uid, key))`: delete tombstones, created on open
//!   when missing
//! - `hints(seq INTEGER PRIMARY KEY, hint TEXT)`: the hinted-handoff log, created on open when missing
//!   (an additive table: files written before it existed open unchanged).
//! - `idempotency(key TEXT PRIMARY KEY, record TEXT, expires_at INTEGER)` with an index on
//!   `(expires_at, key)`: the idempotency-key records. Added to version 1 files with `IF NOT EXISTS` on
//!   every open (an additive table an older Miroir simply ignores, so no version bump).

use super::{decode, encode, StoreError, TaskStore};
use async_trait::async_trait;
use rusqlite::{params, Connection, OptionalExtension};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

const BACKEND: &str = "sqlite";
const SCHEMA_VERSION: i64 = 1;

/// The SQLite backend of [`TaskStore`].
pub struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
    path: PathBuf,
}

fn err(e: impl std::fmt::Display) -> StoreError {
    StoreError::new(BACKEND, e)
}

/// The rows of `sql` (run with `params`, the statement cached) as pairs of their first two columns.
fn pairs<A: rusqlite::types::FromSql, B: rusqlite::types::FromSql>(
    c: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
) -> Result<Vec<(A, B)>, StoreError> {
    let mut stmt = c.prepare_cached(sql).map_err(err)?;
    let rows = stmt
        .query_map(params, |r| Ok((r.get(0)?, r.get(1)?)))
        .map_err(err)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(err)?;
    Ok(rows)
}

fn to_i64(uid: u64) -> Result<i64, StoreError> {
    i64::try_from(uid).map_err(|_| err(format!("task uid {uid} is larger than {}", i64::MAX)))
}

impl SqliteStore {
    /// Opens (creating if needed, with its parent directory) the database at `path`, switches it to WAL
    /// with `synchronous=FULL` and creates or migrates the schema.
    pub async fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        let path = path.as_ref().to_path_buf();
        let p = path.clone();
        let conn = tokio::task::spawn_blocking(move || open_blocking(&p))
            .await
            .map_err(err)??;
        Ok(SqliteStore {
            conn: Arc::new(Mutex::new(conn)),
            path,
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    async fn run<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let conn = Arc::clone(&self.conn);
        tokio::task::spawn_blocking(move || {
            // A panic while holding the lock cannot leave SQLite inconsistent (transactions roll back),
            // so a poisoned mutex is still usable.
            let mut guard = conn.lock().unwrap_or_else(|p| p.into_inner());
            f(&mut guard)
        })
        .await
        .map_err(err)?
    }
}

fn open_blocking(path: &Path) -> Result<Connection, StoreError> {
    if let Some(parent) = path.parent() {
        if !parent.as_os_str().is_empty() {
            std::fs::create_dir_all(parent)
                .map_err(|e| err(format!("creating {}: {e}", parent.display())))?;
        }
    }
    let mut conn =
        Connection::open(path).map_err(|e| err(format!("opening {}: {e}", path.display())))?;
    conn.busy_timeout(std::time::Duration::from_secs(5))
        .map_err(err)?;
    let mode: String = conn
        .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
        .map_err(err)?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(err(format!(
            "could not switch {} to WAL mode (got {mode})",
            path.display()
        )));
    }
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(err)?;
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(err)?;
    if version > SCHEMA_VERSION {
        return Err(err(format!(
            "{} has schema version {version}, newer than this Miroir understands ({SCHEMA_VERSION})",
            path.display()
        )));
    }
    if version < 1 {
        let tx = conn.transaction().map_err(err)?;
        tx.execute_batch(
            "CREATE TABLE IF NOT EXISTS tasks (uid INTEGER PRIMARY KEY, record TEXT NOT NULL);
             CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
             CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
             INSERT OR IGNORE INTO counters (name, value) VALUES ('next_task_uid', 0);
             PRAGMA user_version = 1;",
        )
        .map_err(err)?;
        tx.commit().map_err(err)?;
    }
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS hints (seq INTEGER PRIMARY KEY, hint TEXT NOT NULL);
         CREATE TABLE IF NOT EXISTS idempotency (key TEXT PRIMARY KEY, record TEXT NOT NULL, expires_at INTEGER NOT NULL);
         CREATE INDEX IF NOT EXISTS idempotency_expiry ON idempotency (expires_at, key);
         CREATE TABLE IF NOT EXISTS tombstones (index_uid TEXT NOT NULL, key TEXT NOT NULL, version INTEGER NOT NULL, PRIMARY KEY (index_uid, key));",
    )
    .map_err(err)?;
    Ok(conn)
}

/// A stored idempotency record, decoded, if any.
fn idempotency_record(c: &Connection, key: &str) -> Result<Option<Value>, StoreError> {
    let text: Option<String> = c
        .query_row(
            "SELECT record FROM idempotency WHERE key = ?1",
            [key],
            |r| r.get(0),
        )
        .optional()
        .map_err(err)?;
    text.map(|t| decode(BACKEND, &format!("idempotency key {key:?}"), &t))
        .transpose()
}

fn expiry(expires_at: u64) -> i64 {
    i64::try_from(expires_at).unwrap_or(i64::MAX)
}

#[async_trait]
impl TaskStore for SqliteStore {
    fn backend(&self) -> &'static str {
        BACKEND
    }

    async fn next_task_uid(&self) -> Result<u64, StoreError> {
        self.run(|c| {
            let uid: i64 = c
                .query_row(
                    "UPDATE counters SET value = value + 1 WHERE name = 'next_task_uid' RETURNING value - 1",
                    [],
                    |r| r.get(0),
                )
                .map_err(err)?;
            u64::try_from(uid).map_err(|_| err(format!("corrupt uid counter {uid}")))
        })
        .await
    }

    async fn put_task(&self, uid: u64, record: &Value) -> Result<(), StoreError> {
        let id = to_i64(uid)?;
        let next = id
            .checked_add(1)
            .ok_or_else(|| err(format!("task uid {uid} is too large")))?;
        let text = encode(BACKEND, record)?;
        self.run(move |c| {
            let tx = c.transaction().map_err(err)?;
            tx.execute(
                "INSERT OR REPLACE INTO tasks (uid, record) VALUES (?1, ?2)",
                params![id, text],
            )
            .map_err(err)?;
            tx.execute(
                "UPDATE counters SET value = MAX(value, ?1) WHERE name = 'next_task_uid'",
                params![next],
            )
            .map_err(err)?;
            tx.commit().map_err(err)
        })
        .await
    }

    async fn get_task(&self, uid: u64) -> Result<Option<Value>, StoreError> {
        let Ok(id) = i64::try_from(uid) else {
            return Ok(None);
        };
        let text: Option<String> = self
            .run(move |c| {
                c.query_row("SELECT record FROM tasks WHERE uid = ?1", [id], |r| {
                    r.get(0)
                })
                .optional()
                .map_err(err)
            })
            .await?;
        text.map(|t| decode(BACKEND, &format!("task {uid}"), &t))
            .transpose()
    }

    async fn list_tasks(
        &self,
        from: Option<u64>,
        limit: usize,
        reverse: bool,
    ) -> Result<Vec<Value>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        // `from` beyond i64 is beyond every stored uid.
        let from = from.map(|f| i64::try_from(f).unwrap_or(i64::MAX));
        let rows: Vec<(i64, String)> = self
            .run(move |c| {
                let (sql, bound) = if reverse {
                    (
                        "SELECT uid, record FROM tasks WHERE uid >= ?1 ORDER BY uid ASC LIMIT ?2",
                        from.unwrap_or(i64::MIN),
                    )
                } else {
                    (
                        "SELECT uid, record FROM tasks WHERE uid <= ?1 ORDER BY uid DESC LIMIT ?2",
                        from.unwrap_or(i64::MAX),
                    )
                };
                pairs(c, sql, params![bound, limit])
            })
            .await?;
        rows.into_iter()
            .map(|(uid, t)| decode(BACKEND, &format!("task {uid}"), &t))
            .collect()
    }

    async fn count_tasks(&self) -> Result<u64, StoreError> {
        self.run(|c| {
            let n: i64 = c
                .query_row("SELECT COUNT(*) FROM tasks", [], |r| r.get(0))
                .map_err(err)?;
            Ok(u64::try_from(n).unwrap_or(0))
        })
        .await
    }

    async fn delete_tasks(&self, uids: &[u64]) -> Result<u64, StoreError> {
        let ids: Vec<i64> = uids.iter().filter_map(|u| i64::try_from(*u).ok()).collect();
        self.run(move |c| {
            let tx = c.transaction().map_err(err)?;
            let mut deleted = 0u64;
            {
                let mut stmt = tx
                    .prepare_cached("DELETE FROM tasks WHERE uid = ?1")
                    .map_err(err)?;
                for id in ids {
                    deleted += stmt.execute([id]).map_err(err)? as u64;
                }
            }
            tx.commit().map_err(err)?;
            Ok(deleted)
        })
        .await
    }

    async fn claim_idempotency_key(
        &self,
        key: &str,
        record: &Value,
        expires_at: u64,
    ) -> Result<Option<Value>, StoreError> {
        let key = key.to_string();
        let text = encode(BACKEND, record)?;
        let at = expiry(expires_at);
        self.run(move |c| {
            let tx = c.transaction().map_err(err)?;
            if let Some(existing) = idempotency_record(&tx, &key)? {
                return Ok(Some(existing));
            }
            tx.execute(
                "INSERT INTO idempotency (key, record, expires_at) VALUES (?1, ?2, ?3)",
                params![key, text, at],
            )
            .map_err(err)?;
            tx.commit().map_err(err)?;
            Ok(None)
        })
        .await
    }

    async fn replace_idempotency_key(
        &self,
        key: &str,
        expected: &Value,
        record: &Value,
        expires_at: u64,
    ) -> Result<bool, StoreError> {
        let key = key.to_string();
        let expected = expected.clone();
        let text = encode(BACKEND, record)?;
        let at = expiry(expires_at);
        self.run(move |c| {
            let tx = c.transaction().map_err(err)?;
            if idempotency_record(&tx, &key)?.as_ref() != Some(&expected) {
                return Ok(false);
            }
            tx.execute(
                "UPDATE idempotency SET record = ?2, expires_at = ?3 WHERE key = ?1",
                params![key, text, at],
            )
            .map_err(err)?;
            tx.commit().map_err(err)?;
            Ok(true)
        })
        .await
    }

    async fn get_idempotency_key(&self, key: &str) -> Result<Option<Value>, StoreError> {
        let key = key.to_string();
        self.run(move |c| idempotency_record(c, &key)).await
    }

    async fn release_idempotency_key(
        &self,
        key: &str,
        expected: &Value,
    ) -> Result<bool, StoreError> {
        let key = key.to_string();
        let expected = expected.clone();
        self.run(move |c| {
            let tx = c.transaction().map_err(err)?;
            if idempotency_record(&tx, &key)?.as_ref() != Some(&expected) {
                return Ok(false);
            }
            tx.execute("DELETE FROM idempotency WHERE key = ?1", [&key])
                .map_err(err)?;
            tx.commit().map_err(err)?;
            Ok(true)
        })
        .await
    }

    async fn prune_idempotency_keys(&self, now: u64, max_keys: u64) -> Result<u64, StoreError> {
        let now = expiry(now);
        let max = i64::try_from(max_keys).unwrap_or(i64::MAX);
        self.run(move |c| {
            let tx = c.transaction().map_err(err)?;
            let expired = tx
                .execute("DELETE FROM idempotency WHERE expires_at <= ?1", [now])
                .map_err(err)?;
            let count: i64 = tx
                .query_row("SELECT COUNT(*) FROM idempotency", [], |r| r.get(0))
                .map_err(err)?;
            let excess = count.saturating_sub(max).max(0);
            let evicted = if excess > 0 {
                tx.execute(
                    "DELETE FROM idempotency WHERE key IN (SELECT key FROM idempotency ORDER BY expires_at, key LIMIT ?1)",
                    [excess],
                )
                .map_err(err)?
            } else {
                0
            };
            tx.commit().map_err(err)?;
            Ok((expired + evicted) as u64)
        })
        .await
    }

    async fn put_meta(&self, key: &str, value: &Value) -> Result<(), StoreError> {
        let key = key.to_string();
        let text = encode(BACKEND, value)?;
        self.run(move |c| {
            c.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)",
                params![key, text],
            )
            .map(|_| ())
            .map_err(err)
        })
        .await
    }

    async fn get_meta(&self, key: &str) -> Result<Option<Value>, StoreError> {
        let k = key.to_string();
        let text: Option<String> = self
            .run(move |c| {
                c.query_row("SELECT value FROM meta WHERE key = ?1", [k], |r| r.get(0))
                    .optional()
                    .map_err(err)
            })
            .await?;
        text.map(|t| decode(BACKEND, &format!("meta {key:?}"), &t))
            .transpose()
    }

    async fn delete_meta(&self, key: &str) -> Result<bool, StoreError> {
        let k = key.to_string();
        self.run(move |c| {
            c.execute("DELETE FROM meta WHERE key = ?1", [k])
                .map(|n| n > 0)
                .map_err(err)
        })
        .await
    }

    async fn swap_meta(
        &self,
        key: &str,
        expected: Option<&Value>,
        value: &Value,
    ) -> Result<bool, StoreError> {
        let k = key.to_string();
        let expected = expected.cloned();
        let text = encode(BACKEND, value)?;
        self.run(move |c| {
            let tx = c
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(err)?;
            let current: Option<String> = tx
                .query_row("SELECT value FROM meta WHERE key = ?1", [&k], |r| r.get(0))
                .optional()
                .map_err(err)?;
            let current = current
                .map(|t| decode(BACKEND, &format!("meta {k:?}"), &t))
                .transpose()?;
            if current != expected {
                return Ok(false);
            }
            tx.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)",
                params![k, text],
            )
            .map_err(err)?;
            tx.commit().map_err(err)?;
            Ok(true)
        })
        .await
    }

    async fn list_meta(&self, prefix: &str) -> Result<Vec<(String, Value)>, StoreError> {
        let p = prefix.to_string();
        let rows: Vec<(String, String)> = self
            .run(move |c| {
                // Prefix match without LIKE, whose wildcards would need escaping.
                pairs(
                    c,
                    "SELECT key, value FROM meta WHERE substr(key, 1, length(?1)) = ?1 ORDER BY key",
                    [p],
                )
            })
            .await?;
        rows.into_iter()
            .map(|(k, t)| {
                let v = decode(BACKEND, &format!("meta {k:?}"), &t)?;
                Ok((k, v))
            })
            .collect()
    }

    async fn health(&self) -> Result<(), StoreError> {
        self.run(|c| {
            c.query_row(
                "SELECT value FROM counters WHERE name = 'next_task_uid'",
                [],
                |r| r.get::<_, i64>(0),
            )
            .map(|_| ())
            .map_err(err)
        })
        .await
    }

    async fn put_hint(&self, seq: u64, hint: &Value) -> Result<(), StoreError> {
        let id = i64::try_from(seq).map_err(|_| err(format!("hint {seq} is too large")))?;
        let text = encode(BACKEND, hint)?;
        self.run(move |c| {
            c.execute(
                "INSERT OR REPLACE INTO hints (seq, hint) VALUES (?1, ?2)",
                params![id, text],
            )
            .map(|_| ())
            .map_err(err)
        })
        .await
    }

    async fn delete_hint(&self, seq: u64) -> Result<bool, StoreError> {
        let Ok(id) = i64::try_from(seq) else {
            return Ok(false);
        };
        self.run(move |c| {
            c.execute("DELETE FROM hints WHERE seq = ?1", [id])
                .map(|n| n > 0)
                .map_err(err)
        })
        .await
    }

    async fn list_hints(&self) -> Result<Vec<Value>, StoreError> {
        let rows: Vec<(i64, String)> = self
            .run(|c| pairs(c, "SELECT seq, hint FROM hints ORDER BY seq ASC", []))
            .await?;
        rows.into_iter()
            .map(|(seq, t)| decode(BACKEND, &format!("hint {seq}"), &t))
            .collect()
    }

    async fn put_tombstones(
        &self,
        index: &str,
        entries: &[(String, u64)],
    ) -> Result<(), StoreError> {
        let rows = entries
            .iter()
            .map(|(k, v)| {
                i64::try_from(*v)
                    .map(|v| (k.clone(), v))
                    .map_err(|_| err(format!("tombstone version {v} is too large")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let index = index.to_string();
        self.run(move |c| {
            let tx = c.transaction().map_err(err)?;
            for (key, version) in &rows {
                tx.execute(
                    "INSERT INTO tombstones (index_uid, key, version) VALUES (?1, ?2, ?3)
                     ON CONFLICT (index_uid, key) DO UPDATE SET version = MAX(version, excluded.version)",
                    params![index, key, version],
                )
                .map_err(err)?;
            }
            tx.commit().map_err(err)
        })
        .await
    }

    async fn list_tombstones(&self, index: &str) -> Result<Vec<(String, u64)>, StoreError> {
        let index = index.to_string();
        let rows: Vec<(String, i64)> = self
            .run(move |c| {
                pairs(
                    c,
                    "SELECT key, version FROM tombstones WHERE index_uid = ?1 ORDER BY key ASC",
                    [index],
                )
            })
            .await?;
        rows.into_iter()
            .map(|(k, v)| {
                u64::try_from(v)
                    .map(|v| (k.clone(), v))
                    .map_err(|_| err(format!("corrupt tombstone {k:?}: version {v}")))
            })
            .collect()
    }

    async fn prune_tombstones(&self, index: &str, before: u64) -> Result<u64, StoreError> {
        let before = i64::try_from(before).unwrap_or(i64::MAX);
        let index = index.to_string();
        self.run(move |c| {
            c.execute(
                "DELETE FROM tombstones WHERE index_uid = ?1 AND version < ?2",
                params![index, before],
            )
            .map(|n| n as u64)
            .map_err(err)
        })
        .await
    }
}
