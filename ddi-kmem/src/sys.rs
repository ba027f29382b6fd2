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

    /// Gives up the handle without freeing: the memory stays allocated for good (buffers in
    /// it may still be in use).
    pub(crate) fn leak(self) {}
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
