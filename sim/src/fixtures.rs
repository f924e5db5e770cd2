//! The recorded Meilisearch 1.50 fixtures (`sim/tests/fixtures/`): normalising the values that differ on every
//! run, exactly as `replay.py` beside the original recordings does, so the model's replay and the proxy's replay
//! compare bodies the same way.

use serde_json::Value;

/// Keys whose (non-null) values differ on every run: task and batch uids, timestamps, durations, request uids.
pub const VOLATILE: &[&str] = &[
    "uid",
    "taskUid",
    "batchUid",
    "enqueuedAt",
    "startedAt",
    "finishedAt",
    "duration",
    "processingTimeMs",
    "requestUid",
    "createdAt",
    "updatedAt",
    "canceledBy",
];

/// `v` with every non-null volatile value replaced by `"<v>"`, at any depth.
pub fn normalise(v: &Value) -> Value {
    match v {
        Value::Object(o) => Value::Object(
            o.iter()
                .map(|(k, x)| {
                    let nv = if VOLATILE.contains(&k.as_str()) && !x.is_null() {
                        Value::String("<v>".into())
                    } else {
                        normalise(x)
                    };
                    (k.clone(), nv)
                })
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(normalise).collect()),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn volatile_values_are_masked_at_any_depth_but_nulls_stay() {
        let v = json!({"taskUid": 3, "x": [{"enqueuedAt": "t", "canceledBy": null, "keep": 1}]});
        assert_eq!(
            normalise(&v),
            json!({"taskUid": "<v>", "x": [{"enqueuedAt": "<v>", "canceledBy": null, "keep": 1}]})
        );
    }
}
