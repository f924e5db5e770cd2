//! Regressions found by the fuzz targets in `fuzz/`: each test replays a minimized crashing input as a plain
//! call, so the fix stays covered on stable.

use miroir_core::search::{merge_facet_search, merge_search, plan_search, FacetOrder, NodeAnswer};
use serde_json::{json, Map};

/// `fuzz/fuzz_targets/merge.rs`: a node answering the same facet value twice with counts summing past
/// `u64::MAX` overflowed the per-node sum (`attempt to add with overflow` in debug builds).
#[test]
fn facet_search_merge_saturates_a_node_repeating_a_value() {
    let answers = vec![NodeAnswer {
        order: 0,
        body: json!({
            "facetHits": [{"value": "a", "count": u64::MAX}, {"value": "a", "count": 1}],
            "facetQuery": null,
            "processingTimeMs": 0
        }),
    }];
    let merged = merge_facet_search(answers, FacetOrder::Count, 10).expect("a facet-search answer");
    assert_eq!(
        merged["facetHits"],
        json!([{"value": "a", "count": u64::MAX}])
    );
}

/// Same class of bug in the search merge: `semanticHitCount` summed over nodes overflowed.
#[test]
fn search_merge_saturates_semantic_hit_counts() {
    let plan = plan_search(&Map::new(), &Default::default()).expect("an empty body plans");
    let answer = |order| NodeAnswer {
        order,
        body: json!({"hits": [], "estimatedTotalHits": 0, "semanticHitCount": u64::MAX}),
    };
    let merged = merge_search(&plan, vec![answer(0), answer(1)]).expect("valid answers");
    assert_eq!(merged["semanticHitCount"], json!(u64::MAX));
}

/// `fuzz/fuzz_targets/merge.rs` with well-formed node answers: nodes keep `_miroir_shard` filterable, so a
/// client's `facets: ["*"]` makes every node return its distribution and stats; they reached the client.
#[test]
fn search_merge_hides_the_shard_facet_of_a_wildcard_facets_request() {
    let mut body = Map::new();
    body.insert("facets".into(), json!(["*"]));
    let plan = plan_search(&body, &Default::default()).expect("a valid body");
    let answer = |order, shard: &str| NodeAnswer {
        order,
        body: json!({
            "hits": [],
            "estimatedTotalHits": 3,
            "facetDistribution": {"_miroir_shard": {shard: 3}, "genre": {"drama": 3}},
            "facetStats": {"_miroir_shard": {"min": 0.0, "max": 1.0}, "year": {"min": 1990.0, "max": 2000.0}}
        }),
    };
    let merged = merge_search(&plan, vec![answer(0, "0"), answer(1, "1")]).expect("valid answers");
    assert_eq!(merged["facetDistribution"], json!({"genre": {"drama": 6}}));
    assert_eq!(
        merged["facetStats"],
        json!({"year": {"min": 1990.0, "max": 2000.0}})
    );
}

/// `fuzz/fuzz_targets/merge.rs`: with a huge `pagination.maxTotalHits` (a settings call may set any
/// integer) and a huge client `limit`, the merge reserved room for the whole window up front (`capacity
/// overflow` panic, or an allocation the size of the window) instead of for the hits it actually got.
#[test]
fn search_merge_does_not_reserve_the_requested_window() {
    let ctx = miroir_core::search::SearchContext {
        max_total_hits: usize::MAX,
        ..Default::default()
    };
    let mut body = Map::new();
    body.insert("limit".into(), json!(u64::MAX));
    let plan = plan_search(&body, &ctx).expect("a valid body");
    let answer = NodeAnswer {
        order: 0,
        body: json!({"hits": [{"id": 1, "_miroir_shard": 0}], "estimatedTotalHits": 1}),
    };
    let merged = merge_search(&plan, vec![answer]).expect("a valid answer");
    assert_eq!(merged["hits"], json!([{"id": 1}]));
}
