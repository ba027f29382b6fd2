//! The one place this crate takes its synchronization primitives from.
//!
//! The data block's reference count ([`RefCount`](crate::dblk::RefCount)) and the block-halves
//! count use the atomics and the fence re-exported here: `std`'s normally, loom's under
//! `--cfg loom`, so the loom model (`tests/loom_last_ref.rs`) runs the real protocol (tokio
//! `loom/`, bytes `loom.rs`). The locks (per-arena message environment, bufcall list) live in
//! `'static` registries that loom cannot model; they are `parking_lot`'s normally and `std`'s
//! under Miri, because parking_lot's contended path (`parking_lot_core::word_lock`) casts
//! integers to pointers, which Miri's strict-provenance mode rejects (as in ddi-kmem's
//! `sync.rs`). A queue's lock is [`SpinLock`] (its word and data are loom's under
//! `--cfg loom`; model in `tests/loom_spin_lock.rs`).

#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicBool, AtomicU32, Ordering, fence};

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicU32, Ordering, fence};

#[cfg(loom)]
use loom::sync::atomic::AtomicU64;
#[cfg(loom)]
pub(crate) use std::sync::atomic::AtomicBool;
#[cfg(not(loom))]
use std::sync::atomic::AtomicU64;

/// An atomic that loom never models (queue pointers and counters read outside the protocols
/// that the loom models cover).
pub(crate) use std::sync::atomic::AtomicPtr;

#[cfg(not(miri))]
pub(crate) use parking_lot::{Condvar, Mutex, MutexGuard, RwLock, RwLockWriteGuard};

#[cfg(miri)]
pub(crate) use std::sync::RwLockWriteGuard;
#[cfg(miri)]
pub(crate) use std_shim::{Condvar, Mutex, MutexGuard, RwLock};

/// The stream head's wake-up gate: tells a thread that has just made a waiter's condition
/// true (a message on the head's read queue, room below the head) whether anyone may be
/// waiting for it, without a lock on the fast path.
///
/// One word holds the number of registered waiters (low 16 bits) and a wake-up epoch (the
/// rest); both sides change it with read-modify-writes, so their changes are totally ordered:
///
/// - a waiter [`register`](Self::register)s (taking a ticket: the epoch), then checks its
///   condition (under whatever locks that needs); if it is false, it takes the lock `L` the
///   wakers notify under, and sleeps on the condition variable (releasing `L` atomically)
///   only if the epoch has not [`changed`](Self::changed); it
///   [`unregister`](Self::unregister)s after;
/// - a waker first makes the condition true, then [`signal`](Self::signal)s (epoch + 1); if
///   that reports a waiter, it takes `L` and notifies.
///
/// If the waker's RMW comes first, the waiter's (acquire) RMW comes after it in the word's
/// modification order, so the waiter's check sees the condition true and it does not sleep.
/// If the waiter's comes first, the waker sees the count and takes `L`: either the waiter
/// has not yet looked at the epoch under `L` (it will see it changed and not sleep) or it
/// sleeps already and is notified. No wake-up is lost; a waker pays one RMW when nobody
/// waits. Model-checked in `tests/loom_wake.rs`.
#[doc(hidden)]
#[derive(Debug)]
pub struct WaitGate {
    word: AtomicU64,
}

const GATE_WAITER: u64 = 1;
const GATE_WAITERS: u64 = 0xffff;
const GATE_EPOCH: u64 = 1 << 16;

impl Default for WaitGate {
    fn default() -> Self {
        WaitGate::new()
    }
}

impl WaitGate {
    /// No waiter, epoch 0.
    pub fn new() -> Self {
        WaitGate { word: AtomicU64::new(0) }
    }

    /// A waiter registers before it checks its condition (at most 65 535 at once); the
    /// returned ticket tells [`changed`](Self::changed) whether a waker signalled since.
    pub fn register(&self) -> u64 {
        let prev = self.word.fetch_add(GATE_WAITER, Ordering::AcqRel);
        debug_assert!(prev & GATE_WAITERS != GATE_WAITERS, "WaitGate: too many waiters");
        prev & !GATE_WAITERS
    }

    /// Whether a waker signalled since `ticket` was taken. The waiter asks this holding the
    /// lock it will sleep under, and sleeps only if not.
    pub fn changed(&self, ticket: u64) -> bool {
        self.word.load(Ordering::Acquire) & !GATE_WAITERS != ticket
    }

    /// The current epoch, for spinning without writing: a waker signalled since if it moves.
    pub fn epoch(&self) -> u64 {
        self.word.load(Ordering::Acquire) & !GATE_WAITERS
    }

    /// The waiter is done waiting (woken, timed out, or found its condition true).
    pub fn unregister(&self) {
        self.word.fetch_sub(GATE_WAITER, Ordering::AcqRel);
    }

    /// A waker made some waiter's condition true: returns whether a waiter is registered
    /// (the waker must then take the waiters' lock and notify).
    pub fn signal(&self) -> bool {
        self.word.fetch_add(GATE_EPOCH, Ordering::AcqRel) & GATE_WAITERS != 0
    }
}

/// A queue's lock: a test-and-test-and-set spin lock over `T`, as the kernels' queue locks
/// are (LfS `q_lock` is a spin lock; illumos `QLOCK` an adaptive mutex that spins while the
/// holder runs).
///
/// The queue operations hold it for a few dozen instructions (linking or unlinking a
/// message, counting, a band allocation with `KM_NOSLEEP`) and never sleep under it, so a
/// waiter yields and retries, and never parks. What that buys over [`Mutex`] is the
/// release: a plain store (`Release`), not a read-modify-write, because no parked waiter
/// has to be found; the acquisition is one compare-and-swap (`Acquire`) as a mutex's.
/// `putq` and `getq` run one acquisition each, and a message crossing the hand-off stream
/// (`flowmod` over `loopback`) meets six of them: saving six atomic read-modify-writes took
/// that work on one thread (`queues_loop 2000 handoff1`) from 7.1 M to 8.8 M msg/s.
///
/// Ordering: the lock's `Acquire` CAS reads the value stored by the previous holder's
/// `Release` store (or a later CAS of the same word), so everything the previous holder did
/// to `T` happens before this holder's accesses. Model-checked in `tests/loom_spin_lock.rs`
/// (loom's `UnsafeCell` tracks the accesses to `T`; with a `Relaxed` release it reports the
/// race).
///
/// A lock of a thread-confined executive ([`LocalStreams`](crate::LocalStreams)) is made with
/// [`SpinLock::confined`]: it belongs to one thread (its [`thread_token`]) and is only ever
/// taken there, so taking it is a test of the token and of the word (plain load and store,
/// no read-modify-write), and the release the same store as above. The word still records
/// the holder so that a nested acquisition on the owner thread (a deadlock on a shared lock)
/// is reported; an acquisition on any other thread panics before touching `T` (no data race
/// is possible: every access to `T` goes through a guard, and every guard of a confined
/// lock is made on its owner thread).
#[doc(hidden)]
pub struct SpinLock<T> {
    locked: LockWord,
    /// 0: shared (CAS acquisition); else the [`thread_token`] of the only thread that may
    /// take it.
    owner: u64,
    data: DataUnsafeCell<T>,
}

/// A token for the calling thread: nonzero, and different for every thread the process ever
/// ran (a counter, not the thread-local's address, which a later thread may reuse). The
/// first call on a thread takes the next value of a process-wide counter; later calls read
/// the thread-local (a `const`-initialised `Cell`: one load and a test).
#[inline]
pub(crate) fn thread_token() -> u64 {
    TOKEN.with(|t| {
        let v = t.get();
        if v != 0 { v } else { new_thread_token(t) }
    })
}

/// [`thread_token`] without taking one: 0 on a thread that has none yet (which therefore
/// owns nothing).
#[inline(always)]
fn thread_token_or_0() -> u64 {
    TOKEN.with(std::cell::Cell::get)
}

std::thread_local! {
    /// This thread's [`thread_token`], 0 until the first call.
    static TOKEN: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

#[cold]
#[inline(never)]
fn new_thread_token(t: &std::cell::Cell<u64>) -> u64 {
    /// The next token; Relaxed: only uniqueness matters (a read-modify-write's total order).
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    let v = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    t.set(v);
    v
}

#[cfg(not(loom))]
use std::cell::UnsafeCell as DataUnsafeCell;
#[cfg(not(loom))]
use std::sync::atomic::AtomicBool as LockWord;

#[cfg(loom)]
use loom::cell::UnsafeCell as DataUnsafeCell;
#[cfg(loom)]
use loom::sync::atomic::AtomicBool as LockWord;

// SAFETY: the lock hands `T` to one thread at a time (mutual exclusion, see the type's doc),
// so sharing the lock shares `T` only by moving access between threads: `T: Send` suffices,
// as for `std::sync::Mutex`.
unsafe impl<T: Send> Sync for SpinLock<T> {}
// SAFETY: the lock owns its `T`.
unsafe impl<T: Send> Send for SpinLock<T> {}

impl<T: std::fmt::Debug> std::fmt::Debug for SpinLock<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpinLock").finish_non_exhaustive()
    }
}

impl<T> SpinLock<T> {
    /// Unlocked, holding `v`.
    pub fn new(v: T) -> Self {
        SpinLock { locked: LockWord::new(false), owner: 0, data: DataUnsafeCell::new(v) }
    }

    /// Unlocked, holding `v`, confined to the thread whose [`thread_token`] is `owner`
    /// (0: shared, as [`SpinLock::new`]).
    pub(crate) fn confined(v: T, owner: u64) -> Self {
        SpinLock { locked: LockWord::new(false), owner, data: DataUnsafeCell::new(v) }
    }

    /// Takes the lock: one compare-and-swap when it is free; spins, then yields, while
    /// another thread holds it. A confined lock: a test of the thread and of the word.
    ///
    /// # Panics
    /// A confined lock taken on another thread than its owner, or taken again by its holder.
    #[inline]
    pub fn lock(&self) -> SpinGuard<'_, T> {
        if self.owner == 0 {
            // Acquire: pairs with the previous holder's Release store in `SpinGuard::drop`.
            if self.locked.compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed).is_err() {
                self.lock_contended();
            }
        } else {
            // Relaxed: the word is only ever accessed on the owner thread (tested first). A
            // thread that has no token yet reads 0, never an owner's.
            if (self.owner ^ thread_token_or_0()) | u64::from(self.locked.load(Ordering::Relaxed)) != 0 {
                self.confined_misuse();
            }
            self.locked.store(true, Ordering::Relaxed);
        }
        SpinGuard { lock: self, data: self.data_ptr(), _not_send: std::marker::PhantomData }
    }

    /// A confined lock taken where it may not be: a panic naming what was wrong, before
    /// anything touched `T`.
    #[cold]
    #[inline(never)]
    #[track_caller]
    fn confined_misuse(&self) -> ! {
        if self.owner != thread_token() {
            panic!(
                "streams: a queue of a thread-confined executive (LocalStreams) used on another \
                 thread than the one that built it"
            );
        }
        panic!("streams: a queue's lock taken again by its holder (a nested queue operation)");
    }

    /// The contended path: yields, then looks again with a load (the holder's line stays
    /// shared until it releases) and retries the CAS when the lock looks free.
    ///
    /// It yields at once rather than spinning first: three threads (writer, worker, reader)
    /// share two cores in the hand-off, so the holder may be the thread this one preempted,
    /// and it needs the CPU. Measured on `queues_loop 2000 handoff` (A/B, same load): spinning
    /// first (the [`Backoff`] rounds) ran ~10% below the mutex this lock replaced, yielding at
    /// once ~35% above it.
    #[cold]
    #[inline(never)]
    fn lock_contended(&self) {
        loop {
            model::yield_now();
            // Relaxed: only a hint that the CAS may succeed; the CAS orders.
            if !self.locked.load(Ordering::Relaxed)
                && self.locked.compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed).is_ok()
            {
                return;
            }
        }
    }

    /// A pointer to `T`, for the guard (under loom: an access loom records, checked against
    /// the other threads' accesses for causality).
    #[cfg(not(loom))]
    #[inline(always)]
    fn data_ptr(&self) -> *mut T {
        self.data.get()
    }

    #[cfg(loom)]
    fn data_ptr(&self) -> *mut T {
        self.data.with_mut(|p| p)
    }
}

/// Holds a [`SpinLock`]; releases it when dropped.
#[doc(hidden)]
#[must_use = "the lock is released when the guard is dropped"]
pub struct SpinGuard<'a, T> {
    lock: &'a SpinLock<T>,
    data: *mut T,
    /// Released on the thread that took it (as parking_lot's guards).
    _not_send: std::marker::PhantomData<*mut ()>,
}

impl<T> std::ops::Deref for SpinGuard<'_, T> {
    type Target = T;
    #[inline(always)]
    fn deref(&self) -> &T {
        // SAFETY: the guard holds the lock, so no other thread accesses `T`; `data` points
        // into the lock, which outlives the guard.
        unsafe { &*self.data }
    }
}

impl<T> std::ops::DerefMut for SpinGuard<'_, T> {
    #[inline(always)]
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`; `&mut self` makes this the only borrow through the guard.
        unsafe { &mut *self.data }
    }
}

impl<T> Drop for SpinGuard<'_, T> {
    #[inline(always)]
    fn drop(&mut self) {
        // Release: publishes this holder's accesses to `T` to the next Acquire CAS.
        self.lock.locked.store(false, Ordering::Release);
    }
}

/// Bounded spinning before a thread parks: a few rounds of [`std::hint::spin_loop`], then
/// `yield_now` (which lets the other side run on a shared core), then the caller parks.
#[derive(Debug, Default)]
pub(crate) struct Backoff {
    step: u32,
}

/// Rounds of `spin_loop` (doubling from 1: 2^SPIN_ROUNDS - 1 hints in all).
const SPIN_ROUNDS: u32 = 6;
/// Then rounds of `yield_now`: few, because on a loaded machine each one may hand the core
/// to another process for a whole time slice (measured: with 10 rounds the two-thread
/// hand-off ran at a median ~3x slower than with 2, under a load average of 6 on two cores).
const YIELD_ROUNDS: u32 = 2;

impl Backoff {
    pub(crate) fn new() -> Self {
        Backoff { step: 0 }
    }

    /// Waits a little; returns false when the caller should park instead.
    pub(crate) fn snooze(&mut self) -> bool {
        if self.step < SPIN_ROUNDS {
            for _ in 0..(1u32 << self.step) {
                std::hint::spin_loop();
            }
        } else if self.step < SPIN_ROUNDS + YIELD_ROUNDS {
            model::yield_now();
        } else {
            return false;
        }
        self.step += 1;
        true
    }
}

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
        pub(crate) fn try_write(&self) -> Option<std::sync::RwLockWriteGuard<'_, T>> {
            match self.0.try_write() {
                Ok(g) => Some(g),
                Err(std::sync::TryLockError::Poisoned(p)) => Some(p.into_inner()),
                Err(std::sync::TryLockError::WouldBlock) => None,
            }
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

#[cfg(all(test, not(loom)))]
mod tests {
    use super::SpinLock;

    /// Holders on several threads never lose an update of the data (mutual exclusion), also
    /// when they contend and take the yielding path.
    #[test]
    fn spin_lock_holders_are_exclusive() {
        const THREADS: u64 = 4;
        let per = if cfg!(miri) { 50 } else { 20_000 };
        let l = SpinLock::new(0u64);
        std::thread::scope(|s| {
            for _ in 0..THREADS {
                s.spawn(|| {
                    for _ in 0..per {
                        let mut g = l.lock();
                        let v = *g;
                        std::hint::black_box(&v);
                        *g = v + 1;
                    }
                });
            }
        });
        assert_eq!(*l.lock(), THREADS * per);
    }
}
