//! loom models of the hand-off protocols: the stream head's wake-up gate (`sync.rs`
//! `WaitGate`, used by `read_wait`/`write_wait` and the head's wake-ups; also as `head_rput`
//! uses it, signalling only a message into an empty queue) and the worker's
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

/// The messages waiting at the head: the condition the readers wait for.
trait Msgs: Default + Send + Sync + 'static {
    /// Whether a put signals the gate only when it found no message waiting.
    const SIGNAL_ONLY_INTO_EMPTY: bool;
    /// Adds a message; returns whether there was none.
    fn add(&self) -> bool;
    /// Takes a message if there is one.
    fn take(&self) -> bool;
    /// Messages waiting.
    fn count(&self) -> usize;
}

/// A relaxed counter signalled on every put, so only the gate's own ordering makes the
/// waiter see it.
#[derive(Default)]
struct Relaxed(AtomicUsize);

impl Msgs for Relaxed {
    const SIGNAL_ONLY_INTO_EMPTY: bool = false;
    fn add(&self) -> bool {
        self.0.fetch_add(1, Ordering::Relaxed) == 0
    }
    fn take(&self) -> bool {
        let n = self.0.load(Ordering::Relaxed);
        n > 0 && self.0.compare_exchange(n, n - 1, Ordering::Relaxed, Ordering::Relaxed).is_ok()
    }
    fn count(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }
}

/// The head's read queue as `head_rput` drives it now: counted under the queue's lock (as
/// `putq`/`getq` do), signalled only by a put into an empty queue, since a reader waits
/// only after finding it empty.
#[derive(Default)]
struct Locked(Mutex<usize>);

impl Msgs for Locked {
    const SIGNAL_ONLY_INTO_EMPTY: bool = true;
    fn add(&self) -> bool {
        let mut n = self.0.lock().unwrap();
        *n += 1;
        *n == 1
    }
    fn take(&self) -> bool {
        let mut n = self.0.lock().unwrap();
        let some = *n > 0;
        if some {
            *n -= 1;
        }
        some
    }
    fn count(&self) -> usize {
        *self.0.lock().unwrap()
    }
}

/// The head's side of the protocol: the lock wakers notify under, its condition variable,
/// the gate, and the condition (messages waiting).
struct Head<M: Msgs> {
    hs: Mutex<()>,
    cv: Condvar,
    gate: WaitGate,
    msgs: M,
}

impl<M: Msgs> Head<M> {
    fn new() -> Arc<Self> {
        Arc::new(Head { hs: Mutex::new(()), cv: Condvar::new(), gate: WaitGate::new(), msgs: M::default() })
    }

    /// `head_rput` then `wake`: make the condition true, then signal.
    fn put(&self) {
        let was_empty = self.msgs.add();
        if (was_empty || !M::SIGNAL_ONLY_INTO_EMPTY) && self.gate.signal() {
            let _g = self.hs.lock().unwrap();
            self.cv.notify_all();
        }
    }

    /// `read_wait` after its spinning: register, check, sleep unless signalled since.
    fn read_wait(&self) {
        loop {
            if self.msgs.take() {
                return;
            }
            let ticket = self.gate.register();
            let g = self.hs.lock().unwrap();
            if self.msgs.count() == 0 && !self.gate.changed(ticket) {
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
        let h = Head::<Relaxed>::new();
        let w = writer(&h, 1);
        h.read_wait();
        w.join().unwrap();
        assert_eq!(h.msgs.count(), 0);
    });
}

/// A thread putting `n` messages on `h`.
fn writer<M: Msgs>(h: &Arc<Head<M>>, n: usize) -> thread::JoinHandle<()> {
    let h = h.clone();
    thread::spawn(move || {
        for _ in 0..n {
            h.put();
        }
    })
}

/// Two readers (this thread and another) and a writer putting two messages: both readers
/// get one, nobody sleeps forever.
fn two_readers_and_two_messages<M: Msgs>() {
    // Three threads: bounded preemptions (as loom's docs advise) keep the run finite.
    let mut b = loom::model::Builder::new();
    b.preemption_bound = Some(3);
    b.check(|| {
        let h = Head::<M>::new();
        let r = {
            let h = h.clone();
            thread::spawn(move || h.read_wait())
        };
        let w = writer(&h, 2);
        h.read_wait();
        r.join().unwrap();
        w.join().unwrap();
        assert_eq!(h.msgs.count(), 0);
    });
}

#[test]
fn loom_two_readers_and_two_messages_nobody_sleeps_forever() {
    two_readers_and_two_messages::<Relaxed>();
}

#[test]
fn loom_signalling_only_into_an_empty_queue_loses_no_wake_up() {
    loom::model(|| {
        let h = Head::<Locked>::new();
        let w = writer(&h, 2);
        h.read_wait();
        h.read_wait();
        w.join().unwrap();
        assert_eq!(h.msgs.count(), 0);
    });
}

#[test]
fn loom_signalling_only_into_an_empty_queue_two_readers_nobody_sleeps_forever() {
    two_readers_and_two_messages::<Locked>();
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
