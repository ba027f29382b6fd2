//! loom models of the enable protocol (`sched.rs`: the queue's scheduling word and the run
//! list), run with `RUSTFLAGS="--cfg loom" cargo test --release -p streams-core --test
//! loom_qenable`: an enable while the service procedure runs is never lost, a service
//! procedure never runs concurrently with itself, and after `disable` (qprocsoff, freeq)
//! no runner touches the queue.
#![cfg(loom)]

use loom::cell::UnsafeCell;
use loom::sync::Arc;
use loom::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use loom::thread;
use streams_core::model::{RunList, SvcItem, SvcState};

/// A queue: its scheduling word, the data its service procedure reads, what it saw.
struct Q {
    svc: SvcState,
    data: AtomicUsize,
    seen: AtomicUsize,
    inside: AtomicBool,
    runs: AtomicUsize,
    mem: UnsafeCell<u32>,
}

#[derive(Clone)]
struct It(Arc<Q>);

impl PartialEq for It {
    fn eq(&self, o: &It) -> bool {
        Arc::ptr_eq(&self.0, &o.0)
    }
}

impl SvcItem for It {
    fn svc(&self) -> &SvcState {
        &self.0.svc
    }
}

fn item() -> It {
    It(Arc::new(Q {
        svc: SvcState::new(),
        data: AtomicUsize::new(0),
        seen: AtomicUsize::new(0),
        inside: AtomicBool::new(false),
        runs: AtomicUsize::new(0),
        mem: UnsafeCell::new(0),
    }))
}

/// The service procedure: never concurrent with itself; reads the data; touches the
/// queue's memory.
fn service(x: &It) {
    assert!(!x.0.inside.swap(true, Ordering::SeqCst), "service procedure ran concurrently with itself");
    x.0.seen.store(x.0.data.load(Ordering::Acquire), Ordering::Relaxed);
    x.0.runs.fetch_add(1, Ordering::Relaxed);
    // SAFETY: loom checks that no other access races with this one.
    x.0.mem.with_mut(|p| unsafe { *p += 1 });
    x.0.inside.store(false, Ordering::SeqCst);
}

fn run_all(list: &RunList<It>) {
    while let Some(x) = list.try_claim() {
        service(&x);
        list.finish(&x, false);
    }
}

/// A thread running the list until it finds nothing listed.
fn spawn_runner(list: &Arc<RunList<It>>) -> thread::JoinHandle<()> {
    let list = list.clone();
    thread::spawn(move || run_all(&list))
}

/// A thread enabling `q` once.
fn spawn_enabler(list: &Arc<RunList<It>>, q: &It) -> thread::JoinHandle<()> {
    let (list, q) = (list.clone(), q.clone());
    thread::spawn(move || {
        list.enable(&q);
    })
}

#[test]
fn loom_an_enable_during_the_service_run_is_not_lost() {
    loom::model(|| {
        let list = Arc::new(RunList::new());
        let q = item();
        list.enable(&q);
        let producer = {
            let (list, q) = (list.clone(), q.clone());
            thread::spawn(move || {
                q.0.data.store(1, Ordering::Release);
                list.enable(&q);
            })
        };
        run_all(&list);
        producer.join().unwrap();
        run_all(&list);
        assert_eq!(q.0.seen.load(Ordering::Relaxed), 1, "the last run saw the data enabled for");
    });
}

#[test]
fn loom_two_runners_never_run_one_service_procedure_at_once() {
    loom::model(|| {
        let list = Arc::new(RunList::new());
        let q = item();
        list.enable(&q);
        let runner = spawn_runner(&list);
        let enabler = spawn_enabler(&list, &q);
        run_all(&list);
        runner.join().unwrap();
        enabler.join().unwrap();
        run_all(&list);
        let runs = q.0.runs.load(Ordering::Relaxed);
        assert!((1..=2).contains(&runs), "{runs} runs");
    });
}

#[test]
fn loom_after_disable_no_runner_touches_the_queue() {
    loom::model(|| {
        let list = Arc::new(RunList::new());
        let q = item();
        list.enable(&q);
        let runner = spawn_runner(&list);
        let enabler = spawn_enabler(&list, &q);
        list.disable(&q);
        // "Free" the queue: a write that races with any later service run.
        // SAFETY: loom checks the claim that nothing else accesses it now.
        q.0.mem.with_mut(|p| unsafe { *p = 0xdead });
        runner.join().unwrap();
        enabler.join().unwrap();
        assert!(list.try_claim().is_none(), "a disabled queue is never listed again");
    });
}

#[test]
fn loom_a_run_handed_back_is_retried_and_listed_once() {
    loom::model(|| {
        let list = Arc::new(RunList::new());
        let q = item();
        list.enable(&q);
        let enabler = spawn_enabler(&list, &q);
        // The runner could not take the stream's plumbing lock: it hands the run back.
        if let Some(x) = list.try_claim() {
            list.finish(&x, true);
        }
        enabler.join().unwrap();
        run_all(&list);
        assert!(q.0.runs.load(Ordering::Relaxed) >= 1, "the handed-back run was retried");
        assert!(list.try_claim().is_none());
    });
}
