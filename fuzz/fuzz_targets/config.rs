//! Configuration text (a plausible `miroir:` document with arbitrary scalars, or the raw input) through
//! `Config::from_yaml_str` with an arbitrary environment. Never panics; errors name a path under `miroir`;
//! a valid config validates again and never prints an environment secret in `Debug`.
#![no_main]

use arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use miroir_fuzz::{config_text, props, short_string, string};
use std::collections::BTreeMap;

fn run(data: &[u8]) -> Result<()> {
    // The raw input as a file first (the seed corpus holds real configuration files).
    props::replay_seed("config", data);
    let mut u = Unstructured::new(data);
    let mut env = BTreeMap::new();
    for _ in 0..u.int_in_range(0..=4usize)? {
        let name = u.choose(props::ENV_VARS)?.to_string();
        let value = match u.int_in_range(0..=3u8)? {
            0 => format!("sekrit-{:016x}", u.arbitrary::<u64>()?),
            1 => u.int_in_range(0..=70000u32)?.to_string(),
            2 => short_string(&mut u)?,
            _ => string(&mut u)?,
        };
        env.insert(name, value);
    }
    let text = config_text(&mut u)?;
    props::check_config(&text, &env);
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    let _ = run(data);
});
