//! The floor of a put-procedure pipeline: what `pipeline_1thread`'s stream would cost with
//! nothing but its skeleton — a real message (`Msg::alloc(64)` + copy + drop), ten put
//! procedures called through function pointers (a queue's `q_next` and its put pointer,
//! as `putnext` does), a plain `VecDeque` as the head's read queue, no locks, no flow
//! control, no checks — against the peer (`VecDeque` four-stage pipeline of `Box<[u8]>`).
//!
//! `cargo run --release -p benches --example pipeline_floor -- [batches]`

use benches::queues::{BATCH, msg64, vecdeque_batch};
use ddi_kmem::{Arena, Checking};
use std::cell::RefCell;
use std::collections::VecDeque;
use std::hint::black_box;
use std::time::Instant;
use streams_core::Msg;

/// A queue of the skeleton: the next queue and its put procedure.
struct Q {
    next: *const Q,
    put: fn(&Q, Msg),
    head: Option<RefCell<VecDeque<Msg>>>,
}

/// A pass-through put procedure: `putnext`.
fn pass(q: &Q, m: Msg) {
    // SAFETY: every `next` of the chain points at a live `Q` of `build` (the last at the head).
    let n = unsafe { &*q.next };
    (n.put)(n, m);
}

/// The head's read put procedure: `putq`.
fn head(q: &Q, m: Msg) {
    q.head.as_ref().expect("head").borrow_mut().push_back(m);
}

fn main() {
    let batches: u64 = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(200_000);
    let arena = Arena::builder().name("floor").checking(Checking::OFF).build();
    let _g = arena.enter();
    // Ten queues, each passing to the next; the eleventh is the head's read queue.
    let mut qs: Vec<Box<Q>> = Vec::new();
    qs.push(Box::new(Q {
        next: std::ptr::null(),
        put: head,
        head: Some(RefCell::new(VecDeque::with_capacity(BATCH))),
    }));
    for _ in 0..10 {
        let next: *const Q = &**qs.last().expect("one");
        qs.push(Box::new(Q { next, put: pass, head: None }));
    }
    let first: &Q = qs.last().expect("first");
    let head_q: &Q = &qs[0];
    let run = |n: u64| {
        for _ in 0..n {
            for _ in 0..BATCH {
                (first.put)(first, msg64());
            }
            let mut h = head_q.head.as_ref().expect("head").borrow_mut();
            while let Some(m) = h.pop_front() {
                black_box(m.data()[0]);
            }
        }
    };
    let mut stages: [VecDeque<Box<[u8]>>; 4] = Default::default();
    for _ in 0..3 {
        let t = Instant::now();
        run(batches);
        let ours = t.elapsed();
        let t = Instant::now();
        for _ in 0..batches {
            vecdeque_batch(&mut stages);
        }
        let peer = t.elapsed();
        let msgs = (batches * BATCH as u64) as f64;
        println!(
            "skeleton {:.1} ns/msg, VecDeque peer {:.1} ns/msg: {:.2}x",
            ours.as_nanos() as f64 / msgs,
            peer.as_nanos() as f64 / msgs,
            peer.as_secs_f64() / ours.as_secs_f64()
        );
    }
}
