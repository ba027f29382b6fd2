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

#[cfg(not(miri))]
pub(crate) use parking_lot::{Condvar, Mutex};

#[cfg(miri)]
pub(crate) use std_shim::{Condvar, Mutex};

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
