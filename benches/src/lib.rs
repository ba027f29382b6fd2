//! criterion benches, each group with the peer a user would otherwise pick.
//!
//! This crate will hold one bench file per concern under `benches/` (kmem against glibc and
//! mimalloc, object caches against lockfree-object-pool, messages against `bytes`, streams
//! against `VecDeque` pipelines and crossbeam-channel), with medians and ratios recorded in
//! the workspace's `BENCHMARKS.md`. None is written yet.
