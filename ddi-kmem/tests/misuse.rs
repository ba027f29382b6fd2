//! Each misuse the arena detects, under both responses.
//!
//! `Response::Panic`: the panic names the DDI call and the problem. `Response::Report`: the
//! exact [`KmemError`], the error count, and an arena that still works and ends with nothing
//! in use after a correct cleanup.

use ddi_kmem::{
    Arena, Checking, FREE_PATTERN, KM_NOSLEEP, KM_SLEEP, KmemError, REDZONE_BYTE, Response, Site, free_pages,
    get_free_pages, interrupt, kmem_alloc, kmem_free,
};
use std::panic::{AssertUnwindSafe, catch_unwind};

fn arena(name: &str, checking: Checking, response: Response) -> Arena {
    Arena::builder().name(name).checking(checking).response(response).build()
}

fn report(name: &str) -> Arena {
    arena(name, Checking::FULL, Response::Report)
}

fn panicking(name: &str) -> Arena {
    arena(name, Checking::FULL, Response::Panic)
}

/// Frees in `a` (misuses included: a checking arena refuses them, the unchecked path refuses
/// the ones it can recognise, which are the only ones these tests pass it).
#[track_caller]
fn free_in(a: &Arena, p: *mut u8, size: usize) {
    // SAFETY: `a` either checks (every call is validated against its table without touching
    // memory it does not own) or the call is one the unchecked path recognises and refuses.
    unsafe { a.free(p, size) };
}

/// Runs `f`, which must panic, and returns the panic message.
fn panic_message(f: impl FnOnce()) -> String {
    let e = catch_unwind(AssertUnwindSafe(f)).expect_err("the misuse must panic");
    e.downcast_ref::<String>()
        .cloned()
        .or_else(|| e.downcast_ref::<&str>().map(|s| (*s).to_string()))
        .expect("a string panic")
}

/// The file and line of an audit site.
fn at(site: Option<Site>) -> Option<(&'static str, u32)> {
    site.map(|s| (s.0.file(), s.0.line()))
}

const HERE: &str = file!();

/// The arena still works: a fresh allocation succeeds and is freed, and nothing is in use.
fn assert_arena_healthy(a: &Arena) {
    let p = a.alloc(100, KM_NOSLEEP);
    assert!(!p.is_null());
    free_in(a, p, 100);
    assert_eq!(a.bytes_in_use(), 0);
}

/// `e` without its audit sites, to compare the other fields exactly.
fn strip(e: &KmemError) -> KmemError {
    let mut e = e.clone();
    match &mut e {
        KmemError::BadSize { allocated_at, .. }
        | KmemError::BadBase { allocated_at, .. }
        | KmemError::Redzone { allocated_at, .. } => *allocated_at = None,
        KmemError::DuplicateFree { allocated_at, freed_at, .. }
        | KmemError::ModifiedAfterFree { allocated_at, freed_at, .. } => {
            *allocated_at = None;
            *freed_at = None;
        }
        _ => {}
    }
    e
}

fn hex(p: *mut u8) -> String {
    format!("{:#x}", p.addr())
}

// --- wrong size on free --------------------------------------------------------------------

#[test]
fn bad_size_is_reported_and_the_free_refused() {
    let a = report("bad-size");
    let (p, line) = (a.alloc(100, KM_NOSLEEP), line!());
    free_in(&a, p, 99);
    let errors = a.take_errors();
    let [KmemError::BadSize { call, addr, free_size, alloc_size, allocated_at }] = errors.as_slice() else {
        panic!("expected one BadSize, got {errors:?}");
    };
    assert_eq!((*call, *addr, *free_size, *alloc_size), ("kmem_free", p.addr(), 99, 100));
    assert_eq!(at(*allocated_at), Some((HERE, line)));
    let text = errors[0].to_string();
    for part in ["kmem_free", "bad free", "free size (99)", "alloc size (100)", &hex(p), HERE] {
        assert!(text.contains(part), "{part:?} missing from {text:?}");
    }
    assert_eq!(a.stats().errors, 1);
    // Refused: the buffer is still allocated, and is freed correctly now.
    assert_eq!((a.bytes_in_use(), a.stats().frees), (128, 0));
    free_in(&a, p, 100);
    assert_eq!(a.stats().errors, 1);
    assert_arena_healthy(&a);
}

#[test]
fn bad_size_panics() {
    let a = panicking("bad-size-panic");
    let p = a.alloc(100, KM_NOSLEEP);
    let msg = panic_message(|| free_in(&a, p, 64));
    for part in ["kmem_free", "bad free", "free size (64) != alloc size (100)", &hex(p)] {
        assert!(msg.contains(part), "{part:?} missing from {msg:?}");
    }
    assert_eq!(a.bytes_in_use(), 128, "the free was refused");
    free_in(&a, p, 100);
    assert_eq!(a.stats().errors, 1);
    assert_arena_healthy(&a);
}

#[test]
fn free_pages_with_the_wrong_order_is_a_bad_size() {
    let a = report("pages-bad-order");
    a.run(|| {
        let g = get_free_pages(KM_SLEEP, 1);
        // SAFETY: a checking arena validates the order against its table and refuses.
        unsafe { free_pages(g, 0) };
        let errors: Vec<KmemError> = a.take_errors().iter().map(strip).collect();
        assert_eq!(
            errors,
            [KmemError::BadSize {
                call: "free_pages",
                addr: g.addr(),
                free_size: 4096,
                alloc_size: 8192,
                allocated_at: None
            }]
        );
        assert_eq!(a.bytes_in_use(), 8192, "refused");
        // SAFETY: `g` is still a live order-1 block of this arena, freed once.
        unsafe { free_pages(g, 1) };
    });
    assert_eq!(a.stats().errors, 1);
    assert_arena_healthy(&a);
}

// --- double free ---------------------------------------------------------------------------

#[test]
fn duplicate_free_is_reported_and_refused() {
    let a = report("dup");
    let (p, alloc_line) = (a.alloc(100, KM_NOSLEEP), line!());
    let free_line = line!() + 1;
    free_in(&a, p, 100);
    free_in(&a, p, 100);
    let errors = a.take_errors();
    let [KmemError::DuplicateFree { call, addr, size, allocated_at, freed_at }] = errors.as_slice() else {
        panic!("expected one DuplicateFree, got {errors:?}");
    };
    assert_eq!((*call, *addr, *size), ("kmem_free", p.addr(), 100));
    assert_eq!(at(*allocated_at), Some((HERE, alloc_line)));
    assert_eq!(at(*freed_at), Some((HERE, free_line)));
    let text = errors[0].to_string();
    for part in ["kmem_free", "duplicate free", &hex(p), "size=100", "allocated at", "first freed at", HERE] {
        assert!(text.contains(part), "{part:?} missing from {text:?}");
    }
    let s = a.stats();
    assert_eq!((s.errors, s.frees, s.allocations), (1, 1, 1), "the second free was not counted");
    assert_arena_healthy(&a);
}

#[test]
fn duplicate_free_panics() {
    let a = panicking("dup-panic");
    let p = a.alloc(64, KM_NOSLEEP);
    free_in(&a, p, 64);
    let msg = panic_message(|| free_in(&a, p, 64));
    assert!(msg.contains("kmem_free: duplicate free") && msg.contains(&hex(p)), "{msg}");
    assert_eq!(a.stats().errors, 1);
    assert_arena_healthy(&a);
}

// --- a pointer the arena never returned ----------------------------------------------------

#[test]
fn foreign_pointers_are_invalid_frees() {
    let a = report("foreign");
    let live = a.alloc(100, KM_NOSLEEP); // a live buffer, so the table is not empty
    let mut local = [0u64; 8];
    let mut vec = vec![0u8; 128];
    let lp = local.as_mut_ptr().cast::<u8>();
    let vp = vec.as_mut_ptr();
    free_in(&a, lp, 64);
    free_in(&a, vp, 128);
    let errors = a.take_errors();
    assert_eq!(
        errors,
        [
            KmemError::InvalidFree { call: "kmem_free", arena: "foreign".into(), addr: lp.addr(), size: 64 },
            KmemError::InvalidFree { call: "kmem_free", arena: "foreign".into(), addr: vp.addr(), size: 128 },
        ]
    );
    let text = errors[1].to_string();
    for part in ["kmem_free", "invalid free", "'foreign'", &hex(vp), "size=128"] {
        assert!(text.contains(part), "{part:?} missing from {text:?}");
    }
    // Nothing was touched: the local memory is intact and the arena unharmed.
    assert_eq!(local, [0; 8]);
    assert!(vec.iter().all(|&b| b == 0));
    assert_eq!(a.stats().errors, 2);
    assert_eq!(a.bytes_in_use(), 128);
    free_in(&a, live, 100);
    assert_arena_healthy(&a);
}

#[test]
fn a_pointer_from_another_arena_is_an_invalid_free() {
    let a = report("mine");
    let b = report("theirs");
    let p = b.alloc(100, KM_NOSLEEP);
    free_in(&a, p, 100);
    assert_eq!(
        a.take_errors(),
        [KmemError::InvalidFree { call: "kmem_free", arena: "mine".into(), addr: p.addr(), size: 100 }]
    );
    assert_eq!(b.bytes_in_use(), 128, "the other arena's buffer is untouched");
    free_in(&b, p, 100);
    assert_eq!(b.bytes_in_use(), 0);
    assert_arena_healthy(&a);
}

#[test]
fn foreign_pointer_panics() {
    let a = panicking("foreign-panic");
    let mut local = [0u8; 32];
    let lp = local.as_mut_ptr();
    let msg = panic_message(|| free_in(&a, lp, 32));
    assert!(msg.contains("kmem_free: invalid free") && msg.contains(&hex(lp)) && msg.contains("size=32"), "{msg}");
    assert_eq!(local, [0; 32]);
    assert_eq!(a.stats().errors, 1);
    assert_arena_healthy(&a);
}

// --- interior pointer ----------------------------------------------------------------------

#[test]
fn an_interior_pointer_is_a_bad_base() {
    let a = report("interior");
    let (p, line) = (a.alloc(100, KM_NOSLEEP), line!());
    let inside = p.wrapping_add(8);
    let last = p.wrapping_add(127); // the last byte of the 128-byte extent
    free_in(&a, inside, 100);
    free_in(&a, last, 100);
    let errors = a.take_errors();
    assert_eq!(
        errors.iter().map(strip).collect::<Vec<_>>(),
        [
            KmemError::BadBase {
                call: "kmem_free",
                addr: inside.addr(),
                base: p.addr(),
                alloc_size: 100,
                allocated_at: None
            },
            KmemError::BadBase {
                call: "kmem_free",
                addr: last.addr(),
                base: p.addr(),
                alloc_size: 100,
                allocated_at: None
            },
        ]
    );
    let KmemError::BadBase { allocated_at, .. } = &errors[0] else { unreachable!() };
    assert_eq!(at(*allocated_at), Some((HERE, line)));
    let text = errors[0].to_string();
    for part in ["kmem_free", "bad free", &hex(inside), &hex(p), "alloc size 100", HERE] {
        assert!(text.contains(part), "{part:?} missing from {text:?}");
    }
    assert_eq!(a.bytes_in_use(), 128, "refused");
    free_in(&a, p, 100);
    assert_eq!(a.stats().errors, 2);
    assert_arena_healthy(&a);
}

#[test]
fn interior_pointer_panics() {
    let a = panicking("interior-panic");
    let p = a.alloc(300, KM_NOSLEEP);
    let inside = p.wrapping_add(100);
    let msg = panic_message(|| free_in(&a, inside, 300));
    assert!(msg.contains("kmem_free: bad free") && msg.contains(&hex(inside)) && msg.contains(&hex(p)), "{msg}");
    free_in(&a, p, 300);
    assert_arena_healthy(&a);
}

// --- NULL with a non-zero size -------------------------------------------------------------

#[test]
fn null_with_a_size_is_reported_even_with_checks_off() {
    for checking in [Checking::FULL, Checking::OFF] {
        let a = arena("null-free", checking, Response::Report);
        free_in(&a, std::ptr::null_mut(), 10);
        a.run(|| {
            // SAFETY: NULL is never dereferenced; the call is reported in every arena.
            unsafe { kmem_free(std::ptr::null_mut(), 4096) }
        });
        let errors = a.take_errors();
        assert_eq!(
            errors,
            [
                KmemError::NullFree { call: "kmem_free", size: 10 },
                KmemError::NullFree { call: "kmem_free", size: 4096 }
            ]
        );
        let text = errors[0].to_string();
        assert!(text.contains("kmem_free") && text.contains("NULL") && text.contains("size 10"), "{text}");
        assert_eq!(a.stats().errors, 2);
        assert_arena_healthy(&a);
    }
}

#[test]
fn null_with_a_size_panics_even_with_checks_off() {
    for checking in [Checking::FULL, Checking::OFF] {
        let a = arena("null-free-panic", checking, Response::Panic);
        let msg = panic_message(|| free_in(&a, std::ptr::null_mut(), 7));
        assert!(msg.contains("kmem_free: invalid free: NULL buffer with size 7"), "{msg}");
        assert_eq!(a.stats().errors, 1);
        assert_arena_healthy(&a);
    }
}

// --- what the unchecked path still catches --------------------------------------------------

#[test]
fn with_checks_off_a_size_no_allocation_can_have_is_refused() {
    let a = arena("off-sizes", Checking::OFF, Response::Report);
    let p = a.alloc(100, KM_NOSLEEP);
    free_in(&a, p, 0);
    free_in(&a, p, 200_000);
    assert_eq!(
        a.take_errors(),
        [
            KmemError::InvalidFree { call: "kmem_free", arena: "off-sizes".into(), addr: p.addr(), size: 0 },
            KmemError::InvalidFree { call: "kmem_free", arena: "off-sizes".into(), addr: p.addr(), size: 200_000 },
        ]
    );
    assert_eq!((a.bytes_in_use(), a.stats().frees), (128, 0), "both frees were refused");
    free_in(&a, p, 100);
    assert_eq!(a.stats().errors, 2);
    assert_arena_healthy(&a);
}

#[test]
fn with_checks_off_a_size_no_allocation_can_have_panics() {
    let a = arena("off-sizes-panic", Checking::OFF, Response::Panic);
    let p = a.alloc(100, KM_NOSLEEP);
    let msg = panic_message(|| free_in(&a, p, 0));
    assert!(msg.contains("kmem_free: invalid free") && msg.contains(&hex(p)) && msg.contains("size=0"), "{msg}");
    let msg = panic_message(|| free_in(&a, p, 131_073));
    assert!(msg.contains("kmem_free: invalid free") && msg.contains("size=131073"), "{msg}");
    assert_eq!(a.bytes_in_use(), 128);
    free_in(&a, p, 100);
    assert_eq!(a.stats().errors, 2);
    assert_arena_healthy(&a);
}

#[test]
fn with_checks_on_a_size_no_allocation_can_have_is_a_bad_size() {
    let a = report("on-sizes");
    let p = a.alloc(100, KM_NOSLEEP);
    free_in(&a, p, 0);
    free_in(&a, p, 200_000);
    let errors: Vec<KmemError> = a.take_errors().iter().map(strip).collect();
    assert_eq!(
        errors,
        [
            KmemError::BadSize { call: "kmem_free", addr: p.addr(), free_size: 0, alloc_size: 100, allocated_at: None },
            KmemError::BadSize {
                call: "kmem_free",
                addr: p.addr(),
                free_size: 200_000,
                alloc_size: 100,
                allocated_at: None
            },
        ]
    );
    free_in(&a, p, 100);
    assert_arena_healthy(&a);
}

// --- write past the requested size ---------------------------------------------------------

/// Writes `byte` at `p + offset`.
fn poke(p: *mut u8, offset: usize, byte: u8) {
    // SAFETY: every caller passes an offset inside the block a checking arena gave the buffer
    // (the extent plus its guard bytes), which the arena owns until it is dropped.
    unsafe { p.wrapping_add(offset).write(byte) };
}

#[test]
fn a_write_past_the_requested_size_is_a_redzone_violation() {
    let a = report("redzone");
    let (p, line) = (a.alloc(100, KM_NOSLEEP), line!());
    poke(p, 100, 0x00);
    free_in(&a, p, 100);
    let errors = a.take_errors();
    assert_eq!(
        errors.iter().map(strip).collect::<Vec<_>>(),
        [KmemError::Redzone {
            call: "kmem_free",
            addr: p.addr(),
            size: 100,
            offset: 100,
            found: 0x00,
            expected: REDZONE_BYTE,
            allocated_at: None
        }]
    );
    let KmemError::Redzone { allocated_at, .. } = &errors[0] else { unreachable!() };
    assert_eq!(at(*allocated_at), Some((HERE, line)));
    let text = errors[0].to_string();
    for part in ["kmem_free", "redzone violation", &hex(p), "size=100", "0x64", "0xbb", HERE] {
        assert!(text.contains(part), "{part:?} missing from {text:?}");
    }
    // The free itself went through (the caller is done with it), the block is left out of use.
    let s = a.stats();
    assert_eq!((s.errors, s.frees), (1, 1));
    assert_eq!(a.bytes_in_use(), 0);
    let q = a.alloc(100, KM_NOSLEEP);
    assert_ne!(q.addr(), p.addr(), "a damaged block is never handed out again");
    free_in(&a, q, 100);
    assert!(a.take_errors().is_empty());
    assert_arena_healthy(&a);
}

#[test]
fn a_write_past_a_request_that_fills_its_class_hits_the_guard() {
    let a = report("redzone-guard");
    let p = a.alloc(128, KM_NOSLEEP);
    poke(p, 128, 0x11);
    free_in(&a, p, 128);
    assert_eq!(
        a.take_errors().iter().map(strip).collect::<Vec<_>>(),
        [KmemError::Redzone {
            call: "kmem_free",
            addr: p.addr(),
            size: 128,
            offset: 128,
            found: 0x11,
            expected: REDZONE_BYTE,
            allocated_at: None
        }]
    );
    assert_arena_healthy(&a);
}

#[test]
fn a_write_past_a_kmem_zalloc_request_is_found_in_the_zeroed_extent() {
    let a = report("redzone-zalloc");
    let p = a.zalloc(100, KM_NOSLEEP);
    poke(p, 110, 0x5a);
    free_in(&a, p, 100);
    assert_eq!(
        a.take_errors().iter().map(strip).collect::<Vec<_>>(),
        [KmemError::Redzone {
            call: "kmem_free",
            addr: p.addr(),
            size: 100,
            offset: 110,
            found: 0x5a,
            expected: 0,
            allocated_at: None
        }]
    );
    assert_arena_healthy(&a);
}

#[test]
fn redzone_violation_panics() {
    let a = panicking("redzone-panic");
    let p = a.alloc(50, KM_NOSLEEP);
    poke(p, 50, 0);
    let msg = panic_message(|| free_in(&a, p, 50));
    for part in ["kmem_free", "redzone violation", &hex(p), "size=50"] {
        assert!(msg.contains(part), "{part:?} missing from {msg:?}");
    }
    assert_eq!(a.stats().errors, 1);
    assert_eq!(a.bytes_in_use(), 0, "the free was accounted before the panic");
    assert_arena_healthy(&a);
}

// --- write after free ----------------------------------------------------------------------

#[test]
fn a_write_after_free_is_found_by_verify() {
    let a = report("modified");
    let (p, alloc_line) = (a.alloc(100, KM_NOSLEEP), line!());
    let free_line = line!() + 1;
    free_in(&a, p, 100);
    poke(p, 5, 0x00); // through the stale pointer: the block is still the arena's
    assert_eq!(a.verify(), 1);
    let errors = a.take_errors();
    let pat = FREE_PATTERN.to_le_bytes();
    assert_eq!(
        errors.iter().map(strip).collect::<Vec<_>>(),
        [KmemError::ModifiedAfterFree {
            call: "Arena::verify",
            addr: p.addr(),
            size: 100,
            offset: 5,
            expected: pat[5 % 4],
            found: 0x00,
            allocated_at: None,
            freed_at: None
        }]
    );
    let KmemError::ModifiedAfterFree { allocated_at, freed_at, .. } = &errors[0] else { unreachable!() };
    assert_eq!(at(*allocated_at), Some((HERE, alloc_line)));
    assert_eq!(at(*freed_at), Some((HERE, free_line)));
    let text = errors[0].to_string();
    for part in ["modified after being freed", &hex(p), "size=100", "offset 0x5", "allocated at", "freed at", HERE] {
        assert!(text.contains(part), "{part:?} missing from {text:?}");
    }
    assert_eq!(a.stats().errors, 1);
    assert_eq!(a.verify(), 0, "the damaged block is out of use and reported once");
    let q = a.alloc(100, KM_NOSLEEP);
    assert_ne!(q.addr(), p.addr());
    free_in(&a, q, 100);
    assert_arena_healthy(&a);
}

#[test]
fn a_write_after_free_is_found_when_the_block_would_be_reused() {
    let a = report("modified-reuse");
    let p = a.alloc(100, KM_NOSLEEP);
    free_in(&a, p, 100);
    poke(p, 0, 0x42);
    let q = a.alloc(120, KM_NOSLEEP); // same class, same block layout: p's block is next
    assert!(!q.is_null());
    assert_ne!(q.addr(), p.addr(), "the damaged block is not handed out");
    assert_eq!(
        a.take_errors().iter().map(strip).collect::<Vec<_>>(),
        [KmemError::ModifiedAfterFree {
            call: "kmem_alloc",
            addr: p.addr(),
            size: 100,
            offset: 0,
            expected: FREE_PATTERN.to_le_bytes()[0],
            found: 0x42,
            allocated_at: None,
            freed_at: None
        }]
    );
    assert_eq!(a.bytes_in_use(), 128);
    free_in(&a, q, 120);
    assert_eq!(a.verify(), 0);
    assert_arena_healthy(&a);
}

#[test]
fn an_untouched_freed_block_is_reused() {
    // The control for the test above: without the write, the block comes back.
    let a = report("reuse");
    let p = a.alloc(100, KM_NOSLEEP);
    free_in(&a, p, 100);
    let q = a.alloc(120, KM_NOSLEEP);
    assert_eq!(q.addr(), p.addr());
    free_in(&a, q, 120);
    assert_eq!(a.stats().errors, 0);
    assert_arena_healthy(&a);
}

#[test]
fn write_after_free_panics_at_verify() {
    let a = panicking("modified-panic");
    let p = a.alloc(64, KM_NOSLEEP);
    free_in(&a, p, 64);
    poke(p, 63, 0);
    let msg = panic_message(|| {
        a.verify();
    });
    assert!(msg.contains("Arena::verify: buffer modified after being freed") && msg.contains(&hex(p)), "{msg}");
    assert_eq!(a.stats().errors, 1);
    assert_arena_healthy(&a);
}

#[test]
fn write_after_free_panics_at_reuse() {
    let a = panicking("modified-reuse-panic");
    let p = a.alloc(64, KM_NOSLEEP);
    free_in(&a, p, 64);
    poke(p, 1, 0);
    let msg = panic_message(|| {
        a.alloc(64, KM_NOSLEEP);
    });
    assert!(msg.contains("kmem_alloc: buffer modified after being freed") && msg.contains(&hex(p)), "{msg}");
    assert_eq!(a.stats().errors, 1);
    // The allocation that panicked handed nothing out, so nothing may stay charged.
    assert_eq!(a.bytes_in_use(), 0, "the panicking allocation left its charge behind");
    assert_eq!(a.stats().allocations, 1);
    assert_arena_healthy(&a);
}

// --- audit off -----------------------------------------------------------------------------

#[test]
fn without_audit_reports_carry_no_sites() {
    let a = arena("no-audit", Checking { audit: false, ..Checking::FULL }, Response::Report);
    let p = a.alloc(100, KM_NOSLEEP);
    free_in(&a, p, 99);
    free_in(&a, p, 100);
    free_in(&a, p, 100);
    let errors = a.take_errors();
    assert!(matches!(errors[0], KmemError::BadSize { allocated_at: None, .. }), "{errors:?}");
    assert!(matches!(errors[1], KmemError::DuplicateFree { allocated_at: None, freed_at: None, .. }), "{errors:?}");
    assert!(errors.iter().all(|e| !e.to_string().contains(" at ")), "{errors:?}");
    assert_arena_healthy(&a);
}

// --- KM_SLEEP from interrupt context -------------------------------------------------------

#[test]
fn km_sleep_from_interrupt_context_is_reported() {
    let a = report("intr");
    let p = a.run(|| interrupt(|| kmem_alloc(100, KM_SLEEP)));
    assert_eq!(a.take_errors(), [KmemError::SleepInInterrupt { call: "kmem_alloc", size: 100 }]);
    assert_eq!(a.stats().errors, 1);
    free_in(&a, p.cast(), 100);
    assert_arena_healthy(&a);
}

#[test]
fn km_sleep_from_interrupt_context_panics() {
    let a = panicking("intr-panic");
    let msg = panic_message(|| {
        a.run(|| interrupt(|| kmem_alloc(100, KM_SLEEP)));
    });
    assert!(msg.contains("kmem_alloc: KM_SLEEP allocation of 100 bytes from interrupt context"), "{msg}");
    assert_eq!(a.stats().errors, 1);
    assert_arena_healthy(&a);
}

#[test]
fn correct_use_through_the_ddi_functions_reports_nothing() {
    let a = panicking("clean");
    a.run(|| {
        let p = kmem_alloc(100, KM_SLEEP);
        // SAFETY: `p` is a live 100-byte buffer of this arena, freed once.
        unsafe { kmem_free(p, 100) };
    });
    assert_eq!(a.verify(), 0);
    assert_eq!(a.stats().errors, 0);
    assert_arena_healthy(&a);
}

// --- reports name the call that found them ---------------------------------------------------

#[test]
fn write_after_free_found_by_kmem_zalloc_names_kmem_zalloc() {
    let a = report("modified-zalloc");
    let p = a.alloc(64, KM_NOSLEEP);
    free_in(&a, p, 64);
    poke(p, 5, 0);
    let q = a.zalloc(64, KM_NOSLEEP);
    let errors = a.take_errors();
    assert!(
        matches!(errors.as_slice(), [KmemError::ModifiedAfterFree { call: "kmem_zalloc", offset: 5, .. }]),
        "{errors:?}"
    );
    free_in(&a, q, 64);
    assert_arena_healthy(&a);
}

#[test]
fn free_pages_with_an_impossible_order_is_reported_in_every_arena() {
    for checking in [Checking::OFF, Checking::FULL] {
        let a = arena("bad-order", checking, Response::Report);
        a.run(|| {
            let p = ddi_kmem::get_free_pages(KM_NOSLEEP, ddi_kmem::MAX_PAGE_ORDER);
            assert!(!p.is_null());
            // SAFETY: an order no allocation can have is refused and reported; `p` stays live.
            unsafe { ddi_kmem::free_pages(p, ddi_kmem::MAX_PAGE_ORDER + 1) };
            let errors = a.take_errors();
            assert!(
                matches!(errors.as_slice(), [KmemError::InvalidFree { call: "free_pages", .. }]),
                "{checking:?}: {errors:?}"
            );
            // SAFETY: `p` came from get_free_pages with MAX_PAGE_ORDER and is still live.
            unsafe { ddi_kmem::free_pages(p, ddi_kmem::MAX_PAGE_ORDER) };
        });
        assert_eq!(a.bytes_in_use(), 0);
    }
}
