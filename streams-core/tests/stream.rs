//! Streams: open, I_PUSH/I_POP by name, write and read through a loopback driver, M_FLUSH
//! across three modules with bands, M_IOCTL ack/nak, M_ERROR, M_HANGUP, qprocsoff, a
//! panicking put procedure, close freeing everything.

mod common;

use common::mods::*;
use common::*;
use streams_core::*;

fn text(t: MsgType, s: &[u8], band: u8) -> Msg {
    let mut m = msg_of(t, s).unwrap();
    m.set_band(band);
    m
}

#[test]
fn write_goes_down_and_the_loopback_reply_waits_at_the_head() {
    in_arena("loop", |arena| {
        let sx = executive(arena);
        let s = sx.open("loop", 0).unwrap();
        s.write(text(M_DATA, b"hello", 0)).unwrap();
        s.write(text(M_PROTO, b"proto", 0)).unwrap();
        let a = s.read().unwrap().unwrap();
        assert_eq!(a.data(), b"hello");
        let b = s.read().unwrap().unwrap();
        assert_eq!((b.msg_type(), b.data()), (M_PROTO, &b"proto"[..]));
        assert!(s.read().unwrap().is_none());
    });
}

#[test]
fn push_and_pop_modules_by_name() {
    in_arena("push_pop", |arena| {
        let sx = executive(arena);
        let s = sx.open("loop", 0).unwrap();
        s.push("nullmod").unwrap();
        s.push("counter").unwrap();
        s.push("svcmod").unwrap();
        assert_eq!(s.modules(), ["svcmod", "counter", "nullmod"]);
        assert_eq!(s.push("nosuch"), Err(EINVAL));
        assert_eq!(s.push("loop"), Err(EINVAL), "a driver cannot be pushed");
        assert_eq!(s.push("refuser"), Err(EPERM), "the module's open errno");
        assert_eq!(s.modules(), ["svcmod", "counter", "nullmod"]);
        for i in 0..5u8 {
            s.write(text(M_DATA, &[b'0' + i], 0)).unwrap();
        }
        sx.run_until_idle();
        let mut got = Vec::new();
        while let Some(m) = s.read().unwrap() {
            got.push(m.data()[0]);
        }
        assert_eq!(got, b"01234");
        s.pop().unwrap();
        let r = s.ioctl(COUNT_IOCTL, None).unwrap();
        assert_eq!(r.rval, 5 << 16 | 5, "the counter saw every message both ways");
        s.pop().unwrap();
        s.pop().unwrap();
        assert_eq!(s.pop(), Err(EINVAL));
        assert!(s.modules().is_empty());
        s.write(text(M_DATA, b"x", 0)).unwrap();
        assert_eq!(s.read().unwrap().unwrap().data(), b"x");
    });
}

#[test]
fn open_of_an_unknown_driver_or_a_module_fails() {
    in_arena("open_fail", |arena| {
        let sx = executive(arena);
        assert_eq!(sx.open("nosuch", 0).err(), Some(EINVAL));
        assert_eq!(sx.open("nullmod", 0).err(), Some(EINVAL));
    });
}

/// A driver whose open fails.
struct RefusingDriver;

impl Module for RefusingDriver {
    const INFO: ModuleInfo =
        ModuleInfo { mi_idnum: 9, mi_idname: "nodrv", mi_minpsz: 0, mi_maxpsz: INFPSZ, mi_hiwat: 64, mi_lowat: 16 };
    fn open(_q: QRef<'_>, _ctx: &mut OpenCtx) -> Result<Self, i32> {
        Err(ENXIO)
    }
}

#[test]
fn a_driver_open_that_fails_gives_its_errno_and_frees_both_pairs() {
    // in_arena checks that the head pair (freed with the stream's state) and the driver's
    // pair came back.
    in_arena("drv_open_fail", |arena| {
        let sx = executive(arena);
        sx.register_driver::<RefusingDriver>().unwrap();
        assert_eq!(sx.open("nodrv", 0).err(), Some(ENXIO));
        assert!(sx.open("loop", 0).is_ok(), "another open still works");
    });
}

#[test]
fn ioctl_is_acknowledged_or_refused() {
    in_arena("ioctl", |arena| {
        let sx = executive(arena);
        let s = sx.open("loop", 0).unwrap();
        s.push("nullmod").unwrap();
        let r = s.ioctl(LOOP_ACK, Some(Msg::from_slice(b"data").unwrap())).unwrap();
        assert_eq!(r.rval, 42);
        assert_eq!(r.data.unwrap().data(), b"data");
        assert_eq!(s.ioctl(LOOP_NAK, None).err(), Some(EPERM));
        assert_eq!(s.ioctl(0x7777, None).err(), Some(EINVAL), "the driver's default refuses");
    });
}

#[test]
fn m_flush_across_three_modules_flushes_each_side_and_comes_back() {
    in_arena("flush3", |arena| {
        let sx = executive(arena);
        let s = sx.open("hold", 0).unwrap();
        for _ in 0..3 {
            s.push("svcmod").unwrap();
        }
        // Data waits on every write queue (the service procedures are not run) and in the
        // driver (which holds everything).
        s.write(text(M_DATA, b"d0", 0)).unwrap();
        s.write(text(M_DATA, b"d1", 1)).unwrap();
        let wqs = write_queues(&s);
        assert_eq!(wqs.len(), 4, "three modules and the driver");
        sx.run_until_idle();
        // Everything went down to the driver's write queue.
        // SAFETY: live queues of the open stream; nothing runs concurrently.
        let held = |q: *mut Queue| unsafe { qsize(q) };
        assert_eq!(held(wqs[3]), 2);
        // Put upstream data on every module's read queue by writing upward from the driver:
        // reply messages through the hold driver's read side.
        for band in [0u8, 1, 1, 2] {
            let mut m = text(M_DATA, b"up", band);
            m.set_band(band);
            // SAFETY: the driver's read queue of the open stream.
            unsafe { streams_core::put(s.driver_rq(), m.into_raw()) };
        }
        // The svcmod read put procedures queued the upstream data (services not run).
        let rqs: Vec<_> = wqs
            .iter()
            .map(|&q| {
                // SAFETY: a live pair.
                unsafe { OTHERQ(q) }
            })
            .collect();
        assert_eq!(held(rqs[2]), 4, "the lowest module's read queue holds the upstream data");
        // FLUSHBAND of band 1 on the read side only.
        s.flushband(1, FLUSHR).unwrap();
        assert_eq!(held(rqs[2]), 2, "band 1 flushed on the read side");
        assert_eq!(held(wqs[3]), 2, "write side untouched");
        // FLUSHW: the driver's write queue is flushed; the read side keeps its data.
        s.flush(FLUSHW).unwrap();
        assert_eq!(held(wqs[3]), 0);
        assert_eq!(held(rqs[2]), 2);
        // FLUSHRW: everything; the driver reflects FLUSHR up to the head.
        s.write(text(M_DATA, b"w", 0)).unwrap();
        assert_eq!(held(wqs[0]), 1, "waits on the top module's write queue");
        s.flush(FLUSHRW).unwrap();
        for (&w, &r) in wqs.iter().zip(&rqs) {
            assert_eq!(held(w), 0);
            assert_eq!(held(r), 0);
        }
        sx.run_until_idle();
        assert!(s.read().unwrap().is_none(), "nothing reached the head");
    });
}

/// The write queues of a stream, top first, driver last.
fn write_queues(s: &Stream) -> Vec<*mut Queue> {
    let mut v = Vec::new();
    // SAFETY: the head write queue of an open stream; nothing re-plumbs it meanwhile.
    let mut q = unsafe { &*s.head_wq() }.next();
    while !q.is_null() {
        v.push(q);
        // SAFETY: live queues of the stream.
        q = unsafe { &*q }.next();
    }
    v
}

#[test]
fn flush_at_the_head_flushes_its_read_queue() {
    in_arena("head_flush", |arena| {
        let sx = executive(arena);
        let s = sx.open("loop", 0).unwrap();
        s.write(text(M_DATA, b"a", 0)).unwrap();
        s.write(text(M_DATA, b"b", 2)).unwrap();
        s.flushband(2, FLUSHR).unwrap();
        assert_eq!(s.read().unwrap().unwrap().data(), b"a");
        assert!(s.read().unwrap().is_none(), "band 2 flushed at the head");
        s.write(text(M_DATA, b"c", 0)).unwrap();
        s.flush(FLUSHR).unwrap();
        assert!(s.read().unwrap().is_none());
    });
}

#[test]
fn m_error_sets_the_errors_and_m_hangup_ends_writes() {
    in_arena("error_hangup", |arena| {
        let sx = executive(arena);
        let s = sx.open("hold", 0).unwrap();
        let drv_rq = s.driver_rq();
        // SAFETY: the driver's read queue of the open stream.
        unsafe { streams_core::put(drv_rq, text(M_DATA, b"before", 0).into_raw()) };
        // SAFETY: as above.
        unsafe { streams_core::put(drv_rq, text(M_HANGUP, b"", 0).into_raw()) };
        assert!(s.is_hungup());
        let m = text(M_DATA, b"x", 0);
        assert_eq!(s.write(m).err().map(|e| e.0), Some(ENXIO));
        assert_eq!(s.read().unwrap().unwrap().data(), b"before", "queued data is still read");
        assert!(s.read().unwrap().is_none(), "then end of file");
        // SAFETY: as above.
        unsafe { streams_core::put(drv_rq, text(M_UNHANGUP, b"", 0).into_raw()) };
        assert!(!s.is_hungup());
        // SAFETY: as above.
        unsafe { streams_core::put(drv_rq, text(M_ERROR, &[EIO as u8, NOERROR], 0).into_raw()) };
        assert_eq!(s.errors(), (EIO, 0));
        assert_eq!(s.read().err(), Some(EIO));
        s.write(text(M_DATA, b"still writable", 0)).unwrap();
        // SAFETY: as above.
        unsafe { streams_core::put(drv_rq, text(M_ERROR, &[0, EPERM as u8], 0).into_raw()) };
        assert_eq!(s.errors(), (0, EPERM));
        assert_eq!(s.write(text(M_DATA, b"x", 0)).err().map(|e| e.0), Some(EPERM));
    });
}

#[test]
fn a_put_procedure_that_panics_leaves_the_stream_consistent() {
    in_arena("panic", |arena| {
        let sx = executive(arena);
        let s = sx.open("loop", 0).unwrap();
        s.push("panicky").unwrap();
        s.write(text(M_DATA, b"one", 0)).unwrap();
        s.write(text(M_DATA, b"boom", 0)).unwrap();
        s.write(text(M_DATA, b"two", 0)).unwrap();
        assert_the_panic_was_reported_and_the_rest_delivered(&sx, &s);
        s.pop().unwrap();
    });
}

#[test]
fn qprocsoff_holds_messages_until_qprocson() {
    in_arena("procsoff", |arena| {
        let sx = executive(arena);
        let s = sx.open("loop", 0).unwrap();
        s.push("nullmod").unwrap();
        let top = write_queues(&s)[0];
        // SAFETY: the module's pair; no procedure of it runs.
        unsafe { qprocsoff(top) };
        s.write(text(M_DATA, b"held", 0)).unwrap();
        // SAFETY: live queue.
        assert_eq!(unsafe { qsize(top) }, 1, "procedures off: the message waits on the queue");
        assert!(s.read().unwrap().is_none());
        // SAFETY: as above.
        unsafe { qprocson(top) };
        assert_eq!(s.read().unwrap().unwrap().data(), b"held", "delivered when procedures come back on");
    });
}

#[test]
fn close_frees_queues_modules_and_messages_everywhere() {
    in_arena("close", |arena| {
        let sx = executive(arena);
        let s = sx.open("hold", 0).unwrap();
        s.push("svcmod").unwrap();
        s.push("counter").unwrap();
        s.write(text(M_DATA, b"on the svcmod queue", 0)).unwrap();
        s.write(text(M_DATA, b"band", 5)).unwrap();
        // SAFETY: the driver's read queue of the open stream.
        unsafe { streams_core::put(s.driver_rq(), text(M_DATA, b"up", 0).into_raw()) };
        s.close();
        s.close();
        assert_eq!(s.write(text(M_DATA, b"x", 0)).err().map(|e| e.0), Some(EINVAL));
    });
}

#[test]
fn reads_racing_close_take_messages_or_none_and_everything_is_freed() {
    // `read` takes no plumbing lock: the head's pair stays allocated until the `Stream` is
    // dropped, so a reader on another thread racing `close` either takes a message or finds
    // none; every message is freed exactly once (the arena's count comes back to 0).
    for round in 0..n(20, 2) {
        in_arena("read_close_race", |arena| {
            let sx = executive(arena);
            let s = sx.open("loop", 0).unwrap();
            s.push("nullmod").unwrap();
            let sent = n(200, 8);
            for i in 0..sent {
                s.write(text(M_DATA, &[i as u8], 0)).unwrap();
            }
            let closed = std::sync::atomic::AtomicBool::new(false);
            let got = std::thread::scope(|sc| {
                let reader = sc.spawn(|| {
                    let _a = arena.enter();
                    let mut got = Vec::new();
                    loop {
                        // Read before the read: `None` after `close` returned means done.
                        let done = closed.load(std::sync::atomic::Ordering::Acquire);
                        match s.read().unwrap() {
                            Some(m) => got.push(m.data()[0]),
                            None if done => return got,
                            None => std::thread::yield_now(),
                        }
                    }
                });
                if round % 2 == 1 {
                    std::thread::yield_now();
                }
                s.close();
                closed.store(true, std::sync::atomic::Ordering::Release);
                reader.join().unwrap()
            });
            let want: Vec<u8> = (0..got.len()).map(|i| i as u8).collect();
            assert_eq!(got, want, "a prefix, in order");
            assert!(s.read().unwrap().is_none(), "nothing after close");
        });
    }
}

#[test]
fn close_with_the_head_full_and_a_writer_waiting_below_frees_everything() {
    // svcmod's read side fills the head (STRHIGH) and waits on it (QWANTW on the head's
    // read queue); closing flushes the head after the driver is gone, and the back-enable
    // that flush would ask for must not walk into the freed driver.
    in_arena("close_full_head", |arena| {
        let sx = executive(arena);
        let s = sx.open("loop", 0).unwrap();
        s.push("svcmod").unwrap();
        for i in 0..n(100, 60) {
            s.write(text(M_DATA, &[i as u8; 100], 0)).unwrap();
            sx.run_until_idle();
        }
        // SAFETY: the head's read queue of the open stream.
        assert_ne!(unsafe { &*s.head_rq() }.flag() & QFULL, 0, "the head is full");
        s.close();
        assert!(s.read().unwrap().is_none());
    });
}

#[test]
fn high_priority_writes_pass_flow_control() {
    in_arena("hipri_write", |arena| {
        let sx = executive(arena);
        let s = sx.open("sink", 0).unwrap();
        // The sink's write queue (hiwat 64) fills: 70 bytes.
        s.write(text(M_DATA, &[1; 70], 0)).unwrap();
        let m = text(M_DATA, b"x", 0);
        assert_eq!(s.write(m).err().map(|e| e.0), Some(EAGAIN));
        assert!(!s.writable());
        s.write(text(M_PCPROTO, b"urgent", 0)).unwrap();
        s.write(text(M_DATA, b"band 3 is empty", 3)).unwrap();
    });
}

mod raw_module {
    //! A module written as a C porter would: raw procedures, a streamtab, a queue-pair
    //! perimeter, private data in `q_ptr`.
    use std::ffi::c_void;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use streams_core::*;

    pub static SEEN: AtomicUsize = AtomicUsize::new(0);

    static MI: ModuleInfo = ModuleInfo {
        mi_idnum: 77,
        mi_idname: "rawmod",
        mi_minpsz: 0,
        mi_maxpsz: INFPSZ,
        mi_hiwat: 5120,
        mi_lowat: 1024,
    };

    unsafe fn rawmod_put(q: *mut Queue, mp: *mut Mblk) -> i32 {
        // SAFETY: the put procedure's queue is live.
        let p = unsafe { (*q).ptr() }.cast::<AtomicUsize>();
        // SAFETY: q_ptr was set by open to a static counter.
        let count = unsafe { &*p };
        count.fetch_add(1, Ordering::Relaxed);
        // SAFETY: inside the put procedure; the message is ours to pass on.
        unsafe { putnext(q, mp) };
        0
    }

    unsafe fn rawmod_open(q: *mut Queue, _devp: *mut Dev, _o: i32, sflag: i32, _c: *const Cred) -> i32 {
        if sflag != MODOPEN {
            return ENXIO;
        }
        let p = std::ptr::from_ref(&SEEN).cast_mut().cast::<c_void>();
        // SAFETY: the read queue of a live pair being opened.
        unsafe {
            (*q).set_ptr(p);
        }
        // SAFETY: as above.
        let wq = unsafe { WR(q) };
        // SAFETY: as above.
        unsafe { (*wq).set_ptr(p) };
        // SAFETY: as above: turn procedures on, as a Solaris open must.
        unsafe { qprocson(q) };
        0
    }

    unsafe fn rawmod_close(q: *mut Queue, _o: i32, _c: *const Cred) -> i32 {
        // SAFETY: the read queue of a live pair being closed.
        unsafe { qprocsoff(q) };
        0
    }

    static RINIT: QInit = QInit {
        qi_putp: Some(rawmod_put),
        qi_srvp: None,
        qi_qopen: Some(rawmod_open),
        qi_qclose: Some(rawmod_close),
        qi_minfo: &MI,
    };
    static WINIT: QInit =
        QInit { qi_putp: Some(rawmod_put), qi_srvp: None, qi_qopen: None, qi_qclose: None, qi_minfo: &MI };
    pub static TAB: StreamTab = StreamTab { st_rdinit: &RINIT, st_wrinit: &WINIT };
}

#[test]
fn a_raw_c_style_module_registers_pushes_and_passes_messages() {
    in_arena("raw_module", |arena| {
        let sx = executive(arena);
        sx.register_raw(&raw_module::TAB, Kind::Module, SyncLevel::QueuePair).unwrap();
        sx.register_raw(&raw_module::TAB, Kind::Module, SyncLevel::QueuePair).unwrap();
        assert!(matches!(sx.register_module::<Nullmod>(), Ok(())), "same module again: no-op");
        assert!(
            matches!(sx.register_driver::<Nullmod>(), Err(StreamsError::AlreadyRegistered { name: "nullmod" })),
            "the name is taken by a module"
        );
        let s = sx.open("loop", 0).unwrap();
        s.push("rawmod").unwrap();
        s.push("nullmod").unwrap();
        s.push("rawmod").unwrap();
        let before = raw_module::SEEN.load(std::sync::atomic::Ordering::Relaxed);
        s.write(text(M_DATA, b"raw", 0)).unwrap();
        assert_eq!(s.read().unwrap().unwrap().data(), b"raw");
        let after = raw_module::SEEN.load(std::sync::atomic::Ordering::Relaxed);
        assert_eq!(after - before, 4, "two instances, both directions");
        assert_eq!(s.modules(), ["rawmod", "nullmod", "rawmod"]);
    });
}
