//! The one place this crate takes its synchronization primitives from.
//!
//! The data block's reference count ([`RefCount`](crate::dblk::RefCount)) and the block-halves
//! count use the atomics and the fence re-exported here: `std`'s normally, loom's under
//! `--cfg loom`, so the loom model (`tests/loom_last_ref.rs`) runs the real protocol (tokio
//! `loom/`, bytes `loom.rs`). The locks (per-arena message environment, bufcall list) live in
//! `'static` registries that loom cannot model; they are `parking_lot`'s normally and `std`'s
//! under Miri, because parking_lot's contended path (`parking_lot_core::word_lock`) casts
//! integers to pointers, which Miri's strict-provenance mode rejects (as in ddi-kmem's
//! `sync.rs`).

#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicBool, AtomicU32, Ordering, fence};

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicU32, Ordering, fence};
#[cfg(loom)]
pub(crate) use std::sync::atomic::AtomicBool;

/// An atomic that loom never models (queue pointers and counters read outside the protocols
/// that the loom models cover).
pub(crate) use std::sync::atomic::AtomicPtr;

#[cfg(not(miri))]
pub(crate) use parking_lot::{Condvar, Mutex, MutexGuard, RwLock};

#[cfg(miri)]
pub(crate) use std_shim::{Condvar, Mutex, MutexGuard, RwLock};

/// The scheduler's run list lock and condition variable: loom's under `--cfg loom` (the
/// `qenable` protocol is model-checked in `tests/loom_qenable.rs`), else [`Mutex`] and
/// [`Condvar`]. The guard is passed by value to `wait`, as loom's API wants.
pub(crate) mod model {
    #[cfg(not(loom))]
    pub(crate) use super::Mutex as ModelMutex;

    #[cfg(not(loom))]
    pub(crate) type ModelGuard<'a, T> = ModelGuardImpl<'a, T>;

    #[cfg(all(not(loom), not(miri)))]
    type ModelGuardImpl<'a, T> = parking_lot::MutexGuard<'a, T>;
    #[cfg(all(not(loom), miri))]
    type ModelGuardImpl<'a, T> = super::std_shim::MutexGuard<'a, T>;

    /// A condition variable whose `wait` takes and returns the guard.
    #[cfg(not(loom))]
    #[derive(Default)]
    pub(crate) struct ModelCondvar(super::Condvar);

    #[cfg(not(loom))]
    impl ModelCondvar {
        pub(crate) fn new() -> Self {
            Self(super::Condvar::new())
        }
        pub(crate) fn wait<'a, T>(&self, mut g: ModelGuard<'a, T>) -> ModelGuard<'a, T> {
            self.0.wait(&mut g);
            g
        }
        pub(crate) fn notify_one(&self) {
            self.0.notify_one();
        }
        pub(crate) fn notify_all(&self) {
            self.0.notify_all();
        }
    }

    /// Lets other threads run (loom's scheduler under loom).
    #[cfg(not(loom))]
    pub(crate) fn yield_now() {
        std::thread::yield_now();
    }

    #[cfg(loom)]
    pub(crate) use loom::thread::yield_now;

    #[cfg(loom)]
    pub(crate) type ModelGuard<'a, T> = loom::sync::MutexGuard<'a, T>;

    /// loom's mutex with parking_lot's `lock` signature.
    #[cfg(loom)]
    #[derive(Debug)]
    pub(crate) struct ModelMutex<T>(loom::sync::Mutex<T>);

    #[cfg(loom)]
    impl<T> ModelMutex<T> {
        pub(crate) fn new(v: T) -> Self {
            Self(loom::sync::Mutex::new(v))
        }
        pub(crate) fn lock(&self) -> ModelGuard<'_, T> {
            self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
        }
    }

    /// loom's condition variable.
    #[cfg(loom)]
    #[derive(Debug)]
    pub(crate) struct ModelCondvar(loom::sync::Condvar);

    #[cfg(loom)]
    impl ModelCondvar {
        pub(crate) fn new() -> Self {
            Self(loom::sync::Condvar::new())
        }
        pub(crate) fn wait<'a, T>(&self, g: ModelGuard<'a, T>) -> ModelGuard<'a, T> {
            self.0.wait(g).unwrap_or_else(std::sync::PoisonError::into_inner)
        }
        pub(crate) fn notify_one(&self) {
            self.0.notify_one();
        }
        pub(crate) fn notify_all(&self) {
            self.0.notify_all();
        }
    }
}

#[cfg(miri)]
mod std_shim {
    //! parking_lot-shaped wrappers over `std::sync` (poisoning ignored: a panic while a lock
    //! is held already fails the test that caused it).
    use std::sync::PoisonError;

    pub(crate) type MutexGuard<'a, T> = std::sync::MutexGuard<'a, T>;

    #[derive(Debug, Default)]
    pub(crate) struct Mutex<T>(std::sync::Mutex<T>);

    impl<T> Mutex<T> {
        pub(crate) const fn new(v: T) -> Self {
            Self(std::sync::Mutex::new(v))
        }
        pub(crate) fn lock(&self) -> MutexGuard<'_, T> {
            self.0.lock().unwrap_or_else(PoisonError::into_inner)
        }
    }

    #[derive(Debug, Default)]
    pub(crate) struct Condvar(std::sync::Condvar);

    impl Condvar {
        pub(crate) const fn new() -> Self {
            Self(std::sync::Condvar::new())
        }
        pub(crate) fn wait<T>(&self, guard: &mut MutexGuard<'_, T>) {
            take_mut(guard, |g| self.0.wait(g).unwrap_or_else(PoisonError::into_inner));
        }
        pub(crate) fn notify_all(&self) {
            self.0.notify_all();
        }
        pub(crate) fn notify_one(&self) {
            self.0.notify_one();
        }
        pub(crate) fn wait_for<T>(&self, guard: &mut MutexGuard<'_, T>, d: std::time::Duration) -> TimedOut {
            let mut to = false;
            take_mut(guard, |g| {
                let (g, r) = self.0.wait_timeout(g, d).unwrap_or_else(PoisonError::into_inner);
                to = r.timed_out();
                g
            });
            TimedOut(to)
        }
        pub(crate) fn wait_until<T>(&self, guard: &mut MutexGuard<'_, T>, t: std::time::Instant) -> TimedOut {
            let d = t.saturating_duration_since(std::time::Instant::now());
            self.wait_for(guard, d)
        }
    }

    /// Whether a timed wait timed out.
    pub(crate) struct TimedOut(bool);

    impl TimedOut {
        pub(crate) fn timed_out(&self) -> bool {
            self.0
        }
    }

    /// A parking_lot-shaped reader-writer lock over `std::sync::RwLock`.
    #[derive(Debug, Default)]
    pub(crate) struct RwLock<T>(std::sync::RwLock<T>);

    impl<T> RwLock<T> {
        pub(crate) const fn new(v: T) -> Self {
            Self(std::sync::RwLock::new(v))
        }
        pub(crate) fn read_recursive(&self) -> std::sync::RwLockReadGuard<'_, T> {
            self.0.read().unwrap_or_else(PoisonError::into_inner)
        }
        pub(crate) fn try_read_recursive(&self) -> Option<std::sync::RwLockReadGuard<'_, T>> {
            match self.0.try_read() {
                Ok(g) => Some(g),
                Err(std::sync::TryLockError::Poisoned(p)) => Some(p.into_inner()),
                Err(std::sync::TryLockError::WouldBlock) => None,
            }
        }
        pub(crate) fn write(&self) -> std::sync::RwLockWriteGuard<'_, T> {
            self.0.write().unwrap_or_else(PoisonError::into_inner)
        }
    }

    /// Replaces `*slot` with `f(old)`; aborts if `f` unwinds, so the slot is never left
    /// moved-out.
    fn take_mut<T>(slot: &mut T, f: impl FnOnce(T) -> T) {
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
}
