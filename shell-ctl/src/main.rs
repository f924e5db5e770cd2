//! miroir-ctl: the operator CLI. It talks to a running proxy over HTTP: the `/_miroir/*` admin API with the
//! admin key, and the Meilisearch-compatible API with the master key where an operator needs a client's view.
//!
//! Commands: `ready`, `topology`, `tasks`, `task <uid>`. Every command prints a human table by default and the
//! raw JSON with `--json`; the exit status is 0 on success, 1 when the proxy answered an error, 2 when it could
//! not be reached.

mod http;

use clap::{Parser, Subcommand};
use serde_json::Value;
use std::process::ExitCode;

#[derive(Parser, Debug)]
#[command(name = "miroir-ctl", version, about = "Operate a Miroir proxy")]
struct Cli {
    /// The proxy's base URL (http only).
    #[arg(
        long,
        env = "MIROIR_URL",
        default_value = "http://127.0.0.1:7700",
        global = true
    )]
    url: String,
    /// The admin key (guards /_miroir/*).
    #[arg(
        long,
        env = "MIROIR_ADMIN_API_KEY",
        default_value = "",
        hide_env_values = true,
        global = true
    )]
    admin_key: String,
    /// The client master key (for the Meilisearch-compatible routes).
    #[arg(
        long,
        env = "MIROIR_MASTER_KEY",
        default_value = "",
        hide_env_values = true,
        global = true
    )]
    master_key: String,
    /// Print the proxy's JSON answer instead of a table.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Whether the proxy can serve (its task store answers).
    Ready,
    /// Nodes, their replica group, health and shard counts, and S, RF, RG.
    Topology,
    /// The most recent Miroir tasks.
    Tasks {
        /// How many tasks to list.
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
    /// One Miroir task, aggregated from its node tasks.
    Task { uid: u64 },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let (path, key) = match &cli.command {
        Command::Ready => ("/_miroir/ready".to_string(), &cli.admin_key),
        Command::Topology => ("/_miroir/topology".to_string(), &cli.admin_key),
        Command::Tasks { limit } => (format!("/tasks?limit={limit}"), &cli.master_key),
        Command::Task { uid } => (format!("/tasks/{uid}"), &cli.master_key),
    };
    let answer = match http::get(&cli.url, &path, key) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("miroir-ctl: cannot reach {}: {e}", cli.url);
            return ExitCode::from(2);
        }
    };
    let body: Value = serde_json::from_slice(&answer.body).unwrap_or(Value::Null);
    if !(200..300).contains(&answer.status) {
        let message = body
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or("(no message)");
        let code = body
            .get("code")
            .and_then(Value::as_str)
            .unwrap_or("unknown");
        eprintln!(
            "miroir-ctl: the proxy answered {} {code}: {message}",
            answer.status
        );
        return ExitCode::from(1);
    }
    if cli.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&body).unwrap_or_default()
        );
    } else {
        print!("{}", render(&cli.command, &body));
    }
    ExitCode::SUCCESS
}

/// The human rendering of an answer.
fn render(command: &Command, body: &Value) -> String {
    let s = |v: &Value, k: &str| match v.get(k) {
        Some(Value::String(x)) => x.clone(),
        Some(Value::Null) | None => "-".to_string(),
        Some(other) => other.to_string(),
    };
    match command {
        Command::Ready => format!("ready (task store: {})\n", s(body, "taskStore")),
        Command::Topology => {
            let mut out = format!(
                "epoch {}  S={}  RF={}  RG={}\n{:<20} {:<32} {:>5} {:<11} {:>6}\n",
                s(body, "epoch"),
                s(body, "shards"),
                s(body, "replicationFactor"),
                s(body, "replicaGroups"),
                "NODE",
                "ADDRESS",
                "GROUP",
                "HEALTH",
                "SHARDS"
            );
            for n in body
                .get("nodes")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                out.push_str(&format!(
                    "{:<20} {:<32} {:>5} {:<11} {:>6}\n",
                    s(n, "id"),
                    s(n, "address"),
                    s(n, "replicaGroup"),
                    s(n, "health"),
                    s(n, "shards")
                ));
            }
            out
        }
        Command::Tasks { .. } => {
            let mut out = format!(
                "{:>8} {:<26} {:<20} {:<11} {}\n",
                "UID", "TYPE", "INDEX", "STATUS", "ENQUEUED"
            );
            for t in body
                .get("results")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                out.push_str(&task_line(t, &s));
            }
            out
        }
        Command::Task { .. } => {
            let mut out = task_line(body, &s);
            if let Some(e) = body.get("error").filter(|e| !e.is_null()) {
                out.push_str(&format!("  error: {} {}\n", s(e, "code"), s(e, "message")));
            }
            out
        }
    }
}

fn task_line(t: &Value, s: &dyn Fn(&Value, &str) -> String) -> String {
    format!(
        "{:>8} {:<26} {:<20} {:<11} {}\n",
        s(t, "uid"),
        s(t, "type"),
        s(t, "indexUid"),
        s(t, "status"),
        s(t, "enqueuedAt")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn renders_topology_and_tasks() {
        let topo = json!({"epoch": 1, "shards": 64, "replicationFactor": 2, "replicaGroups": 1,
            "nodes": [{"id": "meili-0", "address": "http://127.0.0.1:7701", "replicaGroup": 0, "health": "healthy", "shards": 43}]});
        let out = render(&Command::Topology, &topo);
        assert!(out.starts_with("epoch 1  S=64  RF=2  RG=1\n"));
        assert!(out.contains("meili-0") && out.contains("healthy") && out.contains("43"));
        let tasks = json!({"results": [{"uid": 3, "type": "documentAdditionOrUpdate", "indexUid": "movies", "status": "succeeded", "enqueuedAt": "2026-11-27T10:00:00Z"}]});
        let out = render(&Command::Tasks { limit: 20 }, &tasks);
        assert!(out
            .lines()
            .nth(1)
            .unwrap()
            .contains("documentAdditionOrUpdate"));
        let failed = json!({"uid": 4, "type": "settingsUpdate", "indexUid": null, "status": "failed", "error": {"code": "miroir_no_quorum", "message": "m"}});
        let out = render(&Command::Task { uid: 4 }, &failed);
        assert!(out.contains("error: miroir_no_quorum m"));
        assert!(out.contains(" - "), "a null index renders as a dash");
    }

    #[test]
    fn command_line_parses() {
        let cli = Cli::try_parse_from(["miroir-ctl", "--url", "http://x:1", "task", "7", "--json"])
            .unwrap();
        assert!(cli.json);
        assert!(matches!(cli.command, Command::Task { uid: 7 }));
        assert!(Cli::try_parse_from(["miroir-ctl", "task", "seven"]).is_err());
    }
}
