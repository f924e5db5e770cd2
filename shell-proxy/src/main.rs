//! `miroir-proxy --config PATH [--log-format json|text] [--check]`
//!
//! Loads the configuration (file + `MIROIR_*` environment overrides, see `miroir_core::config`), opens
//! the task store, binds `server.bind:server.port` (and `server.metrics_port` unless 0) and serves until
//! SIGTERM or Ctrl-C, then drains in-flight requests. Logs go to stderr through `tracing`; the level
//! follows `RUST_LOG` (default `info`).
//!
//! Exit codes: 0 after a clean shutdown (or a valid `--check`), 2 for a configuration error, 1 for any
//! other startup failure (task store, bind).

use clap::{Parser, ValueEnum};
use miroir_core::config::Config;
use miroir_proxy::server::{AppState, Server};
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
    /// The YAML configuration file.
    #[arg(long, short = 'c', value_name = "PATH")]
    config: PathBuf,
    /// Log format.
    #[arg(long, value_enum, default_value = "text")]
    log_format: LogFormat,
    /// Validate the configuration and exit.
    #[arg(long)]
    check: bool,
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

    let text = match std::fs::read_to_string(&args.config) {
        Ok(t) => t,
        Err(e) => {
            tracing::error!(path = %args.config.display(), error = %e, "cannot read the configuration file");
            return ExitCode::from(2);
        }
    };
    let config = match Config::from_yaml_str(&text, &|k| std::env::var(k).ok()) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(path = %args.config.display(), error = %e, "invalid configuration");
            return ExitCode::from(2);
        }
    };
    if args.check {
        tracing::info!(path = %args.config.display(), nodes = config.nodes.len(), "configuration is valid");
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
    // The core-driven route handler is plugged in here once it exists; until then the proxy serves
    // /health, /version, /metrics and /_miroir/ready.
    let state = Arc::new(AppState::new(config, store, None));
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
