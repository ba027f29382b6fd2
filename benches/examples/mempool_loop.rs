//! A plain loop over `mempool_alloc` + `mempool_free` of a 256-byte slab-pool element whose
//! backing cache hits, for profilers (`perf`, callgrind).
//!
//! `cargo run --release -p benches --example mempool_loop -- [iterations] [cache]`: with
//! `cache`, the same loop over `kmem_cache_alloc` + `kmem_cache_free` alone (the floor the
//! pool adds to).

use ddi_kmem::{Arena, Checking, KM_NOSLEEP, kmem_cache_alloc, kmem_cache_create, kmem_cache_destroy, kmem_cache_free};
use ddi_mempool::{GFP_KERNEL, mempool_alloc, mempool_create_slab_pool, mempool_destroy, mempool_free};
use std::hint::black_box;
use std::sync::Arc;

fn main() {
    let n: u64 = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(10_000_000);
    let arena = Arena::builder().name("loop").checking(Checking::OFF).build();
    let _g = arena.enter();
    let null = std::ptr::null_mut();
    let kc = Arc::new(kmem_cache_create("loop256", 256, 8, None, None, None, null, null, 0));
    let pool = mempool_create_slab_pool(16, &kc).expect("preallocation");
    if std::env::args().nth(2).as_deref() == Some("cache") {
        let t = std::time::Instant::now();
        for _ in 0..n {
            let p = kmem_cache_alloc(&kc, KM_NOSLEEP);
            // SAFETY: `p` came from this cache just above; freed once.
            unsafe { kmem_cache_free(&kc, black_box(p)) };
        }
        let ns = t.elapsed().as_nanos() as f64 / n as f64;
        println!("{n} kmem_cache_alloc+kmem_cache_free pairs (cache hit): {ns:.2} ns/pair");
    }
    let t = std::time::Instant::now();
    for _ in 0..n {
        let p = mempool_alloc(&pool, GFP_KERNEL);
        // SAFETY: `p` came from this pool just above; freed once.
        unsafe { mempool_free(black_box(p), &pool) };
    }
    let ns = t.elapsed().as_nanos() as f64 / n as f64;
    println!("{n} mempool_alloc+mempool_free pairs (slab pool, cache hit): {ns:.2} ns/pair");
    mempool_destroy(Some(pool));
    kmem_cache_destroy(Arc::into_inner(kc).expect("the pool is gone"));
}
