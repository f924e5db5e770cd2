//! Document copy and verify primitives shared by the coordinators that move documents between copies of an
//! index: the shard migration ([`crate::migration`]) and online resharding ([`crate::reshard`]).
//!
//! Nothing here has state of its own: these are the node requests both coordinators send (a page of
//! documents, a batch write, a deletion by id, a barrier task), the reading of the answers (a page, a task
//! uid, a task's status), the throttle of a copy, the content [`fingerprint`] and the [`diff`] a verify pass
//! repairs from. Keeping them in one place is what makes "verified" mean the same thing in both machines.
//!
//! Invariants:
//! - a fingerprint ignores every top-level `_miroir_*` field and the order of object keys, and changes with
//!   any visible value;
//! - [`diff`] lists every expected document that is absent or different on the copy, and every id on the
//!   copy that is not expected: applying both makes the copy equal to the expectation.

use crate::documents::Document;
use crate::ops::{encode_query_value, Method};
use crate::routing::canonical_id;
use crate::{Millis, RESERVED_PREFIX};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use xxhash_rust::xxh3::xxh3_64;

/// A node request before it gets an id: method, path, body.
pub type RequestParts = (Method, String, Option<Value>);

fn canon(v: &Value, out: &mut String) {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                canon(&m[k], out);
            }
            out.push('}');
        }
        Value::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canon(x, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// A document's content fingerprint: XXH3 of its canonical JSON (object keys sorted at every level), with
/// every top-level `_miroir_*` field left out. Field order does not matter; any value change does.
pub fn fingerprint(doc: &Document) -> u64 {
    let visible: Map<String, Value> = doc
        .iter()
        .filter(|(k, _)| !k.starts_with(RESERVED_PREFIX))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let mut s = String::new();
    canon(&Value::Object(visible), &mut s);
    xxh3_64(s.as_bytes())
}

/// A page of `index`'s documents (`filter` optional), `limit` documents from `offset`.
pub fn fetch_page(index: &str, filter: Option<&str>, offset: usize, limit: usize) -> RequestParts {
    let body = match filter {
        Some(f) => json!({"filter": f, "offset": offset, "limit": limit.max(1)}),
        None => json!({"offset": offset, "limit": limit.max(1)}),
    };
    (
        Method::Post,
        format!("/indexes/{index}/documents/fetch"),
        Some(body),
    )
}

/// Adds or replaces `docs` in `index`, the primary key stated explicitly.
pub fn write_docs(index: &str, primary_key: &str, docs: &[Document]) -> RequestParts {
    (
        Method::Post,
        format!(
            "/indexes/{index}/documents?primaryKey={}",
            encode_query_value(primary_key)
        ),
        Some(Value::Array(
            docs.iter().cloned().map(Value::Object).collect(),
        )),
    )
}

/// Deletes `ids` from `index`.
pub fn delete_ids(index: &str, ids: &[String]) -> RequestParts {
    (
        Method::Post,
        format!("/indexes/{index}/documents/delete-batch"),
        Some(Value::Array(
            ids.iter().cloned().map(Value::String).collect(),
        )),
    )
}

/// A task that changes nothing, enqueued on `index` to wait for every task enqueued before it.
pub fn barrier(index: &str) -> RequestParts {
    (
        Method::Post,
        format!("/indexes/{index}/documents/delete-batch"),
        Some(json!([])),
    )
}

/// Reads one node task.
pub fn get_task(uid: u64) -> RequestParts {
    (Method::Get, format!("/tasks/{uid}"), None)
}

/// The `taskUid` of an enqueue answer.
pub fn task_uid(body: &Value) -> Option<u64> {
    body.get("taskUid").and_then(Value::as_u64)
}

/// Where a node task stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskPoll {
    /// `succeeded`.
    Succeeded,
    /// `failed` or `canceled`.
    Failed,
    /// `enqueued` or `processing`: poll again.
    Pending,
    /// Not a task object.
    Invalid,
}

/// Reads a `GET /tasks/{uid}` answer.
pub fn task_poll(body: &Value) -> TaskPoll {
    match body.get("status").and_then(Value::as_str) {
        Some("succeeded") => TaskPoll::Succeeded,
        Some("failed") | Some("canceled") => TaskPoll::Failed,
        Some("enqueued") | Some("processing") => TaskPoll::Pending,
        _ => TaskPoll::Invalid,
    }
}

/// Reads a documents page: each document with its canonical id. `None` when the answer is not a page or a
/// document lacks a usable primary key.
pub fn parse_page(body: &Value, primary_key: &str) -> Option<Vec<(String, Document)>> {
    let results = body.get("results").and_then(Value::as_array)?;
    let mut docs = Vec::with_capacity(results.len());
    for r in results {
        let doc = r.as_object()?.clone();
        let id = doc.get(primary_key).and_then(canonical_id)?;
        docs.push((id, doc));
    }
    Some(docs)
}

/// Whether a page of `n` documents asked with `page_size` may be followed by another.
pub fn has_more(n: usize, page_size: usize) -> bool {
    n >= page_size.max(1)
}

/// When the next page of a copy may be read after `n` documents were read at `now`, at `docs_per_second`
/// (`None` when unthrottled).
pub fn throttle_next(now: Millis, n: usize, docs_per_second: u64) -> Option<Millis> {
    (n as u64)
        .saturating_mul(1000)
        .checked_div(docs_per_second)
        .map(|wait| now.saturating_add(wait))
}

/// What a copy must receive to equal `expected` (id → fingerprint and document), given what it holds
/// (`actual`, id → fingerprint): the documents absent or different, and the ids it must not hold.
pub fn diff(
    expected: &BTreeMap<String, (u64, Document)>,
    actual: &BTreeMap<String, u64>,
) -> (Vec<Document>, Vec<String>) {
    let missing = expected
        .iter()
        .filter(|(id, (fp, _))| actual.get(*id) != Some(fp))
        .map(|(_, (_, d))| d.clone())
        .collect();
    let extra = actual
        .keys()
        .filter(|id| !expected.contains_key(*id))
        .cloned()
        .collect();
    (missing, extra)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(v: Value) -> Document {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn fingerprint_ignores_order_and_miroir_fields() {
        let a = doc(json!({"id": 1, "t": {"x": 1, "y": [1, 2]}, "_miroir_shard": 3}));
        let b = doc(json!({"t": {"y": [1, 2], "x": 1}, "id": 1}));
        assert_eq!(fingerprint(&a), fingerprint(&b));
        let c = doc(json!({"id": 1, "t": {"x": 2, "y": [1, 2]}}));
        assert_ne!(fingerprint(&a), fingerprint(&c));
    }

    #[test]
    fn requests_have_meilisearch_shapes() {
        let (m, p, b) = fetch_page("i", Some("_miroir_shard = 2"), 4, 0);
        assert_eq!(m, Method::Post);
        assert_eq!(p, "/indexes/i/documents/fetch");
        assert_eq!(
            b,
            Some(json!({"filter": "_miroir_shard = 2", "offset": 4, "limit": 1}))
        );
        let (_, _, b) = fetch_page("i", None, 0, 10);
        assert_eq!(b, Some(json!({"offset": 0, "limit": 10})));
        let (_, p, b) = write_docs("i", "id", &[doc(json!({"id": 1}))]);
        assert_eq!(p, "/indexes/i/documents?primaryKey=id");
        assert_eq!(b, Some(json!([{"id": 1}])));
        let (_, p, b) = delete_ids("i", &["a".into()]);
        assert_eq!(p, "/indexes/i/documents/delete-batch");
        assert_eq!(b, Some(json!(["a"])));
        assert_eq!(barrier("i").2, Some(json!([])));
        assert_eq!(get_task(7).1, "/tasks/7");
    }

    #[test]
    fn answers_are_read_without_panics() {
        assert_eq!(task_uid(&json!({"taskUid": 3})), Some(3));
        assert_eq!(task_uid(&json!({"taskUid": "3"})), None);
        assert_eq!(
            task_poll(&json!({"status": "succeeded"})),
            TaskPoll::Succeeded
        );
        assert_eq!(task_poll(&json!({"status": "canceled"})), TaskPoll::Failed);
        assert_eq!(
            task_poll(&json!({"status": "processing"})),
            TaskPoll::Pending
        );
        assert_eq!(task_poll(&json!(null)), TaskPoll::Invalid);
        let page = parse_page(&json!({"results": [{"id": 1}, {"id": "b"}]}), "id").unwrap();
        assert_eq!(page[0].0, "1");
        assert_eq!(page[1].0, "b");
        assert!(parse_page(&json!({"results": [{"x": 1}]}), "id").is_none());
        assert!(parse_page(&json!({"results": [3]}), "id").is_none());
        assert!(parse_page(&json!({}), "id").is_none());
        assert!(has_more(2, 2) && !has_more(1, 2) && has_more(1, 0));
    }

    #[test]
    fn throttle_and_diff() {
        assert_eq!(throttle_next(1_000, 10, 100), Some(1_100));
        assert_eq!(throttle_next(1_000, 10, 0), None);
        let mut expected = BTreeMap::new();
        let a = doc(json!({"id": "a", "v": 1}));
        let b = doc(json!({"id": "b", "v": 1}));
        expected.insert("a".to_string(), (fingerprint(&a), a.clone()));
        expected.insert("b".to_string(), (fingerprint(&b), b.clone()));
        let mut actual = BTreeMap::new();
        actual.insert("a".to_string(), fingerprint(&a));
        actual.insert("b".to_string(), 0);
        actual.insert("c".to_string(), 1);
        let (missing, extra) = diff(&expected, &actual);
        assert_eq!(missing, vec![b]);
        assert_eq!(extra, vec!["c".to_string()]);
        actual.insert("b".to_string(), fingerprint(&expected["b"].1));
        actual.remove("c");
        let (missing, extra) = diff(&expected, &actual);
        assert!(missing.is_empty() && extra.is_empty());
    }
}
