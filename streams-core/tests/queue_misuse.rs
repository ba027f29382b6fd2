//! Misuse of the queue interface in a checking arena that reports: a clear error naming the
//! call, the operation refused, no corruption, every byte returned.

mod common;

use common::*;
use ddi_kmem::Arena;
use streams_core::*;

fn errors(arena: &Arena) -> Vec<StreamsError> {
    take_errors(arena)
}

#[test]
fn freeb_of_the_sole_message_on_a_queue_is_reported_and_refused() {
    let arena = reporting("sole_queued");
    arena.run(|| {
        let q = allocq();
        let mp = block(b"only", M_DATA);
        // SAFETY: live queue, owned message.
        assert_eq!(unsafe { putq(q, mp) }, 1);
        assert!(mr(mp).b_next.is_null() && mr(mp).b_prev.is_null(), "the sole message has no links");
        // SAFETY: the misuse under test: refused.
        unsafe { freeb(mp) };
        // SAFETY: live queue; the message is still on it.
        assert_eq!(unsafe { getq(q) }, mp, "the refused free left the queue intact");
        free(mp);
        // SAFETY: ours.
        unsafe { freeq(q) };
    });
    let e = errors(&arena);
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(matches!(e[0], StreamsError::StillQueued { call: "freeb", .. }), "{}", e[0]);
    assert_eq!(arena.bytes_in_use(), 0);
}

#[test]
fn putq_of_a_message_already_on_a_queue_is_reported_and_refused() {
    let arena = reporting("putq_twice");
    arena.run(|| {
        let q = allocq();
        let q2 = allocq();
        let mp = block(b"m", M_DATA);
        // SAFETY: live queues, owned message; the second putq is the misuse under test.
        assert_eq!(unsafe { putq(q, mp) }, 1);
        // SAFETY: live queues, owned message; the second putq is the misuse under test.
        assert_eq!(unsafe { putq(q2, mp) }, 0);
        // SAFETY: live queues, owned message; the second putq is the misuse under test.
        assert_eq!(unsafe { putbq(q, mp) }, 0);
        // SAFETY: live queues, owned message; the second putq is the misuse under test.
        assert_eq!(unsafe { qsize(q) }, 1);
        // SAFETY: live queues, owned message; the second putq is the misuse under test.
        assert_eq!(unsafe { qsize(q2) }, 0);
        // SAFETY: live queues, owned message; the second putq is the misuse under test.
        unsafe { freeq(q) };
        // SAFETY: live queues, owned message; the second putq is the misuse under test.
        unsafe { freeq(q2) };
    });
    let e = errors(&arena);
    assert_eq!(e.len(), 2, "{e:?}");
    assert!(matches!(e[0], StreamsError::AlreadyQueued { call: "putq", .. }), "{}", e[0]);
    assert!(matches!(e[1], StreamsError::AlreadyQueued { call: "putbq", .. }), "{}", e[1]);
    assert!(e[0].to_string().starts_with("putq: message block"), "{}", e[0]);
    assert_eq!(arena.bytes_in_use(), 0);
}

#[test]
fn getq_on_a_freed_queue_is_reported_not_undefined() {
    let arena = reporting("getq_freed");
    arena.run(|| {
        let q = allocq();
        // SAFETY: ours.
        unsafe { freeq(q) };
        // SAFETY: the misuse under test: a checking arena refuses it before touching q.
        assert!(unsafe { getq(q) }.is_null());
        // SAFETY: as above.
        unsafe { qenable(q) };
    });
    let e = errors(&arena);
    assert_eq!(e.len(), 2, "{e:?}");
    assert!(matches!(e[0], StreamsError::QueueNotAllocated { call: "getq", .. }), "{}", e[0]);
    assert!(matches!(e[1], StreamsError::QueueNotAllocated { call: "qenable", .. }), "{}", e[1]);
    assert_eq!(arena.bytes_in_use(), 0);
}

#[test]
fn sleeping_calls_from_interrupt_context_are_reported() {
    let arena = reporting("interrupt");
    arena.run(|| {
        ddi_kmem::interrupt(|| {
            assert!(allocq().is_null());
            assert!(allocb(16, BPRI_WAITOK).is_null());
            let mp = allocb(16, BPRI_MED);
            assert!(!mp.is_null(), "a non-sleeping allocb is fine in interrupt context");
            free(mp);
        });
        let sx = Streams::new();
        common::mods::register_all(&sx);
        let s = sx.open("loop", 0).unwrap();
        ddi_kmem::interrupt(|| {
            assert_eq!(s.push("nullmod"), Err(EINVAL));
            // SAFETY: the misuse under test: refused.
            unsafe { qprocsoff(s.driver_wq()) };
        });
        s.write(msg_of(M_DATA, b"still works").unwrap()).unwrap();
        assert_eq!(s.read().unwrap().unwrap().data(), b"still works");
    });
    let e = errors(&arena);
    let calls: Vec<_> = e
        .iter()
        .map(|e| match e {
            StreamsError::SleepInInterrupt { call } => *call,
            other => panic!("unexpected {other}"),
        })
        .collect();
    assert_eq!(calls, ["allocq", "allocb(BPRI_WAITOK)", "I_PUSH", "qprocsoff"]);
    assert!(e[0].to_string().contains("interrupt context"), "{}", e[0]);
    assert_eq!(arena.bytes_in_use(), 0);
}

#[test]
fn putnext_with_no_next_queue_is_reported_and_the_message_freed() {
    let arena = reporting("no_next");
    arena.run(|| {
        let q = allocq();
        let mp = block(b"lost", M_DATA);
        // SAFETY: a live queue with no q_next: the misuse under test.
        unsafe { putnext(q, mp) };
        // SAFETY: as above.
        unsafe { qreply(q, block(b"lost too", M_DATA)) };
        // SAFETY: ours.
        unsafe { freeq(q) };
    });
    let e = errors(&arena);
    assert_eq!(e.len(), 2, "{e:?}");
    assert!(matches!(e[0], StreamsError::NoNextQueue { call: "putnext", .. }), "{}", e[0]);
    assert!(matches!(e[1], StreamsError::NoNextQueue { call: "qreply", .. }), "{}", e[1]);
    assert_eq!(arena.bytes_in_use(), 0, "the message was freed");
}

#[test]
fn rmvq_of_a_message_not_on_a_queue_is_reported() {
    let arena = reporting("rmvq_unqueued");
    arena.run(|| {
        let q = allocq();
        let mp = block(b"free", M_DATA);
        // SAFETY: the misuse under test: refused.
        unsafe { rmvq(q, mp) };
        free(mp);
        // SAFETY: ours.
        unsafe { freeq(q) };
    });
    let e = errors(&arena);
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(matches!(e[0], StreamsError::NotQueued { call: "rmvq", .. }), "{}", e[0]);
    assert_eq!(arena.bytes_in_use(), 0);
}

#[test]
fn the_default_response_panics_with_the_call_named() {
    let arena = Arena::builder().name("panics").checking(ddi_kmem::Checking::FULL).build();
    arena.run(|| {
        let q = allocq();
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            // SAFETY: the misuse under test.
            unsafe { putnext(q, block(b"x", M_DATA)) };
        }));
        let e = r.expect_err("panics");
        let msg = e.downcast_ref::<String>().cloned().unwrap_or_default();
        assert!(msg.contains("putnext: queue of module ? has no next queue"), "{msg}");
        // SAFETY: ours.
        unsafe { freeq(q) };
    });
    assert_eq!(arena.bytes_in_use(), 0, "the message was freed before the panic");
}
