//! Creation, embedded init/exit, destroy with outstanding elements, and checking mode.

mod common;

use common::{arena, unbounded};
use ddi_kmem::{Arena, Checking, FailurePlan, Response};
use ddi_mempool::{
    DestroyCheck, GFP_ATOMIC, GFP_KERNEL, GFP_NOWAIT, Mempool, MempoolError, POISON_END, POISON_FREE, POISON_INUSE,
    mempool_alloc, mempool_create, mempool_create_kmalloc_pool, mempool_create_node, mempool_destroy, mempool_exit,
    mempool_free, mempool_init, mempool_init_kmalloc_pool, mempool_init_page_pool, mempool_initialized,
    mempool_is_saturated,
};
use std::ffi::c_void;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A preallocation that cannot complete frees what it got and fails cleanly.
#[test]
fn create_fails_cleanly_and_frees_what_it_got() {
    let a = arena("create-fail", 1 << 20);
    let _in = a.enter();
    // Non-sleeping preallocation under injection of the 3rd allocation.
    a.inject(FailurePlan::Nth(3));
    let pool = mempool_create_node(
        5,
        |gfp, _| ddi_kmem::kmem_alloc(100, gfp.km_flags()),
        // SAFETY: only elements from kmem_alloc(100) reach here, once each.
        |e, _| unsafe { ddi_kmem::kmem_free(e, 100) },
        std::ptr::null_mut(),
        GFP_NOWAIT,
        -1,
    );
    assert!(pool.is_none());
    assert_eq!(a.bytes_in_use(), 0, "the two elements it got were freed");
    a.clear_injection();
    // A kmalloc pool under a budget too small, preallocating without sleeping.
    let small = arena("create-small", 256);
    let _in2 = small.enter();
    let r = Mempool::builder(4).gfp(GFP_ATOMIC).kmalloc(128);
    assert_eq!(r.unwrap_err(), MempoolError::NoMemory { wanted: 4, got: 2 });
    assert_eq!(small.bytes_in_use(), 0);
}

/// A custom backend counting its live elements: create, use, destroy balance.
#[test]
fn custom_backend_balances() {
    let live = Arc::new(AtomicUsize::new(0));
    let (l1, l2) = (live.clone(), live.clone());
    let pool = mempool_create(
        3,
        move |_gfp, _data| {
            l1.fetch_add(1, Ordering::SeqCst);
            Box::into_raw(Box::new(0u64)).cast::<c_void>()
        },
        move |e, _data| {
            l2.fetch_sub(1, Ordering::SeqCst);
            // SAFETY: every element came from Box::into_raw(Box<u64>) above, freed once.
            drop(unsafe { Box::from_raw(e.cast::<u64>()) });
        },
        std::ptr::null_mut(),
    )
    .expect("prealloc");
    assert_eq!(live.load(Ordering::SeqCst), 3);
    assert!(mempool_is_saturated(&pool));
    let e: Vec<_> = (0..5).map(|_| mempool_alloc(&pool, GFP_KERNEL)).collect();
    for p in e {
        // SAFETY: from this pool, freed once each.
        unsafe { mempool_free(p, &pool) };
    }
    // SAFETY: NULL is a no-op.
    unsafe { mempool_free(std::ptr::null_mut(), &pool) };
    assert_eq!(pool.outstanding(), 0);
    assert_eq!(mempool_destroy(Some(pool)), 0);
    assert_eq!(mempool_destroy(None), 0);
    assert_eq!(live.load(Ordering::SeqCst), 0);
}

/// Zero minimum (Linux 6.x): one element kept anyway, saturated at once.
#[test]
fn zero_minimum_keeps_one_element() {
    let a = arena("zero-min", 1 << 20);
    let _in = a.enter();
    let pool = mempool_create_kmalloc_pool(0, 64).expect("prealloc");
    assert_eq!((pool.min_nr(), pool.curr_nr()), (0, 1));
    a.inject(FailurePlan::Always);
    let p = mempool_alloc(&pool, GFP_ATOMIC);
    assert!(!p.is_null());
    assert!(mempool_alloc(&pool, GFP_ATOMIC).is_null());
    // SAFETY: from this pool, freed once.
    unsafe { mempool_free(p, &pool) };
    assert_eq!(pool.curr_nr(), 1, "a zero-minimum pool still refills its one slot");
    a.clear_injection();
    drop(pool);
    assert_eq!(a.bytes_in_use(), 0);
}

/// Embedded pools: init, exit, init again, drop.
#[test]
fn embedded_init_exit() {
    let a = arena("embedded", 1 << 20);
    let _in = a.enter();
    struct Device {
        small: Mempool,
        pages: Mempool,
    }
    let mut dev = Device { small: Mempool::new(), pages: Mempool::default() };
    assert!(!mempool_initialized(&dev.small));
    mempool_init_kmalloc_pool(&mut dev.small, 2, 48).expect("prealloc");
    mempool_init_page_pool(&mut dev.pages, 1, 0).expect("prealloc");
    assert!(mempool_initialized(&dev.small));
    assert_eq!(mempool_init_kmalloc_pool(&mut dev.small, 2, 48), Err(MempoolError::AlreadyInitialized));
    assert_eq!(a.bytes_in_use(), 2 * 64 + 4096);
    assert_eq!(mempool_exit(&mut dev.small), 0);
    assert!(!mempool_initialized(&dev.small));
    assert_eq!(mempool_exit(&mut dev.small), 0, "exit twice is harmless");
    mempool_init(&mut dev.small, 1, |_, d| d, |_, _| {}, std::ptr::dangling_mut::<c_void>()).expect("init again");
    drop(dev);
    assert_eq!(a.bytes_in_use(), 0);
}

/// Destroy with elements outstanding: allowed and reported (4.x+), or a bug (2.6).
#[test]
fn destroy_with_outstanding_elements_both_ways() {
    let a = arena("destroy", 1 << 20);
    let _in = a.enter();
    // 4.x and later: allowed, counted.
    let pool = mempool_create_kmalloc_pool(1, 64).expect("prealloc");
    let out = mempool_alloc(&pool, GFP_KERNEL);
    assert_eq!(mempool_destroy(Some(pool)), 1);
    // The element is the caller's to free with the backend.
    // SAFETY: a kmalloc-pool element of 64 bytes from this arena, freed once.
    unsafe { a.free(out.cast(), 64) };
    assert_eq!(a.bytes_in_use(), 0);

    // 2.6: BUG_ON. The reserve is freed first; try_exit reports, mempool_destroy panics.
    let mut pool = Mempool::builder(2).destroy_check(DestroyCheck::Bug).kmalloc(64).expect("prealloc");
    let out = mempool_alloc(&pool, GFP_KERNEL);
    assert_eq!(pool.try_exit(), Err(MempoolError::Outstanding { outstanding: 1 }));
    assert!(!pool.is_initialized());
    // SAFETY: as above.
    unsafe { a.free(out.cast(), 64) };
    assert_eq!(a.bytes_in_use(), 0);

    let pool = Mempool::builder(1).destroy_check(DestroyCheck::Bug).kmalloc(64).expect("prealloc");
    let out = mempool_alloc(&pool, GFP_KERNEL);
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| mempool_destroy(Some(pool))));
    let msg = r.expect_err("BUG_ON").downcast::<String>().expect("message");
    assert!(msg.contains("mempool_destroy with 1 elements outstanding"), "{msg}");
    // SAFETY: as above.
    unsafe { a.free(out.cast(), 64) };
    assert_eq!(a.bytes_in_use(), 0);
}

/// The outstanding count is kept per thread: elements allocated on threads that have exited
/// and freed on later threads (which may reuse their indices), more threads alive at once than
/// a pool has per-thread slots, and destroy still sees the exact total.
#[test]
fn outstanding_is_exact_across_threads_that_come_and_go() {
    let a = unbounded("outstanding-threads");
    let _in = a.enter();
    let pool = Mempool::builder(2).destroy_check(DestroyCheck::Bug).kmalloc(64).expect("prealloc");
    let rounds = common::iters(4, 2);
    let per_thread = common::iters(5, 2);
    // Many threads alive at once, each keeping what it allocates: some have no slot of their
    // own and count on the pool's shared counter.
    let wide = common::iters(80, 6);
    let mut kept: Vec<common::SendPtr> = Vec::new();
    for round in 0..rounds {
        let barrier = std::sync::Barrier::new(wide);
        let got: Vec<Vec<common::SendPtr>> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..wide)
                .map(|_| {
                    let (pool, a, barrier) = (&pool, &a, &barrier);
                    s.spawn(move || {
                        let _in = a.enter();
                        barrier.wait(); // all alive together
                        (0..per_thread).map(|_| common::SendPtr(mempool_alloc(pool, GFP_KERNEL))).collect()
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().expect("allocator")).collect()
        });
        kept.extend(got.into_iter().flatten());
        assert_eq!(pool.outstanding(), kept.len() as isize, "round {round}: after the allocators exited");
        // Later threads free half of what the exited ones allocated.
        let mut half = kept.split_off(kept.len() / 2);
        std::thread::scope(|s| {
            while !half.is_empty() {
                let chunk = half.split_off(half.len().saturating_sub(7));
                let (pool, a) = (&pool, &a);
                s.spawn(move || {
                    let _in = a.enter();
                    for p in chunk {
                        // SAFETY: from this pool, freed once.
                        unsafe { mempool_free(p.0, pool) };
                    }
                });
            }
        });
        assert_eq!(pool.outstanding(), kept.len() as isize, "round {round}: after the freers exited");
    }
    for p in kept.drain(..) {
        // SAFETY: from this pool, freed once.
        unsafe { mempool_free(p.0, &pool) };
    }
    assert_eq!(pool.outstanding(), 0);
    // DestroyCheck::Bug: destroy panics if the count is not exactly zero.
    assert_eq!(mempool_destroy(Some(pool)), 0);
    assert_eq!(a.bytes_in_use(), 0);
}

/// Using a pool that was never initialized, or was exited, panics with a clear message before
/// anything changes: the fast paths check initialization before counting or refilling. Freeing
/// NULL stays a no-op.
#[test]
fn use_of_an_uninitialized_pool_panics_before_touching_it() {
    let a = unbounded("uninitialized");
    let _in = a.enter();
    let mut exited = Mempool::new();
    mempool_init_kmalloc_pool(&mut exited, 1, 64).expect("prealloc");
    assert_eq!(mempool_exit(&mut exited), 0);
    let element = ddi_kmem::kmem_alloc(64, ddi_kmem::KM_SLEEP);
    for pool in [Mempool::new(), exited] {
        let expect_panic = |what: &str, r: std::thread::Result<()>| {
            let payload = r.expect_err(what);
            let msg = match payload.downcast_ref::<&str>() {
                Some(s) => s.to_string(),
                None => payload.downcast_ref::<String>().expect("a message").clone(),
            };
            assert!(msg.contains("mempool: use of an uninitialized (or exited) pool"), "{what}: {msg}");
        };
        let p = &pool;
        expect_panic(
            "mempool_alloc",
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                mempool_alloc(p, GFP_KERNEL);
            })),
        );
        expect_panic(
            "mempool_alloc_preallocated",
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                ddi_mempool::mempool_alloc_preallocated(p);
            })),
        );
        expect_panic(
            "mempool_free",
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                // SAFETY: the pool panics before it touches the element (what this checks).
                unsafe { mempool_free(element, p) };
            })),
        );
        expect_panic(
            "mempool_resize",
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                ddi_mempool::mempool_resize(p, 2).expect("unreachable");
            })),
        );
        // SAFETY: NULL is a no-op, initialized or not.
        unsafe { mempool_free(std::ptr::null_mut(), p) };
        assert_eq!((pool.curr_nr(), pool.min_nr(), pool.outstanding()), (0, 0, 0), "nothing changed");
        assert!(!pool.is_initialized());
    }
    // SAFETY: from kmem_alloc(64) above, still ours (the pools never took it), freed once.
    unsafe { ddi_kmem::kmem_free(element, 64) };
    assert_eq!(a.bytes_in_use(), 0);
}

/// Checking mode: reserved elements are poisoned; one modified in the reserve is reported on
/// its way out, then handed out filled with POISON_INUSE.
#[test]
fn poison_detects_modification_in_reserve() {
    let a = Arena::builder().name("poison").checking(Checking::FULL).response(Response::Report).build();
    let _in = a.enter();
    let pool = mempool_create_kmalloc_pool(2, 40).expect("prealloc");
    a.inject(FailurePlan::Always);
    let p = mempool_alloc(&pool, GFP_ATOMIC).cast::<u8>();
    // SAFETY: a 40-byte element, ours.
    let bytes = unsafe { std::slice::from_raw_parts(p, 40) };
    assert!(bytes.iter().all(|&b| b == POISON_INUSE), "unpoisoned to POISON_INUSE on the way out");
    // SAFETY: from this pool, freed once; it goes to the reserve (1 < 2).
    unsafe { mempool_free(p.cast(), &pool) };
    // SAFETY: the element now sits in the reserve: reading it is what a stale user would do.
    let stale = unsafe { std::slice::from_raw_parts(p, 40) };
    assert!(stale[..39].iter().all(|&b| b == POISON_FREE) && stale[39] == POISON_END);
    // A use-after-free write while it sits there.
    // SAFETY: offset 17 lies inside the 40-byte element.
    let victim = unsafe { p.add(17) };
    // SAFETY: the memory is still allocated (held by the reserve); this simulates the bug.
    unsafe { victim.write(0x42) };
    assert!(pool.errors().is_empty());
    let q = mempool_alloc(&pool, GFP_ATOMIC);
    assert_eq!(q.cast::<u8>(), p, "last freed, first out");
    let errors = pool.errors();
    assert_eq!(errors.len(), 1);
    match &errors[0] {
        MempoolError::PoisonMismatch { offset, found, expected, size, .. } => {
            assert_eq!((*offset, *found, *expected, *size), (17, 0x42, POISON_FREE, 40));
        }
        other => panic!("{other:?}"),
    }
    // SAFETY: from this pool, freed once.
    unsafe { mempool_free(q, &pool) };
    a.clear_injection();
    drop(pool);
    assert_eq!(a.bytes_in_use(), 0);
    assert_eq!(a.stats().errors, 0, "the pool's report is its own; kmem saw no misuse");
}

/// With poisoning forced off, reserve contents are left alone; in a panicking arena a
/// mismatch panics.
#[test]
fn poisoning_off_and_panic_response() {
    let a = unbounded("poison-off");
    let _in = a.enter();
    let pool = Mempool::builder(1).poisoning(false).kmalloc(32).expect("prealloc");
    a.inject(FailurePlan::Always);
    let p = mempool_alloc(&pool, GFP_ATOMIC).cast::<u8>();
    // SAFETY: a 32-byte element, ours.
    unsafe { p.write_bytes(7, 32) };
    // SAFETY: from this pool, freed once.
    unsafe { mempool_free(p.cast(), &pool) };
    // SAFETY: held by the reserve, still allocated.
    assert_eq!(unsafe { p.read() }, 7, "not poisoned");
    drop(pool);

    let pool = mempool_create_kmalloc_pool(1, 32).expect("prealloc");
    let p = mempool_alloc(&pool, GFP_ATOMIC).cast::<u8>();
    // SAFETY: from this pool, freed once.
    unsafe { mempool_free(p.cast(), &pool) };
    // SAFETY: held by the reserve, still allocated.
    unsafe { p.write(0) };
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| mempool_alloc(&pool, GFP_ATOMIC) as usize));
    let msg = r.expect_err("poison mismatch panics").downcast::<String>().expect("message");
    assert!(msg.starts_with("BUG: mempool element poison mismatch"), "{msg}");
    // The element was lost to the panic; give it back to kmem so the arena balances.
    // SAFETY: a 32-byte kmalloc-pool element from this arena, not in the pool any more.
    unsafe { a.free(p, 32) };
    a.clear_injection();
    drop(pool);
    assert_eq!(a.bytes_in_use(), 0);
}
