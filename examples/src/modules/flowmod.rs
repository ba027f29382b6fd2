//! `flowmod`: a pass-through module with service procedures that obey flow control.
//!
//! The shape every queueing module has (STREAMS Programming Guide, "Flow control"; the
//! canonical service procedure of `putq(9F)`): the put procedures `putq` ordinary messages
//! (high-priority ones and `M_IOCTL` go straight on, so flushes and ioctls are not held behind
//! data); the service procedures `getq` and forward with `bcanputnext` (the message's band),
//! and when the next queue is full `putbq` the message and return. STREAMS back-enables the
//! service procedure when the queue ahead drains below its low water mark.
//!
//! Counters (per instance) show it working: messages forwarded by each side and how often a
//! service procedure stopped on flow control.

use std::sync::atomic::{AtomicU64, Ordering};
use streams_core::flush_side;
use streams_core::{FLUSHR, FLUSHW, INFPSZ, Iocblk, M_FLUSH, M_IOCTL, Module, ModuleInfo, Msg, OpenCtx, QRef, miocack};

/// ioctl: acknowledged with [`FlowStats`] (as [`FlowStats::to_bytes`]) in the reply's data.
pub const FM_STATS: i32 = 0x464d_0001;

/// What [`FM_STATS`] returns: the counters of one instance.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowStats {
    /// Messages the write service procedure passed on.
    pub w_forwarded: u64,
    /// Messages the read service procedure passed on.
    pub r_forwarded: u64,
    /// Times the write service procedure stopped (`putbq`) on flow control.
    pub w_blocked: u64,
    /// Times the read service procedure stopped on flow control.
    pub r_blocked: u64,
}

impl FlowStats {
    /// Wire form: four little-endian `u64`s.
    pub fn to_bytes(&self) -> [u8; 32] {
        let mut b = [0; 32];
        for (i, v) in [self.w_forwarded, self.r_forwarded, self.w_blocked, self.r_blocked].iter().enumerate() {
            b[i * 8..i * 8 + 8].copy_from_slice(&v.to_le_bytes());
        }
        b
    }

    /// Parses the wire form; `None` if `b` is not 32 bytes.
    pub fn from_bytes(b: &[u8]) -> Option<FlowStats> {
        let b: &[u8; 32] = b.try_into().ok()?;
        let v = |i: usize| u64::from_le_bytes(b[i * 8..i * 8 + 8].try_into().expect("8 bytes"));
        Some(FlowStats { w_forwarded: v(0), r_forwarded: v(1), w_blocked: v(2), r_blocked: v(3) })
    }
}

/// The module's water marks: small, so a few 64-byte messages fill a queue.
pub const FLOWMOD_HIWAT: usize = 1024;
/// Low water mark.
pub const FLOWMOD_LOWAT: usize = 256;

/// Per-instance counters.
#[derive(Default)]
pub struct Flowmod {
    /// Messages the write service procedure passed on.
    pub w_forwarded: AtomicU64,
    /// Messages the read service procedure passed on.
    pub r_forwarded: AtomicU64,
    /// Times the write service procedure stopped (`putbq`) on flow control.
    pub w_blocked: AtomicU64,
    /// Times the read service procedure stopped on flow control.
    pub r_blocked: AtomicU64,
}

impl Flowmod {
    /// The common service procedure; `fwd`/`blocked` are the side's counters.
    fn srv(q: QRef<'_>, fwd: &AtomicU64, blocked: &AtomicU64) {
        // Relaxed counters: statistics only; the queue operations order the messages. The
        // run counts what it forwards locally and adds it once at the end: one atomic
        // read-modify-write per run instead of one per message (an `FM_STATS` during a
        // run sees the count as of the last finished run).
        let mut forwarded = 0;
        while let Some(mp) = q.getq() {
            if mp.msg_type().is_high_priority() || q.bcanputnext(mp.b_band) {
                forwarded += 1;
                q.putnext(mp);
            } else {
                blocked.fetch_add(1, Ordering::Relaxed);
                // putbq of the message getq just gave us cannot meet a full queue; if the
                // band could not be allocated the message is dropped (freed).
                let _ = q.putbq(mp);
                break; // back-enabled when the next queue drains
            }
        }
        if forwarded != 0 {
            fwd.fetch_add(forwarded, Ordering::Relaxed);
        }
    }

    /// The common put procedure: urgent messages pass, the rest are queued.
    fn put(q: QRef<'_>, mp: Msg, side: u8) {
        let t = mp.msg_type();
        if t == M_FLUSH {
            flush_side(q, &mp, side);
            q.putnext(mp);
        } else if t.is_high_priority() || t == M_IOCTL {
            q.putnext(mp);
        } else if let Err(mp) = q.putq(mp) {
            drop(mp); // no memory for the band: freemsg, as a C module would
        }
    }
}

impl Module for Flowmod {
    const INFO: ModuleInfo = ModuleInfo {
        mi_idnum: 5003,
        mi_idname: "flowmod",
        mi_minpsz: 0,
        mi_maxpsz: INFPSZ,
        mi_hiwat: FLOWMOD_HIWAT,
        mi_lowat: FLOWMOD_LOWAT,
    };
    const WSRV: bool = true;
    const RSRV: bool = true;

    fn open(_q: QRef<'_>, _ctx: &mut OpenCtx) -> Result<Self, i32> {
        Ok(Flowmod::default())
    }

    fn wput(&self, q: QRef<'_>, mut mp: Msg) {
        if mp.msg_type() == M_IOCTL && Iocblk::read(&mp).map(|i| i.ioc_cmd) == Some(FM_STATS) {
            let r = Ordering::Relaxed;
            let st = FlowStats {
                w_forwarded: self.w_forwarded.load(r),
                r_forwarded: self.r_forwarded.load(r),
                w_blocked: self.w_blocked.load(r),
                r_blocked: self.r_blocked.load(r),
            };
            drop(mp.unlink()); // any data sent with the ioctl: freemsg(mp->b_cont)
            let Some(data) = Msg::from_slice(&st.to_bytes()) else {
                // SAFETY: inside the write put procedure of `q`; the M_IOCTL is ours.
                return unsafe { streams_core::miocnak(q.as_ptr(), mp.into_raw(), 0, streams_core::ENOMEM) };
            };
            mp.link(data);
            // SAFETY: as above.
            return unsafe { miocack(q.as_ptr(), mp.into_raw(), 32, 0) };
        }
        Self::put(q, mp, FLUSHW);
    }

    fn rput(&self, q: QRef<'_>, mp: Msg) {
        Self::put(q, mp, FLUSHR);
    }

    fn wsrv(&self, q: QRef<'_>) {
        Self::srv(q, &self.w_forwarded, &self.w_blocked);
    }

    fn rsrv(&self, q: QRef<'_>) {
        Self::srv(q, &self.r_forwarded, &self.r_blocked);
    }
}
