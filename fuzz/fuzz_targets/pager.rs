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

fn run(data: &[u8]) -> Result<()> {
    props::replay_seed("pager", data);
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
    let _ = props::check_pager(&query, cover, &replies);
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    let _ = run(data);
});
