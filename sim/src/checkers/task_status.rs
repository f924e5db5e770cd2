//! Task status is truthful: every acknowledged task ends `succeeded` (the workload only sends valid
//! documents, so a `failed` task means Miroir lost or corrupted the write), and after the liveness phase
//! none is still `enqueued` or `processing`.

use std::collections::BTreeMap;

/// `finals`: the status the proxy reports for each acknowledged task uid after the liveness phase.
pub fn check(acked: &[u64], finals: &BTreeMap<u64, String>) -> Result<(), String> {
    for uid in acked {
        match finals.get(uid).map(String::as_str) {
            Some("succeeded") => {}
            Some(other) => {
                return Err(format!(
                    "acknowledged task {uid} ended {other:?}, not \"succeeded\""
                ))
            }
            None => return Err(format!("acknowledged task {uid} could not be read back")),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fires_on_failed_stuck_or_missing_tasks() {
        let mut finals =
            BTreeMap::from([(1, "succeeded".to_string()), (2, "succeeded".to_string())]);
        assert!(check(&[1, 2], &finals).is_ok());
        finals.insert(2, "processing".into()); // planted: stuck
        assert!(check(&[1, 2], &finals).unwrap_err().contains("task 2"));
        finals.insert(2, "failed".into()); // planted: failed
        assert!(check(&[1, 2], &finals).is_err());
        assert!(check(&[3], &finals).unwrap_err().contains("read back"));
    }
}
