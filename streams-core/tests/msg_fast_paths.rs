//! The fast paths of `allocb` and `freeb` and the constructed state of the combined block
//! (`mdb_constructor`): a freed block returns to the cache in its constructed state and the
//! next `allocb` writes only what varies, so whatever a message's user changed must not
//! leak into the next message.
//!
//! The fast paths run only while no arena of the process checks, so this test binary never
//! builds a checking arena: every arena here is `Checking::OFF` (debug builds default to
//! checking). The same operations under checking are covered by `messages.rs` and
//! `misuse.rs`.

mod common;

use common::{db, mb, mr, put};
use ddi_kmem::{Arena, Checking, Response};
use std::ffi::c_void;
use std::sync::atomic::{AtomicUsize, Ordering};
use streams_core::{
    BPRI_MED, FASTBUF, Frtn, M_PROTO, MBLK_QUEUED, MSGMARK, Mblk, StreamsError, allocb, dupb, esballoc, freeb, freemsg,
    linkb, pullupmsg, take_errors,
};

/// Runs `f` in a fresh plain arena (no checking) and checks that every byte came back.
fn plain<R>(name: &str, response: Response, f: impl FnOnce(&Arena) -> R) -> R {
    let arena = Arena::builder().name(name).checking(Checking::OFF).response(response).build();
    let r = arena.run(|| f(&arena));
    assert_eq!(arena.bytes_in_use(), 0, "{name}: memory still in use");
    r
}

/// Asserts that `mp` is a fresh small message as `allocb(size)` documents it, in the inline
/// buffer of its own combined block.
fn assert_fresh_small(mp: *mut Mblk, size: usize) {
    let m = mr(mp);
    let d = db(mp);
    assert!(m.b_next.is_null() && m.b_prev.is_null() && m.b_cont.is_null());
    assert_eq!(m.b_rptr, d.db_base);
    assert_eq!(m.b_wptr, d.db_base);
    assert_eq!((m.b_band, m.b_pad1, m.b_flag, m.b_csum), (0, 0, 0, 0));
    assert_eq!(d.db_type, streams_core::M_DATA);
    assert_eq!(d.db_ref(), 1);
    assert_eq!(d.db_flag, 0);
    assert_eq!(d.db_size as usize, size);
    assert!(d.db_frtnp.is_null());
    // The inline buffer: right after the 128 bytes of headers, FASTBUF bytes.
    assert_eq!(d.db_base.addr(), mp.addr() + 128);
    assert_eq!(d.capacity(), FASTBUF);
    // The data block is the block's own, right after the message block.
    assert_eq!(m.b_datap.addr(), mp.addr() + 64);
}

/// Frees `mp`; allocates again and returns the new message, which a LIFO magazine hands out
/// from the same block (asserted, so that the test really looks at a reused block).
fn free_and_reuse(mp: *mut Mblk, size: usize) -> *mut Mblk {
    // SAFETY: the caller's message, freed once.
    unsafe { freeb(mp) };
    let again = allocb(size, BPRI_MED);
    assert_eq!(again, mp, "the cache hands the freed block out again");
    again
}

#[test]
fn a_message_freed_with_its_fields_changed_is_handed_out_clean() {
    plain("fast_clean", Response::Panic, |_| {
        let mp = allocb(64, BPRI_MED);
        assert_fresh_small(mp, 64);
        put(mp, &[0xa5; 64]);
        let m = mb(mp);
        m.b_rptr = m.b_rptr.wrapping_add(10);
        m.b_band = 7;
        m.b_flag = MSGMARK;
        m.b_csum = 0xdead;
        m.b_pad1 = 0x80; // another bit than the queued mark
        // SAFETY: the data block is ours alone; db_type and db_flag may be written then.
        unsafe { (*m.b_datap).db_type = M_PROTO };
        // SAFETY: as above.
        unsafe { (*m.b_datap).db_flag = 0x10 };
        let again = free_and_reuse(mp, 5);
        assert_fresh_small(again, 5);
        // SAFETY: allocated above, freed once.
        unsafe { freeb(again) };
    });
}

#[test]
fn a_message_freed_with_a_continuation_is_handed_out_without_it() {
    plain("fast_cont", Response::Panic, |_| {
        let head = allocb(8, BPRI_MED);
        let tail = allocb(8, BPRI_MED);
        // SAFETY: two messages we own.
        unsafe { linkb(head, tail) };
        // freemsg frees both; the next two allocations reuse them, in LIFO order.
        // SAFETY: allocated above, freed once.
        unsafe { freemsg(head) };
        let a = allocb(8, BPRI_MED);
        let b = allocb(8, BPRI_MED);
        assert!([a, b].contains(&head) && [a, b].contains(&tail));
        assert_fresh_small(a, 8);
        assert_fresh_small(b, 8);
        // SAFETY: allocated above, each freed once.
        unsafe { freeb(a) };
        // SAFETY: as above.
        unsafe { freeb(b) };
    });
}

#[test]
fn dupb_blocks_return_to_the_constructed_state_in_either_free_order() {
    plain("fast_dup", Response::Panic, |_| {
        for original_first in [false, true] {
            let mp = allocb(64, BPRI_MED);
            put(mp, b"shared");
            // SAFETY: allocated above.
            let dp = unsafe { dupb(mp) };
            assert!(!dp.is_null());
            assert_eq!(db(mp).db_ref(), 2);
            assert_eq!(mr(dp).b_datap, mr(mp).b_datap);
            let (first, second) = if original_first { (mp, dp) } else { (dp, mp) };
            // SAFETY: each freed once.
            unsafe { freeb(first) };
            assert_eq!(db(second).db_ref(), 1);
            assert_eq!(mr(second).data(), b"shared");
            // SAFETY: as above.
            unsafe { freeb(second) };
            // Both blocks are back; both come out clean.
            let a = allocb(16, BPRI_MED);
            let b = allocb(16, BPRI_MED);
            assert!([a, b].contains(&mp) && [a, b].contains(&dp));
            assert_fresh_small(a, 16);
            assert_fresh_small(b, 16);
            // SAFETY: allocated above, each freed once.
            unsafe { freeb(a) };
            // SAFETY: as above.
            unsafe { freeb(b) };
        }
    });
}

static FREED: AtomicUsize = AtomicUsize::new(0);

fn count_free(_arg: *mut c_void) {
    FREED.fetch_add(1, Ordering::SeqCst);
}

#[test]
fn an_esballoc_block_never_gets_the_inline_buffer_and_its_block_comes_back_clean() {
    plain("fast_esballoc", Response::Panic, |_| {
        let mut external = vec![0u8; 300];
        let base = external.as_mut_ptr();
        // A constructed block first, freed, so the esballoc takes a constructed block.
        let mp = allocb(64, BPRI_MED);
        // SAFETY: allocated above, freed once.
        unsafe { freeb(mp) };
        let frtn = Frtn { free_func: Some(count_free), free_arg: std::ptr::null_mut() };
        let before = FREED.load(Ordering::SeqCst);
        // SAFETY: `external` outlives the message and is not otherwise accessed meanwhile.
        let ep = unsafe { esballoc(base, external.len(), BPRI_MED, &frtn) };
        assert_eq!(ep, mp, "the esballoc reuses the constructed block");
        let d = db(ep);
        assert_eq!(d.db_base, base);
        assert_eq!(d.db_lim, base.wrapping_add(300));
        assert_eq!(mr(ep).b_rptr, base);
        assert!(!d.db_frtnp.is_null());
        put(ep, &[1; 300]);
        // SAFETY: allocated above, freed once.
        unsafe { freeb(ep) };
        assert_eq!(FREED.load(Ordering::SeqCst), before + 1, "the free routine ran once");
        let again = allocb(100, BPRI_MED);
        assert_eq!(again, mp);
        assert_fresh_small(again, 100);
        // SAFETY: allocated above, freed once.
        unsafe { freeb(again) };
        assert_eq!(FREED.load(Ordering::SeqCst), before + 1, "and never again");
        assert_eq!(external, vec![1; 300]);
    });
}

#[test]
fn a_large_message_frees_its_buffer_and_its_block_comes_back_clean() {
    plain("fast_large", Response::Panic, |arena| {
        for size in [129, 200, 1000, 1024, 4000, 4096, 5000, 131_072] {
            let mp = allocb(size, BPRI_MED);
            assert!(!mp.is_null(), "{size}");
            let d = db(mp);
            assert_eq!(d.capacity(), arena.extent(size).unwrap(), "{size}: db_lim keeps the kmem slack");
            assert_eq!(d.db_size as usize, size);
            assert_eq!(mr(mp).b_rptr, d.db_base);
            if size <= 2048 {
                assert_eq!(d.db_base.addr(), mp.addr() + 128, "{size}: a large combined block");
            } else {
                assert_ne!(d.db_base.addr(), mp.addr() + 128, "{size}: a separate buffer");
            }
            let cap = d.capacity();
            put(mp, &vec![0x5a; cap]);
            if size <= 2048 {
                // The same class again: the block comes back with its own full buffer.
                let again = free_and_reuse(mp, size);
                assert_eq!(db(again).capacity(), cap);
                assert_eq!(db(again).db_base.addr(), mp.addr() + 128);
                assert_eq!(mr(again).b_wptr, db(again).db_base);
                // SAFETY: allocated above, freed once.
                unsafe { freeb(again) };
                continue;
            }
            let again = free_and_reuse(mp, 64);
            assert_fresh_small(again, 64);
            // SAFETY: allocated above, freed once.
            unsafe { freeb(again) };
        }
    });
}

#[test]
fn a_pulled_up_message_returns_both_blocks_clean() {
    plain("fast_pullup", Response::Panic, |_| {
        let mp = allocb(8, BPRI_MED);
        put(mp, b"abcd");
        let tail = allocb(8, BPRI_MED);
        put(tail, b"efgh");
        // SAFETY: messages we own.
        unsafe { linkb(mp, tail) };
        // SAFETY: an allocated message.
        assert_eq!(unsafe { pullupmsg(mp, -1) }, 1);
        assert_eq!(mr(mp).data(), b"abcdefgh");
        assert!(mr(mp).b_cont.is_null());
        // SAFETY: allocated above, freed once.
        unsafe { freemsg(mp) };
        let blocks: Vec<*mut Mblk> = (0..3).map(|_| allocb(32, BPRI_MED)).collect();
        assert!(blocks.contains(&mp));
        for &b in &blocks {
            assert_fresh_small(b, 32);
        }
        for b in blocks {
            // SAFETY: allocated above, each freed once.
            unsafe { freeb(b) };
        }
    });
}

#[test]
fn a_queued_message_is_reported_by_the_fast_free_path_too() {
    plain("fast_queued", Response::Report, |arena| {
        let mp = allocb(16, BPRI_MED);
        mb(mp).b_pad1 |= MBLK_QUEUED;
        // SAFETY: allocated; the free is refused (the misuse under test).
        unsafe { freeb(mp) };
        let other = allocb(16, BPRI_MED);
        mb(mp).b_pad1 &= !MBLK_QUEUED;
        mb(mp).b_next = other;
        // SAFETY: as above.
        unsafe { freeb(mp) };
        let errors = take_errors(arena);
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(errors.iter().all(|e| matches!(e, StreamsError::StillQueued { call: "freeb", .. })), "{errors:?}");
        // Neither free happened: the message is intact, and is freed once unlinked.
        mb(mp).b_next = std::ptr::null_mut();
        assert_eq!(db(mp).db_ref(), 1);
        // SAFETY: allocated above, freed once each.
        unsafe { freeb(mp) };
        // SAFETY: as above.
        unsafe { freeb(other) };
    });
}

#[test]
fn many_messages_of_every_kind_come_and_go_clean() {
    plain("fast_mix", Response::Panic, |_| {
        let mut held: Vec<*mut Mblk> = Vec::new();
        let mut seed = 0x2545_f491_u32;
        let rounds = if cfg!(miri) { 400 } else { 5000 };
        for i in 0..rounds {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            match seed % 5 {
                0 | 1 => {
                    let size = (seed as usize >> 8) % 300;
                    let mp = allocb(size, BPRI_MED);
                    if size <= FASTBUF {
                        assert_fresh_small(mp, size);
                    }
                    let room = mr(mp).tailroom().min(8);
                    put(mp, &vec![i as u8; room]);
                    mb(mp).b_band = i as u8;
                    held.push(mp);
                }
                2 if !held.is_empty() => {
                    let mp = held[(seed as usize >> 8) % held.len()];
                    // SAFETY: a held message.
                    let dp = unsafe { dupb(mp) };
                    if !dp.is_null() {
                        held.push(dp);
                    }
                }
                _ if !held.is_empty() => {
                    let mp = held.swap_remove((seed as usize >> 8) % held.len());
                    // SAFETY: a held message, removed from the list, freed once.
                    unsafe { freeb(mp) };
                }
                _ => {}
            }
        }
        for mp in held {
            // SAFETY: as above.
            unsafe { freeb(mp) };
        }
    });
}

/// Message blocks handed to another thread in a test.
struct Blocks(Vec<*mut Mblk>);
// SAFETY: the blocks are given away whole; only the receiving thread uses them.
unsafe impl Send for Blocks {}

#[test]
fn messages_freed_where_the_thread_last_allocated_in_another_arena_go_home() {
    // `freeb`'s fast path takes the thread's last environment when the block is of it, and
    // the block's own environment otherwise: messages of every class, freed after the thread
    // moved to another arena, and on a thread that never allocated, return to their arena.
    let sizes = [0, 64, FASTBUF, FASTBUF + 1, 512, 1024, 2048, 2049, 4000];
    let a = Arena::builder().name("home").checking(Checking::OFF).build();
    let b = Arena::builder().name("away").checking(Checking::OFF).build();
    let made = || Blocks(a.run(|| sizes.iter().map(|&s| allocb(s, BPRI_MED)).collect()));
    let free_all = |blocks: Blocks| {
        for p in blocks.0 {
            // SAFETY: each came from allocb in `a` and is freed once.
            unsafe { freeb(p) };
        }
    };
    let here = made();
    assert!(here.0.iter().all(|p| !p.is_null()));
    assert!(a.bytes_in_use() > 0);
    b.run(|| {
        let own = allocb(64, BPRI_MED);
        free_all(here);
        // SAFETY: allocated just above, freed once.
        unsafe { freeb(own) };
    });
    assert_eq!((a.bytes_in_use(), b.bytes_in_use()), (0, 0));
    let there = made();
    std::thread::scope(|t| {
        // This thread never allocated a message.
        t.spawn(|| free_all(there));
    });
    assert_eq!(a.bytes_in_use(), 0);
}
