//! Object caches: a slab layer of raw buffers behind a magazine layer of constructed ones.
//!
//! The size classes behind `kmem_alloc` are such caches without constructor or destructor;
//! `kmem_cache_create` makes them with one. The Solaris meaning of constructed state holds: a
//! buffer is constructed when it leaves the slab layer and destroyed when it returns there
//! (from a depot reap or purge, from a thread exit's partial magazine, or when the magazine
//! layer cannot take a free), never on an ordinary alloc/free pair.

use crate::class::Class;
use crate::flags::KmFlags;
use crate::magazine::{Depot, MAX_ROUNDS, MagSlot, Magazine, SlotRef};
use crate::slab::SlabLayer;
use crate::stats::CacheStats;
use crate::sync::{AtomicBool, AtomicU64, AtomicUsize, Mutex, Ordering};
use std::fmt;
use std::ptr::NonNull;
use std::sync::Arc;

/// Constructs a buffer leaving the slab layer; `false` means it failed.
pub(crate) type Ctor = Box<dyn Fn(NonNull<u8>, KmFlags) -> bool + Send + Sync>;
/// Destroys a buffer returning to the slab layer.
pub(crate) type Dtor = Box<dyn Fn(NonNull<u8>) + Send + Sync>;
/// Asked to give memory back under pressure.
pub(crate) type Reclaim = Box<dyn Fn() + Send + Sync>;

/// How many rounds a magazine of `size`-byte buffers holds: at most 32 KiB of buffers, so a
/// thread's two magazines keep at most 64 KiB idle per cache, and at most [`MAX_ROUNDS`]
/// (255, what the one-byte round count of the fast path's slot word holds), at least 2.
///
/// The arithmetic: a depot exchange costs two uncontended lock operations and a few moves,
/// about 100-150 instructions (and two atomic read-modify-writes) against about 20 for a pop
/// or a push, so amortised over `r` operations it adds 100/r or more instructions to each.
/// 32 KiB / size gives r = 255 for classes up to 128 bytes (the STREAMS sizes: message
/// blocks, small data buffers), 64 at 512 bytes, 8 at 4096 bytes, 2 from 16 KiB up, where
/// the copy of the buffer dwarfs the exchange anyway. A burst of 1000 64-byte allocations
/// then goes to the depot twice instead of 16 times (64 rounds). illumos grows its magazines
/// from 15 rounds (<= 64 B) towards 143 under depot contention; per-thread magazines never
/// contend for the fast path, so one size chosen up front does.
fn magazine_rounds(size: usize) -> usize {
    (32 * 1024 / size).clamp(2, MAX_ROUNDS)
}

/// Cache ids key the thread-local direct-mapped slots of object caches; they are reused once
/// a cache is gone (no thread holds a slot of it then: each slot holds the cache).
static IDS: std::sync::Mutex<(usize, Vec<usize>)> = std::sync::Mutex::new((0, Vec::new()));

fn take_id() -> usize {
    let mut ids = IDS.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    ids.1.pop().unwrap_or_else(|| {
        ids.0 += 1;
        ids.0 - 1
    })
}

fn return_id(id: usize) {
    IDS.lock().unwrap_or_else(std::sync::PoisonError::into_inner).1.push(id);
}

/// A cache's counts at one moment (see [`CacheCore::snapshot`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Counts {
    pub(crate) allocs: u64,
    pub(crate) frees: u64,
    pub(crate) in_use: usize,
}

/// One object cache.
///
/// Two locks, never nested: the depot's (which also guards the registry of the threads'
/// slots) and the slab layer's.
pub(crate) struct CacheCore {
    pub(crate) id: usize,
    pub(crate) name: String,
    pub(crate) class: Class,
    pub(crate) mag_cap: usize,
    pub(crate) slab: SlabLayer,
    depot: Mutex<Depot>,
    /// Allocations counted by slots that have since been retired, and those made on a thread
    /// without a slot (exiting).
    retired_allocs: AtomicU64,
    /// Allocations and frees made outside the magazine layer (a checked cache).
    outside_allocs: AtomicU64,
    outside_frees: AtomicU64,
    high_water: AtomicUsize,
    ctor: Option<Ctor>,
    dtor: Option<Dtor>,
    reclaim: Option<Reclaim>,
    /// Buffers are still in use: the slabs must outlive the cache.
    leaked: AtomicBool,
}

impl fmt::Debug for CacheCore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CacheCore").field("id", &self.id).field("name", &self.name).field("class", &self.class).finish()
    }
}

impl CacheCore {
    pub(crate) fn new(
        name: String,
        class: Class,
        ctor: Option<Ctor>,
        dtor: Option<Dtor>,
        reclaim: Option<Reclaim>,
    ) -> Arc<Self> {
        Arc::new(CacheCore {
            id: take_id(),
            name,
            class,
            mag_cap: magazine_rounds(class.size),
            slab: SlabLayer::new(class),
            depot: Mutex::new(Depot::default()),
            retired_allocs: AtomicU64::new(0),
            outside_allocs: AtomicU64::new(0),
            outside_frees: AtomicU64::new(0),
            high_water: AtomicUsize::new(0),
            ctor,
            dtor,
            reclaim,
            leaked: AtomicBool::new(false),
        })
    }

    /// The alloc miss of a thread's slot (its loaded magazine is empty): a round from the
    /// previous magazine or the depot, else a new constructed buffer from the slab layer.
    /// `None` if the slab layer cannot grow or the constructor fails.
    ///
    /// # Safety
    /// - Called on `slot`'s owner thread; `slot` is a slot of this cache.
    #[cold]
    pub(crate) unsafe fn alloc_miss(&self, slot: &MagSlot, flags: KmFlags) -> Option<NonNull<u8>> {
        if slot.cap() == 0 {
            // SAFETY: forwarded contract.
            unsafe { self.install_magazines(slot) };
        }
        // SAFETY: forwarded contract.
        if let Some(p) = unsafe { self.refill_and_pop(slot) } {
            return Some(p);
        }
        let p = self.slab_alloc(flags)?;
        // SAFETY: the owner thread (the contract).
        unsafe { slot.count_alloc() };
        self.sample_high_water();
        Some(p)
    }

    /// Gives a slot without magazines its first two. The arrays are allocated before the slot
    /// is touched, so an allocator that re-enters kmem finds the slot consistent.
    ///
    /// # Safety
    /// - Called on `slot`'s owner thread; `slot` is a slot of this cache.
    unsafe fn install_magazines(&self, slot: &MagSlot) {
        let (a, b) = (Magazine::empty(self.mag_cap), Magazine::empty(self.mag_cap));
        if slot.cap() == 0 {
            // SAFETY: the owner thread, and the slot has no magazines (checked just above).
            unsafe { slot.install(a, b) };
        }
    }

    /// The magazine layer's alloc miss: a round from the thread's magazines (swapping in the
    /// previous one if it holds rounds), else a full magazine from the depot in exchange for
    /// an empty one. `None`: the slot has no magazines, or the depot had no full one.
    ///
    /// # Safety
    /// - Called on `slot`'s owner thread; `slot` is a slot of this cache.
    pub(crate) unsafe fn refill_and_pop(&self, slot: &MagSlot) -> Option<NonNull<u8>> {
        // SAFETY: the owner thread (the contract). The same holds for every block below; each
        // call's further precondition is checked just before it.
        if let Some(p) = unsafe { slot.pop() } {
            return Some(p);
        }
        if slot.cap() == 0 {
            return None;
        }
        if slot.prev_n() > 0 {
            // SAFETY: see above; the slot has magazines.
            unsafe { slot.swap() };
            // SAFETY: see above.
            return unsafe { slot.pop() };
        }
        let mut depot = self.depot.lock();
        // SAFETY: see above; the slot has magazines and both are empty (the pop failed, and
        // `prev_n` is 0).
        if unsafe { slot.refill(&mut depot) } {
            drop(depot);
            // SAFETY: see above.
            unsafe { slot.pop() }
        } else {
            None
        }
    }

    /// The free miss of a thread's slot (its loaded magazine is full, or it has none): swap
    /// in the previous magazine if it is empty, else trade the full previous one for an empty
    /// one from the depot (or a new one), then push.
    ///
    /// # Safety
    /// - Called on `slot`'s owner thread; `slot` is a slot of this cache.
    /// - `p` is a constructed buffer of this cache that no one uses.
    #[cold]
    pub(crate) unsafe fn free_miss(&self, slot: &MagSlot, p: NonNull<u8>) {
        let mut p = p;
        // Each turn either pushes or changes the slot so that the next push fits; the state
        // is read afresh every turn, since a new magazine's allocation may re-enter kmem.
        loop {
            // SAFETY: the owner thread, and `p` an unused constructed buffer of this cache (the
            // contract). The same holds for every block below; further preconditions are
            // checked just before each call.
            match unsafe { slot.push(p) } {
                Ok(()) => return,
                Err(q) => p = q,
            }
            let cap = slot.cap();
            if cap == 0 {
                // SAFETY: see above.
                unsafe { self.install_magazines(slot) };
                continue;
            }
            if slot.prev_n() == 0 {
                // SAFETY: see above; the slot has magazines.
                unsafe { slot.swap() };
                continue;
            }
            let mut depot = self.depot.lock();
            let spare = match depot.take_empty() {
                Some(m) => m,
                None => {
                    drop(depot);
                    let m = Magazine::empty(self.mag_cap);
                    depot = self.depot.lock();
                    m
                }
            };
            if slot.rounds() == 2 * cap {
                // SAFETY: see above; both magazines are full.
                unsafe { slot.unload(&mut depot, spare) };
            } else {
                depot.empty.push(spare);
            }
        }
    }

    /// A new constructed buffer for a thread without magazines (one that is exiting).
    pub(crate) fn alloc_noslot(&self, flags: KmFlags) -> Option<NonNull<u8>> {
        let p = self.slab_alloc(flags)?;
        self.retired_allocs.fetch_add(1, Ordering::Relaxed);
        self.sample_high_water();
        Some(p)
    }

    /// Frees a buffer for a thread without magazines: destroyed into the slab layer.
    ///
    /// # Safety
    /// - `p` is a constructed buffer of this cache that no one uses.
    pub(crate) unsafe fn free_noslot(&self, p: NonNull<u8>) {
        // SAFETY: forwarded contract.
        unsafe { self.destroy(p) }
    }

    /// A buffer from the slab layer, constructed.
    fn slab_alloc(&self, flags: KmFlags) -> Option<NonNull<u8>> {
        let p = self.slab.alloc()?;
        if let Some(ctor) = &self.ctor {
            if !ctor(p, flags) {
                // SAFETY: `p` came from this slab layer just above and was never handed out.
                unsafe { self.slab.free(p) };
                return None;
            }
        }
        Some(p)
    }

    /// Runs the constructor on a buffer; `false` if it failed.
    pub(crate) fn construct(&self, p: NonNull<u8>, flags: KmFlags) -> bool {
        self.ctor.as_ref().is_none_or(|c| c(p, flags))
    }

    /// Runs the destructor on a buffer.
    pub(crate) fn destruct(&self, p: NonNull<u8>) {
        if let Some(d) = &self.dtor {
            d(p);
        }
    }

    /// Counts an allocation (`true`) or free made outside the magazine layer (checking).
    pub(crate) fn count_outside(&self, alloc: bool) {
        let c = if alloc { &self.outside_allocs } else { &self.outside_frees };
        // Release, paired with the Acquire in `snapshot`: as for magazine rounds.
        c.fetch_add(1, Ordering::Release);
    }

    /// A snapshot of the statistics; `failures` is counted by the arena.
    pub(crate) fn stats(&self, failures: u64) -> CacheStats {
        let c = self.snapshot();
        let (depot_full, depot_empty) = self.depot_counts();
        CacheStats {
            name: self.name.clone(),
            buf_size: self.class.size,
            align: self.class.align,
            allocations: c.allocs,
            frees: c.frees,
            failures,
            buffers_in_use: c.in_use,
            high_water: self.high_water.load(Ordering::Relaxed).max(c.in_use),
            magazine_rounds: self.mag_cap,
            depot_full,
            depot_empty,
            slab_buffers: self.slab.buffers(),
        }
    }

    /// Destructs a buffer and returns it to the slab layer.
    ///
    /// # Safety
    /// - `p` is a constructed buffer of this cache that no one uses.
    unsafe fn destroy(&self, p: NonNull<u8>) {
        if let Some(dtor) = &self.dtor {
            dtor(p);
        }
        // SAFETY: `p` came from this cache's slab layer (the contract) and is not free there.
        unsafe { self.slab.free(p) };
    }

    /// As [`CacheCore::destroy`], for a buffer counted in limbo.
    ///
    /// # Safety
    /// - As `destroy`, and `p` was counted by `SlabLayer::enter_limbo`.
    unsafe fn destroy_from_limbo(&self, p: NonNull<u8>) {
        if let Some(dtor) = &self.dtor {
            dtor(p);
        }
        // SAFETY: as in `destroy`, and `p` is in limbo (the contract).
        unsafe { self.slab.free_from_limbo(p) };
    }

    /// Registers a thread's slot, so statistics sum it.
    pub(crate) fn register(&self, slot: SlotRef) {
        self.depot.lock().slots.push(slot);
    }

    /// A thread lets its slot go: magazines to the depot (a partial one's rounds destroyed),
    /// its allocation count folded in, and the slot unregistered, all under the depot lock,
    /// so a concurrent snapshot sees the slot either whole or gone.
    pub(crate) fn retire_slot(&self, slot: &MagSlot) {
        let partial = {
            let mut depot = self.depot.lock();
            // SAFETY: the slot's owner is giving it up (`OwnedTable` / `OwnedSlot` drop, on
            // the owner thread, or the loom model's owner).
            let partial = unsafe { slot.flush(&mut depot) };
            if let Some(m) = &partial {
                self.slab.enter_limbo(m.rounds());
            }
            self.retired_allocs.fetch_add(slot.allocs(), Ordering::Relaxed);
            depot.slots.retain(|r| !std::ptr::eq(r.slot(), slot));
            partial
        };
        if let Some(mut m) = partial {
            for p in m.drain() {
                // SAFETY: rounds of a magazine are constructed buffers of this cache, unused,
                // counted in limbo just above.
                unsafe { self.destroy_from_limbo(p) };
            }
        }
    }

    /// (allocations, frees, buffers in use) over all threads.
    ///
    /// Frees are not counted as they happen: the buffers in use are those out of the slab
    /// layer, less those in the depot, in the threads' magazines and in limbo; frees are
    /// allocations less that. Every move of rounds between a thread's slot, the depot and
    /// limbo happens under the depot lock, under which this reads them; out-of-slab and limbo
    /// are one atomic word. So the snapshot is exact when no other thread is allocating from
    /// or freeing to the cache at that moment (threads that are exiting included); otherwise
    /// it may be off by the magazine another thread is swapping in that instant. No decision
    /// about memory rests on a racy snapshot: `CacheCore::drop` runs when no thread holds a
    /// slot any more.
    pub(crate) fn snapshot(&self) -> Counts {
        let (allocs, cached, out) = {
            let depot = self.depot.lock();
            let (out, limbo) = self.slab.out_and_limbo();
            let mut allocs = self.retired_allocs.load(Ordering::Relaxed);
            let mut cached = depot.rounds() + limbo;
            for t in &depot.slots {
                let s = t.slot();
                allocs = allocs.wrapping_add(s.allocs());
                cached += s.rounds();
            }
            (allocs, cached, out)
        };
        let outside_allocs = self.outside_allocs.load(Ordering::Relaxed);
        let outside_in_use = outside_allocs.saturating_sub(self.outside_frees.load(Ordering::Acquire));
        let in_use = out.saturating_sub(cached) + usize::try_from(outside_in_use).unwrap_or(usize::MAX);
        let allocs = allocs + outside_allocs;
        Counts { allocs, frees: allocs.saturating_sub(in_use as u64), in_use }
    }

    /// Buffers in use now.
    pub(crate) fn in_use(&self) -> usize {
        self.snapshot().in_use
    }

    /// The most buffers seen in use, sampled whenever the cache takes a buffer from the slab
    /// layer (so it can miss a peak that magazines absorbed).
    pub(crate) fn high_water(&self) -> usize {
        self.high_water.load(Ordering::Relaxed).max(self.in_use())
    }

    fn sample_high_water(&self) {
        self.high_water.fetch_max(self.in_use(), Ordering::Relaxed);
    }

    /// Full and empty magazines in the depot.
    pub(crate) fn depot_counts(&self) -> (usize, usize) {
        let d = self.depot.lock();
        (d.full.len(), d.empty.len())
    }

    /// Asks the client to give memory back, then trims the depot to its working set: the
    /// magazines that stayed unused since the previous reap are destroyed (illumos
    /// `kmem_cache_reap`: the reclaim callback, then `kmem_depot_ws_reap`). Returns how many
    /// buffers went back to the slab layer.
    pub(crate) fn reap(&self) -> usize {
        if let Some(reclaim) = &self.reclaim {
            reclaim();
        }
        let (full, empty) = {
            let mut d = self.depot.lock();
            let nf = d.full_min.min(d.full.len());
            let ne = d.empty_min.min(d.empty.len());
            let full: Vec<Magazine> = d.full.drain(..nf).collect();
            let empty: Vec<Magazine> = d.empty.drain(..ne).collect();
            d.full_min = d.full.len();
            d.empty_min = d.empty.len();
            self.slab.enter_limbo(full.iter().map(Magazine::rounds).sum());
            (full, empty)
        };
        drop(empty);
        self.destroy_magazines(full)
    }

    /// Empties the depot entirely (illumos `kmem_depot_ws_zero` then reap, as
    /// `kmem_cache_reap_now` does). Returns how many buffers went back to the slab layer.
    pub(crate) fn purge(&self) -> usize {
        let full = {
            let mut d = self.depot.lock();
            d.empty.clear();
            d.full_min = 0;
            d.empty_min = 0;
            let full = std::mem::take(&mut d.full);
            self.slab.enter_limbo(full.iter().map(Magazine::rounds).sum());
            full
        };
        self.destroy_magazines(full)
    }

    /// Destroys the rounds of magazines taken from the depot (counted in limbo).
    fn destroy_magazines(&self, mags: Vec<Magazine>) -> usize {
        let mut n = 0;
        for mut m in mags {
            for p in m.drain() {
                // SAFETY: depot rounds are constructed buffers of this cache, unused, counted
                // in limbo by the caller.
                unsafe { self.destroy_from_limbo(p) };
                n += 1;
            }
        }
        n
    }

    /// The cache is being let go by its owner, who has dropped its own thread's slot: the
    /// depot's buffers go to the slab layer. Other threads' magazines return at their exit.
    pub(crate) fn release_depot(&self, leaked: bool) {
        if leaked {
            self.leaked.store(true, Ordering::Relaxed);
        }
        self.purge();
    }
}

impl Drop for CacheCore {
    fn drop(&mut self) {
        self.purge();
        if self.leaked.load(Ordering::Relaxed) || self.in_use() > 0 {
            self.slab.leak();
        } else {
            // SAFETY: no buffer is in use and no magazine holds one (every slot held an Arc
            // to this cache, so all are gone, and the depot was just purged).
            unsafe { self.slab.release() };
        }
        return_id(self.id);
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    //! The magazine/depot exchange under loom, with two-round magazines (sharded-slab's
    //! `TinyConfig` habit: a tiny configuration keeps the state space small). Each loom thread
    //! owns its slot explicitly (loom threads share one OS thread, so the thread-local table
    //! cannot stand in for them; the crate turns it off under loom) and runs the real miss,
    //! exchange, retire and snapshot code.

    use super::*;
    use crate::flags::KM_NOSLEEP;
    use crate::magazine::OwnedSlot;
    use loom::sync::Mutex as LoomMutex;
    use std::collections::HashSet;

    #[test]
    fn loom_magazine_depot_exchange_loses_and_duplicates_nothing() {
        // A preemption bound of 3 keeps the exploration to minutes while covering every
        // interleaving with up to three forced switches (loom's documented practice).
        let mut model = loom::model::Builder::new();
        model.preemption_bound = Some(3);
        model.check(|| {
            let core = CacheCore::new("loom".into(), Class { size: 16384, align: 8 }, None, None, None);
            assert_eq!(core.mag_cap, 2, "two-round magazines");
            let live = Arc::new(LoomMutex::new(HashSet::new()));
            let threads: Vec<_> = (0..2)
                .map(|_| {
                    let core = core.clone();
                    let live = live.clone();
                    loom::thread::spawn(move || {
                        let slot = OwnedSlot::new(&core);
                        // Five buffers: frees fill both two-round magazines and unload one full
                        // magazine into the depot; the second round refills from the depot,
                        // possibly with the other thread's magazine.
                        for _ in 0..2 {
                            // SAFETY: this loom thread owns `slot`.
                            let held: Vec<_> =
                                (0..5).map(|_| unsafe { slot.0.alloc(KM_NOSLEEP) }.expect("slab")).collect();
                            {
                                let mut live = live.lock().unwrap();
                                for &p in &held {
                                    assert!(live.insert(p.as_ptr().addr()), "buffer handed out twice");
                                }
                            }
                            {
                                let mut live = live.lock().unwrap();
                                for &p in &held {
                                    live.remove(&p.as_ptr().addr());
                                }
                            }
                            for p in held {
                                // SAFETY: this loom thread owns `slot`; `p` came from the cache
                                // and is freed once.
                                unsafe { slot.0.free(p) };
                            }
                        }
                        drop(slot); // the thread's magazines go back to the depot
                    })
                })
                .collect();
            // A statistics reader racing the exchanges and the retirements: it takes the
            // registry, depot and slab locks in order, so a deadlock would show here.
            let c = core.snapshot();
            assert!(c.in_use <= 10 && c.frees <= c.allocs, "{c:?}");
            for t in threads {
                t.join().unwrap();
            }
            let c = core.snapshot();
            assert_eq!((c.in_use, c.allocs, c.frees), (0, 20, 20), "exact once the threads are gone");
            // Every buffer carved from the slabs is in the depot or back in the slab layer.
            let in_depot: usize = core.depot.lock().rounds();
            let purged = core.purge();
            assert_eq!(purged, in_depot);
            assert_eq!(core.slab.out_and_limbo(), (0, 0));
        });
    }
}
