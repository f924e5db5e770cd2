//! Support for the cargo-fuzz targets: [`props`] holds the properties (shared with the stable suite in
//! `core/tests/fuzz_stable.rs`), this module turns the fuzzer's bytes into their inputs.
//!
//! Generators are domain-aware: object keys, strings and query parameter names come from small
//! dictionaries most of the time (so the fuzzer reaches the code behind `hits`, `_rankingScoreDetails`,
//! `facetDistribution`, ...) and are arbitrary otherwise. Nesting depth and collection sizes are bounded so
//! an input never spends its time in the generator.

pub mod props;

use arbitrary::{Result, Unstructured};
use miroir_core::search::{FacetOrder, NodeAnswer, SearchContext};
use miroir_core::SHARD_FIELD;
use serde_json::{Map, Number, Value};

/// Maximum nesting of generated JSON values.
pub const MAX_DEPTH: u32 = 4;

/// String values worth trying.
pub const STRINGS: &[&str] = &[
    "",
    "*",
    "drama",
    "Drama ",
    "comedy",
    "1",
    "-1",
    "1.5",
    "3.0",
    "18446744073709551616",
    "true",
    "null",
    "succeeded",
    "failed",
    "canceled",
    "processing",
    "enqueued",
    "documentAdditionOrUpdate",
    "2026-11-27T09:16:21.268Z",
    "2026-11-27T09:16:21.3+01:00",
    "9999-12-31T23:59:59.999999999Z",
    "2026-02-30",
    "PT0.1S",
    "genre = drama",
    "_miroir_shard = 1",
    "a,b,,c",
    "title:asc",
    "_geoPoint(48.5, 2.5):asc",
    "movies",
    "invalid_request",
    "index_not_found",
    "\u{0}",
    "é",
];

fn pick<'a>(u: &mut Unstructured, list: &[&'a str]) -> Result<&'a str> {
    Ok(list[u.choose_index(list.len())?])
}

/// A short arbitrary string (at most 24 chars).
pub fn short_string(u: &mut Unstructured) -> Result<String> {
    let len = u.int_in_range(0..=24usize)?;
    let mut s = String::new();
    for _ in 0..len {
        s.push(u.arbitrary::<char>()?);
    }
    Ok(s)
}

/// An object key: from [`props::KEYS`] most of the time.
pub fn key(u: &mut Unstructured) -> Result<String> {
    if u.ratio(7u8, 8u8)? {
        Ok(pick(u, props::KEYS)?.to_string())
    } else {
        short_string(u)
    }
}

/// A string value: from [`STRINGS`] most of the time.
pub fn string(u: &mut Unstructured) -> Result<String> {
    if u.ratio(3u8, 4u8)? {
        Ok(pick(u, STRINGS)?.to_string())
    } else {
        short_string(u)
    }
}

/// A JSON number: small or extreme integers, negative ones, floats.
pub fn number(u: &mut Unstructured) -> Result<Value> {
    Ok(match u.int_in_range(0..=5u8)? {
        0 => Value::from(u.int_in_range(0..=20u64)?),
        1 => Value::from(u.arbitrary::<u64>()?),
        2 => Value::from(u.arbitrary::<i64>()?),
        3 => Number::from_f64(u.arbitrary::<f64>()?).map_or(Value::Null, Value::Number),
        4 => Value::from(f64::from(u.int_in_range(0..=100u8)?) / 100.0),
        _ => Value::from(u64::MAX - u64::from(u.int_in_range(0..=2u8)?)),
    })
}

/// Any JSON value, at most `depth` levels deep.
pub fn value(u: &mut Unstructured, depth: u32) -> Result<Value> {
    let top = if depth == 0 { 3 } else { 5 };
    Ok(match u.int_in_range(0..=top)? {
        0 => Value::Null,
        1 => Value::Bool(u.arbitrary()?),
        2 => number(u)?,
        3 => Value::String(string(u)?),
        4 => Value::Array(list(u, |u| value(u, depth - 1))?),
        _ => Value::Object(object(u, depth - 1)?),
    })
}

/// Up to 6 items.
pub fn list<T>(
    u: &mut Unstructured,
    mut item: impl FnMut(&mut Unstructured) -> Result<T>,
) -> Result<Vec<T>> {
    let n = u.int_in_range(0..=6usize)?;
    (0..n).map(|_| item(u)).collect()
}

/// A JSON object with up to 6 dictionary-biased keys.
pub fn object(u: &mut Unstructured, depth: u32) -> Result<Map<String, Value>> {
    let mut m = Map::new();
    for _ in 0..u.int_in_range(0..=6usize)? {
        m.insert(key(u)?, value(u, depth)?);
    }
    Ok(m)
}

/// Query pairs with dictionary-biased names and values.
pub fn pairs(u: &mut Unstructured) -> Result<Vec<(String, String)>> {
    list(u, |u| {
        let name = if u.ratio(7u8, 8u8)? {
            pick(u, props::PARAMS)?.to_string()
        } else {
            short_string(u)?
        };
        let value = match u.int_in_range(0..=3u8)? {
            0 => u.int_in_range(0..=30u32)?.to_string(),
            1 => u.arbitrary::<i64>()?.to_string(),
            _ => string(u)?,
        };
        Ok((name, value))
    })
}

/// A search context: default, tiny caps, or arbitrary caps (even huge ones, as a settings call can set).
pub fn context(u: &mut Unstructured) -> Result<SearchContext> {
    let mut ctx = SearchContext::default();
    match u.int_in_range(0..=2u8)? {
        0 => {}
        1 => {
            ctx.max_total_hits = u.int_in_range(0..=30usize)?;
            ctx.max_values_per_facet = u.int_in_range(0..=5usize)?;
        }
        _ => {
            ctx.max_total_hits = u.arbitrary()?;
            ctx.max_values_per_facet = u.arbitrary()?;
        }
    }
    if u.arbitrary()? {
        ctx.sort_facet_values_by.insert("*".into(), facet_order(u)?);
    }
    if u.arbitrary()? {
        ctx.distinct_attribute = Some(pick(u, USER_FIELDS)?.to_string());
    }
    Ok(ctx)
}

/// `alpha` or `count`.
pub fn facet_order(u: &mut Unstructured) -> Result<FacetOrder> {
    Ok(if u.arbitrary()? {
        FacetOrder::Alpha
    } else {
        FacetOrder::Count
    })
}

/// A client search body: pagination, ranking flags, distinct and retrieved attributes, sometimes noise.
pub fn search_body(u: &mut Unstructured) -> Result<Map<String, Value>> {
    let mut m = Map::new();
    if u.arbitrary()? {
        m.insert("q".into(), Value::String(string(u)?));
    }
    for k in ["offset", "limit", "page", "hitsPerPage"] {
        match u.int_in_range(0..=5u8)? {
            0 | 1 | 2 => {}
            3 => {
                m.insert(k.into(), Value::from(u.int_in_range(0..=12u64)?));
            }
            _ => {
                m.insert(k.into(), value(u, 1)?);
            }
        }
    }
    for k in ["showRankingScore", "showRankingScoreDetails"] {
        if u.arbitrary()? {
            m.insert(k.into(), Value::Bool(u.arbitrary()?));
        }
    }
    if u.arbitrary()? {
        m.insert(
            "distinct".into(),
            Value::String(pick(u, USER_FIELDS)?.to_string()),
        );
    }
    if u.arbitrary()? {
        let attrs = list(u, |u| Ok(Value::String(pick(u, USER_FIELDS)?.to_string())))?;
        m.insert("attributesToRetrieve".into(), Value::Array(attrs));
    }
    if u.ratio(1u8, 4u8)? {
        m.extend(object(u, 2)?);
    }
    Ok(m)
}

/// Fields of the fake documents in node answers.
pub const USER_FIELDS: &[&str] = &[
    "id",
    "title",
    "genre",
    "year",
    "director",
    "tags",
    "info.lang",
    "*",
];

fn user_field(u: &mut Unstructured) -> Result<String> {
    Ok(pick(u, &USER_FIELDS[..7])?.to_string())
}

/// One hit as a node answers it for documents written through Miroir: user fields (none reserved),
/// `_miroir_shard`, ranking score and details, sometimes `_formatted` and `_matchesPosition`.
pub fn shaped_hit(u: &mut Unstructured) -> Result<Map<String, Value>> {
    let mut hit = Map::new();
    for _ in 0..u.int_in_range(0..=3usize)? {
        let v = value(u, 1)?;
        hit.insert(user_field(u)?, strip_reserved(v));
    }
    let shard = u.int_in_range(0..=3u64)?;
    hit.insert(SHARD_FIELD.into(), Value::from(shard));
    if u.arbitrary()? {
        hit.insert("_rankingScore".into(), number(u)?);
    }
    if u.ratio(3u8, 4u8)? {
        let mut details = Map::new();
        let rules = [
            "words",
            "typo",
            "rating:desc",
            "year:asc",
            "_geoPoint(48.5, 2.5):asc",
            "vectorSort",
        ];
        for (order, rule) in rules.iter().enumerate() {
            if !u.arbitrary::<bool>()? {
                continue;
            }
            let mut entry = Map::new();
            entry.insert("order".into(), Value::from(order as u64));
            match *rule {
                "rating:desc" | "year:asc" => {
                    let v = match u.int_in_range(0..=2u8)? {
                        0 => number(u)?,
                        1 => Value::String(string(u)?),
                        _ => Value::Null,
                    };
                    entry.insert("value".into(), v);
                }
                "_geoPoint(48.5, 2.5):asc" => {
                    entry.insert("distance".into(), number(u)?);
                }
                "vectorSort" => {
                    entry.insert("similarity".into(), number(u)?);
                }
                _ => {
                    entry.insert("score".into(), number(u)?);
                }
            }
            details.insert(rule.to_string(), Value::Object(entry));
        }
        hit.insert("_rankingScoreDetails".into(), Value::Object(details));
    }
    for key in ["_formatted", "_matchesPosition"] {
        if u.ratio(1u8, 4u8)? {
            let mut inner: Map<String, Value> = hit
                .iter()
                .filter(|(k, _)| !k.starts_with('_'))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            inner.insert(SHARD_FIELD.into(), Value::String(shard.to_string()));
            hit.insert(key.into(), Value::Object(inner));
        }
    }
    Ok(hit)
}

/// Removes every `_miroir_*` key inside `v` (user documents written through Miroir never hold one).
pub fn strip_reserved(v: Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.into_iter()
                .filter(|(k, _)| !k.starts_with(miroir_core::RESERVED_PREFIX))
                .map(|(k, v)| (k, strip_reserved(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(strip_reserved).collect()),
        other => other,
    }
}

/// A search answer as a node sends it (`well_formed`), or with any field possibly replaced by noise.
pub fn shaped_search_answer(u: &mut Unstructured, well_formed: bool) -> Result<Value> {
    let mut m = Map::new();
    let hits = list(u, |u| shaped_hit(u).map(Value::Object))?;
    m.insert("hits".into(), Value::Array(hits));
    m.insert("query".into(), Value::String(string(u)?));
    m.insert(
        "processingTimeMs".into(),
        Value::from(u.int_in_range(0..=50u64)?),
    );
    for k in ["estimatedTotalHits", "totalHits"] {
        if u.ratio(7u8, 8u8)? {
            let n = if u.arbitrary()? {
                Value::from(u.int_in_range(0..=5000u64)?)
            } else {
                number(u)?
            };
            m.insert(k.into(), n);
        }
    }
    if u.arbitrary()? {
        let mut dist = Map::new();
        for _ in 0..u.int_in_range(0..=2usize)? {
            let mut values = Map::new();
            for _ in 0..u.int_in_range(0..=5usize)? {
                let name = if u.arbitrary()? {
                    u.int_in_range(0..=12u32)?.to_string()
                } else {
                    string(u)?
                };
                values.insert(name, Value::from(u.int_in_range(0..=100u64)?));
            }
            dist.insert(user_field(u)?, Value::Object(values));
        }
        if u.ratio(1u8, 4u8)? {
            // What a node answers to `facets: ["*"]`: `_miroir_shard` is filterable on every node.
            let mut values = Map::new();
            values.insert(u.int_in_range(0..=3u32)?.to_string(), Value::from(1u64));
            dist.insert(SHARD_FIELD.into(), Value::Object(values));
        }
        m.insert("facetDistribution".into(), Value::Object(dist));
    }
    if u.arbitrary()? {
        let mut stats = Map::new();
        let mut s = Map::new();
        s.insert("min".into(), number(u)?);
        s.insert("max".into(), number(u)?);
        stats.insert("year".into(), Value::Object(s));
        if u.ratio(1u8, 4u8)? {
            let mut s = Map::new();
            s.insert("min".into(), Value::from(0.0));
            s.insert("max".into(), Value::from(3.0));
            stats.insert(SHARD_FIELD.into(), Value::Object(s));
        }
        m.insert("facetStats".into(), Value::Object(stats));
    }
    if u.arbitrary()? {
        m.insert("semanticHitCount".into(), number(u)?);
    }
    if !well_formed {
        for _ in 0..u.int_in_range(0..=2usize)? {
            m.insert(key(u)?, value(u, 2)?);
        }
    }
    Ok(Value::Object(m))
}

/// A facet-search answer: `{facetHits: [{value, count}], facetQuery, processingTimeMs}`, or noise.
pub fn facet_search_answer(u: &mut Unstructured) -> Result<Value> {
    if u.ratio(1u8, 5u8)? {
        return value(u, MAX_DEPTH);
    }
    let hits = list(u, |u| {
        let mut h = Map::new();
        h.insert("value".into(), Value::String(string(u)?));
        let count = if u.arbitrary()? {
            Value::from(u.int_in_range(0..=100u64)?)
        } else {
            number(u)?
        };
        h.insert("count".into(), count);
        Ok(Value::Object(h))
    })?;
    let mut m = Map::new();
    m.insert("facetHits".into(), Value::Array(hits));
    m.insert("facetQuery".into(), Value::String(string(u)?));
    m.insert("processingTimeMs".into(), number(u)?);
    Ok(Value::Object(m))
}

/// Node answers with positions 0.. in the covering set.
pub fn answers(
    u: &mut Unstructured,
    mut body: impl FnMut(&mut Unstructured) -> Result<Value>,
) -> Result<Vec<NodeAnswer>> {
    let n = u.int_in_range(0..=4usize)?;
    (0..n)
        .map(|order| {
            Ok(NodeAnswer {
                order,
                body: body(u)?,
            })
        })
        .collect()
}

/// A node task object: plausible fields (status, dates, details, error) or noise.
pub fn node_task_object(u: &mut Unstructured) -> Result<Value> {
    if u.ratio(1u8, 5u8)? {
        return value(u, MAX_DEPTH);
    }
    let mut m = Map::new();
    let status = pick(
        u,
        &[
            "succeeded",
            "failed",
            "canceled",
            "processing",
            "enqueued",
            "bogus",
        ],
    )?;
    m.insert("status".into(), Value::String(status.into()));
    for k in ["startedAt", "finishedAt"] {
        let v = match u.int_in_range(0..=3u8)? {
            0 => Value::Null,
            1 => Value::String(string(u)?),
            _ => Value::String(date(u)?),
        };
        m.insert(k.into(), v);
    }
    let mut details = Map::new();
    for k in ["receivedDocuments", "indexedDocuments", "deletedDocuments"] {
        if u.arbitrary()? {
            details.insert(k.into(), number(u)?);
        }
    }
    m.insert("details".into(), Value::Object(details));
    let error = if u.arbitrary()? {
        let mut e = Map::new();
        for k in ["message", "code", "type", "link"] {
            if u.ratio(7u8, 8u8)? {
                e.insert(k.into(), Value::String(string(u)?));
            }
        }
        Value::Object(e)
    } else {
        Value::Null
    };
    m.insert("error".into(), error);
    Ok(Value::Object(m))
}

/// An RFC 3339-looking date with arbitrary (possibly out of range) fields.
pub fn date(u: &mut Unstructured) -> Result<String> {
    let year = if u.arbitrary()? {
        u.int_in_range(1970..=2100i64)?
    } else {
        u.arbitrary::<i64>()?
    };
    let frac_len = u.int_in_range(0..=12usize)?;
    let frac: String = (0..frac_len)
        .map(|_| Ok(char::from(b'0' + u.int_in_range(0..=9u8)?)))
        .collect::<Result<_>>()?;
    let tz = match u.int_in_range(0..=2u8)? {
        0 => "Z".to_string(),
        1 => format!(
            "+{:02}:{:02}",
            u.int_in_range(0..=30u8)?,
            u.int_in_range(0..=70u8)?
        ),
        _ => format!("-{:02}:00", u.int_in_range(0..=99u8)?),
    };
    Ok(format!(
        "{year:04}-{:02}-{:02}T{:02}:{:02}:{:02}{}{frac}{tz}",
        u.int_in_range(0..=13u8)?,
        u.int_in_range(0..=32u8)?,
        u.int_in_range(0..=25u8)?,
        u.int_in_range(0..=61u8)?,
        u.int_in_range(0..=61u8)?,
        if frac_len > 0 { "." } else { "" },
    ))
}

/// A configuration file: a plausible `miroir:` document with arbitrary scalars, or arbitrary text.
pub fn config_text(u: &mut Unstructured) -> Result<String> {
    if u.ratio(1u8, 4u8)? {
        let bytes: Vec<u8> = u.arbitrary()?;
        return Ok(String::from_utf8_lossy(&bytes).into_owned());
    }
    let scalar = |u: &mut Unstructured| -> Result<String> {
        Ok(match u.int_in_range(0..=4u8)? {
            0 => u.int_in_range(0..=5u32)?.to_string(),
            1 => u.arbitrary::<i64>()?.to_string(),
            2 => format!("{:?}", string(u)?),
            3 => pick(
                u,
                &[
                    "true", "~", "[]", "{}", "majority", "redis", "partial", "0.0.0.0",
                ],
            )?
            .to_string(),
            _ => short_string(u)?,
        })
    };
    let mut text = String::from("miroir:\n");
    for k in [
        "shards",
        "replication_factor",
        "replica_groups",
        "write_quorum",
        "master_key",
    ] {
        if u.arbitrary()? {
            text.push_str(&format!("  {k}: {}\n", scalar(u)?));
        }
    }
    for (section, keys) in [
        ("task_store", &["backend", "path", "url"][..]),
        (
            "health",
            &["interval_ms", "timeout_ms", "unhealthy_threshold"][..],
        ),
        ("server", &["bind", "port", "max_body_bytes"][..]),
    ] {
        if u.arbitrary()? {
            text.push_str(&format!("  {section}:\n"));
            for k in keys {
                if u.arbitrary()? {
                    text.push_str(&format!("    {k}: {}\n", scalar(u)?));
                }
            }
        }
    }
    text.push_str("  nodes:\n");
    for i in 0..u.int_in_range(0..=4usize)? {
        let id = if u.ratio(3u8, 4u8)? {
            format!("meili-{i}")
        } else {
            scalar(u)?
        };
        let address = if u.ratio(3u8, 4u8)? {
            format!("http://127.0.0.1:770{i}")
        } else {
            scalar(u)?
        };
        let group = if u.ratio(3u8, 4u8)? {
            (i % 2).to_string()
        } else {
            scalar(u)?
        };
        text.push_str(&format!(
            "    - id: {id}\n      address: {address}\n      replica_group: {group}\n"
        ));
    }
    Ok(text)
}

/// A pager reply script.
pub fn pager_replies(u: &mut Unstructured) -> Result<Vec<props::PagerReply>> {
    let n = u.int_in_range(0..=10usize)?;
    (0..n)
        .map(|_| {
            Ok(match u.int_in_range(0..=5u8)? {
                0 => props::PagerReply::Fail,
                1 => props::PagerReply::Retry(u.arbitrary()?),
                2 => props::PagerReply::Raw {
                    status: *u.choose(&[200u16, 400, 404, 500, 503])?,
                    body: value(u, MAX_DEPTH)?,
                },
                _ => props::PagerReply::Shaped {
                    counts: list(u, |u| {
                        Ok((
                            u.int_in_range(0..=4u32)?,
                            if u.arbitrary()? {
                                u.int_in_range(0..=30u64)?
                            } else {
                                u.arbitrary()?
                            },
                        ))
                    })?,
                    docs: list(u, |u| {
                        let mut doc = object(u, 1)?;
                        if u.ratio(3u8, 4u8)? {
                            doc.insert(SHARD_FIELD.into(), Value::from(u.int_in_range(0..=4u64)?));
                        }
                        Ok(Value::Object(doc))
                    })?,
                    overcount: u.ratio(1u8, 8u8)?,
                },
            })
        })
        .collect()
}
