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
//! constructors below are the way to use them.

use crate::error::MempoolError;
use crate::gfp::Gfp;
use crate::pool::{Mempool, MempoolAllocFn, MempoolBuilder, MempoolFreeFn};
use ddi_kmem::{
    Arena, KmemCache, MAX_PAGE_ORDER, PAGE_SIZE, free_pages, get_free_pages, kmem_cache_alloc, kmem_cache_free,
};
use std::ffi::c_void;
use std::ptr;
use std::sync::Arc;

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
        let free_arena = arena.clone();
        // Linux passes the size as the pool data: `(void *)size`.
        let pool_data = ptr::without_provenance_mut::<c_void>(size);
        self.init_builtin(
            pool,
            Box::new(move |gfp: Gfp, _data: *mut c_void| arena.alloc(size, gfp.km_flags()).cast::<c_void>()),
            Box::new(move |element: *mut c_void, _data: *mut c_void| {
                // SAFETY: the pool calls its free function only with elements its allocation
                // function returned (from `arena.alloc(size)`) or that were given to
                // `mempool_free`, whose contract requires exactly that; each once.
                unsafe { free_arena.free(element.cast(), size) }
            }),
            pool_data,
            size,
        )
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
        let arena: Arena = ddi_kmem::current_arena();
        let free_arena = arena.clone();
        // Linux passes the order as the pool data: `(void *)(long)order`.
        let pool_data = ptr::without_provenance_mut::<c_void>(order as usize);
        self.init_builtin(
            pool,
            Box::new(move |gfp: Gfp, _data: *mut c_void| {
                let flags = gfp.km_flags();
                arena.run(|| get_free_pages(flags, order))
            }),
            Box::new(move |element: *mut c_void, _data: *mut c_void| {
                free_arena.run(|| {
                    // SAFETY: as for kmalloc pools: `element` came from `get_free_pages(_,
                    // order)` in this arena (entered here), freed once.
                    unsafe { free_pages(element, order) }
                })
            }),
            pool_data,
            PAGE_SIZE << order,
        )
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
        let alloc_cache = Arc::clone(kc);
        let free_cache = Arc::clone(kc);
        let size = kc.buf_size();
        // Linux passes the cache as the pool data: `(void *) kc`. Only for line-by-line ports;
        // the backend functions use the `Arc`s they hold.
        let pool_data = Arc::as_ptr(kc).cast_mut().cast::<c_void>();
        let poisoning = self.poisoning.unwrap_or(false);
        // Linux `mempool_alloc_slab`: `kmem_cache_alloc(mem, gfp_mask)`.
        let alloc: Box<MempoolAllocFn> =
            Box::new(move |gfp: Gfp, _data: *mut c_void| kmem_cache_alloc(&alloc_cache, gfp.km_flags()));
        // Linux `mempool_free_slab`: `kmem_cache_free(mem, element)`.
        let free: Box<MempoolFreeFn> = Box::new(move |element: *mut c_void, _data: *mut c_void| {
            // SAFETY: the pool calls its free function only with elements its allocation
            // function returned (from `kmem_cache_alloc` of this cache) or that were given to
            // `mempool_free`, whose contract requires exactly that; each once.
            unsafe { kmem_cache_free(&free_cache, element) }
        });
        self.poisoning(poisoning).init_builtin(pool, alloc, free, pool_data, size)
    }
}
