//! The run: optional setup, then the timed phase in closed or open loop, then the report.
//!
//! Operations are numbered slots. With `T` targets (1, or 2 in compare mode), slot `s` goes to target
//! `s % T` and carries operation `s / T`, so the targets receive the same operations, interleaved
//! A, B, A, B ... in time and under the same machine conditions.
//!
//! - Closed loop: `concurrency` workers each take the next slot, send it, wait for the answer, repeat,
//!   until the deadline or the request cap. Latency is measured from send to answer.
//! - Open loop: slot `s` is due at `start + s / (rate * T)`; it waits for one of `concurrency` permits
//!   and then runs. Latency is measured from the slot's due time, so queueing behind a slow target is
//!   counted (no coordinated omission).
//!
//! Operation `k`: a search is query `k` of the seeded mix; an ingest is documents
//! `docs + k * batch .. docs + (k + 1) * batch`; mixed picks one or the other from `(seed, k)`.
//! Stops by itself: nothing is started after the deadline or past the cap; requests in flight finish
//! (bounded by the request timeout).

use super::client::{Answer, Failure, Target};
use super::corpus::{Corpus, Stream, FILTERABLE, SORTABLE};
use super::options::{Options, Workload};
use super::stats::{fmt_ms, Recorder, Summary};
use bytes::Bytes;
use hyper::Method;
use serde_json::{json, Map, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

const MIX_DOMAIN: u64 = 3;

/// One target's result.
#[derive(Debug, Clone)]
pub struct TargetReport {
    /// The URL.
    pub url: String,
    /// Seconds spent in setup (when `--setup`).
    pub setup_s: Option<f64>,
    /// The timed phase.
    pub summary: Summary,
}

/// The result of a run.
#[derive(Debug, Clone)]
pub struct Report {
    /// The settings.
    pub options: Options,
    /// Target A, then B in compare mode.
    pub targets: Vec<TargetReport>,
}

fn ratio_cell(v: Option<f64>) -> String {
    v.map(|r| format!("{r:.2}x")).unwrap_or_else(|| "-".into())
}

impl Report {
    /// `B / A` for each percentile, the mean, the max and the throughput (compare mode only).
    pub fn ratios(&self) -> Option<Vec<(&'static str, Option<f64>)>> {
        match self.targets.as_slice() {
            [a, b] => Some(a.summary.ratios(&b.summary)),
            _ => None,
        }
    }

    fn mode(&self) -> String {
        let o = &self.options;
        match o.rate {
            Some(r) => format!(
                "open loop ({r} req/s per target, at most {} in flight)",
                o.concurrency
            ),
            None => format!("closed loop (concurrency {})", o.concurrency),
        }
    }

    /// As JSON.
    pub fn to_json(&self) -> Value {
        let o = &self.options;
        let targets: Vec<Value> = self
            .targets
            .iter()
            .map(|t| {
                let mut v = t.summary.to_json();
                if let Value::Object(m) = &mut v {
                    m.insert("url".into(), json!(t.url));
                    m.insert("setupS".into(), json!(t.setup_s));
                }
                v
            })
            .collect();
        let mut out = json!({
            "workload": o.workload.name(),
            "mode": if o.rate.is_some() { "open" } else { "closed" },
            "concurrency": o.concurrency,
            "rate": o.rate,
            "durationS": o.duration.as_secs_f64(),
            "seed": o.seed,
            "docs": o.docs,
            "index": o.index,
            "targets": targets,
        });
        if let (Some(ratios), Value::Object(m)) = (self.ratios(), &mut out) {
            let mut r = Map::new();
            for (name, v) in ratios {
                r.insert(name.to_string(), json!(v));
            }
            m.insert("ratiosBOverA".into(), Value::Object(r));
        }
        out
    }

    /// As a table.
    pub fn to_table(&self) -> String {
        let o = &self.options;
        let mut out = format!(
            "miroir-bench: {} workload, {}, {:.1}s, seed {}, {} docs, index `{}`\n",
            o.workload.name(),
            self.mode(),
            o.duration.as_secs_f64(),
            o.seed,
            o.docs,
            o.index
        );
        out.push_str(&format!(
            "{:<4} {:>9} {:>9} {:>7} {:>10} {:>9} {:>9} {:>9} {:>9} {:>9}  url\n",
            "",
            "requests",
            "ok",
            "errors",
            "req/s",
            "p50 ms",
            "p90 ms",
            "p99 ms",
            "p99.9 ms",
            "max ms"
        ));
        for (i, t) in self.targets.iter().enumerate() {
            let s = &t.summary;
            out.push_str(&format!(
                "{:<4} {:>9} {:>9} {:>7} {:>10.1} {:>9} {:>9} {:>9} {:>9} {:>9}  {}\n",
                if i == 0 { "A" } else { "B" },
                s.requests,
                s.ok,
                s.error_count(),
                s.throughput,
                fmt_ms(s.p50_us),
                fmt_ms(s.p90_us),
                fmt_ms(s.p99_us),
                fmt_ms(s.p999_us),
                fmt_ms(s.max_us),
                t.url
            ));
        }
        if let Some(ratios) = self.ratios() {
            let get =
                |n: &str| ratio_cell(ratios.iter().find(|(k, _)| *k == n).and_then(|(_, v)| *v));
            out.push_str(&format!(
                "{:<4} {:>9} {:>9} {:>7} {:>10} {:>9} {:>9} {:>9} {:>9} {:>9}\n",
                "B/A",
                "",
                "",
                "",
                get("throughput"),
                get("p50"),
                get("p90"),
                get("p99"),
                get("p99.9"),
                get("max")
            ));
        }
        for (i, t) in self.targets.iter().enumerate() {
            if let Some(s) = t.setup_s {
                out.push_str(&format!(
                    "setup {}: {:.2}s ({} docs)\n",
                    if i == 0 { "A" } else { "B" },
                    s,
                    o.docs
                ));
            }
            if !t.summary.errors.is_empty() {
                let list: Vec<String> = t
                    .summary
                    .errors
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect();
                out.push_str(&format!(
                    "errors {}: {}\n",
                    if i == 0 { "A" } else { "B" },
                    list.join(" ")
                ));
            }
        }
        out
    }
}

/// Shared, read-only context of a run.
struct Ctx {
    corpus: Corpus,
    options: Options,
    targets: Vec<Target>,
}

/// One operation, ready to send.
enum Op {
    Search(Bytes),
    Ingest(Bytes),
}

impl Ctx {
    fn op(&self, k: u64) -> Op {
        let o = &self.options;
        let search = match o.workload {
            Workload::Search => true,
            Workload::Ingest => false,
            Workload::Mixed => Stream::new(o.seed, MIX_DOMAIN, k).below(100) < o.search_share,
        };
        if search {
            let q = self.corpus.query(k);
            Op::Search(Bytes::from(serde_json::to_vec(&q.body).unwrap_or_default()))
        } else {
            let start = o.docs.saturating_add(k.saturating_mul(o.batch));
            let docs = Value::Array(self.corpus.batch(start, o.batch));
            Op::Ingest(Bytes::from(serde_json::to_vec(&docs).unwrap_or_default()))
        }
    }

    /// Sends `op` to target `t`; `Err(cause)` on failure.
    async fn execute(&self, t: usize, op: Op) -> Result<(), String> {
        let target = &self.targets[t];
        let index = &self.options.index;
        match op {
            Op::Search(body) => {
                let a = target
                    .send(
                        Method::POST,
                        &format!("/indexes/{index}/search"),
                        Some(body),
                    )
                    .await
                    .map_err(|f| f.cause().to_string())?;
                status_result(&a)
            }
            Op::Ingest(body) => {
                let a = target
                    .send(
                        Method::POST,
                        &format!("/indexes/{index}/documents"),
                        Some(body),
                    )
                    .await
                    .map_err(|f| f.cause().to_string())?;
                status_result(&a)?;
                if self.options.wait_tasks {
                    let uid = task_uid(&a).ok_or("bad_task_answer")?;
                    wait_task(target, uid, self.options.task_timeout)
                        .await
                        .map_err(|e| match e {
                            TaskError::Failed(_) => "task_failed".to_string(),
                            TaskError::Timeout => "task_timeout".to_string(),
                            TaskError::Request(f) => f,
                        })?;
                }
                Ok(())
            }
        }
    }
}

fn status_result(a: &Answer) -> Result<(), String> {
    if a.is_success() {
        Ok(())
    } else {
        Err(a.status.to_string())
    }
}

fn task_uid(a: &Answer) -> Option<u64> {
    a.json().get("taskUid").and_then(Value::as_u64)
}

/// Why waiting for a task did not end in `succeeded`.
#[derive(Debug, Clone, PartialEq)]
pub enum TaskError {
    /// The task ended `failed` or `canceled`: the task object.
    Failed(Value),
    /// Not finished in time.
    Timeout,
    /// Polling failed: the cause (`timeout`, `connect`, `io`, or an HTTP status).
    Request(String),
}

impl std::fmt::Display for TaskError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TaskError::Failed(t) => write!(
                f,
                "task {} ended {}: {}",
                t["uid"],
                t["status"].as_str().unwrap_or("?"),
                t["error"]
            ),
            TaskError::Timeout => write!(f, "task did not finish in time"),
            TaskError::Request(c) => write!(f, "polling the task failed: {c}"),
        }
    }
}

/// Polls `GET /tasks/{uid}` until the task succeeds (its object), fails, or `timeout` passes.
pub async fn wait_task(target: &Target, uid: u64, timeout: Duration) -> Result<Value, TaskError> {
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(2);
    loop {
        let a = target
            .send(Method::GET, &format!("/tasks/{uid}"), None)
            .await
            .map_err(|f: Failure| TaskError::Request(f.cause().to_string()))?;
        if !a.is_success() {
            return Err(TaskError::Request(a.status.to_string()));
        }
        let task = a.json();
        match task.get("status").and_then(Value::as_str) {
            Some("succeeded") => return Ok(task),
            Some("failed") | Some("canceled") => return Err(TaskError::Failed(task)),
            _ => {}
        }
        if Instant::now() >= deadline {
            return Err(TaskError::Timeout);
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(100));
    }
}

async fn enqueue(target: &Target, method: Method, path: &str, body: &Value) -> Result<u64, String> {
    let a = target
        .send_json(method.clone(), path, body)
        .await
        .map_err(|f| format!("{method} {path} on {}: {f}", target.url()))?;
    if !a.is_success() {
        return Err(format!(
            "{method} {path} on {}: status {}: {}",
            target.url(),
            a.status,
            String::from_utf8_lossy(&a.body)
        ));
    }
    task_uid(&a).ok_or_else(|| {
        format!(
            "{method} {path} on {}: no taskUid in the answer",
            target.url()
        )
    })
}

/// Creates the index (an existing one is kept), makes the generated facet and number fields filterable
/// and sortable, and loads documents `0..docs`, waiting for every task to succeed.
pub async fn setup(target: &Target, o: &Options, corpus: &Corpus) -> Result<(), String> {
    let index = &o.index;
    let uid = enqueue(
        target,
        Method::POST,
        "/indexes",
        &json!({"uid": index, "primaryKey": "id"}),
    )
    .await?;
    match wait_task(target, uid, o.task_timeout).await {
        Ok(_) => {}
        Err(TaskError::Failed(t)) if t["error"]["code"] == "index_already_exists" => {}
        Err(e) => return Err(format!("creating index `{index}`: {e}")),
    }
    let uid = enqueue(
        target,
        Method::PATCH,
        &format!("/indexes/{index}/settings"),
        &json!({"filterableAttributes": FILTERABLE, "sortableAttributes": SORTABLE}),
    )
    .await?;
    wait_task(target, uid, o.task_timeout)
        .await
        .map_err(|e| format!("settings of `{index}`: {e}"))?;
    let mut uids = Vec::new();
    let mut start = 0;
    while start < o.docs {
        let n = o.setup_batch.min(o.docs - start);
        let docs = Value::Array(corpus.batch(start, n));
        uids.push(
            enqueue(
                target,
                Method::POST,
                &format!("/indexes/{index}/documents"),
                &docs,
            )
            .await?,
        );
        start += n;
    }
    for uid in uids {
        wait_task(target, uid, o.task_timeout)
            .await
            .map_err(|e| format!("loading documents into `{index}`: {e}"))?;
    }
    Ok(())
}

/// Runs setup (when asked) and the timed phase, and reports.
pub async fn run(options: &Options) -> Result<Report, String> {
    super::options::validate(options)?;
    let pool = options.concurrency;
    let mut targets = vec![Target::new(
        &options.url,
        options.key.as_deref(),
        options.timeout,
        pool,
    )?];
    if let Some(url2) = &options.compare {
        let key2 = options.key2.as_deref().or(options.key.as_deref());
        targets.push(Target::new(url2, key2, options.timeout, pool)?);
    }
    let corpus = Corpus::new(options.seed);
    let mut setup_s = vec![None; targets.len()];
    if options.setup {
        for (i, t) in targets.iter().enumerate() {
            let started = Instant::now();
            setup(t, options, &corpus).await?;
            setup_s[i] = Some(started.elapsed().as_secs_f64());
        }
    }
    let ctx = Arc::new(Ctx {
        corpus,
        options: options.clone(),
        targets,
    });
    let (recorders, elapsed) = match options.rate {
        None => closed_loop(Arc::clone(&ctx)).await,
        Some(rate) => open_loop(Arc::clone(&ctx), rate).await,
    };
    let targets = recorders
        .into_iter()
        .zip(setup_s)
        .enumerate()
        .map(|(i, (r, setup_s))| TargetReport {
            url: ctx.targets[i].url().to_string(),
            setup_s,
            summary: r.summary(elapsed),
        })
        .collect();
    Ok(Report {
        options: options.clone(),
        targets,
    })
}

fn slot_cap(o: &Options, n_targets: u64) -> u64 {
    o.requests
        .map(|r| r.saturating_mul(n_targets))
        .unwrap_or(u64::MAX)
}

async fn closed_loop(ctx: Arc<Ctx>) -> (Vec<Recorder>, Duration) {
    let n = ctx.targets.len() as u64;
    let cap = slot_cap(&ctx.options, n);
    let next = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let deadline = start + ctx.options.duration;
    let bounded_by_time = ctx.options.requests.is_none() || !ctx.options.duration.is_zero();
    let mut workers = JoinSet::new();
    for _ in 0..ctx.options.concurrency {
        let ctx = Arc::clone(&ctx);
        let next = Arc::clone(&next);
        workers.spawn(async move {
            let mut recs = vec![Recorder::default(); ctx.targets.len()];
            loop {
                if bounded_by_time && Instant::now() >= deadline {
                    break;
                }
                let slot = next.fetch_add(1, Ordering::Relaxed);
                if slot >= cap {
                    break;
                }
                let t = (slot % n) as usize;
                let op = ctx.op(slot / n);
                let sent = Instant::now();
                match ctx.execute(t, op).await {
                    Ok(()) => recs[t].ok(sent.elapsed()),
                    Err(cause) => recs[t].error(&cause),
                }
            }
            recs
        });
    }
    let mut total = vec![Recorder::default(); ctx.targets.len()];
    while let Some(done) = workers.join_next().await {
        if let Ok(recs) = done {
            for (acc, r) in total.iter_mut().zip(recs) {
                acc.merge(r);
            }
        }
    }
    (total, start.elapsed())
}

async fn open_loop(ctx: Arc<Ctx>, rate: f64) -> (Vec<Recorder>, Duration) {
    let n = ctx.targets.len() as u64;
    let cap = slot_cap(&ctx.options, n);
    let interval = 1.0 / (rate * n as f64);
    let permits = Arc::new(Semaphore::new(ctx.options.concurrency));
    let start = Instant::now();
    let duration = ctx.options.duration;
    let bounded_by_time = ctx.options.requests.is_none() || !duration.is_zero();
    let mut total = vec![Recorder::default(); ctx.targets.len()];
    let mut running: JoinSet<(usize, Result<Duration, String>)> = JoinSet::new();
    let mut slot: u64 = 0;
    while slot < cap {
        let offset = Duration::from_secs_f64(interval * slot as f64);
        if bounded_by_time && offset >= duration {
            break;
        }
        let due = start + offset;
        tokio::time::sleep_until(due.into()).await;
        let Ok(permit) = Arc::clone(&permits).acquire_owned().await else {
            break;
        };
        if bounded_by_time && start.elapsed() >= duration {
            break;
        }
        let t = (slot % n) as usize;
        let k = slot / n;
        let c = Arc::clone(&ctx);
        running.spawn(async move {
            let _permit = permit;
            let op = c.op(k);
            let r = c.execute(t, op).await.map(|()| due.elapsed());
            (t, r)
        });
        while let Some(done) = running.try_join_next() {
            record(&mut total, done);
        }
        slot += 1;
    }
    while let Some(done) = running.join_next().await {
        record(&mut total, done);
    }
    (total, start.elapsed())
}

fn record(
    total: &mut [Recorder],
    done: Result<(usize, Result<Duration, String>), tokio::task::JoinError>,
) {
    match done {
        Ok((t, Ok(latency))) => total[t].ok(latency),
        Ok((t, Err(cause))) => total[t].error(&cause),
        Err(_) => {
            if let Some(first) = total.first_mut() {
                first.error("panic");
            }
        }
    }
}
