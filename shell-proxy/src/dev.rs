//! A fleet in one process, for trying the API (`miroir-proxy dev`) and for integration tests: N node
//! MODELS (`miroir_sim::serve`, not Meilisearch) on ephemeral ports, a task store, and the proxy.
//!
//! The models answer as Meilisearch 1.50 does for the API surface they cover, but they are models: use a
//! real fleet for anything else than trying the API.

use crate::fleet::Fleet;
use crate::server::{AppState, Server};
use crate::store;
use miroir_core::config::Config;
use miroir_sim::serve::{spawn, ModelHandle, ModelOptions};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// How to start a dev fleet.
#[derive(Debug, Clone)]
pub struct DevOptions {
    /// Number of model nodes (spread round-robin over the replica groups).
    pub nodes: usize,
    /// S.
    pub shards: u32,
    /// RF.
    pub replication_factor: u32,
    /// RG.
    pub replica_groups: u32,
    /// `majority`, `one` or `all`.
    pub write_quorum: String,
    /// `partial` or `error`.
    pub unavailable_shard_policy: String,
    /// The proxy's port (0: ephemeral).
    pub port: u16,
    /// The proxy's bind address.
    pub bind: String,
    /// The SQLite task store file.
    pub store_path: String,
    /// A Redis task store (`url`, `key_prefix`) instead of SQLite.
    pub redis: Option<(String, String)>,
    /// The client master key (empty: none).
    pub master_key: String,
    /// `health.interval_ms`.
    pub health_interval_ms: u64,
    /// `scatter.node_timeout_ms`.
    pub node_timeout_ms: u64,
    /// How often the model nodes advance their task queues (each task takes two ticks).
    pub model_tick_ms: u64,
}

impl DevOptions {
    /// Defaults for `nodes` nodes storing tasks in `store_path`.
    pub fn new(nodes: usize, store_path: impl Into<String>) -> DevOptions {
        DevOptions {
            nodes,
            shards: 16,
            replication_factor: if nodes >= 2 { 2 } else { 1 },
            replica_groups: 1,
            write_quorum: "majority".into(),
            unavailable_shard_policy: "partial".into(),
            port: 0,
            bind: "127.0.0.1".into(),
            store_path: store_path.into(),
            redis: None,
            master_key: String::new(),
            health_interval_ms: 200,
            node_timeout_ms: 2_000,
            model_tick_ms: 2,
        }
    }
}

/// The node master key the dev fleet uses between the proxy and its models.
pub const DEV_NODE_KEY: &str = "miroir-dev-node-key";

/// The admin key of a dev proxy (`/_miroir/*`): the master key when one is set, else this.
pub const DEV_ADMIN_KEY: &str = "miroir-dev-admin-key";

/// A running proxy (its nodes are separate, see [`DevFleet`]).
pub struct RunningProxy {
    /// The proxy's address.
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    server: JoinHandle<()>,
    probe: JoinHandle<()>,
}

impl RunningProxy {
    /// Stops the proxy (graceful) and its health probe.
    pub async fn shutdown(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        let _ = self.server.await;
        self.probe.abort();
    }
}

/// Model nodes plus a proxy in front of them.
pub struct DevFleet {
    /// The model nodes, in configuration order (`node-0`, `node-1`, ...).
    pub nodes: Vec<ModelHandle>,
    /// The proxy.
    pub proxy: RunningProxy,
    /// The options the fleet was started with (node addresses are fixed once started).
    pub options: DevOptions,
}

/// The YAML configuration of a dev proxy in front of `addresses`.
pub fn dev_config_yaml(options: &DevOptions, addresses: &[String]) -> String {
    let mut nodes = String::new();
    for (i, a) in addresses.iter().enumerate() {
        nodes.push_str(&format!(
            "    - {{ id: node-{i}, address: \"{a}\", replica_group: {} }}\n",
            i as u32 % options.replica_groups.max(1)
        ));
    }
    format!(
        "miroir:\n  master_key: \"{mk}\"\n  node_master_key: \"{DEV_NODE_KEY}\"\n  shards: {s}\n  replication_factor: {rf}\n  replica_groups: {rg}\n  write_quorum: {wq}\n  task_store:\n{store}  admin:\n    enabled: true\n    api_key: \"{ak}\"\n  nodes:\n{nodes}  health: {{ interval_ms: {hi}, timeout_ms: {ht}, unhealthy_threshold: 2, recovery_threshold: 1 }}\n  scatter: {{ node_timeout_ms: {nt}, unavailable_shard_policy: {pol} }}\n  server: {{ bind: \"{bind}\", port: {port}, metrics_port: 0 }}\n",
        mk = options.master_key,
        ak = if options.master_key.is_empty() {
            DEV_ADMIN_KEY
        } else {
            options.master_key.as_str()
        },
        s = options.shards,
        rf = options.replication_factor,
        rg = options.replica_groups,
        wq = options.write_quorum,
        store = match &options.redis {
            Some((url, prefix)) => format!(
                "    backend: redis\n    url: \"{url}\"\n    key_prefix: \"{prefix}\"\n"
            ),
            None => format!("    backend: sqlite\n    path: \"{}\"\n", options.store_path),
        },
        hi = options.health_interval_ms,
        ht = options.node_timeout_ms.min(1_000),
        nt = options.node_timeout_ms,
        pol = options.unavailable_shard_policy,
        bind = options.bind,
        // The configuration refuses port 0; [`start_proxy_for`] sets the real (maybe ephemeral) port.
        port = options.port.max(1),
    )
}

/// Starts a proxy for `config` with the fleet handler and the health probe.
pub async fn start_proxy(config: Config) -> Result<RunningProxy, String> {
    let fleet = Arc::new(Fleet::new(&config)?);
    let store = store::open(&config.task_store)
        .await
        .map_err(|e| e.to_string())?;
    let handler: Arc<dyn crate::server::RouteHandler> = fleet.clone();
    let state = Arc::new(AppState::new(config, store, Some(handler)));
    let server = Server::bind(Arc::clone(&state))
        .await
        .map_err(|e| e.to_string())?;
    let addr = server.local_addr().map_err(|e| e.to_string())?;
    let probe = fleet.spawn_probe(Arc::clone(&state));
    let (tx, rx) = oneshot::channel::<()>();
    let server = tokio::spawn(server.run(async move {
        let _ = rx.await;
    }));
    Ok(RunningProxy {
        addr,
        stop: Some(tx),
        server,
        probe,
    })
}

/// Starts `options.nodes` model nodes and a proxy in front of them.
pub async fn start(options: DevOptions) -> Result<DevFleet, String> {
    let mut nodes = Vec::with_capacity(options.nodes);
    for i in 0..options.nodes {
        let node = spawn(
            "127.0.0.1:0".parse().map_err(|e| format!("{e}"))?,
            ModelOptions {
                master_key: Some(DEV_NODE_KEY.into()),
                seed: 0x5eed + i as u64,
                tick_ms: options.model_tick_ms,
                ..ModelOptions::default()
            },
        )
        .await
        .map_err(|e| e.to_string())?;
        nodes.push(node);
    }
    let proxy = start_proxy_for(&options, &nodes).await?;
    Ok(DevFleet {
        nodes,
        proxy,
        options,
    })
}

/// Starts a (new) proxy in front of already running `nodes`.
pub async fn start_proxy_for(
    options: &DevOptions,
    nodes: &[ModelHandle],
) -> Result<RunningProxy, String> {
    let addresses: Vec<String> = nodes.iter().map(ModelHandle::url).collect();
    let yaml = dev_config_yaml(options, &addresses);
    let mut config = Config::from_yaml_str(&yaml, &|_| None).map_err(|e| e.to_string())?;
    config.server.port = options.port;
    start_proxy(config).await
}

impl DevFleet {
    /// The proxy's base URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.proxy.addr)
    }

    /// Stops the proxy and every node.
    pub async fn shutdown(self) {
        self.proxy.shutdown().await;
        for n in self.nodes {
            n.shutdown().await;
        }
    }
}
