//! source: the read service procedure produces what SRC_GEN asked for, stops at the stream
//! head's high water mark, is back-enabled when the reader drains the head below its low
//! water mark, recovers from an allocation failure through bufcall, and hands messages to a
//! reader on another thread when run by a worker.

mod common;

use common::*;
use ddi_kmem::FailurePlan;
use examples::modules::source::{SRC_BYTE, SRC_GEN, SRC_LEN};
use streams_core::*;

fn generate(s: &Stream, n: u64) {
    let r = s.ioctl(SRC_GEN, Some(Msg::from_slice(&n.to_le_bytes()).unwrap())).expect("SRC_GEN acknowledged");
    assert_eq!(r.rval, 0);
}

fn head_msgs(s: &Stream) -> usize {
    // SAFETY: the head's read queue is live while the stream is open.
    unsafe { qsize(s.head_rq()) as usize }
}

#[test]
fn the_source_stops_at_the_heads_high_water_mark_and_is_back_enabled_below_the_low() {
    in_stream_arena("src_flow", 0, |sx| {
        let s = sx.open("source", 0).unwrap();
        let q = sx.quirks();
        let (high, low) = (q.strhigh / SRC_LEN, q.strlow / SRC_LEN);
        // LfS: QFULL once the count is above hiwat (illumos: at it); canputnext then refuses.
        let stop = if q.full_at == FullAt::AboveHiwat { high + 1 } else { high };
        let n = if cfg!(miri) { 300 } else { 1000 };
        generate(&s, n);
        sx.run_until_idle();
        assert_eq!(head_msgs(&s), stop, "stopped at STRHIGH");
        let mut got = 0;
        // Reading down to STRLOW does not back-enable; one more does.
        while head_msgs(&s) > low {
            let m = s.read().unwrap().unwrap();
            assert_eq!(m.data(), &[SRC_BYTE; SRC_LEN]);
            got += 1;
        }
        sx.run_until_idle();
        assert_eq!(head_msgs(&s), low, "not back-enabled above STRLOW");
        let _ = s.read().unwrap().unwrap();
        got += 1;
        sx.run_until_idle();
        assert_eq!(head_msgs(&s), stop, "back-enabled below STRLOW: refilled");
        while got < n {
            if let Some(m) = s.read().unwrap() {
                assert_eq!(m.msg_type(), M_DATA);
                got += 1;
            } else {
                sx.run_until_idle();
            }
        }
        sx.run_until_idle();
        assert!(s.read().unwrap().is_none(), "exactly what was asked for");
    });
}

#[test]
fn an_ioctl_without_a_count_is_refused() {
    in_stream_arena("src_nak", 0, |sx| {
        let s = sx.open("source", 0).unwrap();
        assert_eq!(s.ioctl(SRC_GEN, None).map(|r| r.rval), Err(EINVAL));
        assert_eq!(s.ioctl(SRC_GEN, Some(Msg::from_slice(b"short").unwrap())).map(|r| r.rval), Err(EINVAL));
        sx.run_until_idle();
        assert!(s.read().unwrap().is_none());
    });
}

/// Reads one message (returned: its free later runs the bufcall), then, with every
/// allocation failing, reads until the head holds fewer than `low` messages and runs the
/// back-enabled service procedure.
fn drain_failing(arena: &ddi_kmem::Arena, sx: &Streams, s: &Stream, low: usize) -> Msg {
    let held = s.read().unwrap().unwrap();
    arena.inject(FailurePlan::Always);
    while head_msgs(s) >= low {
        drop(s.read().unwrap().unwrap());
    }
    sx.run_until_idle();
    arena.clear_injection();
    held
}

#[test]
fn an_allocation_failure_is_recovered_by_bufcall_when_memory_is_freed() {
    let arena = ddi_kmem::Arena::builder().name("src_bufcall").build();
    arena.run(|| {
        let sx = Streams::builder().arena(&arena).build();
        examples::modules::register_all(&sx).unwrap();
        let s = sx.open("source", 0).unwrap();
        let low = sx.quirks().strlow / SRC_LEN;
        generate(&s, if cfg!(miri) { 300 } else { 1000 });
        sx.run_until_idle();
        let full = head_msgs(&s);
        // Drain below STRLOW while allocations fail: the back-enabled service procedure
        // cannot allocate and registers a bufcall.
        let held = drain_failing(&arena, &sx, &s, low);
        assert_eq!(head_msgs(&s), low - 1, "allocb failed: nothing sent");
        assert_eq!(bufcalls_waiting(), 1, "a bufcall waits for memory");
        drop(held); // the free runs the bufcall, which enables the read queue
        assert_eq!(bufcalls_waiting(), 0);
        sx.run_until_idle();
        assert_eq!(head_msgs(&s), full, "the retry refilled the head");
        // A failure left pending at close is cancelled by the driver's close.
        let held = drain_failing(&arena, &sx, &s, low);
        assert_eq!(bufcalls_waiting(), 1);
        drop(s);
        assert_eq!(bufcalls_waiting(), 0, "close cancelled it");
        drop(held);
        assert!(sx.take_errors().is_empty());
    });
    assert_eq!(arena.bytes_in_use(), 0);
}

#[test]
fn a_worker_hands_every_message_to_a_reader_on_another_thread() {
    in_stream_arena("src_worker", 1, |sx| {
        let s = sx.open("source", 0).unwrap();
        let n = if cfg!(miri) { 200 } else { 100_000 };
        generate(&s, n);
        for _ in 0..n {
            let m = s.read_wait().unwrap().expect("a message");
            assert_eq!(m.data(), &[SRC_BYTE; SRC_LEN]);
        }
        sx.run_until_idle();
        assert!(s.read().unwrap().is_none(), "exactly what was asked for");
    });
}
