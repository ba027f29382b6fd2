//! A plain loop over the queue benchmarks' work, for profilers (callgrind, perf).
//!
//! `cargo run --release -p benches --example queues_loop -- [batches] [mode]`, where mode is
//! `streams` (write 64 at the head of loopback with four nullmods, read 64) or `vecdeque`
//! (the four-stage `VecDeque<Box<[u8]>>` pipeline, 64 at a time), or `handoff` (a writer
//! thread and this thread reading, `flowmod` over `loopback` with one worker; `batches` x 64
//! messages).

use ddi_kmem::{Arena, Checking};
use std::collections::VecDeque;
use std::hint::black_box;
use streams_core::{BPRI_MED, Msg, Streams};

const BATCH: usize = 64;
const DATA: [u8; 64] = [0x5a; 64];

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
            examples::modules::register_all(&sx).expect("register");
            let s = sx.open("loopback", 0).expect("open");
            for _ in 0..4 {
                s.push("nullmod").expect("push");
            }
            for _ in 0..n {
                for _ in 0..BATCH {
                    let mut m = Msg::alloc(64, BPRI_MED).expect("memory");
                    m.extend_from_slice(&DATA).expect("room");
                    assert!(s.write(m).is_ok());
                }
                for _ in 0..BATCH {
                    let m = s.read().expect("read").expect("looped back");
                    black_box(m.data()[0]);
                }
            }
            s.close();
        }
        "vecdeque" => {
            let mut stages: [VecDeque<Box<[u8]>>; 4] = Default::default();
            for _ in 0..n {
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
            }
        }
        "handoff" => {
            let sx = Streams::builder().arena(&arena).workers(1).build();
            examples::modules::register_all(&sx).expect("register");
            let s = sx.open("loopback", 0).expect("open");
            s.push("flowmod").expect("push");
            let total = n * BATCH as u64;
            std::thread::scope(|t| {
                t.spawn(|| {
                    let _a = arena.enter();
                    for _ in 0..total {
                        let mut m = Msg::alloc(64, BPRI_MED).expect("memory");
                        m.extend_from_slice(&DATA).expect("room");
                        assert!(s.write_wait(m).is_ok());
                    }
                });
                for _ in 0..total {
                    let m = s.read_wait().expect("read").expect("a message");
                    black_box(m.data()[0]);
                }
            });
            s.close();
        }
        other => panic!("unknown mode {other}"),
    }
    let el = t.elapsed();
    let msgs = n * BATCH as u64;
    println!("{mode}: {msgs} messages in {el:?}: {:.0} msg/s", msgs as f64 / el.as_secs_f64());
}
