//! Index statistics over a sharded index.
//!
//! A node holds the shards of several covering-set members (RF > 1), so its own `numberOfDocuments` counts
//! replicas another node also counts. The proxy therefore runs a [`super::cover::CoverRead`] of
//! [`count_request`] (a placeholder search restricted to the assigned shards with a facet distribution on
//! `_miroir_shard`, which counts exactly — totals are capped by `maxTotalHits`, facet counts are not), reads
//! each answering node's own `/stats`, and merges with [`merge_index_stats`].
//!
//! Invariants: `numberOfDocuments` is exact (each shard counted once, by its facet count); sizes and
//! `fieldDistribution` are exact for nodes answering for everything they hold and scaled by the node's share
//! of documents otherwise (an estimate, as Meilisearch's sizes are); `_miroir_shard` never appears.

use crate::SHARD_FIELD;
use serde_json::{json, Map, Value};

/// The body of the per-node counting search.
pub fn count_request() -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("q".into(), Value::String(String::new()));
    m.insert("limit".into(), Value::from(0));
    m.insert("facets".into(), json!([SHARD_FIELD]));
    m
}

/// The documents a counting-search answer stands for: the sum of its `_miroir_shard` facet counts.
pub fn counted_documents(search_answer: &Value) -> u64 {
    search_answer
        .pointer(&format!("/facetDistribution/{SHARD_FIELD}"))
        .and_then(Value::as_object)
        .map(|m| m.values().filter_map(Value::as_u64).sum())
        .unwrap_or(0)
}

/// One node's contribution: the documents it answers for and its own `/stats` answer.
#[derive(Debug, Clone, PartialEq)]
pub struct StatsPart {
    /// Documents of the shards assigned to this node ([`counted_documents`]).
    pub documents: u64,
    /// Whether the node answers for every shard it holds (its own stats are then exact for its part).
    pub whole_node: bool,
    /// The node's `GET /indexes/{uid}/stats` body.
    pub node_stats: Value,
}

fn scaled(v: u64, part: &StatsPart, node_docs: u64) -> u64 {
    if part.whole_node || node_docs == 0 {
        return if node_docs == 0 && !part.whole_node {
            0
        } else {
            v
        };
    }
    ((v as u128 * part.documents as u128 + node_docs as u128 / 2) / node_docs as u128) as u64
}

/// Merges the parts into the client's `GET /indexes/{uid}/stats` body.
pub fn merge_index_stats(parts: &[StatsPart]) -> Value {
    let mut documents = 0u64;
    let mut raw = 0u64;
    let mut embeddings = 0u64;
    let mut embedded = 0u64;
    let mut indexing = false;
    let mut fields: Map<String, Value> = Map::new();
    for part in parts {
        let s = &part.node_stats;
        let node_docs = s
            .get("numberOfDocuments")
            .and_then(Value::as_u64)
            .unwrap_or(0);
        let get = |k: &str| s.get(k).and_then(Value::as_u64).unwrap_or(0);
        documents += part.documents;
        raw += scaled(get("rawDocumentDbSize"), part, node_docs);
        embeddings += scaled(get("numberOfEmbeddings"), part, node_docs);
        embedded += scaled(get("numberOfEmbeddedDocuments"), part, node_docs);
        indexing |= s
            .get("isIndexing")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        if let Some(Value::Object(fd)) = s.get("fieldDistribution") {
            for (field, n) in fd {
                if field.starts_with(crate::RESERVED_PREFIX) {
                    continue;
                }
                let add = scaled(n.as_u64().unwrap_or(0), part, node_docs);
                let prev = fields.get(field).and_then(Value::as_u64).unwrap_or(0);
                fields.insert(field.clone(), Value::from(prev + add));
            }
        }
    }
    let mut sorted: Vec<(String, Value)> = fields.into_iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    json!({
        "numberOfDocuments": documents,
        "rawDocumentDbSize": raw,
        "avgDocumentSize": raw.checked_div(documents).unwrap_or(0),
        "isIndexing": indexing,
        "numberOfEmbeddings": embeddings,
        "numberOfEmbeddedDocuments": embedded,
        "fieldDistribution": Value::Object(sorted.into_iter().collect()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_come_from_the_shard_facet() {
        assert_eq!(
            counted_documents(&json!({"facetDistribution": {"_miroir_shard": {"1": 3, "4": 2}}})),
            5
        );
        assert_eq!(counted_documents(&json!({"hits": []})), 0);
        assert_eq!(count_request()["facets"], json!(["_miroir_shard"]));
    }

    #[test]
    fn merge_is_exact_for_whole_nodes_and_scaled_otherwise() {
        let parts = vec![
            StatsPart {
                documents: 10,
                whole_node: true,
                node_stats: json!({"numberOfDocuments": 10, "rawDocumentDbSize": 1000, "isIndexing": false,
                    "fieldDistribution": {"id": 10, "title": 8, "_miroir_shard": 10}}),
            },
            StatsPart {
                documents: 5,
                whole_node: false,
                node_stats: json!({"numberOfDocuments": 20, "rawDocumentDbSize": 2000, "isIndexing": true,
                    "fieldDistribution": {"id": 20, "genre": 4}}),
            },
        ];
        let s = merge_index_stats(&parts);
        assert_eq!(s["numberOfDocuments"], 15);
        assert_eq!(s["rawDocumentDbSize"], 1500);
        assert_eq!(s["avgDocumentSize"], 100);
        assert_eq!(s["isIndexing"], true);
        assert_eq!(
            s["fieldDistribution"],
            json!({"genre": 1, "id": 15, "title": 8})
        );
        let empty = merge_index_stats(&[StatsPart {
            documents: 0,
            whole_node: false,
            node_stats: json!({"numberOfDocuments": 0, "fieldDistribution": {"a": 0}}),
        }]);
        assert_eq!(empty["numberOfDocuments"], 0);
        assert_eq!(empty["avgDocumentSize"], 0);
        assert_eq!(merge_index_stats(&[])["fieldDistribution"], json!({}));
    }
}
