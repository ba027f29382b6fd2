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
