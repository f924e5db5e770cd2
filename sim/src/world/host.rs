//! Hosts: a simulated machine that runs one node model behind the simulated network.
//!
//! The model object itself stands for the node's disk. Meilisearch persists an enqueued task before it answers
//! 202, and applies a task's effects atomically when it succeeds, so everything the model holds is durable except a
//! task that was `processing` at the moment of the crash. Killing the host (madsim `kill`) stops its network loop
//! and its task loop; restarting it runs `recover` (a `processing` task goes back to `enqueued`, as when
//! Meilisearch reopens its store) and starts both loops again.
//!
//! Faults a host injects itself: extra answer latency while it is "slow", and handling some requests twice
//! (duplication), with the rate taken from the run's schedule.

use super::net::{next_request, now_ms, reply};
use super::rng::SimRng;
use madsim::net::Endpoint;
use madsim::runtime::{Handle, NodeHandle};
use madsim::time;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What the host needs from a node model.
pub trait SimulatedNode: Send + 'static {
    type Request: Clone + Send + Sync + 'static;
    type Response: Send + Sync + 'static;
    /// Answers one request at virtual time `now` (milliseconds since the Unix epoch).
    fn handle(&mut self, request: Self::Request, now: u64) -> Self::Response;
    /// Runs the next enqueued task, if there is one; returns whether one ran.
    fn process_one(&mut self, now: u64) -> bool;
    /// Called when the host comes back after a crash.
    fn recover(&mut self, now: u64);
}

/// The state of a host that outlives crashes, plus the knobs the fault injector turns.
pub struct Disk<N> {
    pub node: Mutex<N>,
    /// Extra latency added before every answer, in milliseconds (0 = normal).
    pub slow_ms: AtomicU64,
    /// Probability (per mille) that a request is handled twice.
    pub duplicate_per_mille: AtomicU64,
    restarts: AtomicU64,
}

impl<N> Disk<N> {
    pub fn new(node: N) -> Arc<Self> {
        Arc::new(Disk {
            node: Mutex::new(node),
            slow_ms: AtomicU64::new(0),
            duplicate_per_mille: AtomicU64::new(0),
            restarts: AtomicU64::new(0),
        })
    }

    /// Locks the model, recovering from a poisoned lock (a panic elsewhere already fails the run).
    pub fn lock(&self) -> std::sync::MutexGuard<'_, N> {
        self.node.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Starts a host for `disk` listening on `addr`; `seed` drives its task-loop pacing and duplication draws.
pub fn spawn_host<N: SimulatedNode>(
    handle: &Handle,
    name: &str,
    addr: SocketAddr,
    disk: Arc<Disk<N>>,
    seed: u64,
) -> NodeHandle {
    handle
        .create_node()
        .name(name)
        .ip(addr.ip())
        .init(move || {
            let disk = disk.clone();
            async move {
                let incarnation = disk.restarts.fetch_add(1, Ordering::SeqCst);
                if incarnation > 0 {
                    disk.lock().recover(now_ms());
                }
                let mut rng = SimRng::new(seed ^ incarnation.wrapping_mul(0x51_7CC1_B727_220A));
                let worker = disk.clone();
                let mut worker_rng = rng.fork(1);
                madsim::task::spawn(async move {
                    loop {
                        time::sleep(Duration::from_millis(worker_rng.range(1, 20))).await;
                        while worker.lock().process_one(now_ms()) {
                            time::sleep(Duration::from_millis(worker_rng.range(0, 5))).await;
                        }
                    }
                });
                let ep = Endpoint::bind(addr)
                    .await
                    .expect("the simulated address is free");
                let ep = Arc::new(ep);
                loop {
                    let Ok((request, from, tag)) = next_request::<N::Request>(&ep).await else {
                        continue;
                    };
                    let twice = rng.below(1000) < disk.duplicate_per_mille.load(Ordering::SeqCst);
                    let disk = disk.clone();
                    let ep = ep.clone();
                    madsim::task::spawn(async move {
                        let slow = disk.slow_ms.load(Ordering::SeqCst);
                        if slow > 0 {
                            time::sleep(Duration::from_millis(slow)).await;
                        }
                        if twice {
                            let _ = disk.lock().handle(request.clone(), now_ms());
                        }
                        let response = disk.lock().handle(request, now_ms());
                        reply(&ep, from, tag, response).await;
                    });
                }
            }
        })
        .build()
}
