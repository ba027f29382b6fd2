//! The timed retry: a sleeping allocation returns when `alloc_fn` starts succeeding again,
//! even though nobody frees an element.

mod common;

use common::{SendPtr, arena};
use ddi_kmem::FailurePlan;
use ddi_mempool::{GFP_KERNEL, Mempool, mempool_alloc, mempool_free};
use std::sync::Barrier;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

#[test]
fn waiter_returns_when_backend_recovers_without_frees() {
    let a = arena("retry", 1 << 20);
    let _in = a.enter();
    let pool = Mempool::builder(1).timeout(Duration::from_millis(5)).kmalloc(64).expect("prealloc");
    a.inject(FailurePlan::Always);
    let held = mempool_alloc(&pool, GFP_KERNEL); // empties the reserve
    assert!(!held.is_null());
    assert_eq!(pool.curr_nr(), 0);
    let started = Barrier::new(2);
    let got = std::thread::scope(|s| {
        let h = s.spawn(|| {
            let _in = a.enter();
            started.wait();
            SendPtr(mempool_alloc(&pool, GFP_KERNEL))
        });
        started.wait();
        // Let the waiter reach its wait (not required for correctness), then let the backend
        // succeed again; nobody frees.
        std::thread::sleep(Duration::from_millis(20));
        a.clear_injection();
        h.join().expect("waiter").0
    });
    assert!(!got.is_null());
    assert_eq!(pool.curr_nr(), 0, "the waiter was served by alloc_fn, not by a free");
    // SAFETY: both came from this pool, freed once each.
    unsafe { mempool_free(got, &pool) };
    // SAFETY: as above.
    unsafe { mempool_free(held, &pool) };
    assert_eq!(pool.curr_nr(), 1);
    drop(pool);
    assert_eq!(a.bytes_in_use(), 0);
}

/// A custom backend sees the masks of the algorithm: first without reclaim and I/O, then the
/// caller's mask, always with NOMEMALLOC | NORETRY | NOWARN; after a wait, the full mask.
#[test]
fn custom_backend_sees_the_linux_mask_sequence() {
    use ddi_mempool::{__GFP_DIRECT_RECLAIM, __GFP_IO, __GFP_NOMEMALLOC, __GFP_NORETRY, __GFP_NOWARN, Gfp};
    use std::sync::Mutex;
    static SLOT: [u64; 2] = [0; 2];
    let seen = std::sync::Arc::new(Mutex::new(Vec::<Gfp>::new()));
    let fail = std::sync::Arc::new(AtomicBool::new(false));
    let (seen2, fail2) = (seen.clone(), fail.clone());
    let base = std::ptr::from_ref(&SLOT).cast_mut().cast::<std::ffi::c_void>();
    let pool = Mempool::builder(1)
        .timeout(Duration::from_millis(1))
        .create(
            move |gfp, data| {
                seen2.lock().unwrap().push(gfp);
                if fail2.load(Ordering::SeqCst) { std::ptr::null_mut() } else { data }
            },
            |_e, _d| {},
            base,
        )
        .expect("prealloc");
    seen.lock().unwrap().clear();
    fail.store(true, Ordering::SeqCst);
    let e = pool.alloc(GFP_KERNEL); // from the reserve, after one backend try
    assert_eq!(e, base);
    let extra = GFP_KERNEL | __GFP_NOMEMALLOC | __GFP_NORETRY | __GFP_NOWARN;
    assert_eq!(*seen.lock().unwrap(), vec![extra.without(__GFP_DIRECT_RECLAIM | __GFP_IO)]);
    seen.lock().unwrap().clear();
    std::thread::scope(|s| {
        let h = s.spawn(|| pool.alloc(GFP_KERNEL) as usize);
        while seen.lock().unwrap().len() < 3 {
            std::thread::yield_now();
        }
        fail.store(false, Ordering::SeqCst);
        assert_eq!(h.join().unwrap(), base as usize);
    });
    let seen = seen.lock().unwrap();
    assert_eq!(seen[0], extra.without(__GFP_DIRECT_RECLAIM | __GFP_IO));
    assert_eq!(seen[1], extra, "immediate retry with the caller's mask");
    assert!(seen[2..].iter().all(|&g| g == extra), "after each wait, the full mask");
    drop(seen);
    assert_eq!(pool.outstanding(), 2);
    // SAFETY: the backend's elements are all `base`, which free_fn ignores.
    unsafe { pool.free(e) };
    // SAFETY: as above.
    unsafe { pool.free(base) };
}
