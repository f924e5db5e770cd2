//! Criterion benches of miroir-core's hot paths. Each prints its throughput (criterion's `thrpt` line):
//! - `routing/shard_for_key/S=<S>`: hashing document ids to shards (elements/s = keys/s);
//! - `routing/placement/<nodes>n_S<S>_RF<rf>`: building the rendezvous placement of a topology;
//! - `batch_plan/10k`: validating, routing and splitting a batch of 10,000 documents (elements/s = documents/s);
//! - `task_aggregate/<nodes>`: aggregating the node tasks of one Miroir task (elements/s = node tasks/s);
//! - `search_merge/<shards>x<hits>[+facets]`: merging `shards` node answers of `hits` hits each (elements/s =
//!   hits merged per second);
//!
//! Run: `cargo bench -p miroir-benches --bench core`.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use miroir_benches::{client_search, documents, ids, shard_answer, topology, Gen};
use miroir_core::documents::plan_batch;
use miroir_core::routing::{shard_for_key, Placement};
use miroir_core::search::{merge_search, plan_search, NodeAnswer, SearchContext};
use std::hint::black_box;

fn search_merge(c: &mut Criterion) {
    let mut group = c.benchmark_group("search_merge");
    for (shards, hits, facets) in [
        (3u32, 20usize, false),
        (3, 1000, false),
        (3, 1000, true),
        (12, 20, true),
        (12, 1000, true),
    ] {
        let mut gen = Gen::new(7);
        let answers: Vec<_> = (0..shards)
            .map(|s| shard_answer(s, hits, facets, &mut gen))
            .collect();
        let plan = plan_search(&client_search(hits, facets), &SearchContext::default())
            .expect("a valid search");
        let name = format!("{shards}x{hits}{}", if facets { "+facets" } else { "" });
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

criterion_group!(benches, routing, batch_plan, task_aggregate, search_merge);
criterion_main!(benches);
