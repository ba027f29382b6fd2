//! Counting a pool's outstanding elements without a shared read-modify-write on the fast path.
//!
//! `mempool_alloc` adds one and `mempool_free` subtracts one; only
//! [`Mempool::outstanding`](crate::Mempool::outstanding) and teardown read the total. One shared
//! atomic costs every allocation/free pair two locked read-modify-writes and makes every thread
//! using the pool write the same cache line (with two threads looping on one slab pool, about
//! 8 ns more CPU time a pair than the scheme below: `benches/examples/mempool_loop.rs`,
//! `threads 2`). Instead, as
//! ddi-kmem's plain arenas do ("counts per thread, written only by the owning thread, and sums
//! on demand"), each thread writes a slot of its own:
//!
//! - Every thread that counts takes a small **thread index** the first time, the lowest free
//!   one below [`slot_count`] (a bit in the process-wide [`TAKEN`] mask), and gives it back when
//!   it exits (the destructor of the thread-local that owns it). A copy of the index sits in a
//!   constant-initialized thread-local without a destructor, so the fast path reads it with one
//!   thread-relative load.
//! - Each pool holds one cache-padded **slot** per index (two counters: handed out, taken back).
//!   Slot `i` is written only by the thread holding index `i`, with a Relaxed load and store:
//!   no read-modify-write. A thread that found
//!   every index taken (more live threads than slots), or whose index owner is already gone (a
//!   thread-local destructor freeing an element), counts on the pool's **shared** atomic with
//!   `fetch_add`, as before.
//! - The total is the shared atomic plus every slot. Slots of exited threads keep their partial
//!   sums (an element allocated on one thread and freed on another leaves +1 in one slot and -1
//!   in the other), and the next holder of the index carries on from that value.
//!
//! **Why owner-only load/store is exact.** A slot has one writer at a time. While a thread holds
//! index `i` nobody else writes slot `i`, so its load returns its own last store. When the thread
//! exits it clears bit `i` with a Release read-modify-write after its last store; the next thread
//! sets the bit with an Acquire compare-exchange that reads that clear (or a later
//! read-modify-write of the mask, which continues its release sequence), so the old holder's
//! stores happen before the new holder's load, and coherence makes that load return the last of
//! them.
//!
//! **Reading.** The sum is exact whenever no allocation or free runs concurrently with it and
//! every earlier one happened before it: after joining the threads that used the pool, and
//! always at teardown (`&mut`). Concurrently it is a snapshot that may be off by the operations
//! in flight, like the Linux counters it stands beside (`curr_nr` read without the lock). The
//! loom model at the bottom checks the hand-over of an index and the exact sum after a join.

use crate::sync::{AtomicIsize, AtomicU64, AtomicUsize, Ordering, thread_local};
use std::cell::Cell;

/// One thread's share of a pool's count: the elements it handed out and the elements it took
/// back, two counters that only grow (wrapping), so that an allocation and a free in a row do
/// not wait on each other's store: two independent chains through memory of one update each
/// per pair, instead of one chain of two (a few tenths of a nanosecond a pair in
/// `mempool_loop`).
///
/// 128-byte aligned, as crossbeam-utils `CachePadded` on x86-64 and aarch64 (the spatial
/// prefetcher pulls cache lines in pairs), so that threads counting on the same pool never
/// write the same line.
#[repr(align(128))]
#[derive(Debug, Default)]
struct Slot {
    out: AtomicUsize,
    back: AtomicUsize,
}

impl Slot {
    /// Owner-only: no other thread writes this slot while we hold its index (module docs), so
    /// load + store loses no update and needs no ordering of its own.
    #[inline(always)]
    fn add(&self, delta: isize) {
        let (counter, n) = if delta >= 0 { (&self.out, delta) } else { (&self.back, delta.wrapping_neg()) };
        counter.store(counter.load(Ordering::Relaxed).wrapping_add(n as usize), Ordering::Relaxed);
    }

    /// Handed out minus taken back.
    fn net(&self) -> isize {
        self.out.load(Ordering::Relaxed).wrapping_sub(self.back.load(Ordering::Relaxed)) as isize
    }
}

/// A pool's outstanding-element count: per-thread slots plus a shared fallback.
#[derive(Debug, Default)]
pub(crate) struct Outstanding {
    /// Indexed by thread index; slot `i` is written only by the thread holding index `i`. Empty
    /// until the pool is initialized (then [`slot_count`] long), so an uninitialized pool
    /// allocates nothing.
    slots: Box<[Slot]>,
    /// The count of threads without a slot, by read-modify-write.
    shared: AtomicIsize,
}

impl Outstanding {
    /// Makes sure the slots exist (pool initialization; `&mut`, so nobody counts meanwhile).
    pub(crate) fn allocate_slots(&mut self) {
        if self.slots.is_empty() {
            self.slots = (0..slot_count()).map(|_| Slot::default()).collect();
        }
    }

    /// Adds `delta` (+1 for an element handed out, -1 for one freed; a constant at every call
    /// site, so the choice of counter folds away).
    #[inline(always)]
    pub(crate) fn add(&self, delta: isize) {
        match self.slots.get(INDEX.try_with(Cell::get).unwrap_or(NO_INDEX)) {
            Some(slot) => slot.add(delta),
            None => self.add_slow(delta),
        }
    }

    /// [`Outstanding::add`] for a thread without an index yet (it takes one), past the slots,
    /// or exiting.
    #[cold]
    #[inline(never)]
    fn add_slow(&self, delta: isize) {
        // A pool without slots (not initialized yet, or under loom: see `slot_count`) does not
        // make the thread take an index.
        let index = if self.slots.is_empty() { NO_INDEX } else { thread_index() };
        match self.slots.get(index) {
            Some(slot) => slot.add(delta),
            None => {
                self.shared.fetch_add(delta, Ordering::Relaxed);
            }
        }
    }

    /// The total: exact when no `add` runs concurrently (module docs), a snapshot otherwise.
    pub(crate) fn sum(&self) -> isize {
        self.slots.iter().fold(self.shared.load(Ordering::Relaxed), |acc, slot| acc.wrapping_add(slot.net()))
    }

    /// Returns the total and resets it to zero (teardown, initialization).
    pub(crate) fn take(&mut self) -> isize {
        let total = self.sum();
        self.shared.store(0, Ordering::Relaxed);
        for slot in self.slots.iter() {
            slot.out.store(0, Ordering::Relaxed);
            slot.back.store(0, Ordering::Relaxed);
        }
        total
    }
}

/// How many slots a pool has: twice the available parallelism, between 4 and 64 (threads stand
/// for CPUs in this workspace, as in ddi-kmem's magazines; a worker pool of one thread per CPU
/// plus a few others fits). Threads past that count on the shared atomic.
///
/// Under loom: one in this module's own model (so that of two threads, one runs the shared
/// path), and none in the pool models of `tests/loom_mempool.rs`. The count takes no part in the pool's
/// own synchronization (nothing the pool decides reads it), so those models explore the
/// reserve, the wait and the refill without the index registry's states, and this module's
/// model checks the counter.
fn slot_count() -> usize {
    #[cfg(all(loom, test))]
    {
        1
    }
    #[cfg(all(loom, not(test)))]
    {
        0
    }
    #[cfg(not(loom))]
    {
        static COUNT: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
        *COUNT
            .get_or_init(|| std::thread::available_parallelism().map_or(4, |n| n.get()).saturating_mul(2).clamp(4, 64))
    }
}

/// The indices in use, one bit each: bit `i` is set while a live thread holds index `i`. Only
/// indices below [`slot_count`] (at most 64) are handed out: a thread that finds them all taken
/// gets none and counts on the shared atomics for its life.
#[cfg(not(loom))]
static TAKEN: AtomicU64 = AtomicU64::new(0);

/// How a thread's index owner reaches [`TAKEN`] to give its index back.
#[cfg(not(loom))]
type TakenRef = &'static AtomicU64;

#[cfg(not(loom))]
fn taken() -> TakenRef {
    &TAKEN
}

// loom drops its lazy statics before the model's main thread's thread-locals, so the index
// owner keeps a handle of its own.
#[cfg(loom)]
loom::lazy_static! {
    static ref TAKEN: loom::sync::Arc<AtomicU64> = loom::sync::Arc::new(AtomicU64::new(0));
}

#[cfg(loom)]
type TakenRef = loom::sync::Arc<AtomicU64>;

#[cfg(loom)]
fn taken() -> TakenRef {
    TAKEN.clone()
}

/// A thread's index, held for the thread's life and given back when its thread-local drops.
struct ThreadIndex {
    index: usize,
    taken: TakenRef,
}

impl ThreadIndex {
    /// Takes the lowest free index below [`slot_count`], if there is one.
    fn acquire() -> Option<Self> {
        let usable = match slot_count() {
            n if n >= 64 => u64::MAX,
            n => (1u64 << n) - 1,
        };
        let taken = taken();
        let mut now = taken.load(Ordering::Relaxed);
        loop {
            let free = !now & usable;
            if free == 0 {
                return None;
            }
            let bit = free & free.wrapping_neg();
            // Acquire: pairs with the Release of the `fetch_and` that gave this index back
            // (later read-modify-writes of `TAKEN` continue its release sequence), so the last
            // holder's stores to its slots happen before ours.
            match taken.compare_exchange_weak(now, now | bit, Ordering::Acquire, Ordering::Relaxed) {
                Ok(_) => return Some(ThreadIndex { index: bit.trailing_zeros() as usize, taken }),
                Err(seen) => now = seen,
            }
        }
    }
}

impl Drop for ThreadIndex {
    fn drop(&mut self) {
        // From now on this thread counts on the shared atomics (later thread-local destructors
        // may still free elements). `INDEX` has no destructor, so it is still there.
        let _ = INDEX.try_with(|i| i.set(NO_INDEX));
        // Release: every store this thread made to slot `self.index` of any pool happens before
        // the next holder's Acquire takes the index (module docs).
        self.taken.fetch_and(!(1u64 << self.index), Ordering::Release);
    }
}

/// `INDEX` of a thread that has not asked for an index yet.
const UNASSIGNED: usize = usize::MAX;
/// `INDEX` of a thread without an index: none was free, or it gave its index back (it is
/// exiting). It counts on the shared atomics.
const NO_INDEX: usize = usize::MAX - 1;

// The index is read on every count, so it lives in a constant-initialized thread-local without
// a destructor (one thread-relative load, no lazy-initialization check); the `ThreadIndex`
// that owns it, and gives it back when the thread exits, is made on the thread's first count.
#[cfg(not(loom))]
thread_local! {
    static INDEX: Cell<usize> = const { Cell::new(UNASSIGNED) };
    static OWNER: Option<ThreadIndex> = ThreadIndex::acquire();
}

#[cfg(loom)]
thread_local! {
    static INDEX: Cell<usize> = Cell::new(UNASSIGNED);
}
#[cfg(loom)]
thread_local! {
    static OWNER: Option<ThreadIndex> = ThreadIndex::acquire();
}

/// The current thread's index, taken on first use; `NO_INDEX` (the shared atomic) if none was
/// free or once it has been given back.
fn thread_index() -> usize {
    let i = INDEX.try_with(Cell::get).unwrap_or(NO_INDEX);
    if i != UNASSIGNED {
        return i;
    }
    let i = OWNER.try_with(|o| o.as_ref().map_or(NO_INDEX, |o| o.index)).unwrap_or(NO_INDEX);
    let _ = INDEX.try_with(|c| c.set(i));
    i
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// The tests in this module (the only ones in the crate's unit tests that take indices) run
    /// one at a time, so each knows how many threads hold indices.
    fn serial() -> std::sync::MutexGuard<'static, ()> {
        static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
        SERIAL.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    #[test]
    fn counts_on_slots_and_the_shared_atomic() {
        let _serial = serial();
        let mut c = Outstanding::default();
        // Before the slots exist, everything goes to the shared atomic.
        c.add(1);
        assert_eq!((c.sum(), c.shared.load(Ordering::Relaxed)), (1, 1));
        c.allocate_slots();
        assert!(c.slots.len() >= 4);
        c.add(1);
        c.add(1);
        assert_eq!(c.shared.load(Ordering::Relaxed), 1, "this thread has a slot now");
        assert_eq!(c.sum(), 3);
        std::thread::scope(|s| {
            s.spawn(|| c.add(-1));
            s.spawn(|| c.add(-1));
        });
        assert_eq!(c.sum(), 1);
        assert_eq!(c.take(), 1);
        assert_eq!(c.sum(), 0);
    }

    #[test]
    fn more_threads_than_slots_use_the_shared_atomic() {
        let _serial = serial();
        let mut c = Outstanding::default();
        c.allocate_slots();
        let n = c.slots.len() + 3;
        let barrier = std::sync::Barrier::new(n);
        let indices: Vec<usize> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..n)
                .map(|_| {
                    // All alive at once, so at least three have no index.
                    s.spawn(|| {
                        c.add(2);
                        barrier.wait();
                        c.add(-1);
                        thread_index()
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().expect("thread")).collect()
        });
        assert_eq!(c.sum(), n as isize);
        let without = indices.iter().filter(|&&i| i == NO_INDEX).count();
        assert!(without >= 3, "{indices:?}");
        assert_eq!(c.shared.load(Ordering::Relaxed), without as isize, "the threads without an index counted here");
        let mut with: Vec<_> = indices.iter().filter(|&&i| i != NO_INDEX).collect();
        with.sort();
        with.dedup();
        assert_eq!(with.len(), n - without, "no two live threads share an index");
    }

    #[test]
    fn indices_are_reused_after_threads_exit() {
        let _serial = serial();
        // Threads started one after another, more than there are slots: each gives its index
        // back when it exits, so every one of them finds one free.
        let started = if cfg!(miri) { 3 * slot_count() } else { 200 };
        let c = Arc::new({
            let mut c = Outstanding::default();
            c.allocate_slots();
            c
        });
        for t in 0..started {
            let c = Arc::clone(&c);
            let i = std::thread::spawn(move || {
                c.add(1);
                thread_index()
            })
            .join()
            .expect("thread");
            assert!(i < slot_count(), "thread {t} got no index: indices are not reused");
        }
        assert_eq!(c.sum(), started as isize);
        assert_eq!(c.shared.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn an_exiting_thread_counts_on_the_shared_atomic() {
        use std::cell::RefCell;
        struct FreeOnExit(Arc<Outstanding>);
        impl Drop for FreeOnExit {
            fn drop(&mut self) {
                self.0.add(-1);
            }
        }
        thread_local! {
            static LATE: RefCell<Option<FreeOnExit>> = const { RefCell::new(None) };
        }
        let _serial = serial();
        let c = Arc::new({
            let mut c = Outstanding::default();
            c.allocate_slots();
            c
        });
        let c2 = Arc::clone(&c);
        let index = std::thread::spawn(move || {
            // Registered before the thread's index owner (the first count makes that), so
            // destroyed after it: thread-locals with destructors are destroyed in reverse order
            // of registration (glibc `__cxa_thread_atexit_impl`).
            LATE.with(|l| *l.borrow_mut() = Some(FreeOnExit(Arc::clone(&c2))));
            c2.add(1);
            thread_index()
        })
        .join()
        .expect("thread");
        assert!(index < slot_count(), "the thread had an index");
        assert_eq!(c.sum(), 0);
        assert_eq!(c.slots[index].net(), 1, "the thread counted its allocation on its slot");
        assert_eq!(c.shared.load(Ordering::Relaxed), -1, "the late free counted on the shared atomic");
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use loom::sync::Arc;

    /// One slot. An element allocated on a thread that then exits is freed on a later thread
    /// while another thread counts too: whichever of the two takes the exited thread's index
    /// carries on from its slot, the other finds no index free and counts on the shared atomic.
    /// The new holder's load must see the old holder's store (the Release/Acquire pair on
    /// `TAKEN`), so the sum after the joins is exact in every interleaving. The model's own
    /// thread only reads.
    #[test]
    fn loom_counter_index_handover_is_exact() {
        loom::model(|| {
            let mut c = Outstanding::default();
            c.allocate_slots();
            let c = Arc::new(c);
            let c1 = c.clone();
            loom::thread::spawn(move || c1.add(1)).join().unwrap(); // index 0, given back at exit
            let c2 = c.clone();
            let freer = loom::thread::spawn(move || c2.add(-1));
            let c3 = c.clone();
            let other = loom::thread::spawn(move || c3.add(1));
            freer.join().unwrap();
            other.join().unwrap();
            assert_eq!(c.sum(), 1);
        });
    }
}
