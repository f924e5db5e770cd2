//! miroir-sim: the deterministic simulator and the Meilisearch node model.
//!
//! - [`model`] is a sans-IO model of one Meilisearch v1.50 node that every Miroir test can run against
//!   (no Meilisearch binary is needed).
//! - [`serve`] serves the model over HTTP (the `meili-model` binary, and in-process nodes for the proxy's tests
//!   and `miroir-proxy dev`).
//! - [`world`] is the simulated world (network, hosts, faults, trace), [`runner`] sweeps seeds, and the
//!   scenarios under `tests/sim.rs` (built with `cargo sim`, i.e. `--cfg madsim`) drive miroir-core's
//!   operations against model nodes and check the invariants in [`checkers`].

pub mod checkers;
pub mod fixtures;
pub mod history;
pub mod model;
pub mod runner;
#[cfg(not(madsim))]
pub mod serve;
pub mod world;

pub use model::{Method, Node, NodeState, Request, Response};
