//! Checking mode: reserve elements are poisoned, and checked on their way out.
//!
//! As Linux `mm/mempool.c` under `CONFIG_SLUB_DEBUG_ON`: an element entering the reserve is
//! filled with `POISON_FREE` (0x6b) with `POISON_END` (0xa5) as its last byte; an element
//! leaving it is checked byte by byte and then filled with `POISON_INUSE` (0x5a). Only pools
//! whose elements the pool knows the size of are poisoned: the built-in kmalloc and page pools
//! and [`TypedPool`](crate::TypedPool), as Linux recognises only its own backends; and slab
//! pools only when asked (their cache may construct its objects, and poison would undo that).

use crate::error::MempoolError;
use std::ffi::c_void;
use std::fmt::Write;

/// Linux `POISON_FREE`: the fill of an element in the reserve ("for use-after-free poisoning").
pub const POISON_FREE: u8 = 0x6b;
/// Linux `POISON_END`: the last byte of a poisoned element ("end-byte of poisoning").
pub const POISON_END: u8 = 0xa5;
/// Linux `POISON_INUSE`: the fill of an element handed out of the reserve ("for
/// use-uninitialised poisoning").
pub const POISON_INUSE: u8 = 0x5a;

/// Fills `size` bytes at `element` with the reserve poison.
///
/// # Safety
/// - `element` is valid for writes of `size` bytes and nobody else accesses it meanwhile.
/// - `size` is at least 1.
pub(crate) unsafe fn poison(element: *mut c_void, size: usize) {
    debug_assert!(size >= 1 && !element.is_null(), "internal: poison of an empty element");
    let p = element.cast::<u8>();
    // SAFETY: `p` is valid for `size` byte writes (first bullet).
    unsafe { p.write_bytes(POISON_FREE, size - 1) };
    // SAFETY: `size - 1 < size`, inside the element (bullets one and two).
    let last = unsafe { p.add(size - 1) };
    // SAFETY: `last` is the element's last byte, valid for writes.
    unsafe { last.write(POISON_END) };
}

/// Checks the poison of `size` bytes at `element`, then fills them with `POISON_INUSE`.
/// Returns the report for the first modified byte, if any.
///
/// # Safety
/// As [`poison`], with reads as well as writes.
pub(crate) unsafe fn check_and_unpoison(element: *mut c_void, size: usize) -> Option<MempoolError> {
    debug_assert!(size >= 1 && !element.is_null(), "internal: check of an empty element");
    let p = element.cast::<u8>();
    let report = {
        // SAFETY: `p` is valid for `size` byte reads and nobody writes it meanwhile (contract);
        // the slice is dropped before the fill below.
        let bytes = unsafe { std::slice::from_raw_parts(p.cast_const(), size) };
        let expected = |i: usize| if i == size - 1 { POISON_END } else { POISON_FREE };
        bytes.iter().enumerate().find(|&(i, &b)| b != expected(i)).map(|(offset, &found)| {
            let lo = offset.saturating_sub(8);
            let hi = (offset + 9).min(size);
            let mut dump = format!("bytes {lo}..{hi}:");
            for b in &bytes[lo..hi] {
                let _ = write!(dump, " {b:02x}");
            }
            MempoolError::PoisonMismatch { element: p.addr(), size, offset, found, expected: expected(offset), dump }
        })
    };
    // SAFETY: `p` is valid for `size` byte writes (contract).
    unsafe { p.write_bytes(POISON_INUSE, size) };
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn poison_round_trip_and_detection() {
        let mut buf = [0u8; 40];
        let p = buf.as_mut_ptr().cast::<c_void>();
        // SAFETY: `buf` is 40 writable bytes owned by this test.
        unsafe { poison(p, 40) };
        assert!(buf[..39].iter().all(|&b| b == POISON_FREE) && buf[39] == POISON_END);
        let p = buf.as_mut_ptr().cast::<c_void>();
        // SAFETY: as above.
        assert_eq!(unsafe { check_and_unpoison(p, 40) }, None);
        assert!(buf.iter().all(|&b| b == POISON_INUSE));
        let p = buf.as_mut_ptr().cast::<c_void>();
        // SAFETY: as above.
        unsafe { poison(p, 40) };
        buf[20] = 7;
        let p = buf.as_mut_ptr().cast::<c_void>();
        // SAFETY: as above.
        let r = unsafe { check_and_unpoison(p, 40) }.expect("modified");
        match r {
            MempoolError::PoisonMismatch { offset, found, expected, ref dump, .. } => {
                assert_eq!((offset, found, expected), (20, 7, POISON_FREE));
                assert!(dump.contains("07"), "{dump}");
            }
            other => panic!("{other:?}"),
        }
        assert!(r.to_string().starts_with("BUG: mempool element poison mismatch"));
    }
}
