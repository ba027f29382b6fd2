//! Queues (`queue_t`), queue pairs, priority bands (`qband_t`) and the queue operations:
//! `allocq`, `freeq`, `RD`, `WR`, `OTHERQ`, `putq`, `getq`, `putbq`, `insq`, `appq`, `rmvq`,
//! `flushq`, `flushband`, `qsize`, `strqget`, `strqset`.
//!
//! # Layout and locking
//!
//! A queue pair (`QPair`) is one `kmem_zalloc` buffer of the arena that was current at
//! [`allocq`]: the read queue, the write queue right after it (so `WR(q)` is `q + 1` and
//! `RD(q)` is `q - 1`, as in LfS), and the pair's shared part (the executive, the stream, the
//! perimeter, the module instance). Each queue's message list, counts, flags, water marks and
//! bands are behind the queue's own lock (LfS `q_lock`); the lock is held only inside the
//! queue operations, never while a put or service procedure runs. `q_next` and `q_qinfo` are
//! atomics, changed only while the stream's plumbing lock is held for writing (I_PUSH, I_POP,
//! open, close). `QENAB` and "service running" live in the scheduler's atomic word
//! (`sched.rs`).
//!
//! # Messages on a queue
//!
//! A queue is an intrusive doubly linked list through `b_next`/`b_prev`: high-priority
//! messages first (band forced to 0), then bands from 255 down to 1, then band 0, FIFO within
//! each class. Each band keeps its first and last message, so `putq`, `getq`, `putbq`,
//! `insq` and `rmvq` are O(1) (or O(bands) to find an insertion point for a new band).
//! A message on a queue carries the private mark [`MBLK_QUEUED`] in `b_pad1`, so `freeb` of
//! the sole message of a queue (whose `b_next` and `b_prev` are both NULL) is caught too,
//! and a second `putq` of a queued message is refused.
//!
//! # Counting
//!
//! `q_count` counts `msgsize` (every block, every type: LfS) of high-priority and band-0
//! messages; a band's `qb_count` counts its own messages. Water-mark rules are in
//! `flow.rs` and the personality's [`QueueQuirks`](crate::QueueQuirks).

use crate::dblk::{MsgType, datamsg};
use crate::env;
use crate::error::StreamsError;
use crate::flow::QueueQuirks;
use crate::mblk::Mblk;
use crate::module::{ModuleInfo, PutProc, QInit};
use crate::perim::Perimeter;
use crate::sched::{ExecInner, SvcState};
use crate::sync::{AtomicBool, AtomicPtr, Mutex, Ordering, SpinLock};
use ddi_kmem::{Arena, KM_NOSLEEP, KM_SLEEP, current_arena, in_interrupt};
use std::collections::HashSet;
use std::ffi::c_void;
use std::ptr::{self, null_mut};
use std::sync::OnceLock;

/// `b_pad1` bit (private to this crate): the message is on a queue. Set by every operation
/// that links a message onto a queue, cleared by every one that unlinks it; `freeb` and
/// `putq` refuse a marked message.
pub const MBLK_QUEUED: u8 = 0x01;

/// `q_flag`: the queue is enabled (its service procedure is scheduled or will rerun).
pub const QENAB: u32 = 1 << 0;
/// `q_flag`: a reader found the queue empty (`getq` returned NULL); set on a new queue.
pub const QWANTR: u32 = 1 << 1;
/// `q_flag`: a writer found the queue full (`canput` returned 0).
pub const QWANTW: u32 = 1 << 2;
/// `q_flag`: the queue is full (band-0 and high-priority count above `q_hiwat`).
pub const QFULL: u32 = 1 << 3;
/// `q_flag`: this is the read queue of its pair.
pub const QREADR: u32 = 1 << 4;
/// `q_flag`: the queue is allocated.
pub const QUSE: u32 = 1 << 5;
/// `q_flag`: `putq` does not enable the queue (`noenable`).
pub const QNOENB: u32 = 1 << 6;
/// `q_flag`: the queue was back-enabled by flow control.
pub const QBACK: u32 = 1 << 8;
/// `q_flag`: put and service procedures are off (`qprocsoff`; LfS `QPROCS`).
pub const QPROCS: u32 = 1 << 17;
/// `q_flag`: the queue has a service procedure (LfS `QSRVP`).
pub const QSRVP: u32 = 1 << 19;
/// `q_flag`: the queue belongs to a stream head (LfS `QSHEAD`).
pub const QSHEAD: u32 = 1 << 20;

/// `qb_flag`: the band is full.
pub const QB_FULL: u32 = 1;
/// `qb_flag`: a writer found the band full.
pub const QB_WANTW: u32 = 2;
/// `qb_flag`: the band was back-enabled.
pub const QB_BACK: u32 = 4;

/// `flushq` flag: flush only data messages (`datamsg`).
pub const FLUSHDATA: i32 = 0;
/// `flushq` flag: flush every message.
pub const FLUSHALL: i32 = 1;

/// The number of priority bands (1..=255 plus band 0).
pub const NBAND: usize = 256;

/// `qband_t`: one priority band of a queue, created on demand by the first message of that
/// band (and of every band below it, as LfS allocates `q_nband` bands).
#[derive(Clone, Copy, Debug)]
pub struct QBand {
    /// First message of the band.
    pub qb_first: *mut Mblk,
    /// Last message of the band.
    pub qb_last: *mut Mblk,
    /// Bytes (`msgsize`) of the band's messages.
    pub qb_count: usize,
    /// High water mark (inherited from `q_hiwat` when the band is created).
    pub qb_hiwat: usize,
    /// Low water mark (inherited from `q_lowat`).
    pub qb_lowat: usize,
    /// `QB_*` flags.
    pub qb_flag: u32,
    /// Messages in the band.
    pub qb_msgs: usize,
}

/// The state behind a queue's lock.
pub(crate) struct QState {
    pub(crate) first: *mut Mblk,
    pub(crate) last: *mut Mblk,
    /// The last high-priority message (they are all at the front), or NULL.
    pclast: *mut Mblk,
    pub(crate) count: usize,
    pub(crate) msgs: usize,
    pub(crate) flag: u32,
    pub(crate) hiwat: usize,
    pub(crate) lowat: usize,
    pub(crate) minpsz: isize,
    pub(crate) maxpsz: isize,
    /// Bands 1..=nband (index band - 1), a kmem array of `nband` entries.
    bands: *mut QBand,
    pub(crate) nband: usize,
    /// Bands with `QB_FULL` set (LfS `q_blocked`).
    pub(crate) blocked: usize,
}

// SAFETY: the raw pointers are the queue's messages and band array, reached only under the
// queue's lock.
unsafe impl Send for QState {}

/// `queue_t`: one queue of a pair.
///
/// The C fields map to methods (the state is behind the queue's lock): `q->q_count` is
/// [`Queue::count`], `q->q_flag` [`Queue::flag`], `q->q_first` [`Queue::first`],
/// `q->q_next` [`Queue::next`], `q->q_ptr` [`Queue::ptr`] / [`Queue::set_ptr`],
/// `q->q_hiwat` [`Queue::hiwat`]; [`strqget`] and [`strqset`] give the DDI way. A queue is
/// created only by [`allocq`] (or a stream) and never moves.
#[repr(C)]
pub struct Queue {
    pub(crate) q_qinfo: AtomicPtr<QInit>,
    pub(crate) q_next: AtomicPtr<Queue>,
    pub(crate) q_ptr: AtomicPtr<c_void>,
    pub(crate) svc: SvcState,
    /// `QFULL`, mirrored: written under the queue's lock whenever `QFULL` changes (only
    /// `count_add` and `count_sub` change it), read without the lock by the band-0
    /// flow-control test, which takes the lock only when it finds the queue full (to set
    /// `QWANTW` under it, after checking `QFULL` itself). Relaxed: the hint guards no other
    /// data; a stale "not full" lets a writer through as if its test had come just before
    /// the queue filled, which a locked test could also have done (`canput` is a snapshot);
    /// a stale "full" is corrected under the lock.
    pub(crate) full_hint: AtomicBool,
    /// The put procedure `putnext` may call in place (a `PutProc` as a pointer), or NULL:
    /// set only while the queue's procedures are on, it has no perimeter and its qinit has a
    /// put procedure (`refresh_fast_put`, after any of these changes); NULL sends `putnext`
    /// the full way, which tests them all.
    fast_put: AtomicPtr<()>,
    readr: bool,
    /// The pair this queue is in, with the provenance of the whole allocation (so that
    /// `OTHERQ` and the shared part are reached through it, never by offsetting a reference
    /// to one queue).
    pair: *mut QPair,
    pub(crate) st: SpinLock<QState>,
}

// SAFETY: a queue is shared between threads by design: its mutable state is behind its lock
// and atomics; `pair` is written once before the queue is shared.
unsafe impl Send for Queue {}
// SAFETY: as above.
unsafe impl Sync for Queue {}

/// What a queue pair shares: kept after the two queues in the same buffer.
pub(crate) struct PairShared {
    pub(crate) exec: *const ExecInner,
    pub(crate) arena: Arena,
    /// The stream the pair is part of, or NULL for a pair from a bare `allocq`.
    pub(crate) stream: *const crate::stream::StreamInner,
    /// This pair's own perimeter (used with `SyncLevel::QueuePair`).
    pub(crate) own_perim: Perimeter,
    /// The perimeter taken around put and service procedures, or NULL (MP-safe).
    pub(crate) perim: AtomicPtr<Perimeter>,
    /// The Rust module instance (module.rs), or NULL.
    pub(crate) inst: AtomicPtr<c_void>,
    /// Whether a checking arena registered the pair (see `live_queues`).
    checked: bool,
}

/// A queue pair: read queue, write queue, shared part.
#[repr(C)]
pub(crate) struct QPair {
    pub(crate) rq: Queue,
    pub(crate) wq: Queue,
    pub(crate) shared: PairShared,
}

const _: () = assert!(std::mem::offset_of!(QPair, wq) == std::mem::size_of::<Queue>());

impl Queue {
    /// A queue of a pair of an executive whose queue locks are confined to the thread
    /// `owner` (0: shared; see [`SpinLock`]).
    fn new(readr: bool, owner: u64) -> Queue {
        Queue {
            q_qinfo: AtomicPtr::new(null_mut()),
            q_next: AtomicPtr::new(null_mut()),
            q_ptr: AtomicPtr::new(null_mut()),
            svc: SvcState::new(),
            full_hint: AtomicBool::new(false),
            fast_put: AtomicPtr::new(null_mut()),
            readr,
            pair: null_mut(),
            st: SpinLock::confined(
                QState {
                    first: null_mut(),
                    last: null_mut(),
                    pclast: null_mut(),
                    count: 0,
                    msgs: 0,
                    flag: QUSE | QWANTR | if readr { QREADR } else { 0 },
                    hiwat: 0,
                    lowat: 0,
                    minpsz: 0,
                    maxpsz: crate::module::INFPSZ,
                    bands: null_mut(),
                    nband: 0,
                    blocked: 0,
                },
                owner,
            ),
        }
    }

    /// Whether this is the read queue of its pair (`QREADR`).
    #[inline]
    pub fn is_read(&self) -> bool {
        self.readr
    }

    /// `q_count`: bytes of high-priority and band-0 messages.
    pub fn count(&self) -> usize {
        self.st.lock().count
    }

    /// `q_flag`, with `QENAB` from the scheduler's word.
    pub fn flag(&self) -> u32 {
        let f = self.st.lock().flag;
        f | if self.svc.is_enabled() { QENAB } else { 0 }
    }

    /// `q_first`: the first message, or NULL (a snapshot; only the queue's own procedures
    /// may use it while it is on the queue).
    pub fn first(&self) -> *mut Mblk {
        self.st.lock().first
    }

    /// `q_last`.
    pub fn last(&self) -> *mut Mblk {
        self.st.lock().last
    }

    /// `q_next`: the next queue in the stream, or NULL.
    #[inline]
    pub fn next(&self) -> *mut Queue {
        self.q_next.load(Ordering::Acquire)
    }

    /// `q_hiwat`.
    pub fn hiwat(&self) -> usize {
        self.st.lock().hiwat
    }

    /// `q_lowat`.
    pub fn lowat(&self) -> usize {
        self.st.lock().lowat
    }

    /// `q_nband`: bands created so far.
    pub fn nband(&self) -> usize {
        self.st.lock().nband
    }

    /// `q_ptr`: the module's private data (raw modules).
    pub fn ptr(&self) -> *mut c_void {
        self.q_ptr.load(Ordering::Acquire)
    }

    /// Sets `q_ptr`.
    pub fn set_ptr(&self, p: *mut c_void) {
        self.q_ptr.store(p, Ordering::Release);
    }

    /// `q_qinfo`, or NULL.
    #[inline]
    pub fn qinfo(&self) -> *const QInit {
        self.q_qinfo.load(Ordering::Acquire)
    }

    /// A band's count, flags and water marks (`None` if the band does not exist yet).
    pub fn band(&self, band: u8) -> Option<QBand> {
        let st = self.st.lock();
        st.band(band).copied()
    }

    /// The queue's pair.
    #[inline]
    pub(crate) fn pair(&self) -> *mut QPair {
        self.pair
    }

    /// This queue as a raw pointer with the pair's provenance.
    pub(crate) fn as_raw(&self) -> *mut Queue {
        // SAFETY: `pair` points to the live pair holding `self`; only a place is computed.
        if self.readr { unsafe { &raw mut (*self.pair).rq } } else { unsafe { &raw mut (*self.pair).wq } }
    }

    /// The other queue of the pair (`OTHERQ`), as a raw pointer.
    #[inline]
    pub(crate) fn other_raw(&self) -> *mut Queue {
        // SAFETY: as in `as_raw`.
        if self.readr { unsafe { &raw mut (*self.pair).wq } } else { unsafe { &raw mut (*self.pair).rq } }
    }

    /// The other queue of the pair.
    pub(crate) fn other(&self) -> &Queue {
        // SAFETY: the other queue of the live pair lives as long as this one.
        unsafe { &*self.other_raw() }
    }

    /// The pair's shared part.
    #[inline]
    pub(crate) fn shared(&self) -> &PairShared {
        // SAFETY: every Queue lives inside a QPair (allocq is the only constructor), so the
        // pair pointer is derived from the queue's own allocation and its shared part is
        // initialised and outlives `self`.
        unsafe { &(*self.pair()).shared }
    }

    /// The executive (scheduler, quirks) the queue belongs to.
    pub(crate) fn exec(&self) -> &ExecInner {
        // SAFETY: the pair holds a strong count on its executive until freeq.
        unsafe { &*self.shared().exec }
    }

    pub(crate) fn quirks(&self) -> &QueueQuirks {
        &self.exec().quirks
    }

    /// Whether the queue has a service procedure.
    pub(crate) fn has_srvp(&self) -> bool {
        let qi = self.qinfo();
        // SAFETY: q_qinfo is NULL or points to a QInit that outlives the queue (a static,
        // or an entry of the executive's registry).
        !qi.is_null() && unsafe { (*qi).qi_srvp.is_some() }
    }

    /// The module's name (for traces), or "?".
    pub(crate) fn name(&self) -> &'static str {
        let qi = self.qinfo();
        if qi.is_null() {
            return "?";
        }
        // SAFETY: as in `has_srvp`.
        unsafe { (*qi).qi_minfo.mi_idname }
    }

    /// Whether put and service procedures are off.
    #[inline]
    pub(crate) fn procs_off(&self) -> bool {
        self.svc.is_off()
    }

    /// The put procedure to call in place: procedures on, no perimeter (see `fast_put`).
    #[inline]
    pub(crate) fn fast_put(&self) -> Option<PutProc> {
        // Acquire: pairs with the release store in `refresh_fast_put` (the procedure's
        // qinit is visible; the pointer itself is a code address).
        let p = self.fast_put.load(Ordering::Acquire);
        if p.is_null() {
            return None;
        }
        // SAFETY: a non-NULL `fast_put` was stored from a `PutProc` (`refresh_fast_put`).
        Some(unsafe { std::mem::transmute::<*mut (), PutProc>(p) })
    }
}

/// Recomputes `q`'s `fast_put` after a change to its procedures-off state, perimeter or
/// qinit. Under the queue's lock, so refreshes run one at a time: the last one starts after
/// every change made before its caller's refresh, and stores the value of the final state.
pub(crate) fn refresh_fast_put(q: &Queue) {
    let _st = q.st.lock();
    let perim = q.shared().perim.load(Ordering::Acquire);
    let putp = if q.procs_off() || !perim.is_null() {
        None
    } else {
        // SAFETY: q_qinfo is NULL or a QInit that outlives the pair.
        unsafe { q.qinfo().as_ref() }.and_then(|qi| qi.qi_putp)
    };
    // Release: see `Queue::fast_put`.
    q.fast_put.store(putp.map_or(null_mut(), |f| f as *mut ()), Ordering::Release);
}

impl QState {
    fn band(&self, band: u8) -> Option<&QBand> {
        if band == 0 || usize::from(band) > self.nband {
            return None;
        }
        let p = self.bands.wrapping_add(usize::from(band) - 1);
        // SAFETY: bands 1..=nband are initialised entries of the band array.
        Some(unsafe { &*p })
    }

    pub(crate) fn band_mut(&mut self, band: u8) -> Option<&mut QBand> {
        if band == 0 || usize::from(band) > self.nband {
            return None;
        }
        let p = self.bands.wrapping_add(usize::from(band) - 1);
        // SAFETY: as in `band`; `&mut self` gives exclusive access.
        Some(unsafe { &mut *p })
    }

    /// Creates bands up to `band` (LfS allocates every band up to the highest used).
    fn ensure_band(&mut self, arena: &Arena, band: u8) -> bool {
        let want = usize::from(band);
        if want <= self.nband {
            return true;
        }
        let size = want * size_of::<QBand>();
        let p = arena.zalloc(size, KM_NOSLEEP).cast::<QBand>();
        if p.is_null() {
            tracing::debug!(band, "putq: band allocation failed");
            return false;
        }
        for i in 0..want {
            let b = if i < self.nband {
                let old = self.bands.wrapping_add(i);
                // SAFETY: i < nband: an initialised entry of the old array.
                unsafe { old.read() }
            } else {
                QBand {
                    qb_first: null_mut(),
                    qb_last: null_mut(),
                    qb_count: 0,
                    qb_hiwat: self.hiwat,
                    qb_lowat: self.lowat,
                    qb_flag: 0,
                    qb_msgs: 0,
                }
            };
            let slot = p.wrapping_add(i);
            // SAFETY: the new array holds `want` entries, aligned for QBand (kmem buffers
            // are aligned to at least 8 bytes, checked in `allocq`).
            unsafe { slot.write(b) };
        }
        self.free_bands(arena);
        self.bands = p;
        self.nband = want;
        true
    }

    fn free_bands(&mut self, arena: &Arena) {
        if self.nband > 0 {
            // SAFETY: the band array came from this arena's zalloc with this size.
            unsafe { arena.free(self.bands.cast(), self.nband * size_of::<QBand>()) };
        }
        self.bands = null_mut();
        self.nband = 0;
    }
}

/// The class of a message for ordering: 256 for high priority, else its band.
#[inline]
fn class_of(mp: *mut Mblk) -> u16 {
    // SAFETY: callers pass allocated message blocks.
    let m = unsafe { &*mp };
    if m.msg_type().is_high_priority() { 256 } else { u16::from(m.b_band) }
}

#[inline]
fn is_hipri(mp: *mut Mblk) -> bool {
    class_of(mp) == 256
}

/// `msgsize` without the live check (the caller checked the first block).
fn size_of_msg(mp: *mut Mblk) -> usize {
    let mut n = 0;
    let mut b = mp;
    while !b.is_null() {
        // SAFETY: the blocks of an allocated message.
        let m = unsafe { &*b };
        n += m.len();
        b = m.b_cont;
    }
    n
}

/// Links `mp` into the list between `prev` and `next` (either may be NULL).
///
/// # Safety
/// `prev` and `next` are adjacent on the queue whose state is `st`, or NULL at an end.
unsafe fn link_between(st: &mut QState, prev: *mut Mblk, next: *mut Mblk, mp: *mut Mblk) {
    // SAFETY: `mp` is an allocated block the caller owns.
    let m = unsafe { &mut *mp };
    m.b_prev = prev;
    m.b_next = next;
    m.b_pad1 |= MBLK_QUEUED;
    if prev.is_null() {
        st.first = mp;
    } else {
        // SAFETY: `prev` is on this queue.
        unsafe { (*prev).b_next = mp };
    }
    if next.is_null() {
        st.last = mp;
    } else {
        // SAFETY: `next` is on this queue.
        unsafe { (*next).b_prev = mp };
    }
}

/// Accounts a message just linked; returns whether a band or the queue became full.
fn account_add(q: &Queue, st: &mut QState, mp: *mut Mblk, size: usize) {
    let quirks = q.quirks();
    let class = class_of(mp);
    st.msgs += 1;
    let hipri = class == 256;
    if hipri || class == 0 {
        if hipri && (st.pclast.is_null() || st.pclast == prev_of(mp)) {
            st.pclast = mp;
        }
        count_add(q, st, size, quirks);
    } else {
        let b = st.band_mut(class as u8).expect("internal: band exists");
        if b.qb_first.is_null() || b.qb_first == next_of(mp) {
            b.qb_first = mp;
        }
        if b.qb_last.is_null() || b.qb_last == prev_of(mp) {
            b.qb_last = mp;
        }
        b.qb_count += size;
        b.qb_msgs += 1;
        let newly_full = quirks.is_full(b.qb_count, b.qb_hiwat) && b.qb_flag & QB_FULL == 0;
        if newly_full {
            b.qb_flag |= QB_FULL;
            st.blocked += 1;
        }
    }
}

/// Counts `size` more bytes of high-priority or band-0 messages (`st` is `q`'s locked
/// state); the queue becomes full above its high water mark. `QFULL` is set and cleared
/// here and in [`count_sub`] only, which mirror it in [`Queue::full_hint`].
#[inline(always)]
fn count_add(q: &Queue, st: &mut QState, size: usize, quirks: &QueueQuirks) {
    st.count += size;
    if quirks.is_full(st.count, st.hiwat) && st.flag & QFULL == 0 {
        st.flag |= QFULL;
        // Relaxed: see `full_hint`.
        q.full_hint.store(true, Ordering::Relaxed);
    }
}

/// Counts `size` fewer bytes of high-priority or band-0 messages (`st` is `q`'s locked
/// state); below the low water mark the queue is no longer full, and a waiting writer is
/// back-enabled.
#[inline(always)]
fn count_sub(q: &Queue, st: &mut QState, size: usize, quirks: &QueueQuirks, after: &mut AfterRemove) {
    st.count = st.count.saturating_sub(size);
    if quirks.below_low(st.count, st.lowat, st.hiwat) {
        if st.flag & QFULL != 0 {
            st.flag &= !QFULL;
            // Relaxed: see `full_hint`.
            q.full_hint.store(false, Ordering::Relaxed);
        }
        if st.flag & QWANTW != 0 {
            st.flag &= !QWANTW;
            after.backenable.push(0);
        }
    }
}

/// The size of `mp` if it is a plain message: normal priority, band 0, on no queue (the
/// common case, which `putq` and `getq` handle without the band and priority work); `None`
/// for any other (including a misused one: `prepare` reports it).
#[inline(always)]
fn plain_size(mp: *mut Mblk) -> Option<usize> {
    // SAFETY: callers pass allocated message blocks.
    let m = unsafe { &*mp };
    let plain = m.b_band == 0
        && !m.msg_type().is_high_priority()
        && m.b_pad1 & MBLK_QUEUED == 0
        && m.b_next.is_null()
        && m.b_prev.is_null();
    plain.then(|| size_of_msg(mp))
}

fn prev_of(mp: *mut Mblk) -> *mut Mblk {
    // SAFETY: an allocated block.
    unsafe { (*mp).b_prev }
}

fn next_of(mp: *mut Mblk) -> *mut Mblk {
    // SAFETY: an allocated block.
    unsafe { (*mp).b_next }
}

/// What a removal asks for after the lock is dropped: back-enable band 0 and/or bands.
#[derive(Default)]
pub(crate) struct AfterRemove {
    pub(crate) backenable: Vec<u8>,
}

impl AfterRemove {
    /// Whether nothing is to be back-enabled.
    #[inline]
    pub(crate) fn is_empty(&self) -> bool {
        self.backenable.is_empty()
    }
}

/// Unlinks `mp` from the queue and updates the counts; records back-enables.
fn unlink(q: &Queue, st: &mut QState, mp: *mut Mblk, after: &mut AfterRemove) {
    let quirks = q.quirks();
    let class = class_of(mp);
    let size = size_of_msg(mp);
    let (prev, next) = (prev_of(mp), next_of(mp));
    if prev.is_null() {
        st.first = next;
    } else {
        // SAFETY: `prev` is on this queue.
        unsafe { (*prev).b_next = next };
    }
    if next.is_null() {
        st.last = prev;
    } else {
        // SAFETY: `next` is on this queue.
        unsafe { (*next).b_prev = prev };
    }
    {
        // SAFETY: `mp` is on this queue and now unlinked.
        let m = unsafe { &mut *mp };
        m.b_next = null_mut();
        m.b_prev = null_mut();
        m.b_pad1 &= !MBLK_QUEUED;
    }
    st.msgs -= 1;
    if class == 256 || class == 0 {
        if st.pclast == mp {
            st.pclast = if !prev.is_null() && is_hipri(prev) { prev } else { null_mut() };
        }
        count_sub(q, st, size, quirks, after);
    } else {
        let b = st.band_mut(class as u8).expect("internal: band exists");
        if b.qb_first == mp {
            b.qb_first = if b.qb_last == mp { null_mut() } else { next };
        }
        if b.qb_last == mp {
            b.qb_last = if b.qb_first.is_null() { null_mut() } else { prev };
        }
        b.qb_count = b.qb_count.saturating_sub(size);
        b.qb_msgs -= 1;
        let mut unblocked = false;
        if quirks.below_low(b.qb_count, b.qb_lowat, b.qb_hiwat) {
            if b.qb_flag & QB_FULL != 0 {
                b.qb_flag &= !QB_FULL;
                unblocked = true;
            }
            if b.qb_flag & QB_WANTW != 0 {
                b.qb_flag &= !QB_WANTW;
                after.backenable.push(class as u8);
            }
        }
        if unblocked {
            st.blocked -= 1;
        }
    }
}

/// Where a new message of `class` goes by `putq`: (prev, next).
fn putq_position(st: &QState, class: u16) -> (*mut Mblk, *mut Mblk) {
    let after = if class == 0 {
        st.last
    } else if class == 256 {
        st.pclast
    } else {
        // After the last message of the nearest non-empty band >= class, or after the
        // high-priority messages.
        let mut p = st.pclast;
        for b in usize::from(class)..=st.nband {
            let band = st.band(b as u8).expect("internal: band in range");
            if !band.qb_last.is_null() {
                p = band.qb_last;
                break;
            }
        }
        p
    };
    let next = if after.is_null() { st.first } else { next_of(after) };
    (after, next)
}

/// Where `putbq` puts a message of `class`: before the first message of its class.
fn putbq_position(st: &QState, class: u16) -> (*mut Mblk, *mut Mblk) {
    let next = if class == 256 {
        st.first
    } else {
        // At the head of its own class: after the last message of the nearest non-empty
        // higher band (bands run high to low), or after the high-priority messages.
        let mut prev = st.pclast;
        for b in (usize::from(class) + 1)..=st.nband {
            let band = st.band(b as u8).expect("internal: band in range");
            if !band.qb_last.is_null() {
                prev = band.qb_last;
                break;
            }
        }
        return (prev, if prev.is_null() { st.first } else { next_of(prev) });
    };
    (null_mut(), next)
}

/// The process-wide set of queue pairs allocated in checking arenas.
fn live_queues() -> &'static Mutex<HashSet<usize>> {
    static LIVE: OnceLock<Mutex<HashSet<usize>>> = OnceLock::new();
    LIVE.get_or_init(|| Mutex::new(HashSet::new()))
}

/// Validates `q` for a raw call: NULL is reported; in a checking arena, a queue that is
/// not allocated (freed, or never from `allocq`) is reported. Returns the queue if usable.
#[inline]
#[track_caller]
pub(crate) fn check_q<'a>(call: &'static str, q: *mut Queue) -> Option<&'a Queue> {
    if q.is_null() || env::checking().is_some() {
        return check_q_slow(call, q);
    }
    // SAFETY: a non-NULL queue from allocq (caller's contract).
    Some(unsafe { &*q })
}

#[cold]
#[track_caller]
fn check_q_slow<'a>(call: &'static str, q: *mut Queue) -> Option<&'a Queue> {
    if q.is_null() {
        env::current().misuse(StreamsError::NullQueue { call });
        return None;
    }
    // The set holds pair addresses: the read queue's, one queue before a write queue.
    let live = live_queues().lock();
    let ok = live.contains(&q.addr()) || live.contains(&q.wrapping_sub(1).addr());
    drop(live);
    if !ok {
        env::current().misuse(StreamsError::QueueNotAllocated { call, addr: q.addr() });
        return None;
    }
    // SAFETY: a queue in the live set is allocated.
    Some(unsafe { &*q })
}

/// Validates a message for a raw queue call.
#[track_caller]
fn check_m(call: &'static str, mp: *mut Mblk) -> bool {
    if mp.is_null() {
        env::current().misuse(StreamsError::NullArgument { call, what: "message (mp)" });
        return false;
    }
    env::check_live(call, mp)
}

/// Allocates a queue pair.
///
/// # Arguments
/// None.
///
/// # Return
/// The read queue of a new pair (`WR(q)` is its write queue), or NULL when memory is short.
/// Both queues have `QUSE` and `QWANTR` set (the read queue also `QREADR`), no `q_qinfo`, no
/// `q_next`, water marks 0. The pair belongs to the current executive
/// ([`Streams::enter`](crate::Streams::enter), else this thread's default one, drained by
/// [`runqueues`](crate::runqueues)) and its memory to the current arena.
///
/// # Context
/// User context: the allocation may sleep (`KM_SLEEP`). A call from interrupt context is
/// reported ([`StreamsError::SleepInInterrupt`]) and returns NULL.
///
/// # Compatibility
/// LfS `allocq` takes the pair from its "queinfo" slab with `GFP_KERNEL` and sets
/// `QUSE|QREADR` on the read queue and `QUSE` on the write queue (lfs-lis.md §3.1); the
/// initial `QWANTR` here makes the first `putq` enable the service procedure, as SVR4
/// queues start out "wanting to be read" (the illumos initial state is an open question,
/// illumos.md).
#[track_caller]
pub fn allocq() -> *mut Queue {
    if in_interrupt() {
        env::current().misuse(StreamsError::SleepInInterrupt { call: "allocq" });
        return null_mut();
    }
    let exec = crate::sched::current_exec();
    // SAFETY: current_exec returns a live executive; the count taken here is released by freeq.
    unsafe { alloc_pair(exec, null_mut()) }
}

/// Allocates a pair for `exec` (strong count taken), in the current arena.
///
/// # Safety
/// `exec` points to a live executive (held by an `Arc`).
pub(crate) unsafe fn alloc_pair(exec: *const ExecInner, stream: *const crate::stream::StreamInner) -> *mut Queue {
    let arena = current_arena();
    let size = size_of::<QPair>();
    if let Some(align) = arena.alignment(size, KM_SLEEP) {
        assert!(align >= align_of::<QPair>(), "internal: kmem alignment {align} below QPair's");
    }
    let p = arena.zalloc(size, KM_SLEEP).cast::<QPair>();
    if p.is_null() {
        tracing::debug!("allocq: no memory: NULL");
        return null_mut();
    }
    // SAFETY: the caller holds `exec` alive; the pair keeps its own count until freeq.
    unsafe { std::sync::Arc::increment_strong_count(exec) };
    let checked = arena.checking().any();
    // SAFETY: the caller holds `exec` alive.
    let owner = unsafe { (*exec).owner };
    let pair = QPair {
        rq: Queue::new(true, owner),
        wq: Queue::new(false, owner),
        shared: PairShared {
            exec,
            arena,
            stream,
            own_perim: Perimeter::new(),
            perim: AtomicPtr::new(null_mut()),
            inst: AtomicPtr::new(null_mut()),
            checked,
        },
    };
    // SAFETY: a fresh buffer of size_of::<QPair>() bytes, aligned (asserted above).
    unsafe { p.write(pair) };
    // SAFETY: the pair was just written; nothing else refers to it yet.
    unsafe { (*p).rq.pair = p };
    // SAFETY: as above.
    unsafe { (*p).wq.pair = p };
    if checked {
        // The arena's message environment turns the checks of the raw calls on
        // (`env::checking`); create it now, or a queue call before any message call would
        // skip the live-set check.
        let _ = env::current();
        live_queues().lock().insert(p.addr());
    }
    p.cast()
}

/// Frees a queue pair and every message on it.
///
/// # Arguments
/// - `q`: either queue of a pair from [`allocq`].
///
/// # Return
/// Nothing. Both queues are flushed (`FLUSHALL`, the messages freed at once), taken off the
/// scheduler (waiting for a running service procedure to finish), their bands freed, and the
/// pair's memory returned to the arena it came from.
///
/// # Context
/// User or kernel context, not from the pair's own put or service procedures.
///
/// # Compatibility
/// LfS `freeq` clears `QUSE`, flushes both queues with `FLUSHALL`, frees the bands and
/// returns the pair (lfs-lis.md §3.1). A checking arena reports a queue that is not
/// allocated ([`StreamsError::QueueNotAllocated`]).
///
/// # Safety
/// `q` is a queue from `allocq` (a checking arena reports one that is not), not used after
/// the call, not part of a stream that is still open, and no other thread uses the pair.
#[track_caller]
pub unsafe fn freeq(q: *mut Queue) {
    let Some(q) = check_q("freeq", q) else { return };
    // SAFETY: checked allocated; the rest is the caller's contract.
    unsafe { free_pair(q.pair()) }
}

/// [`freeq`] without the queue check, for a pair the caller knows is allocated (the stream
/// head's, freed with its stream, perhaps outside the arena that checks it). A raw pointer,
/// not a reference: the pair is freed while this runs, which a reference argument (live for
/// the whole call) would forbid.
///
/// # Safety
/// `pair` is an allocated pair (`Queue::pair`, with the allocation's provenance); otherwise as
/// [`freeq`].
pub(crate) unsafe fn free_pair(pair: *mut QPair) {
    // SAFETY: caller: the pair is allocated; `p` is not used after `drop_in_place` below.
    let p = unsafe { &*pair };
    for side in [&p.rq, &p.wq] {
        crate::sched::disable(side);
        // SAFETY: the queue is allocated; its procedures are off.
        unsafe { flush_where("freeq", side.as_raw(), |_| true) };
        side.st.lock().free_bands(&p.shared.arena);
    }
    if p.shared.checked {
        live_queues().lock().remove(&pair.addr());
    }
    let arena = p.shared.arena.clone();
    let exec = p.shared.exec;
    // SAFETY: the pair is initialised and not used after this (caller).
    unsafe { ptr::drop_in_place(pair) };
    // SAFETY: the buffer came from this arena's zalloc with this size.
    unsafe { arena.free(pair.cast(), size_of::<QPair>()) };
    // SAFETY: the count taken in alloc_pair.
    unsafe { std::sync::Arc::decrement_strong_count(exec) };
}

/// The read queue of a pair.
///
/// # Arguments
/// - `q`: either queue of a pair.
///
/// # Return
/// The pair's read queue.
///
/// # Context
/// Any.
///
/// # Compatibility
/// LfS `RD(q)` is `q - 1` for a write queue (`QREADR` tells); as here.
///
/// # Safety
/// `q` is a queue from `allocq` or a stream.
#[allow(non_snake_case)]
pub unsafe fn RD(q: *mut Queue) -> *mut Queue {
    // SAFETY: caller.
    if unsafe { (*q).readr } { q } else { q.wrapping_sub(1) }
}

/// The write queue of a pair.
///
/// # Arguments
/// - `q`: either queue of a pair.
///
/// # Return
/// The pair's write queue.
///
/// # Context
/// Any.
///
/// # Compatibility
/// LfS `WR(q)` is `q + 1` for a read queue; as here.
///
/// # Safety
/// `q` is a queue from `allocq` or a stream.
#[allow(non_snake_case)]
pub unsafe fn WR(q: *mut Queue) -> *mut Queue {
    // SAFETY: caller.
    if unsafe { (*q).readr } { q.wrapping_add(1) } else { q }
}

/// The other queue of a pair.
///
/// # Arguments
/// - `q`: either queue of a pair.
///
/// # Return
/// `WR(q)` for a read queue, `RD(q)` for a write queue.
///
/// # Context
/// Any.
///
/// # Compatibility
/// SVR4 `OTHERQ`; LfS has no `q_other` field and computes it, as here.
///
/// # Safety
/// `q` is a queue from `allocq` or a stream.
#[allow(non_snake_case)]
pub unsafe fn OTHERQ(q: *mut Queue) -> *mut Queue {
    // SAFETY: caller.
    if unsafe { (*q).readr } { q.wrapping_add(1) } else { q.wrapping_sub(1) }
}

/// Inserts `mp` between `prev` and `next` and decides whether to enable the queue.
///
/// # Safety
/// `mp` is an allocated, unqueued message the caller owns; `(prev, next)` adjacent on `q`.
unsafe fn insert_locked(q: &Queue, st: &mut QState, prev: *mut Mblk, next: *mut Mblk, mp: *mut Mblk, size: usize) {
    // SAFETY: forwarded.
    unsafe { link_between(st, prev, next, mp) };
    account_add(q, st, mp, size);
}

/// Common front part of putq/putbq/insq: checks, forces the band of high-priority
/// messages, creates the band.
#[track_caller]
fn prepare(call: &'static str, q: &Queue, st: &mut QState, mp: *mut Mblk) -> Option<(u16, usize)> {
    // SAFETY: checked live by the caller.
    let m = unsafe { &mut *mp };
    if m.b_pad1 & MBLK_QUEUED != 0 || !m.b_next.is_null() || !m.b_prev.is_null() {
        env::current().misuse(StreamsError::AlreadyQueued { call, addr: mp.addr() });
        return None;
    }
    if m.msg_type().is_high_priority() && q.quirks().hipri_band_zero {
        m.b_band = 0;
    }
    let class = class_of(mp);
    if (1..256).contains(&class) && !st.ensure_band(&q.shared().arena, class as u8) {
        return None;
    }
    Some((class, size_of_msg(mp)))
}

/// Puts a message on a queue, in its place by priority.
///
/// # Arguments
/// - `q`: the queue.
/// - `mp`: the message; on success the queue owns it.
///
/// # Return
/// 1 on success; 0 if a band could not be created (memory) or on misuse (the caller still
/// owns `mp` and must free it).
///
/// High-priority messages (`type >= QPCTL`) get band 0 and go after the high-priority
/// messages already queued; a band-`n` message goes after every message of band `>= n`;
/// band 0 at the tail. High-priority and band-0 bytes count in `q_count`, a band's in its
/// `qb_count`; the queue or band becomes full above its high water mark. The queue is
/// enabled as [`QueueQuirks::putq_enable`] says (LfS: always for high priority, even with
/// `QNOENB`; band 0 when the queue was empty and a reader waits (`QWANTR`); a band message
/// that lands at the head), unless `QNOENB` forbids it.
///
/// # Context
/// Any.
///
/// # Compatibility
/// LfS `putq(9)` (lfs-lis.md §3.2). illumos enables a normal message when `QWANTR` or
/// band > 0 and sets `QFULL` at `>= hiwat` (illumos.md §4), chosen by the quirks. Old LiS
/// freed the message on failure; here, as LfS and Solaris, the caller frees it.
/// A message already on a queue is reported ([`StreamsError::AlreadyQueued`]).
///
/// # Safety
/// `q` is a live queue (a checking arena reports one that is not); `mp` is an allocated
/// message the caller owns.
#[track_caller]
pub unsafe fn putq(q: *mut Queue, mp: *mut Mblk) -> i32 {
    let Some(qr) = check_q("putq", q) else { return 0 };
    // SAFETY: a live queue (checked).
    unsafe { putq_live(qr, mp) }
}

/// `putq` on a queue known to be live (the stream head's own queues): no queue check.
///
/// # Safety
/// As [`putq`]; `qr` is live.
#[track_caller]
pub(crate) unsafe fn putq_live(qr: &Queue, mp: *mut Mblk) -> i32 {
    // SAFETY: forwarded.
    i32::from(unsafe { putq_noting_empty(qr, mp) }.is_some())
}

/// [`putq_live`], telling whether the queue was empty before: `Some(was_empty)` when the
/// message was queued, `None` when refused (the caller still owns it).
///
/// # Safety
/// As [`putq_live`].
#[track_caller]
#[inline]
pub(crate) unsafe fn putq_noting_empty(qr: &Queue, mp: *mut Mblk) -> Option<bool> {
    if !check_m("putq", mp) {
        return None;
    }
    let quirks = qr.quirks();
    let mut st = qr.st.lock();
    let was_empty = st.first.is_null();
    let class = if let Some(size) = plain_size(mp) {
        // The common case: a plain message goes at the tail (`putq_position` for band 0),
        // counted in `q_count` (`account_add` for band 0).
        let last = st.last;
        // SAFETY: mp is owned and on no queue (plain_size); the tail is adjacent to NULL.
        unsafe { link_between(&mut st, last, null_mut(), mp) };
        st.msgs += 1;
        count_add(qr, &mut st, size, quirks);
        0
    } else {
        let (class, size) = prepare("putq", qr, &mut st, mp)?;
        let (prev, next) = putq_position(&st, class);
        // SAFETY: mp is owned and unqueued (prepare); the position is adjacent.
        unsafe { insert_locked(qr, &mut st, prev, next, mp, size) };
        class
    };
    let enable = quirks.putq_enables(class, was_empty, st.first == mp, st.flag);
    drop(st);
    if enable {
        crate::sched::qenable_raw(qr);
    }
    Some(was_empty)
}

/// Puts a message back at the head of its class (after a service procedure found it could
/// not pass it on).
///
/// # Arguments
/// - `q`: the queue.
/// - `mp`: the message.
///
/// # Return
/// 1 on success, 0 if a band could not be created or on misuse (`mp` unchanged, the
/// caller's).
///
/// High-priority messages go to the head of the queue (band 0); a band-`n` message before
/// the first of band `n`. Counting and `QFULL` as [`putq`]. The queue is enabled only for a
/// high-priority message (a service procedure must never `putbq` one: it would loop).
///
/// # Context
/// Any; normally the queue's own service procedure.
///
/// # Compatibility
/// LfS and illumos `putbq(9)`.
///
/// # Safety
/// As [`putq`].
#[track_caller]
pub unsafe fn putbq(q: *mut Queue, mp: *mut Mblk) -> i32 {
    let Some(qr) = check_q("putbq", q) else { return 0 };
    if !check_m("putbq", mp) {
        return 0;
    }
    let mut st = qr.st.lock();
    let Some((class, size)) = prepare("putbq", qr, &mut st, mp) else { return 0 };
    let (prev, next) = putbq_position(&st, class);
    // SAFETY: as in putq.
    unsafe { insert_locked(qr, &mut st, prev, next, mp, size) };
    let enable = class == 256;
    drop(st);
    if enable {
        crate::sched::qenable_raw(qr);
    }
    1
}

/// Inserts a message before another.
///
/// # Arguments
/// - `q`: the queue.
/// - `emp`: the message on `q` to insert before, or NULL for the tail.
/// - `mp`: the message.
///
/// # Return
/// 1 on success; 0 if the insertion would break the queue's order (a message of a higher
/// class behind one of a lower class: a warning is traced, as illumos's CE_WARN "insq:
/// attempt to insert message out of order"), if a band could not be created, or on misuse.
/// On 0 the caller keeps `mp`.
///
/// # Context
/// Any, with the stream frozen on the vendors that require it (UnixWare, SUPER-UX).
///
/// # Compatibility
/// LfS and illumos `insq(9)`. The queue is enabled as by [`putq`], except that a
/// high-priority message honours `QNOENB` (LfS: "except via insq").
///
/// # Safety
/// As [`putq`]; `emp` is NULL or a message on `q`.
#[track_caller]
pub unsafe fn insq(q: *mut Queue, emp: *mut Mblk, mp: *mut Mblk) -> i32 {
    // SAFETY: forwarded.
    unsafe { insq_call("insq", q, emp, mp) }
}

#[track_caller]
unsafe fn insq_call(call: &'static str, q: *mut Queue, emp: *mut Mblk, mp: *mut Mblk) -> i32 {
    let Some(qr) = check_q(call, q) else { return 0 };
    if !check_m(call, mp) {
        return 0;
    }
    let mut st = qr.st.lock();
    if !emp.is_null() {
        // SAFETY: emp is a message on q (caller).
        let queued = unsafe { (*emp).b_pad1 } & MBLK_QUEUED != 0;
        if !queued {
            drop(st);
            env::current().misuse(StreamsError::NotQueued { call, addr: emp.addr() });
            return 0;
        }
    }
    let Some((class, size)) = prepare(call, qr, &mut st, mp) else { return 0 };
    let prev = if emp.is_null() { st.last } else { prev_of(emp) };
    let in_order =
        (prev.is_null() || class_of(prev) >= class) && (emp.is_null() || class <= 256 && class >= class_of(emp));
    if !in_order {
        drop(st);
        tracing::warn!(call, q = ?q, "insq: attempt to insert message out of order");
        return 0;
    }
    let was_empty = st.first.is_null();
    // SAFETY: as in putq; prev and emp are adjacent on q.
    unsafe { insert_locked(qr, &mut st, prev, emp, mp, size) };
    let enable = if class == 256 {
        st.flag & QNOENB == 0
    } else {
        qr.quirks().putq_enables(class, was_empty, st.first == mp, st.flag)
    };
    drop(st);
    if enable {
        crate::sched::qenable_raw(qr);
    }
    1
}

/// Inserts a message after another (LfS).
///
/// # Arguments
/// - `q`: the queue.
/// - `emp`: the message on `q` to insert after, or NULL for the head.
/// - `nmp`: the message.
///
/// # Return
/// As [`insq`].
///
/// # Context
/// As [`insq`].
///
/// # Compatibility
/// LfS `appq(9)`; not in SVR4 or Solaris.
///
/// # Safety
/// As [`insq`].
#[track_caller]
pub unsafe fn appq(q: *mut Queue, emp: *mut Mblk, nmp: *mut Mblk) -> i32 {
    let Some(qr) = check_q("appq", q) else { return 0 };
    let before = if emp.is_null() { qr.first() } else { next_of(emp) };
    // SAFETY: forwarded; `before` is NULL or the message after emp on q.
    unsafe { insq_call("appq", q, before, nmp) }
}

/// Removes a message from a queue.
///
/// # Arguments
/// - `q`: the queue.
/// - `mp`: a message on `q`.
///
/// # Return
/// Nothing; the caller owns `mp` again. Counts and flow control as [`getq`] (the queue or
/// band may stop being full and back-enable its writer). A message that is not on a queue
/// is reported ([`StreamsError::NotQueued`]) and nothing changes.
///
/// # Context
/// Not from interrupt context (LfS man page); the stream frozen where vendors require it.
///
/// # Compatibility
/// LfS `rmvq(9)` "always succeeds"; LiS fails silently for a message not on the queue;
/// IRIX may panic (lfs-lis.md §4.3).
///
/// # Safety
/// `q` is a live queue; `mp` is on `q` (one marked as queued on another queue is not
/// detected and corrupts both).
#[track_caller]
pub unsafe fn rmvq(q: *mut Queue, mp: *mut Mblk) {
    let Some(qr) = check_q("rmvq", q) else { return };
    if !check_m("rmvq", mp) {
        return;
    }
    let mut st = qr.st.lock();
    // SAFETY: an allocated block.
    if unsafe { (*mp).b_pad1 } & MBLK_QUEUED == 0 {
        drop(st);
        env::current().misuse(StreamsError::NotQueued { call: "rmvq", addr: mp.addr() });
        return;
    }
    let mut after = AfterRemove::default();
    unlink(qr, &mut st, mp, &mut after);
    drop(st);
    crate::flow::after_remove(qr, after);
}

/// Takes the first message off a queue.
///
/// # Arguments
/// - `q`: the queue.
///
/// # Return
/// The first message (the caller owns it), or NULL if the queue is empty, in which case
/// `QWANTR` is set so that the next `putq` enables the queue. Taking a message clears
/// `QWANTR`; when the count falls below the low water mark (or to zero) `QFULL` is cleared,
/// and if a writer was waiting (`QWANTW`) the nearest upstream queue with a service
/// procedure is back-enabled.
///
/// # Context
/// Any; normally the queue's service procedure.
///
/// # Compatibility
/// LfS `getq(9)` clears `QFULL` only below `q_lowat` or at 0, for hysteresis; illumos
/// below `q_hiwat` ([`QueueQuirks::full_clear`]). A queue that is not allocated is
/// reported in a checking arena ([`StreamsError::QueueNotAllocated`]) and NULL returned.
///
/// # Safety
/// `q` is a live queue (a checking arena reports one that is not).
#[track_caller]
pub unsafe fn getq(q: *mut Queue) -> *mut Mblk {
    let Some(qr) = check_q("getq", q) else { return null_mut() };
    getq_live(qr)
}

/// `getq` on a queue known to be live (the stream head's own queues): no queue check.
pub(crate) fn getq_live(qr: &Queue) -> *mut Mblk {
    let (mp, after) = getq_take(qr);
    crate::flow::after_remove(qr, after);
    mp
}

/// `getq`'s work under the queue's lock, without the back-enable that may follow: the
/// caller passes the returned [`AfterRemove`] to [`after_remove`](crate::flow::after_remove)
/// with the plumbing stable (the back-enable walks the stream; the rest touches `qr` alone).
#[inline]
pub(crate) fn getq_take(qr: &Queue) -> (*mut Mblk, AfterRemove) {
    let mut after = AfterRemove::default();
    let mut st = qr.st.lock();
    let mp = st.first;
    if mp.is_null() {
        st.flag |= QWANTR;
        return (null_mut(), after);
    }
    st.flag &= !QWANTR;
    let quirks = qr.quirks();
    if let Some(size) = plain_first_size(mp) {
        // The common case: a plain message at the head of the queue (no high-priority
        // message before it, no band), as `unlink` does for the first message of band 0.
        let next = next_of(mp);
        st.first = next;
        if next.is_null() {
            st.last = null_mut();
        } else {
            // SAFETY: `next` is on this queue.
            unsafe { (*next).b_prev = null_mut() };
        }
        // SAFETY: `mp` is on this queue and now unlinked.
        let m = unsafe { &mut *mp };
        m.b_next = null_mut();
        m.b_pad1 &= !MBLK_QUEUED;
        st.msgs -= 1;
        count_sub(qr, &mut st, size, quirks, &mut after);
    } else {
        unlink(qr, &mut st, mp, &mut after);
    }
    (mp, after)
}

/// The size of the first message of a queue if it is a plain one (normal priority, band 0).
#[inline(always)]
fn plain_first_size(mp: *mut Mblk) -> Option<usize> {
    // SAFETY: a message on a live queue.
    let m = unsafe { &*mp };
    debug_assert!(m.b_prev.is_null(), "internal: the first message has a predecessor");
    (m.b_band == 0 && !m.msg_type().is_high_priority()).then(|| size_of_msg(mp))
}

/// Unlinks every message for which `pred` holds and frees them after the lock is dropped;
/// re-links the rest in order. Returns the number freed.
///
/// # Safety
/// `q` is a live queue.
pub(crate) unsafe fn flush_where(call: &'static str, q: *mut Queue, pred: impl Fn(*mut Mblk) -> bool) -> usize {
    // SAFETY: caller.
    let qr = unsafe { &*q };
    let quirks = qr.quirks();
    let mut after = AfterRemove::default();
    let mut freed: *mut Mblk = null_mut();
    let mut n = 0;
    {
        let mut st = qr.st.lock();
        let mut mp = st.first;
        while !mp.is_null() {
            let next = next_of(mp);
            if pred(mp) {
                unlink(qr, &mut st, mp, &mut after);
                // Chain the freed messages through b_next (they are off the queue, unmarked).
                // SAFETY: `mp` is unlinked and ours.
                unsafe { (*mp).b_next = freed };
                freed = mp;
                n += 1;
            }
            mp = next;
        }
        if st.first.is_null() && quirks.flushq_clears_wantr {
            st.flag &= !QWANTR;
        }
    }
    while !freed.is_null() {
        // SAFETY: a message we unlinked above.
        let next = unsafe { (*freed).b_next };
        // SAFETY: as above; b_next is cleared before the free so freeb does not object.
        unsafe { (*freed).b_next = null_mut() };
        // SAFETY: the message is ours and freed once.
        unsafe { crate::alloc::freemsg(freed) };
        freed = next;
    }
    if n > 0 {
        tracing::debug!(call, queue = qr.name(), freed = n, "flush");
    }
    crate::flow::after_remove(qr, after);
    n
}

/// Frees the messages of a queue.
///
/// # Arguments
/// - `q`: the queue.
/// - `flag`: [`FLUSHDATA`] (only data messages: `M_DATA`, `M_PROTO`, `M_PCPROTO`,
///   `M_DELAY`) or [`FLUSHALL`].
///
/// # Return
/// Nothing. The remaining messages keep their order; counts and `QFULL` are updated, and
/// every band (or band 0) that drops below its low water mark with a writer waiting
/// back-enables it.
///
/// # Context
/// Any.
///
/// # Compatibility
/// LfS `flushq(9)` does not clear `QWANTR` on the emptied queue; LiS does
/// ([`QueueQuirks::flushq_clears_wantr`]). illumos detaches the list and re-`putq`s the
/// kept messages, with the same result.
///
/// # Safety
/// `q` is a live queue.
#[track_caller]
pub unsafe fn flushq(q: *mut Queue, flag: i32) {
    if check_q("flushq", q).is_none() {
        return;
    }
    let all = flag == FLUSHALL;
    // SAFETY: checked above.
    unsafe { flush_where("flushq", q, |mp| all || datamsg(msg_type(mp))) };
}

fn msg_type(mp: *mut Mblk) -> MsgType {
    // SAFETY: a message on a live queue.
    unsafe { (*mp).msg_type() }
}

/// Frees the messages of one priority band.
///
/// # Arguments
/// - `q`: the queue.
/// - `pri`: the band; 0 flushes band-0 messages and (natively) high-priority ones.
/// - `flag`: [`FLUSHDATA`] or [`FLUSHALL`].
///
/// # Return
/// Nothing; as [`flushq`] for the chosen band. A band that does not exist is a no-op.
///
/// # Context
/// Any.
///
/// # Compatibility
/// `flushband(0)`: LfS, IRIX, OSF/1, Solaris and SUPER-UX flush normal and high-priority
/// messages; AIX, UXP/V, UnixWare and LiS only normal ones ([`QueueQuirks::flushband0_hipri`],
/// lfs-lis.md §3.2, §4.3).
///
/// # Safety
/// `q` is a live queue.
#[track_caller]
pub unsafe fn flushband(q: *mut Queue, pri: u8, flag: i32) {
    let Some(qr) = check_q("flushband", q) else { return };
    if usize::from(pri) > qr.nband() {
        return;
    }
    let all = flag == FLUSHALL;
    let hipri_too = qr.quirks().flushband0_hipri;
    let pred = |mp: *mut Mblk| {
        let c = class_of(mp);
        let in_band = if pri == 0 { c == 0 || (c == 256 && hipri_too) } else { c == u16::from(pri) };
        in_band && (all || datamsg(msg_type(mp)))
    };
    // SAFETY: checked above.
    unsafe { flush_where("flushband", q, pred) };
}

/// The number of messages on a queue.
///
/// # Arguments
/// - `q`: the queue.
///
/// # Return
/// The number of messages (not blocks, not bytes) on `q`, every band included.
///
/// # Context
/// Any.
///
/// # Compatibility
/// SVR4 `qsize(9)`; LfS keeps the count in `q_msgs`, as here.
///
/// # Safety
/// `q` is a live queue.
#[track_caller]
pub unsafe fn qsize(q: *mut Queue) -> i32 {
    let Some(qr) = check_q("qsize", q) else { return 0 };
    i32::try_from(qr.st.lock().msgs).unwrap_or(i32::MAX)
}

/// The fields [`strqget`] and [`strqset`] name (`qfields_t`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QField {
    /// `q_hiwat` / `qb_hiwat`.
    QHIWAT,
    /// `q_lowat` / `qb_lowat`.
    QLOWAT,
    /// `q_maxpsz`.
    QMAXPSZ,
    /// `q_minpsz`.
    QMINPSZ,
    /// `q_count` / `qb_count` (read only).
    QCOUNT,
    /// `q_first` / `qb_first` as an address (read only).
    QFIRST,
    /// `q_last` / `qb_last` as an address (read only).
    QLAST,
    /// `q_flag` / `qb_flag` (read only).
    QFLAG,
}

/// Reads a field of a queue or band.
///
/// # Arguments
/// - `q`: the queue.
/// - `what`: the field.
/// - `pri`: 0 for the queue, else the band.
/// - `valp`: where the value goes.
///
/// # Return
/// 0, or `EINVAL` for a band-only nonsense (`QMAXPSZ`/`QMINPSZ` of a band). A band that does
/// not exist yet is created (`EAGAIN` if that fails).
///
/// # Context
/// Any.
///
/// # Compatibility
/// illumos `strqget(9F)` (illumos.md §4); SVR4 MP requires the stream frozen.
///
/// # Safety
/// `q` is a live queue.
pub unsafe fn strqget(q: *mut Queue, what: QField, pri: u8, valp: &mut isize) -> i32 {
    let Some(qr) = check_q("strqget", q) else { return crate::stream::EINVAL };
    let mut st = qr.st.lock();
    if pri > 0 && !st.ensure_band(&qr.shared().arena, pri) {
        return crate::stream::EAGAIN;
    }
    let as_i = |v: usize| isize::try_from(v).unwrap_or(isize::MAX);
    *valp = if pri == 0 {
        match what {
            QField::QHIWAT => as_i(st.hiwat),
            QField::QLOWAT => as_i(st.lowat),
            QField::QMAXPSZ => st.maxpsz,
            QField::QMINPSZ => st.minpsz,
            QField::QCOUNT => as_i(st.count),
            QField::QFIRST => as_i(st.first.addr()),
            QField::QLAST => as_i(st.last.addr()),
            QField::QFLAG => as_i((st.flag | if qr.svc.is_enabled() { QENAB } else { 0 }) as usize),
        }
    } else {
        let b = st.band(pri).expect("internal: band created above");
        match what {
            QField::QHIWAT => as_i(b.qb_hiwat),
            QField::QLOWAT => as_i(b.qb_lowat),
            QField::QCOUNT => as_i(b.qb_count),
            QField::QFIRST => as_i(b.qb_first.addr()),
            QField::QLAST => as_i(b.qb_last.addr()),
            QField::QFLAG => as_i(b.qb_flag as usize),
            QField::QMAXPSZ | QField::QMINPSZ => return crate::stream::EINVAL,
        }
    };
    0
}

/// Changes a field of a queue or band.
///
/// # Arguments
/// - `q`: the queue.
/// - `what`: `QHIWAT`, `QLOWAT`, `QMAXPSZ` or `QMINPSZ`.
/// - `pri`: 0 for the queue, else the band (created if needed).
/// - `val`: the new value.
///
/// # Return
/// 0; `EPERM` for the read-only fields (`QCOUNT`, `QFIRST`, `QLAST`, `QFLAG`); `EINVAL` for
/// a negative water mark or a band's packet size; `EAGAIN` if the band cannot be created.
///
/// # Context
/// Any.
///
/// # Compatibility
/// illumos `strqset(9F)` (illumos.md §4).
///
/// # Safety
/// `q` is a live queue.
pub unsafe fn strqset(q: *mut Queue, what: QField, pri: u8, val: isize) -> i32 {
    let Some(qr) = check_q("strqset", q) else { return crate::stream::EINVAL };
    if matches!(what, QField::QCOUNT | QField::QFIRST | QField::QLAST | QField::QFLAG) {
        return crate::stream::EPERM;
    }
    let mut st = qr.st.lock();
    if pri > 0 && !st.ensure_band(&qr.shared().arena, pri) {
        return crate::stream::EAGAIN;
    }
    let uval = usize::try_from(val);
    match (what, pri) {
        (QField::QMAXPSZ, 0) => st.maxpsz = val,
        (QField::QMINPSZ, 0) => st.minpsz = val,
        (QField::QHIWAT | QField::QLOWAT, _) => {
            let Ok(v) = uval else { return crate::stream::EINVAL };
            if pri == 0 {
                if what == QField::QHIWAT { st.hiwat = v } else { st.lowat = v }
            } else {
                let b = st.band_mut(pri).expect("internal: band created above");
                if what == QField::QHIWAT { b.qb_hiwat = v } else { b.qb_lowat = v }
            }
        }
        _ => return crate::stream::EINVAL,
    }
    0
}

/// Sets a queue's qinit and, from its module_info, packet sizes and water marks.
///
/// # Safety
/// `q` is a live queue; `qi` outlives the pair.
pub(crate) unsafe fn set_qinfo(q: &Queue, qi: *const QInit) {
    q.q_qinfo.store(qi.cast_mut(), Ordering::Release);
    refresh_fast_put(q);
    if qi.is_null() {
        return;
    }
    // SAFETY: caller: `qi` is valid.
    let mi: &ModuleInfo = unsafe { (*qi).qi_minfo };
    let mut st = q.st.lock();
    st.hiwat = mi.mi_hiwat;
    st.lowat = mi.mi_lowat;
    st.minpsz = mi.mi_minpsz;
    st.maxpsz = mi.mi_maxpsz;
    // SAFETY: as above.
    if unsafe { (*qi).qi_srvp.is_some() } {
        st.flag |= QSRVP;
    } else {
        st.flag &= !QSRVP;
    }
}

/// Sets or clears flag bits (crate-internal: QNOENB, QBACK, QSHEAD).
pub(crate) fn set_flag(q: &Queue, bits: u32, on: bool) {
    let mut st = q.st.lock();
    if on {
        st.flag |= bits;
    } else {
        st.flag &= !bits;
    }
}

/// Sets the `qinit` of both queues of a pair, and their packet sizes and water marks from
/// the `module_info`.
///
/// # Arguments
/// - `q`: the read queue of a pair.
/// - `rinit`: the read side's qinit.
/// - `winit`: the write side's qinit.
///
/// # Return
/// Nothing. On a pair already in a stream, the stream head stops trusting its cached
/// flow-control target (`q_nfsrv`) and walks the stream for every write from then on.
///
/// # Context
/// User context, before the pair is used (streams call it when they push a module).
///
/// # Compatibility
/// SVR4 and LfS `setq(9)`.
///
/// # Safety
/// `q` is the read queue of a live pair that no procedure is using.
pub unsafe fn setq(q: *mut Queue, rinit: &'static QInit, winit: &'static QInit) {
    let Some(qr) = check_q("setq", q) else { return };
    // SAFETY: a live pair; the qinits are 'static.
    unsafe { set_qinfo(qr, rinit) };
    // SAFETY: as above.
    unsafe { set_qinfo(qr.other(), winit) };
    // A pair already in a stream: the head's cached flow-control target may be wrong now.
    crate::stream::nfsrv_stale(qr.shared().stream);
}
