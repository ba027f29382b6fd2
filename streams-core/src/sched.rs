//! Scheduling: `qenable`, `noenable`, `enableok`, `runqueues`, the run list, the two
//! scheduler modes, and the executive ([`Streams`]) that owns them.
//!
//! # The enable protocol
//!
//! Each queue has one atomic word ([`SvcState`]): `ENAB` (the queue is on the run list, or
//! will go back on it when its service procedure returns), `RUNNING` (the service procedure
//! is running or claimed) and `OFF` (procedures off: `qprocsoff`, `freeq`). The run list is
//! a FIFO under one lock.
//!
//! - `qenable`: `fetch_or(ENAB)`; only the caller that took the word from idle (no `ENAB`,
//!   no `RUNNING`) pushes the queue, under the list lock, after re-checking `OFF` there. So a
//!   queue is on the list at most once.
//! - A runner pops a queue and, under the list lock, swaps `ENAB` for `RUNNING` (skipping a
//!   queue found `OFF`). A `qenable` during the run only sets `ENAB`.
//! - When the service procedure returns, the runner, under the list lock, clears `RUNNING`;
//!   if `ENAB` was set meanwhile (and not `OFF`) it pushes the queue again. An enable during
//!   the run is therefore never lost, and the service procedure never runs concurrently with
//!   itself (model-checked in `tests/loom_qenable.rs`).
//! - `qprocsoff`/`freeq`: `fetch_or(OFF)`, remove the queue from the list under the lock,
//!   then wait until `RUNNING` clears. After that no runner touches the queue.
//!
//! # Modes
//!
//! The executive's run list is drained either by the thread that asks
//! ([`Streams::run_until_idle`], [`runqueues`]: deterministic, used by tests) or by a pool of
//! worker threads started with [`StreamsBuilder::workers`], which enter the executive's
//! arena. Both may be used at once; with workers, `Stream::read_wait` and
//! `Stream::write_wait` also drain the list (in the executive's arena) before they wait,
//! as LfS's stream head runs `runqueues` at the end of a system call. Put procedures never go through the run list: they run
//! synchronously in the caller of `putnext`.

use crate::error::StreamsError;
use crate::flow::QueueQuirks;
use crate::module::Registered;
use crate::queue::{QNOENB, Queue, check_q, set_flag};
use crate::sync::model::{ModelCondvar, ModelMutex, yield_now};
use crate::sync::{AtomicU32, Backoff, Mutex, Ordering};
use ddi_kmem::{Arena, current_arena};
use std::cell::RefCell;
use std::collections::VecDeque;
use std::sync::Arc;
use std::thread::JoinHandle;

const ENAB: u32 = 1;
const RUNNING: u32 = 2;
const OFF: u32 = 4;

/// A queue's scheduling word (see the module doc). Public (hidden) only so that the loom
/// model runs this code.
#[doc(hidden)]
#[derive(Debug)]
pub struct SvcState(AtomicU32);

impl Default for SvcState {
    fn default() -> Self {
        SvcState::new()
    }
}

impl SvcState {
    /// Idle, procedures on.
    pub fn new() -> Self {
        SvcState(AtomicU32::new(0))
    }

    /// `QENAB`.
    pub fn is_enabled(&self) -> bool {
        self.0.load(Ordering::Acquire) & ENAB != 0
    }

    /// Procedures off.
    #[inline]
    pub fn is_off(&self) -> bool {
        self.0.load(Ordering::Acquire) & OFF != 0
    }

    /// The service procedure is running (or claimed and deferred on a perimeter).
    pub fn is_running(&self) -> bool {
        self.0.load(Ordering::Acquire) & RUNNING != 0
    }
}

/// Something the run list holds: it knows its scheduling word.
#[doc(hidden)]
pub trait SvcItem: Clone + PartialEq {
    /// The item's scheduling word.
    fn svc(&self) -> &SvcState;
}

struct RunInner<T> {
    items: VecDeque<T>,
    running: usize,
    shutdown: bool,
}

/// The run list: enabled queues waiting for their service procedure. Public (hidden) only
/// so that the loom model runs this code.
#[doc(hidden)]
pub struct RunList<T> {
    st: ModelMutex<RunInner<T>>,
    work: ModelCondvar,
    idle: ModelCondvar,
}

impl<T: SvcItem> Default for RunList<T> {
    fn default() -> Self {
        RunList::new()
    }
}

impl<T: SvcItem> RunList<T> {
    /// An empty list.
    pub fn new() -> Self {
        RunList {
            st: ModelMutex::new(RunInner { items: VecDeque::new(), running: 0, shutdown: false }),
            work: ModelCondvar::new(),
            idle: ModelCondvar::new(),
        }
    }

    /// `qenable`: returns whether this call put the item on the list.
    pub fn enable(&self, item: &T) -> bool {
        let s = item.svc();
        // AcqRel: the enable publishes whatever the caller queued before it (the message a
        // `putq` just linked is under the queue's lock anyway) and observes RUNNING/OFF.
        let prev = s.0.fetch_or(ENAB, Ordering::AcqRel);
        if prev & (ENAB | RUNNING | OFF) != 0 {
            // Already listed, or the runner will see ENAB when it finishes, or off.
            return false;
        }
        let mut g = self.st.lock();
        // Re-checked under the lock: `disable` sets OFF before it takes the lock, so either
        // it sees the item on the list (and removes it) or we see OFF here.
        if s.0.load(Ordering::Acquire) & OFF != 0 {
            return false;
        }
        g.items.push_back(item.clone());
        drop(g);
        self.work.notify_one();
        true
    }

    fn claim_locked(g: &mut RunInner<T>) -> Option<T> {
        while let Some(item) = g.items.pop_front() {
            let s = item.svc();
            let mut cur = s.0.load(Ordering::Acquire);
            loop {
                let new = if cur & OFF != 0 { cur & !ENAB } else { (cur & !ENAB) | RUNNING };
                match s.0.compare_exchange_weak(cur, new, Ordering::AcqRel, Ordering::Acquire) {
                    Ok(_) => break,
                    Err(now) => cur = now,
                }
            }
            if cur & OFF != 0 {
                continue;
            }
            g.running += 1;
            return Some(item);
        }
        None
    }

    /// Takes the next item and marks it running, without waiting.
    pub fn try_claim(&self) -> Option<T> {
        let mut g = self.st.lock();
        Self::claim_locked(&mut g)
    }

    /// Takes the next item, waiting for one; `None` after [`RunList::shutdown`].
    pub fn claim_wait(&self) -> Option<T> {
        let mut g = self.st.lock();
        loop {
            if g.shutdown {
                return None;
            }
            if let Some(it) = Self::claim_locked(&mut g) {
                return Some(it);
            }
            g = self.work.wait(g);
        }
    }

    /// Takes the next item: retries a little first (spinning, then yielding: the thread
    /// that enables the next queue may share this core), then waits as
    /// [`claim_wait`](Self::claim_wait). Only `claim_wait`'s wait sleeps, under the list
    /// lock that `enable` takes, so no enable is missed.
    pub fn claim_spin_wait(&self) -> Option<T> {
        let mut backoff = Backoff::new();
        loop {
            if let Some(it) = self.try_claim() {
                return Some(it);
            }
            if !backoff.snooze() {
                return self.claim_wait();
            }
        }
    }

    /// The service procedure of a claimed item returned (`again`: it could not run and wants
    /// to be retried). Re-lists the item if it was enabled meanwhile.
    pub fn finish(&self, item: &T, again: bool) {
        let s = item.svc();
        let mut g = self.st.lock();
        let prev = if again {
            let mut cur = s.0.load(Ordering::Acquire);
            while let Err(now) =
                s.0.compare_exchange_weak(cur, (cur & !RUNNING) | ENAB, Ordering::AcqRel, Ordering::Acquire)
            {
                cur = now;
            }
            cur | ENAB
        } else {
            s.0.fetch_and(!RUNNING, Ordering::AcqRel)
        };
        g.running -= 1;
        let mut notify_work = false;
        if prev & ENAB != 0 && prev & OFF == 0 {
            g.items.push_back(item.clone());
            notify_work = true;
        }
        let idle = g.running == 0 && g.items.is_empty();
        drop(g);
        if notify_work {
            self.work.notify_one();
        }
        if idle {
            self.idle.notify_all();
        }
    }

    /// Turns the item's procedures off: takes it off the list and waits until its service
    /// procedure is not running. Nothing runs it afterwards.
    pub fn disable(&self, item: &T) {
        let s = item.svc();
        s.0.fetch_or(OFF, Ordering::AcqRel);
        {
            let mut g = self.st.lock();
            g.items.retain(|i| i != item);
            s.0.fetch_and(!ENAB, Ordering::AcqRel);
            let idle = g.running == 0 && g.items.is_empty();
            drop(g);
            if idle {
                self.idle.notify_all();
            }
        }
        while s.0.load(Ordering::Acquire) & RUNNING != 0 {
            yield_now();
        }
    }

    /// Turns the item's procedures back on; lists it if it was enabled while off.
    pub fn reenable(&self, item: &T) {
        let s = item.svc();
        let mut g = self.st.lock();
        let prev = s.0.fetch_and(!OFF, Ordering::AcqRel);
        if prev & ENAB != 0 && prev & RUNNING == 0 && !g.items.contains(item) {
            g.items.push_back(item.clone());
            drop(g);
            self.work.notify_one();
        }
    }

    /// Waits until the list is empty and nothing runs.
    pub fn wait_idle(&self) {
        let mut g = self.st.lock();
        while !(g.items.is_empty() && g.running == 0) {
            g = self.idle.wait(g);
        }
    }

    /// Whether the list is empty and nothing runs.
    pub fn is_idle(&self) -> bool {
        let g = self.st.lock();
        g.items.is_empty() && g.running == 0
    }

    /// Wakes every waiting worker and makes `claim_wait` return `None`.
    pub fn shutdown(&self) {
        self.st.lock().shutdown = true;
        self.work.notify_all();
    }
}

/// A queue on the run list.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct QPtr(pub(crate) *mut Queue);

// SAFETY: a queue is shared between threads by design; its state is behind its lock and
// atomics, and the enable protocol keeps the pointer valid while it is listed or running.
unsafe impl Send for QPtr {}
// SAFETY: as above.
unsafe impl Sync for QPtr {}

impl SvcItem for QPtr {
    fn svc(&self) -> &SvcState {
        // SAFETY: a listed or running queue is live (disable waits before freeq frees it).
        unsafe { &(*self.0).svc }
    }
}

/// The executive: scheduler, module registry, quirks and reports of the streams built in it.
pub(crate) struct ExecInner {
    pub(crate) runlist: Arc<RunList<QPtr>>,
    pub(crate) quirks: QueueQuirks,
    /// Registrations, from `Box::into_raw` (queues point at their qinits and perimeters,
    /// so entries never move), freed when the executive drops.
    pub(crate) registry: Mutex<Vec<RegPtr>>,
    pub(crate) errors: Mutex<Vec<StreamsError>>,
    workers: Mutex<Vec<JoinHandle<()>>>,
    /// The arena worker threads enter.
    pub(crate) arena: Arena,
    pub(crate) name: String,
    nworkers: usize,
    /// 0: shared by any threads; else the [`thread_token`](crate::sync::thread_token) of the
    /// one thread a [`LocalStreams`](crate::LocalStreams) executive is confined to (its queue
    /// locks are [`SpinLock::confined`](crate::sync::SpinLock) to it).
    pub(crate) owner: u64,
}

impl ExecInner {
    /// Panics, naming `call`, on another thread than a confined executive's (any thread may
    /// use a shared one).
    #[inline]
    #[track_caller]
    pub(crate) fn check_owner(&self, call: &'static str) {
        if self.owner != 0 && self.owner != crate::sync::thread_token() {
            foreign_thread(call, &self.name);
        }
    }
}

#[cold]
#[inline(never)]
#[track_caller]
fn foreign_thread(call: &'static str, name: &str) -> ! {
    panic!(
        "{call}: executive `{name}` is confined to the thread that built it (LocalStreams); called on another thread"
    )
}

impl Drop for ExecInner {
    fn drop(&mut self) {
        self.runlist.shutdown();
        let me = std::thread::current().id();
        for h in self.workers.lock().drain(..) {
            if h.thread().id() != me {
                let _ = h.join();
            }
        }
        for e in self.registry.lock().drain(..) {
            // SAFETY: from Box::into_raw in `register`; no queue of this executive is left
            // (each holds a count on it).
            drop(unsafe { Box::from_raw(e.0) });
        }
    }
}

/// A registry entry.
pub(crate) struct RegPtr(pub(crate) *mut Registered);

// SAFETY: a registration is immutable after `register` except its perimeter, which locks.
unsafe impl Send for RegPtr {}

impl ExecInner {
    /// How many worker threads drain the run list.
    pub(crate) fn workers_count(&self) -> usize {
        self.nworkers
    }

    /// Records a procedure's panic.
    pub(crate) fn report(&self, e: StreamsError) {
        tracing::error!(executive = %self.name, "STREAMS: {e}");
        self.errors.lock().push(e);
    }
}

thread_local! {
    static ENTERED: RefCell<Vec<Arc<ExecInner>>> = const { RefCell::new(Vec::new()) };
    static DEFAULT: RefCell<Option<Arc<ExecInner>>> = const { RefCell::new(None) };
}

/// The executive of the current thread: the last entered, else the thread's default one.
/// The pointer stays valid while the caller takes a count or keeps using it on this thread
/// without leaving the executive.
pub(crate) fn current_exec() -> *const ExecInner {
    if let Some(p) = ENTERED.with(|e| e.borrow().last().map(Arc::as_ptr)) {
        return p;
    }
    DEFAULT.with(|d| {
        let mut d = d.borrow_mut();
        // A dependent handle: the thread's default executive must not keep open the arena
        // that happened to be current when it was made (it starts no workers).
        let e = d.get_or_insert_with(|| {
            Streams::builder().name("default").arena(&current_arena().dependent()).build().inner
        });
        Arc::as_ptr(e)
    })
}

/// Enables a queue (no checks): the DDI `qenable` body.
pub(crate) fn qenable_raw(q: &Queue) {
    if !q.has_srvp() {
        return;
    }
    q.exec().runlist.enable(&QPtr(q.as_raw()));
}

/// Takes a queue off the scheduler for good (qprocsoff, freeq).
pub(crate) fn disable(q: &Queue) {
    q.exec().runlist.disable(&QPtr(q.as_raw()));
    crate::queue::refresh_fast_put(q);
}

/// Turns a queue's procedures back on (qprocson).
pub(crate) fn reenable(q: &Queue) {
    q.exec().runlist.reenable(&QPtr(q.as_raw()));
    crate::queue::refresh_fast_put(q);
}

/// Runs a claimed queue's service procedure: under the stream's plumbing lock (read), and
/// through its perimeter. If the plumbing is being changed, the run is retried later.
fn run_claimed(list: &RunList<QPtr>, item: QPtr) {
    // SAFETY: a claimed queue is live until finish (disable waits for RUNNING).
    let q = unsafe { &*item.0 };
    let stream = q.shared().stream;
    let guard = if stream.is_null() {
        None
    } else {
        // SAFETY: the stream outlives its queues.
        match unsafe { (*stream).plumb.try_read_recursive() } {
            Some(g) => Some(g),
            None => {
                list.finish(&item, true);
                yield_now();
                return;
            }
        }
    };
    crate::perim::run_service(list, item);
    drop(guard);
}

/// Runs enabled service procedures on the calling thread until the run list is empty.
///
/// # Arguments
/// None.
///
/// # Return
/// Nothing; every queue enabled before or during the call has run its service procedure
/// (in the order enabled) when the list is empty.
///
/// # Context
/// User or kernel context, outside put and service procedures (it runs them).
///
/// # Compatibility
/// LfS exports `runqueues()`, which stream heads call at the end of a system call
/// (lfs-lis.md §3.4); LfS gives up after 10 passes with "STREAMS scheduler looping", this
/// runs until the list is empty. It acts on the current executive
/// ([`Streams::enter`]), else on this thread's default one (that of bare `allocq` queues).
pub fn runqueues() {
    let exec = current_exec();
    // SAFETY: the current executive is held by this thread's ENTERED or DEFAULT list, which
    // this call does not change.
    let list = unsafe { Arc::clone(&(*exec).runlist) };
    drain(&list);
}

pub(crate) fn drain(list: &RunList<QPtr>) {
    while let Some(item) = list.try_claim() {
        run_claimed(list, item);
    }
}

/// Schedules a queue's service procedure.
///
/// # Arguments
/// - `q`: the queue.
///
/// # Return
/// Nothing. If `q` has a service procedure and is not already enabled, it is put on the run
/// list (`QENAB`); if its service procedure is running, it runs again afterwards.
///
/// # Context
/// Any.
///
/// # Compatibility
/// LfS and illumos `qenable` ignore `QNOENB` (lfs-lis.md §3.4); older LiS would not enable
/// a `QNOENB` queue.
///
/// # Safety
/// `q` is a live queue (a checking arena reports one that is not).
#[track_caller]
pub unsafe fn qenable(q: *mut Queue) {
    if let Some(qr) = check_q("qenable", q) {
        qenable_raw(qr);
    }
}

/// Stops `putq` from enabling a queue for normal messages.
///
/// # Arguments
/// - `q`: the queue.
///
/// # Return
/// Nothing; sets `QNOENB`. High-priority messages and back-enabling still enable the queue.
///
/// # Context
/// Any.
///
/// # Compatibility
/// SVR4 `noenable(9)`.
///
/// # Safety
/// `q` is a live queue.
#[track_caller]
pub unsafe fn noenable(q: *mut Queue) {
    if let Some(qr) = check_q("noenable", q) {
        set_flag(qr, QNOENB, true);
    }
}

/// Lets `putq` enable a queue again.
///
/// # Arguments
/// - `q`: the queue.
///
/// # Return
/// Nothing; clears `QNOENB`. It does not schedule the queue.
///
/// # Context
/// Any.
///
/// # Compatibility
/// SVR4 `enableok(9)`; LiS "incorrectly schedules" the queue (lfs-lis.md §4.3).
///
/// # Safety
/// `q` is a live queue.
#[track_caller]
pub unsafe fn enableok(q: *mut Queue) {
    if let Some(qr) = check_q("enableok", q) {
        set_flag(qr, QNOENB, false);
    }
}

/// The STREAMS executive: where streams are built and their service procedures run.
///
/// It holds the scheduler's run list (and worker threads, if any), the registry of modules
/// and drivers, the queue-layer quirks ([`QueueQuirks`]) and the reports of procedures that
/// panicked. Memory of the queues and messages comes from the arena that is current when
/// they are allocated; worker threads enter the executive's arena.
///
/// # Examples
/// ```
/// use ddi_kmem::Arena;
/// use streams_core::Streams;
///
/// let arena = Arena::builder().name("doc").build();
/// let sx = Streams::builder().arena(&arena).build(); // deterministic: run_until_idle
/// sx.run_until_idle();
/// let pool = Streams::builder().arena(&arena).workers(2).build();
/// pool.run_until_idle(); // waits for the workers
/// drop((sx, pool)); // joins the workers
/// assert_eq!(arena.bytes_in_use(), 0);
/// ```
#[derive(Clone)]
pub struct Streams {
    pub(crate) inner: Arc<ExecInner>,
}

impl std::fmt::Debug for Streams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Streams").field("name", &self.inner.name).finish_non_exhaustive()
    }
}

/// Builds a [`Streams`] executive.
#[derive(Debug)]
pub struct StreamsBuilder {
    workers: usize,
    quirks: QueueQuirks,
    arena: Option<Arena>,
    name: String,
}

impl StreamsBuilder {
    /// Worker threads draining the run list (0, the default: deterministic, drained by
    /// [`Streams::run_until_idle`]).
    pub fn workers(mut self, n: usize) -> Self {
        self.workers = n;
        self
    }

    /// The queue-layer quirks (default [`QueueQuirks::LFS`]).
    pub fn quirks(mut self, q: QueueQuirks) -> Self {
        self.quirks = q;
        self
    }

    /// The arena worker threads enter (default: the arena current when `build` runs).
    pub fn arena(mut self, arena: &Arena) -> Self {
        self.arena = Some(arena.clone());
        self
    }

    /// A name for traces.
    pub fn name(mut self, name: &str) -> Self {
        self.name = name.to_string();
        self
    }

    /// Builds the executive and starts its workers.
    pub fn build(self) -> Streams {
        self.build_owned(0)
    }

    /// Builds an executive confined to the calling thread: see [`LocalStreams`](crate::LocalStreams).
    ///
    /// # Panics
    /// If worker threads were asked for ([`workers`](Self::workers) above 0): service
    /// procedures of a confined executive run on its thread
    /// ([`LocalStreams::run_until_idle`](crate::LocalStreams::run_until_idle), and `read_wait`/`write_wait`).
    pub fn build_local(self) -> crate::LocalStreams {
        assert!(
            self.workers == 0,
            "StreamsBuilder::build_local: a thread-confined executive has no worker threads ({} asked for)",
            self.workers
        );
        crate::LocalStreams::new(self.build_owned(crate::sync::thread_token()))
    }

    fn build_owned(self, owner: u64) -> Streams {
        let arena = self.arena.unwrap_or_else(current_arena);
        let runlist = Arc::new(RunList::new());
        let inner = Arc::new(ExecInner {
            runlist: Arc::clone(&runlist),
            quirks: self.quirks,
            registry: Mutex::new(Vec::new()),
            errors: Mutex::new(Vec::new()),
            workers: Mutex::new(Vec::new()),
            arena: arena.clone(),
            name: self.name.clone(),
            nworkers: self.workers,
            owner,
        });
        for i in 0..self.workers {
            let list = Arc::clone(&runlist);
            let arena = arena.clone();
            let h = std::thread::Builder::new()
                .name(format!("{}-srv{i}", self.name))
                .spawn(move || {
                    let _entered = arena.enter();
                    while let Some(item) = list.claim_spin_wait() {
                        run_claimed(&list, item);
                    }
                })
                .expect("streams: spawning a worker thread");
            inner.workers.lock().push(h);
        }
        Streams { inner }
    }
}

/// While alive, bare [`allocq`](crate::allocq) queues and [`runqueues`] on this thread use
/// the entered executive.
#[must_use = "the executive is left when the guard is dropped"]
#[derive(Debug)]
pub struct ExecGuard {
    _not_send: std::marker::PhantomData<*const ()>,
}

impl Drop for ExecGuard {
    fn drop(&mut self) {
        let _ = ENTERED.try_with(|e| e.borrow_mut().pop());
    }
}

impl Streams {
    /// A builder: deterministic, LfS quirks, the current arena.
    pub fn builder() -> StreamsBuilder {
        StreamsBuilder { workers: 0, quirks: QueueQuirks::LFS, arena: None, name: "streams".to_string() }
    }

    /// A deterministic executive with LfS quirks over the current arena.
    pub fn new() -> Streams {
        Streams::builder().build()
    }

    /// Makes this the current thread's executive until the guard drops.
    ///
    /// # Panics
    /// On another thread than a confined executive's ([`LocalStreams`](crate::LocalStreams)).
    #[track_caller]
    pub fn enter(&self) -> ExecGuard {
        self.inner.check_owner("Streams::enter");
        ENTERED.with(|e| e.borrow_mut().push(Arc::clone(&self.inner)));
        ExecGuard { _not_send: std::marker::PhantomData }
    }

    /// The arena the executive's worker threads enter.
    pub fn arena(&self) -> &Arena {
        &self.inner.arena
    }

    /// The queue-layer quirks.
    pub fn quirks(&self) -> &QueueQuirks {
        &self.inner.quirks
    }

    /// Runs service procedures on this thread until the run list is empty; with workers,
    /// also waits until they are idle.
    ///
    /// # Panics
    /// On another thread than a confined executive's ([`LocalStreams`](crate::LocalStreams)).
    #[track_caller]
    pub fn run_until_idle(&self) {
        self.inner.check_owner("Streams::run_until_idle");
        drain(&self.inner.runlist);
        self.inner.runlist.wait_idle();
    }

    /// Whether no queue is enabled and no service procedure runs.
    pub fn is_idle(&self) -> bool {
        self.inner.runlist.is_idle()
    }

    /// Removes and returns the reports of procedures that panicked
    /// ([`StreamsError::ProcPanicked`]).
    pub fn take_errors(&self) -> Vec<StreamsError> {
        std::mem::take(&mut *self.inner.errors.lock())
    }
}

impl Default for Streams {
    fn default() -> Self {
        Streams::new()
    }
}
