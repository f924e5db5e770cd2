//! Replica selection: which replica answers a read, from what the shell observed of every node.
//!
//! A [`Selector`] keeps, per node, an exponentially weighted moving average (EWMA) of its answer latency,
//! the number of its requests in flight and an EWMA of its error rate, plus a short window of recent
//! latencies for a rolling p95. The shell feeds it every node read answer ([`Selector::on_sent`],
//! [`Selector::on_answer`]: the latency is measured by the shell and passed in as a value) and asks it for
//! a replica preference before planning a read ([`Selector::ranking`]) and for the hedging delays of the
//! read ([`Selector::hedge_policy`]).
//!
//! States: per node `Unknown` (no answer seen: scored 0, so it is tried early) → `Observed` (EWMAs and the
//! window updated by every answer). There is no other transition; forgetting a node is not needed because
//! the placement never reuses ids.
//!
//! Strategies ([`Strategy`]): `adaptive` ranks nodes by expected cost, `ewma_latency × (1 + in_flight) +
//! error_rate × ERROR_PENALTY_MS`, lowest first, ties broken by a rotation so equal nodes share the load.
//! Exploration is a *probe*: with probability `exploration` (drawn from the seeded generator) a read also
//! names a random node ([`Selector::probe`]) to which the shell sends a shadow copy of the read whose answer
//! is only measured, never used, so a node that became fast again is noticed without a client ever waiting
//! on a slow one. `round_robin` rotates the node list by one per query. `random` shuffles it.
//!
//! Invariants: the selector is deterministic for a given seed and sequence of events (no clock reads, no
//! global randomness); a ranking is a permutation of the nodes it was given; `in_flight` never underflows.

use std::collections::{BTreeMap, VecDeque};

use crate::topology::NodeId;
use crate::Millis;

/// How a read chooses among the replicas of a shard (`selection.strategy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Strategy {
    /// `adaptive` (default): the replica with the lowest expected cost, with ε-exploration.
    #[default]
    Adaptive,
    /// `round_robin`: rotate over the replicas, query after query.
    RoundRobin,
    /// `random`: a uniformly random replica order for every query.
    Random,
}

/// The weight of a new sample in the EWMAs.
pub const EWMA_ALPHA: f64 = 0.2;
/// What a certain error costs in the adaptive score, in milliseconds.
pub const ERROR_PENALTY_MS: f64 = 1000.0;
/// Recent latencies kept per node for the rolling p95.
pub const WINDOW: usize = 64;
/// Answers needed before a node's p95 is trusted for hedging.
pub const MIN_SAMPLES_FOR_P95: usize = 8;

/// What the selector knows of one node.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct NodeStats {
    /// EWMA of answer latency, ms (0 until the first answer).
    pub latency_ms: f64,
    /// Requests sent and not answered yet.
    pub in_flight: u32,
    /// EWMA of the error indicator (0 = never fails, 1 = always fails).
    pub error_rate: f64,
    /// Answers seen.
    pub answers: u64,
    window: VecDeque<Millis>,
}

impl NodeStats {
    /// The p95 of the recent latencies, once [`MIN_SAMPLES_FOR_P95`] answers were seen.
    pub fn p95(&self) -> Option<Millis> {
        if self.window.len() < MIN_SAMPLES_FOR_P95 {
            return None;
        }
        let mut v: Vec<Millis> = self.window.iter().copied().collect();
        v.sort_unstable();
        let rank = (v.len() * 95).div_ceil(100).saturating_sub(1);
        v.get(rank).copied()
    }

    /// The adaptive cost of sending one more request to this node.
    pub fn cost(&self) -> f64 {
        self.latency_ms * (1.0 + f64::from(self.in_flight)) + self.error_rate * ERROR_PENALTY_MS
    }
}

/// When to hedge the requests of one read: a request to node `n` still unanswered `delay(n)` ms after it
/// was sent gets a duplicate on another replica, at most `max_hedges` times per read.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HedgePolicy {
    /// Hedges allowed per read (0: never).
    pub max_hedges: u32,
    /// Per node delay, ms.
    pub delays: BTreeMap<NodeId, Millis>,
    /// Delay of a node not in `delays`, ms.
    pub default_delay: Millis,
}

impl HedgePolicy {
    /// The hedging delay of `node`.
    pub fn delay(&self, node: &NodeId) -> Millis {
        self.delays.get(node).copied().unwrap_or(self.default_delay)
    }
}

/// SplitMix64: a tiny, well-mixed generator; the state is the seed.
#[derive(Debug, Clone, PartialEq, Eq)]
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = (self.next() % (i as u64 + 1)) as usize;
            v.swap(i, j);
        }
    }
}

/// Per-node statistics and the replica choice. See the module documentation.
#[derive(Debug, Clone, PartialEq)]
pub struct Selector {
    strategy: Strategy,
    exploration: f64,
    rng: SplitMix,
    counter: u64,
    stats: BTreeMap<NodeId, NodeStats>,
}

impl Selector {
    /// A selector with no observation yet. `exploration` is clamped to `[0, 1]`; `seed` drives every random
    /// choice.
    pub fn new(strategy: Strategy, exploration: f64, seed: u64) -> Self {
        let exploration = if exploration.is_finite() {
            exploration.clamp(0.0, 1.0)
        } else {
            0.0
        };
        Selector {
            strategy,
            exploration,
            rng: SplitMix(seed),
            counter: 0,
            stats: BTreeMap::new(),
        }
    }

    /// The strategy in force.
    pub fn strategy(&self) -> Strategy {
        self.strategy
    }

    /// What is known of `node`.
    pub fn stats(&self, node: &NodeId) -> Option<&NodeStats> {
        self.stats.get(node)
    }

    /// A request was sent to `node`.
    pub fn on_sent(&mut self, node: &NodeId) {
        self.stats.entry(node.clone()).or_default().in_flight += 1;
    }

    /// `node` answered a request `latency_ms` after it was sent; `ok` is false for a failure (no answer,
    /// a 5xx, an unusable body). A client error (4xx) is an answer, `ok`.
    pub fn on_answer(&mut self, node: &NodeId, latency_ms: Millis, ok: bool) {
        let s = self.stats.entry(node.clone()).or_default();
        s.in_flight = s.in_flight.saturating_sub(1);
        let err = if ok { 0.0 } else { 1.0 };
        if s.answers == 0 {
            s.latency_ms = latency_ms as f64;
            s.error_rate = err;
        } else {
            s.latency_ms += EWMA_ALPHA * (latency_ms as f64 - s.latency_ms);
            s.error_rate += EWMA_ALPHA * (err - s.error_rate);
        }
        s.answers += 1;
        if s.window.len() == WINDOW {
            s.window.pop_front();
        }
        s.window.push_back(latency_ms);
    }

    /// `nodes` ordered best first under the strategy. Every call advances the rotation (and may draw from
    /// the generator).
    pub fn ranking(&mut self, nodes: &[NodeId]) -> Vec<NodeId> {
        let mut v: Vec<NodeId> = nodes.to_vec();
        v.sort();
        v.dedup();
        if v.is_empty() {
            return v;
        }
        let turn = self.counter;
        self.counter = self.counter.wrapping_add(1);
        let len = v.len() as u64;
        v.rotate_left((turn % len) as usize);
        match self.strategy {
            Strategy::RoundRobin => {}
            Strategy::Random => self.rng.shuffle(&mut v),
            Strategy::Adaptive => {
                // Stable: equal costs keep the rotated order.
                let cost = |n: &NodeId| self.stats.get(n).map(NodeStats::cost).unwrap_or(0.0);
                v.sort_by(|a, b| cost(a).total_cmp(&cost(b)));
            }
        }
        v
    }

    /// With `adaptive`, and with probability `exploration`: a node (uniformly among `nodes`) to probe with
    /// a shadow copy of the read, whose answer only feeds the statistics. `None` otherwise.
    pub fn probe(&mut self, nodes: &[NodeId]) -> Option<NodeId> {
        if self.strategy != Strategy::Adaptive
            || nodes.is_empty()
            || self.exploration <= 0.0
            || self.rng.unit() >= self.exploration
        {
            return None;
        }
        let i = (self.rng.next() % nodes.len() as u64) as usize;
        nodes.get(i).cloned()
    }

    /// The hedging policy of one read over `nodes`: the delay of node `n` is `max(floor_ms, multiplier ×
    /// min(p95(n), median p95 of the nodes))`. The median keeps a node that is slow all the time from
    /// setting its own, long, delay: its requests are hedged once they exceed what is normal for the fleet.
    /// Nodes without a trusted p95 (and the default) use the median, or `floor_ms` when nothing is known.
    pub fn hedge_policy(
        &self,
        nodes: &[NodeId],
        multiplier: f64,
        floor_ms: Millis,
        max_hedges: u32,
    ) -> HedgePolicy {
        let multiplier = if multiplier.is_finite() && multiplier > 0.0 {
            multiplier
        } else {
            1.0
        };
        let p95s: BTreeMap<&NodeId, Millis> = nodes
            .iter()
            .filter_map(|n| Some((n, self.stats.get(n)?.p95()?)))
            .collect();
        let mut sorted: Vec<Millis> = p95s.values().copied().collect();
        sorted.sort_unstable();
        let median = sorted.get(sorted.len().saturating_sub(1) / 2).copied();
        let scale = |p: Millis| -> Millis {
            let d = (p as f64 * multiplier).ceil();
            let d = if d >= Millis::MAX as f64 {
                Millis::MAX
            } else {
                d as Millis
            };
            d.max(floor_ms)
        };
        let delays = p95s
            .iter()
            .map(|(n, p)| ((*n).clone(), scale(median.map_or(*p, |m| m.min(*p)))))
            .collect();
        HedgePolicy {
            max_hedges,
            delays,
            default_delay: median.map_or(floor_ms, scale),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nodes(n: usize) -> Vec<NodeId> {
        (0..n).map(|i| NodeId::new(format!("n{i}"))).collect()
    }

    #[test]
    fn adaptive_prefers_fast_idle_reliable_nodes() {
        let ns = nodes(3);
        let mut s = Selector::new(Strategy::Adaptive, 0.0, 1);
        for _ in 0..10 {
            s.on_sent(&ns[0]);
            s.on_answer(&ns[0], 100, true);
            s.on_sent(&ns[1]);
            s.on_answer(&ns[1], 5, true);
            s.on_sent(&ns[2]);
            s.on_answer(&ns[2], 5, false);
        }
        assert_eq!(
            s.ranking(&ns),
            vec![ns[1].clone(), ns[0].clone(), ns[2].clone()]
        );
        // in-flight requests make a node costlier
        for _ in 0..30 {
            s.on_sent(&ns[1]);
        }
        assert_eq!(s.ranking(&ns)[0], ns[0]);
        assert_eq!(s.stats(&ns[1]).unwrap().in_flight, 30);
        // unknown nodes are tried first
        let mut more = ns.clone();
        more.push(NodeId::new("fresh"));
        assert_eq!(s.ranking(&more)[0].as_str(), "fresh");
    }

    #[test]
    fn exploration_probes_sometimes_and_is_seeded() {
        let ns = nodes(4);
        let run = |seed: u64| {
            let mut s = Selector::new(Strategy::Adaptive, 0.25, seed);
            for (i, n) in ns.iter().enumerate() {
                s.on_sent(n);
                s.on_answer(n, 10 * (i as u64 + 1), true);
            }
            (0..400)
                .map(|_| (s.ranking(&ns)[0].clone(), s.probe(&ns)))
                .collect::<Vec<_>>()
        };
        let a = run(7);
        assert_eq!(a, run(7), "same seed, same choices");
        assert!(
            a.iter().all(|(best, _)| best.as_str() == "n0"),
            "probes never change the ranking"
        );
        let probes: Vec<&NodeId> = a.iter().filter_map(|(_, p)| p.as_ref()).collect();
        assert!(
            probes.len() > 60 && probes.len() < 140,
            "about 25 %: {}",
            probes.len()
        );
        assert!(
            probes.iter().any(|p| p.as_str() == "n3"),
            "any node can be probed"
        );
        let mut rr = Selector::new(Strategy::RoundRobin, 1.0, 1);
        assert_eq!(rr.probe(&ns), None, "only adaptive explores");
        let mut none = Selector::new(Strategy::Adaptive, 0.0, 1);
        assert_eq!(none.probe(&ns), None);
        let mut all = Selector::new(Strategy::Adaptive, 1.0, 1);
        assert!(all.probe(&ns).is_some());
        assert_eq!(all.probe(&[]), None);
    }

    #[test]
    fn round_robin_and_random_are_permutations() {
        let ns = nodes(3);
        let mut rr = Selector::new(Strategy::RoundRobin, 0.0, 0);
        let firsts: Vec<String> = (0..3)
            .map(|_| rr.ranking(&ns)[0].as_str().to_string())
            .collect();
        assert_eq!(firsts, vec!["n0", "n1", "n2"]);
        let mut r = Selector::new(Strategy::Random, 0.0, 3);
        for _ in 0..20 {
            let mut got = r.ranking(&ns);
            got.sort();
            assert_eq!(got, ns);
        }
        assert!(r.ranking(&[]).is_empty());
        assert_eq!(r.strategy(), Strategy::Random);
    }

    #[test]
    fn p95_and_hedge_delays() {
        let ns = nodes(3);
        let mut s = Selector::new(Strategy::Adaptive, f64::NAN, 0);
        assert_eq!(s.hedge_policy(&ns, 2.0, 7, 1).default_delay, 7);
        for i in 1..=100u64 {
            s.on_answer(&ns[0], i, true);
            s.on_answer(&ns[1], 10, true);
            s.on_answer(&ns[2], 1000, true);
        }
        assert_eq!(
            s.stats(&ns[0]).unwrap().p95(),
            Some(97),
            "last 64 of 1..=100"
        );
        let p = s.hedge_policy(&ns, 1.5, 20, 2);
        assert_eq!(p.max_hedges, 2);
        // median p95 is 97: the slow node is hedged at 1.5 × 97, not at 1.5 × 1000
        assert_eq!(p.delay(&ns[2]), 146);
        assert_eq!(p.delay(&ns[1]), 20, "the floor");
        assert_eq!(p.delay(&NodeId::new("x")), 146);
        let p = s.hedge_policy(&ns, -1.0, 0, 2);
        assert_eq!(p.delay(&ns[1]), 10, "bad multiplier: 1");
        // in_flight never underflows
        s.on_answer(&ns[0], 1, true);
        assert_eq!(s.stats(&ns[0]).unwrap().in_flight, 0);
        assert!(NodeStats::default().p95().is_none());
    }
}
