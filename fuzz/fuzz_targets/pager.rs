//! `GET /documents` query pairs and `POST /documents/fetch` bodies through `DocumentsQuery`, then a
//! `DocumentsPager` over a fixed (or arbitrary) cover driven by a script of node answers (plausible,
//! arbitrary, failures, retries and skips). Never panics; errors are Meilisearch-shaped; a finished listing
//! respects the limit and shows no `_miroir_*` field.
#![no_main]

use arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use miroir_fuzz::props::{self, PagerQuery};
use miroir_fuzz::{list, object, pager_replies, pairs, value};
use serde_json::Value;

/// Plausible answers for the seed queries: counts 3, 2, 5, 0 for shards 0..4, then one page of documents.
fn seed_replies() -> Vec<props::PagerReply> {
    let docs: Vec<Value> = (0..5)
        .map(|i| serde_json::json!({"id": i, "title": format!("t{i}"), "_miroir_shard": i % 4}))
        .collect();
    let shaped = props::PagerReply::Shaped {
        counts: vec![(0, 3), (1, 2), (2, 5), (3, 0)],
        docs,
        overcount: false,
    };
    vec![shaped; 6]
}

fn run(data: &[u8]) -> Result<()> {
    // Inputs starting with `{` are tried as a whole fetch body first (the seed corpus holds real ones).
    if data.first() == Some(&b'{') {
        if let Ok(body) = serde_json::from_slice::<Value>(data) {
            props::check_pager(&PagerQuery::Fetch(body), None, &seed_replies());
        }
    }
    // Inputs starting with `?` are taken as a `GET /documents` query string first.
    if data.first() == Some(&b'?') {
        let pairs = miroir_fuzz::query_string_pairs(&String::from_utf8_lossy(data));
        props::check_pager(&PagerQuery::Pairs(pairs), None, &seed_replies());
    }
    let mut u = Unstructured::new(data);
    let query = match u.int_in_range(0..=2u8)? {
        0 => PagerQuery::Pairs(pairs(&mut u)?),
        1 => PagerQuery::Fetch(Value::Object(object(&mut u, 2)?)),
        _ => PagerQuery::Fetch(value(&mut u, 3)?),
    };
    let cover = if u.ratio(1u8, 4u8)? {
        let shards = |u: &mut Unstructured| list(u, |u| u.int_in_range(0..=5u32));
        Some(list(&mut u, |u| {
            Ok((u.arbitrary()?, shards(u)?, shards(u)?))
        })?)
    } else {
        None
    };
    let replies = pager_replies(&mut u)?;
    props::check_pager(&query, cover, &replies);
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    let _ = run(data);
});
