//! STREAMS queues against what a Rust user would otherwise pick:
//! - `pipeline_1thread` (batches of [`BATCH`] messages): write at the stream head, through
//!   four `nullmod`s to the `loopback` driver and back up through them, read at the head;
//!   64-byte messages allocated (`allocb`) before the write and freed after the read; vs a
//!   four-stage `VecDeque` pipeline moving `Box<[u8]>` (allocated at stage 0, moved through
//!   four `VecDeque`s, freed at the end). Both sides write a batch of 64, then read it.
//! - `handoff_2threads`: a writer thread writes 64-byte messages at the head of a stream with
//!   `flowmod` (service procedures, run by one worker thread of the pool) over `loopback`,
//!   the measuring thread reads them at the head; vs `crossbeam_channel::bounded(1024)`
//!   moving `Box<[u8; 64]>` from a sender thread to the measuring thread.
//!
//! `cargo bench -p benches --bench queues`

#![allow(missing_docs)] // criterion_group! generates undocumented items

use criterion::{BenchmarkId, Criterion, Throughput, black_box, criterion_group, criterion_main};
use ddi_kmem::{Arena, Checking};
use std::collections::VecDeque;
use std::time::{Duration, Instant};
use streams_core::{BPRI_MED, Msg, Streams};

/// Messages per batch in the one-thread pipeline (both sides).
const BATCH: usize = 64;
const DATA: [u8; 64] = [0x5a; 64];

fn msg64() -> Msg {
    let mut m = Msg::alloc(64, BPRI_MED).expect("memory");
    m.extend_from_slice(&DATA).expect("room");
    m
}

fn pipeline(c: &mut Criterion) {
    let arena = Arena::builder().name("bench-queues").checking(Checking::OFF).build();
    let _entered = arena.enter();
    let sx = Streams::builder().arena(&arena).build();
    examples::modules::register_all(&sx).expect("register");
    let s = sx.open("loopback", 0).expect("open");
    for _ in 0..4 {
        s.push("nullmod").expect("push");
    }

    let mut g = c.benchmark_group("pipeline_1thread");
    g.throughput(Throughput::Elements(BATCH as u64));
    g.bench_function(BenchmarkId::new("streams_4xnullmod_loopback", BATCH), |b| {
        b.iter(|| {
            for _ in 0..BATCH {
                if s.write(msg64()).is_err() {
                    panic!("write refused");
                }
            }
            for _ in 0..BATCH {
                let m = s.read().expect("read").expect("looped back");
                black_box(m.data()[0]);
            }
        })
    });
    let mut stages: [VecDeque<Box<[u8]>>; 4] = Default::default();
    for q in &mut stages {
        q.reserve(BATCH);
    }
    g.bench_function(BenchmarkId::new("vecdeque_4stage_box", BATCH), |b| {
        b.iter(|| {
            for _ in 0..BATCH {
                stages[0].push_back(Box::from(black_box(&DATA[..])));
            }
            for i in 0..3 {
                while let Some(m) = stages[i].pop_front() {
                    stages[i + 1].push_back(m);
                }
            }
            while let Some(m) = stages[3].pop_front() {
                black_box(m[0]);
            }
        })
    });
    g.finish();
    s.close();
    assert_eq!(arena.bytes_in_use(), 0, "queues bench leaked");
}

fn handoff(c: &mut Criterion) {
    let arena = Arena::builder().name("bench-handoff").checking(Checking::OFF).build();
    let _entered = arena.enter();
    let sx = Streams::builder().arena(&arena).workers(1).build();
    examples::modules::register_all(&sx).expect("register");
    let s = sx.open("loopback", 0).expect("open");
    s.push("flowmod").expect("push");

    let mut g = c.benchmark_group("handoff_2threads");
    g.throughput(Throughput::Elements(1));
    g.bench_function("streams_flowmod_worker", |b| {
        b.iter_custom(|iters| {
            std::thread::scope(|t| {
                let start = Instant::now();
                t.spawn(|| {
                    let _a = arena.enter();
                    for _ in 0..iters {
                        if s.write_wait(msg64()).is_err() {
                            panic!("write refused");
                        }
                    }
                });
                for _ in 0..iters {
                    let m = s.read_wait().expect("read").expect("a message");
                    black_box(m.data()[0]);
                }
                start.elapsed()
            })
        })
    });
    g.bench_function("crossbeam_bounded1024_box", |b| {
        b.iter_custom(|iters| {
            let (tx, rx) = crossbeam_channel::bounded::<Box<[u8; 64]>>(1024);
            std::thread::scope(|t| {
                let start = Instant::now();
                t.spawn(move || {
                    for _ in 0..iters {
                        tx.send(Box::new(black_box(DATA))).expect("receiver alive");
                    }
                });
                for _ in 0..iters {
                    let m = rx.recv().expect("a message");
                    black_box(m[0]);
                }
                start.elapsed()
            })
        })
    });
    g.finish();
    s.close();
    drop(sx);
    assert_eq!(arena.bytes_in_use(), 0, "handoff bench leaked");
}

fn config() -> Criterion {
    Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3)).sample_size(20)
}

criterion_group! { name = benches; config = config(); targets = pipeline, handoff }
criterion_main!(benches);
