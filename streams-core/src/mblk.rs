//! The message block (`mblk_t`) and its flags.

use crate::dblk::{Dblk, MsgType};
use std::fmt;

/// `b_flag`: first byte of a message (`MSGMARK`).
pub const MSGMARK: u16 = 1;
/// `b_flag`: do not loop the message back (`MSGNOLOOP`).
pub const MSGNOLOOP: u16 = 2;
/// `b_flag`: message is delimited (`MSGDELIM`).
pub const MSGDELIM: u16 = 4;
/// `b_flag`: `getq` must not return the message (`MSGNOGET`).
pub const MSGNOGET: u16 = 8;
/// `b_flag`: attention (`MSGATTEN`, alias `MSGMARKNEXT`, `MSGLOG`).
pub const MSGATTEN: u16 = 0x10;
/// `b_flag`: `MSGNOTMARKNEXT`.
pub const MSGNOTMARKNEXT: u16 = 0x20;
/// `b_flag`: compress (OSF).
pub const MSGCOMPRESS: u16 = 0x100;
/// `b_flag`: notify (OSF).
pub const MSGNOTIFY: u16 = 0x200;
/// `b_flag`: `b_csum` holds a checksum (LfS).
pub const MSGCSUM: u16 = 0x400;
/// `b_flag`: `b_csum` holds a CRC32C (LfS).
pub const MSGCRC32C: u16 = 0x800;

/// `mblk_t`: a message block, a window `b_rptr..b_wptr` onto a data block.
///
/// Layout (64 bytes, as LfS documents for 64-bit; checked at compile time in `alloc.rs`):
/// `b_next`, `b_prev`, `b_cont`, `b_rptr`, `b_wptr`, `b_datap` (8 bytes each), `b_band`,
/// `b_pad1`, `b_flag`, 4 bytes of padding, `b_csum`.
///
/// `b_next` and `b_prev` belong to the queue the message is on and must be NULL when it is
/// freed. Raw code reads and writes the fields as C does; safe code reaches a block only
/// through a [`Msg`](crate::Msg), which upholds `db_base <= b_rptr <= b_wptr <= db_lim`.
/// A message block cannot be constructed outside this crate.
#[repr(C)]
pub struct Mblk {
    /// Next message on a queue.
    pub b_next: *mut Mblk,
    /// Previous message on a queue.
    pub b_prev: *mut Mblk,
    /// Next block of this message.
    pub b_cont: *mut Mblk,
    /// First unread byte.
    pub b_rptr: *mut u8,
    /// First unwritten byte.
    pub b_wptr: *mut u8,
    /// The data block.
    pub b_datap: *mut Dblk,
    /// Priority band.
    pub b_band: u8,
    /// Padding (LfS `b_pad1`).
    pub b_pad1: u8,
    /// `MSG*` flags.
    pub b_flag: u16,
    pub(crate) _pad: u32,
    /// Checksum (LfS).
    pub b_csum: usize,
}

impl Mblk {
    pub(crate) const fn new(rptr: *mut u8, datap: *mut Dblk) -> Mblk {
        Mblk {
            b_next: std::ptr::null_mut(),
            b_prev: std::ptr::null_mut(),
            b_cont: std::ptr::null_mut(),
            b_rptr: rptr,
            b_wptr: rptr,
            b_datap: datap,
            b_band: 0,
            b_pad1: 0,
            b_flag: 0,
            _pad: 0,
            b_csum: 0,
        }
    }

    /// The data block.
    #[inline]
    pub fn dblk(&self) -> &Dblk {
        // SAFETY: a block reachable by reference (through a `Msg`) has a live data block,
        // to which it holds a reference.
        unsafe { &*self.b_datap }
    }

    /// The unread bytes, `b_rptr..b_wptr`.
    #[inline]
    pub fn data(&self) -> &[u8] {
        let len = self.len();
        if len == 0 {
            return &[];
        }
        // SAFETY: a block reachable by reference keeps `db_base <= b_rptr <= b_wptr <=
        // db_lim` inside its live data block, and the bytes are initialised (written by
        // whoever advanced `b_wptr`); no one writes them while this reference lives (the
        // `Msg` is borrowed, and a shared data block is never written).
        unsafe { std::slice::from_raw_parts(self.b_rptr, len) }
    }

    /// `b_wptr - b_rptr` (0 if negative).
    #[inline]
    pub fn len(&self) -> usize {
        self.b_wptr.addr().saturating_sub(self.b_rptr.addr())
    }

    /// Whether the block holds no unread bytes.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The message type (`b_datap->db_type`).
    #[inline]
    pub fn msg_type(&self) -> MsgType {
        self.dblk().db_type
    }

    /// Whether other message blocks share the data block (`db_ref > 1`).
    #[inline]
    pub fn is_shared(&self) -> bool {
        self.dblk().db_ref() > 1
    }

    /// Bytes between `b_wptr` and `db_lim`.
    #[inline]
    pub fn tailroom(&self) -> usize {
        self.dblk().db_lim.addr().saturating_sub(self.b_wptr.addr())
    }

    /// The next block of the message (`b_cont`).
    #[inline]
    pub fn cont(&self) -> Option<&Mblk> {
        // SAFETY: the blocks of a message reachable by reference are owned by the same
        // `Msg` and live as long as it.
        unsafe { self.b_cont.as_ref() }
    }
}

impl fmt::Debug for Mblk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mblk")
            .field("b_rptr", &self.b_rptr)
            .field("b_wptr", &self.b_wptr)
            .field("b_band", &self.b_band)
            .field("b_flag", &self.b_flag)
            .field("b_cont", &self.b_cont)
            .finish_non_exhaustive()
    }
}
