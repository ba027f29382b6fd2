//! A thread-confined executive (`LocalStreams`): the same streams as a shared one, with its
//! queue locks confined to its thread: used there it behaves as a shared executive; used on
//! another thread (through raw queue pointers or the `Streams` handle) it panics before
//! touching a queue; re-plumbing from inside the stream is refused; every byte returned.

mod common;

use common::mods::*;
use common::*;
use ddi_kmem::Arena;
use std::cell::Cell;
use streams_core::*;

fn local(arena: &Arena) -> LocalStreams {
    let lx = Streams::builder().arena(arena).name("local").build_local();
    register_all(lx.streams());
    lx
}

fn text(t: MsgType, s: &[u8], band: u8) -> Msg {
    let mut m = msg_of(t, s).unwrap();
    m.set_band(band);
    m
}

/// The panic message of a thread that panicked.
fn panic_text(e: Box<dyn std::any::Any + Send>) -> String {
    e.downcast_ref::<String>().cloned().or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string())).unwrap_or_default()
}

#[test]
fn a_confined_stream_carries_messages_as_a_shared_one_does() {
    in_arena("local_carry", |arena| {
        let lx = local(arena);
        let s = lx.open("loop", 0).unwrap();
        s.push("nullmod").unwrap();
        s.push("counter").unwrap();
        s.push("svcmod").unwrap();
        assert_eq!(s.modules(), ["svcmod", "counter", "nullmod"]);
        let n: u8 = if cfg!(miri) { 20 } else { 200 };
        for i in 0..n {
            s.write(text(M_DATA, &[i], 0)).unwrap();
        }
        s.write(text(M_PROTO, b"p", 0)).unwrap();
        lx.run_until_idle();
        let mut got = Vec::new();
        while let Some(m) = s.read().unwrap() {
            got.push((m.msg_type(), m.data()[0]));
        }
        let want: Vec<_> = (0..n).map(|i| (M_DATA, i)).chain([(M_PROTO, b'p')]).collect();
        assert_eq!(got, want, "every message, in order, through a service procedure too");
        s.pop().unwrap();
        let r = s.ioctl(COUNT_IOCTL, None).unwrap();
        let seen = i32::from(n) + 1;
        assert_eq!(r.rval, seen << 16 | seen, "the counter saw every message both ways");
        // Flow control and the waiting calls run the scheduler on this thread.
        s.write_wait(text(M_DATA, b"w", 0)).unwrap();
        assert_eq!(s.read_wait().unwrap().unwrap().data(), b"w");
        s.write(text(M_DATA, b"left on the head", 0)).unwrap();
        s.close();
        assert_eq!(s.write(text(M_DATA, b"x", 0)).map_err(|(e, _)| e), Err(EINVAL), "closed");
        drop(s);
        assert!(lx.streams().take_errors().is_empty());
    });
}

#[test]
fn the_head_of_a_confined_stream_applies_flow_control_and_m_error() {
    in_arena("local_flow", |arena| {
        let lx = local(arena);
        let s = lx.open("hold", 0).unwrap();
        let mut sent = 0;
        while s.write(text(M_DATA, &[0; 8192], 0)).is_ok() {
            sent += 1;
            assert!(sent < 10_000, "flow control never refused");
        }
        assert!(!s.writable(), "the driver's queue is full");
        assert!(sent > 0);
        // SAFETY: the driver's read queue of a live stream, on its thread; the message is
        // given away.
        unsafe { streams_core::put(s.driver_rq(), msg_of(M_ERROR, &[EIO as u8]).unwrap().into_raw()) };
        assert_eq!(s.read().map(|m| m.is_some()), Err(EIO), "M_ERROR reached the head");
    });
}

#[test]
fn a_confined_executive_refuses_worker_threads() {
    let r = std::panic::catch_unwind(|| Streams::builder().workers(1).build_local());
    let text = panic_text(r.expect_err("workers were accepted"));
    assert!(text.contains("build_local") && text.contains("no worker threads"), "{text}");
}

#[test]
fn streams_open_refuses_a_confined_executive() {
    in_arena("local_open", |arena| {
        let lx = local(arena);
        assert_eq!(lx.streams().open("loop", 0).map(|_| ()), Err(EPERM), "a Stream could leave the thread");
        let s = lx.open("loop", 0).unwrap();
        s.write(text(M_DATA, b"ok", 0)).unwrap();
        assert_eq!(s.read().unwrap().unwrap().data(), b"ok");
    });
}

/// A raw queue pointer handed to another thread (the misuse under test).
struct QueuePtr(*mut Queue);
// SAFETY: only sent to show that using it there is refused.
unsafe impl Send for QueuePtr {}

#[test]
fn a_confined_queue_used_on_another_thread_panics_before_touching_it() {
    in_arena("local_foreign", |arena| {
        let lx = local(arena);
        let s = lx.open("loop", 0).unwrap();
        s.write(text(M_DATA, b"queued", 0)).unwrap();
        let head = QueuePtr(s.head_rq());
        let sx = lx.streams();
        std::thread::scope(|t| {
            let raw = t.spawn(move || {
                let head = head;
                // SAFETY: a live queue; the call is the misuse under test, refused by a
                // panic before the queue is touched.
                unsafe { qsize(head.0) }
            });
            let text = panic_text(raw.join().expect_err("the foreign qsize ran"));
            assert!(text.contains("thread-confined"), "{text}");
            let run = t.spawn(|| sx.run_until_idle());
            let text = panic_text(run.join().expect_err("the foreign run_until_idle ran"));
            assert!(text.contains("run_until_idle") && text.contains("confined"), "{text}");
            let enter = t.spawn(|| drop(sx.enter()));
            let text = panic_text(enter.join().expect_err("the foreign enter ran"));
            assert!(text.contains("Streams::enter"), "{text}");
            let open = t.spawn(|| sx.open("loop", 0).map(|_| ()));
            assert_eq!(open.join().unwrap(), Err(EPERM));
        });
        // Nothing was touched: the message is still there, the stream works on.
        // SAFETY: the live head queue, on its thread.
        assert_eq!(unsafe { qsize(s.head_rq()) }, 1);
        assert_eq!(s.read().unwrap().unwrap().data(), b"queued");
        s.write(text(M_DATA, b"again", 0)).unwrap();
        assert_eq!(s.read().unwrap().unwrap().data(), b"again");
    });
}

std::thread_local! {
    /// The stream the `Replumber` module acts on from inside its put procedure.
    static TARGET: Cell<*const LocalStream> = const { Cell::new(std::ptr::null()) };
    /// What its last attempt returned.
    static RESULT: Cell<Option<Result<(), i32>>> = const { Cell::new(None) };
}

/// A module that, handed an `M_PROTO` "pop"/"push"/"close", does that to its own stream from
/// inside its write put procedure (through a handle it kept), then passes the message on.
struct Replumber;

impl Module for Replumber {
    const INFO: ModuleInfo = ModuleInfo {
        mi_idnum: 77,
        mi_idname: "replumber",
        mi_minpsz: 0,
        mi_maxpsz: INFPSZ,
        mi_hiwat: 5120,
        mi_lowat: 1024,
    };
    fn open(_q: QRef<'_>, _ctx: &mut OpenCtx) -> Result<Self, i32> {
        Ok(Replumber)
    }
    fn wput(&self, q: QRef<'_>, mp: Msg) {
        let s = TARGET.get();
        if mp.msg_type() == M_PROTO && !s.is_null() {
            // SAFETY: the test sets TARGET to a stream it holds for the duration of the
            // write that calls this procedure, on this thread.
            let s = unsafe { &*s };
            let r = match mp.data() {
                b"pop" => s.pop(),
                b"push" => s.push("nullmod"),
                b"close" => {
                    s.close();
                    Ok(())
                }
                _ => Ok(()),
            };
            RESULT.set(Some(r));
        }
        q.putnext(mp);
    }
    fn rput(&self, q: QRef<'_>, mp: Msg) {
        q.putnext(mp);
    }
}

#[test]
fn replumbing_a_confined_stream_from_inside_it_is_refused() {
    let arena = reporting("local_inside");
    arena.run(|| {
        let lx = local(&arena);
        lx.streams().register_module::<Replumber>().unwrap();
        let s = lx.open("loop", 0).unwrap();
        s.push("replumber").unwrap();
        TARGET.set(&s);
        for (what, want) in [(&b"pop"[..], Err(EDEADLK)), (b"push", Err(EDEADLK)), (b"close", Ok(()))] {
            s.write(text(M_PROTO, what, 0)).unwrap();
            assert_eq!(RESULT.take(), Some(want), "{}", String::from_utf8_lossy(what));
            assert_eq!(s.read().unwrap().unwrap().data(), what, "the message went on through the stream");
        }
        TARGET.set(std::ptr::null());
        let calls: Vec<_> = take_errors(&arena)
            .into_iter()
            .map(|e| match e {
                StreamsError::InsideStream { call } => call,
                other => panic!("unexpected report {other}"),
            })
            .collect();
        assert_eq!(calls, ["I_POP", "I_PUSH", "close"]);
        assert_eq!(s.modules(), ["replumber"], "nothing was re-plumbed");
        s.write(text(M_DATA, b"still open", 0)).unwrap();
        assert_eq!(s.read().unwrap().unwrap().data(), b"still open");
        s.pop().unwrap();
        assert!(s.modules().is_empty(), "outside the stream, I_POP works");
    });
    assert_eq!(arena.bytes_in_use(), 0);
}
