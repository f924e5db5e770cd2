//! Read-your-writes sessions: a client that sends `X-Miroir-Session: <id>` on its writes and reads sees its
//! own last write in its reads.
//!
//! A write is acknowledged once a quorum of replicas accepted it, before the nodes applied it, and another
//! replica (or replica group) may still be behind. The proxy remembers, per session, the session's last
//! acknowledged write: its Miroir task and the node tasks that acknowledged it, with their replica groups.
//! A read in the session is then routed to one of the acknowledging groups and, with the `block` strategy,
//! held until the write's node tasks in that group have succeeded (at most `session.max_wait_ms`).
//!
//! # States of one session ([`Sessions`])
//!
//! - **unknown** (never written, expired after `ttl_secs` without use, or evicted beyond `max_sessions`);
//! - **written** ([`SessionWrite`]): the last acknowledged write of the session.
//!
//! # Transitions
//!
//! - unknown/written → written: [`Sessions::record_write`] (a write of the session was acknowledged; an
//!   acknowledgement by no node is ignored);
//! - written → written: [`Sessions::plan_read`] refreshes the session's last use;
//! - any → unknown: expiry or eviction (the least recently used first), [`Sessions::prune`].
//!
//! # Read plans ([`ReadPlan`]) and waits ([`judge_wait`])
//!
//! - unknown session, or a read of another index than the write's: [`ReadPlan::Any`] (no constraint);
//! - otherwise [`ReadPlan::Pinned`]: the group (the lowest acknowledging group) and, for `block`, the node
//!   tasks to wait for in it and the deadline; `route_pin` waits for nothing;
//! - [`judge_wait`]: ready when every awaited node task succeeded (or failed / was canceled: final, nothing
//!   more to wait for); else wait until the deadline, after which the read goes ahead anyway (bounded).
//!
//! # Invariants
//!
//! - A session's memory is bounded (`max_sessions`, `ttl_secs`); a lost session only loses the guarantee,
//!   never an answer.
//! - A pinned read only goes to a group that acknowledged the write.
//! - A read never waits past its deadline.

use crate::config::{SessionConfig, SessionStrategy};
use crate::topology::{GroupId, NodeId};
use crate::Millis;
use std::collections::BTreeMap;

/// The request header naming the session.
pub const SESSION_HEADER: &str = "x-miroir-session";

/// The longest accepted session id, in bytes.
pub const MAX_SESSION_LEN: usize = 128;

/// A session id from a raw header value: 1 to [`MAX_SESSION_LEN`] visible ASCII characters; `None` when
/// malformed (the header is then ignored: sessions are best effort).
pub fn session_id(raw: &[u8]) -> Option<String> {
    if raw.is_empty()
        || raw.len() > MAX_SESSION_LEN
        || raw.iter().any(|b| !(0x21..=0x7e).contains(b))
    {
        return None;
    }
    Some(raw.iter().map(|b| char::from(*b)).collect())
}

/// The last acknowledged write of a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionWrite {
    /// The Miroir task.
    pub task_uid: u64,
    /// The index written (`None` for writes not about one index).
    pub index: Option<String>,
    /// The node tasks that acknowledged it: node, node task uid, the node's group.
    pub acks: Vec<(NodeId, u64, GroupId)>,
}

/// What a read of the session must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadPlan {
    /// No constraint.
    Any,
    /// Read from `group` only; with `block`, first wait for `wait_for` (node, node task uid) until `deadline`.
    Pinned {
        /// The acknowledging group to read from.
        group: GroupId,
        /// The node tasks of that group to wait for (empty with `route_pin`).
        wait_for: Vec<(NodeId, u64)>,
        /// The latest moment to stop waiting.
        deadline: Millis,
    },
}

/// The outcome of one look at the awaited node tasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// Every awaited task is final: read now.
    Ready,
    /// Look again later.
    Again,
    /// The deadline passed: read now anyway.
    TimedOut,
}

/// Judges the awaited node tasks' statuses (`None`: unknown, e.g. the node did not answer).
pub fn judge_wait(statuses: &[Option<&str>], now: Millis, deadline: Millis) -> Wait {
    if statuses
        .iter()
        .all(|s| matches!(s, Some("succeeded" | "failed" | "canceled")))
    {
        Wait::Ready
    } else if now >= deadline {
        Wait::TimedOut
    } else {
        Wait::Again
    }
}

/// Every session's last write, bounded.
#[derive(Debug, Clone)]
pub struct Sessions {
    config: SessionConfig,
    entries: BTreeMap<String, (SessionWrite, Millis)>,
}

impl Sessions {
    /// No session yet.
    pub fn new(config: &SessionConfig) -> Self {
        Sessions {
            config: config.clone(),
            entries: BTreeMap::new(),
        }
    }

    /// How many sessions are remembered.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no session is remembered.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Records the session's last acknowledged write (ignored when no node acknowledged it).
    pub fn record_write(&mut self, session: &str, write: SessionWrite, now: Millis) {
        if write.acks.is_empty() {
            return;
        }
        self.entries.insert(session.to_string(), (write, now));
        self.prune(now);
    }

    /// Drops expired sessions, then the least recently used beyond `max_sessions`.
    pub fn prune(&mut self, now: Millis) {
        let ttl = self.config.ttl_secs.saturating_mul(1_000);
        self.entries
            .retain(|_, (_, used)| now.saturating_sub(*used) < ttl);
        let max = usize::try_from(self.config.max_sessions).unwrap_or(usize::MAX);
        if self.entries.len() > max {
            let mut by_use: Vec<(Millis, String)> = self
                .entries
                .iter()
                .map(|(k, (_, used))| (*used, k.clone()))
                .collect();
            by_use.sort();
            let excess = self.entries.len() - max;
            for (_, k) in by_use.into_iter().take(excess) {
                self.entries.remove(&k);
            }
        }
    }

    /// The plan of a read of `index` in `session` at `now`.
    pub fn plan_read(&mut self, session: &str, index: Option<&str>, now: Millis) -> ReadPlan {
        self.prune(now);
        let Some((write, used)) = self.entries.get_mut(session) else {
            return ReadPlan::Any;
        };
        *used = now;
        if write.index.is_some() && index.is_some() && write.index.as_deref() != index {
            return ReadPlan::Any;
        }
        let Some(group) = write.acks.iter().map(|(_, _, g)| *g).min() else {
            return ReadPlan::Any;
        };
        let wait_for = match self.config.strategy {
            SessionStrategy::Block => write
                .acks
                .iter()
                .filter(|(_, _, g)| *g == group)
                .map(|(n, t, _)| (n.clone(), *t))
                .collect(),
            SessionStrategy::RoutePin => Vec::new(),
        };
        ReadPlan::Pinned {
            group,
            wait_for,
            deadline: now.saturating_add(self.config.max_wait_ms),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(strategy: SessionStrategy) -> SessionConfig {
        SessionConfig {
            strategy,
            max_wait_ms: 500,
            max_sessions: 2,
            ttl_secs: 10,
        }
    }

    fn write(uid: u64, acks: &[(&str, u64, GroupId)]) -> SessionWrite {
        SessionWrite {
            task_uid: uid,
            index: Some("movies".into()),
            acks: acks
                .iter()
                .map(|(n, t, g)| (NodeId::from(*n), *t, *g))
                .collect(),
        }
    }

    #[test]
    fn session_ids_are_validated() {
        assert_eq!(session_id(b"user-42").as_deref(), Some("user-42"));
        assert_eq!(session_id(b""), None);
        assert_eq!(session_id(b"a b"), None);
        assert_eq!(session_id(&[b'x'; MAX_SESSION_LEN + 1]), None);
        assert!(session_id(&[b'x'; MAX_SESSION_LEN]).is_some());
    }

    #[test]
    fn block_reads_wait_for_the_acknowledging_group() {
        let mut s = Sessions::new(&cfg(SessionStrategy::Block));
        assert_eq!(s.plan_read("u", Some("movies"), 0), ReadPlan::Any);
        s.record_write("u", write(7, &[("b", 3, 1), ("c", 4, 1), ("a", 9, 0)]), 0);
        assert_eq!(
            s.plan_read("u", Some("movies"), 100),
            ReadPlan::Pinned {
                group: 0,
                wait_for: vec![(NodeId::from("a"), 9)],
                deadline: 600
            }
        );
        // another index: no constraint
        assert_eq!(s.plan_read("u", Some("books"), 100), ReadPlan::Any);
        // a write acknowledged by nobody is not recorded
        s.record_write("v", write(8, &[]), 0);
        assert_eq!(s.plan_read("v", None, 0), ReadPlan::Any);
    }

    #[test]
    fn route_pin_only_routes() {
        let mut s = Sessions::new(&cfg(SessionStrategy::RoutePin));
        s.record_write("u", write(7, &[("b", 3, 1)]), 0);
        assert_eq!(
            s.plan_read("u", None, 0),
            ReadPlan::Pinned {
                group: 1,
                wait_for: vec![],
                deadline: 500
            }
        );
    }

    #[test]
    fn sessions_expire_and_are_bounded() {
        let mut s = Sessions::new(&cfg(SessionStrategy::Block));
        s.record_write("a", write(1, &[("n", 1, 0)]), 0);
        s.record_write("b", write(2, &[("n", 2, 0)]), 1);
        // using "a" makes "b" the least recently used
        assert!(matches!(s.plan_read("a", None, 2), ReadPlan::Pinned { .. }));
        s.record_write("c", write(3, &[("n", 3, 0)]), 3);
        assert_eq!(s.len(), 2);
        assert_eq!(s.plan_read("b", None, 4), ReadPlan::Any, "evicted");
        assert!(matches!(s.plan_read("c", None, 5), ReadPlan::Pinned { .. }));
        // expiry: 10 s without use
        assert_eq!(s.plan_read("a", None, 10_002), ReadPlan::Any);
        assert_eq!(s.plan_read("c", None, 10_005), ReadPlan::Any);
        assert!(s.is_empty());
    }

    #[test]
    fn waits_are_judged_and_bounded() {
        assert_eq!(judge_wait(&[], 0, 10), Wait::Ready);
        assert_eq!(
            judge_wait(&[Some("succeeded"), Some("failed")], 0, 10),
            Wait::Ready
        );
        assert_eq!(
            judge_wait(&[Some("succeeded"), Some("processing")], 9, 10),
            Wait::Again
        );
        assert_eq!(judge_wait(&[None], 10, 10), Wait::TimedOut);
    }
}
