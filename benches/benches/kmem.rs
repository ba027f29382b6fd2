//! `kmem_alloc` + `kmem_free` against the allocators a porter would otherwise call: glibc
//! malloc (the `System` allocator) and mimalloc (its `GlobalAlloc` called directly).
//!
//! `cargo bench -p benches --bench kmem`

#![allow(missing_docs)] // criterion_group! generates undocumented items

use criterion::{BenchmarkId, Criterion, Throughput, black_box, criterion_group, criterion_main};
use ddi_kmem::{Arena, Checking, KM_SLEEP, kmem_alloc, kmem_free};
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

fn config() -> Criterion {
    Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3)).sample_size(30)
}

criterion_group! { name = benches; config = config(); targets = pair, burst }
criterion_main!(benches);
