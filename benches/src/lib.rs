//! Shared fixtures for Miroir's benchmarks: deterministic corpora and shard answers built from a seed.
