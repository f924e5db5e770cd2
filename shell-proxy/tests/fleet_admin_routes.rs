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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_are_notified_of_finished_tasks() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let (_f, api) = fleet(2, 1, 1, &dir.path().join("m.db")).await;
    let created = api
        .post(
            "/webhooks",
            json!({"url": format!("http://127.0.0.1:{port}/hook"), "headers": {"X-Token": "t0ken"}}),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    let task = api
        .write_ok(
            "POST",
            "/indexes",
            Some(json!({"uid": "movies", "primaryKey": "id"})),
        )
        .await;
    let received = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        let (mut socket, _) = listener.accept().await.unwrap();
        let mut data = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let n = socket.read(&mut buf).await.unwrap();
            if n == 0 {
                break;
            }
            data.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&data);
            if text.contains("\r\n\r\n") && text.trim_end().ends_with('}') {
                break;
            }
        }
        socket
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
            .await
            .unwrap();
        String::from_utf8_lossy(&data).into_owned()
    })
    .await
    .expect("the webhook is called");
    assert!(received.starts_with("POST /hook"), "{received}");
    assert!(
        received.to_ascii_lowercase().contains("x-token: t0ken"),
        "{received}"
    );
    assert!(received.contains("application/x-ndjson"), "{received}");
    let body = received.split("\r\n\r\n").nth(1).unwrap();
    let line: serde_json::Value = serde_json::from_str(body.lines().next().unwrap()).unwrap();
    assert_eq!(line["uid"], task["uid"]);
    assert_eq!(line["status"], "succeeded");
    assert_eq!(line["type"], "indexCreation");
}
