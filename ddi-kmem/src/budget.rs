//! The arena's byte budget: charging, releasing, and sleeping until a release makes room.
//!
//! # The sleep/wake protocol
//! A `KM_SLEEP` caller that cannot be charged registers itself in `sleepers` and re-checks the
//! budget *under `lock`*, then waits on `room`. A releaser subtracts its bytes from `in_use`
//! and then reads `sleepers`; if it is non-zero it takes `lock` and notifies.
//!
//! No wake-up is lost: both sides use `SeqCst` for the write-then-read pair (the sleeper writes
//! `sleepers` then reads `in_use`; the releaser writes `in_use` then reads `sleepers`). In the
//! single total order of `SeqCst` operations one of the two writes comes first, so either the
//! sleeper's re-check sees the released bytes, or the releaser sees the sleeper and notifies;
//! since the releaser notifies under `lock` and the sleeper re-checks under `lock` before
//! waiting, the notification cannot fall between the re-check and the wait. The loom model in
//! `tests/loom_budget.rs` explores this.

use crate::sync::{AtomicUsize, Condvar, Mutex, Ordering, seqcst_pair_fence};
use std::time::Duration;

/// Why a charge did not succeed.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Refused {
    /// The budget cannot cover the request now.
    Exhausted,
    /// The request is larger than the whole budget: no amount of freeing helps.
    NeverFits,
}

#[derive(Debug)]
pub(crate) struct Budget {
    limit: Option<usize>,
    in_use: AtomicUsize,
    high_water: AtomicUsize,
    sleepers: AtomicUsize,
    lock: Mutex<()>,
    room: Condvar,
}

impl Budget {
    pub(crate) fn new(limit: Option<usize>) -> Self {
        Budget {
            limit,
            in_use: AtomicUsize::new(0),
            high_water: AtomicUsize::new(0),
            sleepers: AtomicUsize::new(0),
            lock: Mutex::new(()),
            room: Condvar::new(),
        }
    }

    pub(crate) fn limit(&self) -> Option<usize> {
        self.limit
    }

    pub(crate) fn in_use(&self) -> usize {
        self.in_use.load(Ordering::Relaxed)
    }

    pub(crate) fn sleepers(&self) -> usize {
        self.sleepers.load(Ordering::SeqCst)
    }

    pub(crate) fn high_water(&self) -> usize {
        self.high_water.load(Ordering::Relaxed)
    }

    /// Charges `bytes` if the budget covers them, without waiting.
    #[inline]
    pub(crate) fn try_charge(&self, bytes: usize) -> Result<(), Refused> {
        let new = match self.limit {
            None => self.in_use.fetch_add(bytes, Ordering::SeqCst) + bytes,
            Some(limit) => {
                if bytes > limit {
                    return Err(Refused::NeverFits);
                }
                let mut cur = self.in_use.load(Ordering::SeqCst);
                loop {
                    if cur + bytes > limit {
                        return Err(Refused::Exhausted);
                    }
                    // SeqCst: this read-modify-write is one half of the sleep/wake pair
                    // (module doc); a failed CAS re-reads the current value.
                    match self.in_use.compare_exchange_weak(cur, cur + bytes, Ordering::SeqCst, Ordering::SeqCst) {
                        Ok(_) => break cur + bytes,
                        Err(seen) => cur = seen,
                    }
                }
            }
        };
        self.high_water.fetch_max(new, Ordering::Relaxed);
        Ok(())
    }

    /// Charges `bytes`, sleeping until releases make room. Returns how many times it slept.
    ///
    /// `NeverFits` is returned at once for a request larger than the whole budget.
    pub(crate) fn charge_sleeping(&self, bytes: usize) -> Result<u64, Refused> {
        match self.try_charge(bytes) {
            Ok(()) => return Ok(0),
            Err(Refused::NeverFits) => return Err(Refused::NeverFits),
            Err(Refused::Exhausted) => {}
        }
        let mut slept = 0;
        let mut guard = self.lock.lock();
        // SeqCst: the sleeper's write in the write-then-read pair (module doc).
        self.sleepers.fetch_add(1, Ordering::SeqCst);
        seqcst_pair_fence();
        let result = loop {
            match self.try_charge(bytes) {
                Ok(()) => break Ok(slept),
                Err(Refused::Exhausted) => {}
                Err(e) => break Err(e),
            }
            slept += 1;
            // The timeout is a backstop only; correctness rests on the protocol above.
            let _ = self.room.wait_for(&mut guard, Duration::from_millis(500));
        };
        self.sleepers.fetch_sub(1, Ordering::SeqCst);
        drop(guard);
        result
    }

    /// Returns `bytes` to the budget and wakes sleepers if there are any.
    #[inline]
    pub(crate) fn release(&self, bytes: usize) {
        // SeqCst: the releaser's write in the write-then-read pair (module doc).
        let prev = self.in_use.fetch_sub(bytes, Ordering::SeqCst);
        debug_assert!(prev >= bytes, "internal: budget released more than charged");
        seqcst_pair_fence();
        if self.sleepers.load(Ordering::SeqCst) != 0 {
            self.wake();
        }
    }

    #[cold]
    fn wake(&self) {
        let _guard = self.lock.lock();
        self.room.notify_all();
    }
}
