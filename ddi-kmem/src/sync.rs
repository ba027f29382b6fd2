//! The one place this crate takes its synchronization primitives from.
//!
//! Normal builds use `parking_lot` and `std` atomics; `--cfg loom` builds swap in loom's
//! instrumented versions, so the loom models in `tests/loom_budget.rs` run the real code
//! (tokio `loom/`, bytes `loom.rs`, crossbeam `primitive`).

#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

#[cfg(not(loom))]
pub(crate) use parking_lot::{Condvar, Mutex};

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

#[cfg(loom)]
pub(crate) use loom_shim::{Condvar, Mutex};

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

    pub(crate) struct Condvar(loom::sync::Condvar);

    /// Mirrors `parking_lot::WaitTimeoutResult` closely enough for our callers.
    pub(crate) struct WaitTimeoutResult(bool);
    impl WaitTimeoutResult {
        pub(crate) fn timed_out(&self) -> bool {
            self.0
        }
    }

    impl Condvar {
        pub(crate) fn new() -> Self {
            Self(loom::sync::Condvar::new())
        }
        pub(crate) fn wait<T>(&self, guard: &mut MutexGuard<'_, T>) {
            // loom's wait consumes the guard; swap it through a raw read/write pair.
            // SAFETY: `guard` is read out and a valid guard is written back before anyone
            // can observe the slot; `wait` does not unwind under loom except on a model
            // failure, which aborts the model anyway.
            unsafe {
                let g = std::ptr::read(guard);
                let g = self.0.wait(g).expect("loom condvar poisoned");
                std::ptr::write(guard, g);
            }
        }
        pub(crate) fn wait_for<T>(&self, guard: &mut MutexGuard<'_, T>, _timeout: Duration) -> WaitTimeoutResult {
            // loom has no time: a timed wait is modelled as a wait that may end spuriously,
            // which the callers already handle by re-checking their condition.
            self.wait(guard);
            WaitTimeoutResult(false)
        }
        pub(crate) fn notify_all(&self) {
            self.0.notify_all();
        }
    }
}
