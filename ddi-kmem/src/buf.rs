//! [`KmemBuf`]: a safe owning kernel-memory buffer.

use crate::arena::Arena;
use crate::context::current_arena;
use crate::flags::KmFlags;
use std::fmt;
use std::ops::{Deref, DerefMut};
use std::ptr::NonNull;

/// A buffer from an arena that frees itself, with the right size, when dropped.
///
/// It derefs to its bytes, cannot be freed twice (freeing is its `Drop`), and keeps its arena
/// alive. It never exposes uninitialised memory: it is created zeroed or copied.
///
/// # Examples
/// ```
/// use ddi_kmem::{KM_SLEEP, KmemBuf};
///
/// let mut buf = KmemBuf::zeroed(100, KM_SLEEP).expect("KM_SLEEP succeeds");
/// buf[..5].copy_from_slice(b"hello");
/// assert_eq!(&buf[..5], b"hello");
/// assert_eq!(buf.len(), 100);
/// ```
pub struct KmemBuf {
    ptr: NonNull<u8>,
    len: usize,
    arena: Arena,
}

// SAFETY: the buffer owns its bytes exclusively; freeing from another thread is allowed
// (kmem_free may be called from any context).
unsafe impl Send for KmemBuf {}
// SAFETY: shared access only reads the bytes.
unsafe impl Sync for KmemBuf {}

impl KmemBuf {
    /// `size` zeroed bytes from the current arena, or `None` where `kmem_zalloc` returns
    /// NULL (size 0 under most personalities, `KM_NOSLEEP` under pressure, ...).
    #[track_caller]
    pub fn zeroed(size: usize, flags: KmFlags) -> Option<Self> {
        Self::zeroed_in(&current_arena(), size, flags)
    }

    /// `size` zeroed bytes from `arena`.
    #[track_caller]
    pub fn zeroed_in(arena: &Arena, size: usize, flags: KmFlags) -> Option<Self> {
        let ptr = NonNull::new(arena.zalloc(size, flags))?;
        Some(KmemBuf { ptr, len: size, arena: arena.clone() })
    }

    /// A copy of `bytes` in the current arena.
    #[track_caller]
    pub fn copy_from(bytes: &[u8], flags: KmFlags) -> Option<Self> {
        let arena = current_arena();
        let ptr = NonNull::new(arena.alloc(bytes.len(), flags))?;
        // SAFETY: the new buffer holds at least `bytes.len()` bytes and cannot overlap `bytes`.
        unsafe { ptr.as_ptr().copy_from_nonoverlapping(bytes.as_ptr(), bytes.len()) };
        Some(KmemBuf { ptr, len: bytes.len(), arena })
    }

    /// The arena the buffer belongs to.
    pub fn arena(&self) -> &Arena {
        &self.arena
    }

    /// Gives up ownership: the raw pointer and size a C-style caller frees with `kmem_free`
    /// in the same arena.
    pub fn into_raw(self) -> (*mut u8, usize) {
        let me = std::mem::ManuallyDrop::new(self);
        // SAFETY: `me` is never dropped, so the arena handle is moved out exactly once.
        drop(unsafe { std::ptr::read(&me.arena) });
        (me.ptr.as_ptr(), me.len)
    }

    /// Takes ownership of a buffer from [`kmem_alloc`](crate::kmem_alloc) or
    /// [`kmem_zalloc`](crate::kmem_zalloc) in `arena`.
    ///
    /// # Safety
    /// - `ptr` is a live, unfreed buffer of `arena` allocated with `size` bytes, whose first
    ///   `size` bytes are initialised (written, or from `kmem_zalloc`);
    /// - nothing else frees or uses it afterwards.
    pub unsafe fn from_raw(arena: &Arena, ptr: NonNull<u8>, size: usize) -> Self {
        KmemBuf { ptr, len: size, arena: arena.clone() }
    }
}

impl Deref for KmemBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: `len` initialised bytes owned by this buffer (zeroed or copied at creation).
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl DerefMut for KmemBuf {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `deref`, and `&mut self` makes the access exclusive.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for KmemBuf {
    #[track_caller]
    fn drop(&mut self) {
        // SAFETY: the buffer was allocated in `self.arena` with `self.len` bytes and is freed
        // only here, once.
        unsafe { self.arena.free(self.ptr.as_ptr(), self.len) };
    }
}

impl fmt::Debug for KmemBuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KmemBuf")
            .field("ptr", &self.ptr)
            .field("len", &self.len)
            .field("arena", &self.arena.name())
            .finish()
    }
}
