//! Shard restriction filters: how a node is told to answer only for the shards it was assigned.
//!
//! A node may hold more shards than the covering set assigns to it for one query (replicas of shards another
//! node serves). The restriction is expressed as a Meilisearch filter on [`SHARD_FIELD`](crate::SHARD_FIELD)
//! and AND-ed into the client's filter.
//!
//! States: none, these are pure functions (restriction → filter text, client filter + extra → filter).
//!
//! Invariants:
//! - The expression built by [`shard_filter`] matches exactly the documents of `assigned ∩ held` among the
//!   documents the node holds (every stored document carries `_miroir_shard`, and the node holds nothing
//!   outside `held`).
//! - [`and_filter`] never changes the meaning of the client's filter, and never changes the text a node
//!   parses for it, so a syntax error in the client's filter comes back from the node byte for byte.

use serde_json::Value;

use crate::SHARD_FIELD;

/// Which shards a node answers for in one query.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ShardRestriction {
    /// The shards the covering set assigns to this node for this query.
    pub assigned: Vec<u32>,
    /// Every shard the node currently holds.
    pub held: Vec<u32>,
}

/// One candidate expression and its cost.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Candidate {
    cost: usize,
    /// Lower wins on equal cost: ranges (0) before `IN` (1) before `NOT IN` (2).
    preference: u8,
    expr: String,
}

fn sorted_unique(values: &[u32]) -> Vec<u32> {
    let mut v = values.to_vec();
    v.sort_unstable();
    v.dedup();
    v
}

fn in_list(values: &[u32]) -> String {
    if let [only] = values {
        return format!("{SHARD_FIELD} = {only}");
    }
    let list = values
        .iter()
        .map(|v| v.to_string())
        .collect::<Vec<_>>()
        .join(", ");
    format!("{SHARD_FIELD} IN [{list}]")
}

/// The cheapest filter restricting a node to the `assigned` shards among those it `held`s, or `None` when no
/// restriction is needed (every held shard is assigned).
///
/// Three equivalent forms are considered, and the one with the lowest cost wins:
/// - `_miroir_shard IN [a, b, …]` (or `= a`): cost = number of values;
/// - contiguous runs OR-ed, `_miroir_shard a TO b OR _miroir_shard = c …`: cost = number of runs. A run is
///   contiguous in the node's *held* shards, so it may jump over shard numbers the node does not hold;
/// - `NOT _miroir_shard IN [held − assigned]` (or `_miroir_shard != x`): cost = number of excluded values.
///
/// Ranges are only offered when at least one run spans several shards (otherwise they are the `IN` list).
/// On equal cost, ranges are preferred, then `IN`, then `NOT IN` (range lookups were measured cheaper than
/// `IN` lookups on Meilisearch; a negation costs a set difference on top of its lookups, so it only wins
/// when it excludes strictly fewer values, which is when a node is asked for most of what it holds). When the node holds none of its assigned shards the filter matches nothing
/// (`NOT _miroir_shard EXISTS`): every stored document carries the field.
pub fn shard_filter(assigned: &[u32], held: &[u32]) -> Option<String> {
    let held = sorted_unique(held);
    let assigned = sorted_unique(assigned);
    let wanted: Vec<u32> = held
        .iter()
        .copied()
        .filter(|s| assigned.binary_search(s).is_ok())
        .collect();
    if wanted.len() == held.len() {
        return None;
    }
    if wanted.is_empty() {
        return Some(format!("NOT {SHARD_FIELD} EXISTS"));
    }
    let excluded: Vec<u32> = held
        .iter()
        .copied()
        .filter(|s| wanted.binary_search(s).is_err())
        .collect();

    // Runs of consecutive held shards that are all wanted.
    let mut runs: Vec<(u32, u32)> = Vec::new();
    let mut current: Option<(u32, u32)> = None;
    for s in &held {
        if wanted.binary_search(s).is_ok() {
            current = Some(match current {
                Some((start, _)) => (start, *s),
                None => (*s, *s),
            });
        } else if let Some(run) = current.take() {
            runs.push(run);
        }
    }
    if let Some(run) = current {
        runs.push(run);
    }
    let ranges = runs
        .iter()
        .map(|&(a, b)| {
            if a == b {
                format!("{SHARD_FIELD} = {a}")
            } else {
                format!("{SHARD_FIELD} {a} TO {b}")
            }
        })
        .collect::<Vec<_>>()
        .join(" OR ");
    let not_in = if let [only] = excluded.as_slice() {
        format!("{SHARD_FIELD} != {only}")
    } else {
        format!("NOT {}", in_list(&excluded))
    };

    // Runs that are all single values are the `IN` list written longer: only offer ranges when one run
    // spans several shards.
    let has_range = runs.iter().any(|(a, b)| a != b);
    let candidates = [
        Candidate {
            cost: if has_range { runs.len() } else { usize::MAX },
            preference: 0,
            expr: ranges,
        },
        Candidate {
            cost: excluded.len(),
            preference: 2,
            expr: not_in,
        },
        Candidate {
            cost: wanted.len(),
            preference: 1,
            expr: in_list(&wanted),
        },
    ];
    candidates
        .into_iter()
        .min_by_key(|c| (c.cost, c.preference))
        .map(|c| c.expr)
}

/// AND-s `extra` into a client filter, for both forms Meilisearch accepts.
///
/// - absent, `null` or a blank string: `extra` alone;
/// - a string `s`: the array `[s, extra]`. Array elements are AND-ed by Meilisearch, so this means
///   `(s) AND extra`, and the node parses `s` exactly as the client wrote it, so a syntax error in it comes
///   back with the same message and positions as from a single node;
/// - an array: `extra` is appended as one more AND-ed element (inner arrays keep their OR meaning);
/// - any other value is returned unchanged: it is invalid, and the node's error about it is relayed.
pub fn and_filter(client: Option<&Value>, extra: &str) -> Value {
    match client {
        None | Some(Value::Null) => Value::String(extra.to_string()),
        Some(Value::String(s)) if s.trim().is_empty() => Value::String(extra.to_string()),
        Some(Value::String(s)) => Value::Array(vec![
            Value::String(s.clone()),
            Value::String(extra.to_string()),
        ]),
        Some(Value::Array(items)) => {
            let mut items = items.clone();
            items.push(Value::String(extra.to_string()));
            Value::Array(items)
        }
        Some(other) => other.clone(),
    }
}
