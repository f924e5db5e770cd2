//! A fast structural scanner of JSON text: where a value ends, without parsing it.
//!
//! States: the text from a value's first byte is read in blocks of 64 bytes; each block is classified
//! (quotes, backslashes, opening and closing brackets, control characters) into 64-bit masks (SSE2 on x86-64,
//! portable 64-bit word arithmetic elsewhere), then reduced with the state carried from block to block:
//! whether its first byte is escaped, whether it starts inside a string, and the stack of open brackets.
//!
//! Invariants:
//! - On text `serde_json` accepts, [`skip_value`] ends exactly where `serde_json`'s value ends (a property
//!   test compares them on random and adversarial text).
//! - What is checked (anything else is an error, `None`): strings are closed, escapes are `\` followed by
//!   one of `"\/bfnrtu`, no control character inside a string, no backslash outside one, brackets balanced
//!   and of matching kinds, the text does not end inside the value. What is NOT checked inside a container:
//!   the grammar between brackets and quotes (commas, colons, numbers, `true`/`false`/`null` spelling). A
//!   skipped value is therefore never used as JSON as is: callers parse what they keep.
//! - Never panics, never reads outside the text, time linear in the bytes read; nesting depth is unbounded
//!   (a bit stack, spilled to the heap beyond 128 levels).

/// The classes of one 64-byte block, bit `i` for byte `i`.
#[derive(Default, Clone, Copy)]
struct Masks {
    quote: u64,
    backslash: u64,
    open: u64,
    close: u64,
    control: u64,
}

#[cfg(target_arch = "x86_64")]
fn classify(block: &[u8; 64]) -> Masks {
    use std::arch::x86_64::{
        __m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_max_epu8, _mm_movemask_epi8, _mm_or_si128,
        _mm_set1_epi8,
    };
    let mut m = Masks::default();
    let low = 0x1f;
    for k in 0..4 {
        // SAFETY: SSE2 is part of the x86-64 baseline, so these intrinsics are always available; the 16
        // bytes read start at 16·k ≤ 48 and lie inside `block`, and `_mm_loadu_si128` accepts unaligned
        // addresses.
        let [quote, backslash, open, close, control] = unsafe {
            let v = _mm_loadu_si128(block.as_ptr().add(16 * k).cast::<__m128i>());
            // `{`/`[` and `}`/`]` differ only by the 0x20 bit: setting it folds each pair onto one byte.
            let folded = _mm_or_si128(v, _mm_set1_epi8(0x20));
            [
                _mm_movemask_epi8(_mm_cmpeq_epi8(v, _mm_set1_epi8(b'"' as i8))),
                _mm_movemask_epi8(_mm_cmpeq_epi8(v, _mm_set1_epi8(b'\\' as i8))),
                _mm_movemask_epi8(_mm_cmpeq_epi8(folded, _mm_set1_epi8(b'{' as i8))),
                _mm_movemask_epi8(_mm_cmpeq_epi8(folded, _mm_set1_epi8(b'}' as i8))),
                // unsigned v <= 0x1f  ⇔  max(v, 0x1f) == 0x1f
                _mm_movemask_epi8(_mm_cmpeq_epi8(
                    _mm_max_epu8(v, _mm_set1_epi8(low)),
                    _mm_set1_epi8(low),
                )),
            ]
        };
        let bits = |x: i32| u64::from(x as u16) << (16 * k);
        m.quote |= bits(quote);
        m.backslash |= bits(backslash);
        m.open |= bits(open);
        m.close |= bits(close);
        m.control |= bits(control);
    }
    m
}

#[cfg(not(target_arch = "x86_64"))]
fn classify(block: &[u8; 64]) -> Masks {
    classify_portable(block)
}

const ONES: u64 = 0x0101_0101_0101_0101;
const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;

/// 0x80 in each byte of `w` equal to `c`, exactly (no borrow between bytes).
fn eq_bytes(w: u64, c: u8) -> u64 {
    let v = w ^ (ONES * u64::from(c));
    !(((v & LOW7).wrapping_add(LOW7)) | v | LOW7)
}

/// Gathers the 0x80 bits of the 8 bytes of `m` into the low 8 bits (byte `i` → bit `i`).
fn gather(m: u64) -> u64 {
    (m >> 7).wrapping_mul(0x0102_0408_1020_4080) >> 56
}

/// [`classify`] with 64-bit word arithmetic, for targets without SSE2 (tested against it on x86-64).
#[cfg_attr(target_arch = "x86_64", allow(dead_code))]
fn classify_portable(block: &[u8; 64]) -> Masks {
    let mut m = Masks::default();
    for (k, chunk) in block.chunks_exact(8).enumerate() {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let w = u64::from_le_bytes(word);
        let folded = w | (ONES * 0x20);
        let shift = 8 * k;
        m.quote |= gather(eq_bytes(w, b'"')) << shift;
        m.backslash |= gather(eq_bytes(w, b'\\')) << shift;
        m.open |= gather(eq_bytes(folded, b'{')) << shift;
        m.close |= gather(eq_bytes(folded, b'}')) << shift;
        // bytes below 0x20: their top three bits are zero
        let top3 = w & (ONES * 0xe0);
        let zero = !(((top3 & LOW7).wrapping_add(LOW7)) | top3 | LOW7);
        m.control |= gather(zero) << shift;
    }
    m
}

/// Bit `i` set when an odd number of bits at or below `i` are set in `x`.
fn prefix_xor(mut x: u64) -> u64 {
    x ^= x << 1;
    x ^= x << 2;
    x ^= x << 4;
    x ^= x << 8;
    x ^= x << 16;
    x ^= x << 32;
    x
}

/// The open brackets, one bit each (1 for `{`, 0 for `[`); beyond 128 levels they spill to the heap.
struct Stack {
    bits: u128,
    depth: usize,
    spill: Vec<bool>,
}

impl Stack {
    fn push(&mut self, brace: bool) {
        if self.depth < 128 {
            self.bits = (self.bits & !(1u128 << self.depth)) | (u128::from(brace) << self.depth);
        } else {
            self.spill.push(brace);
        }
        self.depth += 1;
    }

    /// Pops the innermost bracket; `false` when there is none or it is of the other kind.
    fn pop(&mut self, brace: bool) -> bool {
        if self.depth == 0 {
            return false;
        }
        self.depth -= 1;
        let top = if self.depth < 128 {
            (self.bits >> self.depth) & 1 == 1
        } else {
            self.spill.pop().unwrap_or(!brace)
        };
        top == brace
    }
}

/// Whether byte `b` may follow a backslash in a JSON string.
fn escape_code(b: u8) -> bool {
    matches!(
        b,
        b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' | b'u'
    )
}

/// The index just past the container (`{…}` or `[…]`) whose opening bracket is at `start`; `None` when
/// `text[start]` is not a bracket or the container is not well formed (see the module's invariants).
pub(crate) fn skip_container(text: &[u8], start: usize) -> Option<usize> {
    if !matches!(text.get(start), Some(b'{' | b'[')) {
        return None;
    }
    let mut stack = Stack {
        bits: 0,
        depth: 0,
        spill: Vec::new(),
    };
    // Whether the next block's first byte follows an escaping backslash.
    let mut escaped_carry = false;
    // All ones when the next block starts inside a string.
    let mut string_carry = 0u64;
    // Whether the next block's first byte must be a `\u` hex digit, and how many remain.
    let mut hex_left = 0u32;
    let mut base = start;
    let mut pad;
    while base < text.len() {
        let block: &[u8; 64] = match text.get(base..base + 64) {
            Some(s) => s.try_into().ok()?,
            None => {
                let rest = text.get(base..)?;
                pad = [b' '; 64];
                pad.get_mut(..rest.len())?.copy_from_slice(rest);
                &pad
            }
        };
        let m = classify(block);

        // Escaped bytes: each backslash not itself escaped escapes the next byte.
        let mut escaped = 0u64;
        if m.backslash != 0 || escaped_carry {
            let mut starts = m.backslash;
            if escaped_carry {
                escaped |= 1;
                starts &= !1;
            }
            escaped_carry = false;
            while starts != 0 {
                let i = starts.trailing_zeros();
                if i == 63 {
                    escaped_carry = true;
                } else {
                    escaped |= 1 << (i + 1);
                }
                starts &= !(3u64 << i);
            }
        }
        let quotes = m.quote & !escaped;
        let in_string = prefix_xor(quotes) ^ string_carry;
        string_carry = ((in_string as i64) >> 63) as u64;

        let outside = !in_string & !quotes;

        // Brackets outside strings, in order, up to the one closing the container.
        let mut limit = u64::MAX;
        let mut end = None;
        let mut brackets = (m.open | m.close) & outside;
        while brackets != 0 {
            let i = brackets.trailing_zeros() as usize;
            brackets &= brackets - 1;
            let brace = block[i] & 0x20 != 0;
            if m.open & (1 << i) != 0 {
                stack.push(brace);
            } else {
                if !stack.pop(brace) {
                    return None;
                }
                if stack.depth == 0 {
                    limit = u64::MAX >> (63 - i);
                    end = Some(base + i + 1);
                    break;
                }
            }
        }

        // Up to the end: outside strings no backslash and no control character but whitespace; inside
        // strings no control character.
        if m.backslash & outside & limit != 0 || m.control & in_string & !quotes & limit != 0 {
            return None;
        }
        let mut ctrl = m.control & outside & limit;
        while ctrl != 0 {
            let i = ctrl.trailing_zeros() as usize;
            ctrl &= ctrl - 1;
            if !matches!(block[i], b' ' | b'\t' | b'\n' | b'\r') {
                return None;
            }
        }

        // Escape codes, and the 4 hex digits of `\u` (possibly continuing from the previous block).
        let mut i = 0usize;
        while hex_left > 0 && i < 64 {
            if !block[i].is_ascii_hexdigit() {
                return None;
            }
            hex_left -= 1;
            i += 1;
        }
        let mut codes = escaped & limit;
        while codes != 0 {
            let at = codes.trailing_zeros() as usize;
            codes &= codes - 1;
            let c = block[at];
            if !escape_code(c) {
                return None;
            }
            if c == b'u' {
                let mut j = at + 1;
                hex_left = 4;
                while hex_left > 0 && j < 64 {
                    if !block[j].is_ascii_hexdigit() {
                        return None;
                    }
                    hex_left -= 1;
                    j += 1;
                }
            }
        }
        if end.is_some() {
            return end;
        }
        base += 64;
    }
    None
}

/// The index of the first byte at or after `from` that is a quote, a backslash or a control character
/// (`text.len()` when none is): the bytes a string's content stops at. Reads 8 bytes at a time.
#[inline]
pub(crate) fn string_special(text: &[u8], from: usize) -> usize {
    let mut i = from;
    while let Some(chunk) = text.get(i..i + 8) {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let w = u64::from_le_bytes(word);
        // Exact per-byte masks (no borrow between bytes), so the lowest set bit is the first special byte.
        let top3 = w & (ONES * 0xe0);
        let control = !(((top3 & LOW7).wrapping_add(LOW7)) | top3 | LOW7);
        let special = eq_bytes(w, b'"') | eq_bytes(w, b'\\') | control;
        if special != 0 {
            return i + (special.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while let Some(&b) = text.get(i) {
        if b == b'"' || b == b'\\' || b < 0x20 {
            return i;
        }
        i += 1;
    }
    text.len()
}

/// The index just past the string whose opening quote is at `start` (escapes and control characters
/// checked as in [`skip_container`]).
pub(crate) fn skip_string(text: &[u8], start: usize) -> Option<usize> {
    if text.get(start) != Some(&b'"') {
        return None;
    }
    let mut i = start + 1;
    loop {
        i = string_special(text, i);
        match *text.get(i)? {
            b'"' => return Some(i + 1),
            b'\\' => {
                let c = *text.get(i + 1)?;
                if !escape_code(c) {
                    return None;
                }
                i += 2;
                if c == b'u' {
                    if !text.get(i..i + 4)?.iter().all(u8::is_ascii_hexdigit) {
                        return None;
                    }
                    i += 4;
                }
            }
            0..=0x1f => return None,
            _ => i += 1,
        }
    }
}

/// The index of the first byte at or after `i` that is not JSON whitespace.
pub(crate) fn skip_ws(text: &[u8], mut i: usize) -> usize {
    while let Some(b' ' | b'\t' | b'\n' | b'\r') = text.get(i) {
        i += 1;
    }
    i
}

/// Whether `c` ends a scalar value for [`skip_value`] (whitespace or a structural byte).
pub(crate) fn ends_scalar(c: u8) -> bool {
    matches!(
        c,
        b' ' | b'\t' | b'\n' | b'\r' | b',' | b':' | b']' | b'}' | b'[' | b'{' | b'"'
    )
}

/// The index just past the value starting at `start` (no leading whitespace): a container or a string as
/// [`skip_container`] / [`skip_string`] check them; any other value runs to the next delimiter
/// (whitespace, `,`, `:`, `]`, `}`), unchecked. `None` when no value starts there.
pub(crate) fn skip_value(text: &[u8], start: usize) -> Option<usize> {
    match *text.get(start)? {
        b'{' | b'[' => skip_container(text, start),
        b'"' => skip_string(text, start),
        b' ' | b'\t' | b'\n' | b'\r' | b',' | b':' | b']' | b'}' => None,
        _ => {
            let mut i = start + 1;
            while text.get(i).is_some_and(|b| !ends_scalar(*b)) {
                i += 1;
            }
            Some(i)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::value::RawValue;

    /// Where serde_json says the value at the start of `text` ends (`None`: it rejects the value).
    fn serde_end(text: &str) -> Option<usize> {
        let mut stream = serde_json::Deserializer::from_str(text).into_iter::<&RawValue>();
        match stream.next() {
            Some(Ok(raw)) => Some(raw.get().len()),
            _ => None,
        }
    }

    fn check(text: &str) {
        let ours = skip_value(text.as_bytes(), 0);
        let theirs = serde_end(text);
        if let Some(end) = theirs {
            assert_eq!(ours, Some(end), "serde accepts {text:?} up to {end}");
        }
        if let Some(end) = ours {
            assert!(end <= text.len());
            // what we accept is at least balanced: a valid prefix when serde accepts too
            if let (Some(e), true) = (theirs, text.starts_with(['{', '[', '"'])) {
                assert_eq!(e, end);
            }
        }
    }

    #[test]
    fn ends_where_serde_ends() {
        for text in [
            r#"{}"#,
            r#"[]"#,
            r#"{"a": [1, 2, {"b": "c]}"}], "d": "\"}"} tail"#,
            r#"["\\", "\\\"", "\\\\\"]", "]"]"#,
            r#"{"u": "\u00e9\uD83D\uDE00 \/ \b\f\n\r\t"}"#,
            "[\"é ü 日本 🎉\", {\"k\": \"v\"}]",
            r#"[[[[[[[[[[]]]]]]]]]]"#,
            r#""plain""#,
            r#""with \" quote and ] bracket""#,
            "[\"", // unterminated
        ] {
            check(text);
        }
        // long strings and escapes across block boundaries
        for n in 0..140 {
            let filler = "x".repeat(n);
            check(&format!(
                r#"{{"{filler}": "{filler}\\\\", "b": ["\"{filler}\\\"]"]}}"#
            ));
            check(&format!(r#"["{filler}\u00e9{filler}", "{filler}\\u12"]"#));
            check(&format!("[\"{filler}\\"));
            check(&format!("{{\"{filler}\\\"}}\"}}"));
        }
    }

    #[test]
    fn rejects_broken_structure() {
        for bad in [
            "{",
            "[",
            "{]",
            "[}",
            "[1}",
            "{\"a\": [}",
            "[\"a]",
            "[\"\\x\"]",
            "[\"\\u12\"]",
            "[\"\\u12G4\"]",
            "[\"a\nb\"]",
            "[\\]",
            "[1, \u{1}]",
            "",
            "]",
            "}",
            ",",
            ":",
            "[\"\\",
        ] {
            assert_eq!(skip_value(bad.as_bytes(), 0), None, "{bad:?}");
            assert_eq!(serde_end(bad), None, "{bad:?}");
        }
        // deep nesting spills the bit stack and still balances
        let deep = format!("{}{}", "[".repeat(300), "]".repeat(300));
        assert_eq!(skip_value(deep.as_bytes(), 0), Some(600));
        let wrong = format!("{}}}{}", "[".repeat(200), "]".repeat(199));
        assert_eq!(skip_value(wrong.as_bytes(), 0), None);
        let unfinished = "[".repeat(300);
        assert_eq!(skip_value(unfinished.as_bytes(), 0), None);
        // scalars run to the next delimiter, unchecked
        assert_eq!(skip_value(b"123, 4", 0), Some(3));
        assert_eq!(skip_value(b"true}", 0), Some(4));
        assert_eq!(skip_string(b"\"ab", 0), None);
        assert_eq!(skip_string(b"x", 0), None);
        assert_eq!(skip_container(b"x", 0), None);
        assert_eq!(skip_ws(b" \t\r\nx", 0), 4);
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn both_classifiers_agree() {
        let mut block = [0u8; 64];
        for seed in 0..2000u64 {
            let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
            for b in block.iter_mut() {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                *b = if seed % 2 == 0 {
                    b"\"\\{}[] a\n\x01\x1f\x20\x7b\x7d\x5b\x5d\xff\x80\xe9"[(x % 19) as usize]
                } else {
                    x as u8
                };
            }
            let (a, b) = (classify(&block), classify_portable(&block));
            assert_eq!(
                (a.quote, a.backslash, a.open, a.close, a.control),
                (b.quote, b.backslash, b.open, b.close, b.control)
            );
        }
    }

    /// Random JSON values, rendered with random whitespace, with strings full of the characters that matter.
    fn json_text() -> impl Strategy<Value = String> {
        let atom = prop_oneof![
            Just("null".to_string()),
            Just("true".to_string()),
            Just("-12.5e3".to_string()),
            Just("0".to_string()),
            "[a-z\"\\\\\\[\\]{}é\u{1F600}/ ]{0,80}"
                .prop_map(|s| serde_json::to_string(&s).unwrap()),
            Just(r#""\u00e9\\\"\/""#.to_string()),
        ];
        atom.prop_recursive(6, 64, 8, |inner| {
            prop_oneof![
                (prop::collection::vec(inner.clone(), 0..8), "[ \n]{0,2}")
                    .prop_map(|(v, ws)| format!("[{ws}{}{ws}]", v.join(&format!(",{ws}")))),
                (
                    prop::collection::vec(("[a-z\"\\\\\\]]{0,6}", inner), 0..8),
                    "[ \t]{0,2}"
                )
                    .prop_map(|(v, ws)| {
                        let fields: Vec<String> = v
                            .into_iter()
                            .map(|(k, v)| {
                                format!("{}{ws}:{ws}{v}", serde_json::to_string(&k).unwrap())
                            })
                            .collect();
                        format!("{{{ws}{}{ws}}}", fields.join(","))
                    }),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// The 8-byte scan finds the first quote, backslash or control character, as a byte loop does.
        #[test]
        fn string_special_finds_the_first_stop(
            bytes in proptest::collection::vec(prop_oneof![
                8 => 0x20u8..0x7f, 1 => Just(b'"'), 1 => Just(b'\\'), 1 => 0u8..0x20, 1 => 0x7fu8..=0xff,
            ], 0..40),
            from in 0usize..40,
        ) {
            let want = (from..bytes.len())
                .find(|&i| matches!(bytes[i], b'"' | b'\\' | 0..=0x1f))
                .unwrap_or(bytes.len());
            prop_assert_eq!(string_special(&bytes, from), want.max(from.min(bytes.len())));
        }

        #[test]
        fn valid_json_ends_where_serde_ends(text in json_text(), tail in "[ ,\\]}]{0,3}") {
            let text = format!("{text}{tail}");
            prop_assert!(serde_end(&text).is_some());
            prop_assert_eq!(skip_value(text.as_bytes(), 0), serde_end(&text));
        }

        #[test]
        fn damaged_json_never_panics_and_never_overruns(
            text in json_text(),
            edits in prop::collection::vec((any::<prop::sample::Index>(), 0usize..12), 1..4),
        ) {
            let mut bytes = text.into_bytes();
            for (at, what) in edits {
                if bytes.is_empty() {
                    break;
                }
                let i = at.index(bytes.len());
                let insert = b"\"\\[]{}\n\x01u,"[what % 10];
                match what {
                    0..=9 => bytes.insert(i, insert),
                    10 => { bytes.remove(i); }
                    _ => bytes.truncate(i),
                }
            }
            let text = String::from_utf8_lossy(&bytes).into_owned();
            let ours = skip_value(text.as_bytes(), 0);
            if let Some(end) = ours {
                prop_assert!(end <= text.len());
            }
            if text.starts_with(['{', '[', '"']) {
                if let Some(end) = serde_end(&text) {
                    prop_assert_eq!(ours, Some(end));
                }
            }
        }
    }
}
