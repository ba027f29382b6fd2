//! `bytes` interop: a message's data as [`Bytes`] without a copy, and `Bytes` or `Vec<u8>`
//! as a message without a copy.

use crate::alloc::{DbInit, FASTBUF, MDB_ALIGN, new_message, pri_flags};
use crate::dblk::{DB_RDONLY, DbClass, Frtn};
use crate::env;
use crate::msg::Msg;
use bytes::Bytes;
use std::ffi::c_void;

/// The free routine of an owner stored in its block's data buffer: drops it.
fn drop_owner<T>(arg: *mut c_void) {
    // SAFETY: `arg` is the data buffer of the block, where `esballoc_owner` wrote a `T`;
    // the free routine runs once, at the last reference, before the block is released.
    unsafe { arg.cast::<T>().drop_in_place() }
}

/// Wraps `owner`'s buffer in a message, esballoc-style: `owner` is kept in the block's
/// unused data buffer (as LfS keeps the `frtn_t` there) and dropped by the free routine.
/// `view` gives (base, len, capacity) of the stored owner.
fn esballoc_owner<T: Send + 'static>(
    owner: T,
    rdonly: bool,
    view: impl FnOnce(&mut T) -> (*mut u8, usize, usize),
) -> Option<Msg> {
    const { assert!(size_of::<T>() <= FASTBUF && align_of::<T>() <= MDB_ALIGN) };
    let env = env::current();
    let mut len = 0;
    let mp = new_message(env, pri_flags(crate::BPRI_MED), |buf| {
        let slot = buf.cast::<T>();
        // SAFETY: `buf` is the FASTBUF-byte, 64-aligned data buffer of a fresh block, unused
        // by an external data block, so it can hold a `T` (size and alignment asserted).
        unsafe { slot.write(owner) };
        // SAFETY: just written; nothing else refers to it.
        let (base, n, cap) = view(unsafe { &mut *slot });
        len = n;
        DbInit {
            base,
            lim: base.wrapping_add(cap),
            class: DbClass::External,
            size: cap,
            frtn: Frtn { free_func: Some(drop_owner::<T>), free_arg: buf.cast() },
            halves: 2,
        }
    });
    // SAFETY: NULL or a new message of our own.
    let mut m = unsafe { Msg::from_raw(mp) }?;
    let mp = m.as_ptr();
    // SAFETY: the new message is ours; its data block unshared.
    let mb = unsafe { &mut *mp };
    mb.b_wptr = mb.b_rptr.wrapping_add(len);
    if rdonly {
        // SAFETY: the new data block is ours alone.
        unsafe { (*mb.b_datap).db_flag |= DB_RDONLY };
    }
    let _ = &mut m;
    Some(m)
}

impl Msg {
    /// An `M_DATA` message over `bytes`, without a copy: the `Bytes` is kept in the block
    /// and dropped at the last free. The data is read-only ([`Msg::data_mut`] refuses).
    ///
    /// # Examples
    /// ```
    /// use bytes::Bytes;
    /// use streams_core::Msg;
    /// let b = Bytes::from_static(b"zero copy");
    /// let m = Msg::from_bytes(b.clone()).unwrap();
    /// assert_eq!(m.data().as_ptr(), b.as_ptr());
    /// ```
    #[track_caller]
    pub fn from_bytes(bytes: Bytes) -> Option<Msg> {
        esballoc_owner(bytes, true, |b| {
            let n = b.len();
            (b.as_ptr().cast_mut(), n, n)
        })
    }

    /// An `M_DATA` message over `v`, without a copy: `b_rptr..b_wptr` is the vector's
    /// contents and `db_lim` its capacity; the vector is dropped at the last free.
    #[track_caller]
    pub fn from_vec(v: Vec<u8>) -> Option<Msg> {
        esballoc_owner(v, false, |v| {
            let (n, cap) = (v.len(), v.capacity());
            (v.as_mut_ptr(), n, cap)
        })
    }

    /// The message's data as [`Bytes`]. A single-block message is handed over without a
    /// copy (the `Bytes` owns the message and frees it when the last clone drops); a chain
    /// is copied into one buffer.
    ///
    /// # Examples
    /// ```
    /// use streams_core::Msg;
    /// let m = Msg::from_slice(b"abc").unwrap();
    /// let p = m.data().as_ptr();
    /// let b = m.into_bytes();
    /// assert_eq!(&b[..], b"abc");
    /// assert_eq!(b.as_ptr(), p);
    /// ```
    pub fn into_bytes(self) -> Bytes {
        if self.cont().is_none() {
            return Bytes::from_owner(Owner(self));
        }
        let mut v = Vec::with_capacity(self.msgsize());
        for b in self.blocks() {
            v.extend_from_slice(b.data());
        }
        Bytes::from(v)
    }
}

/// A single-block message owned by a `Bytes`.
struct Owner(Msg);

impl AsRef<[u8]> for Owner {
    fn as_ref(&self) -> &[u8] {
        self.0.data()
    }
}
