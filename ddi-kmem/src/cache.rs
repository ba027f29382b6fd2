//! Object caches: a slab layer of raw buffers behind a magazine layer of constructed ones.
//!
//! The size classes behind `kmem_alloc` are such caches without constructor or destructor;
//! `kmem_cache_create` makes them with one. The Solaris meaning of constructed state holds: a
//! buffer is constructed when it leaves the slab layer and destroyed when it returns there
//! (from a depot reap or purge, from a thread exit's partial magazine, or when the magazine
//! layer cannot take a free), never on an ordinary alloc/free pair.

use crate::class::Class;
use crate::flags::KmFlags;
use crate::magazine::{
    CpuCache, Depot, Magazine, ThreadCounters, drop_cpu_cache, with_cpu_cache, with_cpu_cache_or_new,
};
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

/// How many rounds a magazine of `size`-byte buffers holds: enough that one depot exchange
/// (a lock) is amortised over up to 64 operations, but at most about 32 KiB of buffers per
/// magazine, so a thread's two magazines hold at most ~64 KiB idle per cache. illumos grows
/// its magazines from 15 rounds (<= 64 B) towards 143 under depot contention; per-thread
/// magazines never contend, so one size chosen up front does.
fn magazine_rounds(size: usize) -> usize {
    (32 * 1024 / size).clamp(2, 64)
}

/// Cache ids index every thread's magazine table; they are reused once a cache is gone.
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

/// One object cache.
pub(crate) struct CacheCore {
    pub(crate) id: usize,
    pub(crate) name: String,
    pub(crate) class: Class,
    pub(crate) mag_cap: usize,
    pub(crate) slab: SlabLayer,
    depot: Mutex<Depot>,
    threads: Mutex<Vec<Arc<ThreadCounters>>>,
    retired_allocs: AtomicU64,
    retired_frees: AtomicU64,
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
            threads: Mutex::new(Vec::new()),
            retired_allocs: AtomicU64::new(0),
            retired_frees: AtomicU64::new(0),
            high_water: AtomicUsize::new(0),
            ctor,
            dtor,
            reclaim,
            leaked: AtomicBool::new(false),
        })
    }

    /// A constructed buffer, or `None` if the slab layer cannot grow or the constructor fails.
    #[inline]
    pub(crate) fn alloc(self: &Arc<Self>, flags: KmFlags) -> Option<NonNull<u8>> {
        if let Some(p) = with_cpu_cache(self.id, CpuCache::pop) {
            return Some(p);
        }
        self.alloc_slow(flags)
    }

    #[cold]
    fn alloc_slow(self: &Arc<Self>, flags: KmFlags) -> Option<NonNull<u8>> {
        let from_depot = with_cpu_cache_or_new(self, |cc| self.refill_and_pop(cc));
        if let Some(Some(p)) = from_depot {
            self.sample_high_water();
            return Some(p);
        }
        let p = self.slab.alloc()?;
        if let Some(ctor) = &self.ctor {
            if !ctor(p, flags) {
                // SAFETY: `p` came from this slab layer just above and was never handed out.
                unsafe { self.slab.free(p) };
                return None;
            }
        }
        if with_cpu_cache(self.id, |cc| {
            cc.count_alloc();
            Some(())
        })
        .is_none()
        {
            self.retired_allocs.fetch_add(1, Ordering::Relaxed);
        }
        self.sample_high_water();
        Some(p)
    }

    /// The magazine layer's alloc miss: a round from the thread's magazines, else a full
    /// magazine from the depot in exchange for an empty one. `None`: the depot had none.
    pub(crate) fn refill_and_pop(&self, cc: &mut CpuCache) -> Option<NonNull<u8>> {
        cc.pop().or_else(|| if cc.refill(&mut self.depot.lock()) { cc.pop() } else { None })
    }

    /// The magazine layer's free miss: push onto the thread's magazines, else trade the full
    /// previous magazine for an empty one from the depot (or a new one) and push there.
    pub(crate) fn unload_and_push(&self, cc: &mut CpuCache, p: NonNull<u8>) -> bool {
        match cc.push(p) {
            Ok(()) => true,
            Err(p) => {
                cc.unload(&mut self.depot.lock());
                cc.push(p).is_ok()
            }
        }
    }

    /// Returns a constructed buffer to the cache.
    ///
    /// # Safety
    /// - `p` came from [`CacheCore::alloc`] of this cache, is in use, and is not used after.
    #[inline]
    pub(crate) unsafe fn free(self: &Arc<Self>, p: NonNull<u8>) {
        if with_cpu_cache(self.id, |cc| cc.push(p).ok()).is_some() {
            return;
        }
        // SAFETY: forwarded contract.
        unsafe { self.free_slow(p) }
    }

    /// # Safety
    /// As [`CacheCore::free`].
    #[cold]
    unsafe fn free_slow(self: &Arc<Self>, p: NonNull<u8>) {
        let done = with_cpu_cache_or_new(self, |cc| self.unload_and_push(cc, p));
        if done != Some(true) {
            // No magazine layer on this thread (it is exiting): destroy into the slab layer.
            // SAFETY: `p` is a constructed buffer of this cache no one uses any more.
            unsafe { self.destroy(p) };
            self.retired_frees.fetch_add(1, Ordering::Release);
        }
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
        let c = if alloc { &self.retired_allocs } else { &self.retired_frees };
        c.fetch_add(1, Ordering::Release);
    }

    /// A snapshot of the statistics; `failures` is counted by the arena.
    pub(crate) fn stats(&self, failures: u64) -> CacheStats {
        let (allocations, frees) = self.counts();
        let (depot_full, depot_empty) = self.depot_counts();
        CacheStats {
            name: self.name.clone(),
            buf_size: self.class.size,
            align: self.class.align,
            allocations,
            frees,
            failures,
            buffers_in_use: usize::try_from(allocations.saturating_sub(frees)).unwrap_or(usize::MAX),
            high_water: self.high_water(),
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

    /// A thread's counters, registered so statistics can sum them.
    pub(crate) fn register_thread(&self) -> Arc<ThreadCounters> {
        let c = Arc::new(ThreadCounters::default());
        self.threads.lock().push(c.clone());
        c
    }

    /// A thread's `CpuCache` is going away: magazines to the depot, counters folded in.
    pub(crate) fn retire_thread(&self, cc: &mut CpuCache) {
        let mut partial = Vec::new();
        cc.flush(&mut self.depot.lock(), &mut partial);
        for p in partial {
            // SAFETY: rounds of a magazine are constructed buffers of this cache, unused.
            unsafe { self.destroy(p) };
        }
        let c = &cc.counters;
        // Under the lock `counts` takes, so a reader never sees the counts twice or not at all.
        let mut threads = self.threads.lock();
        self.retired_allocs.fetch_add(c.allocs.load(Ordering::Relaxed), Ordering::Release);
        self.retired_frees.fetch_add(c.frees.load(Ordering::Relaxed), Ordering::Release);
        threads.retain(|t| !Arc::ptr_eq(t, c));
    }

    /// (allocations, frees) so far, over all threads.
    pub(crate) fn counts(&self) -> (u64, u64) {
        let threads = self.threads.lock();
        let mut a = self.retired_allocs.load(Ordering::Acquire);
        let mut f = self.retired_frees.load(Ordering::Acquire);
        for t in threads.iter() {
            a += t.allocs.load(Ordering::Acquire);
            f += t.frees.load(Ordering::Acquire);
        }
        (a, f)
    }

    /// Buffers in use now.
    pub(crate) fn in_use(&self) -> usize {
        let (a, f) = self.counts();
        usize::try_from(a.saturating_sub(f)).unwrap_or(usize::MAX)
    }

    /// The most buffers seen in use, sampled whenever the cache reaches below its magazines
    /// (so it can miss a peak that magazines absorbed).
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
            std::mem::take(&mut d.full)
        };
        self.destroy_magazines(full)
    }

    fn destroy_magazines(&self, mags: Vec<Magazine>) -> usize {
        let mut n = 0;
        for mut m in mags {
            for p in m.drain() {
                // SAFETY: depot rounds are constructed buffers of this cache, unused.
                unsafe { self.destroy(p) };
                n += 1;
            }
        }
        n
    }

    /// The cache is being let go by its owner: give the calling thread's magazines back, and
    /// the depot's buffers to the slab layer. Other threads' magazines return at their exit.
    pub(crate) fn retire(&self, leaked: bool) {
        if leaked {
            self.leaked.store(true, Ordering::Relaxed);
        }
        drop_cpu_cache(self.id);
        self.purge();
    }
}

impl Drop for CacheCore {
    fn drop(&mut self) {
        self.purge();
        if self.leaked.load(Ordering::Relaxed) || self.in_use() > 0 {
            self.slab.leak();
        } else {
            // SAFETY: no buffer is in use and no magazine holds one (every CpuCache held an
            // Arc to this cache, so all are gone, and the depot was just purged).
            unsafe { self.slab.release() };
        }
        return_id(self.id);
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    //! The magazine/depot exchange under loom, with two-round magazines (sharded-slab's
    //! `TinyConfig` habit: a tiny configuration keeps the state space small). Each loom thread
    //! owns its `CpuCache` explicitly (loom threads share one OS thread, so the thread-local
    //! table cannot stand in for them) and runs the real exchange code.

    use super::*;
    use crate::magazine::CpuCache;
    use loom::sync::Mutex as LoomMutex;
    use std::collections::HashSet;

    fn alloc(core: &Arc<CacheCore>, cc: &mut CpuCache) -> NonNull<u8> {
        core.refill_and_pop(cc).unwrap_or_else(|| {
            let p = core.slab.alloc().expect("slab");
            cc.count_alloc();
            p
        })
    }

    #[test]
    fn loom_magazine_depot_exchange_loses_and_duplicates_nothing() {
        // A preemption bound of 2 keeps the exploration to minutes while covering every
        // interleaving with up to two forced switches (loom's documented practice).
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
                        let mut cc = CpuCache::new(core.clone(), core.register_thread());
                        // Five buffers: frees fill both two-round magazines and unload one full
                        // magazine into the depot; the second round refills from the depot,
                        // possibly with the other thread's magazine.
                        for _ in 0..2 {
                            let held: Vec<_> = (0..5).map(|_| alloc(&core, &mut cc)).collect();
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
                                assert!(core.unload_and_push(&mut cc, p));
                            }
                        }
                        drop(cc); // the thread's magazines go back to the depot
                    })
                })
                .collect();
            for t in threads {
                t.join().unwrap();
            }
            assert_eq!(core.in_use(), 0);
            // Every buffer carved from the slabs is in the depot or back in the slab layer.
            let in_depot: usize = {
                let d = core.depot.lock();
                d.full.iter().chain(d.empty.iter()).map(Magazine::rounds).sum()
            };
            let purged = core.purge();
            assert_eq!(purged, in_depot);
        });
    }
}
