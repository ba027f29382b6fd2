//! Each Solaris quirk, observed through the plain DDI functions.

use ddi_kmem::{
    Arena, Checking, KM_CACHEALIGN, KM_NOSLEEP, KM_SLEEP, KmemError, Response, kmem_alloc, kmem_free, kmem_zalloc,
};
use std::ffi::c_void;

fn arena(checking: Checking) -> Arena {
    compat_solaris::arena().checking(checking).response(Response::Report).build()
}

fn free(p: *mut c_void, size: usize) {
    // SAFETY: callers pass live buffers of the current arena with their size.
    unsafe { kmem_free(p, size) }
}

#[test]
fn size_zero_returns_null_for_every_flag() {
    let a = arena(Checking::FULL);
    a.run(|| {
        assert!(kmem_alloc(0, KM_SLEEP).is_null());
        assert!(kmem_alloc(0, KM_NOSLEEP).is_null());
        assert!(kmem_zalloc(0, KM_SLEEP).is_null());
        free(std::ptr::null_mut(), 0); // "kmem_free(NULL, 0) is legal"
    });
    assert_eq!(a.stats().errors, 0);
}

#[test]
fn at_least_double_word_aligned_and_no_more_promised() {
    let a = arena(Checking::FULL);
    for size in [1, 7, 8, 9, 72, 100, 120, 1000, 3000, 5000, 100_000] {
        let align = a.alignment(size, KM_SLEEP).unwrap();
        assert!(align >= 8, "{size}: {align}");
        let p = a.alloc(size, KM_SLEEP);
        assert_eq!(p.addr() % align, 0);
        // SAFETY: allocated just above in `a` with `size`.
        unsafe { a.free(p, size) };
    }
    // illumos.md §1.2: kmem_alloc(72) comes from the 80-byte cache, only 8-byte aligned.
    assert_eq!(a.alignment(72, KM_SLEEP), Some(8));
    assert_eq!(a.extent(72), Some(80));
    // Multiples of 64 come back 64-aligned; multiples of a page, page-aligned.
    assert_eq!(a.alignment(128, KM_SLEEP), Some(64));
    assert_eq!(a.alignment(4096, KM_SLEEP), Some(4096));
    assert_eq!(a.bytes_in_use(), 0);
}

#[test]
fn cachealign_bit_has_no_alignment_effect() {
    let a = arena(Checking::FULL);
    assert_eq!(a.alignment(20, KM_SLEEP | KM_CACHEALIGN), Some(8));
}

#[test]
fn km_sleep_sleeps_for_the_budget_and_succeeds() {
    let a = compat_solaris::arena().budget(4096).checking(Checking::FULL).build();
    let held = a.alloc(4096, KM_NOSLEEP);
    assert!(!held.is_null());
    assert!(a.alloc(64, KM_NOSLEEP).is_null(), "KM_NOSLEEP fails at once");
    let b = a.clone();
    let t = std::thread::spawn(move || {
        let p = b.alloc(64, KM_SLEEP);
        assert!(!p.is_null(), "KM_SLEEP is guaranteed to succeed");
        // SAFETY: allocated just above in `b` with 64 bytes.
        unsafe { b.free(p, 64) };
    });
    while a.waiting() == 0 {
        std::thread::yield_now();
    }
    // SAFETY: allocated above in `a` with 4096 bytes.
    unsafe { a.free(held, 4096) };
    t.join().unwrap();
    assert!(a.stats().sleeps >= 1);
    assert_eq!(a.bytes_in_use(), 0);
}

#[test]
fn oversize_requests_are_served_page_granular() {
    let a = arena(Checking::FULL);
    a.run(|| {
        let p = kmem_alloc(131_073, KM_NOSLEEP);
        assert!(!p.is_null());
        assert_eq!(p.addr() % 4096, 0);
        free(p, 131_073);
    });
    assert_eq!(a.bytes_in_use(), 0);
}

#[test]
fn free_size_must_match_and_is_checked_even_without_kmem_flags() {
    for checking in [Checking::OFF, Checking::FULL] {
        let a = arena(checking);
        a.run(|| {
            let p = kmem_alloc(100, KM_SLEEP);
            free(p, 104); // same 112-byte class: still a bad free
            free(p, 100);
        });
        let errors = a.take_errors();
        assert!(
            matches!(
                errors.as_slice(),
                [KmemError::BadSize { free_size: 104, alloc_size: 100, call: "kmem_free", .. }]
            ),
            "{checking:?}: {errors:?}"
        );
        assert_eq!(a.bytes_in_use(), 0);
    }
}

#[test]
fn zalloc_zeroes_only_the_request() {
    let a = arena(Checking::FULL);
    a.run(|| {
        let p = kmem_zalloc(100, KM_SLEEP).cast::<u8>();
        let extent = a.extent(100).unwrap();
        assert_eq!(extent, 112);
        // SAFETY: the checking arena initialises the whole extent.
        let bytes = unsafe { std::slice::from_raw_parts(p, extent) };
        assert!(bytes[..100].iter().all(|&b| b == 0));
        assert!(bytes[100..].iter().all(|&b| b == ddi_kmem::REDZONE_BYTE));
        free(p.cast(), 100);
    });
    assert_eq!(a.bytes_in_use(), 0);
}
