//! The client's documents listing request, parsed exactly as Meilisearch parses it.
//!
//! Two forms reach the same [`DocumentsQuery`]:
//! - `GET /indexes/{uid}/documents?…` ([`DocumentsQuery::from_query_pairs`]), Meilisearch's `BrowseQueryGet`:
//!   `offset`, `limit` (default 20), `fields` (comma list, `*` anywhere means every field), `retrieveVectors`,
//!   `ids` (comma list), `filter` (read as JSON when it parses, else kept as the string), `sort` (comma list,
//!   `_geoPoint(lat, lng):dir` kept whole) and `useNetwork`;
//! - `POST /indexes/{uid}/documents/fetch` ([`DocumentsQuery::from_fetch_body`]), Meilisearch's `BrowseQuery`:
//!   `offset`, `limit`, `fields` (array), `retrieveVectors`, `ids` (array of strings or integers), `filter`
//!   (any JSON value, checked by the nodes), `sort` (array) and `useNetwork`.
//!
//! States: one pass over the parameters (query pairs, resp. body keys) in request order, stopping at the first
//! invalid one as Meilisearch's deserializer does, then the `ids` check Meilisearch runs before opening the
//! index. Invariants: every error carries Meilisearch's code and message (`bad_request` for unknown parameters
//! and fields, with the same "did you mean" hint; `invalid_document_offset`, `invalid_document_limit`,
//! `invalid_document_fields`, `invalid_document_retrieve_vectors`, `invalid_document_ids`,
//! `invalid_document_sort`, `invalid_document_use_network`); what needs the index (the filter's syntax and
//! attributes, the sort's attributes) is left to the nodes, whose errors are relayed.

use serde_json::{Map, Value};
use std::collections::HashMap;

use crate::MeiliError;

/// Meilisearch's default `limit` for document listings.
pub const DEFAULT_DOCUMENTS_LIMIT: usize = 20;

/// The parameters of `GET /documents` and fields of `POST /documents/fetch`, in Meilisearch's order.
const PARAMS: &[&str] = &[
    "offset",
    "limit",
    "fields",
    "retrieveVectors",
    "ids",
    "filter",
    "sort",
    "useNetwork",
];

/// A parsed documents listing request.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DocumentsQuery {
    /// Documents to skip in the global order (default 0).
    pub offset: usize,
    /// Maximum number of documents to return (default 20).
    pub limit: usize,
    /// The fields to return; `None` means every field (`*` or absent).
    pub fields: Option<Vec<String>>,
    /// Whether `_vectors` is returned.
    pub retrieve_vectors: bool,
    /// The requested document ids, normalised to their string form (`5` and `"5"` are the same document).
    pub ids: Option<Vec<String>>,
    /// The client's filter, as a JSON value (string, array, or anything else the nodes will refuse).
    pub filter: Option<Value>,
    /// The client's sort expressions, unvalidated.
    pub sort: Option<Vec<String>>,
    /// The client's `useNetwork` (accepted for compatibility; Miroir's nodes are never networked).
    pub use_network: Option<bool>,
}

impl DocumentsQuery {
    /// A query with Meilisearch's defaults (`offset` 0, `limit` 20, nothing else).
    pub fn new() -> Self {
        DocumentsQuery {
            limit: DEFAULT_DOCUMENTS_LIMIT,
            ..Default::default()
        }
    }

    /// Parses `GET /indexes/{uid}/documents` query pairs (already percent-decoded, in request order; a
    /// repeated parameter keeps its first position and its last value).
    pub fn from_query_pairs(pairs: &[(String, String)]) -> Result<Self, MeiliError> {
        let mut ordered: Vec<(&str, &str)> = Vec::new();
        for (name, value) in pairs {
            match ordered.iter_mut().find(|(n, _)| *n == name.as_str()) {
                Some(slot) => slot.1 = value.as_str(),
                None => ordered.push((name.as_str(), value.as_str())),
            }
        }
        let mut query = DocumentsQuery::new();
        let mut raw_ids: Option<Vec<Value>> = None;
        for (name, raw) in ordered {
            match name {
                "offset" => query.offset = parse_usize("invalid_document_offset", name, raw)?,
                "limit" => query.limit = parse_usize("invalid_document_limit", name, raw)?,
                "fields" => {
                    let list = comma_list(raw);
                    query.fields = if list.iter().any(|f| f == "*") {
                        None
                    } else {
                        Some(list)
                    };
                }
                "retrieveVectors" => {
                    query.retrieve_vectors =
                        parse_bool("invalid_document_retrieve_vectors", name, raw)?
                }
                "ids" => {
                    raw_ids = Some(comma_list(raw).into_iter().map(Value::String).collect());
                }
                "filter" => {
                    query.filter = Some(
                        serde_json::from_str(raw)
                            .unwrap_or_else(|_| Value::String(raw.to_string())),
                    )
                }
                "sort" => query.sort = Some(crate::search::split_sort(raw)),
                "useNetwork" => {
                    query.use_network = Some(parse_bool("invalid_document_use_network", name, raw)?)
                }
                unknown => {
                    return Err(MeiliError::invalid(
                        400,
                        "bad_request",
                        format!(
                            "Unknown parameter `{unknown}`: {}expected one of {}",
                            did_you_mean(unknown, PARAMS),
                            expected_list()
                        ),
                    ))
                }
            }
        }
        query.ids = raw_ids.map(|ids| normalise_ids(&ids)).transpose()?;
        if let Some(sort) = &query.sort {
            validate_sort(sort)?;
        }
        Ok(query)
    }

    /// Parses the JSON body of `POST /indexes/{uid}/documents/fetch`.
    pub fn from_fetch_body(body: &Value) -> Result<Self, MeiliError> {
        let Value::Object(fields) = body else {
            return Err(MeiliError::invalid(
                400,
                "bad_request",
                format!(
                    "Invalid value type: expected an object, but found {}",
                    describe(body)
                ),
            ));
        };
        let mut query = DocumentsQuery::new();
        let mut raw_ids: Option<Vec<Value>> = None;
        for (key, value) in fields {
            match key.as_str() {
                "offset" => query.offset = json_usize("invalid_document_offset", key, value)?,
                "limit" => query.limit = json_usize("invalid_document_limit", key, value)?,
                "fields" => query.fields = json_strings("invalid_document_fields", key, value)?,
                "retrieveVectors" => {
                    query.retrieve_vectors = match value {
                        Value::Bool(b) => *b,
                        other => {
                            return Err(wrong_type(
                                "invalid_document_retrieve_vectors",
                                key,
                                "a boolean",
                                other,
                            ))
                        }
                    }
                }
                "ids" => {
                    raw_ids = match value {
                        Value::Null => None,
                        Value::Array(items) => Some(items.clone()),
                        other => {
                            return Err(wrong_type("invalid_document_ids", key, "an array", other))
                        }
                    }
                }
                "filter" => {
                    query.filter = match value {
                        Value::Null => None,
                        other => Some(other.clone()),
                    }
                }
                "sort" => query.sort = json_strings("invalid_document_sort", key, value)?,
                "useNetwork" => {
                    query.use_network = match value {
                        Value::Null => None,
                        Value::Bool(b) => Some(*b),
                        other => {
                            return Err(wrong_type(
                                "invalid_document_use_network",
                                key,
                                "a boolean",
                                other,
                            ))
                        }
                    }
                }
                unknown => {
                    return Err(MeiliError::invalid(
                        400,
                        "bad_request",
                        format!(
                            "Unknown field `{unknown}`: {}expected one of {}",
                            did_you_mean(unknown, PARAMS),
                            expected_list()
                        ),
                    ))
                }
            }
        }
        query.ids = raw_ids.map(|ids| normalise_ids(&ids)).transpose()?;
        if let Some(sort) = &query.sort {
            validate_sort(sort)?;
        }
        Ok(query)
    }

    /// The query as a `POST /documents/fetch` body (the form Miroir forwards), without `ids`, `offset` and
    /// `limit`, which the pager sets per node request.
    pub(crate) fn base_fetch_body(&self) -> Map<String, Value> {
        let mut body = Map::new();
        if let Some(fields) = &self.fields {
            body.insert(
                "fields".into(),
                Value::Array(fields.iter().cloned().map(Value::String).collect()),
            );
        }
        if self.retrieve_vectors {
            body.insert("retrieveVectors".into(), Value::Bool(true));
        }
        body
    }
}

fn expected_list() -> String {
    PARAMS
        .iter()
        .map(|p| format!("`{p}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn parse_usize(code: &str, name: &str, raw: &str) -> Result<usize, MeiliError> {
    raw.parse::<usize>().map_err(|_| {
        MeiliError::invalid(
            400,
            code,
            format!("Invalid value in parameter `{name}`: could not parse `{raw}` as a positive integer"),
        )
    })
}

fn parse_bool(code: &str, name: &str, raw: &str) -> Result<bool, MeiliError> {
    match raw {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(MeiliError::invalid(
            400,
            code,
            format!(
                "Invalid value in parameter `{name}`: could not parse `{raw}` as a boolean, expected either `true` or `false`"
            ),
        )),
    }
}

/// `serde_cs::CS<String>`: split on commas, empty items dropped, items not trimmed.
fn comma_list(raw: &str) -> Vec<String> {
    raw.split(',')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// deserr's description of a JSON value: its kind, then the value itself.
fn describe(value: &Value) -> String {
    let kind = match value {
        Value::Null => return "null".to_string(),
        Value::Bool(_) => "a boolean",
        Value::Number(n) if n.is_u64() => "a positive integer",
        Value::Number(n) if n.is_i64() => "a negative integer",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    };
    format!("{kind}: `{value}`")
}

fn wrong_type(code: &str, location: &str, expected: &str, found: &Value) -> MeiliError {
    MeiliError::invalid(
        400,
        code,
        format!(
            "Invalid value type at `.{location}`: expected {expected}, but found {}",
            describe(found)
        ),
    )
}

fn json_usize(code: &str, key: &str, value: &Value) -> Result<usize, MeiliError> {
    value
        .as_u64()
        .and_then(|n| usize::try_from(n).ok())
        .ok_or_else(|| wrong_type(code, key, "a positive integer", value))
}

fn json_strings(code: &str, key: &str, value: &Value) -> Result<Option<Vec<String>>, MeiliError> {
    match value {
        Value::Null => Ok(None),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, item)| match item {
                Value::String(s) => Ok(s.clone()),
                other => Err(wrong_type(code, &format!("{key}[{i}]"), "a string", other)),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        other => Err(wrong_type(code, key, "an array", other)),
    }
}

/// Meilisearch's `validate_document_id_value` over `ids`, with its `In `.ids[i]`: …` message.
fn normalise_ids(ids: &[Value]) -> Result<Vec<String>, MeiliError> {
    ids.iter()
        .enumerate()
        .map(|(index, id)| {
            let normalised = match id {
                Value::String(s) if crate::documents::is_valid_id_str(s) => Some(s.clone()),
                Value::Number(n) if !n.is_f64() => Some(n.to_string()),
                _ => None,
            };
            normalised.ok_or_else(|| {
                MeiliError::invalid(
                    400,
                    "invalid_document_ids",
                    format!(
                        "In `.ids[{index}]`: Document identifier `{id}` is invalid. A document identifier can be of type integer or string, only composed of alphanumeric characters (a-z A-Z 0-9), hyphens (-) and underscores (_), and can not be more than 511 bytes."
                    ),
                )
            })
        })
        .collect()
}

fn sort_error(message: String) -> MeiliError {
    MeiliError::invalid(400, "invalid_document_sort", message)
}

/// Milli's `AscDesc::from_str` checks on every sort expression, with the documents route's messages
/// (`invalid_document_sort`). Whether the attributes are sortable is left to the nodes.
fn validate_sort(sort: &[String]) -> Result<(), MeiliError> {
    const RESERVED: &[&str] = &[
        "_geo",
        "_geojson",
        "_geoDistance",
        "_geoPoint",
        "_geoRadius",
        "_geoBoundingBox",
        "_geoPolygon",
    ];
    const GEO_HINT: &str =
        "Use the _geoPoint(latitude, longitude) built-in rule to sort on _geo field coordinates.";
    for text in sort {
        let member = match text.rsplit_once(':') {
            Some((left, "asc" | "desc")) => left,
            _ => {
                return Err(sort_error(format!(
                    "Invalid syntax for the sort parameter: expected expression ending by `:asc` or `:desc`, found `{text}`."
                )))
            }
        };
        let reserved = |name: &str| -> MeiliError {
            if name.starts_with("_geoPoint") {
                sort_error(format!(
                    "Invalid syntax for the geo parameter: expected expression formated like `_geoPoint(latitude, longitude)` and ending by `:asc` or `:desc`, found `{name}`."
                ))
            } else if name == "_geo" {
                sort_error(format!(
                    "`{name}` is a reserved keyword and thus can't be used as a sort expression. {GEO_HINT}"
                ))
            } else if name.starts_with("_geoRadius") || name.starts_with("_geoBoundingBox") {
                let short = if name.starts_with("_geoRadius") {
                    "_geoRadius"
                } else {
                    "_geoBoundingBox"
                };
                sort_error(format!(
                    "`{short}` is a reserved keyword and thus can't be used as a sort expression. {GEO_HINT}"
                ))
            } else {
                sort_error(format!(
                    "`{name}` is a reserved keyword and thus can't be used as a sort expression."
                ))
            }
        };
        match member
            .strip_prefix("_geoPoint(")
            .and_then(|m| m.strip_suffix(')'))
        {
            Some(point) => {
                let (lat, lng) = point
                    .split_once(',')
                    .and_then(|(lat, lng)| {
                        Some((
                            lat.trim().parse::<f64>().ok()?,
                            lng.trim().parse::<f64>().ok()?,
                        ))
                    })
                    .ok_or_else(|| reserved(member))?;
                if !(-90.0..=90.0).contains(&lat) {
                    return Err(sort_error(format!(
                        "Bad latitude `{lat}`. Latitude must be contained between -90 and 90 degrees."
                    )));
                }
                if !(-180.0..=180.0).contains(&lng) {
                    let normalized = (lng + 180.0).rem_euclid(360.0) - 180.0;
                    return Err(sort_error(format!(
                        "Bad longitude `{lng}`. Longitude must be contained between -180 and 180 degrees. Hint: try using `{normalized}` instead."
                    )));
                }
            }
            None => {
                if RESERVED.contains(&member)
                    || ["_geoRadius(", "_geoBoundingBox(", "_geo(", "_geoDistance("]
                        .iter()
                        .any(|p| member.starts_with(p))
                {
                    return Err(reserved(member));
                }
            }
        }
    }
    Ok(())
}

/// deserr's "did you mean" hint: the closest accepted name within a typo budget that grows with the length.
fn did_you_mean(received: &str, accepted: &[&str]) -> String {
    let allowed = match received.len() {
        0..=3 => return String::new(),
        4..=7 => 1,
        8..=12 => 2,
        13..=17 => 3,
        18..=24 => 4,
        _ => 5,
    };
    accepted
        .iter()
        .map(|a| (a, damerau_levenshtein(received, a)))
        .filter(|(_, d)| *d <= allowed)
        .min_by_key(|(_, d)| *d)
        .map(|(a, _)| format!("did you mean `{a}`? "))
        .unwrap_or_default()
}

/// The unrestricted Damerau–Levenshtein distance over characters (as `strsim::damerau_levenshtein`).
fn damerau_levenshtein(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let (n, m) = (a.len(), b.len());
    if n == 0 {
        return m;
    }
    if m == 0 {
        return n;
    }
    let max = n + m;
    let w = m + 2;
    let mut d = vec![0usize; (n + 2) * w];
    d[0] = max;
    for i in 0..=n {
        d[(i + 1) * w] = max;
        d[(i + 1) * w + 1] = i;
    }
    for j in 0..=m {
        d[j + 1] = max;
        d[w + j + 1] = j;
    }
    let mut last_row: HashMap<char, usize> = HashMap::new();
    for i in 1..=n {
        let mut last_match_col = 0;
        for j in 1..=m {
            let k = last_row.get(&b[j - 1]).copied().unwrap_or(0);
            let l = last_match_col;
            let cost = if a[i - 1] == b[j - 1] {
                last_match_col = j;
                0
            } else {
                1
            };
            let substitution = d[i * w + j] + cost;
            let insertion = d[(i + 1) * w + j] + 1;
            let deletion = d[i * w + j + 1] + 1;
            let transposition = d[k * w + l] + (i - k - 1) + 1 + (j - l - 1);
            d[(i + 1) * w + j + 1] = substitution.min(insertion).min(deletion).min(transposition);
        }
        last_row.insert(a[i - 1], i);
    }
    d[(n + 1) * w + m + 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distance_matches_strsim() {
        assert_eq!(damerau_levenshtein("ofset", "offset"), 1);
        assert_eq!(damerau_levenshtein("limti", "limit"), 1);
        assert_eq!(damerau_levenshtein("", "abc"), 3);
        assert_eq!(damerau_levenshtein("ca", "abc"), 2);
        assert_eq!(damerau_levenshtein("kitten", "sitting"), 3);
    }

    #[test]
    fn hints_follow_the_typo_budget() {
        assert_eq!(did_you_mean("ofset", PARAMS), "did you mean `offset`? ");
        assert_eq!(did_you_mean("ids2", PARAMS), "did you mean `ids`? ");
        assert_eq!(did_you_mean("q", PARAMS), "");
        assert_eq!(did_you_mean("zzzzzzzz", PARAMS), "");
    }
}
