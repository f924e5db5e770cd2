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
