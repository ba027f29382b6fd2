//! One thread through a stream: write 64-byte messages at the head, four pass-through
//! modules, a loopback driver, read at the head; for profilers (`perf`, callgrind). Also a
//! four-stage `VecDeque` pipeline of `Box<[u8]>` for comparison.
//!
//! `cargo run --release -p benches --example stream_loop -- [iterations] [streams|vecdeque]`

use ddi_kmem::{Arena, Checking};
use std::collections::VecDeque;
use std::hint::black_box;
use streams_core::*;

struct Nullmod;
impl Module for Nullmod {
    const INFO: ModuleInfo = ModuleInfo {
        mi_idnum: 5001,
        mi_idname: "nullmod",
        mi_minpsz: 0,
        mi_maxpsz: INFPSZ,
        mi_hiwat: 5120,
        mi_lowat: 1024,
    };
    fn open(_q: QRef<'_>, _c: &mut OpenCtx) -> Result<Self, i32> {
        Ok(Nullmod)
    }
}

struct Loop;
impl Module for Loop {
    const INFO: ModuleInfo = ModuleInfo {
        mi_idnum: 5002,
        mi_idname: "loop",
        mi_minpsz: 0,
        mi_maxpsz: INFPSZ,
        mi_hiwat: 5120,
        mi_lowat: 1024,
    };
    fn open(_q: QRef<'_>, _c: &mut OpenCtx) -> Result<Self, i32> {
        Ok(Loop)
    }
    fn wput(&self, q: QRef<'_>, mp: Msg) {
        if datamsg(mp.msg_type()) { q.qreply(mp) } else { default_wput(q, mp) }
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let n: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(1_000_000);
    let which = args.next().unwrap_or_else(|| "streams".to_string());
    let arena = Arena::builder().name("loop").checking(Checking::OFF).build();
    let t;
    {
        let _g = arena.enter();
        let sx = Streams::builder().arena(&arena).build();
        sx.register_module::<Nullmod>().unwrap();
        sx.register_driver::<Loop>().unwrap();
        let s = sx.open("loop", 0).unwrap();
        for _ in 0..4 {
            s.push("nullmod").unwrap();
        }
        let mut stages: [VecDeque<Box<[u8]>>; 4] = Default::default();
        let start = std::time::Instant::now();
        for i in 0..n {
            if which == "vecdeque" {
                stages[0].push_back(vec![i as u8; 64].into_boxed_slice());
                for k in 1..4 {
                    let m = stages[k - 1].pop_front().unwrap();
                    stages[k].push_back(black_box(m));
                }
                black_box(stages[3].pop_front().unwrap());
            } else {
                let mut m = Msg::alloc(64, BPRI_MED).unwrap();
                m.extend_from_slice(&[i as u8; 64]).unwrap();
                s.write(m).map_err(|(e, _)| e).unwrap();
                let back = s.read().unwrap().unwrap();
                black_box(back.data()[0]);
            }
        }
        t = start.elapsed();
        s.close();
    }
    assert_eq!(arena.bytes_in_use(), 0);
    let ns = t.as_nanos() as f64 / n as f64;
    println!("{which}: {n} messages, {ns:.1} ns/message, {:.0} messages/s", 1e9 / ns);
}
