//! Two-phase settings: every node of an index holds the same settings, or Miroir knows it and repairs it.
//!
//! A settings write is broadcast to every node (quorum `all`), but nodes apply it one by one, a node may be
//! down, and anyone can change a node's settings behind Miroir's back. This state machine, one per index,
//! drives the proxy: it says when to read every node's settings back, which nodes to repair with which
//! settings, when to commit a new `settings_version`, and when to freeze the index's writes.
//!
//! Settings are compared by [`settings_hash`]: XXH3-128 of the node's settings with Miroir's own entries
//! removed (`_miroir_*` in `filterableAttributes`), every object's keys sorted.
//!
//! # States ([`Phase`])
//!
//! - **idle / committed**: the reachable nodes agreed at the last check; `committed` (if any) holds the
//!   agreed settings, their hash and the `settings_version`;
//! - **proposing**: a settings write is being sent or its node tasks are running; reads are answered with
//!   `X-Miroir-Settings-Inconsistent: true`, drift checks are skipped;
//! - **verifying**: the write's node tasks finished; every node's settings are being read back (still
//!   inconsistent for reads);
//! - **repairing** (`attempt`, `next_at`): some reachable nodes diverge from the target; the target settings
//!   were re-sent to them and the next read-back is due at `next_at` (exponential backoff);
//! - **frozen**: more than `max_repair_retries` repairs did not converge: writes to the index are refused
//!   with 503 `miroir_settings_frozen` until a read-back finds every reachable node agreeing.
//!
//! # Transitions
//!
//! - committed/repairing/frozen → proposing: [`SettingsSync::propose`] (a client settings write begins);
//! - proposing → verifying: [`SettingsSync::proposal_applied`] (its node tasks finished, or it was refused:
//!   [`SettingsSync::proposal_refused`] goes back to committed, and the next drift check repairs whatever a
//!   refused write left behind);
//! - any read-back ([`SettingsSync::on_read`]): the target is the committed hash after a drift check, the
//!   most common hash among reachable nodes after a proposal (or when nothing was ever committed); all
//!   reachable nodes on the target → committed (version + 1 when the hash changed or nothing was committed);
//!   else → repairing (attempt + 1) with [`Action::Repair`], or → frozen once `attempt > max_repair_retries`;
//! - committed/repairing(due)/frozen → a read-back: [`SettingsSync::drift_check`] (the periodic check).
//!
//! # Invariants
//!
//! - `settings_version` only grows, and only when every reachable node was read holding the committed hash.
//! - A drift check never repairs while a proposal is in progress (it would undo a half-applied write).
//! - Nodes that do not answer are never counted as agreeing nor repaired; the next check covers them.

use crate::config::SettingsSyncConfig;
use crate::topology::NodeId;
use crate::{MeiliError, Millis, RESERVED_PREFIX};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// Response header: the index's committed settings version.
pub const SETTINGS_VERSION_HEADER: &str = "x-miroir-settings-version";
/// Response header on reads while a settings change is being applied or verified.
pub const SETTINGS_INCONSISTENT_HEADER: &str = "x-miroir-settings-inconsistent";
/// Request header: the lowest settings version a read accepts.
pub const MIN_SETTINGS_VERSION_HEADER: &str = "x-miroir-min-settings-version";

/// The hash two nodes agree on when they hold the same settings (Miroir's own entries ignored).
pub fn settings_hash(node_settings: &Value) -> String {
    let mut v = node_settings.clone();
    if let Some(Value::Array(items)) = v.get_mut("filterableAttributes") {
        items.retain(|item| !is_reserved_entry(item));
    }
    let mut out = Vec::new();
    canonical(&v, &mut out);
    format!("{:032x}", xxhash_rust::xxh3::xxh3_128(&out))
}

fn is_reserved_entry(v: &Value) -> bool {
    match v {
        Value::String(s) => s.starts_with(RESERVED_PREFIX),
        Value::Object(o) => o
            .get("attributePatterns")
            .and_then(Value::as_array)
            .is_some_and(|p| {
                !p.is_empty()
                    && p.iter()
                        .all(|x| x.as_str().is_some_and(|s| s.starts_with(RESERVED_PREFIX)))
            }),
        _ => false,
    }
}

fn canonical(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            out.push(b'{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(Value::String(k.clone()).to_string().as_bytes());
                out.push(b':');
                canonical(&m[k], out);
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                canonical(item, out);
            }
            out.push(b']');
        }
        other => out.extend_from_slice(other.to_string().as_bytes()),
    }
}

/// Whether a settings write another proxy started at `proposed_at` (its marker in the shared store) may still
/// be in progress at `now`: drift checks skip the index until it is verified or `verify_timeout_ms` passed,
/// so one proxy never undoes another's half-applied change.
pub fn proposal_in_progress(
    proposed_at: Option<Millis>,
    now: Millis,
    config: &SettingsSyncConfig,
) -> bool {
    proposed_at.is_some_and(|at| now.saturating_sub(at) < config.verify_timeout_ms)
}

/// The persisted agreement of an index's nodes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Committed {
    /// The settings version: 1 for the first agreement, + 1 at every change.
    pub version: u64,
    /// [`settings_hash`] of `settings`.
    pub hash: String,
    /// A node's full settings (as the nodes hold them), used to repair diverging nodes.
    pub settings: Value,
}

/// Where an index's settings stand. See the module documentation.
#[derive(Debug, Clone, PartialEq)]
pub enum Phase {
    /// Agreed at the last check (or never checked yet).
    Committed,
    /// A client settings write is being applied.
    Proposing,
    /// Its node tasks finished; the read-back is due.
    Verifying,
    /// Diverging nodes were sent the target settings; the next read-back is due at `next_at`.
    Repairing {
        /// Repairs sent so far in this episode.
        attempt: u32,
        /// When the next read-back is due.
        next_at: Millis,
        /// Whether the episode follows a proposal (target = most common) or a drift check (target =
        /// committed).
        after_proposal: bool,
    },
    /// Repairs did not converge: writes are refused.
    Frozen {
        /// The nodes still diverging at the last read-back.
        diverging: Vec<NodeId>,
    },
}

/// What the shell must do next.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Nothing now.
    Nothing,
    /// Read every node's settings (`GET /indexes/{uid}/settings`) and call [`SettingsSync::on_read`].
    ReadAll,
    /// Store this agreement (`settings_version` and the settings) in the task store.
    Commit(Committed),
    /// Send `settings` (`PATCH /indexes/{uid}/settings`) to these nodes, then read back after the backoff.
    Repair {
        /// The diverging nodes.
        nodes: Vec<NodeId>,
        /// The target settings (a node's full settings).
        settings: Value,
        /// When to read back.
        read_at: Millis,
    },
    /// Refuse the index's writes and raise an alert: these nodes could not be repaired.
    Freeze {
        /// The nodes still diverging.
        diverging: Vec<NodeId>,
    },
}

/// One index's two-phase settings state machine.
#[derive(Debug, Clone, PartialEq)]
pub struct SettingsSync {
    committed: Option<Committed>,
    phase: Phase,
    config: SettingsSyncConfig,
}

impl SettingsSync {
    /// A machine starting from the persisted agreement, if any.
    pub fn new(committed: Option<Committed>, config: &SettingsSyncConfig) -> Self {
        SettingsSync {
            committed,
            phase: Phase::Committed,
            config: config.clone(),
        }
    }

    /// The phase.
    pub fn phase(&self) -> &Phase {
        &self.phase
    }

    /// The persisted agreement.
    pub fn committed(&self) -> Option<&Committed> {
        self.committed.as_ref()
    }

    /// The committed settings version (0 when nothing was committed yet).
    pub fn version(&self) -> u64 {
        self.committed.as_ref().map_or(0, |c| c.version)
    }

    /// Whether reads must carry `X-Miroir-Settings-Inconsistent: true`.
    pub fn inconsistent(&self) -> bool {
        !matches!(self.phase, Phase::Committed)
    }

    /// Whether a client write to the index must be refused, and with which error. Settings writes are
    /// always let through (a new agreement unfreezes the index).
    pub fn write_refusal(&self, index: &str) -> Option<MeiliError> {
        match &self.phase {
            Phase::Frozen { diverging } => Some(MeiliError::settings_frozen(
                index,
                &diverging.iter().map(NodeId::as_str).collect::<Vec<_>>(),
            )),
            _ => None,
        }
    }

    /// Checks a read's `X-Miroir-Min-Settings-Version`.
    pub fn check_min_version(&self, index: &str, min: u64) -> Result<(), MeiliError> {
        if self.version() >= min {
            Ok(())
        } else {
            Err(MeiliError::settings_version_stale(
                index,
                min,
                self.version(),
            ))
        }
    }

    /// A client settings write begins.
    pub fn propose(&mut self) {
        self.phase = Phase::Proposing;
    }

    /// The write was refused (nothing acknowledged): back to the committed state; the next drift check
    /// repairs what it may have changed on some nodes.
    pub fn proposal_refused(&mut self) {
        if self.phase == Phase::Proposing {
            self.phase = Phase::Committed;
        }
    }

    /// The write's node tasks finished: read every node back.
    pub fn proposal_applied(&mut self) -> Action {
        self.phase = Phase::Verifying;
        Action::ReadAll
    }

    /// The periodic drift check at `now`.
    pub fn drift_check(&mut self, now: Millis) -> Action {
        match &self.phase {
            Phase::Proposing | Phase::Verifying => Action::Nothing,
            Phase::Repairing { next_at, .. } if *next_at > now => Action::Nothing,
            _ => Action::ReadAll,
        }
    }

    /// The read-back: each node's settings, `None` for a node that did not answer.
    pub fn on_read(&mut self, reads: &BTreeMap<NodeId, Option<Value>>, now: Millis) -> Action {
        let hashes: BTreeMap<&NodeId, (String, &Value)> = reads
            .iter()
            .filter_map(|(n, v)| v.as_ref().map(|v| (n, (settings_hash(v), v))))
            .collect();
        if hashes.is_empty() {
            // nobody answered: nothing to learn; stay as we are (a proposal stays unverified)
            if self.phase == Phase::Verifying {
                self.phase = Phase::Committed;
            }
            return Action::Nothing;
        }
        let after_proposal = match &self.phase {
            Phase::Verifying => true,
            Phase::Repairing { after_proposal, .. } => *after_proposal,
            _ => false,
        };
        let target: (String, Value) = match (&self.committed, after_proposal) {
            (Some(c), false) => (c.hash.clone(), c.settings.clone()),
            _ => {
                // the most common hash among the nodes that answered; ties: the smallest hash
                let mut counts: BTreeMap<&str, (usize, &Value)> = BTreeMap::new();
                for (h, v) in hashes.values() {
                    counts.entry(h.as_str()).or_insert((0, v)).0 += 1;
                }
                let best = counts
                    .iter()
                    .max_by(|a, b| a.1 .0.cmp(&b.1 .0).then_with(|| b.0.cmp(a.0)))
                    .map(|(h, (_, v))| (h.to_string(), (*v).clone()));
                match best {
                    Some(b) => b,
                    None => return Action::Nothing,
                }
            }
        };
        let diverging: Vec<NodeId> = hashes
            .iter()
            .filter(|(_, (h, _))| *h != target.0)
            .map(|(n, _)| (*n).clone())
            .collect();
        if diverging.is_empty() {
            self.phase = Phase::Committed;
            let changed = self.committed.as_ref().is_none_or(|c| c.hash != target.0);
            if changed {
                let committed = Committed {
                    version: self.version() + 1,
                    hash: target.0,
                    settings: target.1,
                };
                self.committed = Some(committed.clone());
                return Action::Commit(committed);
            }
            return Action::Nothing;
        }
        let attempt = match &self.phase {
            Phase::Repairing { attempt, .. } => attempt + 1,
            Phase::Frozen { .. } => self.config.max_repair_retries + 1,
            _ => 1,
        };
        if attempt > self.config.max_repair_retries {
            self.phase = Phase::Frozen {
                diverging: diverging.clone(),
            };
            return Action::Freeze { diverging };
        }
        let backoff = self
            .config
            .repair_backoff_ms
            .saturating_mul(1u64 << (attempt - 1).min(16));
        let read_at = now.saturating_add(backoff);
        self.phase = Phase::Repairing {
            attempt,
            next_at: read_at,
            after_proposal,
        };
        Action::Repair {
            nodes: diverging,
            settings: target.1,
            read_at,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cfg() -> SettingsSyncConfig {
        SettingsSyncConfig {
            drift_check_interval_ms: 1_000,
            max_repair_retries: 2,
            repair_backoff_ms: 100,
            verify_timeout_ms: 10_000,
        }
    }

    fn reads(items: &[(&str, Option<Value>)]) -> BTreeMap<NodeId, Option<Value>> {
        items
            .iter()
            .map(|(n, v)| (NodeId::from(*n), v.clone()))
            .collect()
    }

    #[test]
    fn foreign_proposals_hold_drift_checks_until_their_timeout() {
        let c = cfg();
        assert!(!proposal_in_progress(None, 5, &c));
        assert!(proposal_in_progress(Some(1_000), 10_999, &c));
        assert!(!proposal_in_progress(Some(1_000), 11_000, &c));
        assert!(
            proposal_in_progress(Some(2_000), 1_000, &c),
            "clock skew: a future marker holds"
        );
    }

    #[test]
    fn hashes_ignore_miroir_fields_and_key_order() {
        let a = json!({"filterableAttributes": ["genre", "_miroir_shard"], "rankingRules": ["words"], "x": {"b": 1, "a": 2}});
        let b = json!({"x": {"a": 2, "b": 1}, "rankingRules": ["words"], "filterableAttributes": ["genre"]});
        assert_eq!(settings_hash(&a), settings_hash(&b));
        let pattern = json!({"filterableAttributes": [{"attributePatterns": ["_miroir_shard"], "features": {}}, "genre"], "rankingRules": ["words"], "x": {"a": 2, "b": 1}});
        assert_eq!(settings_hash(&pattern), settings_hash(&b));
        let c = json!({"filterableAttributes": ["genre", "year"], "rankingRules": ["words"], "x": {"a": 2, "b": 1}});
        assert_ne!(settings_hash(&c), settings_hash(&b));
        let order = json!({"filterableAttributes": ["genre"], "rankingRules": ["typo", "words"]});
        let order2 = json!({"filterableAttributes": ["genre"], "rankingRules": ["words", "typo"]});
        assert_ne!(
            settings_hash(&order),
            settings_hash(&order2),
            "list order matters"
        );
    }

    #[test]
    fn a_proposal_commits_once_every_reachable_node_agrees() {
        let mut s = SettingsSync::new(None, &cfg());
        assert_eq!(s.version(), 0);
        assert!(!s.inconsistent());
        s.propose();
        assert!(s.inconsistent());
        assert_eq!(
            s.drift_check(0),
            Action::Nothing,
            "no drift repair during a proposal"
        );
        assert_eq!(s.proposal_applied(), Action::ReadAll);
        assert!(s.inconsistent());
        let v = json!({"filterableAttributes": ["genre"]});
        let a = s.on_read(
            &reads(&[("a", Some(v.clone())), ("b", Some(v.clone())), ("c", None)]),
            0,
        );
        let Action::Commit(c) = a else {
            panic!("{a:?}")
        };
        assert_eq!((c.version, &c.settings), (1, &v));
        assert_eq!(s.version(), 1);
        assert!(!s.inconsistent());
        // the same settings again: no new version
        s.propose();
        s.proposal_applied();
        assert_eq!(
            s.on_read(&reads(&[("a", Some(v.clone())), ("b", Some(v))]), 0),
            Action::Nothing
        );
        assert_eq!(s.version(), 1);
        assert!(s.check_min_version("i", 1).is_ok());
        let e = s.check_min_version("i", 2).unwrap_err();
        assert_eq!(
            (e.status, e.code.as_str()),
            (503, "miroir_settings_version_stale")
        );
    }

    #[test]
    fn drift_is_repaired_towards_the_committed_settings_with_backoff_then_frozen() {
        let old = json!({"filterableAttributes": ["genre"]});
        let drifted = json!({"filterableAttributes": ["year"]});
        let committed = Committed {
            version: 3,
            hash: settings_hash(&old),
            settings: old.clone(),
        };
        let mut s = SettingsSync::new(Some(committed), &cfg());
        assert_eq!(s.drift_check(0), Action::ReadAll);
        // two nodes drifted: still repaired towards the committed settings, not the majority
        let r = reads(&[
            ("a", Some(old.clone())),
            ("b", Some(drifted.clone())),
            ("c", Some(drifted.clone())),
        ]);
        assert_eq!(
            s.on_read(&r, 1_000),
            Action::Repair {
                nodes: vec![NodeId::from("b"), NodeId::from("c")],
                settings: old.clone(),
                read_at: 1_100
            }
        );
        assert!(s.inconsistent());
        assert_eq!(s.drift_check(1_050), Action::Nothing, "backoff");
        assert_eq!(s.drift_check(1_100), Action::ReadAll);
        let Action::Repair { read_at, .. } = s.on_read(&r, 1_100) else {
            panic!()
        };
        assert_eq!(read_at, 1_300, "exponential backoff");
        assert!(s.write_refusal("i").is_none());
        let a = s.on_read(&r, 1_300);
        assert_eq!(
            a,
            Action::Freeze {
                diverging: vec![NodeId::from("b"), NodeId::from("c")]
            }
        );
        let e = s.write_refusal("idx").unwrap();
        assert_eq!((e.status, e.code.as_str()), (503, "miroir_settings_frozen"));
        assert!(e.message.contains("`idx`") && e.message.contains("b, c"));
        // still frozen while diverging; unfrozen once they agree again, without a new version
        assert_eq!(s.drift_check(5_000), Action::ReadAll);
        assert!(matches!(s.on_read(&r, 5_000), Action::Freeze { .. }));
        let healed = reads(&[("a", Some(old.clone())), ("b", Some(old.clone()))]);
        assert_eq!(s.on_read(&healed, 6_000), Action::Nothing);
        assert_eq!(s.version(), 3);
        assert!(s.write_refusal("idx").is_none());
    }

    #[test]
    fn after_a_proposal_the_most_common_settings_win() {
        let old = json!({"filterableAttributes": ["genre"]});
        let new = json!({"filterableAttributes": ["genre", "year"]});
        let mut s = SettingsSync::new(
            Some(Committed {
                version: 1,
                hash: settings_hash(&old),
                settings: old.clone(),
            }),
            &cfg(),
        );
        s.propose();
        s.proposal_applied();
        let a = s.on_read(
            &reads(&[
                ("a", Some(new.clone())),
                ("b", Some(new.clone())),
                ("c", Some(old.clone())),
            ]),
            0,
        );
        assert_eq!(
            a,
            Action::Repair {
                nodes: vec![NodeId::from("c")],
                settings: new.clone(),
                read_at: 100
            }
        );
        // the repair episode keeps the proposal's target
        let a = s.on_read(
            &reads(&[
                ("a", Some(new.clone())),
                ("b", Some(new.clone())),
                ("c", Some(new.clone())),
            ]),
            100,
        );
        let Action::Commit(c) = a else {
            panic!("{a:?}")
        };
        assert_eq!(c.version, 2);
        assert_eq!(c.settings, new);
    }

    #[test]
    fn refused_proposals_and_silent_fleets() {
        let mut s = SettingsSync::new(None, &cfg());
        s.propose();
        s.proposal_refused();
        assert_eq!(s.phase(), &Phase::Committed);
        s.proposal_refused();
        assert_eq!(s.phase(), &Phase::Committed);
        s.propose();
        s.proposal_applied();
        assert_eq!(s.on_read(&reads(&[("a", None)]), 0), Action::Nothing);
        assert_eq!(s.phase(), &Phase::Committed);
        assert_eq!(s.committed(), None);
        // ties between two hashes: the smallest hash wins, deterministically
        let x = json!({"a": 1});
        let y = json!({"a": 2});
        let a = s.on_read(
            &reads(&[("n1", Some(x.clone())), ("n2", Some(y.clone()))]),
            0,
        );
        let Action::Repair { settings, .. } = a else {
            panic!("{a:?}")
        };
        let want = if settings_hash(&x) < settings_hash(&y) {
            x
        } else {
            y
        };
        assert_eq!(settings, want);
    }
}
