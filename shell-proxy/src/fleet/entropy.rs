//! Self-healing replicas in the proxy (core's `entropy`): versions and tombstones on the write path, and
//! anti-entropy passes (scheduled, and `POST /_miroir/verify`).
//!
//! States: one process-wide version clock (core's hybrid logical clock, fed the wall clock). Transitions:
//! every write the fleet drives takes a fresh stamp ([`stamp`]); its documents carry it in `_miroir_v`, its
//! deletes are recorded as tombstones in the task store at that version ([`Fleet::stamp_write`]).
//! A pass ([`Fleet::anti_entropy_pass`]) drives core's `AntiEntropy` over every shard of one index with
//! the node client, one request at a time, throttled to `anti_entropy.docs_per_second`. After a repairing
//! pass that left no difference behind, the index's tombstones older than both the pass's start and
//! `anti_entropy.tombstone_grace_ms` are pruned. The scheduled loop ([`Fleet::entropy_loop`]) runs a pass
//! over every known index each `anti_entropy.interval_ms` (0 = never), repairing when `anti_entropy.repair`.
//!
//! Invariants:
//! - a delete is never sent before its tombstones are durable: a write whose tombstones cannot be stored
//!   is refused (every node request counts as failed, so the client gets the no-quorum error and may retry),
//!   because anti-entropy would otherwise bring the deleted documents back from a replica that missed it;
//! - stamps strictly increase within the process; proxies sharing one store use distinct instance numbers
//!   (the low 8 bits of the process id, so two proxies on one host differ), and when two still collide in
//!   one millisecond, anti-entropy breaks the tie by content, identically on every replica.

use super::{index_not_found, json_body, now_ms, Fleet};
use crate::http_util::{json_response, ProxyResponse};
use crate::server::{AppState, ProxyRequest};
use crate::store::StoreError;
use miroir_core::entropy::{
    record_deletes, stamp_request, Action, AntiEntropy, EntropyParams, Report, Tombstones,
    VersionClock,
};
use miroir_core::ops::write::FanoutWrite;
use miroir_core::ops::NodeRequest;
use miroir_core::{MeiliError, Millis};
use prometheus::{IntCounter, IntCounterVec, Opts};
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

static CLOCK: OnceLock<Mutex<VersionClock>> = OnceLock::new();

/// The next write version at wall time `now` (ms).
pub(crate) fn stamp(now: Millis) -> u64 {
    let clock =
        CLOCK.get_or_init(|| Mutex::new(VersionClock::for_instance(std::process::id() as u8)));
    clock.lock().unwrap_or_else(|p| p.into_inner()).stamp(now)
}

impl Fleet {
    /// Stamps `write`'s documents with a fresh version and stores the tombstones of the deletes it carries,
    /// before anything is sent; `extra` (the same client write sent to a resharding's other index) gets the
    /// same version and its deletes the same tombstones. Returns the version, or the store's error (the
    /// write must then not be sent).
    pub(super) async fn stamp_write(
        &self,
        state: &AppState,
        write: &mut FanoutWrite,
        extra: &mut [NodeRequest],
    ) -> Result<u64, StoreError> {
        let version = stamp(now_ms());
        write.stamp_version(version);
        for r in extra.iter_mut() {
            stamp_request(r, version);
        }
        let mut tombstones = BTreeMap::new();
        let live = record_deletes(&mut tombstones, write.requests(), version);
        if record_deletes(&mut tombstones, extra, version) || live {
            for (index, t) in tombstones {
                state.store.put_tombstones(&index, &t.entries()).await?;
            }
        }
        Ok(version)
    }
}

/// The anti-entropy counters (`/metrics`).
#[derive(Clone)]
struct EntropyMetrics {
    shards: IntCounter,
    mismatches: IntCounterVec,
    repairs: IntCounter,
}

static METRICS: OnceLock<EntropyMetrics> = OnceLock::new();

fn metrics(registry: &prometheus::Registry) -> &'static EntropyMetrics {
    METRICS.get_or_init(|| {
        let m = EntropyMetrics {
            shards: IntCounter::new(
                "miroir_anti_entropy_shards_scanned_total",
                "Shards compared to the end by anti-entropy passes.",
            )
            .expect("valid metric definition"),
            mismatches: IntCounterVec::new(
                Opts::new(
                    "miroir_anti_entropy_mismatches_total",
                    "Differences anti-entropy passes found between replicas.",
                ),
                &["kind"],
            )
            .expect("valid metric definition"),
            repairs: IntCounter::new(
                "miroir_anti_entropy_repairs_total",
                "Document copies and deletions anti-entropy applied.",
            )
            .expect("valid metric definition"),
        };
        for c in [
            Box::new(m.shards.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(m.mismatches.clone()),
            Box::new(m.repairs.clone()),
        ] {
            let _ = registry.register(c);
        }
        m
    })
}

/// The indexes the proxy knows (its store's index metadata).
async fn known_indexes(state: &AppState) -> Result<Vec<String>, MeiliError> {
    Ok(state
        .store
        .list_meta("index:")
        .await?
        .into_iter()
        .filter_map(|(k, _)| k.strip_prefix("index:").map(str::to_string))
        .collect())
}

fn bad_request(message: &str) -> MeiliError {
    MeiliError::invalid(400, "bad_request", message)
}

impl Fleet {
    /// `POST /_miroir/verify {"index": "<uid>", "repair": false}`: one anti-entropy pass over the index,
    /// answered with its report (200). `repair` defaults to false (verify only). Without `index`, every
    /// index the proxy knows is verified: `{"results": [report, ...], "clean": bool}`.
    pub(super) async fn verify_route(
        &self,
        state: &AppState,
        request: &ProxyRequest,
    ) -> Result<ProxyResponse, MeiliError> {
        let body = json_body(request)?;
        let index = match body.get("index") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
            Some(_) => {
                return Err(bad_request(
                    "`index` must be the uid of the index to verify.",
                ))
            }
        };
        let repair = match body.get("repair") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => return Err(bad_request("`repair` must be a boolean.")),
        };
        if let Some(k) = body
            .as_object()
            .and_then(|o| o.keys().find(|k| *k != "index" && *k != "repair"))
        {
            return Err(bad_request(&format!(
                "Unknown field `{k}`: expected one of `index`, `repair`."
            )));
        }
        if let Some(index) = index {
            let report = self.anti_entropy_pass(state, &index, repair).await?;
            return Ok(json_response(200, &report.to_json()));
        }
        let mut results = Vec::new();
        let mut clean = true;
        for index in known_indexes(state).await? {
            let report = self.anti_entropy_pass(state, &index, repair).await?;
            clean &= !report.differences_remain();
            results.push(report.to_json());
        }
        Ok(json_response(
            200,
            &serde_json::json!({"results": results, "clean": clean}),
        ))
    }

    /// One anti-entropy pass over every shard of `index` (see the module documentation).
    pub(crate) async fn anti_entropy_pass(
        &self,
        state: &AppState,
        index: &str,
        repair: bool,
    ) -> Result<Report, MeiliError> {
        // a fleet change owns the shards it moves (its fenced verify is the repair); a pass would race it
        self.refuse_while_migrating(index)?;
        let meta = self
            .index_meta(state, index)
            .await?
            .ok_or_else(|| index_not_found(index))?;
        let Some(pk) = meta.primary_key else {
            // no primary key yet: no document was ever written
            return Ok(Report {
                index: index.to_string(),
                repair,
                ..Report::default()
            });
        };
        // a resharded index lives in its own node index (the pass's requests name the uid and are
        // addressed to it) with its own S
        let (node_index, placement) = match self.reshard_in_force(index)? {
            Some((name, placement)) => (name, placement),
            None => (index.to_string(), self.placement()),
        };
        // deletes are recorded under the index the requests named: the uid, and a resharding's other index
        let mut tombstones = Tombstones::from_entries(&state.store.list_tombstones(index).await?)?;
        if node_index != index {
            tombstones.merge(&Tombstones::from_entries(
                &state.store.list_tombstones(&node_index).await?,
            )?);
        }
        let cfg = &state.config.anti_entropy;
        let params = EntropyParams {
            page_size: cfg.page_size as usize,
            buckets: cfg.buckets,
            docs_per_second: cfg.docs_per_second,
            repair,
            ..EntropyParams::default()
        };
        let shards = (0..placement.shards())
            .map(|s| (s, placement.write_targets(s)))
            .collect();
        let started = stamp(now_ms());
        let mut pass = AntiEntropy::new(index, pk, shards, tombstones, params, started);
        loop {
            match pass.poll_action() {
                Some(Action::Send(r)) => {
                    match self
                        .send_one(state, &r.node, r.method, &r.path, r.body.clone())
                        .await
                    {
                        Ok((status, body)) => pass.on_response(r.id, status, &body, now_ms()),
                        Err(e) => {
                            tracing::debug!(node = %r.node, error = %e, "anti-entropy request failed");
                            pass.on_failure(r.id, now_ms())
                        }
                    }
                }
                Some(Action::Finished) => break,
                None => match pass.poll_timeout() {
                    Some(at) => {
                        tokio::time::sleep(Duration::from_millis(at.saturating_sub(now_ms())))
                            .await;
                        pass.handle_timeout(now_ms());
                    }
                    None => break,
                },
            }
        }
        let report = pass.report();
        let m = metrics(state.metrics.registry());
        m.shards.inc_by(report.shards_scanned() as u64);
        for s in &report.shards {
            for (kind, n) in [
                ("missing", s.missing_copies),
                ("stale", s.stale_copies),
                ("dead", s.dead_copies),
            ] {
                m.mismatches.with_label_values(&[kind]).inc_by(n as u64);
            }
        }
        m.repairs.inc_by(report.repairs() as u64);
        if let (true, Some(confirmed)) = (repair, report.confirmed_before()) {
            let grace = now_ms().saturating_sub(cfg.tombstone_grace_ms) << 16;
            let before = confirmed.min(grace);
            match state.store.prune_tombstones(index, before).await {
                Ok(n) if n > 0 => tracing::info!(index, pruned = n, "tombstones pruned"),
                Ok(_) => {}
                Err(e) => tracing::warn!(index, error = %e, "cannot prune tombstones"),
            }
        }
        if report.differences_remain() || report.ids_mismatched() > 0 {
            tracing::warn!(
                index,
                mismatched = report.ids_mismatched(),
                repairs = report.repairs(),
                "anti-entropy found differences between replicas"
            );
        }
        Ok(report)
    }

    /// Runs a pass over every index the proxy knows each `anti_entropy.interval_ms` (0 = never). Runs with
    /// the health probe; never returns.
    pub(crate) async fn entropy_loop(self: Arc<Self>, state: Arc<AppState>) {
        let interval = state.config.anti_entropy.interval_ms;
        if interval == 0 {
            return std::future::pending::<()>().await;
        }
        let mut tick = tokio::time::interval(Duration::from_millis(interval));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tick.tick().await;
            let indexes = match known_indexes(&state).await {
                Ok(i) => i,
                Err(e) => {
                    tracing::warn!(error = %e.message, "anti-entropy: cannot list the indexes");
                    continue;
                }
            };
            for index in indexes {
                let repair = state.config.anti_entropy.repair;
                if let Err(e) = self.anti_entropy_pass(&state, &index, repair).await {
                    tracing::warn!(index, error = %e.message, "anti-entropy pass failed");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_strictly_increase_even_when_the_clock_goes_back() {
        let a = stamp(1_000_000);
        let b = stamp(1_000_000);
        let c = stamp(5);
        assert!(a < b && b < c, "{a} {b} {c}");
        assert_eq!(a & 0xFF, u64::from(std::process::id() as u8));
    }
}
