//! Index settings as the client sees them versus as the nodes hold them.
//!
//! Every node of a sharded index keeps [`SHARD_FIELD`] filterable (shard restrictions filter on it), and
//! clients never see it. Nodes also keep `faceting.maxValuesPerFacet` at least S (per-shard counts come from
//! a facet distribution on `_miroir_shard`, and facet merges over-fetch); the client's own value is kept by
//! the proxy ([`client_max_values_per_facet`]) and shown instead. Nodes display every field
//! (`displayedAttributes: ["*"]`): the merge needs the distinct attribute and `_miroir_shard` in every hit,
//! so the client's `displayedAttributes` is kept by the proxy ([`client_displayed`]) and applied to what it
//! returns ([`apply_displayed`]). These pure functions translate both ways:
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

/// A `faceting` value for the nodes: `maxValuesPerFacet` raised to at least S and [`NODE_FACET_VALUES`];
/// `null` (reset) and a `null` `maxValuesPerFacet` become Meilisearch's default raised the same way.
/// Anything that is not an object is returned unchanged for the node to reject.
pub fn node_faceting(client: &Value, shards: u32) -> Value {
    let floor = |n: u64| Value::from(n.max(u64::from(shards)).max(NODE_FACET_VALUES));
    match client {
        Value::Null => {
            let mut m = Map::new();
            m.insert(
                "maxValuesPerFacet".into(),
                floor(DEFAULT_MAX_VALUES_PER_FACET),
            );
            m.insert("sortFacetValuesBy".into(), Value::Null);
            Value::Object(m)
        }
        Value::Object(m) => {
            let mut m = m.clone();
            match m.get("maxValuesPerFacet") {
                Some(Value::Null) => {
                    m.insert(
                        "maxValuesPerFacet".into(),
                        floor(DEFAULT_MAX_VALUES_PER_FACET),
                    );
                }
                Some(v) => {
                    if let Some(n) = v.as_u64() {
                        m.insert("maxValuesPerFacet".into(), floor(n));
                    }
                }
                None => {}
            }
            Value::Object(m)
        }
        other => other.clone(),
    }
}

/// Meilisearch's default `faceting.maxValuesPerFacet`.
pub const DEFAULT_MAX_VALUES_PER_FACET: u64 = 100;

/// The fewest facet values a node returns per facet. Facet values ordered by `count` merge exactly only
/// when every node returns every value of the facet (a value can be rare on one shard and frequent
/// overall); nodes over-fetch up to this many values, and the merge truncates to the client's
/// `maxValuesPerFacet`. Facets with more distinct values than this are merged from each node's top values
/// only (documented limit).
pub const NODE_FACET_VALUES: u64 = 1_000;

/// What a client `faceting` value does to the client's `maxValuesPerFacet`: `Some(Some(n))` sets it,
/// `Some(None)` resets it to the default, `None` leaves it.
pub fn client_max_values_per_facet(client_faceting: &Value) -> Option<Option<u64>> {
    match client_faceting {
        Value::Null => Some(None),
        Value::Object(m) => match m.get("maxValuesPerFacet") {
            Some(Value::Null) => Some(None),
            Some(v) => v.as_u64().map(Some),
            None => None,
        },
        _ => None,
    }
}

/// A `displayedAttributes` value for the nodes: every list (and `null`) becomes `["*"]`; anything else is
/// returned unchanged for the node to reject.
pub fn node_displayed(client: &Value) -> Value {
    match client {
        Value::Null | Value::Array(_) => Value::Array(vec![Value::String("*".into())]),
        other => other.clone(),
    }
}

/// What a client `displayedAttributes` value does to the list the proxy applies: `Some(Some(list))` sets
/// it, `Some(None)` means every field (`null`, or a list holding `*`), `None` leaves it (not a list of
/// strings: the nodes refuse it).
pub fn client_displayed(client: &Value) -> Option<Option<Vec<String>>> {
    match client {
        Value::Null => Some(None),
        Value::Array(items) => {
            let names: Option<Vec<String>> = items
                .iter()
                .map(|v| v.as_str().map(str::to_string))
                .collect();
            let names = names?;
            if names.iter().any(|n| n == "*") {
                Some(None)
            } else {
                Some(Some(names))
            }
        }
        _ => None,
    }
}

/// Keeps only the displayed fields of a document (a top-level field is displayed when listed, or when a
/// listed path starts with `field.`, in which case the whole field is kept). `None` displays everything.
pub fn apply_displayed(doc: &mut Value, displayed: Option<&[String]>) {
    let (Some(list), Value::Object(m)) = (displayed, doc) else {
        return;
    };
    m.retain(|k, _| {
        k.starts_with('_') && !k.starts_with(crate::RESERVED_PREFIX)
            || list.iter().any(|d| {
                d == k
                    || d.strip_prefix(k.as_str())
                        .is_some_and(|r| r.starts_with('.'))
            })
    });
    if let Some(f @ Value::Object(_)) = m.get_mut("_formatted") {
        apply_displayed(f, displayed);
    }
}

/// [`apply_displayed`] on every hit of a search answer.
pub fn apply_displayed_to_hits(search_answer: &mut Value, displayed: Option<&[String]>) {
    if let Some(Value::Array(hits)) = search_answer.get_mut("hits") {
        for h in hits {
            apply_displayed(h, displayed);
        }
    }
}

/// The body of `PATCH /indexes/{uid}/settings` for the nodes of an index with `shards` shards.
pub fn node_settings_patch(client: &Map<String, Value>, shards: u32) -> Map<String, Value> {
    let mut body = client.clone();
    if let Some(f) = body.get_mut("filterableAttributes") {
        *f = node_filterable(f);
    }
    if let Some(f) = body.get_mut("faceting") {
        *f = node_faceting(f, shards);
    }
    if let Some(f) = body.get_mut("displayedAttributes") {
        *f = node_displayed(f);
    }
    body
}

/// The settings every node of a new index gets: `_miroir_shard` filterable, facet values at least S.
pub fn node_initial_settings(shards: u32) -> Value {
    let mut m = Map::new();
    m.insert("filterableAttributes".into(), node_filterable(&Value::Null));
    m.insert("faceting".into(), node_faceting(&Value::Null, shards));
    Value::Object(m)
}

/// The body of a sub-route update (`PUT`/`PATCH /indexes/{uid}/settings/{segment}`) for the nodes.
pub fn node_setting_value(key: &str, client: &Value, shards: u32) -> Value {
    match key {
        "filterableAttributes" => node_filterable(client),
        "faceting" => node_faceting(client, shards),
        "displayedAttributes" => node_displayed(client),
        _ => client.clone(),
    }
}

/// The settings Meilisearch keeps as sets: their values are reported sorted and deduplicated.
const SET_SETTINGS: [&str; 5] = [
    "sortableAttributes",
    "stopWords",
    "nonSeparatorTokens",
    "separatorTokens",
    "dictionary",
];

/// A settings update's client body as Meilisearch reports it in the task `details`: set-valued settings
/// sorted and deduplicated, `synonyms` keys sorted; everything else as sent.
pub fn settings_details(client: &Map<String, Value>) -> Map<String, Value> {
    let mut out = client.clone();
    for key in SET_SETTINGS {
        if let Some(Value::Array(items)) = out.get_mut(key) {
            if items.iter().all(Value::is_string) {
                let mut names: Vec<String> = items
                    .iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect();
                names.sort();
                names.dedup();
                *items = names.into_iter().map(Value::String).collect();
            }
        }
    }
    if let Some(Value::Object(syn)) = out.get_mut("synonyms") {
        let mut entries: Vec<(String, Value)> = std::mem::take(syn).into_iter().collect();
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        *syn = entries.into_iter().collect();
    }
    out
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
/// except `filterableAttributes`, which becomes `["_miroir_shard"]`, and `faceting`, whose
/// `maxValuesPerFacet` stays at least S, so the nodes never lose what shard restrictions need.
pub fn node_settings_reset(shards: u32) -> (Method, Value) {
    let mut body = Map::new();
    for key in RESETTABLE {
        body.insert(key.to_string(), Value::Null);
    }
    body.insert("filterableAttributes".into(), node_filterable(&Value::Null));
    body.insert("faceting".into(), node_faceting(&Value::Null, shards));
    (Method::Patch, Value::Object(body))
}

/// The node request for a sub-route reset: `DELETE` passes through, except `filterableAttributes` (a
/// `PUT ["_miroir_shard"]`) and `faceting` (a `PATCH` back to the defaults with the S floor). Returns the
/// method and the body.
pub fn node_setting_reset(key: &str, shards: u32) -> (Method, Option<Value>) {
    match key {
        "filterableAttributes" => (Method::Put, Some(node_filterable(&Value::Null))),
        "faceting" => (Method::Patch, Some(node_faceting(&Value::Null, shards))),
        _ => (Method::Delete, None),
    }
}

fn client_faceting(node: &Value, max_values: u64) -> Value {
    let mut v = node.clone();
    if let Some(m) = v.get_mut("maxValuesPerFacet") {
        *m = Value::from(max_values);
    }
    v
}

/// What the proxy keeps of an index's settings in place of the nodes' values.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientSettings {
    /// The client's `faceting.maxValuesPerFacet` (`None`: Meilisearch's default).
    pub max_values_per_facet: Option<u64>,
    /// The client's `displayedAttributes` (`None`: every field).
    pub displayed: Option<Vec<String>>,
}

impl ClientSettings {
    fn displayed_json(&self) -> Value {
        match &self.displayed {
            Some(list) => Value::Array(list.iter().cloned().map(Value::String).collect()),
            None => Value::Array(vec![Value::String("*".into())]),
        }
    }

    fn max_values(&self) -> u64 {
        self.max_values_per_facet
            .unwrap_or(DEFAULT_MAX_VALUES_PER_FACET)
    }
}

/// A node's `GET /indexes/{uid}/settings` answer as the client sees it.
pub fn client_settings(node: &Value, kept: &ClientSettings) -> Value {
    let mut v = node.clone();
    if let Some(f) = v.get_mut("filterableAttributes") {
        *f = client_filterable(f);
    }
    if let Some(f) = v.get_mut("faceting") {
        *f = client_faceting(f, kept.max_values());
    }
    if let Some(f) = v.get_mut("displayedAttributes") {
        *f = kept.displayed_json();
    }
    v
}

/// A node's `GET /indexes/{uid}/settings/{segment}` answer as the client sees it.
pub fn client_setting_value(key: &str, node: &Value, kept: &ClientSettings) -> Value {
    match key {
        "filterableAttributes" => client_filterable(node),
        "faceting" => client_faceting(node, kept.max_values()),
        "displayedAttributes" => kept.displayed_json(),
        _ => node.clone(),
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

/// The sentences in which Meilisearch lists an index's attributes in error messages, and the attribute
/// kind its "none configured" sentence names.
const ATTRIBUTE_LISTS: [(&str, &str); 3] = [
    (
        "Available filterable attribute patterns are: ",
        "filterable",
    ),
    (
        "Available filterable attributes patterns are: ",
        "filterable",
    ),
    (
        "Available facet-searchable attributes patterns are: ",
        "facet-searchable",
    ),
];

/// A node's error message as one node holding everything would word it: `_miroir_shard` removed from the
/// attribute lists Meilisearch quotes (both its forms: `` `a`, `b` `` and `` `a, b` ``), and a list left
/// empty replaced by ``This index does not have configured <kind> attributes.``. Other text is unchanged.
pub fn hide_shard_field_in_message(message: &str) -> String {
    let mut out = message.to_string();
    for (prefix, kind) in ATTRIBUTE_LISTS {
        let Some(start) = out.find(prefix) else {
            continue;
        };
        let list_start = start + prefix.len();
        let Some(len) = out[list_start..].find("`.") else {
            continue;
        };
        let list = &out[list_start..list_start + len + 1];
        let Some(inner) = list.strip_prefix('`').and_then(|l| l.strip_suffix('`')) else {
            continue;
        };
        let each_quoted = inner.contains('`');
        let items: Vec<&str> = if each_quoted {
            inner.split("`, `").collect()
        } else {
            inner.split(", ").collect()
        };
        if !items.contains(&SHARD_FIELD) {
            continue;
        }
        let kept: Vec<&str> = items.into_iter().filter(|i| *i != SHARD_FIELD).collect();
        let sentence_end = list_start + len + 2;
        let replacement = if kept.is_empty() {
            format!("This index does not have configured {kind} attributes.")
        } else if each_quoted {
            format!("{prefix}`{}`.", kept.join("`, `"))
        } else {
            format!("{prefix}`{}`.", kept.join(", "))
        };
        out.replace_range(start..sentence_end, &replacement);
    }
    out
}

/// [`hide_shard_field_in_message`] on the `message` of a Meilisearch error object (a no-op on anything
/// else).
pub fn hide_shard_field_in_error(error: &mut Value) {
    if let Some(Value::String(m)) = error.get_mut("message") {
        *m = hide_shard_field_in_message(m);
    }
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
        let n = node_settings_patch(body.as_object().unwrap(), 16);
        assert_eq!(n["filterableAttributes"], json!(["genre", "_miroir_shard"]));
        assert_eq!(n["rankingRules"], json!(["words"]));
        let n = node_settings_patch(
            json!({"filterableAttributes": null}).as_object().unwrap(),
            16,
        );
        assert_eq!(n["filterableAttributes"], json!(["_miroir_shard"]));
        let untouched = node_settings_patch(json!({"stopWords": ["a"]}).as_object().unwrap(), 16);
        assert!(untouched.get("filterableAttributes").is_none());
        assert_eq!(
            node_setting_value("filterableAttributes", &json!(["_miroir_shard", "a"]), 16),
            json!(["_miroir_shard", "a"]),
            "not added twice"
        );
        assert_eq!(
            node_setting_value("filterableAttributes", &json!(3), 16),
            json!(3),
            "invalid values reach the node, which rejects them"
        );
        assert_eq!(
            node_setting_value("stopWords", &json!(["a"]), 16),
            json!(["a"])
        );
        let pattern = json!([{"attributePatterns": ["_miroir_shard"]}, "genre"]);
        assert_eq!(client_filterable(&pattern), json!(["genre"]));
        assert_eq!(
            client_settings(
                &json!({"filterableAttributes": ["_miroir_shard", "x"], "a": 1, "faceting": {"maxValuesPerFacet": 64}, "displayedAttributes": ["*"]}),
                &ClientSettings {
                    max_values_per_facet: Some(3),
                    displayed: Some(vec!["a".into()])
                }
            ),
            json!({"filterableAttributes": ["x"], "a": 1, "faceting": {"maxValuesPerFacet": 3}, "displayedAttributes": ["a"]})
        );
        assert_eq!(
            client_setting_value(
                "filterableAttributes",
                &json!(["_miroir_shard"]),
                &ClientSettings::default()
            ),
            json!([])
        );
        assert_eq!(
            client_setting_value("rankingRules", &json!(["x"]), &ClientSettings::default()),
            json!(["x"])
        );
    }

    #[test]
    fn nodes_display_everything_and_the_client_list_is_applied() {
        assert_eq!(node_displayed(&json!(["title"])), json!(["*"]));
        assert_eq!(node_displayed(&Value::Null), json!(["*"]));
        assert_eq!(node_displayed(&json!("x")), json!("x"));
        assert_eq!(
            node_setting_value("displayedAttributes", &json!(["a"]), 4),
            json!(["*"])
        );
        assert_eq!(
            node_settings_patch(
                json!({"displayedAttributes": ["a"]}).as_object().unwrap(),
                4
            )["displayedAttributes"],
            json!(["*"])
        );
        assert_eq!(
            client_displayed(&json!(["a", "b"])),
            Some(Some(vec!["a".into(), "b".into()]))
        );
        assert_eq!(client_displayed(&json!(["a", "*"])), Some(None));
        assert_eq!(client_displayed(&Value::Null), Some(None));
        assert_eq!(client_displayed(&json!([1])), None);
        assert_eq!(client_displayed(&json!("a")), None);
        let kept = ClientSettings {
            max_values_per_facet: None,
            displayed: Some(vec!["title".into()]),
        };
        assert_eq!(
            client_setting_value("displayedAttributes", &json!(["*"]), &kept),
            json!(["title"])
        );
        assert_eq!(
            client_setting_value(
                "displayedAttributes",
                &json!(["*"]),
                &ClientSettings::default()
            ),
            json!(["*"])
        );

        let list = vec!["title".to_string(), "meta.year".to_string()];
        let mut hit = json!({
            "id": 1, "title": "t", "sku": "s", "meta": {"year": 1, "x": 2}, "_miroir_shard": 3,
            "_rankingScore": 0.5,
            "_formatted": {"id": "1", "title": "<em>t</em>", "sku": "s"}
        });
        apply_displayed(&mut hit, Some(&list));
        assert_eq!(
            hit,
            json!({"title": "t", "meta": {"year": 1, "x": 2}, "_rankingScore": 0.5,
                   "_formatted": {"title": "<em>t</em>"}})
        );
        let mut all = json!({"id": 1});
        apply_displayed(&mut all, None);
        assert_eq!(all, json!({"id": 1}));
        let mut answer = json!({"hits": [{"id": 1, "title": "t"}]});
        apply_displayed_to_hits(&mut answer, Some(&list));
        assert_eq!(answer["hits"][0], json!({"title": "t"}));
    }

    #[test]
    fn resets_keep_the_shard_field() {
        let (m, body) = node_settings_reset(2000);
        assert_eq!(m, Method::Patch);
        assert_eq!(body["filterableAttributes"], json!(["_miroir_shard"]));
        assert_eq!(body["faceting"]["maxValuesPerFacet"], 2000);
        assert_eq!(body["rankingRules"], Value::Null);
        assert_eq!(
            node_setting_reset("filterableAttributes", 8),
            (Method::Put, Some(json!(["_miroir_shard"])))
        );
        assert_eq!(node_setting_reset("stopWords", 8), (Method::Delete, None));
        assert_eq!(
            node_setting_reset("faceting", 8),
            (
                Method::Patch,
                Some(json!({"maxValuesPerFacet": 1000, "sortFacetValuesBy": null}))
            )
        );
    }

    #[test]
    fn facet_values_stay_at_least_s_on_nodes() {
        assert_eq!(
            node_faceting(
                &json!({"maxValuesPerFacet": 3, "sortFacetValuesBy": {"*": "count"}}),
                16
            ),
            json!({"maxValuesPerFacet": 1000, "sortFacetValuesBy": {"*": "count"}})
        );
        assert_eq!(
            node_faceting(&json!({"maxValuesPerFacet": 5000}), 16),
            json!({"maxValuesPerFacet": 5000})
        );
        assert_eq!(
            node_faceting(&json!({"maxValuesPerFacet": null}), 3000),
            json!({"maxValuesPerFacet": 3000})
        );
        assert_eq!(
            node_faceting(&json!({"sortFacetValuesBy": {}}), 16),
            json!({"sortFacetValuesBy": {}})
        );
        assert_eq!(node_faceting(&json!("x"), 16), json!("x"));
        assert_eq!(
            node_settings_patch(
                json!({"faceting": {"maxValuesPerFacet": 1}})
                    .as_object()
                    .unwrap(),
                4
            )["faceting"]["maxValuesPerFacet"],
            NODE_FACET_VALUES
        );
        assert_eq!(
            node_setting_value("faceting", &json!({"maxValuesPerFacet": 1}), 4)
                ["maxValuesPerFacet"],
            NODE_FACET_VALUES
        );
        assert_eq!(
            node_initial_settings(1500)["faceting"]["maxValuesPerFacet"],
            1500
        );
        assert_eq!(
            node_initial_settings(8)["filterableAttributes"],
            json!(["_miroir_shard"])
        );
        assert_eq!(
            client_max_values_per_facet(&json!({"maxValuesPerFacet": 3})),
            Some(Some(3))
        );
        assert_eq!(
            client_max_values_per_facet(&json!({"maxValuesPerFacet": null})),
            Some(None)
        );
        assert_eq!(client_max_values_per_facet(&json!(null)), Some(None));
        assert_eq!(
            client_max_values_per_facet(&json!({"sortFacetValuesBy": {}})),
            None
        );
        assert_eq!(
            client_max_values_per_facet(&json!({"maxValuesPerFacet": "x"})),
            None
        );
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
    fn error_messages_never_name_the_shard_field() {
        let cases = [
            (
                "Index `m`: Attribute `t` is not filterable. Available filterable attribute patterns are: `_miroir_shard`, `genre`.\n1:2 t = x",
                "Index `m`: Attribute `t` is not filterable. Available filterable attribute patterns are: `genre`.\n1:2 t = x",
            ),
            (
                "Attribute `genre` is not filterable. Available filterable attribute patterns are: `_miroir_shard`.\n1:6 genre = drama",
                "Attribute `genre` is not filterable. This index does not have configured filterable attributes.\n1:6 genre = drama",
            ),
            (
                "Invalid facet distribution: Pattern `o` is not filterable. Available filterable attributes patterns are: `_miroir_shard, genre, year`.",
                "Invalid facet distribution: Pattern `o` is not filterable. Available filterable attributes patterns are: `genre, year`.",
            ),
            (
                "Attribute `genre` is not facet-searchable. Available facet-searchable attributes patterns are: `_miroir_shard`. To make it facet-searchable add it to the `filterableAttributes` index settings.",
                "Attribute `genre` is not facet-searchable. This index does not have configured facet-searchable attributes. To make it facet-searchable add it to the `filterableAttributes` index settings.",
            ),
            (
                "Index `m`: Attribute `t` is not sortable. Available sortable attributes are: `rating, year`.",
                "Index `m`: Attribute `t` is not sortable. Available sortable attributes are: `rating, year`.",
            ),
            (
                "Available filterable attribute patterns are: `genre`, `year`.",
                "Available filterable attribute patterns are: `genre`, `year`.",
            ),
            ("Available filterable attribute patterns are: no list", "Available filterable attribute patterns are: no list"),
        ];
        for (node, client) in cases {
            assert_eq!(hide_shard_field_in_message(node), client);
        }
        let mut e = json!({"message": cases[1].0, "code": "invalid_search_filter"});
        hide_shard_field_in_error(&mut e);
        assert_eq!(e["message"], cases[1].1);
        let mut other = json!([1]);
        hide_shard_field_in_error(&mut other);
        assert_eq!(other, json!([1]));
    }

    #[test]
    fn details_report_sets_sorted() {
        let d = settings_details(
            json!({
                "sortableAttributes": ["year", "rating", "year"],
                "stopWords": ["the", "a"],
                "searchableAttributes": ["title", "overview"],
                "synonyms": {"b": ["x"], "a": ["y"]},
                "dictionary": [1, "a"]
            })
            .as_object()
            .unwrap(),
        );
        assert_eq!(d["sortableAttributes"], json!(["rating", "year"]));
        assert_eq!(d["stopWords"], json!(["a", "the"]));
        assert_eq!(
            d["searchableAttributes"],
            json!(["title", "overview"]),
            "order matters there"
        );
        assert_eq!(
            d["synonyms"]
                .as_object()
                .unwrap()
                .keys()
                .collect::<Vec<_>>(),
            vec!["a", "b"]
        );
        assert_eq!(
            d["dictionary"],
            json!([1, "a"]),
            "invalid values are left for the node to refuse"
        );
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
