//! miroir-sim: the deterministic simulator and the Meilisearch node model.
//!
//! The node model and the madsim scenarios arrive with the simulator issue; this crate exists now so the
//! workspace has its final shape and everything builds from the first commit.

pub mod runner;
pub mod world;
