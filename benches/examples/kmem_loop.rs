//! A plain loop over `kmem_alloc(64)` + `kmem_free`, for profilers (`perf`, callgrind).
//!
//! `cargo run --release -p benches --example kmem_loop -- [iterations]`

use ddi_kmem::{Arena, Checking, KM_SLEEP, kmem_alloc, kmem_free};
use std::hint::black_box;

fn main() {
    let n: u64 = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(10_000_000);
    let arena = Arena::builder().name("loop").checking(Checking::OFF).build();
    let _g = arena.enter();
    let t = std::time::Instant::now();
    for _ in 0..n {
        let p = kmem_alloc(black_box(64), KM_SLEEP);
        // SAFETY: allocated just above with 64 bytes; freed once.
        unsafe { kmem_free(black_box(p), 64) };
    }
    let ns = t.elapsed().as_nanos() as f64 / n as f64;
    println!("{n} kmem_alloc(64)+kmem_free pairs: {ns:.2} ns/pair");
}
