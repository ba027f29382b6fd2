//! The Solaris personality.
//!
//! Solaris semantics of the DDI/DKI memory interface, as data for `ddi-kmem`: build an arena
//! with [`SOLARIS`] (or [`arena`]) and enter it, and the plain `kmem_alloc`, `kmem_zalloc`
//! and `kmem_free` behave as the Solaris `kmem_alloc(9F)` page and the illumos kmem code
//! describe. Sources: `../shared/reference/man/001_*.txt` (SunOS 5.10 `kmem_alloc(9F)`), and
//! `../shared/reference/illumos.md` §1 (illumos-gate `os/kmem.c`, `sys/kmem.h`).
//!
//! | quirk | Solaris | source |
//! |---|---|---|
//! | `kmem_alloc(0, flag)` | NULL for every flag | 9F NOTES: "kmem_alloc(0, flag) always returns NULL" |
//! | `KM_SLEEP` | sleeps, never fails | 9F: "KM_SLEEP allocations may sleep but are guaranteed to succeed" |
//! | alignment | 8 bytes, 64 for multiples of 64, a page for multiples of a page | 9F: "at least double-word aligned"; `kmem_alloc_caches_create` |
//! | size classes | `kmem_alloc_sizes[]`, `kmem_big_alloc_sizes[]` (8 .. 131072) | illumos.md §1.2 |
//! | over 131072 bytes | served page-granular | `vmem_alloc(kmem_oversize_arena)`, illumos.md §1.2 |
//! | size passed to free | must match exactly; always checked | 9F: "must exactly match the original allocation"; `KMERR_BADSIZE` |
//! | `kmem_zalloc` | zeroes the requested bytes only | `bzero(buf, size)`, illumos.md §1.3 |
//! | `KM_CACHEALIGN` (bit 2) | no alignment effect: bit 2 is `KM_PUSHPAGE` | illumos `sys/kmem.h`, illumos.md §1.1 |
//!
//! Always checking the free size needs the per-buffer table, so a Solaris arena keeps it even
//! with [`Checking::OFF`](ddi_kmem::Checking::OFF) (Solaris itself needs `kmem_flags` for the
//! check; the personality gives a porter the documented rule, checked).
//!
//! # Examples
//! ```
//! use ddi_kmem::{KM_NOSLEEP, KM_SLEEP, kmem_alloc, kmem_free};
//!
//! let arena = compat_solaris::arena().build();
//! arena.run(|| {
//!     assert!(kmem_alloc(0, KM_SLEEP).is_null());
//!     let p = kmem_alloc(200_000, KM_NOSLEEP); // the oversize arena serves it
//!     assert!(!p.is_null());
//!     // SAFETY: `p` came from kmem_alloc(200_000) in this arena; freed once with its size.
//!     unsafe { kmem_free(p, 200_000) };
//! });
//! ```

#![deny(unsafe_op_in_unsafe_fn)]

use ddi_kmem::{Arena, ArenaBuilder, FreeSize, MemQuirks, Oversize, SizeClasses, ZallocZeroes, ZeroSize};

/// Solaris `kmem_alloc(9F)` behaviour. Each field cites its source in the crate doc's table.
pub const SOLARIS: MemQuirks = MemQuirks {
    vendor: "Solaris",
    // 9F NOTES: "kmem_alloc(0, flag) always returns NULL".
    zero_size: ZeroSize::Null,
    // 9F: "KM_SLEEP allocations may sleep but are guaranteed to succeed".
    honours_sleep: true,
    // illumos sys/kmem.h: 0x4 is KM_PUSHPAGE, not an alignment request.
    honours_cachealign: false,
    // 9F: "The buffer address and size must exactly match the original allocation."
    free_size: FreeSize::Verified,
    // illumos kmem_zalloc: bzero(buf, size).
    zalloc_zeroes: ZallocZeroes::Request,
    // illumos kmem_alloc_sizes[] / kmem_big_alloc_sizes[].
    classes: SizeClasses::Solaris,
    // illumos: above kmem_max_cached, vmem_alloc(kmem_oversize_arena).
    oversize: Oversize::Pages,
    hidden_header: 0,
    round_to: 1,
    trailer: 0,
};

/// An arena builder with the Solaris personality (other settings at their defaults).
pub fn arena() -> ArenaBuilder {
    Arena::builder().name("solaris").quirks(SOLARIS)
}
