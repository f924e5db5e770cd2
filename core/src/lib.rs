//! # miroir-core
//!
//! The sans-IO heart of Miroir. Every decision the proxy and the simulator act on is made here, by pure
//! state machines and planners that take events (node responses, timeouts, `now` as a value) and return
//! actions. Nothing in this crate performs I/O, reads a clock or draws randomness except from a seed that
//! the caller passes in.
//!
//! Modules:
//! - [`error`]: the Meilisearch-shaped error type.
//! - [`ops`]: request-level state machines (fan-out writes, scatter searches, task reads) both shells run.
//! - [`entropy`]: per-write versions (last writer wins), tombstones and the anti-entropy pass.
//! - [`hints`]: hinted handoff, the node writes a replica missed, replayed in order when it is back.
//! - [`idempotency`]: deduplication of client retries carrying an `Idempotency-Key`.
//! - [`health`]: the per-node health state machine (healthy, suspect, failed, recovering).
//! - [`topology`]: nodes, replica groups, shards, validation and the topology epoch.
//! - [`migration`]: the shard-migration (cutover) coordinator used when the fleet changes shape.
//! - [`routing`]: document id → shard hashing, rendezvous placement and covering sets for queries.
//! - [`docsync`]: document copy and verify primitives shared by the migration and resharding.
//! - [`documents`]: parsing client batches, primary-key resolution, id validation, per-node batch planning.
//! - [`quorum`]: the write-quorum tracker.
//! - [`reshard`]: online resharding (changing S) through a shadow index, verified and swapped in.
//! - [`search`]: search request planning and the exact merge of shard answers.
//! - [`session`]: read-your-writes sessions (`X-Miroir-Session`).
//! - [`settings_sync`]: two-phase settings changes, read-back verification, drift repair, freezing.
//! - [`tasks`]: Miroir task uids and the aggregation of node tasks into one Meilisearch task object.
//! - [`webhooks`]: the webhooks Miroir keeps and notifies itself.

pub mod aliases;
pub mod auth;
pub mod config;
pub mod docsync;
pub mod documents;
pub mod entropy;
pub mod error;
pub mod health;
pub mod hints;
pub mod idempotency;
pub mod migration;
pub mod ops;
pub mod pager;
pub mod quorum;
pub mod reshard;
pub mod routing;
pub mod search;
pub mod select;
pub mod session;
pub mod settings_sync;
pub mod tasks;
pub mod topology;
pub mod webhooks;

pub use error::{ErrorType, MeiliError};

/// The field Miroir adds to every document it stores on a node: the shard the document belongs to.
pub const SHARD_FIELD: &str = "_miroir_shard";

/// Every field whose name starts with this prefix is reserved for Miroir and stripped from client answers.
pub const RESERVED_PREFIX: &str = "_miroir_";

/// Milliseconds since the Unix epoch. Core never reads a clock: callers pass `now` in.
pub type Millis = u64;
