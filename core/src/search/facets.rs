//! Merging facet distributions, facet stats and facet-search answers across shards.
//!
//! States: per-node maps → summed per value → ordered as Meilisearch orders them → truncated.
//!
//! Meilisearch's order (milli `FacetDistribution`): numeric values first, then string values, truncated to
//! `maxValuesPerFacet` in total.
//! - `alpha`: numbers ascending, then strings by their normalised form ascending. When the search matched at
//!   most 3000 documents, Meilisearch reads values from the documents and orders numbers by their *text*
//!   (`"10" < "9"`); above that it walks the facet database in numeric order. The merge follows the same
//!   threshold on the summed totals. This is exact while every node and the whole corpus fall on the same
//!   side of the threshold, and while node totals are not capped by the nodes' `maxTotalHits` (the proxy
//!   should configure nodes with a cap above 3000 when numeric facets matter).
//! - `count`: numbers by count descending, then strings by count descending; equal counts come out by value
//!   descending (the facet database's max-heap order).
//!
//! Invariants: counts are summed per value; facet names come out sorted (Meilisearch's `BTreeMap`); stats
//! keep the minimum of minimums and maximum of maximums. Known limits: a number-looking *string* value is
//! taken for a number; two spellings of one normalised string keep the first node's spelling; `count` order
//! is exact only when nodes return every value (the proxy configures nodes with a higher
//! `maxValuesPerFacet`), `alpha` order whenever nodes return at least the client's `maxValuesPerFacet`.

use std::borrow::Cow;
use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap};

use serde_json::{Map, Value};

use super::merge::{bad, normalize};
use super::{FacetOrder, NodeAnswer, SearchContext};

/// One node's map, with the node's position in the covering set.
type NodeMap<'a> = (usize, &'a Map<String, Value>);
use crate::{MeiliError, RESERVED_PREFIX};

/// Above this many candidates Meilisearch orders numeric facet values numerically, below by their text.
const CANDIDATES_THRESHOLD: u64 = 3000;

/// The number a facet value's text stands for, when the text is exactly that number's display (`buf` is
/// scratch space, reused so reading values allocates nothing).
fn as_number(key: &str, buf: &mut String) -> Option<f64> {
    use std::fmt::Write;
    // Digits without a leading zero, short enough to be exact: the number displays as this text.
    let digits = key.strip_prefix('-').unwrap_or(key);
    if (1..=15).contains(&digits.len())
        && digits.bytes().all(|b| b.is_ascii_digit())
        && (digits == "0" || !digits.starts_with('0'))
        && key != "-0"
    {
        return key.parse().ok();
    }
    let f: f64 = key.parse().ok()?;
    if !f.is_finite() {
        return None;
    }
    buf.clear();
    write!(buf, "{f}").ok()?;
    (buf == key).then_some(f)
}

/// [`normalize`], borrowing when the value is already normalised (trimmed ASCII without capitals).
fn normalized(s: &str) -> Cow<'_, str> {
    let trimmed = s.trim();
    if trimmed.is_ascii() && !trimmed.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Borrowed(trimmed)
    } else {
        Cow::Owned(normalize(s))
    }
}

#[derive(Debug)]
struct FacetValue<'a> {
    original: &'a str,
    normalized: Cow<'a, str>,
    number: Option<f64>,
    count: u64,
}

/// Sums one facet's values over the nodes' maps (values borrowed from the maps).
fn sum_values<'a>(
    maps: &[(usize, &'a Map<String, Value>)],
    value_of: impl Fn(usize, &'a Map<String, Value>) -> Result<Vec<(&'a str, u64)>, MeiliError>,
) -> Result<Vec<FacetValue<'a>>, MeiliError> {
    let mut index: HashMap<(bool, Cow<'a, str>), usize> = HashMap::new();
    let mut values: Vec<FacetValue<'a>> = Vec::new();
    let mut buf = String::new();
    for (order, map) in maps {
        for (original, count) in value_of(*order, map)? {
            let number = as_number(original, &mut buf);
            let normalized = if number.is_some() {
                Cow::Borrowed(original)
            } else {
                normalized(original)
            };
            let slot = match index.get(&(number.is_some(), normalized.clone())) {
                Some(slot) => *slot,
                None => {
                    index.insert((number.is_some(), normalized.clone()), values.len());
                    values.push(FacetValue {
                        original,
                        normalized,
                        number,
                        count: 0,
                    });
                    values.len() - 1
                }
            };
            values[slot].count = values[slot].count.saturating_add(count);
        }
    }
    Ok(values)
}

fn order_values(
    mut values: Vec<FacetValue<'_>>,
    order: FacetOrder,
    candidates: u64,
    max: usize,
) -> Vec<FacetValue<'_>> {
    let by_number = |a: &FacetValue, b: &FacetValue| {
        if candidates <= CANDIDATES_THRESHOLD {
            a.original.cmp(b.original)
        } else {
            a.number
                .unwrap_or(0.0)
                .partial_cmp(&b.number.unwrap_or(0.0))
                .unwrap_or(Ordering::Equal)
        }
    };
    values.sort_by(|a, b| {
        // Numbers before strings, in both orders.
        let kind = b.number.is_some().cmp(&a.number.is_some());
        kind.then_with(|| match order {
            FacetOrder::Alpha => match a.number.is_some() {
                true => by_number(a, b),
                false => a.normalized.cmp(&b.normalized),
            },
            FacetOrder::Count => b
                .count
                .cmp(&a.count)
                .then_with(|| match a.number.is_some() {
                    true => b
                        .number
                        .unwrap_or(0.0)
                        .partial_cmp(&a.number.unwrap_or(0.0))
                        .unwrap_or(Ordering::Equal),
                    false => b.normalized.cmp(&a.normalized),
                }),
        })
    });
    values.truncate(max);
    values
}

/// Merges the nodes' `facetDistribution` objects (given with the node's position) into the one a single
/// node would answer, for the client's `maxValuesPerFacet` and `sortFacetValuesBy`. `candidates` is the
/// summed number of matching documents (it picks Meilisearch's numeric ordering, see the module doc).
pub(crate) fn merge_facet_distribution(
    dists: &[(usize, &Map<String, Value>)],
    ctx: &SearchContext,
    candidates: u64,
) -> Result<Map<String, Value>, MeiliError> {
    let mut names: BTreeMap<&str, Vec<NodeMap>> = BTreeMap::new();
    for (order, dist) in dists {
        // `_miroir_shard` is filterable on every node, so `facets: ["*"]` returns it: never show it.
        for (name, values) in dist.iter().filter(|(n, _)| !n.starts_with(RESERVED_PREFIX)) {
            let Value::Object(values) = values else {
                return Err(bad(*order, &format!("facet `{name}` is not an object")));
            };
            names
                .entry(name.as_str())
                .or_default()
                .push((*order, values));
        }
    }
    let mut out = Map::new();
    for (name, maps) in names {
        let values = sum_values(&maps, |order, map| {
            map.iter()
                .map(|(k, v)| {
                    v.as_u64().map(|c| (k.as_str(), c)).ok_or_else(|| {
                        bad(
                            order,
                            &format!("the count of `{name}`=`{k}` is not a count"),
                        )
                    })
                })
                .collect()
        })?;
        let ordered = order_values(
            values,
            ctx.facet_order(name),
            candidates,
            ctx.max_values_per_facet,
        );
        let mut facet = Map::new();
        for v in ordered {
            facet.insert(v.original.to_string(), Value::from(v.count));
        }
        out.insert(name.to_string(), Value::Object(facet));
    }
    Ok(out)
}

/// Merges the nodes' `facetStats`: minimum of the minimums, maximum of the maximums, per facet.
pub(crate) fn merge_facet_stats(
    stats: &[(usize, &Map<String, Value>)],
) -> Result<Map<String, Value>, MeiliError> {
    let mut merged: BTreeMap<&str, (f64, f64)> = BTreeMap::new();
    for (order, map) in stats {
        for (name, s) in map.iter().filter(|(n, _)| !n.starts_with(RESERVED_PREFIX)) {
            let min = s.get("min").and_then(Value::as_f64);
            let max = s.get("max").and_then(Value::as_f64);
            let (Some(min), Some(max)) = (min, max) else {
                return Err(bad(
                    *order,
                    &format!("the stats of facet `{name}` are malformed"),
                ));
            };
            let entry = merged.entry(name.as_str()).or_insert((min, max));
            entry.0 = entry.0.min(min);
            entry.1 = entry.1.max(max);
        }
    }
    let mut out = Map::new();
    for (name, (min, max)) in merged {
        let mut s = Map::new();
        s.insert("min".into(), Value::from(min));
        s.insert("max".into(), Value::from(max));
        out.insert(name.to_string(), Value::Object(s));
    }
    Ok(out)
}

/// Merges facet-search answers (`POST /indexes/{uid}/facet-search`): counts are summed per value, then the
/// values are ordered as Meilisearch orders them for the facet's `sortFacetValuesBy` (`count`: count
/// descending, equal counts by value descending; `alpha`: normalised value ascending) and truncated to
/// `max_values` (the client's `maxValuesPerFacet`, which bounds facet search too). `facetQuery` is echoed from
/// the first node, `processingTimeMs` is the slowest node's.
///
/// Errors: `miroir_bad_node_response` when an answer is not a facet-search result.
pub fn merge_facet_search(
    answers: Vec<NodeAnswer>,
    order: FacetOrder,
    max_values: usize,
) -> Result<Value, MeiliError> {
    let mut answers = answers;
    answers.sort_by_key(|a| a.order);
    let mut maps: Vec<(usize, Map<String, Value>)> = Vec::new();
    let mut facet_query: Option<Value> = None;
    let mut processing = 0u64;
    for answer in &answers {
        let Value::Object(body) = &answer.body else {
            return Err(bad(
                answer.order,
                "the facet-search answer is not a JSON object",
            ));
        };
        let Some(Value::Array(hits)) = body.get("facetHits") else {
            return Err(bad(answer.order, "`facetHits` is missing or not an array"));
        };
        let mut map = Map::new();
        for hit in hits {
            let value = hit.get("value").and_then(Value::as_str);
            let count = hit.get("count").and_then(Value::as_u64);
            let (Some(value), Some(count)) = (value, count) else {
                return Err(bad(answer.order, "a facet hit lacks `value` or `count`"));
            };
            let previous = map.get(value).and_then(Value::as_u64).unwrap_or(0);
            map.insert(
                value.to_string(),
                Value::from(previous.saturating_add(count)),
            );
        }
        if facet_query.is_none() {
            facet_query = body.get("facetQuery").cloned();
        }
        processing = processing.max(
            body.get("processingTimeMs")
                .and_then(Value::as_u64)
                .unwrap_or(0),
        );
        maps.push((answer.order, map));
    }
    let refs: Vec<(usize, &Map<String, Value>)> = maps.iter().map(|(o, m)| (*o, m)).collect();
    let mut values = sum_values(&refs, |_, map| {
        Ok(map
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_u64().unwrap_or(0)))
            .collect())
    })?;
    // Facet search only knows string values: order by the value's text, never as a number.
    match order {
        FacetOrder::Count => values.sort_by(|a, b| {
            b.count
                .cmp(&a.count)
                .then_with(|| b.original.cmp(a.original))
        }),
        FacetOrder::Alpha => values.sort_by_key(|v| normalize(v.original)),
    }
    values.truncate(max_values);
    let hits: Vec<Value> = values
        .into_iter()
        .map(|v| {
            let mut h = Map::new();
            h.insert("value".into(), Value::String(v.original.to_string()));
            h.insert("count".into(), Value::from(v.count));
            Value::Object(h)
        })
        .collect();
    let mut out = Map::new();
    out.insert("facetHits".into(), Value::Array(hits));
    out.insert("facetQuery".into(), facet_query.unwrap_or(Value::Null));
    out.insert("processingTimeMs".into(), Value::from(processing));
    Ok(out.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_from_facet_values_are_those_whose_display_is_the_text() {
        let reference = |key: &str| -> Option<f64> {
            let f: f64 = key.parse().ok()?;
            (f.is_finite() && format!("{f}") == key).then_some(f)
        };
        let mut keys: Vec<String> = [
            "0",
            "-0",
            "00",
            "01",
            "-01",
            "1",
            "-1",
            "1990",
            "1.0",
            "1.5",
            "1e3",
            "",
            "-",
            "Drama",
            "inf",
            "NaN",
            "999999999999999",
            "9999999999999999",
            "99999999999999999999",
            "-123456789012345",
            " 1",
            "1 ",
            "+1",
            "0x1",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let mut rng = super::super::TestRng(0x9e37_79b9_7f4a_7c15);
        for _ in 0..5000 {
            let digits = rng.below(20) + 1;
            let mut k: String = (0..digits)
                .map(|_| char::from(b'0' + rng.below(10) as u8))
                .collect();
            if rng.below(2) == 0 {
                k.insert(0, '-');
            }
            keys.push(k);
        }
        let mut buf = String::new();
        for k in &keys {
            assert_eq!(
                as_number(k, &mut buf).map(f64::to_bits),
                reference(k).map(f64::to_bits),
                "{k:?}"
            );
        }
    }
}
