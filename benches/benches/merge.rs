//! Criterion benches of the search merge and of the proxy's CPU per search. Each prints its throughput.
//!
//! - `search_merge_value/<S>x<hits>[+facets|+sort|+distinct]`: [`merge_search`] on parsed answers
//!   (`serde_json::Value`, parsing not measured), the pre-text-merge API;
//! - `search_merge_text/<…>`: [`merge_search_text`] on answers already located ([`RawAnswer::parse`] not
//!   measured), writing the reply's text;
//! - `search_merge_text_parse/<…>`: the same including [`RawAnswer::parse`] of every node's text;
//! - `proxy_cpu/3x20x1KB/<path>`: everything the proxy does for one search but the network, at 3 shards × 20
//!   hits of about 1 KB: `merge_value` = plan, node requests serialized, node texts parsed into values, merged,
//!   reply serialized (the old path); `merge_text` = the same with [`RawAnswer`] and [`merge_search_text`];
//!   `scatter_value` / `scatter_text` = the whole [`ScatterSearch`] (covering set, requests, answers fed,
//!   reply) with parsed or text answers.
//!
//! Run: `cargo bench -p miroir-benches --bench merge` (elements/s = hits received per second).

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use miroir_benches::{
    client_search, client_search_variant, locate_and_merge, merge_text_reply, proxy_cpu_answers,
    shard_answer, topology, Gen,
};
use miroir_core::config::UnavailableShardPolicy;
use miroir_core::ops::search::ScatterSearch;
use miroir_core::routing::Placement;
use miroir_core::search::{
    merge_search, merge_search_text, plan_search, NodeAnswer, RawAnswer, SearchContext,
};
use serde_json::Value;
use std::hint::black_box;

fn cases() -> Vec<(u32, usize, &'static str)> {
    let mut out = Vec::new();
    for shards in [3u32, 12] {
        for hits in [20usize, 1000] {
            for variant in ["", "facets", "sort", "distinct"] {
                out.push((shards, hits, variant));
            }
        }
    }
    out
}

fn search_merge(c: &mut Criterion) {
    for (shards, hits, variant) in cases() {
        let mut gen = Gen::new(7);
        let answers: Vec<Value> = (0..shards)
            .map(|s| shard_answer(s, hits, variant == "facets", &mut gen))
            .collect();
        let texts: Vec<String> = answers.iter().map(Value::to_string).collect();
        let client = client_search_variant(hits, variant);
        let plan = plan_search(&client, &SearchContext::default()).expect("a valid search");
        let name = if variant.is_empty() {
            format!("{shards}x{hits}")
        } else {
            format!("{shards}x{hits}+{variant}")
        };
        let elements = Throughput::Elements((shards as usize * hits) as u64);

        let mut group = c.benchmark_group("search_merge_value");
        group.throughput(elements.clone());
        group.bench_function(BenchmarkId::from_parameter(&name), |b| {
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
        group.finish();

        let located: Vec<RawAnswer> = texts
            .iter()
            .enumerate()
            .map(|(order, t)| RawAnswer::parse(order, t.clone()))
            .collect();
        let mut group = c.benchmark_group("search_merge_text");
        group.throughput(elements.clone());
        group.bench_function(BenchmarkId::from_parameter(&name), |b| {
            b.iter_batched(
                || located.clone(),
                |answers| black_box(merge_search_text(&plan, answers, None).expect("merge")),
                criterion::BatchSize::LargeInput,
            )
        });
        group.finish();

        let mut group = c.benchmark_group("search_merge_text_parse");
        group.throughput(elements);
        group.bench_function(BenchmarkId::from_parameter(&name), |b| {
            b.iter_batched(
                || texts.clone(),
                |texts| black_box(locate_and_merge(&plan, texts)),
                criterion::BatchSize::LargeInput,
            )
        });
        group.finish();
    }
}

/// Drives one [`ScatterSearch`] over `placement` to its reply, answering node `i` with `texts[i]`; returns
/// the reply's bytes.
fn scatter(placement: &Placement, texts: &[String], as_text: bool) -> Vec<u8> {
    let client = client_search(20, false);
    let mut search = ScatterSearch::new(
        "bench",
        &client,
        &SearchContext::default(),
        placement,
        &|_| true,
        0,
        0,
        UnavailableShardPolicy::Error,
    )
    .expect("a valid search");
    for r in search.take_requests() {
        let sent = serde_json::to_vec(&r.body).expect("a request body");
        black_box(sent);
        let node: usize = r
            .node
            .as_str()
            .trim_start_matches("meili-")
            .parse()
            .unwrap_or(0);
        let text = texts[node % texts.len()].clone();
        if as_text {
            search.on_response_text(r.id, 200, text);
        } else {
            let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            search.on_response(r.id, 200, body);
        }
    }
    if as_text {
        search
            .reply_text()
            .expect("a reply")
            .body
            .as_bytes()
            .to_vec()
    } else {
        serde_json::to_vec(&search.reply().expect("a reply").body).expect("a reply body")
    }
}

fn proxy_cpu(c: &mut Criterion) {
    let texts = proxy_cpu_answers();
    let client = client_search(20, false);
    let ctx = SearchContext::default();
    let mut group = c.benchmark_group("proxy_cpu/3x20x1KB");
    group.throughput(Throughput::Elements(60));
    group.bench_function("merge_value", |b| {
        b.iter(|| {
            let plan = plan_search(&client, &ctx).expect("a valid search");
            let answers = texts
                .iter()
                .enumerate()
                .map(|(order, t)| {
                    black_box(serde_json::to_vec(&plan.node_request(None)).expect("a request"));
                    NodeAnswer {
                        order,
                        body: serde_json::from_str(t).unwrap_or(Value::Null),
                    }
                })
                .collect();
            let merged = merge_search(&plan, answers).expect("merge");
            black_box(serde_json::to_vec(&merged).expect("a reply"))
        })
    });
    group.bench_function("merge_text", |b| {
        b.iter(|| black_box(merge_text_reply(&client, &ctx, &texts)))
    });
    let placement = Placement::new(&topology(3, 3, 1)).expect("a valid topology");
    for (name, as_text) in [("scatter_value", false), ("scatter_text", true)] {
        group.bench_function(name, |b| {
            b.iter(|| black_box(scatter(&placement, &texts, as_text)))
        });
    }
    group.finish();
}

criterion_group!(benches, search_merge, proxy_cpu);
criterion_main!(benches);
