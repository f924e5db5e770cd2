//! `GET /indexes/{uid}/search` query parameters → the equivalent `POST` body.
//!
//! Follows Meilisearch's `SearchQueryGet`: comma-separated lists, integers and booleans parsed from text
//! with Meilisearch's "Invalid value in parameter …" messages, `filter` read as JSON when it parses (else
//! kept as a string), `sort` split on commas while keeping `_geoPoint(lat, lng):dir` whole, `hybridEmbedder`
//! and `hybridSemanticRatio` folded into `hybrid`. Unknown parameters are refused with Meilisearch's
//! `bad_request` message. The body is then planned like any `POST` search.
//!
//! States: one pass over the pairs in request order (the first invalid parameter is the one reported), then
//! the cross-parameter checks (`hybrid…`, `vector`). Invariant: the result is a body `plan_search` accepts
//! exactly as it would accept the equivalent `POST`.
//!
//! Known limit: values whose validation needs the index (locales, embedders, vector content) are passed on
//! and validated by the nodes, whose messages are the `POST` ones.

use serde_json::{Map, Value};

use crate::MeiliError;

/// Every GET search parameter, in Meilisearch's declaration order (used in the unknown-parameter message).
const PARAMS: &[&str] = &[
    "q",
    "offset",
    "limit",
    "page",
    "hitsPerPage",
    "attributesToRetrieve",
    "attributesToCrop",
    "cropLength",
    "cropMarker",
    "attributesToHighlight",
    "highlightPreTag",
    "highlightPostTag",
    "showMatchesPosition",
    "filter",
    "sort",
    "distinct",
    "facets",
    "matchingStrategy",
    "attributesToSearchOn",
    "rankingScoreThreshold",
    "locales",
    "hybridEmbedder",
    "hybridSemanticRatio",
    "vector",
    "retrieveVectors",
    "personalizeUserContext",
    "useNetwork",
    "showRankingScore",
    "showRankingScoreDetails",
    "showPerformanceDetails",
];

fn invalid_param(code: &str, name: &str, what: String) -> MeiliError {
    MeiliError::invalid(
        400,
        code,
        format!("Invalid value in parameter `{name}`: {what}"),
    )
}

fn parse_usize(code: &str, name: &str, raw: &str) -> Result<Value, MeiliError> {
    raw.parse::<u64>().map(Value::from).map_err(|_| {
        invalid_param(
            code,
            name,
            format!("could not parse `{raw}` as a positive integer"),
        )
    })
}

fn parse_bool(code: &str, name: &str, raw: &str) -> Result<Value, MeiliError> {
    match raw {
        "true" => Ok(Value::Bool(true)),
        "false" => Ok(Value::Bool(false)),
        _ => Err(invalid_param(
            code,
            name,
            format!("could not parse `{raw}` as a boolean, expected either `true` or `false`"),
        )),
    }
}

fn parse_ratio(code: &str, name: &str, field: &str, raw: &str) -> Result<Value, MeiliError> {
    match raw.parse::<f64>() {
        Ok(f) if (0.0..=1.0).contains(&f) => Ok(Value::from(f)),
        _ => Err(invalid_param(
            code,
            name,
            format!("the value of `{field}` is invalid, expected a float between `0.0` and `1.0`."),
        )),
    }
}

/// `serde_cs::CS`: split on commas, empty items dropped, items not trimmed.
fn comma_list(raw: &str) -> Value {
    Value::Array(
        raw.split(',')
            .filter(|s| !s.is_empty())
            .map(|s| Value::String(s.to_string()))
            .collect(),
    )
}

/// Meilisearch's `fix_sort_query_parameters`: split on commas, but keep `_geoPoint(lat, lng):dir` whole.
pub(crate) fn split_sort(raw: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut merging = false;
    for part in raw.trim_matches('"').split(',').map(str::trim) {
        if part.starts_with("_geoPoint(") {
            out.push(part.to_string());
            merging = true;
        } else if merging && !out.is_empty() {
            if let Some(last) = out.last_mut() {
                last.push(',');
                last.push_str(part);
            }
            if part.ends_with("):desc") || part.ends_with("):asc") {
                merging = false;
            }
        } else {
            out.push(part.to_string());
            merging = false;
        }
    }
    out
}

/// Converts `GET` search query parameters (already percent-decoded, in request order) into the `POST` body.
///
/// Errors (status 400), as Meilisearch: `bad_request` for an unknown parameter; `invalid_search_offset`,
/// `invalid_search_limit`, `invalid_search_page`, `invalid_search_hits_per_page`,
/// `invalid_search_crop_length` for integers; `invalid_search_show_matches_position`,
/// `invalid_search_retrieve_vectors`, `invalid_search_use_network`, `invalid_search_show_ranking_score`,
/// `invalid_search_show_ranking_score_details`, `invalid_search_show_performance_details` for booleans;
/// `invalid_search_matching_strategy`, `invalid_search_ranking_score_threshold`,
/// `invalid_search_semantic_ratio`, `invalid_search_vector`, `invalid_search_hybrid_query` and
/// `missing_search_hybrid`.
pub fn search_params_from_query(
    pairs: &[(String, String)],
) -> Result<Map<String, Value>, MeiliError> {
    let mut body = Map::new();
    let mut embedder: Option<String> = None;
    let mut ratio: Option<Value> = None;
    for (name, raw) in pairs {
        let name = name.as_str();
        let value = match name {
            "q" | "cropMarker" | "highlightPreTag" | "highlightPostTag" | "distinct" => {
                Value::String(raw.clone())
            }
            "offset" => parse_usize("invalid_search_offset", name, raw)?,
            "limit" => parse_usize("invalid_search_limit", name, raw)?,
            "page" => parse_usize("invalid_search_page", name, raw)?,
            "hitsPerPage" => parse_usize("invalid_search_hits_per_page", name, raw)?,
            "cropLength" => parse_usize("invalid_search_crop_length", name, raw)?,
            "attributesToRetrieve" | "attributesToCrop" | "attributesToHighlight" | "facets"
            | "attributesToSearchOn" | "locales" => comma_list(raw),
            "showMatchesPosition" => parse_bool("invalid_search_show_matches_position", name, raw)?,
            "retrieveVectors" => parse_bool("invalid_search_retrieve_vectors", name, raw)?,
            "useNetwork" => parse_bool("invalid_search_use_network", name, raw)?,
            "showRankingScore" => parse_bool("invalid_search_show_ranking_score", name, raw)?,
            "showRankingScoreDetails" => {
                parse_bool("invalid_search_show_ranking_score_details", name, raw)?
            }
            "showPerformanceDetails" => {
                parse_bool("invalid_search_show_performance_details", name, raw)?
            }
            "filter" => serde_json::from_str(raw).unwrap_or_else(|_| Value::String(raw.clone())),
            "sort" => Value::Array(split_sort(raw).into_iter().map(Value::String).collect()),
            "matchingStrategy" => match raw.as_str() {
                "last" | "all" | "frequency" => Value::String(raw.clone()),
                _ => {
                    return Err(MeiliError::invalid(
                        400,
                        "invalid_search_matching_strategy",
                        format!(
                            "Unknown value `{raw}` for parameter `matchingStrategy`: expected one of `last`, `all`, `frequency`"
                        ),
                    ))
                }
            },
            "rankingScoreThreshold" => parse_ratio(
                "invalid_search_ranking_score_threshold",
                name,
                "rankingScoreThreshold",
                raw,
            )?,
            "hybridEmbedder" => {
                embedder = Some(raw.clone());
                continue;
            }
            "hybridSemanticRatio" => {
                ratio = Some(parse_ratio(
                    "invalid_search_semantic_ratio",
                    name,
                    "semanticRatio",
                    raw,
                )?);
                continue;
            }
            "vector" => {
                let mut numbers = Vec::new();
                for part in raw.split(',').filter(|s| !s.is_empty()) {
                    // `CS<f32>`: the float parser's own message.
                    let f: f32 = part.parse().map_err(|e: std::num::ParseFloatError| {
                        invalid_param("invalid_search_vector", name, e.to_string())
                    })?;
                    numbers.push(Value::from(f as f64));
                }
                Value::Array(numbers)
            }
            "personalizeUserContext" => {
                let mut p = Map::new();
                p.insert("userContext".into(), Value::String(raw.clone()));
                body.insert("personalize".into(), Value::Object(p));
                continue;
            }
            unknown => {
                let expected = PARAMS
                    .iter()
                    .map(|p| format!("`{p}`"))
                    .collect::<Vec<_>>()
                    .join(", ");
                return Err(MeiliError::invalid(
                    400,
                    "bad_request",
                    format!("Unknown parameter `{unknown}`: expected one of {expected}"),
                ));
            }
        };
        body.insert(name.to_string(), value);
    }
    match (embedder, ratio) {
        (None, None) => {}
        (None, Some(_)) => {
            return Err(MeiliError::invalid(
                400,
                "invalid_search_hybrid_query",
                "`hybridEmbedder` is mandatory when `hybridSemanticRatio` is present",
            ))
        }
        (Some(embedder), ratio) => {
            let mut hybrid = Map::new();
            hybrid.insert(
                "semanticRatio".into(),
                ratio.unwrap_or_else(|| Value::from(0.5)),
            );
            hybrid.insert("embedder".into(), Value::String(embedder));
            body.insert("hybrid".into(), Value::Object(hybrid));
        }
    }
    if body.contains_key("vector") && !body.contains_key("hybrid") {
        return Err(MeiliError::invalid(
            400,
            "missing_search_hybrid",
            "`hybridEmbedder` is mandatory when `vector` is present",
        ));
    }
    Ok(body)
}
