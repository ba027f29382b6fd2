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
    /// A message block freed while still linked on a queue (`b_next` or `b_prev` set, or
    /// the queued mark in `b_pad1`, which catches the sole message of a queue); illumos
    /// `freeb` asserts both pointers are NULL.
    #[error("{call}: message block {addr:#x} is still linked on a queue (b_next/b_prev not NULL or queued mark set)")]
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
    /// A NULL queue passed to a queue call.
    #[error("{call}: NULL queue")]
    NullQueue {
        /// The DDI call.
        call: &'static str,
    },
    /// A queue that is not allocated (freed already, or never from `allocq`), detected in a
    /// checking arena before the queue is touched.
    #[error("{call}: queue {addr:#x} is not allocated (freed already, or not from allocq)")]
    QueueNotAllocated {
        /// The DDI call.
        call: &'static str,
        /// The queue.
        addr: usize,
    },
    /// `putq`, `putbq`, `insq` or `appq` of a message that is already on a queue.
    #[error("{call}: message block {addr:#x} is already on a queue")]
    AlreadyQueued {
        /// The DDI call.
        call: &'static str,
        /// The message block.
        addr: usize,
    },
    /// `rmvq` (or `insq`'s `emp`) naming a message that is not on a queue.
    #[error("{call}: message block {addr:#x} is not on a queue")]
    NotQueued {
        /// The DDI call.
        call: &'static str,
        /// The message block.
        addr: usize,
    },
    /// A call that may sleep (`KM_SLEEP` class: `allocq`, `allocb(BPRI_WAITOK)`,
    /// `qprocson`/`qprocsoff`, open, close, `I_PUSH`, `I_POP`) made from interrupt context
    /// (9F CONTEXT sections: user context only).
    #[error("{call}: may sleep, called from interrupt context")]
    SleepInInterrupt {
        /// The DDI call.
        call: &'static str,
    },
    /// `putnext` or `qreply` from a queue that has no next queue (a driver's write queue, the
    /// stream head's read queue, a bare `allocq` queue). The message is freed.
    #[error("{call}: queue of module {module} has no next queue (q_next is NULL); message freed")]
    NoNextQueue {
        /// The DDI call.
        call: &'static str,
        /// The calling queue's module.
        module: &'static str,
    },
    /// A put to a queue without a put procedure. The message is freed.
    #[error("{call}: module {module} has no put procedure; message freed")]
    NoPutProcedure {
        /// The DDI call.
        call: &'static str,
        /// The module.
        module: &'static str,
    },
    /// A put, service, open or close procedure panicked. The panic was caught at the
    /// procedure's boundary: the stream stays usable; the message a Rust procedure owned was
    /// freed by unwinding (a raw procedure's may leak).
    #[error("{call} procedure of module {module} panicked: {message}")]
    ProcPanicked {
        /// Which procedure ("put", "service", "open", "close").
        call: &'static str,
        /// The module.
        module: &'static str,
        /// The panic message.
        message: String,
    },
    /// `I_PUSH`, `I_POP` or close of a stream of a thread-confined executive
    /// ([`LocalStreams`](crate::LocalStreams)) called from inside one of that stream's own
    /// procedures (through a handle a module kept): it would re-plumb or free queues the
    /// calling procedures are running in. Refused (`EDEADLK`; a close is left to the drop).
    /// On a shared executive the same call waits for the plumbing lock its caller holds.
    #[error("{call}: called from inside a procedure of the same stream; refused")]
    InsideStream {
        /// The call.
        call: &'static str,
    },
    /// A different module or driver is already registered under this name.
    #[error("register: a different module is already registered as {name}")]
    AlreadyRegistered {
        /// The name.
        name: &'static str,
    },
}
