//! Text handling shared by matching, ranking and formatting: the tokenizer (lowercased alphanumeric
//! words, hard separators count 8 positions as in milli), query parsing into terms (phrases, prefix on
//! the last word, stop words, synonyms, allowed typos) and the typo distance.

use super::index::Index;

/// A word of a text: lowercased text, position, and byte range in the original string.
#[derive(Debug, Clone, PartialEq)]
pub struct Word {
    /// Lowercased word.
    pub text: String,
    /// Word position (hard separators count 8, as in milli).
    pub pos: usize,
    /// Byte start in the source.
    pub start: usize,
    /// Byte end in the source.
    pub end: usize,
}

pub(crate) fn is_hard_separator(c: char) -> bool {
    matches!(
        c,
        '.' | '!' | '?' | ';' | '\n' | '\r' | '。' | '¿' | '¡' | '…'
    )
}

/// Splits a text into lowercased alphanumeric words with their positions, starting at `first_pos`.
pub fn tokenize(text: &str, first_pos: usize) -> Vec<Word> {
    let mut out = Vec::new();
    let mut pos = first_pos;
    let mut cur_start: Option<usize> = None;
    let mut hard = false;
    let mut seen_word = false;
    let mut push =
        |start: usize, end: usize, hard: &mut bool, seen: &mut bool, out: &mut Vec<Word>| {
            if *seen {
                pos += if *hard { 8 } else { 1 };
            }
            out.push(Word {
                text: text[start..end].to_lowercase(),
                pos,
                start,
                end,
            });
            *hard = false;
            *seen = true;
        };
    for (i, c) in text.char_indices() {
        if c.is_alphanumeric() {
            if cur_start.is_none() {
                cur_start = Some(i);
            }
        } else {
            if let Some(s) = cur_start.take() {
                push(s, i, &mut hard, &mut seen_word, &mut out);
            }
            if is_hard_separator(c) {
                hard = true;
            }
        }
    }
    if let Some(s) = cur_start {
        push(s, text.len(), &mut hard, &mut seen_word, &mut out);
    }
    out
}

/// A query term: a word or a phrase.
#[derive(Debug, Clone, PartialEq)]
pub struct Term {
    /// The word(s) (several for a phrase).
    pub words: Vec<String>,
    /// Whether it is a quoted phrase.
    pub phrase: bool,
    /// Whether it may match as a prefix (the last word of a query not ended by a separator).
    pub prefix: bool,
    /// Position of its first word in the query.
    pub qpos: usize,
    /// Typos allowed.
    pub max_typos: u8,
    /// Synonyms of a single word (each a word sequence), matched without typos.
    pub synonyms: Vec<Vec<String>>,
}

/// A parsed query: the terms to match and the negated words and phrases (`-word`, `-"a phrase"`).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ParsedQuery {
    /// Terms in query order.
    pub terms: Vec<Term>,
    /// Words that must not appear in a hit.
    pub negative_words: Vec<String>,
    /// Phrases that must not appear in a hit.
    pub negative_phrases: Vec<Vec<String>>,
}

/// The maximum number of terms of a query (Meilisearch ignores the rest).
const MAX_TERMS: usize = 10;

/// Parses `q` as milli does: words get consecutive positions (a hard separator adds 7 more), quoted
/// sequences become phrases (an unclosed quote runs to the end), non-final stop words are dropped, the
/// final word is a prefix unless a separator follows it, `-word` and `-"phrase"` (after whitespace or at
/// the start) are negations, and only the first ten terms count.
pub fn parse_query(q: &str, index: &Index) -> ParsedQuery {
    let s = &index.settings;
    let stop: Vec<String> = s.stop_words().iter().map(|w| w.to_lowercase()).collect();
    let (one, two) = s.min_word_sizes();
    let disabled = s.typo_disabled_words();
    let synonyms = s.synonyms();
    let synonyms_of = |w: &str| -> Vec<Vec<String>> {
        synonyms
            .iter()
            .filter(|(k, _)| k == w)
            .flat_map(|(_, v)| v.iter())
            .map(|syn| {
                tokenize(syn, 0)
                    .into_iter()
                    .map(|t| t.text)
                    .collect::<Vec<_>>()
            })
            .filter(|words: &Vec<String>| !words.is_empty())
            .collect()
    };
    let typos_for = |w: &str| -> u8 {
        let len = w.chars().count();
        if !s.typo_enabled()
            || disabled.iter().any(|d| d == w)
            || (s.typo_disabled_on_numbers() && w.chars().all(|c| c.is_ascii_digit()))
            || len < one
        {
            0
        } else if len < two {
            1
        } else {
            2
        }
    };

    // Split into alternating word and separator runs.
    let mut runs: Vec<(bool, &str)> = Vec::new();
    let mut start = 0;
    let mut cur_word: Option<bool> = None;
    for (i, c) in q.char_indices() {
        let is_word = c.is_alphanumeric();
        if cur_word.is_some_and(|w| w != is_word) {
            runs.push((cur_word.unwrap_or(false), &q[start..i]));
            start = i;
        }
        cur_word = Some(is_word);
    }
    if let Some(w) = cur_word {
        runs.push((w, &q[start..]));
    }

    let mut out = ParsedQuery::default();
    let mut position: i64 = -1;
    // (words, start position, negative)
    let mut phrase: Option<(Vec<String>, i64, bool)> = None;
    let mut negative_next = false;
    let mut prev_ends_with_ws = true;
    let close_phrase = |p: (Vec<String>, i64, bool), out: &mut ParsedQuery| {
        if p.0.is_empty() {
            return;
        }
        if p.2 {
            out.negative_phrases.push(p.0);
        } else {
            out.terms.push(Term {
                words: p.0,
                phrase: true,
                prefix: false,
                qpos: p.1.max(0) as usize,
                max_typos: 0,
                synonyms: Vec::new(),
            });
        }
    };
    let n_runs = runs.len();
    for (idx, (is_word, text)) in runs.into_iter().enumerate() {
        if out.terms.len() >= MAX_TERMS {
            break;
        }
        if is_word {
            let word = text.to_lowercase();
            position += 1;
            let is_last = idx + 1 == n_runs;
            if let Some(p) = phrase.as_mut() {
                if p.0.is_empty() {
                    p.1 = position;
                }
                p.0.push(word);
            } else if negative_next {
                out.negative_words.push(word);
                negative_next = false;
            } else if !is_last {
                if !stop.contains(&word) {
                    let syns = synonyms_of(&word);
                    out.terms.push(Term {
                        max_typos: typos_for(&word),
                        words: vec![word],
                        phrase: false,
                        prefix: false,
                        qpos: position as usize,
                        synonyms: syns,
                    });
                }
            } else {
                let syns = synonyms_of(&word);
                out.terms.push(Term {
                    max_typos: typos_for(&word),
                    words: vec![word],
                    phrase: false,
                    prefix: s.prefix_search(),
                    qpos: position as usize,
                    synonyms: syns,
                });
            }
            prev_ends_with_ws = false;
            continue;
        }
        // a separator run
        if text.chars().any(super::text::is_hard_separator) {
            position += 7;
            if let Some(p) = phrase.take() {
                let neg = p.2;
                close_phrase(p, &mut out);
                phrase = Some((Vec::new(), position, neg));
            }
        }
        let mut quotes = text.chars().filter(|c| *c == '"').count();
        let dash_negates = {
            let before_quotes = text.trim_end_matches('"');
            before_quotes.ends_with('-') && {
                let head = &before_quotes[..before_quotes.len() - 1];
                head.chars()
                    .last()
                    .map_or(prev_ends_with_ws, char::is_whitespace)
            }
        };
        if quotes > 0 {
            if let Some(p) = phrase.take() {
                quotes -= 1;
                close_phrase(p, &mut out);
            }
            if quotes % 2 == 1 {
                phrase = Some((Vec::new(), position + 1, dash_negates));
            }
            negative_next = false;
        } else {
            negative_next = phrase.is_none() && dash_negates;
        }
        prev_ends_with_ws = text.chars().last().is_some_and(char::is_whitespace);
    }
    if let Some(p) = phrase.take() {
        close_phrase(p, &mut out);
    }
    out.terms.truncate(MAX_TERMS);
    out
}

/// Damerau-Levenshtein (optimal string alignment) distance, capped.
pub(crate) fn osa(a: &[char], b: &[char]) -> usize {
    let (n, m) = (a.len(), b.len());
    let mut d = vec![vec![0usize; m + 1]; n + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=n {
        for j in 1..=m {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut v = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                v = v.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = v;
        }
    }
    d[n][m]
}

/// The number of typos with which `token` matches the single-word term, if it does.
pub fn word_typos(term: &str, prefix: bool, max_typos: u8, token: &str) -> Option<u8> {
    if token == term || (prefix && token.starts_with(term)) {
        return Some(0);
    }
    if max_typos == 0 {
        return None;
    }
    let a: Vec<char> = term.chars().collect();
    let b: Vec<char> = token.chars().collect();
    let same_first = a.first() == b.first();
    // A different first letter costs a typo: only allowed when two typos are.
    let allowed = if same_first {
        max_typos
    } else if max_typos >= 2 {
        1
    } else {
        0
    };
    if allowed == 0 {
        return None;
    }
    let dist = if prefix {
        // only prefixes within `allowed` of the term's length can be close enough
        let lo = a.len().saturating_sub(allowed as usize);
        let hi = (a.len() + allowed as usize).min(b.len());
        (lo.min(hi)..=hi)
            .map(|k| osa(&a, &b[..k]))
            .min()
            .unwrap_or(usize::MAX)
    } else if a.len().abs_diff(b.len()) > allowed as usize {
        usize::MAX
    } else {
        osa(&a, &b)
    };
    if dist <= allowed as usize {
        Some(dist as u8)
    } else {
        None
    }
}
