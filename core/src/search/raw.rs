//! Node search answers kept as the JSON text the node sent: hits are located, never parsed whole.
//!
//! States: text → [`RawAnswer`] (the envelope's fields other than `hits` parsed, the `hits` array
//! located: from both ends of the text when it is laid out as Meilisearch writes it, without reading a
//! single hit; otherwise by the structural scanner of [`super::scan`], every hit's structure checked) →
//! per hit the merge reads, front to back ([`HitCursor`]), its top-level [`Fields`] (key → value text) read
//! once with the scanner → the client's reply written by splicing the kept fields' text.
//!
//! How much of the text is checked: the envelope's fields in full (parsed); every hit the merge reads
//! (strings, escapes, control characters, brackets, and the elements between hits); the full grammar of
//! every byte that is parsed (ranking fields, distinct attribute) or written to the reply (each spliced
//! object or array is checked by `serde_json` first, scalars by [`object_fields`]). A garbled byte is
//! therefore an error (`the search answer is not a JSON object`) or never read: it can make neither a panic
//! nor a reply that is not JSON. Known limit: hits the merge never reads (beyond the window) are not
//! looked at when the answer was located from both ends (any fault in them goes unnoticed, a hit that is
//! not an object included), and only structurally otherwise, where the parsed path refuses the answer.
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

use super::scan::{ends_scalar, skip_container, skip_string, skip_value, skip_ws, string_special};

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
    out: Fields<'a>,
    special: Option<&str>,
    read: impl FnMut(usize) -> Option<usize>,
) -> Option<Fields<'a>> {
    let (fields, end) = object_fields_at(text, skip_ws(text.as_bytes(), 0), out, special, read)?;
    (skip_ws(text.as_bytes(), end) == text.len()).then_some(fields)
}

/// [`object_fields_with`] on the object opening at `text[start]`, followed by anything: its fields, and
/// the index just past its `}`.
pub(crate) fn object_fields_at<'a>(
    text: &'a str,
    start: usize,
    mut out: Fields<'a>,
    special: Option<&str>,
    read: impl FnMut(usize) -> Option<usize>,
) -> Option<(Fields<'a>, usize)> {
    out.clear();
    out.reserve(16);
    let mut index: Option<HashMap<Cow<str>, usize>> = None;
    // A cheap print of each of the first keys, compared before the keys themselves.
    let mut prints = [0u32; LINEAR_FIELDS];
    let end = each_field(text, start, special, read, |k, v| {
        // A repeated key keeps its first position and its last value, as in a parsed map.
        if out.len() == LINEAR_FIELDS && index.is_none() {
            index = Some(
                out.iter()
                    .enumerate()
                    .map(|(i, (n, _))| (n.clone(), i))
                    .collect(),
            );
        }
        let print = key_print(&k);
        let existing = match &index {
            Some(ix) => ix.get(&k).copied(),
            None => prints
                .iter()
                .zip(&out)
                .position(|(p, (n, _))| *p == print && *n == k),
        };
        match existing {
            Some(at) => {
                if let Some(slot) = out.get_mut(at) {
                    slot.1 = v;
                }
            }
            None => {
                if let Some(slot) = prints.get_mut(out.len()) {
                    *slot = print;
                }
                if let Some(ix) = &mut index {
                    ix.insert(k.clone(), out.len());
                }
                out.push((k, v));
            }
        }
    })?;
    Some((out, end))
}

/// A print of a key: equal keys have equal prints (its length, first and last bytes).
fn key_print(k: &str) -> u32 {
    let b = k.as_bytes();
    let edge = |x: Option<&u8>| u32::from(x.copied().unwrap_or(0));
    ((b.len() as u32) << 16) ^ (edge(b.first()) << 8) ^ edge(b.last())
}

/// Calls `f` with each field of the JSON object opening at `text[start]`, in the order written, repeated
/// keys included, checked as [`object_fields`] checks them (the `special` field's object offered to `read`
/// first, see [`object_fields_with`]), and answers the index just past its `}`; `None` when no such object
/// opens there (`f` may have been called for the fields before the fault).
fn each_field<'a>(
    text: &'a str,
    start: usize,
    special: Option<&str>,
    mut read: impl FnMut(usize) -> Option<usize>,
    mut f: impl FnMut(Cow<'a, str>, &'a str),
) -> Option<usize> {
    let b = text.as_bytes();
    let mut i = start;
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
            let end = match *b.get(i)? {
                b'"' => skip_string(b, i)?,
                b'{' if special.is_some_and(|s| k == s) => match read(i) {
                    Some(end) => end,
                    None => skip_container(b, i)?,
                },
                b'{' | b'[' => skip_container(b, i)?,
                // A scalar runs to the next delimiter and is exactly a number or a literal.
                b'-' | b'0'..=b'9' => {
                    let end = skip_number(b, i)?;
                    if !b.get(end).is_none_or(|c| ends_scalar(*c)) {
                        return None;
                    }
                    end
                }
                _ => {
                    let end = skip_value(b, i)?;
                    if !matches!(text.get(i..end)?, "true" | "false" | "null") {
                        return None;
                    }
                    end
                }
            };
            f(k, text.get(i..end)?);
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
    Some(i)
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

/// The value of the eight ASCII digits `b[i..i + 8]` (the first most significant); `None` when fewer
/// than eight bytes remain or one of them is not a digit. (Eight digits checked and converted at once.)
#[inline]
fn eight_digits(b: &[u8], i: usize) -> Option<u64> {
    let chunk: [u8; 8] = b.get(i..i.checked_add(8)?)?.try_into().ok()?;
    let w = u64::from_le_bytes(chunk);
    const HIGH: u64 = 0xf0f0_f0f0_f0f0_f0f0;
    // Each byte is a digit iff its high nibble is 3 and adding 6 leaves it 3 (a byte that carries into
    // the next one has a high nibble of `f` itself, so a carry never hides a non-digit).
    if (w & HIGH) | ((w.wrapping_add(0x0606_0606_0606_0606) & HIGH) >> 4) != 0x3333_3333_3333_3333 {
        return None;
    }
    let v = w - 0x3030_3030_3030_3030;
    // Pairs of digits, then quadruples, then the eight (little-endian: the first byte is the first digit).
    let v = v.wrapping_mul(10).wrapping_add(v >> 8);
    let v = (v & 0x0000_00ff_0000_00ff)
        .wrapping_mul(100 + (1_000_000 << 32))
        .wrapping_add(((v >> 16) & 0x0000_00ff_0000_00ff).wrapping_mul(1 + (10_000 << 32)));
    Some(v >> 32)
}

/// Moves `*i` past the run of ASCII digits at `b[*i]`, accumulating them into `significand` (times ten
/// plus the digit for each, wrapping: exact when at most 19 digits were accumulated from 0); the number
/// of digits in the run.
#[inline]
fn digit_run(b: &[u8], i: &mut usize, significand: &mut u64) -> usize {
    let from = *i;
    while let Some(v) = eight_digits(b, *i) {
        *significand = significand.wrapping_mul(100_000_000).wrapping_add(v);
        *i += 8;
    }
    while let Some(&d @ b'0'..=b'9') = b.get(*i) {
        *significand = significand
            .wrapping_mul(10)
            .wrapping_add(u64::from(d - b'0'));
        *i += 1;
    }
    *i - from
}

/// The sign, integer part and fraction of a JSON number (what precedes its exponent).
struct Mantissa {
    negative: bool,
    /// Where the integer digits start (after the sign).
    int_start: usize,
    int_digits: usize,
    frac_digits: usize,
    /// The integer and fraction digits accumulated, wrapping: exact when they are at most 19.
    significand: u64,
    /// Just past the last fraction digit (or integer digit).
    end: usize,
}

/// The [`Mantissa`] of the JSON number opening at `b[start]`; `None` when no number opens there or a
/// `.` is not followed by a digit.
#[inline(always)]
fn mantissa(b: &[u8], start: usize) -> Option<Mantissa> {
    let negative = b.get(start) == Some(&b'-');
    let mut i = start + usize::from(negative);
    let int_start = i;
    let mut significand: u64 = 0;
    match b.get(i) {
        Some(b'0') => i += 1,
        Some(b'1'..=b'9') => {
            digit_run(b, &mut i, &mut significand);
        }
        _ => return None,
    }
    let int_digits = i - int_start;
    let mut frac_digits = 0;
    if b.get(i) == Some(&b'.') {
        i += 1;
        frac_digits = digit_run(b, &mut i, &mut significand);
        if frac_digits == 0 {
            return None;
        }
    }
    Some(Mantissa {
        negative,
        int_start,
        int_digits,
        frac_digits,
        significand,
        end: i,
    })
}

/// [`read_number`] on the numbers it reads without more work: at most 19 digits, no exponent, and a
/// plain integer, a decimal that takes Clinger's fast path (so scores such as `0.6666666666666666`,
/// `1.0`, orders and counts) or one whose quotient is checked nearest ([`checked_quotient`]). `None` when the number is not one of them (or no number opens there): the
/// caller asks [`read_number`]. Whenever it is `Some`, it is exactly what [`read_number`] gives.
#[inline(always)]
pub(crate) fn short_number(b: &[u8], start: usize) -> Option<Number> {
    let Mantissa {
        negative,
        int_digits,
        frac_digits,
        significand,
        end: i,
        ..
    } = mantissa(b, start)?;
    if matches!(b.get(i), Some(b'e' | b'E')) || int_digits + frac_digits > 19 {
        return None;
    }
    let sign = |f: f64| if negative { -f } else { f };
    if frac_digits == 0 {
        return Some(Number {
            end: i,
            as_u64: (!negative).then_some(significand),
            as_f64: Some(sign(significand as f64)),
        });
    }
    let pow = *POW10.get(frac_digits)?;
    let value = if significand <= EXACT_SIGNIFICAND {
        significand as f64 / pow
    } else {
        checked_quotient(significand, frac_digits)?
    };
    Some(Number {
        end: i,
        as_u64: None,
        as_f64: Some(sign(value)),
    })
}

/// `significand / 10^frac_digits` correctly rounded, for a significand beyond 2^53 (so not exact in an
/// `f64`, as in scores such as `0.9848484848484849`) and `frac_digits` ≤ 22: the quotient of the
/// rounded significand by the (exact) power is computed, then it or its neighbour towards the exact
/// quotient is checked in integers to be the nearest `f64` (ties to even); `None` when neither is or
/// the check cannot be made (the caller reads the number by [`read_number`], which rounds it by
/// `str::parse`).
#[inline]
fn checked_quotient(significand: u64, frac_digits: usize) -> Option<f64> {
    const MANTISSA: u64 = (1 << 52) - 1;
    let candidate = significand as f64 / *POW10.get(frac_digits)?;
    if !candidate.is_normal() {
        return None;
    }
    let bits = candidate.to_bits();
    // candidate = mantissa × 2^exponent, mantissa in [2^52, 2^53).
    let mut mantissa = (bits & MANTISSA) | (1 << 52);
    let exponent = ((bits >> 52) & 0x7ff) as i64 - 1075;
    if !(-63..0).contains(&exponent) {
        return None;
    }
    let shift = (1 - exponent) as u32; // 2..=64
                                       // |significand / 10^k − mantissa · 2^e| ≤ 2^e / 2, times 2 · 10^k · 2^−e:
                                       // |significand · 2^(1−e) − 2 · mantissa · 10^k| ≤ 10^k, all below 2^128.
    let scaled = u128::from(significand).checked_shl(shift)?;
    let ten_k = 10u128.checked_pow(u32::try_from(frac_digits).ok()?)?;
    for _ in 0..2 {
        // At a power of two the spacing below is half the spacing above: left to `str::parse`.
        if mantissa <= 1 << 52 || mantissa >= 1 << 53 {
            return None;
        }
        let nearest = u128::from(2 * mantissa).checked_mul(ten_k)?;
        let distance = scaled.abs_diff(nearest);
        if distance < ten_k || (distance == ten_k && mantissa & 1 == 0) {
            return Some(f64::from_bits((bits & !MANTISSA) | (mantissa & MANTISSA)));
        }
        mantissa = if scaled > nearest {
            mantissa + 1
        } else {
            mantissa - 1
        };
    }
    None
}

/// Reads the JSON number opening at `b[start]` by JSON's grammar (`-?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?`);
/// `None` when no number opens there. The caller checks what follows (a digit after a leading `0` is not
/// part of the number, so `01` reads as `0` followed by a stray `1`).
///
/// `as_f64` is what `serde_json` (with `float_roundtrip`) gives: integers fitting a `u64` converted with
/// `as f64` (negated for a leading `-`); decimals whose digits make a significand ≤ 2^53 with a final
/// power of ten within ±22 by Clinger's fast path (both factors are exact in an `f64`, so one multiply or
/// divide rounds correctly); every other number correctly rounded by `str::parse` (long decimals such as
/// `0.9848484848484849` are common in ranking scores). Digits are read eight at a time where eight follow
/// ([`digit_run`]); [`short_number`] is its inlined part for the numbers most details hold.
pub(crate) fn read_number(b: &[u8], start: usize) -> Option<Number> {
    let Mantissa {
        negative,
        int_start,
        int_digits,
        frac_digits,
        significand,
        end: mut i,
    } = mantissa(b, start)?;
    let mut plain = frac_digits == 0;
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

/// A located answer: where its `hits` array lies in the text, and every other top-level field parsed.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Located {
    /// `text[hits.0..hits.1]` is what lies between the array's brackets.
    pub(crate) hits: (usize, usize),
    pub(crate) rest: Map<String, Value>,
}

/// Reads a located answer's hits front to back, one element at a time: [`HitCursor::next_start`] finds
/// where the next one opens, the caller reads it (with [`object_fields_at`]) and says where it ended.
pub(crate) struct HitCursor<'a> {
    /// The answer's text up to the array's closing bracket (excluded): no hit can reach past it.
    text: &'a str,
    i: usize,
    started: bool,
}

impl<'a> HitCursor<'a> {
    pub(crate) fn new(text: &'a str, located: &Located) -> HitCursor<'a> {
        let (start, end) = located.hits;
        HitCursor {
            text: text.get(..end).unwrap_or(""),
            i: start.min(end),
            started: false,
        }
    }

    /// The text the hits are read from (indexes of [`HitCursor::next_start`] are into it).
    pub(crate) fn text(&self) -> &'a str {
        self.text
    }

    /// Where the next hit's `{` is, `Ok(None)` past the last one. `Err` when the next element is not an
    /// object (`HitNotObject` when it is valid JSON) or the text between elements is not JSON.
    pub(crate) fn next_start(&mut self) -> Result<Option<usize>, Malformed> {
        let b = self.text.as_bytes();
        let mut i = skip_ws(b, self.i);
        if self.started {
            if i == b.len() {
                return Ok(None);
            }
            if b.get(i) != Some(&b',') {
                return Err(Malformed::NotObject);
            }
            i = skip_ws(b, i + 1);
        } else if i == b.len() {
            return Ok(None);
        }
        self.started = true;
        self.i = i;
        match b.get(i) {
            Some(b'{') => Ok(Some(i)),
            _ => {
                let end = skip_value(b, i).ok_or(Malformed::NotObject)?;
                parse_slice(self.text, i, end)?;
                Err(Malformed::HitNotObject)
            }
        }
    }

    /// The hit [`HitCursor::next_start`] answered ends just before `end`.
    pub(crate) fn advance_to(&mut self, end: usize) {
        self.i = end;
    }
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

/// Locates an answer: from both of its ends when it is laid out as Meilisearch writes it
/// ([`locate_ends`]), else in full ([`locate_all`]).
fn locate(text: &str) -> Result<Located, Malformed> {
    match locate_ends(text) {
        Some(located) => Ok(located),
        None => locate_all(text),
    }
}

/// Whitespace as JSON has it.
fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\n' | b'\r' | b'\t')
}

/// The index after the last non-whitespace byte of `b[..end]`.
fn back_ws(b: &[u8], mut end: usize) -> usize {
    while end > 0 && b.get(end - 1).copied().is_some_and(is_ws) {
        end -= 1;
    }
    end
}

/// Whether the byte at `b[at]` follows an odd number of backslashes (is escaped).
fn escaped(b: &[u8], at: usize) -> bool {
    let mut n = 0;
    while at > n && b.get(at - n - 1) == Some(&b'\\') {
        n += 1;
    }
    n % 2 == 1
}

/// The index of the quote opening the string whose closing quote is at `b[close]`.
fn back_string_start(b: &[u8], close: usize) -> Option<usize> {
    let mut k = close;
    while k > 0 {
        k -= 1;
        if b.get(k) == Some(&b'"') && !escaped(b, k) {
            return Some(k);
        }
    }
    None
}

/// The index where the value ending just before `b[end]` starts, read backwards. Exact on valid JSON;
/// on other text some index (the caller parses what it finds).
fn back_value_start(b: &[u8], end: usize) -> Option<usize> {
    let last = end.checked_sub(1)?;
    match *b.get(last)? {
        b'"' => back_string_start(b, last),
        b'}' | b']' => {
            let mut depth = 0usize;
            let mut k = end;
            while k > 0 {
                k -= 1;
                match *b.get(k)? {
                    b'"' => k = back_string_start(b, k)?,
                    b'}' | b']' => depth += 1,
                    b'{' | b'[' => {
                        depth = depth.checked_sub(1)?;
                        if depth == 0 {
                            return Some(k);
                        }
                    }
                    _ => {}
                }
            }
            None
        }
        _ => {
            let mut k = end;
            while k > 0
                && b.get(k - 1)
                    .is_some_and(|c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'-' | b'.'))
            {
                k -= 1;
            }
            (k < end).then_some(k)
        }
    }
}

/// Locates an answer laid out as Meilisearch writes it, without reading its hits: `{"hits": [` at the
/// front, then the other fields read (and parsed) backwards from the end, up to the `]` closing `hits`.
/// The merge reads the hits it needs, front to back, and checks each as it reads it; those it never
/// reads are never looked at.
///
/// The `]` closing `hits` is recognised, read backwards, as the first `]` ending a top-level value that
/// follows a `}` (or the array's own `[`) and is followed by a string `query`: Meilisearch writes `hits`
/// first and `query` right after it, and no other array of objects at the top level of a search result.
/// `None` when the text is not laid out so (`hits` not first, not followed by `query`, a repeated `hits`,
/// `hits` not ending with an object, anything not JSON in the fields read), for [`locate_all`] to locate
/// or refuse. Known limit: text whose `hits` is followed by other fields, then by an array of objects
/// right before `query` (never written by Meilisearch) is misread: those fields are taken as hits.
fn locate_ends(text: &str) -> Option<Located> {
    let b = text.as_bytes();
    let mut i = skip_ws(b, 0);
    if b.get(i) != Some(&b'{') {
        return None;
    }
    i = skip_ws(b, i + 1);
    if b.get(i..i + 6) != Some(b"\"hits\"") {
        return None;
    }
    i = skip_ws(b, i + 6);
    if b.get(i) != Some(&b':') {
        return None;
    }
    i = skip_ws(b, i + 1);
    if b.get(i) != Some(&b'[') {
        return None;
    }
    let start = i + 1;
    // From the end: the closing brace, then fields backwards, each `, "key": value`.
    let mut j = back_ws(b, b.len());
    if j <= start || b.get(j - 1) != Some(&b'}') {
        return None;
    }
    j -= 1;
    let mut fields: Vec<(Cow<str>, Value)> = Vec::new();
    let end = loop {
        let value_end = back_ws(b, j);
        if value_end <= start {
            return None;
        }
        if b.get(value_end - 1) == Some(&b']') {
            let before = back_ws(b, value_end - 1);
            if before == start || b.get(before.checked_sub(1)?) == Some(&b'}') {
                // Meilisearch writes `query` (a string) right after `hits`; any other array is read
                // as a value.
                if fields
                    .last()
                    .is_some_and(|(key, value)| key == "query" && value.is_string())
                {
                    break value_end - 1;
                }
            }
        }
        let value_start = back_value_start(b, value_end)?;
        let colon = back_ws(b, value_start);
        if value_start <= start || b.get(colon.checked_sub(1)?) != Some(&b':') {
            return None;
        }
        let key_end = back_ws(b, colon - 1);
        if key_end <= start || b.get(key_end - 1) != Some(&b'"') {
            return None;
        }
        let key_start = back_string_start(b, key_end - 1)?;
        let key = key_text(text.get(key_start..key_end)?).ok()?;
        if key == "hits" {
            return None;
        }
        let value = parse_slice(text, value_start, value_end).ok()?;
        fields.push((key, value));
        let comma = back_ws(b, key_start);
        if comma <= start || b.get(comma - 1) != Some(&b',') {
            return None;
        }
        j = comma - 1;
    };
    // In the order written: a repeated key keeps its first position and its last value.
    let mut rest = Map::new();
    for (key, value) in fields.into_iter().rev() {
        rest.insert(key.into_owned(), value);
    }
    Some(Located {
        hits: (start, end),
        rest,
    })
}

/// Locates an answer with the structural scanner ([`super::scan`]): the envelope's fields other than `hits`
/// are parsed (and so fully checked); each hit's structure is checked (strings, escapes, brackets), its
/// grammar being checked by `serde_json` only if the merge reads it.
fn locate_all(text: &str) -> Result<Located, Malformed> {
    let b = text.as_bytes();
    let mut i = skip_ws(b, 0);
    if b.get(i) != Some(&b'{') {
        return Err(Malformed::NotObject);
    }
    i = skip_ws(b, i + 1);
    // The last `hits` wins, as in a parsed map: `None` missing, `Some(None)` not an array.
    let mut hits: Option<Option<((usize, usize), bool)>> = None;
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
                let (not_object, end) = check_hits(text, i)?;
                hits = Some(Some(((i + 1, end - 1), not_object)));
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

/// Checks the elements of the `hits` array opening at `start`: their structure, and whether some element
/// is not an object (such elements are parsed, to tell invalid text from a wrong shape); answers that, and
/// the index just past the array.
fn check_hits(text: &str, start: usize) -> Result<(bool, usize), Malformed> {
    let b = text.as_bytes();
    let mut not_object = false;
    let mut i = skip_ws(b, start + 1);
    if b.get(i) == Some(&b']') {
        return Ok((false, i + 1));
    }
    loop {
        let end = if b.get(i) == Some(&b'{') {
            skip_container(b, i).ok_or(Malformed::NotObject)?
        } else {
            let end = skip_value(b, i).ok_or(Malformed::NotObject)?;
            parse_slice(text, i, end)?;
            not_object = true;
            end
        };
        i = skip_ws(b, end);
        match b.get(i) {
            Some(b',') => i = skip_ws(b, i + 1),
            Some(b']') => return Ok((not_object, i + 1)),
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
        assert_eq!(
            hit_texts(&a).unwrap(),
            [r#"{"id": 1}"#, r#"{"id": "two", "n": {"a": [1]}}"#]
        );
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
        assert_eq!(hit_texts(&a).unwrap().len(), 1);
    }

    /// The hits of an answer, read with a [`HitCursor`].
    fn hit_texts(a: &RawAnswer) -> Result<Vec<&str>, Malformed> {
        let mut cursor = HitCursor::new(a.text(), a.located()?);
        let mut out = Vec::new();
        while let Some(at) = cursor.next_start()? {
            let (_, end) = object_fields_at(cursor.text(), at, Vec::new(), None, |_| None)
                .ok_or(Malformed::NotObject)?;
            out.push(&cursor.text()[at..end]);
            cursor.advance_to(end);
        }
        Ok(out)
    }

    use super::super::TestRng as Rng;

    /// A random JSON value written with random whitespace, strings holding brackets, quotes and escapes.
    fn random_value(rng: &mut Rng, depth: u32) -> String {
        let ws = |rng: &mut Rng| rng.pick(&["", " ", "\n  ", "\t"]).to_string();
        match rng.below(if depth > 2 { 3 } else { 6 }) {
            0 => rng
                .pick(&["1", "-2.5e3", "0", "1.0", "true", "null", "false"])
                .to_string(),
            1 => rng
                .pick(&[
                    r#""a""#,
                    r#""]""#,
                    r#""}],\"hits\": [""#,
                    r#""x\\""#,
                    r#""\\\"]""#,
                    r#""\u005d""#,
                    r#""""#,
                ])
                .to_string(),
            2 => format!("{}{}", ws(rng), *rng.pick(&["[]", "{}", "[ ]"])),
            3 | 4 => {
                let items: Vec<String> = (0..rng.below(4))
                    .map(|_| {
                        let key = *rng.pick(&["a", "]", "b\\\"", "hits"]);
                        let v = random_value(rng, depth + 1);
                        format!("{}\"{key}\"{}:{}{v}", ws(rng), ws(rng), ws(rng))
                    })
                    .collect();
                format!("{{{}{}}}", items.join(","), ws(rng))
            }
            _ => {
                let items: Vec<String> = (0..rng.below(4))
                    .map(|_| format!("{}{}", ws(rng), random_value(rng, depth + 1)))
                    .collect();
                format!("[{}{}]", items.join(","), ws(rng))
            }
        }
    }

    /// A search answer: `hits` (objects, sometimes a scalar among them) first or not, then other fields
    /// (among them arrays of scalars, as `queryVector` is), random whitespace everywhere.
    fn random_answer(rng: &mut Rng) -> String {
        let ws = |rng: &mut Rng| rng.pick(&["", " ", "\n", "\r\n\t"]).to_string();
        let hits: Vec<String> = (0..rng.below(4))
            .map(|_| {
                if rng.below(12) == 0 {
                    random_value(rng, 2)
                } else {
                    let v = random_value(rng, 1);
                    format!("{{\"id\":{}{v}{}}}", ws(rng), ws(rng))
                }
            })
            .collect();
        let hits = format!(
            "\"hits\"{}:{}[{}{}]",
            ws(rng),
            ws(rng),
            hits.join(","),
            ws(rng)
        );
        let mut fields: Vec<String> = (0..rng.below(5))
            .map(|_| {
                let key = *rng.pick(&[
                    "estimatedTotalHits",
                    "facetDistribution",
                    "queryVector",
                    "x\\\"y",
                ]);
                let value = match key {
                    "queryVector" => "[0.5, -1, 2e-3]".to_string(),
                    _ => random_value(rng, 1),
                };
                format!("\"{key}\"{}:{}{value}", ws(rng), ws(rng))
            })
            .collect();
        if rng.below(2) == 0 {
            fields.insert(0, format!("\"query\":{}\"q\"", ws(rng)));
        }
        let at = if rng.below(5) == 0 {
            rng.below(fields.len() as u64 + 1) as usize
        } else {
            0
        };
        fields.insert(at, hits);
        let sep = format!("{},{}", ws(rng), ws(rng));
        format!("{}{{{}{}}}{}", ws(rng), fields.join(&sep), ws(rng), ws(rng))
    }

    #[test]
    fn answers_located_from_both_ends_are_located_as_in_full() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let (mut from_ends, mut valid, mut meili_laid) = (0, 0, 0);
        for _ in 0..20_000 {
            let text = random_answer(&mut rng);
            let full = locate_all(&text);
            if serde_json::from_str::<Value>(&text).is_ok() {
                valid += 1;
            }
            let parsed = serde_json::from_str::<Map<String, Value>>(&text).ok();
            // Laid out as Meilisearch writes it: `hits` first, `query` right after.
            let meili = parsed.as_ref().is_some_and(|p| {
                let keys: Vec<&str> = p.keys().map(String::as_str).collect();
                keys.starts_with(&["hits", "query"]) && p["query"].is_string()
            });
            if meili && full.is_ok() {
                meili_laid += 1;
                assert_eq!(locate_ends(&text).as_ref(), full.as_ref().ok(), "{text}");
            }
            if let Some(ends) = locate_ends(&text) {
                from_ends += 1;
                // Valid text located from both ends is located as in full, hits (as read) included.
                if let Ok(full) = &full {
                    if meili {
                        assert_eq!(&ends, full, "{text}");
                    }
                } else {
                    // Only a non-object hit, found when the merge reads it.
                    assert_eq!(full, Err(Malformed::HitNotObject), "{text}");
                    let a = RawAnswer::parse(0, text.clone());
                    assert_eq!(hit_texts(&a), Err(Malformed::HitNotObject), "{text}");
                }
            }
            // Whichever way it was located, the hits read back are what a parser sees.
            let a = RawAnswer::parse(0, text.clone());
            if let (Ok(hits), Ok(Value::Object(parsed))) =
                (hit_texts(&a), serde_json::from_str::<Value>(&text))
            {
                let read: Vec<Value> = hits
                    .iter()
                    .map(|h| serde_json::from_str(h).unwrap())
                    .collect();
                assert_eq!(Some(&Value::Array(read)), parsed.get("hits"), "{text}");
                let mut rest = parsed.clone();
                rest.remove("hits");
                assert_eq!(a.located().unwrap().rest, rest, "{text}");
            }
        }
        // Both ways are exercised.
        assert!(from_ends > 5_000 && from_ends < 19_000, "{from_ends}");
        assert!(valid > 10_000 && meili_laid > 5_000, "{valid} {meili_laid}");
    }

    #[test]
    fn damaged_answers_located_from_both_ends_never_panic() {
        let mut rng = Rng(0x2545_f491_4f6c_dd1d);
        for _ in 0..20_000 {
            let mut text = random_answer(&mut rng).into_bytes();
            for _ in 0..=rng.below(3) {
                if text.is_empty() {
                    break;
                }
                let at = rng.below(text.len() as u64) as usize;
                match rng.below(3) {
                    0 => {
                        text.remove(at);
                    }
                    1 => text.insert(at, *b"\"\\]}[{,:".get(rng.below(8) as usize).unwrap()),
                    _ => text.truncate(at),
                }
            }
            let Ok(text) = String::from_utf8(text) else {
                continue;
            };
            let a = RawAnswer::parse(0, text.clone());
            let _ = hit_texts(&a);
            if let Ok(located) = a.located() {
                // What it answers lies inside the text, on character boundaries.
                assert!(
                    located.hits.0 <= located.hits.1 && located.hits.1 < text.len(),
                    "{text}"
                );
            }
        }
    }
}
