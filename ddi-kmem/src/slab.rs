//! The slab layer: raw (unconstructed) buffers carved from slabs.
//!
//! Each cache keeps the free buffers of its slabs on a LIFO list, behind the magazine layer
//! (`magazine.rs`), which it only reaches on a magazine and depot miss. A slab is one block
//! from [`crate::sys`] aligned to the class's alignment and carved into equal buffers, so each
//! buffer is aligned as the class promises. Slabs go back to the process allocator when the
//! arena is dropped with nothing outstanding.

use crate::class::Class;
use crate::granule::GRANULE;
use crate::sync::Mutex;
use crate::sys::{SysBlock, sys_alloc, sys_alloc_granules, sys_free};
use std::alloc::Layout;
use std::ptr::NonNull;

/// Target slab size: small classes carve many buffers from one block; a class larger than
/// this gets a slab of one buffer. 64 KiB keeps the per-slab overhead (one `SysBlock`
/// record) under 0.1% for the smallest classes without holding much idle memory per class.
const SLAB_BYTES: usize = 64 * 1024;

#[derive(Debug, Default)]
struct Lists {
    free: Vec<NonNull<u8>>,
    slabs: Vec<SysBlock>,
    /// Slabs are whole granules, registered in the granule map (the global adapter's arena,
    /// `global.rs`), so a pointer tells by its address that it is this layer's.
    granules: bool,
}

/// One cache's slab layer.
#[derive(Debug)]
pub(crate) struct SlabLayer {
    pub(crate) class: Class,
    lists: Mutex<Lists>,
}

// SAFETY: the raw pointers in `Lists` are free buffers owned by the cache, only handed out
// under the lock; they carry no thread affinity.
unsafe impl Send for SlabLayer {}
// SAFETY: all access to the pointers goes through the mutex.
unsafe impl Sync for SlabLayer {}

impl SlabLayer {
    pub(crate) fn new(class: Class) -> Self {
        SlabLayer { class, lists: Mutex::new(Lists::default()) }
    }

    /// A free buffer of this class, or `None` when the process allocator refuses a new slab.
    #[inline]
    pub(crate) fn alloc(&self) -> Option<NonNull<u8>> {
        let mut l = self.lists.lock();
        if let Some(p) = l.free.pop() {
            return Some(p);
        }
        self.grow(&mut l)?;
        l.free.pop()
    }

    /// Returns a buffer to the class.
    ///
    /// # Safety
    /// - `p` was returned by [`SlabLayer::alloc`] of this same cache and is not free.
    #[inline]
    pub(crate) unsafe fn free(&self, p: NonNull<u8>) {
        self.lists.lock().free.push(p);
    }

    /// From now on, slabs are granule-aligned whole granules registered in the granule map
    /// (`granule.rs`). Set before the first allocation.
    pub(crate) fn register_granules(&self) {
        let mut l = self.lists.lock();
        debug_assert!(l.slabs.is_empty(), "internal: granule registration after the first slab");
        l.granules = true;
    }

    /// Buffers carved from slabs so far.
    pub(crate) fn buffers(&self) -> usize {
        self.lists.lock().slabs.iter().map(|s| s.layout.size() / self.class.size).sum()
    }

    /// Whether `p` lies in one of this class's slabs (a linear scan: used only on the rare
    /// path that must tell a small `KM_CACHEALIGN` buffer from a plain one).
    pub(crate) fn owns(&self, p: NonNull<u8>) -> bool {
        let a = p.as_ptr().addr();
        self.lists.lock().slabs.iter().any(|s| {
            let base = s.ptr.as_ptr().addr();
            (base..base + s.layout.size()).contains(&a)
        })
    }

    #[cold]
    fn grow(&self, l: &mut Lists) -> Option<()> {
        let size = self.class.size;
        let slab = SLAB_BYTES.max(size) / size * size;
        let block = if l.granules {
            // Whole granules, so that no other block shares one (the tail past the last
            // buffer, if the class does not divide it, stays unused).
            let bytes = slab.next_multiple_of(GRANULE);
            sys_alloc_granules(Layout::from_size_align(bytes, self.class.align.max(GRANULE)).ok()?)?
        } else {
            sys_alloc(Layout::from_size_align(slab, self.class.align).ok()?)?
        };
        let n = block.layout.size() / size;
        l.free.reserve(n);
        // Highest address first, so the lowest is handed out first.
        for i in (0..n).rev() {
            // SAFETY: `i * size < slab`, inside the block just allocated.
            l.free.push(unsafe { block.ptr.add(i * size) });
        }
        l.slabs.push(block);
        Some(())
    }

    /// Releases the slabs. Called when the arena is dropped with nothing outstanding.
    ///
    /// # Safety
    /// - No buffer of this cache is in use.
    pub(crate) unsafe fn release(&self) {
        let mut l = self.lists.lock();
        l.free.clear();
        for block in l.slabs.drain(..) {
            // SAFETY: every buffer of the slab is free (the caller's contract).
            unsafe { sys_free(block) };
        }
    }

    /// Leaks the slabs (some buffers are still in use and may be used).
    pub(crate) fn leak(&self) {
        let mut l = self.lists.lock();
        l.free.clear();
        l.slabs.drain(..).for_each(SysBlock::leak);
    }
}
