//! miroir-sim: the deterministic simulator and the Meilisearch node model.
//!
//! [`model`] is a sans-IO model of one Meilisearch v1.50 node that every Miroir test can run against
//! (no Meilisearch binary is needed). The madsim scenarios will drive it.

pub mod model;
#[cfg(not(madsim))]
pub mod serve;

pub use model::{Method, Node, NodeState, Request, Response};
