//! Speed in the proxy: replica selection and hedged reads.
//!
//! The fleet keeps one core [`Selector`] fed by every node read answer (the latency is measured here, in
//! the shell, and passed to core as a value). Scattered reads ([`ScatterSearch`], [`CoverRead`]) are
//! planned with the selector's replica ranking and hedging policy ([`Fleet::cover_options`]) and driven by
//! [`Fleet::drive_scatter`], which sleeps until the read's `poll_timeout` and then lets core send its
//! hedges. Requests still in flight when the read is decided (hedge losers) finish in the background, so
//! their latency still reaches the selector.
//!
//! Searches keep the nodes' answers as text ([`Scattered::wants_text`]): core merges them without parsing
//! hits whole and the reply's text is sent as is ([`Fleet::search_response`]).

use super::{now_ms, Answer, Fleet};
use crate::http_util::ProxyResponse;
use crate::server::AppState;
use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode};
use http_body_util::Full;
use miroir_core::ops::cover::{CoverOptions, CoverRead};
use miroir_core::ops::search::{ScatterSearch, TextReply};
use miroir_core::ops::{NodeRequest, RequestId};
use miroir_core::select::Selector;
use miroir_core::topology::{GroupId, NodeId};
use miroir_core::Millis;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::task::JoinSet;

/// A node's answer to a scattered read: parsed, or its text when the read merges text.
enum Payload {
    Json(Value),
    Text(String),
}

/// A node's answer to a scattered read, or why there is none.
type ReadAnswer = Result<(u16, Payload), String>;

/// A scattered read the proxy drives: both [`ScatterSearch`] and [`CoverRead`].
pub(super) trait Scattered {
    fn take_at(&mut self, now: Millis) -> Vec<NodeRequest>;
    fn response(&mut self, id: RequestId, status: u16, body: Value);
    /// Whether answers are fed as text ([`Scattered::response_text`]) instead of parsed.
    fn wants_text(&self) -> bool {
        false
    }
    /// Feeds an answer as the node's text (only called when [`Scattered::wants_text`]).
    fn response_text(&mut self, id: RequestId, status: u16, text: String) {
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        self.response(id, status, body)
    }
    fn failure(&mut self, id: RequestId);
    fn next_hedge(&self) -> Option<Millis>;
    fn hedge(&mut self, now: Millis);
    fn decided(&self) -> bool;
    fn hedge_counts(&self) -> (u32, u32);
    fn probe(&self, node: &NodeId) -> Option<NodeRequest>;
}

impl Scattered for ScatterSearch {
    fn take_at(&mut self, now: Millis) -> Vec<NodeRequest> {
        self.take_requests_at(now)
    }
    fn response(&mut self, id: RequestId, status: u16, body: Value) {
        self.on_response(id, status, body)
    }
    fn wants_text(&self) -> bool {
        true
    }
    fn response_text(&mut self, id: RequestId, status: u16, text: String) {
        self.on_response_text(id, status, text)
    }
    fn failure(&mut self, id: RequestId) {
        self.on_failure(id)
    }
    fn next_hedge(&self) -> Option<Millis> {
        self.poll_timeout()
    }
    fn hedge(&mut self, now: Millis) {
        self.on_timeout(now)
    }
    fn decided(&self) -> bool {
        self.is_done()
    }
    fn hedge_counts(&self) -> (u32, u32) {
        self.hedges()
    }
    fn probe(&self, node: &NodeId) -> Option<NodeRequest> {
        self.probe_request(node)
    }
}

impl Scattered for CoverRead {
    fn take_at(&mut self, now: Millis) -> Vec<NodeRequest> {
        self.take_requests_at(now)
    }
    fn response(&mut self, id: RequestId, status: u16, body: Value) {
        self.on_response(id, status, body)
    }
    fn failure(&mut self, id: RequestId) {
        self.on_failure(id)
    }
    fn next_hedge(&self) -> Option<Millis> {
        self.poll_timeout()
    }
    fn hedge(&mut self, now: Millis) {
        self.on_timeout(now)
    }
    fn decided(&self) -> bool {
        self.outcome().is_some()
    }
    fn hedge_counts(&self) -> (u32, u32) {
        self.hedges()
    }
    fn probe(&self, node: &NodeId) -> Option<NodeRequest> {
        self.probe_request(node)
    }
}

/// Feeds one answer to the selector: a 5xx or no answer is a failure, anything else an answer.
fn record(selector: &Mutex<Selector>, node: &NodeId, started: Instant, answer: &Answer) {
    let ok = matches!(answer, Ok((status, _)) if *status < 500);
    record_ok(selector, node, started, ok)
}

/// [`record`] for a scattered read's answer.
fn record_read(selector: &Mutex<Selector>, node: &NodeId, started: Instant, answer: &ReadAnswer) {
    let ok = matches!(answer, Ok((status, _)) if *status < 500);
    record_ok(selector, node, started, ok)
}

fn record_ok(selector: &Mutex<Selector>, node: &NodeId, started: Instant, ok: bool) {
    let latency = started.elapsed().as_millis() as Millis;
    selector
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .on_answer(node, latency, ok);
}

impl Fleet {
    /// A fresh selector for this proxy, as `selection` configures it.
    pub(super) fn new_selector(config: &miroir_core::config::Config) -> Arc<Mutex<Selector>> {
        Arc::new(Mutex::new(Selector::new(
            config.selection.strategy,
            config.selection.exploration,
            now_ms(),
        )))
    }

    /// Every node, in the selector's preference order (best first).
    pub(super) fn ranked_nodes(&self, among: Vec<NodeId>) -> Vec<NodeId> {
        self.selector
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .ranking(&among)
    }

    /// How to plan one scattered read: the selector's replica ranking and, when enabled, its hedging
    /// policy.
    pub(super) fn cover_options(
        &self,
        state: &AppState,
        preferred_group: GroupId,
        rotation: u64,
    ) -> CoverOptions {
        let nodes: Vec<NodeId> = self.topology().nodes.iter().map(|n| n.id.clone()).collect();
        let mut selector = self.selector.lock().unwrap_or_else(|p| p.into_inner());
        let ranking = selector.ranking(&nodes);
        let h = &state.config.hedging;
        let hedge = (h.enabled && h.max_hedges_per_query > 0).then(|| {
            selector.hedge_policy(&nodes, h.multiplier, h.floor_ms, h.max_hedges_per_query)
        });
        CoverOptions {
            preferred_group,
            rotation,
            ranking,
            scope: None,
            hedge,
        }
    }

    /// Sends one request of a read, recording it with the selector. With `text`, the answer is kept as
    /// the node's text.
    fn send_read(
        &self,
        state: &AppState,
        set: &mut JoinSet<(usize, ReadAnswer)>,
        sent: &mut HashMap<RequestId, (NodeId, Instant)>,
        r: NodeRequest,
        text: bool,
    ) {
        self.selector
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .on_sent(&r.node);
        sent.insert(r.id, (r.node.clone(), Instant::now()));
        if text {
            set.spawn(self.request_future_text(state, r));
        } else {
            let send = self.request_future(state, r);
            set.spawn(async move {
                let (id, answer) = send.await;
                (id, answer.map(|(status, v)| (status, Payload::Json(v))))
            });
        }
    }

    /// [`Fleet::request_future`] keeping the answer's text (not UTF-8: empty, which is not JSON either).
    fn request_future_text(
        &self,
        state: &AppState,
        r: NodeRequest,
    ) -> impl std::future::Future<Output = (usize, ReadAnswer)> + Send + 'static {
        // a search answer names no index: only the request is addressed to the physical index
        let (r, _) = self.routed(r);
        self.request_future_with(state, r, |body| {
            Payload::Text(String::from_utf8(Vec::from(body)).unwrap_or_default())
        })
    }

    /// Drives a scattered read to its decision: sends its requests, feeds the answers, and wakes up at
    /// its `poll_timeout` to let it hedge. Returns `false` when the requests ran out without a decision.
    pub(super) async fn drive_scatter<R: Scattered>(&self, state: &AppState, read: &mut R) -> bool {
        self.spawn_read_probe(state, read);
        let mut set = JoinSet::new();
        let mut sent: HashMap<RequestId, (NodeId, Instant)> = HashMap::new();
        let text = read.wants_text();
        let decided = loop {
            for r in read.take_at(now_ms()) {
                self.send_read(state, &mut set, &mut sent, r, text);
            }
            if read.decided() {
                break true;
            }
            let wait = read
                .next_hedge()
                .map(|at| Duration::from_millis(at.saturating_sub(now_ms())))
                .unwrap_or(Duration::from_secs(3600));
            match tokio::time::timeout(wait, set.join_next()).await {
                Ok(Some(Ok((id, answer)))) => {
                    if let Some((node, started)) = sent.remove(&id) {
                        record_read(&self.selector, &node, started, &answer);
                    }
                    match answer {
                        Ok((status, Payload::Json(body))) => read.response(id, status, body),
                        Ok((status, Payload::Text(text))) => read.response_text(id, status, text),
                        Err(_) => read.failure(id),
                    }
                }
                Ok(Some(Err(_))) => {}
                Ok(None) => break false,
                Err(_) => read.hedge(now_ms()),
            }
        };
        let (fired, won) = read.hedge_counts();
        state.metrics.observe_hedges(fired, won);
        if !set.is_empty() {
            // Late duplicates: let them finish so the selector learns how slow they were.
            let selector = Arc::clone(&self.selector);
            tokio::spawn(async move {
                while let Some(done) = set.join_next().await {
                    if let Ok((id, answer)) = done {
                        if let Some((node, started)) = sent.remove(&id) {
                            record_read(&selector, &node, started, &answer);
                        }
                    }
                }
            });
        }
        decided
    }

    /// The primary key this proxy routes an index's documents by, when it is already known (never asks a
    /// node: a narrowing is only worth it when free).
    pub(super) fn cached_primary_key(&self, uid: &str) -> Option<String> {
        self.cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .indexes
            .get(uid)
            .and_then(|m| m.primary_key.clone())
    }

    /// `GET /indexes/{uid}` from the nodes in preference order. A node that received none of the
    /// documents has not inferred the primary key: the first answer naming one wins, else the first
    /// plausible answer (see `read_preferring`).
    pub(super) async fn read_index(
        &self,
        state: &AppState,
        uid: &str,
    ) -> Result<(u16, Value), miroir_core::MeiliError> {
        let path = format!("/indexes/{uid}");
        self.read_preferring(
            state,
            None,
            miroir_core::ops::Method::Get,
            &path,
            None,
            |s, body| s == 200 && body.get("primaryKey").is_some_and(Value::is_string),
        )
        .await
    }

    /// The selector's exploration: now and then a shadow copy of the read goes to a random node, in the
    /// background; its answer is only timed.
    fn spawn_read_probe<R: Scattered>(&self, state: &AppState, read: &R) {
        let nodes: Vec<NodeId> = self.topology().nodes.iter().map(|n| n.id.clone()).collect();
        let node = self
            .selector
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .probe(&nodes);
        let Some(request) = node.and_then(|n| read.probe(&n)) else {
            return;
        };
        let node = request.node.clone();
        self.selector
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .on_sent(&node);
        let selector = Arc::clone(&self.selector);
        let started = Instant::now();
        let send = self.request_future(state, request);
        tokio::spawn(async move {
            let (_, answer) = send.await;
            record(&selector, &node, started, &answer);
        });
    }

    /// Sends one single-node read, feeding its latency to the selector.
    pub(super) async fn send_read_one(
        &self,
        state: &AppState,
        node: &NodeId,
        method: miroir_core::ops::Method,
        path: &str,
        body: Option<Value>,
    ) -> Answer {
        self.selector
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .on_sent(node);
        let started = Instant::now();
        let answer = self.send_one(state, node, method, path, body).await;
        record(&self.selector, node, started, &answer);
        answer
    }

    /// `POST|GET /indexes/{uid}/search`: the scattered search's reply, its text sent as merged.
    pub(super) async fn search_response(
        &self,
        state: &AppState,
        index: &str,
        body: &serde_json::Map<String, Value>,
    ) -> Result<ProxyResponse, miroir_core::MeiliError> {
        let search = self.scatter_search(state, index, body).await?;
        let Some(reply) = search.reply_text() else {
            return Err(miroir_core::MeiliError::internal(
                "the search ended without a reply",
            ));
        };
        Ok(text_response(reply))
    }
}

/// The response for a reply written as JSON text, with its extra headers.
fn text_response(reply: TextReply) -> ProxyResponse {
    let mut r = Response::new(Full::new(Bytes::from(reply.body.into_owned())));
    *r.status_mut() =
        StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    for (k, v) in reply.headers {
        if let (Ok(name), Ok(value)) = (
            http::header::HeaderName::from_bytes(k.as_bytes()),
            HeaderValue::from_str(v),
        ) {
            r.headers_mut().insert(name, value);
        }
    }
    r
}
