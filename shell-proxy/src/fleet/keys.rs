//! API keys and tenant tokens through the proxy (a child module of `fleet`).
//!
//! The decisions are core's ([`miroir_core::auth::authorize`]); this file keeps the key ring they need: the
//! keys every node holds, read with the node key from one node (`GET /keys`). The ring is read again
//! - right after this proxy changed a key (`POST`, `PATCH`, `DELETE /keys`);
//! - when a token is refused and the ring is older than [`MISS_REFRESH_MS`] (a key created elsewhere, for
//!   example through another proxy, works at once; a flood of bad tokens costs one node read per period);
//! - when it is older than [`MAX_AGE_MS`] (a key deleted through another proxy stops working within that).
//!
//! Since the ring is read from any node, every node must hold every key: a node joining the fleet gets the
//! fleet's keys (core's [`key_ops::sync_plan`]) before the change that adds it is committed
//! ([`Fleet::sync_node_keys`]).

use std::sync::{Arc, Mutex};

use http::HeaderMap;
use miroir_core::auth::{self as core_auth, Access, KeyRing};
use miroir_core::ops::keys as key_ops;
use miroir_core::ops::{Method, NodeRequest};
use miroir_core::topology::NodeId;
use miroir_core::{MeiliError, Millis};
use serde_json::{Map, Value};

use super::{now_ms, Fleet};
use crate::auth::bearer_token;
use crate::routes::Route;
use crate::server::AppState;

/// A refused token reads the ring again when it is older than this.
pub const MISS_REFRESH_MS: Millis = 1_000;
/// The ring is read again before use when it is older than this.
pub const MAX_AGE_MS: Millis = 30_000;

/// The last key ring read from a node, and when.
#[derive(Default)]
pub struct KeyCache {
    state: Mutex<(Arc<KeyRing>, Option<Millis>)>,
    /// One read at a time; the others wait for it and use its result.
    reading: tokio::sync::Mutex<()>,
}

impl KeyCache {
    fn snapshot(&self) -> (Arc<KeyRing>, Option<Millis>) {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Forgets the ring: the next request reads it again.
    pub fn invalidate(&self) {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).1 = None;
    }
}

impl Fleet {
    /// The key ring, read again from a node when it is unknown or older than `max_age`.
    async fn key_ring(&self, state: &AppState, max_age: Millis) -> Arc<KeyRing> {
        let fresh = |at: Option<Millis>| at.is_some_and(|at| now_ms().saturating_sub(at) < max_age);
        let (ring, at) = self.keys.snapshot();
        if fresh(at) {
            return ring;
        }
        let _reading = self.keys.reading.lock().await;
        let (ring, at) = self.keys.snapshot();
        if fresh(at) {
            return ring;
        }
        // Every key, whatever the node's default page size.
        match self
            .read_one(
                state,
                None,
                Method::Get,
                "/keys?offset=0&limit=100000",
                None,
            )
            .await
        {
            Ok((200, body)) => {
                let ring = Arc::new(KeyRing::from_list(&body));
                *self.keys.state.lock().unwrap_or_else(|p| p.into_inner()) =
                    (Arc::clone(&ring), Some(now_ms()));
                ring
            }
            Ok((status, _)) => {
                // A fleet whose nodes run without a master key has no keys.
                tracing::debug!(status, "the nodes list no API keys");
                let ring = Arc::new(KeyRing::default());
                *self.keys.state.lock().unwrap_or_else(|p| p.into_inner()) =
                    (Arc::clone(&ring), Some(now_ms()));
                ring
            }
            Err(e) => {
                tracing::warn!(error = %e.message, "cannot read the API keys from any node");
                ring
            }
        }
    }

    /// Makes the keys of each of `nodes` the fleet's, as read from a serving node: creates the missing
    /// ones with their uid (so their value), deletes the others, fixes names and descriptions. Nothing to do
    /// when the fleet's nodes run without a master key. An `Err` (a node unreachable or failing) is worth
    /// retrying; a key a node refuses (for example one that has expired meanwhile) is logged and skipped.
    pub(super) async fn sync_node_keys(
        &self,
        state: &AppState,
        nodes: &[NodeId],
    ) -> Result<(), MeiliError> {
        const LIST: &str = "/keys?offset=0&limit=100000";
        if nodes.is_empty() {
            return Ok(());
        }
        let reference = match self.read_one(state, None, Method::Get, LIST, None).await? {
            (200, body) => body,
            // nodes without a master key have no keys (`missing_master_key`)
            (401, _) => return Ok(()),
            (status, body) => {
                return Err(MeiliError::bad_node_response(
                    "fleet",
                    &format!("listing the API keys answered {status}: {body}"),
                ))
            }
        };
        for node in nodes {
            let list = NodeRequest {
                id: 0,
                node: node.clone(),
                method: Method::Get,
                path: LIST.to_string(),
                body: None,
            };
            let target = match self.send_future(state, list).await.1 {
                Ok((200, body)) => body,
                Ok((status, body)) => {
                    return Err(MeiliError::bad_node_response(
                        node.as_str(),
                        &format!("listing its API keys answered {status}: {body}"),
                    ))
                }
                Err(why) => return Err(MeiliError::bad_node_response(node.as_str(), &why)),
            };
            let plan = key_ops::sync_plan(&reference, &target, node)?;
            if !plan.is_empty() {
                tracing::info!(node = %node, requests = plan.len(), "copying the fleet's API keys");
            }
            // In order: a key created again is deleted first.
            for r in plan {
                let what = format!("{:?} {}", r.method, r.path);
                let delete = r.method == Method::Delete;
                match self.send_future(state, r).await.1 {
                    Ok((status, _)) if (200..300).contains(&status) => {}
                    // already gone
                    Ok((404, _)) if delete => {}
                    Ok((status, body)) if (400..500).contains(&status) => {
                        tracing::warn!(node = %node, status, %body, "{what}: refused, key skipped")
                    }
                    Ok((status, body)) => {
                        return Err(MeiliError::bad_node_response(
                            node.as_str(),
                            &format!("{what} answered {status}: {body}"),
                        ))
                    }
                    Err(why) => return Err(MeiliError::bad_node_response(node.as_str(), &why)),
                }
            }
        }
        Ok(())
    }

    /// Forgets the key ring after a key write through this proxy.
    pub(super) fn keys_changed(&self) {
        self.keys.invalidate();
    }

    /// Decides a client request for `route` (see [`core_auth::authorize`]).
    pub(super) async fn authorize_request(
        &self,
        state: &AppState,
        route: &Route,
        headers: &HeaderMap,
    ) -> Result<Access, MeiliError> {
        let master = state.config.master_key.expose();
        let token = bearer_token(headers);
        let Some((action, index)) = route.action() else {
            return crate::auth::check_client(headers, master).map(|()| Access::Full);
        };
        let quick = KeyRing::default();
        // The master key and a missing header need no ring.
        let decided = core_auth::authorize(master, &quick, token, action, index, now_ms());
        if !matches!(&decided, Err(e) if e.status == 403) {
            return decided;
        }
        let ring = self.key_ring(state, MAX_AGE_MS).await;
        match core_auth::authorize(master, &ring, token, action, index, now_ms()) {
            Err(e) if e.status == 403 && e.message == core_auth::invalid_api_key().message => {
                let ring = self.key_ring(state, MISS_REFRESH_MS).await;
                core_auth::authorize(master, &ring, token, action, index, now_ms())
            }
            other => other,
        }
    }

    /// Whether the request carries the master key or a known API key (for requests whose path is
    /// malformed, so that the path error is what a valid key sees).
    pub(super) async fn authenticate_request(
        &self,
        state: &AppState,
        headers: &HeaderMap,
    ) -> Result<(), MeiliError> {
        let master = state.config.master_key.expose();
        let checked = crate::auth::check_client(headers, master);
        if !matches!(&checked, Err(e) if e.status == 403) {
            return checked;
        }
        let token = bearer_token(headers).unwrap_or_default();
        if self
            .key_ring(state, MAX_AGE_MS)
            .await
            .by_value(token)
            .is_some()
            || self
                .key_ring(state, MISS_REFRESH_MS)
                .await
                .by_value(token)
                .is_some()
        {
            Ok(())
        } else {
            checked
        }
    }
}

/// `GET /indexes` for a key restricted to some indexes: the authorized ones among `all` (every index, as
/// one node lists them), paginated with the client's `offset` and `limit` (already validated by a node).
pub fn authorized_index_page(access: &Access, all: &Value, offset: usize, limit: usize) -> Value {
    let results: Vec<Value> = all
        .get("results")
        .and_then(Value::as_array)
        .map(|r| {
            r.iter()
                .filter(|i| {
                    i.get("uid")
                        .and_then(Value::as_str)
                        .is_some_and(|u| access.is_index_authorized(u))
                })
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    let total = results.len();
    let page: Vec<Value> = results.into_iter().skip(offset).take(limit).collect();
    let mut out = Map::new();
    out.insert("results".into(), Value::Array(page));
    out.insert("offset".into(), Value::from(offset));
    out.insert("limit".into(), Value::from(limit));
    out.insert("total".into(), Value::from(total));
    Value::Object(out)
}

/// Whether a task is visible to `access`: every task with full access; otherwise only the tasks of one
/// index the key opens (Meilisearch hides the tasks of several or no index from index-scoped keys).
pub fn task_visible(access: &Access, index_uid: Option<&str>) -> bool {
    access.all_indexes_authorized() || index_uid.is_some_and(|i| access.is_index_authorized(i))
}

#[cfg(test)]
mod tests {
    use super::*;
    use miroir_core::auth::Scoped;
    use serde_json::json;

    fn scoped(indexes: &[&str]) -> Access {
        Access::Scoped(Scoped {
            key_indexes: indexes.iter().map(|s| s.to_string()).collect(),
            search_rules: None,
            can_create_indexes: false,
        })
    }

    #[test]
    fn index_pages_show_only_authorized_indexes() {
        let all = json!({"results": [{"uid": "a"}, {"uid": "movies"}, {"uid": "movies2"}, {"uid": "z"}],
            "offset": 0, "limit": 100000, "total": 4});
        let page = authorized_index_page(&scoped(&["movies*"]), &all, 1, 5);
        assert_eq!(
            page,
            json!({"results": [{"uid": "movies2"}], "offset": 1, "limit": 5, "total": 2})
        );
        let page = authorized_index_page(&Access::Full, &all, 0, 2);
        assert_eq!(page["total"], 4);
        assert_eq!(page["results"].as_array().unwrap().len(), 2);
    }

    #[test]
    fn tasks_of_other_or_no_index_are_hidden_from_scoped_keys() {
        let a = scoped(&["movies"]);
        assert!(task_visible(&a, Some("movies")));
        assert!(!task_visible(&a, Some("books")));
        assert!(!task_visible(&a, None));
        assert!(task_visible(&scoped(&["*"]), None));
        assert!(task_visible(&Access::Full, None));
    }
}
