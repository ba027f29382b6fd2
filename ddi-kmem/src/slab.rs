//! The slab layer: raw (unconstructed) buffers carved from slabs.
//!
//! Each cache keeps the free buffers of its slabs on a LIFO list, behind the magazine layer
//! (`magazine.rs`), which it only reaches on a magazine and depot miss. A slab is one block
//! from [`crate::sys`] aligned to the class's alignment and carved into equal buffers, so each
//! buffer is aligned as the class promises. Slabs go back to the process allocator when the
//! arena is dropped with nothing outstanding.
//!
//! The layer also keeps the two figures from which the cache derives how many buffers are in
//! use (`CacheCore::snapshot`): how many buffers are *out* of it (handed out and not yet
//! back), and how many of those are in *limbo*: taken out of a magazine on their way back here
//! (reap, purge, a thread's partial magazine at exit). Both live in one atomic word, so a
//! buffer's return from limbo changes them together and a snapshot never sees it both gone
//! from its magazine and not yet back.

use crate::class::Class;
use crate::granule::GRANULE;
use crate::sync::{AtomicU64, Mutex, Ordering};
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
    /// Buffers carved from `slabs` so far.
    carved: usize,
    /// Slabs are whole granules, registered in the granule map (the global adapter's arena,
    /// `global.rs`), so a pointer tells by its address that it is this layer's.
    granules: bool,
}

/// One buffer out, in [`SlabLayer::out_limbo`].
const OUT: u64 = 1 << 32;

/// One cache's slab layer.
#[derive(Debug)]
pub(crate) struct SlabLayer {
    pub(crate) class: Class,
    lists: Mutex<Lists>,
    /// High half: buffers out of the layer; low half: how many of those are in limbo (see the
    /// module doc). Changed with read-modify-writes, on slow paths only.
    out_limbo: AtomicU64,
}

// SAFETY: the raw pointers in `Lists` are free buffers owned by the cache, only handed out
// under the lock; they carry no thread affinity.
unsafe impl Send for SlabLayer {}
// SAFETY: all access to the pointers goes through the mutex.
unsafe impl Sync for SlabLayer {}

impl SlabLayer {
    pub(crate) fn new(class: Class) -> Self {
        SlabLayer { class, lists: Mutex::new(Lists::default()), out_limbo: AtomicU64::new(0) }
    }

    /// A free buffer of this class, or `None` when the process allocator refuses a new slab.
    #[inline]
    pub(crate) fn alloc(&self) -> Option<NonNull<u8>> {
        let p = {
            let mut l = self.lists.lock();
            match l.free.pop() {
                Some(p) => p,
                None => {
                    self.grow(&mut l)?;
                    l.free.pop()?
                }
            }
        };
        // Relaxed: a counter; `CacheCore::snapshot` orders its reads through the depot lock.
        self.out_limbo.fetch_add(OUT, Ordering::Relaxed);
        Some(p)
    }

    /// Returns a buffer to the class.
    ///
    /// # Safety
    /// - `p` was returned by [`SlabLayer::alloc`] of this same cache and is not free.
    #[inline]
    pub(crate) unsafe fn free(&self, p: NonNull<u8>) {
        self.lists.lock().free.push(p);
        self.out_limbo.fetch_sub(OUT, Ordering::Release);
    }

    /// Counts `n` buffers as in limbo: they left a magazine and will come back through
    /// [`SlabLayer::free_from_limbo`]. The caller holds the depot lock, under which they left
    /// the magazine.
    pub(crate) fn enter_limbo(&self, n: usize) {
        self.out_limbo.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// Returns a buffer that was counted in limbo: one read-modify-write takes it out of both
    /// figures.
    ///
    /// # Safety
    /// - As [`SlabLayer::free`], and `p` was counted by [`SlabLayer::enter_limbo`].
    pub(crate) unsafe fn free_from_limbo(&self, p: NonNull<u8>) {
        self.lists.lock().free.push(p);
        let was = self.out_limbo.fetch_sub(OUT + 1, Ordering::Release);
        debug_assert!(was & (OUT - 1) > 0, "internal: limbo underflow");
    }

    /// (buffers out of the layer, of which in limbo), read together.
    pub(crate) fn out_and_limbo(&self) -> (usize, usize) {
        // Acquire: pairs with the Release of a return, as the magazine rounds do.
        let v = self.out_limbo.load(Ordering::Acquire);
        ((v >> 32) as usize, (v & (OUT - 1)) as usize)
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
        self.lists.lock().carved
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
        l.carved += n;
        Some(())
    }

    /// Releases the slabs. Called when the arena is dropped with nothing outstanding.
    ///
    /// # Safety
    /// - No buffer of this cache is in use.
    pub(crate) unsafe fn release(&self) {
        let mut l = self.lists.lock();
        l.free.clear();
        l.carved = 0;
        for block in l.slabs.drain(..) {
            // SAFETY: every buffer of the slab is free (the caller's contract).
            unsafe { sys_free(block) };
        }
    }

    /// Leaks the slabs (some buffers are still in use and may be used).
    pub(crate) fn leak(&self) {
        let mut l = self.lists.lock();
        l.free.clear();
        l.carved = 0;
        l.slabs.drain(..).for_each(SysBlock::leak);
    }
}
