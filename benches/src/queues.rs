//! The work of the queue benchmarks, shared by `benches/queues.rs` (criterion) and
//! `examples/queues_loop.rs` (a plain loop for profilers), so both measure the same thing.

use ddi_kmem::Arena;
use std::collections::VecDeque;
use std::hint::black_box;
use streams_core::{BPRI_MED, LocalStream, LocalStreams, Msg, QueueQuirks, Stream, Streams};

/// Messages per batch in the one-thread pipeline (both sides).
pub const BATCH: usize = 64;
/// The 64 bytes every message carries.
pub const DATA: [u8; 64] = [0x5a; 64];

/// A 64-byte message holding [`DATA`] (`allocb(64)` and a copy), inlined where it is used
/// (as the peer's `Box::from`).
#[inline(always)]
pub fn msg64() -> Msg {
    let mut m = Msg::alloc(64, BPRI_MED).expect("memory");
    m.extend_from_slice(&DATA).expect("room");
    m
}

/// `loopback` with four `nullmod`s pushed, on `sx` (which has the example modules
/// registered).
pub fn pipeline_stream(sx: &Streams) -> Stream {
    examples::modules::register_all(sx).expect("register");
    let s = sx.open("loopback", 0).expect("open");
    for _ in 0..4 {
        s.push("nullmod").expect("push");
    }
    s
}

/// [`pipeline_stream`] on a thread-confined executive.
pub fn pipeline_local(sx: &LocalStreams) -> LocalStream {
    examples::modules::register_all(sx.streams()).expect("register");
    let s = sx.open("loopback", 0).expect("open");
    for _ in 0..4 {
        s.push("nullmod").expect("push");
    }
    s
}

/// The head's data calls of the two kinds of stream, for [`stream_batch`].
pub trait Head {
    /// `write`.
    fn put(&self, m: Msg) -> bool;
    /// `read`, expecting a message.
    fn get(&self) -> Msg;
}

/// [`Head`] for a stream type with `write` and `read` (the same calls on both kinds).
macro_rules! head {
    ($t:ty) => {
        impl Head for $t {
            #[inline]
            fn put(&self, m: Msg) -> bool {
                self.write(m).is_ok()
            }
            #[inline]
            fn get(&self) -> Msg {
                self.read().expect("read").expect("looped back")
            }
        }
    };
}
head!(Stream);
head!(LocalStream);

/// `loopback` with `flowmod` (service procedures on both sides) pushed, on `sx`.
pub fn handoff_stream(sx: &Streams) -> Stream {
    examples::modules::register_all(sx).expect("register");
    let s = sx.open("loopback", 0).expect("open");
    s.push("flowmod").expect("push");
    s
}

/// One batch through the stream: [`BATCH`] messages written at the head, then read back.
#[inline]
pub fn stream_batch(s: &impl Head) {
    for _ in 0..BATCH {
        assert!(s.put(msg64()), "write refused");
    }
    for _ in 0..BATCH {
        let m = s.get();
        black_box(m.data()[0]);
    }
}

/// One batch through the peer: [`BATCH`] boxes allocated at stage 0, moved through the four
/// `VecDeque`s, dropped at the end.
#[inline]
pub fn vecdeque_batch(stages: &mut [VecDeque<Box<[u8]>>; 4]) {
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

/// An executive with one worker that runs every service procedure: the stream head's
/// waiting calls do not run them (`QueueQuirks::head_runs_queues` false, illumos's service
/// threads; LfS's head would run the producer's service procedure on the reading thread
/// itself whenever it finds its queue empty, and no hand-off would be measured). The stream
/// head holds as much as the peer's channel: `STRHIGH` 64 KiB = 1 024 messages of 64 bytes
/// (crossbeam's `bounded(1024)`), `STRLOW` a quarter of it (LfS's defaults are 5 120 and
/// 1 024 bytes: 80 messages, so the two threads would sleep and wake every ~65 messages).
pub fn worker_executive(arena: &Arena) -> Streams {
    let quirks = QueueQuirks { head_runs_queues: false, strhigh: 65536, strlow: 16384, ..QueueQuirks::LFS };
    Streams::builder().arena(arena).workers(1).quirks(quirks).name("handoff").build()
}

/// The `source` driver alone, on `sx` (which should have a worker: its read service
/// procedure produces the messages).
pub fn source_stream(sx: &Streams) -> Stream {
    examples::modules::register_all(sx).expect("register");
    sx.open("source", 0).expect("open")
}

/// `total` messages produced by `source`'s read service procedure (on a worker) and read
/// here (`read_wait`): two threads, as a channel's sender and receiver.
pub fn receive(s: &Stream, total: u64) {
    let n = Msg::from_slice(&total.to_le_bytes()).expect("memory");
    s.ioctl(examples::modules::source::SRC_GEN, Some(n)).expect("SRC_GEN");
    for _ in 0..total {
        let m = s.read_wait().expect("read").expect("a message");
        black_box(m.data()[0]);
    }
}

/// `total` messages from a writer thread (entering `arena`, `write_wait`) to this thread
/// (`read_wait`).
pub fn hand_over(arena: &Arena, s: &Stream, total: u64) {
    std::thread::scope(|t| {
        t.spawn(|| {
            let _a = arena.enter();
            for _ in 0..total {
                assert!(s.write_wait(msg64()).is_ok(), "write refused");
            }
        });
        for _ in 0..total {
            let m = s.read_wait().expect("read").expect("a message");
            black_box(m.data()[0]);
        }
    });
}

/// The work of [`hand_over`] on one thread, for comparison (an executive without workers):
/// write until flow control refuses, run the service procedures, read everything back;
/// until `total` messages went through.
pub fn hand_over_1thread(sx: &Streams, s: &Stream, total: u64) {
    let (mut sent, mut done) = (0, 0);
    while done < total {
        while sent < total {
            if s.write(msg64()).is_err() {
                break; // flow control: the refused message is dropped (freed)
            }
            sent += 1;
        }
        sx.run_until_idle();
        while let Some(m) = s.read().expect("read") {
            black_box(m.data()[0]);
            done += 1;
        }
    }
}
