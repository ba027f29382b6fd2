//! Errors and misuse reports.

/// What can go wrong in a mempool call, and the reports checking mode keeps.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MempoolError {
    /// The preallocation of the reserve, or the reserve's pointer array, failed (Linux
    /// `-ENOMEM`). Whatever had been allocated was freed again.
    #[error("mempool: out of memory preallocating {wanted} elements (got {got})")]
    NoMemory {
        /// The number of elements asked for.
        wanted: usize,
        /// How many had been allocated before the failure (all freed again).
        got: usize,
    },
    /// `mempool_resize` to a minimum of zero (Linux: `BUG_ON(new_min_nr <= 0)`).
    #[error("mempool_resize: new_min_nr must be at least 1, got 0")]
    ZeroMinimum,
    /// `mempool_init` on a pool that is already initialized.
    #[error("mempool_init: the pool is already initialized")]
    AlreadyInitialized,
    /// An element was modified while it sat poisoned in the reserve (checking mode; Linux
    /// "BUG: mempool element poison mismatch").
    #[error(
        "BUG: mempool element poison mismatch: element {element:#x} ({size} bytes), byte {offset} is {found:#04x}, expected {expected:#04x}; {dump}"
    )]
    PoisonMismatch {
        /// The element's address.
        element: usize,
        /// The poisoned size.
        size: usize,
        /// The offset of the first modified byte.
        offset: usize,
        /// The byte found there.
        found: u8,
        /// The poison byte expected there.
        expected: u8,
        /// A hex dump of up to 8 bytes either side, as Linux prints.
        dump: String,
    },
    /// `mempool_destroy` with elements still allocated from the pool, under
    /// [`DestroyCheck::Bug`](crate::DestroyCheck::Bug) (Linux 2.6 `BUG_ON(curr_nr != min_nr)`).
    #[error("BUG: mempool_destroy with {outstanding} elements outstanding")]
    Outstanding {
        /// The number of elements allocated and not freed.
        outstanding: isize,
    },
}
