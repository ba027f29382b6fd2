//! `KmemGlobal` installed as this program's `#[global_allocator]`: every `Vec`, `String`,
//! `Box`, `HashMap`, channel and thread of the test, of std and of kmem's own bookkeeping goes
//! through the adapter.
//!
//! This file is its own binary with `harness = false` (`Cargo.toml`): libtest would run its
//! bookkeeping on other threads, through the same allocator, while a scenario measures the
//! adapter's bytes in use. Each scenario runs twice: the first run may grow process-wide state
//! that std and kmem keep for good (stdout's buffer, the free list of cache ids); after the
//! second, the adapter's arena must be back to exactly the bytes it had before it. Arguments
//! that do not start with `-` filter scenarios by name, as libtest's do.
//!
//! Under Miri the scenarios run with fewer threads and iterations.

#[cfg(not(loom))]
#[global_allocator]
static KMEM: ddi_kmem::KmemGlobal = ddi_kmem::KmemGlobal::new();

#[cfg(loom)]
fn main() {
    // The process-wide granule map is loom-instrumented under `--cfg loom` and may only be
    // used inside a model, so this program does not install the adapter there.
    println!("global_alloc: not built under --cfg loom");
}

#[cfg(not(loom))]
fn main() {
    let filters: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
    let scenarios: [(&str, fn()); 5] = [
        ("global_alloc_startup_is_served_by_kmem", scenarios::startup_is_served_by_kmem),
        ("global_alloc_threads_do_real_work", scenarios::threads_do_real_work),
        ("global_alloc_thread_exit_destructors", scenarios::thread_exit_destructors),
        ("global_alloc_realloc_in_place_and_across", scenarios::realloc_in_place_and_across),
        ("global_alloc_under_kmem_arenas", scenarios::under_kmem_arenas),
    ];
    scenarios::raise_parking_lot_peak();
    let mut ran = 0;
    for (name, f) in scenarios {
        if filters.is_empty() || filters.iter().any(|x| name.contains(x.as_str())) {
            println!("test {name} ...");
            scenarios::leak_checked(name, f);
            println!("test {name} ... ok");
            ran += 1;
        }
    }
    let c = KMEM.counters();
    println!("global_alloc: {ran} scenarios passed; {c:?}");
}

#[cfg(not(loom))]
mod scenarios {
    use super::KMEM;
    use ddi_kmem::{
        Arena, Checking, KM_SLEEP, KmemCache, KmemGlobal, kmem_alloc, kmem_cache_alloc, kmem_cache_create,
        kmem_cache_destroy, kmem_cache_free, kmem_free,
    };
    use std::cell::RefCell;
    use std::collections::HashMap;
    use std::sync::mpsc;

    /// Threads and iterations: the machine has 2 cores; Miri is slow.
    const THREADS: usize = if cfg!(miri) { 2 } else { 6 };
    const ITERS: usize = if cfg!(miri) { 3 } else { 300 };

    /// parking_lot (kmem's locks) keeps, for good, a hash table sized for the most threads
    /// that were alive at once after parking; a new peak grows it (the old table is leaked on
    /// purpose, parking_lot_core `grow_hashtable`), and when a scenario reaches its peak
    /// depends on thread timing. So the program first sets a peak no scenario reaches: 160
    /// threads, each parked once, all alive together. (Under Miri kmem's locks are std's.)
    pub(crate) fn raise_parking_lot_peak() {
        if cfg!(miri) {
            return;
        }
        let n = 160;
        let barrier = std::sync::Arc::new(std::sync::Barrier::new(n));
        let threads: Vec<_> = (0..n)
            .map(|_| {
                let barrier = barrier.clone();
                std::thread::spawn(move || {
                    let (m, cv) = (parking_lot::Mutex::new(()), parking_lot::Condvar::new());
                    // Parks once (the wait times out at once): this thread's parking data exists.
                    let _ = cv.wait_for(&mut m.lock(), std::time::Duration::from_nanos(1));
                    barrier.wait();
                })
            })
            .collect();
        threads.into_iter().for_each(|t| t.join().unwrap());
    }

    /// Runs `f` once to warm up, then again, and checks the second run gave back every byte.
    pub(crate) fn leak_checked(name: &str, f: fn()) {
        f();
        let before = KMEM.bytes_in_use();
        let stats = KMEM.stats();
        f();
        let after = KMEM.bytes_in_use();
        if after != before {
            let now = KMEM.stats();
            let grew: Vec<(usize, usize, usize)> = (now.classes.iter().zip(&stats.classes))
                .filter(|(n, s)| n.buffers_in_use != s.buffers_in_use)
                .map(|(n, s)| (n.size.unwrap_or(0), s.buffers_in_use, n.buffers_in_use))
                .collect();
            panic!(
                "{name}: the adapter's arena holds {after} bytes, {before} before; (class, buffers before, after): {grew:?}"
            );
        }
        let s = KMEM.stats();
        assert!(s.allocations > stats.allocations, "{name}: kmem served none of the allocations");
        assert_eq!(s.errors, 0, "{name}: kmem reported a misuse: {:?}", s);
    }

    fn assert_aligned<T>(p: *const T) {
        assert_eq!(p.addr() % std::mem::align_of::<T>(), 0, "misaligned {}", std::any::type_name::<T>());
    }

    pub(crate) fn startup_is_served_by_kmem() {
        let b = Box::new([7u64; 8]);
        assert!(KMEM.owns(b.as_ptr().cast()), "a 64-byte box comes from kmem");
        let big = vec![1u8; KmemGlobal::MAX_KMEM_REQUEST + 1];
        assert!(!KMEM.owns(big.as_ptr()), "above the largest class: the system");
        let c = KMEM.counters();
        assert!(c.reentrant > 0, "building the arena allocated, from the system: {c:?}");
        assert!(c.large > 0);
        let s = KMEM.class_stats(64).expect("a 64-byte class");
        assert!(s.allocations > 0 && s.slab_buffers > 0);
    }

    #[repr(align(16))]
    struct A16([u8; 3]);
    #[repr(align(64))]
    struct A64([u8; 100]);
    #[repr(align(4096))]
    struct A4096([u8; 10]);
    #[repr(align(65536))]
    struct A65536([u8; 1]);

    /// A buffer pointer and its expected contents, moving to the consumer thread.
    enum Msg {
        Bytes(Box<[u8]>, u8),
        Text(String),
        Map(HashMap<u32, String>),
    }

    fn check(m: Msg) {
        match m {
            Msg::Bytes(b, v) => assert!(b.iter().all(|&x| x == v)),
            Msg::Text(s) => assert!(s.bytes().all(|c| c == b'k')),
            Msg::Map(m) => assert!(m.iter().all(|(k, v)| v.len() == *k as usize % 97)),
        }
    }

    pub(crate) fn threads_do_real_work() {
        // `A64` (100 bytes aligned to 64) is served by the 128-byte class.
        let before_128 = KMEM.class_stats(128).expect("128").allocations;
        let (tx, rx) = mpsc::sync_channel::<Msg>(64);
        // A consumer frees what the producers allocated: cross-thread frees into its own
        // magazines.
        let consumer = std::thread::spawn(move || rx.into_iter().for_each(check));
        let producers: Vec<_> = (0..THREADS)
            .map(|t| {
                let tx = tx.clone();
                std::thread::spawn(move || {
                    let mut kept: Vec<String> = Vec::new();
                    let mut map: HashMap<u64, Vec<u8>> = HashMap::new();
                    for i in 0..ITERS {
                        let n = (i * 37 + t * 11) % 3000 + 1;
                        // Strings and vectors of many sizes.
                        let s: String = std::iter::repeat_n('k', n % 700).collect();
                        kept.push(s.clone());
                        let v = vec![(i % 251) as u8; n];
                        assert!(v.iter().all(|&x| x == (i % 251) as u8));
                        map.insert((i % 50) as u64, v);
                        if i % 3 == 0 {
                            map.remove(&((i * 7 % 50) as u64));
                        }
                        // Alignments kmem honours (up to its largest class).
                        let a = (Box::new(A16([1; 3])), Box::new(A64([2; 100])), Box::new(A4096([3; 10])));
                        assert_aligned(&*a.0);
                        assert_aligned(&*a.1);
                        assert_aligned(&*a.2);
                        assert!(KMEM.owns(std::ptr::from_ref(&*a.1).cast()));
                        assert!(a.0.0[2] == 1 && a.1.0[99] == 2 && a.2.0[9] == 3);
                        if i % 50 == 0 {
                            let huge = Box::new(A65536([4]));
                            assert_aligned(&*huge);
                            assert_eq!(huge.0[0], 4);
                            assert!(KMEM.owns(std::ptr::from_ref(&*huge).cast()));
                        }
                        // Handed to the consumer, which frees them.
                        tx.send(Msg::Bytes(vec![(t + i) as u8; n].into_boxed_slice(), (t + i) as u8)).unwrap();
                        tx.send(Msg::Text(s)).unwrap();
                        if i % 20 == 0 {
                            let m: HashMap<u32, String> = (0..40).map(|k| (k, "m".repeat(k as usize % 97))).collect();
                            tx.send(Msg::Map(m)).unwrap();
                        }
                        if kept.len() > 64 {
                            kept.drain(..32);
                        }
                    }
                    // Realloc growth from the smallest class out to the system allocator.
                    let mut grow: Vec<u32> = Vec::new();
                    // 40 000 u32 is 160 000 bytes: past the largest class either way.
                    let limit = if cfg!(miri) { 40_000 } else { 100_000 };
                    for x in 0..limit {
                        grow.push(x);
                    }
                    assert!(!KMEM.owns(grow.as_ptr().cast()), "{} bytes: the system's", grow.capacity() * 4);
                    assert!(grow.iter().enumerate().all(|(i, &x)| i as u32 == x));
                    // The thread exits holding `kept` and `map`: freed during its exit.
                })
            })
            .collect();
        drop(tx);
        for p in producers {
            p.join().unwrap();
        }
        consumer.join().unwrap();
        let c128 = KMEM.class_stats(128).expect("128");
        assert!(c128.allocations >= before_128 + (THREADS * ITERS) as u64, "kmem served the aligned boxes");
    }

    /// A thread-local whose destructor frees what the thread kept, allocates, and hands a box
    /// to another thread, whenever std runs it relative to kmem's own thread state.
    struct ExitWork {
        #[allow(clippy::vec_box)] // separate allocations, each freed during the thread's exit
        held: Vec<Box<[u8; 200]>>,
        out: Option<mpsc::Sender<Box<[u8; 48]>>>,
    }

    impl Drop for ExitWork {
        fn drop(&mut self) {
            self.held.clear();
            let s = format!("{:?}", vec![1u16; 100]);
            assert!(s.len() > 100);
            let b = Box::new([9u8; 48]);
            if let Some(out) = self.out.take() {
                out.send(b).unwrap();
            }
        }
    }

    thread_local! {
        static EXIT_WORK: RefCell<ExitWork> = const { RefCell::new(ExitWork { held: Vec::new(), out: None }) };
    }

    pub(crate) fn thread_exit_destructors() {
        let (tx, rx) = mpsc::channel();
        let n = if cfg!(miri) { 3 } else { 64 };
        let threads: Vec<_> = (0..n)
            .map(|t| {
                let tx = tx.clone();
                std::thread::spawn(move || {
                    EXIT_WORK.with(|w| {
                        let mut w = w.borrow_mut();
                        w.held.extend((0..(t % 7 + 1)).map(|_| Box::new([t as u8; 200])));
                        w.out = Some(tx);
                    });
                    // Enough 64-byte traffic to load both magazines of the class.
                    let v: Vec<Box<[u64; 8]>> = (0..100).map(|i| Box::new([i; 8])).collect();
                    drop(v);
                })
            })
            .collect();
        drop(tx);
        threads.into_iter().for_each(|t| t.join().unwrap());
        let got: Vec<Box<[u8; 48]>> = rx.into_iter().collect();
        assert_eq!(got.len(), n);
        assert!(got.iter().all(|b| b.iter().all(|&x| x == 9)));
        // The exited threads' magazines went back to the depot.
        let c = KMEM.class_stats(64).expect("64");
        assert!(c.depot_full + c.depot_empty > 0, "{c:?}");
    }

    pub(crate) fn realloc_in_place_and_across() {
        let mut v: Vec<u8> = Vec::with_capacity(100);
        let p = v.as_ptr();
        v.reserve_exact(120); // 100 and 120 bytes share the 128-byte class
        assert_eq!(v.as_ptr(), p, "same class: realloc in place");
        v.extend_from_slice(&[5; 120]);
        v.reserve_exact(1000); // to the 2048-byte class, contents kept
        assert_ne!(v.as_ptr(), p);
        assert!(v.iter().all(|&x| x == 5) && v.len() == 120);
        v.shrink_to_fit();
        assert!(KMEM.owns(v.as_ptr()) && v.iter().all(|&x| x == 5));
        // Zeroed allocation of every class size.
        let mut size = 1;
        while size <= KmemGlobal::MAX_KMEM_REQUEST {
            let z = vec![0u8; size];
            assert!(z.iter().all(|&x| x == 0));
            size = size * 2 + 1;
        }
    }

    pub(crate) fn under_kmem_arenas() {
        // kmem's DDI in user arenas, whose own bookkeeping now goes through the adapter
        // (and whose slow paths run while the adapter's may too). The object caches are made
        // up front, so that the number of caches alive at once (and with it kmem's free list
        // of cache ids, which it keeps for good) does not depend on thread timing.
        for checking in [Checking::OFF, Checking::FULL] {
            let arena = Arena::builder().name("user").checking(checking).build();
            let caches: Vec<KmemCache> = (0..THREADS)
                .map(|_| {
                    let null = std::ptr::null_mut();
                    arena.run(|| kmem_cache_create("user-cache", 96, 8, None, None, None, null, null, 0))
                })
                .collect();
            // Joined by handle: unlike a scope's end, `join` also waits for the threads'
            // thread-local destructors (kmem's per-thread state among them).
            let threads: Vec<_> = caches
                .into_iter()
                .enumerate()
                .map(|(t, cp)| {
                    let arena = arena.clone();
                    std::thread::spawn(move || {
                        let _g = arena.enter();
                        for i in 0..ITERS {
                            let size = (i * 53 + t) % 5000 + 1;
                            let p = kmem_alloc(size, KM_SLEEP);
                            let o = kmem_cache_alloc(&cp, KM_SLEEP);
                            let v = vec![0u8; size]; // and the adapter, interleaved
                            assert!(!p.is_null() && !o.is_null() && v.len() == size);
                            // SAFETY: allocated just above from this cache; freed once.
                            unsafe { kmem_cache_free(&cp, o) };
                            // SAFETY: allocated just above with `size`; freed once.
                            unsafe { kmem_free(p, size) };
                        }
                        cp
                    })
                })
                .collect();
            let caches: Vec<KmemCache> = threads.into_iter().map(|t| t.join().unwrap()).collect();
            caches.into_iter().for_each(kmem_cache_destroy);
            assert_eq!(arena.bytes_in_use(), 0);
            assert_eq!(arena.stats().errors, 0);
        }
    }
}
