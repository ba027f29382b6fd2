//! The SVR4 DDI/DKI kernel memory interface: `kmem_alloc(9)`, `kmem_zalloc(9)`, `kmem_free(9)`.
//!
//! # Principles of operation
//!
//! **Arenas.** All memory comes from an [`Arena`]: a set of size-class caches and a page path
//! over the process allocator, with an optional byte budget, a choice of misuse checks, a
//! failure injector, statistics, and one personality's [`MemQuirks`]. The DDI functions
//! ([`kmem_alloc`], [`kmem_zalloc`], [`kmem_free`], [`get_free_pages`], [`free_pages`]) act on
//! the arena the calling thread has [entered](Arena::enter), or on the process-wide
//! [default](Arena::default_arena) (native quirks, no budget, checks on in debug builds). So
//! the same ported code, calling plain `kmem_alloc`, runs under LfS, Solaris or LiS semantics
//! by entering a different arena, and tests with their own budgets run in parallel.
//!
//! **Native semantics** are those of Linux Fast-STREAMS `kmem_alloc(9)`: size 0 gives NULL for
//! any flag; `kmem_free(NULL, 0)` is legal; requests round up to power-of-two classes from 32
//! to 131072 bytes, each buffer aligned to its class; larger requests give NULL with a
//! diagnostic ([`get_free_pages`] serves them); `KM_CACHEALIGN` starts a small request on a
//! cache line; `kmem_zalloc` zeroes the whole extent; `kmem_alloc` memory is not zeroed.
//!
//! **Object caches and magazines.** Each size class is an object cache (the same machinery as
//! [`kmem_cache_create`]): a slab layer of raw buffers carved from 64 KiB slabs, a depot of
//! full and empty magazines under a lock, and per-thread *loaded* and *previous* magazines
//! (Bonwick and Adams, "Magazines and Vmem"; illumos `kmem.c`). An allocation pops the
//! thread's loaded magazine; a free pushes onto it; the thread goes to the depot once per
//! magazine's worth of operations (up to 255 rounds, at most 32 KiB of buffers a magazine),
//! and to the slab layer only when the depot is empty. A buffer freed on another thread joins
//! that thread's magazine; a thread's magazines return to the depot when it exits.
//! Constructors run when a buffer leaves the slab layer, destructors when it returns there
//! (reap, purge, destroy), as Solaris defines constructed state. `Arena::reap` trims each
//! depot to its working set and calls the caches' reclaim callbacks; a `KM_SLEEP` allocation
//! that finds the budget exhausted reaps before it sleeps.
//!
//! **The fast path.** The thread-local block (`context.rs`) has no destructor, so reaching it
//! is one load off the thread pointer. It points at the current arena's table of class
//! magazines for this thread (one per thread and arena, switched when the thread enters or
//! leaves an arena) when that arena is *plain*: unchecked, no budget, and quirks that add
//! nothing to a request. `kmem_alloc` then tests the interrupt depth and a process-wide count
//! of arenas with failure injection armed (one word, no arena to reach; non-zero sends it to
//! the general path, which asks the arena), computes the power-of-two class with one `bsr`,
//! and pops the class's slot:
//! a raw array and a round count in the low byte of a word whose upper bits count the
//! allocations, so one store does both (`magazine.rs`). `kmem_free` mirrors it. About 25
//! instructions each way, no lock, no read-modify-write. `kmem_cache_alloc` finds the
//! thread's slot of the cache through a 16-entry direct-mapped array keyed by cache id (only
//! caches of plain arenas get an entry).
//! Everything else (checking, a budget, injection armed, `KM_CACHEALIGN`, `KM_SLEEP` in
//! interrupt context, a miss) takes the general path, which behaves exactly as before.
//!
//! **Counting.** An arena with a budget or with checking counts every allocation exactly, with
//! atomics, as it happens. A plain arena counts allocations in each thread's slot words and
//! counts no frees at all: a cache's buffers in use are those out of its slab layer less
//! those in the depot, in the threads' magazines and on their way back, read under the
//! cache's locks when asked; frees are allocations less that. Exact whenever the threads
//! using the cache are quiescent or exiting. Its per-class high-water marks are sampled
//! whenever a cache takes buffers from its slab layer, and its arena high-water mark is the
//! sum of those (an upper bound).
//!
//! **Budget and sleeping.** Bytes in use are counted by extent (after class rounding). With a
//! budget, a `KM_NOSLEEP` request the budget cannot cover returns NULL at once; a `KM_SLEEP`
//! request sleeps until frees make room, then succeeds ("may sleep but guaranteed to
//! succeed"). Every free that makes room wakes the sleepers; the protocol is argued in
//! `budget.rs` and model-checked with loom. A `KM_SLEEP` request larger than the whole budget
//! could never succeed: it is reported as a misuse instead of hanging.
//!
//! **Context.** Each thread is in user or interrupt context ([`InterruptGuard`]). `KM_SLEEP`
//! from interrupt context is a misuse (9F CONTEXT); `KM_NOSLEEP` and `kmem_free` work anywhere.
//!
//! **Failure injection** ([`Arena::inject`]) fails chosen allocations among those allowed to
//! fail (non-sleeping ones), so callers' failure paths run.
//!
//! **Checking** ([`Checking`]; Solaris `kmem_flags` AUDIT, REDZONE, DEADBEEF) is chosen per
//! arena when it is built, on by default in debug builds. A checking arena keeps a table of
//! every buffer by address and gives each its own block with a redzone; freed blocks are
//! painted `0xdeadbeef` and wait, oldest first, for reuse (see `check.rs`). It detects, and
//! reports with the call, the address, the sizes and (with audit) where the buffer was
//! allocated and freed:
//!
//! | misuse | when |
//! |---|---|
//! | free size differs from the allocation | at the free, which is refused |
//! | double free | at the second free, until the block is reused; refused |
//! | pointer this arena never returned, or into the middle of a buffer | at the free; refused |
//! | NULL with a non-zero size | at the free |
//! | write past the requested size | at the free; the block is left out of use |
//! | write after free | when the block is reused, at [`Arena::verify`], or when the arena drops |
//! | `KM_SLEEP` from interrupt context | at the call |
//!
//! `kmem_alloc` memory in a checking arena holds `0xbaddcafe`, so code relying on zeroes
//! fails. The response ([`Response`]) is a panic (default, kernel-like) or report-and-continue,
//! which counts the error, keeps the report, refuses the offending free or leaves the damaged
//! block out of use, and never hands a damaged block to anyone.
//!
//! **What is caught with checks off.** NULL with a non-zero size, a non-NULL buffer freed with
//! a size no allocation can have (0, or above the largest class), and `KM_SLEEP` in interrupt
//! context. Nothing else: as in Solaris without `kmem_flags`, a double free, a foreign pointer
//! or a wrong size that maps to another class corrupts the free lists, which is why
//! [`kmem_free`] is `unsafe`. Safe code uses [`KmemBuf`], which cannot get these wrong.
//!
//! **Vendor personalities** are data ([`MemQuirks`]); `compat-solaris` and `compat-lis`
//! provide theirs and [`vendor`] runs one scenario under several and prints a table.
//!
//! **A whole program on kmem.** [`KmemGlobal`] is a `#[global_allocator]` over these caches:
//!
//! ```rust,standalone_crate
//! #[global_allocator]
//! static KMEM: ddi_kmem::KmemGlobal = ddi_kmem::KmemGlobal::new();
//! # fn main() {}
//! ```
//!
//! Requests up to 131072 bytes (size or alignment) come from one process-wide arena with
//! native quirks, no budget and no checking, through the same per-thread magazines as
//! [`kmem_alloc`]; larger ones, and what kmem allocates for itself while serving one, come
//! from the system allocator. Who frees a pointer is decided by its address: the adapter's
//! slabs are registered, 64 KiB granule by granule, in a lock-free process-wide table.
//! `global.rs` gives the re-entrancy, ownership and thread-exit argument.
//!
//! **Raw memory** is obtained only in `sys.rs` (clippy `disallowed-methods` bans
//! `std::alloc::{alloc, dealloc, ...}` elsewhere), from the system allocator itself
//! (`std::alloc::System`), not from whatever global allocator the program installed. Memory
//! an arena or cache must keep because it was destroyed with buffers still allocated goes on
//! a process-wide list ([`kept_bytes`]): it stays valid, reachable and counted, never
//! silently lost.

#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

mod arena;
mod budget;
mod buf;
mod cache;
mod check;
mod class;
mod context;
mod ddi;
mod error;
mod flags;
mod global;
mod granule;
mod inject;
mod kmem_cache;
mod magazine;
mod quirks;
mod slab;
mod stats;
mod sync;
pub(crate) mod sys;
pub mod vendor;

pub use arena::{Arena, ArenaBuilder, MAX_PAGE_ORDER, Response, WeakArena};
pub use buf::KmemBuf;
pub use check::{Checking, FREE_PATTERN, REDZONE_BYTE, UNINIT_PATTERN};
pub use context::{
    Context, EnterGuard, InterruptGuard, current_arena, current_arena_id, current_context, in_interrupt, interrupt,
};
pub use ddi::{free_pages, get_free_pages, kmem_alloc, kmem_free, kmem_zalloc};
pub use error::{KmemError, Site};
pub use flags::{KM_CACHEALIGN, KM_DMA, KM_NOSLEEP, KM_PHYSCONTIG, KM_SLEEP, KmFlags};
pub use global::{GlobalCounters, KmemGlobal};
pub use inject::FailurePlan;
pub use kmem_cache::{
    CachedObj, KMC_NODEBUG, KMC_NOHASH, KMC_NOMAGAZINE, KMC_NOTOUCH, KmemCache, KmemConstructor, KmemDestructor,
    KmemReclaim, ThreadSlot, TypedCache, kmem_cache_alloc, kmem_cache_create, kmem_cache_destroy, kmem_cache_free,
    kmem_cache_reap_now, kmem_cache_thread_slot, kmem_thread_token,
};
pub use quirks::{CACHE_LINE, FreeSize, MemQuirks, Oversize, PAGE_SIZE, SizeClasses, ZallocZeroes, ZeroSize};
pub use stats::{ArenaStats, CacheStats, ClassStats};
pub use sys::kept_bytes;
