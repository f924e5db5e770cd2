//! Primary-key narrowing (`search::pinned_ids` / `pinned_shards`): the filter parser over client filters,
//! on arbitrary strings and JSON filters and on filters built from a small grammar of pins, comparisons,
//! `AND`/`OR`/`NOT`, parentheses and the array forms. Never panics; the pinned shards are the pinned ids'
//! shards; AND-ing a pin never widens it.
#![no_main]

use arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use miroir_fuzz::props;
use miroir_fuzz::{short_string, value};
use serde_json::Value;

const ATOMS: [&str; 12] = [
    "id = 1", "id = \"A-b\"", "id IN [1, 2, x]", "id != 3", "id NOT IN [4]", "genre = drama",
    "year > 3", "id = 9007199254740993", "id = \"é\"", "id = 'q\\\\'", "id EXISTS", "_miroir_shard = 2",
];

fn expr(u: &mut Unstructured, depth: u32) -> Result<String> {
    if depth == 0 || u.ratio(1u8, 3u8)? {
        return Ok(if u.ratio(7u8, 8u8)? {
            u.choose(&ATOMS)?.to_string()
        } else {
            short_string(u)?
        });
    }
    Ok(match u.int_in_range(0..=3u8)? {
        0 => format!("{} AND {}", expr(u, depth - 1)?, expr(u, depth - 1)?),
        1 => format!("{} OR {}", expr(u, depth - 1)?, expr(u, depth - 1)?),
        2 => format!("NOT {}", expr(u, depth - 1)?),
        _ => format!("({})", expr(u, depth - 1)?),
    })
}

fn run(data: &[u8]) -> Result<()> {
    props::replay_seed("pk", data);
    let mut u = Unstructured::new(data);
    let filter = match u.int_in_range(0..=3u8)? {
        0 => Value::String(expr(&mut u, 4)?),
        1 => Value::Array(vec![
            Value::String(expr(&mut u, 2)?),
            Value::Array(vec![Value::String(expr(&mut u, 2)?), Value::String(expr(&mut u, 2)?)]),
        ]),
        2 => value(&mut u, 3)?,
        _ => Value::String(short_string(&mut u)?),
    };
    let shards = u.int_in_range(1..=64u32)?;
    props::check_pk(&filter, "id", shards);
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    let _ = run(data);
});
