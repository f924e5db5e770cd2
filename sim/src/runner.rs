//! Runs a scenario over many seeds and reports a failing seed with the one command that replays it.
//!
//! Seeds: `MADSIM_TEST_SEED=N` runs exactly seed N (the replay). Otherwise seeds `0..K` run, where K is
//! `MIROIR_SIM_SEEDS`, else `MADSIM_TEST_NUM`, else the scenario's default. Each seed runs in a fresh madsim
//! runtime on its own thread, so a panic anywhere in the world is caught and reported with its seed.
//!
//! A failure prints the scenario, the seed, the fault schedule, the checker's message and the repro line
//! `MADSIM_TEST_SEED=<seed> cargo sim <scenario>`; `MIROIR_SIM_TRACE=path` writes the event log of a run.

use std::collections::BTreeMap;
use std::fmt;

/// What a run reports when it ends well.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// The digest of the run's event trace (equal digests for equal seeds is the determinism check).
    pub trace_digest: u64,
    /// The number of client operations acknowledged, to show the run did real work.
    pub acknowledged: u64,
    /// The full trace when tracing was requested.
    pub trace_text: Option<String>,
    /// Whether searches were compared with the single-node oracle (only when every replica agrees).
    pub oracle_checked: bool,
    /// How many times searches were compared with the oracle while a migration or resharding was live
    /// (0 for runs that do not check mid-run: see `fleet::mid_run_oracle`).
    pub oracle_during: u64,
    /// The phase-tied faults of an elastic run that fired (see `migrate::Elastic::fired`).
    pub elastic_faults: Vec<String>,
    /// Mid-run oracle attempts that were not compared, by reason (`proxy_unreachable`, `not_quiet`,
    /// `unsettled`, `in_doubt`, `degraded`: see `fleet::Skip`).
    pub oracle_skips: BTreeMap<String, u64>,
    /// Equal mid-run comparisons by the coordinator phase they saw (`migration Copy`, `reshard Backfill`...).
    pub oracle_phases: BTreeMap<String, u64>,
}

/// Why a run failed: which invariant (or the liveness phase) and what it saw.
#[derive(Debug, Clone)]
pub struct Failure {
    pub checker: String,
    pub message: String,
    /// The fault schedule of the run, printed with the failure.
    pub schedule: String,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}] {}\n{}", self.checker, self.message, self.schedule)
    }
}

/// The seeds to run: the replay seed alone, or `0..count`.
pub fn seeds(default_count: u64) -> Vec<u64> {
    if let Some(seed) = env_u64("MADSIM_TEST_SEED") {
        return vec![seed];
    }
    let count = env_u64("MIROIR_SIM_SEEDS")
        .or_else(|| env_u64("MADSIM_TEST_NUM"))
        .unwrap_or(default_count);
    (0..count).collect()
}

fn env_u64(name: &str) -> Option<u64> {
    let raw = std::env::var(name).ok()?;
    match raw.trim().parse() {
        Ok(v) => Some(v),
        Err(_) => panic!("{name} must be a non-negative integer, found {raw:?}"),
    }
}

/// The command that replays one seed of one scenario.
pub fn repro_command(scenario: &str, seed: u64) -> String {
    format!("MADSIM_TEST_SEED={seed} cargo sim {scenario}")
}

/// Runs `world` for every seed; panics (failing the test) at the first failing seed with the full report.
#[cfg(madsim)]
pub fn sweep<F, Fut>(scenario: &str, default_count: u64, world: F) -> Vec<Outcome>
where
    F: Fn(u64) -> Fut + Send + Sync + Clone + 'static,
    Fut: std::future::Future<Output = Result<Outcome, Failure>> + 'static,
{
    let seeds = seeds(default_count);
    let mut outcomes = Vec::with_capacity(seeds.len());
    for seed in seeds {
        let world = world.clone();
        let joined = std::thread::Builder::new()
            .name(format!("{scenario}-{seed}"))
            .stack_size(16 << 20)
            .spawn(move || {
                let rt =
                    madsim::runtime::Runtime::with_seed_and_config(seed, madsim::Config::default());
                rt.block_on(world(seed))
            })
            .expect("spawn a simulation thread")
            .join();
        let report = |what: String| -> ! {
            panic!(
                "\nsimulation failed: scenario {scenario}, seed {seed}\n{what}\nreproduce with:\n    {}\n",
                repro_command(scenario, seed)
            )
        };
        match joined {
            Ok(Ok(outcome)) => {
                if let (Ok(path), Some(text)) =
                    (std::env::var("MIROIR_SIM_TRACE"), &outcome.trace_text)
                {
                    std::fs::write(&path, text)
                        .unwrap_or_else(|e| panic!("write trace to {path}: {e}"));
                }
                outcomes.push(outcome)
            }
            Ok(Err(failure)) => report(failure.to_string()),
            Err(panic) => {
                let msg = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "a panic without a message".into());
                report(format!("[panic] {msg}"))
            }
        }
    }
    outcomes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repro_line_names_seed_and_scenario() {
        assert_eq!(
            repro_command("node_crash", 1234),
            "MADSIM_TEST_SEED=1234 cargo sim node_crash"
        );
    }

    #[test]
    fn failure_display_carries_checker_message_and_schedule() {
        let f = Failure {
            checker: "no_lost_write".into(),
            message: "doc 7 missing".into(),
            schedule: "kill node1".into(),
        };
        let s = f.to_string();
        assert!(s.contains("[no_lost_write] doc 7 missing") && s.contains("kill node1"));
    }
}
