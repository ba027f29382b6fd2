//! Reserve accounting as a property test against a counter model.

mod common;

use common::{arena, iters};
use ddi_kmem::FailurePlan;
use ddi_mempool::{GFP_ATOMIC, GFP_KERNEL, Mempool, mempool_alloc, mempool_alloc_preallocated, mempool_free};
use proptest::prelude::*;
use std::ffi::c_void;

#[derive(Clone, Debug)]
enum Op {
    /// Allocate with the backend failing (`true`) or working.
    Alloc {
        failing: bool,
        atomic: bool,
    },
    Preallocated,
    /// Free the held element at this index (modulo).
    Free(usize),
    Resize(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (any::<bool>(), any::<bool>()).prop_map(|(failing, atomic)| Op::Alloc { failing, atomic }),
        1 => Just(Op::Preallocated),
        4 => any::<usize>().prop_map(Op::Free),
        1 => (1usize..6).prop_map(Op::Resize),
    ]
}

/// The model: the reserve is a stack of element addresses with a minimum; the backend's live
/// elements are counted through the arena.
struct Model {
    min_nr: usize,
    reserve: Vec<usize>,
}

proptest! {
    #![proptest_config(ProptestConfig { cases: iters(128, 4) as u32, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn reserve_matches_the_model(min_nr in 1usize..5, ops in proptest::collection::vec(op(), 1..iters(60, 12))) {
        let a = arena("model", 1 << 20);
        let _in = a.enter();
        let pool = Mempool::builder(min_nr).kmalloc(64).expect("prealloc");
        // The reserve's initial order is unknown to the model; read it out by draining.
        let mut model = Model { min_nr, reserve: Vec::new() };
        let mut held: Vec<*mut c_void> = Vec::new();
        {
            let mut init = Vec::new();
            while let Some(p) = std::ptr::NonNull::new(mempool_alloc_preallocated(&pool)) { init.push(p.as_ptr()); }
            for p in init.into_iter().rev() {
                // SAFETY: from this pool, freed once; refills in the original order.
                unsafe { mempool_free(p, &pool) };
                model.reserve.push(p as usize);
            }
        }
        prop_assert_eq!(pool.curr_nr(), min_nr);
        for op in ops {
            match op {
                Op::Alloc { failing, atomic } => {
                    if failing { a.inject(FailurePlan::Always) } else { a.clear_injection() }
                    let gfp = if atomic { GFP_ATOMIC } else { GFP_KERNEL };
                    if failing && model.reserve.is_empty() && !atomic {
                        // Would sleep forever with nothing to free it; the model skips it.
                        continue;
                    }
                    let p = mempool_alloc(&pool, gfp);
                    if failing {
                        match model.reserve.pop() {
                            Some(want) => prop_assert_eq!(p as usize, want),
                            None => prop_assert!(p.is_null()),
                        }
                    } else {
                        prop_assert!(!p.is_null());
                        prop_assert!(!model.reserve.contains(&(p as usize)));
                    }
                    if !p.is_null() { held.push(p); }
                }
                Op::Preallocated => {
                    let p = mempool_alloc_preallocated(&pool);
                    prop_assert_eq!(p as usize, model.reserve.pop().unwrap_or(0));
                    if !p.is_null() { held.push(p); }
                }
                Op::Free(i) => {
                    if held.is_empty() { continue; }
                    let p = held.swap_remove(i % held.len());
                    if model.reserve.len() < model.min_nr { model.reserve.push(p as usize); }
                    // SAFETY: from this pool, freed once.
                    unsafe { mempool_free(p, &pool) };
                }
                Op::Resize(n) => {
                    a.clear_injection();
                    if n <= model.min_nr {
                        model.reserve.truncate(n);
                        pool.resize(n).expect("shrink");
                    } else {
                        pool.resize(n).expect("grow");
                        // New elements come from the backend (unknown addresses), pushed on top.
                        let before = model.reserve.len();
                        let mut fresh = Vec::new();
                        for _ in before..n {
                            let p = mempool_alloc_preallocated(&pool);
                            prop_assert!(!p.is_null());
                            fresh.push(p);
                        }
                        for p in fresh.into_iter().rev() {
                            // SAFETY: from this pool, freed once; back in the same order.
                            unsafe { mempool_free(p, &pool) };
                            model.reserve.push(p as usize);
                        }
                    }
                    model.min_nr = n;
                }
            }
            prop_assert_eq!(pool.curr_nr(), model.reserve.len());
            prop_assert_eq!(pool.min_nr(), model.min_nr);
            prop_assert_eq!(pool.outstanding(), held.len() as isize);
            // Bytes: every element is either in the reserve or held (64 bytes each).
            prop_assert_eq!(a.bytes_in_use(), 64 * (model.reserve.len() + held.len()));
        }
        a.clear_injection();
        for p in held {
            // SAFETY: from this pool, freed once.
            unsafe { mempool_free(p, &pool) };
        }
        drop(pool);
        prop_assert_eq!(a.bytes_in_use(), 0);
    }
}
