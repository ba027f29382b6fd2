//! Plain loops over one allocate + free pair, for profilers (`perf`, callgrind).
//!
//! `cargo run --release -p benches --example kmem_loop -- [iterations] [mode]`, where `mode` is
//! - `kmem` (default): `kmem_alloc(64)` + `kmem_free`, the size hidden from the optimiser;
//! - `mimalloc`: `MiMalloc`'s `GlobalAlloc` alloc + dealloc of 64 bytes, the same way;
//! - `cache`: `kmem_cache_alloc` + `kmem_cache_free` on a 256-byte object cache;
//! - `lop`: lockfree-object-pool's `LinearObjectPool::<[u8; 256]>` pull + drop, its peer;
//! - `burst`: 1000 `kmem_alloc(64)`, then 1000 `kmem_free` (one iteration = one burst);
//! - `mimalloc-burst`: the same burst with mimalloc.
//!
//! The arena has `Checking::OFF` and no budget and is entered by the thread, as in the
//! criterion bench. Per-pair instruction counts come from two runs with different iteration
//! counts (`valgrind --tool=callgrind`), subtracting the start-up both share.

use ddi_kmem::{
    Arena, Checking, KM_SLEEP, kmem_alloc, kmem_cache_alloc, kmem_cache_create, kmem_cache_destroy, kmem_cache_free,
    kmem_free,
};
use mimalloc::MiMalloc;
use std::alloc::{GlobalAlloc, Layout};
use std::hint::black_box;

fn main() {
    let mut args = std::env::args().skip(1);
    let n: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(10_000_000);
    let which = args.next().unwrap_or_else(|| "kmem".to_string());
    let arena = Arena::builder().name("loop").checking(Checking::OFF).build();
    let _g = arena.enter();
    let t = std::time::Instant::now();
    match which.as_str() {
        "kmem" => {
            for _ in 0..n {
                let p = kmem_alloc(black_box(64), KM_SLEEP);
                // SAFETY: allocated just above with 64 bytes; freed once.
                unsafe { kmem_free(black_box(p), 64) };
            }
        }
        "mimalloc" => {
            let layout = Layout::from_size_align(64, 8).unwrap();
            for _ in 0..n {
                // SAFETY: non-zero layout.
                let p = unsafe { MiMalloc.alloc(black_box(layout)) };
                // SAFETY: `p` came from MiMalloc.alloc(layout); freed once.
                unsafe { MiMalloc.dealloc(black_box(p), layout) };
            }
        }
        "cache" => {
            let null = std::ptr::null_mut();
            let cp = kmem_cache_create("loop256", 256, 8, None, None, None, null, null, 0);
            for _ in 0..n {
                let p = kmem_cache_alloc(&cp, KM_SLEEP);
                // SAFETY: `p` came from this cache just above; freed once.
                unsafe { kmem_cache_free(&cp, black_box(p)) };
            }
            kmem_cache_destroy(cp);
        }
        "lop" => {
            let pool = lockfree_object_pool::LinearObjectPool::<[u8; 256]>::new(|| [0; 256], |_| {});
            for _ in 0..n {
                let o = pool.pull();
                black_box(&o);
            }
        }
        "burst" => {
            let mut ptrs = Vec::with_capacity(1000);
            for _ in 0..n {
                ptrs.extend((0..1000).map(|_| kmem_alloc(64, KM_SLEEP)));
                for p in ptrs.drain(..) {
                    // SAFETY: each came from kmem_alloc(64) above; freed once.
                    unsafe { kmem_free(p, 64) };
                }
            }
        }
        "mimalloc-burst" => {
            let layout = Layout::from_size_align(64, 8).unwrap();
            let mut ptrs = Vec::with_capacity(1000);
            for _ in 0..n {
                // SAFETY: non-zero layout.
                ptrs.extend((0..1000).map(|_| unsafe { MiMalloc.alloc(layout) }));
                for p in ptrs.drain(..) {
                    // SAFETY: each came from MiMalloc.alloc(layout); freed once.
                    unsafe { MiMalloc.dealloc(p, layout) };
                }
            }
        }
        other => panic!("kmem_loop: unknown mode {other:?} (kmem, mimalloc, cache, lop, burst, mimalloc-burst)"),
    }
    let ns = t.elapsed().as_nanos() as f64 / n as f64;
    println!("{n} {which} iterations: {ns:.2} ns each");
    assert_eq!(arena.bytes_in_use(), 0);
}
