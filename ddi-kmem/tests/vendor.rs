//! The vendor matrix: one scenario under several personalities.

use ddi_kmem::vendor::{Matrix, VendorSetup, for_each_vendor};
use ddi_kmem::{
    Arena, Checking, FreeSize, KM_NOSLEEP, KM_SLEEP, MemQuirks, Oversize, Response, ZallocZeroes, ZeroSize,
    current_arena, kmem_alloc, kmem_free, kmem_zalloc,
};

/// LfS with one difference: size 0 gives memory, as under LiS.
const ZERO_BYTES: MemQuirks = MemQuirks { zero_size: ZeroSize::ZeroBytes, vendor: "test", ..MemQuirks::LFS };

/// LfS with several differences at once.
const OTHER: MemQuirks = MemQuirks {
    vendor: "other",
    zero_size: ZeroSize::ZeroBytes,
    oversize: Oversize::Pages,
    zalloc_zeroes: ZallocZeroes::Request,
    free_size: FreeSize::Verified,
    honours_cachealign: false,
    ..MemQuirks::LFS
};

/// `kmem_alloc(0, KM_SLEEP)`, freed again if it gave memory; asserts nothing is left in use.
fn zero_size(arena: &Arena) -> String {
    let p = kmem_alloc(0, KM_SLEEP);
    let r = if p.is_null() { "NULL" } else { "memory" };
    // SAFETY: `p` is NULL (legal with size 0) or a live buffer allocated with size 0.
    unsafe { kmem_free(p, 0) };
    assert_eq!(arena.bytes_in_use(), 0);
    r.to_string()
}

#[test]
fn for_each_vendor_runs_the_scenario_in_a_fresh_entered_arena_per_vendor() {
    let setup = VendorSetup::default();
    assert_eq!((setup.budget, setup.checking, setup.response), (None, Checking::FULL, Response::Report));
    let results = for_each_vendor(&[MemQuirks::LFS, ZERO_BYTES], &setup, |arena| {
        assert_eq!(current_arena().name(), arena.name(), "the scenario runs with the arena entered");
        assert_eq!(arena.stats().allocations, 0, "a fresh arena");
        (arena.name().to_string(), arena.quirks().vendor, zero_size(arena))
    });
    assert_eq!(
        results,
        [
            ("LfS", ("LfS-matrix".to_string(), "LfS", "NULL".to_string())),
            ("test", ("test-matrix".to_string(), "test", "memory".to_string())),
        ]
    );
    assert_eq!(current_arena().name(), "default", "left again afterwards");
}

#[test]
fn the_setup_is_applied_to_every_vendor_arena() {
    let setup = VendorSetup { budget: Some(256), checking: Checking::OFF, response: Response::Panic };
    let seen = for_each_vendor(&[MemQuirks::LFS, OTHER], &setup, |arena| {
        let p = kmem_alloc(256, KM_NOSLEEP);
        let full = kmem_alloc(1, KM_NOSLEEP).is_null();
        // SAFETY: `p` is a live 256-byte buffer of the entered arena, freed once.
        unsafe { kmem_free(p, 256) };
        assert_eq!(arena.bytes_in_use(), 0);
        (arena.stats().budget, arena.checking(), arena.response(), full)
    });
    for (vendor, got) in seen {
        assert_eq!(got, (Some(256), Checking::OFF, Response::Panic, true), "{vendor}");
    }
}

#[test]
fn a_scenario_gives_different_results_per_vendor_and_the_table_renders() {
    let vendors = [MemQuirks::LFS, ZERO_BYTES, OTHER];
    let setup = VendorSetup::default();
    let mut m = Matrix::new(&vendors);
    m.row("kmem_alloc(0)", &setup, zero_size);
    m.row("kmem_alloc(200000)", &setup, |arena| {
        let p = kmem_alloc(200_000, KM_NOSLEEP);
        let r = if p.is_null() { "NULL".to_string() } else { format!("{} bytes", arena.bytes_in_use()) };
        if !p.is_null() {
            // SAFETY: `p` is a live 200000-byte buffer of the entered arena, freed once.
            unsafe { kmem_free(p, 200_000) };
        }
        assert_eq!(arena.bytes_in_use(), 0);
        r
    });
    m.row("kmem_zalloc(100) zeroes", &setup, |arena| {
        let p = kmem_zalloc(100, KM_SLEEP).cast::<u8>();
        // SAFETY: every personality here gives at least the 128-byte class, and a checking
        // arena initialises all of it (zeroes, then the redzone fill).
        let extent = unsafe { std::slice::from_raw_parts(p, 128) };
        let zeroed = extent.iter().take_while(|&&b| b == 0).count();
        // SAFETY: `p` is a live 100-byte buffer of the entered arena, freed once.
        unsafe { kmem_free(p.cast(), 100) };
        assert_eq!(arena.bytes_in_use(), 0);
        format!("{zeroed} bytes")
    });
    m.row("kmem_free(p, wrong size)", &setup, |arena| {
        let p = kmem_alloc(100, KM_SLEEP);
        // SAFETY: the checking arena refuses the wrong size and reports it (Response::Report).
        unsafe { kmem_free(p, 90) };
        let verdict = if arena.take_errors().is_empty() { "accepted" } else { "reported" };
        if arena.bytes_in_use() != 0 {
            // SAFETY: the free was refused; `p` is still live with 100 bytes.
            unsafe { kmem_free(p, 100) };
        }
        assert_eq!(arena.bytes_in_use(), 0);
        verdict.to_string()
    });

    assert_eq!(m.cell("kmem_alloc(0)", "LfS"), Some("NULL"));
    assert_eq!(m.cell("kmem_alloc(0)", "test"), Some("memory"));
    assert_eq!(m.cell("kmem_alloc(0)", "other"), Some("memory"));
    assert_eq!(m.cell("kmem_alloc(200000)", "LfS"), Some("NULL"));
    assert_eq!(m.cell("kmem_alloc(200000)", "other"), Some("200704 bytes"), "page-granular");
    assert_eq!(m.cell("kmem_zalloc(100) zeroes", "LfS"), Some("128 bytes"));
    assert_eq!(m.cell("kmem_zalloc(100) zeroes", "other"), Some("100 bytes"));
    // A checking arena verifies the size under every personality.
    assert_eq!(m.cell("kmem_free(p, wrong size)", "LfS"), Some("reported"));
    assert_eq!(m.cell("kmem_alloc(0)", "nobody"), None);
    assert_eq!(m.cell("no such row", "LfS"), None);

    let table = m.to_string();
    println!("{table}");
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 2 + 4, "header, rule, one line per row");
    let header: Vec<&str> = lines[0].split('|').map(str::trim).filter(|s| !s.is_empty()).collect();
    assert_eq!(header, ["scenario", "LfS", "test", "other"]);
    assert!(lines[1].chars().all(|c| c == '|' || c == '-'), "{}", lines[1]);
    let row: Vec<&str> = lines[2].split('|').map(str::trim).filter(|s| !s.is_empty()).collect();
    assert_eq!(row, ["kmem_alloc(0)", "NULL", "memory", "memory"]);
    // Columns line up: every line has its separators at the same places.
    let bars = |l: &str| l.char_indices().filter(|&(_, c)| c == '|').map(|(i, _)| i).collect::<Vec<_>>();
    assert!(lines.iter().all(|l| bars(l) == bars(lines[0])), "{table}");
}

#[test]
fn an_unchecked_verified_free_size_personality_still_reports_a_wrong_size() {
    // FreeSize::Verified keeps the side table even without checks (Solaris).
    let setup = VendorSetup { checking: Checking::OFF, ..VendorSetup::default() };
    let verdicts = for_each_vendor(&[OTHER], &setup, |arena| {
        let p = kmem_alloc(100, KM_SLEEP);
        // SAFETY: the personality verifies the size against its table and refuses.
        unsafe { kmem_free(p, 90) };
        let n = arena.take_errors().len();
        // SAFETY: refused, so `p` is still live with 100 bytes.
        unsafe { kmem_free(p, 100) };
        assert_eq!(arena.bytes_in_use(), 0);
        n
    });
    assert_eq!(verdicts, [("other", 1)]);
}

#[test]
fn an_empty_matrix_renders_its_header() {
    let m = Matrix::new(&[MemQuirks::LFS]);
    let table = m.to_string();
    assert_eq!(table.lines().count(), 2);
    assert!(table.starts_with("| scenario | LfS |"), "{table}");
}
