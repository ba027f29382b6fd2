//! The safe handle: `Msg`, chains as iterators and `bytes::Buf`, and `bytes` interop.

mod common;

use bytes::{Buf, Bytes};
use common::*;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use streams_core::*;

#[test]
fn msg_frees_on_drop() {
    in_arena("msg_drop", |arena| {
        let m = Msg::alloc(1000, BPRI_MED).unwrap();
        assert!(arena.bytes_in_use() > 0);
        drop(m);
    });
}

#[test]
fn extend_beyond_db_lim_is_refused() {
    in_arena("msg_noroom", |_| {
        let mut m = Msg::alloc(4, BPRI_MED).unwrap();
        let room = m.tailroom();
        assert_eq!(room, FASTBUF);
        let e = m.extend_from_slice(&vec![0; room + 1]).unwrap_err();
        assert_eq!(e, StreamsError::NoRoom { call: "Msg::extend_from_slice", wanted: room + 1, room });
    });
}

#[test]
fn blocks_iterate_the_chain_and_link_unlink_move_ownership() {
    in_arena("msg_blocks", |_| {
        let mut m = Msg::from_slice(b"one").unwrap();
        m.link(Msg::from_slice(b"two").unwrap());
        m.link(Msg::from_slice(b"three").unwrap());
        let parts: Vec<&[u8]> = m.blocks().map(Mblk::data).collect();
        assert_eq!(parts, [&b"one"[..], b"two", b"three"]);
        assert_eq!(m.msgsize(), 11);
        let rest = m.unlink().unwrap();
        assert_eq!(m.blocks().count(), 1);
        assert_eq!(rest.blocks().count(), 2);
        assert_eq!(format!("{rest:?}"), "[(M_DATA, 3), (M_DATA, 5)]");
    });
}

#[test]
fn a_chain_reads_through_buf() {
    in_arena("msg_buf", |_| {
        let mut m = Msg::from_slice(&[0, 1]).unwrap();
        m.link(Msg::alloc(0, BPRI_MED).unwrap());
        m.link(Msg::from_slice(&[2, 3, 4, 5, 6]).unwrap());
        assert_eq!(m.remaining(), 7);
        assert_eq!(m.get_u16(), 0x0001);
        assert_eq!(m.chunk(), &[2, 3, 4, 5, 6]);
        assert_eq!(m.get_u8(), 2);
        let mut out = [0u8; 4];
        m.copy_to_slice(&mut out);
        assert_eq!(out, [3, 4, 5, 6]);
        assert_eq!(m.remaining(), 0);
        assert!(m.chunk().is_empty());
    });
}

#[test]
fn msg_pullup_adjust_and_copy() {
    in_arena("msg_utils", |_| {
        let mut m = Msg::from_slice(b"ab").unwrap();
        m.link(Msg::from_slice(b"cd").unwrap());
        let c = m.copy().unwrap();
        let p = m.msgpullup(-1).unwrap();
        assert_eq!(p.data(), b"abcd");
        assert!(m.pullup(-1));
        assert_eq!(m.data(), b"abcd");
        assert!(m.adjust(1) && m.adjust(-1));
        assert_eq!(m.data(), b"bc");
        assert_eq!(c.msgdsize(), 4);
        assert_eq!(c.xmsgsize(), 4);
    });
}

#[test]
fn messages_move_between_threads() {
    let arena = ddi_kmem::Arena::builder().name("msg_send").build();
    let m = arena.run(|| Msg::from_slice(b"travel").unwrap());
    let h = std::thread::spawn(move || m.data().to_vec());
    assert_eq!(h.join().unwrap(), b"travel");
    assert_eq!(arena.bytes_in_use(), 0);
}

#[test]
fn from_bytes_shares_the_buffer_and_drops_it_at_the_last_free() {
    struct Tracked(Arc<AtomicUsize>, Vec<u8>);
    impl AsRef<[u8]> for Tracked {
        fn as_ref(&self) -> &[u8] {
            &self.1
        }
    }
    impl Drop for Tracked {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
    in_arena("from_bytes", |_| {
        let drops = Arc::new(AtomicUsize::new(0));
        let b = Bytes::from_owner(Tracked(drops.clone(), b"payload".to_vec()));
        let ptr = b.as_ptr();
        let mut m = Msg::from_bytes(b).unwrap();
        assert_eq!(m.data().as_ptr(), ptr, "no copy");
        assert_eq!(m.data(), b"payload");
        assert!(matches!(m.data_mut(), Err(StreamsError::Shared { .. })), "Bytes are read-only");
        let d = m.dup().unwrap();
        drop(m);
        assert_eq!(drops.load(Ordering::SeqCst), 0);
        drop(d);
        assert_eq!(drops.load(Ordering::SeqCst), 1);
    });
}

#[test]
fn from_vec_is_writable_up_to_its_capacity() {
    in_arena("from_vec", |_| {
        let mut v = Vec::with_capacity(16);
        v.extend_from_slice(b"abc");
        let p = v.as_ptr();
        let mut m = Msg::from_vec(v).unwrap();
        assert_eq!(m.data().as_ptr(), p);
        assert_eq!(m.tailroom(), 13);
        m.extend_from_slice(b"def").unwrap();
        m.data_mut().unwrap()[0] = b'A';
        assert_eq!(m.data(), b"Abcdef");
    });
}

#[test]
fn into_bytes_hands_over_a_single_block_without_a_copy_and_copies_a_chain() {
    in_arena("into_bytes", |arena| {
        let m = Msg::from_slice(b"single").unwrap();
        let p = m.data().as_ptr();
        let b = m.into_bytes();
        assert_eq!(b.as_ptr(), p);
        let b2 = b.clone();
        drop(b);
        assert!(arena.bytes_in_use() > 0, "the message lives in the Bytes");
        assert_eq!(&b2[..], b"single");
        drop(b2);
        let mut c = Msg::from_slice(b"ch").unwrap();
        c.link(Msg::from_slice(b"ain").unwrap());
        assert_eq!(&c.into_bytes()[..], b"chain");
    });
}

#[test]
fn bytes_round_trip() {
    in_arena("round_trip", |_| {
        let m = Msg::from_slice(b"round").unwrap();
        let back = Msg::from_bytes(m.into_bytes()).unwrap();
        assert_eq!(back.data(), b"round");
    });
}
