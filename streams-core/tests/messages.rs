//! Message types, allocation, reference counting and the utilities: one test per man-page
//! statement.

mod common;

use common::*;
// `streams_core::put` (the DDI put) shares the name; the tests mean the helper.
use common::put;
use ddi_kmem::FailurePlan;
use std::ffi::c_void;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use streams_core::*;

// ---- types (lfs-lis.md §2.1, §2.2) ----

#[test]
fn message_types_use_the_lfs_numbering() {
    assert_eq!(M_DATA.0, 0x00);
    assert_eq!(M_PROTO.0, 0x01);
    assert_eq!(M_BREAK.0, 0x08);
    assert_eq!(M_DELAY.0, 0x0c);
    assert_eq!(M_CTL.0, 0x0d);
    assert_eq!(M_IOCTL.0, 0x0e);
    assert_eq!(M_SETOPTS.0, 0x10);
    assert_eq!(QPCTL.0, 0x80);
    assert_eq!(M_IOCACK.0, 0x81);
    assert_eq!(M_PCPROTO.0, 0x83);
    assert_eq!(M_FLUSH.0, 0x86);
    assert_eq!(M_ERROR.0, 0x8a);
    assert_eq!(M_STARTI.0, 0x90);
    assert_eq!(M_HPDATA.0, 0x96);
    assert_eq!(M_FLUSH.name(), Some("M_FLUSH"));
    assert_eq!(format!("{:?}", MsgType(0x7f)), "MsgType(0x7f)");
}

#[test]
fn high_priority_means_at_or_above_qpctl() {
    for t in [M_IOCACK, M_PCPROTO, M_FLUSH, M_HANGUP, M_STARTI, M_HPDATA] {
        assert!(pcmsg(t) && t.is_high_priority(), "{t:?}");
    }
    for t in [M_DATA, M_PROTO, M_CTL, M_IOCTL, M_DELAY, M_BACKWASH] {
        assert!(!pcmsg(t), "{t:?}");
    }
}

#[test]
fn datamsg_is_data_proto_pcproto_and_delay() {
    for t in [M_DATA, M_PROTO, M_PCPROTO, M_DELAY] {
        assert!(datamsg(t), "{t:?}");
    }
    for t in [M_CTL, M_IOCTL, M_FLUSH, M_SIG, M_PCSIG] {
        assert!(!datamsg(t), "{t:?}");
    }
}

#[test]
fn ctlmsg_is_everything_but_data_proto_and_pcproto() {
    for t in [M_DATA, M_PROTO, M_PCPROTO] {
        assert!(!ctlmsg(t), "{t:?}");
    }
    for t in [M_DELAY, M_CTL, M_IOCTL, M_FLUSH, M_ERROR] {
        assert!(ctlmsg(t), "{t:?}");
    }
}

#[test]
fn headers_are_128_bytes_and_fastbuf_is_128() {
    assert_eq!(std::mem::size_of::<Mblk>(), 64);
    assert_eq!(std::mem::size_of::<Dblk>(), 64);
    assert_eq!(FASTBUF, 128);
}

// ---- allocb (allocb.9) ----

#[test]
fn allocb_returns_an_empty_m_data_block() {
    in_arena("allocb_empty", |_| {
        let mp = allocb(10, BPRI_MED);
        let m = mr(mp);
        let d = db(mp);
        assert_eq!(m.b_rptr, m.b_wptr);
        assert_eq!(m.b_rptr, d.db_base);
        assert_eq!(d.db_type, M_DATA);
        assert_eq!(d.db_ref(), 1);
        assert_eq!((m.b_band, m.b_flag), (0, 0));
        assert!(m.b_cont.is_null() && m.b_next.is_null() && m.b_prev.is_null());
        assert!(d.capacity() >= 10);
        assert_eq!(d.db_size, 10);
        free(mp);
    });
}

#[test]
fn small_messages_are_one_combined_block() {
    in_arena("allocb_combined", |_| {
        let mp = allocb(FASTBUF, BPRI_LO);
        let d = db(mp);
        // The message block, the data block, then the buffer: one object.
        assert_eq!(d.db_base.addr() - mp.addr(), 128);
        assert_eq!(std::ptr::from_ref(d).addr() - mp.addr(), 64);
        assert_eq!(d.capacity(), FASTBUF);
        assert_eq!(d.db_base.addr() % 64, 0, "the buffer starts on a cache line");
        free(mp);
    });
}

#[test]
fn allocb_zero_succeeds() {
    in_arena("allocb_zero", |_| {
        let mp = allocb(0, BPRI_MED);
        assert!(!mp.is_null());
        assert_eq!(mb(mp).len(), 0);
        free(mp);
    });
}

#[test]
fn allocb_above_131072_fails_and_131072_succeeds() {
    in_arena("allocb_limit", |_| {
        assert!(allocb(131_073, BPRI_MED).is_null());
        let mp = allocb(131_072, BPRI_MED);
        assert!(!mp.is_null());
        free(mp);
    });
}

#[test]
fn large_messages_keep_the_power_of_two_slack() {
    in_arena("allocb_slack", |arena| {
        let mp = allocb(200, BPRI_HI);
        let d = db(mp);
        assert_eq!(d.capacity(), arena.extent(200).unwrap());
        assert_eq!(d.capacity(), 256);
        assert_eq!(d.db_size, 200);
        // The slack is usable (and not a redzone violation in a checking arena).
        put(mp, &[7; 256]);
        free(mp);
    });
}

#[test]
fn every_priority_is_accepted() {
    in_arena("allocb_pri", |_| {
        for pri in [BPRI_LO, BPRI_MED, BPRI_HI, BPRI_FT, BPRI_WAITOK, 77] {
            let mp = allocb(300, pri);
            assert!(!mp.is_null(), "pri {pri}");
            free(mp);
        }
    });
}

#[test]
fn allocb_fails_when_memory_is_short() {
    in_arena("allocb_fail", |arena| {
        arena.inject(FailurePlan::Always);
        assert!(allocb(16, BPRI_MED).is_null());
        assert!(allocb(1000, BPRI_HI).is_null());
        arena.clear_injection();
    });
}

#[test]
fn allocb_large_frees_its_buffer_when_the_block_fails() {
    in_arena("allocb_fail_block", |arena| {
        // Above the largest combined class (2048), a message is two allocations: the buffer,
        // then the block. (This test used 1000 bytes when every message above 128 bytes was
        // two allocations; the one-allocation sizes have their own test below.)
        arena.inject(FailurePlan::Nth(2)); // the buffer succeeds, the block fails
        assert!(allocb(4000, BPRI_MED).is_null());
        arena.clear_injection();
    });
}

#[test]
fn allocb_up_to_2048_is_one_allocation_that_fails_or_succeeds_whole() {
    in_arena("allocb_combined_fail", |arena| {
        for size in [129, 256, 1000, 1514, 2048] {
            // The first allocation is the whole message: failing it fails allocb.
            arena.inject(FailurePlan::Nth(1));
            assert!(allocb(size, BPRI_MED).is_null(), "allocb({size}) with its allocation failed");
            arena.clear_injection();
            // Failing a second allocation does not touch it: there is none.
            arena.inject(FailurePlan::Nth(2));
            let mp = allocb(size, BPRI_MED);
            arena.clear_injection();
            assert!(!mp.is_null(), "allocb({size}) is one allocation");
            // SAFETY: a live message from allocb.
            let db = unsafe { (*mp).b_datap };
            // SAFETY: its data block, live with it.
            let db = unsafe { &*db };
            let (base, lim) = (db.db_base, db.db_lim);
            assert!(lim.addr() - base.addr() >= size, "allocb({size}) holds its size");
            free(mp);
        }
    });
}

#[test]
fn bpri_waitok_sleeps_rather_than_fails() {
    in_arena("allocb_waitok", |arena| {
        // Injection only fails allocations allowed to fail: KM_SLEEP ones are not.
        arena.inject(FailurePlan::Always);
        let a = allocb(16, BPRI_WAITOK);
        let b = allocb(4000, BPRI_WAITOK);
        arena.clear_injection();
        assert!(!a.is_null() && !b.is_null());
        free(a);
        free(b);
    });
}

#[test]
fn testb_reports_whether_allocb_would_succeed() {
    in_arena("testb", |arena| {
        assert_eq!(testb(100, BPRI_MED), 1);
        arena.inject(FailurePlan::Always);
        assert_eq!(testb(100, BPRI_MED), 0);
        arena.clear_injection();
    });
}

// ---- esballoc ----

static ESB_FREES: AtomicUsize = AtomicUsize::new(0);

fn count_free(arg: *mut c_void) {
    assert_eq!(arg.addr(), 0x1234);
    ESB_FREES.fetch_add(1, Ordering::SeqCst);
}

#[test]
fn esballoc_wraps_the_buffer_and_runs_the_free_routine_once_at_the_last_free() {
    in_arena("esballoc", |_| {
        let mut buf = [0u8; 64];
        let base = buf.as_mut_ptr();
        let mp = {
            // The frtn_t is copied: this one goes out of scope before the free.
            let frtn = Frtn { free_func: Some(count_free), free_arg: std::ptr::without_provenance_mut(0x1234) };
            // SAFETY: `buf` outlives the message; the routine is sound on any thread.
            unsafe { esballoc(base, 64, BPRI_MED, &frtn) }
        };
        let d = db(mp);
        assert_eq!((mb(mp).b_rptr, mb(mp).b_wptr, d.db_base), (base, base, base));
        assert_eq!(d.db_lim, base.wrapping_add(64));
        assert!(!d.db_frtnp.is_null());
        put(mp, b"ext");
        // SAFETY: allocated above.
        let dup = unsafe { dupb(mp) };
        free(mp);
        assert_eq!(ESB_FREES.load(Ordering::SeqCst), 0, "a reference remains");
        assert_eq!(mb(dup).data(), b"ext");
        free(dup);
        assert_eq!(ESB_FREES.load(Ordering::SeqCst), 1);
        assert_eq!(&buf[..3], b"ext");
    });
}

#[test]
fn desballoc_is_esballoc_natively() {
    static N: AtomicUsize = AtomicUsize::new(0);
    fn f(_: *mut c_void) {
        N.fetch_add(1, Ordering::SeqCst);
    }
    in_arena("desballoc", |_| {
        let mut buf = [0u8; 8];
        let frtn = Frtn { free_func: Some(f), free_arg: std::ptr::null_mut() };
        // SAFETY: `buf` outlives the message.
        let mp = unsafe { desballoc(buf.as_mut_ptr(), 8, BPRI_LO, &frtn) };
        assert!(!mp.is_null());
        free(mp);
        assert_eq!(N.load(Ordering::SeqCst), 1);
    });
}

// ---- dupb, freeb, reference counts ----

#[test]
fn dupb_shares_the_data_block_and_copies_the_window() {
    in_arena("dupb", |_| {
        let mp = block(b"shared", M_PROTO);
        mb(mp).b_band = 3;
        mb(mp).b_flag = MSGDELIM;
        mb(mp).b_csum = 99;
        // SAFETY: allocated above.
        let dp = unsafe { dupb(mp) };
        assert_eq!(mb(dp).b_datap, mb(mp).b_datap);
        assert_eq!((mb(dp).b_rptr, mb(dp).b_wptr), (mb(mp).b_rptr, mb(mp).b_wptr));
        assert_eq!((mb(dp).b_band, mb(dp).b_flag, mb(dp).b_csum), (3, MSGDELIM, 99));
        assert_eq!(db(mp).db_ref(), 2);
        assert!(mb(dp).b_cont.is_null());
        free(mp);
        assert_eq!(db(dp).db_ref(), 1);
        assert_eq!(mb(dp).data(), b"shared");
        free(dp);
    });
}

#[test]
fn dupb_fails_at_db_ref_255() {
    in_arena("dupb_255", |_| {
        let mp = allocb(8, BPRI_MED);
        let dups: Vec<_> = (0..254)
            .map(|_| {
                // SAFETY: `mp` is allocated.
                unsafe { dupb(mp) }
            })
            .collect();
        assert!(dups.iter().all(|d| !d.is_null()));
        assert_eq!(db(mp).db_ref(), 255);
        // SAFETY: as above.
        assert!(unsafe { dupb(mp) }.is_null());
        assert_eq!(db(mp).db_ref(), 255, "a failed dupb leaves the count alone");
        dups.into_iter().for_each(free);
        free(mp);
    });
}

#[test]
fn dupb_fails_when_memory_is_short() {
    in_arena("dupb_fail", |arena| {
        let mp = allocb(8, BPRI_MED);
        arena.inject(FailurePlan::Always);
        // SAFETY: allocated above.
        assert!(unsafe { dupb(mp) }.is_null());
        arena.clear_injection();
        assert_eq!(db(mp).db_ref(), 1);
        free(mp);
    });
}

#[test]
fn freeb_releases_memory_only_with_the_last_reference() {
    in_arena("freeb_last", |arena| {
        let mp = block(&[5; 1000], M_DATA);
        let before = arena.bytes_in_use();
        // SAFETY: allocated above.
        let dp = unsafe { dupb(mp) };
        free(mp);
        assert!(arena.bytes_in_use() >= before, "the buffer lives while the dup does");
        assert_eq!(mb(dp).data(), &[5; 1000][..]);
        free(dp);
    });
}

#[test]
fn freeb_of_null_is_ignored() {
    in_arena("freeb_null", |_| {
        // SAFETY: NULL is allowed.
        unsafe { freeb(std::ptr::null_mut()) };
        // SAFETY: as above.
        unsafe { freemsg(std::ptr::null_mut()) };
    });
}

#[test]
fn freemsg_frees_every_block() {
    in_arena("freemsg", |_| {
        let mp = block(b"a", M_DATA);
        // SAFETY: allocated messages, the second appended to the first.
        unsafe { linkb(mp, block(&[1; 500], M_DATA)) };
        // SAFETY: as above.
        unsafe { linkb(mp, block(b"c", M_PROTO)) };
        free(mp);
    });
}

#[test]
fn dups_of_dups_and_any_free_order_return_every_block() {
    in_arena("dup_orders", |_| {
        for order in 0..6usize {
            let a = block(b"x", M_DATA);
            // SAFETY: allocated.
            let b = unsafe { dupb(a) };
            // SAFETY: allocated.
            let c = unsafe { dupb(b) };
            let mut v = vec![a, b, c];
            v.rotate_left(order % 3);
            if order >= 3 {
                v.reverse();
            }
            assert_eq!(db(c).db_ref(), 3);
            v.into_iter().for_each(free);
        }
    });
}

#[test]
fn the_free_routine_runs_exactly_once_under_concurrent_frees() {
    fn bump(arg: *mut c_void) {
        // SAFETY: `arg` is the AtomicUsize the test keeps alive until every free is done.
        let c = unsafe { &*arg.cast::<AtomicUsize>() };
        c.fetch_add(1, Ordering::SeqCst);
    }
    let arena = ddi_kmem::Arena::builder().name("concurrent_frees").build();
    let rounds = n(50, 3);
    let threads = n(4, 2);
    for _ in 0..rounds {
        let count = Arc::new(AtomicUsize::new(0));
        let mut buf = vec![0u8; 32];
        let msgs: Vec<Msg> = arena.run(|| {
            let frtn = Frtn { free_func: Some(bump), free_arg: Arc::as_ptr(&count).cast_mut().cast() };
            // SAFETY: `buf` and `count` outlive every message (joined below).
            let mp = unsafe { esballoc(buf.as_mut_ptr(), 32, BPRI_MED, &frtn) };
            // SAFETY: a new message of our own.
            let m = unsafe { Msg::from_raw(mp) }.unwrap();
            let mut v: Vec<Msg> = (1..threads).map(|_| m.dup().unwrap()).collect();
            v.push(m);
            v
        });
        std::thread::scope(|s| {
            for m in msgs {
                let arena = arena.clone();
                s.spawn(move || arena.run(|| drop(m)));
            }
        });
        assert_eq!(count.load(Ordering::SeqCst), 1);
        drop(buf);
    }
    assert_eq!(arena.bytes_in_use(), 0);
}

// ---- copyb, copymsg, dupmsg ----

#[test]
fn copyb_copies_the_unread_bytes_type_band_flag_and_csum() {
    in_arena("copyb", |_| {
        let mp = block(b"..copy me", M_PROTO);
        mb(mp).b_rptr = mb(mp).b_rptr.wrapping_add(2);
        mb(mp).b_band = 5;
        mb(mp).b_flag = MSGMARK;
        mb(mp).b_csum = 7;
        // SAFETY: allocated.
        let cp = unsafe { copyb(mp) };
        assert_ne!(mb(cp).b_datap, mb(mp).b_datap);
        assert_eq!(mb(cp).data(), b"copy me");
        assert_eq!(mb(cp).b_rptr, db(cp).db_base, "LfS does not keep the offset");
        assert_eq!(db(cp).db_type, M_PROTO);
        assert_eq!((mb(cp).b_band, mb(cp).b_flag, mb(cp).b_csum), (5, MSGMARK, 7));
        assert_eq!(db(cp).db_ref(), 1);
        free(cp);
        free(mp);
    });
}

#[test]
fn copymsg_copies_every_block() {
    in_arena("copymsg", |_| {
        let mp = block(b"one", M_PROTO);
        // SAFETY: allocated messages.
        unsafe { linkb(mp, block(&[2; 300], M_DATA)) };
        // SAFETY: allocated.
        let cp = unsafe { copymsg(mp) };
        assert_eq!(bytes_of(cp), bytes_of(mp));
        assert_eq!(db(cp).db_type, M_PROTO);
        assert_eq!(db(mb(cp).b_cont).db_type, M_DATA);
        free(cp);
        free(mp);
    });
}

#[test]
fn copymsg_failure_frees_the_partial_copy_and_keeps_the_original() {
    in_arena("copymsg_fail", |arena| {
        let mp = block(b"one", M_DATA);
        // SAFETY: allocated messages.
        unsafe { linkb(mp, block(b"two", M_DATA)) };
        arena.inject(FailurePlan::Nth(2));
        // SAFETY: allocated.
        assert!(unsafe { copymsg(mp) }.is_null());
        arena.clear_injection();
        assert_eq!(bytes_of(mp), b"onetwo");
        free(mp);
    });
}

#[test]
fn dupmsg_shares_every_block_and_is_all_or_nothing() {
    in_arena("dupmsg", |arena| {
        let mp = block(b"one", M_DATA);
        // SAFETY: allocated messages.
        unsafe { linkb(mp, block(b"two", M_DATA)) };
        // SAFETY: allocated.
        let dp = unsafe { dupmsg(mp) };
        assert_eq!(bytes_of(dp), b"onetwo");
        assert_eq!(db(mb(mp).b_cont).db_ref(), 2);
        free(dp);
        arena.inject(FailurePlan::Nth(2));
        // SAFETY: allocated.
        assert!(unsafe { dupmsg(mp) }.is_null());
        arena.clear_injection();
        assert_eq!(db(mp).db_ref(), 1, "the partial dup was freed");
        free(mp);
    });
}

// ---- linkb, unlinkb, rmvb ----

#[test]
fn linkb_appends_and_unlinkb_detaches_the_head() {
    in_arena("linkb", |_| {
        let a = block(b"a", M_DATA);
        let b = block(b"b", M_DATA);
        let c = block(b"c", M_DATA);
        // SAFETY: allocated, distinct messages.
        unsafe { linkb(a, b) };
        // SAFETY: as above.
        unsafe { linkb(a, c) };
        assert_eq!(bytes_of(a), b"abc");
        // SAFETY: allocated.
        let rest = unsafe { unlinkb(a) };
        assert_eq!(rest, b);
        assert!(mb(a).b_cont.is_null());
        // SAFETY: NULL is allowed.
        assert!(unsafe { unlinkb(std::ptr::null_mut()) }.is_null());
        free(a);
        free(rest);
    });
}

#[test]
fn rmvb_removes_a_block_or_returns_minus_one() {
    in_arena("rmvb", |_| {
        let a = block(b"a", M_DATA);
        let b = block(b"b", M_DATA);
        let c = block(b"c", M_DATA);
        let stranger = block(b"s", M_DATA);
        // SAFETY: allocated, distinct messages.
        unsafe { linkb(a, b) };
        // SAFETY: as above.
        unsafe { linkb(a, c) };
        // SAFETY: `a` is allocated; `stranger` is not in it.
        let r = unsafe { rmvb(a, stranger) };
        assert_eq!(r, rmvb_not_found());
        assert_eq!(r.addr(), usize::MAX, "(mblk_t *)-1");
        // SAFETY: `b` is in `a`.
        assert_eq!(unsafe { rmvb(a, b) }, a);
        assert_eq!(bytes_of(a), b"ac");
        assert!(mb(b).b_cont.is_null());
        // SAFETY: `a` is the head: the rest is returned.
        assert_eq!(unsafe { rmvb(a, a) }, c);
        // SAFETY: `c` is alone.
        assert!(unsafe { rmvb(c, c) }.is_null());
        [a, b, c, stranger].into_iter().for_each(free);
    });
}

// ---- sizes ----

#[test]
fn msgdsize_counts_m_data_bytes_only() {
    in_arena("msgdsize", |_| {
        let mp = block(b"proto", M_PROTO);
        // SAFETY: allocated messages.
        unsafe { linkb(mp, block(b"data", M_DATA)) };
        // SAFETY: as above.
        unsafe { linkb(mp, block(b"more", M_DATA)) };
        // SAFETY: allocated.
        assert_eq!(unsafe { msgdsize(mp) }, 8);
        // SAFETY: allocated.
        assert_eq!(unsafe { msgsize(mp) }, 13);
        // SAFETY: allocated.
        assert_eq!(unsafe { xmsgsize(mp) }, 5);
        free(mp);
    });
}

#[test]
fn sizes_ignore_negative_windows() {
    in_arena("sizes_negative", |_| {
        let mp = block(b"abc", M_DATA);
        mb(mp).b_rptr = mb(mp).b_wptr.wrapping_add(1);
        // SAFETY: allocated.
        assert_eq!(unsafe { msgsize(mp) }, 0);
        mb(mp).b_rptr = db(mp).db_base;
        free(mp);
    });
}

// ---- pullupmsg, msgpullup ----

#[test]
fn pullupmsg_minus_one_joins_the_leading_blocks_of_one_type() {
    in_arena("pullupmsg_all", |_| {
        let mp = block(b"ab", M_DATA);
        // SAFETY: allocated messages.
        unsafe { linkb(mp, block(b"cd", M_DATA)) };
        // SAFETY: as above.
        unsafe { linkb(mp, block(b"ef", M_DATA)) };
        // SAFETY: as above.
        unsafe { linkb(mp, block(b"proto", M_PROTO)) };
        // SAFETY: allocated, ours.
        assert_eq!(unsafe { pullupmsg(mp, -1) }, 1);
        assert_eq!(mb(mp).data(), b"abcdef");
        assert_eq!(mb(mp).b_rptr.addr() % 64, 0, "cache-aligned");
        let next = mb(mp).b_cont;
        assert_eq!(db(next).db_type, M_PROTO, "absorbed blocks are freed");
        free(mp);
    });
}

#[test]
fn pullupmsg_keeps_what_is_left_of_a_partly_absorbed_block() {
    in_arena("pullupmsg_part", |_| {
        let mp = block(b"ab", M_DATA);
        // SAFETY: allocated messages.
        unsafe { linkb(mp, block(b"cdef", M_DATA)) };
        // SAFETY: allocated, ours.
        assert_eq!(unsafe { pullupmsg(mp, 3) }, 1);
        assert_eq!(mb(mp).data(), b"abc");
        assert_eq!(mb(mb(mp).b_cont).data(), b"def");
        free(mp);
    });
}

#[test]
fn pullupmsg_fails_below_minus_one_or_beyond_the_same_type_bytes() {
    in_arena("pullupmsg_fail", |arena| {
        let mp = block(b"ab", M_DATA);
        // SAFETY: allocated messages.
        unsafe { linkb(mp, block(b"cd", M_PROTO)) };
        // SAFETY: allocated, ours.
        assert_eq!(unsafe { pullupmsg(mp, -2) }, 0);
        // SAFETY: as above.
        assert_eq!(unsafe { pullupmsg(mp, 3) }, 0);
        // SAFETY: NULL is allowed.
        assert_eq!(unsafe { pullupmsg(std::ptr::null_mut(), 1) }, 0);
        // No memory: unchanged.
        mb(mp).b_rptr = mb(mp).b_rptr.wrapping_add(1); // misaligned, so a copy is needed
        arena.inject(FailurePlan::Always);
        // SAFETY: allocated, ours.
        assert_eq!(unsafe { pullupmsg(mp, 1) }, 0);
        arena.clear_injection();
        assert_eq!(bytes_of(mp), b"bcd");
        free(mp);
    });
}

#[test]
fn pullupmsg_of_an_aligned_block_holding_len_bytes_changes_nothing() {
    in_arena("pullupmsg_noop", |_| {
        let mp = block(b"abcdef", M_DATA);
        let d = mb(mp).b_datap;
        // SAFETY: allocated, ours.
        assert_eq!(unsafe { pullupmsg(mp, 4) }, 1);
        assert_eq!(mb(mp).b_datap, d);
        free(mp);
    });
}

#[test]
fn pullupmsg_releases_the_old_data_block() {
    static FREED: AtomicUsize = AtomicUsize::new(0);
    fn f(_: *mut c_void) {
        FREED.fetch_add(1, Ordering::SeqCst);
    }
    in_arena("pullupmsg_frees", |_| {
        let mut buf = *b"xhello";
        let frtn = Frtn { free_func: Some(f), free_arg: std::ptr::null_mut() };
        // SAFETY: `buf` outlives the message.
        let mp = unsafe { esballoc(buf.as_mut_ptr(), 6, BPRI_MED, &frtn) };
        mb(mp).b_rptr = mb(mp).b_rptr.wrapping_add(1);
        mb(mp).b_wptr = mb(mp).b_wptr.wrapping_add(6);
        // SAFETY: allocated, ours.
        assert_eq!(unsafe { pullupmsg(mp, -1) }, 1);
        assert_eq!(FREED.load(Ordering::SeqCst), 1, "the esballoc'd block lost its last reference");
        assert_eq!(mb(mp).data(), b"hello");
        free(mp);
        let _ = &mut buf;
    });
}

#[test]
fn pullupmsg_of_a_shared_block_leaves_the_dup_intact() {
    in_arena("pullupmsg_shared", |_| {
        let mp = block(b"a", M_DATA);
        // SAFETY: allocated messages.
        unsafe { linkb(mp, block(b"bc", M_DATA)) };
        // SAFETY: allocated.
        let dp = unsafe { dupb(mp) };
        // SAFETY: allocated, ours (the dup is a separate message block).
        assert_eq!(unsafe { pullupmsg(mp, -1) }, 1);
        assert_eq!(mr(mp).data(), b"abc");
        assert_eq!(mr(dp).data(), b"a", "the dup still sees the old data block");
        assert_eq!(db(dp).db_ref(), 1);
        free(mp);
        free(dp);
    });
}

#[test]
fn msgpullup_copies_len_bytes_into_a_new_message() {
    in_arena("msgpullup", |_| {
        let mp = block(b"ab", M_PROTO);
        // SAFETY: allocated messages.
        unsafe { linkb(mp, block(b"cde", M_PROTO)) };
        // SAFETY: as above.
        unsafe { linkb(mp, block(b"fg", M_DATA)) };
        // SAFETY: allocated.
        let np = unsafe { msgpullup(mp, 3) };
        assert_eq!(mb(np).data(), b"abc");
        assert_eq!(db(np).db_type, M_PROTO);
        assert_eq!(bytes_of(np), b"abcdefg");
        assert_eq!(bytes_of(mp), b"abcdefg", "the original is untouched");
        free(np);
        // SAFETY: allocated.
        let all = unsafe { msgpullup(mp, -1) };
        assert_eq!(mb(all).data(), b"abcde");
        free(all);
        // SAFETY: allocated; too many bytes.
        assert!(unsafe { msgpullup(mp, 6) }.is_null());
        free(mp);
    });
}

// ---- adjmsg ----

#[test]
fn adjmsg_trims_the_head_across_blocks_and_leaves_empty_blocks() {
    in_arena("adjmsg_head", |_| {
        let mp = block(b"ab", M_DATA);
        // SAFETY: allocated messages.
        unsafe { linkb(mp, block(b"cdef", M_DATA)) };
        // SAFETY: allocated, ours.
        assert_eq!(unsafe { adjmsg(mp, 3) }, 1);
        assert_eq!(mb(mp).len(), 0, "emptied block left in place");
        assert_eq!(bytes_of(mp), b"def");
        free(mp);
    });
}

#[test]
fn adjmsg_trims_the_tail_with_a_negative_length() {
    in_arena("adjmsg_tail", |_| {
        let mp = block(b"abcd", M_DATA);
        // SAFETY: allocated messages.
        unsafe { linkb(mp, block(b"ef", M_DATA)) };
        // SAFETY: allocated, ours.
        assert_eq!(unsafe { adjmsg(mp, -3) }, 1);
        assert_eq!(bytes_of(mp), b"abc");
        assert!(!mb(mp).b_cont.is_null(), "emptied block left in place");
        free(mp);
    });
}

#[test]
fn adjmsg_never_crosses_into_another_type_and_zero_succeeds() {
    in_arena("adjmsg_types", |_| {
        let mp = block(b"ab", M_PROTO);
        // SAFETY: allocated messages.
        unsafe { linkb(mp, block(b"cd", M_DATA)) };
        // SAFETY: allocated, ours.
        assert_eq!(unsafe { adjmsg(mp, 3) }, 0);
        // SAFETY: as above.
        assert_eq!(unsafe { adjmsg(mp, -3) }, 0);
        assert_eq!(bytes_of(mp), b"abcd", "a failed adjmsg changes nothing");
        // SAFETY: as above.
        assert_eq!(unsafe { adjmsg(mp, 0) }, 1);
        // SAFETY: NULL.
        assert_eq!(unsafe { adjmsg(std::ptr::null_mut(), 1) }, 0);
        free(mp);
    });
}
