//! A bounded load test on loopback: 1000 concurrent client connections against a proxy over 3 model
//! nodes, two waves of requests on every connection. Checks that the only errors are the documented
//! back-pressure (503 `miroir_overloaded` with `Retry-After`), and that the memory of the process hosting
//! the proxy stays flat from the first wave to the second.

mod common;

use bytes::Bytes;
use common::*;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use miroir_proxy::dev::DevOptions;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

const CONNECTIONS: usize = 1000;

/// Raises the soft open-files limit to the hard one (each connection takes two descriptors here).
#[allow(clippy::unnecessary_cast)] // `rlim_t` is not `u64` on every target.
fn raise_nofile() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed by pointer.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
            libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        }
    }
    lim.rlim_cur as u64
}

/// VmRSS of this process (which hosts the proxy), in bytes.
fn rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

#[derive(Default, Debug)]
struct Tally {
    ok: u64,
    overloaded: u64,
    other: Vec<String>,
}

impl Tally {
    fn add(&mut self, o: Tally) {
        self.ok += o.ok;
        self.overloaded += o.overloaded;
        self.other.extend(o.other);
    }
}

type Sender = http1::SendRequest<Full<Bytes>>;

async fn open(addr: SocketAddr) -> Result<Sender, String> {
    let stream = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let (sender, conn) = http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

async fn one(sender: &mut Sender, i: usize, tally: &mut Tally) {
    let (method, path, body) = match i % 3 {
        0 => (
            "POST",
            "/indexes/movies/search",
            json!({"q": format!("kw{}", i % 50)}),
        ),
        1 => ("GET", "/indexes/movies/documents/7", Value::Null),
        _ => ("GET", "/health", Value::Null),
    };
    let body = if body.is_null() {
        Bytes::new()
    } else {
        Bytes::from(serde_json::to_vec(&body).unwrap())
    };
    let req = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header("host", "proxy")
        .header("content-type", "application/json")
        .body(Full::new(body))
        .unwrap();
    if sender.ready().await.is_err() {
        tally.other.push("connection closed".into());
        return;
    }
    match sender.send_request(req).await {
        Err(e) => tally.other.push(format!("{method} {path}: {e}")),
        Ok(resp) => {
            let status = resp.status().as_u16();
            let retry_after = resp.headers().get("retry-after").cloned();
            let bytes = resp
                .into_body()
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            let v: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            if status == 200 {
                tally.ok += 1;
            } else if status == 503 && v["code"] == "miroir_overloaded" && retry_after.is_some() {
                tally.overloaded += 1;
            } else {
                tally.other.push(format!("{method} {path}: {status} {v}"));
            }
        }
    }
}

/// One wave: every connection sends `per_conn` requests, all connections at once.
async fn wave(senders: Vec<Sender>, per_conn: usize, offset: usize) -> (Vec<Sender>, Tally) {
    let mut set = tokio::task::JoinSet::new();
    for (c, mut s) in senders.into_iter().enumerate() {
        set.spawn(async move {
            let mut t = Tally::default();
            for k in 0..per_conn {
                one(&mut s, c + k + offset, &mut t).await;
            }
            (s, t)
        });
    }
    let mut senders = Vec::new();
    let mut tally = Tally::default();
    while let Some(done) = set.join_next().await {
        let (s, t) = done.expect("a client task");
        senders.push(s);
        tally.add(t);
    }
    (senders, tally)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_connections_stay_flat() {
    let nofile = raise_nofile();
    assert!(
        nofile >= 4 * CONNECTIONS as u64,
        "RLIMIT_NOFILE is {nofile}: too low for {CONNECTIONS} loopback connections"
    );
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let mut o = DevOptions::new(3, dir.path().join("t.db").to_string_lossy().into_owned());
    o.replication_factor = 2;
    o.node_timeout_ms = 10_000;
    let (f, api) = fleet_tweaked(o, |c| {
        // Fewer slots than connections, so the back-pressure path is exercised too.
        c.server.max_concurrent_requests = 256;
        c.server.request_timeout_ms = 20_000;
    })
    .await;
    api.write_ok(
        "POST",
        "/indexes/movies/documents",
        Some(Value::Array(movies(50))),
    )
    .await;

    let run = async {
        let mut senders = Vec::with_capacity(CONNECTIONS);
        for _ in 0..CONNECTIONS {
            senders.push(open(f.proxy.addr).await.expect("a loopback connection"));
        }
        let (senders, first) = wave(senders, 3, 0).await;
        let rss_first = rss();
        let (senders, second) = wave(senders, 3, 7).await;
        let rss_second = rss();
        drop(senders);
        (first, rss_first, second, rss_second)
    };
    let (first, rss_first, second, rss_second) = tokio::time::timeout(Duration::from_secs(90), run)
        .await
        .expect("the load test finishes");
    eprintln!(
        "load: first wave {first:?} rss {} MiB; second wave ok {} overloaded {} rss {} MiB; {:?}",
        rss_first >> 20,
        second.ok,
        second.overloaded,
        rss_second >> 20,
        started.elapsed()
    );
    for t in [&first, &second] {
        assert!(
            t.other.is_empty(),
            "{} unexpected answers, e.g. {:?}",
            t.other.len(),
            &t.other[..t.other.len().min(5)]
        );
        assert_eq!(t.ok + t.overloaded, 3 * CONNECTIONS as u64);
        assert!(t.ok >= CONNECTIONS as u64, "{t:?}");
    }
    assert!(rss_first > 0);
    assert!(
        rss_second < rss_first + rss_first / 5 + (16 << 20),
        "memory grew from {} MiB to {} MiB",
        rss_first >> 20,
        rss_second >> 20
    );
    // Every slot came back: the proxy serves normally after the load.
    assert_healthy(&api, "movies").await;
    f.shutdown().await;
}
