//! The magazine fast path of plain arenas (no checking, no budget): it serves only what it
//! may, steps aside for everything else, follows the thread from arena to arena, and keeps
//! the statistics exact.

use ddi_kmem::{
    Arena, CACHE_LINE, Checking, FailurePlan, KM_CACHEALIGN, KM_NOSLEEP, KM_SLEEP, KmemCache, KmemError, Response,
    interrupt, kmem_alloc, kmem_cache_alloc, kmem_cache_create, kmem_cache_free, kmem_free, kmem_zalloc,
};
use std::ffi::c_void;

fn plain(name: &str) -> Arena {
    Arena::builder().name(name).checking(Checking::OFF).response(Response::Report).build()
}

fn free(p: *mut c_void, size: usize) {
    // SAFETY: every caller passes a live buffer of the current arena and its allocation size.
    unsafe { kmem_free(p, size) };
}

fn cache(name: &str, size: usize) -> KmemCache {
    kmem_cache_create(name, size, 8, None, None, None, std::ptr::null_mut(), std::ptr::null_mut(), 0)
}

fn cache_free(cp: &KmemCache, p: *mut c_void) {
    // SAFETY: every caller passes a live buffer of `cp`.
    unsafe { kmem_cache_free(cp, p) };
}

/// Warms the thread's fast path in the current arena: one allocation and free of `size`.
fn warm(size: usize) {
    let p = kmem_alloc(size, KM_SLEEP);
    assert!(!p.is_null());
    free(p, size);
}

#[test]
fn the_fast_path_follows_the_thread_from_arena_to_arena() {
    let (a, b) = (plain("switch-a"), plain("switch-b"));
    let ga = a.enter();
    warm(64);
    let pa = kmem_alloc(64, KM_SLEEP);
    {
        let _gb = b.enter();
        let pb = kmem_alloc(64, KM_SLEEP);
        assert_ne!(pa, pb);
        assert_eq!((a.stats().class(64).unwrap().buffers_in_use, b.stats().class(64).unwrap().buffers_in_use), (1, 1));
        free(pb, 64);
        // A's buffer is not B's to take: B's next 64-byte buffer is its own.
        let pb2 = kmem_alloc(64, KM_SLEEP);
        assert_eq!(pb2, pb);
        free(pb2, 64);
        // Entering A again on top of B makes A current, and its magazines with it.
        a.run(|| {
            let q = kmem_alloc(64, KM_SLEEP);
            assert_eq!(a.stats().class(64).unwrap().buffers_in_use, 2);
            free(q, 64);
        });
        assert_eq!(b.stats().class(64).unwrap().buffers_in_use, 0);
    }
    // Back in A: its buffer goes back to A's magazines.
    free(pa, 64);
    drop(ga);
    for (arena, allocs) in [(&a, 3), (&b, 2)] {
        let s = arena.stats().class(64).cloned().unwrap();
        assert_eq!((s.allocations, s.frees, s.buffers_in_use), (allocs, allocs, 0), "{}", arena.name());
        assert_eq!(arena.errors(), vec![]);
    }
    assert_eq!(a.bytes_in_use(), 0);
    assert_eq!(b.bytes_in_use(), 0);
}

#[test]
fn the_default_arena_gets_the_fast_path_back_after_an_arena_is_left() {
    let a = plain("left");
    a.run(|| warm(128));
    // On the default arena now; whatever its checking, its buffers are its own.
    let before = Arena::default_arena().stats().class(128).unwrap().allocations;
    warm(128);
    assert_eq!(Arena::default_arena().stats().class(128).unwrap().allocations, before + 1);
    assert_eq!(a.stats().class(128).unwrap().allocations, 1);
    assert_eq!(a.bytes_in_use(), 0);
}

#[test]
fn injection_armed_after_the_fast_path_is_warm_still_fails_allocations() {
    let a = plain("inject-warm");
    a.run(|| {
        warm(64);
        a.inject(FailurePlan::Always);
        assert!(kmem_alloc(64, KM_NOSLEEP).is_null(), "the fast path stepped aside for injection");
        assert!(kmem_zalloc(64, KM_NOSLEEP).is_null());
        let p = kmem_alloc(64, KM_SLEEP);
        assert!(!p.is_null(), "KM_SLEEP is never failed by injection");
        free(p, 64);
        a.clear_injection();
        let p = kmem_alloc(64, KM_NOSLEEP);
        assert!(!p.is_null());
        free(p, 64);
    });
    let s = a.stats();
    assert_eq!((s.injected, s.failures), (2, 2));
    assert_eq!(a.bytes_in_use(), 0);
}

#[test]
fn km_sleep_in_interrupt_context_is_reported_with_a_warm_fast_path() {
    let a = plain("intr-warm");
    a.run(|| {
        warm(64);
        let p = interrupt(|| kmem_alloc(64, KM_SLEEP));
        assert!(!p.is_null());
        free(p, 64);
        let q = interrupt(|| kmem_alloc(64, KM_NOSLEEP));
        assert!(!q.is_null(), "KM_NOSLEEP is fine in interrupt context");
        interrupt(|| free(q, 64));
    });
    assert_eq!(a.take_errors(), vec![KmemError::SleepInInterrupt { call: "kmem_alloc", size: 64 }]);
    assert_eq!(a.bytes_in_use(), 0);
}

#[test]
fn a_small_cachealign_buffer_returns_to_the_cache_line_class_with_a_warm_fast_path() {
    let a = plain("cachealign-warm");
    a.run(|| {
        warm(16);
        warm(64);
        let p = kmem_alloc(16, KM_SLEEP | KM_CACHEALIGN);
        assert_eq!(p as usize % CACHE_LINE, 0);
        assert_eq!(a.stats().class(CACHE_LINE).unwrap().buffers_in_use, 1);
        // Freed with its requested size: it must go back to the cache-line class, not the
        // 32-byte one.
        free(p, 16);
        let s = a.stats();
        assert_eq!(s.class(CACHE_LINE).unwrap().buffers_in_use, 0);
        assert_eq!(s.class(32).unwrap().buffers_in_use, 0);
        // Plain small buffers still come and go.
        let q = kmem_alloc(16, KM_SLEEP);
        assert_eq!(a.stats().class(32).unwrap().buffers_in_use, 1);
        free(q, 16);
    });
    let s = a.stats();
    assert_eq!((s.allocations, s.frees, s.errors), (4, 4, 0));
    assert_eq!(a.bytes_in_use(), 0);
}

#[test]
fn kmem_zalloc_clears_a_reused_round() {
    let a = plain("zalloc-warm");
    a.run(|| {
        let p = kmem_alloc(100, KM_SLEEP).cast::<u8>();
        // SAFETY: a fresh buffer of the 128-byte class.
        unsafe { p.write_bytes(0xa5, 128) };
        free(p.cast(), 100);
        let z = kmem_zalloc(100, KM_SLEEP).cast::<u8>();
        assert_eq!(z, p, "the round just freed comes back first");
        // SAFETY: the extent of a 100-byte request is 128 bytes, all cleared natively.
        assert!(unsafe { std::slice::from_raw_parts(z, 128) }.iter().all(|&b| b == 0));
        free(z.cast(), 100);
    });
    assert_eq!(a.bytes_in_use(), 0);
}

#[test]
fn arena_methods_take_the_fast_path_only_for_the_current_arena() {
    let (a, b) = (plain("method-a"), plain("method-b"));
    let _g = a.enter();
    warm(64);
    // `b` is not current: its methods still allocate from `b`.
    let p = b.alloc(64, KM_SLEEP);
    let q = a.alloc(64, KM_SLEEP);
    assert_eq!((a.stats().class(64).unwrap().buffers_in_use, b.stats().class(64).unwrap().buffers_in_use), (1, 1));
    // SAFETY: `p` came from `b` with 64 bytes; freed once, in its arena.
    unsafe { b.free(p, 64) };
    // SAFETY: `q` came from `a` with 64 bytes; freed once, in its arena.
    unsafe { a.free(q, 64) };
    assert_eq!(b.stats().class(64).unwrap().frees, 1);
    assert_eq!(a.stats().class(64).unwrap().frees, 2);
    assert_eq!(a.bytes_in_use(), 0);
    assert_eq!(b.bytes_in_use(), 0);
}

/// A buffer pointer moved to another thread (a kmem buffer may be freed on any thread).
#[derive(Clone, Copy)]
struct Buf(*mut c_void);
// SAFETY: the pointer is only moved; each buffer is freed once, by whoever holds it.
unsafe impl Send for Buf {}

#[test]
fn statistics_stay_exact_across_threads_magazines_and_the_depot() {
    let a = plain("exact");
    let rounds = a.class_cache_stats(64).unwrap().magazine_rounds;
    let n = 3 * rounds + 7;
    // One thread allocates, another frees (into its own magazines and the depot), both exit.
    let ptrs = std::thread::scope(|s| {
        s.spawn(|| a.run(|| (0..n).map(|_| Buf(kmem_alloc(64, KM_SLEEP))).collect::<Vec<_>>())).join().unwrap()
    });
    let c = a.class_cache_stats(64).unwrap();
    assert_eq!((c.allocations, c.frees, c.buffers_in_use), (n as u64, 0, n));
    let half = n / 2;
    std::thread::spawn({
        let a = a.clone();
        let ptrs = ptrs[..half].to_vec();
        move || {
            a.run(|| ptrs.iter().for_each(|p| free(p.0, 64)));
        }
    })
    .join()
    .unwrap();
    // `join` waited for the thread's exit: its magazines are back in the depot.
    let c = a.class_cache_stats(64).unwrap();
    assert_eq!((c.allocations, c.frees, c.buffers_in_use), (n as u64, half as u64, n - half));
    assert!(c.depot_full >= 1, "{c:?}");
    a.run(|| ptrs[half..].iter().for_each(|p| free(p.0, 64)));
    let c = a.class_cache_stats(64).unwrap();
    assert_eq!((c.allocations, c.frees, c.buffers_in_use), (n as u64, n as u64, 0));
    let s = a.stats();
    assert_eq!((s.allocations, s.frees), (n as u64, n as u64));
    assert_eq!(a.bytes_in_use(), 0);
}

#[test]
fn object_caches_whose_ids_collide_in_the_direct_mapped_slots_keep_apart() {
    let a = plain("collide");
    a.run(|| {
        // More caches than the thread's direct-mapped entries: some ids share an entry.
        let caches: Vec<_> = (0..40).map(|i| cache(&format!("c{i}"), 48 + 8 * (i % 4))).collect();
        for round in 0..3 {
            let held: Vec<_> = caches.iter().map(|c| (c, kmem_cache_alloc(c, KM_SLEEP))).collect();
            for (c, p) in &held {
                assert!(!p.is_null());
                assert_eq!(c.stats().buffers_in_use, 1, "round {round}: {}", c.name());
            }
            held.into_iter().for_each(|(c, p)| cache_free(c, p));
        }
        for c in &caches {
            let s = c.stats();
            assert_eq!((s.allocations, s.frees, s.buffers_in_use), (3, 3, 0), "{}", c.name());
            assert_eq!(s.slab_buffers, 64 * 1024 / s.buf_size, "one slab: each cache reused its own round");
        }
    });
    assert_eq!(a.bytes_in_use(), 0);
}

#[test]
fn a_cache_used_from_a_thread_outside_its_arena_keeps_its_buffers() {
    let (a, b) = (plain("home"), plain("elsewhere"));
    let cp = a.run(|| cache("home-cache", 256));
    // Allocated while another arena is current: the cache's own arena still serves.
    let p = b.run(|| kmem_cache_alloc(&cp, KM_SLEEP));
    assert_eq!(a.bytes_in_use(), 256);
    assert_eq!(b.bytes_in_use(), 0);
    b.run(|| cache_free(&cp, p));
    let s = cp.stats();
    assert_eq!((s.allocations, s.frees, s.buffers_in_use), (1, 1, 0));
    drop(cp);
    assert_eq!(a.bytes_in_use(), 0);
    assert_eq!(b.bytes_in_use(), 0);
}

#[test]
fn a_thread_exiting_after_its_arena_was_dropped_returns_everything() {
    let a = plain("gone");
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<()>();
    let t = std::thread::spawn({
        let a = a.clone();
        move || {
            a.run(|| warm(64));
            drop(a);
            ready_tx.send(()).unwrap();
            rx.recv().unwrap();
            // The arena is gone; a later arena's allocation prunes this thread's old table.
            let b = plain("after");
            b.run(|| warm(64));
            assert_eq!(b.bytes_in_use(), 0);
        }
    });
    ready_rx.recv().unwrap();
    // The thread holds a round of `a` in its magazines: not in use, so no leak report.
    assert_eq!(a.bytes_in_use(), 0);
    assert_eq!(a.class_cache_stats(64).unwrap().depot_full, 0);
    drop(a);
    tx.send(()).unwrap();
    t.join().unwrap();
}

#[test]
fn every_size_takes_the_magazines_of_the_class_that_serves_it() {
    // The fast path maps a size to its slot through a per-bucket table (`ilog2(size - 1)`):
    // each allocation must be counted by the smallest class that holds it, at every
    // power-of-two boundary, and by no other class.
    let a = plain("size-to-slot");
    let _g = a.enter();
    warm(64);
    let counts = || -> Vec<(usize, u64, usize)> {
        let st = a.stats();
        st.classes.iter().filter_map(|c| Some((c.size?, c.allocations, c.buffers_in_use))).collect()
    };
    let largest = counts().last().expect("classes").0;
    let mut sizes = vec![1, 2, 7, 8, 9];
    for shift in 4..=largest.ilog2() {
        let p = 1usize << shift;
        sizes.extend([p - 1, p, p + 1]);
    }
    sizes.retain(|&s| s <= largest);
    for size in sizes {
        let before = counts();
        let serving = before.iter().position(|c| c.0 >= size).expect("a class holds it");
        let p = kmem_alloc(size, KM_SLEEP);
        assert!(!p.is_null(), "kmem_alloc({size})");
        let after = counts();
        for (ix, (b, n)) in before.iter().zip(&after).enumerate() {
            let want = if ix == serving { (b.1 + 1, b.2 + 1) } else { (b.1, b.2) };
            assert_eq!((n.1, n.2), want, "kmem_alloc({size}): class of {} bytes", b.0);
        }
        free(p, size);
        assert_eq!(a.bytes_in_use(), 0, "kmem_free(.., {size})");
    }
    assert!(kmem_alloc(0, KM_SLEEP).is_null(), "kmem_alloc(0) is NULL natively");
}
