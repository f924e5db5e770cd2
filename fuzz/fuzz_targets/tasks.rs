//! Node task objects (plausible or arbitrary) through `NodeTaskView::from_json` and `tasks::aggregate` for
//! a two-shard Miroir task, and `GET /tasks` / cancel / delete query pairs through `TaskFilter`, then
//! `matches` and `paginate` over the aggregated task. Never panics; the task object keeps Meilisearch's key
//! order and a failed task always carries an error object.
#![no_main]

use arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use miroir_core::MeiliError;
use miroir_fuzz::{node_task_object, object, pairs, props};

fn run(u: &mut Unstructured) -> Result<()> {
    let enqueued_at = if u.arbitrary()? {
        1_795_770_981_268u64
    } else {
        u.arbitrary()?
    };
    let details = if u.arbitrary()? {
        Some(if u.arbitrary()? {
            miroir_core::tasks::details::document_addition(u.int_in_range(0..=200u64)?)
        } else {
            object(u, 2)?
        })
    } else {
        None
    };
    let error = if u.ratio(1u8, 8u8)? {
        Some(MeiliError::invalid(400, "invalid_document_id", "bad id"))
    } else {
        None
    };
    let task = props::task_record(
        u.arbitrary()?,
        enqueued_at,
        u.arbitrary()?,
        u.arbitrary()?,
        details,
        error.as_ref(),
    );
    let objects = miroir_fuzz::list(u, node_task_object)?;
    let now = if u.arbitrary()? {
        enqueued_at.saturating_add(u.int_in_range(0..=120_000u64)?)
    } else {
        u.arbitrary()?
    };
    let lost_after = if u.arbitrary()? {
        60_000
    } else {
        u.arbitrary()?
    };
    props::check_tasks(&task, &objects, now, lost_after, &pairs(u)?);
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    props::replay_seed("tasks", data);
    let _ = run(&mut Unstructured::new(data));
});
