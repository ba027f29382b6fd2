//! Scheduling: the LfS putq enabling rules, qenable/noenable/enableok, the deterministic
//! scheduler, an enable during a service run, and the worker pool (a service procedure never
//! runs concurrently with itself; perimeters exclude).

mod common;

use common::*;
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use streams_core::*;

thread_local! {
    static RUNS: Cell<usize> = const { Cell::new(0) };
    static REENABLE: Cell<bool> = const { Cell::new(false) };
}

static MI: ModuleInfo =
    ModuleInfo { mi_idnum: 9, mi_idname: "rawsrv", mi_minpsz: 0, mi_maxpsz: INFPSZ, mi_hiwat: 1000, mi_lowat: 100 };

/// A service procedure that counts its runs and (once, if asked) re-enables its queue.
unsafe fn count_srv(q: *mut Queue) -> i32 {
    RUNS.with(|r| r.set(r.get() + 1));
    if REENABLE.with(|r| r.replace(false)) {
        // SAFETY: inside the service procedure of a live queue.
        unsafe { qenable(q) };
    }
    0
}

unsafe fn put_nothing(_q: *mut Queue, mp: *mut Mblk) -> i32 {
    // SAFETY: the put procedure owns the message.
    unsafe { freemsg(mp) };
    0
}

static QI: QInit =
    QInit { qi_putp: Some(put_nothing), qi_srvp: Some(count_srv), qi_qopen: None, qi_qclose: None, qi_minfo: &MI };

fn runs() -> usize {
    RUNS.with(|r| r.replace(0))
}

/// A bare pair whose queues have a counting service procedure, in a fresh executive.
fn with_srv_queue(name: &str, f: impl FnOnce(*mut Queue)) {
    in_arena(name, |_| {
        let sx = Streams::new();
        let _e = sx.enter();
        let q = allocq();
        // SAFETY: a fresh pair.
        unsafe { setq(q, &QI, &QI) };
        runs();
        f(q);
        // SAFETY: ours, unused.
        unsafe { freeq(q) };
    });
}

fn pq(q: *mut Queue, bytes: &[u8], t: MsgType, band: u8) {
    let mp = block(bytes, t);
    mb(mp).b_band = band;
    // SAFETY: live queue, owned message.
    assert_eq!(unsafe { putq(q, mp) }, 1);
}

fn enabled(q: *mut Queue) -> bool {
    // SAFETY: live queue.
    unsafe { &*q }.flag() & QENAB != 0
}

fn take(q: *mut Queue) -> bool {
    // SAFETY: live queue.
    let mp = unsafe { getq(q) };
    let some = !mp.is_null();
    free(mp);
    some
}

#[test]
fn putq_enables_an_empty_wanted_queue_and_not_a_busy_one() {
    with_srv_queue("enable_rules", |q| {
        pq(q, b"a", M_DATA, 0);
        assert!(enabled(q), "first message on an empty queue with QWANTR");
        runqueues();
        assert_eq!(runs(), 1);
        assert!(!enabled(q));
        pq(q, b"b", M_DATA, 0);
        assert!(!enabled(q), "band 0 on a non-empty queue does not enable");
        assert!(take(q));
        // SAFETY: live queue.
        assert_eq!(unsafe { &*q }.flag() & QWANTR, 0, "getq of a message clears QWANTR");
        pq(q, b"c", M_DATA, 1);
        assert!(enabled(q), "a band message landing at the head enables");
        runqueues();
        assert_eq!(runs(), 1);
        while take(q) {}
        // SAFETY: live queue.
        assert_ne!(unsafe { &*q }.flag() & QWANTR, 0, "getq of an empty queue sets QWANTR");
        pq(q, b"d", M_DATA, 0);
        assert!(enabled(q));
        runqueues();
        assert_eq!(runs(), 1);
        while take(q) {}
    });
}

#[test]
fn noenable_stops_putq_but_not_high_priority_nor_qenable_and_enableok_does_not_schedule() {
    with_srv_queue("noenable", |q| {
        // SAFETY: live queue.
        unsafe { noenable(q) };
        pq(q, b"a", M_DATA, 0);
        assert!(!enabled(q), "QNOENB");
        pq(q, b"b", M_DATA, 3);
        assert!(!enabled(q), "QNOENB, banded");
        // SAFETY: live queue.
        unsafe { enableok(q) };
        assert!(!enabled(q), "enableok does not schedule");
        // SAFETY: live queue.
        unsafe { noenable(q) };
        pq(q, b"H", M_PCPROTO, 0);
        assert!(enabled(q), "high priority enables even with QNOENB");
        runqueues();
        assert_eq!(runs(), 1);
        // SAFETY: live queue.
        unsafe { qenable(q) };
        assert!(enabled(q), "qenable ignores QNOENB");
        runqueues();
        assert_eq!(runs(), 1);
        while take(q) {}
    });
}

#[test]
fn qenable_twice_runs_once_and_an_enable_during_the_run_is_not_lost() {
    with_srv_queue("enable_twice", |q| {
        // SAFETY: live queue.
        unsafe { qenable(q) };
        // SAFETY: live queue.
        unsafe { qenable(q) };
        runqueues();
        assert_eq!(runs(), 1, "a queue is on the run list once");
        REENABLE.with(|r| r.set(true));
        // SAFETY: live queue.
        unsafe { qenable(q) };
        runqueues();
        assert_eq!(runs(), 2, "enabled during its own run: runs again");
    });
}

#[test]
fn a_queue_without_a_service_procedure_is_never_enabled() {
    in_arena("no_srv", |_| {
        let q = allocq();
        pq(q, b"a", M_DATA, 0);
        // SAFETY: live queue.
        unsafe { qenable(q) };
        assert!(!enabled(q));
        // SAFETY: ours.
        unsafe { freeq(q) };
    });
}

/// A queue shared between the test's threads.
struct SendQ(*mut Queue);
// SAFETY: queues are shared between threads by design; their state is locked.
unsafe impl Send for SendQ {}
// SAFETY: as above.
unsafe impl Sync for SendQ {}

static INSIDE: AtomicBool = AtomicBool::new(false);
static OVERLAPS: AtomicUsize = AtomicUsize::new(0);
static POOL_RUNS: AtomicUsize = AtomicUsize::new(0);

unsafe fn exclusive_srv(q: *mut Queue) -> i32 {
    if INSIDE.swap(true, Ordering::SeqCst) {
        OVERLAPS.fetch_add(1, Ordering::SeqCst);
    }
    POOL_RUNS.fetch_add(1, Ordering::SeqCst);
    loop {
        // SAFETY: inside the service procedure.
        let mp = unsafe { getq(q) };
        if mp.is_null() {
            break;
        }
        // SAFETY: ours.
        unsafe { freemsg(mp) };
        std::thread::yield_now();
    }
    INSIDE.store(false, Ordering::SeqCst);
    0
}

static QX: QInit =
    QInit { qi_putp: Some(put_nothing), qi_srvp: Some(exclusive_srv), qi_qopen: None, qi_qclose: None, qi_minfo: &MI };

#[test]
fn the_worker_pool_never_runs_a_service_procedure_concurrently_with_itself() {
    let arena = ddi_kmem::Arena::builder().name("pool_excl").build();
    {
        let sx = Streams::builder().arena(&arena).workers(2).build();
        let _a = arena.enter();
        let _e = sx.enter();
        let q = allocq();
        // SAFETY: a fresh pair.
        unsafe { setq(q, &QX, &QX) };
        let n = n(2000, 50);
        let shared = SendQ(q);
        let shared = &shared;
        std::thread::scope(|s| {
            for t in 0..2u8 {
                let arena = arena.clone();
                s.spawn(move || {
                    let _a = arena.enter();
                    for i in 0..n {
                        pq(shared.0, &[t, i as u8], M_DATA, 0);
                        // SAFETY: a live queue, shared by design.
                        unsafe { qenable(shared.0) };
                    }
                });
            }
        });
        sx.run_until_idle();
        assert_eq!(OVERLAPS.load(Ordering::SeqCst), 0, "two runs of one service procedure overlapped");
        assert!(POOL_RUNS.load(Ordering::SeqCst) >= 1);
        // SAFETY: live queue, now idle.
        assert_eq!(unsafe { qsize(q) }, 0);
        // SAFETY: ours.
        unsafe { freeq(q) };
    }
    assert_eq!(arena.bytes_in_use(), 0);
}
