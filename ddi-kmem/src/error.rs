//! Misuse reports.

use std::fmt;
use std::panic::Location;

/// Where a buffer was allocated or freed (the `audit` check records it; `#[track_caller]`
/// on the DDI functions makes it the caller's source line).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Site(pub &'static Location<'static>);

impl fmt::Debug for Site {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for Site {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.0.file(), self.0.line(), self.0.column())
    }
}

/// ", allocated at FILE:LINE" when the site is known.
struct At(&'static str, Option<Site>);

impl fmt::Display for At {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.1 {
            Some(site) => write!(f, "; {} at {site}", self.0),
            None => Ok(()),
        }
    }
}

/// A misuse of the kernel memory interface, detected and reported.
///
/// The wording follows illumos `kmem_error()` (illumos.md §1.5), prefixed with the DDI call
/// that was misused. Each variant names the call, the buffer address and the sizes involved.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KmemError {
    /// `kmem_free` with a size other than the allocation's (illumos `KMERR_BADSIZE`).
    #[error("{call}: bad free: free size ({free_size}) != alloc size ({alloc_size}), buffer={addr:#x}{}", At("allocated", *.allocated_at))]
    BadSize {
        /// The DDI call.
        call: &'static str,
        /// The buffer.
        addr: usize,
        /// The size the caller passed.
        free_size: usize,
        /// The size it was allocated with.
        alloc_size: usize,
        /// Where it was allocated (audit).
        allocated_at: Option<Site>,
    },
    /// A buffer freed twice (illumos `KMERR_DUPFREE`).
    #[error("{call}: duplicate free: buffer freed twice, buffer={addr:#x} size={size}{}{}", At("allocated", *.allocated_at), At("first freed", *.freed_at))]
    DuplicateFree {
        /// The DDI call.
        call: &'static str,
        /// The buffer.
        addr: usize,
        /// The size the caller passed.
        size: usize,
        /// Where it was allocated (audit).
        allocated_at: Option<Site>,
        /// Where it was first freed (audit).
        freed_at: Option<Site>,
    },
    /// A pointer this arena never returned (illumos `KMERR_BADADDR`).
    #[error("{call}: invalid free: buffer not allocated by arena '{arena}', buffer={addr:#x} size={size}")]
    InvalidFree {
        /// The DDI call.
        call: &'static str,
        /// The arena's name.
        arena: String,
        /// The pointer.
        addr: usize,
        /// The size the caller passed.
        size: usize,
    },
    /// A buffer freed to another cache than the one it came from (illumos `KMERR_BADCACHE`),
    /// or a cache buffer passed to `kmem_free` and the reverse.
    #[error("{call}: buffer freed to wrong cache: buffer={addr:#x} was allocated from {allocated_from}, caller attempting free to {freed_to}{}", At("allocated", *.allocated_at))]
    BadCache {
        /// The DDI call.
        call: &'static str,
        /// The buffer.
        addr: usize,
        /// Where it came from (`kmem_alloc` or `cache 'NAME'`).
        allocated_from: String,
        /// Where the caller freed it.
        freed_to: String,
        /// Where it was allocated (audit).
        allocated_at: Option<Site>,
    },
    /// `kmem_cache_destroy` of a cache whose buffers are still allocated (illumos:
    /// "kmem_cache_destroy: '%s' (%p) not empty"). The buffers stay valid; the cache's memory
    /// is kept until they could no longer be used.
    #[error("kmem_cache_destroy: cache '{cache}' not empty: {buffers} buffers still allocated")]
    CacheNotEmpty {
        /// The cache's name.
        cache: String,
        /// Buffers still allocated.
        buffers: usize,
    },
    /// A pointer into the middle of a buffer (illumos `KMERR_BADBASE`).
    #[error("{call}: bad free: free address ({addr:#x}) != alloc address ({base:#x}), alloc size {alloc_size}{}", At("allocated", *.allocated_at))]
    BadBase {
        /// The DDI call.
        call: &'static str,
        /// The pointer the caller passed.
        addr: usize,
        /// The start of the buffer it points into.
        base: usize,
        /// That buffer's size.
        alloc_size: usize,
        /// Where it was allocated (audit).
        allocated_at: Option<Site>,
    },
    /// `kmem_free(NULL, size)` with a non-zero size: only `kmem_free(NULL, 0)` is legal.
    #[error("{call}: invalid free: NULL buffer with size {size} (only kmem_free(NULL, 0) is legal)")]
    NullFree {
        /// The DDI call.
        call: &'static str,
        /// The size the caller passed.
        size: usize,
    },
    /// Bytes past the requested size were written (illumos `KMERR_REDZONE`).
    #[error("{call}: redzone violation: write past end of buffer, buffer={addr:#x} size={size}: byte at offset {offset:#x} is {found:#04x}, expected {expected:#04x}{}", At("allocated", *.allocated_at))]
    Redzone {
        /// The DDI call that found it.
        call: &'static str,
        /// The buffer.
        addr: usize,
        /// Its requested size.
        size: usize,
        /// The first damaged byte, from the buffer's start.
        offset: usize,
        /// What is there.
        found: u8,
        /// What should be there.
        expected: u8,
        /// Where it was allocated (audit).
        allocated_at: Option<Site>,
    },
    /// A freed buffer was written to (illumos `KMERR_MODIFIED`).
    #[error("{call}: buffer modified after being freed, buffer={addr:#x} size={size}: modification at offset {offset:#x} ({expected:#04x} replaced by {found:#04x}){}{}", At("allocated", *.allocated_at), At("freed", *.freed_at))]
    ModifiedAfterFree {
        /// The call that found it (`kmem_alloc` reusing the buffer, or `Arena::verify`).
        call: &'static str,
        /// The buffer.
        addr: usize,
        /// Its size when it was allocated.
        size: usize,
        /// The first modified byte.
        offset: usize,
        /// The free pattern's byte.
        expected: u8,
        /// What is there now.
        found: u8,
        /// Where it was allocated (audit).
        allocated_at: Option<Site>,
        /// Where it was freed (audit).
        freed_at: Option<Site>,
    },
    /// A sleeping allocation from interrupt context (kmem_alloc(9F) CONTEXT: "can be called
    /// from interrupt context only if the KM_NOSLEEP flag is set").
    #[error(
        "{call}: KM_SLEEP allocation of {size} bytes from interrupt context (only KM_NOSLEEP is allowed there); treated as KM_NOSLEEP"
    )]
    SleepInInterrupt {
        /// The DDI call.
        call: &'static str,
        /// The requested size.
        size: usize,
    },
    /// A `KM_SLEEP` request larger than the arena's whole budget: it would sleep forever.
    #[error(
        "{call}: KM_SLEEP allocation of {size} bytes ({extent} with rounding) can never fit arena '{arena}' budget of {budget} bytes; it would sleep forever"
    )]
    SleepNeverSatisfiable {
        /// The DDI call.
        call: &'static str,
        /// The arena's name.
        arena: String,
        /// The requested size.
        size: usize,
        /// The bytes it needs after size-class rounding.
        extent: usize,
        /// The budget.
        budget: usize,
    },
}
