//! Calling context (user or interrupt), the arena the current thread has entered, and the
//! thread's magazines.
//!
//! All of it lives in one thread-local block, [`ThreadState`], so the DDI functions find
//! everything per-thread they need with one thread-local access. The block has no destructor
//! (what it owns sits behind `ManuallyDrop` and is released by a separate exit guard), so
//! that access is a plain thread-pointer-relative load, with no "initialised / destroyed"
//! state to test first.
//!
//! The magazine fast path goes: block, `fast` (the current arena's [`ThreadMags`], or null),
//! the class's slot, a round. `fast` is set lazily by the slow path when the current arena is
//! plain (unchecked, no budget, no header or rounding), and cleared whenever the thread enters
//! or leaves an arena, so it always belongs to the current arena: tables are per (thread,
//! arena), and switching arenas switches the pointer. Object caches' slots are found through
//! `users`, a direct-mapped array keyed by cache id.

use crate::arena::{Arena, ArenaInner};
use crate::cache::CacheCore;
use crate::magazine::{OwnedSlot, OwnedTable, ThreadMags, UserSlot};
use std::cell::{Cell, RefCell};
use std::marker::PhantomData;
use std::mem::ManuallyDrop;
use std::ptr;
use std::sync::Arc;

/// The calling context of a thread, as the 9F CONTEXT sections distinguish it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Context {
    /// User (process) context: any flag may be used; the caller may sleep.
    User,
    /// Interrupt context: only non-sleeping calls are allowed.
    Interrupt,
}

/// Entries of the direct-mapped object-cache slot array: a cache's slot is looked for at
/// `id % USER_WAYS`. Sixteen keep a module's few hot caches apart; a collision costs a slow
/// path lookup in `user_slots`, not correctness.
const USER_WAYS: usize = 16;

/// An id no cache has (ids count up from 0).
const NO_CACHE: usize = usize::MAX;

/// Where the thread is in its life, as far as its owned state goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Life {
    /// Owns nothing yet; the exit guard is not registered.
    Fresh,
    /// The exit guard is registered: what the block owns is released at thread exit.
    Live,
    /// The exit guard has run (or could not be registered): the block takes on nothing more,
    /// and kmem works without magazines on this thread.
    Dead,
}

/// One entry of [`ThreadState::users`].
struct UserEntry {
    id: Cell<usize>,
    slot: Cell<*const UserSlot>,
}

impl UserEntry {
    const fn new() -> Self {
        UserEntry { id: Cell::new(NO_CACHE), slot: Cell::new(ptr::null()) }
    }

    fn clear(&self) {
        self.id.set(NO_CACHE);
        self.slot.set(ptr::null());
    }
}

/// Everything per-thread that kmem needs, in one thread-local block, so the fast path makes
/// one thread-local access (DESIGN.md: "the current-environment pointer, the
/// interrupt-context flag and the magazines live in one thread-local block").
pub(crate) struct ThreadState {
    /// The current arena's table of class magazines if that arena is plain, else null. Points
    /// into an element of `tables`; cleared before that element can go.
    fast: Cell<*const ThreadMags>,
    /// The table of `KmemGlobal`'s arena (the one process-wide adapter arena), or null until
    /// the adapter first asks for it. Points into an element of `tables`; cleared before that
    /// element can go.
    adapter: Cell<*const ThreadMags>,
    /// Changes (counts up from 1) whenever the current arena changes or one of the thread's
    /// object-cache slots is released: a layer above that keeps pointers to those slots
    /// ([`crate::kmem_cache_thread_slot`]) and the arena's state beside a copy of the token
    /// knows them current while the token is unchanged, with one comparison.
    token: Cell<u64>,
    /// Nesting depth of interrupt-context guards.
    interrupt: Cell<u32>,
    /// The innermost entered arena, or null for the process default. Always points into an
    /// `Arc` held by `entered`.
    current: Cell<*const ArenaInner>,
    /// Object caches' slots, direct-mapped by cache id. A matching entry points into an
    /// element of `user_slots`; it is cleared before that element can go.
    users: [UserEntry; USER_WAYS],
    life: Cell<Life>,
    /// Set while the thread builds a table or a slot: a re-entrant call (an allocator over
    /// kmem) then goes without magazines instead of building another.
    busy: Cell<bool>,
    /// The entered arenas, innermost last; they keep `current` alive.
    entered: ManuallyDrop<RefCell<Vec<Arena>>>,
    /// The thread's class-magazine tables, one per arena it allocated from.
    tables: ManuallyDrop<RefCell<Vec<OwnedTable>>>,
    /// The thread's slots of object caches.
    user_slots: ManuallyDrop<RefCell<Vec<OwnedSlot>>>,
}

// The block needs no destructor, so `thread_local!` stores it without a liveness state and
// every access is a plain load (see the module doc).
const _: () = assert!(!std::mem::needs_drop::<ThreadState>());

thread_local! {
    static STATE: ThreadState = const {
        ThreadState {
            fast: Cell::new(ptr::null()),
            adapter: Cell::new(ptr::null()),
            token: Cell::new(1),
            interrupt: Cell::new(0),
            current: Cell::new(ptr::null()),
            users: [const { UserEntry::new() }; USER_WAYS],
            life: Cell::new(Life::Fresh),
            busy: Cell::new(false),
            entered: ManuallyDrop::new(RefCell::new(Vec::new())),
            tables: ManuallyDrop::new(RefCell::new(Vec::new())),
            user_slots: ManuallyDrop::new(RefCell::new(Vec::new())),
        }
    };
    /// Registered when the block first takes on something to release; its destructor
    /// releases it.
    static EXIT: ExitGuard = const { ExitGuard };
}

struct ExitGuard;

impl Drop for ExitGuard {
    fn drop(&mut self) {
        STATE.with(ThreadState::teardown);
    }
}

/// Clears a flag when dropped (also on unwind).
struct Unbusy<'a>(&'a Cell<bool>);

impl Drop for Unbusy<'_> {
    fn drop(&mut self) {
        self.0.set(false);
    }
}

impl ThreadState {
    /// Whether the thread is in interrupt context.
    #[inline(always)]
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

    /// The current arena's table if the arena is plain and the table is set up.
    #[inline(always)]
    pub(crate) fn fast_table(&self) -> Option<&ThreadMags> {
        let t = self.fast.get();
        if t.is_null() {
            None
        } else {
            // SAFETY: a non-null `fast` points at a table owned by `tables` (set by
            // `install_fast`), and is cleared before that table is removed (`drop_table`,
            // `teardown`, entering or leaving an arena); none of those run while the caller
            // holds this reference, which it uses only within its current call (the contract
            // of `state`) on kmem's own paths, which do not enter, leave or drop arenas.
            Some(unsafe { &*t })
        }
    }

    /// This thread's table for the global adapter's arena, built and cached on the first
    /// call; `None` if the thread cannot have one now (see `table_for`).
    ///
    /// `arena` must be the adapter's one process-wide arena, the same on every call (the
    /// cache is not keyed); it must be plain.
    #[inline(always)]
    pub(crate) fn adapter_table(&self, arena: &ArenaInner) -> Option<&ThreadMags> {
        let mut t = self.adapter.get();
        if t.is_null() {
            t = self.adapter_table_slow(arena)?;
        }
        // SAFETY: a non-null `adapter` points at a table owned by `tables`, cleared before
        // that table is removed (`drop_table`, `teardown`); the caller uses the reference
        // within its current call (the contract of `state`), on kmem's own paths, which do
        // not drop tables.
        let t = unsafe { &*t };
        debug_assert!(ptr::eq(t.arena_ptr(), arena), "internal: adapter_table called with another arena");
        Some(t)
    }

    #[cold]
    #[inline(never)]
    fn adapter_table_slow(&self, arena: &ArenaInner) -> Option<*const ThreadMags> {
        if !arena.is_plain() {
            return None;
        }
        let t = self.table_for(arena)?;
        self.adapter.set(t);
        Some(t)
    }

    /// The thread's token (see the field).
    #[inline(always)]
    pub(crate) fn token(&self) -> u64 {
        self.token.get()
    }

    /// Changes the token: a slot or the current arena is about to change.
    fn bump_token(&self) {
        self.token.set(self.token.get() + 1);
    }

    /// The slot of the object cache `id`, if this thread's direct-mapped entry holds it.
    #[inline(always)]
    pub(crate) fn user_fast(&self, id: usize) -> Option<&UserSlot> {
        let e = &self.users[id % USER_WAYS];
        if e.id.get() != id {
            return None;
        }
        // SAFETY: an entry whose id matches points at a slot owned by `user_slots` (set by
        // `user_slot`), and is cleared before that slot is removed (`drop_user_slot`,
        // `teardown`); the reference is used only within the caller's current call.
        Some(unsafe { &*e.slot.get() })
    }

    /// Registers the exit guard on first need. `false` once the thread is exiting.
    fn ensure_live(&self) -> bool {
        match self.life.get() {
            Life::Live => true,
            Life::Dead => false,
            Life::Fresh => {
                let ok = EXIT.try_with(|_| ()).is_ok();
                self.life.set(if ok { Life::Live } else { Life::Dead });
                ok
            }
        }
    }

    /// Sets `fast` to the current arena's table, building it if needed, when the arena is
    /// plain. `true` if `fast` is set.
    pub(crate) fn install_fast(&self) -> bool {
        if !self.fast.get().is_null() {
            return true;
        }
        let arena = self.arena();
        if !arena.is_plain() {
            return false;
        }
        match self.table_for(arena) {
            Some(t) => {
                self.fast.set(t);
                true
            }
            None => false,
        }
    }

    /// This thread's class-magazine table for `arena`, built if needed; `None` if the thread
    /// cannot have one now (exiting, building one already, or under loom, whose threads share
    /// one OS thread and so one thread-local block).
    ///
    /// The pointer stays valid until the thread enters or leaves an arena, drops `arena`, or
    /// exits.
    pub(crate) fn table_for(&self, arena: &ArenaInner) -> Option<*const ThreadMags> {
        if cfg!(loom) || self.busy.get() {
            return None;
        }
        if let Some(t) = self.fast_table() {
            if ptr::eq(t.arena_ptr(), arena) {
                return Some(t);
            }
        }
        let (found, dead) = {
            let mut tables = self.tables.try_borrow_mut().ok()?;
            // Tables of arenas dropped elsewhere only hold leftover magazines: give them back.
            let mut dead = Vec::new();
            let mut i = 0;
            while i < tables.len() {
                if tables[i].0.arena_gone() && !ptr::eq(tables[i].0.arena_ptr(), arena) {
                    dead.push(tables.swap_remove(i));
                } else {
                    i += 1;
                }
            }
            let found = tables.iter().find(|t| ptr::eq(t.0.arena_ptr(), arena)).map(|t| Arc::as_ptr(&t.0));
            (found, dead)
        };
        drop(dead);
        if found.is_some() {
            return found;
        }
        let key = arena.weak();
        if key.strong_count() == 0 || !self.ensure_live() {
            return None;
        }
        self.busy.set(true);
        let unbusy = Unbusy(&self.busy);
        let t = OwnedTable(ThreadMags::new(arena, key, arena.caches()));
        drop(unbusy);
        let p = Arc::as_ptr(&t.0);
        match self.tables.try_borrow_mut() {
            Ok(mut tables) => tables.push(t),
            Err(_) => return None, // `t` drops after the failed borrow: unregistered again
        }
        Some(p)
    }

    /// This thread's slot of the object cache `core`, built if needed (see `table_for`).
    /// Only a cache whose fast path applies (`fast`: not checked, its arena not counting
    /// exactly) gets the direct-mapped entry, so the fast path need not ask.
    ///
    /// The pointer stays valid until the thread lets the cache go or exits.
    pub(crate) fn user_slot(&self, core: &Arc<CacheCore>, fast: bool) -> Option<*const UserSlot> {
        if cfg!(loom) {
            return None;
        }
        if let Some(u) = self.user_fast(core.id) {
            return Some(u);
        }
        // (A cache that is not `fast` never has an entry, so it is looked up below.)
        if self.busy.get() {
            return None;
        }
        let found = {
            let slots = self.user_slots.try_borrow().ok()?;
            slots.iter().find(|s| Arc::ptr_eq(&s.0.core, core)).map(|s| Arc::as_ptr(&s.0))
        };
        let p = match found {
            Some(p) => p,
            None => {
                if !self.ensure_live() {
                    return None;
                }
                self.busy.set(true);
                let unbusy = Unbusy(&self.busy);
                let s = OwnedSlot::new(core);
                drop(unbusy);
                let p = Arc::as_ptr(&s.0);
                match self.user_slots.try_borrow_mut() {
                    Ok(mut slots) => slots.push(s),
                    Err(_) => return None,
                }
                p
            }
        };
        if fast {
            let e = &self.users[core.id % USER_WAYS];
            e.id.set(core.id);
            e.slot.set(p);
        }
        Some(p)
    }

    /// Releases what the block owns: the magazines go back to their depots, the entered
    /// arenas are let go. Runs once, from the exit guard.
    fn teardown(&self) {
        self.life.set(Life::Dead);
        self.bump_token();
        self.fast.set(ptr::null());
        self.adapter.set(ptr::null());
        self.users.iter().for_each(UserEntry::clear);
        // Taken out first and dropped outside the borrows: dropping runs destructors (user
        // code) that may call kmem, which then finds no magazines.
        let tables = std::mem::take(&mut *self.tables.borrow_mut());
        let slots = std::mem::take(&mut *self.user_slots.borrow_mut());
        drop(slots);
        // Retiring a slot pushes magazines on its depot under the depot's lock, and the
        // push may grow the depot's list through the global allocator: when that is
        // `KmemGlobal` and the depot is one of its arena's, the growth would take the same
        // lock again. Inside the adapter, such allocations go to the system instead.
        crate::global::inside(|| drop(tables));
        let entered = std::mem::take(&mut *self.entered.borrow_mut());
        self.current.set(ptr::null());
        // An arena's own drop may report leaks.
        drop(entered);
    }
}

/// The calling thread's state.
///
/// # Safety
/// - The reference is used only during the current call on this thread: not stored, not
///   kept across a point where this thread could exit.
#[inline(always)]
pub(crate) unsafe fn state<'a>() -> &'a ThreadState {
    let p = STATE.with(ptr::from_ref);
    // SAFETY: `p` is this thread's own `STATE`, which has no destructor and lives as long as
    // the thread; the caller uses the reference only within the current call (the contract).
    unsafe { &*p }
}

/// Drops the calling thread's table for `arena`, if any (its magazines go to the depots).
pub(crate) fn drop_table(arena: *const ArenaInner) {
    let removed = STATE.with(|s| {
        let mut tables = s.tables.try_borrow_mut().ok()?;
        let pos = tables.iter().position(|t| ptr::eq(t.0.arena_ptr(), arena))?;
        if ptr::eq(s.fast.get(), Arc::as_ptr(&tables[pos].0)) {
            s.fast.set(ptr::null());
        }
        if ptr::eq(s.adapter.get(), Arc::as_ptr(&tables[pos].0)) {
            s.adapter.set(ptr::null());
        }
        Some(tables.swap_remove(pos))
    });
    drop(removed);
}

/// Drops the calling thread's slot of the object cache `core`, if any (its magazines go to
/// the depot).
pub(crate) fn drop_user_slot(core: &CacheCore) {
    let removed = STATE.with(|s| {
        let e = &s.users[core.id % USER_WAYS];
        if e.id.get() == core.id {
            e.clear();
        }
        // Before the slot can go: a pointer to it held above is then known stale.
        s.bump_token();
        let mut slots = s.user_slots.try_borrow_mut().ok()?;
        let pos = slots.iter().position(|u| ptr::eq(Arc::as_ptr(&u.0.core), core))?;
        Some(slots.swap_remove(pos))
    });
    drop(removed);
}

/// The current thread's calling context.
pub fn current_context() -> Context {
    if in_interrupt() { Context::Interrupt } else { Context::User }
}

/// Whether the current thread is in (simulated) interrupt context.
#[inline]
pub fn in_interrupt() -> bool {
    STATE.with(ThreadState::in_interrupt)
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
        STATE.with(|s| s.interrupt.set(s.interrupt.get() - 1));
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
        assert!(
            s.ensure_live(),
            "Arena::enter: arena '{}' entered by a thread that is exiting (from a thread-local destructor)",
            arena.name()
        );
        s.entered.borrow_mut().push(arena.clone());
        s.current.set(inner);
        s.bump_token();
        // The next allocation finds the new current arena's table (`install_fast`).
        s.fast.set(ptr::null());
    });
    EnterGuard { inner }
}

impl Drop for EnterGuard {
    fn drop(&mut self) {
        STATE.with(|s| {
            let removed = {
                let mut entered = s.entered.borrow_mut();
                let pos = entered.iter().rposition(|a| a.inner_ptr() == self.inner);
                let removed = pos.map(|p| entered.remove(p));
                s.current.set(entered.last().map_or(ptr::null(), Arena::inner_ptr));
                removed
            };
            s.bump_token();
            s.fast.set(ptr::null());
            // Dropped outside the borrow: the arena's own drop may report leaks.
            drop(removed);
        });
    }
}

/// Calls `f` with the arena the current thread has entered, or the process default.
#[inline]
pub(crate) fn with_current<R>(f: impl FnOnce(&ArenaInner) -> R) -> R {
    let p = STATE.with(|s| s.current.get());
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
    unsafe { state() }.arena().id
}

/// The arena the current thread has entered, or the process default.
pub fn current_arena() -> Arena {
    STATE.with(|s| s.entered.borrow().last().cloned()).unwrap_or_else(|| crate::arena::default_arena().clone())
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::{Checking, KM_SLEEP, kmem_alloc, kmem_free};

    fn plain() -> Arena {
        Arena::builder().checking(Checking::OFF).build()
    }

    fn pair() {
        let p = kmem_alloc(64, KM_SLEEP);
        // SAFETY: allocated just above with 64 bytes; freed once.
        unsafe { kmem_free(p, 64) };
    }

    fn tables() -> usize {
        STATE.with(|s| s.tables.borrow().len())
    }

    fn fast_arena() -> *const ArenaInner {
        STATE.with(|s| s.fast_table().map_or(ptr::null(), ThreadMags::arena_ptr))
    }

    #[test]
    fn the_fast_table_is_the_current_arenas_and_switches_with_it() {
        std::thread::spawn(|| {
            let (a, b) = (plain(), plain());
            let ga = a.enter();
            assert!(fast_arena().is_null(), "set up lazily");
            pair();
            assert_eq!(fast_arena(), a.inner_ptr());
            {
                let _gb = b.enter();
                assert!(fast_arena().is_null(), "cleared on entry");
                pair();
                assert_eq!(fast_arena(), b.inner_ptr());
            }
            assert!(fast_arena().is_null(), "cleared on exit");
            pair();
            assert_eq!(fast_arena(), a.inner_ptr());
            assert_eq!(tables(), 2, "one table per arena");
            drop(ga);
            drop(a);
            assert_eq!(tables(), 1, "dropping the arena dropped this thread's table of it");
            // A checking arena gets no fast table.
            let c = Arena::builder().checking(Checking::FULL).build();
            c.run(|| {
                pair();
                assert!(fast_arena().is_null());
            });
        })
        .join()
        .unwrap();
    }

    #[test]
    fn a_table_whose_arena_was_dropped_elsewhere_is_pruned() {
        let a = plain();
        let class = Arc::downgrade(&a.inner().caches()[1]);
        let (to_main, from_thread) = std::sync::mpsc::channel::<Arena>();
        let (dropped, wait_dropped) = std::sync::mpsc::channel::<()>();
        let t = std::thread::spawn(move || {
            a.run(pair);
            assert_eq!(tables(), 1);
            to_main.send(a).unwrap();
            wait_dropped.recv().unwrap();
            assert!(class.strong_count() > 0, "this thread's magazines still hold the class cache");
            let b = plain();
            b.run(pair);
            assert_eq!(tables(), 1, "the dead arena's table was given back");
            assert_eq!(class.strong_count(), 0, "and with it the last hold on the class cache");
        });
        drop(from_thread.recv().unwrap());
        dropped.send(()).unwrap();
        t.join().unwrap();
    }
}
