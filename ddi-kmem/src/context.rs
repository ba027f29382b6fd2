//! Calling context (user or interrupt) and the arena the current thread has entered.
//!
//! Both live in one thread-local block, so the DDI functions find everything per-thread they
//! need with one thread-local access.

use crate::arena::{Arena, ArenaInner};
use crate::magazine::MagTable;
use std::cell::{Cell, RefCell};
use std::marker::PhantomData;

/// The calling context of a thread, as the 9F CONTEXT sections distinguish it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Context {
    /// User (process) context: any flag may be used; the caller may sleep.
    User,
    /// Interrupt context: only non-sleeping calls are allowed.
    Interrupt,
}

/// Everything per-thread that kmem needs, in one thread-local block, so the fast path makes
/// one thread-local access (DESIGN.md: "the current-environment pointer, the
/// interrupt-context flag and the magazines live in one thread-local block").
pub(crate) struct ThreadState {
    /// Nesting depth of interrupt-context guards.
    interrupt: Cell<u32>,
    /// The entered arenas, innermost last; they keep `current` alive.
    entered: RefCell<Vec<Arena>>,
    /// The innermost entered arena, or null for the process default. Always points into an
    /// `Arc` held by `entered`.
    current: Cell<*const ArenaInner>,
    /// The thread's magazines, by cache id. Declared last: dropped after `entered`.
    pub(crate) mags: MagTable,
}

thread_local! {
    static STATE: ThreadState = const {
        ThreadState {
            interrupt: Cell::new(0),
            entered: RefCell::new(Vec::new()),
            current: Cell::new(std::ptr::null()),
            mags: MagTable(RefCell::new(Vec::new())),
        }
    };
}

impl ThreadState {
    /// Whether the thread is in interrupt context.
    #[inline]
    pub(crate) fn in_interrupt(&self) -> bool {
        self.interrupt.get() > 0
    }

    /// The current arena (entered, or the default).
    #[inline]
    pub(crate) fn arena(&self) -> &ArenaInner {
        let p = self.current.get();
        if p.is_null() {
            crate::arena::default_arena().inner()
        } else {
            // SAFETY: as in `with_current`: `current` points into an `Arc` held by
            // `entered`, which only this thread changes, and not while this borrow lives.
            unsafe { &*p }
        }
    }
}

/// The calling thread's state, unless its thread-locals are being torn down.
///
/// # Safety
/// - The reference is used only during the current call on this thread: not stored, not
///   sent to another thread, not kept across a point where this thread could exit.
#[inline(always)]
pub(crate) unsafe fn state<'a>() -> Option<&'a ThreadState> {
    let p = STATE.try_with(std::ptr::from_ref).ok()?;
    // SAFETY: `p` is this thread's own `STATE`, which lives until the thread's thread-local
    // destructors run; `try_with` fails once its destruction has begun, and the caller uses
    // the reference only within the current call (the function's contract).
    Some(unsafe { &*p })
}

/// Runs `f` on the calling thread's state, unless its thread-locals are being torn down.
///
/// Only the state's address is taken inside `try_with`, so that the (small) access inlines
/// and `f` runs in the caller's frame: this is the allocation fast path's one thread-local
/// access.
#[inline(always)]
pub(crate) fn with_state<R>(f: impl FnOnce(&ThreadState) -> R) -> Option<R> {
    let p = STATE.try_with(std::ptr::from_ref).ok()?;
    // SAFETY: `p` is this thread's own `STATE`, which lives until the thread's thread-local
    // destructors run. They cannot run during `f`: `f` runs on this thread, in a call that
    // started after `try_with` succeeded, and `try_with` fails once `STATE`'s destruction
    // has begun, so we are not inside it.
    Some(f(unsafe { &*p }))
}

/// The current thread's calling context.
pub fn current_context() -> Context {
    if STATE.try_with(|s| s.interrupt.get() > 0).unwrap_or(false) { Context::Interrupt } else { Context::User }
}

/// Whether the current thread is in (simulated) interrupt context.
#[inline]
pub fn in_interrupt() -> bool {
    STATE.try_with(|s| s.interrupt.get() > 0).unwrap_or(false)
}

/// While alive, the current thread is in interrupt context. Guards nest.
///
/// A test or a simulated driver interrupt handler enters interrupt context with this guard;
/// `KM_SLEEP` allocations inside it are reported as misuse.
///
/// The guard is tied to its thread:
/// ```compile_fail
/// fn assert_send<T: Send>(_: T) {}
/// assert_send(ddi_kmem::InterruptGuard::enter());
/// ```
#[must_use = "interrupt context ends when the guard is dropped"]
#[derive(Debug)]
pub struct InterruptGuard {
    _not_send: PhantomData<*const ()>,
}

impl InterruptGuard {
    /// Enters interrupt context on the current thread.
    pub fn enter() -> Self {
        STATE.with(|s| s.interrupt.set(s.interrupt.get() + 1));
        InterruptGuard { _not_send: PhantomData }
    }
}

impl Drop for InterruptGuard {
    fn drop(&mut self) {
        let _ = STATE.try_with(|s| s.interrupt.set(s.interrupt.get() - 1));
    }
}

/// Runs `f` in interrupt context on the current thread.
pub fn interrupt<R>(f: impl FnOnce() -> R) -> R {
    let _g = InterruptGuard::enter();
    f()
}

/// While alive, the DDI functions on this thread act on the entered arena.
///
/// Created by [`Arena::enter`]. Guards nest; dropping one out of order is allowed and removes
/// exactly that entry.
///
/// ```compile_fail
/// fn assert_send<T: Send>(_: T) {}
/// let arena = ddi_kmem::Arena::builder().build();
/// assert_send(arena.enter());
/// ```
#[must_use = "the arena is left when the guard is dropped"]
#[derive(Debug)]
pub struct EnterGuard {
    inner: *const ArenaInner,
}

pub(crate) fn enter(arena: &Arena) -> EnterGuard {
    let inner = arena.inner_ptr();
    STATE.with(|s| {
        s.entered.borrow_mut().push(arena.clone());
        s.current.set(inner);
    });
    EnterGuard { inner }
}

impl Drop for EnterGuard {
    fn drop(&mut self) {
        let _ = STATE.try_with(|s| {
            let removed = {
                let mut entered = s.entered.borrow_mut();
                let pos = entered.iter().rposition(|a| a.inner_ptr() == self.inner);
                let removed = pos.map(|p| entered.remove(p));
                s.current.set(entered.last().map_or(std::ptr::null(), Arena::inner_ptr));
                removed
            };
            // Dropped outside the borrow: the arena's own drop may report leaks.
            drop(removed);
        });
    }
}

/// Calls `f` with the arena the current thread has entered, or the process default.
#[inline]
pub(crate) fn with_current<R>(f: impl FnOnce(&ArenaInner) -> R) -> R {
    let p = STATE.try_with(|s| s.current.get()).unwrap_or(std::ptr::null());
    if p.is_null() {
        f(crate::arena::default_arena().inner())
    } else {
        // SAFETY: `current` always points into an `Arc<ArenaInner>` held by `entered` on this
        // same thread (set in `enter`, recomputed in `EnterGuard::drop`), and nothing removes
        // it from `entered` while `f` runs, since `EnterGuard` is `!Send` and is dropped only
        // by this thread's own code, never from inside `f`'s borrow of the state.
        f(unsafe { &*p })
    }
}

/// An identity of the arena the current thread has entered (or of the default), equal to
/// [`Arena::id`] of that arena. Unlike [`current_arena`] it touches no reference count: one
/// thread-local read.
#[inline]
pub fn current_arena_id() -> usize {
    // SAFETY: the reference is used only within this call.
    match unsafe { state() } {
        Some(st) => st.arena().id,
        None => crate::arena::default_arena().id(),
    }
}

/// The arena the current thread has entered, or the process default.
pub fn current_arena() -> Arena {
    STATE
        .try_with(|s| s.entered.borrow().last().cloned())
        .ok()
        .flatten()
        .unwrap_or_else(|| crate::arena::default_arena().clone())
}
