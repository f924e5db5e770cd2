//! Latency statistics over an exact sorted sample (no histogram buckets, no rounding).
//!
//! Percentiles use the nearest-rank definition: the `p`-th percentile of `n` sorted values is the value at
//! rank `ceil(p / 100 * n)` (1-based), clamped to `1..=n`; an empty sample has no percentiles. Every
//! reported latency is therefore one that was actually measured.

use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::time::Duration;

/// The nearest-rank `p`-th percentile (`p` in `0.0..=100.0`) of an ascending `sorted` sample.
pub fn percentile(sorted: &[u64], p: f64) -> Option<u64> {
    if sorted.is_empty() || !(0.0..=100.0).contains(&p) {
        return None;
    }
    let n = sorted.len();
    // The small tolerance keeps float error (0.999 * 1000 = 999.000...1) from bumping the rank.
    let rank = ((p / 100.0) * n as f64 - 1e-9).ceil() as usize;
    Some(sorted[rank.clamp(1, n) - 1])
}

/// What one run recorded against one target: latencies of successful requests (microseconds) and the
/// failures by cause.
#[derive(Debug, Clone, Default)]
pub struct Recorder {
    /// Latencies of successful (2xx) requests, in microseconds.
    pub latencies_us: Vec<u64>,
    /// Failures by cause: the HTTP status (`"503"`), `"timeout"`, `"connect"`, `"io"` or `"task_failed"`.
    pub errors: BTreeMap<String, u64>,
}

impl Recorder {
    /// Records a success.
    pub fn ok(&mut self, latency: Duration) {
        self.latencies_us
            .push(latency.as_micros().min(u64::MAX as u128) as u64);
    }

    /// Records a failure.
    pub fn error(&mut self, cause: &str) {
        *self.errors.entry(cause.to_string()).or_insert(0) += 1;
    }

    /// Adds another recorder's observations.
    pub fn merge(&mut self, other: Recorder) {
        self.latencies_us.extend(other.latencies_us);
        for (k, v) in other.errors {
            *self.errors.entry(k).or_insert(0) += v;
        }
    }

    /// The summary over a run of `elapsed`.
    pub fn summary(mut self, elapsed: Duration) -> Summary {
        self.latencies_us.sort_unstable();
        let s = &self.latencies_us;
        let ok = s.len() as u64;
        let error_count: u64 = self.errors.values().sum();
        let secs = elapsed.as_secs_f64();
        let throughput = if secs > 0.0 { ok as f64 / secs } else { 0.0 };
        let mean_us = if s.is_empty() {
            None
        } else {
            Some(s.iter().map(|&v| v as f64).sum::<f64>() / s.len() as f64)
        };
        Summary {
            requests: ok + error_count,
            ok,
            errors: self.errors,
            elapsed_s: secs,
            throughput,
            mean_us,
            min_us: s.first().copied(),
            p50_us: percentile(s, 50.0),
            p90_us: percentile(s, 90.0),
            p99_us: percentile(s, 99.0),
            p999_us: percentile(s, 99.9),
            max_us: s.last().copied(),
        }
    }
}

/// The summary of one target's run.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    /// Requests sent (successes + failures).
    pub requests: u64,
    /// Successful (2xx) requests.
    pub ok: u64,
    /// Failures by cause.
    pub errors: BTreeMap<String, u64>,
    /// Length of the timed phase, in seconds.
    pub elapsed_s: f64,
    /// Successful requests per second.
    pub throughput: f64,
    /// Mean latency of successes.
    pub mean_us: Option<f64>,
    /// Smallest latency.
    pub min_us: Option<u64>,
    /// Median latency.
    pub p50_us: Option<u64>,
    /// 90th percentile.
    pub p90_us: Option<u64>,
    /// 99th percentile.
    pub p99_us: Option<u64>,
    /// 99.9th percentile.
    pub p999_us: Option<u64>,
    /// Largest latency.
    pub max_us: Option<u64>,
}

fn ms(us: Option<u64>) -> Value {
    match us {
        Some(v) => json!(v as f64 / 1000.0),
        None => Value::Null,
    }
}

fn ratio(b: Option<f64>, a: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if a > 0.0 => Some(b / a),
        _ => None,
    }
}

impl Summary {
    /// Total failures.
    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }

    /// As JSON, latencies in milliseconds.
    pub fn to_json(&self) -> Value {
        let mut errors = Map::new();
        for (k, v) in &self.errors {
            errors.insert(k.clone(), json!(v));
        }
        json!({
            "requests": self.requests,
            "ok": self.ok,
            "errors": errors,
            "elapsedS": self.elapsed_s,
            "throughput": self.throughput,
            "latencyMs": {
                "mean": self.mean_us.map(|m| m / 1000.0),
                "min": ms(self.min_us),
                "p50": ms(self.p50_us),
                "p90": ms(self.p90_us),
                "p99": ms(self.p99_us),
                "p99.9": ms(self.p999_us),
                "max": ms(self.max_us),
            }
        })
    }

    /// The metrics compared side by side: name and value (latencies in microseconds).
    pub fn metrics(&self) -> Vec<(&'static str, Option<f64>)> {
        let f = |v: Option<u64>| v.map(|v| v as f64);
        vec![
            ("p50", f(self.p50_us)),
            ("p90", f(self.p90_us)),
            ("p99", f(self.p99_us)),
            ("p99.9", f(self.p999_us)),
            ("max", f(self.max_us)),
            ("mean", self.mean_us),
            ("throughput", Some(self.throughput)),
        ]
    }

    /// The ratios `other / self` (B/A when `self` is A) for each metric; `None` when undefined.
    pub fn ratios(&self, other: &Summary) -> Vec<(&'static str, Option<f64>)> {
        self.metrics()
            .into_iter()
            .zip(other.metrics())
            .map(|((name, a), (_, b))| (name, ratio(b, a)))
            .collect()
    }
}

/// Formats a latency in microseconds as milliseconds with three decimals, `-` when absent.
pub fn fmt_ms(us: Option<u64>) -> String {
    match us {
        Some(v) => format!("{:.3}", v as f64 / 1000.0),
        None => "-".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&v, 50.0), Some(50));
        assert_eq!(percentile(&v, 90.0), Some(90));
        assert_eq!(percentile(&v, 99.0), Some(99));
        assert_eq!(percentile(&v, 99.9), Some(100));
        assert_eq!(percentile(&v, 100.0), Some(100));
        assert_eq!(percentile(&v, 0.0), Some(1));
        let v: Vec<u64> = (1..=1000).collect();
        assert_eq!(percentile(&v, 99.9), Some(999));
        assert_eq!(percentile(&[7], 50.0), Some(7));
        assert_eq!(percentile(&[7], 99.9), Some(7));
        assert_eq!(percentile(&[1, 2], 50.0), Some(1));
        assert_eq!(percentile(&[1, 2], 50.1), Some(2));
    }

    #[test]
    fn percentiles_of_nothing_or_out_of_range() {
        assert_eq!(percentile(&[], 50.0), None);
        assert_eq!(percentile(&[1, 2, 3], -1.0), None);
        assert_eq!(percentile(&[1, 2, 3], 100.1), None);
        assert_eq!(percentile(&[1, 2, 3], f64::NAN), None);
    }

    #[test]
    fn summary_sorts_merges_and_counts() {
        let mut a = Recorder::default();
        for us in [500u64, 100, 300] {
            a.ok(Duration::from_micros(us));
        }
        a.error("503");
        let mut b = Recorder::default();
        b.ok(Duration::from_micros(200));
        b.error("503");
        b.error("timeout");
        a.merge(b);
        let s = a.summary(Duration::from_secs(2));
        assert_eq!(s.requests, 7);
        assert_eq!(s.ok, 4);
        assert_eq!(s.error_count(), 3);
        assert_eq!(s.errors["503"], 2);
        assert_eq!(s.errors["timeout"], 1);
        assert_eq!(s.throughput, 2.0);
        assert_eq!(s.min_us, Some(100));
        assert_eq!(s.p50_us, Some(200));
        assert_eq!(s.p90_us, Some(500));
        assert_eq!(s.max_us, Some(500));
        assert_eq!(s.mean_us, Some(275.0));
        let j = s.to_json();
        assert_eq!(j["latencyMs"]["p50"], json!(0.2));
        assert_eq!(j["errors"]["503"], json!(2));
    }

    #[test]
    fn empty_summary_and_ratios() {
        let empty = Recorder::default().summary(Duration::ZERO);
        assert_eq!(empty.throughput, 0.0);
        assert_eq!(empty.p50_us, None);
        assert_eq!(empty.to_json()["latencyMs"]["p99"], Value::Null);
        let mut r = Recorder::default();
        r.ok(Duration::from_micros(100));
        let a = r.clone().summary(Duration::from_secs(1));
        let mut r2 = Recorder::default();
        r2.ok(Duration::from_micros(250));
        r2.ok(Duration::from_micros(250));
        let b = r2.summary(Duration::from_secs(1));
        let ratios: BTreeMap<_, _> = a.ratios(&b).into_iter().collect();
        assert_eq!(ratios["p50"], Some(2.5));
        assert_eq!(ratios["throughput"], Some(2.0));
        let none: BTreeMap<_, _> = empty.ratios(&a).into_iter().collect();
        assert_eq!(none["p50"], None);
        assert_eq!(none["throughput"], None);
        assert_eq!(fmt_ms(Some(1234)), "1.234");
        assert_eq!(fmt_ms(None), "-");
    }
}
