//! The `/keys` routes of the node model: Meilisearch's API keys.
//!
//! States: the node's key list ([`NodeState::keys`](super::NodeState), in creation order). Transitions:
//! `POST /keys` appends a key (201), `PATCH /keys/{key}` changes its `name`/`description` (200),
//! `DELETE /keys/{key}` removes it (204); `GET` reads. A key is addressed by its `uid` or by its value.
//!
//! Invariants: the key value is a pure function of the key's `uid` and the node's master key, as in
//! Meilisearch (where it is the hex HMAC-SHA256 of the uid under the master key): two nodes with the same
//! master key give a key created with the same `uid` the same value. The model derives it with xxh3
//! instead of HMAC-SHA256 (no crypto dependency), so its values differ from a real node's but keep that
//! property. Without a master key every `/keys` route answers `missing_master_key`, as Meilisearch does.
//!
//! A `POST /keys` without `uid` gets a uid derived from the node's request counter (the model draws no
//! randomness), where Meilisearch draws a random uuid v4.
//!
//! Simplifications: no default admin/search keys are created at start (a real node creates two, with
//! random uids that differ per node); `expiresAt` must be `null` or a string and is echoed as given (it
//! is not parsed nor checked to be in the future); index patterns are not validated beyond being strings.

use super::time::rfc3339;
use super::{json_body, parse_usize_param, unknown_param, Request, Response};
use miroir_core::{ErrorType, MeiliError, Millis};
use serde_json::{json, Map, Value};

/// The actions Meilisearch accepts in a key's `actions`.
pub const ACTIONS: &[&str] = &[
    "*",
    "search",
    "documents.*",
    "documents.add",
    "documents.get",
    "documents.delete",
    "indexes.*",
    "indexes.create",
    "indexes.get",
    "indexes.update",
    "indexes.delete",
    "indexes.swap",
    "tasks.*",
    "tasks.cancel",
    "tasks.delete",
    "tasks.get",
    "settings.*",
    "settings.get",
    "settings.update",
    "stats.*",
    "stats.get",
    "metrics.*",
    "metrics.get",
    "dumps.*",
    "dumps.create",
    "snapshots.*",
    "snapshots.create",
    "version",
    "keys.create",
    "keys.get",
    "keys.update",
    "keys.delete",
    "experimental.get",
    "experimental.update",
    "network.get",
    "network.update",
];

/// One API key as a node stores it.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiKey {
    /// The key's uuid.
    pub uid: String,
    /// The key value (derived from `uid` and the master key).
    pub key: String,
    /// Optional name.
    pub name: Option<String>,
    /// Optional description.
    pub description: Option<String>,
    /// Allowed actions.
    pub actions: Vec<String>,
    /// Allowed index patterns.
    pub indexes: Vec<String>,
    /// Expiry date as given, or `None`.
    pub expires_at: Option<String>,
    /// Creation time.
    pub created_at: Millis,
    /// Last update time.
    pub updated_at: Millis,
}

impl ApiKey {
    /// The key object as Meilisearch prints it.
    pub fn to_json(&self) -> Value {
        json!({
            "name": self.name,
            "description": self.description,
            "key": self.key,
            "uid": self.uid,
            "actions": self.actions,
            "indexes": self.indexes,
            "expiresAt": self.expires_at,
            "createdAt": rfc3339(self.created_at),
            "updatedAt": rfc3339(self.updated_at),
        })
    }
}

/// The key value of `uid` on a node whose master key is `master_key`: 64 hex characters, a pure function
/// of both (see the module documentation).
pub fn derive_key(uid: &str, master_key: &str) -> String {
    let a = xxhash_rust::xxh3::xxh3_128(format!("{master_key}\u{0}{uid}").as_bytes());
    let b = xxhash_rust::xxh3::xxh3_128(format!("{uid}\u{0}{master_key}").as_bytes());
    format!("{a:032x}{b:032x}")
}

/// Whether `s` is a hyphenated uuid (`8-4-4-4-12` hex digits).
pub fn is_uuid(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.len() == 5
        && parts
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(p, n)| p.len() == n && p.bytes().all(|b| b.is_ascii_hexdigit()))
}

fn missing_master_key() -> MeiliError {
    MeiliError::new(
        401,
        "missing_master_key",
        ErrorType::Auth,
        "Meilisearch is running without a master key. To access this API endpoint, you must have set a master key at launch.",
    )
}

/// 404 `api_key_not_found`.
pub fn key_not_found(key: &str) -> MeiliError {
    MeiliError::invalid(
        404,
        "api_key_not_found",
        format!("API key `{key}` not found."),
    )
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn type_error(code: &str, field: &str, expected: &str, v: &Value) -> MeiliError {
    MeiliError::invalid(
        400,
        code,
        format!(
            "Invalid value type at `.{field}`: expected {expected}, but found {}: `{v}`",
            kind(v)
        ),
    )
}

fn optional_string(code: &str, field: &str, v: &Value) -> Result<Option<String>, MeiliError> {
    match v {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(s.clone())),
        other => Err(type_error(code, field, "a string", other)),
    }
}

fn string_list(code: &str, field: &str, v: &Value) -> Result<Vec<String>, MeiliError> {
    let Value::Array(items) = v else {
        return Err(type_error(code, field, "an array", v));
    };
    items
        .iter()
        .enumerate()
        .map(|(i, item)| match item {
            Value::String(s) => Ok(s.clone()),
            other => Err(type_error(
                code,
                &format!("{field}[{i}]"),
                "a string",
                other,
            )),
        })
        .collect()
}

fn body_object(req: &Request) -> Result<Map<String, Value>, MeiliError> {
    match json_body(req)? {
        Value::Object(m) => Ok(m),
        other => Err(MeiliError::invalid(
            400,
            "bad_request",
            format!(
                "Invalid value type: expected an object, but found {}: `{other}`",
                kind(&other)
            ),
        )),
    }
}

const CREATE_FIELDS: &[&str] = &[
    "description",
    "name",
    "uid",
    "actions",
    "indexes",
    "expiresAt",
];

fn expected_list(fields: &[&str]) -> String {
    fields
        .iter()
        .map(|f| format!("`{f}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The `/keys` and `/keys/{key}` routes.
pub fn route(
    keys: &mut Vec<ApiKey>,
    master_key: Option<&str>,
    req: &Request,
    target: Option<&str>,
    params: &[(String, String)],
    fallback_uid: &str,
    now: Millis,
) -> Result<Response, MeiliError> {
    let Some(master) = master_key else {
        return Err(missing_master_key());
    };
    use super::Method::*;
    match (target, req.method) {
        (None, Get) => list(keys, params),
        (None, Post) => create(keys, master, req, fallback_uid, now),
        (Some(k), Get) => Ok(Response {
            status: 200,
            body: keys[find(keys, k)?].to_json(),
        }),
        (Some(k), Patch) => update(keys, k, req, now),
        (Some(k), Delete) => {
            let i = find(keys, k)?;
            keys.remove(i);
            Ok(Response {
                status: 204,
                body: Value::Null,
            })
        }
        _ => Ok(Response {
            status: 405,
            body: Value::Null,
        }),
    }
}

fn find(keys: &[ApiKey], k: &str) -> Result<usize, MeiliError> {
    keys.iter()
        .position(|key| key.uid == k || key.key == k)
        .ok_or_else(|| key_not_found(k))
}

fn list(keys: &[ApiKey], params: &[(String, String)]) -> Result<Response, MeiliError> {
    let (mut offset, mut limit) = (0, 20);
    for (k, v) in params {
        match k.as_str() {
            "offset" => offset = parse_usize_param(k, "invalid_api_key_offset", v)?,
            "limit" => limit = parse_usize_param(k, "invalid_api_key_limit", v)?,
            _ => return Err(unknown_param(k, &["offset", "limit"])),
        }
    }
    // Newest first, as Meilisearch lists them.
    let results: Vec<Value> = keys
        .iter()
        .rev()
        .skip(offset)
        .take(limit)
        .map(ApiKey::to_json)
        .collect();
    Ok(Response {
        status: 200,
        body: json!({"results": results, "offset": offset, "limit": limit, "total": keys.len()}),
    })
}

fn create(
    keys: &mut Vec<ApiKey>,
    master: &str,
    req: &Request,
    fallback_uid: &str,
    now: Millis,
) -> Result<Response, MeiliError> {
    let body = body_object(req)?;
    for k in body.keys() {
        if !CREATE_FIELDS.contains(&k.as_str()) {
            return Err(MeiliError::invalid(
                400,
                "bad_request",
                format!(
                    "Unknown field `{k}`: expected one of {}",
                    expected_list(CREATE_FIELDS)
                ),
            ));
        }
    }
    let description = match body.get("description") {
        Some(v) => optional_string("invalid_api_key_description", "description", v)?,
        None => None,
    };
    let name = match body.get("name") {
        Some(v) => optional_string("invalid_api_key_name", "name", v)?,
        None => None,
    };
    let uid = match body.get("uid") {
        None => fallback_uid.to_string(),
        Some(Value::String(s)) if is_uuid(s) => s.to_ascii_lowercase(),
        Some(Value::String(s)) => {
            return Err(MeiliError::invalid(
                400,
                "invalid_api_key_uid",
                format!("Invalid value at `.uid`: `{s}` is not a valid uuid"),
            ))
        }
        Some(other) => return Err(type_error("invalid_api_key_uid", "uid", "a string", other)),
    };
    let actions = match body.get("actions") {
        None => {
            return Err(MeiliError::invalid(
                400,
                "missing_api_key_actions",
                "Missing field `actions`",
            ))
        }
        Some(v) => string_list("invalid_api_key_actions", "actions", v)?,
    };
    for (i, a) in actions.iter().enumerate() {
        if !ACTIONS.contains(&a.as_str()) {
            return Err(MeiliError::invalid(
                400,
                "invalid_api_key_actions",
                format!(
                    "Unknown value `{a}` at `.actions[{i}]`: expected one of {}",
                    expected_list(ACTIONS)
                ),
            ));
        }
    }
    let indexes = match body.get("indexes") {
        None => {
            return Err(MeiliError::invalid(
                400,
                "missing_api_key_indexes",
                "Missing field `indexes`",
            ))
        }
        Some(v) => string_list("invalid_api_key_indexes", "indexes", v)?,
    };
    let expires_at = match body.get("expiresAt") {
        None => {
            return Err(MeiliError::invalid(
                400,
                "missing_api_key_expires_at",
                "Missing field `expiresAt`",
            ))
        }
        Some(v) => optional_string("invalid_api_key_expires_at", "expiresAt", v)?,
    };
    if keys.iter().any(|k| k.uid == uid) {
        return Err(MeiliError::invalid(
            409,
            "api_key_already_exists",
            format!("`uid` field value `{uid}` is already an existing API key."),
        ));
    }
    let key = ApiKey {
        key: derive_key(&uid, master),
        uid,
        name,
        description,
        actions,
        indexes,
        expires_at,
        created_at: now,
        updated_at: now,
    };
    let body = key.to_json();
    keys.push(key);
    Ok(Response { status: 201, body })
}

fn update(
    keys: &mut [ApiKey],
    target: &str,
    req: &Request,
    now: Millis,
) -> Result<Response, MeiliError> {
    let i = find(keys, target)?;
    let body = body_object(req)?;
    let mut name = None;
    let mut description = None;
    for (k, v) in &body {
        match k.as_str() {
            "name" => name = Some(optional_string("invalid_api_key_name", "name", v)?),
            "description" => {
                description = Some(optional_string(
                    "invalid_api_key_description",
                    "description",
                    v,
                )?)
            }
            "uid" | "actions" | "indexes" | "expiresAt" | "createdAt" | "updatedAt" => {
                return Err(MeiliError::invalid(
                    400,
                    format!("immutable_api_key_{}", super::settings::snake(k)),
                    format!("Immutable field `{k}`: expected one of `description`, `name`"),
                ))
            }
            _ => {
                return Err(MeiliError::invalid(
                    400,
                    "bad_request",
                    format!("Unknown field `{k}`: expected one of `description`, `name`"),
                ))
            }
        }
    }
    let key = &mut keys[i];
    if let Some(n) = name {
        key.name = n;
    }
    if let Some(d) = description {
        key.description = d;
    }
    key.updated_at = now;
    Ok(Response {
        status: 200,
        body: key.to_json(),
    })
}

#[cfg(test)]
mod tests {
    use super::super::{Method, Node, Request};
    use super::*;

    const UID: &str = "01b4bc42-eb33-4041-b481-254d00cce834";

    fn create_body() -> Value {
        json!({"uid": UID, "name": "n", "actions": ["search"], "indexes": ["movies"], "expiresAt": null})
    }

    #[test]
    fn identical_uid_and_master_key_give_identical_keys() {
        let mut a = Node::new(Some("master"));
        let mut b = Node::new(Some("master"));
        let ra = a.handle(
            Request::json(Method::Post, "/keys", &create_body()).bearer("master"),
            1,
        );
        let rb = b.handle(
            Request::json(Method::Post, "/keys", &create_body()).bearer("master"),
            2,
        );
        assert_eq!((ra.status, rb.status), (201, 201));
        assert_eq!(ra.body["key"], rb.body["key"]);
        assert_eq!(ra.body["key"].as_str().unwrap().len(), 64);
        assert_ne!(derive_key(UID, "master"), derive_key(UID, "other"));
        assert_eq!(ra.body["uid"], UID);
        assert_eq!(ra.body["actions"], json!(["search"]));
        assert_eq!(ra.body["description"], Value::Null);
    }

    #[test]
    fn crud_by_uid_and_by_key() {
        let mut n = Node::new(Some("m"));
        let created = n.handle(
            Request::json(Method::Post, "/keys", &create_body()).bearer("m"),
            1,
        );
        let key = created.body["key"].as_str().unwrap().to_string();
        let dup = n.handle(
            Request::json(Method::Post, "/keys", &create_body()).bearer("m"),
            1,
        );
        assert_eq!(
            (dup.status, dup.body["code"].as_str()),
            (409, Some("api_key_already_exists"))
        );
        let got = n.handle(Request::get(&format!("/keys/{key}")).bearer("m"), 2);
        assert_eq!(got.body, created.body);
        let patched = n.handle(
            Request::json(
                Method::Patch,
                &format!("/keys/{UID}"),
                &json!({"description": "d"}),
            )
            .bearer("m"),
            5,
        );
        assert_eq!(patched.status, 200);
        assert_eq!(patched.body["description"], "d");
        assert_eq!(patched.body["name"], "n");
        assert_ne!(patched.body["updatedAt"], created.body["updatedAt"]);
        let immutable = n.handle(
            Request::json(
                Method::Patch,
                &format!("/keys/{UID}"),
                &json!({"actions": []}),
            )
            .bearer("m"),
            5,
        );
        assert_eq!(immutable.body["code"], "immutable_api_key_actions");
        let list = n.handle(Request::get("/keys?limit=1").bearer("m"), 6);
        assert_eq!(
            (list.body["total"].clone(), list.body["limit"].clone()),
            (json!(1), json!(1))
        );
        let del = n.handle(Request::delete(&format!("/keys/{key}")).bearer("m"), 7);
        assert_eq!(del.status, 204);
        let gone = n.handle(Request::get(&format!("/keys/{UID}")).bearer("m"), 8);
        assert_eq!(gone.status, 404);
        assert_eq!(gone.body["code"], "api_key_not_found");
        assert_eq!(gone.body["message"], format!("API key `{UID}` not found."));
    }

    #[test]
    fn validation_errors() {
        let mut n = Node::new(Some("m"));
        let post = |n: &mut Node, b: Value| {
            n.handle(Request::json(Method::Post, "/keys", &b).bearer("m"), 1)
                .body["code"]
                .as_str()
                .unwrap_or("")
                .to_string()
        };
        assert_eq!(
            post(
                &mut n,
                json!({"uid": UID, "indexes": [], "expiresAt": null})
            ),
            "missing_api_key_actions"
        );
        assert_eq!(
            post(
                &mut n,
                json!({"uid": UID, "actions": [], "expiresAt": null})
            ),
            "missing_api_key_indexes"
        );
        assert_eq!(
            post(&mut n, json!({"uid": UID, "actions": [], "indexes": []})),
            "missing_api_key_expires_at"
        );
        assert_eq!(
            post(
                &mut n,
                json!({"uid": "x", "actions": [], "indexes": [], "expiresAt": null})
            ),
            "invalid_api_key_uid"
        );
        assert_eq!(
            post(
                &mut n,
                json!({"uid": UID, "actions": ["fly"], "indexes": [], "expiresAt": null})
            ),
            "invalid_api_key_actions"
        );
        assert_eq!(
            post(
                &mut n,
                json!({"uid": UID, "actions": [], "indexes": [1], "expiresAt": null})
            ),
            "invalid_api_key_indexes"
        );
        assert_eq!(
            post(
                &mut n,
                json!({"uid": UID, "actions": [], "indexes": [], "expiresAt": 3})
            ),
            "invalid_api_key_expires_at"
        );
        assert_eq!(
            post(
                &mut n,
                json!({"uid": UID, "actions": [], "indexes": [], "expiresAt": null, "name": 1})
            ),
            "invalid_api_key_name"
        );
        assert_eq!(post(&mut n, json!({"nope": 1})), "bad_request");
        let bad_limit = n.handle(Request::get("/keys?limit=x").bearer("m"), 1);
        assert_eq!(bad_limit.body["code"], "invalid_api_key_limit");
        let open = Node::new(None).handle(Request::get("/keys"), 1);
        assert_eq!(
            (open.status, open.body["code"].as_str()),
            (401, Some("missing_master_key"))
        );
    }
}
