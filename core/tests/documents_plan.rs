//! Batch and delete planning: unit tests for each error path and property tests of placement.

use miroir_core::documents::*;
use miroir_core::routing::{canonical_id, Placement};
use miroir_core::topology::{GroupId, Node, NodeId, Topology};
use miroir_core::SHARD_FIELD;
use proptest::prelude::*;
use serde_json::{json, Value};
use std::collections::BTreeMap;

fn topology(shards: u32, rf: u32, per_group: &[u32]) -> Topology {
    let mut nodes = Vec::new();
    let mut i = 0;
    for (g, count) in per_group.iter().enumerate() {
        for _ in 0..*count {
            nodes.push(Node::active(
                format!("meili-{i}"),
                format!("http://meili-{i}:7700"),
                g as GroupId,
            ));
            i += 1;
        }
    }
    Topology {
        epoch: 1,
        shards,
        replication_factor: rf,
        replica_groups: per_group.len() as u32,
        nodes,
    }
}

fn doc(v: Value) -> Document {
    match v {
        Value::Object(m) => m,
        other => panic!("not an object: {other}"),
    }
}

fn placement() -> Placement {
    Placement::new(&topology(16, 2, &[3, 2])).unwrap()
}

#[test]
fn a_batch_is_split_to_every_owner_with_its_shard() {
    let p = placement();
    let docs = vec![
        doc(json!({"id": 1, "t": "a"})),
        doc(json!({"id": "x-2", "t": "b"})),
        doc(json!({"id": 1, "t": "c"})),
    ];
    let plan = plan_batch(docs, "id", &p).unwrap();
    assert_eq!(plan.received, 3);
    let s1 = p.shard_for_key("1");
    let s2 = p.shard_for_key("x-2");
    let mut expected_shards = BTreeMap::new();
    *expected_shards.entry(s1).or_insert(0) += 2;
    *expected_shards.entry(s2).or_insert(0) += 1;
    assert_eq!(plan.shards, expected_shards);
    for node in p.write_targets(s1) {
        let batch = &plan.per_node[&node];
        let ones: Vec<_> = batch.iter().filter(|d| d["id"] == json!(1)).collect();
        // Both versions of id 1, in payload order, so the last one wins on the node as on Meilisearch.
        assert_eq!(ones.len(), 2);
        assert_eq!(ones[0]["t"], "a");
        assert_eq!(ones[1]["t"], "c");
        assert_eq!(ones[0][SHARD_FIELD], json!(s1));
    }
    let total: usize = plan.per_node.values().map(Vec::len).sum();
    assert_eq!(total, 3 * 4);
    // The shard field comes last; the client's fields keep their order.
    let any = plan.per_node.values().next().unwrap();
    let keys: Vec<_> = any[0].keys().cloned().collect();
    assert_eq!(keys, ["id", "t", SHARD_FIELD]);
}

#[test]
fn the_first_invalid_document_fails_the_whole_batch() {
    let p = placement();
    let docs = vec![
        doc(json!({"id": 1})),
        doc(json!({"title": "no id"})),
        doc(json!({"id": "a b"})),
    ];
    let e = plan_batch(docs, "id", &p).unwrap_err();
    assert_eq!(e.code, "missing_document_id");
    assert_eq!(
        e.message,
        "Document doesn't have a `id` attribute: `{\"title\":\"no id\"}`."
    );
    let e = plan_batch(
        vec![doc(json!({"id": 1.5})), doc(json!({"x": 1}))],
        "id",
        &p,
    )
    .unwrap_err();
    assert_eq!(e.code, "invalid_document_id");
    let e = plan_batch(
        vec![
            doc(json!({"id": 1})),
            doc(json!({"id": 2, "_miroir_shard": 0})),
        ],
        "id",
        &p,
    )
    .unwrap_err();
    assert_eq!(e.code, "miroir_reserved_field");
    let e = plan_batch(vec![doc(json!({"p": {"id": 1}, "p.id": 1}))], "p.id", &p).unwrap_err();
    assert_eq!(e.code, "invalid_document_id");
}

#[test]
fn an_empty_batch_plans_nothing() {
    let plan = plan_batch(Vec::new(), "id", &placement()).unwrap();
    assert!(plan.per_node.is_empty());
    assert!(plan.shards.is_empty());
    assert_eq!(plan.received, 0);
}

#[test]
fn nested_keys_route_by_their_value() {
    let p = placement();
    let plan = plan_batch(vec![doc(json!({"product": {"id": 42}}))], "product.id", &p).unwrap();
    let s = p.shard_for_key("42");
    assert_eq!(plan.shards.keys().copied().collect::<Vec<_>>(), [s]);
}

#[test]
fn delete_ids_follow_meilisearch_conversion() {
    let p = placement();
    // Fixture "delete batch": [8, 9, "10"].
    let plan = plan_delete_ids(&[json!(8), json!(9), json!("10")], &p);
    assert_eq!(plan.received, 3);
    for (id, shard) in [("8", p.shard_for_key("8")), ("10", p.shard_for_key("10"))] {
        for node in p.write_targets(shard) {
            assert!(plan.per_node[&node].contains(&id.to_string()));
        }
    }
    let total: usize = plan.per_node.values().map(Vec::len).sum();
    assert_eq!(total, 3 * 4);
    assert_eq!(delete_batch_id(&json!(1)), "1");
    assert_eq!(delete_batch_id(&json!("a b")), "a b");
    assert_eq!(delete_batch_id(&json!(1.5)), "1.5");
    assert_eq!(delete_batch_id(&json!(true)), "true");
    assert_eq!(delete_batch_id(&json!(null)), "null");
    assert_eq!(delete_batch_id(&json!({"a": [1]})), "{\"a\":[1]}");
    // Invalid ids are still planned (they delete nothing), and keep request order.
    let plan = plan_delete_ids(&[json!(1.5), json!("1.5"), json!(1.5)], &p);
    let s = p.shard_for_key("1.5");
    assert_eq!(plan.shards, BTreeMap::from([(s, 3)]));
    for node in p.write_targets(s) {
        assert_eq!(plan.per_node[&node], ["1.5", "1.5", "1.5"]);
    }
}

#[test]
fn delete_batch_bodies_are_checked_like_meilisearch() {
    assert_eq!(
        parse_delete_ids(Some("application/json"), br#"[8, 9, "10"]"#),
        Ok(vec![json!(8), json!(9), json!("10")])
    );
    assert_eq!(
        parse_delete_ids(Some("application/json; charset=utf-8"), b"[]"),
        Ok(vec![])
    );
    assert!(parse_delete_ids(Some("application/vnd.api+json"), b"[1]").is_ok());
    // Meilisearch's delete_documents_batch error snapshot.
    let e = parse_delete_ids(Some("application/json"), br#""doggo""#).unwrap_err();
    assert_eq!(e.code, "bad_request");
    assert_eq!(e.status, 400);
    assert_eq!(
        e.message,
        "Json deserialize error: invalid type: string \"doggo\", expected a sequence at line 1 column 7"
    );
    let e = parse_delete_ids(Some("application/json"), b"").unwrap_err();
    assert_eq!((e.status, e.code.as_str()), (400, "missing_payload"));
    assert_eq!(e.message, "A json payload is missing.");
    let e = parse_delete_ids(Some("application/json"), b"[1,").unwrap_err();
    assert_eq!(e.code, "malformed_payload");
    assert_eq!(
        e.message,
        "The json payload provided is malformed. `EOF while parsing a value at line 1 column 3`."
    );
    let e = parse_delete_ids(None, b"[1]").unwrap_err();
    assert_eq!((e.status, e.code.as_str()), (415, "missing_content_type"));
    assert_eq!(
        e.message,
        "A Content-Type header is missing. Accepted values for the Content-Type header are: `application/json`"
    );
    let e = parse_delete_ids(Some("text/csv; x=y"), b"[1]").unwrap_err();
    assert_eq!((e.status, e.code.as_str()), (415, "invalid_content_type"));
    assert_eq!(
        e.message,
        "The Content-Type `text/csv; x=y` is invalid. Accepted values for the Content-Type header are: `application/json`"
    );
}

fn id_strategy() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<u64>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        "[A-Za-z0-9_-]{1,24}".prop_map(Value::from),
        (0u64..50).prop_map(|n| Value::from(n.to_string())),
        (0u64..50).prop_map(Value::from),
    ]
}

fn topology_strategy() -> impl Strategy<Value = Topology> {
    (1u32..=2, 1u32..40).prop_flat_map(|(rf, shards)| {
        prop::collection::vec(rf..=rf + 3, 1..=3usize)
            .prop_map(move |groups| topology(shards, rf, &groups))
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn every_document_lands_on_exactly_its_owners(
        t in topology_strategy(),
        ids in prop::collection::vec(id_strategy(), 0..40),
    ) {
        let p = Placement::new(&t).unwrap();
        let docs: Vec<Document> = ids
            .iter()
            .enumerate()
            .map(|(i, id)| doc(json!({"id": id, "seq": i})))
            .collect();
        let plan = plan_batch(docs, "id", &p).unwrap();
        prop_assert_eq!(plan.received, ids.len());
        prop_assert_eq!(plan.shards.values().sum::<usize>(), ids.len());
        let copies = (t.replication_factor * t.replica_groups) as usize;
        // seq → nodes that received it
        let mut landed: BTreeMap<u64, Vec<NodeId>> = BTreeMap::new();
        for (node, batch) in &plan.per_node {
            let mut last_seq = None;
            for d in batch {
                let seq = d["seq"].as_u64().unwrap();
                // Payload order is kept inside each node batch.
                prop_assert!(last_seq < Some(seq));
                last_seq = Some(seq);
                let id = canonical_id(&d["id"]).unwrap();
                let shard = p.shard_for_key(&id);
                prop_assert_eq!(&d[SHARD_FIELD], &json!(shard));
                prop_assert!(p.write_targets(shard).contains(node));
                landed.entry(seq).or_default().push(node.clone());
            }
        }
        for seq in 0..ids.len() as u64 {
            let nodes = landed.remove(&seq).unwrap_or_default();
            prop_assert_eq!(nodes.len(), copies);
        }
    }

    #[test]
    fn integer_and_string_forms_land_together(t in topology_strategy(), n in any::<u64>()) {
        let p = Placement::new(&t).unwrap();
        let docs = vec![doc(json!({"id": n})), doc(json!({"id": n.to_string()}))];
        let plan = plan_batch(docs, "id", &p).unwrap();
        prop_assert_eq!(plan.shards.len(), 1);
        for batch in plan.per_node.values() {
            prop_assert_eq!(batch.len(), 2);
        }
        let del = plan_delete_ids(&[json!(n), json!(n.to_string())], &p);
        prop_assert_eq!(del.shards.len(), 1);
        let doc_nodes: Vec<_> = plan.per_node.keys().collect();
        let del_nodes: Vec<_> = del.per_node.keys().collect();
        prop_assert_eq!(doc_nodes, del_nodes);
    }

    #[test]
    fn parsing_never_panics(body in prop::collection::vec(any::<u8>(), 0..64), which in 0u8..3) {
        let format = match which {
            0 => PayloadFormat::Json,
            1 => PayloadFormat::Ndjson,
            _ => PayloadFormat::Csv { delimiter: b',' },
        };
        if let Err(e) = parse_documents(&body, format) {
            prop_assert!(e.status == 400 || e.status == 500);
        }
    }

    #[test]
    fn document_id_is_total(v in json_value(), key in prop_oneof![Just("a"), Just("a.b"), Just("a.b.a")]) {
        let m = match v {
            Value::Object(m) => m,
            other => doc(json!({ "a": other })),
        };
        match document_id(&m, key) {
            Ok(id) => prop_assert!(is_valid_id_str(&id) || id.parse::<i128>().is_ok(), "{}", id),
            Err(e) => prop_assert!(
                e.code == "missing_document_id" || e.code == "invalid_document_id",
                "{}", e.code
            ),
        }
    }
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        "[a-z._ -]{0,6}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
            prop::collection::vec(("[ab.]{1,3}", inner), 0..4)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}
