//! The put path's fast cases and the hand-off: a panic deep in a stack of modules, the
//! stream head's cached flow-control target (`q_nfsrv`) across I_PUSH, I_POP, qprocsoff,
//! qprocson and setq, and writer/reader threads handing many messages over through worker
//! threads (spinning, then parking).

mod common;

use common::mods::*;
use common::*;
use streams_core::*;

fn text(s: &[u8]) -> Msg {
    msg_of(M_DATA, s).unwrap()
}

#[test]
fn a_panic_in_the_third_of_four_modules_is_reported_and_the_stream_goes_on() {
    in_arena("panic3", |arena| {
        let sx = executive(arena);
        let s = sx.open("loop", 0).unwrap();
        // From the head down: nullmod, nullmod, panicky, nullmod, then the driver.
        for m in ["nullmod", "panicky", "nullmod", "nullmod"] {
            s.push(m).unwrap();
        }
        assert_eq!(s.modules(), ["nullmod", "nullmod", "panicky", "nullmod"]);
        s.write(text(b"one")).unwrap();
        s.write(text(b"boom")).unwrap();
        s.write(text(b"two")).unwrap();
        assert_the_panic_was_reported_and_the_rest_delivered(&sx, &s);
        assert!(s.read().unwrap().is_none());
        // Later messages take the same path, both ways.
        for i in 0..10u8 {
            s.write(text(&[i])).unwrap();
        }
        for i in 0..10u8 {
            assert_eq!(s.read().unwrap().unwrap().data(), [i]);
        }
        assert!(sx.take_errors().is_empty());
        for _ in 0..4 {
            s.pop().unwrap();
        }
    });
}

fn write_until_blocked(s: &Stream, max: usize) -> usize {
    for n in 0..max {
        if let Err((e, m)) = s.write(text(&[0x55; 32])) {
            assert_eq!(e, EAGAIN);
            drop(m);
            return n;
        }
    }
    panic!("no flow control after {max} writes");
}

#[test]
fn the_heads_flow_control_target_follows_push_pop_and_qprocsoff() {
    in_arena("nfsrv", |arena| {
        let sx = executive(arena);
        // The sink's write queue (service procedure, hiwat 64) is the head's target.
        let s = sx.open("sink", 0).unwrap();
        assert_eq!(write_until_blocked(&s, 100), 3, "32 + 32 + 32 > 64");
        assert!(!s.writable());
        // A module with a service procedure in between is the target now: its queue is empty.
        s.push("svcmod").unwrap();
        assert!(s.writable());
        s.write(text(b"held by svcmod")).unwrap();
        // Popped (its queue freed with it): the full sink is the target again.
        s.pop().unwrap();
        assert_eq!(s.write(text(b"x")).map_err(|e| e.0), Err(EAGAIN));
        // The sink drains: room again, seen by the head's write (not the freed queue).
        s.ioctl(SINK_OPEN, None).unwrap();
        sx.run_until_idle();
        s.write(text(b"y")).unwrap();
        // A module without a service procedure is looked past.
        s.push("nullmod").unwrap();
        s.ioctl(SINK_CLOSE, None).unwrap();
        assert_eq!(write_until_blocked(&s, 100), 2, "1 + 32 + 32 > 64");
        assert!(!s.writable());
        s.ioctl(SINK_OPEN, None).unwrap();
        sx.run_until_idle();
        assert!(s.writable());
        s.write(text(b"z")).unwrap();
        // Procedures off on the target: no room; back on: room.
        // SAFETY: the driver's read queue of the open stream, outside its procedures.
        unsafe { qprocsoff(s.driver_rq()) };
        assert!(!s.writable());
        assert_eq!(s.write(text(b"w")).map_err(|e| e.0), Err(EAGAIN));
        // SAFETY: as above.
        unsafe { qprocson(s.driver_rq()) };
        assert!(s.writable());
        s.write(text(b"w")).unwrap();
        // (qprocsoff dropped the pending enable of the sink's service procedure: the
        // ioctl enables it again.)
        s.ioctl(SINK_OPEN, None).unwrap();
        sx.run_until_idle();
        let r = s.ioctl(SINK_COUNT, None).unwrap();
        assert_eq!(r.rval, 8, "three first messages, y, two more, z and w");
        s.pop().unwrap();
    });
}

/// A C-style module for the `setq` test: `plain` passes messages through; `hold`'s write
/// side queues them for a service procedure that never takes any (hiwat 8).
mod raw {
    use streams_core::*;

    pub static PLAIN_MI: ModuleInfo = ModuleInfo {
        mi_idnum: 77,
        mi_idname: "plain",
        mi_minpsz: 0,
        mi_maxpsz: INFPSZ,
        mi_hiwat: 5120,
        mi_lowat: 1024,
    };
    pub static HOLD_MI: ModuleInfo =
        ModuleInfo { mi_idnum: 78, mi_idname: "hold8", mi_minpsz: 0, mi_maxpsz: INFPSZ, mi_hiwat: 8, mi_lowat: 4 };

    unsafe fn pass(q: *mut Queue, mp: *mut Mblk) -> i32 {
        // SAFETY: the put procedure's contract.
        unsafe { putnext(q, mp) };
        0
    }

    unsafe fn queue_it(q: *mut Queue, mp: *mut Mblk) -> i32 {
        // SAFETY: the put procedure's contract.
        if unsafe { putq(q, mp) } == 0 {
            // SAFETY: refused: still ours.
            unsafe { freemsg(mp) };
        }
        0
    }

    unsafe fn never(_q: *mut Queue) -> i32 {
        0
    }

    pub static PLAIN_R: QInit =
        QInit { qi_putp: Some(pass), qi_srvp: None, qi_qopen: None, qi_qclose: None, qi_minfo: &PLAIN_MI };
    pub static PLAIN_W: QInit =
        QInit { qi_putp: Some(pass), qi_srvp: None, qi_qopen: None, qi_qclose: None, qi_minfo: &PLAIN_MI };
    pub static TAB: StreamTab = StreamTab { st_rdinit: &PLAIN_R, st_wrinit: &PLAIN_W };
    pub static HOLD_R: QInit =
        QInit { qi_putp: Some(pass), qi_srvp: None, qi_qopen: None, qi_qclose: None, qi_minfo: &HOLD_MI };
    pub static HOLD_W: QInit =
        QInit { qi_putp: Some(queue_it), qi_srvp: Some(never), qi_qopen: None, qi_qclose: None, qi_minfo: &HOLD_MI };
}

#[test]
fn setq_on_a_plumbed_pair_is_seen_by_the_heads_flow_control() {
    in_arena("setq_nfsrv", |arena| {
        let sx = executive(arena);
        sx.register_raw(&raw::TAB, Kind::Module, SyncLevel::Mp).unwrap();
        let s = sx.open("loop", 0).unwrap();
        s.push("plain").unwrap();
        s.write(text(b"through")).unwrap();
        assert_eq!(s.read().unwrap().unwrap().data(), b"through");
        // Find the module's read queue: the one below the head's write queue, other side.
        // SAFETY: live queues of the open stream; no procedure runs (one thread, no workers).
        let mod_wq = unsafe { &*s.head_wq() }.next();
        // SAFETY: as above.
        let mod_rq = unsafe { OTHERQ(mod_wq) };
        // SAFETY: the read queue of a live pair that no procedure is using; static qinits.
        unsafe { setq(mod_rq, &raw::HOLD_R, &raw::HOLD_W) };
        // Now the module's write queue, with a service procedure, is the target.
        s.write(text(&[1; 16])).unwrap();
        assert_eq!(s.write(text(b"x")).map_err(|e| e.0), Err(EAGAIN), "16 bytes > hiwat 8 on the new target");
        assert!(!s.writable());
        // Popping frees what it holds.
        s.pop().unwrap();
        s.write(text(b"again")).unwrap();
        assert_eq!(s.read().unwrap().unwrap().data(), b"again");
    });
}

#[test]
fn the_in_place_put_follows_qprocsoff_qprocson_and_perimeters() {
    // `putnext` calls a put procedure in place only while the queue's procedures are on and
    // it has no perimeter (a pointer refreshed whenever either or the qinit changes); turned
    // off and on again, a module holds and then delivers, with or without a perimeter.
    for sync in [SyncLevel::Mp, SyncLevel::QueuePair, SyncLevel::Module] {
        in_arena("in_place_put", |arena| {
            let sx = executive(arena);
            sx.register_raw(&raw::TAB, Kind::Module, sync).unwrap();
            let s = sx.open("loop", 0).unwrap();
            s.push("plain").unwrap();
            // SAFETY: live queues of the open stream.
            let mod_wq = unsafe { &*s.head_wq() }.next();
            for round in 0..3u8 {
                s.write(text(&[round])).unwrap();
                assert_eq!(s.read().unwrap().unwrap().data(), [round], "{sync:?}: through");
                // SAFETY: the module's pair; no procedure of it runs (one thread).
                unsafe { qprocsoff(mod_wq) };
                s.write(text(&[round, 1])).unwrap();
                // SAFETY: live queue.
                assert_eq!(unsafe { qsize(mod_wq) }, 1, "{sync:?}: held while procedures are off");
                assert!(s.read().unwrap().is_none());
                // SAFETY: as above.
                unsafe { qprocson(mod_wq) };
                assert_eq!(s.read().unwrap().unwrap().data(), [round, 1], "{sync:?}: delivered when back on");
            }
        });
    }
}

/// Writer and reader threads hand `n` numbered messages over through `workers` worker
/// threads running service procedures (svcmod over the loopback driver): all arrive, in
/// order, and all memory comes back.
fn hand_over(name: &str, workers: usize, n: u32) {
    in_arena(name, |arena| {
        let sx = Streams::builder().arena(arena).name(name).workers(workers).build();
        register_all(&sx);
        let s = sx.open("loop", 0).unwrap();
        s.push("svcmod").unwrap();
        std::thread::scope(|t| {
            t.spawn(|| {
                let _a = arena.enter();
                for i in 0..n {
                    s.write_wait(text(&i.to_le_bytes())).map_err(|e| e.0).unwrap();
                }
            });
            for i in 0..n {
                let m = s.read_wait().unwrap().expect("a message, not end of file");
                assert_eq!(m.data(), i.to_le_bytes(), "message {i} in order");
            }
        });
        assert!(s.read().unwrap().is_none());
        s.close();
        drop(s);
        sx.run_until_idle();
        drop(sx);
    });
}

#[test]
fn one_worker_hands_many_messages_over_in_order() {
    hand_over("handoff1", 1, if cfg!(miri) { 200 } else { 100_000 });
}

#[test]
fn two_workers_hand_many_messages_over_in_order() {
    hand_over("handoff2", 2, if cfg!(miri) { 200 } else { 100_000 });
}
