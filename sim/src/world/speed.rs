//! Speed in the simulated proxy: the search driver with replica selection and hedging, and the latency
//! experiment that measures search latency in virtual time when one replica is slow.
//!
//! [`drive_search`] is what the simulated proxy runs for a search (as the HTTP proxy's `drive_scatter`):
//! it sends the requests of a core [`ScatterSearch`] planned with a [`Selector`]'s ranking and hedging
//! policy, feeds the answers back (and their latency, in virtual milliseconds, to the selector), and wakes
//! up at the search's `poll_timeout` so core can hedge a slow request.
//!
//! [`measure`] builds a small fleet of model nodes (no faults but an optional slow node), loads documents
//! on their shards' owners, and runs sequential searches through [`drive_search`], reporting latency
//! percentiles and hedge counts. The `slow_replica_hedging` scenario compares a fleet with one slow replica
//! against the healthy fleet.

use super::host::{spawn_host, Disk, SimulatedNode};
use super::net::{now_ms, CallError, RpcClient};
use super::rng::SimRng;
use crate::model::{self, Node as ModelNode};
use madsim::export::futures::stream::{FuturesUnordered, StreamExt};
use madsim::runtime::Handle;
use madsim::time;
use miroir_core::config::{HedgingConfig, UnavailableShardPolicy};
use miroir_core::ops::cover::{CoverOptions, PROBE_ID};
use miroir_core::ops::search::ScatterSearch;
use miroir_core::ops::{Method, NodeRequest, RequestId};
use miroir_core::routing::Placement;
use miroir_core::search::SearchContext;
use miroir_core::select::{Selector, Strategy};
use miroir_core::topology::{Node, NodeId, Topology};
use miroir_core::SHARD_FIELD;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The selector's ranking and, with `hedging`, its hedging policy, for one read over `nodes`.
pub fn cover_options(
    selector: &Mutex<Selector>,
    nodes: &[NodeId],
    hedging: Option<&HedgingConfig>,
    preferred_group: u32,
    rotation: u64,
) -> CoverOptions {
    let mut s = selector.lock().unwrap_or_else(|p| p.into_inner());
    let ranking = s.ranking(nodes);
    let hedge = hedging
        .filter(|h| h.enabled && h.max_hedges_per_query > 0)
        .map(|h| s.hedge_policy(nodes, h.multiplier, h.floor_ms, h.max_hedges_per_query));
    CoverOptions {
        preferred_group,
        rotation,
        ranking,
        scope: None,
        hedge,
    }
}

/// Drives `search` to its reply: `send` carries one node request, `on_reply` runs the moment the reply
/// exists (the client's latency ends there). Now and then (the selector's exploration) a shadow copy of the
/// search goes to a random node of `nodes`; it and the hedge losers are then awaited, so the selector learns
/// their latency too.
pub async fn drive_search<F, Fut, R>(
    search: &mut ScatterSearch,
    selector: &Mutex<Selector>,
    nodes: &[NodeId],
    send: F,
    on_reply: impl FnOnce(&ScatterSearch) -> R,
) -> R
where
    F: Fn(NodeRequest) -> Fut,
    Fut: Future<Output = Result<model::Response, CallError>>,
{
    let mut calls = FuturesUnordered::new();
    let mut sent: BTreeMap<RequestId, (NodeId, u64)> = BTreeMap::new();
    let lock = || selector.lock().unwrap_or_else(|p| p.into_inner());
    let probe = lock().probe(nodes).and_then(|n| search.probe_request(&n));
    let mut fresh: Vec<NodeRequest> = probe.into_iter().collect();
    loop {
        fresh.extend(search.take_requests_at(now_ms()));
        for r in fresh.drain(..) {
            lock().on_sent(&r.node);
            sent.insert(r.id, (r.node.clone(), now_ms()));
            let id = r.id;
            let call = send(r);
            calls.push(async move { (id, call.await) });
        }
        if search.is_done() || calls.is_empty() {
            break;
        }
        let wait = search
            .poll_timeout()
            .map(|at| Duration::from_millis(at.saturating_sub(now_ms())))
            .unwrap_or(Duration::from_secs(3600));
        match time::timeout(wait, calls.next()).await {
            Ok(Some((id, result))) => {
                let ok = matches!(&result, Ok(r) if r.status < 500);
                if let Some((node, at)) = sent.remove(&id) {
                    lock().on_answer(&node, now_ms().saturating_sub(at), ok);
                }
                if id == PROBE_ID {
                    continue;
                }
                match result {
                    // As the proxy does: the answer's text, merged without parsing hits whole.
                    Ok(resp) => search.on_response_text(id, resp.status, resp.body.to_string()),
                    Err(_) => search.on_failure(id),
                }
            }
            Ok(None) => break,
            Err(_) => search.on_timeout(now_ms()),
        }
    }
    let out = on_reply(search);
    while let Some((id, result)) = calls.next().await {
        let ok = matches!(&result, Ok(r) if r.status < 500);
        if let Some((node, at)) = sent.remove(&id) {
            lock().on_answer(&node, now_ms().saturating_sub(at), ok);
        }
    }
    out
}

/// The model node as a host payload.
struct ModelHost(ModelNode);

impl SimulatedNode for ModelHost {
    type Request = model::Request;
    type Response = model::Response;

    fn handle(&mut self, request: model::Request, now: u64) -> model::Response {
        self.0.handle(request, now)
    }

    fn process_one(&mut self, now: u64) -> bool {
        self.0.process_next(now).is_some()
    }

    fn recover(&mut self, _now: u64) {}
}

const KEY: &str = "latency-key";
const INDEX: &str = "lat";
const WORDS: [&str; 8] = [
    "star", "night", "river", "dark", "blue", "storm", "king", "city",
];

fn node_addr(i: usize) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 9, i as u8 + 1)), 7700)
}

fn to_model(method: model::Method, path: &str, body: Option<&Value>) -> model::Request {
    let r = model::Request::new(method, path).bearer(KEY);
    match body {
        Some(b) => r.with_body("application/json", b.to_string().into_bytes()),
        None => r,
    }
}

/// One latency experiment.
#[derive(Debug, Clone)]
pub struct LatencySpec {
    pub nodes: usize,
    pub rf: u32,
    pub shards: u32,
    pub docs: u64,
    /// Measured searches (after `warmup` unmeasured ones).
    pub queries: usize,
    pub warmup: usize,
    /// Node index and the latency it adds to every answer from the first measured search on, ms.
    pub slow: Option<(usize, u64)>,
    pub strategy: Strategy,
    pub exploration: f64,
    /// `None`: no hedging.
    pub hedging: Option<HedgingConfig>,
}

/// What one experiment measured (virtual milliseconds).
#[derive(Debug, Clone, PartialEq)]
pub struct LatencyReport {
    pub p50: u64,
    pub p99: u64,
    pub max: u64,
    /// Mean answer latency of the healthy nodes as the selector saw it.
    pub node_mean_ms: f64,
    pub hedges_fired: u32,
    pub hedges_won: u32,
    /// Measured searches whose reply counted every document of the corpus.
    pub complete: usize,
}

fn percentile(sorted: &[u64], p: usize) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (sorted.len() * p).div_ceil(100).saturating_sub(1);
    sorted[rank.min(sorted.len() - 1)]
}

/// Runs one experiment in the current madsim runtime. See the module documentation.
pub async fn measure(seed: u64, spec: LatencySpec) -> LatencyReport {
    let handle = Handle::current();
    let mut rng = SimRng::new(seed);
    let topology = Topology {
        epoch: 1,
        shards: spec.shards,
        replication_factor: spec.rf,
        replica_groups: 1,
        nodes: (0..spec.nodes)
            .map(|i| Node::active(format!("n{i}"), format!("http://{}", node_addr(i)), 0))
            .collect(),
    };
    let placement = Placement::new(&topology).expect("a valid latency topology");
    let ids: Vec<NodeId> = topology.nodes.iter().map(|n| n.id.clone()).collect();
    let disks: Vec<Arc<Disk<ModelHost>>> = (0..spec.nodes)
        .map(|_| Disk::new(ModelHost(ModelNode::new(Some(KEY)))))
        .collect();
    let _hosts: Vec<_> = (0..spec.nodes)
        .map(|i| {
            spawn_host(
                &handle,
                &format!("n{i}"),
                node_addr(i),
                disks[i].clone(),
                rng.next_u64(),
            )
        })
        .collect();
    let client = handle
        .create_node()
        .name("latency-client")
        .ip("10.0.8.1".parse().expect("ip"))
        .build();
    let slow_disk = spec.slow.map(|(i, ms)| (disks[i].clone(), ms));
    client
        .spawn(async move {
            let rpc = RpcClient::bind("10.0.8.1:0".parse().expect("addr"))
                .await
                .expect("client endpoint");
            let addrs: BTreeMap<NodeId, SocketAddr> =
                ids.iter().cloned().zip((0..spec.nodes).map(node_addr)).collect();
            let call = |node: &NodeId, req: model::Request| {
                let addr = addrs[node];
                let rpc = &rpc;
                async move {
                    rpc.call::<model::Request, model::Response>(addr, req, Duration::from_secs(5))
                        .await
                }
            };
            // Setup: the index with a filterable shard field on every node, then each shard's documents
            // on its owners.
            for n in &ids {
                let _ = call(
                    n,
                    to_model(
                        model::Method::Post,
                        "/indexes",
                        Some(&json!({"uid": INDEX, "primaryKey": "id"})),
                    ),
                )
                .await;
                let _ = call(
                    n,
                    to_model(
                        model::Method::Patch,
                        &format!("/indexes/{INDEX}/settings"),
                        Some(&json!({"filterableAttributes": [SHARD_FIELD, "genre"]})),
                    ),
                )
                .await;
            }
            let mut per_node: BTreeMap<NodeId, Vec<Value>> = BTreeMap::new();
            for id in 0..spec.docs {
                let shard = placement.shard_for_key(&id.to_string());
                let words: Vec<&str> = (0..rng.range(1, 4)).map(|_| *rng.pick(&WORDS)).collect();
                let doc = json!({"id": id, "title": words.join(" "), "genre": rng.below(4), SHARD_FIELD: shard});
                for owner in placement.write_targets(shard) {
                    per_node.entry(owner).or_default().push(doc.clone());
                }
            }
            for (n, docs) in &per_node {
                let _ = call(
                    n,
                    to_model(
                        model::Method::Post,
                        &format!("/indexes/{INDEX}/documents?primaryKey=id"),
                        Some(&Value::Array(docs.clone())),
                    ),
                )
                .await;
            }
            time::sleep(Duration::from_secs(10)).await;

            let selector = Mutex::new(Selector::new(spec.strategy, spec.exploration, seed));
            let mut latencies = Vec::new();
            let (mut fired, mut won, mut complete) = (0, 0, 0);
            for q in 0..spec.warmup + spec.queries {
                if q == spec.warmup {
                    // The node turns slow once the selector knows it as a fast one: the hard case.
                    if let Some((disk, ms)) = &slow_disk {
                        disk.slow_ms.store(*ms, std::sync::atomic::Ordering::SeqCst);
                    }
                }
                let body: Map<String, Value> = if q % 2 == 0 {
                    json!({"q": *rng.pick(&WORDS), "limit": 20})
                } else {
                    json!({"q": "", "limit": 20, "facets": ["genre"]})
                }
                .as_object()
                .cloned()
                .unwrap_or_default();
                let options =
                    cover_options(&selector, &ids, spec.hedging.as_ref(), 0, q as u64);
                let mut search = ScatterSearch::with_options(
                    INDEX,
                    &body,
                    &SearchContext::default(),
                    &placement,
                    &|_| true,
                    options,
                    UnavailableShardPolicy::Partial,
                    Some("id"),
                )
                .expect("a valid search");
                let start = now_ms();
                let (took, (f, w), all) = drive_search(
                    &mut search,
                    &selector,
                    &ids,
                    |r: NodeRequest| {
                        let method = match r.method {
                            Method::Post => model::Method::Post,
                            _ => model::Method::Get,
                        };
                        call(&r.node, to_model(method, &r.path, r.body.as_ref()))
                    },
                    |s| {
                        let all = s.reply().is_some_and(|r| {
                            r.status == 200
                                && (q % 2 == 0 || r.body["estimatedTotalHits"] == spec.docs)
                        });
                        (now_ms() - start, s.hedges(), all)
                    },
                )
                .await;
                if q >= spec.warmup {
                    latencies.push(took);
                    fired += f;
                    won += w;
                    complete += usize::from(all);
                }
            }
            latencies.sort_unstable();
            let s = selector.lock().unwrap_or_else(|p| p.into_inner());
            let healthy: Vec<f64> = ids
                .iter()
                .enumerate()
                .filter(|(i, _)| spec.slow.is_none_or(|(slow, _)| slow != *i))
                .filter_map(|(_, n)| s.stats(n).map(|st| st.latency_ms))
                .collect();
            LatencyReport {
                p50: percentile(&latencies, 50),
                p99: percentile(&latencies, 99),
                max: latencies.last().copied().unwrap_or(0),
                node_mean_ms: healthy.iter().sum::<f64>() / healthy.len().max(1) as f64,
                hedges_fired: fired,
                hedges_won: won,
                complete,
            }
        })
        .await
        .expect("the latency client does not panic")
}
