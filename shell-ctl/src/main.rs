//! miroir-ctl: the operator CLI. Its commands arrive with the proxy and elastic-fleet issues.

fn main() {
    eprintln!(
        "miroir-ctl {}: no commands exist yet; the admin API arrives with the proxy issue.",
        env!("CARGO_PKG_VERSION")
    );
    std::process::exit(2);
}
