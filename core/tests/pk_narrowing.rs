//! Primary-key narrowing against a brute-force oracle: for random documents and random filters mixing
//! primary-key pins, other conditions, AND, OR, NOT, parentheses and the array form, the documents a
//! full fan-out finds are exactly those found on the narrowed shards alone.
//!
//! The oracle evaluates the filter the way Meilisearch compares ids, made as permissive as the doubt
//! allows: a document matches `id = v` when its id equals `v` after trimming and lowercasing, or when
//! `v` is a number equal to its integer id. Narrowing must be sound against this superset.

use miroir_core::routing::{canonical_id, shard_for_key};
use miroir_core::search::pinned_shards;
use proptest::prelude::*;
use serde_json::{json, Value};

#[derive(Debug, Clone)]
enum F {
    IdEq(String),
    IdIn(Vec<String>),
    IdNe(String),
    G(u8),
    Not(Box<F>),
    And(Box<F>, Box<F>),
    Or(Box<F>, Box<F>),
}

const VALUES: &[&str] = &[
    "5", "05", "5.0", "7", "a", "A", "ab", "AB", "x-1", "X_2", " 7 ", "1e1", "a b", "12", "-3",
    "id9", "Id9", "0", "-0", "10",
];

fn value() -> impl Strategy<Value = String> {
    prop::sample::select(VALUES).prop_map(str::to_string)
}

fn filter() -> impl Strategy<Value = F> {
    let leaf = prop_oneof![
        3 => value().prop_map(F::IdEq),
        2 => prop::collection::vec(value(), 0..4).prop_map(F::IdIn),
        1 => value().prop_map(F::IdNe),
        2 => (0u8..3).prop_map(F::G),
    ];
    leaf.prop_recursive(3, 12, 2, |inner| {
        prop_oneof![
            1 => inner.clone().prop_map(|f| F::Not(Box::new(f))),
            3 => (inner.clone(), inner.clone()).prop_map(|(a, b)| F::And(Box::new(a), Box::new(b))),
            2 => (inner.clone(), inner).prop_map(|(a, b)| F::Or(Box::new(a), Box::new(b))),
        ]
    })
}

fn quote(v: &str, style: usize) -> String {
    match style % 3 {
        0 if !v.contains(' ') => v.to_string(),
        1 => format!("'{v}'"),
        _ => format!("\"{v}\""),
    }
}

fn render(f: &F, style: usize) -> String {
    match f {
        F::IdEq(v) => format!("id = {}", quote(v, style)),
        F::IdIn(vs) => format!(
            "id IN [{}]",
            vs.iter()
                .enumerate()
                .map(|(i, v)| quote(v, style + i))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        F::IdNe(v) => format!("id != {}", quote(v, style)),
        F::G(g) => format!("g = {g}"),
        F::Not(x) => format!("NOT ({})", render(x, style + 1)),
        F::And(a, b) => format!("({}) AND ({})", render(a, style + 1), render(b, style + 2)),
        F::Or(a, b) => format!("({}) OR ({})", render(a, style + 1), render(b, style + 2)),
    }
}

/// The filter as Meilisearch accepts it: a string, or the array form of its top-level conjunction.
fn as_json(f: &F, style: usize) -> Value {
    if style % 2 == 1 {
        let mut conj = Vec::new();
        flatten_and(f, &mut conj);
        let items: Vec<Value> = conj
            .iter()
            .enumerate()
            .map(|(i, c)| match c {
                F::Or(a, b) if i % 2 == 0 => json!([render(a, style), render(b, style + 1)]),
                other => Value::String(render(other, style + i)),
            })
            .collect();
        return Value::Array(items);
    }
    Value::String(render(f, style))
}

fn flatten_and<'a>(f: &'a F, out: &mut Vec<&'a F>) {
    match f {
        F::And(a, b) => {
            flatten_and(a, out);
            flatten_and(b, out);
        }
        other => out.push(other),
    }
}

#[derive(Debug, Clone)]
struct Doc {
    id: Value,
    g: u8,
}

fn id_matches(doc: &Value, v: &str) -> bool {
    let norm = |s: &str| s.trim().to_lowercase();
    let canonical = canonical_id(doc).unwrap_or_default();
    if norm(&canonical) == norm(v) {
        return true;
    }
    match (doc.as_i64(), v.trim().parse::<f64>()) {
        (Some(i), Ok(x)) => i as f64 == x,
        _ => false,
    }
}

fn eval(f: &F, d: &Doc) -> bool {
    match f {
        F::IdEq(v) => id_matches(&d.id, v),
        F::IdIn(vs) => vs.iter().any(|v| id_matches(&d.id, v)),
        F::IdNe(v) => !id_matches(&d.id, v),
        F::G(g) => d.g == *g,
        F::Not(x) => !eval(x, d),
        F::And(a, b) => eval(a, d) && eval(b, d),
        F::Or(a, b) => eval(a, d) || eval(b, d),
    }
}

fn docs() -> impl Strategy<Value = Vec<Doc>> {
    let id = prop_oneof![
        (-3i64..15).prop_map(Value::from),
        prop::sample::select(
            &["a", "A", "ab", "Ab", "aB", "AB", "x-1", "X-1", "X_2", "7", "05", "id9", "ID9"][..]
        )
        .prop_map(Value::from),
    ];
    prop::collection::vec((id, 0u8..3), 1..40).prop_map(|v| {
        let mut seen = std::collections::BTreeSet::new();
        v.into_iter()
            .filter(|(id, _)| seen.insert(canonical_id(id).unwrap_or_default()))
            .map(|(id, g)| Doc { id, g })
            .collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn narrowed_reads_find_exactly_what_a_full_fan_out_finds(
        docs in docs(),
        f in filter(),
        style in 0usize..6,
        shards in 1u32..16,
    ) {
        let filter = as_json(&f, style);
        let narrowed = pinned_shards(Some(&filter), "id", shards);
        let full: Vec<String> = docs.iter().filter(|d| eval(&f, d)).map(|d| canonical_id(&d.id).unwrap()).collect();
        let found: Vec<String> = docs
            .iter()
            .filter(|d| {
                let shard = shard_for_key(&canonical_id(&d.id).unwrap(), shards);
                narrowed.as_ref().is_none_or(|s| s.contains(&shard))
            })
            .filter(|d| eval(&f, d))
            .map(|d| canonical_id(&d.id).unwrap())
            .collect();
        prop_assert_eq!(&found, &full, "filter {} narrowed to {:?}", filter, narrowed);
        if let Some(s) = &narrowed {
            prop_assert!(!s.is_empty() && s.len() < shards as usize);
            prop_assert!(s.windows(2).all(|w| w[0] < w[1]));
        }
    }

    #[test]
    fn a_plain_pin_always_narrows_to_its_owner(id in 0u64..100_000, shards in 2u32..128) {
        for f in [json!(format!("id = {id}")), json!(format!("genre = x AND id IN [{id}]")), json!([format!("id = '{id}'"), "year > 3"])] {
            let s = pinned_shards(Some(&f), "id", shards);
            prop_assert_eq!(s, Some(vec![shard_for_key(&id.to_string(), shards)]));
        }
    }
}

#[test]
fn a_narrowed_documents_listing_reports_no_unavailable_shard() {
    use miroir_core::pager::{CoverEntry, DocumentsPager, DocumentsQuery};
    let query = DocumentsQuery::from_fetch_body(&json!({"filter": "id = 7"})).unwrap();
    let cover = vec![CoverEntry::new("n0", vec![2], vec![0, 1, 2, 3])];
    let p = DocumentsPager::new("movies", query.clone(), cover.clone(), 4, &|_| 0);
    assert_eq!(p.unavailable_shards(), vec![0, 1, 3]);
    let p = DocumentsPager::new("movies", query, cover, 4, &|_| 0).narrowed_to(&[2, 3]);
    assert_eq!(
        p.unavailable_shards(),
        vec![3],
        "in scope and unassigned: still unavailable"
    );
}
