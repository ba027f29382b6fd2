//! `allocb` and `freeb` go from the thread's last environment straight to the thread's
//! magazine slots of its caches (ddi-kmem `kmem_cache_thread_slot`), while ddi-kmem's thread
//! token says those slots are current. These tests move messages between threads and arenas,
//! destroy and reuse environments, and arm failure injection, and check that every block goes
//! home to its own arena's cache and every byte comes back.
//!
//! The free fast path runs only while no arena of the process checks, so this binary never
//! builds a checking arena (the checking case is in `misuse.rs`).

use ddi_kmem::{Arena, Checking, FailurePlan, Response};
use std::collections::HashSet;
use std::sync::Mutex;
use streams_core::{BPRI_MED, FASTBUF, Mblk, allocb, freeb};

/// Sizes of every class `allocb` has: small, each large combined class, a separate buffer.
const SIZES: [usize; 7] = [0, 64, FASTBUF + 1, 512, 1024, 2048, 4000];

/// Held by the tests that count on `allocb` succeeding and by the one that arms failure
/// injection (armed anywhere, it sends every thread's fast path to the general path; the
/// armed arena's allocations fail).
static INJECTION: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    INJECTION.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn plain(name: &str) -> Arena {
    Arena::builder().name(name).checking(Checking::OFF).response(Response::Report).build()
}

/// Message blocks handed to another thread.
struct Blocks(Vec<*mut Mblk>);
// SAFETY: the blocks are given away whole; only the receiving thread uses them.
unsafe impl Send for Blocks {}

/// `n` messages of each size, allocated in the current arena.
fn make(n: usize) -> Blocks {
    let v: Vec<*mut Mblk> = (0..n).flat_map(|_| SIZES.iter().map(|&s| allocb(s, BPRI_MED))).collect();
    assert!(v.iter().all(|p| !p.is_null()));
    Blocks(v)
}

fn free_all(b: Blocks) {
    for p in b.0 {
        // SAFETY: every caller passes messages it owns, each freed once.
        unsafe { freeb(p) };
    }
}

/// Allocates and frees a few messages of each size, so the thread's slots are current and
/// hold rounds.
fn warm() {
    free_all(make(4));
}

#[test]
fn blocks_freed_in_another_arena_go_home_and_are_not_handed_out_there() {
    let _serial = serial();
    let (a, b) = (plain("slots-home"), plain("slots-away"));
    let ga = a.enter();
    warm();
    let from_a = make(8);
    let a_addrs: HashSet<usize> = from_a.0.iter().map(|p| p.addr()).collect();
    b.run(|| {
        warm();
        // The thread's slots are now `b`'s: `a`'s blocks must take their own caches.
        free_all(from_a);
        let in_b = make(16);
        assert!(in_b.0.iter().all(|p| !a_addrs.contains(&p.addr())), "a block of `a` was handed out in `b`");
        free_all(in_b);
    });
    // Back in `a`: its own blocks come back from its slots.
    let again = make(8);
    assert!(again.0.iter().any(|p| a_addrs.contains(&p.addr())), "`a`'s freed blocks serve `a` again");
    free_all(again);
    drop(ga);
    assert_eq!((a.bytes_in_use(), b.bytes_in_use()), (0, 0));
}

#[test]
fn blocks_freed_on_another_thread_of_the_same_arena_go_to_its_slots() {
    let _serial = serial();
    let a = plain("slots-two-threads");
    let blocks = a.run(|| {
        warm();
        make(8)
    });
    std::thread::scope(|t| {
        t.spawn(|| {
            a.run(|| {
                // This thread's slots are current for `a` too; the blocks are `a`'s.
                warm();
                free_all(blocks);
                warm();
            })
        });
    });
    assert_eq!(a.bytes_in_use(), 0);
}

#[test]
fn an_environment_reused_by_a_new_arena_gets_the_threads_new_slots() {
    let _serial = serial();
    // A thread allocates in `a`; `a` is then dropped on another thread, which destroys its
    // caches there (this thread's slots of them stay, stale) and pools the environment; a new
    // arena `c` may take the same environment. This thread's messages in `c` must come from
    // `c`'s caches, not through the stale slots.
    let (to_worker, from_main) = std::sync::mpsc::channel::<Arena>();
    let (to_main, from_worker) = std::sync::mpsc::channel::<()>();
    let a = plain("slots-reused-a");
    let worker = {
        let a = a.clone();
        std::thread::spawn(move || {
            a.run(warm);
            drop(a);
            to_main.send(()).unwrap();
            let c = from_main.recv().unwrap();
            c.run(|| {
                let held = make(4);
                assert!(c.bytes_in_use() > 0, "the messages are `c`'s");
                free_all(held);
                warm();
            });
            assert_eq!(c.bytes_in_use(), 0);
        })
    };
    from_worker.recv().unwrap();
    drop(a);
    let c = plain("slots-reused-c");
    to_worker.send(c.clone()).unwrap();
    worker.join().unwrap();
    assert_eq!(c.bytes_in_use(), 0);
}

#[test]
fn failure_injection_still_fails_allocb_when_the_slots_hold_rounds() {
    let _serial = serial();
    let a = plain("slots-inject");
    a.run(|| {
        warm();
        a.inject(FailurePlan::Always);
        for s in SIZES {
            assert!(allocb(s, BPRI_MED).is_null(), "allocb({s}) under injection");
        }
        a.clear_injection();
        warm();
    });
    assert!(a.stats().injected >= SIZES.len() as u64);
    assert_eq!(a.bytes_in_use(), 0);
}

/// A message that a thread-local frees when its thread exits.
struct FreeAtExit(std::cell::Cell<*mut Mblk>);

impl Drop for FreeAtExit {
    fn drop(&mut self) {
        // SAFETY: the message put here by the test, freed once.
        unsafe { freeb(self.0.get()) };
    }
}

thread_local! {
    static AT_EXIT: FreeAtExit = const { FreeAtExit(std::cell::Cell::new(std::ptr::null_mut())) };
}

#[test]
fn a_message_freed_while_its_thread_exits_goes_home() {
    let _serial = serial();
    for size in [64, 1024] {
        let a = plain("slots-exit");
        std::thread::scope(|t| {
            t.spawn(|| {
                a.run(|| {
                    warm();
                    let mp = allocb(size, BPRI_MED);
                    assert!(!mp.is_null());
                    AT_EXIT.with(|c| c.0.set(mp));
                });
                // Whether ddi-kmem's thread state is torn down before or after this
                // destructor runs, the free finds the block's cache.
            })
            // Joined explicitly: the end of the scope alone does not wait for the thread's
            // thread-local destructors.
            .join()
            .unwrap();
        });
        assert_eq!(a.bytes_in_use(), 0, "size {size}");
    }
}

#[test]
fn interleaved_large_classes_each_get_blocks_of_their_own_class() {
    // `allocb` and `freeb` take the slot of the large class the thread used last without
    // looking it up; a class that is not that one must still get (and give back) blocks of
    // its own cache, whatever the order of allocations and frees.
    let _serial = serial();
    let a = plain("slots-interleaved");
    a.run(|| {
        let sizes = [300, 1024, 300, 2048, 1024, 1024, 600, 2000, 129, 256];
        let mut held = Vec::new();
        for round in 0..50 {
            for (i, &s) in sizes.iter().enumerate() {
                let mp = allocb(s, BPRI_MED);
                assert!(!mp.is_null());
                // SAFETY: a fresh message.
                let datap = unsafe { (*mp).b_datap };
                // SAFETY: its data block is live.
                let d = unsafe { &*datap };
                assert_eq!(d.capacity(), s.next_power_of_two(), "allocb({s})");
                assert_eq!(d.db_base.addr(), mp.addr() + 128, "allocb({s}): one combined block");
                if (i + round) % 3 == 0 {
                    held.push(mp);
                } else {
                    // SAFETY: allocated just above, freed once.
                    unsafe { freeb(mp) };
                }
            }
            // Free the held ones in another order than they came.
            if round % 4 == 3 {
                while let Some(mp) = held.pop() {
                    // SAFETY: each held message is freed once.
                    unsafe { freeb(mp) };
                }
            }
        }
        free_all(Blocks(held));
    });
    assert_eq!(a.bytes_in_use(), 0);
}
