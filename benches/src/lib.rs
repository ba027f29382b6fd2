//! criterion benches, each group with the peer a user would otherwise pick.
//!
//! One bench file per concern under `benches/`: `kmem` (kmem_alloc against glibc and mimalloc,
//! object caches against lockfree-object-pool and a crossbeam free list, a two-thread handoff
//! against mimalloc, `KmemGlobal` against mimalloc and glibc as `GlobalAlloc`s) and `mempool` (mempools against lockfree-object-pool and object-pool).
//! Medians and ratios are recorded in the workspace's `BENCHMARKS.md` with the commands;
//! `examples/` holds plain loops for profilers (`perf`, `valgrind --tool=callgrind`) and
//! `global_kmem`, a program whose global allocator is `KmemGlobal`.
