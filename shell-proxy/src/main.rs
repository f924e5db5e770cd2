//! `miroir-proxy --config PATH [--log-format json|text] [--check]`
//! `miroir-proxy dev [--nodes N] [--port P] [--shards S] [--rf RF] [--rg RG] [--models]`
//!
//! `dev` starts a throwaway fleet for trying the API: N nodes (real `meilisearch` processes when that
//! binary is on `PATH` and `--models` is not given, else in-process node MODELS), an SQLite task store in
//! a temporary directory, and the proxy on `127.0.0.1:P` without a master key.
//!
//! Loads the configuration (file + `MIROIR_*` environment overrides, see `miroir_core::config`), opens
//! the task store, binds `server.bind:server.port` (and `server.metrics_port` unless 0) and serves until
//! SIGTERM or Ctrl-C, then drains in-flight requests. Logs go to stderr through `tracing`; the level
//! follows `RUST_LOG` (default `info`).
//!
//! Exit codes: 0 after a clean shutdown (or a valid `--check`), 2 for a configuration error, 1 for any
//! other startup failure (task store, bind).

use clap::{Parser, Subcommand, ValueEnum};
use miroir_core::config::Config;
use miroir_proxy::fleet::Fleet;
use miroir_proxy::server::{AppState, RouteHandler, Server};
use miroir_proxy::store;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    /// One JSON object per line.
    Json,
    /// Human-readable lines.
    Text,
}

/// Miroir: one logical Meilisearch over a fleet of Meilisearch nodes.
#[derive(Debug, Parser)]
#[command(name = "miroir-proxy", version, about)]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,
    /// The YAML configuration file (required unless running `dev`).
    #[arg(long, short = 'c', value_name = "PATH")]
    config: Option<PathBuf>,
    /// Log format.
    #[arg(long, value_enum, default_value = "text")]
    log_format: LogFormat,
    /// Validate the configuration and exit.
    #[arg(long)]
    check: bool,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// A throwaway fleet for trying the API (not for production).
    Dev {
        /// Number of nodes.
        #[arg(long, default_value_t = 3)]
        nodes: usize,
        /// The proxy's port.
        #[arg(long, default_value_t = 7700)]
        port: u16,
        /// S, shards per index.
        #[arg(long, default_value_t = 16)]
        shards: u32,
        /// RF, copies per replica group (default: 2 with at least 2 nodes).
        #[arg(long)]
        rf: Option<u32>,
        /// RG, replica groups.
        #[arg(long, default_value_t = 1)]
        rg: u32,
        /// Use in-process node models even when `meilisearch` is on PATH.
        #[arg(long)]
        models: bool,
        /// The client master key (default: none, the API is open).
        #[arg(long, default_value = "")]
        master_key: String,
    },
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => tracing::info!("Ctrl-C received, shutting down"),
        _ = term => tracing::info!("SIGTERM received, shutting down"),
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    init_logging(args.log_format);

    if let Some(Command::Dev {
        nodes,
        port,
        shards,
        rf,
        rg,
        models,
        master_key,
    }) = args.command
    {
        return dev::run(nodes, port, shards, rf, rg, models, master_key).await;
    }
    let Some(config_path) = args.config else {
        tracing::error!("--config PATH is required (or use `miroir-proxy dev`)");
        return ExitCode::from(2);
    };
    let text = match std::fs::read_to_string(&config_path) {
        Ok(t) => t,
        Err(e) => {
            tracing::error!(path = %config_path.display(), error = %e, "cannot read the configuration file");
            return ExitCode::from(2);
        }
    };
    let config = match Config::from_yaml_str(&text, &|k| std::env::var(k).ok()) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(path = %config_path.display(), error = %e, "invalid configuration");
            return ExitCode::from(2);
        }
    };
    if args.check {
        tracing::info!(path = %config_path.display(), nodes = config.nodes.len(), "configuration is valid");
        return ExitCode::SUCCESS;
    }
    if config.master_key.is_empty() {
        tracing::warn!("no master key configured: the API is open to anyone who can reach it");
    }

    let store = match store::open(&config.task_store).await {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot open the task store");
            return ExitCode::FAILURE;
        }
    };
    let fleet = match Fleet::new(&config) {
        Ok(f) => Arc::new(f),
        Err(e) => {
            tracing::error!(error = %e, "invalid topology");
            return ExitCode::from(2);
        }
    };
    let handler: Arc<dyn RouteHandler> = fleet.clone();
    let state = Arc::new(AppState::new(config, store, Some(handler)));
    let _probe = fleet.spawn_probe(Arc::clone(&state));
    let server = match Server::bind(Arc::clone(&state)).await {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(
                bind = %state.config.server.bind,
                port = state.config.server.port,
                error = %e,
                "cannot bind"
            );
            return ExitCode::FAILURE;
        }
    };
    if let Ok(addr) = server.local_addr() {
        tracing::info!(%addr, task_store = state.store.backend(), version = env!("CARGO_PKG_VERSION"), "Miroir listening");
    }
    if let Some(addr) = server.metrics_addr() {
        tracing::info!(%addr, "metrics listening");
    }
    server.run(shutdown_signal()).await;
    tracing::info!("stopped");
    ExitCode::SUCCESS
}

mod dev {
    //! `miroir-proxy dev`.
    use miroir_core::config::Config;
    use miroir_proxy::dev::{dev_config_yaml, start_proxy, DevOptions, DEV_NODE_KEY};
    use miroir_sim::serve::{spawn, ModelHandle, ModelOptions};
    use std::path::{Path, PathBuf};
    use std::process::{Child, ExitCode};
    use std::time::Duration;

    fn on_path(binary: &str) -> Option<PathBuf> {
        let path = std::env::var_os("PATH")?;
        std::env::split_paths(&path)
            .map(|d| d.join(binary))
            .find(|p| p.is_file())
    }

    fn free_port() -> std::io::Result<u16> {
        Ok(std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port())
    }

    /// Real Meilisearch processes, killed when dropped.
    struct Processes(Vec<Child>);

    impl Drop for Processes {
        fn drop(&mut self) {
            for c in &mut self.0 {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }

    fn start_meilisearch(
        bin: &Path,
        dir: &Path,
        n: usize,
    ) -> std::io::Result<(Processes, Vec<String>)> {
        let mut children = Processes(Vec::new());
        let mut urls = Vec::new();
        for i in 0..n {
            let port = free_port()?;
            let child = std::process::Command::new(bin)
                .arg("--http-addr")
                .arg(format!("127.0.0.1:{port}"))
                .arg("--db-path")
                .arg(dir.join(format!("node-{i}")))
                .arg("--master-key")
                .arg(DEV_NODE_KEY)
                .arg("--no-analytics")
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()?;
            children.0.push(child);
            urls.push(format!("http://127.0.0.1:{port}"));
        }
        Ok((children, urls))
    }

    pub async fn run(
        nodes: usize,
        port: u16,
        shards: u32,
        rf: Option<u32>,
        rg: u32,
        models: bool,
        master_key: String,
    ) -> ExitCode {
        if nodes == 0 {
            tracing::error!("--nodes must be at least 1");
            return ExitCode::from(2);
        }
        let dir = std::env::temp_dir().join(format!("miroir-dev-{}", std::process::id()));
        if let Err(e) = std::fs::create_dir_all(&dir) {
            tracing::error!(error = %e, "cannot create the temporary directory");
            return ExitCode::FAILURE;
        }
        let mut options =
            DevOptions::new(nodes, dir.join("tasks.db").to_string_lossy().into_owned());
        options.port = port;
        options.shards = shards;
        options.master_key = master_key;
        options.replica_groups = rg.max(1);
        if let Some(rf) = rf {
            options.replication_factor = rf;
        }
        let meili = if models { None } else { on_path("meilisearch") };
        let mut handles: Vec<ModelHandle> = Vec::new();
        let mut _processes = None;
        let urls = match &meili {
            Some(bin) => match start_meilisearch(bin, &dir, nodes) {
                Ok((p, urls)) => {
                    _processes = Some(p);
                    tokio::time::sleep(Duration::from_secs(2)).await;
                    eprintln!(
                        "miroir dev: {nodes} real Meilisearch processes ({})",
                        bin.display()
                    );
                    urls
                }
                Err(e) => {
                    tracing::error!(error = %e, "cannot start meilisearch");
                    return ExitCode::FAILURE;
                }
            },
            None => {
                for i in 0..nodes {
                    let opts = ModelOptions {
                        master_key: Some(DEV_NODE_KEY.into()),
                        seed: 0x5eed + i as u64,
                        ..ModelOptions::default()
                    };
                    match spawn(([127, 0, 0, 1], 0).into(), opts).await {
                        Ok(h) => handles.push(h),
                        Err(e) => {
                            tracing::error!(error = %e, "cannot start a node model");
                            return ExitCode::FAILURE;
                        }
                    }
                }
                eprintln!();
                eprintln!("################################################################");
                eprintln!("#  miroir dev: {nodes} in-process MODEL nodes, NOT Meilisearch.");
                eprintln!("#  They imitate Meilisearch 1.50 for trying the API only.");
                eprintln!("#  Put `meilisearch` on PATH to run real nodes instead.");
                eprintln!("################################################################");
                handles.iter().map(ModelHandle::url).collect()
            }
        };
        let yaml = dev_config_yaml(&options, &urls);
        let mut config = match Config::from_yaml_str(&yaml, &|_| None) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "invalid dev configuration");
                return ExitCode::from(2);
            }
        };
        config.server.port = port;
        let proxy = match start_proxy(config).await {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(error = %e, "cannot start the proxy");
                return ExitCode::FAILURE;
            }
        };
        eprintln!(
            "miroir dev: proxy on http://{} (S={}, RF={}, RG={}, nodes: {}), tasks in {}, admin key `{}`",
            proxy.addr,
            options.shards,
            options.replication_factor,
            options.replica_groups,
            urls.join(", "),
            dir.display(),
            miroir_proxy::dev::DEV_ADMIN_KEY
        );
        super::shutdown_signal().await;
        proxy.shutdown().await;
        for h in handles {
            h.shutdown().await;
        }
        let _ = std::fs::remove_dir_all(&dir);
        ExitCode::SUCCESS
    }
}
