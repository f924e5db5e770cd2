//! No acknowledged write is lost: for every document, what the proxy answers to a read by id is a state the
//! history allows (exactly the acknowledged state when nothing later is in doubt).

use super::show;
use crate::history::{Doc, Expect};
use std::collections::BTreeMap;

/// `reads`: the proxy's answer to `GET /indexes/{uid}/documents/{id}` for every id (`None` = 404).
pub fn check(
    expect: &BTreeMap<String, Expect>,
    reads: &BTreeMap<String, Option<Doc>>,
) -> Result<(), String> {
    for (id, e) in expect {
        let Some(got) = reads.get(id) else {
            return Err(format!("document {id:?} was never read back"));
        };
        if !e.allows(got) {
            return Err(format!(
                "document {id:?}: the proxy returns {} but the history allows {e:?}",
                show(got)
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn fires_when_an_acknowledged_write_is_missing() {
        let d = json!({"id": "1", "v": 1}).as_object().unwrap().clone();
        let mut expect = BTreeMap::new();
        expect.insert("1".to_string(), Expect::Exactly(Some(d.clone())));
        let mut reads = BTreeMap::new();
        reads.insert("1".to_string(), Some(d));
        assert!(check(&expect, &reads).is_ok());
        reads.insert("1".to_string(), None); // planted: the write vanished
        assert!(check(&expect, &reads)
            .unwrap_err()
            .contains("document \"1\""));
        reads.clear();
        assert!(
            check(&expect, &reads).is_err(),
            "an unread document is a failure, not a pass"
        );
    }
}
