//! Misuse of the message interface, detected and reported.

/// A misuse of the STREAMS message interface.
///
/// Every variant names the DDI call that was misused. In an arena that checks
/// ([`Arena::checking`](ddi_kmem::Arena::checking)), the raw functions detect the misuses
/// below and respond as the arena's [`Response`](ddi_kmem::Response) says: panic with this
/// message (the default), or report (trace it, keep it for [`take_errors`](crate::take_errors))
/// and refuse the operation, leaving memory uncorrupted. The safe handle ([`Msg`](crate::Msg))
/// returns [`StreamsError::Shared`] and [`StreamsError::NoRoom`] as plain errors.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StreamsError {
    /// A message block freed while still linked on a queue (`b_next` or `b_prev` set);
    /// illumos `freeb` asserts both are NULL.
    #[error("{call}: message block {addr:#x} is still linked on a queue (b_next/b_prev not NULL)")]
    StillQueued {
        /// The DDI call.
        call: &'static str,
        /// The message block.
        addr: usize,
    },
    /// A message block that is not allocated: freed already (a double free, or a use after
    /// free), or never returned by this arena's allocator.
    #[error("{call}: message block {addr:#x} is not allocated (already freed, or not from allocb)")]
    NotAllocated {
        /// The DDI call.
        call: &'static str,
        /// The message block.
        addr: usize,
    },
    /// A write to a data block that other message blocks share (`db_ref > 1`) or that is
    /// read-only (an esballoc'd `Bytes`).
    #[error("{call}: data block is shared (db_ref {db_ref}) or read-only: writing would change other messages")]
    Shared {
        /// The call.
        call: &'static str,
        /// The data block's reference count.
        db_ref: u32,
    },
    /// Found at `dupb` or at a free in a checking arena: the buffer of a data block changed
    /// while other message blocks shared it (a raw write through one of them, which changes
    /// the others' data too). The operation goes ahead; the report names the data block.
    #[error("{call}: data block {addr:#x} was written while shared (db_ref {db_ref}): other messages saw the change")]
    WrittenWhileShared {
        /// The DDI call that found it.
        call: &'static str,
        /// The data block.
        addr: usize,
        /// The reference count while it was written.
        db_ref: u32,
    },
    /// A write past `db_lim`.
    #[error("{call}: no room: {wanted} bytes wanted, {room} bytes before db_lim")]
    NoRoom {
        /// The call.
        call: &'static str,
        /// Bytes the caller wanted to write.
        wanted: usize,
        /// Bytes available.
        room: usize,
    },
    /// `esballoc` or `desballoc` with a NULL base or a NULL free routine (LfS panics; LiS
    /// returns NULL).
    #[error("{call}: NULL {what}")]
    NullArgument {
        /// The DDI call.
        call: &'static str,
        /// Which argument.
        what: &'static str,
    },
}
