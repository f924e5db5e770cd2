//! Fault schedules, drawn from the seed in "swarm" style.
//!
//! Each seed first decides which fault kinds are enabled for the run (among those its scenario allows), then draws
//! a timeline of fault events for the safety phase. Rare combinations (a partition while a node restarts while the
//! proxy is down) come up because different seeds enable different subsets, not because every run throws
//! everything at once. The whole schedule is a pure function of the seed and the scenario, and it is printed with
//! any failure so a reader can see what the run went through.

use super::rng::SimRng;
use std::fmt;

/// The fault kinds a scenario may enable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FaultKinds {
    /// Kill a Meilisearch node and restart it later (its durable state survives).
    pub node_crash: bool,
    /// Kill the proxy and restart it later (its task store survives).
    pub proxy_crash: bool,
    /// Cut the link between the proxy and one node, then heal it.
    pub partition: bool,
    /// Make one node answer slowly for a while.
    pub slow_node: bool,
    /// Lose a share of the messages on every link.
    pub packet_loss: bool,
    /// Deliver some requests to a node twice.
    pub duplication: bool,
}

impl FaultKinds {
    pub const NONE: FaultKinds = FaultKinds {
        node_crash: false,
        proxy_crash: false,
        partition: false,
        slow_node: false,
        packet_loss: false,
        duplication: false,
    };

    /// Swarm selection: each allowed kind is kept with probability one half, and at least one allowed kind is
    /// kept when any is allowed.
    pub fn swarm(allowed: FaultKinds, rng: &mut SimRng) -> FaultKinds {
        let flags = allowed.as_array();
        let mut kept = [false; 6];
        for (k, allowed) in flags.iter().enumerate() {
            kept[k] = *allowed && rng.chance(0.5);
        }
        if !kept.iter().any(|k| *k) {
            let candidates: Vec<usize> = (0..6).filter(|k| flags[*k]).collect();
            if !candidates.is_empty() {
                kept[*rng.pick(&candidates)] = true;
            }
        }
        FaultKinds::from_array(kept)
    }

    fn as_array(self) -> [bool; 6] {
        [
            self.node_crash,
            self.proxy_crash,
            self.partition,
            self.slow_node,
            self.packet_loss,
            self.duplication,
        ]
    }

    fn from_array(a: [bool; 6]) -> FaultKinds {
        FaultKinds {
            node_crash: a[0],
            proxy_crash: a[1],
            partition: a[2],
            slow_node: a[3],
            packet_loss: a[4],
            duplication: a[5],
        }
    }
}

impl fmt::Display for FaultKinds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names = [
            "node_crash",
            "proxy_crash",
            "partition",
            "slow_node",
            "packet_loss",
            "duplication",
        ];
        let on: Vec<&str> = self
            .as_array()
            .iter()
            .zip(names)
            .filter(|(on, _)| **on)
            .map(|(_, n)| n)
            .collect();
        if on.is_empty() {
            f.write_str("none")
        } else {
            f.write_str(&on.join(","))
        }
    }
}

/// One fault event. Nodes are named by their index in the fleet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FaultEvent {
    KillNode(usize),
    RestartNode(usize),
    KillProxy,
    RestartProxy,
    /// Cut both directions between the proxy and the node.
    Partition(usize),
    Heal(usize),
    /// Add this much latency to every answer of the node.
    Slow(usize, u64),
    Fast(usize),
}

impl fmt::Display for FaultEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FaultEvent::KillNode(n) => write!(f, "kill node{n}"),
            FaultEvent::RestartNode(n) => write!(f, "restart node{n}"),
            FaultEvent::KillProxy => write!(f, "kill proxy"),
            FaultEvent::RestartProxy => write!(f, "restart proxy"),
            FaultEvent::Partition(n) => write!(f, "partition proxy<->node{n}"),
            FaultEvent::Heal(n) => write!(f, "heal proxy<->node{n}"),
            FaultEvent::Slow(n, ms) => write!(f, "slow node{n} +{ms}ms"),
            FaultEvent::Fast(n) => write!(f, "fast node{n}"),
        }
    }
}

/// The faults of one run: which kinds are on, the network's loss and duplication rates, and a timeline.
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    pub kinds: FaultKinds,
    pub loss_rate: f64,
    pub duplicate_rate: f64,
    /// (virtual milliseconds since the start of the safety phase, event), sorted by time.
    pub events: Vec<(u64, FaultEvent)>,
}

impl Schedule {
    /// Draws a schedule for a fleet of `nodes` nodes over a safety phase of `duration_ms`. A slow node adds
    /// between 50 ms and `slow_max_ms` to each answer.
    ///
    /// Every fault is paired with its repair inside the safety phase or is repaired by the liveness phase, which
    /// heals everything anyway. At most one node is down at a time per incident, so scenarios that expect
    /// availability (RF ≥ 2 with quorum `one`) can still make progress.
    pub fn draw(
        allowed: FaultKinds,
        nodes: usize,
        duration_ms: u64,
        slow_max_ms: u64,
        rng: &mut SimRng,
    ) -> Schedule {
        let kinds = FaultKinds::swarm(allowed, rng);
        let mut events = Vec::new();
        let incidents = if kinds == FaultKinds::NONE {
            0
        } else {
            rng.range(1, 3)
        };
        let mut menu: Vec<u8> = Vec::new();
        if kinds.node_crash {
            menu.push(0);
        }
        if kinds.proxy_crash {
            menu.push(1);
        }
        if kinds.partition {
            menu.push(2);
        }
        if kinds.slow_node {
            menu.push(3);
        }
        for _ in 0..incidents {
            if menu.is_empty() || nodes == 0 {
                break;
            }
            let start = rng.below(duration_ms.max(1) * 3 / 4);
            let length = rng.range(duration_ms / 10 + 1, duration_ms / 2 + 1);
            let node = rng.below(nodes as u64) as usize;
            let (begin, end) = match rng.pick(&menu) {
                0 => (FaultEvent::KillNode(node), FaultEvent::RestartNode(node)),
                1 => (FaultEvent::KillProxy, FaultEvent::RestartProxy),
                2 => (FaultEvent::Partition(node), FaultEvent::Heal(node)),
                _ => (
                    FaultEvent::Slow(node, rng.range(50, slow_max_ms.max(50))),
                    FaultEvent::Fast(node),
                ),
            };
            events.push((start, begin));
            events.push((start + length, end));
        }
        events.sort_by_key(|(t, _)| *t);
        let loss_rate = if kinds.packet_loss {
            rng.range(1, 10) as f64 / 100.0
        } else {
            0.0
        };
        let duplicate_rate = if kinds.duplication {
            rng.range(1, 10) as f64 / 100.0
        } else {
            0.0
        };
        Schedule {
            kinds,
            loss_rate,
            duplicate_rate,
            events,
        }
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "faults enabled: {} (loss {:.2}, duplication {:.2})",
            self.kinds, self.loss_rate, self.duplicate_rate
        )?;
        for (t, e) in &self.events {
            writeln!(f, "  t+{t}ms {e}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: FaultKinds = FaultKinds {
        node_crash: true,
        proxy_crash: true,
        partition: true,
        slow_node: true,
        packet_loss: true,
        duplication: true,
    };

    #[test]
    fn schedules_are_a_function_of_the_seed() {
        let a = Schedule::draw(ALL, 3, 10_000, 2_000, &mut SimRng::new(42));
        let b = Schedule::draw(ALL, 3, 10_000, 2_000, &mut SimRng::new(42));
        assert_eq!(a, b);
        assert_eq!(a.to_string(), b.to_string());
    }

    #[test]
    fn swarm_only_enables_allowed_kinds_and_varies_across_seeds() {
        let allowed = FaultKinds {
            node_crash: true,
            partition: true,
            ..FaultKinds::NONE
        };
        let mut seen = std::collections::BTreeSet::new();
        for seed in 0..64 {
            let k = FaultKinds::swarm(allowed, &mut SimRng::new(seed));
            assert!(!k.proxy_crash && !k.slow_node && !k.packet_loss && !k.duplication);
            assert!(
                k.node_crash || k.partition,
                "an allowed kind is always kept"
            );
            seen.insert(k.to_string());
        }
        assert_eq!(seen.len(), 3, "both kinds alone and together: {seen:?}");
        assert_eq!(
            FaultKinds::swarm(FaultKinds::NONE, &mut SimRng::new(1)),
            FaultKinds::NONE
        );
    }

    #[test]
    fn every_fault_is_paired_with_its_repair_in_order() {
        for seed in 0..200 {
            let s = Schedule::draw(ALL, 4, 5_000, 2_000, &mut SimRng::new(seed));
            assert!(s.events.windows(2).all(|w| w[0].0 <= w[1].0));
            let count =
                |p: &dyn Fn(&FaultEvent) -> bool| s.events.iter().filter(|(_, e)| p(e)).count();
            assert_eq!(
                count(&|e| matches!(e, FaultEvent::KillNode(_))),
                count(&|e| matches!(e, FaultEvent::RestartNode(_)))
            );
            assert_eq!(
                count(&|e| *e == FaultEvent::KillProxy),
                count(&|e| *e == FaultEvent::RestartProxy)
            );
            assert_eq!(
                count(&|e| matches!(e, FaultEvent::Partition(_))),
                count(&|e| matches!(e, FaultEvent::Heal(_)))
            );
            for (_, e) in &s.events {
                if let FaultEvent::KillNode(n) | FaultEvent::Partition(n) | FaultEvent::Slow(n, _) =
                    e
                {
                    assert!(*n < 4);
                }
            }
        }
    }
}
