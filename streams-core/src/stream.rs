//! Streams: the stream head, `I_PUSH`/`I_POP`, drivers, `putnext`/`qreply`/`put`, the
//! `putctl` family, `qprocson`/`qprocsoff`, `M_FLUSH`, `M_IOCTL`, `M_ERROR`, `M_HANGUP`.
//!
//! # Shape
//!
//! A stream is a stream head queue pair, the pushed modules' pairs, and a driver pair at
//! the end: the head's write queue's `q_next` is the top module's write queue, ..., the
//! driver's write queue has no `q_next`; the driver's read queue's `q_next` is the lowest
//! module's read queue, ..., the head's read queue has none.
//!
//! # The plumbing lock
//!
//! Each stream has a reader-writer lock (LfS `sd_plumb`). Every entry into the stream that
//! walks it holds it for reading — a write at the head, an ioctl, a flush, [`put`] from
//! outside, a service procedure run by the scheduler — and `putnext` inside the stream takes
//! nothing, so `q_next` is stable for every procedure. `I_PUSH`, `I_POP`, open and close hold
//! it for writing, and so change the plumbing, call the modules' open and close routines and
//! free queues with no procedure of the stream running. (Open and close routines therefore
//! must not wait for the stream's service procedures: there is no `qwait` yet.)
//!
//! A read at the head ([`Stream::read`]) does not take it: the head's queue pair is freed
//! only when the stream's state is dropped (`close` turns its procedures off, cuts it off
//! from the driver and flushes it), so `getq` on the head's read queue, under that queue's
//! lock, is safe even while another thread closes the stream. Only the back-enable a read
//! may ask for walks the stream; it takes the lock.
//!
//! # The head
//!
//! Writes go downstream with `putnext` from the head's write queue, subject to flow control
//! (`bcanputnext`) for normal-priority messages. Messages coming up wait on the head's read
//! queue, whose water marks are the personality's `STRHIGH`/`STRLOW`; reading takes them off
//! with `getq`, so a full head read queue back-enables the driver or module below when the
//! reader drains it. The head answers `M_FLUSH` canonically (flush its read queue, reflect
//! `FLUSHW` downstream), records `M_ERROR` (read and write errors; a non-zero error flushes
//! the stream) and `M_HANGUP` (writes fail with `ENXIO`, reads return what is queued, then
//! end of file), and matches `M_IOCACK`/`M_IOCNAK` to the waiting ioctl. The functions a
//! system-call layer needs ([`Stream::write`], [`Stream::read`], [`Stream::ioctl`],
//! [`Stream::flush`], [`Stream::push`], [`Stream::pop`]) are methods of [`Stream`]; its
//! queues are reachable for raw calls.

use crate::alloc::{allocb, freemsg};
use crate::dblk::{
    M_DATA, M_DELAY, M_ERROR, M_FLUSH, M_HANGUP, M_IOCACK, M_IOCNAK, M_IOCTL, M_UNHANGUP, MsgType, datamsg,
};
use crate::env;
use crate::error::StreamsError;
use crate::mblk::Mblk;
use crate::module::{Cred, DRVOPEN, Dev, Kind, MODOPEN, ModuleInfo, QInit, Registered};
use crate::msg::Msg;
use crate::perim::SyncLevel;
use crate::queue::{FLUSHALL, QSHEAD, Queue, alloc_pair, check_q, freeq, set_flag, set_qinfo};
use crate::sched::{ExecInner, Streams};
use crate::sync::Backoff;
use crate::sync::{AtomicPtr, Condvar, Mutex, Ordering, RwLock};
use ddi_kmem::in_interrupt;
use std::ptr::null_mut;
use std::sync::Arc;
use std::time::Duration;

/// `EPERM`.
pub const EPERM: i32 = 1;
/// `EIO`.
pub const EIO: i32 = 5;
/// `ENXIO`: the stream is hung up.
pub const ENXIO: i32 = 6;
/// `EAGAIN`: flow controlled, or try again.
pub const EAGAIN: i32 = 11;
/// `ENOMEM`.
pub const ENOMEM: i32 = 12;
/// `EINVAL`.
pub const EINVAL: i32 = 22;
/// Resource deadlock would occur: a re-plumbing call from inside the stream's own procedures
/// on a thread-confined executive ([`StreamsError::InsideStream`]).
pub const EDEADLK: i32 = 35;
/// `ETIME`: an ioctl was not answered in time.
pub const ETIME: i32 = 62;

/// `M_FLUSH` flag: flush the read side.
pub const FLUSHR: u8 = 1;
/// `M_FLUSH` flag: flush the write side.
pub const FLUSHW: u8 = 2;
/// `M_FLUSH` flag: both sides.
pub const FLUSHRW: u8 = 3;
/// `M_FLUSH` flag: only the band in the second byte.
pub const FLUSHBAND: u8 = 4;

/// `M_ERROR` byte meaning "leave this side's error unchanged".
pub const NOERROR: u8 = 0xff;

/// `iocblk`: the first block of an `M_IOCTL`, `M_IOCACK` or `M_IOCNAK` message.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Iocblk {
    /// The command.
    pub ioc_cmd: i32,
    /// The id the stream head matches the answer with.
    pub ioc_id: u32,
    /// Flags (data model).
    pub ioc_flag: u32,
    /// The error of an `M_IOCNAK` (0: `EINVAL`).
    pub ioc_error: i32,
    /// The return value of an `M_IOCACK`.
    pub ioc_rval: i32,
    /// Bytes of data in `b_cont`.
    pub ioc_count: usize,
    /// The caller's user id.
    pub ioc_uid: u32,
    /// The caller's group id.
    pub ioc_gid: u32,
}

impl Iocblk {
    /// Reads the iocblk at the start of a message, if the first block holds one.
    pub fn read(m: &Mblk) -> Option<Iocblk> {
        let d = m.data();
        if d.len() < size_of::<Iocblk>() {
            return None;
        }
        // SAFETY: at least size_of::<Iocblk>() readable bytes; any bit pattern is a valid
        // Iocblk (integers only); the read is unaligned-safe.
        Some(unsafe { d.as_ptr().cast::<Iocblk>().read_unaligned() })
    }

    /// Writes this iocblk over the start of a message's first block.
    ///
    /// # Errors
    /// [`StreamsError::Shared`] or [`StreamsError::NoRoom`] as [`Msg::data_mut`].
    pub fn write(&self, m: &mut Msg) -> Result<(), StreamsError> {
        let d = m.data_mut()?;
        if d.len() < size_of::<Iocblk>() {
            return Err(StreamsError::NoRoom { call: "Iocblk::write", wanted: size_of::<Iocblk>(), room: d.len() });
        }
        // SAFETY: room checked; unaligned write of plain integers.
        unsafe { d.as_mut_ptr().cast::<Iocblk>().write_unaligned(*self) };
        Ok(())
    }
}

/// Turns an `M_IOCTL` message into its answer in place (type, error, count, rval), if its
/// first block holds an iocblk and is not shared.
///
/// # Safety
/// `mp` is an allocated message the caller owns.
pub(crate) unsafe fn set_ioc_reply(mp: *mut Mblk, t: MsgType, count: usize, error: i32, rval: i32) {
    // SAFETY: caller.
    let Some(mut m) = (unsafe { Msg::from_raw(mp) }) else { return };
    if let Some(mut ioc) = Iocblk::read(&m) {
        ioc.ioc_count = count;
        ioc.ioc_error = error;
        ioc.ioc_rval = rval;
        let _ = ioc.write(&mut m);
        let _ = m.set_type(t);
    }
    let _ = m.into_raw();
}

/// Acknowledges an `M_IOCTL`: makes it an `M_IOCACK` and sends it back (`qreply`).
///
/// # Arguments
/// - `q`: the queue the ioctl arrived on (a write queue).
/// - `mp`: the `M_IOCTL` message; its `b_cont` (if any) carries `count` bytes of reply.
/// - `count`: `ioc_count`.
/// - `rval`: `ioc_rval`, the ioctl's return value.
///
/// # Return
/// Nothing; the message is given away.
///
/// # Context
/// Put or service procedure.
///
/// # Compatibility
/// Solaris `miocack(9F)`; LfS provides it too.
///
/// # Safety
/// `q` is a live queue inside one of its procedures; `mp` an `M_IOCTL` the caller owns.
pub unsafe fn miocack(q: *mut Queue, mp: *mut Mblk, count: usize, rval: i32) {
    // SAFETY: caller.
    unsafe { set_ioc_reply(mp, M_IOCACK, count, 0, rval) };
    // SAFETY: caller.
    unsafe { qreply(q, mp) };
}

/// Refuses an `M_IOCTL`: makes it an `M_IOCNAK` with `error` and sends it back.
///
/// # Arguments
/// - `q`: the queue the ioctl arrived on.
/// - `mp`: the `M_IOCTL` message.
/// - `count`: `ioc_count` (normally 0).
/// - `error`: the errno the ioctl fails with (0 means `EINVAL`).
///
/// # Return
/// Nothing; the message is given away.
///
/// # Context
/// Put or service procedure.
///
/// # Compatibility
/// Solaris `miocnak(9F)`.
///
/// # Safety
/// As [`miocack`].
pub unsafe fn miocnak(q: *mut Queue, mp: *mut Mblk, count: usize, error: i32) {
    // SAFETY: caller.
    unsafe { set_ioc_reply(mp, M_IOCNAK, count, error, 0) };
    // SAFETY: caller.
    unsafe { qreply(q, mp) };
}

/// The answer to an ioctl.
#[derive(Debug)]
pub struct IocReply {
    /// `ioc_rval`.
    pub rval: i32,
    /// The data the module returned (`b_cont` of the `M_IOCACK`), if any.
    pub data: Option<Msg>,
}

/// `HeadState` bits mirrored in `StreamInner::flags`, so the data path tests them without
/// the head lock.
const HF_RERR: u32 = 1;
const HF_WERR: u32 = 2;
const HF_HUP: u32 = 4;
const HF_CLOSED: u32 = 8;

struct HeadState {
    rerror: i32,
    werror: i32,
    hangup: bool,
    closed: bool,
    next_ioc: u32,
    ioc_wait: Option<u32>,
    ioc_reply: *mut Mblk,
}

/// A stream's shared state (the stream head, `stdata`).
pub(crate) struct StreamInner {
    exec: Streams,
    pub(crate) plumb: RwLock<()>,
    head: AtomicPtr<Queue>,
    head_w: AtomicPtr<Queue>,
    drv: AtomicPtr<Queue>,
    drv_w: AtomicPtr<Queue>,
    modules: Mutex<Vec<*mut Queue>>,
    hs: Mutex<HeadState>,
    cv: Condvar,
    /// `HF_*`: written under `hs`, read without it.
    flags: crate::sync::AtomicU32,
    /// The queue the head's flow-control test looks at (LfS `q_nfsrv` of the head's write
    /// queue: the nearest queue below with a service procedure, else the driver's write
    /// queue), recomputed under the plumbing write lock whenever the stream is re-plumbed
    /// (open, `I_PUSH`, `I_POP`); NULL: unknown, walk.
    head_nfsrv: AtomicPtr<Queue>,
    /// Set for good when `setq` changed a qinit of a pair of this stream (outside the
    /// plumbing lock): the cache is not trusted any more, the head walks.
    nfsrv_stale: crate::sync::AtomicBool,
    /// Threads waiting on `cv` (readers, writers) and the wake-up epoch: the data path
    /// notifies only if there are waiters.
    gate: crate::sync::WaitGate,
    /// The executive is thread-confined ([`LocalStreams`](crate::LocalStreams)): `write`
    /// takes no plumbing lock, only counts itself in `depth`. A copy of `exec`'s
    /// `owner != 0`, kept here so that `write` tests one field instead of two dependent loads.
    confined: bool,
    /// Confined: `Stream::write` calls running on the owner thread (nested when a procedure
    /// writes to its own stream); only that thread touches it, with a load and a store.
    depth: crate::sync::AtomicU32,
}

/// A confined `Stream::write` in progress (see `StreamInner::depth`); the count goes back
/// down when it ends, by unwinding too.
struct Inside<'a>(&'a crate::sync::AtomicU32);

impl<'a> Inside<'a> {
    #[inline(always)]
    fn enter(depth: &'a crate::sync::AtomicU32) -> Self {
        // Relaxed load and store: only the owner thread touches the count.
        depth.store(depth.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
        Inside(depth)
    }
}

impl Drop for Inside<'_> {
    #[inline(always)]
    fn drop(&mut self) {
        self.0.store(self.0.load(Ordering::Relaxed) - 1, Ordering::Relaxed);
    }
}

impl StreamInner {
    /// The plumbing lock for writing (open, `I_PUSH`, `I_POP`, close). On a confined
    /// executive, `None` (reported as [`StreamsError::InsideStream`]) when the call comes
    /// from inside this stream on its thread: a `write` in progress (which holds no lock) or
    /// a reader of the lock (which would deadlock); on a shared one it waits.
    #[track_caller]
    fn plumb_write(&self, call: &'static str) -> Option<crate::sync::RwLockWriteGuard<'_, ()>> {
        if !self.confined {
            return Some(self.plumb.write());
        }
        let g = if self.depth.load(Ordering::Relaxed) == 0 { self.plumb.try_write() } else { None };
        if g.is_none() {
            env::current().misuse(StreamsError::InsideStream { call });
        }
        g
    }

    /// Marks the stream closed (a failed `open`).
    fn mark_closed(&self) {
        let mut hs = self.hs.lock();
        hs.closed = true;
        self.sync_flags(&hs);
    }

    /// Recomputes the flags from the head state (called with `hs` held).
    fn sync_flags(&self, hs: &HeadState) {
        let f = if hs.rerror != 0 { HF_RERR } else { 0 }
            | if hs.werror != 0 { HF_WERR } else { 0 }
            | if hs.hangup { HF_HUP } else { 0 }
            | if hs.closed { HF_CLOSED } else { 0 };
        self.flags.store(f, Ordering::Release);
    }

    /// Wakes waiters, if any: called after making a waiter's condition true (a message on
    /// the head's read queue, room below the head); see [`WaitGate`](crate::sync::WaitGate).
    fn wake(&self) {
        if self.gate.signal() {
            let _g = self.hs.lock();
            self.cv.notify_all();
        }
    }

    /// Recomputes [`head_nfsrv`](Self::head_nfsrv) (plumbing held for writing).
    fn refresh_nfsrv(&self) {
        let hw = self.head_w.load(Ordering::Acquire);
        // SAFETY: the head write queue is live while the stream is (plumbing held).
        let next = if hw.is_null() { null_mut() } else { unsafe { &*hw }.next() };
        let t = if next.is_null() { null_mut() } else { crate::flow::nfsrv(next) };
        self.head_nfsrv.store(t, Ordering::Release);
    }

    /// The head's flow-control target: the cache, or the walk when it is unknown or stale.
    fn nfsrv_of_head(&self, hw: &Queue) -> *mut Queue {
        let t = self.head_nfsrv.load(Ordering::Acquire);
        if !t.is_null() && !self.nfsrv_stale.load(Ordering::Acquire) {
            return t;
        }
        let next = hw.next();
        if next.is_null() { null_mut() } else { crate::flow::nfsrv(next) }
    }

    /// The head's read queue, allocated for as long as `self` (see [`Stream::read`]).
    #[inline]
    fn head_rq(&self) -> &Queue {
        let head = self.head.load(Ordering::Acquire);
        debug_assert!(!head.is_null(), "internal: a stream without a head pair");
        // SAFETY: an open `Stream` has its head pair (set by `open` before the `Stream` is
        // made), freed only by `Drop for StreamInner`, i.e. after every borrow of `self`.
        unsafe { &*head }
    }

    /// The back-enable a read at the head asked for (the head's read queue fell below its
    /// low water mark with a writer waiting), under the plumbing lock (read), which it needs
    /// to walk the stream; none once the stream is closed (nothing is left below the head).
    #[cold]
    #[inline(never)]
    fn backenable_from_head(&self, after: crate::queue::AfterRemove) {
        let _r = self.plumb.read_recursive();
        if self.flags.load(Ordering::Acquire) & HF_CLOSED == 0 {
            crate::flow::after_remove(self.head_rq(), after);
        }
    }

    /// Waits on `cv` for at most `d`, unless a wake-up came since `ticket` (from
    /// `gate.register()`, taken before the caller checked its condition). The caller
    /// unregisters and re-checks its condition.
    fn wait(&self, hs: &mut crate::sync::MutexGuard<'_, HeadState>, ticket: u64, d: Duration) {
        if !self.gate.changed(ticket) {
            self.cv.wait_for(hs, d);
        }
    }
}

// SAFETY: the raw pointers are the stream's queues and a pending ioctl answer, reached
// under the plumbing lock or the head lock.
unsafe impl Send for StreamInner {}
// SAFETY: as above.
unsafe impl Sync for StreamInner {}

/// An open stream: the stream head's side of a driver with modules pushed on it.
///
/// Dropping it closes the stream (as [`Stream::close`]) and frees the stream head's queue
/// pair, the last of its memory.
pub struct Stream {
    inner: Arc<StreamInner>,
}

impl std::fmt::Debug for Stream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stream").field("modules", &self.modules()).finish_non_exhaustive()
    }
}

static HEAD_INFO: ModuleInfo = ModuleInfo {
    mi_idnum: 0,
    mi_idname: "strhead",
    mi_minpsz: 0,
    mi_maxpsz: crate::module::INFPSZ,
    mi_hiwat: 5120,
    mi_lowat: 1024,
};

static HEAD_RINIT: QInit =
    QInit { qi_putp: Some(head_rput), qi_srvp: Some(head_srv), qi_qopen: None, qi_qclose: None, qi_minfo: &HEAD_INFO };

static HEAD_WINIT: QInit =
    QInit { qi_putp: Some(head_wput), qi_srvp: Some(head_srv), qi_qopen: None, qi_qclose: None, qi_minfo: &HEAD_INFO };

/// `setq` changed a qinit of a pair of `stream`: its flow-control cache is not trusted any
/// more.
pub(crate) fn nfsrv_stale(stream: *const StreamInner) {
    // SAFETY: the stream outlives its queues (the caller's pair is live).
    if let Some(s) = unsafe { stream.as_ref() } {
        s.nfsrv_stale.store(true, Ordering::Release);
    }
}

fn stream_of(q: *mut Queue) -> &'static StreamInner {
    // SAFETY: a head queue is live and belongs to a stream, which outlives it; the 'static is
    // bounded by the procedure call.
    let stream = unsafe { (*q).shared().stream };
    // SAFETY: as above.
    unsafe { &*stream }
}

/// The head's service procedures: wake readers (read side) or writers (write side, when
/// back-enabled by flow control).
unsafe fn head_srv(q: *mut Queue) -> i32 {
    stream_of(q).wake();
    0
}

/// Nothing should be put to the head's write queue from below.
unsafe fn head_wput(_q: *mut Queue, mp: *mut Mblk) -> i32 {
    // SAFETY: the message was given to us.
    unsafe { freemsg(mp) };
    0
}

/// The head's read put procedure (see the module doc).
unsafe fn head_rput(q: *mut Queue, mp: *mut Mblk) -> i32 {
    // SAFETY: the message is ours (put procedure contract).
    let m = unsafe { &*mp };
    let t = m.msg_type();
    match t {
        // Data first: the common case.
        _ if datamsg(t) || t == crate::dblk::M_SIG || t == crate::dblk::M_PCSIG => {
            // SAFETY: the head read queue, live: its put procedure runs.
            let hq = unsafe { &*q };
            // SAFETY: the message is ours.
            match unsafe { crate::queue::putq_noting_empty(hq, mp) } {
                // SAFETY: refused: still ours.
                None => unsafe { freemsg(mp) },
                // Readers wait (spin or sleep: `read_wait`) only after finding this queue
                // empty, so only the first message into an empty queue can make a waiter's
                // condition true: the later ones skip the wake-up gate's read-modify-write.
                Some(true) => stream_of(q).wake(),
                Some(false) => {}
            }
        }
        M_FLUSH => {
            let flag = m.data().first().copied().unwrap_or(0);
            let band = if flag & FLUSHBAND != 0 { m.data().get(1).copied() } else { None };
            if flag & FLUSHR != 0 {
                // SAFETY: the head read queue is live.
                unsafe { flush_head(q, band) };
            }
            if flag & FLUSHW != 0 {
                // SAFETY: ours (put procedure contract).
                if let Some(mut msg) = unsafe { Msg::from_raw(mp) } {
                    if let Ok(d) = msg.data_mut() {
                        d[0] &= !FLUSHR;
                    }
                    // SAFETY: the head read queue; its pair's write queue goes downstream.
                    unsafe { qreply(q, msg.into_raw()) };
                }
            } else {
                // SAFETY: ours.
                unsafe { freemsg(mp) };
            }
        }
        M_ERROR => {
            let d = m.data();
            let (r, w) = match d.len() {
                0 => (0, 0),
                1 => (d[0], d[0]),
                _ => (d[0], d[1]),
            };
            let s = stream_of(q);
            let mut hs = s.hs.lock();
            if r != NOERROR {
                hs.rerror = i32::from(r);
            }
            if w != NOERROR {
                hs.werror = i32::from(w);
            }
            s.sync_flags(&hs);
            let flush = hs.rerror != 0 || hs.werror != 0;
            s.cv.notify_all();
            drop(hs);
            tracing::debug!(rerror = r, werror = w, "stream head: M_ERROR");
            // SAFETY: ours.
            unsafe { freemsg(mp) };
            if flush {
                // SAFETY: the head read queue is live; its write queue has a next queue.
                unsafe { flush_head(q, None) };
                // SAFETY: as above.
                let wq = unsafe { (*q).other_raw() };
                // SAFETY: the head write queue, plumbing held by the caller.
                unsafe { putnextctl1(wq, M_FLUSH, i32::from(FLUSHRW)) };
            }
        }
        M_HANGUP | M_UNHANGUP => {
            let s = stream_of(q);
            let mut hs = s.hs.lock();
            hs.hangup = t == M_HANGUP;
            s.sync_flags(&hs);
            s.cv.notify_all();
            drop(hs);
            tracing::debug!(hangup = t == M_HANGUP, "stream head: hangup state");
            // SAFETY: ours.
            unsafe { freemsg(mp) };
        }
        M_IOCACK | M_IOCNAK => {
            let id = Iocblk::read(m).map(|i| i.ioc_id);
            let s = stream_of(q);
            let mut hs = s.hs.lock();
            if id.is_some() && hs.ioc_wait == id && hs.ioc_reply.is_null() {
                hs.ioc_reply = mp;
                s.cv.notify_all();
            } else {
                drop(hs);
                tracing::debug!(?id, "stream head: unexpected ioctl answer freed");
                // SAFETY: ours.
                unsafe { freemsg(mp) };
            }
        }
        _ => {
            tracing::debug!(msg_type = ?t, "stream head: message not handled, freed");
            // SAFETY: ours.
            unsafe { freemsg(mp) };
        }
    }
    0
}

/// Flushes the head's read queue (all messages, or one band).
///
/// # Safety
/// `q` is the live head read queue.
unsafe fn flush_head(q: *mut Queue, band: Option<u8>) {
    match band {
        // SAFETY: caller.
        Some(b) => unsafe { crate::queue::flushband(q, b, FLUSHALL) },
        // SAFETY: caller.
        None => unsafe { crate::queue::flushq(q, FLUSHALL) },
    }
}

/// Passes a message to the next queue's put procedure.
///
/// # Arguments
/// - `q`: the calling queue.
/// - `mp`: the message, given away.
///
/// # Return
/// Nothing. The next queue's put procedure runs synchronously in this thread (through its
/// perimeter: if that is busy, the call is left to its holder, which runs it before leaving).
/// A queue with no next queue is a misuse ([`StreamsError::NoNextQueue`]): reported, and the
/// message freed.
///
/// # Context
/// Inside put and service procedures, or from the stream head.
///
/// # Compatibility
/// LfS `putnext(9)` calls the put procedure synchronously under the plumbing read lock
/// (lfs-lis.md §3.4); LiS fails silently when the next queue has no put procedure, is
/// closing, or has procedures off (§4.3). Here, a next queue with procedures off holds the
/// message on its queue until they come back on (or frees it when closed).
///
/// # Safety
/// `q` is a live queue whose plumbing is stable (inside the stream); `mp` is an allocated
/// message the caller owns.
#[track_caller]
pub unsafe fn putnext(q: *mut Queue, mp: *mut Mblk) {
    // SAFETY: forwarded.
    unsafe { putnext_call("putnext", q, mp) }
}

#[track_caller]
unsafe fn putnext_call(call: &'static str, q: *mut Queue, mp: *mut Mblk) {
    let Some(qr) = check_q(call, q) else {
        // SAFETY: the message was given to us.
        unsafe { freemsg(mp) };
        return;
    };
    // SAFETY: forwarded.
    unsafe { putnext_from(call, qr, mp) }
}

/// `putnext` from a queue known to be live (the safe handle's path: no checks).
///
/// # Safety
/// `qr`'s plumbing is stable; `mp` is a message the caller gives away.
#[inline(always)]
#[track_caller]
pub(crate) unsafe fn putnext_from(call: &'static str, qr: &Queue, mp: *mut Mblk) {
    let next = qr.next();
    if next.is_null() {
        // SAFETY: forwarded.
        unsafe { no_next_queue(call, qr, mp) };
        return;
    }
    // SAFETY: the next queue of a live queue with stable plumbing; the message is given away.
    unsafe { crate::perim::put_through(next, mp) }
}

/// `putnext` from a queue with no next queue: a misuse.
///
/// # Safety
/// `mp` is a message the caller gives away.
#[cold]
#[inline(never)]
#[track_caller]
unsafe fn no_next_queue(call: &'static str, qr: &Queue, mp: *mut Mblk) {
    // Freed first, so that a panicking response leaks nothing.
    // SAFETY: caller.
    unsafe { freemsg(mp) };
    env::current().misuse(StreamsError::NoNextQueue { call, module: qr.name() });
}

/// Sends a message back the other way: `putnext(OTHERQ(q), mp)`.
///
/// # Arguments
/// - `q`: the calling queue.
/// - `mp`: the message, given away.
///
/// # Return
/// As [`putnext`] on the other queue of the pair.
///
/// # Context
/// As [`putnext`].
///
/// # Compatibility
/// SVR4 `qreply(9)`; LfS defines it inline as `putnext(OTHERQ(q), mp)`.
///
/// # Safety
/// As [`putnext`].
#[track_caller]
pub unsafe fn qreply(q: *mut Queue, mp: *mut Mblk) {
    let Some(qr) = check_q("qreply", q) else {
        // SAFETY: the message was given to us.
        unsafe { freemsg(mp) };
        return;
    };
    // SAFETY: forwarded, on the other queue of the live pair.
    unsafe { putnext_call("qreply", qr.other_raw(), mp) }
}

/// Calls a queue's put procedure from outside the stream (a driver's interrupt handler, a
/// timeout, another stream).
///
/// # Arguments
/// - `q`: the queue.
/// - `mp`: the message, given away.
///
/// # Return
/// Nothing; the put procedure runs in this thread, under the stream's plumbing lock
/// (read) and the queue's perimeter.
///
/// # Context
/// Any, including interrupt context (LfS: use `put`, not `putnext`, from an ISR).
///
/// # Compatibility
/// SVR4 `put(9)`; OSF/1 `puthere`, HP-UX `streams_put`.
///
/// # Safety
/// `q` is a live queue; `mp` a message the caller owns.
#[track_caller]
pub unsafe fn put(q: *mut Queue, mp: *mut Mblk) {
    let Some(qr) = check_q("put", q) else {
        // SAFETY: given to us.
        unsafe { freemsg(mp) };
        return;
    };
    let stream = qr.shared().stream;
    // SAFETY: the stream outlives its queues.
    let _g = (!stream.is_null()).then(|| unsafe { (*stream).plumb.read_recursive() });
    // SAFETY: a live queue, plumbing stable under the lock.
    unsafe { crate::perim::put_through(q, mp) }
}

fn ctl_msg(call: &'static str, t: MsgType, param: Option<i32>) -> *mut Mblk {
    if datamsg(t) && t != M_DELAY {
        tracing::debug!(call, msg_type = ?t, "data type refused");
        return null_mut();
    }
    let mp = allocb(usize::from(param.is_some()), crate::alloc::BPRI_HI);
    if mp.is_null() {
        return mp;
    }
    // SAFETY: just allocated, ours.
    let m = unsafe { &mut *mp };
    if let Some(p) = param {
        // SAFETY: one byte of room in a fresh block.
        unsafe { m.b_wptr.write(p as u8) };
        m.b_wptr = m.b_wptr.wrapping_add(1);
    }
    // SAFETY: a fresh, unshared data block.
    unsafe { (*m.b_datap).db_type = t };
    mp
}

/// Sends a control message with no data to a queue's put procedure.
///
/// # Arguments
/// - `q`: the queue.
/// - `t`: the type; not a data type (except `M_DELAY`).
///
/// # Return
/// 1 if sent; 0 if `t` is a data type or memory is short.
///
/// # Context
/// As [`put`].
///
/// # Compatibility
/// SVR4 `putctl(9)`; illumos returns 0 for data types (illumos.md §4).
///
/// # Safety
/// As [`put`].
pub unsafe fn putctl(q: *mut Queue, t: MsgType) -> i32 {
    let mp = ctl_msg("putctl", t, None);
    if mp.is_null() {
        return 0;
    }
    // SAFETY: forwarded.
    unsafe { put(q, mp) };
    1
}

/// [`putctl`] with one byte of data.
///
/// # Arguments
/// - `q`: the queue.
/// - `t`: the type.
/// - `param`: the byte (e.g. the `M_FLUSH` flags).
///
/// # Return
/// As [`putctl`].
///
/// # Context
/// As [`put`].
///
/// # Compatibility
/// SVR4 `putctl1(9)`.
///
/// # Safety
/// As [`put`].
pub unsafe fn putctl1(q: *mut Queue, t: MsgType, param: i32) -> i32 {
    let mp = ctl_msg("putctl1", t, Some(param));
    if mp.is_null() {
        return 0;
    }
    // SAFETY: forwarded.
    unsafe { put(q, mp) };
    1
}

/// Sends a control message with no data to the next queue.
///
/// # Arguments
/// - `q`: the calling queue.
/// - `t`: the type.
///
/// # Return
/// As [`putctl`].
///
/// # Context
/// As [`putnext`].
///
/// # Compatibility
/// SVR4 MP `putnextctl(9)`.
///
/// # Safety
/// As [`putnext`].
pub unsafe fn putnextctl(q: *mut Queue, t: MsgType) -> i32 {
    let mp = ctl_msg("putnextctl", t, None);
    if mp.is_null() {
        return 0;
    }
    // SAFETY: forwarded.
    unsafe { putnext(q, mp) };
    1
}

/// [`putnextctl`] with one byte of data.
///
/// # Arguments
/// - `q`: the calling queue.
/// - `t`: the type.
/// - `param`: the byte.
///
/// # Return
/// As [`putctl`].
///
/// # Context
/// As [`putnext`].
///
/// # Compatibility
/// SVR4 MP `putnextctl1(9)`.
///
/// # Safety
/// As [`putnext`].
pub unsafe fn putnextctl1(q: *mut Queue, t: MsgType, param: i32) -> i32 {
    let mp = ctl_msg("putnextctl1", t, Some(param));
    if mp.is_null() {
        return 0;
    }
    // SAFETY: forwarded.
    unsafe { putnext(q, mp) };
    1
}

/// Turns a queue pair's put and service procedures on.
///
/// # Arguments
/// - `q`: either queue of the pair (normally the read queue, in open).
///
/// # Return
/// Nothing. Messages that arrived while procedures were off are delivered: to the service
/// procedure (the queue is enabled) or, for a queue without one, to the put procedure.
///
/// # Context
/// User context (open); not from interrupt context (reported).
///
/// # Compatibility
/// Solaris `qprocson(9F)`; a no-op on HP-UX (lfs-lis.md §4.3). Streams call it after a
/// successful open when the open routine did not.
///
/// # Safety
/// `q` is a live queue of a pair whose plumbing the caller holds stable (open).
#[track_caller]
pub unsafe fn qprocson(q: *mut Queue) {
    if in_interrupt() {
        env::current().misuse(StreamsError::SleepInInterrupt { call: "qprocson" });
        return;
    }
    let Some(qr) = check_q("qprocson", q) else { return };
    let (rq, wq) = if qr.is_read() { (q, qr.other_raw()) } else { (qr.other_raw(), q) };
    for side in [rq, wq] {
        // SAFETY: both queues of the live pair.
        let s = unsafe { &*side };
        if !s.procs_off() {
            continue;
        }
        crate::sched::reenable(s);
        if !s.has_srvp() {
            loop {
                // SAFETY: a live queue.
                let mp = unsafe { crate::queue::getq(side) };
                if mp.is_null() {
                    break;
                }
                // SAFETY: a message we took off the queue; procedures are on again.
                unsafe { crate::perim::put_through(side, mp) };
            }
        }
    }
}

/// Turns a queue pair's put and service procedures off.
///
/// # Arguments
/// - `q`: either queue of the pair (normally the read queue, in close).
///
/// # Return
/// Nothing. When it returns, neither service procedure is running or scheduled, and calls
/// deferred on the pair's perimeter are dropped (their messages freed). Messages put to the
/// pair afterwards wait on its queues (and are freed when it is closed).
///
/// # Context
/// User context (close); it may wait for a running service procedure, so not from interrupt
/// context (reported) nor from the pair's own procedures.
///
/// # Compatibility
/// Solaris `qprocsoff(9F)`; LiS only sets a flag and drops later messages (lfs-lis.md §4.3).
///
/// # Safety
/// `q` is a live queue of a pair.
#[track_caller]
pub unsafe fn qprocsoff(q: *mut Queue) {
    if in_interrupt() {
        env::current().misuse(StreamsError::SleepInInterrupt { call: "qprocsoff" });
        return;
    }
    let Some(qr) = check_q("qprocsoff", q) else { return };
    let (rq, wq) = if qr.is_read() { (q, qr.other_raw()) } else { (qr.other_raw(), q) };
    let perim = qr.shared().perim.load(Ordering::Acquire);
    for side in [rq, wq] {
        // SAFETY: both queues of the live pair.
        crate::sched::disable(unsafe { &*side });
        // SAFETY: the perimeter outlives the pair.
        if let Some(p) = unsafe { perim.as_ref() } {
            p.purge(side);
        }
    }
}

fn user_context(call: &'static str) -> Result<(), i32> {
    if in_interrupt() {
        env::current().misuse(StreamsError::SleepInInterrupt { call });
        return Err(EINVAL);
    }
    Ok(())
}

/// Makes a pair's procedures off (before open) and sets its qinits and perimeter.
///
/// # Safety
/// `rq` is the read queue of a fresh pair; `reg` outlives it.
unsafe fn setup_pair(rq: *mut Queue, reg: &Registered) {
    // SAFETY: caller.
    let r = unsafe { &*rq };
    let w = r.other();
    // SAFETY: the registry's qinits outlive the pair (the executive holds both).
    unsafe { set_qinfo(r, reg.rinit) };
    // SAFETY: as above.
    unsafe { set_qinfo(w, reg.winit) };
    let perim = match reg.sync {
        SyncLevel::Mp => null_mut(),
        SyncLevel::QueuePair => std::ptr::from_ref(&r.shared().own_perim).cast_mut(),
        SyncLevel::Module => std::ptr::from_ref(&reg.perim).cast_mut(),
    };
    r.shared().perim.store(perim, Ordering::Release);
    crate::sched::disable(r);
    crate::sched::disable(w);
}

/// Calls a pair's open routine (read side's qinit).
///
/// # Safety
/// `rq` is a live read queue whose plumbing the caller holds for writing.
unsafe fn call_open(rq: *mut Queue, dev: &mut Dev, sflag: i32) -> i32 {
    // SAFETY: caller.
    let qi = unsafe { (*rq).qinfo() };
    // SAFETY: qinits outlive the pair.
    let Some(open) = (unsafe { qi.as_ref() }).and_then(|q| q.qi_qopen) else { return 0 };
    let cred = Cred::default();
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        // SAFETY: the open routine's contract.
        unsafe { open(rq, dev, 0, sflag, &cred) }
    }));
    r.unwrap_or_else(|e| {
        // SAFETY: a live queue.
        let q = unsafe { &*rq };
        q.exec().report(StreamsError::ProcPanicked {
            call: "open",
            module: q.name(),
            message: format!("{:?}", e.downcast_ref::<&str>()),
        });
        EIO
    })
}

/// Calls a pair's close routine.
///
/// # Safety
/// As [`call_open`].
unsafe fn call_close(rq: *mut Queue) {
    // SAFETY: caller.
    let qi = unsafe { (*rq).qinfo() };
    // SAFETY: qinits outlive the pair.
    let Some(close) = (unsafe { qi.as_ref() }).and_then(|q| q.qi_qclose) else { return };
    let cred = Cred::default();
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        // SAFETY: the close routine's contract.
        unsafe { close(rq, 0, &cred) }
    }));
    if r.is_err() {
        // SAFETY: a live queue.
        let q = unsafe { &*rq };
        q.exec().report(StreamsError::ProcPanicked { call: "close", module: q.name(), message: String::new() });
    }
}

impl Streams {
    /// Opens a stream on a registered driver.
    ///
    /// # Errors
    /// `EINVAL` if no driver has that name or the call is made in interrupt context
    /// (reported); `ENOMEM` when queues cannot be allocated; the driver's open errno;
    /// `EPERM` on a thread-confined executive, whose streams are opened by
    /// [`LocalStreams::open`](crate::LocalStreams::open) (a `Stream` could go to another
    /// thread).
    pub fn open(&self, driver: &str, dev: Dev) -> Result<Stream, i32> {
        if self.inner.owner != 0 {
            return Err(EPERM);
        }
        self.open_stream(driver, dev)
    }

    /// [`Streams::open`] for either kind of executive (a confined one's caller wraps the
    /// result in a `LocalStream` on the owner thread).
    pub(crate) fn open_stream(&self, driver: &str, dev: Dev) -> Result<Stream, i32> {
        self.inner.check_owner("open");
        user_context("open")?;
        let reg = self.lookup(driver).ok_or(EINVAL)?;
        // SAFETY: registry entries live as long as the executive.
        let reg = unsafe { &*reg };
        if reg.kind != Kind::Driver {
            return Err(EINVAL);
        }
        let inner = Arc::new(StreamInner {
            exec: self.clone(),
            plumb: RwLock::new(()),
            head: AtomicPtr::new(null_mut()),
            head_w: AtomicPtr::new(null_mut()),
            drv: AtomicPtr::new(null_mut()),
            drv_w: AtomicPtr::new(null_mut()),
            modules: Mutex::new(Vec::new()),
            hs: Mutex::new(HeadState {
                rerror: 0,
                werror: 0,
                hangup: false,
                closed: false,
                next_ioc: 0,
                ioc_wait: None,
                ioc_reply: null_mut(),
            }),
            cv: Condvar::new(),
            flags: crate::sync::AtomicU32::new(0),
            gate: crate::sync::WaitGate::new(),
            head_nfsrv: AtomicPtr::new(null_mut()),
            nfsrv_stale: crate::sync::AtomicBool::new(false),
            confined: self.inner.owner != 0,
            depth: crate::sync::AtomicU32::new(0),
        });
        let exec: *const ExecInner = Arc::as_ptr(&self.inner);
        let sp: *const StreamInner = Arc::as_ptr(&inner);
        let _w = inner.plumb.write();
        // SAFETY: the executive is alive (self).
        let head = unsafe { alloc_pair(exec, sp) };
        if head.is_null() {
            return Err(ENOMEM);
        }
        // SAFETY: a fresh pair.
        let hr = unsafe { &*head };
        let hw = hr.other();
        // SAFETY: the head qinits are statics.
        unsafe { set_qinfo(hr, &HEAD_RINIT) };
        // SAFETY: as above.
        unsafe { set_qinfo(hw, &HEAD_WINIT) };
        {
            let mut st = hr.st.lock();
            st.hiwat = self.inner.quirks.strhigh;
            st.lowat = self.inner.quirks.strlow;
        }
        set_flag(hr, QSHEAD, true);
        set_flag(hw, QSHEAD, true);
        inner.head.store(head, Ordering::Release);
        inner.head_w.store(hr.other_raw(), Ordering::Release);
        // SAFETY: as for the head.
        let drv = unsafe { alloc_pair(exec, sp) };
        if drv.is_null() {
            // The head pair is freed with `inner` (closed: see `Drop for StreamInner`).
            inner.mark_closed();
            return Err(ENOMEM);
        }
        // SAFETY: a fresh pair; the registration outlives it.
        unsafe { setup_pair(drv, reg) };
        // SAFETY: the driver pair is live.
        let dr = unsafe { &*drv };
        hw.q_next.store(dr.other_raw(), Ordering::Release);
        dr.q_next.store(head, Ordering::Release);
        inner.drv.store(drv, Ordering::Release);
        inner.drv_w.store(dr.other_raw(), Ordering::Release);
        let mut dev = dev;
        // SAFETY: the driver's read queue; plumbing held for writing.
        let err = unsafe { call_open(drv, &mut dev, DRVOPEN) };
        if err != 0 {
            // SAFETY: the driver's pair, linked to the head only, no procedure running.
            unsafe { freeq(drv) };
            hw.q_next.store(null_mut(), Ordering::Release);
            // The head pair is freed with `inner` (closed: see `Drop for StreamInner`).
            inner.mark_closed();
            return Err(err);
        }
        // SAFETY: the driver pair, opened.
        unsafe { qprocson(drv) };
        inner.refresh_nfsrv();
        drop(_w);
        tracing::debug!(driver, dev, "stream opened");
        Ok(Stream { inner })
    }
}

impl Stream {
    fn head(&self) -> *mut Queue {
        self.inner.head.load(Ordering::Acquire)
    }

    /// The stream head's read queue (raw). The raw queue accessors return pointers that
    /// dangle once the stream is closed (the head's pair, flushed and with its procedures
    /// off, is freed when the `Stream` is dropped).
    pub fn head_rq(&self) -> *mut Queue {
        self.head()
    }

    /// The stream head's write queue (raw).
    pub fn head_wq(&self) -> *mut Queue {
        self.inner.head_w.load(Ordering::Acquire)
    }

    /// The driver's read queue (raw): where a driver's "interrupt handler" puts what it
    /// receives ([`put`]).
    pub fn driver_rq(&self) -> *mut Queue {
        self.inner.drv.load(Ordering::Acquire)
    }

    /// The driver's write queue (raw).
    pub fn driver_wq(&self) -> *mut Queue {
        self.inner.drv_w.load(Ordering::Acquire)
    }

    /// The executive the stream belongs to.
    pub fn streams(&self) -> &Streams {
        &self.inner.exec
    }

    /// The names of the pushed modules, top first (`I_LIST`).
    pub fn modules(&self) -> Vec<&'static str> {
        let m = self.inner.modules.lock();
        m.iter()
            .rev()
            .map(|&q| {
                // SAFETY: pushed queues are live while listed.
                unsafe { (*q).name() }
            })
            .collect()
    }

    fn closed(&self) -> bool {
        self.inner.hs.lock().closed
    }

    /// `I_PUSH`: pushes a registered module under the head and opens it.
    ///
    /// # Errors
    /// `EINVAL` for an unknown name, a driver's name, more than `nstrpush` modules, a closed
    /// stream, or interrupt context (reported); `ENOMEM`; the module's open errno (the
    /// module is then removed again).
    pub fn push(&self, name: &str) -> Result<(), i32> {
        user_context("I_PUSH")?;
        let reg = self.inner.exec.lookup(name).ok_or(EINVAL)?;
        // SAFETY: registry entries live as long as the executive.
        let reg = unsafe { &*reg };
        if reg.kind != Kind::Module {
            return Err(EINVAL);
        }
        let _w = self.inner.plumb_write("I_PUSH").ok_or(EDEADLK)?;
        if self.closed() || self.inner.modules.lock().len() >= self.inner.exec.inner.quirks.nstrpush {
            return Err(EINVAL);
        }
        let exec: *const ExecInner = Arc::as_ptr(&self.inner.exec.inner);
        // SAFETY: the executive is alive.
        let rq = unsafe { alloc_pair(exec, Arc::as_ptr(&self.inner)) };
        if rq.is_null() {
            return Err(ENOMEM);
        }
        // SAFETY: a fresh pair; the registration outlives it.
        unsafe { setup_pair(rq, reg) };
        let head = self.head();
        // SAFETY: live queues of this stream; plumbing held for writing.
        let hr = unsafe { &*head };
        // SAFETY: as above.
        let r = unsafe { &*rq };
        let (hw, w) = (hr.other(), r.other());
        let below_w = hw.next();
        // SAFETY: as above.
        let below_r = unsafe { (*below_w).other() };
        w.q_next.store(below_w, Ordering::Release);
        hw.q_next.store(r.other_raw(), Ordering::Release);
        r.q_next.store(head, Ordering::Release);
        below_r.q_next.store(rq, Ordering::Release);
        let mut dev = 0;
        // SAFETY: plumbing held for writing.
        let err = unsafe { call_open(rq, &mut dev, MODOPEN) };
        if err != 0 {
            hw.q_next.store(below_w, Ordering::Release);
            below_r.q_next.store(head, Ordering::Release);
            // SAFETY: unlinked, no procedure running.
            unsafe { freeq(rq) };
            self.inner.refresh_nfsrv();
            return Err(err);
        }
        // SAFETY: opened.
        unsafe { qprocson(rq) };
        self.inner.refresh_nfsrv();
        self.inner.modules.lock().push(rq);
        tracing::debug!(module = name, "I_PUSH");
        Ok(())
    }

    /// `I_POP`: closes and removes the module under the head.
    ///
    /// # Errors
    /// `EINVAL` if no module is pushed or in interrupt context (reported).
    pub fn pop(&self) -> Result<(), i32> {
        user_context("I_POP")?;
        let _w = self.inner.plumb_write("I_POP").ok_or(EDEADLK)?;
        let rq = self.inner.modules.lock().pop().ok_or(EINVAL)?;
        // SAFETY: plumbing held for writing; the module's pair is live.
        unsafe { self.remove_module(rq) };
        Ok(())
    }

    /// Closes, unlinks and frees the top module.
    ///
    /// # Safety
    /// `rq` is the top module's read queue; plumbing held for writing.
    unsafe fn remove_module(&self, rq: *mut Queue) {
        // SAFETY: caller.
        let name = unsafe { (*rq).name() };
        // SAFETY: caller.
        unsafe { call_close(rq) };
        // SAFETY: caller.
        unsafe { qprocsoff(rq) };
        let head = self.head();
        // SAFETY: live queues; plumbing held for writing.
        let hr = unsafe { &*head };
        // SAFETY: as above.
        let r = unsafe { &*rq };
        let below_w = r.other().next();
        hr.other().q_next.store(below_w, Ordering::Release);
        // SAFETY: as above.
        unsafe { (*below_w).other() }.q_next.store(head, Ordering::Release);
        self.inner.refresh_nfsrv();
        // SAFETY: unlinked; procedures off; nothing refers to it.
        unsafe { freeq(rq) };
        tracing::debug!(module = name, "I_POP");
    }

    /// Whether the stream is closed; checked again after taking the plumbing lock, which
    /// `close` holds for writing while it frees the queues.
    fn is_closed(&self) -> bool {
        self.inner.flags.load(Ordering::Acquire) & HF_CLOSED != 0
    }

    fn check_write(&self) -> Result<(), i32> {
        if self.inner.flags.load(Ordering::Acquire) & (HF_CLOSED | HF_HUP | HF_WERR) == 0 {
            return Ok(());
        }
        let hs = self.inner.hs.lock();
        if hs.closed {
            return Err(EINVAL);
        }
        if hs.hangup {
            return Err(ENXIO);
        }
        if hs.werror != 0 {
            return Err(hs.werror);
        }
        Ok(())
    }

    /// Writes a message down the stream: the head's `putnext`.
    ///
    /// # Errors
    /// The message is given back with `EAGAIN` when a normal-priority message meets flow
    /// control (the nearest queue below with a service procedure is full for its band), with
    /// `ENXIO` after a hangup, with the write error after `M_ERROR`.
    pub fn write(&self, m: Msg) -> Result<(), (i32, Msg)> {
        if let Err(e) = self.check_write() {
            return Err((e, m));
        }
        if self.inner.confined {
            // No other thread can use the stream (`LocalStream` is neither `Send` nor
            // `Sync`), so nothing can re-plumb it during the call but a call from inside
            // it, which `plumb_write` refuses while `depth` counts this one.
            let _inside = Inside::enter(&self.inner.depth);
            return self.write_plumbed(m);
        }
        let _r = self.inner.plumb.read_recursive();
        self.write_plumbed(m)
    }

    /// [`Stream::write`] once the plumbing is stable (read lock held, or confined).
    #[inline(always)]
    fn write_plumbed(&self, m: Msg) -> Result<(), (i32, Msg)> {
        if self.is_closed() {
            return Err((EINVAL, m));
        }
        // SAFETY: the head write queue, live while the stream is open (checked under the
        // plumbing lock, held).
        let wq = unsafe { &*self.head_wq() };
        if !m.msg_type().is_high_priority() && !crate::flow::can_put_to(self.inner.nfsrv_of_head(wq), m.b_band) {
            return Err((EAGAIN, m));
        }
        // SAFETY: the head write queue with stable plumbing; the message is given away.
        unsafe { putnext_from("putnext", wq, m.into_raw()) };
        Ok(())
    }

    /// Like [`Stream::write`], but waits while the stream is flow controlled (with no
    /// worker threads it runs the scheduler on this thread instead of waiting). With
    /// workers, it first runs enabled service procedures on this thread too (LfS's head
    /// calls `runqueues` at the end of a system call), retries a little (spinning, then
    /// yielding: a worker may share this core), then sleeps until the head is back-enabled.
    ///
    /// # Errors
    /// As [`Stream::write`], except `EAGAIN`.
    pub fn write_wait(&self, mut m: Msg) -> Result<(), (i32, Msg)> {
        let mut backoff = Backoff::new();
        loop {
            // As in `read_wait`: spin on the epoch (the head is back-enabled: it moves).
            let epoch = self.inner.gate.epoch();
            match self.write(m) {
                Err((EAGAIN, back)) => {
                    m = back;
                    if self.inner.exec.inner.workers_count() == 0 {
                        self.inner.exec.run_until_idle();
                        if !self.writable() {
                            return Err((EAGAIN, m));
                        }
                        continue;
                    }
                    if self.inner.gate.epoch() == epoch {
                        self.help_run();
                    }
                    if self.spin_for(epoch, &mut backoff) {
                        continue;
                    }
                    // Registered before the check: a back-enable after it is not lost.
                    let ticket = self.inner.gate.register();
                    if !self.writable() {
                        let mut hs = self.inner.hs.lock();
                        if !(hs.closed || hs.hangup || hs.werror != 0) {
                            self.inner.wait(&mut hs, ticket, Duration::from_millis(20));
                        }
                    }
                    self.inner.gate.unregister();
                }
                r => return r,
            }
        }
    }

    /// Runs enabled service procedures on this thread, in the executive's arena, before
    /// waiting for them: LfS's stream head calls `runqueues` at the end of a system call
    /// (lfs-lis.md §3.4). With worker threads too, this thread is one more runner of the
    /// same run list (a service procedure still never runs concurrently with itself), so a
    /// reader or writer waiting on a busy worker moves the stream itself.
    fn help_run(&self) {
        let ex = &self.inner.exec.inner;
        if !ex.quirks.head_runs_queues || ex.runlist.is_idle() {
            return;
        }
        let _a = ex.arena.enter();
        crate::sched::drain(&ex.runlist);
    }

    /// Spins (the backoff's rounds) until the head's wake-up epoch moves from `epoch`:
    /// true if it moved (look again), false when the caller should park.
    fn spin_for(&self, epoch: u64, backoff: &mut Backoff) -> bool {
        while backoff.snooze() {
            if self.inner.gate.epoch() != epoch {
                return true;
            }
        }
        false
    }

    /// Whether a normal message of band 0 could be written now (`canputnext` of the head).
    pub fn writable(&self) -> bool {
        if self.check_write().is_err() {
            return false;
        }
        let _r = self.inner.plumb.read_recursive();
        // SAFETY: the head write queue, plumbing held, stream open.
        !self.is_closed() && unsafe { crate::flow::canputnext(self.head_wq()) == 1 }
    }

    /// Takes the next message from the head's read queue.
    ///
    /// # Errors
    /// The read error after `M_ERROR`. `Ok(None)` means nothing is queued (after a hangup:
    /// end of file, see [`Stream::is_hungup`]).
    pub fn read(&self) -> Result<Option<Msg>, i32> {
        if self.inner.flags.load(Ordering::Acquire) & (HF_RERR | HF_CLOSED) != 0 {
            let hs = self.inner.hs.lock();
            if hs.rerror != 0 {
                return Err(hs.rerror);
            }
            if hs.closed {
                return Ok(None);
            }
        }
        // No plumbing lock: `getq` touches the head's read queue alone (under its lock), and
        // the head's pair stays allocated until the `StreamInner` is dropped (`close` turns
        // its procedures off and flushes it; `Drop for StreamInner` frees it), so a read
        // racing `close` on another thread finds the queue allocated and, at worst, takes a
        // message `close` would have flushed. Only a back-enable walks the stream.
        let (mp, after) = crate::queue::getq_take(self.inner.head_rq());
        if !after.is_empty() {
            self.inner.backenable_from_head(after);
        }
        // SAFETY: NULL or a message now ours.
        Ok(unsafe { Msg::from_raw(mp) })
    }

    /// Like [`Stream::read`], but waits for a message, a hangup or an error. With no
    /// worker threads it runs the scheduler on this thread first and does not wait. With
    /// workers, it first runs enabled service procedures on this thread too (as
    /// [`Stream::write_wait`]), retries a little (spinning, then yielding), then sleeps until
    /// a message comes.
    ///
    /// # Errors
    /// As [`Stream::read`].
    pub fn read_wait(&self) -> Result<Option<Msg>, i32> {
        let mut backoff = Backoff::new();
        loop {
            // The epoch before looking: spinning waits for it to move (a message came) with
            // loads only, not retrying `read`'s locks, which the worker needs.
            let epoch = self.inner.gate.epoch();
            if let Some(m) = self.read()? {
                return Ok(Some(m));
            }
            if self.inner.exec.inner.workers_count() == 0 {
                self.inner.exec.run_until_idle();
                return self.read();
            }
            if self.inner.flags.load(Ordering::Acquire) & (HF_HUP | HF_CLOSED) == 0 {
                if self.inner.gate.epoch() == epoch {
                    self.help_run();
                }
                if self.spin_for(epoch, &mut backoff) {
                    continue;
                }
            }
            // Registered before the check: a message queued after it is not lost.
            let ticket = self.inner.gate.register();
            let mut hs = self.inner.hs.lock();
            let done = hs.hangup || hs.closed;
            if !done && self.inner.head_rq().first().is_null() {
                self.inner.wait(&mut hs, ticket, Duration::from_millis(50));
            }
            drop(hs);
            self.inner.gate.unregister();
            if done {
                return Ok(None);
            }
        }
    }

    /// Whether the stream is hung up (`M_HANGUP` seen).
    pub fn is_hungup(&self) -> bool {
        self.inner.hs.lock().hangup
    }

    /// The read and write errors set by `M_ERROR` (0: none).
    pub fn errors(&self) -> (i32, i32) {
        let hs = self.inner.hs.lock();
        (hs.rerror, hs.werror)
    }

    /// `I_FLUSH`: flushes the head's read queue if `FLUSHR`, and sends `M_FLUSH` down.
    ///
    /// # Errors
    /// `EINVAL` for a flag without `FLUSHR`/`FLUSHW`; `ENOMEM`; `ENXIO` after a hangup.
    pub fn flush(&self, flag: u8) -> Result<(), i32> {
        self.flush_msg(flag & FLUSHRW, None)
    }

    /// `I_FLUSHBAND`: as [`Stream::flush`] for one band.
    ///
    /// # Errors
    /// As [`Stream::flush`].
    pub fn flushband(&self, band: u8, flag: u8) -> Result<(), i32> {
        self.flush_msg(flag & FLUSHRW, Some(band))
    }

    fn flush_msg(&self, flag: u8, band: Option<u8>) -> Result<(), i32> {
        if flag == 0 {
            return Err(EINVAL);
        }
        self.check_write()?;
        let _r = self.inner.plumb.read_recursive();
        if self.is_closed() {
            return Err(EINVAL);
        }
        if flag & FLUSHR != 0 {
            // SAFETY: the head read queue.
            unsafe { flush_head(self.head(), band) };
        }
        let mut m = Msg::alloc(2, crate::alloc::BPRI_HI).ok_or(ENOMEM)?;
        match band {
            Some(b) => m.extend_from_slice(&[flag | FLUSHBAND, b]),
            None => m.extend_from_slice(&[flag]),
        }
        .map_err(|_| ENOMEM)?;
        m.set_type(M_FLUSH).map_err(|_| ENOMEM)?;
        // SAFETY: the head write queue, plumbing held.
        unsafe { putnext(self.head_wq(), m.into_raw()) };
        Ok(())
    }

    /// Sends an `M_IOCTL` down the stream and waits for the answer (`I_STR`).
    ///
    /// # Errors
    /// The `M_IOCNAK`'s error (`EINVAL` if it gave none); `ETIME` if no answer came (with
    /// no workers: after running the scheduler until idle; with workers: after the
    /// personality's `ioctime`); `ENXIO` after a hangup; `ENOMEM`.
    pub fn ioctl(&self, cmd: i32, data: Option<Msg>) -> Result<IocReply, i32> {
        self.check_write()?;
        let id = {
            let mut hs = self.inner.hs.lock();
            if hs.ioc_wait.is_some() {
                return Err(EAGAIN);
            }
            hs.next_ioc = hs.next_ioc.wrapping_add(1);
            hs.ioc_wait = Some(hs.next_ioc);
            hs.next_ioc
        };
        let reply = self.ioctl_wait(cmd, id, data);
        let mut hs = self.inner.hs.lock();
        hs.ioc_wait = None;
        let stray = std::mem::replace(&mut hs.ioc_reply, null_mut());
        drop(hs);
        // SAFETY: an answer that arrived after we stopped waiting: ours to free.
        unsafe { freemsg(stray) };
        reply
    }

    fn ioctl_wait(&self, cmd: i32, id: u32, data: Option<Msg>) -> Result<IocReply, i32> {
        let mut m = Msg::alloc(size_of::<Iocblk>(), crate::alloc::BPRI_HI).ok_or(ENOMEM)?;
        m.extend_from_slice(&[0; size_of::<Iocblk>()]).map_err(|_| ENOMEM)?;
        let ioc = Iocblk {
            ioc_cmd: cmd,
            ioc_id: id,
            ioc_count: data.as_ref().map_or(0, |d| d.msgsize()),
            ..Iocblk::default()
        };
        ioc.write(&mut m).map_err(|_| ENOMEM)?;
        m.set_type(M_IOCTL).map_err(|_| ENOMEM)?;
        if let Some(d) = data {
            m.link(d);
        }
        {
            let _r = self.inner.plumb.read_recursive();
            if self.is_closed() {
                return Err(EINVAL);
            }
            // SAFETY: the head write queue, plumbing held.
            unsafe { putnext(self.head_wq(), m.into_raw()) };
        }
        let workers = self.inner.exec.inner.workers_count();
        if workers == 0 {
            self.inner.exec.run_until_idle();
        }
        let deadline = std::time::Instant::now() + Duration::from_millis(self.inner.exec.inner.quirks.ioctime_ms);
        let mut hs = self.inner.hs.lock();
        while hs.ioc_reply.is_null() && workers > 0 && !hs.hangup {
            let now = std::time::Instant::now();
            if now >= deadline {
                break;
            }
            // The answer is set under `hs` and notified: no wake-up gate needed.
            self.inner.cv.wait_for(&mut hs, (deadline - now).min(Duration::from_millis(50)));
        }
        let mp = std::mem::replace(&mut hs.ioc_reply, null_mut());
        drop(hs);
        // SAFETY: the answer is ours now.
        let Some(mut reply) = (unsafe { Msg::from_raw(mp) }) else {
            return Err(ETIME);
        };
        let ioc = Iocblk::read(&reply).ok_or(EIO)?;
        if reply.msg_type() == M_IOCNAK {
            return Err(if ioc.ioc_error == 0 { EINVAL } else { ioc.ioc_error });
        }
        Ok(IocReply { rval: ioc.ioc_rval, data: reply.unlink() })
    }

    /// Closes the stream: pops every module (calling its close), closes the driver, frees
    /// every queue and every message still on them, except the stream head's queue pair,
    /// which it turns off and empties: that pair's memory returns to the arena when the
    /// `Stream` is dropped (a [`read`](Stream::read) racing `close` on another thread may
    /// still be using it). Idempotent.
    pub fn close(&self) {
        if in_interrupt() {
            env::current().misuse(StreamsError::SleepInInterrupt { call: "close" });
            return;
        }
        let Some(_w) = self.inner.plumb_write("close") else { return };
        {
            let mut hs = self.inner.hs.lock();
            if hs.closed {
                return;
            }
            hs.closed = true;
            self.inner.sync_flags(&hs);
            self.inner.cv.notify_all();
        }
        loop {
            let top = self.inner.modules.lock().pop();
            let Some(rq) = top else { break };
            // SAFETY: plumbing held for writing.
            unsafe { self.remove_module(rq) };
        }
        let drv = self.inner.drv.load(Ordering::Acquire);
        // SAFETY: the driver pair is live; plumbing held for writing.
        unsafe { call_close(drv) };
        // SAFETY: as above.
        unsafe { qprocsoff(drv) };
        let head = self.head();
        // SAFETY: the head pair is live.
        unsafe { qprocsoff(head) };
        // SAFETY: procedures off, nothing refers to the pair any more.
        unsafe { freeq(drv) };
        // The head pair stays allocated until the `StreamInner` goes (`Drop for
        // StreamInner`), for `Stream::read`, which takes no plumbing lock; here it is cut
        // off from the freed driver (so no back-enable walks into it) and emptied.
        let hr = self.inner.head_rq();
        hr.other().q_next.store(null_mut(), Ordering::Release);
        for side in [head, hr.other_raw()] {
            // SAFETY: a queue of the head pair, allocated; its procedures are off.
            unsafe { crate::queue::flush_where("close", side, |_| true) };
        }
        let stray = std::mem::replace(&mut self.inner.hs.lock().ioc_reply, null_mut());
        // SAFETY: a pending answer is ours to free.
        unsafe { freemsg(stray) };
        tracing::debug!("stream closed");
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        self.close();
    }
}

impl Drop for StreamInner {
    /// Frees the head's queue pair, which `close` (or a failed `open`) left allocated for
    /// readers racing it. A stream that was never closed (`close` refused in interrupt
    /// context) keeps it: its driver and modules may still refer to it.
    fn drop(&mut self) {
        if self.head.load(Ordering::Acquire).is_null() || !self.hs.lock().closed {
            return;
        }
        // SAFETY: the head pair, allocated by `open` (not checked: this may run outside the
        // arena that registered it); closed, so its procedures are off and no other pair
        // refers to it (the driver and the modules are freed); `&mut self`: no `Stream`
        // method runs on it any more.
        unsafe { crate::queue::free_pair(self.head_rq().pair()) };
    }
}

/// Builds a message of `t` holding `bytes` (tests and examples).
///
/// # Errors
/// `ENOMEM`.
pub fn msg_of(t: MsgType, bytes: &[u8]) -> Result<Msg, i32> {
    let mut m = Msg::alloc(bytes.len(), crate::alloc::BPRI_MED).ok_or(ENOMEM)?;
    m.extend_from_slice(bytes).map_err(|_| ENOMEM)?;
    if t != M_DATA {
        m.set_type(t).map_err(|_| ENOMEM)?;
    }
    Ok(m)
}
