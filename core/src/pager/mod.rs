//! # Exact global pagination of document listings over a sharded index
//!
//! `GET /indexes/{uid}/documents` and `POST /indexes/{uid}/documents/fetch` page through an index in the
//! node's internal order and answer `{results, offset, limit, total}`. Over S shards Miroir defines one
//! stable **global order**: by shard ascending, then by the position of the document inside its shard as the
//! node serving that shard returns it. [`DocumentsPager`] is the sans-IO state machine that answers one such
//! request exactly in that order; the shell sends the [`PagerRequest`]s it emits and feeds back the answers.
//!
//! ## States and transitions
//! - `Counting` (initial, unless the query has `ids`): one `POST /indexes/{uid}/search` per cover entry,
//!   `{"q": "", "limit": 0, "filter": client filter AND shard restriction, "facets": ["_miroir_shard"]}`.
//!   The node's `facetDistribution._miroir_shard` is the number of matching documents of each shard it serves.
//!   When every count is in: `total` = Σ counts, shard `s` occupies the global range
//!   `[Σ_{t<s} count_t, Σ_{t≤s} count_t)`, and each shard intersecting `[offset, offset + limit)` gets one
//!   fetch → `Fetching`; when none does (`limit: 0`, offset past the end, empty index) → `Done`.
//! - `Fetching`: one `POST /indexes/{uid}/documents/fetch` per intersecting shard `s`, to the node that counted
//!   it, `{"filter": client filter AND _miroir_shard = s, "offset": local offset, "limit": local limit, …}`.
//!   When every page is in → `Done` with the pages concatenated in shard order.
//! - `FetchingIds` (initial when the query has `ids`; no counting): one fetch per cover entry with the ids of
//!   its assigned shards (`shard_of` decides), `offset: 0`, `limit` = number of ids sent, `_miroir_shard`
//!   added to `fields`. Everything found is ordered by shard then node order and paginated locally;
//!   `total` is the number of documents found. → `Done`.
//! - `Done(body)` / `Error(error)`: terminal; [`DocumentsPager::poll`] keeps returning them.
//!
//! Events: [`DocumentsPager::on_response`] (a node answered, any status), [`DocumentsPager::on_failure`]
//! (the node could not be reached). A failure is reported once by `poll` as [`Step::Failed`] with the shards
//! the request was serving; the shell then either [`DocumentsPager::retry`]s the same request on another
//! replica holding those shards, or [`DocumentsPager::skip`]s it (unavailable-shard policy `partial`: the
//! shards count as empty and are listed by [`DocumentsPager::unavailable_shards`]), or drops the pager and
//! answers [`MeiliError::shard_unavailable`] itself (policy `error`). Skipping a counting request removes
//! its shards from `total` and from the global order; skipping a page request leaves that shard's documents
//! out of this page only (`total` still counts them). A retry always serves the same shards (a counting retry
//! restricts the new node to them with [`shard_filter`]); `Step::Send` with the replacement follows. Answers
//! to unknown, already answered or failed requests are ignored.
//!
//! ## Invariants
//! - The global order does not depend on which replica serves a shard: pages are cut per shard, at offsets
//!   inside the shard, so consecutive pages never overlap nor skip even when the covering set rotates between
//!   pages. The only caveat: replicas of one shard order its documents by their internal ids, which follow the
//!   order in which each replica received its writes; replicas fed the same write stream agree.
//! - Counts and pages are read at different instants; a write landing between them can shift a page by the
//!   documents it added or removed, as with a single node between two page requests.
//! - Nodes must keep `faceting.maxValuesPerFacet` ≥ S (the proxy configures it) and `_miroir_shard`
//!   filterable, otherwise a node could truncate the per-shard counts; a distribution that sums below the
//!   node's `estimatedTotalHits` is refused as a bad node response.
//! - Node errors are relayed as a single node would answer the documents route: a filter error from the
//!   counting search (`invalid_search_filter`) becomes `invalid_document_filter` with the same message.
//!   When several requests of a phase fail, the error of the earliest request is reported, so the answer does
//!   not depend on response timing. A malformed node answer yields `miroir_bad_node_response`, never a panic.
//! - No `_miroir_*` field reaches the client; every other field keeps its order.
//!
//! ## Known limits
//! - `sort` on the documents route is validated like Meilisearch (`invalid_document_sort`), then refused with
//!   `501 miroir_unsupported_documents_sort`: an exact cross-shard merge of facet-sorted listings is not
//!   implemented; use the search route with `sort`.
//! - The counting search goes through the search route: a filter the search route judges differently from
//!   the documents route (for example `_foreign(…)`, refused by the documents route) is judged as search does.
//! - `useNetwork` is accepted and ignored: Miroir's nodes are never networked.

mod query;

pub use query::{DocumentsQuery, DEFAULT_DOCUMENTS_LIMIT};

use serde_json::{Map, Value};
use std::collections::{BTreeMap, BTreeSet};

use crate::search::{and_filter, shard_filter};
use crate::topology::NodeId;
use crate::{ErrorType, MeiliError, RESERVED_PREFIX, SHARD_FIELD};

/// One node of the covering set, as routing planned it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoverEntry {
    /// The node.
    pub node: NodeId,
    /// The shards this node serves for this request.
    pub assigned: Vec<u32>,
    /// Every shard the node holds.
    pub held: Vec<u32>,
}

impl CoverEntry {
    /// Builds an entry.
    pub fn new(node: impl Into<NodeId>, assigned: Vec<u32>, held: Vec<u32>) -> Self {
        CoverEntry {
            node: node.into(),
            assigned,
            held,
        }
    }
}

/// A request the shell must send to a node.
#[derive(Debug, Clone, PartialEq)]
pub struct PagerRequest {
    /// The id to report the answer (or failure) with.
    pub id: usize,
    /// The node to send it to.
    pub node: NodeId,
    /// Always `POST`.
    pub method: &'static str,
    /// The path, e.g. `/indexes/movies/search`.
    pub path: String,
    /// The JSON body.
    pub body: Value,
}

/// What the shell must do next.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Send these requests (each exactly once).
    Send(Vec<PagerRequest>),
    /// Nothing to do until an answer or failure arrives.
    Wait,
    /// A request could not reach its node: call [`DocumentsPager::retry`] or [`DocumentsPager::skip`] with
    /// `request`, or give up with [`MeiliError::shard_unavailable`]`(&shards)`.
    Failed {
        /// The failed request's id.
        request: usize,
        /// The node that could not be reached.
        node: NodeId,
        /// The shards that request was serving.
        shards: Vec<u32>,
    },
    /// The client's `200` body.
    Done(Value),
    /// The client's error.
    Error(MeiliError),
}

#[derive(Debug, Clone, PartialEq)]
enum Kind {
    Count,
    Fetch {
        shard: u32,
        offset: usize,
        limit: usize,
    },
    Ids {
        ids: Vec<String>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    InFlight,
    Answered,
    Errored,
    /// Failed, not yet reported by `poll`.
    Failed,
    /// Failed and reported; waiting for `retry` or `skip`.
    AwaitingDecision,
    /// Replaced by a retry or given up by `skip`.
    Closed,
}

#[derive(Debug, Clone)]
struct Outstanding {
    id: usize,
    node: NodeId,
    shards: Vec<u32>,
    kind: Kind,
    status: Status,
    error: Option<MeiliError>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Counting,
    Fetching,
    FetchingIds,
    Finished,
}

/// The sans-IO state machine answering one document listing over a sharded index (see the module docs).
#[derive(Debug, Clone)]
pub struct DocumentsPager {
    index_uid: String,
    query: DocumentsQuery,
    phase: Phase,
    next_id: usize,
    requests: Vec<Outstanding>,
    outbox: Vec<PagerRequest>,
    /// Shard → (node that counted it, the shards that node holds).
    servers: BTreeMap<u32, (NodeId, Vec<u32>)>,
    held_by: BTreeMap<NodeId, Vec<u32>>,
    counts: BTreeMap<u32, u64>,
    pages: BTreeMap<u32, Vec<Map<String, Value>>>,
    found: Vec<(u32, Map<String, Value>)>,
    unavailable: BTreeSet<u32>,
    outcome: Option<Result<Value, MeiliError>>,
}

impl DocumentsPager {
    /// Starts answering `query` on index `index_uid` of `shards` shards, with the covering set `cover` (in
    /// covering-set order). `shard_of` maps a document id to its shard (only used when the query has `ids`).
    ///
    /// Shards no entry is assigned count as unavailable (empty). An invalid cover (a shard `≥ shards`, or
    /// assigned twice) ends in a `500 internal` error; a query with `sort` ends in
    /// `miroir_unsupported_documents_sort`.
    pub fn new(
        index_uid: &str,
        query: DocumentsQuery,
        cover: Vec<CoverEntry>,
        shards: u32,
        shard_of: &dyn Fn(&str) -> u32,
    ) -> Self {
        let mut pager = DocumentsPager {
            index_uid: index_uid.to_string(),
            query,
            phase: Phase::Counting,
            next_id: 0,
            requests: Vec::new(),
            outbox: Vec::new(),
            servers: BTreeMap::new(),
            held_by: BTreeMap::new(),
            counts: BTreeMap::new(),
            pages: BTreeMap::new(),
            found: Vec::new(),
            unavailable: BTreeSet::new(),
            outcome: None,
        };
        if pager.query.sort.is_some() {
            pager.outcome = Some(Err(MeiliError::new(
                501,
                "miroir_unsupported_documents_sort",
                ErrorType::InvalidRequest,
                "Miroir cannot sort a document listing across shards yet: remove `sort`, or use the search route with `sort` and an empty `q`.",
            )));
            return pager;
        }
        let mut seen = BTreeSet::new();
        for entry in &cover {
            for &s in &entry.assigned {
                if s >= shards || !seen.insert(s) {
                    pager.outcome = Some(Err(MeiliError::internal(format!(
                        "Invalid covering set for the document listing: shard {s} is out of range or assigned twice."
                    ))));
                    return pager;
                }
            }
        }
        pager.unavailable = (0..shards).filter(|s| !seen.contains(s)).collect();
        for entry in &cover {
            pager
                .held_by
                .insert(entry.node.clone(), sorted_unique(&entry.held));
        }
        match pager.query.ids.clone() {
            Some(ids) => {
                pager.phase = Phase::FetchingIds;
                for entry in cover {
                    let assigned = sorted_unique(&entry.assigned);
                    let mut mine: Vec<String> = Vec::new();
                    for id in &ids {
                        if assigned.binary_search(&shard_of(id)).is_ok() && !mine.contains(id) {
                            mine.push(id.clone());
                        }
                    }
                    pager.emit(entry.node, assigned, Kind::Ids { ids: mine });
                }
            }
            None => {
                for entry in cover {
                    pager.emit(entry.node, sorted_unique(&entry.assigned), Kind::Count);
                }
            }
        }
        pager
    }

    /// Narrows the listing to the shards of `scope` (primary-key narrowing, see
    /// [`crate::search::pinned_shards`]): the shards outside it cannot hold a matching document, so they are
    /// empty without being unavailable. Call it right after [`DocumentsPager::new`], with a cover that
    /// assigns only shards of `scope`.
    pub fn narrowed_to(mut self, scope: &[u32]) -> Self {
        self.unavailable.retain(|s| scope.contains(s));
        self
    }

    /// The shards given up (never assigned, or [`skip`](Self::skip)ped): the answer counts them as empty.
    pub fn unavailable_shards(&self) -> Vec<u32> {
        self.unavailable.iter().copied().collect()
    }

    /// A node answered request `request` with `status` and the parsed JSON `body`.
    pub fn on_response(&mut self, request: usize, status: u16, body: &Value) {
        let Some(index) = self
            .requests
            .iter()
            .position(|r| r.id == request && r.status == Status::InFlight)
        else {
            return;
        };
        let result = if (200..300).contains(&status) {
            self.absorb(index, body)
        } else {
            Err(self.node_error(index, status, body))
        };
        let r = &mut self.requests[index];
        match result {
            Ok(()) => r.status = Status::Answered,
            Err(e) => {
                r.status = Status::Errored;
                r.error = Some(e);
            }
        }
    }

    /// Request `request` could not reach its node (connection refused, timeout, …).
    pub fn on_failure(&mut self, request: usize) {
        if let Some(r) = self
            .requests
            .iter_mut()
            .find(|r| r.id == request && r.status == Status::InFlight)
        {
            r.status = Status::Failed;
        }
    }

    /// Re-sends failed request `request` to `node`, which holds the shards `held` (it must hold every shard
    /// the request serves). The new request is emitted by the next [`poll`](Self::poll).
    pub fn retry(
        &mut self,
        request: usize,
        node: NodeId,
        held: Vec<u32>,
    ) -> Result<(), MeiliError> {
        let index = self.failed_request(request)?;
        let held = sorted_unique(&held);
        let shards = self.requests[index].shards.clone();
        let missing: Vec<u32> = shards
            .iter()
            .copied()
            .filter(|s| held.binary_search(s).is_err())
            .collect();
        if !missing.is_empty() {
            return Err(MeiliError::internal(format!(
                "Cannot retry request {request} on node `{node}`: it does not hold shard(s) {}.",
                crate::error::join_u32(&missing)
            )));
        }
        self.requests[index].status = Status::Closed;
        let kind = self.requests[index].kind.clone();
        self.held_by.insert(node.clone(), held);
        self.emit(node, shards, kind);
        Ok(())
    }

    /// Gives up failed request `request`: its shards are treated as unavailable (empty).
    pub fn skip(&mut self, request: usize) -> Result<(), MeiliError> {
        let index = self.failed_request(request)?;
        let r = &mut self.requests[index];
        r.status = Status::Closed;
        let shards = r.shards.clone();
        self.unavailable.extend(shards);
        Ok(())
    }

    /// The next thing to do.
    pub fn poll(&mut self) -> Step {
        loop {
            if let Some(outcome) = &self.outcome {
                return match outcome {
                    Ok(body) => Step::Done(body.clone()),
                    Err(e) => Step::Error(e.clone()),
                };
            }
            if !self.outbox.is_empty() {
                return Step::Send(std::mem::take(&mut self.outbox));
            }
            if let Some(r) = self
                .requests
                .iter_mut()
                .find(|r| r.status == Status::Failed)
            {
                r.status = Status::AwaitingDecision;
                return Step::Failed {
                    request: r.id,
                    node: r.node.clone(),
                    shards: r.shards.clone(),
                };
            }
            if self.requests.iter().any(|r| r.status == Status::InFlight) {
                return Step::Wait;
            }
            if let Some(e) = self
                .requests
                .iter()
                .filter(|r| r.status == Status::Errored)
                .min_by_key(|r| r.id)
                .and_then(|r| r.error.clone())
            {
                self.outcome = Some(Err(e));
                continue;
            }
            if self
                .requests
                .iter()
                .any(|r| r.status == Status::AwaitingDecision)
            {
                return Step::Wait;
            }
            self.advance();
        }
    }

    // ----- internals -----

    fn failed_request(&self, request: usize) -> Result<usize, MeiliError> {
        self.requests
            .iter()
            .position(|r| {
                r.id == request && matches!(r.status, Status::Failed | Status::AwaitingDecision)
            })
            .ok_or_else(|| {
                MeiliError::internal(format!(
                    "Request {request} of the document listing is not a failed request."
                ))
            })
    }

    fn emit(&mut self, node: NodeId, shards: Vec<u32>, kind: Kind) {
        let id = self.next_id;
        self.next_id += 1;
        let held = self.held_by.get(&node).cloned().unwrap_or_default();
        let (path, body) = match &kind {
            Kind::Count => {
                let mut body = Map::new();
                body.insert("q".into(), Value::String(String::new()));
                body.insert("limit".into(), Value::from(0));
                if let Some(filter) = self.restricted_filter(&shards, &held) {
                    body.insert("filter".into(), filter);
                }
                body.insert(
                    "facets".into(),
                    Value::Array(vec![Value::String(SHARD_FIELD.to_string())]),
                );
                (format!("/indexes/{}/search", self.index_uid), body)
            }
            Kind::Fetch {
                shard,
                offset,
                limit,
            } => {
                let mut body = self.query.base_fetch_body();
                if let Some(filter) = self.restricted_filter(&[*shard], &held) {
                    body.insert("filter".into(), filter);
                }
                body.insert("offset".into(), Value::from(*offset));
                body.insert("limit".into(), Value::from(*limit));
                (format!("/indexes/{}/documents/fetch", self.index_uid), body)
            }
            Kind::Ids { ids } => {
                let mut body = self.query.base_fetch_body();
                if let Some(Value::Array(fields)) = body.get_mut("fields") {
                    if !fields.iter().any(|f| f == SHARD_FIELD) {
                        fields.push(Value::String(SHARD_FIELD.to_string()));
                    }
                }
                body.insert(
                    "ids".into(),
                    Value::Array(ids.iter().cloned().map(Value::String).collect()),
                );
                if let Some(filter) = client_filter(self.query.filter.as_ref()) {
                    body.insert("filter".into(), filter.clone());
                }
                body.insert("offset".into(), Value::from(0));
                body.insert("limit".into(), Value::from(ids.len()));
                (format!("/indexes/{}/documents/fetch", self.index_uid), body)
            }
        };
        self.requests.push(Outstanding {
            id,
            node: node.clone(),
            shards,
            kind,
            status: Status::InFlight,
            error: None,
        });
        self.outbox.push(PagerRequest {
            id,
            node,
            method: "POST",
            path,
            body: Value::Object(body),
        });
    }

    /// The client's filter AND the restriction to `shards` among `held` (`None`: no filter at all).
    fn restricted_filter(&self, shards: &[u32], held: &[u32]) -> Option<Value> {
        let client = client_filter(self.query.filter.as_ref());
        match shard_filter(shards, held) {
            Some(restriction) => Some(and_filter(client, &restriction)),
            None => client.cloned(),
        }
    }

    fn node_error(&self, index: usize, status: u16, body: &Value) -> MeiliError {
        let r = &self.requests[index];
        match MeiliError::from_node_body(status, body) {
            Some(mut e) => {
                if r.kind == Kind::Count && e.code == "invalid_search_filter" {
                    e.code = "invalid_document_filter".to_string();
                }
                e
            }
            None => MeiliError::bad_node_response(
                r.node.as_str(),
                &format!("status {status} without a Meilisearch error body"),
            ),
        }
    }

    fn absorb(&mut self, index: usize, body: &Value) -> Result<(), MeiliError> {
        let r = self.requests[index].clone();
        let bad = |what: &str| MeiliError::bad_node_response(r.node.as_str(), what);
        match &r.kind {
            Kind::Count => {
                let hits = body
                    .get("estimatedTotalHits")
                    .or_else(|| body.get("totalHits"))
                    .and_then(Value::as_u64)
                    .ok_or_else(|| bad("the count search has no `estimatedTotalHits`"))?;
                let distribution = body
                    .get("facetDistribution")
                    .and_then(Value::as_object)
                    .ok_or_else(|| bad("the count search has no `facetDistribution`"))?;
                let empty = Map::new();
                let per_shard = match distribution.get(SHARD_FIELD) {
                    Some(Value::Object(m)) => m,
                    None => &empty,
                    Some(_) => {
                        return Err(bad("`facetDistribution._miroir_shard` is not an object"))
                    }
                };
                let mut counts: BTreeMap<u32, u64> = BTreeMap::new();
                let mut sum: u64 = 0;
                for (key, value) in per_shard {
                    let shard = parse_shard(key)
                        .filter(|s| r.shards.binary_search(s).is_ok())
                        .ok_or_else(|| {
                            bad(&format!(
                                "it counted documents of shard `{key}`, which it was not asked for"
                            ))
                        })?;
                    let count = value
                        .as_u64()
                        .ok_or_else(|| bad("a `_miroir_shard` facet count is not an integer"))?;
                    sum = sum.saturating_add(count);
                    counts.insert(shard, count);
                }
                if sum < hits {
                    return Err(bad(&format!(
                        "its `_miroir_shard` facet counts add up to {sum} but it found {hits} documents (is `maxValuesPerFacet` at least the shard count?)"
                    )));
                }
                let held = self.held_by.get(&r.node).cloned().unwrap_or_default();
                for &s in &r.shards {
                    self.counts.insert(s, counts.get(&s).copied().unwrap_or(0));
                    self.servers.insert(s, (r.node.clone(), held.clone()));
                }
                Ok(())
            }
            Kind::Fetch { shard, limit, .. } => {
                let results = results_of(body)
                    .ok_or_else(|| bad("the documents fetch has no `results` array of objects"))?;
                if results.len() > *limit {
                    return Err(bad(
                        "the documents fetch returned more documents than its limit",
                    ));
                }
                self.pages.insert(*shard, results);
                Ok(())
            }
            Kind::Ids { ids } => {
                let results = results_of(body)
                    .ok_or_else(|| bad("the documents fetch has no `results` array of objects"))?;
                if results.len() > ids.len() {
                    return Err(bad(
                        "the documents fetch returned more documents than ids asked",
                    ));
                }
                let mut tagged = Vec::with_capacity(results.len());
                for doc in results {
                    let shard = doc
                        .get(SHARD_FIELD)
                        .and_then(Value::as_u64)
                        .and_then(|s| u32::try_from(s).ok())
                        .filter(|s| r.shards.binary_search(s).is_ok())
                        .ok_or_else(|| {
                            bad("a fetched document has no `_miroir_shard` among the shards asked")
                        })?;
                    tagged.push((shard, doc));
                }
                self.found.extend(tagged);
                Ok(())
            }
        }
    }

    fn advance(&mut self) {
        match self.phase {
            Phase::Counting => {
                self.requests.clear();
                let total = self.total();
                let start = self.query.offset as u64;
                let end = start.saturating_add(self.query.limit as u64).min(total);
                let mut wanted = Vec::new();
                let mut shard_start: u64 = 0;
                for (&shard, &count) in &self.counts {
                    let shard_end = shard_start.saturating_add(count);
                    let lo = start.max(shard_start);
                    let hi = end.min(shard_end);
                    if lo < hi {
                        wanted.push((shard, (lo - shard_start) as usize, (hi - lo) as usize));
                    }
                    shard_start = shard_end;
                }
                self.phase = Phase::Fetching;
                for (shard, offset, limit) in wanted {
                    let Some((node, _)) = self.servers.get(&shard).cloned() else {
                        continue;
                    };
                    self.emit(
                        node,
                        vec![shard],
                        Kind::Fetch {
                            shard,
                            offset,
                            limit,
                        },
                    );
                }
            }
            Phase::Fetching => {
                let total = self.total();
                let results: Vec<Value> = std::mem::take(&mut self.pages)
                    .into_values()
                    .flatten()
                    .map(|doc| Value::Object(strip_reserved(doc)))
                    .collect();
                self.finish(results, total);
            }
            Phase::FetchingIds => {
                let mut found = std::mem::take(&mut self.found);
                // Stable: within a shard, the node's own order is kept.
                found.sort_by_key(|(shard, _)| *shard);
                let total = found.len() as u64;
                let results = found
                    .into_iter()
                    .skip(self.query.offset)
                    .take(self.query.limit)
                    .map(|(_, doc)| Value::Object(strip_reserved(doc)))
                    .collect();
                self.finish(results, total);
            }
            Phase::Finished => {
                // Unreachable (finishing sets the outcome), but never loop forever.
                self.outcome = Some(Err(MeiliError::internal(
                    "The document listing advanced past its end.",
                )));
            }
        }
    }

    /// Σ counts (saturating: a node's absurd counts must not overflow).
    fn total(&self) -> u64 {
        self.counts
            .values()
            .fold(0u64, |acc, c| acc.saturating_add(*c))
    }

    fn finish(&mut self, results: Vec<Value>, total: u64) {
        self.requests.clear();
        self.phase = Phase::Finished;
        let mut body = Map::new();
        body.insert("results".into(), Value::Array(results));
        body.insert("offset".into(), Value::from(self.query.offset));
        body.insert("limit".into(), Value::from(self.query.limit));
        body.insert("total".into(), Value::from(total));
        self.outcome = Some(Ok(Value::Object(body)));
    }
}

/// The client's filter, or `None` when it is absent, `null` or blank (as `and_filter` treats them).
fn client_filter(filter: Option<&Value>) -> Option<&Value> {
    match filter {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.trim().is_empty() => None,
        other => other,
    }
}

fn sorted_unique(values: &[u32]) -> Vec<u32> {
    let mut v = values.to_vec();
    v.sort_unstable();
    v.dedup();
    v
}

/// A `_miroir_shard` facet value as Meilisearch writes it (`"3"`, possibly `"3.0"`).
fn parse_shard(key: &str) -> Option<u32> {
    key.parse::<u32>().ok().or_else(|| {
        let f: f64 = key.parse().ok()?;
        (f.fract() == 0.0 && (0.0..=f64::from(u32::MAX)).contains(&f)).then_some(f as u32)
    })
}

fn results_of(body: &Value) -> Option<Vec<Map<String, Value>>> {
    body.get("results")?
        .as_array()?
        .iter()
        .map(|d| d.as_object().cloned())
        .collect()
}

/// Removes every `_miroir_*` field, keeping the order of the others.
fn strip_reserved(doc: Map<String, Value>) -> Map<String, Value> {
    doc.into_iter()
        .filter(|(k, _)| !k.starts_with(RESERVED_PREFIX))
        .collect()
}
