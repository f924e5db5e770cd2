//! Criterion benches of miroir-core's hot paths. Each prints its throughput (criterion's `thrpt` line):
//! - `search_merge/<shards>x<hits>[+facets]`: merging `shards` node answers of `hits` hits each (elements/s =
//!   hits merged per second);
//!
//! Run: `cargo bench -p miroir-benches --bench core`.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use miroir_benches::{client_search, shard_answer, Gen};
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

criterion_group!(benches, search_merge);
criterion_main!(benches);
