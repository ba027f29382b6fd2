//! A plain loop over `mempool_alloc` + `mempool_free` of a 256-byte slab-pool element whose
//! backing cache hits, for profilers (`perf`, callgrind).
//!
//! `cargo run --release -p benches --example mempool_loop -- [iterations] [cache | reserve |
//! threads N]`:
//! - with `cache`, first the same loop over `kmem_cache_alloc` + `kmem_cache_free` alone (the
//!   floor the pool adds to);
//! - with `reserve`, the loop of the `mempool_reserve` bench instead: a pool whose allocation
//!   function returns NULL, `GFP_ATOMIC`, so the reserve serves and the free refills it;
//! - with `threads N`, N threads run the loop on the one pool at once (each entered in the
//!   arena, so each has its own magazines); the figure is wall time per pair per thread, so
//!   compare CPU time (`perf stat -e task-clock`) when the machine is busy.

use ddi_kmem::{Arena, Checking, KM_NOSLEEP, kmem_cache_alloc, kmem_cache_create, kmem_cache_destroy, kmem_cache_free};
use ddi_mempool::{
    GFP_ATOMIC, GFP_KERNEL, Gfp, Mempool, mempool_alloc, mempool_create_slab_pool, mempool_destroy, mempool_free,
};
use std::hint::black_box;
use std::sync::Arc;

#[inline(always)] // a constant mask at each call site, as in the benches
fn pairs(pool: &Mempool, gfp: Gfp, n: u64) {
    for _ in 0..n {
        let p = mempool_alloc(pool, gfp);
        // SAFETY: `p` came from this pool just above; freed once.
        unsafe { mempool_free(black_box(p), pool) };
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n: u64 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(10_000_000);
    let mode = args.get(2).map(String::as_str);
    let threads: usize =
        if mode == Some("threads") { args.get(3).and_then(|s| s.parse().ok()).unwrap_or(2) } else { 1 };
    let arena = Arena::builder().name("loop").checking(Checking::OFF).build();
    let _g = arena.enter();
    let null = std::ptr::null_mut();
    let kc = Arc::new(kmem_cache_create("loop256", 256, 8, None, None, None, null, null, 0));
    let pool = mempool_create_slab_pool(16, &kc).expect("preallocation");
    if mode == Some("cache") {
        let t = std::time::Instant::now();
        for _ in 0..n {
            let p = kmem_cache_alloc(&kc, KM_NOSLEEP);
            // SAFETY: `p` came from this cache just above; freed once.
            unsafe { kmem_cache_free(&kc, black_box(p)) };
        }
        let ns = t.elapsed().as_nanos() as f64 / n as f64;
        println!("{n} kmem_cache_alloc+kmem_cache_free pairs (cache hit): {ns:.2} ns/pair");
    }
    if mode == Some("reserve") {
        let (alloc_kc, free_kc) = (Arc::clone(&kc), Arc::clone(&kc));
        let prealloc = std::sync::atomic::AtomicUsize::new(16);
        let starved = Mempool::builder(16)
            .create(
                move |gfp, _data| {
                    // Only the preallocation succeeds.
                    let left = prealloc.load(std::sync::atomic::Ordering::Relaxed);
                    if left == 0 {
                        return std::ptr::null_mut();
                    }
                    prealloc.store(left - 1, std::sync::atomic::Ordering::Relaxed);
                    kmem_cache_alloc(&alloc_kc, gfp.km_flags())
                },
                // SAFETY: the pool frees only elements of `alloc_kc`, the same cache, once each.
                move |element, _data| unsafe { kmem_cache_free(&free_kc, element) },
                null,
            )
            .expect("preallocation");
        let t = std::time::Instant::now();
        pairs(&starved, GFP_ATOMIC, n);
        let ns = t.elapsed().as_nanos() as f64 / n as f64;
        println!("{n} mempool_alloc+mempool_free pairs (reserve serves): {ns:.2} ns/pair");
        assert_eq!((starved.curr_nr(), starved.outstanding()), (16, 0));
        mempool_destroy(Some(starved));
    }
    let t = std::time::Instant::now();
    if threads == 1 {
        pairs(&pool, GFP_KERNEL, n);
    } else {
        std::thread::scope(|s| {
            for _ in 0..threads {
                let (pool, arena) = (&pool, &arena);
                s.spawn(move || {
                    let _g = arena.enter();
                    pairs(pool, GFP_KERNEL, n);
                });
            }
        });
    }
    let ns = t.elapsed().as_nanos() as f64 / n as f64;
    println!("{threads} x {n} mempool_alloc+mempool_free pairs (slab pool, cache hit): {ns:.2} ns/pair");
    assert_eq!(pool.outstanding(), 0);
    mempool_destroy(Some(pool));
    kmem_cache_destroy(Arc::into_inner(kc).expect("the pool is gone"));
}
