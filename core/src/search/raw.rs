//! Node search answers kept as the JSON text the node sent: hits are located, never parsed whole.
//!
//! States: text → [`RawAnswer`] (the envelope's fields other than `hits` parsed, each hit located as a byte
//! range by the structural scanner of [`super::scan`], its structure checked) → per hit the merge reads,
//! its top-level [`Fields`] (key → value text) read once with the scanner → the client's reply written by
//! splicing the kept fields' text.
//!
//! How much of the text is checked: the envelope's fields in full (parsed); every hit's structure (strings,
//! escapes, control characters, brackets), so a truncated or unbalanced answer is refused; the full grammar
//! of every byte that is parsed (ranking fields, distinct attribute) or written to the reply (each spliced
//! object or array is checked by `serde_json` first, scalars by [`object_fields`]). A garbled byte is
//! therefore an error (`the search answer is not a JSON object`) or never read: it can make neither a panic
//! nor a reply that is not JSON. Known limit: grammar faults that keep the structure (`{"a" tru}`) inside a
//! hit the merge never reads (beyond the window) are not noticed, where the parsed path refuses the answer.
//!
//! Invariants:
//! - A hit's fields follow `serde_json::Map`'s semantics: a repeated key keeps its first position and its
//!   last value, so a spliced hit reads back exactly as the parsed-and-reserialized hit would.
//! - Field *values* are copied byte for byte from the node's text (numbers keep their spelling, strings
//!   their escapes); keys are escaped as `serde_json` escapes them. Parsing the spliced reply gives the same
//!   JSON value as parsing the node's text and serializing the merged value. Known limit: a key repeated
//!   *inside* a field's value (never written by Meilisearch, whose documents have unique keys) is passed on
//!   as written, where parsing would have kept its last value only.
//! - Only the fields the merge needs are ever parsed: `_rankingScore`, `_rankingScoreDetails`,
//!   `_miroir_shard`, the distinct attribute, and `_formatted` / `_matchesPosition` keys when they are
//!   rewritten. `_rankingScoreDetails` may be read while the fields are scanned ([`object_fields_with`]),
//!   by a reader that checks in full what it accepts.
//! - Numbers read without `serde_json` ([`read_number`], [`value_as_f64`], [`value_as_u64`]) read as
//!   `serde_json` reads them into a `Value` with its `float_roundtrip` feature, which the workspace enables
//!   (floats correctly rounded: integers fitting a `u64` converted, Clinger's exact fast path, else
//!   `str::parse`); a number that is not finite as an `f64` is handed to `serde_json`, which refuses it
//!   (out of range). Property tests compare them on many spellings.
//! - A key read without escapes is borrowed from the text and holds no quote, backslash or control
//!   character, so it is written back as it is ([`write_key`]).

use std::borrow::Cow;
use std::collections::HashMap;

use serde_json::{Map, Value};

use super::scan::{skip_container, skip_string, skip_value, skip_ws, string_special};

/// The top-level fields of one JSON object in map order, each with its value's text.
pub(crate) type Fields<'a> = Vec<(Cow<'a, str>, &'a str)>;

/// Beyond this many fields, repeated keys are found with a hash map instead of a scan.
const LINEAR_FIELDS: usize = 24;

/// The fields of `text` when it is one JSON object (and nothing else but whitespace); `None` otherwise.
///
/// Read in one pass with the structural scanner, nothing allocated but the list (and keys holding escapes).
/// Keys, strings and the other scalar values are checked in full; objects and arrays only structurally
/// ([`super::scan`]): a container value is checked in full by [`splice`] before it is written out, or by
/// `serde_json` when it is parsed.
pub(crate) fn object_fields(text: &str) -> Option<Fields<'_>> {
    object_fields_with(text, Vec::new(), None, |_| None)
}

/// [`object_fields`], where an object value of the field named `special` is first offered to `read`:
/// given the index of its `{`, `read` answers the index just past the object when it read (and checked)
/// it in full, `None` to leave it to the scanner. `read` may be called for each of the field's repeats.
///
/// The fields are put in `out` (an empty list, whose room is reused).
pub(crate) fn object_fields_with<'a>(
    text: &'a str,
    mut out: Fields<'a>,
    special: Option<&str>,
    read: impl FnMut(usize) -> Option<usize>,
) -> Option<Fields<'a>> {
    out.clear();
    out.reserve(16);
    let mut index: Option<HashMap<Cow<str>, usize>> = None;
    each_field(text, special, read, |k, v| {
        // A repeated key keeps its first position and its last value, as in a parsed map.
        if out.len() == LINEAR_FIELDS && index.is_none() {
            index = Some(
                out.iter()
                    .enumerate()
                    .map(|(i, (n, _))| (n.clone(), i))
                    .collect(),
            );
        }
        let existing = match &index {
            Some(ix) => ix.get(&k).copied(),
            None => out.iter().position(|(n, _)| *n == k),
        };
        match existing {
            Some(at) => {
                if let Some(slot) = out.get_mut(at) {
                    slot.1 = v;
                }
            }
            None => {
                if let Some(ix) = &mut index {
                    ix.insert(k.clone(), out.len());
                }
                out.push((k, v));
            }
        }
    })?;
    Some(out)
}

/// Calls `f` with each field of `text` (one JSON object and nothing else but whitespace), in the order
/// written, repeated keys included, checked as [`object_fields`] checks them (the `special` field's object
/// offered to `read` first, see [`object_fields_with`]); `None` when `text` is not such an object (`f` may
/// have been called for the fields before the fault).
fn each_field<'a>(
    text: &'a str,
    special: Option<&str>,
    mut read: impl FnMut(usize) -> Option<usize>,
    mut f: impl FnMut(Cow<'a, str>, &'a str),
) -> Option<()> {
    let b = text.as_bytes();
    let mut i = skip_ws(b, 0);
    if b.get(i) != Some(&b'{') {
        return None;
    }
    i = skip_ws(b, i + 1);
    if b.get(i) == Some(&b'}') {
        i += 1;
    } else {
        loop {
            // A key without escapes is its text; one with escapes is checked and unescaped.
            let stop = string_special(b, i + 1);
            let (k, key_end) = if b.get(i) == Some(&b'"') && b.get(stop) == Some(&b'"') {
                (Cow::Borrowed(text.get(i + 1..stop)?), stop + 1)
            } else {
                let key_end = skip_string(b, i)?;
                (key_text(text.get(i..key_end)?).ok()?, key_end)
            };
            i = skip_ws(b, key_end);
            if b.get(i) != Some(&b':') {
                return None;
            }
            i = skip_ws(b, i + 1);
            let offered = b.get(i) == Some(&b'{') && special.is_some_and(|s| k == s);
            let end = match offered.then(|| read(i)).flatten() {
                Some(end) => end,
                None => skip_value(b, i)?,
            };
            let v = text.get(i..end)?;
            if !matches!(b.get(i), Some(b'{' | b'[' | b'"')) && !valid_scalar(v) {
                return None;
            }
            f(k, v);
            i = skip_ws(b, end);
            match b.get(i) {
                Some(b',') => i = skip_ws(b, i + 1),
                Some(b'}') => {
                    i += 1;
                    break;
                }
                _ => return None,
            }
        }
    }
    (skip_ws(b, i) == b.len()).then_some(())
}

/// Whether `s` is a JSON `true`, `false`, `null` or number.
fn valid_scalar(s: &str) -> bool {
    if matches!(s, "true" | "false" | "null") {
        return true;
    }
    let b = s.as_bytes();
    let mut i = usize::from(b.first() == Some(&b'-'));
    let digits = |i: &mut usize| {
        let start = *i;
        while b.get(*i).is_some_and(u8::is_ascii_digit) {
            *i += 1;
        }
        *i > start
    };
    match b.get(i) {
        Some(b'0') => i += 1,
        Some(b'1'..=b'9') => {
            digits(&mut i);
        }
        _ => return false,
    }
    if b.get(i) == Some(&b'.') {
        i += 1;
        if !digits(&mut i) {
            return false;
        }
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        if !digits(&mut i) {
            return false;
        }
    }
    i == b.len()
}

/// A JSON number read by [`read_number`]: where it ends and what `serde_json` makes of it as a `Value`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Number {
    /// Just past the number's last byte.
    pub(crate) end: usize,
    /// `Value::as_u64` of the parsed number (always certain).
    pub(crate) as_u64: Option<u64>,
    /// `Value::as_f64` of the parsed number (`serde_json` with `float_roundtrip`, as the workspace builds
    /// it); `None` when the number is not finite as an `f64`: the caller asks `serde_json`, which refuses
    /// it as out of range.
    pub(crate) as_f64: Option<f64>,
}

/// Significands up to this are exact in an `f64`.
const EXACT_SIGNIFICAND: u64 = 1 << 53;

/// Powers of ten exact in an `f64`.
const POW10: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
];

/// The correctly rounded `f64` of the number text `b[start..end]`, which is what `serde_json` gives with
/// `float_roundtrip` (enabled for the whole workspace); `None` when it is not finite (`serde_json` refuses
/// such a number as out of range: the caller lets it decide).
fn correctly_rounded(b: &[u8], start: usize, end: usize) -> Option<f64> {
    std::str::from_utf8(b.get(start..end)?)
        .ok()?
        .parse::<f64>()
        .ok()
        .filter(|f| f.is_finite())
}

/// Reads the JSON number opening at `b[start]` by JSON's grammar (`-?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?`);
/// `None` when no number opens there. The caller checks what follows (a digit after a leading `0` is not
/// part of the number, so `01` reads as `0` followed by a stray `1`).
///
/// `as_f64` is what `serde_json` (with `float_roundtrip`) gives: integers fitting a `u64` converted with
/// `as f64` (negated for a leading `-`); decimals whose digits make a significand ≤ 2^53 with a final
/// power of ten within ±22 by Clinger's fast path (both factors are exact in an `f64`, so one multiply or
/// divide rounds correctly); every other number correctly rounded by `str::parse` (long decimals such as
/// `0.9848484848484849` are common in ranking scores).
pub(crate) fn read_number(b: &[u8], start: usize) -> Option<Number> {
    let negative = b.get(start) == Some(&b'-');
    let mut i = start + usize::from(negative);
    let int_start = i;
    // One pass: the digits (integer then fraction) accumulate, wrapping, into `significand`; it is used
    // only when at most 19 digits were read, which cannot overflow.
    let mut significand: u64 = 0;
    let mut digits = |i: &mut usize| {
        let from = *i;
        while let Some(&d @ b'0'..=b'9') = b.get(*i) {
            significand = significand
                .wrapping_mul(10)
                .wrapping_add(u64::from(d - b'0'));
            *i += 1;
        }
        *i - from
    };
    match b.get(i) {
        Some(b'0') => i += 1,
        Some(b'1'..=b'9') => {
            digits(&mut i);
        }
        _ => return None,
    }
    let int_digits = i - int_start;
    let mut frac_digits = 0;
    let mut plain = true;
    if b.get(i) == Some(&b'.') {
        plain = false;
        i += 1;
        frac_digits = digits(&mut i);
        if frac_digits == 0 {
            return None;
        }
    }
    let mut exponent = -(frac_digits as i64);
    if matches!(b.get(i), Some(b'e' | b'E')) {
        plain = false;
        i += 1;
        let minus = b.get(i) == Some(&b'-');
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        let from = i;
        let mut e: i64 = 0;
        while let Some(&d @ b'0'..=b'9') = b.get(i) {
            e = (e * 10 + i64::from(d - b'0')).min(1 << 32);
            i += 1;
        }
        if i == from {
            return None;
        }
        exponent += if minus { -e } else { e };
    }
    let sign = |f: f64| if negative { -f } else { f };
    let (as_u64, as_f64) = if plain {
        // A plain integer: a `u64` up to 19 digits for sure, at 20 digits when it does not overflow.
        let integer = match int_digits {
            0..=19 => Some(significand),
            20 => b.get(int_start..i).and_then(|ds| {
                ds.iter().try_fold(0u64, |v, d| {
                    v.checked_mul(10)?.checked_add(u64::from(d - b'0'))
                })
            }),
            _ => None,
        };
        match integer {
            Some(v) => ((!negative).then_some(v), Some(sign(v as f64))),
            // beyond `u64`: a float, correctly rounded
            None => (None, correctly_rounded(b, start, i)),
        }
    } else if int_digits + frac_digits <= 19
        && significand <= EXACT_SIGNIFICAND
        && (-22..=22).contains(&exponent)
    {
        let f = significand as f64;
        let pow = POW10[exponent.unsigned_abs() as usize];
        (
            None,
            Some(sign(if exponent >= 0 { f * pow } else { f / pow })),
        )
    } else {
        (None, correctly_rounded(b, start, i))
    };
    Some(Number {
        end: i,
        as_u64,
        as_f64,
    })
}

/// The parts of the unsigned JSON number opening at `b[start]`: integer digits, fraction digits (after
/// the `.`), exponent (its sign, its digits) and the end; `None` when no number opens there.
#[allow(clippy::type_complexity)]
fn number_parts(
    b: &[u8],
    start: usize,
) -> Option<(
    (usize, usize),
    Option<(usize, usize)>,
    Option<(bool, usize, usize)>,
    usize,
)> {
    let run = |mut i: usize| {
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        i
    };
    let int_end = match b.get(start) {
        Some(b'0') => start + 1,
        Some(b'1'..=b'9') => run(start + 1),
        _ => return None,
    };
    let mut i = int_end;
    let mut frac = None;
    if b.get(i) == Some(&b'.') {
        let end = run(i + 1);
        if end == i + 1 {
            return None;
        }
        frac = Some((i + 1, end));
        i = end;
    }
    let mut exp = None;
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        let minus = b.get(i) == Some(&b'-');
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        let end = run(i);
        if end == i {
            return None;
        }
        exp = Some((minus, i, end));
        i = end;
    }
    Some(((start, int_end), frac, exp, i))
}

/// The index just past the JSON number opening at `b[start]`, its grammar checked (as `serde_json`
/// checks a number it ignores); `None` when no number opens there.
pub(crate) fn skip_number(b: &[u8], start: usize) -> Option<usize> {
    let negative = b.get(start) == Some(&b'-');
    number_parts(b, start + usize::from(negative)).map(|(_, _, _, end)| end)
}

/// `parse(raw).map(|v| v.as_f64())` for one field value read by [`object_fields`] (a checked scalar or
/// a structurally checked container), without `serde_json` when the answer is certain.
pub(crate) fn value_as_f64(raw: &str) -> Option<Option<f64>> {
    match raw.as_bytes().first() {
        Some(b'-' | b'0'..=b'9') => match read_number(raw.as_bytes(), 0) {
            Some(Number {
                end,
                as_f64: Some(f),
                ..
            }) if end == raw.len() => Some(Some(f)),
            _ => parse(raw).map(|v| v.as_f64()),
        },
        _ if matches!(raw, "true" | "false" | "null") => Some(None),
        _ => parse(raw).map(|v| v.as_f64()),
    }
}

/// `parse(raw).map(|v| v.as_u64())` for one field value read by [`object_fields`], as [`value_as_f64`].
pub(crate) fn value_as_u64(raw: &str) -> Option<Option<u64>> {
    match raw.as_bytes().first() {
        Some(b'-' | b'0'..=b'9') => match read_number(raw.as_bytes(), 0) {
            // A number that parses (its `f64` is certain) or a plain integer: `as_u64` is exact.
            Some(n) if n.end == raw.len() && (n.as_f64.is_some() || n.as_u64.is_some()) => {
                Some(n.as_u64)
            }
            _ => parse(raw).map(|v| v.as_u64()),
        },
        _ if matches!(raw, "true" | "false" | "null") => Some(None),
        _ => parse(raw).map(|v| v.as_u64()),
    }
}

/// Appends a field value read by [`object_fields`], checking an object or an array in full first (the
/// scanner checked only its structure); `false` (nothing written) when it is not valid JSON.
pub(crate) fn splice(out: &mut String, value: &str) -> bool {
    if value.starts_with(['{', '['])
        && serde_json::from_str::<serde::de::IgnoredAny>(value).is_err()
    {
        return false;
    }
    out.push_str(value);
    true
}

/// The value of field `name` (the last one written, as `serde_json::Map` keeps it).
pub(crate) fn field<'a>(fields: &Fields<'a>, name: &str) -> Option<&'a str> {
    fields.iter().find(|(n, _)| n == name).map(|(_, v)| *v)
}

/// Parses one value's text (`None` when it is not JSON).
pub(crate) fn parse(raw: &str) -> Option<Value> {
    serde_json::from_str(raw).ok()
}

/// Why an answer is not a search result (the merge reports it as `miroir_bad_node_response`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Malformed {
    /// Not one JSON object.
    NotObject,
    /// `hits` missing or not an array.
    NoHits,
    /// An element of `hits` is not an object.
    HitNotObject,
}

impl Malformed {
    pub(crate) fn message(self) -> &'static str {
        match self {
            Malformed::NotObject => "the search answer is not a JSON object",
            Malformed::NoHits => "`hits` is missing or not an array",
            Malformed::HitNotObject => "a hit is not a JSON object",
        }
    }
}

/// A located answer: the hits' byte ranges in the text, and every other top-level field parsed.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Located {
    pub(crate) hits: Vec<(usize, usize)>,
    pub(crate) rest: Map<String, Value>,
}

/// One node's search answer as the JSON text it sent (status 200), located but not parsed whole.
///
/// Build it with [`RawAnswer::parse`] when the answer arrives; [`super::merge_search_text`] merges them.
#[derive(Debug, Clone, PartialEq)]
pub struct RawAnswer {
    order: usize,
    text: String,
    located: Result<Located, Malformed>,
}

impl RawAnswer {
    /// Reads the node's answer `text`; `order` is the node's position in the covering set. Never fails:
    /// an answer that is not a search result is kept and reported by the merge (see
    /// [`RawAnswer::is_search_result`]).
    pub fn parse(order: usize, text: String) -> RawAnswer {
        let located = locate(&text);
        RawAnswer {
            order,
            text,
            located,
        }
    }

    /// The node's position in the covering set.
    pub fn order(&self) -> usize {
        self.order
    }

    /// The text as the node sent it.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Whether the answer is one JSON object whose `hits` is an array (the hits themselves are checked by
    /// the merge, as for parsed answers).
    pub fn is_search_result(&self) -> bool {
        !matches!(
            self.located,
            Err(Malformed::NotObject) | Err(Malformed::NoHits)
        )
    }

    pub(crate) fn located(&self) -> Result<&Located, Malformed> {
        self.located.as_ref().map_err(|m| *m)
    }
}

/// Byte ranges in a text.
type Ranges = Vec<(usize, usize)>;

/// Locates an answer with the structural scanner ([`super::scan`]): the envelope's fields other than `hits`
/// are parsed (and so fully checked); each hit is located as a byte range whose structure is checked
/// (strings, escapes, brackets), its grammar being checked by `serde_json` only if the merge reads it.
fn locate(text: &str) -> Result<Located, Malformed> {
    let b = text.as_bytes();
    let mut i = skip_ws(b, 0);
    if b.get(i) != Some(&b'{') {
        return Err(Malformed::NotObject);
    }
    i = skip_ws(b, i + 1);
    // The last `hits` wins, as in a parsed map: `None` missing, `Some(None)` not an array.
    let mut hits: Option<Option<(Ranges, bool)>> = None;
    let mut rest = Map::new();
    if b.get(i) == Some(&b'}') {
        i += 1;
    } else {
        loop {
            let key_end = skip_string(b, i).ok_or(Malformed::NotObject)?;
            let key = key_text(text.get(i..key_end).ok_or(Malformed::NotObject)?)?;
            i = skip_ws(b, key_end);
            if b.get(i) != Some(&b':') {
                return Err(Malformed::NotObject);
            }
            i = skip_ws(b, i + 1);
            if key == "hits" && b.get(i) == Some(&b'[') {
                let (ranges, not_object, end) = locate_hits(text, i)?;
                hits = Some(Some((ranges, not_object)));
                i = end;
            } else {
                let end = skip_value(b, i).ok_or(Malformed::NotObject)?;
                let value = parse_slice(text, i, end)?;
                if key == "hits" {
                    hits = Some(None);
                } else {
                    rest.insert(key.into_owned(), value);
                }
                i = end;
            }
            i = skip_ws(b, i);
            match b.get(i) {
                Some(b',') => i = skip_ws(b, i + 1),
                Some(b'}') => {
                    i += 1;
                    break;
                }
                _ => return Err(Malformed::NotObject),
            }
        }
    }
    if skip_ws(b, i) != b.len() {
        return Err(Malformed::NotObject);
    }
    match hits {
        None | Some(None) => Err(Malformed::NoHits),
        Some(Some((_, true))) => Err(Malformed::HitNotObject),
        Some(Some((hits, false))) => Ok(Located { hits, rest }),
    }
}

/// A key's text (with its quotes) unescaped, borrowed when it holds no escape.
fn key_text(quoted: &str) -> Result<Cow<'_, str>, Malformed> {
    match quoted.strip_prefix('"').and_then(|k| k.strip_suffix('"')) {
        Some(inner) if !inner.contains('\\') => Ok(Cow::Borrowed(inner)),
        _ => serde_json::from_str::<String>(quoted)
            .map(Cow::Owned)
            .map_err(|_| Malformed::NotObject),
    }
}

/// Parses `text[start..end]`, one located value.
fn parse_slice(text: &str, start: usize, end: usize) -> Result<Value, Malformed> {
    let slice = text.get(start..end).ok_or(Malformed::NotObject)?;
    serde_json::from_str(slice).map_err(|_| Malformed::NotObject)
}

/// Locates the elements of the `hits` array opening at `start`: each object's range, whether some element
/// is not an object (such elements are parsed, to tell invalid text from a wrong shape), and the index just
/// past the array.
fn locate_hits(text: &str, start: usize) -> Result<(Ranges, bool, usize), Malformed> {
    let b = text.as_bytes();
    let mut ranges = Vec::new();
    let mut not_object = false;
    let mut i = skip_ws(b, start + 1);
    if b.get(i) == Some(&b']') {
        return Ok((ranges, false, i + 1));
    }
    loop {
        let end = if b.get(i) == Some(&b'{') {
            let end = skip_container(b, i).ok_or(Malformed::NotObject)?;
            ranges.push((i, end));
            end
        } else {
            let end = skip_value(b, i).ok_or(Malformed::NotObject)?;
            parse_slice(text, i, end)?;
            not_object = true;
            end
        };
        i = skip_ws(b, end);
        match b.get(i) {
            Some(b',') => i = skip_ws(b, i + 1),
            Some(b']') => return Ok((ranges, not_object, i + 1)),
            _ => return Err(Malformed::NotObject),
        }
    }
}

/// Appends a key read by [`object_fields`] as a JSON string, escaped exactly as `serde_json` escapes it: a
/// borrowed key held no escape, quote or control character in the text, so it needs none.
#[allow(clippy::ptr_arg)] // whether the key is borrowed is what matters
pub(crate) fn write_key(out: &mut String, key: &Cow<str>) {
    match key {
        Cow::Borrowed(k) => {
            out.push('"');
            out.push_str(k);
            out.push('"');
        }
        Cow::Owned(k) => write_str(out, k),
    }
}

/// Appends `s` as a JSON string, escaped exactly as `serde_json` escapes it.
pub(crate) fn write_str(out: &mut String, s: &str) {
    out.push('"');
    let mut start = 0;
    for (i, b) in s.bytes().enumerate() {
        let escape: Option<&str> = match b {
            b'"' => Some("\\\""),
            b'\\' => Some("\\\\"),
            b'\n' => Some("\\n"),
            b'\r' => Some("\\r"),
            b'\t' => Some("\\t"),
            0x08 => Some("\\b"),
            0x0c => Some("\\f"),
            0..=0x1f => Some(""),
            _ => None,
        };
        let Some(escape) = escape else { continue };
        out.push_str(&s[start..i]);
        if escape.is_empty() {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.push_str("\\u00");
            out.push(HEX[(b >> 4) as usize] as char);
            out.push(HEX[(b & 0xf) as usize] as char);
        } else {
            out.push_str(escape);
        }
        start = i + 1;
    }
    out.push_str(&s[start..]);
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keys_are_escaped_like_serde_json() {
        for s in [
            "plain",
            "quo\"te",
            "back\\slash",
            "nl\n\r\t\u{8}\u{c}",
            "\u{1}\u{1f}\u{7f}",
            "é ü 日本",
            "",
        ] {
            let mut out = String::new();
            write_str(&mut out, s);
            assert_eq!(out, serde_json::to_string(s).unwrap());
        }
    }

    #[test]
    fn fields_follow_map_semantics_for_repeated_keys() {
        let f = object_fields(r#" {"a": 1, "b": [1, {"x": 2}], "a": "two", "c\u0041": null} "#)
            .unwrap();
        let names: Vec<&str> = f.iter().map(|(n, _)| n.as_ref()).collect();
        assert_eq!(names, ["a", "b", "cA"]);
        assert_eq!(f[0].1, "\"two\"");
        assert_eq!(f[1].1, "[1, {\"x\": 2}]");
        // many fields: the hash map takes over, same semantics
        let mut text = String::from("{");
        for i in 0..60 {
            text.push_str(&format!("\"k{}\": {i},", i % 40));
        }
        text.push_str("\"end\": 0}");
        let f = object_fields(&text).unwrap();
        assert_eq!(f.len(), 41);
        assert_eq!(field(&f, "k5").unwrap(), "45");
        assert_eq!(field(&f, "k39").unwrap(), "39");
        let parsed: Value = serde_json::from_str(&text).unwrap();
        let names: Vec<&str> = f.iter().map(|(n, _)| n.as_ref()).collect();
        let expected: Vec<&str> = parsed
            .as_object()
            .unwrap()
            .keys()
            .map(|k| k.as_str())
            .collect();
        assert_eq!(names, expected);
        for bad in ["[1]", "{\"a\": 1} x", "{\"a\": }", "", "null"] {
            assert!(object_fields(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn answers_are_located_or_reported() {
        let a = RawAnswer::parse(
            3,
            r#"{"hits": [ {"id": 1} , {"id": "two", "n": {"a": [1]}}], "query": "q", "estimatedTotalHits": 2}"#
                .to_string(),
        );
        assert!(a.is_search_result());
        assert_eq!(a.order(), 3);
        let located = a.located().unwrap();
        let hits: Vec<&str> = located
            .hits
            .iter()
            .map(|(s, e)| &a.text()[*s..*e])
            .collect();
        assert_eq!(hits, [r#"{"id": 1}"#, r#"{"id": "two", "n": {"a": [1]}}"#]);
        assert_eq!(located.rest["query"], json!("q"));
        assert!(!located.rest.contains_key("hits"));
        let cases = [
            ("", Malformed::NotObject),
            ("[1]", Malformed::NotObject),
            ("{\"hits\": []", Malformed::NotObject),
            ("{\"hits\": []} {}", Malformed::NotObject),
            ("{}", Malformed::NoHits),
            ("{\"hits\": {\"a\": [1]}}", Malformed::NoHits),
            ("{\"hits\": \"x\"}", Malformed::NoHits),
            ("{\"hits\": null}", Malformed::NoHits),
            ("{\"hits\": 1.5}", Malformed::NoHits),
            ("{\"hits\": -1}", Malformed::NoHits),
            ("{\"hits\": 1}", Malformed::NoHits),
            ("{\"hits\": true}", Malformed::NoHits),
            ("{\"hits\": [{}, 1]}", Malformed::HitNotObject),
            ("{\"hits\": [[]]}", Malformed::HitNotObject),
        ];
        for (text, why) in cases {
            let a = RawAnswer::parse(0, text.to_string());
            assert_eq!(a.located().unwrap_err(), why, "{text}");
            assert_eq!(a.is_search_result(), why == Malformed::HitNotObject);
        }
        // the last `hits` wins, as in a parsed map
        let a = RawAnswer::parse(0, r#"{"hits": 1, "hits": [{"a": 1}]}"#.to_string());
        assert_eq!(a.located().unwrap().hits.len(), 1);
    }
}
