//! `meili-model --port P [--bind IP] [--master-key K] [--latency-ms N] [--fail-rate R] [--fail-mode status|drop]`
//!
//! Serves one Meilisearch node MODEL (`miroir_sim::model`) over HTTP, for trying Miroir without a
//! Meilisearch binary. It is a model, not Meilisearch: keep it for tests and demos.
//!
//! Faults can be changed at runtime: `POST /_model/faults` with any of
//! `{"latencyMs": 50, "failRate": 0.1, "failMode": "status"|"drop", "down": true}`; `GET /_model/faults`
//! shows them. See `miroir_sim::serve`.

#[cfg(not(madsim))]
fn main() -> std::process::ExitCode {
    use miroir_sim::serve::{spawn, FailMode, ModelOptions};
    use std::net::{IpAddr, SocketAddr};

    let usage = "usage: meili-model --port P [--bind IP] [--master-key K] [--latency-ms N] [--fail-rate R] [--fail-mode status|drop]";
    let mut opts = ModelOptions::default();
    let mut port: Option<u16> = None;
    let mut bind: IpAddr = IpAddr::from([127, 0, 0, 1]);
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        if flag == "--help" || flag == "-h" {
            println!("{usage}");
            return std::process::ExitCode::SUCCESS;
        }
        let Some(value) = args.next() else {
            eprintln!("missing value for {flag}\n{usage}");
            return std::process::ExitCode::from(2);
        };
        let ok = match flag.as_str() {
            "--port" => value.parse().map(|p| port = Some(p)).is_ok(),
            "--bind" => value.parse().map(|b| bind = b).is_ok(),
            "--master-key" => {
                opts.master_key = Some(value.clone());
                true
            }
            "--latency-ms" => value.parse().map(|l| opts.faults.latency_ms = l).is_ok(),
            "--fail-rate" => value
                .parse::<f64>()
                .ok()
                .filter(|r| (0.0..=1.0).contains(r))
                .map(|r| opts.faults.fail_rate = r)
                .is_some(),
            "--fail-mode" => match value.as_str() {
                "status" => {
                    opts.faults.fail_mode = FailMode::Status;
                    true
                }
                "drop" => {
                    opts.faults.fail_mode = FailMode::Drop;
                    true
                }
                _ => false,
            },
            _ => {
                eprintln!("unknown flag {flag}\n{usage}");
                return std::process::ExitCode::from(2);
            }
        };
        if !ok {
            eprintln!("invalid value {value:?} for {flag}\n{usage}");
            return std::process::ExitCode::from(2);
        }
    }
    let Some(port) = port else {
        eprintln!("{usage}");
        return std::process::ExitCode::from(2);
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let handle = match spawn(SocketAddr::new(bind, port), opts).await {
            Ok(h) => h,
            Err(e) => {
                eprintln!("cannot bind {bind}:{port}: {e}");
                return std::process::ExitCode::FAILURE;
            }
        };
        eprintln!(
            "meili-model: a MODEL of a Meilisearch node (not Meilisearch) listening on {}",
            handle.url()
        );
        let _ = tokio::signal::ctrl_c().await;
        handle.shutdown().await;
        std::process::ExitCode::SUCCESS
    })
}

#[cfg(madsim)]
fn main() {}
