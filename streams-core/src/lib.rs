//! SVR4 STREAMS over ddi-kmem: messages (`mblk_t`, `dblk_t`, the `allocb` family, `bufcall`).
//!
//! Queues, flow control, scheduling and stream heads will follow; this part is the message
//! layer.
//!
//! # Principles of operation
//!
//! **Blocks.** A message is a chain (`b_cont`) of message blocks ([`Mblk`]), each a window
//! `b_rptr..b_wptr` onto a data block ([`Dblk`]) that owns a buffer `db_base..db_lim`.
//! Several message blocks may share one data block (`dupb`); `db_ref` counts them.
//!
//! **The combined block.** Every message block and data block lives in a 256-byte
//! combined block (LfS's `mdbblock`) from one ddi-kmem object cache per arena: a 64-byte
//! message block, a 64-byte data block, and a [`FASTBUF`] (128-byte) buffer, which holds
//! the data of a small message (`allocb(size <= 128)`: one cache allocation, 128 bytes of
//! header per message). A larger message takes its buffer from `kmem_alloc` and keeps the
//! power-of-two slack up to `db_lim`. `dupb` takes a combined block for its message block
//! only; `pullupmsg` one for its data block only. A combined block returns to its cache when
//! both halves are unused: the message block after `freeb`, the data block after its last
//! reference. Each block counts its live halves; the common case (a never-duplicated
//! message freed by one `freeb`) frees the block without touching that count.
//!
//! **The last reference.** `dupb` raises `db_ref` (compare-exchange, failing at 255);
//! `freeb` lowers it by one atomic decrement with Release ordering, and the thread that
//! takes it to zero issues an Acquire fence and alone releases the buffer: it runs the free
//! routine of an esballoc'd buffer exactly once, or frees the kmem buffer, then releases the
//! data block's half (argued in `dblk.rs`, model-checked in `tests/loom_last_ref.rs`). A
//! shared data block is read-only to safe code: [`Msg`] refuses writes while `db_ref > 1`.
//!
//! **Environments.** The DDI functions act on the arena the thread has entered
//! ([`Arena::run`](ddi_kmem::Arena::run)). Each arena gets, on first use, a message
//! environment: the combined-block cache, the bufcall list and misuse reports (`env.rs`).
//! A data block remembers its environment, so a message may be freed on any thread. The
//! environment holds only [dependent](ddi_kmem::Arena::dependent) handles: when the arena's
//! last ordinary handle goes, the environment releases its cache and the arena is dropped;
//! if messages are still out, they are reported and kept valid with their arena (`env.rs`,
//! "Lifetime"; [`message_environments`] counts them).
//!
//! **Buffer calls** run when memory is freed, on the freeing thread (`bufcall.rs`).
//!
//! **Misuse.** In an arena that checks ([`Arena::checking`](ddi_kmem::Arena::checking)),
//! the raw functions detect a double `freeb`, a use after `freeb`, a block not from
//! `allocb`, and a raw write to a shared data block (a fingerprint of the buffer taken when
//! `dupb` shares it, compared at each later `dupb` and free: found after the fact, as
//! redzones are); a `freeb` of a block still on a queue and `esballoc` with a NULL base are
//! detected always. Each is reported with the call's name, as the arena's
//! [`Response`](ddi_kmem::Response) says (panic, or keep the report: [`take_errors`]), and
//! the operation is refused, so memory is not corrupted. ddi-kmem's own checks (redzones,
//! freed-memory patterns) cover the combined blocks and buffers.
//!
//! **Safe and raw.** [`Msg`] owns a message and frees it on drop; chains are iterators
//! ([`Msg::blocks`]) and [`bytes::Buf`]. The DDI-named functions take and return
//! `*mut Mblk` for line-by-line ports and are `unsafe` where C lets a caller break memory.
//!
//! # Examples
//! ```
//! use ddi_kmem::Arena;
//! use streams_core::{Msg, BPRI_MED, M_PROTO};
//!
//! let arena = Arena::builder().name("doc").build();
//! arena.run(|| {
//!     let mut m = Msg::alloc(32, BPRI_MED).unwrap();
//!     m.extend_from_slice(b"hdr").unwrap();
//!     m.set_type(M_PROTO).unwrap();
//!     m.link(Msg::from_slice(b"payload").unwrap());
//!     assert_eq!(m.msgsize(), 10);
//!     assert_eq!(m.msgdsize(), 7);
//!     let d = m.dup().unwrap();
//!     assert!(d.is_shared());
//! });
//! assert_eq!(arena.bytes_in_use(), 0);
//! ```

#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

mod alloc;
mod bufcall;
pub mod dblk;
mod env;
mod error;
mod interop;
pub mod mblk;
mod msg;
mod sync;
mod util;

pub use alloc::{
    BPRI_FT, BPRI_HI, BPRI_LO, BPRI_MED, BPRI_WAITOK, FASTBUF, allocb, desballoc, dupb, esballoc, freeb, freemsg, testb,
};
pub use bufcall::{BcId, BufcallFn, bufcall, bufcall_fn, bufcalls_waiting, esbbcall, unbufcall};
pub use dblk::*;
pub use env::{EnvCounts, message_environments, take_errors};
pub use error::StreamsError;
pub use mblk::*;
pub use msg::{Blocks, Msg};
pub use util::{
    adjmsg, copyb, copymsg, dupmsg, linkb, msgdsize, msgpullup, msgsize, pullupmsg, rmvb, rmvb_not_found, unlinkb,
    xmsgsize,
};
