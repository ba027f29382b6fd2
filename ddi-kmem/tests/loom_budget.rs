//! A loom model of the budget's sleep/wake protocol (`budget.rs`), through the public API.
//!
//! Built only with `--cfg loom`, which swaps loom's primitives into the crate (`sync.rs`):
//!
//! ```text
//! RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=/work/target-loom cargo test -p ddi-kmem --test loom_budget -- loom
//! ```
//!
//! Under loom a timed condition-variable wait is an untimed one, so a lost wake-up shows as a
//! deadlock that loom reports. The arenas use `Arena::alloc` / `Arena::free` (no thread-local
//! arena, no process default) and no checking, to keep the state space small.
#![cfg(loom)]

use ddi_kmem::{Arena, Checking, KM_NOSLEEP, KM_SLEEP, Response};

fn full_arena(checking: Checking) -> (Arena, *mut u8) {
    let a = Arena::builder().name("loom").budget(64).checking(checking).response(Response::Panic).build();
    let p = a.alloc(64, KM_NOSLEEP);
    assert!(!p.is_null());
    assert!(a.alloc(1, KM_NOSLEEP).is_null(), "the budget is full");
    (a, p)
}

/// One thread sleeps in `KM_SLEEP` on a full budget while another frees: the sleeper is always
/// woken and served, and the accounting ends at zero.
#[test]
fn loom_km_sleep_is_woken_by_a_concurrent_free() {
    loom::model(|| {
        let (a, p) = full_arena(Checking::OFF);
        let sleeper = {
            let a = a.clone();
            loom::thread::spawn(move || {
                let q = a.alloc(64, KM_SLEEP);
                assert!(!q.is_null(), "KM_SLEEP returned NULL");
                // SAFETY: `q` is a live 64-byte buffer of `a`, freed once.
                unsafe { a.free(q, 64) };
            })
        };
        // SAFETY: `p` is a live 64-byte buffer of `a`, freed once.
        unsafe { a.free(p, 64) };
        sleeper.join().expect("sleeper");
        assert_eq!(a.bytes_in_use(), 0);
        let s = a.stats();
        assert_eq!((s.allocations, s.frees, s.failures), (2, 2, 1));
    });
}

/// The free happens on the spawned thread and the main thread sleeps.
#[test]
fn loom_km_sleep_on_the_main_thread_is_woken_by_a_free_on_another() {
    loom::model(|| {
        let (a, p) = full_arena(Checking::OFF);
        let p = SendPtr(p);
        let freer = {
            let a = a.clone();
            loom::thread::spawn(move || {
                let SendPtr(p) = p;
                // SAFETY: `p` is a live 64-byte buffer of `a`, freed once.
                unsafe { a.free(p, 64) };
            })
        };
        let q = a.alloc(32, KM_SLEEP);
        assert!(!q.is_null(), "KM_SLEEP returned NULL");
        freer.join().expect("freer");
        // SAFETY: `q` is a live 32-byte buffer of `a`, freed once.
        unsafe { a.free(q, 32) };
        assert_eq!(a.bytes_in_use(), 0);
    });
}

/// A buffer pointer moved to the freeing thread.
struct SendPtr(*mut u8);

// SAFETY: a kmem buffer may be freed from any thread; the pointer is only moved.
unsafe impl Send for SendPtr {}
