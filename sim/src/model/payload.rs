//! Parsing of document payloads (JSON, NDJSON, CSV) at request time, and the document-id and
//! primary-key rules applied when the task runs. Payload errors (`malformed_payload`,
//! `invalid_content_type`, `missing_payload`) are request-time errors; id and primary-key errors are
//! task errors.

use miroir_core::MeiliError;
use serde_json::{Map, Value};

/// A document: a JSON object with preserved key order.
pub type Document = Map<String, Value>;

const ACCEPTED: &str = "Accepted values for the Content-Type header are: `application/json`, `application/x-ndjson`, `text/csv`";

/// Parses a documents payload according to its content type.
pub fn parse_documents(
    content_type: Option<&str>,
    body: &[u8],
    csv_delimiter: Option<&str>,
) -> Result<Vec<Document>, MeiliError> {
    let Some(ct) = content_type else {
        return Err(MeiliError::invalid(
            415,
            "missing_content_type",
            format!("A Content-Type header is missing. {ACCEPTED}"),
        ));
    };
    let base = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let kind = match base.as_str() {
        "application/json" => "json",
        "application/x-ndjson" => "ndjson",
        "text/csv" => "csv",
        _ => {
            return Err(MeiliError::invalid(
                415,
                "invalid_content_type",
                format!("The Content-Type `{ct}` is invalid. {ACCEPTED}"),
            ))
        }
    };
    if kind != "csv" && csv_delimiter.is_some() {
        return Err(MeiliError::invalid(
            400,
            "invalid_document_csv_delimiter",
            "The Content-Type `".to_string() + ct + "` does not support the use of a csv delimiter. The csv delimiter can only be used with the Content-Type `text/csv`.",
        ));
    }
    if body.iter().all(|b| b.is_ascii_whitespace()) {
        return Err(MeiliError::invalid(
            400,
            "missing_payload",
            format!("A {kind} payload is missing."),
        ));
    }
    let malformed = |detail: String| {
        MeiliError::invalid(
            400,
            "malformed_payload",
            format!("The `{kind}` payload provided is malformed. `{detail}`."),
        )
    };
    match kind {
        "json" => {
            let v: Value = serde_json::from_slice(body).map_err(|e| {
                // Meilisearch deserialises a list of objects (or one object): report the error the
                // typed parse gives, which names the structure being read.
                let typed = if body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[') {
                    serde_json::from_slice::<Vec<Document>>(body).err()
                } else {
                    serde_json::from_slice::<Document>(body).err()
                };
                let detail = typed.map_or_else(|| e.to_string(), |t| t.to_string());
                let detail = if e.is_eof() {
                    format!(
                        "EOF while parsing {} at line {} column {}",
                        innermost_container(body),
                        e.line(),
                        e.column()
                    )
                } else {
                    detail
                };
                malformed(format!("Couldn't serialize document value: {detail}"))
            })?;
            match v {
                Value::Object(o) => Ok(vec![o]),
                Value::Array(items) => items
                    .into_iter()
                    .map(|i| match i {
                        Value::Object(o) => Ok(o),
                        other => Err(malformed(format!(
                            "Couldn't serialize document value: invalid type: {}, expected a map",
                            kind_name(&other)
                        ))),
                    })
                    .collect(),
                other => Err(malformed(format!(
                    "Couldn't serialize document value: data are neither an object nor a list of objects: {}",
                    kind_name(&other)
                ))),
            }
        }
        "ndjson" => {
            let text = std::str::from_utf8(body)
                .map_err(|e| malformed(format!("Couldn't serialize document value: {e}")))?;
            let mut out = Vec::new();
            for line in text.lines().filter(|l| !l.trim().is_empty()) {
                let v: Value = serde_json::from_str(line)
                    .map_err(|e| malformed(format!("Couldn't serialize document value: {e}")))?;
                match v {
                    Value::Object(o) => out.push(o),
                    other => {
                        return Err(malformed(format!(
                            "Couldn't serialize document value: invalid type: {}, expected a map",
                            kind_name(&other)
                        )))
                    }
                }
            }
            Ok(out)
        }
        _ => parse_csv(body, csv_delimiter),
    }
}

/// What a truncated JSON text was in the middle of (`an object`, `a list`, `a string` or `a value`),
/// as Meilisearch's streaming document parser reports it.
fn innermost_container(body: &[u8]) -> &'static str {
    let mut stack = Vec::new();
    let mut in_string = false;
    let mut escaped = false;
    for &b in body {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => stack.push(b),
            b'}' | b']' => {
                stack.pop();
            }
            _ => {}
        }
    }
    if in_string {
        return "a string";
    }
    match stack.last() {
        Some(b'{') => "an object",
        Some(b'[') => "a list",
        _ => "a value",
    }
}

fn kind_name(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => format!("boolean `{b}`"),
        Value::Number(n) => format!("integer `{n}`"),
        Value::String(s) => format!("string \"{s}\""),
        Value::Array(_) => "sequence".into(),
        Value::Object(_) => "map".into(),
    }
}

fn parse_csv(body: &[u8], delimiter: Option<&str>) -> Result<Vec<Document>, MeiliError> {
    let delim = match delimiter {
        None => b',',
        Some(d) if d.len() == 1 && d.is_ascii() => d.as_bytes()[0],
        Some(d) => {
            return Err(MeiliError::invalid(
                400,
                "invalid_document_csv_delimiter",
                format!("Invalid value in parameter `csvDelimiter`: expected a string of one character, but found the following string of {} characters: `{d}`", d.chars().count()),
            ))
        }
    };
    let malformed = |detail: String| {
        MeiliError::invalid(
            400,
            "malformed_payload",
            format!("The `csv` payload provided is malformed: `{detail}`."),
        )
    };
    let mut rdr = csv::ReaderBuilder::new()
        .delimiter(delim)
        .has_headers(true)
        .from_reader(body);
    let headers = rdr.headers().map_err(|e| malformed(e.to_string()))?.clone();
    let mut columns = Vec::new();
    for h in headers.iter() {
        let (name, ty) = match h.rsplit_once(':') {
            Some((n, t)) if matches!(t, "string" | "number" | "boolean") => (n.to_string(), t),
            _ => (h.to_string(), "string"),
        };
        columns.push((name, ty));
    }
    let mut out = Vec::new();
    for (line, rec) in rdr.records().enumerate() {
        let rec = rec.map_err(|e| malformed(e.to_string()))?;
        let mut doc = Map::new();
        for (i, (name, ty)) in columns.iter().enumerate() {
            let raw = rec.get(i).unwrap_or("");
            let v = match *ty {
                "number" => {
                    if raw.trim().is_empty() {
                        Value::Null
                    } else if let Ok(i) = raw.trim().parse::<i64>() {
                        Value::from(i)
                    } else if let Ok(f) = raw.trim().parse::<f64>() {
                        serde_json::Number::from_f64(f).map(Value::Number).unwrap_or(Value::Null)
                    } else {
                        return Err(malformed(format!(
                            "Error parsing number {raw:?} at line {}: invalid float literal",
                            line + 1
                        )));
                    }
                }
                "boolean" => match raw.trim() {
                    "" => Value::Null,
                    "true" => Value::Bool(true),
                    "false" => Value::Bool(false),
                    _ => {
                        return Err(malformed(format!(
                            "Error parsing boolean {raw:?} at line {}: provided string was not `true` or `false`",
                            line + 1
                        )))
                    }
                },
                _ => {
                    if raw.is_empty() {
                        Value::Null
                    } else {
                        Value::String(raw.to_string())
                    }
                }
            };
            doc.insert(name.clone(), v);
        }
        out.push(doc);
    }
    Ok(out)
}

/// Validates a document id value and returns its canonical string form (`5` and `"5"` are the same).
pub fn document_id(v: &Value) -> Result<String, MeiliError> {
    let invalid = || {
        MeiliError::invalid(
            400,
            "invalid_document_id",
            format!("Document identifier `{v}` is invalid. A document identifier can be of type integer or string, only composed of alphanumeric characters (a-z A-Z 0-9), hyphens (-) and underscores (_), and can not be more than 511 bytes."),
        )
    };
    match v {
        Value::Number(n) if n.is_i64() || n.is_u64() => Ok(n.to_string()),
        Value::String(s) => {
            if valid_string_id(s) {
                Ok(s.clone())
            } else {
                Err(invalid())
            }
        }
        _ => Err(invalid()),
    }
}

/// Whether a string is a valid document id.
pub fn valid_string_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 511
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// Infers the primary key from the first document: the single field whose name ends with `id`.
pub fn infer_primary_key(first: Option<&Document>) -> Result<String, MeiliError> {
    let mut candidates: Vec<&String> = first
        .map(|d| {
            d.keys()
                .filter(|k| k.to_lowercase().ends_with("id"))
                .collect()
        })
        .unwrap_or_default();
    candidates.sort();
    match candidates.len() {
        1 => Ok(candidates[0].clone()),
        0 => Err(MeiliError::invalid(
            400,
            "index_primary_key_no_candidate_found",
            "The primary key inference failed as the engine did not find any field ending with `id` in its name. Please specify the primary key manually using the `primaryKey` query parameter.",
        )),
        n => Err(MeiliError::invalid(
            400,
            "index_primary_key_multiple_candidates_found",
            // Meilisearch names the first two candidates only.
            format!("The primary key inference failed as the engine found {n} fields ending with `id` in their names: '{}' and '{}'. Please specify the primary key manually using the `primaryKey` query parameter.", candidates[0], candidates[1]),
        )),
    }
}

/// The `missing_document_id` error.
pub fn missing_id(pk: &str, doc: &Document) -> MeiliError {
    MeiliError::invalid(
        400,
        "missing_document_id",
        format!(
            "Document doesn't have a `{pk}` attribute: `{}`.",
            Value::Object(doc.clone())
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_each_format() {
        let d =
            parse_documents(Some("application/json"), br#"[{"id":1},{"id":"a"}]"#, None).unwrap();
        assert_eq!(d.len(), 2);
        let d = parse_documents(Some("application/json"), br#"{"id":1}"#, None).unwrap();
        assert_eq!(d.len(), 1);
        let d = parse_documents(
            Some("application/x-ndjson"),
            b"{\"id\": 1}\n{\"id\": 2}\n",
            None,
        )
        .unwrap();
        assert_eq!(d.len(), 2);
        let d = parse_documents(
            Some("text/csv"),
            b"id,title,year:number,ok:boolean\n1,x,1999,true\n",
            None,
        )
        .unwrap();
        assert_eq!(
            Value::Object(d[0].clone()),
            json!({"id": "1", "title": "x", "year": 1999, "ok": true})
        );
        let d = parse_documents(Some("text/csv"), b"id;t\n1;x\n", Some(";")).unwrap();
        assert_eq!(d[0]["t"], json!("x"));
    }

    #[test]
    fn payload_errors() {
        let e = parse_documents(Some("application/json"), b"[{\"id\": 1,", None).unwrap_err();
        assert_eq!(e.message, "The `json` payload provided is malformed. `Couldn't serialize document value: EOF while parsing an object at line 1 column 10`.");
        let e = parse_documents(Some("text/plain"), b"x", None).unwrap_err();
        assert_eq!((e.status, e.code.as_str()), (415, "invalid_content_type"));
        let e = parse_documents(None, b"x", None).unwrap_err();
        assert_eq!(e.code, "missing_content_type");
        let e = parse_documents(Some("application/json"), b"", None).unwrap_err();
        assert_eq!(
            (e.code.as_str(), e.message.as_str()),
            ("missing_payload", "A json payload is missing.")
        );
        assert!(parse_documents(Some("application/json"), b"[1]", None).is_err());
        assert!(parse_documents(Some("application/json"), b"3", None).is_err());
        assert!(parse_documents(Some("application/x-ndjson"), b"{\n", None).is_err());
        assert!(parse_documents(Some("text/csv"), b"a:number\nx\n", None).is_err());
        assert!(parse_documents(Some("text/csv"), b"a\nx\n", Some(";;")).is_err());
        assert!(parse_documents(Some("application/json"), b"[]", Some(";")).is_err());
    }

    #[test]
    fn id_rules() {
        assert_eq!(document_id(&json!(5)).unwrap(), "5");
        assert_eq!(document_id(&json!("5")).unwrap(), "5");
        assert_eq!(document_id(&json!(-3)).unwrap(), "-3");
        let e = document_id(&json!(1.5)).unwrap_err();
        assert!(e
            .message
            .starts_with("Document identifier `1.5` is invalid."));
        let e = document_id(&json!("a b")).unwrap_err();
        assert!(e
            .message
            .starts_with("Document identifier `\"a b\"` is invalid."));
        assert!(document_id(&json!("b".repeat(511))).is_ok());
        assert!(document_id(&json!("b".repeat(512))).is_err());
        assert!(document_id(&json!("")).is_err());
        assert!(document_id(&json!(null)).is_err());
    }

    #[test]
    fn primary_key_inference() {
        let d = json!({"bookId": 1, "title": "x"})
            .as_object()
            .cloned()
            .unwrap();
        assert_eq!(infer_primary_key(Some(&d)).unwrap(), "bookId");
        let d = json!({"authorId": 1, "bookId": 1})
            .as_object()
            .cloned()
            .unwrap();
        let e = infer_primary_key(Some(&d)).unwrap_err();
        assert_eq!(e.message, "The primary key inference failed as the engine found 2 fields ending with `id` in their names: 'authorId' and 'bookId'. Please specify the primary key manually using the `primaryKey` query parameter.");
        let d = json!({"primary_id": 1, "object_id": 2, "id": 3})
            .as_object()
            .cloned()
            .unwrap();
        let e = infer_primary_key(Some(&d)).unwrap_err();
        assert!(e
            .message
            .contains("found 3 fields ending with `id` in their names: 'id' and 'object_id'."));
        let e = infer_primary_key(None).unwrap_err();
        assert_eq!(e.code, "index_primary_key_no_candidate_found");
        let m = missing_id(
            "id",
            &json!({"title": "no id"}).as_object().cloned().unwrap(),
        );
        assert_eq!(
            m.message,
            "Document doesn't have a `id` attribute: `{\"title\":\"no id\"}`."
        );
    }
}
