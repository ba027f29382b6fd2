//! A plain loop over a 64-byte allocate + free pair, for profilers (`perf`, callgrind).
//!
//! `cargo run --release -p benches --example kmem_loop -- [iterations] [kmem|mimalloc]`

use ddi_kmem::{Arena, Checking, KM_SLEEP, kmem_alloc, kmem_free};
use mimalloc::MiMalloc;
use std::alloc::{GlobalAlloc, Layout};
use std::hint::black_box;

fn main() {
    let mut args = std::env::args().skip(1);
    let n: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(10_000_000);
    let which = args.next().unwrap_or_else(|| "kmem".to_string());
    let arena = Arena::builder().name("loop").checking(Checking::OFF).build();
    let _g = arena.enter();
    let layout = Layout::from_size_align(64, 8).unwrap();
    let t = std::time::Instant::now();
    for _ in 0..n {
        if which == "mimalloc" {
            // SAFETY: non-zero layout.
            let p = unsafe { MiMalloc.alloc(black_box(layout)) };
            // SAFETY: `p` came from MiMalloc.alloc(layout); freed once.
            unsafe { MiMalloc.dealloc(black_box(p), layout) };
        } else {
            let p = kmem_alloc(black_box(64), KM_SLEEP);
            // SAFETY: allocated just above with 64 bytes; freed once.
            unsafe { kmem_free(black_box(p), 64) };
        }
    }
    let ns = t.elapsed().as_nanos() as f64 / n as f64;
    println!("{n} {which} 64-byte alloc+free pairs: {ns:.2} ns/pair");
}
