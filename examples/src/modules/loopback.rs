//! `loopback`: a loopback (echo) driver.
//!
//! Everything data-like written down (`M_DATA`, `M_PROTO`, `M_PCPROTO`) is sent back up at
//! once with `qreply`, from the write put procedure (no service procedure: the driver never
//! holds a message). `M_FLUSH` is answered canonically at the driver (STREAMS Programming
//! Guide, "Flushing"; LfS `loop` driver): flush the write queue if `FLUSHW`; if `FLUSHR`,
//! flush the read queue, clear `FLUSHW` and reflect the message upstream; else free it.
//! `M_IOCTL`: [`LB_COUNT`] answers with the number of messages looped so far, [`LB_ECHO`]
//! acknowledges with its data sent back; any other command gets `M_IOCNAK` (`EINVAL`).

use std::sync::atomic::{AtomicU32, Ordering};
use streams_core::flush_side;
use streams_core::{
    EINVAL, FLUSHR, FLUSHW, INFPSZ, Iocblk, M_DATA, M_FLUSH, M_IOCTL, M_PCPROTO, M_PROTO, Module, ModuleInfo, Msg,
    OpenCtx, QRef, miocack, miocnak,
};

/// ioctl: `ioc_rval` = messages looped back since open.
pub const LB_COUNT: i32 = 0x4c42_0001;
/// ioctl: acknowledged with its data (the `b_cont` of the `M_IOCTL`) sent back unchanged.
pub const LB_ECHO: i32 = 0x4c42_0002;

/// The loopback driver; counts what it loops.
pub struct Loopback {
    looped: AtomicU32,
}

impl Loopback {
    /// Messages looped back so far by this instance.
    pub fn looped(&self) -> u32 {
        self.looped.load(Ordering::Relaxed)
    }
}

impl Module for Loopback {
    const INFO: ModuleInfo = ModuleInfo {
        mi_idnum: 5002,
        mi_idname: "loopback",
        mi_minpsz: 0,
        mi_maxpsz: INFPSZ,
        mi_hiwat: 5120,
        mi_lowat: 1024,
    };

    fn open(_q: QRef<'_>, _ctx: &mut OpenCtx) -> Result<Self, i32> {
        Ok(Loopback { looped: AtomicU32::new(0) })
    }

    // Inline: the put trampoline streams-core instantiates for this module calls it
    // (another crate's non-generic function is not inlined otherwise): one call per hop.
    #[inline]
    fn wput(&self, q: QRef<'_>, mut mp: Msg) {
        match mp.msg_type() {
            M_DATA | M_PROTO | M_PCPROTO => {
                // Relaxed: a statistic, read by the ioctl on the same stream.
                self.looped.fetch_add(1, Ordering::Relaxed);
                q.qreply(mp);
            }
            M_FLUSH => {
                flush_side(q, &mp, FLUSHW);
                let flag = mp.data().first().copied().unwrap_or(0);
                if flag & FLUSHR != 0 {
                    flush_side(q.other(), &mp, FLUSHR);
                    if let Ok(d) = mp.data_mut() {
                        d[0] &= !FLUSHW;
                    }
                    q.qreply(mp); // reflect FLUSHR upstream
                } // else: dropping `mp` frees it (freemsg)
            }
            M_IOCTL => match Iocblk::read(&mp).map(|i| i.ioc_cmd) {
                Some(LB_COUNT) => {
                    let n = self.looped.load(Ordering::Relaxed);
                    let rval = i32::try_from(n).unwrap_or(i32::MAX);
                    // SAFETY: inside the write put procedure of `q`; the M_IOCTL is ours.
                    unsafe { miocack(q.as_ptr(), mp.into_raw(), 0, rval) };
                }
                Some(LB_ECHO) => {
                    let count = mp.cont().map_or(0, |_| mp.msgdsize());
                    // SAFETY: as above; the data stays in b_cont and goes back with the ack.
                    unsafe { miocack(q.as_ptr(), mp.into_raw(), count, 0) };
                }
                // SAFETY: as above.
                _ => unsafe { miocnak(q.as_ptr(), mp.into_raw(), 0, EINVAL) },
            },
            _ => drop(mp), // anything else: freemsg
        }
    }
}
