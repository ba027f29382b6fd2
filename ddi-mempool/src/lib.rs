//! Linux memory pools (`mm/mempool.c`) over ddi-kmem: a guaranteed reserve of preallocated
//! elements, so that allocations in process context always make forward progress.
//!
//! # Principles of operation
//!
//! **The reserve.** A pool ([`Mempool`]) holds `min_nr` preallocated elements in a stack
//! (the element freed last leaves first) behind one lock, and two functions that make and
//! free elements (`alloc_fn`, `free_fn`, the C callbacks, as closures taking the opaque
//! `pool_data`). The reserve is a fallback, not a cache: [`mempool_alloc`] asks `alloc_fn`
//! first and dips into the reserve only when that fails.
//!
//! **Allocation** ([`mempool_alloc`], Linux 4.x/6.x): `alloc_fn` without direct reclaim or I/O
//! → the reserve → `alloc_fn` with the caller's mask → if the caller may sleep, wait on the
//! pool's wait queue until a free wakes it or the pool's timeout passes (5 s, Linux `5*HZ`) →
//! start over. So a sleeping caller never gets NULL; a caller that may not sleep
//! ([`GFP_ATOMIC`], [`GFP_NOWAIT`], or ddi-kmem interrupt context whatever the mask) gets NULL
//! when `alloc_fn` and the reserve both come up empty. The wait re-tries `alloc_fn` after every
//! wake-up, so a waiter also returns when memory comes back without any free.
//!
//! **Freeing** ([`mempool_free`]): while the reserve holds fewer than `min_nr` elements the
//! element goes back to it and waiters wake; otherwise `free_fn` gets it. The refill test is
//! an unlocked read of `curr_nr`, repeated under the lock. It is "guaranteed to trigger if
//! curr_nr + #allocated == min_nr", which is all forward progress needs: waiters exist only
//! when the reserve is empty, and then every free refills it. For that read to see the
//! allocation of the element being freed even when the element travelled between threads
//! without synchronization, a Release fence after taking from the reserve pairs with an
//! Acquire fence before the read (Linux `smp_wmb`/`smp_rmb`); the loom model
//! `tests/loom_mempool.rs` checks it, and the lost-wake-up case.
//!
//! **The fast path.** With a backing allocator that succeeds, `mempool_alloc` is one backend
//! call and `mempool_free` one unlocked test and one backend call, neither touching the lock
//! nor any shared cache line it writes: the slab and kmalloc backends are a `Source` variant
//! called directly (custom and page pools keep boxed functions); the first round's mask is bit
//! operations, and the calling context (interrupt or not) is asked only once the reserve is
//! found empty; the count of outstanding elements that teardown reports is kept per thread and
//! summed when read (`counter.rs`, loom-checked), so neither call makes a shared
//! read-modify-write. Both are `#[inline(always)]`; the reserve, the wait and the refill are
//! out-of-line cold functions.
//!
//! **Lock order.** One lock per pool. It is never held across `alloc_fn` or `free_fn` (resize
//! drops it around each call, as Linux does), so they may sleep or use other pools.
//!
//! **Where memory comes from.** The kmalloc and page pools ([`mempool_create_kmalloc_pool`],
//! [`mempool_create_page_pool`], [`TypedPool`]) take their elements from the ddi-kmem arena
//! current on the creating thread, and give them back there from whichever thread frees them.
//! Slab pools use their cache's arena (below); the rest of this paragraph holds for them too.
//! [`Gfp::km_flags`] maps a mask to `KM_SLEEP` only when it may sleep and lacks
//! `__GFP_NORETRY`. `mempool_alloc` adds `__GFP_NORETRY` (Linux: "don't loop in
//! `__alloc_pages`"), so within it the backends never wait on the arena's budget and failure
//! injection can fail them: the reserve and the pool's wait carry the guarantee, which holds
//! with the budget exhausted and every backend allocation failing. Creation and growth by
//! [`mempool_resize`] use `GFP_KERNEL` as Linux does, so they may wait for budget room. The
//! pointer array of the reserve is an ordinary `Vec` (not charged to the arena).
//!
//! **Slab pools** ([`mempool_create_slab_pool`], [`mempool_init_slab_pool`]) take their
//! elements from a ddi-kmem object cache ([`ddi_kmem::KmemCache`]) instead, and so from the
//! arena that cache belongs to. The pool holds an `Arc` of the cache, so the cache outlives it.
//! Caches with a constructor are allowed (Linux forbids them): every element handed out is a
//! constructed object, because slab pools are not poisoned unless asked.
//!
//! **Checking mode.** For the kmalloc and page pools and [`TypedPool`], in a checking arena
//! (or when [`MempoolBuilder::poisoning`] says so; for slab pools only then), an element entering the reserve is filled with
//! [`POISON_FREE`] ending in [`POISON_END`], and checked when it leaves; a modification is
//! reported ("BUG: mempool element poison mismatch", with a hex dump), by panicking or, in an
//! arena that reports and continues, in [`Mempool::errors`]. It is then filled with
//! [`POISON_INUSE`] and handed out, as Linux does.
//!
//! **Teardown.** [`mempool_destroy`] / [`mempool_exit`] (and dropping a pool) free the reserve
//! through `free_fn`. Elements still out are counted and reported; whether that is allowed
//! (Linux 4.x and later, the default) or a bug (2.6 `BUG_ON`) is the pool's [`DestroyCheck`].
//! The typed surface makes it impossible: a [`PoolBox`] borrows its [`TypedPool`].
//!
//! **Versions.** The algorithm is that of Linux 4.x/6.x. 2.6, 4.x, 6.x and late-2025 linux-next
//! differences are named in each function's `# Compatibility` section. Bulk allocation
//! (`mempool_alloc_bulk`, 6.19) is not provided: its interface was still changing.
//!
//! # Examples
//! ```
//! use ddi_kmem::{Arena, FailurePlan};
//! use ddi_mempool::{GFP_KERNEL, TypedPool};
//!
//! let arena = Arena::builder().budget(4096).build();
//! let _in = arena.enter();
//! let pool = TypedPool::<[u8; 64]>::new(2).expect("preallocated");
//! arena.inject(FailurePlan::Always); // every allocation that may fail, fails
//! let a = pool.alloc(GFP_KERNEL, [1; 64]).expect("from the reserve");
//! let b = pool.alloc(GFP_KERNEL, [2; 64]).expect("from the reserve");
//! drop(a); // refills the reserve...
//! let c = pool.alloc(GFP_KERNEL, [3; 64]).expect("...so this cannot fail");
//! drop((b, c));
//! drop(pool);
//! assert_eq!(arena.bytes_in_use(), 0);
//! ```

#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]
#![doc(test(attr(deny(warnings))))]

mod backends;
mod counter;
mod ddi;
mod error;
mod gfp;
mod poison;
mod pool;
mod sync;
mod typed;

pub use ddi::{
    mempool_alloc, mempool_alloc_preallocated, mempool_create, mempool_create_kmalloc_pool, mempool_create_node,
    mempool_create_page_pool, mempool_create_slab_pool, mempool_destroy, mempool_exit, mempool_free, mempool_init,
    mempool_init_kmalloc_pool, mempool_init_page_pool, mempool_init_slab_pool, mempool_initialized,
    mempool_is_saturated, mempool_resize,
};
pub use error::MempoolError;
pub use gfp::{
    __GFP_DIRECT_RECLAIM, __GFP_FS, __GFP_HIGH, __GFP_IO, __GFP_KSWAPD_RECLAIM, __GFP_NOMEMALLOC, __GFP_NORETRY,
    __GFP_NOWARN, __GFP_RECLAIM, GFP_ATOMIC, GFP_KERNEL, GFP_NOFS, GFP_NOIO, GFP_NOWAIT, Gfp,
};
pub use poison::{POISON_END, POISON_FREE, POISON_INUSE};
pub use pool::{DEFAULT_TIMEOUT, DestroyCheck, Mempool, MempoolAllocFn, MempoolBuilder, MempoolFreeFn};
pub use typed::{PoolBox, TypedPool};
