//! The forward-progress guarantee and the non-sleeping failure paths.

mod common;

use common::{arena, iters};
use ddi_kmem::{FailurePlan, KM_NOSLEEP, KM_SLEEP, kmem_alloc, kmem_free};
use ddi_mempool::{
    GFP_ATOMIC, GFP_KERNEL, GFP_NOFS, GFP_NOIO, GFP_NOWAIT, Mempool, TypedPool, mempool_alloc,
    mempool_alloc_preallocated, mempool_create_kmalloc_pool, mempool_create_page_pool, mempool_destroy, mempool_free,
};
use std::time::Duration;

/// The guarantee itself: budget exhausted, every allocation that may fail fails, and N threads
/// looping on alloc/free with sleeping masks all finish, served by a reserve smaller than N.
#[test]
fn threads_finish_with_budget_exhausted_and_injection() {
    let threads = iters(8, 3);
    let loops = iters(300, 10);
    let a = arena("guarantee", 4096);
    let _in = a.enter();
    let pool = Mempool::builder(2).timeout(Duration::from_millis(20)).kmalloc(128).expect("prealloc");
    // Exhaust the rest of the budget.
    let mut hog = Vec::new();
    loop {
        let p = kmem_alloc(128, KM_NOSLEEP);
        if p.is_null() {
            break;
        }
        hog.push(p);
    }
    assert!(kmem_alloc(32, KM_NOSLEEP).is_null(), "budget exhausted");
    a.inject(FailurePlan::Always);
    std::thread::scope(|s| {
        for t in 0..threads {
            let (pool, a) = (&pool, &a);
            s.spawn(move || {
                let _in = a.enter();
                let gfp = [GFP_KERNEL, GFP_NOFS, GFP_NOIO][t % 3];
                for i in 0..loops {
                    let p = mempool_alloc(pool, gfp);
                    assert!(!p.is_null(), "a sleeping mempool_alloc never fails");
                    // SAFETY: the element is 128 bytes from this pool, ours until freed.
                    unsafe { p.cast::<u8>().write_bytes(i as u8, 128) };
                    if i % 7 == 0 {
                        std::thread::yield_now();
                    }
                    // SAFETY: `p` came from this pool and is freed once.
                    unsafe { mempool_free(p, pool) };
                }
            });
        }
    });
    assert_eq!(pool.curr_nr(), 2);
    assert_eq!(pool.outstanding(), 0);
    a.clear_injection();
    for p in hog {
        // SAFETY: each came from kmem_alloc(128) in this arena, freed once.
        unsafe { kmem_free(p, 128) };
    }
    assert_eq!(mempool_destroy(Some(pool)), 0);
    assert_eq!(a.bytes_in_use(), 0);
    assert_eq!(a.stats().errors, 0);
}

/// The same through the typed surface, and a page pool: the handles give their slots back.
#[test]
fn typed_and_page_pools_keep_the_guarantee() {
    let threads = iters(4, 2);
    let loops = iters(200, 8);
    let a = arena("guarantee-typed", 64 * 1024);
    let _in = a.enter();
    let typed = TypedPool::<[u64; 4]>::with(Mempool::builder(1).timeout(Duration::from_millis(20))).expect("prealloc");
    let pages = Mempool::builder(1).timeout(Duration::from_millis(20)).pages(1).expect("prealloc");
    a.inject(FailurePlan::Always);
    std::thread::scope(|s| {
        for t in 0..threads {
            let (typed, pages, a) = (&typed, &pages, &a);
            s.spawn(move || {
                let _in = a.enter();
                for i in 0..loops {
                    let mut b = typed.alloc(GFP_KERNEL, [t as u64; 4]).expect("never fails");
                    b[1] = i as u64;
                    assert_eq!(b[0], t as u64);
                    drop(b);
                    let p = pages.alloc(GFP_KERNEL);
                    assert!(!p.is_null());
                    // SAFETY: `p` came from this pool and is freed once.
                    unsafe { pages.free(p) };
                }
            });
        }
    });
    a.clear_injection();
    drop(typed);
    drop(pages);
    assert_eq!(a.bytes_in_use(), 0);
}

/// An atomic-context allocation on an empty reserve returns NULL rather than blocking.
#[test]
fn atomic_alloc_on_empty_reserve_returns_null() {
    let a = arena("atomic", 1 << 20);
    let _in = a.enter();
    let pool = mempool_create_kmalloc_pool(2, 64).expect("prealloc");
    a.inject(FailurePlan::Always);
    let x = mempool_alloc(&pool, GFP_ATOMIC);
    let y = mempool_alloc(&pool, GFP_NOWAIT);
    assert!(!x.is_null() && !y.is_null(), "the reserve serves atomic callers");
    assert_eq!(pool.curr_nr(), 0);
    assert!(mempool_alloc(&pool, GFP_ATOMIC).is_null());
    assert!(mempool_alloc(&pool, GFP_NOWAIT).is_null());
    assert!(mempool_alloc_preallocated(&pool).is_null());
    // Interrupt context: even GFP_KERNEL must not sleep, and must not hand kmem a KM_SLEEP
    // (that would be a misuse, which panics in this arena).
    ddi_kmem::interrupt(|| assert!(mempool_alloc(&pool, GFP_KERNEL).is_null()));
    // SAFETY: each came from this pool and is freed once.
    unsafe { mempool_free(x, &pool) };
    // SAFETY: as above.
    unsafe { mempool_free(y, &pool) };
    // And when the reserve has something, interrupt context gets it.
    let z = ddi_kmem::interrupt(|| mempool_alloc(&pool, GFP_KERNEL));
    assert!(!z.is_null());
    // SAFETY: as above.
    unsafe { mempool_free(z, &pool) };
    a.clear_injection();
    drop(pool);
    assert_eq!(a.bytes_in_use(), 0);
    assert_eq!(a.stats().errors, 0);
}

/// The backend is tried first; the reserve only on failure; frees refill before freeing.
#[test]
fn backend_first_reserve_second_refill_first() {
    let a = arena("order", 1 << 20);
    let _in = a.enter();
    let pool = mempool_create_kmalloc_pool(2, 256).expect("prealloc");
    let base = a.bytes_in_use();
    let p = mempool_alloc(&pool, GFP_KERNEL);
    assert_eq!(pool.curr_nr(), 2, "a healthy backend leaves the reserve alone");
    assert_eq!(a.bytes_in_use(), base + 256);
    // SAFETY: from this pool, freed once.
    unsafe { mempool_free(p, &pool) };
    assert_eq!(a.bytes_in_use(), base, "the reserve is full, so free_fn gets it");
    a.inject(FailurePlan::Always);
    let p1 = mempool_alloc(&pool, GFP_KERNEL);
    let p2 = mempool_alloc(&pool, GFP_KERNEL);
    assert_eq!(pool.curr_nr(), 0);
    // SAFETY: from this pool, freed once.
    unsafe { mempool_free(p1, &pool) };
    let p3 = mempool_alloc_preallocated(&pool);
    assert_eq!(p3, p1, "last freed, first out");
    // SAFETY: from this pool, freed once each.
    unsafe { mempool_free(p2, &pool) };
    // SAFETY: as above.
    unsafe { mempool_free(p3, &pool) };
    assert_eq!(pool.curr_nr(), 2);
    a.clear_injection();
    drop(pool);
    assert_eq!(a.bytes_in_use(), 0);
}

/// A page pool's elements are page-aligned blocks of the right size.
#[test]
fn page_pool_blocks() {
    let a = arena("pages", 1 << 20);
    let _in = a.enter();
    let pool = mempool_create_page_pool(2, 2).expect("prealloc");
    assert_eq!(a.bytes_in_use(), 2 * 4 * 4096);
    let p = mempool_alloc(&pool, GFP_KERNEL);
    assert_eq!(p as usize % 4096, 0);
    // SAFETY: the block is 16 KiB, ours until freed.
    unsafe { p.cast::<u8>().write_bytes(0x11, 4 * 4096) };
    // SAFETY: from this pool, freed once.
    unsafe { mempool_free(p, &pool) };
    drop(pool);
    assert_eq!(a.bytes_in_use(), 0);
}

/// KM_SLEEP allocations by others are unaffected by the pool's NORETRY mapping.
#[test]
fn kmem_sleep_outside_the_pool_still_sleeps() {
    let a = arena("sleep", 1 << 20);
    let _in = a.enter();
    let p = kmem_alloc(64, KM_SLEEP);
    assert!(!p.is_null());
    // SAFETY: from kmem_alloc(64), freed once.
    unsafe { kmem_free(p, 64) };
    assert_eq!(a.bytes_in_use(), 0);
}
