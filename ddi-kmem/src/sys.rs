//! The one module that calls the process allocator.
//!
//! Every byte an arena hands out comes from [`sys_alloc`] and goes back through [`sys_free`];
//! clippy's `disallowed-methods` (workspace `clippy.toml`) bans `std::alloc::{alloc,
//! alloc_zeroed, dealloc, realloc}` everywhere else, so size and ownership of raw memory are
//! audited here and nowhere else (crossbeam's `alloc_helper` habit).
//!
//! **The process allocator is the system allocator** ([`std::alloc::System`]: glibc `malloc`
//! on Linux), called directly rather than through `std::alloc::alloc`, which would go to
//! whatever `#[global_allocator]` the program installed. kmem sits beside the global
//! allocator, never on top of it; that is what lets [`KmemGlobal`](crate::KmemGlobal) *be* the
//! global allocator without kmem's own slabs coming back into it. The adapter's fallback to
//! the system (`system_*` below) goes through this module for the same reason.
//!
//! Slabs of the global adapter's arena are registered in the process-wide granule map
//! (`granule.rs`) by [`sys_alloc_granules`] and unregistered by [`sys_free`] before their
//! memory goes back, so [`in_kmem_granule`] tells kmem's pointers from the system's.

use crate::granule::{GRANULE, ProcessMap, ProcessMapPtr};
use std::alloc::{GlobalAlloc, Layout, System};
use std::ptr::NonNull;

/// A block obtained from the process allocator, with the layout it must be returned with.
#[derive(Debug)]
pub(crate) struct SysBlock {
    pub(crate) ptr: NonNull<u8>,
    pub(crate) layout: Layout,
    /// Registered in the granule map ([`sys_alloc_granules`]); [`sys_free`] unregisters it.
    granules: bool,
}

impl SysBlock {
    /// Rebuilds the owning handle of a block whose handle was given up with `mem::forget`.
    ///
    /// # Safety
    /// - `ptr` and `layout` are exactly those of a block from [`sys_alloc`] or
    ///   [`sys_alloc_zeroed`] whose handle was forgotten, and no other handle to it exists;
    /// - the block was not registered in the granule map (a handle given up with
    ///   `mem::forget` is only ever that of a page or leaf block).
    pub(crate) unsafe fn from_raw(ptr: NonNull<u8>, layout: Layout) -> Self {
        SysBlock { ptr, layout, granules: false }
    }

    /// Gives up the handle; the caller rebuilds it with [`SysBlock::from_raw`] to free.
    pub(crate) fn into_raw(self) -> NonNull<u8> {
        debug_assert!(!self.granules, "internal: a registered slab's handle is never given up");
        self.ptr
    }

    /// Keeps the block for good without freeing it (buffers in it may still be in use): it
    /// goes on the process-wide list of kept blocks, so the memory stays reachable, countable
    /// ([`kept_bytes`]) and is never reported as lost by leak checkers such as Miri's. A
    /// registered slab stays registered: its buffers are still kmem's.
    pub(crate) fn leak(self) {
        KEPT.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(self);
    }
}

// SAFETY: a `SysBlock` is an owning handle to raw bytes; nothing in it is tied to a thread.
unsafe impl Send for SysBlock {}

/// Allocates `layout` from the process allocator; `None` when it refuses.
///
/// `layout` must have a non-zero size (asserted: a zero-size layout is a bug in this crate).
pub(crate) fn sys_alloc(layout: Layout) -> Option<SysBlock> {
    assert!(layout.size() != 0, "internal: zero-size sys_alloc");
    // SAFETY: `layout` has a non-zero size, asserted above.
    let raw = unsafe { System.alloc(layout) };
    NonNull::new(raw).map(|ptr| SysBlock { ptr, layout, granules: false })
}

/// Allocates zeroed `layout` from the process allocator; `None` when it refuses.
///
/// `layout` must have a non-zero size (asserted).
pub(crate) fn sys_alloc_zeroed(layout: Layout) -> Option<SysBlock> {
    assert!(layout.size() != 0, "internal: zero-size sys_alloc_zeroed");
    // SAFETY: `layout` has a non-zero size, asserted above.
    let raw = unsafe { System.alloc_zeroed(layout) };
    NonNull::new(raw).map(|ptr| SysBlock { ptr, layout, granules: false })
}

/// The granules of the slabs kmem's global adapter owns (`granule.rs`).
#[cfg(not(loom))]
static GRANULES: ProcessMap = ProcessMap::new();

/// Under loom the map's atomics are loom's, which are not `const` and may only be used inside
/// a model; the process-wide map is touched only by the global adapter's arena, which no loom
/// build uses (`tests/global_alloc.rs` is not built with `--cfg loom`), so it is never forced.
#[cfg(loom)]
static GRANULES: std::sync::LazyLock<ProcessMap> = std::sync::LazyLock::new(ProcessMap::new);

/// The handle through which the process-wide map is used (`granule.rs`: why a handle).
#[inline(always)]
fn granules() -> ProcessMapPtr {
    #[cfg(not(loom))]
    let map = &raw const GRANULES;
    #[cfg(loom)]
    let map = std::ptr::from_ref(&*GRANULES);
    // SAFETY: a static lives, unmoved, for the whole program.
    unsafe { ProcessMapPtr::new(map) }
}

/// Allocates a slab registered in the granule map: `layout` must be a whole number of
/// granules long and granule-aligned (asserted), so every granule it touches is its own.
/// `None` when the process allocator refuses, or when the block lies above the addresses the
/// map covers (it is given back).
pub(crate) fn sys_alloc_granules(layout: Layout) -> Option<SysBlock> {
    assert!(
        layout.size() % GRANULE == 0 && layout.align() >= GRANULE,
        "internal: a registered slab must be whole granules, granule-aligned"
    );
    let mut block = sys_alloc(layout)?;
    if !granules().insert(block.ptr, layout.size()) {
        // SAFETY: the block was allocated just above and never handed out.
        unsafe { sys_free(block) };
        return None;
    }
    block.granules = true;
    Some(block)
}

/// Whether `addr` lies in a slab registered by [`sys_alloc_granules`] (lock-free: two
/// dependent loads).
#[inline]
pub(crate) fn in_kmem_granule(addr: usize) -> bool {
    granules().contains(addr)
}

/// A pointer to `addr` with the provenance of the registered slab holding it, or `None` if
/// no registered slab holds it (`granule.rs`: why the provenance matters).
#[inline]
pub(crate) fn kmem_granule_ptr(addr: usize) -> Option<NonNull<u8>> {
    granules().lookup(addr)
}

/// Returns a block to the process allocator.
///
/// # Safety
/// - `block` came from [`sys_alloc`], [`sys_alloc_zeroed`] or [`sys_alloc_granules`] and has
///   not been freed (guaranteed by ownership of `SysBlock`, which is not `Clone`);
/// - no pointer into the block is used afterwards.
pub(crate) unsafe fn sys_free(block: SysBlock) {
    if block.granules {
        // Before the memory goes back, so no later system block is mistaken for kmem's
        // (`granule.rs`, "Synchronization").
        granules().remove(block.ptr.as_ptr().addr(), block.layout.size());
    }
    // SAFETY: by the caller's contract the block was allocated from `System` with exactly
    // `block.layout` and is freed once (the `SysBlock` is consumed here).
    unsafe { System.dealloc(block.ptr.as_ptr(), block.layout) };
}

/// The global adapter's fallback: `System.alloc` (the system allocator's own contract).
///
/// # Safety
/// - `layout` has a non-zero size.
#[inline]
pub(crate) unsafe fn system_alloc(layout: Layout) -> *mut u8 {
    // SAFETY: forwarded contract.
    unsafe { System.alloc(layout) }
}

/// The global adapter's fallback: `System.alloc_zeroed`.
///
/// # Safety
/// - `layout` has a non-zero size.
#[inline]
pub(crate) unsafe fn system_alloc_zeroed(layout: Layout) -> *mut u8 {
    // SAFETY: forwarded contract.
    unsafe { System.alloc_zeroed(layout) }
}

/// The global adapter's fallback: `System.dealloc`.
///
/// # Safety
/// - `ptr` came from [`system_alloc`], [`system_alloc_zeroed`] or [`system_realloc`] with
///   `layout` (the last layout it was given) and is not used afterwards.
#[inline]
pub(crate) unsafe fn system_dealloc(ptr: *mut u8, layout: Layout) {
    // SAFETY: forwarded contract.
    unsafe { System.dealloc(ptr, layout) }
}

/// The global adapter's fallback: `System.realloc`.
///
/// # Safety
/// - As [`system_dealloc`] for `ptr` and `layout`; `new_size` is non-zero and, rounded up to
///   `layout.align()`, does not overflow `isize`.
#[inline]
pub(crate) unsafe fn system_realloc(ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
    // SAFETY: forwarded contract.
    unsafe { System.realloc(ptr, layout, new_size) }
}

/// Blocks kept for good after a misuse left buffers in them outstanding (an arena or cache
/// destroyed while in use).
static KEPT: std::sync::Mutex<Vec<SysBlock>> = std::sync::Mutex::new(Vec::new());

/// Bytes the process keeps for good because an arena or cache was destroyed with buffers
/// still allocated (they stay valid). Zero in a program that frees what it allocates.
pub fn kept_bytes() -> usize {
    KEPT.lock().unwrap_or_else(std::sync::PoisonError::into_inner).iter().map(|b| b.layout.size()).sum()
}
