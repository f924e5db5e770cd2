//! miroir-ctl: the operator CLI. It talks to a running proxy over HTTP: the `/_miroir/*` admin API with the
//! admin key, and the Meilisearch-compatible API with the master key where an operator needs a client's view.
//!
//! Commands: `status`, `ready`, `topology`, `shards`, `tasks`, `task <uid>`, `alias list|get|set|delete`,
//! `completions <shell>`, the elastic fleet: `node add|drain|remove|fail`, `group add|remove`,
//! `rebalance status [--watch]|start`, `verify [--index I] [--repair]`, and online resharding: `reshard --index I
//! --new-shards N [--throttle R] [--dry-run] [--watch]`, `reshard status|abort|rollback --index I`. Every command
//! prints a human table by default and the raw JSON with `--json` (or `--output json`); the exit status is 0 on
//! success, 1 when the proxy answered an error (or a resharding was aborted), 2 when it could not be reached, 3 when
//! `verify` leaves differences between replicas.

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
    /// Fleet nodes: add one, drain one, remove a drained one, declare one failed for good.
    #[command(subcommand)]
    Node(NodeCommand),
    /// Replica groups: add one, remove the last one.
    #[command(subcommand)]
    Group(GroupCommand),
    /// The rebalancer: progress of the running fleet change.
    #[command(subcommand)]
    Rebalance(RebalanceCommand),
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
    /// Online resharding: change an index's number of shards (S) while it serves.
    Reshard(ReshardArgs),
}

/// `reshard --index I --new-shards N …` starts a resharding; `reshard status|abort|rollback --index I`.
#[derive(clap::Args, Debug)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
struct ReshardArgs {
    #[command(subcommand)]
    action: Option<ReshardCommand>,
    /// The index to reshard.
    #[arg(long, required = true)]
    index: Option<String>,
    /// The new number of shards.
    #[arg(long, required = true)]
    new_shards: Option<u32>,
    /// Backfill throttle in documents per second (0 = unthrottled; default: the proxy's configuration).
    #[arg(long)]
    throttle: Option<u64>,
    /// Only estimate: documents to copy, transient storage, duration.
    #[arg(long)]
    dry_run: bool,
    /// Keep polling the status until the resharding is finished.
    #[arg(long, conflicts_with = "dry_run")]
    watch: bool,
    /// Polling period of `--watch`, in milliseconds.
    #[arg(long, default_value_t = 1000)]
    interval_ms: u64,
}

#[derive(Subcommand, Debug)]
enum ReshardCommand {
    /// Phase, documents copied / total, rate and ETA of the index's resharding.
    Status {
        #[arg(long)]
        index: String,
        /// Keep polling until the resharding is finished.
        #[arg(long)]
        watch: bool,
        /// Polling period of `--watch`, in milliseconds.
        #[arg(long, default_value_t = 1000)]
        interval_ms: u64,
    },
    /// Gives up before the swap: the shadow index is deleted, clients saw nothing.
    Abort {
        #[arg(long)]
        index: String,
    },
    /// Swaps the old index back in while it is retained.
    Rollback {
        #[arg(long)]
        index: String,
    },
}

fn reshard_path(index: &str, tail: &str) -> String {
    format!("/_miroir/indexes/{}/reshard{tail}", segment(index))
}

/// The call of a `reshard` command, and the status call to poll for `--watch` (with its period).
fn reshard_call(r: &ReshardArgs) -> (Call, Option<(Call, u64)>) {
    match &r.action {
        Some(ReshardCommand::Status {
            index,
            watch,
            interval_ms,
        }) => {
            let call = Call::get(reshard_path(index, "/status"));
            let poll = watch.then(|| (Call::get(reshard_path(index, "/status")), *interval_ms));
            (call, poll)
        }
        Some(ReshardCommand::Abort { index }) => (
            post(reshard_path(index, "/abort"), serde_json::json!({})),
            None,
        ),
        Some(ReshardCommand::Rollback { index }) => (
            post(reshard_path(index, "/rollback"), serde_json::json!({})),
            None,
        ),
        None => {
            let index = r.index.clone().unwrap_or_default();
            let mut body = serde_json::json!({"new_shards": r.new_shards.unwrap_or(0)});
            if let Some(t) = r.throttle {
                body["throttle_docs_per_sec"] = t.into();
            }
            if r.dry_run {
                body["dry_run"] = true.into();
            }
            let poll = r
                .watch
                .then(|| (Call::get(reshard_path(&index, "/status")), r.interval_ms));
            (post(reshard_path(&index, ""), body), poll)
        }
    }
}

/// Whether a resharding status is final for `--watch`, and whether it failed (aborted). The swap counts:
/// from `retain` on the new S serves (the old index is kept for a rollback until the retention ends).
fn reshard_settled(body: &Value) -> Option<bool> {
    match body.get("phase").and_then(Value::as_str) {
        Some("retain" | "cleanup" | "done") => Some(false),
        Some("aborted") => Some(true),
        _ if body.get("running") == Some(&Value::Bool(false)) => Some(false),
        _ => None,
    }
}

/// The rendering of a resharding answer (plan, status, dry run).
fn render_reshard(body: &Value, s: &dyn Fn(&Value, &str) -> String) -> String {
    if body.get("dryRun") == Some(&Value::Bool(true)) {
        return format!(
            "dry run {}: S {} -> {}, {} document(s) to copy, {} copies in the new index, transient storage x{} \
             (peak {} bytes), {} ms at {} docs/s\n",
            s(body, "indexUid"),
            s(body, "fromShards"),
            s(body, "toShards"),
            s(body, "docsToCopy"),
            s(body, "shadowCopies"),
            s(body, "transientStorageFactor"),
            s(body, "peakBytes"),
            s(body, "durationMs"),
            s(body, "throttleDocsPerSec"),
        );
    }
    format!(
        "{} {}: S {} -> {} (serving S={}), {}/{} document(s) copied, {} docs/s, ETA {} ms{}\n",
        s(body, "phase"),
        s(body, "indexUid"),
        s(body, "fromShards"),
        s(body, "toShards"),
        s(body, "shards"),
        s(body, "docsCopied"),
        s(body, "docsTotal"),
        s(body, "docsPerSecond"),
        s(body, "etaMs"),
        if body.get("rollback") == Some(&Value::Bool(true)) {
            " (rollback)"
        } else {
            ""
        },
    )
}

#[derive(Subcommand, Debug)]
enum NodeCommand {
    /// Adds a node to a replica group; its shards are migrated to it.
    Add {
        /// The new node's id.
        id: String,
        /// Its Meilisearch URL (`http://host:port`).
        #[arg(value_name = "URL")]
        address: String,
        /// Its replica group.
        #[arg(long, default_value_t = 0)]
        group: u32,
    },
    /// Moves every shard off a node while it keeps serving.
    Drain { id: String },
    /// Forgets a node that holds nothing any more (drain it first).
    Remove { id: String },
    /// Declares a node lost for good: its shards are re-replicated from the survivors.
    Fail { id: String },
}

#[derive(Subcommand, Debug)]
enum GroupCommand {
    /// Adds a replica group made of these nodes, each given as `id=url`.
    Add {
        #[arg(required = true, value_parser = parse_group_node)]
        nodes: Vec<(String, String)>,
    },
    /// Removes the last replica group.
    Remove { id: u32 },
}

#[derive(Subcommand, Debug)]
enum RebalanceCommand {
    /// The running (or last) fleet change: per-shard phases, documents copied, rate, ETA.
    Status {
        /// Keep polling until the change is finished.
        #[arg(long)]
        watch: bool,
        /// Polling period of `--watch`, in milliseconds.
        #[arg(long, default_value_t = 1000)]
        interval_ms: u64,
    },
    /// Wakes the rebalancer (a change claimed by a proxy that died is resumed) and prints its status.
    Start,
}

/// `id=url` → (id, url).
fn parse_group_node(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((id, url)) if !id.is_empty() && !url.is_empty() => {
            Ok((id.to_string(), url.to_string()))
        }
        _ => Err(format!("expected `id=url`, got {s:?}")),
    }
}

/// A path segment with everything but `A-Z a-z 0-9 - _ .` percent-encoded.
fn segment(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn post(path: String, body: Value) -> Call {
    Call {
        method: "POST",
        path,
        body: Some(body),
    }
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
        Command::Node(n) => (
            match n {
                NodeCommand::Add { id, address, group } => post(
                    "/_miroir/nodes".into(),
                    serde_json::json!({"id": id, "url": address, "replicaGroup": group}),
                ),
                NodeCommand::Drain { id } => post(
                    format!("/_miroir/nodes/{}/drain", segment(id)),
                    serde_json::json!({}),
                ),
                NodeCommand::Fail { id } => post(
                    format!("/_miroir/nodes/{}/fail", segment(id)),
                    serde_json::json!({}),
                ),
                NodeCommand::Remove { id } => Call {
                    method: "DELETE",
                    path: format!("/_miroir/nodes/{}", segment(id)),
                    body: None,
                },
            },
            &cli.admin_key,
        ),
        Command::Group(g) => (
            match g {
                GroupCommand::Add { nodes } => post(
                    "/_miroir/groups".into(),
                    serde_json::json!({"nodes": nodes
                        .iter()
                        .map(|(id, url)| serde_json::json!({"id": id, "url": url}))
                        .collect::<Vec<_>>()}),
                ),
                GroupCommand::Remove { id } => Call {
                    method: "DELETE",
                    path: format!("/_miroir/groups/{id}"),
                    body: None,
                },
            },
            &cli.admin_key,
        ),
        Command::Rebalance(RebalanceCommand::Start) => (
            post("/_miroir/rebalance".into(), serde_json::json!({})),
            &cli.admin_key,
        ),
        Command::Rebalance(RebalanceCommand::Status { .. }) => (
            Call::get("/_miroir/rebalance/status".into()),
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
        Command::Reshard(r) => (reshard_call(r).0, &cli.admin_key),
    };
    let reshard_poll = match &cli.command {
        Command::Reshard(r) => reshard_call(r).1,
        _ => None,
    };
    if let (Some((poll, interval_ms)), Command::Reshard(ReshardArgs { action: None, .. })) =
        (&reshard_poll, &cli.command)
    {
        // start, then watch
        match send(&cli, &call, key) {
            Ok(a) if (200..300).contains(&a.status) => {}
            Ok(a) => {
                let body: Value = serde_json::from_slice(&a.body).unwrap_or(Value::Null);
                return proxy_error(a.status, &body);
            }
            Err(e) => {
                eprintln!("miroir-ctl: cannot reach {}: {e}", cli.url);
                return ExitCode::from(2);
            }
        }
        return watch(&cli, poll, key, *interval_ms, reshard_settled);
    }
    if let Some((poll, interval_ms)) = &reshard_poll {
        return watch(&cli, poll, key, *interval_ms, reshard_settled);
    }
    if let Command::Rebalance(RebalanceCommand::Status {
        watch: true,
        interval_ms,
    }) = &cli.command
    {
        return watch(&cli, &call, key, *interval_ms, |b| {
            rebalance_settled(b)
                .then(|| b.pointer("/last/status").and_then(Value::as_str) == Some("failed"))
        });
    }
    let answer = match send(&cli, &call, key) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("miroir-ctl: cannot reach {}: {e}", cli.url);
            return ExitCode::from(2);
        }
    };
    let body: Value = serde_json::from_slice(&answer.body).unwrap_or(Value::Null);
    if !(200..300).contains(&answer.status) {
        return proxy_error(answer.status, &body);
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

/// Whether a rebalance status is final (nothing runs or waits).
fn rebalance_settled(body: &Value) -> bool {
    !matches!(
        body.get("status").and_then(Value::as_str),
        Some("running" | "enqueued")
    )
}

/// `rebalance status --watch`: prints the status every `interval_ms` until the change is finished; exits 1
/// when the proxy answers an error, 2 when it cannot be reached.
/// `settled` tells whether a status is final (`Some`) and then whether it failed (`Some(true)`: exit 1).
/// Also `reshard … --watch`.
fn watch(
    cli: &Cli,
    call: &Call,
    key: &str,
    interval_ms: u64,
    settled: impl Fn(&Value) -> Option<bool>,
) -> ExitCode {
    let json = cli.json || cli.output == Output::Json;
    loop {
        let answer = match send(cli, call, key) {
            Ok(a) => a,
            Err(e) => {
                eprintln!("miroir-ctl: cannot reach {}: {e}", cli.url);
                return ExitCode::from(2);
            }
        };
        let body: Value = serde_json::from_slice(&answer.body).unwrap_or(Value::Null);
        if !(200..300).contains(&answer.status) {
            return proxy_error(answer.status, &body);
        }
        if json {
            println!("{}", serde_json::to_string(&body).unwrap_or_default());
        } else {
            print!("{}", render(&cli.command, &body));
        }
        match settled(&body) {
            Some(true) => return ExitCode::from(1),
            Some(false) => return ExitCode::SUCCESS,
            None => std::thread::sleep(std::time::Duration::from_millis(interval_ms.max(50))),
        }
    }
}

/// Prints the proxy's error answer; exit status 1.
fn proxy_error(status: u16, body: &Value) -> ExitCode {
    let code = body
        .get("code")
        .and_then(Value::as_str)
        .unwrap_or("unknown");
    let message = body
        .get("message")
        .and_then(Value::as_str)
        .unwrap_or("(no message)");
    eprintln!("miroir-ctl: the proxy answered {status} {code}: {message}");
    ExitCode::from(1)
}

/// The rendering of a fleet change just requested.
fn render_change(body: &Value, s: &dyn Fn(&Value, &str) -> String) -> String {
    let change = body.get("change").cloned().unwrap_or(Value::Null);
    format!(
        "{} {}: epoch {} -> {}, {} shard(s) to move\n",
        s(body, "status"),
        describe_change(&change, s),
        s(body, "fromEpoch"),
        s(body, "toEpoch"),
        s(body, "shardsToMove"),
    )
}

fn describe_change(change: &Value, s: &dyn Fn(&Value, &str) -> String) -> String {
    match change.get("type").and_then(Value::as_str) {
        Some("addGroup") => format!("addGroup {}", s(change, "nodes")),
        Some("removeGroup") => format!("removeGroup {}", s(change, "group")),
        Some(t) => format!("{t} {}", s(change, "node")),
        None => "-".to_string(),
    }
}

/// The progress display of `rebalance status`.
fn render_rebalance(body: &Value, s: &dyn Fn(&Value, &str) -> String) -> String {
    match body.get("status").and_then(Value::as_str) {
        Some("running") => {
            let total = body.get("shardsTotal").and_then(Value::as_u64).unwrap_or(0);
            let done = body.get("shardsDone").and_then(Value::as_u64).unwrap_or(0);
            let width = 30u64;
            let filled = done
                .saturating_mul(width)
                .checked_div(total)
                .unwrap_or(width)
                .min(width);
            let mut out = format!(
                "running {}: epoch {} -> {}\n[{}{}] {done}/{total} shards  {} documents copied  {} docs/s  ETA {}s\n",
                describe_change(body.get("change").unwrap_or(&Value::Null), s),
                s(body, "fromEpoch"),
                s(body, "toEpoch"),
                "#".repeat(filled as usize),
                ".".repeat((width - filled) as usize),
                s(body, "documentsCopied"),
                s(body, "documentsPerSecond"),
                s(body, "etaSeconds"),
            );
            out.push_str(&format!(
                "{:<24} {:>6} {:<11} {:>8}\n",
                "INDEX", "SHARD", "PHASE", "FAILURES"
            ));
            if let Some(indexes) = body.get("indexes").and_then(Value::as_object) {
                for (uid, i) in indexes {
                    for sh in i
                        .get("shards")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                    {
                        out.push_str(&format!(
                            "{:<24} {:>6} {:<11} {:>8}\n",
                            uid,
                            s(sh, "shard"),
                            s(sh, "phase"),
                            s(sh, "failures")
                        ));
                    }
                }
            }
            out
        }
        Some("enqueued") => format!(
            "enqueued {}: epoch {} -> {}\n",
            describe_change(body.get("change").unwrap_or(&Value::Null), s),
            s(body, "fromEpoch"),
            s(body, "toEpoch"),
        ),
        _ => {
            let mut out = format!("idle at epoch {}\n", s(body, "epoch"));
            if let Some(last) = body.get("last").filter(|l| !l.is_null()) {
                out.push_str(&format!(
                    "last change: {} {} (epoch {} -> {}), {} shard(s), {} documents copied\n",
                    s(last, "status"),
                    describe_change(last.get("change").unwrap_or(&Value::Null), s),
                    s(last, "fromEpoch"),
                    s(last, "toEpoch"),
                    s(last, "shardsTotal"),
                    s(last, "documentsCopied"),
                ));
            }
            out
        }
    }
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
        Command::Node(_) | Command::Group(_) => render_change(body, &s),
        Command::Rebalance(_) => render_rebalance(body, &s),
        Command::Reshard(_) => render_reshard(body, &s),
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
    fn elastic_commands_parse_and_render() {
        let cli = Cli::try_parse_from([
            "miroir-ctl",
            "node",
            "add",
            "n3",
            "http://h:7700",
            "--group",
            "1",
        ])
        .unwrap();
        assert!(matches!(
            &cli.command,
            Command::Node(NodeCommand::Add { group: 1, address, .. }) if address == "http://h:7700"
        ));
        assert!(Cli::try_parse_from(["miroir-ctl", "node", "add", "n3"]).is_err());
        assert!(Cli::try_parse_from(["miroir-ctl", "node", "drain"]).is_err());
        let cli =
            Cli::try_parse_from(["miroir-ctl", "group", "add", "a=http://a:1", "b=http://b:1"])
                .unwrap();
        let Command::Group(GroupCommand::Add { nodes }) = cli.command else {
            panic!("group add");
        };
        assert_eq!(nodes[1], ("b".to_string(), "http://b:1".to_string()));
        assert!(Cli::try_parse_from(["miroir-ctl", "group", "add", "nourl"]).is_err());
        assert!(Cli::try_parse_from(["miroir-ctl", "group", "add"]).is_err());
        assert!(Cli::try_parse_from(["miroir-ctl", "group", "remove", "x"]).is_err());
        let cli = Cli::try_parse_from(["miroir-ctl", "rebalance", "status", "--watch"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Rebalance(RebalanceCommand::Status { watch: true, .. })
        ));
        assert_eq!(segment("a b/c"), "a%20b%2Fc");
        assert_eq!(segment("node-1.x_y"), "node-1.x_y");

        let s = |v: &Value, k: &str| match v.get(k) {
            Some(Value::String(x)) => x.clone(),
            Some(Value::Null) | None => "-".to_string(),
            Some(other) => other.to_string(),
        };
        let change = json!({"status": "enqueued", "change": {"type": "addNode", "node": "n3"}, "fromEpoch": 1, "toEpoch": 2, "shardsToMove": 5});
        assert_eq!(
            render_change(&change, &s),
            "enqueued addNode n3: epoch 1 -> 2, 5 shard(s) to move\n"
        );
        let running = json!({"status": "running", "change": {"type": "drainNode", "node": "n1"}, "fromEpoch": 2, "toEpoch": 3,
            "shardsTotal": 4, "shardsDone": 2, "documentsCopied": 100, "documentsPerSecond": 50.0, "etaSeconds": 2.0,
            "indexes": {"movies": {"shards": [{"shard": 3, "phase": "copy", "failures": 1}]}}});
        let out = render_rebalance(&running, &s);
        assert!(
            out.starts_with("running drainNode n1: epoch 2 -> 3\n["),
            "{out}"
        );
        assert!(
            out.contains("2/4 shards") && out.contains("ETA 2.0s"),
            "{out}"
        );
        assert!(out.lines().last().unwrap().contains("copy"), "{out}");
        assert!(!rebalance_settled(&running));
        let idle = json!({"status": "idle", "epoch": 3, "last": {"status": "succeeded", "change": {"type": "removeGroup", "group": 1}, "fromEpoch": 2, "toEpoch": 3, "shardsTotal": 8, "documentsCopied": 0}});
        let out = render_rebalance(&idle, &s);
        assert!(out.starts_with("idle at epoch 3\n"), "{out}");
        assert!(out.contains("succeeded removeGroup 1"), "{out}");
        assert!(rebalance_settled(&idle));
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
    fn reshard_commands_parse_and_render() {
        let cli = Cli::try_parse_from([
            "miroir-ctl",
            "reshard",
            "--index",
            "movies",
            "--new-shards",
            "8",
            "--throttle",
            "100",
            "--watch",
        ])
        .unwrap();
        let Command::Reshard(r) = &cli.command else {
            panic!("reshard");
        };
        let (call, poll) = reshard_call(r);
        assert_eq!(call.method, "POST");
        assert_eq!(call.path, "/_miroir/indexes/movies/reshard");
        assert_eq!(
            call.body,
            Some(json!({"new_shards": 8, "throttle_docs_per_sec": 100}))
        );
        assert_eq!(
            poll.unwrap().0.path,
            "/_miroir/indexes/movies/reshard/status"
        );
        let cli = Cli::try_parse_from([
            "miroir-ctl",
            "reshard",
            "--index",
            "a b",
            "--new-shards",
            "2",
            "--dry-run",
        ])
        .unwrap();
        let Command::Reshard(r) = &cli.command else {
            panic!("reshard");
        };
        let (call, poll) = reshard_call(r);
        assert_eq!(call.path, "/_miroir/indexes/a%20b/reshard");
        assert_eq!(call.body, Some(json!({"new_shards": 2, "dry_run": true})));
        assert!(poll.is_none());
        for (args, path, method) in [
            (
                vec!["status", "--index", "m"],
                "/_miroir/indexes/m/reshard/status",
                "GET",
            ),
            (
                vec!["abort", "--index", "m"],
                "/_miroir/indexes/m/reshard/abort",
                "POST",
            ),
            (
                vec!["rollback", "--index", "m"],
                "/_miroir/indexes/m/reshard/rollback",
                "POST",
            ),
        ] {
            let mut all = vec!["miroir-ctl", "reshard"];
            all.extend(args);
            let cli = Cli::try_parse_from(all).unwrap();
            let Command::Reshard(r) = &cli.command else {
                panic!("reshard");
            };
            let (call, _) = reshard_call(r);
            assert_eq!((call.method, call.path.as_str()), (method, path));
        }
        for bad in [
            vec!["miroir-ctl", "reshard"],
            vec!["miroir-ctl", "reshard", "--index", "m"],
            vec!["miroir-ctl", "reshard", "--new-shards", "4"],
            vec!["miroir-ctl", "reshard", "--index", "m", "--new-shards", "x"],
            vec!["miroir-ctl", "reshard", "status"],
            vec![
                "miroir-ctl",
                "reshard",
                "--index",
                "m",
                "--new-shards",
                "2",
                "--dry-run",
                "--watch",
            ],
        ] {
            assert!(Cli::try_parse_from(bad.clone()).is_err(), "{bad:?}");
        }

        let s = |v: &Value, k: &str| match v.get(k) {
            Some(Value::String(x)) => x.clone(),
            Some(Value::Null) | None => "-".to_string(),
            Some(other) => other.to_string(),
        };
        let st = json!({"indexUid": "m", "phase": "backfill", "fromShards": 4, "toShards": 8, "shards": 4,
            "docsCopied": 10, "docsTotal": 100, "docsPerSecond": 5, "etaMs": 18000, "running": true});
        assert_eq!(
            render_reshard(&st, &s),
            "backfill m: S 4 -> 8 (serving S=4), 10/100 document(s) copied, 5 docs/s, ETA 18000 ms\n"
        );
        assert_eq!(reshard_settled(&st), None);
        assert_eq!(reshard_settled(&json!({"phase": "done"})), Some(false));
        assert_eq!(reshard_settled(&json!({"phase": "retain"})), Some(false));
        assert_eq!(reshard_settled(&json!({"phase": "fence"})), None);
        assert_eq!(reshard_settled(&json!({"phase": "aborted"})), Some(true));
        let dry = json!({"dryRun": true, "indexUid": "m", "fromShards": 4, "toShards": 8, "docsToCopy": 50,
            "shadowCopies": 100, "transientStorageFactor": 2, "peakBytes": 0, "durationMs": 500, "throttleDocsPerSec": 100});
        assert!(render_reshard(&dry, &s).starts_with("dry run m: S 4 -> 8, 50 document(s) to copy"));
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
