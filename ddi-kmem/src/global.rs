//! A `#[global_allocator]` over kmem's size-class caches, so a whole program runs on kmem.
//!
//! ```rust,standalone_crate
//! #[global_allocator]
//! static KMEM: ddi_kmem::KmemGlobal = ddi_kmem::KmemGlobal::new();
//!
//! fn main() {
//!     let v: Vec<u64> = (0..10).collect(); // 80 bytes: kmem's 128-byte class
//!     assert!(KMEM.owns(v.as_ptr().cast()));
//! }
//! ```
//!
//! # Principles of operation
//!
//! **What serves what.** A `Layout` of `size` bytes aligned to `align` is a kmem request of
//! `r = max(size, align)` bytes. Up to 131072 bytes (the largest native size class) the
//! adapter's arena serves it, through the same magazine fast path as
//! [`kmem_alloc`](crate::kmem_alloc): a pop from the thread's magazine of the class. The
//! adapter's arena is rarely the thread's current arena (whose table kmem's block points at),
//! so the block keeps a second pointer, to the thread's table of the adapter's arena, set on
//! the adapter's first call on the thread and cleared before the table goes. The native classes are powers
//! of two, each buffer aligned to its class size, and the class serving `r` is at least
//! `r >= align`, so every alignment up to 131072 is honoured; nothing is rounded twice.
//! Larger requests, and larger alignments, go to the system allocator (`std::alloc::System`,
//! via `sys.rs`), as kmem's own page path would. `realloc` stays in place when the new size
//! maps to the same class, and otherwise allocates, copies and frees; a system block is
//! reallocated by the system. `alloc_zeroed` zeroes the requested bytes of a kmem buffer and
//! asks the system for zeroed memory otherwise.
//!
//! **One process-wide arena.** The adapter's arena is built on first use: native (LfS)
//! quirks, no budget, [`Checking::OFF`], misuse reported rather than panicked (a panic must
//! not unwind out of an allocator). It is not reachable as an [`Arena`]: nothing but the
//! adapter allocates from it, so its code runs only on the adapter's terms (below). The adapter
//! does **not** follow the arena a thread has [entered](Arena::enter): memory from the global
//! allocator outlives arenas and moves between threads (a `Vec` built inside `arena.run(..)`
//! may be freed after the arena is dropped, on a thread that entered another arena), while a
//! user arena may have a budget that makes `KM_NOSLEEP` fail, checking that wants the exact
//! size, or quirks (a hidden header, Solaris classes) that break `Layout` alignment. Statistics
//! come from [`KmemGlobal::stats`].
//!
//! **Who owns a pointer is decided by its address.** A pointer reaches `dealloc` from kmem or
//! from the system, and the `Layout` cannot tell which: a small layout may have been served
//! by the system (see re-entrancy). The adapter's arena therefore builds its slabs as whole,
//! granule-aligned 64 KiB granules and registers them in a process-wide table (`granule.rs`:
//! a two-level radix table over the address space holding each granule's slab base, leaves
//! from the system, read lock-free with two dependent loads) before any buffer of them exists.
//! A granule of a live slab is entirely the slab's, so "the granule of `p` has an entry" is
//! exactly "`p` is in one of kmem's slabs"; anything else is the system's. The map's
//! synchronization is three independent atomic operations (publish a leaf, set an entry,
//! clear an entry) argued in `granule.rs` and model-checked with loom. The entry also gives
//! back the freed address with the slab's provenance, so a buffer freed through a narrower
//! pointer (a `Box<T>`'s) is handed out again reachable through its whole class size.
//!
//! **Re-entrancy.** kmem allocates for itself: magazines, the per-thread magazine table,
//! per-thread counters, the slab layer's free list, the arena itself, error reports, `tracing`
//! events. With the adapter installed those allocations come back into it, possibly while kmem
//! holds one of its locks (a slab layer's, a depot's). A thread-local flag (no destructor, so
//! it is valid for the whole life of the thread, thread-local destruction included) marks
//! "inside the adapter": it is set around every use of the arena, and
//! - an **allocation** made while it is set goes to the system. So every block kmem allocates
//!   for itself is the system's and never touches a kmem lock;
//! - a **free** made while it is set of a *system* block goes to the system (by address);
//! - a free made while it is set of a *kmem* buffer (an object allocated outside kmem and
//!   freed inside it, e.g. a per-thread table that another arena's code grew and the adapter's
//!   slow path grows again) is **deferred**: the buffer is pushed, in its own first 16 bytes
//!   (every class is at least 32), on a thread-local list that the outermost call drains just
//!   before it clears the flag. So kmem's code never re-enters the arena while it runs, and no
//!   lock of the arena is ever taken twice by one thread.
//!
//! Objects allocated in one regime and freed in the other are exactly why the flag alone
//! would not do, and why ownership is by address: a magazine allocated inside the slow path
//! (the system's) may be freed at thread exit outside it, and a vector allocated by user code
//! (kmem's) may be reallocated inside it; each goes back to its owner, whoever frees it.
//!
//! **Thread exit.** When a thread's kmem state (`context.rs`) is destroyed, its magazines go
//! back to the depot, and the destructors of other thread-locals may still allocate and free.
//! Returning the magazines runs *inside* the adapter: it pushes them on each depot's list under
//! the depot's lock, and that list may grow through the global allocator; outside the adapter
//! the growth would come back to the same depot (a thread without magazines takes the depot
//! lock for its statistics) and deadlock on it, as `tests/global_alloc.rs` once did with 160
//! exiting threads.
//! The adapter looks the state up with `try_with` and never touches a destroyed thread-local:
//! an allocation on a thread without kmem state goes to the system; a free of a kmem buffer
//! there goes to the arena's general path, which, finding no magazines, returns the buffer
//! to its slab layer (counted as a free).
//!
//! **Failure.** If kmem cannot serve a request (the system refused it a slab), the system
//! serves it; a NULL from both reaches the caller as usual (`handle_alloc_error`). A panic
//! inside kmem while the adapter runs (a bug in this crate) aborts the process with a message,
//! since unwinding out of a global allocator is undefined behaviour.
//!
//! **Platform.** The flag is a `const`, destructor-free `thread_local!`, which on targets with
//! native thread-locals (Linux, macOS, Windows, ...) is a plain thread-local variable that
//! never allocates. Targets that emulate thread-locals with boxed keys would allocate on the
//! flag's first access and are not supported.

use crate::arena::{Arena, Response};
use crate::check::Checking;
use crate::context;
use crate::error::Site;
use crate::flags::KM_NOSLEEP;
use crate::quirks::{MemQuirks, SizeClasses};
use crate::stats::{ArenaStats, CacheStats};
use crate::sys;
use std::alloc::{GlobalAlloc, Layout};
use std::cell::Cell;
use std::panic::Location;
use std::ptr::{self, NonNull};
use std::sync::OnceLock;
// Process-wide statistics counters: plain std atomics, outside any loom model.
use std::sync::atomic::{AtomicU64, Ordering};

/// The adapter's personality: native.
const QUIRKS: MemQuirks = MemQuirks::LFS;

/// The smallest and largest class of the native power-of-two scheme.
const KMEM_CLASSES: (usize, usize) = match QUIRKS.classes {
    SizeClasses::PowerOfTwo { min, max } => (min, max),
    SizeClasses::Solaris => panic!("the global adapter relies on power-of-two classes aligned to their size"),
};
const KMEM_MIN: usize = KMEM_CLASSES.0;
const KMEM_MAX: usize = KMEM_CLASSES.1;

const CALL_ALLOC: &str = "KmemGlobal::alloc";
const CALL_DEALLOC: &str = "KmemGlobal::dealloc";

/// A `#[global_allocator]` that serves a program's small allocations from kmem's size-class
/// caches (per-thread magazines, depot, slabs) and the rest from the system allocator.
///
/// Requests up to [`KmemGlobal::MAX_KMEM_REQUEST`] bytes (size or alignment) come from one
/// process-wide arena with native quirks, no budget and no checking; larger ones, and
/// allocations kmem makes for itself while serving one, come from `std::alloc::System`. A
/// pointer is freed by whoever owns its address. The source of `global.rs` opens with the
/// argument (ownership, re-entrancy, thread exit); the crate documentation summarizes it.
///
/// # Examples
/// Installed:
/// ```rust,standalone_crate
/// #[global_allocator]
/// static KMEM: ddi_kmem::KmemGlobal = ddi_kmem::KmemGlobal::new();
///
/// fn main() {
///     let s = String::from("served by kmem");
///     assert!(KMEM.owns(s.as_ptr()));
///     assert!(KMEM.stats().allocations > 0);
/// }
/// ```
/// Called directly, like any `GlobalAlloc`:
/// ```
/// use ddi_kmem::KmemGlobal;
/// use std::alloc::{GlobalAlloc, Layout};
///
/// static KMEM: KmemGlobal = KmemGlobal::new();
/// let layout = Layout::from_size_align(100, 64).unwrap();
/// // SAFETY: the layout has a non-zero size.
/// let p = unsafe { KMEM.alloc(layout) };
/// assert!(KMEM.owns(p) && p as usize % 64 == 0);
/// // SAFETY: `p` came from KMEM.alloc(layout) and is freed once.
/// unsafe { KMEM.dealloc(p, layout) };
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct KmemGlobal {
    _private: (),
}

/// Counts of what the adapter sent to the system allocator instead of kmem, since the process
/// started (all [`KmemGlobal`] values share them).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct GlobalCounters {
    /// Requests above [`KmemGlobal::MAX_KMEM_REQUEST`] (size or alignment).
    pub large: u64,
    /// Requests made while the thread was inside the adapter: kmem's own allocations.
    pub reentrant: u64,
    /// Requests on a thread whose kmem state was not available (being destroyed at exit).
    pub no_thread_state: u64,
    /// Requests kmem could not serve (the system refused it a slab).
    pub refused: u64,
    /// Frees of kmem buffers made while inside the adapter, deferred to the end of the
    /// outermost call (these went to kmem, later).
    pub deferred_frees: u64,
}

struct Counters {
    large: AtomicU64,
    reentrant: AtomicU64,
    no_thread_state: AtomicU64,
    refused: AtomicU64,
    deferred_frees: AtomicU64,
}

/// Bumped only off the fast path (fallbacks, deferrals); relaxed: statistics only.
static COUNTERS: Counters = Counters {
    large: AtomicU64::new(0),
    reentrant: AtomicU64::new(0),
    no_thread_state: AtomicU64::new(0),
    refused: AtomicU64::new(0),
    deferred_frees: AtomicU64::new(0),
};

#[inline]
fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// The adapter's arena, built on first use.
static ARENA: OnceLock<Arena> = OnceLock::new();

/// Per-thread adapter state: "inside the adapter", and the kmem buffers freed while inside.
struct Reentry {
    active: Cell<bool>,
    deferred: Cell<*mut Deferred>,
}

// A destructor would make the flag unavailable during thread-local destruction (and, with
// std's `const` thread-locals, is the only thing that could).
const _: () = assert!(!std::mem::needs_drop::<Reentry>());

thread_local! {
    static REENTRY: Reentry = const { Reentry { active: Cell::new(false), deferred: Cell::new(ptr::null_mut()) } };
}

/// The calling thread's adapter state, without a closure: `LocalKey::with` around the whole
/// allocation kept the thread-local getter out of line (an indirect call per access).
///
/// # Safety
/// - The reference is used only during the current call on this thread (the block has no
///   destructor and lives as long as the thread, but must not be kept across its exit).
#[inline(always)]
unsafe fn reentry<'a>() -> &'a Reentry {
    let p = REENTRY.with(ptr::from_ref);
    // SAFETY: this thread's own `REENTRY`, which has no destructor; used within the current
    // call (the contract).
    unsafe { &*p }
}

/// A kmem buffer freed while inside the adapter, kept in its own first bytes.
struct Deferred {
    next: *mut Deferred,
    request: usize,
}

// Every kmem buffer can hold a `Deferred`: the smallest class is 32 bytes, aligned to 32.
const _: () = assert!(size_of::<Deferred>() <= KMEM_MIN && align_of::<Deferred>() <= KMEM_MIN);

impl Reentry {
    /// Enters the adapter; `false` if the thread is already inside it.
    #[inline(always)]
    fn enter(&self) -> bool {
        if self.active.get() {
            return false;
        }
        self.active.set(true);
        true
    }

    /// Leaves the adapter: first frees what was deferred (still inside, so frees that those
    /// frees cause are deferred again and drained in turn), then clears the flag.
    #[inline(always)]
    fn leave(&self) {
        if !self.deferred.get().is_null() {
            self.drain();
        }
        self.active.set(false);
    }

    #[cold]
    #[inline(never)]
    fn drain(&self) {
        loop {
            let mut node = self.deferred.replace(ptr::null_mut());
            if node.is_null() {
                return;
            }
            while let Some(n) = NonNull::new(node) {
                // SAFETY: `n` was written by `defer` into a kmem buffer given up by its owner,
                // and is read once (the list was taken above).
                let Deferred { next, request } = unsafe { n.as_ptr().read() };
                // SAFETY: `n` is a live buffer of the adapter's arena allocated for `request`
                // (recorded by `defer`), freed here once; the thread is inside the adapter.
                unsafe { free_in_arena(n.cast(), request) };
                node = next;
            }
        }
    }

    /// Keeps a kmem buffer freed while inside the adapter, to free when it leaves.
    ///
    /// # Safety
    /// - `p` is a live buffer of the adapter's arena allocated for `request`, which its owner
    ///   gives up.
    #[cold]
    unsafe fn defer(&self, p: NonNull<u8>, request: usize) {
        let node = p.cast::<Deferred>();
        // SAFETY: the buffer is at least `KMEM_MIN` bytes aligned to `KMEM_MIN` (its class),
        // which holds a `Deferred` (const-asserted above), and no one else uses it any more.
        unsafe { node.as_ptr().write(Deferred { next: self.deferred.get(), request }) };
        self.deferred.set(node.as_ptr());
        bump(&COUNTERS.deferred_frees);
    }
}

/// Aborts the process when dropped. Armed around kmem's code inside the allocator and
/// forgotten on the way out: only a panic unwinding from kmem (a bug) drops it, and unwinding
/// out of a `GlobalAlloc` method is undefined behaviour.
struct AbortOnUnwind;

impl Drop for AbortOnUnwind {
    fn drop(&mut self) {
        use std::io::Write;
        let _ = std::io::stderr().write_all(b"ddi_kmem::KmemGlobal: panic inside the global allocator; aborting\n");
        std::process::abort();
    }
}

/// The kmem request for `layout` (`max(size, align)`), or `None` if kmem does not serve it.
#[inline(always)]
fn kmem_request(layout: Layout) -> Option<usize> {
    let r = layout.size().max(layout.align());
    (r <= KMEM_MAX).then_some(r)
}

/// The adapter's arena, built on first use. Called only inside the adapter, so what building
/// it allocates comes from the system.
#[inline(always)]
fn arena() -> &'static Arena {
    ARENA.get_or_init(build_arena)
}

#[cold]
fn build_arena() -> Arena {
    let arena =
        Arena::builder().name("KmemGlobal").quirks(QUIRKS).checking(Checking::OFF).response(Response::Report).build();
    for cache in arena.inner().class_caches() {
        debug_assert!(cache.class.align == cache.class.size, "internal: native classes are aligned to their size");
        cache.slab.register_granules();
    }
    arena
}

/// A buffer of `request` bytes from the adapter's arena (the thread is inside the adapter),
/// or the counter of the reason it must come from the system.
#[inline(always)]
fn alloc_in_arena(request: usize) -> Result<NonNull<u8>, &'static AtomicU64> {
    let inner = arena().inner();
    // The fast path: this thread's magazine table of the adapter's arena, cached in the
    // thread's block (the adapter's arena is rarely the current one, whose table is `fast`).
    // SAFETY: `st` is used only within this call.
    let st = unsafe { context::state() };
    if let Some(t) = st.adapter_table(inner) {
        // SAFETY: this thread's table of the adapter's arena, which is plain and alive
        // (static).
        if let Some(p) = unsafe { t.alloc(request, false) } {
            return Ok(p);
        }
    }
    // Everything else (no table while the thread exits or builds one, injection armed, a
    // miss the depot and slab layer could not fill): the arena's general path.
    NonNull::new(inner.alloc_general(CALL_ALLOC, request, KM_NOSLEEP, false, Site(Location::caller())))
        .ok_or(&COUNTERS.refused)
}

/// Returns a buffer to the adapter's arena (the thread is inside the adapter).
///
/// # Safety
/// - `p` is a live buffer of the adapter's arena allocated for `request`, not used afterwards.
#[inline(always)]
unsafe fn free_in_arena(p: NonNull<u8>, request: usize) {
    let inner = arena().inner();
    // SAFETY: `st` is used only within this call.
    let st = unsafe { context::state() };
    if let Some(t) = st.adapter_table(inner) {
        // SAFETY: this thread's table of the plain, live adapter arena; `p` is a live buffer
        // of it allocated with `request` bytes (the contract).
        if unsafe { t.free(p, request) } {
            return;
        }
    }
    // SAFETY: as above; through the general path (the slab layer without a table).
    unsafe { inner.free(CALL_DEALLOC, p.as_ptr(), request, Site(Location::caller())) }
}

/// The system's block for `layout`.
///
/// # Safety
/// - `layout` has a non-zero size.
#[inline]
unsafe fn system_alloc(layout: Layout, zero: bool) -> *mut u8 {
    if zero {
        // SAFETY: forwarded contract.
        unsafe { sys::system_alloc_zeroed(layout) }
    } else {
        // SAFETY: forwarded contract.
        unsafe { sys::system_alloc(layout) }
    }
}

/// `alloc` / `alloc_zeroed` of a request kmem serves.
///
/// # Safety
/// - `layout` has a non-zero size and `request == kmem_request(layout)`.
#[inline(always)]
unsafe fn alloc_small(layout: Layout, request: usize, zero: bool) -> *mut u8 {
    // SAFETY: used only within this call.
    let re = unsafe { reentry() };
    let got = if re.enter() {
        let bomb = AbortOnUnwind;
        let got = alloc_in_arena(request);
        re.leave();
        std::mem::forget(bomb);
        got
    } else {
        Err(&COUNTERS.reentrant)
    };
    match got {
        Ok(p) => {
            debug_assert!(p.as_ptr().addr() % layout.align() == 0, "internal: kmem buffer misaligned");
            if zero {
                // SAFETY: the buffer holds its class's size, at least `request >= size` bytes.
                unsafe { p.as_ptr().write_bytes(0, layout.size()) };
            }
            p.as_ptr()
        }
        Err(reason) => {
            bump(reason);
            // SAFETY: forwarded contract.
            unsafe { system_alloc(layout, zero) }
        }
    }
}

/// `dealloc` of a kmem buffer.
///
/// # Safety
/// - `p` is a live buffer of the adapter's arena allocated for `request`, not used afterwards.
#[inline(always)]
unsafe fn dealloc_kmem(p: NonNull<u8>, request: usize) {
    // SAFETY: used only within this call.
    let re = unsafe { reentry() };
    if !re.enter() {
        // SAFETY: forwarded contract.
        return unsafe { re.defer(p, request) };
    }
    let bomb = AbortOnUnwind;
    // SAFETY: forwarded contract; the thread is inside the adapter.
    unsafe { free_in_arena(p, request) };
    re.leave();
    std::mem::forget(bomb);
}

/// Runs `f` inside the adapter, so that what it allocates comes from the system and kmem's
/// code in it never re-enters the arena.
pub(crate) fn inside<R>(f: impl FnOnce() -> R) -> R {
    struct Leave<'a>(&'a Reentry);
    impl Drop for Leave<'_> {
        fn drop(&mut self) {
            self.0.leave();
        }
    }
    REENTRY.with(|re| {
        if !re.enter() {
            return f();
        }
        let _leave = Leave(re);
        f()
    })
}

impl KmemGlobal {
    /// The largest request (size or alignment) kmem serves: the largest native size class.
    /// Larger ones go to the system allocator.
    pub const MAX_KMEM_REQUEST: usize = KMEM_MAX;

    /// The adapter. All values share one process-wide arena.
    pub const fn new() -> Self {
        KmemGlobal { _private: () }
    }

    /// A snapshot of the statistics of the adapter's arena (see [`Arena::stats`]); its
    /// `bytes_in_use` counts kmem buffers by class size.
    pub fn stats(&self) -> ArenaStats {
        inside(|| arena().stats())
    }

    /// Bytes of kmem buffers the adapter has handed out and not had back, by class size.
    pub fn bytes_in_use(&self) -> usize {
        inside(|| arena().bytes_in_use())
    }

    /// The statistics of the size class whose buffers are `size` bytes, as for an object
    /// cache (magazine rounds, depot, slab buffers), or `None` if there is no such class.
    pub fn class_stats(&self, size: usize) -> Option<CacheStats> {
        inside(|| arena().class_cache_stats(size))
    }

    /// What went to the system allocator instead of kmem, and why.
    pub fn counters(&self) -> GlobalCounters {
        let c = &COUNTERS;
        GlobalCounters {
            large: c.large.load(Ordering::Relaxed),
            reentrant: c.reentrant.load(Ordering::Relaxed),
            no_thread_state: c.no_thread_state.load(Ordering::Relaxed),
            refused: c.refused.load(Ordering::Relaxed),
            deferred_frees: c.deferred_frees.load(Ordering::Relaxed),
        }
    }

    /// Whether `ptr` points into one of kmem's slabs, i.e. the adapter served it from kmem
    /// (the test `dealloc` makes; lock-free).
    pub fn owns(&self, ptr: *const u8) -> bool {
        sys::in_kmem_granule(ptr.addr())
    }
}

// SAFETY: `alloc` returns either a kmem buffer of at least `max(size, align)` bytes, aligned
// to its power-of-two class size (so to `align`), exclusively the caller's until freed, or a
// block from `System` for the same layout. `dealloc` and `realloc` return a block to the
// allocator that owns its address (a marked granule is exactly a live kmem slab, module doc),
// with the size class the layout selects, which is the one it was allocated from. No method
// unwinds: kmem's code runs under `AbortOnUnwind`.
unsafe impl GlobalAlloc for KmemGlobal {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        match kmem_request(layout) {
            // SAFETY: non-zero size (the caller's contract) and the matching request.
            Some(r) => unsafe { alloc_small(layout, r, false) },
            None => {
                bump(&COUNTERS.large);
                // SAFETY: non-zero size (the caller's contract).
                unsafe { sys::system_alloc(layout) }
            }
        }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        match kmem_request(layout) {
            // SAFETY: non-zero size (the caller's contract) and the matching request.
            Some(r) => unsafe { alloc_small(layout, r, true) },
            None => {
                bump(&COUNTERS.large);
                // SAFETY: non-zero size (the caller's contract).
                unsafe { sys::system_alloc_zeroed(layout) }
            }
        }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if let Some(r) = kmem_request(layout) {
            // The same address with the slab's provenance: `ptr` may reach less of the
            // buffer than its class size (a `Box<T>`'s reaches `size_of::<T>()` bytes), and
            // the buffer will be handed out again whole.
            if let Some(p) = sys::kmem_granule_ptr(ptr.addr()) {
                // SAFETY: the caller's contract makes `ptr` a live block of this allocator
                // with `layout`; it is in a kmem slab, so `alloc` served it from the arena
                // with the request `layout` selects.
                return unsafe { dealloc_kmem(p, r) };
            }
        }
        // SAFETY: not in a kmem slab, so the system's block, with the layout it was
        // allocated (or last reallocated) with (the caller's contract).
        unsafe { sys::system_dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // As in `dealloc`: a kmem buffer is handled through the slab's provenance.
        let kmem = kmem_request(layout).and_then(|r| Some((r, sys::kmem_granule_ptr(ptr.addr())?)));
        let Some((old, p)) = kmem else {
            // SAFETY: the system's block with `layout` (as in `dealloc`); `new_size` meets
            // `realloc`'s contract, which the caller guarantees.
            return unsafe { sys::system_realloc(ptr, layout, new_size) };
        };
        // SAFETY: the caller guarantees `new_size` with `layout.align()` is a valid layout
        // (`GlobalAlloc::realloc` contract).
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        if let Some(new) = kmem_request(new_layout) {
            let a = arena();
            if a.extent(new) == a.extent(old) {
                // Same class: the buffer already holds the new size, and a later `dealloc`
                // with the new layout selects the same class.
                return p.as_ptr();
            }
        }
        // SAFETY: `new_size` is non-zero (the caller's contract).
        let q = unsafe { self.alloc(new_layout) };
        if !q.is_null() {
            // SAFETY: `p` holds `layout.size()` bytes and `q` `new_size`; they are distinct
            // live blocks.
            unsafe { ptr::copy_nonoverlapping(p.as_ptr(), q, layout.size().min(new_size)) };
            // SAFETY: `p` is a live kmem buffer of request `old`, which the caller gives up
            // now that `realloc` succeeds.
            unsafe { dealloc_kmem(p, old) };
        }
        q
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    //! The adapter called directly (the unit tests' own global allocator is the system's).
    //! One test at a time owns the process-wide arena, so byte counts are exact.

    use super::*;
    use std::sync::Mutex;

    static SERIAL: Mutex<()> = Mutex::new(());
    const KMEM: KmemGlobal = KmemGlobal::new();

    fn serial() -> std::sync::MutexGuard<'static, ()> {
        SERIAL.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn alloc(size: usize, align: usize) -> (*mut u8, Layout) {
        let layout = Layout::from_size_align(size, align).unwrap();
        // SAFETY: non-zero sizes only.
        let p = unsafe { KMEM.alloc(layout) };
        assert!(!p.is_null() && p.addr() % align == 0, "{size}/{align}: {p:?}");
        (p, layout)
    }

    fn free((p, layout): (*mut u8, Layout)) {
        // SAFETY: each block came from `alloc` with this layout and is freed once.
        unsafe { KMEM.dealloc(p, layout) };
    }

    #[test]
    fn sizes_and_alignments_route_to_kmem_or_the_system() {
        let _s = serial();
        let before = KMEM.counters();
        let mut blocks = Vec::new();
        for (size, align, kmem) in [
            (1, 1, true),
            (24, 8, true),
            (100, 64, true),
            (3000, 4096, true),
            (1, 65536, true),
            (131072, 8, true),
            (8, 131072, true),
            (131073, 8, false),
            (8, 262144, false),
            (1 << 20, 16, false),
        ] {
            let b = alloc(size, align);
            assert_eq!(KMEM.owns(b.0), kmem, "{size}/{align}");
            // The whole requested extent is usable.
            // SAFETY: the block holds `size` bytes.
            unsafe { b.0.write_bytes(0xa5, size) };
            blocks.push(b);
        }
        assert_eq!(KMEM.counters().large - before.large, 3);
        assert!(KMEM.bytes_in_use() >= 32 + 128 + 4096 + 65536 + 2 * 131072);
        blocks.into_iter().for_each(free);
        assert_eq!(KMEM.bytes_in_use(), 0);
    }

    #[test]
    fn alloc_zeroed_and_realloc() {
        let _s = serial();
        // Dirty a buffer, free it, and get it back zeroed.
        let b = alloc(200, 8);
        // SAFETY: 200 bytes.
        unsafe { b.0.write_bytes(0xff, 200) };
        free(b);
        let layout = Layout::from_size_align(200, 8).unwrap();
        // SAFETY: non-zero size.
        let p = unsafe { KMEM.alloc_zeroed(layout) };
        // SAFETY: 200 bytes were zeroed.
        assert!(unsafe { std::slice::from_raw_parts(p, 200) }.iter().all(|&x| x == 0));
        // Same class (256): in place.
        // SAFETY: `p` is live with `layout`; 250 is a valid size.
        let q = unsafe { KMEM.realloc(p, layout, 250) };
        assert_eq!(q, p);
        // Growth through classes and out to the system, contents kept.
        let mut layout = Layout::from_size_align(250, 8).unwrap();
        let mut p = q;
        // A block that went to the system stays there, even when it shrinks again.
        let mut in_kmem = true;
        // SAFETY: 250 bytes.
        unsafe { p.write_bytes(7, 250) };
        for new in [300, 5000, 131072, 200_000, 100, 40] {
            // SAFETY: `p` is live with `layout`.
            let q = unsafe { KMEM.realloc(p, layout, new) };
            assert!(!q.is_null());
            let kept = layout.size().min(new).min(250);
            // SAFETY: `kept` bytes were copied.
            assert!(unsafe { std::slice::from_raw_parts(q, kept) }.iter().all(|&x| x == 7), "{new}");
            in_kmem &= new <= KmemGlobal::MAX_KMEM_REQUEST;
            assert_eq!(KMEM.owns(q), in_kmem, "{new}");
            layout = Layout::from_size_align(new, 8).unwrap();
            p = q;
        }
        free((p, layout));
        assert_eq!(KMEM.bytes_in_use(), 0);
    }

    #[test]
    fn reentrant_requests_go_to_the_system_and_kmem_frees_are_deferred() {
        let _s = serial();
        let before = KMEM.counters();
        let kmem_block = alloc(64, 8);
        assert!(KMEM.owns(kmem_block.0));
        let (sys_block, kmem_in_use) = inside(|| {
            // Inside the adapter (as kmem's own code is): the system serves,
            let b = alloc(64, 8);
            assert!(!KMEM.owns(b.0));
            // and a kmem buffer's free waits for the outermost call to end.
            free(kmem_block);
            (b, KMEM.bytes_in_use())
        });
        assert_eq!(kmem_in_use, 64, "deferred, not yet freed");
        assert_eq!(KMEM.bytes_in_use(), 0, "freed on leaving");
        let after = KMEM.counters();
        assert!(after.reentrant > before.reentrant);
        assert_eq!(after.deferred_frees - before.deferred_frees, 1);
        free(sys_block); // by address: the system's
    }

    #[test]
    fn a_buffer_freed_through_a_narrow_pointer_is_reused_whole() {
        let _s = serial();
        // A `Box<[u8; 16]>`-like pointer, retagged for 16 bytes, frees a 32-byte buffer...
        let (p, small) = alloc(16, 1);
        // SAFETY: `p` holds 16 bytes, aligned.
        let r: &mut [u8; 16] = unsafe { &mut *p.cast::<[u8; 16]>() };
        r.fill(1);
        free((std::ptr::from_mut(r).cast(), small));
        // ... which comes back (LIFO magazine) for 32 bytes, all of them writable.
        let (q, whole) = alloc(32, 1);
        assert_eq!(q, p, "the same buffer");
        // SAFETY: the class holds 32 bytes (Miri checks the pointer may reach them).
        unsafe { q.write_bytes(2, 32) };
        free((q, whole));
        assert_eq!(KMEM.bytes_in_use(), 0);
    }

    #[test]
    fn threads_exit_and_free_each_others_buffers() {
        let _s = serial();
        struct Handoff(*mut u8, Layout);
        // SAFETY: each block is owned by one thread at a time.
        unsafe impl Send for Handoff {}
        let n = if cfg!(miri) { 20 } else { 2000 };
        let made: Vec<Handoff> = std::thread::spawn(move || {
            (0..n)
                .map(|i| {
                    let (p, l) = alloc(16 + i % 500, 8);
                    Handoff(p, l)
                })
                .collect()
        })
        .join()
        .unwrap();
        assert!(KMEM.bytes_in_use() > 0);
        std::thread::spawn(move || made.into_iter().for_each(|Handoff(p, l)| free((p, l)))).join().unwrap();
        assert_eq!(KMEM.bytes_in_use(), 0);
    }
}
