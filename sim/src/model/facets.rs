//! Facets: the `facetDistribution` / `facetStats` of a search and the facet-search route. Values are
//! grouped case-insensitively, counted once per document, sorted alphabetically (numbers numerically)
//! or by count (ties broken by value, descending, as Meilisearch returns them) and truncated to
//! `faceting.maxValuesPerFacet`.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use miroir_core::MeiliError;
use serde_json::{json, Map, Value};

use super::filter;
use super::index::Index;
use super::payload::Document;
use super::query::SearchQuery;
use super::search::{err, rank};
use super::settings::type_error;

/// Formats a facet number as Meilisearch prints facet keys (`1950`, `1.2`).
pub fn facet_number_key(f: f64) -> String {
    if f.fract() == 0.0 && f.abs() < 1e15 {
        format!("{}", f as i64)
    } else {
        format!("{f}")
    }
}

#[derive(Debug, Clone)]
pub(crate) struct FacetValue {
    pub(crate) display: String,
    pub(crate) num: Option<f64>,
    pub(crate) norm: String,
    pub(crate) count: u64,
}

pub(crate) fn facet_values<'a>(
    docs: impl Iterator<Item = &'a Document>,
    attr: &str,
) -> (Vec<FacetValue>, Option<(f64, f64)>) {
    let mut map: BTreeMap<String, FacetValue> = BTreeMap::new();
    let mut stats: Option<(f64, f64)> = None;
    for doc in docs {
        let Some(vals) = filter::values_at(doc, attr) else {
            continue;
        };
        let mut seen = Vec::new();
        for v in vals {
            let (key, fv) = match v {
                Value::String(s) => {
                    let n = filter::normalize(s);
                    (
                        format!("s:{n}"),
                        FacetValue {
                            display: s.clone(),
                            num: None,
                            norm: n,
                            count: 0,
                        },
                    )
                }
                Value::Number(n) => {
                    let f = n.as_f64().unwrap_or(0.0);
                    stats = Some(match stats {
                        None => (f, f),
                        Some((lo, hi)) => (lo.min(f), hi.max(f)),
                    });
                    let k = facet_number_key(f);
                    (
                        format!("n:{k}"),
                        FacetValue {
                            display: k.clone(),
                            num: Some(f),
                            norm: k,
                            count: 0,
                        },
                    )
                }
                Value::Bool(b) => (
                    format!("s:{b}"),
                    FacetValue {
                        display: b.to_string(),
                        num: None,
                        norm: b.to_string(),
                        count: 0,
                    },
                ),
                _ => continue,
            };
            if seen.contains(&key) {
                continue;
            }
            seen.push(key.clone());
            map.entry(key).or_insert(fv).count += 1;
        }
    }
    (map.into_values().collect(), stats)
}

pub(crate) fn sort_facet_values(values: &mut [FacetValue], by_count: bool) {
    values.sort_by(|a, b| {
        let alpha = match (a.num, b.num) {
            (Some(x), Some(y)) => x.partial_cmp(&y).unwrap_or(Ordering::Equal),
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (None, None) => a.norm.cmp(&b.norm),
        };
        if by_count {
            b.count.cmp(&a.count).then(alpha.reverse())
        } else {
            alpha
        }
    });
}

pub(crate) fn facet_distribution(index: &Index, ids: &[u32], facets: &[String]) -> (Value, Value) {
    let settings = &index.settings;
    let mut attrs: Vec<String> = Vec::new();
    for f in facets {
        if f == "*" {
            for a in settings.filterable() {
                if !a.contains('*') && !attrs.contains(&a) {
                    attrs.push(a);
                }
            }
        } else if !attrs.contains(f) {
            attrs.push(f.clone());
        }
    }
    let mut dist = Map::new();
    let mut stats = Map::new();
    for a in attrs {
        let (mut values, st) = facet_values(ids.iter().filter_map(|i| index.docs.get(i)), &a);
        sort_facet_values(&mut values, settings.facet_sorted_by_count(&a));
        values.truncate(settings.max_values_per_facet());
        let m: Map<String, Value> = values
            .into_iter()
            .map(|v| (v.display, Value::from(v.count)))
            .collect();
        dist.insert(a.clone(), Value::Object(m));
        if let Some((lo, hi)) = st {
            stats.insert(a, json!({"min": lo, "max": hi}));
        }
    }
    (Value::Object(dist), Value::Object(stats))
}

/// `POST /indexes/{uid}/facet-search`.
pub fn facet_search(index: &Index, body: &Value) -> Result<Value, MeiliError> {
    let obj = body
        .as_object()
        .ok_or_else(|| type_error("bad_request", "", "an object", body))?;
    const ALLOWED: &[&str] = &[
        "facetName",
        "facetQuery",
        "q",
        "filter",
        "matchingStrategy",
        "attributesToSearchOn",
        "exhaustiveFacetCount",
        "rankingScoreThreshold",
        "locales",
        "hybrid",
        "vector",
    ];
    for k in obj.keys() {
        if !ALLOWED.contains(&k.as_str()) {
            return Err(err(
                400,
                "bad_request",
                format!(
                    "Unknown field `{k}`: expected one of {}",
                    ALLOWED
                        .iter()
                        .map(|p| format!("`{p}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        }
    }
    let name = match obj.get("facetName") {
        Some(Value::String(s)) => s.clone(),
        None => {
            return Err(err(
                400,
                "missing_facet_search_facet_name",
                "Missing field `facetName`",
            ))
        }
        Some(v) => {
            return Err(type_error(
                "invalid_facet_search_facet_name",
                ".facetName",
                "a string",
                v,
            ))
        }
    };
    let fq = match obj.get("facetQuery") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(v) => {
            return Err(type_error(
                "invalid_facet_search_facet_query",
                ".facetQuery",
                "a string",
                v,
            ))
        }
    };
    if !index.settings.facet_search() {
        return Err(err(400, "facet_search_disabled", format!("The facet search is disabled for this index. Enable it with the `facetSearch` setting on index `{}`.", index.uid)));
    }
    let filterable = index.settings.filterable();
    if !filter::attribute_matches_patterns(&name, &filterable) {
        let mut f = filterable.clone();
        f.sort();
        let avail = if f.is_empty() {
            "This index does not have configured facet-searchable attributes. To make it facet-searchable add it to the `filterableAttributes` index settings.".to_string()
        } else {
            format!("Available facet-searchable attributes patterns are: `{}`. To make it facet-searchable add it to the `filterableAttributes` index settings.", f.join(", "))
        };
        return Err(err(
            400,
            "invalid_facet_search_facet_name",
            format!("Attribute `{name}` is not facet-searchable. {avail}"),
        ));
    }
    let mut sq = Map::new();
    for k in [
        "q",
        "filter",
        "matchingStrategy",
        "attributesToSearchOn",
        "rankingScoreThreshold",
    ] {
        if let Some(v) = obj.get(k) {
            sq.insert(k.into(), v.clone());
        }
    }
    let query = SearchQuery::from_json(&Value::Object(sq), &[])?;
    let ranking = rank(index, &query)?;
    let ids: Vec<u32> = ranking.hits.iter().map(|r| r.id).collect();
    let (mut values, _) = facet_values(ids.iter().filter_map(|i| index.docs.get(i)), &name);
    let needle = filter::normalize(&fq);
    values.retain(|v| v.norm.starts_with(&needle));
    sort_facet_values(&mut values, index.settings.facet_sorted_by_count(&name));
    values.truncate(index.settings.max_values_per_facet());
    let hits: Vec<Value> = values
        .into_iter()
        .map(|v| json!({"value": v.display, "count": v.count}))
        .collect();
    Ok(json!({
        "facetHits": hits,
        "facetQuery": obj.get("facetQuery").cloned().unwrap_or(Value::Null),
        "processingTimeMs": 0,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn facets_sorting_and_keys() {
        assert_eq!(facet_number_key(1950.0), "1950");
        assert_eq!(facet_number_key(1.2), "1.2");
        let mut v = vec![
            FacetValue {
                display: "a".into(),
                num: None,
                norm: "a".into(),
                count: 1,
            },
            FacetValue {
                display: "b".into(),
                num: None,
                norm: "b".into(),
                count: 2,
            },
            FacetValue {
                display: "c".into(),
                num: None,
                norm: "c".into(),
                count: 1,
            },
        ];
        sort_facet_values(&mut v, true);
        let order: Vec<&str> = v.iter().map(|x| x.display.as_str()).collect();
        assert_eq!(
            order,
            vec!["b", "c", "a"],
            "count first, ties by value descending"
        );
        sort_facet_values(&mut v, false);
        assert_eq!(v[0].display, "a");
    }
}
