//! Idempotency keys: a client write that carries an `Idempotency-Key` header is done at most once per key.
//!
//! A client that did not hear the answer to a write (timeout, dropped connection, proxy crash) can send the
//! same request again with the same key: it gets the first request's answer (same `taskUid`, same body) and
//! no new work is done. The records live in the task store, so a retry through another proxy, or after a
//! proxy restart, is deduplicated too. The shells (HTTP proxy, simulator) store the records; every decision
//! is made here.
//!
//! # The fingerprint
//!
//! A request is identified by [`fingerprint`]: XXH3-128 over the method, the path with its query, the
//! content type's media type and the canonical body (JSON bodies with every object's keys sorted, so key
//! order and whitespace do not matter; other bodies byte for byte).
//!
//! # States of one key's record ([`IdempotencyRecord`])
//!
//! - **absent** (never seen, or expired: `now >= expires_at`, or pruned by the size bound);
//! - **in flight** (`response: None`): a request claimed the key and is being served. Once the write is
//!   acknowledged its task uid is noted (`task_uid: Some`) *before* the task record is stored;
//! - **done** (`response: Some`): the first request's answer (status and body) is kept until `expires_at`.
//!
//! # Transitions
//!
//! - absent → in flight: [`decide`] answers [`Decision::Proceed`]; the shell claims the key atomically
//!   (insert if absent, or compare-and-swap over the expired / abandoned record it read);
//! - in flight → in flight with a task uid: [`IdempotencyRecord::with_task`], when the write is acknowledged;
//! - in flight → done: [`IdempotencyRecord::complete`] with the answer, when it is below 500 or names a task;
//! - in flight → absent: [`IdempotencyRecord::complete`] answers `None` for a 5xx answer without a task:
//!   nothing was acknowledged, so a retry must be allowed to do the work;
//! - in flight without a task uid, older than `in_flight_timeout_ms` (its proxy died): a retry with the same
//!   fingerprint takes it over ([`Decision::Proceed`] with `replaces`);
//! - in flight with a task uid whose task is stored: a retry is answered from that task
//!   ([`Decision::ReplayTask`]); whose task is not stored (the proxy died between noting the uid and storing
//!   the task) and older than the in-flight timeout: taken over, since no client ever saw that uid;
//! - done / in flight → absent at `expires_at` (`ttl_secs` after the claim), or earlier when the store holds
//!   more than `max_keys` records ([`prune_plan`]: the keys closest to expiry go first).
//!
//! # Invariants
//!
//! - One key, one Miroir task: a request is only served (work done, a task created) after claiming the key,
//!   a claim is atomic in the store, and a record that names a task uid is never taken over while the task
//!   exists.
//! - A replay never sends anything to a node and never allocates a task uid.
//! - A key is never replayed for a different request: another fingerprint gets 409
//!   `miroir_idempotency_key_reused`, whatever the record's state.
//! - A retry while the first request is still being served gets 409 `miroir_idempotency_key_in_flight`
//!   (or the task, once it is stored); it is never served a second time.

use crate::config::IdempotencyConfig;
use crate::{MeiliError, Millis};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The request header carrying the key.
pub const IDEMPOTENCY_HEADER: &str = "idempotency-key";

/// The longest accepted key, in bytes.
pub const MAX_KEY_LEN: usize = 255;

/// Checks a raw header value: 1 to [`MAX_KEY_LEN`] visible ASCII characters (`!` to `~`).
pub fn validate_key(raw: &[u8]) -> Result<String, MeiliError> {
    if raw.is_empty() {
        return Err(MeiliError::invalid_idempotency_key(
            "The `Idempotency-Key` header must not be empty.",
        ));
    }
    if raw.len() > MAX_KEY_LEN {
        return Err(MeiliError::invalid_idempotency_key(format!(
            "The `Idempotency-Key` header is {} bytes long; at most {MAX_KEY_LEN} are accepted.",
            raw.len()
        )));
    }
    if let Some(bad) = raw.iter().find(|b| !(0x21..=0x7e).contains(*b)) {
        return Err(MeiliError::invalid_idempotency_key(format!(
            "The `Idempotency-Key` header contains the byte 0x{bad:02x}; only visible ASCII characters are accepted."
        )));
    }
    // Every byte is visible ASCII, so this is valid UTF-8.
    Ok(raw.iter().map(|b| char::from(*b)).collect())
}

/// Whether requests of this HTTP method can be deduplicated: the methods that change something.
pub fn applies_to(method: &str) -> bool {
    matches!(
        method.to_ascii_uppercase().as_str(),
        "POST" | "PUT" | "PATCH" | "DELETE"
    )
}

/// The fingerprint of a request: XXH3-128 (32 hex digits) over the upper-cased method, the path with its
/// query, the lower-cased media type (without parameters) and the canonical body (JSON with sorted keys
/// when the body parses as JSON, else the raw bytes).
pub fn fingerprint(
    method: &str,
    path_and_query: &str,
    content_type: Option<&str>,
    body: &[u8],
) -> String {
    let media = content_type
        .and_then(|ct| ct.split(';').next())
        .map(|m| m.trim().to_ascii_lowercase())
        .unwrap_or_default();
    let mut input = Vec::with_capacity(body.len() + path_and_query.len() + 32);
    input.extend_from_slice(method.to_ascii_uppercase().as_bytes());
    input.push(0);
    input.extend_from_slice(path_and_query.as_bytes());
    input.push(0);
    input.extend_from_slice(media.as_bytes());
    input.push(0);
    match serde_json::from_slice::<Value>(body) {
        Ok(v) if !body.is_empty() => {
            input.push(b'j');
            canonical_json(&v, &mut input);
        }
        _ => {
            input.push(b'r');
            input.extend_from_slice(body);
        }
    }
    format!("{:032x}", xxhash_rust::xxh3::xxh3_128(&input))
}

/// Writes `v` as JSON with every object's keys sorted.
fn canonical_json(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::Object(m) => {
            let mut entries: Vec<(&String, &Value)> = m.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            out.push(b'{');
            for (i, (k, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(Value::String(k.clone()).to_string().as_bytes());
                out.push(b':');
                canonical_json(v, out);
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                canonical_json(item, out);
            }
            out.push(b']');
        }
        other => out.extend_from_slice(other.to_string().as_bytes()),
    }
}

/// A stored answer: what a replay sends back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredResponse {
    /// The HTTP status.
    pub status: u16,
    /// The JSON body (`null` for an empty body).
    pub body: Value,
}

/// What the store keeps for one key. See the module documentation for its states.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IdempotencyRecord {
    /// The first request's [`fingerprint`].
    pub fingerprint: String,
    /// When the key was claimed.
    pub claimed_at: Millis,
    /// When the record stops counting (claim + `ttl_secs`).
    pub expires_at: Millis,
    /// The Miroir task the first request created, once acknowledged.
    #[serde(default)]
    pub task_uid: Option<u64>,
    /// The first request's answer, once it was sent.
    #[serde(default)]
    pub response: Option<StoredResponse>,
}

impl IdempotencyRecord {
    /// A fresh in-flight claim.
    pub fn claim(fingerprint: &str, now: Millis, config: &IdempotencyConfig) -> Self {
        IdempotencyRecord {
            fingerprint: fingerprint.to_string(),
            claimed_at: now,
            expires_at: now.saturating_add(config.ttl_secs.saturating_mul(1_000)),
            task_uid: None,
            response: None,
        }
    }

    /// The record once the first request's task was acknowledged under `uid`.
    pub fn with_task(&self, uid: u64) -> Self {
        IdempotencyRecord {
            task_uid: Some(uid),
            ..self.clone()
        }
    }

    /// The record once the first request answered `status` / `body`; `None` when the key must be released
    /// instead (a 5xx answer naming no task: nothing was acknowledged, a retry may do the work).
    pub fn complete(&self, status: u16, body: &Value) -> Option<Self> {
        let task_uid = self
            .task_uid
            .or_else(|| body.get("taskUid").and_then(Value::as_u64));
        if status >= 500 && task_uid.is_none() {
            return None;
        }
        Some(IdempotencyRecord {
            task_uid,
            response: Some(StoredResponse {
                status,
                body: body.clone(),
            }),
            ..self.clone()
        })
    }

    /// Whether the record no longer counts at `now`.
    pub fn expired(&self, now: Millis) -> bool {
        now >= self.expires_at
    }

    /// The stored form.
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }

    /// Reads a stored record; `None` when it is not one (a corrupt record counts as absent).
    pub fn from_json(v: &Value) -> Option<Self> {
        serde_json::from_value(v.clone()).ok()
    }
}

/// What to do with a request that carries a key.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Serve the request after storing `record` atomically: inserted when `replaces` is `None`, else
    /// swapped for exactly `replaces` (an expired or abandoned record). A lost race means another request
    /// claimed the key first: decide again over what the store now holds.
    Proceed {
        /// The claim to store.
        record: IdempotencyRecord,
        /// The record the claim replaces, if any.
        replaces: Option<IdempotencyRecord>,
    },
    /// Answer the first request's answer; do nothing else.
    Replay(StoredResponse),
    /// The first request's task is known but its answer was never recorded: answer the task's summary
    /// (202, as Meilisearch answers an enqueued task) if the task is stored. If it is not stored, call
    /// [`decide_missing_task`].
    ReplayTask(u64),
    /// Refuse with this error (409 reused or in flight).
    Reject(MeiliError),
}

/// Decides what to do with a request whose fingerprint is `fingerprint`, given the record the store holds
/// for its key (if any). See the module documentation.
pub fn decide(
    key: &str,
    existing: Option<&IdempotencyRecord>,
    fingerprint: &str,
    now: Millis,
    config: &IdempotencyConfig,
) -> Decision {
    let claim = IdempotencyRecord::claim(fingerprint, now, config);
    let Some(existing) = existing else {
        return Decision::Proceed {
            record: claim,
            replaces: None,
        };
    };
    if existing.expired(now) {
        return Decision::Proceed {
            record: claim,
            replaces: Some(existing.clone()),
        };
    }
    if existing.fingerprint != fingerprint {
        return Decision::Reject(MeiliError::idempotency_key_reused(key));
    }
    if let Some(response) = &existing.response {
        return Decision::Replay(response.clone());
    }
    if let Some(uid) = existing.task_uid {
        return Decision::ReplayTask(uid);
    }
    if abandoned(existing, now, config) {
        return Decision::Proceed {
            record: claim,
            replaces: Some(existing.clone()),
        };
    }
    Decision::Reject(MeiliError::idempotency_key_in_flight(key))
}

/// The follow-up of [`Decision::ReplayTask`] when the named task is not stored: the first request noted its
/// uid but did not store the task. While it may still be storing it, refuse as in flight; once the
/// in-flight timeout passed, its proxy died before any client saw the uid: take the key over.
pub fn decide_missing_task(
    key: &str,
    existing: &IdempotencyRecord,
    now: Millis,
    config: &IdempotencyConfig,
) -> Decision {
    if abandoned(existing, now, config) {
        Decision::Proceed {
            record: IdempotencyRecord::claim(&existing.fingerprint, now, config),
            replaces: Some(existing.clone()),
        }
    } else {
        Decision::Reject(MeiliError::idempotency_key_in_flight(key))
    }
}

fn abandoned(record: &IdempotencyRecord, now: Millis, config: &IdempotencyConfig) -> bool {
    now.saturating_sub(record.claimed_at) >= config.in_flight_timeout_ms
}

/// Which records to drop to honour the TTL and the size bound: every expired key, then, while more than
/// `max_keys` remain, the keys closest to expiry (ties by key). `records` is `(key, expires_at)`.
pub fn prune_plan(records: &[(String, Millis)], now: Millis, max_keys: u64) -> Vec<String> {
    let mut live: Vec<&(String, Millis)> = Vec::with_capacity(records.len());
    let mut drop = Vec::new();
    for r in records {
        if now >= r.1 {
            drop.push(r.0.clone());
        } else {
            live.push(r);
        }
    }
    let max = usize::try_from(max_keys).unwrap_or(usize::MAX);
    if live.len() > max {
        live.sort_by(|a, b| a.1.cmp(&b.1).then_with(|| a.0.cmp(&b.0)));
        let excess = live.len() - max;
        drop.extend(live.into_iter().take(excess).map(|r| r.0.clone()));
    }
    drop
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cfg() -> IdempotencyConfig {
        IdempotencyConfig {
            enabled: true,
            ttl_secs: 10,
            max_keys: 3,
            in_flight_timeout_ms: 1_000,
        }
    }

    #[test]
    fn keys_are_validated() {
        assert_eq!(validate_key(b"abc-123_XYZ").unwrap(), "abc-123_XYZ");
        for bad in [&b""[..], b"a b", b"caf\xc3\xa9", b"tab\there"] {
            let e = validate_key(bad).unwrap_err();
            assert_eq!(
                (e.status, e.code.as_str()),
                (400, "miroir_invalid_idempotency_key")
            );
        }
        assert!(validate_key(&[b'a'; MAX_KEY_LEN]).is_ok());
        let e = validate_key(&[b'a'; MAX_KEY_LEN + 1]).unwrap_err();
        assert!(e.message.contains("256 bytes"), "{}", e.message);
    }

    #[test]
    fn only_changing_methods_apply() {
        for m in ["POST", "put", "Patch", "DELETE"] {
            assert!(applies_to(m), "{m}");
        }
        for m in ["GET", "HEAD", "OPTIONS"] {
            assert!(!applies_to(m), "{m}");
        }
    }

    #[test]
    fn fingerprints_ignore_json_layout_but_not_content() {
        let a = fingerprint(
            "post",
            "/indexes/a/documents",
            Some("application/json"),
            br#"{"a":1,"b":[1,{"y":2,"x":1}]}"#,
        );
        let b = fingerprint(
            "POST",
            "/indexes/a/documents",
            Some("Application/JSON; charset=utf-8"),
            br#" { "b" : [1, {"x":1, "y":2}], "a": 1 } "#,
        );
        assert_eq!(a, b);
        assert_eq!(a.len(), 32);
        let differs = [
            fingerprint(
                "PUT",
                "/indexes/a/documents",
                Some("application/json"),
                br#"{"a":1,"b":[1,{"y":2,"x":1}]}"#,
            ),
            fingerprint(
                "POST",
                "/indexes/b/documents",
                Some("application/json"),
                br#"{"a":1,"b":[1,{"y":2,"x":1}]}"#,
            ),
            fingerprint(
                "POST",
                "/indexes/a/documents",
                Some("application/json"),
                br#"{"a":2,"b":[1,{"y":2,"x":1}]}"#,
            ),
            fingerprint(
                "POST",
                "/indexes/a/documents",
                Some("application/json"),
                br#"{"a":1,"b":[{"y":2,"x":1},1]}"#,
            ),
            fingerprint(
                "POST",
                "/indexes/a/documents",
                Some("text/csv"),
                br#"{"a":1,"b":[1,{"y":2,"x":1}]}"#,
            ),
        ];
        for d in differs {
            assert_ne!(a, d);
        }
        // Non-JSON bodies count byte for byte; an empty body is not the JSON `""`.
        let csv1 = fingerprint("POST", "/x", Some("text/csv"), b"id\n1\n");
        let csv2 = fingerprint("POST", "/x", Some("text/csv"), b"id\n1 \n");
        assert_ne!(csv1, csv2);
        assert_ne!(
            fingerprint("DELETE", "/x", None, b""),
            fingerprint("DELETE", "/x", None, b"\"\"")
        );
        // A key containing a quote is escaped, so it cannot collide with a differently split object.
        assert_ne!(
            fingerprint("POST", "/x", None, br#"{"a\":1,\"b":2}"#),
            fingerprint("POST", "/x", None, br#"{"a":1,"b":2}"#)
        );
    }

    #[test]
    fn a_new_key_is_claimed() {
        let d = decide("k", None, "fp", 100, &cfg());
        let Decision::Proceed { record, replaces } = d else {
            panic!("{d:?}")
        };
        assert_eq!(replaces, None);
        assert_eq!(record.fingerprint, "fp");
        assert_eq!(record.claimed_at, 100);
        assert_eq!(record.expires_at, 10_100);
        assert_eq!(record.task_uid, None);
        assert_eq!(record.response, None);
        assert_eq!(
            IdempotencyRecord::from_json(&record.to_json()),
            Some(record)
        );
        assert_eq!(IdempotencyRecord::from_json(&json!({"x": 1})), None);
    }

    #[test]
    fn a_finished_key_replays_its_answer_for_the_same_request_only() {
        let c = cfg();
        let claimed = IdempotencyRecord::claim("fp", 0, &c);
        let body = json!({"taskUid": 7, "status": "enqueued"});
        let done = claimed.complete(202, &body).unwrap();
        assert_eq!(
            done.task_uid,
            Some(7),
            "the task uid is read from the answer"
        );
        assert_eq!(
            decide("k", Some(&done), "fp", 5_000, &c),
            Decision::Replay(StoredResponse { status: 202, body })
        );
        let Decision::Reject(e) = decide("k", Some(&done), "other", 5_000, &c) else {
            panic!()
        };
        assert_eq!(
            (e.status, e.code.as_str()),
            (409, "miroir_idempotency_key_reused")
        );
        assert!(e.message.contains("`k`"));
        // A 4xx answer is kept too: the same request would fail the same way.
        let refused = claimed
            .complete(400, &json!({"code": "invalid_document_id"}))
            .unwrap();
        assert!(matches!(
            decide("k", Some(&refused), "fp", 1, &c),
            Decision::Replay(StoredResponse { status: 400, .. })
        ));
    }

    #[test]
    fn expired_keys_are_claimed_again_even_by_another_request() {
        let c = cfg();
        let done = IdempotencyRecord::claim("fp", 0, &c)
            .complete(202, &json!({"taskUid": 1}))
            .unwrap();
        let d = decide("k", Some(&done), "other", 10_000, &c);
        let Decision::Proceed { record, replaces } = d else {
            panic!("{d:?}")
        };
        assert_eq!(record.fingerprint, "other");
        assert_eq!(replaces, Some(done));
    }

    #[test]
    fn server_errors_without_a_task_release_the_key() {
        let c = cfg();
        let claimed = IdempotencyRecord::claim("fp", 0, &c);
        assert_eq!(
            claimed.complete(503, &json!({"code": "miroir_no_quorum"})),
            None
        );
        // once a task exists the answer is kept whatever its status
        let with_task = claimed.with_task(4);
        let kept = with_task.complete(500, &json!({})).unwrap();
        assert_eq!(kept.task_uid, Some(4));
        assert_eq!(kept.response.unwrap().status, 500);
    }

    #[test]
    fn in_flight_keys_refuse_retries_until_abandoned() {
        let c = cfg();
        let claimed = IdempotencyRecord::claim("fp", 1_000, &c);
        let Decision::Reject(e) = decide("k", Some(&claimed), "fp", 1_999, &c) else {
            panic!()
        };
        assert_eq!(
            (e.status, e.code.as_str()),
            (409, "miroir_idempotency_key_in_flight")
        );
        // a different body is refused as reused even while in flight
        let Decision::Reject(e) = decide("k", Some(&claimed), "x", 1_500, &c) else {
            panic!()
        };
        assert_eq!(e.code, "miroir_idempotency_key_reused");
        // abandoned: taken over
        let d = decide("k", Some(&claimed), "fp", 2_000, &c);
        assert_eq!(
            d,
            Decision::Proceed {
                record: IdempotencyRecord::claim("fp", 2_000, &c),
                replaces: Some(claimed.clone()),
            }
        );
    }

    #[test]
    fn a_noted_task_is_replayed_or_taken_over_when_never_stored() {
        let c = cfg();
        let noted = IdempotencyRecord::claim("fp", 1_000, &c).with_task(9);
        assert_eq!(
            decide("k", Some(&noted), "fp", 1_001, &c),
            Decision::ReplayTask(9)
        );
        // even long after: the task is replayed if it exists
        assert_eq!(
            decide("k", Some(&noted), "fp", 9_000, &c),
            Decision::ReplayTask(9)
        );
        let Decision::Reject(e) = decide_missing_task("k", &noted, 1_500, &c) else {
            panic!()
        };
        assert_eq!(e.code, "miroir_idempotency_key_in_flight");
        let d = decide_missing_task("k", &noted, 2_000, &c);
        let Decision::Proceed { record, replaces } = d else {
            panic!("{d:?}")
        };
        assert_eq!((record.task_uid, record.claimed_at), (None, 2_000));
        assert_eq!(replaces, Some(noted));
    }

    #[test]
    fn pruning_drops_expired_then_closest_to_expiry() {
        let records: Vec<(String, Millis)> =
            [("a", 50), ("b", 500), ("c", 300), ("d", 400), ("e", 300)]
                .iter()
                .map(|(k, e)| (k.to_string(), *e))
                .collect();
        // a expired; 4 live, bound 3 → drop the earliest expiry, ties by key (c before e)
        assert_eq!(prune_plan(&records, 100, 3), vec!["a", "c"]);
        assert_eq!(prune_plan(&records, 100, 10), vec!["a"]);
        assert_eq!(prune_plan(&records, 1_000, 10).len(), 5);
        assert!(prune_plan(&[], 0, 1).is_empty());
        assert_eq!(prune_plan(&records, 0, 1), vec!["a", "c", "e", "d"]);
    }
}
