//! Misuse in a checking arena: a clear error naming the call, and no corruption.

mod common;

use common::*;
use ddi_kmem::{Arena, Checking, Response};
use streams_core::*;

fn only_error(arena: &Arena) -> StreamsError {
    let mut e = take_errors(arena);
    assert_eq!(e.len(), 1, "{e:?}");
    e.pop().unwrap()
}

#[test]
fn a_double_freeb_is_reported_and_refused() {
    let arena = reporting("double_freeb");
    arena.run(|| {
        let mp = allocb(16, BPRI_MED);
        free(mp);
        // SAFETY: the misuse under test; a checking arena refuses it.
        unsafe { freeb(mp) };
    });
    let e = only_error(&arena);
    assert!(matches!(e, StreamsError::NotAllocated { call: "freeb", .. }), "{e}");
    assert!(e.to_string().starts_with("freeb: message block"), "{e}");
    assert_eq!(arena.bytes_in_use(), 0);
}

#[test]
fn a_double_free_of_a_dup_is_reported() {
    let arena = reporting("double_free_dup");
    arena.run(|| {
        let mp = allocb(16, BPRI_MED);
        // SAFETY: allocated.
        let dp = unsafe { dupb(mp) };
        free(dp);
        // SAFETY: the misuse under test.
        unsafe { freemsg(dp) };
        assert_eq!(db(mp).db_ref(), 1, "the refused free did not touch the count");
        free(mp);
    });
    assert!(matches!(only_error(&arena), StreamsError::NotAllocated { call: "freemsg", .. }));
    assert_eq!(arena.bytes_in_use(), 0);
}

#[test]
fn use_after_freeb_through_the_raw_interface_is_reported() {
    let arena = reporting("use_after_free");
    arena.run(|| {
        let mp = allocb(16, BPRI_MED);
        free(mp);
        // SAFETY: the misuse under test.
        assert!(unsafe { dupb(mp) }.is_null());
        // SAFETY: as above.
        assert!(unsafe { copyb(mp) }.is_null());
        // SAFETY: as above.
        assert_eq!(unsafe { msgdsize(mp) }, 0);
    });
    let e = take_errors(&arena);
    assert_eq!(e.len(), 3);
    assert!(matches!(e[2], StreamsError::NotAllocated { call: "msgdsize", .. }));
    assert!(matches!(e[0], StreamsError::NotAllocated { call: "dupb", .. }));
    assert!(matches!(e[1], StreamsError::NotAllocated { call: "copyb", .. }));
    assert_eq!(arena.bytes_in_use(), 0);
}

#[test]
fn freeb_of_a_message_still_on_a_queue_is_reported_and_refused() {
    let arena = reporting("freeb_queued");
    arena.run(|| {
        let a = allocb(16, BPRI_MED);
        let b = allocb(16, BPRI_MED);
        mb(a).b_next = b;
        mb(b).b_prev = a;
        // SAFETY: the misuse under test: refused.
        unsafe { freeb(a) };
        mb(a).b_next = std::ptr::null_mut();
        mb(b).b_prev = std::ptr::null_mut();
        free(a);
        free(b);
    });
    let e = only_error(&arena);
    assert!(matches!(e, StreamsError::StillQueued { call: "freeb", .. }));
    assert!(e.to_string().contains("still linked on a queue"));
    assert_eq!(arena.bytes_in_use(), 0);
}

#[test]
fn esballoc_with_a_null_base_is_reported() {
    let arena = reporting("esballoc_null");
    arena.run(|| {
        let frtn = Frtn { free_func: None, free_arg: std::ptr::null_mut() };
        // SAFETY: the misuse under test.
        assert!(unsafe { esballoc(std::ptr::null_mut(), 8, BPRI_MED, &frtn) }.is_null());
        let mut buf = [0u8; 4];
        // SAFETY: as above, with a NULL free routine.
        assert!(unsafe { esballoc(buf.as_mut_ptr(), 4, BPRI_MED, std::ptr::null()) }.is_null());
    });
    let e = take_errors(&arena);
    assert_eq!(e[0], StreamsError::NullArgument { call: "esballoc", what: "base" });
    assert!(matches!(e[1], StreamsError::NullArgument { call: "esballoc", .. }));
    assert_eq!(arena.bytes_in_use(), 0);
}

#[test]
#[should_panic(expected = "STREAMS: freeb: message block")]
fn a_double_freeb_panics_by_default() {
    let arena = Arena::builder().name("double_free_panic").checking(Checking::FULL).build();
    assert_eq!(arena.response(), Response::Panic);
    arena.run(|| {
        let mp = allocb(16, BPRI_MED);
        free(mp);
        // SAFETY: the misuse under test: panics.
        unsafe { freeb(mp) };
    });
}

#[test]
fn writing_to_a_shared_data_block_is_refused() {
    in_arena("shared_write", |_| {
        let mut m = Msg::from_slice(b"abc").unwrap();
        let d = m.dup().unwrap();
        let e = m.data_mut().unwrap_err();
        assert_eq!(e, StreamsError::Shared { call: "Msg::data_mut", db_ref: 2 });
        assert!(e.to_string().starts_with("Msg::data_mut: data block is shared"));
        assert!(matches!(m.extend_from_slice(b"d"), Err(StreamsError::Shared { call: "Msg::extend_from_slice", .. })));
        assert!(matches!(m.set_type(M_PROTO), Err(StreamsError::Shared { call: "Msg::set_type", .. })));
        drop(d);
        m.data_mut().unwrap()[0] = b'X';
        assert_eq!(m.data(), b"Xbc");
    });
}

/// A raw write through one message block of a shared data block (C code writing `*b_wptr++`
/// on a duplicate) is found at the next free of a sharer.
#[test]
fn a_raw_write_to_a_shared_data_block_is_reported_at_freeb() {
    let arena = reporting("raw_shared_write");
    arena.run(|| {
        let mp = allocb(16, BPRI_MED);
        let m = mb(mp);
        // SAFETY: 16 bytes of room after b_wptr; the block is not shared yet.
        unsafe {
            std::ptr::copy_nonoverlapping(b"abc".as_ptr(), m.b_wptr, 3);
        }
        m.b_wptr = m.b_wptr.wrapping_add(3);
        // SAFETY: allocated above.
        let dp = unsafe { dupb(mp) };
        assert!(!dp.is_null());
        // The misuse: write through the duplicate while the data block is shared.
        let d = mb(dp);
        // SAFETY: the byte is inside the buffer (b_rptr < b_wptr).
        unsafe { d.b_rptr.write(b'X') };
        // SAFETY: allocated by dupb above, freed once.
        unsafe { freeb(dp) };
        let e = only_error(&arena);
        assert!(matches!(e, StreamsError::WrittenWhileShared { call: "freeb", db_ref: 2, .. }), "{e}");
        assert!(e.to_string().contains("was written while shared"), "{e}");
        // The original saw the change (that is the harm); its own free is clean: the block
        // is no longer shared.
        assert_eq!(mr(mp).data(), b"Xbc");
        free(mp);
        assert!(take_errors(&arena).is_empty());
    });
    assert_eq!(arena.bytes_in_use(), 0);
}

#[test]
fn a_write_between_two_dupbs_is_reported_at_the_second() {
    let arena = reporting("raw_shared_write_dupb");
    arena.run(|| {
        let mp = allocb(8, BPRI_MED);
        mb(mp).b_wptr = mb(mp).b_wptr.wrapping_add(4);
        // SAFETY: allocated above.
        let d1 = unsafe { dupb(mp) };
        // SAFETY: inside the buffer.
        unsafe { mb(mp).b_rptr.write(7) };
        // SAFETY: allocated above.
        let d2 = unsafe { dupb(mp) };
        let e = only_error(&arena);
        assert!(matches!(e, StreamsError::WrittenWhileShared { call: "dupb", db_ref: 2, .. }), "{e}");
        for p in [d2, d1, mp] {
            free(p);
        }
        assert!(take_errors(&arena).is_empty());
    });
    assert_eq!(arena.bytes_in_use(), 0);
}

#[test]
fn writing_after_the_sharers_are_gone_is_not_reported() {
    let arena = reporting("unshared_write");
    arena.run(|| {
        let mp = allocb(8, BPRI_MED);
        mb(mp).b_wptr = mb(mp).b_wptr.wrapping_add(4);
        // SAFETY: allocated above.
        let d1 = unsafe { dupb(mp) };
        free(d1);
        // SAFETY: inside the buffer; the block is the original's alone again.
        unsafe { mb(mp).b_rptr.write(9) };
        free(mp);
        // A new block at the same address, never shared, written and freed: no report.
        let again = allocb(8, BPRI_MED);
        // SAFETY: 8 bytes of room.
        unsafe { mb(again).b_wptr.write(1) };
        free(again);
    });
    assert!(take_errors(&arena).is_empty());
    assert_eq!(arena.bytes_in_use(), 0);
}

#[test]
fn a_checking_arena_entered_after_a_plain_one_still_reports() {
    // The thread's allocb/freeb fast path keeps its slots of the plain arena's caches; the
    // checking arena entered next must not go through them, and must report.
    let plain = Arena::builder().name("plain_then_checking").checking(Checking::OFF).build();
    let checking = reporting("checking_after_plain");
    plain.run(|| {
        for size in [64, 1024] {
            free(allocb(size, BPRI_MED));
        }
        let held = allocb(1024, BPRI_MED);
        checking.run(|| {
            for size in [64, 1024] {
                let mp = allocb(size, BPRI_MED);
                free(mp);
                // SAFETY: the misuse under test; a checking arena refuses it.
                unsafe { freeb(mp) };
                let e = only_error(&checking);
                assert!(matches!(e, StreamsError::NotAllocated { call: "freeb", .. }), "{size}: {e}");
            }
        });
        assert!(take_errors(&checking).is_empty());
        // Back in the plain arena, its fast path serves again.
        free(held);
        free(allocb(1024, BPRI_MED));
    });
    assert_eq!((plain.bytes_in_use(), checking.bytes_in_use()), (0, 0));
}
