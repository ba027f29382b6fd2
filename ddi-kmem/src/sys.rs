//! The one module that calls the process allocator.
//!
//! Every byte an arena hands out comes from [`sys_alloc`] and goes back through [`sys_free`];
//! clippy's `disallowed-methods` (workspace `clippy.toml`) bans `std::alloc::{alloc,
//! alloc_zeroed, dealloc, realloc}` everywhere else, so size and ownership of raw memory are
//! audited here and nowhere else (crossbeam's `alloc_helper` habit).

use std::alloc::Layout;
use std::ptr::NonNull;

/// A block obtained from the process allocator, with the layout it must be returned with.
#[derive(Debug)]
pub(crate) struct SysBlock {
    pub(crate) ptr: NonNull<u8>,
    pub(crate) layout: Layout,
}

impl SysBlock {
    /// Rebuilds the owning handle of a block whose handle was given up with `mem::forget`.
    ///
    /// # Safety
    /// - `ptr` and `layout` are exactly those of a block from [`sys_alloc`] whose handle was
    ///   forgotten, and no other handle to it exists.
    pub(crate) unsafe fn from_raw(ptr: NonNull<u8>, layout: Layout) -> Self {
        SysBlock { ptr, layout }
    }

    /// Gives up the handle; the caller rebuilds it with [`SysBlock::from_raw`] to free.
    pub(crate) fn into_raw(self) -> NonNull<u8> {
        self.ptr
    }

    /// Keeps the block for good without freeing it (buffers in it may still be in use): it
    /// goes on the process-wide list of kept blocks, so the memory stays reachable, countable
    /// ([`kept_bytes`]) and is never reported as lost by leak checkers such as Miri's.
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
    #[allow(clippy::disallowed_methods)] // this is the audited funnel
    // SAFETY: `layout` has a non-zero size, asserted above.
    let raw = unsafe { std::alloc::alloc(layout) };
    NonNull::new(raw).map(|ptr| SysBlock { ptr, layout })
}

/// Returns a block to the process allocator.
///
/// # Safety
/// - `block` came from [`sys_alloc`] and has not been freed (guaranteed by ownership of
///   `SysBlock`, which is not `Clone`);
/// - no pointer into the block is used afterwards.
pub(crate) unsafe fn sys_free(block: SysBlock) {
    #[allow(clippy::disallowed_methods)] // this is the audited funnel
    // SAFETY: by the caller's contract the block was allocated by `sys_alloc` with exactly
    // `block.layout` and is freed once (the `SysBlock` is consumed here).
    unsafe {
        std::alloc::dealloc(block.ptr.as_ptr(), block.layout)
    };
}

/// Blocks kept for good after a misuse left buffers in them outstanding (an arena or cache
/// destroyed while in use).
static KEPT: std::sync::Mutex<Vec<SysBlock>> = std::sync::Mutex::new(Vec::new());

/// Bytes the process keeps for good because an arena or cache was destroyed with buffers
/// still allocated (they stay valid). Zero in a program that frees what it allocates.
pub fn kept_bytes() -> usize {
    KEPT.lock().unwrap_or_else(std::sync::PoisonError::into_inner).iter().map(|b| b.layout.size()).sum()
}
