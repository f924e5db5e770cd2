//! API keys over the fleet: every node holds every key with the same uid and value; a partial create is
//! rolled back, a partial update is reported.

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

const UID: &str = "5b2f5a4e-1c1d-4c1e-9a6b-0c2f3e4d5a6b";

fn key_body() -> Value {
    json!({"name": "search", "actions": ["search"], "indexes": ["movies"], "expiresAt": null})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_are_identical_on_every_node() {
    let dir = tempfile::tempdir().unwrap();
    let (f, api) = fleet(3, 1, 1, &dir.path().join("m.db")).await;
    let created = api.post("/keys", key_body()).await;
    assert_eq!(created.status, 201, "{}", created.body);
    let uid = created.body["uid"].as_str().unwrap().to_string();
    let key = created.body["key"].as_str().unwrap().to_string();
    assert_eq!(uid.len(), 36);
    assert_eq!(&uid[14..15], "4", "a uuid v4: {uid}");
    for i in 0..3 {
        let on_node = node_api(&f, i).get(&format!("/keys/{uid}")).await;
        assert_eq!(on_node.status, 200, "node {i}: {}", on_node.body);
        assert_eq!(on_node.body["key"], key.as_str());
    }
    let list = api.get("/keys").await;
    assert_eq!(list.status, 200);
    assert_eq!(list.body["total"], 1);
    assert_eq!(list.body["results"][0]["uid"], uid.as_str());
    let by_key = api.get(&format!("/keys/{key}")).await;
    assert_eq!(by_key.body["uid"], uid.as_str());

    let patched = api
        .call(
            "PATCH",
            &format!("/keys/{uid}"),
            Some(json!({"description": "for the frontend"})),
        )
        .await;
    assert_eq!(patched.status, 200, "{}", patched.body);
    assert_eq!(patched.body["description"], "for the frontend");
    for i in 0..3 {
        let on_node = node_api(&f, i).get(&format!("/keys/{uid}")).await;
        assert_eq!(on_node.body["description"], "for the frontend");
    }
    let immutable = api
        .call("PATCH", &format!("/keys/{uid}"), Some(json!({"uid": UID})))
        .await;
    assert_meili_error(&immutable, 400, "immutable_api_key_uid");

    let deleted = api.call("DELETE", &format!("/keys/{key}"), None).await;
    assert_eq!(deleted.status, 204, "{}", deleted.body);
    for i in 0..3 {
        let on_node = node_api(&f, i).get(&format!("/keys/{uid}")).await;
        assert_eq!(on_node.status, 404);
    }
    assert_meili_error(
        &api.get(&format!("/keys/{uid}")).await,
        404,
        "api_key_not_found",
    );
    assert_meili_error(
        &api.call("DELETE", &format!("/keys/{uid}"), None).await,
        404,
        "api_key_not_found",
    );
    assert_meili_error(
        &api.post("/keys", json!({"indexes": [], "expiresAt": null}))
            .await,
        400,
        "missing_api_key_actions",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_chosen_uid_is_kept_and_a_partial_create_rolled_back() {
    let dir = tempfile::tempdir().unwrap();
    let (f, api) = fleet(3, 1, 1, &dir.path().join("m.db")).await;
    let mut body = key_body();
    body["uid"] = json!(UID);
    let created = api.post("/keys", body.clone()).await;
    assert_eq!(created.status, 201, "{}", created.body);
    assert_eq!(created.body["uid"], UID);
    assert_eq!(
        api.call("DELETE", &format!("/keys/{UID}"), None)
            .await
            .status,
        204
    );

    // node 1 already holds the uid: the others create it, then Miroir undoes that.
    let direct = node_api(&f, 1).post("/keys", body.clone()).await;
    assert_eq!(direct.status, 201);
    let r = api.post("/keys", body.clone()).await;
    assert_meili_error(&r, 409, "api_key_already_exists");
    for i in [0, 2] {
        let on_node = node_api(&f, i).get(&format!("/keys/{UID}")).await;
        assert_eq!(on_node.status, 404, "node {i} kept a partial key");
    }

    // a node down during an update: the client is told, never a silent success.
    f.nodes[2].set_down(true);
    let r = api
        .call("PATCH", &format!("/keys/{UID}"), Some(json!({"name": "x"})))
        .await;
    assert!(r.status >= 400, "{}", r.body);
    f.nodes[2].set_down(false);
}
