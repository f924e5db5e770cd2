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

/// Parses `q` into terms (max 10 words), removing stop words.
pub fn parse_query(q: &str, index: &Index) -> Vec<Term> {
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
    let mut terms: Vec<Term> = Vec::new();
    let mut qpos = 0usize;
    let parts: Vec<&str> = q.split('"').collect();
    for (i, part) in parts.iter().enumerate() {
        let in_phrase = i % 2 == 1 && i < parts.len() - 1;
        let words: Vec<String> = tokenize(part, 0).into_iter().map(|w| w.text).collect();
        if words.is_empty() {
            continue;
        }
        if in_phrase {
            let n = words.len();
            terms.push(Term {
                words,
                phrase: true,
                prefix: false,
                qpos,
                max_typos: 0,
                synonyms: Vec::new(),
            });
            qpos += n;
        } else {
            for w in words {
                if !stop.contains(&w) {
                    let len = w.chars().count();
                    let typos = if !s.typo_enabled()
                        || disabled.contains(&w)
                        || (s.typo_disabled_on_numbers() && w.chars().all(|c| c.is_ascii_digit()))
                    {
                        0
                    } else if len >= two {
                        2
                    } else if len >= one {
                        1
                    } else {
                        0
                    };
                    let syns = synonyms_of(&w);
                    terms.push(Term {
                        words: vec![w],
                        phrase: false,
                        prefix: false,
                        qpos,
                        max_typos: typos,
                        synonyms: syns,
                    });
                }
                qpos += 1;
            }
        }
    }
    let ends_with_separator = q.chars().last().is_none_or(|c| !c.is_alphanumeric());
    if let Some(last) = terms.last_mut() {
        if !last.phrase && !ends_with_separator && s.prefix_search() {
            last.prefix = true;
        }
    }
    let mut count = 0;
    terms.retain(|t| {
        count += t.words.len();
        count <= 10 || t.phrase && count - t.words.len() < 10
    });
    terms
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
