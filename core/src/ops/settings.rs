//! Index settings as the client sees them versus as the nodes hold them.
//!
//! Every node of a sharded index keeps [`SHARD_FIELD`] filterable (shard restrictions filter on it), and
//! clients never see it. These pure functions translate both ways:
//! - writes: [`node_settings_patch`] (whole object), [`node_setting_value`] (one sub-route),
//!   [`node_settings_reset`] / [`node_setting_reset`] (DELETE, which would otherwise drop the field);
//! - reads: [`client_settings`], [`client_setting_value`];
//! - planning: [`search_context`] reads what the merge needs from a node's settings.
//!
//! Invariants: a write never reaches a node without `_miroir_shard` among its filterable attributes, and a
//! read never shows it; anything else in a settings body passes through unchanged (the node validates it
//! and its errors reach the client as is).

use super::Method;
use crate::search::{FacetOrder, SearchContext};
use crate::SHARD_FIELD;
use serde_json::{Map, Value};

/// The settings key of a sub-route segment: `ranking-rules` → `rankingRules`.
pub fn setting_key(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    let mut upper = false;
    for c in segment.chars() {
        if c == '-' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

fn is_shard_entry(v: &Value) -> bool {
    match v {
        Value::String(s) => s == SHARD_FIELD,
        Value::Object(o) => o
            .get("attributePatterns")
            .and_then(Value::as_array)
            .is_some_and(|p| p.len() == 1 && p[0] == SHARD_FIELD),
        _ => false,
    }
}

/// A `filterableAttributes` value for the nodes: the client's list plus `_miroir_shard`; `null` (reset)
/// becomes `["_miroir_shard"]`. Anything that is not a list is returned unchanged for the node to reject.
pub fn node_filterable(client: &Value) -> Value {
    match client {
        Value::Null => Value::Array(vec![Value::String(SHARD_FIELD.into())]),
        Value::Array(items) => {
            let mut items = items.clone();
            if !items.iter().any(is_shard_entry) {
                items.push(Value::String(SHARD_FIELD.into()));
            }
            Value::Array(items)
        }
        other => other.clone(),
    }
}

/// A `filterableAttributes` value for the client: `_miroir_shard` removed.
pub fn client_filterable(node: &Value) -> Value {
    match node {
        Value::Array(items) => Value::Array(
            items
                .iter()
                .filter(|v| !is_shard_entry(v))
                .cloned()
                .collect(),
        ),
        other => other.clone(),
    }
}

/// The body of `PATCH /indexes/{uid}/settings` for the nodes.
pub fn node_settings_patch(client: &Map<String, Value>) -> Map<String, Value> {
    let mut body = client.clone();
    if let Some(f) = body.get_mut("filterableAttributes") {
        *f = node_filterable(f);
    }
    body
}

/// The body of a sub-route update (`PUT`/`PATCH /indexes/{uid}/settings/{segment}`) for the nodes.
pub fn node_setting_value(key: &str, client: &Value) -> Value {
    if key == "filterableAttributes" {
        node_filterable(client)
    } else {
        client.clone()
    }
}

/// The settings a whole reset (`DELETE /indexes/{uid}/settings`) resets: Meilisearch's stable settings.
/// Experimental ones (embedders, chat, vector store, foreign keys) are left alone.
pub const RESETTABLE: [&str; 19] = [
    "displayedAttributes",
    "searchableAttributes",
    "filterableAttributes",
    "sortableAttributes",
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
    "searchCutoffMs",
    "localizedAttributes",
    "facetSearch",
    "prefixSearch",
];

/// The node request for a whole reset: a `PATCH` setting every resettable setting to `null` (its default)
/// except `filterableAttributes`, which becomes `["_miroir_shard"]`, so the nodes never lose the field.
pub fn node_settings_reset() -> (Method, Value) {
    let mut body = Map::new();
    for key in RESETTABLE {
        body.insert(key.to_string(), Value::Null);
    }
    body.insert("filterableAttributes".into(), node_filterable(&Value::Null));
    (Method::Patch, Value::Object(body))
}

/// The node request for a sub-route reset: `DELETE` passes through, except for `filterableAttributes`,
/// which becomes a `PUT ["_miroir_shard"]`. Returns the method and the body.
pub fn node_setting_reset(key: &str) -> (Method, Option<Value>) {
    if key == "filterableAttributes" {
        (Method::Put, Some(node_filterable(&Value::Null)))
    } else {
        (Method::Delete, None)
    }
}

/// A node's `GET /indexes/{uid}/settings` answer as the client sees it.
pub fn client_settings(node: &Value) -> Value {
    let mut v = node.clone();
    if let Some(f) = v.get_mut("filterableAttributes") {
        *f = client_filterable(f);
    }
    v
}

/// A node's `GET /indexes/{uid}/settings/{segment}` answer as the client sees it.
pub fn client_setting_value(key: &str, node: &Value) -> Value {
    if key == "filterableAttributes" {
        client_filterable(node)
    } else {
        node.clone()
    }
}

/// What a search needs from the index settings (a node's `GET /indexes/{uid}/settings` answer); missing or
/// malformed parts fall back to Meilisearch's defaults.
pub fn search_context(settings: &Value) -> SearchContext {
    let mut ctx = SearchContext::default();
    if let Some(n) = settings
        .pointer("/pagination/maxTotalHits")
        .and_then(Value::as_u64)
    {
        ctx.max_total_hits = n as usize;
    }
    if let Some(n) = settings
        .pointer("/faceting/maxValuesPerFacet")
        .and_then(Value::as_u64)
    {
        ctx.max_values_per_facet = n as usize;
    }
    if let Some(Value::Object(m)) = settings.pointer("/faceting/sortFacetValuesBy") {
        for (facet, order) in m {
            let order = match order.as_str() {
                Some("count") => FacetOrder::Count,
                _ => FacetOrder::Alpha,
            };
            ctx.sort_facet_values_by.insert(facet.clone(), order);
        }
    }
    ctx.distinct_attribute = settings
        .get("distinctAttribute")
        .and_then(Value::as_str)
        .map(str::to_string);
    ctx
}

/// Removes `_miroir_*` fields from a document a node returns.
pub fn strip_reserved(doc: &mut Value) {
    if let Value::Object(m) = doc {
        m.retain(|k, _| !k.starts_with(crate::RESERVED_PREFIX));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keys_from_segments() {
        assert_eq!(setting_key("ranking-rules"), "rankingRules");
        assert_eq!(setting_key("search-cutoff-ms"), "searchCutoffMs");
        assert_eq!(setting_key("synonyms"), "synonyms");
    }

    #[test]
    fn writes_keep_the_shard_field_and_reads_hide_it() {
        let body = json!({"filterableAttributes": ["genre"], "rankingRules": ["words"]});
        let n = node_settings_patch(body.as_object().unwrap());
        assert_eq!(n["filterableAttributes"], json!(["genre", "_miroir_shard"]));
        assert_eq!(n["rankingRules"], json!(["words"]));
        let n = node_settings_patch(json!({"filterableAttributes": null}).as_object().unwrap());
        assert_eq!(n["filterableAttributes"], json!(["_miroir_shard"]));
        let untouched = node_settings_patch(json!({"stopWords": ["a"]}).as_object().unwrap());
        assert!(untouched.get("filterableAttributes").is_none());
        assert_eq!(
            node_setting_value("filterableAttributes", &json!(["_miroir_shard", "a"])),
            json!(["_miroir_shard", "a"]),
            "not added twice"
        );
        assert_eq!(
            node_setting_value("filterableAttributes", &json!(3)),
            json!(3),
            "invalid values reach the node, which rejects them"
        );
        assert_eq!(node_setting_value("stopWords", &json!(["a"])), json!(["a"]));
        let pattern = json!([{"attributePatterns": ["_miroir_shard"]}, "genre"]);
        assert_eq!(client_filterable(&pattern), json!(["genre"]));
        assert_eq!(
            client_settings(&json!({"filterableAttributes": ["_miroir_shard", "x"], "a": 1})),
            json!({"filterableAttributes": ["x"], "a": 1})
        );
        assert_eq!(
            client_setting_value("filterableAttributes", &json!(["_miroir_shard"])),
            json!([])
        );
        assert_eq!(
            client_setting_value("rankingRules", &json!(["x"])),
            json!(["x"])
        );
    }

    #[test]
    fn resets_keep_the_shard_field() {
        let (m, body) = node_settings_reset();
        assert_eq!(m, Method::Patch);
        assert_eq!(body["filterableAttributes"], json!(["_miroir_shard"]));
        assert_eq!(body["rankingRules"], Value::Null);
        assert_eq!(
            node_setting_reset("filterableAttributes"),
            (Method::Put, Some(json!(["_miroir_shard"])))
        );
        assert_eq!(node_setting_reset("stopWords"), (Method::Delete, None));
    }

    #[test]
    fn search_context_from_settings() {
        let ctx = search_context(&json!({
            "pagination": {"maxTotalHits": 50},
            "faceting": {"maxValuesPerFacet": 7, "sortFacetValuesBy": {"*": "alpha", "genre": "count"}},
            "distinctAttribute": "sku"
        }));
        assert_eq!(ctx.max_total_hits, 50);
        assert_eq!(ctx.max_values_per_facet, 7);
        assert_eq!(ctx.facet_order("genre"), FacetOrder::Count);
        assert_eq!(ctx.facet_order("x"), FacetOrder::Alpha);
        assert_eq!(ctx.distinct_attribute.as_deref(), Some("sku"));
        assert_eq!(search_context(&json!(null)), SearchContext::default());
    }

    #[test]
    fn reserved_fields_are_stripped() {
        let mut d = json!({"id": 1, "_miroir_shard": 3});
        strip_reserved(&mut d);
        assert_eq!(d, json!({"id": 1}));
        let mut s = json!("x");
        strip_reserved(&mut s);
        assert_eq!(s, json!("x"));
    }
}
