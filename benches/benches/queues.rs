//! STREAMS queues against what a Rust user would otherwise pick:
//! - `pipeline_1thread` (batches of [`BATCH`] messages): write at the stream head, through
//!   four `nullmod`s to the `loopback` driver and back up through them, read at the head;
//!   64-byte messages allocated (`allocb`) before the write and freed after the read; vs a
//!   four-stage `VecDeque` pipeline moving `Box<[u8]>` (allocated at stage 0, moved through
//!   four `VecDeque`s, freed at the end). Both sides write a batch of 64, then read it. The
//!   stream runs twice: on a shared executive (`Streams`: queue locks and the plumbing lock
//!   are atomics) and on a thread-confined one (`LocalStreams`: none).
//! - `handoff_2threads`: vs `crossbeam_channel::bounded(1024)` moving `Box<[u8; 64]>` from a
//!   sender thread to the measuring thread, two streams, each with one worker thread:
//!   `streams_source_worker` (two threads, the shape): the `source` driver's read
//!   service procedure, run by the worker, allocates 64-byte messages and sends them up
//!   under flow control (`canputnext`, back-enabled below `STRLOW`); the measuring thread
//!   reads them at the head (an executive whose stream head leaves service procedures to
//!   the worker: `head_runs_queues` false, as illumos; see `worker_executive`); `streams_flowmod_worker` (three threads): a writer thread
//!   writes 64-byte messages at the head of `flowmod` (service procedures on the worker)
//!   over `loopback`, the measuring thread reads them at the head.
//!
//! `cargo bench -p benches --bench queues`

#![allow(missing_docs)] // criterion_group! generates undocumented items

use benches::queues::{
    BATCH, DATA, hand_over, handoff_stream, pipeline_local, pipeline_stream, receive, source_stream, stream_batch,
    vecdeque_batch, worker_executive,
};
use criterion::{BenchmarkId, Criterion, Throughput, black_box, criterion_group, criterion_main};
use ddi_kmem::{Arena, Checking};
use std::collections::VecDeque;
use std::time::{Duration, Instant};
use streams_core::Streams;

fn pipeline(c: &mut Criterion) {
    let arena = Arena::builder().name("bench-queues").checking(Checking::OFF).build();
    let _entered = arena.enter();
    let sx = Streams::builder().arena(&arena).build();
    let s = pipeline_stream(&sx);
    let lx = Streams::builder().arena(&arena).name("local").build_local();
    let ls = pipeline_local(&lx);

    let mut g = c.benchmark_group("pipeline_1thread");
    g.throughput(Throughput::Elements(BATCH as u64));
    g.bench_function(BenchmarkId::new("streams_4xnullmod_loopback", BATCH), |b| b.iter(|| stream_batch(&s)));
    g.bench_function(BenchmarkId::new("local_4xnullmod_loopback", BATCH), |b| b.iter(|| stream_batch(&ls)));
    let mut stages: [VecDeque<Box<[u8]>>; 4] = Default::default();
    for q in &mut stages {
        q.reserve(BATCH);
    }
    g.bench_function(BenchmarkId::new("vecdeque_4stage_box", BATCH), |b| b.iter(|| vecdeque_batch(&mut stages)));
    g.finish();
    // Dropping closes it and returns the head's queue pair, which `close` keeps until then.
    drop(s);
    drop(ls);
    drop(lx);
    assert_eq!(arena.bytes_in_use(), 0, "queues bench leaked");
}

fn handoff(c: &mut Criterion) {
    let arena = Arena::builder().name("bench-handoff").checking(Checking::OFF).build();
    let _entered = arena.enter();
    let sx = Streams::builder().arena(&arena).workers(1).build();
    let s = handoff_stream(&sx);

    let mut g = c.benchmark_group("handoff_2threads");
    g.throughput(Throughput::Elements(1));
    g.bench_function("streams_flowmod_worker", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            hand_over(&arena, &s, iters);
            start.elapsed()
        })
    });
    let wx = worker_executive(&arena);
    let src = source_stream(&wx);
    g.bench_function("streams_source_worker", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            receive(&src, iters);
            start.elapsed()
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
    // As in `pipeline`: dropping closes and returns the head's pair.
    drop(s);
    drop(src);
    drop(sx);
    drop(wx);
    assert_eq!(arena.bytes_in_use(), 0, "handoff bench leaked");
}

fn config() -> Criterion {
    Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3)).sample_size(20)
}

criterion_group! { name = benches; config = config(); targets = pipeline, handoff }
criterion_main!(benches);
