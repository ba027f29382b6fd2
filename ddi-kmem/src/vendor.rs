//! Running one scenario under several personalities and tabulating the results.
//!
//! The comparison harness of the workspace: for each personality, build a fresh arena with its
//! quirks, enter it, run the scenario, collect the result. Because the scenario calls the plain
//! DDI functions, the same ported code runs unchanged under every vendor.

use crate::arena::{Arena, Response};
use crate::check::Checking;
use crate::quirks::MemQuirks;
use std::fmt;

/// How the matrix builds each vendor's arena.
#[derive(Clone, Debug)]
pub struct VendorSetup {
    /// The byte budget, if any.
    pub budget: Option<usize>,
    /// The checks.
    pub checking: Checking,
    /// The response to misuse (default: report, so one vendor's misuse shows in the table
    /// instead of stopping the run).
    pub response: Response,
}

impl Default for VendorSetup {
    fn default() -> Self {
        VendorSetup { budget: None, checking: Checking::FULL, response: Response::Report }
    }
}

impl VendorSetup {
    /// A fresh arena for `quirks`.
    pub fn arena(&self, quirks: &MemQuirks) -> Arena {
        let mut b = Arena::builder()
            .name(format!("{}-matrix", quirks.vendor))
            .quirks(*quirks)
            .checking(self.checking)
            .response(self.response);
        if let Some(bytes) = self.budget {
            b = b.budget(bytes);
        }
        b.build()
    }
}

/// Runs `scenario` once per vendor, each in a fresh arena it has entered, and returns the
/// results in the vendors' order.
pub fn for_each_vendor<T>(
    vendors: &[MemQuirks],
    setup: &VendorSetup,
    mut scenario: impl FnMut(&Arena) -> T,
) -> Vec<(&'static str, T)> {
    vendors
        .iter()
        .map(|q| {
            let arena = setup.arena(q);
            let r = arena.run(|| scenario(&arena));
            (q.vendor, r)
        })
        .collect()
}

/// A table: one row per scenario, one column per vendor.
///
/// # Examples
/// ```
/// use ddi_kmem::{KM_SLEEP, MemQuirks, kmem_alloc, vendor::{Matrix, VendorSetup}};
///
/// let mut m = Matrix::new(&[MemQuirks::LFS]);
/// m.row("kmem_alloc(0)", &VendorSetup::default(), |_| {
///     if kmem_alloc(0, KM_SLEEP).is_null() { "NULL".into() } else { "memory".into() }
/// });
/// assert_eq!(m.cell("kmem_alloc(0)", "LfS"), Some("NULL"));
/// println!("{m}");
/// ```
#[derive(Clone, Debug)]
pub struct Matrix {
    vendors: Vec<MemQuirks>,
    rows: Vec<(String, Vec<String>)>,
}

impl Matrix {
    /// An empty table over `vendors`.
    pub fn new(vendors: &[MemQuirks]) -> Self {
        Matrix { vendors: vendors.to_vec(), rows: Vec::new() }
    }

    /// Runs `scenario` under every vendor (see [`for_each_vendor`]) and adds its row.
    pub fn row(&mut self, name: &str, setup: &VendorSetup, scenario: impl FnMut(&Arena) -> String) -> &mut Self {
        let cells = for_each_vendor(&self.vendors, setup, scenario).into_iter().map(|(_, c)| c).collect();
        self.rows.push((name.to_string(), cells));
        self
    }

    /// The cell of `scenario` under `vendor`.
    pub fn cell(&self, scenario: &str, vendor: &str) -> Option<&str> {
        let col = self.vendors.iter().position(|q| q.vendor == vendor)?;
        let (_, cells) = self.rows.iter().find(|(n, _)| n == scenario)?;
        cells.get(col).map(String::as_str)
    }
}

impl fmt::Display for Matrix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let first = self.rows.iter().map(|(n, _)| n.len()).chain(["scenario".len()]).max().unwrap_or(0);
        let widths: Vec<usize> = (0..self.vendors.len())
            .map(|i| self.rows.iter().map(|(_, c)| c[i].len()).chain([self.vendors[i].vendor.len()]).max().unwrap_or(0))
            .collect();
        write!(f, "| {:first$} |", "scenario")?;
        for (q, w) in self.vendors.iter().zip(&widths) {
            write!(f, " {:w$} |", q.vendor)?;
        }
        writeln!(f)?;
        write!(f, "|{}|", "-".repeat(first + 2))?;
        for w in &widths {
            write!(f, "{}|", "-".repeat(w + 2))?;
        }
        writeln!(f)?;
        for (name, cells) in &self.rows {
            write!(f, "| {name:first$} |")?;
            for (c, w) in cells.iter().zip(&widths) {
                write!(f, " {c:w$} |")?;
            }
            writeln!(f)?;
        }
        Ok(())
    }
}
