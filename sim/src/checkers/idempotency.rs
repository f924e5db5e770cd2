//! One task per idempotency key: however often a client retries a write with the same `Idempotency-Key`
//! (timeouts, lost answers, proxy crashes), the proxy creates at most one Miroir task for it, and every 202
//! the client received for that key names that task. The client never changes a keyed request, so a 409
//! `miroir_idempotency_key_reused` is a violation too.

use std::collections::BTreeMap;

/// What one keyed write produced.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyedWrites {
    /// God's-eye: every task the proxy stored, by uid, with the key it was created under.
    pub created: BTreeMap<u64, String>,
    /// Every acknowledgement the client received: (key, task uid).
    pub answers: Vec<(String, u64)>,
    /// Keys the proxy answered `miroir_idempotency_key_reused` for.
    pub reused: Vec<String>,
}

pub fn check(w: &KeyedWrites) -> Result<(), String> {
    let mut per_key: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
    for (uid, key) in &w.created {
        per_key.entry(key.as_str()).or_default().push(*uid);
    }
    if let Some((key, uids)) = per_key.iter().find(|(_, uids)| uids.len() > 1) {
        return Err(format!(
            "idempotency key {key:?} created {} tasks: {uids:?}",
            uids.len()
        ));
    }
    for (key, uid) in &w.answers {
        match per_key.get(key.as_str()) {
            Some(uids) if uids.contains(uid) => {}
            Some(uids) => {
                return Err(format!(
                    "a retry with idempotency key {key:?} was answered task {uid}, but the key's task is {uids:?}"
                ))
            }
            None => {
                return Err(format!(
                    "idempotency key {key:?} was answered task {uid}, which was never created under it"
                ))
            }
        }
    }
    if let Some(key) = w.reused.first() {
        return Err(format!(
            "the proxy answered miroir_idempotency_key_reused for {key:?}, whose request never changed"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fires_on_two_tasks_for_one_key_or_a_mismatched_answer() {
        let mut w = KeyedWrites::default();
        w.created.insert(1, "a".into());
        w.created.insert(2, "b".into());
        w.answers = vec![("a".into(), 1), ("a".into(), 1), ("b".into(), 2)];
        assert!(check(&w).is_ok());
        // planted: a retry created a second task under "a"
        let mut dup = w.clone();
        dup.created.insert(3, "a".into());
        assert!(check(&dup).unwrap_err().contains("created 2 tasks"));
        // planted: a retry was answered another key's task
        let mut wrong = w.clone();
        wrong.answers.push(("a".into(), 2));
        assert!(check(&wrong).unwrap_err().contains("answered task 2"));
        let mut ghost = w.clone();
        ghost.answers.push(("c".into(), 9));
        assert!(check(&ghost).unwrap_err().contains("never created"));
        let mut reused = w;
        reused.reused.push("a".into());
        assert!(check(&reused).unwrap_err().contains("key_reused"));
    }
}
