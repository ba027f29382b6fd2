//! A plain loop over one message operation, for profilers (`perf`, callgrind).
//!
//! `cargo run --release -p benches --example streams_loop -- [iterations] [mode]`, where mode is
//! `allocb64` (allocb(64) + freeb), `dup` (allocb(64) + write + dupb + two freeb),
//! `allocb1024` (allocb(1024) + freeb), `msg64` (the safe `Msg`: `Msg::alloc(64)`, a 64-byte
//! `extend_from_slice`, drop: what the queue benchmarks' writer and reader do per message),
//! or the peers `bytes64`, `bytesdup`, `bytes1024`.

use bytes::{BufMut, BytesMut};
use ddi_kmem::{Arena, Checking};
use std::hint::black_box;
use streams_core::{BPRI_MED, Msg, allocb, dupb, freeb};

fn main() {
    let mut args = std::env::args().skip(1);
    let n: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(10_000_000);
    let mode = args.next().unwrap_or_else(|| "allocb64".to_string());
    let arena = Arena::builder().name("loop").checking(Checking::OFF).build();
    let _g = arena.enter();
    let t = std::time::Instant::now();
    for _ in 0..n {
        match mode.as_str() {
            "allocb64" | "allocb1024" => {
                let size = if mode == "allocb64" { 64 } else { 1024 };
                let mp = allocb(black_box(size), BPRI_MED);
                assert!(!mp.is_null());
                // SAFETY: allocated just above; freed once.
                unsafe { freeb(black_box(mp)) };
            }
            "dup" => {
                let mp = allocb(black_box(64), BPRI_MED);
                assert!(!mp.is_null());
                // SAFETY: allocated just above, ours alone.
                let m = unsafe { &mut *mp };
                // SAFETY: 64 bytes of room after b_wptr (allocb(64)).
                unsafe { m.b_wptr.write_bytes(0xa5, 64) };
                m.b_wptr = m.b_wptr.wrapping_add(64);
                // SAFETY: allocated above.
                let dp = unsafe { dupb(black_box(mp)) };
                assert!(!dp.is_null());
                // SAFETY: each freed once.
                unsafe { freeb(black_box(dp)) };
                // SAFETY: as above.
                unsafe { freeb(black_box(mp)) };
            }
            "msg64" => {
                let mut m = Msg::alloc(black_box(64), BPRI_MED).expect("memory");
                m.extend_from_slice(black_box(&[0x5a; 64])).expect("room");
                drop(black_box(m));
            }
            "bytes64" | "bytes1024" => {
                let size = if mode == "bytes64" { 64 } else { 1024 };
                drop(black_box(BytesMut::with_capacity(black_box(size))));
            }
            "bytesdup" => {
                let mut b = BytesMut::with_capacity(black_box(64));
                b.put_bytes(0xa5, 64);
                let f = b.freeze();
                let c = black_box(f.clone());
                drop(black_box(f));
                drop(c);
            }
            other => panic!("unknown mode {other}"),
        }
    }
    let ns = t.elapsed().as_nanos() as f64 / n as f64;
    println!("{n} {mode}: {ns:.2} ns/iteration");
}
