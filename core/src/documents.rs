//! Document batches: parsing client payloads exactly as Meilisearch does, resolving the primary key,
//! validating document ids, and splitting a batch into per-node batches.
//!
//! This module is a pipeline of pure functions, not a state machine:
//!
//! ```text
//! Content-Type + csvDelimiter ──payload_format──► PayloadFormat
//! body bytes ──parse_documents──► Vec<document>           (request-time errors: 4xx/5xx answered at once)
//! index key + ?primaryKey + first document ──resolve_primary_key──► key  (task errors)
//! documents + key + Placement ──plan_batch──► per-node batches            (task errors)
//! delete-batch body ──parse_delete_ids──► ids   (request-time errors)
//! ids to delete + Placement ──plan_delete_ids──► per-node id lists
//! ```
//!
//! # Two kinds of errors, as in Meilisearch
//! - **Request errors** (content type, csv delimiter, missing or malformed payload) are answered
//!   immediately by Meilisearch, before any task exists: the caller answers them with `status`.
//! - **Task errors** (primary key resolution, invalid or missing document id) are detected by Meilisearch
//!   while *processing* the task: the request gets `202 Accepted` and the task then fails with the error
//!   (its `status` field is only informative). [`resolve_primary_key`], [`document_id`] and [`plan_batch`]
//!   return such errors; the caller records them on a failed Miroir task instead of sending the batch.
//!   Miroir's reserved-field error ([`crate::MeiliError::reserved_field`]) is produced at the same stage.
//!
//! # Invariants of a [`BatchPlan`]
//! - All or nothing: every document is validated before anything is planned; the first invalid document
//!   (in payload order) fails the whole batch, as it fails a Meilisearch task, so nothing is partially
//!   applied.
//! - Every document gets `"_miroir_shard": <its shard>` and is sent to every owner of its shard, in every
//!   group (RF·RG nodes).
//! - Each node batch keeps payload order, so duplicate ids in one batch resolve (last wins / merge) as on a
//!   single node.
//!
//! # Fidelity notes
//! Payloads are parsed with the same crates and in the same way as Meilisearch 1.50 (`serde_json`
//! raw-value streaming, the `csv` crate), so error positions and texts match. Two Meilisearch quirks are
//! mirrored on purpose: content after a closing `]` of a JSON array is ignored, and a JSON array or
//! NDJSON line holding a non-object value yields a `500 internal` error (Meilisearch maps that I/O-flavoured
//! error to `internal`). Numbers are held as `serde_json` values: a number that is not an `i64`/`u64` is
//! re-serialised as the nearest `f64` (Meilisearch keeps the original text in the stored document).

use crate::routing::{canonical_id, Placement};
use crate::topology::{NodeId, ShardId};
use crate::{MeiliError, RESERVED_PREFIX, SHARD_FIELD};
use serde::de::{Deserializer as _, SeqAccess, Visitor};
use serde_json::error::Category;
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::fmt;

/// A document as received: field order preserved.
pub type Document = Map<String, Value>;

/// The Content-Type values Meilisearch accepts for documents, in its order.
pub const ACCEPTED_CONTENT_TYPES: [&str; 3] =
    ["application/json", "application/x-ndjson", "text/csv"];

/// The format of a documents payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayloadFormat {
    /// `application/json`: an array of objects or a single object.
    Json,
    /// `application/x-ndjson`: one object per line.
    Ndjson,
    /// `text/csv`, with its column delimiter (`,` by default).
    Csv {
        /// The ASCII delimiter byte.
        delimiter: u8,
    },
}

impl fmt::Display for PayloadFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PayloadFormat::Json => "json",
            PayloadFormat::Ndjson => "ndjson",
            PayloadFormat::Csv { .. } => "csv",
        })
    }
}

// ----- error constructors (Meilisearch's exact codes, statuses and messages) -----

fn accepted_list() -> String {
    ACCEPTED_CONTENT_TYPES
        .iter()
        .map(|c| format!("`{c}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `missing_content_type` (415): the request has no Content-Type header.
pub fn missing_content_type() -> MeiliError {
    MeiliError::invalid(
        415,
        "missing_content_type",
        format!(
            "A Content-Type header is missing. Accepted values for the Content-Type header are: {}",
            accepted_list()
        ),
    )
}

/// `invalid_content_type` (415): an unsupported or unparsable Content-Type.
pub fn invalid_content_type(content_type: &str) -> MeiliError {
    MeiliError::invalid(
        415,
        "invalid_content_type",
        format!(
            "The Content-Type `{content_type}` is invalid. Accepted values for the Content-Type header are: {}",
            accepted_list()
        ),
    )
}

/// `invalid_content_type` (415): a csv delimiter was given with a non-CSV Content-Type.
pub fn csv_delimiter_with_wrong_content_type(content_type: &str) -> MeiliError {
    MeiliError::invalid(
        415,
        "invalid_content_type",
        format!(
            "The Content-Type `{content_type}` does not support the use of a csv delimiter. The csv delimiter can only be used with the Content-Type `text/csv`."
        ),
    )
}

/// `missing_payload` (400): an empty body.
pub fn missing_payload(format: PayloadFormat) -> MeiliError {
    MeiliError::invalid(
        400,
        "missing_payload",
        format!("A {format} payload is missing."),
    )
}

/// `invalid_document_id` (a task error): the primary key value is not a valid id.
pub fn invalid_document_id(value: &Value) -> MeiliError {
    MeiliError::invalid(
        400,
        "invalid_document_id",
        format!(
            "Document identifier `{value}` is invalid. A document identifier can be of type integer or string, only composed of alphanumeric characters (a-z A-Z 0-9), hyphens (-) and underscores (_), and can not be more than 511 bytes."
        ),
    )
}

/// `missing_document_id` (a task error): the document has no value for the primary key.
pub fn missing_document_id(primary_key: &str, doc: &Document) -> MeiliError {
    MeiliError::invalid(
        400,
        "missing_document_id",
        format!(
            "Document doesn't have a `{primary_key}` attribute: `{}`.",
            Value::Object(doc.clone())
        ),
    )
}

/// `invalid_document_id` (a task error): a nested primary key matches more than one value.
pub fn too_many_document_ids(primary_key: &str, doc: &Document) -> MeiliError {
    MeiliError::invalid(
        400,
        "invalid_document_id",
        format!(
            "Document have too many matching `{primary_key}` attribute: `{}`.",
            Value::Object(doc.clone())
        ),
    )
}

/// `index_primary_key_already_exists` (a task error).
pub fn primary_key_already_exists(index_key: &str) -> MeiliError {
    MeiliError::invalid(
        400,
        "index_primary_key_already_exists",
        format!("Index already has a primary key: `{index_key}`."),
    )
}

/// `index_primary_key_no_candidate_found` (a task error).
pub fn primary_key_no_candidate() -> MeiliError {
    MeiliError::invalid(
        400,
        "index_primary_key_no_candidate_found",
        "The primary key inference failed as the engine did not find any field ending with `id` in its name. Please specify the primary key manually using the `primaryKey` query parameter.",
    )
}

/// `index_primary_key_multiple_candidates_found` (a task error). `candidates` must be sorted and hold at
/// least two names; like Meilisearch, the message counts them all but names the first two.
pub fn primary_key_multiple_candidates(candidates: &[&str]) -> MeiliError {
    let first = candidates.first().copied().unwrap_or_default();
    let second = candidates.get(1).copied().unwrap_or_default();
    MeiliError::invalid(
        400,
        "index_primary_key_multiple_candidates_found",
        format!(
            "The primary key inference failed as the engine found {} fields ending with `id` in their names: '{first}' and '{second}'. Please specify the primary key manually using the `primaryKey` query parameter.",
            candidates.len()
        ),
    )
}

fn invalid_csv_delimiter(message: String) -> MeiliError {
    MeiliError::invalid(400, "invalid_document_csv_delimiter", message)
}

fn malformed(message: String) -> MeiliError {
    MeiliError::invalid(400, "malformed_payload", message)
}

/// Meilisearch truncates long JSON error messages to their first 50 and last 85 bytes around `...`
/// (on character boundaries here, where Meilisearch could split a character).
fn truncate_json_message(mut message: String) -> String {
    const PREFIX: usize = 50;
    const SUFFIX: usize = 85;
    const ELLIPSIS: &str = "...";
    if message.len() > PREFIX + SUFFIX + ELLIPSIS.len() {
        let mut start = PREFIX;
        while !message.is_char_boundary(start) {
            start -= 1;
        }
        let mut end = message.len() - SUFFIX;
        while !message.is_char_boundary(end) {
            end += 1;
        }
        message.replace_range(start..end, ELLIPSIS);
    }
    message
}

/// A JSON/NDJSON error as Meilisearch reports it when it reads a payload: type errors (a non-object where
/// a document is expected) surface as `internal` 500s, everything else as `malformed_payload`.
fn json_read_error(format: PayloadFormat, e: serde_json::Error) -> MeiliError {
    if e.classify() == Category::Data {
        MeiliError::internal(e.to_string())
    } else {
        json_malformed(format, e)
    }
}

/// A JSON error wrapped in Meilisearch's `malformed_payload` message.
fn json_malformed(format: PayloadFormat, e: serde_json::Error) -> MeiliError {
    let detail = if e.classify() == Category::Data {
        "data are neither an object nor a list of objects".to_string()
    } else {
        truncate_json_message(e.to_string())
    };
    malformed(format!(
        "The `{format}` payload provided is malformed. `Couldn't serialize document value: {detail}`."
    ))
}

fn csv_error(format: PayloadFormat, e: csv::Error) -> MeiliError {
    if e.is_io_error() {
        MeiliError::internal(e.to_string())
    } else {
        malformed(format!(
            "The `{format}` payload provided is malformed: `{e}`."
        ))
    }
}

// ----- request-time checks -----

/// Validates the `csvDelimiter` query parameter (already percent-decoded): exactly one ASCII character.
pub fn parse_csv_delimiter(raw: &str) -> Result<u8, MeiliError> {
    let mut chars = raw.chars();
    match (chars.next(), chars.next()) {
        (None, _) => Err(invalid_csv_delimiter(
            "Invalid value in parameter `csvDelimiter`: expected a string of one character, but found an empty string".to_string(),
        )),
        (Some(c), None) if c.is_ascii() => Ok(c as u8),
        (Some(c), None) => Err(invalid_csv_delimiter(format!(
            "csv delimiter must be an ascii character. Found: `{c}`"
        ))),
        (Some(_), Some(_)) => Err(invalid_csv_delimiter(format!(
            "Invalid value in parameter `csvDelimiter`: expected a string of one character, but found the following string of {} characters: `{raw}`",
            raw.chars().count()
        ))),
    }
}

fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(is_token_byte)
}

/// Parses a media type the way Meilisearch's HTTP layer (the `mime` crate) does, closely enough for
/// routing decisions: `type/subtype` tokens (case-insensitive, returned lowercased) followed by optional
/// `; name=value` parameters (token or quoted value). `None` when it does not parse.
fn parse_mime(content_type: &str) -> Option<(String, String)> {
    let mut parts = content_type.split(';');
    let essence = parts.next()?.trim();
    let (ty, sub) = essence.split_once('/')?;
    if !is_token(ty) || !is_token(sub) {
        return None;
    }
    for param in parts {
        let param = param.trim();
        if param.is_empty() {
            continue;
        }
        let (name, value) = param.split_once('=')?;
        let value = value.trim();
        let quoted = value.len() >= 2 && value.starts_with('"') && value.ends_with('"');
        if !is_token(name.trim()) || !(quoted || is_token(value)) {
            return None;
        }
    }
    Some((ty.to_ascii_lowercase(), sub.to_ascii_lowercase()))
}

/// The payload format of a documents request, from its Content-Type header (parameters such as
/// `; charset=utf-8` allowed) and its validated `csvDelimiter` parameter, with Meilisearch's errors.
pub fn payload_format(
    content_type: Option<&str>,
    csv_delimiter: Option<u8>,
) -> Result<PayloadFormat, MeiliError> {
    let Some(raw) = content_type else {
        return Err(missing_content_type());
    };
    let Some((ty, sub)) = parse_mime(raw) else {
        return Err(invalid_content_type(raw));
    };
    match (ty.as_str(), sub.as_str(), csv_delimiter) {
        ("application", "json", None) => Ok(PayloadFormat::Json),
        ("application", "x-ndjson", None) => Ok(PayloadFormat::Ndjson),
        ("text", "csv", None) => Ok(PayloadFormat::Csv { delimiter: b',' }),
        ("text", "csv", Some(delimiter)) => Ok(PayloadFormat::Csv { delimiter }),
        ("application", "json", Some(_)) => {
            Err(csv_delimiter_with_wrong_content_type("application/json"))
        }
        ("application", "x-ndjson", Some(_)) => Err(csv_delimiter_with_wrong_content_type(
            "application/x-ndjson",
        )),
        _ => Err(invalid_content_type(&format!("{ty}/{sub}"))),
    }
}

/// Parses a documents payload. An empty body is `missing_payload`; see the module documentation for the
/// exact error behaviour of each format.
pub fn parse_documents(body: &[u8], format: PayloadFormat) -> Result<Vec<Document>, MeiliError> {
    if body.is_empty() {
        return Err(missing_payload(format));
    }
    match format {
        PayloadFormat::Json => parse_json(body),
        PayloadFormat::Ndjson => parse_ndjson(body),
        PayloadFormat::Csv { delimiter } => parse_csv(body, delimiter),
    }
}

/// [`payload_format`] then [`parse_documents`]: the whole request-time handling of a documents body.
pub fn parse_request(
    content_type: Option<&str>,
    csv_delimiter: Option<u8>,
    body: &[u8],
) -> Result<Vec<Document>, MeiliError> {
    let format = payload_format(content_type, csv_delimiter)?;
    parse_documents(body, format)
}

/// Streams the elements of a JSON array as raw values and turns each into a document, stopping at the
/// first element that is not an object (as Meilisearch's `array_each`).
struct ArrayOfDocuments<'a>(&'a mut Vec<Document>);

impl<'de> Visitor<'de> for ArrayOfDocuments<'_> {
    type Value = Result<(), serde_json::Error>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a nonempty sequence")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while let Some(raw) = seq.next_element::<&'de RawValue>()? {
            match serde_json::from_str::<Document>(raw.get()) {
                Ok(doc) => self.0.push(doc),
                Err(e) => return Ok(Err(e)),
            }
        }
        Ok(Ok(()))
    }
}

fn parse_json(body: &[u8]) -> Result<Vec<Document>, MeiliError> {
    let mut docs = Vec::new();
    let mut de = serde_json::Deserializer::from_slice(body);
    match de.deserialize_seq(ArrayOfDocuments(&mut docs)) {
        Ok(Ok(())) => Ok(docs),
        Ok(Err(e)) => Err(json_read_error(PayloadFormat::Json, e)),
        Err(e) if e.classify() != Category::Data => Err(json_read_error(PayloadFormat::Json, e)),
        Err(_) => {
            // Not an array: a single object, or nothing Meilisearch accepts.
            drop(docs);
            serde_json::from_slice::<Document>(body)
                .map(|doc| vec![doc])
                .map_err(|e| json_malformed(PayloadFormat::Json, e))
        }
    }
}

fn parse_ndjson(body: &[u8]) -> Result<Vec<Document>, MeiliError> {
    let mut docs = Vec::new();
    for item in serde_json::Deserializer::from_slice(body).into_iter::<&RawValue>() {
        let raw = item.map_err(|e| json_read_error(PayloadFormat::Ndjson, e))?;
        let doc = serde_json::from_str::<Document>(raw.get())
            .map_err(|e| json_read_error(PayloadFormat::Ndjson, e))?;
        docs.push(doc);
    }
    Ok(docs)
}

#[derive(Clone, Copy)]
enum CsvType {
    String,
    Boolean,
    Number,
}

/// `name:number`, `name:boolean`, `name:string`; anything else is an untyped (string) column named by the
/// whole header. Only the last `:` is considered.
fn csv_header(header: &str) -> (&str, CsvType) {
    match header.rsplit_once(':') {
        Some((name, "string")) => (name, CsvType::String),
        Some((name, "boolean")) => (name, CsvType::Boolean),
        Some((name, "number")) => (name, CsvType::Number),
        _ => (header, CsvType::String),
    }
}

fn parse_csv(body: &[u8], delimiter: u8) -> Result<Vec<Document>, MeiliError> {
    let format = PayloadFormat::Csv { delimiter };
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .from_reader(body);
    let headers = reader.headers().map_err(|e| csv_error(format, e))?.clone();
    let columns: Vec<(&str, CsvType)> = headers.iter().map(csv_header).collect();
    // Duplicate column names collapse into one field (the last column wins), as in Meilisearch.
    let template: Document = columns
        .iter()
        .map(|(name, _)| ((*name).to_string(), Value::Null))
        .collect();
    let mut docs = Vec::new();
    let mut record = csv::StringRecord::new();
    let mut line = 0usize;
    while reader
        .read_record(&mut record)
        .map_err(|e| csv_error(format, e))?
    {
        line += 1;
        let mut doc = template.clone();
        for (i, (name, ty)) in columns.iter().enumerate() {
            let raw = record.get(i).unwrap_or_default();
            let trimmed = raw.trim();
            let value = match ty {
                CsvType::Number if trimmed.is_empty() => Value::Null,
                CsvType::Number => match trimmed.parse::<i64>() {
                    Ok(int) => Value::from(int),
                    Err(_) => match trimmed.parse::<f64>() {
                        Ok(float) => Value::from(float),
                        Err(error) => {
                            return Err(malformed(format!(
                                "The `csv` payload provided is malformed: `Error parsing number {raw:?} at line {line}: {error}`."
                            )))
                        }
                    },
                },
                CsvType::Boolean if trimmed.is_empty() => Value::Null,
                CsvType::Boolean => match trimmed.parse::<bool>() {
                    Ok(b) => Value::Bool(b),
                    Err(error) => {
                        return Err(malformed(format!(
                            "The `csv` payload provided is malformed: `Error parsing boolean {raw:?} at line {line}: {error}`."
                        )))
                    }
                },
                CsvType::String if raw.is_empty() => Value::Null,
                CsvType::String => Value::String(raw.to_string()),
            };
            if let Some(slot) = doc.get_mut(*name) {
                *slot = value;
            }
        }
        docs.push(doc);
    }
    Ok(docs)
}

// ----- primary key -----

/// The primary key for a batch (a task-time decision, see the module documentation):
/// - the index already has a key: it wins; a `primaryKey` parameter that differs from it is
///   `index_primary_key_already_exists`;
/// - else the parameter, when given;
/// - else inference on the first document: the single top-level field whose name ends with `id`
///   (case-insensitive); none is `index_primary_key_no_candidate_found`, several is
///   `index_primary_key_multiple_candidates_found` (candidates sorted).
///
/// Returns `Ok(None)` for an empty batch (`first_doc` is `None`) on an index without key and without
/// parameter: Meilisearch then succeeds with zero documents and leaves the index without a primary key.
pub fn resolve_primary_key(
    index_pk: Option<&str>,
    param: Option<&str>,
    first_doc: Option<&Document>,
) -> Result<Option<String>, MeiliError> {
    if let Some(existing) = index_pk {
        return match param {
            Some(p) if p != existing => Err(primary_key_already_exists(existing)),
            _ => Ok(Some(existing.to_string())),
        };
    }
    if let Some(p) = param {
        return Ok(Some(p.to_string()));
    }
    let Some(doc) = first_doc else {
        return Ok(None);
    };
    let mut candidates: Vec<&str> = doc
        .keys()
        .map(String::as_str)
        .filter(|k| k.to_lowercase().ends_with("id"))
        .collect();
    candidates.sort_unstable();
    match candidates.as_slice() {
        [] => Err(primary_key_no_candidate()),
        [one] => Ok(Some((*one).to_string())),
        several => Err(primary_key_multiple_candidates(several)),
    }
}

// ----- document ids -----

/// Meilisearch's rule for a string id: 1 to 511 bytes of `[A-Za-z0-9_-]`.
pub fn is_valid_id_str(id: &str) -> bool {
    !id.is_empty()
        && id.len() < 512
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

enum IdError {
    Invalid(Value),
    TooMany,
}

/// The ways a primary key `a.b.c` can be split into (first level, rest): `("a", "b.c")`, `("a.b", "c")`,
/// `("a.b.c", "")`.
fn level_names(name: &str) -> impl Iterator<Item = (&str, &str)> {
    name.match_indices('.')
        .map(move |(i, _)| (&name[..i], &name[i + 1..]))
        .chain(std::iter::once((name, "")))
}

fn validate_id_value(value: &Value) -> Result<String, IdError> {
    match value {
        Value::String(s) if is_valid_id_str(s) => Ok(s.clone()),
        Value::Number(_) => canonical_id(value).ok_or_else(|| IdError::Invalid(value.clone())),
        other => Err(IdError::Invalid(other.clone())),
    }
}

/// Meilisearch 1.x's id extraction (flat and nested `a.b` keys): scans the fields in order; a field named
/// like a prefix of the key is searched for the rest of the key when it is an object (ignored otherwise),
/// a field named like the whole key is the id. The first invalid value wins; two matches is "too many".
fn extract_id(map: &Document, key: &str) -> Result<Option<String>, IdError> {
    let mut found: Option<String> = None;
    for (field, value) in map {
        let Some((_, rest)) = level_names(key).find(|(level, _)| *level == field.as_str()) else {
            continue;
        };
        let id = if rest.is_empty() {
            validate_id_value(value)?
        } else {
            match value {
                Value::Object(inner) => match extract_id(inner, rest)? {
                    Some(id) => id,
                    None => continue,
                },
                _ => continue,
            }
        };
        if found.replace(id).is_some() {
            return Err(IdError::TooMany);
        }
    }
    Ok(found)
}

/// The canonical id of a document under primary key `pk` (nested keys such as `product.id` supported as
/// in Meilisearch 1.x). Errors (`missing_document_id`, `invalid_document_id`) are task errors with
/// Meilisearch's exact messages. Integers, negative ones included, are valid and canonicalised to their
/// decimal form; floats, booleans, null, arrays and objects are invalid.
pub fn document_id(doc: &Document, pk: &str) -> Result<String, MeiliError> {
    match extract_id(doc, pk) {
        Ok(Some(id)) => Ok(id),
        Ok(None) => Err(missing_document_id(pk, doc)),
        Err(IdError::Invalid(value)) => Err(invalid_document_id(&value)),
        Err(IdError::TooMany) => Err(too_many_document_ids(pk, doc)),
    }
}

/// Rejects a client document holding a top-level field reserved for Miroir (`_miroir_*`).
pub fn check_reserved_fields(doc: &Document) -> Result<(), MeiliError> {
    match doc.keys().find(|k| k.starts_with(RESERVED_PREFIX)) {
        Some(field) => Err(MeiliError::reserved_field(field)),
        None => Ok(()),
    }
}

// ----- planning -----

/// A validated batch split per node.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchPlan {
    /// The documents each node must receive, each with `_miroir_shard`, in payload order.
    pub per_node: BTreeMap<NodeId, Vec<Document>>,
    /// How many documents of the batch belong to each shard (shards with none are absent).
    pub shards: BTreeMap<ShardId, usize>,
    /// How many documents the client sent.
    pub received: usize,
}

/// Validates every document (id, then reserved fields) and splits the batch: each document, with
/// `"_miroir_shard": <shard>` added, goes to every owner of its shard in every group. The first invalid
/// document fails the whole batch.
pub fn plan_batch(
    docs: Vec<Document>,
    pk: &str,
    placement: &Placement,
) -> Result<BatchPlan, MeiliError> {
    let received = docs.len();
    let mut doc_shards = Vec::with_capacity(received);
    for doc in &docs {
        let id = document_id(doc, pk)?;
        check_reserved_fields(doc)?;
        doc_shards.push(placement.shard_for_key(&id));
    }
    let mut per_node: BTreeMap<NodeId, Vec<Document>> = BTreeMap::new();
    let mut shards: BTreeMap<ShardId, usize> = BTreeMap::new();
    for (mut doc, shard) in docs.into_iter().zip(doc_shards) {
        doc.insert(SHARD_FIELD.to_string(), Value::from(shard));
        *shards.entry(shard).or_default() += 1;
        let targets: Vec<&NodeId> = (0..placement.groups())
            .flat_map(|g| placement.owners(shard, g))
            .collect();
        if let Some((last, rest)) = targets.split_last() {
            for node in rest {
                per_node
                    .entry((*node).clone())
                    .or_default()
                    .push(doc.clone());
            }
            per_node.entry((*last).clone()).or_default().push(doc);
        }
    }
    Ok(BatchPlan {
        per_node,
        shards,
        received,
    })
}

/// A delete-by-ids request split per node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeletePlan {
    /// The ids each node must delete, in request order.
    pub per_node: BTreeMap<NodeId, Vec<String>>,
    /// How many ids of the request belong to each shard.
    pub shards: BTreeMap<ShardId, usize>,
    /// How many ids the client sent (Meilisearch's `providedIds`).
    pub received: usize,
}

/// The id Meilisearch's delete-batch route derives from a JSON value: a string is itself, anything else
/// is its compact JSON text (`1` → `"1"`, `1.5` → `"1.5"`, `true` → `"true"`). Meilisearch does not
/// validate them: an id that cannot exist simply deletes nothing.
pub fn delete_batch_id(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Parses a delete-batch body (`POST …/documents/delete-batch`) as Meilisearch's generic JSON body
/// extractor does: the Content-Type must parse with a `json` subtype or `+json` suffix (parameters
/// allowed), an empty body is `missing_payload`, a syntax error `malformed_payload`, and a body that is
/// not an array `bad_request`. These are request errors (answered at once).
pub fn parse_delete_ids(content_type: Option<&str>, body: &[u8]) -> Result<Vec<Value>, MeiliError> {
    let Some(raw) = content_type else {
        return Err(MeiliError::invalid(
            415,
            "missing_content_type",
            "A Content-Type header is missing. Accepted values for the Content-Type header are: `application/json`",
        ));
    };
    match parse_mime(raw) {
        Some((_, sub)) if sub == "json" || sub.ends_with("+json") => {}
        _ => {
            return Err(MeiliError::invalid(
                415,
                "invalid_content_type",
                format!("The Content-Type `{raw}` is invalid. Accepted values for the Content-Type header are: `application/json`"),
            ))
        }
    }
    serde_json::from_slice::<Vec<Value>>(body).map_err(|e| {
        if e.classify() == Category::Eof && e.line() == 1 && e.column() == 0 {
            MeiliError::invalid(400, "missing_payload", "A json payload is missing.")
        } else if e.classify() != Category::Data {
            malformed(format!("The json payload provided is malformed. `{e}`."))
        } else {
            MeiliError::invalid(400, "bad_request", format!("Json deserialize error: {e}"))
        }
    })
}

/// Splits a delete-batch request: each id (converted by [`delete_batch_id`], so `1` and `"1"` go
/// together) is sent to every owner of its shard in every group. Never fails, as Meilisearch accepts any
/// array of values.
pub fn plan_delete_ids(ids: &[Value], placement: &Placement) -> DeletePlan {
    let mut per_node: BTreeMap<NodeId, Vec<String>> = BTreeMap::new();
    let mut shards: BTreeMap<ShardId, usize> = BTreeMap::new();
    for v in ids {
        let id = delete_batch_id(v);
        let shard = placement.shard_for_key(&id);
        *shards.entry(shard).or_default() += 1;
        for g in 0..placement.groups() {
            for node in placement.owners(shard, g) {
                per_node.entry(node.clone()).or_default().push(id.clone());
            }
        }
    }
    DeletePlan {
        per_node,
        shards,
        received: ids.len(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_pass_through_bit_for_bit() {
        // A client's float reaches the nodes exactly: parsed correctly rounded (`float_roundtrip`) and
        // written back in its shortest form. Random bit patterns cover long decimals, subnormals and
        // extremes; serde_json's default (fast) float parsing gets some of them wrong by an ulp.
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        let mut changed = Vec::new();
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let f = f64::from_bits(x);
            if !f.is_finite() {
                continue;
            }
            let body = format!(
                "[{{\"id\": 1, \"v\": {}}}]",
                serde_json::to_string(&f).unwrap()
            );
            let docs = parse_documents(body.as_bytes(), PayloadFormat::Json).unwrap();
            let back = docs[0]["v"].as_f64().unwrap();
            if back.to_bits() != f.to_bits() {
                changed.push(f);
            }
        }
        assert!(
            changed.is_empty(),
            "{} floats changed: {:?}",
            changed.len(),
            &changed[..changed.len().min(5)]
        );
    }

    #[test]
    fn long_json_messages_are_cut_in_the_middle() {
        let short = "x".repeat(138);
        assert_eq!(truncate_json_message(short.clone()), short);
        let long: String = (0..200)
            .map(|i| char::from(b'a' + (i % 26) as u8))
            .collect();
        let cut = truncate_json_message(long.clone());
        assert_eq!(cut.len(), 50 + 3 + 85);
        assert_eq!(&cut[..50], &long[..50]);
        assert_eq!(&cut[50..53], "...");
        assert_eq!(&cut[53..], &long[long.len() - 85..]);
        // Multi-byte characters around the cut points never panic.
        let wide = "é".repeat(150);
        let cut = truncate_json_message(wide);
        assert!(cut.contains("..."));
        assert!(cut.len() <= 50 + 3 + 86);
    }

    #[test]
    fn mime_parsing() {
        assert_eq!(
            parse_mime("application/json"),
            Some(("application".into(), "json".into()))
        );
        assert_eq!(
            parse_mime(" TEXT/CSV ; charset=UTF-8 ; header=present"),
            Some(("text".into(), "csv".into()))
        );
        assert_eq!(parse_mime(""), None);
        assert_eq!(parse_mime("json"), None);
        assert_eq!(parse_mime("/json"), None);
        assert_eq!(parse_mime("application/"), None);
        assert_eq!(parse_mime("a b/json"), None);
        assert_eq!(parse_mime("text/csv; =x"), None);
    }
}
