//! Property tests: merging node answers equals the answer of one node holding every document.
//!
//! The model: random documents with a few fields; a query-dependent scoring (words, typo, proximity ranks)
//! plus a custom ranking rule `rating:desc` (numbers, strings and missing values mixed), an optional client
//! `sort`, and `year:asc`. The oracle orders all documents from the raw fields (not from the JSON details
//! the merge reads), breaking ties by shard then id. Shards are spread over nodes (a node may cover several
//! shards); each node answers like Meilisearch: its own hits in that order, the window the plan asks for,
//! its totals capped by maxTotalHits, its facets truncated to its own maxValuesPerFacet.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use miroir_core::search::{
    merge_search, plan_search, FacetOrder, NodeAnswer, SearchContext, SearchPlan, ShardRestriction,
};
use proptest::prelude::*;
use serde_json::{json, Map, Value};

#[derive(Clone, Debug)]
enum Rating {
    Num(f64),
    Str(String),
    Missing,
}

#[derive(Clone, Debug)]
struct Doc {
    id: u32,
    shard: u32,
    words: u32,
    typo: u32,
    prox: u32,
    rating: Rating,
    year: i64,
    genre: Option<String>,
    title: String,
}

#[derive(Clone, Debug)]
struct Query {
    placeholder: bool,
    /// (field, ascending)
    sort: Option<(&'static str, bool)>,
    distinct: Option<bool>, // None: no distinct; Some(true): request param; Some(false): settings
    facets: bool,
    count_order: bool,
    show_score: bool,
    show_details: bool,
}

fn rating_json(r: &Rating) -> Value {
    match r {
        Rating::Num(n) => json!(n),
        Rating::Str(s) => json!(s),
        Rating::Missing => Value::Null,
    }
}

fn field_json(d: &Doc, field: &str) -> Value {
    match field {
        "rating" => rating_json(&d.rating),
        "year" => json!(d.year as f64),
        "title" => json!(d.title),
        _ => Value::Null,
    }
}

/// Meilisearch's value order, written from raw data: numbers, then strings, then missing; within a kind in
/// the rule's direction. `Less` = `a` first.
fn value_order(a: &Value, b: &Value, asc: bool) -> Ordering {
    fn kind(v: &Value) -> u8 {
        match v {
            Value::Number(_) => 0,
            Value::String(_) => 1,
            _ => 2,
        }
    }
    let k = kind(a).cmp(&kind(b));
    if k != Ordering::Equal {
        return k;
    }
    let within = match (a, b) {
        (Value::Number(x), Value::Number(y)) => x
            .as_f64()
            .unwrap()
            .partial_cmp(&y.as_f64().unwrap())
            .unwrap(),
        (Value::String(x), Value::String(y)) => x.cmp(y),
        _ => Ordering::Equal,
    };
    if asc {
        within
    } else {
        within.reverse()
    }
}

fn oracle_cmp(q: &Query, a: &Doc, b: &Doc) -> Ordering {
    let mut ord = Ordering::Equal;
    if !q.placeholder {
        ord = ord.then(b.words.cmp(&a.words)).then(a.typo.cmp(&b.typo));
    }
    ord = ord.then_with(|| value_order(&rating_json(&a.rating), &rating_json(&b.rating), false));
    if !q.placeholder {
        ord = ord.then(a.prox.cmp(&b.prox));
    }
    if let Some((field, asc)) = q.sort {
        ord = ord.then_with(|| value_order(&field_json(a, field), &field_json(b, field), asc));
    }
    ord.then(a.year.cmp(&b.year))
        .then(a.shard.cmp(&b.shard))
        .then(a.id.cmp(&b.id))
}

fn matches(q: &Query, d: &Doc) -> bool {
    q.placeholder || d.words > 0
}

/// The hit a node sends: document fields, `_miroir_shard`, a misleading `_rankingScore` (it ignores the custom
/// rule) and the details, whose keys come alphabetically (as the fixture shows) rather than by `order`.
fn node_hit(q: &Query, d: &Doc) -> Value {
    let mut hit = Map::new();
    hit.insert("id".into(), json!(d.id));
    hit.insert("title".into(), json!(d.title));
    if let Some(g) = &d.genre {
        hit.insert("genre".into(), json!(g));
    }
    hit.insert("year".into(), json!(d.year));
    if !matches!(d.rating, Rating::Missing) {
        hit.insert("rating".into(), rating_json(&d.rating));
    }
    hit.insert("_miroir_shard".into(), json!(d.shard));
    let mut rules: Vec<(String, Value)> = Vec::new();
    if !q.placeholder {
        rules.push((
            "words".into(),
            json!({"matchingWords": d.words, "maxMatchingWords": 3, "score": d.words as f64 / 3.0}),
        ));
        rules.push((
            "typo".into(),
            json!({"typoCount": d.typo, "maxTypoCount": 2, "score": (3 - d.typo) as f64 / 3.0}),
        ));
    }
    rules.push((
        "rating:desc".into(),
        json!({"value": rating_json(&d.rating)}),
    ));
    if !q.placeholder {
        rules.push((
            "proximity".into(),
            json!({"score": (5 - d.prox) as f64 / 5.0}),
        ));
    }
    if let Some((field, asc)) = q.sort {
        let name = format!("{field}:{}", if asc { "asc" } else { "desc" });
        rules.push((name, json!({"value": field_json(d, field)})));
    }
    rules.push(("year:asc".into(), json!({"value": d.year as f64})));
    let mut details = BTreeMap::new();
    for (i, (name, mut entry)) in rules.into_iter().enumerate() {
        entry
            .as_object_mut()
            .unwrap()
            .insert("order".into(), json!(i));
        details.insert(name, entry);
    }
    let misleading = if q.placeholder {
        1.0
    } else {
        (d.words as f64 / 3.0) * 0.5 + (5 - d.prox) as f64 / 10.0
    };
    hit.insert("_rankingScore".into(), json!(misleading));
    hit.insert(
        "_rankingScoreDetails".into(),
        Value::Object(details.into_iter().collect()),
    );
    Value::Object(hit)
}

fn apply_distinct<'a>(q: &Query, docs: Vec<&'a Doc>) -> Vec<&'a Doc> {
    if q.distinct.is_none() {
        return docs;
    }
    let mut seen = std::collections::HashSet::new();
    docs.into_iter()
        .filter(|d| match &d.genre {
            None => true,
            Some(g) => seen.insert(g.clone()),
        })
        .collect()
}

/// Meilisearch's facet distribution for matching documents: numbers first (by text, fewer than 3000
/// candidates), then strings; alpha or count order; truncated.
fn facet_distribution(docs: &[&Doc], max: usize, count_order: bool) -> Value {
    let mut out = Map::new();
    // genre: strings
    let mut genres: BTreeMap<String, u64> = BTreeMap::new();
    let mut years: BTreeMap<String, (f64, u64)> = BTreeMap::new();
    for d in docs {
        if let Some(g) = &d.genre {
            *genres.entry(g.clone()).or_default() += 1;
        }
        let e = years
            .entry((d.year as f64).to_string())
            .or_insert((d.year as f64, 0));
        e.1 += 1;
    }
    let mut g: Vec<(String, u64)> = genres.into_iter().collect();
    let mut y: Vec<(String, f64, u64)> = years.into_iter().map(|(k, (f, c))| (k, f, c)).collect();
    if count_order {
        g.sort_by(|a, b| b.1.cmp(&a.1).then(b.0.cmp(&a.0)));
        y.sort_by(|a, b| b.2.cmp(&a.2).then(b.1.partial_cmp(&a.1).unwrap()));
    }
    let mut gm = Map::new();
    for (k, c) in g.into_iter().take(max) {
        gm.insert(k, json!(c));
    }
    let mut ym = Map::new();
    for (k, _, c) in y.into_iter().take(max) {
        ym.insert(k, json!(c));
    }
    out.insert("genre".into(), Value::Object(gm));
    out.insert("year".into(), Value::Object(ym));
    Value::Object(out)
}

fn facet_stats(docs: &[&Doc]) -> Value {
    let mut out = Map::new();
    if !docs.is_empty() {
        let min = docs.iter().map(|d| d.year).min().unwrap() as f64;
        let max = docs.iter().map(|d| d.year).max().unwrap() as f64;
        out.insert("year".into(), json!({"min": min, "max": max}));
    }
    Value::Object(out)
}

fn ctx_for(q: &Query, max_total_hits: usize, max_values: usize) -> SearchContext {
    let mut ctx = SearchContext {
        max_total_hits,
        max_values_per_facet: max_values,
        ..SearchContext::default()
    };
    if q.count_order {
        ctx.sort_facet_values_by
            .insert("*".into(), FacetOrder::Count);
    }
    if q.distinct == Some(false) {
        ctx.distinct_attribute = Some("genre".into());
    }
    ctx
}

fn client_body(q: &Query, pagination: &[(&str, usize)]) -> Map<String, Value> {
    let mut body = Map::new();
    body.insert("q".into(), json!(if q.placeholder { "" } else { "star" }));
    for (k, v) in pagination {
        body.insert((*k).into(), json!(v));
    }
    if let Some((field, asc)) = q.sort {
        body.insert(
            "sort".into(),
            json!([format!("{field}:{}", if asc { "asc" } else { "desc" })]),
        );
    }
    if q.distinct == Some(true) {
        body.insert("distinct".into(), json!("genre"));
    }
    if q.facets {
        body.insert("facets".into(), json!(["genre", "year"]));
    }
    if q.show_score {
        body.insert("showRankingScore".into(), json!(true));
    }
    if q.show_details {
        body.insert("showRankingScoreDetails".into(), json!(true));
    }
    body
}

/// What each node answers to the plan, given which shards it covers.
fn node_answers(
    plan: &SearchPlan,
    q: &Query,
    docs: &[Doc],
    placement: &[usize],
    nodes: usize,
    node_max_values: usize,
) -> Vec<NodeAnswer> {
    let mut answers = Vec::new();
    for node in 0..nodes {
        let shards: Vec<u32> = placement
            .iter()
            .enumerate()
            .filter(|(_, n)| **n == node)
            .map(|(s, _)| s as u32)
            .collect();
        if shards.is_empty() {
            continue;
        }
        // The node holds every shard; the restriction tells it which ones to answer for.
        let held: Vec<u32> = (0..placement.len() as u32).collect();
        let req = plan.node_request(Some(&ShardRestriction {
            assigned: shards.clone(),
            held,
        }));
        let window = req
            .get("limit")
            .or_else(|| req.get("hitsPerPage"))
            .and_then(Value::as_u64)
            .unwrap() as usize;
        let offset_mode = req.contains_key("limit");
        assert_eq!(req.get("showRankingScoreDetails"), Some(&json!(true)));
        let mut mine: Vec<&Doc> = docs
            .iter()
            .filter(|d| shards.contains(&d.shard) && matches(q, d))
            .collect();
        mine.sort_by(|a, b| oracle_cmp(q, a, b));
        let facet_docs = mine.clone();
        let mine = apply_distinct(q, mine);
        let total = mine.len().min(plan.context.max_total_hits);
        let hits: Vec<Value> = mine.iter().take(window).map(|d| node_hit(q, d)).collect();
        let mut body = Map::new();
        body.insert("hits".into(), Value::Array(hits));
        body.insert("query".into(), json!(plan.query));
        body.insert("processingTimeMs".into(), json!(node as u64 + 1));
        if offset_mode {
            body.insert("limit".into(), json!(window));
            body.insert("offset".into(), json!(0));
            body.insert("estimatedTotalHits".into(), json!(total));
        } else {
            body.insert("hitsPerPage".into(), json!(window));
            body.insert("page".into(), json!(1));
            body.insert("totalPages".into(), json!(0));
            body.insert("totalHits".into(), json!(total));
        }
        if q.facets {
            body.insert(
                "facetDistribution".into(),
                facet_distribution(&facet_docs, node_max_values, q.count_order),
            );
            body.insert("facetStats".into(), facet_stats(&facet_docs));
        }
        body.insert("requestUid".into(), json!(format!("uid-{node}")));
        answers.push(NodeAnswer {
            order: node,
            body: Value::Object(body),
        });
    }
    // Answers arrive in any order.
    answers.reverse();
    answers
}

fn oracle_hits(q: &Query, docs: &[Doc]) -> Vec<u32> {
    let mut all: Vec<&Doc> = docs.iter().filter(|d| matches(q, d)).collect();
    all.sort_by(|a, b| oracle_cmp(q, a, b));
    apply_distinct(q, all).iter().map(|d| d.id).collect()
}

fn doc_strategy() -> impl Strategy<Value = (u32, u32, u32, Rating, i64, Option<String>, String)> {
    (
        0u32..4,
        0u32..3,
        0u32..5,
        prop_oneof![
            (0u32..4).prop_map(|x| Rating::Num(x as f64 / 2.0)),
            "[a-c]".prop_map(Rating::Str),
            Just(Rating::Missing),
        ],
        prop_oneof![990i64..993, 1998i64..2002],
        proptest::option::of(prop::sample::select(vec![
            "action", "comedy", "drama", "horror", "scifi",
        ]))
        .prop_map(|g| g.map(String::from)),
        "[a-d]{1,2}",
    )
}

fn corpus_strategy() -> impl Strategy<Value = (Vec<Doc>, Vec<usize>, usize)> {
    (1usize..6, 1usize..4).prop_flat_map(|(shards, nodes)| {
        (
            prop::collection::vec((doc_strategy(), 0..shards as u32), 0..60),
            prop::collection::vec(0..nodes, shards),
            Just(nodes),
        )
            .prop_map(|(raw, placement, nodes)| {
                let docs = raw
                    .into_iter()
                    .enumerate()
                    .map(
                        |(i, ((words, typo, prox, rating, year, genre, title), shard))| Doc {
                            id: i as u32,
                            shard,
                            words,
                            typo,
                            prox,
                            rating,
                            year,
                            genre,
                            title,
                        },
                    )
                    .collect();
                (docs, placement, nodes)
            })
    })
}

fn query_strategy() -> impl Strategy<Value = Query> {
    (
        any::<bool>(),
        proptest::option::of(prop::sample::select(vec![
            ("title", true),
            ("year", false),
            ("rating", true),
            ("title", false),
        ])),
        proptest::option::of(any::<bool>()),
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(
            |(placeholder, sort, distinct, facets, count_order, show_score, show_details)| Query {
                placeholder,
                sort,
                distinct,
                facets,
                count_order,
                show_score,
                show_details,
            },
        )
}

fn ids(v: &Value) -> Vec<u32> {
    v["hits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["id"].as_u64().unwrap() as u32)
        .collect()
}

fn keys(v: &Value) -> Vec<String> {
    v.as_object().unwrap().keys().cloned().collect()
}

fn check_hit_shape(q: &Query, v: &Value) {
    for h in v["hits"].as_array().unwrap() {
        let h = h.as_object().unwrap();
        assert!(!h.keys().any(|k| k.starts_with("_miroir_")), "{h:?}");
        assert_eq!(h.contains_key("_rankingScore"), q.show_score);
        assert_eq!(h.contains_key("_rankingScoreDetails"), q.show_details);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 160, ..ProptestConfig::default() })]

    #[test]
    fn offset_limit_equals_single_node(
        (docs, placement, nodes) in corpus_strategy(),
        q in query_strategy(),
        offset in 0usize..40,
        limit in 0usize..25,
        small_cap in any::<bool>(),
    ) {
        let mth = if small_cap { 17 } else { 1000 };
        let max_values = 3;
        let ctx = ctx_for(&q, mth, max_values);
        let plan = plan_search(&client_body(&q, &[("offset", offset), ("limit", limit)]), &ctx).unwrap();
        // Alpha is exact when nodes return the client's count; count order needs every value.
        let node_max = if q.count_order { 1000 } else { max_values };
        let answers = node_answers(&plan, &q, &docs, &placement, nodes, node_max);
        let merged = merge_search(&plan, answers).unwrap();

        let all = oracle_hits(&q, &docs);
        let off = offset.min(mth);
        let lim = limit.min(mth - off);
        let expected: Vec<u32> = all.iter().copied().skip(off).take(lim).collect();
        prop_assert_eq!(ids(&merged), expected);
        check_hit_shape(&q, &merged);
        prop_assert_eq!(&merged["limit"], &json!(limit));
        prop_assert_eq!(&merged["offset"], &json!(off));
        let mut expected_keys = vec!["hits", "query", "processingTimeMs", "limit", "offset", "estimatedTotalHits"];
        if q.facets { expected_keys.extend(["facetDistribution", "facetStats"]); }
        expected_keys.push("requestUid");
        prop_assert_eq!(keys(&merged), expected_keys);
        let used_nodes = (0..nodes).filter(|n| placement.contains(n)).count();
        let first_node = (0..nodes).find(|n| placement.contains(n)).unwrap();
        prop_assert_eq!(&merged["requestUid"], &json!(format!("uid-{first_node}")));
        prop_assert!(merged["processingTimeMs"].as_u64().unwrap() as usize <= nodes);
        prop_assert!(used_nodes >= 1);
        if q.distinct.is_none() {
            prop_assert_eq!(&merged["estimatedTotalHits"], &json!(all.len().min(mth)));
            if q.facets {
                let matching: Vec<&Doc> = docs.iter().filter(|d| matches(&q, d)).collect();
                prop_assert_eq!(&merged["facetDistribution"], &facet_distribution(&matching, max_values, q.count_order));
                // Key order matters too.
                for facet in ["genre", "year"] {
                    if let Some(m) = merged["facetDistribution"].get(facet) {
                        let expected = facet_distribution(&matching, max_values, q.count_order);
                        prop_assert_eq!(keys(m), keys(&expected[facet]));
                    }
                }
                prop_assert_eq!(&merged["facetStats"], &facet_stats(&matching));
            }
        }
    }

    #[test]
    fn pages_equal_single_node(
        (docs, placement, nodes) in corpus_strategy(),
        q in query_strategy(),
        page in 0usize..7,
        hpp in 0usize..9,
        small_cap in any::<bool>(),
    ) {
        let mth = if small_cap { 13 } else { 1000 };
        let ctx = ctx_for(&q, mth, 100);
        let plan = plan_search(&client_body(&q, &[("page", page), ("hitsPerPage", hpp)]), &ctx).unwrap();
        let answers = node_answers(&plan, &q, &docs, &placement, nodes, 100);
        let merged = merge_search(&plan, answers).unwrap();
        let all = oracle_hits(&q, &docs);
        let (off, lim) = if page == 0 { (0, 0) } else { ((page - 1) * hpp, hpp) };
        let off = off.min(mth);
        let lim = lim.min(mth - off);
        let expected: Vec<u32> = all.iter().copied().skip(off).take(lim).collect();
        prop_assert_eq!(ids(&merged), expected);
        check_hit_shape(&q, &merged);
        let mut expected_keys = vec!["hits", "query", "processingTimeMs", "hitsPerPage", "page", "totalPages", "totalHits"];
        if q.facets { expected_keys.extend(["facetDistribution", "facetStats"]); }
        expected_keys.push("requestUid");
        prop_assert_eq!(keys(&merged), expected_keys);
        prop_assert_eq!(&merged["page"], &json!(page));
        prop_assert_eq!(&merged["hitsPerPage"], &json!(hpp));
        if q.distinct.is_none() {
            let total = all.len().min(mth);
            prop_assert_eq!(&merged["totalHits"], &json!(total));
            let pages = if hpp == 0 { 0 } else { total.div_ceil(hpp) };
            prop_assert_eq!(&merged["totalPages"], &json!(pages));
        }
    }

    #[test]
    fn consecutive_pages_neither_overlap_nor_skip(
        (docs, placement, nodes) in corpus_strategy(),
        q in query_strategy(),
        size in 1usize..7,
    ) {
        let ctx = ctx_for(&q, 1000, 100);
        let all = oracle_hits(&q, &docs);
        let mut seen = Vec::new();
        let mut offset = 0;
        loop {
            let plan = plan_search(&client_body(&q, &[("offset", offset), ("limit", size)]), &ctx).unwrap();
            let merged = merge_search(&plan, node_answers(&plan, &q, &docs, &placement, nodes, 100)).unwrap();
            let page = ids(&merged);
            if page.is_empty() { break; }
            seen.extend(page);
            offset += size;
        }
        prop_assert_eq!(seen, all);
    }
}

#[test]
fn merging_by_ranking_score_alone_would_be_wrong_here() {
    // Two documents where the misleading score and the details disagree: the details win.
    let q = Query {
        placeholder: false,
        sort: None,
        distinct: None,
        facets: false,
        count_order: false,
        show_score: true,
        show_details: false,
    };
    let a = Doc {
        id: 1,
        shard: 0,
        words: 3,
        typo: 0,
        prox: 4,
        rating: Rating::Num(1.0),
        year: 2000,
        genre: None,
        title: "a".into(),
    };
    let b = Doc {
        id: 2,
        shard: 1,
        words: 3,
        typo: 0,
        prox: 0,
        rating: Rating::Num(0.5),
        year: 2000,
        genre: None,
        title: "b".into(),
    };
    let ha = node_hit(&q, &a);
    let hb = node_hit(&q, &b);
    assert!(ha["_rankingScore"].as_f64() < hb["_rankingScore"].as_f64());
    let plan = plan_search(&client_body(&q, &[]), &SearchContext::default()).unwrap();
    let answers = vec![
        NodeAnswer {
            order: 0,
            body: json!({"hits": [hb], "query": "star", "processingTimeMs": 1, "limit": 20, "offset": 0, "estimatedTotalHits": 1}),
        },
        NodeAnswer {
            order: 1,
            body: json!({"hits": [ha], "query": "star", "processingTimeMs": 1, "limit": 20, "offset": 0, "estimatedTotalHits": 1}),
        },
    ];
    let merged = merge_search(&plan, answers).unwrap();
    assert_eq!(ids(&merged), vec![1, 2]);
}
