//! The `_miroir_shard` restriction in its cheapest form selects exactly the assigned shards among those a
//! node holds, whatever form (none, ranges, `IN`, `NOT IN`) the cost model picks. The emitted filter is
//! evaluated by a tiny evaluator of the forms it uses.

use miroir_core::search::shard_filter;
use proptest::prelude::*;
use std::collections::BTreeSet;

/// Evaluates one emitted restriction on a document of shard `s`.
fn matches(filter: &str, s: u32) -> bool {
    let f = "_miroir_shard";
    if filter == format!("NOT {f} EXISTS") {
        return false;
    }
    if let Some(list) = filter.strip_prefix(&format!("NOT {f} IN [")) {
        return !parse_list(list).contains(&s);
    }
    if let Some(v) = filter.strip_prefix(&format!("{f} != ")) {
        return v.parse::<u32>().ok() != Some(s);
    }
    if let Some(list) = filter.strip_prefix(&format!("{f} IN [")) {
        return parse_list(list).contains(&s);
    }
    filter.split(" OR ").any(|term| {
        let rest = term.strip_prefix(f).expect("a shard term").trim();
        if let Some(v) = rest.strip_prefix("= ") {
            v.parse::<u32>().ok() == Some(s)
        } else {
            let (a, b) = rest.split_once(" TO ").expect("a range");
            (a.parse::<u32>().unwrap()..=b.parse::<u32>().unwrap()).contains(&s)
        }
    })
}

fn parse_list(list: &str) -> Vec<u32> {
    list.trim_end_matches(']')
        .split(", ")
        .map(|v| v.parse().unwrap())
        .collect()
}

/// Number of terms of an emitted filter (the cost the model minimises).
fn terms(filter: &str) -> usize {
    if let Some(i) = filter.find('[') {
        return filter[i..].split(',').count();
    }
    filter.split(" OR ").count()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn every_form_selects_exactly_the_assigned_held_shards(
        held in prop::collection::btree_set(0u32..64, 1..64),
        assigned in prop::collection::btree_set(0u32..64, 0..64),
    ) {
        let held_v: Vec<u32> = held.iter().copied().collect();
        let assigned_v: Vec<u32> = assigned.iter().copied().collect();
        let want: BTreeSet<u32> = held.intersection(&assigned).copied().collect();
        match shard_filter(&assigned_v, &held_v) {
            None => prop_assert_eq!(&want, &held, "no filter only when every held shard is assigned"),
            Some(f) => {
                let got: BTreeSet<u32> = held.iter().copied().filter(|s| matches(&f, *s)).collect();
                prop_assert_eq!(&got, &want, "filter {}", f);
                // never more terms than the plain IN list or its complement
                let excluded = held.len() - want.len();
                if !want.is_empty() {
                    prop_assert!(terms(&f) <= want.len().min(excluded).max(1), "{} costs {}", f, terms(&f));
                }
            }
        }
    }
}

#[test]
fn the_issue_shapes() {
    let held: Vec<u32> = (0..64).collect();
    // a node asked for all but 6 of its shards: the complement
    let assigned: Vec<u32> = (6..64).collect();
    assert_eq!(
        shard_filter(&assigned, &held).as_deref(),
        Some("_miroir_shard 6 TO 63")
    );
    let mut gaps: Vec<u32> = (0..64).collect();
    gaps.retain(|s| ![3, 10, 20, 30, 40, 50].contains(s));
    assert_eq!(
        shard_filter(&gaps, &held).as_deref(),
        Some("NOT _miroir_shard IN [3, 10, 20, 30, 40, 50]")
    );
    assert_eq!(shard_filter(&held, &held), None);
    let sparse: Vec<u32> = (0..64).step_by(8).collect();
    assert_eq!(
        shard_filter(&sparse, &held).as_deref(),
        Some("_miroir_shard IN [0, 8, 16, 24, 32, 40, 48, 56]")
    );
}
