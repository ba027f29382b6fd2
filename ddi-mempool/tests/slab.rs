//! Slab pools: elements from a ddi-kmem object cache (`mempool_create_slab_pool`).

mod common;

use common::{arena, iters, unbounded};
use ddi_kmem::{
    Arena, Checking, FailurePlan, KM_NOSLEEP, KmFlags, KmemCache, Response, kmem_alloc, kmem_cache_create,
    kmem_cache_destroy, kmem_cache_free, kmem_free,
};
use ddi_mempool::{
    GFP_ATOMIC, GFP_KERNEL, GFP_NOFS, GFP_NOIO, GFP_NOWAIT, Mempool, MempoolError, POISON_END, POISON_FREE,
    POISON_INUSE, mempool_alloc, mempool_alloc_preallocated, mempool_create_slab_pool, mempool_destroy, mempool_exit,
    mempool_free, mempool_init_slab_pool, mempool_initialized, mempool_resize,
};
use std::ffi::c_void;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// A cache without constructor, in the current arena.
fn plain_cache(name: &str, size: usize) -> Arc<KmemCache> {
    let null = std::ptr::null_mut();
    Arc::new(kmem_cache_create(name, size, 8, None, None, None, null, null, 0))
}

/// Takes the cache back from its `Arc` (every pool over it gone) and destroys it.
fn destroy_cache(kc: Arc<KmemCache>) {
    kmem_cache_destroy(Arc::into_inner(kc).expect("no pool holds the cache any more"));
}

/// What the constructor writes at the start of every object.
const MAGIC: u64 = 0x0b1e_c7ed_5eed_f00d;

/// Constructor and destructor calls, counted through the cache's `private` pointer.
#[derive(Default)]
struct Counts {
    constructed: AtomicUsize,
    destroyed: AtomicUsize,
}

/// The object the constructed caches hold: the magic, then a serial number.
#[repr(C)]
struct Obj {
    magic: u64,
    serial: u64,
    payload: [u8; 48],
}

fn construct(buf: *mut c_void, private: *mut c_void, _flags: KmFlags) -> i32 {
    // SAFETY: `private` is the `Counts` the test created the cache with, alive until the
    // cache is destroyed.
    let counts = unsafe { &*private.cast::<Counts>() };
    let serial = counts.constructed.fetch_add(1, Ordering::SeqCst) as u64;
    // SAFETY: the cache hands the constructor a buffer of size_of::<Obj>() bytes aligned to 8.
    unsafe { buf.cast::<Obj>().write(Obj { magic: MAGIC, serial, payload: [0; 48] }) };
    0
}

fn destruct(buf: *mut c_void, private: *mut c_void) {
    // SAFETY: as in `construct`.
    let counts = unsafe { &*private.cast::<Counts>() };
    // SAFETY: the destructor only sees objects the constructor built.
    let magic = unsafe { buf.cast::<Obj>().read().magic };
    assert_eq!(magic, MAGIC, "the destructor sees a constructed object");
    counts.destroyed.fetch_add(1, Ordering::SeqCst);
}

/// A cache of constructed `Obj`s in the current arena; `counts` must outlive it.
fn obj_cache(counts: &Counts) -> Arc<KmemCache> {
    let private = std::ptr::from_ref(counts).cast_mut().cast::<c_void>();
    let null = std::ptr::null_mut();
    Arc::new(kmem_cache_create("obj", size_of::<Obj>(), 8, Some(construct), Some(destruct), None, private, null, 0))
}

/// The guarantee over a slab pool: budget exhausted, every cache allocation that may fail
/// fails, and N threads looping on alloc/free with sleeping masks all finish, served by a
/// reserve smaller than N. The cache constructs its objects; every element is one.
#[test]
fn threads_finish_with_budget_exhausted_and_injection() {
    let threads = iters(8, 3);
    let loops = iters(300, 10);
    let a = arena("slab-guarantee", 4096);
    let _in = a.enter();
    let counts = Counts::default();
    let kc = obj_cache(&counts);
    let pool = Mempool::builder(2).timeout(Duration::from_millis(20)).slab(&kc).expect("prealloc");
    let mut hog = Vec::new();
    loop {
        let p = kmem_alloc(64, KM_NOSLEEP);
        if p.is_null() {
            break;
        }
        hog.push(p);
    }
    assert!(kmem_alloc(32, KM_NOSLEEP).is_null(), "budget exhausted");
    a.inject(FailurePlan::Always);
    std::thread::scope(|s| {
        for t in 0..threads {
            let (pool, a) = (&pool, &a);
            s.spawn(move || {
                let _in = a.enter();
                let gfp = [GFP_KERNEL, GFP_NOFS, GFP_NOIO][t % 3];
                for i in 0..loops {
                    let p = mempool_alloc(pool, gfp).cast::<Obj>();
                    assert!(!p.is_null(), "a sleeping mempool_alloc never fails");
                    // SAFETY: the element is a constructed Obj from this pool, ours until freed.
                    let obj = unsafe { &mut *p };
                    assert_eq!(obj.magic, MAGIC, "a constructed object");
                    obj.payload.fill(i as u8);
                    if i % 7 == 0 {
                        std::thread::yield_now();
                    }
                    // SAFETY: `p` came from this pool and is freed once.
                    unsafe { mempool_free(p.cast(), pool) };
                }
            });
        }
    });
    assert_eq!(pool.curr_nr(), 2);
    assert_eq!(pool.outstanding(), 0);
    a.clear_injection();
    for p in hog {
        // SAFETY: each came from kmem_alloc(64) in this arena, freed once.
        unsafe { kmem_free(p, 64) };
    }
    assert_eq!(mempool_destroy(Some(pool)), 0);
    assert_eq!(kc.stats().buffers_in_use, 0, "the reserve went back to the cache");
    destroy_cache(kc);
    assert_eq!(a.bytes_in_use(), 0);
    assert_eq!(a.stats().errors, 0);
}

/// The reserve's accounting against the cache's: creation takes `min_nr` buffers, a healthy
/// cache serves first, frees refill the reserve before returning to the cache, and destroy
/// gives every reserved buffer back.
#[test]
fn reserve_accounting() {
    let a = arena("slab-accounting", 1 << 20);
    let _in = a.enter();
    let kc = plain_cache("acct", 200);
    let pool = mempool_create_slab_pool(3, &kc).expect("prealloc");
    assert_eq!((pool.min_nr(), pool.curr_nr(), pool.outstanding()), (3, 3, 0));
    assert_eq!(kc.stats().buffers_in_use, 3, "the reserve holds three cache buffers");
    assert_eq!(Arc::strong_count(&kc), 3, "the pool's two backend functions hold the cache");

    // A healthy cache serves; the reserve stays full; the free goes back to the cache.
    let p = mempool_alloc(&pool, GFP_KERNEL);
    assert_eq!((pool.curr_nr(), pool.outstanding(), kc.stats().buffers_in_use), (3, 1, 4));
    // SAFETY: from this pool, freed once.
    unsafe { mempool_free(p, &pool) };
    assert_eq!((pool.curr_nr(), pool.outstanding(), kc.stats().buffers_in_use), (3, 0, 3));

    // The cache fails: the reserve drains, last freed first out; atomic callers get NULL.
    a.inject(FailurePlan::Always);
    let held: Vec<_> = (0..3).map(|_| mempool_alloc(&pool, GFP_ATOMIC)).collect();
    assert!(held.iter().all(|p| !p.is_null()));
    assert_eq!((pool.curr_nr(), pool.outstanding(), kc.stats().buffers_in_use), (0, 3, 3));
    assert!(mempool_alloc(&pool, GFP_NOWAIT).is_null());
    assert!(mempool_alloc_preallocated(&pool).is_null());
    assert!(kc.stats().failures >= 2, "the cache saw the injected failures");
    for &p in &held {
        // SAFETY: from this pool, freed once each.
        unsafe { mempool_free(p, &pool) };
    }
    assert_eq!((pool.curr_nr(), pool.outstanding(), kc.stats().buffers_in_use), (3, 0, 3));
    assert_eq!(mempool_alloc_preallocated(&pool), held[2], "last freed, first out");
    // SAFETY: from this pool, freed once.
    unsafe { mempool_free(held[2], &pool) };
    a.clear_injection();

    // Shrinking frees surplus reserve buffers to the cache; growing takes more.
    mempool_resize(&pool, 1).expect("shrink");
    assert_eq!((pool.curr_nr(), kc.stats().buffers_in_use), (1, 1));
    mempool_resize(&pool, 4).expect("grow");
    assert_eq!((pool.curr_nr(), kc.stats().buffers_in_use), (4, 4));

    assert_eq!(mempool_destroy(Some(pool)), 0);
    assert_eq!(kc.stats().buffers_in_use, 0);
    assert_eq!(Arc::strong_count(&kc), 1, "destroy dropped the pool's handles");
    destroy_cache(kc);
    assert_eq!(a.bytes_in_use(), 0);
    assert_eq!(a.stats().errors, 0);
}

/// Over a cache with a constructor, every element the pool hands out is a constructed
/// object, from the cache or from the reserve, in a checking arena (where poisoning would
/// otherwise be on) and without checks (where the cache keeps objects constructed).
#[test]
fn elements_are_constructed_objects() {
    for checking in [Checking::FULL, Checking::OFF] {
        let a = Arena::builder().name("slab-ctor").checking(checking).response(Response::Panic).build();
        let _in = a.enter();
        let counts = Counts::default();
        let kc = obj_cache(&counts);
        let pool = mempool_create_slab_pool(2, &kc).expect("prealloc");
        assert!(counts.constructed.load(Ordering::SeqCst) >= 2, "preallocation constructs");
        let magic = |p: *mut c_void| {
            assert!(!p.is_null());
            // SAFETY: a pool element is an `Obj`-sized cache buffer, ours.
            unsafe { p.cast::<Obj>().read().magic }
        };

        let fresh = mempool_alloc(&pool, GFP_KERNEL);
        assert_eq!(magic(fresh), MAGIC, "from the cache: constructed ({checking:?})");
        a.inject(FailurePlan::Always);
        let r1 = mempool_alloc(&pool, GFP_ATOMIC);
        let r2 = mempool_alloc(&pool, GFP_KERNEL);
        assert_eq!(pool.curr_nr(), 0, "both came from the reserve");
        assert_eq!((magic(r1), magic(r2)), (MAGIC, MAGIC), "from the reserve: constructed, not poisoned");
        // An object freed to the reserve keeps its state, as one freed to the cache does.
        // SAFETY: `r1` is an Obj of ours.
        unsafe { (*r1.cast::<Obj>()).payload[0] = 0x77 };
        // SAFETY: from this pool, freed once; the reserve takes it (0 < 2).
        unsafe { mempool_free(r1, &pool) };
        let again = mempool_alloc(&pool, GFP_ATOMIC);
        assert_eq!(again, r1, "last freed, first out");
        // SAFETY: as above.
        let obj = unsafe { again.cast::<Obj>().read() };
        assert_eq!((obj.magic, obj.payload[0]), (MAGIC, 0x77));
        for p in [fresh, r2, again] {
            // SAFETY: from this pool, freed once each.
            unsafe { mempool_free(p, &pool) };
        }
        a.clear_injection();
        assert_eq!(mempool_destroy(Some(pool)), 0);
        assert_eq!(kc.stats().buffers_in_use, 0);
        destroy_cache(kc);
        assert_eq!(
            counts.destroyed.load(Ordering::SeqCst),
            counts.constructed.load(Ordering::SeqCst),
            "every constructed object was destroyed with the cache ({checking:?})"
        );
        assert_eq!(a.bytes_in_use(), 0);
        assert_eq!(a.stats().errors, 0);
    }
}

/// Poisoning asked for over a cache without a constructor: reserved elements are poisoned and
/// checked on their way out, as for kmalloc pools.
#[test]
fn poisoning_on_request() {
    let a = Arena::builder().name("slab-poison").checking(Checking::FULL).response(Response::Report).build();
    let _in = a.enter();
    let kc = plain_cache("poisoned", 40);
    let pool = Mempool::builder(2).poisoning(true).slab(&kc).expect("prealloc");
    a.inject(FailurePlan::Always);
    let p = mempool_alloc(&pool, GFP_ATOMIC).cast::<u8>();
    // SAFETY: a 40-byte element, ours.
    let bytes = unsafe { std::slice::from_raw_parts(p, 40) };
    assert!(bytes.iter().all(|&b| b == POISON_INUSE));
    // SAFETY: from this pool, freed once; it goes to the reserve (1 < 2).
    unsafe { mempool_free(p.cast(), &pool) };
    // SAFETY: the element sits in the reserve, still allocated from the cache.
    let stale = unsafe { std::slice::from_raw_parts(p, 40) };
    assert!(stale[..39].iter().all(|&b| b == POISON_FREE) && stale[39] == POISON_END);
    // SAFETY: offset 5 lies inside the 40-byte element.
    let victim = unsafe { p.add(5) };
    // SAFETY: the memory is still allocated (held by the reserve); this simulates the bug.
    unsafe { victim.write(0) };
    let q = mempool_alloc(&pool, GFP_ATOMIC);
    assert_eq!(q.cast::<u8>(), p);
    match pool.errors().as_slice() {
        [MempoolError::PoisonMismatch { offset: 5, found: 0, size: 40, .. }] => {}
        other => panic!("{other:?}"),
    }
    // SAFETY: from this pool, freed once.
    unsafe { mempool_free(q, &pool) };
    a.clear_injection();
    drop(pool);
    assert_eq!(kc.stats().buffers_in_use, 0);
    destroy_cache(kc);
    assert_eq!(a.bytes_in_use(), 0);
    assert_eq!(a.stats().errors, 0);
}

/// Embedded slab pools, the cache shared by two pools, and elements from the cache's arena
/// whatever arena is current.
#[test]
fn embedded_shared_cache_and_its_arena() {
    let home = unbounded("slab-home");
    let kc = home.run(|| plain_cache("shared", 96));
    let other = unbounded("slab-other");
    let _in = other.enter();
    struct Device {
        reads: Mempool,
        writes: Mempool,
    }
    let mut dev = Device { reads: Mempool::new(), writes: Mempool::new() };
    mempool_init_slab_pool(&mut dev.reads, 2, &kc).expect("prealloc");
    mempool_init_slab_pool(&mut dev.writes, 1, &kc).expect("prealloc");
    assert_eq!(mempool_init_slab_pool(&mut dev.reads, 2, &kc), Err(MempoolError::AlreadyInitialized));
    assert!(mempool_initialized(&dev.writes));
    assert_eq!(kc.stats().buffers_in_use, 3);
    assert_eq!(other.bytes_in_use(), 0, "slab pool elements come from the cache's arena");
    assert!(home.bytes_in_use() >= 3 * 96);
    let p = mempool_alloc(&dev.reads, GFP_KERNEL);
    // A pool over the same cache may free it (the backend is the same).
    // SAFETY: an element of a pool over `kc`, freed once; `writes` is full, so it goes to kc.
    unsafe { mempool_free(p, &dev.writes) };
    assert_eq!(mempool_exit(&mut dev.reads), 1, "counted per pool: reads handed one out");
    assert_eq!(mempool_exit(&mut dev.writes), -1, "and writes took one back");
    assert_eq!(kc.stats().buffers_in_use, 0);
    drop(dev);
    assert_eq!(Arc::strong_count(&kc), 1);
    home.run(|| destroy_cache(kc));
    assert_eq!(home.bytes_in_use(), 0);
    assert_eq!(other.bytes_in_use(), 0);
}

/// Destroy with an element outstanding: the element is the caller's to free to the cache.
#[test]
fn destroy_with_outstanding_element() {
    let a = arena("slab-destroy", 1 << 20);
    let _in = a.enter();
    let kc = plain_cache("destroy", 64);
    let pool = mempool_create_slab_pool(1, &kc).expect("prealloc");
    let out = mempool_alloc(&pool, GFP_KERNEL);
    assert_eq!(mempool_destroy(Some(pool)), 1);
    assert_eq!(kc.stats().buffers_in_use, 1);
    // SAFETY: a buffer of `kc` from the destroyed pool, freed once.
    unsafe { kmem_cache_free(&kc, out) };
    assert_eq!(kc.stats().buffers_in_use, 0);
    destroy_cache(kc);
    assert_eq!(a.bytes_in_use(), 0);
    assert_eq!(a.stats().errors, 0);
}

/// Preallocation that cannot complete gives the buffers it got back to the cache.
#[test]
fn create_fails_cleanly() {
    let a = arena("slab-create-fail", 1 << 20);
    let _in = a.enter();
    let kc = plain_cache("fail", 64);
    a.inject(FailurePlan::Nth(3));
    let r = Mempool::builder(5).gfp(GFP_NOWAIT).slab(&kc);
    assert_eq!(r.unwrap_err(), MempoolError::NoMemory { wanted: 5, got: 2 });
    a.clear_injection();
    assert_eq!(kc.stats().buffers_in_use, 0);
    assert_eq!(Arc::strong_count(&kc), 1, "the failed pool let go of the cache");
    destroy_cache(kc);
    assert_eq!(a.bytes_in_use(), 0);
}
