//! Node health: a per-node state machine driven by the periodic probe.
//!
//! States:
//! - `Healthy`: serves reads and receives writes.
//! - `Suspect`: at least one probe (or request) failed but fewer than `unhealthy_threshold` in a row; still
//!   serves, so one lost packet does not reshuffle the covering sets.
//! - `Failed`: `unhealthy_threshold` consecutive failures; skipped by reads (its shards fall back to another
//!   replica or group). Writes are still attempted so hinted handoff and repair see the failure.
//! - `Recovering`: a failed node answered again; it serves once `recovery_threshold` consecutive successes
//!   arrive, and any failure sends it back to `Failed`.
//!
//! Transitions (s = success, f = failure):
//! Healthy -f-> Suspect (or Failed if the threshold is 1); Suspect -s-> Healthy; Suspect -f…-> Failed once the
//! consecutive failures reach `unhealthy_threshold`; Failed -s-> Recovering (or Healthy if the threshold is 1);
//! Recovering -s…-> Healthy after `recovery_threshold` consecutive successes; Recovering -f-> Failed.
//!
//! Invariants: a node is `Failed` only after `unhealthy_threshold` consecutive failures; it leaves `Failed` for
//! `Healthy` only after `recovery_threshold` consecutive successes; the machine reads no clock (the time of the
//! last transition is the `now` the caller passed).

use crate::topology::NodeId;
use crate::Millis;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Thresholds of the health machine (`health.*` in the config).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthThresholds {
    /// Consecutive failures before a node is marked failed (at least 1).
    pub unhealthy_threshold: u32,
    /// Consecutive successes before a failed node serves again (at least 1).
    pub recovery_threshold: u32,
}

impl Default for HealthThresholds {
    fn default() -> Self {
        HealthThresholds {
            unhealthy_threshold: 3,
            recovery_threshold: 2,
        }
    }
}

/// The health of one node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HealthState {
    Healthy,
    Suspect,
    Failed,
    Recovering,
}

impl HealthState {
    /// Whether reads may be sent to a node in this state.
    pub fn serves_reads(self) -> bool {
        matches!(self, HealthState::Healthy | HealthState::Suspect)
    }
}

/// The health machine of one node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeHealth {
    pub state: HealthState,
    consecutive_failures: u32,
    consecutive_successes: u32,
    /// When the state last changed (the caller's `now`).
    pub since: Millis,
}

impl NodeHealth {
    /// A node starts healthy: the first probes decide otherwise quickly.
    pub fn new(now: Millis) -> Self {
        NodeHealth {
            state: HealthState::Healthy,
            consecutive_failures: 0,
            consecutive_successes: 0,
            since: now,
        }
    }

    /// Feeds one probe or request outcome; returns the new state when it changed.
    pub fn observe(
        &mut self,
        success: bool,
        now: Millis,
        t: HealthThresholds,
    ) -> Option<HealthState> {
        let unhealthy = t.unhealthy_threshold.max(1);
        let recovery = t.recovery_threshold.max(1);
        if success {
            self.consecutive_failures = 0;
            self.consecutive_successes = self.consecutive_successes.saturating_add(1);
        } else {
            self.consecutive_successes = 0;
            self.consecutive_failures = self.consecutive_failures.saturating_add(1);
        }
        let next = match (self.state, success) {
            (HealthState::Healthy, true) => HealthState::Healthy,
            (HealthState::Healthy | HealthState::Suspect, false) => {
                if self.consecutive_failures >= unhealthy {
                    HealthState::Failed
                } else {
                    HealthState::Suspect
                }
            }
            (HealthState::Suspect, true) => HealthState::Healthy,
            (HealthState::Failed, false) => HealthState::Failed,
            (HealthState::Failed | HealthState::Recovering, true) => {
                if self.consecutive_successes >= recovery {
                    HealthState::Healthy
                } else {
                    HealthState::Recovering
                }
            }
            (HealthState::Recovering, false) => HealthState::Failed,
        };
        if next != self.state {
            self.state = next;
            self.since = now;
            Some(next)
        } else {
            None
        }
    }
}

/// The health of every node, keyed by id. Unknown nodes are reported healthy until observed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FleetHealth {
    pub thresholds: HealthThresholds,
    nodes: BTreeMap<NodeId, NodeHealth>,
}

impl FleetHealth {
    pub fn new(thresholds: HealthThresholds) -> Self {
        FleetHealth {
            thresholds,
            nodes: BTreeMap::new(),
        }
    }

    /// Feeds one outcome for `node`; returns the new state when it changed.
    pub fn observe(&mut self, node: &NodeId, success: bool, now: Millis) -> Option<HealthState> {
        let t = self.thresholds;
        self.nodes
            .entry(node.clone())
            .or_insert_with(|| NodeHealth::new(now))
            .observe(success, now, t)
    }

    pub fn state(&self, node: &NodeId) -> HealthState {
        self.nodes
            .get(node)
            .map(|h| h.state)
            .unwrap_or(HealthState::Healthy)
    }

    /// Whether reads may go to `node`.
    pub fn serves_reads(&self, node: &NodeId) -> bool {
        self.state(node).serves_reads()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&NodeId, &NodeHealth)> {
        self.nodes.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(u: u32, r: u32) -> HealthThresholds {
        HealthThresholds {
            unhealthy_threshold: u,
            recovery_threshold: r,
        }
    }

    #[test]
    fn fails_only_after_threshold_and_recovers_after_threshold() {
        let mut h = NodeHealth::new(0);
        assert_eq!(h.observe(false, 1, t(3, 2)), Some(HealthState::Suspect));
        assert_eq!(h.observe(false, 2, t(3, 2)), None);
        assert!(h.state.serves_reads());
        assert_eq!(h.observe(false, 3, t(3, 2)), Some(HealthState::Failed));
        assert!(!h.state.serves_reads());
        assert_eq!(h.since, 3);
        assert_eq!(h.observe(true, 4, t(3, 2)), Some(HealthState::Recovering));
        assert!(!h.state.serves_reads());
        assert_eq!(h.observe(true, 5, t(3, 2)), Some(HealthState::Healthy));
    }

    #[test]
    fn suspect_heals_on_success_and_recovering_falls_back_on_failure() {
        let mut h = NodeHealth::new(0);
        h.observe(false, 1, t(3, 3));
        assert_eq!(h.observe(true, 2, t(3, 3)), Some(HealthState::Healthy));
        for i in 0..3 {
            h.observe(false, 10 + i, t(3, 3));
        }
        assert_eq!(h.state, HealthState::Failed);
        h.observe(true, 20, t(3, 3));
        h.observe(true, 21, t(3, 3));
        assert_eq!(h.state, HealthState::Recovering);
        assert_eq!(h.observe(false, 22, t(3, 3)), Some(HealthState::Failed));
        // the success streak restarts from zero after the relapse
        h.observe(true, 23, t(3, 3));
        h.observe(true, 24, t(3, 3));
        assert_eq!(h.state, HealthState::Recovering);
        h.observe(true, 25, t(3, 3));
        assert_eq!(h.state, HealthState::Healthy);
    }

    #[test]
    fn thresholds_of_one_skip_intermediate_states() {
        let mut h = NodeHealth::new(0);
        assert_eq!(h.observe(false, 1, t(1, 1)), Some(HealthState::Failed));
        assert_eq!(h.observe(true, 2, t(1, 1)), Some(HealthState::Healthy));
        // a zero threshold is treated as one rather than never failing
        let mut z = NodeHealth::new(0);
        assert_eq!(z.observe(false, 1, t(0, 0)), Some(HealthState::Failed));
    }

    #[test]
    fn fleet_defaults_unknown_nodes_to_healthy() {
        let mut f = FleetHealth::new(t(2, 1));
        let a = NodeId::from("a");
        assert!(f.serves_reads(&a));
        f.observe(&a, false, 1);
        f.observe(&a, false, 2);
        assert_eq!(f.state(&a), HealthState::Failed);
        assert!(f.serves_reads(&NodeId::from("b")));
        assert_eq!(f.iter().count(), 1);
    }
}
