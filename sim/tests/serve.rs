//! The served model over real HTTP: asynchronous tasks, authentication, and fault injection.
#![cfg(not(madsim))]

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use miroir_sim::serve::{spawn, FailMode, Faults, ModelOptions};
use serde_json::{json, Value};
use std::time::Duration;

type HttpClient = Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>;

fn client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

async fn call(
    c: &HttpClient,
    base: &str,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> Result<(u16, Value), String> {
    let mut req = hyper::Request::builder()
        .method(method)
        .uri(format!("{base}{path}"))
        .header("Authorization", "Bearer key");
    if body.is_some() {
        req = req.header("Content-Type", "application/json");
    }
    let bytes = body
        .map(|b| Bytes::from(serde_json::to_vec(&b).unwrap()))
        .unwrap_or_default();
    let resp = c
        .request(req.body(Full::new(bytes)).unwrap())
        .await
        .map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?;
    let bytes = body.to_bytes();
    let v = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).map_err(|e| e.to_string())?
    };
    Ok((status, v))
}

#[tokio::test]
async fn tasks_run_asynchronously_and_documents_are_served() {
    let opts = ModelOptions {
        master_key: Some("key".into()),
        ..ModelOptions::default()
    };
    let node = spawn("127.0.0.1:0".parse().unwrap(), opts).await.unwrap();
    let c = client();
    let base = node.url();
    let (s, v) = call(
        &c,
        &base,
        "POST",
        "/indexes/movies/documents",
        Some(json!([{"id": 1, "title": "Alien"}])),
    )
    .await
    .unwrap();
    assert_eq!(s, 202, "{v}");
    let uid = v["taskUid"].as_u64().unwrap();
    let mut status = String::new();
    for _ in 0..200 {
        let (_, t) = call(&c, &base, "GET", &format!("/tasks/{uid}"), None)
            .await
            .unwrap();
        status = t["status"].as_str().unwrap_or_default().to_string();
        if status == "succeeded" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(status, "succeeded");
    let (s, d) = call(&c, &base, "GET", "/indexes/movies/documents/1", None)
        .await
        .unwrap();
    assert_eq!((s, d["title"].clone()), (200, json!("Alien")));
    // authentication is the model's
    let unauth = hyper::Request::get(format!("{base}/indexes"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    assert_eq!(c.request(unauth).await.unwrap().status().as_u16(), 401);
    node.shutdown().await;
}

#[tokio::test]
async fn faults_are_injected_and_controlled_at_runtime() {
    let node = spawn("127.0.0.1:0".parse().unwrap(), ModelOptions::default())
        .await
        .unwrap();
    let c = client();
    let base = node.url();
    assert_eq!(
        call(&c, &base, "GET", "/health", None).await.unwrap().0,
        200
    );

    node.set_faults(Faults {
        fail_rate: 1.0,
        ..Faults::default()
    });
    let (s, v) = call(&c, &base, "GET", "/health", None).await.unwrap();
    assert_eq!(s, 503);
    assert_eq!(v["code"], "model_fault_injected");

    node.set_faults(Faults {
        fail_rate: 1.0,
        fail_mode: FailMode::Drop,
        ..Faults::default()
    });
    assert!(call(&c, &base, "GET", "/health", None).await.is_err());

    // the control route works while down and brings the node back
    let (s, v) = call(
        &c,
        &base,
        "POST",
        "/_model/faults",
        Some(json!({"down": true, "failRate": 0.0})),
    )
    .await
    .unwrap();
    assert_eq!((s, v["down"].clone()), (200, json!(true)));
    assert!(call(&c, &base, "GET", "/health", None).await.is_err());
    let (s, v) = call(
        &c,
        &base,
        "POST",
        "/_model/faults",
        Some(json!({"down": 3})),
    )
    .await
    .unwrap();
    assert_eq!((s, v["code"].clone()), (400, json!("model_bad_request")));
    call(
        &c,
        &base,
        "POST",
        "/_model/faults",
        Some(json!({"down": false, "latencyMs": 30})),
    )
    .await
    .unwrap();
    let started = std::time::Instant::now();
    assert_eq!(
        call(&c, &base, "GET", "/health", None).await.unwrap().0,
        200
    );
    assert!(started.elapsed() >= Duration::from_millis(30));
    let (_, v) = call(&c, &base, "GET", "/_model/faults", None)
        .await
        .unwrap();
    assert_eq!(v["latencyMs"], 30);
    node.shutdown().await;
}
