//! The magazine layer: per-thread loaded and previous magazines, and the per-cache depot.
//!
//! After Bonwick and Adams, "Magazines and Vmem" (USENIX 2001) and illumos `kmem.c`
//! (illumos.md §2), with threads in the place of CPUs: each thread keeps, per cache, a
//! *loaded* and a *previous* magazine of constructed buffers. An allocation pops the loaded
//! magazine; when it is empty and the previous one is full the two swap; only when both are
//! empty does the thread go to the depot (under the depot's lock) to exchange its empty
//! magazine for a full one. Frees mirror this. So a thread touches shared state once per
//! magazine's worth of operations, and a buffer freed by another thread simply enters that
//! thread's magazine: producer/consumer handoff costs the consumer nothing shared.
//!
//! # Layout of the fast path
//!
//! A thread's magazines for one cache are a [`MagSlot`]: 32 bytes, two to a cache line. The
//! loaded magazine is a raw pointer to a fixed array of rounds plus a count in the low byte of
//! one word, `word`; the rest of that word counts the allocations popped from the slot, so a
//! pop is one load and one store of `word` (`word + 0xff`: one round fewer, one allocation
//! more) and a push one load and one store (`word + 1`). No `Vec` length or capacity, no
//! borrow flag, no separate counter. Frees are not counted at all: the cache derives the
//! buffers in use from where its buffers are (`CacheCore::snapshot`) and frees as allocations
//! minus that.
//!
//! The slots of an arena's size classes sit in one [`ThreadMags`] per (thread, arena), indexed
//! directly by class; the thread-local block points at the current arena's table, so
//! `kmem_alloc` goes thread-local block, table, slot, round. Object caches made with
//! `kmem_cache_create` have one [`UserSlot`] per (thread, cache), found through a small
//! direct-mapped array in the thread-local block keyed by cache id (`context.rs`).
//!
//! # Ownership
//!
//! A slot's magazines belong to its thread: only that thread pops, pushes, swaps or exchanges
//! them (the `unsafe` methods below say so in their contracts), so the fast path needs no
//! lock and no read-modify-write. Other threads only *read* the counts (`word`, `prev_n`),
//! for statistics; every field is an atomic, accessed with relaxed loads and stores, which
//! compile to plain moves. Exchanges with the depot change the counts under the depot's lock,
//! and a statistics snapshot reads them under the same lock, so a snapshot never counts a
//! magazine twice or not at all while it moves. The tables and slots are reference-counted
//! because each cache keeps a registry of the slots it must sum ([`SlotRef`]).
//!
//! When a thread exits, its magazines go back to the depot (full ones to the full list, empty
//! ones to the empty list; a partial one's buffers are destroyed and go to the slab layer).

use crate::arena::ArenaInner;
use crate::cache::CacheCore;
use crate::flags::KmFlags;
use crate::quirks::CACHE_LINE;
use std::mem::MaybeUninit;
use std::ptr::{self, NonNull};
use std::sync::{Arc, Weak};

// The slot's fields are `std` atomics even under loom, unlike the rest of the crate (see
// `sync.rs`): each is written only by its owner thread, and read by other threads only
// under the depot lock (where exchanges also write them) or as an approximate statistic. The
// loom model explores the depot exchange, the registry and the lock order, all through
// `crate::sync`; making every single-writer load and store of the fast path a loom branch
// point as well would multiply the interleavings without adding one the protocol relies on.
use std::sync::atomic::{
    AtomicPtr, AtomicU32, AtomicU64,
    Ordering::{Acquire, Relaxed, Release},
};

/// The low byte of [`MagSlot::word`]: rounds in the loaded magazine.
const ROUNDS_MASK: u64 = 0xff;
/// What a pop adds to [`MagSlot::word`]: one allocation more (`1 << 8`), one round fewer.
const POP: u64 = (1 << 8) - 1;
/// What an allocation served below the magazines adds to [`MagSlot::word`].
const ONE_ALLOC: u64 = 1 << 8;

/// The most rounds a magazine can hold: the round count is one byte of [`MagSlot::word`].
pub(crate) const MAX_ROUNDS: usize = ROUNDS_MASK as usize;

/// The most size classes an arena may have: a [`ThreadMags`] has this many slots, and the
/// class index is masked with `MAX_CLASSES - 1` instead of bounds-checked. The Solaris table,
/// the largest, has 47.
pub(crate) const MAX_CLASSES: usize = 64;

/// A magazine off a thread (in the depot, or in transit): an owned array of `cap` round
/// slots, the first `n` holding constructed buffers.
#[derive(Debug)]
pub(crate) struct Magazine {
    rounds: Box<[MaybeUninit<NonNull<u8>>]>,
    n: usize,
}

// SAFETY: a magazine is a list of free buffers owned by whoever holds the magazine; the
// buffers carry no thread affinity.
unsafe impl Send for Magazine {}

impl Magazine {
    /// An empty magazine of `cap` rounds.
    pub(crate) fn empty(cap: usize) -> Self {
        debug_assert!((1..=MAX_ROUNDS).contains(&cap), "internal: magazine of {cap} rounds");
        Magazine { rounds: Box::new_uninit_slice(cap), n: 0 }
    }

    /// Rounds held.
    pub(crate) fn rounds(&self) -> usize {
        self.n
    }

    fn cap(&self) -> usize {
        self.rounds.len()
    }

    /// Takes every round out, newest first.
    pub(crate) fn drain(&mut self) -> impl Iterator<Item = NonNull<u8>> + '_ {
        let n = std::mem::take(&mut self.n);
        // SAFETY: the first `n` slots hold rounds (the type's invariant); `n` is now 0, so
        // each is read out exactly once.
        self.rounds[..n].iter().rev().map(|r| unsafe { r.assume_init() })
    }

    /// The array as a raw pointer to its first slot, and the rounds it holds. The array is
    /// owned by whoever holds the pointer, until [`Magazine::from_raw`].
    fn into_raw(self) -> (*mut NonNull<u8>, usize) {
        let n = self.n;
        (Box::into_raw(self.rounds).cast::<NonNull<u8>>(), n)
    }

    /// Rebuilds a magazine from [`Magazine::into_raw`].
    ///
    /// # Safety
    /// - `base` came from `into_raw` of a magazine of `cap` rounds, and is not used after.
    /// - Its first `n <= cap` slots hold rounds.
    unsafe fn from_raw(base: *mut NonNull<u8>, cap: usize, n: usize) -> Self {
        debug_assert!(n <= cap, "internal: magazine overfull");
        let slice = ptr::slice_from_raw_parts_mut(base.cast::<MaybeUninit<NonNull<u8>>>(), cap);
        // SAFETY: `slice` is the `Box<[_]>` of `cap` slots `into_raw` gave up (contract).
        Magazine { rounds: unsafe { Box::from_raw(slice) }, n }
    }
}

/// The full and empty magazines of a cache, with their working-set minima, and the registry
/// of the threads' slots of the cache (their counts move to and from the depot under the same
/// lock, which is what makes `CacheCore::snapshot` exact).
#[derive(Default)]
pub(crate) struct Depot {
    pub(crate) full: Vec<Magazine>,
    pub(crate) empty: Vec<Magazine>,
    /// The fewest full / empty magazines the depot held since the last working-set update:
    /// that many were not needed during the interval (illumos `ml_min`).
    pub(crate) full_min: usize,
    pub(crate) empty_min: usize,
    /// The threads' slots of this cache.
    pub(crate) slots: Vec<SlotRef>,
}

impl Depot {
    pub(crate) fn take_full(&mut self) -> Option<Magazine> {
        let m = self.full.pop()?;
        self.full_min = self.full_min.min(self.full.len());
        Some(m)
    }

    pub(crate) fn take_empty(&mut self) -> Option<Magazine> {
        let m = self.empty.pop()?;
        self.empty_min = self.empty_min.min(self.empty.len());
        Some(m)
    }

    /// Rounds held by the depot's magazines.
    pub(crate) fn rounds(&self) -> usize {
        self.full.iter().map(Magazine::rounds).sum()
    }
}

/// One thread's magazines for one cache: the loaded and the previous magazine.
///
/// Invariants (kept by the owner thread): either the slot has no magazines (`cap` 0, both
/// pointers null, no rounds) or both are arrays of the cache's `mag_cap` rounds given up by
/// [`Magazine::into_raw`]; the previous magazine is always empty or full (illumos
/// `kmem_cpu_cache`: the swaps and exchanges below only ever move an empty or a full one
/// there).
#[derive(Debug)]
#[repr(C, align(32))]
pub(crate) struct MagSlot {
    /// Low byte: rounds in the loaded magazine. Above: allocations made through this slot
    /// (wrapping after 2^56, centuries at any real rate).
    word: AtomicU64,
    /// The loaded magazine's first round slot.
    loaded: AtomicPtr<NonNull<u8>>,
    /// Rounds a magazine holds; 0 while the slot has none (a push then misses).
    cap: AtomicU32,
    /// Rounds in the previous magazine (0 or `cap`).
    prev_n: AtomicU32,
    /// The previous magazine's first round slot.
    prev: AtomicPtr<NonNull<u8>>,
}

impl MagSlot {
    pub(crate) const fn new() -> Self {
        MagSlot {
            word: AtomicU64::new(0),
            loaded: AtomicPtr::new(ptr::null_mut()),
            cap: AtomicU32::new(0),
            prev_n: AtomicU32::new(0),
            prev: AtomicPtr::new(ptr::null_mut()),
        }
    }

    /// Pops a round from the loaded magazine; `None` when it is empty.
    ///
    /// # Safety
    /// - Called on the slot's owner thread (see the module doc).
    #[inline(always)]
    pub(crate) unsafe fn pop(&self) -> Option<NonNull<u8>> {
        let w = self.word.load(Relaxed);
        let n = (w & ROUNDS_MASK) as usize;
        if n == 0 {
            return None;
        }
        let base = self.loaded.load(Relaxed);
        // SAFETY: `n > 0`, so the slot has a loaded magazine whose first `n` slots hold
        // rounds (the type's invariants); slot `n - 1` is in bounds, and only this thread
        // (the contract) touches the array.
        let p = unsafe { base.wrapping_add(n - 1).read() };
        self.word.store(w + POP, Relaxed);
        Some(p)
    }

    /// Pushes a round onto the loaded magazine; gives it back when the magazine is full (or
    /// the slot has none yet).
    ///
    /// # Safety
    /// - Called on the slot's owner thread.
    /// - `p` is a constructed buffer of the slot's cache that no one uses.
    #[inline(always)]
    pub(crate) unsafe fn push(&self, p: NonNull<u8>) -> Result<(), NonNull<u8>> {
        let w = self.word.load(Relaxed);
        let n = (w & ROUNDS_MASK) as usize;
        if n == self.cap.load(Relaxed) as usize {
            return Err(p);
        }
        let base = self.loaded.load(Relaxed);
        // SAFETY: `n < cap`, so the slot has a loaded magazine and slot `n` is in bounds;
        // only this thread touches the array.
        unsafe { base.wrapping_add(n).write(p) };
        // Release (a plain store on x86), paired with the Acquire in `loaded_n`: whoever
        // counts this round as cached (`CacheCore::snapshot`) sees everything this thread did
        // before freeing it, so a layer above may destroy a cache once it reads none in use.
        self.word.store(w + 1, Release);
        Ok(())
    }

    /// Rounds in the loaded magazine.
    pub(crate) fn loaded_n(&self) -> usize {
        (self.word.load(Acquire) & ROUNDS_MASK) as usize
    }

    fn set_loaded_n(&self, n: usize) {
        let w = self.word.load(Relaxed);
        self.word.store((w & !ROUNDS_MASK) | n as u64, Relaxed);
    }

    pub(crate) fn cap(&self) -> usize {
        self.cap.load(Relaxed) as usize
    }

    pub(crate) fn prev_n(&self) -> usize {
        self.prev_n.load(Acquire) as usize
    }

    /// Rounds in both magazines (any thread; exact under the depot lock, see the module doc).
    pub(crate) fn rounds(&self) -> usize {
        // The previous magazine's count first, then the loaded one's: a free's swap (loaded
        // full, previous empty) writes the loaded count, then the previous one (Release), so
        // a reader racing it can count too few rounds (report more in use), never too many.
        // A layer above that destroys a cache when it reads none in use relies on that
        // direction (streams-core's close of a message environment); allocations, whose
        // swaps race the other way, do not happen on a cache being destroyed.
        let pn = self.prev_n();
        self.loaded_n() + pn
    }

    /// Allocations made through this slot (any thread).
    pub(crate) fn allocs(&self) -> u64 {
        self.word.load(Relaxed) >> 8
    }

    /// Counts an allocation served below the magazines.
    ///
    /// # Safety
    /// - Called on the slot's owner thread.
    pub(crate) unsafe fn count_alloc(&self) {
        self.word.store(self.word.load(Relaxed) + ONE_ALLOC, Relaxed);
    }

    /// Gives a slot without magazines its first two (empty) ones.
    ///
    /// # Safety
    /// - Called on the slot's owner thread; the slot has no magazines (`cap() == 0`).
    pub(crate) unsafe fn install(&self, a: Magazine, b: Magazine) {
        debug_assert!(self.cap() == 0 && a.n == 0 && b.n == 0 && a.cap() == b.cap(), "internal: install");
        let cap = a.cap();
        self.loaded.store(a.into_raw().0, Relaxed);
        self.prev.store(b.into_raw().0, Relaxed);
        self.set_loaded_n(0);
        self.prev_n.store(0, Relaxed);
        // Last: a non-zero capacity is what lets pushes in.
        self.cap.store(u32::try_from(cap).expect("cap <= MAX_ROUNDS"), Relaxed);
    }

    /// Swaps the loaded and previous magazines.
    ///
    /// # Safety
    /// - Called on the slot's owner thread; the slot has magazines.
    pub(crate) unsafe fn swap(&self) {
        debug_assert!(self.cap() > 0, "internal: swap without magazines");
        let (n, pn) = (self.loaded_n(), self.prev_n());
        let (l, p) = (self.loaded.load(Relaxed), self.prev.load(Relaxed));
        self.loaded.store(p, Relaxed);
        self.prev.store(l, Relaxed);
        self.set_loaded_n(pn);
        // Release: see `rounds`.
        self.prev_n.store(n as u32, Release);
    }

    /// Alloc miss with both magazines empty: trade the previous (empty) magazine for a full
    /// one from the depot; the loaded one becomes previous, the full one loaded.
    ///
    /// # Safety
    /// - Called on the slot's owner thread; the slot has magazines, both empty.
    pub(crate) unsafe fn refill(&self, depot: &mut Depot) -> bool {
        debug_assert!(self.cap() > 0 && self.rounds() == 0, "internal: refill with rounds left");
        let Some(full) = depot.take_full() else { return false };
        let cap = self.cap();
        debug_assert!(full.cap() == cap, "internal: magazine size mismatch");
        let (base, n) = full.into_raw();
        let old_prev = self.prev.load(Relaxed);
        self.prev.store(self.loaded.load(Relaxed), Relaxed);
        self.loaded.store(base, Relaxed);
        self.set_loaded_n(n);
        // SAFETY: `old_prev` is the slot's previous magazine (an `into_raw` array of `cap`
        // slots, the slot invariants), empty (the contract); the slot no longer refers to it.
        depot.empty.push(unsafe { Magazine::from_raw(old_prev, cap, 0) });
        true
    }

    /// Free miss with both magazines full: the previous one goes to the depot's full list,
    /// the loaded one becomes previous, and `spare` (empty) is loaded.
    ///
    /// # Safety
    /// - Called on the slot's owner thread; the slot has magazines, both full.
    pub(crate) unsafe fn unload(&self, depot: &mut Depot, spare: Magazine) {
        let cap = self.cap();
        debug_assert!(cap > 0 && self.loaded_n() == cap && self.prev_n() == cap, "internal: unload");
        debug_assert!(spare.n == 0 && spare.cap() == cap, "internal: unload spare");
        let full = self.prev.load(Relaxed);
        self.prev.store(self.loaded.load(Relaxed), Relaxed);
        self.loaded.store(spare.into_raw().0, Relaxed);
        self.set_loaded_n(0);
        // SAFETY: `full` was the previous magazine, `cap` slots all holding rounds (the
        // contract); the slot no longer refers to it.
        depot.full.push(unsafe { Magazine::from_raw(full, cap, cap) });
    }

    /// Gives both magazines back: full ones to the depot's full list, empty ones to its empty
    /// list; a partial one is returned, its rounds to be destroyed. The slot is left without
    /// magazines (its allocation count stays).
    ///
    /// # Safety
    /// - Called on the slot's owner thread, or by whoever holds the last reference to it.
    pub(crate) unsafe fn flush(&self, depot: &mut Depot) -> Option<Magazine> {
        let cap = self.cap();
        if cap == 0 {
            return None;
        }
        let mut partial = None;
        let parts = [(self.loaded.load(Relaxed), self.loaded_n()), (self.prev.load(Relaxed), self.prev_n())];
        self.cap.store(0, Relaxed);
        self.set_loaded_n(0);
        self.prev_n.store(0, Relaxed);
        self.loaded.store(ptr::null_mut(), Relaxed);
        self.prev.store(ptr::null_mut(), Relaxed);
        for (base, n) in parts {
            // SAFETY: each was one of the slot's magazines (`into_raw` arrays of `cap` slots
            // whose first `n` hold rounds); the slot no longer refers to them.
            let m = unsafe { Magazine::from_raw(base, cap, n) };
            if n == cap {
                depot.full.push(m);
            } else if n == 0 {
                depot.empty.push(m);
            } else {
                partial = Some(m);
            }
        }
        partial
    }
}

impl Drop for MagSlot {
    fn drop(&mut self) {
        // A slot is flushed when its thread lets it go (`CacheCore::retire_slot`); one that
        // was not (a panic on the way) frees its arrays, and its rounds stay counted as out.
        let cap = self.cap();
        if cap > 0 {
            for base in [self.loaded.load(Relaxed), self.prev.load(Relaxed)] {
                // SAFETY: the slot's magazines are `into_raw` arrays of `cap` slots, and the
                // slot is going away; the rounds are forgotten, not read.
                drop(unsafe { Magazine::from_raw(base, cap, 0) });
            }
        }
    }
}

/// Buckets of [`ThreadMags::slot_at`]: a request of `size` bytes falls in bucket
/// `ilog2((size - 1) | 7)` (2 for 1 to 8 bytes, `b` for `2^b + 1` to `2^(b + 1)` bytes, 63 for
/// 0, whose `size - 1` wraps).
const BUCKETS: usize = usize::BITS as usize;

/// The bucket of a request of `size` bytes (see [`BUCKETS`]).
#[inline(always)]
fn bucket(size: usize) -> usize {
    (size.wrapping_sub(1) | 7).ilog2() as usize & (BUCKETS - 1)
}

/// One thread's magazines for every size class of one arena, indexed by class.
///
/// The first fields are what the fast paths need besides the slot: the arena (for the
/// cache-align flag of small frees and the `kmem_zalloc` length) and the size-to-slot map.
#[repr(C)]
pub(crate) struct ThreadMags {
    /// The arena. Only dereferenced on the owner thread while the arena is current or
    /// otherwise borrowed (see [`ThreadMags::alloc`]); `key` keeps its address from being
    /// reused while this table exists.
    arena: *const ArenaInner,
    /// By [`bucket`] of the request size: the byte offset, from the table's start, of the
    /// slot whose class serves every size of the bucket; 0 (never a slot: `arena` comes
    /// first) for none: size 0, above the largest class, or classes that are not powers of
    /// two (those read the arena's table, cold). A request's slot is one `bsr` and one load
    /// away, and for a size known at compile time one load: no range test, no class
    /// arithmetic.
    slot_at: [u16; BUCKETS],
    /// Whether the classes are the powers of two (then `slot_at` covers every class).
    pow2: bool,
    slots: [MagSlot; MAX_CLASSES],
    /// The class caches, by class (as many as the arena has classes).
    cores: Box<[Arc<CacheCore>]>,
    /// Which arena this table belongs to.
    key: Weak<ArenaInner>,
}

// SAFETY: `arena` is only dereferenced by the owner thread (the contracts of `alloc`, `free`
// and `arena`); other threads reach a table only through a cache's registry, to read the
// slots' atomics. Every other field is `Send + Sync`.
unsafe impl Send for ThreadMags {}
// SAFETY: as above.
unsafe impl Sync for ThreadMags {}

impl ThreadMags {
    /// A table for `arena`, registered with each of its class caches.
    pub(crate) fn new(arena: &ArenaInner, key: Weak<ArenaInner>, cores: &[Arc<CacheCore>]) -> Arc<Self> {
        assert!(cores.len() <= MAX_CLASSES, "internal: more than {MAX_CLASSES} size classes");
        let (pow2, min, max) = arena.class_params();
        let mut slot_at = [0u16; BUCKETS];
        if pow2 {
            assert!(min >= 8, "internal: classes start at 8 bytes or more");
            let first = std::mem::offset_of!(ThreadMags, slots);
            for (b, at) in slot_at.iter_mut().enumerate().skip(2) {
                // Bucket `b` holds sizes up to `2^(b + 1)`: the class of that size serves it.
                let Some(top) = 1usize.checked_shl(b as u32 + 1) else { break };
                if top > max {
                    break;
                }
                let ix = top.max(min).trailing_zeros() - min.trailing_zeros();
                *at = u16::try_from(first + ix as usize * size_of::<MagSlot>()).expect("a table is under 64 KiB");
            }
        }
        let t = Arc::new(ThreadMags {
            arena: ptr::from_ref(arena),
            slot_at,
            pow2,
            slots: std::array::from_fn(|_| MagSlot::new()),
            cores: cores.into(),
            key,
        });
        for (ix, core) in t.cores.iter().enumerate() {
            core.register(SlotRef::Table(t.clone(), ix));
        }
        t
    }

    /// The arena this table belongs to (by address; for lookups).
    pub(crate) fn arena_ptr(&self) -> *const ArenaInner {
        self.arena
    }

    /// Whether the arena is gone (the table only holds its thread's leftover magazines).
    pub(crate) fn arena_gone(&self) -> bool {
        self.key.strong_count() == 0
    }

    /// The slot serving `size` when the classes are powers of two, or `None` for 0, above
    /// the largest class, or when the classes are not powers of two.
    #[inline(always)]
    fn slot_of(&self, size: usize) -> Option<&MagSlot> {
        let off = usize::from(self.slot_at[bucket(size)]);
        if off == 0 {
            return None;
        }
        let at = ptr::from_ref(self).cast::<u8>().wrapping_add(off).cast::<MagSlot>();
        // SAFETY: a non-zero entry is the offset of an element of `self.slots` (set in
        // `new`), so `at` points at that element, inside the table `self` borrows.
        Some(unsafe { &*at })
    }

    /// The class of a slot of this table (`slot_of`'s result).
    fn class_of(&self, slot: &MagSlot) -> usize {
        (ptr::from_ref(slot).addr() - ptr::from_ref(&self.slots[0]).addr()) / size_of::<MagSlot>()
    }

    /// The class serving `size` by the arena's tables (classes that are not powers of two).
    ///
    /// # Safety
    /// - The arena is alive.
    unsafe fn table_class(&self, size: usize) -> Option<usize> {
        if self.pow2 || size == 0 {
            return None;
        }
        // SAFETY: the arena is alive (the contract).
        unsafe { &*self.arena }.class_index(size)
    }

    /// The fast path of `kmem_alloc` / `kmem_zalloc` in a plain arena: a round of the class
    /// of `size` from this thread's magazines (or, on a miss, the depot or the slab layer).
    /// `None` sends the caller to the general path: injection armed, `size` 0 or too large,
    /// or no memory.
    ///
    /// # Safety
    /// - Called on the table's owner thread, with its arena plain and alive.
    #[inline(always)]
    pub(crate) unsafe fn alloc(&self, size: usize, zero: bool) -> Option<NonNull<u8>> {
        if crate::inject::any_armed() {
            return None;
        }
        let Some(slot) = self.slot_of(size) else {
            // SAFETY: forwarded contract.
            return unsafe { self.alloc_by_table(size, zero) };
        };
        // SAFETY: the owner thread (the contract).
        let p = match unsafe { slot.pop() } {
            Some(p) => p,
            None => self.alloc_miss(self.class_of(slot))?,
        };
        if zero {
            // SAFETY: the arena is alive (the contract).
            let n = unsafe { &*self.arena }.zalloc_len(self.class_of(slot), size);
            // SAFETY: a buffer of the slot's class holds at least `n` bytes (`zalloc_len`).
            unsafe { p.as_ptr().write_bytes(0, n) };
        }
        Some(p)
    }

    /// `alloc` where the class is not computed: classes that are not powers of two, or a
    /// size out of range.
    ///
    /// # Safety
    /// As [`ThreadMags::alloc`].
    #[cold]
    #[inline(never)]
    unsafe fn alloc_by_table(&self, size: usize, zero: bool) -> Option<NonNull<u8>> {
        // SAFETY: the arena is alive (the contract).
        let ix = unsafe { self.table_class(size) }?;
        // SAFETY: the owner thread (the contract).
        let p = match unsafe { self.slots[ix & (MAX_CLASSES - 1)].pop() } {
            Some(p) => p,
            None => self.alloc_miss(ix)?,
        };
        if zero {
            // SAFETY: the arena is alive.
            let n = unsafe { &*self.arena }.zalloc_len(ix, size);
            // SAFETY: a buffer of class `ix` holds at least `n` bytes (`zalloc_len`).
            unsafe { p.as_ptr().write_bytes(0, n) };
        }
        Some(p)
    }

    #[cold]
    #[inline(never)]
    fn alloc_miss(&self, ix: usize) -> Option<NonNull<u8>> {
        let core = self.cores.get(ix)?;
        // SAFETY: this runs on the owner thread (only `alloc` calls it).
        unsafe { core.alloc_miss(&self.slots[ix], crate::flags::KM_NOSLEEP) }
    }

    /// The fast path of `kmem_free` in a plain arena: `true` if the buffer went into this
    /// thread's magazines. By `kmem_free`'s contract `p` was allocated with `size` bytes from
    /// this arena, so it came from the class of `size`, unless a small `KM_CACHEALIGN`
    /// request took the cache-line class (then the general path finds out).
    ///
    /// # Safety
    /// - Called on the table's owner thread, with its arena plain and alive.
    /// - `p` is a live buffer of the arena allocated with `size` bytes, not used after.
    #[inline(always)]
    pub(crate) unsafe fn free(&self, p: NonNull<u8>, size: usize) -> bool {
        let Some(slot) = self.slot_of(size) else {
            // SAFETY: forwarded contract.
            return unsafe { self.free_by_table(p, size) };
        };
        // SAFETY: the arena is alive (the contract).
        if size <= CACHE_LINE / 2 && unsafe { &*self.arena }.cachealign_used() {
            return false;
        }
        // SAFETY: the owner thread; `p` is a buffer of the slot's class no one uses (the
        // contract).
        match unsafe { slot.push(p) } {
            Ok(()) => true,
            Err(p) => self.free_miss(self.class_of(slot), p),
        }
    }

    /// `free` where the class is not computed (see `alloc_by_table`).
    ///
    /// # Safety
    /// As [`ThreadMags::free`].
    #[cold]
    #[inline(never)]
    unsafe fn free_by_table(&self, p: NonNull<u8>, size: usize) -> bool {
        // SAFETY: the arena is alive (the contract).
        let Some(ix) = (unsafe { self.table_class(size) }) else { return false };
        // SAFETY: the arena is alive.
        if size <= CACHE_LINE / 2 && unsafe { &*self.arena }.cachealign_used() {
            return false;
        }
        // SAFETY: the owner thread; `p` is a buffer of class `ix` no one uses (the contract).
        match unsafe { self.slots[ix & (MAX_CLASSES - 1)].push(p) } {
            Ok(()) => true,
            Err(p) => self.free_miss(ix, p),
        }
    }

    #[cold]
    #[inline(never)]
    fn free_miss(&self, ix: usize, p: NonNull<u8>) -> bool {
        let Some(core) = self.cores.get(ix) else { return false };
        // SAFETY: the owner thread (only `free` calls this, under its contract, which makes
        // `p` an unused buffer of class `ix`).
        unsafe { core.free_miss(&self.slots[ix], p) };
        true
    }

    /// The slot and cache of class `ix`.
    pub(crate) fn class(&self, ix: usize) -> (&MagSlot, &Arc<CacheCore>) {
        (&self.slots[ix], &self.cores[ix])
    }

    /// The slot of class `ix`.
    pub(crate) fn slot(&self, ix: usize) -> &MagSlot {
        &self.slots[ix]
    }
}

/// A thread's magazines for one object cache (`kmem_cache_create`).
#[derive(Debug)]
pub(crate) struct UserSlot {
    pub(crate) slot: MagSlot,
    pub(crate) core: Arc<CacheCore>,
}

impl UserSlot {
    /// Pops a round, or takes the miss path.
    ///
    /// # Safety
    /// - Called on the slot's owner thread.
    #[inline]
    pub(crate) unsafe fn alloc(&self, flags: KmFlags) -> Option<NonNull<u8>> {
        // SAFETY: the owner thread (the contract).
        match unsafe { self.slot.pop() } {
            Some(p) => Some(p),
            // SAFETY: the owner thread; `slot` is this cache's.
            None => unsafe { self.core.alloc_miss(&self.slot, flags) },
        }
    }

    /// Pushes a round, or takes the miss path.
    ///
    /// # Safety
    /// - Called on the slot's owner thread; `p` is a constructed buffer of the cache that no
    ///   one uses.
    #[inline]
    pub(crate) unsafe fn free(&self, p: NonNull<u8>) {
        // SAFETY: forwarded contract.
        if let Err(p) = unsafe { self.slot.push(p) } {
            // SAFETY: forwarded contract; `slot` is this cache's.
            unsafe { self.core.free_miss(&self.slot, p) };
        }
    }
}

/// A slot a cache must sum for its statistics: a class of a thread's table, or a thread's
/// slot for an object cache.
pub(crate) enum SlotRef {
    Table(Arc<ThreadMags>, usize),
    User(Arc<UserSlot>),
}

impl SlotRef {
    pub(crate) fn slot(&self) -> &MagSlot {
        match self {
            SlotRef::Table(t, ix) => t.slot(*ix),
            SlotRef::User(u) => &u.slot,
        }
    }
}

/// A thread's table for one arena, as the thread owns it: dropping it gives the magazines
/// back to the depots and unregisters the slots.
pub(crate) struct OwnedTable(pub(crate) Arc<ThreadMags>);

impl Drop for OwnedTable {
    fn drop(&mut self) {
        for (ix, core) in self.0.cores.iter().enumerate() {
            core.retire_slot(self.0.slot(ix));
        }
    }
}

/// A thread's slot for one object cache, as the thread owns it (see [`OwnedTable`]).
pub(crate) struct OwnedSlot(pub(crate) Arc<UserSlot>);

impl OwnedSlot {
    /// A new slot for `core`, registered with it.
    pub(crate) fn new(core: &Arc<CacheCore>) -> Self {
        let u = Arc::new(UserSlot { slot: MagSlot::new(), core: core.clone() });
        core.register(SlotRef::User(u.clone()));
        OwnedSlot(u)
    }
}

impl Drop for OwnedSlot {
    fn drop(&mut self) {
        self.0.core.retire_slot(&self.0.slot);
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn rounds(xs: &[u64]) -> Vec<NonNull<u8>> {
        xs.iter().map(|x| NonNull::from(x).cast()).collect()
    }

    /// A slot driven by the test thread that owns it; its rounds are never dereferenced.
    struct Own(MagSlot);

    // SAFETY (every block in this impl): the test thread owns the slot, and each call's
    // precondition on the slot's state is what the test sets up before it.
    impl Own {
        fn new() -> Self {
            Own(MagSlot::new())
        }
        fn pop(&self) -> Option<NonNull<u8>> {
            // SAFETY: see the impl.
            unsafe { self.0.pop() }
        }
        fn push(&self, p: NonNull<u8>) -> Result<(), NonNull<u8>> {
            // SAFETY: see the impl.
            unsafe { self.0.push(p) }
        }
        fn install(&self, cap: usize) {
            // SAFETY: see the impl.
            unsafe { self.0.install(Magazine::empty(cap), Magazine::empty(cap)) }
        }
        fn swap(&self) {
            // SAFETY: see the impl.
            unsafe { self.0.swap() }
        }
        fn refill(&self, d: &mut Depot) -> bool {
            // SAFETY: see the impl.
            unsafe { self.0.refill(d) }
        }
        fn unload(&self, d: &mut Depot, spare: Magazine) {
            // SAFETY: see the impl.
            unsafe { self.0.unload(d, spare) }
        }
        fn count_alloc(&self) {
            // SAFETY: see the impl.
            unsafe { self.0.count_alloc() }
        }
        fn flush(&self, d: &mut Depot) -> Option<Magazine> {
            // SAFETY: see the impl.
            unsafe { self.0.flush(d) }
        }
    }

    #[test]
    fn a_slot_without_magazines_misses_both_ways() {
        let s = Own::new();
        let x = 0u64;
        assert_eq!(s.pop(), None);
        assert_eq!(s.push(NonNull::from(&x).cast()), Err(NonNull::from(&x).cast()));
        assert_eq!((s.0.cap(), s.0.rounds(), s.0.allocs()), (0, 0, 0));
    }

    #[test]
    fn pops_and_pushes_count_in_one_word_and_swaps_keep_the_previous_magazine_empty_or_full() {
        let xs = [1u64, 2, 3, 4, 5, 6];
        let r = rounds(&xs);
        let s = Own::new();
        let mut depot = Depot::default();
        s.install(3);
        for &p in &r[..3] {
            s.push(p).unwrap();
        }
        assert_eq!(s.push(r[3]), Err(r[3]), "the loaded magazine is full");
        s.swap();
        assert_eq!((s.0.loaded_n(), s.0.prev_n()), (0, 3));
        for &p in &r[3..] {
            s.push(p).unwrap();
        }
        // Both full: the previous one goes to the depot for an empty one.
        s.unload(&mut depot, Magazine::empty(3));
        assert_eq!((s.0.loaded_n(), s.0.prev_n(), depot.full.len(), depot.rounds()), (0, 3, 1, 3));
        assert_eq!(s.0.allocs(), 0, "pushes count nothing");
        // Pops come back newest first: the previous magazine holds r[3..].
        s.swap();
        let popped: Vec<_> = (0..3).map(|_| s.pop().unwrap()).collect();
        assert_eq!(popped, [r[5], r[4], r[3]]);
        assert_eq!(s.pop(), None);
        assert_eq!((s.0.allocs(), s.0.rounds()), (3, 0));
        // Both empty: a full magazine from the depot, the empty previous one in exchange.
        assert!(s.refill(&mut depot));
        assert_eq!((s.0.loaded_n(), s.0.prev_n(), depot.full.len(), depot.empty.len()), (3, 0, 0, 1));
        assert_eq!(s.pop(), Some(r[2]));
        s.count_alloc();
        assert_eq!(s.0.allocs(), 5);
        // A thread letting go: the partial loaded magazine comes back, the empty one goes to
        // the depot, and the allocation count stays.
        let mut partial = s.flush(&mut depot).expect("a partial magazine");
        assert_eq!(partial.drain().collect::<Vec<_>>(), [r[1], r[0]]);
        assert_eq!((s.0.cap(), s.0.rounds(), s.0.allocs(), depot.empty.len()), (0, 0, 5, 2));
    }

    #[test]
    fn a_dropped_slot_frees_its_arrays() {
        let x = 7u64;
        let s = Own::new();
        s.install(2);
        s.push(NonNull::from(&x).cast()).unwrap();
        drop(s); // Miri checks the arrays are freed exactly once
    }
}
