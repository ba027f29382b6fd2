//! flowmod: put procedures putq, service procedures getq and forward with bcanputnext,
//! putbq when blocked; the writer stops at flowmod's high water mark; the read service
//! procedure stops when the reader does not read and is back-enabled when it does.

mod common;

use common::*;
use examples::modules::flowmod::{FLOWMOD_HIWAT, FM_STATS, FlowStats};
use streams_core::*;

fn stats(s: &Stream) -> FlowStats {
    let r = s.ioctl(FM_STATS, None).unwrap();
    FlowStats::from_bytes(r.data.as_ref().unwrap().data()).unwrap()
}

fn seq(i: u32) -> Msg {
    let mut b = [0u8; 64];
    b[..4].copy_from_slice(&i.to_le_bytes());
    Msg::from_slice(&b).unwrap()
}

fn seq_of(m: &Msg) -> u32 {
    u32::from_le_bytes(m.data()[..4].try_into().unwrap())
}

fn head_count(s: &Stream) -> usize {
    // SAFETY: the head's read queue is live while the stream is open.
    unsafe { (*s.head_rq()).count() }
}

#[test]
fn the_writer_is_flow_controlled_at_flowmods_write_queue_until_its_service_procedure_runs() {
    in_stream_arena("fm_writer", 0, |sx| {
        let s = sx.open("loopback", 0).unwrap();
        s.push("flowmod").unwrap();
        // SAFETY: the head's write queue is live; its next is flowmod's write queue.
        let wq = unsafe { (*s.head_wq()).next() };
        let mut written = 0;
        let refused = loop {
            match s.write(seq(written)) {
                Ok(()) => written += 1,
                Err((e, m)) => break (e, m),
            }
        };
        assert_eq!(refused.0, EAGAIN);
        assert_eq!(seq_of(&refused.1), written, "the refused message comes back");
        drop(refused);
        assert!(written as usize * 64 >= FLOWMOD_HIWAT, "stopped at the high water mark, not before");
        // SAFETY: live queue.
        assert_ne!(unsafe { (*wq).flag() } & QFULL, 0);
        assert!(!s.writable());
        assert!(s.read().unwrap().is_none(), "nothing passed before the service procedure ran");
        sx.run_until_idle();
        assert!(s.writable(), "the write service procedure drained the queue");
        let st = stats(&s);
        assert_eq!(st.w_forwarded, u64::from(written));
        let got: Vec<u32> = std::iter::from_fn(|| s.read().unwrap()).map(|m| seq_of(&m)).collect();
        assert_eq!(got, (0..written).collect::<Vec<_>>(), "all of them, in order");
        s.close();
    });
}

#[test]
fn the_read_service_procedure_stops_when_the_reader_does_not_read_and_is_back_enabled() {
    in_stream_arena("fm_reader", 0, |sx| {
        let s = sx.open("loopback", 0).unwrap();
        s.push("flowmod").unwrap();
        const N: u32 = 300;
        for i in 0..N {
            s.write(seq(i)).map_err(|(e, _)| e).unwrap();
            sx.run_until_idle();
        }
        let st = stats(&s);
        assert!(st.r_blocked >= 1, "the read service procedure met flow control: {st:?}");
        assert!(st.r_forwarded < u64::from(N), "it stopped forwarding: {st:?}");
        assert_eq!(st.w_forwarded, u64::from(N), "the write side never blocked (the driver echoes at once)");
        let full = head_count(&s);
        assert!(full >= 5120, "the head's read queue is at its high water mark ({full} bytes)");
        assert_eq!(full as u64, st.r_forwarded * 64);

        // Read what is at the head without running the scheduler.
        let mut got: Vec<u32> = std::iter::from_fn(|| s.read().unwrap()).map(|m| seq_of(&m)).collect();
        assert_eq!(got.len() as u64, st.r_forwarded);
        // Draining the head back-enabled flowmod's read queue: one scheduler pass moves more up.
        sx.run_until_idle();
        let st2 = stats(&s);
        assert!(st2.r_forwarded > st.r_forwarded, "back-enabled: {st:?} -> {st2:?}");
        while let Some(m) = s.read_wait().unwrap() {
            got.push(seq_of(&m));
        }
        assert_eq!(got, (0..N).collect::<Vec<_>>(), "every message, in order");
        assert_eq!(stats(&s).r_forwarded, u64::from(N));
        s.close();
    });
}

#[test]
fn flushw_discards_what_flowmod_holds_and_high_priority_passes_queued_data() {
    in_stream_arena("fm_flush", 0, |sx| {
        let s = sx.open("loopback", 0).unwrap();
        s.push("flowmod").unwrap();
        for i in 0..5 {
            s.write(seq(i)).map_err(|(e, _)| e).unwrap();
        }
        // A high-priority message overtakes the queued data.
        s.write(msg_of(M_PCPROTO, b"urgent").unwrap()).map_err(|(e, _)| e).unwrap();
        assert_eq!(s.read().unwrap().map(|m| m.data().to_vec()), Some(b"urgent".to_vec()));
        s.flush(FLUSHW).unwrap();
        sx.run_until_idle();
        assert!(s.read().unwrap().is_none(), "the held data was flushed");
        assert_eq!(stats(&s).w_forwarded, 0);
        s.close();
    });
}

#[test]
fn with_a_worker_pool_a_writer_and_a_reader_thread_move_every_message_in_order() {
    const N: u32 = if cfg!(miri) { 300 } else { 20_000 };
    let arena = ddi_kmem::Arena::builder().name("fm_pool").build();
    {
        let sx = Streams::builder().arena(&arena).workers(1).build();
        examples::modules::register_all(&sx).unwrap();
        let s = arena.run(|| sx.open("loopback", 0)).unwrap();
        arena.run(|| s.push("flowmod")).unwrap();
        std::thread::scope(|t| {
            t.spawn(|| {
                let _a = arena.enter();
                for i in 0..N {
                    s.write_wait(seq(i)).map_err(|(e, _)| e).unwrap();
                }
            });
            let _a = arena.enter();
            for i in 0..N {
                let m = s.read_wait().unwrap().expect("a message");
                assert_eq!(seq_of(&m), i);
            }
        });
        let _a = arena.enter();
        let st = stats(&s);
        assert_eq!((st.w_forwarded, st.r_forwarded), (u64::from(N), u64::from(N)));
        assert!(s.read().unwrap().is_none(), "nothing extra");
        s.close();
        drop(_a);
        assert!(sx.take_errors().is_empty());
        assert!(streams_core::take_errors(&arena).is_empty());
    }
    assert_eq!(arena.bytes_in_use(), 0);
}
