//! Buffer calls: `bufcall`, `esbbcall`, `unbufcall`.
//!
//! When `allocb` fails, a module registers a callback with [`bufcall`]; it runs once memory
//! has been freed. As in LfS (`raise_bufcalls`, lfs-lis.md §2.7), the trigger is the free
//! itself, not a timer: every `freeb`/`freemsg` that returns memory checks the arena's
//! pending flag (one relaxed load when nothing waits) and, if set, runs the waiting
//! callbacks on the freeing thread, after the free and with no lock held. Like LfS's
//! `bufcalls()`, every waiting callback runs, whatever size it asked for (the size is
//! stored, not checked), and a callback registered while the list runs waits for the next
//! free, so a callback whose retry fails again does not spin.
//!
//! A free that happens after `allocb` failed but before `bufcall` registered is not seen;
//! the callback then runs at the next free. This is inherent to free-triggered bufcalls
//! (LfS has the same window); Solaris closes it with a service thread polling
//! `kmem_avail()`.
//!
//! [`unbufcall`] cancels a waiting callback; if the callback is running on another thread it
//! waits until it has finished (the SVR4 MP guarantee, as LfS and Solaris); called from the
//! callback itself it returns at once.

use crate::env;
use crate::sync::{AtomicBool, Condvar, Mutex, Ordering};
use std::cell::Cell;
use std::collections::VecDeque;
use std::ffi::c_void;
use std::thread::{self, ThreadId};

/// A buffer-call id; 0 means failure. LfS uses `long` (`bcid_t`).
pub type BcId = i64;

/// A bufcall function: called with its `arg` once memory has been freed.
pub type BufcallFn = fn(arg: *mut c_void);

enum Callback {
    Ddi(BufcallFn, *mut c_void),
    Boxed(Box<dyn FnOnce() + Send>),
}

impl Callback {
    fn run(self) {
        match self {
            Callback::Ddi(f, arg) => f(arg),
            Callback::Boxed(f) => f(),
        }
    }
}

struct Waiting {
    id: BcId,
    size: usize,
    cb: Callback,
}

#[derive(Default)]
struct State {
    waiting: VecDeque<Waiting>,
    running: Vec<(BcId, ThreadId)>,
    next_id: BcId,
}

/// An arena's bufcall list.
pub(crate) struct Bufcalls {
    /// Set while `waiting` is non-empty (written under the lock).
    pending: AtomicBool,
    state: Mutex<State>,
    done: Condvar,
}

thread_local! {
    /// Set while this thread runs bufcalls, so a free inside a callback does not recurse.
    static RUNNING: Cell<bool> = const { Cell::new(false) };
}

impl Bufcalls {
    pub(crate) fn new() -> Self {
        Bufcalls { pending: AtomicBool::new(false), state: Mutex::new(State::default()), done: Condvar::new() }
    }

    fn register(&self, size: usize, cb: Callback) -> BcId {
        let mut st = self.state.lock();
        st.next_id += 1;
        let id = st.next_id;
        st.waiting.push_back(Waiting { id, size, cb });
        // Relaxed: the flag is a hint read by frees; the list itself is read under the lock,
        // which orders the registration before the run.
        self.pending.store(true, Ordering::Relaxed);
        tracing::debug!(id, size, "bufcall: waiting for a free");
        id
    }

    /// Drops the waiting callbacks without running them (their arena closed); returns how
    /// many there were.
    pub(crate) fn clear(&self) -> usize {
        let mut st = self.state.lock();
        let n = st.waiting.len();
        st.waiting.clear();
        self.pending.store(false, Ordering::Relaxed);
        n
    }

    /// Runs the waiting callbacks if any; called after memory was freed.
    #[inline]
    pub(crate) fn kick(&self) {
        if self.pending.load(Ordering::Relaxed) {
            self.run_waiting();
        }
    }

    #[cold]
    fn run_waiting(&self) {
        if RUNNING.with(Cell::get) {
            return;
        }
        struct Reset;
        impl Drop for Reset {
            fn drop(&mut self) {
                RUNNING.with(|r| r.set(false));
            }
        }
        RUNNING.with(|r| r.set(true));
        let _reset = Reset;
        let me = thread::current().id();
        // Only those waiting now: one registered by a callback waits for the next free.
        let mut budget = self.state.lock().waiting.len();
        while budget > 0 {
            budget -= 1;
            let w = {
                let mut st = self.state.lock();
                let Some(w) = st.waiting.pop_front() else { break };
                st.running.push((w.id, me));
                self.pending.store(!st.waiting.is_empty(), Ordering::Relaxed);
                w
            };
            tracing::trace!(id = w.id, size = w.size, "bufcall: running");
            struct Done<'a>(&'a Bufcalls, BcId);
            impl Drop for Done<'_> {
                fn drop(&mut self) {
                    let mut st = self.0.state.lock();
                    if let Some(i) = st.running.iter().position(|&(id, _)| id == self.1) {
                        st.running.swap_remove(i);
                    }
                    self.0.done.notify_all();
                }
            }
            let _done = Done(self, w.id);
            w.cb.run();
        }
    }

    fn cancel(&self, id: BcId) {
        let me = thread::current().id();
        let mut st = self.state.lock();
        if let Some(i) = st.waiting.iter().position(|w| w.id == id) {
            st.waiting.remove(i);
            let empty = st.waiting.is_empty();
            self.pending.store(!empty, Ordering::Relaxed);
            return;
        }
        loop {
            match st.running.iter().find(|&&(r, _)| r == id) {
                Some(&(_, t)) if t != me => self.done.wait(&mut st),
                _ => return,
            }
        }
    }

    /// How many callbacks wait.
    fn waiting(&self) -> usize {
        self.state.lock().waiting.len()
    }
}

/// Asks for `func(arg)` to be called once memory has been freed.
///
/// # Arguments
/// - `size`: the size the failed `allocb` asked for (stored; not checked, as LfS).
/// - `pri`: the priority (ignored).
/// - `func`: the function.
/// - `arg`: its argument.
///
/// # Return
/// A non-zero id for [`unbufcall`]. This implementation does not fail (0 is never returned).
///
/// # Context
/// Any. `func` runs on the thread whose `freeb`/`freemsg` freed memory in the current arena,
/// after the free, with no STREAMS lock held; possibly in interrupt context. It runs once.
/// `allocb` may still fail when it runs (another thread may take the memory first).
///
/// # Compatibility
/// LfS `bufcall(9)` triggers callbacks from frees as here, though from the STREAMS scheduler
/// rather than the freeing thread; LiS polls with a 100 ms timer and its `unbufcall` does not
/// wait (lfs-lis.md §4.2, §4.3); Solaris runs them from a service thread when `kmem_avail()`
/// covers the size. The id type is `long` in LfS, `bufcall_id_t` in Solaris, `toid_t` in
/// IRIX and UnixWare.
///
/// # Examples
/// ```
/// use ddi_kmem::{Arena, FailurePlan};
/// use std::sync::atomic::{AtomicBool, Ordering};
/// use streams_core::{allocb, bufcall, freeb, BPRI_MED};
///
/// static FIRED: AtomicBool = AtomicBool::new(false);
/// fn retry(_: *mut std::ffi::c_void) { FIRED.store(true, Ordering::SeqCst) }
///
/// let arena = Arena::builder().build();
/// arena.run(|| {
///     let held = allocb(16, BPRI_MED);
///     arena.inject(FailurePlan::Always);
///     assert!(allocb(16, BPRI_MED).is_null());
///     arena.clear_injection();
///     let id = bufcall(16, BPRI_MED, retry, std::ptr::null_mut());
///     assert_ne!(id, 0);
///     // SAFETY: allocated above, freed once; the free runs the bufcall.
///     unsafe { freeb(held) };
///     assert!(FIRED.load(Ordering::SeqCst));
/// });
/// ```
pub fn bufcall(size: usize, pri: u32, func: BufcallFn, arg: *mut c_void) -> BcId {
    let _ = pri;
    env::current().bufcalls.register(size, Callback::Ddi(func, arg))
}

/// [`bufcall`] with a closure, for Rust callers.
///
/// # Arguments
/// - `size`, `pri`: as for [`bufcall`].
/// - `f`: run once memory has been freed.
///
/// # Return
/// A non-zero id for [`unbufcall`].
///
/// # Context
/// As [`bufcall`].
///
/// # Compatibility
/// Not a DDI function.
pub fn bufcall_fn(size: usize, pri: u32, f: impl FnOnce() + Send + 'static) -> BcId {
    let _ = pri;
    env::current().bufcalls.register(size, Callback::Boxed(Box::new(f)))
}

/// Asks for `func(arg)` to be called when an `esballoc` may succeed: `bufcall(0, ..)`.
///
/// # Arguments
/// - `pri`: the priority (ignored).
/// - `func`, `arg`: as for [`bufcall`].
///
/// # Return
/// As [`bufcall`].
///
/// # Context
/// As [`bufcall`].
///
/// # Compatibility
/// LfS `esbbcall(9)` is `bufcall(0, ..)`; illumos uses size 1. Not documented by AIX, OSF/1
/// or UXP/V, where `bufcall(0, ..)` serves.
pub fn esbbcall(pri: u32, func: BufcallFn, arg: *mut c_void) -> BcId {
    bufcall(0, pri, func, arg)
}

/// Cancels a buffer call.
///
/// # Arguments
/// - `id`: what [`bufcall`] or [`esbbcall`] returned; 0 is ignored.
///
/// # Return
/// Nothing. If the callback has not run, it never will. If it is running on another thread,
/// `unbufcall` waits until it returns; from within the callback itself it returns at once.
/// An id that has already run is ignored.
///
/// # Context
/// Any, in the arena `bufcall` was called in. It may wait for a running callback, so it
/// must not be called with a lock the callback takes.
///
/// # Compatibility
/// LfS and Solaris wait for a running callback; LiS does not ("unbufcall does not guarantee
/// the callback has finished", README-LiS). The LfS man page forbids expired ids; here they
/// are ignored, as Solaris ignores unknown ids.
pub fn unbufcall(id: BcId) {
    if id == 0 {
        return;
    }
    env::current().bufcalls.cancel(id);
}

/// How many buffer calls wait in the current arena.
pub fn bufcalls_waiting() -> usize {
    env::current().bufcalls.waiting()
}
