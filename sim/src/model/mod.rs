//! A sans-IO model of one Meilisearch v1.50 node: [`Node::handle`] answers an HTTP-like [`Request`]
//! with a [`Response`] exactly as Meilisearch would (status, body, error codes and messages), and
//! writes go through an asynchronous task queue that the caller drives explicitly
//! ([`Node::process_next`], [`Node::run_until_idle`]).
//!
//! States: the node holds a [`NodeState`] (indexes + task queue) and its configuration (master key).
//! Transitions: `handle` validates a request and either answers from the applied state (reads) or
//! enqueues a task (writes, answered `202`); `process_next` applies the next task. A crash loses
//! nothing that was acknowledged: [`Node::durable_state`] / [`Node::restart_from`] carry the queue and
//! the applied state across a restart, and a task caught `processing` runs again from scratch.
//! `POST /dumps` and `POST /snapshots` enqueue `dumpCreation` / `snapshotCreation` tasks that succeed
//! without writing anything (the model has no files): a dump task reports the `dumpUid` a real node
//! would have used.
//! Invariants: no I/O, no clock (time is always the `now` argument), no randomness; the same sequence of
//! calls always yields the same responses.

pub mod facets;
pub mod filter;
pub mod format;
pub mod index;
pub mod keys;
pub mod payload;
pub mod query;
pub mod search;
pub mod settings;
pub mod tasks;
pub mod text;
pub mod time;

use miroir_core::{MeiliError, Millis};
use serde_json::{json, Map, Value};

pub use tasks::{NodeState, Task, TaskKind, TaskStatus};

use index::Index;
use search::SearchQuery;

/// An HTTP method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// GET
    Get,
    /// POST
    Post,
    /// PUT
    Put,
    /// PATCH
    Patch,
    /// DELETE
    Delete,
}

impl Method {
    /// Parses a method name.
    pub fn parse(s: &str) -> Option<Method> {
        Some(match s.to_ascii_uppercase().as_str() {
            "GET" => Method::Get,
            "POST" => Method::Post,
            "PUT" => Method::Put,
            "PATCH" => Method::Patch,
            "DELETE" => Method::Delete,
            _ => return None,
        })
    }
}

/// A request to the node.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// Method.
    pub method: Method,
    /// Path with query string, e.g. `/indexes/movies/documents?limit=3`.
    pub path: String,
    /// The `Authorization` header.
    pub authorization: Option<String>,
    /// The `Content-Type` header.
    pub content_type: Option<String>,
    /// Body bytes.
    pub body: Vec<u8>,
}

impl Request {
    /// A request without body.
    pub fn new(method: Method, path: &str) -> Self {
        Request {
            method,
            path: path.to_string(),
            authorization: None,
            content_type: None,
            body: Vec::new(),
        }
    }

    /// `GET path`.
    pub fn get(path: &str) -> Self {
        Self::new(Method::Get, path)
    }

    /// `DELETE path`.
    pub fn delete(path: &str) -> Self {
        Self::new(Method::Delete, path)
    }

    /// A request with a JSON body.
    pub fn json(method: Method, path: &str, body: &Value) -> Self {
        Self::new(method, path).with_body("application/json", body.to_string().into_bytes())
    }

    /// Sets the body and its content type.
    pub fn with_body(mut self, content_type: &str, body: Vec<u8>) -> Self {
        self.content_type = Some(content_type.to_string());
        self.body = body;
        self
    }

    /// Sets `Authorization: Bearer key`.
    pub fn bearer(mut self, key: &str) -> Self {
        self.authorization = Some(format!("Bearer {key}"));
        self
    }
}

/// A response of the node.
#[derive(Debug, Clone, PartialEq)]
pub struct Response {
    /// HTTP status.
    pub status: u16,
    /// JSON body (`Null` for an empty body).
    pub body: Value,
}

impl Response {
    fn ok(body: Value) -> Self {
        Response { status: 200, body }
    }
    fn error(e: &MeiliError) -> Self {
        Response {
            status: e.status,
            body: e.to_json(),
        }
    }
}

/// The `primaryKey` of an index creation or update body: a string, or `null` for none.
fn primary_key_value(v: &Value) -> Result<Option<String>, MeiliError> {
    match v {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(s.clone())),
        _ => Err(settings::type_error(
            "invalid_index_primary_key",
            ".primaryKey",
            "a string",
            v,
        )),
    }
}

/// Meilisearch's index uid rule: 1-512 bytes of `[A-Za-z0-9_-]`.
pub fn valid_index_uid(uid: &str) -> bool {
    !uid.is_empty()
        && uid.len() <= 512
        && uid
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

fn invalid_uid(uid: &str, prefix: &str) -> MeiliError {
    MeiliError::invalid(400, "invalid_index_uid", format!("{prefix}`{uid}` is not a valid index uid. Index uid can be an integer or a string containing only alphanumeric characters, hyphens (-) and underscores (_), and can not be more than 512 bytes."))
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                    }
                    None => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Splits a query string into decoded `(key, value)` pairs.
pub fn parse_query_string(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|s| !s.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn json_body(req: &Request) -> Result<Value, MeiliError> {
    if req.content_type.is_none() && !req.body.is_empty() {
        return Err(MeiliError::invalid(
            415,
            "missing_content_type",
            "A Content-Type header is missing. Accepted values for the Content-Type header are: `application/json`",
        ));
    }
    if req.body.iter().all(|b| b.is_ascii_whitespace()) {
        return Err(MeiliError::invalid(
            400,
            "missing_payload",
            "A json payload is missing.",
        ));
    }
    if let Some(ct) = &req.content_type {
        let base = ct
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        if base != "application/json" {
            return Err(MeiliError::invalid(415, "invalid_content_type", format!("The Content-Type `{ct}` is invalid. Accepted values for the Content-Type header are: `application/json`")));
        }
    }
    serde_json::from_slice(&req.body).map_err(|e| {
        MeiliError::invalid(
            400,
            "malformed_payload",
            format!("The json payload provided is malformed. `{e}`."),
        )
    })
}

fn unknown_field(k: &str, expected: &[&str]) -> MeiliError {
    MeiliError::invalid(
        400,
        "bad_request",
        format!(
            "Unknown field `{k}`: expected one of {}",
            expected
                .iter()
                .map(|e| format!("`{e}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    )
}

fn unknown_param(k: &str, expected: &[&str]) -> MeiliError {
    MeiliError::invalid(
        400,
        "bad_request",
        format!(
            "Unknown parameter `{k}`: expected one of {}",
            expected
                .iter()
                .map(|e| format!("`{e}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    )
}

fn parse_usize_param(name: &str, code: &str, v: &str) -> Result<usize, MeiliError> {
    v.parse().map_err(|_| {
        MeiliError::invalid(
            400,
            code,
            format!(
                "Invalid value in parameter `{name}`: could not parse `{v}` as a positive integer"
            ),
        )
    })
}

/// A node of the model.
#[derive(Debug, Clone)]
pub struct Node {
    master_key: Option<String>,
    state: NodeState,
    requests: u64,
}

impl Node {
    /// A fresh node. `master_key = None` leaves the API open.
    pub fn new(master_key: Option<&str>) -> Self {
        Node {
            master_key: master_key.map(str::to_string),
            state: NodeState::default(),
            requests: 0,
        }
    }

    /// The state that survives a crash.
    pub fn durable_state(&self) -> NodeState {
        self.state.clone()
    }

    /// Restarts a node from a durable state: a task that was processing when the node stopped goes
    /// back to `enqueued` and runs again later.
    pub fn restart_from(master_key: Option<&str>, mut state: NodeState) -> Self {
        if let Some(uid) = state.processing.take() {
            if let Some(t) = state.tasks.get_mut(&uid) {
                t.status = TaskStatus::Enqueued;
                t.started_at = None;
                t.batch_uid = None;
            }
        }
        Node {
            master_key: master_key.map(str::to_string),
            state,
            requests: 0,
        }
    }

    /// Read access to the state.
    pub fn state(&self) -> &NodeState {
        &self.state
    }

    /// Moves the next enqueued task to `processing` without applying it (to observe that state).
    pub fn start_next(&mut self, now: Millis) -> Option<u32> {
        self.state.start_next(now)
    }

    /// Finishes the task started by [`Node::start_next`].
    pub fn finish_processing(&mut self, now: Millis) -> Option<u32> {
        self.state.finish(now)
    }

    /// Processes one task (start and finish at `now`); returns its uid.
    pub fn process_next(&mut self, now: Millis) -> Option<u32> {
        if self.state.processing.is_some() {
            return self.state.finish(now);
        }
        self.state.start_next(now)?;
        self.state.finish(now)
    }

    /// Alias of [`Node::process_next`]: one scheduler tick.
    pub fn tick(&mut self, now: Millis) -> Option<u32> {
        self.process_next(now)
    }

    /// Processes every pending task; returns how many ran.
    pub fn run_until_idle(&mut self, now: Millis) -> usize {
        let mut n = 0;
        while self.process_next(now).is_some() {
            n += 1;
        }
        n
    }

    /// Answers one request.
    pub fn handle(&mut self, req: Request, now: Millis) -> Response {
        self.requests += 1;
        match self.route(&req, now) {
            Ok(r) => r,
            Err(e) => Response::error(&e),
        }
    }

    fn request_uid(&self) -> String {
        format!("00000000-0000-7000-8000-{:012x}", self.requests)
    }

    /// A uuid-v4-shaped uid derived from the request counter, for a key created without `uid`.
    fn request_key_uid(&self) -> String {
        format!("00000000-0000-4000-8000-{:012x}", self.requests)
    }

    fn check_auth(&self, req: &Request, path: &str) -> Result<(), MeiliError> {
        let Some(key) = &self.master_key else {
            return Ok(());
        };
        if path == "/health" {
            return Ok(());
        }
        match &req.authorization {
            None => Err(MeiliError::new(
                401,
                "missing_authorization_header",
                miroir_core::ErrorType::Auth,
                "The Authorization header is missing. It must use the bearer authorization method.",
            )),
            Some(h) => {
                let token = h.strip_prefix("Bearer ").map(str::trim);
                if token == Some(key.as_str()) {
                    Ok(())
                } else {
                    Err(MeiliError::new(
                        403,
                        "invalid_api_key",
                        miroir_core::ErrorType::Auth,
                        "The provided API key is invalid.",
                    ))
                }
            }
        }
    }

    fn enqueue(&mut self, index: Option<&str>, kind: TaskKind, now: Millis) -> Response {
        let t = self.state.enqueue(index.map(str::to_string), kind, now);
        Response {
            status: 202,
            body: t.summary(),
        }
    }

    fn index(&self, uid: &str) -> Result<&Index, MeiliError> {
        if !valid_index_uid(uid) {
            return Err(invalid_uid(uid, ""));
        }
        self.state.indexes.get(uid).ok_or_else(|| {
            MeiliError::invalid(404, "index_not_found", format!("Index `{uid}` not found."))
        })
    }

    fn route(&mut self, req: &Request, now: Millis) -> Result<Response, MeiliError> {
        let (path, query) = req.path.split_once('?').unwrap_or((&req.path, ""));
        let params = parse_query_string(query);
        let path = path.trim_end_matches('/');
        let path = if path.is_empty() { "/" } else { path };
        self.check_auth(req, path)?;
        let segs: Vec<String> = path
            .split('/')
            .filter(|s| !s.is_empty())
            .map(percent_decode)
            .collect();
        let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
        use Method::*;
        let not_found = || {
            Ok(Response {
                status: 404,
                body: Value::Null,
            })
        };
        let not_allowed = || {
            Ok(Response {
                status: 405,
                body: Value::Null,
            })
        };
        match segs.as_slice() {
            ["health"] => match req.method {
                Get => Ok(Response::ok(json!({"status": "available"}))),
                _ => not_allowed(),
            },
            ["version"] => Ok(Response::ok(
                json!({"commitSha": "unknown", "commitDate": "unknown", "pkgVersion": "1.50.0"}),
            )),
            ["stats"] => {
                let mut idx = Map::new();
                let mut last = None;
                for (uid, i) in &self.state.indexes {
                    idx.insert(uid.clone(), i.stats(self.state.is_indexing(uid)));
                    last = last.max(Some(i.updated_at));
                }
                let size: u64 = idx
                    .values()
                    .map(|s| s["rawDocumentDbSize"].as_u64().unwrap_or(0))
                    .sum();
                Ok(Response::ok(
                    json!({"databaseSize": size, "usedDatabaseSize": size, "lastUpdate": last.map(time::rfc3339), "indexes": idx}),
                ))
            }
            ["indexes"] => match req.method {
                Get => self.list_indexes(&params),
                Post => self.create_index(req, now),
                _ => not_allowed(),
            },
            ["indexes", uid] => match req.method {
                Get => Ok(Response::ok(self.index(uid)?.to_json())),
                Patch => {
                    if !valid_index_uid(uid) {
                        return Err(invalid_uid(uid, ""));
                    }
                    let body = json_body(req)?;
                    let obj = body.as_object().ok_or_else(|| {
                        settings::type_error("bad_request", "", "an object", &body)
                    })?;
                    let mut pk = None;
                    for (k, v) in obj {
                        match k.as_str() {
                            "primaryKey" => pk = primary_key_value(v)?,
                            _ => return Err(unknown_field(k, &["primaryKey", "uid"])),
                        }
                    }
                    Ok(self.enqueue(Some(uid), TaskKind::IndexUpdate { primary_key: pk }, now))
                }
                Delete => {
                    if !valid_index_uid(uid) {
                        return Err(invalid_uid(uid, ""));
                    }
                    Ok(self.enqueue(Some(uid), TaskKind::IndexDeletion, now))
                }
                _ => not_allowed(),
            },
            ["indexes", uid, "stats"] => {
                let i = self.index(uid)?;
                Ok(Response::ok(i.stats(self.state.is_indexing(uid))))
            }
            ["indexes", uid, "documents"] => match req.method {
                Get => self.get_documents(uid, &params, None),
                Post | Put => self.add_documents(uid, req, &params, req.method == Put, now),
                Delete => {
                    if !valid_index_uid(uid) {
                        return Err(invalid_uid(uid, ""));
                    }
                    Ok(self.enqueue(Some(uid), TaskKind::DocumentClear, now))
                }
                _ => not_allowed(),
            },
            ["indexes", uid, "documents", "fetch"] if req.method == Post => {
                let body = json_body(req)?;
                self.get_documents(uid, &[], Some(&body))
            }
            ["indexes", uid, "documents", "delete-batch"] if req.method == Post => {
                if !valid_index_uid(uid) {
                    return Err(invalid_uid(uid, ""));
                }
                let body = json_body(req)?;
                let arr = body
                    .as_array()
                    .ok_or_else(|| settings::type_error("bad_request", "", "an array", &body))?;
                let mut ids = Vec::new();
                for v in arr {
                    match v {
                        Value::String(s) => ids.push(s.clone()),
                        Value::Number(n) => ids.push(n.to_string()),
                        other => {
                            return Err(settings::type_error(
                                "bad_request",
                                "",
                                "a string or an integer",
                                other,
                            ))
                        }
                    }
                }
                Ok(self.enqueue(Some(uid), TaskKind::DocumentDeletion { ids }, now))
            }
            ["indexes", uid, "documents", "delete"] if req.method == Post => {
                if !valid_index_uid(uid) {
                    return Err(invalid_uid(uid, ""));
                }
                let body = json_body(req)?;
                let obj = body
                    .as_object()
                    .ok_or_else(|| settings::type_error("bad_request", "", "an object", &body))?;
                for k in obj.keys() {
                    if k != "filter" {
                        return Err(unknown_field(k, &["filter"]));
                    }
                }
                let f = obj.get("filter").cloned().ok_or_else(|| {
                    MeiliError::invalid(400, "missing_document_filter", "Missing field `filter`")
                })?;
                match filter::parse_value(&f) {
                    Ok(_) => {}
                    Err(filter::FilterValueError::Parse(e)) => {
                        return Err(MeiliError::invalid(
                            400,
                            "invalid_document_filter",
                            e.message,
                        ))
                    }
                    Err(filter::FilterValueError::BadType(m)) => {
                        return Err(MeiliError::invalid(400, "invalid_document_filter", m))
                    }
                }
                Ok(self.enqueue(
                    Some(uid),
                    TaskKind::DocumentDeletionByFilter { filter: f },
                    now,
                ))
            }
            ["indexes", uid, "documents", id] => match req.method {
                Get => {
                    let i = self.index(uid)?;
                    let doc = i.get(id).ok_or_else(|| {
                        MeiliError::invalid(
                            404,
                            "document_not_found",
                            format!("Document `{id}` not found."),
                        )
                    })?;
                    let fields = params
                        .iter()
                        .find(|(k, _)| k == "fields")
                        .map(|(_, v)| split_fields(v));
                    for (k, _) in &params {
                        if k != "fields" && k != "retrieveVectors" {
                            return Err(unknown_param(k, &["fields", "retrieveVectors"]));
                        }
                    }
                    Ok(Response::ok(Value::Object(project(
                        i,
                        doc,
                        fields.as_deref(),
                    ))))
                }
                Delete => {
                    if !valid_index_uid(uid) {
                        return Err(invalid_uid(uid, ""));
                    }
                    Ok(self.enqueue(
                        Some(uid),
                        TaskKind::DocumentDeletion {
                            ids: vec![id.to_string()],
                        },
                        now,
                    ))
                }
                _ => not_allowed(),
            },
            ["indexes", uid, "settings"] => match req.method {
                Get => Ok(Response::ok(self.index(uid)?.settings.to_json())),
                Patch => {
                    if !valid_index_uid(uid) {
                        return Err(invalid_uid(uid, ""));
                    }
                    let patch = settings::validate_patch(&json_body(req)?)?;
                    Ok(self.enqueue(Some(uid), TaskKind::SettingsUpdate { patch }, now))
                }
                Delete => {
                    if !valid_index_uid(uid) {
                        return Err(invalid_uid(uid, ""));
                    }
                    Ok(self.enqueue(
                        Some(uid),
                        TaskKind::SettingsUpdate {
                            patch: settings::reset_all_patch(),
                        },
                        now,
                    ))
                }
                _ => not_allowed(),
            },
            ["indexes", uid, "settings", sub] => {
                let Some((key, method)) = settings::sub_route(sub) else {
                    return not_found();
                };
                match req.method {
                    Get => Ok(Response::ok(self.index(uid)?.settings.get(key))),
                    Delete => {
                        if !valid_index_uid(uid) {
                            return Err(invalid_uid(uid, ""));
                        }
                        let mut patch = Map::new();
                        patch.insert(key.to_string(), Value::Null);
                        Ok(self.enqueue(Some(uid), TaskKind::SettingsUpdate { patch }, now))
                    }
                    m if (m == Put && method == "PUT") || (m == Patch && method == "PATCH") => {
                        if !valid_index_uid(uid) {
                            return Err(invalid_uid(uid, ""));
                        }
                        let body = json_body(req)?;
                        let v = if body.is_null() {
                            Value::Null
                        } else {
                            settings::validate_key(key, &body)?
                        };
                        let mut patch = Map::new();
                        patch.insert(key.to_string(), v);
                        Ok(self.enqueue(Some(uid), TaskKind::SettingsUpdate { patch }, now))
                    }
                    _ => not_allowed(),
                }
            }
            ["indexes", uid, "search"] => {
                let q = match req.method {
                    Get => SearchQuery::from_params(&params)?,
                    Post => SearchQuery::from_json(&json_body(req)?, &[])?,
                    _ => return not_allowed(),
                };
                let i = self.index(uid)?;
                let mut body = search::search(i, &q)?;
                if let Some(o) = body.as_object_mut() {
                    o.insert("requestUid".into(), Value::String(self.request_uid()));
                }
                Ok(Response::ok(body))
            }
            ["indexes", uid, "facet-search"] if req.method == Post => {
                let body = json_body(req)?;
                let i = self.index(uid)?;
                Ok(Response::ok(facets::facet_search(i, &body)?))
            }
            ["multi-search"] if req.method == Post => self.multi_search(&json_body(req)?),
            ["swap-indexes"] if req.method == Post => {
                let body = json_body(req)?;
                let arr = body
                    .as_array()
                    .ok_or_else(|| settings::type_error("bad_request", "", "an array", &body))?;
                let mut swaps = Vec::new();
                let mut seen: Vec<String> = Vec::new();
                for (n, item) in arr.iter().enumerate() {
                    let pair = item
                        .get("indexes")
                        .and_then(Value::as_array)
                        .ok_or_else(|| {
                            MeiliError::invalid(
                                400,
                                "invalid_swap_indexes",
                                format!("Missing field `indexes` inside `[{n}]`"),
                            )
                        })?;
                    let names: Vec<String> = pair
                        .iter()
                        .filter_map(|v| v.as_str().map(str::to_string))
                        .collect();
                    if names.len() != 2 || pair.len() != 2 {
                        return Err(MeiliError::invalid(400, "invalid_swap_indexes", format!("Invalid value at `[{n}].indexes`: the `indexes` array must contain exactly two index uids.")));
                    }
                    for name in &names {
                        if !valid_index_uid(name) {
                            return Err(invalid_uid(
                                name,
                                &format!("Invalid value at `[{n}].indexes`: "),
                            ));
                        }
                        if seen.contains(name) {
                            return Err(MeiliError::invalid(400, "invalid_swap_duplicate_index_found", format!("Indexes must be declared only once during a swap. `{name}` was specified several times.")));
                        }
                        seen.push(name.clone());
                    }
                    let rename = match item.get("rename") {
                        None | Some(Value::Null) => false,
                        Some(Value::Bool(b)) => *b,
                        Some(other) => {
                            return Err(settings::type_error(
                                "invalid_swap_rename",
                                &format!("[{n}].rename"),
                                "a boolean",
                                other,
                            ))
                        }
                    };
                    swaps.push((names[0].clone(), names[1].clone(), rename));
                }
                Ok(self.enqueue(None, TaskKind::IndexSwap { swaps }, now))
            }
            ["tasks"] => match req.method {
                Get => {
                    let q = tasks::TaskQuery::parse(&params, true)?;
                    Ok(Response::ok(tasks::list(&self.state, &q)))
                }
                Delete => {
                    let q = tasks::TaskQuery::parse(&params, false)?;
                    if !q.has_filters {
                        return Err(MeiliError::invalid(400, "missing_task_filters", "Query parameters to filter the tasks to delete are missing. Available query parameters are: `uids`, `indexUids`, `statuses`, `types`, `canceledBy`, `beforeEnqueuedAt`, `afterEnqueuedAt`, `beforeStartedAt`, `afterStartedAt`, `beforeFinishedAt`, `afterFinishedAt`."));
                    }
                    let matched: Vec<u32> = self
                        .state
                        .tasks
                        .values()
                        .filter(|t| t.status.is_finished() && q.matches(t))
                        .map(|t| t.uid)
                        .collect();
                    Ok(self.enqueue(
                        None,
                        TaskKind::TaskDeletion {
                            query: format!("?{query}"),
                            tasks: matched,
                        },
                        now,
                    ))
                }
                _ => not_allowed(),
            },
            ["tasks", "cancel"] if req.method == Post => {
                let q = tasks::TaskQuery::parse(&params, false)?;
                if !q.has_filters {
                    return Err(MeiliError::invalid(400, "missing_task_filters", "Query parameters to filter the tasks to cancel are missing. Available query parameters are: `uids`, `indexUids`, `statuses`, `types`, `canceledBy`, `beforeEnqueuedAt`, `afterEnqueuedAt`, `beforeStartedAt`, `afterStartedAt`, `beforeFinishedAt`, `afterFinishedAt`."));
                }
                let matched: Vec<u32> = self
                    .state
                    .tasks
                    .values()
                    // a task cancelation is never itself canceled
                    .filter(|t| {
                        matches!(t.status, TaskStatus::Enqueued | TaskStatus::Processing)
                            && !matches!(t.kind, TaskKind::TaskCancelation { .. })
                            && q.matches(t)
                    })
                    .map(|t| t.uid)
                    .collect();
                Ok(self.enqueue(
                    None,
                    TaskKind::TaskCancelation {
                        query: format!("?{query}"),
                        tasks: matched,
                    },
                    now,
                ))
            }
            ["dumps"] if req.method == Post => Ok(self.enqueue(None, TaskKind::DumpCreation, now)),
            ["snapshots"] if req.method == Post => {
                Ok(self.enqueue(None, TaskKind::SnapshotCreation, now))
            }
            ["keys"] => {
                let uid = self.request_key_uid();
                let master = self.master_key.clone();
                keys::route(
                    &mut self.state.keys,
                    master.as_deref(),
                    req,
                    None,
                    &params,
                    &uid,
                    now,
                )
            }
            ["keys", key] => {
                let uid = self.request_key_uid();
                let master = self.master_key.clone();
                keys::route(
                    &mut self.state.keys,
                    master.as_deref(),
                    req,
                    Some(key),
                    &params,
                    &uid,
                    now,
                )
            }
            ["tasks", uid] if req.method == Get => {
                let n: u32 = uid.parse().map_err(|_| MeiliError::invalid(400, "invalid_task_uids", format!("Invalid value in parameter `taskUid`: could not parse `{uid}` as a positive integer")))?;
                let t = self.state.tasks.get(&n).ok_or_else(|| {
                    MeiliError::invalid(404, "task_not_found", format!("Task `{n}` not found."))
                })?;
                Ok(Response::ok(t.to_json()))
            }
            _ => not_found(),
        }
    }

    fn list_indexes(&self, params: &[(String, String)]) -> Result<Response, MeiliError> {
        let (mut offset, mut limit) = (0usize, 20usize);
        for (k, v) in params {
            match k.as_str() {
                "offset" => offset = parse_usize_param(k, "invalid_index_offset", v)?,
                "limit" => limit = parse_usize_param(k, "invalid_index_limit", v)?,
                _ => return Err(unknown_param(k, &["offset", "limit"])),
            }
        }
        let results: Vec<Value> = self
            .state
            .indexes
            .values()
            .skip(offset)
            .take(limit)
            .map(Index::to_json)
            .collect();
        Ok(Response::ok(
            json!({"results": results, "offset": offset, "limit": limit, "total": self.state.indexes.len()}),
        ))
    }

    fn create_index(&mut self, req: &Request, now: Millis) -> Result<Response, MeiliError> {
        let body = json_body(req)?;
        let obj = body
            .as_object()
            .ok_or_else(|| settings::type_error("bad_request", "", "an object", &body))?;
        let mut uid = None;
        let mut pk = None;
        for (k, v) in obj {
            match k.as_str() {
                "uid" => match v {
                    Value::String(s) => uid = Some(s.clone()),
                    _ => {
                        return Err(settings::type_error(
                            "invalid_index_uid",
                            ".uid",
                            "a string",
                            v,
                        ))
                    }
                },
                "primaryKey" => pk = primary_key_value(v)?,
                _ => return Err(unknown_field(k, &["uid", "primaryKey"])),
            }
        }
        let uid = uid
            .ok_or_else(|| MeiliError::invalid(400, "missing_index_uid", "Missing field `uid`"))?;
        if !valid_index_uid(&uid) {
            return Err(invalid_uid(&uid, "Invalid value at `.uid`: "));
        }
        Ok(self.enqueue(Some(&uid), TaskKind::IndexCreation { primary_key: pk }, now))
    }

    fn add_documents(
        &mut self,
        uid: &str,
        req: &Request,
        params: &[(String, String)],
        merge: bool,
        now: Millis,
    ) -> Result<Response, MeiliError> {
        if !valid_index_uid(uid) {
            return Err(invalid_uid(uid, ""));
        }
        let mut pk = None;
        let mut delim = None;
        for (k, v) in params {
            match k.as_str() {
                "primaryKey" => pk = Some(v.clone()),
                "csvDelimiter" => delim = Some(v.clone()),
                "customMetadata" | "skipCreation" => {}
                _ => {
                    return Err(unknown_param(
                        k,
                        &[
                            "primaryKey",
                            "csvDelimiter",
                            "customMetadata",
                            "skipCreation",
                        ],
                    ))
                }
            }
        }
        let docs =
            payload::parse_documents(req.content_type.as_deref(), &req.body, delim.as_deref())?;
        Ok(self.enqueue(
            Some(uid),
            TaskKind::DocumentAdditionOrUpdate {
                documents: docs,
                primary_key: pk,
                merge,
            },
            now,
        ))
    }

    fn get_documents(
        &self,
        uid: &str,
        params: &[(String, String)],
        body: Option<&Value>,
    ) -> Result<Response, MeiliError> {
        let (mut offset, mut limit) = (0usize, 20usize);
        let mut fields: Option<Vec<String>> = None;
        let mut filter_v = Value::Null;
        let mut ids: Option<Vec<String>> = None;
        const EXPECTED: &[&str] = &[
            "offset",
            "limit",
            "fields",
            "retrieveVectors",
            "filter",
            "ids",
            "sort",
        ];
        match body {
            None => {
                for (k, v) in params {
                    match k.as_str() {
                        "offset" => offset = parse_usize_param(k, "invalid_document_offset", v)?,
                        "limit" => limit = parse_usize_param(k, "invalid_document_limit", v)?,
                        "fields" => fields = Some(split_fields(v)),
                        "filter" => filter_v = Value::String(v.clone()),
                        "ids" => ids = Some(split_fields(v)),
                        "retrieveVectors" => {}
                        _ => return Err(unknown_param(k, EXPECTED)),
                    }
                }
            }
            Some(b) => {
                let obj = b
                    .as_object()
                    .ok_or_else(|| settings::type_error("bad_request", "", "an object", b))?;
                for (k, v) in obj {
                    match k.as_str() {
                        "offset" => {
                            offset = v.as_u64().ok_or_else(|| {
                                settings::type_error(
                                    "invalid_document_offset",
                                    ".offset",
                                    "a positive integer",
                                    v,
                                )
                            })? as usize
                        }
                        "limit" => {
                            limit = v.as_u64().ok_or_else(|| {
                                settings::type_error(
                                    "invalid_document_limit",
                                    ".limit",
                                    "a positive integer",
                                    v,
                                )
                            })? as usize
                        }
                        "fields" => {
                            if !v.is_null() {
                                let a = v.as_array().ok_or_else(|| {
                                    settings::type_error(
                                        "invalid_document_fields",
                                        ".fields",
                                        "an array",
                                        v,
                                    )
                                })?;
                                fields = Some(
                                    a.iter()
                                        .filter_map(|x| x.as_str().map(str::to_string))
                                        .collect(),
                                );
                            }
                        }
                        "filter" => filter_v = v.clone(),
                        "ids" => {
                            if !v.is_null() {
                                let a = v.as_array().ok_or_else(|| {
                                    settings::type_error(
                                        "invalid_document_ids",
                                        ".ids",
                                        "an array",
                                        v,
                                    )
                                })?;
                                ids = Some(
                                    a.iter()
                                        .map(|x| {
                                            x.as_str()
                                                .map(str::to_string)
                                                .unwrap_or_else(|| x.to_string())
                                        })
                                        .collect(),
                                );
                            }
                        }
                        "retrieveVectors" => {}
                        _ => return Err(unknown_field(k, EXPECTED)),
                    }
                }
            }
        }
        let i = self.index(uid)?;
        let parsed = match filter::parse_value(&filter_v) {
            Ok(p) => p,
            Err(filter::FilterValueError::Parse(e)) => {
                return Err(MeiliError::invalid(
                    400,
                    "invalid_document_filter",
                    e.message,
                ))
            }
            Err(filter::FilterValueError::BadType(m)) => {
                return Err(MeiliError::invalid(400, "invalid_document_filter", m))
            }
        };
        if let Some(p) = &parsed {
            if let Some(nf) = p.first_not_filterable(&i.settings.filterable()) {
                return Err(i.not_filterable_error("invalid_document_filter", &nf, false, false));
            }
        }
        let wanted: Option<Vec<u32>> = ids.map(|l| {
            l.iter()
                .filter_map(|e| i.external.get(e).copied())
                .collect()
        });
        let matching: Vec<(&u32, &payload::Document)> = i
            .docs
            .iter()
            .filter(|(id, d)| {
                wanted.as_ref().is_none_or(|w| w.contains(id))
                    && parsed.as_ref().is_none_or(|p| p.matches(d))
            })
            .collect();
        let results: Vec<Value> = matching
            .iter()
            .skip(offset)
            .take(limit)
            .map(|(_, d)| Value::Object(project(i, d, fields.as_deref())))
            .collect();
        Ok(Response::ok(
            json!({"results": results, "offset": offset, "limit": limit, "total": matching.len()}),
        ))
    }

    fn multi_search(&self, body: &Value) -> Result<Response, MeiliError> {
        let obj = body
            .as_object()
            .ok_or_else(|| settings::type_error("bad_request", "", "an object", body))?;
        for k in obj.keys() {
            if k != "queries" && k != "federation" {
                return Err(unknown_field(k, &["queries", "federation"]));
            }
        }
        let queries = obj
            .get("queries")
            .and_then(Value::as_array)
            .ok_or_else(|| {
                MeiliError::invalid(
                    400,
                    "missing_multi_search_queries",
                    "Missing field `queries`",
                )
            })?;
        let federation = obj.get("federation").filter(|f| !f.is_null());
        let mut parsed = Vec::new();
        for (n, q) in queries.iter().enumerate() {
            let uid = q.get("indexUid").and_then(Value::as_str).ok_or_else(|| {
                MeiliError::invalid(
                    400,
                    "missing_index_uid",
                    format!("Missing field `indexUid` inside `.queries[{n}]`"),
                )
            })?;
            let mut body = q.clone();
            let mut weight = 1.0;
            if let Some(o) = body.as_object_mut() {
                o.remove("indexUid");
                if let Some(fo) = o.remove("federationOptions") {
                    weight = fo.get("weight").and_then(Value::as_f64).unwrap_or(1.0);
                }
            }
            let sq = SearchQuery::from_json(&body, &[]).map_err(|e| {
                MeiliError::new(
                    e.status,
                    e.code.clone(),
                    e.error_type,
                    format!("Inside `.queries[{n}]`: {}", e.message),
                )
            })?;
            let index = self.index(uid).map_err(|e| {
                MeiliError::new(
                    e.status,
                    e.code.clone(),
                    e.error_type,
                    format!("Inside `.queries[{n}]`: {}", e.message),
                )
            })?;
            parsed.push((uid.to_string(), index, sq, weight));
        }
        match federation {
            None => {
                let mut results = Vec::new();
                for (n, (uid, index, sq, _)) in parsed.iter().enumerate() {
                    let mut r = search::search(index, sq).map_err(|e| {
                        MeiliError::new(
                            e.status,
                            e.code.clone(),
                            e.error_type,
                            format!("Inside `.queries[{n}]`: {}", e.message),
                        )
                    })?;
                    if let Some(o) = r.as_object_mut() {
                        o.insert("indexUid".into(), Value::String(uid.clone()));
                        o.insert("requestUid".into(), Value::String(self.request_uid()));
                    }
                    results.push(r);
                }
                Ok(Response::ok(json!({"results": results})))
            }
            Some(f) => {
                let offset = f.get("offset").and_then(Value::as_u64).unwrap_or(0) as usize;
                let limit = f.get("limit").and_then(Value::as_u64).unwrap_or(20) as usize;
                let mut all: Vec<(f64, usize, usize, String, u32, Value)> = Vec::new();
                for (n, (uid, index, sq, weight)) in parsed.iter().enumerate() {
                    let ranked = search::ranked_ids(index, sq).map_err(|e| {
                        MeiliError::new(
                            e.status,
                            e.code.clone(),
                            e.error_type,
                            format!("Inside `.queries[{n}]`: {}", e.message),
                        )
                    })?;
                    for (pos, (id, score, hit)) in ranked.into_iter().enumerate() {
                        all.push((score * weight, n, pos, uid.clone(), id, hit));
                    }
                }
                all.sort_by(|a, b| {
                    b.0.partial_cmp(&a.0)
                        .unwrap_or(std::cmp::Ordering::Equal)
                        .then(a.1.cmp(&b.1))
                        .then(a.2.cmp(&b.2))
                });
                let mut seen: Vec<(String, u32)> = Vec::new();
                all.retain(|h| {
                    let key = (h.3.clone(), h.4);
                    if seen.contains(&key) {
                        false
                    } else {
                        seen.push(key);
                        true
                    }
                });
                let total = all.len();
                let hits: Vec<Value> = all
                    .into_iter()
                    .skip(offset)
                    .take(limit)
                    .map(|(score, n, _, uid, _, mut hit)| {
                        if let Some(o) = hit.as_object_mut() {
                            o.insert("_federation".into(), json!({"indexUid": uid, "queriesPosition": n, "weightedRankingScore": score}));
                        }
                        hit
                    })
                    .collect();
                Ok(Response::ok(
                    json!({"hits": hits, "processingTimeMs": 0, "limit": limit, "offset": offset, "estimatedTotalHits": total, "requestUid": self.request_uid()}),
                ))
            }
        }
    }
}

fn split_fields(v: &str) -> Vec<String> {
    v.split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

/// A document restricted to the displayed attributes and the requested `fields`.
fn project(
    index: &Index,
    doc: &payload::Document,
    fields: Option<&[String]>,
) -> Map<String, Value> {
    let displayed = index.settings.displayed();
    doc.iter()
        .filter(|(k, _)| {
            displayed
                .as_ref()
                .is_none_or(|d| d.iter().any(|x| filter::pattern_matches(x, k)))
        })
        .filter(|(k, _)| fields.is_none_or(|f| f.iter().any(|x| filter::pattern_matches(x, k))))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}
