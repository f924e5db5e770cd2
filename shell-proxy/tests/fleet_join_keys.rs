//! A node joining the fleet gets the fleet's API keys before the change is committed: the proxy reads its
//! key ring from any node, so a joined node without them would make valid keys fail.

mod common;

use common::*;
use miroir_proxy::dev::DevOptions;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Every key of node `i` by uid: (key value, name, actions).
async fn keys_of(
    f: &miroir_proxy::dev::DevFleet,
    i: usize,
) -> BTreeMap<String, (Value, Value, Value)> {
    let r = node_api(f, i).get("/keys?limit=1000").await;
    assert_eq!(r.status, 200, "node {i}: {}", r.body);
    r.body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| {
            (
                k["uid"].as_str().unwrap().to_string(),
                (k["key"].clone(), k["name"].clone(), k["actions"].clone()),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_joining_node_gets_the_fleets_keys() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = DevOptions::new(2, dir.path().join("m.db").to_string_lossy().into_owned());
    o.master_key = "the-master-key".into();
    let (mut f, open) = fleet_with(o).await;
    let mut master = open.clone();
    master.key = Some("the-master-key".into());
    master
        .write_ok(
            "POST",
            "/indexes/movies/documents",
            Some(Value::Array(movies(20))),
        )
        .await;
    let mut created = Vec::new();
    for (name, actions) in [("searcher", json!(["search"])), ("admin", json!(["*"]))] {
        let r = master
            .post(
                "/keys",
                json!({"name": name, "actions": actions, "indexes": ["movies"], "expiresAt": null}),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.body);
        created.push(r.body["key"].as_str().unwrap().to_string());
    }

    // the spare node has a key of its own (as a fresh Meilisearch has its default keys)
    let spare = spare_node(0x5eed + 9).await;
    let spare_url = spare.url();
    f.nodes.push(spare);
    let own = node_api(&f, 2)
        .post(
            "/keys",
            json!({"name": "Default Search API Key", "actions": ["search"], "indexes": ["*"], "expiresAt": null}),
        )
        .await;
    assert_eq!(own.status, 201, "{}", own.body);
    assert_ne!(keys_of(&f, 2).await, keys_of(&f, 0).await);

    let add = master
        .post(
            "/_miroir/nodes",
            json!({"id": "node-2", "url": spare_url, "replicaGroup": 0}),
        )
        .await;
    assert_eq!(add.status, 202, "{}", add.body);
    let start = Instant::now();
    loop {
        let t = master.get("/_miroir/topology").await;
        let s = master.get("/_miroir/rebalance/status").await;
        if t.body["epoch"] == 2 && s.body["status"] == "idle" {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{} / {}",
            t.body,
            s.body
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // the joined node holds exactly the fleet's keys, with the same values
    let fleet_keys = keys_of(&f, 0).await;
    assert_eq!(fleet_keys.len(), 2, "{fleet_keys:?}");
    assert_eq!(keys_of(&f, 2).await, fleet_keys);
    assert_eq!(keys_of(&f, 1).await, fleet_keys);

    // and the keys keep working through the proxy, whichever node its key ring is read from
    for _ in 0..10 {
        let mut searcher = open.clone();
        searcher.key = Some(created[0].clone());
        let r = searcher.get("/indexes/movies/search?q=movie&limit=1").await;
        assert_eq!(r.status, 200, "{}", r.body);
    }
}
