//! Failure injection: make chosen allocations fail so callers' failure paths run.
//!
//! Only allocations that are *allowed to fail* are eligible: those that may not sleep
//! (`KM_NOSLEEP`, or every allocation under a personality that ignores `KM_SLEEP`). A
//! `KM_SLEEP` allocation is "guaranteed to succeed" and is never failed by injection, as
//! illumos applies `kmem_mtbf` only to `KM_NOSLEEP` allocations (illumos.md §1.3).

use crate::sync::{AtomicBool, AtomicU64, Mutex, Ordering};
use std::ops::RangeInclusive;

/// Which eligible allocations fail.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FailurePlan {
    /// Only the `n`th eligible allocation after arming (1-based).
    Nth(u64),
    /// Every `n`th eligible allocation: the `n`th, `2n`th, ... (`n` >= 1).
    EveryNth(u64),
    /// A seeded pseudo-random fraction, `per_million` out of 1 000 000, reproducible per seed.
    Fraction {
        /// The generator's seed.
        seed: u64,
        /// Failures per million eligible allocations.
        per_million: u32,
    },
    /// Every eligible allocation whose requested size lies in the range.
    SizeRange(RangeInclusive<usize>),
    /// Every eligible allocation.
    Always,
}

#[derive(Debug)]
struct Armed {
    plan: FailurePlan,
    seen: u64,
    rng: u64,
}

/// How many arenas of the process have a plan armed. The allocation fast paths test this one
/// word (a load off the instruction pointer, no arena to reach) and step aside while it is
/// non-zero; the general path then asks the arena's own injector. A `std` atomic even under
/// loom, since a `static` needs a `const` constructor, and only a hint like `armed`.
static ARMED_ANYWHERE: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Whether any arena may inject failures (see [`ARMED_ANYWHERE`]).
#[inline(always)]
pub(crate) fn any_armed() -> bool {
    ARMED_ANYWHERE.load(std::sync::atomic::Ordering::Relaxed) != 0
}

#[derive(Debug, Default)]
pub(crate) struct Injector {
    armed: AtomicBool,
    state: Mutex<Option<Armed>>,
    injected: AtomicU64,
}

impl Injector {
    pub(crate) fn arm(&self, plan: FailurePlan) {
        if let FailurePlan::EveryNth(0) | FailurePlan::Nth(0) = plan {
            panic!("FailurePlan: n must be at least 1, got {plan:?}");
        }
        let rng = match plan {
            FailurePlan::Fraction { seed, .. } => {
                // splitmix64 of the seed: a bijection, so distinct seeds give distinct
                // generators (`seed | 1` made seeds 2k and 2k+1 identical); xorshift needs a
                // non-zero state.
                let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
                z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
                z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
                z ^= z >> 31;
                if z == 0 { 0x9e37_79b9_7f4a_7c15 } else { z }
            }
            _ => 1,
        };
        let mut state = self.state.lock();
        // Counted under the lock, so concurrent arms and disarms of one injector count it
        // once. Relaxed: a hint, as `armed` is for the general path; a thread that arms and
        // then allocates sees its own write.
        if state.replace(Armed { plan, seen: 0, rng }).is_none() {
            ARMED_ANYWHERE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        self.armed.store(true, Ordering::Release);
    }

    pub(crate) fn disarm(&self) {
        let mut state = self.state.lock();
        if state.take().is_some() {
            ARMED_ANYWHERE.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        }
        self.armed.store(false, Ordering::Release);
    }

    pub(crate) fn injected(&self) -> u64 {
        self.injected.load(Ordering::Relaxed)
    }

    /// Whether this eligible allocation of `size` bytes is to fail.
    #[inline]
    pub(crate) fn should_fail(&self, size: usize) -> bool {
        // Relaxed would do for the hint, but Acquire pairs with `arm`'s Release so a thread
        // that sees the flag also sees the plan (the plan itself is read under the lock).
        if !self.armed.load(Ordering::Acquire) {
            return false;
        }
        self.decide(size)
    }

    #[cold]
    fn decide(&self, size: usize) -> bool {
        let mut state = self.state.lock();
        let Some(armed) = state.as_mut() else { return false };
        armed.seen += 1;
        let fail = match &armed.plan {
            FailurePlan::Nth(n) => armed.seen == *n,
            FailurePlan::EveryNth(n) => armed.seen % n == 0,
            FailurePlan::Fraction { per_million, .. } => {
                // xorshift64*: small, seedable, good enough to spread failures.
                let mut x = armed.rng;
                x ^= x >> 12;
                x ^= x << 25;
                x ^= x >> 27;
                armed.rng = x;
                (x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 32) % 1_000_000 < u64::from(*per_million)
            }
            FailurePlan::SizeRange(r) => r.contains(&size),
            FailurePlan::Always => true,
        };
        if fail {
            self.injected.fetch_add(1, Ordering::Relaxed);
        }
        fail
    }
}

impl Drop for Injector {
    fn drop(&mut self) {
        // An arena dropped with a plan armed no longer holds the fast paths back.
        self.disarm();
    }
}
