//! The one place this crate takes its synchronization primitives from.
//!
//! Normal builds use `parking_lot` and `std` atomics; `--cfg loom` builds swap in loom's
//! instrumented versions, so the loom models run the real code (tokio `loom/`, bytes
//! `loom.rs`, crossbeam `primitive`). Under Miri, `std`'s mutex and condition variable stand in
//! for parking_lot's, whose contended path (`parking_lot_core::word_lock`) casts integers to
//! pointers, which Miri's strict-provenance mode rejects; the unsafe code under test is ours,
//! not the lock's.
//!
//! One exception: the fields of a thread's magazine slot (`magazine.rs`), written only by
//! their owner thread, are `std` atomics even under loom; the reason is given there.

#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering};

#[cfg(not(any(loom, miri)))]
pub(crate) use parking_lot::{Condvar, Mutex};

#[cfg(all(miri, not(loom)))]
pub(crate) use std_shim::{Condvar, Mutex};

#[cfg(all(miri, not(loom)))]
mod std_shim {
    //! parking_lot-shaped wrappers over `std::sync` (poisoning ignored: a panic while a lock
    //! is held already fails the test that caused it).
    use std::sync::PoisonError;
    use std::time::Duration;

    #[derive(Debug, Default)]
    pub(crate) struct Mutex<T>(std::sync::Mutex<T>);

    impl<T> Mutex<T> {
        pub(crate) fn new(v: T) -> Self {
            Self(std::sync::Mutex::new(v))
        }
        pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, T> {
            self.0.lock().unwrap_or_else(PoisonError::into_inner)
        }
    }

    #[derive(Debug, Default)]
    pub(crate) struct Condvar(std::sync::Condvar);

    impl Condvar {
        pub(crate) fn new() -> Self {
            Self(std::sync::Condvar::new())
        }
        pub(crate) fn wait_for<T>(&self, guard: &mut std::sync::MutexGuard<'_, T>, timeout: Duration) {
            super::take_mut(guard, |g| self.0.wait_timeout(g, timeout).unwrap_or_else(PoisonError::into_inner).0);
        }
        pub(crate) fn notify_all(&self) {
            self.0.notify_all();
        }
    }
}

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering};

#[cfg(loom)]
pub(crate) use loom_shim::{Condvar, Mutex};

/// Between the write and the read of a `SeqCst` write-then-read pair (`budget.rs`).
///
/// In the C11 model, `SeqCst` accesses already lie in one total order, which is all the pair
/// needs, so normal builds emit nothing here. loom treats `SeqCst` *accesses* as `AcqRel`
/// (loom README, "Limitations"; tokio-rs/loom#180) and so explores store-buffering outcomes
/// that C11 forbids, reporting a lost wake-up that cannot happen; it does implement
/// `fence(SeqCst)`, which restores the total order in its model.
#[inline(always)]
pub(crate) fn seqcst_pair_fence() {
    #[cfg(loom)]
    loom::sync::atomic::fence(Ordering::SeqCst);
}

#[cfg(loom)]
mod loom_shim {
    //! parking_lot-shaped wrappers over loom's poisoning primitives.
    use std::time::Duration;

    pub(crate) struct Mutex<T>(loom::sync::Mutex<T>);
    pub(crate) type MutexGuard<'a, T> = loom::sync::MutexGuard<'a, T>;

    impl<T> Mutex<T> {
        pub(crate) fn new(v: T) -> Self {
            Self(loom::sync::Mutex::new(v))
        }
        pub(crate) fn lock(&self) -> MutexGuard<'_, T> {
            self.0.lock().expect("loom mutex poisoned")
        }
    }

    // The crate's structs derive `Debug` and `Default` over their mutexes, as parking_lot's
    // types allow; the shim provides the same.
    impl<T: Default> Default for Mutex<T> {
        fn default() -> Self {
            Self::new(T::default())
        }
    }

    impl<T> std::fmt::Debug for Mutex<T> {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("Mutex { .. }")
        }
    }

    impl std::fmt::Debug for Condvar {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("Condvar { .. }")
        }
    }

    pub(crate) struct Condvar(loom::sync::Condvar);

    impl Condvar {
        pub(crate) fn new() -> Self {
            Self(loom::sync::Condvar::new())
        }
        pub(crate) fn wait_for<T>(&self, guard: &mut MutexGuard<'_, T>, _timeout: Duration) {
            // loom has no time: a timed wait is modelled as a plain wait, which the callers
            // treat like any wake-up by re-checking their condition.
            super::take_mut(guard, |g| self.0.wait(g).expect("loom condvar poisoned"));
        }
        pub(crate) fn notify_all(&self) {
            self.0.notify_all();
        }
    }
}

#[cfg(any(loom, miri))]
/// Replaces `*slot` with `f(old)`; aborts if `f` unwinds, so the slot is never left moved-out.
pub(crate) fn take_mut<T>(slot: &mut T, f: impl FnOnce(T) -> T) {
    struct Abort;
    impl Drop for Abort {
        fn drop(&mut self) {
            std::process::abort();
        }
    }
    let bomb = Abort;
    // SAFETY: the value is read out and a new one written back before anything can
    // observe the slot; if `f` unwinds, `bomb` aborts the process first.
    let old = unsafe { std::ptr::read(slot) };
    let new = f(old);
    // SAFETY: `slot` is valid for writes and currently holds a moved-out value.
    unsafe { std::ptr::write(slot, new) };
    std::mem::forget(bomb);
}
