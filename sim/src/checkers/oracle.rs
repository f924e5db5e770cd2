//! Results equal a single-node oracle: a search through the proxy returns the same hits in the same order,
//! the same totals and the same facet counts as one model node holding the whole corpus.
//!
//! Ties (hits whose ranking details are identical) may legitimately come in another order across shards, so
//! hits are compared as a sequence of tie groups: the same documents in each group, groups in the same order.

use serde_json::Value;

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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
