//! Merging the nodes' search answers into one Meilisearch response.
//!
//! States: node answers → validated lists → k-way merged (with distinct) → windowed → stripped → response.
//! Answers come parsed ([`merge_search`]) or as the nodes' text ([`merge_search_text`], see [`super::raw`]):
//! both share the k-way merge; a text hit is read as its top-level fields only when it becomes a list's
//! head, and written by splicing the raw text of the fields it keeps.
//!
//! Invariants:
//! - The merge is a k-way merge: each node's list keeps its own order, and at each step the best head wins by
//!   [`compare_hits`] (the ranking rules in order), then by lowest `_miroir_shard`, then by lowest node
//!   position in the covering set. Because each node's order is kept, the first `n` merged hits only ever
//!   need the first `n` hits of each node, which is exactly what the over-fetched window provides.
//! - With `distinct`, the first (best) hit of each distinct value wins; hits without the attribute are each
//!   distinct. Because each node already answered distinct hits, the first `n` distinct values of the merge
//!   are found within the first `n` hits of each node.
//! - The set of kept distinct values only grows, so a hit whose value is already kept is skipped as soon as
//!   it is read, without reading its ranking key: the merge costs one hash lookup per skipped hit.
//! - The text merge parses to exactly what the parsed merge followed by the proxy's displayed filter gives
//!   (a property test checks it on random answers).
//! - A text hit's `_rankingScoreDetails` is read by [`DetailsReader`] (while its fields are scanned,
//!   unless under distinct, where most hits read are skipped without their ranking key): it
//!   yields exactly what `serde_json` would ([`RawDetails`]) or gives up, never refusing text itself; on
//!   giving up `serde_json` reads the details and decides what is refused (a property test compares them
//!   on random and damaged details).
//! - The window's hits are written as the merge yields them, and the field list of each hit done with is
//!   reused. Errors keep their order: the merge's (a hit it reads is not JSON), then the envelope's, then a
//!   kept hit that cannot be written, as when the reply was written after the merge.

use std::borrow::Cow;
use std::cmp::Ordering;
use std::collections::HashSet;
use std::fmt;

use serde::de::{Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::facets::{merge_facet_distribution, merge_facet_stats};
use super::raw::{
    field, object_fields, object_fields_at, parse, read_number, short_number, skip_number, splice,
    value_as_f64, value_as_u64, write_key, Fields, HitCursor, Malformed, Number, RawAnswer,
};
use super::scan::{skip_ws, string_special};
use super::{NodeAnswer, Pagination, SearchPlan};
use crate::{MeiliError, RESERVED_PREFIX, SHARD_FIELD};

/// The comparable content of one ranking-rule entry of `_rankingScoreDetails`.
enum RuleValue<'a> {
    /// Rules with a score (words, typo, proximity, attribute, exactness…, vector similarity): higher first.
    Score(f64),
    /// Custom ranking rules and `sort` entries (`field:asc|desc`), carrying the field's value.
    Sort { asc: bool, value: &'a Value },
    /// Geo sort entries (`_geoPoint(lat, lng):asc|desc`), carrying the distance.
    Geo { asc: bool, distance: Option<f64> },
    /// Anything this version does not know how to compare.
    Unknown,
}

#[inline]
fn direction(name: &str) -> Option<bool> {
    if name.ends_with(":asc") {
        Some(true)
    } else if name.ends_with(":desc") {
        Some(false)
    } else {
        None
    }
}

/// The parts of one `_rankingScoreDetails` entry the order depends on (`None`: absent).
#[derive(Default)]
struct EntryParts<'a> {
    distance: Option<&'a Value>,
    value: Option<&'a Value>,
    score: Option<&'a Value>,
    similarity: Option<&'a Value>,
}

fn rule_value<'a>(name: &str, entry: &'a Value) -> RuleValue<'a> {
    rule_value_of(
        name,
        EntryParts {
            distance: entry.get("distance"),
            value: entry.get("value"),
            score: entry.get("score"),
            similarity: entry.get("similarity"),
        },
    )
}

fn rule_value_of<'a>(name: &str, entry: EntryParts<'a>) -> RuleValue<'a> {
    if let Some(asc) = direction(name) {
        if name.starts_with("_geoPoint(") {
            return RuleValue::Geo {
                asc,
                distance: entry.distance.and_then(Value::as_f64),
            };
        }
        if let Some(value) = entry.value {
            return RuleValue::Sort { asc, value };
        }
    }
    if let Some(score) = entry.score.and_then(Value::as_f64) {
        return RuleValue::Score(score);
    }
    if let Some(sim) = entry.similarity {
        return RuleValue::Score(sim.as_f64().unwrap_or(0.0));
    }
    if name == "skipped" {
        return RuleValue::Score(0.0);
    }
    RuleValue::Unknown
}

/// Meilisearch's facet normalisation, approximated: trimmed and lowercased (Meilisearch also applies a
/// Unicode compatibility decomposition).
pub(crate) fn normalize(s: &str) -> String {
    s.trim().to_lowercase()
}

/// Meilisearch's sort-value order as "is `left` better than `right`": `null` (missing) is always last,
/// numbers always come before strings in both directions, strings compare by their normalised form.
fn compare_sort_values(asc: bool, left: &Value, right: &Value) -> Ordering {
    let ord = match (left, right) {
        (Value::Null, Value::Null) => return Ordering::Equal,
        (Value::Null, _) => return Ordering::Less,
        (_, Value::Null) => return Ordering::Greater,
        (Value::Number(_), Value::String(_)) => return Ordering::Greater,
        (Value::String(_), Value::Number(_)) => return Ordering::Less,
        (Value::Number(l), Value::Number(r)) => l
            .as_f64()
            .unwrap_or(0.0)
            .partial_cmp(&r.as_f64().unwrap_or(0.0))
            .unwrap_or(Ordering::Equal),
        (Value::String(l), Value::String(r)) => normalize(l).cmp(&normalize(r)),
        _ => return Ordering::Equal,
    };
    // Ascending: the smaller value is better.
    if asc {
        ord.reverse()
    } else {
        ord
    }
}

/// "Is `a` better than `b`" for one rule (`Greater` = `a` better).
fn compare_rule(a: &RuleValue, b: &RuleValue) -> Ordering {
    match (a, b) {
        (RuleValue::Score(l), RuleValue::Score(r)) => l.partial_cmp(r).unwrap_or(Ordering::Equal),
        (
            RuleValue::Sort { asc, value: l },
            RuleValue::Sort {
                asc: asc_r,
                value: r,
            },
        ) if asc == asc_r => compare_sort_values(*asc, l, r),
        (
            RuleValue::Geo { asc, distance: l },
            RuleValue::Geo {
                asc: asc_r,
                distance: r,
            },
        ) if asc == asc_r => match (l, r) {
            (None, None) => Ordering::Equal,
            (None, Some(_)) => Ordering::Less,
            (Some(_), None) => Ordering::Greater,
            (Some(l), Some(r)) => {
                let ord = l.partial_cmp(r).unwrap_or(Ordering::Equal);
                if *asc {
                    ord.reverse()
                } else {
                    ord
                }
            }
        },
        _ => Ordering::Equal,
    }
}

/// The entries of `_rankingScoreDetails`, sorted by their `order`.
fn sorted_details(hit: &Map<String, Value>) -> Option<Vec<(&str, &Value)>> {
    let details = hit.get("_rankingScoreDetails")?.as_object()?;
    let mut entries: Vec<(u64, &str, &Value)> = details
        .iter()
        .map(|(name, entry)| {
            let order = entry
                .get("order")
                .and_then(Value::as_u64)
                .unwrap_or(u64::MAX);
            (order, name.as_str(), entry)
        })
        .collect();
    entries.sort_by_key(|(order, _, _)| *order);
    Some(entries.into_iter().map(|(_, n, e)| (n, e)).collect())
}

/// Compares two hits by the ranking rules, in order, as one Meilisearch node ranks them: `Less` means `a`
/// ranks before `b`. Reads `_rankingScoreDetails` (rules sorted by `order`: scores higher first, custom
/// ranking and sort values in their direction, geo distances in theirs); falls back to `_rankingScore` only
/// when either hit lacks details. `Equal` means the ranking rules cannot tell them apart.
pub fn compare_hits(a: &Map<String, Value>, b: &Map<String, Value>) -> Ordering {
    if let (Some(da), Some(db)) = (sorted_details(a), sorted_details(b)) {
        for ((na, ea), (nb, eb)) in da.iter().zip(db.iter()) {
            let ord = compare_rule(&rule_value(na, ea), &rule_value(nb, eb));
            if ord != Ordering::Equal {
                return ord.reverse();
            }
        }
        return Ordering::Equal;
    }
    let sa = a.get("_rankingScore").and_then(Value::as_f64);
    let sb = b.get("_rankingScore").and_then(Value::as_f64);
    match (sa, sb) {
        (Some(x), Some(y)) => y.partial_cmp(&x).unwrap_or(Ordering::Equal),
        _ => Ordering::Equal,
    }
}

/// One sort value, read once: what [`compare_sort_values`] compares (strings already normalised).
#[derive(Debug, Clone, PartialEq)]
enum SortKey {
    Null,
    Number(f64),
    Text(String),
    /// Booleans, arrays, objects: equal to anything but `null`.
    Other,
}

impl SortKey {
    fn of(v: &Value) -> SortKey {
        match v {
            Value::Null => SortKey::Null,
            Value::Number(n) => SortKey::Number(n.as_f64().unwrap_or(0.0)),
            Value::String(s) => SortKey::Text(normalize(s)),
            _ => SortKey::Other,
        }
    }

    /// Exactly [`compare_sort_values`] on the values these keys were read from.
    fn compare(asc: bool, left: &SortKey, right: &SortKey) -> Ordering {
        let ord = match (left, right) {
            (SortKey::Null, SortKey::Null) => return Ordering::Equal,
            (SortKey::Null, _) => return Ordering::Less,
            (_, SortKey::Null) => return Ordering::Greater,
            (SortKey::Number(_), SortKey::Text(_)) => return Ordering::Greater,
            (SortKey::Text(_), SortKey::Number(_)) => return Ordering::Less,
            (SortKey::Number(l), SortKey::Number(r)) => l.partial_cmp(r).unwrap_or(Ordering::Equal),
            (SortKey::Text(l), SortKey::Text(r)) => l.cmp(r),
            _ => return Ordering::Equal,
        };
        if asc {
            ord.reverse()
        } else {
            ord
        }
    }
}

/// One ranking-rule entry, read once ([`RuleValue`] with owned, normalised sort values).
#[derive(Debug, Clone, PartialEq)]
enum RuleKey {
    Score(f64),
    Sort { asc: bool, value: SortKey },
    Geo { asc: bool, distance: Option<f64> },
    Unknown,
}

impl RuleKey {
    fn of(rule: RuleValue) -> RuleKey {
        match rule {
            RuleValue::Score(s) => RuleKey::Score(s),
            RuleValue::Sort { asc, value } => RuleKey::Sort {
                asc,
                value: SortKey::of(value),
            },
            RuleValue::Geo { asc, distance } => RuleKey::Geo { asc, distance },
            RuleValue::Unknown => RuleKey::Unknown,
        }
    }

    /// Exactly [`compare_rule`] on the entries these keys were read from.
    fn compare(a: &RuleKey, b: &RuleKey) -> Ordering {
        match (a, b) {
            (RuleKey::Score(l), RuleKey::Score(r)) => l.partial_cmp(r).unwrap_or(Ordering::Equal),
            (
                RuleKey::Sort { asc, value: l },
                RuleKey::Sort {
                    asc: asc_r,
                    value: r,
                },
            ) if asc == asc_r => SortKey::compare(*asc, l, r),
            (
                RuleKey::Geo { asc, distance: l },
                RuleKey::Geo {
                    asc: asc_r,
                    distance: r,
                },
            ) if asc == asc_r => {
                let (l, r) = (
                    RuleValue::Geo {
                        asc: *asc,
                        distance: *l,
                    },
                    RuleValue::Geo {
                        asc: *asc_r,
                        distance: *r,
                    },
                );
                compare_rule(&l, &r)
            }
            _ => Ordering::Equal,
        }
    }
}

/// What the merge compares of a list's head, read once per hit instead of once per comparison.
#[derive(Debug, Clone, PartialEq)]
struct HitKey {
    details: Option<Vec<RuleKey>>,
    score: Option<f64>,
    shard: u64,
}

impl HitKey {
    fn of(hit: &Map<String, Value>) -> HitKey {
        HitKey {
            details: sorted_details(hit).map(|d| {
                d.into_iter()
                    .map(|(name, entry)| RuleKey::of(rule_value(name, entry)))
                    .collect()
            }),
            score: hit.get("_rankingScore").and_then(Value::as_f64),
            shard: shard_of(hit),
        }
    }

    /// Exactly [`compare_hits`] on the hits these keys were read from.
    fn compare_ranking(&self, other: &HitKey) -> Ordering {
        if let (Some(da), Some(db)) = (&self.details, &other.details) {
            for (a, b) in da.iter().zip(db.iter()) {
                let ord = RuleKey::compare(a, b);
                if ord != Ordering::Equal {
                    return ord.reverse();
                }
            }
            return Ordering::Equal;
        }
        match (self.score, other.score) {
            (Some(x), Some(y)) => y.partial_cmp(&x).unwrap_or(Ordering::Equal),
            _ => Ordering::Equal,
        }
    }
}

/// A string as written in the text, borrowed unless it held escapes.
struct Key<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(s)))
            }
            fn visit_str<E>(self, s: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(s.to_owned())))
            }
            fn visit_string<E>(self, s: String) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(s)))
            }
        }
        d.deserialize_str(V)
    }
}

/// One `_rankingScoreDetails` entry read from its raw text: only what the order depends on, already
/// reduced to what [`rule_value_of`] and [`RuleKey::of`] read of it (`order` as `as_u64`, `distance` and
/// `score` as `as_f64`, `similarity` as `as_f64` or 0 when present, `value` as its [`SortKey`]). An entry
/// that is not an object has none of them, as `Value::get` finds none.
#[derive(Default)]
struct RawEntry {
    order: Option<u64>,
    distance: Option<f64>,
    value: Option<SortKey>,
    score: Option<f64>,
    similarity: Option<f64>,
}

impl RawEntry {
    /// [`RuleKey::of`]`(`[`rule_value_of`]`(name, entry))` on the entry this was read from.
    #[inline(always)]
    fn rule_key(self, name: &str) -> RuleKey {
        if let Some(asc) = direction(name) {
            if name.starts_with("_geoPoint(") {
                return RuleKey::Geo {
                    asc,
                    distance: self.distance,
                };
            }
            if let Some(value) = self.value {
                return RuleKey::Sort { asc, value };
            }
        }
        if let Some(score) = self.score {
            return RuleKey::Score(score);
        }
        if let Some(sim) = self.similarity {
            return RuleKey::Score(sim);
        }
        if name == "skipped" {
            return RuleKey::Score(0.0);
        }
        RuleKey::Unknown
    }
}

impl<'de> Deserialize<'de> for RawEntry {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawEntry;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawEntry, A::Error> {
                let mut e = RawEntry::default();
                // A repeated key keeps its last value, as in a parsed map.
                while let Some(Key(k)) = map.next_key()? {
                    match k.as_ref() {
                        "order" => e.order = map.next_value::<Value>()?.as_u64(),
                        "distance" => e.distance = map.next_value::<Value>()?.as_f64(),
                        "value" => e.value = Some(SortKey::of(&map.next_value()?)),
                        "score" => e.score = map.next_value::<Value>()?.as_f64(),
                        "similarity" => {
                            e.similarity = Some(map.next_value::<Value>()?.as_f64().unwrap_or(0.0))
                        }
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(e)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<RawEntry, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(RawEntry::default())
            }
            fn visit_bool<E>(self, _: bool) -> Result<RawEntry, E> {
                Ok(RawEntry::default())
            }
            fn visit_i64<E>(self, _: i64) -> Result<RawEntry, E> {
                Ok(RawEntry::default())
            }
            fn visit_u64<E>(self, _: u64) -> Result<RawEntry, E> {
                Ok(RawEntry::default())
            }
            fn visit_f64<E>(self, _: f64) -> Result<RawEntry, E> {
                Ok(RawEntry::default())
            }
            fn visit_str<E>(self, _: &str) -> Result<RawEntry, E> {
                Ok(RawEntry::default())
            }
            fn visit_unit<E>(self) -> Result<RawEntry, E> {
                Ok(RawEntry::default())
            }
        }
        d.deserialize_any(V)
    }
}

/// The entries of a raw `_rankingScoreDetails` object, in map order (a repeated rule keeps its first position
/// and its last value, as in a parsed map).
struct RawDetails<'a>(Vec<(Cow<'a, str>, RawEntry)>);

impl<'de> Deserialize<'de> for RawDetails<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawDetails<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawDetails<'de>, A::Error> {
                let mut out: Vec<(Cow<'de, str>, RawEntry)> = Vec::with_capacity(8);
                while let Some(Key(k)) = map.next_key()? {
                    let entry: RawEntry = map.next_value()?;
                    match out.iter_mut().find(|(n, _)| *n == k) {
                        Some(slot) => slot.1 = entry,
                        None => out.push((k, entry)),
                    }
                }
                Ok(RawDetails(out))
            }
        }
        d.deserialize_map(V)
    }
}

/// The rule keys of a raw `_rankingScoreDetails` value, sorted by `order` ([`sorted_details`] on its text);
/// `Some(None)` when it is not an object, `None` when it is not valid JSON. (Reading it field by field with
/// the structural scanner instead of `serde_json` was measured slower on typical details.)
///
/// Details written plainly (no escapes, numbers whose value is certain, see [`DetailsReader`]) are read by
/// a hand-written reader; anything else by `serde_json`, which decides what is refused.
fn raw_detail_keys(raw: &str) -> Option<Option<Vec<RuleKey>>> {
    if !raw.starts_with('{') {
        return parse(raw).map(|_| None);
    }
    if let Some(keys) = DetailsReader::read(raw) {
        return Some(Some(keys));
    }
    serde_detail_keys(raw)
}

/// [`raw_detail_keys`] on an object, always by `serde_json`.
fn serde_detail_keys(raw: &str) -> Option<Option<Vec<RuleKey>>> {
    let RawDetails(entries) = serde_json::from_str::<RawDetails>(raw).ok()?;
    Some(Some(sorted_rule_keys(entries)))
}

/// The rule keys of entries in map order, sorted by `order` (a stable sort, as [`sorted_details`]).
fn sorted_rule_keys<N: AsRef<str>>(mut entries: Vec<(N, RawEntry)>) -> Vec<RuleKey> {
    entries.sort_by_key(|(_, e)| e.order.unwrap_or(u64::MAX));
    entries
        .into_iter()
        .map(|(name, e)| e.rule_key(name.as_ref()))
        .collect()
}

/// The fields of a `_rankingScoreDetails` entry that [`RawEntry`] keeps, and the others.
enum EntryField {
    Order,
    Distance,
    Score,
    Similarity,
    Value,
    Other,
}

/// How deep [`DetailsReader`] follows containers parsed as a `Value` before leaving them to `serde_json`
/// (whose own limit is 128).
const FAST_DEPTH: u32 = 32;

/// A hand-written reader of `_rankingScoreDetails` text that is *sure* of what it reads: it yields exactly
/// what [`RawDetails`] yields through `serde_json`, or gives up (`None`) — on any escape, control character
/// or other fault, on a number parsed as a `Value` that `serde_json` refuses ([`DetailsReader::number`]),
/// on deep nesting. It never refuses text: giving up hands the text to `serde_json`, which decides. What it
/// accepts is valid JSON by `serde_json`'s rules: entries' `order`, `distance`, `score`, `similarity`,
/// `value` and non-object entries are checked as a `Value` parse checks them, other entry fields as
/// `IgnoredAny` does (grammar only, numbers of any size).
struct DetailsReader<'a> {
    text: &'a str,
    i: usize,
}

impl<'a> DetailsReader<'a> {
    fn read(text: &'a str) -> Option<Vec<RuleKey>> {
        DetailsReader::read_at(text, 0, &mut Vec::new())
            .and_then(|(keys, end)| (end == text.len()).then_some(keys))
    }

    /// The rule keys of the details object opening at `text[start]`, and the index just past it; `names`
    /// is room for the rules' names and orders (its content is replaced).
    fn read_at(
        text: &'a str,
        start: usize,
        names: &mut Vec<(&'a str, u64)>,
    ) -> Option<(Vec<RuleKey>, usize)> {
        let mut r = DetailsReader { text, i: start };
        // The keys in map order (a repeated rule keeps its first position and its last value), each
        // rule's name and `order` alongside in `names`.
        let mut keys: Vec<RuleKey> = Vec::with_capacity(8);
        names.clear();
        r.eat(b'{')?;
        r.ws();
        if r.eat(b'}').is_none() {
            loop {
                let name = r.string()?;
                r.ws();
                r.eat(b':')?;
                r.ws();
                let entry = r.entry()?;
                let order = entry.order.unwrap_or(u64::MAX);
                let key = entry.rule_key(name);
                match names.iter().position(|(n, _)| *n == name) {
                    Some(at) => {
                        *names.get_mut(at)? = (name, order);
                        *keys.get_mut(at)? = key;
                    }
                    None => {
                        names.push((name, order));
                        keys.push(key);
                    }
                }
                r.ws();
                if r.eat(b',').is_some() {
                    r.ws();
                    continue;
                }
                r.eat(b'}')?;
                break;
            }
        }
        let orders = names.as_slice();
        if orders.windows(2).all(|w| w[0].1 <= w[1].1) {
            // Meilisearch writes the rules in their order: nothing to sort.
            return Some((keys, r.i));
        }
        let mut pairs: Vec<(u64, RuleKey)> = orders.iter().map(|(_, o)| *o).zip(keys).collect();
        pairs.sort_by_key(|(order, _)| *order);
        Some((pairs.into_iter().map(|(_, k)| k).collect(), r.i))
    }

    #[inline(always)]
    fn peek(&self) -> Option<u8> {
        self.peek_at(self.i)
    }

    #[inline(always)]
    fn peek_at(&self, i: usize) -> Option<u8> {
        self.text.as_bytes().get(i).copied()
    }

    #[inline(always)]
    fn eat(&mut self, c: u8) -> Option<()> {
        (self.peek() == Some(c)).then(|| self.i += 1)
    }

    #[inline(always)]
    fn ws(&mut self) {
        // Compact text (Meilisearch's) has none: one byte checked.
        if self.peek().is_some_and(|c| c > b' ') {
            return;
        }
        self.i = skip_ws(self.text.as_bytes(), self.i);
    }

    /// A string without escapes or control characters: its content.
    #[inline(always)]
    fn string(&mut self) -> Option<&'a str> {
        self.eat(b'"')?;
        let from = self.i;
        let end = string_special(self.text.as_bytes(), from);
        if self.peek_at(end) != Some(b'"') {
            return None;
        }
        self.i = end + 1;
        self.text.get(from..end)
    }

    /// A non-negative integer of at most 18 digits (orders, counts) that nothing but a delimiter follows:
    /// its value, as [`read_number`] gives it; `None` (the reader does not move) for any other text.
    #[inline(always)]
    fn plain_uint(&mut self) -> Option<u64> {
        let b = self.text.as_bytes();
        let first = self.i;
        let mut v = u64::from(b.get(first)?.wrapping_sub(b'0'));
        if v > 9 {
            return None;
        }
        let mut j = first + 1;
        if v != 0 {
            while let Some(&d @ b'0'..=b'9') = b.get(j) {
                if j - first >= 18 {
                    return None;
                }
                v = v * 10 + u64::from(d - b'0');
                j += 1;
            }
        }
        match b.get(j) {
            Some(b'.' | b'e' | b'E' | b'0'..=b'9') => None,
            _ => {
                self.i = j;
                Some(v)
            }
        }
    }

    /// A number parsed as a `Value`. When [`read_number`] has no finite `f64` for it, `serde_json` parses
    /// that one number, as it would inside the details (number parsing does not depend on the context);
    /// one it refuses (out of range) makes the reader give up.
    ///
    /// Short numbers (orders, counts, most scores and sort values) are read by [`short_number`], others
    /// by [`DetailsReader::long_number`].
    #[inline(always)]
    fn number(&mut self) -> Option<Number> {
        let n = match short_number(self.text.as_bytes(), self.i) {
            Some(n) => n,
            None => self.long_number()?,
        };
        self.i = n.end;
        Some(n)
    }

    /// [`DetailsReader::number`] by [`read_number`], then `serde_json` (the reader does not move).
    #[inline(never)]
    fn long_number(&self) -> Option<Number> {
        let mut n = read_number(self.text.as_bytes(), self.i)?;
        if n.as_f64.is_none() {
            let v: Value = serde_json::from_str(self.text.get(self.i..n.end)?).ok()?;
            n.as_f64 = Some(v.as_f64()?);
            n.as_u64 = v.as_u64();
        }
        Some(n)
    }

    /// An entry field's name, the `:` after it and the whitespace around, as the field it names.
    /// Names written plainly and compactly (`"order":`) are recognised as whole byte strings.
    #[inline]
    fn entry_field(&mut self) -> Option<EntryField> {
        const ORDER: u64 = u64::from_le_bytes(*b"\"order\":");
        const SCORE: u64 = u64::from_le_bytes(*b"\"score\":");
        const VALUE: u64 = u64::from_le_bytes(*b"\"value\":");
        let b = self.text.as_bytes();
        if let Some(w) = b.get(self.i..self.i + 8) {
            let mut word = [0u8; 8];
            word.copy_from_slice(w);
            let field = match u64::from_le_bytes(word) {
                ORDER => Some(EntryField::Order),
                SCORE => Some(EntryField::Score),
                VALUE => Some(EntryField::Value),
                _ => None,
            };
            if let Some(field) = field {
                self.i += 8;
                self.ws();
                return Some(field);
            }
        }
        let key = self.string()?;
        self.ws();
        self.eat(b':')?;
        self.ws();
        Some(match key {
            "order" => EntryField::Order,
            "distance" => EntryField::Distance,
            "score" => EntryField::Score,
            "similarity" => EntryField::Similarity,
            "value" => EntryField::Value,
            _ => EntryField::Other,
        })
    }

    fn literal(&mut self, word: &str) -> Option<()> {
        let end = self.i + word.len();
        (self.text.get(self.i..end) == Some(word)).then(|| self.i = end)
    }

    /// Any value, checked: `strict`, as a `Value` parse checks it (numbers by [`DetailsReader::number`]);
    /// otherwise as `IgnoredAny` does (numbers by their grammar only).
    fn skip(&mut self, strict: bool, depth: u32) -> Option<()> {
        match self.peek()? {
            b'"' => self.string().map(|_| ()),
            b'n' => self.literal("null"),
            b't' => self.literal("true"),
            b'f' => self.literal("false"),
            b'-' | b'0'..=b'9' if strict => self.number().map(|_| ()),
            b'-' | b'0'..=b'9' => {
                self.i = skip_number(self.text.as_bytes(), self.i)?;
                Some(())
            }
            open @ (b'{' | b'[') => {
                if depth >= FAST_DEPTH {
                    return None;
                }
                let close = if open == b'{' { b'}' } else { b']' };
                self.i += 1;
                self.ws();
                if self.eat(close).is_some() {
                    return Some(());
                }
                loop {
                    if open == b'{' {
                        self.string()?;
                        self.ws();
                        self.eat(b':')?;
                        self.ws();
                    }
                    self.skip(strict, depth + 1)?;
                    self.ws();
                    if self.eat(b',').is_some() {
                        self.ws();
                        continue;
                    }
                    return self.eat(close);
                }
            }
            _ => None,
        }
    }

    /// A number's `f64` (certain), or `None` after checking a value of another kind.
    fn f64_or_skip(&mut self) -> Option<Option<f64>> {
        match self.peek()? {
            b'-' | b'0'..=b'9' => Some(self.number()?.as_f64),
            _ => self.skip(true, 2).map(|_| None),
        }
    }

    /// A sort value, as [`SortKey::of`] reads it.
    fn sort_value(&mut self) -> Option<SortKey> {
        Some(match self.peek()? {
            b'"' => SortKey::Text(normalize(self.string()?)),
            b'n' => {
                self.literal("null")?;
                SortKey::Null
            }
            b'-' | b'0'..=b'9' => SortKey::Number(self.number()?.as_f64?),
            _ => {
                self.skip(true, 2)?;
                SortKey::Other
            }
        })
    }

    /// One entry, as [`RawEntry`]'s `Deserialize` reads it.
    #[inline(always)]
    fn entry(&mut self) -> Option<RawEntry> {
        let mut e = RawEntry::default();
        match self.peek()? {
            b'{' => {}
            // `deserialize_any`: an array's elements are ignored, other values parsed.
            b'[' => return self.skip(false, 1).map(|_| e),
            _ => return self.skip(true, 1).map(|_| e),
        }
        self.i += 1;
        self.ws();
        if self.eat(b'}').is_some() {
            return Some(e);
        }
        loop {
            match self.entry_field()? {
                EntryField::Order => {
                    if let Some(order) = self.plain_uint() {
                        e.order = Some(order);
                    } else {
                        e.order = match self.peek()? {
                            b'-' | b'0'..=b'9' => self.number()?.as_u64,
                            _ => {
                                self.skip(true, 2)?;
                                None
                            }
                        }
                    }
                }
                EntryField::Distance => e.distance = self.f64_or_skip()?,
                EntryField::Score => e.score = self.f64_or_skip()?,
                EntryField::Similarity => e.similarity = Some(self.f64_or_skip()?.unwrap_or(0.0)),
                EntryField::Value => e.value = Some(self.sort_value()?),
                EntryField::Other if self.plain_uint().is_some() => {}
                EntryField::Other => match self.peek()? {
                    // A number `IgnoredAny` reads: its grammar only.
                    b'-' | b'0'..=b'9' => self.i = skip_number(self.text.as_bytes(), self.i)?,
                    _ => self.skip(false, 2)?,
                },
            }
            self.ws();
            if self.eat(b',').is_some() {
                self.ws();
                continue;
            }
            self.eat(b'}')?;
            return Some(e);
        }
    }
}

impl HitKey {
    /// [`HitKey::of`] on a hit read as raw fields; `None` when a field it reads is not valid JSON.
    ///
    /// `read`: the details already read while the fields were (see [`NodeList::advance`]), with the
    /// address of the text they were read from; used only if that text is the field's value.
    fn of_fields(hit: &Fields, read: Option<(*const u8, Vec<RuleKey>)>) -> Option<HitKey> {
        Some(HitKey {
            details: match field(hit, "_rankingScoreDetails") {
                Some(raw) => match read {
                    Some((at, keys)) if std::ptr::eq(at, raw.as_ptr()) => Some(keys),
                    _ => raw_detail_keys(raw)?,
                },
                None => None,
            },
            score: match field(hit, "_rankingScore") {
                Some(raw) => value_as_f64(raw)?,
                None => None,
            },
            shard: match field(hit, SHARD_FIELD) {
                Some(raw) => value_as_u64(raw)?.unwrap_or(u64::MAX),
                None => u64::MAX,
            },
        })
    }
}

/// Looks a (possibly dotted) attribute up in a hit.
fn lookup<'a>(hit: &'a Map<String, Value>, path: &str) -> Option<&'a Value> {
    if let Some(v) = hit.get(path) {
        return Some(v);
    }
    let (head, rest) = path.split_once('.')?;
    match hit.get(head)? {
        Value::Object(inner) => lookup(inner, rest),
        _ => None,
    }
}

/// [`lookup`] in a hit read as raw fields (only the fields on the path are parsed); `None` when a field
/// it parses is not valid JSON.
fn lookup_fields(hit: &Fields, path: &str) -> Option<Option<Value>> {
    if let Some(v) = field(hit, path) {
        return parse(v).map(Some);
    }
    let Some((head, rest)) = path.split_once('.') else {
        return Some(None);
    };
    let Some(raw) = field(hit, head) else {
        return Some(None);
    };
    match parse(raw)? {
        Value::Object(inner) => Some(lookup(&inner, rest).cloned()),
        _ => Some(None),
    }
}

/// One distinct key: strings (and booleans, as their text) by their normalised form, numbers by value
/// (`0` and `-0` apart, as their text is), anything else by its JSON text.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum DistinctKey {
    Text(String),
    Number(u64),
    Other(String),
}

/// The distinct keys of one value: a string by its normalised form, a number by its value, an array by each
/// of its elements; `null`, missing or empty means "distinct on its own" (no key).
fn distinct_keys(value: Option<&Value>, out: &mut Vec<DistinctKey>) {
    match value {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) => out.push(DistinctKey::Text(normalize(s))),
        Some(Value::Number(n)) => {
            out.push(DistinctKey::Number(n.as_f64().unwrap_or(0.0).to_bits()))
        }
        Some(Value::Bool(b)) => out.push(DistinctKey::Text(b.to_string())),
        Some(Value::Array(items)) => {
            for item in items {
                distinct_keys(Some(item), out);
            }
        }
        Some(other) => out.push(DistinctKey::Other(other.to_string())),
    }
}

/// A node's hits not read yet: the rest of its text, or parsed objects.
enum Pending<'a> {
    Raw(HitCursor<'a>),
    Parsed(std::vec::IntoIter<Map<String, Value>>),
}

/// A hit read for the merge: its raw top-level fields (its node's position, and the text they were read
/// from), or a parsed object.
enum Hit<'a> {
    Raw(Fields<'a>, usize, &'a str),
    Parsed(Map<String, Value>),
}

impl<'a> Hit<'a> {
    /// `None` when a field it reads is not valid JSON.
    /// `read` as in [`HitKey::of_fields`].
    fn key(&self, read: Option<(*const u8, Vec<RuleKey>)>) -> Option<HitKey> {
        match self {
            Hit::Raw(f, ..) => HitKey::of_fields(f, read),
            Hit::Parsed(m) => Some(HitKey::of(m)),
        }
    }

    /// `None` when a field it reads is not valid JSON.
    fn distinct_keys(&self, attr: &str) -> Option<Vec<DistinctKey>> {
        let mut keys = Vec::new();
        match self {
            Hit::Raw(f, ..) => distinct_keys(lookup_fields(f, attr)?.as_ref(), &mut keys),
            Hit::Parsed(m) => distinct_keys(lookup(m, attr), &mut keys),
        }
        Some(keys)
    }

    /// The hit as a parsed object (raw fields parsed one by one).
    fn into_map(self) -> Map<String, Value> {
        match self {
            Hit::Parsed(m) => m,
            Hit::Raw(fields, ..) => fields
                .into_iter()
                .map(|(k, v)| (k.into_owned(), parse(v).unwrap_or(Value::Null)))
                .collect(),
        }
    }
}

/// The head of a node's list: the hit, its ranking key, and its distinct keys (under `distinct`).
struct Head<'a> {
    key: HitKey,
    hit: Hit<'a>,
    distinct: Vec<DistinctKey>,
}

struct NodeList<'a> {
    order: usize,
    hits: Pending<'a>,
    /// The next hit that can still be merged, read when it became the head.
    head: Option<Head<'a>>,
    /// Room for [`DetailsReader`], reused from hit to hit.
    names: Vec<(&'a str, u64)>,
}

impl<'a> NodeList<'a> {
    fn new(order: usize, hits: Pending<'a>) -> NodeList<'a> {
        NodeList {
            order,
            hits,
            head: None,
            names: Vec::new(),
        }
    }

    /// The node's next hit, read: a text hit as its top-level fields, with its `_rankingScoreDetails`
    /// read alongside (`read`, see [`HitKey::of_fields`]) unless `distinct` is set. `None` past the last.
    fn next_hit(
        &mut self,
        distinct: Option<&str>,
        pool: &mut Pool<'a>,
        read: &mut Option<(*const u8, Vec<RuleKey>)>,
    ) -> Result<Option<Hit<'a>>, MeiliError> {
        let order = self.order;
        match &mut self.hits {
            Pending::Parsed(hits) => Ok(hits.next().map(Hit::Parsed)),
            Pending::Raw(cursor) => {
                let Some(at) = cursor.next_start().map_err(|m| bad(order, m.message()))? else {
                    return Ok(None);
                };
                let text = cursor.text();
                let into = pool.pop().unwrap_or_default();
                let names = &mut self.names;
                // Under distinct, many hits are skipped without their key: their details are only
                // scanned, and read (by `HitKey::of_fields`) for the hits that are kept.
                let special = distinct.is_none().then_some("_rankingScoreDetails");
                let (fields, end) = object_fields_at(text, at, into, special, |at| {
                    let (keys, end) = DetailsReader::read_at(text, at, names)?;
                    *read = Some((text.get(at..)?.as_ptr(), keys));
                    Some(end)
                })
                .ok_or_else(|| invalid(order))?;
                cursor.advance_to(end);
                Ok(Some(Hit::Raw(fields, order, text)))
            }
        }
    }

    /// Reads the next head. Under `distinct`, hits sharing a key with `seen` are skipped without reading
    /// their ranking key: `seen` only grows, so the merge would drop them whenever they came up.
    fn advance(
        &mut self,
        distinct: Option<&str>,
        seen: &HashSet<DistinctKey>,
        pool: &mut Pool<'a>,
    ) -> Result<(), MeiliError> {
        self.head = None;
        loop {
            // The details are read while the fields are, instead of being skipped then read again
            // (without distinct).
            let mut read: Option<(*const u8, Vec<RuleKey>)> = None;
            let Some(hit) = self.next_hit(distinct, pool, &mut read)? else {
                return Ok(());
            };
            let keys = match distinct {
                Some(attr) => {
                    let keys = hit.distinct_keys(attr).ok_or_else(|| invalid(self.order))?;
                    if keys.iter().any(|k| seen.contains(k)) {
                        recycle(pool, hit);
                        continue;
                    }
                    keys
                }
                None => Vec::new(),
            };
            self.head = Some(Head {
                key: hit.key(read).ok_or_else(|| invalid(self.order))?,
                hit,
                distinct: keys,
            });
            return Ok(());
        }
    }
}

pub(crate) fn bad(order: usize, what: &str) -> MeiliError {
    MeiliError::bad_node_response(&format!("#{order}"), what)
}

/// A hit the merge reads is not valid JSON: the answer is not one JSON object, as a parser would say.
fn invalid(order: usize) -> MeiliError {
    bad(order, Malformed::NotObject.message())
}

fn shard_of(hit: &Map<String, Value>) -> u64 {
    hit.get(SHARD_FIELD)
        .and_then(Value::as_u64)
        .unwrap_or(u64::MAX)
}

fn strip_reserved(map: &mut Map<String, Value>, added: &[String]) {
    map.retain(|k, _| !k.starts_with(RESERVED_PREFIX) && !added.iter().any(|a| a == k));
}

fn strip_hit(mut hit: Map<String, Value>, plan: &SearchPlan) -> Map<String, Value> {
    strip_reserved(&mut hit, &plan.added_attributes);
    for key in ["_formatted", "_matchesPosition"] {
        if let Some(Value::Object(inner)) = hit.get_mut(key) {
            strip_reserved(inner, &plan.added_attributes);
        }
    }
    if !plan.show_ranking_score {
        hit.remove("_rankingScore");
    }
    if !plan.show_ranking_score_details {
        hit.remove("_rankingScoreDetails");
    }
    hit
}

fn required_count(body: &Map<String, Value>, key: &str, order: usize) -> Result<u64, MeiliError> {
    body.get(key).and_then(Value::as_u64).ok_or_else(|| {
        bad(
            order,
            &format!("`{key}` is missing or not a non-negative integer"),
        )
    })
}

/// Field lists of hits done with, cleared, to be filled again (one allocation per list, not per hit).
type Pool<'a> = Vec<Fields<'a>>;

/// Gives a hit's field list back to `pool`.
fn recycle<'a>(pool: &mut Pool<'a>, hit: Hit<'a>) {
    if let Hit::Raw(fields, ..) = hit {
        give_back(pool, fields);
    }
}

fn give_back<'a>(pool: &mut Pool<'a>, mut fields: Fields<'a>) {
    fields.clear();
    pool.push(fields);
}

/// The k-way merge with distinct, up to the end of the window: `window` is called with each hit of the
/// window, in order, and may give the hit's field list back for reuse.
fn merge_lists<'a>(
    plan: &SearchPlan,
    mut lists: Vec<NodeList<'a>>,
    mut window: impl FnMut(Hit<'a>) -> Option<Fields<'a>>,
) -> Result<(), MeiliError> {
    let wanted = plan.window_offset + plan.window_limit;
    let distinct = plan.distinct.as_deref();
    let mut seen: HashSet<DistinctKey> = HashSet::new();
    let mut pool: Pool<'a> = Vec::new();
    for list in &mut lists {
        list.advance(distinct, &seen, &mut pool)?;
    }
    let mut merged = 0;
    while merged < wanted {
        let mut best: Option<usize> = None;
        for (i, list) in lists.iter().enumerate() {
            let Some(head) = &list.head else {
                continue;
            };
            best = match best {
                None => Some(i),
                Some(b) => {
                    let current = &lists[b];
                    let Some(other) = &current.head else {
                        continue;
                    };
                    let ord = head
                        .key
                        .compare_ranking(&other.key)
                        .then_with(|| head.key.shard.cmp(&other.key.shard))
                        .then_with(|| list.order.cmp(&current.order));
                    if ord == Ordering::Less {
                        Some(i)
                    } else {
                        Some(b)
                    }
                }
            };
        }
        let Some(b) = best else { break };
        let Some(Head {
            hit,
            distinct: keys,
            ..
        }) = lists[b].head.take()
        else {
            break;
        };
        // Under distinct, the best hit of each value wins: a later one sharing a value is dropped.
        let keep = !keys.iter().any(|k| seen.contains(k));
        if keep {
            seen.extend(keys);
        }
        lists[b].advance(distinct, &seen, &mut pool)?;
        if !keep {
            recycle(&mut pool, hit);
            continue;
        }
        merged += 1;
        if merged <= plan.window_offset {
            recycle(&mut pool, hit);
        } else if let Some(fields) = window(hit) {
            give_back(&mut pool, fields);
        }
    }
    Ok(())
}

/// Everything of the response but `hits`, in Meilisearch's key order: totals, timing, echoes, facets.
fn envelope(
    plan: &SearchPlan,
    bodies: &[(usize, &Map<String, Value>)],
) -> Result<Map<String, Value>, MeiliError> {
    let max = plan.context.max_total_hits as u64;
    let mut processing = 0u64;
    let mut total = 0u64;
    let mut query: Option<Value> = None;
    let mut query_vector: Option<Value> = None;
    let mut request_uid: Option<Value> = None;
    let mut semantic: Option<u64> = None;
    let mut performance: Option<(u64, Value)> = None;
    let mut distributions = Vec::new();
    let mut stats = Vec::new();
    let total_key = match plan.pagination {
        Pagination::OffsetLimit { .. } => "estimatedTotalHits",
        Pagination::Pages { .. } => "totalHits",
    };
    for (order, body) in bodies {
        total = total.saturating_add(required_count(body, total_key, *order)?);
        let took = body
            .get("processingTimeMs")
            .and_then(Value::as_u64)
            .unwrap_or(0);
        processing = processing.max(took);
        if let Some(details) = body.get("performanceDetails") {
            if performance.as_ref().is_none_or(|(t, _)| took > *t) {
                performance = Some((took, details.clone()));
            }
        }
        if query.is_none() {
            query = body.get("query").filter(|q| q.is_string()).cloned();
        }
        if query_vector.is_none() {
            query_vector = body.get("queryVector").cloned();
        }
        if request_uid.is_none() {
            request_uid = body.get("requestUid").cloned();
        }
        if let Some(n) = body.get("semanticHitCount").and_then(Value::as_u64) {
            semantic = Some(semantic.unwrap_or(0).saturating_add(n));
        }
        match body.get("facetDistribution") {
            None => {}
            Some(Value::Object(d)) => distributions.push((*order, d)),
            Some(_) => return Err(bad(*order, "`facetDistribution` is not an object")),
        }
        match body.get("facetStats") {
            None => {}
            Some(Value::Object(s)) => stats.push((*order, s)),
            Some(_) => return Err(bad(*order, "`facetStats` is not an object")),
        }
    }
    let capped = total.min(max);

    let mut out = Map::new();
    out.insert(
        "query".into(),
        query.unwrap_or_else(|| Value::String(plan.query.clone())),
    );
    if let Some(v) = query_vector {
        out.insert("queryVector".into(), v);
    }
    out.insert("processingTimeMs".into(), Value::from(processing));
    match plan.pagination {
        Pagination::OffsetLimit { limit, .. } => {
            out.insert("limit".into(), Value::from(limit as u64));
            out.insert("offset".into(), Value::from(plan.window_offset as u64));
            out.insert("estimatedTotalHits".into(), Value::from(capped));
        }
        Pagination::Pages {
            page,
            hits_per_page,
        } => {
            let total_pages = if hits_per_page == 0 {
                0
            } else {
                capped.div_ceil(hits_per_page as u64)
            };
            out.insert("hitsPerPage".into(), Value::from(hits_per_page as u64));
            out.insert("page".into(), Value::from(page as u64));
            out.insert("totalPages".into(), Value::from(total_pages));
            out.insert("totalHits".into(), Value::from(capped));
        }
    }
    if !distributions.is_empty() {
        let merged = merge_facet_distribution(&distributions, &plan.context, total)?;
        out.insert("facetDistribution".into(), Value::Object(merged));
    }
    if !stats.is_empty() {
        let merged = merge_facet_stats(&stats)?;
        out.insert("facetStats".into(), Value::Object(merged));
    }
    if let Some(uid) = request_uid {
        out.insert("requestUid".into(), uid);
    }
    if let Some((_, details)) = performance {
        out.insert("performanceDetails".into(), details);
    }
    if let Some(n) = semantic {
        out.insert("semanticHitCount".into(), Value::from(n));
    }
    Ok(out)
}

/// Merges the nodes' answers into exactly the response one node holding every shard would give.
///
/// `answers` may come in any order; `NodeAnswer::order` is the node's position in the covering set.
/// Errors: `miroir_bad_node_response` (502) when an answer is not a search result (not an object, `hits`
/// missing or not an array of objects, the expected total missing). Never panics.
///
/// Answers received as text merge faster with [`merge_search_text`], which never parses hits whole.
pub fn merge_search(plan: &SearchPlan, answers: Vec<NodeAnswer>) -> Result<Value, MeiliError> {
    let mut answers = answers;
    answers.sort_by_key(|a| a.order);
    let mut lists = Vec::with_capacity(answers.len());
    let mut bodies = Vec::with_capacity(answers.len());
    for answer in answers {
        let order = answer.order;
        let Value::Object(mut body) = answer.body else {
            return Err(bad(order, Malformed::NotObject.message()));
        };
        let hits = match body.remove("hits") {
            Some(Value::Array(hits)) => hits,
            _ => return Err(bad(order, Malformed::NoHits.message())),
        };
        let mut objects = Vec::with_capacity(hits.len());
        for hit in hits {
            match hit {
                Value::Object(h) => objects.push(h),
                _ => return Err(bad(order, Malformed::HitNotObject.message())),
            }
        }
        lists.push(NodeList::new(order, Pending::Parsed(objects.into_iter())));
        bodies.push((order, body));
    }
    let mut hits: Vec<Value> = Vec::new();
    merge_lists(plan, lists, |h| {
        hits.push(Value::Object(strip_hit(h.into_map(), plan)));
        None
    })?;
    let refs: Vec<(usize, &Map<String, Value>)> = bodies.iter().map(|(o, b)| (*o, b)).collect();
    let rest = envelope(plan, &refs)?;
    let mut out = Map::with_capacity(rest.len() + 1);
    out.insert("hits".into(), Value::Array(hits));
    out.extend(rest);
    Ok(Value::Object(out))
}

/// Whether a field survives `displayed` (see [`crate::ops::settings::apply_displayed`]): `_` fields that
/// are not reserved always do, others when listed or when a listed path starts with `field.`.
fn displayed_field(key: &str, displayed: Option<&[String]>) -> bool {
    let Some(list) = displayed else {
        return true;
    };
    key.starts_with('_') && !key.starts_with(RESERVED_PREFIX)
        || list.iter().any(|d| {
            d == key
                || d.strip_prefix(key)
                    .is_some_and(|rest| rest.starts_with('.'))
        })
}

/// What a nested object's rewrite drops: reserved and added fields (`strip`), undisplayed fields.
#[derive(Clone, Copy)]
struct Nested<'p> {
    strip: bool,
    displayed: Option<&'p [String]>,
    /// Whether its own `_formatted` is rewritten too (`apply_displayed` recurses into `_formatted`).
    recurse: bool,
}

/// Writes a raw object keeping only the fields `how` accepts, `_formatted` rewritten when `how` says so;
/// a value that is not an object is written as it is. `false` when the text is not valid JSON (the output
/// is then unfinished).
#[must_use]
fn write_object(out: &mut String, raw: &str, plan: &SearchPlan, how: Nested) -> bool {
    let Some(fields) = raw.starts_with('{').then(|| object_fields(raw)).flatten() else {
        return splice(out, raw);
    };
    out.push('{');
    let mut first = true;
    for (k, v) in &fields {
        if how.strip
            && (k.starts_with(RESERVED_PREFIX) || plan.added_attributes.iter().any(|a| a == k))
        {
            continue;
        }
        if !displayed_field(k, how.displayed) {
            continue;
        }
        if !first {
            out.push(',');
        }
        first = false;
        write_key(out, k);
        out.push(':');
        let written = if how.recurse && k == "_formatted" && how.displayed.is_some() {
            write_object(
                out,
                v,
                plan,
                Nested {
                    strip: false,
                    ..how
                },
            )
        } else {
            splice(out, v)
        };
        if !written {
            return false;
        }
    }
    out.push('}');
    true
}

/// Writes one merged hit: [`strip_hit`] then `displayed`, by splicing the kept fields' raw text. `false`
/// when a kept field is not valid JSON (the output is then unfinished).
/// The hit's field list is given back for reuse.
fn write_hit<'a>(
    out: &mut String,
    hit: Hit<'a>,
    plan: &SearchPlan,
    displayed: Option<&[String]>,
) -> (bool, Option<Fields<'a>>) {
    match hit {
        Hit::Raw(fields, _, text) => (
            write_fields(out, &fields, text, plan, displayed),
            Some(fields),
        ),
        Hit::Parsed(map) => {
            let mut v = Value::Object(strip_hit(map, plan));
            crate::ops::settings::apply_displayed(&mut v, displayed);
            out.push_str(&v.to_string());
            (true, None)
        }
    }
}

/// [`write_hit`] of a hit read as raw fields from `text`. Kept fields that lie next to each other in the
/// text, with keys written without escapes, are copied as one piece (whitespace between them included).
#[must_use]
fn write_fields(
    out: &mut String,
    fields: &Fields,
    text: &str,
    plan: &SearchPlan,
    displayed: Option<&[String]>,
) -> bool {
    out.push('{');
    let mut first = true;
    // The run of kept fields not written yet: `text[run.0..run.1]`.
    let mut run: Option<(usize, usize)> = None;
    let flush = |out: &mut String, first: &mut bool, run: &mut Option<(usize, usize)>| {
        if let Some(piece) = run.take().and_then(|(s, e)| text.get(s..e)) {
            if !*first {
                out.push(',');
            }
            *first = false;
            out.push_str(piece);
        }
    };
    for (k, v) in fields {
        if k.starts_with(RESERVED_PREFIX)
            || plan.added_attributes.iter().any(|a| a == k)
            || (!plan.show_ranking_score && k == "_rankingScore")
            || (!plan.show_ranking_score_details && k == "_rankingScoreDetails")
            || !displayed_field(k, displayed)
        {
            continue;
        }
        let rewritten = matches!(k.as_ref(), "_formatted" | "_matchesPosition");
        if let (Cow::Borrowed(key), false) = (k, rewritten) {
            if let Some((start, end)) = field_span(text, key, v) {
                if v.starts_with(['{', '[']) && serde_json::from_str::<IgnoredAny>(v).is_err() {
                    return false;
                }
                match &mut run {
                    Some((_, e)) if adjacent(text, *e, start) => *e = end,
                    _ => {
                        flush(out, &mut first, &mut run);
                        run = Some((start, end));
                    }
                }
                continue;
            }
        }
        flush(out, &mut first, &mut run);
        if !first {
            out.push(',');
        }
        first = false;
        write_key(out, k);
        out.push(':');
        let written = match k.as_ref() {
            "_formatted" => write_object(
                out,
                v,
                plan,
                Nested {
                    strip: true,
                    displayed,
                    recurse: true,
                },
            ),
            "_matchesPosition" => write_object(
                out,
                v,
                plan,
                Nested {
                    strip: true,
                    displayed: None,
                    recurse: false,
                },
            ),
            _ => splice(out, v),
        };
        if !written {
            return false;
        }
    }
    flush(out, &mut first, &mut run);
    out.push('}');
    true
}

/// Where the field whose key (read without escapes) and value are these slices of `text` lies in it:
/// from its key's opening quote to its value's end. `None` when they are not slices of `text` laid out
/// as a field.
fn field_span(text: &str, key: &str, value: &str) -> Option<(usize, usize)> {
    let base = text.as_ptr() as usize;
    let start = (key.as_ptr() as usize).checked_sub(base)?.checked_sub(1)?;
    let value_start = (value.as_ptr() as usize).checked_sub(base)?;
    let end = value_start.checked_add(value.len())?;
    let b = text.as_bytes();
    // `"key"`, whitespace, `:`, whitespace, then the value.
    let after_key = start + key.len() + 2;
    let colon = skip_ws(b, after_key);
    (b.get(start) == Some(&b'"')
        && b.get(after_key - 1) == Some(&b'"')
        && b.get(colon) == Some(&b':')
        && skip_ws(b, colon + 1) == value_start
        && end <= b.len())
    .then_some((start, end))
}

/// Whether only whitespace and one comma lie between `text[end]` and `text[start]`: two fields written
/// one after the other.
fn adjacent(text: &str, end: usize, start: usize) -> bool {
    let b = text.as_bytes();
    let comma = skip_ws(b, end);
    comma < start && b.get(comma) == Some(&b',') && skip_ws(b, comma + 1) == start
}

/// [`merge_search`] on answers kept as the nodes' text ([`RawAnswer`]), answering the response's JSON text.
/// Hits are never parsed whole: the merge reads each hit's top-level fields once, parses only
/// `_rankingScore`, `_rankingScoreDetails`, `_miroir_shard` and the distinct attribute, and writes the reply
/// by splicing the kept fields' raw text. `displayed` (the index's `displayedAttributes` as the proxy
/// applies it, `None` for all) is applied to every hit as
/// [`crate::ops::settings::apply_displayed_to_hits`] would.
///
/// The text parses to exactly the value [`merge_search`] followed by `apply_displayed_to_hits` gives on
/// the parsed answers. Errors are the same, in the same order, for answers that are valid JSON whose hits
/// are all objects; text that is not valid JSON, or a hit that is not an object, is refused when the merge
/// reads it (hits beyond the window may never be read, see the `search::raw` module). Never panics.
pub fn merge_search_text(
    plan: &SearchPlan,
    answers: Vec<RawAnswer>,
    displayed: Option<&[String]>,
) -> Result<String, MeiliError> {
    let mut answers = answers;
    answers.sort_by_key(RawAnswer::order);
    let mut lists = Vec::with_capacity(answers.len());
    let mut bodies = Vec::with_capacity(answers.len());
    let mut hits_bytes = 0usize;
    for answer in &answers {
        let order = answer.order();
        let located = answer.located().map_err(|m| bad(order, m.message()))?;
        hits_bytes += located.hits.1.saturating_sub(located.hits.0);
        let cursor = HitCursor::new(answer.text(), located);
        lists.push(NodeList::new(order, Pending::Raw(cursor)));
        bodies.push((order, &located.rest));
    }
    // The window's hits are written as the merge finds them; a hit that cannot be written is reported
    // after the merge's and the envelope's own errors, as when the reply was written after them.
    // Room for about what is written: the window's share of one node's hits (each node answered the
    // window and the hits before it).
    let hits_size = (hits_bytes / lists.len().max(1)).saturating_mul(plan.window_limit)
        / (plan.window_offset + plan.window_limit).max(1);
    let mut out = String::with_capacity(hits_size + 256);
    out.push_str("{\"hits\":[");
    let mut unwritable: Option<usize> = None;
    let mut first = true;
    merge_lists(plan, lists, |hit| {
        if unwritable.is_some() {
            return None;
        }
        if !first {
            out.push(',');
        }
        first = false;
        let order = match &hit {
            Hit::Raw(_, order, _) => *order,
            Hit::Parsed(_) => 0,
        };
        let (written, fields) = write_hit(&mut out, hit, plan, displayed);
        if !written {
            unwritable = Some(order);
        }
        fields
    })?;
    let rest = envelope(plan, &bodies)?;
    if let Some(order) = unwritable {
        return Err(invalid(order));
    }
    let rest = serde_json::to_string(&rest).map_err(|e| MeiliError::internal(e.to_string()))?;
    out.reserve(rest.len() + 2);
    out.push(']');
    match rest.strip_prefix('{') {
        Some("}") | None => out.push('}'),
        Some(tail) => {
            out.push(',');
            out.push_str(tail);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cached_keys_compare_exactly_like_compare_hits() {
        use serde_json::json;
        let hit = |score: f64, sort: Value, shard: u64| {
            json!({"_rankingScore": score, "_miroir_shard": shard, "_rankingScoreDetails": {
                "words": {"order": 0, "score": score},
                "title:asc": {"order": 1, "value": sort},
                "_geoPoint(1.0, 2.0):desc": {"order": 2, "distance": score * 10.0}
            }})
            .as_object()
            .unwrap()
            .clone()
        };
        let sorts = [
            json!(null),
            json!(3),
            json!(2.5),
            json!("Abc "),
            json!("abd"),
            json!(true),
            json!([1]),
        ];
        let mut hits = Vec::new();
        for (i, v) in sorts.iter().enumerate() {
            for score in [0.5, 0.9] {
                hits.push(hit(score, v.clone(), i as u64));
            }
        }
        let mut bare = serde_json::Map::new();
        bare.insert("_rankingScore".into(), json!(0.7));
        hits.push(bare);
        hits.push(serde_json::Map::new());
        for a in &hits {
            for b in &hits {
                assert_eq!(
                    HitKey::of(a).compare_ranking(&HitKey::of(b)),
                    compare_hits(a, b),
                    "{a:?} vs {b:?}"
                );
            }
        }
    }

    use super::super::TestRng as Rng;

    fn random_value(rng: &mut Rng) -> Value {
        use serde_json::json;
        match rng.below(9) {
            0 => json!(null),
            1 => json!(rng.below(5)),
            2 => json!(rng.below(5) as f64 / 4.0 - 0.5),
            3 => json!(rng.pick(&[
                "Drama", " drama", "COMEDY", "comedy", "Émile", "x\"y", "]}\\\"{[", "a/b\\",
                "\u{1}\n"
            ])),
            4 => json!(rng.below(2) == 0),
            5 => json!([rng.pick(&["drama", "Comedy"]), rng.below(3)]),
            6 => json!({"a": rng.below(3)}),
            7 => json!(-0.0),
            _ => json!("true"),
        }
    }

    fn random_hit(rng: &mut Rng, shard: u64) -> Value {
        use serde_json::json;
        let mut hit = Map::new();
        hit.insert("id".into(), json!(format!("d{}", rng.below(1000))));
        if rng.below(4) > 0 {
            hit.insert("genre".into(), random_value(rng));
        }
        hit.insert(
            "info".into(),
            json!({"genre": random_value(rng), "n": rng.below(9)}),
        );
        hit.insert("k\"\u{1}é".into(), json!("weird key"));
        if rng.below(5) > 0 {
            hit.insert(SHARD_FIELD.into(), json!(shard));
        }
        if rng.below(6) == 0 {
            hit.insert("_miroir_other".into(), json!(1));
        }
        if rng.below(3) > 0 {
            hit.insert("_rankingScore".into(), json!(rng.below(4) as f64 / 4.0));
        }
        if rng.below(5) > 0 {
            let mut details = Map::new();
            details.insert(
                "words".into(),
                json!({"order": 0, "score": rng.below(3) as f64 / 2.0}),
            );
            let sort_order = if rng.below(6) == 0 {
                json!("x")
            } else {
                json!(1)
            };
            details.insert(
                rng.pick(&["genre:asc", "genre:desc", "rating"]).to_string(),
                json!({"order": sort_order, "value": random_value(rng)}),
            );
            if rng.below(3) == 0 {
                details.insert(
                    "_geoPoint(1.0, 2.0):asc".into(),
                    json!({"order": 2, "distance": rng.below(3)}),
                );
            }
            if rng.below(8) == 0 {
                details.insert("skipped".into(), json!([1, {"order": 3}]));
            }
            hit.insert("_rankingScoreDetails".into(), Value::Object(details));
        }
        if rng.below(2) == 0 {
            hit.insert(
                "_formatted".into(),
                json!({"id": "<em>d</em>", "genre": "g", "_miroir_shard": "1", "info": {"genre": "x"},
                       "_formatted": {"id": 1, "genre": 2, "_miroir_shard": 3}}),
            );
        }
        if rng.below(2) == 0 {
            hit.insert(
                "_matchesPosition".into(),
                json!({"title": [{"start": 0, "length": 2}], "_miroir_shard": [], "genre": []}),
            );
        }
        Value::Object(hit)
    }

    /// A node's text: the serialized body, with some hits given a repeated key (first position, last
    /// value, as `serde_json::Map` reads it) and some spacing.
    fn node_text(rng: &mut Rng, body: &Value) -> String {
        let mut text = String::from("{ \"hits\" : [ ");
        for (i, hit) in body["hits"].as_array().unwrap().iter().enumerate() {
            if i > 0 {
                text.push_str(" ,\n");
            }
            // Some hits pretty-printed (whitespace everywhere, hits spanning many scanner blocks), some with
            // `é` and `/` written as escapes (the same value).
            let h = match rng.below(4) {
                0 => serde_json::to_string_pretty(hit).unwrap(),
                1 => hit.to_string().replace('é', "\\u00e9").replace('/', "\\/"),
                _ => hit.to_string(),
            };
            match rng.below(4) {
                0 => text.push_str(&format!("{{\"genre\": \"dup\", {}", &h[1..])),
                1 => text.push_str(&format!("{{\"_rankingScore\": 7, {}", &h[1..])),
                _ => text.push_str(&h),
            }
        }
        text.push_str(" ]");
        for (k, v) in body.as_object().unwrap() {
            if k != "hits" {
                text.push_str(&format!(", {}: {v}", Value::String(k.clone())));
            }
        }
        text.push('}');
        text
    }

    /// Merges node texts with the text merge (limit 2, nodes in their order).
    fn merge_texts(texts: &[&str]) -> Result<String, MeiliError> {
        let mut client = Map::new();
        client.insert("limit".into(), Value::from(2));
        let plan = super::super::plan_search(&client, &super::super::SearchContext::default())
            .expect("a valid search");
        let answers = texts
            .iter()
            .enumerate()
            .map(|(i, t)| RawAnswer::parse(i, t.to_string()))
            .collect();
        merge_search_text(&plan, answers, None)
    }

    #[test]
    fn hits_beyond_the_window_are_never_read() {
        // Limit 2 over one node reads three hits (the third becomes the next head); the fourth, which is
        // not even balanced, is never scanned when the answer is laid out as Meilisearch writes it.
        let hit = |id: u32, score: f64| format!(r#"{{"id":{id},"_rankingScore":{score}}}"#);
        let answer = |first: &str, last: &str| {
            format!(
                r#"{{"hits":[{},{},{},{last}],{first}"processingTimeMs":1,"limit":4,"offset":0,"estimatedTotalHits":4}}"#,
                hit(1, 0.9),
                hit(2, 0.8),
                hit(3, 0.7),
            )
        };
        let broken = r#"{"id": [4, }"#;
        let reply: Value =
            serde_json::from_str(&merge_texts(&[&answer(r#""query":"","#, broken)]).unwrap())
                .unwrap();
        let ids: Vec<&Value> = reply["hits"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| &h["id"])
            .collect();
        assert_eq!(ids, [1, 2]);
        // Laid out otherwise (`query` not right after `hits`), the answer is located in full and refused.
        let other = answer(r#""q":"","query":"","#, broken);
        assert_eq!(merge_texts(&[&other]), Err(invalid(0)));
        // Within the window, the same hit is refused.
        let third = format!(
            r#"{{"hits":[{},{broken},{}],"query":"","processingTimeMs":1,"estimatedTotalHits":3}}"#,
            hit(1, 0.9),
            hit(3, 0.7)
        );
        assert_eq!(merge_texts(&[&third]), Err(invalid(0)));
    }

    #[test]
    fn garbled_node_text_is_an_error_or_never_reaches_the_reply() {
        let hit = |id: u32, score: f64, extra: &str| {
            format!(
                r#"{{"id": {id}, "_rankingScore": {score}, "_miroir_shard": 0, "info": {{"a": [1, "x"]}}{extra}}}"#
            )
        };
        let answer = |hits: &[String]| {
            format!(
                r#"{{"hits": [{}], "query": "", "processingTimeMs": 1, "estimatedTotalHits": 9}}"#,
                hits.join(",")
            )
        };
        let good = answer(&[hit(1, 0.9, ""), hit(2, 0.8, ""), hit(3, 0.7, "")]);
        let reply: Value = serde_json::from_str(&merge_texts(&[&good]).unwrap()).unwrap();
        assert_eq!(reply["hits"].as_array().unwrap().len(), 2);
        let not_object = bad(0, Malformed::NotObject.message());
        // Garbled grammar inside a kept hit: its nested value, its ranking details, a scalar field.
        for extra in [
            r#", "n": {"a": tru}"#,
            r#", "n": [1 2]"#,
            r#", "n": {"a" 1}"#,
            r#", "_rankingScoreDetails": {"words": {"order": 0, "score": 1,}}"#,
            r#", "n": 01"#,
            r#", "n": tru"#,
        ] {
            let text = answer(&[hit(1, 0.9, extra), hit(2, 0.8, ""), hit(3, 0.7, "")]);
            assert_eq!(merge_texts(&[&text]), Err(not_object.clone()), "{extra}");
        }
        // Broken structure anywhere, even in a hit the merge never reads: the answer is refused.
        for extra in [
            r#", "n": "open"#,
            r#", "n": [1}"#,
            r#", "n": "\x""#,
            ", \"n\": \"a\u{1}\"",
        ] {
            let text = answer(&[hit(1, 0.9, ""), hit(2, 0.8, ""), hit(3, 0.1, extra)]);
            assert_eq!(merge_texts(&[&text]), Err(not_object.clone()), "{extra}");
        }
        // Known limit: grammar inside a hit the merge never reads (beyond the window) is not checked;
        // the reply is the merge of the hits it reads, and never contains the unread hit.
        let text = answer(&[
            hit(1, 0.9, ""),
            hit(2, 0.8, ""),
            hit(3, 0.1, r#", "n": {"a" tru}"#),
        ]);
        let reply: Value = serde_json::from_str(&merge_texts(&[&text]).unwrap()).unwrap();
        let expected: Value = serde_json::from_str(&merge_texts(&[&good]).unwrap()).unwrap();
        assert_eq!(reply, expected);
        // A hit that is not an object, anywhere in the list, as with parsed answers.
        let text = answer(&[hit(1, 0.9, ""), hit(2, 0.8, ""), "[{}]".into()]);
        assert_eq!(
            merge_texts(&[&text]),
            Err(bad(0, Malformed::HitNotObject.message()))
        );
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]
        /// The text merge gives exactly what the parsed merge followed by the proxy's displayed filter gives.
        #[test]
        fn text_merge_equals_parsed_merge(seed in 1u64..u64::MAX) {
            use serde_json::json;
            let mut rng = Rng(seed);
            let nodes = 1 + rng.below(4);
            let mut texts = Vec::new();
            for n in 0..nodes {
                let hits: Vec<Value> = (0..rng.below(12)).map(|_| { let shard = n * 2 + rng.below(2); random_hit(&mut rng, shard) }).collect();
                let mut body = json!({"hits": hits, "query": "q", "processingTimeMs": rng.below(9),
                    "limit": 20, "offset": 0, "estimatedTotalHits": rng.below(50), "totalHits": rng.below(50),
                    "facetDistribution": {"genre": {"drama": 1 + rng.below(3), "Comedy": 2, "act]ion\"": rng.below(4), "zeta": 1}},
                    "facetStats": {"year": {"min": 1.0, "max": 2.0 + rng.below(3) as f64}}});
                if rng.below(10) == 0 {
                    body.as_object_mut().unwrap().remove("estimatedTotalHits");
                }
                let text = match rng.below(30) {
                    0 => "[1]".to_string(),
                    1 => "{\"hits\": [1]}".to_string(),
                    _ => node_text(&mut rng, &body),
                };
                texts.push(text);
            }
            let mut client = Map::new();
            match rng.below(3) {
                // offsets and pages reach beyond the hits received
                0 => { client.insert("limit".into(), json!(rng.below(8))); client.insert("offset".into(), json!(rng.below(4) * rng.below(12))); }
                1 => { client.insert("page".into(), json!(rng.below(3) * rng.below(6))); client.insert("hitsPerPage".into(), json!(1 + rng.below(4))); }
                _ => {}
            }
            for key in ["showRankingScore", "showRankingScoreDetails"] {
                if rng.below(2) == 0 {
                    client.insert(key.into(), json!(true));
                }
            }
            match rng.below(4) {
                0 => { client.insert("distinct".into(), json!("genre")); }
                1 => { client.insert("distinct".into(), json!("info.genre")); }
                _ => {}
            }
            if rng.below(3) == 0 {
                client.insert("attributesToRetrieve".into(), json!(["id", "info"]));
            }
            if rng.below(3) == 0 {
                client.insert("sort".into(), json!(["genre:asc"]));
            }
            if rng.below(3) == 0 {
                client.insert("facets".into(), json!(["genre"]));
            }
            // a small `maxValuesPerFacet` cuts the merged distribution; a small `maxTotalHits` caps totals
            let mut ctx = super::super::SearchContext::default();
            if rng.below(2) == 0 {
                ctx.max_values_per_facet = rng.below(4) as usize;
                ctx.max_total_hits = 1 + rng.below(30) as usize;
            }
            let plan = super::super::plan_search(&client, &ctx).unwrap();
            let displayed: Option<Vec<String>> = match rng.below(3) {
                0 => Some(vec!["id".into(), "info.genre".into(), "genre".into()]),
                1 => Some(vec!["id".into()]),
                _ => None,
            };
            let order: Vec<usize> = (0..texts.len()).rev().collect();
            let parsed: Vec<NodeAnswer> = texts.iter().zip(&order).map(|(t, o)| NodeAnswer {
                order: *o,
                body: serde_json::from_str(t).unwrap_or(Value::Null),
            }).collect();
            let raw: Vec<RawAnswer> = texts.iter().zip(&order).map(|(t, o)| RawAnswer::parse(*o, t.clone())).collect();
            let expected = merge_search(&plan, parsed).map(|mut v| {
                crate::ops::settings::apply_displayed_to_hits(&mut v, displayed.as_deref());
                v
            });
            let got = merge_search_text(&plan, raw, displayed.as_deref());
            match (expected, got) {
                (Ok(e), Ok(g)) => {
                    let g: Value = serde_json::from_str(&g).expect("the text merge writes JSON");
                    proptest::prop_assert_eq!(e, g);
                }
                (Err(e), Err(g)) => proptest::prop_assert_eq!(e, g),
                (e, g) => proptest::prop_assert!(false, "{:?} vs {:?}", e, g),
            }
        }

        /// Damaged node text never makes the text merge panic, and what it answers is always JSON.
        #[test]
        fn damaged_text_never_panics_and_replies_json(
            seed in 1u64..u64::MAX,
            edits in proptest::collection::vec((0usize..10_000, 0usize..14), 1..5),
        ) {
            use serde_json::json;
            let mut rng = Rng(seed);
            let hits: Vec<Value> = (0..1 + rng.below(8)).map(|_| random_hit(&mut rng, 0)).collect();
            let body = json!({"hits": hits, "query": "q", "processingTimeMs": 1, "estimatedTotalHits": 9,
                "facetDistribution": {"genre": {"a": 1}}});
            let mut bytes = node_text(&mut rng, &body).into_bytes();
            for (at, what) in edits {
                if bytes.is_empty() {
                    break;
                }
                let i = at % bytes.len();
                match what {
                    0..=10 => bytes.insert(i, b"\"\\[]{}:,\nu1"[what]),
                    11 => { bytes.remove(i); }
                    12 => bytes[i] = b'x',
                    _ => bytes.truncate(i),
                }
            }
            let text = String::from_utf8_lossy(&bytes).into_owned();
            let mut client = Map::new();
            client.insert("limit".into(), json!(rng.below(10)));
            if rng.below(2) == 0 {
                client.insert("distinct".into(), json!("genre"));
            }
            let plan = super::super::plan_search(&client, &super::super::SearchContext::default()).unwrap();
            if let Ok(reply) = merge_search_text(&plan, vec![RawAnswer::parse(0, text)], None) {
                proptest::prop_assert!(serde_json::from_str::<Value>(&reply).is_ok(), "{}", reply);
            }
        }
    }

    /// Number spellings: every kind the grammar allows, boundaries of the exact cases, and faults.
    const NUMBERS: &[&str] = &[
        "0",
        "-0",
        "1",
        "7",
        "1.0",
        "1e0",
        "1E+0",
        "1e-0",
        "-0.0",
        "0.0e5",
        "0e400",
        "0.30000000000000004",
        "0.1",
        "0.3333333333333333",
        "0.6666666666666666",
        "0.9848484848484849",
        "2.5e-3",
        "1e22",
        "1e23",
        "1e-22",
        "1e-23",
        "12345678.5e15",
        "9007199254740992",
        "9007199254740993",
        "9007199254740993.0",
        "900719925474099.3",
        "1e308",
        "1.7976931348623157e308",
        "1e309",
        "1e400",
        "-1e400",
        "1e-400",
        "4.9e-324",
        "123456789012345678901234567890",
        "18446744073709551615",
        "18446744073709551616",
        "-9223372036854775808",
        "-9223372036854775809",
        "-18446744073709551615",
        "1234.5678e-2",
        "100000000000000000000000.0",
        "0.000000000000000000000000000001",
        "01",
        "1.",
        ".5",
        "-",
        "1e",
        "1e+",
        "+1",
        "0x10",
        "Infinity",
        "NaN",
        "--1",
        "1.5.2",
        "2e3e4",
    ];

    fn random_number(rng: &mut Rng) -> String {
        if rng.below(2) == 0 {
            return rng.pick(NUMBERS).to_string();
        }
        let mut n = String::new();
        if rng.below(3) == 0 {
            n.push('-');
        }
        let digits = |rng: &mut Rng, n: &mut String, most: u64| {
            for _ in 0..1 + rng.below(most) {
                n.push((b'0' + rng.below(10) as u8) as char);
            }
        };
        digits(rng, &mut n, 20);
        if rng.below(2) == 0 {
            n.push('.');
            digits(rng, &mut n, 20);
        }
        if rng.below(3) == 0 {
            let e: &&str = rng.pick(&["e", "E", "e+", "e-", "E-"]);
            n.push_str(e);
            digits(rng, &mut n, 3);
        }
        n
    }

    fn random_json(rng: &mut Rng, depth: u32) -> String {
        match rng.below(if depth > 2 { 6 } else { 8 }) {
            0 => random_number(rng),
            1 => rng
                .pick(&[
                    "\"Drama\"",
                    "\" drama \"",
                    "\"COMÉDIE\"",
                    "\"x\\\"y\"",
                    "\"\\u00e9\"",
                    "\"\\ud800\"",
                    "\"tab\tin\"",
                    "\"\"",
                    "\"a/b\"",
                ])
                .to_string(),
            2 => rng
                .pick(&["null", "true", "false", "nul", "tru"])
                .to_string(),
            3..=5 => random_number(rng),
            6 => {
                let items: Vec<String> = (0..rng.below(3))
                    .map(|_| random_json(rng, depth + 1))
                    .collect();
                format!("[{}]", items.join(", "))
            }
            _ => {
                let items: Vec<String> = (0..rng.below(3))
                    .map(|_| {
                        format!(
                            "\"{}\" :{}",
                            rng.pick(&["lat", "lng", "a"]),
                            random_json(rng, depth + 1)
                        )
                    })
                    .collect();
                format!("{{{}}}", items.join(","))
            }
        }
    }

    fn random_entry(rng: &mut Rng) -> String {
        if rng.below(10) == 0 {
            return random_json(rng, 1);
        }
        let mut fields = Vec::new();
        for _ in 0..rng.below(5) {
            let key = *rng.pick(&[
                "order",
                "order",
                "score",
                "score",
                "value",
                "value",
                "distance",
                "similarity",
                "matchingWords",
                "matchType",
                "ord\\u0065r",
                "typoCount",
            ]);
            let value = match rng.below(4) {
                0 => random_json(rng, 2),
                _ if key == "order" => rng.below(5).to_string(),
                _ => random_number(rng),
            };
            fields.push(format!(
                "\"{key}\"{}:{}",
                rng.pick(&["", " ", "\n\t"]),
                value
            ));
        }
        format!("{{{}}}", fields.join(*rng.pick(&[",", " , ", ",\r\n"])))
    }

    fn random_details(rng: &mut Rng) -> String {
        let mut entries = Vec::new();
        for _ in 0..rng.below(6) {
            let name = *rng.pick(&[
                "words",
                "typo",
                "rating:desc",
                "year:asc",
                "_geoPoint(1.0, 2.0):asc",
                "skipped",
                "vectorSort",
                "title:asc",
                "na\\u006de",
                "words",
            ]);
            entries.push(format!("\"{name}\": {}", random_entry(rng)));
        }
        let mut text = format!("{{ {} }}", entries.join(", "));
        // Some texts damaged: a byte dropped, doubled or replaced.
        if rng.below(4) == 0 && !text.is_empty() {
            let at = rng.below(text.len() as u64) as usize;
            if text.is_char_boundary(at) && text.is_char_boundary(at + 1) {
                let ch = *rng.pick(&["", "\"", "{", "}", ",", ":", "1", "e", ".", "-", " ", "\\"]);
                text.replace_range(at..at + 1, ch);
            }
        }
        text
    }

    /// The details reading before the hand-written reader: `serde_json` only.
    fn serde_only_detail_keys(raw: &str) -> Option<Option<Vec<RuleKey>>> {
        if !raw.starts_with('{') {
            return parse(raw).map(|_| None);
        }
        serde_detail_keys(raw)
    }

    /// The details reading of `raw` as a whole, and the hand-written reader where it reads, give what
    /// `serde_json` gives.
    fn details_read_as_serde_json_reads_them(
        raw: &str,
    ) -> Result<(), proptest::test_runner::TestCaseError> {
        let want = format!("{:?}", serde_only_detail_keys(raw));
        proptest::prop_assert_eq!(
            format!("{:?}", raw_detail_keys(raw)),
            want.clone(),
            "{}",
            raw
        );
        if let Some(keys) = DetailsReader::read(raw) {
            proptest::prop_assert_eq!(format!("{:?}", Some(Some(keys))), want, "{}", raw);
        }
        Ok(())
    }

    #[test]
    fn number_spellings_read_as_serde_json_reads_them() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let mut all: Vec<String> = NUMBERS.iter().map(|s| s.to_string()).collect();
        all.extend((0..20_000).map(|_| random_number(&mut rng)));
        all.extend(["true", "false", "null", "\"1\"", "[1]", "{}", "", " 1"].map(String::from));
        let mut fast = 0;
        for n in &all {
            let parsed = parse(n);
            let want_f = parsed.as_ref().map(Value::as_f64);
            let want_u = parsed.as_ref().map(Value::as_u64);
            assert_eq!(
                format!("{:?}", value_as_f64(n)),
                format!("{want_f:?}"),
                "{n}"
            );
            assert_eq!(value_as_u64(n), want_u, "{n}");
            if let Some(r) = read_number(n.as_bytes(), 0) {
                if r.end == n.len() {
                    if let Some(f) = r.as_f64 {
                        fast += 1;
                        let v = parsed.as_ref().and_then(Value::as_f64).expect("a number");
                        assert_eq!(f.to_bits(), v.to_bits(), "{n}");
                        // ... and the correctly rounded reading agrees too (`float_roundtrip`).
                        assert_eq!(f.to_bits(), n.parse::<f64>().unwrap().to_bits(), "{n}");
                    }
                    if r.as_u64.is_some() || r.as_f64.is_some() {
                        assert_eq!(r.as_u64, parsed.as_ref().and_then(Value::as_u64), "{n}");
                    }
                }
            }
        }
        assert!(fast > 5_000, "the fast path is taken: {fast}");
    }

    #[test]
    fn meilisearch_details_take_the_fast_reader() {
        let raw = r#"{"words":{"order":0,"matchingWords":1,"maxMatchingWords":3,"score":0.3333333333333333},"typo":{"order":1,"typoCount":0,"maxTypoCount":1,"score":1.0},"attribute":{"order":2,"attributeRankingOrderScore":0.9848484848484849,"queryWordDistanceScore":1.0,"score":0.9848484848484849},"exactness":{"order":3,"matchType":"exactMatch","score":1.0},"rating:desc":{"order":4,"value":37.0},"title:asc":{"order":5,"value":"Émile"},"_geoPoint(1.0, 2.0):asc":{"order":6,"value":{"lat":1.5,"lng":2.25},"distance":1234.0},"vector":{"order":7,"similarity":0.5}}"#;
        let fast = DetailsReader::read(raw).expect("read by hand");
        assert_eq!(
            format!("{:?}", Some(Some(fast))),
            format!("{:?}", serde_only_detail_keys(raw))
        );
        // Many rules, written in reverse order: sorted, same keys.
        let many: Vec<String> = (0..40)
            .map(|i| format!("\"r{i}:asc\":{{\"order\":{},\"value\":{i}}}", 40 - i))
            .collect();
        let many = format!("{{{}}}", many.join(","));
        let keys = DetailsReader::read(&many).unwrap();
        assert_eq!(keys.len(), 40);
        assert_eq!(
            format!("{:?}", Some(Some(keys))),
            format!("{:?}", serde_only_detail_keys(&many))
        );
        // The random details of the property test below reach every outcome often.
        let mut rng = Rng(77);
        let (mut fast, mut slow, mut refused) = (0, 0, 0);
        for _ in 0..4000 {
            let raw = random_details(&mut rng);
            match (DetailsReader::read(&raw), serde_only_detail_keys(&raw)) {
                (Some(_), _) => fast += 1,
                (None, Some(_)) => slow += 1,
                (None, None) => refused += 1,
            }
        }
        assert!(
            fast > 400 && slow > 400 && refused > 400,
            "{fast} {slow} {refused}"
        );
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

        /// The hand-written details reader reads exactly what `serde_json` reads, refuses nothing itself,
        /// and the details reading as a whole refuses exactly what `serde_json` refuses.
        #[test]
        fn details_reader_equals_serde_json(seed in 1u64..u64::MAX) {
            let mut rng = Rng(seed);
            for _ in 0..16 {
                details_read_as_serde_json_reads_them(&random_details(&mut rng))?;
            }
        }
    }

    /// A number spelling followed by what may come after it in details text.
    fn number_in_context(rng: &mut Rng) -> String {
        let mut n = random_number(rng);
        // Long runs of digits, for the eight-at-once reading (its boundaries on both sides).
        if rng.below(4) == 0 {
            for _ in 0..rng.below(24) {
                n.push((b'0' + rng.below(10) as u8) as char);
            }
        }
        let tail: &&str = rng.pick(&[
            "", ",", "}", " ", "0", "1.5", ".", "e", "E7", "x", "\"a\":1}",
        ]);
        n.push_str(tail);
        n
    }

    #[test]
    fn short_numbers_read_as_read_number_reads_them() {
        let mut rng = Rng(0x005e_ed0f_5407);
        let mut short = 0;
        for _ in 0..40_000 {
            let text = number_in_context(&mut rng);
            let b = text.as_bytes();
            for start in [0, 1] {
                if let Some(n) = short_number(b, start) {
                    short += 1;
                    let want = read_number(b, start).expect("read_number reads it too");
                    assert_eq!(n.end, want.end, "{text} at {start}");
                    assert_eq!(n.as_u64, want.as_u64, "{text} at {start}");
                    assert_eq!(
                        n.as_f64.map(f64::to_bits),
                        want.as_f64.map(f64::to_bits),
                        "{text} at {start}"
                    );
                }
            }
        }
        assert!(short > 10_000, "the short path is taken: {short}");
    }

    #[test]
    fn plain_integers_read_as_read_number_reads_them() {
        let mut rng = Rng(0x0dd_ba11);
        let mut plain = 0;
        for _ in 0..40_000 {
            let text = number_in_context(&mut rng);
            let mut r = DetailsReader { text: &text, i: 0 };
            match r.plain_uint() {
                Some(v) => {
                    plain += 1;
                    let want = read_number(text.as_bytes(), 0).expect("a number");
                    assert_eq!((Some(v), r.i), (want.as_u64, want.end), "{text}");
                    // Nothing that continues a number follows it.
                    assert!(!matches!(
                        text.as_bytes().get(r.i),
                        Some(b'0'..=b'9' | b'.' | b'e' | b'E')
                    ));
                }
                None => assert_eq!(r.i, 0, "{text}"),
            }
        }
        assert!(plain > 2_000, "the plain path is taken: {plain}");
    }

    #[test]
    fn details_strings_read_as_serde_json_reads_them() {
        let mut rng = Rng(0x57_7219);
        let pieces = [
            "a", "order", "é", "\"", "\\", "\\u0041", "\t", "\u{1}", "\u{7f}", " ", ":asc", "日本",
        ];
        let mut read = 0;
        for _ in 0..20_000 {
            let mut body = String::new();
            for _ in 0..rng.below(40) {
                let piece: &&str = rng.pick(&pieces[..2]);
                body.push_str(piece);
                if rng.below(8) == 0 {
                    let piece: &&str = rng.pick(&pieces);
                    body.push_str(piece);
                }
            }
            let text = format!("\"{body}\"{}", rng.pick(&["", ":", ",\"x\"", "}"]));
            let mut r = DetailsReader { text: &text, i: 0 };
            let end = crate::search::scan::skip_string(text.as_bytes(), 0);
            match r.string() {
                Some(s) => {
                    read += 1;
                    let want: String = serde_json::from_str(&text[..r.i]).expect("valid");
                    assert_eq!(s, want, "{text}");
                    assert_eq!(Some(r.i), end, "{text}");
                    assert!(!s.contains('\\'));
                }
                // Given up: escapes or control characters, or no closing quote.
                None => assert!(
                    body.contains('\\') || body.chars().any(|c| c < ' ') || end.is_none(),
                    "{text}"
                ),
            }
        }
        assert!(read > 5_000, "{read}");
    }

    /// Details as Meilisearch writes them (compact, its key order), with random numbers and sort
    /// values, some damaged.
    fn compact_details(rng: &mut Rng) -> String {
        let mut entries = Vec::new();
        let mut order = 0;
        let number = |rng: &mut Rng| {
            if rng.below(3) == 0 {
                random_number(rng)
            } else {
                format!("{:?}", rng.below(1000) as f64 / (1 + rng.below(99)) as f64)
            }
        };
        for _ in 0..rng.below(6) {
            let entry = match rng.below(7) {
                0 => format!(
                    "\"words\":{{\"order\":{order},\"matchingWords\":{},\"maxMatchingWords\":3,\"score\":{}}}",
                    rng.below(4),
                    number(rng)
                ),
                1 => format!(
                    "\"typo\":{{\"order\":{order},\"typoCount\":{},\"maxTypoCount\":2,\"score\":{}}}",
                    rng.below(3),
                    number(rng)
                ),
                2 => format!(
                    "\"attribute\":{{\"order\":{order},\"attributeRankingOrderScore\":{},\"queryWordDistanceScore\":{},\"score\":{}}}",
                    number(rng),
                    number(rng),
                    number(rng)
                ),
                3 => format!(
                    "\"exactness\":{{\"order\":{order},\"matchType\":\"{}\",\"score\":{}}}",
                    rng.pick(&["exactMatch", "matchesStart", "noExactMatch"]),
                    number(rng)
                ),
                4 => format!(
                    "\"{}\":{{\"order\":{order},\"value\":{}}}",
                    rng.pick(&["rating:desc", "year:asc", "title:asc"]),
                    match rng.below(3) {
                        0 => format!("\"{}\"", rng.pick(&["Drama", " Émile ", "a\\\"b", "x"])),
                        1 => "null".to_string(),
                        _ => number(rng),
                    }
                ),
                5 => format!(
                    "\"_geoPoint(48.8, 2.3):asc\":{{\"order\":{order},\"value\":{{\"lat\":48.9,\"lng\":2.1}},\"distance\":{}}}",
                    number(rng)
                ),
                _ => format!(
                    "\"vectorSort\":{{\"order\":{order},\"similarity\":{}}}",
                    number(rng)
                ),
            };
            entries.push(entry);
            order += 1 + rng.below(2);
        }
        let mut text = format!("{{{}}}", entries.join(","));
        if rng.below(3) == 0 {
            let at = rng.below(text.len() as u64) as usize;
            if text.is_char_boundary(at) && text.is_char_boundary(at + 1) {
                let ch = *rng.pick(&[
                    "", "\"", "{", "}", ",", ":", "1", "e", ".", "-", " ", "\\", "0",
                ]);
                text.replace_range(at..at + 1, ch);
            }
        }
        text
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(128))]

        /// Details as Meilisearch writes them, intact or damaged, read by hand exactly as `serde_json`
        /// reads them (the whole-word field names, short numbers and plain integers included).
        #[test]
        fn compact_details_read_as_serde_json_reads_them(seed in 1u64..u64::MAX) {
            let mut rng = Rng(seed);
            for _ in 0..32 {
                details_read_as_serde_json_reads_them(&compact_details(&mut rng))?;
            }
        }
    }

    #[test]
    fn compact_details_mostly_take_the_fast_reader() {
        let mut rng = Rng(4242);
        let (mut fast, mut other) = (0, 0);
        for _ in 0..4000 {
            let raw = compact_details(&mut rng);
            match DetailsReader::read(&raw) {
                Some(keys) => {
                    fast += 1;
                    assert_eq!(
                        format!("{:?}", Some(Some(keys))),
                        format!("{:?}", serde_only_detail_keys(&raw)),
                        "{raw}"
                    );
                }
                None => other += 1,
            }
        }
        assert!(fast > 2000 && other > 400, "{fast} {other}");
    }

    #[test]
    fn long_decimals_are_read_correctly_rounded() {
        let mut rng = Rng(0x1_0ce5);
        let mut all: Vec<String> = [
            "0.9848484848484849",
            "0.30000000000000004",
            "0.1111111111111111",
            "123456789.123456789",
            "0.000009007199254740993",
            "9007199254740993.0",
            "0.5000000000000001",
            "1.0000000000000002",
            "0.99999999999999999",
        ]
        .map(String::from)
        .to_vec();
        for _ in 0..40_000 {
            let int_digits = rng.below(10) as usize;
            let mut n = if int_digits == 0 {
                "0".to_string()
            } else {
                (1 + rng.below(9)).to_string()
            };
            for _ in 1..int_digits {
                n.push((b'0' + rng.below(10) as u8) as char);
            }
            n.push('.');
            for _ in 0..(15 + rng.below(3)).saturating_sub(int_digits as u64) {
                n.push((b'0' + rng.below(10) as u8) as char);
            }
            all.push(n);
        }
        let mut short = 0;
        for n in &all {
            let want = n.parse::<f64>().unwrap().to_bits();
            if let Some(r) = short_number(n.as_bytes(), 0) {
                short += 1;
                assert_eq!(r.as_f64.map(f64::to_bits), Some(want), "{n}");
                assert_eq!(r.end, n.len(), "{n}");
            }
            let r = read_number(n.as_bytes(), 0).expect("a number");
            assert_eq!(r.as_f64.map(f64::to_bits), Some(want), "{n}");
        }
        assert!(short > all.len() * 9 / 10, "{short} of {}", all.len());
    }
}
