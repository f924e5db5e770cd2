//! miroir-proxy: the tokio + hyper shell around miroir-core. The HTTP server arrives with the proxy issue.

fn main() {
    eprintln!(
        "miroir-proxy {}: the HTTP proxy is not built yet; this binary only reports its version.",
        env!("CARGO_PKG_VERSION")
    );
    std::process::exit(2);
}
