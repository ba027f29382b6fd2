//! The `mm/mempool.c` interface under its C names.
//!
//! Thin functions over [`Mempool`], so a C module ports line by line: a pool is a
//! `Box<Mempool>` where C has `mempool_t *` (`None` for NULL), elements are `*mut c_void`,
//! and the element functions are closures with the C callback signatures.

use crate::error::MempoolError;
use crate::gfp::{GFP_KERNEL, Gfp};
use crate::pool::Mempool;
use ddi_kmem::KmemCache;
use std::ffi::c_void;
use std::sync::Arc;

/// Creates a memory pool.
///
/// # Arguments
/// - `min_nr`: the minimum number of elements guaranteed to be allocated for this pool.
/// - `alloc_fn`: the element-allocation function, `mempool_alloc_t`: called with a mask and
///   `pool_data`, returns an element or NULL.
/// - `free_fn`: the element-freeing function, `mempool_free_t`: called with an element and
///   `pool_data`.
/// - `pool_data`: optional private data passed to both functions.
///
/// # Return
/// The pool, holding `max(1, min_nr)` preallocated elements; or `None` if `alloc_fn` failed
/// while preallocating, in which case every element it had returned was freed with `free_fn`.
///
/// # Context
/// User context: preallocation uses [`GFP_KERNEL`] and may sleep. "Both the alloc_fn and the
/// free_fn functions might sleep - as long as the mempool_alloc function is not called from
/// IRQ contexts" (`mempool_create(9)`). The pool waits 5 s between retries and allows destroy
/// with elements outstanding; [`Mempool::builder`] chooses otherwise.
///
/// # Compatibility
/// Linux `mempool_create` (2.6 to 6.x). A zero `min_nr` is accepted and keeps one element, as
/// Linux 6.x ("support zero minimum pool"); 2.6 and 4.x had no such case. Where C passes
/// function pointers and `void *pool_data`, the closures may also capture their data; the
/// pointer is still passed for line-by-line ports.
///
/// # Examples
/// ```
/// use ddi_mempool::{GFP_KERNEL, mempool_alloc, mempool_create, mempool_destroy, mempool_free};
/// use ddi_kmem::{kmem_alloc, kmem_free};
/// use std::ffi::c_void;
///
/// let pool = mempool_create(
///     2,
///     |gfp, _data| kmem_alloc(64, gfp.km_flags()),
///     // SAFETY: the pool frees only elements from `kmem_alloc(64)`, once each.
///     |element, _data| unsafe { kmem_free(element, 64) },
///     std::ptr::null_mut::<c_void>(),
/// )
/// .expect("preallocated");
/// let p = mempool_alloc(&pool, GFP_KERNEL);
/// assert!(!p.is_null());
/// // SAFETY: `p` came from this pool and is freed once.
/// unsafe { mempool_free(p, &pool) };
/// mempool_destroy(Some(pool));
/// ```
pub fn mempool_create<A, F>(min_nr: usize, alloc_fn: A, free_fn: F, pool_data: *mut c_void) -> Option<Box<Mempool>>
where
    A: Fn(Gfp, *mut c_void) -> *mut c_void + Send + Sync + 'static,
    F: Fn(*mut c_void, *mut c_void) + Send + Sync + 'static,
{
    mempool_create_node(min_nr, alloc_fn, free_fn, pool_data, GFP_KERNEL, -1)
}

/// Creates a memory pool, preallocating with a given mask.
///
/// # Arguments
/// As [`mempool_create`], and:
/// - `gfp_mask`: the mask the reserve is preallocated with; a non-sleeping one lets creation
///   fail rather than wait.
/// - `node_id`: the NUMA node; ignored (`NUMA_NO_NODE`, -1, is the usual value).
///
/// # Return
/// As [`mempool_create`].
///
/// # Context
/// User context if `gfp_mask` may sleep; any context otherwise.
///
/// # Compatibility
/// Linux `mempool_create_node` (2.6.16 and later; `gfp_mask` since 2.6.25).
pub fn mempool_create_node<A, F>(
    min_nr: usize,
    alloc_fn: A,
    free_fn: F,
    pool_data: *mut c_void,
    gfp_mask: Gfp,
    node_id: i32,
) -> Option<Box<Mempool>>
where
    A: Fn(Gfp, *mut c_void) -> *mut c_void + Send + Sync + 'static,
    F: Fn(*mut c_void, *mut c_void) + Send + Sync + 'static,
{
    let _ = node_id;
    Mempool::builder(min_nr).gfp(gfp_mask).create(alloc_fn, free_fn, pool_data).ok()
}

/// Initializes a memory pool embedded in another structure.
///
/// # Arguments
/// - `pool`: an uninitialized pool ([`Mempool::new`], or one after [`mempool_exit`]).
/// - the others: as [`mempool_create`].
///
/// # Return
/// `Ok(())`, or [`MempoolError::NoMemory`] (Linux `-ENOMEM`) if preallocation failed, in which
/// case what was allocated has been freed and the pool is uninitialized again;
/// [`MempoolError::AlreadyInitialized`] if `pool` was in use.
///
/// # Context
/// As [`mempool_create`].
///
/// # Compatibility
/// Linux `mempool_init` (4.18 and later): "Like mempool_create(), but initializes the pool in
/// (i.e. embedded in another structure)". Linux does not detect a second initialization.
///
/// # Examples
/// ```
/// use ddi_mempool::{Mempool, mempool_exit, mempool_init};
/// use std::ffi::c_void;
///
/// struct Device { pool: Mempool }
/// let mut dev = Device { pool: Mempool::new() };
/// mempool_init(
///     &mut dev.pool,
///     1,
///     |_gfp, _data| std::ptr::null_mut(), // this backend never has memory to spare
///     |_element, _data| {},
///     std::ptr::null_mut::<c_void>(),
/// )
/// .expect_err("preallocation fails: the backend returns NULL");
/// assert!(!dev.pool.is_initialized());
/// mempool_exit(&mut dev.pool); // harmless on an uninitialized pool
/// ```
pub fn mempool_init<A, F>(
    pool: &mut Mempool,
    min_nr: usize,
    alloc_fn: A,
    free_fn: F,
    pool_data: *mut c_void,
) -> Result<(), MempoolError>
where
    A: Fn(Gfp, *mut c_void) -> *mut c_void + Send + Sync + 'static,
    F: Fn(*mut c_void, *mut c_void) + Send + Sync + 'static,
{
    Mempool::builder(min_nr).init(pool, alloc_fn, free_fn, pool_data)
}

/// Frees the reserve of an embedded pool.
///
/// # Arguments
/// - `pool`: an initialized pool, or an uninitialized one (nothing happens).
///
/// # Return
/// The number of elements still outstanding (allocated from the pool and not freed to it);
/// they are reported with a `tracing` warning and are the caller's to free with the backend.
/// Under [`DestroyCheck::Bug`](crate::DestroyCheck::Bug) outstanding elements are a bug: the
/// reserve is freed, then this panics.
///
/// # Context
/// Sleeps only if `free_fn` sleeps. The `&mut` borrow guarantees nobody uses the pool
/// meanwhile, which Linux leaves to the caller.
///
/// # Compatibility
/// Linux `mempool_exit` (4.18 and later): "May be called on a zeroed but uninitialized
/// mempool". On the outstanding-element check see [`mempool_destroy`].
pub fn mempool_exit(pool: &mut Mempool) -> isize {
    match pool.try_exit() {
        Ok(n) => n,
        Err(e) => panic!("{e}"),
    }
}

/// Destroys a memory pool.
///
/// # Arguments
/// - `pool`: the pool, or `None` (nothing happens).
///
/// # Return
/// As [`mempool_exit`]: the number of elements still outstanding.
///
/// # Context
/// Sleeps only if `free_fn` sleeps.
///
/// # Compatibility
/// - Linux 2.6: "The caller has to guarantee that all elements have been returned to the pool
///   (ie: freed) prior to calling mempool_destroy()", enforced by
///   `BUG_ON(pool->curr_nr != pool->min_nr)`: choose
///   [`DestroyCheck::Bug`](crate::DestroyCheck::Bug) for that.
/// - Linux 4.x and later: no check; "Free all reserved elements in @pool and @pool itself".
///   Outstanding elements are simply unknown to the pool; this crate counts and reports them
///   ([`DestroyCheck::Allowed`](crate::DestroyCheck::Allowed), the default).
/// - Linux 6.x accepts NULL, as `None` here.
///
/// Freeing an outstanding element to the destroyed pool is impossible here (the pool is
/// gone); in Linux it is a use-after-free.
pub fn mempool_destroy(pool: Option<Box<Mempool>>) -> isize {
    match pool {
        None => 0,
        Some(mut pool) => mempool_exit(&mut pool),
    }
}

/// Allocates an element from a memory pool.
///
/// # Arguments
/// - `pool`: the pool.
/// - `gfp_mask`: [`GFP_KERNEL`], [`GFP_NOFS`](crate::GFP_NOFS), [`GFP_NOIO`](crate::GFP_NOIO)
///   (may sleep) or [`GFP_ATOMIC`](crate::GFP_ATOMIC), [`GFP_NOWAIT`](crate::GFP_NOWAIT) (may
///   not).
///
/// # Return
/// An element. In order: `alloc_fn` without direct reclaim or I/O; else the element freed to
/// the reserve last; else `alloc_fn` again with the caller's mask; else, if the caller may
/// sleep, wait until an element is freed or the pool's timeout (5 s) passes and start over.
/// So it never fails in process context with a sleeping mask. NULL only when the caller may
/// not sleep (a non-sleeping mask, or ddi-kmem interrupt context whatever the mask) and both
/// `alloc_fn` and the reserve came up empty.
///
/// `alloc_fn` always sees `__GFP_NOMEMALLOC | __GFP_NORETRY | __GFP_NOWARN` added; the
/// built-in backends turn `__GFP_NORETRY` into `KM_NOSLEEP`, so they never wait on a ddi-kmem
/// budget here (the pool's own wait does), and failure injection can fail them.
///
/// # Context
/// Any context with a non-sleeping mask; user context with a sleeping one. In interrupt
/// context a sleeping mask is treated as non-sleeping (for `alloc_fn` too). MP-safe.
///
/// # Compatibility
/// Linux 4.x/6.x `mempool_alloc`: "this function only sleeps if the alloc_fn() function
/// sleeps or returns NULL. Note that due to preallocation, this function *never* fails when
/// called from process contexts." Differences by version:
/// - 2.6 had no immediate retry with the full mask: the first sleep switched to it, and it
///   slept only if the reserve was still empty after an `smp_mb()`.
/// - Late-2025 linux-next can return NULL to a sleeping caller after two rounds, contrary to
///   its own kernel-doc; this crate keeps the 4.x/6.x contract.
/// - `__GFP_ZERO` is not supported (Linux warns once); [`Gfp`] does not model it.
#[inline(always)]
pub fn mempool_alloc(pool: &Mempool, gfp_mask: Gfp) -> *mut c_void {
    pool.alloc(gfp_mask)
}

/// Allocates an element from the reserve only.
///
/// # Arguments
/// - `pool`: the pool.
///
/// # Return
/// The element freed to the reserve last, or NULL if the reserve is empty. `alloc_fn` is not
/// called.
///
/// # Context
/// Any; never sleeps.
///
/// # Compatibility
/// Linux `mempool_alloc_preallocated` (5.x and later): "It does not sleep and immediately
/// returns if no preallocated elements are available."
#[inline]
pub fn mempool_alloc_preallocated(pool: &Mempool) -> *mut c_void {
    pool.alloc_preallocated()
}

/// Returns an element to a memory pool.
///
/// # Arguments
/// - `element`: the element, or NULL (nothing happens).
/// - `pool`: the pool.
///
/// # Return
/// Nothing. While the reserve holds fewer than `min_nr` elements the element goes back to it
/// and sleeping allocators are woken; otherwise it is freed with `free_fn`. The pool does not
/// track where an element came from: every free refills the reserve first.
///
/// # Context
/// Any; sleeps only if `free_fn` sleeps. MP-safe.
///
/// # Compatibility
/// Linux `mempool_free` (2.6 to 6.x): the refill test is made without the lock ("testing
/// curr_nr < min_nr without locking achieves that and refilling as soon as possible is
/// desirable") and repeated under it; the barrier pairing is argued in `pool.rs`. 6.x wakes
/// only if someone sleeps (`wq_has_sleeper`), as here; 2.6 woke unconditionally.
///
/// # Safety
/// - `element` is NULL, or an element that `alloc_fn` could have returned and `free_fn` may
///   free: in practice one allocated from this pool (or another pool over the same backend)
///   and not freed since.
/// - `element` is not used after this call.
#[inline(always)]
pub unsafe fn mempool_free(element: *mut c_void, pool: &Mempool) {
    // SAFETY: forwarded contract.
    unsafe { pool.free(element) }
}

/// Changes the minimum number of elements of a memory pool.
///
/// # Arguments
/// - `pool`: the pool.
/// - `new_min_nr`: the new minimum, at least 1.
///
/// # Return
/// `Ok(())`, or [`MempoolError::ZeroMinimum`] for 0 (Linux `BUG_ON(new_min_nr <= 0)`), or
/// [`MempoolError::NoMemory`] (`-ENOMEM`) if the reserve's pointer array could not grow.
/// Shrinking frees the surplus reserve elements at once (outstanding elements are unaffected;
/// when freed they go to `free_fn`, the reserve being full). Growing calls `alloc_fn` with
/// [`GFP_KERNEL`] until the reserve is full or it fails; either way it succeeds, and later
/// frees fill the rest.
///
/// # Context
/// User context: it may sleep (with the built-in backends, `GFP_KERNEL` waits for room in a
/// ddi-kmem budget). `mempool_alloc` and `mempool_free` may run concurrently, from any thread.
///
/// # Compatibility
/// Linux 4.x and later `mempool_resize(pool, new_min_nr)`: "In the case of growing, it cannot
/// be guaranteed that the pool will be grown to the new size immediately, but new
/// mempool_free() calls will refill it." 2.6 took a third argument, the `gfp_mask` to grow
/// with. Linux forbids a concurrent `mempool_destroy`; the borrow checker does here.
pub fn mempool_resize(pool: &Mempool, new_min_nr: usize) -> Result<(), MempoolError> {
    pool.resize(new_min_nr)
}

/// Whether a pool is initialized.
///
/// # Arguments
/// - `pool`: the pool.
///
/// # Return
/// `true` between a successful [`mempool_init`] and [`mempool_exit`].
///
/// # Context
/// Any.
///
/// # Compatibility
/// Linux `mempool_initialized` (4.18 and later).
pub fn mempool_initialized(pool: &Mempool) -> bool {
    pool.is_initialized()
}

/// Whether a pool's reserve is full.
///
/// # Arguments
/// - `pool`: the pool.
///
/// # Return
/// `curr_nr >= min_nr`, read without the lock (a hint).
///
/// # Context
/// Any.
///
/// # Compatibility
/// Linux `mempool_is_saturated` (5.x and later).
pub fn mempool_is_saturated(pool: &Mempool) -> bool {
    pool.is_saturated()
}

/// Creates a pool of kmalloc'd elements.
///
/// # Arguments
/// - `min_nr`: as [`mempool_create`].
/// - `size`: the element size in bytes (1 to 131072, the largest ddi-kmem class).
///
/// # Return
/// As [`mempool_create`].
///
/// # Context
/// As [`mempool_create`]. Elements come from, and return to, the ddi-kmem arena current on
/// the creating thread, whichever thread allocates or frees them; its budget, context checks
/// and failure injection apply. In checking mode (the arena checks) reserved elements are
/// poisoned.
///
/// # Compatibility
/// Linux `mempool_create_kmalloc_pool` over `mempool_kmalloc`/`mempool_kfree`, with the size
/// as pool data. 2.6 also had `mempool_kzalloc`; use a custom pool for zeroed elements.
///
/// # Examples
/// ```
/// use ddi_kmem::{Arena, FailurePlan};
/// use ddi_mempool::{GFP_ATOMIC, mempool_alloc, mempool_create_kmalloc_pool, mempool_free};
///
/// let arena = Arena::builder().build();
/// let _in = arena.enter();
/// let pool = mempool_create_kmalloc_pool(1, 100).expect("preallocated");
/// arena.inject(FailurePlan::Always);
/// let a = mempool_alloc(&pool, GFP_ATOMIC); // the reserved element
/// assert!(!a.is_null());
/// assert!(mempool_alloc(&pool, GFP_ATOMIC).is_null()); // nothing left, may not sleep
/// // SAFETY: `a` came from this pool and is freed once.
/// unsafe { mempool_free(a, &pool) };
/// drop(pool);
/// assert_eq!(arena.bytes_in_use(), 0);
/// ```
pub fn mempool_create_kmalloc_pool(min_nr: usize, size: usize) -> Option<Box<Mempool>> {
    Mempool::builder(min_nr).kmalloc(size).ok()
}

/// Initializes an embedded pool of kmalloc'd elements.
///
/// # Arguments
/// - `pool`: an uninitialized pool.
/// - `min_nr`, `size`: as [`mempool_create_kmalloc_pool`].
///
/// # Return
/// As [`mempool_init`].
///
/// # Context
/// As [`mempool_create_kmalloc_pool`].
///
/// # Compatibility
/// Linux `mempool_init_kmalloc_pool` (4.18 and later).
pub fn mempool_init_kmalloc_pool(pool: &mut Mempool, min_nr: usize, size: usize) -> Result<(), MempoolError> {
    Mempool::builder(min_nr).init_kmalloc(pool, size)
}

/// Creates a pool of page blocks.
///
/// # Arguments
/// - `min_nr`: as [`mempool_create`].
/// - `order`: each element is `2^order` pages of 4096 bytes, from `get_free_pages`; at most
///   [`ddi_kmem::MAX_PAGE_ORDER`] (panics above).
///
/// # Return
/// As [`mempool_create`].
///
/// # Context
/// As [`mempool_create_kmalloc_pool`]; poisoning covers the whole block.
///
/// # Compatibility
/// Linux `mempool_create_page_pool` over `mempool_alloc_pages`/`mempool_free_pages`, with the
/// order as pool data. Linux elements are `struct page *`; here they are the block's address.
pub fn mempool_create_page_pool(min_nr: usize, order: u32) -> Option<Box<Mempool>> {
    Mempool::builder(min_nr).pages(order).ok()
}

/// Initializes an embedded pool of page blocks.
///
/// # Arguments
/// - `pool`: an uninitialized pool.
/// - `min_nr`, `order`: as [`mempool_create_page_pool`].
///
/// # Return
/// As [`mempool_init`].
///
/// # Context
/// As [`mempool_create_page_pool`].
///
/// # Compatibility
/// Linux `mempool_init_page_pool` (4.18 and later).
pub fn mempool_init_page_pool(pool: &mut Mempool, min_nr: usize, order: u32) -> Result<(), MempoolError> {
    Mempool::builder(min_nr).init_pages(pool, order)
}

/// Creates a pool of objects from a slab cache.
///
/// # Arguments
/// - `min_nr`: as [`mempool_create`].
/// - `kc`: the ddi-kmem object cache the elements come from ([`ddi_kmem::kmem_cache_create`]).
///   The pool keeps a clone of the `Arc`, so the cache cannot be destroyed before the pool:
///   destroy the pool, then take the cache back ([`Arc::into_inner`]) and destroy it.
///
/// # Return
/// As [`mempool_create`]. Elements are buffers of `kc.buf_size()` bytes.
///
/// # Context
/// As [`mempool_create`]. Elements come from, and return to, `kc` (so the arena it was
/// created in, whatever the current one), whichever thread allocates or frees them; that
/// arena's budget, context checks, failure injection and cache checking apply. `mempool_alloc`
/// calls `kmem_cache_alloc` with `KM_NOSLEEP` (see [`Gfp::km_flags`]), so a cache's
/// constructor sees `KM_NOSLEEP` there and `KM_SLEEP` during creation.
///
/// # Compatibility
/// Linux `mempool_create_slab_pool(int min_nr, struct kmem_cache *kc)` over
/// `mempool_alloc_slab`/`mempool_free_slab`, with the cache as pool data. Differences:
/// - Linux forbids caches with a constructor (`VM_BUG_ON(mem->ctor)` in `mempool_alloc_slab`,
///   since 3.x), because its checking mode poisons reserved elements. Here a constructor is
///   allowed: every element the pool hands out is a constructed object of the cache, whether
///   fresh from the cache or from the reserve (a reserved element is an object the pool got
///   from the cache, or that a user freed to the pool: it keeps whatever state it was freed
///   with, as objects freed to the cache do). The price is that slab pools are not poisoned
///   by default, even in a checking arena; [`MempoolBuilder::poisoning`](crate::MempoolBuilder::poisoning)
///   turns it on for caches without a constructor.
/// - In C the caller must keep the cache alive until the pool is destroyed; here the `Arc`
///   does.
///
/// # Examples
/// ```
/// use ddi_kmem::{Arena, FailurePlan, kmem_cache_create, kmem_cache_destroy};
/// use ddi_mempool::{GFP_KERNEL, mempool_alloc, mempool_create_slab_pool, mempool_destroy, mempool_free};
/// use std::sync::Arc;
///
/// let arena = Arena::builder().build();
/// let _in = arena.enter();
/// let null = std::ptr::null_mut();
/// let kc = Arc::new(kmem_cache_create("bio", 256, 8, None, None, None, null, null, 0));
/// let pool = mempool_create_slab_pool(2, &kc).expect("preallocated");
/// arena.inject(FailurePlan::Always); // the cache fails every non-sleeping allocation
/// let a = mempool_alloc(&pool, GFP_KERNEL); // the reserve serves
/// assert!(!a.is_null());
/// // SAFETY: `a` came from this pool and is freed once.
/// unsafe { mempool_free(a, &pool) };
/// arena.clear_injection();
/// mempool_destroy(Some(pool));
/// assert_eq!(kc.stats().buffers_in_use, 0);
/// kmem_cache_destroy(Arc::into_inner(kc).expect("the pool gave its handle back"));
/// assert_eq!(arena.bytes_in_use(), 0);
/// ```
pub fn mempool_create_slab_pool(min_nr: usize, kc: &Arc<KmemCache>) -> Option<Box<Mempool>> {
    Mempool::builder(min_nr).slab(kc).ok()
}

/// Initializes an embedded pool of objects from a slab cache.
///
/// # Arguments
/// - `pool`: an uninitialized pool.
/// - `min_nr`, `kc`: as [`mempool_create_slab_pool`].
///
/// # Return
/// As [`mempool_init`].
///
/// # Context
/// As [`mempool_create_slab_pool`].
///
/// # Compatibility
/// Linux `mempool_init_slab_pool` (4.18 and later); see [`mempool_create_slab_pool`].
pub fn mempool_init_slab_pool(pool: &mut Mempool, min_nr: usize, kc: &Arc<KmemCache>) -> Result<(), MempoolError> {
    Mempool::builder(min_nr).init_slab(pool, kc)
}
