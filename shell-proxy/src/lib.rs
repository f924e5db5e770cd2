//! miroir-proxy: the tokio + hyper shell around miroir-core.
pub mod store;
