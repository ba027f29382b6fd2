//! The statements of the `kmem_alloc(9)` / `kmem_zalloc(9)` / `kmem_free(9)` pages that this
//! crate implements natively (Linux Fast-STREAMS semantics), one test each, named after the
//! statement.
//!
//! Every test uses its own arena, which panics on any misuse, and ends with nothing in use.

use ddi_kmem::{
    Arena, CACHE_LINE, Checking, KM_CACHEALIGN, KM_DMA, KM_NOSLEEP, KM_PHYSCONTIG, KM_SLEEP, MAX_PAGE_ORDER, PAGE_SIZE,
    UNINIT_PATTERN, free_pages, get_free_pages, interrupt, kmem_alloc, kmem_free, kmem_zalloc,
};
use std::ffi::c_void;
use std::sync::mpsc;

/// A checking arena that panics on misuse.
fn arena(name: &str) -> Arena {
    Arena::builder().name(name).checking(Checking::FULL).build()
}

/// An arena with the given checks.
fn arena_with(name: &str, checking: Checking) -> Arena {
    Arena::builder().name(name).checking(checking).build()
}

/// Both kinds of arena: the checked allocator and the unchecked fast path.
fn both(name: &str) -> [Arena; 2] {
    [arena_with(&format!("{name}-full"), Checking::FULL), arena_with(&format!("{name}-off"), Checking::OFF)]
}

/// Nothing in use and no misuse recorded.
fn assert_clean(arena: &Arena) {
    let s = arena.stats();
    assert_eq!(s.errors, 0, "misuse recorded in {}: {:?}", arena.name(), arena.errors());
    assert_eq!(arena.bytes_in_use(), 0, "bytes left in use in {}", arena.name());
    assert_eq!(s.allocations, s.frees, "allocations and frees differ in {}", arena.name());
}

fn addr(p: *mut c_void) -> usize {
    p.addr()
}

/// A buffer pointer handed back from a thread that allocated it.
struct SendPtr(*mut c_void);

// SAFETY: a kmem buffer may be used and freed from any thread; the pointer is only moved.
unsafe impl Send for SendPtr {}

/// Frees `p` (allocated with `size` in the current arena).
fn free(p: *mut c_void, size: usize) {
    // SAFETY: every caller passes a live buffer of the current arena and its allocation size.
    unsafe { kmem_free(p, size) };
}

#[test]
fn size_zero_returns_null_regardless_of_flag() {
    for a in both("zero") {
        a.run(|| {
            assert!(kmem_alloc(0, KM_SLEEP).is_null());
            assert!(kmem_alloc(0, KM_NOSLEEP).is_null());
            assert!(kmem_alloc(0, KM_SLEEP | KM_CACHEALIGN).is_null());
            assert!(kmem_zalloc(0, KM_SLEEP).is_null());
            assert!(kmem_zalloc(0, KM_NOSLEEP).is_null());
        });
        assert_eq!(a.extent(0), None);
        let s = a.stats();
        assert_eq!((s.allocations, s.failures), (0, 0), "size 0 is neither an allocation nor a failure");
        assert_clean(&a);
    }
}

#[test]
fn kmem_free_null_zero_is_legal() {
    for a in both("free-null") {
        a.run(|| free(std::ptr::null_mut(), 0));
        assert_eq!(a.stats().frees, 0);
        assert_clean(&a);
    }
}

#[test]
fn requests_round_up_to_power_of_two_classes_from_32_to_131072_each_aligned_to_its_class() {
    for a in both("classes") {
        a.run(|| {
            let mut class = 32;
            while class <= 131_072 {
                // The smallest and the largest request the class serves.
                let smallest = if class == 32 { 1 } else { class / 2 + 1 };
                for size in [smallest, class] {
                    assert_eq!(a.extent(size), Some(class), "extent of {size}");
                    assert_eq!(a.alignment(size, KM_SLEEP), Some(class), "alignment of {size}");
                    let p = kmem_alloc(size, KM_SLEEP);
                    assert!(!p.is_null(), "kmem_alloc({size}) failed");
                    assert_eq!(addr(p) % class, 0, "kmem_alloc({size}) not aligned to {class}");
                    assert_eq!(a.bytes_in_use(), class, "a request of {size} is charged its class");
                    assert_eq!(a.stats().class(class).expect("class").buffers_in_use, 1);
                    free(p, size);
                }
                class *= 2;
            }
        });
        assert_clean(&a);
    }
}

#[test]
fn a_request_of_120_bytes_gets_128_bytes_aligned_to_128() {
    for a in both("120") {
        a.run(|| {
            let p = kmem_alloc(120, KM_NOSLEEP);
            assert!(!p.is_null());
            assert_eq!(addr(p) % 128, 0);
            assert_eq!(a.bytes_in_use(), 128);
            free(p, 120);
        });
        assert_clean(&a);
    }
}

#[test]
fn small_and_boundary_requests_map_to_the_enclosing_class() {
    for a in both("boundaries") {
        a.run(|| {
            for (size, class) in [(1, 32), (32, 32), (33, 64), (4096, 4096), (4097, 8192), (131_072, 131_072)] {
                let p = kmem_alloc(size, KM_SLEEP);
                assert!(!p.is_null(), "kmem_alloc({size})");
                assert_eq!(addr(p) % class, 0, "kmem_alloc({size}) aligned to {class}");
                assert_eq!(a.bytes_in_use(), class, "kmem_alloc({size}) charged {class}");
                free(p, size);
            }
        });
        assert_clean(&a);
    }
}

#[test]
fn extents_larger_than_131072_bytes_are_not_allocated() {
    for a in both("oversize") {
        a.run(|| {
            assert!(kmem_alloc(131_073, KM_NOSLEEP).is_null());
            assert!(kmem_alloc(131_073, KM_SLEEP).is_null(), "not even with KM_SLEEP");
            assert!(kmem_zalloc(1 << 20, KM_SLEEP).is_null());
        });
        assert_eq!(a.extent(131_073), None);
        assert_eq!(a.alignment(131_073, KM_SLEEP), None);
        let s = a.stats();
        assert_eq!(s.failures, 3, "each oversize request counts as a failure");
        assert_eq!(s.errors, 0, "an oversize request is not a misuse");
        assert_clean(&a);
    }
}

#[test]
fn get_free_pages_serves_larger_extents_page_aligned_and_free_pages_returns_them() {
    for a in both("pages") {
        a.run(|| {
            for order in [0, 1, 6] {
                let bytes = PAGE_SIZE << order;
                let p = get_free_pages(KM_SLEEP, order);
                assert!(!p.is_null(), "get_free_pages(order {order})");
                assert_eq!(addr(p) % PAGE_SIZE, 0, "page aligned");
                assert_eq!(a.bytes_in_use(), bytes);
                // The whole extent is usable.
                let bp = p.cast::<u8>();
                // SAFETY: `p` is `bytes` bytes long; the first and the last byte are written.
                unsafe { bp.write(1) };
                // SAFETY: as above, `bytes - 1` is inside the extent.
                unsafe { bp.wrapping_add(bytes - 1).write(2) };
                // SAFETY: `p` came from get_free_pages(_, order) in this arena, freed once.
                unsafe { free_pages(p, order) };
                assert_eq!(a.bytes_in_use(), 0);
            }
            assert!(get_free_pages(KM_SLEEP, MAX_PAGE_ORDER + 1).is_null(), "order above MAX_PAGE_ORDER");
            // SAFETY: free_pages(NULL, _) is ignored.
            unsafe { free_pages(std::ptr::null_mut(), 3) };
        });
        let pages = a.stats().classes.last().expect("pages path").clone();
        assert_eq!(pages.size, None);
        assert_eq!((pages.allocations, pages.frees), (3, 3));
        assert_clean(&a);
    }
}

#[test]
fn km_cachealign_starts_a_small_request_on_a_cache_line() {
    for a in both("cachealign") {
        a.run(|| {
            assert_eq!(a.alignment(20, KM_CACHEALIGN), Some(CACHE_LINE));
            assert_eq!(a.alignment(20, KM_NOSLEEP | KM_CACHEALIGN), Some(CACHE_LINE));
            // Several at once, so at least one would be off a cache line without the flag.
            let ps: Vec<*mut c_void> = (0..4).map(|_| kmem_alloc(20, KM_SLEEP | KM_CACHEALIGN)).collect();
            for &p in &ps {
                assert!(!p.is_null());
                assert_eq!(addr(p) % CACHE_LINE, 0, "KM_CACHEALIGN buffer not on a cache line");
            }
            assert_eq!(a.bytes_in_use(), 4 * CACHE_LINE, "padded out to a full cache line");
            assert_eq!(a.stats().class(CACHE_LINE).expect("class").buffers_in_use, 4);
            // Freed with the size that was asked for.
            for p in ps {
                free(p, 20);
            }
            assert_eq!(a.stats().class(CACHE_LINE).expect("class").buffers_in_use, 0);
        });
        assert_clean(&a);
    }
}

#[test]
fn km_cachealign_buffers_and_plain_small_buffers_coexist_on_the_unchecked_path() {
    // Checking::OFF tells a 20-byte KM_CACHEALIGN buffer (64-byte class) from a plain one
    // (32-byte class) at kmem_free(p, 20) by asking the cache-line class whether it owns it.
    let a = arena_with("cachealign-off-mixed", Checking::OFF);
    a.run(|| {
        let plain: Vec<*mut c_void> = (0..3).map(|_| kmem_alloc(20, KM_NOSLEEP)).collect();
        let aligned: Vec<*mut c_void> = (0..3).map(|_| kmem_alloc(20, KM_NOSLEEP | KM_CACHEALIGN)).collect();
        assert_eq!(a.bytes_in_use(), 3 * 32 + 3 * 64);
        for (p, q) in plain.into_iter().zip(aligned) {
            free(p, 20);
            free(q, 20);
        }
        let s = a.stats();
        assert_eq!(s.class(32).expect("class").frees, 3, "plain buffers back to the 32-byte class");
        assert_eq!(s.class(64).expect("class").frees, 3, "cache-aligned buffers back to the 64-byte class");
        // Both classes hand their buffers out again correctly.
        let p = kmem_alloc(20, KM_NOSLEEP | KM_CACHEALIGN);
        assert_eq!(addr(p) % CACHE_LINE, 0);
        let q = kmem_alloc(32, KM_NOSLEEP);
        assert_eq!(addr(q) % 32, 0);
        assert_ne!(addr(p), addr(q));
        free(p, 20);
        free(q, 32);
    });
    assert_clean(&a);
}

#[test]
fn km_cachealign_does_not_pad_requests_above_half_a_cache_line() {
    let a = arena("cachealign-large");
    a.run(|| {
        let p = kmem_alloc(40, KM_NOSLEEP | KM_CACHEALIGN);
        assert_eq!(addr(p) % 64, 0, "a 40-byte request lands in the 64-byte class anyway");
        assert_eq!(a.bytes_in_use(), 64);
        free(p, 40);
        let q = kmem_alloc(100, KM_NOSLEEP | KM_CACHEALIGN);
        assert_eq!(a.bytes_in_use(), 128);
        free(q, 100);
    });
    assert_clean(&a);
}

#[test]
fn kmem_zalloc_zeroes_the_entire_memory_extent() {
    for a in both("zalloc") {
        a.run(|| {
            // Dirty the extent first where that is allowed (no redzone on the unchecked path),
            // so that the zeroes cannot come from fresh memory.
            if a.checking() == Checking::OFF {
                let p = kmem_alloc(100, KM_SLEEP).cast::<u8>();
                // SAFETY: the extent of a 100-byte request is the 128-byte class.
                unsafe { p.write_bytes(0xa5, 128) };
                free(p.cast(), 100);
            }
            let p = kmem_zalloc(100, KM_SLEEP).cast::<u8>();
            assert!(!p.is_null());
            // SAFETY: the 128-byte extent of a 100-byte request, all initialised by kmem_zalloc.
            let extent = unsafe { std::slice::from_raw_parts(p, 128) };
            assert!(extent.iter().all(|&b| b == 0), "kmem_zalloc left non-zero bytes in the extent");
            free(p.cast(), 100);
        });
        assert_clean(&a);
    }
}

#[test]
fn kmem_alloc_memory_is_not_zeroed_in_a_checking_arena() {
    let a = arena("uninit");
    a.run(|| {
        let p = kmem_alloc(100, KM_SLEEP).cast::<u8>();
        // SAFETY: a checking arena paints the requested bytes with UNINIT_PATTERN.
        let bytes = unsafe { std::slice::from_raw_parts(p, 100) };
        let pat = UNINIT_PATTERN.to_le_bytes();
        assert_eq!(pat, [0xfe, 0xca, 0xdd, 0xba]);
        for (i, &b) in bytes.iter().enumerate() {
            assert_eq!(b, pat[i % 4], "byte {i}");
        }
        assert!(bytes.iter().any(|&b| b != 0));
        free(p.cast(), 100);
    });
    assert_clean(&a);
}

#[test]
fn km_physcontig_and_km_dma_are_accepted() {
    for a in both("physcontig") {
        a.run(|| {
            for flags in [KM_SLEEP | KM_PHYSCONTIG, KM_NOSLEEP | KM_DMA, KM_NOSLEEP | KM_CACHEALIGN | KM_DMA] {
                let p = kmem_alloc(300, flags);
                assert!(!p.is_null(), "{flags} refused");
                assert_eq!(addr(p) % 512, 0);
                free(p, 300);
                let z = kmem_zalloc(300, flags);
                assert!(!z.is_null(), "{flags} refused by kmem_zalloc");
                free(z, 300);
            }
        });
        assert_clean(&a);
    }
}

#[test]
fn km_sleep_may_wait_and_is_guaranteed_to_succeed_once_memory_is_freed() {
    for checking in [Checking::FULL, Checking::OFF] {
        let a = Arena::builder().name("sleep-succeeds").checking(checking).budget(256).build();
        let held = a.alloc(256, KM_SLEEP);
        assert!(!held.is_null());
        let (started_tx, started_rx) = mpsc::channel();
        let sleeper = {
            let a = a.clone();
            std::thread::spawn(move || {
                a.run(|| {
                    started_tx.send(()).expect("main waits");
                    // The budget is full: this can only return after the main thread frees.
                    SendPtr(kmem_alloc(200, KM_SLEEP))
                })
            })
        };
        started_rx.recv().expect("sleeper started");
        // The sleeper is seen waiting: its KM_SLEEP allocation did wait for the free.
        while a.waiting() == 0 {
            std::thread::yield_now();
        }
        // SAFETY: `held` is a live 256-byte buffer of `a`, freed once.
        unsafe { a.free(held, 256) };
        let got = sleeper.join().expect("sleeper panicked").0;
        assert!(!got.is_null(), "KM_SLEEP returned NULL");
        assert_eq!(a.bytes_in_use(), 256);
        a.run(|| free(got, 200));
        assert_eq!(a.stats().failures, 0, "a KM_SLEEP allocation never fails");
        assert!(a.stats().sleeps >= 1, "the KM_SLEEP allocation slept");
        assert_clean(&a);
    }
}

#[test]
fn km_nosleep_returns_null_at_once_when_the_budget_cannot_cover_the_request() {
    for checking in [Checking::FULL, Checking::OFF] {
        let a = Arena::builder().name("nosleep-null").checking(checking).budget(256).build();
        a.run(|| {
            let p = kmem_alloc(200, KM_NOSLEEP);
            assert!(!p.is_null());
            assert!(kmem_alloc(1, KM_NOSLEEP).is_null(), "budget full");
            assert!(kmem_zalloc(1, KM_NOSLEEP).is_null(), "budget full");
            assert!(get_free_pages(KM_NOSLEEP, 0).is_null(), "budget full");
            assert!(kmem_alloc(512, KM_NOSLEEP).is_null(), "larger than the budget");
            assert_eq!(a.stats().failures, 4);
            free(p, 200);
            let q = kmem_alloc(1, KM_NOSLEEP);
            assert!(!q.is_null(), "room again after the free");
            free(q, 1);
        });
        assert_eq!(a.stats().errors, 0);
        assert_clean(&a);
    }
}

#[test]
fn kmem_free_may_be_called_from_interrupt_context() {
    for a in both("free-in-interrupt") {
        a.run(|| {
            let p = kmem_alloc(100, KM_SLEEP);
            let q = get_free_pages(KM_SLEEP, 0);
            interrupt(|| {
                free(p, 100);
                // SAFETY: `q` came from get_free_pages(_, 0) in this arena, freed once.
                unsafe { free_pages(q, 0) };
                free(std::ptr::null_mut(), 0);
            });
        });
        assert_clean(&a);
    }
}

#[test]
fn km_nosleep_may_be_used_from_interrupt_context() {
    for a in both("nosleep-in-interrupt") {
        a.run(|| {
            let (p, z, g) =
                interrupt(|| (kmem_alloc(100, KM_NOSLEEP), kmem_zalloc(40, KM_NOSLEEP), get_free_pages(KM_NOSLEEP, 1)));
            assert!(!p.is_null() && !z.is_null() && !g.is_null());
            free(p, 100);
            free(z, 40);
            // SAFETY: `g` came from get_free_pages(_, 1) in this arena, freed once.
            unsafe { free_pages(g, 1) };
        });
        assert_clean(&a);
    }
}
