//! loom model of the last-reference protocol (`RefCount`: Release decrement, Acquire fence
//! before the free), run with `RUSTFLAGS="--cfg loom" cargo test -p streams-core --test
//! loom_last_ref`.
#![cfg(loom)]

use loom::cell::UnsafeCell;
use loom::sync::Arc;
use loom::sync::atomic::{AtomicUsize, Ordering};
use streams_core::dblk::{DB_REF_MAX, RefCount};

/// A data block: a count, the data its holders read, and how often it was freed.
struct Block {
    refs: RefCount,
    data: UnsafeCell<u32>,
    frees: AtomicUsize,
}

impl Block {
    fn new(refs: u32) -> Self {
        Block { refs: RefCount::new(refs), data: UnsafeCell::new(7), frees: AtomicUsize::new(0) }
    }

    /// A holder reads the data, then drops its reference; the last one frees: it writes the
    /// data (as the free routine or the allocator would), which loom reports as a race
    /// unless every other holder's read happens before it.
    fn use_and_release(&self) {
        // SAFETY: holders only read while they hold a reference; loom checks the claim.
        self.data.with(|p| assert_eq!(unsafe { *p }, 7));
        if self.refs.release() {
            // SAFETY: the last reference: exclusive, if the protocol is right.
            self.data.with_mut(|p| unsafe { *p = 0 });
            self.frees.fetch_add(1, Ordering::Relaxed);
        }
    }
}

#[test]
fn loom_the_last_of_two_holders_frees_once_after_both_uses() {
    loom::model(|| {
        let b = Arc::new(Block::new(1));
        assert!(b.refs.try_acquire(DB_REF_MAX)); // dupb
        let b2 = b.clone();
        let t = loom::thread::spawn(move || b2.use_and_release());
        b.use_and_release();
        t.join().unwrap();
        assert_eq!(b.frees.load(Ordering::Relaxed), 1);
    });
}

#[test]
fn loom_a_dup_racing_a_free_still_frees_once() {
    loom::model(|| {
        let b = Arc::new(Block::new(2));
        let b2 = b.clone();
        let t = loom::thread::spawn(move || {
            // This holder dups its reference and frees both.
            assert!(b2.refs.try_acquire(DB_REF_MAX));
            b2.use_and_release();
            b2.use_and_release();
        });
        b.use_and_release();
        t.join().unwrap();
        assert_eq!(b.frees.load(Ordering::Relaxed), 1);
    });
}

#[test]
fn loom_dups_stop_at_the_limit() {
    loom::model(|| {
        let b = Arc::new(Block::new(2));
        let b2 = b.clone();
        let t = loom::thread::spawn(move || b2.refs.try_acquire(3));
        let mine = b.refs.try_acquire(3);
        let theirs = t.join().unwrap();
        assert!(mine ^ theirs, "exactly one dup fits under a limit of 3");
        assert_eq!(b.refs.get(), 3);
    });
}

#[test]
fn loom_the_fast_free_of_a_sole_reference_sees_every_other_use() {
    // `freeb`'s fast path frees at once when `is_unique` says its reference is the only one
    // (`free_fast`), else the general path calls `release` (`free_general`): the holder that
    // frees must still see every other holder's use.
    loom::model(|| {
        let b = Arc::new(Block::new(2));
        let b2 = b.clone();
        let t = loom::thread::spawn(move || b2.use_and_release());
        // SAFETY: holders only read while they hold a reference; loom checks the claim.
        b.data.with(|p| assert_eq!(unsafe { *p }, 7));
        if b.refs.is_unique() || b.refs.release() {
            // SAFETY: the last reference: exclusive, if the protocol is right.
            b.data.with_mut(|p| unsafe { *p = 0 });
            b.frees.fetch_add(1, Ordering::Relaxed);
        }
        t.join().unwrap();
        assert_eq!(b.frees.load(Ordering::Relaxed), 1);
    });
}
