//! The one place this crate takes its synchronization primitives from.
//!
//! Normal builds use `parking_lot` and `std` atomics. `--cfg loom` builds swap in loom's
//! instrumented versions, so the loom models in `tests/loom_mempool.rs` run the real pool code
//! (tokio `loom/`, bytes `loom.rs`, crossbeam `primitive`). Miri builds use `std`'s mutex and
//! condition variable: `parking_lot_core` stores thread pointers in integers when a thread
//! parks, which Miri's strict-provenance mode rejects (STYLE.md: keep a path that strict
//! provenance accepts).
//!
//! Thread-locals come from here too (`std::thread_local!`, or loom's, whose values are per
//! loom thread and dropped when it ends), for the per-thread counting in `counter.rs`.
//!
//! The API is parking_lot-shaped (`lock()` returns the guard, `wait_for(&mut guard, ..)`); the
//! std/loom shim keeps its guard in an `Option` so that a wait can move it out and back in
//! without `unsafe`.

#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicIsize, AtomicU64, AtomicUsize, Ordering, fence};

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicIsize, AtomicU64, AtomicUsize, Ordering, fence};

#[cfg(not(any(loom, miri)))]
pub(crate) use parking_lot::{Mutex, MutexGuard};

#[cfg(any(loom, miri))]
pub(crate) use shim::{Mutex, MutexGuard};

#[cfg(not(loom))]
pub(crate) use std::thread_local;

#[cfg(loom)]
pub(crate) use loom::thread_local;

use std::time::Duration;

/// A condition variable with parking_lot's shape.
pub(crate) struct Condvar(
    #[cfg(not(any(loom, miri)))] parking_lot::Condvar,
    #[cfg(any(loom, miri))] shim::inner::Condvar,
);

impl std::fmt::Debug for Condvar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Condvar")
    }
}

impl Condvar {
    pub(crate) fn new() -> Self {
        #[cfg(not(any(loom, miri)))]
        {
            Self(parking_lot::Condvar::new())
        }
        #[cfg(any(loom, miri))]
        {
            Self(shim::inner::Condvar::new())
        }
    }

    /// Waits for a notification or `timeout`; returns whether it timed out. Callers re-check
    /// their condition either way (spurious wake-ups are allowed).
    pub(crate) fn wait_for<T>(&self, guard: &mut MutexGuard<'_, T>, timeout: Duration) -> bool {
        #[cfg(not(any(loom, miri)))]
        {
            self.0.wait_for(guard, timeout).timed_out()
        }
        #[cfg(loom)]
        {
            // loom has no time: a timed wait is modelled as a plain wait, so a lost wake-up
            // shows up as a deadlock in the model instead of being papered over by the timeout.
            let _ = timeout;
            let g = guard.0.take().expect("internal: guard present");
            guard.0 = Some(self.0.wait(g).expect("condvar poisoned"));
            false
        }
        #[cfg(all(miri, not(loom)))]
        {
            let g = guard.0.take().expect("internal: guard present");
            let (g, r) = self.0.wait_timeout(g, timeout).expect("condvar poisoned");
            guard.0 = Some(g);
            r.timed_out()
        }
    }

    pub(crate) fn notify_all(&self) {
        self.0.notify_all();
    }
}

#[cfg(any(loom, miri))]
mod shim {
    //! parking_lot-shaped wrappers over std's (or loom's) poisoning primitives.
    use std::ops::{Deref, DerefMut};

    #[cfg(loom)]
    pub(crate) use loom::sync as inner;
    #[cfg(not(loom))]
    pub(crate) use std::sync as inner;

    #[derive(Debug)]
    pub(crate) struct Mutex<T>(inner::Mutex<T>);

    /// A guard that a condition-variable wait can move out and back in.
    pub(crate) struct MutexGuard<'a, T>(pub(crate) Option<inner::MutexGuard<'a, T>>);

    impl<T> Mutex<T> {
        #[cfg(not(loom))]
        pub(crate) const fn new(v: T) -> Self {
            Self(inner::Mutex::new(v))
        }
        #[cfg(loom)]
        pub(crate) fn new(v: T) -> Self {
            Self(inner::Mutex::new(v))
        }
        pub(crate) fn lock(&self) -> MutexGuard<'_, T> {
            MutexGuard(Some(self.0.lock().expect("mutex poisoned")))
        }
        pub(crate) fn get_mut(&mut self) -> &mut T {
            self.0.get_mut().expect("mutex poisoned")
        }
    }

    impl<T> Deref for MutexGuard<'_, T> {
        type Target = T;
        fn deref(&self) -> &T {
            self.0.as_ref().expect("internal: guard present")
        }
    }

    impl<T> DerefMut for MutexGuard<'_, T> {
        fn deref_mut(&mut self) -> &mut T {
            self.0.as_mut().expect("internal: guard present")
        }
    }
}
