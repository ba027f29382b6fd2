//! A thread's slot of an object cache handed to a layer above (`kmem_cache_thread_slot`):
//! it serves as the cache's own fast path does, misses whenever that path would step aside,
//! and the thread's token tells the holder when the pointer may have gone stale.

use ddi_kmem::{
    Arena, Checking, FailurePlan, KM_SLEEP, KmemCache, Response, ThreadSlot, kmem_cache_alloc, kmem_cache_create,
    kmem_cache_destroy, kmem_cache_free, kmem_cache_thread_slot, kmem_thread_token,
};
use std::ffi::c_void;
use std::ptr::NonNull;
use std::sync::Mutex;

/// Held by the tests that pop through a slot and by the one that arms injection: armed
/// anywhere, it makes every slot miss (see `failure_injection_makes_the_thread_slot_miss`).
static INJECTION: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    INJECTION.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn plain(name: &str) -> Arena {
    Arena::builder().name(name).checking(Checking::OFF).response(Response::Report).build()
}

fn cache(name: &str) -> KmemCache {
    kmem_cache_create(name, 96, 8, None, None, None, std::ptr::null_mut(), std::ptr::null_mut(), 0)
}

/// Allocates `n` buffers from `cp` and frees them, so that the thread's magazine holds rounds.
fn warm(cp: &KmemCache, n: usize) {
    let held: Vec<*mut c_void> = (0..n).map(|_| kmem_cache_alloc(cp, KM_SLEEP)).collect();
    for p in held {
        // SAFETY: allocated just above from `cp`, freed once.
        unsafe { kmem_cache_free(cp, p) };
    }
}

fn is_empty_slot(s: NonNull<ThreadSlot>) -> bool {
    std::ptr::eq(s.as_ptr(), ThreadSlot::empty())
}

#[test]
fn a_thread_slot_serves_rounds_and_takes_them_back_with_exact_statistics() {
    let _serial = serial();
    let arena = plain("slot-serves");
    arena.run(|| {
        let cp = cache("slot-serves");
        let token = kmem_thread_token();
        let slot = kmem_cache_thread_slot(&cp);
        assert!(!is_empty_slot(slot), "a plain arena's cache has a per-thread slot");
        // SAFETY: asked for on this thread, the token unchanged (asserted below).
        let slot = unsafe { slot.as_ref() };
        // A fresh slot has no magazine yet: it misses, and the cache's own path refills.
        // SAFETY: as above.
        assert!(unsafe { slot.alloc() }.is_null());
        warm(&cp, 4);
        assert_eq!(kmem_thread_token(), token, "allocations do not change the token");
        let before = cp.stats();
        // SAFETY: as above.
        let p = unsafe { slot.alloc() };
        assert!(!p.is_null());
        assert_eq!(cp.stats().buffers_in_use, 1);
        assert_eq!(cp.stats().allocations, before.allocations + 1, "a pop through the slot is counted");
        // SAFETY: `p` came from `cp` through the slot and is freed once.
        assert!(unsafe { slot.free(NonNull::new(p).unwrap()) });
        // The same buffer comes back first (LIFO), through the cache's own path too.
        let q = kmem_cache_alloc(&cp, KM_SLEEP);
        assert_eq!(q, p);
        // SAFETY: as above.
        unsafe { kmem_cache_free(&cp, q) };
        assert_eq!(cp.stats().buffers_in_use, 0);
        assert_eq!(kmem_thread_token(), token);
        kmem_cache_destroy(cp);
    });
    assert_eq!(arena.bytes_in_use(), 0);
}

#[test]
fn the_token_changes_when_the_thread_switches_arenas_or_lets_a_cache_go() {
    std::thread::spawn(|| {
        let (a, b) = (plain("token-a"), plain("token-b"));
        let t0 = kmem_thread_token();
        let ga = a.enter();
        let t1 = kmem_thread_token();
        assert_ne!(t1, t0, "entering an arena");
        let cp = cache("token");
        let _ = kmem_cache_thread_slot(&cp);
        warm(&cp, 3);
        assert_eq!(kmem_thread_token(), t1, "creating a cache or a slot, allocating, freeing");
        let t2 = b.run(|| {
            let t = kmem_thread_token();
            assert_ne!(t, t1, "entering another arena");
            t
        });
        let t3 = kmem_thread_token();
        assert!(t3 != t2 && t3 != t1, "leaving it");
        kmem_cache_destroy(cp);
        let t4 = kmem_thread_token();
        assert_ne!(t4, t3, "letting a cache go (its slot is released)");
        drop(ga);
        assert_ne!(kmem_thread_token(), t4, "leaving the arena");
        assert_eq!((a.bytes_in_use(), b.bytes_in_use()), (0, 0));
    })
    .join()
    .unwrap();
}

#[test]
fn caches_without_a_per_thread_fast_path_get_the_empty_slot() {
    let checking = Arena::builder().name("slot-checking").checking(Checking::FULL).response(Response::Report).build();
    let budget = Arena::builder().name("slot-budget").checking(Checking::OFF).budget(1 << 20).build();
    for arena in [&checking, &budget] {
        arena.run(|| {
            let cp = cache("no-fast-path");
            warm(&cp, 2);
            let slot = kmem_cache_thread_slot(&cp);
            assert!(is_empty_slot(slot), "{}", arena.name());
            // SAFETY: the empty slot may be used anywhere.
            let slot = unsafe { slot.as_ref() };
            // SAFETY: as above.
            assert!(unsafe { slot.alloc() }.is_null());
            let p = kmem_cache_alloc(&cp, KM_SLEEP);
            // SAFETY: the empty slot refuses without touching `p`, which came from `cp`.
            assert!(!unsafe { slot.free(NonNull::new(p).unwrap()) });
            // SAFETY: `p` came from `cp`, freed once.
            unsafe { kmem_cache_free(&cp, p) };
            assert_eq!(cp.stats().buffers_in_use, 0);
            kmem_cache_destroy(cp);
        });
        assert_eq!(arena.bytes_in_use(), 0, "{}", arena.name());
    }
}

#[test]
fn failure_injection_makes_the_thread_slot_miss() {
    let _serial = serial();
    let arena = plain("slot-inject");
    arena.run(|| {
        let cp = cache("slot-inject");
        let slot = kmem_cache_thread_slot(&cp);
        warm(&cp, 4);
        // SAFETY: asked for on this thread; the token has not changed since.
        let slot = unsafe { slot.as_ref() };
        arena.inject(FailurePlan::Always);
        // SAFETY: as above.
        assert!(unsafe { slot.alloc() }.is_null(), "the magazine has rounds, but injection is armed");
        arena.clear_injection();
        // SAFETY: as above.
        let p = unsafe { slot.alloc() };
        assert!(!p.is_null());
        // SAFETY: from `cp`, freed once.
        unsafe { kmem_cache_free(&cp, p) };
        kmem_cache_destroy(cp);
    });
    assert_eq!(arena.bytes_in_use(), 0);
}
