//! Client search bodies (generated objects, or the input parsed as JSON) through `plan_search` and
//! `SearchPlan::node_request` with an arbitrary shard restriction, and GET query pairs through
//! `search_params_from_query`. Never panics; errors are 400 with Meilisearch's pagination codes; the plan's
//! window stays under `maxTotalHits` and every parameter Miroir does not interpret reaches nodes untouched.
#![no_main]

use arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use miroir_core::search::ShardRestriction;
use miroir_fuzz::{context, pairs, props, search_body};

fn run(data: &[u8]) -> Result<()> {
    props::replay_seed("search_plan", data);
    let mut u = Unstructured::new(data);
    let ctx = context(&mut u)?;
    let body = search_body(&mut u)?;
    let small = |u: &mut Unstructured| miroir_fuzz::list(u, |u| u.int_in_range(0..=8u32));
    let restriction = ShardRestriction {
        assigned: small(&mut u)?,
        held: small(&mut u)?,
    };
    props::check_search_plan(&body, &ctx, &restriction);
    props::check_search_query(&pairs(&mut u)?, &ctx);
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    let _ = run(data);
});
