//! Arena budgets: `KM_NOSLEEP` refusal, `KM_SLEEP` sleeping until frees make room, the
//! never-satisfiable request, independence of arenas, and the high-water mark.

use ddi_kmem::{
    Arena, Checking, KM_NOSLEEP, KM_SLEEP, KmemError, Response, get_free_pages, kmem_alloc, kmem_free, kmem_zalloc,
};
use std::ffi::c_void;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::thread;

fn arena(name: &str, budget: usize, checking: Checking, response: Response) -> Arena {
    Arena::builder().name(name).budget(budget).checking(checking).response(response).build()
}

/// A buffer pointer moved between threads.
struct SendPtr(*mut c_void);

// SAFETY: a kmem buffer may be used and freed from any thread; the pointer is only moved.
unsafe impl Send for SendPtr {}

/// Frees `p`, allocated with `size` in `arena`.
fn free_in(arena: &Arena, p: *mut c_void, size: usize) {
    // SAFETY: every caller passes a live buffer of `arena` and its allocation size.
    unsafe { arena.free(p.cast(), size) };
}

fn panic_text(e: &(dyn std::any::Any + Send)) -> String {
    e.downcast_ref::<String>()
        .cloned()
        .or_else(|| e.downcast_ref::<&str>().map(|s| (*s).to_string()))
        .unwrap_or_default()
}

const THREADS: usize = if cfg!(miri) { 2 } else { 4 };

/// N threads block in `KM_SLEEP` on a full budget; each free lets exactly one of them through.
fn sleepers_wake_as_memory_is_freed(checking: Checking) {
    const SIZE: usize = 100; // the 128-byte class
    const EXTENT: usize = 128;
    let a = arena("sleepers", THREADS * EXTENT, checking, Response::Panic);
    let held: Vec<*mut u8> = (0..THREADS).map(|_| a.alloc(SIZE, KM_NOSLEEP)).collect();
    assert!(held.iter().all(|p| !p.is_null()));
    assert_eq!(a.bytes_in_use(), THREADS * EXTENT);
    assert!(a.alloc(SIZE, KM_NOSLEEP).is_null(), "the budget is full");

    let done = Arc::new(AtomicUsize::new(0));
    let (started_tx, started_rx) = mpsc::channel();
    let (got_tx, got_rx) = mpsc::channel();
    let threads: Vec<_> = (0..THREADS)
        .map(|_| {
            let (a, done, started_tx, got_tx) = (a.clone(), done.clone(), started_tx.clone(), got_tx.clone());
            thread::spawn(move || {
                a.run(|| {
                    started_tx.send(()).expect("main waits");
                    let p = kmem_alloc(SIZE, KM_SLEEP);
                    done.fetch_add(1, Ordering::SeqCst);
                    got_tx.send(SendPtr(p)).expect("main waits");
                });
            })
        })
        .collect();
    for _ in 0..THREADS {
        started_rx.recv().expect("thread started");
    }
    // Wait, deterministically, until every thread is registered as a sleeper. None of them
    // can have completed: the budget is full and nothing has been freed.
    while a.waiting() < THREADS {
        assert_eq!(done.load(Ordering::SeqCst), 0, "a KM_SLEEP allocation completed over a full budget");
        thread::yield_now();
    }
    assert_eq!(a.waiting(), THREADS);
    assert_eq!(done.load(Ordering::SeqCst), 0, "a KM_SLEEP allocation completed over a full budget");
    assert!(got_rx.try_recv().is_err());
    assert_eq!(a.bytes_in_use(), THREADS * EXTENT);
    assert_eq!(a.stats().sleeps, 0, "sleeps are counted when the sleeper is served");

    let mut got = Vec::new();
    for (k, p) in held.into_iter().enumerate() {
        // SAFETY: `p` is a live SIZE-byte buffer of `a`, freed once.
        unsafe { a.free(p, SIZE) };
        let SendPtr(q) = got_rx.recv().expect("a sleeper completes after the free");
        assert!(!q.is_null(), "KM_SLEEP returned NULL");
        // Each free makes room for exactly one sleeper: the budget is full again.
        assert_eq!(done.load(Ordering::SeqCst), k + 1);
        assert_eq!(a.bytes_in_use(), THREADS * EXTENT);
        got.push(q);
    }
    for t in threads {
        t.join().expect("sleeper panicked");
    }
    let s = a.stats();
    assert_eq!(s.failures, 1, "only the KM_NOSLEEP probe failed");
    // Every thread was seen waiting before the first free, so each slept at least once.
    assert!(s.sleeps >= THREADS as u64, "sleeps not counted: {s}");
    assert_eq!(a.waiting(), 0);
    assert_eq!(s.class(EXTENT).expect("class").sleeps, s.sleeps, "sleeps are counted in the class that slept");
    assert_eq!(s.allocations, 2 * THREADS as u64);
    assert!(s.high_water <= THREADS * EXTENT, "the budget was exceeded");
    for q in got {
        free_in(&a, q, SIZE);
    }
    assert_eq!(a.stats().errors, 0);
    assert_eq!(a.bytes_in_use(), 0);
}

#[test]
fn km_sleep_threads_block_on_a_full_budget_and_all_complete_after_frees_checked() {
    sleepers_wake_as_memory_is_freed(Checking::FULL);
}

#[test]
fn km_sleep_threads_block_on_a_full_budget_and_all_complete_after_frees_unchecked() {
    sleepers_wake_as_memory_is_freed(Checking::OFF);
}

#[test]
fn one_free_of_a_large_buffer_wakes_several_small_sleepers() {
    let a = arena("wake-all", 512, Checking::FULL, Response::Panic);
    let big = a.alloc(512, KM_NOSLEEP);
    assert!(!big.is_null());
    let (started_tx, started_rx) = mpsc::channel();
    let threads: Vec<_> = (0..THREADS)
        .map(|_| {
            let (a, started_tx) = (a.clone(), started_tx.clone());
            thread::spawn(move || {
                started_tx.send(()).expect("main waits");
                SendPtr(a.alloc(64, KM_SLEEP).cast())
            })
        })
        .collect();
    for _ in 0..THREADS {
        started_rx.recv().expect("started");
    }
    while a.waiting() < THREADS {
        thread::yield_now();
    }
    // SAFETY: `big` is a live 512-byte buffer of `a`, freed once.
    unsafe { a.free(big, 512) };
    let got: Vec<*mut c_void> = threads.into_iter().map(|t| t.join().expect("sleeper").0).collect();
    assert!(got.iter().all(|p| !p.is_null()), "every sleeper is woken and served");
    assert!(a.stats().sleeps >= THREADS as u64);
    assert_eq!(a.bytes_in_use(), THREADS * 64);
    for p in got {
        free_in(&a, p, 64);
    }
    assert_eq!(a.bytes_in_use(), 0);
}

#[test]
fn arenas_have_independent_budgets() {
    let a = arena("independent-a", 256, Checking::FULL, Response::Panic);
    let b = arena("independent-b", 256, Checking::OFF, Response::Panic);
    let pa = a.run(|| kmem_alloc(256, KM_NOSLEEP));
    assert!(!pa.is_null());
    assert!(a.run(|| kmem_alloc(1, KM_NOSLEEP)).is_null(), "a is full");
    // b is untouched by a's use: a KM_SLEEP there does not block.
    let pb = b.run(|| kmem_alloc(200, KM_SLEEP));
    assert!(!pb.is_null());
    assert_eq!((a.bytes_in_use(), b.bytes_in_use()), (256, 256));
    assert_eq!((a.stats().failures, b.stats().failures), (1, 0));
    assert!(b.run(|| kmem_alloc(1, KM_NOSLEEP)).is_null(), "b is full now too");
    a.run(|| {
        // SAFETY: `pa` is a live 256-byte buffer of `a`, freed once.
        unsafe { kmem_free(pa, 256) }
    });
    assert_eq!((a.bytes_in_use(), b.bytes_in_use()), (0, 256), "freeing in a gives nothing to b");
    assert!(b.run(|| kmem_alloc(1, KM_NOSLEEP)).is_null());
    free_in(&b, pb, 200);
    assert_eq!(a.bytes_in_use(), 0);
    assert_eq!(b.bytes_in_use(), 0);
}

#[test]
fn km_sleep_larger_than_the_whole_budget_is_reported_instead_of_hanging() {
    let a = arena("never-fits", 256, Checking::FULL, Response::Report);
    a.run(|| {
        assert!(kmem_alloc(300, KM_SLEEP).is_null());
        assert!(kmem_zalloc(257, KM_SLEEP).is_null());
        assert!(get_free_pages(KM_SLEEP, 0).is_null());
    });
    let errors = a.take_errors();
    assert_eq!(
        errors,
        vec![
            KmemError::SleepNeverSatisfiable {
                call: "kmem_alloc",
                arena: "never-fits".into(),
                size: 300,
                extent: 512,
                budget: 256
            },
            KmemError::SleepNeverSatisfiable {
                call: "kmem_zalloc",
                arena: "never-fits".into(),
                size: 257,
                extent: 512,
                budget: 256
            },
            KmemError::SleepNeverSatisfiable {
                call: "get_free_pages",
                arena: "never-fits".into(),
                size: 4096,
                extent: 4096,
                budget: 256
            },
        ]
    );
    let text = errors[0].to_string();
    for part in ["kmem_alloc", "300", "512", "never-fits", "256"] {
        assert!(text.contains(part), "{part:?} missing from {text:?}");
    }
    let s = a.stats();
    assert_eq!((s.errors, s.failures, s.sleeps), (3, 3, 0));
    // The arena still works: a request that fits succeeds.
    let p = a.alloc(256, KM_SLEEP);
    assert!(!p.is_null());
    free_in(&a, p.cast(), 256);
    assert_eq!(a.bytes_in_use(), 0);
}

#[test]
fn km_sleep_larger_than_the_whole_budget_panics_in_panic_mode() {
    let a = arena("never-fits-panic", 256, Checking::OFF, Response::Panic);
    let r = catch_unwind(AssertUnwindSafe(|| a.run(|| kmem_alloc(300, KM_SLEEP))));
    let msg = panic_text(&*r.expect_err("must panic"));
    assert!(msg.contains("kmem_alloc") && msg.contains("can never fit"), "{msg}");
    assert_eq!(a.stats().errors, 1);
    let p = a.alloc(256, KM_NOSLEEP);
    assert!(!p.is_null(), "the arena still works after the panic");
    free_in(&a, p.cast(), 256);
    assert_eq!(a.bytes_in_use(), 0);
}

#[test]
fn km_nosleep_larger_than_the_whole_budget_is_a_plain_failure() {
    let a = arena("nosleep-never-fits", 256, Checking::FULL, Response::Report);
    assert!(a.alloc(300, KM_NOSLEEP).is_null());
    let s = a.stats();
    assert_eq!((s.failures, s.errors), (1, 0));
    assert_eq!(a.bytes_in_use(), 0);
}

#[test]
fn a_request_exactly_filling_the_budget_succeeds() {
    let a = arena("exact", 128, Checking::FULL, Response::Panic);
    let p = a.alloc(128, KM_SLEEP);
    assert!(!p.is_null());
    assert_eq!(a.bytes_in_use(), 128);
    free_in(&a, p.cast(), 128);
    assert_eq!(a.bytes_in_use(), 0);
}

#[test]
fn high_water_mark_records_the_peak() {
    for checking in [Checking::FULL, Checking::OFF] {
        let a = arena("high-water", 4096, checking, Response::Panic);
        let p = a.alloc(100, KM_SLEEP); // 128
        let q = a.alloc(300, KM_SLEEP); // 512
        let r = a.alloc(100, KM_SLEEP); // 128
        assert_eq!(a.stats().high_water, 768);
        free_in(&a, q.cast(), 300);
        free_in(&a, r.cast(), 100);
        let s = a.alloc(32, KM_SLEEP);
        let st = a.stats();
        assert_eq!(st.bytes_in_use, 160);
        assert_eq!(st.high_water, 768, "the peak stays after frees");
        assert_eq!(st.budget, Some(4096));
        assert_eq!(st.class(128).expect("class").high_water, 2);
        assert_eq!(st.class(512).expect("class").high_water, 1);
        free_in(&a, p.cast(), 100);
        free_in(&a, s.cast(), 32);
        assert_eq!(a.bytes_in_use(), 0);
        assert_eq!(a.stats().high_water, 768);
    }
}
