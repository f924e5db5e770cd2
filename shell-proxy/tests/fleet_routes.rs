//! Route coverage over a fleet: indexes, document listing and deletion, settings routes, error shapes.

mod common;

use common::*;
use serde_json::{json, Value};

fn assert_meili_error(r: &Resp, status: u16, code: &str) {
    assert_eq!(r.status, status, "{}", r.body);
    assert_eq!(r.body["code"], code, "{}", r.body);
    for k in ["message", "type", "link"] {
        assert!(r.body[k].is_string(), "`{k}` missing: {}", r.body);
    }
}

async fn setup(n: usize) -> (miroir_proxy::dev::DevFleet, Api, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let (f, api) = fleet(3, 2, 1, &dir.path().join("m.db")).await;
    api.write_ok(
        "POST",
        "/indexes",
        Some(json!({"uid": "movies", "primaryKey": "id"})),
    )
    .await;
    api.write_ok(
        "PATCH",
        "/indexes/movies/settings",
        Some(json!({"filterableAttributes": ["genre", "year"], "sortableAttributes": ["id"]})),
    )
    .await;
    api.write_ok(
        "POST",
        "/indexes/movies/documents",
        Some(Value::Array(movies(n))),
    )
    .await;
    (f, api, dir)
}

fn result_ids(body: &Value) -> Vec<u64> {
    body["results"]
        .as_array()
        .unwrap_or_else(|| panic!("{body}"))
        .iter()
        .map(|d| d["id"].as_u64().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn indexes_and_document_listing() {
    let (f, api, _dir) = setup(200).await;
    let list = api.get("/indexes").await;
    assert_eq!(list.status, 200);
    assert_eq!(list.body["total"], 1);
    assert_eq!(list.body["results"][0]["uid"], "movies");
    let one = api.get("/indexes/movies").await;
    assert_eq!(one.body["primaryKey"], "id");
    assert_meili_error(&api.get("/indexes/nope").await, 404, "index_not_found");

    // GET /documents pages through everything once
    let mut seen = Vec::new();
    for page in 0..5 {
        let r = api
            .get(&format!(
                "/indexes/movies/documents?offset={}&limit=40",
                page * 40
            ))
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.body["total"], 200);
        assert!(r.body["results"][0].get("_miroir_shard").is_none());
        seen.extend(result_ids(&r.body));
    }
    seen.sort_unstable();
    assert_eq!(seen, (0..200).collect::<Vec<_>>());
    // POST /documents/fetch with a filter and fields
    let r = api
        .post(
            "/indexes/movies/documents/fetch",
            json!({"filter": "genre = drama", "limit": 100, "fields": ["id", "genre"]}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["total"], 40);
    assert!(r.body["results"]
        .as_array()
        .unwrap()
        .iter()
        .all(|d| d["genre"] == "drama" && d.get("title").is_none()));
    let r = api
        .post(
            "/indexes/movies/documents/fetch",
            json!({"ids": [3, "7", 199, 1000]}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let mut got = result_ids(&r.body);
    got.sort_unstable();
    assert_eq!(got, vec![3, 7, 199]);

    // deletions
    api.write_ok("DELETE", "/indexes/movies/documents/5", None)
        .await;
    assert_meili_error(
        &api.get("/indexes/movies/documents/5").await,
        404,
        "document_not_found",
    );
    let t = api
        .write_ok(
            "POST",
            "/indexes/movies/documents/delete-batch",
            Some(json!([6, "7", 8])),
        )
        .await;
    assert_eq!(t["details"]["providedIds"], 3);
    assert_eq!(t["details"]["deletedDocuments"], 3);
    api.write_ok(
        "POST",
        "/indexes/movies/documents/delete",
        Some(json!({"filter": "genre = horror"})),
    )
    .await;
    let r = api.get("/indexes/movies/documents?limit=0").await;
    assert_eq!(
        r.body["total"],
        200 - 4 - 40 + 1,
        "doc 8 was horror: {}",
        r.body
    );
    let stats = api.get("/indexes/movies/stats").await;
    assert_eq!(stats.body["numberOfDocuments"], 157);
    api.write_ok("DELETE", "/indexes/movies/documents", None)
        .await;
    assert_eq!(api.get("/indexes/movies/documents").await.body["total"], 0);

    // deletion, then documents at once: the index comes back with the shard field filterable
    let del = api.call("DELETE", "/indexes/movies", None).await;
    assert_eq!(del.status, 202);
    let add = api
        .post(
            "/indexes/movies/documents",
            json!([{"id": 1, "title": "again"}, {"id": 2, "title": "again"}]),
        )
        .await;
    assert_eq!(add.status, 202, "{}", add.body);
    api.wait_task(del.body["taskUid"].as_u64().unwrap()).await;
    let t = api.wait_task(add.body["taskUid"].as_u64().unwrap()).await;
    assert_eq!(t["status"], "succeeded", "{t}");
    for i in 0..3 {
        let s = node_api(&f, i)
            .get("/indexes/movies/settings/filterable-attributes")
            .await;
        assert_eq!(s.body, json!(["_miroir_shard"]), "node {i}");
    }
    let r = api
        .post("/indexes/movies/search", json!({"q": "again"}))
        .await;
    assert_eq!(r.body["estimatedTotalHits"], 2, "{}", r.body);
    api.write_ok("DELETE", "/indexes/movies", None).await;
    assert_meili_error(&api.get("/indexes/movies").await, 404, "index_not_found");
    f.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_routes_keep_the_shard_field_on_nodes() {
    let (f, api, _dir) = setup(100).await;
    let nodes_keep_it =
        |f: &miroir_proxy::dev::DevFleet| (0..3).map(|i| node_api(f, i)).collect::<Vec<_>>();
    // sub-route writes and reads
    api.write_ok(
        "PUT",
        "/indexes/movies/settings/ranking-rules",
        Some(json!([
            "sort",
            "words",
            "typo",
            "proximity",
            "attribute",
            "exactness"
        ])),
    )
    .await;
    assert_eq!(
        api.get("/indexes/movies/settings/ranking-rules").await.body[0],
        "sort"
    );
    api.write_ok(
        "PUT",
        "/indexes/movies/settings/filterable-attributes",
        Some(json!(["year"])),
    )
    .await;
    assert_eq!(
        api.get("/indexes/movies/settings/filterable-attributes")
            .await
            .body,
        json!(["year"])
    );
    // a client facet limit below S: shown to the client, nodes keep at least S
    api.write_ok(
        "PATCH",
        "/indexes/movies/settings/faceting",
        Some(json!({"maxValuesPerFacet": 2})),
    )
    .await;
    assert_eq!(
        api.get("/indexes/movies/settings").await.body["faceting"]["maxValuesPerFacet"],
        2
    );
    for n in nodes_keep_it(&f) {
        let s = n.get("/indexes/movies/settings").await.body;
        assert!(
            s["faceting"]["maxValuesPerFacet"].as_u64().unwrap() >= 16,
            "{s}"
        );
        assert!(s["filterableAttributes"]
            .as_array()
            .unwrap()
            .contains(&json!("_miroir_shard")));
    }
    let r = api
        .post(
            "/indexes/movies/search",
            json!({"q": "", "facets": ["year"], "limit": 0}),
        )
        .await;
    assert_eq!(
        r.body["facetDistribution"]["year"]
            .as_object()
            .unwrap()
            .len(),
        2
    );
    // listings still count exactly (per-shard counts need S facet values)
    assert_eq!(
        api.get("/indexes/movies/documents?limit=1").await.body["total"],
        100
    );

    // displayed attributes: nodes display everything, the proxy shows the client's list
    api.write_ok(
        "PUT",
        "/indexes/movies/settings/displayed-attributes",
        Some(json!(["title"])),
    )
    .await;
    assert_eq!(
        api.get("/indexes/movies/settings/displayed-attributes")
            .await
            .body,
        json!(["title"])
    );
    for n in nodes_keep_it(&f) {
        let d = n
            .get("/indexes/movies/settings/displayed-attributes")
            .await
            .body;
        assert_eq!(d, json!(["*"]));
    }
    assert_eq!(
        api.get("/indexes/movies/documents/3").await.body,
        json!({"title": "movie kw3 horror"})
    );
    let l = api.get("/indexes/movies/documents?limit=2").await.body;
    assert!(
        l["results"]
            .as_array()
            .unwrap()
            .iter()
            .all(|d| d.as_object().unwrap().len() == 1),
        "{l}"
    );
    let r = api
        .post("/indexes/movies/search", json!({"q": "kw3", "limit": 1}))
        .await
        .body;
    assert_eq!(r["hits"][0], json!({"title": "movie kw3 horror"}));

    // resets
    api.write_ok(
        "DELETE",
        "/indexes/movies/settings/filterable-attributes",
        None,
    )
    .await;
    assert_eq!(
        api.get("/indexes/movies/settings/filterable-attributes")
            .await
            .body,
        json!([])
    );
    api.write_ok("DELETE", "/indexes/movies/settings", None)
        .await;
    let shown = api.get("/indexes/movies/settings").await.body;
    assert_eq!(shown["faceting"]["maxValuesPerFacet"], 100);
    assert_eq!(shown["rankingRules"][0], "words");
    assert_eq!(shown["displayedAttributes"], json!(["*"]));
    assert_eq!(
        api.get("/indexes/movies/documents/3").await.body["genre"],
        "horror"
    );
    for n in nodes_keep_it(&f) {
        let s = n.get("/indexes/movies/settings").await.body;
        assert_eq!(s["filterableAttributes"], json!(["_miroir_shard"]));
    }
    // RF=2 searches still restrict by shard: no duplicates
    let r = api
        .post("/indexes/movies/search", json!({"q": "", "limit": 1000}))
        .await;
    assert_eq!(r.body["hits"].as_array().unwrap().len(), 100);
    // a setting the nodes refuse is relayed
    let bad = api
        .call(
            "PATCH",
            "/indexes/movies/settings",
            Some(json!({"rankingRules": ["nope"]})),
        )
        .await;
    assert_meili_error(&bad, 400, "invalid_settings_ranking_rules");
    f.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_paths_are_meilisearch_shaped() {
    let (f, api, _dir) = setup(10).await;
    assert_meili_error(
        &api.post(
            "/indexes/movies/documents",
            json!([{"id": 1, "_miroir_shard": 3}]),
        )
        .await,
        400,
        "miroir_reserved_field",
    );
    let r = api
        .post(
            "/indexes/movies/documents",
            json!([{"id": "no spaces allowed"}]),
        )
        .await;
    assert_eq!(r.status, 202);
    let t = api.wait_task(r.body["taskUid"].as_u64().unwrap()).await;
    assert_eq!(t["status"], "failed");
    assert_eq!(t["error"]["code"], "invalid_document_id");
    let r = api
        .post("/indexes/other/documents", json!([{"title": "no id"}]))
        .await;
    assert_eq!(r.status, 202, "{}", r.body);
    let t = api.wait_task(r.body["taskUid"].as_u64().unwrap()).await;
    assert_eq!(t["error"]["code"], "index_primary_key_no_candidate_found");
    assert_meili_error(&api.get("/indexes/other").await, 404, "index_not_found");
    // an empty batch creates the index without a key
    api.write_ok("POST", "/indexes/other/documents", Some(json!([])))
        .await;
    assert_eq!(
        api.get("/indexes/other").await.body["primaryKey"],
        Value::Null
    );
    let r = api
        .raw(
            "POST",
            "/indexes/movies/documents",
            Some("application/json"),
            b"[{".to_vec(),
        )
        .await;
    assert_meili_error(&r, 400, "malformed_payload");
    let r = api
        .raw(
            "POST",
            "/indexes/movies/search",
            Some("application/json"),
            b"{".to_vec(),
        )
        .await;
    assert_meili_error(&r, 400, "bad_request");
    let r = api
        .raw(
            "POST",
            "/indexes/movies/search",
            Some("text/plain"),
            b"{}".to_vec(),
        )
        .await;
    assert_meili_error(&r, 415, "invalid_content_type");
    let r = api
        .post("/indexes/movies/search", json!({"filter": "nope = 1"}))
        .await;
    assert_meili_error(&r, 400, "invalid_search_filter");
    assert!(
        r.body["message"]
            .as_str()
            .unwrap()
            .contains("Available filterable attribute patterns are: `genre`, `year`."),
        "{}",
        r.body
    );
    // no message ever names the hidden field
    for r in [
        api.post("/indexes/movies/search", json!({"facets": ["title"]}))
            .await,
        api.post(
            "/indexes/movies/facet-search",
            json!({"facetName": "title"}),
        )
        .await,
        api.post(
            "/indexes/movies/documents/fetch",
            json!({"filter": "title = x"}),
        )
        .await,
        api.post("/indexes/movies/search", json!({"distinct": "title"}))
            .await,
        api.post("/indexes/other/search", json!({"filter": "title = x"}))
            .await,
    ] {
        assert!(r.status >= 400, "{}", r.body);
        assert!(r.body["code"].is_string(), "{}", r.body);
        assert!(
            !r.body["message"].as_str().unwrap().contains("_miroir"),
            "{}",
            r.body
        );
    }
    let r = api
        .post("/indexes/other/facet-search", json!({"facetName": "title"}))
        .await;
    assert!(
        r.body["message"]
            .as_str()
            .unwrap()
            .contains("This index does not have configured facet-searchable attributes."),
        "{}",
        r.body
    );
    assert_meili_error(
        &api.post("/indexes/nope/search", json!({"q": ""})).await,
        404,
        "index_not_found",
    );
    assert_meili_error(&api.get("/tasks/424242").await, 404, "task_not_found");
    assert_meili_error(&api.get("/tasks?limit=x").await, 400, "invalid_task_limit");
    assert_meili_error(
        &api.get("/indexes/movies/similar?id=1").await,
        501,
        "miroir_unsupported_route",
    );
    assert_meili_error(
        &api.post(
            "/multi-search",
            json!({"queries": [{"indexUid": "movies", "q": "", "filter": "x = "}]}),
        )
        .await,
        400,
        "invalid_search_filter",
    );
    let r = api.post("/indexes", json!({"uid": "movies"})).await;
    let t = api.wait_task(r.body["taskUid"].as_u64().unwrap()).await;
    assert_eq!(t["error"]["code"], "index_already_exists");
    // the task list filters Miroir tasks
    let failed = api.get("/tasks?statuses=failed").await;
    assert_eq!(failed.status, 200);
    assert_eq!(failed.body["total"], 3, "{}", failed.body);
    let creations = api.get("/tasks?types=indexCreation&limit=1").await;
    assert_eq!(creations.body["results"].as_array().unwrap().len(), 1);
    assert_eq!(creations.body["total"], 2);
    // DELETE /tasks removes the matching finished tasks and says so in a taskDeletion task
    assert_meili_error(
        &api.call("DELETE", "/tasks", None).await,
        400,
        "missing_task_filters",
    );
    let r = api.call("DELETE", "/tasks?statuses=failed", None).await;
    assert_eq!(r.status, 202, "{}", r.body);
    assert_eq!(r.body["type"], "taskDeletion");
    let t = api.wait_task(r.body["taskUid"].as_u64().unwrap()).await;
    assert_eq!(t["status"], "succeeded", "{t}");
    assert_eq!(t["details"]["matchedTasks"], 3);
    assert_eq!(t["details"]["deletedTasks"], 3);
    assert_eq!(t["details"]["originalFilter"], "?statuses=failed");
    assert_eq!(api.get("/tasks?statuses=failed").await.body["total"], 0);
    // experimental features go to every node; the node model has no such route (404 without a body),
    // which the proxy reports as an unusable node answer rather than a success
    let r = api
        .call(
            "PATCH",
            "/experimental-features",
            Some(json!({"containsFilter": true})),
        )
        .await;
    assert_meili_error(&r, 502, "miroir_bad_node_response");
    // global stats sum the shards once
    let stats = api.get("/stats").await;
    assert_eq!(stats.status, 200, "{}", stats.body);
    assert_eq!(stats.body["indexes"]["movies"]["numberOfDocuments"], 10);
    f.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_index_deleted_then_written_at_once_is_recreated_sharded() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = miroir_proxy::dev::DevOptions::new(
        2,
        dir.path().join("m.db").to_string_lossy().into_owned(),
    );
    o.model_tick_ms = 100;
    let (f, api) = fleet_with(o).await;
    api.write_ok(
        "POST",
        "/indexes/movies/documents",
        Some(json!([{"id": 1}])),
    )
    .await;
    // nodes still list the index while their deletion task waits: the proxy must not trust them
    let del = api.call("DELETE", "/indexes/movies", None).await;
    assert_eq!(del.status, 202);
    let add = api
        .post(
            "/indexes/movies/documents",
            json!([{"id": 7, "title": "again"}]),
        )
        .await;
    assert_eq!(add.status, 202, "{}", add.body);
    api.wait_task(del.body["taskUid"].as_u64().unwrap()).await;
    let t = api.wait_task(add.body["taskUid"].as_u64().unwrap()).await;
    assert_eq!(t["status"], "succeeded", "{t}");
    for i in 0..2 {
        let s = node_api(&f, i)
            .get("/indexes/movies/settings/filterable-attributes")
            .await;
        assert_eq!(s.body, json!(["_miroir_shard"]), "node {i}");
    }
    f.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_primary_key_set_by_index_update_is_used_for_later_batches() {
    let dir = tempfile::tempdir().unwrap();
    let (f, api) = fleet(3, 2, 1, &dir.path().join("m.db")).await;
    api.write_ok("POST", "/indexes", Some(json!({"uid": "books"})))
        .await;
    let t = api
        .write_ok(
            "PATCH",
            "/indexes/books",
            Some(json!({"primaryKey": "isbn"})),
        )
        .await;
    assert_eq!(t["type"], "indexUpdate");
    assert_eq!(t["details"]["primaryKey"], "isbn");
    assert_eq!(api.get("/indexes/books").await.body["primaryKey"], "isbn");
    // `id` would be inferred; the index's key wins
    api.write_ok(
        "POST",
        "/indexes/books/documents",
        Some(json!([{"id": 1, "isbn": "x-1"}, {"id": 1, "isbn": "x-2"}])),
    )
    .await;
    assert_eq!(api.get("/indexes/books/documents/x-2").await.status, 200);
    assert_eq!(
        api.get("/indexes/books/documents?limit=0").await.body["total"],
        2
    );
    // a conflicting key parameter fails the task as Meilisearch does
    let r = api
        .post(
            "/indexes/books/documents?primaryKey=id",
            json!([{"id": 3, "isbn": "x-3"}]),
        )
        .await;
    let t = api.wait_task(r.body["taskUid"].as_u64().unwrap()).await;
    assert_eq!(
        t["error"]["code"], "index_primary_key_already_exists",
        "{t}"
    );
    f.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swapped_indexes_keep_their_keys_and_facet_limits() {
    let dir = tempfile::tempdir().unwrap();
    let (f, api) = fleet(3, 2, 1, &dir.path().join("m.db")).await;
    api.write_ok(
        "POST",
        "/indexes",
        Some(json!({"uid": "a", "primaryKey": "ida"})),
    )
    .await;
    api.write_ok(
        "POST",
        "/indexes",
        Some(json!({"uid": "b", "primaryKey": "idb"})),
    )
    .await;
    api.write_ok(
        "PATCH",
        "/indexes/a/settings/faceting",
        Some(json!({"maxValuesPerFacet": 3})),
    )
    .await;
    let t = api
        .write_ok(
            "POST",
            "/swap-indexes",
            Some(json!([{"indexes": ["a", "b"]}])),
        )
        .await;
    assert_eq!(t["type"], "indexSwap");
    assert_eq!(t["indexUid"], Value::Null);
    assert_eq!(api.get("/indexes/a").await.body["primaryKey"], "idb");
    assert_eq!(
        api.get("/indexes/b/settings/faceting").await.body["maxValuesPerFacet"],
        3
    );
    // a batch for `a` now resolves `idb`, with no inference
    api.write_ok(
        "POST",
        "/indexes/a/documents",
        Some(json!([{"idb": 1, "ida": 9}])),
    )
    .await;
    assert_eq!(api.get("/indexes/a/documents/1").await.status, 200);
    // a swap the nodes refuse at once is relayed
    let r = api.post("/swap-indexes", json!([{"indexes": ["a"]}])).await;
    assert_meili_error(&r, 400, "invalid_swap_indexes");
    // a swap that fails on the nodes puts the metadata back
    let r = api
        .post("/swap-indexes", json!([{"indexes": ["a", "missing"]}]))
        .await;
    assert_eq!(r.status, 202, "{}", r.body);
    let t = api.wait_task(r.body["taskUid"].as_u64().unwrap()).await;
    assert_eq!(t["status"], "failed", "{t}");
    assert_eq!(api.get("/indexes/a").await.body["primaryKey"], "idb");
    api.write_ok("POST", "/indexes/a/documents", Some(json!([{"idb": 2}])))
        .await;
    f.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enqueued_tasks_can_be_canceled() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = miroir_proxy::dev::DevOptions::new(
        3,
        dir.path().join("m.db").to_string_lossy().into_owned(),
    );
    o.model_tick_ms = 150;
    let (f, api) = fleet_with(o).await;
    api.write_ok(
        "POST",
        "/indexes",
        Some(json!({"uid": "movies", "primaryKey": "id"})),
    )
    .await;
    // three batches queue up behind each other on slow nodes; cancel the last two
    let mut uids = Vec::new();
    for b in 0..3 {
        let r = api
            .post(
                "/indexes/movies/documents",
                json!([{"id": b, "title": "x"}]),
            )
            .await;
        uids.push(r.body["taskUid"].as_u64().unwrap());
    }
    assert_meili_error(
        &api.post("/tasks/cancel", json!(null)).await,
        400,
        "missing_task_filters",
    );
    let r = api
        .call(
            "POST",
            &format!("/tasks/cancel?uids={},{}", uids[1], uids[2]),
            None,
        )
        .await;
    assert_eq!(r.status, 202, "{}", r.body);
    assert_eq!(r.body["type"], "taskCancelation");
    let cancel = api.wait_task(r.body["taskUid"].as_u64().unwrap()).await;
    assert_eq!(cancel["status"], "succeeded", "{cancel}");
    assert_eq!(cancel["details"]["matchedTasks"], 2);
    for uid in &uids[1..] {
        let t = api.wait_task(*uid).await;
        assert_eq!(t["status"], "canceled", "{t}");
        assert_eq!(t["canceledBy"], cancel["uid"]);
    }
    assert_eq!(api.wait_task(uids[0]).await["status"], "succeeded");
    assert_eq!(
        api.get("/indexes/movies/documents?limit=0").await.body["total"],
        1
    );
    f.shutdown().await;
}
