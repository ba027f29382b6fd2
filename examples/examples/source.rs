//! source: a driver whose read service procedure produces data under flow control. With no
//! worker the scheduler runs it: it fills the stream head to its high water mark and stops;
//! reading below the low water mark back-enables it. With a worker (and a stream head that
//! leaves service procedures to the workers, as illumos's) the messages cross from the
//! worker to the reading thread.
//!
//! `cargo run --release -p examples --example source`

use ddi_kmem::{Arena, Checking};
use examples::modules::{self, source};
use streams_core::{Msg, QueueQuirks, Stream, Streams};

fn generate(s: &Stream, n: u64) {
    s.ioctl(source::SRC_GEN, Some(Msg::from_slice(&n.to_le_bytes()).unwrap())).expect("SRC_GEN");
}

fn head_msgs(s: &Stream) -> i32 {
    // SAFETY: the head's read queue is live while the stream is open.
    unsafe { streams_core::qsize(s.head_rq()) }
}

fn main() {
    let arena = Arena::builder().name("source").checking(Checking::OFF).build();
    arena.run(|| {
        let sx = Streams::builder().arena(&arena).build();
        modules::register_all(&sx).unwrap();
        let s = sx.open("source", 0).unwrap();
        generate(&s, 1000);
        sx.run_until_idle();
        println!("asked for 1000: the head holds {} (STRHIGH reached, the driver stopped)", head_msgs(&s));
        let mut read = 0;
        while head_msgs(&s) >= 16 {
            drop(s.read().unwrap().unwrap());
            read += 1;
        }
        sx.run_until_idle();
        println!("read {read}: below STRLOW, back-enabled; the head holds {} again", head_msgs(&s));
        drop(s);

        let quirks = QueueQuirks { head_runs_queues: false, ..QueueQuirks::LFS };
        let wx = Streams::builder().arena(&arena).workers(1).quirks(quirks).build();
        modules::register_all(&wx).unwrap();
        let s = wx.open("source", 0).unwrap();
        let n = 1_000_000;
        let t = std::time::Instant::now();
        generate(&s, n);
        for _ in 0..n {
            let m = s.read_wait().unwrap().expect("a message");
            assert_eq!(m.data(), &[source::SRC_BYTE; source::SRC_LEN]);
        }
        let el = t.elapsed();
        println!("worker to reader: {n} messages in {el:?} ({:.1} M msg/s)", n as f64 / el.as_secs_f64() / 1e6);
    });
    assert_eq!(arena.bytes_in_use(), 0);
}
