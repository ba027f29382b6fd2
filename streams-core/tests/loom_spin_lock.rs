//! loom models of the queue's lock (`sync.rs` `SpinLock`: a compare-and-swap to take it, a
//! plain `Release` store to release it, yielding while another thread holds it), run with
//! `RUSTFLAGS="--cfg loom" cargo test --release -p streams-core --test loom_spin_lock`.
//!
//! The models run the real lock: under loom its word is loom's atomic and its data loom's
//! `UnsafeCell`, which records each holder's access to the data and reports two accesses
//! not ordered by happens-before. Releasing with a `Relaxed` store instead of `Release`
//! (the key step) makes both models fail with such a report; so does taking the lock with a
//! load and a store instead of the CAS (two holders at once).
#![cfg(loom)]

use loom::sync::Arc;
use loom::thread;
use streams_core::model::SpinLock;

/// A holder's critical section: a non-atomic read-modify-write of the data, as `putq`'s
/// count update.
fn bump(l: &SpinLock<u32>) {
    let mut g = l.lock();
    *g += 1;
}

#[test]
fn loom_two_holders_are_ordered_and_exclusive() {
    loom::model(|| {
        let l = Arc::new(SpinLock::new(0u32));
        let t = {
            let l = l.clone();
            thread::spawn(move || bump(&l))
        };
        bump(&l);
        t.join().unwrap();
        assert_eq!(*l.lock(), 2, "an increment was lost");
    });
}
