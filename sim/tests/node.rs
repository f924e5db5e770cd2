//! Behaviour of the node model through its request API: auth, task lifecycle, durability, documents,
//! settings, search and their error paths.

use miroir_sim::model::{Method, Node, Request, Response};
use serde_json::{json, Value};

const KEY: &str = "masterKey";

fn node() -> Node {
    Node::new(Some(KEY))
}

fn call(n: &mut Node, method: Method, path: &str, body: Option<Value>) -> Response {
    let req = match body {
        Some(b) => Request::json(method, path, &b),
        None => Request::new(method, path),
    };
    n.handle(req.bearer(KEY), 1_000)
}

fn get(n: &mut Node, path: &str) -> Response {
    call(n, Method::Get, path, None)
}

fn post(n: &mut Node, path: &str, body: Value) -> Response {
    call(n, Method::Post, path, Some(body))
}

fn run(n: &mut Node) {
    n.run_until_idle(2_000);
}

fn task(n: &mut Node, r: &Response) -> Value {
    let uid = r.body["taskUid"].as_u64().expect("a task was enqueued");
    get(n, &format!("/tasks/{uid}")).body
}

fn movies(n: &mut Node) {
    post(n, "/indexes", json!({"uid": "movies", "primaryKey": "id"}));
    call(
        n,
        Method::Patch,
        "/indexes/movies/settings",
        Some(
            json!({"filterableAttributes": ["genre", "year", "tags", "_geo"], "sortableAttributes": ["year", "title", "_geo"]}),
        ),
    );
    post(
        n,
        "/indexes/movies/documents",
        json!([
            {"id": 1, "title": "Star Wars", "overview": "a galaxy far away", "genre": "scifi", "year": 1977, "tags": ["space", "classic"], "_geo": {"lat": 48.0, "lng": 2.0}},
            {"id": 2, "title": "The Dark Knight", "overview": "a dark night in the city", "genre": "action", "year": 2008, "tags": [], "_geo": {"lat": 49.0, "lng": 2.0}},
            {"id": 3, "title": "Galaxy Quest", "overview": "space comedy", "genre": "comedy", "year": 1999, "tags": ["space"]},
            {"id": 4, "title": "Knight and Day", "overview": "spy comedy", "genre": "comedy", "year": 2010}
        ]),
    );
    run(n);
}

fn ids(r: &Response) -> Vec<u64> {
    r.body["hits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["id"].as_u64().unwrap())
        .collect()
}

#[test]
fn auth_rules() {
    let mut n = node();
    let r = n.handle(Request::get("/indexes"), 0);
    assert_eq!(
        (r.status, r.body["code"].clone()),
        (401, json!("missing_authorization_header"))
    );
    assert_eq!(r.body["type"], json!("auth"));
    let r = n.handle(Request::get("/indexes").bearer("nope"), 0);
    assert_eq!(
        (r.status, r.body["code"].clone()),
        (403, json!("invalid_api_key"))
    );
    assert_eq!(
        n.handle(Request::get("/health"), 0).body,
        json!({"status": "available"})
    );
    let mut open = Node::new(None);
    assert_eq!(open.handle(Request::get("/indexes"), 0).status, 200);
    assert_eq!(
        open.handle(Request::get("/version"), 0).body["pkgVersion"],
        json!("1.50.0")
    );
    assert_eq!(open.handle(Request::get("/nope"), 0).status, 404);
    assert_eq!(
        open.handle(Request::new(Method::Put, "/indexes"), 0).status,
        405
    );
}

#[test]
fn index_lifecycle_and_errors() {
    let mut n = node();
    let r = post(&mut n, "/indexes", json!({"uid": "bad uid!"}));
    assert_eq!(
        (r.status, r.body["code"].clone()),
        (400, json!("invalid_index_uid"))
    );
    assert_eq!(
        post(&mut n, "/indexes", json!({})).body["code"],
        json!("missing_index_uid")
    );
    assert_eq!(
        post(&mut n, "/indexes", json!({"uid": "a", "x": 1})).body["code"],
        json!("bad_request")
    );
    assert_eq!(
        post(&mut n, "/indexes", json!({"uid": 3})).body["code"],
        json!("invalid_index_uid")
    );
    let r = post(&mut n, "/indexes", json!({"uid": "a"}));
    assert_eq!(r.status, 202);
    assert_eq!(r.body["type"], json!("indexCreation"));
    assert_eq!(
        get(&mut n, "/indexes/a").status,
        404,
        "not visible before the task ran"
    );
    run(&mut n);
    assert_eq!(get(&mut n, "/indexes/a").body["primaryKey"], Value::Null);
    post(&mut n, "/indexes", json!({"uid": "b"}));
    post(&mut n, "/indexes", json!({"uid": "c"}));
    run(&mut n);
    let l = get(&mut n, "/indexes?offset=1&limit=1").body;
    assert_eq!(
        (l["total"].clone(), l["results"][0]["uid"].clone()),
        (json!(3), json!("b"))
    );
    assert_eq!(
        get(&mut n, "/indexes?limit=x").body["code"],
        json!("invalid_index_limit")
    );
    assert_eq!(
        get(&mut n, "/indexes?foo=1").body["code"],
        json!("bad_request")
    );
    let r = call(
        &mut n,
        Method::Patch,
        "/indexes/a",
        Some(json!({"primaryKey": "sku"})),
    );
    run(&mut n);
    assert_eq!(task(&mut n, &r)["status"], json!("succeeded"));
    assert_eq!(get(&mut n, "/indexes/a").body["primaryKey"], json!("sku"));
    let r = call(&mut n, Method::Delete, "/indexes/c", None);
    run(&mut n);
    assert_eq!(task(&mut n, &r)["details"], json!({"deletedDocuments": 0}));
    let r = call(&mut n, Method::Delete, "/indexes/c", None);
    run(&mut n);
    assert_eq!(task(&mut n, &r)["error"]["code"], json!("index_not_found"));
    let stats = get(&mut n, "/stats").body;
    assert!(stats["indexes"].get("a").is_some());
    assert_eq!(
        get(&mut n, "/indexes/a/stats").body["numberOfDocuments"],
        json!(0)
    );
}

#[test]
fn durable_state_survives_restart() {
    let mut n = node();
    let r = post(&mut n, "/indexes/x/documents", json!([{"id": 1}]));
    let uid = r.body["taskUid"].as_u64().unwrap();
    let state = n.durable_state();
    let mut n2 = Node::restart_from(Some(KEY), state);
    assert_eq!(
        get(&mut n2, &format!("/tasks/{uid}")).body["status"],
        json!("enqueued")
    );
    // a task caught processing runs again after a crash
    assert_eq!(n2.start_next(5), Some(uid as u32));
    assert_eq!(
        get(&mut n2, &format!("/tasks/{uid}")).body["status"],
        json!("processing")
    );
    let mut n3 = Node::restart_from(Some(KEY), n2.durable_state());
    assert_eq!(
        get(&mut n3, &format!("/tasks/{uid}")).body["status"],
        json!("enqueued")
    );
    assert_eq!(get(&mut n3, "/indexes/x/documents/1").status, 404);
    run(&mut n3);
    assert_eq!(
        get(&mut n3, "/indexes/x/documents/1").body,
        json!({"id": 1})
    );
    assert_eq!(get(&mut n3, "/indexes/x").body["primaryKey"], json!("id"));
}

#[test]
fn tasks_cancel_and_delete() {
    let mut n = node();
    let a = post(&mut n, "/indexes", json!({"uid": "a"}));
    let c = n.handle(
        Request::new(Method::Post, "/tasks/cancel?uids=0").bearer(KEY),
        5,
    );
    assert_eq!(c.body["type"], json!("taskCancelation"));
    assert_eq!(c.body["indexUid"], Value::Null);
    run(&mut n);
    let t = task(&mut n, &a);
    assert_eq!(t["status"], json!("canceled"));
    assert_eq!(t["canceledBy"], c.body["taskUid"]);
    assert_eq!(
        task(&mut n, &c)["details"],
        json!({"matchedTasks": 1, "canceledTasks": 1, "originalFilter": "?uids=0"})
    );
    // cancelations are never canceled (two `uids=*` cancelations do not cancel each other)
    let c1 = n.handle(
        Request::new(Method::Post, "/tasks/cancel?uids=*").bearer(KEY),
        6,
    );
    let c2 = n.handle(
        Request::new(Method::Post, "/tasks/cancel?uids=*").bearer(KEY),
        6,
    );
    run(&mut n);
    assert_eq!(task(&mut n, &c1)["status"], json!("succeeded"));
    assert_eq!(task(&mut n, &c2)["details"]["matchedTasks"], json!(0));
    let r = n.handle(Request::new(Method::Post, "/tasks/cancel").bearer(KEY), 6);
    assert_eq!(r.body["code"], json!("missing_task_filters"));
    let r = n.handle(Request::delete("/tasks").bearer(KEY), 6);
    assert_eq!(r.body["code"], json!("missing_task_filters"));
    let d = n.handle(Request::delete("/tasks?statuses=canceled").bearer(KEY), 7);
    run(&mut n);
    assert_eq!(task(&mut n, &d)["details"]["deletedTasks"], json!(1));
    assert_eq!(
        get(&mut n, "/tasks/0").body["code"],
        json!("task_not_found")
    );
    assert_eq!(
        get(&mut n, "/tasks/x").body["code"],
        json!("invalid_task_uids")
    );
    let l = get(&mut n, "/tasks?types=taskCancelation").body;
    assert_eq!(l["total"], json!(3));
}

#[test]
fn documents_routes() {
    let mut n = node();
    movies(&mut n);
    let r = get(
        &mut n,
        "/indexes/movies/documents?limit=2&offset=1&fields=id,title",
    );
    assert_eq!(
        r.body,
        json!({"results": [{"id": 2, "title": "The Dark Knight"}, {"id": 3, "title": "Galaxy Quest"}], "offset": 1, "limit": 2, "total": 4})
    );
    let r = post(
        &mut n,
        "/indexes/movies/documents/fetch",
        json!({"ids": ["4", "1"], "fields": ["id"]}),
    );
    assert_eq!(r.body["results"], json!([{"id": 1}, {"id": 4}]));
    let r = post(
        &mut n,
        "/indexes/movies/documents/fetch",
        json!({"filter": "genre = comedy AND year > 2000", "fields": ["id"]}),
    );
    assert_eq!(r.body["results"], json!([{"id": 4}]));
    let r = post(
        &mut n,
        "/indexes/movies/documents/fetch",
        json!({"filter": "title = x"}),
    );
    assert_eq!(r.body["code"], json!("invalid_document_filter"));
    assert!(r.body["message"]
        .as_str()
        .unwrap()
        .ends_with("\n1:6 title = x"));
    assert_eq!(
        get(&mut n, "/indexes/movies/documents?limit=-1").body["code"],
        json!("invalid_document_limit")
    );
    assert_eq!(
        get(&mut n, "/indexes/nope/documents").body["code"],
        json!("index_not_found")
    );
    // NDJSON and CSV with a delimiter
    let r = n.handle(
        Request::new(Method::Post, "/indexes/movies/documents?csvDelimiter=;")
            .with_body(
                "text/csv",
                b"id;title;year:number\n9;csv one;2001\n".to_vec(),
            )
            .bearer(KEY),
        1,
    );
    assert_eq!(r.status, 202);
    run(&mut n);
    assert_eq!(
        get(&mut n, "/indexes/movies/documents/9").body,
        json!({"id": "9", "title": "csv one", "year": 2001})
    );
    let r = n.handle(
        Request::new(Method::Post, "/indexes/movies/documents")
            .with_body("application/json", vec![])
            .bearer(KEY),
        1,
    );
    assert_eq!(r.body["code"], json!("missing_payload"));
    // deletions
    let r = call(&mut n, Method::Delete, "/indexes/movies/documents/9", None);
    run(&mut n);
    assert_eq!(
        task(&mut n, &r)["details"],
        json!({"providedIds": 1, "deletedDocuments": 1, "originalFilter": null})
    );
    let r = post(
        &mut n,
        "/indexes/movies/documents/delete-batch",
        json!([1, "2", 77]),
    );
    run(&mut n);
    assert_eq!(task(&mut n, &r)["details"]["deletedDocuments"], json!(2));
    let r = post(
        &mut n,
        "/indexes/movies/documents/delete",
        json!({"filter": "genre ="}),
    );
    assert_eq!(
        r.body["code"],
        json!("invalid_document_filter"),
        "syntax errors are request errors"
    );
    assert_eq!(
        post(&mut n, "/indexes/movies/documents/delete", json!({})).body["code"],
        json!("missing_document_filter")
    );
    let r = post(
        &mut n,
        "/indexes/movies/documents/delete",
        json!({"filter": "title = x"}),
    );
    run(&mut n);
    assert_eq!(
        task(&mut n, &r)["error"]["code"],
        json!("invalid_document_filter"),
        "filterability is a task error"
    );
    let r = post(
        &mut n,
        "/indexes/movies/documents/delete",
        json!({"filter": ["genre = comedy"]}),
    );
    run(&mut n);
    assert_eq!(task(&mut n, &r)["details"]["deletedDocuments"], json!(2));
    let r = call(&mut n, Method::Delete, "/indexes/movies/documents", None);
    run(&mut n);
    assert_eq!(task(&mut n, &r)["details"]["deletedDocuments"], json!(0));
}

#[test]
fn settings_routes() {
    let mut n = node();
    movies(&mut n);
    let r = call(
        &mut n,
        Method::Put,
        "/indexes/movies/settings/ranking-rules",
        Some(json!(["words", "year:desc"])),
    );
    run(&mut n);
    assert_eq!(
        task(&mut n, &r)["details"],
        json!({"rankingRules": ["words", "year:desc"]})
    );
    assert_eq!(
        get(&mut n, "/indexes/movies/settings/ranking-rules").body,
        json!(["words", "year:desc"])
    );
    assert_eq!(
        call(
            &mut n,
            Method::Patch,
            "/indexes/movies/settings/ranking-rules",
            Some(json!([]))
        )
        .status,
        405
    );
    assert_eq!(get(&mut n, "/indexes/movies/settings/nope").status, 404);
    let r = call(
        &mut n,
        Method::Put,
        "/indexes/movies/settings/ranking-rules",
        Some(json!(["nope"])),
    );
    assert_eq!(r.body["code"], json!("invalid_settings_ranking_rules"));
    let r = call(
        &mut n,
        Method::Patch,
        "/indexes/movies/settings/typo-tolerance",
        Some(json!({"enabled": false})),
    );
    assert_eq!(r.status, 202);
    call(
        &mut n,
        Method::Delete,
        "/indexes/movies/settings/ranking-rules",
        None,
    );
    run(&mut n);
    let s = get(&mut n, "/indexes/movies/settings").body;
    assert_eq!(s["typoTolerance"]["enabled"], json!(false));
    assert_eq!(s["rankingRules"][3], json!("attributeRank"));
    // typos are now disabled
    assert_eq!(
        get(&mut n, "/indexes/movies/search?q=galxy").body["estimatedTotalHits"],
        json!(0)
    );
    // synonyms match without typos, multi-word synonyms as phrases
    call(
        &mut n,
        Method::Put,
        "/indexes/movies/settings/synonyms",
        Some(json!({"cosmos": ["galaxy", "far away"]})),
    );
    run(&mut n);
    assert_eq!(
        get(&mut n, "/indexes/movies/settings/synonyms").body,
        json!({"cosmos": ["far away", "galaxy"]})
    );
    let hits: Vec<Value> = get(&mut n, "/indexes/movies/search?q=cosmos").body["hits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["id"].clone())
        .collect();
    assert_eq!(hits, vec![json!(3), json!(1)]);
    let r = call(&mut n, Method::Delete, "/indexes/movies/settings", None);
    run(&mut n);
    assert_eq!(task(&mut n, &r)["status"], json!("succeeded"));
    assert_eq!(
        get(&mut n, "/indexes/movies/settings/filterable-attributes").body,
        json!([])
    );
    assert_eq!(
        get(&mut n, "/indexes/nope/settings").body["code"],
        json!("index_not_found")
    );
}

#[test]
fn search_matching_and_ranking() {
    let mut n = node();
    movies(&mut n);
    // typo tolerance: `galxy` (5 letters) matches `galaxy` with one typo
    // (Galaxy Quest first: its title starts with the word)
    let r = post(
        &mut n,
        "/indexes/movies/search",
        json!({"q": "galxy", "showRankingScoreDetails": true}),
    );
    assert_eq!(ids(&r), vec![3, 1]);
    assert_eq!(
        r.body["hits"][0]["_rankingScoreDetails"]["typo"],
        json!({"order": 1, "typoCount": 1, "maxTypoCount": 1, "score": 0.5})
    );
    // prefix on the last word only
    assert_eq!(
        ids(&post(
            &mut n,
            "/indexes/movies/search",
            json!({"q": "knig"})
        )),
        vec![4, 2]
    );
    assert_eq!(
        ids(&post(
            &mut n,
            "/indexes/movies/search",
            json!({"q": "knig "})
        )),
        Vec::<u64>::new()
    );
    // phrase
    assert_eq!(
        ids(&post(
            &mut n,
            "/indexes/movies/search",
            json!({"q": "\"dark night\""})
        )),
        vec![2]
    );
    // all vs last
    assert_eq!(
        ids(&post(
            &mut n,
            "/indexes/movies/search",
            json!({"q": "space spy", "matchingStrategy": "all"})
        )),
        Vec::<u64>::new()
    );
    // `space` alone is enough under `last`; the `tags: ["space"]` exact match ranks first
    assert_eq!(
        ids(&post(
            &mut n,
            "/indexes/movies/search",
            json!({"q": "space spy"})
        )),
        vec![3, 1]
    );
    // negative words and phrases exclude documents
    assert_eq!(
        ids(&post(
            &mut n,
            "/indexes/movies/search",
            json!({"q": "space -comedy"})
        )),
        vec![1]
    );
    assert_eq!(
        ids(&post(
            &mut n,
            "/indexes/movies/search",
            json!({"q": "-\"dark night\""})
        )),
        vec![1, 3, 4]
    );
    // exact title ranks first
    let r = post(
        &mut n,
        "/indexes/movies/search",
        json!({"q": "galaxy quest", "showRankingScore": true}),
    );
    assert_eq!(ids(&r)[0], 3);
    assert_eq!(r.body["hits"][0]["_rankingScore"], json!(1.0));
    // sort, filter, geo
    let r = post(
        &mut n,
        "/indexes/movies/search",
        json!({"q": "", "sort": ["year:desc"], "filter": "tags EXISTS"}),
    );
    assert_eq!(ids(&r), vec![2, 3, 1]);
    let r = post(
        &mut n,
        "/indexes/movies/search",
        json!({"sort": ["_geoPoint(49.0, 2.0):asc"], "limit": 1}),
    );
    assert_eq!(r.body["hits"][0]["_geoDistance"], json!(0));
    let r = post(
        &mut n,
        "/indexes/movies/search",
        json!({"filter": "_geoRadius(48.0, 2.0, 1000)"}),
    );
    assert_eq!(ids(&r), vec![1]);
}

#[test]
fn search_pagination_facets_formatting() {
    let mut n = node();
    movies(&mut n);
    let r = post(
        &mut n,
        "/indexes/movies/search",
        json!({"q": "", "page": 2, "hitsPerPage": 3}),
    );
    assert_eq!(
        (r.body["totalHits"].clone(), r.body["totalPages"].clone()),
        (json!(4), json!(2))
    );
    assert_eq!(ids(&r), vec![4]);
    assert!(r.body.get("estimatedTotalHits").is_none());
    let r = post(
        &mut n,
        "/indexes/movies/search",
        json!({"facets": ["genre", "year"], "limit": 0}),
    );
    assert_eq!(
        r.body["facetDistribution"]["genre"],
        json!({"action": 1, "comedy": 2, "scifi": 1})
    );
    assert_eq!(
        r.body["facetStats"]["year"],
        json!({"min": 1977.0, "max": 2010.0})
    );
    let r = post(
        &mut n,
        "/indexes/movies/search",
        json!({"distinct": "genre"}),
    );
    assert_eq!(ids(&r), vec![1, 2, 3]);
    let r = post(
        &mut n,
        "/indexes/movies/search",
        json!({"q": "galaxy", "attributesToHighlight": ["title"], "attributesToRetrieve": ["title"], "showMatchesPosition": true}),
    );
    assert_eq!(
        r.body["hits"][0]["_formatted"],
        json!({"title": "<em>Galaxy</em> Quest"})
    );
    assert_eq!(
        r.body["hits"][1]["_formatted"],
        json!({"title": "Star Wars"})
    );
    assert_eq!(
        r.body["hits"][0]["_matchesPosition"]["title"],
        json!([{"start": 0, "length": 6}])
    );
    assert_eq!(
        r.body["hits"][1]["_matchesPosition"]["overview"],
        json!([{"start": 2, "length": 6}])
    );
    let r = post(
        &mut n,
        "/indexes/movies/search",
        json!({"q": "city", "attributesToCrop": ["overview:2"]}),
    );
    assert_eq!(
        r.body["hits"][0]["_formatted"]["overview"],
        json!("…the city")
    );
    assert_eq!(r.body["hits"][0]["_formatted"]["year"], json!("2008"));
    let r = post(
        &mut n,
        "/indexes/movies/facet-search",
        json!({"facetName": "genre", "facetQuery": "co"}),
    );
    assert_eq!(
        r.body["facetHits"],
        json!([{"value": "comedy", "count": 2}])
    );
    let r = post(
        &mut n,
        "/indexes/movies/facet-search",
        json!({"facetName": "title"}),
    );
    assert_eq!(r.body["code"], json!("invalid_facet_search_facet_name"));
    let r = post(
        &mut n,
        "/multi-search",
        json!({"queries": [{"indexUid": "movies", "q": "galaxy"}, {"indexUid": "movies", "q": "knight", "limit": 1}]}),
    );
    assert_eq!(r.body["results"][1]["hits"].as_array().unwrap().len(), 1);
    assert_eq!(r.body["results"][0]["indexUid"], json!("movies"));
    let r = post(
        &mut n,
        "/multi-search",
        json!({"federation": {}, "queries": [{"indexUid": "movies", "q": "galaxy"}, {"indexUid": "movies", "q": "quest"}]}),
    );
    assert_eq!(r.body["estimatedTotalHits"], json!(2));
    let r = post(
        &mut n,
        "/multi-search",
        json!({"queries": [{"indexUid": "nope", "q": "x"}]}),
    );
    assert_eq!(
        r.body["message"],
        json!("Inside `.queries[0]`: Index `nope` not found.")
    );
}

#[test]
fn search_errors() {
    let mut n = node();
    movies(&mut n);
    let cases = [
        (json!({"limit": -1}), "invalid_search_limit"),
        (json!({"q": 1}), "invalid_search_q"),
        (json!({"notAParam": 1}), "bad_request"),
        (json!({"sort": ["genre:asc"]}), "invalid_search_sort"),
        (json!({"sort": ["year"]}), "invalid_search_sort"),
        (json!({"filter": "overview = x"}), "invalid_search_filter"),
        (json!({"filter": "genre = "}), "invalid_search_filter"),
        (json!({"filter": true}), "invalid_search_filter"),
        (json!({"facets": ["overview"]}), "invalid_search_facets"),
        (json!({"distinct": "overview"}), "invalid_search_distinct"),
        (
            json!({"matchingStrategy": "nope"}),
            "invalid_search_matching_strategy",
        ),
        (
            json!({"rankingScoreThreshold": 2}),
            "invalid_search_ranking_score_threshold",
        ),
        (
            json!({"showRankingScore": "yes"}),
            "invalid_search_show_ranking_score",
        ),
        (
            json!({"attributesToRetrieve": "title"}),
            "invalid_search_attributes_to_retrieve",
        ),
    ];
    for (body, code) in cases {
        let r = post(&mut n, "/indexes/movies/search", body.clone());
        assert_eq!(
            (r.status, r.body["code"].clone()),
            (400, json!(code)),
            "{body}"
        );
    }
    assert_eq!(
        get(&mut n, "/indexes/movies/search?limit=x").body["code"],
        json!("invalid_search_limit")
    );
    assert_eq!(
        get(&mut n, "/indexes/movies/search?foo=1").body["code"],
        json!("bad_request")
    );
    assert_eq!(
        get(&mut n, "/indexes/movies/search?q=star&limit=1").body["hits"][0]["id"],
        json!(1)
    );
    assert_eq!(
        get(&mut n, "/indexes/nope/search").body["code"],
        json!("index_not_found")
    );
    assert_eq!(
        get(&mut n, "/indexes/bad!/search").body["code"],
        json!("invalid_index_uid")
    );
}

#[test]
fn swap_indexes() {
    let mut n = node();
    post(&mut n, "/indexes/a/documents", json!([{"id": 1, "v": "a"}]));
    post(&mut n, "/indexes/b/documents", json!([{"id": 1, "v": "b"}]));
    run(&mut n);
    let r = post(&mut n, "/swap-indexes", json!([{"indexes": ["a", "b"]}]));
    run(&mut n);
    assert_eq!(
        task(&mut n, &r)["details"],
        json!({"swaps": [{"indexes": ["a", "b"], "rename": false}]})
    );
    assert_eq!(get(&mut n, "/indexes/a/documents/1").body["v"], json!("b"));
    let r = post(
        &mut n,
        "/swap-indexes",
        json!([{"indexes": ["b", "c"], "rename": true}]),
    );
    run(&mut n);
    assert_eq!(
        task(&mut n, &r)["details"]["swaps"][0]["rename"],
        json!(true)
    );
    assert_eq!(get(&mut n, "/indexes/c/documents/1").body["v"], json!("a"));
    assert_eq!(get(&mut n, "/indexes/b").status, 404);
    let r = post(
        &mut n,
        "/swap-indexes",
        json!([{"indexes": ["a", "c"], "rename": true}]),
    );
    run(&mut n);
    assert_eq!(
        task(&mut n, &r)["error"]["code"],
        json!("index_already_exists")
    );
    assert_eq!(
        post(
            &mut n,
            "/swap-indexes",
            json!([{"indexes": ["a", "c"], "rename": 1}])
        )
        .body["code"],
        json!("invalid_swap_rename")
    );
    let r = post(&mut n, "/swap-indexes", json!([{"indexes": ["a", "zz"]}]));
    run(&mut n);
    assert_eq!(task(&mut n, &r)["error"]["code"], json!("index_not_found"));
    assert_eq!(
        post(&mut n, "/swap-indexes", json!([{"indexes": ["a"]}])).body["code"],
        json!("invalid_swap_indexes")
    );
    assert_eq!(
        post(
            &mut n,
            "/swap-indexes",
            json!([{"indexes": ["a", "b"]}, {"indexes": ["a", "c"]}])
        )
        .body["code"],
        json!("invalid_swap_duplicate_index_found")
    );
}

#[test]
fn prefix_search_and_proximity_precision_settings() {
    let mut n = node();
    movies(&mut n);
    call(
        &mut n,
        Method::Patch,
        "/indexes/movies/settings",
        Some(json!({"prefixSearch": "disabled", "proximityPrecision": "byAttribute"})),
    );
    run(&mut n);
    assert_eq!(
        ids(&post(
            &mut n,
            "/indexes/movies/search",
            json!({"q": "knig"})
        )),
        Vec::<u64>::new()
    );
    let r = post(
        &mut n,
        "/indexes/movies/search",
        json!({"q": "dark city", "showRankingScoreDetails": true}),
    );
    assert_eq!(ids(&r), vec![2]);
    assert_eq!(
        r.body["hits"][0]["_rankingScoreDetails"]["proximity"]["score"],
        json!(1.0)
    );
    let r = call(
        &mut n,
        Method::Patch,
        "/indexes/movies/settings",
        Some(json!({"proximityPrecision": "byLetter"})),
    );
    assert_eq!(
        r.body["code"],
        json!("invalid_settings_proximity_precision")
    );
}

#[test]
fn request_validation_errors() {
    let mut n = node();
    movies(&mut n);
    let code = |r: Response| {
        (
            r.status,
            r.body["code"].as_str().unwrap_or_default().to_string(),
        )
    };
    assert_eq!(
        code(call(
            &mut n,
            Method::Patch,
            "/indexes/movies",
            Some(json!({"nope": 1}))
        )),
        (400, "bad_request".into())
    );
    assert_eq!(
        code(call(
            &mut n,
            Method::Patch,
            "/indexes/movies",
            Some(json!({"primaryKey": 3}))
        )),
        (400, "invalid_index_primary_key".into())
    );
    assert_eq!(
        code(call(&mut n, Method::Delete, "/indexes/bad%20uid", None)),
        (400, "invalid_index_uid".into())
    );
    assert_eq!(
        code(post(
            &mut n,
            "/indexes/movies/documents/delete-batch",
            json!({"ids": [1]})
        )),
        (400, "bad_request".into())
    );
    assert_eq!(
        code(post(
            &mut n,
            "/indexes/movies/documents/delete-batch",
            json!([[1]])
        )),
        (400, "bad_request".into())
    );
    assert_eq!(
        code(post(
            &mut n,
            "/indexes/movies/documents/fetch",
            json!({"limit": "x"})
        )),
        (400, "invalid_document_limit".into())
    );
    assert_eq!(
        code(post(
            &mut n,
            "/indexes/movies/documents/fetch",
            json!({"fields": "x"})
        )),
        (400, "invalid_document_fields".into())
    );
    assert_eq!(
        code(post(
            &mut n,
            "/indexes/movies/documents/fetch",
            json!({"nope": 1})
        )),
        (400, "bad_request".into())
    );
    assert_eq!(
        code(get(&mut n, "/indexes/movies/documents/1?nope=1")),
        (400, "bad_request".into())
    );
    assert_eq!(
        code(get(&mut n, "/indexes/movies/documents?filter=genre%20%3D")),
        (400, "invalid_document_filter".into())
    );
    assert_eq!(
        code(post(&mut n, "/indexes/movies/documents?nope=1", json!([]))),
        (400, "bad_request".into())
    );
    assert_eq!(
        code(post(&mut n, "/multi-search", json!({}))),
        (400, "missing_multi_search_queries".into())
    );
    assert_eq!(
        code(post(
            &mut n,
            "/multi-search",
            json!({"queries": [{"q": "x"}]})
        )),
        (400, "missing_index_uid".into())
    );
    assert_eq!(
        code(post(
            &mut n,
            "/multi-search",
            json!({"queries": [], "x": 1})
        )),
        (400, "bad_request".into())
    );
    let r = post(
        &mut n,
        "/multi-search",
        json!({"queries": [{"indexUid": "movies", "limit": -1}]}),
    );
    assert!(r.body["message"]
        .as_str()
        .unwrap()
        .starts_with("Inside `.queries[0]`: Invalid value type at `.limit`"));
    assert_eq!(
        code(post(
            &mut n,
            "/indexes/movies/facet-search",
            json!({"facetQuery": "x"})
        )),
        (400, "missing_facet_search_facet_name".into())
    );
    assert_eq!(
        code(post(
            &mut n,
            "/indexes/movies/facet-search",
            json!({"facetName": "genre", "x": 1})
        )),
        (400, "bad_request".into())
    );
    // malformed JSON bodies and wrong content types on JSON routes
    let r = n.handle(
        Request::new(Method::Post, "/indexes")
            .with_body("application/json", b"{".to_vec())
            .bearer(KEY),
        1,
    );
    assert_eq!(code(r), (400, "malformed_payload".into()));
    let r = n.handle(
        Request::new(Method::Post, "/indexes")
            .with_body("text/plain", b"{}".to_vec())
            .bearer(KEY),
        1,
    );
    assert_eq!(code(r), (415, "invalid_content_type".into()));
    let r = n.handle(Request::new(Method::Post, "/indexes").bearer(KEY), 1);
    assert_eq!(code(r), (400, "missing_payload".into()));
    let mut raw = Request::new(Method::Post, "/indexes").bearer(KEY);
    raw.body = b"{}".to_vec();
    assert_eq!(code(n.handle(raw, 1)), (415, "missing_content_type".into()));
    // settings payloads
    assert_eq!(
        code(call(
            &mut n,
            Method::Patch,
            "/indexes/movies/settings",
            Some(json!([]))
        )),
        (400, "bad_request".into())
    );
    assert_eq!(
        code(call(
            &mut n,
            Method::Put,
            "/indexes/movies/settings/distinct-attribute",
            Some(json!(3))
        )),
        (400, "invalid_settings_distinct_attribute".into())
    );
    assert_eq!(
        code(call(
            &mut n,
            Method::Put,
            "/indexes/movies/settings/faceting",
            Some(json!({}))
        )),
        (405, String::new())
    );
}

/// A deterministic sweep of odd requests: the node answers every one of them (no panic) and never
/// with a 5xx.
#[test]
fn odd_requests_never_panic() {
    let mut n = node();
    movies(&mut n);
    let paths = [
        "/",
        "//",
        "/indexes/",
        "/indexes//documents",
        "/indexes/movies/documents/%",
        "/indexes/movies/documents/%zz",
        "/indexes/mo%20vies",
        "/indexes/movies/search?limit=99999999999999999999",
        "/indexes/movies/search?page=0&hitsPerPage=0",
        "/indexes/movies/search?q=%22%22%22",
        "/indexes/movies/settings/",
        "/tasks?from=99999999999",
        "/tasks?limit=0",
        "/tasks?statuses=*&types=*&indexUids=*",
        "/indexes/movies/documents?offset=9999999&limit=0",
        "/indexes/é/search",
        "/indexes/movies/facet-search",
        "/multi-search",
        "/swap-indexes",
        "/tasks/cancel?uids=*",
        "/indexes/movies/search?q=-",
        "/indexes/movies/search?sort=_geoPoint(1,2):asc",
        "/indexes/movies/search?filter=_geoRadius(1,2)",
    ];
    let bodies = [
        json!(null),
        json!({}),
        json!([]),
        json!("x"),
        json!(1.5),
        json!({"q": "\"", "limit": 0, "offset": 18446744073709551615u64}),
        json!({"q": "a b c d e f g h i j k l m n o p", "page": 18446744073709551615u64, "hitsPerPage": 18446744073709551615u64}),
        json!({"filter": [["genre = a", "NOT NOT NOT year > 1"], "(((year = 1)))"], "facets": ["*"], "sort": ["year:asc"]}),
        json!({"filter": "(".repeat(500)}),
        json!({"q": "é".repeat(600), "attributesToCrop": ["*:0"], "attributesToHighlight": ["*"]}),
        json!([{"indexes": ["movies", "movies"]}]),
        json!({"queries": [{"indexUid": "movies", "q": "x"}], "federation": {"limit": 0}}),
        json!({"facetName": "genre", "facetQuery": "é"}),
        json!([{"id": "ok"}, {"id": {"nested": 1}}]),
    ];
    let methods = [
        Method::Get,
        Method::Post,
        Method::Put,
        Method::Patch,
        Method::Delete,
    ];
    let mut now = 10;
    for p in paths {
        for b in &bodies {
            for m in methods {
                now += 1;
                let r = n.handle(Request::json(m, p, b).bearer(KEY), now);
                assert!(r.status < 500, "{m:?} {p} {b} -> {} {}", r.status, r.body);
            }
        }
        n.run_until_idle(now);
    }
}
