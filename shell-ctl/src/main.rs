//! miroir-ctl: the operator CLI. It talks to a running proxy over HTTP: the `/_miroir/*` admin API with the
//! admin key, and the Meilisearch-compatible API with the master key where an operator needs a client's view.
//!
//! Commands: `status`, `ready`, `topology`, `shards`, `tasks`, `task <uid>`, `alias list|get|set|delete`,
//! `completions <shell>` and `verify [--index I] [--repair]`. Every command prints a human table by default and
//! the raw JSON with `--json` (or `--output json`); the exit status is 0 on success, 1 when the proxy answered an
//! error, 2 when it could not be reached, 3 when `verify` leaves differences between replicas.

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
    /// Print the proxy's JSON answer instead of a table (same as `--output json`).
    #[arg(long, global = true)]
    json: bool,
    /// `table` (default) or `json`.
    #[arg(long, global = true, value_enum, default_value_t = Output::Table)]
    output: Output,
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Output {
    Table,
    Json,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// A summary of the fleet: S, RF, RG and how many nodes are in each health state.
    Status,
    /// Every shard and the nodes holding it in each replica group.
    Shards,
    /// Prints a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions { shell: clap_complete::Shell },
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
    /// Index aliases: names that resolve to one index.
    #[command(subcommand)]
    Alias(AliasCommand),
    /// Compares every replica of every shard (anti-entropy) and reports the differences; exits 3 when
    /// differences remain.
    Verify {
        /// Only this index (default: every index).
        #[arg(long)]
        index: Option<String>,
        /// Repair the differences (copy the last write, apply deletes) instead of only reporting them.
        #[arg(long)]
        repair: bool,
    },
}

#[derive(Subcommand, Debug)]
enum AliasCommand {
    /// Every alias and its target.
    List,
    /// One alias with its flip history.
    Get { name: String },
    /// Creates the alias, or flips it to a new target.
    Set {
        name: String,
        target: String,
        /// Accept a target index that does not exist yet.
        #[arg(long)]
        force: bool,
    },
    /// Deletes the alias (the index stays).
    Delete { name: String },
}

/// One HTTP call of a command.
struct Call {
    method: &'static str,
    path: String,
    body: Option<Value>,
}

impl Call {
    fn get(path: String) -> Call {
        Call {
            method: "GET",
            path,
            body: None,
        }
    }
}

fn alias_path(name: &str) -> String {
    format!("/_miroir/aliases/{name}")
}

/// Sends a call; `alias set` on a missing alias creates it.
fn send(cli: &Cli, call: &Call, key: &str) -> Result<http::Answer, String> {
    let answer = http::request(&cli.url, call.method, &call.path, key, call.body.as_ref())?;
    if let Command::Alias(AliasCommand::Set {
        name,
        target,
        force,
    }) = &cli.command
    {
        let missing = serde_json::from_slice::<Value>(&answer.body)
            .ok()
            .and_then(|b| b.get("code").cloned())
            == Some(Value::from("miroir_alias_not_found"));
        if answer.status == 404 && missing {
            let body = serde_json::json!({"name": name, "target": target, "force": force});
            return http::request(&cli.url, "POST", "/_miroir/aliases", key, Some(&body));
        }
    }
    Ok(answer)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::Completions { shell } = &cli.command {
        let mut cmd = <Cli as clap::CommandFactory>::command();
        clap_complete::generate(*shell, &mut cmd, "miroir-ctl", &mut std::io::stdout());
        return ExitCode::SUCCESS;
    }
    let (call, key) = match &cli.command {
        Command::Status | Command::Completions { .. } => {
            (Call::get("/_miroir/topology".into()), &cli.admin_key)
        }
        Command::Shards => (Call::get("/_miroir/shards".into()), &cli.admin_key),
        Command::Ready => (Call::get("/_miroir/ready".into()), &cli.admin_key),
        Command::Topology => (Call::get("/_miroir/topology".into()), &cli.admin_key),
        Command::Tasks { limit } => (Call::get(format!("/tasks?limit={limit}")), &cli.master_key),
        Command::Task { uid } => (Call::get(format!("/tasks/{uid}")), &cli.master_key),
        Command::Alias(a) => (
            match a {
                AliasCommand::List => Call::get("/_miroir/aliases".into()),
                AliasCommand::Get { name } => Call::get(alias_path(name)),
                AliasCommand::Set {
                    name,
                    target,
                    force,
                } => Call {
                    method: "PUT",
                    path: alias_path(name),
                    body: Some(serde_json::json!({"target": target, "force": force})),
                },
                AliasCommand::Delete { name } => Call {
                    method: "DELETE",
                    path: alias_path(name),
                    body: None,
                },
            },
            &cli.admin_key,
        ),
        Command::Verify { index, repair } => {
            let mut body = serde_json::json!({ "repair": repair });
            if let Some(i) = index {
                body["index"] = Value::from(i.as_str());
            }
            (
                Call {
                    method: "POST",
                    path: "/_miroir/verify".into(),
                    body: Some(body),
                },
                &cli.admin_key,
            )
        }
    };
    let answer = match send(&cli, &call, key) {
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
    if cli.json || cli.output == Output::Json {
        println!(
            "{}",
            serde_json::to_string_pretty(&body).unwrap_or_default()
        );
    } else {
        print!("{}", render(&cli.command, &body));
    }
    if matches!(cli.command, Command::Verify { .. })
        && body.get("clean") != Some(&Value::Bool(true))
    {
        return ExitCode::from(3);
    }
    ExitCode::SUCCESS
}

/// The rendering of `verify`: one line per shard that differs (or failed), then a summary per index.
fn render_verify(body: &Value) -> String {
    let reports: Vec<&Value> = match body.get("results").and_then(Value::as_array) {
        Some(list) => list.iter().collect(),
        None => vec![body],
    };
    let n = |v: &Value, k: &str| v.get(k).and_then(Value::as_u64).unwrap_or(0);
    let mut out = format!(
        "{:<20} {:>5} {:>10} {:>7} {:>5} {:>4} {:>7}  {}\n",
        "INDEX", "SHARD", "MISMATCHED", "MISSING", "STALE", "DEAD", "REPAIRS", "ERROR"
    );
    for r in reports {
        let index = r.get("index").and_then(Value::as_str).unwrap_or("-");
        for sh in r
            .get("shards")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let error = sh.get("error").and_then(Value::as_str);
            if n(sh, "idsMismatched") == 0 && error.is_none() {
                continue;
            }
            out.push_str(&format!(
                "{:<20} {:>5} {:>10} {:>7} {:>5} {:>4} {:>7}  {}\n",
                index,
                n(sh, "shard"),
                n(sh, "idsMismatched"),
                n(sh, "missingCopies"),
                n(sh, "staleCopies"),
                n(sh, "deadCopies"),
                n(sh, "repairs"),
                error.unwrap_or("-")
            ));
        }
        out.push_str(&format!(
            "{index}: {} shards scanned, {} ids mismatched, {} repairs: {}\n",
            n(r, "shardsScanned"),
            n(r, "idsMismatched"),
            n(r, "repairs"),
            if r.get("clean") == Some(&Value::Bool(true)) {
                "clean"
            } else {
                "differences remain"
            }
        ));
    }
    out
}

/// The human rendering of an answer.
fn render(command: &Command, body: &Value) -> String {
    let s = |v: &Value, k: &str| match v.get(k) {
        Some(Value::String(x)) => x.clone(),
        Some(Value::Null) | None => "-".to_string(),
        Some(other) => other.to_string(),
    };
    match command {
        Command::Completions { .. } => String::new(),
        Command::Verify { .. } => render_verify(body),
        Command::Status => {
            let mut counts: std::collections::BTreeMap<String, usize> = Default::default();
            for n in body
                .get("nodes")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                *counts.entry(s(n, "health")).or_default() += 1;
            }
            let states: Vec<String> = counts.iter().map(|(k, v)| format!("{v} {k}")).collect();
            format!(
                "epoch {}  S={}  RF={}  RG={}\nnodes: {}\n",
                s(body, "epoch"),
                s(body, "shards"),
                s(body, "replicationFactor"),
                s(body, "replicaGroups"),
                if states.is_empty() {
                    "none".to_string()
                } else {
                    states.join(", ")
                }
            )
        }
        Command::Shards => {
            let mut out = format!("{:>6} {:>5}  {}\n", "SHARD", "GROUP", "NODES");
            for sh in body
                .get("results")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                for g in sh
                    .get("groups")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    let nodes: Vec<String> = g
                        .get("nodes")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                        .map(|n| format!("{} ({})", s(n, "id"), s(n, "health")))
                        .collect();
                    out.push_str(&format!(
                        "{:>6} {:>5}  {}\n",
                        s(sh, "shard"),
                        s(g, "group"),
                        nodes.join(", ")
                    ));
                }
            }
            out
        }
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
        Command::Alias(AliasCommand::List) => {
            let mut out = format!("{:<32} {:<32} {}\n", "ALIAS", "TARGET", "UPDATED");
            for a in body
                .get("results")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                out.push_str(&alias_line(a, &s));
            }
            out
        }
        Command::Alias(AliasCommand::Delete { name }) => format!("alias {name} deleted\n"),
        Command::Alias(_) => {
            let mut out = alias_line(body, &s);
            for f in body
                .get("history")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                out.push_str(&format!(
                    "  was {} until {}\n",
                    s(f, "target"),
                    s(f, "until")
                ));
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

fn alias_line(a: &Value, s: &dyn Fn(&Value, &str) -> String) -> String {
    format!(
        "{:<32} {:<32} {}\n",
        s(a, "name"),
        s(a, "target"),
        s(a, "updatedAt")
    )
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
        let cli = Cli::try_parse_from([
            "miroir-ctl",
            "alias",
            "set",
            "movies",
            "movies_v2",
            "--force",
        ])
        .unwrap();
        assert!(matches!(
            cli.command,
            Command::Alias(AliasCommand::Set { force: true, .. })
        ));
    }

    #[test]
    fn renders_status_and_shards() {
        let topo = json!({"epoch": 2, "shards": 8, "replicationFactor": 2, "replicaGroups": 1,
            "nodes": [{"id": "a", "health": "healthy"}, {"id": "b", "health": "failed"}, {"id": "c", "health": "healthy"}]});
        let out = render(&Command::Status, &topo);
        assert_eq!(
            out,
            "epoch 2  S=8  RF=2  RG=1\nnodes: 1 failed, 2 healthy\n"
        );
        let shards = json!({"results": [{"shard": 0, "groups": [{"group": 0, "nodes": [{"id": "a", "health": "healthy"}, {"id": "b", "health": "failed"}]}]}]});
        let out = render(&Command::Shards, &shards);
        assert!(
            out.lines()
                .nth(1)
                .unwrap()
                .ends_with("a (healthy), b (failed)"),
            "{out}"
        );
        let cli = Cli::try_parse_from(["miroir-ctl", "shards", "--output", "json"]).unwrap();
        assert_eq!(cli.output, Output::Json);
        assert!(Cli::try_parse_from(["miroir-ctl", "shards", "--output", "yaml"]).is_err());
        assert!(Cli::try_parse_from(["miroir-ctl", "completions", "bash"]).is_ok());
    }

    #[test]
    fn renders_verify_reports() {
        let report = json!({
            "index": "movies", "clean": false, "shardsScanned": 2, "idsMismatched": 3, "repairs": 0,
            "shards": [
                {"shard": 0, "idsMismatched": 0},
                {"shard": 1, "idsMismatched": 3, "missingCopies": 1, "staleCopies": 1, "deadCopies": 1},
                {"shard": 2, "idsMismatched": 0, "error": "scan of node n1 failed 5 times"}
            ]
        });
        let cmd = Command::Verify {
            index: None,
            repair: false,
        };
        let out = render(&cmd, &report);
        assert!(
            out.contains("movies") && out.contains("differences remain"),
            "{out}"
        );
        assert_eq!(
            out.lines().filter(|l| l.starts_with("movies ")).count(),
            2,
            "{out}"
        );
        assert!(out.contains("scan of node n1 failed"), "{out}");
        let all = json!({"results": [{"index": "a", "clean": true, "shards": []}], "clean": true});
        let out = render(&cmd, &all);
        assert!(
            out.contains("a: 0 shards scanned, 0 ids mismatched, 0 repairs: clean"),
            "{out}"
        );
    }

    #[test]
    fn renders_aliases() {
        let list = json!({"results": [{"name": "movies", "target": "movies_v2", "updatedAt": "2026-11-27T10:00:00Z"}], "total": 1});
        let out = render(&Command::Alias(AliasCommand::List), &list);
        assert!(out.lines().nth(1).unwrap().starts_with("movies "), "{out}");
        let one = json!({"name": "movies", "target": "movies_v2", "history": [{"target": "movies_v1", "until": "t"}]});
        let out = render(
            &Command::Alias(AliasCommand::Get {
                name: "movies".into(),
            }),
            &one,
        );
        assert!(out.contains("was movies_v1 until t"), "{out}");
    }
}
