//! Helpers shared by the integration tests.
#![allow(dead_code)]

use ddi_kmem::{Arena, Checking, Response};
use streams_core::{Dblk, Mblk};

/// Runs `f` in a fresh arena named `name` and checks that every byte came back.
pub fn in_arena<R>(name: &str, f: impl FnOnce(&Arena) -> R) -> R {
    let arena = Arena::builder().name(name).build();
    let r = arena.run(|| f(&arena));
    assert_eq!(arena.bytes_in_use(), 0, "{name}: memory still in use");
    r
}

/// A checking arena that reports misuse instead of panicking.
pub fn reporting(name: &str) -> Arena {
    Arena::builder().name(name).checking(Checking::FULL).response(Response::Report).build()
}

/// A message block by reference.
pub fn mb<'a>(mp: *mut Mblk) -> &'a mut Mblk {
    assert!(!mp.is_null());
    // SAFETY: tests pass allocated message blocks they own, and do not keep the reference
    // past the block's free.
    unsafe { &mut *mp }
}

/// A message block by shared reference (several may be held at once).
pub fn mr<'a>(mp: *mut Mblk) -> &'a Mblk {
    assert!(!mp.is_null());
    // SAFETY: as for `mb`; no `&mut` to the block is held meanwhile.
    unsafe { &*mp }
}

/// A message block's data block by reference.
pub fn db<'a>(mp: *mut Mblk) -> &'a Dblk {
    // SAFETY: an allocated message block; a plain read, so references to the block held
    // by the caller stay valid.
    let d = unsafe { (*mp).b_datap };
    // SAFETY: an allocated message block refers to a live data block.
    unsafe { &*d }
}

/// Appends `bytes` at `b_wptr` of a block the test owns, unshared.
pub fn put(mp: *mut Mblk, bytes: &[u8]) {
    let m = mb(mp);
    assert!(m.tailroom() >= bytes.len());
    // SAFETY: room checked above; the test owns the block and its unshared data block.
    unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), m.b_wptr, bytes.len()) };
    m.b_wptr = m.b_wptr.wrapping_add(bytes.len());
}

/// A new block holding `bytes`, of type `t`.
pub fn block(bytes: &[u8], t: streams_core::MsgType) -> *mut Mblk {
    let mp = streams_core::allocb(bytes.len(), streams_core::BPRI_MED);
    assert!(!mp.is_null());
    put(mp, bytes);
    let d = mb(mp).b_datap;
    // SAFETY: the new data block is unshared and ours.
    unsafe { (*d).db_type = t };
    mp
}

/// Frees a message the test owns.
pub fn free(mp: *mut Mblk) {
    // SAFETY: tests call this once per message they own.
    unsafe { streams_core::freemsg(mp) };
}

/// The unread bytes of every block of a message, concatenated.
pub fn bytes_of(mp: *mut Mblk) -> Vec<u8> {
    let mut v = Vec::new();
    let mut b = mp;
    while !b.is_null() {
        v.extend_from_slice(mb(b).data());
        b = mb(b).b_cont;
    }
    v
}

/// Small loop counts under Miri.
pub const fn n(normal: usize, miri: usize) -> usize {
    if cfg!(miri) { miri } else { normal }
}

pub mod mods;

/// A deterministic executive over `arena`, with the test modules and drivers registered.
pub fn executive(arena: &Arena) -> streams_core::Streams {
    let sx = streams_core::Streams::builder().arena(arena).name("test").build();
    mods::register_all(&sx);
    sx
}

/// After "one", "boom" and "two" were written on `s` over a `panicky` module (which panics on
/// "boom"): exactly one panic report, naming `panicky` and the message, and "one" then "two"
/// read back (the panicking message was freed, the stream still works).
pub fn assert_the_panic_was_reported_and_the_rest_delivered(sx: &streams_core::Streams, s: &streams_core::Stream) {
    let e = sx.take_errors();
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(
        matches!(&e[0], streams_core::StreamsError::ProcPanicked { call: "put", module: "panicky", message } if message.contains("boom")),
        "{e:?}"
    );
    assert_eq!(s.read().unwrap().unwrap().data(), b"one");
    assert_eq!(s.read().unwrap().unwrap().data(), b"two", "the panicking message was freed, the stream works");
}

/// The data of a message as a vector (first block only).
pub fn data(m: &streams_core::Msg) -> Vec<u8> {
    m.data().to_vec()
}
