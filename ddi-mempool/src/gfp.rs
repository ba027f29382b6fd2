//! `gfp_t`: the Linux allocation flags, reduced to what decides whether a call may sleep.

use std::fmt;
use std::ops::{BitAnd, BitOr, BitOrAssign, Not};

/// A Linux `gfp_t` allocation mask, as `mempool_alloc` and the pool's `alloc_fn` receive it.
///
/// Only the bits that change what a mempool (or its kmem-backed helpers) does are modelled.
/// Their values are those of Linux 6.x `include/linux/gfp_types.h` (`___GFP_IO_BIT` 6 and so
/// on), so a port that prints a mask sees familiar numbers; nothing depends on them.
///
/// The question every call asks is [`Gfp::may_sleep`]: the mask holds
/// [`__GFP_DIRECT_RECLAIM`] (Linux 4.4 and later; `__GFP_WAIT` before). [`GFP_KERNEL`],
/// [`GFP_NOFS`] and [`GFP_NOIO`] may sleep; [`GFP_ATOMIC`] and [`GFP_NOWAIT`] may not.
///
/// # Examples
/// ```
/// use ddi_mempool::{GFP_ATOMIC, GFP_KERNEL, GFP_NOIO, GFP_NOWAIT};
///
/// assert!(GFP_KERNEL.may_sleep() && GFP_NOIO.may_sleep());
/// assert!(!GFP_ATOMIC.may_sleep() && !GFP_NOWAIT.may_sleep());
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Gfp(u32);

/// Access the emergency reserves (Linux `__GFP_HIGH`): part of [`GFP_ATOMIC`].
pub const __GFP_HIGH: Gfp = Gfp(1 << 5);
/// May start physical I/O (Linux `__GFP_IO`).
pub const __GFP_IO: Gfp = Gfp(1 << 6);
/// May call into the file system (Linux `__GFP_FS`).
pub const __GFP_FS: Gfp = Gfp(1 << 7);
/// Don't warn on failure (Linux `__GFP_NOWARN`); `mempool_alloc` adds it.
pub const __GFP_NOWARN: Gfp = Gfp(1 << 13);
/// Don't loop in the page allocator; failure is acceptable (Linux `__GFP_NORETRY`);
/// `mempool_alloc` adds it. A kmem-backed `alloc_fn` maps it to `KM_NOSLEEP` (see
/// [`Gfp::km_flags`]).
pub const __GFP_NORETRY: Gfp = Gfp(1 << 16);
/// Don't use the emergency reserves (Linux `__GFP_NOMEMALLOC`); `mempool_alloc` adds it.
pub const __GFP_NOMEMALLOC: Gfp = Gfp(1 << 19);
/// May enter direct reclaim, that is, may sleep (Linux `__GFP_DIRECT_RECLAIM`, formerly
/// `__GFP_WAIT`).
pub const __GFP_DIRECT_RECLAIM: Gfp = Gfp(1 << 10);
/// May wake the background reclaimer (Linux `__GFP_KSWAPD_RECLAIM`); does not sleep.
pub const __GFP_KSWAPD_RECLAIM: Gfp = Gfp(1 << 11);
/// Both reclaim bits (Linux `__GFP_RECLAIM`).
pub const __GFP_RECLAIM: Gfp = Gfp(__GFP_DIRECT_RECLAIM.0 | __GFP_KSWAPD_RECLAIM.0);

/// Process context, may sleep, may do I/O and file-system calls (Linux `GFP_KERNEL`).
pub const GFP_KERNEL: Gfp = Gfp(__GFP_RECLAIM.0 | __GFP_IO.0 | __GFP_FS.0);
/// May sleep, but no file-system calls (Linux `GFP_NOFS`).
pub const GFP_NOFS: Gfp = Gfp(__GFP_RECLAIM.0 | __GFP_IO.0);
/// May sleep, but no I/O (Linux `GFP_NOIO`).
pub const GFP_NOIO: Gfp = Gfp(__GFP_RECLAIM.0);
/// Must not sleep; may use the emergency reserves (Linux `GFP_ATOMIC`).
pub const GFP_ATOMIC: Gfp = Gfp(__GFP_HIGH.0 | __GFP_KSWAPD_RECLAIM.0);
/// Must not sleep (Linux `GFP_NOWAIT`).
pub const GFP_NOWAIT: Gfp = Gfp(__GFP_KSWAPD_RECLAIM.0);

impl Gfp {
    const ALL: u32 = __GFP_HIGH.0
        | __GFP_IO.0
        | __GFP_FS.0
        | __GFP_NOWARN.0
        | __GFP_NORETRY.0
        | __GFP_NOMEMALLOC.0
        | __GFP_DIRECT_RECLAIM.0
        | __GFP_KSWAPD_RECLAIM.0;

    /// The mask from its integer value, or `None` if it holds bits this crate does not model.
    #[inline]
    pub const fn from_bits(bits: u32) -> Option<Self> {
        if bits & !Self::ALL != 0 { None } else { Some(Self(bits)) }
    }

    /// The integer value.
    #[inline]
    pub const fn bits(self) -> u32 {
        self.0
    }

    /// Whether every bit of `other` is set in `self`.
    #[inline]
    pub const fn contains(self, other: Gfp) -> bool {
        self.0 & other.0 == other.0
    }

    /// `self` without the bits of `other`.
    #[inline]
    pub const fn without(self, other: Gfp) -> Gfp {
        Gfp(self.0 & !other.0)
    }

    /// Whether the mask allows sleeping: it holds [`__GFP_DIRECT_RECLAIM`]. Interrupt context
    /// forbids sleeping whatever the mask says; [`Gfp::may_sleep_here`] asks both.
    #[inline]
    pub const fn may_sleep(self) -> bool {
        self.contains(__GFP_DIRECT_RECLAIM)
    }

    /// Whether a call with this mask may sleep on the current thread: the mask allows it and
    /// the thread is not in (ddi-kmem) interrupt context.
    #[inline]
    pub fn may_sleep_here(self) -> bool {
        self.may_sleep() && !ddi_kmem::in_interrupt()
    }

    /// The ddi-kmem flag for an allocation with this mask on the current thread.
    ///
    /// `KM_SLEEP` when the call may sleep here and the mask lacks [`__GFP_NORETRY`]; otherwise
    /// `KM_NOSLEEP`. `KM_SLEEP` in ddi-kmem means "wait for the budget until it succeeds":
    /// that is Linux's looping `GFP_KERNEL`, and exactly what `__GFP_NORETRY` ("don't loop in
    /// `__alloc_pages`") forbids, so a `NORETRY` request may fail instead, as in Linux. This is
    /// what a user can observe of the flags `mempool_alloc` adds: the backing allocator it calls
    /// never waits for memory, so the pool's own reserve and wait queue decide.
    #[inline]
    pub fn km_flags(self) -> ddi_kmem::KmFlags {
        if self.may_sleep_here() && !self.contains(__GFP_NORETRY) { ddi_kmem::KM_SLEEP } else { ddi_kmem::KM_NOSLEEP }
    }
}

impl BitOr for Gfp {
    type Output = Gfp;
    #[inline]
    fn bitor(self, rhs: Gfp) -> Gfp {
        Gfp(self.0 | rhs.0)
    }
}

impl BitOrAssign for Gfp {
    #[inline]
    fn bitor_assign(&mut self, rhs: Gfp) {
        self.0 |= rhs.0;
    }
}

impl BitAnd for Gfp {
    type Output = Gfp;
    #[inline]
    fn bitand(self, rhs: Gfp) -> Gfp {
        Gfp(self.0 & rhs.0)
    }
}

impl Not for Gfp {
    type Output = Gfp;
    #[inline]
    fn not(self) -> Gfp {
        Gfp(!self.0 & Self::ALL)
    }
}

impl fmt::Debug for Gfp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for Gfp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut rest = *self;
        let mut first = true;
        for (flag, name) in [
            (GFP_KERNEL, "GFP_KERNEL"),
            (GFP_NOFS, "GFP_NOFS"),
            (GFP_NOIO, "GFP_NOIO"),
            (GFP_ATOMIC, "GFP_ATOMIC"),
            (GFP_NOWAIT, "GFP_NOWAIT"),
            (__GFP_HIGH, "__GFP_HIGH"),
            (__GFP_IO, "__GFP_IO"),
            (__GFP_FS, "__GFP_FS"),
            (__GFP_DIRECT_RECLAIM, "__GFP_DIRECT_RECLAIM"),
            (__GFP_KSWAPD_RECLAIM, "__GFP_KSWAPD_RECLAIM"),
            (__GFP_NOWARN, "__GFP_NOWARN"),
            (__GFP_NORETRY, "__GFP_NORETRY"),
            (__GFP_NOMEMALLOC, "__GFP_NOMEMALLOC"),
        ] {
            if flag.0 != 0 && rest.contains(flag) {
                if !first {
                    f.write_str("|")?;
                }
                f.write_str(name)?;
                first = false;
                rest = rest.without(flag);
            }
        }
        if first {
            f.write_str("0")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sleeping_masks() {
        for g in [GFP_KERNEL, GFP_NOFS, GFP_NOIO] {
            assert!(g.may_sleep(), "{g}");
            assert_eq!(g.km_flags(), ddi_kmem::KM_SLEEP);
            assert_eq!((g | __GFP_NORETRY).km_flags(), ddi_kmem::KM_NOSLEEP);
        }
        for g in [GFP_ATOMIC, GFP_NOWAIT] {
            assert!(!g.may_sleep(), "{g}");
            assert_eq!(g.km_flags(), ddi_kmem::KM_NOSLEEP);
        }
    }

    #[test]
    fn interrupt_context_never_sleeps() {
        ddi_kmem::interrupt(|| {
            assert!(!GFP_KERNEL.may_sleep_here());
            assert_eq!(GFP_KERNEL.km_flags(), ddi_kmem::KM_NOSLEEP);
        });
        assert!(GFP_KERNEL.may_sleep_here());
    }

    #[test]
    fn display_and_bits() {
        assert_eq!(GFP_KERNEL.to_string(), "GFP_KERNEL");
        assert_eq!((GFP_NOWAIT | __GFP_NOWARN).to_string(), "GFP_NOWAIT|__GFP_NOWARN");
        assert_eq!(GFP_KERNEL.without(__GFP_DIRECT_RECLAIM | __GFP_IO).to_string(), "GFP_NOWAIT|__GFP_FS");
        assert_eq!(Gfp::from_bits(GFP_ATOMIC.bits()), Some(GFP_ATOMIC));
        assert_eq!(Gfp::from_bits(1), None);
        assert_eq!(Gfp::default().to_string(), "0");
    }
}
