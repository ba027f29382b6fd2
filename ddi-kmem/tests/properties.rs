//! A ledger test: random sequences of allocations and frees, checked against a ledger of
//! every live `(pointer, size)`, in checking and unchecked arenas.

use ddi_kmem::{
    Arena, CACHE_LINE, Checking, KM_CACHEALIGN, KM_NOSLEEP, KM_SLEEP, KmFlags, Response, kmem_alloc, kmem_free,
    kmem_zalloc,
};
use proptest::prelude::*;
use proptest::sample::Index;
use std::collections::BTreeMap;

#[derive(Clone, Debug)]
enum Op {
    Alloc { size: usize, flags: u8, zero: bool },
    Free(Index),
}

fn flags_of(code: u8) -> KmFlags {
    match code {
        0 => KM_NOSLEEP,
        1 => KM_SLEEP,
        _ => KM_NOSLEEP | KM_CACHEALIGN,
    }
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (prop_oneof![1usize..=64, 1usize..=5000], 0u8..3, any::<bool>())
            .prop_map(|(size, flags, zero)| Op::Alloc { size, flags, zero }),
        2 => any::<Index>().prop_map(Op::Free),
    ]
}

/// One live buffer in the ledger.
struct Entry {
    ptr: *mut u8,
    size: usize,
    /// The bytes it occupies (its class) and is charged.
    extent: usize,
    /// The byte its contents were filled with.
    tag: u8,
}

impl Entry {
    fn bytes(&self) -> &[u8] {
        // SAFETY: a live buffer of `size` bytes, all written with `tag` when it was allocated
        // and not freed while the entry is in the ledger.
        unsafe { std::slice::from_raw_parts(self.ptr, self.size) }
    }

    fn assert_intact(&self) {
        if let Some(i) = self.bytes().iter().position(|&b| b != self.tag) {
            panic!("buffer {:p} ({} bytes) damaged at byte {i}", self.ptr, self.size);
        }
    }
}

fn tag_of(n: u64) -> u8 {
    (n as u8).wrapping_mul(31).wrapping_add(7) | 1
}

fn run_ledger(checking: Checking, ops: &[Op]) {
    let arena = Arena::builder().name("ledger").checking(checking).response(Response::Panic).build();
    let _g = arena.enter();
    // Keyed by address: the ledger of every live (pointer, size).
    let mut ledger: BTreeMap<usize, Entry> = BTreeMap::new();
    let mut made = 0u64;
    for op in ops {
        match op {
            &Op::Alloc { size, flags, zero } => {
                let flags = flags_of(flags);
                let p = if zero { kmem_zalloc(size, flags) } else { kmem_alloc(size, flags) }.cast::<u8>();
                assert!(!p.is_null(), "no budget: every allocation of {size} succeeds");
                let align = arena.alignment(size, flags).expect("a served size has an alignment");
                assert_eq!(p.addr() % align, 0, "{size} bytes with {flags} not aligned to {align}");
                let padded = if flags.contains(KM_CACHEALIGN) && size <= CACHE_LINE / 2 { CACHE_LINE } else { size };
                let extent = arena.extent(padded).expect("a served size has an extent");
                // No overlap with any live buffer, extents included.
                let (lo, hi) = (p.addr(), p.addr() + extent);
                if let Some((&a, e)) = ledger.range(..hi).next_back() {
                    assert!(a + e.extent <= lo, "new buffer {lo:#x}..{hi:#x} overlaps {a:#x}..{:#x}", a + e.extent);
                }
                // SAFETY: a fresh buffer of at least `size` bytes that nothing else uses.
                let bytes = unsafe { std::slice::from_raw_parts_mut(p, size) };
                if zero {
                    assert!(bytes.iter().all(|&b| b == 0), "kmem_zalloc memory not zeroed");
                }
                made += 1;
                let tag = tag_of(made);
                bytes.fill(tag);
                ledger.insert(p.addr(), Entry { ptr: p, size, extent, tag });
            }
            Op::Free(ix) => {
                if ledger.is_empty() {
                    continue;
                }
                let key = *ledger.keys().nth(ix.index(ledger.len())).expect("in range");
                let e = ledger.remove(&key).expect("present");
                e.assert_intact();
                // SAFETY: `e.ptr` is a live buffer of this arena allocated with `e.size`,
                // removed from the ledger so it is freed exactly once.
                unsafe { kmem_free(e.ptr.cast(), e.size) };
            }
        }
        // The accounting matches the ledger after every step.
        let s = arena.stats();
        assert_eq!(s.allocations - s.frees, ledger.len() as u64);
        assert_eq!(s.bytes_in_use, ledger.values().map(|e| e.extent).sum::<usize>());
        for c in &s.classes {
            let n = ledger.values().filter(|e| Some(e.extent) == c.size).count();
            assert_eq!(c.buffers_in_use, n, "class {:?}", c.size);
        }
        assert_eq!((s.failures, s.errors), (0, 0));
        // Spot-check every live buffer (the full contents are checked when it is freed).
        for e in ledger.values() {
            let b = e.bytes();
            assert_eq!((b[0], b[e.size / 2], b[e.size - 1]), (e.tag, e.tag, e.tag), "buffer {:p} damaged", e.ptr);
        }
    }
    for e in std::mem::take(&mut ledger).into_values() {
        e.assert_intact();
        // SAFETY: as above: live, its allocation size, freed once.
        unsafe { kmem_free(e.ptr.cast(), e.size) };
    }
    assert_eq!(arena.verify(), 0, "no freed buffer was written");
    let s = arena.stats();
    assert_eq!(s.allocations, s.frees);
    assert_eq!(s.errors, 0);
    assert_eq!(arena.bytes_in_use(), 0);
}

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: if cfg!(miri) { 4 } else { 64 },
        // No files: Miri runs isolated from the file system.
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

const MAX_OPS: usize = if cfg!(miri) { 16 } else { 120 };

proptest! {
    #![proptest_config(config())]

    #[test]
    fn ledger_holds_in_a_checking_arena(ops in prop::collection::vec(op(), 1..MAX_OPS)) {
        run_ledger(Checking::FULL, &ops);
    }

    #[test]
    fn ledger_holds_in_an_unchecked_arena(ops in prop::collection::vec(op(), 1..MAX_OPS)) {
        run_ledger(Checking::OFF, &ops);
    }
}
