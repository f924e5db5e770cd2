//! Criterion benches of miroir-core's hot paths. Each prints its throughput (criterion's `thrpt` line):
//! - `routing/shard_for_key/S=<S>`: hashing document ids to shards (elements/s = keys/s);
//! - `routing/placement/<nodes>n_S<S>_RF<rf>`: building the rendezvous placement of a topology;
//! - `batch_plan/10k`: validating, routing and splitting a batch of 10,000 documents (elements/s = documents/s);
//! - `task_aggregate/<nodes>`: aggregating the node tasks of one Miroir task (elements/s = node tasks/s);
//! - `search_merge/<shards>x<hits>[+facets|+sort|+distinct]`: merging `shards` node answers of `hits` hits
//!   each (elements/s = hits merged per second), with facet distributions, a `sort`, or `distinct`;
//!   parsed answers; the `merge` bench (`benches/merge.rs`) compares it with the text merge and measures
//!   the proxy's CPU per search;
//! - `shard_filter/<form>`: emitting the cheapest `_miroir_shard` restriction of a node holding 64 shards;
//! - `shard_filter_model/<form>`: one search of the node model (5,000 documents over 64 shards) with each
//!   restriction form, to compare the forms' cost on a node;
//! - `pk_narrowing/<filter>`: finding the shards a primary-key filter pins;
//! - `select/<what>`: the replica selector (ranking 12 nodes, recording an answer, a hedging policy) and
//!   planning a covering read with a ranking and hedging (S=64, 6 nodes, RF=2);
//!
//! Run: `cargo bench -p miroir-benches --bench core`.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use miroir_benches::{
    client_search, client_search_variant, documents, ids, shard_answer, topology, Gen,
};
use miroir_core::documents::plan_batch;
use miroir_core::routing::{shard_for_key, Placement};
use miroir_core::search::{merge_search, plan_search, NodeAnswer, SearchContext};
use std::hint::black_box;

fn search_merge(c: &mut Criterion) {
    let mut group = c.benchmark_group("search_merge");
    for (shards, hits, variant) in [
        (3u32, 20usize, ""),
        (3, 1000, ""),
        (3, 1000, "facets"),
        (12, 20, ""),
        (12, 1000, ""),
        (12, 20, "facets"),
        (12, 1000, "facets"),
        (12, 20, "sort"),
        (12, 1000, "sort"),
        (12, 20, "distinct"),
        (12, 1000, "distinct"),
    ] {
        let facets = variant == "facets";
        let mut gen = Gen::new(7);
        let answers: Vec<_> = (0..shards)
            .map(|s| shard_answer(s, hits, facets, &mut gen))
            .collect();
        let client = client_search_variant(hits, variant);
        let plan = plan_search(&client, &SearchContext::default()).expect("a valid search");
        let name = if variant.is_empty() {
            format!("{shards}x{hits}")
        } else {
            format!("{shards}x{hits}+{variant}")
        };
        group.throughput(Throughput::Elements((shards as usize * hits) as u64));
        group.bench_with_input(BenchmarkId::from_parameter(name), &answers, |b, answers| {
            b.iter_batched(
                || {
                    answers
                        .iter()
                        .enumerate()
                        .map(|(order, body)| NodeAnswer {
                            order,
                            body: body.clone(),
                        })
                        .collect::<Vec<_>>()
                },
                |answers| black_box(merge_search(&plan, answers).expect("merge")),
                criterion::BatchSize::LargeInput,
            )
        });
    }
    group.finish();
}

fn routing(c: &mut Criterion) {
    let mut group = c.benchmark_group("routing");
    let keys = ids(10_000);
    for shards in [64u32, 1024] {
        group.throughput(Throughput::Elements(keys.len() as u64));
        group.bench_with_input(
            BenchmarkId::new("shard_for_key", format!("S={shards}")),
            &keys,
            |b, keys| {
                b.iter(|| {
                    let mut acc = 0u64;
                    for k in keys {
                        acc = acc.wrapping_add(shard_for_key(black_box(k), shards) as u64);
                    }
                    acc
                })
            },
        );
    }
    for (nodes, shards, rf) in [(6usize, 64u32, 2u32), (24, 256, 3)] {
        let topo = topology(nodes, shards, rf);
        group.throughput(Throughput::Elements(shards as u64));
        group.bench_function(
            BenchmarkId::new("placement", format!("{nodes}n_S{shards}_RF{rf}")),
            |b| b.iter(|| Placement::new(black_box(&topo)).expect("valid topology")),
        );
    }
    group.finish();
}

fn batch_plan(c: &mut Criterion) {
    let mut group = c.benchmark_group("batch_plan");
    let placement = Placement::new(&topology(6, 64, 2)).expect("valid topology");
    let docs = documents(10_000, &mut Gen::new(3));
    group.throughput(Throughput::Elements(docs.len() as u64));
    group.bench_function("10k", |b| {
        b.iter_batched(
            || docs.clone(),
            |docs| black_box(plan_batch(docs, "id", &placement).expect("valid batch")),
            criterion::BatchSize::LargeInput,
        )
    });
    group.finish();
}

fn task_aggregate(c: &mut Criterion) {
    use miroir_core::ops::write::shard_owners;
    use miroir_core::quorum::WriteQuorum;
    use miroir_core::tasks::{aggregate, node_task_refs, MiroirTask, NodeTaskView, TaskType};
    use std::collections::BTreeMap;
    let mut group = c.benchmark_group("task_aggregate");
    for nodes in [3usize, 12] {
        let placement = Placement::new(&topology(nodes, 64, 2)).expect("valid topology");
        let owners = shard_owners(&placement, 0..64);
        let mut task = MiroirTask::new(
            1,
            Some("movies".into()),
            TaskType::DocumentAdditionOrUpdate,
            1_000,
            None,
        );
        task.node_tasks = node_task_refs(&owners, |n| Some(n.as_str().len() as u64));
        task.placement = owners;
        task.quorum = WriteQuorum::Majority;
        let views: BTreeMap<_, _> = task
            .node_tasks
            .iter()
            .map(|r| {
                let v = serde_json::json!({"status": "succeeded", "details": {"receivedDocuments": 100, "indexedDocuments": 100},
                    "startedAt": "2026-11-27T09:16:21.3Z", "finishedAt": "2026-11-27T09:16:21.4Z", "error": null});
                ((r.node.clone(), r.task_uid.unwrap_or(0)), NodeTaskView::from_json(&v))
            })
            .collect();
        group.throughput(Throughput::Elements(nodes as u64));
        group.bench_function(BenchmarkId::from_parameter(nodes), |b| {
            b.iter(|| black_box(aggregate(&task, &views, 5_000, 60_000)))
        });
    }
    group.finish();
}

/// The four restriction shapes of the issue, for a node holding shards 0..64: (name, assigned shards).
fn restriction_forms() -> Vec<(&'static str, Vec<u32>)> {
    let mut gaps: Vec<u32> = (0..64).collect();
    gaps.retain(|s| ![3, 10, 20, 30, 40, 50].contains(s));
    vec![
        ("none", (0..64).collect()),
        ("in_58", (0..64).filter(|s| s % 11 != 5).collect()),
        ("range_6_to_63", (6..64).collect()),
        ("not_in_6", gaps),
    ]
}

fn shard_filters(c: &mut Criterion) {
    use miroir_core::search::shard_filter;
    let mut group = c.benchmark_group("shard_filter");
    let held: Vec<u32> = (0..64).collect();
    for (name, assigned) in restriction_forms() {
        group.bench_function(name, |b| {
            b.iter(|| black_box(shard_filter(black_box(&assigned), &held)))
        });
    }
    group.finish();

    // The same forms evaluated by the node model (a search over 5,000 documents of 64 shards).
    use miroir_sim::model::{Method, Node, Request};
    let key = "bench";
    let mut node = Node::new(Some(key));
    let send = |node: &mut Node, method: Method, path: &str, body: serde_json::Value| {
        node.handle(
            Request::new(method, path)
                .bearer(key)
                .with_body("application/json", body.to_string().into_bytes()),
            0,
        )
    };
    send(
        &mut node,
        Method::Post,
        "/indexes",
        serde_json::json!({"uid": "m", "primaryKey": "id"}),
    );
    send(
        &mut node,
        Method::Patch,
        "/indexes/m/settings",
        serde_json::json!({"filterableAttributes": ["_miroir_shard", "genre"]}),
    );
    let docs: Vec<serde_json::Value> = documents(5_000, &mut Gen::new(5))
        .into_iter()
        .enumerate()
        .map(|(i, mut d)| {
            d.insert("_miroir_shard".into(), serde_json::json!(i % 64));
            serde_json::Value::Object(d)
        })
        .collect();
    send(
        &mut node,
        Method::Post,
        "/indexes/m/documents",
        serde_json::Value::Array(docs),
    );
    while node.process_next(0).is_some() {}
    let mut group = c.benchmark_group("shard_filter_model");
    for (name, assigned) in restriction_forms() {
        let mut body = serde_json::json!({"q": "", "limit": 20});
        if let Some(f) = shard_filter(&assigned, &held) {
            body["filter"] = serde_json::Value::String(f);
        }
        let hits = send(&mut node, Method::Post, "/indexes/m/search", body.clone());
        assert_eq!(hits.status, 200, "{}", hits.body);
        group.bench_function(name, |b| {
            b.iter(|| {
                black_box(send(
                    &mut node,
                    Method::Post,
                    "/indexes/m/search",
                    body.clone(),
                ))
            })
        });
    }
    group.finish();
}

fn pk_narrowing(c: &mut Criterion) {
    use miroir_core::search::pinned_shards;
    let mut group = c.benchmark_group("pk_narrowing");
    for (name, filter) in [
        ("eq", serde_json::json!("id = 12345")),
        (
            "in_10_and",
            serde_json::json!("genre = drama AND id IN [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]"),
        ),
        ("unpinned_or", serde_json::json!("id = 1 OR genre = drama")),
        (
            "array",
            serde_json::json!(["year > 2000", ["id = a1", "id = b2"]]),
        ),
    ] {
        group.bench_function(name, |b| {
            b.iter(|| black_box(pinned_shards(Some(black_box(&filter)), "id", 64)))
        });
    }
    group.finish();
}

fn select(c: &mut Criterion) {
    use miroir_core::ops::cover::{CoverOptions, CoverRead};
    use miroir_core::select::{Selector, Strategy};
    use miroir_core::topology::NodeId;
    let mut group = c.benchmark_group("select");
    let nodes: Vec<NodeId> = (0..12).map(|i| NodeId::new(format!("meili-{i}"))).collect();
    let mut s = Selector::new(Strategy::Adaptive, 0.05, 1);
    for (i, n) in nodes.iter().enumerate() {
        for k in 0..64u64 {
            s.on_answer(n, 5 + (i as u64 * 7 + k) % 13, true);
        }
    }
    group.bench_function("ranking_12", |b| b.iter(|| black_box(s.ranking(&nodes))));
    group.bench_function("on_answer", |b| {
        b.iter(|| {
            s.on_sent(&nodes[3]);
            s.on_answer(black_box(&nodes[3]), 9, true)
        })
    });
    group.bench_function("hedge_policy_12", |b| {
        b.iter(|| black_box(s.hedge_policy(&nodes, 1.5, 50, 2)))
    });
    let placement = Placement::new(&topology(6, 64, 2)).expect("valid topology");
    let six: Vec<NodeId> = (0..6).map(|i| NodeId::new(format!("meili-{i}"))).collect();
    let body = client_search(20, false);
    group.bench_function("cover_plan_S64_6n", |b| {
        b.iter(|| {
            let options = CoverOptions {
                ranking: s.ranking(&six),
                hedge: Some(s.hedge_policy(&six, 1.5, 50, 2)),
                ..CoverOptions::default()
            };
            let mut read = CoverRead::with_options(
                "/indexes/m/search".into(),
                body.clone(),
                &placement,
                &|_| true,
                options,
            );
            black_box(read.take_requests_at(0))
        })
    });
    group.finish();
}

criterion_group!(
    benches,
    routing,
    batch_plan,
    task_aggregate,
    search_merge,
    shard_filters,
    pk_narrowing,
    select
);
criterion_main!(benches);
