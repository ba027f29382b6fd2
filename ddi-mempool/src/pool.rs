//! The pool itself: the reserve, the wait queue, and the allocation, free, resize and
//! teardown algorithms of Linux `mm/mempool.c` (K4/K6 semantics; see the crate docs).

use crate::backends::Source;
use crate::counter::Outstanding;
use crate::error::MempoolError;
use crate::gfp::{__GFP_DIRECT_RECLAIM, __GFP_IO, __GFP_NOMEMALLOC, __GFP_NORETRY, __GFP_NOWARN, GFP_KERNEL, Gfp};
use crate::poison::{check_and_unpoison, poison};
use crate::sync::{AtomicUsize, Condvar, Mutex, Ordering, fence};
use ddi_kmem::Response;
use std::ffi::c_void;
use std::fmt;
use std::ptr::{self, NonNull};
use std::time::Duration;

/// The element-allocation function, Linux `mempool_alloc_t`:
/// `void *(*)(gfp_t gfp_mask, void *pool_data)`. It returns a new element or NULL.
pub type MempoolAllocFn = dyn Fn(Gfp, *mut c_void) -> *mut c_void + Send + Sync;

/// The element-freeing function, Linux `mempool_free_t`:
/// `void (*)(void *element, void *pool_data)`. The pool calls it only with elements it got
/// from the allocation function or through [`mempool_free`](crate::mempool_free).
pub type MempoolFreeFn = dyn Fn(*mut c_void, *mut c_void) + Send + Sync;

/// How long a sleeping `mempool_alloc` waits for a freed element before it tries the
/// allocation function again: Linux `io_schedule_timeout(5*HZ)`, "a workaround for some DM
/// problems in 2.6.18" that the 2025 rework keeps on purpose, since memory pressure may ease
/// without any element coming back.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// What [`mempool_destroy`](crate::mempool_destroy) does about elements still allocated from
/// the pool: the kernel changed its mind between 2.6 and 4.x, so each pool chooses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DestroyCheck {
    /// Linux 4.x and later: the reserve is freed and the outstanding elements are only
    /// reported (a `tracing` warning); they are the caller's to free with their backend, never
    /// with `mempool_free` on the destroyed pool. The default.
    #[default]
    Allowed,
    /// Linux 2.6: "The caller has to guarantee that all elements have been returned to the
    /// pool" and `BUG_ON(pool->curr_nr != pool->min_nr)`. The reserve is still freed, then the
    /// C-shaped teardown ([`mempool_destroy`](crate::mempool_destroy),
    /// [`mempool_exit`](crate::mempool_exit)) and dropping the pool panic, while
    /// [`Mempool::try_exit`] returns [`MempoolError::Outstanding`].
    Bug,
}

/// A pool's element functions and the data they get.
struct Backend {
    /// The built-in backend, or the user's functions.
    source: Source,
    pool_data: *mut c_void,
    /// The element size poisoned in checking mode, or `None` when not poisoning (custom
    /// backends, whose element size the pool does not know).
    poison: Option<usize>,
    /// What a poison mismatch does: the response of the arena the pool was created in.
    response: Response,
}

/// The state under the pool's lock (Linux `spinlock_t lock` and what it guards).
#[derive(Debug)]
struct Reserve {
    /// The reserved elements, a stack: the element freed last is handed out first (Linux
    /// `elements[curr_nr++]` / `elements[--curr_nr]`). Its capacity is kept at least
    /// `max(1, min_nr)`, so pushing never allocates.
    elements: Vec<NonNull<c_void>>,
    /// Linux `min_nr`. Zero is allowed at creation (Linux 6.x): such a pool still keeps one
    /// element, so that a waiter is woken by the next free.
    min_nr: usize,
    /// Threads sleeping in `mempool_alloc` (Linux `wq_has_sleeper`).
    waiters: usize,
}

/// The mask of `mempool_alloc`'s first round: the caller's plus `__GFP_NOMEMALLOC`,
/// `__GFP_NORETRY`, `__GFP_NOWARN`, without `__GFP_DIRECT_RECLAIM` and `__GFP_IO` (Linux
/// `gfp_temp`). Bit operations only; with a constant mask they fold away.
#[inline]
fn first_round(gfp: Gfp) -> Gfp {
    (gfp | __GFP_NOMEMALLOC | __GFP_NORETRY | __GFP_NOWARN).without(__GFP_DIRECT_RECLAIM | __GFP_IO)
}

/// The panic of every use of an uninitialized pool, out of line.
#[cold]
#[inline(never)]
#[track_caller]
fn uninitialized() -> ! {
    panic!("mempool: use of an uninitialized (or exited) pool")
}

/// How many elements the reserve refills to: `min_nr`, or one for a zero-minimum pool (Linux
/// 6.x "support zero minimum pool").
#[inline]
fn fill_target(min_nr: usize) -> usize {
    min_nr.max(1)
}

/// A Linux memory pool, `mempool_t`: a guaranteed reserve of preallocated elements in front of
/// an allocation function.
///
/// Made by [`mempool_create`](crate::mempool_create) (boxed, as the C function returns a
/// pointer), or embedded in another structure with [`Mempool::new`] and
/// [`mempool_init`](crate::mempool_init). The pool is `Sync`: allocate and free from any
/// thread through `&Mempool`. Dropping an initialized pool frees its reserve, as
/// [`mempool_exit`](crate::mempool_exit) does.
///
/// See the crate documentation for the algorithm and [`MempoolBuilder`] for the per-pool
/// settings (wait timeout, destroy check, poisoning).
pub struct Mempool {
    reserve: Mutex<Reserve>,
    /// `reserve.elements.len()`, written under the lock, read without it by `free`'s refill
    /// test (Linux `READ_ONCE(pool->curr_nr)`).
    curr_nr: AtomicUsize,
    /// `reserve.min_nr`, written under the lock, read without it by `free`.
    min_nr: AtomicUsize,
    /// Linux `wait_queue_head_t wait`.
    wait: Condvar,
    /// Elements handed out minus elements freed: what destroy reports. Counted per thread
    /// (`counter.rs`), so the fast path has no shared read-modify-write.
    outstanding: Outstanding,
    backend: Option<Backend>,
    timeout: Duration,
    destroy_check: DestroyCheck,
    /// Poison reports kept in report-and-continue mode.
    errors: Mutex<Vec<MempoolError>>,
}

// SAFETY: the raw pointers a pool holds are `pool_data`, which it only passes back to the
// user's `Send + Sync` functions (dereferencing it is their unsafe business, as in C), and the
// reserved elements, which the pool owns exclusively while they sit in the reserve (under the
// lock) and hands to exactly one caller when they leave it.
unsafe impl Send for Mempool {}
// SAFETY: as for `Send`; all shared state is behind the lock or atomic.
unsafe impl Sync for Mempool {}

impl fmt::Debug for Mempool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mempool")
            .field("initialized", &self.is_initialized())
            .field("min_nr", &self.min_nr())
            .field("curr_nr", &self.curr_nr())
            .field("outstanding", &self.outstanding())
            .field("timeout", &self.timeout)
            .field("destroy_check", &self.destroy_check)
            .finish()
    }
}

impl Default for Mempool {
    fn default() -> Self {
        Self::new()
    }
}

/// Per-pool settings, then creation. `Mempool::builder(min_nr)` starts one.
///
/// # Examples
/// ```
/// use ddi_mempool::{DestroyCheck, GFP_KERNEL, Mempool};
/// use std::time::Duration;
///
/// let pool = Mempool::builder(4)
///     .timeout(Duration::from_millis(10))
///     .destroy_check(DestroyCheck::Bug)
///     .kmalloc(256)
///     .expect("preallocation");
/// let p = pool.alloc(GFP_KERNEL);
/// // SAFETY: `p` came from this pool and is freed once.
/// unsafe { pool.free(p) };
/// ```
#[derive(Clone, Debug)]
#[must_use = "a builder does nothing until a create or init method is called"]
pub struct MempoolBuilder {
    pub(crate) min_nr: usize,
    pub(crate) gfp: Gfp,
    pub(crate) timeout: Duration,
    pub(crate) destroy_check: DestroyCheck,
    pub(crate) poisoning: Option<bool>,
}

impl MempoolBuilder {
    /// The mask the reserve is preallocated with (Linux `mempool_create_node`'s `gfp_mask`).
    /// Default [`GFP_KERNEL`], which under a ddi-kmem budget waits for room; a non-sleeping
    /// mask lets creation fail instead.
    pub fn gfp(mut self, gfp: Gfp) -> Self {
        self.gfp = gfp;
        self
    }

    /// How long a sleeping allocation waits for a free before retrying the allocation
    /// function. Default [`DEFAULT_TIMEOUT`] (Linux `5*HZ`).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Whether destroying the pool with elements outstanding is allowed (Linux 4.x and later,
    /// the default) or a bug (Linux 2.6).
    pub fn destroy_check(mut self, check: DestroyCheck) -> Self {
        self.destroy_check = check;
        self
    }

    /// Checking mode for the built-in kmalloc, page and slab pools: poison reserved elements
    /// and check them on the way out. Default: on when the creating thread's ddi-kmem arena
    /// checks (as Linux poisons under `CONFIG_SLUB_DEBUG_ON`), except for slab pools, where it
    /// is off unless set: poisoning overwrites constructed objects, so turn it on only over a
    /// cache without a constructor. Custom pools are never poisoned.
    pub fn poisoning(mut self, on: bool) -> Self {
        self.poisoning = Some(on);
        self
    }

    /// Creates a pool over custom element functions, as
    /// [`mempool_create_node`](crate::mempool_create_node) with these settings.
    pub fn create<A, F>(self, alloc_fn: A, free_fn: F, pool_data: *mut c_void) -> Result<Box<Mempool>, MempoolError>
    where
        A: Fn(Gfp, *mut c_void) -> *mut c_void + Send + Sync + 'static,
        F: Fn(*mut c_void, *mut c_void) + Send + Sync + 'static,
    {
        let mut pool = Box::new(Mempool::new());
        self.init(&mut pool, alloc_fn, free_fn, pool_data)?;
        Ok(pool)
    }

    /// Initializes an embedded pool over custom element functions, as
    /// [`mempool_init`](crate::mempool_init) with these settings.
    pub fn init<A, F>(
        self,
        pool: &mut Mempool,
        alloc_fn: A,
        free_fn: F,
        pool_data: *mut c_void,
    ) -> Result<(), MempoolError>
    where
        A: Fn(Gfp, *mut c_void) -> *mut c_void + Send + Sync + 'static,
        F: Fn(*mut c_void, *mut c_void) + Send + Sync + 'static,
    {
        let backend = Backend {
            source: Source::Custom { alloc: Box::new(alloc_fn), free: Box::new(free_fn) },
            pool_data,
            poison: None,
            response: Response::Panic,
        };
        self.init_backend(pool, backend)
    }

    /// Initializes a pool over a built-in backend whose elements are `size` bytes (poisoned in
    /// checking mode).
    pub(crate) fn init_builtin(
        self,
        pool: &mut Mempool,
        source: Source,
        pool_data: *mut c_void,
        size: usize,
    ) -> Result<(), MempoolError> {
        let arena = ddi_kmem::current_arena();
        let poisoning = self.poisoning.unwrap_or_else(|| arena.checking().any());
        let backend =
            Backend { source, pool_data, poison: (poisoning && size > 0).then_some(size), response: arena.response() };
        self.init_backend(pool, backend)
    }

    /// Linux `mempool_init_node`: set up, then preallocate `max(1, min_nr)` elements; on a
    /// failure, free what was got (`mempool_exit`) and fail with `-ENOMEM`.
    fn init_backend(self, pool: &mut Mempool, backend: Backend) -> Result<(), MempoolError> {
        if pool.backend.is_some() {
            return Err(MempoolError::AlreadyInitialized);
        }
        let wanted = fill_target(self.min_nr);
        pool.timeout = self.timeout;
        pool.destroy_check = self.destroy_check;
        pool.outstanding.allocate_slots();
        pool.outstanding.take();
        {
            let r = pool.reserve.get_mut();
            r.elements = Vec::new();
            if r.elements.try_reserve_exact(wanted).is_err() {
                return Err(MempoolError::NoMemory { wanted, got: 0 });
            }
            r.min_nr = self.min_nr;
        }
        pool.min_nr.store(self.min_nr, Ordering::Relaxed);
        pool.backend = Some(backend);
        for got in 0..wanted {
            let b = pool.backend.as_ref().expect("just set");
            let Some(e) = NonNull::new(b.source.alloc(self.gfp, b.pool_data)) else {
                tracing::debug!(min_nr = self.min_nr, got, gfp = %self.gfp, "mempool_init: preallocation failed");
                // Give the elements back without counting them as outstanding.
                pool.exit_inner();
                return Err(MempoolError::NoMemory { wanted, got });
            };
            if let Some(size) = b.poison {
                // SAFETY: a built-in backend's element is `size` writable bytes, and this one
                // was just allocated, so nobody else has it.
                unsafe { poison(e.as_ptr(), size) };
            }
            pool.reserve.get_mut().elements.push(e);
        }
        pool.curr_nr.store(wanted, Ordering::Relaxed);
        Ok(())
    }
}

impl Mempool {
    /// A zeroed, uninitialized pool (Linux: allocated with `kzalloc`), for
    /// [`mempool_init`](crate::mempool_init). Using it before initialization panics;
    /// [`mempool_exit`](crate::mempool_exit) and drop accept it.
    pub fn new() -> Self {
        Mempool {
            reserve: Mutex::new(Reserve { elements: Vec::new(), min_nr: 0, waiters: 0 }),
            curr_nr: AtomicUsize::new(0),
            min_nr: AtomicUsize::new(0),
            wait: Condvar::new(),
            outstanding: Outstanding::default(),
            backend: None,
            timeout: DEFAULT_TIMEOUT,
            destroy_check: DestroyCheck::Allowed,
            errors: Mutex::new(Vec::new()),
        }
    }

    /// Starts a [`MempoolBuilder`] for a pool that guarantees `min_nr` elements.
    pub fn builder(min_nr: usize) -> MempoolBuilder {
        MempoolBuilder {
            min_nr,
            gfp: GFP_KERNEL,
            timeout: DEFAULT_TIMEOUT,
            destroy_check: DestroyCheck::Allowed,
            poisoning: None,
        }
    }

    /// Whether the pool has been initialized and not exited (Linux `mempool_initialized`).
    pub fn is_initialized(&self) -> bool {
        self.backend.is_some()
    }

    /// Linux `min_nr`.
    pub fn min_nr(&self) -> usize {
        self.min_nr.load(Ordering::Relaxed)
    }

    /// Linux `curr_nr`: the elements in the reserve now.
    pub fn curr_nr(&self) -> usize {
        self.curr_nr.load(Ordering::Relaxed)
    }

    /// Whether the reserve is full (Linux `mempool_is_saturated`: `curr_nr >= min_nr`).
    pub fn is_saturated(&self) -> bool {
        self.curr_nr() >= self.min_nr()
    }

    /// Elements handed out by this pool and not yet freed to it.
    ///
    /// Counted per thread and summed here: exact when no allocation or free runs at the same
    /// time (after joining the threads that used the pool, say); while other threads allocate
    /// and free, a snapshot that may be off by the calls in flight.
    pub fn outstanding(&self) -> isize {
        self.outstanding.sum()
    }

    /// The wait timeout of sleeping allocations.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The poison reports kept so far (checking mode, in an arena that reports and continues).
    pub fn errors(&self) -> Vec<MempoolError> {
        self.errors.lock().clone()
    }

    #[track_caller]
    #[inline]
    fn backend(&self) -> &Backend {
        match &self.backend {
            Some(b) => b,
            None => uninitialized(),
        }
    }

    /// An element leaves the reserve: check its poison (Linux `remove_element`).
    #[inline]
    fn leaving_reserve(&self, b: &Backend, e: NonNull<c_void>) {
        if let Some(size) = b.poison {
            self.check_poison(b, e, size);
        }
    }

    /// [`Mempool::leaving_reserve`] of a poisoned pool, out of line.
    #[inline(never)]
    fn check_poison(&self, b: &Backend, e: NonNull<c_void>, size: usize) {
        // SAFETY: a poisoned pool's elements are `size` bytes (built-in backend), and `e` was
        // just taken out of the reserve, so this thread owns it.
        let Some(report) = (unsafe { check_and_unpoison(e.as_ptr(), size) }) else { return };
        tracing::error!("{report}");
        match b.response {
            Response::Panic => panic!("{report}"),
            Response::Report => self.errors.lock().push(report),
        }
    }

    /// Allocates an element; see [`mempool_alloc`](crate::mempool_alloc).
    ///
    /// The fast path, inlined into the caller: the first round asks the backend with the mask
    /// Linux uses for it, and returns what it got. Everything else is out of line (`alloc_slow`).
    // `inline(always)`, as the other fast-path pieces: a few instructions around the backend
    // call. Left to the inliner, a caller with several call sites got an out-of-line copy (a
    // call more, and the mask no longer a constant): 25 instructions more a pair.
    #[inline(always)]
    pub fn alloc(&self, gfp: Gfp) -> *mut c_void {
        let b = self.backend();
        // The first round's mask: the caller's, plus "don't allocate emergency reserves",
        // "don't loop in __alloc_pages", "failures are OK", and without direct reclaim or I/O.
        // It does not depend on the calling context (interrupt context only takes away direct
        // reclaim, which this round lacks anyway), so the context is asked only if this fails.
        let gfp_temp = first_round(gfp);
        let element = b.source.alloc(gfp_temp, b.pool_data);
        if !element.is_null() {
            self.outstanding.add(1);
            return element;
        }
        self.alloc_slow(b, gfp, gfp_temp)
    }

    /// The rest of [`Mempool::alloc`] once the first round failed: the reserve, then, if it is
    /// empty, the full mask and the wait.
    #[cold]
    #[inline(never)]
    fn alloc_slow(&self, b: &Backend, gfp: Gfp, gfp_temp: Gfp) -> *mut c_void {
        let mut r = self.reserve.lock();
        if let Some(e) = self.pop_reserved(&mut r) {
            drop(r);
            return self.hand_out_reserved(b, e);
        }
        drop(r);
        self.alloc_retry(b, gfp, gfp_temp)
    }

    /// [`Mempool::alloc_slow`] once the reserve was found empty: the loop of Linux
    /// `mempool_alloc` from "take the lock". Its first round looks at the reserve again (a
    /// second lock round where Linux has one, on this path only).
    #[inline(never)]
    fn alloc_retry(&self, b: &Backend, gfp: Gfp, mut gfp_temp: Gfp) -> *mut c_void {
        let may_sleep = gfp.may_sleep_here();
        let mut gfp_mask = gfp | __GFP_NOMEMALLOC | __GFP_NORETRY | __GFP_NOWARN;
        if !may_sleep {
            // Interrupt context: whatever the caller said, neither we nor alloc_fn may sleep.
            gfp_mask = gfp_mask.without(__GFP_DIRECT_RECLAIM);
        }
        debug_assert_eq!(gfp_temp, gfp_mask.without(__GFP_DIRECT_RECLAIM | __GFP_IO), "internal: first-round mask");
        loop {
            let mut r = self.reserve.lock();
            if let Some(e) = self.pop_reserved(&mut r) {
                drop(r);
                return self.hand_out_reserved(b, e);
            }
            if gfp_temp != gfp_mask {
                // "If alloc failed with that and @pool was empty, retry immediately."
                drop(r);
                gfp_temp = gfp_mask;
            } else if !may_sleep {
                drop(r);
                tracing::debug!(gfp = %gfp, "mempool_alloc: backing allocator failed, reserve empty, may not sleep: NULL");
                return ptr::null_mut();
            } else {
                // Registered and waiting under the lock that `free` takes to refill, so a free
                // between our empty check and the wait cannot be missed (Linux
                // `prepare_to_wait` under the lock).
                r.waiters += 1;
                let timed_out = self.wait.wait_for(&mut r, self.timeout);
                r.waiters -= 1;
                drop(r);
                tracing::debug!(timed_out, "mempool_alloc: slept on an empty reserve; retrying");
            }
            // The backing allocator again (with the full mask now), then the reserve.
            let element = b.source.alloc(gfp_temp, b.pool_data);
            if !element.is_null() {
                self.outstanding.add(1);
                return element;
            }
        }
    }

    /// Takes the element freed last from the reserve, under its lock (Linux `remove_element`).
    #[inline]
    fn pop_reserved(&self, r: &mut Reserve) -> Option<NonNull<c_void>> {
        let e = r.elements.pop()?;
        self.curr_nr.store(r.elements.len(), Ordering::Relaxed);
        Some(e)
    }

    /// Hands out an element just taken from the reserve, after the lock is dropped.
    #[inline]
    fn hand_out_reserved(&self, b: &Backend, e: NonNull<c_void>) -> *mut c_void {
        // Linux `smp_wmb()`, "paired with rmb in mempool_free()": the curr_nr store of
        // `pop_reserved` is ordered before whatever store hands `e` to another thread, even a
        // Relaxed one; the Acquire fence in `free` completes the pair, so a thread that frees
        // `e` sees this decrement and refills the reserve.
        fence(Ordering::Release);
        self.leaving_reserve(b, e);
        self.outstanding.add(1);
        e.as_ptr()
    }

    /// Takes an element from the reserve only; see
    /// [`mempool_alloc_preallocated`](crate::mempool_alloc_preallocated).
    pub fn alloc_preallocated(&self) -> *mut c_void {
        let b = self.backend();
        let mut r = self.reserve.lock();
        let Some(e) = self.pop_reserved(&mut r) else {
            drop(r);
            tracing::debug!("mempool_alloc_preallocated: reserve empty: NULL");
            return ptr::null_mut();
        };
        drop(r);
        self.hand_out_reserved(b, e)
    }

    /// Frees an element; see [`mempool_free`](crate::mempool_free).
    ///
    /// The fast path, inlined into the caller: with the reserve full, one unlocked test and the
    /// backend's free. Refilling is out of line (`refill`).
    ///
    /// # Safety
    /// As [`mempool_free`](crate::mempool_free).
    // `inline(always)`: see `alloc`.
    #[inline(always)]
    pub unsafe fn free(&self, element: *mut c_void) {
        let Some(e) = NonNull::new(element) else { return };
        let b = self.backend();
        self.outstanding.add(-1);
        // Linux `smp_rmb()`: pairs with the Release fence in `alloc`, so the curr_nr we read is
        // from after the allocation of `element`, even if the element reached this thread
        // without synchronization of its own. Then the unlocked test: it is guaranteed to
        // trigger if curr_nr + #allocated == min_nr, which is all correctness needs (waiters
        // exist only when curr_nr is 0, and then every free refills and wakes).
        fence(Ordering::Acquire);
        if self.curr_nr.load(Ordering::Relaxed) < fill_target(self.min_nr.load(Ordering::Relaxed)) && self.refill(b, e)
        {
            return;
        }
        // SAFETY: `e` came from this pool's backend (or one `free_fn` accepts) and the caller
        // gives it up (contract of `mempool_free`); the reserve did not take it.
        unsafe { b.source.free(e, b.pool_data) }
    }

    /// `free`'s refill under the lock: puts `e` in the reserve and wakes the waiters, unless
    /// the reserve filled up meanwhile (returns `false`: `e` is still the caller's to free).
    #[cold]
    #[inline(never)]
    fn refill(&self, b: &Backend, e: NonNull<c_void>) -> bool {
        if let Some(size) = b.poison {
            // SAFETY: a poisoned pool's elements are `size` bytes (built-in backend), and
            // the caller of `free` gives `e` up (contract), so this thread owns it.
            unsafe { poison(e.as_ptr(), size) };
        }
        let mut r = self.reserve.lock();
        if r.elements.len() < fill_target(r.min_nr) {
            r.elements.push(e);
            self.curr_nr.store(r.elements.len(), Ordering::Relaxed);
            let wake = r.waiters > 0;
            drop(r);
            if wake {
                self.wait.notify_all();
            }
            return true;
        }
        // Raced with another free or a shrink: the reserve is full after all.
        false
    }

    /// Changes the guaranteed minimum; see [`mempool_resize`](crate::mempool_resize).
    pub fn resize(&self, new_min_nr: usize) -> Result<(), MempoolError> {
        if new_min_nr == 0 {
            return Err(MempoolError::ZeroMinimum);
        }
        let b = self.backend();
        let mut r = self.reserve.lock();
        if new_min_nr <= r.min_nr {
            while new_min_nr < r.elements.len() {
                let e = r.elements.pop().expect("len > new_min_nr >= 1");
                self.curr_nr.store(r.elements.len(), Ordering::Relaxed);
                drop(r);
                self.leaving_reserve(b, e);
                // SAFETY: `e` left the reserve, which owned it: an element of this backend.
                unsafe { b.source.free(e, b.pool_data) };
                r = self.reserve.lock();
            }
            r.min_nr = new_min_nr;
            self.min_nr.store(new_min_nr, Ordering::Relaxed);
            return Ok(());
        }
        // Grow: make room for the pointers first (Linux `kmalloc_array`, the only failure).
        let extra = new_min_nr - r.elements.len();
        if r.elements.try_reserve(extra).is_err() {
            return Err(MempoolError::NoMemory { wanted: new_min_nr, got: r.elements.len() });
        }
        r.min_nr = new_min_nr;
        self.min_nr.store(new_min_nr, Ordering::Relaxed);
        while r.elements.len() < r.min_nr {
            drop(r);
            let Some(e) = NonNull::new(b.source.alloc(GFP_KERNEL, b.pool_data)) else {
                // Best effort: later frees fill the rest.
                tracing::debug!(new_min_nr, "mempool_resize: allocation failed; frees will fill the reserve");
                return Ok(());
            };
            if let Some(size) = b.poison {
                // SAFETY: a built-in backend's element of `size` bytes, just allocated.
                unsafe { poison(e.as_ptr(), size) };
            }
            r = self.reserve.lock();
            if r.elements.len() < r.min_nr {
                r.elements.push(e);
                self.curr_nr.store(r.elements.len(), Ordering::Relaxed);
                let wake = r.waiters > 0;
                if wake {
                    // A waiter may be asleep on the empty reserve we just refilled.
                    self.wait.notify_all();
                }
            } else {
                // Raced with a shrink: give it back.
                drop(r);
                // SAFETY: `e` was just allocated from this backend and nobody else has it.
                unsafe { b.source.free(e, b.pool_data) };
                return Ok(());
            }
        }
        Ok(())
    }

    /// Frees the reserve and returns the pool to the uninitialized state; returns the number
    /// of elements still outstanding. Never panics.
    fn exit_inner(&mut self) -> isize {
        let Some(b) = self.backend.take() else { return 0 };
        let elements = std::mem::take(&mut self.reserve.get_mut().elements);
        for e in elements.into_iter().rev() {
            if let Some(size) = b.poison {
                // SAFETY: a built-in backend's element of `size` bytes, owned by the reserve,
                // which `&mut self` gives us exclusively.
                if let Some(report) = unsafe { check_and_unpoison(e.as_ptr(), size) } {
                    tracing::error!("{report}");
                    self.errors.get_mut().push(report);
                }
            }
            // SAFETY: `e` was in the reserve (an element of this backend), which gives it up.
            unsafe { b.source.free(e, b.pool_data) };
        }
        let r = self.reserve.get_mut();
        r.min_nr = 0;
        self.curr_nr.store(0, Ordering::Relaxed);
        self.min_nr.store(0, Ordering::Relaxed);
        let outstanding = self.outstanding.take();
        if outstanding != 0 {
            tracing::warn!(outstanding, check = ?self.destroy_check, "mempool destroyed with elements outstanding");
        }
        outstanding
    }

    /// Frees the reserve (Linux `mempool_exit`) and reports outstanding elements: `Ok` with
    /// their number, or under [`DestroyCheck::Bug`] an error if there are any. The pool is
    /// uninitialized afterwards either way.
    pub fn try_exit(&mut self) -> Result<isize, MempoolError> {
        let outstanding = self.exit_inner();
        if outstanding != 0 && self.destroy_check == DestroyCheck::Bug {
            return Err(MempoolError::Outstanding { outstanding });
        }
        Ok(outstanding)
    }
}

impl Drop for Mempool {
    fn drop(&mut self) {
        if let Err(e) = self.try_exit() {
            if !std::thread::panicking() {
                panic!("{e}");
            }
        }
    }
}
