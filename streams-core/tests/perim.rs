//! Synchronization levels: a per-queue-pair perimeter excludes a pair's put procedures from
//! each other, a per-module perimeter excludes every instance's, a reply into a busy
//! perimeter is deferred (not deadlocked) and delivered in order; and the private-data
//! lifecycle: open creates the instance, close consumes it, it is dropped once.

mod common;

use common::mods::*;
use common::*;
use ddi_kmem::{Arena, Checking};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use streams_core::*;

const fn info(name: &'static str) -> ModuleInfo {
    ModuleInfo { mi_idnum: 2, mi_idname: name, mi_minpsz: 0, mi_maxpsz: INFPSZ, mi_hiwat: 1 << 20, mi_lowat: 1 << 19 }
}

/// Marks entry and exit of every put procedure; counts overlaps.
fn guarded(inside: &AtomicBool, overlaps: &AtomicUsize, f: impl FnOnce()) {
    if inside.swap(true, Ordering::SeqCst) {
        overlaps.fetch_add(1, Ordering::SeqCst);
    }
    for _ in 0..20 {
        std::thread::yield_now();
    }
    inside.store(false, Ordering::SeqCst);
    f();
}

struct PairExcl {
    inside: AtomicBool,
    overlaps: AtomicUsize,
}

static PAIR_OVERLAPS: AtomicUsize = AtomicUsize::new(0);

impl Drop for PairExcl {
    fn drop(&mut self) {
        PAIR_OVERLAPS.fetch_add(self.overlaps.load(Ordering::SeqCst), Ordering::SeqCst);
    }
}

impl Module for PairExcl {
    const INFO: ModuleInfo = info("pairexcl");
    const SYNC: SyncLevel = SyncLevel::QueuePair;
    fn open(_q: QRef<'_>, _c: &mut OpenCtx) -> Result<Self, i32> {
        Ok(PairExcl { inside: AtomicBool::new(false), overlaps: AtomicUsize::new(0) })
    }
    fn wput(&self, q: QRef<'_>, mp: Msg) {
        guarded(&self.inside, &self.overlaps, || default_wput(q, mp));
    }
    fn rput(&self, q: QRef<'_>, mp: Msg) {
        guarded(&self.inside, &self.overlaps, || default_rput(q, mp));
    }
}

static MOD_INSIDE: AtomicBool = AtomicBool::new(false);
static MOD_OVERLAPS: AtomicUsize = AtomicUsize::new(0);

struct ModExcl;

impl Module for ModExcl {
    const INFO: ModuleInfo = info("modexcl");
    const SYNC: SyncLevel = SyncLevel::Module;
    fn open(_q: QRef<'_>, _c: &mut OpenCtx) -> Result<Self, i32> {
        Ok(ModExcl)
    }
    fn wput(&self, q: QRef<'_>, mp: Msg) {
        guarded(&MOD_INSIDE, &MOD_OVERLAPS, || default_wput(q, mp));
    }
    fn rput(&self, q: QRef<'_>, mp: Msg) {
        guarded(&MOD_INSIDE, &MOD_OVERLAPS, || default_rput(q, mp));
    }
}

fn pool(arena: &Arena) -> Streams {
    let sx = Streams::builder().arena(arena).workers(1).build();
    register_all(&sx);
    sx.register_module::<PairExcl>().unwrap();
    sx.register_module::<ModExcl>().unwrap();
    sx
}

#[test]
fn a_queue_pair_perimeter_excludes_the_read_and_write_put_procedures() {
    let arena = Arena::builder().name("pair_perim").checking(Checking::OFF).build();
    let n = n(2000, 20);
    {
        let sx = pool(&arena);
        let s = arena.run(|| sx.open("hold", 0)).unwrap();
        arena.run(|| s.push("pairexcl")).unwrap();
        std::thread::scope(|sc| {
            sc.spawn(|| {
                let _a = arena.enter();
                for i in 0..n {
                    s.write(msg_of(M_DATA, &[i as u8]).unwrap()).unwrap();
                }
            });
            let _a = arena.enter();
            for i in 0..n {
                // SAFETY: the driver's read queue of the open stream ("input").
                unsafe { streams_core::put(s.driver_rq(), msg_of(M_DATA, &[i as u8]).unwrap().into_raw()) };
            }
        });
        let mut up = 0;
        arena.run(|| {
            while s.read().unwrap().is_some() {
                up += 1;
            }
        });
        assert_eq!(up, n, "every upstream message arrived");
        arena.run(|| s.close());
        assert_eq!(PAIR_OVERLAPS.load(Ordering::SeqCst), 0, "the pair's put procedures overlapped");
    }
    assert_eq!(arena.bytes_in_use(), 0);
}

#[test]
fn a_module_perimeter_excludes_every_instance() {
    let arena = Arena::builder().name("mod_perim").checking(Checking::OFF).build();
    let n = n(1000, 10);
    {
        let sx = pool(&arena);
        let a = arena.run(|| sx.open("loop", 0)).unwrap();
        let b = arena.run(|| sx.open("loop", 1)).unwrap();
        arena.run(|| a.push("modexcl")).unwrap();
        arena.run(|| b.push("modexcl")).unwrap();
        std::thread::scope(|sc| {
            for s in [&a, &b] {
                let arena = &arena;
                sc.spawn(move || {
                    let _a = arena.enter();
                    for i in 0..n {
                        s.write(msg_of(M_DATA, &[i as u8]).unwrap()).unwrap();
                    }
                });
            }
        });
        arena.run(|| {
            for s in [&a, &b] {
                let mut got = Vec::new();
                while let Some(m) = s.read().unwrap() {
                    got.push(m.data()[0]);
                }
                let want: Vec<u8> = (0..n).map(|i| i as u8).collect();
                assert_eq!(got, want, "in order, none lost (replies deferred on the busy perimeter)");
            }
            a.close();
            b.close();
        });
        assert_eq!(MOD_OVERLAPS.load(Ordering::SeqCst), 0, "two instances ran at once");
    }
    assert_eq!(arena.bytes_in_use(), 0);
}

#[test]
fn a_reply_into_a_busy_perimeter_is_deferred_and_delivered() {
    in_arena("reply_busy", |arena| {
        let sx = executive(arena);
        sx.register_module::<PairExcl>().unwrap();
        let s = sx.open("loop", 0).unwrap();
        // The loop driver's qreply comes back into pairexcl's rput while its wput (same
        // perimeter) is still running on this thread.
        s.push("pairexcl").unwrap();
        for i in 0..5u8 {
            s.write(msg_of(M_DATA, &[i]).unwrap()).unwrap();
            assert_eq!(s.read().unwrap().unwrap().data(), [i], "delivered before write returned");
        }
    });
}

static OPENS: AtomicUsize = AtomicUsize::new(0);
static CLOSES: AtomicUsize = AtomicUsize::new(0);
static DROPS: AtomicUsize = AtomicUsize::new(0);

struct Life {
    _buf: Vec<u8>,
}

impl Drop for Life {
    fn drop(&mut self) {
        DROPS.fetch_add(1, Ordering::SeqCst);
    }
}

impl Module for Life {
    const INFO: ModuleInfo = info("life");
    fn open(_q: QRef<'_>, c: &mut OpenCtx) -> Result<Self, i32> {
        assert_eq!(c.sflag, MODOPEN);
        OPENS.fetch_add(1, Ordering::SeqCst);
        Ok(Life { _buf: vec![1; 100] })
    }
    fn close(self, _q: QRef<'_>) {
        CLOSES.fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn open_creates_the_private_data_and_close_consumes_it_once() {
    in_arena("lifecycle", |arena| {
        let sx = executive(arena);
        sx.register_module::<Life>().unwrap();
        let s = sx.open("loop", 0).unwrap();
        s.push("life").unwrap();
        s.push("life").unwrap();
        assert_eq!(OPENS.load(Ordering::SeqCst), 2);
        s.pop().unwrap();
        assert_eq!((CLOSES.load(Ordering::SeqCst), DROPS.load(Ordering::SeqCst)), (1, 1));
        s.close();
        assert_eq!((CLOSES.load(Ordering::SeqCst), DROPS.load(Ordering::SeqCst)), (2, 2));
    });
}
