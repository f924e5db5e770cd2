//! Hit formatting: displayed/retrieved attributes, `_formatted` (highlight and crop, values rendered
//! as strings), `_matchesPosition`, `_geoDistance` and the ranking score fields.

use serde_json::{json, Map, Value};

use super::filter;
use super::index::Index;
use super::query::SearchQuery;
use super::search::{details_json, Ranked};
use super::text::{tokenize, word_typos, Term};

pub(crate) fn stringify(v: &Value) -> Value {
    match v {
        Value::Number(n) => Value::String(n.to_string()),
        Value::Bool(b) => Value::String(b.to_string()),
        Value::Array(a) => Value::Array(a.iter().map(stringify).collect()),
        Value::Object(o) => {
            Value::Object(o.iter().map(|(k, v)| (k.clone(), stringify(v))).collect())
        }
        other => other.clone(),
    }
}

/// Byte ranges of the matched part of each word of `text` matching a query term.
pub(crate) fn match_ranges(text: &str, terms: &[Term]) -> Vec<(usize, usize, usize)> {
    let words = tokenize(text, 0);
    let mut out = Vec::new();
    for (wi, w) in words.iter().enumerate() {
        for t in terms {
            let hit = if t.phrase {
                t.words.contains(&w.text)
            } else {
                word_typos(&t.words[0], t.prefix, t.max_typos, &w.text).is_some()
                    || t.synonyms.iter().any(|syn| syn.contains(&w.text))
            };
            if hit {
                let len = if !t.phrase
                    && t.prefix
                    && w.text.starts_with(&t.words[0])
                    && w.text != t.words[0]
                {
                    text[w.start..w.end]
                        .char_indices()
                        .nth(t.words[0].chars().count())
                        .map_or(w.end - w.start, |(i, _)| i)
                } else {
                    w.end - w.start
                };
                out.push((wi, w.start, w.start + len));
                break;
            }
        }
    }
    out
}

pub(crate) fn highlight(text: &str, terms: &[Term], pre: &str, post: &str) -> String {
    let ranges = match_ranges(text, terms);
    let mut out = String::new();
    let mut last = 0;
    for (_, s, e) in ranges {
        out.push_str(&text[last..s]);
        out.push_str(pre);
        out.push_str(&text[s..e]);
        out.push_str(post);
        last = e;
    }
    out.push_str(&text[last..]);
    out
}

pub(crate) fn crop(text: &str, terms: &[Term], len: usize, marker: &str) -> String {
    let words = tokenize(text, 0);
    if words.len() <= len || len == 0 {
        return text.to_string();
    }
    let first = match_ranges(text, terms).first().map(|m| m.0);
    let (start, end) = match first {
        None => (0, len - 1),
        Some(m) => {
            let rest = len - 1;
            let after = rest / 2;
            let before = rest - after;
            let mut s = m.saturating_sub(before);
            let mut e = s + len - 1;
            if e >= words.len() {
                e = words.len() - 1;
                s = e + 1 - len;
            }
            if m < before {
                s = 0;
                e = len - 1;
            }
            (s, e)
        }
    };
    let mut out = String::new();
    if start > 0 {
        out.push_str(marker);
    }
    out.push_str(&text[words[start].start..words[end].end]);
    if end < words.len() - 1 {
        out.push_str(marker);
    }
    out
}

pub(crate) fn format_value(
    v: &Value,
    terms: &[Term],
    q: &SearchQuery,
    do_hl: bool,
    crop_len: Option<usize>,
) -> Value {
    match v {
        Value::String(s) => {
            let mut text = s.clone();
            if let Some(l) = crop_len {
                text = crop(&text, terms, l, &q.crop_marker);
            }
            if do_hl {
                text = highlight(&text, terms, &q.highlight_pre_tag, &q.highlight_post_tag);
            }
            Value::String(text)
        }
        Value::Array(a) => Value::Array(
            a.iter()
                .map(|x| format_value(x, terms, q, do_hl, crop_len))
                .collect(),
        ),
        Value::Object(o) => Value::Object(
            o.iter()
                .map(|(k, x)| (k.clone(), format_value(x, terms, q, do_hl, crop_len)))
                .collect(),
        ),
        other => stringify(other),
    }
}

pub(crate) fn selected(list: &Option<Vec<String>>, attr: &str) -> bool {
    list.as_ref().is_some_and(|l| {
        l.iter().any(|a| {
            a == "*" || filter::pattern_matches(a, attr) || a.split(':').next() == Some(attr)
        })
    })
}

pub(crate) fn crop_len_for(q: &SearchQuery, attr: &str) -> Option<usize> {
    let list = q.attributes_to_crop.as_ref()?;
    for a in list {
        let (name, len) = match a.rsplit_once(':') {
            Some((n, l)) => (n, l.parse().ok()),
            None => (a.as_str(), None),
        };
        if name == "*" || name == attr {
            return Some(len.unwrap_or(q.crop_length));
        }
    }
    None
}

pub(crate) fn format_hit(index: &Index, r: &Ranked, terms: &[Term], q: &SearchQuery) -> Value {
    let Some(doc) = index.docs.get(&r.id) else {
        return Value::Null;
    };
    let displayed = index.settings.displayed();
    let mut out = Map::new();
    let visible = |k: &str| {
        displayed
            .as_ref()
            .is_none_or(|d| d.iter().any(|x| filter::pattern_matches(x, k)))
            && q.attributes_to_retrieve
                .as_ref()
                .is_none_or(|l| l.iter().any(|a| a == "*" || filter::pattern_matches(a, k)))
    };
    let wants_formatted = q
        .attributes_to_highlight
        .as_ref()
        .is_some_and(|l| !l.is_empty())
        || q.attributes_to_crop.as_ref().is_some_and(|l| !l.is_empty());
    let mut formatted = Map::new();
    let mut positions = Map::new();
    for (k, v) in doc {
        let disp = displayed
            .as_ref()
            .is_none_or(|d| d.iter().any(|x| filter::pattern_matches(x, k)));
        if visible(k) {
            out.insert(k.clone(), v.clone());
            if wants_formatted {
                let hl = selected(&q.attributes_to_highlight, k);
                let cl = crop_len_for(q, k);
                formatted.insert(k.clone(), format_value(v, terms, q, hl, cl));
            }
        }
        if q.show_matches_position && disp {
            if let Value::String(s) = v {
                let ranges = match_ranges(s, terms);
                if !ranges.is_empty() {
                    let list: Vec<Value> = ranges
                        .iter()
                        .map(|(_, s, e)| json!({"start": s, "length": e - s}))
                        .collect();
                    positions.insert(k.clone(), Value::Array(list));
                }
            }
        }
    }
    if wants_formatted {
        out.insert("_formatted".into(), Value::Object(formatted));
    }
    if q.show_matches_position {
        out.insert("_matchesPosition".into(), Value::Object(positions));
    }
    if let Some(d) = r.geo_distance {
        out.insert("_geoDistance".into(), Value::from(d.round() as u64));
    }
    if q.show_ranking_score {
        out.insert("_rankingScore".into(), json!(r.score));
    }
    if q.show_ranking_score_details {
        out.insert("_rankingScoreDetails".into(), details_json(&r.crits));
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crop_and_highlight() {
        let terms = vec![Term {
            words: vec!["ghost".into()],
            phrase: false,
            prefix: true,
            qpos: 0,
            max_typos: 1,
            synonyms: vec![vec!["spectre".into()]],
        }];
        assert_eq!(highlight("a spectre", &terms, "<", ">"), "a <spectre>");
        let text = "city wars love storm king lord love love ghost star galaxy storm";
        assert_eq!(crop(text, &terms, 4, "…"), "…love love ghost star…");
        assert_eq!(crop("a b c d e f", &terms, 2, "…"), "a b…");
        assert_eq!(crop("a b", &terms, 4, "…"), "a b");
        assert_eq!(
            highlight("Ghosts here", &terms, "<b>", "</b>"),
            "<b>Ghost</b>s here"
        );
        assert_eq!(
            stringify(&json!({"a": [1, true, null]})),
            json!({"a": ["1", "true", null]})
        );
    }
}
