//! API keys (`/keys`) over the fleet: every node holds every key, with the same `uid` and so the same key
//! value (a node derives the value from the uid and its master key, and all nodes share one node master
//! key).
//!
//! [`key_uid`] turns 128 random bits from the shell into a uuid v4; [`create_body`] makes that uid
//! explicit in the body every node receives, unless the client chose one. [`KeysWrite`] is the state
//! machine of one key write (create, update, delete) sent to every node. [`sync_plan`] is the planner that
//! gives a joining node the fleet's keys.
//!
//! States: `Sending` → `Done` once every node answered or failed. Events: [`KeysWrite::on_response`],
//! [`KeysWrite::on_failure`]. Outcome: [`KeysWrite::decide`].
//!
//! Invariants:
//! - the client gets a success only when every node applied the change; the answer is the first node's (in
//!   configuration order), identical on every node for a create;
//! - a create that only some nodes applied is rolled back: [`KeyDecision::Rollback`] lists the
//!   `DELETE /keys/{uid}` requests for the nodes that created the key, then the client gets the error;
//! - an update or a delete that only some nodes applied cannot be undone; it is never reported as a success:
//!   the client gets `miroir_bad_node_response` naming the nodes that did not apply it (retrying converges:
//!   a delete already applied on a node answers `api_key_not_found` there, which counts as applied when
//!   another node deleted the key in the same request);
//! - when every node refused with a client error, the first node's error is relayed as is.

use super::{Method, NodeRequest, Reply, RequestId};
use crate::error::MeiliError;
use crate::topology::NodeId;
use serde_json::{Map, Value};

/// A uuid v4 (hyphenated, lowercase) from 128 random bits: the version and variant bits are set.
pub fn key_uid(random: u128) -> String {
    let v = (random & !(0xf << 76) | (0x4 << 76)) & !(0x3 << 62) | (0x2 << 62);
    let h = format!("{v:032x}");
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// The body every node receives for a `POST /keys`: the client's, with `uid` set to `generated` when the
/// client did not give one. Returns the body and the key uid the nodes will use (`None` when the client's
/// `uid` is not a string: the nodes reject it, nothing to roll back).
pub fn create_body(mut body: Map<String, Value>, generated: &str) -> (Value, Option<String>) {
    let uid = match body.get("uid") {
        None => {
            body.insert("uid".into(), Value::String(generated.to_string()));
            Some(generated.to_string())
        }
        Some(Value::String(s)) => Some(s.to_ascii_lowercase()),
        Some(_) => None,
    };
    (Value::Object(body), uid)
}

/// Which key write [`KeysWrite`] carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyWrite {
    /// `POST /keys` creating the key `uid` (when known, for the rollback).
    Create { uid: Option<String> },
    /// `PATCH /keys/{key}`.
    Update,
    /// `DELETE /keys/{key}`.
    Delete,
}

#[derive(Debug, Clone, PartialEq)]
enum Outcome {
    Pending,
    Ok(u16, Value),
    ClientError(MeiliError),
    Failed(String),
}

/// What the shell does once every node answered.
#[derive(Debug, Clone, PartialEq)]
pub enum KeyDecision {
    /// Reply to the client.
    Reply(Reply),
    /// Send these requests (best effort) to undo a partial create, then reply.
    Rollback {
        requests: Vec<NodeRequest>,
        reply: Reply,
    },
}

/// One key write sent to every node. See the module documentation.
#[derive(Debug, Clone)]
pub struct KeysWrite {
    kind: KeyWrite,
    requests: Vec<NodeRequest>,
    outcomes: Vec<Outcome>,
}

impl KeysWrite {
    /// The write `method path body` for each of `nodes` (configuration order).
    pub fn new(
        nodes: &[NodeId],
        kind: KeyWrite,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Self {
        let requests: Vec<NodeRequest> = nodes
            .iter()
            .enumerate()
            .map(|(id, node)| NodeRequest {
                id,
                node: node.clone(),
                method,
                path: path.to_string(),
                body: body.clone(),
            })
            .collect();
        KeysWrite {
            kind,
            outcomes: vec![Outcome::Pending; requests.len()],
            requests,
        }
    }

    /// The requests to send, all at once.
    pub fn requests(&self) -> &[NodeRequest] {
        &self.requests
    }

    /// Feeds a node's answer to request `id` (a 5xx, or a 4xx that is not a Meilisearch error, counts as
    /// a failure).
    pub fn on_response(&mut self, id: RequestId, status: u16, body: Value) {
        let Some(slot) = self.outcomes.get_mut(id) else {
            return;
        };
        if *slot != Outcome::Pending {
            return;
        }
        *slot = match status {
            200..=299 => Outcome::Ok(status, body),
            400..=499 => match MeiliError::from_node_body(status, &body) {
                Some(e) => Outcome::ClientError(e),
                None => Outcome::Failed(format!("HTTP {status} without a Meilisearch error")),
            },
            _ => Outcome::Failed(format!("HTTP {status}")),
        };
    }

    /// Request `id` could not be delivered, or timed out.
    pub fn on_failure(&mut self, id: RequestId) {
        if let Some(slot) = self.outcomes.get_mut(id) {
            if *slot == Outcome::Pending {
                *slot = Outcome::Failed("no answer".into());
            }
        }
    }

    fn applied(&self, o: &Outcome, any_ok: bool) -> bool {
        match o {
            Outcome::Ok(..) => true,
            Outcome::ClientError(e) => {
                self.kind == KeyWrite::Delete && any_ok && e.code == "api_key_not_found"
            }
            _ => false,
        }
    }

    /// The outcome once every node answered or failed; `None` while one is pending.
    pub fn decide(&self) -> Option<KeyDecision> {
        if self.outcomes.contains(&Outcome::Pending) {
            return None;
        }
        let any_ok = self.outcomes.iter().any(|o| matches!(o, Outcome::Ok(..)));
        let first_ok = self.outcomes.iter().find_map(|o| match o {
            Outcome::Ok(s, b) => Some(Reply::json(*s, b.clone())),
            _ => None,
        });
        let missing: Vec<usize> = (0..self.outcomes.len())
            .filter(|&i| !self.applied(&self.outcomes[i], any_ok))
            .collect();
        if missing.is_empty() {
            return Some(KeyDecision::Reply(first_ok.unwrap_or_else(|| {
                Reply::error(&MeiliError::internal("no node to send the request to"))
            })));
        }
        let failure = missing.iter().find_map(|&i| match &self.outcomes[i] {
            Outcome::Failed(why) => Some((i, why.clone())),
            _ => None,
        });
        let client_error = missing.iter().find_map(|&i| match &self.outcomes[i] {
            Outcome::ClientError(e) => Some(e.clone()),
            _ => None,
        });
        if !any_ok {
            let e = match (failure, client_error) {
                (Some((i, why)), _) => {
                    MeiliError::bad_node_response(self.requests[i].node.as_str(), &why)
                }
                (None, Some(e)) => e,
                (None, None) => MeiliError::internal("no node applied the key write"),
            };
            return Some(KeyDecision::Reply(Reply::error(&e)));
        }
        let names: Vec<&str> = missing
            .iter()
            .map(|&i| self.requests[i].node.as_str())
            .collect();
        match &self.kind {
            KeyWrite::Create { uid } => {
                let e = match (client_error, failure) {
                    (Some(e), _) => e,
                    (None, Some((i, why))) => MeiliError::bad_node_response(
                        self.requests[i].node.as_str(),
                        &format!("{why}; the key was not created on any node"),
                    ),
                    (None, None) => MeiliError::internal("key creation failed"),
                };
                let requests = match uid {
                    Some(uid) => self
                        .outcomes
                        .iter()
                        .enumerate()
                        .filter(|(_, o)| matches!(o, Outcome::Ok(..)))
                        .enumerate()
                        .map(|(id, (i, _))| NodeRequest {
                            id,
                            node: self.requests[i].node.clone(),
                            method: Method::Delete,
                            path: format!("/keys/{uid}"),
                            body: None,
                        })
                        .collect(),
                    None => Vec::new(),
                };
                Some(KeyDecision::Rollback {
                    requests,
                    reply: Reply::error(&e),
                })
            }
            KeyWrite::Update | KeyWrite::Delete => {
                let why = match (failure, client_error) {
                    (Some((_, why)), _) => why,
                    (None, Some(e)) => e.message,
                    (None, None) => "no answer".into(),
                };
                Some(KeyDecision::Reply(Reply::error(
                    &MeiliError::bad_node_response(
                        names[0],
                        &format!(
                            "{why}; the key change was applied by some nodes but not by {}: retry the request",
                            names.join(", ")
                        ),
                    ),
                )))
            }
        }
    }
}

/// The fields a `POST /keys` copying a listed key carries: what makes the key the same key on another node
/// (its value is derived from `uid` and the node master key, shared by the fleet).
const COPIED_FIELDS: [&str; 6] = [
    "uid",
    "name",
    "description",
    "actions",
    "indexes",
    "expiresAt",
];
/// The fields a `PATCH /keys/{uid}` may change (Meilisearch refuses the others).
const MUTABLE_FIELDS: [&str; 2] = ["name", "description"];

/// The keys of a `GET /keys` answer (`{"results": [...]}`) by uid. A key without a string uid is ignored.
fn listed_keys(
    list: &Value,
) -> Result<std::collections::BTreeMap<String, &Map<String, Value>>, MeiliError> {
    let results = list
        .get("results")
        .and_then(Value::as_array)
        .ok_or_else(|| MeiliError::internal("a node's key list has no `results` array"))?;
    Ok(results
        .iter()
        .filter_map(Value::as_object)
        .filter_map(|k| Some((k.get("uid")?.as_str()?.to_ascii_lowercase(), k)))
        .collect())
}

/// The requests that make `node`'s keys the same as the reference node's, from both nodes' `GET /keys`
/// answers: a key the reference holds and the node does not is created with the same `uid` (so the same
/// value), a key only the node holds (for example the default keys a fresh Meilisearch creates with random
/// uids) is deleted, a key whose name or description differs is patched, and one whose actions, indexes
/// or expiry differ (which `PATCH` cannot change) is deleted and created again. Request ids count from 0
/// in that order: deletes first, so a re-created key's delete runs before its create.
///
/// Used when a node joins the fleet: the proxy authorises requests with the key ring it reads from any
/// node, so a node without the fleet's keys would make valid keys fail.
pub fn sync_plan(
    reference: &Value,
    target: &Value,
    node: &NodeId,
) -> Result<Vec<NodeRequest>, MeiliError> {
    let want = listed_keys(reference)?;
    let have = listed_keys(target)?;
    let same = |a: &Map<String, Value>, b: &Map<String, Value>, fields: &[&str]| {
        fields
            .iter()
            .all(|f| a.get(*f).unwrap_or(&Value::Null) == b.get(*f).unwrap_or(&Value::Null))
    };
    let immutable: Vec<&str> = COPIED_FIELDS
        .iter()
        .copied()
        .filter(|f| !MUTABLE_FIELDS.contains(f))
        .collect();
    let mut deletes = Vec::new();
    let mut creates = Vec::new();
    let mut patches = Vec::new();
    for (uid, key) in &have {
        match want.get(uid) {
            None => deletes.push(uid.clone()),
            Some(w) if !same(w, key, &immutable) => {
                deletes.push(uid.clone());
                creates.push(*w);
            }
            Some(w) if !same(w, key, &MUTABLE_FIELDS) => patches.push((uid.clone(), *w)),
            Some(_) => {}
        }
    }
    creates.extend(
        want.iter()
            .filter(|(uid, _)| !have.contains_key(*uid))
            .map(|(_, w)| *w),
    );
    let pick = |k: &Map<String, Value>, fields: &[&str]| {
        Value::Object(
            fields
                .iter()
                .filter_map(|f| Some((f.to_string(), k.get(*f)?.clone())))
                .collect(),
        )
    };
    let mut out = Vec::new();
    let mut push = |method: Method, path: String, body: Option<Value>| {
        out.push(NodeRequest {
            id: out.len(),
            node: node.clone(),
            method,
            path,
            body,
        })
    };
    for uid in deletes {
        push(Method::Delete, format!("/keys/{uid}"), None);
    }
    for w in creates {
        push(
            Method::Post,
            "/keys".to_string(),
            Some(pick(w, &COPIED_FIELDS)),
        );
    }
    for (uid, w) in patches {
        push(
            Method::Patch,
            format!("/keys/{uid}"),
            Some(pick(w, &MUTABLE_FIELDS)),
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn nodes(n: usize) -> Vec<NodeId> {
        (0..n).map(|i| NodeId::new(format!("n{i}"))).collect()
    }

    const UID: &str = "01b4bc42-eb33-4041-b481-254d00cce834";

    fn not_found() -> Value {
        json!({"message": "API key `x` not found.", "code": "api_key_not_found", "type": "invalid_request", "link": "https://docs.meilisearch.com/errors#api_key_not_found"})
    }

    fn create(n: usize) -> KeysWrite {
        KeysWrite::new(
            &nodes(n),
            KeyWrite::Create {
                uid: Some(UID.into()),
            },
            Method::Post,
            "/keys",
            Some(json!({"uid": UID})),
        )
    }

    #[test]
    fn uid_is_a_v4_uuid() {
        let u = key_uid(u128::MAX);
        assert_eq!(u, "ffffffff-ffff-4fff-bfff-ffffffffffff");
        assert_eq!(key_uid(0), "00000000-0000-4000-8000-000000000000");
        assert_ne!(key_uid(1), key_uid(2));
    }

    #[test]
    fn create_body_makes_the_uid_explicit() {
        let mut m = Map::new();
        m.insert("actions".into(), json!(["*"]));
        let (b, uid) = create_body(m.clone(), UID);
        assert_eq!((b["uid"].as_str(), uid.as_deref()), (Some(UID), Some(UID)));
        m.insert("uid".into(), json!("ABC"));
        let (b, uid) = create_body(m.clone(), UID);
        assert_eq!(
            (b["uid"].as_str(), uid.as_deref()),
            (Some("ABC"), Some("abc"))
        );
        m.insert("uid".into(), json!(3));
        assert_eq!(create_body(m, UID).1, None);
    }

    #[test]
    fn success_only_when_every_node_applied() {
        let mut w = create(2);
        assert_eq!(w.requests().len(), 2);
        w.on_response(1, 201, json!({"n": 1}));
        assert!(w.decide().is_none());
        w.on_response(0, 201, json!({"n": 0}));
        w.on_failure(0);
        w.on_response(9, 500, json!({}));
        let KeyDecision::Reply(r) = w.decide().unwrap() else {
            panic!("expected a reply")
        };
        assert_eq!((r.status, r.body["n"].clone()), (201, json!(0)));
    }

    #[test]
    fn partial_create_is_rolled_back() {
        let mut w = create(3);
        w.on_response(0, 201, json!({}));
        w.on_failure(1);
        w.on_response(2, 201, json!({}));
        let Some(KeyDecision::Rollback { requests, reply }) = w.decide() else {
            panic!("expected a rollback")
        };
        assert_eq!(requests.len(), 2);
        assert_eq!(requests[0].node.as_str(), "n0");
        assert_eq!(requests[1].node.as_str(), "n2");
        assert_eq!((requests[1].id, requests[1].method), (1, Method::Delete));
        assert_eq!(requests[0].path, format!("/keys/{UID}"));
        assert_eq!(reply.status, 502);
        assert!(reply.body["message"].as_str().unwrap().contains("n1"));
    }

    #[test]
    fn partial_create_with_a_client_error_relays_it_after_rollback() {
        let mut w = create(2);
        w.on_response(0, 201, json!({}));
        w.on_response(
            1,
            409,
            json!({"message": "exists", "code": "api_key_already_exists", "type": "invalid_request", "link": ""}),
        );
        let Some(KeyDecision::Rollback { requests, reply }) = w.decide() else {
            panic!("expected a rollback")
        };
        assert_eq!(requests.len(), 1);
        assert_eq!(reply.body["code"], "api_key_already_exists");
    }

    #[test]
    fn every_node_refusing_relays_the_error() {
        let mut w = create(2);
        w.on_response(0, 400, json!({"message": "m", "code": "missing_api_key_actions", "type": "invalid_request", "link": ""}));
        w.on_response(1, 400, json!({"message": "m", "code": "missing_api_key_actions", "type": "invalid_request", "link": ""}));
        let Some(KeyDecision::Reply(r)) = w.decide() else {
            panic!("expected a reply")
        };
        assert_eq!(
            (r.status, r.body["code"].as_str()),
            (400, Some("missing_api_key_actions"))
        );
        let mut w = create(2);
        w.on_response(
            0,
            400,
            json!({"message": "m", "code": "c", "type": "invalid_request", "link": ""}),
        );
        w.on_response(1, 503, json!({}));
        let Some(KeyDecision::Reply(r)) = w.decide() else {
            panic!("expected a reply")
        };
        assert_eq!(r.body["code"], "miroir_bad_node_response");
        let mut w = create(1);
        w.on_response(0, 404, json!("not an error"));
        let Some(KeyDecision::Reply(r)) = w.decide() else {
            panic!("expected a reply")
        };
        assert_eq!(r.body["code"], "miroir_bad_node_response");
        let w = KeysWrite::new(&[], KeyWrite::Update, Method::Patch, "/keys/x", None);
        let Some(KeyDecision::Reply(r)) = w.decide() else {
            panic!("expected a reply")
        };
        assert_eq!(r.status, 500);
    }

    #[test]
    fn partial_update_is_reported_never_silent() {
        let mut w = KeysWrite::new(
            &nodes(2),
            KeyWrite::Update,
            Method::Patch,
            "/keys/x",
            Some(json!({})),
        );
        w.on_response(0, 200, json!({}));
        w.on_response(1, 500, json!({}));
        let Some(KeyDecision::Reply(r)) = w.decide() else {
            panic!("expected a reply")
        };
        assert_eq!(r.status, 502);
        let m = r.body["message"].as_str().unwrap();
        assert!(m.contains("not by n1"), "{m}");
    }

    #[test]
    fn delete_counts_not_found_as_applied_when_another_node_deleted() {
        let mut w = KeysWrite::new(&nodes(2), KeyWrite::Delete, Method::Delete, "/keys/x", None);
        w.on_response(0, 404, not_found());
        w.on_response(1, 204, Value::Null);
        let Some(KeyDecision::Reply(r)) = w.decide() else {
            panic!("expected a reply")
        };
        assert_eq!(r.status, 204);
        let mut w = KeysWrite::new(&nodes(2), KeyWrite::Delete, Method::Delete, "/keys/x", None);
        w.on_response(0, 404, not_found());
        w.on_response(1, 404, not_found());
        let Some(KeyDecision::Reply(r)) = w.decide() else {
            panic!("expected a reply")
        };
        assert_eq!(
            (r.status, r.body["code"].as_str()),
            (404, Some("api_key_not_found"))
        );
    }

    fn key(uid: &str, name: &str, actions: &[&str]) -> Value {
        json!({"uid": uid, "key": format!("value-of-{uid}"), "name": name, "description": null,
               "actions": actions, "indexes": ["*"], "expiresAt": null,
               "createdAt": "2026-01-01T00:00:00Z", "updatedAt": "2026-01-01T00:00:00Z"})
    }

    fn list(keys: &[Value]) -> Value {
        json!({"results": keys, "offset": 0, "limit": 100000, "total": keys.len()})
    }

    #[test]
    fn a_fresh_node_gets_every_key_with_its_uid_and_loses_its_own_defaults() {
        let reference = list(&[key("aa", "search", &["search"]), key("bb", "admin", &["*"])]);
        let fresh = list(&[key("cc", "Default Search API Key", &["search"])]);
        let plan = sync_plan(&reference, &fresh, &NodeId::from("n4")).unwrap();
        let shown: Vec<(Method, String, Option<Value>)> = plan
            .iter()
            .map(|r| (r.method, r.path.clone(), r.body.clone()))
            .collect();
        assert_eq!(
            shown,
            vec![
                (Method::Delete, "/keys/cc".into(), None),
                (
                    Method::Post,
                    "/keys".into(),
                    Some(json!({"uid": "aa", "name": "search", "description": null,
                                "actions": ["search"], "indexes": ["*"], "expiresAt": null}))
                ),
                (
                    Method::Post,
                    "/keys".into(),
                    Some(json!({"uid": "bb", "name": "admin", "description": null,
                                "actions": ["*"], "indexes": ["*"], "expiresAt": null}))
                ),
            ]
        );
        assert!(plan
            .iter()
            .enumerate()
            .all(|(i, r)| r.id == i && r.node.as_str() == "n4"));
    }

    #[test]
    fn a_synced_node_needs_nothing_and_differences_are_patched_or_recreated() {
        let reference = list(&[key("aa", "search", &["search"]), key("bb", "admin", &["*"])]);
        let plan = sync_plan(&reference, &reference, &NodeId::from("n1")).unwrap();
        assert!(plan.is_empty());
        // a renamed key is patched; a key with other actions (not patchable) is deleted and created again
        let drifted = list(&[
            key("aa", "old name", &["search"]),
            key("bb", "admin", &["search"]),
        ]);
        let plan = sync_plan(&reference, &drifted, &NodeId::from("n1")).unwrap();
        let shown: Vec<(Method, &str)> = plan.iter().map(|r| (r.method, r.path.as_str())).collect();
        assert_eq!(
            shown,
            vec![
                (Method::Delete, "/keys/bb"),
                (Method::Post, "/keys"),
                (Method::Patch, "/keys/aa")
            ]
        );
        assert_eq!(
            plan[2].body,
            Some(json!({"name": "search", "description": null}))
        );
    }

    #[test]
    fn a_key_list_without_results_is_an_error() {
        let ok = list(&[]);
        for bad in [json!({}), json!({"results": 3}), json!([1, 2])] {
            assert!(sync_plan(&bad, &ok, &NodeId::from("n")).is_err());
            assert!(sync_plan(&ok, &bad, &NodeId::from("n")).is_err());
        }
        // entries that are not keys are ignored
        let odd = json!({"results": [1, {"name": "no uid"}, key("aa", "x", &["*"])]});
        assert_eq!(sync_plan(&odd, &ok, &NodeId::from("n")).unwrap().len(), 1);
    }
}
