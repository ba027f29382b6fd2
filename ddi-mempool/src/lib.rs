//! Linux mempools over ddi-kmem.
//!
//! This crate will hold `mempool_create(min_nr, alloc_fn, free_fn, pool_data)` and the rest of the
//! Linux `mm/mempool.c` interface (`mempool_alloc`, `mempool_free`, `mempool_resize`,
//! `mempool_destroy`, the kmalloc, slab and page helper pools), with a reserve that guarantees
//! forward progress, backed by ddi-kmem so budgets, calling context and failure injection apply.
//! It is not built yet: nothing here is callable.
