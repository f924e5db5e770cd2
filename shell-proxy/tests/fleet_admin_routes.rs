//! Batches (one per Miroir task), dumps and snapshots (one Miroir task over every node), webhooks.

mod common;

use common::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_dumps_and_snapshots() {
    let dir = tempfile::tempdir().unwrap();
    let (f, api) = fleet(3, 1, 1, &dir.path().join("m.db")).await;
    let created = api
        .write_ok(
            "POST",
            "/indexes",
            Some(json!({"uid": "movies", "primaryKey": "id"})),
        )
        .await;
    let uid = created["uid"].as_u64().unwrap();
    assert_eq!(created["batchUid"], uid);

    let batch = api.get(&format!("/batches/{uid}")).await;
    assert_eq!(batch.status, 200, "{}", batch.body);
    assert_eq!(batch.body["uid"], uid);
    assert_eq!(batch.body["stats"]["totalNbTasks"], 1);
    assert_eq!(batch.body["stats"]["types"]["indexCreation"], 1);
    assert_eq!(batch.body["stats"]["status"]["succeeded"], 1);
    assert_eq!(batch.body["stats"]["indexUids"]["movies"], 1);
    assert_eq!(batch.body["startedAt"], created["startedAt"]);
    assert_eq!(batch.body["finishedAt"], created["finishedAt"]);
    let missing = api.get("/batches/4000").await;
    assert_eq!(
        (missing.status, missing.body["code"].as_str()),
        (404, Some("batch_not_found"))
    );
    let bad = api.get("/batches/x").await;
    assert_eq!(bad.body["code"], "invalid_batch_uids");

    // dumps and snapshots: one Miroir task, applied by every node
    let dump = api.write_ok("POST", "/dumps", None).await;
    assert_eq!(dump["type"], "dumpCreation");
    assert_eq!(dump["indexUid"], serde_json::Value::Null);
    assert!(dump["details"].get("dumpUid").is_some(), "{dump}");
    let snapshot = api.write_ok("POST", "/snapshots", None).await;
    assert_eq!(snapshot["type"], "snapshotCreation");
    for i in 0..3 {
        let tasks = node_api(&f, i)
            .get("/tasks?types=dumpCreation,snapshotCreation")
            .await;
        assert_eq!(tasks.body["total"], 2, "node {i}: {}", tasks.body);
    }

    let list = api.get("/batches?limit=2").await;
    assert_eq!(list.status, 200, "{}", list.body);
    assert_eq!(list.body["total"], 3);
    assert_eq!(list.body["limit"], 2);
    let uids: Vec<u64> = list.body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["uid"].as_u64().unwrap())
        .collect();
    assert_eq!(
        uids,
        vec![
            snapshot["uid"].as_u64().unwrap(),
            dump["uid"].as_u64().unwrap()
        ]
    );
    assert_eq!(list.body["next"], uid);
    let by_type = api.get("/batches?types=dumpCreation").await;
    assert_eq!(by_type.body["total"], 1);
    assert_eq!(
        by_type.body["results"][0]["stats"]["types"]["dumpCreation"],
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_are_kept_by_miroir() {
    let dir = tempfile::tempdir().unwrap();
    let (f, api) = fleet(2, 1, 1, &dir.path().join("m.db")).await;
    assert_eq!(api.get("/webhooks").await.body, json!({"results": []}));
    let created = api
        .post(
            "/webhooks",
            json!({"url": "http://127.0.0.1:9/hook", "headers": {"Authorization": "Bearer a-secret-token"}}),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    let uuid = created.body["uuid"].as_str().unwrap().to_string();
    assert_eq!(created.body["isEditable"], true);
    assert_eq!(created.body["headers"]["Authorization"], "Bearer a-XXXX...");
    let one = api.get(&format!("/webhooks/{uuid}")).await;
    assert_eq!(one.body, created.body);
    let patched = api
        .call(
            "PATCH",
            &format!("/webhooks/{uuid}"),
            Some(json!({"headers": {"X-Team": "search"}})),
        )
        .await;
    assert_eq!(patched.status, 200, "{}", patched.body);
    assert_eq!(patched.body["headers"]["X-Team"], "search");
    let bad = api
        .call(
            "PATCH",
            &format!("/webhooks/{uuid}"),
            Some(json!({"uuid": "x"})),
        )
        .await;
    assert_eq!(bad.body["code"], "immutable_webhook_uuid");
    assert_eq!(
        api.post("/webhooks", json!({"headers": {}})).await.body["code"],
        "invalid_webhook_url"
    );
    // the nodes know nothing of it
    assert_eq!(node_api(&f, 0).get("/webhooks").await.status, 404);
    let list = api.get("/webhooks").await;
    assert_eq!(list.body["results"].as_array().unwrap().len(), 1);
    assert_eq!(
        api.call("DELETE", &format!("/webhooks/{uuid}"), None)
            .await
            .status,
        204
    );
    let gone = api.get(&format!("/webhooks/{uuid}")).await;
    assert_eq!(
        (gone.status, gone.body["code"].as_str()),
        (404, Some("webhook_not_found"))
    );
    assert_eq!(
        api.get("/webhooks/nope").await.body["code"],
        "invalid_webhook_uuid"
    );
}
