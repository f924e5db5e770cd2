//! Index settings: defaults exactly as Meilisearch 1.50 returns them, validation of updates at request
//! time (with Meilisearch's error codes and messages), and the typed views the search engine needs.
//!
//! State: one JSON object in the shape of `GET /indexes/{uid}/settings`. Transition: a validated
//! [`SettingsPatch`] is applied when its `settingsUpdate` task runs (`null` resets a key to its
//! default). Invariant: the stored object always holds every key of [`default_settings`] with a value
//! of the right type.

use miroir_core::MeiliError;
use serde_json::{json, Map, Value};

/// Every field the settings route accepts, in Meilisearch's order (used in the unknown-field error).
pub const SETTINGS_FIELDS: &[&str] = &[
    "displayedAttributes",
    "searchableAttributes",
    "filterableAttributes",
    "sortableAttributes",
    "foreignKeys",
    "rankingRules",
    "stopWords",
    "nonSeparatorTokens",
    "separatorTokens",
    "dictionary",
    "synonyms",
    "distinctAttribute",
    "proximityPrecision",
    "typoTolerance",
    "faceting",
    "pagination",
    "embedders",
    "searchCutoffMs",
    "localizedAttributes",
    "facetSearch",
    "prefixSearch",
    "chat",
];

/// The settings of a fresh index.
pub fn default_settings() -> Map<String, Value> {
    let v = json!({
        "displayedAttributes": ["*"],
        "searchableAttributes": ["*"],
        "filterableAttributes": [],
        "sortableAttributes": [],
        "rankingRules": ["words", "typo", "proximity", "attributeRank", "sort", "wordPosition", "exactness"],
        "stopWords": [],
        "nonSeparatorTokens": [],
        "separatorTokens": [],
        "dictionary": [],
        "synonyms": {},
        "distinctAttribute": null,
        "proximityPrecision": "byWord",
        "typoTolerance": {
            "enabled": true,
            "minWordSizeForTypos": {"oneTypo": 5, "twoTypos": 9},
            "disableOnWords": [],
            "disableOnAttributes": [],
            "disableOnNumbers": false
        },
        "faceting": {"maxValuesPerFacet": 100, "sortFacetValuesBy": {"*": "alpha"}},
        "pagination": {"maxTotalHits": 1000},
        "embedders": {},
        "searchCutoffMs": null,
        "localizedAttributes": null,
        "facetSearch": true,
        "prefixSearch": "indexingTime"
    });
    v.as_object().cloned().unwrap_or_default()
}

/// Maps a settings sub-route (`ranking-rules`) to its key (`rankingRules`) and the HTTP method that
/// updates it (`PUT` or `PATCH`).
pub fn sub_route(name: &str) -> Option<(&'static str, &'static str)> {
    Some(match name {
        "displayed-attributes" => ("displayedAttributes", "PUT"),
        "searchable-attributes" => ("searchableAttributes", "PUT"),
        "filterable-attributes" => ("filterableAttributes", "PUT"),
        "sortable-attributes" => ("sortableAttributes", "PUT"),
        "ranking-rules" => ("rankingRules", "PUT"),
        "stop-words" => ("stopWords", "PUT"),
        "non-separator-tokens" => ("nonSeparatorTokens", "PUT"),
        "separator-tokens" => ("separatorTokens", "PUT"),
        "dictionary" => ("dictionary", "PUT"),
        "synonyms" => ("synonyms", "PUT"),
        "distinct-attribute" => ("distinctAttribute", "PUT"),
        "proximity-precision" => ("proximityPrecision", "PUT"),
        "typo-tolerance" => ("typoTolerance", "PATCH"),
        "faceting" => ("faceting", "PATCH"),
        "pagination" => ("pagination", "PATCH"),
        "embedders" => ("embedders", "PATCH"),
        "search-cutoff-ms" => ("searchCutoffMs", "PUT"),
        "localized-attributes" => ("localizedAttributes", "PUT"),
        "facet-search" => ("facetSearch", "PUT"),
        "prefix-search" => ("prefixSearch", "PUT"),
        _ => return None,
    })
}

/// A validated settings update: `key -> value`, `null` meaning "reset to default".
pub type SettingsPatch = Map<String, Value>;

/// How deserr names the kind of a JSON value in error messages.
pub fn value_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(n) if n.is_u64() => "a positive integer",
        Value::Number(n) if n.is_i64() => "a negative integer",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// `Invalid value type at `.path`: expected X, but found Y: `json``.
pub fn type_error(code: &str, path: &str, expected: &str, v: &Value) -> MeiliError {
    let at = if path.is_empty() {
        String::new()
    } else {
        format!(" at `{path}`")
    };
    MeiliError::invalid(
        400,
        code,
        format!(
            "Invalid value type{at}: expected {expected}, but found {}: `{}`",
            value_kind(v),
            v
        ),
    )
}

/// `camelCase` → `snake_case` (for error codes such as `invalid_settings_ranking_rules`).
pub(crate) fn snake(key: &str) -> String {
    let mut s = String::new();
    for c in key.chars() {
        if c.is_ascii_uppercase() {
            s.push('_');
            s.push(c.to_ascii_lowercase());
        } else {
            s.push(c);
        }
    }
    s
}

fn code_for(key: &str) -> String {
    format!("invalid_settings_{}", snake(key))
}

fn string_array(key: &str, path: &str, v: &Value) -> Result<Vec<String>, MeiliError> {
    let code = code_for(key);
    let arr = v
        .as_array()
        .ok_or_else(|| type_error(&code, path, "an array", v))?;
    arr.iter()
        .enumerate()
        .map(|(i, x)| {
            x.as_str()
                .map(str::to_string)
                .ok_or_else(|| type_error(&code, &format!("{path}[{i}]"), "a string", x))
        })
        .collect()
}

fn sorted_set(items: Vec<String>) -> Value {
    let set: std::collections::BTreeSet<String> = items.into_iter().collect();
    Value::Array(set.into_iter().map(Value::String).collect())
}

fn valid_ranking_rule(r: &str) -> bool {
    if matches!(
        r,
        "words"
            | "typo"
            | "proximity"
            | "attribute"
            | "attributeRank"
            | "wordPosition"
            | "sort"
            | "exactness"
    ) {
        return true;
    }
    match r.rsplit_once(':') {
        Some((field, dir)) => !field.is_empty() && (dir == "asc" || dir == "desc"),
        None => false,
    }
}

fn uint(key: &str, path: &str, v: &Value) -> Result<u64, MeiliError> {
    v.as_u64()
        .ok_or_else(|| type_error(&code_for(key), path, "a positive integer", v))
}

fn merge_object(
    key: &str,
    path: &str,
    v: &Value,
    allowed: &[&str],
) -> Result<Map<String, Value>, MeiliError> {
    let code = code_for(key);
    let obj = v
        .as_object()
        .ok_or_else(|| type_error(&code, path, "an object", v))?;
    for k in obj.keys() {
        if !allowed.contains(&k.as_str()) {
            return Err(MeiliError::invalid(
                400,
                code,
                format!(
                    "Unknown field `{k}` inside `{path}`: expected one of {}",
                    allowed
                        .iter()
                        .map(|a| format!("`{a}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        }
    }
    Ok(obj.clone())
}

/// Validates and normalises the value of one settings key (non-null). Returns the value to store
/// (and to echo in the task details).
pub fn validate_key(key: &str, v: &Value) -> Result<Value, MeiliError> {
    let path = format!(".{key}");
    let code = code_for(key);
    Ok(match key {
        "displayedAttributes" | "searchableAttributes" => {
            Value::Array(string_array(key, &path, v)?.into_iter().map(Value::String).collect())
        }
        "filterableAttributes" => {
            let arr = v.as_array().ok_or_else(|| type_error(&code, &path, "an array", v))?;
            for (i, x) in arr.iter().enumerate() {
                let ok = x.is_string()
                    || x.as_object().is_some_and(|o| o.get("attributePatterns").is_some_and(Value::is_array));
                if !ok {
                    return Err(type_error(&code, &format!("{path}[{i}]"), "a string", x));
                }
            }
            v.clone()
        }
        "sortableAttributes" | "stopWords" | "nonSeparatorTokens" | "separatorTokens" | "dictionary" => {
            sorted_set(string_array(key, &path, v)?)
        }
        "rankingRules" => {
            let rules = string_array(key, &path, v)?;
            for (i, r) in rules.iter().enumerate() {
                if !valid_ranking_rule(r) {
                    return Err(MeiliError::invalid(400, code, format!("Invalid value at `.rankingRules[{i}]`: `{r}` ranking rule is invalid. Valid ranking rules are words, typo, sort, proximity, attribute, exactness and custom ranking rules.")));
                }
            }
            Value::Array(rules.into_iter().map(Value::String).collect())
        }
        "synonyms" => {
            let obj = v.as_object().ok_or_else(|| type_error(&code, &path, "an object", v))?;
            let mut out = std::collections::BTreeMap::new();
            for (k, list) in obj {
                let words = string_array(key, &format!("{path}.{k}"), list)?;
                out.insert(k.clone(), sorted_set(words));
            }
            Value::Object(out.into_iter().collect())
        }
        "distinctAttribute" => match v {
            Value::String(_) => v.clone(),
            _ => return Err(type_error(&code, &path, "a string", v)),
        },
        "proximityPrecision" => match v.as_str() {
            Some("byWord" | "byAttribute") => v.clone(),
            Some(other) => {
                return Err(MeiliError::invalid(400, code, format!("Unknown value `{other}` at `{path}`: expected one of `byWord`, `byAttribute`")))
            }
            None => return Err(type_error(&code, &path, "a string", v)),
        },
        "prefixSearch" => match v.as_str() {
            Some("indexingTime" | "disabled") => v.clone(),
            Some(other) => {
                return Err(MeiliError::invalid(400, code, format!("Unknown value `{other}` at `{path}`: expected one of `indexingTime`, `disabled`")))
            }
            None => return Err(type_error(&code, &path, "a string", v)),
        },
        "facetSearch" => match v {
            Value::Bool(_) => v.clone(),
            _ => return Err(type_error(&code, &path, "a boolean", v)),
        },
        "searchCutoffMs" => Value::from(uint(key, &path, v)?),
        "localizedAttributes" => {
            if !v.is_array() {
                return Err(type_error(&code, &path, "an array", v));
            }
            v.clone()
        }
        "embedders" => {
            let obj = v.as_object().ok_or_else(|| type_error(&code, &path, "an object", v))?;
            if let Some(name) = obj.keys().next() {
                return Err(MeiliError::invalid(400, code, format!("The node model does not support embedders (`{name}`).")));
            }
            v.clone()
        }
        "typoTolerance" => {
            let obj = merge_object(key, &path, v, &["enabled", "minWordSizeForTypos", "disableOnWords", "disableOnAttributes", "disableOnNumbers"])?;
            let mut out = Map::new();
            for (k, x) in obj {
                let p = format!("{path}.{k}");
                let val = match (k.as_str(), &x) {
                    (_, Value::Null) => Value::Null,
                    ("enabled" | "disableOnNumbers", Value::Bool(_)) => x.clone(),
                    ("enabled" | "disableOnNumbers", _) => return Err(type_error(&code, &p, "a boolean", &x)),
                    ("minWordSizeForTypos", _) => {
                        let m = merge_object(key, &p, &x, &["oneTypo", "twoTypos"])?;
                        let mut mm = Map::new();
                        for (mk, mv) in m {
                            let val = if mv.is_null() { Value::Null } else { Value::from(uint(key, &format!("{p}.{mk}"), &mv)?) };
                            mm.insert(mk, val);
                        }
                        Value::Object(mm)
                    }
                    _ => sorted_set(string_array(key, &p, &x)?),
                };
                out.insert(k, val);
            }
            Value::Object(out)
        }
        "faceting" => {
            let obj = merge_object(key, &path, v, &["maxValuesPerFacet", "sortFacetValuesBy"])?;
            let mut out = Map::new();
            for (k, x) in obj {
                let p = format!("{path}.{k}");
                let val = match (k.as_str(), &x) {
                    (_, Value::Null) => Value::Null,
                    ("maxValuesPerFacet", _) => Value::from(uint(key, &p, &x)?),
                    _ => {
                        let m = x.as_object().ok_or_else(|| type_error(&code, &p, "an object", &x))?;
                        for (fk, fv) in m {
                            if !matches!(fv.as_str(), Some("alpha" | "count")) {
                                return Err(MeiliError::invalid(400, code.clone(), format!("Unknown value `{}` at `{p}.{fk}`: expected one of `alpha`, `count`", fv.as_str().unwrap_or(&fv.to_string()))));
                            }
                        }
                        x.clone()
                    }
                };
                out.insert(k, val);
            }
            Value::Object(out)
        }
        "pagination" => {
            let obj = merge_object(key, &path, v, &["maxTotalHits"])?;
            let mut out = Map::new();
            for (k, x) in obj {
                let val = if x.is_null() { Value::Null } else { Value::from(uint(key, &format!("{path}.{k}"), &x)?) };
                out.insert(k, val);
            }
            Value::Object(out)
        }
        // Accepted for compatibility, not modelled.
        "foreignKeys" | "chat" => v.clone(),
        _ => {
            return Err(unknown_field(key));
        }
    })
}

/// The `bad_request` error for an unknown settings field.
pub fn unknown_field(key: &str) -> MeiliError {
    MeiliError::invalid(
        400,
        "bad_request",
        format!(
            "Unknown field `{key}`: expected one of {}",
            SETTINGS_FIELDS
                .iter()
                .map(|f| format!("`{f}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    )
}

/// Validates a full `PATCH /settings` body into a patch.
pub fn validate_patch(body: &Value) -> Result<SettingsPatch, MeiliError> {
    let obj = body
        .as_object()
        .ok_or_else(|| type_error("bad_request", "", "an object", body))?;
    for k in obj.keys() {
        if !SETTINGS_FIELDS.contains(&k.as_str()) {
            return Err(unknown_field(k));
        }
    }
    let mut out = Map::new();
    for (k, v) in obj {
        let val = if v.is_null() {
            Value::Null
        } else {
            validate_key(k, v)?
        };
        out.insert(k.clone(), val);
    }
    Ok(out)
}

/// A patch resetting every setting (the `DELETE /settings` route).
pub fn reset_all_patch() -> SettingsPatch {
    default_settings()
        .keys()
        .map(|k| (k.clone(), Value::Null))
        .collect()
}

/// The stored settings of one index.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    values: Map<String, Value>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            values: default_settings(),
        }
    }
}

impl Settings {
    /// The `GET /settings` body.
    pub fn to_json(&self) -> Value {
        Value::Object(self.values.clone())
    }

    /// One key, as returned by the settings sub-route.
    pub fn get(&self, key: &str) -> Value {
        self.values.get(key).cloned().unwrap_or(Value::Null)
    }

    /// Applies a validated patch.
    pub fn apply(&mut self, patch: &SettingsPatch) {
        let defaults = default_settings();
        for (k, v) in patch {
            let Some(default) = defaults.get(k) else {
                continue;
            };
            if v.is_null() {
                self.values.insert(k.clone(), default.clone());
                continue;
            }
            match (k.as_str(), v) {
                ("typoTolerance" | "faceting" | "pagination", Value::Object(obj)) => {
                    let mut cur = self
                        .values
                        .get(k)
                        .cloned()
                        .unwrap_or_else(|| default.clone());
                    for (sk, sv) in obj {
                        let sub_default = default.get(sk).cloned().unwrap_or(Value::Null);
                        let new = if sv.is_null() {
                            sub_default
                        } else if let (Value::Object(inner), Value::Object(cur_inner)) =
                            (sv, cur.get(sk).cloned().unwrap_or(Value::Null))
                        {
                            let mut merged = cur_inner;
                            if sk == "sortFacetValuesBy" {
                                merged = inner.clone();
                                merged.entry("*").or_insert_with(|| json!("alpha"));
                            } else {
                                for (ik, iv) in inner {
                                    let d = sub_default.get(ik).cloned().unwrap_or(Value::Null);
                                    merged.insert(
                                        ik.clone(),
                                        if iv.is_null() { d } else { iv.clone() },
                                    );
                                }
                            }
                            Value::Object(merged)
                        } else {
                            sv.clone()
                        };
                        if let Some(o) = cur.as_object_mut() {
                            o.insert(sk.clone(), new);
                        }
                    }
                    self.values.insert(k.clone(), cur);
                }
                _ => {
                    self.values.insert(k.clone(), v.clone());
                }
            }
        }
    }

    fn strings(&self, key: &str) -> Vec<String> {
        self.values
            .get(key)
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Searchable attributes in weight order, `None` for `*`.
    pub fn searchable(&self) -> Option<Vec<String>> {
        let s = self.strings("searchableAttributes");
        if s.iter().any(|x| x == "*") {
            None
        } else {
            Some(s)
        }
    }

    /// Displayed attributes, `None` for `*`.
    pub fn displayed(&self) -> Option<Vec<String>> {
        let s = self.strings("displayedAttributes");
        if s.iter().any(|x| x == "*") {
            None
        } else {
            Some(s)
        }
    }

    /// Filterable attribute patterns (objects contribute their `attributePatterns`).
    pub fn filterable(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(arr) = self
            .values
            .get("filterableAttributes")
            .and_then(Value::as_array)
        {
            for x in arr {
                match x {
                    Value::String(s) => out.push(s.clone()),
                    Value::Object(o) => {
                        if let Some(p) = o.get("attributePatterns").and_then(Value::as_array) {
                            out.extend(p.iter().filter_map(|s| s.as_str().map(str::to_string)));
                        }
                    }
                    _ => {}
                }
            }
        }
        out
    }

    /// Sortable attributes (sorted).
    pub fn sortable(&self) -> Vec<String> {
        self.strings("sortableAttributes")
    }

    /// Ranking rules in order.
    pub fn ranking_rules(&self) -> Vec<String> {
        self.strings("rankingRules")
    }

    /// Synonyms: lowercased word → its synonyms.
    pub fn synonyms(&self) -> Vec<(String, Vec<String>)> {
        self.values
            .get("synonyms")
            .and_then(Value::as_object)
            .map(|o| {
                o.iter()
                    .map(|(k, v)| {
                        let list = v
                            .as_array()
                            .map(|a| {
                                a.iter()
                                    .filter_map(|x| x.as_str().map(str::to_string))
                                    .collect()
                            })
                            .unwrap_or_default();
                        (k.to_lowercase(), list)
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Stop words.
    pub fn stop_words(&self) -> Vec<String> {
        self.strings("stopWords")
    }

    /// The distinct attribute.
    pub fn distinct(&self) -> Option<String> {
        self.values
            .get("distinctAttribute")
            .and_then(Value::as_str)
            .map(str::to_string)
    }

    fn typo(&self, key: &str) -> Option<&Value> {
        self.values.get("typoTolerance").and_then(|t| t.get(key))
    }

    /// Whether typo tolerance is enabled.
    pub fn typo_enabled(&self) -> bool {
        self.typo("enabled")
            .and_then(Value::as_bool)
            .unwrap_or(true)
    }

    /// `(oneTypo, twoTypos)` minimum word sizes.
    pub fn min_word_sizes(&self) -> (usize, usize) {
        let m = self.typo("minWordSizeForTypos");
        let one = m
            .and_then(|m| m.get("oneTypo"))
            .and_then(Value::as_u64)
            .unwrap_or(5);
        let two = m
            .and_then(|m| m.get("twoTypos"))
            .and_then(Value::as_u64)
            .unwrap_or(9);
        (one as usize, two as usize)
    }

    /// Words on which typos are disabled.
    pub fn typo_disabled_words(&self) -> Vec<String> {
        self.typo("disableOnWords")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str().map(str::to_lowercase))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Attributes on which typos are disabled.
    pub fn typo_disabled_attributes(&self) -> Vec<String> {
        self.typo("disableOnAttributes")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Whether typos are disabled on numbers.
    pub fn typo_disabled_on_numbers(&self) -> bool {
        self.typo("disableOnNumbers")
            .and_then(Value::as_bool)
            .unwrap_or(false)
    }

    /// `faceting.maxValuesPerFacet`.
    pub fn max_values_per_facet(&self) -> usize {
        self.values
            .get("faceting")
            .and_then(|f| f.get("maxValuesPerFacet"))
            .and_then(Value::as_u64)
            .unwrap_or(100) as usize
    }

    /// Whether the facet values of `attr` are sorted by count (otherwise alphabetically).
    pub fn facet_sorted_by_count(&self, attr: &str) -> bool {
        let by = self
            .values
            .get("faceting")
            .and_then(|f| f.get("sortFacetValuesBy"));
        let get = |k: &str| by.and_then(|b| b.get(k)).and_then(Value::as_str);
        get(attr).or_else(|| get("*")) == Some("count")
    }

    /// `pagination.maxTotalHits`.
    pub fn max_total_hits(&self) -> usize {
        self.values
            .get("pagination")
            .and_then(|f| f.get("maxTotalHits"))
            .and_then(Value::as_u64)
            .unwrap_or(1000) as usize
    }

    /// Whether prefix search is enabled (`prefixSearch` is not `disabled`).
    pub fn prefix_search(&self) -> bool {
        self.values.get("prefixSearch").and_then(Value::as_str) != Some("disabled")
    }

    /// Whether proximity is measured per attribute rather than per word.
    pub fn proximity_by_attribute(&self) -> bool {
        self.values
            .get("proximityPrecision")
            .and_then(Value::as_str)
            == Some("byAttribute")
    }

    /// Whether facet search is enabled.
    pub fn facet_search(&self) -> bool {
        self.values
            .get("facetSearch")
            .and_then(Value::as_bool)
            .unwrap_or(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validates_ranking_rules_and_unknown_fields() {
        let e = validate_patch(&json!({"rankingRules": ["words", "nope"]})).unwrap_err();
        assert_eq!(e.code, "invalid_settings_ranking_rules");
        assert!(e
            .message
            .starts_with("Invalid value at `.rankingRules[1]`: `nope` ranking rule is invalid."));
        let e = validate_patch(&json!({"notASetting": 1})).unwrap_err();
        assert_eq!(e.code, "bad_request");
        assert!(e
            .message
            .starts_with("Unknown field `notASetting`: expected one of `displayedAttributes`"));
        assert!(validate_patch(&json!({"rankingRules": ["year:desc", "words"]})).is_ok());
        let e = validate_patch(&json!({"sortableAttributes": "x"})).unwrap_err();
        assert_eq!(e.code, "invalid_settings_sortable_attributes");
        assert_eq!(e.message, "Invalid value type at `.sortableAttributes`: expected an array, but found a string: `\"x\"`");
        let e = validate_patch(&json!({"pagination": {"maxTotalHits": -1}})).unwrap_err();
        assert_eq!(e.code, "invalid_settings_pagination");
        let e =
            validate_patch(&json!({"faceting": {"sortFacetValuesBy": {"a": "zzz"}}})).unwrap_err();
        assert_eq!(e.code, "invalid_settings_faceting");
        assert!(validate_patch(&json!([1])).is_err());
    }

    #[test]
    fn applies_and_resets() {
        let mut s = Settings::default();
        let p = validate_patch(&json!({"sortableAttributes": ["year", "rating"], "faceting": {"maxValuesPerFacet": 3}, "typoTolerance": {"minWordSizeForTypos": {"oneTypo": 4}}})).unwrap();
        assert_eq!(p["sortableAttributes"], json!(["rating", "year"]));
        s.apply(&p);
        assert_eq!(s.sortable(), vec!["rating", "year"]);
        assert_eq!(s.max_values_per_facet(), 3);
        assert_eq!(s.min_word_sizes(), (4, 9));
        assert_eq!(
            s.to_json()["faceting"]["sortFacetValuesBy"],
            json!({"*": "alpha"})
        );
        s.apply(&reset_all_patch());
        assert_eq!(s, Settings::default());
        assert_eq!(sub_route("ranking-rules"), Some(("rankingRules", "PUT")));
        assert_eq!(sub_route("faceting"), Some(("faceting", "PATCH")));
        assert!(sub_route("nope").is_none());
        assert_eq!(s.searchable(), None);
        assert!(!s.facet_sorted_by_count("x"));
    }
}
