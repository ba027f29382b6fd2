//! The message environment of an arena: its combined-block cache, checking state, misuse
//! reports and bufcall list.
//!
//! Every arena that allocates messages gets one [`MsgEnv`], created lazily by the first
//! message call made while the arena is entered, and kept for the life of the process (as
//! LfS keeps its `DYN_MDBBLOCK` slab cache for the life of the module). Data blocks point at
//! their environment (`db_env`), so a message freed on a thread that entered another arena
//! still returns to its own cache and arena.
//!
//! The registry is keyed by [`Arena::id`] (the environment holds a clone of the arena, so the
//! identity is never reused while the key is in the registry). ddi-kmem has no per-arena
//! extension slot yet; with one, the environment could be dropped with its arena.

use crate::error::StreamsError;
use crate::sync::{AtomicBool, Mutex, Ordering};
use ddi_kmem::{Arena, KmemCache, Response, current_arena, current_arena_id, kmem_cache_create};
use std::cell::Cell;
use std::collections::HashSet;
use std::sync::OnceLock;

/// Per-arena STREAMS message state.
pub(crate) struct MsgEnv {
    pub(crate) arena: Arena,
    /// Combined blocks (`Mdb`): message block, data block and FASTBUF bytes of data.
    pub(crate) cache: KmemCache,
    pub(crate) checking: bool,
    response: Response,
    errors: Mutex<Vec<StreamsError>>,
    pub(crate) bufcalls: crate::bufcall::Bufcalls,
}

// SAFETY: every field is Send + Sync except through raw pointers in `Bufcalls`, which hold
// callback arguments that the bufcall contract makes the caller's to synchronise.
unsafe impl Sync for MsgEnv {}
// SAFETY: as above.
unsafe impl Send for MsgEnv {}

/// Set once any environment checks, so the free path of unchecked processes skips the
/// environment lookup.
static ANY_CHECKING: AtomicBool = AtomicBool::new(false);

/// (key, environment) of every arena that has allocated messages.
static REGISTRY: Mutex<Vec<(usize, &'static MsgEnv)>> = Mutex::new(Vec::new());

thread_local! {
    /// The last environment this thread looked up, with its key.
    static LAST: Cell<(usize, Option<&'static MsgEnv>)> = const { Cell::new((0, None)) };
}

fn key_of(arena: &Arena) -> usize {
    arena.id()
}

/// The environment of the current thread's arena, created if needed.
pub(crate) fn current() -> &'static MsgEnv {
    // The arena's identity costs one thread-local read; the handle (a reference count) is
    // taken only on the slow path.
    let key = current_arena_id();
    if let Ok((k, Some(env))) = LAST.try_with(Cell::get) {
        if k == key {
            return env;
        }
    }
    let env = lookup_or_create(current_arena(), key);
    let _ = LAST.try_with(|c| c.set((key, Some(env))));
    env
}

/// The environment of `arena`, if it has allocated messages.
pub(crate) fn of(arena: &Arena) -> Option<&'static MsgEnv> {
    let key = key_of(arena);
    REGISTRY.lock().iter().find(|(k, _)| *k == key).map(|(_, e)| *e)
}

/// The current environment if any environment checks, else `None` (the fast path).
#[inline]
pub(crate) fn checking() -> Option<&'static MsgEnv> {
    if !ANY_CHECKING.load(Ordering::Relaxed) {
        return None;
    }
    let env = current();
    env.checking.then_some(env)
}

#[cold]
fn lookup_or_create(arena: Arena, key: usize) -> &'static MsgEnv {
    let mut reg = REGISTRY.lock();
    if let Some((_, e)) = reg.iter().find(|(k, _)| *k == key) {
        return e;
    }
    // The arena is entered: kmem_cache_create makes the cache in it.
    let cache = arena.run(|| {
        kmem_cache_create(
            "streams_mdbblock",
            crate::alloc::MDB_SIZE,
            crate::alloc::MDB_ALIGN,
            None,
            None,
            None,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            0,
        )
    });
    let checking = arena.checking().any();
    if checking {
        ANY_CHECKING.store(true, Ordering::Relaxed);
    }
    tracing::debug!(arena = arena.name(), checking, "streams: message environment created");
    let env: &'static MsgEnv = Box::leak(Box::new(MsgEnv {
        response: arena.response(),
        arena,
        cache,
        checking,
        errors: Mutex::new(Vec::new()),
        bufcalls: crate::bufcall::Bufcalls::new(),
    }));
    reg.push((key, env));
    env
}

impl MsgEnv {
    /// Reports a misuse: trace it, then panic or keep the report.
    #[cold]
    #[track_caller]
    pub(crate) fn misuse(&self, e: StreamsError) {
        tracing::error!(arena = self.arena.name(), "STREAMS: {e}");
        match self.response {
            Response::Panic => panic!("STREAMS: {e}"),
            Response::Report => self.errors.lock().push(e),
        }
    }

    /// With checking: records a new message block.
    pub(crate) fn born(&self, mp: *const crate::Mblk) {
        if self.checking {
            live().lock().insert(mp.addr());
        }
    }
}

/// The addresses of the message blocks allocated in checking arenas. One set for the
/// process, so a message may be freed on any thread, whichever arena it has entered.
fn live() -> &'static Mutex<HashSet<usize>> {
    static LIVE: OnceLock<Mutex<HashSet<usize>>> = OnceLock::new();
    LIVE.get_or_init(|| Mutex::new(HashSet::new()))
}

/// Validates `mp` for a raw call when the current arena checks: false (reported) if it is
/// not an allocated message block.
#[inline]
#[track_caller]
pub(crate) fn check_live(call: &'static str, mp: *const crate::Mblk) -> bool {
    let Some(env) = checking() else { return true };
    if live().lock().contains(&mp.addr()) {
        return true;
    }
    env.misuse(StreamsError::NotAllocated { call, addr: mp.addr() });
    false
}

/// Forgets a message block being freed (when any arena checks).
#[inline]
pub(crate) fn forget(mp: *const crate::Mblk) {
    if ANY_CHECKING.load(Ordering::Relaxed) {
        live().lock().remove(&mp.addr());
    }
}

/// Removes and returns the STREAMS misuse reports `arena` has kept (with
/// [`Response::Report`]).
///
/// # Examples
/// ```
/// use ddi_kmem::{Arena, Checking, Response};
/// use streams_core::{allocb, freeb, take_errors, BPRI_MED};
///
/// let arena = Arena::builder().checking(Checking::FULL).response(Response::Report).build();
/// arena.run(|| {
///     let mp = allocb(16, BPRI_MED);
///     // SAFETY: allocated above; the second free is the misuse under test, which a
///     // checking arena refuses.
///     unsafe { freeb(mp) };
///     // SAFETY: as above.
///     unsafe { freeb(mp) };
/// });
/// assert_eq!(take_errors(&arena).len(), 1);
/// ```
pub fn take_errors(arena: &Arena) -> Vec<StreamsError> {
    of(arena).map(|e| std::mem::take(&mut *e.errors.lock())).unwrap_or_default()
}
