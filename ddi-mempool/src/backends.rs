//! The built-in backends: kmalloc, page and slab pools over ddi-kmem.
//!
//! Each pool binds the ddi-kmem arena current on the thread that creates it, and allocates
//! and frees its elements there from whatever thread calls, so an element never crosses
//! arenas (Linux has one allocator; here the arena plays its part). Budget, calling context
//! and failure injection of that arena apply to every element. A mask that may sleep and lacks
//! `__GFP_NORETRY` becomes `KM_SLEEP`, anything else `KM_NOSLEEP` ([`Gfp::km_flags`]).
//!
//! Slab pools are the exception to "the current arena": their elements come from a ddi-kmem
//! object cache ([`KmemCache`]), which belongs to the arena it was created in. The pool holds
//! an `Arc` of the cache, so the cache outlives every pool over it (Linux leaves that to the
//! caller: "the pool must not outlive the cache").
//!
//! The backend functions themselves (Linux `mempool_kmalloc`, `mempool_kfree`,
//! `mempool_alloc_pages`, `mempool_free_pages`, `mempool_alloc_slab`, `mempool_free_slab`) are
//! not public: their free halves would be safe functions freeing arbitrary pointers. The
//! constructors below are the way to use them. A pool knows its slab or kmalloc backend as a
//! [`Source`] variant and calls ddi-kmem directly, where Linux calls through the function
//! pointers it stores even for its own backends: the pool's fast path (an allocation the backing
//! allocator serves, and a free with the reserve full) is then a compare on the variant and a
//! direct call, instead of a call through a boxed closure that captured the cache or arena.
//! Page pools, whose every call enters their arena, keep boxed functions as custom pools do.

use crate::error::MempoolError;
use crate::gfp::Gfp;
use crate::pool::{Mempool, MempoolAllocFn, MempoolBuilder, MempoolFreeFn};
use ddi_kmem::{
    Arena, KmemCache, MAX_PAGE_ORDER, PAGE_SIZE, free_pages, get_free_pages, kmem_cache_alloc, kmem_cache_free,
};
use std::ffi::c_void;
use std::ptr::{self, NonNull};
use std::sync::Arc;

/// Where a pool's elements come from (Linux `pool->alloc`, `pool->free`).
pub(crate) enum Source {
    /// Objects of a ddi-kmem cache (Linux `mempool_alloc_slab`, `mempool_free_slab`).
    Slab {
        /// The cache, for allocating.
        alloc: Arc<KmemCache>,
        /// The same cache, for freeing: one handle per backend function, as when they were
        /// closures, so the strong count a user sees (two per pool) did not change
        /// (`tests/slab.rs` checks it).
        free: Arc<KmemCache>,
    },
    /// `size`-byte buffers of `arena` (Linux `mempool_kmalloc`, `mempool_kfree`).
    Kmalloc {
        /// The arena current when the pool was made.
        arena: Arena,
        /// The element size.
        size: usize,
    },
    /// The user's element functions (`mempool_create`, `mempool_init`), or the page pool's
    /// (Linux `mempool_alloc_pages`, `mempool_free_pages`): every call of those enters the
    /// arena, which a boxed call does not make noticeably dearer, and three variants keep the
    /// dispatch a pair of compares (four made it a jump table).
    Custom {
        /// `mempool_alloc_t`.
        alloc: Box<MempoolAllocFn>,
        /// `mempool_free_t`.
        free: Box<MempoolFreeFn>,
    },
}

impl Source {
    /// Allocates an element with `gfp` (Linux `pool->alloc(gfp, pool->pool_data)`); NULL on
    /// failure.
    ///
    #[inline(always)]
    pub(crate) fn alloc(&self, gfp: Gfp, pool_data: *mut c_void) -> *mut c_void {
        match self {
            // Linux `mempool_alloc_slab`: `kmem_cache_alloc(mem, gfp_mask)`.
            Source::Slab { alloc, .. } => kmem_cache_alloc(alloc, gfp.km_flags()),
            // Linux `mempool_kmalloc`: `kmalloc(size, gfp_mask)`.
            Source::Kmalloc { arena, size } => arena.alloc(*size, gfp.km_flags()).cast::<c_void>(),
            Source::Custom { alloc, .. } => alloc(gfp, pool_data),
        }
    }

    /// Frees an element (Linux `pool->free(element, pool->pool_data)`).
    ///
    /// # Safety
    /// - `element` came from [`Source::alloc`] of this source (for a custom source: it is one
    ///   the user's free function accepts), and was not freed since.
    /// - `element` is not used afterwards.
    #[inline(always)]
    pub(crate) unsafe fn free(&self, element: NonNull<c_void>, pool_data: *mut c_void) {
        match self {
            Source::Slab { free, .. } => {
                // SAFETY: `element` came from `kmem_cache_alloc` of this cache (first bullet),
                // freed once (both bullets). Linux `mempool_free_slab`.
                unsafe { kmem_cache_free(free, element.as_ptr()) }
            }
            Source::Kmalloc { arena, size } => {
                // SAFETY: `element` came from `arena.alloc(size)` (first bullet), freed once.
                // Linux `mempool_kfree`.
                unsafe { arena.free(element.as_ptr().cast::<u8>(), *size) }
            }
            Source::Custom { free, .. } => free(element.as_ptr(), pool_data),
        }
    }
}

impl MempoolBuilder {
    /// Creates a kmalloc pool of `size`-byte elements in the current arena (Linux
    /// `mempool_create_kmalloc_pool`) with these settings.
    pub fn kmalloc(self, size: usize) -> Result<Box<Mempool>, MempoolError> {
        let mut pool = Box::new(Mempool::new());
        self.init_kmalloc(&mut pool, size)?;
        Ok(pool)
    }

    /// Initializes an embedded kmalloc pool (Linux `mempool_init_kmalloc_pool`) with these
    /// settings.
    pub fn init_kmalloc(self, pool: &mut Mempool, size: usize) -> Result<(), MempoolError> {
        let arena = ddi_kmem::current_arena();
        // Linux passes the size as the pool data: `(void *)size`.
        let pool_data = ptr::without_provenance_mut::<c_void>(size);
        self.init_builtin(pool, Source::Kmalloc { arena, size }, pool_data, size)
    }

    /// Creates a pool of `2^order`-page elements in the current arena (Linux
    /// `mempool_create_page_pool`) with these settings.
    pub fn pages(self, order: u32) -> Result<Box<Mempool>, MempoolError> {
        let mut pool = Box::new(Mempool::new());
        self.init_pages(&mut pool, order)?;
        Ok(pool)
    }

    /// Initializes an embedded page pool (Linux `mempool_init_page_pool`) with these settings.
    pub fn init_pages(self, pool: &mut Mempool, order: u32) -> Result<(), MempoolError> {
        assert!(order <= MAX_PAGE_ORDER, "mempool page pool: order {order} above MAX_PAGE_ORDER {MAX_PAGE_ORDER}");
        let arena = ddi_kmem::current_arena();
        let free_arena = arena.clone();
        // Linux passes the order as the pool data: `(void *)(long)order`.
        let pool_data = ptr::without_provenance_mut::<c_void>(order as usize);
        // Linux `mempool_alloc_pages`: `alloc_pages(gfp_mask, order)`.
        let alloc: Box<MempoolAllocFn> = Box::new(move |gfp: Gfp, _data: *mut c_void| {
            let flags = gfp.km_flags();
            arena.run(|| get_free_pages(flags, order))
        });
        // Linux `mempool_free_pages`: `__free_pages(element, order)`.
        let free: Box<MempoolFreeFn> = Box::new(move |element: *mut c_void, _data: *mut c_void| {
            free_arena.run(|| {
                // SAFETY: the pool calls its free function only with elements its allocation
                // function returned (from `get_free_pages(_, order)` in this arena, entered
                // here) or that were given to `mempool_free`, whose contract requires exactly
                // that; each once.
                unsafe { free_pages(element, order) }
            })
        });
        self.init_builtin(pool, Source::Custom { alloc, free }, pool_data, PAGE_SIZE << order)
    }

    /// Creates a pool of objects from the cache `kc` (Linux `mempool_create_slab_pool`) with
    /// these settings.
    pub fn slab(self, kc: &Arc<KmemCache>) -> Result<Box<Mempool>, MempoolError> {
        let mut pool = Box::new(Mempool::new());
        self.init_slab(&mut pool, kc)?;
        Ok(pool)
    }

    /// Initializes an embedded pool of objects from the cache `kc` (Linux
    /// `mempool_init_slab_pool`) with these settings.
    ///
    /// Unlike the kmalloc and page pools, a slab pool is poisoned only when
    /// [`poisoning`](MempoolBuilder::poisoning)`(true)` says so, never by default: poisoning
    /// overwrites reserved elements, and the pool cannot tell whether the cache constructs its
    /// objects (Linux forbids constructors here, `VM_BUG_ON(mem->ctor)`, and poisons).
    pub fn init_slab(self, pool: &mut Mempool, kc: &Arc<KmemCache>) -> Result<(), MempoolError> {
        let size = kc.buf_size();
        // Linux passes the cache as the pool data: `(void *) kc`. Only for line-by-line ports;
        // the backend uses the `Arc`s it holds.
        let pool_data = Arc::as_ptr(kc).cast_mut().cast::<c_void>();
        let poisoning = self.poisoning.unwrap_or(false);
        self.poisoning(poisoning).init_builtin(
            pool,
            Source::Slab { alloc: Arc::clone(kc), free: Arc::clone(kc) },
            pool_data,
            size,
        )
    }
}
