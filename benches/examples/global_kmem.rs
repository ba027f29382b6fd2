//! A whole program on kmem: `KmemGlobal` is its `#[global_allocator]`.
//!
//! `cargo run --release -p benches --example global_kmem -- [MODE] [N]`
//! - `work` (default): a small multi-threaded program (word counts in hash maps, sorted
//!   strings, a producer/consumer channel of boxes, threads that exit), then what kmem served
//!   and what went to the system allocator.
//! - `box N`: `N` times `Box::new([0u8; 64])` and its drop, through the global allocator
//!   (kmem), a loop for profilers (`valgrind --tool=callgrind`, `perf`).
//! - `system N`, `mimalloc N`: the same pair through `System` or `MiMalloc`'s `GlobalAlloc`
//!   called directly (the program's global allocator is still kmem).

use benches::box_64;
use ddi_kmem::KmemGlobal;
use mimalloc::MiMalloc;
use std::alloc::System;
use std::collections::HashMap;
use std::hint::black_box;

#[global_allocator]
static KMEM: KmemGlobal = KmemGlobal::new();

fn main() {
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_else(|| "work".to_string());
    let n: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(10_000_000);
    match mode.as_str() {
        "work" => work(),
        "box" => pairs(n, "global allocator (kmem)", || drop(black_box(Box::new([0u8; 64])))),
        "system" => pairs(n, "System", || box_64(&System)),
        "mimalloc" => pairs(n, "MiMalloc", || box_64(&MiMalloc)),
        other => panic!("unknown mode {other}: work, box N, system N or mimalloc N"),
    }
}

fn pairs(n: u64, what: &str, f: impl Fn()) {
    let t = std::time::Instant::now();
    for _ in 0..n {
        f();
    }
    let ns = t.elapsed().as_nanos() as f64 / n as f64;
    println!("{n} Box<[u8; 64]> new+drop through {what}: {ns:.2} ns/pair");
}

fn work() {
    let text = "the quick brown fox jumps over the lazy dog and the dog sleeps while the fox runs ";
    let t = std::time::Instant::now();
    let (tx, rx) = std::sync::mpsc::sync_channel::<Box<[u64]>>(256);
    let consumer = std::thread::spawn(move || rx.into_iter().map(|b| b.iter().sum::<u64>()).sum::<u64>());
    let workers: Vec<_> = (0..4u64)
        .map(|w| {
            let tx = tx.clone();
            std::thread::spawn(move || {
                let mut counts: HashMap<String, usize> = HashMap::new();
                for round in 0..2_000u64 {
                    for word in text.split(' ').filter(|w| !w.is_empty()) {
                        *counts.entry(format!("{word}{}", round % 50)).or_default() += 1;
                    }
                    let len = (round * 7 + w) % 200 + 1;
                    tx.send((0..len).collect::<Vec<u64>>().into_boxed_slice()).unwrap();
                }
                let mut words: Vec<String> = counts.into_keys().collect();
                words.sort();
                words.len()
            })
        })
        .collect();
    drop(tx);
    let words: usize = workers.into_iter().map(|h| h.join().unwrap()).sum();
    let sum = consumer.join().unwrap();
    let elapsed = t.elapsed();
    let s = KMEM.stats();
    let c = KMEM.counters();
    println!("work: {words} distinct words over 4 threads, checksum {sum}, {elapsed:?}");
    println!("kmem served {} allocations ({} frees); {} bytes in use now", s.allocations, s.frees, s.bytes_in_use);
    for class in s.classes.iter().filter(|c| c.allocations > 0) {
        match class.size {
            Some(size) => println!("  class {size:>6}: {:>9} allocations", class.allocations),
            None => println!("  pages:        {:>9} allocations", class.allocations),
        }
    }
    println!(
        "system allocator: {} large, {} made by kmem for itself, {} during thread exit, {} refused by kmem; {} frees deferred",
        c.large, c.reentrant, c.no_thread_state, c.refused, c.deferred_frees
    );
}
