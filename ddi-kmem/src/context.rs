//! Calling context (user or interrupt) and the arena the current thread has entered.
//!
//! Both live in one thread-local block, so the DDI functions find everything per-thread they
//! need with one thread-local access.

use crate::arena::{Arena, ArenaInner};
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

struct ThreadState {
    /// Nesting depth of interrupt-context guards.
    interrupt: Cell<u32>,
    /// The entered arenas, innermost last; they keep `current` alive.
    entered: RefCell<Vec<Arena>>,
    /// The innermost entered arena, or null for the process default. Always points into an
    /// `Arc` held by `entered`.
    current: Cell<*const ArenaInner>,
}

thread_local! {
    static STATE: ThreadState = const {
        ThreadState {
            interrupt: Cell::new(0),
            entered: RefCell::new(Vec::new()),
            current: Cell::new(std::ptr::null()),
        }
    };
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

/// The arena the current thread has entered, or the process default.
pub fn current_arena() -> Arena {
    STATE
        .try_with(|s| s.entered.borrow().last().cloned())
        .ok()
        .flatten()
        .unwrap_or_else(|| crate::arena::default_arena().clone())
}
