//! Calling context (user or interrupt) and the arena a thread has entered.

use ddi_kmem::{
    Arena, Checking, Context, InterruptGuard, KM_NOSLEEP, KM_SLEEP, KmemError, Response, current_arena,
    current_context, free_pages, get_free_pages, in_interrupt, interrupt, kmem_alloc, kmem_free, kmem_zalloc,
};
use std::ffi::c_void;
use std::panic::{AssertUnwindSafe, catch_unwind};

fn arena(name: &str, response: Response) -> Arena {
    Arena::builder().name(name).checking(Checking::FULL).response(response).build()
}

fn free(p: *mut c_void, size: usize) {
    // SAFETY: every caller passes a live buffer of the current arena and its allocation size.
    unsafe { kmem_free(p, size) };
}

fn panic_text(e: &(dyn std::any::Any + Send)) -> String {
    e.downcast_ref::<String>()
        .cloned()
        .or_else(|| e.downcast_ref::<&str>().map(|s| (*s).to_string()))
        .unwrap_or_default()
}

#[test]
fn interrupt_runs_the_closure_in_interrupt_context_and_returns_its_value() {
    assert_eq!(current_context(), Context::User);
    assert!(!in_interrupt());
    let seen = interrupt(|| (current_context(), in_interrupt()));
    assert_eq!(seen, (Context::Interrupt, true));
    assert_eq!(current_context(), Context::User);
    assert!(!in_interrupt());
}

#[test]
fn interrupt_guards_nest() {
    let outer = InterruptGuard::enter();
    assert_eq!(current_context(), Context::Interrupt);
    {
        let _inner = InterruptGuard::enter();
        assert_eq!(current_context(), Context::Interrupt);
        interrupt(|| assert!(in_interrupt()));
        assert!(in_interrupt(), "leaving a nested level keeps interrupt context");
    }
    assert_eq!(current_context(), Context::Interrupt, "the outer guard is still alive");
    drop(outer);
    assert_eq!(current_context(), Context::User);
}

#[test]
fn interrupt_context_ends_when_a_panic_unwinds_through_the_guard() {
    let r = catch_unwind(|| interrupt(|| panic!("handler failed")));
    assert!(r.is_err());
    assert_eq!(current_context(), Context::User);
}

#[test]
fn km_sleep_in_interrupt_context_is_reported_and_treated_as_km_nosleep() {
    let a = arena("sleep-in-intr-report", Response::Report);
    a.run(|| {
        let (p, z, g) =
            interrupt(|| (kmem_alloc(100, KM_SLEEP), kmem_zalloc(40, KM_SLEEP), get_free_pages(KM_SLEEP, 0)));
        assert!(!p.is_null() && !z.is_null() && !g.is_null(), "the calls go on as KM_NOSLEEP");
        free(p, 100);
        free(z, 40);
        // SAFETY: `g` came from get_free_pages(_, 0) in this arena, freed once.
        unsafe { free_pages(g, 0) };
    });
    let errors = a.take_errors();
    assert_eq!(
        errors,
        vec![
            KmemError::SleepInInterrupt { call: "kmem_alloc", size: 100 },
            KmemError::SleepInInterrupt { call: "kmem_zalloc", size: 40 },
            KmemError::SleepInInterrupt { call: "get_free_pages", size: 4096 },
        ]
    );
    let text = errors[0].to_string();
    assert!(text.contains("kmem_alloc") && text.contains("KM_SLEEP") && text.contains("100 bytes"), "{text}");
    assert!(text.contains("interrupt context"), "{text}");
    assert_eq!(a.stats().errors, 3);
    assert_eq!(a.bytes_in_use(), 0);
}

#[test]
fn km_sleep_in_interrupt_context_does_not_sleep_on_a_full_budget() {
    let a = Arena::builder()
        .name("sleep-in-intr-budget")
        .checking(Checking::OFF)
        .response(Response::Report)
        .budget(128)
        .build();
    a.run(|| {
        let held = kmem_alloc(128, KM_SLEEP);
        assert!(!held.is_null());
        // Treated as KM_NOSLEEP: NULL at once instead of sleeping forever in a handler.
        assert!(interrupt(|| kmem_alloc(64, KM_SLEEP)).is_null());
        free(held, 128);
    });
    assert_eq!(a.take_errors(), vec![KmemError::SleepInInterrupt { call: "kmem_alloc", size: 64 }]);
    let s = a.stats();
    assert_eq!((s.failures, s.sleeps), (1, 0));
    assert_eq!(a.bytes_in_use(), 0);
}

#[test]
fn km_sleep_in_interrupt_context_panics_in_panic_mode() {
    for checking in [Checking::FULL, Checking::OFF] {
        let a = Arena::builder().name("sleep-in-intr-panic").checking(checking).build();
        assert_eq!(a.response(), Response::Panic, "panic is the default response");
        let r = catch_unwind(AssertUnwindSafe(|| a.run(|| interrupt(|| kmem_alloc(100, KM_SLEEP)))));
        let msg = panic_text(&*r.expect_err("KM_SLEEP in interrupt context must panic"));
        assert!(msg.contains("kmem_alloc: KM_SLEEP allocation of 100 bytes from interrupt context"), "{msg}");
        assert_eq!(current_context(), Context::User, "the guard was dropped by the unwind");
        assert_eq!(a.stats().errors, 1);
        assert_eq!(a.stats().allocations, 0, "nothing was allocated");
        // The arena still works.
        let p = a.alloc(100, KM_NOSLEEP);
        assert!(!p.is_null());
        // SAFETY: `p` is a live 100-byte buffer of `a`, freed once.
        unsafe { a.free(p, 100) };
        assert_eq!(a.bytes_in_use(), 0);
    }
}

#[test]
#[should_panic(expected = "kmem_zalloc: KM_SLEEP allocation of 8 bytes from interrupt context")]
fn kmem_zalloc_km_sleep_in_interrupt_context_panics() {
    let a = arena("zalloc-in-intr-panic", Response::Panic);
    // Panics before anything is allocated, so nothing is left in use.
    let _ = a.run(|| interrupt(|| kmem_zalloc(8, KM_SLEEP)));
}

#[test]
fn km_nosleep_in_interrupt_context_is_no_misuse() {
    let a = arena("nosleep-in-intr", Response::Panic);
    a.run(|| {
        let p = interrupt(|| kmem_alloc(64, KM_NOSLEEP));
        assert!(!p.is_null());
        interrupt(|| free(p, 64));
    });
    assert_eq!(a.stats().errors, 0);
    assert_eq!(a.bytes_in_use(), 0);
}

#[test]
fn entered_arenas_nest_innermost_first() {
    let a = arena("outer", Response::Panic);
    let b = arena("inner", Response::Panic);
    let ga = a.enter();
    assert_eq!(current_arena().name(), "outer");
    let gb = b.enter();
    assert_eq!(current_arena().name(), "inner");
    let p = kmem_alloc(64, KM_NOSLEEP);
    assert_eq!((a.bytes_in_use(), b.bytes_in_use()), (0, 64), "the innermost arena serves");
    free(p, 64);
    drop(gb);
    assert_eq!(current_arena().name(), "outer");
    let q = kmem_alloc(64, KM_NOSLEEP);
    assert_eq!((a.bytes_in_use(), b.bytes_in_use()), (64, 0));
    free(q, 64);
    drop(ga);
    assert_eq!(current_arena().name(), "default");
    assert_eq!((a.bytes_in_use(), b.bytes_in_use()), (0, 0));
    assert_eq!((a.stats().allocations, b.stats().allocations), (1, 1));
}

#[test]
fn enter_guards_may_be_dropped_out_of_order() {
    let a = arena("first", Response::Panic);
    let b = arena("second", Response::Panic);
    let ga = a.enter();
    let gb = b.enter();
    drop(ga); // out of order: removes exactly a's entry
    assert_eq!(current_arena().name(), "second");
    let p = kmem_alloc(32, KM_NOSLEEP);
    assert_eq!((a.bytes_in_use(), b.bytes_in_use()), (0, 32));
    free(p, 32);
    drop(gb);
    assert_eq!(current_arena().name(), "default");
    assert_eq!(a.bytes_in_use(), 0);
    assert_eq!(b.bytes_in_use(), 0);
}

#[test]
fn the_same_arena_entered_twice_stays_current_until_both_guards_drop() {
    let a = arena("twice", Response::Panic);
    let g1 = a.enter();
    let g2 = a.enter();
    drop(g1);
    assert_eq!(current_arena().name(), "twice");
    drop(g2);
    assert_eq!(current_arena().name(), "default");
    assert_eq!(a.bytes_in_use(), 0);
}

#[test]
fn an_entered_arena_outlives_its_last_handle_until_the_guard_drops() {
    let a = arena("kept-alive", Response::Panic);
    let g = a.enter();
    drop(a);
    let p = kmem_alloc(100, KM_NOSLEEP);
    assert!(!p.is_null());
    assert_eq!(current_arena().name(), "kept-alive");
    assert_eq!(current_arena().bytes_in_use(), 128);
    free(p, 100);
    assert_eq!(current_arena().bytes_in_use(), 0);
    drop(g);
}

#[test]
fn run_enters_the_arena_only_for_the_closure() {
    let a = arena("run", Response::Panic);
    let name = a.run(|| current_arena().name().to_string());
    assert_eq!(name, "run");
    assert_eq!(current_arena().name(), "default");
    assert_eq!(a.bytes_in_use(), 0);
}

#[test]
fn threads_do_not_inherit_the_entered_arena_or_interrupt_context() {
    let a = arena("not-inherited", Response::Panic);
    a.run(|| {
        interrupt(|| {
            let (name, ctx, p_was_null) = std::thread::scope(|s| {
                s.spawn(|| {
                    let name = current_arena().name().to_string();
                    let ctx = current_context();
                    // KM_SLEEP is fine here: the new thread is in user context, and this
                    // goes to the process default arena.
                    let p = kmem_alloc(64, KM_SLEEP);
                    let null = p.is_null();
                    free(p, 64);
                    (name, ctx, null)
                })
                .join()
                .expect("thread")
            });
            assert_eq!(name, "default");
            assert_eq!(ctx, Context::User);
            assert!(!p_was_null);
        });
    });
    let s = a.stats();
    assert_eq!((s.allocations, s.errors), (0, 0), "the thread's allocation did not reach the entered arena");
    assert_eq!(a.bytes_in_use(), 0);
}

#[test]
fn default_arena_is_the_documented_default() {
    let d = Arena::default_arena();
    assert_eq!(d.name(), "default");
    assert_eq!(d.response(), Response::Panic);
    assert_eq!(d.checking(), Checking::default());
    assert_eq!(d.stats().budget, None);
    assert_eq!(current_arena().name(), "default");
}
