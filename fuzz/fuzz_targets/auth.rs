//! Bearer tokens through `auth::authorize`: raw strings (keys, the master key, garbage), and JWTs whose
//! header and claims are generated (biased towards `alg`, `apiKeyUid`, `searchRules`, `exp`, `filter`)
//! signed with one of the ring's keys or a wrong secret. Never panics; only the master key opens
//! everything; refusals are 401/403 `auth` errors that never show a key.
#![no_main]

use arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use miroir_fuzz::props::{self, AUTH_NOW};
use miroir_fuzz::{short_string, value};
use serde_json::{Map, Value};

const CLAIM_KEYS: [&str; 6] = ["apiKeyUid", "searchRules", "exp", "filter", "alg", "typ"];
const UIDS: [&str; 5] = ["u-search", "u-admin", "u-old", "u-tasks", "nope"];
const INDEXES: [&str; 5] = ["movies", "prod_x", "books", "*", ""];

fn claims(u: &mut Unstructured) -> Result<Value> {
    let mut m = Map::new();
    if u.ratio(7u8, 8u8)? {
        m.insert("apiKeyUid".into(), Value::from(*u.choose(&UIDS)?));
    }
    if u.ratio(7u8, 8u8)? {
        let rules = if u.ratio(1u8, 2u8)? {
            let mut r = Map::new();
            for _ in 0..u.int_in_range(0..=3u8)? {
                let rule = match u.int_in_range(0..=2u8)? {
                    0 => Value::Null,
                    1 => {
                        let mut f = Map::new();
                        f.insert("filter".into(), value(u, 2)?);
                        Value::Object(f)
                    }
                    _ => value(u, 2)?,
                };
                r.insert(u.choose(&INDEXES)?.to_string(), rule);
            }
            Value::Object(r)
        } else {
            value(u, 2)?
        };
        m.insert("searchRules".into(), rules);
    }
    if u.ratio(1u8, 2u8)? {
        let exp = if u.ratio(3u8, 4u8)? {
            Value::from(u.int_in_range(1_700_000_000i64..=1_900_000_000)?)
        } else {
            value(u, 1)?
        };
        m.insert("exp".into(), exp);
    }
    for _ in 0..u.int_in_range(0..=2u8)? {
        m.insert(u.choose(&CLAIM_KEYS)?.to_string(), value(u, 2)?);
    }
    Ok(Value::Object(m))
}

fn run(data: &[u8]) -> Result<()> {
    props::replay_seed("auth", data);
    let mut u = Unstructured::new(data);
    let index = if u.ratio(1u8, 5u8)? {
        None
    } else if u.ratio(3u8, 4u8)? {
        Some(u.choose(&INDEXES)?.to_string())
    } else {
        Some(short_string(&mut u)?)
    };
    let token = match u.int_in_range(0..=3u8)? {
        0 => short_string(&mut u)?,
        1 => u
            .choose(&["k-search-0001", "k-admin-0002", "k-old-0003", "k-tasks-0004", "the-master-key"])?
            .to_string(),
        _ => {
            let header = if u.ratio(1u8, 4u8)? { value(&mut u, 2)? } else { Value::Null };
            let claims = claims(&mut u)?;
            props::auth_token(&header, &claims, u.int_in_range(0..=4usize)?)
        }
    };
    let token = if u.ratio(1u8, 16u8)? { None } else { Some(token) };
    let action = u.int_in_range(0..=7usize)?;
    let now = if u.ratio(7u8, 8u8)? { AUTH_NOW } else { u.arbitrary()? };
    props::check_auth(token.as_deref(), action, index.as_deref(), now);
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    let _ = run(data);
});
