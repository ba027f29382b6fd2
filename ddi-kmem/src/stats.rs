//! Per-arena and per-size-class statistics.

use crate::sync::{AtomicU64, AtomicUsize, Ordering};
use crossbeam_utils::CachePadded;

/// Counters of one size class, padded to a cache line so classes used by different threads
/// do not share lines.
#[derive(Debug, Default)]
pub(crate) struct ClassCounters {
    pub(crate) allocs: AtomicU64,
    pub(crate) frees: AtomicU64,
    pub(crate) failures: AtomicU64,
    pub(crate) sleeps: AtomicU64,
    pub(crate) in_use: AtomicUsize,
    pub(crate) high_water: AtomicUsize,
}

pub(crate) type PaddedCounters = CachePadded<ClassCounters>;

impl ClassCounters {
    #[inline]
    pub(crate) fn on_alloc(&self) {
        self.allocs.fetch_add(1, Ordering::Relaxed);
        let n = self.in_use.fetch_add(1, Ordering::Relaxed) + 1;
        self.high_water.fetch_max(n, Ordering::Relaxed);
    }

    #[inline]
    pub(crate) fn on_free(&self) {
        self.frees.fetch_add(1, Ordering::Relaxed);
        self.in_use.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A snapshot of one size class's statistics.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClassStats {
    /// The class's buffer size in bytes, or `None` for the page-granular path.
    pub size: Option<usize>,
    /// Successful allocations.
    pub allocations: u64,
    /// Frees.
    pub frees: u64,
    /// Allocations that returned NULL.
    pub failures: u64,
    /// Times an allocation slept waiting for the budget.
    pub sleeps: u64,
    /// Buffers currently allocated.
    pub buffers_in_use: usize,
    /// The most buffers allocated at once.
    pub high_water: usize,
}

/// A snapshot of an arena's statistics.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArenaStats {
    /// The arena's name.
    pub name: String,
    /// Bytes currently allocated, counted by extent (size-class or page rounding included).
    pub bytes_in_use: usize,
    /// The most bytes allocated at once.
    pub high_water: usize,
    /// The byte budget, if any.
    pub budget: Option<usize>,
    /// Successful allocations, all classes.
    pub allocations: u64,
    /// Frees, all classes.
    pub frees: u64,
    /// Allocations that returned NULL (size 0 under a NULL-returning personality excluded).
    pub failures: u64,
    /// Times allocations slept.
    pub sleeps: u64,
    /// Failures that injection caused (included in `failures`).
    pub injected: u64,
    /// Misuses detected.
    pub errors: u64,
    /// Per class, smallest first; the last entry is the page-granular path.
    pub classes: Vec<ClassStats>,
}

impl ArenaStats {
    /// The statistics of the class whose buffers are `size` bytes.
    pub fn class(&self, size: usize) -> Option<&ClassStats> {
        self.classes.iter().find(|c| c.size == Some(size))
    }
}

impl std::fmt::Display for ArenaStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "arena '{}': {} bytes in use (high water {}), budget {}, {} allocs, {} frees, {} failures ({} injected), {} sleeps, {} errors",
            self.name,
            self.bytes_in_use,
            self.high_water,
            self.budget.map_or_else(|| "none".to_string(), |b| b.to_string()),
            self.allocations,
            self.frees,
            self.failures,
            self.injected,
            self.sleeps,
            self.errors
        )?;
        writeln!(
            f,
            "{:>8} {:>10} {:>10} {:>8} {:>7} {:>7} {:>7}",
            "class", "allocs", "frees", "fail", "sleeps", "in use", "max"
        )?;
        for c in self.classes.iter().filter(|c| c.allocations + c.failures > 0) {
            let name = c.size.map_or_else(|| "pages".to_string(), |s| s.to_string());
            writeln!(
                f,
                "{name:>8} {:>10} {:>10} {:>8} {:>7} {:>7} {:>7}",
                c.allocations, c.frees, c.failures, c.sleeps, c.buffers_in_use, c.high_water
            )?;
        }
        Ok(())
    }
}

/// A snapshot of one object cache's statistics (illumos `kmem_cache` kstats, abridged).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CacheStats {
    /// The cache's name.
    pub name: String,
    /// Buffer size.
    pub buf_size: usize,
    /// Buffer alignment.
    pub align: usize,
    /// Successful allocations.
    pub allocations: u64,
    /// Frees.
    pub frees: u64,
    /// Allocations that returned NULL.
    pub failures: u64,
    /// Buffers currently allocated.
    pub buffers_in_use: usize,
    /// The most buffers seen allocated at once (sampled below the magazine layer).
    pub high_water: usize,
    /// Rounds per magazine.
    pub magazine_rounds: usize,
    /// Full magazines in the depot.
    pub depot_full: usize,
    /// Empty magazines in the depot.
    pub depot_empty: usize,
    /// Buffers carved from slabs (constructed or not, in use or not).
    pub slab_buffers: usize,
}
