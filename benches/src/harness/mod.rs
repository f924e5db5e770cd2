//! The load harness behind `miroir-bench`: drives search and ingest load against any
//! Meilisearch-compatible URL (a real Meilisearch, the Miroir proxy, or the node model), optionally two
//! side by side, and reports latency percentiles, throughput and errors.

pub mod client;
pub mod corpus;
pub mod options;
pub mod run;
pub mod stats;

pub use options::{parse_args, Command, Options, Workload, USAGE};
pub use run::{run, Report};
