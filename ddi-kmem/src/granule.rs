//! The granule map: which 64 KiB granules of the address space hold kmem slabs, and where
//! each such slab begins.
//!
//! The global allocator adapter ([`KmemGlobal`](crate::KmemGlobal)) must tell, from a pointer
//! alone, whether kmem or the system allocator owns it. A slab registered here
//! (`sys::sys_alloc_granules`) is aligned to [`GRANULE`] and a whole number of granules long,
//! so every granule it touches lies entirely inside it: while the slab lives, no other block of
//! the process can overlap one of its granules, and "the granule of `p` has an entry" is
//! exactly "`p` points into a registered slab".
//!
//! Each entry holds the slab's base pointer, not just a bit, so that [`GranuleMap::lookup`]
//! can give back a pointer to the same address *with the slab's provenance*. A pointer a
//! program frees may carry a narrower one (a `Box<T>`'s pointer is retagged for
//! `size_of::<T>()` bytes under Stacked Borrows); a sub-allocator that handed such a pointer
//! out again for a larger request would let the next owner write outside what its pointer may
//! reach. Re-deriving from the base keeps every buffer reachable through its whole class size
//! (Miri's strict-provenance mode checks exactly this; at run time `with_addr` costs nothing).
//!
//! # Layout
//!
//! A two-level radix table (the shape of a page table): a fixed top array of leaf pointers,
//! each leaf an array of `N` entries, one per granule. Leaves are allocated on first use from
//! the system allocator, zeroed (all-zero is a null entry), and never freed while the map
//! lives. The process-wide map ([`ProcessMap`]) covers the low 2^48 bytes with a 128 KiB top
//! array and 2 MiB leaves, one per 16 GiB of address space: a typical process touches two or
//! three, and of each only the pages holding entries of live slabs (8 bytes per 64 KiB slab)
//! are ever written, so committed. An address above the covered range is never registered
//! (`insert` refuses, so kmem does not use such a slab) and reads as "not kmem's".
//!
//! # Synchronization (the whole argument; also model-checked, `loom_tests`)
//!
//! Only three kinds of atomic operation exist, none of them part of a protocol:
//! - **Leaf publish**: a new zeroed leaf is installed with one `compare_exchange` (null to
//!   leaf, `AcqRel`); the loser frees its own, unpublished leaf and uses the winner's. Readers
//!   load the pointer with `Acquire`, so the leaf's zeroed contents happen-before any read of
//!   them. A leaf is freed only by `Drop`, which has the map exclusively.
//! - **Set** (store of the slab's base, `Release`) when a slab is registered, before any
//!   buffer of it exists.
//! - **Clear** (store of null, `Release`) when a slab is returned to the system, after its
//!   last buffer was freed and before the memory goes back.
//!
//! A reader (`lookup`, `Acquire`) asks about a pointer it holds. If the pointer is in a
//! registered slab, it was carved after the set and reached the reader through whatever
//! synchronization handed it over, so the set happens-before the read and the read sees it
//! (read-write coherence); the only later write to that entry is its clear, which needs every
//! buffer of the slab freed first, so it cannot race a legitimate question about one. If the
//! pointer is the system's, its granule is not part of a live slab: it was never set, or its
//! clear happened-before the slab's memory was freed, which happened-before the system
//! allocator handed the memory out again (the allocator synchronizes its own reuse), which
//! happened-before the reader got the pointer; so the read sees the clear.

use crate::sync::{AtomicPtr, Ordering};
use std::ptr::{self, NonNull};

/// log2 of the granule size.
pub(crate) const GRANULE_SHIFT: u32 = 16;

/// The granule: the unit of ownership in the map. 64 KiB is the slab size (`slab.rs`
/// `SLAB_BYTES`), so a registered slab of a class up to 64 KiB is exactly one granule.
pub(crate) const GRANULE: usize = 1 << GRANULE_SHIFT;

/// The process-wide map's shape: 2^14 leaves of 2^18 entries cover 2^(14 + 18 + 16) = 2^48
/// bytes, the user address space of x86-64 and of aarch64 with 48-bit virtual addresses.
pub(crate) type ProcessMap = GranuleMap<{ 1 << 14 }, { 1 << 18 }>;

/// A handle to the process-wide map.
pub(crate) type ProcessMapPtr = MapPtr<{ 1 << 14 }, { 1 << 18 }>;

/// One leaf: the slab base (or null) of each of `N` granules.
pub(crate) struct Leaf<const N: usize>([AtomicPtr<u8>; N]);

/// A table over the address space, one entry per [`GRANULE`], `TOP` leaves of `N` entries.
/// Used through a [`MapPtr`].
pub(crate) struct GranuleMap<const TOP: usize, const N: usize> {
    top: [AtomicPtr<Leaf<N>>; TOP],
}

impl<const TOP: usize, const N: usize> GranuleMap<TOP, N> {
    /// An empty map (no leaves yet).
    #[cfg(not(loom))]
    pub(crate) const fn new() -> Self {
        GranuleMap { top: [const { AtomicPtr::new(ptr::null_mut()) }; TOP] }
    }

    /// An empty map (no leaves yet). loom's atomics are not `const`.
    #[cfg(loom)]
    pub(crate) fn new() -> Self {
        GranuleMap { top: std::array::from_fn(|_| AtomicPtr::new(ptr::null_mut())) }
    }
}

/// A handle to a [`GranuleMap`] that reaches single entries through raw pointers and never
/// holds a reference to a whole table. Under Stacked Borrows, Miri retags every element a
/// reference covers whenever the reference is made or passed: a `&self` method on the process
/// map would retag 16384 top entries and a `&Leaf` 262144 entries at every lookup (seconds
/// each under Miri), where the handle retags the one entry it reads.
pub(crate) struct MapPtr<const TOP: usize, const N: usize>(NonNull<GranuleMap<TOP, N>>);

impl<const TOP: usize, const N: usize> Clone for MapPtr<TOP, N> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<const TOP: usize, const N: usize> Copy for MapPtr<TOP, N> {}

impl<const TOP: usize, const N: usize> MapPtr<TOP, N> {
    /// A handle to `map`.
    ///
    /// # Safety
    /// - `map` points to a map that stays alive, and is not dropped or moved, while the handle
    ///   (or a reference it returned) is used.
    pub(crate) unsafe fn new(map: *const GranuleMap<TOP, N>) -> Self {
        MapPtr(NonNull::new(map.cast_mut()).expect("internal: null granule map"))
    }

    /// (leaf index, entry index) of granule number `g`, or `None` above the covered range.
    #[inline(always)]
    fn locate(g: usize) -> Option<(usize, usize)> {
        let t = g / N;
        (t < TOP).then_some((t, g % N))
    }

    /// Top entry `t` (`t < TOP`).
    #[inline(always)]
    fn top_entry(&self, t: usize) -> &AtomicPtr<Leaf<N>> {
        debug_assert!(t < TOP, "internal: top index out of range");
        let map = self.0.as_ptr();
        // SAFETY: the map is alive (`MapPtr::new`'s contract); the projection makes a raw
        // pointer to the field without a reference to it.
        let top = unsafe { &raw const (*map).top };
        let entry = top.cast::<AtomicPtr<Leaf<N>>>().wrapping_add(t);
        // SAFETY: `t < TOP`, so `entry` is an element of the live map's `top` array, which
        // outlives `&self` (the handle's contract).
        unsafe { &*entry }
    }

    /// Entry `i` (`i < N`) of the published leaf `leaf`.
    #[inline(always)]
    fn leaf_entry(&self, leaf: NonNull<Leaf<N>>, i: usize) -> &AtomicPtr<u8> {
        debug_assert!(i < N, "internal: leaf index out of range");
        // SAFETY: `leaf` was published in the live map and is freed only when the map is
        // dropped (module doc); the projection makes a raw pointer to the field.
        let entries = unsafe { &raw const (*leaf.as_ptr()).0 };
        let entry = entries.cast::<AtomicPtr<u8>>().wrapping_add(i);
        // SAFETY: `i < N`, so `entry` is an element of the leaf, which lives as long as the
        // map, so beyond `&self` (the handle's contract).
        unsafe { &*entry }
    }

    /// The published leaf `t`, if any.
    #[inline(always)]
    fn leaf(&self, t: usize) -> Option<NonNull<Leaf<N>>> {
        // Acquire: pairs with the publishing `compare_exchange`, so the leaf's zeroed contents
        // are visible (module doc, "Leaf publish").
        NonNull::new(self.top_entry(t).load(Ordering::Acquire))
    }

    /// A pointer to `addr` with the provenance of the registered slab holding it, or `None`
    /// if no registered slab holds it.
    #[inline]
    pub(crate) fn lookup(&self, addr: usize) -> Option<NonNull<u8>> {
        let (t, i) = Self::locate(addr >> GRANULE_SHIFT)?;
        let leaf = self.leaf(t)?;
        // Acquire: the reader's side of the set/clear publication (module doc).
        let base = NonNull::new(self.leaf_entry(leaf, i).load(Ordering::Acquire))?;
        // `addr` is in the granule of a non-null base, so it is not zero.
        NonNull::new(base.as_ptr().with_addr(addr))
    }

    /// Whether a registered slab holds `addr`.
    #[inline]
    pub(crate) fn contains(&self, addr: usize) -> bool {
        self.lookup(addr).is_some()
    }

    /// Leaf `t`, allocating and publishing it if needed; `None` if the system refuses memory.
    fn leaf_or_new(&self, t: usize) -> Option<NonNull<Leaf<N>>> {
        if let Some(leaf) = self.leaf(t) {
            return Some(leaf);
        }
        let new = new_leaf::<N>()?;
        // AcqRel: Release publishes the zeroed leaf; Acquire (on failure) makes the winner's
        // leaf readable.
        match self.top_entry(t).compare_exchange(ptr::null_mut(), new, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => {}
            // SAFETY: `new` came from `new_leaf` just above and was never published.
            Err(_) => unsafe { free_leaf(new) },
        }
        self.leaf(t)
    }

    /// The granule numbers of `[start, start + len)`, which must be granule-aligned
    /// (asserted: internal callers only).
    fn granules(start: usize, len: usize) -> std::ops::Range<usize> {
        assert!(
            start % GRANULE == 0 && len % GRANULE == 0 && len > 0,
            "internal: granule range {start:#x}+{len:#x} is not granule-aligned"
        );
        let first = start >> GRANULE_SHIFT;
        first..first + (len >> GRANULE_SHIFT)
    }

    /// Registers the slab `[base, base + len)` (granule-aligned). `false`, with nothing
    /// registered, if it lies above the covered addresses or a leaf cannot be allocated.
    pub(crate) fn insert(&self, base: NonNull<u8>, len: usize) -> bool {
        let granules = Self::granules(base.as_ptr().addr(), len);
        if granules.end > TOP * N {
            return false;
        }
        // Every leaf first, so that a refusal leaves nothing half-registered.
        for g in granules.clone().step_by(N).chain([granules.end - 1]) {
            if self.leaf_or_new(g / N).is_none() {
                return false;
            }
        }
        for g in granules {
            let (t, i) = Self::locate(g).expect("checked above");
            let leaf = self.leaf(t).expect("allocated above");
            // Release: the set happens-before every use of the slab's buffers (module doc).
            self.leaf_entry(leaf, i).store(base.as_ptr(), Ordering::Release);
        }
        true
    }

    /// Unregisters the slab `[start, start + len)`, which `insert` registered. Called before
    /// the memory is returned to the system.
    pub(crate) fn remove(&self, start: usize, len: usize) {
        for g in Self::granules(start, len) {
            let (t, i) = Self::locate(g).expect("internal: removing an unmapped granule");
            let leaf = self.leaf(t).expect("internal: removing from a missing leaf");
            let entry = self.leaf_entry(leaf, i);
            debug_assert!(
                entry.load(Ordering::Relaxed).addr() == start,
                "internal: removing a granule of another slab"
            );
            // Release: the clear happens-before the memory's return to the system (module doc).
            entry.store(ptr::null_mut(), Ordering::Release);
        }
    }
}

impl<const TOP: usize, const N: usize> Drop for GranuleMap<TOP, N> {
    fn drop(&mut self) {
        for entry in &self.top {
            let p = entry.load(Ordering::Relaxed);
            if !p.is_null() {
                // SAFETY: published leaves come from `new_leaf`; `&mut self` means no reader
                // is left, and each entry is freed once.
                unsafe { free_leaf(p) };
            }
        }
    }
}

/// A zeroed leaf from the system allocator (`sys.rs`): all-zero bytes are a valid
/// `[AtomicPtr<u8>; N]` of nulls (an atomic pointer has the representation of a pointer).
#[cfg(not(loom))]
fn new_leaf<const N: usize>() -> Option<*mut Leaf<N>> {
    let block = crate::sys::sys_alloc_zeroed(std::alloc::Layout::new::<Leaf<N>>())?;
    Some(block.into_raw().as_ptr().cast())
}

/// # Safety
/// - `p` came from [`new_leaf`] and is not used afterwards.
#[cfg(not(loom))]
unsafe fn free_leaf<const N: usize>(p: *mut Leaf<N>) {
    let p = NonNull::new(p.cast::<u8>()).expect("internal: null leaf");
    // SAFETY: `p` is a `sys_alloc_zeroed` block of exactly this layout whose handle was given
    // up in `new_leaf` (the caller's contract).
    let block = unsafe { crate::sys::SysBlock::from_raw(p, std::alloc::Layout::new::<Leaf<N>>()) };
    // SAFETY: the leaf is not used afterwards (the caller's contract).
    unsafe { crate::sys::sys_free(block) };
}

/// A leaf of loom atomics (they must be constructed, not zeroed).
#[cfg(loom)]
fn new_leaf<const N: usize>() -> Option<*mut Leaf<N>> {
    Some(Box::into_raw(Box::new(Leaf(std::array::from_fn(|_| AtomicPtr::new(ptr::null_mut()))))))
}

/// # Safety
/// - `p` came from [`new_leaf`] and is not used afterwards.
#[cfg(loom)]
unsafe fn free_leaf<const N: usize>(p: *mut Leaf<N>) {
    // SAFETY: `p` came from `Box::into_raw` in `new_leaf` (the caller's contract).
    drop(unsafe { Box::from_raw(p) });
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    /// Two leaves of 64 entries: 64 granules (4 MiB) per leaf.
    type Tiny = GranuleMap<2, 64>;
    const LEAF_BYTES: usize = 64 * GRANULE;

    /// A base address for the tiny map's low range (never dereferenced).
    fn at(addr: usize) -> NonNull<u8> {
        NonNull::new(ptr::without_provenance_mut(addr)).expect("non-zero")
    }

    fn handle<const TOP: usize, const N: usize>(map: &GranuleMap<TOP, N>) -> MapPtr<TOP, N> {
        // SAFETY: every test keeps its map alive, unmoved, while it uses the handle.
        unsafe { MapPtr::new(map) }
    }

    #[test]
    fn insert_lookup_remove() {
        let map = Tiny::new();
        let m = handle(&map);
        assert!(!m.contains(0));
        assert!(m.insert(at(3 * GRANULE), 2 * GRANULE));
        assert!(!m.contains(3 * GRANULE - 1));
        assert!(m.contains(3 * GRANULE));
        assert_eq!(m.lookup(4 * GRANULE + 12345).map(|p| p.as_ptr().addr()), Some(4 * GRANULE + 12345));
        assert!(!m.contains(5 * GRANULE));
        // A slab crossing from the first leaf into the second.
        assert!(m.insert(at(LEAF_BYTES - GRANULE), 2 * GRANULE));
        assert!(m.contains(LEAF_BYTES - 1) && m.contains(LEAF_BYTES) && !m.contains(LEAF_BYTES + GRANULE));
        m.remove(3 * GRANULE, 2 * GRANULE);
        assert!(!m.contains(3 * GRANULE) && !m.contains(4 * GRANULE));
        assert!(m.contains(LEAF_BYTES - 1), "removing one slab leaves its neighbours registered");
    }

    #[test]
    fn lookup_gives_the_slabs_provenance() {
        // A real slab: the pointer `lookup` derives reaches the whole block, whatever pointer
        // the question was asked with.
        let block = crate::sys::sys_alloc(std::alloc::Layout::from_size_align(GRANULE, GRANULE).unwrap()).unwrap();
        let base = block.ptr;
        // A map of the process's shape (the tiny one covers only low addresses); boxed, its
        // top array is 128 KiB.
        let map = Box::new(ProcessMap::new());
        let m = handle(&map);
        assert!(m.insert(base, GRANULE));
        // SAFETY: 100 < GRANULE, inside the block.
        let narrow = unsafe { base.add(100) };
        let p = m.lookup(narrow.as_ptr().addr()).expect("registered");
        assert_eq!(p, narrow);
        // SAFETY: 100 bytes back is the block's start, reached through the derived pointer.
        let start = unsafe { p.sub(100) };
        // SAFETY: the derived pointer may write anywhere in the block (Miri checks it).
        unsafe { start.as_ptr().write_bytes(0x5a, GRANULE) };
        m.remove(base.as_ptr().addr(), GRANULE);
        assert!(!m.contains(narrow.as_ptr().addr()));
        // SAFETY: the block is unregistered and no pointer into it is used afterwards.
        unsafe { crate::sys::sys_free(block) };
    }

    #[test]
    fn above_the_covered_range_is_refused_and_never_registered() {
        let map = Tiny::new();
        let m = handle(&map);
        let end = 2 * LEAF_BYTES;
        assert!(!m.insert(at(end), GRANULE));
        assert!(!m.insert(at(end - GRANULE), 2 * GRANULE), "a slab straddling the end is refused whole");
        assert!(!m.contains(end - GRANULE), "nothing half-registered");
        assert!(!m.contains(usize::MAX));
    }

    #[test]
    #[should_panic(expected = "not granule-aligned")]
    fn misaligned_range_is_an_internal_error() {
        let map = Tiny::new();
        handle(&map).insert(at(GRANULE + 8), GRANULE);
    }

    #[test]
    fn the_process_map_covers_48_bits() {
        assert_eq!((1usize << 14) * (1 << 18) * GRANULE, 1 << 48);
        assert_eq!(std::mem::size_of::<Leaf<{ 1 << 18 }>>(), 2 << 20);
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    //! The map under loom: two threads register slabs in the same leaf (racing on the leaf's
    //! publication) while a third asks about a pointer handed over through a Release/Acquire
    //! flag, as a buffer reaches the thread that frees it.

    use super::*;
    use loom::sync::Arc;
    use loom::sync::atomic::AtomicBool;

    /// Two leaves of eight entries.
    type Tiny = GranuleMap<2, 8>;

    fn at(addr: usize) -> NonNull<u8> {
        NonNull::new(ptr::without_provenance_mut(addr)).expect("non-zero")
    }

    fn handle(map: &Arc<Tiny>) -> MapPtr<2, 8> {
        // SAFETY: each thread holds an `Arc` to the map while it uses the handle.
        unsafe { MapPtr::new(Arc::as_ptr(map)) }
    }

    #[test]
    fn loom_granule_map_publication() {
        loom::model(|| {
            let map = Arc::new(Tiny::new());
            let handed_over = Arc::new(AtomicBool::new(false));
            let a = {
                let (map, handed_over) = (map.clone(), handed_over.clone());
                loom::thread::spawn(move || {
                    assert!(handle(&map).insert(at(3 * GRANULE), GRANULE));
                    // A buffer of the slab reaches another thread.
                    handed_over.store(true, Ordering::Release);
                })
            };
            let b = {
                let map = map.clone();
                loom::thread::spawn(move || {
                    let m = handle(&map);
                    assert!(m.insert(at(5 * GRANULE), 2 * GRANULE));
                    assert!(m.contains(6 * GRANULE + 64), "own registration visible");
                    assert!(!m.contains(12 * GRANULE), "never registered, other leaf");
                })
            };
            let m = handle(&map);
            if handed_over.load(Ordering::Acquire) {
                assert_eq!(m.lookup(3 * GRANULE + 8), Some(at(3 * GRANULE + 8)), "a handed-over buffer is kmem's");
            }
            assert!(!m.contains(4 * GRANULE), "between the two slabs");
            a.join().unwrap();
            b.join().unwrap();
            assert!(m.contains(3 * GRANULE) && m.contains(5 * GRANULE));
            m.remove(3 * GRANULE, GRANULE);
            assert!(!m.contains(3 * GRANULE) && m.contains(6 * GRANULE));
        });
    }
}
