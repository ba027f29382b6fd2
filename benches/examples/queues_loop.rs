//! A plain loop over the queue benchmarks' work, for profilers (callgrind, perf).
//!
//! `cargo run --release -p benches --example queues_loop -- [batches] [mode]`, where mode is
//! `streams` (write 64 at the head of loopback with four nullmods, read 64), `local` (the
//! same on a thread-confined executive, `LocalStreams`), or `vecdeque`
//! (the four-stage `VecDeque<Box<[u8]>>` pipeline, 64 at a time), or `handoff` (a writer
//! thread and this thread reading, `flowmod` over `loopback` with one worker; `batches` x 64
//! messages), or `source` (the `source` driver's read service procedure on a worker
//! producing `batches` x 64 messages, this thread reading them), or `handoff1` (the same stream and work on this thread alone, no workers).

use benches::queues::{
    BATCH, hand_over, hand_over_1thread, handoff_stream, pipeline_local, pipeline_stream, receive, source_stream,
    stream_batch, vecdeque_batch, worker_executive,
};
use ddi_kmem::{Arena, Checking};
use std::collections::VecDeque;
use streams_core::Streams;

fn main() {
    let mut args = std::env::args().skip(1);
    let n: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(100_000);
    let mode = args.next().unwrap_or_else(|| "streams".to_string());
    let arena = Arena::builder().name("queues-loop").checking(Checking::OFF).build();
    let _g = arena.enter();
    let t = std::time::Instant::now();
    match mode.as_str() {
        "streams" => {
            let sx = Streams::builder().arena(&arena).build();
            let s = pipeline_stream(&sx);
            for _ in 0..n {
                stream_batch(&s);
            }
            s.close();
        }
        "local" => {
            let sx = Streams::builder().arena(&arena).build_local();
            let s = pipeline_local(&sx);
            for _ in 0..n {
                stream_batch(&s);
            }
            s.close();
        }
        "vecdeque" => {
            let mut stages: [VecDeque<Box<[u8]>>; 4] = Default::default();
            for _ in 0..n {
                vecdeque_batch(&mut stages);
            }
        }
        "handoff" => {
            let sx = Streams::builder().arena(&arena).workers(1).build();
            let s = handoff_stream(&sx);
            hand_over(&arena, &s, n * BATCH as u64);
            s.close();
        }
        "source" => {
            let sx = worker_executive(&arena);
            let s = source_stream(&sx);
            receive(&s, n * BATCH as u64);
            s.close();
        }
        "handoff1" => {
            // The hand-off's work on one thread (no workers): write until flow control,
            // run the service procedures, read everything; its cost per message is what
            // two threads share in `handoff`.
            let sx = Streams::builder().arena(&arena).build();
            let s = handoff_stream(&sx);
            hand_over_1thread(&sx, &s, n * BATCH as u64);
            s.close();
        }
        other => panic!("unknown mode {other}"),
    }
    let el = t.elapsed();
    let msgs = n * BATCH as u64;
    println!("{mode}: {msgs} messages in {el:?}: {:.0} msg/s", msgs as f64 / el.as_secs_f64());
}
