//! The lifetime of an arena's message environment: released when the arena closes, kept
//! (with the arena) when messages are still out, reused by the next arena.
//!
//! The environment counts are process-wide, so the tests of this file run one at a time.

use ddi_kmem::Arena;
use std::sync::Mutex;
use streams_core::{BPRI_MED, Msg, allocb, bufcall_fn, freeb, message_environments};

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

#[test]
fn an_arena_that_allocated_messages_is_dropped_with_its_last_handle() {
    let _s = serial();
    let before = message_environments();
    let arena = Arena::builder().name("lifetime-drop").build();
    let weak = arena.downgrade();
    arena.run(|| {
        let m = Msg::from_slice(b"hello").unwrap();
        let big = Msg::alloc(4000, BPRI_MED).unwrap();
        drop((m, big));
    });
    assert_eq!(message_environments().open, before.open + 1);
    assert_eq!(arena.bytes_in_use(), 0);
    drop(arena);
    assert!(weak.upgrade().is_none(), "the arena must be freed once its last handle is dropped");
    let after = message_environments();
    assert_eq!(after.open, before.open);
    assert_eq!(after.kept, before.kept);
}

#[test]
fn the_arena_stays_open_while_a_thread_has_it_entered() {
    let _s = serial();
    let arena = Arena::builder().name("lifetime-entered").build();
    let weak = arena.downgrade();
    let guard = arena.enter();
    drop(arena);
    // The guard holds an ordinary handle: the arena is open, and messages still work.
    let m = Msg::from_slice(b"still open").unwrap();
    assert_eq!(m.blocks().next().unwrap().data(), b"still open");
    drop(m);
    let d = weak.upgrade().unwrap();
    assert!(!d.is_closed());
    assert_eq!(d.bytes_in_use(), 0);
    drop(d);
    drop(guard);
    assert!(weak.upgrade().is_none());
}

#[test]
fn a_closed_environment_serves_the_next_arena() {
    let _s = serial();
    for round in 0..3 {
        let arena = Arena::builder().name("lifetime-reuse").build();
        let weak = arena.downgrade();
        let before = message_environments();
        arena.run(|| drop(Msg::from_slice(b"x").unwrap()));
        let during = message_environments();
        assert_eq!(during.open, before.open + 1, "round {round}");
        if before.pooled > 0 {
            assert_eq!(during.pooled, before.pooled - 1, "round {round}: a pooled environment is reused");
        }
        drop(arena);
        assert!(weak.upgrade().is_none(), "round {round}");
        let after = message_environments();
        assert_eq!(after.open, before.open, "round {round}");
        assert_eq!(after.pooled, during.pooled + 1, "round {round}");
    }
}

#[test]
fn an_arena_closed_with_a_message_out_keeps_it_valid() {
    let _s = serial();
    let before = message_environments();
    let arena = Arena::builder().name("lifetime-kept").build();
    let weak = arena.downgrade();
    let m = arena.run(|| Msg::from_slice(b"outlives its arena").unwrap());
    drop(arena);
    // Reported (on stderr and as a tracing event) and kept: the message is still valid.
    let kept = weak.upgrade().expect("the arena is kept while its message is out");
    assert!(kept.is_closed());
    assert_eq!(message_environments().kept, before.kept + 1);
    assert_eq!(m.blocks().next().unwrap().data(), b"outlives its arena");
    assert!(kept.bytes_in_use() > 0);
    drop(m);
    assert_eq!(kept.bytes_in_use(), 0, "the late free returns the memory");
}

#[test]
fn a_message_freed_on_another_thread_while_the_arena_closes() {
    let _s = serial();
    let rounds = if cfg!(miri) { 3 } else { 200 };
    for _ in 0..rounds {
        let arena = Arena::builder().name("lifetime-race").build();
        let weak = arena.downgrade();
        let m = arena.run(|| Msg::from_slice(b"racing").unwrap());
        let t = std::thread::spawn(move || drop(m));
        drop(arena);
        t.join().unwrap();
        // Either the close saw the block back (the arena is gone) or it kept the arena, whose
        // memory the late free then returned.
        if let Some(kept) = weak.upgrade() {
            assert_eq!(kept.bytes_in_use(), 0);
        }
    }
}

#[test]
fn bufcalls_of_a_closed_arena_are_dropped_not_run() {
    let _s = serial();
    let ran = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let arena = Arena::builder().name("lifetime-bufcall").budget(256).build();
    let weak = arena.downgrade();
    let r = ran.clone();
    arena.run(|| {
        // The budget is too small for this buffer: allocb fails and a bufcall waits.
        assert!(allocb(4096, BPRI_MED).is_null());
        let id = bufcall_fn(4096, BPRI_MED, move || r.store(true, std::sync::atomic::Ordering::SeqCst));
        assert_ne!(id, 0);
    });
    drop(arena);
    assert!(weak.upgrade().is_none());
    assert!(!ran.load(std::sync::atomic::Ordering::SeqCst));
    // The pooled environment serves a new arena without the old callback.
    let next = Arena::builder().name("lifetime-bufcall-next").build();
    next.run(|| {
        let mp = allocb(8, BPRI_MED);
        // SAFETY: allocated above, freed once.
        unsafe { freeb(mp) };
    });
    assert!(!ran.load(std::sync::atomic::Ordering::SeqCst));
    assert_eq!(next.bytes_in_use(), 0);
}
