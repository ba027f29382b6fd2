//! ddi-kmem against what a porter would otherwise call:
//! - `alloc_free_pair`, `burst_1000x64`: `kmem_alloc` + `kmem_free` against glibc malloc (the
//!   `System` allocator) and mimalloc (its `GlobalAlloc` called directly);
//! - `cache_pair_256`: `kmem_cache_alloc` + `kmem_cache_free` of a 256-byte object against
//!   lockfree-object-pool's `LinearObjectPool` and a crossbeam `ArrayQueue` free list;
//! - `handoff_2threads_64`: one thread allocates 64-byte buffers and sends them through a
//!   crossbeam channel to a thread that frees them, against the same with mimalloc;
//! - `global_box_64`: a `Box<[u8; 64]>`'s allocation, initialization and free through three
//!   `GlobalAlloc`s called directly: `KmemGlobal` (kmem as a global allocator), mimalloc and
//!   the system allocator (glibc).
//!
//! `cargo bench -p benches --bench kmem`

#![allow(missing_docs)] // criterion_group! generates undocumented items

use benches::box_64;
use criterion::{BenchmarkId, Criterion, Throughput, black_box, criterion_group, criterion_main};
use crossbeam_queue::ArrayQueue;
use ddi_kmem::{
    Arena, Checking, KM_SLEEP, KmemGlobal, kmem_alloc, kmem_cache_alloc, kmem_cache_create, kmem_cache_destroy,
    kmem_cache_free, kmem_free,
};
use lockfree_object_pool::LinearObjectPool;
use mimalloc::MiMalloc;
use std::alloc::{GlobalAlloc, Layout, System};
use std::time::Duration;

fn fast_arena() -> Arena {
    Arena::builder().name("bench").checking(Checking::OFF).build()
}

fn pair(c: &mut Criterion) {
    let mut g = c.benchmark_group("alloc_free_pair");
    g.throughput(Throughput::Elements(1));
    let arena = fast_arena();
    let _entered = arena.enter();
    for size in [64usize, 1024, 4096] {
        let layout = Layout::from_size_align(size, 8).unwrap();
        g.bench_with_input(BenchmarkId::new("kmem", size), &size, |b, &size| {
            b.iter(|| {
                let p = kmem_alloc(black_box(size), KM_SLEEP);
                // SAFETY: allocated just above with `size`; freed once.
                unsafe { kmem_free(black_box(p), size) };
            })
        });
        g.bench_with_input(BenchmarkId::new("glibc", size), &layout, |b, &layout| {
            b.iter(|| {
                // SAFETY: non-zero layout; freed with the same layout.
                let p = unsafe { System.alloc(black_box(layout)) };
                // SAFETY: `p` came from System.alloc(layout).
                unsafe { System.dealloc(black_box(p), layout) };
            })
        });
        g.bench_with_input(BenchmarkId::new("mimalloc", size), &layout, |b, &layout| {
            b.iter(|| {
                // SAFETY: non-zero layout; freed with the same layout.
                let p = unsafe { MiMalloc.alloc(black_box(layout)) };
                // SAFETY: `p` came from MiMalloc.alloc(layout).
                unsafe { MiMalloc.dealloc(black_box(p), layout) };
            })
        });
    }
    g.finish();
}

fn burst(c: &mut Criterion) {
    const N: usize = 1000;
    let mut g = c.benchmark_group("burst_1000x64");
    g.throughput(Throughput::Elements(N as u64));
    let arena = fast_arena();
    let _entered = arena.enter();
    let layout = Layout::from_size_align(64, 8).unwrap();
    let mut ptrs: Vec<*mut u8> = Vec::with_capacity(N);
    g.bench_function("kmem", |b| {
        b.iter(|| {
            ptrs.extend((0..N).map(|_| kmem_alloc(64, KM_SLEEP).cast::<u8>()));
            for p in ptrs.drain(..) {
                // SAFETY: each came from kmem_alloc(64) above; freed once.
                unsafe { kmem_free(p.cast(), 64) };
            }
        })
    });
    g.bench_function("glibc", |b| {
        b.iter(|| {
            // SAFETY: non-zero layout.
            ptrs.extend((0..N).map(|_| unsafe { System.alloc(layout) }));
            for p in ptrs.drain(..) {
                // SAFETY: each came from System.alloc(layout); freed once.
                unsafe { System.dealloc(p, layout) };
            }
        })
    });
    g.bench_function("mimalloc", |b| {
        b.iter(|| {
            // SAFETY: non-zero layout.
            ptrs.extend((0..N).map(|_| unsafe { MiMalloc.alloc(layout) }));
            for p in ptrs.drain(..) {
                // SAFETY: each came from MiMalloc.alloc(layout); freed once.
                unsafe { MiMalloc.dealloc(p, layout) };
            }
        })
    });
    g.finish();
}

fn cache_pair(c: &mut Criterion) {
    let mut g = c.benchmark_group("cache_pair_256");
    g.throughput(Throughput::Elements(1));
    let arena = fast_arena();
    let _entered = arena.enter();
    let cp = kmem_cache_create("bench256", 256, 8, None, None, None, std::ptr::null_mut(), std::ptr::null_mut(), 0);
    g.bench_function("kmem_cache", |b| {
        b.iter(|| {
            let p = kmem_cache_alloc(&cp, KM_SLEEP);
            // SAFETY: allocated just above from `cp`; freed once.
            unsafe { kmem_cache_free(&cp, black_box(p)) };
        })
    });
    let linear = LinearObjectPool::<[u8; 256]>::new(|| [0; 256], |_| {});
    g.bench_function("lockfree_object_pool_linear", |b| {
        b.iter(|| {
            let o = linear.pull();
            black_box(&o);
        })
    });
    let queue = ArrayQueue::<Box<[u8; 256]>>::new(64);
    for _ in 0..64 {
        queue.push(Box::new([0; 256])).expect("capacity");
    }
    g.bench_function("crossbeam_arrayqueue_freelist", |b| {
        b.iter(|| {
            let o = queue.pop().expect("prefilled");
            black_box(&o);
            queue.push(o).expect("room");
        })
    });
    g.finish();
    kmem_cache_destroy(cp);
}

/// A buffer pointer crossing to the consumer thread.
struct Buf(*mut u8);
// SAFETY: each buffer is owned by exactly one thread at a time (sent, then freed there).
unsafe impl Send for Buf {}

fn handoff(c: &mut Criterion) {
    const N: u64 = 100_000;
    let mut g = c.benchmark_group("handoff_2threads_64");
    g.throughput(Throughput::Elements(N));
    g.sample_size(10);
    let arena = fast_arena();
    let layout = Layout::from_size_align(64, 8).unwrap();
    g.bench_function("kmem", |b| {
        b.iter_custom(|iters| {
            let (tx, rx) = crossbeam_channel::bounded::<Buf>(1024);
            let consumer_arena = arena.clone();
            let consumer = std::thread::spawn(move || {
                let _entered = consumer_arena.enter();
                for Buf(p) in rx {
                    // SAFETY: each came from kmem_alloc(64) in the same arena; freed once.
                    unsafe { kmem_free(p.cast(), 64) };
                }
            });
            let _entered = arena.enter();
            let start = std::time::Instant::now();
            for _ in 0..iters * N {
                tx.send(Buf(kmem_alloc(64, KM_SLEEP).cast())).unwrap();
            }
            drop(tx);
            consumer.join().unwrap();
            start.elapsed()
        })
    });
    g.bench_function("mimalloc", |b| {
        b.iter_custom(|iters| {
            let (tx, rx) = crossbeam_channel::bounded::<Buf>(1024);
            let consumer = std::thread::spawn(move || {
                for Buf(p) in rx {
                    // SAFETY: each came from MiMalloc.alloc(layout); freed once.
                    unsafe { MiMalloc.dealloc(p, layout) };
                }
            });
            let start = std::time::Instant::now();
            for _ in 0..iters * N {
                // SAFETY: non-zero layout.
                tx.send(Buf(unsafe { MiMalloc.alloc(layout) })).unwrap();
            }
            drop(tx);
            consumer.join().unwrap();
            start.elapsed()
        })
    });
    g.finish();
}

fn global_box(c: &mut Criterion) {
    static KMEM: KmemGlobal = KmemGlobal::new();
    let mut g = c.benchmark_group("global_box_64");
    g.throughput(Throughput::Elements(1));
    g.bench_function("kmem_global", |b| b.iter(|| box_64(&KMEM)));
    g.bench_function("mimalloc", |b| b.iter(|| box_64(&MiMalloc)));
    g.bench_function("glibc", |b| b.iter(|| box_64(&System)));
    g.finish();
}

fn config() -> Criterion {
    Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3)).sample_size(30)
}

criterion_group! { name = benches; config = config(); targets = pair, burst, cache_pair, handoff, global_box }
criterion_main!(benches);
