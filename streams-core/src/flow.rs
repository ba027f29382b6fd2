//! Flow control: `canput`, `bcanput`, `canputnext`, `bcanputnext`, back-enabling, and the
//! queue-layer quirks table ([`QueueQuirks`]).
//!
//! A queue is full (`QFULL`, or `QB_FULL` for a band) when its count rises above its high
//! water mark, and stays full until the count falls below the low water mark or to zero
//! (LfS hysteresis). A writer that finds it full (`canput` returns 0) sets `QWANTW`
//! (`QB_WANTW`); when the queue drains, the nearest queue *upstream* of it that has a
//! service procedure is enabled (back-enabling), so a service procedure that stopped on
//! `canputnext` runs again. The "next" tests look at the nearest queue at or after
//! `q->q_next` with a service procedure (LfS `q_nfsrv`), found by walking `q_next` (streams
//! are short; nothing to keep up to date when modules are pushed and popped).

use crate::env;
use crate::error::StreamsError;
use crate::queue::{AfterRemove, QB_BACK, QB_FULL, QB_WANTW, QBACK, QFULL, QNOENB, QWANTR, QWANTW, Queue};
use crate::sync::Ordering;
use std::ptr::null_mut;

/// When a queue or band is full.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FullAt {
    /// `count > hiwat` (LfS).
    AboveHiwat,
    /// `count >= hiwat` (illumos).
    AtHiwat,
}

/// When `QFULL` is cleared again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FullClear {
    /// `count < lowat || count == 0` (LfS: "to allow sufficient hysteresis").
    BelowLowat,
    /// `count < hiwat` (illumos, and "some implementations" per the LfS comment).
    BelowHiwat,
}

/// Which rule `putq` uses to enable a queue for a normal (not high-priority) message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PutqEnable {
    /// LfS: band 0 when the queue was empty and `QWANTR` is set; a banded message when it
    /// lands at the head; never with `QNOENB`.
    Lfs,
    /// illumos: when `QNOENB` is clear and (`QWANTR` or band > 0).
    Illumos,
}

/// The queue-layer differences between personalities, as data (DESIGN.md "quirks as data").
///
/// Read by the queue functions of every stream of an executive ([`Streams`](crate::Streams)).
/// Each field's doc names its source.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueueQuirks {
    /// Stream head read-side high water mark: LfS `STRHIGH` 5120 ("UnixWare/Solaris"); OSF
    /// and HP-UX `SHEADHIWAT` 65536 (lfs-lis.md §2.1).
    pub strhigh: usize,
    /// Stream head low water mark: LfS `STRLOW` 1024; OSF/HP-UX `SHEADLOWAT` 8192.
    pub strlow: usize,
    /// Maximum modules pushed on a stream: LfS `nstrpush` sysctl default 64.
    pub nstrpush: usize,
    /// When a queue is full (lfs-lis.md §3.3; illumos.md §4 "Accounting").
    pub full_at: FullAt,
    /// When `QFULL` clears (lfs-lis.md §3.2 `getq`).
    pub full_clear: FullClear,
    /// The `putq` enabling rule for normal messages (lfs-lis.md §3.2; illumos.md §4).
    pub putq_enable: PutqEnable,
    /// `putq` forces the band of a high-priority message to 0: LfS "SVR 4 SPG says to zero
    /// b_band"; illumos the same.
    pub hipri_band_zero: bool,
    /// `flushq` clears `QWANTR` on an emptied queue: LiS does, LfS does not (lfs-lis.md
    /// §3.2, §4.3).
    pub flushq_clears_wantr: bool,
    /// `flushband(q, 0, ..)` also flushes high-priority messages: LfS, IRIX, OSF/1, Solaris,
    /// SUPER-UX yes; AIX, UXP/V, UnixWare, LiS no (lfs-lis.md §4.3).
    pub flushband0_hipri: bool,
    /// How long the stream head waits for an `M_IOCTL` answer, in milliseconds: LfS
    /// `ioctime` sysctl 15 s (lfs-lis.md §2.1).
    pub ioctime_ms: u64,
    /// Whether the stream head's waiting calls (`read_wait`, `write_wait`) run enabled
    /// service procedures on the calling thread before they
    /// wait, or leave them to the executive's worker threads. LfS: true, the stream head
    /// calls `runqueues()` at the end of a system call ("simulate STREAMS context",
    /// lfs-lis.md §3.4), so a reader that finds its queue empty runs the producer's service
    /// procedure itself. illumos: false, service procedures run on STREAMS service threads
    /// (`streams_taskq` dispatches and background threads, illumos.md §4 "qenable /
    /// scheduler"). Without workers the calls run them either way (nothing else would).
    pub head_runs_queues: bool,
}

impl QueueQuirks {
    /// Linux Fast-STREAMS, the native personality.
    pub const LFS: QueueQuirks = QueueQuirks {
        strhigh: 5120,
        strlow: 1024,
        nstrpush: 64,
        full_at: FullAt::AboveHiwat,
        full_clear: FullClear::BelowLowat,
        putq_enable: PutqEnable::Lfs,
        hipri_band_zero: true,
        flushq_clears_wantr: false,
        flushband0_hipri: true,
        ioctime_ms: 15_000,
        head_runs_queues: true,
    };

    #[inline]
    pub(crate) fn is_full(&self, count: usize, hiwat: usize) -> bool {
        match self.full_at {
            FullAt::AboveHiwat => count > hiwat,
            FullAt::AtHiwat => count >= hiwat,
        }
    }

    #[inline]
    pub(crate) fn below_low(&self, count: usize, lowat: usize, hiwat: usize) -> bool {
        match self.full_clear {
            FullClear::BelowLowat => count < lowat || count == 0,
            FullClear::BelowHiwat => count < hiwat || count == 0,
        }
    }

    /// Whether `putq` enables the queue for a message of `class` (256 = high priority).
    #[inline]
    pub(crate) fn putq_enables(&self, class: u16, was_empty: bool, at_head: bool, flag: u32) -> bool {
        if class == 256 {
            return true;
        }
        if flag & QNOENB != 0 {
            return false;
        }
        match self.putq_enable {
            PutqEnable::Lfs => {
                if class == 0 {
                    was_empty && flag & QWANTR != 0
                } else {
                    at_head
                }
            }
            PutqEnable::Illumos => flag & QWANTR != 0 || class > 0,
        }
    }
}

impl Default for QueueQuirks {
    fn default() -> Self {
        QueueQuirks::LFS
    }
}

/// The queue upstream of `q` (SVR4 `backq`): the queue whose `q_next` is `q`, or NULL.
pub(crate) fn backq(q: &Queue) -> *mut Queue {
    let up = q.other().next();
    if up.is_null() {
        return null_mut();
    }
    // SAFETY: a live queue of the same stream (q_next is stable under the plumbing lock).
    unsafe { (*up).other_raw() }
}

/// The nearest queue at or after `q` with a service procedure, or the last queue.
pub(crate) fn nfsrv(q: *mut Queue) -> *mut Queue {
    let mut p = q;
    loop {
        // SAFETY: `p` is a live queue of the caller's stream.
        let qr = unsafe { &*p };
        if qr.has_srvp() {
            return p;
        }
        let n = qr.next();
        if n.is_null() {
            return p;
        }
        p = n;
    }
}

/// Back-enables after a removal dropped bands (or band 0) below their low water mark.
pub(crate) fn after_remove(q: &Queue, after: AfterRemove) {
    for band in after.backenable {
        backenable(q, band);
    }
}

/// Enables the nearest queue upstream of `q` that has a service procedure (LfS
/// `qbackenable`; illumos `backenable`). `noenable` does not prevent it.
pub(crate) fn backenable(q: &Queue, band: u8) {
    let mut p = backq(q);
    while !p.is_null() {
        // SAFETY: a live queue of the stream.
        let pr = unsafe { &*p };
        if pr.has_srvp() {
            if band == 0 {
                crate::queue::set_flag(pr, QBACK, true);
            } else if let Some(b) = pr.st.lock().band_mut(band) {
                b.qb_flag |= QB_BACK;
            }
            tracing::debug!(from = q.name(), to = pr.name(), band, "flow control: back-enable");
            crate::sched::qenable_raw(pr);
            return;
        }
        p = backq(pr);
    }
}

/// Tests a queue (not the next one) for room, marking it wanted if full.
#[inline]
fn test_room(q: &Queue, band: u8) -> bool {
    // Band 0 and not full (the common case): no lock (see `Queue::full_hint`).
    if band == 0 && !q.full_hint.load(Ordering::Relaxed) {
        return true;
    }
    test_room_locked(q, band)
}

/// [`test_room`] under the queue's lock.
fn test_room_locked(q: &Queue, band: u8) -> bool {
    let mut st = q.st.lock();
    // Both are written under the lock, which we hold.
    debug_assert_eq!(st.flag & QFULL != 0, q.full_hint.load(Ordering::Relaxed), "internal: QFULL hint");
    if band == 0 {
        if st.flag & QFULL != 0 {
            st.flag |= QWANTW;
            drop(st);
            tracing::debug!(queue = q.name(), "flow control: queue full, writer blocked");
            return false;
        }
        return true;
    }
    let blocked = st.blocked;
    match st.band_mut(band) {
        Some(b) if blocked > 0 && b.qb_flag & QB_FULL != 0 => {
            b.qb_flag |= QB_WANTW;
            drop(st);
            tracing::debug!(queue = q.name(), band, "flow control: band full, writer blocked");
            false
        }
        // A band that does not exist counts as empty (LfS, AIX).
        _ => true,
    }
}

/// Tests whether a queue can take a message of band `pri`.
///
/// # Arguments
/// - `q`: the queue; the test applies to the nearest queue at or after it that has a
///   service procedure (or the last queue).
/// - `pri`: the band; 0 for normal messages.
///
/// # Return
/// 1 if there is room; 0 if the queue (band 0) or band is full, in which case `QWANTW`
/// (`QB_WANTW`) is set so the writer is back-enabled when it drains. A band that does not
/// exist yet counts as empty (1).
///
/// # Context
/// Any.
///
/// # Compatibility
/// LfS `bcanput(9)` (lfs-lis.md §3.3), illumos `bcanput(9F)` (illumos.md §4). LiS's macros
/// return 0 on internal error without setting `QWANTW`.
///
/// # Safety
/// `q` is a live queue of a stream whose plumbing is stable (inside a put or service
/// procedure, or from the stream head).
#[track_caller]
pub unsafe fn bcanput(q: *mut Queue, pri: u8) -> i32 {
    if q.is_null() {
        env::current().misuse(StreamsError::NullQueue { call: "bcanput" });
        return 0;
    }
    if crate::queue::check_q("bcanput", q).is_none() {
        return 0;
    }
    let target = nfsrv(q);
    // SAFETY: a live queue of the stream.
    i32::from(test_room(unsafe { &*target }, pri))
}

/// [`bcanput`] for band 0.
///
/// # Arguments
/// - `q`: the queue.
///
/// # Return
/// As [`bcanput`] with band 0.
///
/// # Context
/// Any.
///
/// # Compatibility
/// SVR4 `canput(9)`; HP-UX allows it outside STREAMS, Solaris does not (lfs-lis.md §4.3).
///
/// # Safety
/// As [`bcanput`].
#[track_caller]
pub unsafe fn canput(q: *mut Queue) -> i32 {
    // SAFETY: forwarded.
    unsafe { bcanput(q, 0) }
}

/// Tests whether the next queue (with a service procedure) can take a message of band `pri`.
///
/// # Arguments
/// - `q`: the caller's queue.
/// - `pri`: the band.
///
/// # Return
/// As [`bcanput`] applied to the nearest queue after `q` with a service procedure; 0 if
/// `q` has no next queue or that queue's procedures are off.
///
/// # Context
/// Any.
///
/// # Compatibility
/// LfS `bcanputnext(9)` tests `q->q_nfsrv` and returns 0 when it is NULL (lfs-lis.md §3.3);
/// LiS's macro tests `q->q_next` only.
///
/// # Safety
/// As [`bcanput`].
#[track_caller]
pub unsafe fn bcanputnext(q: *mut Queue, pri: u8) -> i32 {
    let Some(qr) = crate::queue::check_q("bcanputnext", q) else { return 0 };
    bcanputnext_live(qr, pri)
}

/// The flow-control test on `target`, the nearest queue with a service procedure (or the
/// last queue) found by [`nfsrv`] or the stream head's cache: false for NULL (no next
/// queue) or a queue whose procedures are off.
pub(crate) fn can_put_to(target: *mut Queue, pri: u8) -> bool {
    // SAFETY: NULL or a live queue of the caller's stream (plumbing held).
    let Some(t) = (unsafe { target.as_ref() }) else { return false };
    !t.procs_off() && test_room(t, pri)
}

/// `bcanputnext` from a queue known to be live (the stream head's): no queue check.
pub(crate) fn bcanputnext_live(qr: &Queue, pri: u8) -> i32 {
    let next = qr.next();
    if next.is_null() {
        return 0;
    }
    let target = nfsrv(next);
    // SAFETY: a live queue of the stream.
    let t = unsafe { &*target };
    if t.procs_off() {
        return 0;
    }
    i32::from(test_room(t, pri))
}

/// [`bcanputnext`] for band 0.
///
/// # Arguments
/// - `q`: the caller's queue.
///
/// # Return
/// As [`bcanputnext`] with band 0.
///
/// # Context
/// Any.
///
/// # Compatibility
/// LfS `canputnext(9)`, a function (not a macro) as in Solaris.
///
/// # Safety
/// As [`bcanput`].
#[track_caller]
pub unsafe fn canputnext(q: *mut Queue) -> i32 {
    // SAFETY: forwarded.
    unsafe { bcanputnext(q, 0) }
}
