//! miroir-proxy: the tokio + hyper shell around miroir-core.
//!
//! Modules:
//! - [`server`]: listeners, the request pipeline (route → auth → body limit → dispatch), graceful
//!   shutdown, and the [`server::RouteHandler`] the core-driven handlers plug into.
//! - [`routes`]: the typed route table of the whole Meilisearch 1.50 surface plus `/_miroir/*`.
//! - [`auth`]: master-key and admin-key checks with Meilisearch's exact errors.
//! - [`http_util`]: JSON/error responses and size-limited body reading.
//! - [`limits`]: the hostile-input limits (sizes, depth, timeouts, concurrency) and their errors.
//! - [`metrics`]: Prometheus metrics.
//! - [`node_client`]: the pooled HTTP client to the Meilisearch nodes.
//! - [`store`]: the durable task store (SQLite or Redis).
//! - [`dev`]: a fleet of node models plus the proxy in one process (`miroir-proxy dev`, tests).
//! - [`idempotency`]: `Idempotency-Key` deduplication of client writes (core decides, this executes).
//! - [`session`]: read-your-writes sessions (`X-Miroir-Session`; core plans, this waits and pins).
//! - [`settings_sync`]: two-phase settings, read-back verification, drift repair (core decides).
//! - [`fleet`]: the route handler that runs core's operations against the nodes.

pub mod auth;
pub mod dev;
pub mod fleet;
pub mod http_util;
pub mod idempotency;
pub mod limits;
pub mod metrics;
pub mod node_client;
pub mod routes;
pub mod server;
pub mod session;
pub mod settings_sync;
pub mod store;
