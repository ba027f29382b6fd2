//! `source`: a driver whose read service procedure produces data, under flow control.
//!
//! The shape of a driver that receives data on its own (a network or serial device's input
//! side, a generator): the data is made in the read service procedure and sent up with
//! `putnext` while `canputnext` allows; when the stream head's read queue is full the
//! procedure returns, and STREAMS back-enables it when the reader has drained the head below
//! its low water mark (`STRLOW`). Nothing is queued on the driver's own read queue.
//!
//! It produces what an [`SRC_GEN`] ioctl asks for: the ioctl's data is a little-endian `u64`
//! count of 64-byte `M_DATA` messages (each holding [`SRC_BYTE`] 64 times); the driver adds it
//! to what is still to produce, enables its read queue and acknowledges. When `allocb` fails
//! the service procedure registers a `bufcall` that re-enables it (cancelled at close).
//! Flushes are handled canonically; anything else written to it is freed.

use std::ffi::c_void;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use streams_core::{
    BPRI_MED, BcId, EINVAL, INFPSZ, Iocblk, M_FLUSH, M_IOCTL, Module, ModuleInfo, Msg, OpenCtx, QRef, bufcall,
    driver_flush, miocack, miocnak, unbufcall,
};

/// ioctl: produce the count of messages in the ioctl's data (a little-endian `u64`).
pub const SRC_GEN: i32 = 0x5352_0001;
/// The byte every produced message is filled with.
pub const SRC_BYTE: u8 = 0x5a;
/// Bytes per produced message.
pub const SRC_LEN: usize = 64;

/// The driver: how many messages are still to be produced.
pub struct Source {
    /// Asked for and not yet sent up. Written by the ioctl (adding) and the read service
    /// procedure (subtracting what it sent), which never runs concurrently with itself.
    remaining: AtomicU64,
    /// The pending `bufcall` (0: none) that re-enables the read queue after an `allocb`
    /// failed; cancelled by close.
    bufcall: AtomicI64,
}

/// The bufcall callback: enables the driver's read queue (`arg`).
fn enable_read(arg: *mut c_void) {
    // SAFETY: `arg` is the driver's read queue, live until close, which cancels the bufcall
    // first (`unbufcall` waits for a callback that is running).
    unsafe { streams_core::qenable(arg.cast()) }
}

impl Source {
    /// Messages still to be produced.
    pub fn remaining(&self) -> u64 {
        self.remaining.load(Ordering::Relaxed)
    }
}

impl Module for Source {
    const INFO: ModuleInfo = ModuleInfo {
        mi_idnum: 5004,
        mi_idname: "source",
        mi_minpsz: 0,
        mi_maxpsz: INFPSZ,
        mi_hiwat: 5120,
        mi_lowat: 1024,
    };
    const RSRV: bool = true;

    fn open(_q: QRef<'_>, _ctx: &mut OpenCtx) -> Result<Self, i32> {
        Ok(Source { remaining: AtomicU64::new(0), bufcall: AtomicI64::new(0) })
    }

    fn close(self, _q: QRef<'_>) {
        let id: BcId = self.bufcall.swap(0, Ordering::AcqRel);
        if id != 0 {
            unbufcall(id);
        }
    }

    fn wput(&self, q: QRef<'_>, mut mp: Msg) {
        match mp.msg_type() {
            M_FLUSH => driver_flush(q, mp),
            M_IOCTL => {
                let count = match (Iocblk::read(&mp).map(|i| i.ioc_cmd), mp.unlink()) {
                    (Some(SRC_GEN), Some(data)) => data.data().try_into().ok().map(u64::from_le_bytes),
                    _ => None,
                };
                let Some(n) = count else {
                    // SAFETY: inside the write put procedure of `q`; the M_IOCTL is ours.
                    return unsafe { miocnak(q.as_ptr(), mp.into_raw(), 0, EINVAL) };
                };
                // AcqRel: the read service procedure's Acquire load sees the count (it is
                // also ordered by the enable below, which goes through the run list's lock).
                self.remaining.fetch_add(n, Ordering::AcqRel);
                q.other().qenable();
                // SAFETY: as above.
                unsafe { miocack(q.as_ptr(), mp.into_raw(), 0, 0) };
            }
            _ => drop(mp), // freemsg
        }
    }

    fn rput(&self, q: QRef<'_>, mp: Msg) {
        q.putnext(mp);
    }

    fn rsrv(&self, q: QRef<'_>) {
        // The run takes what is asked for now and subtracts what it sent at the end: one
        // read-modify-write per run (an ioctl adding meanwhile is kept: fetch_sub).
        let want = self.remaining.load(Ordering::Acquire);
        let mut sent = 0;
        while sent < want {
            if !q.canputnext() {
                break; // back-enabled when the head drains below its low water mark
            }
            let Some(mut m) = Msg::alloc(SRC_LEN, BPRI_MED) else {
                // No memory: try again when some is freed (the canonical recovery).
                let id = bufcall(SRC_LEN, BPRI_MED, enable_read, q.as_ptr().cast());
                let old = self.bufcall.swap(id, Ordering::AcqRel);
                if old != 0 {
                    unbufcall(old); // an earlier one that has not fired
                }
                break;
            };
            if m.extend_from_slice(&[SRC_BYTE; SRC_LEN]).is_err() {
                break;
            }
            q.putnext(m);
            sent += 1;
        }
        if sent != 0 {
            self.remaining.fetch_sub(sent, Ordering::AcqRel);
        }
    }
}
