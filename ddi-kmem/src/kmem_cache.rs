//! Object caches under their DDI names: `kmem_cache_create`, `kmem_cache_alloc`,
//! `kmem_cache_free`, `kmem_cache_destroy`, `kmem_cache_reap_now`; and [`TypedCache`], the
//! same for Rust objects.

use crate::arena::ArenaInner;
use crate::cache::CacheCore;
use crate::check::CacheTag;
use crate::class::Class;
use crate::context::{current_arena, state};
use crate::error::{KmemError, Site};
use crate::flags::KmFlags;
use crate::magazine::MagSlot;
use crate::stats::{CacheStats, PaddedCounters};
use std::ffi::c_void;
use std::fmt;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::panic::Location;
use std::ptr::NonNull;
use std::sync::Arc;
use std::sync::atomic::Ordering;

/// `kmem_cache_create` constructor: `(buf, private, kmflag) -> 0` on success.
pub type KmemConstructor = fn(buf: *mut c_void, private: *mut c_void, kmflag: KmFlags) -> i32;
/// `kmem_cache_create` destructor: `(buf, private)`.
pub type KmemDestructor = fn(buf: *mut c_void, private: *mut c_void);
/// `kmem_cache_create` reclaim callback: asked to free memory under pressure.
pub type KmemReclaim = fn(private: *mut c_void);

/// Do not touch buffers with debug patterns (illumos `KMC_NOTOUCH`). Accepted.
pub const KMC_NOTOUCH: u32 = 0x0001_0000;
/// Do not check this cache even in a checking arena (illumos `KMC_NODEBUG`). Honoured.
pub const KMC_NODEBUG: u32 = 0x0002_0000;
/// No magazine layer (illumos `KMC_NOMAGAZINE`). Accepted; the magazine layer stays.
pub const KMC_NOMAGAZINE: u32 = 0x0004_0000;
/// No hash table for buffer control (illumos `KMC_NOHASH`). Accepted: there is none.
pub const KMC_NOHASH: u32 = 0x0008_0000;

/// The largest alignment a cache accepts (one page).
const MAX_ALIGN: usize = crate::quirks::PAGE_SIZE;

/// What a cache handle shares with the arena.
pub(crate) struct CacheShared {
    pub(crate) core: Arc<CacheCore>,
    pub(crate) tag: CacheTag,
    pub(crate) checked: bool,
    /// Neither checked nor counted exactly (the arena has no budget and no checking): the
    /// fast paths of `kmem_cache_alloc` and `kmem_cache_free` apply.
    pub(crate) fast: bool,
    pub(crate) counters: PaddedCounters,
    pub(crate) arena: Arc<ArenaInner>,
}

/// `private` as the C caller gave it; handed back to its callbacks on any thread.
#[derive(Clone, Copy)]
struct Private(*mut c_void);
// SAFETY: the pointer is only passed back to the creator's own callbacks; what it points to
// is theirs to synchronise, as in C, where the callbacks run on any CPU.
unsafe impl Send for Private {}
// SAFETY: as above.
unsafe impl Sync for Private {}

/// An object cache: buffers of one size, kept constructed between uses.
///
/// Made by [`kmem_cache_create`]; dropping it is [`kmem_cache_destroy`].
pub struct KmemCache {
    shared: CacheShared,
}

impl fmt::Debug for KmemCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KmemCache")
            .field("name", &self.shared.core.name)
            .field("buf_size", &self.shared.core.class.size)
            .finish_non_exhaustive()
    }
}

impl KmemCache {
    /// A snapshot of the cache's statistics.
    pub fn stats(&self) -> CacheStats {
        self.shared.core.stats(self.shared.counters.failures.load(Ordering::Relaxed))
    }

    /// The cache's name.
    pub fn name(&self) -> &str {
        &self.shared.core.name
    }

    /// The buffer size.
    pub fn buf_size(&self) -> usize {
        self.shared.core.class.size
    }
}

fn cache_class(name: &str, bufsize: usize, align: usize) -> Class {
    let align = if align == 0 { 8 } else { align };
    assert!(
        align.is_power_of_two() && align <= MAX_ALIGN,
        "kmem_cache_create: bad alignment {align} for cache '{name}' (a power of two up to {MAX_ALIGN})"
    );
    assert!(bufsize > 0, "kmem_cache_create: cache '{name}' with a buffer size of 0");
    Class { size: bufsize.div_ceil(align) * align, align }
}

/// Creates an object cache in the current arena.
///
/// # Arguments
/// - `name`: the cache's name, for statistics and reports.
/// - `bufsize`: the size of each buffer.
/// - `align`: the alignment of each buffer (a power of two up to 4096; 0 means 8).
/// - `constructor`: run on a buffer when it enters the cache from the slab layer (not on
///   every allocation); returns 0 on success. `None` for none.
/// - `destructor`: run on a buffer when it leaves the cache for the slab layer.
/// - `reclaim`: called when the arena is under memory pressure, to free what it can.
/// - `private`: passed to the three callbacks.
/// - `vmp`: the vmem source; accepted and ignored (buffers come from the current arena).
/// - `cflags`: `KMC_NODEBUG` exempts the cache from the arena's checking; the other `KMC_*`
///   flags are accepted.
///
/// # Return
/// The cache. Creation does not fail (illumos creates caches with `KM_SLEEP`).
///
/// # Context
/// User context.
///
/// # Compatibility
/// illumos/Solaris `kmem_cache_create(9F)` (illumos.md §3): constructed objects are kept
/// between `kmem_cache_free` and the next `kmem_cache_alloc`; a checking arena runs the
/// constructor at every allocation and the destructor at every free instead, as illumos does
/// in DEADBEEF mode. A non-power-of-two alignment panics with illumos's "bad alignment". LfS
/// has the same function over Linux slab caches.
///
/// # Examples
/// ```
/// use ddi_kmem::{KM_SLEEP, kmem_cache_alloc, kmem_cache_create, kmem_cache_destroy, kmem_cache_free};
/// use std::ffi::c_void;
///
/// fn init(buf: *mut c_void, _private: *mut c_void, _flags: ddi_kmem::KmFlags) -> i32 {
///     // SAFETY: the cache hands the constructor a buffer of 64 bytes, aligned to 8.
///     unsafe { buf.cast::<u64>().write(0x5eed) };
///     0
/// }
///
/// let cp = kmem_cache_create("example", 64, 8, Some(init), None, None, std::ptr::null_mut(), std::ptr::null_mut(), 0);
/// let p = kmem_cache_alloc(&cp, KM_SLEEP);
/// // SAFETY: the constructor initialised the first word.
/// assert_eq!(unsafe { p.cast::<u64>().read() }, 0x5eed);
/// // SAFETY: `p` came from this cache and is freed once.
/// unsafe { kmem_cache_free(&cp, p) };
/// kmem_cache_destroy(cp);
/// ```
#[allow(clippy::too_many_arguments)]
pub fn kmem_cache_create(
    name: &str,
    bufsize: usize,
    align: usize,
    constructor: Option<KmemConstructor>,
    destructor: Option<KmemDestructor>,
    reclaim: Option<KmemReclaim>,
    private: *mut c_void,
    vmp: *mut c_void,
    cflags: u32,
) -> KmemCache {
    let _ = vmp;
    let class = cache_class(name, bufsize, align);
    let private = Private(private);
    let ctor = constructor.map(|c| -> crate::cache::Ctor {
        Box::new(move |p: NonNull<u8>, f: KmFlags| {
            let private = private;
            c(p.as_ptr().cast(), private.0, f) == 0
        })
    });
    let dtor = destructor.map(|d| -> crate::cache::Dtor {
        Box::new(move |p: NonNull<u8>| {
            let private = private;
            d(p.as_ptr().cast(), private.0)
        })
    });
    let reclaim = reclaim.map(|r| -> crate::cache::Reclaim {
        Box::new(move || {
            let private = private;
            r(private.0)
        })
    });
    let arena = current_arena();
    KmemCache { shared: arena.inner_arc().create_cache(name, class, ctor, dtor, reclaim, cflags & KMC_NODEBUG != 0) }
}

/// Allocates a constructed buffer from a cache.
///
/// # Arguments
/// - `cp`: the cache.
/// - `kmflag`: `KM_SLEEP` or `KM_NOSLEEP`.
///
/// # Return
/// A constructed buffer of the cache's size, or NULL: for `KM_NOSLEEP` when the budget cannot
/// cover it or failure injection selects it; for any flag when the constructor fails (illumos:
/// "kmem_cache_alloc(cp, KM_SLEEP) can return NULL if the cache constructor fails").
///
/// # Context
/// As `kmem_alloc`: interrupt context only with `KM_NOSLEEP`.
///
/// # Compatibility
/// illumos/Solaris `kmem_cache_alloc(9F)`.
#[track_caller]
#[inline(always)]
pub fn kmem_cache_alloc(cp: &KmemCache, kmflag: KmFlags) -> *mut c_void {
    let s = &cp.shared;
    // The fast path: nothing to report or inject, and a round in this thread's slot of the
    // cache, found through the thread's direct-mapped entry (which only a plain cache gets:
    // not checked, its arena not counting exactly).
    // SAFETY: `st` is used only within this call.
    let st = unsafe { state() };
    if !(crate::inject::any_armed() || (kmflag.may_sleep() && st.in_interrupt())) {
        if let Some(u) = st.user_fast(s.tag.id) {
            // SAFETY: the slot is this thread's (from its own state).
            if let Some(p) = unsafe { u.slot.pop() } {
                return p.as_ptr().cast();
            }
        }
    }
    cache_alloc_slow(cp, kmflag, Site(Location::caller()))
}

#[cold]
#[inline(never)]
fn cache_alloc_slow(cp: &KmemCache, kmflag: KmFlags, site: Site) -> *mut c_void {
    let s = &cp.shared;
    s.arena.cache_alloc(s, kmflag, site).cast()
}

/// Returns a buffer to its cache, still constructed.
///
/// # Arguments
/// - `cp`: the cache it came from.
/// - `buf`: the buffer, or NULL (ignored).
///
/// # Return
/// Nothing.
///
/// # Context
/// Any.
///
/// # Compatibility
/// illumos/Solaris `kmem_cache_free(9F)`.
///
/// # Safety
/// Unless the cache is checked (a checking arena, no `KMC_NODEBUG`): `buf` came from
/// [`kmem_cache_alloc`] of `cp`, has not been freed, and is not used afterwards. A checked
/// cache reports a wrong cache, a foreign pointer, a double free or a redzone write instead.
#[track_caller]
#[inline(always)]
pub unsafe fn kmem_cache_free(cp: &KmemCache, buf: *mut c_void) {
    let Some(p) = NonNull::new(buf.cast::<u8>()) else { return };
    let s = &cp.shared;
    // SAFETY: `st` is used only within this call.
    let st = unsafe { state() };
    // Only a plain cache has a direct-mapped entry (see `kmem_cache_alloc`).
    if let Some(u) = st.user_fast(s.tag.id) {
        // SAFETY: the slot is this thread's, of this cache; by the contract `p` is an unused
        // constructed buffer of the cache.
        if unsafe { u.slot.push(p) }.is_ok() {
            return;
        }
    }
    // SAFETY: forwarded contract.
    unsafe { cache_free_slow(cp, p, Site(Location::caller())) }
}

/// # Safety
/// As [`kmem_cache_free`].
#[cold]
#[inline(never)]
unsafe fn cache_free_slow(cp: &KmemCache, p: NonNull<u8>, site: Site) {
    let s = &cp.shared;
    // SAFETY: forwarded contract.
    unsafe { s.arena.cache_free(s, p, site) }
}

/// One thread's magazines of one object cache, as [`kmem_cache_thread_slot`] hands them to a
/// layer above: that layer keeps the pointer in its own thread-local state, beside its other
/// per-thread state, and reaches the magazines from there without the lookups of
/// [`kmem_cache_alloc`] (the thread's direct-mapped entry, keyed by the cache's id, which is
/// read from the cache first).
///
/// The pointer is current while [`kmem_thread_token`] returns the value it returned before
/// the slot was asked for: the token changes before a slot can be released (its cache let go
/// by the thread, the thread exiting) and whenever the thread enters or leaves an arena (so a
/// layer that keeps per-arena state beside the slots needs no other test).
#[repr(transparent)]
#[derive(Debug)]
pub struct ThreadSlot(MagSlot);

/// The slot of a cache without a per-thread fast path: never holds a round. Only read (a pop
/// finds no round, a push no room), so one serves every thread.
static NO_SLOT: ThreadSlot = ThreadSlot(MagSlot::new());

impl ThreadSlot {
    /// A slot that never holds a round: [`ThreadSlot::alloc`] always misses and
    /// [`ThreadSlot::free`] always refuses. What a layer above keeps where it has no slot.
    pub const fn empty() -> &'static ThreadSlot {
        &NO_SLOT
    }

    /// Pops a constructed buffer from the loaded magazine, as [`kmem_cache_alloc`] with
    /// `KM_NOSLEEP` does on its fast path; NULL when the magazine is empty or failure
    /// injection is armed anywhere (then call [`kmem_cache_alloc`], which refills the
    /// magazine or injects).
    ///
    /// # Safety
    /// The slot is [`ThreadSlot::empty`], or came from [`kmem_cache_thread_slot`] on this
    /// thread and [`kmem_thread_token`] still returns the value it returned before that call.
    #[inline(always)]
    pub unsafe fn alloc(&self) -> *mut c_void {
        if crate::inject::any_armed() {
            return std::ptr::null_mut();
        }
        // SAFETY: the slot is this thread's (the contract), or the shared empty one, which a
        // pop only reads.
        match unsafe { self.0.pop() } {
            Some(p) => p.as_ptr().cast(),
            None => std::ptr::null_mut(),
        }
    }

    /// Pushes a buffer onto the loaded magazine, as [`kmem_cache_free`] does on its fast
    /// path; `false` (nothing done) when the magazine is full or the slot is the empty one
    /// (then call [`kmem_cache_free`]).
    ///
    /// # Safety
    /// As [`ThreadSlot::alloc`]; and `buf` is a buffer of the slot's cache, allocated, still
    /// constructed, and not used afterwards.
    #[inline(always)]
    pub unsafe fn free(&self, buf: NonNull<c_void>) -> bool {
        // SAFETY: the slot is this thread's, or the empty one, whose push refuses without
        // writing (its capacity is 0); `buf` is an unused constructed buffer of its cache.
        unsafe { self.0.push(buf.cast()) }.is_ok()
    }
}

/// The calling thread's token: see [`ThreadSlot`]. One thread-local read.
#[inline(always)]
pub fn kmem_thread_token() -> u64 {
    // SAFETY: used only within this call.
    unsafe { state() }.token()
}

/// The calling thread's slot of `cp`, set up if needed, for a layer that keeps it beside its
/// own per-thread state ([`ThreadSlot`]); [`ThreadSlot::empty`] when the cache has no
/// per-thread fast path (it is checked, or its arena counts exactly) or the thread cannot
/// have a slot now (it is exiting, or is setting one up already).
///
/// Read [`kmem_thread_token`] before the call: the slot is current while the token has that
/// value.
pub fn kmem_cache_thread_slot(cp: &KmemCache) -> NonNull<ThreadSlot> {
    let s = &cp.shared;
    if !s.fast {
        return NonNull::from(ThreadSlot::empty());
    }
    // SAFETY: `st` is used only within this call.
    let st = unsafe { state() };
    match st.user_slot(&s.core, true) {
        // SAFETY: `user_slot` returned this thread's live slot of the cache; only its address
        // is taken.
        Some(u) => NonNull::from(unsafe { &(*u).slot }).cast(),
        None => NonNull::from(ThreadSlot::empty()),
    }
}

/// Destroys a cache.
///
/// # Arguments
/// - `cp`: the cache.
///
/// # Return
/// Nothing. Buffers still allocated are reported as a misuse (illumos: "kmem_cache_destroy:
/// '%s' (%p) not empty") and the cache's memory is kept, so they stay valid.
///
/// # Context
/// User context.
///
/// # Compatibility
/// illumos/Solaris `kmem_cache_destroy(9F)`. Dropping the [`KmemCache`] does the same.
pub fn kmem_cache_destroy(cp: KmemCache) {
    drop(cp);
}

/// Empties the cache's depot now, destroying the constructed buffers it held.
///
/// # Arguments
/// - `cp`: the cache.
///
/// # Return
/// Nothing.
///
/// # Context
/// User context.
///
/// # Compatibility
/// illumos `kmem_cache_reap_now`. The reclaim callback is not called (it is, by arena
/// pressure and [`Arena::reap`](crate::Arena::reap)).
pub fn kmem_cache_reap_now(cp: &KmemCache) {
    cp.shared.core.purge();
}

impl Drop for KmemCache {
    fn drop(&mut self) {
        let s = &self.shared;
        let outstanding = s.core.in_use();
        crate::context::drop_user_slot(&s.core);
        s.core.release_depot(outstanding > 0);
        if outstanding > 0 {
            let e = KmemError::CacheNotEmpty { cache: s.core.name.clone(), buffers: outstanding };
            if std::thread::panicking() {
                tracing::error!("kernel memory allocator: {e}");
            } else {
                s.arena.misuse(e);
            }
        }
    }
}

/// An object cache for values of `T`, kept constructed between uses.
///
/// `init` builds a value when a buffer enters the cache from the slab layer; the value is
/// dropped when the buffer leaves it (reap, destroy). An allocation hands out a value as the
/// last user left it, so `T` should be a type whose state may be reused (buffers, locks,
/// lists); reset what must not survive. The object returns on drop of its [`CachedObj`].
///
/// # Examples
/// ```
/// use ddi_kmem::{KM_SLEEP, TypedCache};
///
/// let cache = TypedCache::new("scratch", || Vec::<u8>::with_capacity(256));
/// let mut v = cache.alloc(KM_SLEEP).expect("KM_SLEEP");
/// assert!(v.capacity() >= 256);
/// v.push(1);
/// drop(v); // back to the cache, still holding its allocation
/// ```
pub struct TypedCache<T> {
    cache: KmemCache,
    _t: PhantomData<fn() -> T>,
}

impl<T: Send + 'static> TypedCache<T> {
    /// A cache in the current arena whose objects `init` constructs.
    pub fn new(name: &str, init: impl Fn() -> T + Send + Sync + 'static) -> Self {
        let class = cache_class(name, size_of::<T>().max(1), align_of::<T>());
        let ctor: crate::cache::Ctor = Box::new(move |p: NonNull<u8>, _| {
            // SAFETY: the cache hands the constructor a buffer of at least size_of::<T>()
            // bytes aligned for T, holding no value.
            unsafe { p.cast::<T>().write(init()) };
            true
        });
        let dtor: crate::cache::Dtor = Box::new(|p: NonNull<u8>| {
            // SAFETY: the destructor only sees buffers the constructor initialised and no
            // one uses any more.
            unsafe { p.cast::<T>().drop_in_place() }
        });
        let shared = current_arena().inner_arc().create_cache(name, class, Some(ctor), Some(dtor), None, false);
        TypedCache { cache: KmemCache { shared }, _t: PhantomData }
    }

    /// A constructed object, or `None` where `kmem_cache_alloc` returns NULL.
    #[track_caller]
    pub fn alloc(&self, flags: KmFlags) -> Option<CachedObj<'_, T>> {
        let p = NonNull::new(kmem_cache_alloc(&self.cache, flags).cast::<T>())?;
        Some(CachedObj { cache: self, ptr: p })
    }

    /// The underlying cache's statistics.
    pub fn stats(&self) -> CacheStats {
        self.cache.stats()
    }
}

/// An object from a [`TypedCache`]; returns to the cache, constructed, when dropped.
pub struct CachedObj<'a, T: Send + 'static> {
    cache: &'a TypedCache<T>,
    ptr: NonNull<T>,
}

// SAFETY: the object is owned exclusively by this handle; T: Send.
unsafe impl<T: Send + 'static> Send for CachedObj<'_, T> {}
// SAFETY: shared access gives `&T` only; T: Sync is required for that.
unsafe impl<T: Send + Sync + 'static> Sync for CachedObj<'_, T> {}

impl<T: Send + 'static> Deref for CachedObj<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: a constructed T owned by this handle.
        unsafe { self.ptr.as_ref() }
    }
}

impl<T: Send + 'static> DerefMut for CachedObj<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: a constructed T owned exclusively by this handle.
        unsafe { self.ptr.as_mut() }
    }
}

impl<T: Send + 'static> Drop for CachedObj<'_, T> {
    fn drop(&mut self) {
        // SAFETY: the object came from this cache's kmem_cache_alloc and is freed once.
        unsafe { kmem_cache_free(&self.cache.cache, self.ptr.as_ptr().cast()) };
    }
}
