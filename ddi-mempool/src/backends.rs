//! The built-in backends: kmalloc pools and page pools over ddi-kmem.
//!
//! Each pool binds the ddi-kmem arena current on the thread that creates it, and allocates
//! and frees its elements there from whatever thread calls, so an element never crosses
//! arenas (Linux has one allocator; here the arena plays its part). Budget, calling context
//! and failure injection of that arena apply to every element. A mask that may sleep and lacks
//! `__GFP_NORETRY` becomes `KM_SLEEP`, anything else `KM_NOSLEEP` ([`Gfp::km_flags`]).
//!
//! The backend functions themselves (Linux `mempool_kmalloc`, `mempool_kfree`,
//! `mempool_alloc_pages`, `mempool_free_pages`) are not public: their free halves would be
//! safe functions freeing arbitrary pointers. The constructors below are the way to use them.
//!
//! Slab pools (`mempool_create_slab_pool`) arrive with ddi-kmem's object caches.

use crate::error::MempoolError;
use crate::gfp::Gfp;
use crate::pool::{Mempool, MempoolBuilder};
use ddi_kmem::{Arena, MAX_PAGE_ORDER, PAGE_SIZE, free_pages, get_free_pages};
use std::ffi::c_void;
use std::ptr;

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
}
