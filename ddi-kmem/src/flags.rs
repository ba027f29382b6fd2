//! `KM_*` allocation flags as a typed flag set.

use std::fmt;
use std::ops::{BitOr, BitOrAssign};

/// The `flag` argument of `kmem_alloc(9)` / `kmem_zalloc(9)`.
///
/// The bit values are those of Linux Fast-STREAMS `<sys/openss7/kmem.h>` (reference
/// `lfs-lis.md` §1 "Flag values"): `KM_SLEEP` = 0, `KM_NOSLEEP` = 1<<0, `KM_PHYSCONTIG` = 1<<1,
/// `KM_CACHEALIGN` = 1<<2, `KM_DMA` = 1<<3. Solaris shares `KM_SLEEP` and `KM_NOSLEEP`
/// (illumos `sys/kmem.h`) but gives bit 2 another meaning (`KM_PUSHPAGE`); the Solaris
/// personality therefore gives `KM_CACHEALIGN` no alignment effect.
///
/// `KM_SLEEP` is the absence of `KM_NOSLEEP`, as in C: `KM_SLEEP | KM_CACHEALIGN` sleeps.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct KmFlags(u32);

/// May wait and reschedule; success guaranteed (`KM_SLEEP`, value 0).
pub const KM_SLEEP: KmFlags = KmFlags(0);
/// Must not wait or reschedule; may fail and return NULL (`KM_NOSLEEP`, value 1).
pub const KM_NOSLEEP: KmFlags = KmFlags(1 << 0);
/// Physically contiguous memory (IRIX 6.5). Accepted and ignored: all kmem memory is
/// contiguous, as LfS notes ("kmalloc'ed memory is always physically contiguous").
pub const KM_PHYSCONTIG: KmFlags = KmFlags(1 << 1);
/// Start on a cache-line boundary and pad to a full cache line (IRIX 6.5, LfS).
pub const KM_CACHEALIGN: KmFlags = KmFlags(1 << 2);
/// Suitable for worst-case DMA (LfS only, "for internal use by pullupmsg(9)"). Accepted; the
/// memory is the same, since a user-space arena has no DMA zone.
pub const KM_DMA: KmFlags = KmFlags(1 << 3);

impl KmFlags {
    const ALL: u32 = 0xf;

    /// The flag set from its C integer value, or `None` if it holds bits no vendor defines.
    pub const fn from_bits(bits: u32) -> Option<Self> {
        if bits & !Self::ALL != 0 { None } else { Some(Self(bits)) }
    }

    /// The C integer value.
    pub const fn bits(self) -> u32 {
        self.0
    }

    /// Whether every bit of `other` is set in `self` (`contains(KM_SLEEP)` is always true,
    /// since `KM_SLEEP` has no bits; use [`KmFlags::may_sleep`] for that question).
    pub const fn contains(self, other: KmFlags) -> bool {
        self.0 & other.0 == other.0
    }

    /// Whether the caller allows sleeping: `KM_NOSLEEP` is not set.
    pub const fn may_sleep(self) -> bool {
        self.0 & KM_NOSLEEP.0 == 0
    }
}

impl BitOr for KmFlags {
    type Output = KmFlags;
    fn bitor(self, rhs: KmFlags) -> KmFlags {
        KmFlags(self.0 | rhs.0)
    }
}

impl BitOrAssign for KmFlags {
    fn bitor_assign(&mut self, rhs: KmFlags) {
        self.0 |= rhs.0;
    }
}

impl fmt::Debug for KmFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for KmFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.may_sleep() { "KM_SLEEP" } else { "KM_NOSLEEP" })?;
        for (flag, name) in [(KM_PHYSCONTIG, "KM_PHYSCONTIG"), (KM_CACHEALIGN, "KM_CACHEALIGN"), (KM_DMA, "KM_DMA")] {
            if self.contains(flag) {
                write!(f, "|{name}")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_the_lfs_values() {
        assert_eq!(KM_SLEEP.bits(), 0);
        assert_eq!(KM_NOSLEEP.bits(), 1);
        assert_eq!(KM_PHYSCONTIG.bits(), 2);
        assert_eq!(KM_CACHEALIGN.bits(), 4);
        assert_eq!(KM_DMA.bits(), 8);
        assert_eq!(KmFlags::from_bits(16), None);
        assert_eq!(KmFlags::from_bits(5), Some(KM_NOSLEEP | KM_CACHEALIGN));
    }

    #[test]
    fn sleep_is_absence_of_nosleep() {
        assert!(KM_SLEEP.may_sleep());
        assert!((KM_SLEEP | KM_CACHEALIGN).may_sleep());
        assert!(!(KM_NOSLEEP | KM_DMA).may_sleep());
        assert_eq!(format!("{}", KM_NOSLEEP | KM_DMA), "KM_NOSLEEP|KM_DMA");
    }
}
