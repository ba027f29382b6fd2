//! Each LiS quirk, observed through the plain DDI functions.

use ddi_kmem::{Arena, Checking, FailurePlan, KM_NOSLEEP, KM_SLEEP, Response, kmem_alloc, kmem_free, kmem_zalloc};
use std::ffi::c_void;

fn arena(checking: Checking) -> Arena {
    compat_lis::arena().checking(checking).response(Response::Report).build()
}

fn free(p: *mut c_void, size: usize) {
    // SAFETY: callers pass live buffers of the current arena (LiS ignores the size).
    unsafe { kmem_free(p, size) }
}

#[test]
fn size_zero_returns_a_pointer_to_zero_bytes() {
    for checking in [Checking::OFF, Checking::FULL] {
        let a = arena(checking);
        a.run(|| {
            let p = kmem_alloc(0, KM_SLEEP);
            assert!(!p.is_null());
            let q = kmem_zalloc(0, KM_NOSLEEP);
            assert!(!q.is_null());
            assert_ne!(p, q);
            free(p, 0);
            free(q, 0);
        });
        assert_eq!(a.bytes_in_use(), 0);
        assert_eq!(a.stats().errors, 0);
    }
}

#[test]
fn km_sleep_fails_at_once_under_the_budget() {
    let a = compat_lis::arena().budget(4096).checking(Checking::FULL).build();
    a.run(|| {
        let held: Vec<_> = std::iter::from_fn(|| Some(kmem_alloc(64, KM_SLEEP)).filter(|p| !p.is_null())).collect();
        assert!(!held.is_empty());
        // The loop above already ended on a KM_SLEEP that returned NULL without sleeping.
        assert!(kmem_alloc(64, KM_SLEEP).is_null());
        assert_eq!(a.stats().sleeps, 0);
        held.into_iter().for_each(|p| free(p, 64));
    });
    assert_eq!(a.bytes_in_use(), 0);
}

#[test]
fn km_sleep_is_eligible_for_failure_injection() {
    let a = arena(Checking::FULL);
    a.inject(FailurePlan::Always);
    a.run(|| assert!(kmem_alloc(64, KM_SLEEP).is_null()));
    assert_eq!(a.stats().injected, 1);
}

#[test]
fn hidden_header_destroys_alignment() {
    for checking in [Checking::OFF, Checking::FULL] {
        let a = arena(checking);
        a.run(|| {
            for size in [1, 100, 120, 1000, 4000, 60_000] {
                let p = kmem_alloc(size, KM_SLEEP);
                // The underlying kmalloc extent is aligned to its power of two (>= 128 here),
                // and the pointer sits 64 bytes into it: 64-aligned, never 128-aligned.
                assert_eq!(p.addr() % 64, 0, "{size}");
                assert_ne!(p.addr() % 128, 0, "{size}");
                free(p, size);
            }
        });
        assert_eq!(a.alignment(120, KM_SLEEP), Some(64));
        assert_eq!(a.bytes_in_use(), 0);
    }
}

#[test]
fn free_ignores_the_size_argument() {
    for checking in [Checking::OFF, Checking::FULL] {
        let a = arena(checking);
        a.run(|| {
            let p = kmem_alloc(100, KM_SLEEP);
            free(p, 7); // any size: the header knows
            let q = kmem_alloc(50_000, KM_SLEEP);
            free(q, 1);
        });
        assert_eq!(a.bytes_in_use(), 0, "{checking:?}");
        assert_eq!(a.stats().errors, 0);
    }
}

#[test]
fn requests_round_to_16_plus_header_and_guard() {
    let a = arena(Checking::OFF);
    // 100 -> 112 + 64 + 8 = 184 -> the 256 class, of which 192 bytes follow the pointer.
    assert_eq!(a.extent(100), Some(192));
    // 48 -> 48 + 72 = 120 fits the 128 class; 49 rounds to 64, and 64 + 72 = 136 does not.
    assert_eq!(a.extent(48), Some(64));
    assert_eq!(a.extent(49), Some(192));
}

#[test]
fn zalloc_zeroes_only_the_request() {
    let a = arena(Checking::FULL);
    a.run(|| {
        let p = kmem_zalloc(100, KM_SLEEP).cast::<u8>();
        // SAFETY: the checking arena initialises the whole extent.
        let bytes = unsafe { std::slice::from_raw_parts(p, 192) };
        assert!(bytes[..100].iter().all(|&b| b == 0));
        assert!(bytes[100..].iter().all(|&b| b == ddi_kmem::REDZONE_BYTE));
        free(p.cast(), 100);
    });
    assert_eq!(a.bytes_in_use(), 0);
}

#[test]
fn large_requests_use_pages() {
    let a = arena(Checking::OFF);
    a.run(|| {
        let p = kmem_alloc(200_000, KM_NOSLEEP);
        assert!(!p.is_null());
        free(p, 0);
    });
    assert_eq!(a.bytes_in_use(), 0);
}
