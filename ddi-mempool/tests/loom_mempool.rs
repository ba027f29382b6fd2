//! loom models of the pool's free/alloc hand-off, running the real `Mempool` code over loom's
//! primitives (see `src/sync.rs`). The backends are plain closures over fake element
//! addresses, so ddi-kmem is not involved. One-element reserves keep the state space small.
//!
//! Run: `RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=/work/target-loom-mp cargo test -p ddi-mempool --release loom`
#![cfg(loom)]

use ddi_mempool::{GFP_KERNEL, Mempool};
use loom::sync::Arc;
use loom::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};
use std::ffi::c_void;

/// A fake element address (never dereferenced: the pool does not poison custom pools).
fn element(n: usize) -> *mut c_void {
    std::ptr::without_provenance_mut(0x1000 * n)
}

/// A pool of one element whose backend always fails, counting calls to `free_fn`.
fn starved_pool(frees: Arc<AtomicUsize>) -> Mempool {
    let made = std::sync::atomic::AtomicUsize::new(0);
    let mut pool = Mempool::new();
    Mempool::builder(1)
        .init(
            &mut pool,
            move |_gfp, _data| {
                // Only the preallocation succeeds.
                if made.fetch_add(1, std::sync::atomic::Ordering::Relaxed) == 0 {
                    element(1)
                } else {
                    std::ptr::null_mut()
                }
            },
            move |_e, _data| {
                frees.fetch_add(1, Ordering::Relaxed);
            },
            std::ptr::null_mut(),
        )
        .expect("prealloc");
    pool
}

/// A sleeping allocator on an empty reserve is woken by a free on another thread: no lost
/// wake-up (loom reports a deadlock if the waiter could sleep through the free; under loom
/// the 5 s timeout does not exist).
#[test]
fn loom_free_wakes_sleeping_alloc() {
    loom::model(|| {
        let frees = Arc::new(AtomicUsize::new(0));
        let pool = Arc::new(starved_pool(frees.clone()));
        let held = pool.alloc(GFP_KERNEL);
        assert_eq!(held, element(1));
        let p2 = pool.clone();
        let waiter = loom::thread::spawn(move || p2.alloc(GFP_KERNEL) as usize);
        let held_addr = held as usize;
        let p3 = pool.clone();
        let freer = loom::thread::spawn(move || {
            // SAFETY: the element came from this pool and is freed once.
            unsafe { p3.free(held_addr as *mut c_void) };
        });
        freer.join().unwrap();
        let got = waiter.join().unwrap();
        assert_eq!(got, element(1) as usize);
        assert_eq!(frees.load(Ordering::Relaxed), 0, "the free refilled the reserve");
        assert_eq!(pool.curr_nr(), 0);
        // SAFETY: as above.
        unsafe { pool.free(got as *mut c_void) };
        assert_eq!(pool.curr_nr(), 1);
    });
}

/// The kernel's barrier comment: one thread allocates from the reserve and publishes the
/// pointer with a Relaxed store; another spins on it and frees. The free must see the
/// reserve's decrement and refill it, never hand the element to `free_fn`.
#[test]
fn loom_free_sees_allocation_of_unsynchronized_element() {
    loom::model(|| {
        let frees = Arc::new(AtomicUsize::new(0));
        let pool = Arc::new(starved_pool(frees.clone()));
        let slot = Arc::new(AtomicPtr::new(std::ptr::null_mut::<c_void>()));
        let (p1, s1) = (pool.clone(), slot.clone());
        let allocator = loom::thread::spawn(move || {
            let p = p1.alloc(GFP_KERNEL);
            s1.store(p, Ordering::Relaxed);
        });
        let (p2, s2) = (pool.clone(), slot.clone());
        let freer = loom::thread::spawn(move || {
            let p = loop {
                let p = s2.load(Ordering::Relaxed);
                if !p.is_null() {
                    break p;
                }
                loom::thread::yield_now();
            };
            // SAFETY: the element came from this pool and is freed once.
            unsafe { p2.free(p) };
        });
        allocator.join().unwrap();
        freer.join().unwrap();
        assert_eq!(frees.load(Ordering::Relaxed), 0, "free_fn must not get a reserve element back");
        assert_eq!(pool.curr_nr(), 1);
    });
}

/// Two frees racing to refill a one-element reserve: exactly one refills, the other goes to
/// `free_fn` (the re-check under the lock).
#[test]
fn loom_racing_frees_refill_once() {
    loom::model(|| {
        let frees = Arc::new(AtomicUsize::new(0));
        let pool = Arc::new(starved_pool(frees.clone()));
        let a = pool.alloc(GFP_KERNEL) as usize;
        let b = element(2) as usize; // another element of the same backend, made elsewhere
        let handles: Vec<_> = [a, b]
            .into_iter()
            .map(|e| {
                let p = pool.clone();
                // SAFETY: each element is freed once.
                loom::thread::spawn(move || unsafe { p.free(e as *mut c_void) })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        assert_eq!(pool.curr_nr(), 1);
        assert_eq!(frees.load(Ordering::Relaxed), 1);
    });
}
