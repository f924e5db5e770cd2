//! Federated multi-search (`POST /multi-search` with `federation`): each query is run through the usual
//! scatter path (as an ordinary search of its index), then [`merge_federated`] merges the per-query answers
//! into one list as Meilisearch does.
//!
//! States of one federated search (the caller drives them; this module is pure):
//! 1. `Parsed`: [`Federation::parse`] read `federation` (`offset`/`limit`, or `page`/`hitsPerPage`);
//!    [`federated_query`] validated each query (no pagination, no facets, `federationOptions.weight`) and
//!    built the search actually run: `offset: 0`, `limit` = the hits the federated window needs,
//!    `showRankingScore: true`, and the index's primary key retrieved so duplicates can be recognised.
//! 2. `Answered`: one ordinary search answer per query.
//! 3. `Merged`: [`merge_federated`] → the federated response.
//!
//! Invariants (Meilisearch's `perform_federated_search`):
//! - hits are ordered by weighted ranking score (`_rankingScore × weight`), biggest first; ties go to the
//!   query with the smaller position; the order inside one query is kept;
//! - a document returned by several queries on the same index appears once, at its best place;
//! - every hit carries `_federation` {`indexUid`, `queriesPosition`, `weightedRankingScore`};
//!   `_rankingScore`/`_rankingScoreDetails` stay only where the query asked for them, and a primary key
//!   added only to recognise duplicates is removed again;
//! - the window is `offset`/`limit` (response `limit`, `offset`, `estimatedTotalHits`), or `page`/
//!   `hitsPerPage` (response `hitsPerPage`, `page`, `totalPages`, `totalHits`); `requestUid` is the first
//!   query's.
//!
//! Known limits: the order compares the global weighted score only (Meilisearch compares the weighted score
//! values rule by rule first, which differs only on ties of the global score); the total is the sum of the
//! queries' totals minus the duplicates seen in the fetched hits (exact when every hit was fetched);
//! `facetsByIndex`, `mergeFacets` and `distinct` in `federation` and `federationOptions.remote` are not
//! carried (the caller answers `miroir_unsupported_route`, see [`Federation::unsupported`]).

use crate::error::MeiliError;
use serde_json::{json, Map, Value};
use std::collections::HashSet;

/// Meilisearch's default `limit` and `hitsPerPage`.
const DEFAULT_LIMIT: usize = 20;

/// The client's `federation` object.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Federation {
    /// `offset` (default 0).
    pub offset: usize,
    /// `limit` (default 20).
    pub limit: usize,
    /// `page`, when paginating by page.
    pub page: Option<usize>,
    /// `hitsPerPage`, when paginating by page.
    pub hits_per_page: Option<usize>,
    /// The first field Miroir does not carry (`facetsByIndex`, `mergeFacets`, `distinct`), if any.
    pub unsupported: Option<String>,
}

fn usize_field(
    obj: &Map<String, Value>,
    field: &str,
    code: &str,
) -> Result<Option<usize>, MeiliError> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v.as_u64().map(|n| Some(n as usize)).ok_or_else(|| {
            MeiliError::invalid(
                400,
                code,
                format!("Invalid value type at `.federation.{field}`: expected a positive integer, but found {v}"),
            )
        }),
    }
}

impl Federation {
    /// Reads the request's `federation` value (an object).
    pub fn parse(v: &Value) -> Result<Federation, MeiliError> {
        let Value::Object(obj) = v else {
            return Err(MeiliError::invalid(
                400,
                "bad_request",
                format!("Invalid value type at `.federation`: expected an object, but found {v}"),
            ));
        };
        let unsupported = ["facetsByIndex", "mergeFacets", "distinct"]
            .into_iter()
            .find(|f| {
                obj.get(*f).is_some_and(|v| match v {
                    Value::Null => false,
                    Value::Object(m) => !m.is_empty(),
                    _ => true,
                })
            })
            .map(str::to_string);
        Ok(Federation {
            offset: usize_field(obj, "offset", "invalid_search_offset")?.unwrap_or(0),
            limit: usize_field(obj, "limit", "invalid_search_limit")?.unwrap_or(DEFAULT_LIMIT),
            page: usize_field(obj, "page", "invalid_search_page")?,
            hits_per_page: usize_field(obj, "hitsPerPage", "invalid_search_hits_per_page")?,
            unsupported,
        })
    }

    /// The field of `federation` Miroir does not carry, if any.
    pub fn unsupported(&self) -> Option<&str> {
        self.unsupported.as_deref()
    }

    fn paged(&self) -> bool {
        self.page.is_some() || self.hits_per_page.is_some()
    }

    /// How many hits each query must return: the end of the federated window.
    pub fn required_hits(&self) -> usize {
        let (skip, take) = self.window();
        skip.saturating_add(take)
    }

    /// (skip, take) of the merged list.
    fn window(&self) -> (usize, usize) {
        match (self.page, self.hits_per_page) {
            (None, None) => (self.offset, self.limit),
            (None, Some(h)) => (0, h),
            (Some(0), _) => (0, 0),
            (Some(p), None) => ((p - 1).saturating_mul(DEFAULT_LIMIT), DEFAULT_LIMIT),
            (Some(p), Some(h)) => ((p - 1).saturating_mul(h), h),
        }
    }
}

/// One query of a federated search, ready to run as an ordinary search of `index_uid`.
#[derive(Debug, Clone, PartialEq)]
pub struct FederatedQuery {
    /// The index searched.
    pub index_uid: String,
    /// `federationOptions.weight` (default 1).
    pub weight: f64,
    /// The search body to run (without `indexUid` and `federationOptions`).
    pub search: Map<String, Value>,
    /// The index's primary key, when known (to recognise duplicates).
    pub primary_key: Option<String>,
    keep_score: bool,
    strip_primary_key: bool,
}

fn inside(position: usize, e: MeiliError) -> MeiliError {
    MeiliError {
        message: format!("Inside `.queries[{position}]`: {}", e.message),
        ..e
    }
}

/// Rejects `federationOptions` in a query of a non-federated multi-search, as Meilisearch does.
pub fn check_non_federated(position: usize, query: &Map<String, Value>) -> Result<(), MeiliError> {
    if query.get("federationOptions").is_some_and(|v| !v.is_null()) {
        return Err(MeiliError::invalid(
            400,
            "invalid_multi_search_federation_options",
            format!("Using `federationOptions` is not allowed in a non-federated search.\n - Hint: remove `federationOptions` from query #{position} or add `federation` to the request."),
        ));
    }
    Ok(())
}

/// Validates query `position` of a federated search (its `indexUid` already read) and builds the search
/// to run. Returns `Ok(Err(field))` for a `federationOptions` field Miroir does not carry (`remote`).
pub fn federated_query(
    position: usize,
    index_uid: &str,
    query: &Map<String, Value>,
    federation: &Federation,
    primary_key: Option<&str>,
) -> Result<Result<FederatedQuery, String>, MeiliError> {
    for field in ["offset", "limit", "page", "hitsPerPage"] {
        if query.get(field).is_some_and(|v| !v.is_null()) {
            return Err(MeiliError::invalid(
                400,
                "invalid_multi_search_query_pagination",
                format!("Inside `.queries[{position}]`: Using pagination options is not allowed in federated queries.\n - Hint: remove `{field}` from query #{position} or remove `federation` from the request\n - Hint: pass `federation.limit` and `federation.offset` for pagination in federated search"),
            ));
        }
    }
    if let Some(facets) = query.get("facets").filter(|v| !v.is_null()) {
        let list: Vec<String> = facets
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|f| f.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        return Err(MeiliError::invalid(
            400,
            "invalid_multi_search_query_facets",
            format!("Inside `.queries[{position}]`: Using facet options is not allowed in federated queries.\n - Hint: remove `facets` from query #{position} or remove `federation` from the request\n - Hint: pass `federation.facetsByIndex.{index_uid}: {list:?}` for facets in federated search"),
        ));
    }
    let mut weight = 1.0;
    match query.get("federationOptions") {
        None | Some(Value::Null) => {}
        Some(Value::Object(o)) => {
            if o.get("remote").is_some_and(|v| !v.is_null()) {
                return Ok(Err("federationOptions.remote".into()));
            }
            match o.get("weight") {
                None | Some(Value::Null) => {}
                Some(w) => match w.as_f64() {
                    Some(w) if w >= 0.0 => weight = w,
                    _ => {
                        return Err(inside(
                            position,
                            MeiliError::invalid(
                                400,
                                "invalid_multi_search_weight",
                                format!("Invalid value at `.federationOptions.weight`: the weight must be positive, got `{w}`"),
                            ),
                        ))
                    }
                },
            }
        }
        Some(other) => {
            return Err(inside(
                position,
                MeiliError::invalid(
                    400,
                    "bad_request",
                    format!("Invalid value type at `.federationOptions`: expected an object, but found {other}"),
                ),
            ))
        }
    }
    let mut search = query.clone();
    search.remove("indexUid");
    search.remove("federationOptions");
    let keep_score = search.get("showRankingScore") == Some(&Value::Bool(true));
    search.insert("showRankingScore".into(), Value::Bool(true));
    search.insert("offset".into(), json!(0));
    search.insert("limit".into(), json!(federation.required_hits()));
    let mut strip_primary_key = false;
    if let (Some(pk), Some(Value::Array(attrs))) =
        (primary_key, search.get_mut("attributesToRetrieve"))
    {
        let all = attrs
            .iter()
            .any(|a| a.as_str() == Some("*") || a.as_str() == Some(pk));
        if !all {
            attrs.push(Value::String(pk.to_string()));
            strip_primary_key = true;
        }
    }
    Ok(Ok(FederatedQuery {
        index_uid: index_uid.to_string(),
        weight,
        search,
        primary_key: primary_key.map(str::to_string),
        keep_score,
        strip_primary_key,
    }))
}

fn bad(what: &str) -> MeiliError {
    MeiliError::internal(format!("a federated query answer cannot be merged: {what}"))
}

fn total_of(answer: &Value) -> u64 {
    answer
        .get("estimatedTotalHits")
        .or_else(|| answer.get("totalHits"))
        .and_then(Value::as_u64)
        .unwrap_or(0)
}

/// Merges the answers (one per query, in query order) into the federated response.
pub fn merge_federated(
    queries: &[FederatedQuery],
    answers: &[Value],
    federation: &Federation,
) -> Result<Value, MeiliError> {
    if queries.len() != answers.len() {
        return Err(bad("one answer per query expected"));
    }
    // (weighted score, query position, position in the query, hit)
    let mut all: Vec<(f64, usize, usize, Map<String, Value>)> = Vec::new();
    let mut total: u64 = 0;
    let mut processing: u64 = 0;
    let request_uid = answers.iter().find_map(|a| a.get("requestUid").cloned());
    for (qi, (q, answer)) in queries.iter().zip(answers).enumerate() {
        total = total.saturating_add(total_of(answer));
        processing = processing.max(
            answer
                .get("processingTimeMs")
                .and_then(Value::as_u64)
                .unwrap_or(0),
        );
        let hits = answer
            .get("hits")
            .and_then(Value::as_array)
            .ok_or_else(|| bad("no `hits`"))?;
        for (pos, hit) in hits.iter().enumerate() {
            let Value::Object(hit) = hit else {
                return Err(bad("a hit is not an object"));
            };
            let score = hit
                .get("_rankingScore")
                .and_then(Value::as_f64)
                .ok_or_else(|| bad("a hit has no `_rankingScore`"))?;
            all.push((score * q.weight, qi, pos, hit.clone()));
        }
    }
    all.sort_by(|a, b| {
        b.0.partial_cmp(&a.0)
            .unwrap_or(std::cmp::Ordering::Equal)
            .then(a.1.cmp(&b.1))
            .then(a.2.cmp(&b.2))
    });
    let mut seen: HashSet<(String, String)> = HashSet::new();
    let mut merged = Vec::with_capacity(all.len());
    for (score, qi, _, hit) in all {
        let q = &queries[qi];
        if let Some(id) = q.primary_key.as_deref().and_then(|pk| hit.get(pk)) {
            if !seen.insert((q.index_uid.clone(), id.to_string())) {
                total = total.saturating_sub(1);
                continue;
            }
        }
        merged.push((score, qi, hit));
    }
    let (skip, take) = federation.window();
    let hits: Vec<Value> = merged
        .into_iter()
        .skip(skip)
        .take(take)
        .map(|(score, qi, mut hit)| {
            let q = &queries[qi];
            if !q.keep_score {
                hit.remove("_rankingScore");
            }
            if q.strip_primary_key {
                if let Some(pk) = &q.primary_key {
                    hit.remove(pk);
                }
            }
            hit.insert(
                "_federation".into(),
                json!({"indexUid": q.index_uid, "queriesPosition": qi, "weightedRankingScore": score}),
            );
            Value::Object(hit)
        })
        .collect();
    let mut out = Map::new();
    out.insert("hits".into(), Value::Array(hits));
    out.insert("processingTimeMs".into(), json!(processing));
    if federation.paged() {
        let hits_per_page = federation.hits_per_page.unwrap_or(DEFAULT_LIMIT);
        let page = federation.page.unwrap_or(1);
        let total_pages = if hits_per_page == 0 {
            0
        } else {
            total.div_ceil(hits_per_page as u64)
        };
        out.insert("hitsPerPage".into(), json!(hits_per_page));
        out.insert("page".into(), json!(page));
        out.insert("totalPages".into(), json!(total_pages));
        out.insert("totalHits".into(), json!(total));
    } else {
        out.insert("limit".into(), json!(federation.limit));
        out.insert("offset".into(), json!(federation.offset));
        out.insert("estimatedTotalHits".into(), json!(total));
    }
    if let Some(uid) = request_uid {
        out.insert("requestUid".into(), uid);
    }
    Ok(Value::Object(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(pos: usize, index: &str, body: Value, fed: &Federation) -> FederatedQuery {
        federated_query(pos, index, body.as_object().unwrap(), fed, Some("id"))
            .unwrap()
            .unwrap()
    }

    fn hit(id: u64, score: f64) -> Value {
        json!({"id": id, "_rankingScore": score})
    }

    #[test]
    fn parse_federation_and_window() {
        let f = Federation::parse(&json!({"offset": 2, "limit": 3})).unwrap();
        assert_eq!((f.offset, f.limit, f.required_hits()), (2, 3, 5));
        let f = Federation::parse(&json!({})).unwrap();
        assert_eq!((f.offset, f.limit, f.unsupported()), (0, 20, None));
        let f = Federation::parse(&json!({"page": 2, "hitsPerPage": 5})).unwrap();
        assert_eq!((f.window(), f.required_hits()), ((5, 5), 10));
        assert_eq!(
            Federation::parse(&json!({"page": 0}))
                .unwrap()
                .required_hits(),
            0
        );
        assert_eq!(
            Federation::parse(&json!({"page": 2})).unwrap().window(),
            (20, 20)
        );
        let f = Federation::parse(&json!({"facetsByIndex": {"m": ["g"]}})).unwrap();
        assert_eq!(f.unsupported(), Some("facetsByIndex"));
        assert_eq!(
            Federation::parse(&json!({"facetsByIndex": {}}))
                .unwrap()
                .unsupported(),
            None
        );
        assert_eq!(
            Federation::parse(&json!(3)).unwrap_err().code,
            "bad_request"
        );
        assert_eq!(
            Federation::parse(&json!({"limit": -1})).unwrap_err().code,
            "invalid_search_limit"
        );
        assert_eq!(
            Federation::parse(&json!({"offset": "a"})).unwrap_err().code,
            "invalid_search_offset"
        );
    }

    #[test]
    fn query_validation() {
        let f = Federation::parse(&json!({"limit": 4, "offset": 1})).unwrap();
        let m = |v: Value| v.as_object().unwrap().clone();
        let e = federated_query(1, "m", &m(json!({"limit": 3})), &f, None).unwrap_err();
        assert_eq!(e.code, "invalid_multi_search_query_pagination");
        assert!(e
            .message
            .starts_with("Inside `.queries[1]`: Using pagination"));
        assert!(e.message.contains("remove `limit` from query #1"));
        let e = federated_query(0, "m", &m(json!({"facets": ["g"]})), &f, None).unwrap_err();
        assert_eq!(e.code, "invalid_multi_search_query_facets");
        assert!(
            e.message.contains("federation.facetsByIndex.m: [\"g\"]"),
            "{}",
            e.message
        );
        let e = federated_query(
            0,
            "m",
            &m(json!({"federationOptions": {"weight": -1}})),
            &f,
            None,
        )
        .unwrap_err();
        assert_eq!(e.code, "invalid_multi_search_weight");
        let e = federated_query(0, "m", &m(json!({"federationOptions": 1})), &f, None).unwrap_err();
        assert_eq!(e.code, "bad_request");
        let remote = federated_query(
            0,
            "m",
            &m(json!({"federationOptions": {"remote": "r"}})),
            &f,
            None,
        )
        .unwrap();
        assert!(remote.is_err());
        let ok = q(
            0,
            "m",
            json!({"q": "x", "indexUid": "m", "federationOptions": {"weight": 2.0}, "attributesToRetrieve": ["title"]}),
            &f,
        );
        assert_eq!(ok.weight, 2.0);
        assert_eq!(ok.search["limit"], 5);
        assert_eq!(ok.search["offset"], 0);
        assert_eq!(ok.search["showRankingScore"], true);
        assert_eq!(ok.search["attributesToRetrieve"], json!(["title", "id"]));
        assert!(
            ok.search.get("indexUid").is_none() && ok.search.get("federationOptions").is_none()
        );
        assert!(check_non_federated(0, &m(json!({"federationOptions": {}}))).is_err());
        assert!(check_non_federated(0, &m(json!({"q": "a"}))).is_ok());
    }

    #[test]
    fn merges_by_weighted_score_with_ties_to_the_first_query() {
        let f = Federation::parse(&json!({"limit": 10})).unwrap();
        let qs = vec![
            q(0, "a", json!({}), &f),
            q(
                1,
                "b",
                json!({"federationOptions": {"weight": 0.5}, "showRankingScore": true}),
                &f,
            ),
        ];
        let answers = vec![
            json!({"hits": [hit(1, 0.9), hit(2, 0.4)], "estimatedTotalHits": 2, "processingTimeMs": 3, "requestUid": "r0"}),
            json!({"hits": [hit(7, 1.0), hit(8, 0.8)], "estimatedTotalHits": 2, "processingTimeMs": 5}),
        ];
        let r = merge_federated(&qs, &answers, &f).unwrap();
        let order: Vec<(String, u64)> = r["hits"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| {
                (
                    h["_federation"]["indexUid"].as_str().unwrap().to_string(),
                    h["id"].as_u64().unwrap(),
                )
            })
            .collect();
        // 0.9, then 0.5 (b:7) ... a:2 at 0.4 and b:8 at 0.4: tie → query 0 first
        assert_eq!(
            order,
            vec![
                ("a".into(), 1),
                ("b".into(), 7),
                ("a".into(), 2),
                ("b".into(), 8)
            ]
        );
        assert!(r["hits"][0].get("_rankingScore").is_none());
        assert_eq!(r["requestUid"], "r0");
        assert_eq!(r["hits"][1]["_rankingScore"], 1.0);
        assert_eq!(r["hits"][1]["_federation"]["weightedRankingScore"], 0.5);
        assert_eq!(r["hits"][1]["_federation"]["queriesPosition"], 1);
        assert_eq!(
            (
                r["estimatedTotalHits"].clone(),
                r["processingTimeMs"].clone()
            ),
            (json!(4), json!(5))
        );
        assert_eq!(
            (r["limit"].clone(), r["offset"].clone()),
            (json!(10), json!(0))
        );
    }

    #[test]
    fn duplicates_on_one_index_appear_once_and_windows_apply() {
        let f = Federation::parse(&json!({"offset": 1, "limit": 1})).unwrap();
        let qs = vec![q(0, "a", json!({}), &f), q(1, "a", json!({}), &f)];
        let answers = vec![
            json!({"hits": [hit(1, 0.9), hit(2, 0.3)], "estimatedTotalHits": 2}),
            json!({"hits": [hit(1, 0.95), hit(3, 0.5)], "estimatedTotalHits": 2}),
        ];
        let r = merge_federated(&qs, &answers, &f).unwrap();
        // merged: a:1 (q1, .95), a:3 (.5), a:2 (.3) → window [1..2] = a:3
        assert_eq!(r["hits"].as_array().unwrap().len(), 1);
        assert_eq!(r["hits"][0]["id"], 3);
        assert_eq!(r["estimatedTotalHits"], 3);
        let paged = Federation::parse(&json!({"page": 1, "hitsPerPage": 2})).unwrap();
        let r = merge_federated(&qs, &answers, &paged).unwrap();
        assert_eq!(
            (
                r["totalHits"].clone(),
                r["totalPages"].clone(),
                r["page"].clone()
            ),
            (json!(3), json!(2), json!(1))
        );
        assert!(r.get("limit").is_none());
        assert_eq!(r["hits"][0]["_federation"]["queriesPosition"], 1);
    }

    #[test]
    fn an_added_primary_key_is_removed_again() {
        let f = Federation::default();
        let f = Federation { limit: 5, ..f };
        let qs = vec![q(0, "a", json!({"attributesToRetrieve": ["t"]}), &f)];
        let r = merge_federated(
            &qs,
            &[json!({"hits": [{"id": 1, "t": "x", "_rankingScore": 1.0}]})],
            &f,
        )
        .unwrap();
        assert!(r["hits"][0].get("id").is_none());
        assert_eq!(r["hits"][0]["t"], "x");
    }

    #[test]
    fn unusable_answers_are_errors() {
        let f = Federation::default();
        let qs = vec![q(0, "a", json!({}), &f)];
        assert!(merge_federated(&qs, &[], &f).is_err());
        assert!(merge_federated(&qs, &[json!({})], &f).is_err());
        assert!(merge_federated(&qs, &[json!({"hits": [1]})], &f).is_err());
        assert!(merge_federated(&qs, &[json!({"hits": [{"id": 1}]})], &f).is_err());
    }
}
