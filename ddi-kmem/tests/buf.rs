//! `KmemBuf`: the safe owning buffer.

use ddi_kmem::{
    Arena, Checking, KM_NOSLEEP, KM_SLEEP, KmemBuf, Response, interrupt, kmem_alloc, kmem_free, kmem_zalloc,
};
use std::ptr::NonNull;

/// A checking arena that panics on misuse, so a wrong free size in `Drop` fails the test.
fn arena(name: &str) -> Arena {
    Arena::builder().name(name).checking(Checking::FULL).response(Response::Panic).build()
}

fn assert_clean(a: &Arena) {
    let s = a.stats();
    assert_eq!(s.errors, 0);
    assert_eq!(s.allocations, s.frees);
    assert_eq!(a.bytes_in_use(), 0);
}

#[test]
fn zeroed_gives_zeroed_bytes_of_the_current_arena_and_drop_frees_them() {
    for checking in [Checking::FULL, Checking::OFF] {
        let a = Arena::builder().name("zeroed").checking(checking).build();
        a.run(|| {
            let buf = KmemBuf::zeroed(100, KM_SLEEP).expect("KM_SLEEP succeeds");
            assert_eq!(buf.len(), 100);
            assert!(buf.iter().all(|&b| b == 0));
            assert_eq!(buf.arena().name(), "zeroed");
            assert_eq!(a.bytes_in_use(), 128);
            drop(buf);
            assert_eq!(a.bytes_in_use(), 0);
        });
        assert_eq!(a.stats().frees, 1);
        assert_clean(&a);
    }
}

#[test]
fn zeroed_in_uses_the_given_arena_without_entering_it() {
    let a = arena("zeroed-in");
    let buf = KmemBuf::zeroed_in(&a, 40, KM_NOSLEEP).expect("room");
    assert_eq!((buf.len(), a.bytes_in_use()), (40, 64));
    drop(buf);
    assert_clean(&a);
}

#[test]
fn copy_from_copies_into_the_current_arena() {
    let a = arena("copy");
    a.run(|| {
        let buf = KmemBuf::copy_from(b"hello, streams", KM_NOSLEEP).expect("room");
        assert_eq!(&buf[..], b"hello, streams");
        assert_eq!(a.bytes_in_use(), 32);
    });
    assert_clean(&a);
}

#[test]
fn deref_mut_writes_and_deref_reads_the_bytes() {
    let a = arena("deref");
    let mut buf = KmemBuf::zeroed_in(&a, 64, KM_SLEEP).expect("room");
    buf[..5].copy_from_slice(b"abcde");
    buf[63] = 0xff;
    for (i, b) in buf[10..20].iter_mut().enumerate() {
        *b = i as u8;
    }
    assert_eq!(&buf[..5], b"abcde");
    assert_eq!(buf[63], 0xff);
    assert_eq!(buf[10..20], [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    assert_eq!(buf.iter().filter(|&&b| b != 0).count(), 5 + 1 + 9);
    drop(buf);
    // A full write of the requested size is no redzone violation.
    assert_clean(&a);
}

#[test]
fn size_zero_gives_none() {
    let a = arena("zero");
    a.run(|| {
        assert!(KmemBuf::zeroed(0, KM_SLEEP).is_none());
        assert!(KmemBuf::copy_from(&[], KM_SLEEP).is_none());
    });
    assert!(KmemBuf::zeroed_in(&a, 0, KM_NOSLEEP).is_none());
    assert_clean(&a);
}

#[test]
fn none_when_kmem_zalloc_returns_null() {
    let a = Arena::builder().name("full").budget(64).build();
    let held = KmemBuf::zeroed_in(&a, 64, KM_NOSLEEP).expect("room");
    assert!(KmemBuf::zeroed_in(&a, 1, KM_NOSLEEP).is_none(), "the budget is full");
    assert!(a.run(|| KmemBuf::copy_from(b"x", KM_NOSLEEP)).is_none());
    assert!(KmemBuf::zeroed_in(&a, 131_073, KM_SLEEP).is_none(), "oversize");
    drop(held);
    assert_clean(&a);
}

#[test]
fn into_raw_hands_over_a_buffer_that_kmem_free_takes_back() {
    let a = arena("into-raw");
    a.run(|| {
        let buf = KmemBuf::copy_from(b"raw", KM_SLEEP).expect("room");
        let (p, len) = buf.into_raw();
        assert_eq!(len, 3);
        assert_eq!(a.bytes_in_use(), 32, "into_raw does not free");
        // SAFETY: `p` holds the 3 bytes copied in, and is live.
        assert_eq!(unsafe { std::slice::from_raw_parts(p, len) }, b"raw");
        // SAFETY: `p` came from this arena with `len` bytes and is freed once.
        unsafe { kmem_free(p.cast(), len) };
    });
    assert_clean(&a);
}

#[test]
fn from_raw_takes_ownership_of_a_kmem_alloc_buffer() {
    let a = arena("from-raw");
    let p = a.run(|| kmem_zalloc(48, KM_SLEEP)).cast::<u8>();
    let p = NonNull::new(p).expect("KM_SLEEP succeeds");
    // SAFETY: `p` is a live 48-byte buffer of `a` from kmem_zalloc, owned by nothing else.
    let mut buf = unsafe { KmemBuf::from_raw(&a, p, 48) };
    assert_eq!(buf.len(), 48);
    buf[47] = 1;
    assert_eq!(a.bytes_in_use(), 64);
    drop(buf);
    assert_eq!(a.stats().frees, 1);
    assert_clean(&a);
}

#[test]
fn into_raw_then_from_raw_round_trips() {
    let a = arena("round-trip");
    let buf = KmemBuf::zeroed_in(&a, 200, KM_SLEEP).expect("room");
    let (p, len) = buf.into_raw();
    // SAFETY: `p` and `len` are exactly what `into_raw` gave up, in the same arena.
    let back = unsafe { KmemBuf::from_raw(&a, NonNull::new(p).expect("non-null"), len) };
    assert_eq!(back.len(), 200);
    drop(back);
    assert_clean(&a);
}

#[test]
fn from_raw_of_a_written_kmem_alloc_buffer() {
    let a = arena("from-raw-written");
    let p = a.run(|| kmem_alloc(16, KM_NOSLEEP)).cast::<u8>();
    // SAFETY: `p` is a live 16-byte buffer; all 16 bytes are written before `from_raw`.
    unsafe { p.write_bytes(7, 16) };
    // SAFETY: live, initialised, owned by nothing else.
    let buf = unsafe { KmemBuf::from_raw(&a, NonNull::new(p).expect("non-null"), 16) };
    assert!(buf.iter().all(|&b| b == 7));
    drop(buf);
    assert_clean(&a);
}

#[test]
fn a_buffer_is_send_and_frees_into_its_own_arena_from_another_thread() {
    let a = arena("send");
    let mut buf = KmemBuf::zeroed_in(&a, 100, KM_SLEEP).expect("room");
    buf[0] = 9;
    let other = arena("other-thread");
    let sum = std::thread::spawn({
        let other = other.clone();
        move || {
            // The thread has entered another arena: the buffer still frees into its own.
            other.run(|| {
                buf[1] = 1;
                let sum: u32 = buf.iter().map(|&b| u32::from(b)).sum();
                drop(buf);
                sum
            })
        }
    })
    .join()
    .expect("thread");
    assert_eq!(sum, 10);
    assert_eq!(other.stats().frees, 0);
    assert_clean(&a);
    assert_clean(&other);
}

#[test]
fn a_buffer_is_sync_for_shared_reads() {
    let a = arena("sync");
    let buf = a.run(|| KmemBuf::copy_from(&[1, 2, 3, 4], KM_SLEEP)).expect("room");
    let sums: Vec<u32> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..2).map(|_| s.spawn(|| buf.iter().map(|&b| u32::from(b)).sum())).collect();
        hs.into_iter().map(|h| h.join().expect("reader")).collect()
    });
    assert_eq!(sums, [10, 10]);
    drop(buf);
    assert_clean(&a);
}

#[test]
fn a_buffer_keeps_its_arena_alive() {
    let a = arena("kept");
    let buf = KmemBuf::zeroed_in(&a, 10, KM_SLEEP).expect("room");
    let watcher = buf.arena().clone();
    drop(a);
    assert_eq!(watcher.bytes_in_use(), 32);
    drop(buf);
    assert_clean(&watcher);
}

#[test]
fn a_buffer_may_be_dropped_in_interrupt_context() {
    let a = arena("drop-in-intr");
    let buf = KmemBuf::zeroed_in(&a, 10, KM_SLEEP).expect("room");
    interrupt(move || drop(buf));
    assert_clean(&a);
}

#[test]
fn debug_names_the_length_and_the_arena() {
    let a = arena("debugged");
    let buf = KmemBuf::zeroed_in(&a, 12, KM_SLEEP).expect("room");
    let text = format!("{buf:?}");
    assert!(text.contains("KmemBuf") && text.contains("len: 12") && text.contains("\"debugged\""), "{text}");
    drop(buf);
    assert_clean(&a);
}
