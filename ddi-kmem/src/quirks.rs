//! Vendor behaviour of the memory layer, as data.
//!
//! A [`MemQuirks`] value describes every choice in which the vendors' `kmem_alloc` differ. An
//! [`Arena`](crate::Arena) is built from one and reads it on the slow path and in a few
//! predictable branches on the fast path. The native value, [`MemQuirks::LFS`], follows the
//! Linux Fast-STREAMS `kmem_alloc(9)` page; `compat-solaris` and `compat-lis` define theirs,
//! each field citing its source.

/// What `kmem_alloc(0, flag)` returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ZeroSize {
    /// NULL for any flag (LfS `kmem_alloc(9)` ERRORS; Solaris `kmem_alloc(9F)` NOTES).
    Null,
    /// A valid pointer to zero usable bytes (LiS: "returns a pointer to zero-sized allocated
    /// memory", LfS `kmem_alloc(9)` COMPATIBILITY).
    ZeroBytes,
}

/// What `kmem_free` does with its `size` argument.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FreeSize {
    /// The size selects the size class and is trusted; it is verified only when the arena
    /// checks (LfS: "Nothing is checked", `lfs-lis.md` §1 `kmem_free`).
    Trusted,
    /// The size must match the allocation exactly and is always verified (Solaris
    /// `kmem_alloc(9F)`: "The buffer address and size must exactly match the original
    /// allocation"; illumos `KMERR_BADSIZE`).
    Verified,
    /// The size is ignored; the allocator finds it in the hidden header (LiS: `kmem_free` is
    /// `lis_free(ptr)`, "ignores the size argument", `lfs-lis.md` §4.1).
    Ignored,
}

/// How many bytes `kmem_zalloc` clears.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ZallocZeroes {
    /// The whole extent, not only the request (LfS `kmem_zalloc(9)`: "the entire memory
    /// extent"; it zeroes `ksize(mem)`).
    Extent,
    /// Only the requested bytes (Solaris: `bzero(buf, size)`, illumos.md §1.3; LiS:
    /// `lis_zmalloc` "zeroes only nbytes", lfs-lis.md §4.1).
    Request,
}

/// The size classes behind `kmem_alloc` and the alignment each gives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SizeClasses {
    /// Power-of-two classes from `min` to `max`, each buffer aligned to its class size
    /// (LfS `kmem_alloc(9)` NOTICES: kmalloc sizes "to the enclosing power of two size greater
    /// than or equal to 32, and this memory extent will be aligned to the enclosing power of
    /// two"; "120 bytes ... 128 bytes ... aligned to a 128-byte boundary").
    PowerOfTwo {
        /// The smallest class (32 for kmalloc).
        min: usize,
        /// The largest class (131072: "will not allocate memory extents larger than 131072").
        max: usize,
    },
    /// The illumos `kmem_alloc_sizes[]` and `kmem_big_alloc_sizes[]` tables (illumos.md §1.2):
    /// 8-byte steps to 64, then 80..128, 160..256, 320..512, 640..1024, 1152, 1344, 1600,
    /// 2048, 2688, 4096, then 8192, 12288, 16384, 24576 and 32768..131072 in 8 KiB steps.
    /// Alignment 8, or 64 where the class is a multiple of 64, or 4096 where it is a multiple
    /// of the page size.
    Solaris,
}

/// What happens to a request larger than the largest size class.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Oversize {
    /// NULL, with a diagnostic (LfS: "will not allocate memory extents larger than 131072
    /// bytes. To obtain larger memory extents, use `__get_free_pages(9)`").
    Fail,
    /// Served page-granular from the pages path (Solaris: `vmem_alloc(kmem_oversize_arena)`,
    /// illumos.md §1.2; LiS: `lis_malloc` uses `get_free_pages` above `MAX_KMALLOC_SIZE`).
    Pages,
}

/// The memory layer's vendor behaviour. Every field's doc names its source.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemQuirks {
    /// The vendor's name as it appears in tables.
    pub vendor: &'static str,
    /// What size 0 returns.
    pub zero_size: ZeroSize,
    /// Whether `KM_SLEEP` is honoured. When false every allocation is a non-sleeping one
    /// that may fail, whatever the flag (LiS: `kmem_alloc` is `lis_malloc(..., GFP_ATOMIC)`,
    /// "wait_code is ignored", lfs-lis.md §4.1).
    pub honours_sleep: bool,
    /// Whether `KM_CACHEALIGN` raises small requests to a cache line (LfS slow path, lfs-lis.md
    /// §1; IRIX). False where the vendor has no such flag.
    pub honours_cachealign: bool,
    /// What `kmem_free`'s size argument means.
    pub free_size: FreeSize,
    /// How much `kmem_zalloc` clears.
    pub zalloc_zeroes: ZallocZeroes,
    /// The size classes.
    pub classes: SizeClasses,
    /// Requests above the largest class.
    pub oversize: Oversize,
    /// Bytes of hidden header in front of each returned buffer (LiS `mem_link_t`, 64 bytes
    /// on LP64; 0 elsewhere). The returned pointer is that far into the underlying extent,
    /// which is what "destroys memory alignment" means.
    pub hidden_header: usize,
    /// Requests are rounded up to a multiple of this power of two before the header is added
    /// (LiS: "Rounds nbytes up to a multiple of 16"; 1 elsewhere).
    pub round_to: usize,
    /// Bytes of trailer after the rounded request (LiS's `long` guard word `MEM_GUARD`; 0
    /// elsewhere).
    pub trailer: usize,
}

impl MemQuirks {
    /// Native semantics: Linux Fast-STREAMS `kmem_alloc(9)` (streams 0.9.2.4).
    pub const LFS: MemQuirks = MemQuirks {
        vendor: "LfS",
        zero_size: ZeroSize::Null,
        honours_sleep: true,
        honours_cachealign: true,
        free_size: FreeSize::Trusted,
        zalloc_zeroes: ZallocZeroes::Extent,
        classes: SizeClasses::PowerOfTwo { min: 32, max: 131072 },
        oversize: Oversize::Fail,
        hidden_header: 0,
        round_to: 1,
        trailer: 0,
    };

    /// The bytes of underlying extent a request of `size` needs under these quirks (before
    /// the size class rounds it up).
    pub(crate) fn chunk_request(&self, size: usize) -> usize {
        // `round_to` is a power of two (asserted when an arena is built): a mask, no division.
        ((size + self.round_to - 1) & !(self.round_to - 1)) + self.hidden_header + self.trailer
    }
}

/// The `L1_CACHE_BYTES` that `KM_CACHEALIGN` pads to.
pub const CACHE_LINE: usize = 64;

/// The page size of the pages path (`get_free_pages`, oversize requests).
pub const PAGE_SIZE: usize = 4096;
