//! The DDI/DKI functions, under their C names, acting on the current arena.
//!
//! These are the raw interface a line-by-line port calls: a nullable pointer out, a nullable
//! pointer in. New code should prefer [`KmemBuf`](crate::KmemBuf).

use crate::arena::MAX_PAGE_ORDER;
use crate::context::{state, with_current};
use crate::error::Site;
use crate::flags::{KM_CACHEALIGN, KmFlags};
use crate::quirks::PAGE_SIZE;
use std::ffi::c_void;
use std::panic::Location;
use std::ptr::NonNull;

/// Allocates kernel memory.
///
/// # Arguments
/// - `size`: the number of bytes.
/// - `flag`: [`KM_SLEEP`](crate::KM_SLEEP) to allow sleeping until memory is available, or
///   [`KM_NOSLEEP`](crate::KM_NOSLEEP) to return NULL at once; may add `KM_PHYSCONTIG`,
///   `KM_CACHEALIGN`, `KM_DMA`.
///
/// # Return
/// A pointer to at least `size` bytes, or NULL: always for `size` 0; for a request larger than
/// 131072 bytes (with a diagnostic; use [`get_free_pages`] for larger extents); for
/// `KM_NOSLEEP` when the arena's budget cannot cover the request or failure injection selects
/// it. A `KM_SLEEP` allocation sleeps until frees make room and then succeeds. The memory is
/// not zeroed (in a checking arena it holds the `0xbaddcafe` pattern). It is rounded up to a
/// power-of-two size class of 32 to 131072 bytes and aligned to that class: 120 bytes gets
/// 128 bytes aligned to 128. `KM_CACHEALIGN` starts a small request on a cache line.
///
/// # Context
/// Any context with `KM_NOSLEEP`; user context only with `KM_SLEEP`. A `KM_SLEEP` call in
/// interrupt context is reported as a misuse (and then treated as `KM_NOSLEEP`). MP-safe.
///
/// # Compatibility
/// Linux Fast-STREAMS `kmem_alloc(9)`, the native semantics. The current arena's personality
/// changes it (see `compat-solaris`, `compat-lis`):
/// - Solaris, IRIX, UnixWare return NULL for size 0 (Solaris `kmem_alloc(9F)` NOTES); HP-UX and
///   LiS return memory (LiS: "a pointer to zero-sized allocated memory", LfS COMPATIBILITY).
/// - LiS ignores `flag`: every allocation is `GFP_ATOMIC`, so `KM_SLEEP` can fail and never
///   sleeps; its hidden header "destroys memory alignment" (LfS COMPATIBILITY).
/// - Solaris guarantees only double-word alignment and serves large requests page-granular
///   (illumos `kmem_alloc`, `kmem_oversize_arena`).
/// - `KM_PHYSCONTIG` and `KM_CACHEALIGN` are IRIX's; `KM_DMA` is LfS's. Portable modules use
///   only `KM_SLEEP` and `KM_NOSLEEP`.
///
/// # Examples
/// ```
/// use ddi_kmem::{KM_NOSLEEP, KM_SLEEP, kmem_alloc, kmem_free};
///
/// assert!(kmem_alloc(0, KM_SLEEP).is_null());
/// let p = kmem_alloc(120, KM_NOSLEEP);
/// assert_eq!(p as usize % 128, 0);
/// // SAFETY: `p` came from kmem_alloc(120) and is freed once, with its size.
/// unsafe { kmem_free(p, 120) };
/// ```
#[track_caller]
#[inline]
pub fn kmem_alloc(size: usize, flag: KmFlags) -> *mut c_void {
    match fast_alloc(size, flag, false) {
        Some(p) => p.as_ptr().cast(),
        None => alloc_slow("kmem_alloc", size, flag, false, Site(Location::caller())).cast(),
    }
}

/// The fast path of `kmem_alloc` and `kmem_zalloc`: one thread-local access for the current
/// arena's table of magazines, the context, and the round. `None` sends the caller to
/// `alloc_slow`.
#[inline(always)]
fn fast_alloc(size: usize, flag: KmFlags, zero: bool) -> Option<NonNull<u8>> {
    // SAFETY: `st` is used only within this call.
    let st = unsafe { state() };
    let t = st.fast_table()?;
    if flag.bits() & KM_CACHEALIGN.bits() != 0 || (flag.may_sleep() && st.in_interrupt()) {
        return None;
    }
    // SAFETY: `fast` is this thread's table for the current arena, which is plain (only such
    // a table is `fast`) and alive (held by the thread's entered arenas, or the default).
    unsafe { t.alloc(size, zero) }
}

/// Everything the fast path does not serve: sets up the fast path if it can (the thread's
/// first allocation in a plain arena) and retries it, else the general path.
#[cold]
#[inline(never)]
fn alloc_slow(call: &'static str, size: usize, flag: KmFlags, zero: bool, site: Site) -> *mut u8 {
    // SAFETY: `st` is used only within this call.
    let st = unsafe { state() };
    if st.fast_table().is_none() && st.install_fast() {
        if let Some(p) = fast_alloc(size, flag, zero) {
            return p.as_ptr();
        }
    }
    with_current(|a| a.alloc_general(call, size, flag, zero, site))
}

/// Allocates zeroed kernel memory.
///
/// # Arguments
/// As [`kmem_alloc`].
///
/// # Return
/// As [`kmem_alloc`], with the memory zero-filled: natively the whole extent, not only the
/// requested bytes (LfS `kmem_zalloc(9)`: it zeroes `ksize(mem)`).
///
/// # Context
/// As [`kmem_alloc`].
///
/// # Compatibility
/// As [`kmem_alloc`]; Solaris (`bzero(buf, size)`) and LiS (`lis_zmalloc`) zero only the
/// requested bytes.
///
/// # Examples
/// ```
/// use ddi_kmem::{KM_SLEEP, kmem_free, kmem_zalloc};
///
/// let p = kmem_zalloc(100, KM_SLEEP).cast::<u8>();
/// // SAFETY: the extent of a 100-byte request is 128 bytes, all zeroed.
/// let extent = unsafe { std::slice::from_raw_parts(p, 128) };
/// assert!(extent.iter().all(|&b| b == 0));
/// // SAFETY: `p` came from kmem_zalloc(100) and is freed once, with its size.
/// unsafe { kmem_free(p.cast(), 100) };
/// ```
#[track_caller]
pub fn kmem_zalloc(size: usize, flag: KmFlags) -> *mut c_void {
    match fast_alloc(size, flag, true) {
        Some(p) => p.as_ptr().cast(),
        None => alloc_slow("kmem_zalloc", size, flag, true, Site(Location::caller())).cast(),
    }
}

/// Frees kernel memory.
///
/// # Arguments
/// - `buf`: what [`kmem_alloc`] or [`kmem_zalloc`] returned, or NULL.
/// - `size`: the size it was allocated with.
///
/// # Return
/// Nothing. `kmem_free(NULL, 0)` is legal and does nothing. A free that makes room in the
/// arena's budget wakes the `KM_SLEEP` allocations waiting for it.
///
/// # Context
/// Any: user, interrupt or kernel context. MP-safe.
///
/// # Compatibility
/// LfS does not check the size (`kfree(addr)`), Solaris requires it to "exactly match the
/// original allocation" and checks it, LiS ignores it ("ignores the size argument",
/// `kmem_free(9)` COMPATIBILITY).
///
/// # Safety
/// Unless the current arena checks (see [`Checking`](crate::Checking)):
/// - `buf` is NULL with `size` 0, or a buffer returned by [`kmem_alloc`] or [`kmem_zalloc`] in
///   the current arena that has not been freed, and `size` is the size it was allocated with
///   (any size where the personality ignores it);
/// - `buf` is not used after this call.
///
/// In a checking arena each violation (wrong size, double free, foreign or interior pointer,
/// NULL with a size, a write past the requested size) is reported instead, and the arena's
/// memory is not corrupted; code must still not rely on that. NULL with a non-zero size, or a
/// non-NULL buffer with a size no allocation can have, is reported in every arena.
#[track_caller]
#[inline]
pub unsafe fn kmem_free(buf: *mut c_void, size: usize) {
    let buf = buf.cast::<u8>();
    // SAFETY: `st` is used only within this call.
    let st = unsafe { state() };
    if let (Some(t), Some(p)) = (st.fast_table(), NonNull::new(buf)) {
        // SAFETY: `fast` is this thread's table for the current arena, plain and alive (as
        // in `fast_alloc`); by the contract `p` is a live buffer of that arena allocated with
        // `size` bytes, not used after.
        if unsafe { t.free(p, size) } {
            return;
        }
    }
    // SAFETY: forwarded contract.
    unsafe { free_slow(buf, size, Site(Location::caller())) }
}

/// Everything the fast path of `kmem_free` does not serve (see `alloc_slow`).
///
/// # Safety
/// As [`kmem_free`].
#[cold]
#[inline(never)]
unsafe fn free_slow(buf: *mut u8, size: usize, site: Site) {
    // SAFETY: `st` is used only within this call.
    let st = unsafe { state() };
    if let Some(p) = NonNull::new(buf) {
        if st.fast_table().is_none() && st.install_fast() {
            if let Some(t) = st.fast_table() {
                // SAFETY: as in `kmem_free`, under its contract (forwarded).
                if unsafe { t.free(p, size) } {
                    return;
                }
            }
        }
    }
    // SAFETY: forwarded contract.
    with_current(|a| unsafe { a.free("kmem_free", buf, size, site) })
}

/// Allocates `2^order` physically contiguous, page-aligned pages.
///
/// # Arguments
/// - `flags`: `KM_SLEEP` or `KM_NOSLEEP` (the Linux `gfp_mask`: `GFP_KERNEL` or `GFP_ATOMIC`).
/// - `order`: log2 of the number of 4096-byte pages, at most [`MAX_PAGE_ORDER`].
///
/// # Return
/// The first page, or NULL when `order` is too large or, for `KM_NOSLEEP`, when the budget
/// cannot cover it. The memory is not zeroed.
///
/// # Context
/// As [`kmem_alloc`].
///
/// # Compatibility
/// Linux `__get_free_pages(gfp_mask, order)`, which LfS `kmem_alloc(9)` names for extents
/// larger than 131072 bytes. Budget, failure injection and checking apply as to `kmem_alloc`.
///
/// # Examples
/// ```
/// use ddi_kmem::{KM_SLEEP, free_pages, get_free_pages};
///
/// let p = get_free_pages(KM_SLEEP, 6); // 256 KiB
/// assert_eq!(p as usize % 4096, 0);
/// // SAFETY: `p` came from get_free_pages(_, 6) and is freed once, with its order.
/// unsafe { free_pages(p, 6) };
/// ```
#[track_caller]
pub fn get_free_pages(flags: KmFlags, order: u32) -> *mut c_void {
    if order > MAX_PAGE_ORDER {
        tracing::warn!(order, "get_free_pages: order above MAX_PAGE_ORDER: NULL");
        return std::ptr::null_mut();
    }
    let site = Site(Location::caller());
    with_current(|a| a.alloc_pages("get_free_pages", PAGE_SIZE << order, flags, site)).cast()
}

/// Frees pages from [`get_free_pages`].
///
/// # Arguments
/// - `addr`: the first page, or NULL (ignored).
/// - `order`: the order it was allocated with.
///
/// # Return
/// Nothing.
///
/// # Context
/// Any.
///
/// # Compatibility
/// Linux `free_pages(addr, order)`.
///
/// An order above [`MAX_PAGE_ORDER`] cannot have been allocated: it is reported as an
/// invalid free in every arena, and the pages are left alone.
///
/// # Safety
/// Unless the current arena checks: `addr` came from [`get_free_pages`] with `order` in the
/// current arena, has not been freed, and is not used afterwards.
#[track_caller]
pub unsafe fn free_pages(addr: *mut c_void, order: u32) {
    let Some(p) = NonNull::new(addr.cast::<u8>()) else { return };
    let site = Site(Location::caller());
    if order > MAX_PAGE_ORDER {
        return with_current(|a| a.invalid_free("free_pages", p, usize::MAX));
    }
    let bytes = PAGE_SIZE << order;
    // SAFETY: forwarded contract.
    with_current(|a| unsafe { a.free_pages("free_pages", p, bytes, site) })
}
