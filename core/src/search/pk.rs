//! Primary-key narrowing: when a filter pins the primary key (`id = x`, `id IN [x, y]`, AND-combined with
//! anything), only the shards owning those ids can hold a matching document, so a search or a documents
//! fetch need not reach the other shards.
//!
//! States: none, these are pure functions (filter → the canonical ids a matching document may have →
//! the shards owning them).
//!
//! The filter is read with a deliberately strict parser for Meilisearch's filter syntax: `OR` binds
//! loosest, then `AND`, then the prefix `NOT`; parentheses group; a condition is a run of tokens up to the
//! next `AND`/`OR`/`)`; the array form AND-s its elements and OR-s the strings of an inner array. Only two
//! conditions pin the key: `<pk> = <value>` and `<pk> IN [<values>]` (field and values quoted or not).
//! Anything the parser does not understand makes the whole filter *unpinned* (no narrowing), never a
//! narrower answer.
//!
//! How a value pins ids (Meilisearch compares a filter value to a document's id both as a string — after
//! trimming and lowercasing, the facet normalisation — and, when the value parses as a number, as a
//! number). A document id only contains ASCII letters, digits, `-` and `_`, so for a value `v`:
//! - `trim(v)` made of those characters: every upper/lower-case variant of it may match a string id (at
//!   most [`MAX_CASE_VARIANTS`] variants, else the value does not pin);
//! - `trim(v)` made of other ASCII characters: no string id matches it;
//! - a non-ASCII value (Unicode normalisation could map it onto ASCII), or a value with a backslash in its
//!   quotes: does not pin;
//! - `v` parses as a finite number: an integer id equal to it may match — its decimal form when the number
//!   is an integer of magnitude below 2^53 (beyond, several integers share one `f64`: the value does not pin).
//!
//! Invariants (proptested against a brute-force evaluator in `core/tests/pk_narrowing.rs`):
//! - soundness: a document whose canonical id is not in [`pinned_ids`] does not match the filter, so the
//!   shards of [`pinned_shards`] hold every matching document;
//! - `OR` narrows only when every alternative pins (the union), `NOT` never narrows, `AND` intersects what
//!   its pinned operands pin.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::routing::shard_for_key;
use crate::topology::ShardId;

/// A value with more case variants than this does not pin (a UUID has up to 32 letters: 2^32 variants).
pub const MAX_CASE_VARIANTS: usize = 64;

/// Ids a filter admits: `None` means any id.
type Pins = Option<BTreeSet<String>>;

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    /// An unquoted word (keywords included).
    Word(String),
    /// A quoted string's content; `clean` is false when it held a backslash.
    Quoted {
        text: String,
        clean: bool,
    },
    /// `=`, `!=`, `>`, `>=`, `<`, `<=`.
    Op(String),
    Open,
    Close,
    OpenBracket,
    CloseBracket,
    Comma,
}

fn lex(s: &str) -> Option<Vec<Tok>> {
    let chars: Vec<char> = s.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            c if c.is_whitespace() => i += 1,
            '(' => {
                out.push(Tok::Open);
                i += 1
            }
            ')' => {
                out.push(Tok::Close);
                i += 1
            }
            '[' => {
                out.push(Tok::OpenBracket);
                i += 1
            }
            ']' => {
                out.push(Tok::CloseBracket);
                i += 1
            }
            ',' => {
                out.push(Tok::Comma);
                i += 1
            }
            '=' => {
                out.push(Tok::Op("=".into()));
                i += 1
            }
            '!' | '<' | '>' => {
                if chars.get(i + 1) == Some(&'=') {
                    out.push(Tok::Op(format!("{c}=")));
                    i += 2;
                } else if c == '!' {
                    return None;
                } else {
                    out.push(Tok::Op(c.to_string()));
                    i += 1;
                }
            }
            '"' | '\'' => {
                let quote = c;
                let mut text = String::new();
                let mut clean = true;
                i += 1;
                loop {
                    let d = *chars.get(i)?;
                    i += 1;
                    if d == '\\' {
                        clean = false;
                        text.push(*chars.get(i)?);
                        i += 1;
                    } else if d == quote {
                        break;
                    } else {
                        text.push(d);
                    }
                }
                out.push(Tok::Quoted { text, clean });
            }
            _ => {
                let start = i;
                while i < chars.len()
                    && !chars[i].is_whitespace()
                    && !"()[],=!<>\"'".contains(chars[i])
                {
                    i += 1;
                }
                out.push(Tok::Word(chars[start..i].iter().collect()));
            }
        }
    }
    Some(out)
}

struct Parser<'a> {
    toks: Vec<Tok>,
    pos: usize,
    pk: &'a str,
}

fn is_word(t: Option<&Tok>, w: &str) -> bool {
    matches!(t, Some(Tok::Word(x)) if x == w)
}

fn intersect(a: Pins, b: Pins) -> Pins {
    match (a, b) {
        (None, x) | (x, None) => x,
        (Some(a), Some(b)) => Some(a.intersection(&b).cloned().collect()),
    }
}

fn union(a: Pins, b: Pins) -> Pins {
    match (a, b) {
        (Some(mut a), Some(b)) => {
            a.extend(b);
            Some(a)
        }
        _ => None,
    }
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos)
    }

    /// `or := and (OR and)*`. `Err` means the filter is not understood.
    fn or(&mut self) -> Result<Pins, ()> {
        let mut pins = self.and()?;
        while is_word(self.peek(), "OR") {
            self.pos += 1;
            let next = self.and()?;
            pins = union(pins, next);
        }
        Ok(pins)
    }

    /// `and := not (AND not)*`.
    fn and(&mut self) -> Result<Pins, ()> {
        let mut pins = self.not()?;
        while is_word(self.peek(), "AND") {
            self.pos += 1;
            let next = self.not()?;
            pins = intersect(pins, next);
        }
        Ok(pins)
    }

    /// `not := NOT not | '(' or ')' | condition`.
    fn not(&mut self) -> Result<Pins, ()> {
        match self.peek() {
            Some(Tok::Word(w)) if w == "NOT" => {
                self.pos += 1;
                self.not()?;
                Ok(None)
            }
            Some(Tok::Open) => {
                self.pos += 1;
                let inner = self.or()?;
                if self.peek() != Some(&Tok::Close) {
                    return Err(());
                }
                self.pos += 1;
                Ok(inner)
            }
            _ => self.condition(),
        }
    }

    /// A condition: every token up to `AND`/`OR`/`)`/the end (parenthesised function arguments and
    /// bracketed lists included).
    fn condition(&mut self) -> Result<Pins, ()> {
        let start = self.pos;
        let mut depth = 0usize;
        while let Some(t) = self.peek() {
            match t {
                Tok::Word(w) if depth == 0 && (w == "AND" || w == "OR") => break,
                Tok::Close if depth == 0 => break,
                Tok::Open | Tok::OpenBracket => depth += 1,
                Tok::Close | Tok::CloseBracket => depth = depth.checked_sub(1).ok_or(())?,
                _ => {}
            }
            self.pos += 1;
        }
        if depth != 0 || self.pos == start {
            return Err(());
        }
        Ok(self.classify(&self.toks[start..self.pos]))
    }

    /// `<pk> = v` and `<pk> IN [v, …]` pin; every other condition does not.
    fn classify(&self, toks: &[Tok]) -> Pins {
        let field = match toks.first()? {
            Tok::Word(w) => w.as_str(),
            Tok::Quoted { text, clean: true } => text.as_str(),
            _ => return None,
        };
        if field != self.pk {
            return None;
        }
        match &toks[1..] {
            [Tok::Op(op), v] if op == "=" => ids_matching(v),
            [Tok::Word(kw), Tok::OpenBracket, rest @ ..] if kw == "IN" => {
                let (Tok::CloseBracket, values) = rest.split_last()? else {
                    return None;
                };
                let mut ids = BTreeSet::new();
                for (i, v) in values.iter().enumerate() {
                    if i % 2 == 1 {
                        if *v != Tok::Comma {
                            return None;
                        }
                        continue;
                    }
                    ids.extend(ids_matching(v)?);
                }
                if values.len() % 2 == 0 && !values.is_empty() {
                    // A trailing comma: leave it to the node.
                    return None;
                }
                Some(ids)
            }
            _ => None,
        }
    }
}

fn is_id_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-' || c == '_'
}

/// The canonical ids a filter value may match (see the module documentation); `None`: any.
fn ids_matching(v: &Tok) -> Pins {
    let raw = match v {
        Tok::Word(w) => w.as_str(),
        Tok::Quoted { text, clean: true } => text.as_str(),
        _ => return None,
    };
    if !raw.is_ascii() {
        return None;
    }
    let mut ids = BTreeSet::new();
    let t = raw.trim();
    if !t.is_empty() && t.chars().all(is_id_char) {
        let letters = t.chars().filter(char::is_ascii_alphabetic).count();
        if letters >= usize::BITS as usize || (1usize << letters) > MAX_CASE_VARIANTS {
            return None;
        }
        let lower = t.to_ascii_lowercase();
        for mask in 0..(1usize << letters) {
            let mut k = 0;
            let variant: String = lower
                .chars()
                .map(|c| {
                    if c.is_ascii_alphabetic() {
                        let upper = mask >> k & 1 == 1;
                        k += 1;
                        if upper {
                            c.to_ascii_uppercase()
                        } else {
                            c
                        }
                    } else {
                        c
                    }
                })
                .collect();
            ids.insert(variant);
        }
    }
    for candidate in [raw, t] {
        if let Ok(n) = candidate.parse::<f64>() {
            if n.is_finite() {
                if n.abs() >= 9_007_199_254_740_992.0 {
                    return None;
                }
                if n.fract() == 0.0 {
                    ids.insert(format!("{}", n as i64));
                }
            }
        }
    }
    Some(ids)
}

fn parse_string(s: &str, pk: &str) -> Result<Pins, ()> {
    let toks = lex(s).ok_or(())?;
    if toks.is_empty() {
        return Ok(None);
    }
    let mut p = Parser { toks, pos: 0, pk };
    let pins = p.or()?;
    if p.pos != p.toks.len() {
        return Err(());
    }
    Ok(pins)
}

/// The canonical ids (see [`crate::routing::canonical_id`]) a document may have and still match
/// `filter`, when the filter pins the primary key `primary_key`; `None` when any document may match (no
/// pin, or a filter this reader does not understand). An empty set means no document can match.
pub fn pinned_ids(filter: Option<&Value>, primary_key: &str) -> Option<BTreeSet<String>> {
    if primary_key.is_empty() {
        return None;
    }
    let parsed = match filter? {
        Value::String(s) => parse_string(s, primary_key),
        Value::Array(items) => {
            let mut pins: Pins = None;
            for item in items {
                let one = match item {
                    Value::String(s) => parse_string(s, primary_key),
                    Value::Array(alts) if !alts.is_empty() => {
                        let mut any: Result<Pins, ()> = Ok(Some(BTreeSet::new()));
                        for alt in alts {
                            let Value::String(s) = alt else {
                                return None;
                            };
                            let alt = parse_string(s, primary_key);
                            any = match (any, alt) {
                                (Ok(a), Ok(b)) => Ok(union(a, b)),
                                _ => Err(()),
                            };
                        }
                        any
                    }
                    _ => Err(()),
                };
                pins = intersect(pins, one.ok()?);
            }
            Ok(pins)
        }
        _ => Err(()),
    };
    parsed.ok().flatten()
}

/// The shards (sorted) that can hold a document matching `filter` when it pins `primary_key`, among
/// `shards` shards; `None` when every shard can. When no document can match, the lowest shard is returned
/// alone, so that one node still validates the filter and answers with the right shape.
pub fn pinned_shards(
    filter: Option<&Value>,
    primary_key: &str,
    shards: u32,
) -> Option<Vec<ShardId>> {
    if shards == 0 {
        return None;
    }
    let ids = pinned_ids(filter, primary_key)?;
    let mut set: BTreeSet<ShardId> = ids.iter().map(|id| shard_for_key(id, shards)).collect();
    if set.is_empty() {
        set.insert(0);
    }
    if set.len() as u32 == shards {
        return None;
    }
    Some(set.into_iter().collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ids(f: Value) -> Option<Vec<String>> {
        pinned_ids(Some(&f), "id").map(|s| s.into_iter().collect())
    }

    fn v(list: &[&str]) -> Option<Vec<String>> {
        let mut l: Vec<String> = list.iter().map(|s| s.to_string()).collect();
        l.sort();
        Some(l)
    }

    #[test]
    fn equality_and_in_pin() {
        assert_eq!(ids(json!("id = 5")), v(&["5"]));
        assert_eq!(ids(json!("id = \"5\"")), v(&["5"]));
        assert_eq!(ids(json!("id = 5.0")), v(&["5"]));
        assert_eq!(ids(json!("id = 'a1'")), v(&["a1", "A1"]));
        assert_eq!(ids(json!("id IN [1, 2,3]")), v(&["1", "2", "3"]));
        assert_eq!(ids(json!("id IN []")), v(&[]));
        assert_eq!(ids(json!("\"id\" = x_-")), v(&["x_-", "X_-"]));
        assert_eq!(ids(json!("id = ' 7 '")), v(&["7"]));
        assert_eq!(ids(json!("id = 1e2")), v(&["100", "1e2", "1E2"]));
        assert_eq!(ids(json!("id = 'a b'")), v(&[]));
        assert_eq!(ids(json!("id = 5.5")), v(&[]));
    }

    #[test]
    fn and_intersects_or_unions_not_never_narrows() {
        assert_eq!(ids(json!("id = 1 AND genre = drama")), v(&["1"]));
        assert_eq!(ids(json!("genre = drama AND id IN [1, 2]")), v(&["1", "2"]));
        assert_eq!(ids(json!("id IN [1, 2] AND id IN [2, 3]")), v(&["2"]));
        assert_eq!(ids(json!("id = 1 OR id = 2")), v(&["1", "2"]));
        assert_eq!(ids(json!("id = 1 OR genre = drama")), None);
        assert_eq!(ids(json!("NOT id = 1")), None);
        assert_eq!(ids(json!("id != 1")), None);
        assert_eq!(ids(json!("id NOT IN [1]")), None);
        assert_eq!(ids(json!("NOT (id = 1)")), None);
        assert_eq!(ids(json!("(id = 1 OR id = 2) AND x > 3")), v(&["1", "2"]));
        assert_eq!(
            ids(json!("x = 1 OR id = 2 AND y = 3")),
            None,
            "AND binds tighter"
        );
        assert_eq!(
            ids(json!("_geoRadius(1, 2, 3) AND id = 9")),
            v(&["9"]),
            "function arguments are skipped"
        );
        assert_eq!(ids(json!(["id = 1", "x = 2"])), v(&["1"]));
        assert_eq!(ids(json!([["id = 1", "id = 2"], "x = 2"])), v(&["1", "2"]));
        assert_eq!(ids(json!([["id = 1", "x = 2"]])), None);
    }

    #[test]
    fn anything_not_understood_does_not_narrow() {
        for f in [
            json!("id = 1 and x = 2"),
            json!("id = 1 AND"),
            json!("(id = 1"),
            json!("id = 1)"),
            json!("id in [1]"),
            json!("id IN [1,]"),
            json!("id IN [1 2]"),
            json!("id = 'unterminated"),
            json!("id = 'a\\'b'"),
            json!("id = ａ"),
            json!("id = 12345678901234567890"),
            json!("id = 0123456789abcdefABCDEF"),
            json!("id ! 1"),
            json!(""),
            json!(7),
            json!([7]),
            json!([[]]),
            json!([[1]]),
            Value::Null,
        ] {
            assert_eq!(ids(f.clone()), None, "{f}");
        }
        assert_eq!(pinned_ids(None, "id"), None);
        assert_eq!(pinned_ids(Some(&json!("id = 1")), ""), None);
        assert_eq!(pinned_ids(Some(&json!("uid = 1")), "id"), None);
    }

    #[test]
    fn shards_of_pinned_ids() {
        let f = json!("id IN [1, 2]");
        let s = pinned_shards(Some(&f), "id", 64).unwrap();
        let mut want = vec![shard_for_key("1", 64), shard_for_key("2", 64)];
        want.sort();
        want.dedup();
        assert_eq!(s, want);
        assert_eq!(
            pinned_shards(Some(&json!("id IN []")), "id", 8),
            Some(vec![0])
        );
        assert_eq!(pinned_shards(Some(&f), "id", 1), None, "every shard");
        assert_eq!(pinned_shards(Some(&f), "id", 0), None);
        assert_eq!(pinned_shards(Some(&json!("x = 1")), "id", 8), None);
    }
}
