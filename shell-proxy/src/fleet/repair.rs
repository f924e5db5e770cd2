//! Hinted handoff in the proxy: carries out core's [`HintLog`] (see `miroir_core::hints`).
//!
//! - Every node write request goes through [`WriteHints::send_or_hint`] while holding its lane's turn: a
//!   lane (index, node) holding hints, or a node the health probe marked failed, gets the request queued as
//!   a hint instead of sent; a request that fails, times out or answers 5xx becomes a hint. Each hint is
//!   persisted in the task store before the lane's turn is released, so hints keep the lanes' order and
//!   survive a restart.
//! - Once a write has its Miroir task uid, its hints are tagged with it ([`WriteHints::tag`]): the task
//!   shows `pendingReplicas` (a Miroir-specific top-level field, present only while hints remain).
//! - [`Fleet::replay_loop`] runs with the health probe: every `repair.replay_interval_ms`, each lane with
//!   hints whose node serves again is replayed in order, holding the lane's turn, until a hint is not taken.
//!   An applied hint is deleted from the store and its node task recorded in the Miroir task.
//! - An index whose deletion is still queued for some node is hidden from `GET /indexes/{uid}` and from
//!   the index list ([`Fleet::index_deletion_pending`]).
//!
//! Metrics: `miroir_hints_pending` (gauge), `miroir_hints_queued_total`, `miroir_hints_replayed_total`,
//! `miroir_hints_dropped_total{reason}` (`overflow`, `refused`) and `miroir_hint_lane_overflows_total`.

use super::{now_ms, Answer, Fleet, LaneTurn};
use crate::server::AppState;
use crate::store::TaskStore;
use miroir_core::hints::{record_replay, Admission, Hint, HintLog, ReplayOutcome, ReplayVerdict};
use miroir_core::ops::write::FanoutWrite;
use miroir_core::ops::{node_unavailable, NodeRequest};
use miroir_core::tasks::MiroirTask;
use prometheus::{IntCounter, IntCounterVec, IntGauge, Opts};
use serde_json::Value;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The repair metrics, registered once in the server's registry.
#[derive(Clone)]
pub(crate) struct RepairMetrics {
    pending: IntGauge,
    queued: IntCounter,
    replayed: IntCounter,
    dropped: IntCounterVec,
    overflows: IntCounter,
}

impl RepairMetrics {
    fn new(registry: &prometheus::Registry) -> RepairMetrics {
        let m = RepairMetrics {
            pending: IntGauge::new("miroir_hints_pending", "Hints waiting to be replayed.")
                .expect("valid metric definition"),
            queued: IntCounter::new(
                "miroir_hints_queued_total",
                "Node writes queued as hints (missed by their node).",
            )
            .expect("valid metric definition"),
            replayed: IntCounter::new(
                "miroir_hints_replayed_total",
                "Hints replayed and applied by their node.",
            )
            .expect("valid metric definition"),
            dropped: IntCounterVec::new(
                Opts::new(
                    "miroir_hints_dropped_total",
                    "Hints dropped (the lane needs anti-entropy).",
                ),
                &["reason"],
            )
            .expect("valid metric definition"),
            overflows: IntCounter::new(
                "miroir_hint_lane_overflows_total",
                "Lanes (index, node) whose hint queue overflowed repair.max_hints_per_node.",
            )
            .expect("valid metric definition"),
        };
        for c in [
            Box::new(m.pending.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(m.queued.clone()),
            Box::new(m.replayed.clone()),
            Box::new(m.dropped.clone()),
            Box::new(m.overflows.clone()),
        ] {
            // A second fleet on the same registry (tests) keeps the first registration.
            let _ = registry.register(c);
        }
        m
    }
}

/// The hint log of a fleet and what a write request needs to use it from a spawned task.
#[derive(Clone)]
pub(crate) struct WriteHints {
    log: Arc<Mutex<HintLog>>,
    store: Arc<dyn TaskStore>,
    metrics: RepairMetrics,
}

impl WriteHints {
    fn lock(&self) -> std::sync::MutexGuard<'_, HintLog> {
        self.log.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Persists what queuing a hint did; refreshes the metrics.
    async fn persist_admission(&self, admission: Admission) {
        match admission {
            Admission::Send | Admission::Blocked => {}
            Admission::Queued(hint) => {
                self.metrics.queued.inc();
                if let Err(e) = self.store.put_hint(hint.seq, &hint.to_json()).await {
                    tracing::error!(error = %e, node = %hint.node, "cannot persist a hint");
                }
            }
            Admission::Overflowed(dropped) => {
                self.metrics.overflows.inc();
                self.metrics
                    .dropped
                    .with_label_values(&["overflow"])
                    .inc_by(dropped.len() as u64);
                if let Some(h) = dropped.first() {
                    tracing::warn!(index = %h.index, node = %h.node, "hint queue overflowed: the node needs anti-entropy");
                }
                for h in dropped {
                    if let Err(e) = self.store.delete_hint(h.seq).await {
                        tracing::error!(error = %e, "cannot delete a dropped hint");
                    }
                }
            }
        }
        let pending = self.lock().len();
        self.metrics.pending.set(pending as i64);
    }

    /// Gives the hints of `write`'s requests still untagged the Miroir task uid `uid` (the uid is allocated
    /// once the write is acknowledged, after its hints were queued).
    pub(crate) async fn tag(&self, write: &FanoutWrite, uid: u64) {
        let changed = {
            let mut log = self.lock();
            let index = write.record().index_uid.unwrap_or_default();
            let seqs: Vec<u64> = log
                .hints()
                .into_iter()
                .filter(|h| {
                    h.task_uid.is_none()
                        && h.index == index
                        && write.requests().iter().any(|r| {
                            r.node == h.node
                                && r.method == h.method
                                && r.path == h.path
                                && r.body == h.body
                        })
                })
                .map(|h| h.seq)
                .collect();
            log.set_task_uid(&seqs, uid)
        };
        for h in changed {
            if let Err(e) = self.store.put_hint(h.seq, &h.to_json()).await {
                tracing::error!(error = %e, "cannot tag a hint with its task");
            }
        }
    }

    /// Sends `request` of `index` (its lane's turn held), or queues it as a hint; a request the node misses
    /// becomes a hint. The answer is what the write's quorum sees: a queued request counts as failed.
    pub(crate) async fn send_or_hint(
        &self,
        index: &str,
        request: NodeRequest,
        node_down: bool,
        send: impl Future<Output = (usize, Answer)>,
    ) -> (usize, Answer) {
        let admission = self
            .lock()
            .admit(index, &request, None, node_down, now_ms());
        let refusal = match admission {
            Admission::Send => None,
            Admission::Blocked => Some(format!(
                "node {} has writes of index `{index}` to catch up first: not sent",
                request.node
            )),
            Admission::Queued(_) | Admission::Overflowed(_) => Some(format!(
                "node {} misses writes of index `{index}`: queued as a hint",
                request.node
            )),
        };
        if let Some(refusal) = refusal {
            self.persist_admission(admission).await;
            return (request.id, Err(refusal));
        }
        let (id, answer) = send.await;
        let missed = match &answer {
            Ok((status, _)) => node_unavailable(*status),
            Err(_) => true,
        };
        if missed {
            let admission = self.lock().add(index, &request, None, now_ms());
            self.persist_admission(admission).await;
        }
        (id, answer)
    }
}

impl Fleet {
    /// The fleet's hint log, loaded from the store on first use (so a restarted proxy resumes its hints
    /// before sending any write). `None` while the store cannot list them: writes are then sent without
    /// hinted handoff, and loading is tried again on the next write.
    pub(crate) async fn write_hints(&self, state: &AppState) -> Option<WriteHints> {
        let metrics = self
            .repair_metrics
            .get_or_init(|| RepairMetrics::new(state.metrics.registry()))
            .clone();
        let loaded = self
            .hints_loaded
            .get_or_try_init(|| async {
                let stored = state.store.list_hints().await?;
                let hints: Vec<Hint> = stored.iter().filter_map(Hint::from_json).collect();
                if hints.len() < stored.len() {
                    tracing::error!(
                        unreadable = stored.len() - hints.len(),
                        "some stored hints cannot be read and are ignored"
                    );
                }
                let max =
                    usize::try_from(state.config.repair.max_hints_per_node).unwrap_or(usize::MAX);
                let log = HintLog::restore(max, hints);
                metrics.pending.set(log.len() as i64);
                *self.hints.lock().unwrap_or_else(|p| p.into_inner()) = log;
                Ok::<(), crate::store::StoreError>(())
            })
            .await;
        if let Err(e) = loaded {
            tracing::error!(error = %e, "cannot load the hints: writes go without hinted handoff for now");
            return None;
        }
        Some(WriteHints {
            log: Arc::clone(&self.hints),
            store: Arc::clone(&state.store),
            metrics,
        })
    }

    /// The hint log if it is already loaded (see [`Fleet::write_hints`]).
    pub(crate) fn loaded_hints(&self, state: &AppState) -> Option<WriteHints> {
        self.hints_loaded.initialized().then(|| WriteHints {
            log: Arc::clone(&self.hints),
            store: Arc::clone(&state.store),
            metrics: self
                .repair_metrics
                .get_or_init(|| RepairMetrics::new(state.metrics.registry()))
                .clone(),
        })
    }

    /// Whether `node` is known down (failed or not yet recovered): its writes are hinted without waiting.
    pub(crate) fn node_down(&self, node: &miroir_core::topology::NodeId) -> bool {
        !self.healthy(node)
    }

    /// How many replicas of task `uid` still wait for a hint (in the loaded log: see `write_hints`).
    pub(crate) fn pending_replicas(&self, uid: u64) -> usize {
        self.hints
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pending_for_task(uid)
    }

    /// Whether a deletion of index `uid` is still queued for some node.
    pub(crate) fn index_deletion_pending(&self, uid: &str) -> bool {
        self.hints
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .deletion_pending(uid)
    }

    /// Removes the indexes whose deletion is still queued from a node's `GET /indexes` answer.
    pub(crate) fn hide_deleted_indexes(&self, body: &mut Value) {
        let Some(results) = body.get_mut("results").and_then(Value::as_array_mut) else {
            return;
        };
        let before = results.len();
        results.retain(|i| {
            !i.get("uid")
                .and_then(Value::as_str)
                .is_some_and(|u| self.index_deletion_pending(u))
        });
        let hidden = (before - results.len()) as u64;
        if let Some(total) = body.get_mut("total") {
            if let Some(t) = total.as_u64() {
                *total = Value::from(t.saturating_sub(hidden));
            }
        }
    }

    /// Replays hints every `repair.replay_interval_ms` to the nodes that serve again. Runs with the probe.
    pub(crate) async fn replay_loop(self: Arc<Self>, state: Arc<AppState>) {
        let period = Duration::from_millis(state.config.repair.replay_interval_ms.max(10));
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            self.replay_once(&state).await;
        }
    }

    /// One replay pass: every lane whose node serves is replayed in order until a hint is not taken.
    pub(crate) async fn replay_once(self: &Arc<Self>, state: &Arc<AppState>) {
        let Some(hints) = self.write_hints(state).await else {
            return;
        };
        let lanes = hints.lock().pending_lanes();
        let mut set = tokio::task::JoinSet::new();
        for (index, node) in lanes {
            if !self.healthy(&node) {
                continue;
            }
            let fleet = Arc::clone(self);
            let state = Arc::clone(state);
            let hints = hints.clone();
            let mut turn = self.lane_turn(&index, &node);
            set.spawn(async move {
                turn.acquire().await;
                loop {
                    let next = hints.lock().next_replay(&index, &node);
                    let Some(hint) = next else { break };
                    let (_, answer) = fleet.request_future(&state, hint.request(0)).await;
                    let verdict = match &answer {
                        Ok((status, body)) => ReplayVerdict::from_response(&hint, *status, body),
                        Err(_) => ReplayVerdict::Retry,
                    };
                    let outcome = hints.lock().on_replay(hint.seq, verdict);
                    let more = fleet.settle_replay(&state, &hints, outcome).await;
                    if !more {
                        break;
                    }
                }
                drop(turn);
            });
        }
        while set.join_next().await.is_some() {}
        hints.metrics.pending.set(hints.lock().len() as i64);
    }

    /// Persists a replay's outcome; returns whether the lane may go on with its next hint.
    async fn settle_replay(
        &self,
        state: &AppState,
        hints: &WriteHints,
        outcome: ReplayOutcome,
    ) -> bool {
        match outcome {
            ReplayOutcome::Done {
                hint,
                node_task_uid,
            } => {
                hints.metrics.replayed.inc();
                if let Err(e) = state.store.delete_hint(hint.seq).await {
                    tracing::error!(error = %e, "cannot delete a replayed hint");
                }
                if let Some(uid) = hint.task_uid {
                    self.record_replayed(state, uid, &hint, node_task_uid).await;
                }
                true
            }
            ReplayOutcome::Dropped(hint) => {
                hints.metrics.dropped.with_label_values(&["refused"]).inc();
                tracing::warn!(index = %hint.index, node = %hint.node, path = %hint.path, "a node refused a replayed hint: the node needs anti-entropy");
                if let Err(e) = state.store.delete_hint(hint.seq).await {
                    tracing::error!(error = %e, "cannot delete a refused hint");
                }
                true
            }
            ReplayOutcome::Kept(hint) => {
                if let Err(e) = state.store.put_hint(hint.seq, &hint.to_json()).await {
                    tracing::warn!(error = %e, "cannot count a failed replay");
                }
                false
            }
            ReplayOutcome::Unknown => false,
        }
    }

    /// Names the node task of a replayed hint in its Miroir task record.
    async fn record_replayed(
        &self,
        state: &AppState,
        uid: u64,
        hint: &Hint,
        node_task_uid: Option<u64>,
    ) {
        let Ok(Some(mut stored)) = state.store.get_task(uid).await else {
            return;
        };
        let Ok(mut record) = serde_json::from_value::<MiroirTask>(stored["record"].clone()) else {
            return;
        };
        if record_replay(&mut record, &hint.node, node_task_uid) {
            stored["record"] = serde_json::to_value(&record).unwrap_or(Value::Null);
            if let Err(e) = state.store.put_task(uid, &stored).await {
                tracing::warn!(error = %e, "cannot record a replayed node task");
            }
        }
    }

    /// A turn on lane (`index`, `node`), queued behind the lane's earlier requests.
    fn lane_turn(&self, index: &str, node: &miroir_core::topology::NodeId) -> LaneTurn {
        let (go, wait) = tokio::sync::oneshot::channel::<()>();
        if let Some(go) = self
            .lanes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .submit(index, node, go)
        {
            let _ = go.send(());
        }
        LaneTurn {
            lanes: self.lanes.clone(),
            index: index.to_string(),
            node: node.clone(),
            wait,
            holding: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use miroir_core::config::Config;
    use miroir_core::ops::Method;
    use miroir_core::topology::NodeId;
    use serde_json::json;

    fn fleet() -> Fleet {
        let yaml = "miroir:\n  shards: 4\n  replication_factor: 2\n  nodes:\n    - { id: a, address: \"http://127.0.0.1:1\" }\n    - { id: b, address: \"http://127.0.0.1:2\" }\n";
        Fleet::new(&Config::from_yaml_str(yaml, &|_| None).unwrap()).unwrap()
    }

    #[tokio::test]
    async fn admissions_are_persisted_and_counted() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn TaskStore> = Arc::new(
            crate::store::sqlite::SqliteStore::open(dir.path().join("h.db"))
                .await
                .unwrap(),
        );
        let metrics = crate::metrics::Metrics::new();
        let hints = WriteHints {
            log: Arc::new(Mutex::new(HintLog::new(2))),
            store: Arc::clone(&store),
            metrics: RepairMetrics::new(metrics.registry()),
        };
        let r = |n: u64| NodeRequest {
            id: n as usize,
            node: NodeId::from("a"),
            method: Method::Post,
            path: "/indexes/movies/documents".into(),
            body: Some(json!([{"id": n}])),
        };
        // a 503 becomes a hint; the next write queues behind it without being sent
        let (_, answer) = hints
            .send_or_hint("movies", r(0), false, async { (0, Ok((503, Value::Null))) })
            .await;
        assert_eq!(answer.unwrap().0, 503);
        let (id, answer) = hints
            .send_or_hint("movies", r(1), false, async {
                panic!("a lane with hints sends nothing")
            })
            .await;
        assert_eq!(id, 1);
        assert!(answer.unwrap_err().contains("queued as a hint"));
        assert_eq!(store.list_hints().await.unwrap().len(), 2);
        // a 2xx on a clear lane of another node is not hinted
        let (_, answer) = hints
            .send_or_hint(
                "movies",
                NodeRequest {
                    node: NodeId::from("b"),
                    ..r(2)
                },
                false,
                async { (2, Ok((202, json!({"taskUid": 1})))) },
            )
            .await;
        assert!(answer.is_ok());
        // the third hint of lane (movies, a) overflows the bound of 2: the lane's hints are dropped
        let _ = hints
            .send_or_hint("movies", r(3), true, async { unreachable!() })
            .await;
        assert!(store.list_hints().await.unwrap().is_empty());
        assert_eq!(hints.lock().anti_entropy().len(), 1);
        let text = metrics.render();
        assert!(text.contains("miroir_hints_queued_total 2"), "{text}");
        assert!(
            text.contains("miroir_hint_lane_overflows_total 1"),
            "{text}"
        );
        assert!(
            text.contains("miroir_hints_dropped_total{reason=\"overflow\"} 3"),
            "{text}"
        );
        assert!(text.contains("miroir_hints_pending 0"), "{text}");
    }

    #[test]
    fn pending_index_deletions_hide_the_index_and_tasks_count_pending_replicas() {
        let f = fleet();
        let delete = NodeRequest {
            id: 0,
            node: NodeId::from("b"),
            method: Method::Delete,
            path: "/indexes/movies".into(),
            body: None,
        };
        {
            let mut log = f.hints.lock().unwrap();
            log.add("movies", &delete, Some(5), 0);
            log.add(
                "books",
                &NodeRequest {
                    path: "/indexes/books/documents".into(),
                    method: Method::Post,
                    ..delete.clone()
                },
                Some(5),
                0,
            );
        }
        assert!(f.index_deletion_pending("movies"));
        assert!(
            !f.index_deletion_pending("books"),
            "a document write is no deletion"
        );
        assert_eq!(f.pending_replicas(5), 2);
        assert_eq!(f.pending_replicas(6), 0);
        let mut list = json!({"results": [{"uid": "books"}, {"uid": "movies"}], "offset": 0, "limit": 20, "total": 2});
        f.hide_deleted_indexes(&mut list);
        assert_eq!(list["results"], json!([{"uid": "books"}]));
        assert_eq!(list["total"], 1);
        let mut odd = json!({"message": "not a list"});
        f.hide_deleted_indexes(&mut odd);
        assert_eq!(odd, json!({"message": "not a list"}));
    }
}
