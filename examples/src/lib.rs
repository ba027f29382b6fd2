//! Ported STREAMS modules and the tour the README runs.
//!
//! [`kmem_vendor_matrix`] is the memory-layer tour: one set of `kmem_*` calls, written once as
//! a C module would write them, run under every personality; `cargo run --release --example
//! vendor_table` prints it.
//!
//! [`modules`] are STREAMS modules and drivers ported to streams-core: `nullmod`, the
//! `loopback` driver, `flowmod` (service procedures obeying flow control) and `ldterm` (a line
//! discipline written C-style with the raw DDI). [`tour`] plumbs a stream with nullmod and
//! ldterm over the loopback driver; `cargo run --release -p examples --example tour` runs it.

pub mod modules;
pub mod tour;

use ddi_kmem::vendor::{Matrix, VendorSetup};
use ddi_kmem::{Arena, KM_NOSLEEP, KM_SLEEP, KmemError, MemQuirks, kmem_alloc, kmem_free, kmem_zalloc};
use std::ffi::c_void;

/// Every personality the workspace has: native (Linux Fast-STREAMS), Solaris, LiS.
pub fn vendors() -> [MemQuirks; 3] {
    [MemQuirks::LFS, compat_solaris::SOLARIS, compat_lis::LIS]
}

/// Frees `p` of `size` bytes in the current arena.
fn free(p: *mut c_void, size: usize) {
    // SAFETY: every caller passes a pointer kmem_alloc/kmem_zalloc returned in the current
    // arena, not yet freed, with its size (or one the arena refuses and reports).
    unsafe { kmem_free(p, size) }
}

fn null_or(p: *mut c_void, size: usize, what: &str) -> String {
    if p.is_null() {
        "NULL".to_string()
    } else {
        free(p, size);
        what.to_string()
    }
}

/// The memory-layer scenarios, each under every vendor, as one table.
///
/// Each cell is what the scenario observed, not what a quirk table says: the calls are made.
pub fn kmem_vendor_matrix() -> Matrix {
    let vendors = vendors();
    let checked = VendorSetup::default();
    let mut m = Matrix::new(&vendors);

    m.row("kmem_alloc(0, KM_SLEEP)", &checked, |_| null_or(kmem_alloc(0, KM_SLEEP), 0, "a pointer (to zero bytes)"));

    m.row("kmem_alloc(131073, KM_NOSLEEP)", &checked, |_| {
        null_or(kmem_alloc(131073, KM_NOSLEEP), 131073, "memory (page-granular)")
    });

    m.row("KM_SLEEP, budget exhausted", &VendorSetup { budget: Some(4096), ..checked.clone() }, sleep_under_pressure);

    m.row("alignment of kmem_alloc(120)", &checked, |arena| {
        let p = kmem_alloc(120, KM_SLEEP);
        let align = arena.alignment(120, KM_SLEEP).expect("120 bytes is served");
        assert_eq!(p.addr() % align, 0, "{}: kmem_alloc(120) broke its alignment", arena.quirks().vendor);
        free(p, 120);
        format!("{align} bytes")
    });

    m.row("usable extent of kmem_alloc(1)", &checked, |arena| {
        arena.extent(1).map_or("none".to_string(), |e| format!("{e} bytes"))
    });

    m.row("kmem_zalloc(100): bytes zeroed", &checked, |arena| {
        let p = kmem_zalloc(100, KM_SLEEP).cast::<u8>();
        let extent = arena.extent(100).expect("100 bytes is served");
        // SAFETY: the checking arena initialises the whole extent (zero or redzone pattern).
        let bytes = unsafe { std::slice::from_raw_parts(p, extent) };
        let zeroed = bytes.iter().take_while(|&&b| b == 0).count();
        free(p.cast(), 100);
        format!("{zeroed} of {extent}")
    });

    m.row("kmem_free(kmem_alloc(100), 64), checking on", &checked, |arena| {
        let p = kmem_alloc(100, KM_SLEEP);
        free(p, 64);
        match arena.take_errors().as_slice() {
            [] => "freed (size ignored)".to_string(),
            [KmemError::BadSize { free_size, alloc_size, .. }] => {
                free(p, 100); // the refused free left the buffer allocated
                format!("refused: free size {free_size} != alloc size {alloc_size}")
            }
            other => format!("unexpected: {other:?}"),
        }
    });
    m
}

/// Fill the budget with 64-byte `KM_NOSLEEP` buffers until one is refused, then ask for 64
/// more bytes with `KM_SLEEP` on another thread, and free everything once that thread is
/// either asleep or done.
fn sleep_under_pressure(arena: &Arena) -> String {
    let held: Vec<*mut c_void> =
        std::iter::from_fn(|| Some(kmem_alloc(64, KM_NOSLEEP)).filter(|p| !p.is_null())).collect();
    assert!(!held.is_empty(), "the budget holds at least one buffer");
    let a = arena.clone();
    let waiter = std::thread::spawn(move || {
        a.run(|| {
            let p = kmem_alloc(64, KM_SLEEP);
            let got = !p.is_null();
            if got {
                free(p, 64);
            }
            got
        })
    });
    while arena.waiting() == 0 && !waiter.is_finished() {
        std::thread::yield_now();
    }
    let slept = arena.waiting() > 0;
    held.into_iter().for_each(|p| free(p, 64));
    let got = waiter.join().expect("waiter thread");
    match (slept, got) {
        (true, true) => "slept, then succeeded".to_string(),
        (false, true) => "succeeded without sleeping".to_string(),
        (false, false) => "NULL at once (no sleep)".to_string(),
        (true, false) => "slept, then NULL".to_string(),
    }
}
