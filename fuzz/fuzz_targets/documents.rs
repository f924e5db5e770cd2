//! Client document payloads (JSON, NDJSON, CSV or garbage, under any content type and `csvDelimiter`)
//! through parsing, primary-key resolution and batch planning on a fixed placement. Never panics; errors are
//! Meilisearch-shaped 4xx; a planned batch tags every document with a shard its nodes hold.
#![no_main]

use arbitrary::{Arbitrary, Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use miroir_fuzz::props::{self, DocumentsInput};
use miroir_fuzz::{object, short_string, string, value};
use serde_json::Value;
use std::sync::OnceLock;

#[derive(Arbitrary, Debug)]
enum BodyKind {
    Raw,
    JsonArray,
    JsonValue,
    Ndjson,
    Csv,
}

fn body(u: &mut Unstructured, kind: BodyKind) -> Result<Vec<u8>> {
    let docs = |u: &mut Unstructured| miroir_fuzz::list(u, |u| object(u, 2));
    Ok(match kind {
        BodyKind::Raw => u.arbitrary::<Vec<u8>>()?,
        BodyKind::JsonArray => {
            let docs: Vec<Value> = docs(u)?.into_iter().map(Value::Object).collect();
            serde_json::to_vec(&docs).unwrap_or_default()
        }
        BodyKind::JsonValue => serde_json::to_vec(&value(u, 3)?).unwrap_or_default(),
        BodyKind::Ndjson => {
            let mut out = Vec::new();
            for doc in docs(u)? {
                out.extend(serde_json::to_vec(&doc).unwrap_or_default());
                out.extend(if u.arbitrary()? {
                    &b"\n"[..]
                } else {
                    &b" \r\n"[..]
                });
            }
            out
        }
        BodyKind::Csv => {
            let sep = if u.arbitrary()? { ',' } else { ';' };
            let mut out = String::new();
            for _ in 0..u.int_in_range(0..=4usize)? {
                let cells = miroir_fuzz::list(u, |u| {
                    Ok(match u.int_in_range(0..=3u8)? {
                        0 => format!(
                            "{}:{}",
                            string(u)?,
                            u.choose(&["string", "number", "boolean", "bogus"])?
                        ),
                        1 => format!("\"{}\"", string(u)?),
                        _ => string(u)?,
                    })
                })?;
                out.push_str(&cells.join(&sep.to_string()));
                out.push('\n');
            }
            out.into_bytes()
        }
    })
}

fn run(u: &mut Unstructured) -> Result<()> {
    static PLACEMENT: OnceLock<miroir_core::routing::Placement> = OnceLock::new();
    let placement = PLACEMENT.get_or_init(props::placement);
    let content_type = match u.int_in_range(0..=4u8)? {
        0 => None,
        1 => Some(short_string(u)?),
        _ => Some(u.choose(props::CONTENT_TYPES)?.to_string()),
    };
    let csv_delimiter = match u.int_in_range(0..=3u8)? {
        0 => Some(short_string(u)?),
        1 => Some(u.choose(&[";", "\t", "|", ""])?.to_string()),
        _ => None,
    };
    let pk = |u: &mut Unstructured| -> Result<Option<String>> {
        Ok(match u.int_in_range(0..=3u8)? {
            0 => Some(u.choose(&["id", "title", "info.id", "sku"])?.to_string()),
            1 => Some(short_string(u)?),
            _ => None,
        })
    };
    let index_pk = pk(u)?;
    let pk_param = pk(u)?;
    let kind: BodyKind = u.arbitrary()?;
    let body = body(u, kind)?;
    props::check_documents(
        &DocumentsInput {
            content_type,
            csv_delimiter,
            body,
            index_pk,
            pk_param,
        },
        placement,
    );
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    props::replay_seed("documents", data);
    let _ = run(&mut Unstructured::new(data));
});
