//! mempool_resize: shrink, grow, zero, and resizing while other threads allocate.

mod common;

use common::{arena, iters};
use ddi_kmem::FailurePlan;
use ddi_mempool::{GFP_ATOMIC, GFP_KERNEL, Mempool, MempoolError, mempool_alloc, mempool_free, mempool_resize};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

#[test]
fn shrink_frees_surplus_at_once() {
    let a = arena("shrink", 1 << 20);
    let _in = a.enter();
    let pool = Mempool::builder(4).kmalloc(64).expect("prealloc");
    assert_eq!(a.bytes_in_use(), 4 * 64);
    let out = mempool_alloc(&pool, GFP_KERNEL); // from kmem: the reserve is untouched
    mempool_resize(&pool, 2).expect("shrink");
    assert_eq!((pool.min_nr(), pool.curr_nr()), (2, 2));
    assert_eq!(a.bytes_in_use(), 2 * 64 + 64);
    // SAFETY: from this pool, freed once; the reserve is full so it goes to kmem.
    unsafe { mempool_free(out, &pool) };
    assert_eq!(a.bytes_in_use(), 2 * 64);
    drop(pool);
    assert_eq!(a.bytes_in_use(), 0);
}

#[test]
fn grow_is_best_effort_and_frees_fill_the_rest() {
    let a = arena("grow", 1 << 20);
    let _in = a.enter();
    let pool = Mempool::builder(1).kmalloc(64).expect("prealloc");
    mempool_resize(&pool, 3).expect("grow");
    assert_eq!((pool.min_nr(), pool.curr_nr()), (3, 3));
    // The grown reserve serves atomic callers while the backend fails, and frees refill it.
    a.inject(FailurePlan::Always);
    let held: Vec<_> = (0..3).map(|_| mempool_alloc(&pool, GFP_ATOMIC)).collect();
    assert!(held.iter().all(|p| !p.is_null()));
    assert_eq!(pool.curr_nr(), 0);
    a.clear_injection();
    for p in held {
        // SAFETY: from this pool, freed once each.
        unsafe { mempool_free(p, &pool) };
    }
    assert_eq!(pool.curr_nr(), 3);
    assert_eq!(mempool_resize(&pool, 0), Err(MempoolError::ZeroMinimum));
    assert_eq!(pool.min_nr(), 3);
    drop(pool);
    assert_eq!(a.bytes_in_use(), 0);
}

#[test]
fn grow_with_failing_backend_is_filled_by_frees() {
    let fail = std::sync::Arc::new(AtomicBool::new(false));
    let fail2 = fail.clone();
    let a = arena("grow-fail", 1 << 20);
    let _in = a.enter();
    let arena2 = a.clone();
    let pool = Mempool::builder(1)
        .create(
            move |gfp, _| {
                if fail2.load(Ordering::SeqCst) {
                    std::ptr::null_mut()
                } else {
                    arena2.alloc(64, gfp.km_flags()).cast()
                }
            },
            {
                let arena3 = a.clone();
                // SAFETY: only this pool's 64-byte elements from `arena3` reach here.
                move |e, _| unsafe { arena3.free(e.cast(), 64) }
            },
            std::ptr::null_mut(),
        )
        .expect("prealloc");
    let x = mempool_alloc(&pool, GFP_KERNEL);
    let y = mempool_alloc(&pool, GFP_KERNEL);
    fail.store(true, Ordering::SeqCst);
    mempool_resize(&pool, 3).expect("best effort");
    assert_eq!((pool.min_nr(), pool.curr_nr()), (3, 1));
    // SAFETY: from this pool, freed once each; both refill the reserve.
    unsafe { mempool_free(x, &pool) };
    // SAFETY: as above.
    unsafe { mempool_free(y, &pool) };
    assert_eq!(pool.curr_nr(), 3);
    fail.store(false, Ordering::SeqCst);
    drop(pool);
    assert_eq!(a.bytes_in_use(), 0);
}

/// Resize up and down while other threads allocate with failing backends: nobody hangs,
/// nothing leaks, and the reserve ends at the last size.
#[test]
fn resize_while_others_allocate() {
    let threads = iters(4, 2);
    let loops = iters(300, 8);
    let a = arena("resize-mt", 1 << 20);
    let _in = a.enter();
    let pool = Mempool::builder(2).timeout(Duration::from_millis(10)).kmalloc(96).expect("prealloc");
    a.inject(FailurePlan::EveryNth(2));
    let done = AtomicBool::new(false);
    std::thread::scope(|s| {
        let mut hs = Vec::new();
        for t in 0..threads {
            let (pool, a) = (&pool, &a);
            hs.push(s.spawn(move || {
                let _in = a.enter();
                for i in 0..loops {
                    let gfp = if (i + t) % 3 == 0 { GFP_ATOMIC } else { GFP_KERNEL };
                    let p = mempool_alloc(pool, gfp);
                    if gfp == GFP_KERNEL {
                        assert!(!p.is_null());
                    }
                    // SAFETY: from this pool (or NULL), freed once.
                    unsafe { mempool_free(p, pool) };
                }
            }));
        }
        let (pool, done_ref) = (&pool, &done);
        let r = s.spawn(move || {
            let mut n = 1;
            while !done_ref.load(Ordering::SeqCst) {
                n = n % 5 + 1;
                mempool_resize(pool, n).expect("resize");
                std::thread::yield_now();
            }
            mempool_resize(pool, 3).expect("resize");
        });
        for h in hs {
            h.join().expect("allocator");
        }
        done.store(true, Ordering::SeqCst);
        r.join().expect("resizer");
    });
    a.clear_injection();
    assert_eq!(pool.outstanding(), 0);
    assert_eq!(pool.min_nr(), 3);
    assert!(pool.curr_nr() <= 3);
    drop(pool);
    assert_eq!(a.bytes_in_use(), 0);
}
