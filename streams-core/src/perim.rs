//! Synchronization levels: perimeters taken around put and service procedures, and the
//! procedure calls themselves (with the panic boundary and trace spans).
//!
//! A perimeter (illumos "inner perimeter", LfS "syncq barrier") makes the procedures it
//! covers run one at a time: per queue pair ([`SyncLevel::QueuePair`]), per module — every
//! instance of the module in every stream ([`SyncLevel::Module`]) — or none for MP-safe
//! modules ([`SyncLevel::Mp`]). A thread that finds the perimeter busy does not wait: it
//! leaves the call (put or service) on the perimeter's list and returns, and the thread that
//! holds the perimeter runs the list, in order, before it leaves (illumos `qfill_syncq` /
//! `drain_syncq`, LfS syncq backlog). So a `qreply` from inside a put procedure, which comes
//! back into the same perimeter, and two threads meeting in two perimeters in opposite
//! orders, never deadlock; calls into one queue keep their order.
//!
//! A deferred call runs under its stream's plumbing lock, taken with a try-lock while the
//! perimeter's list lock is held: if the stream is being re-plumbed, a deferred service
//! procedure is handed back to the scheduler and a deferred put waits its turn at the back
//! of the list. Closing a stream removes its deferred puts (freeing their messages) under
//! the list lock before it frees the queues.

use crate::env;
use crate::error::StreamsError;
use crate::mblk::Mblk;
use crate::queue::Queue;
use crate::sched::{QPtr, RunList};
use crate::sync::Mutex;
use crate::sync::model::yield_now;
use std::collections::VecDeque;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

/// A module's synchronization level: which procedures exclude each other.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum SyncLevel {
    /// No perimeter: put and service procedures of any queue may run concurrently (Solaris
    /// `D_MP`, LfS `SQLVL_NOP`). A queue's service procedure still never runs concurrently
    /// with itself. The default for Rust modules, whose state is `Sync` by type.
    #[default]
    Mp,
    /// One perimeter per queue pair (Solaris `D_MTQPAIR`, LfS `SQLVL_QUEUEPAIR`; HP-UX's
    /// default).
    QueuePair,
    /// One perimeter for every instance of the module (Solaris `D_MTPERMOD`, LfS
    /// `SQLVL_MODULE`, the LfS default for modules that are not MP-safe).
    Module,
}

#[derive(Clone, Copy)]
enum Deferred {
    Put(*mut Queue, *mut Mblk),
    Svc(QPtr),
}

impl Deferred {
    fn queue(self) -> *mut Queue {
        match self {
            Deferred::Put(q, _) => q,
            Deferred::Svc(p) => p.0,
        }
    }
}

struct PerimState {
    busy: bool,
    pending: VecDeque<Deferred>,
}

/// A perimeter (see the module doc).
pub(crate) struct Perimeter {
    st: Mutex<PerimState>,
}

// SAFETY: the deferred calls hold queue and message pointers that the perimeter protocol
// keeps valid (see the module doc); all state is behind the lock.
unsafe impl Send for Perimeter {}
// SAFETY: as above.
unsafe impl Sync for Perimeter {}

impl Perimeter {
    pub(crate) fn new() -> Self {
        Perimeter { st: Mutex::new(PerimState { busy: false, pending: VecDeque::new() }) }
    }

    /// Takes the perimeter, or leaves `call` on its list: returns whether the caller holds it.
    fn enter_or_defer(&self, call: Deferred) -> bool {
        let mut st = self.st.lock();
        if st.busy {
            st.pending.push_back(call);
            return false;
        }
        st.busy = true;
        true
    }

    /// Runs the deferred calls, then releases the perimeter.
    fn drain_and_leave(&self) {
        let mut tries = 0usize;
        loop {
            let mut st = self.st.lock();
            let Some(item) = st.pending.pop_front() else {
                st.busy = false;
                return;
            };
            let q = item.queue();
            // SAFETY: a deferred call's queue is live: closing removes its calls under this
            // lock (purge) before it frees the queue.
            let stream = unsafe { (*q).shared().stream };
            let guard = if stream.is_null() {
                Ok(None)
            } else {
                // SAFETY: the stream outlives its queues.
                unsafe { (*stream).plumb.try_read_recursive() }.map(Some).ok_or(())
            };
            match guard {
                Ok(g) => {
                    drop(st);
                    tries = 0;
                    // SAFETY: the queue is live and its plumbing stable while `g` is held.
                    unsafe { execute(item) };
                    drop(g);
                }
                Err(()) => match item {
                    Deferred::Svc(p) => {
                        drop(st);
                        // SAFETY: as above.
                        list_of(unsafe { &*q }).finish(&p, true);
                    }
                    Deferred::Put(..) => {
                        st.pending.push_back(item);
                        tries += 1;
                        let n = st.pending.len();
                        drop(st);
                        if tries >= n {
                            tries = 0;
                            yield_now();
                        }
                    }
                },
            }
        }
    }

    /// Removes the deferred calls of queue `q` (closing): frees their messages, and hands
    /// deferred service runs back to the scheduler (which drops them: `q` is off).
    pub(crate) fn purge(&self, q: *mut Queue) {
        let mut dropped = Vec::new();
        {
            let mut st = self.st.lock();
            st.pending.retain(|d| {
                if d.queue() == q {
                    dropped.push(*d);
                    false
                } else {
                    true
                }
            });
        }
        for d in dropped {
            match d {
                // SAFETY: a deferred message is owned by the deferred call, now dropped.
                Deferred::Put(_, mp) => unsafe { crate::alloc::freemsg(mp) },
                // SAFETY: `q` is live (being closed by the caller).
                Deferred::Svc(p) => list_of(unsafe { &*q }).finish(&p, false),
            }
        }
    }
}

/// The run list of a queue's executive, as an owned handle: `finish` may let the queue (and
/// with it the executive) be freed, so the list must not be borrowed from the queue.
fn list_of(q: &Queue) -> Arc<RunList<QPtr>> {
    Arc::clone(&q.exec().runlist)
}

/// The perimeter of a queue, if its module has one.
#[inline]
fn perim_of(q: &Queue) -> Option<&Perimeter> {
    let p = q.shared().perim.load(crate::sync::Ordering::Acquire);
    // SAFETY: the perimeter is the pair's own or its module's registry entry's, both of
    // which outlive the pair.
    unsafe { p.as_ref() }
}

/// Runs a deferred call.
///
/// # Safety
/// The call's queue is live and its stream's plumbing stable.
unsafe fn execute(d: Deferred) {
    match d {
        // SAFETY: forwarded.
        Deferred::Put(q, mp) => unsafe { invoke_put(q, mp) },
        Deferred::Svc(p) => {
            // SAFETY: forwarded: the queue is live.
            let list = list_of(unsafe { &*p.0 });
            // SAFETY: forwarded.
            unsafe { invoke_service(&list, p) }
        }
    }
}

/// Calls `q`'s put procedure with `mp`, through the queue's perimeter: the body of
/// `putnext` and `put`.
///
/// The common case — procedures on, no perimeter (`SyncLevel::Mp`), a put procedure, trace
/// level off — is tested first and calls the procedure in place (inlined into the caller's
/// `putnext`, so a hop through a pass-through module is one frame); everything else takes
/// [`put_through_slow`]. Both keep one panic boundary per put procedure call: a
/// `catch_unwind` here is a call with a landing pad, free on the normal path.
///
/// # Safety
/// `q` is a live queue whose plumbing is stable; `mp` is a message the caller gives away.
#[inline]
pub(crate) unsafe fn put_through(q: *mut Queue, mp: *mut Mblk) {
    // SAFETY: caller.
    let qr = unsafe { &*q };
    // One load for procedures on, no perimeter, a put procedure (`Queue::fast_put`).
    if let Some(putp) = qr.fast_put()
        && !tracing::level_enabled!(tracing::Level::TRACE)
    {
        // SAFETY: the put procedure's contract: a live queue and a message it now owns.
        let r = catch_unwind(AssertUnwindSafe(|| unsafe { putp(q, mp) }));
        if let Err(e) = r {
            put_panicked(qr, e);
        }
        return;
    }
    // SAFETY: forwarded.
    unsafe { put_through_slow(q, mp) }
}

/// Reports a put procedure's panic.
#[cold]
#[inline(never)]
fn put_panicked(qr: &Queue, e: Box<dyn std::any::Any + Send>) {
    qr.exec().report(StreamsError::ProcPanicked { call: "put", module: qr.name(), message: panic_message(e.as_ref()) });
}

/// [`put_through`]'s full path: procedures off, a perimeter, no put procedure, or tracing.
///
/// # Safety
/// As [`put_through`].
#[cold]
#[inline(never)]
unsafe fn put_through_slow(q: *mut Queue, mp: *mut Mblk) {
    // SAFETY: caller.
    let qr = unsafe { &*q };
    if qr.procs_off() {
        // Procedures off (qprocsoff, or not yet qprocson): the message waits on the queue,
        // delivered when procedures come back on, or freed when the queue is closed.
        // SAFETY: caller.
        if unsafe { crate::queue::putq(q, mp) } == 0 {
            // SAFETY: putq refused it: still ours.
            unsafe { crate::alloc::freemsg(mp) };
        }
        return;
    }
    match perim_of(qr) {
        // SAFETY: forwarded.
        None => unsafe { invoke_put(q, mp) },
        Some(p) => {
            if p.enter_or_defer(Deferred::Put(q, mp)) {
                // SAFETY: forwarded.
                unsafe { invoke_put(q, mp) };
                p.drain_and_leave();
            } else {
                tracing::trace!(queue = qr.name(), "put deferred: perimeter busy");
            }
        }
    }
}

/// Runs a claimed queue's service procedure through its perimeter; the run list is told
/// when it has run (possibly later, by the perimeter's holder).
pub(crate) fn run_service(list: &RunList<QPtr>, item: QPtr) {
    // SAFETY: a claimed queue is live until finish.
    let qr = unsafe { &*item.0 };
    match perim_of(qr) {
        // SAFETY: claimed: live; the caller holds the plumbing lock.
        None => unsafe { invoke_service(list, item) },
        Some(p) => {
            if p.enter_or_defer(Deferred::Svc(item)) {
                // SAFETY: as above.
                unsafe { invoke_service(list, item) };
                p.drain_and_leave();
            }
        }
    }
}

fn panic_message(e: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = e.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = e.downcast_ref::<String>() {
        s.clone()
    } else {
        "(non-string panic)".to_string()
    }
}

/// Calls the put procedure, catching a panic at the boundary.
///
/// # Safety
/// As [`put_through`].
unsafe fn invoke_put(q: *mut Queue, mp: *mut Mblk) {
    // SAFETY: caller.
    let qr = unsafe { &*q };
    let qi = qr.qinfo();
    // SAFETY: q_qinfo is NULL or valid for the pair's life.
    let putp = unsafe { qi.as_ref() }.and_then(|qi| qi.qi_putp);
    let Some(putp) = putp else {
        // SAFETY: the message was given to us.
        unsafe { crate::alloc::freemsg(mp) };
        env::current().misuse(StreamsError::NoPutProcedure { call: "putnext", module: qr.name() });
        return;
    };
    // SAFETY: the put procedure's contract: a live queue and a message it now owns.
    let call = || catch_unwind(AssertUnwindSafe(|| unsafe { putp(q, mp) }));
    // The span is built only when trace level is on (one atomic load otherwise).
    let r = if tracing::enabled!(tracing::Level::TRACE) {
        let _span = tracing::trace_span!("put", module = qr.name(), read = qr.is_read()).entered();
        call()
    } else {
        call()
    };
    if let Err(e) = r {
        put_panicked(qr, e);
    }
}

/// Calls the service procedure, catching a panic, then tells the run list.
///
/// # Safety
/// The queue is claimed (live) and its plumbing stable.
unsafe fn invoke_service(list: &RunList<QPtr>, item: QPtr) {
    // SAFETY: caller.
    let qr = unsafe { &*item.0 };
    let qi = qr.qinfo();
    // SAFETY: as in invoke_put.
    let srvp = unsafe { qi.as_ref() }.and_then(|qi| qi.qi_srvp);
    if let Some(srvp) = srvp {
        crate::queue::set_flag(qr, crate::queue::QBACK, false);
        // SAFETY: the service procedure's contract: a live queue.
        let call = || catch_unwind(AssertUnwindSafe(|| unsafe { srvp(item.0) }));
        let r = if tracing::enabled!(tracing::Level::TRACE) {
            let _span = tracing::trace_span!("service", module = qr.name(), read = qr.is_read()).entered();
            call()
        } else {
            call()
        };
        if let Err(e) = r {
            qr.exec().report(StreamsError::ProcPanicked {
                call: "service",
                module: qr.name(),
                message: panic_message(e.as_ref()),
            });
        }
    }
    // After this the queue may be freed: `list` is the caller's own handle.
    list.finish(&item, false);
}
