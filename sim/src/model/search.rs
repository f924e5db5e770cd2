//! Search: matching (prefix on the last word, typo tolerance, synonyms, negations), Meilisearch's
//! ranking rules with their score details, distinct, threshold and pagination. Query parsing lives in
//! `text.rs`, request validation in `query.rs`, facets in `facets.rs` and hit rendering in `format.rs`.
//!
//! The engine is stateless: every search reads the index's documents and settings. Scores follow
//! milli's `score_details` formulas: each rule yields a `Rank { rank, max_rank }` computed from the
//! query and the document only (never from corpus statistics), and the global `_rankingScore` merges
//! the ranks in rule order exactly as `Rank::global_score` does.
//!
//! Per rule, for the query terms `R` kept by the words rule:
//! - words: `matchingWords / maxMatchingWords` (terms dropped from the end under `last`);
//! - typo: `max = Σ max(1, allowed typos)` (phrases 0), `rank = max + 1 - typos`;
//! - proximity: per adjacent query pair, cost 0/1/2 for a proximity of 1/2/3 words, 3 otherwise;
//!   `rank = 1 + 3·pairs - cost`;
//! - attributeRank: per term the weight of the best searchable attribute (0 for all with `*`);
//! - wordPosition: per term the bucketed distance between the word's position in the attribute and in
//!   the query (`max 10` per term);
//! - exactness: `exactMatch` (an attribute equals the query), `matchesStart`, or `noExactMatch`
//!   combined with the number of query words found without typo or prefix;
//! - `field:asc|desc` custom rules and `sort` criteria: a `value` instead of a score, ignored by the
//!   global score; a custom rule on a field the query sorts on is dropped.
//!
//! Documents tied on every rule keep their internal id order, as milli returns them. Distinct is
//! applied bucket by bucket, and `estimatedTotalHits` only discounts the duplicates of the buckets it
//! went through, as milli does.

use std::cmp::Ordering;
use std::collections::HashMap;

use miroir_core::MeiliError;
use serde_json::{json, Map, Value};

use super::facets::facet_distribution;
use super::filter::{self, ParsedFilter};
use super::format::format_hit;
use super::index::Index;
use super::payload::Document;
pub use super::query::{MatchingStrategy, SearchQuery, SEARCH_PARAMS};
pub use super::text::{parse_query, tokenize, word_typos, Term, Word};

// ---------------------------------------------------------------------------------------------
// Document analysis
// ---------------------------------------------------------------------------------------------

/// A searchable field of a document: its weight, its words, and whether typos are allowed in it.
struct Field {
    weight: usize,
    words: Vec<Word>,
    typos: bool,
}

fn leaf_texts(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) => out.push(s.clone()),
        Value::Number(n) => out.push(n.to_string()),
        Value::Bool(b) => out.push(b.to_string()),
        Value::Array(a) => a.iter().for_each(|x| leaf_texts(x, out)),
        Value::Object(o) => o.values().for_each(|x| leaf_texts(x, out)),
        Value::Null => {}
    }
}

fn field_words(values: &[&Value]) -> Vec<Word> {
    let mut texts = Vec::new();
    for v in values {
        leaf_texts(v, &mut texts);
    }
    let mut words = Vec::new();
    let mut next = 0usize;
    for t in texts {
        let w = tokenize(&t, next);
        if let Some(last) = w.last() {
            next = last.pos + 8;
        }
        words.extend(w);
    }
    words
}

fn searchable_fields(
    doc: &Document,
    index: &Index,
    restrict: Option<&[String]>,
) -> (Vec<Field>, usize) {
    let allowed = |name: &str| {
        restrict.is_none_or(|r| {
            r.iter()
                .any(|x| x == name || name.starts_with(&format!("{x}.")))
        })
    };
    let no_typos = index.settings.typo_disabled_attributes();
    let typos = |name: &str| !no_typos.iter().any(|p| filter::pattern_matches(p, name));
    match index.settings.searchable() {
        Some(list) => {
            let max = list.len().saturating_sub(1);
            let mut fields = Vec::new();
            for (w, attr) in list.iter().enumerate() {
                if !allowed(attr) {
                    continue;
                }
                if let Some(vals) = filter::values_at(doc, attr) {
                    fields.push(Field {
                        weight: w,
                        words: field_words(&vals),
                        typos: typos(attr),
                    });
                }
            }
            (fields, max)
        }
        None => {
            let mut fields = Vec::new();
            for (k, v) in doc {
                if k == "_geo" || !allowed(k) {
                    continue;
                }
                fields.push(Field {
                    weight: 0,
                    words: field_words(&[v]),
                    typos: typos(k),
                });
            }
            (fields, 0)
        }
    }
}

/// How one term matches one document.
#[derive(Debug, Clone)]
struct TermMatch {
    typos: u8,
    /// `(field index, weight, start position, end position)` at the best typo level.
    hits: Vec<(usize, usize, usize, usize)>,
    exact: bool,
}

/// Occurrences of a word sequence at consecutive positions: `(field, weight, start, end)`.
fn sequence_hits(words: &[String], fields: &[Field]) -> Vec<(usize, usize, usize, usize)> {
    let mut hits = Vec::new();
    let n = words.len();
    if n == 0 {
        return hits;
    }
    for (fi, f) in fields.iter().enumerate() {
        if f.words.len() < n {
            continue;
        }
        for s in 0..=f.words.len() - n {
            if (0..n).all(|k| {
                f.words[s + k].text == words[k]
                    && (k == 0 || f.words[s + k].pos == f.words[s + k - 1].pos + 1)
            }) {
                hits.push((fi, f.weight, f.words[s].pos, f.words[s + n - 1].pos));
            }
        }
    }
    hits
}

fn match_term(term: &Term, fields: &[Field]) -> Option<TermMatch> {
    if term.phrase {
        let hits = sequence_hits(&term.words, fields);
        return if hits.is_empty() {
            None
        } else {
            Some(TermMatch {
                typos: 0,
                hits,
                exact: true,
            })
        };
    }
    let w = &term.words[0];
    let mut best: Option<u8> = None;
    let mut all = Vec::new();
    let mut exact = false;
    for (fi, f) in fields.iter().enumerate() {
        for word in &f.words {
            let max_typos = if f.typos { term.max_typos } else { 0 };
            if let Some(t) = word_typos(w, term.prefix, max_typos, &word.text) {
                if word.text == *w {
                    exact = true;
                }
                best = Some(best.map_or(t, |b| b.min(t)));
                all.push((t, (fi, f.weight, word.pos, word.pos)));
            }
        }
    }
    // synonyms match like the word itself, without typos
    for syn in &term.synonyms {
        for h in sequence_hits(syn, fields) {
            best = Some(0);
            all.push((0, h));
        }
    }
    let best = best?;
    Some(TermMatch {
        typos: best,
        hits: all
            .into_iter()
            .filter(|(t, _)| *t == best)
            .map(|(_, h)| h)
            .collect(),
        exact,
    })
}

/// A rank as milli defines it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rank {
    /// Rank (higher is better).
    pub rank: u64,
    /// Maximum rank.
    pub max: u64,
}

impl Rank {
    fn score(self) -> f64 {
        self.rank as f64 / self.max as f64
    }
    fn merge(outer: Rank, inner: Rank) -> Rank {
        Rank {
            rank: outer.rank.saturating_sub(1) * inner.max + inner.rank,
            max: outer.max * inner.max,
        }
    }
    fn cmp_better(a: Rank, b: Rank) -> Ordering {
        // higher fraction first
        (b.rank as u128 * a.max as u128).cmp(&(a.rank as u128 * b.max as u128))
    }
}

/// One ranking-rule outcome for a document.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Crit {
    Words(Rank),
    Typo(Rank, u64),
    Proximity(Rank),
    Fid(Rank, bool),
    Position(Rank, bool),
    Exactness {
        attr: u8,
        words: Rank,
        matching: u64,
        max: u64,
    },
    Sort {
        name: String,
        asc: bool,
        value: Value,
        cmp: Value,
    },
    Geo {
        name: String,
        asc: bool,
        point: Option<(f64, f64)>,
        distance: Option<f64>,
    },
}

fn cmp_sort_values(asc: bool, a: &Value, b: &Value) -> Ordering {
    // Ordering::Less means `a` ranks first.
    match (a, b) {
        (Value::Null, Value::Null) => Ordering::Equal,
        (Value::Null, _) => Ordering::Greater,
        (_, Value::Null) => Ordering::Less,
        (Value::Number(_), Value::String(_)) => Ordering::Less,
        (Value::String(_), Value::Number(_)) => Ordering::Greater,
        (Value::Number(x), Value::Number(y)) => {
            let o = x
                .as_f64()
                .unwrap_or(0.0)
                .partial_cmp(&y.as_f64().unwrap_or(0.0))
                .unwrap_or(Ordering::Equal);
            if asc {
                o
            } else {
                o.reverse()
            }
        }
        (Value::String(x), Value::String(y)) => {
            let o = x.cmp(y);
            if asc {
                o
            } else {
                o.reverse()
            }
        }
        _ => Ordering::Equal,
    }
}

fn cmp_crit(a: &Crit, b: &Crit) -> Ordering {
    match (a, b) {
        (Crit::Words(x), Crit::Words(y))
        | (Crit::Typo(x, _), Crit::Typo(y, _))
        | (Crit::Proximity(x), Crit::Proximity(y))
        | (Crit::Fid(x, _), Crit::Fid(y, _))
        | (Crit::Position(x, _), Crit::Position(y, _)) => Rank::cmp_better(*x, *y),
        (
            Crit::Exactness {
                attr: a1,
                words: w1,
                ..
            },
            Crit::Exactness {
                attr: a2,
                words: w2,
                ..
            },
        ) => a2.cmp(a1).then_with(|| {
            if *a1 == 1 {
                Rank::cmp_better(*w1, *w2)
            } else {
                Ordering::Equal
            }
        }),
        (Crit::Sort { asc, cmp: x, .. }, Crit::Sort { cmp: y, .. }) => cmp_sort_values(*asc, x, y),
        (
            Crit::Geo {
                asc, distance: x, ..
            },
            Crit::Geo { distance: y, .. },
        ) => match (x, y) {
            (None, None) => Ordering::Equal,
            (None, _) => Ordering::Greater,
            (_, None) => Ordering::Less,
            (Some(x), Some(y)) => {
                let o = x.partial_cmp(y).unwrap_or(Ordering::Equal);
                if *asc {
                    o
                } else {
                    o.reverse()
                }
            }
        },
        _ => Ordering::Equal,
    }
}

fn cost_from_distance(d: usize) -> u64 {
    match d {
        0 => 0,
        1 => 1,
        2..=4 => 2,
        5..=7 => 3,
        8..=11 => 4,
        12..=16 => 5,
        17..=24 => 6,
        25..=64 => 7,
        65..=256 => 8,
        257..=1024 => 9,
        _ => 10,
    }
}

/// A ranking step.
#[derive(Debug, Clone, PartialEq)]
enum Rule {
    Words,
    Typo,
    Proximity,
    Fid(bool),
    Position(bool),
    Exactness,
    Sort {
        field: String,
        asc: bool,
    },
    Geo {
        lat: f64,
        lng: f64,
        asc: bool,
        name: String,
    },
}

fn parse_sort_item(s: &str) -> Option<Rule> {
    let (field, dir) = s.rsplit_once(':')?;
    let asc = match dir {
        "asc" => true,
        "desc" => false,
        _ => return None,
    };
    if let Some(inner) = field
        .strip_prefix("_geoPoint(")
        .and_then(|r| r.strip_suffix(')'))
    {
        let (a, b) = inner.split_once(',')?;
        let lat: f64 = a.trim().parse().ok()?;
        let lng: f64 = b.trim().parse().ok()?;
        return Some(Rule::Geo {
            lat,
            lng,
            asc,
            name: format!("_geoPoint({}, {})", fmt_f64(lat), fmt_f64(lng)),
        });
    }
    if field.is_empty() {
        return None;
    }
    Some(Rule::Sort {
        field: field.to_string(),
        asc,
    })
}

fn fmt_f64(f: f64) -> String {
    format!("{f}")
}

fn sort_value(doc: &Document, field: &str, asc: bool) -> (Value, Value) {
    let vals = filter::values_at(doc, field).unwrap_or_default();
    let nums: Vec<f64> = vals.iter().filter_map(|v| v.as_f64()).collect();
    if !nums.is_empty() {
        let pick = if asc {
            nums.iter().cloned().fold(f64::INFINITY, f64::min)
        } else {
            nums.iter().cloned().fold(f64::NEG_INFINITY, f64::max)
        };
        let v = serde_json::Number::from_f64(pick)
            .map(Value::Number)
            .unwrap_or(Value::Null);
        return (v.clone(), v);
    }
    let strs: Vec<&str> = vals.iter().filter_map(|v| v.as_str()).collect();
    let pick = if asc {
        strs.iter().min_by_key(|s| s.to_lowercase())
    } else {
        strs.iter().max_by_key(|s| s.to_lowercase())
    };
    match pick {
        Some(s) => (
            Value::String(s.to_string()),
            Value::String(filter::normalize(s)),
        ),
        None => (Value::Null, Value::Null),
    }
}

/// A ranked candidate.
pub(crate) struct Ranked {
    pub(crate) id: u32,
    pub(crate) crits: Vec<Crit>,
    pub(crate) score: f64,
    pub(crate) geo_distance: Option<f64>,
}

fn global_score(crits: &[Crit]) -> f64 {
    let mut r = Rank { rank: 1, max: 1 };
    for c in crits {
        match c {
            Crit::Words(x)
            | Crit::Typo(x, _)
            | Crit::Proximity(x)
            | Crit::Fid(x, _)
            | Crit::Position(x, _) => r = Rank::merge(r, *x),
            Crit::Exactness { attr, words, .. } => {
                r = Rank::merge(
                    r,
                    Rank {
                        rank: *attr as u64,
                        max: 3,
                    },
                );
                if *attr == 1 {
                    r = Rank::merge(r, *words);
                }
            }
            _ => {}
        }
    }
    r.score()
}

pub(crate) fn details_json(crits: &[Crit]) -> Value {
    let mut m = Map::new();
    let mut order = 0u64;
    let mut pending_fid: Option<Rank> = None;
    for c in crits {
        match c {
            Crit::Words(r) => {
                m.insert("words".into(), json!({"order": order, "matchingWords": r.rank, "maxMatchingWords": r.max, "score": r.score()}));
                order += 1;
            }
            Crit::Typo(r, count) => {
                m.insert("typo".into(), json!({"order": order, "typoCount": count, "maxTypoCount": r.max - 1, "score": r.score()}));
                order += 1;
            }
            Crit::Proximity(r) => {
                m.insert(
                    "proximity".into(),
                    json!({"order": order, "score": r.score()}),
                );
                order += 1;
            }
            Crit::Fid(r, unified) => {
                if *unified {
                    pending_fid = Some(*r);
                    m.insert(
                        "attribute".into(),
                        json!({"order": order, "attributeRankingOrderScore": r.score()}),
                    );
                } else {
                    m.insert(
                        "attributeRank".into(),
                        json!({"order": order, "score": r.score()}),
                    );
                }
                order += 1;
            }
            Crit::Position(r, unified) => {
                if *unified {
                    let fid = pending_fid.unwrap_or(Rank { rank: 1, max: 1 });
                    let score = Rank::merge(Rank::merge(Rank { rank: 1, max: 1 }, fid), *r).score();
                    if let Some(Value::Object(a)) = m.get_mut("attribute") {
                        a.insert("queryWordDistanceScore".into(), json!(r.score()));
                        a.insert("score".into(), json!(score));
                    }
                } else {
                    m.insert(
                        "wordPosition".into(),
                        json!({"order": order, "score": r.score()}),
                    );
                    order += 1;
                }
            }
            Crit::Exactness {
                attr,
                words,
                matching,
                max,
            } => {
                let mt = match attr {
                    3 => "exactMatch",
                    2 => "matchesStart",
                    _ => "noExactMatch",
                };
                if *attr == 1 {
                    let score = Rank::merge(
                        Rank::merge(Rank { rank: 1, max: 1 }, Rank { rank: 1, max: 3 }),
                        *words,
                    )
                    .score();
                    m.insert("exactness".into(), json!({"order": order, "matchType": mt, "matchingWords": matching, "maxMatchingWords": max, "score": score}));
                } else {
                    m.insert(
                        "exactness".into(),
                        json!({"order": order, "matchType": mt, "score": *attr as f64 / 3.0}),
                    );
                }
                order += 1;
            }
            Crit::Sort { name, value, .. } => {
                m.insert(name.clone(), json!({"order": order, "value": value}));
                order += 1;
            }
            Crit::Geo {
                name,
                point,
                distance,
                ..
            } => {
                m.insert(
                    name.clone(),
                    json!({
                        "order": order,
                        "value": point.map(|(a, b)| json!({"lat": a, "lng": b})),
                        "distance": distance.map(|d| (d * 1000.0).round() / 1000.0),
                    }),
                );
                order += 1;
            }
        }
    }
    Value::Object(m)
}

pub(crate) fn err(status: u16, code: &str, msg: impl Into<String>) -> MeiliError {
    MeiliError::invalid(status, code, msg)
}

/// The outcome of ranking, before formatting.
pub struct Ranking {
    pub(crate) hits: Vec<Ranked>,
    pub(crate) terms: Vec<Term>,
    pub(crate) estimated: usize,
}

/// Validates the query against the index and ranks the matching documents (distinct and threshold
/// applied).
pub fn rank(index: &Index, q: &SearchQuery) -> Result<Ranking, MeiliError> {
    let settings = &index.settings;
    let filterable = settings.filterable();
    // sort validation
    let mut sort_rules = Vec::new();
    if let Some(sort) = &q.sort {
        let sortable = settings.sortable();
        for s in sort {
            let Some(rule) = parse_sort_item(s) else {
                return Err(err(400, "invalid_search_sort", format!("Invalid syntax for the sort parameter: expected expression ending by `:asc` or `:desc`, found `{s}`.")));
            };
            let field = match &rule {
                Rule::Sort { field, .. } => field.clone(),
                _ => "_geo".to_string(),
            };
            if !sortable.iter().any(|x| filter::pattern_matches(x, &field)) {
                let avail = if sortable.is_empty() {
                    "This index does not have configured sortable attributes.".to_string()
                } else {
                    format!(
                        "Available sortable attributes are: `{}`.",
                        sortable.join(", ")
                    )
                };
                return Err(err(
                    400,
                    "invalid_search_sort",
                    format!(
                        "Index `{}`: Attribute `{field}` is not sortable. {avail}",
                        index.uid
                    ),
                ));
            }
            sort_rules.push(rule);
        }
        if !sort_rules.is_empty() && !settings.ranking_rules().iter().any(|r| r == "sort") {
            return Err(err(400, "invalid_search_sort", "You must specify where `sort` is listed in the rankingRules setting to use the sort parameter at search time."));
        }
    }
    // filter
    let parsed: Option<ParsedFilter> = match filter::parse_value(&q.filter) {
        Ok(p) => p,
        Err(filter::FilterValueError::Parse(e)) => {
            return Err(err(400, "invalid_search_filter", e.message))
        }
        Err(filter::FilterValueError::BadType(m)) => {
            return Err(err(400, "invalid_search_filter", m))
        }
    };
    if let Some(p) = &parsed {
        if let Some(nf) = p.first_not_filterable(&filterable) {
            return Err(index.not_filterable_error("invalid_search_filter", &nf, true, true));
        }
    }
    let mut sorted_filterable = filterable.clone();
    sorted_filterable.sort();
    if let Some(facets) = &q.facets {
        let invalid: std::collections::BTreeSet<&String> = facets
            .iter()
            .filter(|f| *f != "*" && !filter::attribute_matches_patterns(f, &filterable))
            .collect();
        if !invalid.is_empty() {
            let avail = if filterable.is_empty() {
                "This index does not have configured filterable attributes.".to_string()
            } else {
                format!(
                    "Available filterable attributes patterns are: `{}`.",
                    sorted_filterable.join(", ")
                )
            };
            let names: Vec<&str> = invalid.iter().map(|s| s.as_str()).collect();
            let what = if names.len() == 1 {
                format!("Pattern `{}` is not filterable.", names[0])
            } else {
                format!("Patterns `{}` are not filterable.", names.join(", "))
            };
            return Err(err(
                400,
                "invalid_search_facets",
                format!("Invalid facet distribution: {what} {avail}"),
            ));
        }
    }
    let distinct = q.distinct.clone().or_else(|| settings.distinct());
    if let Some(d) = &q.distinct {
        if !filter::attribute_matches_patterns(d, &filterable) {
            let avail = if filterable.is_empty() {
                "This index does not have configured filterable attributes.".to_string()
            } else {
                format!(
                    "Available filterable attributes patterns are: `{}`.",
                    sorted_filterable.join(", ")
                )
            };
            return Err(err(400, "invalid_search_distinct", format!("Index `{}`: Attribute `{d}` is not filterable and thus, cannot be used as distinct attribute. {avail}", index.uid)));
        }
    }
    if let Some(on) = &q.attributes_to_search_on {
        if let Some(searchable) = settings.searchable() {
            for a in on {
                if !searchable.iter().any(|s| filter::pattern_matches(s, a)) {
                    return Err(err(400, "invalid_search_attributes_to_search_on", format!("Index `{}`: Attribute `{a}` is not searchable. Available searchable attributes are: `{}`.", index.uid, searchable.join(", "))));
                }
            }
        }
    }

    let parsed_query = parse_query(q.q.as_deref().unwrap_or(""), index);
    let negative_words = parsed_query.negative_words;
    let negative_phrases = parsed_query.negative_phrases;
    let terms = parsed_query.terms;
    let placeholder = terms.is_empty();
    // ranking rules
    let mut rules = Vec::new();
    for r in settings.ranking_rules() {
        match r.as_str() {
            "words" if !placeholder => rules.push(Rule::Words),
            "typo" if !placeholder => rules.push(Rule::Typo),
            "proximity" if !placeholder => rules.push(Rule::Proximity),
            "attribute" if !placeholder => {
                rules.push(Rule::Fid(true));
                rules.push(Rule::Position(true));
            }
            "attributeRank" if !placeholder => rules.push(Rule::Fid(false)),
            "wordPosition" if !placeholder => rules.push(Rule::Position(false)),
            "exactness" if !placeholder => rules.push(Rule::Exactness),
            "sort" => rules.extend(sort_rules.iter().cloned()),
            "words" | "typo" | "proximity" | "attribute" | "attributeRank" | "wordPosition"
            | "exactness" => {}
            custom => {
                // A custom rule on a field the query sorts on is dropped, as in milli.
                if let Some(rule @ Rule::Sort { .. }) = parse_sort_item(custom) {
                    let overridden = matches!(&rule, Rule::Sort { field, .. } if sort_rules.iter().any(|s| matches!(s, Rule::Sort { field: f, .. } if f == field)));
                    if !overridden {
                        rules.push(rule);
                    }
                }
            }
        }
    }

    let restrict = q.attributes_to_search_on.as_deref();
    let by_attribute = settings.proximity_by_attribute();
    // term frequencies, for the `frequency` strategy
    let mut removal: Vec<usize> = terms
        .iter()
        .enumerate()
        .filter(|(_, t)| !t.phrase)
        .map(|(i, _)| i)
        .collect();
    match q.matching_strategy {
        MatchingStrategy::Last => removal.reverse(),
        MatchingStrategy::All => removal.clear(),
        MatchingStrategy::Frequency => {
            let mut freq: HashMap<usize, usize> = HashMap::new();
            for doc in index.docs.values() {
                let (fields, _) = searchable_fields(doc, index, restrict);
                for &i in &removal {
                    if match_term(&terms[i], &fields).is_some() {
                        *freq.entry(i).or_default() += 1;
                    }
                }
            }
            removal.sort_by(|a, b| freq.get(b).cmp(&freq.get(a)).then(b.cmp(a)));
        }
    }
    let has_phrase = terms.iter().any(|t| t.phrase);
    if !has_phrase && !removal.is_empty() && removal.len() == terms.len() {
        removal.pop();
    }
    let phrase_words: usize = terms
        .iter()
        .filter(|t| t.phrase)
        .map(|t| t.words.len())
        .sum();
    let phrase_adj = phrase_words.saturating_sub(1) as u64;
    let words_max = removal.len() as u64 + 1 + phrase_adj;

    let mut ranked = Vec::new();
    for (&id, doc) in &index.docs {
        if let Some(p) = &parsed {
            if !p.matches(doc) {
                continue;
            }
        }
        if !negative_words.is_empty() || !negative_phrases.is_empty() {
            let (fields, _) = searchable_fields(doc, index, restrict);
            let has_word = fields
                .iter()
                .any(|f| f.words.iter().any(|w| negative_words.contains(&w.text)));
            if has_word
                || negative_phrases
                    .iter()
                    .any(|p| !sequence_hits(p, &fields).is_empty())
            {
                continue;
            }
        }
        let mut crits = Vec::new();
        let mut geo_distance = None;
        if placeholder {
            for rule in &rules {
                push_sort_crit(rule, doc, &mut crits, &mut geo_distance);
            }
            let score = global_score(&crits);
            ranked.push(Ranked {
                id,
                crits,
                score,
                geo_distance,
            });
            continue;
        }
        let (fields, max_weight) = searchable_fields(doc, index, restrict);
        let matches: Vec<Option<TermMatch>> =
            terms.iter().map(|t| match_term(t, &fields)).collect();
        // words rule: how many removable terms must be dropped
        let mut removed = 0usize;
        let mut kept: Vec<usize> = (0..terms.len()).collect();
        loop {
            if kept.iter().all(|&i| matches[i].is_some()) {
                break;
            }
            if removed >= removal.len() {
                kept.clear();
                break;
            }
            let drop = removal[removed];
            kept.retain(|&i| i != drop);
            removed += 1;
        }
        if kept.is_empty() {
            continue;
        }
        let kept_terms: Vec<(&Term, &TermMatch)> = kept
            .iter()
            .filter_map(|&i| matches[i].as_ref().map(|m| (&terms[i], m)))
            .collect();
        for rule in &rules {
            match rule {
                Rule::Words => crits.push(Crit::Words(Rank {
                    rank: words_max - removed as u64,
                    max: words_max,
                })),
                Rule::Typo => {
                    let max: u64 = kept_terms
                        .iter()
                        .map(|(t, _)| {
                            if t.phrase {
                                0
                            } else {
                                (t.max_typos as u64).max(1)
                            }
                        })
                        .sum();
                    let count: u64 = kept_terms.iter().map(|(_, m)| m.typos as u64).sum();
                    crits.push(Crit::Typo(
                        Rank {
                            rank: (max + 1).saturating_sub(count),
                            max: max + 1,
                        },
                        count,
                    ));
                }
                Rule::Proximity => {
                    let mut pairs = 0u64;
                    let mut cost = 0u64;
                    for w in kept_terms.windows(2) {
                        let (lt, lm) = w[0];
                        let (rt, rm) = w[1];
                        if lt.qpos + lt.words.len() != rt.qpos {
                            continue;
                        }
                        pairs += 1;
                        let mut best = 3u64;
                        for &(lf, _, _, lend) in &lm.hits {
                            for &(rf, _, rstart, _) in &rm.hits {
                                if lf != rf {
                                    continue;
                                }
                                if by_attribute {
                                    // `proximityPrecision: byAttribute`: same attribute is as close as it gets
                                    best = 0;
                                    continue;
                                }
                                let prox = if lend < rstart {
                                    rstart - lend
                                } else if lend > rstart {
                                    lend - rstart + 1
                                } else {
                                    continue;
                                };
                                if prox <= 3 {
                                    best = best.min(prox as u64 - 1);
                                }
                            }
                        }
                        cost += best;
                    }
                    let next_max = 1 + 3 * pairs;
                    crits.push(Crit::Proximity(Rank {
                        rank: next_max - cost,
                        max: next_max,
                    }));
                }
                Rule::Fid(unified) => {
                    let mw = max_weight as u64;
                    let next_max = 1 + mw * kept_terms.len() as u64;
                    let cost: u64 = kept_terms
                        .iter()
                        .map(|(_, m)| m.hits.iter().map(|h| h.1 as u64).min().unwrap_or(mw))
                        .sum();
                    crits.push(Crit::Fid(
                        Rank {
                            rank: next_max - cost.min(next_max - 1),
                            max: next_max,
                        },
                        *unified,
                    ));
                }
                Rule::Position(unified) => {
                    let next_max = 1 + 10 * kept_terms.len() as u64;
                    let cost: u64 = kept_terms
                        .iter()
                        .map(|(t, m)| {
                            m.hits
                                .iter()
                                .map(|h| cost_from_distance(h.2.abs_diff(t.qpos)))
                                .min()
                                .unwrap_or(10)
                        })
                        .sum();
                    crits.push(Crit::Position(
                        Rank {
                            rank: next_max - cost,
                            max: next_max,
                        },
                        *unified,
                    ));
                }
                Rule::Exactness => {
                    let qwords: Vec<&String> = kept_terms
                        .iter()
                        .flat_map(|(t, _)| t.words.iter())
                        .collect();
                    let mut attr = 1u8;
                    for f in &fields {
                        if f.words.len() >= qwords.len()
                            && f.words.iter().zip(&qwords).all(|(w, q)| w.text == **q)
                            && f.words
                                .iter()
                                .take(qwords.len())
                                .enumerate()
                                .all(|(i, w)| w.pos == f.words[0].pos + i)
                        {
                            let a = if f.words.len() == qwords.len() { 3 } else { 2 };
                            attr = attr.max(a);
                        }
                    }
                    let max = kept_terms.len() as u64;
                    let matching = kept_terms.iter().filter(|(_, m)| m.exact).count() as u64;
                    crits.push(Crit::Exactness {
                        attr,
                        words: Rank {
                            rank: matching + 1,
                            max: max + 1,
                        },
                        matching,
                        max,
                    });
                }
                other => push_sort_crit(other, doc, &mut crits, &mut geo_distance),
            }
        }
        let score = global_score(&crits);
        ranked.push(Ranked {
            id,
            crits,
            score,
            geo_distance,
        });
    }
    ranked.sort_by(|a, b| {
        for (x, y) in a.crits.iter().zip(&b.crits) {
            let o = cmp_crit(x, y);
            if o != Ordering::Equal {
                return o;
            }
        }
        a.id.cmp(&b.id)
    });
    let mut estimated = ranked.len();
    if let Some(d) = &distinct {
        let key_of = |id: u32| -> Option<Value> {
            let doc = index.docs.get(&id)?;
            match filter::values_at(doc, d) {
                Some(vals) if !vals.is_empty() => Some(Value::Array(
                    vals.iter()
                        .map(|v| match v {
                            Value::String(s) => Value::String(filter::normalize(s)),
                            other => (*other).clone(),
                        })
                        .collect(),
                )),
                _ => None,
            }
        };
        let keys: Vec<Option<Value>> = ranked.iter().map(|r| key_of(r.id)).collect();
        let mut seen: Vec<Value> = Vec::new();
        let mut keep = Vec::with_capacity(ranked.len());
        for k in &keys {
            match k {
                Some(k) if seen.contains(k) => keep.push(false),
                Some(k) => {
                    seen.push(k.clone());
                    keep.push(true)
                }
                None => keep.push(true),
            }
        }
        // Like milli, the estimate only discounts the duplicates of the documents actually returned.
        let wanted = q.offset.unwrap_or(0).saturating_add(q.limit.unwrap_or(20));
        let wanted = if q.page.is_some() || q.hits_per_page.is_some() {
            q.page
                .unwrap_or(1)
                .saturating_mul(q.hits_per_page.unwrap_or(20))
        } else {
            wanted
        };
        // milli applies distinct to whole buckets (documents tied on every rule) until it has enough.
        let mut returned = 0;
        let mut i = 0;
        while i < keys.len() && returned < wanted {
            let mut j = i + 1;
            while j < ranked.len()
                && ranked[i]
                    .crits
                    .iter()
                    .zip(&ranked[j].crits)
                    .all(|(a, b)| cmp_crit(a, b) == Ordering::Equal)
            {
                j += 1;
            }
            for n in i..j {
                if keep[n] {
                    returned += 1;
                    if let Some(k) = &keys[n] {
                        estimated -= keys.iter().filter(|x| x.as_ref() == Some(k)).count() - 1;
                    }
                }
            }
            i = j;
        }
        let mut it = keep.into_iter();
        ranked.retain(|_| it.next().unwrap_or(false));
        estimated = estimated.max(ranked.len().min(wanted));
    }
    if let Some(t) = q.ranking_score_threshold {
        let before = ranked.len();
        ranked.retain(|r| r.score >= t);
        estimated -= (before - ranked.len()).min(estimated);
    }
    Ok(Ranking {
        hits: ranked,
        terms,
        estimated,
    })
}

fn push_sort_crit(
    rule: &Rule,
    doc: &Document,
    crits: &mut Vec<Crit>,
    geo_distance: &mut Option<f64>,
) {
    match rule {
        Rule::Sort { field, asc } => {
            let (value, cmp) = sort_value(doc, field, *asc);
            crits.push(Crit::Sort {
                name: format!("{field}:{}", if *asc { "asc" } else { "desc" }),
                asc: *asc,
                value,
                cmp,
            });
        }
        Rule::Geo {
            lat,
            lng,
            asc,
            name,
        } => {
            let point = filter::geo_point(doc);
            let distance = point.map(|p| filter::distance_m((*lat, *lng), p));
            if geo_distance.is_none() {
                *geo_distance = distance;
            }
            crits.push(Crit::Geo {
                name: format!("{name}:{}", if *asc { "asc" } else { "desc" }),
                asc: *asc,
                point,
                distance,
            });
        }
        _ => {}
    }
}

/// Runs a search and renders the response body (without `requestUid`).
pub fn search(index: &Index, q: &SearchQuery) -> Result<Value, MeiliError> {
    let ranking = rank(index, q)?;
    let max_total = index.settings.max_total_hits();
    let total = ranking.hits.len();
    let capped = total.min(max_total);
    let estimated = ranking.estimated.min(max_total);
    // Meilisearch writes `hits`, `query` and `processingTimeMs` first, then the pagination info.
    let mut info = Map::new();
    let (start, count) = if q.page.is_some() || q.hits_per_page.is_some() {
        let page = q.page.unwrap_or(1);
        let hpp = q.hits_per_page.unwrap_or(20);
        let start = page.saturating_sub(1).saturating_mul(hpp);
        let total_pages = if hpp == 0 { 0 } else { estimated.div_ceil(hpp) };
        info.insert("hitsPerPage".into(), Value::from(hpp));
        info.insert("page".into(), Value::from(page));
        info.insert("totalPages".into(), Value::from(total_pages));
        info.insert("totalHits".into(), Value::from(estimated));
        (start, if page == 0 { 0 } else { hpp })
    } else {
        let offset = q.offset.unwrap_or(0);
        let limit = q.limit.unwrap_or(20);
        info.insert("limit".into(), Value::from(limit));
        info.insert("offset".into(), Value::from(offset));
        info.insert("estimatedTotalHits".into(), Value::from(estimated));
        (offset, limit)
    };
    let end = start.saturating_add(count).min(capped);
    let hits: Vec<Value> = if start < end {
        ranking.hits[start..end]
            .iter()
            .map(|r| format_hit(index, r, &ranking.terms, q))
            .collect()
    } else {
        Vec::new()
    };
    let mut body = Map::new();
    body.insert("hits".into(), Value::Array(hits));
    body.insert(
        "query".into(),
        Value::String(q.q.clone().unwrap_or_default()),
    );
    body.insert("processingTimeMs".into(), Value::from(0));
    body.extend(info);
    if let Some(facets) = &q.facets {
        let ids: Vec<u32> = ranking.hits.iter().map(|r| r.id).collect();
        let (dist, stats) = facet_distribution(index, &ids, facets);
        body.insert("facetDistribution".into(), dist);
        body.insert("facetStats".into(), stats);
    }
    Ok(Value::Object(body))
}

/// Ranked ids and scores, for federated multi-search.
pub fn ranked_ids(index: &Index, q: &SearchQuery) -> Result<Vec<(u32, f64, Value)>, MeiliError> {
    let ranking = rank(index, q)?;
    Ok(ranking
        .hits
        .iter()
        .map(|r| (r.id, r.score, format_hit(index, r, &ranking.terms, q)))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index_with(docs: Value) -> Index {
        let mut i = Index::new("t", Some("id".into()), 0);
        let docs: Vec<Document> = docs
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_object().cloned().unwrap())
            .collect();
        i.add_documents(&docs, None, false, 0).unwrap();
        i
    }

    #[test]
    fn tokenizer_positions_and_hard_separators() {
        let w = tokenize("Hello, World. Again", 0);
        let got: Vec<(&str, usize)> = w.iter().map(|w| (w.text.as_str(), w.pos)).collect();
        assert_eq!(got, vec![("hello", 0), ("world", 1), ("again", 9)]);
        assert_eq!((w[1].start, w[1].end), (7, 12));
        assert!(tokenize("  ,, ", 0).is_empty());
    }

    #[test]
    fn typo_rules() {
        assert_eq!(word_typos("galxy", false, 1, "galaxy"), Some(1));
        assert_eq!(word_typos("star", false, 0, "stars"), None);
        assert_eq!(word_typos("star", true, 0, "stars"), Some(0));
        // the first letter may only differ when two typos are allowed, and then costs one
        assert_eq!(word_typos("night", false, 1, "knight"), None);
        assert_eq!(word_typos("knightxyz", false, 2, "nightxyz"), Some(1));
        // transpositions count as one typo
        assert_eq!(word_typos("galxay", false, 1, "galaxy"), Some(1));
        assert_eq!(word_typos("ab", false, 0, "ab"), Some(0));
    }

    #[test]
    fn query_parsing() {
        let i = index_with(json!([]));
        let t = parse_query("Dark \"knight rises\" gal", &i).terms;
        assert_eq!(t.len(), 3);
        assert_eq!(
            (t[0].words.clone(), t[0].max_typos, t[0].prefix),
            (vec!["dark".to_string()], 0, false)
        );
        assert!(t[1].phrase && t[1].qpos == 1 && t[1].words.len() == 2);
        assert!(t[2].prefix && t[2].qpos == 3);
        assert!(!parse_query("galaxy ", &i).terms[0].prefix);
        assert_eq!(parse_query("extraordinary", &i).terms[0].max_typos, 2);
        // hard separators put words 8 positions apart
        assert_eq!(parse_query("dark. knight", &i).terms[1].qpos, 8);
        // negations, an unclosed quote runs to the end
        let n = parse_query("-ghost star -\"dark night\" \"open ended", &i);
        assert_eq!(n.negative_words, vec!["ghost".to_string()]);
        assert_eq!(
            n.negative_phrases,
            vec![vec!["dark".to_string(), "night".to_string()]]
        );
        assert_eq!(n.terms.len(), 2);
        assert!(
            n.terms[1].phrase && n.terms[1].words == vec!["open".to_string(), "ended".to_string()]
        );
        // a dash inside a word is not a negation
        assert!(parse_query("spider-man", &i).negative_words.is_empty());
        let many = parse_query("a b c d e f g h i j k l", &i).terms;
        assert_eq!(many.len(), 10);
    }

    #[test]
    fn rank_merging_matches_milli() {
        // "star wars" against `title: ghost shadow peace, overview: star wars galaxy river storm`
        let crits = vec![
            Crit::Words(Rank { rank: 2, max: 2 }),
            Crit::Typo(Rank { rank: 3, max: 3 }, 0),
            Crit::Proximity(Rank { rank: 4, max: 4 }),
            Crit::Fid(Rank { rank: 1, max: 3 }, false),
            Crit::Position(Rank { rank: 21, max: 21 }, false),
            Crit::Exactness {
                attr: 2,
                words: Rank { rank: 3, max: 3 },
                matching: 2,
                max: 2,
            },
        ];
        assert_eq!(global_score(&crits), 0.9720017636684304);
        let d = details_json(&crits);
        assert_eq!(
            d["exactness"],
            json!({"order": 5, "matchType": "matchesStart", "score": 2.0 / 3.0})
        );
        assert_eq!(d["attributeRank"]["score"], json!(1.0 / 3.0));
        assert_eq!(cost_from_distance(3), 2);
        assert_eq!(cost_from_distance(5000), 10);
    }

    #[test]
    fn scores_and_details_from_documents() {
        let i = index_with(json!([
            {"id": 1, "title": "king night knight dark"},
            {"id": 2, "title": "dark knight"},
            {"id": 3, "title": "nothing here"}
        ]));
        let q = SearchQuery::from_json(
            &json!({"q": "dark knight", "showRankingScoreDetails": true, "showRankingScore": true}),
            &[],
        )
        .unwrap();
        let r = search(&i, &q).unwrap();
        let hits = r["hits"].as_array().unwrap();
        assert_eq!(hits.len(), 2);
        assert_eq!(hits[0]["id"], json!(2));
        assert_eq!(hits[0]["_rankingScore"], json!(1.0));
        assert_eq!(
            hits[0]["_rankingScoreDetails"]["exactness"]["matchType"],
            json!("exactMatch")
        );
        // reversed adjacent words are at proximity 2
        assert_eq!(
            hits[1]["_rankingScoreDetails"]["proximity"]["score"],
            json!(0.75)
        );
        assert_eq!(
            hits[1]["_rankingScoreDetails"]["wordPosition"]["score"],
            json!(18.0 / 21.0)
        );
        assert_eq!(r["estimatedTotalHits"], json!(2));
    }

    #[test]
    fn query_validation() {
        assert!(SearchQuery::from_json(&json!({"offset": "x"}), &[]).is_err());
        assert!(SearchQuery::from_json(&json!({"indexUid": "x"}), &["indexUid"]).is_ok());
        assert!(SearchQuery::from_params(&[("showRankingScore".into(), "maybe".into())]).is_err());
        assert!(SearchQuery::from_params(&[("rankingScoreThreshold".into(), "x".into())]).is_err());
        let q = SearchQuery::from_params(&[
            ("facets".into(), "a,b".into()),
            ("limit".into(), "3".into()),
        ])
        .unwrap();
        assert_eq!(q.facets, Some(vec!["a".to_string(), "b".to_string()]));
        assert_eq!(q.limit, Some(3));
        assert!(parse_sort_item("year").is_none());
        assert_eq!(
            parse_sort_item("_geoPoint(1.5, 2):desc"),
            Some(Rule::Geo {
                lat: 1.5,
                lng: 2.0,
                asc: false,
                name: "_geoPoint(1.5, 2)".into()
            })
        );
    }

    /// Arbitrary inputs never panic (a tiny deterministic fuzzer: no randomness source needed).
    #[test]
    fn arbitrary_queries_and_filters_do_not_panic() {
        let i = index_with(
            json!([{"id": 1, "t": "héllo wörld ünïcode", "n": 3}, {"id": 2, "t": ["x", {"y": "z"}]}]),
        );
        let alphabet: Vec<char> = "ab \"'()[]=!<>,.:_-éTONADINXSE09\\".chars().collect();
        let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..400 {
            let mut s = String::new();
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let len = (seed % 24) as usize;
            for k in 0..len {
                s.push(alphabet[((seed >> (k % 50)) as usize + k * 7) % alphabet.len()]);
            }
            let _ = filter::parse(&s);
            let q = SearchQuery {
                q: Some(s.clone()),
                attributes_to_highlight: Some(vec!["*".into()]),
                attributes_to_crop: Some(vec!["t:2".into()]),
                show_matches_position: true,
                ..Default::default()
            };
            let _ = search(&i, &q);
        }
    }
}
