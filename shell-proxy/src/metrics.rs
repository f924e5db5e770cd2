//! Miroir's own Prometheus metrics, served as text at `GET /metrics`.
//!
//! Metric names (labels in braces):
//! - `miroir_http_requests_total{route, method, status}`: requests answered. `route` is the route class
//!   ([`crate::routes::Route::class`]: `search`, `documents_write`, `settings`, `tasks`, ..., plus
//!   `unmatched` for unknown paths and wrong methods); `method` is the HTTP method (non-standard ones are
//!   `other`); `status` the numeric status code.
//! - `miroir_http_request_duration_seconds{route}`: histogram of the time to answer.
//! - `miroir_http_requests_in_flight`: gauge of requests being answered.
//! - `miroir_node_requests_total{node, outcome}`: requests sent to Meilisearch nodes by
//!   [`crate::node_client::NodeClient`]; `outcome` is `ok` (any HTTP answer), `connect_error`, `timeout`
//!   or `error`.
//! - `miroir_node_request_duration_seconds{node}`: histogram of node round trips.
//! - `miroir_task_store_errors_total{backend}`: failed task store operations reported by the server.

use http::Method;
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry, TextEncoder,
};
use std::time::Duration;

/// The content type of the Prometheus text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The registry and every metric Miroir exports. Cheap to clone (shared handles).
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    http_requests: IntCounterVec,
    http_duration: HistogramVec,
    in_flight: IntGauge,
    node_requests: IntCounterVec,
    node_duration: HistogramVec,
    store_errors: IntCounterVec,
    hedges: IntCounterVec,
}

const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

impl Metrics {
    /// A fresh registry with every metric registered.
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let http_requests = IntCounterVec::new(
            Opts::new(
                "miroir_http_requests_total",
                "HTTP requests answered by Miroir.",
            ),
            &["route", "method", "status"],
        )
        .expect("valid metric definition");
        let http_duration = HistogramVec::new(
            HistogramOpts::new(
                "miroir_http_request_duration_seconds",
                "Time Miroir took to answer HTTP requests.",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["route"],
        )
        .expect("valid metric definition");
        let in_flight = IntGauge::new(
            "miroir_http_requests_in_flight",
            "HTTP requests being answered.",
        )
        .expect("valid metric definition");
        let node_requests = IntCounterVec::new(
            Opts::new(
                "miroir_node_requests_total",
                "Requests Miroir sent to Meilisearch nodes.",
            ),
            &["node", "outcome"],
        )
        .expect("valid metric definition");
        let node_duration = HistogramVec::new(
            HistogramOpts::new(
                "miroir_node_request_duration_seconds",
                "Round-trip time of requests to Meilisearch nodes.",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["node"],
        )
        .expect("valid metric definition");
        let store_errors = IntCounterVec::new(
            Opts::new(
                "miroir_task_store_errors_total",
                "Failed task store operations.",
            ),
            &["backend"],
        )
        .expect("valid metric definition");
        let hedges = IntCounterVec::new(
            Opts::new(
                "miroir_hedged_requests_total",
                "Hedged read requests: `fired` duplicates sent to another replica, `won` those whose answer was used.",
            ),
            &["outcome"],
        )
        .expect("valid metric definition");
        for c in [
            Box::new(http_requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(http_duration.clone()),
            Box::new(in_flight.clone()),
            Box::new(node_requests.clone()),
            Box::new(node_duration.clone()),
            Box::new(store_errors.clone()),
            Box::new(hedges.clone()),
        ] {
            registry
                .register(c)
                .expect("each metric is registered once");
        }
        Metrics {
            registry,
            http_requests,
            http_duration,
            in_flight,
            node_requests,
            node_duration,
            store_errors,
            hedges,
        }
    }

    /// Records one answered request.
    pub fn observe_request(&self, route: &str, method: &Method, status: u16, elapsed: Duration) {
        let method = match *method {
            Method::GET => "GET",
            Method::POST => "POST",
            Method::PUT => "PUT",
            Method::PATCH => "PATCH",
            Method::DELETE => "DELETE",
            Method::HEAD => "HEAD",
            Method::OPTIONS => "OPTIONS",
            _ => "other",
        };
        self.http_requests
            .with_label_values(&[route, method, &status.to_string()])
            .inc();
        self.http_duration
            .with_label_values(&[route])
            .observe(elapsed.as_secs_f64());
    }

    /// The in-flight gauge.
    pub fn in_flight(&self) -> &IntGauge {
        &self.in_flight
    }

    /// Records one node round trip.
    pub fn observe_node(&self, node: &str, outcome: &str, elapsed: Duration) {
        self.node_requests.with_label_values(&[node, outcome]).inc();
        self.node_duration
            .with_label_values(&[node])
            .observe(elapsed.as_secs_f64());
    }

    /// Records the hedges of one read: `fired` duplicates sent, `won` of them answered first.
    pub fn observe_hedges(&self, fired: u32, won: u32) {
        if fired > 0 {
            self.hedges
                .with_label_values(&["fired"])
                .inc_by(u64::from(fired));
        }
        if won > 0 {
            self.hedges
                .with_label_values(&["won"])
                .inc_by(u64::from(won));
        }
    }

    /// Records a task store failure.
    pub fn store_error(&self, backend: &str) {
        self.store_errors.with_label_values(&[backend]).inc();
    }

    /// The registry, for metrics registered by other modules (the repair metrics).
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        // Encoding into a Vec cannot fail for well-formed metric families.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_recorded_values() {
        let m = Metrics::new();
        m.observe_request("search", &Method::POST, 200, Duration::from_millis(3));
        m.observe_request(
            "search",
            &Method::from_bytes(b"BREW").unwrap(),
            405,
            Duration::ZERO,
        );
        m.observe_node("meili-0", "timeout", Duration::from_secs(2));
        m.store_error("sqlite");
        m.in_flight().inc();
        m.observe_hedges(0, 0);
        m.observe_hedges(3, 2);
        let text = m.render();
        assert!(text.contains("miroir_hedged_requests_total{outcome=\"fired\"} 3"));
        assert!(text.contains("miroir_hedged_requests_total{outcome=\"won\"} 2"));
        assert!(text.contains(
            "miroir_http_requests_total{method=\"POST\",route=\"search\",status=\"200\"} 1"
        ));
        assert!(text.contains("method=\"other\""));
        assert!(text.contains(
            "miroir_http_request_duration_seconds_bucket{route=\"search\",le=\"0.005\"} 2"
        ));
        assert!(text.contains("miroir_node_requests_total{node=\"meili-0\",outcome=\"timeout\"} 1"));
        assert!(text.contains("miroir_task_store_errors_total{backend=\"sqlite\"} 1"));
        assert!(text.contains("miroir_http_requests_in_flight 1"));
    }
}
