//! The tour's table says what each vendor's documentation says.

#[test]
fn kmem_vendor_matrix_matches_the_documented_quirks() {
    let m = examples::kmem_vendor_matrix();
    let cell = |row: &str, v: &str| m.cell(row, v).unwrap_or_else(|| panic!("no cell {row}/{v}")).to_string();

    // Size 0: NULL (LfS, Solaris 9F NOTES); LiS returns memory.
    assert_eq!(cell("kmem_alloc(0, KM_SLEEP)", "LfS"), "NULL");
    assert_eq!(cell("kmem_alloc(0, KM_SLEEP)", "Solaris"), "NULL");
    assert_eq!(cell("kmem_alloc(0, KM_SLEEP)", "LiS"), "a pointer (to zero bytes)");

    // Over 131072: LfS refuses; Solaris and LiS go to pages.
    assert_eq!(cell("kmem_alloc(131073, KM_NOSLEEP)", "LfS"), "NULL");
    assert_eq!(cell("kmem_alloc(131073, KM_NOSLEEP)", "Solaris"), "memory (page-granular)");
    assert_eq!(cell("kmem_alloc(131073, KM_NOSLEEP)", "LiS"), "memory (page-granular)");

    // KM_SLEEP under pressure: sleeps and succeeds, except LiS (GFP_ATOMIC).
    assert_eq!(cell("KM_SLEEP, budget exhausted", "LfS"), "slept, then succeeded");
    assert_eq!(cell("KM_SLEEP, budget exhausted", "Solaris"), "slept, then succeeded");
    assert_eq!(cell("KM_SLEEP, budget exhausted", "LiS"), "NULL at once (no sleep)");

    // Alignment of 120 bytes: the class (LfS 128), Solaris 64 (128-byte class, multiple of 64),
    // LiS what the 64-byte header leaves.
    assert_eq!(cell("alignment of kmem_alloc(120)", "LfS"), "128 bytes");
    assert_eq!(cell("alignment of kmem_alloc(120)", "Solaris"), "64 bytes");
    assert_eq!(cell("alignment of kmem_alloc(120)", "LiS"), "64 bytes");

    assert_eq!(cell("usable extent of kmem_alloc(1)", "LfS"), "32 bytes");
    assert_eq!(cell("usable extent of kmem_alloc(1)", "Solaris"), "8 bytes");
    assert_eq!(cell("usable extent of kmem_alloc(1)", "LiS"), "64 bytes");

    // kmem_zalloc: LfS zeroes the extent, the others the request.
    assert_eq!(cell("kmem_zalloc(100): bytes zeroed", "LfS"), "128 of 128");
    assert_eq!(cell("kmem_zalloc(100): bytes zeroed", "Solaris"), "100 of 112");
    assert_eq!(cell("kmem_zalloc(100): bytes zeroed", "LiS"), "100 of 192");

    // Wrong size on free.
    assert_eq!(cell("kmem_free(kmem_alloc(100), 64), checking on", "LfS"), "refused: free size 64 != alloc size 100");
    assert_eq!(
        cell("kmem_free(kmem_alloc(100), 64), checking on", "Solaris"),
        "refused: free size 64 != alloc size 100"
    );
    assert_eq!(cell("kmem_free(kmem_alloc(100), 64), checking on", "LiS"), "freed (size ignored)");

    let table = m.to_string();
    assert!(table.starts_with("| scenario"), "{table}");
    assert_eq!(table.lines().count(), 2 + 7, "{table}");
}
