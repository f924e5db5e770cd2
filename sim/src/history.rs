//! What the clients did and were told: the ground truth the checkers judge the fleet against.
//!
//! Every client write is recorded with its per-document effects and how it ended: acknowledged (202 with a
//! Miroir task uid), rejected (an error answer: nothing was promised) or unknown (no answer: the proxy may or
//! may not have acted). From that, [`History::expectations`] derives, for every document id, the states a
//! correct fleet may show: exactly the last acknowledged state when nothing later is in doubt, or one of a few
//! candidates when later writes were rejected or unanswered (those may have reached some replicas).

use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// A document as the client sent it.
pub type Doc = Map<String, Value>;

/// The effect of a write on one document.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Added or replaced with this content (`POST .../documents`).
    Put(Doc),
    /// Updated: these fields merged into the document, which is created if absent (`PUT .../documents`).
    Merge(Doc),
    /// Deleted.
    Delete,
    /// Deleted if its field `.0` equals `.1` when the write applies (a delete by filter `field = value`).
    DeleteWhere(String, Value),
}

impl Effect {
    /// The state after this effect applies to `before`.
    pub fn apply(&self, before: &Option<Doc>) -> Option<Doc> {
        match self {
            Effect::Put(d) => Some(d.clone()),
            Effect::Merge(fields) => {
                let mut doc = before.clone().unwrap_or_default();
                for (k, v) in fields {
                    doc.insert(k.clone(), v.clone());
                }
                Some(doc)
            }
            Effect::Delete => None,
            Effect::DeleteWhere(field, value) => match before {
                Some(d) if d.get(field) == Some(value) => None,
                other => other.clone(),
            },
        }
    }
}

/// How a client write ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// 202 with this Miroir task uid: the write must take effect.
    Acked(u64),
    /// An error answer (e.g. 503 `miroir_no_quorum`): nothing was promised, but replicas may have it.
    Rejected,
    /// No answer (timeout, proxy crash): anything may have happened.
    Unknown,
}

/// One client write.
#[derive(Debug, Clone, PartialEq)]
pub struct Write {
    pub effects: Vec<(String, Effect)>,
    pub outcome: Outcome,
}

/// The states a correct fleet may show for one document.
#[derive(Debug, Clone, PartialEq)]
pub enum Expect {
    /// Exactly this state (`None` = absent): the last write was acknowledged and nothing later is in doubt.
    Exactly(Option<Doc>),
    /// Any of these states.
    OneOf(Vec<Option<Doc>>),
}

impl Expect {
    pub fn allows(&self, state: &Option<Doc>) -> bool {
        match self {
            Expect::Exactly(s) => s == state,
            Expect::OneOf(options) => options.contains(state),
        }
    }

    pub fn is_determined(&self) -> bool {
        matches!(self, Expect::Exactly(_))
    }
}

/// Everything the clients wrote, in the order they were told the outcome.
#[derive(Debug, Clone, Default)]
pub struct History {
    pub writes: Vec<Write>,
    /// The client's tag of each tagged write, by position in `writes` (runs with several clients).
    pub tags: BTreeMap<usize, u64>,
}

impl History {
    pub fn record(&mut self, effects: Vec<(String, Effect)>, outcome: Outcome) {
        self.writes.push(Write { effects, outcome });
    }

    /// Records a write the proxy stamped a version for under `tag`.
    pub fn record_tagged(&mut self, effects: Vec<(String, Effect)>, outcome: Outcome, tag: u64) {
        self.tags.insert(self.writes.len(), tag);
        self.record(effects, outcome);
    }

    /// The same writes in the order of the versions the proxies stamped them with (`versions`: tag →
    /// version), which is the order last-writer-wins replicas converge to when several clients write the same
    /// documents concurrently. A tagged write without a version never reached a node (the proxy refused or
    /// never received it): it had no effect, and is dropped unless it was acknowledged (kept last, so the
    /// checkers see it). Untagged writes keep their place relative to each other, after the tagged ones.
    pub fn in_version_order(&self, versions: &BTreeMap<u64, u64>) -> History {
        let mut keyed: Vec<(u64, usize, &Write)> = Vec::new();
        for (i, w) in self.writes.iter().enumerate() {
            let version = match self.tags.get(&i) {
                Some(tag) => match versions.get(tag) {
                    Some(v) => *v,
                    None if matches!(w.outcome, Outcome::Acked(_)) => u64::MAX,
                    None => continue,
                },
                None => u64::MAX,
            };
            keyed.push((version, i, w));
        }
        keyed.sort_by_key(|(v, i, _)| (*v, *i));
        History {
            writes: keyed.into_iter().map(|(_, _, w)| w.clone()).collect(),
            tags: BTreeMap::new(),
        }
    }

    /// The acknowledged task uids, in order.
    pub fn acked_tasks(&self) -> Vec<u64> {
        self.writes
            .iter()
            .filter_map(|w| match w.outcome {
                Outcome::Acked(uid) => Some(uid),
                _ => None,
            })
            .collect()
    }

    /// For every document id any write touched, what a correct fleet may show. Writes apply in the order the
    /// client issued them (the workload has one client, which waits for each answer). The possible states of a
    /// document start as {absent}; an acknowledged write maps every possible state through its effect; a
    /// rejected or unanswered write may or may not have applied, so it adds the mapped states to the set.
    /// Within one batch, effects on one id apply in order, as in Meilisearch.
    pub fn expectations(&self) -> BTreeMap<String, Expect> {
        let mut per_id: BTreeMap<String, Vec<Option<Doc>>> = BTreeMap::new();
        for w in &self.writes {
            let mut by_id: BTreeMap<&String, Vec<&Effect>> = BTreeMap::new();
            for (id, e) in &w.effects {
                by_id.entry(id).or_default().push(e);
            }
            for (id, effects) in by_id {
                let states = per_id.entry(id.clone()).or_insert_with(|| vec![None]);
                let mapped: Vec<Option<Doc>> = states
                    .iter()
                    .map(|s| effects.iter().fold(s.clone(), |acc, e| e.apply(&acc)))
                    .collect();
                let mut next = match w.outcome {
                    Outcome::Acked(_) => Vec::new(),
                    Outcome::Rejected | Outcome::Unknown => states.clone(),
                };
                for m in mapped {
                    if !next.contains(&m) {
                        next.push(m);
                    }
                }
                *states = next;
            }
        }
        per_id
            .into_iter()
            .map(|(id, mut states)| {
                let expect = if states.len() == 1 {
                    Expect::Exactly(states.pop().flatten())
                } else {
                    Expect::OneOf(states)
                };
                (id, expect)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn doc(v: i64) -> Doc {
        json!({"id": "a", "v": v}).as_object().unwrap().clone()
    }

    #[test]
    fn acked_writes_determine_and_doubtful_ones_widen() {
        let mut h = History::default();
        h.record(vec![("a".into(), Effect::Put(doc(1)))], Outcome::Acked(0));
        h.record(vec![("b".into(), Effect::Put(doc(9)))], Outcome::Rejected);
        let e = h.expectations();
        assert_eq!(e["a"], Expect::Exactly(Some(doc(1))));
        assert_eq!(e["b"], Expect::OneOf(vec![None, Some(doc(9))]));
        h.record(vec![("a".into(), Effect::Put(doc(2)))], Outcome::Unknown);
        assert_eq!(
            h.expectations()["a"],
            Expect::OneOf(vec![Some(doc(1)), Some(doc(2))])
        );
        h.record(vec![("a".into(), Effect::Delete)], Outcome::Acked(3));
        let e = h.expectations();
        assert_eq!(
            e["a"],
            Expect::Exactly(None),
            "a later acknowledged write settles the doubt"
        );
        assert!(e["a"].allows(&None) && !e["a"].allows(&Some(doc(2))));
        assert_eq!(h.acked_tasks(), vec![0, 3]);
    }

    #[test]
    fn version_order_judges_concurrent_writers() {
        let mut h = History::default();
        // two clients: the put answered first was stamped later
        h.record_tagged(
            vec![("a".into(), Effect::Put(doc(2)))],
            Outcome::Acked(1),
            10,
        );
        h.record_tagged(
            vec![("a".into(), Effect::Put(doc(1)))],
            Outcome::Acked(0),
            20,
        );
        h.record_tagged(vec![("a".into(), Effect::Delete)], Outcome::Rejected, 30);
        let versions = BTreeMap::from([(10, 7), (20, 5)]);
        assert_eq!(
            h.expectations()["a"],
            Expect::OneOf(vec![Some(doc(1)), None]),
            "in answer order, the last put and the doubtful delete"
        );
        let ordered = h.in_version_order(&versions);
        assert_eq!(
            ordered.writes.len(),
            2,
            "the unstamped rejected delete never reached a node"
        );
        assert_eq!(ordered.expectations()["a"], Expect::Exactly(Some(doc(2))));
        assert_eq!(ordered.acked_tasks(), vec![0, 1]);
    }

    #[test]
    fn the_last_effect_of_a_batch_wins() {
        let mut h = History::default();
        h.record(
            vec![
                ("a".into(), Effect::Put(doc(1))),
                ("a".into(), Effect::Put(doc(2))),
            ],
            Outcome::Acked(0),
        );
        assert_eq!(h.expectations()["a"], Expect::Exactly(Some(doc(2))));
    }

    #[test]
    fn merges_and_filtered_deletes_follow_every_possible_state() {
        let mut h = History::default();
        let genre = |g: &str| json!({"id": "a", "genre": g}).as_object().unwrap().clone();
        h.record(
            vec![("a".into(), Effect::Put(genre("x")))],
            Outcome::Acked(0),
        );
        h.record(
            vec![(
                "a".into(),
                Effect::Merge(json!({"v": 1}).as_object().unwrap().clone()),
            )],
            Outcome::Acked(1),
        );
        let merged = json!({"id": "a", "genre": "x", "v": 1})
            .as_object()
            .unwrap()
            .clone();
        assert_eq!(h.expectations()["a"], Expect::Exactly(Some(merged.clone())));
        h.record(
            vec![("a".into(), Effect::DeleteWhere("genre".into(), json!("y")))],
            Outcome::Acked(2),
        );
        assert_eq!(
            h.expectations()["a"],
            Expect::Exactly(Some(merged.clone())),
            "the filter does not match"
        );
        h.record(
            vec![("a".into(), Effect::Put(genre("y")))],
            Outcome::Unknown,
        );
        h.record(
            vec![("a".into(), Effect::DeleteWhere("genre".into(), json!("y")))],
            Outcome::Acked(3),
        );
        // either the doubtful put applied (then the filtered delete removed it) or not (the merged doc stays)
        assert_eq!(
            h.expectations()["a"],
            Expect::OneOf(vec![Some(merged), None])
        );
    }
}
