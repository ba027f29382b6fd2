//! loom model of the upkeep of the in-place put pointer (`queue.rs`: `Queue::fast_put`,
//! `refresh_fast_put`), run with `RUSTFLAGS="--cfg loom" cargo test --release -p
//! streams-core --test loom_fast_put`.
//!
//! `putnext` calls the pointer when it is set; it must be set only while the queue's
//! procedures are on and it has no perimeter. Each change of those (`qprocsoff`,
//! `qprocson`, the perimeter, `setq`) is followed by a refresh that reads the state and
//! stores the pointer under the queue's lock. The queue's lock and atomics are
//! `parking_lot`'s and `std`'s in the real code, which loom cannot run, so this models the
//! pattern with loom's: the state word, the lock, the pointer.
#![cfg(loom)]

use loom::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use loom::sync::{Arc, Mutex};
use loom::thread;

/// State bits: procedures off, a perimeter.
const OFF: u32 = 1;
const PERIM: u32 = 2;
/// The put procedure's address, as the pointer holds it.
const PUTP: usize = 0x1000;

struct Q {
    state: AtomicU32,
    lock: Mutex<()>,
    fast: AtomicUsize,
}

impl Q {
    fn new(state: u32) -> Arc<Q> {
        let q = Arc::new(Q { state: AtomicU32::new(state), lock: Mutex::new(()), fast: AtomicUsize::new(0) });
        q.refresh();
        q
    }

    /// `refresh_fast_put`.
    fn refresh(&self) {
        let _g = self.lock.lock().unwrap();
        let s = self.state.load(Ordering::Acquire);
        self.fast.store(if s == 0 { PUTP } else { 0 }, Ordering::Release);
    }

    /// `qprocsoff` (`sched::disable`): set OFF, refresh.
    fn off(&self) {
        self.state.fetch_or(OFF, Ordering::AcqRel);
        self.refresh();
    }

    /// `qprocson` (`sched::reenable`): clear OFF, refresh.
    fn on(&self) {
        self.state.fetch_and(!OFF, Ordering::AcqRel);
        self.refresh();
    }
}

#[test]
fn loom_the_last_refresh_leaves_the_pointer_of_the_final_state() {
    let mut b = loom::model::Builder::new();
    b.preemption_bound = Some(3);
    b.check(|| {
        let q = Q::new(OFF);
        let t1 = {
            let q = q.clone();
            thread::spawn(move || q.on())
        };
        let t2 = {
            let q = q.clone();
            thread::spawn(move || {
                q.state.fetch_or(PERIM, Ordering::AcqRel);
                q.refresh();
            })
        };
        q.off();
        t1.join().unwrap();
        t2.join().unwrap();
        let s = q.state.load(Ordering::Acquire);
        let want = if s == 0 { PUTP } else { 0 };
        assert_eq!(q.fast.load(Ordering::Acquire), want, "state {s:#x}");
    });
}

#[test]
fn loom_a_put_after_qprocsoff_returned_never_calls_in_place() {
    // A refresh racing qprocsoff (`setq` on the same queue) must not put back a pointer read
    // from the state before OFF: once qprocsoff has returned, a put that follows it finds NULL.
    loom::model(|| {
        let q = Q::new(0);
        let done = Arc::new(AtomicU32::new(0));
        let racer = {
            let q = q.clone();
            thread::spawn(move || q.refresh())
        };
        let putter = {
            let (q, done) = (q.clone(), done.clone());
            thread::spawn(move || {
                while done.load(Ordering::Acquire) == 0 {
                    thread::yield_now();
                }
                assert_eq!(q.fast.load(Ordering::Acquire), 0, "in place after qprocsoff");
            })
        };
        q.off();
        done.store(1, Ordering::Release);
        racer.join().unwrap();
        putter.join().unwrap();
    });
}
