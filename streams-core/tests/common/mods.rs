//! Small modules and drivers for the stream tests.
#![allow(dead_code)]

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use streams_core::*;

const fn info(name: &'static str, hiwat: usize, lowat: usize) -> ModuleInfo {
    ModuleInfo { mi_idnum: 1, mi_idname: name, mi_minpsz: 0, mi_maxpsz: INFPSZ, mi_hiwat: hiwat, mi_lowat: lowat }
}

/// The pass-through module (LfS nullmod): every default procedure.
pub struct Nullmod;

impl Module for Nullmod {
    const INFO: ModuleInfo = info("nullmod", 5120, 1024);
    fn open(_q: QRef<'_>, _ctx: &mut OpenCtx) -> Result<Self, i32> {
        Ok(Nullmod)
    }
}

/// A pass-through module with service procedures on both sides that obey flow control, and
/// a per-queue-pair perimeter.
pub struct Svcmod;

impl Module for Svcmod {
    const INFO: ModuleInfo = info("svcmod", 1024, 256);
    const SYNC: SyncLevel = SyncLevel::QueuePair;
    const RSRV: bool = true;
    const WSRV: bool = true;
    fn open(_q: QRef<'_>, _ctx: &mut OpenCtx) -> Result<Self, i32> {
        Ok(Svcmod)
    }
    fn wput(&self, q: QRef<'_>, mp: Msg) {
        // ioctls are not held behind flow-controlled data.
        if mp.msg_type().is_high_priority() || mp.msg_type() == M_IOCTL {
            default_wput(q, mp);
        } else if let Err(mp) = q.putq(mp) {
            drop(mp);
        }
    }
    fn rput(&self, q: QRef<'_>, mp: Msg) {
        if mp.msg_type().is_high_priority() {
            default_rput(q, mp);
        } else if let Err(mp) = q.putq(mp) {
            drop(mp);
        }
    }
}

/// Counts messages seen by a module instance, by side; reports through an ioctl.
pub struct Counter {
    pub w: AtomicUsize,
    pub r: AtomicUsize,
}

/// ioctl: Counter answers with (w << 16 | r) as rval.
pub const COUNT_IOCTL: i32 = 0x4300;

impl Module for Counter {
    const INFO: ModuleInfo = info("counter", 5120, 1024);
    fn open(_q: QRef<'_>, _ctx: &mut OpenCtx) -> Result<Self, i32> {
        Ok(Counter { w: AtomicUsize::new(0), r: AtomicUsize::new(0) })
    }
    fn wput(&self, q: QRef<'_>, mp: Msg) {
        if mp.msg_type() == M_IOCTL && Iocblk::read(&mp).map(|i| i.ioc_cmd) == Some(COUNT_IOCTL) {
            let v = (self.w.load(Ordering::Relaxed) << 16 | self.r.load(Ordering::Relaxed)) as i32;
            // SAFETY: inside the put procedure; the M_IOCTL is ours.
            unsafe { miocack(q.as_ptr(), mp.into_raw(), 0, v) };
            return;
        }
        if datamsg(mp.msg_type()) {
            self.w.fetch_add(1, Ordering::Relaxed);
        }
        default_wput(q, mp);
    }
    fn rput(&self, q: QRef<'_>, mp: Msg) {
        if datamsg(mp.msg_type()) {
            self.r.fetch_add(1, Ordering::Relaxed);
        }
        default_rput(q, mp);
    }
}

/// A module whose write put procedure panics on a message reading "boom".
pub struct Panicky;

impl Module for Panicky {
    const INFO: ModuleInfo = info("panicky", 5120, 1024);
    fn open(_q: QRef<'_>, _ctx: &mut OpenCtx) -> Result<Self, i32> {
        Ok(Panicky)
    }
    fn wput(&self, q: QRef<'_>, mp: Msg) {
        assert!(mp.data() != b"boom", "panicky: boom");
        default_wput(q, mp);
    }
}

/// A module whose open fails.
pub struct Refuser;

impl Module for Refuser {
    const INFO: ModuleInfo = info("refuser", 5120, 1024);
    fn open(_q: QRef<'_>, _ctx: &mut OpenCtx) -> Result<Self, i32> {
        Err(EPERM)
    }
}

/// The loopback driver: data comes back up (qreply); M_FLUSH canonically; ioctls:
/// `LOOP_ACK` is acknowledged with rval 42 and its data echoed, `LOOP_NAK` refused
/// with EPERM, others refused (default).
pub struct Loop;

pub const LOOP_ACK: i32 = 0x4c01;
pub const LOOP_NAK: i32 = 0x4c02;

impl Module for Loop {
    const INFO: ModuleInfo = info("loop", 5120, 1024);
    fn open(_q: QRef<'_>, _ctx: &mut OpenCtx) -> Result<Self, i32> {
        Ok(Loop)
    }
    fn wput(&self, q: QRef<'_>, mp: Msg) {
        match mp.msg_type() {
            M_DATA | M_PROTO | M_PCPROTO => q.qreply(mp),
            M_IOCTL => match Iocblk::read(&mp).map(|i| i.ioc_cmd) {
                Some(LOOP_ACK) => {
                    let n = mp.msgsize() - size_of::<Iocblk>();
                    // SAFETY: inside the put procedure; the M_IOCTL is ours.
                    unsafe { miocack(q.as_ptr(), mp.into_raw(), n, 42) };
                }
                // SAFETY: as above.
                Some(LOOP_NAK) => unsafe { miocnak(q.as_ptr(), mp.into_raw(), 0, EPERM) },
                _ => default_wput(q, mp),
            },
            _ => default_wput(q, mp),
        }
    }
}

/// A sink driver with a gated write service procedure (small water marks): it queues
/// data and frees it only while the gate is open; `SINK_OPEN`/`SINK_CLOSE` ioctls move the
/// gate, `SINK_COUNT` returns how many messages it has freed, with their bytes in order
/// appended to a log (for order checks).
pub struct Sink {
    gate: AtomicBool,
    pub eaten: AtomicUsize,
    pub log: Mutex<Vec<u8>>,
}

pub const SINK_OPEN: i32 = 0x5301;
pub const SINK_CLOSE: i32 = 0x5302;
pub const SINK_COUNT: i32 = 0x5303;

impl Module for Sink {
    const INFO: ModuleInfo = info("sink", 64, 32);
    const WSRV: bool = true;
    fn open(_q: QRef<'_>, _ctx: &mut OpenCtx) -> Result<Self, i32> {
        Ok(Sink { gate: AtomicBool::new(false), eaten: AtomicUsize::new(0), log: Mutex::new(Vec::new()) })
    }
    fn wput(&self, q: QRef<'_>, mp: Msg) {
        match mp.msg_type() {
            M_IOCTL => {
                let cmd = Iocblk::read(&mp).map(|i| i.ioc_cmd);
                let rval = match cmd {
                    Some(SINK_OPEN) => {
                        self.gate.store(true, Ordering::SeqCst);
                        q.qenable();
                        0
                    }
                    Some(SINK_CLOSE) => {
                        self.gate.store(false, Ordering::SeqCst);
                        0
                    }
                    Some(SINK_COUNT) => self.eaten.load(Ordering::SeqCst) as i32,
                    _ => return default_wput(q, mp),
                };
                // SAFETY: inside the put procedure; the M_IOCTL is ours.
                unsafe { miocack(q.as_ptr(), mp.into_raw(), 0, rval) };
            }
            M_FLUSH => driver_flush(q, mp),
            _ => {
                if let Err(mp) = q.putq(mp) {
                    drop(mp);
                }
            }
        }
    }
    fn wsrv(&self, q: QRef<'_>) {
        while self.gate.load(Ordering::SeqCst) {
            let Some(mp) = q.getq() else { break };
            self.log.lock().unwrap().extend_from_slice(mp.data());
            self.eaten.fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// A driver that queues everything it gets on its write queue (no service procedure), so
/// a test can look at what arrived, in order, with the raw queue functions.
pub struct Hold;

impl Module for Hold {
    const INFO: ModuleInfo = info("hold", 1 << 20, 1 << 19);
    fn open(_q: QRef<'_>, _ctx: &mut OpenCtx) -> Result<Self, i32> {
        Ok(Hold)
    }
    fn wput(&self, q: QRef<'_>, mp: Msg) {
        match mp.msg_type() {
            M_FLUSH => driver_flush(q, mp),
            _ => {
                if let Err(mp) = q.putq(mp) {
                    drop(mp);
                }
            }
        }
    }
}

pub fn register_all(sx: &Streams) {
    sx.register_module::<Nullmod>().unwrap();
    sx.register_module::<Svcmod>().unwrap();
    sx.register_module::<Counter>().unwrap();
    sx.register_module::<Panicky>().unwrap();
    sx.register_module::<Refuser>().unwrap();
    sx.register_driver::<Loop>().unwrap();
    sx.register_driver::<Sink>().unwrap();
    sx.register_driver::<Hold>().unwrap();
}
