//! `miroir-bench --url URL [--compare URL2] [--setup] [--workload search|ingest|mixed] ...`
//!
//! Load harness for Meilisearch-compatible URLs; see `miroir-bench --help` and docs/benchmarks.md.
//! Exit codes: 0 after a run with at least one successful request, 1 when setup failed or no request
//! succeeded, 2 for a command-line error.

use miroir_benches::harness::{parse_args, run, Command, USAGE};
use std::process::ExitCode;

fn main() -> ExitCode {
    let options = match parse_args(std::env::args().skip(1)) {
        Ok(Command::Help) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Ok(Command::Run(o)) => o,
        Err(e) => {
            eprintln!("miroir-bench: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("miroir-bench: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run(&options)) {
        Ok(report) => {
            if options.json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&report.to_json()).unwrap_or_default()
                );
            } else {
                print!("{}", report.to_table());
            }
            if report.targets.iter().any(|t| t.summary.ok == 0) {
                eprintln!("miroir-bench: a target answered no request successfully");
                return ExitCode::from(1);
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("miroir-bench: {e}");
            ExitCode::from(1)
        }
    }
}
