//! Arena and per-class statistics, and their `Display`.

use ddi_kmem::{
    Arena, ArenaStats, Checking, ClassStats, FailurePlan, KM_NOSLEEP, KM_SLEEP, Response, free_pages, get_free_pages,
    kmem_alloc, kmem_free,
};
use std::ffi::c_void;
use std::sync::mpsc;

fn arena(name: &str, checking: Checking) -> Arena {
    Arena::builder().name(name).checking(checking).response(Response::Report).build()
}

fn free_in(a: &Arena, p: *mut u8, size: usize) {
    // SAFETY: every caller passes a live buffer of `a` and its allocation size.
    unsafe { a.free(p, size) };
}

fn class(size: Option<usize>, allocations: u64, frees: u64, failures: u64, in_use: usize, high: usize) -> ClassStats {
    ClassStats { size, allocations, frees, failures, sleeps: 0, buffers_in_use: in_use, high_water: high }
}

/// The arena totals are the sums of the class rows.
fn assert_totals_consistent(s: &ArenaStats) {
    assert_eq!(s.allocations, s.classes.iter().map(|c| c.allocations).sum::<u64>());
    assert_eq!(s.frees, s.classes.iter().map(|c| c.frees).sum::<u64>());
    assert_eq!(s.failures, s.classes.iter().map(|c| c.failures).sum::<u64>());
    assert_eq!(s.sleeps, s.classes.iter().map(|c| c.sleeps).sum::<u64>());
    let bytes: usize = s.classes.iter().filter_map(|c| c.size.map(|sz| sz * c.buffers_in_use)).sum();
    assert!(bytes <= s.bytes_in_use, "class buffers {bytes} exceed bytes in use {}", s.bytes_in_use);
}

#[test]
fn the_class_table_lists_the_power_of_two_classes_then_the_page_path() {
    let a = arena("table", Checking::OFF);
    let s = a.stats();
    let sizes: Vec<Option<usize>> = s.classes.iter().map(|c| c.size).collect();
    let mut want: Vec<Option<usize>> = (5..=17).map(|k| Some(1usize << k)).collect();
    want.push(None);
    assert_eq!(sizes, want);
    assert!(s.classes.iter().all(|c| *c == class(c.size, 0, 0, 0, 0, 0)));
    assert_eq!(s.class(128).map(|c| c.size), Some(Some(128)));
    assert_eq!(s.class(100), None, "100 is not a class size");
    assert_eq!(s.name, "table");
    assert_eq!((s.bytes_in_use, s.high_water, s.budget), (0, 0, None));
    assert_eq!(a.bytes_in_use(), 0);
}

#[test]
fn per_class_counts_follow_allocations_frees_and_failures() {
    for checking in [Checking::FULL, Checking::OFF] {
        let a = Arena::builder().name("per-class").checking(checking).response(Response::Report).budget(1024).build();
        let p: Vec<*mut u8> = (0..3).map(|_| a.alloc(100, KM_NOSLEEP)).collect(); // 3 x 128
        let q = a.alloc(40, KM_SLEEP); // 64
        free_in(&a, p[0], 100);
        let r = a.alloc(600, KM_NOSLEEP); // 1024 does not fit next to 320 bytes
        assert!(r.is_null());
        assert!(a.alloc(200_000, KM_NOSLEEP).is_null(), "oversize: counted on the page path");

        let s = a.stats();
        assert_eq!(s.class(128), Some(&class(Some(128), 3, 1, 0, 2, 3)));
        assert_eq!(s.class(64), Some(&class(Some(64), 1, 0, 0, 1, 1)));
        assert_eq!(s.class(1024), Some(&class(Some(1024), 0, 0, 1, 0, 0)));
        assert_eq!(s.classes.last(), Some(&class(None, 0, 0, 1, 0, 0)));
        assert_eq!((s.allocations, s.frees, s.failures, s.sleeps, s.injected, s.errors), (4, 1, 2, 0, 0, 0));
        assert_eq!((s.bytes_in_use, s.high_water, s.budget), (2 * 128 + 64, 3 * 128 + 64, Some(1024)));
        assert_totals_consistent(&s);

        free_in(&a, p[1], 100);
        free_in(&a, p[2], 100);
        free_in(&a, q, 40);
        let s = a.stats();
        assert_eq!(s.class(128), Some(&class(Some(128), 3, 3, 0, 0, 3)), "high water stays");
        assert_eq!((s.allocations, s.frees), (4, 4));
        assert_totals_consistent(&s);
        assert_eq!(a.bytes_in_use(), 0);
    }
}

#[test]
fn page_path_counts_get_free_pages() {
    let a = arena("pages-stats", Checking::FULL);
    a.run(|| {
        let g = get_free_pages(KM_SLEEP, 2);
        let s = a.stats();
        assert_eq!(s.classes.last(), Some(&class(None, 1, 0, 0, 1, 1)));
        assert_eq!(s.bytes_in_use, 4 * 4096);
        // SAFETY: `g` came from get_free_pages(_, 2) in this arena, freed once.
        unsafe { free_pages(g, 2) };
    });
    assert_eq!(a.stats().classes.last(), Some(&class(None, 1, 1, 0, 0, 1)));
    assert_eq!(a.bytes_in_use(), 0);
}

#[test]
fn injected_failures_are_counted_as_failures_and_as_injected() {
    let a = arena("injected-stats", Checking::OFF);
    a.inject(FailurePlan::EveryNth(2));
    for _ in 0..4 {
        let p = a.alloc(32, KM_NOSLEEP);
        if !p.is_null() {
            free_in(&a, p, 32);
        }
    }
    let s = a.stats();
    assert_eq!((s.allocations, s.frees, s.failures, s.injected), (2, 2, 2, 2));
    assert_eq!(s.class(32).expect("class").failures, 2);
    assert_eq!(a.bytes_in_use(), 0);
}

#[test]
fn misuses_are_counted_in_errors() {
    let a = arena("errors-stats", Checking::FULL);
    let p = a.alloc(100, KM_NOSLEEP);
    free_in(&a, p, 99); // wrong size: refused, reported
    free_in(&a, std::ptr::null_mut(), 5); // NULL with a size
    assert_eq!(a.stats().errors, 2);
    assert_eq!(a.errors().len(), 2);
    assert_eq!(a.take_errors().len(), 2);
    assert!(a.errors().is_empty(), "take_errors empties the kept reports");
    assert_eq!(a.stats().errors, 2, "the count is not reset by take_errors");
    free_in(&a, p, 100);
    assert_eq!(a.bytes_in_use(), 0);
}

/// A buffer pointer moved between threads.
struct SendPtr(*mut c_void);

// SAFETY: a kmem buffer may be used and freed from any thread; the pointer is only moved.
unsafe impl Send for SendPtr {}

#[test]
fn sleeps_are_counted_in_the_class_that_slept() {
    let a = Arena::builder().name("sleep-stats").checking(Checking::OFF).response(Response::Report).budget(256).build();
    let held = a.alloc(256, KM_NOSLEEP);
    let (tx, rx) = mpsc::channel();
    let t = {
        let a = a.clone();
        std::thread::spawn(move || {
            tx.send(()).expect("main waits");
            SendPtr(a.run(|| kmem_alloc(500, KM_SLEEP)).cast()) // the 512-byte class: never fits
        })
    };
    rx.recv().expect("started");
    // A 512-byte request can never fit a 256-byte budget: reported at once, no sleep.
    let never = t.join().expect("thread").0;
    assert!(never.is_null());
    assert_eq!(a.stats().sleeps, 0);
    assert_eq!(a.stats().class(512).expect("class").failures, 1);
    assert_eq!(a.take_errors().len(), 1, "reported as never satisfiable");

    let (tx, rx) = mpsc::channel();
    let t = {
        let a = a.clone();
        std::thread::spawn(move || {
            tx.send(()).expect("main waits");
            SendPtr(a.run(|| kmem_alloc(60, KM_SLEEP)))
        })
    };
    rx.recv().expect("started");
    while a.waiting() == 0 {
        std::thread::yield_now();
    }
    free_in(&a, held, 256);
    let p = t.join().expect("thread").0;
    assert!(!p.is_null());
    let s = a.stats();
    assert!(s.class(64).expect("class").sleeps >= 1);
    assert_eq!(s.sleeps, s.class(64).expect("class").sleeps);
    assert_eq!(s.class(256).expect("class").sleeps, 0);
    a.run(|| {
        // SAFETY: `p` is a live 60-byte buffer of this arena, freed once.
        unsafe { kmem_free(p, 60) }
    });
    assert_eq!(a.bytes_in_use(), 0);
}

#[test]
fn a_snapshot_does_not_change_afterwards() {
    let a = arena("snapshot", Checking::OFF);
    let before = a.stats();
    let p = a.alloc(32, KM_NOSLEEP);
    assert_ne!(a.stats(), before);
    assert_eq!(before.allocations, 0);
    free_in(&a, p, 32);
    assert_eq!(a.bytes_in_use(), 0);
}

#[test]
fn display_renders_the_totals_and_the_used_classes() {
    let a = Arena::builder().name("shown").checking(Checking::OFF).response(Response::Report).budget(1 << 20).build();
    let p = a.alloc(100, KM_NOSLEEP);
    let q = a.alloc(100, KM_NOSLEEP);
    assert!(a.alloc(200_000, KM_NOSLEEP).is_null());
    free_in(&a, q, 100);
    let text = a.stats().to_string();
    println!("{text}");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0],
        "arena 'shown': 128 bytes in use (high water 256), budget 1048576, 2 allocs, 1 frees, 1 failures (0 injected), 0 sleeps, 0 errors"
    );
    for col in ["class", "allocs", "frees", "fail", "sleeps", "in use", "max"] {
        assert!(lines[1].contains(col), "header lacks {col:?}: {}", lines[1]);
    }
    let row128: Vec<&str> =
        lines.iter().find(|l| l.trim_start().starts_with("128 ")).expect("a 128 row").split_whitespace().collect();
    assert_eq!(row128, ["128", "2", "1", "0", "0", "1", "2"]);
    let pages: Vec<&str> =
        lines.iter().find(|l| l.trim_start().starts_with("pages")).expect("a pages row").split_whitespace().collect();
    assert_eq!(pages, ["pages", "0", "0", "1", "0", "0", "0"]);
    assert_eq!(lines.len(), 4, "unused classes are not listed");
    assert!(!text.contains("budget none"));
    free_in(&a, p, 100);
    assert_eq!(a.bytes_in_use(), 0);
    assert!(arena("no-budget", Checking::OFF).stats().to_string().contains("budget none"));
}
