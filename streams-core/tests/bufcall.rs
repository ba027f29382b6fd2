//! Buffer calls: triggered by frees, cancellable, with the SVR4 MP guarantee.

mod common;

use common::*;
use ddi_kmem::{Arena, FailurePlan};
use std::ffi::c_void;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use streams_core::*;

/// A message pointer handed to another thread or a callback.
#[derive(Clone, Copy)]
struct SendPtr(*mut Mblk);
// SAFETY: the tests hand each message to exactly one other owner.
unsafe impl Send for SendPtr {}

#[test]
fn bufcall_fires_after_a_free_and_the_retry_succeeds() {
    let arena = Arena::builder().name("bufcall_budget").budget(2048).build();
    arena.run(|| {
        // Fill the budget.
        let mut held = Vec::new();
        loop {
            let mp = allocb(64, BPRI_MED);
            if mp.is_null() {
                break;
            }
            held.push(mp);
            assert!(held.len() < 100, "the budget should run out");
        }
        let retried = Arc::new(Mutex::new(None::<SendPtr>));
        let r = retried.clone();
        let id = bufcall_fn(64, BPRI_MED, move || {
            let mp = allocb(64, BPRI_MED);
            *r.lock().unwrap() = Some(SendPtr(mp));
        });
        assert_ne!(id, 0);
        assert_eq!(bufcalls_waiting(), 1);
        assert!(retried.lock().unwrap().is_none(), "not before a free");
        free(held.pop().unwrap());
        let got = retried.lock().unwrap().take().expect("the free ran the bufcall");
        assert!(!got.0.is_null(), "the retry succeeded");
        assert_eq!(bufcalls_waiting(), 0);
        free(got.0);
        held.into_iter().for_each(free);
    });
    assert_eq!(arena.bytes_in_use(), 0);
}

static DDI_FIRED: AtomicUsize = AtomicUsize::new(0);
fn ddi_cb(arg: *mut c_void) {
    assert_eq!(arg.addr(), 42);
    DDI_FIRED.fetch_add(1, Ordering::SeqCst);
}

#[test]
fn bufcall_with_a_function_and_argument_runs_once() {
    in_arena("bufcall_ddi", |arena| {
        let held = allocb(8, BPRI_MED);
        arena.inject(FailurePlan::Always);
        assert!(allocb(8, BPRI_MED).is_null());
        arena.clear_injection();
        let id = bufcall(8, BPRI_HI, ddi_cb, std::ptr::without_provenance_mut(42));
        assert_ne!(id, 0);
        free(held);
        assert_eq!(DDI_FIRED.load(Ordering::SeqCst), 1);
        free(allocb(8, BPRI_MED));
        assert_eq!(DDI_FIRED.load(Ordering::SeqCst), 1, "once only");
    });
}

#[test]
fn esbbcall_fires_after_a_free() {
    static FIRED: AtomicBool = AtomicBool::new(false);
    fn cb(_: *mut c_void) {
        FIRED.store(true, Ordering::SeqCst);
    }
    in_arena("esbbcall", |_| {
        let held = allocb(8, BPRI_MED);
        assert_ne!(esbbcall(BPRI_MED, cb, std::ptr::null_mut()), 0);
        free(held);
        assert!(FIRED.load(Ordering::SeqCst));
    });
}

#[test]
fn unbufcall_cancels_a_waiting_callback() {
    in_arena("unbufcall_cancel", |_| {
        let fired = Arc::new(AtomicBool::new(false));
        let f = fired.clone();
        let id = bufcall_fn(8, BPRI_MED, move || f.store(true, Ordering::SeqCst));
        unbufcall(id);
        assert_eq!(bufcalls_waiting(), 0);
        free(allocb(8, BPRI_MED));
        assert!(!fired.load(Ordering::SeqCst));
        unbufcall(0); // ignored
        unbufcall(id); // expired: ignored
    });
}

#[test]
fn unbufcall_waits_for_a_callback_running_on_another_thread() {
    let arena = Arena::builder().name("unbufcall_wait").build();
    let (started_tx, started_rx) = mpsc::channel();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let done = Arc::new(AtomicBool::new(false));
    let d = done.clone();
    let (id, held) = arena.run(|| {
        let held = SendPtr(allocb(8, BPRI_MED));
        let id = bufcall_fn(8, BPRI_MED, move || {
            started_tx.send(()).unwrap();
            go_rx.recv().unwrap();
            d.store(true, Ordering::SeqCst);
        });
        (id, held)
    });
    std::thread::scope(|s| {
        let a = arena.clone();
        s.spawn(move || {
            let held = held;
            a.run(|| free(held.0))
        });
        started_rx.recv().unwrap();
        let a = arena.clone();
        let canceller = s.spawn(move || {
            a.run(|| unbufcall(id));
        });
        // The canceller must still be waiting: let the callback finish, then join.
        go_tx.send(()).unwrap();
        canceller.join().unwrap();
        assert!(done.load(Ordering::SeqCst), "unbufcall returned only after the callback");
    });
    assert_eq!(arena.bytes_in_use(), 0);
}

#[test]
fn unbufcall_from_within_the_callback_returns_at_once() {
    in_arena("unbufcall_self", |_| {
        let id_slot = Arc::new(AtomicUsize::new(0));
        let s = id_slot.clone();
        let ran = Arc::new(AtomicBool::new(false));
        let r = ran.clone();
        let id = bufcall_fn(8, BPRI_MED, move || {
            unbufcall(s.load(Ordering::SeqCst) as BcId);
            r.store(true, Ordering::SeqCst);
        });
        id_slot.store(id as usize, Ordering::SeqCst);
        free(allocb(8, BPRI_MED));
        assert!(ran.load(Ordering::SeqCst));
    });
}

#[test]
fn a_callback_that_fails_again_waits_for_the_next_free() {
    in_arena("bufcall_again", |arena| {
        let runs = Arc::new(AtomicUsize::new(0));
        fn arm(runs: Arc<AtomicUsize>) {
            bufcall_fn(8, BPRI_MED, move || {
                runs.fetch_add(1, Ordering::SeqCst);
                let mp = allocb(8, BPRI_MED);
                if mp.is_null() {
                    arm(runs);
                } else {
                    free(mp);
                }
            });
        }
        arena.inject(FailurePlan::Always);
        arm(runs.clone());
        let held = {
            arena.clear_injection();
            let h = allocb(8, BPRI_MED);
            arena.inject(FailurePlan::Always);
            h
        };
        free(held);
        assert_eq!(runs.load(Ordering::SeqCst), 1, "re-registered, not re-run in the same free");
        assert_eq!(bufcalls_waiting(), 1);
        arena.clear_injection();
        free(allocb(8, BPRI_MED));
        assert_eq!(runs.load(Ordering::SeqCst), 2);
        assert_eq!(bufcalls_waiting(), 0);
    });
}
