//! [`Msg`]: an owned message that frees itself on drop.

use crate::alloc::{BPRI_MED, allocb, freemsg_inline};
use crate::dblk::{DB_RDONLY, MsgType};
use crate::error::StreamsError;
use crate::mblk::Mblk;
use crate::util;
use std::fmt;
use std::ops::Deref;
use std::ptr::NonNull;

/// An owned message: a chain of message blocks, freed (`freemsg`) on drop.
///
/// A `Msg` dereferences to its first [`Mblk`]; [`Msg::blocks`] iterates the chain. The data
/// of a block whose data block is shared (`db_ref > 1`, after [`Msg::dup`]) or read-only
/// (over `Bytes`) cannot be written through safe code: the writing methods return
/// [`StreamsError::Shared`]. `b_rptr`, `b_wptr`, band and flags belong to the message
/// block and may always be changed.
///
/// ```compile_fail
/// // A message is not shared between threads by reference.
/// fn assert_sync<T: Sync>() {}
/// assert_sync::<streams_core::Msg>();
/// ```
#[must_use = "dropping a Msg frees it"]
pub struct Msg {
    mp: NonNull<Mblk>,
    _not_sync: std::marker::PhantomData<std::cell::Cell<()>>,
}

// SAFETY: a Msg owns its blocks exclusively; the data blocks it shares with other messages
// are only read through it, and their reference counts and free path are atomic, so the
// message may be freed or used on another thread (as STREAMS passes messages between CPUs).
unsafe impl Send for Msg {}

impl Msg {
    /// `allocb(size, pri)` as an owned message.
    ///
    /// # Examples
    /// ```
    /// use streams_core::{Msg, BPRI_MED};
    /// let mut m = Msg::alloc(16, BPRI_MED).expect("memory");
    /// m.extend_from_slice(b"hello").unwrap();
    /// assert_eq!(m.data(), b"hello");
    /// ```
    #[track_caller]
    #[inline]
    pub fn alloc(size: usize, pri: u32) -> Option<Msg> {
        // SAFETY: allocb returns NULL or a new message that nothing else owns.
        unsafe { Msg::from_raw(allocb(size, pri)) }
    }

    /// A new `M_DATA` message holding a copy of `bytes`.
    #[track_caller]
    pub fn from_slice(bytes: &[u8]) -> Option<Msg> {
        let mut m = Msg::alloc(bytes.len(), BPRI_MED)?;
        m.extend_from_slice(bytes).ok()?;
        Some(m)
    }

    /// Takes ownership of a raw message.
    ///
    /// # Safety
    /// `mp` is NULL or an allocated message that nothing else uses or frees afterwards.
    pub unsafe fn from_raw(mp: *mut Mblk) -> Option<Msg> {
        NonNull::new(mp).map(|mp| Msg { mp, _not_sync: std::marker::PhantomData })
    }

    /// Gives up ownership; the caller frees the message (`freemsg`).
    pub fn into_raw(self) -> *mut Mblk {
        let mp = self.mp.as_ptr();
        std::mem::forget(self);
        mp
    }

    /// The first message block, for raw calls that do not take ownership.
    pub fn as_ptr(&self) -> *mut Mblk {
        self.mp.as_ptr()
    }

    /// The first message block, mutably (crate-internal: keeps the invariants).
    fn head_mut(&mut self) -> &mut Mblk {
        // SAFETY: owned exclusively by `self`.
        unsafe { self.mp.as_mut() }
    }

    /// The blocks of the message, first to last.
    pub fn blocks(&self) -> Blocks<'_> {
        Blocks { next: Some(self) }
    }

    /// `dupmsg`: a new message sharing this one's data blocks.
    #[track_caller]
    pub fn dup(&self) -> Option<Msg> {
        // SAFETY: an allocated message; dupmsg returns NULL or a new message of our own.
        let mp = unsafe { util::dupmsg(self.as_ptr()) };
        // SAFETY: NULL or a new message that only we refer to.
        unsafe { Msg::from_raw(mp) }
    }

    /// `copymsg`: a new message with copies of this one's data.
    #[track_caller]
    pub fn copy(&self) -> Option<Msg> {
        // SAFETY: as for `dup`.
        let mp = unsafe { util::copymsg(self.as_ptr()) };
        // SAFETY: NULL or a new message that only we refer to.
        unsafe { Msg::from_raw(mp) }
    }

    #[inline]
    fn check_writable(&self, call: &'static str) -> Result<(), StreamsError> {
        let d = self.dblk();
        let db_ref = d.db_ref();
        if db_ref > 1 || d.db_flag & DB_RDONLY != 0 {
            return Err(refused(call, db_ref));
        }
        Ok(())
    }

    /// The first block's unread bytes, writable, if its data block is not shared.
    pub fn data_mut(&mut self) -> Result<&mut [u8], StreamsError> {
        self.check_writable("Msg::data_mut")?;
        let len = self.len();
        if len == 0 {
            return Ok(&mut []);
        }
        let p = self.b_rptr;
        // SAFETY: `b_rptr..b_wptr` lies in the data block, which this message alone refers
        // to (db_ref 1, checked with Acquire) and which is writable; `&mut self` excludes
        // other access through this message.
        Ok(unsafe { std::slice::from_raw_parts_mut(p, len) })
    }

    /// Appends bytes at the first block's `b_wptr`.
    ///
    /// # Errors
    /// [`StreamsError::Shared`] if the data block is shared or read-only,
    /// [`StreamsError::NoRoom`] if fewer than `bytes.len()` bytes remain before `db_lim`.
    #[inline]
    pub fn extend_from_slice(&mut self, bytes: &[u8]) -> Result<(), StreamsError> {
        const CALL: &str = "Msg::extend_from_slice";
        self.check_writable(CALL)?;
        let room = self.tailroom();
        if bytes.len() > room {
            return Err(no_room(CALL, bytes.len(), room));
        }
        let m = self.head_mut();
        // SAFETY: `bytes.len()` bytes fit between b_wptr and db_lim of an unshared,
        // writable data block; `bytes` cannot overlap it (we hold `&mut self`).
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), m.b_wptr, bytes.len()) };
        m.b_wptr = m.b_wptr.wrapping_add(bytes.len());
        Ok(())
    }

    /// Sets the first block's message type.
    ///
    /// # Errors
    /// [`StreamsError::Shared`] if the data block is shared (the type belongs to it).
    pub fn set_type(&mut self, t: MsgType) -> Result<(), StreamsError> {
        let d = self.dblk();
        let db_ref = d.db_ref();
        if db_ref > 1 {
            return Err(StreamsError::Shared { call: "Msg::set_type", db_ref });
        }
        let d = self.b_datap;
        // SAFETY: the data block is this message's alone.
        unsafe { (*d).db_type = t };
        Ok(())
    }

    /// Sets the first block's band.
    pub fn set_band(&mut self, band: u8) {
        self.head_mut().b_band = band;
    }

    /// Sets the first block's `b_flag`.
    pub fn set_flag(&mut self, flag: u16) {
        self.head_mut().b_flag = flag;
    }

    /// `linkb`: appends `other` to the end of this message.
    pub fn link(&mut self, other: Msg) {
        // SAFETY: both are allocated messages we own; `other`'s ownership moves into self.
        unsafe { util::linkb(self.as_ptr(), other.into_raw()) };
    }

    /// `unlinkb`: detaches and returns everything after the first block.
    pub fn unlink(&mut self) -> Option<Msg> {
        // SAFETY: an allocated message; the detached rest is ours alone.
        let mp = unsafe { util::unlinkb(self.as_ptr()) };
        // SAFETY: NULL or a new message that only we refer to.
        unsafe { Msg::from_raw(mp) }
    }

    /// `msgdsize`: bytes in `M_DATA` blocks.
    pub fn msgdsize(&self) -> usize {
        // SAFETY: an allocated message.
        unsafe { util::msgdsize(self.as_ptr()) }
    }

    /// `msgsize`: unread bytes in all blocks.
    pub fn msgsize(&self) -> usize {
        // SAFETY: an allocated message.
        unsafe { util::msgsize(self.as_ptr()) }
    }

    /// `xmsgsize`: unread bytes in the leading blocks of the first block's type.
    pub fn xmsgsize(&self) -> usize {
        // SAFETY: an allocated message.
        unsafe { util::xmsgsize(self.as_ptr()) }
    }

    /// `pullupmsg`: makes the first `len` bytes (-1: all leading same-type bytes)
    /// contiguous in the first block. Returns whether it succeeded.
    #[track_caller]
    pub fn pullup(&mut self, len: isize) -> bool {
        // SAFETY: an allocated message we own.
        unsafe { util::pullupmsg(self.as_ptr(), len) == 1 }
    }

    /// `msgpullup`: a new message with the first `len` bytes contiguous.
    #[track_caller]
    pub fn msgpullup(&self, len: isize) -> Option<Msg> {
        // SAFETY: an allocated message; the result is new and ours.
        let mp = unsafe { util::msgpullup(self.as_ptr(), len) };
        // SAFETY: NULL or a new message that only we refer to.
        unsafe { Msg::from_raw(mp) }
    }

    /// `adjmsg`: trims `len` bytes from the head (positive) or tail (negative). Returns
    /// whether it succeeded.
    pub fn adjust(&mut self, len: isize) -> bool {
        // SAFETY: an allocated message we own.
        unsafe { util::adjmsg(self.as_ptr(), len) == 1 }
    }
}

impl Deref for Msg {
    type Target = Mblk;
    fn deref(&self) -> &Mblk {
        // SAFETY: owned by `self`, allocated until drop.
        unsafe { self.mp.as_ref() }
    }
}

impl Drop for Msg {
    #[inline]
    fn drop(&mut self) {
        // SAFETY: the message is ours and not used again.
        unsafe { freemsg_inline(self.mp.as_ptr()) };
    }
}

/// The refusal of a write to a shared or read-only data block (out of line: the writing
/// methods inline their tests).
#[cold]
#[inline(never)]
fn refused(call: &'static str, db_ref: u32) -> StreamsError {
    tracing::debug!(call, db_ref, "write to a shared or read-only data block refused");
    StreamsError::Shared { call, db_ref }
}

/// The refusal of a write past `db_lim`.
#[cold]
#[inline(never)]
fn no_room(call: &'static str, wanted: usize, room: usize) -> StreamsError {
    StreamsError::NoRoom { call, wanted, room }
}

impl fmt::Debug for Msg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.blocks().map(|b| (b.msg_type(), b.len()))).finish()
    }
}

/// The blocks of a [`Msg`], first to last.
#[derive(Clone, Debug)]
pub struct Blocks<'a> {
    next: Option<&'a Mblk>,
}

impl<'a> Iterator for Blocks<'a> {
    type Item = &'a Mblk;
    fn next(&mut self) -> Option<&'a Mblk> {
        let b = self.next?;
        self.next = b.cont();
        Some(b)
    }
}

impl bytes::Buf for Msg {
    fn remaining(&self) -> usize {
        self.msgsize()
    }

    fn chunk(&self) -> &[u8] {
        self.blocks().map(Mblk::data).find(|d| !d.is_empty()).unwrap_or(&[])
    }

    fn advance(&mut self, mut cnt: usize) {
        assert!(cnt <= self.remaining(), "Msg::advance: {cnt} bytes past the end of the message");
        let mut b = self.as_ptr();
        while cnt > 0 {
            // SAFETY: a block of this message, which we own; only b_rptr changes.
            let m = unsafe { &mut *b };
            let k = m.len().min(cnt);
            m.b_rptr = m.b_rptr.wrapping_add(k);
            cnt -= k;
            b = m.b_cont;
        }
    }
}
