//! The proxy's side of read-your-writes sessions: it carries out `miroir_core::session`'s plans.
//!
//! [`around`] wraps the dispatch of every request carrying `X-Miroir-Session`:
//! - a write answered 202: the Miroir task's stored record names the node tasks that acknowledged it (and
//!   their replica groups); they become the session's last write;
//! - a read (GET, or one of the POST routes that only read): core plans it; a pinned read is served with
//!   its replica group forced ([`pinned_group`], consulted by the fleet's group rotation) and, with the
//!   `block` strategy, only once the write's node tasks in that group are final (polled on the nodes, at
//!   most `session.max_wait_ms`). The answer carries `X-Miroir-Session-Wait: ready | timeout | none`.
//!
//! Sessions live in this proxy's memory (bounded, with a TTL): a session's reads must go through the proxy
//! that took its writes to get the guarantee (a sticky load balancer), otherwise they are plain reads.

use crate::http_util::ProxyResponse;
use crate::routes::Route;
use crate::server::{AppState, ProxyRequest};
use bytes::Bytes;
use http::HeaderValue;
use miroir_core::config::SessionConfig;
use miroir_core::session::{
    judge_wait, session_id, ReadPlan, SessionWrite, Sessions, Wait, SESSION_HEADER,
};
use miroir_core::tasks::MiroirTask;
use miroir_core::topology::GroupId;
use serde_json::Value;
use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;

/// The response header saying how a session read waited.
pub const SESSION_WAIT_HEADER: &str = "x-miroir-session-wait";

/// How often awaited node tasks are polled.
const POLL_MS: u64 = 10;

tokio::task_local! {
    static PINNED: GroupId;
}

/// The replica group the current request is pinned to, if any (read by the fleet's group rotation).
pub fn pinned_group() -> Option<GroupId> {
    PINNED.try_with(|g| *g).ok()
}

/// This proxy's sessions.
pub struct SessionTable {
    sessions: Mutex<Sessions>,
}

impl SessionTable {
    /// No session yet.
    pub fn new(config: &SessionConfig) -> SessionTable {
        SessionTable {
            sessions: Mutex::new(Sessions::new(config)),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Sessions> {
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn is_read(route: &Route, method: &http::Method) -> bool {
    method == http::Method::GET
        || method == http::Method::HEAD
        || matches!(
            route,
            Route::SearchPost(_)
                | Route::MultiSearch
                | Route::FacetSearch(_)
                | Route::FetchDocuments(_)
                | Route::SimilarPost(_)
        )
}

/// Serves `request` through `run`, with read-your-writes when it names a session.
pub async fn around<F, Fut>(
    table: &SessionTable,
    state: &AppState,
    route: &Route,
    request: ProxyRequest,
    run: F,
) -> ProxyResponse
where
    F: FnOnce(ProxyRequest) -> Fut,
    Fut: Future<Output = ProxyResponse>,
{
    let Some(session) = request
        .headers
        .get(SESSION_HEADER)
        .and_then(|v| session_id(v.as_bytes()))
    else {
        return run(request).await;
    };
    let index = route.index_uid().map(|u| u.as_str().to_string());
    if !is_read(route, &request.method) {
        let response = run(request).await;
        if response.status().as_u16() != 202 {
            return response;
        }
        let (response, uid) = crate::http_util::task_uid_of(response).await;
        if let Some(uid) = uid {
            record(table, state, &session, uid).await;
        }
        return response;
    }
    let plan = table
        .lock()
        .plan_read(&session, index.as_deref(), crate::fleet::now_ms());
    match plan {
        ReadPlan::Any => {
            let mut response = run(request).await;
            response
                .headers_mut()
                .insert(SESSION_WAIT_HEADER, HeaderValue::from_static("none"));
            response
        }
        ReadPlan::Pinned {
            group,
            wait_for,
            deadline,
        } => {
            let waited = wait(state, &wait_for, deadline).await;
            let mut response = PINNED.scope(group, run(request)).await;
            response.headers_mut().insert(
                SESSION_WAIT_HEADER,
                HeaderValue::from_static(match waited {
                    Wait::TimedOut => "timeout",
                    _ => "ready",
                }),
            );
            response
        }
    }
}

/// Records Miroir task `uid` as the session's last write, with its acknowledging node tasks.
async fn record(table: &SessionTable, state: &AppState, session: &str, uid: u64) {
    let task = match state.store.get_task(uid).await {
        Ok(Some(v)) => v
            .get("record")
            .and_then(|r| serde_json::from_value::<MiroirTask>(r.clone()).ok()),
        _ => None,
    };
    let Some(task) = task else {
        return;
    };
    let acks = task
        .node_tasks
        .iter()
        .filter_map(|t| t.task_uid.map(|u| (t.node.clone(), u, t.group)))
        .collect();
    let write = SessionWrite {
        task_uid: uid,
        index: task.index_uid.clone(),
        acks,
    };
    table
        .lock()
        .record_write(session, write, crate::fleet::now_ms());
}

/// Polls the awaited node tasks until core judges the read may go.
async fn wait(
    state: &AppState,
    wait_for: &[(miroir_core::topology::NodeId, u64)],
    deadline: miroir_core::Millis,
) -> Wait {
    loop {
        let mut statuses: Vec<Option<String>> = Vec::with_capacity(wait_for.len());
        for (node, uid) in wait_for {
            let address = state
                .config
                .nodes
                .iter()
                .find(|n| &n.id == node)
                .map(|n| n.address.clone());
            let status = match address {
                Some(address) => state
                    .nodes
                    .send(
                        node.as_str(),
                        &address,
                        http::Method::GET,
                        &format!("/tasks/{uid}"),
                        None,
                        Bytes::new(),
                    )
                    .await
                    .ok()
                    .filter(|r| r.status == 200)
                    .and_then(|r| serde_json::from_slice::<Value>(&r.body).ok())
                    .and_then(|v| v.get("status").and_then(Value::as_str).map(str::to_string)),
                None => None,
            };
            statuses.push(status);
        }
        let refs: Vec<Option<&str>> = statuses.iter().map(|s| s.as_deref()).collect();
        match judge_wait(&refs, crate::fleet::now_ms(), deadline) {
            Wait::Again => tokio::time::sleep(Duration::from_millis(POLL_MS)).await,
            done => return done,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_pinned_group_is_scoped_to_the_request() {
        assert_eq!(pinned_group(), None);
        let inside = PINNED.scope(3, async { pinned_group() }).await;
        assert_eq!(inside, Some(3));
        assert_eq!(pinned_group(), None);
    }

    #[test]
    fn reads_are_recognised() {
        let u = crate::routes::IndexUid::parse("a").unwrap();
        assert!(is_read(&Route::SearchPost(u.clone()), &http::Method::POST));
        assert!(is_read(&Route::MultiSearch, &http::Method::POST));
        assert!(is_read(&Route::GetDocuments(u.clone()), &http::Method::GET));
        assert!(!is_read(&Route::AddDocuments(u), &http::Method::POST));
    }
}
