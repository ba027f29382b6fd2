//! SVR4 STREAMS over ddi-kmem: messages (`mblk_t`, `dblk_t`, the `allocb` family,
//! `bufcall`), queues (`queue_t`, bands, the queue operations), flow control, the service
//! scheduler, modules and drivers, and streams with a stream head.
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
//! header per message). A message of up to 2048 bytes is one block of a large combined
//! cache (128 bytes of header and 256, 512, 1024 or 2048 bytes of data, as illumos's
//! `streams_dblk_N` caches) when the arena's `kmem_alloc` classes are those powers of two.
//! A larger message takes its buffer from `kmem_alloc` and keeps the power-of-two slack up
//! to `db_lim`. `dupb` takes a combined block for its message block
//! only; `pullupmsg` one for its data block only. A combined block returns to its cache when
//! both halves are unused: the message block after `freeb`, the data block after its last
//! reference. Each block counts its live halves; the common case (a never-duplicated
//! message freed by one `freeb`) frees the block without touching that count.
//!
//! **Constructed state and fast paths.** The cache's constructor (Solaris semantics, as
//! illumos `dblk_constructor`) writes every block as `allocb(0)` returns it: `b_datap` the
//! block's own data block, `db_base..db_lim` the inline buffer, `db_ref` 1, both halves
//! live, no free routine, the environment. Every path that returns a block to the cache
//! restores that state, so a small `allocb` writes only what varies (`b_cont`, the read and
//! write pointers, band, flags, checksum, `db_type`, `db_flag`, `db_size`), inline at the
//! call site. While no arena of the process checks, `freeb` frees a message block holding
//! the only reference to its own block's data block (and a block of `dupb`) directly,
//! after the same queue tests as the general path; everything else, and everything in a
//! process with a checking arena, takes the general path.
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
//! # Queues and streams: principles of operation
//!
//! **Queues.** [`allocq`] takes a queue pair (read queue, write queue right after it, and the
//! pair's shared part) from one `kmem_zalloc` of the current arena, so budgets, failure
//! injection and "bytes in use back to zero" cover queues; [`freeq`] flushes both queues
//! (freeing the messages, as LfS) and returns the memory. A queue is an intrusive list
//! through `b_next`/`b_prev` in class order — high priority (band forced to 0), bands 255..1,
//! band 0 — FIFO within a class, with per-band first/last pointers; bands (`qband_t`) are a
//! kmem array grown on demand (a band that cannot be allocated makes `putq` fail). Each
//! queue's list, counts, flags and water marks are behind its own lock, held only inside the
//! queue operations. A queued message carries a private mark in `b_pad1`
//! ([`MBLK_QUEUED`]), so `freeb` of the sole message of a queue and a second `putq` are caught.
//!
//! **Flow control** ([`canput`] and friends, `flow.rs`): `QFULL`/`QB_FULL` above the high
//! water mark, cleared below the low water mark or at zero (`QFULL` is mirrored in an
//! atomic, so a band-0 test of a queue that is not full takes no lock); a failed test sets
//! `QWANTW`/`QB_WANTW`; when the queue drains, the nearest upstream queue with a service
//! procedure is enabled (back-enabling). The "next" tests walk `q_next` to the nearest queue
//! with a service procedure; the stream head caches its target (LfS `q_nfsrv`), recomputed
//! whenever the stream is re-plumbed. Every number and rule vendors differ on is in
//! [`QueueQuirks`] (`LFS` native), read by the queue functions of an executive.
//!
//! **Scheduling** (`sched.rs`): [`qenable`] puts a queue on its executive's run list once;
//! one atomic word per queue (`ENAB`, `RUNNING`, `OFF`) guarantees that a service procedure
//! never runs concurrently with itself and that an enable during a run makes it run again
//! (loom-checked, `tests/loom_qenable.rs`). The run list is drained deterministically by the
//! asking thread ([`Streams::run_until_idle`], [`runqueues`]) or by worker threads
//! ([`StreamsBuilder::workers`]) that enter the executive's arena; an idle worker, like
//! [`Stream::read_wait`] and [`Stream::write_wait`], retries briefly (spin, then yield)
//! before it parks, and the head wakes sleepers only when one is registered (a wake-up gate,
//! loom-checked in `tests/loom_wake.rs`). Put procedures run synchronously in the caller of
//! [`putnext`]; the common hop (procedures on, no perimeter, tracing off) is a direct call.
//!
//! **Synchronization levels** ([`SyncLevel`], `perim.rs`): a perimeter per queue pair, per
//! module, or none (MP-safe; the default for Rust modules) is taken around put and service
//! procedures. A busy perimeter is not waited for: the call is left on its list and run by
//! the holder before it leaves (illumos syncq), so a `qreply` into a busy perimeter and
//! opposite-order entries never deadlock, and calls into a queue keep their order.
//!
//! **Streams** (`stream.rs`): [`Streams`] (the executive: run list, workers, module registry,
//! quirks) opens a [`Stream`] on a registered driver; [`Stream::push`]/[`Stream::pop`] are
//! `I_PUSH`/`I_POP` by name. Every entry into a stream that walks it (head write/ioctl,
//! [`put`], a service run) holds the stream's plumbing lock for reading, so `q_next` is
//! stable inside procedures without any per-`putnext` locking; push, pop, open and close
//! hold it for writing. A read at the head does not: the head's queue pair lives until the
//! stream's state is dropped, so `getq` on it needs only that queue's lock. The head handles
//! `M_FLUSH` (flush, reflect), `M_ERROR`, `M_HANGUP`, and `M_IOCACK`/`M_IOCNAK` for
//! [`Stream::ioctl`]; its read queue has the personality's `STRHIGH`/`STRLOW`.
//!
//! **Modules.** A C module ports as a [`StreamTab`] of [`QInit`]s with raw procedures
//! ([`Streams::register_raw`]); a Rust module implements [`Module`]: the type is the
//! instance's private data (in arena memory), its procedures get `&self`, a [`QRef`] and an
//! owned [`Msg`]. Defaults are the canonical pass-through procedures.
//!
//! **Panics.** A put, service, open or close procedure that panics is caught at its
//! boundary: the stream stays usable, the message a Rust procedure owned is freed by
//! unwinding, and [`StreamsError::ProcPanicked`] is kept ([`Streams::take_errors`]).
//!
//! **Misuse** of queues is reported like message misuse (the arena's response): `putq` of a
//! queued message, a queue call on a freed queue (checking arenas keep a live set, checked
//! before the queue is touched), sleeping calls (`allocq`, `allocb(BPRI_WAITOK)`,
//! `qprocson`/`qprocsoff`, open, close, `I_PUSH`, `I_POP`) from interrupt context, and
//! `putnext`/`qreply` with no next queue (the message is freed).
//!
//! ```
//! use ddi_kmem::Arena;
//! use streams_core::{Module, ModuleInfo, Msg, OpenCtx, QRef, Streams, INFPSZ};
//!
//! struct Echo; // a loopback driver: data goes back up
//! impl Module for Echo {
//!     const INFO: ModuleInfo = ModuleInfo {
//!         mi_idnum: 1, mi_idname: "echo", mi_minpsz: 0, mi_maxpsz: INFPSZ, mi_hiwat: 5120, mi_lowat: 1024,
//!     };
//!     fn open(_q: QRef<'_>, _ctx: &mut OpenCtx) -> Result<Self, i32> {
//!         Ok(Echo)
//!     }
//!     fn wput(&self, q: QRef<'_>, mp: Msg) {
//!         q.qreply(mp);
//!     }
//! }
//!
//! let arena = Arena::builder().name("doc-stream").build();
//! arena.run(|| {
//!     let sx = Streams::builder().arena(&arena).build();
//!     sx.register_driver::<Echo>().unwrap();
//!     let s = sx.open("echo", 0).unwrap();
//!     s.write(Msg::from_slice(b"ping").unwrap()).unwrap();
//!     assert_eq!(s.read().unwrap().unwrap().data(), b"ping");
//! });
//! assert_eq!(arena.bytes_in_use(), 0);
//! ```
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
mod flow;
mod interop;
mod local;
pub mod mblk;
mod module;
mod msg;
mod perim;
mod queue;
mod sched;
mod stream;
mod sync;
mod util;

/// The scheduling protocol's parts, public only for the loom models (`tests/loom_qenable.rs`,
/// `tests/loom_wake.rs`).
#[doc(hidden)]
pub mod model {
    pub use crate::sched::{RunList, SvcItem, SvcState};
    pub use crate::sync::{SpinGuard, SpinLock, WaitGate};
}

pub use alloc::{
    BPRI_FT, BPRI_HI, BPRI_LO, BPRI_MED, BPRI_WAITOK, FASTBUF, allocb, desballoc, dupb, esballoc, freeb, freemsg, testb,
};
pub use bufcall::{BcId, BufcallFn, bufcall, bufcall_fn, bufcalls_waiting, esbbcall, unbufcall};
pub use dblk::*;
pub use env::{EnvCounts, message_environments, take_errors};
pub use error::StreamsError;
pub use flow::{FullAt, FullClear, PutqEnable, QueueQuirks, bcanput, bcanputnext, canput, canputnext};
pub use local::{LocalStream, LocalStreams};
pub use mblk::*;
pub use module::{
    CLONEOPEN, CloseProc, Cred, DRVOPEN, Dev, INFPSZ, Kind, MODOPEN, Module, ModuleInfo, OpenCtx, OpenProc, PutProc,
    QInit, QRef, SrvProc, StreamTab, default_rput, default_srv, default_wput, driver_flush, flush_side,
};
pub use msg::{Blocks, Msg};
pub use perim::SyncLevel;
pub use queue::{
    FLUSHALL, FLUSHDATA, MBLK_QUEUED, NBAND, OTHERQ, QB_BACK, QB_FULL, QB_WANTW, QBACK, QBand, QENAB, QFULL, QField,
    QNOENB, QPROCS, QREADR, QSHEAD, QSRVP, QUSE, QWANTR, QWANTW, Queue, RD, WR, allocq, appq, flushband, flushq, freeq,
    getq, insq, putbq, putq, qsize, rmvq, setq, strqget, strqset,
};
pub use sched::{ExecGuard, Streams, StreamsBuilder, enableok, noenable, qenable, runqueues};
pub use stream::{
    EAGAIN, EDEADLK, EINVAL, EIO, ENOMEM, ENXIO, EPERM, ETIME, FLUSHBAND, FLUSHR, FLUSHRW, FLUSHW, IocReply, Iocblk,
    NOERROR, Stream, miocack, miocnak, msg_of, put, putctl, putctl1, putnext, putnextctl, putnextctl1, qprocsoff,
    qprocson, qreply,
};
pub use util::{
    adjmsg, copyb, copymsg, dupmsg, linkb, msgdsize, msgpullup, msgsize, pullupmsg, rmvb, rmvb_not_found, unlinkb,
    xmsgsize,
};
