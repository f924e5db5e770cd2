//! Node search answers (plausible, noisy or arbitrary JSON) through `merge_search` for a generated plan, and
//! facet-search answers through `merge_facet_search`. Never panics; errors are `502
//! miroir_bad_node_response`; a merged answer respects the window, the caps, and never shows a
//! `_miroir_*` field (anywhere, when the node answers are well formed).
#![no_main]

use arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use miroir_core::search::{plan_search, ShardRestriction};
use miroir_fuzz::{
    answers, context, facet_order, facet_search_answer, props, search_body, shaped_search_answer,
    value, MAX_DEPTH,
};

fn run(u: &mut Unstructured) -> Result<()> {
    let ctx = context(u)?;
    let body = search_body(u)?;
    if let Some(plan) = props::check_search_plan(&body, &ctx, &ShardRestriction::default()) {
        let mode = u.int_in_range(0..=2u8)?;
        let node_answers = answers(u, |u| match mode {
            0 => shaped_search_answer(u, true),
            1 => shaped_search_answer(u, false),
            _ => value(u, MAX_DEPTH),
        })?;
        let _ = props::check_merge(&plan, node_answers, mode == 0);
    } else {
        // Still exercise the merge with a valid plan.
        let plan = plan_search(&Default::default(), &ctx).expect("an empty body plans");
        let node_answers = answers(u, |u| shaped_search_answer(u, false))?;
        let _ = props::check_merge(&plan, node_answers, false);
    }
    let order = facet_order(u)?;
    let max_values = if u.arbitrary()? {
        u.int_in_range(0..=5usize)?
    } else {
        u.arbitrary()?
    };
    let facet_answers = answers(u, facet_search_answer)?;
    props::check_facet_merge(facet_answers, order, max_values);
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    props::replay_seed("merge", data);
    let _ = run(&mut Unstructured::new(data));
});
