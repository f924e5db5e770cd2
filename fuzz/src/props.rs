//! The hostile-input properties, written once and run twice:
//! - by the cargo-fuzz targets in `fuzz/fuzz_targets/` (nightly, coverage-guided, `fuzz/src/lib.rs` turns the
//!   fuzzer's bytes into the plain inputs below);
//! - by `core/tests/fuzz_stable.rs` on stable, in the normal test suite (it includes this very file with
//!   `#[path = "../../fuzz/src/props.rs"]` and drives it with proptest strategies).
//!
//! Every `check_*` function takes plain inputs (bytes, strings, `serde_json` values, query pairs), calls one
//! of miroir-core's entry points for client or node input, and asserts:
//! - it never panics (a panic inside core aborts the fuzzer / fails the test);
//! - an error is a Meilisearch-shaped [`MeiliError`]: a 4xx/5xx status, a lowercase snake_case code, a
//!   non-empty message, and `to_json()` is exactly `{message, code, type, link}`; client input errors are
//!   4xx, node answer errors are `502 miroir_bad_node_response` (or the node's own relayed error);
//! - on success, simple structural facts (window sizes, no `_miroir_*` field in what a client sees,
//!   documents tagged with a shard they belong to, ...).
//!
//! This file depends on nothing but `miroir_core`, `serde_json` and `std`, so both crates can compile it.

use std::collections::{BTreeMap, BTreeSet};

use miroir_core::auth::{self, Access, Action, KeyRing};
use miroir_core::config::Config;
use miroir_core::documents;
use miroir_core::pager::{CoverEntry, DocumentsPager, DocumentsQuery, Step};
use miroir_core::quorum::{ShardOwners, WriteQuorum};
use miroir_core::routing::Placement;
use miroir_core::search::{
    self, NodeAnswer, Pagination, SearchContext, SearchPlan, ShardRestriction,
};
use miroir_core::tasks::{self, MiroirTask, NodeTaskRef, NodeTaskView, TaskFilter, TaskQueryKind};
use miroir_core::topology::{Node, NodeId, Topology};
use miroir_core::{MeiliError, RESERVED_PREFIX, SHARD_FIELD};
use serde_json::{Map, Value};

/// Object keys worth trying: the parameters and answer fields the entry points interpret, plus a reserved
/// one. Generators pick from this list most of the time and invent a key otherwise.
pub const KEYS: &[&str] = &[
    "id",
    "title",
    "q",
    "offset",
    "limit",
    "page",
    "hitsPerPage",
    "filter",
    "facets",
    "sort",
    "distinct",
    "attributesToRetrieve",
    "showRankingScore",
    "showRankingScoreDetails",
    "hits",
    "estimatedTotalHits",
    "totalHits",
    "processingTimeMs",
    "query",
    "facetDistribution",
    "facetStats",
    "facetHits",
    "facetQuery",
    "value",
    "count",
    "min",
    "max",
    "order",
    "score",
    "words",
    "rating:desc",
    "year:asc",
    "_geoPoint(48.5, 2.5):asc",
    "distance",
    "_rankingScore",
    "_rankingScoreDetails",
    "_formatted",
    "_matchesPosition",
    "semanticHitCount",
    "performanceDetails",
    "requestUid",
    "results",
    "total",
    "fields",
    "ids",
    "status",
    "details",
    "error",
    "startedAt",
    "finishedAt",
    "message",
    "code",
    "type",
    "link",
    SHARD_FIELD,
    "_miroir_x",
];

/// Query parameter names worth trying (search GET, documents GET, tasks GET), plus an unknown one.
pub const PARAMS: &[&str] = &[
    "q",
    "offset",
    "limit",
    "page",
    "hitsPerPage",
    "filter",
    "facets",
    "sort",
    "distinct",
    "attributesToRetrieve",
    "attributesToCrop",
    "cropLength",
    "showRankingScore",
    "matchingStrategy",
    "rankingScoreThreshold",
    "hybrid",
    "semanticRatio",
    "embedder",
    "vector",
    "retrieveVectors",
    "fields",
    "ids",
    "useNetwork",
    "from",
    "reverse",
    "uids",
    "batchUids",
    "canceledBy",
    "types",
    "statuses",
    "indexUids",
    "afterEnqueuedAt",
    "beforeEnqueuedAt",
    "afterStartedAt",
    "beforeStartedAt",
    "afterFinishedAt",
    "beforeFinishedAt",
    "notAParam",
];

/// Environment variables `Config::from_yaml_str` reads, plus an unrelated one.
pub const ENV_VARS: &[&str] = &[
    "MIROIR_MASTER_KEY",
    "MIROIR_NODE_MASTER_KEY",
    "MIROIR_SHARDS",
    "MIROIR_REPLICATION_FACTOR",
    "MIROIR_REPLICA_GROUPS",
    "MIROIR_WRITE_QUORUM",
    "MIROIR_TASK_STORE_BACKEND",
    "MIROIR_TASK_STORE_PATH",
    "MIROIR_TASK_STORE_URL",
    "MIROIR_ADMIN_ENABLED",
    "MIROIR_ADMIN_API_KEY",
    "MIROIR_HEALTH_INTERVAL_MS",
    "MIROIR_SCATTER_UNAVAILABLE_SHARD_POLICY",
    "MIROIR_SERVER_PORT",
    "MIROIR_SERVER_BIND",
    "HOME",
];

/// Content types worth trying for document payloads.
pub const CONTENT_TYPES: &[&str] = &[
    "application/json",
    "application/x-ndjson",
    "text/csv",
    "text/csv; charset=utf-8",
    "APPLICATION/JSON ; charset=\"utf-8\"",
    "application/ld+json",
    "text/plain",
    "multipart/form-data; boundary=x",
    "application/",
    ";",
    "",
];

// ----- shared checks -----

/// Asserts `e` is a Meilisearch-shaped error with a status in `statuses`.
pub fn check_error(e: &MeiliError, statuses: std::ops::RangeInclusive<u16>) {
    assert!(
        statuses.contains(&e.status),
        "status {} outside {statuses:?}: {e:?}",
        e.status
    );
    assert!(
        !e.code.is_empty()
            && e.code
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
        "code is not snake_case: {e:?}"
    );
    assert!(!e.message.is_empty(), "empty message: {e:?}");
    let json = e.to_json();
    let obj = json.as_object().expect("an error renders as an object");
    let keys: Vec<&str> = obj.keys().map(String::as_str).collect();
    assert_eq!(keys, ["message", "code", "type", "link"], "{json}");
    assert!(obj.values().all(Value::is_string), "{json}");
    assert!(
        obj["link"].as_str().unwrap_or_default().ends_with(&e.code),
        "{json}"
    );
}

/// Asserts no object key anywhere inside `v` starts with `_miroir_`.
pub fn check_no_reserved_keys(v: &Value) {
    match v {
        Value::Object(m) => {
            for (k, inner) in m {
                assert!(!k.starts_with(RESERVED_PREFIX), "reserved key `{k}` in {v}");
                check_no_reserved_keys(inner);
            }
        }
        Value::Array(items) => items.iter().for_each(check_no_reserved_keys),
        _ => {}
    }
}

fn no_reserved_top_level(m: &Map<String, Value>) {
    if let Some(k) = m.keys().find(|k| k.starts_with(RESERVED_PREFIX)) {
        panic!("reserved key `{k}` reached the client");
    }
}

// ----- fixed topology -----

/// Shards of the fixed topology.
pub const SHARDS: u32 = 4;
/// Replica groups of the fixed topology.
pub const GROUPS: u32 = 2;
/// Replication factor of the fixed topology.
pub const RF: u32 = 2;

/// The small fixed placement the documents and tasks properties use: S=4, RG=2, RF=2, three nodes per group
/// (`a`, `b`, `c` in group 0; `d`, `e`, `f` in group 1).
pub fn placement() -> Placement {
    let nodes = ["a", "b", "c", "d", "e", "f"]
        .iter()
        .enumerate()
        .map(|(i, id)| Node::active(*id, format!("http://{id}:7700"), (i / 3) as u32))
        .collect();
    let topology = Topology {
        epoch: 1,
        shards: SHARDS,
        replication_factor: RF,
        replica_groups: GROUPS,
        nodes,
    };
    Placement::new(&topology).expect("the fixed topology is valid")
}

// ----- documents -----

/// A documents write request: content type, raw `csvDelimiter`, body, and the primary key context.
#[derive(Debug, Clone, Default)]
pub struct DocumentsInput {
    /// The `Content-Type` header, if any.
    pub content_type: Option<String>,
    /// The raw `csvDelimiter` query parameter, if any.
    pub csv_delimiter: Option<String>,
    /// The payload.
    pub body: Vec<u8>,
    /// The index's primary key, if it has one.
    pub index_pk: Option<String>,
    /// The `primaryKey` query parameter, if any.
    pub pk_param: Option<String>,
}

/// `parse_csv_delimiter` → `parse_request` → `resolve_primary_key` → `plan_batch` on [`placement`], and
/// `parse_delete_ids` → `plan_delete_ids` on the same body.
pub fn check_documents(input: &DocumentsInput, placement: &Placement) {
    let delimiter = match input
        .csv_delimiter
        .as_deref()
        .map(documents::parse_csv_delimiter)
    {
        None => None,
        Some(Ok(d)) => Some(d),
        Some(Err(e)) => {
            check_error(&e, 400..=499);
            None
        }
    };
    let content_type = input.content_type.as_deref();

    match documents::parse_delete_ids(content_type, &input.body) {
        Err(e) => check_error(&e, 400..=499),
        Ok(ids) => {
            let plan = documents::plan_delete_ids(&ids, placement);
            assert_eq!(plan.received, ids.len());
            assert_eq!(plan.shards.values().sum::<usize>(), ids.len());
            let sent: usize = plan.per_node.values().map(Vec::len).sum();
            assert_eq!(sent, ids.len() * (GROUPS * RF) as usize);
        }
    }

    let docs = match documents::parse_request(content_type, delimiter, &input.body) {
        // An NDJSON line holding a non-object is Meilisearch's `500 internal` (see `documents`).
        Err(e) if e.status == 500 => {
            check_error(&e, 500..=500);
            assert_eq!(e.code, "internal");
            return;
        }
        Err(e) => {
            check_error(&e, 400..=499);
            return;
        }
        Ok(docs) => docs,
    };
    let pk = match documents::resolve_primary_key(
        input.index_pk.as_deref(),
        input.pk_param.as_deref(),
        docs.first(),
    ) {
        Err(e) => {
            check_error(&e, 400..=499);
            return;
        }
        Ok(None) => {
            assert!(docs.is_empty(), "no primary key for a non-empty batch");
            return;
        }
        Ok(Some(pk)) => pk,
    };
    let received = docs.len();
    let plan = match documents::plan_batch(docs, &pk, placement) {
        Err(e) => {
            check_error(&e, 400..=499);
            return;
        }
        Ok(plan) => plan,
    };
    assert_eq!(plan.received, received);
    assert_eq!(plan.shards.values().sum::<usize>(), received);
    let mut copies = 0;
    for (node, docs) in &plan.per_node {
        let held = placement.shards_held_by(node);
        for doc in docs {
            let shard = doc
                .get(SHARD_FIELD)
                .and_then(Value::as_u64)
                .expect("every planned document carries its shard");
            let shard = u32::try_from(shard).expect("a shard fits u32");
            assert!(shard < SHARDS && plan.shards.contains_key(&shard));
            assert!(held.contains(&shard), "{node} got a shard it does not hold");
            assert!(documents::document_id(doc, &pk).is_ok());
        }
        copies += docs.len();
    }
    assert_eq!(copies, received * (GROUPS * RF) as usize);
}

// ----- search planning -----

/// `plan_search` then `node_request` with and without `restriction`; returns the plan when the body is
/// valid.
pub fn check_search_plan(
    client: &Map<String, Value>,
    ctx: &SearchContext,
    restriction: &ShardRestriction,
) -> Option<SearchPlan> {
    let plan = match search::plan_search(client, ctx) {
        Err(e) => {
            check_error(&e, 400..=400);
            assert!(
                [
                    "invalid_search_offset",
                    "invalid_search_limit",
                    "invalid_search_page",
                    "invalid_search_hits_per_page"
                ]
                .contains(&e.code.as_str()),
                "{e:?}"
            );
            return None;
        }
        Ok(plan) => plan,
    };
    let window_end = plan.window_offset + plan.window_limit;
    assert!(window_end <= ctx.max_total_hits);
    let req = &plan.shard_request;
    match plan.pagination {
        Pagination::OffsetLimit { .. } => {
            assert_eq!(req.get("offset"), Some(&Value::from(0u64)));
            assert_eq!(req.get("limit"), Some(&Value::from(window_end as u64)));
        }
        Pagination::Pages { .. } => {
            assert_eq!(req.get("page"), Some(&Value::from(1u64)));
            assert_eq!(
                req.get("hitsPerPage"),
                Some(&Value::from(window_end as u64))
            );
        }
    }
    // Everything Miroir does not interpret reaches the nodes untouched.
    for (k, v) in client {
        let rewritten = [
            "offset",
            "limit",
            "page",
            "hitsPerPage",
            "showRankingScore",
            "showRankingScoreDetails",
            "attributesToRetrieve",
        ];
        if !rewritten.contains(&k.as_str()) {
            assert_eq!(req.get(k), Some(v), "`{k}` was altered");
        }
    }
    assert_eq!(&plan.node_request(None), req);
    let restricted = plan.node_request(Some(restriction));
    for (k, v) in &restricted {
        if k != "filter" {
            assert_eq!(req.get(k), Some(v));
        }
    }
    assert!(req.keys().all(|k| restricted.contains_key(k)));
    Some(plan)
}

/// `search_params_from_query`, then [`check_search_plan`] on the body it builds.
pub fn check_search_query(pairs: &[(String, String)], ctx: &SearchContext) {
    match search::search_params_from_query(pairs) {
        Err(e) => check_error(&e, 400..=400),
        Ok(body) => {
            check_search_plan(&body, ctx, &ShardRestriction::default());
        }
    }
}

// ----- merging -----

/// `merge_search` over node answers; returns its result. `well_formed` says the answers are what real nodes could send for
/// documents written through Miroir (no `_miroir_*` field other than `_miroir_shard` at the top of a hit
/// and inside `_formatted` / `_matchesPosition`, `_miroir_shard` as a facet as for `facets: ["*"]`); then
/// no field or facet name of the merged answer starts with `_miroir_`.
pub fn check_merge(
    plan: &SearchPlan,
    answers: Vec<NodeAnswer>,
    well_formed: bool,
) -> Result<Value, MeiliError> {
    let merged = match search::merge_search(plan, answers) {
        Err(e) => {
            check_error(&e, 502..=502);
            assert_eq!(e.code, "miroir_bad_node_response");
            return Err(e);
        }
        Ok(v) => v,
    };
    let out = merged.as_object().expect("a merged answer is an object");
    let hits = out["hits"].as_array().expect("`hits` is an array");
    assert!(hits.len() <= plan.window_limit);
    for hit in hits {
        let hit = hit.as_object().expect("a merged hit is an object");
        no_reserved_top_level(hit);
        for added in &plan.added_attributes {
            assert!(!hit.contains_key(added), "added attribute `{added}` leaked");
        }
        for key in ["_formatted", "_matchesPosition"] {
            if let Some(Value::Object(inner)) = hit.get(key) {
                no_reserved_top_level(inner);
            }
        }
        if !plan.show_ranking_score {
            assert!(!hit.contains_key("_rankingScore"));
        }
        if !plan.show_ranking_score_details {
            assert!(!hit.contains_key("_rankingScoreDetails"));
        }
    }
    let max = plan.context.max_total_hits as u64;
    for key in ["estimatedTotalHits", "totalHits"] {
        if let Some(total) = out.get(key) {
            assert!(total.as_u64().is_some_and(|t| t <= max), "{key} above cap");
        }
    }
    if let Some(Value::Object(dist)) = out.get("facetDistribution") {
        for values in dist.values() {
            let values = values.as_object().expect("a merged facet is an object");
            assert!(values.len() <= plan.context.max_values_per_facet);
        }
    }
    if well_formed {
        // No field name anywhere in the hits, no facet name; facet *values* are user data.
        check_no_reserved_keys(&out["hits"]);
        for key in ["facetDistribution", "facetStats"] {
            if let Some(Value::Object(facets)) = out.get(key) {
                no_reserved_top_level(facets);
            }
        }
        no_reserved_top_level(out);
    }
    Ok(merged)
}

/// `merge_facet_search` over node answers.
pub fn check_facet_merge(answers: Vec<NodeAnswer>, order: search::FacetOrder, max_values: usize) {
    match search::merge_facet_search(answers, order, max_values) {
        Err(e) => {
            check_error(&e, 502..=502);
            assert_eq!(e.code, "miroir_bad_node_response");
        }
        Ok(v) => {
            let hits = v["facetHits"].as_array().expect("`facetHits` is an array");
            assert!(hits.len() <= max_values);
            for h in hits {
                assert!(h["value"].is_string() && h["count"].is_u64(), "{h}");
            }
        }
    }
}

// ----- tasks -----

/// The Miroir task behind [`check_tasks`]: two shards on one or two groups of the fixed node names.
pub fn task_record(
    uid: u64,
    enqueued_at: u64,
    two_groups: bool,
    quorum: u8,
    details: Option<Map<String, Value>>,
    error: Option<&MeiliError>,
) -> MiroirTask {
    let mut t = MiroirTask::new(
        uid,
        Some("movies".into()),
        tasks::TaskType::DocumentAdditionOrUpdate,
        enqueued_at,
        details,
    );
    let mut owners = ShardOwners::new();
    let g1 = |a: &str, b: &str| vec![NodeId::new(a), NodeId::new(b)];
    if two_groups {
        owners.insert(0, vec![g1("a", "b"), g1("d", "e")]);
        owners.insert(1, vec![g1("b", "c"), g1("e", "f")]);
    } else {
        owners.insert(0, vec![g1("a", "b")]);
        owners.insert(1, vec![g1("b", "c")]);
    }
    t.node_tasks = tasks::node_task_refs(&owners, |node| {
        let i = node.as_str().bytes().next().unwrap_or(b'a');
        Some(u64::from(i) * 10)
    });
    t.placement = owners;
    t.quorum = match quorum % 3 {
        0 => WriteQuorum::Majority,
        1 => WriteQuorum::One,
        _ => WriteQuorum::All,
    };
    if let Some(e) = error {
        t = t.with_error(e);
    }
    t
}

/// Task object keys in Meilisearch's order, `details` being optional.
const TASK_KEYS: [&str; 12] = [
    "uid",
    "batchUid",
    "indexUid",
    "status",
    "type",
    "canceledBy",
    "details",
    "error",
    "duration",
    "enqueuedAt",
    "startedAt",
    "finishedAt",
];

/// `NodeTaskView::from_json` on each node object (assigned to the record's node tasks in order), then
/// `aggregate`, then `TaskFilter::from_list_query` / `from_cancel_or_delete_query` on `pairs`, `matches` and
/// `paginate` over the aggregated view.
pub fn check_tasks(
    task: &MiroirTask,
    node_objects: &[Value],
    now: u64,
    lost_after: u64,
    pairs: &[(String, String)],
) {
    let mut views = BTreeMap::new();
    for (r, obj) in task.node_tasks.iter().zip(node_objects) {
        let NodeTaskRef { node, task_uid, .. } = r;
        if let Some(uid) = task_uid {
            views.insert((node.clone(), *uid), NodeTaskView::from_json(obj));
        }
    }
    let view = tasks::aggregate(task, &views, now, lost_after);
    let meili = view.meili.as_object().expect("a task object");
    let keys: Vec<&str> = meili.keys().map(String::as_str).collect();
    let expected: Vec<&str> = TASK_KEYS
        .iter()
        .copied()
        .filter(|k| *k != "details" || meili.contains_key("details"))
        .collect();
    assert_eq!(keys, expected, "task key order");
    assert_eq!(meili["uid"], Value::from(task.uid));
    assert_eq!(meili["status"], Value::from(view.status.as_str()));
    match view.status {
        tasks::TaskStatus::Failed => {
            let error = &meili["error"];
            // The node's error, normalised: always Meilisearch's four string fields.
            let keys: Vec<&str> = error
                .as_object()
                .unwrap_or_else(|| panic!("a failed task carries an error object: {error}"))
                .keys()
                .map(String::as_str)
                .collect();
            assert_eq!(keys, ["message", "code", "type", "link"], "{error}");
            assert!(error
                .as_object()
                .is_some_and(|e| e.values().all(Value::is_string)));
        }
        _ => assert!(meili["error"].is_null(), "error on a non-failed task"),
    }
    if !view.status.is_finished() {
        assert!(meili["finishedAt"].is_null() && meili["duration"].is_null());
    }
    assert!(meili["duration"].is_null() || meili["duration"].is_string());
    assert!(view.miroir_pending_replicas <= task.node_tasks.len());

    match TaskFilter::from_list_query(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str()))) {
        Err(e) => check_error(&e, 400..=499),
        Ok(filter) => {
            let matched = filter.matches(&view);
            let page = filter.paginate([&view]);
            let results = page["results"].as_array().expect("results");
            assert!(results.len() <= usize::from(matched));
            assert_eq!(page["total"], Value::from(u64::from(matched)));
        }
    }
    for kind in [TaskQueryKind::Cancel, TaskQueryKind::Delete] {
        match TaskFilter::from_cancel_or_delete_query(
            pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            kind,
        ) {
            Err(e) => check_error(&e, 400..=499),
            Ok(filter) => {
                filter.matches(&view);
            }
        }
    }
}

// ----- config -----

/// `Config::from_yaml_str` with `env`; a valid config validates again, an error says what is wrong, and a secret that came from the environment never shows in `Debug`.
pub fn check_config(text: &str, env: &BTreeMap<String, String>) {
    let lookup = |k: &str| env.get(k).cloned();
    match Config::from_yaml_str(text, &lookup) {
        Err(e) => {
            assert!(!e.problem.is_empty(), "{e:?}");
            assert!(e.to_string().ends_with(&e.problem), "{e:?}");
        }
        Ok(config) => {
            assert!(config.validate().is_ok());
            assert!(config.shards > 0 && config.replication_factor > 0);
            let debug = format!("{config:?}");
            for var in [
                "MIROIR_MASTER_KEY",
                "MIROIR_NODE_MASTER_KEY",
                "MIROIR_ADMIN_API_KEY",
            ] {
                if let Some(secret) = env.get(var) {
                    // Only distinctive secrets: a short one may appear by chance elsewhere.
                    if secret.len() >= 12 && secret.starts_with("sekrit-") && !text.contains(secret)
                    {
                        assert!(!debug.contains(secret.as_str()), "{var} leaked in Debug");
                    }
                }
            }
        }
    }
}

// ----- documents pager -----

/// One scripted reaction of the shell to a pager step.
#[derive(Debug, Clone)]
pub enum PagerReply {
    /// The node answered with this status and body.
    Raw {
        /// HTTP status.
        status: u16,
        /// The parsed body.
        body: Value,
    },
    /// The node answered plausibly: a counting search gets `{estimatedTotalHits, facetDistribution}` from
    /// `counts`; a fetch gets `{results: docs, ...}`.
    Shaped {
        /// `(shard, count)` pairs for a counting search.
        counts: Vec<(u32, u64)>,
        /// Documents for a fetch.
        docs: Vec<Value>,
        /// Report a total above the counts' sum (a truncated distribution).
        overcount: bool,
    },
    /// The node could not be reached.
    Fail,
    /// On a failed request: retry it on node `b` (which holds every shard) if true, else skip it.
    Retry(bool),
}

/// A cover given entry by entry: (node `a` if true else `b`, assigned shards, held shards).
pub type CustomCover = Vec<(bool, Vec<u32>, Vec<u32>)>;

/// The documents query of a pager run.
#[derive(Debug, Clone)]
pub enum PagerQuery {
    /// `GET /indexes/movies/documents` query pairs.
    Pairs(Vec<(String, String)>),
    /// `POST /indexes/movies/documents/fetch` body.
    Fetch(Value),
}

/// Parses the query, starts a [`DocumentsPager`] over S=4 with the fixed cover (node `a` serves 0 and 1 and
/// holds 0, 1, 2; node `b` serves 2 and 3 and holds all four; or `custom_cover` when given), then drives it
/// with `replies` (one per emitted request or failure decision) for at most 64 steps. Returns the client's
/// answer, or `None` when the script ran out first.
pub fn check_pager(
    query: &PagerQuery,
    custom_cover: Option<CustomCover>,
    replies: &[PagerReply],
) -> Option<Result<Value, MeiliError>> {
    let parsed = match query {
        PagerQuery::Pairs(pairs) => DocumentsQuery::from_query_pairs(pairs),
        PagerQuery::Fetch(body) => DocumentsQuery::from_fetch_body(body),
    };
    let query = match parsed {
        Err(e) => {
            check_error(&e, 400..=499);
            return Some(Err(e));
        }
        Ok(q) => q,
    };
    let cover = match custom_cover {
        Some(entries) => entries
            .into_iter()
            .map(|(is_a, assigned, held)| {
                CoverEntry::new(if is_a { "a" } else { "b" }, assigned, held)
            })
            .collect(),
        None => vec![
            CoverEntry::new("a", vec![0, 1], vec![0, 1, 2]),
            CoverEntry::new("b", vec![2, 3], vec![0, 1, 2, 3]),
        ],
    };
    let shard_of = |id: &str| miroir_core::routing::shard_for_key(id, SHARDS);
    let (offset, limit) = (query.offset, query.limit);
    let mut pager = DocumentsPager::new("movies", query, cover, SHARDS, &shard_of);
    let mut replies = replies.iter();
    let mut ids = BTreeSet::new();
    for _ in 0..64 {
        match pager.poll() {
            Step::Send(requests) => {
                for r in requests {
                    assert!(ids.insert(r.id), "request id {} emitted twice", r.id);
                    assert_eq!(r.method, "POST");
                    assert!(r.path.starts_with("/indexes/movies/"));
                    assert!(r.body.is_object());
                    match replies.next() {
                        None => return None,
                        Some(PagerReply::Fail) | Some(PagerReply::Retry(_)) => {
                            pager.on_failure(r.id)
                        }
                        Some(PagerReply::Raw { status, body }) => {
                            pager.on_response(r.id, *status, body)
                        }
                        Some(PagerReply::Shaped {
                            counts,
                            docs,
                            overcount,
                        }) => {
                            let body =
                                shaped_pager_answer(&r.path, &r.body, counts, docs, *overcount);
                            pager.on_response(r.id, 200, &body);
                        }
                    }
                }
            }
            Step::Wait => return None,
            Step::Failed { request, .. } => {
                let result = match replies.next() {
                    None => return None,
                    Some(PagerReply::Retry(true)) => {
                        pager.retry(request, NodeId::new("b"), vec![0, 1, 2, 3])
                    }
                    Some(_) => pager.skip(request),
                };
                if let Err(e) = result {
                    check_error(&e, 500..=500);
                }
            }
            Step::Done(body) => {
                let out = body.as_object().expect("a listing is an object");
                let results = out["results"].as_array().expect("`results` is an array");
                assert!(results.len() <= limit, "more results than the limit");
                assert_eq!(out["offset"], Value::from(offset));
                assert_eq!(out["limit"], Value::from(limit));
                assert!(out["total"].is_u64());
                for doc in results {
                    no_reserved_top_level(doc.as_object().expect("a document is an object"));
                }
                return Some(Ok(body));
            }
            Step::Error(e) => {
                check_error(&e, 400..=599);
                return Some(Err(e));
            }
        }
    }
    None
}

/// A plausible node answer to a pager request.
fn shaped_pager_answer(
    path: &str,
    request: &Value,
    counts: &[(u32, u64)],
    docs: &[Value],
    overcount: bool,
) -> Value {
    let mut out = Map::new();
    if path.ends_with("/search") {
        let asked = request.get("filter").and_then(restricted_shards);
        let mut dist = Map::new();
        let mut sum = 0u64;
        for (shard, count) in counts {
            if asked.as_ref().is_some_and(|a| !a.contains(shard)) {
                continue;
            }
            dist.insert(shard.to_string(), Value::from(*count));
            sum = sum.saturating_add(*count);
        }
        let mut facets = Map::new();
        facets.insert(SHARD_FIELD.to_string(), Value::Object(dist));
        out.insert("hits".into(), Value::Array(Vec::new()));
        out.insert(
            "estimatedTotalHits".into(),
            Value::from(sum.saturating_add(u64::from(overcount))),
        );
        out.insert("facetDistribution".into(), Value::Object(facets));
    } else {
        let limit = request
            .get("limit")
            .and_then(Value::as_u64)
            .unwrap_or(u64::MAX);
        let take = if overcount {
            usize::MAX
        } else {
            limit as usize
        };
        let results: Vec<Value> = docs.iter().take(take).cloned().collect();
        out.insert("total".into(), Value::from(results.len()));
        out.insert("results".into(), Value::Array(results));
        out.insert(
            "offset".into(),
            request.get("offset").cloned().unwrap_or(Value::Null),
        );
        out.insert("limit".into(), Value::from(limit));
    }
    Value::Object(out)
}

/// The shards a restriction filter written by Miroir lets through (`_miroir_shard = 1`, `IN [..]`,
/// `a TO b` runs, `NOT ...`, `NOT _miroir_shard EXISTS`), read leniently; `None` when there is none.
fn restricted_shards(filter: &Value) -> Option<BTreeSet<u32>> {
    let text = match filter {
        Value::String(s) => s.clone(),
        Value::Array(items) => items
            .iter()
            .map(|i| i.to_string())
            .collect::<Vec<_>>()
            .join(" AND "),
        _ => return None,
    };
    let start = text.find(SHARD_FIELD)?;
    let negated = text[..start].trim_end().ends_with("NOT");
    let tail = &text[start..];
    let tokens: Vec<&str> = tail
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|t| !t.is_empty() && *t != SHARD_FIELD)
        .collect();
    let mut set = BTreeSet::new();
    let mut i = 0;
    while i < tokens.len() {
        if let Ok(a) = tokens[i].parse::<u32>() {
            if tokens.get(i + 1) == Some(&"TO") {
                if let Some(Ok(b)) = tokens.get(i + 2).map(|t| t.parse::<u32>()) {
                    set.extend(a..=b.min(SHARDS));
                    i += 3;
                    continue;
                }
            }
            set.insert(a);
        }
        i += 1;
    }
    if negated {
        Some((0..SHARDS).filter(|s| !set.contains(s)).collect())
    } else {
        Some(set)
    }
}

// ----- auth -----

/// The master key of the `auth` property.
pub const AUTH_MASTER: &str = "the-master-key";
/// The time of the `auth` seeds (between the ring's expiry dates).
pub const AUTH_NOW: u64 = 1_800_000_000_000;
/// The actions the `auth` property asks for.
pub const AUTH_ACTIONS: [Action; 8] = [
    Action::Search,
    Action::DocumentsAdd,
    Action::DocumentsGet,
    Action::IndexesGet,
    Action::TasksGet,
    Action::KeysGet,
    Action::SettingsUpdate,
    Action::Version,
];

/// The keys every node would list: an unrestricted search key, an index-scoped admin key, an expired key
/// and a tasks key.
pub fn auth_ring() -> KeyRing {
    let key = |uid: &str, value: &str, actions: &[&str], indexes: &[&str], exp: Value| {
        let mut m = Map::new();
        m.insert("uid".into(), Value::from(uid));
        m.insert("key".into(), Value::from(value));
        m.insert("actions".into(), Value::from(actions.to_vec()));
        m.insert("indexes".into(), Value::from(indexes.to_vec()));
        m.insert("expiresAt".into(), exp);
        Value::Object(m)
    };
    let results = vec![
        key(
            "u-search",
            "k-search-0001",
            &["search"],
            &["*"],
            Value::Null,
        ),
        key(
            "u-admin",
            "k-admin-0002",
            &["*"],
            &["movies", "prod_*"],
            Value::Null,
        ),
        key(
            "u-old",
            "k-old-0003",
            &["*"],
            &["*"],
            Value::from("2020-01-01T00:00:00Z"),
        ),
        key(
            "u-tasks",
            "k-tasks-0004",
            &["tasks.*", "*.get"],
            &["movies"],
            Value::Null,
        ),
    ];
    let mut list = Map::new();
    list.insert("results".into(), Value::Array(results));
    KeyRing::from_list(&Value::Object(list))
}

/// A JWT over `header` (an `alg` of HS256 is added unless it names one) and `claims`, signed with the value
/// of the ring's key number `signer` (a wrong secret past the ring).
pub fn auth_token(header: &Value, claims: &Value, signer: usize) -> String {
    let secrets = [
        "k-search-0001",
        "k-admin-0002",
        "k-old-0003",
        "k-tasks-0004",
        "wrong",
    ];
    let mut header = match header {
        Value::Object(m) => m.clone(),
        _ => Map::new(),
    };
    if !matches!(
        header.get("alg").and_then(Value::as_str),
        Some("HS256" | "HS384" | "HS512")
    ) {
        header.insert("alg".into(), Value::from("HS256"));
    }
    auth::sign_token(
        secrets[signer % secrets.len()],
        &Value::Object(header),
        claims,
    )
    .unwrap_or_default()
}

/// Authorizes `token` for one of [`AUTH_ACTIONS`] on `index`: never panics; only the master key gets full
/// access; a scoped access comes from a key of the ring (by value, or a tenant token naming it) and opens
/// the route's index; a refusal is a 401/403 `auth` error that never shows a key's value.
pub fn check_auth(token: Option<&str>, action: usize, index: Option<&str>, now: u64) {
    let ring = auth_ring();
    let action = AUTH_ACTIONS[action % AUTH_ACTIONS.len()];
    match auth::authorize(AUTH_MASTER, &ring, token, action, index, now) {
        Ok(Access::Full) => assert_eq!(
            token,
            Some(AUTH_MASTER),
            "full access without the master key"
        ),
        Ok(Access::Scoped(scoped)) => {
            let t = token.expect("a scoped access has a token");
            assert!(
                ring.by_value(t).is_some()
                    || (action == Action::Search && t.split('.').count() == 3),
                "scoped access for an unknown token {t:?}"
            );
            if let Some(i) = index {
                assert!(
                    scoped.is_index_authorized(i),
                    "{i} opened but not authorized"
                );
            }
        }
        Err(e) => {
            check_error(&e, 401..=403);
            assert_eq!(e.to_json()["type"], "auth", "{e:?}");
            for secret in [
                "k-search-0001",
                "k-admin-0002",
                "k-old-0003",
                "k-tasks-0004",
                AUTH_MASTER,
            ] {
                let echoed = index.is_some_and(|i| i.contains(secret));
                assert!(
                    echoed || !e.message.contains(secret),
                    "a key in an error: {}",
                    e.message
                );
            }
        }
    }
}

// ----- primary-key narrowing -----

/// The primary-key narrowing of a filter (`search::pk`, a filter parser over client input): never panics;
/// the pinned shards are the shards of the pinned ids, sorted, unique and below `shards` (none when those
/// cover every shard); AND-ing a pin on a
/// plain id `x` onto the filter never admits an id other than `x`'s spellings (when it pins at all).
pub fn check_pk(filter: &Value, pk: &str, shards: u32) {
    let ids = search::pinned_ids(Some(filter), pk);
    let pinned = search::pinned_shards(Some(filter), pk, shards);
    match (&ids, &pinned) {
        (None, None) => {}
        (Some(ids), Some(got)) => {
            assert!(
                got.windows(2).all(|w| w[0] < w[1]),
                "shards not sorted/unique: {got:?}"
            );
            assert!(
                got.iter().all(|s| *s < shards),
                "shard out of range: {got:?}"
            );
            let mut want: Vec<u32> = ids
                .iter()
                .map(|id| miroir_core::routing::shard_for_key(id, shards))
                .collect();
            want.sort_unstable();
            want.dedup();
            if want.is_empty() {
                assert_eq!(
                    got.len(),
                    1,
                    "no id can match: one shard still checks the filter"
                );
            } else {
                assert_eq!(got, &want, "the pinned shards are the pinned ids' shards");
            }
        }
        (Some(ids), None) => {
            // No narrowing when the pinned ids cover every shard anyway.
            let mut covered: BTreeSet<u32> = ids
                .iter()
                .map(|id| miroir_core::routing::shard_for_key(id, shards))
                .collect();
            if covered.is_empty() {
                // No id can match: shard 0 still checks the filter.
                covered.insert(0);
            }
            assert_eq!(
                covered.len() as u32,
                shards,
                "pinned ids {ids:?} but no pinned shards"
            );
        }
        (None, Some(got)) => panic!("pinned shards {got:?} without pinned ids"),
    }
    if filter.is_string() {
        // The array form ANDs its elements (a string concatenation could be re-grouped by unbalanced
        // parentheses inside `filter`).
        let anded = Value::Array(vec![filter.clone(), Value::String(format!("{pk} = abc1"))]);
        if let Some(ids) = search::pinned_ids(Some(&anded), pk) {
            assert!(
                ids.iter().all(|i| i.eq_ignore_ascii_case("abc1")),
                "AND with `{pk} = abc1` admits {ids:?}"
            );
        }
    }
}

// ----- seed replay -----

/// The targets with a seed corpus under `fuzz/corpus/<target>/`.
pub const TARGETS: [&str; 8] = [
    "documents",
    "search_plan",
    "merge",
    "tasks",
    "config",
    "pager",
    "auth",
    "pk",
];

/// Runs one seed file of `fuzz/corpus/<target>/` the way the target reads seeds (see `fuzz/README.md`):
/// - `documents`: `<content type>\n<body>`, under primary key parameter `id`;
/// - `search_plan`: a JSON search body, or `?query` for the GET route;
/// - `merge`: one node answer (JSON object) or one per node (array), through both merges;
/// - `tasks`: a node task object every node answers with, or `?query` for `GET /tasks`;
/// - `config`: a YAML file, without environment;
/// - `pager`: a fetch body, or `?query` for `GET /documents`, answered by plausible nodes;
/// - `auth`: `<index>\n<token>`, the token tried for every action, and, when it is JSON, as the claims of
///   tokens signed by each key;
/// - `pk`: a filter string (or a JSON filter) narrowed on the primary key `id` with S=16.
///
/// Input that is not in the target's seed format is ignored. Both the fuzz targets and the stable suite
/// (which replays every committed seed) call this.
pub fn replay_seed(target: &str, data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let query = || query_string_pairs(&text);
    match target {
        "documents" => {
            if let Some(pos) = data.iter().position(|b| *b == b'\n') {
                let input = DocumentsInput {
                    content_type: Some(String::from_utf8_lossy(&data[..pos]).into_owned()),
                    csv_delimiter: None,
                    body: data[pos + 1..].to_vec(),
                    index_pk: None,
                    pk_param: Some("id".into()),
                };
                check_documents(&input, &placement());
            }
        }
        "search_plan" => {
            if text.starts_with('?') {
                check_search_query(&query(), &SearchContext::default());
            } else if let Ok(Value::Object(body)) = serde_json::from_slice(data) {
                let restriction = ShardRestriction {
                    assigned: vec![1],
                    held: vec![0, 1],
                };
                check_search_plan(&body, &SearchContext::default(), &restriction);
            }
        }
        "merge" => {
            let bodies = match serde_json::from_slice::<Value>(data) {
                Ok(Value::Array(items)) => items,
                Ok(v @ Value::Object(_)) => vec![v],
                _ => return,
            };
            let answers: Vec<NodeAnswer> = bodies
                .into_iter()
                .enumerate()
                .map(|(order, body)| NodeAnswer { order, body })
                .collect();
            let plan = search::plan_search(&Map::new(), &SearchContext::default())
                .expect("an empty body plans");
            let _ = check_merge(&plan, answers.clone(), false);
            check_facet_merge(answers, search::FacetOrder::Count, 10);
        }
        "tasks" => {
            let task = task_record(7, 1_795_770_981_268, true, 0, None, None);
            if text.starts_with('?') {
                check_tasks(&task, &[], 1_795_770_981_268, 60_000, &query());
            } else if let Ok(object) = serde_json::from_slice::<Value>(data) {
                let objects = vec![object; task.node_tasks.len()];
                check_tasks(&task, &objects, 1_795_770_991_268, 60_000, &[]);
            }
        }
        "config" => check_config(&text, &BTreeMap::new()),
        "pk" => {
            check_pk(&Value::String(text.to_string()), "id", 16);
            if let Ok(v) = serde_json::from_slice::<Value>(data) {
                check_pk(&v, "id", 16);
            }
        }
        "auth" => {
            // `<index>\n<token>`: the token as is, and a JWT with its text as claims signed by each key.
            let (index, token) = text.split_once('\n').unwrap_or(("", &text));
            let index = Some(index).filter(|i| !i.is_empty());
            for action in 0..AUTH_ACTIONS.len() {
                check_auth(Some(token), action, index, AUTH_NOW);
            }
            if let Ok(claims) = serde_json::from_str::<Value>(token) {
                for signer in 0..3 {
                    let t = auth_token(&Value::Null, &claims, signer);
                    check_auth(Some(&t), 0, index, AUTH_NOW);
                }
            }
        }
        "pager" => {
            let query = if text.starts_with('?') {
                PagerQuery::Pairs(query())
            } else if let Ok(body) = serde_json::from_slice::<Value>(data) {
                PagerQuery::Fetch(body)
            } else {
                return;
            };
            check_pager(&query, None, &seed_pager_replies());
        }
        _ => {}
    }
}

/// Plausible answers for the seed queries: counts 3, 2, 5, 0 for shards 0..4 (whatever each node is asked
/// for), then documents for every page.
pub fn seed_pager_replies() -> Vec<PagerReply> {
    let docs: Vec<Value> = (0..5u64)
        .map(|i| {
            let mut d = Map::new();
            d.insert("id".into(), Value::from(i));
            d.insert("title".into(), Value::from(format!("t{i}")));
            d.insert(SHARD_FIELD.into(), Value::from(i % 4));
            Value::Object(d)
        })
        .collect();
    let shaped = PagerReply::Shaped {
        counts: vec![(0, 3), (1, 2), (2, 5), (3, 0)],
        docs,
        overcount: false,
    };
    vec![shaped; 6]
}

/// Splits a raw query string (`a=1&b=x%20y`) into percent-decoded pairs, as a shell hands them to core;
/// `+` is a space.
pub fn query_string_pairs(raw: &str) -> Vec<(String, String)> {
    raw.trim_start_matches('?')
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                match std::str::from_utf8(&bytes[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
