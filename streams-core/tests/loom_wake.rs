//! loom models of the hand-off protocols: the stream head's wake-up gate (`sync.rs`
//! `WaitGate`, used by `read_wait`/`write_wait` and the head's wake-ups) and the worker's
//! spin-then-park claim (`sched.rs` `RunList::claim_spin_wait`). Run with
//! `RUSTFLAGS="--cfg loom" cargo test --release -p streams-core --test loom_wake`.
//!
//! A lost wake-up shows as a deadlock (every thread blocked), which loom reports: the waiter
//! below sleeps on a condition variable with no timeout. The condition itself is a relaxed
//! atomic, so only the gate's own ordering makes the waiter see it.
#![cfg(loom)]

use loom::sync::atomic::{AtomicUsize, Ordering};
use loom::sync::{Arc, Condvar, Mutex};
use loom::thread;
use streams_core::model::{RunList, SvcItem, SvcState, WaitGate};

/// The head's side of the protocol: the lock wakers notify under, its condition variable,
/// the gate, and the condition (messages waiting).
struct Head {
    hs: Mutex<()>,
    cv: Condvar,
    gate: WaitGate,
    msgs: AtomicUsize,
}

impl Head {
    fn new() -> Arc<Head> {
        Arc::new(Head { hs: Mutex::new(()), cv: Condvar::new(), gate: WaitGate::new(), msgs: AtomicUsize::new(0) })
    }

    /// `head_rput` then `wake`: make the condition true, then signal.
    fn put(&self) {
        self.msgs.fetch_add(1, Ordering::Relaxed);
        if self.gate.signal() {
            let _g = self.hs.lock().unwrap();
            self.cv.notify_all();
        }
    }

    /// `read`: take a message if there is one.
    fn take(&self) -> bool {
        let n = self.msgs.load(Ordering::Relaxed);
        n > 0 && self.msgs.compare_exchange(n, n - 1, Ordering::Relaxed, Ordering::Relaxed).is_ok()
    }

    /// `read_wait` after its spinning: register, check, sleep unless signalled since.
    fn read_wait(&self) {
        loop {
            if self.take() {
                return;
            }
            let ticket = self.gate.register();
            let g = self.hs.lock().unwrap();
            if self.msgs.load(Ordering::Relaxed) == 0 && !self.gate.changed(ticket) {
                drop(self.cv.wait(g).unwrap());
            } else {
                drop(g);
            }
            self.gate.unregister();
        }
    }
}

#[test]
fn loom_a_message_put_while_the_reader_goes_to_sleep_wakes_it() {
    loom::model(|| {
        let h = Head::new();
        let w = {
            let h = h.clone();
            thread::spawn(move || h.put())
        };
        h.read_wait();
        w.join().unwrap();
        assert_eq!(h.msgs.load(Ordering::Relaxed), 0);
    });
}

#[test]
fn loom_two_readers_and_two_messages_nobody_sleeps_forever() {
    // Three threads: bounded preemptions (as loom's docs advise) keep the run finite.
    let mut b = loom::model::Builder::new();
    b.preemption_bound = Some(3);
    b.check(|| {
        let h = Head::new();
        let r = {
            let h = h.clone();
            thread::spawn(move || h.read_wait())
        };
        let w = {
            let h = h.clone();
            thread::spawn(move || {
                h.put();
                h.put();
            })
        };
        h.read_wait();
        r.join().unwrap();
        w.join().unwrap();
        assert_eq!(h.msgs.load(Ordering::Relaxed), 0);
    });
}

/// A queue for the worker model.
#[derive(Clone)]
struct It(Arc<SvcState>);

impl PartialEq for It {
    fn eq(&self, o: &It) -> bool {
        Arc::ptr_eq(&self.0, &o.0)
    }
}

impl SvcItem for It {
    fn svc(&self) -> &SvcState {
        &self.0
    }
}

#[test]
fn loom_a_worker_spinning_then_parking_gets_every_enable() {
    loom::model(|| {
        let list = Arc::new(RunList::new());
        let q = It(Arc::new(SvcState::new()));
        let runs = Arc::new(AtomicUsize::new(0));
        let worker = {
            let (list, runs) = (list.clone(), runs.clone());
            thread::spawn(move || {
                while let Some(x) = list.claim_spin_wait() {
                    runs.fetch_add(1, Ordering::Relaxed);
                    list.finish(&x, false);
                }
            })
        };
        list.enable(&q);
        list.wait_idle();
        assert!(runs.load(Ordering::Relaxed) >= 1, "the enabled queue ran");
        list.shutdown();
        worker.join().unwrap();
    });
}
