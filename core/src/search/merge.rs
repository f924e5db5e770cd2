//! Merging the nodes' search answers into one Meilisearch response.
//!
//! States: node answers → validated lists → k-way merged (with distinct) → windowed → stripped → response.
//!
//! Invariants:
//! - The merge is a k-way merge: each node's list keeps its own order, and at each step the best head wins by
//!   [`compare_hits`] (the ranking rules in order), then by lowest `_miroir_shard`, then by lowest node
//!   position in the covering set. Because each node's order is kept, the first `n` merged hits only ever
//!   need the first `n` hits of each node, which is exactly what the over-fetched window provides.
//! - With `distinct`, the first (best) hit of each distinct value wins; hits without the attribute are each
//!   distinct. Because each node already answered distinct hits, the first `n` distinct values of the merge
//!   are found within the first `n` hits of each node.

use std::cmp::Ordering;
use std::collections::HashSet;

use serde_json::{Map, Value};

use super::facets::{merge_facet_distribution, merge_facet_stats};
use super::{NodeAnswer, Pagination, SearchPlan};
use crate::{MeiliError, RESERVED_PREFIX, SHARD_FIELD};

/// The comparable content of one ranking-rule entry of `_rankingScoreDetails`.
enum RuleValue<'a> {
    /// Rules with a score (words, typo, proximity, attribute, exactness…, vector similarity): higher first.
    Score(f64),
    /// Custom ranking rules and `sort` entries (`field:asc|desc`), carrying the field's value.
    Sort { asc: bool, value: &'a Value },
    /// Geo sort entries (`_geoPoint(lat, lng):asc|desc`), carrying the distance.
    Geo { asc: bool, distance: Option<f64> },
    /// Anything this version does not know how to compare.
    Unknown,
}

fn direction(name: &str) -> Option<bool> {
    if name.ends_with(":asc") {
        Some(true)
    } else if name.ends_with(":desc") {
        Some(false)
    } else {
        None
    }
}

fn rule_value<'a>(name: &str, entry: &'a Value) -> RuleValue<'a> {
    if let Some(asc) = direction(name) {
        if name.starts_with("_geoPoint(") {
            return RuleValue::Geo {
                asc,
                distance: entry.get("distance").and_then(Value::as_f64),
            };
        }
        if let Some(value) = entry.get("value") {
            return RuleValue::Sort { asc, value };
        }
    }
    if let Some(score) = entry.get("score").and_then(Value::as_f64) {
        return RuleValue::Score(score);
    }
    if let Some(sim) = entry.get("similarity") {
        return RuleValue::Score(sim.as_f64().unwrap_or(0.0));
    }
    if name == "skipped" {
        return RuleValue::Score(0.0);
    }
    RuleValue::Unknown
}

/// Meilisearch's facet normalisation, approximated: trimmed and lowercased (Meilisearch also applies a
/// Unicode compatibility decomposition).
pub(crate) fn normalize(s: &str) -> String {
    s.trim().to_lowercase()
}

/// Meilisearch's sort-value order as "is `left` better than `right`": `null` (missing) is always last,
/// numbers always come before strings in both directions, strings compare by their normalised form.
fn compare_sort_values(asc: bool, left: &Value, right: &Value) -> Ordering {
    let ord = match (left, right) {
        (Value::Null, Value::Null) => return Ordering::Equal,
        (Value::Null, _) => return Ordering::Less,
        (_, Value::Null) => return Ordering::Greater,
        (Value::Number(_), Value::String(_)) => return Ordering::Greater,
        (Value::String(_), Value::Number(_)) => return Ordering::Less,
        (Value::Number(l), Value::Number(r)) => l
            .as_f64()
            .unwrap_or(0.0)
            .partial_cmp(&r.as_f64().unwrap_or(0.0))
            .unwrap_or(Ordering::Equal),
        (Value::String(l), Value::String(r)) => normalize(l).cmp(&normalize(r)),
        _ => return Ordering::Equal,
    };
    // Ascending: the smaller value is better.
    if asc {
        ord.reverse()
    } else {
        ord
    }
}

/// "Is `a` better than `b`" for one rule (`Greater` = `a` better).
fn compare_rule(a: &RuleValue, b: &RuleValue) -> Ordering {
    match (a, b) {
        (RuleValue::Score(l), RuleValue::Score(r)) => l.partial_cmp(r).unwrap_or(Ordering::Equal),
        (
            RuleValue::Sort { asc, value: l },
            RuleValue::Sort {
                asc: asc_r,
                value: r,
            },
        ) if asc == asc_r => compare_sort_values(*asc, l, r),
        (
            RuleValue::Geo { asc, distance: l },
            RuleValue::Geo {
                asc: asc_r,
                distance: r,
            },
        ) if asc == asc_r => match (l, r) {
            (None, None) => Ordering::Equal,
            (None, Some(_)) => Ordering::Less,
            (Some(_), None) => Ordering::Greater,
            (Some(l), Some(r)) => {
                let ord = l.partial_cmp(r).unwrap_or(Ordering::Equal);
                if *asc {
                    ord.reverse()
                } else {
                    ord
                }
            }
        },
        _ => Ordering::Equal,
    }
}

/// The entries of `_rankingScoreDetails`, sorted by their `order`.
fn sorted_details(hit: &Map<String, Value>) -> Option<Vec<(&str, &Value)>> {
    let details = hit.get("_rankingScoreDetails")?.as_object()?;
    let mut entries: Vec<(u64, &str, &Value)> = details
        .iter()
        .map(|(name, entry)| {
            let order = entry
                .get("order")
                .and_then(Value::as_u64)
                .unwrap_or(u64::MAX);
            (order, name.as_str(), entry)
        })
        .collect();
    entries.sort_by_key(|(order, _, _)| *order);
    Some(entries.into_iter().map(|(_, n, e)| (n, e)).collect())
}

/// Compares two hits by the ranking rules, in order, as one Meilisearch node ranks them: `Less` means `a`
/// ranks before `b`. Reads `_rankingScoreDetails` (rules sorted by `order`: scores higher first, custom
/// ranking and sort values in their direction, geo distances in theirs); falls back to `_rankingScore` only
/// when either hit lacks details. `Equal` means the ranking rules cannot tell them apart.
pub fn compare_hits(a: &Map<String, Value>, b: &Map<String, Value>) -> Ordering {
    if let (Some(da), Some(db)) = (sorted_details(a), sorted_details(b)) {
        for ((na, ea), (nb, eb)) in da.iter().zip(db.iter()) {
            let ord = compare_rule(&rule_value(na, ea), &rule_value(nb, eb));
            if ord != Ordering::Equal {
                return ord.reverse();
            }
        }
        return Ordering::Equal;
    }
    let sa = a.get("_rankingScore").and_then(Value::as_f64);
    let sb = b.get("_rankingScore").and_then(Value::as_f64);
    match (sa, sb) {
        (Some(x), Some(y)) => y.partial_cmp(&x).unwrap_or(Ordering::Equal),
        _ => Ordering::Equal,
    }
}

/// One sort value, read once: what [`compare_sort_values`] compares (strings already normalised).
#[derive(Debug, Clone, PartialEq)]
enum SortKey {
    Null,
    Number(f64),
    Text(String),
    /// Booleans, arrays, objects: equal to anything but `null`.
    Other,
}

impl SortKey {
    fn of(v: &Value) -> SortKey {
        match v {
            Value::Null => SortKey::Null,
            Value::Number(n) => SortKey::Number(n.as_f64().unwrap_or(0.0)),
            Value::String(s) => SortKey::Text(normalize(s)),
            _ => SortKey::Other,
        }
    }

    /// Exactly [`compare_sort_values`] on the values these keys were read from.
    fn compare(asc: bool, left: &SortKey, right: &SortKey) -> Ordering {
        let ord = match (left, right) {
            (SortKey::Null, SortKey::Null) => return Ordering::Equal,
            (SortKey::Null, _) => return Ordering::Less,
            (_, SortKey::Null) => return Ordering::Greater,
            (SortKey::Number(_), SortKey::Text(_)) => return Ordering::Greater,
            (SortKey::Text(_), SortKey::Number(_)) => return Ordering::Less,
            (SortKey::Number(l), SortKey::Number(r)) => l.partial_cmp(r).unwrap_or(Ordering::Equal),
            (SortKey::Text(l), SortKey::Text(r)) => l.cmp(r),
            _ => return Ordering::Equal,
        };
        if asc {
            ord.reverse()
        } else {
            ord
        }
    }
}

/// One ranking-rule entry, read once ([`RuleValue`] with owned, normalised sort values).
#[derive(Debug, Clone, PartialEq)]
enum RuleKey {
    Score(f64),
    Sort { asc: bool, value: SortKey },
    Geo { asc: bool, distance: Option<f64> },
    Unknown,
}

impl RuleKey {
    fn of(rule: RuleValue) -> RuleKey {
        match rule {
            RuleValue::Score(s) => RuleKey::Score(s),
            RuleValue::Sort { asc, value } => RuleKey::Sort {
                asc,
                value: SortKey::of(value),
            },
            RuleValue::Geo { asc, distance } => RuleKey::Geo { asc, distance },
            RuleValue::Unknown => RuleKey::Unknown,
        }
    }

    /// Exactly [`compare_rule`] on the entries these keys were read from.
    fn compare(a: &RuleKey, b: &RuleKey) -> Ordering {
        match (a, b) {
            (RuleKey::Score(l), RuleKey::Score(r)) => l.partial_cmp(r).unwrap_or(Ordering::Equal),
            (
                RuleKey::Sort { asc, value: l },
                RuleKey::Sort {
                    asc: asc_r,
                    value: r,
                },
            ) if asc == asc_r => SortKey::compare(*asc, l, r),
            (
                RuleKey::Geo { asc, distance: l },
                RuleKey::Geo {
                    asc: asc_r,
                    distance: r,
                },
            ) if asc == asc_r => {
                let (l, r) = (
                    RuleValue::Geo {
                        asc: *asc,
                        distance: *l,
                    },
                    RuleValue::Geo {
                        asc: *asc_r,
                        distance: *r,
                    },
                );
                compare_rule(&l, &r)
            }
            _ => Ordering::Equal,
        }
    }
}

/// What the merge compares of a list's head, read once per hit instead of once per comparison.
#[derive(Debug, Clone, PartialEq)]
struct HitKey {
    details: Option<Vec<RuleKey>>,
    score: Option<f64>,
    shard: u64,
}

impl HitKey {
    fn of(hit: &Map<String, Value>) -> HitKey {
        HitKey {
            details: sorted_details(hit).map(|d| {
                d.into_iter()
                    .map(|(name, entry)| RuleKey::of(rule_value(name, entry)))
                    .collect()
            }),
            score: hit.get("_rankingScore").and_then(Value::as_f64),
            shard: shard_of(hit),
        }
    }

    /// Exactly [`compare_hits`] on the hits these keys were read from.
    fn compare_ranking(&self, other: &HitKey) -> Ordering {
        if let (Some(da), Some(db)) = (&self.details, &other.details) {
            for (a, b) in da.iter().zip(db.iter()) {
                let ord = RuleKey::compare(a, b);
                if ord != Ordering::Equal {
                    return ord.reverse();
                }
            }
            return Ordering::Equal;
        }
        match (self.score, other.score) {
            (Some(x), Some(y)) => y.partial_cmp(&x).unwrap_or(Ordering::Equal),
            _ => Ordering::Equal,
        }
    }
}

/// Looks a (possibly dotted) attribute up in a hit.
fn lookup<'a>(hit: &'a Map<String, Value>, path: &str) -> Option<&'a Value> {
    if let Some(v) = hit.get(path) {
        return Some(v);
    }
    let (head, rest) = path.split_once('.')?;
    match hit.get(head)? {
        Value::Object(inner) => lookup(inner, rest),
        _ => None,
    }
}

/// The distinct keys of one value: a string by its normalised form, a number by its value, an array by each
/// of its elements; `null`, missing or empty means "distinct on its own" (no key).
fn distinct_keys(value: Option<&Value>, out: &mut Vec<String>) {
    match value {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) => out.push(format!("s:{}", normalize(s))),
        Some(Value::Number(n)) => out.push(format!("n:{}", n.as_f64().unwrap_or(0.0))),
        Some(Value::Bool(b)) => out.push(format!("s:{b}")),
        Some(Value::Array(items)) => {
            for item in items {
                distinct_keys(Some(item), out);
            }
        }
        Some(other) => out.push(format!("o:{other}")),
    }
}

struct NodeList {
    order: usize,
    hits: Vec<Map<String, Value>>,
    next: usize,
    /// The key of `hits[next]`, read when it became the head.
    head: Option<HitKey>,
}

pub(crate) fn bad(order: usize, what: &str) -> MeiliError {
    MeiliError::bad_node_response(&format!("#{order}"), what)
}

fn shard_of(hit: &Map<String, Value>) -> u64 {
    hit.get(SHARD_FIELD)
        .and_then(Value::as_u64)
        .unwrap_or(u64::MAX)
}

fn strip_reserved(map: &mut Map<String, Value>, added: &[String]) {
    map.retain(|k, _| !k.starts_with(RESERVED_PREFIX) && !added.iter().any(|a| a == k));
}

fn strip_hit(mut hit: Map<String, Value>, plan: &SearchPlan) -> Map<String, Value> {
    strip_reserved(&mut hit, &plan.added_attributes);
    for key in ["_formatted", "_matchesPosition"] {
        if let Some(Value::Object(inner)) = hit.get_mut(key) {
            strip_reserved(inner, &plan.added_attributes);
        }
    }
    if !plan.show_ranking_score {
        hit.remove("_rankingScore");
    }
    if !plan.show_ranking_score_details {
        hit.remove("_rankingScoreDetails");
    }
    hit
}

fn required_count(body: &Map<String, Value>, key: &str, order: usize) -> Result<u64, MeiliError> {
    body.get(key).and_then(Value::as_u64).ok_or_else(|| {
        bad(
            order,
            &format!("`{key}` is missing or not a non-negative integer"),
        )
    })
}

/// Merges the nodes' answers into exactly the response one node holding every shard would give.
///
/// `answers` may come in any order; `NodeAnswer::order` is the node's position in the covering set.
/// Errors: `miroir_bad_node_response` (502) when an answer is not a search result (not an object, `hits`
/// missing or not an array of objects, the expected total missing). Never panics.
pub fn merge_search(plan: &SearchPlan, answers: Vec<NodeAnswer>) -> Result<Value, MeiliError> {
    let mut answers = answers;
    answers.sort_by_key(|a| a.order);
    let mut lists = Vec::with_capacity(answers.len());
    let mut bodies = Vec::with_capacity(answers.len());
    for answer in answers {
        let order = answer.order;
        let Value::Object(mut body) = answer.body else {
            return Err(bad(order, "the search answer is not a JSON object"));
        };
        let hits = match body.remove("hits") {
            Some(Value::Array(hits)) => hits,
            _ => return Err(bad(order, "`hits` is missing or not an array")),
        };
        let mut objects = Vec::with_capacity(hits.len());
        for hit in hits {
            match hit {
                Value::Object(h) => objects.push(h),
                _ => return Err(bad(order, "a hit is not a JSON object")),
            }
        }
        let head = objects.first().map(HitKey::of);
        lists.push(NodeList {
            order,
            hits: objects,
            next: 0,
            head,
        });
        bodies.push((order, body));
    }

    // k-way merge with distinct, up to the end of the window.
    let wanted = plan.window_offset + plan.window_limit;
    // Never reserve more than the hits received: the window can be as large as `maxTotalHits`.
    let received: usize = lists.iter().map(|l| l.hits.len()).sum();
    let mut merged: Vec<Map<String, Value>> = Vec::with_capacity(wanted.min(received));
    let mut seen: HashSet<String> = HashSet::new();
    while merged.len() < wanted {
        let mut best: Option<usize> = None;
        for (i, list) in lists.iter().enumerate() {
            let Some(head) = &list.head else {
                continue;
            };
            best = match best {
                None => Some(i),
                Some(b) => {
                    let current = &lists[b];
                    let Some(other) = &current.head else {
                        continue;
                    };
                    let ord = head
                        .compare_ranking(other)
                        .then_with(|| head.shard.cmp(&other.shard))
                        .then_with(|| list.order.cmp(&current.order));
                    if ord == Ordering::Less {
                        Some(i)
                    } else {
                        Some(b)
                    }
                }
            };
        }
        let Some(b) = best else { break };
        let list = &mut lists[b];
        let hit = std::mem::take(&mut list.hits[list.next]);
        list.next += 1;
        list.head = list.hits.get(list.next).map(HitKey::of);
        if let Some(attr) = &plan.distinct {
            let mut keys = Vec::new();
            distinct_keys(lookup(&hit, attr), &mut keys);
            if keys.iter().any(|k| seen.contains(k)) {
                continue;
            }
            seen.extend(keys);
        }
        merged.push(hit);
    }
    let hits: Vec<Value> = merged
        .into_iter()
        .skip(plan.window_offset)
        .map(|h| Value::Object(strip_hit(h, plan)))
        .collect();

    // Totals, timing and echoes.
    let max = plan.context.max_total_hits as u64;
    let mut processing = 0u64;
    let mut total = 0u64;
    let mut query: Option<Value> = None;
    let mut query_vector: Option<Value> = None;
    let mut request_uid: Option<Value> = None;
    let mut semantic: Option<u64> = None;
    let mut performance: Option<(u64, Value)> = None;
    let mut distributions = Vec::new();
    let mut stats = Vec::new();
    let total_key = match plan.pagination {
        Pagination::OffsetLimit { .. } => "estimatedTotalHits",
        Pagination::Pages { .. } => "totalHits",
    };
    for (order, body) in &bodies {
        total = total.saturating_add(required_count(body, total_key, *order)?);
        let took = body
            .get("processingTimeMs")
            .and_then(Value::as_u64)
            .unwrap_or(0);
        processing = processing.max(took);
        if let Some(details) = body.get("performanceDetails") {
            if performance.as_ref().is_none_or(|(t, _)| took > *t) {
                performance = Some((took, details.clone()));
            }
        }
        if query.is_none() {
            query = body.get("query").filter(|q| q.is_string()).cloned();
        }
        if query_vector.is_none() {
            query_vector = body.get("queryVector").cloned();
        }
        if request_uid.is_none() {
            request_uid = body.get("requestUid").cloned();
        }
        if let Some(n) = body.get("semanticHitCount").and_then(Value::as_u64) {
            semantic = Some(semantic.unwrap_or(0).saturating_add(n));
        }
        match body.get("facetDistribution") {
            None => {}
            Some(Value::Object(d)) => distributions.push((*order, d)),
            Some(_) => return Err(bad(*order, "`facetDistribution` is not an object")),
        }
        match body.get("facetStats") {
            None => {}
            Some(Value::Object(s)) => stats.push((*order, s)),
            Some(_) => return Err(bad(*order, "`facetStats` is not an object")),
        }
    }
    let capped = total.min(max);

    let mut out = Map::new();
    out.insert("hits".into(), Value::Array(hits));
    out.insert(
        "query".into(),
        query.unwrap_or_else(|| Value::String(plan.query.clone())),
    );
    if let Some(v) = query_vector {
        out.insert("queryVector".into(), v);
    }
    out.insert("processingTimeMs".into(), Value::from(processing));
    match plan.pagination {
        Pagination::OffsetLimit { limit, .. } => {
            out.insert("limit".into(), Value::from(limit as u64));
            out.insert("offset".into(), Value::from(plan.window_offset as u64));
            out.insert("estimatedTotalHits".into(), Value::from(capped));
        }
        Pagination::Pages {
            page,
            hits_per_page,
        } => {
            let total_pages = if hits_per_page == 0 {
                0
            } else {
                capped.div_ceil(hits_per_page as u64)
            };
            out.insert("hitsPerPage".into(), Value::from(hits_per_page as u64));
            out.insert("page".into(), Value::from(page as u64));
            out.insert("totalPages".into(), Value::from(total_pages));
            out.insert("totalHits".into(), Value::from(capped));
        }
    }
    if !distributions.is_empty() {
        let merged = merge_facet_distribution(&distributions, &plan.context, total)?;
        out.insert("facetDistribution".into(), Value::Object(merged));
    }
    if !stats.is_empty() {
        let merged = merge_facet_stats(&stats)?;
        out.insert("facetStats".into(), Value::Object(merged));
    }
    if let Some(uid) = request_uid {
        out.insert("requestUid".into(), uid);
    }
    if let Some((_, details)) = performance {
        out.insert("performanceDetails".into(), details);
    }
    if let Some(n) = semantic {
        out.insert("semanticHitCount".into(), Value::from(n));
    }
    Ok(Value::Object(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cached_keys_compare_exactly_like_compare_hits() {
        use serde_json::json;
        let hit = |score: f64, sort: Value, shard: u64| {
            json!({"_rankingScore": score, "_miroir_shard": shard, "_rankingScoreDetails": {
                "words": {"order": 0, "score": score},
                "title:asc": {"order": 1, "value": sort},
                "_geoPoint(1.0, 2.0):desc": {"order": 2, "distance": score * 10.0}
            }})
            .as_object()
            .unwrap()
            .clone()
        };
        let sorts = [
            json!(null),
            json!(3),
            json!(2.5),
            json!("Abc "),
            json!("abd"),
            json!(true),
            json!([1]),
        ];
        let mut hits = Vec::new();
        for (i, v) in sorts.iter().enumerate() {
            for score in [0.5, 0.9] {
                hits.push(hit(score, v.clone(), i as u64));
            }
        }
        let mut bare = serde_json::Map::new();
        bare.insert("_rankingScore".into(), json!(0.7));
        hits.push(bare);
        hits.push(serde_json::Map::new());
        for a in &hits {
            for b in &hits {
                assert_eq!(
                    HitKey::of(a).compare_ranking(&HitKey::of(b)),
                    compare_hits(a, b),
                    "{a:?} vs {b:?}"
                );
            }
        }
    }
}
