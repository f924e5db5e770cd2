//! Webhooks (`/webhooks`, `/webhooks/{uuid}`): Miroir keeps them itself (they are not sent to the nodes,
//! whose own task notifications would describe node tasks, not Miroir tasks).
//!
//! States: a [`Webhooks`] set (at most [`MAX_WEBHOOKS`]), persisted by the shell as JSON
//! ([`Webhooks::to_json`] / [`Webhooks::from_json`]). Transitions: [`Webhooks::create`] (201),
//! [`Webhooks::update`] (200; a header set to `null` is removed, `headers: null` removes them all),
//! [`Webhooks::delete`] (204); reads [`Webhooks::get`], [`Webhooks::list`]. Every transition validates as
//! Meilisearch 1.50 does and leaves the set unchanged on error.
//!
//! Output: Meilisearch's webhook object `{uuid, isEditable, url, headers}` with the value of any
//! `Authorization` header redacted as Meilisearch redacts it (`Bearer ` kept, then the first 0-5
//! characters of the secret and `X…`). [`Webhooks::targets`] gives the shell the unredacted URL and
//! headers to notify when a task finishes.
//!
//! Notification ([`Notifier`]): a state machine over Miroir task uids. States: the `baseline` (tasks up to
//! it are never notified: they existed while no webhook did) and the set of tasks already notified.
//! Events: [`Notifier::no_webhooks`] (moves the baseline to the newest task), [`Notifier::candidates`]
//! (the stored tasks to look at), [`Notifier::on_task`] (a task read: notify it iff it is finished and was
//! not notified yet). Invariant: each task is notified at most once per proxy process.
//! [`notification_body`] is the payload: the task objects as NDJSON, as Meilisearch sends them (Meilisearch
//! gzips it; Miroir sends it uncompressed).
//!
//! Known limits: URLs are checked for a `scheme:` prefix only (Meilisearch parses them fully); an invalid
//! uuid is reported with a simpler message than the `uuid` crate's.

use crate::error::MeiliError;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

/// At most this many webhooks.
pub const MAX_WEBHOOKS: usize = 20;
/// At most this many headers per webhook.
pub const MAX_HEADERS: usize = 200;

/// One webhook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Webhook {
    /// Where to POST.
    pub url: String,
    /// Headers sent with each notification.
    pub headers: BTreeMap<String, String>,
}

/// The webhooks, by uuid.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Webhooks {
    webhooks: BTreeMap<String, Webhook>,
}

/// 404 `webhook_not_found`.
pub fn webhook_not_found(uuid: &str) -> MeiliError {
    MeiliError::invalid(
        404,
        "webhook_not_found",
        format!("Webhook `{uuid}` not found."),
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

/// Meilisearch's `hide_secret`: keeps `offset` bytes, then a prefix of the secret depending on its length.
fn hide_secret(secret: &mut String, offset: usize) {
    let keep = match secret.len().checked_sub(offset) {
        None => return,
        Some(x) if x < 10 => (0, "XXX..."),
        Some(x) if x < 20 => (2, "XXXX..."),
        Some(x) if x < 30 => (3, "XXXXX..."),
        Some(_) => (5, "XXXXXX..."),
    };
    let mut at = offset + keep.0;
    while at < secret.len() && !secret.is_char_boundary(at) {
        at += 1;
    }
    secret.replace_range(at.min(secret.len()).., keep.1);
}

/// Parses a path uuid (hyphenated hex, case-insensitive), lowercased.
pub fn parse_uuid(s: &str) -> Result<String, MeiliError> {
    let parts: Vec<&str> = s.split('-').collect();
    let ok = parts.len() == 5
        && parts
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(p, n)| p.len() == n && p.bytes().all(|b| b.is_ascii_hexdigit()));
    if ok {
        Ok(s.to_ascii_lowercase())
    } else {
        Err(MeiliError::invalid(
            400,
            "invalid_webhook_uuid",
            format!("Invalid UUID: `{s}` is not a hyphenated uuid"),
        ))
    }
}

fn valid_header_name(n: &str) -> bool {
    !n.is_empty()
        && n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

fn valid_header_value(v: &str) -> bool {
    v.bytes().all(|b| b == b'\t' || (b >= 0x20 && b != 0x7f))
}

/// What a body sets: `url` (`None`: absent, `Some(None)`: null) and `headers`.
type Patch = (
    Option<Option<String>>,
    Option<Option<BTreeMap<String, Option<String>>>>,
);

fn parse_body(body: &Value) -> Result<Patch, MeiliError> {
    let Value::Object(obj) = body else {
        return Err(MeiliError::invalid(
            400,
            "bad_request",
            format!(
                "Invalid value type: expected an object, but found {}: `{body}`",
                kind(body)
            ),
        ));
    };
    let mut url = None;
    let mut headers = None;
    for (k, v) in obj {
        match k.as_str() {
            "url" => {
                url = Some(match v {
                    Value::Null => None,
                    Value::String(s) => Some(s.clone()),
                    other => {
                        return Err(MeiliError::invalid(
                            400,
                            "invalid_webhook_url",
                            format!("Invalid value type at `.url`: expected a string, but found {}: `{other}`", kind(other)),
                        ))
                    }
                })
            }
            "headers" => {
                headers = Some(match v {
                    Value::Null => None,
                    Value::Object(m) => {
                        let mut h = BTreeMap::new();
                        for (name, value) in m {
                            let value = match value {
                                Value::Null => None,
                                Value::String(s) => Some(s.clone()),
                                other => {
                                    return Err(MeiliError::invalid(
                                        400,
                                        "invalid_webhook_headers",
                                        format!("Invalid value type at `.headers.{name}`: expected a string, but found {}: `{other}`", kind(other)),
                                    ))
                                }
                            };
                            h.insert(name.clone(), value);
                        }
                        Some(h)
                    }
                    other => {
                        return Err(MeiliError::invalid(
                            400,
                            "invalid_webhook_headers",
                            format!("Invalid value type at `.headers`: expected an object, but found {}: `{other}`", kind(other)),
                        ))
                    }
                })
            }
            "uuid" | "isEditable" => {
                let code = if k == "uuid" {
                    "immutable_webhook_uuid"
                } else {
                    "immutable_webhook_is_editable"
                };
                return Err(MeiliError::invalid(
                    400,
                    code,
                    format!("Immutable field `{k}`: expected one of `url`, `headers`"),
                ));
            }
            _ => {
                return Err(MeiliError::invalid(
                    400,
                    "bad_request",
                    format!("Unknown field `{k}`: expected one of `url`, `headers`"),
                ))
            }
        }
    }
    Ok((url, headers))
}

fn check(uuid: &str, w: &Webhook) -> Result<(), MeiliError> {
    if w.url.is_empty() {
        return Err(missing_url(uuid));
    }
    if w.headers.len() > MAX_HEADERS {
        return Err(MeiliError::invalid(
            400,
            "invalid_webhook_headers",
            format!("Too many headers for the webhook `{uuid}`. Please limit the number of headers to 200. Hint: To remove an already defined header set its value to `null`"),
        ));
    }
    for (name, value) in &w.headers {
        if !valid_header_name(name) {
            return Err(MeiliError::invalid(
                400,
                "invalid_webhook_headers",
                format!("Invalid header name `{name}`: invalid HTTP header name"),
            ));
        }
        if !valid_header_value(value) {
            return Err(MeiliError::invalid(
                400,
                "invalid_webhook_headers",
                format!("Invalid header value `{name}`: failed to parse header value"),
            ));
        }
    }
    let scheme_ok = w.url.split_once(':').is_some_and(|(s, _)| {
        !s.is_empty()
            && s.starts_with(|c: char| c.is_ascii_alphabetic())
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
    });
    if !scheme_ok {
        return Err(MeiliError::invalid(
            400,
            "invalid_webhook_url",
            format!("Invalid URL `{}`: relative URL without a base", w.url),
        ));
    }
    Ok(())
}

fn missing_url(uuid: &str) -> MeiliError {
    MeiliError::invalid(
        400,
        "invalid_webhook_url",
        format!("The URL for the webhook `{uuid}` is missing."),
    )
}

impl Webhooks {
    /// Reads the persisted form (anything unreadable is skipped).
    pub fn from_json(v: &Value) -> Webhooks {
        let mut webhooks = BTreeMap::new();
        if let Some(m) = v.get("webhooks").and_then(Value::as_object) {
            for (uuid, w) in m {
                let Some(url) = w.get("url").and_then(Value::as_str) else {
                    continue;
                };
                let headers = w
                    .get("headers")
                    .and_then(Value::as_object)
                    .map(|h| {
                        h.iter()
                            .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string())))
                            .collect()
                    })
                    .unwrap_or_default();
                webhooks.insert(
                    uuid.clone(),
                    Webhook {
                        url: url.to_string(),
                        headers,
                    },
                );
            }
        }
        Webhooks { webhooks }
    }

    /// The persisted form: `{"webhooks": {uuid: {url, headers}}}` (unredacted).
    pub fn to_json(&self) -> Value {
        let m: Map<String, Value> = self
            .webhooks
            .iter()
            .map(|(u, w)| (u.clone(), json!({"url": w.url, "headers": w.headers})))
            .collect();
        json!({ "webhooks": m })
    }

    fn view(uuid: &str, w: &Webhook) -> Value {
        let mut headers = w.headers.clone();
        for (name, value) in headers.iter_mut() {
            if name.eq_ignore_ascii_case("authorization") {
                let offset = if value.starts_with("Bearer ") { 7 } else { 0 };
                hide_secret(value, offset);
            }
        }
        json!({"uuid": uuid, "isEditable": true, "url": w.url, "headers": headers})
    }

    /// `GET /webhooks`: `{results}`.
    pub fn list(&self) -> Value {
        let results: Vec<Value> = self
            .webhooks
            .iter()
            .map(|(u, w)| Self::view(u, w))
            .collect();
        json!({ "results": results })
    }

    /// `GET /webhooks/{uuid}`.
    pub fn get(&self, uuid: &str) -> Result<Value, MeiliError> {
        let uuid = parse_uuid(uuid)?;
        self.webhooks
            .get(&uuid)
            .map(|w| Self::view(&uuid, w))
            .ok_or_else(|| webhook_not_found(&uuid))
    }

    /// `POST /webhooks` with the uuid the shell drew: the created webhook (redacted).
    pub fn create(&mut self, body: &Value, uuid: &str) -> Result<Value, MeiliError> {
        let (url, headers) = parse_body(body)?;
        if headers
            .as_ref()
            .and_then(Option::as_ref)
            .is_some_and(|h| h.len() > MAX_HEADERS)
        {
            return Err(MeiliError::invalid(
                400,
                "invalid_webhook_headers",
                format!("Too many headers for the webhook `{uuid}`. Please limit the number of headers to 200. Hint: To remove an already defined header set its value to `null`"),
            ));
        }
        if self.webhooks.len() >= MAX_WEBHOOKS {
            return Err(MeiliError::invalid(
                400,
                "invalid_webhooks",
                "Defining too many webhooks would crush the server. Please limit the number of webhooks to 20. You may use a third-party proxy server to dispatch events to more than 20 endpoints.",
            ));
        }
        let url = url.flatten().ok_or_else(|| missing_url(uuid))?;
        let headers = headers
            .flatten()
            .map(|h| {
                h.into_iter()
                    .map(|(k, v)| (k, v.unwrap_or_default()))
                    .collect()
            })
            .unwrap_or_default();
        let w = Webhook { url, headers };
        check(uuid, &w)?;
        let view = Self::view(uuid, &w);
        self.webhooks.insert(uuid.to_string(), w);
        Ok(view)
    }

    /// `PATCH /webhooks/{uuid}`: the updated webhook (redacted).
    pub fn update(&mut self, uuid: &str, body: &Value) -> Result<Value, MeiliError> {
        let uuid = parse_uuid(uuid)?;
        let (url, headers) = parse_body(body)?;
        let old = self
            .webhooks
            .get(&uuid)
            .ok_or_else(|| webhook_not_found(&uuid))?;
        let mut w = old.clone();
        match url {
            None => {}
            Some(None) => return Err(missing_url(&uuid)),
            Some(Some(u)) => w.url = u,
        }
        match headers {
            None => {}
            Some(None) => w.headers.clear(),
            Some(Some(h)) => {
                for (name, value) in h {
                    match value {
                        Some(v) => {
                            w.headers.insert(name, v);
                        }
                        None => {
                            w.headers.remove(&name);
                        }
                    }
                }
            }
        }
        check(&uuid, &w)?;
        let view = Self::view(&uuid, &w);
        self.webhooks.insert(uuid, w);
        Ok(view)
    }

    /// `DELETE /webhooks/{uuid}`.
    pub fn delete(&mut self, uuid: &str) -> Result<(), MeiliError> {
        let uuid = parse_uuid(uuid)?;
        self.webhooks
            .remove(&uuid)
            .map(|_| ())
            .ok_or_else(|| webhook_not_found(&uuid))
    }

    /// Where to notify: every webhook's URL and unredacted headers.
    pub fn targets(&self) -> Vec<Webhook> {
        self.webhooks.values().cloned().collect()
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.webhooks.is_empty()
    }
}

/// Which finished tasks to notify. See the module documentation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Notifier {
    started: bool,
    baseline: Option<u64>,
    notified: std::collections::BTreeSet<u64>,
}

impl Notifier {
    /// A notifier that has seen nothing yet.
    pub fn new() -> Self {
        Notifier::default()
    }

    /// No webhook exists: tasks stored now (`newest` is the newest uid) are never notified.
    pub fn no_webhooks(&mut self, newest: Option<u64>) {
        self.started = true;
        self.baseline = newest.or(self.baseline);
        self.notified.clear();
    }

    /// Whether the first event was seen (before it, every stored task counts as older than the watcher).
    pub fn started(&self) -> bool {
        self.started
    }

    /// Tasks up to this uid are never (or no longer) considered; `None`: none yet.
    pub fn baseline(&self) -> Option<u64> {
        self.baseline
    }

    /// Of the stored task uids (at least those above the baseline), those to read: newer than the
    /// baseline and not notified yet. The first event sets the baseline to the newest stored uid (tasks
    /// older than the watcher are not notified). The baseline then moves up over every task already
    /// notified, so the tasks to look at stay the unfinished recent ones.
    pub fn candidates(&mut self, stored: &[u64]) -> Vec<u64> {
        if !self.started {
            self.no_webhooks(stored.iter().copied().max());
            return Vec::new();
        }
        let mut v: Vec<u64> = stored
            .iter()
            .copied()
            .filter(|u| self.baseline.is_none_or(|b| *u > b))
            .collect();
        v.sort_unstable();
        v.dedup();
        let mut first_open = 0;
        for u in &v {
            if !self.notified.remove(u) {
                break;
            }
            self.baseline = Some(*u);
            first_open += 1;
        }
        v.drain(..first_open);
        v.retain(|u| !self.notified.contains(u));
        v
    }

    /// Task `uid` was read: whether to notify it now.
    pub fn on_task(&mut self, uid: u64, finished: bool) -> bool {
        if !finished || self.baseline.is_some_and(|b| uid <= b) {
            return false;
        }
        self.notified.insert(uid)
    }
}

/// The notification body: one task object per line (NDJSON).
pub fn notification_body(tasks: &[Value]) -> String {
    let mut out = String::new();
    for t in tasks {
        out.push_str(&t.to_string());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notifier_notifies_each_finished_task_once() {
        let mut n = Notifier::new();
        // tasks 0..=2 existed before: never notified
        assert!(n.candidates(&[0, 1, 2]).is_empty());
        assert!(!n.on_task(2, true));
        assert_eq!(n.candidates(&[0, 1, 2, 3, 4]), vec![3, 4]);
        assert!(!n.on_task(3, false));
        assert!(n.on_task(4, true));
        assert!(!n.on_task(4, true));
        assert_eq!(n.candidates(&[2, 3, 4]), vec![3]);
        assert!(n.on_task(3, true));
        assert!(n.candidates(&[3, 4]).is_empty());
        // 3 and 4 notified: the baseline moved over them
        assert_eq!(n.baseline(), Some(4));
        assert!(n.started());
        // webhooks all deleted while 5 and 6 ran: they are not notified later
        n.no_webhooks(Some(6));
        assert_eq!(n.candidates(&[5, 6, 7]), vec![7]);
        // an empty store at start: every task is new
        let mut fresh = Notifier::new();
        assert!(fresh.candidates(&[]).is_empty());
        assert_eq!(fresh.candidates(&[0]), vec![0]);
        assert!(fresh.on_task(0, true));
        let mut empty = Notifier::new();
        empty.no_webhooks(None);
        assert_eq!(empty.candidates(&[0, 1]), vec![0, 1]);
    }

    #[test]
    fn ndjson_body() {
        assert_eq!(
            notification_body(&[json!({"uid": 1}), json!({"uid": 2})]),
            "{\"uid\":1}\n{\"uid\":2}\n"
        );
    }

    const U1: &str = "550e8400-e29b-41d4-a716-446655440000";
    const U2: &str = "550e8400-e29b-41d4-a716-446655440001";

    #[test]
    fn crud_and_redaction() {
        let mut w = Webhooks::default();
        let created = w
            .create(
                &json!({"url": "https://x.test/hook", "headers": {"Authorization": "Bearer a-secret-token", "X-A": "1"}}),
                U1,
            )
            .unwrap();
        assert_eq!(
            created,
            json!({"uuid": U1, "isEditable": true, "url": "https://x.test/hook", "headers": {"Authorization": "Bearer a-XXXX...", "X-A": "1"}})
        );
        assert_eq!(
            w.targets()[0].headers["Authorization"],
            "Bearer a-secret-token"
        );
        assert_eq!(w.get(&U1.to_uppercase()).unwrap()["uuid"], U1);
        let patched = w
            .update(U1, &json!({"headers": {"X-A": null, "X-B": "2"}}))
            .unwrap();
        assert_eq!(
            patched["headers"],
            json!({"Authorization": "Bearer a-XXXX...", "X-B": "2"})
        );
        let cleared = w
            .update(U1, &json!({"headers": null, "url": "http://y.test"}))
            .unwrap();
        assert_eq!(
            (cleared["headers"].clone(), cleared["url"].clone()),
            (json!({}), json!("http://y.test"))
        );
        w.create(&json!({"url": "http://z.test"}), U2).unwrap();
        assert_eq!(w.list()["results"].as_array().unwrap().len(), 2);
        let back = Webhooks::from_json(&w.to_json());
        assert_eq!(back, w);
        w.delete(U1).unwrap();
        assert_eq!(w.get(U1).unwrap_err().code, "webhook_not_found");
        assert_eq!(w.delete(U1).unwrap_err().status, 404);
        assert!(!w.is_empty());
    }

    #[test]
    fn hide_secret_like_meilisearch() {
        let h = |s: &str, o: usize| {
            let mut s = s.to_string();
            hide_secret(&mut s, o);
            s
        };
        assert_eq!(h("short", 0), "XXX...");
        assert_eq!(h("0123456789abc", 0), "01XXXX...");
        assert_eq!(h("0123456789abcdefghijk", 0), "012XXXXX...");
        assert_eq!(
            h("0123456789abcdefghijklmnopqrstuvwxyz", 0),
            "01234XXXXXX..."
        );
        assert_eq!(h("Bearer x", 7), "Bearer XXX...");
        assert_eq!(h("ab", 7), "ab");
    }

    #[test]
    fn errors() {
        let mut w = Webhooks::default();
        let code = |r: Result<Value, MeiliError>| r.unwrap_err().code;
        assert_eq!(code(w.create(&json!({}), U1)), "invalid_webhook_url");
        assert_eq!(
            w.create(&json!({}), U1).unwrap_err().message,
            format!("The URL for the webhook `{U1}` is missing.")
        );
        assert_eq!(
            code(w.create(&json!({"url": 3}), U1)),
            "invalid_webhook_url"
        );
        assert_eq!(
            code(w.create(&json!({"url": "nope"}), U1)),
            "invalid_webhook_url"
        );
        assert_eq!(
            code(w.create(&json!({"url": "http://a", "headers": 1}), U1)),
            "invalid_webhook_headers"
        );
        assert_eq!(
            code(w.create(&json!({"url": "http://a", "headers": {"a b": "x"}}), U1)),
            "invalid_webhook_headers"
        );
        assert_eq!(
            code(w.create(&json!({"url": "http://a", "headers": {"a": "x\n"}}), U1)),
            "invalid_webhook_headers"
        );
        assert_eq!(
            code(w.create(&json!({"url": "http://a", "headers": {"a": 1}}), U1)),
            "invalid_webhook_headers"
        );
        assert_eq!(
            code(w.create(&json!({"url": "http://a", "uuid": U1}), U1)),
            "immutable_webhook_uuid"
        );
        assert_eq!(
            code(w.create(&json!({"isEditable": false}), U1)),
            "immutable_webhook_is_editable"
        );
        assert_eq!(code(w.create(&json!({"nope": 1}), U1)), "bad_request");
        assert_eq!(code(w.create(&json!([]), U1)), "bad_request");
        let many: Map<String, Value> = (0..201).map(|i| (format!("h{i}"), json!("v"))).collect();
        assert_eq!(
            code(w.create(&json!({"url": "http://a", "headers": many}), U1)),
            "invalid_webhook_headers"
        );
        assert!(w.is_empty());
        for i in 0..20 {
            w.create(
                &json!({"url": "http://a"}),
                &format!("550e8400-e29b-41d4-a716-4466554400{i:02}"),
            )
            .unwrap();
        }
        assert_eq!(
            code(w.create(&json!({"url": "http://a"}), U1)),
            "invalid_webhooks"
        );
        assert_eq!(code(w.get("x")), "invalid_webhook_uuid");
        assert_eq!(
            w.update("650e8400-e29b-41d4-a716-446655440000", &json!({}))
                .unwrap_err()
                .code,
            "webhook_not_found"
        );
        let existing = "550e8400-e29b-41d4-a716-446655440000";
        assert_eq!(
            w.update(existing, &json!({"url": null})).unwrap_err().code,
            "invalid_webhook_url"
        );
        assert_eq!(
            w.update(existing, &json!({"url": "bad"})).unwrap_err().code,
            "invalid_webhook_url"
        );
        assert_eq!(w.get(existing).unwrap()["url"], "http://a");
        assert_eq!(w.delete("zz").unwrap_err().code, "invalid_webhook_uuid");
    }
}
