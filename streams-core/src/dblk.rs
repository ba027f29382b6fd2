//! The data block (`dblk_t`), message types, and the last-reference protocol.

use crate::sync::{AtomicU32, Ordering, fence};
use std::ffi::c_void;
use std::fmt;

/// A message type (`db_type`), with the Linux Fast-STREAMS numbering (lfs-lis.md §2.2).
///
/// High-priority types are those at or above [`QPCTL`] (0x80). The LiS numbering differs
/// (no 0x80 bit); a LiS personality maps it at its boundary.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
#[repr(transparent)]
pub struct MsgType(pub u8);

impl fmt::Debug for MsgType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(n) => f.write_str(n),
            None => write!(f, "MsgType({:#04x})", self.0),
        }
    }
}

macro_rules! msg_types {
    ($($(#[$m:meta])* $name:ident = $v:expr;)*) => {
        $( $(#[$m])* pub const $name: MsgType = MsgType($v); )*
        impl MsgType {
            /// The type's DDI name (`"M_DATA"`, ...), if it is one of the named types.
            pub fn name(self) -> Option<&'static str> {
                match self.0 {
                    $( $v => Some(stringify!($name)), )*
                    _ => None,
                }
            }
        }
    };
}

msg_types! {
    /// Ordinary data.
    M_DATA = 0x00;
    /// Protocol control.
    M_PROTO = 0x01;
    /// Line break.
    M_BREAK = 0x08;
    /// File pointer passing.
    M_PASSFP = 0x09;
    /// Event trace.
    M_EVENT = 0x0a;
    /// Signal to the process group.
    M_SIG = 0x0b;
    /// Real-time transmit delay.
    M_DELAY = 0x0c;
    /// Module-to-module control.
    M_CTL = 0x0d;
    /// ioctl request.
    M_IOCTL = 0x0e;
    /// Stream head options.
    M_SETOPTS = 0x10;
    /// Reserved for RSE.
    M_RSE = 0x11;
    /// Trailer (LfS).
    M_TRAIL = 0x12;
    /// Backwash (LfS).
    M_BACKWASH = 0x13;
    /// ioctl acknowledgement.
    M_IOCACK = 0x81;
    /// ioctl negative acknowledgement.
    M_IOCNAK = 0x82;
    /// High-priority protocol control.
    M_PCPROTO = 0x83;
    /// High-priority signal.
    M_PCSIG = 0x84;
    /// Read notification.
    M_READ = 0x85;
    /// Flush queues.
    M_FLUSH = 0x86;
    /// Stop output.
    M_STOP = 0x87;
    /// Restart output.
    M_START = 0x88;
    /// Line hang-up.
    M_HANGUP = 0x89;
    /// Fatal error.
    M_ERROR = 0x8a;
    /// Copy-in request for transparent ioctl.
    M_COPYIN = 0x8b;
    /// Copy-out request for transparent ioctl.
    M_COPYOUT = 0x8c;
    /// Data for transparent ioctl.
    M_IOCDATA = 0x8d;
    /// High-priority RSE.
    M_PCRSE = 0x8e;
    /// Stop input.
    M_STOPI = 0x8f;
    /// Restart input.
    M_STARTI = 0x90;
    /// High-priority control (LfS).
    M_PCCTL = 0x91;
    /// High-priority stream head options (LfS).
    M_PCSETOPTS = 0x92;
    /// High-priority event (LfS).
    M_PCEVENT = 0x93;
    /// Undo a hang-up (LfS).
    M_UNHANGUP = 0x94;
    /// Notification (LfS).
    M_NOTIFY = 0x95;
    /// High-priority data (LfS).
    M_HPDATA = 0x96;
}

/// The first high-priority message type: types `>= QPCTL` are high priority.
pub const QPCTL: MsgType = MsgType(0x80);

impl MsgType {
    /// Whether the type is high priority (`type >= QPCTL`).
    #[inline]
    pub const fn is_high_priority(self) -> bool {
        self.0 >= QPCTL.0
    }
}

/// Whether `t` is a high-priority type (LfS `pcmsg`: `(t & QPCTL) != 0`).
///
/// # Examples
/// ```
/// use streams_core::{M_DATA, M_PCPROTO, pcmsg};
/// assert!(pcmsg(M_PCPROTO));
/// assert!(!pcmsg(M_DATA));
/// ```
#[inline]
pub const fn pcmsg(t: MsgType) -> bool {
    t.is_high_priority()
}

/// Whether `t` carries data: `M_DATA`, `M_PROTO`, `M_PCPROTO` or `M_DELAY`.
///
/// # Arguments
/// - `t`: the message type.
///
/// # Return
/// `true` for the data types, as LfS `datamsg()` (`strutil.c`).
///
/// # Context
/// Any.
///
/// # Compatibility
/// LfS `datamsg(9)`; SVR4 counts the same four types.
#[inline]
pub const fn datamsg(t: MsgType) -> bool {
    matches!(t, M_DATA | M_PROTO | M_PCPROTO | M_DELAY)
}

/// Whether `t` is a control type: every type except `M_DATA`, `M_PROTO` and `M_PCPROTO`.
///
/// # Arguments
/// - `t`: the message type.
///
/// # Return
/// `true` for control types, as LfS `ctlmsg()` (`strutil.c`).
///
/// # Context
/// Any.
///
/// # Compatibility
/// LfS `ctlmsg(9)`. Note it is not `!datamsg(t)`: `M_DELAY` is both.
#[inline]
pub const fn ctlmsg(t: MsgType) -> bool {
    !matches!(t, M_DATA | M_PROTO | M_PCPROTO)
}

/// A free routine: called once with `free_arg` when the last reference to an
/// [`esballoc`](crate::esballoc)'d data block is freed.
pub type FreeFunc = fn(free_arg: *mut c_void);

/// `frtn_t`: the free routine of an externally supplied buffer.
#[derive(Clone, Copy, Debug)]
#[repr(C)]
pub struct Frtn {
    /// The function, called once with `free_arg`.
    pub free_func: Option<FreeFunc>,
    /// Its argument.
    pub free_arg: *mut c_void,
}

/// `db_flag` bit (UnixWare): the data block has been duplicated.
pub const DB_WASDUPED: u16 = 1;
/// `db_flag` bit (this crate): the data may not be written even when unshared (an
/// esballoc'd `Bytes`, which is immutable).
pub const DB_RDONLY: u16 = 0x8000;

/// The largest `db_ref`: `dupb` fails when a data block already has this many references
/// (`db_ref` is an `unsigned char` in LfS and Solaris; illumos `DBLK_REFMAX`).
pub const DB_REF_MAX: u32 = 255;

/// How a data block's buffer is released at the last reference.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum DbClass {
    /// The buffer inside the combined block; nothing to release.
    Fast = 0,
    /// A `kmem_alloc` buffer of `db_lim - db_base` bytes from the block's arena.
    Kmem = 1,
    /// An external buffer: call the free routine.
    External = 2,
    /// The data block half of a block allocated by `dupb`; never used.
    Unused = 3,
    /// The buffer inside a large combined block of 256 bytes of data (`allocb`); nothing to
    /// release, the block returns to the environment's cache of that class.
    Big256 = 4,
    /// As `Big256`, 512 bytes.
    Big512 = 5,
    /// As `Big256`, 1024 bytes.
    Big1024 = 6,
    /// As `Big256`, 2048 bytes.
    Big2048 = 7,
}

impl DbClass {
    /// The large combined classes, by index (`256 << i` bytes of data).
    pub(crate) const BIG: [DbClass; 4] = [DbClass::Big256, DbClass::Big512, DbClass::Big1024, DbClass::Big2048];

    /// The index of a large combined class, or `None` for the others.
    #[inline]
    pub(crate) fn big_index(self) -> Option<usize> {
        (self as u8).checked_sub(DbClass::Big256 as u8).map(usize::from)
    }
}

/// `dblk_t`: the data block, which owns a buffer and counts the message blocks that refer
/// to it.
///
/// Layout (64 bytes, checked at compile time in `alloc.rs`):
///
/// | offset | field | |
/// |---|---|---|
/// | 0 | `db_frtnp` | points at `frtn` below for esballoc'd blocks, else NULL |
/// | 8 | `db_base` | first byte of the buffer |
/// | 16 | `db_lim` | one past the last byte |
/// | 24 | `db_ref` | the reference count (32-bit atomic; at most [`DB_REF_MAX`]) |
/// | 28 | `db_type` | [`MsgType`] |
/// | 29 | `db_class` | how the buffer is released (private) |
/// | 30 | `db_flag` | `DB_*` bits |
/// | 32 | `db_size` | the requested size (LfS `db_size`) |
/// | 36 | `db_halves` | live halves of the combined block holding this dblk (private) |
/// | 40 | `frtn` | the caller's `frtn_t`, copied (LfS copies it into the mdbblock) |
/// | 56 | `db_env` | the message environment the block returns to (private) |
///
/// Fields other than `db_type` must not be written by callers; `db_type` only while
/// `db_ref` is 1.
#[repr(C)]
pub struct Dblk {
    /// The free routine of an esballoc'd buffer, or NULL.
    pub db_frtnp: *mut Frtn,
    /// The first byte of the buffer.
    pub db_base: *mut u8,
    /// One past the last byte of the buffer.
    pub db_lim: *mut u8,
    pub(crate) db_ref: RefCount,
    /// The message type.
    pub db_type: MsgType,
    pub(crate) db_class: DbClass,
    /// `DB_*` flags.
    pub db_flag: u16,
    /// The size requested at allocation.
    pub db_size: u32,
    pub(crate) db_halves: RefCount,
    pub(crate) frtn: Frtn,
    pub(crate) db_env: &'static crate::env::MsgEnv,
}

impl Dblk {
    /// The number of message blocks referring to this data block.
    ///
    /// Exact when no other thread dups or frees a block sharing it concurrently.
    #[inline]
    pub fn db_ref(&self) -> u32 {
        self.db_ref.get()
    }

    /// The buffer's capacity, `db_lim - db_base`.
    #[inline]
    pub fn capacity(&self) -> usize {
        self.db_lim.addr() - self.db_base.addr()
    }
}

impl fmt::Debug for Dblk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Dblk")
            .field("db_base", &self.db_base)
            .field("db_lim", &self.db_lim)
            .field("db_ref", &self.db_ref())
            .field("db_type", &self.db_type)
            .field("db_flag", &self.db_flag)
            .field("db_size", &self.db_size)
            .finish_non_exhaustive()
    }
}

/// A reference count with the last-reference protocol of illumos `dblk_decref` and bytes
/// `release_shared`. Used for `db_ref` and for the halves of a combined block.
///
/// Public (hidden) only so that the loom model in `tests/loom_last_ref.rs` runs this code.
#[doc(hidden)]
#[repr(transparent)]
pub struct RefCount(AtomicU32);

impl RefCount {
    /// A count of `n`.
    pub fn new(n: u32) -> Self {
        RefCount(AtomicU32::new(n))
    }

    /// The current count (a snapshot).
    #[inline]
    pub fn get(&self) -> u32 {
        // Acquire: when the owner of a reference reads 1 here before writing the data, every
        // other former holder's Release decrement happened before, so their reads of the
        // data cannot see the write. Only holders of a reference can raise the count, so a 1
        // stays 1 while the owner writes.
        self.0.load(Ordering::Acquire)
    }

    /// Takes one more reference unless the count is already `max`. The caller holds a
    /// reference, so the count is at least 1 and cannot reach zero meanwhile.
    #[inline]
    pub fn try_acquire(&self, max: u32) -> bool {
        // Relaxed suffices: a new reference is made from an existing one, which already
        // orders every earlier access to the block before this point in this thread (as
        // `Arc::clone`); the compare-exchange only keeps the limit exact under concurrent
        // dups.
        let mut cur = self.0.load(Ordering::Relaxed);
        loop {
            if cur >= max {
                return false;
            }
            match self.0.compare_exchange_weak(cur, cur + 1, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return true,
                Err(now) => cur = now,
            }
        }
    }

    /// Whether the caller's reference is the only one (the first step of
    /// [`RefCount::release`]): then dropping it is the last release, with no atomic
    /// read-modify-write. The free fast path uses it to free a sole-referenced block at once.
    #[inline]
    pub fn is_unique(&self) -> bool {
        // Acquire: pairs with the Release decrements of former holders (see `release`).
        self.0.load(Ordering::Acquire) == 1
    }

    /// Drops one reference; returns `true` if it was the last, in which case the caller
    /// now owns the block exclusively and frees it.
    #[inline]
    pub fn release(&self) -> bool {
        // Release on the decrement: every access this thread made to the block through its
        // reference happens before the decrement, so before whoever sees the count reach
        // zero. After a non-last decrement we no longer have a reference to the block and
        // must not touch it (illumos `dblk_decref`: "just decremented db_ref, so we no
        // longer have a reference to the dblk").
        //
        // The sole reference needs no read-modify-write: only a holder can raise the count,
        // so a 1 read by the holder stays 1; the Acquire load pairs with the Release
        // decrements of former holders as the fence below does. The count is left at 1 in
        // memory: the block is freed, and reinitialised when it is next allocated. (bytes
        // `BytesMut` and `Arc::get_mut` use the same uniqueness test.)
        if self.is_unique() {
            return true;
        }
        if self.0.fetch_sub(1, Ordering::Release) != 1 {
            return false;
        }
        // Acquire fence before freeing: it pairs with every other holder's Release
        // decrement, so all their reads and writes of the block (and of the data buffer)
        // happen before the free routine runs and before the memory is reused (bytes
        // `release_shared`, `Arc::drop`).
        fence(Ordering::Acquire);
        true
    }
}
