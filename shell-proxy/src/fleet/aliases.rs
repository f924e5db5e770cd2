//! Index aliases through the proxy (a child module of `fleet`); the rules are core's
//! ([`miroir_core::aliases`]).
//!
//! Each alias is one task-store record (`alias:<name>`), so a flip is one atomic write, visible to every
//! proxy sharing the store. Each proxy caches the alias table for [`ALIAS_CACHE_MS`]: a flip made through
//! this proxy is seen at once by its next request, a flip made through another proxy within that delay.
//! A request resolves its index once, when it arrives ([`Fleet::resolve_aliases`]), so a flip never tears
//! a request in flight.
//!
//! Admin API (admin key): `GET /_miroir/aliases`, `POST /_miroir/aliases` (`{name, target, force?}`),
//! `GET|PUT|DELETE /_miroir/aliases/{name}` (`PUT` flips: `{target, force?}`).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use http::StatusCode;
use miroir_core::aliases::{self, Alias, AliasRequest};
use miroir_core::{MeiliError, Millis};
use serde_json::{json, Value};

use super::{json_body, now_ms, Fleet};
use crate::http_util::{json_response, ProxyResponse};
use crate::routes::{IndexUid, Route};
use crate::server::{AppState, ProxyRequest};

/// How long a proxy trusts its cached alias table.
pub const ALIAS_CACHE_MS: Millis = 1_000;

const PREFIX: &str = "alias:";

/// Alias name → target index.
type Table = Arc<BTreeMap<String, String>>;

/// The alias table and when it was read.
#[derive(Default)]
pub struct AliasCache {
    table: Mutex<(Table, Option<Millis>)>,
    /// Serialises this proxy's alias changes (read-decide-write of one record).
    writing: tokio::sync::Mutex<()>,
}

impl AliasCache {
    fn invalidate(&self) {
        self.table.lock().unwrap_or_else(|p| p.into_inner()).1 = None;
    }
}

impl Fleet {
    async fn alias_records(&self, state: &AppState) -> Result<Vec<Alias>, MeiliError> {
        Ok(state
            .store
            .list_meta(PREFIX)
            .await?
            .iter()
            .filter_map(|(_, v)| Alias::from_json(v))
            .collect())
    }

    /// The alias table, read again from the store when older than [`ALIAS_CACHE_MS`].
    pub(super) async fn alias_table(&self, state: &AppState) -> Table {
        let (table, at) = self
            .aliases
            .table
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if at.is_some_and(|at| now_ms().saturating_sub(at) < ALIAS_CACHE_MS) {
            return table;
        }
        match self.alias_records(state).await {
            Ok(records) => {
                let fresh: Arc<BTreeMap<String, String>> =
                    Arc::new(records.into_iter().map(|a| (a.name, a.target)).collect());
                *self.aliases.table.lock().unwrap_or_else(|p| p.into_inner()) =
                    (Arc::clone(&fresh), Some(now_ms()));
                fresh
            }
            Err(e) => {
                tracing::warn!(error = %e.message, "cannot read the aliases; using the last known ones");
                table
            }
        }
    }

    /// Replaces an alias in the route's index (and in the `indexUid` of each multi-search query) by its
    /// target, once, before the request runs.
    pub(super) async fn resolve_aliases(
        &self,
        state: &AppState,
        mut route: Route,
        request: &mut ProxyRequest,
    ) -> Route {
        let table = self.alias_table(state).await;
        if table.is_empty() {
            return route;
        }
        if let Some(uid) = route.index_uid_mut() {
            if let Some(target) = table.get(uid.as_str()) {
                if let Ok(t) = IndexUid::parse(target) {
                    *uid = t;
                }
            }
        }
        if route == Route::MultiSearch {
            if let Ok(mut body) = serde_json::from_slice::<Value>(&request.body) {
                let mut changed = false;
                if let Some(queries) = body.get_mut("queries").and_then(Value::as_array_mut) {
                    for q in queries {
                        if let Some(Value::String(uid)) = q.get_mut("indexUid") {
                            if let Some(target) = table.get(uid.as_str()) {
                                *uid = target.clone();
                                changed = true;
                            }
                        }
                    }
                }
                if changed {
                    request.body = serde_json::to_vec(&body).unwrap_or_default().into();
                }
            }
        }
        route
    }

    /// 409 when a `POST /indexes` would create an index under an alias's name.
    pub(super) async fn refuse_alias_name(
        &self,
        state: &AppState,
        uid: &str,
    ) -> Result<(), MeiliError> {
        match self.alias_table(state).await.get(uid) {
            Some(target) => Err(aliases::index_uid_is_alias(uid, target)),
            None => Ok(()),
        }
    }

    async fn index_exists(&self, state: &AppState, uid: &str) -> Result<bool, MeiliError> {
        Ok(self.index_meta(state, uid).await?.is_some())
    }

    async fn change_alias(
        &self,
        state: &AppState,
        request: AliasRequest,
        creating: bool,
    ) -> Result<Alias, MeiliError> {
        let _writing = self.aliases.writing.lock().await;
        let records = self.alias_records(state).await?;
        let existing = records.iter().find(|a| a.name == request.name).cloned();
        let others: BTreeMap<String, String> = records
            .into_iter()
            .filter(|a| a.name != request.name)
            .map(|a| (a.name, a.target))
            .collect();
        let name_exists = self.index_exists(state, &request.name).await?;
        let target_exists = self.index_exists(state, &request.target).await?;
        let (name, target) = (request.name.clone(), request.target.clone());
        let lookup =
            move |uid: &str| (uid == name && name_exists) || (uid == target && target_exists);
        let next = aliases::decide(
            &request,
            existing.as_ref(),
            creating,
            &others,
            &lookup,
            now_ms(),
        )?;
        state
            .store
            .put_meta(&format!("{PREFIX}{}", next.name), &next.to_json())
            .await?;
        self.aliases.invalidate();
        tracing::info!(alias = %next.name, target = %next.target, "alias set");
        Ok(next)
    }

    /// `/_miroir/aliases[/{name}]`; `None` when `path` is not an alias route.
    pub(super) async fn admin_aliases(
        &self,
        state: &AppState,
        method: &http::Method,
        path: &str,
        request: &ProxyRequest,
    ) -> Option<Result<ProxyResponse, MeiliError>> {
        let rest = path.strip_prefix("aliases")?;
        let name = match rest {
            "" | "/" => None,
            r => Some(r.strip_prefix('/')?),
        };
        if name.is_some_and(|n| n.contains('/')) {
            return None;
        }
        Some(self.alias_route(state, method, name, request).await)
    }

    async fn alias_route(
        &self,
        state: &AppState,
        method: &http::Method,
        name: Option<&str>,
        request: &ProxyRequest,
    ) -> Result<ProxyResponse, MeiliError> {
        use http::Method as M;
        match (method.clone(), name) {
            (M::GET, None) => {
                let mut records = self.alias_records(state).await?;
                records.sort_by(|a, b| a.name.cmp(&b.name));
                let results: Vec<Value> = records.iter().map(Alias::view).collect();
                Ok(json_response(
                    200,
                    &json!({"results": results, "total": results.len()}),
                ))
            }
            (M::POST, None) => {
                let req = AliasRequest::parse(&json_body(request)?, None)?;
                let alias = self.change_alias(state, req, true).await?;
                Ok(json_response(201, &alias.view()))
            }
            (M::GET, Some(name)) => {
                let v = state
                    .store
                    .get_meta(&format!("{PREFIX}{name}"))
                    .await?
                    .and_then(|v| Alias::from_json(&v))
                    .ok_or_else(|| aliases::alias_not_found(name))?;
                Ok(json_response(200, &v.view()))
            }
            (M::PUT, Some(name)) => {
                let req = AliasRequest::parse(&json_body(request)?, Some(name))?;
                let alias = self.change_alias(state, req, false).await?;
                Ok(json_response(200, &alias.view()))
            }
            (M::DELETE, Some(name)) => {
                let _writing = self.aliases.writing.lock().await;
                if !state.store.delete_meta(&format!("{PREFIX}{name}")).await? {
                    return Err(aliases::alias_not_found(name));
                }
                self.aliases.invalidate();
                tracing::info!(alias = %name, "alias deleted");
                Ok(crate::http_util::empty_response(StatusCode::NO_CONTENT))
            }
            _ => Ok(crate::http_util::empty_response(
                StatusCode::METHOD_NOT_ALLOWED,
            )),
        }
    }
}
