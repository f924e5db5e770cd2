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
    /// Added or replaced with this content.
    Put(Doc),
    /// Deleted.
    Delete,
}

impl Effect {
    fn state(&self) -> Option<Doc> {
        match self {
            Effect::Put(d) => Some(d.clone()),
            Effect::Delete => None,
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
}

impl History {
    pub fn record(&mut self, effects: Vec<(String, Effect)>, outcome: Outcome) {
        self.writes.push(Write { effects, outcome });
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

    /// For every document id any write touched, what a correct fleet may show. Writes are applied in the
    /// order the clients issued them (one client at a time per document in the workload). Within one batch,
    /// the last effect on an id wins, as in Meilisearch.
    pub fn expectations(&self) -> BTreeMap<String, Expect> {
        // per id: the last acknowledged state (None = absent before any acked write) and the states of
        // doubtful writes issued after it
        let mut per_id: BTreeMap<String, (Option<Doc>, Vec<Option<Doc>>)> = BTreeMap::new();
        for w in &self.writes {
            let mut last: BTreeMap<&String, &Effect> = BTreeMap::new();
            for (id, e) in &w.effects {
                last.insert(id, e);
            }
            for (id, e) in last {
                let entry = per_id.entry(id.clone()).or_insert((None, Vec::new()));
                match w.outcome {
                    Outcome::Acked(_) => *entry = (e.state(), Vec::new()),
                    Outcome::Rejected | Outcome::Unknown => entry.1.push(e.state()),
                }
            }
        }
        per_id
            .into_iter()
            .map(|(id, (acked, doubtful))| {
                let expect = if doubtful.is_empty() {
                    Expect::Exactly(acked)
                } else {
                    let mut options = vec![acked];
                    for d in doubtful {
                        if !options.contains(&d) {
                            options.push(d);
                        }
                    }
                    if options.len() == 1 {
                        Expect::Exactly(options.pop().flatten())
                    } else {
                        Expect::OneOf(options)
                    }
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
}
