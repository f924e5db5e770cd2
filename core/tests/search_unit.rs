//! Unit tests for search planning, shard filters, GET parameters and the merge's edge cases, including hits
//! recorded from a real Meilisearch 1.50 node (`v1.50.0-ranking.jsonl`, steps "rank search 0/4/13";
//! ranking rules `words, typo, rating:desc, proximity, attribute, sort, exactness, year:asc`).

use miroir_core::search::{
    and_filter, compare_hits, merge_facet_search, merge_search, plan_search,
    search_params_from_query, shard_filter, FacetOrder, NodeAnswer, Pagination, SearchContext,
    SearchPlan, ShardRestriction,
};
use miroir_core::MeiliError;
use proptest::prelude::*;
use serde_json::{json, Map, Value};
use std::cmp::Ordering;

const S0: &str = r#"[{"_miroir_shard":0,"_rankingScoreDetails":{"attribute":{"attributeRankingOrderScore":1.0,"order":4,"queryWordDistanceScore":0.9090909090909091,"score":0.9090909090909091},"exactness":{"matchType":"noExactMatch","matchingWords":1,"maxMatchingWords":1,"order":5,"score":0.3333333333333333},"proximity":{"order":3,"score":1.0},"rating:desc":{"order":2,"value":10.0},"typo":{"maxTypoCount":1,"order":1,"score":1.0,"typoCount":0},"words":{"matchingWords":1,"maxMatchingWords":1,"order":0,"score":1.0},"year:asc":{"order":6,"value":1950.0}},"id":212,"title":"lord star shadow"},{"_miroir_shard":1,"_rankingScoreDetails":{"attribute":{"attributeRankingOrderScore":1.0,"order":4,"queryWordDistanceScore":0.6363636363636364,"score":0.6363636363636364},"exactness":{"matchType":"noExactMatch","matchingWords":1,"maxMatchingWords":1,"order":5,"score":0.3333333333333333},"proximity":{"order":3,"score":1.0},"rating:desc":{"order":2,"value":10.0},"typo":{"maxTypoCount":1,"order":1,"score":1.0,"typoCount":0},"words":{"matchingWords":1,"maxMatchingWords":1,"order":0,"score":1.0},"year:asc":{"order":6,"value":1958.0}},"id":25,"title":"galaxy city dark peace"},{"_miroir_shard":1,"_rankingScoreDetails":{"attribute":{"attributeRankingOrderScore":1.0,"order":4,"queryWordDistanceScore":1.0,"score":1.0},"exactness":{"matchType":"matchesStart","order":5,"score":0.6666666666666666},"proximity":{"order":3,"score":1.0},"rating:desc":{"order":2,"value":9.9},"typo":{"maxTypoCount":1,"order":1,"score":1.0,"typoCount":0},"words":{"matchingWords":1,"maxMatchingWords":1,"order":0,"score":1.0},"year:asc":{"order":6,"value":2007.0}},"id":261,"title":"love first dream return"},{"_miroir_shard":0,"_rankingScoreDetails":{"attribute":{"attributeRankingOrderScore":1.0,"order":4,"queryWordDistanceScore":1.0,"score":1.0},"exactness":{"matchType":"matchesStart","order":5,"score":0.6666666666666666},"proximity":{"order":3,"score":1.0},"rating:desc":{"order":2,"value":9.8},"typo":{"maxTypoCount":1,"order":1,"score":1.0,"typoCount":0},"words":{"matchingWords":1,"maxMatchingWords":1,"order":0,"score":1.0},"year:asc":{"order":6,"value":2012.0}},"id":120,"title":"star last"}]"#;
const S4: &str = r#"[{"_geoDistance":178795,"_miroir_shard":0,"_rankingScoreDetails":{"_geoPoint(48.5, 2.5):asc":{"distance":178795.044,"order":1,"value":{"lat":49.2,"lng":4.7}},"rating:desc":{"order":0,"value":10.0},"year:asc":{"order":2,"value":1950.0}},"id":212,"title":"lord star shadow"},{"_geoDistance":265152,"_miroir_shard":1,"_rankingScoreDetails":{"_geoPoint(48.5, 2.5):asc":{"distance":265151.667,"order":1,"value":{"lat":50.5,"lng":4.5}},"rating:desc":{"order":0,"value":10.0},"year:asc":{"order":2,"value":1958.0}},"id":25,"title":"galaxy city dark peace"},{"_geoDistance":70242,"_miroir_shard":1,"_rankingScoreDetails":{"_geoPoint(48.5, 2.5):asc":{"distance":70241.991,"order":1,"value":{"lat":49.1,"lng":2.2}},"rating:desc":{"order":0,"value":9.9},"year:asc":{"order":2,"value":2007.0}},"id":261,"title":"love first dream return"}]"#;
const S13: &str = r#"[{"_formatted":{"_geo":{"lat":"50.5","lng":"4.5"},"_miroir_shard":"1","director":"d15","genre":"horror","id":"25","overview":"…love love <em>ghost</em> star…","rating":"10.0","tags":["action","romance","scifi"],"title":"galaxy city dark peace","year":"1958"},"_matchesPosition":{"overview":[{"length":5,"start":41}]},"_miroir_shard":1,"id":25,"title":"galaxy city dark peace"},{"_formatted":{"_geo":{"lat":"49.9","lng":"3.0"},"_miroir_shard":"1","director":"d58","genre":"romance","id":"269","overview":"…shadow peace blue <em>ghost</em>","rating":"9.9","tags":["scifi","action","drama"],"title":"love river night","year":"1952"},"_matchesPosition":{"overview":[{"length":5,"start":49}]},"_miroir_shard":1,"id":269,"title":"love river night"}]"#;

fn obj(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => panic!("not an object"),
    }
}

fn plan(v: Value) -> SearchPlan {
    plan_search(&obj(v), &SearchContext::default()).unwrap()
}

fn plan_err(v: Value) -> MeiliError {
    plan_search(&obj(v), &SearchContext::default()).unwrap_err()
}

fn answer(order: usize, hits: Value, total: u64) -> NodeAnswer {
    NodeAnswer {
        order,
        body: json!({"hits": hits, "query": "star", "processingTimeMs": order as u64,
                     "limit": 20, "offset": 0, "estimatedTotalHits": total}),
    }
}

fn ids(v: &Value) -> Vec<u64> {
    v["hits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["id"].as_u64().unwrap())
        .collect()
}

fn keys(v: &Value) -> Vec<&str> {
    v.as_object().unwrap().keys().map(String::as_str).collect()
}

// ----- plan: validation -----

#[test]
fn negative_limit_is_meilisearch_error() {
    let e = plan_err(json!({"q": "x", "limit": -1}));
    assert_eq!(e.status, 400);
    assert_eq!(e.code, "invalid_search_limit");
    // Recorded: v1.50.0-core.jsonl "search 13".
    assert_eq!(
        e.message,
        "Invalid value type at `.limit`: expected a positive integer, but found a negative integer: `-1`"
    );
}

#[test]
fn pagination_type_errors() {
    let cases = [
        (json!({"offset": "doggo"}), "invalid_search_offset",
         "Invalid value type at `.offset`: expected a positive integer, but found a string: `\"doggo\"`"),
        (json!({"limit": "doggo"}), "invalid_search_limit",
         "Invalid value type at `.limit`: expected a positive integer, but found a string: `\"doggo\"`"),
        (json!({"page": "doggo"}), "invalid_search_page",
         "Invalid value type at `.page`: expected a positive integer, but found a string: `\"doggo\"`"),
        (json!({"hitsPerPage": "doggo"}), "invalid_search_hits_per_page",
         "Invalid value type at `.hitsPerPage`: expected a positive integer, but found a string: `\"doggo\"`"),
        (json!({"limit": 1.5}), "invalid_search_limit",
         "Invalid value type at `.limit`: expected a positive integer, but found a number: `1.5`"),
        (json!({"offset": null}), "invalid_search_offset",
         "Invalid value type at `.offset`: expected a positive integer, but found null"),
        (json!({"hitsPerPage": true}), "invalid_search_hits_per_page",
         "Invalid value type at `.hitsPerPage`: expected a positive integer, but found a boolean: `true`"),
        (json!({"page": [1]}), "invalid_search_page",
         "Invalid value type at `.page`: expected a positive integer, but found an array: `[1]`"),
        (json!({"limit": {"a": 1}}), "invalid_search_limit",
         "Invalid value type at `.limit`: expected a positive integer, but found an object: `{\"a\":1}`"),
    ];
    for (body, code, message) in cases {
        let e = plan_err(body);
        assert_eq!(
            (e.status, e.code.as_str(), e.message.as_str()),
            (400, code, message)
        );
    }
}

#[test]
fn first_invalid_parameter_in_body_order_is_reported() {
    let e = plan_err(json!({"page": -1, "limit": "x"}));
    assert_eq!(e.code, "invalid_search_page");
    let e = plan_err(json!({"limit": "x", "page": -1}));
    assert_eq!(e.code, "invalid_search_limit");
}

#[test]
fn null_page_and_hits_per_page_mean_absent() {
    let p = plan(json!({"page": null, "hitsPerPage": null, "offset": 2, "limit": 3}));
    assert_eq!(
        p.pagination,
        Pagination::OffsetLimit {
            offset: 2,
            limit: 3
        }
    );
}

// ----- plan: shard request -----

#[test]
fn offset_limit_is_over_fetched_from_the_top() {
    let p = plan(
        json!({"q": "star", "offset": 10, "limit": 5, "matchingStrategy": "all", "notAParam": 1}),
    );
    let r = &p.shard_request;
    assert_eq!(r["offset"], json!(0));
    assert_eq!(r["limit"], json!(15));
    assert_eq!(r["showRankingScore"], json!(true));
    assert_eq!(r["showRankingScoreDetails"], json!(true));
    // Unknown and uninterpreted parameters pass through for the node to judge.
    assert_eq!(r["notAParam"], json!(1));
    assert_eq!(r["matchingStrategy"], json!("all"));
    assert!(!p.show_ranking_score && !p.show_ranking_score_details);
    assert_eq!((p.window_offset, p.window_limit), (10, 5));
}

#[test]
fn windows_are_capped_by_max_total_hits() {
    let ctx = SearchContext {
        max_total_hits: 12,
        ..SearchContext::default()
    };
    let p = plan_search(&obj(json!({"offset": 10, "limit": 5})), &ctx).unwrap();
    assert_eq!(p.shard_request["limit"], json!(12));
    assert_eq!((p.window_offset, p.window_limit), (10, 2));
    let p = plan_search(&obj(json!({"offset": 50, "limit": 5})), &ctx).unwrap();
    assert_eq!((p.window_offset, p.window_limit), (12, 0));
    let p = plan_search(&obj(json!({"page": 3, "hitsPerPage": 5})), &ctx).unwrap();
    assert_eq!(p.shard_request["page"], json!(1));
    assert_eq!(p.shard_request["hitsPerPage"], json!(12));
    assert!(!p.shard_request.contains_key("limit"));
    assert_eq!((p.window_offset, p.window_limit), (10, 2));
}

#[test]
fn pages_are_over_fetched_as_one_big_first_page() {
    let p = plan(json!({"page": 3, "hitsPerPage": 4, "limit": 7, "offset": 1}));
    assert_eq!(p.shard_request["page"], json!(1));
    assert_eq!(p.shard_request["hitsPerPage"], json!(12));
    assert!(!p.shard_request.contains_key("offset"));
    assert_eq!(
        p.pagination,
        Pagination::Pages {
            page: 3,
            hits_per_page: 4
        }
    );
    // page 0 gives no hits, default hitsPerPage is 20.
    let p = plan(json!({"page": 0}));
    assert_eq!((p.window_offset, p.window_limit), (0, 0));
    assert_eq!(
        p.pagination,
        Pagination::Pages {
            page: 0,
            hits_per_page: 20
        }
    );
    let p = plan(json!({"hitsPerPage": 3}));
    assert_eq!(
        p.pagination,
        Pagination::Pages {
            page: 1,
            hits_per_page: 3
        }
    );
}

#[test]
fn ranking_flags_are_remembered_and_invalid_ones_left_to_the_node() {
    let p = plan(json!({"showRankingScore": true, "showRankingScoreDetails": "yes"}));
    assert!(p.show_ranking_score);
    assert!(!p.show_ranking_score_details);
    assert_eq!(p.shard_request["showRankingScoreDetails"], json!("yes"));
}

#[test]
fn restricted_attributes_get_what_the_merge_needs() {
    let ctx = SearchContext {
        distinct_attribute: Some("genre".into()),
        ..SearchContext::default()
    };
    let p = plan_search(&obj(json!({"attributesToRetrieve": ["title"]})), &ctx).unwrap();
    assert_eq!(
        p.shard_request["attributesToRetrieve"],
        json!(["title", "_miroir_shard", "genre"])
    );
    assert_eq!(
        p.added_attributes,
        vec!["_miroir_shard".to_string(), "genre".to_string()]
    );
    assert_eq!(p.distinct.as_deref(), Some("genre"));
    // The request's distinct wins over the setting.
    let p = plan_search(
        &obj(json!({"attributesToRetrieve": ["title", "director"], "distinct": "director"})),
        &ctx,
    )
    .unwrap();
    assert_eq!(p.added_attributes, vec!["_miroir_shard".to_string()]);
    assert_eq!(p.distinct.as_deref(), Some("director"));
    let p = plan_search(&obj(json!({"attributesToRetrieve": ["*"]})), &ctx).unwrap();
    assert!(p.added_attributes.is_empty());
    assert_eq!(p.shard_request["attributesToRetrieve"], json!(["*"]));
}

// ----- filters -----

#[test]
fn and_filter_for_every_client_form() {
    let extra = "_miroir_shard = 1";
    assert_eq!(and_filter(None, extra), json!(extra));
    assert_eq!(and_filter(Some(&Value::Null), extra), json!(extra));
    assert_eq!(and_filter(Some(&json!("  ")), extra), json!(extra));
    assert_eq!(
        and_filter(Some(&json!("genre = a OR genre = b")), extra),
        json!(["genre = a OR genre = b", extra])
    );
    assert_eq!(
        and_filter(
            Some(&json!([["genre = a", "genre = b"], "year > 2"])),
            extra
        ),
        json!([["genre = a", "genre = b"], "year > 2", extra])
    );
    // Invalid filters are left for the node to reject with its own message.
    assert_eq!(and_filter(Some(&json!(3)), extra), json!(3));
}

#[test]
fn cheapest_restriction_is_chosen() {
    // Everything held is assigned: no restriction.
    assert_eq!(shard_filter(&[0, 1, 2], &[0, 1, 2]), None);
    assert_eq!(shard_filter(&[0, 1, 2, 9], &[1, 2]), None);
    // Nothing held is assigned: match nothing.
    assert_eq!(
        shard_filter(&[5], &[1, 2]).as_deref(),
        Some("NOT _miroir_shard EXISTS")
    );
    // One value.
    assert_eq!(
        shard_filter(&[2], &[1, 2, 3, 4]).as_deref(),
        Some("_miroir_shard = 2")
    );
    // Most of what is held: exclusion.
    assert_eq!(
        shard_filter(&[0, 1, 3, 4], &[0, 1, 2, 3, 4]).as_deref(),
        Some("_miroir_shard != 2")
    );
    assert_eq!(
        shard_filter(&[0, 2, 4, 6], &[0, 1, 2, 3, 4, 5, 6]).as_deref(),
        Some("NOT _miroir_shard IN [1, 3, 5]")
    );
    // A contiguous run: one range beats a list.
    assert_eq!(
        shard_filter(&[3, 4, 5, 6], &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9]).as_deref(),
        Some("_miroir_shard 3 TO 6")
    );
    // Runs may jump over shards the node does not hold.
    assert_eq!(
        shard_filter(&[1, 5], &[1, 5, 9, 12]).as_deref(),
        Some("_miroir_shard 1 TO 5")
    );
    // Scattered values: IN is the cheapest.
    assert_eq!(
        shard_filter(&[0, 4, 8], &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9]).as_deref(),
        Some("_miroir_shard IN [0, 4, 8]")
    );
}

/// A tiny evaluator for the restriction expressions `shard_filter` emits.
fn eval(expr: &str, shard: u32) -> bool {
    let expr = expr.trim();
    if expr == "NOT _miroir_shard EXISTS" {
        return false;
    }
    if let Some(rest) = expr.strip_prefix("NOT ") {
        return !eval(rest, shard);
    }
    if expr.contains(" OR ") {
        return expr.split(" OR ").any(|t| eval(t, shard));
    }
    let rest = expr.strip_prefix("_miroir_shard ").expect("shard field");
    if let Some(list) = rest.strip_prefix("IN [") {
        let list = list.trim_end_matches(']');
        return list.split(", ").any(|v| v.parse::<u32>().unwrap() == shard);
    }
    if let Some(v) = rest.strip_prefix("= ") {
        return v.parse::<u32>().unwrap() == shard;
    }
    if let Some(v) = rest.strip_prefix("!= ") {
        return v.parse::<u32>().unwrap() != shard;
    }
    let (a, b) = rest.split_once(" TO ").expect("range");
    (a.parse::<u32>().unwrap()..=b.parse::<u32>().unwrap()).contains(&shard)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]
    #[test]
    fn shard_filter_selects_exactly_assigned_and_held(
        held in prop::collection::btree_set(0u32..24, 0..16),
        assigned in prop::collection::btree_set(0u32..24, 0..16),
    ) {
        let held: Vec<u32> = held.into_iter().collect();
        let assigned: Vec<u32> = assigned.into_iter().collect();
        match shard_filter(&assigned, &held) {
            None => prop_assert!(held.iter().all(|s| assigned.contains(s))),
            Some(expr) => {
                for s in &held {
                    prop_assert_eq!(eval(&expr, *s), assigned.contains(s), "{} on {}", expr, s);
                }
                let cost = expr.matches("_miroir_shard").count().max(expr.matches(", ").count() + 1);
                let wanted = held.iter().filter(|s| assigned.contains(s)).count();
                prop_assert!(cost <= wanted.max(1) || expr.starts_with("NOT"));
            }
        }
    }
}

#[test]
fn node_request_ands_the_restriction_in() {
    let p = plan(json!({"q": "x", "filter": "genre = drama"}));
    let r = p.node_request(Some(&ShardRestriction {
        assigned: vec![1],
        held: vec![0, 1],
    }));
    // `= 1` and `!= 0` cost the same: the positive form is preferred.
    assert_eq!(r["filter"], json!(["genre = drama", "_miroir_shard = 1"]));
    let r = p.node_request(Some(&ShardRestriction {
        assigned: vec![0, 1, 3],
        held: vec![0, 1, 2, 3],
    }));
    assert_eq!(r["filter"], json!(["genre = drama", "_miroir_shard != 2"]));
    let r = p.node_request(Some(&ShardRestriction {
        assigned: vec![0, 1, 3, 5],
        held: vec![0, 1, 2, 3, 5, 6],
    }));
    assert_eq!(
        r["filter"],
        json!([
            "genre = drama",
            "_miroir_shard 0 TO 1 OR _miroir_shard 3 TO 5"
        ])
    );
    let r = p.node_request(Some(&ShardRestriction {
        assigned: vec![0, 1],
        held: vec![0, 1],
    }));
    assert_eq!(r["filter"], json!("genre = drama"));
    let r = p.node_request(None);
    assert_eq!(r, p.shard_request);
    let p = plan(json!({"q": "x"}));
    let r = p.node_request(Some(&ShardRestriction {
        assigned: vec![2, 3],
        held: vec![0, 1, 2, 3, 4, 5, 6, 7],
    }));
    assert_eq!(r["filter"], json!("_miroir_shard 2 TO 3"));
}

// ----- GET -----

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

#[test]
fn get_parameters_become_a_post_body() {
    let body = search_params_from_query(&pairs(&[
        ("q", "love"),
        ("limit", "2"),
        ("offset", "1"),
        ("sort", "year:desc,_geoPoint(48.5, 2.5):asc,title:asc"),
        ("attributesToRetrieve", "title,id"),
        ("facets", "genre"),
        ("showRankingScore", "true"),
        ("filter", "genre = drama"),
        ("matchingStrategy", "all"),
        ("rankingScoreThreshold", "0.5"),
        ("hybridEmbedder", "default"),
        ("vector", "0.5,,0.25"),
        ("attributesToCrop", ""),
        ("attributesToHighlight", ",title,,overview"),
    ]))
    .unwrap();
    assert_eq!(
        Value::Object(body),
        json!({
            "q": "love", "limit": 2, "offset": 1,
            "sort": ["year:desc", "_geoPoint(48.5,2.5):asc", "title:asc"],
            "attributesToRetrieve": ["title", "id"], "facets": ["genre"],
            "showRankingScore": true, "filter": "genre = drama", "matchingStrategy": "all",
            "rankingScoreThreshold": 0.5, "vector": [0.5, 0.25],
            "attributesToCrop": [], "attributesToHighlight": ["title", "overview"],
            "hybrid": {"semanticRatio": 0.5, "embedder": "default"}
        })
    );
    // A JSON filter is read as JSON.
    let body =
        search_params_from_query(&pairs(&[("filter", "[\"a = 1\", [\"b = 2\", \"c = 3\"]]")]))
            .unwrap();
    assert_eq!(body["filter"], json!(["a = 1", ["b = 2", "c = 3"]]));
}

/// Query pairs, expected code, expected message.
type GetCase = (
    Vec<(&'static str, &'static str)>,
    &'static str,
    &'static str,
);

#[test]
fn get_parameter_errors() {
    let cases: Vec<GetCase> = vec![
        (vec![("limit", "doggo")], "invalid_search_limit",
         "Invalid value in parameter `limit`: could not parse `doggo` as a positive integer"),
        (vec![("page", "doggo")], "invalid_search_page",
         "Invalid value in parameter `page`: could not parse `doggo` as a positive integer"),
        (vec![("hitsPerPage", "-1")], "invalid_search_hits_per_page",
         "Invalid value in parameter `hitsPerPage`: could not parse `-1` as a positive integer"),
        (vec![("offset", "")], "invalid_search_offset",
         "Invalid value in parameter `offset`: could not parse `` as a positive integer"),
        (vec![("cropLength", "doggo")], "invalid_search_crop_length",
         "Invalid value in parameter `cropLength`: could not parse `doggo` as a positive integer"),
        (vec![("showRankingScore", "yes")], "invalid_search_show_ranking_score",
         "Invalid value in parameter `showRankingScore`: could not parse `yes` as a boolean, expected either `true` or `false`"),
        (vec![("matchingStrategy", "doggo")], "invalid_search_matching_strategy",
         "Unknown value `doggo` for parameter `matchingStrategy`: expected one of `last`, `all`, `frequency`"),
        (vec![("rankingScoreThreshold", "2")], "invalid_search_ranking_score_threshold",
         "Invalid value in parameter `rankingScoreThreshold`: the value of `rankingScoreThreshold` is invalid, expected a float between `0.0` and `1.0`."),
        (vec![("hybridSemanticRatio", "0.3")], "invalid_search_hybrid_query",
         "`hybridEmbedder` is mandatory when `hybridSemanticRatio` is present"),
        (vec![("hybridEmbedder", "e"), ("hybridSemanticRatio", "x")], "invalid_search_semantic_ratio",
         "Invalid value in parameter `hybridSemanticRatio`: the value of `semanticRatio` is invalid, expected a float between `0.0` and `1.0`."),
        (vec![("vector", "0.1")], "missing_search_hybrid",
         "`hybridEmbedder` is mandatory when `vector` is present"),
        (vec![("hybridEmbedder", "e"), ("vector", "0.1,x")], "invalid_search_vector",
         "Invalid value in parameter `vector`: invalid float literal"),
    ];
    for (list, code, message) in cases {
        let e = search_params_from_query(&pairs(&list)).unwrap_err();
        assert_eq!(
            (e.status, e.code.as_str(), e.message.as_str()),
            (400, code, message)
        );
    }
    let e = search_params_from_query(&pairs(&[("notAParam", "1")])).unwrap_err();
    assert_eq!(e.code, "bad_request");
    assert!(e.message.starts_with("Unknown parameter `notAParam`: expected one of `q`, `offset`, `limit`, `page`, `hitsPerPage`, `attributesToRetrieve`"));
    assert!(e
        .message
        .ends_with("`showRankingScore`, `showRankingScoreDetails`, `showPerformanceDetails`"));
}

// ----- merge: real ranking details -----

#[test]
fn real_details_order_where_ranking_score_would_not() {
    // Recorded order: 212, 25, 261, 120. Hit 25 ranks before 261 only because of `rating:desc` (10.0 > 9.9):
    // 261 is better on every scored rule, so any global score (which ignores custom rules) puts 261 first.
    let hits: Vec<Value> = serde_json::from_str(S0).unwrap();
    let by = |id: u64| {
        hits.iter()
            .find(|h| h["id"] == json!(id))
            .unwrap()
            .as_object()
            .unwrap()
            .clone()
    };
    let (h25, h261) = (by(25), by(261));
    assert_eq!(compare_hits(&h25, &h261), Ordering::Less);
    let mut with_scores = Vec::new();
    for id in [212u64, 25, 261, 120] {
        let mut h = by(id);
        // A global score in the spirit of `_rankingScore`: product of the scored rules only.
        let score: f64 = h["_rankingScoreDetails"]
            .as_object()
            .unwrap()
            .values()
            .filter_map(|e| e.get("score").and_then(Value::as_f64))
            .product();
        h.insert("_rankingScore".into(), json!(score));
        with_scores.push(h);
    }
    assert!(with_scores[1]["_rankingScore"].as_f64() < with_scores[2]["_rankingScore"].as_f64());
    // Shard 0 and shard 1 on different nodes.
    let node0: Vec<Value> = with_scores
        .iter()
        .filter(|h| h["_miroir_shard"] == json!(0))
        .cloned()
        .map(Value::Object)
        .collect();
    let node1: Vec<Value> = with_scores
        .iter()
        .filter(|h| h["_miroir_shard"] == json!(1))
        .cloned()
        .map(Value::Object)
        .collect();
    let p = plan(json!({"q": "star", "limit": 4, "showRankingScoreDetails": true}));
    let merged = merge_search(
        &p,
        vec![
            answer(1, Value::Array(node1), 40),
            answer(0, Value::Array(node0), 59),
        ],
    )
    .unwrap();
    assert_eq!(ids(&merged), vec![212, 25, 261, 120]);
    assert_eq!(merged["estimatedTotalHits"], json!(99));
    let first = merged["hits"][0].as_object().unwrap();
    assert!(first.contains_key("_rankingScoreDetails"));
    assert!(!first.contains_key("_rankingScore"));
    assert!(!first.contains_key("_miroir_shard"));
    // Without details, the fallback is the score.
    let mut a = h25.clone();
    let mut b = h261.clone();
    a.remove("_rankingScoreDetails");
    b.remove("_rankingScoreDetails");
    a.insert("_rankingScore".into(), json!(0.2));
    b.insert("_rankingScore".into(), json!(0.6));
    assert_eq!(compare_hits(&a, &b), Ordering::Greater);
}

#[test]
fn real_geo_sort_details_order_by_distance() {
    // Recorded order: 212 (rating 10, 178 km), 25 (rating 10, 265 km), 261 (rating 9.9, 70 km).
    let hits: Vec<Value> = serde_json::from_str(S4).unwrap();
    let node0 = json!([hits[0]]);
    let node1 = json!([hits[1], hits[2]]);
    let p = plan(json!({"q": "", "limit": 3, "sort": ["_geoPoint(48.5, 2.5):asc"]}));
    let merged = merge_search(&p, vec![answer(0, node1, 150), answer(1, node0, 150)]).unwrap();
    assert_eq!(ids(&merged), vec![212, 25, 261]);
    assert_eq!(merged["hits"][0]["_geoDistance"], json!(178795));
    assert_eq!(merged["estimatedTotalHits"], json!(300));
}

#[test]
fn reserved_fields_are_stripped_from_formatted_and_matches() {
    let hits: Vec<Value> = serde_json::from_str(S13).unwrap();
    let p = plan(
        json!({"q": "ghost", "limit": 2, "attributesToHighlight": ["*"], "showMatchesPosition": true}),
    );
    let merged = merge_search(&p, vec![answer(0, Value::Array(hits), 105)]).unwrap();
    for h in merged["hits"].as_array().unwrap() {
        assert!(h.get("_miroir_shard").is_none());
        assert!(h["_formatted"].get("_miroir_shard").is_none());
        assert!(h["_formatted"].get("title").is_some());
        assert!(h["_matchesPosition"].get("overview").is_some());
    }
    let hit = json!({"id": 1, "_miroir_shard": 0, "_miroir_other": 1, "genre": "a",
                     "_matchesPosition": {"_miroir_shard": [{"start": 0, "length": 1}], "genre": []},
                     "_formatted": {"genre": "a", "_miroir_shard": "0"}});
    let ctx = SearchContext {
        distinct_attribute: Some("genre".into()),
        ..SearchContext::default()
    };
    let p = plan_search(&obj(json!({"attributesToRetrieve": ["id"]})), &ctx).unwrap();
    let merged = merge_search(&p, vec![answer(0, json!([hit]), 1)]).unwrap();
    // `genre` was added for distinct only: it goes away too.
    assert_eq!(
        merged["hits"][0],
        json!({"id": 1, "_matchesPosition": {}, "_formatted": {}})
    );
}

// ----- merge: shapes, distinct, facets -----

fn placeholder_hit(id: u64, shard: u64, genre: Option<&str>) -> Value {
    let mut h = json!({"id": id, "_miroir_shard": shard, "_rankingScore": 1.0,
                       "_rankingScoreDetails": {}});
    if let Some(g) = genre {
        h["genre"] = json!(g);
    }
    h
}

#[test]
fn ties_break_by_shard_then_keep_node_order() {
    let p = plan(json!({"limit": 10}));
    let n0 = json!([placeholder_hit(1, 3, None), placeholder_hit(2, 3, None)]);
    let n1 = json!([placeholder_hit(3, 1, None), placeholder_hit(4, 5, None)]);
    let merged = merge_search(&p, vec![answer(0, n0, 2), answer(1, n1, 2)]).unwrap();
    assert_eq!(ids(&merged), vec![3, 1, 2, 4]);
}

#[test]
fn distinct_keeps_the_best_hit_per_value_across_nodes() {
    let p = plan(json!({"limit": 10, "distinct": "genre"}));
    let n0 = json!([
        placeholder_hit(1, 0, Some("Drama")),
        placeholder_hit(2, 0, None),
        placeholder_hit(3, 0, Some("comedy"))
    ]);
    let n1 = json!([
        placeholder_hit(4, 1, Some("drama")),
        placeholder_hit(5, 1, None),
        placeholder_hit(6, 1, Some("horror"))
    ]);
    let merged = merge_search(&p, vec![answer(0, n0, 3), answer(1, n1, 3)]).unwrap();
    assert_eq!(ids(&merged), vec![1, 2, 3, 5, 6]);
    // Array values: a hit sharing any value with an earlier hit is dropped.
    let n0 = json!([{"id": 1, "_miroir_shard": 0, "tags": ["a", "b"]}, {"id": 2, "_miroir_shard": 0, "tags": ["c"]}]);
    let n1 = json!([{"id": 3, "_miroir_shard": 1, "tags": ["b", "d"]}, {"id": 4, "_miroir_shard": 1, "tags": []}]);
    let p = plan(json!({"limit": 10, "distinct": "tags"}));
    let merged = merge_search(&p, vec![answer(0, n0, 2), answer(1, n1, 2)]).unwrap();
    assert_eq!(ids(&merged), vec![1, 2, 4]);
}

#[test]
fn response_shapes_follow_meilisearch_field_order() {
    let p = plan(json!({"q": "night", "limit": 0, "facets": ["genre", "year"]}));
    let a = NodeAnswer {
        order: 0,
        body: json!({"hits": [], "query": "night", "processingTimeMs": 3, "limit": 0, "offset": 0,
        "estimatedTotalHits": 60, "facetDistribution": {"year": {"1951": 1, "1999": 2}, "genre": {"action": 12, "comedy": 9}},
        "facetStats": {"year": {"min": 1951.0, "max": 1999.0}}, "requestUid": "u0"}),
    };
    let b = NodeAnswer {
        order: 1,
        body: json!({"hits": [], "query": "night", "processingTimeMs": 7, "limit": 0, "offset": 0,
        "estimatedTotalHits": 40, "facetDistribution": {"genre": {"action": 8, "drama": 14}, "year": {"1950": 4}},
        "facetStats": {"year": {"min": 1950.0, "max": 2025.0}}, "requestUid": "u1"}),
    };
    let merged = merge_search(&p, vec![b, a]).unwrap();
    assert_eq!(
        keys(&merged),
        vec![
            "hits",
            "query",
            "processingTimeMs",
            "limit",
            "offset",
            "estimatedTotalHits",
            "facetDistribution",
            "facetStats",
            "requestUid"
        ]
    );
    assert_eq!(merged["processingTimeMs"], json!(7));
    assert_eq!(merged["requestUid"], json!("u0"));
    assert_eq!(merged["estimatedTotalHits"], json!(100));
    assert_eq!(
        merged["facetDistribution"],
        json!({"genre": {"action": 20, "comedy": 9, "drama": 14}, "year": {"1950": 4, "1951": 1, "1999": 2}})
    );
    assert_eq!(keys(&merged["facetDistribution"]), vec!["genre", "year"]);
    assert_eq!(
        keys(&merged["facetDistribution"]["genre"]),
        vec!["action", "comedy", "drama"]
    );
    assert_eq!(
        merged["facetStats"],
        json!({"year": {"min": 1950.0, "max": 2025.0}})
    );
    assert_eq!(merged["facetStats"]["year"]["max"].to_string(), "2025.0");

    let p = plan(json!({"q": "dark", "page": 2, "hitsPerPage": 5}));
    let merged = merge_search(
        &p,
        vec![NodeAnswer {
            order: 0,
            body: json!({"hits": [], "query": "dark", "processingTimeMs": 1,
        "hitsPerPage": 10, "page": 1, "totalPages": 2, "totalHits": 11}),
        }],
    )
    .unwrap();
    assert_eq!(
        keys(&merged),
        vec![
            "hits",
            "query",
            "processingTimeMs",
            "hitsPerPage",
            "page",
            "totalPages",
            "totalHits"
        ]
    );
    assert_eq!(
        (
            merged["page"].clone(),
            merged["totalPages"].clone(),
            merged["totalHits"].clone()
        ),
        (json!(2), json!(3), json!(11))
    );
}

#[test]
fn facet_values_are_ordered_and_truncated_like_meilisearch() {
    let mut ctx = SearchContext {
        max_values_per_facet: 3,
        ..SearchContext::default()
    };
    ctx.sort_facet_values_by
        .insert("*".into(), FacetOrder::Alpha);
    ctx.sort_facet_values_by
        .insert("director".into(), FacetOrder::Count);
    let p = plan_search(
        &obj(json!({"facets": ["director", "genre", "mixed"], "limit": 0})),
        &ctx,
    )
    .unwrap();
    let a = NodeAnswer {
        order: 0,
        body: json!({"hits": [], "query": "", "processingTimeMs": 0, "estimatedTotalHits": 10,
        "facetDistribution": {"director": {"d1": 3, "d2": 1, "d9": 2}, "genre": {"Drama": 2, "action": 1}, "mixed": {"10": 1, "b": 1}}}),
    };
    let b = NodeAnswer {
        order: 1,
        body: json!({"hits": [], "query": "", "processingTimeMs": 0, "estimatedTotalHits": 10,
        "facetDistribution": {"director": {"d2": 3, "d3": 4}, "genre": {"drama": 1, "comedy": 5}, "mixed": {"9": 1, "a": 2}}}),
    };
    let merged = merge_search(&p, vec![a, b]).unwrap();
    let d = &merged["facetDistribution"];
    // count: highest first, equal counts by value descending.
    assert_eq!(keys(&d["director"]), vec!["d3", "d2", "d1"]);
    assert_eq!(d["director"], json!({"d3": 4, "d2": 4, "d1": 3}));
    // alpha: normalised order, one entry for both spellings (the first node's spelling).
    assert_eq!(keys(&d["genre"]), vec!["action", "comedy", "Drama"]);
    assert_eq!(d["genre"]["Drama"], json!(3));
    // numbers before strings; under 3000 candidates numbers order by their text ("10" < "9").
    assert_eq!(keys(&d["mixed"]), vec!["10", "9", "a"]);
}

#[test]
fn max_total_hits_caps_merged_totals() {
    let ctx = SearchContext {
        max_total_hits: 50,
        ..SearchContext::default()
    };
    let p = plan_search(&obj(json!({"offset": 60, "limit": 5})), &ctx).unwrap();
    let merged =
        merge_search(&p, vec![answer(0, json!([]), 40), answer(1, json!([]), 30)]).unwrap();
    assert_eq!(merged["estimatedTotalHits"], json!(50));
    assert_eq!(merged["offset"], json!(50));
    assert_eq!(merged["limit"], json!(5));
}

#[test]
fn malformed_node_answers_are_bad_node_responses() {
    let p = plan(json!({"q": "x", "facets": ["genre"]}));
    let bodies = [
        json!([1, 2]),
        json!({"query": "x", "estimatedTotalHits": 1}),
        json!({"hits": {}, "estimatedTotalHits": 1}),
        json!({"hits": [1], "estimatedTotalHits": 1}),
        json!({"hits": []}),
        json!({"hits": [], "estimatedTotalHits": -1}),
        json!({"hits": [], "estimatedTotalHits": 1, "facetDistribution": []}),
        json!({"hits": [], "estimatedTotalHits": 1, "facetDistribution": {"genre": []}}),
        json!({"hits": [], "estimatedTotalHits": 1, "facetDistribution": {"genre": {"a": "x"}}}),
        json!({"hits": [], "estimatedTotalHits": 1, "facetStats": []}),
        json!({"hits": [], "estimatedTotalHits": 1, "facetStats": {"year": {"min": 1}}}),
    ];
    for body in bodies {
        let e = merge_search(
            &p,
            vec![
                answer(0, json!([]), 1),
                NodeAnswer {
                    order: 4,
                    body: body.clone(),
                },
            ],
        )
        .unwrap_err();
        assert_eq!(
            (e.status, e.code.as_str()),
            (502, "miroir_bad_node_response"),
            "{body}"
        );
        assert!(e.message.contains("`#4`"), "{}", e.message);
    }
    // Pages expect totalHits.
    let p = plan(json!({"page": 1}));
    let e = merge_search(&p, vec![answer(0, json!([]), 1)]).unwrap_err();
    assert!(e.message.contains("totalHits"));
}

#[test]
fn facet_search_answers_merge_like_meilisearch() {
    // Recorded (count order): d13 9, d17 8, d18 7, d11 7 — equal counts by value descending.
    let a = NodeAnswer {
        order: 0,
        body: json!({"facetHits": [{"value": "d13", "count": 5}, {"value": "d11", "count": 4}, {"value": "d18", "count": 2}], "facetQuery": "d1", "processingTimeMs": 2}),
    };
    let b = NodeAnswer {
        order: 1,
        body: json!({"facetHits": [{"value": "d17", "count": 8}, {"value": "d13", "count": 4}, {"value": "d18", "count": 5}, {"value": "d11", "count": 3}], "facetQuery": "d1", "processingTimeMs": 5}),
    };
    let merged = merge_facet_search(vec![b.clone(), a.clone()], FacetOrder::Count, 100).unwrap();
    assert_eq!(
        merged,
        json!({"facetHits": [{"value": "d13", "count": 9}, {"value": "d17", "count": 8}, {"value": "d18", "count": 7}, {"value": "d11", "count": 7}], "facetQuery": "d1", "processingTimeMs": 5})
    );
    assert_eq!(
        keys(&merged),
        vec!["facetHits", "facetQuery", "processingTimeMs"]
    );
    let merged = merge_facet_search(vec![a.clone(), b.clone()], FacetOrder::Alpha, 2).unwrap();
    assert_eq!(
        merged["facetHits"],
        json!([{"value": "d11", "count": 7}, {"value": "d13", "count": 9}])
    );
    for bad in [
        json!("x"),
        json!({"facetQuery": "d"}),
        json!({"facetHits": [{"value": "a"}]}),
        json!({"facetHits": [{"value": 1, "count": 1}]}),
    ] {
        let e = merge_facet_search(
            vec![
                a.clone(),
                NodeAnswer {
                    order: 2,
                    body: bad,
                },
            ],
            FacetOrder::Count,
            10,
        )
        .unwrap_err();
        assert_eq!(e.code, "miroir_bad_node_response");
    }
}

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        (0u64..5).prop_map(|n| json!(n)),
        any::<f64>().prop_map(|f| json!(f)),
        "[a-z_]{0,6}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec(
                (
                    prop::sample::select(vec![
                        "hits",
                        "estimatedTotalHits",
                        "totalHits",
                        "facetDistribution",
                        "facetStats",
                        "_rankingScoreDetails",
                        "_rankingScore",
                        "_miroir_shard",
                        "order",
                        "score",
                        "value",
                        "distance",
                        "rating:desc",
                        "_geoPoint(1, 2):asc",
                        "genre",
                        "min",
                        "max",
                        "facetHits",
                        "count",
                        "_formatted",
                        "_matchesPosition",
                        "x",
                    ]),
                    inner
                ),
                0..6
            )
            .prop_map(|kv| Value::Object(
                kv.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
            )),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]
    /// Whatever nodes send, the merge answers (a response or a 502), never panics.
    #[test]
    fn arbitrary_node_bodies_never_panic(
        bodies in prop::collection::vec(arb_json(), 0..4),
        client in arb_json(),
        pages in any::<bool>(),
    ) {
        let client = match client {
            Value::Object(m) => m,
            _ => Map::new(),
        };
        let ctx = SearchContext { distinct_attribute: Some("genre".into()), ..SearchContext::default() };
        if let Ok(p) = plan_search(&client, &ctx) {
            let answers: Vec<NodeAnswer> = bodies.iter().cloned().enumerate().map(|(order, body)| NodeAnswer { order, body }).collect();
            if let Err(e) = merge_search(&p, answers) {
                prop_assert_eq!(e.status, 502);
            }
        }
        let p = plan(if pages { json!({"page": 1, "facets": ["genre"]}) } else { json!({"facets": ["genre"]}) });
        let wrapped: Vec<NodeAnswer> = bodies.iter().cloned().enumerate().map(|(order, hits)| NodeAnswer {
            order,
            body: json!({"hits": [hits], "estimatedTotalHits": 1, "totalHits": 1}),
        }).collect();
        let _ = merge_search(&p, wrapped);
        let _ = merge_facet_search(bodies.iter().cloned().enumerate().map(|(order, body)| NodeAnswer { order, body }).collect(), FacetOrder::Count, 3);
    }
}
