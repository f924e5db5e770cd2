//! Write lanes: the order in which one index's writes reach one node.
//!
//! Two writes in flight to the same node at once can be applied in either order (separate connections, a
//! slow request), so two replicas could end up applying an index's writes in different orders and hold
//! different documents. A lane is the pair (index, node); it carries at most one write request at a time, in
//! the order the writes were submitted. A slow node only delays its own lane.
//!
//! States per lane: `Idle` → `Busy` (one request in flight, others queued FIFO) → `Idle` when the in-flight
//! request finishes with nothing queued.
//!
//! Transitions: [`WriteLanes::submit`] on an idle lane makes it busy and hands the item back to send now; on a
//! busy lane it queues the item. [`WriteLanes::finished`] (the in-flight request was answered, failed or timed
//! out) hands back the next queued item, which becomes the in-flight one, or makes the lane idle.
//!
//! Invariants: per lane, at most one item is handed out and not yet finished; items are handed out in
//! submission order; every submitted item is handed out exactly once, provided each handed-out item is
//! eventually reported finished.
//!
//! Limit: a request that timed out may still be applied by its node later, after the next one. Ordering
//! across a timeout needs per-write versions (the self-healing replicas work).

use crate::topology::NodeId;
use std::collections::{BTreeMap, VecDeque};

#[derive(Debug)]
struct Lane<T> {
    queue: VecDeque<T>,
}

/// The write lanes of a proxy, generic over what the shell needs to resume a queued request.
#[derive(Debug)]
pub struct WriteLanes<T> {
    busy: BTreeMap<(String, NodeId), Lane<T>>,
}

impl<T> Default for WriteLanes<T> {
    fn default() -> Self {
        WriteLanes {
            busy: BTreeMap::new(),
        }
    }
}

impl<T> WriteLanes<T> {
    pub fn new() -> Self {
        Self::default()
    }

    /// Submits a write request on lane (`index`, `node`): returns it when it may be sent now, else queues it.
    pub fn submit(&mut self, index: &str, node: &NodeId, item: T) -> Option<T> {
        let key = (index.to_string(), node.clone());
        match self.busy.get_mut(&key) {
            Some(lane) => {
                lane.queue.push_back(item);
                None
            }
            None => {
                self.busy.insert(
                    key,
                    Lane {
                        queue: VecDeque::new(),
                    },
                );
                Some(item)
            }
        }
    }

    /// The in-flight request of lane (`index`, `node`) finished: returns the next one to send, if any.
    pub fn finished(&mut self, index: &str, node: &NodeId) -> Option<T> {
        let key = (index.to_string(), node.clone());
        let lane = self.busy.get_mut(&key)?;
        match lane.queue.pop_front() {
            Some(next) => Some(next),
            None => {
                self.busy.remove(&key);
                None
            }
        }
    }

    /// How many requests wait behind the in-flight one on lane (`index`, `node`).
    pub fn queued(&self, index: &str, node: &NodeId) -> usize {
        self.busy
            .get(&(index.to_string(), node.clone()))
            .map_or(0, |l| l.queue.len())
    }

    /// Whether lane (`index`, `node`) has a request in flight.
    pub fn is_busy(&self, index: &str, node: &NodeId) -> bool {
        self.busy.contains_key(&(index.to_string(), node.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn one_in_flight_per_lane_in_submission_order() {
        let mut lanes = WriteLanes::new();
        let (a, b) = (NodeId::from("a"), NodeId::from("b"));
        assert_eq!(lanes.submit("movies", &a, 1), Some(1));
        assert_eq!(lanes.submit("movies", &a, 2), None);
        assert_eq!(lanes.submit("movies", &a, 3), None);
        assert_eq!(
            lanes.submit("movies", &b, 4),
            Some(4),
            "another node is another lane"
        );
        assert_eq!(
            lanes.submit("books", &a, 5),
            Some(5),
            "another index is another lane"
        );
        assert_eq!(lanes.queued("movies", &a), 2);
        assert_eq!(lanes.finished("movies", &a), Some(2));
        assert_eq!(lanes.finished("movies", &a), Some(3));
        assert!(lanes.is_busy("movies", &a));
        assert_eq!(lanes.finished("movies", &a), None);
        assert!(!lanes.is_busy("movies", &a));
        assert_eq!(
            lanes.submit("movies", &a, 6),
            Some(6),
            "an idle lane sends at once"
        );
        assert_eq!(
            lanes.finished("nope", &a),
            None,
            "finishing an unknown lane is harmless"
        );
    }

    proptest! {
        /// Whatever the interleaving of submissions and completions, each lane hands items out in
        /// submission order, one at a time, and none is lost.
        #[test]
        fn lanes_preserve_order_and_lose_nothing(ops in proptest::collection::vec((0u8..3, any::<bool>()), 1..200)) {
            let nodes = [NodeId::from("a"), NodeId::from("b"), NodeId::from("c")];
            let mut lanes = WriteLanes::new();
            let mut next_item = 0u32;
            let mut submitted: Vec<Vec<u32>> = vec![Vec::new(); 3];
            let mut handed: Vec<Vec<u32>> = vec![Vec::new(); 3];
            let mut in_flight: Vec<Option<u32>> = vec![None; 3];
            for (n, submit) in ops {
                let n = n as usize;
                if submit {
                    submitted[n].push(next_item);
                    if let Some(i) = lanes.submit("idx", &nodes[n], next_item) {
                        prop_assert!(in_flight[n].is_none());
                        in_flight[n] = Some(i);
                        handed[n].push(i);
                    }
                    next_item += 1;
                } else if in_flight[n].take().is_some() {
                    if let Some(i) = lanes.finished("idx", &nodes[n]) {
                        in_flight[n] = Some(i);
                        handed[n].push(i);
                    }
                }
            }
            for n in 0..3 {
                while in_flight[n].take().is_some() {
                    if let Some(i) = lanes.finished("idx", &nodes[n]) {
                        in_flight[n] = Some(i);
                        handed[n].push(i);
                    }
                }
                prop_assert_eq!(&handed[n], &submitted[n]);
            }
        }
    }
}
