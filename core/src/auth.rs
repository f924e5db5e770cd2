//! API keys and tenant tokens: who may do what, decided the way Meilisearch decides it.
//!
//! Every node holds the same keys (`/keys` is broadcast with identical uids, and all nodes share one node
//! master key, so a key's value is identical everywhere). The proxy keeps a [`KeyRing`] read from a node and
//! answers every client request with [`authorize`], before anything reaches a node. The result is an
//! [`Access`]: full (the master key, or a proxy running without one) or [`Scoped`] by an API key and,
//! for searches, a tenant token's search rules.
//!
//! States: none, these are pure functions of (configured master key, key ring, bearer token, route action,
//! route index, `now`).
//!
//! Invariants, all Meilisearch's (`extractors/authentication`, `meilisearch-auth`):
//! - the master key opens everything; an API key opens exactly the actions its `actions` grant (with the
//!   wildcards `*`, `*.get` and `<group>.*` expanded as Meilisearch expands them) on the indexes its
//!   `indexes` patterns match (`*`, exact uids, `prefix*`), until `expiresAt`;
//! - a route that names an index checks it; a route that does not (`GET /indexes`, `GET /tasks`,
//!   `GET /stats`, `POST /multi-search`, swaps) is allowed to an index-scoped key only for the actions
//!   whose route filters by index itself ([`Action::route_checks_index`]), and the route must then apply
//!   [`Scoped::is_index_authorized`] to what it returns or does;
//! - a tenant token is only considered for `search`; it is a JWT (HS256/384/512) signed with the value of
//!   the API key named by its `apiKeyUid`, whose own permissions and expiry still apply; its `searchRules`
//!   narrow the indexes and add filters ([`Scoped::search_filter`]);
//! - errors are Meilisearch's, word for word: 401 `missing_authorization_header`, 403 `invalid_api_key`
//!   with the messages of each case; a key value never appears in an error.

use std::collections::BTreeMap;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::{Sha256, Sha384, Sha512};

use crate::error::{ErrorType, MeiliError};
use crate::tasks::time::parse_rfc3339;
use crate::Millis;

/// One permission a route needs, named as in an API key's `actions`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// `search`
    Search,
    /// `documents.add`
    DocumentsAdd,
    /// `documents.get`
    DocumentsGet,
    /// `documents.delete`
    DocumentsDelete,
    /// `indexes.create`
    IndexesCreate,
    /// `indexes.get`
    IndexesGet,
    /// `indexes.update`
    IndexesUpdate,
    /// `indexes.delete`
    IndexesDelete,
    /// `indexes.swap`
    IndexesSwap,
    /// `indexes.compact`
    IndexesCompact,
    /// `tasks.cancel`
    TasksCancel,
    /// `tasks.delete`
    TasksDelete,
    /// `tasks.get`
    TasksGet,
    /// `tasks.compact`
    TasksCompact,
    /// `settings.get`
    SettingsGet,
    /// `settings.update`
    SettingsUpdate,
    /// `stats.get`
    StatsGet,
    /// `metrics.get`
    MetricsGet,
    /// `dumps.create`
    DumpsCreate,
    /// `snapshots.create`
    SnapshotsCreate,
    /// `version`
    Version,
    /// `keys.create`
    KeysCreate,
    /// `keys.get`
    KeysGet,
    /// `keys.update`
    KeysUpdate,
    /// `keys.delete`
    KeysDelete,
    /// `experimental.get`
    ExperimentalGet,
    /// `experimental.update`
    ExperimentalUpdate,
    /// `export`
    Export,
    /// `network.get`
    NetworkGet,
    /// `network.update`
    NetworkUpdate,
    /// `chatCompletions`
    ChatCompletions,
    /// `webhooks.get`
    WebhooksGet,
    /// `webhooks.update`
    WebhooksUpdate,
    /// `webhooks.delete`
    WebhooksDelete,
    /// `webhooks.create`
    WebhooksCreate,
    /// `fields.post`
    FieldsPost,
}

/// How an action relates to index-scoped keys (Meilisearch's `IndexScope`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scope {
    /// Global; an index-scoped key never opens it.
    Deny,
    /// Global, but the route filters what it returns by the key's indexes.
    RouteChecks,
    /// Always on one index named by the route.
    Controller,
}

impl Action {
    /// The name in an API key's `actions`.
    pub fn name(self) -> &'static str {
        use Action::*;
        match self {
            Search => "search",
            DocumentsAdd => "documents.add",
            DocumentsGet => "documents.get",
            DocumentsDelete => "documents.delete",
            IndexesCreate => "indexes.create",
            IndexesGet => "indexes.get",
            IndexesUpdate => "indexes.update",
            IndexesDelete => "indexes.delete",
            IndexesSwap => "indexes.swap",
            IndexesCompact => "indexes.compact",
            TasksCancel => "tasks.cancel",
            TasksDelete => "tasks.delete",
            TasksGet => "tasks.get",
            TasksCompact => "tasks.compact",
            SettingsGet => "settings.get",
            SettingsUpdate => "settings.update",
            StatsGet => "stats.get",
            MetricsGet => "metrics.get",
            DumpsCreate => "dumps.create",
            SnapshotsCreate => "snapshots.create",
            Version => "version",
            KeysCreate => "keys.create",
            KeysGet => "keys.get",
            KeysUpdate => "keys.update",
            KeysDelete => "keys.delete",
            ExperimentalGet => "experimental.get",
            ExperimentalUpdate => "experimental.update",
            Export => "export",
            NetworkGet => "network.get",
            NetworkUpdate => "network.update",
            ChatCompletions => "chatCompletions",
            WebhooksGet => "webhooks.get",
            WebhooksUpdate => "webhooks.update",
            WebhooksDelete => "webhooks.delete",
            WebhooksCreate => "webhooks.create",
            FieldsPost => "fields.post",
        }
    }

    /// Whether `*.get` grants it (Meilisearch's `is_read`; `keys.get` is excluded on purpose there).
    pub fn is_read(self) -> bool {
        use Action::*;
        matches!(
            self,
            Search
                | DocumentsGet
                | Export
                | IndexesGet
                | TasksGet
                | SettingsGet
                | StatsGet
                | MetricsGet
                | Version
                | ExperimentalGet
                | NetworkGet
                | WebhooksGet
                | FieldsPost
        )
    }

    /// The `<group>.*` wildcard that grants it, if any.
    fn group(self) -> Option<&'static str> {
        use Action::*;
        Some(match self {
            DocumentsAdd | DocumentsGet | DocumentsDelete => "documents.*",
            IndexesCreate | IndexesGet | IndexesUpdate | IndexesDelete | IndexesSwap
            | IndexesCompact => "indexes.*",
            TasksCancel | TasksDelete | TasksGet | TasksCompact => "tasks.*",
            SettingsGet | SettingsUpdate => "settings.*",
            StatsGet => "stats.*",
            MetricsGet => "metrics.*",
            DumpsCreate => "dumps.*",
            SnapshotsCreate => "snapshots.*",
            WebhooksGet | WebhooksUpdate | WebhooksDelete | WebhooksCreate => "webhooks.*",
            _ => return None,
        })
    }

    fn scope(self) -> Scope {
        use Action::*;
        match self {
            DocumentsGet | Search | IndexesCreate | IndexesGet | IndexesSwap | TasksCancel
            | TasksDelete | TasksGet | SettingsGet | StatsGet | ChatCompletions => {
                Scope::RouteChecks
            }
            DocumentsAdd | DocumentsDelete | IndexesUpdate | IndexesDelete | IndexesCompact
            | FieldsPost | SettingsUpdate => Scope::Controller,
            _ => Scope::Deny,
        }
    }

    /// Whether an index-scoped key may use this action on a route that names no index (the route then
    /// filters by [`Scoped::is_index_authorized`] itself).
    pub fn route_checks_index(self) -> bool {
        self.scope() == Scope::RouteChecks
    }

    /// Whether one entry of a key's `actions` grants this action.
    pub fn granted_by(self, entry: &str) -> bool {
        entry == "*"
            || entry == self.name()
            || (entry == "*.get" && self.is_read())
            || self.group() == Some(entry)
    }
}

/// An index uid pattern of a key or a tenant token: `*`, an exact uid, or `prefix*`.
pub fn pattern_matches(pattern: &str, index: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => index.starts_with(prefix),
        None => pattern == index,
    }
}

/// One API key as a node lists it in `GET /keys`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKey {
    /// `uid`.
    pub uid: String,
    /// `key`: the value clients send.
    pub key: String,
    /// `actions`, as stored.
    pub actions: Vec<String>,
    /// `indexes` patterns, as stored.
    pub indexes: Vec<String>,
    /// `expiresAt` in milliseconds since the epoch (`None` = never).
    pub expires_at: Option<Millis>,
}

impl ApiKey {
    /// Reads one entry of `GET /keys` `results`; `None` when it lacks `uid` or `key`. An `expiresAt` that
    /// cannot be read makes the key already expired (never more permissive than the node).
    pub fn from_json(v: &Value) -> Option<ApiKey> {
        let strings = |field: &str| -> Vec<String> {
            v.get(field)
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default()
        };
        let expires_at = match v.get("expiresAt") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(
                parse_rfc3339(s)
                    .map(|ns| ns.div_euclid(1_000_000).clamp(0, i128::from(u64::MAX)) as u64)
                    .unwrap_or(0),
            ),
            Some(_) => Some(0),
        };
        Some(ApiKey {
            uid: v.get("uid")?.as_str()?.to_string(),
            key: v.get("key")?.as_str()?.to_string(),
            actions: strings("actions"),
            indexes: strings("indexes"),
            expires_at,
        })
    }

    fn unrestricted(&self) -> bool {
        self.indexes.iter().any(|p| p == "*")
    }

    fn index_authorized(&self, index: &str) -> bool {
        self.indexes.iter().any(|p| pattern_matches(p, index))
    }

    /// Meilisearch's `is_key_authorized`: the action is granted, on `index` (or on no index for a route
    /// that checks indexes itself), and the key has not expired at `now`.
    pub fn allows(&self, action: Action, index: Option<&str>, now: Millis) -> bool {
        if !self.actions.iter().any(|a| action.granted_by(a)) {
            return false;
        }
        let scoped_ok = self.unrestricted()
            || match index {
                Some(index) => self.index_authorized(index),
                None => action.route_checks_index() && !self.indexes.is_empty(),
            };
        scoped_ok && self.expires_at.is_none_or(|exp| now < exp)
    }
}

/// The keys every node holds, as last read from one of them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyRing {
    keys: Vec<ApiKey>,
}

impl KeyRing {
    /// A ring of these keys.
    pub fn new(keys: Vec<ApiKey>) -> KeyRing {
        KeyRing { keys }
    }

    /// From a node's `GET /keys` answer (`results`); entries it cannot read are skipped.
    pub fn from_list(body: &Value) -> KeyRing {
        let keys = body
            .get("results")
            .and_then(Value::as_array)
            .map(|r| r.iter().filter_map(ApiKey::from_json).collect())
            .unwrap_or_default();
        KeyRing { keys }
    }

    /// How many keys it holds.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether it holds no key.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The key whose value is `token`; every key is compared in constant time.
    pub fn by_value(&self, token: &str) -> Option<&ApiKey> {
        let mut found = None;
        for k in &self.keys {
            if constant_time_eq(k.key.as_bytes(), token.as_bytes()) {
                found = Some(k);
            }
        }
        found
    }

    /// The key with this uid.
    pub fn by_uid(&self, uid: &str) -> Option<&ApiKey> {
        self.keys.iter().find(|k| k.uid.eq_ignore_ascii_case(uid))
    }
}

/// Byte equality whose time depends on the lengths only.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A tenant token's `searchRules`: the indexes it opens, each with an optional filter.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchRules {
    /// Pattern → filter (`None` = no extra filter). A list of patterns reads as patterns without filters.
    pub rules: BTreeMap<String, Option<Value>>,
}

impl SearchRules {
    /// Reads `searchRules` (a list of patterns or an object of pattern → `null` | `{ "filter": … }`).
    pub fn from_json(v: &Value) -> Option<SearchRules> {
        let mut rules = BTreeMap::new();
        match v {
            Value::Array(a) => {
                for p in a {
                    rules.insert(p.as_str()?.to_string(), None);
                }
            }
            Value::Object(m) => {
                for (p, rule) in m {
                    let filter = match rule {
                        Value::Null => None,
                        Value::Object(r) => r.get("filter").filter(|f| !f.is_null()).cloned(),
                        _ => return None,
                    };
                    rules.insert(p.clone(), filter);
                }
            }
            _ => return None,
        }
        Some(SearchRules { rules })
    }

    fn authorizes(&self, index: &str) -> bool {
        self.rules.keys().any(|p| pattern_matches(p, index))
    }

    fn all(&self) -> bool {
        self.rules.contains_key("*")
    }

    /// The filter of the most specific pattern matching `index` (exact before prefix, longer first).
    fn filter(&self, index: &str) -> Option<&Value> {
        self.rules
            .iter()
            .filter(|(p, _)| pattern_matches(p, index))
            .max_by_key(|(p, _)| (!p.ends_with('*'), p.len()))
            .and_then(|(_, f)| f.as_ref())
    }
}

/// What an API key (and maybe a tenant token) allows beyond the checked route.
#[derive(Debug, Clone, PartialEq)]
pub struct Scoped {
    /// The key's `indexes` patterns.
    pub key_indexes: Vec<String>,
    /// The tenant token's rules, when the request carried one.
    pub search_rules: Option<SearchRules>,
    /// Whether the key may create indexes (`POST /indexes/{uid}/documents` on a missing index).
    pub can_create_indexes: bool,
}

impl Scoped {
    /// Whether both the key and the tenant token open `index`.
    pub fn is_index_authorized(&self, index: &str) -> bool {
        self.key_indexes.iter().any(|p| pattern_matches(p, index))
            && self
                .search_rules
                .as_ref()
                .is_none_or(|r| r.authorizes(index))
    }

    /// Whether every index is open (`*` in the key and in the token).
    pub fn all_indexes_authorized(&self) -> bool {
        self.key_indexes.iter().any(|p| p == "*")
            && self.search_rules.as_ref().is_none_or(SearchRules::all)
    }

    /// The tenant token's filter for searches on `index`, if any.
    pub fn search_filter(&self, index: &str) -> Option<&Value> {
        self.search_rules.as_ref()?.filter(index)
    }
}

/// The outcome of authentication.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Access {
    /// The master key, or a proxy without one: no restriction.
    #[default]
    Full,
    /// An API key or a tenant token.
    Scoped(Scoped),
}

impl Access {
    /// Whether `index` is open.
    pub fn is_index_authorized(&self, index: &str) -> bool {
        match self {
            Access::Full => true,
            Access::Scoped(s) => s.is_index_authorized(index),
        }
    }

    /// Whether every index is open.
    pub fn all_indexes_authorized(&self) -> bool {
        match self {
            Access::Full => true,
            Access::Scoped(s) => s.all_indexes_authorized(),
        }
    }

    /// Adds the tenant token's rule for `index` to a search's `filter`, as Meilisearch's `fuse_filters`
    /// does: both become one array (AND) of their parts.
    pub fn apply_search_rules(&self, index: &str, filter: Option<Value>) -> Option<Value> {
        let rule = match self {
            Access::Full => None,
            Access::Scoped(s) => s.search_filter(index).cloned(),
        };
        fuse_filters(filter, rule)
    }

    /// Whether the request may create a missing index on the fly.
    pub fn can_create_index(&self, index: &str) -> bool {
        match self {
            Access::Full => true,
            Access::Scoped(s) => s.can_create_indexes && s.is_index_authorized(index),
        }
    }
}

/// Meilisearch's `fuse_filters`: `[left parts…, right parts…]`.
pub fn fuse_filters(left: Option<Value>, right: Option<Value>) -> Option<Value> {
    match (left, right) {
        (None, r) => r,
        (l, None) => l,
        (Some(l), Some(r)) => {
            let parts = |v: Value| match v {
                Value::Array(a) => a,
                v => vec![v],
            };
            let mut all = parts(l);
            all.extend(parts(r));
            Some(Value::Array(all))
        }
    }
}

/// 401 `missing_authorization_header`.
pub fn missing_authorization_header() -> MeiliError {
    MeiliError::new(
        401,
        "missing_authorization_header",
        ErrorType::Auth,
        "The Authorization header is missing. It must use the bearer authorization method.",
    )
}

fn auth_error(message: String) -> MeiliError {
    MeiliError::new(403, "invalid_api_key", ErrorType::Auth, message)
}

/// 403 `invalid_api_key` "The provided API key is invalid.".
pub fn invalid_api_key() -> MeiliError {
    auth_error("The provided API key is invalid.".into())
}

fn debug_list(items: &[String]) -> String {
    let quoted: Vec<String> = items
        .iter()
        .map(|s| serde_json::to_string(s).unwrap_or_default())
        .collect();
    format!("[{}]", quoted.join(", "))
}

/// Why a token is not a usable tenant token.
enum TokenProblem {
    /// Not a JWT at all (or its key is unknown): try it as an API key.
    NotAToken,
    /// A JWT that fails: the request is refused with this error.
    Refused(MeiliError),
}

fn could_not_decode(what: &str) -> TokenProblem {
    TokenProblem::Refused(auth_error(format!(
        "Could not decode tenant token, {what}."
    )))
}

fn verify_signature(alg: &str, secret: &[u8], signed: &[u8], signature: &[u8]) -> Option<bool> {
    macro_rules! check {
        ($h:ty) => {{
            let mut mac = <Hmac<$h>>::new_from_slice(secret).ok()?;
            mac.update(signed);
            Some(mac.verify_slice(signature).is_ok())
        }};
    }
    match alg {
        "HS256" => check!(Sha256),
        "HS384" => check!(Sha384),
        "HS512" => check!(Sha512),
        _ => None,
    }
}

/// Signs a JWT the way the Meilisearch SDKs sign tenant tokens (`generateTenantToken`): `header` and
/// `claims` base64url-encoded, HMAC with `secret` (the API key's value) by `header.alg` (HS256, HS384 or
/// HS512). `None` for another algorithm.
pub fn sign_token(secret: &str, header: &Value, claims: &Value) -> Option<String> {
    let signed = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    macro_rules! sign {
        ($h:ty) => {{
            let mut mac = <Hmac<$h>>::new_from_slice(secret.as_bytes()).ok()?;
            mac.update(signed.as_bytes());
            mac.finalize().into_bytes().to_vec()
        }};
    }
    let signature = match header.get("alg").and_then(Value::as_str)? {
        "HS256" => sign!(Sha256),
        "HS384" => sign!(Sha384),
        "HS512" => sign!(Sha512),
        _ => return None,
    };
    Some(format!("{signed}.{}", URL_SAFE_NO_PAD.encode(signature)))
}

/// Reads and verifies a tenant token for `ring`: the signing key and its rules.
fn tenant_token<'r>(
    ring: &'r KeyRing,
    token: &str,
    now: Millis,
) -> Result<(&'r ApiKey, SearchRules), TokenProblem> {
    let parts: Vec<&str> = token.split('.').collect();
    let [header, payload, signature] = parts[..] else {
        return Err(TokenProblem::NotAToken);
    };
    let decode = |part: &str| {
        URL_SAFE_NO_PAD
            .decode(part.trim_end_matches('='))
            .map_err(|e| could_not_decode(&format!("Base64 error: {e}")))
    };
    let header: Value = serde_json::from_slice(&decode(header)?)
        .map_err(|e| could_not_decode(&format!("JSON error: {e}")))?;
    let claims: Value = serde_json::from_slice(&decode(payload)?)
        .map_err(|e| could_not_decode(&format!("JSON error: {e}")))?;
    let signature = decode(signature)?;
    let uid = claims
        .get("apiKeyUid")
        .and_then(Value::as_str)
        .ok_or_else(|| could_not_decode("JSON error: missing field `apiKeyUid`"))?;
    let Some(key) = ring.by_uid(uid) else {
        return Err(TokenProblem::NotAToken);
    };
    let alg = header.get("alg").and_then(Value::as_str).unwrap_or("");
    let signed = &token.as_bytes()[..token.len() - parts[2].len() - 1];
    match verify_signature(alg, key.key.as_bytes(), signed, &signature) {
        None => return Err(could_not_decode("InvalidAlgorithm")),
        Some(false) => return Err(could_not_decode("InvalidSignature")),
        Some(true) => {}
    }
    let rules = claims
        .get("searchRules")
        .and_then(SearchRules::from_json)
        .ok_or_else(|| could_not_decode("JSON error: invalid field `searchRules`"))?;
    if let Some(exp) = claims.get("exp").filter(|e| !e.is_null()) {
        let Some(exp) = exp.as_i64() else {
            return Err(could_not_decode("JSON error: invalid field `exp`"));
        };
        let now_secs = (now / 1000) as i64;
        if now_secs > exp {
            return Err(TokenProblem::Refused(auth_error(format!(
                "Tenant token expired. Was valid up to `{exp}` and we're now `{now_secs}`."
            ))));
        }
    }
    Ok((key, rules))
}

/// Decides one request: `master` is the configured client master key (empty = no authentication),
/// `token` the bearer token (`None` when the header is missing), `action` and `index` what the route
/// needs. `now` is used for expiry.
pub fn authorize(
    master: &str,
    ring: &KeyRing,
    token: Option<&str>,
    action: Action,
    index: Option<&str>,
    now: Millis,
) -> Result<Access, MeiliError> {
    if master.is_empty() {
        return Ok(Access::Full);
    }
    let token = token.ok_or_else(missing_authorization_header)?;
    if constant_time_eq(token.as_bytes(), master.as_bytes()) {
        return Ok(Access::Full);
    }
    let mut tenant = None;
    if matches!(action, Action::Search | Action::ChatCompletions) {
        match tenant_token(ring, token, now) {
            Ok(found) => tenant = Some(found),
            Err(TokenProblem::NotAToken) => {}
            Err(TokenProblem::Refused(e)) => return Err(e),
        }
    }
    let (key, search_rules) = match tenant {
        Some((key, rules)) => (key, Some(rules)),
        None => (ring.by_value(token).ok_or_else(invalid_api_key)?, None),
    };
    let scoped = Scoped {
        key_indexes: key.indexes.clone(),
        search_rules,
        can_create_indexes: key.allows(Action::IndexesCreate, None, now),
    };
    if let Some(index) = index {
        if let Some(rules) = &scoped.search_rules {
            if !rules.authorizes(index) {
                let allowed: Vec<String> = rules.rules.keys().cloned().collect();
                return Err(auth_error(format!(
                    "The provided tenant token cannot acces the index `{index}`, allowed indexes are {}.",
                    debug_list(&allowed)
                )));
            }
        }
        if !key.index_authorized(index) {
            return Err(if scoped.search_rules.is_some() {
                auth_error(format!(
                    "The API key used to generate this tenant token cannot acces the index `{index}`."
                ))
            } else {
                let mut allowed = key.indexes.clone();
                allowed.sort_unstable();
                auth_error(format!(
                    "The API key cannot acces the index `{index}`, authorized indexes are {}.",
                    debug_list(&allowed)
                ))
            });
        }
    }
    if key.allows(action, index, now) {
        Ok(Access::Scoped(scoped))
    } else {
        Err(invalid_api_key())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NOW: Millis = 1_800_000_000_000;

    fn key(uid: &str, value: &str, actions: &[&str], indexes: &[&str]) -> ApiKey {
        ApiKey {
            uid: uid.into(),
            key: value.into(),
            actions: actions.iter().map(|s| s.to_string()).collect(),
            indexes: indexes.iter().map(|s| s.to_string()).collect(),
            expires_at: None,
        }
    }

    fn ring() -> KeyRing {
        KeyRing::new(vec![
            key("u-search", "k-search", &["search"], &["*"]),
            key("u-movies", "k-movies", &["*"], &["movies", "prod_*"]),
            key("u-docs", "k-docs", &["documents.*"], &["*"]),
            key("u-read", "k-read", &["*.get"], &["*"]),
            key("u-tasks", "k-tasks", &["tasks.get"], &["movies"]),
        ])
    }

    fn sign(alg: &str, secret: &str, claims: Value) -> String {
        sign_token(secret, &json!({"alg": alg, "typ": "JWT"}), &claims).unwrap()
    }

    fn run(token: Option<&str>, action: Action, index: Option<&str>) -> Result<Access, MeiliError> {
        authorize("master", &ring(), token, action, index, NOW)
    }

    #[test]
    fn master_and_open_proxy() {
        assert_eq!(
            authorize("", &ring(), None, Action::KeysGet, None, NOW),
            Ok(Access::Full)
        );
        assert_eq!(
            run(Some("master"), Action::KeysCreate, None),
            Ok(Access::Full)
        );
        let e = run(None, Action::Search, Some("movies")).unwrap_err();
        assert_eq!(
            (e.status, e.code.as_str()),
            (401, "missing_authorization_header")
        );
        let e = run(Some("nope"), Action::Search, Some("movies")).unwrap_err();
        assert_eq!((e.status, e.code.as_str()), (403, "invalid_api_key"));
        assert_eq!(e.message, "The provided API key is invalid.");
        assert!(run(Some("maste"), Action::Version, None).is_err());
    }

    #[test]
    fn actions_and_wildcards() {
        assert!(run(Some("k-search"), Action::Search, Some("anything")).is_ok());
        assert!(run(Some("k-search"), Action::DocumentsGet, Some("movies")).is_err());
        assert!(run(Some("k-docs"), Action::DocumentsAdd, Some("x")).is_ok());
        assert!(run(Some("k-docs"), Action::DocumentsDelete, Some("x")).is_ok());
        assert!(run(Some("k-docs"), Action::Search, Some("x")).is_err());
        assert!(run(Some("k-read"), Action::SettingsGet, Some("x")).is_ok());
        assert!(run(Some("k-read"), Action::Version, None).is_ok());
        assert!(run(Some("k-read"), Action::SettingsUpdate, Some("x")).is_err());
        // `*.get` does not open keys.get: no privilege escalation.
        assert!(run(Some("k-read"), Action::KeysGet, None).is_err());
        // `*` opens keys routes for an unrestricted key only; this one is index-scoped.
        assert!(run(Some("k-movies"), Action::KeysGet, None).is_err());
    }

    #[test]
    fn index_scoped_keys() {
        assert!(run(Some("k-movies"), Action::Search, Some("movies")).is_ok());
        assert!(run(Some("k-movies"), Action::SettingsUpdate, Some("prod_books")).is_ok());
        let e = run(Some("k-movies"), Action::Search, Some("books")).unwrap_err();
        assert_eq!(e.code, "invalid_api_key");
        assert_eq!(
            e.message,
            "The API key cannot acces the index `books`, authorized indexes are [\"movies\", \"prod_*\"]."
        );
        // Index-less routes: allowed when the route filters itself, refused otherwise.
        let a = run(Some("k-movies"), Action::IndexesGet, None).unwrap();
        assert!(a.is_index_authorized("movies"));
        assert!(a.is_index_authorized("prod_x"));
        assert!(!a.is_index_authorized("books"));
        assert!(!a.all_indexes_authorized());
        assert!(run(Some("k-movies"), Action::DumpsCreate, None).is_err());
        assert!(run(Some("k-tasks"), Action::TasksGet, None).is_ok());
        assert!(run(Some("k-tasks"), Action::TasksCancel, None).is_err());
        assert!(run(Some("k-search"), Action::Search, None)
            .unwrap()
            .all_indexes_authorized());
    }

    #[test]
    fn expiry() {
        let mut k = key("u", "k", &["search"], &["*"]);
        k.expires_at = Some(NOW);
        let r = KeyRing::new(vec![k.clone()]);
        assert!(authorize("m", &r, Some("k"), Action::Search, Some("i"), NOW).is_err());
        k.expires_at = Some(NOW + 1);
        let r = KeyRing::new(vec![k]);
        assert!(authorize("m", &r, Some("k"), Action::Search, Some("i"), NOW).is_ok());
    }

    #[test]
    fn reads_node_key_lists() {
        let body = json!({"results": [
            {"uid": "a", "key": "ka", "actions": ["search"], "indexes": ["*"], "expiresAt": null},
            {"uid": "b", "key": "kb", "actions": ["*"], "indexes": ["x"], "expiresAt": "2030-01-01T00:00:00Z"},
            {"uid": "c", "key": "kc", "actions": ["*"], "indexes": ["x"], "expiresAt": "garbage"},
            {"key": "no uid"}
        ], "offset": 0, "limit": 20, "total": 4});
        let r = KeyRing::from_list(&body);
        assert_eq!(r.len(), 3);
        assert_eq!(
            r.by_value("kb").unwrap().expires_at,
            Some(1_893_456_000_000)
        );
        assert_eq!(r.by_value("kc").unwrap().expires_at, Some(0));
        assert!(r.by_value("k").is_none());
        assert!(KeyRing::from_list(&json!("garbage")).is_empty());
    }

    #[test]
    fn tenant_tokens() {
        let claims = json!({"apiKeyUid": "u-search", "searchRules": {"movies": {"filter": "genre = horror"}, "prod_*": null}});
        let t = sign("HS256", "k-search", claims.clone());
        let a = run(Some(&t), Action::Search, Some("movies")).unwrap();
        assert_eq!(
            a.apply_search_rules("movies", Some(json!("year > 2000"))),
            Some(json!(["year > 2000", "genre = horror"]))
        );
        assert_eq!(a.apply_search_rules("prod_a", None), None);
        let e = run(Some(&t), Action::Search, Some("books")).unwrap_err();
        assert_eq!(
            e.message,
            "The provided tenant token cannot acces the index `books`, allowed indexes are [\"movies\", \"prod_*\"]."
        );
        // Only searches read tenant tokens.
        assert_eq!(
            run(Some(&t), Action::DocumentsGet, Some("movies"))
                .unwrap_err()
                .message,
            "The provided API key is invalid."
        );
        // Wrong secret, unknown key, expiry, other algorithms.
        let bad = sign("HS256", "other", claims.clone());
        assert_eq!(
            run(Some(&bad), Action::Search, Some("movies"))
                .unwrap_err()
                .message,
            "Could not decode tenant token, InvalidSignature."
        );
        let unknown = sign(
            "HS256",
            "k",
            json!({"apiKeyUid": "nope", "searchRules": ["*"]}),
        );
        assert_eq!(
            run(Some(&unknown), Action::Search, Some("movies"))
                .unwrap_err()
                .message,
            "The provided API key is invalid."
        );
        let old = sign(
            "HS512",
            "k-search",
            json!({"apiKeyUid": "u-search", "searchRules": ["*"], "exp": 1000}),
        );
        assert_eq!(
            run(Some(&old), Action::Search, Some("movies"))
                .unwrap_err()
                .message,
            "Tenant token expired. Was valid up to `1000` and we're now `1800000000`."
        );
        let fine = sign(
            "HS512",
            "k-search",
            json!({"apiKeyUid": "u-search", "searchRules": ["*"], "exp": 1_900_000_000}),
        );
        assert!(run(Some(&fine), Action::Search, Some("movies"))
            .unwrap()
            .all_indexes_authorized());
        // The signing key's own restrictions still apply.
        let scoped = sign(
            "HS256",
            "k-movies",
            json!({"apiKeyUid": "u-movies", "searchRules": ["*"]}),
        );
        assert_eq!(
            run(Some(&scoped), Action::Search, Some("books"))
                .unwrap_err()
                .message,
            "The API key used to generate this tenant token cannot acces the index `books`."
        );
        assert!(run(Some("a.b.c"), Action::Search, Some("movies")).is_err());
        assert!(sign_token("k", &json!({"alg": "none"}), &json!({})).is_none());
        let hs384 = sign_token(
            "k-search",
            &json!({"alg": "HS384"}),
            &json!({"apiKeyUid": "u-search", "searchRules": ["*"]}),
        )
        .unwrap();
        assert!(run(Some(&hs384), Action::Search, Some("x")).is_ok());
        let e = run(Some("a.b.c"), Action::Search, Some("movies")).unwrap_err();
        assert!(
            e.message.starts_with("Could not decode tenant token, "),
            "{}",
            e.message
        );
    }

    #[test]
    fn most_specific_rule_wins() {
        let r = SearchRules::from_json(&json!({"*": {"filter": "a = 1"}, "mov*": {"filter": "b = 2"}, "movies": {"filter": "c = 3"}})).unwrap();
        assert_eq!(r.filter("movies"), Some(&json!("c = 3")));
        assert_eq!(r.filter("movers"), Some(&json!("b = 2")));
        assert_eq!(r.filter("x"), Some(&json!("a = 1")));
        assert!(SearchRules::from_json(&json!([1])).is_none());
        assert_eq!(
            fuse_filters(Some(json!(["a", "b"])), Some(json!([["c", "d"]]))),
            Some(json!(["a", "b", ["c", "d"]]))
        );
    }
}
