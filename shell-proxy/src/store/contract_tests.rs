//! One contract test suite, run against both backends.
//!
//! Redis: the tests use `MIROIR_TEST_REDIS_URL` when it is set (and fail if that server is unreachable).
//! Otherwise they try `redis://127.0.0.1:6379`; when nothing answers there they FAIL if the `CI`
//! environment variable is set, and are skipped with a printed notice outside CI.

use super::redis::RedisStore;
use super::sqlite::SqliteStore;
use super::TaskStore;
use serde_json::json;
use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;

/// The contract. `open` must return a store over the same data every time it is called (a "restart").
pub(crate) async fn run_contract<F, Fut>(open: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Arc<dyn TaskStore>>,
{
    let s = open().await;
    s.health().await.unwrap();

    // Uids start at 0 and increase.
    assert_eq!(s.next_task_uid().await.unwrap(), 0);
    assert_eq!(s.next_task_uid().await.unwrap(), 1);
    assert_eq!(s.get_task(0).await.unwrap(), None);
    assert!(s.list_tasks(None, 10, false).await.unwrap().is_empty());
    assert_eq!(s.count_tasks().await.unwrap(), 0);

    // Store 5 tasks under fresh uids.
    let mut uids = Vec::new();
    for i in 0..5 {
        let uid = s.next_task_uid().await.unwrap();
        s.put_task(uid, &json!({"uid": uid, "n": i, "status": "enqueued"}))
            .await
            .unwrap();
        uids.push(uid);
    }
    assert_eq!(uids, vec![2, 3, 4, 5, 6]);
    assert_eq!(s.count_tasks().await.unwrap(), 5);
    assert_eq!(
        s.get_task(4).await.unwrap(),
        Some(json!({"uid": 4, "n": 2, "status": "enqueued"}))
    );
    // Replacing a record.
    s.put_task(4, &json!({"uid": 4, "n": 2, "status": "succeeded"}))
        .await
        .unwrap();
    assert_eq!(s.get_task(4).await.unwrap().unwrap()["status"], "succeeded");

    let list_uids = |v: Vec<serde_json::Value>| -> Vec<u64> {
        v.iter().map(|t| t["uid"].as_u64().unwrap()).collect()
    };
    // Newest first by default.
    assert_eq!(
        list_uids(s.list_tasks(None, 10, false).await.unwrap()),
        vec![6, 5, 4, 3, 2]
    );
    assert_eq!(
        list_uids(s.list_tasks(None, 2, false).await.unwrap()),
        vec![6, 5]
    );
    assert_eq!(
        list_uids(s.list_tasks(Some(4), 10, false).await.unwrap()),
        vec![4, 3, 2]
    );
    assert_eq!(
        list_uids(s.list_tasks(Some(100), 1, false).await.unwrap()),
        vec![6]
    );
    assert!(s.list_tasks(Some(1), 10, false).await.unwrap().is_empty());
    // Oldest first with reverse.
    assert_eq!(
        list_uids(s.list_tasks(None, 3, true).await.unwrap()),
        vec![2, 3, 4]
    );
    assert_eq!(
        list_uids(s.list_tasks(Some(5), 10, true).await.unwrap()),
        vec![5, 6]
    );
    assert!(s.list_tasks(None, 0, false).await.unwrap().is_empty());
    assert!(s
        .list_tasks(Some(u64::MAX), 0, true)
        .await
        .unwrap()
        .is_empty());

    // Deleting: counts only existing tasks; uids stay retired.
    assert_eq!(s.delete_tasks(&[3, 5, 99]).await.unwrap(), 2);
    assert_eq!(s.delete_tasks(&[]).await.unwrap(), 0);
    assert_eq!(s.get_task(3).await.unwrap(), None);
    assert_eq!(s.count_tasks().await.unwrap(), 3);
    assert_eq!(
        list_uids(s.list_tasks(None, 10, false).await.unwrap()),
        vec![6, 4, 2]
    );
    assert_eq!(s.next_task_uid().await.unwrap(), 7);

    // Storing a uid ahead of the counter moves the counter past it.
    s.put_task(20, &json!({"uid": 20})).await.unwrap();
    assert_eq!(s.next_task_uid().await.unwrap(), 21);

    // Many concurrent callers get distinct uids, all above what was handed out before.
    let mut handles = Vec::new();
    for _ in 0..64 {
        let s = Arc::clone(&s);
        handles.push(tokio::spawn(
            async move { s.next_task_uid().await.unwrap() },
        ));
    }
    let mut got = Vec::new();
    for h in handles {
        got.push(h.await.unwrap());
    }
    let distinct: HashSet<u64> = got.iter().copied().collect();
    assert_eq!(distinct.len(), 64, "duplicate uids: {got:?}");
    assert!(got.iter().all(|u| *u > 21 && *u <= 21 + 64), "{got:?}");
    // And concurrent writers all land.
    let mut handles = Vec::new();
    for i in 0..16u64 {
        let s = Arc::clone(&s);
        handles.push(tokio::spawn(async move {
            let uid = s.next_task_uid().await.unwrap();
            s.put_task(uid, &json!({"uid": uid, "writer": i}))
                .await
                .unwrap();
            uid
        }));
    }
    let mut written = Vec::new();
    for h in handles {
        written.push(h.await.unwrap());
    }
    for uid in &written {
        assert_eq!(s.get_task(*uid).await.unwrap().unwrap()["uid"], *uid);
    }
    let max_written = *written.iter().max().unwrap();
    let newest = s.list_tasks(None, 16, false).await.unwrap();
    let newest = list_uids(newest);
    assert_eq!(newest.len(), 16);
    assert!(newest.windows(2).all(|w| w[0] > w[1]), "{newest:?}");
    assert_eq!(newest[0], max_written);

    // Metadata.
    assert_eq!(s.get_meta("index/movies").await.unwrap(), None);
    s.put_meta("index/movies", &json!({"primaryKey": "id"}))
        .await
        .unwrap();
    s.put_meta("index/books", &json!({"primaryKey": null}))
        .await
        .unwrap();
    s.put_meta("topology", &json!({"epoch": 3})).await.unwrap();
    s.put_meta("index/movies", &json!({"primaryKey": "movie_id"}))
        .await
        .unwrap();
    assert_eq!(
        s.get_meta("index/movies").await.unwrap(),
        Some(json!({"primaryKey": "movie_id"}))
    );
    let listed = s.list_meta("index/").await.unwrap();
    assert_eq!(
        listed,
        vec![
            ("index/books".to_string(), json!({"primaryKey": null})),
            (
                "index/movies".to_string(),
                json!({"primaryKey": "movie_id"})
            ),
        ]
    );
    assert_eq!(s.list_meta("").await.unwrap().len(), 3);
    assert!(s.list_meta("index/%").await.unwrap().is_empty());
    assert!(s.delete_meta("index/books").await.unwrap());
    assert!(!s.delete_meta("index/books").await.unwrap());
    assert_eq!(s.get_meta("index/books").await.unwrap(), None);

    // Compare-and-set: from absent, then from the stored value; a stale expectation changes nothing.
    let t1 = json!({"epoch": 1, "nodes": ["a"]});
    let t2 = json!({"epoch": 2, "nodes": ["a", "b"]});
    assert!(s.swap_meta("elastic/topology", None, &t1).await.unwrap());
    assert!(!s.swap_meta("elastic/topology", None, &t2).await.unwrap());
    assert!(!s
        .swap_meta("elastic/topology", Some(&t2), &t2)
        .await
        .unwrap());
    assert!(s
        .swap_meta("elastic/topology", Some(&t1), &t2)
        .await
        .unwrap());
    assert!(!s
        .swap_meta("elastic/topology", Some(&t1), &json!({"epoch": 3}))
        .await
        .unwrap());
    assert_eq!(s.get_meta("elastic/topology").await.unwrap(), Some(t2));
    assert!(s.delete_meta("elastic/topology").await.unwrap());

    // Idempotency keys: claim once, compare-and-swap, release, prune.
    let r1 = json!({"fingerprint": "f1", "claimedAt": 10, "expiresAt": 100, "taskUid": null});
    assert_eq!(s.get_idempotency_key("k1").await.unwrap(), None);
    assert_eq!(s.claim_idempotency_key("k1", &r1, 100).await.unwrap(), None);
    let other = json!({"fingerprint": "f2"});
    assert_eq!(
        s.claim_idempotency_key("k1", &other, 100).await.unwrap(),
        Some(r1.clone()),
        "a claimed key is not claimed again"
    );
    assert_eq!(s.get_idempotency_key("k1").await.unwrap(), Some(r1.clone()));
    let r1_task = json!({"fingerprint": "f1", "claimedAt": 10, "expiresAt": 100, "taskUid": 7});
    assert!(!s
        .replace_idempotency_key("k1", &other, &r1_task, 100)
        .await
        .unwrap());
    assert!(!s
        .replace_idempotency_key("missing", &r1, &r1_task, 100)
        .await
        .unwrap());
    assert_eq!(s.get_idempotency_key("missing").await.unwrap(), None);
    assert!(s
        .replace_idempotency_key("k1", &r1, &r1_task, 100)
        .await
        .unwrap());
    assert_eq!(
        s.get_idempotency_key("k1").await.unwrap(),
        Some(r1_task.clone())
    );
    // the swap is against the current record only
    assert!(!s
        .replace_idempotency_key("k1", &r1, &other, 100)
        .await
        .unwrap());
    assert!(!s.release_idempotency_key("k1", &r1).await.unwrap());
    assert!(s.release_idempotency_key("k1", &r1_task).await.unwrap());
    assert_eq!(s.get_idempotency_key("k1").await.unwrap(), None);
    assert!(!s.release_idempotency_key("k1", &r1_task).await.unwrap());
    // Concurrent claims of one key: exactly one wins.
    let mut handles = Vec::new();
    for i in 0..16u64 {
        let s = Arc::clone(&s);
        handles.push(tokio::spawn(async move {
            let r = json!({"fingerprint": "race", "claimer": i});
            (i, s.claim_idempotency_key("race", &r, 50).await.unwrap())
        }));
    }
    let mut winners = Vec::new();
    for h in handles {
        let (i, existing) = h.await.unwrap();
        if existing.is_none() {
            winners.push(i);
        }
    }
    assert_eq!(winners.len(), 1, "{winners:?}");
    assert_eq!(
        s.get_idempotency_key("race").await.unwrap().unwrap()["claimer"],
        winners[0]
    );
    // Pruning: expired first (expires_at <= now), then the closest to expiry beyond the bound, ties by key.
    for (k, at) in [
        ("p-a", 150u64),
        ("p-b", 500),
        ("p-c", 300),
        ("p-d", 400),
        ("p-e", 300),
    ] {
        assert_eq!(
            s.claim_idempotency_key(k, &json!({"k": k}), at)
                .await
                .unwrap(),
            None
        );
    }
    // "race" (50) and "p-a" (150) expire at 150; four live, bound 3: "p-c" (300, before "p-e") goes.
    assert_eq!(s.prune_idempotency_keys(150, 3).await.unwrap(), 3);
    for (k, kept) in [
        ("race", false),
        ("p-a", false),
        ("p-b", true),
        ("p-c", false),
        ("p-d", true),
        ("p-e", true),
    ] {
        assert_eq!(
            s.get_idempotency_key(k).await.unwrap().is_some(),
            kept,
            "{k}"
        );
    }
    assert_eq!(s.prune_idempotency_keys(150, 3).await.unwrap(), 0);
    // a swap moves the expiry
    assert!(s
        .replace_idempotency_key("p-e", &json!({"k": "p-e"}), &json!({"k": "e2"}), 1_000)
        .await
        .unwrap());
    assert_eq!(s.prune_idempotency_keys(450, 10).await.unwrap(), 1, "p-d");
    assert_eq!(
        s.get_idempotency_key("p-e").await.unwrap(),
        Some(json!({"k": "e2"}))
    );

    // Restart: everything is still there and uids keep growing.
    let before = s.next_task_uid().await.unwrap();
    drop(s);
    let s = open().await;
    s.health().await.unwrap();
    assert_eq!(
        s.get_task(4).await.unwrap(),
        Some(json!({"uid": 4, "n": 2, "status": "succeeded"}))
    );
    assert_eq!(s.get_task(3).await.unwrap(), None);
    assert_eq!(s.count_tasks().await.unwrap(), 3 + 1 + 16);
    for uid in &written {
        assert!(s.get_task(*uid).await.unwrap().is_some());
    }
    assert_eq!(
        s.get_meta("topology").await.unwrap(),
        Some(json!({"epoch": 3}))
    );
    assert_eq!(
        s.get_idempotency_key("p-e").await.unwrap(),
        Some(json!({"k": "e2"})),
        "idempotency records survive a restart"
    );
    let after = s.next_task_uid().await.unwrap();
    assert!(after > before, "uid {after} after restart, {before} before");
}

/// The hint part of the contract: hints are listed in ascending sequence order (not insertion order),
/// replaced in place, deleted once, and survive a restart.
pub(crate) async fn run_hint_contract<F, Fut>(open: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Arc<dyn TaskStore>>,
{
    let s = open().await;
    assert!(s.list_hints().await.unwrap().is_empty());
    for seq in [10u64, 2, 7, 1_000_000_000_000] {
        s.put_hint(seq, &json!({"seq": seq, "attempts": 0}))
            .await
            .unwrap();
    }
    s.put_hint(7, &json!({"seq": 7, "attempts": 3}))
        .await
        .unwrap();
    let seqs = |v: Vec<serde_json::Value>| -> Vec<u64> {
        v.iter().map(|h| h["seq"].as_u64().unwrap()).collect()
    };
    assert_eq!(
        seqs(s.list_hints().await.unwrap()),
        vec![2, 7, 10, 1_000_000_000_000]
    );
    assert!(s.delete_hint(2).await.unwrap());
    assert!(!s.delete_hint(2).await.unwrap(), "deleted once");
    assert!(!s.delete_hint(99).await.unwrap());
    drop(s);
    let s = open().await;
    let hints = s.list_hints().await.unwrap();
    assert_eq!(seqs(hints.clone()), vec![7, 10, 1_000_000_000_000]);
    assert_eq!(hints[0]["attempts"], 3, "replaced in place");
    for seq in [7, 10, 1_000_000_000_000] {
        assert!(s.delete_hint(seq).await.unwrap());
    }
    assert!(s.list_hints().await.unwrap().is_empty());
}

/// The tombstone part of the contract: a key keeps its greatest version, indexes are apart, listing is
/// sorted by key, pruning removes only versions below the bound, and everything survives a restart.
pub(crate) async fn run_tombstone_contract<F, Fut>(open: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Arc<dyn TaskStore>>,
{
    let s = open().await;
    assert!(s.list_tombstones("docs").await.unwrap().is_empty());
    let big = 1u64 << 60;
    s.put_tombstones(
        "docs",
        &[("id:b".into(), 5), ("id:a".into(), big), ("all".into(), 3)],
    )
    .await
    .unwrap();
    s.put_tombstones("docs", &[("id:b".into(), 4), ("all".into(), 9)])
        .await
        .unwrap();
    s.put_tombstones("other", &[("filter:\"x = 1\"".into(), 2)])
        .await
        .unwrap();
    s.put_tombstones("docs", &[]).await.unwrap();
    assert_eq!(
        s.list_tombstones("docs").await.unwrap(),
        vec![
            ("all".to_string(), 9),
            ("id:a".to_string(), big),
            ("id:b".to_string(), 5)
        ],
        "a lower version never replaces a higher one"
    );
    assert!(s
        .put_tombstones("docs", &[("id:c".into(), u64::MAX)])
        .await
        .is_err());
    drop(s);
    let s = open().await;
    assert_eq!(s.list_tombstones("docs").await.unwrap().len(), 3, "durable");
    assert_eq!(s.prune_tombstones("docs", 9).await.unwrap(), 1);
    assert_eq!(
        s.list_tombstones("docs").await.unwrap(),
        vec![("all".to_string(), 9), ("id:a".to_string(), big)]
    );
    assert_eq!(s.prune_tombstones("docs", u64::MAX).await.unwrap(), 2);
    assert!(s.list_tombstones("docs").await.unwrap().is_empty());
    assert_eq!(
        s.list_tombstones("other").await.unwrap(),
        vec![("filter:\"x = 1\"".to_string(), 2)],
        "indexes are apart"
    );
    assert_eq!(s.prune_tombstones("other", 3).await.unwrap(), 1);
}

#[tokio::test]
async fn sqlite_passes_the_tombstone_contract() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tombstones.db");
    run_tombstone_contract(|| {
        let path = path.clone();
        async move {
            let s: Arc<dyn TaskStore> = Arc::new(SqliteStore::open(&path).await.unwrap());
            s
        }
    })
    .await;
}

/// A Redis store on `url` under `prefix`, as the contracts take it (a test needing Redis fails loudly
/// when it cannot connect).
async fn open_redis(url: String, prefix: String) -> Arc<dyn TaskStore> {
    Arc::new(
        RedisStore::open(&url, &prefix)
            .await
            .unwrap_or_else(|e| panic!("Redis at {url}: {e}")),
    )
}

#[tokio::test]
async fn redis_passes_the_tombstone_contract() {
    let Some(url) = redis_for_tests().await else {
        return;
    };
    let prefix = unique_prefix();
    run_tombstone_contract(|| open_redis(url.clone(), prefix.clone())).await;
    let store = RedisStore::open(&url, &prefix).await.unwrap();
    let client = redis::Client::open(url.as_str()).unwrap();
    let mut c = client.get_multiplexed_async_connection().await.unwrap();
    let _: i64 = redis::cmd("HSET")
        .arg(store.tombstones_key("docs"))
        .arg("id:x")
        .arg("soon")
        .query_async(&mut c)
        .await
        .unwrap();
    let e = store.list_tombstones("docs").await.err().unwrap();
    assert!(e.message.contains("corrupt tombstone"), "{e}");
    for index in ["docs", "other"] {
        let _: i64 = redis::cmd("DEL")
            .arg(store.tombstones_key(index))
            .query_async(&mut c)
            .await
            .unwrap();
    }
    cleanup(&url, &prefix).await;
}

#[tokio::test]
async fn sqlite_passes_the_hint_contract() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hints.db");
    run_hint_contract(|| {
        let path = path.clone();
        async move {
            let s: Arc<dyn TaskStore> = Arc::new(SqliteStore::open(&path).await.unwrap());
            s
        }
    })
    .await;
    // A corrupt hint is reported, not skipped; a sequence beyond SQLite's integers is refused.
    let s = SqliteStore::open(&path).await.unwrap();
    {
        let c = rusqlite::Connection::open(&path).unwrap();
        c.execute("INSERT INTO hints (seq, hint) VALUES (1, '{oops')", [])
            .unwrap();
    }
    let e = s.list_hints().await.err().unwrap();
    assert!(e.message.contains("corrupt record hint 1"), "{e}");
    assert!(s.put_hint(u64::MAX, &json!({})).await.is_err());
    assert!(!s.delete_hint(u64::MAX).await.unwrap());
}

#[tokio::test]
async fn redis_passes_the_hint_contract() {
    let Some(url) = redis_for_tests().await else {
        return;
    };
    let prefix = unique_prefix();
    run_hint_contract(|| open_redis(url.clone(), prefix.clone())).await;
    let store = RedisStore::open(&url, &prefix).await.unwrap();
    let client = redis::Client::open(url.as_str()).unwrap();
    let mut c = client.get_multiplexed_async_connection().await.unwrap();
    let _: i64 = redis::cmd("HSET")
        .arg(store.hints_key())
        .arg("not-a-seq")
        .arg("{}")
        .query_async(&mut c)
        .await
        .unwrap();
    let e = store.list_hints().await.err().unwrap();
    assert!(e.message.contains("corrupt hint key"), "{e}");
    let _: i64 = redis::cmd("DEL")
        .arg(store.hints_key())
        .query_async(&mut c)
        .await
        .unwrap();
    cleanup(&url, &prefix).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_passes_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested/dir/miroir.db");
    run_contract(|| {
        let path = path.clone();
        async move {
            let s: Arc<dyn TaskStore> = Arc::new(SqliteStore::open(&path).await.unwrap());
            s
        }
    })
    .await;
    assert!(path.exists());
}

#[tokio::test]
async fn sqlite_refuses_a_newer_schema_and_bad_paths() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("future.db");
    {
        let c = rusqlite::Connection::open(&path).unwrap();
        c.pragma_update(None, "user_version", 99).unwrap();
    }
    let e = SqliteStore::open(&path).await.err().unwrap();
    assert_eq!(e.backend, "sqlite");
    assert!(e.message.contains("schema version 99"), "{e}");

    // A directory where the file should be.
    let e = SqliteStore::open(dir.path()).await.err().unwrap();
    assert!(e.to_string().starts_with("task store (sqlite)"), "{e}");
    let m: miroir_core::MeiliError = e.into();
    assert_eq!(m.status, 500);
}

#[tokio::test]
async fn sqlite_reports_corrupt_records() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.db");
    let s = SqliteStore::open(&path).await.unwrap();
    s.put_task(0, &json!({"uid": 0})).await.unwrap();
    {
        let c = rusqlite::Connection::open(&path).unwrap();
        c.execute("UPDATE tasks SET record = '{oops' WHERE uid = 0", [])
            .unwrap();
        c.execute("INSERT INTO meta (key, value) VALUES ('k', 'nope')", [])
            .unwrap();
    }
    let e = s.get_task(0).await.err().unwrap();
    assert!(e.message.contains("corrupt record task 0"), "{e}");
    assert!(s.list_tasks(None, 5, false).await.is_err());
    assert!(s.get_meta("k").await.is_err());
    assert!(s.list_meta("").await.is_err());
    // Uids beyond SQLite's integer range are refused, not wrapped.
    assert!(s.put_task(u64::MAX, &json!({})).await.is_err());
    assert_eq!(s.get_task(u64::MAX).await.unwrap(), None);
    assert_eq!(s.path(), path.as_path());
}

/// The Redis URL to test against, or `None` (after printing why) when the tests are skipped.
async fn redis_for_tests() -> Option<String> {
    if let Ok(url) = std::env::var("MIROIR_TEST_REDIS_URL") {
        return Some(url);
    }
    let url = "redis://127.0.0.1:6379".to_string();
    match RedisStore::open(&url, "miroir-probe:").await {
        Ok(_) => Some(url),
        Err(e) => {
            if std::env::var_os("CI").is_some() {
                panic!(
                    "CI is set but no Redis answers at {url} ({e}). Start one (redis-server --daemonize yes --port 6379) or set MIROIR_TEST_REDIS_URL."
                );
            }
            eprintln!(
                "NOTICE: Redis task store contract tests SKIPPED: no Redis at {url} ({e}). Set MIROIR_TEST_REDIS_URL or start redis-server to run them."
            );
            None
        }
    }
}

fn unique_prefix() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("miroir-test:{}:{nanos}:", std::process::id())
}

async fn cleanup(url: &str, prefix: &str) {
    let store = RedisStore::open(url, prefix).await.unwrap();
    let client = redis::Client::open(url).unwrap();
    let mut c = client.get_multiplexed_async_connection().await.unwrap();
    let _: i64 = redis::cmd("DEL")
        .arg(&store.keys()[..])
        .query_async(&mut c)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_passes_the_contract() {
    let Some(url) = redis_for_tests().await else {
        return;
    };
    let prefix = unique_prefix();
    run_contract(|| open_redis(url.clone(), prefix.clone())).await;
    cleanup(&url, &prefix).await;
}

#[tokio::test]
async fn redis_errors_are_typed() {
    let e = RedisStore::open("not a url", "p:").await.err().unwrap();
    assert_eq!(e.backend, "redis");
    assert!(e.message.starts_with("invalid URL"), "{e}");
    // Nothing listens on port 1.
    let e = RedisStore::open("redis://127.0.0.1:1", "p:")
        .await
        .err()
        .unwrap();
    assert!(e.message.starts_with("cannot connect"), "{e}");
}

#[tokio::test]
async fn open_follows_the_config() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = miroir_core::config::TaskStoreConfig {
        path: dir.path().join("x.db").to_string_lossy().into_owned(),
        ..Default::default()
    };
    let s = super::open(&cfg).await.unwrap();
    assert_eq!(s.backend(), "sqlite");
    if let Some(url) = redis_for_tests().await {
        let cfg = miroir_core::config::TaskStoreConfig {
            backend: miroir_core::config::TaskStoreBackend::Redis,
            url: url.clone(),
            key_prefix: unique_prefix(),
            ..Default::default()
        };
        let s = super::open(&cfg).await.unwrap();
        assert_eq!(s.backend(), "redis");
        s.health().await.unwrap();
        cleanup(&url, &cfg.key_prefix).await;
    }
}
