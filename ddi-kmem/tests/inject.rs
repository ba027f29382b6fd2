//! Failure injection: which allocations a [`FailurePlan`] fails, and which it never fails.

use ddi_kmem::{
    Arena, Checking, FailurePlan, KM_NOSLEEP, KM_SLEEP, KmFlags, KmemError, Response, free_pages, get_free_pages,
    interrupt, kmem_alloc, kmem_free, kmem_zalloc,
};
use std::panic::{AssertUnwindSafe, catch_unwind};

fn arena(name: &str) -> Arena {
    Arena::builder().name(name).checking(Checking::FULL).build()
}

/// Allocates `size` with `flags` in `a` and frees it at once; whether it succeeded.
fn try_once(a: &Arena, size: usize, flags: KmFlags) -> bool {
    let p = a.alloc(size, flags);
    if p.is_null() {
        return false;
    }
    // SAFETY: `p` is a live buffer of `a` allocated with `size`, freed once.
    unsafe { a.free(p, size) };
    true
}

/// The outcomes of `n` non-sleeping allocations of `size`.
fn pattern(a: &Arena, n: usize, size: usize) -> Vec<bool> {
    (0..n).map(|_| try_once(a, size, KM_NOSLEEP)).collect()
}

#[test]
fn nth_fails_only_the_nth_eligible_allocation() {
    let a = arena("nth");
    a.inject(FailurePlan::Nth(3));
    assert_eq!(pattern(&a, 7, 64), [true, true, false, true, true, true, true]);
    let s = a.stats();
    assert_eq!((s.injected, s.failures), (1, 1));
    assert_eq!(s.class(64).expect("class").failures, 1);
    assert_eq!(a.bytes_in_use(), 0);
}

#[test]
fn every_nth_fails_every_nth_eligible_allocation() {
    let a = arena("every-nth");
    a.inject(FailurePlan::EveryNth(3));
    assert_eq!(pattern(&a, 9, 200), [true, true, false, true, true, false, true, true, false]);
    assert_eq!(a.stats().injected, 3);
    assert_eq!(a.bytes_in_use(), 0);
}

#[test]
fn every_first_is_always() {
    let a = arena("every-1");
    a.inject(FailurePlan::EveryNth(1));
    assert_eq!(pattern(&a, 4, 8), [false; 4]);
    assert_eq!(a.bytes_in_use(), 0);
}

#[test]
fn zero_n_is_rejected() {
    let a = arena("n-zero");
    for plan in [FailurePlan::Nth(0), FailurePlan::EveryNth(0)] {
        let r = catch_unwind(AssertUnwindSafe(|| a.inject(plan.clone())));
        let e = r.expect_err("n = 0 must be rejected");
        let msg = e.downcast_ref::<String>().cloned().unwrap_or_default();
        assert!(msg.contains("n must be at least 1"), "{msg}");
    }
    assert!(try_once(&a, 32, KM_NOSLEEP), "no plan is armed");
    assert_eq!(a.bytes_in_use(), 0);
}

const DRAWS: usize = if cfg!(miri) { 200 } else { 4000 };

fn fraction_pattern(seed: u64, per_million: u32) -> Vec<bool> {
    let a = Arena::builder().name("fraction").checking(Checking::OFF).build();
    a.inject(FailurePlan::Fraction { seed, per_million });
    let p = pattern(&a, DRAWS, 48);
    let failed = p.iter().filter(|ok| !**ok).count() as u64;
    assert_eq!(a.stats().injected, failed);
    assert_eq!(a.bytes_in_use(), 0);
    p
}

#[test]
fn fraction_is_reproducible_per_seed() {
    let first = fraction_pattern(42, 300_000);
    assert_eq!(first, fraction_pattern(42, 300_000), "same seed, same failures");
    assert_ne!(first, fraction_pattern(43, 300_000), "another seed, other failures");
}

#[test]
fn fraction_fails_roughly_the_requested_share() {
    for (seed, per_million) in [(1, 250_000u32), (7, 500_000), (99, 100_000)] {
        let failed = fraction_pattern(seed, per_million).iter().filter(|ok| !**ok).count();
        let share = failed as f64 / DRAWS as f64;
        let want = f64::from(per_million) / 1e6;
        // Generous bounds: the draws are deterministic per seed, the bounds only have to
        // tell a share from a wrong one (binomial sd at 200 draws is about 0.035).
        assert!((share - want).abs() < 0.1, "seed {seed}: {share} failed, wanted about {want}");
    }
}

#[test]
fn fraction_extremes() {
    assert!(fraction_pattern(5, 0).iter().all(|&ok| ok), "0 per million never fails");
    assert!(fraction_pattern(5, 1_000_000).iter().all(|&ok| !ok), "a million per million always fails");
}

#[test]
fn size_range_fails_requests_of_those_sizes() {
    let a = arena("size-range");
    a.inject(FailurePlan::SizeRange(100..=200));
    let outcomes: Vec<bool> = [1, 99, 100, 150, 200, 201, 4000].iter().map(|&n| try_once(&a, n, KM_NOSLEEP)).collect();
    assert_eq!(outcomes, [true, true, false, false, false, true, true], "the requested size decides, not the class");
    assert_eq!(a.stats().injected, 3);
    assert_eq!(a.bytes_in_use(), 0);
}

#[test]
fn always_fails_every_non_sleeping_allocation() {
    let a = arena("always");
    a.inject(FailurePlan::Always);
    a.run(|| {
        assert!(kmem_alloc(10, KM_NOSLEEP).is_null());
        assert!(kmem_zalloc(10, KM_NOSLEEP).is_null());
        assert!(get_free_pages(KM_NOSLEEP, 0).is_null());
    });
    let s = a.stats();
    assert_eq!((s.injected, s.failures, s.allocations, s.errors), (3, 3, 0, 0));
    assert_eq!(s.classes.last().expect("pages").failures, 1, "the page path counts its injected failure");
    assert_eq!(a.bytes_in_use(), 0);
}

#[test]
fn km_sleep_allocations_are_never_failed_by_injection() {
    let a = arena("sleep-immune");
    a.inject(FailurePlan::Always);
    a.run(|| {
        let p = kmem_alloc(100, KM_SLEEP);
        let z = kmem_zalloc(100, KM_SLEEP);
        let g = get_free_pages(KM_SLEEP, 1);
        assert!(!p.is_null() && !z.is_null() && !g.is_null(), "KM_SLEEP is guaranteed to succeed");
        // SAFETY: each buffer is live in this arena and freed once with its size / order.
        unsafe { kmem_free(p, 100) };
        // SAFETY: as above.
        unsafe { kmem_free(z, 100) };
        // SAFETY: as above.
        unsafe { free_pages(g, 1) };
    });
    let s = a.stats();
    assert_eq!((s.injected, s.failures, s.allocations), (0, 0, 3));
    assert_eq!(a.bytes_in_use(), 0);
}

#[test]
fn km_sleep_allocations_do_not_count_toward_the_plan() {
    let a = arena("sleep-not-counted");
    a.inject(FailurePlan::Nth(2));
    assert!(try_once(&a, 64, KM_SLEEP));
    assert!(try_once(&a, 64, KM_NOSLEEP), "first eligible");
    assert!(try_once(&a, 64, KM_SLEEP));
    assert!(try_once(&a, 64, KM_SLEEP));
    assert!(!try_once(&a, 64, KM_NOSLEEP), "second eligible");
    assert!(try_once(&a, 64, KM_NOSLEEP));
    assert_eq!(a.stats().injected, 1);
    assert_eq!(a.bytes_in_use(), 0);
}

#[test]
fn km_sleep_in_interrupt_context_is_eligible_since_it_runs_as_km_nosleep() {
    let a = Arena::builder().name("intr-eligible").checking(Checking::FULL).response(Response::Report).build();
    a.inject(FailurePlan::Always);
    assert!(interrupt(|| a.alloc(64, KM_SLEEP)).is_null());
    assert_eq!(a.take_errors(), vec![KmemError::SleepInInterrupt { call: "kmem_alloc", size: 64 }]);
    assert_eq!(a.stats().injected, 1);
    assert_eq!(a.bytes_in_use(), 0);
}

#[test]
fn clear_injection_stops_failures_and_rearming_starts_counting_afresh() {
    let a = arena("clear");
    a.inject(FailurePlan::EveryNth(2));
    assert_eq!(pattern(&a, 3, 64), [true, false, true]);
    a.clear_injection();
    assert_eq!(pattern(&a, 4, 64), [true; 4]);
    a.inject(FailurePlan::EveryNth(2));
    assert_eq!(pattern(&a, 2, 64), [true, false], "the count starts again at arming");
    assert_eq!(a.stats().injected, 2, "injected counts over the arena's life");
    assert_eq!(a.bytes_in_use(), 0);
}

#[test]
fn inject_replaces_the_earlier_plan() {
    let a = arena("replace");
    a.inject(FailurePlan::Always);
    assert!(!try_once(&a, 64, KM_NOSLEEP));
    a.inject(FailurePlan::SizeRange(1..=10));
    assert!(try_once(&a, 64, KM_NOSLEEP));
    assert!(!try_once(&a, 10, KM_NOSLEEP));
    assert_eq!(a.stats().injected, 2);
    assert_eq!(a.bytes_in_use(), 0);
}

#[test]
fn injected_failures_leave_the_budget_untouched() {
    let a = Arena::builder().name("inject-budget").checking(Checking::OFF).budget(256).build();
    let p = a.alloc(128, KM_NOSLEEP);
    a.inject(FailurePlan::Nth(1));
    assert!(a.alloc(128, KM_NOSLEEP).is_null());
    assert_eq!(a.bytes_in_use(), 128, "an injected failure charges nothing");
    let q = a.alloc(128, KM_NOSLEEP);
    assert!(!q.is_null(), "the budget still has room for it");
    // SAFETY: `p` and `q` are live 128-byte buffers of `a`, each freed once.
    unsafe { a.free(p, 128) };
    // SAFETY: as above.
    unsafe { a.free(q, 128) };
    assert_eq!(a.bytes_in_use(), 0);
}
