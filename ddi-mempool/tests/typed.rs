//! The typed surface: owning handles that return their slot on drop.

mod common;

use common::arena;
use ddi_kmem::FailurePlan;
use ddi_mempool::{GFP_ATOMIC, GFP_KERNEL, PoolBox, TypedPool};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

#[derive(Debug)]
struct Counted(Arc<AtomicUsize>, u32);
impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn handles_drop_values_and_return_slots() {
    let a = arena("typed", 1 << 20);
    let _in = a.enter();
    let drops = Arc::new(AtomicUsize::new(0));
    let pool = TypedPool::<Counted>::new(2).expect("prealloc");
    a.inject(FailurePlan::Always);
    let x = pool.alloc(GFP_ATOMIC, Counted(drops.clone(), 1)).expect("reserve");
    let y = pool.alloc_preallocated(Counted(drops.clone(), 2)).expect("reserve");
    let z = pool.alloc(GFP_ATOMIC, Counted(drops.clone(), 3)).expect_err("empty, atomic");
    assert_eq!(z.1, 3, "the value comes back on failure");
    drop(z);
    assert_eq!((x.1, y.1), (1, 2));
    assert_eq!(pool.curr_nr(), 0);
    drop(x);
    assert_eq!(pool.curr_nr(), 1);
    let v = PoolBox::into_inner(y);
    assert_eq!(pool.curr_nr(), 2);
    assert_eq!(drops.load(Ordering::SeqCst), 2, "z and x dropped; v still alive");
    drop(v);
    assert_eq!(drops.load(Ordering::SeqCst), 3);
    a.clear_injection();
    drop(pool);
    assert_eq!(a.bytes_in_use(), 0);
}

#[test]
fn handles_cross_threads_and_zero_sized_types() {
    let a = arena("typed-mt", 1 << 20);
    let _in = a.enter();
    let pool = TypedPool::<String>::new(1).expect("prealloc");
    let zst = TypedPool::<()>::new(1).expect("prealloc");
    let b = pool.alloc(GFP_KERNEL, "hello".to_string()).expect("never fails");
    let u1 = zst.alloc(GFP_KERNEL, ()).expect("never fails");
    let u2 = zst.alloc(GFP_KERNEL, ()).expect("never fails");
    std::thread::scope(|s| {
        s.spawn(move || {
            assert_eq!(&*b, "hello");
            drop(b); // freed on another thread, which has not entered the arena
        });
    });
    drop((u1, u2));
    assert_eq!(pool.curr_nr(), 1);
    drop(pool);
    drop(zst);
    assert_eq!(a.bytes_in_use(), 0);
}

#[test]
fn panicking_drop_still_returns_the_slot() {
    #[derive(Debug)]
    struct Bomb;
    impl Drop for Bomb {
        fn drop(&mut self) {
            panic!("boom");
        }
    }
    let a = arena("typed-panic", 1 << 20);
    let _in = a.enter();
    let pool = TypedPool::<Bomb>::new(1).expect("prealloc");
    let b = pool.alloc(GFP_KERNEL, Bomb).expect("never fails");
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drop(b)));
    assert!(r.is_err());
    assert_eq!(pool.as_mempool().outstanding(), 0);
    drop(pool);
    assert_eq!(a.bytes_in_use(), 0);
}
