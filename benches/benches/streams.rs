//! STREAMS messages against `bytes`, what a Rust user would otherwise pick:
//! - `allocb64_freeb`: `allocb(64)` + `freeb` vs `BytesMut::with_capacity(64)` + drop;
//! - `allocb64_write_dupb_2freeb`: `allocb(64)` + write 64 bytes + `dupb` + two `freeb` vs
//!   `BytesMut::with_capacity(64)` + `put_slice` + `freeze` + `clone` + two drops;
//! - `allocb1024_freeb`: `allocb(1024)` + `freeb` vs `BytesMut::with_capacity(1024)` + drop.
//!
//! `cargo bench -p benches --bench streams`

#![allow(missing_docs)] // criterion_group! generates undocumented items

use bytes::{BufMut, BytesMut};
use criterion::{Criterion, Throughput, black_box, criterion_group, criterion_main};
use ddi_kmem::{Arena, Checking};
use std::time::Duration;
use streams_core::{BPRI_MED, allocb, dupb, freeb};

const DATA: [u8; 64] = [0x5a; 64];

fn messages(c: &mut Criterion) {
    let arena = Arena::builder().name("bench").checking(Checking::OFF).build();
    let _entered = arena.enter();

    let mut g = c.benchmark_group("allocb64_freeb");
    g.throughput(Throughput::Elements(1));
    g.bench_function("streams", |b| {
        b.iter(|| {
            let mp = allocb(black_box(64), BPRI_MED);
            // SAFETY: `mp` came from allocb just above and is freed once.
            unsafe { freeb(black_box(mp)) };
        })
    });
    g.bench_function("bytes", |b| b.iter(|| drop(black_box(BytesMut::with_capacity(black_box(64))))));
    g.finish();

    let mut g = c.benchmark_group("allocb64_write_dupb_2freeb");
    g.throughput(Throughput::Elements(1));
    g.bench_function("streams", |b| {
        b.iter(|| {
            let mp = allocb(black_box(64), BPRI_MED);
            // SAFETY: `mp` is a fresh, live message owned here.
            let m = unsafe { &mut *mp };
            let wptr = m.b_wptr;
            // SAFETY: a fresh 64-byte message has 64 bytes of room at its write pointer; the
            // source is a separate constant.
            unsafe { wptr.copy_from_nonoverlapping(DATA.as_ptr(), 64) };
            m.b_wptr = wptr.wrapping_add(64);
            // SAFETY: `mp` is a live message.
            let dp = unsafe { dupb(mp) };
            // SAFETY: both are live and each is freed once.
            unsafe { freeb(black_box(dp)) };
            // SAFETY: as above.
            unsafe { freeb(black_box(mp)) };
        })
    });
    g.bench_function("bytes", |b| {
        b.iter(|| {
            let mut m = BytesMut::with_capacity(black_box(64));
            m.put_slice(&DATA);
            let a = m.freeze();
            let d = a.clone();
            drop(black_box(d));
            drop(black_box(a));
        })
    });
    g.finish();

    let mut g = c.benchmark_group("allocb1024_freeb");
    g.throughput(Throughput::Elements(1));
    g.bench_function("streams", |b| {
        b.iter(|| {
            let mp = allocb(black_box(1024), BPRI_MED);
            // SAFETY: `mp` came from allocb just above and is freed once.
            unsafe { freeb(black_box(mp)) };
        })
    });
    g.bench_function("bytes", |b| b.iter(|| drop(black_box(BytesMut::with_capacity(black_box(1024))))));
    g.finish();
}

fn config() -> Criterion {
    Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3)).sample_size(30)
}

criterion_group! { name = benches; config = config(); targets = messages }
criterion_main!(benches);
