//! The proxy's side of two-phase settings: it carries out `miroir_core::settings_sync`'s decisions.
//!
//! - [`around`] wraps the dispatch of every request that names an index: a settings write (PATCH / PUT /
//!   DELETE on `/indexes/{uid}/settings[/...]`) moves the index's machine to *proposing*; once answered 202,
//!   a background task waits for its node tasks (at most `settings_sync.verify_timeout_ms`), reads every
//!   node's settings back, and commits the new `settings_version` (stored in the task store's meta area
//!   under `settings_version:<uid>`) or repairs the diverging nodes. Other writes to a frozen index get 503
//!   `miroir_settings_frozen`. Reads carry `X-Miroir-Settings-Inconsistent: true` while a change is being
//!   applied or repaired, and honour `X-Miroir-Min-Settings-Version` (503 `miroir_settings_version_stale`
//!   when the index's committed version is lower). Every answer about an index that has a committed version
//!   carries `X-Miroir-Settings-Version`.
//! - [`drift_loop`] runs every `settings_sync.drift_check_interval_ms` (0 = off) over the indexes the proxy
//!   knows (its `index:<uid>` metadata and the machines it holds): it reads every node's settings and
//!   repairs the nodes whose settings differ from the committed ones (changed behind Miroir's back, or left
//!   half-changed by a refused write), re-sending the committed settings with backoff and freezing the
//!   index's writes after `max_repair_retries` (logged as an error: the alert).
//!
//! One index is acted on by one task at a time (a busy set), so a proposal's verification and the drift
//! loop never repair the same index concurrently.

use crate::http_util::{error_response, ProxyResponse};
use crate::node_client::NodeClient;
use crate::routes::Route;
use crate::server::{AppState, ProxyRequest};
use crate::store::TaskStore;
use bytes::Bytes;
use http::HeaderValue;
use miroir_core::config::{Config, SettingsSyncConfig};
use miroir_core::settings_sync::{
    proposal_in_progress, Action, Committed, SettingsSync, MIN_SETTINGS_VERSION_HEADER,
    SETTINGS_INCONSISTENT_HEADER, SETTINGS_VERSION_HEADER,
};
use miroir_core::tasks::MiroirTask;
use miroir_core::topology::NodeId;
use miroir_core::{MeiliError, Millis};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The store meta key of an index's committed settings.
pub fn meta_key(index: &str) -> String {
    format!("settings_version:{index}")
}

/// The store meta key marking a settings write in progress (seen by every proxy sharing the store).
pub fn proposal_key(index: &str) -> String {
    format!("settings_proposal:{index}")
}

/// Every index's machine, plus the indexes being acted on.
pub struct SettingsSyncs {
    config: SettingsSyncConfig,
    machines: Mutex<BTreeMap<String, SettingsSync>>,
    busy: Mutex<BTreeSet<String>>,
}

/// What a background action needs of the proxy's state.
#[derive(Clone)]
struct Ctx {
    config: Arc<Config>,
    store: Arc<dyn TaskStore>,
    nodes: NodeClient,
}

impl Ctx {
    fn of(state: &AppState) -> Ctx {
        Ctx {
            config: Arc::clone(&state.config),
            store: Arc::clone(&state.store),
            nodes: state.nodes.clone(),
        }
    }
}

fn now_ms() -> Millis {
    crate::fleet::now_ms()
}

/// Holds the index's turn to act; released on drop.
struct Turn<'a> {
    syncs: &'a SettingsSyncs,
    index: String,
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        self.syncs
            .busy
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.index);
    }
}

impl SettingsSyncs {
    /// No machine yet; they are loaded from the store on first use.
    pub fn new(config: &SettingsSyncConfig) -> SettingsSyncs {
        SettingsSyncs {
            config: config.clone(),
            machines: Mutex::new(BTreeMap::new()),
            busy: Mutex::new(BTreeSet::new()),
        }
    }

    /// Runs `f` on the index's machine, loading its committed settings from the store first if needed. An
    /// index with nothing committed gets a machine only once `f` changes it (a settings write), so reads of
    /// arbitrary index names never grow the table.
    async fn with<T>(
        &self,
        store: &dyn TaskStore,
        index: &str,
        f: impl FnOnce(&mut SettingsSync) -> T,
    ) -> Result<T, MeiliError> {
        let loaded = self
            .machines
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(index);
        let fresh = if loaded {
            None
        } else {
            let committed = store
                .get_meta(&meta_key(index))
                .await?
                .and_then(|v| serde_json::from_value::<Committed>(v).ok());
            Some(SettingsSync::new(committed, &self.config))
        };
        let mut machines = self.machines.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(machine) = machines.get_mut(index) {
            return Ok(f(machine));
        }
        let mut machine = fresh.unwrap_or_else(|| SettingsSync::new(None, &self.config));
        let blank = SettingsSync::new(None, &self.config);
        let out = f(&mut machine);
        if machine != blank {
            machines.insert(index.to_string(), machine);
        }
        Ok(out)
    }

    /// How many indexes have a machine.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.machines
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .len()
    }

    fn forget(&self, index: &str) {
        self.machines
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(index);
    }

    fn turn(&self, index: &str) -> Option<Turn<'_>> {
        let mut busy = self.busy.lock().unwrap_or_else(|p| p.into_inner());
        busy.insert(index.to_string()).then(|| Turn {
            syncs: self,
            index: index.to_string(),
        })
    }

    /// Carries out `action` for `index` until the machine has nothing more to do now.
    async fn act(&self, ctx: &Ctx, index: &str, mut action: Action) -> Result<(), MeiliError> {
        loop {
            action = match action {
                Action::Nothing => return Ok(()),
                Action::ReadAll => {
                    let reads = read_all(ctx, index).await;
                    let now = now_ms();
                    self.with(ctx.store.as_ref(), index, |m| m.on_read(&reads, now))
                        .await?
                }
                Action::Commit(c) => {
                    let value = serde_json::to_value(&c).unwrap_or(Value::Null);
                    ctx.store.put_meta(&meta_key(index), &value).await?;
                    tracing::info!(index, version = c.version, "settings committed");
                    return Ok(());
                }
                Action::Repair {
                    nodes,
                    settings,
                    read_at,
                } => {
                    tracing::warn!(index, nodes = ?nodes, "repairing nodes whose settings diverge");
                    repair(ctx, index, &nodes, &settings).await;
                    let wait = read_at.saturating_sub(now_ms());
                    tokio::time::sleep(Duration::from_millis(wait)).await;
                    let now = now_ms();
                    self.with(ctx.store.as_ref(), index, |m| m.drift_check(now))
                        .await?
                }
                Action::Freeze { diverging } => {
                    tracing::error!(
                        index,
                        nodes = ?diverging,
                        "ALERT: settings repairs did not converge; writes to the index are frozen"
                    );
                    return Ok(());
                }
            };
        }
    }

    /// One drift check of `index` (skipped while another task acts on it).
    async fn check(&self, ctx: &Ctx, index: &str) -> Result<(), MeiliError> {
        let Some(_turn) = self.turn(index) else {
            return Ok(());
        };
        let now = now_ms();
        let proposed_at = ctx
            .store
            .get_meta(&proposal_key(index))
            .await?
            .and_then(|v| v.get("at").and_then(Value::as_u64));
        if proposal_in_progress(proposed_at, now, &self.config) {
            return Ok(());
        }
        let action = self
            .with(ctx.store.as_ref(), index, |m| m.drift_check(now))
            .await?;
        self.act(ctx, index, action).await
    }

    /// After a settings write was answered 202: waits for its node tasks, then verifies.
    async fn verify(&self, ctx: &Ctx, index: &str, task_uid: u64) {
        wait_for_node_tasks(ctx, task_uid).await;
        // wait for a drift check already acting on the index to finish its step
        let turn = loop {
            if let Some(t) = self.turn(index) {
                break t;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let result = match self
            .with(ctx.store.as_ref(), index, SettingsSync::proposal_applied)
            .await
        {
            Ok(action) => self.act(ctx, index, action).await,
            Err(e) => Err(e),
        };
        drop(turn);
        if let Err(e) = ctx.store.delete_meta(&proposal_key(index)).await {
            tracing::warn!(index, error = %e, "cannot clear a settings proposal marker");
        }
        if let Err(e) = result {
            tracing::error!(index, error = %e, "settings verification failed");
        }
    }
}

/// Every configured node's settings of `index` (`None` when the node does not answer 200).
async fn read_all(ctx: &Ctx, index: &str) -> BTreeMap<NodeId, Option<Value>> {
    let path = format!("/indexes/{index}/settings");
    let mut set = tokio::task::JoinSet::new();
    for node in &ctx.config.nodes {
        let (client, id, address, path) = (
            ctx.nodes.clone(),
            node.id.clone(),
            node.address.clone(),
            path.clone(),
        );
        set.spawn(async move {
            let r = client
                .send(
                    id.as_str(),
                    &address,
                    http::Method::GET,
                    &path,
                    None,
                    Bytes::new(),
                )
                .await;
            let v = match r {
                Ok(resp) if resp.status == 200 => serde_json::from_slice(&resp.body).ok(),
                _ => None,
            };
            (id, v)
        });
    }
    let mut out = BTreeMap::new();
    while let Some(done) = set.join_next().await {
        if let Ok((id, v)) = done {
            out.insert(id, v);
        }
    }
    out
}

/// Sends `settings` to each diverging node (best effort: the next read-back judges).
async fn repair(ctx: &Ctx, index: &str, nodes: &[NodeId], settings: &Value) {
    let path = format!("/indexes/{index}/settings");
    let body = Bytes::from(serde_json::to_vec(settings).unwrap_or_default());
    for node in nodes {
        let Some(address) = ctx
            .config
            .nodes
            .iter()
            .find(|n| &n.id == node)
            .map(|n| n.address.clone())
        else {
            continue;
        };
        match ctx
            .nodes
            .send(
                node.as_str(),
                &address,
                http::Method::PATCH,
                &path,
                Some("application/json"),
                body.clone(),
            )
            .await
        {
            Ok(r) if r.status == 202 => {}
            Ok(r) => {
                tracing::warn!(index, node = %node, status = r.status, "settings repair refused")
            }
            Err(e) => tracing::warn!(index, node = %node, error = %e, "settings repair not sent"),
        }
    }
}

/// Waits until every node task of Miroir task `uid` is final (or `verify_timeout_ms` passed).
async fn wait_for_node_tasks(ctx: &Ctx, uid: u64) {
    let deadline = now_ms() + ctx.config.settings_sync.verify_timeout_ms;
    while now_ms() < deadline {
        let record = match ctx.store.get_task(uid).await {
            Ok(Some(v)) => v
                .get("record")
                .and_then(|r| serde_json::from_value::<MiroirTask>(r.clone()).ok()),
            _ => None,
        };
        let Some(record) = record else {
            return;
        };
        let mut pending = false;
        for t in &record.node_tasks {
            let Some(task_uid) = t.task_uid else {
                pending = true;
                continue;
            };
            let Some(address) = ctx
                .config
                .nodes
                .iter()
                .find(|n| n.id == t.node)
                .map(|n| n.address.clone())
            else {
                continue;
            };
            let status = ctx
                .nodes
                .send(
                    t.node.as_str(),
                    &address,
                    http::Method::GET,
                    &format!("/tasks/{task_uid}"),
                    None,
                    Bytes::new(),
                )
                .await
                .ok()
                .filter(|r| r.status == 200)
                .and_then(|r| serde_json::from_slice::<Value>(&r.body).ok())
                .and_then(|v| v.get("status").and_then(Value::as_str).map(str::to_string));
            if !matches!(status.as_deref(), Some("succeeded" | "failed" | "canceled")) {
                pending = true;
            }
        }
        if !pending {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn is_settings_write(route: &Route) -> bool {
    matches!(
        route,
        Route::UpdateSettings(_)
            | Route::UpdateSetting(..)
            | Route::ResetSettings(_)
            | Route::ResetSetting(..)
    )
}

fn is_read(route: &Route, method: &http::Method) -> bool {
    method == http::Method::GET
        || method == http::Method::HEAD
        || matches!(
            route,
            Route::SearchPost(_)
                | Route::FacetSearch(_)
                | Route::FetchDocuments(_)
                | Route::SimilarPost(_)
        )
}

/// Serves a request through `run` under the index's settings machine (see the module documentation).
pub async fn around<F, Fut>(
    syncs: &Arc<SettingsSyncs>,
    state: &AppState,
    route: &Route,
    request: ProxyRequest,
    run: F,
) -> ProxyResponse
where
    F: FnOnce(ProxyRequest) -> Fut,
    Fut: Future<Output = ProxyResponse>,
{
    let Some(index) = route.index_uid().map(|u| u.as_str().to_string()) else {
        return run(request).await;
    };
    match around_index(syncs, state, route, &index, request, run).await {
        Ok(r) => r,
        Err(e) => error_response(&e),
    }
}

async fn around_index<F, Fut>(
    syncs: &Arc<SettingsSyncs>,
    state: &AppState,
    route: &Route,
    index: &str,
    request: ProxyRequest,
    run: F,
) -> Result<ProxyResponse, MeiliError>
where
    F: FnOnce(ProxyRequest) -> Fut,
    Fut: Future<Output = ProxyResponse>,
{
    let store = state.store.as_ref();
    let mut response = if matches!(route, Route::DeleteIndex(_)) {
        let response = run(request).await;
        if response.status().as_u16() == 202 {
            syncs.forget(index);
            store.delete_meta(&meta_key(index)).await?;
        }
        return Ok(response);
    } else if is_settings_write(route) {
        syncs.with(store, index, SettingsSync::propose).await?;
        store
            .put_meta(&proposal_key(index), &serde_json::json!({ "at": now_ms() }))
            .await?;
        let response = run(request).await;
        let task = if response.status().as_u16() == 202 {
            crate::http_util::task_uid_of(response).await
        } else {
            (response, None)
        };
        match task {
            (response, Some(uid)) => {
                let (syncs, ctx, index) = (Arc::clone(syncs), Ctx::of(state), index.to_string());
                tokio::spawn(async move { syncs.verify(&ctx, &index, uid).await });
                response
            }
            (response, None) => {
                store.delete_meta(&proposal_key(index)).await?;
                syncs
                    .with(store, index, SettingsSync::proposal_refused)
                    .await?;
                response
            }
        }
    } else if is_read(route, &request.method) {
        if let Some(raw) = request.headers.get(MIN_SETTINGS_VERSION_HEADER) {
            let min = raw
                .to_str()
                .ok()
                .and_then(|s| s.trim().parse::<u64>().ok())
                .ok_or_else(|| {
                    MeiliError::invalid(
                        400,
                        "miroir_invalid_min_settings_version",
                        "The `X-Miroir-Min-Settings-Version` header must be a non-negative integer.",
                    )
                })?;
            syncs
                .with(store, index, |m| m.check_min_version(index, min))
                .await??;
        }
        let inconsistent = syncs.with(store, index, |m| m.inconsistent()).await?;
        let mut response = run(request).await;
        if inconsistent {
            response.headers_mut().insert(
                SETTINGS_INCONSISTENT_HEADER,
                HeaderValue::from_static("true"),
            );
        }
        response
    } else {
        if let Some(e) = syncs.with(store, index, |m| m.write_refusal(index)).await? {
            return Err(e);
        }
        run(request).await
    };
    let version = syncs.with(store, index, |m| m.version()).await?;
    if version > 0 {
        response
            .headers_mut()
            .insert(SETTINGS_VERSION_HEADER, HeaderValue::from(version));
    }
    Ok(response)
}

/// The periodic drift check (runs with the health probe; never returns).
pub async fn drift_loop(syncs: Arc<SettingsSyncs>, state: Arc<AppState>) {
    let interval = state.config.settings_sync.drift_check_interval_ms;
    if interval == 0 {
        std::future::pending::<()>().await;
    }
    let ctx = Ctx::of(&state);
    let mut tick = tokio::time::interval(Duration::from_millis(interval));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        let mut indexes: BTreeSet<String> = match ctx.store.list_meta("index:").await {
            Ok(entries) => entries
                .into_iter()
                .filter_map(|(k, _)| k.strip_prefix("index:").map(str::to_string))
                .collect(),
            Err(e) => {
                tracing::warn!(error = %e, "drift check: cannot list the indexes");
                BTreeSet::new()
            }
        };
        indexes.extend(
            syncs
                .machines
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .keys()
                .cloned(),
        );
        for index in indexes {
            if let Err(e) = syncs.check(&ctx, &index).await {
                tracing::warn!(index, error = %e, "drift check failed");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn machines_exist_only_for_indexes_with_settings_state() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::sqlite::SqliteStore::open(dir.path().join("s.db"))
            .await
            .unwrap();
        let syncs = SettingsSyncs::new(&SettingsSyncConfig::default());
        for i in 0..10 {
            let v = syncs
                .with(&store, &format!("nope{i}"), |m| m.version())
                .await
                .unwrap();
            assert_eq!(v, 0);
        }
        assert_eq!(syncs.len(), 0, "reads of unknown indexes keep no machine");
        syncs
            .with(&store, "a", SettingsSync::propose)
            .await
            .unwrap();
        assert_eq!(syncs.len(), 1);
        assert!(syncs.with(&store, "a", |m| m.inconsistent()).await.unwrap());
        // a committed agreement in the store is loaded
        let c = Committed {
            version: 4,
            hash: "h".into(),
            settings: serde_json::json!({}),
        };
        store
            .put_meta(&meta_key("b"), &serde_json::to_value(&c).unwrap())
            .await
            .unwrap();
        assert_eq!(syncs.with(&store, "b", |m| m.version()).await.unwrap(), 4);
        assert_eq!(syncs.len(), 2);
        syncs.forget("b");
        assert_eq!(syncs.len(), 1);
    }

    #[test]
    fn routes_are_classified() {
        let u = crate::routes::IndexUid::parse("a").unwrap();
        assert!(is_settings_write(&Route::UpdateSettings(u.clone())));
        assert!(is_settings_write(&Route::ResetSettings(u.clone())));
        assert!(!is_settings_write(&Route::GetSettings(u.clone())));
        assert!(is_read(&Route::SearchPost(u.clone()), &http::Method::POST));
        assert!(is_read(&Route::GetSettings(u.clone()), &http::Method::GET));
        assert!(!is_read(&Route::AddDocuments(u), &http::Method::POST));
        assert_eq!(meta_key("movies"), "settings_version:movies");
        assert_eq!(proposal_key("movies"), "settings_proposal:movies");
    }
}
