//! Search request parameters: the validated [`SearchQuery`], built from a JSON body (POST) or from
//! query-string parameters (GET), with Meilisearch's error codes (`invalid_search_*`, `bad_request`).

use miroir_core::MeiliError;
use serde_json::{Map, Value};

use super::settings::{snake, type_error};

/// Every search parameter, in Meilisearch's order (for the unknown-field error).
pub const SEARCH_PARAMS: &[&str] = &[
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
    "hybrid",
    "vector",
    "retrieveVectors",
    "media",
    "personalize",
    "useNetwork",
    "showRankingScore",
    "showRankingScoreDetails",
    "showPerformanceDetails",
];

/// How query terms may be dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchingStrategy {
    /// Drop from the end.
    Last,
    /// Keep all.
    All,
    /// Drop the most frequent first.
    Frequency,
}

/// A validated search request.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchQuery {
    /// `q`.
    pub q: Option<String>,
    /// `offset`.
    pub offset: Option<usize>,
    /// `limit`.
    pub limit: Option<usize>,
    /// `page`.
    pub page: Option<usize>,
    /// `hitsPerPage`.
    pub hits_per_page: Option<usize>,
    /// `attributesToRetrieve`.
    pub attributes_to_retrieve: Option<Vec<String>>,
    /// `attributesToCrop`.
    pub attributes_to_crop: Option<Vec<String>>,
    /// `cropLength`.
    pub crop_length: usize,
    /// `cropMarker`.
    pub crop_marker: String,
    /// `attributesToHighlight`.
    pub attributes_to_highlight: Option<Vec<String>>,
    /// `highlightPreTag`.
    pub highlight_pre_tag: String,
    /// `highlightPostTag`.
    pub highlight_post_tag: String,
    /// `showMatchesPosition`.
    pub show_matches_position: bool,
    /// `filter`.
    pub filter: Value,
    /// `sort`.
    pub sort: Option<Vec<String>>,
    /// `distinct`.
    pub distinct: Option<String>,
    /// `facets`.
    pub facets: Option<Vec<String>>,
    /// `matchingStrategy`.
    pub matching_strategy: MatchingStrategy,
    /// `attributesToSearchOn`.
    pub attributes_to_search_on: Option<Vec<String>>,
    /// `rankingScoreThreshold`.
    pub ranking_score_threshold: Option<f64>,
    /// `showRankingScore`.
    pub show_ranking_score: bool,
    /// `showRankingScoreDetails`.
    pub show_ranking_score_details: bool,
}

impl Default for SearchQuery {
    fn default() -> Self {
        SearchQuery {
            q: None,
            offset: None,
            limit: None,
            page: None,
            hits_per_page: None,
            attributes_to_retrieve: None,
            attributes_to_crop: None,
            crop_length: 10,
            crop_marker: "…".into(),
            attributes_to_highlight: None,
            highlight_pre_tag: "<em>".into(),
            highlight_post_tag: "</em>".into(),
            show_matches_position: false,
            filter: Value::Null,
            sort: None,
            distinct: None,
            facets: None,
            matching_strategy: MatchingStrategy::Last,
            attributes_to_search_on: None,
            ranking_score_threshold: None,
            show_ranking_score: false,
            show_ranking_score_details: false,
        }
    }
}

fn code(key: &str) -> String {
    format!("invalid_search_{}", snake(key))
}

fn want_usize(key: &str, v: &Value) -> Result<Option<usize>, MeiliError> {
    if v.is_null() {
        return Ok(None);
    }
    v.as_u64()
        .map(|n| Some(n as usize))
        .ok_or_else(|| type_error(&code(key), &format!(".{key}"), "a positive integer", v))
}

fn want_bool(key: &str, v: &Value) -> Result<bool, MeiliError> {
    if v.is_null() {
        return Ok(false);
    }
    v.as_bool()
        .ok_or_else(|| type_error(&code(key), &format!(".{key}"), "a boolean", v))
}

fn want_string(key: &str, v: &Value) -> Result<Option<String>, MeiliError> {
    match v {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(s.clone())),
        _ => Err(type_error(&code(key), &format!(".{key}"), "a string", v)),
    }
}

fn want_strings(key: &str, v: &Value) -> Result<Option<Vec<String>>, MeiliError> {
    match v {
        Value::Null => Ok(None),
        Value::Array(a) => a
            .iter()
            .enumerate()
            .map(|(i, x)| {
                x.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| type_error(&code(key), &format!(".{key}[{i}]"), "a string", x))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        _ => Err(type_error(&code(key), &format!(".{key}"), "an array", v)),
    }
}

impl SearchQuery {
    /// Validates a JSON search body (`POST /search`, or one query of a multi-search when
    /// `extra_allowed` lists the extra keys such as `indexUid`).
    pub fn from_json(body: &Value, extra_allowed: &[&str]) -> Result<Self, MeiliError> {
        let obj = body
            .as_object()
            .ok_or_else(|| type_error("bad_request", "", "an object", body))?;
        for k in obj.keys() {
            if !SEARCH_PARAMS.contains(&k.as_str()) && !extra_allowed.contains(&k.as_str()) {
                let mut all: Vec<&str> = extra_allowed.to_vec();
                all.extend_from_slice(SEARCH_PARAMS);
                return Err(MeiliError::invalid(
                    400,
                    "bad_request",
                    format!(
                        "Unknown field `{k}`: expected one of {}",
                        all.iter()
                            .map(|p| format!("`{p}`"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ));
            }
        }
        let mut q = SearchQuery::default();
        for (k, v) in obj {
            match k.as_str() {
                "q" => q.q = want_string(k, v)?,
                "offset" => q.offset = want_usize(k, v)?,
                "limit" => q.limit = want_usize(k, v)?,
                "page" => q.page = want_usize(k, v)?,
                "hitsPerPage" => q.hits_per_page = want_usize(k, v)?,
                "attributesToRetrieve" => q.attributes_to_retrieve = want_strings(k, v)?,
                "attributesToCrop" => q.attributes_to_crop = want_strings(k, v)?,
                "cropLength" => q.crop_length = want_usize(k, v)?.unwrap_or(10),
                "cropMarker" => q.crop_marker = want_string(k, v)?.unwrap_or_else(|| "…".into()),
                "attributesToHighlight" => q.attributes_to_highlight = want_strings(k, v)?,
                "highlightPreTag" => q.highlight_pre_tag = want_string(k, v)?.unwrap_or_else(|| "<em>".into()),
                "highlightPostTag" => q.highlight_post_tag = want_string(k, v)?.unwrap_or_else(|| "</em>".into()),
                "showMatchesPosition" => q.show_matches_position = want_bool(k, v)?,
                "filter" => q.filter = v.clone(),
                "sort" => q.sort = want_strings(k, v)?,
                "distinct" => q.distinct = want_string(k, v)?,
                "facets" => q.facets = want_strings(k, v)?,
                "matchingStrategy" => {
                    q.matching_strategy = match v {
                        Value::Null => MatchingStrategy::Last,
                        Value::String(s) => match s.as_str() {
                            "last" => MatchingStrategy::Last,
                            "all" => MatchingStrategy::All,
                            "frequency" => MatchingStrategy::Frequency,
                            other => {
                                return Err(MeiliError::invalid(400, code(k), format!("Unknown value `{other}` at `.matchingStrategy`: expected one of `last`, `all`, `frequency`")))
                            }
                        },
                        _ => return Err(type_error(&code(k), ".matchingStrategy", "a string", v)),
                    }
                }
                "attributesToSearchOn" => q.attributes_to_search_on = want_strings(k, v)?,
                "rankingScoreThreshold" => {
                    q.ranking_score_threshold = match v {
                        Value::Null => None,
                        Value::Number(n) => {
                            let f = n.as_f64().unwrap_or(-1.0);
                            if !(0.0..=1.0).contains(&f) {
                                return Err(MeiliError::invalid(400, code(k), "Invalid value at `.rankingScoreThreshold`: the value of `rankingScoreThreshold` is invalid, expected a float between `0.0` and `1.0`."));
                            }
                            Some(f)
                        }
                        _ => return Err(type_error(&code(k), ".rankingScoreThreshold", "a number", v)),
                    }
                }
                "showRankingScore" => q.show_ranking_score = want_bool(k, v)?,
                "showRankingScoreDetails" => q.show_ranking_score_details = want_bool(k, v)?,
                "retrieveVectors" | "showPerformanceDetails" | "useNetwork" => {
                    want_bool(k, v)?;
                }
                _ => {}
            }
        }
        Ok(q)
    }

    /// Builds a query from `GET /search` parameters.
    pub fn from_params(params: &[(String, String)]) -> Result<Self, MeiliError> {
        let mut obj = Map::new();
        for (k, v) in params {
            if !SEARCH_PARAMS.contains(&k.as_str()) {
                return Err(MeiliError::invalid(
                    400,
                    "bad_request",
                    format!(
                        "Unknown parameter `{k}`: expected one of {}",
                        SEARCH_PARAMS
                            .iter()
                            .map(|p| format!("`{p}`"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ));
            }
            let val = match k.as_str() {
                "offset" | "limit" | "page" | "hitsPerPage" | "cropLength" => {
                    Value::from(v.parse::<u64>().map_err(|_| {
                        MeiliError::invalid(400, code(k), format!("Invalid value in parameter `{k}`: could not parse `{v}` as a positive integer"))
                    })?)
                }
                "showMatchesPosition" | "showRankingScore" | "showRankingScoreDetails" | "retrieveVectors" | "showPerformanceDetails" => match v.as_str() {
                    "true" => Value::Bool(true),
                    "false" => Value::Bool(false),
                    _ => {
                        return Err(MeiliError::invalid(400, code(k), format!("Invalid value in parameter `{k}`: could not parse `{v}` as a boolean, expected either `true` or `false`")))
                    }
                },
                "attributesToRetrieve" | "attributesToCrop" | "attributesToHighlight" | "facets" | "sort" | "attributesToSearchOn" => Value::Array(
                    v.split(',').map(|s| Value::String(s.trim().to_string())).filter(|s| s != "").collect(),
                ),
                "rankingScoreThreshold" => match v.parse::<f64>().ok().and_then(serde_json::Number::from_f64) {
                    Some(n) => Value::Number(n),
                    None => {
                        return Err(MeiliError::invalid(400, code(k), format!("Invalid value in parameter `rankingScoreThreshold`: could not parse `{v}` as a number")))
                    }
                },
                _ => Value::String(v.clone()),
            };
            obj.insert(k.clone(), val);
        }
        SearchQuery::from_json(&Value::Object(obj), &[])
    }
}
