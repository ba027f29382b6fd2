//! Object caches and the magazine layer: kmem_cache_create(9F) semantics, magazine and depot
//! invariants, cross-thread frees, thread exit, reap, reclaim under budget pressure.

use ddi_kmem::{
    Arena, Checking, FailurePlan, KM_NOSLEEP, KM_SLEEP, KMC_NODEBUG, KmFlags, KmemError, Response, TypedCache,
    kmem_alloc, kmem_cache_alloc, kmem_cache_create, kmem_cache_destroy, kmem_cache_free, kmem_cache_reap_now,
    kmem_free,
};
use std::ffi::c_void;
use std::sync::atomic::{AtomicUsize, Ordering};

fn arena(name: &str, checking: Checking) -> Arena {
    Arena::builder().name(name).checking(checking).response(Response::Report).build()
}

/// Counts constructor and destructor calls per test (each test owns its statics).
struct Calls {
    ctor: AtomicUsize,
    dtor: AtomicUsize,
}

impl Calls {
    const fn new() -> Self {
        Calls { ctor: AtomicUsize::new(0), dtor: AtomicUsize::new(0) }
    }
    fn get(&self) -> (usize, usize) {
        (self.ctor.load(Ordering::SeqCst), self.dtor.load(Ordering::SeqCst))
    }
}

fn ctor(buf: *mut c_void, private: *mut c_void, _: KmFlags) -> i32 {
    // SAFETY: tests pass a `&'static Calls` as private.
    let calls = unsafe { &*private.cast::<Calls>() };
    calls.ctor.fetch_add(1, Ordering::SeqCst);
    // SAFETY: the buffer holds at least 64 bytes aligned to 8.
    unsafe { buf.cast::<u64>().write(0xc0ffee) };
    0
}

fn dtor(buf: *mut c_void, private: *mut c_void) {
    // SAFETY: tests pass a `&'static Calls` as private.
    let calls = unsafe { &*private.cast::<Calls>() };
    calls.dtor.fetch_add(1, Ordering::SeqCst);
    // SAFETY: a constructed buffer: the first word was written by `ctor`.
    assert_eq!(unsafe { buf.cast::<u64>().read() } & 0xffffff, 0xc0ffee, "destructor sees constructed state");
}

/// A buffer pointer that may move between threads (keeps its provenance; no integer casts).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct Buf(*mut c_void);
// SAFETY: the tests hand a buffer to exactly one other thread at a time.
unsafe impl Send for Buf {}
// SAFETY: as above; shared references only compare the address.
unsafe impl Sync for Buf {}

fn private(calls: &'static Calls) -> *mut c_void {
    std::ptr::from_ref(calls).cast_mut().cast()
}

fn free(cp: &ddi_kmem::KmemCache, p: *mut c_void) {
    // SAFETY: callers pass buffers of `cp` that they no longer use.
    unsafe { kmem_cache_free(cp, p) }
}

#[test]
fn constructor_runs_when_a_buffer_enters_the_cache_not_on_every_allocation() {
    static CALLS: Calls = Calls::new();
    let a = arena("ctor", Checking::OFF);
    a.run(|| {
        let cp =
            kmem_cache_create("obj", 64, 8, Some(ctor), Some(dtor), None, private(&CALLS), std::ptr::null_mut(), 0);
        let p = kmem_cache_alloc(&cp, KM_SLEEP);
        assert_eq!(CALLS.get(), (1, 0));
        // Constructed state is kept across free/alloc: mark it, free, allocate again.
        // SAFETY: a live 64-byte buffer of the cache.
        unsafe { p.cast::<u64>().write(0xab_c0ffee) };
        free(&cp, p);
        let q = kmem_cache_alloc(&cp, KM_SLEEP);
        assert_eq!(q, p, "the magazine hands back the buffer just freed");
        // SAFETY: as above.
        assert_eq!(unsafe { q.cast::<u64>().read() }, 0xab_c0ffee, "state survives free and alloc");
        assert_eq!(CALLS.get(), (1, 0), "no constructor or destructor on a magazine round trip");
        free(&cp, q);
        assert_eq!(cp.stats().buffers_in_use, 0);
        kmem_cache_destroy(cp);
        assert_eq!(CALLS.get(), (1, 1), "destroy destructs what the cache held");
    });
    assert_eq!(a.bytes_in_use(), 0);
    assert_eq!(a.stats().errors, 0);
}

#[test]
fn a_checking_arena_constructs_at_every_allocation_and_destructs_at_every_free() {
    static CALLS: Calls = Calls::new();
    let a = arena("ctor-checked", Checking::FULL);
    a.run(|| {
        let cp =
            kmem_cache_create("obj", 64, 8, Some(ctor), Some(dtor), None, private(&CALLS), std::ptr::null_mut(), 0);
        for _ in 0..3 {
            let p = kmem_cache_alloc(&cp, KM_SLEEP);
            free(&cp, p);
        }
        assert_eq!(CALLS.get(), (3, 3));
        kmem_cache_destroy(cp);
    });
    assert_eq!(a.bytes_in_use(), 0);
}

#[test]
fn a_failing_constructor_makes_alloc_return_null_even_with_km_sleep() {
    fn refuse(_: *mut c_void, _: *mut c_void, _: KmFlags) -> i32 {
        -1
    }
    for checking in [Checking::OFF, Checking::FULL] {
        let a = arena("ctor-fail", checking);
        a.run(|| {
            let cp = kmem_cache_create(
                "obj",
                32,
                0,
                Some(refuse),
                None,
                None,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                0,
            );
            assert!(kmem_cache_alloc(&cp, KM_SLEEP).is_null());
            assert_eq!(cp.stats().failures, 1);
            assert_eq!(cp.stats().allocations, 0);
        });
        assert_eq!(a.bytes_in_use(), 0, "{checking:?}");
    }
}

#[test]
fn alignment_and_size_are_as_asked() {
    for checking in [Checking::OFF, Checking::FULL] {
        let a = arena("align", checking);
        a.run(|| {
            let cp = kmem_cache_create("odd", 100, 64, None, None, None, std::ptr::null_mut(), std::ptr::null_mut(), 0);
            assert_eq!(cp.buf_size(), 128);
            let ps: Vec<_> = (0..10).map(|_| kmem_cache_alloc(&cp, KM_NOSLEEP)).collect();
            assert!(ps.iter().all(|p| p.addr() % 64 == 0));
            ps.into_iter().for_each(|p| free(&cp, p));
        });
        assert_eq!(a.bytes_in_use(), 0);
    }
}

#[test]
#[should_panic(expected = "kmem_cache_create: bad alignment 24")]
fn a_non_power_of_two_alignment_panics_as_illumos_does() {
    let _ = kmem_cache_create("bad", 64, 24, None, None, None, std::ptr::null_mut(), std::ptr::null_mut(), 0);
}

#[test]
fn destroy_with_buffers_outstanding_is_reported_and_keeps_them_valid() {
    for checking in [Checking::OFF, Checking::FULL] {
        let a = arena("destroy-busy", checking);
        a.run(|| {
            let cp = kmem_cache_create("busy", 48, 8, None, None, None, std::ptr::null_mut(), std::ptr::null_mut(), 0);
            let p = kmem_cache_alloc(&cp, KM_SLEEP).cast::<u8>();
            let q = kmem_cache_alloc(&cp, KM_SLEEP);
            free(&cp, q);
            kmem_cache_destroy(cp);
            let errors = a.take_errors();
            assert!(
                matches!(errors.as_slice(), [KmemError::CacheNotEmpty { buffers: 1, cache, .. }] if cache == "busy"),
                "{checking:?}: {errors:?}"
            );
            assert!(errors[0].to_string().contains("kmem_cache_destroy: cache 'busy' not empty: 1 buffers"));
            // The outstanding buffer is still usable memory.
            // SAFETY: `p` is still allocated; the cache kept its memory.
            unsafe { p.write_bytes(7, 48) };
        });
    }
}

#[test]
fn destroy_with_buffers_outstanding_panics_by_default() {
    let a = Arena::builder().name("destroy-panic").checking(Checking::OFF).build();
    let msg = a.run(|| {
        let cp = kmem_cache_create("leaky", 32, 8, None, None, None, std::ptr::null_mut(), std::ptr::null_mut(), 0);
        let _p = kmem_cache_alloc(&cp, KM_SLEEP);
        let e = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| kmem_cache_destroy(cp))).unwrap_err();
        e.downcast_ref::<String>().cloned().unwrap_or_default()
    });
    assert!(msg.contains("kmem_cache_destroy: cache 'leaky' not empty"), "{msg}");
}

#[test]
fn freeing_to_the_wrong_cache_or_to_kmem_free_is_reported_when_checked() {
    let a = arena("wrong-cache", Checking::FULL);
    a.run(|| {
        let one = kmem_cache_create("one", 64, 8, None, None, None, std::ptr::null_mut(), std::ptr::null_mut(), 0);
        let two = kmem_cache_create("two", 64, 8, None, None, None, std::ptr::null_mut(), std::ptr::null_mut(), 0);
        let p = kmem_cache_alloc(&one, KM_SLEEP);
        free(&two, p);
        // SAFETY: a checking arena refuses and reports this free.
        unsafe { kmem_free(p, 64) };
        let k = kmem_alloc(64, KM_SLEEP);
        free(&one, k);
        let errors = a.take_errors();
        let texts: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(errors.len(), 3, "{texts:#?}");
        assert!(
            texts[0].contains("kmem_cache_free: buffer freed to wrong cache")
                && texts[0].contains("allocated from cache 'one', caller attempting free to cache 'two'"),
            "{}",
            texts[0]
        );
        assert!(
            texts[1].contains("kmem_free: buffer freed to wrong cache") && texts[1].contains("free to kmem_alloc"),
            "{}",
            texts[1]
        );
        assert!(texts[2].contains("allocated from kmem_alloc, caller attempting free to cache 'one'"), "{}", texts[2]);
        free(&one, p);
        // SAFETY: `k` came from kmem_alloc(64) and the refused free left it allocated.
        unsafe { kmem_free(k, 64) };
    });
    assert_eq!(a.bytes_in_use(), 0);
}

#[test]
fn kmc_nodebug_exempts_a_cache_from_checking() {
    static CALLS: Calls = Calls::new();
    let a = arena("nodebug", Checking::FULL);
    a.run(|| {
        let cp = kmem_cache_create(
            "fast",
            64,
            8,
            Some(ctor),
            Some(dtor),
            None,
            private(&CALLS),
            std::ptr::null_mut(),
            KMC_NODEBUG,
        );
        for _ in 0..3 {
            let p = kmem_cache_alloc(&cp, KM_SLEEP);
            free(&cp, p);
        }
        assert_eq!(CALLS.get(), (1, 0), "unchecked: constructed state kept");
        kmem_cache_destroy(cp);
    });
    assert_eq!(a.bytes_in_use(), 0);
}

#[test]
fn budget_context_and_failure_injection_apply_to_caches() {
    let a =
        Arena::builder().name("cache-budget").checking(Checking::OFF).response(Response::Report).budget(256).build();
    a.run(|| {
        let cp = kmem_cache_create("b", 128, 8, None, None, None, std::ptr::null_mut(), std::ptr::null_mut(), 0);
        let p = kmem_cache_alloc(&cp, KM_NOSLEEP);
        let q = kmem_cache_alloc(&cp, KM_NOSLEEP);
        assert!(!p.is_null() && !q.is_null());
        assert_eq!(a.bytes_in_use(), 256);
        assert!(kmem_cache_alloc(&cp, KM_NOSLEEP).is_null(), "the budget is spent");
        free(&cp, q);
        a.inject(FailurePlan::Always);
        assert!(kmem_cache_alloc(&cp, KM_NOSLEEP).is_null(), "injected");
        a.clear_injection();
        ddi_kmem::interrupt(|| {
            let r = kmem_cache_alloc(&cp, KM_SLEEP);
            assert!(!r.is_null(), "treated as KM_NOSLEEP after the report");
            free(&cp, r);
        });
        assert!(matches!(a.take_errors().as_slice(), [KmemError::SleepInInterrupt { call: "kmem_cache_alloc", .. }]));
        assert_eq!(cp.stats().failures, 2);
        free(&cp, p);
    });
    assert_eq!(a.bytes_in_use(), 0);
}

#[test]
fn magazines_then_depot_serve_a_burst_and_the_depot_holds_full_magazines() {
    let a = arena("burst", Checking::OFF);
    a.run(|| {
        let cp = kmem_cache_create("burst", 64, 8, None, None, None, std::ptr::null_mut(), std::ptr::null_mut(), 0);
        let rounds = cp.stats().magazine_rounds;
        assert!(rounds >= 2);
        let n = rounds * 5;
        let ps: Vec<_> = (0..n).map(|_| kmem_cache_alloc(&cp, KM_SLEEP)).collect();
        let mut sorted = ps.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), n, "no buffer handed out twice");
        assert!(cp.stats().slab_buffers >= n);
        ps.iter().for_each(|&p| free(&cp, p));
        // Two magazines stay with the thread (loaded full, previous full); the other full
        // ones went to the depot.
        let s = cp.stats();
        assert_eq!(s.depot_full, n / rounds - 2, "{s:?}");
        assert_eq!(s.buffers_in_use, 0);
        // Allocating again takes from the magazines and the depot, not from new slabs.
        let carved = s.slab_buffers;
        let ps: Vec<_> = (0..n).map(|_| kmem_cache_alloc(&cp, KM_SLEEP)).collect();
        assert_eq!(cp.stats().slab_buffers, carved);
        assert_eq!(cp.stats().depot_full, 0);
        ps.iter().for_each(|&p| free(&cp, p));
    });
    assert_eq!(a.bytes_in_use(), 0);
}

#[test]
fn a_buffer_freed_on_another_thread_goes_into_that_threads_magazine() {
    let a = arena("cross", Checking::OFF);
    let cp = a.run(|| kmem_cache_create("x", 64, 8, None, None, None, std::ptr::null_mut(), std::ptr::null_mut(), 0));
    let p = Buf(kmem_cache_alloc(&cp, KM_SLEEP));
    std::thread::scope(|s| {
        s.spawn(|| {
            free(&cp, p.0);
            // The consumer's next allocation reuses it from its own magazine.
            let q = kmem_cache_alloc(&cp, KM_SLEEP);
            assert_eq!(Buf(q), p);
            free(&cp, q);
            assert_eq!(cp.stats().buffers_in_use, 0);
        });
    });
    // Whether or not the other thread's magazine has been returned yet, nothing is lost and
    // nothing is in use.
    let s = cp.stats();
    assert_eq!((s.allocations, s.frees, s.buffers_in_use), (2, 2, 0));
    drop(cp);
    assert_eq!(a.bytes_in_use(), 0);
}

#[test]
fn thread_exit_returns_full_magazines_to_the_depot() {
    let a = arena("exit", Checking::OFF);
    let cp = std::sync::Arc::new(
        a.run(|| kmem_cache_create("e", 64, 8, None, None, None, std::ptr::null_mut(), std::ptr::null_mut(), 0)),
    );
    let rounds = cp.stats().magazine_rounds;
    let theirs = cp.clone();
    // `join` (not a scope) waits for the OS thread to exit, thread-local destructors included.
    std::thread::spawn(move || {
        let ps: Vec<_> = (0..2 * rounds).map(|_| kmem_cache_alloc(&theirs, KM_SLEEP)).collect();
        ps.iter().for_each(|&p| free(&theirs, p));
        assert_eq!(theirs.stats().depot_full, 0, "both full magazines are still the thread's");
    })
    .join()
    .unwrap();
    assert_eq!(cp.stats().depot_full, 2, "the exiting thread gave its two full magazines back");
    // This thread now allocates them without touching the slab layer.
    let carved = cp.stats().slab_buffers;
    let ps: Vec<_> = (0..2 * rounds).map(|_| kmem_cache_alloc(&cp, KM_SLEEP)).collect();
    assert_eq!(cp.stats().slab_buffers, carved);
    ps.iter().for_each(|&p| free(&cp, p));
    drop(cp);
    assert_eq!(a.bytes_in_use(), 0);
}

#[test]
fn reap_trims_the_depot_to_its_working_set_and_reap_now_empties_it() {
    static CALLS: Calls = Calls::new();
    let a = arena("reap", Checking::OFF);
    a.run(|| {
        let cp = kmem_cache_create("r", 64, 8, Some(ctor), Some(dtor), None, private(&CALLS), std::ptr::null_mut(), 0);
        let rounds = cp.stats().magazine_rounds;
        let ps: Vec<_> = (0..6 * rounds).map(|_| kmem_cache_alloc(&cp, KM_SLEEP)).collect();
        ps.iter().for_each(|&p| free(&cp, p));
        assert_eq!(cp.stats().depot_full, 4);
        a.reap(); // starts the interval: nothing was measured as unused yet
        assert_eq!(cp.stats().depot_full, 4);
        // Use one full magazine during the interval.
        let ps: Vec<_> = (0..3 * rounds).map(|_| kmem_cache_alloc(&cp, KM_SLEEP)).collect();
        ps.iter().for_each(|&p| free(&cp, p));
        let (c0, d0) = CALLS.get();
        a.reap(); // the depot never went below 3 full magazines: those 3 were unused
        assert_eq!(cp.stats().depot_full, 1);
        assert_eq!(CALLS.get(), (c0, d0 + 3 * rounds), "reaped rounds are destructed");
        kmem_cache_reap_now(&cp);
        assert_eq!(cp.stats().depot_full, 0);
        assert_eq!(CALLS.get().1, d0 + 4 * rounds);
        kmem_cache_destroy(cp);
        let (c, d) = CALLS.get();
        assert_eq!(c, d, "every constructed buffer was destructed");
    });
    assert_eq!(a.bytes_in_use(), 0);
}

#[test]
fn reclaim_under_budget_pressure_lets_a_km_sleep_waiter_proceed() {
    // A module keeps a private stash of buffers and gives them back when asked to reclaim.
    static STASH: std::sync::Mutex<Vec<Buf>> = std::sync::Mutex::new(Vec::new());
    static RECLAIMS: AtomicUsize = AtomicUsize::new(0);
    fn reclaim(_: *mut c_void) {
        RECLAIMS.fetch_add(1, Ordering::SeqCst);
        for p in STASH.lock().unwrap().drain(..) {
            // SAFETY: the stash holds kmem_alloc(256) buffers of the arena being reaped.
            unsafe { kmem_free(p.0, 256) };
        }
    }
    let a = Arena::builder().name("pressure").checking(Checking::OFF).response(Response::Report).budget(1024).build();
    a.run(|| {
        let cp = kmem_cache_create(
            "module",
            32,
            8,
            None,
            None,
            Some(reclaim),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            0,
        );
        STASH.lock().unwrap().extend((0..4).map(|_| Buf(kmem_alloc(256, KM_NOSLEEP))));
        assert_eq!(a.bytes_in_use(), 1024);
        assert!(kmem_alloc(256, KM_NOSLEEP).is_null(), "KM_NOSLEEP fails at once and does not reclaim");
        assert_eq!(RECLAIMS.load(Ordering::SeqCst), 0);
        // Nobody frees; the sleeping allocation makes the arena reap, which asks the module.
        let p = kmem_alloc(256, KM_SLEEP);
        assert!(!p.is_null());
        assert_eq!(RECLAIMS.load(Ordering::SeqCst), 1);
        assert_eq!(a.stats().sleeps, 0, "reclaim made room before it had to sleep");
        // SAFETY: allocated above with 256 bytes.
        unsafe { kmem_free(p, 256) };
        kmem_cache_destroy(cp);
    });
    assert_eq!(a.bytes_in_use(), 0);
}

#[test]
fn typed_cache_keeps_objects_constructed_and_drops_them_on_destroy() {
    static LIVE: AtomicUsize = AtomicUsize::new(0);
    struct Obj(Vec<u8>);
    impl Drop for Obj {
        fn drop(&mut self) {
            LIVE.fetch_sub(1, Ordering::SeqCst);
        }
    }
    for checking in [Checking::OFF, Checking::FULL] {
        let a = arena("typed", checking);
        a.run(|| {
            let cache = TypedCache::new("objs", || {
                LIVE.fetch_add(1, Ordering::SeqCst);
                Obj(Vec::with_capacity(100))
            });
            {
                let mut o = cache.alloc(KM_SLEEP).unwrap();
                o.0.push(1);
                let o2 = cache.alloc(KM_NOSLEEP).unwrap();
                assert!(o2.0.capacity() >= 100);
                assert_eq!(cache.stats().buffers_in_use, 2);
            }
            assert_eq!(cache.stats().buffers_in_use, 0);
            if checking == Checking::OFF {
                let o = cache.alloc(KM_SLEEP).unwrap();
                assert!(o.0 == [1] || o.0.is_empty(), "a magazine round keeps its state");
                assert_eq!(LIVE.load(Ordering::SeqCst), 2);
            }
            drop(cache);
            assert_eq!(LIVE.load(Ordering::SeqCst), 0, "{checking:?}: every object dropped");
        });
        assert_eq!(a.bytes_in_use(), 0);
    }
}

#[test]
fn size_classes_behind_kmem_alloc_are_caches_with_magazines() {
    let a = arena("classes", Checking::OFF);
    a.run(|| {
        // Enough frees to fill the thread's two magazines and send more to the depot.
        let n = 3 * a.class_cache_stats(128).expect("the 128-byte class").magazine_rounds;
        let ps: Vec<_> = (0..n).map(|_| kmem_alloc(100, KM_SLEEP)).collect();
        // SAFETY: each came from kmem_alloc(100) above; freed once.
        ps.iter().for_each(|&p| unsafe { kmem_free(p, 100) });
        let s = a.class_cache_stats(128).expect("the 128-byte class");
        assert_eq!((s.allocations, s.frees, s.buffers_in_use), (n as u64, n as u64, 0));
        assert!(s.depot_full > 0, "{s:?}");
        assert_eq!(a.stats().class(128).unwrap().allocations, n as u64);
        assert!(a.purge() > 0);
        assert_eq!(a.class_cache_stats(128).unwrap().depot_full, 0);
    });
    assert_eq!(a.bytes_in_use(), 0);
}
