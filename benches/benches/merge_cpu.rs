//! The `merge` bench's text-merge rows timed in CPU time of the running thread (Linux
//! `/proc/thread-self/schedstat`) instead of wall time, so that figures taken on a loaded machine stay
//! comparable: each row runs batches of about 0.3 s and prints the median and the minimum CPU time per
//! search over the batches.
//!
//! Run: `cargo bench -p miroir-benches --bench merge_cpu [-- <substring>…]`.

use miroir_benches::{
    client_search, client_search_variant, merge_text_reply, proxy_cpu_answers, shard_answer, Gen,
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

/// Median and minimum CPU ns per call of `f` over `batches` batches of about 0.3 s.
fn measure(mut f: impl FnMut(), batches: usize) -> Option<(f64, f64)> {
    let start = cpu_ns()?;
    let mut calls = 0u64;
    while cpu_ns()? - start < 100_000_000 {
        f();
        calls += 1;
    }
    let per_batch = (calls * 3).max(1);
    let mut samples = Vec::with_capacity(batches);
    for _ in 0..batches {
        let t0 = cpu_ns()?;
        for _ in 0..per_batch {
            f();
        }
        samples.push((cpu_ns()? - t0) as f64 / per_batch as f64);
    }
    samples.sort_by(f64::total_cmp);
    Some((samples[samples.len() / 2], samples[0]))
}

fn show(name: &str, filters: &[String], f: impl FnMut()) {
    if !filters.is_empty() && !filters.iter().any(|x| name.contains(x.as_str())) {
        return;
    }
    match measure(f, 7) {
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
        show(&format!("text_parse/{name}"), &filters, || {
            black_box(merge_search_text(&plan, locate(&texts), None).expect("merge"));
        });
        show(&format!("text/{name}"), &filters, || {
            black_box(merge_search_text(&plan, located.clone(), None).expect("merge"));
        });
        show(&format!("parse_only/{name}"), &filters, || {
            for (order, t) in texts.iter().enumerate() {
                black_box(RawAnswer::parse(order, t.clone()));
            }
        });
        // What the `text/` row spends before the merge: cloning the located answers it merges.
        show(&format!("located_clone_only/{name}"), &filters, || {
            black_box(located.clone());
        });
        show(&format!("clone_only/{name}"), &filters, || {
            for t in &texts {
                black_box(t.clone());
            }
        });
    }
    let texts = proxy_cpu_answers();
    let client = client_search(20, false);
    let ctx = SearchContext::default();
    show("proxy_cpu/3x20x1KB/merge_text", &filters, || {
        black_box(merge_text_reply(&client, &ctx, &texts));
    });
}
