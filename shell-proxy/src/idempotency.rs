//! The proxy's side of idempotency keys: it carries out `miroir_core::idempotency`'s decisions.
//!
//! [`serve`] wraps the dispatch of every routed request. A write (POST, PUT, PATCH, DELETE, except the
//! POST routes that only read: search, multi-search, facet search, documents fetch, similar documents) that
//! carries an `Idempotency-Key` header is:
//! 1. fingerprinted (method, path and query, media type, canonical body);
//! 2. decided over the record the task store holds for its key: replayed (the stored answer, or the summary
//!    of the task the first request created), refused (409), or claimed atomically in the store;
//! 3. when claimed, served inside a [`tokio::task_local`] scope: the [`NotingStore`] the store is wrapped in
//!    notes the task uid in the key's record *before* the task record is stored (so a proxy dying between
//!    the two cannot lead a retry to create a second task);
//! 4. answered, after its answer was stored in the key's record (or the key released for a 5xx answer
//!    without a task).
//!
//! Replayed answers carry `X-Miroir-Idempotent-Replay: true`. The store's records are pruned (TTL and
//! `idempotency.max_keys`) after each claim.

use crate::http_util::{empty_response, error_response, json_response, ProxyResponse};
use crate::routes::Route;
use crate::server::{AppState, ProxyRequest};
use crate::store::{StoreError, TaskStore};
use async_trait::async_trait;
use http::{HeaderValue, StatusCode};
use miroir_core::config::IdempotencyConfig;
use miroir_core::idempotency::{
    applies_to, decide, decide_missing_task, fingerprint, validate_key, Decision,
    IdempotencyRecord, IDEMPOTENCY_HEADER,
};
use miroir_core::tasks::MiroirTask;
use miroir_core::{MeiliError, Millis};
use serde_json::Value;
use std::future::Future;
use std::sync::{Arc, Mutex};

/// The header marking a replayed answer.
pub const REPLAY_HEADER: &str = "x-miroir-idempotent-replay";

/// How many times a claim is decided again after losing a race in the store before giving up.
const CLAIM_ATTEMPTS: usize = 8;

/// The claim of the request being served (the task-local of [`serve`]).
struct Claim {
    key: String,
    /// The record as stored right now.
    record: IdempotencyRecord,
    /// Task uids handed out while serving the request.
    allocated: Vec<u64>,
}

tokio::task_local! {
    static CLAIM: Arc<Mutex<Claim>>;
}

/// Whether a route with a changing method only reads (its answer must not be replayed).
fn reads_only(route: &Route) -> bool {
    matches!(
        route,
        Route::SearchPost(_)
            | Route::MultiSearch
            | Route::FacetSearch(_)
            | Route::FetchDocuments(_)
            | Route::SimilarPost(_)
    )
}

fn now_ms() -> Millis {
    crate::fleet::now_ms()
}

/// Serves `request` through `run`, deduplicated by its `Idempotency-Key` when it has one and is a write.
pub async fn serve<F, Fut>(
    state: &AppState,
    route: &Route,
    request: ProxyRequest,
    run: F,
) -> ProxyResponse
where
    F: FnOnce(ProxyRequest) -> Fut,
    Fut: Future<Output = ProxyResponse>,
{
    let config = &state.config.idempotency;
    let Some(raw) = request.headers.get(IDEMPOTENCY_HEADER) else {
        return run(request).await;
    };
    if !config.enabled || !applies_to(request.method.as_str()) || reads_only(route) {
        return run(request).await;
    }
    let key = match validate_key(raw.as_bytes()) {
        Ok(k) => k,
        Err(e) => return error_response(&e),
    };
    let path = request
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let ct = request
        .headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let fp = fingerprint(request.method.as_str(), path, ct, &request.body);
    let record = match claim(state.store.as_ref(), config, &key, &fp).await {
        Ok(Claimed::Serve(record)) => record,
        Ok(Claimed::Answer(response)) => return response,
        Err(e) => return error_response(&e),
    };
    let scope = Arc::new(Mutex::new(Claim {
        key: key.clone(),
        record,
        allocated: Vec::new(),
    }));
    let response = CLAIM.scope(Arc::clone(&scope), run(request)).await;
    let current = lock(&scope).record.clone();
    finish(state.store.as_ref(), &key, current, response).await
}

enum Claimed {
    /// The key is ours: serve the request.
    Serve(IdempotencyRecord),
    /// Answer this without serving.
    Answer(ProxyResponse),
}

async fn claim(
    store: &dyn TaskStore,
    config: &IdempotencyConfig,
    key: &str,
    fp: &str,
) -> Result<Claimed, MeiliError> {
    for _ in 0..CLAIM_ATTEMPTS {
        let now = now_ms();
        let existing = store
            .get_idempotency_key(key)
            .await?
            .map(|v| (IdempotencyRecord::from_json(&v), v));
        // A record this Miroir cannot read counts as absent but is replaced, never inserted over.
        let (parsed, raw) = match &existing {
            Some((parsed, raw)) => (parsed.as_ref(), Some(raw)),
            None => (None, None),
        };
        let mut decision = decide(key, parsed, fp, now, config);
        if let (Decision::Proceed { replaces: None, .. }, Some(raw), None) =
            (&decision, raw, parsed)
        {
            // unreadable record: take it over by compare-and-swap on its raw value
            let Decision::Proceed { record, .. } = decision else {
                return unreachable_decision();
            };
            if store
                .replace_idempotency_key(key, raw, &record.to_json(), record.expires_at)
                .await?
            {
                prune(store, config, now).await;
                return Ok(Claimed::Serve(record));
            }
            continue;
        }
        if let Decision::ReplayTask(uid) = decision {
            match store.get_task(uid).await? {
                Some(stored) => return Ok(Claimed::Answer(task_answer(uid, &stored))),
                None => {
                    let Some(existing) = parsed else {
                        return unreachable_decision();
                    };
                    decision = decide_missing_task(key, existing, now, config);
                }
            }
        }
        match decision {
            Decision::Proceed { record, replaces } => {
                let stored = match replaces {
                    None => store
                        .claim_idempotency_key(key, &record.to_json(), record.expires_at)
                        .await?
                        .is_none(),
                    Some(old) => {
                        store
                            .replace_idempotency_key(
                                key,
                                &old.to_json(),
                                &record.to_json(),
                                record.expires_at,
                            )
                            .await?
                    }
                };
                if stored {
                    prune(store, config, now).await;
                    return Ok(Claimed::Serve(record));
                }
                // Lost a race with another request for this key: decide again over its record.
            }
            Decision::Replay(r) => {
                let mut response = if r.body.is_null() {
                    empty_response(
                        StatusCode::from_u16(r.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                    )
                } else {
                    json_response(r.status, &r.body)
                };
                mark_replay(&mut response);
                return Ok(Claimed::Answer(response));
            }
            Decision::Reject(e) => return Ok(Claimed::Answer(error_response(&e))),
            Decision::ReplayTask(_) => return unreachable_decision(),
        }
    }
    Err(MeiliError::idempotency_key_in_flight(key))
}

/// A decision the code above has already ruled out: answered as an internal error, never a panic.
fn unreachable_decision<T>() -> Result<T, MeiliError> {
    Err(MeiliError::internal(
        "An internal error has occurred. `inconsistent idempotency decision`.",
    ))
}

/// The answer of a replayed task: its summary, 202, as Meilisearch answers an enqueued task.
fn task_answer(uid: u64, stored: &Value) -> ProxyResponse {
    let task: Option<MiroirTask> = stored
        .get("record")
        .and_then(|r| serde_json::from_value(r.clone()).ok());
    let mut response = match task {
        Some(t) => json_response(202, &t.summarized()),
        None => error_response(&MeiliError::internal(format!(
            "An internal error has occurred. `task {uid} is stored in an unreadable form`."
        ))),
    };
    mark_replay(&mut response);
    response
}

fn mark_replay(response: &mut ProxyResponse) {
    response
        .headers_mut()
        .insert(REPLAY_HEADER, HeaderValue::from_static("true"));
}

/// Drops expired records and enforces the size bound; a failure only delays it to the next claim.
async fn prune(store: &dyn TaskStore, config: &IdempotencyConfig, now: Millis) {
    if let Err(e) = store.prune_idempotency_keys(now, config.max_keys).await {
        tracing::warn!(error = %e, "cannot prune idempotency keys");
    }
}

/// Stores the answer in the key's record (or releases the key) and returns the answer.
async fn finish(
    store: &dyn TaskStore,
    key: &str,
    current: IdempotencyRecord,
    response: ProxyResponse,
) -> ProxyResponse {
    use http_body_util::BodyExt;
    let (parts, body) = response.into_parts();
    let bytes = match body.collect().await {
        Ok(b) => b.to_bytes(),
        Err(never) => match never {},
    };
    let value = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap_or(Value::Null)
    };
    let outcome = match current.complete(parts.status.as_u16(), &value) {
        Some(done) => store
            .replace_idempotency_key(key, &current.to_json(), &done.to_json(), done.expires_at)
            .await
            .map(|ok| (ok, "record")),
        None => store
            .release_idempotency_key(key, &current.to_json())
            .await
            .map(|ok| (ok, "release")),
    };
    match outcome {
        Ok((true, _)) => {}
        Ok((false, what)) => {
            tracing::warn!(
                key,
                what,
                "idempotency key taken over while its request was served"
            )
        }
        Err(e) => tracing::error!(error = %e, key, "cannot record an idempotent answer"),
    }
    ProxyResponse::from_parts(parts, http_body_util::Full::new(bytes))
}

fn lock(m: &Mutex<Claim>) -> std::sync::MutexGuard<'_, Claim> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The task store as the proxy uses it: the backend, plus, while a request holding an idempotency claim
/// is served, the noting of its new task's uid in the key's record before the task is stored.
pub struct NotingStore {
    inner: Arc<dyn TaskStore>,
}

impl NotingStore {
    /// Wraps a backend.
    pub fn new(inner: Arc<dyn TaskStore>) -> NotingStore {
        NotingStore { inner }
    }

    /// Notes `uid` in the current claim's record when it is the first task this request stores.
    async fn note(&self, uid: u64) -> Result<(), StoreError> {
        let Ok(scope) = CLAIM.try_with(Arc::clone) else {
            return Ok(());
        };
        let (key, current) = {
            let c = lock(&scope);
            if !c.allocated.contains(&uid) || c.record.task_uid.is_some() {
                return Ok(());
            }
            (c.key.clone(), c.record.clone())
        };
        let noted = current.with_task(uid);
        if self
            .inner
            .replace_idempotency_key(&key, &current.to_json(), &noted.to_json(), noted.expires_at)
            .await?
        {
            lock(&scope).record = noted;
        } else {
            tracing::warn!(
                key,
                uid,
                "idempotency key taken over before its task was stored"
            );
        }
        Ok(())
    }
}

#[async_trait]
impl TaskStore for NotingStore {
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }

    async fn next_task_uid(&self) -> Result<u64, StoreError> {
        let uid = self.inner.next_task_uid().await?;
        if let Ok(scope) = CLAIM.try_with(Arc::clone) {
            lock(&scope).allocated.push(uid);
        }
        Ok(uid)
    }

    async fn put_task(&self, uid: u64, record: &Value) -> Result<(), StoreError> {
        self.note(uid).await?;
        self.inner.put_task(uid, record).await
    }

    async fn get_task(&self, uid: u64) -> Result<Option<Value>, StoreError> {
        self.inner.get_task(uid).await
    }

    async fn list_tasks(
        &self,
        from: Option<u64>,
        limit: usize,
        reverse: bool,
    ) -> Result<Vec<Value>, StoreError> {
        self.inner.list_tasks(from, limit, reverse).await
    }

    async fn count_tasks(&self) -> Result<u64, StoreError> {
        self.inner.count_tasks().await
    }

    async fn delete_tasks(&self, uids: &[u64]) -> Result<u64, StoreError> {
        self.inner.delete_tasks(uids).await
    }

    async fn claim_idempotency_key(
        &self,
        key: &str,
        record: &Value,
        expires_at: u64,
    ) -> Result<Option<Value>, StoreError> {
        self.inner
            .claim_idempotency_key(key, record, expires_at)
            .await
    }

    async fn replace_idempotency_key(
        &self,
        key: &str,
        expected: &Value,
        record: &Value,
        expires_at: u64,
    ) -> Result<bool, StoreError> {
        self.inner
            .replace_idempotency_key(key, expected, record, expires_at)
            .await
    }

    async fn get_idempotency_key(&self, key: &str) -> Result<Option<Value>, StoreError> {
        self.inner.get_idempotency_key(key).await
    }

    async fn release_idempotency_key(
        &self,
        key: &str,
        expected: &Value,
    ) -> Result<bool, StoreError> {
        self.inner.release_idempotency_key(key, expected).await
    }

    async fn prune_idempotency_keys(&self, now: u64, max_keys: u64) -> Result<u64, StoreError> {
        self.inner.prune_idempotency_keys(now, max_keys).await
    }

    async fn put_hint(&self, seq: u64, hint: &Value) -> Result<(), StoreError> {
        self.inner.put_hint(seq, hint).await
    }

    async fn delete_hint(&self, seq: u64) -> Result<bool, StoreError> {
        self.inner.delete_hint(seq).await
    }

    async fn list_hints(&self) -> Result<Vec<Value>, StoreError> {
        self.inner.list_hints().await
    }

    async fn put_tombstones(
        &self,
        index: &str,
        entries: &[(String, u64)],
    ) -> Result<(), StoreError> {
        self.inner.put_tombstones(index, entries).await
    }

    async fn list_tombstones(&self, index: &str) -> Result<Vec<(String, u64)>, StoreError> {
        self.inner.list_tombstones(index).await
    }

    async fn prune_tombstones(&self, index: &str, before: u64) -> Result<u64, StoreError> {
        self.inner.prune_tombstones(index, before).await
    }

    async fn put_meta(&self, key: &str, value: &Value) -> Result<(), StoreError> {
        self.inner.put_meta(key, value).await
    }

    async fn get_meta(&self, key: &str) -> Result<Option<Value>, StoreError> {
        self.inner.get_meta(key).await
    }

    async fn delete_meta(&self, key: &str) -> Result<bool, StoreError> {
        self.inner.delete_meta(key).await
    }

    async fn list_meta(&self, prefix: &str) -> Result<Vec<(String, Value)>, StoreError> {
        self.inner.list_meta(prefix).await
    }

    async fn health(&self) -> Result<(), StoreError> {
        self.inner.health().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sqlite::SqliteStore;
    use serde_json::json;

    fn cfg() -> IdempotencyConfig {
        IdempotencyConfig {
            enabled: true,
            ttl_secs: 60,
            max_keys: 100,
            in_flight_timeout_ms: 60_000,
        }
    }

    async fn store(dir: &tempfile::TempDir) -> Arc<dyn TaskStore> {
        let inner: Arc<dyn TaskStore> =
            Arc::new(SqliteStore::open(dir.path().join("s.db")).await.unwrap());
        Arc::new(NotingStore::new(inner))
    }

    #[tokio::test]
    async fn a_new_task_uid_is_noted_before_the_task_is_stored() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(&dir).await;
        let Claimed::Serve(record) = claim(s.as_ref(), &cfg(), "k", "fp").await.unwrap() else {
            panic!("a fresh key is claimed")
        };
        let scope = Arc::new(Mutex::new(Claim {
            key: "k".into(),
            record,
            allocated: Vec::new(),
        }));
        let s2 = Arc::clone(&s);
        CLAIM
            .scope(Arc::clone(&scope), async move {
                // an update of an older task is not the request's task
                s2.put_task(0, &json!({"old": true})).await.unwrap();
                let uid = s2.next_task_uid().await.unwrap();
                s2.put_task(uid, &json!({"new": true})).await.unwrap();
                // a second store of the same task keeps the noted uid
                s2.put_task(uid, &json!({"new": 2})).await.unwrap();
            })
            .await;
        let stored =
            IdempotencyRecord::from_json(&s.get_idempotency_key("k").await.unwrap().unwrap())
                .unwrap();
        assert_eq!(stored.task_uid, Some(1));
        assert_eq!(lock(&scope).record, stored);
        // outside a scope nothing is noted
        let uid = s.next_task_uid().await.unwrap();
        s.put_task(uid, &json!({})).await.unwrap();
        assert_eq!(
            IdempotencyRecord::from_json(&s.get_idempotency_key("k").await.unwrap().unwrap())
                .unwrap()
                .task_uid,
            Some(1)
        );
        // a retry now replays the stored task... which is not a MiroirTask here: an internal error
        let Claimed::Answer(r) = claim(s.as_ref(), &cfg(), "k", "fp").await.unwrap() else {
            panic!("a noted task is replayed")
        };
        assert_eq!(r.status(), 500);
        assert_eq!(r.headers()[REPLAY_HEADER], "true");
        // another body: reused
        let Claimed::Answer(r) = claim(s.as_ref(), &cfg(), "k", "other").await.unwrap() else {
            panic!()
        };
        assert_eq!(r.status(), 409);
    }

    #[tokio::test]
    async fn answers_are_recorded_or_the_key_released() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(&dir).await;
        let Claimed::Serve(record) = claim(s.as_ref(), &cfg(), "k", "fp").await.unwrap() else {
            panic!()
        };
        // while in flight: refused
        let Claimed::Answer(r) = claim(s.as_ref(), &cfg(), "k", "fp").await.unwrap() else {
            panic!()
        };
        assert_eq!(r.status(), 409);
        // a 503 without a task releases the key
        let r = finish(
            s.as_ref(),
            "k",
            record,
            error_response(&MeiliError::no_quorum(&[1])),
        )
        .await;
        assert_eq!(r.status(), 503);
        assert_eq!(s.get_idempotency_key("k").await.unwrap(), None);
        // a 202 is recorded and replayed with the marker header
        let Claimed::Serve(record) = claim(s.as_ref(), &cfg(), "k", "fp").await.unwrap() else {
            panic!()
        };
        let body = json!({"taskUid": 3, "status": "enqueued"});
        let r = finish(s.as_ref(), "k", record, json_response(202, &body)).await;
        assert_eq!(r.status(), 202);
        assert!(r.headers().get(REPLAY_HEADER).is_none());
        let Claimed::Answer(r) = claim(s.as_ref(), &cfg(), "k", "fp").await.unwrap() else {
            panic!()
        };
        assert_eq!(r.status(), 202);
        assert_eq!(r.headers()[REPLAY_HEADER], "true");
        use http_body_util::BodyExt;
        let bytes = r.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(serde_json::from_slice::<Value>(&bytes).unwrap(), body);
        // an empty answer (204) replays as empty
        let Claimed::Serve(record) = claim(s.as_ref(), &cfg(), "e", "fp").await.unwrap() else {
            panic!()
        };
        finish(
            s.as_ref(),
            "e",
            record,
            empty_response(StatusCode::NO_CONTENT),
        )
        .await;
        let Claimed::Answer(r) = claim(s.as_ref(), &cfg(), "e", "fp").await.unwrap() else {
            panic!()
        };
        assert_eq!(r.status(), 204);
        let bytes = r.into_body().collect().await.unwrap().to_bytes();
        assert!(bytes.is_empty());
    }

    #[tokio::test]
    async fn unreadable_records_are_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(&dir).await;
        assert!(s
            .claim_idempotency_key("k", &json!({"garbage": 1}), u64::MAX)
            .await
            .unwrap()
            .is_none());
        assert!(matches!(
            claim(s.as_ref(), &cfg(), "k", "fp").await.unwrap(),
            Claimed::Serve(_)
        ));
    }

    #[test]
    fn read_only_posts_are_not_deduplicated() {
        let u = crate::routes::IndexUid::parse("a").unwrap();
        assert!(reads_only(&Route::SearchPost(u.clone())));
        assert!(reads_only(&Route::MultiSearch));
        assert!(!reads_only(&Route::AddDocuments(u)));
        assert!(!reads_only(&Route::SwapIndexes));
    }
}
