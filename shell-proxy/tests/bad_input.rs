//! The bad-input table: malformed and adversarial requests against a proxy over 3 model nodes (RF 2).
//!
//! For every row: the exact HTTP status and error `code` and `type` (where Meilisearch has an equivalent,
//! what Meilisearch 1.50 answers: the recorded responses in `/work/shared/meili-fixtures/v1.50.0-core.jsonl`
//! are cited by line as `core:<line>`), that the proxy is still healthy afterwards (`GET /health` 200 and
//! a normal search works), that no key (master, admin, node) appears in the answer, and, for writes, that
//! the documents on every node changed exactly as the client was told (nothing for a refused or failed
//! write).

mod common;

use common::*;
use miroir_proxy::dev::{DevOptions, DEV_NODE_KEY};
use serde_json::{json, Value};

const MASTER: &str = "masterKey";
const ADMIN: &str = "adminKey-for-the-table";

/// Which key a row sends.
#[derive(Clone, Copy, Debug)]
enum Key {
    Master,
    Admin,
    Node,
    Wrong,
    None,
    /// `Authorization: Basic ...` with the master key.
    Basic,
}

/// What a row expects.
#[derive(Clone, Debug)]
enum Expect {
    /// A synchronous Meilisearch-shaped error: status, code, type.
    Error(u16, &'static str, &'static str),
    /// 202, then the task fails with this code (type `invalid_request`).
    TaskFails(&'static str),
    /// 202, then the task succeeds.
    TaskOk,
    /// This status with an empty body (unknown routes).
    Empty(u16),
    /// A successful answer with this status.
    Ok(u16),
}

struct Case {
    name: &'static str,
    method: &'static str,
    path: String,
    ct: Option<&'static str>,
    body: Vec<u8>,
    key: Key,
    expect: Expect,
    /// Change of the total number of documents over every node (RF 2: one document counts twice).
    docs_delta: i64,
    /// Faults set on nodes before the row (node, patch), cleared after it.
    faults: Vec<(usize, Value)>,
}

fn case(name: &'static str, method: &'static str, path: impl Into<String>) -> Case {
    Case {
        name,
        method,
        path: path.into(),
        ct: None,
        body: Vec::new(),
        key: Key::Master,
        expect: Expect::Ok(200),
        docs_delta: 0,
        faults: Vec::new(),
    }
}

impl Case {
    fn json(mut self, v: Value) -> Case {
        self.ct = Some("application/json");
        self.body = serde_json::to_vec(&v).unwrap();
        self
    }
    fn raw(mut self, ct: Option<&'static str>, body: &[u8]) -> Case {
        self.ct = ct;
        self.body = body.to_vec();
        self
    }
    fn key(mut self, k: Key) -> Case {
        self.key = k;
        self
    }
    fn err(mut self, status: u16, code: &'static str, t: &'static str) -> Case {
        self.expect = Expect::Error(status, code, t);
        self
    }
    fn task_fails(mut self, code: &'static str) -> Case {
        self.expect = Expect::TaskFails(code);
        self
    }
    fn task_ok(mut self, docs_delta: i64) -> Case {
        self.expect = Expect::TaskOk;
        self.docs_delta = docs_delta;
        self
    }
    fn empty(mut self, status: u16) -> Case {
        self.expect = Expect::Empty(status);
        self
    }
    fn ok(mut self, status: u16) -> Case {
        self.expect = Expect::Ok(status);
        self
    }
    fn fault(mut self, node: usize, patch: Value) -> Case {
        self.faults.push((node, patch));
        self
    }
}

const INV: &str = "invalid_request";
const AUTH: &str = "auth";
const SYS: &str = "system";

fn docs(v: Value) -> Value {
    v
}

fn table() -> Vec<Case> {
    let long_id = "a".repeat(512);
    let ok_long_id = "b".repeat(511);
    let mut cases = vec![
        // ----- documents: payloads -----
        // core:32
        case("invalid JSON", "POST", "/indexes/movies/documents")
            .raw(Some("application/json"), b"[{\"id\": 1,")
            .err(400, "malformed_payload", INV),
        case("invalid UTF-8 in JSON", "POST", "/indexes/movies/documents")
            .raw(
                Some("application/json"),
                b"[{\"id\": 1, \"title\": \"\xff\xfe\"}]",
            )
            .err(400, "malformed_payload", INV),
        case(
            "JSON string instead of documents",
            "POST",
            "/indexes/movies/documents",
        )
        .raw(Some("application/json"), b"\"hello\"")
        .err(400, "malformed_payload", INV),
        case("invalid NDJSON line", "POST", "/indexes/movies/documents")
            .raw(Some("application/x-ndjson"), b"{\"id\": 1}\n{\"id\": \n")
            .err(400, "malformed_payload", INV),
        case(
            "invalid CSV (not a number in a number column)",
            "POST",
            "/indexes/movies/documents",
        )
        .raw(Some("text/csv"), b"id,year:number\n1,abc\n")
        .err(400, "malformed_payload", INV),
        case(
            "invalid CSV (ragged row)",
            "POST",
            "/indexes/movies/documents",
        )
        .raw(Some("text/csv"), b"id,title\n1,a,extra\n")
        .err(400, "malformed_payload", INV),
        case("invalid UTF-8 in CSV", "POST", "/indexes/movies/documents")
            .raw(Some("text/csv"), b"id,title\n1,\xff\n")
            .err(400, "malformed_payload", INV),
        case(
            "bad csvDelimiter",
            "POST",
            "/indexes/movies/documents?csvDelimiter=ab",
        )
        .raw(Some("text/csv"), b"id\n1\n")
        .err(400, "invalid_document_csv_delimiter", INV),
        // core:33
        case("wrong Content-Type", "POST", "/indexes/movies/documents")
            .raw(Some("text/plain"), b"id,title\n1,x")
            .err(415, "invalid_content_type", INV),
        case("missing Content-Type", "POST", "/indexes/movies/documents")
            .raw(None, b"[{\"id\": 1}]")
            .err(415, "missing_content_type", INV),
        case("empty JSON payload", "POST", "/indexes/movies/documents")
            .raw(Some("application/json"), b"")
            .err(400, "missing_payload", INV),
        // ----- documents: ids and primary keys (asynchronous in Meilisearch) -----
        // core:25
        case("missing document id", "POST", "/indexes/movies/documents")
            .json(docs(json!([{"title": "no id"}])))
            .task_fails("missing_document_id"),
        // core:17
        case("id with a space", "POST", "/indexes/movies/documents")
            .json(docs(json!([{"id": "a b"}])))
            .task_fails("invalid_document_id"),
        // core:19
        case("float id", "POST", "/indexes/movies/documents")
            .json(docs(json!([{"id": 1.5}])))
            .task_fails("invalid_document_id"),
        // core:21
        case("id over 511 bytes", "POST", "/indexes/movies/documents")
            .json(docs(json!([{"id": long_id}])))
            .task_fails("invalid_document_id"),
        case(
            "id of 511 bytes is fine",
            "POST",
            "/indexes/movies/documents",
        )
        .json(docs(json!([{"id": ok_long_id}])))
        .task_ok(2),
        case("object id", "POST", "/indexes/movies/documents")
            .json(docs(json!([{"id": {"a": 1}}])))
            .task_fails("invalid_document_id"),
        // milli accepts any integer id (its text, `-3`, is made of allowed characters).
        case(
            "negative integer id is accepted",
            "POST",
            "/indexes/movies/documents",
        )
        .json(docs(json!([{"id": -3}])))
        .task_ok(2),
        case("boolean id", "POST", "/indexes/movies/documents")
            .json(docs(json!([{"id": true}])))
            .task_fails("invalid_document_id"),
        case(
            "one bad id fails the whole batch",
            "POST",
            "/indexes/movies/documents",
        )
        .json(docs(json!([{"id": 300}, {"id": "bad id"}, {"id": 301}])))
        .task_fails("invalid_document_id"),
        // core:51 (the index's key is `id`)
        case(
            "primaryKey conflicting with the index's",
            "POST",
            "/indexes/movies/documents?primaryKey=sku",
        )
        .json(docs(json!([{"id": 400, "sku": "x"}])))
        .task_fails("index_primary_key_already_exists"),
        case("reserved field", "POST", "/indexes/movies/documents")
            .json(docs(json!([{"id": 401, "_miroir_shard": 3}])))
            .err(400, "miroir_reserved_field", INV),
        case(
            "reserved field, other name",
            "PUT",
            "/indexes/movies/documents",
        )
        .json(docs(json!([{"id": 402, "_miroir_anything": true}])))
        .err(400, "miroir_reserved_field", INV),
        case(
            "duplicate ids in one batch (the last one wins)",
            "POST",
            "/indexes/movies/documents",
        )
        .json(docs(
            json!([{"id": 500, "title": "first"}, {"id": 500, "title": "last"}]),
        ))
        .task_ok(2),
        case("empty batch", "POST", "/indexes/movies/documents")
            .json(json!([]))
            .task_ok(0),
        case(
            "delete-batch not an array",
            "POST",
            "/indexes/movies/documents/delete-batch",
        )
        .json(json!({"ids": [1]}))
        .err(400, "bad_request", INV),
        // ----- search -----
        // core:91
        case("negative limit", "POST", "/indexes/movies/search")
            .json(json!({"q": "x", "limit": -1}))
            .err(400, "invalid_search_limit", INV),
        case("limit as a string", "POST", "/indexes/movies/search")
            .json(json!({"q": "x", "limit": "10"}))
            .err(400, "invalid_search_limit", INV),
        case("absurd limit", "POST", "/indexes/movies/search")
            .json(json!({"q": "movie", "limit": 1_000_000_000_000u64}))
            .ok(200),
        case("absurd offset", "POST", "/indexes/movies/search")
            .json(json!({"q": "movie", "offset": u64::MAX}))
            .ok(200),
        case(
            "absurd hitsPerPage and page",
            "POST",
            "/indexes/movies/search",
        )
        .json(json!({"q": "movie", "hitsPerPage": u64::MAX, "page": u64::MAX}))
        .ok(200),
        case(
            "absurd limit in the query string",
            "GET",
            "/indexes/movies/search?q=movie&limit=99999999999999999999",
        )
        .err(400, "invalid_search_limit", INV),
        // core:93
        case("unknown search parameter", "POST", "/indexes/movies/search")
            .json(json!({"q": "x", "notAParam": 1}))
            .err(400, "bad_request", INV),
        case("q not a string", "POST", "/indexes/movies/search")
            .json(json!({"q": 12}))
            .err(400, "invalid_search_q", INV),
        case(
            "search body not an object",
            "POST",
            "/indexes/movies/search",
        )
        .json(json!([1, 2]))
        .err(400, "bad_request", INV),
        // core:73
        case("filter missing a value", "POST", "/indexes/movies/search")
            .json(json!({"q": "", "filter": "genre = "}))
            .err(400, "invalid_search_filter", INV),
        // core:74
        case(
            "filter on an unknown attribute",
            "POST",
            "/indexes/movies/search",
        )
        .json(json!({"q": "", "filter": "unknownattr = 3"}))
        .err(400, "invalid_search_filter", INV),
        case("filter of the wrong type", "POST", "/indexes/movies/search")
            .json(json!({"q": "", "filter": 42}))
            .err(400, "invalid_search_filter", INV),
        // core:92
        case(
            "sort on a non-sortable attribute",
            "POST",
            "/indexes/movies/search",
        )
        .json(json!({"q": "x", "sort": ["title:asc"]}))
        .err(400, "invalid_search_sort", INV),
        // core:94
        case(
            "facet on a non-filterable attribute",
            "POST",
            "/indexes/movies/search",
        )
        .json(json!({"q": "x", "facets": ["title"]}))
        .err(400, "invalid_search_facets", INV),
        case("search on an unknown index", "POST", "/indexes/nope/search")
            .json(json!({"q": "x"}))
            .err(404, "index_not_found", INV),
        // ----- indexes, tasks, uids -----
        // core:7
        case("unknown index", "GET", "/indexes/nope").err(404, "index_not_found", INV),
        // core:5
        case("invalid index uid on creation", "POST", "/indexes")
            .json(json!({"uid": "bad uid!"}))
            .err(400, "invalid_index_uid", INV),
        case(
            "path traversal ../ in an index uid",
            "GET",
            "/indexes/../documents",
        )
        .err(400, "invalid_index_uid", INV),
        case(
            "path traversal %2e%2e in an index uid",
            "GET",
            "/indexes/%2e%2e/documents",
        )
        .err(400, "invalid_index_uid", INV),
        case(
            "encoded slash in an index uid",
            "GET",
            "/indexes/movies%2F..%2Fkeys",
        )
        .err(400, "invalid_index_uid", INV),
        case(
            "path traversal in a document id",
            "GET",
            "/indexes/movies/documents/..%2F..%2Fkeys",
        )
        .err(404, "document_not_found", INV),
        case("deleting an unknown index", "DELETE", "/indexes/nope").task_fails("index_not_found"),
        // core:111
        case("unknown task", "GET", "/tasks/999999").err(404, "task_not_found", INV),
        case("task uid not a number", "GET", "/tasks/abc").err(400, "invalid_task_uids", INV),
        case(
            "task uid overflowing",
            "GET",
            "/tasks/99999999999999999999999",
        )
        .err(400, "invalid_task_uids", INV),
        // core:110
        case("unknown task status", "GET", "/tasks?statuses=notastatus").err(
            400,
            "invalid_task_statuses",
            INV,
        ),
        // core:112
        case("cancel without filters", "POST", "/tasks/cancel").err(
            400,
            "missing_task_filters",
            INV,
        ),
        // core:58
        case("unknown setting", "PATCH", "/indexes/movies/settings")
            .json(json!({"notASetting": 1}))
            .err(400, "bad_request", INV),
        // core:57
        case("invalid ranking rule", "PATCH", "/indexes/movies/settings")
            .json(json!({"rankingRules": ["words", "nope"]}))
            .err(400, "invalid_settings_ranking_rules", INV),
        case("unknown route", "GET", "/indexes/movies/nothing-here").empty(404),
        case("wrong method", "PUT", "/indexes/movies/search").empty(405),
        // ----- keys on every route class -----
        // core:113
        case("client route without a key", "GET", "/indexes")
            .key(Key::None)
            .err(401, "missing_authorization_header", AUTH),
        // core:114
        case("client route with a wrong key", "GET", "/indexes")
            .key(Key::Wrong)
            .err(403, "invalid_api_key", AUTH),
        case("client route with the admin key", "GET", "/indexes")
            .key(Key::Admin)
            .err(403, "invalid_api_key", AUTH),
        case("client route with the node key", "GET", "/indexes")
            .key(Key::Node)
            .err(403, "invalid_api_key", AUTH),
        case("client route with Basic auth", "GET", "/indexes")
            .key(Key::Basic)
            .err(401, "missing_authorization_header", AUTH),
        case(
            "write without a key writes nothing",
            "POST",
            "/indexes/movies/documents",
        )
        .key(Key::None)
        .json(json!([{"id": 600}]))
        .err(401, "missing_authorization_header", AUTH),
        case(
            "write with a wrong key writes nothing",
            "POST",
            "/indexes/movies/documents",
        )
        .key(Key::Wrong)
        .json(json!([{"id": 601}]))
        .err(403, "invalid_api_key", AUTH),
        case("search with the node key", "POST", "/indexes/movies/search")
            .key(Key::Node)
            .json(json!({"q": "x"}))
            .err(403, "invalid_api_key", AUTH),
        case(
            "invalid uid without a key: auth first",
            "GET",
            "/indexes/bad%20uid",
        )
        .key(Key::None)
        .err(401, "missing_authorization_header", AUTH),
        case("admin ready without a key", "GET", "/_miroir/ready")
            .key(Key::None)
            .err(401, "missing_authorization_header", AUTH),
        case("admin ready with the master key", "GET", "/_miroir/ready")
            .key(Key::Master)
            .err(403, "invalid_api_key", AUTH),
        case("admin ready with the node key", "GET", "/_miroir/ready")
            .key(Key::Node)
            .err(403, "invalid_api_key", AUTH),
        case("admin ready with the admin key", "GET", "/_miroir/ready")
            .key(Key::Admin)
            .ok(200),
        case(
            "admin topology with the master key",
            "GET",
            "/_miroir/topology",
        )
        .key(Key::Master)
        .err(403, "invalid_api_key", AUTH),
        case(
            "admin topology with a wrong key",
            "GET",
            "/_miroir/topology",
        )
        .key(Key::Wrong)
        .err(403, "invalid_api_key", AUTH),
        case("admin topology with Basic auth", "GET", "/_miroir/topology")
            .key(Key::Basic)
            .err(401, "missing_authorization_header", AUTH),
        case(
            "unknown admin path with the master key",
            "POST",
            "/_miroir/nodes/x/drain",
        )
        .key(Key::Master)
        .err(403, "invalid_api_key", AUTH),
        case(
            "admin path traversal without a key",
            "GET",
            "/_miroir/%2e%2e/indexes",
        )
        .key(Key::None)
        .err(401, "missing_authorization_header", AUTH),
        case(
            "admin topology with the admin key",
            "GET",
            "/_miroir/topology",
        )
        .key(Key::Admin)
        .ok(200),
        case("metrics without a key", "GET", "/metrics")
            .key(Key::None)
            .err(401, "missing_authorization_header", AUTH),
        case("metrics with the admin key", "GET", "/metrics")
            .key(Key::Admin)
            .err(403, "invalid_api_key", AUTH),
        case("health needs no key", "GET", "/health")
            .key(Key::None)
            .ok(200),
        // ----- non-UTF-8 in the URL -----
        case(
            "invalid UTF-8 in a query value",
            "GET",
            "/indexes/movies/search?q=%FF%FE",
        )
        .ok(200),
        case("invalid UTF-8 in an index uid", "GET", "/indexes/%FF%FE").err(
            400,
            "invalid_index_uid",
            INV,
        ),
        // ----- nodes answering garbage -----
        case(
            "one node answers garbage to a search",
            "POST",
            "/indexes/movies/search",
        )
        .json(json!({"q": "movie"}))
        .fault(0, json!({"failRate": 1.0, "failMode": "garbage"}))
        .ok(200),
        case(
            "one node truncates its answers to a search",
            "POST",
            "/indexes/movies/search",
        )
        .json(json!({"q": "movie"}))
        .fault(1, json!({"failRate": 1.0, "failMode": "truncated"}))
        .ok(200),
        case(
            "one node answers a wrong status to a search",
            "POST",
            "/indexes/movies/search",
        )
        .json(json!({"q": "movie"}))
        .fault(2, json!({"failRate": 1.0, "failMode": "wrongStatus"}))
        .ok(200),
        case(
            "one node answers garbage to a document read",
            "GET",
            "/indexes/movies/documents/3",
        )
        .fault(0, json!({"failRate": 1.0, "failMode": "garbage"}))
        .fault(1, json!({"failRate": 1.0, "failMode": "garbage"}))
        .ok(200),
        case(
            "one node answers a wrong status to a document read",
            "GET",
            "/indexes/movies/documents/4",
        )
        .fault(0, json!({"failRate": 1.0, "failMode": "wrongStatus"}))
        .fault(1, json!({"failRate": 1.0, "failMode": "wrongStatus"}))
        .ok(200),
        case(
            "every node answers garbage to an index read",
            "GET",
            "/indexes/movies",
        )
        .fault(0, json!({"failRate": 1.0, "failMode": "garbage"}))
        .fault(1, json!({"failRate": 1.0, "failMode": "garbage"}))
        .fault(2, json!({"failRate": 1.0, "failMode": "garbage"}))
        .err(503, "miroir_no_node_available", SYS),
        case(
            "every node truncates its answer to a document read",
            "GET",
            "/indexes/movies/documents/5",
        )
        .fault(0, json!({"failRate": 1.0, "failMode": "truncated"}))
        .fault(1, json!({"failRate": 1.0, "failMode": "truncated"}))
        .fault(2, json!({"failRate": 1.0, "failMode": "truncated"}))
        .err(503, "miroir_no_node_available", SYS),
        case(
            "every node answers garbage to a search",
            "POST",
            "/indexes/movies/search",
        )
        .json(json!({"q": "movie"}))
        .fault(0, json!({"failRate": 1.0, "failMode": "garbage"}))
        .fault(1, json!({"failRate": 1.0, "failMode": "garbage"}))
        .fault(2, json!({"failRate": 1.0, "failMode": "garbage"}))
        .err(503, "miroir_shard_unavailable", SYS),
        case(
            "every node answers a wrong status to an index read",
            "GET",
            "/indexes/movies",
        )
        .fault(0, json!({"failRate": 1.0, "failMode": "wrongStatus"}))
        .fault(1, json!({"failRate": 1.0, "failMode": "wrongStatus"}))
        .fault(2, json!({"failRate": 1.0, "failMode": "wrongStatus"}))
        .err(503, "miroir_no_node_available", SYS),
        case(
            "every node answers garbage to a write: nothing written",
            "POST",
            "/indexes/movies/documents",
        )
        .json(json!([{"id": 700}, {"id": 701}, {"id": 702}]))
        .fault(0, json!({"failRate": 1.0, "failMode": "garbage"}))
        .fault(1, json!({"failRate": 1.0, "failMode": "garbage"}))
        .fault(2, json!({"failRate": 1.0, "failMode": "garbage"}))
        .err(503, "miroir_no_quorum", SYS),
        case(
            "every node answers a wrong status to a write: nothing written",
            "POST",
            "/indexes/movies/documents",
        )
        .json(json!([{"id": 710}, {"id": 711}]))
        .fault(0, json!({"failRate": 1.0, "failMode": "wrongStatus"}))
        .fault(1, json!({"failRate": 1.0, "failMode": "wrongStatus"}))
        .fault(2, json!({"failRate": 1.0, "failMode": "wrongStatus"}))
        .err(503, "miroir_no_quorum", SYS),
    ];
    // Every other route class: without a key 401, with the admin or the node key 403, and nothing written.
    let classes: [(&'static str, &'static str, Option<Value>); 12] = [
        (
            "POST",
            "/multi-search",
            Some(json!({"queries": [{"indexUid": "movies", "q": "x"}]})),
        ),
        (
            "POST",
            "/swap-indexes",
            Some(json!([{"indexes": ["movies", "other"]}])),
        ),
        ("GET", "/keys", None),
        ("GET", "/stats", None),
        (
            "PATCH",
            "/indexes/movies/settings",
            Some(json!({"filterableAttributes": []})),
        ),
        ("DELETE", "/indexes/movies/documents", None),
        ("DELETE", "/indexes/movies", None),
        ("GET", "/tasks", None),
        ("GET", "/batches", None),
        ("GET", "/version", None),
        ("POST", "/dumps", None),
        ("GET", "/webhooks", None),
    ];
    for (method, path, body) in classes {
        for (key, expect) in [
            (Key::None, (401, "missing_authorization_header")),
            (Key::Admin, (403, "invalid_api_key")),
            (Key::Node, (403, "invalid_api_key")),
        ] {
            let mut c = case("route class with a missing or foreign key", method, path).key(key);
            if let Some(b) = &body {
                c = c.json(b.clone());
            }
            cases.push(c.err(expect.0, expect.1, AUTH));
        }
    }
    cases
}

fn auth_header(k: Key) -> Option<String> {
    match k {
        Key::Master => Some(format!("Bearer {MASTER}")),
        Key::Admin => Some(format!("Bearer {ADMIN}")),
        Key::Node => Some(format!("Bearer {DEV_NODE_KEY}")),
        Key::Wrong => Some("Bearer wrong-key-0123456789".to_string()),
        Key::Basic => Some("Basic bWFzdGVyS2V5Og==".to_string()),
        Key::None => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bad_input_table() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = DevOptions::new(3, dir.path().join("t.db").to_string_lossy().into_owned());
    o.replication_factor = 2;
    o.master_key = MASTER.into();
    o.unavailable_shard_policy = "error".into();
    let (f, mut api) = fleet_tweaked(o, |c| {
        c.admin.api_key = miroir_core::config::Secret::new(ADMIN);
    })
    .await;
    api.key = Some(MASTER.into());
    api.write_ok(
        "POST",
        "/indexes/movies/documents",
        Some(Value::Array(movies(20))),
    )
    .await;
    api.write_ok(
        "PATCH",
        "/indexes/movies/settings",
        Some(json!({"filterableAttributes": ["genre", "year"], "sortableAttributes": ["year"]})),
    )
    .await;

    let cases = table();
    assert!(cases.len() >= 40, "{} rows", cases.len());
    eprintln!("bad-input table: {} rows", cases.len());
    let mut failures = Vec::new();
    for c in &cases {
        if let Err(e) = run_case(&f, &api, c).await {
            failures.push(format!("[{}] {} {}: {e}", c.name, c.method, c.path));
        }
    }
    // Duplicate ids: Meilisearch keeps the last version of a document sent twice in one batch.
    let d = api.get("/indexes/movies/documents/500").await;
    assert_eq!(d.status, 200, "{}", d.body);
    assert_eq!(d.body["title"], "last");
    assert!(
        failures.is_empty(),
        "{} of {} rows failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    f.shutdown().await;
}

async fn run_case(f: &miroir_proxy::dev::DevFleet, api: &Api, c: &Case) -> Result<(), String> {
    let before = doc_counts(f, "movies").await;
    for (node, patch) in &c.faults {
        set_faults(f, *node, patch.clone()).await;
    }
    let mut bare = api.clone();
    bare.key = None;
    let mut headers: Vec<(&str, String)> = Vec::new();
    if let Some(a) = auth_header(c.key) {
        headers.push(("Authorization", a));
    }
    if let Some(ct) = c.ct {
        headers.push(("Content-Type", ct.to_string()));
    }
    let hdrs: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let r = send_with_headers(&bare, c.method, &c.path, &hdrs, c.body.clone()).await;
    for (node, _) in &c.faults {
        set_faults(f, *node, json!({"failRate": 0.0, "failMode": "status"})).await;
    }
    // No key ever reaches a client.
    let text = format!("{:?} {}", r.headers, r.body);
    for secret in [MASTER, ADMIN, DEV_NODE_KEY] {
        if text.contains(secret) {
            return Err(format!("the answer contains a key: {text}"));
        }
    }
    let check = |cond: bool, what: &str| -> Result<(), String> {
        if cond {
            Ok(())
        } else {
            Err(format!("{what}: got {} {}", r.status, r.body))
        }
    };
    match &c.expect {
        Expect::Error(status, code, t) => {
            check(r.status == *status, &format!("status {status}"))?;
            check(r.body["code"] == *code, &format!("code {code}"))?;
            check(r.body["type"] == *t, &format!("type {t}"))?;
            check(
                r.body["link"].as_str().is_some_and(|l| l.ends_with(code)),
                "link",
            )?;
            check(r.body["message"].is_string(), "message")?;
        }
        Expect::TaskFails(_) | Expect::TaskOk => {
            check(r.status == 202, "status 202")?;
            let uid = r.body["taskUid"].as_u64().ok_or("no taskUid")?;
            let t = api.wait_task(uid).await;
            match &c.expect {
                Expect::TaskFails(code) => {
                    if t["status"] != "failed"
                        || t["error"]["code"] != *code
                        || t["error"]["type"] != INV
                    {
                        return Err(format!("task should fail with {code}: {t}"));
                    }
                }
                _ => {
                    if t["status"] != "succeeded" {
                        return Err(format!("task should succeed: {t}"));
                    }
                }
            }
        }
        Expect::Empty(status) => {
            check(
                r.status == *status && r.body.is_null(),
                &format!("empty {status}"),
            )?;
        }
        Expect::Ok(status) => {
            check(r.status == *status, &format!("status {status}"))?;
            check(!r.body.is_null() || *status == 204, "a body")?;
            check(r.body.get("code").is_none(), "not an error")?;
        }
    }
    // Documents changed exactly as the client was told (late node answers included).
    tokio::time::sleep(std::time::Duration::from_millis(30)).await;
    let after = doc_counts(f, "movies").await;
    let delta = after.iter().sum::<u64>() as i64 - before.iter().sum::<u64>() as i64;
    if delta != c.docs_delta {
        return Err(format!(
            "documents on the nodes went from {before:?} to {after:?}, expected a change of {}",
            c.docs_delta
        ));
    }
    // Still healthy.
    let h = api.get("/health").await;
    check(h.status == 200, "health afterwards")?;
    let s = api
        .post("/indexes/movies/search", json!({"q": "movie"}))
        .await;
    if s.status != 200 {
        return Err(format!("search afterwards: {} {}", s.status, s.body));
    }
    Ok(())
}

/// A write refused for lack of quorum has an indeterminate outcome, as in every quorum system: it is sent to
/// every owner at once and decided afterwards, so the replicas that answered may have applied their part
/// (`docs/errors.md#miroir_no_quorum`). What Miroir guarantees is that the client was not told it succeeded,
/// and that retrying the same write (writes are idempotent) once the node is back converges every replica
/// on it, with no duplicate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_refused_for_lack_of_quorum_converges_when_retried() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = DevOptions::new(3, dir.path().join("t.db").to_string_lossy().into_owned());
    o.replication_factor = 2;
    let (f, api) = fleet_tweaked(o, |_| {}).await;
    api.write_ok(
        "POST",
        "/indexes/movies/documents",
        Some(Value::Array(movies(20))),
    )
    .await;
    let before: u64 = doc_counts(&f, "movies").await.iter().sum();
    assert_eq!(before, 40, "RF 2: every document twice");
    set_faults(&f, 0, json!({"failRate": 1.0, "failMode": "status"})).await;
    let docs: Vec<Value> = (100..130).map(|i| json!({ "id": i })).collect();
    let r = api
        .post("/indexes/movies/documents", Value::Array(docs.clone()))
        .await;
    assert_error(&r, 503, "miroir_no_quorum", SYS);
    assert!(
        r.body.get("taskUid").is_none(),
        "no task for a refused write"
    );
    set_faults(&f, 0, json!({"failRate": 0.0})).await;
    // The client retries on 503 until the node is back (and has replayed what it missed).
    let mut retried = None;
    for _ in 0..100 {
        let r = api
            .post("/indexes/movies/documents", Value::Array(docs.clone()))
            .await;
        if r.status == 202 {
            retried = r.body["taskUid"].as_u64();
            break;
        }
        assert_error(&r, 503, "miroir_no_quorum", SYS);
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let t = api
        .wait_task(retried.expect("the retry is acknowledged once the node is back"))
        .await;
    assert_eq!(t["status"], "succeeded", "{t}");
    for _ in 0..100 {
        if doc_counts(&f, "movies").await.iter().sum::<u64>() == 100 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let after: u64 = doc_counts(&f, "movies").await.iter().sum();
    assert_eq!(
        after, 100,
        "50 documents, each on its 2 owners exactly once"
    );
    for id in [100, 115, 129] {
        let d = api.get(&format!("/indexes/movies/documents/{id}")).await;
        assert_eq!(d.status, 200, "{id}: {}", d.body);
    }
    f.shutdown().await;
}
