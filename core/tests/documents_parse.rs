//! Payload parsing, primary keys and id validation, checked against Meilisearch 1.50's recorded messages
//! (fixtures in `v1.50.0-core.jsonl` and Meilisearch's own test snapshots).

use miroir_core::documents::*;
use miroir_core::ErrorType;
use serde_json::{json, Value};

fn doc(v: Value) -> Document {
    match v {
        Value::Object(m) => m,
        other => panic!("not an object: {other}"),
    }
}

fn assert_err(
    r: Result<impl std::fmt::Debug, miroir_core::MeiliError>,
    status: u16,
    code: &str,
    message: &str,
) {
    let e = r.expect_err("expected an error");
    assert_eq!(e.code, code, "{}", e.message);
    assert_eq!(e.message, message);
    assert_eq!(e.status, status);
}

const ACCEPTED: &str =
    "Accepted values for the Content-Type header are: `application/json`, `application/x-ndjson`, `text/csv`";

// ----- content type -----

#[test]
fn content_types_are_recognised_with_parameters_and_any_case() {
    assert_eq!(
        payload_format(Some("application/json"), None),
        Ok(PayloadFormat::Json)
    );
    assert_eq!(
        payload_format(Some("application/json; charset=utf-8"), None),
        Ok(PayloadFormat::Json)
    );
    assert_eq!(
        payload_format(Some("Application/JSON;charset=\"utf-8\""), None),
        Ok(PayloadFormat::Json)
    );
    assert_eq!(
        payload_format(Some("application/x-ndjson"), None),
        Ok(PayloadFormat::Ndjson)
    );
    assert_eq!(
        payload_format(Some("text/csv"), None),
        Ok(PayloadFormat::Csv { delimiter: b',' })
    );
    assert_eq!(
        payload_format(Some("text/csv; charset=utf-8"), Some(b';')),
        Ok(PayloadFormat::Csv { delimiter: b';' })
    );
}

#[test]
fn missing_content_type_is_415() {
    assert_err(
        payload_format(None, None),
        415,
        "missing_content_type",
        &format!("A Content-Type header is missing. {ACCEPTED}"),
    );
    // Even with a csv delimiter, the missing header is reported first.
    assert_err(
        payload_format(None, Some(b';')),
        415,
        "missing_content_type",
        &format!("A Content-Type header is missing. {ACCEPTED}"),
    );
}

#[test]
fn invalid_content_type_is_415_with_the_fixture_message() {
    // Fixture "wrong content type".
    assert_err(
        payload_format(Some("text/plain"), None),
        415,
        "invalid_content_type",
        &format!("The Content-Type `text/plain` is invalid. {ACCEPTED}"),
    );
    // A parsable type is named by its essence only; an unparsable one verbatim.
    assert_err(
        payload_format(Some("Text/Plain; charset=utf-8"), None),
        415,
        "invalid_content_type",
        &format!("The Content-Type `text/plain` is invalid. {ACCEPTED}"),
    );
    assert_err(
        payload_format(Some("doggo"), None),
        415,
        "invalid_content_type",
        &format!("The Content-Type `doggo` is invalid. {ACCEPTED}"),
    );
    assert_err(
        payload_format(Some("application/json; charset"), None),
        415,
        "invalid_content_type",
        &format!("The Content-Type `application/json; charset` is invalid. {ACCEPTED}"),
    );
}

#[test]
fn csv_delimiter_with_another_type_is_415() {
    for ct in ["application/json", "application/x-ndjson"] {
        assert_err(
            payload_format(Some(ct), Some(b'a')),
            415,
            "invalid_content_type",
            &format!("The Content-Type `{ct}` does not support the use of a csv delimiter. The csv delimiter can only be used with the Content-Type `text/csv`."),
        );
    }
}

#[test]
fn csv_delimiter_parameter_rules() {
    assert_eq!(parse_csv_delimiter(";"), Ok(b';'));
    assert_eq!(parse_csv_delimiter("\t"), Ok(b'\t'));
    assert_err(
        parse_csv_delimiter(""),
        400,
        "invalid_document_csv_delimiter",
        "Invalid value in parameter `csvDelimiter`: expected a string of one character, but found an empty string",
    );
    assert_err(
        parse_csv_delimiter("doggo"),
        400,
        "invalid_document_csv_delimiter",
        "Invalid value in parameter `csvDelimiter`: expected a string of one character, but found the following string of 5 characters: `doggo`",
    );
    assert_err(
        parse_csv_delimiter("🍰"),
        400,
        "invalid_document_csv_delimiter",
        "csv delimiter must be an ascii character. Found: `🍰`",
    );
}

// ----- payloads -----

#[test]
fn empty_bodies_are_missing_payloads() {
    assert_err(
        parse_documents(b"", PayloadFormat::Json),
        400,
        "missing_payload",
        "A json payload is missing.",
    );
    assert_err(
        parse_documents(b"", PayloadFormat::Ndjson),
        400,
        "missing_payload",
        "A ndjson payload is missing.",
    );
    assert_err(
        parse_documents(b"", PayloadFormat::Csv { delimiter: b',' }),
        400,
        "missing_payload",
        "A csv payload is missing.",
    );
}

#[test]
fn json_arrays_and_single_objects_keep_field_order() {
    let docs = parse_documents(
        br#"[{"z":1,"a":2,"m":{"y":1,"b":2}},{"id":"x"}]"#,
        PayloadFormat::Json,
    )
    .unwrap();
    assert_eq!(docs.len(), 2);
    let keys: Vec<_> = docs[0].keys().cloned().collect();
    assert_eq!(keys, ["z", "a", "m"]);
    assert_eq!(
        serde_json::to_string(&docs[0]).unwrap(),
        r#"{"z":1,"a":2,"m":{"y":1,"b":2}}"#
    );
    let one = parse_documents(br#" {"id": 1, "t": "x"} "#, PayloadFormat::Json).unwrap();
    assert_eq!(one, vec![doc(json!({"id": 1, "t": "x"}))]);
    assert!(parse_documents(b"[]", PayloadFormat::Json)
        .unwrap()
        .is_empty());
    // Meilisearch ignores what follows the closing bracket of an array.
    assert_eq!(
        parse_documents(br#"[{"id":1}] trailing"#, PayloadFormat::Json)
            .unwrap()
            .len(),
        1
    );
}

#[test]
fn malformed_json_messages_match_meilisearch() {
    // Fixture "invalid json".
    assert_err(
        parse_documents(br#"[{"id": 1,"#, PayloadFormat::Json),
        400,
        "malformed_payload",
        "The `json` payload provided is malformed. `Couldn't serialize document value: EOF while parsing an object at line 1 column 10`.",
    );
    // Meilisearch's error_add_malformed_json_documents.
    assert_err(
        parse_documents(br#"[{"id": 1}, {id: 2}]"#, PayloadFormat::Json),
        400,
        "malformed_payload",
        "The `json` payload provided is malformed. `Couldn't serialize document value: key must be a string at line 1 column 14`.",
    );
    let long = format!("\"{}m\"", "0123456789".repeat(10));
    assert_err(
        parse_documents(long.as_bytes(), PayloadFormat::Json),
        400,
        "malformed_payload",
        "The `json` payload provided is malformed. `Couldn't serialize document value: data are neither an object nor a list of objects`.",
    );
    assert_err(
        parse_documents(b"  ", PayloadFormat::Json),
        400,
        "malformed_payload",
        "The `json` payload provided is malformed. `Couldn't serialize document value: EOF while parsing a value at line 1 column 2`.",
    );
    // A single object followed by garbage is rejected (only arrays tolerate trailing bytes).
    let e = parse_documents(br#"{"id":1} x"#, PayloadFormat::Json).unwrap_err();
    assert_eq!(e.code, "malformed_payload");
    assert!(e.message.contains("trailing characters"), "{}", e.message);
}

#[test]
fn invalid_utf8_is_malformed_not_a_panic() {
    let e = parse_documents(b"[{\"id\": \"\xff\xfe\"}]", PayloadFormat::Json).unwrap_err();
    assert_eq!(e.code, "malformed_payload");
    assert_eq!(e.status, 400);
    let e = parse_documents(b"{\"id\": \"\xc3\x28\"}\n", PayloadFormat::Ndjson).unwrap_err();
    assert_eq!(e.code, "malformed_payload");
    let e = parse_documents(b"id\n\xff\n", PayloadFormat::Csv { delimiter: b',' }).unwrap_err();
    assert_eq!(e.code, "malformed_payload");
    assert!(e
        .message
        .starts_with("The `csv` payload provided is malformed: `"));
}

#[test]
fn non_object_elements_are_internal_errors_like_meilisearch() {
    assert_err(
        parse_documents(b"[1]", PayloadFormat::Json),
        500,
        "internal",
        "invalid type: integer `1`, expected a map at line 1 column 1",
    );
    let e = parse_documents(b"[1]", PayloadFormat::Json).unwrap_err();
    assert_eq!(e.error_type, ErrorType::Internal);
    // When more elements follow, serde reports the unread rest first, as in Meilisearch.
    assert_err(
        parse_documents(br#"[1, {"id": 2}]"#, PayloadFormat::Json),
        400,
        "malformed_payload",
        "The `json` payload provided is malformed. `Couldn't serialize document value: trailing characters at line 1 column 5`.",
    );
    assert_err(
        parse_documents(b"{\"id\":1}\n\"x\"\n", PayloadFormat::Ndjson),
        500,
        "internal",
        "invalid type: string \"x\", expected a map at line 1 column 3",
    );
}

#[test]
fn ndjson_lines_and_errors() {
    let docs = parse_documents(
        b"{\"id\": 1001, \"title\": \"nd one\"}\n\n{\"id\": 1002, \"title\": \"nd two\"}\n",
        PayloadFormat::Ndjson,
    )
    .unwrap();
    assert_eq!(
        docs,
        vec![
            doc(json!({"id": 1001, "title": "nd one"})),
            doc(json!({"id": 1002, "title": "nd two"}))
        ]
    );
    assert!(parse_documents(b"\n\n", PayloadFormat::Ndjson)
        .unwrap()
        .is_empty());
    // Meilisearch's error_add_malformed_ndjson_documents.
    assert_err(
        parse_documents(b"{\"id\": 1}\n{id: 2}", PayloadFormat::Ndjson),
        400,
        "malformed_payload",
        "The `ndjson` payload provided is malformed. `Couldn't serialize document value: key must be a string at line 2 column 2`.",
    );
}

#[test]
fn csv_typed_headers() {
    // Fixture "csv typed".
    let docs = parse_documents(
        b"id,title,year:number\n2001,csv movie,1999\n",
        PayloadFormat::Csv { delimiter: b',' },
    )
    .unwrap();
    assert_eq!(
        docs,
        vec![doc(
            json!({"id": "2001", "title": "csv movie", "year": 1999})
        )]
    );
    // Meilisearch's add_csv_document_with_types.
    let docs = parse_documents(
        b"#id:number,name:string,race:string,age:number,cute:boolean\n0,jean,bernese mountain,2.5,true\n1,,,,\n2,lilou,pug,-2,false",
        PayloadFormat::Csv { delimiter: b',' },
    )
    .unwrap();
    assert_eq!(
        Value::Array(docs.into_iter().map(Value::Object).collect()),
        json!([
            {"#id": 0, "name": "jean", "race": "bernese mountain", "age": 2.5, "cute": true},
            {"#id": 1, "name": null, "race": null, "age": null, "cute": null},
            {"#id": 2, "name": "lilou", "race": "pug", "age": -2, "cute": false}
        ])
    );
    // Unknown types keep the whole header; only the last ':' counts; strings are not trimmed.
    let docs = parse_documents(
        b"a:b:number;c:date;d\n 7 ;x; y \n",
        PayloadFormat::Csv { delimiter: b';' },
    )
    .unwrap();
    assert_eq!(
        docs,
        vec![doc(json!({"a:b": 7, "c:date": "x", "d": " y "}))]
    );
    let keys: Vec<_> = docs[0].keys().cloned().collect();
    assert_eq!(keys, ["a:b", "c:date", "d"]);
    // Header only: no documents.
    assert!(
        parse_documents(b"id,title\n", PayloadFormat::Csv { delimiter: b',' })
            .unwrap()
            .is_empty()
    );
}

#[test]
fn csv_errors_match_meilisearch() {
    let csv = PayloadFormat::Csv { delimiter: b',' };
    assert_err(
        parse_documents(b"#id:number,a:boolean,b:number\n0,doggo,1", csv),
        400,
        "malformed_payload",
        "The `csv` payload provided is malformed: `Error parsing boolean \"doggo\" at line 1: provided string was not `true` or `false``.",
    );
    assert_err(
        parse_documents(b"#id:number,a:boolean,b:number\n0,true,doggo", csv),
        400,
        "malformed_payload",
        "The `csv` payload provided is malformed: `Error parsing number \"doggo\" at line 1: invalid float literal`.",
    );
    assert_err(
        parse_documents(b"id, content\n1234, hello, world\n12, hello world", csv),
        400,
        "malformed_payload",
        "The `csv` payload provided is malformed: `CSV error: record 1 (line: 2, byte: 12): found record with 3 fields, but the previous record has 2 fields`.",
    );
    // The line counts data records, the value is shown untrimmed.
    assert_err(
        parse_documents(b"n:number\n1\n2\n x \n", csv),
        400,
        "malformed_payload",
        "The `csv` payload provided is malformed: `Error parsing number \" x \" at line 3: invalid float literal`.",
    );
}

#[test]
fn parse_request_combines_both_steps() {
    assert_eq!(
        parse_request(Some("application/json"), None, br#"[{"id":1}]"#)
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        parse_request(None, None, b"x").unwrap_err().code,
        "missing_content_type"
    );
    assert_eq!(
        parse_request(Some("text/csv"), None, b"")
            .unwrap_err()
            .message,
        "A csv payload is missing."
    );
}

// ----- primary key -----

#[test]
fn primary_key_resolution() {
    let d = doc(json!({"bookId": "b1", "title": "x"}));
    // The index key wins; the same key as a parameter is fine.
    assert_eq!(
        resolve_primary_key(Some("sku"), None, Some(&d)),
        Ok(Some("sku".into()))
    );
    assert_eq!(
        resolve_primary_key(Some("sku"), Some("sku"), Some(&d)),
        Ok(Some("sku".into()))
    );
    // Fixture "pk param conflict".
    assert_err(
        resolve_primary_key(Some("sku"), Some("other"), Some(&d)),
        400,
        "index_primary_key_already_exists",
        "Index already has a primary key: `sku`.",
    );
    // The parameter, even if the document lacks it.
    assert_eq!(
        resolve_primary_key(None, Some("sku"), Some(&d)),
        Ok(Some("sku".into()))
    );
    // Fixture "infer pk ends with id".
    assert_eq!(
        resolve_primary_key(None, None, Some(&d)),
        Ok(Some("bookId".into()))
    );
    assert_eq!(
        resolve_primary_key(None, None, Some(&doc(json!({"ID": 1, "paid": false})))),
        Err(primary_key_multiple_candidates(&["ID", "paid"]))
    );
    // Fixture "infer pk multiple": candidates sorted.
    assert_err(
        resolve_primary_key(None, None, Some(&doc(json!({"bookId": "b1", "authorId": "a1"})))),
        400,
        "index_primary_key_multiple_candidates_found",
        "The primary key inference failed as the engine found 2 fields ending with `id` in their names: 'authorId' and 'bookId'. Please specify the primary key manually using the `primaryKey` query parameter.",
    );
    // Three candidates: counted, first two named.
    let e = resolve_primary_key(
        None,
        None,
        Some(&doc(json!({"cid": 1, "bid": 2, "aid": 3}))),
    )
    .unwrap_err();
    assert!(e
        .message
        .contains("found 3 fields ending with `id` in their names: 'aid' and 'bid'."));
    // Fixture "infer pk none".
    assert_err(
        resolve_primary_key(None, None, Some(&doc(json!({"title": "x"})))),
        400,
        "index_primary_key_no_candidate_found",
        "The primary key inference failed as the engine did not find any field ending with `id` in its name. Please specify the primary key manually using the `primaryKey` query parameter.",
    );
    // Nested fields are not candidates.
    assert_eq!(
        resolve_primary_key(None, None, Some(&doc(json!({"p": {"id": 1}}))))
            .unwrap_err()
            .code,
        "index_primary_key_no_candidate_found"
    );
    // An empty batch on an index without key: no key, no error.
    assert_eq!(resolve_primary_key(None, None, None), Ok(None));
}

// ----- ids -----

const INVALID_TAIL: &str = "is invalid. A document identifier can be of type integer or string, only composed of alphanumeric characters (a-z A-Z 0-9), hyphens (-) and underscores (_), and can not be more than 511 bytes.";

#[test]
fn valid_ids_are_canonicalised() {
    assert_eq!(document_id(&doc(json!({"id": 5})), "id"), Ok("5".into()));
    assert_eq!(document_id(&doc(json!({"id": "5"})), "id"), Ok("5".into()));
    assert_eq!(document_id(&doc(json!({"id": -3})), "id"), Ok("-3".into()));
    assert_eq!(
        document_id(&doc(json!({"id": "a-B_9"})), "id"),
        Ok("a-B_9".into())
    );
    let max = "b".repeat(511);
    assert_eq!(
        document_id(&doc(json!({ "id": max.clone() })), "id"),
        Ok(max)
    );
    assert!(is_valid_id_str("x"));
    assert!(!is_valid_id_str(""));
    assert!(!is_valid_id_str("é"));
}

#[test]
fn invalid_ids_use_meilisearch_messages() {
    // Fixtures "bad id chars", "bad id float", "id too long".
    assert_err(
        document_id(&doc(json!({"id": "a b", "title": "x"})), "id"),
        400,
        "invalid_document_id",
        &format!("Document identifier `\"a b\"` {INVALID_TAIL}"),
    );
    assert_err(
        document_id(&doc(json!({"id": 1.5, "title": "x"})), "id"),
        400,
        "invalid_document_id",
        &format!("Document identifier `1.5` {INVALID_TAIL}"),
    );
    let long = "a".repeat(512);
    assert_err(
        document_id(&doc(json!({ "id": long.clone() })), "id"),
        400,
        "invalid_document_id",
        &format!("Document identifier `\"{long}\"` {INVALID_TAIL}"),
    );
    for (v, shown) in [
        (json!(""), "\"\""),
        (json!(null), "null"),
        (json!(true), "true"),
        (json!([1, 2]), "[1,2]"),
        (json!({"a": 1}), "{\"a\":1}"),
        (json!(1.0), "1.0"),
    ] {
        assert_err(
            document_id(&doc(json!({ "id": v })), "id"),
            400,
            "invalid_document_id",
            &format!("Document identifier `{shown}` {INVALID_TAIL}"),
        );
    }
}

#[test]
fn missing_ids_embed_the_compact_document() {
    // Fixture "missing id".
    assert_err(
        document_id(&doc(json!({"title": "no id"})), "id"),
        400,
        "missing_document_id",
        "Document doesn't have a `id` attribute: `{\"title\":\"no id\"}`.",
    );
    // Meilisearch's snapshot: field order kept.
    assert_err(
        document_id(&doc(json!({"id": "11", "content": "foobar"})), "docid"),
        400,
        "missing_document_id",
        "Document doesn't have a `docid` attribute: `{\"id\":\"11\",\"content\":\"foobar\"}`.",
    );
}

#[test]
fn nested_primary_keys() {
    let pk = "product.id";
    assert_eq!(
        document_id(&doc(json!({"product": {"id": 7, "n": "x"}})), pk),
        Ok("7".into())
    );
    assert_eq!(
        document_id(&doc(json!({"product.id": "ab"})), pk),
        Ok("ab".into())
    );
    assert_eq!(
        document_id(&doc(json!({"a": {"b.c": 1}})), "a.b.c"),
        Ok("1".into())
    );
    assert_eq!(
        document_id(&doc(json!({"a": {"b": {"c": "z"}}})), "a.b.c"),
        Ok("z".into())
    );
    // A non-object on the path is ignored, so the id is missing.
    assert_eq!(
        document_id(&doc(json!({"product": 5})), pk)
            .unwrap_err()
            .code,
        "missing_document_id"
    );
    assert_eq!(
        document_id(&doc(json!({"product": {"name": "x"}})), pk)
            .unwrap_err()
            .code,
        "missing_document_id"
    );
    assert_err(
        document_id(&doc(json!({"product": {"id": 1}, "product.id": 2})), pk),
        400,
        "invalid_document_id",
        "Document have too many matching `product.id` attribute: `{\"product\":{\"id\":1},\"product.id\":2}`.",
    );
    assert_err(
        document_id(&doc(json!({"product": {"id": "a b"}})), pk),
        400,
        "invalid_document_id",
        &format!("Document identifier `\"a b\"` {INVALID_TAIL}"),
    );
}

#[test]
fn reserved_fields_are_refused() {
    assert_eq!(
        check_reserved_fields(&doc(json!({"id": 1, "_miroirx": 1}))),
        Ok(())
    );
    assert_eq!(
        check_reserved_fields(&doc(json!({"id": 1, "nested": {"_miroir_shard": 1}}))),
        Ok(())
    );
    let e = check_reserved_fields(&doc(json!({"id": 3001, "_miroir_shard": 1}))).unwrap_err();
    assert_eq!(e.code, "miroir_reserved_field");
    assert_eq!(e.status, 400);
    assert!(e.message.contains("`_miroir_shard`"));
}
