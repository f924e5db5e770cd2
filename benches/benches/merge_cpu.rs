//! The `merge` bench's text-merge rows timed in CPU time of the running thread (Linux
//! `/proc/thread-self/schedstat`) instead of wall time, so that figures taken on a loaded machine stay
//! comparable: each row runs batches of about 0.3 s and prints the median and the minimum CPU time per
//! search over the batches. The nodes' texts a row consumes are copied outside the timed part (the proxy
//! receives them; it does not copy them): `clone_only` shows what that copy costs.
//!
//! Run: `cargo bench -p miroir-benches --bench merge_cpu [-- <substring>…]`.

use miroir_benches::{
    client_search, client_search_variant, locate_and_merge, merge_text_reply, proxy_cpu_answers,
    shard_answer, Gen,
};
use miroir_core::search::{merge_search_text, plan_search, RawAnswer, SearchContext, SearchPlan};
use std::hint::black_box;

/// CPU time of this thread in ns (`None` when the kernel does not say).
fn cpu_ns() -> Option<u64> {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Median and minimum CPU ns per call of `f` over `batches` batches of about 0.3 s. Each call gets an
/// input made by `input` outside the timed part (in groups of 8), so that what is timed is `f` alone.
fn measure<I>(
    mut input: impl FnMut() -> I,
    mut f: impl FnMut(I),
    batches: usize,
) -> Option<(f64, f64)> {
    let mut timed = |calls: &mut u64| -> Option<u64> {
        let inputs: Vec<I> = (0..8).map(|_| input()).collect();
        let t0 = cpu_ns()?;
        for i in inputs {
            f(i);
        }
        *calls += 8;
        Some(cpu_ns()? - t0)
    };
    let mut warm = 0;
    let mut spent = 0;
    while spent < 100_000_000 {
        spent += timed(&mut warm)?;
    }
    let mut samples = Vec::with_capacity(batches);
    for _ in 0..batches {
        let (mut calls, mut ns) = (0u64, 0u64);
        while ns < 300_000_000 {
            ns += timed(&mut calls)?;
        }
        samples.push(ns as f64 / calls as f64);
    }
    samples.sort_by(f64::total_cmp);
    Some((samples[samples.len() / 2], samples[0]))
}

fn show<I>(name: &str, filters: &[String], input: impl FnMut() -> I, f: impl FnMut(I)) {
    if !filters.is_empty() && !filters.iter().any(|x| name.contains(x.as_str())) {
        return;
    }
    match measure(input, f, 7) {
        Some((median, min)) => println!(
            "{name:<40} median {:>10.1} µs   min {:>10.1} µs",
            median / 1000.0,
            min / 1000.0
        ),
        None => println!("{name:<40} no CPU clock"),
    }
}

/// The nodes' answers located, in node order.
fn locate(texts: &[String]) -> Vec<RawAnswer> {
    texts
        .iter()
        .enumerate()
        .map(|(order, t)| RawAnswer::parse(order, t.clone()))
        .collect()
}

fn plan_for(hits: usize, variant: &str) -> SearchPlan {
    let client = client_search_variant(hits, variant);
    plan_search(&client, &SearchContext::default()).expect("a valid search")
}

fn main() {
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let rows = [
        (3u32, 20usize, ""),
        (3, 1000, ""),
        (3, 1000, "facets"),
        (3, 1000, "distinct"),
        (12, 1000, "facets"),
    ];
    for (shards, hits, variant) in rows {
        let mut gen = Gen::new(7);
        let texts: Vec<String> = (0..shards)
            .map(|s| shard_answer(s, hits, variant == "facets", &mut gen).to_string())
            .collect();
        let plan = plan_for(hits, variant);
        let name = if variant.is_empty() {
            format!("{shards}x{hits}")
        } else {
            format!("{shards}x{hits}+{variant}")
        };
        let located = locate(&texts);
        show(
            &format!("text_parse/{name}"),
            &filters,
            || texts.clone(),
            |texts| {
                black_box(locate_and_merge(&plan, texts));
            },
        );
        show(
            &format!("text/{name}"),
            &filters,
            || located.clone(),
            |answers| {
                black_box(merge_search_text(&plan, answers, None).expect("merge"));
            },
        );
        show(
            &format!("parse_only/{name}"),
            &filters,
            || texts.clone(),
            |texts| {
                for (order, t) in texts.into_iter().enumerate() {
                    black_box(RawAnswer::parse(order, t));
                }
            },
        );
        // What the rows above leave out of the timing: copying the nodes' texts.
        show(
            &format!("clone_only/{name}"),
            &filters,
            || (),
            |()| {
                black_box(texts.clone());
            },
        );
    }
    let texts = proxy_cpu_answers();
    let client = client_search(20, false);
    let ctx = SearchContext::default();
    show(
        "proxy_cpu/3x20x1KB/merge_text",
        &filters,
        || (),
        |()| {
            black_box(merge_text_reply(&client, &ctx, &texts));
        },
    );
}
