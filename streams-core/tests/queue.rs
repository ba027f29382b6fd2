//! Queue operations on bare queue pairs: allocq/freeq, RD/WR/OTHERQ, putq/getq ordering by
//! class and band, putbq, insq, appq, rmvq, flushq, flushband, qsize, counting, strqget and
//! strqset, and the queued mark.

mod common;

use common::*;
use std::ptr::null_mut;
use streams_core::*;

fn ty(t: MsgType) -> MsgType {
    t
}

/// A message of `t`, band `band`, holding `bytes`.
fn m(bytes: &[u8], t: MsgType, band: u8) -> *mut Mblk {
    let mp = block(bytes, ty(t));
    mb(mp).b_band = band;
    mp
}

/// Takes every message off `q` and returns their first bytes, freeing them.
fn drain(q: *mut Queue) -> Vec<u8> {
    let mut v = Vec::new();
    loop {
        // SAFETY: a live queue.
        let mp = unsafe { getq(q) };
        if mp.is_null() {
            return v;
        }
        v.push(mr(mp).data()[0]);
        free(mp);
    }
}

fn pq(q: *mut Queue, mp: *mut Mblk) {
    // SAFETY: a live queue and a message we own.
    assert_eq!(unsafe { putq(q, mp) }, 1);
}

fn new_q() -> *mut Queue {
    let q = allocq();
    assert!(!q.is_null());
    q
}

fn free_q(q: *mut Queue) {
    // SAFETY: a pair from allocq, used by nobody else.
    unsafe { freeq(q) };
}

#[test]
fn allocq_gives_a_pair_and_rd_wr_otherq_navigate_it() {
    in_arena("pair", |_| {
        let rq = new_q();
        // SAFETY: a live pair.
        let wq = unsafe { WR(rq) };
        assert_ne!(rq, wq);
        // SAFETY: a live pair.
        assert_eq!(unsafe { RD(wq) }, rq);
        // SAFETY: a live pair.
        assert_eq!(unsafe { WR(wq) }, wq);
        // SAFETY: a live pair.
        assert_eq!(unsafe { RD(rq) }, rq);
        // SAFETY: a live pair.
        assert_eq!(unsafe { OTHERQ(rq) }, wq);
        // SAFETY: a live pair.
        assert_eq!(unsafe { OTHERQ(wq) }, rq);
        // SAFETY: a live pair.
        assert!(unsafe { &*rq }.is_read());
        // SAFETY: a live pair.
        assert!(!unsafe { &*wq }.is_read());
        // SAFETY: a live pair.
        assert_eq!(unsafe { &*rq }.flag() & (QREADR | QUSE | QWANTR), QREADR | QUSE | QWANTR);
        // SAFETY: a live pair.
        assert_eq!(unsafe { &*wq }.flag() & QREADR, 0);
        // SAFETY: a live pair.
        assert!(unsafe { &*rq }.next().is_null());
        free_q(rq);
    });
}

#[test]
fn normal_messages_are_fifo_and_counted_by_msgsize() {
    in_arena("fifo", |_| {
        let q = new_q();
        let a = m(b"a123", M_DATA, 0);
        let b = m(b"b1", M_PROTO, 0);
        // SAFETY: allocated messages.
        unsafe { linkb(b, block(b"xyz", M_DATA)) };
        pq(q, a);
        pq(q, b);
        // SAFETY: live queue.
        assert_eq!(unsafe { qsize(q) }, 2);
        // SAFETY: live queue.
        let qr = unsafe { &*q };
        assert_eq!(qr.count(), 4 + 2 + 3, "q_count is msgsize over every block and type");
        assert_eq!(qr.first(), a);
        assert_eq!(qr.last(), b);
        assert_eq!(drain(q), b"ab");
        assert_eq!(qr.count(), 0);
        free_q(q);
    });
}

#[test]
fn high_priority_first_with_band_zero_then_bands_high_to_low_then_band_zero() {
    in_arena("order", |_| {
        let q = new_q();
        pq(q, m(b"0", M_DATA, 0));
        pq(q, m(b"3", M_DATA, 3));
        pq(q, m(b"1", M_DATA, 1));
        let h = m(b"H", M_PCPROTO, 7);
        pq(q, h);
        assert_eq!(mr(h).b_band, 0, "putq forces a high-priority message's band to 0");
        pq(q, m(b"4", M_DATA, 3));
        pq(q, m(b"I", M_PCPROTO, 0));
        pq(q, m(b"5", M_DATA, 0));
        pq(q, m(b"2", M_DATA, 1));
        // SAFETY: live queue.
        let qr = unsafe { &*q };
        assert_eq!(qr.nband(), 3, "bands up to the highest used are created");
        assert_eq!(qr.band(3).unwrap().qb_count, 2);
        assert_eq!(qr.band(2).unwrap().qb_count, 0);
        assert_eq!(qr.count(), 4, "band-0 and high-priority bytes only");
        assert_eq!(drain(q), b"HI341205");
        free_q(q);
    });
}

#[test]
fn putbq_puts_a_message_back_at_the_head_of_its_class() {
    in_arena("putbq", |_| {
        let q = new_q();
        pq(q, m(b"h", M_PCPROTO, 0));
        pq(q, m(b"b", M_DATA, 2));
        pq(q, m(b"0", M_DATA, 0));
        // SAFETY: live queue, owned messages.
        assert_eq!(unsafe { putbq(q, m(b"c", M_DATA, 2)) }, 1);
        // SAFETY: live queue, owned messages.
        assert_eq!(unsafe { putbq(q, m(b"1", M_DATA, 0)) }, 1);
        // SAFETY: live queue, owned messages.
        assert_eq!(unsafe { putbq(q, m(b"g", M_PCPROTO, 0)) }, 1);
        // SAFETY: live queue, owned messages.
        assert_eq!(unsafe { putbq(q, m(b"e", M_DATA, 5)) }, 1);
        // SAFETY: live queue, owned messages.
        assert_eq!(unsafe { putbq(q, m(b"a", M_DATA, 1)) }, 1);
        assert_eq!(drain(q), b"ghecba10");
        free_q(q);
    });
}

#[test]
fn insq_inserts_before_and_refuses_out_of_order() {
    in_arena("insq", |_| {
        let q = new_q();
        let a = m(b"a", M_DATA, 2);
        let c = m(b"c", M_DATA, 0);
        pq(q, a);
        pq(q, c);
        // SAFETY: live queue; `c` and `a` are on it; owned new messages.
        assert_eq!(unsafe { insq(q, c, m(b"b", M_DATA, 1)) }, 1, "band 1 between band 2 and band 0");
        // SAFETY: live queue; `c` and `a` are on it; owned new messages.
        assert_eq!(unsafe { insq(q, null_mut(), m(b"d", M_DATA, 0)) }, 1, "NULL emp: at the tail");
        let bad = m(b"x", M_DATA, 3);
        // SAFETY: live queue; `c` and `a` are on it; owned new messages.
        assert_eq!(unsafe { insq(q, c, bad) }, 0, "band 3 after band 1: out of order");
        free(bad);
        let bad = m(b"y", M_PCPROTO, 0);
        // SAFETY: live queue; `c` and `a` are on it; owned new messages.
        assert_eq!(unsafe { insq(q, c, bad) }, 0, "high priority after normal: out of order");
        free(bad);
        // SAFETY: live queue; `c` and `a` are on it; owned new messages.
        assert_eq!(unsafe { insq(q, a, m(b"H", M_PCPROTO, 0)) }, 1);
        // SAFETY: live queue; `c` and `a` are on it; owned new messages.
        assert_eq!(unsafe { appq(q, a, m(b"A", M_DATA, 2)) }, 1, "appq: after a");
        // SAFETY: live queue; `c` and `a` are on it; owned new messages.
        assert_eq!(unsafe { appq(q, null_mut(), m(b"G", M_PCPROTO, 0)) }, 1, "appq NULL: at the head");
        assert_eq!(drain(q), b"GHaAbcd");
        free_q(q);
    });
}

#[test]
fn rmvq_removes_any_message_and_updates_counts() {
    in_arena("rmvq", |_| {
        let q = new_q();
        let a = m(b"aaaa", M_DATA, 0);
        let b = m(b"bb", M_DATA, 1);
        let c = m(b"c", M_DATA, 0);
        pq(q, a);
        pq(q, b);
        pq(q, c);
        // SAFETY: live queue; each message is on it.
        unsafe { rmvq(q, a) };
        // SAFETY: live queue; each message is on it.
        assert_eq!(unsafe { &*q }.count(), 1);
        free(a);
        // SAFETY: live queue; each message is on it.
        unsafe { rmvq(q, b) };
        // SAFETY: live queue; each message is on it.
        assert_eq!(unsafe { &*q }.band(1).unwrap().qb_count, 0);
        free(b);
        // SAFETY: live queue; each message is on it.
        assert_eq!(unsafe { qsize(q) }, 1);
        assert_eq!(drain(q), b"c");
        free_q(q);
    });
}

#[test]
fn flushq_flushdata_keeps_control_messages_in_order() {
    in_arena("flushq", |_| {
        let q = new_q();
        pq(q, m(b"d", M_DATA, 0));
        pq(q, m(b"C", M_CTL, 0));
        pq(q, m(b"p", M_PROTO, 1));
        pq(q, m(b"P", M_PCPROTO, 0));
        pq(q, m(b"S", M_PCSIG, 0));
        pq(q, m(b"E", M_SIG, 0));
        // SAFETY: live queue.
        unsafe { flushq(q, FLUSHDATA) };
        assert_eq!(drain(q), b"SCE", "M_PCPROTO, M_PROTO, M_DATA flushed; others kept in order");
        pq(q, m(b"d", M_DATA, 0));
        pq(q, m(b"C", M_CTL, 0));
        // SAFETY: live queue.
        unsafe { flushq(q, FLUSHALL) };
        // SAFETY: live queue.
        assert_eq!(unsafe { qsize(q) }, 0);
        // SAFETY: live queue.
        assert_eq!(unsafe { &*q }.count(), 0);
        free_q(q);
    });
}

#[test]
fn flushq_leaves_qwantr_natively() {
    in_arena("flushq_wantr", |_| {
        let q = new_q();
        pq(q, m(b"d", M_DATA, 0));
        // SAFETY: live queue.
        unsafe { flushq(q, FLUSHALL) };
        // SAFETY: live queue.
        assert_ne!(unsafe { &*q }.flag() & QWANTR, 0, "LfS does not clear QWANTR (LiS does)");
        free_q(q);
    });
}

#[test]
fn flushband_zero_flushes_normal_and_high_priority_natively() {
    in_arena("flushband", |_| {
        let q = new_q();
        pq(q, m(b"H", M_PCPROTO, 0));
        pq(q, m(b"2", M_DATA, 2));
        pq(q, m(b"1", M_DATA, 1));
        pq(q, m(b"0", M_DATA, 0));
        pq(q, m(b"C", M_CTL, 1));
        // SAFETY: live queue.
        unsafe { flushband(q, 1, FLUSHDATA) };
        assert_eq!(drain_keep(q), b"H2C0");
        // SAFETY: live queue.
        unsafe { flushband(q, 0, FLUSHALL) };
        assert_eq!(drain_keep(q), b"2C");
        // SAFETY: live queue.
        unsafe { flushband(q, 9, FLUSHALL) };
        assert_eq!(drain_keep(q), b"2C", "a band that does not exist: no-op");
        // SAFETY: live queue.
        unsafe { flushband(q, 1, FLUSHALL) };
        assert_eq!(drain(q), b"2");
        free_q(q);
    });
}

/// The first bytes of the messages on `q`, without removing them.
fn drain_keep(q: *mut Queue) -> Vec<u8> {
    let mut v = Vec::new();
    // SAFETY: live queue; the test owns it and nothing else touches it.
    let mut mp = unsafe { &*q }.first();
    while !mp.is_null() {
        v.push(mr(mp).data()[0]);
        mp = mr(mp).b_next;
    }
    v
}

#[test]
fn freeq_frees_the_messages_still_queued() {
    in_arena("freeq_msgs", |_| {
        let q = new_q();
        pq(q, m(b"a", M_DATA, 0));
        pq(q, m(b"b", M_DATA, 4));
        // SAFETY: live pair.
        pq(unsafe { WR(q) }, m(b"c", M_PCPROTO, 0));
        free_q(q);
    });
}

#[test]
fn strqget_and_strqset_read_and_change_queue_and_band_fields() {
    in_arena("strq", |_| {
        let q = new_q();
        let mut v = 0isize;
        // SAFETY: live queue.
        assert_eq!(unsafe { strqset(q, QField::QHIWAT, 0, 100) }, 0);
        // SAFETY: live queue.
        assert_eq!(unsafe { strqset(q, QField::QLOWAT, 0, 10) }, 0);
        // SAFETY: live queue.
        assert_eq!(unsafe { strqget(q, QField::QHIWAT, 0, &mut v) }, 0);
        assert_eq!(v, 100);
        // SAFETY: live queue.
        assert_eq!(unsafe { strqset(q, QField::QCOUNT, 0, 5) }, EPERM);
        // SAFETY: live queue.
        assert_eq!(unsafe { strqset(q, QField::QHIWAT, 0, -1) }, EINVAL);
        // SAFETY: live queue.
        assert_eq!(unsafe { strqset(q, QField::QHIWAT, 3, 7) }, 0, "creates bands up to 3");
        // SAFETY: live queue.
        assert_eq!(unsafe { &*q }.nband(), 3);
        // SAFETY: live queue.
        assert_eq!(unsafe { &*q }.band(2).unwrap().qb_hiwat, 100, "new bands inherit q_hiwat");
        // SAFETY: live queue.
        assert_eq!(unsafe { strqget(q, QField::QHIWAT, 3, &mut v) }, 0);
        assert_eq!(v, 7);
        // SAFETY: live queue.
        assert_eq!(unsafe { strqget(q, QField::QMAXPSZ, 3, &mut v) }, EINVAL);
        pq(q, m(b"xyz", M_DATA, 0));
        // SAFETY: live queue.
        assert_eq!(unsafe { strqget(q, QField::QCOUNT, 0, &mut v) }, 0);
        assert_eq!(v, 3);
        free_q(q);
    });
}

#[test]
fn a_band_that_cannot_be_allocated_makes_putq_fail() {
    let arena = ddi_kmem::Arena::builder().name("band_fail").build();
    arena.run(|| {
        let q = new_q();
        let mp = m(b"x", M_DATA, 200);
        arena.inject(ddi_kmem::FailurePlan::Always);
        // SAFETY: live queue, owned message.
        assert_eq!(unsafe { putq(q, mp) }, 0, "the band array could not be allocated");
        arena.clear_injection();
        assert!(mr(mp).b_next.is_null());
        free(mp);
        free_q(q);
    });
    assert_eq!(arena.bytes_in_use(), 0);
}

#[test]
fn plain_messages_fill_and_drain_like_the_others_around_high_priority_and_bands() {
    // putq and getq take plain messages (normal priority, band 0) on a short path; the
    // counts, QFULL (LfS: above q_hiwat, cleared below q_lowat or at 0), the queued mark
    // and the order around high-priority and banded messages stay those of the full path.
    in_arena("plain", |_| {
        let q = new_q();
        // SAFETY: live queue.
        assert_eq!(unsafe { strqset(q, QField::QHIWAT, 0, 10) }, 0);
        // SAFETY: live queue.
        assert_eq!(unsafe { strqset(q, QField::QLOWAT, 0, 4) }, 0);
        // SAFETY: live queue.
        let qr = unsafe { &*q };
        let a = m(b"a123", M_DATA, 0);
        pq(q, a);
        assert_ne!(mr(a).b_pad1 & MBLK_QUEUED, 0, "marked queued");
        pq(q, m(b"b1234", M_PROTO, 0));
        assert_eq!((qr.count(), qr.flag() & QFULL), (9, 0), "9 <= hiwat 10: not full");
        pq(q, m(b"c1", M_DATA, 0));
        assert_eq!((qr.count(), qr.flag() & QFULL), (11, QFULL), "11 > hiwat 10: full");
        // SAFETY: live queue.
        assert_eq!(unsafe { canput(q) }, 0, "full: the writer is told to wait");
        assert_ne!(qr.flag() & QWANTW, 0);
        pq(q, m(b"P", M_PCPROTO, 3));
        pq(q, m(b"B", M_DATA, 2));
        pq(q, m(b"d", M_DATA, 0));
        // SAFETY: live queue.
        let first = unsafe { getq(q) };
        assert_eq!((mr(first).data(), qr.count()), (&b"P"[..], 12), "high priority first");
        free(first);
        // SAFETY: live queue.
        let band = unsafe { getq(q) };
        assert_eq!((mr(band).data(), qr.count()), (&b"B"[..], 12), "then band 2");
        free(band);
        // SAFETY: live queue.
        let got = unsafe { getq(q) };
        assert_eq!(got, a);
        assert_eq!((mr(a).b_pad1 & MBLK_QUEUED, mr(a).b_next, mr(a).b_prev), (0, null_mut(), null_mut()));
        free(got);
        assert_eq!((qr.count(), qr.flag() & (QFULL | QWANTW)), (8, QFULL | QWANTW), "8 >= lowat 4: still full");
        // SAFETY: live queue.
        free(unsafe { getq(q) });
        assert_eq!((qr.count(), qr.flag() & (QFULL | QWANTW)), (3, 0), "3 < lowat 4: not full, writer released");
        assert_eq!(drain(q), b"cd");
        assert_eq!((qr.count(), qr.first(), qr.last()), (0, null_mut(), null_mut()));
        // SAFETY: live queue.
        assert_eq!(unsafe { qsize(q) }, 0);
        free_q(q);
    });
}
