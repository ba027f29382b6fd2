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
//! The owner thread is the only one that touches its magazines, so the fast path has no
//! atomic read-modify-write at all; its counters are written by the owner with a relaxed
//! load and store and read by anyone with a relaxed load.
//!
//! When a thread exits, its magazines go back to the depot (full ones to the full list, empty
//! ones to the empty list; a partial one's buffers are destroyed and go to the slab layer).

use crate::cache::CacheCore;
use crate::context::with_state;
use crate::sync::{AtomicU64, Ordering};
use std::cell::RefCell;
use std::ptr::NonNull;
use std::sync::Arc;

/// A magazine: a stack of constructed buffers with a fixed capacity.
#[derive(Debug)]
pub(crate) struct Magazine(Vec<NonNull<u8>>);

// SAFETY: a magazine is a list of free buffers owned by whoever holds the magazine.
unsafe impl Send for Magazine {}

impl Magazine {
    pub(crate) fn with_capacity(cap: usize) -> Self {
        Magazine(Vec::with_capacity(cap))
    }

    pub(crate) fn rounds(&self) -> usize {
        self.0.len()
    }

    pub(crate) fn drain(&mut self) -> impl Iterator<Item = NonNull<u8>> + '_ {
        self.0.drain(..)
    }
}

/// Alloc and free counts of one thread in one cache. Written only by the owning thread.
#[derive(Debug, Default)]
pub(crate) struct ThreadCounters {
    pub(crate) allocs: AtomicU64,
    pub(crate) frees: AtomicU64,
}

impl ThreadCounters {
    /// Owner-only increment: a load and a store, no read-modify-write. The store is Release
    /// (free on x86 and cheap elsewhere) and [`CacheCore::counts`] reads with Acquire, so a
    /// reader that sees a free counted also sees everything the freeing thread did before:
    /// a layer above may destroy a cache once it reads no buffer in use (streams-core's
    /// close of a message environment relies on it).
    #[inline]
    fn bump(c: &AtomicU64) {
        c.store(c.load(Ordering::Relaxed) + 1, Ordering::Release);
    }
}

/// The full and empty magazines of a cache, with their working-set minima.
#[derive(Debug, Default)]
pub(crate) struct Depot {
    pub(crate) full: Vec<Magazine>,
    pub(crate) empty: Vec<Magazine>,
    /// The fewest full / empty magazines the depot held since the last working-set update:
    /// that many were not needed during the interval (illumos `ml_min`).
    pub(crate) full_min: usize,
    pub(crate) empty_min: usize,
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
}

/// One thread's magazines for one cache.
#[derive(Debug)]
pub(crate) struct CpuCache {
    pub(crate) core: Arc<CacheCore>,
    cap: usize,
    loaded: Magazine,
    prev: Magazine,
    pub(crate) counters: Arc<ThreadCounters>,
}

impl CpuCache {
    pub(crate) fn new(core: Arc<CacheCore>, counters: Arc<ThreadCounters>) -> Self {
        let cap = core.mag_cap;
        CpuCache { core, cap, loaded: Magazine::with_capacity(cap), prev: Magazine::with_capacity(cap), counters }
    }

    /// Pops a constructed buffer from the loaded magazine, swapping in the previous one if it
    /// holds rounds.
    #[inline(always)]
    pub(crate) fn pop(&mut self) -> Option<NonNull<u8>> {
        let p = match self.loaded.0.pop() {
            Some(p) => p,
            None => {
                if self.prev.0.is_empty() {
                    return None;
                }
                std::mem::swap(&mut self.loaded, &mut self.prev);
                self.loaded.0.pop()?
            }
        };
        ThreadCounters::bump(&self.counters.allocs);
        Some(p)
    }

    /// Pushes a freed buffer onto the loaded magazine, swapping in the previous one if it is
    /// empty. Gives the buffer back when both are full.
    #[inline(always)]
    pub(crate) fn push(&mut self, p: NonNull<u8>) -> Result<(), NonNull<u8>> {
        if self.loaded.0.len() == self.cap {
            if !self.prev.0.is_empty() {
                return Err(p);
            }
            std::mem::swap(&mut self.loaded, &mut self.prev);
        }
        debug_assert!(self.loaded.0.len() < self.loaded.0.capacity(), "internal: magazine overflow");
        self.loaded.0.push(p);
        ThreadCounters::bump(&self.counters.frees);
        Ok(())
    }

    /// Counts an allocation served below the magazine layer.
    pub(crate) fn count_alloc(&self) {
        ThreadCounters::bump(&self.counters.allocs);
    }

    /// Alloc miss: both magazines are empty. Trade the previous (empty) magazine for a full
    /// one from the depot: the loaded one becomes previous, the full one loaded.
    pub(crate) fn refill(&mut self, depot: &mut Depot) -> bool {
        debug_assert!(self.loaded.0.is_empty() && self.prev.0.is_empty(), "internal: refill with rounds left");
        let Some(full) = depot.take_full() else { return false };
        let empty = std::mem::replace(&mut self.prev, std::mem::replace(&mut self.loaded, full));
        depot.empty.push(empty);
        true
    }

    /// Free miss: both magazines are full. Trade the previous (full) magazine for an empty one
    /// from the depot, or a new one.
    pub(crate) fn unload(&mut self, depot: &mut Depot) {
        debug_assert!(self.loaded.0.len() == self.cap && self.prev.0.len() == self.cap, "internal: unload");
        let empty = depot.take_empty().unwrap_or_else(|| Magazine::with_capacity(self.cap));
        let full = std::mem::replace(&mut self.prev, std::mem::replace(&mut self.loaded, empty));
        depot.full.push(full);
    }

    /// Gives both magazines back to the depot: full ones to the full list, empty ones to the
    /// empty list; a partial one's rounds are returned (for destruction) to the caller.
    pub(crate) fn flush(&mut self, depot: &mut Depot, partial: &mut Vec<NonNull<u8>>) {
        for mut m in [
            std::mem::replace(&mut self.loaded, Magazine::with_capacity(0)),
            std::mem::replace(&mut self.prev, Magazine::with_capacity(0)),
        ] {
            if m.rounds() == self.cap {
                depot.full.push(m);
            } else {
                partial.extend(m.drain());
                if m.0.capacity() >= self.cap {
                    depot.empty.push(m);
                }
            }
        }
    }
}

impl Drop for CpuCache {
    fn drop(&mut self) {
        let core = self.core.clone();
        core.retire_thread(self);
    }
}

/// The calling thread's magazines, indexed by cache id (kept in `context::ThreadState`).
pub(crate) struct MagTable(pub(crate) RefCell<Vec<Option<Box<CpuCache>>>>);

impl MagTable {
    /// The `CpuCache` for cache `id`, if the thread has one and the table is not already
    /// borrowed further up this thread's stack.
    #[inline(always)]
    pub(crate) fn with<R>(&self, id: usize, f: impl FnOnce(&mut CpuCache) -> Option<R>) -> Option<R> {
        let mut t = self.0.try_borrow_mut().ok()?;
        let cc = t.get_mut(id)?.as_deref_mut()?;
        f(cc)
    }
}

/// Runs `f` on the calling thread's `CpuCache` for `id`, if it has one and the table is
/// reachable (not being torn down, not already borrowed further up this thread's stack).
#[inline]
pub(crate) fn with_cpu_cache<R>(id: usize, f: impl FnOnce(&mut CpuCache) -> Option<R>) -> Option<R> {
    with_state(|s| s.mags.with(id, f)).flatten()
}

/// Like [`with_cpu_cache`], creating the thread's `CpuCache` for `core` first if needed.
pub(crate) fn with_cpu_cache_or_new<R>(core: &Arc<CacheCore>, f: impl FnOnce(&mut CpuCache) -> R) -> Option<R> {
    with_state(|s| {
        let mut t = s.mags.0.try_borrow_mut().ok()?;
        if t.len() <= core.id {
            t.resize_with(core.id + 1, || None);
        }
        let slot = &mut t[core.id];
        if slot.is_none() {
            *slot = Some(Box::new(CpuCache::new(core.clone(), core.register_thread())));
        }
        Some(f(slot.as_deref_mut().expect("just filled")))
    })
    .flatten()
}

/// Drops the calling thread's `CpuCache` for `id`, if any (its magazines go to the depot).
pub(crate) fn drop_cpu_cache(id: usize) {
    let cc = with_state(|s| s.mags.0.try_borrow_mut().ok().and_then(|mut t| t.get_mut(id).and_then(Option::take)));
    drop(cc);
}
