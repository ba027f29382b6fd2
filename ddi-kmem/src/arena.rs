//! Arenas: where memory comes from, with budget, checking, failure injection and statistics.

use crate::budget::{Budget, Refused};
use crate::cache::{CacheCore, Ctor, Dtor, Reclaim};
use crate::check::{CacheTag, Checker, Checking, Fill, Freed, Shape};
use crate::class::Class;
use crate::class::ClassTable;
use crate::context::{self, EnterGuard};
use crate::error::{KmemError, Site};
use crate::flags::{KM_CACHEALIGN, KM_NOSLEEP, KmFlags};
use crate::inject::{FailurePlan, Injector};
use crate::kmem_cache::CacheShared;
use crate::magazine::MAX_CLASSES;
use crate::quirks::{CACHE_LINE, FreeSize, MemQuirks, Oversize, PAGE_SIZE, ZallocZeroes, ZeroSize};
use crate::stats::{ArenaStats, CacheStats, ClassCounters, ClassStats, PaddedCounters};
use crate::sync::{AtomicBool, AtomicU64, Mutex, Ordering};
use crate::sys::{SysBlock, sys_alloc, sys_free};
use std::alloc::Layout;
use std::fmt;
use std::panic::Location;
use std::ptr::{self, NonNull};
use std::sync::{Arc, OnceLock, Weak};

/// What an arena does when it detects a misuse.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Response {
    /// Panic with the report, as a kernel panics on heap corruption (`kmem_panic = 1`, the
    /// illumos default).
    #[default]
    Panic,
    /// Count the error, keep the report (see [`Arena::errors`]), leave the memory involved
    /// out of use and carry on (`kmem_panic < 0`).
    Report,
}

/// The offset of `mem_link_t.size` in LiS's hidden header (after the `next` and `prev`
/// pointers), where a personality with a hidden header keeps the requested size.
const HEADER_SIZE_FIELD: usize = 2 * std::mem::size_of::<usize>();

/// The most misuse reports an arena keeps (the count goes on).
const MAX_KEPT_ERRORS: usize = 1024;

/// The largest order `get_free_pages` accepts (Linux `MAX_ORDER - 1` on x86: 4 MiB).
pub const MAX_PAGE_ORDER: u32 = 10;

/// Builds an [`Arena`].
#[derive(Clone, Debug)]
pub struct ArenaBuilder {
    name: String,
    budget: Option<usize>,
    checking: Checking,
    response: Response,
    quirks: MemQuirks,
}

impl ArenaBuilder {
    /// The arena's name, used in reports and statistics.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// A byte budget: allocations are refused (`KM_NOSLEEP`) or wait (`KM_SLEEP`) while the
    /// bytes in use, counted by extent, would exceed it. Default: no budget.
    pub fn budget(mut self, bytes: usize) -> Self {
        self.budget = Some(bytes);
        self
    }

    /// Which checks to perform. Default: [`Checking::default`] (all in debug builds).
    pub fn checking(mut self, checking: Checking) -> Self {
        self.checking = checking;
        self
    }

    /// What to do on a misuse. Default: panic.
    pub fn response(mut self, response: Response) -> Self {
        self.response = response;
        self
    }

    /// The vendor behaviour. Default: [`MemQuirks::LFS`].
    pub fn quirks(mut self, quirks: MemQuirks) -> Self {
        self.quirks = quirks;
        self
    }

    /// Builds the arena.
    pub fn build(self) -> Arena {
        let q = self.quirks;
        assert!(q.round_to.is_power_of_two(), "MemQuirks::round_to must be a power of two");
        assert!(q.hidden_header % 8 == 0, "MemQuirks::hidden_header must keep 8-byte alignment");
        let table = ClassTable::new(q.classes);
        assert!(table.classes.len() <= MAX_CLASSES, "internal: more than {MAX_CLASSES} size classes");
        let caches: Box<[Arc<CacheCore>]> = table
            .classes
            .iter()
            .map(|&c| CacheCore::new(format!("{}:kmem_alloc_{}", self.name, c.size), c, None, None, None))
            .collect();
        let counters = (0..=table.classes.len()).map(|_| PaddedCounters::default()).collect();
        // A personality that verifies the free size needs the side table even unchecked.
        let checker = (self.checking.any() || q.free_size == FreeSize::Verified).then(|| Checker::new(self.checking));
        let cachealign_class = table.index(CACHE_LINE);
        let exact = checker.is_some() || self.budget.is_some();
        let plain =
            !exact && q.hidden_header == 0 && q.round_to == 1 && q.trailer == 0 && q.free_size == FreeSize::Trusted;
        let inner = Arc::new_cyclic(|weak| ArenaInner {
            weak: weak.clone(),
            id: NEXT_ARENA_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            name: self.name,
            quirks: q,
            table,
            caches,
            counters,
            budget: Budget::new(self.budget),
            checker,
            response: self.response,
            injector: Injector::default(),
            errors: Mutex::new(Vec::new()),
            error_count: AtomicU64::new(0),
            cachealign_used: AtomicBool::new(false),
            cachealign_class,
            exact,
            plain,
            user_caches: Mutex::new(Vec::new()),
            close_hooks: Mutex::new(Some(Vec::new())),
        });
        Arena { open: Some(Arc::new(Open { inner: Arc::clone(&inner) })), inner }
    }
}

/// A weak reference to an [`Arena`] ([`Arena::downgrade`]).
#[derive(Clone, Debug)]
pub struct WeakArena(Weak<ArenaInner>);

impl WeakArena {
    /// A [dependent](Arena::dependent) handle to the arena, if it still exists.
    pub fn upgrade(&self) -> Option<Arena> {
        self.0.upgrade().map(|inner| Arena { inner, open: None })
    }
}

/// Arena identities: never reused within a process, so a layer above may key per-arena state
/// on them even after the arena is gone. Starts at 1.
static NEXT_ARENA_ID: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(1);

/// A hook run when an arena closes.
type CloseHook = Box<dyn FnOnce(&Arena) + Send>;

/// Held by every open handle of an arena; dropping the last one closes the arena.
struct Open {
    inner: Arc<ArenaInner>,
}

impl Drop for Open {
    fn drop(&mut self) {
        let hooks = self.inner.close_hooks.lock().take().unwrap_or_default();
        if hooks.is_empty() {
            return;
        }
        let dependent = Arena { inner: Arc::clone(&self.inner), open: None };
        tracing::debug!(arena = %self.inner.name, hooks = hooks.len(), "arena closed");
        for hook in hooks {
            hook(&dependent);
        }
    }
}

/// A source of kernel memory: size-class caches, a page path, a budget, checking, failure
/// injection and statistics, under one personality's [`MemQuirks`].
///
/// Arenas are independent, so tests with their own budgets run in parallel. The DDI functions
/// ([`kmem_alloc`](crate::kmem_alloc) and the rest) act on the arena the current thread has
/// [entered](Arena::enter), or on the process-wide [default](Arena::default_arena). An `Arena`
/// is a cheap handle (`Clone` shares it).
///
/// # Examples
/// ```
/// use ddi_kmem::{Arena, KM_NOSLEEP, kmem_alloc, kmem_free};
///
/// let arena = Arena::builder().name("example").budget(4096).build();
/// arena.run(|| {
///     let p = kmem_alloc(4096, KM_NOSLEEP);
///     assert!(!p.is_null());
///     assert!(kmem_alloc(32, KM_NOSLEEP).is_null()); // the budget is spent
///     // SAFETY: `p` came from kmem_alloc(4096) in this arena and is freed once.
///     unsafe { kmem_free(p, 4096) };
/// });
/// assert_eq!(arena.stats().bytes_in_use, 0);
/// ```
#[derive(Clone)]
pub struct Arena {
    inner: Arc<ArenaInner>,
    /// `None` for a [dependent](Arena::dependent) handle.
    open: Option<Arc<Open>>,
}

impl fmt::Debug for Arena {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Arena")
            .field("name", &self.inner.name)
            .field("vendor", &self.inner.quirks.vendor)
            .field("bytes_in_use", &self.inner.bytes_in_use())
            .finish_non_exhaustive()
    }
}

pub(crate) struct ArenaInner {
    /// See [`Arena::id`].
    pub(crate) id: usize,
    /// This arena, weakly: keys the threads' magazine tables (`context::ThreadState::table_for`).
    weak: Weak<ArenaInner>,
    name: String,
    quirks: MemQuirks,
    table: ClassTable,
    /// The size classes, as object caches without constructor (the magazine layer).
    caches: Box<[Arc<CacheCore>]>,
    /// Whether class allocations are counted exactly, with atomics, as they happen (a budget
    /// to enforce, or checking). Otherwise the caches' per-thread counters are summed when
    /// asked, and the fast path has no shared read-modify-write.
    exact: bool,
    /// The object caches made with `kmem_cache_create` in this arena.
    user_caches: Mutex<Vec<Weak<CacheCore>>>,
    /// Not exact, and the quirks add nothing to a request: the fast path applies.
    plain: bool,
    /// One per class, then one for the page path.
    counters: Box<[PaddedCounters]>,
    budget: Budget,
    checker: Option<Checker>,
    response: Response,
    injector: Injector,
    errors: Mutex<Vec<KmemError>>,
    error_count: AtomicU64,
    /// Set once a small `KM_CACHEALIGN` request was served from the cache-line class; from
    /// then on an unchecked free of a small size asks that class whether it owns the buffer.
    cachealign_used: AtomicBool,
    cachealign_class: Option<usize>,
    /// Run when the last open handle is dropped; `None` once that has happened.
    close_hooks: Mutex<Option<Vec<CloseHook>>>,
}

/// Where a request is served from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Route {
    Class(usize),
    Pages(usize),
}

/// One allocation request, after the personality has shaped it.
#[derive(Clone, Copy, Debug)]
struct Request {
    call: &'static str,
    route: Route,
    size: usize,
    header: usize,
    may_sleep: bool,
    zero: bool,
}

impl Arena {
    /// A builder with the defaults: no budget, default checking, panic on misuse, LfS quirks.
    pub fn builder() -> ArenaBuilder {
        ArenaBuilder {
            name: "arena".to_string(),
            budget: None,
            checking: Checking::default(),
            response: Response::default(),
            quirks: MemQuirks::LFS,
        }
    }

    /// The process-wide default arena that stands behind the DDI functions on a thread that
    /// has entered no arena: native quirks, no budget, default checking, panic on misuse.
    pub fn default_arena() -> &'static Arena {
        default_arena()
    }

    pub(crate) fn inner_arc(&self) -> &Arc<ArenaInner> {
        &self.inner
    }

    pub(crate) fn inner(&self) -> &ArenaInner {
        &self.inner
    }

    pub(crate) fn inner_ptr(&self) -> *const ArenaInner {
        Arc::as_ptr(&self.inner)
    }

    /// Makes this the current thread's arena until the guard is dropped.
    pub fn enter(&self) -> EnterGuard {
        context::enter(self)
    }

    /// Runs `f` with this arena entered on the current thread.
    pub fn run<R>(&self, f: impl FnOnce() -> R) -> R {
        let _g = self.enter();
        f()
    }

    /// An identity for the arena: equal for all handles of the same arena, and never given to
    /// another arena of the process, even after this one is dropped.
    pub fn id(&self) -> usize {
        self.inner.id
    }

    /// A handle that keeps the arena alive without keeping it *open*.
    ///
    /// An arena is open while any ordinary handle exists (every handle made by
    /// [`ArenaBuilder::build`] or cloned from one, including those held by threads that have
    /// [entered](Arena::enter) it). When the last one is dropped the arena *closes*: the
    /// hooks registered with [`on_close`](Arena::on_close) run, once, and the arena itself is
    /// dropped when the dependent handles are too. A layer above that keeps per-arena state
    /// (streams-core's message environment: an object cache in this arena) holds dependent
    /// handles and releases them in its close hook, so the arena does not keep itself alive.
    pub fn dependent(&self) -> Arena {
        Arena { inner: Arc::clone(&self.inner), open: None }
    }

    /// A weak handle: it does not keep the arena alive, and gives a dependent handle back
    /// while the arena exists.
    pub fn downgrade(&self) -> WeakArena {
        WeakArena(Arc::downgrade(&self.inner))
    }

    /// Whether this is a [dependent](Arena::dependent) handle.
    pub fn is_dependent(&self) -> bool {
        self.open.is_none()
    }

    /// Whether the arena has closed (only a dependent handle can observe it).
    pub fn is_closed(&self) -> bool {
        self.inner.close_hooks.lock().is_none()
    }

    /// Registers `hook` to run when the arena closes (see [`dependent`](Arena::dependent)),
    /// on the thread that drops the last open handle, with a dependent handle to the arena.
    /// Hooks run in the order they were registered. Returns `false`, and drops `hook` without
    /// running it, if the arena has already closed. The process-wide
    /// [default](Arena::default_arena) never closes.
    pub fn on_close(&self, hook: impl FnOnce(&Arena) + Send + 'static) -> bool {
        match self.inner.close_hooks.lock().as_mut() {
            Some(hooks) => {
                hooks.push(Box::new(hook));
                true
            }
            None => false,
        }
    }

    /// The arena's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The personality's memory quirks.
    pub fn quirks(&self) -> &MemQuirks {
        &self.inner.quirks
    }

    /// The checks this arena performs.
    pub fn checking(&self) -> Checking {
        self.inner.checker.as_ref().map_or(Checking::OFF, |c| c.flags)
    }

    /// The response to misuse.
    pub fn response(&self) -> Response {
        self.inner.response
    }

    /// The usable bytes behind a request of `size` (the size class or page rounding, less any
    /// hidden header), or `None` if the arena would refuse it. This is the "slop" LfS `allocb`
    /// uses for `db_lim`. Portable modules make no assumption about it.
    pub fn extent(&self, size: usize) -> Option<usize> {
        let a = &self.inner;
        if size == 0 && a.quirks.zero_size == ZeroSize::Null {
            return None;
        }
        match a.route(a.quirks.chunk_request(size))? {
            Route::Class(ix) => Some(a.table.classes[ix].size - a.quirks.hidden_header),
            Route::Pages(bytes) => Some(bytes - a.quirks.hidden_header),
        }
    }

    /// The alignment every buffer of `size` bytes allocated with `flags` is guaranteed.
    pub fn alignment(&self, size: usize, flags: KmFlags) -> Option<usize> {
        let a = &self.inner;
        let size = a.padded(size, flags);
        let align = match a.route(a.quirks.chunk_request(size))? {
            Route::Class(ix) => a.table.classes[ix].align,
            Route::Pages(_) => PAGE_SIZE,
        };
        let header = a.quirks.hidden_header;
        Some(if header == 0 { align } else { align.min(1 << header.trailing_zeros()) })
    }

    /// Arms failure injection: from now on the allocations `plan` selects, among those
    /// allowed to fail, return NULL. Replaces any earlier plan.
    pub fn inject(&self, plan: FailurePlan) {
        self.inner.injector.arm(plan);
    }

    /// Disarms failure injection.
    pub fn clear_injection(&self) {
        self.inner.injector.disarm();
    }

    /// The misuse reports kept so far (with [`Response::Report`]; the first 1024).
    pub fn errors(&self) -> Vec<KmemError> {
        self.inner.errors.lock().clone()
    }

    /// Removes and returns the kept misuse reports.
    pub fn take_errors(&self) -> Vec<KmemError> {
        std::mem::take(&mut *self.inner.errors.lock())
    }

    /// Verifies every freed buffer still holds the free pattern (checking with `deadbeef`);
    /// reports each modified one as a misuse and returns how many there were.
    pub fn verify(&self) -> usize {
        let Some(ch) = &self.inner.checker else { return 0 };
        let errors = ch.verify("Arena::verify");
        let n = errors.len();
        for e in errors {
            self.inner.misuse(e);
        }
        n
    }

    /// A snapshot of the statistics.
    pub fn stats(&self) -> ArenaStats {
        let a = &self.inner;
        let classes: Vec<ClassStats> = a
            .counters
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let mut s = ClassStats {
                    size: a.table.classes.get(i).map(|c| c.size),
                    allocations: c.allocs.load(Ordering::Relaxed),
                    frees: c.frees.load(Ordering::Relaxed),
                    failures: c.failures.load(Ordering::Relaxed),
                    sleeps: c.sleeps.load(Ordering::Relaxed),
                    buffers_in_use: c.in_use.load(Ordering::Relaxed),
                    high_water: c.high_water.load(Ordering::Relaxed),
                };
                if let (false, Some(cache)) = (a.exact, a.caches.get(i)) {
                    let c = cache.snapshot();
                    (s.allocations, s.frees, s.buffers_in_use) = (c.allocs, c.frees, c.in_use);
                    s.high_water = cache.high_water();
                }
                s
            })
            .collect();
        let high_water = if a.exact {
            a.budget.high_water()
        } else {
            // An upper bound: the per-class peaks need not have coincided.
            a.budget.high_water()
                + classes.iter().zip(&a.table.classes).map(|(s, c)| s.high_water * c.size).sum::<usize>()
        };
        ArenaStats {
            name: a.name.clone(),
            bytes_in_use: a.bytes_in_use(),
            high_water,
            budget: a.budget.limit(),
            allocations: classes.iter().map(|c| c.allocations).sum(),
            frees: classes.iter().map(|c| c.frees).sum(),
            failures: classes.iter().map(|c| c.failures).sum(),
            sleeps: classes.iter().map(|c| c.sleeps).sum(),
            injected: a.injector.injected(),
            errors: a.error_count.load(Ordering::Relaxed),
            classes,
        }
    }

    /// How many `KM_SLEEP` allocations are waiting for the budget right now. Lets a test
    /// or a harness wait for a sleeper deterministically instead of by time.
    pub fn waiting(&self) -> usize {
        self.inner.budget.sleepers()
    }

    /// Bytes currently allocated (by extent).
    pub fn bytes_in_use(&self) -> usize {
        self.inner.bytes_in_use()
    }

    /// Trims every size class's depot to its working set: magazines unused since the previous
    /// reap are destroyed (illumos `kmem_reap`). Returns how many buffers that released.
    pub fn reap(&self) -> usize {
        self.inner.reap_all()
    }

    /// Statistics of the size class whose buffers are `size` bytes, as for an object cache.
    pub fn class_cache_stats(&self, size: usize) -> Option<CacheStats> {
        let ix = self.inner.table.classes.iter().position(|c| c.size == size)?;
        Some(self.inner.caches[ix].stats(0))
    }

    /// Empties every size class's depot. Returns how many buffers that released.
    pub fn purge(&self) -> usize {
        self.inner.caches.iter().map(|c| c.purge()).sum()
    }

    /// Allocates like [`kmem_alloc`](crate::kmem_alloc), in this arena.
    #[track_caller]
    pub fn alloc(&self, size: usize, flags: KmFlags) -> *mut u8 {
        self.inner.alloc("kmem_alloc", size, flags, false, Site(Location::caller()))
    }

    /// Allocates like [`kmem_zalloc`](crate::kmem_zalloc), in this arena.
    #[track_caller]
    pub fn zalloc(&self, size: usize, flags: KmFlags) -> *mut u8 {
        self.inner.alloc("kmem_zalloc", size, flags, true, Site(Location::caller()))
    }

    /// Frees like [`kmem_free`](crate::kmem_free), in this arena.
    ///
    /// # Safety
    /// As [`kmem_free`](crate::kmem_free), with "this arena" for "the current arena".
    #[track_caller]
    pub unsafe fn free(&self, buf: *mut u8, size: usize) {
        // SAFETY: forwarded contract.
        unsafe { self.inner.free("kmem_free", buf, size, Site(Location::caller())) }
    }
}

pub(crate) fn default_arena() -> &'static Arena {
    static DEFAULT: OnceLock<Arena> = OnceLock::new();
    DEFAULT.get_or_init(|| Arena::builder().name("default").build())
}

impl ArenaInner {
    /// The size classes' caches, smallest first (the global adapter registers their slabs in
    /// the granule map, `global.rs`).
    pub(crate) fn class_caches(&self) -> &[Arc<CacheCore>] {
        &self.caches
    }

    fn pages_ix(&self) -> usize {
        self.table.classes.len()
    }

    fn route(&self, chunk: usize) -> Option<Route> {
        match self.table.index(chunk.max(1)) {
            Some(ix) => Some(Route::Class(ix)),
            None => match self.quirks.oversize {
                Oversize::Pages => Some(Route::Pages(chunk.div_ceil(PAGE_SIZE) * PAGE_SIZE)),
                Oversize::Fail => None,
            },
        }
    }

    /// `KM_CACHEALIGN` raises a small request to a cache line (LfS slow path).
    fn padded(&self, size: usize, flags: KmFlags) -> usize {
        if flags.contains(KM_CACHEALIGN) && self.quirks.honours_cachealign && size <= CACHE_LINE / 2 {
            CACHE_LINE
        } else {
            size
        }
    }

    /// This arena, weakly.
    pub(crate) fn weak(&self) -> Weak<ArenaInner> {
        self.weak.clone()
    }

    /// The size classes' caches.
    pub(crate) fn caches(&self) -> &[Arc<CacheCore>] {
        &self.caches
    }

    /// Whether the fast path applies: not exact (no budget, no checking), and the quirks add
    /// nothing to a request (no header, no rounding, no trailer, the free size trusted).
    pub(crate) fn is_plain(&self) -> bool {
        self.plain
    }

    /// (power-of-two classes, smallest class, largest class), for the fast path's class
    /// computation.
    pub(crate) fn class_params(&self) -> (bool, usize, usize) {
        (self.table.pow2(), self.table.classes[0].size, self.table.max())
    }

    /// The class serving a request of `size` bytes (`size` > 0), if any.
    #[inline]
    pub(crate) fn class_index(&self, size: usize) -> Option<usize> {
        self.table.index(size)
    }

    /// Whether a small `KM_CACHEALIGN` request was ever served from the cache-line class.
    #[inline(always)]
    pub(crate) fn cachealign_used(&self) -> bool {
        self.cachealign_used.load(Ordering::Relaxed)
    }

    /// How many bytes `kmem_zalloc(size)` clears in a buffer of class `ix`.
    pub(crate) fn zalloc_len(&self, ix: usize, size: usize) -> usize {
        match self.quirks.zalloc_zeroes {
            ZallocZeroes::Extent => self.table.classes[ix].size,
            ZallocZeroes::Request => size,
        }
    }

    /// `kmem_alloc` / `kmem_zalloc` under this arena's quirks ([`Arena::alloc`]): the fast
    /// path if this is the current arena and plain, else the general path.
    #[inline]
    pub(crate) fn alloc(&self, call: &'static str, size: usize, flags: KmFlags, zero: bool, site: Site) -> *mut u8 {
        // SAFETY: `st` is used only within this call.
        let st = unsafe { context::state() };
        if let Some(t) = st.fast_table() {
            if ptr::eq(t.arena_ptr(), self)
                && flags.bits() & KM_CACHEALIGN.bits() == 0
                && !(flags.may_sleep() && st.in_interrupt())
            {
                // SAFETY: this thread's table for this arena (alive: `&self`), which is plain
                // (only a plain arena's table is `fast`).
                if let Some(p) = unsafe { t.alloc(size, zero) } {
                    return p.as_ptr();
                }
            }
        }
        self.alloc_general(call, size, flags, zero, site)
    }

    /// A buffer of class `ix` through this thread's magazines (or, without them, the slab
    /// layer).
    fn class_alloc(&self, ix: usize) -> Option<NonNull<u8>> {
        // SAFETY: `st` is used only within this call.
        let st = unsafe { context::state() };
        match st.table_for(self) {
            Some(t) => {
                // SAFETY: `table_for` returned this thread's live table for this arena, and
                // nothing in this call enters, leaves or drops an arena.
                let (slot, core) = unsafe { &*t }.class(ix);
                // SAFETY: the slot is this thread's; it belongs to class `ix`'s cache.
                match unsafe { slot.pop() } {
                    Some(p) => Some(p),
                    // SAFETY: as above.
                    None => unsafe { core.alloc_miss(slot, KM_NOSLEEP) },
                }
            }
            None => self.caches[ix].alloc_noslot(KM_NOSLEEP),
        }
    }

    /// Returns a buffer to class `ix` through this thread's magazines (or the slab layer).
    ///
    /// # Safety
    /// - `p` is a live buffer of class `ix` of this arena, not used after.
    unsafe fn class_free(&self, ix: usize, p: NonNull<u8>) {
        // SAFETY: `st` is used only within this call.
        let st = unsafe { context::state() };
        match st.table_for(self) {
            Some(t) => {
                // SAFETY: as in `class_alloc`.
                let (slot, core) = unsafe { &*t }.class(ix);
                // SAFETY: the slot is this thread's, of class `ix`'s cache; `p` is an unused
                // buffer of that cache (the contract).
                if let Err(p) = unsafe { slot.push(p) } {
                    // SAFETY: as above.
                    unsafe { core.free_miss(slot, p) };
                }
            }
            // SAFETY: as above.
            None => unsafe { self.caches[ix].free_noslot(p) },
        }
    }

    #[inline(never)]
    pub(crate) fn alloc_general(
        &self,
        call: &'static str,
        size: usize,
        flags: KmFlags,
        zero: bool,
        site: Site,
    ) -> *mut u8 {
        if size == 0 && self.quirks.zero_size == ZeroSize::Null {
            tracing::debug!(arena = %self.name, call, "size 0: NULL");
            return ptr::null_mut();
        }
        let mut may_sleep = flags.may_sleep();
        if may_sleep && context::in_interrupt() {
            self.misuse(KmemError::SleepInInterrupt { call, size });
            may_sleep = false;
        }
        let may_sleep = may_sleep && self.quirks.honours_sleep;
        let padded = self.padded(size, flags);
        let Some(route) = self.route(self.quirks.chunk_request(padded)) else {
            self.counters[self.pages_ix()].failures.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                arena = %self.name, call, size, max = self.table.max(),
                "request larger than the largest size class: NULL (use get_free_pages for larger extents)"
            );
            return ptr::null_mut();
        };
        if padded != size && matches!(route, Route::Class(ix) if Some(ix) == self.cachealign_class) {
            self.cachealign_used.store(true, Ordering::Relaxed);
        }
        let req = Request { call, route, size, header: self.quirks.hidden_header, may_sleep, zero };
        self.alloc_request(req, site).map_or(ptr::null_mut(), NonNull::as_ptr)
    }

    /// `get_free_pages`: `bytes` of page-aligned memory, no hidden header.
    pub(crate) fn alloc_pages(&self, call: &'static str, bytes: usize, flags: KmFlags, site: Site) -> *mut u8 {
        let mut may_sleep = flags.may_sleep();
        if may_sleep && context::in_interrupt() {
            self.misuse(KmemError::SleepInInterrupt { call, size: bytes });
            may_sleep = false;
        }
        let may_sleep = may_sleep && self.quirks.honours_sleep;
        let req = Request { call, route: Route::Pages(bytes), size: bytes, header: 0, may_sleep, zero: false };
        self.alloc_request(req, site).map_or(ptr::null_mut(), NonNull::as_ptr)
    }

    fn alloc_request(&self, req: Request, site: Site) -> Option<NonNull<u8>> {
        let (cix, chunk_bytes, align) = match req.route {
            Route::Class(ix) => (ix, self.table.classes[ix].size, self.table.classes[ix].align),
            Route::Pages(bytes) => (self.pages_ix(), bytes, PAGE_SIZE),
        };
        let ctr = &self.counters[cix];
        let exact = self.exact || cix == self.pages_ix();
        if !req.may_sleep && self.injector.should_fail(req.size) {
            ctr.failures.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(arena = %self.name, call = req.call, size = req.size, "failure injected: NULL");
            return None;
        }
        if exact && !self.charge(req.call, req.size, chunk_bytes, req.may_sleep, ctr) {
            return None;
        }
        let extent = chunk_bytes - req.header;
        let zero_len = match self.quirks.zalloc_zeroes {
            ZallocZeroes::Extent => extent,
            ZallocZeroes::Request => req.size,
        };
        let got = match &self.checker {
            Some(ch) => {
                let shape = Shape {
                    header: req.header,
                    size: req.size,
                    extent,
                    align,
                    class: (cix < self.pages_ix()).then_some(cix),
                    charged: chunk_bytes,
                    cache: None,
                };
                let fill = if req.zero { Fill::Zero(zero_len) } else { Fill::Garbage };
                let (p, errors) = ch.alloc(req.call, shape, fill, None, site);
                if !errors.is_empty() && self.response == Response::Panic {
                    // The report below panics: give back the block just allocated and its
                    // charge first, so the panic leaves nothing live that no one holds.
                    if let Some(p) = p {
                        let _ = ch.free(req.call, &self.name, p.as_ptr().addr(), Some(req.size), None, site, |_| {});
                    }
                    self.budget.release(chunk_bytes);
                    for e in errors {
                        self.misuse(e);
                    }
                    unreachable!("internal: Response::Panic returned from misuse");
                }
                if let Some(p) = p {
                    self.write_header(p, req);
                }
                for e in errors {
                    self.misuse(e);
                }
                p
            }
            None => self.alloc_unchecked(req, chunk_bytes, zero_len),
        };
        match got {
            Some(p) => {
                if exact {
                    ctr.on_alloc();
                }
                Some(p)
            }
            None => {
                if exact {
                    self.budget.release(chunk_bytes);
                }
                ctr.failures.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(arena = %self.name, call = req.call, size = req.size, "the process allocator refused: NULL");
                None
            }
        }
    }

    #[inline]
    fn alloc_unchecked(&self, req: Request, chunk_bytes: usize, zero_len: usize) -> Option<NonNull<u8>> {
        let chunk = match req.route {
            Route::Class(ix) => self.class_alloc(ix)?,
            Route::Pages(bytes) => {
                let block = sys_alloc(Layout::from_size_align(bytes, PAGE_SIZE).ok()?)?;
                // Rebuilt by `free_unchecked` from the size.
                block.into_raw()
            }
        };
        debug_assert!(req.header < chunk_bytes, "internal: header fills the chunk");
        // SAFETY: `header < chunk_bytes`, so the result is inside the chunk.
        let user = unsafe { chunk.add(req.header) };
        self.write_header(user, req);
        if req.zero {
            // SAFETY: `zero_len <= extent = chunk_bytes - header` bytes follow `user`.
            unsafe { user.as_ptr().write_bytes(0, zero_len) };
        }
        Some(user)
    }

    /// A personality with a hidden header keeps the requested size in it (LiS `mem_link_t`).
    fn write_header(&self, user: NonNull<u8>, req: Request) {
        if req.header >= HEADER_SIZE_FIELD + std::mem::size_of::<usize>() {
            let field = user.as_ptr().wrapping_sub(req.header).wrapping_add(HEADER_SIZE_FIELD).cast::<usize>();
            // SAFETY: the header lies in front of `user` inside the same chunk, and the size
            // field fits in it (checked above); `header` and the field offset are multiples
            // of 8, so the field is aligned.
            unsafe { field.write(req.size) };
        }
    }

    /// `kmem_free` under this arena's quirks.
    ///
    /// # Safety
    /// As [`crate::kmem_free`]: unless the arena checks, `buf` is NULL or a live buffer of
    /// this arena allocated with `size` bytes.
    #[inline]
    pub(crate) unsafe fn free(&self, call: &'static str, buf: *mut u8, size: usize, site: Site) {
        let Some(p) = NonNull::new(buf) else {
            if size != 0 {
                self.misuse(KmemError::NullFree { call, size });
            }
            return;
        };
        // SAFETY: `st` is used only within this call.
        let st = unsafe { context::state() };
        if let Some(t) = st.fast_table() {
            // SAFETY: this thread's table for this arena (alive: `&self`), which is plain;
            // `p` is a live buffer of this arena allocated with `size` bytes (the contract).
            if ptr::eq(t.arena_ptr(), self) && unsafe { t.free(p, size) } {
                return;
            }
        }
        if let Some(ch) = &self.checker {
            let passed = (self.quirks.free_size != FreeSize::Ignored).then_some(size);
            match ch.free(call, &self.name, p.as_ptr().addr(), passed, None, site, |_| {}) {
                Freed::Ok { class, charged, error, .. } => {
                    self.budget.release(charged);
                    self.counters[class.unwrap_or(self.pages_ix())].on_free();
                    if let Some(e) = error {
                        self.misuse(e);
                    }
                }
                Freed::Refused(e) => self.misuse(e),
            }
            return;
        }
        // SAFETY: forwarded contract.
        unsafe { self.free_unchecked(call, p, size) }
    }

    /// # Safety
    /// `p` is a live buffer of this arena's unchecked path allocated with `size` bytes (or,
    /// where the personality ignores the size, with any size).
    unsafe fn free_unchecked(&self, call: &'static str, p: NonNull<u8>, size: usize) {
        let header = self.quirks.hidden_header;
        let size = if self.quirks.free_size == FreeSize::Ignored && header > 0 {
            let field = p.as_ptr().wrapping_sub(header).wrapping_add(HEADER_SIZE_FIELD).cast::<usize>();
            // SAFETY: `p` is a live buffer of this arena (contract), so the header written by
            // `write_header` lies in front of it, inside the same chunk.
            unsafe { field.read() }
        } else {
            size
        };
        if size == 0 && self.quirks.zero_size == ZeroSize::Null {
            let e = KmemError::InvalidFree { call, arena: self.name.clone(), addr: p.as_ptr().addr(), size };
            return self.misuse(e);
        }
        let Some(mut route) = self.route(self.quirks.chunk_request(size)) else {
            let e = KmemError::InvalidFree { call, arena: self.name.clone(), addr: p.as_ptr().addr(), size };
            return self.misuse(e);
        };
        // SAFETY: the header precedes `p` inside its chunk.
        let chunk = unsafe { p.sub(header) };
        if size <= CACHE_LINE / 2 && self.cachealign_used.load(Ordering::Relaxed) {
            if let Some(cl) = self.cachealign_class {
                if self.caches[cl].slab.owns(chunk) {
                    route = Route::Class(cl);
                }
            }
        }
        let (cix, bytes) = match route {
            Route::Class(ix) => {
                // SAFETY: `chunk` is a buffer of class `ix`, live (contract).
                unsafe { self.class_free(ix, chunk) };
                (ix, self.table.classes[ix].size)
            }
            Route::Pages(bytes) => {
                let layout = Layout::from_size_align(bytes, PAGE_SIZE).expect("page layout");
                // SAFETY: page-path chunks are `sys_alloc` blocks of exactly this layout whose
                // handle was given up in `alloc_unchecked`.
                let block = unsafe { SysBlock::from_raw(chunk, layout) };
                // SAFETY: the buffer was live (contract) and its caller is done with it.
                unsafe { sys_free(block) };
                (self.pages_ix(), bytes)
            }
        };
        if self.exact || cix == self.pages_ix() {
            self.budget.release(bytes);
            self.counters[cix].on_free();
        }
    }

    /// `free_pages`.
    ///
    /// # Safety
    /// Unless the arena checks, `p` came from `get_free_pages` of this arena with `bytes`.
    pub(crate) unsafe fn free_pages(&self, call: &'static str, p: NonNull<u8>, bytes: usize, site: Site) {
        if let Some(ch) = &self.checker {
            match ch.free(call, &self.name, p.as_ptr().addr(), Some(bytes), None, site, |_| {}) {
                Freed::Ok { class, charged, error, .. } => {
                    self.budget.release(charged);
                    self.counters[class.unwrap_or(self.pages_ix())].on_free();
                    if let Some(e) = error {
                        self.misuse(e);
                    }
                }
                Freed::Refused(e) => self.misuse(e),
            }
            return;
        }
        let layout = Layout::from_size_align(bytes, PAGE_SIZE).expect("page layout");
        // SAFETY: by contract `p` is a `get_free_pages` block of `bytes`, whose handle was
        // given up in `alloc_unchecked`.
        let block = unsafe { SysBlock::from_raw(p, layout) };
        // SAFETY: the caller is done with the pages (contract).
        unsafe { sys_free(block) };
        self.budget.release(bytes);
        self.counters[self.pages_ix()].on_free();
    }

    /// Charges `bytes` to the budget; `false` (counted as a failure) when it cannot.
    ///
    /// A sleeping request under pressure first asks every cache to give memory back (the
    /// clients' reclaim callbacks, then the depots' unused magazines), as the kernel reaps its
    /// caches before it makes an allocation wait (illumos `kmem_reap`).
    fn charge(&self, call: &'static str, size: usize, bytes: usize, may_sleep: bool, ctr: &ClassCounters) -> bool {
        match self.budget.try_charge(bytes) {
            Ok(()) => return true,
            Err(Refused::Exhausted) if may_sleep => {
                tracing::debug!(arena = %self.name, call, size, "budget exhausted: reaping the caches before sleeping");
                self.reap_all();
            }
            Err(_) if may_sleep => {}
            Err(_) => {
                ctr.failures.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(arena = %self.name, call, size, in_use = self.budget.in_use(), "budget exhausted: NULL");
                return false;
            }
        }
        match self.budget.charge_sleeping(bytes) {
            Ok(0) => true,
            Ok(slept) => {
                ctr.sleeps.fetch_add(slept, Ordering::Relaxed);
                tracing::debug!(arena = %self.name, call, size, slept, "KM_SLEEP allocation slept for the budget");
                true
            }
            Err(_) => {
                ctr.failures.fetch_add(1, Ordering::Relaxed);
                self.misuse(KmemError::SleepNeverSatisfiable {
                    call,
                    arena: self.name.clone(),
                    size,
                    extent: bytes,
                    budget: self.budget.limit().unwrap_or(0),
                });
                false
            }
        }
    }

    /// Reaps every cache of the arena: size classes and object caches.
    pub(crate) fn reap_all(&self) -> usize {
        let users: Vec<Arc<CacheCore>> = self.user_caches.lock().iter().filter_map(Weak::upgrade).collect();
        self.caches.iter().chain(&users).map(|c| c.reap()).sum()
    }

    /// `kmem_cache_alloc` for an object cache of this arena.
    pub(crate) fn cache_alloc(&self, c: &CacheShared, flags: KmFlags, site: Site) -> *mut u8 {
        const CALL: &str = "kmem_cache_alloc";
        let core = &c.core;
        let size = core.class.size;
        let mut may_sleep = flags.may_sleep();
        if may_sleep && context::in_interrupt() {
            self.misuse(KmemError::SleepInInterrupt { call: CALL, size });
            may_sleep = false;
        }
        let may_sleep = may_sleep && self.quirks.honours_sleep;
        if !may_sleep && self.injector.should_fail(size) {
            c.counters.failures.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(arena = %self.name, cache = %core.name, "failure injected: NULL");
            return ptr::null_mut();
        }
        if self.exact && !self.charge(CALL, size, size, may_sleep, &c.counters) {
            return ptr::null_mut();
        }
        let got = match (&self.checker, c.checked) {
            (Some(ch), true) => {
                let shape = Shape {
                    header: 0,
                    size,
                    extent: size,
                    align: core.class.align,
                    class: None,
                    charged: size,
                    cache: Some(c.tag.id),
                };
                let (p, errors) = ch.alloc(CALL, shape, Fill::Garbage, Some(&c.tag), site);
                for e in errors {
                    self.misuse(e);
                }
                // Checking runs the constructor at every allocation and the destructor at
                // every free, as illumos does in DEADBEEF mode, so constructed state cannot
                // hide a use after free.
                p.and_then(|p| {
                    if core.construct(p, flags) {
                        core.count_outside(true);
                        Some(p)
                    } else {
                        let _ = ch.free(CALL, &self.name, p.as_ptr().addr(), Some(size), Some(&c.tag), site, |_| {});
                        None
                    }
                })
            }
            _ => self.user_alloc(c, flags),
        };
        match got {
            Some(p) => p.as_ptr(),
            None => {
                if self.exact {
                    self.budget.release(size);
                }
                c.counters.failures.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(arena = %self.name, cache = %core.name, "kmem_cache_alloc: NULL (slab growth or constructor failed)");
                ptr::null_mut()
            }
        }
    }

    /// `kmem_cache_free` for an object cache of this arena.
    ///
    /// # Safety
    /// Unless the cache is checked: `p` came from `cache_alloc` of `c`, is in use, and is not
    /// used afterwards.
    pub(crate) unsafe fn cache_free(&self, c: &CacheShared, p: NonNull<u8>, site: Site) {
        const CALL: &str = "kmem_cache_free";
        let core = &c.core;
        match (&self.checker, c.checked) {
            (Some(ch), true) => {
                let size = core.class.size;
                match ch.free(CALL, &self.name, p.as_ptr().addr(), Some(size), Some(&c.tag), site, |p| core.destruct(p))
                {
                    Freed::Ok { charged, error, .. } => {
                        if self.exact {
                            self.budget.release(charged);
                        }
                        if let Some(e) = error {
                            self.misuse(e);
                        }
                        // Last: once the free is counted, a layer above that reads no
                        // buffer in use may destroy the cache and drop the arena.
                        core.count_outside(false);
                    }
                    Freed::Refused(e) => self.misuse(e),
                }
            }
            _ => {
                if self.exact {
                    self.budget.release(core.class.size);
                }
                // SAFETY: forwarded contract. Last, for the reason above: the free becomes
                // visible to the cache's in-use count as its final access to shared state.
                unsafe { self.user_free(c, p) };
            }
        }
    }

    /// A constructed buffer of an object cache through this thread's slot of it (or, without
    /// one, the slab layer).
    fn user_alloc(&self, c: &CacheShared, flags: KmFlags) -> Option<NonNull<u8>> {
        let core = &c.core;
        // SAFETY: `st` is used only within this call.
        let st = unsafe { context::state() };
        match st.user_slot(core, c.fast) {
            Some(u) => {
                // SAFETY: `user_slot` returned this thread's live slot of `core`; it stays
                // while the caller holds the cache.
                let u = unsafe { &*u };
                // SAFETY: the slot is this thread's.
                unsafe { u.alloc(flags) }
            }
            None => core.alloc_noslot(flags),
        }
    }

    /// Returns a constructed buffer to an object cache through this thread's slot of it.
    ///
    /// # Safety
    /// - `p` came from `core`, is in use, and is not used after.
    unsafe fn user_free(&self, c: &CacheShared, p: NonNull<u8>) {
        let core = &c.core;
        // SAFETY: `st` is used only within this call.
        let st = unsafe { context::state() };
        match st.user_slot(core, c.fast) {
            Some(u) => {
                // SAFETY: as in `user_alloc`.
                let u = unsafe { &*u };
                // SAFETY: the slot is this thread's; `p` is an unused buffer of `core` (the
                // contract).
                unsafe { u.free(p) }
            }
            // SAFETY: as above.
            None => unsafe { core.free_noslot(p) },
        }
    }

    /// Creates an object cache in this arena.
    pub(crate) fn create_cache(
        self: &Arc<Self>,
        name: &str,
        class: Class,
        ctor: Option<Ctor>,
        dtor: Option<Dtor>,
        reclaim: Option<Reclaim>,
        nodebug: bool,
    ) -> CacheShared {
        let core = CacheCore::new(name.to_string(), class, ctor, dtor, reclaim);
        let mut users = self.user_caches.lock();
        users.retain(|w| w.strong_count() > 0);
        users.push(Arc::downgrade(&core));
        CacheShared {
            tag: CacheTag { id: core.id, name: name.into() },
            checked: self.checker.is_some() && !nodebug,
            fast: !self.exact,
            counters: PaddedCounters::default(),
            arena: self.clone(),
            core,
        }
    }

    /// Bytes handed out and not yet freed, by extent.
    pub(crate) fn bytes_in_use(&self) -> usize {
        if self.exact {
            self.budget.in_use()
        } else {
            // The budget still counts the page path; the classes count per thread.
            let users: Vec<Arc<CacheCore>> = self.user_caches.lock().iter().filter_map(Weak::upgrade).collect();
            self.budget.in_use() + self.caches.iter().chain(&users).map(|c| c.in_use() * c.class.size).sum::<usize>()
        }
    }

    /// Reports a free of `p` that no allocation of this arena can match.
    #[cold]
    pub(crate) fn invalid_free(&self, call: &'static str, p: NonNull<u8>, size: usize) {
        self.misuse(KmemError::InvalidFree { call, arena: self.name.clone(), addr: p.as_ptr().addr(), size });
    }

    /// Reports a misuse: count, trace, then panic or keep the report.
    #[cold]
    #[track_caller]
    pub(crate) fn misuse(&self, e: KmemError) {
        self.error_count.fetch_add(1, Ordering::Relaxed);
        tracing::error!(arena = %self.name, "kernel memory allocator: {e}");
        match self.response {
            Response::Panic => panic!("kernel memory allocator: {e}"),
            Response::Report => {
                let mut kept = self.errors.lock();
                if kept.len() < MAX_KEPT_ERRORS {
                    kept.push(e);
                }
            }
        }
    }
}

impl Drop for ArenaInner {
    fn drop(&mut self) {
        // This thread's magazines of the arena go back to the depots now; other threads'
        // when they exit or next look for a table.
        context::drop_table(self);
        let in_use = self.bytes_in_use();
        match &self.checker {
            Some(ch) => {
                for e in ch.verify("arena drop") {
                    self.error_count.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(arena = %self.name, "kernel memory allocator: {e}");
                    eprintln!("kernel memory allocator: arena '{}': {e}", self.name);
                }
                let (live, first) = ch.live();
                if live > 0 {
                    let at = first.map(|s| format!(", the first allocated at {s}")).unwrap_or_default();
                    tracing::error!(arena = %self.name, live, in_use, "arena dropped with buffers outstanding");
                    eprintln!(
                        "kernel memory allocator: arena '{}' dropped with {live} buffers ({in_use} bytes) still allocated{at}; they are leaked, not freed",
                        self.name
                    );
                }
                ch.release_all();
            }
            None if in_use > 0 => {
                tracing::error!(arena = %self.name, in_use, "arena dropped with buffers outstanding");
                eprintln!(
                    "kernel memory allocator: arena '{}' dropped with {in_use} bytes still allocated; its slabs are leaked, not freed",
                    self.name
                );
                self.caches.iter().for_each(|c| c.release_depot(true));
            }
            // The caches release their slabs when the last thread holding magazines of
            // theirs lets go (this one now; others when they exit).
            None => self.caches.iter().for_each(|c| c.release_depot(false)),
        }
    }
}
