//! loopback: data comes back up; M_FLUSH is handled canonically at the driver (flush, then
//! reflect FLUSHR upstream); M_IOCTL answered, M_IOCNAK(EINVAL) for unknown commands.

mod common;

use common::*;
use examples::modules::loopback::{LB_COUNT, LB_ECHO};
use streams_core::*;

#[test]
fn loopback_echoes_data_proto_and_pcproto_and_counts_them() {
    in_stream_arena("lb_echo", 0, |sx| {
        let s = sx.open("loopback", 0).unwrap();
        s.write(msg_of(M_DATA, b"data").unwrap()).unwrap();
        s.write(msg_of(M_PROTO, b"proto").unwrap()).unwrap();
        s.write(msg_of(M_PCPROTO, b"pc").unwrap()).unwrap();
        let got: Vec<(MsgType, Vec<u8>)> =
            std::iter::from_fn(|| s.read().unwrap()).map(|m| (m.msg_type(), m.data().to_vec())).collect();
        assert!(got.contains(&(M_DATA, b"data".to_vec())));
        assert!(got.contains(&(M_PROTO, b"proto".to_vec())));
        assert!(got.contains(&(M_PCPROTO, b"pc".to_vec())));
        assert_eq!(got.len(), 3);
        assert_eq!(s.ioctl(LB_COUNT, None).unwrap().rval, 3);
        s.close();
    });
}

#[test]
fn loopback_answers_ioctls_and_naks_unknown_ones() {
    in_stream_arena("lb_ioctl", 0, |sx| {
        let s = sx.open("loopback", 0).unwrap();
        let r = s.ioctl(LB_ECHO, Some(Msg::from_slice(b"payload").unwrap())).unwrap();
        assert_eq!(r.rval, 0);
        assert_eq!(r.data.as_ref().map(|d| d.data()), Some(&b"payload"[..]));
        drop(r);
        assert_eq!(s.ioctl(LB_COUNT, None).unwrap().rval, 0, "ioctls are not looped data");
        assert_eq!(s.ioctl(0x1234, None).unwrap_err(), EINVAL);
        assert_eq!(s.ioctl(0x1234, Some(Msg::from_slice(b"x").unwrap())).unwrap_err(), EINVAL);
        s.close();
    });
}

/// Messages on a queue of an open stream.
fn n(q: *mut Queue) -> i32 {
    // SAFETY: every caller passes a queue of a stream it holds open.
    unsafe { qsize(q) }
}

#[test]
fn loopback_flushes_its_queues_and_reflects_only_flushr() {
    in_stream_arena("lb_flush", 0, |sx| {
        let s = sx.open("loopback", 0).unwrap();
        s.push("nullmod").unwrap();
        let (dwq, drq) = (s.driver_wq(), s.driver_rq());
        // SAFETY: the head's write queue is live; its next is nullmod's write queue.
        let nwq = unsafe { (*s.head_wq()).next() };
        // SAFETY: a live write queue of an open stream.
        let nrq = unsafe { RD(nwq) };
        for q in [dwq, drq, nrq] {
            // SAFETY: live queues of an open stream; the messages are given to them.
            assert_eq!(unsafe { putq(q, msg_of(M_DATA, b"held").unwrap().into_raw()) }, 1);
        }
        write(&s, b"at the head");
        s.flush(FLUSHW).unwrap();
        assert_eq!((n(dwq), n(drq), n(nrq)), (0, 1, 1), "FLUSHW: driver write side only");
        assert_eq!(read_all(&s), [b"at the head".to_vec()], "FLUSHW is not reflected: the head kept its data");
        s.flush(FLUSHR).unwrap();
        assert_eq!((n(drq), n(nrq)), (0, 0), "FLUSHR: driver read side flushed and reflected");
        assert!(s.read().unwrap().is_none(), "the reflected M_FLUSH is consumed by the head");
        s.close();
    });
}
