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

/// Seeds are real node task objects (every node answers with it) or `GET /tasks` query strings.
fn run_raw(data: &[u8]) {
    let task = props::task_record(7, 1_795_770_981_268, true, 0, None, None);
    if data.first() == Some(&b'?') {
        let pairs = miroir_fuzz::query_string_pairs(&String::from_utf8_lossy(data));
        props::check_tasks(&task, &[], 1_795_770_981_268, 60_000, &pairs);
    } else if let Ok(object) = serde_json::from_slice::<serde_json::Value>(data) {
        let objects = vec![object; task.node_tasks.len()];
        props::check_tasks(&task, &objects, 1_795_770_991_268, 60_000, &[]);
    }
}

fuzz_target!(|data: &[u8]| {
    if matches!(data.first(), Some(b'{' | b'?')) {
        run_raw(data);
    }
    let _ = run(&mut Unstructured::new(data));
});
