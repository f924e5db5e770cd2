//! Results equal a single-node oracle: a search through the proxy returns the same hits in the same order,
//! the same totals and the same facet counts as one model node holding the whole corpus.
//!
//! Ties (hits whose ranking details are identical) may legitimately come in another order across shards, so
//! hits are compared as a sequence of tie groups: the same documents in each group, groups in the same order.
//!
//! A degraded answer (the `partial` policy's `X-Miroir-Degraded: shards=…` marker: a shard had no reachable
//! replica) is compared with the oracle over the answered shards' documents ([`answered_part`]).

use crate::history::Doc;
use serde_json::Value;
use std::collections::BTreeMap;

/// Compares one search answer from the proxy with the oracle's answer to the same query.
pub fn check(query: &Value, proxy: &Value, oracle: &Value) -> Result<(), String> {
    let fail = |what: &str| {
        Err(format!(
            "query {query}: {what}\n  proxy:  {proxy}\n  oracle: {oracle}"
        ))
    };
    for key in [
        "estimatedTotalHits",
        "totalHits",
        "totalPages",
        "facetDistribution",
        "facetStats",
    ] {
        if proxy.get(key) != oracle.get(key) {
            return fail(&format!("`{key}` differs"));
        }
    }
    let groups = |v: &Value| -> Option<Vec<(Value, Vec<String>)>> {
        let mut out: Vec<(Value, Vec<String>)> = Vec::new();
        for hit in v.get("hits")?.as_array()? {
            let key = hit
                .get("_rankingScoreDetails")
                .cloned()
                .unwrap_or(Value::Null);
            let id = hit.get("id").map(|i| i.to_string()).unwrap_or_default();
            match out.last_mut() {
                Some((k, ids)) if *k == key && key != Value::Null => ids.push(id),
                _ => out.push((key, vec![id])),
            }
        }
        for (_, ids) in &mut out {
            ids.sort();
        }
        Some(out)
    };
    match (groups(proxy), groups(oracle)) {
        (Some(p), Some(o)) if p == o => Ok(()),
        (Some(_), Some(_)) => fail("hits differ"),
        _ => fail("an answer has no hits array"),
    }
}

/// The shards a degraded answer's `X-Miroir-Degraded: shards=…` marker names (`None` without the marker;
/// header names are case-insensitive). The `partial` policy answers 200 with the hits of the shards that
/// answered: a marked answer that is not a search result, or a malformed marker, is an error.
pub fn degraded_shards(
    status: u16,
    headers: &[(String, String)],
    body: &Value,
) -> Option<Result<Vec<u32>, String>> {
    let (_, value) = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(miroir_core::ops::DEGRADED_HEADER))?;
    if status != 200 || !body.get("hits").is_some_and(Value::is_array) {
        return Some(Err(format!(
            "a degraded answer that is not a search result: {status} {body}"
        )));
    }
    let shards: Option<Result<Vec<u32>, _>> = value
        .strip_prefix("shards=")
        .map(|list| list.split(',').map(|s| s.trim().parse::<u32>()).collect());
    Some(match shards {
        Some(Ok(list)) if !list.is_empty() => Ok(list),
        _ => Err(format!("a malformed degraded marker `{value}`")),
    })
}

/// The part of `corpus` a degraded answer covers: the documents whose shard (of `shards`) is not `missing`.
/// The oracle over it is what the answered shards, merged exactly, must give.
pub fn answered_part(
    corpus: &BTreeMap<String, Doc>,
    missing: &[u32],
    shards: u32,
) -> BTreeMap<String, Doc> {
    corpus
        .iter()
        .filter(|(id, _)| !missing.contains(&miroir_core::routing::shard_for_key(id, shards)))
        .map(|(id, d)| (id.clone(), d.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn degraded_marker_is_parsed_and_must_mark_a_search_result() {
        let hits = json!({"hits": []});
        let marked = |v: &str| vec![("x-miroir-degraded".to_string(), v.to_string())];
        assert_eq!(degraded_shards(200, &[], &hits), None);
        assert_eq!(
            degraded_shards(200, &marked("shards=1,3"), &hits),
            Some(Ok(vec![1, 3]))
        );
        // an error or a body without hits under the marker is not the documented partial answer
        assert!(degraded_shards(503, &marked("shards=1"), &hits)
            .unwrap()
            .is_err());
        assert!(
            degraded_shards(200, &marked("shards=1"), &json!({"message": "x"}))
                .unwrap()
                .is_err()
        );
        for bad in ["1,3", "shards=", "shards=a"] {
            assert!(
                degraded_shards(200, &marked(bad), &hits).unwrap().is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn answered_part_keeps_the_documents_of_answered_shards() {
        let corpus: BTreeMap<String, Doc> = (0..40)
            .map(|i| {
                let d = json!({"id": i}).as_object().cloned().unwrap();
                (i.to_string(), d)
            })
            .collect();
        let part = answered_part(&corpus, &[2, 5], 8);
        assert!(!part.is_empty() && part.len() < corpus.len());
        for id in corpus.keys() {
            let shard = miroir_core::routing::shard_for_key(id, 8);
            assert_eq!(part.contains_key(id), shard != 2 && shard != 5, "{id}");
        }
    }

    fn hit(id: u32, score: f64) -> Value {
        json!({"id": id, "_rankingScoreDetails": {"words": {"order": 0, "score": score}}})
    }

    #[test]
    fn fires_on_reordered_hits_totals_or_facets_but_not_on_tie_order() {
        let q = json!({"q": "x"});
        let a = json!({"hits": [hit(1, 1.0), hit(2, 0.5), hit(3, 0.5)], "estimatedTotalHits": 3});
        let tie_swapped =
            json!({"hits": [hit(1, 1.0), hit(3, 0.5), hit(2, 0.5)], "estimatedTotalHits": 3});
        assert!(check(&q, &tie_swapped, &a).is_ok());
        let reordered =
            json!({"hits": [hit(2, 0.5), hit(1, 1.0), hit(3, 0.5)], "estimatedTotalHits": 3});
        assert!(check(&q, &reordered, &a)
            .unwrap_err()
            .contains("hits differ")); // planted: merge by wrong key
        let overcounted =
            json!({"hits": [hit(1, 1.0), hit(2, 0.5), hit(3, 0.5)], "estimatedTotalHits": 6});
        assert!(check(&q, &overcounted, &a)
            .unwrap_err()
            .contains("estimatedTotalHits")); // planted: duplicate shard
        let facets = json!({"hits": [], "facetDistribution": {"g": {"a": 2}}});
        let facets_doubled = json!({"hits": [], "facetDistribution": {"g": {"a": 4}}});
        assert!(check(&q, &facets_doubled, &facets).is_err());
    }
}
