//! Shared set-up for the module tests: a checking arena, an executive with every module of
//! the crate registered, and the end-of-test checks.
#![allow(dead_code)]

use ddi_kmem::Arena;
use streams_core::{Msg, Stream, Streams};

/// Runs `f` in a fresh checking arena with a deterministic executive; afterwards asserts that
/// no misuse or panic was reported and that every byte is back.
pub fn in_stream_arena(name: &str, workers: usize, f: impl FnOnce(&Streams)) {
    let arena = Arena::builder().name(name).build();
    arena.run(|| {
        let sx = Streams::builder().arena(&arena).workers(workers).build();
        examples::modules::register_all(&sx).expect("register");
        f(&sx);
        let errs = sx.take_errors();
        assert!(errs.is_empty(), "{name}: procedures reported {errs:?}");
        let errs = streams_core::take_errors(&arena);
        assert!(errs.is_empty(), "{name}: misuse reported {errs:?}");
    });
    assert_eq!(arena.bytes_in_use(), 0, "{name}: memory left in use");
}

/// Writes `bytes` as one M_DATA message; panics on a refusal.
pub fn write(s: &Stream, bytes: &[u8]) {
    s.write(Msg::from_slice(bytes).expect("allocb")).map_err(|(e, _)| e).expect("write");
}

/// Reads every message at the head, as byte vectors.
pub fn read_all(s: &Stream) -> Vec<Vec<u8>> {
    let mut v = Vec::new();
    while let Some(m) = s.read().expect("read") {
        v.push(m.data().to_vec());
    }
    v
}
