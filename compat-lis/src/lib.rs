//! The LiS personality.
//!
//! LiS (Linux STREAMS 2.18) semantics of the DDI/DKI memory interface, as data for `ddi-kmem`:
//! build an arena with [`LIS`] (or [`arena`]) and enter it, and the plain `kmem_alloc`,
//! `kmem_zalloc` and `kmem_free` behave as LiS's macros do. Sources: the Linux Fast-STREAMS
//! `kmem_alloc(9)` COMPATIBILITY section (`../shared/reference/man/002_*.txt`, "LfS-MAN") and
//! `../shared/reference/lfs-lis.md` §4.1 (CSLiS `include/sys/kmem.h`,
//! `include/sys/LiS/linux-mdep.h`, `head/strmdbg.c`).
//!
//! | quirk | LiS | source |
//! |---|---|---|
//! | `flag` | ignored: every allocation is `GFP_ATOMIC`, so `KM_SLEEP` can fail and never sleeps | LfS-MAN: "kmem_alloc() ignores the flag argument ... GFP_ATOMIC"; `ALLOC(siz)` |
//! | `kmem_alloc(0, flag)` | a valid pointer to zero bytes | LfS-MAN: "returns a pointer to zero-sized allocated memory" |
//! | hidden header | 64 bytes (`mem_link_t` on LP64) before every buffer | lfs-lis.md §4.1: `{next, prev, long size, char file_name[32], int line_nr}` |
//! | rounding | the request rounds up to a multiple of 16, plus header and an 8-byte guard word | lfs-lis.md §4.1: `lis_malloc` |
//! | alignment | what is left after the header: 64 bytes at most, never the class's | LfS-MAN: "destroys memory alignment" |
//! | size passed to free | ignored; the size is read from the header | LfS `kmem_free(9)`: "ignores the size argument" |
//! | `kmem_zalloc` | zeroes the requested bytes only | lfs-lis.md §4.1: `lis_zmalloc` "zeroes only nbytes" |
//! | large requests | served by `get_free_pages` | lfs-lis.md §4.1: above `MAX_KMALLOC_SIZE` |
//!
//! The budget of an LiS arena plays `lis_max_mem`: once it is reached every allocation fails.
//! LiS switches to pages at `MAX_KMALLOC_SIZE` ("~120000 minus header"); this personality
//! switches where the rounded request no longer fits the 131072-byte class, since the exact
//! LiS constant is not in the references.
//!
//! # Examples
//! ```
//! use ddi_kmem::{KM_SLEEP, kmem_alloc, kmem_free};
//!
//! let arena = compat_lis::arena().budget(256).build();
//! arena.run(|| {
//!     let p = kmem_alloc(0, KM_SLEEP);
//!     assert!(!p.is_null()); // LiS: a pointer to zero bytes
//!     // The budget is spent, and KM_SLEEP fails at once instead of sleeping.
//!     assert!(kmem_alloc(100, KM_SLEEP).is_null());
//!     // SAFETY: `p` came from kmem_alloc in this arena; LiS ignores the size.
//!     unsafe { kmem_free(p, 12345) };
//! });
//! assert_eq!(arena.bytes_in_use(), 0);
//! ```

#![deny(unsafe_op_in_unsafe_fn)]

use ddi_kmem::{Arena, ArenaBuilder, FreeSize, MemQuirks, Oversize, SizeClasses, ZallocZeroes, ZeroSize};

/// LiS behaviour. Each field cites its source in the crate doc's table.
pub const LIS: MemQuirks = MemQuirks {
    vendor: "LiS",
    // LfS-MAN COMPATIBILITY: "a pointer to zero-sized allocated memory".
    zero_size: ZeroSize::ZeroBytes,
    // LfS-MAN COMPATIBILITY: flag ignored, always GFP_ATOMIC.
    honours_sleep: false,
    // kmem_alloc is ALLOC(siz): no flag reaches the allocator.
    honours_cachealign: false,
    // kmem_free(ptr, siz) is FREE(ptr): "ignores the size argument".
    free_size: FreeSize::Ignored,
    // lis_zmalloc zeroes only nbytes.
    zalloc_zeroes: ZallocZeroes::Request,
    // lis_malloc calls kmalloc: power-of-two classes from 32 to 131072.
    classes: SizeClasses::PowerOfTwo { min: 32, max: 131072 },
    // lis_malloc uses get_free_pages above MAX_KMALLOC_SIZE.
    oversize: Oversize::Pages,
    // mem_link_t {next, prev, long size, char file_name[32], int line_nr}: 64 bytes on LP64.
    hidden_header: 64,
    // lis_malloc rounds nbytes up to a multiple of 16.
    round_to: 16,
    // The trailing `long` guard word (MEM_GUARD).
    trailer: 8,
};

/// An arena builder with the LiS personality (other settings at their defaults).
pub fn arena() -> ArenaBuilder {
    Arena::builder().name("lis").quirks(LIS)
}
