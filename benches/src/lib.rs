//! criterion benches, each group with the peer a user would otherwise pick.
//!
//! One bench file per concern under `benches/`: `kmem` (kmem_alloc against glibc and mimalloc,
//! object caches against lockfree-object-pool and a crossbeam free list, a two-thread handoff
//! against mimalloc, `KmemGlobal` against mimalloc and glibc as `GlobalAlloc`s) and `mempool` (mempools against lockfree-object-pool and object-pool).
//! Medians and ratios are recorded in the workspace's `BENCHMARKS.md` with the commands;
//! `examples/` holds plain loops for profilers (`perf`, `valgrind --tool=callgrind`) and
//! `global_kmem`, a program whose global allocator is `KmemGlobal`.

pub mod queues;

/// What `Box::new([0u8; 64])` and its drop do, through `a`'s `GlobalAlloc` methods called
/// directly: allocate the layout of `[u8; 64]` (64 bytes, align 1), write the array, free.
/// Shared by the `global_box_64` bench group and the `global_kmem` profiling loop.
pub fn box_64<A: std::alloc::GlobalAlloc>(a: &A) {
    use std::hint::black_box;
    let layout = std::alloc::Layout::new::<[u8; 64]>();
    // SAFETY: non-zero layout.
    let p = unsafe { a.alloc(black_box(layout)) }.cast::<[u8; 64]>();
    assert!(!p.is_null());
    // SAFETY: `p` holds a `[u8; 64]` (align 1).
    unsafe { p.write(black_box([0u8; 64])) };
    // SAFETY: `p` came from a.alloc(layout); freed once.
    unsafe { a.dealloc(black_box(p).cast(), layout) };
}
