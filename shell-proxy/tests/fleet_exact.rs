//! The fleet answers as one node holding everything: facets, pagination, sort and distinct are compared
//! with a single model node loaded with the same documents and settings.

mod common;

use common::*;
use miroir_proxy::dev::DEV_NODE_KEY;
use miroir_sim::serve::{spawn, ModelHandle, ModelOptions};
use serde_json::{json, Value};

const N: usize = 600;

async fn reference() -> (ModelHandle, Api) {
    let node = spawn(
        "127.0.0.1:0".parse().unwrap(),
        ModelOptions {
            master_key: Some(DEV_NODE_KEY.into()),
            ..ModelOptions::default()
        },
    )
    .await
    .unwrap();
    let mut api = Api::new(node.url());
    api.key = Some(DEV_NODE_KEY.into());
    (node, api)
}

fn settings() -> Value {
    json!({
        "filterableAttributes": ["genre", "year", "sku"],
        "sortableAttributes": ["year", "id", "title"],
        "searchableAttributes": ["title", "genre"],
    })
}

async fn load(api: &Api) {
    api.write_ok(
        "POST",
        "/indexes",
        Some(json!({"uid": "movies", "primaryKey": "id"})),
    )
    .await;
    api.write_ok("PATCH", "/indexes/movies/settings", Some(settings()))
        .await;
    api.write_ok(
        "POST",
        "/indexes/movies/documents",
        Some(Value::Array(movies(N))),
    )
    .await;
}

fn ids(body: &Value) -> Vec<Value> {
    body["hits"]
        .as_array()
        .unwrap_or_else(|| panic!("no hits: {body}"))
        .iter()
        .map(|h| h["id"].clone())
        .collect()
}

async fn same(fleet: &Api, reference: &Api, query: Value) {
    same_hits(fleet, reference, query.clone(), true).await;
}

/// Compares hits (and, with `counts`, totals and facets: under `distinct` they are documented estimates).
async fn same_hits(fleet: &Api, reference: &Api, query: Value, counts: bool) {
    let a = fleet.post("/indexes/movies/search", query.clone()).await;
    let b = reference
        .post("/indexes/movies/search", query.clone())
        .await;
    assert_eq!(a.status, b.status, "{query}: {} vs {}", a.body, b.body);
    assert_eq!(ids(&a.body), ids(&b.body), "{query}");
    if !counts {
        return;
    }
    for key in [
        "estimatedTotalHits",
        "totalHits",
        "totalPages",
        "facetDistribution",
        "facetStats",
        "offset",
        "limit",
        "page",
        "hitsPerPage",
    ] {
        assert_eq!(a.body.get(key), b.body.get(key), "{query}: `{key}`");
    }
}

async fn exact(nodes: usize, rf: u32, rg: u32) {
    let dir = tempfile::tempdir().unwrap();
    let (f, api) = fleet(nodes, rf, rg, &dir.path().join("m.db")).await;
    let (refnode, reference) = reference().await;
    load(&api).await;
    load(&reference).await;

    // settings: present on every node with the hidden shard field, hidden from the client
    let shown = api.get("/indexes/movies/settings").await;
    assert_eq!(shown.status, 200);
    assert_eq!(
        shown.body["filterableAttributes"],
        json!(["genre", "year", "sku"])
    );
    let sub = api
        .get("/indexes/movies/settings/filterable-attributes")
        .await;
    assert_eq!(sub.body, json!(["genre", "year", "sku"]));
    for i in 0..nodes {
        let s = node_api(&f, i).get("/indexes/movies/settings").await;
        let fa = s.body["filterableAttributes"].as_array().unwrap().clone();
        assert!(fa.contains(&json!("_miroir_shard")), "node {i}: {fa:?}");
        assert!(fa.contains(&json!("genre")), "node {i}: {fa:?}");
    }

    // facets, filters, sort
    for q in [
        json!({"q": "", "facets": ["genre", "year"], "limit": 5, "sort": ["id:asc"]}),
        json!({"q": "drama", "facets": ["genre"], "sort": ["year:desc", "id:asc"], "limit": 7}),
        json!({"q": "", "filter": "year > 2000 AND genre != horror", "facets": ["genre", "year"], "sort": ["id:desc"]}),
        json!({"q": "movie", "sort": ["title:asc"], "offset": 40, "limit": 10}),
        json!({"q": "", "sort": ["year:asc", "id:asc"], "page": 3, "hitsPerPage": 25, "facets": ["sku"]}),
        json!({"q": "", "facets": ["*"], "limit": 0}),
        json!({"q": "comedy", "facets": ["*"], "sort": ["id:asc"], "attributesToRetrieve": ["*"], "showMatchesPosition": true}),
    ] {
        same(&api, &reference, q).await;
    }

    // pagination without gaps or duplicates, both styles
    let mut seen = Vec::new();
    for page in 0..(N / 50) {
        let r = api
            .post(
                "/indexes/movies/search",
                json!({"q": "", "sort": ["id:asc"], "offset": page * 50, "limit": 50}),
            )
            .await;
        seen.extend(ids(&r.body));
    }
    assert_eq!(seen, (0..N).map(|i| json!(i)).collect::<Vec<_>>());
    let mut seen = Vec::new();
    for page in 1..=(N / 40) {
        let r = api
            .post(
                "/indexes/movies/search",
                json!({"q": "", "sort": ["year:desc", "id:asc"], "page": page, "hitsPerPage": 40}),
            )
            .await;
        assert_eq!(r.body["totalHits"], N);
        seen.extend(ids(&r.body));
    }
    seen.sort_by_key(|v| v.as_u64().unwrap());
    assert_eq!(seen, (0..N).map(|i| json!(i)).collect::<Vec<_>>());

    // facet search sums counts over shards
    let a = api
        .post(
            "/indexes/movies/facet-search",
            json!({"facetName": "genre", "facetQuery": "d"}),
        )
        .await;
    let b = reference
        .post(
            "/indexes/movies/facet-search",
            json!({"facetName": "genre", "facetQuery": "d"}),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["facetHits"], b.body["facetHits"]);

    // distinct equals one node
    api.write_ok(
        "PUT",
        "/indexes/movies/settings/distinct-attribute",
        Some(json!("sku")),
    )
    .await;
    reference
        .write_ok(
            "PUT",
            "/indexes/movies/settings/distinct-attribute",
            Some(json!("sku")),
        )
        .await;
    assert_eq!(
        api.get("/indexes/movies/settings/distinct-attribute")
            .await
            .body,
        json!("sku")
    );
    // (counts under distinct overcount when a distinct value spans shards: a documented limit)
    same_hits(
        &api,
        &reference,
        json!({"q": "", "sort": ["id:asc"], "limit": 30}),
        false,
    )
    .await;
    same_hits(
        &api,
        &reference,
        json!({"q": "comedy", "sort": ["year:asc", "id:asc"], "limit": 15}),
        false,
    )
    .await;

    // displayed attributes restrict what nodes return; the merge still orders exactly
    api.write_ok(
        "PUT",
        "/indexes/movies/settings/displayed-attributes",
        Some(json!(["title", "id"])),
    )
    .await;
    reference
        .write_ok(
            "PUT",
            "/indexes/movies/settings/displayed-attributes",
            Some(json!(["title", "id"])),
        )
        .await;
    assert_eq!(
        api.get("/indexes/movies/settings/displayed-attributes")
            .await
            .body,
        json!(["title", "id"])
    );
    same_hits(
        &api,
        &reference,
        json!({"q": "drama", "sort": ["year:desc", "id:asc"], "limit": 12}),
        false,
    )
    .await;
    // (ties in ranking are ordered by shard, a documented limit: compare a total order)
    let q = json!({"q": "comedy", "limit": 3, "sort": ["id:desc"]});
    let a = api.post("/indexes/movies/search", q.clone()).await;
    let b = reference.post("/indexes/movies/search", q).await;
    assert_eq!(a.body["hits"], b.body["hits"], "displayed fields only");

    // multi-search runs each query through the scatter
    let m = api
        .post(
            "/multi-search",
            json!({"queries": [{"indexUid": "movies", "q": "kw7", "limit": 1}, {"indexUid": "movies", "q": "", "limit": 2, "sort": ["id:asc"]}]}),
        )
        .await;
    assert_eq!(m.status, 200, "{}", m.body);
    assert_eq!(m.body["results"][0]["indexUid"], "movies");
    assert_eq!(ids(&m.body["results"][1]), vec![json!(0), json!(2)]);

    refnode.shutdown().await;
    f.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exact_rf1_rg1() {
    exact(3, 1, 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exact_rf2_rg1() {
    exact(3, 2, 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exact_rf2_rg2() {
    exact(4, 2, 2).await;
}
