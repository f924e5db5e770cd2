//! The simulator's scenarios. Built and run by `cargo sim` (which sets `--cfg madsim`); replay one seed with
//! `MADSIM_TEST_SEED=N cargo sim <scenario>`, sweep more with `MIROIR_SIM_SEEDS=N cargo sim`.
//!
//! Each scenario runs its default number of seeds; together they sweep well over 1,000 seeds.

/// `cargo sim` sets `MIROIR_SIM_EXPECT_MADSIM`; if the madsim cfg is missing anyway (a stray `RUSTFLAGS`
/// overrides the alias's rustflags), fail instead of passing with no scenario run.
#[cfg(not(madsim))]
#[test]
fn cargo_sim_runs_with_madsim() {
    assert!(
        std::env::var("MIROIR_SIM_EXPECT_MADSIM").is_err(),
        "`cargo sim` ran without --cfg madsim (is RUSTFLAGS set? it overrides the alias's build.rustflags): no scenario ran"
    );
}

#[cfg(madsim)]
mod scenarios {
    use miroir_core::entropy::PlantedBug as EntropyBug;
    use miroir_core::quorum::WriteQuorum;
    use miroir_sim::runner::{sweep, Outcome};
    use miroir_sim::world::faults::FaultKinds;
    use miroir_sim::world::fleet::{run, FaultPattern, IdempotencyMode, SettingsMode, Spec};

    fn spec(
        name: &'static str,
        nodes: usize,
        rf: u32,
        groups: u32,
        quorum: WriteQuorum,
        faults: FaultKinds,
    ) -> Spec {
        Spec {
            name,
            nodes,
            rf,
            groups,
            shards: 8,
            quorum,
            faults,
            ops: 30,
            slow_max_ms: 1_500,
            skip_replay: false,
            pattern: FaultPattern::Swarm,
            idempotency: IdempotencyMode::Off,
            settings: SettingsMode::Off,
            elastic: None,
            reshard: None,
            entropy: Some(EntropyBug::None),
            proxies: 1,
        }
    }

    /// Runs one seed of `spec` on a thread of its own (with the sweeps' large stack); a failure is returned,
    /// not raised.
    fn run_seed(spec: Spec, seed: u64) -> Result<Outcome, miroir_sim::runner::Failure> {
        std::thread::Builder::new()
            .stack_size(16 << 20)
            .spawn(move || {
                let rt =
                    madsim::runtime::Runtime::with_seed_and_config(seed, madsim::Config::default());
                rt.block_on(run(seed, spec))
            })
            .expect("spawn a simulation thread")
            .join()
            .expect("the simulation does not panic")
    }

    fn sweep_spec(spec: Spec, default_seeds: u64) -> Vec<Outcome> {
        let name = spec.name;
        let outcomes = sweep(name, default_seeds, move |seed| run(seed, spec.clone()));
        assert!(
            outcomes.iter().map(|o| o.acknowledged).sum::<u64>() > 0,
            "{name}: no write was ever acknowledged"
        );
        outcomes
    }

    /// With no fault, every seed must compare its searches with the oracle.
    fn steady(name: &'static str, nodes: usize, rf: u32, groups: u32) {
        let outcomes = sweep_spec(
            spec(
                name,
                nodes,
                rf,
                groups,
                WriteQuorum::Majority,
                FaultKinds::NONE,
            ),
            100,
        );
        assert!(
            outcomes.iter().all(|o| o.oracle_checked),
            "{name}: replicas disagreed without any fault"
        );
    }

    #[test]
    fn steady_rf1_rg1() {
        steady("steady_rf1_rg1", 3, 1, 1);
    }

    #[test]
    fn steady_rf2_rg1() {
        steady("steady_rf2_rg1", 3, 2, 1);
    }

    #[test]
    fn steady_rf3_rg1() {
        steady("steady_rf3_rg1", 4, 3, 1);
    }

    #[test]
    fn steady_rf3_rg2() {
        steady("steady_rf3_rg2", 6, 3, 2);
    }

    #[test]
    fn steady_rf1_rg2() {
        steady("steady_rf1_rg2", 4, 1, 2);
    }

    #[test]
    fn steady_rf2_rg2() {
        steady("steady_rf2_rg2", 4, 2, 2);
    }

    #[test]
    fn node_crash() {
        let faults = FaultKinds {
            node_crash: true,
            ..FaultKinds::NONE
        };
        sweep_spec(spec("node_crash", 3, 2, 1, WriteQuorum::All, faults), 150);
    }

    #[test]
    fn partition() {
        let faults = FaultKinds {
            partition: true,
            ..FaultKinds::NONE
        };
        sweep_spec(
            spec("partition", 3, 2, 1, WriteQuorum::Majority, faults),
            150,
        );
    }

    #[test]
    fn slow_node() {
        let faults = FaultKinds {
            slow_node: true,
            ..FaultKinds::NONE
        };
        let outcomes = sweep_spec(
            spec("slow_node", 3, 2, 1, WriteQuorum::Majority, faults),
            150,
        );
        assert!(
            outcomes.iter().all(|o| o.oracle_checked),
            "a slow node loses no write, so replicas agree"
        );
    }

    #[test]
    fn proxy_crash() {
        let faults = FaultKinds {
            proxy_crash: true,
            ..FaultKinds::NONE
        };
        sweep_spec(
            spec("proxy_crash", 3, 2, 1, WriteQuorum::Majority, faults),
            150,
        );
    }

    /// Every fault kind but slow nodes, drawn per seed, with RF=2 in one group under `majority` (= both
    /// replicas). Until repair exists (hinted handoff, anti-entropy), an acknowledged write must reach every
    /// replica to converge, which this quorum guarantees; `replica_repair` is the scenario that needs repair.
    /// Slow nodes are covered by `slow_node` (below the node timeout); above it they expose `reordering`.
    #[test]
    fn swarm() {
        let faults = FaultKinds {
            node_crash: true,
            proxy_crash: true,
            partition: true,
            slow_node: false,
            packet_loss: true,
            duplication: true,
        };
        sweep_spec(spec("swarm", 3, 2, 1, WriteQuorum::Majority, faults), 150);
    }

    /// With two groups a write is acknowledged once one group reaches quorum; a replica of the other group
    /// that missed it (lost message, crash, partition) catches up through hinted handoff: the node writes it
    /// missed are replayed in order once it answers again. Seed 1 left node3 holding an acknowledged-deleted
    /// document before hints existed.
    #[test]
    fn replica_repair() {
        let faults = FaultKinds {
            node_crash: true,
            partition: true,
            packet_loss: true,
            ..FaultKinds::NONE
        };
        sweep_spec(
            spec("replica_repair", 4, 2, 2, WriteQuorum::Majority, faults),
            50,
        );
    }

    fn repair_spec(
        name: &'static str,
        nodes: usize,
        rf: u32,
        groups: u32,
        pattern: FaultPattern,
    ) -> Spec {
        let mut s = spec(
            name,
            nodes,
            rf,
            groups,
            WriteQuorum::Majority,
            FaultKinds::NONE,
        );
        s.pattern = pattern;
        s
    }

    /// One node down for most of the writes, RF=2 in two groups: its group misses quorum for its shards, the
    /// other group acknowledges, and the node catches up from its hints once it is back.
    #[test]
    fn node_down_rf2() {
        sweep_spec(
            repair_spec("node_down_rf2", 4, 2, 2, FaultPattern::NodeDown),
            40,
        );
    }

    /// One node down for most of the writes, RF=3 in one group under `majority`: writes are acknowledged by
    /// the two other replicas, the third catches up from its hints.
    #[test]
    fn node_down_rf3() {
        sweep_spec(
            repair_spec("node_down_rf3", 4, 3, 1, FaultPattern::NodeDown),
            40,
        );
    }

    /// A node that goes down and up several times while writes keep coming: hints queue, partly replay,
    /// queue again, and the node still ends with every write in order.
    #[test]
    fn flapping_node() {
        sweep_spec(
            repair_spec("flapping_node", 4, 2, 2, FaultPattern::Flapping),
            40,
        );
    }

    /// The proxy loses a whole replica group for a while: the other group acknowledges every write, the cut
    /// group catches up once the links heal.
    #[test]
    fn group_partition() {
        sweep_spec(
            repair_spec("group_partition", 4, 2, 2, FaultPattern::GroupPartition),
            40,
        );
    }

    /// The checkers catch a replica left behind: with a planted bug that drops hints instead of replaying
    /// them, seeds of the repair scenarios must fail a checker (not the liveness phase).
    #[test]
    fn planted_replay_bug_is_caught() {
        let mut caught = Vec::new();
        for (pattern, seeds) in [
            (FaultPattern::NodeDown, 1u64..=6),
            (FaultPattern::GroupPartition, 1u64..=6),
        ] {
            let mut s = repair_spec("planted_replay_bug", 4, 2, 2, pattern);
            s.skip_replay = true;
            s.entropy = None; // anti-entropy would repair what the dropped hints missed
            for seed in seeds {
                let rt =
                    madsim::runtime::Runtime::with_seed_and_config(seed, madsim::Config::default());
                if let Err(f) = rt.block_on(run(seed, s.clone())) {
                    assert_ne!(f.checker, "liveness", "{f}");
                    caught.push((pattern, seed, f.checker));
                }
            }
        }
        assert!(
            caught.len() >= 6,
            "dropping hints must leave replicas behind and a checker must see it: {caught:?}"
        );
    }

    /// A node slower than the proxy's node timeout (2 s) still applies a write the proxy already gave up on,
    /// after a newer write to the same document reached it: the replica regresses to the older version. Write
    /// lanes and hinted handoff cannot order across a timeout; per-write versions can: the anti-entropy pass
    /// after quiescence brings the replica back to the last writer (seed 15 regressed a replica before
    /// versions existed, and its pass repairs 2 documents).
    #[test]
    fn reordering() {
        let faults = FaultKinds {
            slow_node: true,
            ..FaultKinds::NONE
        };
        let mut s = spec("reordering", 3, 2, 1, WriteQuorum::Majority, faults);
        s.slow_max_ms = 4_000;
        sweep_spec(s, 50);
    }

    // ----- elastic fleet: shard migrations under a running workload -----

    use miroir_core::migration::PlantedBug;
    use miroir_sim::world::migrate::{ElasticChange, ElasticSpec};

    /// A fleet change requested early in the safety phase, while writes, updates and deletes keep coming.
    fn elastic(
        name: &'static str,
        nodes: usize,
        rf: u32,
        groups: u32,
        change: ElasticChange,
        faults: FaultKinds,
        planted: PlantedBug,
    ) -> Spec {
        let mut s = spec(name, nodes, rf, groups, WriteQuorum::Majority, faults);
        s.ops = 60;
        s.elastic = Some(ElasticSpec {
            change,
            at_ms: 1_200,
            planted,
            docs_per_second: 40,
            partition: None,
            crash: None,
            cutover_partition: None,
            max_concurrent: 0,
        });
        s
    }

    /// The phases of a migration that moves shards (its coordinator goes through every one).
    const ORACLE_MIGRATION_LABELS: &[&str] = &[
        "migration before",
        "migration DualWrite",
        "migration Copy",
        "migration CatchUp",
        "migration Fence",
        "migration CutOver",
        "migration Cleanup",
        "migration Done",
    ];

    fn elastic_sweep(spec: Spec, seeds: u64) {
        let phases = match spec.elastic.map(|e| e.change) {
            // the last group goes: nothing is copied, its shards are cut over at once
            Some(ElasticChange::RemoveGroup) => {
                &["migration before", "migration Cleanup", "migration Done"][..]
            }
            _ => ORACLE_MIGRATION_LABELS,
        };
        let faultless = spec.faults == FaultKinds::NONE;
        let name = spec.name;
        let outcomes = sweep_spec(spec, seeds);
        if faultless {
            assert!(
                outcomes.iter().all(|o| o.oracle_checked),
                "{name}: replicas disagreed after a migration without faults"
            );
        }
        mid_run_oracle_ran(name, &outcomes, phases);
    }

    /// Searches equal the single-node oracle throughout the change, faults or not: every seed compared them
    /// while the change was live (at least 3 times when it skipped nothing, at least once otherwise, and at
    /// least 4 times per seed on average), and over a sweep (of 10 seeds or more) each of `phases` saw at least one
    /// equal comparison. Moments that cannot be compared are skipped for counted reasons (see
    /// `fleet::Skip`); a mismatch fails the seed itself (`oracle_during`).
    fn mid_run_oracle_ran(name: &str, outcomes: &[Outcome], phases: &[&str]) {
        let counts: Vec<u64> = outcomes.iter().map(|o| o.oracle_during).collect();
        let mut skips: std::collections::BTreeMap<String, u64> = Default::default();
        let mut seen: std::collections::BTreeMap<String, u64> = Default::default();
        for o in outcomes {
            for (k, v) in &o.oracle_skips {
                *skips.entry(k.clone()).or_default() += v;
            }
            for (k, v) in &o.oracle_phases {
                *seen.entry(k.clone()).or_default() += v;
            }
        }
        eprintln!(
            "{name}: mid-run oracle equal per seed: {counts:?}; skipped: {skips:?}; equal by phase: {seen:?}"
        );
        // a seed that skipped nothing compared before the change and in at least two of its phases
        let short: Vec<usize> = outcomes
            .iter()
            .enumerate()
            .filter(|(_, o)| o.oracle_during < if o.oracle_skips.is_empty() { 3 } else { 1 })
            .map(|(i, _)| i)
            .collect();
        assert!(
            short.is_empty(),
            "{name}: seeds (by position) {short:?} made too few mid-run oracle comparisons (3 needed without a skip, 1 with): {counts:?} (skipped: {skips:?})"
        );
        let mean = counts.iter().sum::<u64>() as f64 / counts.len().max(1) as f64;
        assert!(
            mean >= 4.0,
            "{name}: {mean:.1} mid-run oracle comparisons per seed on average, fewer than 4: {counts:?} (skipped: {skips:?})"
        );
        if outcomes.len() >= 10 {
            let missing: Vec<&&str> = phases.iter().filter(|p| !seen.contains_key(**p)).collect();
            assert!(
                missing.is_empty(),
                "{name}: no equal mid-run oracle comparison in {missing:?} over the sweep (equal by phase: {seen:?}, skipped: {skips:?})"
            );
        }
    }

    #[test]
    fn elastic_add_node() {
        elastic_sweep(
            elastic(
                "elastic_add_node",
                3,
                2,
                1,
                ElasticChange::AddNode,
                FaultKinds::NONE,
                PlantedBug::None,
            ),
            40,
        );
    }

    #[test]
    fn elastic_drain_remove() {
        elastic_sweep(
            elastic(
                "elastic_drain_remove",
                4,
                2,
                1,
                ElasticChange::DrainRemove(1),
                FaultKinds::NONE,
                PlantedBug::None,
            ),
            40,
        );
    }

    /// Runs `spec` on seeds `1..=seeds` without panicking; the failures' messages.
    fn failures(spec: Spec, seeds: u64) -> Vec<String> {
        (1..=seeds)
            .filter_map(|seed| {
                run_seed(spec.clone(), seed)
                    .err()
                    .map(|f| format!("seed {seed}: {f}"))
            })
            .collect()
    }

    const LOSSY: FaultKinds = FaultKinds {
        packet_loss: true,
        duplication: true,
        ..FaultKinds::NONE
    };

    /// Lost and duplicated messages while a node is added: dual writes that miss the target are repaired by
    /// the verify passes, migration requests that fail are retried.
    #[test]
    fn elastic_add_node_lossy() {
        elastic_sweep(
            elastic(
                "elastic_add_node_lossy",
                3,
                2,
                1,
                ElasticChange::AddNode,
                LOSSY,
                PlantedBug::None,
            ),
            40,
        );
    }

    #[test]
    fn elastic_add_group() {
        elastic_sweep(
            elastic(
                "elastic_add_group",
                2,
                2,
                1,
                ElasticChange::AddGroup,
                FaultKinds::NONE,
                PlantedBug::None,
            ),
            40,
        );
    }

    #[test]
    fn elastic_remove_group() {
        elastic_sweep(
            elastic(
                "elastic_remove_group",
                4,
                2,
                2,
                ElasticChange::RemoveGroup,
                FaultKinds::NONE,
                PlantedBug::None,
            ),
            40,
        );
    }

    /// RF=2: a node dies for good; its shards are re-replicated from the surviving replica.
    #[test]
    fn elastic_fail_node() {
        elastic_sweep(
            elastic(
                "elastic_fail_node",
                4,
                2,
                1,
                ElasticChange::FailNode(2),
                FaultKinds::NONE,
                PlantedBug::None,
            ),
            40,
        );
    }

    /// The proxy crashes (maybe several times) while a node is added: the next incarnation resumes the
    /// migration from its persisted record.
    #[test]
    fn elastic_proxy_crash() {
        let faults = FaultKinds {
            proxy_crash: true,
            ..FaultKinds::NONE
        };
        let mut s = elastic(
            "elastic_proxy_crash",
            3,
            2,
            1,
            ElasticChange::AddNode,
            faults,
            PlantedBug::None,
        );
        if let Some(e) = s.elastic.as_mut() {
            e.docs_per_second = 8;
        }
        elastic_sweep(s, 40);
    }

    /// Nodes (sources, targets, leaving ones) crash and restart while a node is drained.
    #[test]
    fn elastic_node_crash() {
        let faults = FaultKinds {
            node_crash: true,
            ..FaultKinds::NONE
        };
        elastic_sweep(
            elastic(
                "elastic_node_crash",
                4,
                2,
                1,
                ElasticChange::DrainRemove(0),
                faults,
                PlantedBug::None,
            ),
            40,
        );
    }

    /// Regression seeds of bugs the merged simulator found (also inside the sweeps above, kept by name):
    /// seed 26 of `elastic_node_crash` (a hint replayed after the cleanup put a document back on a node that
    /// no longer owned its shard), seed 3 of `elastic_fail_node` (a hint for a node lost for good never
    /// drained) and seed 13 of `elastic_node_crash` (the mid-run oracle: a search planned with the old read
    /// placement reached a leaving owner just after the cleanup deleted its shard, and answered without the
    /// shard's documents; the cleanup now waits `cleanup_grace_ms` after the cut-over).
    #[test]
    fn migration_and_hints_regressions() {
        let crash = FaultKinds {
            node_crash: true,
            ..FaultKinds::NONE
        };
        let cases = [
            (
                26u64,
                elastic(
                    "elastic_node_crash",
                    4,
                    2,
                    1,
                    ElasticChange::DrainRemove(0),
                    crash,
                    PlantedBug::None,
                ),
            ),
            (
                13,
                elastic(
                    "elastic_node_crash",
                    4,
                    2,
                    1,
                    ElasticChange::DrainRemove(0),
                    crash,
                    PlantedBug::None,
                ),
            ),
            (
                3,
                elastic(
                    "elastic_fail_node",
                    4,
                    2,
                    1,
                    ElasticChange::FailNode(2),
                    FaultKinds::NONE,
                    PlantedBug::None,
                ),
            ),
        ];
        for (seed, spec) in cases {
            let name = spec.name;
            let failure = run_seed(spec, seed).err().map(|f| f.to_string());
            assert_eq!(failure, None, "{name} seed {seed}");
        }
    }

    /// A node is added with a slow copy, and the new node is cut off from the proxy for 1.5 s in the middle
    /// of it: dual writes miss it, copies and verifies fail and are retried.
    fn target_partition(name: &'static str, bug: PlantedBug) -> Spec {
        let mut s = elastic(name, 3, 2, 1, ElasticChange::AddNode, FaultKinds::NONE, bug);
        if bug != PlantedBug::None {
            s.entropy = None; // anti-entropy would repair what the planted coordinator lost
        }
        if let Some(e) = s.elastic.as_mut() {
            e.docs_per_second = 4;
            e.partition = Some((3, 400, 1_500));
        }
        s
    }

    #[test]
    fn elastic_target_partition() {
        elastic_sweep(
            target_partition("elastic_target_partition", PlantedBug::None),
            40,
        );
    }

    /// The checkers catch a coordinator that skips the catch-up and the final verify: dual writes that the
    /// cut-off target missed are lost at the cut-over. The same seeds pass with the real coordinator
    /// (`elastic_target_partition`).
    #[test]
    fn elastic_planted_skip_verify_is_caught() {
        let n = std::env::var("MIROIR_PLANTED_SEEDS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(20);
        let f = failures(
            target_partition("elastic_planted_skip_verify", PlantedBug::SkipVerify),
            n,
        );
        assert!(
            !f.is_empty(),
            "skipping the verify went unnoticed on every seed"
        );
        eprintln!(
            "planted skip-verify caught on {} of {n} seeds; first: {}",
            f.len(),
            f[0]
        );
    }

    /// The trace of a seed is byte-identical across runs: the simulator itself is deterministic.
    #[test]
    fn determinism() {
        let faults = FaultKinds {
            node_crash: true,
            partition: true,
            packet_loss: true,
            ..FaultKinds::NONE
        };
        let s = spec("determinism", 3, 2, 1, WriteQuorum::Majority, faults);
        for seed in [3u64, 17] {
            let run_once = |s: Spec| {
                let rt =
                    madsim::runtime::Runtime::with_seed_and_config(seed, madsim::Config::default());
                rt.block_on(run(seed, s))
                    .map(|o| (o.trace_digest, o.acknowledged))
                    .map_err(|f| f.to_string())
            };
            let a = run_once(s.clone()).expect("seed passes");
            let b = run_once(s.clone()).expect("seed passes");
            assert_eq!(a, b, "seed {seed}: two runs produced different traces");
        }
    }

    /// The client retries every write with its idempotency key (after a timeout, a lost answer, or a 409
    /// `miroir_idempotency_key_in_flight`) while the proxy crashes and messages are lost: every key creates
    /// one Miroir task and every 202 for a key names it (checker `idempotency`).
    #[test]
    fn idempotent_retries() {
        let faults = FaultKinds {
            proxy_crash: true,
            packet_loss: true,
            ..FaultKinds::NONE
        };
        let mut s = spec("idempotent_retries", 3, 2, 1, WriteQuorum::Majority, faults);
        s.idempotency = IdempotencyMode::Retries;
        sweep_spec(s, 150);
    }

    /// The planted bug: the same retries through a proxy that ignores the keys. The `idempotency` checker
    /// must fire on some seed (a retry of a write whose answer was lost creates a second task).
    #[test]
    fn idempotency_checker_fires_on_a_proxy_ignoring_keys() {
        let faults = FaultKinds {
            proxy_crash: true,
            packet_loss: true,
            ..FaultKinds::NONE
        };
        let mut s = spec(
            "idempotency_planted_bug",
            3,
            2,
            1,
            WriteQuorum::Majority,
            faults,
        );
        s.idempotency = IdempotencyMode::RetriesIgnoredByProxy;
        let mut fired = Vec::new();
        for seed in 1..=40u64 {
            let checker = run_seed(s.clone(), seed).err().map(|f| f.checker);
            if checker.as_deref() == Some("idempotency") {
                fired.push(seed);
            }
        }
        assert!(
            !fired.is_empty(),
            "the idempotency checker never fired on a proxy that ignores idempotency keys"
        );
    }

    /// A settings change while a node is down (refused for lack of quorum `all`, applied by the live nodes),
    /// node crashes during the workload: after recovery and quiescence the proxy's settings check (core's
    /// `settings_sync`) repairs the nodes, and every node holds the same settings (checker `settings`).
    #[test]
    fn settings_change_while_node_down() {
        let faults = FaultKinds {
            node_crash: true,
            ..FaultKinds::NONE
        };
        let mut s = spec(
            "settings_change_while_node_down",
            3,
            2,
            1,
            WriteQuorum::Majority,
            faults,
        );
        s.settings = SettingsMode::ChangeWhileNodeDown;
        sweep_spec(s, 100);
    }

    /// The planted bug: the same change, but the proxy never checks nor repairs the settings (and replays no
    /// hint); the `settings` checker must fire.
    #[test]
    fn settings_checker_fires_without_repair() {
        let mut s = spec(
            "settings_planted_bug",
            3,
            2,
            1,
            WriteQuorum::Majority,
            FaultKinds::NONE,
        );
        s.settings = SettingsMode::ChangeWithoutRepair;
        // Hinted handoff would replay the refused change to the node that was down: off too.
        s.skip_replay = true;
        for seed in [1u64, 2, 3] {
            let checker = run_seed(s.clone(), seed).err().map(|f| f.checker);
            assert_eq!(checker.as_deref(), Some("settings"), "seed {seed}");
        }
    }
    /// One replica turns 20× slower than the others (after a warm-up where it was as fast), RF=2: with
    /// adaptive replica selection and hedged reads the search latency p99 (virtual time) stays within 1.5×
    /// the healthy fleet's. Prints the figures, with round-robin with and without hedging on the same slow
    /// fleet for comparison.
    #[test]
    fn slow_replica_hedging() {
        use miroir_core::config::HedgingConfig;
        use miroir_core::select::Strategy;
        use miroir_sim::world::speed::{measure, LatencyReport, LatencySpec};
        let seed = std::env::var("MADSIM_TEST_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(7u64);
        let run = |spec: LatencySpec| -> LatencyReport {
            let rt =
                madsim::runtime::Runtime::with_seed_and_config(seed, madsim::Config::default());
            rt.block_on(measure(seed, spec))
        };
        let base = LatencySpec {
            nodes: 4,
            rf: 2,
            shards: 8,
            docs: 200,
            queries: 400,
            warmup: 40,
            slow: None,
            strategy: Strategy::Adaptive,
            exploration: 0.05,
            hedging: Some(HedgingConfig::default()),
        };
        let healthy = run(base.clone());
        let slow_ms = (19.0 * healthy.node_mean_ms).round() as u64;
        let slowed = run(LatencySpec {
            slow: Some((0, slow_ms)),
            ..base.clone()
        });
        let naive = run(LatencySpec {
            slow: Some((0, slow_ms)),
            strategy: Strategy::RoundRobin,
            hedging: None,
            ..base.clone()
        });
        let hedging_only = run(LatencySpec {
            slow: Some((0, slow_ms)),
            strategy: Strategy::RoundRobin,
            ..base.clone()
        });
        println!(
            "slow_replica_hedging seed {seed}: node mean {:.1} ms, slow node +{slow_ms} ms (20x)",
            healthy.node_mean_ms
        );
        for (name, r) in [
            ("healthy, adaptive+hedging", &healthy),
            ("one slow, adaptive+hedging", &slowed),
            ("one slow, round_robin, no hedging", &naive),
            ("one slow, round_robin+hedging", &hedging_only),
        ] {
            println!(
                "  {name:<36} p50 {:>4} ms  p99 {:>4} ms  max {:>4} ms  hedges {} fired / {} won",
                r.p50, r.p99, r.max, r.hedges_fired, r.hedges_won
            );
        }
        for r in [&healthy, &slowed, &naive, &hedging_only] {
            assert_eq!(
                r.complete, base.queries,
                "every search saw the whole corpus"
            );
        }
        assert!(
            slowed.p99 as f64 <= 1.5 * healthy.p99 as f64,
            "p99 {} ms with one slow replica vs {} ms healthy",
            slowed.p99,
            healthy.p99
        );
        assert!(
            naive.p99 > slowed.p99,
            "the slow replica does hurt without them"
        );
        assert!(
            hedging_only.hedges_won > 0 && hedging_only.p99 < naive.p99,
            "hedges win"
        );
    }

    // ----- online resharding: changing S under a running workload -----

    use miroir_core::reshard::PlantedBug as ReshardBug;
    use miroir_sim::world::reshard::{ProxyCrash, ReshardSpec, CRASH_PHASES};

    /// S goes from `from` to `to` early in the safety phase, while writes, updates and deletes keep coming
    /// (RF=2, quorum majority, one group).
    fn reshard(name: &'static str, nodes: usize, from: u32, to: u32, faults: FaultKinds) -> Spec {
        let mut s = spec(name, nodes, 2, 1, WriteQuorum::Majority, faults);
        s.shards = from;
        s.ops = 60;
        s.reshard = Some(ReshardSpec::to(to));
        s
    }

    fn reshard_sweep(spec: Spec, seeds: u64) {
        // the flip (`Swap`) and `Done` are persisted within one round of the driver: rarely seen
        let phases = if spec.reshard.is_some_and(|r| r.abort_after_docs.is_some()) {
            &[
                "reshard before",
                "reshard CreateShadow",
                "reshard Backfill",
                "reshard Aborting",
            ][..]
        } else {
            &[
                "reshard before",
                "reshard CreateShadow",
                "reshard Backfill",
                "reshard Verify",
                "reshard Fence",
                "reshard Retain",
                "reshard Cleanup",
            ][..]
        };
        let faultless = spec.faults == FaultKinds::NONE;
        let name = spec.name;
        let outcomes = sweep_spec(spec, seeds);
        if faultless {
            assert!(
                outcomes.iter().all(|o| o.oracle_checked),
                "{name}: replicas disagreed after a resharding without faults"
            );
        }
        mid_run_oracle_ran(name, &outcomes, phases);
    }

    #[test]
    fn reshard_4_to_16() {
        reshard_sweep(reshard("reshard_4_to_16", 3, 4, 16, FaultKinds::NONE), 30);
    }

    #[test]
    fn reshard_16_to_8() {
        reshard_sweep(reshard("reshard_16_to_8", 4, 16, 8, FaultKinds::NONE), 30);
    }

    /// The proxy crashes (and restarts 300 ms later) in the phase the seed picks, every phase from the
    /// shadow's creation to the cleanup across the seeds: the next incarnation resumes from the record.
    #[test]
    fn reshard_proxy_crash() {
        let mut s = reshard("reshard_proxy_crash", 3, 4, 8, FaultKinds::NONE);
        if let Some(r) = s.reshard.as_mut() {
            r.proxy_crash = ProxyCrash::BySeed;
            r.docs_per_second = 10;
        }
        reshard_sweep(s, 4 * CRASH_PHASES.len() as u64);
    }

    /// A node (the seed picks which) crashes for 1.5 s when the backfill starts: copies, verifies and dual
    /// writes fail and are retried or repaired, live writes it missed are hinted and replayed first.
    #[test]
    fn reshard_node_crash() {
        let mut s = reshard("reshard_node_crash", 3, 4, 12, FaultKinds::NONE);
        if let Some(r) = s.reshard.as_mut() {
            r.node_crash = Some(1_500);
            r.docs_per_second = 10;
        }
        reshard_sweep(s, 30);
    }

    /// The operator aborts during the backfill: the shadow is deleted on every node and clients never see a
    /// difference (the old index and S stay in force).
    #[test]
    fn reshard_abort() {
        let mut s = reshard("reshard_abort", 3, 4, 16, FaultKinds::NONE);
        if let Some(r) = s.reshard.as_mut() {
            r.abort_after_docs = Some(4);
            r.docs_per_second = 8;
        }
        reshard_sweep(s, 30);
    }

    /// Lost and duplicated messages during a resharding: copies, verifies and dual writes that are lost are
    /// retried or repaired by the verify passes.
    #[test]
    fn reshard_lossy() {
        let mut s = reshard("reshard_lossy", 3, 4, 8, LOSSY);
        if let Some(r) = s.reshard.as_mut() {
            r.docs_per_second = 10;
        }
        reshard_sweep(s, 30);
    }

    /// Node crashes, partitions and proxy crashes drawn by the swarm while S goes from 8 to 4.
    #[test]
    fn reshard_swarm() {
        let faults = FaultKinds {
            node_crash: true,
            partition: true,
            proxy_crash: true,
            ..FaultKinds::NONE
        };
        let mut s = reshard("reshard_swarm", 3, 8, 4, faults);
        if let Some(r) = s.reshard.as_mut() {
            r.docs_per_second = 10;
        }
        reshard_sweep(s, 30);
    }

    /// Dual writes to the shadow are lost for 1.5 s once the backfill copied 3 documents (the shadow of the
    /// shards already copied goes stale), then a node is cut off from the proxy for 1.5 s once 10 were
    /// copied (copies, verifies and dual writes fail and are retried).
    fn reshard_partition(name: &'static str, bug: ReshardBug) -> Spec {
        let mut s = reshard(name, 3, 4, 8, FaultKinds::NONE);
        if let Some(r) = s.reshard.as_mut() {
            r.planted = bug;
            r.shadow_loss = Some((3, 1_500));
            r.partition = Some((1, 10, 1_500));
            r.docs_per_second = 6;
        }
        s
    }

    /// The checkers catch a coordinator that swaps right after the backfill (no verify, no fence): the dual
    /// writes the shadow missed are lost at the swap. The same seeds pass with the real coordinator.
    #[test]
    fn reshard_planted_swap_before_verify_is_caught() {
        let n = std::env::var("MIROIR_PLANTED_SEEDS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(12);
        reshard_sweep(
            reshard_partition("reshard_target_partition", ReshardBug::None),
            n,
        );
        let f = failures(
            reshard_partition(
                "reshard_planted_swap_before_verify",
                ReshardBug::SwapBeforeVerify,
            ),
            n,
        );
        assert!(
            !f.is_empty(),
            "swapping before the verify went unnoticed on every seed"
        );
        eprintln!(
            "planted swap-before-verify caught on {} of {n} seeds; first: {}",
            f.len(),
            f[0]
        );
    }

    // ----- self-healing replicas: versions, tombstones, anti-entropy -----

    /// Two proxy instances share one durable store (tasks, hints, tombstones); two clients write, replace and
    /// delete the same ids through them concurrently, with slow nodes (late writes) and crashes. The history
    /// is judged in version order (last writer wins), and after the anti-entropy pass every replica holds
    /// the same documents.
    #[test]
    fn two_proxies_same_ids() {
        let faults = FaultKinds {
            node_crash: true,
            slow_node: true,
            packet_loss: true,
            ..FaultKinds::NONE
        };
        let mut s = spec(
            "two_proxies_same_ids",
            3,
            2,
            1,
            WriteQuorum::Majority,
            faults,
        );
        s.proxies = 2;
        s.slow_max_ms = 4_000;
        sweep_spec(s, 60);
    }

    /// The checkers catch an anti-entropy pass that ignores tombstones: with hints dropped, a node that was
    /// down keeps documents the others deleted, and the planted pass copies them back everywhere.
    #[test]
    fn planted_ignore_tombstones_is_caught() {
        let mut caught = Vec::new();
        for seed in 1u64..=12 {
            let mut s = repair_spec("planted_ignore_tombstones", 4, 2, 2, FaultPattern::NodeDown);
            s.skip_replay = true;
            s.entropy = Some(EntropyBug::IgnoreTombstones);
            if let Err(f) = run_seed(s, seed) {
                assert_ne!(f.checker, "liveness", "{f}");
                caught.push((seed, f.checker));
            }
        }
        assert!(
            caught
                .iter()
                .any(|(_, c)| c == "resurrection" || c == "lost_write"),
            "a pass ignoring tombstones must resurrect a deleted document: {caught:?}"
        );
    }

    /// Runs `spec_of(PlantedBug::None)` and `spec_of(bug)` on the same seeds: the real coordinator must pass
    /// every one, the planted one must fail on at least one, and only ever through one of `expected` (the
    /// checkers that guard the invariant the bug breaks). Seeds: `MIROIR_PLANTED_SEEDS` or `default_seeds`.
    fn planted_migration_bug_is_caught(
        spec_of: fn(PlantedBug) -> Spec,
        bug: PlantedBug,
        expected: &[&str],
        default_seeds: u64,
    ) {
        let n = std::env::var("MIROIR_PLANTED_SEEDS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default_seeds);
        let control = failures(spec_of(PlantedBug::None), n);
        assert!(
            control.is_empty(),
            "the real coordinator failed the seeds meant for {bug:?}: {control:?}"
        );
        let mut caught: Vec<(u64, String)> = Vec::new();
        for seed in 1..=n {
            if let Err(f) = run_seed(spec_of(bug), seed) {
                assert!(
                    expected.contains(&f.checker.as_str()),
                    "{bug:?} on seed {seed} was reported by `{}`, not by one of {expected:?}: {f}",
                    f.checker
                );
                caught.push((seed, f.checker));
            }
        }
        assert!(
            !caught.is_empty(),
            "{bug:?} went unnoticed on all {n} seeds"
        );
        eprintln!(
            "planted {bug:?} caught on {} of {n} seeds: {caught:?}",
            caught.len()
        );
    }

    /// A drain of node 1 (RF=2, 4 nodes) without anti-entropy (it would repair behind the bug's back).
    fn planted_drain(bug: PlantedBug) -> Spec {
        let mut s = elastic(
            "elastic_planted_drain",
            4,
            2,
            1,
            ElasticChange::DrainRemove(1),
            FaultKinds::NONE,
            bug,
        );
        s.entropy = None;
        s
    }

    /// A node added (RF=2, 3 nodes) without anti-entropy.
    fn planted_add(bug: PlantedBug) -> Spec {
        let mut s = elastic(
            "elastic_planted_add",
            3,
            2,
            1,
            ElasticChange::AddNode,
            FaultKinds::NONE,
            bug,
        );
        s.entropy = None;
        s
    }

    /// Invariant (c), no document on a non-owner after cleanup: a coordinator that never cleans up leaves the
    /// drained node holding its old shards (and, since it is no longer written, stale copies of documents
    /// deleted after the cut-over).
    #[test]
    fn elastic_planted_skip_cleanup_is_caught() {
        planted_migration_bug_is_caught(
            planted_drain,
            PlantedBug::SkipCleanup,
            &["duplicates", "placement", "resurrection"],
            4,
        );
    }

    /// Invariant (a), every acknowledged write on every owner: a coordinator that deletes the shard on the
    /// leaving owners when the copy starts (before the cut-over is persisted) copies an empty source to the
    /// targets and serves reads from owners that lost their documents.
    #[test]
    fn elastic_planted_cleanup_before_cutover_is_caught() {
        planted_migration_bug_is_caught(
            planted_drain,
            PlantedBug::CleanupBeforeCutover,
            &["lost_write", "placement", "convergence", "oracle_during"],
            4,
        );
    }

    /// Invariant (d), search equals the oracle during the migration: a coordinator that reads from the new
    /// owners as soon as dual writes start (before they hold the copy) ends in a correct state, so only the
    /// mid-run oracle can see it.
    #[test]
    fn elastic_planted_read_new_owners_early_is_caught() {
        planted_migration_bug_is_caught(
            planted_add,
            PlantedBug::ReadNewOwnersEarly,
            &["oracle_during"],
            4,
        );
    }

    /// Invariant (b), every acknowledged delete stays deleted: without the fence, client writes keep flowing
    /// through the final verify and the cut-over, so a write in flight at the cut-over (acknowledged by the
    /// old owners, its copy to the cut-off target lost) or a verify repair racing a client delete could leave
    /// a target stale or resurrect the delete.
    ///
    /// IGNORED because it does not fire: on 60 seeds of a fault-free add (slow copy, 120 operations) and 40
    /// seeds of this partitioned add, no seed failed. Dual writes reach the targets, and every dirty pass
    /// is followed by another one until a clean pass, so the window left (a write admitted during the last,
    /// clean pass whose target copy fails) needs an interleaving the swarm does not draw. The core unit test
    /// `fence_drains_in_flight_writes_planted_skip_fence_loses_one` shows that exact interleaving at the
    /// state-machine level. Sweep it with `MIROIR_PLANTED_SEEDS=N cargo sim skip_fence --ignored`.
    #[ignore = "the race SkipFence opens is not drawn by the simulator's workloads; see the doc comment"]
    #[test]
    fn elastic_planted_skip_fence_is_caught() {
        fn spec_of(bug: PlantedBug) -> Spec {
            let mut s = target_partition("elastic_planted_skip_fence", bug);
            s.entropy = None;
            s.ops = 120;
            s
        }
        planted_migration_bug_is_caught(
            spec_of,
            PlantedBug::SkipFence,
            &[
                "resurrection",
                "lost_write",
                "convergence",
                "placement",
                "oracle_during",
            ],
            12,
        );
    }

    // ----- elastic fleet: faults tied to each phase of the migration -----

    use miroir_core::migration::Phase;
    use miroir_sim::world::migrate::{
        CutoverPartition, PhaseCrash, PhaseSel, Victim, MIGRATION_PHASES, WRITES_AFTER_FAULT,
    };

    /// A fleet change (RF=2, quorum majority, one group) with a slow copy, where `who` crashes when a shard
    /// first reaches the phase the seed picks (`seed % 6` among [`MIGRATION_PHASES`]) and comes back a few
    /// hundred ms later; writes, updates and deletes keep coming throughout.
    fn phase_crash(name: &'static str, nodes: usize, change: ElasticChange, who: Victim) -> Spec {
        let mut s = elastic(
            name,
            nodes,
            2,
            1,
            change,
            FaultKinds::NONE,
            PlantedBug::None,
        );
        s.ops = 100;
        if let Some(e) = s.elastic.as_mut() {
            e.docs_per_second = 1;
            e.crash = Some(PhaseCrash {
                who,
                phase: PhaseSel::BySeed,
                down_ms: if who == Victim::Proxy { 300 } else { 400 },
            });
        }
        s
    }

    /// Sweeps `spec` over `seeds` seeds (every check of every seed must pass), then demands that every seed
    /// fired its phase-tied fault, that the searches equal the oracle at the end of every seed, and (on a
    /// full sweep) that every label of `want` fired on some seed, and that the coordinator admitted client
    /// writes after the fault on every seed (`busy_everywhere`) or at least on one.
    fn phase_fault_sweep(
        spec: Spec,
        seeds: u64,
        want: &[String],
        busy_everywhere: bool,
    ) -> Vec<Outcome> {
        let name = spec.name;
        let ran = miroir_sim::runner::seeds(seeds);
        let outcomes = sweep_spec(spec, seeds);
        for (seed, o) in ran.iter().zip(&outcomes) {
            assert!(
                o.elastic_faults
                    .iter()
                    .any(|l| l != "retried" && l != WRITES_AFTER_FAULT),
                "{name}: seed {seed} ended without its phase-tied fault firing: {:?}",
                o.elastic_faults
            );
            assert!(
                o.oracle_checked,
                "{name}: seed {seed}: replicas disagreed at the end, the search was not compared with the oracle"
            );
        }
        // searches equal the oracle throughout, crash or partition included
        mid_run_oracle_ran(name, &outcomes, ORACLE_MIGRATION_LABELS);
        let fired: std::collections::BTreeSet<&String> =
            outcomes.iter().flat_map(|o| &o.elastic_faults).collect();
        let busy: Vec<u64> = ran
            .iter()
            .zip(&outcomes)
            .filter(|(_, o)| o.elastic_faults.iter().any(|l| l == WRITES_AFTER_FAULT))
            .map(|(seed, _)| *seed)
            .collect();
        eprintln!(
            "{name}: faults fired over {} seeds: {fired:?}; the coordinator admitted client writes after the fault on seeds {busy:?}",
            outcomes.len()
        );
        if outcomes.len() as u64 >= seeds {
            let missing: Vec<&String> = want.iter().filter(|l| !fired.contains(l)).collect();
            assert!(
                missing.is_empty(),
                "{name}: these faults never fired over {} seeds: {missing:?}",
                outcomes.len()
            );
            let enough = if busy_everywhere {
                busy.len() == outcomes.len()
            } else {
                !busy.is_empty()
            };
            assert!(
                enough,
                "{name}: the migration admitted client writes after its fault only on seeds {busy:?}"
            );
        }
        outcomes
    }

    fn crash_labels(who: Victim) -> Vec<String> {
        let mut labels: Vec<String> = MIGRATION_PHASES
            .iter()
            .map(|p| format!("{} crash in {p:?}", who.label()))
            .collect();
        if who == Victim::Proxy {
            labels.push(format!(
                "proxy crash in {:?} before its record",
                Phase::CutOver
            ));
        }
        if who == Victim::Source {
            labels.extend(
                MIGRATION_PHASES
                    .iter()
                    .map(|p| format!("leaving source crash in {p:?}")),
            );
        }
        labels
    }

    const PHASE_SEEDS: u64 = 4 * MIGRATION_PHASES.len() as u64;

    /// Issue 5: the proxy running the coordinator crashes (and restarts 300 ms later) in every migration
    /// phase across the seeds (in `CutOver` both before and after the cut-over record is written): the next
    /// incarnation resumes from the record and every invariant holds.
    #[test]
    fn elastic_proxy_crash_every_phase() {
        let who = Victim::Proxy;
        let mut s = phase_crash(
            "elastic_proxy_crash_every_phase",
            3,
            ElasticChange::AddNode,
            who,
        );
        if let Some(e) = s.elastic.as_mut() {
            e.at_ms = 4_000;
            e.max_concurrent = 1;
        }
        phase_fault_sweep(s, PHASE_SEEDS, &crash_labels(who), who != Victim::Proxy);
    }

    /// Issue 5: a source of a shard crashes for 400 ms in every migration phase across the seeds, both the
    /// old owner its copy and verify passes read from first and (on the other half of the seeds) the drained
    /// node giving the shard up: requests to it fail and the shard pauses and retries (rotating its source);
    /// its durable state survives.
    #[test]
    fn elastic_source_crash_every_phase() {
        let who = Victim::Source;
        phase_fault_sweep(
            phase_crash(
                "elastic_source_crash_every_phase",
                4,
                ElasticChange::DrainRemove(1),
                who,
            ),
            PHASE_SEEDS,
            &crash_labels(who),
            who != Victim::Proxy,
        );
    }

    /// Issue 5: the target of a shard (the added node) crashes for 400 ms in every migration phase across
    /// the seeds: preparing, copying, verifying and the fence's barriers fail and are retried; after the
    /// cut-over, its acknowledged writes must survive the crash.
    #[test]
    fn elastic_target_crash_every_phase() {
        let who = Victim::Target;
        phase_fault_sweep(
            phase_crash(
                "elastic_target_crash_every_phase",
                3,
                ElasticChange::AddNode,
                who,
            ),
            PHASE_SEEDS,
            &crash_labels(who),
            who != Victim::Proxy,
        );
    }

    /// Issue 5: a partition during the cut-over. When a shard's fence goes up (before its barriers and final
    /// verify) or right after its cut-over is persisted, the proxy loses the shard's target or its source
    /// for 1.5 s (the seed picks which and when). The coordinator must pause and retry, never cutting over
    /// on incomplete data: every invariant holds, and a target cut off under the fence always makes the
    /// coordinator retry.
    #[test]
    fn elastic_partition_during_cutover() {
        let mut s = elastic(
            "elastic_partition_during_cutover",
            3,
            2,
            1,
            ElasticChange::AddNode,
            FaultKinds::NONE,
            PlantedBug::None,
        );
        if let Some(e) = s.elastic.as_mut() {
            e.docs_per_second = 10;
            e.cutover_partition = Some(CutoverPartition { length_ms: 1_500 });
        }
        let want: Vec<String> = ["target", "source"]
            .iter()
            .flat_map(|n| {
                [Phase::Fence, Phase::CutOver].map(|p| format!("partition of the {n} in {p:?}"))
            })
            .collect();
        let outcomes = phase_fault_sweep(s, 24, &want, true);
        let fenced = "partition of the target in Fence".to_string();
        for (i, o) in outcomes.iter().enumerate() {
            if o.elastic_faults.contains(&fenced) {
                assert!(
                    o.elastic_faults.iter().any(|l| l == "retried"),
                    "elastic_partition_during_cutover: run {i} cut the target off under the fence, yet the coordinator never retried: {:?}",
                    o.elastic_faults
                );
            }
        }
    }
}
