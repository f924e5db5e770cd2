//! Federated multi-search over a sharded fleet, compared with one model node holding everything.

mod common;

use common::*;
use miroir_proxy::dev::DEV_NODE_KEY;
use miroir_sim::serve::{spawn, ModelOptions};
use serde_json::{json, Value};

async fn load(api: &Api) {
    for (uid, n) in [("movies", 300), ("films", 120)] {
        api.write_ok(
            "POST",
            "/indexes",
            Some(json!({"uid": uid, "primaryKey": "id"})),
        )
        .await;
        api.write_ok(
            "PATCH",
            &format!("/indexes/{uid}/settings"),
            Some(json!({"searchableAttributes": ["title", "genre"]})),
        )
        .await;
        api.write_ok(
            "POST",
            &format!("/indexes/{uid}/documents"),
            Some(Value::Array(movies(n))),
        )
        .await;
    }
}

fn keyed(body: &Value) -> Vec<(String, u64, f64)> {
    body["hits"]
        .as_array()
        .unwrap_or_else(|| panic!("no hits: {body}"))
        .iter()
        .map(|h| {
            (
                h["_federation"]["indexUid"].as_str().unwrap().to_string(),
                h["id"].as_u64().unwrap(),
                h["_federation"]["weightedRankingScore"].as_f64().unwrap(),
            )
        })
        .collect()
}

fn scores(v: &[(String, u64, f64)]) -> Vec<f64> {
    v.iter().map(|h| h.2).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn federated_search_matches_one_node() {
    let dir = tempfile::tempdir().unwrap();
    let (_f, api) = fleet(3, 1, 1, &dir.path().join("m.db")).await;
    let node = spawn(
        "127.0.0.1:0".parse().unwrap(),
        ModelOptions {
            master_key: Some(DEV_NODE_KEY.into()),
            ..ModelOptions::default()
        },
    )
    .await
    .unwrap();
    let mut reference = Api::new(node.url());
    reference.key = Some(DEV_NODE_KEY.into());
    load(&api).await;
    load(&reference).await;

    let queries = json!([
        {"indexUid": "movies", "q": "drama"},
        {"indexUid": "films", "q": "comedy movie", "federationOptions": {"weight": 0.9}},
        {"indexUid": "movies", "q": "kw1", "showRankingScore": true},
    ]);
    // every hit: the same set, the same scores in the same order
    let all = json!({"federation": {"limit": 1000}, "queries": queries});
    let a = api.post("/multi-search", all.clone()).await;
    let b = reference.post("/multi-search", all).await;
    assert_eq!((a.status, b.status), (200, 200), "{} / {}", a.body, b.body);
    let (mut ka, mut kb) = (keyed(&a.body), keyed(&b.body));
    assert!(!ka.is_empty());
    assert_eq!(scores(&ka), scores(&kb));
    assert_eq!(a.body["estimatedTotalHits"], b.body["estimatedTotalHits"]);
    assert_eq!(a.body["limit"], 1000);
    assert_eq!(a.body["offset"], 0);
    let by_query: Vec<u64> = a.body["hits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["_federation"]["queriesPosition"].as_u64().unwrap())
        .collect();
    assert!(by_query.contains(&1) && by_query.contains(&2));
    for h in a.body["hits"].as_array().unwrap() {
        let pos = h["_federation"]["queriesPosition"].as_u64().unwrap();
        assert_eq!(h.get("_rankingScore").is_some(), pos == 2, "{h}");
        assert!(h.get("_miroir_shard").is_none());
    }
    ka.sort_by(|x, y| x.partial_cmp(y).unwrap());
    kb.sort_by(|x, y| x.partial_cmp(y).unwrap());
    assert_eq!(ka, kb);

    // a window: the same scores
    let window = json!({"federation": {"offset": 5, "limit": 7}, "queries": queries});
    let a = api.post("/multi-search", window.clone()).await;
    let b = reference.post("/multi-search", window).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(scores(&keyed(&a.body)), scores(&keyed(&b.body)));
    assert_eq!(a.body["hits"].as_array().unwrap().len(), 7);

    // errors
    let r = api
        .post(
            "/multi-search",
            json!({"federation": {}, "queries": [{"indexUid": "movies", "q": "a", "limit": 2}]}),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(r.body["code"], "invalid_multi_search_query_pagination");
    let r = api
        .post(
            "/multi-search",
            json!({"queries": [{"indexUid": "movies", "federationOptions": {"weight": 2}}]}),
        )
        .await;
    assert_eq!(r.body["code"], "invalid_multi_search_federation_options");
    let r = api
        .post(
            "/multi-search",
            json!({"federation": {"facetsByIndex": {"movies": ["genre"]}}, "queries": [{"indexUid": "movies"}]}),
        )
        .await;
    assert_eq!(r.status, 501, "{}", r.body);
    assert_eq!(r.body["code"], "miroir_unsupported_route");
    let r = api
        .post(
            "/multi-search",
            json!({"federation": {}, "queries": [{"indexUid": "nope"}]}),
        )
        .await;
    assert_eq!(r.body["code"], "index_not_found");
}
