//! Parsing of document listing requests: defaults, both forms, and every error with Meilisearch's exact
//! code and message (messages from Meilisearch's `tests/documents/errors.rs` and the recorded fixtures).

use miroir_core::pager::{DocumentsQuery, DEFAULT_DOCUMENTS_LIMIT};
use miroir_core::MeiliError;
use serde_json::{json, Value};

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn get_err(list: &[(&str, &str)]) -> MeiliError {
    DocumentsQuery::from_query_pairs(&pairs(list)).unwrap_err()
}

fn post_err(body: Value) -> MeiliError {
    DocumentsQuery::from_fetch_body(&body).unwrap_err()
}

fn check(e: MeiliError, code: &str, message: &str) {
    assert_eq!(e.status, 400);
    assert_eq!(e.code, code);
    assert_eq!(e.message, message);
    assert_eq!(
        e.to_json()["link"],
        format!("https://docs.meilisearch.com/errors#{code}")
    );
}

#[test]
fn defaults() {
    let q = DocumentsQuery::from_query_pairs(&[]).unwrap();
    assert_eq!(q, DocumentsQuery::new());
    assert_eq!(q.offset, 0);
    assert_eq!(q.limit, DEFAULT_DOCUMENTS_LIMIT);
    assert_eq!(q.limit, 20);
    assert_eq!(DocumentsQuery::from_fetch_body(&json!({})).unwrap(), q);
}

#[test]
fn get_parses_every_parameter() {
    let q = DocumentsQuery::from_query_pairs(&pairs(&[
        ("offset", "10"),
        ("limit", "3"),
        ("fields", "title,year,,id"),
        ("retrieveVectors", "true"),
        ("ids", "1,a-b,,c_d"),
        ("filter", "year < 1960"),
        ("useNetwork", "false"),
    ]))
    .unwrap();
    assert_eq!(q.offset, 10);
    assert_eq!(q.limit, 3);
    assert_eq!(
        q.fields,
        Some(vec!["title".into(), "year".into(), "id".into()])
    );
    assert!(q.retrieve_vectors);
    assert_eq!(q.ids, Some(vec!["1".into(), "a-b".into(), "c_d".into()]));
    assert_eq!(q.filter, Some(json!("year < 1960")));
    assert_eq!(q.use_network, Some(false));
    assert_eq!(q.sort, None);
}

#[test]
fn get_star_fields_mean_everything_and_json_filters_are_read() {
    let q = DocumentsQuery::from_query_pairs(&pairs(&[
        ("fields", "title,*"),
        ("filter", r#"["a = 1", ["b = 2", "c = 3"]]"#),
        ("sort", "_geoPoint(1, 2):asc,price:desc"),
    ]))
    .unwrap();
    assert_eq!(q.fields, None);
    assert_eq!(q.filter, Some(json!(["a = 1", ["b = 2", "c = 3"]])));
    assert_eq!(
        q.sort,
        Some(vec!["_geoPoint(1,2):asc".into(), "price:desc".into()])
    );
    // Empty `fields=` is an empty list (documents come back empty), not "everything".
    let q = DocumentsQuery::from_query_pairs(&pairs(&[("fields", "")])).unwrap();
    assert_eq!(q.fields, Some(vec![]));
    // A repeated parameter keeps its last value.
    let q = DocumentsQuery::from_query_pairs(&pairs(&[("limit", "1"), ("limit", "2")])).unwrap();
    assert_eq!(q.limit, 2);
}

#[test]
fn get_errors() {
    check(
        get_err(&[("offset", "")]),
        "invalid_document_offset",
        "Invalid value in parameter `offset`: could not parse `` as a positive integer",
    );
    check(
        get_err(&[("offset", "-1")]),
        "invalid_document_offset",
        "Invalid value in parameter `offset`: could not parse `-1` as a positive integer",
    );
    check(
        get_err(&[("limit", "doggo")]),
        "invalid_document_limit",
        "Invalid value in parameter `limit`: could not parse `doggo` as a positive integer",
    );
    check(
        get_err(&[("retrieveVectors", "tamo")]),
        "invalid_document_retrieve_vectors",
        "Invalid value in parameter `retrieveVectors`: could not parse `tamo` as a boolean, expected either `true` or `false`",
    );
    check(
        get_err(&[("useNetwork", "yes")]),
        "invalid_document_use_network",
        "Invalid value in parameter `useNetwork`: could not parse `yes` as a boolean, expected either `true` or `false`",
    );
    check(
        get_err(&[("ofset", "1")]),
        "bad_request",
        "Unknown parameter `ofset`: did you mean `offset`? expected one of `offset`, `limit`, `fields`, `retrieveVectors`, `ids`, `filter`, `sort`, `useNetwork`",
    );
    check(
        get_err(&[("q", "x")]),
        "bad_request",
        "Unknown parameter `q`: expected one of `offset`, `limit`, `fields`, `retrieveVectors`, `ids`, `filter`, `sort`, `useNetwork`",
    );
    check(
        get_err(&[("ids", "1,a b")]),
        "invalid_document_ids",
        "In `.ids[1]`: Document identifier `\"a b\"` is invalid. A document identifier can be of type integer or string, only composed of alphanumeric characters (a-z A-Z 0-9), hyphens (-) and underscores (_), and can not be more than 511 bytes.",
    );
    // The first invalid parameter in request order is the one reported.
    assert_eq!(
        get_err(&[("limit", "x"), ("offset", "y")]).code,
        "invalid_document_limit"
    );
}

#[test]
fn post_parses_every_field() {
    let q = DocumentsQuery::from_fetch_body(&json!({
        "offset": 2, "limit": 5, "fields": ["id", "year"], "retrieveVectors": true,
        "ids": [1, "two", 3], "filter": ["year < 1960"], "sort": ["year:asc"], "useNetwork": null
    }))
    .unwrap();
    assert_eq!((q.offset, q.limit), (2, 5));
    assert_eq!(q.fields, Some(vec!["id".into(), "year".into()]));
    assert!(q.retrieve_vectors);
    assert_eq!(q.ids, Some(vec!["1".into(), "two".into(), "3".into()]));
    assert_eq!(q.filter, Some(json!(["year < 1960"])));
    assert_eq!(q.sort, Some(vec!["year:asc".into()]));
    assert_eq!(q.use_network, None);
    let q = DocumentsQuery::from_fetch_body(&json!({"fields": null, "ids": null, "filter": null}))
        .unwrap();
    assert_eq!(q, DocumentsQuery::new());
    // Any filter value is accepted here; the nodes judge it (as Meilisearch does after opening the index).
    let q = DocumentsQuery::from_fetch_body(&json!({"filter": true})).unwrap();
    assert_eq!(q.filter, Some(json!(true)));
}

#[test]
fn post_errors() {
    check(
        post_err(json!(null)),
        "bad_request",
        "Invalid value type: expected an object, but found null",
    );
    check(
        post_err(json!("hello")),
        "bad_request",
        "Invalid value type: expected an object, but found a string: `\"hello\"`",
    );
    check(
        post_err(json!({"offset": "doggo"})),
        "invalid_document_offset",
        "Invalid value type at `.offset`: expected a positive integer, but found a string: `\"doggo\"`",
    );
    check(
        post_err(json!({"offset": -1})),
        "invalid_document_offset",
        "Invalid value type at `.offset`: expected a positive integer, but found a negative integer: `-1`",
    );
    check(
        post_err(json!({"limit": "doggo"})),
        "invalid_document_limit",
        "Invalid value type at `.limit`: expected a positive integer, but found a string: `\"doggo\"`",
    );
    check(
        post_err(json!({"limit": 1.5})),
        "invalid_document_limit",
        "Invalid value type at `.limit`: expected a positive integer, but found a number: `1.5`",
    );
    check(
        post_err(json!({"limit": null})),
        "invalid_document_limit",
        "Invalid value type at `.limit`: expected a positive integer, but found null",
    );
    check(
        post_err(json!({"fields": "doggo"})),
        "invalid_document_fields",
        "Invalid value type at `.fields`: expected an array, but found a string: `\"doggo\"`",
    );
    check(
        post_err(json!({"fields": ["a", 1]})),
        "invalid_document_fields",
        "Invalid value type at `.fields[1]`: expected a string, but found a positive integer: `1`",
    );
    check(
        post_err(json!({"retrieveVectors": "tamo"})),
        "invalid_document_retrieve_vectors",
        "Invalid value type at `.retrieveVectors`: expected a boolean, but found a string: `\"tamo\"`",
    );
    check(
        post_err(json!({"ids": "1"})),
        "invalid_document_ids",
        "Invalid value type at `.ids`: expected an array, but found a string: `\"1\"`",
    );
    check(
        post_err(json!({"ids": [1, 1.5]})),
        "invalid_document_ids",
        "In `.ids[1]`: Document identifier `1.5` is invalid. A document identifier can be of type integer or string, only composed of alphanumeric characters (a-z A-Z 0-9), hyphens (-) and underscores (_), and can not be more than 511 bytes.",
    );
    check(
        post_err(json!({"ids": [true]})),
        "invalid_document_ids",
        "In `.ids[0]`: Document identifier `true` is invalid. A document identifier can be of type integer or string, only composed of alphanumeric characters (a-z A-Z 0-9), hyphens (-) and underscores (_), and can not be more than 511 bytes.",
    );
    check(
        post_err(json!({"ids": [""]})),
        "invalid_document_ids",
        "In `.ids[0]`: Document identifier `\"\"` is invalid. A document identifier can be of type integer or string, only composed of alphanumeric characters (a-z A-Z 0-9), hyphens (-) and underscores (_), and can not be more than 511 bytes.",
    );
    let long = "a".repeat(512);
    assert_eq!(
        post_err(json!({ "ids": [long] })).code,
        "invalid_document_ids"
    );
    check(
        post_err(json!({"sort": "year:asc"})),
        "invalid_document_sort",
        "Invalid value type at `.sort`: expected an array, but found a string: `\"year:asc\"`",
    );
    check(
        post_err(json!({"useNetwork": 1})),
        "invalid_document_use_network",
        "Invalid value type at `.useNetwork`: expected a boolean, but found a positive integer: `1`",
    );
    check(
        post_err(json!({"limti": 1})),
        "bad_request",
        "Unknown field `limti`: did you mean `limit`? expected one of `offset`, `limit`, `fields`, `retrieveVectors`, `ids`, `filter`, `sort`, `useNetwork`",
    );
    check(
        post_err(json!({"q": ""})),
        "bad_request",
        "Unknown field `q`: expected one of `offset`, `limit`, `fields`, `retrieveVectors`, `ids`, `filter`, `sort`, `useNetwork`",
    );
    // Fields are checked in body order: the first invalid one is reported.
    assert_eq!(
        post_err(json!({"zzz": 1, "offset": "x"})).code,
        "bad_request"
    );
    assert_eq!(
        post_err(json!({"offset": "x", "zzz": 1})).code,
        "invalid_document_offset"
    );
}

#[test]
fn sort_expressions_are_checked_like_milli() {
    let ok = DocumentsQuery::from_fetch_body(
        &json!({"sort": ["a:b:desc", "42:asc", "_geoPoint(42.5, -59):asc", "truc(12, 13):desc"]}),
    )
    .unwrap();
    assert_eq!(ok.sort.unwrap().len(), 4);
    let cases = [
        ("year", "Invalid syntax for the sort parameter: expected expression ending by `:asc` or `:desc`, found `year`."),
        ("year:up", "Invalid syntax for the sort parameter: expected expression ending by `:asc` or `:desc`, found `year:up`."),
        ("_geoDistance:asc", "`_geoDistance` is a reserved keyword and thus can't be used as a sort expression."),
        ("_geo:asc", "`_geo` is a reserved keyword and thus can't be used as a sort expression. Use the _geoPoint(latitude, longitude) built-in rule to sort on _geo field coordinates."),
        ("_geoRadius(1, 2, 3):asc", "`_geoRadius` is a reserved keyword and thus can't be used as a sort expression. Use the _geoPoint(latitude, longitude) built-in rule to sort on _geo field coordinates."),
        ("_geoBoundingBox([1, 2], [3, 4]):desc", "`_geoBoundingBox` is a reserved keyword and thus can't be used as a sort expression. Use the _geoPoint(latitude, longitude) built-in rule to sort on _geo field coordinates."),
        ("_geoPoint(1):asc", "Invalid syntax for the geo parameter: expected expression formated like `_geoPoint(latitude, longitude)` and ending by `:asc` or `:desc`, found `_geoPoint(1)`."),
        ("_geoPoint:asc", "Invalid syntax for the geo parameter: expected expression formated like `_geoPoint(latitude, longitude)` and ending by `:asc` or `:desc`, found `_geoPoint`."),
        ("_geoPoint(100, 0):asc", "Bad latitude `100`. Latitude must be contained between -90 and 90 degrees."),
        ("_geoPoint(0, 190.5):asc", "Bad longitude `190.5`. Longitude must be contained between -180 and 180 degrees. Hint: try using `-169.5` instead."),
    ];
    for (sort, message) in cases {
        check(
            post_err(json!({ "sort": [sort] })),
            "invalid_document_sort",
            message,
        );
        // GET splits on commas (keeping `_geoPoint(…)` whole), as Meilisearch does.
        if !sort.contains(',') || sort.starts_with("_geoPoint(") {
            check(get_err(&[("sort", sort)]), "invalid_document_sort", message);
        }
    }
    check(
        get_err(&[("sort", "_geoRadius(1, 2, 3):asc")]),
        "invalid_document_sort",
        "Invalid syntax for the sort parameter: expected expression ending by `:asc` or `:desc`, found `_geoRadius(1`.",
    );
    // `ids` are checked before `sort`, as Meilisearch does.
    assert_eq!(
        post_err(json!({"sort": ["x"], "ids": [1.5]})).code,
        "invalid_document_ids"
    );
}
