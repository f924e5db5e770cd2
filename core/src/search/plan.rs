//! Planning: from the client's search body to the shard request and per-node requests.
//!
//! States: client body → validated pagination → shard request → node requests (one per covering node).
//! Invariants: only `offset`, `limit`, `page` and `hitsPerPage` are validated here (Miroir rewrites them);
//! every other parameter reaches the nodes untouched, so their validation errors are Meilisearch's own.

use serde_json::{Map, Value};

use super::filter::{and_filter, shard_filter, ShardRestriction};
use super::{Pagination, SearchContext, SearchPlan, DEFAULT_SEARCH_LIMIT};
use crate::{MeiliError, SHARD_FIELD};

/// How deserr names the kind of a JSON value in "expected …, but found …" messages.
pub(crate) fn value_kind(v: &Value) -> String {
    let rendered = serde_json::to_string(v).unwrap_or_default();
    match v {
        Value::Null => "null".to_string(),
        Value::Bool(_) => format!("a boolean: `{rendered}`"),
        Value::Number(n) if n.is_u64() => format!("a positive integer: `{rendered}`"),
        Value::Number(n) if n.is_i64() => format!("a negative integer: `{rendered}`"),
        Value::Number(_) => format!("a number: `{rendered}`"),
        Value::String(_) => format!("a string: `{rendered}`"),
        Value::Array(_) => format!("an array: `{rendered}`"),
        Value::Object(_) => format!("an object: `{rendered}`"),
    }
}

/// Reads a non-negative integer parameter the way Meilisearch's deserializer does. `nullable` is true for
/// `Option<usize>` fields (`page`, `hitsPerPage`), where `null` means absent.
fn usize_param(
    body: &Map<String, Value>,
    key: &str,
    code: &str,
    nullable: bool,
) -> Result<Option<usize>, MeiliError> {
    match body.get(key) {
        None => Ok(None),
        Some(Value::Null) if nullable => Ok(None),
        Some(v) => match v.as_u64().and_then(|n| usize::try_from(n).ok()) {
            Some(n) => Ok(Some(n)),
            None => Err(MeiliError::invalid(
                400,
                code,
                format!(
                    "Invalid value type at `.{key}`: expected a positive integer, but found {}",
                    value_kind(v)
                ),
            )),
        },
    }
}

/// Validates the pagination parameters in body order (the first invalid one is reported, as deserr does).
/// `offset`, `limit`, `page`, `hitsPerPage` as the client sent them.
type RawPagination = [Option<usize>; 4];

fn read_pagination(client: &Map<String, Value>) -> Result<RawPagination, MeiliError> {
    let (mut offset, mut limit, mut page, mut hpp) = (None, None, None, None);
    for key in client.keys() {
        match key.as_str() {
            "offset" => offset = usize_param(client, "offset", "invalid_search_offset", false)?,
            "limit" => limit = usize_param(client, "limit", "invalid_search_limit", false)?,
            "page" => page = usize_param(client, "page", "invalid_search_page", true)?,
            "hitsPerPage" => {
                hpp = usize_param(client, "hitsPerPage", "invalid_search_hits_per_page", true)?
            }
            _ => {}
        }
    }
    Ok([offset, limit, page, hpp])
}

/// Plans a client search (`POST /indexes/{uid}/search` body, or the body built from a GET query).
///
/// Errors: Meilisearch's `invalid_search_offset`, `invalid_search_limit`, `invalid_search_page` and
/// `invalid_search_hits_per_page` (status 400) with its exact messages. Every other parameter is passed
/// through for the nodes to validate.
pub fn plan_search(
    client: &Map<String, Value>,
    ctx: &SearchContext,
) -> Result<SearchPlan, MeiliError> {
    let [offset, limit, page, hpp] = read_pagination(client)?;
    let max = ctx.max_total_hits;
    let mut req = client.clone();
    for key in ["offset", "limit", "page", "hitsPerPage"] {
        req.remove(key);
    }

    let (pagination, window_offset, window_limit) = if page.is_some() || hpp.is_some() {
        let hits_per_page = hpp.unwrap_or(DEFAULT_SEARCH_LIMIT);
        let page = page.unwrap_or(1);
        // page 0 gives a limit of 0, as in Meilisearch.
        let (off, lim) = match page.checked_sub(1) {
            Some(p) => (p.saturating_mul(hits_per_page), hits_per_page),
            None => (0, 0),
        };
        let off = off.min(max);
        let lim = lim.min(max - off);
        req.insert("page".into(), Value::from(1u64));
        req.insert("hitsPerPage".into(), Value::from((off + lim) as u64));
        (
            Pagination::Pages {
                page,
                hits_per_page,
            },
            off,
            lim,
        )
    } else {
        let offset = offset.unwrap_or(0);
        let limit = limit.unwrap_or(DEFAULT_SEARCH_LIMIT);
        let off = offset.min(max);
        let lim = limit.min(max - off);
        req.insert("offset".into(), Value::from(0u64));
        req.insert("limit".into(), Value::from((off + lim) as u64));
        (Pagination::OffsetLimit { offset, limit }, off, lim)
    };

    // Ranking details drive the merge: always ask for them, remember whether the client did. A value that is
    // not a boolean is left for the node to reject.
    let mut asked = [false, false];
    for (i, key) in ["showRankingScore", "showRankingScoreDetails"]
        .into_iter()
        .enumerate()
    {
        match client.get(key) {
            None | Some(Value::Bool(_)) => {
                asked[i] = client.get(key).and_then(Value::as_bool).unwrap_or(false);
                req.insert(key.into(), Value::Bool(true));
            }
            Some(_) => {}
        }
    }

    let distinct = match client.get("distinct") {
        Some(Value::String(d)) => Some(d.clone()),
        Some(Value::Null) | None => ctx.distinct_attribute.clone(),
        // Invalid: the node rejects it.
        Some(_) => None,
    };

    let mut added_attributes = Vec::new();
    if let Some(Value::Array(attrs)) = req.get_mut("attributesToRetrieve") {
        let all_strings = attrs.iter().all(Value::is_string);
        let star = attrs.iter().any(|a| a.as_str() == Some("*"));
        if all_strings && !star {
            let mut needed = vec![SHARD_FIELD.to_string()];
            if let Some(d) = &distinct {
                needed.push(d.clone());
            }
            for field in needed {
                if !attrs.iter().any(|a| a.as_str() == Some(field.as_str())) {
                    attrs.push(Value::String(field.clone()));
                    added_attributes.push(field);
                }
            }
        }
    }

    let query = match client.get("q") {
        Some(Value::String(q)) => q.clone(),
        _ => String::new(),
    };

    Ok(SearchPlan {
        shard_request: req,
        pagination,
        window_offset,
        window_limit,
        show_ranking_score: asked[0],
        show_ranking_score_details: asked[1],
        distinct,
        added_attributes,
        query,
        context: ctx.clone(),
    })
}

impl SearchPlan {
    /// The request for one node. With a restriction, the node is told to answer only for its assigned shards
    /// among those it holds (the cheapest equivalent filter, see [`shard_filter`]), AND-ed into the client's
    /// filter; without one, the node answers for everything it holds.
    pub fn node_request(&self, restriction: Option<&ShardRestriction>) -> Map<String, Value> {
        let mut req = self.shard_request.clone();
        if let Some(r) = restriction {
            if let Some(extra) = shard_filter(&r.assigned, &r.held) {
                let combined = and_filter(req.get("filter"), &extra);
                req.insert("filter".into(), combined);
            }
        }
        req
    }
}
