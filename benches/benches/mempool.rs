//! `mempool_alloc` + `mempool_free` of a 256-byte element against the object pools a porter
//! would otherwise pick: lockfree-object-pool's `LinearObjectPool` (`pull` + drop) and
//! object-pool's `Pool` (`try_pull` + drop).
//!
//! - `mempool_cache_hit`: a slab pool whose backing cache hits (the common case: the reserve
//!   is not touched, and the free goes back to the cache because the reserve is full).
//! - `mempool_reserve`: the backing allocator fails, so the reserve serves (`GFP_ATOMIC`: one
//!   try, then the reserve; the free refills it).
//!
//! `cargo bench -p benches --bench mempool`

#![allow(missing_docs)] // criterion_group! generates undocumented items

use criterion::{Criterion, Throughput, black_box, criterion_group, criterion_main};
use ddi_kmem::{Arena, Checking, KmemCache, kmem_cache_alloc, kmem_cache_create, kmem_cache_destroy, kmem_cache_free};
use ddi_mempool::{
    GFP_ATOMIC, GFP_KERNEL, Mempool, mempool_alloc, mempool_create_slab_pool, mempool_destroy, mempool_free,
};
use lockfree_object_pool::LinearObjectPool;
use std::ffi::c_void;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

const SIZE: usize = 256;
const MIN_NR: usize = 16;

fn fast_arena() -> Arena {
    Arena::builder().name("bench").checking(Checking::OFF).build()
}

fn cache() -> Arc<KmemCache> {
    let null = std::ptr::null_mut();
    Arc::new(kmem_cache_create("bench256", SIZE, 8, None, None, None, null, null, 0))
}

/// A pool over `kc` whose allocation function works while `healthy` is set and returns NULL
/// otherwise, so the reserve serves.
fn switchable_pool(kc: &Arc<KmemCache>, healthy: &Arc<AtomicBool>) -> Box<Mempool> {
    let (alloc_kc, free_kc, on) = (Arc::clone(kc), Arc::clone(kc), Arc::clone(healthy));
    Mempool::builder(MIN_NR)
        .create(
            move |gfp, _data| {
                if on.load(Ordering::Relaxed) {
                    kmem_cache_alloc(&alloc_kc, gfp.km_flags())
                } else {
                    std::ptr::null_mut()
                }
            },
            // SAFETY: the pool frees only elements from `kmem_cache_alloc(&alloc_kc)`, the
            // same cache, once each.
            move |element: *mut c_void, _data| unsafe { kmem_cache_free(&free_kc, element) },
            std::ptr::null_mut(),
        )
        .expect("preallocation")
}

fn get_put(c: &mut Criterion) {
    let mut g = c.benchmark_group("mempool_get_put_256");
    g.throughput(Throughput::Elements(1));
    let arena = fast_arena();
    let _entered = arena.enter();

    let kc = cache();
    let pool = mempool_create_slab_pool(MIN_NR, &kc).expect("preallocation");
    g.bench_function("mempool_cache_hit", |b| {
        b.iter(|| {
            let p = mempool_alloc(&pool, GFP_KERNEL);
            // SAFETY: `p` came from this pool just above; freed once.
            unsafe { mempool_free(black_box(p), &pool) };
        })
    });
    mempool_destroy(Some(pool));

    let healthy = Arc::new(AtomicBool::new(true));
    let pool = switchable_pool(&kc, &healthy);
    healthy.store(false, Ordering::Relaxed);
    g.bench_function("mempool_reserve", |b| {
        b.iter(|| {
            let p = mempool_alloc(&pool, GFP_ATOMIC);
            // SAFETY: `p` came from this pool's reserve just above; freed once, back to it.
            unsafe { mempool_free(black_box(p), &pool) };
        })
    });
    assert_eq!(pool.curr_nr(), MIN_NR, "every element went back to the reserve");
    mempool_destroy(Some(pool));
    kmem_cache_destroy(Arc::into_inner(kc).expect("the pools are gone"));

    let linear = LinearObjectPool::<[u8; SIZE]>::new(|| [0; SIZE], |_| {});
    g.bench_function("lockfree_object_pool_linear", |b| {
        b.iter(|| {
            let x = linear.pull();
            drop(black_box(x));
        })
    });

    let pool = object_pool::Pool::<[u8; SIZE]>::new(MIN_NR, || [0; SIZE]);
    g.bench_function("object_pool", |b| {
        b.iter(|| {
            let x = pool.try_pull().expect("the pool holds MIN_NR objects");
            drop(black_box(x));
        })
    });
    g.finish();
}

fn config() -> Criterion {
    Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3)).sample_size(30)
}

criterion_group! { name = benches; config = config(); targets = get_put }
criterion_main!(benches);
