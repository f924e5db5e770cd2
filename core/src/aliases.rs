//! Index aliases: a name that resolves to one concrete index uid, flipped atomically.
//!
//! Every client route that names an index accepts an alias instead; the shell resolves it once when the
//! request arrives ([`resolve`]) so that a flip never tears a request in flight. Each alias is stored as
//! one record (one store key per alias), so a flip is one atomic write and two aliases never race.
//!
//! States of one alias: absent → `Some(target)` (create) → `Some(other)` (flip, the previous target goes
//! to the history) → absent (delete).
//!
//! Invariants:
//! - an alias never has the name of an existing index (it would shadow it), and an index is never created
//!   under the name of an alias;
//! - an alias points at a concrete index: never at another alias (no chains, so resolution is one step),
//!   and at an existing index unless the operator forces it (`force`, for an index about to be created);
//! - the history keeps the last [`HISTORY_LIMIT`] targets, newest first, so a flip can be undone.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use crate::error::{ErrorType, MeiliError};
use crate::tasks::time::{format_rfc3339, millis_to_nanos};
use crate::Millis;

/// How many previous targets an alias remembers.
pub const HISTORY_LIMIT: usize = 20;

/// One previous target of an alias.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flip {
    /// The target it pointed at.
    pub target: String,
    /// Until when (milliseconds since the epoch).
    pub until: Millis,
}

/// One alias.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alias {
    /// Its name.
    pub name: String,
    /// The index it resolves to.
    pub target: String,
    /// When it was created.
    pub created_at: Millis,
    /// When it last changed.
    pub updated_at: Millis,
    /// Previous targets, newest first, at most [`HISTORY_LIMIT`].
    pub history: Vec<Flip>,
}

fn time(ms: Millis) -> Value {
    Value::String(format_rfc3339(millis_to_nanos(ms)))
}

impl Alias {
    /// The stored record (also what the admin API shows, see [`Alias::view`]).
    pub fn to_json(&self) -> Value {
        json!({
            "name": self.name,
            "target": self.target,
            "createdAtMs": self.created_at,
            "updatedAtMs": self.updated_at,
            "history": self.history.iter().map(|f| json!({"target": f.target, "untilMs": f.until})).collect::<Vec<_>>(),
        })
    }

    /// Reads a stored record; `None` when it is not one.
    pub fn from_json(v: &Value) -> Option<Alias> {
        let s = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
        let n = |v: &Value, k: &str| v.get(k).and_then(Value::as_u64);
        Some(Alias {
            name: s("name")?,
            target: s("target")?,
            created_at: n(v, "createdAtMs")?,
            updated_at: n(v, "updatedAtMs")?,
            history: v
                .get("history")
                .and_then(Value::as_array)
                .map(|h| {
                    h.iter()
                        .filter_map(|f| {
                            Some(Flip {
                                target: f.get("target")?.as_str()?.to_string(),
                                until: n(f, "untilMs")?,
                            })
                        })
                        .collect()
                })
                .unwrap_or_default(),
        })
    }

    /// The admin API's view: RFC 3339 times.
    pub fn view(&self) -> Value {
        let mut m = Map::new();
        m.insert("name".into(), Value::String(self.name.clone()));
        m.insert("target".into(), Value::String(self.target.clone()));
        m.insert("createdAt".into(), time(self.created_at));
        m.insert("updatedAt".into(), time(self.updated_at));
        m.insert(
            "history".into(),
            Value::Array(
                self.history
                    .iter()
                    .map(|f| json!({"target": f.target, "until": time(f.until)}))
                    .collect(),
            ),
        );
        Value::Object(m)
    }
}

/// What an alias change needs to know about the indexes.
pub trait IndexLookup {
    /// Whether a concrete index with this uid exists.
    fn index_exists(&self, uid: &str) -> bool;
}

impl<F: Fn(&str) -> bool> IndexLookup for F {
    fn index_exists(&self, uid: &str) -> bool {
        self(uid)
    }
}

fn alias_error(status: u16, code: &str, message: String) -> MeiliError {
    MeiliError::new(status, code, ErrorType::InvalidRequest, message)
}

/// 404 `miroir_alias_not_found`.
pub fn alias_not_found(name: &str) -> MeiliError {
    alias_error(
        404,
        "miroir_alias_not_found",
        format!("Alias `{name}` not found."),
    )
}

/// 409 `miroir_index_uid_is_alias`: an index cannot be created under an alias's name.
pub fn index_uid_is_alias(name: &str, target: &str) -> MeiliError {
    alias_error(
        409,
        "miroir_index_uid_is_alias",
        format!("`{name}` is an alias of the index `{target}`; delete the alias before creating an index with this uid."),
    )
}

/// Whether `s` is a valid index uid (and so a valid alias name): 1 to 512 bytes of ASCII letters, digits,
/// `-` and `_`.
pub fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 512
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The body of a create (`{"name", "target", "force"?}`) or a flip (`{"target", "force"?}`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AliasRequest {
    /// The alias name.
    pub name: String,
    /// The index it should resolve to.
    pub target: String,
    /// Accept a target that does not exist (yet).
    pub force: bool,
}

impl AliasRequest {
    /// Reads a request body; `name` comes from the path for a flip.
    pub fn parse(body: &Value, name_from_path: Option<&str>) -> Result<AliasRequest, MeiliError> {
        let Value::Object(m) = body else {
            return Err(alias_error(
                400,
                "miroir_invalid_alias",
                "The alias request must be a JSON object.".into(),
            ));
        };
        for k in m.keys() {
            if !["name", "target", "force"].contains(&k.as_str()) {
                return Err(alias_error(
                    400,
                    "miroir_invalid_alias",
                    format!("Unknown field `{k}`: expected one of `name`, `target`, `force`."),
                ));
            }
        }
        let string = |k: &str| -> Result<Option<String>, MeiliError> {
            match m.get(k) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.clone())),
                Some(_) => Err(alias_error(
                    400,
                    "miroir_invalid_alias",
                    format!("`{k}` must be a string."),
                )),
            }
        };
        let name = match (name_from_path, string("name")?) {
            (Some(p), Some(b)) if p != b => {
                return Err(alias_error(
                    400,
                    "miroir_invalid_alias",
                    format!("The body names the alias `{b}` but the path names `{p}`."),
                ))
            }
            (Some(p), _) => p.to_string(),
            (None, Some(b)) => b,
            (None, None) => {
                return Err(alias_error(
                    400,
                    "miroir_invalid_alias",
                    "Missing field `name`.".into(),
                ))
            }
        };
        let target = string("target")?.ok_or_else(|| {
            alias_error(
                400,
                "miroir_invalid_alias",
                "Missing field `target`.".into(),
            )
        })?;
        let force = match m.get("force") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => {
                return Err(alias_error(
                    400,
                    "miroir_invalid_alias",
                    "`force` must be a boolean.".into(),
                ))
            }
        };
        for (what, v) in [("name", &name), ("target", &target)] {
            if !valid_name(v) {
                return Err(alias_error(
                    400,
                    "miroir_invalid_alias",
                    format!("`{v}` is not a valid {what}: an index uid is made of 1 to 512 ASCII letters, digits, `-` and `_`."),
                ));
            }
        }
        Ok(AliasRequest {
            name,
            target,
            force,
        })
    }
}

/// Decides a create (`existing` = `None`) or a flip (`existing` = the current alias): the new record, or
/// why not. `aliases` holds every other alias (to refuse chains).
pub fn decide(
    request: &AliasRequest,
    existing: Option<&Alias>,
    creating: bool,
    aliases: &BTreeMap<String, String>,
    indexes: &dyn IndexLookup,
    now: Millis,
) -> Result<Alias, MeiliError> {
    match (creating, existing) {
        (true, Some(_)) => {
            return Err(alias_error(
                409,
                "miroir_alias_already_exists",
                format!("Alias `{}` already exists.", request.name),
            ))
        }
        (false, None) => return Err(alias_not_found(&request.name)),
        _ => {}
    }
    if indexes.index_exists(&request.name) {
        return Err(alias_error(
            409,
            "miroir_alias_shadows_index",
            format!(
                "`{}` is the uid of an existing index; an alias cannot shadow it.",
                request.name
            ),
        ));
    }
    if request.target == request.name || aliases.contains_key(&request.target) {
        return Err(alias_error(
            400,
            "miroir_alias_chain",
            format!(
                "`{}` is an alias; an alias must point at an index.",
                request.target
            ),
        ));
    }
    if !request.force && !indexes.index_exists(&request.target) {
        return Err(alias_error(
            404,
            "miroir_alias_target_not_found",
            format!(
                "Index `{}` not found; pass `\"force\": true` to point an alias at it anyway.",
                request.target
            ),
        ));
    }
    Ok(match existing {
        None => Alias {
            name: request.name.clone(),
            target: request.target.clone(),
            created_at: now,
            updated_at: now,
            history: Vec::new(),
        },
        Some(a) => {
            let mut next = a.clone();
            if a.target != request.target {
                next.history.insert(
                    0,
                    Flip {
                        target: a.target.clone(),
                        until: now,
                    },
                );
                next.history.truncate(HISTORY_LIMIT);
                next.target = request.target.clone();
            }
            next.updated_at = now;
            next
        }
    })
}

/// Resolves a name: the alias's target, or the name itself when it is not an alias.
pub fn resolve<'a>(aliases: &'a BTreeMap<String, String>, name: &'a str) -> &'a str {
    aliases.get(name).map(String::as_str).unwrap_or(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(name: &str, target: &str, force: bool) -> AliasRequest {
        AliasRequest {
            name: name.into(),
            target: target.into(),
            force,
        }
    }

    fn exists(uid: &str) -> bool {
        ["movies_v1", "movies_v2", "books"].contains(&uid)
    }

    #[test]
    fn create_flip_and_history() {
        let none = BTreeMap::new();
        let a = decide(
            &req("movies", "movies_v1", false),
            None,
            true,
            &none,
            &exists,
            10,
        )
        .unwrap();
        assert_eq!(
            (a.target.as_str(), a.created_at, a.history.len()),
            ("movies_v1", 10, 0)
        );
        let b = decide(
            &req("movies", "movies_v2", false),
            Some(&a),
            false,
            &none,
            &exists,
            20,
        )
        .unwrap();
        assert_eq!(b.target, "movies_v2");
        assert_eq!(
            b.history,
            vec![Flip {
                target: "movies_v1".into(),
                until: 20
            }]
        );
        assert_eq!(b.created_at, 10);
        assert_eq!(Alias::from_json(&b.to_json()), Some(b.clone()));
        assert_eq!(b.view()["history"][0]["target"], "movies_v1");
        // A flip to the same target changes nothing but the time.
        let c = decide(
            &req("movies", "movies_v2", false),
            Some(&b),
            false,
            &none,
            &exists,
            30,
        )
        .unwrap();
        assert_eq!(c.history.len(), 1);
        // The history is bounded.
        let mut cur = c;
        for i in 0..50 {
            let t = if i % 2 == 0 { "movies_v1" } else { "movies_v2" };
            cur = decide(
                &req("movies", t, false),
                Some(&cur),
                false,
                &none,
                &exists,
                40 + i,
            )
            .unwrap();
        }
        assert_eq!(cur.history.len(), HISTORY_LIMIT);
        assert_eq!(cur.history[0].until, 89);
    }

    #[test]
    fn refusals() {
        let mut aliases = BTreeMap::new();
        aliases.insert("films".to_string(), "movies_v1".to_string());
        let code = |r: Result<Alias, MeiliError>| r.unwrap_err().code;
        assert_eq!(
            code(decide(
                &req("books", "movies_v1", false),
                None,
                true,
                &aliases,
                &exists,
                1
            )),
            "miroir_alias_shadows_index"
        );
        assert_eq!(
            code(decide(
                &req("x", "films", false),
                None,
                true,
                &aliases,
                &exists,
                1
            )),
            "miroir_alias_chain"
        );
        assert_eq!(
            code(decide(
                &req("x", "x", true),
                None,
                true,
                &aliases,
                &exists,
                1
            )),
            "miroir_alias_chain"
        );
        assert_eq!(
            code(decide(
                &req("x", "nope", false),
                None,
                true,
                &aliases,
                &exists,
                1
            )),
            "miroir_alias_target_not_found"
        );
        assert!(decide(&req("x", "nope", true), None, true, &aliases, &exists, 1).is_ok());
        let a = decide(&req("x", "books", false), None, true, &aliases, &exists, 1).unwrap();
        assert_eq!(
            code(decide(
                &req("x", "books", false),
                Some(&a),
                true,
                &aliases,
                &exists,
                1
            )),
            "miroir_alias_already_exists"
        );
        let e = decide(&req("y", "books", false), None, false, &aliases, &exists, 1).unwrap_err();
        assert_eq!((e.status, e.code.as_str()), (404, "miroir_alias_not_found"));
    }

    #[test]
    fn requests_are_validated() {
        let ok = AliasRequest::parse(&json!({"name": "a", "target": "b"}), None).unwrap();
        assert_eq!(ok, req("a", "b", false));
        assert_eq!(
            AliasRequest::parse(&json!({"target": "b", "force": true}), Some("a")).unwrap(),
            req("a", "b", true)
        );
        for bad in [
            json!([]),
            json!({"target": "b"}),
            json!({"name": "a"}),
            json!({"name": "a", "target": "b", "extra": 1}),
            json!({"name": "a b", "target": "b"}),
            json!({"name": "a", "target": "../b"}),
            json!({"name": "a", "target": 3}),
            json!({"name": "a", "target": "b", "force": "yes"}),
        ] {
            let e = AliasRequest::parse(&bad, None).unwrap_err();
            assert_eq!(
                (e.status, e.code.as_str()),
                (400, "miroir_invalid_alias"),
                "{bad}"
            );
        }
        let e = AliasRequest::parse(&json!({"name": "a", "target": "b"}), Some("c")).unwrap_err();
        assert_eq!(e.code, "miroir_invalid_alias");
    }

    #[test]
    fn resolution_is_one_step() {
        let mut aliases = BTreeMap::new();
        aliases.insert("movies".to_string(), "movies_v2".to_string());
        assert_eq!(resolve(&aliases, "movies"), "movies_v2");
        assert_eq!(resolve(&aliases, "books"), "books");
    }
}
