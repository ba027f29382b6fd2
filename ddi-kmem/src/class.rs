//! Size-class tables: which class serves a request, its size and its alignment.

use crate::quirks::{PAGE_SIZE, SizeClasses};

/// The largest request the fine table (8-byte steps) covers.
const SMALL_MAX: usize = 4096;
const SMALL_SHIFT: u32 = 3;
const BIG_SHIFT: u32 = 12;

/// One size class.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Class {
    pub(crate) size: usize,
    pub(crate) align: usize,
}

/// Lookup tables from request size to class index, in the shape illumos uses
/// (`kmem_alloc_table` indexed by `(size-1)>>3`, `kmem_big_alloc_table` by `(size-1)>>12`).
#[derive(Debug)]
pub(crate) struct ClassTable {
    pub(crate) classes: Vec<Class>,
    small: Vec<u8>,
    big: Vec<u8>,
    max: usize,
}

impl ClassTable {
    pub(crate) fn new(scheme: SizeClasses) -> Self {
        let classes: Vec<Class> = match scheme {
            SizeClasses::PowerOfTwo { min, max } => {
                assert!(min.is_power_of_two() && max.is_power_of_two() && min >= 8 && min <= max);
                assert!(min <= SMALL_MAX, "internal: power-of-two classes must start in the fine table");
                let mut v = Vec::new();
                let mut s = min;
                while s <= max {
                    v.push(Class { size: s, align: s });
                    s *= 2;
                }
                v
            }
            SizeClasses::Solaris => {
                solaris_sizes().into_iter().map(|size| Class { size, align: solaris_align(size) }).collect()
            }
        };
        let max = classes.last().expect("at least one class").size;
        assert!(classes.len() < u8::MAX as usize);
        let ix_for = |req: usize| classes.iter().position(|c| c.size >= req).expect("req <= max") as u8;
        let small = (0..(SMALL_MAX >> SMALL_SHIFT)).map(|i| ix_for(((i + 1) << SMALL_SHIFT).min(max))).collect();
        let big = (0..max.div_ceil(1 << BIG_SHIFT)).map(|i| ix_for(((i + 1) << BIG_SHIFT).min(max))).collect();
        let t = ClassTable { classes, small, big, max };
        debug_assert!(t.classes.iter().all(|c| c.size % 8 == 0), "internal: classes are 8-byte multiples");
        t
    }

    /// The class index serving a request of `size` bytes (`size` > 0), or `None` if it is
    /// above the largest class.
    #[inline(always)]
    pub(crate) fn index(&self, size: usize) -> Option<usize> {
        debug_assert!(size > 0, "internal: class lookup of size 0");
        if size <= SMALL_MAX {
            Some(self.small[(size - 1) >> SMALL_SHIFT] as usize)
        } else if size <= self.max {
            Some(self.big[(size - 1) >> BIG_SHIFT] as usize)
        } else {
            None
        }
    }

    pub(crate) fn max(&self) -> usize {
        self.max
    }

    /// Whether the classes are the powers of two from the first to the last (the fast path
    /// then computes the index instead of reading the tables).
    pub(crate) fn pow2(&self) -> bool {
        self.classes.iter().enumerate().all(|(i, c)| c.size == self.classes[0].size << i)
    }
}

/// illumos `kmem_alloc_sizes[]` and `kmem_big_alloc_sizes[]` (illumos.md §1.2).
fn solaris_sizes() -> Vec<usize> {
    let mut v: Vec<usize> = (1..=8).map(|i| i * 8).collect();
    for step in [16, 32, 64, 128] {
        v.extend((5..=8).map(|i| i * step));
    }
    // P2ALIGN(8192 / n, 64) for n = 7 ..= 2.
    v.extend((2..=7).rev().map(|n| (8192 / n) & !63));
    v.extend([8192, 12288, 16384, 24576]);
    v.extend((4..=16).map(|i| i * 8192));
    v.dedup();
    v
}

/// `kmem_alloc_caches_create`: base 8; 64 where the size is a multiple of 64; the page size
/// where it is a multiple of the page size.
fn solaris_align(size: usize) -> usize {
    if size % PAGE_SIZE == 0 {
        PAGE_SIZE
    } else if size % 64 == 0 {
        64
    } else {
        8
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn power_of_two_table() {
        let t = ClassTable::new(SizeClasses::PowerOfTwo { min: 32, max: 131072 });
        assert_eq!(t.classes.len(), 13);
        for (req, size) in [(1, 32), (32, 32), (33, 64), (120, 128), (4096, 4096), (4097, 8192), (131072, 131072)] {
            let c = t.classes[t.index(req).unwrap()];
            assert_eq!((req, c.size, c.align), (req, size, size));
        }
        assert_eq!(t.index(131073), None);
    }

    #[test]
    fn solaris_table_matches_illumos() {
        let t = ClassTable::new(SizeClasses::Solaris);
        let sizes: Vec<usize> = t.classes.iter().map(|c| c.size).collect();
        assert_eq!(
            &sizes[..36],
            &[
                8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384, 448, 512, 640, 768, 896,
                1024, 1152, 1344, 1600, 2048, 2688, 4096, 8192, 12288, 16384, 24576, 32768, 40960
            ]
        );
        assert_eq!(*sizes.last().unwrap(), 131072);
        let c = |req| t.classes[t.index(req).unwrap()];
        assert_eq!(c(72), Class { size: 80, align: 8 }); // illumos.md: "kmem_alloc(72) comes from the 80-byte cache"
        assert_eq!(c(120), Class { size: 128, align: 64 });
        assert_eq!(c(4000), Class { size: 4096, align: 4096 });
        assert_eq!(c(5000), Class { size: 8192, align: 4096 });
        assert_eq!(c(131072).size, 131072);
        assert_eq!(t.index(131073), None);
    }
}
