//! nullmod: registered by name, pushed with I_PUSH, passes every message both ways in order,
//! and flushes its own queues as an M_FLUSH says (by side, by band).

mod common;

use common::*;
use streams_core::*;

/// nullmod's write queue when it is the topmost module.
fn top_wq(s: &Stream) -> *mut Queue {
    // SAFETY: the head's write queue is live while the stream is open.
    unsafe { (*s.head_wq()).next() }
}

fn queued(q: *mut Queue, band: u8, byte: u8) {
    let mut m = msg_of(M_DATA, &[byte]).unwrap();
    m.set_band(band);
    // SAFETY: a live queue of an open stream; the message is given to it.
    assert_eq!(unsafe { putq(q, m.into_raw()) }, 1);
}

#[test]
fn nullmod_is_pushed_by_name_and_passes_data_both_ways_in_order() {
    in_stream_arena("nullmod_pass", 0, |sx| {
        let s = sx.open("loopback", 0).unwrap();
        for _ in 0..4 {
            s.push("nullmod").unwrap();
        }
        assert_eq!(s.modules(), ["nullmod"; 4]);
        for i in 0..50u8 {
            let mut m = msg_of(if i % 3 == 0 { M_PROTO } else { M_DATA }, &[i; 10]).unwrap();
            m.set_band(i % 2);
            s.write(m).map_err(|(e, _)| e).unwrap();
        }
        // The head's read queue holds band 1 ahead of band 0, each band in order.
        let want: Vec<u8> = (0..50).filter(|i| i % 2 == 1).chain((0..50).filter(|i| i % 2 == 0)).collect();
        let mut got = Vec::new();
        while let Some(m) = s.read().unwrap() {
            let n = m.data()[0];
            assert_eq!(m.data(), [n; 10]);
            assert_eq!(m.b_band, n % 2, "band kept");
            assert_eq!(m.msg_type(), if n % 3 == 0 { M_PROTO } else { M_DATA }, "type kept");
            got.push(n);
        }
        assert_eq!(got, want, "order kept within each band");
        s.pop().unwrap();
        assert_eq!(s.modules(), ["nullmod"; 3]);
        s.close();
    });
}

#[test]
fn nullmod_flushes_its_write_queue_on_flushw_only() {
    in_stream_arena("nullmod_flushw", 0, |sx| {
        let s = sx.open("loopback", 0).unwrap();
        s.push("nullmod").unwrap();
        let wq = top_wq(&s);
        queued(wq, 0, 1);
        queued(wq, 0, 2);
        s.flush(FLUSHR).unwrap();
        // SAFETY: live queue.
        assert_eq!(unsafe { qsize(wq) }, 2, "FLUSHR leaves the write side alone");
        s.flush(FLUSHW).unwrap();
        // SAFETY: live queue.
        assert_eq!(unsafe { qsize(wq) }, 0, "FLUSHW empties nullmod's write queue");
        s.close();
    });
}

#[test]
fn nullmod_flushes_its_read_queue_when_the_driver_reflects_flushr() {
    in_stream_arena("nullmod_flushr", 0, |sx| {
        let s = sx.open("loopback", 0).unwrap();
        s.push("nullmod").unwrap();
        // SAFETY: the write queue of a live pair.
        let rq = unsafe { RD(top_wq(&s)) };
        queued(rq, 0, 1);
        s.flush(FLUSHW).unwrap();
        // SAFETY: live queue.
        assert_eq!(unsafe { qsize(rq) }, 1, "FLUSHW alone is not reflected up");
        s.flush(FLUSHR).unwrap();
        // SAFETY: live queue.
        assert_eq!(unsafe { qsize(rq) }, 0, "the reflected FLUSHR emptied nullmod's read queue");
        s.close();
    });
}

#[test]
fn nullmod_flushes_one_band_with_flushband() {
    in_stream_arena("nullmod_flushband", 0, |sx| {
        let s = sx.open("loopback", 0).unwrap();
        s.push("nullmod").unwrap();
        let wq = top_wq(&s);
        queued(wq, 0, 1);
        queued(wq, 3, 2);
        queued(wq, 3, 3);
        s.flushband(3, FLUSHW).unwrap();
        // SAFETY: live queue.
        assert_eq!(unsafe { qsize(wq) }, 1, "only band 3 flushed");
        // SAFETY: live queue.
        let mp = unsafe { getq(wq) };
        // SAFETY: getq handed the message over: it is ours.
        let m = unsafe { Msg::from_raw(mp) }.unwrap();
        assert_eq!((m.b_band, m.data()), (0, &[1u8][..]));
        s.close(); // frees nothing left: the queue is empty
    });
}
