//! Self-healing replicas: per-write versions (last writer wins), tombstones, and the anti-entropy pass that
//! brings every replica of a shard to the same state.
//!
//! # Versions
//!
//! The proxy stamps every document it writes with [`VERSION_FIELD`] (`_miroir_v`), a `u64` from a hybrid
//! logical clock ([`VersionClock`]): `max(now_ms << 16, last + 1)`. One proxy's stamps strictly increase, so
//! a client that waits for each answer sees its writes ordered by version; after a restart, `now` has moved
//! on and the clock stays ahead of every stamp it gave before. A partial update (`PUT .../documents`) carries
//! the version too: the node merges the fields and the stamp, so the merged document holds the update's
//! version. Reserved `_miroir_*` fields are refused from clients (`documents::check_reserved_fields`) and
//! stripped from every answer (search merge, document reads, the pager), so the stamp never leaks.
//!
//! # Tombstones
//!
//! Deletes are stamped from the same clock and recorded *before* they are sent ([`Tombstones`]):
//! - by id: `(id, version)`;
//! - delete-all: one index-level `version`;
//! - by filter: `(filter, version)`.
//!
//! A stored copy at version `v` is **dead** when an id or index-level tombstone has a version `≥ v`, or when
//! a filter tombstone has a version `≥ v` and the copy matches that filter (asked of the node holding it with
//! `(<filter>) AND _miroir_shard = s`: a copy's content at a given version never changes, so matching it now
//! is matching it when the delete applied). Deletes win version ties. Tombstones are pruned
//! ([`Tombstones::prune`]) below the start version of a pass that left no difference behind
//! ([`Report::confirmed_before`]), minus a grace period the caller chooses for writes still in flight.
//!
//! # Rule (per document id, per shard)
//!
//! 1. Drop dead copies (tombstones above).
//! 2. The winner is the live copy with the greatest `(version, fingerprint)` ([`crate::docsync::fingerprint`] of
//!    the client-visible content breaks version ties deterministically, so every replica converges to the
//!    same document), or *absent* when no live copy is left.
//! 3. A replica holding anything else than the winner is repaired: the winner is copied to it (replacing an
//!    older or different copy, or filling a missing one), or its copy is deleted when the winner is absent.
//!
//! A doc present on some replicas only is therefore copied to the others unless a tombstone kills it: an
//! acknowledged delete is never resurrected, a write some replicas missed is never lost.
//!
//! # The machine ([`AntiEntropy`]): states and transitions
//!
//! ```text
//!   per shard, in order:  scan ─► filter_scan ─► decide ─► fetch_winners ─► apply ─► await ─► next shard
//!                          │  (one page per replica at a time, throttled)     (repair only)
//!                          └─ failure ─► retry after `retry_after_ms` ─► … ─► shard error after `max_attempts`
//!   all shards done ─► Finished (once)
//! ```
//! - `scan`: every replica's documents of the shard are paged (`POST /indexes/{i}/documents/fetch` with
//!   `_miroir_shard = s`), each reduced to `(id, version, fingerprint)`.
//! - `filter_scan`: for every filter tombstone, every replica is asked which of its copies of the shard match
//!   the filter (`fields: [pk, _miroir_v]`).
//! - `decide` (local): per replica, bucket digests (bucket = `xxh3(id) mod B`, digest = xor of
//!   `xxh3(id, version, fingerprint)`) are compared; ids of buckets that differ, plus every id holding a dead
//!   copy, are judged by the rule above. The report counts mismatched buckets and ids, missing RF copies,
//!   stale copies and dead copies.
//! - with `repair`: `fetch_winners` reads the winning copies by id from a replica holding them (a copy that
//!   changed since the scan is skipped: the next pass judges it), `apply` writes them (`POST documents`, which
//!   replaces the whole document, stamp included) or deletes (`delete-batch`) on the replicas that differ,
//!   and `await` polls each node task until it is final.
//!
//! Events in: [`AntiEntropy::on_response`], [`AntiEntropy::on_failure`], [`AntiEntropy::handle_timeout`].
//! Actions out: [`AntiEntropy::poll_action`] and [`AntiEntropy::poll_timeout`]. One request is in flight at a
//! time; scan pages are throttled to `docs_per_second`.
//!
//! # Invariants
//! - a delete is only sent for a copy some tombstone kills (never for a copy that is merely missing
//!   elsewhere), and a copy is only written when it is the live winner: no acknowledged delete comes back;
//! - a repair copies exactly the document read from the winner's holder, after checking it still has the
//!   scanned version and fingerprint;
//! - with `repair = false` nothing but reads is sent;
//! - any node answer, however malformed, ends in a retry or a shard error in the report, never a panic.
//!
//! # Known limits
//! - Offset paging races concurrent client writes: a pass under load may see a shifted page and judge a
//!   copy missing; the repair it sends is then the winner it saw, which a later pass corrects, since the
//!   replicas that acknowledged the newer write still hold it. A delete repair that races a newer write on
//!   the same replica is corrected the same way, except with a single replica (RF = 1).
//! - A partial update applied on top of different bases gives copies with the same version but different
//!   contents; the fingerprint picks one deterministically, not necessarily the one the client would expect.
//! - A filter tombstone only kills copies that match its filter. A replica that regressed to an older,
//!   non-matching copy (a late write) while the others held a newer, matching one that the filter then
//!   deleted keeps its older copy, and the rule copies it back: nothing records that a newer version existed.
//!   Recording the ids (and versions) a filter delete matched, read before sending it, would close this.
//! - Partial updates and deletes by filter from several proxy instances may reach a node in an order that
//!   differs from their versions; whole-document last-writer-wins cannot merge them (see the two limits
//!   above), so concurrent writers are only safe with whole-document writes and deletes by id.

use crate::documents::{document_id, BatchPlan, Document};
use crate::migration::fingerprint;
use crate::ops::{encode_query_value, Method, NodeRequest, RequestId};
use crate::search::and_filter;
use crate::topology::{NodeId, ShardId};
use crate::{Millis, SHARD_FIELD};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use xxhash_rust::xxh3::xxh3_64;

/// The reserved field holding a document's write version.
pub const VERSION_FIELD: &str = "_miroir_v";

// ----- versions -----

/// A hybrid logical clock: stamps are the least value `≥ max(now_ms << 16, last + 1)` whose low 8 bits are
/// the clock's instance number, so they strictly increase and two proxy instances (with distinct instance
/// numbers) never give the same stamp, even in the same millisecond.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionClock {
    last: u64,
    instance: u8,
}

impl VersionClock {
    /// A clock that has stamped nothing yet (instance 0).
    pub const fn new() -> Self {
        VersionClock {
            last: 0,
            instance: 0,
        }
    }

    /// A clock of proxy instance `instance` (each instance sharing a store needs its own number).
    pub const fn for_instance(instance: u8) -> Self {
        VersionClock { last: 0, instance }
    }

    /// A clock that continues after `last` (a stamp it or another clock gave).
    pub fn resume(last: u64) -> Self {
        VersionClock { last, instance: 0 }
    }

    /// The next stamp at wall time `now` (saturates at `u64::MAX` instead of overflowing).
    pub fn stamp(&mut self, now: Millis) -> u64 {
        let base = now.saturating_mul(1 << 16).max(self.last.saturating_add(1));
        let mut v = (base & !0xFF) | u64::from(self.instance);
        if v < base {
            v = v.saturating_add(0x100);
        }
        let v = v.max(base);
        self.last = v;
        v
    }

    /// Moves the clock past a version seen elsewhere (another proxy's stamp), so later stamps order after it.
    pub fn observe(&mut self, version: u64) {
        self.last = self.last.max(version);
    }

    /// The last stamp given or observed.
    pub fn last(&self) -> u64 {
        self.last
    }
}

/// A stored document's version: its [`VERSION_FIELD`], or 0 (older than any stamp) when absent or not an
/// unsigned integer (documents written before versions existed).
pub fn version_of(doc: &Document) -> u64 {
    doc.get(VERSION_FIELD).and_then(Value::as_u64).unwrap_or(0)
}

/// Stamps every document of a planned batch with `version`.
pub fn stamp_plan(plan: &mut BatchPlan, version: u64) {
    for docs in plan.per_node.values_mut() {
        for doc in docs {
            doc.insert(VERSION_FIELD.to_string(), Value::from(version));
        }
    }
}

/// The index a node request's path names (`/indexes/{uid}/…`), and the rest of the path without its query.
fn index_path(path: &str) -> Option<(&str, &str)> {
    let rest = path.strip_prefix("/indexes/")?;
    let rest = rest.split('?').next().unwrap_or(rest);
    match rest.split_once('/') {
        Some((uid, tail)) => Some((uid, tail)),
        None => Some((rest, "")),
    }
}

/// Stamps the documents a node request writes (`POST`/`PUT /indexes/{i}/documents`, a JSON array of
/// objects) with `version`; any other request is left as it is.
pub fn stamp_request(request: &mut NodeRequest, version: u64) {
    let writes_documents = matches!(request.method, Method::Post | Method::Put)
        && index_path(&request.path).is_some_and(|(_, tail)| tail == "documents");
    if !writes_documents {
        return;
    }
    if let Some(Value::Array(docs)) = request.body.as_mut() {
        for doc in docs.iter_mut().filter_map(Value::as_object_mut) {
            doc.insert(VERSION_FIELD.to_string(), Value::from(version));
        }
    }
}

/// Records the tombstones of the deletes among a write's node requests, at `version`, per index: ids of
/// `delete-batch` bodies, the filter of `documents/delete`, and delete-all (`DELETE .../documents`).
/// Returns whether anything was recorded. Call it (and store the result durably) before sending them.
pub fn record_deletes(
    tombstones: &mut BTreeMap<String, Tombstones>,
    requests: &[NodeRequest],
    version: u64,
) -> bool {
    let mut recorded = false;
    let mut filters_seen: BTreeSet<(String, String)> = BTreeSet::new();
    for r in requests {
        let Some((index, tail)) = index_path(&r.path) else {
            continue;
        };
        match (r.method, tail) {
            (Method::Post, "documents/delete-batch") => {
                let ids = r
                    .body
                    .as_ref()
                    .and_then(Value::as_array)
                    .map(|a| {
                        a.iter()
                            .map(crate::documents::delete_batch_id)
                            .collect::<Vec<_>>()
                    })
                    .unwrap_or_default();
                if !ids.is_empty() {
                    tombstones
                        .entry(index.to_string())
                        .or_default()
                        .delete_ids(ids, version);
                    recorded = true;
                }
            }
            (Method::Post, "documents/delete") => {
                let filter = r
                    .body
                    .as_ref()
                    .and_then(|b| b.get("filter"))
                    .cloned()
                    .unwrap_or(Value::Null);
                if filters_seen.insert((index.to_string(), filter.to_string())) {
                    tombstones
                        .entry(index.to_string())
                        .or_default()
                        .delete_filter(filter, version);
                    recorded = true;
                }
            }
            (Method::Delete, "documents") => {
                tombstones
                    .entry(index.to_string())
                    .or_default()
                    .delete_all(version);
                recorded = true;
            }
            _ => {}
        }
    }
    recorded
}

// ----- tombstones -----

/// A delete by filter, kept until pruned.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FilterTombstone {
    /// The client's filter, as sent (string or array form).
    pub filter: Value,
    /// The delete's version.
    pub version: u64,
}

/// One index's tombstones (see the module documentation for the rules).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Tombstones {
    /// Deletes by id: the greatest delete version per canonical id.
    pub ids: BTreeMap<String, u64>,
    /// The greatest delete-all version.
    pub all: Option<u64>,
    /// Deletes by filter.
    pub filters: Vec<FilterTombstone>,
}

impl Tombstones {
    /// Records a delete of `ids` at `version`.
    pub fn delete_ids<I: IntoIterator<Item = String>>(&mut self, ids: I, version: u64) {
        for id in ids {
            let v = self.ids.entry(id).or_insert(version);
            *v = (*v).max(version);
        }
    }

    /// Records a delete of every document at `version`.
    pub fn delete_all(&mut self, version: u64) {
        self.all = Some(self.all.map_or(version, |a| a.max(version)));
    }

    /// Records a delete by `filter` at `version`.
    pub fn delete_filter(&mut self, filter: Value, version: u64) {
        match self.filters.iter_mut().find(|f| f.filter == filter) {
            Some(f) => f.version = f.version.max(version),
            None => self.filters.push(FilterTombstone { filter, version }),
        }
    }

    /// Merges another set (e.g. another proxy's) into this one.
    pub fn merge(&mut self, other: &Tombstones) {
        for (id, v) in &other.ids {
            self.delete_ids([id.clone()], *v);
        }
        if let Some(a) = other.all {
            self.delete_all(a);
        }
        for f in &other.filters {
            self.delete_filter(f.filter.clone(), f.version);
        }
    }

    /// Whether a copy of `id` at `version` is killed by an id or index-level tombstone.
    pub fn kills_by_id(&self, id: &str, version: u64) -> bool {
        self.ids.get(id).is_some_and(|t| *t >= version) || self.all.is_some_and(|t| t >= version)
    }

    /// Removes every tombstone older than `before`; returns how many were removed.
    pub fn prune(&mut self, before: u64) -> usize {
        let n = self.len();
        self.ids.retain(|_, v| *v >= before);
        if self.all.is_some_and(|a| a < before) {
            self.all = None;
        }
        self.filters.retain(|f| f.version >= before);
        n - self.len()
    }

    /// The tombstones as store entries, sorted by key: `id:<id>`, `all`, `filter:<filter as JSON>`, each
    /// with its version.
    pub fn entries(&self) -> Vec<(String, u64)> {
        let mut out: Vec<(String, u64)> = self
            .ids
            .iter()
            .map(|(id, v)| (format!("id:{id}"), *v))
            .collect();
        if let Some(a) = self.all {
            out.push(("all".into(), a));
        }
        for f in &self.filters {
            out.push((format!("filter:{}", f.filter), f.version));
        }
        out.sort();
        out
    }

    /// Tombstones from store entries (see [`Tombstones::entries`]); an entry of another shape is a
    /// corrupt store, reported as `internal`.
    pub fn from_entries(entries: &[(String, u64)]) -> Result<Tombstones, crate::MeiliError> {
        let mut t = Tombstones::default();
        for (key, version) in entries {
            if let Some(id) = key.strip_prefix("id:") {
                t.delete_ids([id.to_string()], *version);
            } else if key == "all" {
                t.delete_all(*version);
            } else if let Some(f) = key.strip_prefix("filter:") {
                let filter: Value = serde_json::from_str(f).map_err(|e| {
                    crate::MeiliError::internal(format!("corrupt filter tombstone {key:?}: {e}"))
                })?;
                t.delete_filter(filter, *version);
            } else {
                return Err(crate::MeiliError::internal(format!(
                    "corrupt tombstone key {key:?}"
                )));
            }
        }
        Ok(t)
    }

    /// How many tombstones are kept.
    pub fn len(&self) -> usize {
        self.ids.len() + usize::from(self.all.is_some()) + self.filters.len()
    }

    /// Whether no tombstone is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

// ----- the machine -----

/// A deliberately broken anti-entropy pass, for the test that shows the simulator's checkers catch it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PlantedBug {
    /// The correct machine.
    #[default]
    None,
    /// Repair ignores tombstones: a copy an acknowledged delete killed wins and is copied everywhere.
    IgnoreTombstones,
}

/// Knobs of one pass.
#[derive(Debug, Clone, PartialEq)]
pub struct EntropyParams {
    /// Documents per scan page.
    pub page_size: usize,
    /// Digest buckets per shard.
    pub buckets: u32,
    /// Scan throttle (documents read per second over all replicas); 0 = unthrottled.
    pub docs_per_second: u32,
    /// Repair differences (true) or only report them (false).
    pub repair: bool,
    /// Pause before retrying a failed request.
    pub retry_after_ms: u64,
    /// Attempts per request before the shard is given up with an error.
    pub max_attempts: u32,
    /// Pause between polls of a repair's node task.
    pub task_poll_ms: u64,
    /// A planted bug (tests only).
    pub planted: PlantedBug,
}

impl Default for EntropyParams {
    fn default() -> Self {
        EntropyParams {
            page_size: 500,
            buckets: 64,
            docs_per_second: 0,
            repair: true,
            retry_after_ms: 500,
            max_attempts: 5,
            task_poll_ms: 100,
            planted: PlantedBug::None,
        }
    }
}

/// What the machine asks of its driver.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Send this request; feed the answer to [`AntiEntropy::on_response`] or [`AntiEntropy::on_failure`].
    Send(NodeRequest),
    /// The pass is over (emitted once); read [`AntiEntropy::report`].
    Finished,
}

/// One shard's findings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ShardReport {
    pub shard: ShardId,
    /// Its replicas (every group's owners).
    pub replicas: Vec<String>,
    /// Documents scanned per replica.
    pub documents: BTreeMap<String, usize>,
    /// Digest buckets whose digests differ between replicas.
    pub buckets_mismatched: usize,
    /// Ids whose replicas do not all hold the winner.
    pub ids_mismatched: usize,
    /// (id, replica) pairs where the winner exists but the replica holds no copy (missing RF copies).
    pub missing_copies: usize,
    /// (id, replica) pairs holding an older or different copy than the winner.
    pub stale_copies: usize,
    /// Copies a tombstone kills (deleted documents still present).
    pub dead_copies: usize,
    /// Repairs applied (document copies written plus deletions, each confirmed by its node task).
    pub repairs: usize,
    /// Differences left behind: not repaired (verify only), or whose repair failed or raced a write.
    pub unrepaired: usize,
    /// Up to 10 differing ids, for the operator.
    pub examples: Vec<String>,
    /// Why the shard could not be checked to the end, if it could not.
    pub error: Option<String>,
}

/// The findings of one pass.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub index: String,
    pub repair: bool,
    pub shards: Vec<ShardReport>,
    /// The version the pass started at.
    pub started_version: u64,
}

impl Report {
    /// Shards scanned to the end.
    pub fn shards_scanned(&self) -> usize {
        self.shards.iter().filter(|s| s.error.is_none()).count()
    }

    /// Mismatched buckets over every shard.
    pub fn buckets_mismatched(&self) -> usize {
        self.shards.iter().map(|s| s.buckets_mismatched).sum()
    }

    /// Mismatched ids over every shard.
    pub fn ids_mismatched(&self) -> usize {
        self.shards.iter().map(|s| s.ids_mismatched).sum()
    }

    /// Repairs applied over every shard.
    pub fn repairs(&self) -> usize {
        self.shards.iter().map(|s| s.repairs).sum()
    }

    /// Whether differences remain after the pass: a shard error, or differences not repaired.
    pub fn differences_remain(&self) -> bool {
        self.shards
            .iter()
            .any(|s| s.error.is_some() || s.unrepaired > 0)
    }

    /// The version below which tombstones are confirmed on every replica (every shard scanned and left
    /// without difference), if this pass confirms them.
    pub fn confirmed_before(&self) -> Option<u64> {
        (!self.differences_remain()).then_some(self.started_version)
    }

    /// The report as JSON (camelCase, as the proxy's `/_miroir/verify` answers it).
    pub fn to_json(&self) -> Value {
        let mut v = serde_json::to_value(self).unwrap_or(Value::Null);
        if let Some(m) = v.as_object_mut() {
            m.insert("shardsScanned".into(), json!(self.shards_scanned()));
            m.insert("bucketsMismatched".into(), json!(self.buckets_mismatched()));
            m.insert("idsMismatched".into(), json!(self.ids_mismatched()));
            m.insert("repairs".into(), json!(self.repairs()));
            m.insert("clean".into(), json!(!self.differences_remain()));
        }
        v
    }
}

/// One stored copy, reduced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Copy {
    version: u64,
    fp: u64,
}

/// A unit of work of the current shard.
#[derive(Debug, Clone)]
enum Work {
    Page {
        replica: usize,
        offset: usize,
    },
    FilterPage {
        filter: usize,
        replica: usize,
        offset: usize,
    },
    Decide,
    /// Read the winners `ids` (expected copies) from `holder`, then write them to their targets.
    FetchWinners {
        holder: usize,
        ids: Vec<(String, Copy, Vec<usize>)>,
    },
    Put {
        replica: usize,
        docs: Vec<Value>,
    },
    Delete {
        replica: usize,
        ids: Vec<String>,
    },
    Await {
        replica: usize,
        task_uid: u64,
        count: usize,
    },
}

#[derive(Debug, Clone)]
struct ShardRun {
    shard: ShardId,
    replicas: Vec<NodeId>,
    seen: Vec<BTreeMap<String, Copy>>,
    /// Per replica, per filter tombstone: the ids (and versions) matching the filter.
    matched: Vec<BTreeMap<usize, BTreeMap<String, u64>>>,
    work: VecDeque<Work>,
    report: ShardReport,
}

/// One anti-entropy pass over one index (see the module documentation).
#[derive(Debug, Clone)]
pub struct AntiEntropy {
    index: String,
    pk: String,
    params: EntropyParams,
    tombstones: Tombstones,
    pending: VecDeque<(ShardId, Vec<NodeId>)>,
    current: Option<ShardRun>,
    done: Vec<ShardReport>,
    in_flight: Option<(RequestId, Work, u32)>,
    /// The work to retry and its attempts so far.
    retry: Option<(Work, u32)>,
    wait_until: Option<Millis>,
    next_id: RequestId,
    started_version: u64,
    finished_sent: bool,
}

impl AntiEntropy {
    /// A pass over `shards` (each with every replica that should hold it) of index `index` whose primary key
    /// is `primary_key`, judging deletes by `tombstones`; `started_version` is a stamp taken when the pass
    /// starts (for tombstone pruning).
    pub fn new(
        index: impl Into<String>,
        primary_key: impl Into<String>,
        shards: Vec<(ShardId, Vec<NodeId>)>,
        tombstones: Tombstones,
        params: EntropyParams,
        started_version: u64,
    ) -> Self {
        AntiEntropy {
            index: index.into(),
            pk: primary_key.into(),
            params,
            tombstones,
            pending: shards.into_iter().collect(),
            current: None,
            done: Vec::new(),
            in_flight: None,
            retry: None,
            wait_until: None,
            next_id: 0,
            started_version,
            finished_sent: false,
        }
    }

    /// The report so far (complete once [`Action::Finished`] was emitted).
    pub fn report(&self) -> Report {
        let mut shards = self.done.clone();
        if let Some(run) = &self.current {
            shards.push(run.report.clone());
        }
        Report {
            index: self.index.clone(),
            repair: self.params.repair,
            shards,
            started_version: self.started_version,
        }
    }

    /// Whether the pass is over.
    pub fn is_finished(&self) -> bool {
        self.current.is_none() && self.pending.is_empty() && self.in_flight.is_none()
    }

    /// When [`AntiEntropy::handle_timeout`] must be called next, if a pause is running.
    pub fn poll_timeout(&self) -> Option<Millis> {
        self.wait_until
    }

    /// Ends a pause (throttle, retry back-off, task poll interval) once `now` reached it.
    pub fn handle_timeout(&mut self, now: Millis) {
        if self.wait_until.is_some_and(|t| now >= t) {
            self.wait_until = None;
        }
    }

    /// The next action, if one can be taken now.
    pub fn poll_action(&mut self) -> Option<Action> {
        if self.in_flight.is_some() || self.wait_until.is_some() {
            return None;
        }
        loop {
            if self.current.is_none() {
                let Some((shard, replicas)) = self.pending.pop_front() else {
                    if self.finished_sent {
                        return None;
                    }
                    self.finished_sent = true;
                    return Some(Action::Finished);
                };
                self.current = Some(self.start_shard(shard, replicas));
            }
            let (work, attempts) = match self.retry.take() {
                Some(w) => w,
                None => {
                    let run = self.current.as_mut()?;
                    match run.work.pop_front() {
                        Some(w) => (w, 0),
                        None => {
                            self.finish_shard(None);
                            continue;
                        }
                    }
                }
            };
            if let Work::Decide = work {
                self.decide();
                continue;
            }
            let request = self.request_for(&work);
            self.in_flight = Some((request.id, work, attempts));
            return Some(Action::Send(request));
        }
    }

    /// Feeds a node's answer to request `id`.
    pub fn on_response(&mut self, id: RequestId, status: u16, body: &Value, now: Millis) {
        let Some((work, attempts)) = self.take(id) else {
            return;
        };
        if !(200..300).contains(&status) {
            let code = body.get("code").and_then(Value::as_str).unwrap_or("");
            return self.failed(work, attempts, format!("HTTP {status} {code}"), now);
        }
        if let Err(e) = self.handle(work.clone(), body, now) {
            self.failed(work, attempts, e, now);
        }
    }

    /// Request `id` could not be delivered or timed out.
    pub fn on_failure(&mut self, id: RequestId, now: Millis) {
        if let Some((work, attempts)) = self.take(id) {
            self.failed(work, attempts, "unreachable or timed out".into(), now);
        }
    }

    fn take(&mut self, id: RequestId) -> Option<(Work, u32)> {
        match &self.in_flight {
            Some((i, _, _)) if *i == id => self.in_flight.take().map(|(_, w, a)| (w, a)),
            _ => None,
        }
    }

    fn start_shard(&self, shard: ShardId, replicas: Vec<NodeId>) -> ShardRun {
        let n = replicas.len();
        let mut work: VecDeque<Work> = (0..n)
            .map(|r| Work::Page {
                replica: r,
                offset: 0,
            })
            .collect();
        if self.params.planted != PlantedBug::IgnoreTombstones {
            for f in 0..self.tombstones.filters.len() {
                for r in 0..n {
                    work.push_back(Work::FilterPage {
                        filter: f,
                        replica: r,
                        offset: 0,
                    });
                }
            }
        }
        work.push_back(Work::Decide);
        ShardRun {
            shard,
            report: ShardReport {
                shard,
                replicas: replicas.iter().map(|r| r.0.clone()).collect(),
                ..Default::default()
            },
            seen: vec![BTreeMap::new(); n],
            matched: vec![BTreeMap::new(); n],
            replicas,
            work,
        }
    }

    fn finish_shard(&mut self, error: Option<String>) {
        if let Some(mut run) = self.current.take() {
            if error.is_some() {
                run.report.error = error;
            }
            self.done.push(run.report);
        }
        self.retry = None;
    }

    fn failed(&mut self, work: Work, attempts: u32, why: String, now: Millis) {
        let attempts = attempts + 1;
        let node = self
            .current
            .as_ref()
            .and_then(|run| run.replicas.get(work_replica(&work)))
            .map(|n| n.0.clone())
            .unwrap_or_default();
        if attempts >= self.params.max_attempts.max(1) {
            let what = match &work {
                Work::Put { .. } | Work::Delete { .. } | Work::Await { .. } => {
                    // the scan is complete: keep the findings, give up this repair only
                    if let Some(run) = self.current.as_mut() {
                        run.report.unrepaired += work_count(&work);
                    }
                    return;
                }
                Work::FetchWinners { ids, .. } => {
                    if let Some(run) = self.current.as_mut() {
                        run.report.unrepaired += ids.len();
                    }
                    return;
                }
                _ => "scan",
            };
            self.finish_shard(Some(format!(
                "{what} of node {node} failed {attempts} times: {why}"
            )));
        } else {
            self.retry = Some((work, attempts));
            self.wait_until = Some(now + self.params.retry_after_ms);
        }
    }

    fn request_for(&mut self, work: &Work) -> NodeRequest {
        let id = self.next_id;
        self.next_id += 1;
        let idx = &self.index;
        let limit = self.params.page_size.max(1);
        let (shard, node) = match &self.current {
            Some(run) => (
                run.shard,
                run.replicas
                    .get(work_replica(work))
                    .cloned()
                    .unwrap_or_else(|| NodeId::new("")),
            ),
            None => (0, NodeId::new("")),
        };
        let shard_filter = format!("{SHARD_FIELD} = {shard}");
        let fetch = format!("/indexes/{idx}/documents/fetch");
        let (method, path, body) = match work {
            Work::Page { offset, .. } => (
                Method::Post,
                fetch,
                Some(json!({"filter": shard_filter, "offset": offset, "limit": limit})),
            ),
            Work::FilterPage { filter, offset, .. } => {
                let f = self.tombstones.filters.get(*filter).map(|f| &f.filter);
                (
                    Method::Post,
                    fetch,
                    Some(json!({
                        "filter": and_filter(f, &shard_filter),
                        "fields": [self.pk, VERSION_FIELD],
                        "offset": offset,
                        "limit": limit,
                    })),
                )
            }
            Work::FetchWinners { ids, .. } => (
                Method::Post,
                fetch,
                Some(json!({
                    "ids": ids.iter().map(|(id, _, _)| id.clone()).collect::<Vec<_>>(),
                    "limit": ids.len().max(1),
                })),
            ),
            Work::Put { docs, .. } => (
                Method::Post,
                format!(
                    "/indexes/{idx}/documents?primaryKey={}",
                    encode_query_value(&self.pk)
                ),
                Some(Value::Array(docs.clone())),
            ),
            Work::Delete { ids, .. } => (
                Method::Post,
                format!("/indexes/{idx}/documents/delete-batch"),
                Some(json!(ids)),
            ),
            Work::Await { task_uid, .. } => (Method::Get, format!("/tasks/{task_uid}"), None),
            Work::Decide => (Method::Get, "/health".into(), None),
        };
        NodeRequest {
            id,
            node,
            method,
            path,
            body,
        }
    }

    fn handle(&mut self, work: Work, body: &Value, now: Millis) -> Result<(), String> {
        let limit = self.params.page_size.max(1);
        let dps = u64::from(self.params.docs_per_second);
        let pk = self.pk.clone();
        let run = self.current.as_mut().ok_or("no shard in progress")?;
        match work {
            Work::Page { replica, offset } => {
                let results = results_of(body)?;
                for doc in &results {
                    let id = document_id(doc, &pk).map_err(|e| e.message)?;
                    let copy = Copy {
                        version: version_of(doc),
                        fp: fingerprint(doc),
                    };
                    run.seen[replica].insert(id, copy);
                }
                *run.report
                    .documents
                    .entry(run.replicas[replica].0.clone())
                    .or_default() += results.len();
                if results.len() >= limit {
                    run.work.push_front(Work::Page {
                        replica,
                        offset: offset + results.len(),
                    });
                }
                if dps > 0 && !results.is_empty() {
                    let pause = (results.len() as u64 * 1000).div_ceil(dps);
                    self.wait_until = Some(now + pause);
                }
            }
            Work::FilterPage {
                filter,
                replica,
                offset,
            } => {
                let results = results_of(body)?;
                for doc in &results {
                    let id = document_id(doc, &pk).map_err(|e| e.message)?;
                    run.matched[replica]
                        .entry(filter)
                        .or_default()
                        .insert(id, version_of(doc));
                }
                if results.len() >= limit {
                    run.work.push_front(Work::FilterPage {
                        filter,
                        replica,
                        offset: offset + results.len(),
                    });
                }
                if dps > 0 && !results.is_empty() {
                    let pause = (results.len() as u64 * 1000).div_ceil(dps);
                    self.wait_until = Some(now + pause);
                }
            }
            Work::FetchWinners { ids, .. } => {
                let results = results_of(body)?;
                let mut fetched: BTreeMap<String, &Document> = BTreeMap::new();
                for doc in &results {
                    let id = document_id(doc, &pk).map_err(|e| e.message)?;
                    fetched.insert(id, doc);
                }
                let mut puts: BTreeMap<usize, Vec<Value>> = BTreeMap::new();
                for (id, want, targets) in ids {
                    match fetched.get(&id) {
                        Some(doc)
                            if (Copy {
                                version: version_of(doc),
                                fp: fingerprint(doc),
                            }) == want =>
                        {
                            for t in targets {
                                puts.entry(t)
                                    .or_default()
                                    .push(Value::Object((*doc).clone()));
                            }
                        }
                        // changed since the scan: the next pass judges it
                        _ => run.report.unrepaired += targets.len(),
                    }
                }
                for (replica, docs) in puts.into_iter().rev() {
                    run.work.push_front(Work::Put { replica, docs });
                }
            }
            Work::Put { replica, docs } => {
                let uid = task_uid_of(body)?;
                run.work.push_front(Work::Await {
                    replica,
                    task_uid: uid,
                    count: docs.len(),
                });
            }
            Work::Delete { replica, ids } => {
                let uid = task_uid_of(body)?;
                run.work.push_front(Work::Await {
                    replica,
                    task_uid: uid,
                    count: ids.len(),
                });
            }
            Work::Await {
                replica,
                task_uid,
                count,
            } => match body.get("status").and_then(Value::as_str) {
                Some("succeeded") => run.report.repairs += count,
                Some("failed") | Some("canceled") => run.report.unrepaired += count,
                Some(_) => {
                    run.work.push_front(Work::Await {
                        replica,
                        task_uid,
                        count,
                    });
                    self.wait_until = Some(now + self.params.task_poll_ms);
                }
                None => return Err("a task without a status".into()),
            },
            Work::Decide => {}
        }
        Ok(())
    }

    /// Whether `copy` of `id` on `replica` is dead (see the module documentation).
    fn dead(&self, run: &ShardRun, replica: usize, id: &str, copy: Copy) -> bool {
        if self.params.planted == PlantedBug::IgnoreTombstones {
            return false;
        }
        if self.tombstones.kills_by_id(id, copy.version) {
            return true;
        }
        self.tombstones.filters.iter().enumerate().any(|(f, t)| {
            t.version >= copy.version
                && run.matched[replica]
                    .get(&f)
                    .and_then(|m| m.get(id))
                    .is_some_and(|v| *v == copy.version)
        })
    }

    fn decide(&mut self) {
        let Some(mut run) = self.current.take() else {
            return;
        };
        let n = run.replicas.len();
        let buckets = self.params.buckets.max(1) as u64;
        let bucket = |id: &str| xxh3_64(id.as_bytes()) % buckets;
        let mut digests = vec![BTreeMap::<u64, u64>::new(); n];
        for (r, seen) in run.seen.iter().enumerate() {
            for (id, c) in seen {
                let mut key = Vec::with_capacity(id.len() + 16);
                key.extend_from_slice(id.as_bytes());
                key.extend_from_slice(&c.version.to_le_bytes());
                key.extend_from_slice(&c.fp.to_le_bytes());
                *digests[r].entry(bucket(id)).or_default() ^= xxh3_64(&key);
            }
        }
        let mut all_buckets: BTreeSet<u64> = BTreeSet::new();
        for d in &digests {
            all_buckets.extend(d.keys());
        }
        let differing: BTreeSet<u64> = all_buckets
            .into_iter()
            .filter(|b| {
                let first = digests.first().and_then(|d| d.get(b));
                digests.iter().any(|d| d.get(b) != first)
            })
            .collect();
        run.report.buckets_mismatched = differing.len();
        let mut candidates: BTreeSet<String> = BTreeSet::new();
        for (r, seen) in run.seen.iter().enumerate() {
            for (id, c) in seen {
                if differing.contains(&bucket(id)) || self.dead(&run, r, id, *c) {
                    candidates.insert(id.clone());
                }
            }
        }
        // per holder: the winners to copy; per replica: the ids to delete
        let mut copies: BTreeMap<usize, Vec<(String, Copy, Vec<usize>)>> = BTreeMap::new();
        let mut deletes: BTreeMap<usize, Vec<String>> = BTreeMap::new();
        for id in candidates {
            let states: Vec<Option<Copy>> = run.seen.iter().map(|s| s.get(&id).copied()).collect();
            let alive: Vec<(usize, Copy)> = states
                .iter()
                .enumerate()
                .filter_map(|(r, s)| s.map(|c| (r, c)))
                .filter(|(r, c)| !self.dead(&run, *r, &id, *c))
                .collect();
            let winner = alive.iter().map(|(_, c)| *c).max();
            let mut targets = Vec::new();
            let mut deleted = false;
            for (r, state) in states.iter().enumerate() {
                match (state, winner) {
                    (Some(c), Some(w)) if *c == w => {}
                    (None, Some(_)) => {
                        run.report.missing_copies += 1;
                        targets.push(r);
                    }
                    (Some(c), Some(_)) => {
                        if self.dead(&run, r, &id, *c) {
                            run.report.dead_copies += 1;
                        } else {
                            run.report.stale_copies += 1;
                        }
                        targets.push(r);
                    }
                    (Some(_), None) => {
                        run.report.dead_copies += 1;
                        deletes.entry(r).or_default().push(id.clone());
                        deleted = true;
                    }
                    (None, None) => {}
                }
            }
            if targets.is_empty() && !deleted {
                continue;
            }
            run.report.ids_mismatched += 1;
            if run.report.examples.len() < 10 {
                run.report.examples.push(id.clone());
            }
            if let (Some(w), false) = (winner, targets.is_empty()) {
                let holder = alive
                    .iter()
                    .find(|(_, c)| *c == w)
                    .map(|(r, _)| *r)
                    .unwrap_or(0);
                copies.entry(holder).or_default().push((id, w, targets));
            }
        }
        if self.params.repair {
            let page = self.params.page_size.max(1);
            for (holder, ids) in copies {
                for chunk in ids.chunks(page) {
                    run.work.push_back(Work::FetchWinners {
                        holder,
                        ids: chunk.to_vec(),
                    });
                }
            }
            for (replica, ids) in deletes {
                for chunk in ids.chunks(page) {
                    run.work.push_back(Work::Delete {
                        replica,
                        ids: chunk.to_vec(),
                    });
                }
            }
        } else {
            run.report.unrepaired = run.report.ids_mismatched;
        }
        self.current = Some(run);
    }
}

fn work_replica(work: &Work) -> usize {
    match work {
        Work::Page { replica, .. }
        | Work::FilterPage { replica, .. }
        | Work::Put { replica, .. }
        | Work::Delete { replica, .. }
        | Work::Await { replica, .. } => *replica,
        Work::FetchWinners { holder, .. } => *holder,
        Work::Decide => 0,
    }
}

fn work_count(work: &Work) -> usize {
    match work {
        Work::Put { docs, .. } => docs.len(),
        Work::Delete { ids, .. } => ids.len(),
        Work::Await { count, .. } => *count,
        Work::FetchWinners { ids, .. } => ids.len(),
        _ => 0,
    }
}

fn results_of(body: &Value) -> Result<Vec<&Document>, String> {
    body.get("results")
        .and_then(Value::as_array)
        .ok_or("a documents page without `results`")?
        .iter()
        .map(|d| {
            d.as_object()
                .ok_or_else(|| "a document that is not an object".into())
        })
        .collect()
}

fn task_uid_of(body: &Value) -> Result<u64, String> {
    body.get("taskUid")
        .and_then(Value::as_u64)
        .ok_or_else(|| "a write answer without `taskUid`".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// An in-memory fleet of replicas of one shard (shard 0) answering the machine's requests like
    /// Meilisearch (documents fetch with `filter` / `ids` / `fields`, writes, delete-batch, tasks). Filters
    /// understood: `_miroir_shard = 0`, optionally AND-ed with `genre = <g>`.
    #[derive(Debug, Clone, Default)]
    struct Fake {
        nodes: BTreeMap<String, BTreeMap<String, Document>>,
        /// Nodes that answer nothing (the request fails).
        down: BTreeSet<String>,
        /// Every request sent, as `node method path`.
        log: Vec<String>,
        /// Tasks answer `processing` this many times before `succeeded`.
        slow_tasks: u32,
        polls: u32,
    }

    fn doc(id: &str, v: u64, genre: &str) -> Document {
        json!({"id": id, "genre": genre, "_miroir_shard": 0, VERSION_FIELD: v})
            .as_object()
            .unwrap()
            .clone()
    }

    fn genre_of(filter: &Value) -> Option<String> {
        let text = match filter {
            Value::Array(items) => items.first()?.as_str()?.to_string(),
            _ => return None,
        };
        text.strip_prefix("genre = ").map(str::to_string)
    }

    impl Fake {
        fn with(nodes: &[(&str, Vec<Document>)]) -> Self {
            Fake {
                nodes: nodes
                    .iter()
                    .map(|(n, docs)| {
                        (
                            n.to_string(),
                            docs.iter()
                                .map(|d| (d["id"].as_str().unwrap().to_string(), d.clone()))
                                .collect(),
                        )
                    })
                    .collect(),
                ..Default::default()
            }
        }

        fn serve(&mut self, r: &NodeRequest) -> Option<(u16, Value)> {
            self.log
                .push(format!("{} {} {}", r.node, r.method.as_str(), r.path));
            if self.down.contains(r.node.as_str()) {
                return None;
            }
            let docs = self.nodes.entry(r.node.0.clone()).or_default();
            let body = r.body.clone().unwrap_or(Value::Null);
            if r.path.ends_with("/documents/fetch") {
                let genre = genre_of(&body["filter"]);
                let ids: Option<BTreeSet<String>> = body["ids"].as_array().map(|a| {
                    a.iter()
                        .map(|v| v.as_str().unwrap_or_default().to_string())
                        .collect()
                });
                let fields: Option<Vec<String>> = body["fields"].as_array().map(|a| {
                    a.iter()
                        .map(|v| v.as_str().unwrap_or_default().to_string())
                        .collect()
                });
                let offset = body["offset"].as_u64().unwrap_or(0) as usize;
                let limit = body["limit"].as_u64().unwrap_or(20) as usize;
                let results: Vec<Value> = docs
                    .iter()
                    .filter(|(id, _)| ids.as_ref().is_none_or(|s| s.contains(*id)))
                    .filter(|(_, d)| genre.as_ref().is_none_or(|g| d["genre"] == json!(g)))
                    .skip(offset)
                    .take(limit)
                    .map(|(_, d)| match &fields {
                        Some(f) => Value::Object(
                            d.iter()
                                .filter(|(k, _)| f.contains(k))
                                .map(|(k, v)| (k.clone(), v.clone()))
                                .collect(),
                        ),
                        None => Value::Object(d.clone()),
                    })
                    .collect();
                return Some((200, json!({"results": results})));
            }
            if r.path.contains("/documents?primaryKey=") {
                for d in body.as_array().unwrap() {
                    let d = d.as_object().unwrap().clone();
                    docs.insert(d["id"].as_str().unwrap().to_string(), d);
                }
                return Some((202, json!({"taskUid": 7})));
            }
            if r.path.ends_with("/delete-batch") {
                for id in body.as_array().unwrap() {
                    docs.remove(id.as_str().unwrap());
                }
                return Some((202, json!({"taskUid": 8})));
            }
            if r.path.starts_with("/tasks/") {
                self.polls += 1;
                if self.polls <= self.slow_tasks {
                    return Some((200, json!({"status": "processing"})));
                }
                return Some((200, json!({"status": "succeeded"})));
            }
            Some((404, json!({"code": "not_found"})))
        }

        fn writes(&self) -> usize {
            self.log
                .iter()
                .filter(|l| l.contains("primaryKey") || l.contains("delete-batch"))
                .count()
        }
    }

    fn machine(nodes: &[&str], tombstones: Tombstones, params: EntropyParams) -> AntiEntropy {
        AntiEntropy::new(
            "docs",
            "id",
            vec![(0, nodes.iter().map(|n| NodeId::new(*n)).collect())],
            tombstones,
            params,
            1 << 40,
        )
    }

    /// Drives `m` against `fake` to the end; the report.
    fn drive(m: &mut AntiEntropy, fake: &mut Fake) -> Report {
        let mut now = 1_000;
        for _ in 0..10_000 {
            match m.poll_action() {
                Some(Action::Send(r)) => match fake.serve(&r) {
                    Some((status, body)) => m.on_response(r.id, status, &body, now),
                    None => m.on_failure(r.id, now),
                },
                Some(Action::Finished) => {
                    assert!(m.is_finished());
                    assert_eq!(m.poll_action(), None, "Finished is emitted once");
                    return m.report();
                }
                None => {
                    let t = m
                        .poll_timeout()
                        .expect("a stalled machine waits for a timeout");
                    assert!(t > now, "timeouts lie in the future");
                    now = t;
                    m.handle_timeout(now);
                }
            }
        }
        panic!("the pass did not finish");
    }

    fn state(fake: &Fake, node: &str) -> BTreeMap<String, u64> {
        fake.nodes[node]
            .iter()
            .map(|(id, d)| (id.clone(), version_of(d)))
            .collect()
    }

    #[test]
    fn the_clock_is_strictly_increasing_and_resumes_ahead() {
        let mut c = VersionClock::new();
        let a = c.stamp(10);
        assert_eq!(a, 10 << 16);
        let b = c.stamp(10);
        assert_eq!(
            b,
            a + 0x100,
            "same millisecond: the next stamp of this instance"
        );
        let d = c.stamp(5);
        assert_eq!(d, b + 0x100, "a clock going back still increases");
        assert_eq!(c.stamp(11), 11 << 16);
        c.observe(12 << 16);
        assert_eq!(
            c.stamp(11),
            (12 << 16) + 0x100,
            "observed stamps order before later ones"
        );
        c.observe(3);
        assert_eq!(c.last(), (12 << 16) + 0x100);
        // two instances in the same milliseconds never collide
        let (mut x, mut y) = (VersionClock::for_instance(1), VersionClock::for_instance(2));
        let mut seen = BTreeSet::new();
        for now in [20, 20, 20, 21, 21] {
            let (sx, sy) = (x.stamp(now), y.stamp(now));
            assert_eq!((sx & 0xFF, sy & 0xFF), (1, 2));
            assert!(seen.insert(sx) && seen.insert(sy));
        }
        y.observe(x.last());
        assert!(y.stamp(0) > x.last());
        let mut r = VersionClock::resume(u64::MAX);
        assert_eq!(
            r.stamp(u64::MAX),
            u64::MAX,
            "saturates instead of overflowing"
        );
        assert_eq!(VersionClock::resume(7).last(), 7);
    }

    #[test]
    fn versions_read_and_stamp() {
        assert_eq!(version_of(&doc("a", 5, "x")), 5);
        let mut d = doc("a", 5, "x");
        d.insert(VERSION_FIELD.into(), json!("5"));
        assert_eq!(
            version_of(&d),
            0,
            "a malformed version is older than any stamp"
        );
        d.remove(VERSION_FIELD);
        assert_eq!(version_of(&d), 0);
        let placement = crate::ops::test_placement(3, 2, 1, 4);
        let docs = vec![
            json!({"id": 1}).as_object().unwrap().clone(),
            json!({"id": 2}).as_object().unwrap().clone(),
        ];
        let mut plan = crate::documents::plan_batch(docs, "id", &placement).unwrap();
        stamp_plan(&mut plan, 42);
        assert!(plan
            .per_node
            .values()
            .flatten()
            .all(|d| version_of(d) == 42 && d.contains_key(SHARD_FIELD)));
    }

    #[test]
    fn the_version_field_is_reserved_and_never_shown() {
        let client = json!({"id": 1, VERSION_FIELD: 3})
            .as_object()
            .unwrap()
            .clone();
        let e = crate::documents::check_reserved_fields(&client).unwrap_err();
        assert_eq!(e.code, "miroir_reserved_field");
        let placement = crate::ops::test_placement(1, 1, 1, 1);
        let mut get =
            crate::ops::get::DocumentGet::new("docs", "1", None, &placement, &|_| true, 0);
        let r = get.next_request().unwrap();
        get.on_response(
            r.id,
            200,
            json!({"id": 1, "_miroir_shard": 0, VERSION_FIELD: 3}),
        );
        assert_eq!(get.reply().unwrap().body, json!({"id": 1}));
    }

    fn req(method: Method, path: &str, body: Option<Value>) -> NodeRequest {
        NodeRequest {
            id: 0,
            node: NodeId::new("n0"),
            method,
            path: path.into(),
            body,
        }
    }

    #[test]
    fn only_document_writes_are_stamped() {
        let mut add = req(
            Method::Put,
            "/indexes/docs/documents?primaryKey=id",
            Some(json!([{"id": 1}, 2])),
        );
        stamp_request(&mut add, 9);
        assert_eq!(add.body, Some(json!([{"id": 1, VERSION_FIELD: 9}, 2])));
        for mut other in [
            req(
                Method::Post,
                "/indexes/docs/documents/delete-batch",
                Some(json!(["1"])),
            ),
            req(
                Method::Patch,
                "/indexes/docs/settings",
                Some(json!([{"a": 1}])),
            ),
            req(Method::Post, "/indexes", Some(json!([{"uid": "x"}]))),
            req(Method::Get, "/indexes/docs/documents", None),
        ] {
            let before = other.clone();
            stamp_request(&mut other, 9);
            assert_eq!(other, before);
        }
        // through a fan-out write
        let placement = crate::ops::test_placement(2, 2, 1, 2);
        let plan = crate::documents::plan_batch(
            vec![json!({"id": 1}).as_object().unwrap().clone()],
            "id",
            &placement,
        )
        .unwrap();
        let task = crate::ops::write::WriteTask {
            uid: 1,
            index_uid: Some("docs".into()),
            task_type: crate::tasks::TaskType::DocumentAdditionOrUpdate,
            details: None,
            enqueued_at: 0,
        };
        let mut w = crate::ops::write::FanoutWrite::documents(
            task,
            "docs",
            "id",
            true,
            plan,
            &placement,
            crate::quorum::WriteQuorum::Majority,
            10,
        );
        w.stamp_version(77);
        assert_eq!(w.requests().len(), 2);
        for r in w.requests() {
            assert_eq!(r.body.as_ref().unwrap()[0][VERSION_FIELD], 77);
        }
    }

    #[test]
    fn deletes_become_tombstones() {
        let mut t = BTreeMap::new();
        let requests = vec![
            req(
                Method::Post,
                "/indexes/docs/documents/delete-batch",
                Some(json!(["1", 2])),
            ),
            req(
                Method::Post,
                "/indexes/docs/documents/delete-batch",
                Some(json!(["3"])),
            ),
            req(
                Method::Post,
                "/indexes/docs/documents?primaryKey=id",
                Some(json!([{"id": 4}])),
            ),
        ];
        assert!(record_deletes(&mut t, &requests, 5));
        assert_eq!(
            t["docs"].ids,
            [("1", 5), ("2", 5), ("3", 5)]
                .map(|(i, v)| (i.to_string(), v))
                .into()
        );
        let filter = vec![
            req(
                Method::Post,
                "/indexes/docs/documents/delete",
                Some(json!({"filter": "genre = x"})),
            ),
            req(
                Method::Post,
                "/indexes/docs/documents/delete",
                Some(json!({"filter": "genre = x"})),
            ),
        ];
        assert!(record_deletes(&mut t, &filter, 6));
        assert_eq!(
            t["docs"].filters,
            vec![FilterTombstone {
                filter: json!("genre = x"),
                version: 6
            }]
        );
        assert!(record_deletes(
            &mut t,
            &[req(Method::Delete, "/indexes/other/documents", None)],
            7
        ));
        assert_eq!(t["other"].all, Some(7));
        let nothing = [
            req(Method::Delete, "/indexes/docs", None),
            req(
                Method::Post,
                "/indexes/docs/documents/delete-batch",
                Some(json!([])),
            ),
            req(Method::Post, "/keys", None),
        ];
        assert!(!record_deletes(&mut t, &nothing, 8));
        assert_eq!(t.len(), 2);
    }

    #[test]
    fn tombstones_round_trip_through_store_entries() {
        let mut t = Tombstones::default();
        t.delete_ids(["a:b".to_string(), "1".to_string()], 5);
        t.delete_all(3);
        t.delete_filter(json!(["genre = x", ["year > 1", "id = 2"]]), 9);
        let entries = t.entries();
        assert_eq!(entries[0], ("all".to_string(), 3));
        assert!(entries.contains(&("id:a:b".to_string(), 5)));
        assert_eq!(Tombstones::from_entries(&entries).unwrap(), t);
        assert!(Tombstones::from_entries(&[("filter:{oops".into(), 1)]).is_err());
        let e = Tombstones::from_entries(&[("what".into(), 1)]).unwrap_err();
        assert_eq!(e.code, "internal");
        assert_eq!(
            Tombstones::from_entries(&[]).unwrap(),
            Tombstones::default()
        );
    }

    #[test]
    fn tombstones_keep_the_newest_delete_and_prune() {
        let mut t = Tombstones::default();
        assert!(t.is_empty());
        t.delete_ids(["a".to_string(), "b".to_string()], 5);
        t.delete_ids(["a".to_string()], 3);
        assert_eq!(
            t.ids["a"], 5,
            "an older delete does not lower the tombstone"
        );
        assert!(t.kills_by_id("a", 5), "deletes win ties");
        assert!(t.kills_by_id("a", 4) && !t.kills_by_id("a", 6));
        assert!(!t.kills_by_id("c", 1));
        t.delete_all(4);
        t.delete_all(2);
        assert_eq!(t.all, Some(4));
        assert!(t.kills_by_id("c", 4) && !t.kills_by_id("c", 5));
        t.delete_filter(json!("genre = x"), 6);
        t.delete_filter(json!("genre = x"), 9);
        t.delete_filter(json!("genre = y"), 1);
        assert_eq!(t.filters.len(), 2);
        assert_eq!(t.filters[0].version, 9);
        assert_eq!(t.len(), 5);
        let mut other = Tombstones::default();
        other.delete_ids(["b".to_string()], 7);
        other.delete_all(8);
        other.delete_filter(json!("genre = y"), 3);
        t.merge(&other);
        assert_eq!((t.ids["b"], t.all, t.filters[1].version), (7, Some(8), 3));
        assert_eq!(t.prune(6), 2, "a (5) and genre = y (3) are below 6");
        assert_eq!((t.ids.len(), t.all, t.filters.len()), (1, Some(8), 1));
        assert_eq!(t.prune(10), 3);
        assert!(t.is_empty());
    }

    #[test]
    fn verify_only_reports_without_writing() {
        let mut fake = Fake::with(&[
            (
                "a",
                vec![doc("1", 5, "x"), doc("2", 5, "x"), doc("3", 9, "x")],
            ),
            (
                "b",
                vec![doc("1", 5, "x"), doc("3", 4, "x"), doc("4", 2, "x")],
            ),
        ]);
        let mut t = Tombstones::default();
        t.delete_ids(["4".to_string()], 3);
        let params = EntropyParams {
            repair: false,
            ..Default::default()
        };
        let r = drive(&mut machine(&["a", "b"], t, params), &mut fake);
        let s = &r.shards[0];
        assert_eq!(s.error, None);
        assert_eq!(s.documents["a"], 3);
        assert_eq!(
            s.ids_mismatched, 3,
            "2 missing on b, 3 stale on b, 4 dead on b"
        );
        assert_eq!((s.missing_copies, s.stale_copies, s.dead_copies), (1, 1, 1));
        assert_eq!(s.unrepaired, 3);
        assert!(s.buckets_mismatched >= 1);
        assert_eq!(s.examples, vec!["2", "3", "4"]);
        assert_eq!(fake.writes(), 0, "verify only reads");
        assert!(r.differences_remain() && r.confirmed_before().is_none());
        let j = r.to_json();
        assert_eq!(j["idsMismatched"], 3);
        assert_eq!(j["clean"], false);
        assert_eq!(j["shardsScanned"], 1);
    }

    #[test]
    fn repair_copies_the_newest_version_and_deletes_dead_copies() {
        let mut fake = Fake::with(&[
            (
                "a",
                vec![doc("1", 5, "x"), doc("2", 5, "x"), doc("3", 9, "x")],
            ),
            (
                "b",
                vec![doc("1", 5, "x"), doc("3", 4, "y"), doc("4", 2, "x")],
            ),
        ]);
        let mut t = Tombstones::default();
        t.delete_ids(["4".to_string()], 3);
        let r = drive(
            &mut machine(&["a", "b"], t.clone(), Default::default()),
            &mut fake,
        );
        let s = &r.shards[0];
        assert_eq!((s.ids_mismatched, s.repairs, s.unrepaired), (3, 3, 0));
        let want: BTreeMap<String, u64> = [("1", 5), ("2", 5), ("3", 9)]
            .map(|(i, v)| (i.to_string(), v))
            .into();
        assert_eq!(state(&fake, "a"), want);
        assert_eq!(state(&fake, "b"), want);
        assert_eq!(
            fake.nodes["b"]["3"]["genre"], "x",
            "the winner's content is copied whole"
        );
        assert_eq!(r.confirmed_before(), Some(1 << 40));
        // a second pass finds nothing
        let again = drive(&mut machine(&["a", "b"], t, Default::default()), &mut fake);
        assert_eq!(again.ids_mismatched(), 0);
        assert_eq!(again.buckets_mismatched(), 0);
        assert!(!again.differences_remain());
    }

    #[test]
    fn an_acknowledged_delete_is_never_resurrected() {
        // the delete (version 6) reached b only; a kept the older copy (version 5)
        let mut fake = Fake::with(&[("a", vec![doc("1", 5, "x")]), ("b", vec![])]);
        let mut t = Tombstones::default();
        t.delete_ids(["1".to_string()], 6);
        drive(
            &mut machine(&["a", "b"], t.clone(), Default::default()),
            &mut fake,
        );
        assert!(fake.nodes["a"].is_empty() && fake.nodes["b"].is_empty());
        // a write newer than the tombstone wins over it
        let mut fake = Fake::with(&[("a", vec![doc("1", 7, "x")]), ("b", vec![])]);
        drive(
            &mut machine(&["a", "b"], t.clone(), Default::default()),
            &mut fake,
        );
        assert_eq!(state(&fake, "b")["1"], 7);
        // a delete-all tombstone kills every older copy
        let mut all = Tombstones::default();
        all.delete_all(6);
        let mut fake = Fake::with(&[
            ("a", vec![doc("1", 5, "x"), doc("2", 8, "x")]),
            ("b", vec![doc("1", 5, "x")]),
        ]);
        let r = drive(
            &mut machine(&["a", "b"], all, Default::default()),
            &mut fake,
        );
        assert_eq!(
            r.shards[0].dead_copies, 2,
            "dead everywhere is still a difference to repair"
        );
        assert_eq!(state(&fake, "a").keys().collect::<Vec<_>>(), vec!["2"]);
        assert_eq!(state(&fake, "b").keys().collect::<Vec<_>>(), vec!["2"]);
    }

    #[test]
    fn the_planted_bug_resurrects_a_deleted_document() {
        let mut fake = Fake::with(&[("a", vec![doc("1", 5, "x")]), ("b", vec![])]);
        let mut t = Tombstones::default();
        t.delete_ids(["1".to_string()], 6);
        t.delete_filter(json!("genre = x"), 6);
        let params = EntropyParams {
            planted: PlantedBug::IgnoreTombstones,
            ..Default::default()
        };
        drive(&mut machine(&["a", "b"], t, params), &mut fake);
        assert_eq!(
            state(&fake, "b")["1"],
            5,
            "the deleted document was copied back"
        );
    }

    #[test]
    fn filter_tombstones_kill_only_older_matching_copies() {
        // delete `genre = x` at version 6: "1" (v5, x) is dead, "2" (v5, y) does not match, "3" (v7, x) is newer
        let mut fake = Fake::with(&[
            (
                "a",
                vec![doc("1", 5, "x"), doc("2", 5, "y"), doc("3", 7, "x")],
            ),
            ("b", vec![doc("2", 5, "y")]),
        ]);
        let mut t = Tombstones::default();
        t.delete_filter(json!("genre = x"), 6);
        let r = drive(&mut machine(&["a", "b"], t, Default::default()), &mut fake);
        assert_eq!(r.shards[0].dead_copies, 1);
        let want: BTreeMap<String, u64> =
            [("2", 5), ("3", 7)].map(|(i, v)| (i.to_string(), v)).into();
        assert_eq!(state(&fake, "a"), want);
        assert_eq!(state(&fake, "b"), want);
        assert!(fake
            .log
            .iter()
            .any(|l| l.starts_with("b POST") && l.ends_with("/documents/fetch")));
    }

    #[test]
    fn ties_on_version_converge_on_the_greatest_fingerprint() {
        let mut fake = Fake::with(&[("a", vec![doc("1", 5, "x")]), ("b", vec![doc("1", 5, "y")])]);
        let r = drive(
            &mut machine(&["a", "b"], Default::default(), Default::default()),
            &mut fake,
        );
        assert_eq!(r.shards[0].stale_copies, 1);
        assert_eq!(fake.nodes["a"]["1"], fake.nodes["b"]["1"]);
        let winner = if fingerprint(&doc("1", 5, "x")) > fingerprint(&doc("1", 5, "y")) {
            "x"
        } else {
            "y"
        };
        assert_eq!(fake.nodes["a"]["1"]["genre"], winner);
    }

    #[test]
    fn pages_are_throttled_and_followed() {
        let docs: Vec<Document> = (0..5).map(|i| doc(&i.to_string(), 1, "x")).collect();
        let mut fake = Fake::with(&[("a", docs.clone()), ("b", docs)]);
        let params = EntropyParams {
            page_size: 2,
            docs_per_second: 2,
            ..Default::default()
        };
        let mut m = machine(&["a", "b"], Default::default(), params);
        let Some(Action::Send(r)) = m.poll_action() else {
            panic!("a first page")
        };
        let (status, body) = fake.serve(&r).unwrap();
        m.on_response(r.id, status, &body, 1_000);
        assert_eq!(m.poll_action(), None, "throttled");
        assert_eq!(m.poll_timeout(), Some(2_000), "2 documents at 2 docs/s");
        m.handle_timeout(1_500);
        assert_eq!(m.poll_action(), None, "not yet");
        m.handle_timeout(2_000);
        let Some(Action::Send(r2)) = m.poll_action() else {
            panic!("the next page")
        };
        assert_eq!(r2.body.as_ref().unwrap()["offset"], 2);
        m.on_response(r.id, 200, &json!({"results": []}), 2_000);
        assert!(m.poll_timeout().is_none(), "a stale answer is ignored");
        let (status, body) = fake.serve(&r2).unwrap();
        m.on_response(r2.id, status, &body, 2_000);
        m.handle_timeout(10_000);
        let r = drive(&mut m, &mut fake);
        assert_eq!(r.shards[0].documents["a"], 5);
        assert_eq!(r.shards[0].documents["b"], 5);
        assert_eq!(r.ids_mismatched(), 0);
    }

    #[test]
    fn repairs_wait_for_their_node_tasks() {
        let mut fake = Fake::with(&[("a", vec![doc("1", 5, "x")]), ("b", vec![])]);
        fake.slow_tasks = 3;
        let r = drive(
            &mut machine(&["a", "b"], Default::default(), Default::default()),
            &mut fake,
        );
        assert_eq!(r.repairs(), 1);
        assert_eq!(fake.log.iter().filter(|l| l.contains("/tasks/")).count(), 4);
    }

    #[test]
    fn an_unreachable_replica_is_retried_then_its_shard_reported() {
        let mut fake = Fake::with(&[("a", vec![doc("1", 5, "x")]), ("b", vec![])]);
        fake.down.insert("b".into());
        let mut m = AntiEntropy::new(
            "docs",
            "id",
            vec![
                (0, vec![NodeId::new("a"), NodeId::new("b")]),
                (1, vec![NodeId::new("a")]),
            ],
            Default::default(),
            EntropyParams {
                max_attempts: 3,
                ..Default::default()
            },
            0,
        );
        let r = drive(&mut m, &mut fake);
        assert_eq!(fake.log.iter().filter(|l| l.starts_with("b ")).count(), 3);
        let err = r.shards[0].error.as_deref().unwrap();
        assert!(err.contains("node b") && err.contains("3 times"), "{err}");
        assert_eq!(
            r.shards[1].error, None,
            "the other shards are still checked"
        );
        assert_eq!(r.shards_scanned(), 1);
        assert!(r.differences_remain());
        assert_eq!(fake.writes(), 0, "no repair from an incomplete scan");
    }

    #[test]
    fn malformed_answers_are_retried_never_trusted() {
        let mut m = machine(
            &["a"],
            Default::default(),
            EntropyParams {
                max_attempts: 2,
                ..Default::default()
            },
        );
        let mut now = 0;
        for body in [json!({"nothing": 1}), json!({"results": [1]})] {
            let Some(Action::Send(r)) = m.poll_action() else {
                panic!("a page")
            };
            m.on_response(r.id, 200, &body, now);
            now += 1_000;
            m.handle_timeout(now);
        }
        assert_eq!(m.poll_action(), Some(Action::Finished));
        let e = m.report().shards[0].error.clone().unwrap();
        assert!(e.contains("not an object"), "{e}");
        // a document without an id, an error status
        let mut m = machine(
            &["a"],
            Default::default(),
            EntropyParams {
                max_attempts: 2,
                ..Default::default()
            },
        );
        let Some(Action::Send(r)) = m.poll_action() else {
            panic!("a page")
        };
        m.on_response(r.id, 200, &json!({"results": [{"x": 1}]}), 0);
        m.handle_timeout(10_000);
        let Some(Action::Send(r)) = m.poll_action() else {
            panic!("a retry")
        };
        m.on_response(r.id, 404, &json!({"code": "index_not_found"}), 10_000);
        m.handle_timeout(20_000);
        assert_eq!(m.poll_action(), Some(Action::Finished));
        let e = m.report().shards[0].error.clone().unwrap();
        assert!(e.contains("index_not_found"), "{e}");
    }

    #[test]
    fn failed_repairs_and_races_are_counted_unrepaired() {
        // the winner changes between the scan and the fetch: no write, counted for the next pass
        let mut fake = Fake::with(&[("a", vec![doc("1", 5, "x")]), ("b", vec![])]);
        let mut m = machine(&["a", "b"], Default::default(), Default::default());
        let mut raced = false;
        let report = loop {
            match m.poll_action() {
                Some(Action::Send(r)) => {
                    if r.body.as_ref().is_some_and(|b| b.get("ids").is_some()) && !raced {
                        raced = true;
                        fake.nodes
                            .get_mut("a")
                            .unwrap()
                            .insert("1".into(), doc("1", 9, "x"));
                    }
                    let (s, b) = fake.serve(&r).unwrap();
                    m.on_response(r.id, s, &b, 0);
                }
                Some(Action::Finished) => break m.report(),
                None => m.handle_timeout(u64::MAX),
            }
        };
        assert!(raced);
        assert_eq!(report.shards[0].unrepaired, 1);
        assert_eq!(report.repairs(), 0);
        assert!(fake.nodes["b"].is_empty());
        // a repair whose node task fails
        let mut m = machine(&["a", "b"], Default::default(), Default::default());
        let mut fake = Fake::with(&[("a", vec![doc("1", 5, "x")]), ("b", vec![])]);
        let report = loop {
            match m.poll_action() {
                Some(Action::Send(r)) if r.path.starts_with("/tasks/") => {
                    m.on_response(r.id, 200, &json!({"status": "failed"}), 0)
                }
                Some(Action::Send(r)) => {
                    let (s, b) = fake.serve(&r).unwrap();
                    m.on_response(r.id, s, &b, 0);
                }
                Some(Action::Finished) => break m.report(),
                None => m.handle_timeout(u64::MAX),
            }
        };
        assert_eq!((report.shards[0].unrepaired, report.repairs()), (1, 0));
        assert!(report.differences_remain());
        // a write answer without a task uid, and a replica that stops answering the repair
        let mut m = machine(
            &["a", "b"],
            Default::default(),
            EntropyParams {
                max_attempts: 2,
                ..Default::default()
            },
        );
        let mut fake = Fake::with(&[("a", vec![doc("1", 5, "x")]), ("b", vec![])]);
        let report = loop {
            match m.poll_action() {
                Some(Action::Send(r)) if r.path.contains("primaryKey") => {
                    m.on_response(r.id, 202, &json!({}), 0)
                }
                Some(Action::Send(r)) => {
                    let (s, b) = fake.serve(&r).unwrap();
                    m.on_response(r.id, s, &b, 0);
                }
                Some(Action::Finished) => break m.report(),
                None => m.handle_timeout(u64::MAX),
            }
        };
        assert_eq!(report.shards[0].unrepaired, 1);
        assert_eq!(report.shards[0].error, None, "the scan's findings stand");
    }

    #[test]
    fn an_empty_pass_finishes_at_once() {
        let mut m = AntiEntropy::new(
            "docs",
            "id",
            vec![],
            Default::default(),
            Default::default(),
            0,
        );
        assert_eq!(m.poll_action(), Some(Action::Finished));
        assert_eq!(m.poll_action(), None);
        assert!(m.is_finished());
        assert_eq!(m.report().shards_scanned(), 0);
        m.on_response(99, 200, &json!({}), 0);
        m.on_failure(99, 0);
        assert!(m.poll_timeout().is_none());
    }

    fn arb_copy() -> impl Strategy<Value = Option<(u64, u8)>> {
        prop::option::weighted(0.7, (1u64..6, 0u8..2))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        /// Random replica states and tombstones: after one repair pass every replica holds exactly the
        /// last-writer-wins winner among the copies no tombstone kills, and a second pass is clean.
        #[test]
        fn random_replicas_converge_to_the_lww_winner(
            states in prop::collection::vec(prop::collection::vec(arb_copy(), 6), 2..4),
            id_tombs in prop::collection::vec(prop::option::of(1u64..6), 6),
            filter_tomb in prop::option::of(1u64..6),
            page_size in 1usize..4,
            buckets in 1u32..5,
        ) {
            let genres = ["x", "y"];
            let names: Vec<String> = (0..states.len()).map(|i| format!("n{i}")).collect();
            let nodes: Vec<(&str, Vec<Document>)> = states
                .iter()
                .zip(&names)
                .map(|(copies, n)| {
                    let docs = copies
                        .iter()
                        .enumerate()
                        .filter_map(|(i, c)| c.map(|(v, g)| doc(&i.to_string(), v, genres[g as usize])))
                        .collect();
                    (n.as_str(), docs)
                })
                .collect();
            let mut fake = Fake::with(&nodes);
            let mut t = Tombstones::default();
            for (i, tomb) in id_tombs.iter().enumerate() {
                if let Some(v) = tomb {
                    t.delete_ids([i.to_string()], *v);
                }
            }
            if let Some(v) = filter_tomb {
                t.delete_filter(json!("genre = x"), v);
            }
            // the expected winner, computed directly from the rule
            let mut expected: BTreeMap<String, Document> = BTreeMap::new();
            for i in 0..6 {
                let id = i.to_string();
                let winner = states
                    .iter()
                    .filter_map(|copies| copies[i])
                    .filter(|(v, g)| {
                        !(t.kills_by_id(&id, *v) || filter_tomb.is_some_and(|f| f >= *v && *g == 0))
                    })
                    .map(|(v, g)| {
                        let d = doc(&id, v, genres[g as usize]);
                        (v, fingerprint(&d), d)
                    })
                    .max_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
                if let Some((_, _, d)) = winner {
                    expected.insert(id, d);
                }
            }
            let name_refs: Vec<&str> = names.iter().map(String::as_str).collect();
            let params = EntropyParams { page_size, buckets, ..Default::default() };
            let r = drive(&mut machine(&name_refs, t.clone(), params.clone()), &mut fake);
            prop_assert!(!r.differences_remain());
            for n in &names {
                prop_assert_eq!(&fake.nodes[n.as_str()], &expected, "replica {}", n);
            }
            let again = drive(&mut machine(&name_refs, t, params), &mut fake);
            prop_assert_eq!(again.ids_mismatched(), 0);
            prop_assert_eq!(again.repairs(), 0);
        }
    }
}
