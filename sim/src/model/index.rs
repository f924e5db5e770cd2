//! One index: its documents (keyed by an internal id, like milli's docids), its primary key and its
//! settings.
//!
//! States: an index exists from the moment its creation task (or first document task) succeeds until
//! its deletion task succeeds. Transitions are only applied by tasks (see `tasks.rs`).
//! Invariants: `external` and `docs` describe the same set of documents; internal ids are the smallest
//! free integers (deleted ids are reused, as milli does), so listing documents in internal id order
//! reproduces Meilisearch's order; a replaced document keeps its internal id.

use std::collections::BTreeMap;

use miroir_core::{MeiliError, Millis};
use serde_json::{json, Map, Value};

use super::filter::{self, ParsedFilter};
use super::payload::{self, Document};
use super::settings::Settings;
use super::time::rfc3339;

/// An index of the node model.
#[derive(Debug, Clone, PartialEq)]
pub struct Index {
    /// The index uid.
    pub uid: String,
    /// The primary key, once known.
    pub primary_key: Option<String>,
    /// Creation time.
    pub created_at: Millis,
    /// Last update time.
    pub updated_at: Millis,
    /// Settings.
    pub settings: Settings,
    /// Documents by internal id.
    pub docs: BTreeMap<u32, Document>,
    /// External id (canonical string) to internal id.
    pub external: BTreeMap<String, u32>,
}

impl Index {
    /// A new, empty index.
    pub fn new(uid: &str, primary_key: Option<String>, now: Millis) -> Self {
        Index {
            uid: uid.to_string(),
            primary_key,
            created_at: now,
            updated_at: now,
            settings: Settings::default(),
            docs: BTreeMap::new(),
            external: BTreeMap::new(),
        }
    }

    /// The index object of `GET /indexes/{uid}`.
    pub fn to_json(&self) -> Value {
        json!({
            "uid": self.uid,
            "createdAt": rfc3339(self.created_at),
            "updatedAt": rfc3339(self.updated_at),
            "primaryKey": self.primary_key,
        })
    }

    fn next_internal_id(&self) -> u32 {
        let mut expected = 0u32;
        for k in self.docs.keys() {
            if *k != expected {
                return expected;
            }
            expected += 1;
        }
        expected
    }

    /// Adds or updates documents (`merge` = PUT semantics). Fails atomically on the first invalid
    /// document. Returns the number of documents indexed.
    pub fn add_documents(
        &mut self,
        docs: &[Document],
        pk_param: Option<&str>,
        merge: bool,
        now: Millis,
    ) -> Result<u64, MeiliError> {
        let pk = match (&self.primary_key, pk_param) {
            (Some(existing), Some(p)) if existing != p => {
                return Err(MeiliError::invalid(
                    400,
                    "index_primary_key_already_exists",
                    format!("Index already has a primary key: `{existing}`."),
                ))
            }
            (Some(existing), _) => existing.clone(),
            (None, Some(p)) => p.to_string(),
            (None, None) => {
                if docs.is_empty() {
                    return Ok(0);
                }
                payload::infer_primary_key(docs.first())?
            }
        };
        // Validate everything first: a failing task changes nothing.
        let mut ids = Vec::with_capacity(docs.len());
        for d in docs {
            let v = filter::values_at(d, &pk)
                .and_then(|v| v.first().copied().cloned())
                .or_else(|| d.get(&pk).cloned());
            match v {
                None => return Err(payload::missing_id(&pk, d)),
                Some(v) => ids.push(payload::document_id(&v)?),
            }
        }
        if self.primary_key.is_none() {
            self.primary_key = Some(pk);
        }
        for (d, id) in docs.iter().zip(ids) {
            match self.external.get(&id).copied() {
                Some(internal) => {
                    if merge {
                        if let Some(existing) = self.docs.get_mut(&internal) {
                            for (k, v) in d {
                                existing.insert(k.clone(), v.clone());
                            }
                        }
                    } else {
                        self.docs.insert(internal, d.clone());
                    }
                }
                None => {
                    let internal = self.next_internal_id();
                    self.docs.insert(internal, d.clone());
                    self.external.insert(id, internal);
                }
            }
        }
        self.updated_at = now;
        Ok(docs.len() as u64)
    }

    /// Deletes documents by external id; returns how many existed.
    pub fn delete_ids(&mut self, ids: &[String], now: Millis) -> u64 {
        let mut n = 0;
        for id in ids {
            if let Some(internal) = self.external.remove(id) {
                self.docs.remove(&internal);
                n += 1;
            }
        }
        self.updated_at = now;
        n
    }

    /// Deletes the documents matching a filter; returns how many.
    pub fn delete_matching(&mut self, f: &ParsedFilter, now: Millis) -> u64 {
        let ids: Vec<String> = self
            .external
            .iter()
            .filter(|(_, i)| self.docs.get(i).is_some_and(|d| f.matches(d)))
            .map(|(e, _)| e.clone())
            .collect();
        self.delete_ids(&ids, now)
    }

    /// Removes every document; returns how many there were.
    pub fn clear(&mut self, now: Millis) -> u64 {
        let n = self.docs.len() as u64;
        self.docs.clear();
        self.external.clear();
        self.updated_at = now;
        n
    }

    /// A document by external id.
    pub fn get(&self, id: &str) -> Option<&Document> {
        self.external.get(id).and_then(|i| self.docs.get(i))
    }

    /// The error for a filter naming a non-filterable attribute. `prefixed` adds the
    /// ``Index `uid`: `` prefix milli errors carry (search and delete-by-filter tasks, not the documents
    /// routes); `rebuild` renders the condition as `"attr" op "value"` as the search route does.
    pub fn not_filterable_error(
        &self,
        code: &str,
        nf: &filter::NotFilterable,
        rebuild: bool,
        prefixed: bool,
    ) -> MeiliError {
        let patterns = {
            let mut p = self.settings.filterable();
            p.sort();
            p
        };
        let mut head = format!("Attribute `{}` is not filterable.", nf.attr);
        if patterns.is_empty() {
            head.push_str(" This index does not have configured filterable attributes.");
        } else {
            head.push_str(&format!(
                " Available filterable attribute patterns are: {}.",
                patterns
                    .iter()
                    .map(|p| format!("`{p}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        if prefixed {
            head = format!("Index `{}`: {head}", self.uid);
        }
        let tail = if rebuild {
            let text = match &nf.operand {
                Some(o) => format!("\"{}\" {} \"{}\"", nf.attr, nf.op_text, o),
                None => format!("\"{}\" {}", nf.attr, nf.op_text),
            };
            format!("2:{} {text}", 2 + nf.attr.chars().count())
        } else {
            format!("{}:{} {}", nf.start + 1, nf.start + 1 + nf.len, nf.input)
        };
        MeiliError::invalid(400, code, format!("{head}\n{tail}"))
    }

    /// The field distribution: how many documents hold each top-level field.
    pub fn field_distribution(&self) -> Map<String, Value> {
        let mut dist: BTreeMap<String, u64> = BTreeMap::new();
        for d in self.docs.values() {
            for k in d.keys() {
                *dist.entry(k.clone()).or_default() += 1;
            }
        }
        dist.into_iter().map(|(k, v)| (k, Value::from(v))).collect()
    }

    /// The stored size of a document as milli counts it: each field costs 8 bytes of obkv framing plus
    /// its compact JSON value.
    pub fn stored_size(doc: &Document) -> u64 {
        doc.values().map(|v| 8 + v.to_string().len() as u64).sum()
    }

    /// The body of `GET /indexes/{uid}/stats`. `avgDocumentSize` follows milli's accounting;
    /// `rawDocumentDbSize` is an estimate (4 KiB pages holding the stored documents), since the model
    /// has no LMDB.
    pub fn stats(&self, is_indexing: bool) -> Value {
        let n = self.docs.len() as u64;
        let total: u64 = self.docs.values().map(Self::stored_size).sum();
        let pages = if n == 0 { 0 } else { total.div_ceil(4096) + 1 };
        json!({
            "numberOfDocuments": n,
            "rawDocumentDbSize": pages * 4096,
            "avgDocumentSize": total.checked_div(n).unwrap_or(0),
            "isIndexing": is_indexing,
            "numberOfEmbeddings": 0,
            "numberOfEmbeddedDocuments": 0,
            "fieldDistribution": self.field_distribution(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn docs(v: Value) -> Vec<Document> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_object().cloned().unwrap())
            .collect()
    }

    #[test]
    fn ids_are_reused_and_replacements_keep_them() {
        let mut i = Index::new("x", Some("id".into()), 0);
        i.add_documents(
            &docs(json!([{"id": 1}, {"id": 2}, {"id": 3}])),
            None,
            false,
            1,
        )
        .unwrap();
        assert_eq!(i.delete_ids(&["2".into(), "9".into()], 2), 1);
        i.add_documents(&docs(json!([{"id": "4"}])), None, false, 3)
            .unwrap();
        assert_eq!(i.external["4"], 1);
        i.add_documents(&docs(json!([{"id": "1", "t": "x"}])), None, false, 3)
            .unwrap();
        assert_eq!(i.external["1"], 0);
        assert_eq!(i.get("1").unwrap()["t"], json!("x"));
        i.add_documents(&docs(json!([{"id": 1, "u": 2}])), None, true, 4)
            .unwrap();
        assert_eq!(
            Value::Object(i.get("1").unwrap().clone()),
            json!({"id": 1, "t": "x", "u": 2})
        );
        assert_eq!(i.clear(5), 3);
    }

    #[test]
    fn primary_key_rules() {
        let mut i = Index::new("x", None, 0);
        assert_eq!(i.add_documents(&[], None, false, 1).unwrap(), 0);
        assert!(i.primary_key.is_none());
        let e = i
            .add_documents(&docs(json!([{"title": "x"}])), None, false, 1)
            .unwrap_err();
        assert_eq!(e.code, "index_primary_key_no_candidate_found");
        i.add_documents(&docs(json!([{"sku": "a"}])), Some("sku"), false, 1)
            .unwrap();
        let e = i
            .add_documents(&docs(json!([{"other": "a"}])), Some("other"), false, 1)
            .unwrap_err();
        assert_eq!(e.message, "Index already has a primary key: `sku`.");
        let e = i
            .add_documents(&docs(json!([{"sku": "ok"}, {"sku": 1.5}])), None, false, 1)
            .unwrap_err();
        assert_eq!(e.code, "invalid_document_id");
        assert_eq!(i.docs.len(), 1, "a failed batch changes nothing");
        let e = i
            .add_documents(&docs(json!([{"nope": 1}])), None, false, 1)
            .unwrap_err();
        assert_eq!(e.code, "missing_document_id");
        let s = i.stats(false);
        assert_eq!(s["numberOfDocuments"], json!(1));
        assert_eq!(s["fieldDistribution"], json!({"sku": 1}));
    }
}
