//! The message environment of an arena: its combined-block cache, checking state, misuse
//! reports and bufcall list.
//!
//! Every arena that allocates messages gets one [`MsgEnv`], created lazily by the first
//! message call made while the arena is entered. Data blocks point at their environment
//! (`db_env`), so a message freed on a thread that entered another arena still returns to its
//! own cache and arena.
//!
//! # Lifetime
//!
//! The environment holds [dependent](Arena::dependent) handles to its arena (its own, and the
//! cache's), so it does not keep the arena open. When the arena closes (its last ordinary
//! handle is dropped; threads that have entered it hold one), the close hook
//! registered at creation runs:
//!
//! - if no combined block of the environment is in use (no message, no data block exists),
//!   the cache is destroyed and both handles are dropped, so the arena itself is freed; the
//!   environment's few bytes of header (its bufcall list and report list) go to a pool and
//!   serve the next arena that allocates messages;
//! - otherwise the messages still out are reported (they were leaked by the program) and the
//!   environment, with its arena, is kept for the life of the process, so those messages stay
//!   valid and can still be freed.
//!
//! Why a message freed on another thread while the arena closes is safe: the close hook
//! destroys the cache only after it has read every combined block back. A `kmem_cache_free`
//! becomes visible to the cache's in-use count (a round in the thread's magazine, or a return
//! to the slab layer) as its last access to the cache and the arena, with a Release store,
//! and the count is read with Acquire; so a free that the close sees is over, as far as the
//! cache is concerned, before the cache is destroyed. A count read while a free is under way
//! can only err towards "in use" (ddi-kmem `MagSlot::rounds`), which keeps the environment. After its last `kmem_cache_free` the freeing
//! thread touches only the bufcall list, which stays valid because the environment's memory is
//! never freed (it is pooled). Such a thread may at worst run the bufcalls of the next arena to
//! reuse the environment, early: a bufcall callback may always run when its `allocb` would
//! still fail, and retries. A free that the close does not see means a block still in use:
//! the environment and its arena are kept.
//!
//! The registry is keyed by [`Arena::id`], which is never reused in a process, so a stale
//! per-thread cache entry never matches another arena.

use crate::dblk::DbClass;
use crate::error::StreamsError;
use crate::sync::{AtomicBool, Mutex, Ordering};
use ddi_kmem::{
    Arena, KmemCache, Response, ThreadSlot, current_arena, current_arena_id, kmem_cache_create, kmem_cache_thread_slot,
    kmem_thread_token,
};
use std::cell::{Cell, UnsafeCell};
use std::collections::HashSet;
use std::mem::MaybeUninit;
use std::ptr::NonNull;
use std::sync::OnceLock;

/// The part of an environment that belongs to one arena.
pub(crate) struct Live {
    pub(crate) arena: Arena,
    /// Combined blocks (`Mdb`): message block, data block and FASTBUF bytes of data.
    pub(crate) cache: KmemCache,
    /// Large combined blocks: message block, data block and `256 << i` bytes of data, for
    /// the classes whose data size is the arena's `kmem_alloc` extent of every size they
    /// serve (see [`crate::alloc::COMBINED_MAX`]); `None` for the others.
    pub(crate) big: [Option<KmemCache>; crate::alloc::BIG_CLASSES],
    pub(crate) checking: bool,
    /// The arena's `kmem_alloc` classes are the powers of two up to [`EXTENT_CACHED`].
    pow2_classes: bool,
    response: Response,
}

/// Per-arena STREAMS message state.
pub(crate) struct MsgEnv {
    /// Initialised while the environment serves an arena: written only when it is taken from
    /// the pool (before it is published) and dropped only by the close hook, when no block of
    /// the environment is in use and no thread has the arena entered.
    live: UnsafeCell<MaybeUninit<Live>>,
    errors: Mutex<Vec<StreamsError>>,
    pub(crate) bufcalls: crate::bufcall::Bufcalls,
}

// SAFETY: `live` is written only while no other thread can reach the environment (see the
// field); everything else is Send + Sync except through raw pointers in `Bufcalls`, which
// hold callback arguments that the bufcall contract makes the caller's to synchronise.
unsafe impl Sync for MsgEnv {}
// SAFETY: as above.
unsafe impl Send for MsgEnv {}

impl std::ops::Deref for MsgEnv {
    type Target = Live;

    #[inline]
    fn deref(&self) -> &Live {
        // SAFETY: a caller reaches an environment through the registry or the thread's cache
        // while its arena is entered (open), or through a block of it that is in use: in
        // both cases the close hook has not run, so `live` is initialised and not written.
        let live = unsafe { &*self.live.get() };
        // SAFETY: as above, initialised.
        unsafe { live.assume_init_ref() }
    }
}

/// Set once any environment checks, so the free path of unchecked processes skips the
/// environment lookup.
static ANY_CHECKING: AtomicBool = AtomicBool::new(false);

/// A pointer to a leaked environment (they are never freed).
#[derive(Clone, Copy)]
struct EnvPtr(&'static MsgEnv);

/// (arena id, environment) of every open arena that has allocated messages.
static REGISTRY: Mutex<Vec<(usize, EnvPtr)>> = Mutex::new(Vec::new());

/// Environments whose arena closed cleanly, ready for another arena.
static POOL: Mutex<Vec<EnvPtr>> = Mutex::new(Vec::new());

/// Environments kept because their arena closed with messages outstanding.
static KEPT: Mutex<Vec<EnvPtr>> = Mutex::new(Vec::new());

/// The thread's last environment, and its slots of the environment's caches.
///
/// `key`/`env`: the last environment this thread looked up, with its arena's id (0: none).
/// The pointer is dereferenced only while the id matches the thread's current arena.
///
/// `slots`/`token`: the thread's ddi-kmem magazine slot ([`ThreadSlot`]) of each of `env`'s
/// caches, by the [`DbClass`] of the blocks it holds ([`ThreadSlot::empty`] for the classes
/// without a cache, and for every class when the environment checks), taken when
/// ddi-kmem's thread token ([`kmem_thread_token`]) was `token` (0: never). While the token is
/// unchanged the slots are current and the thread has not entered or left an arena since,
/// so `env` is still its current arena's: open, its caches alive. `allocb` and `freeb` then
/// go from this block straight to a magazine, with one comparison instead of the
/// environment's arena-id test and, per cache, ddi-kmem's lookup of the thread's slot.
///
/// No destructor (raw pointers and integers only), so reaching it is a plain thread-local
/// load, as for ddi-kmem's block.
pub(crate) struct Last {
    key: Cell<usize>,
    env: Cell<*const MsgEnv>,
    token: Cell<u64>,
    slots: [Cell<NonNull<ThreadSlot>>; 8],
    /// The large combined class the thread last allocated or freed through a path that
    /// did not have it as the hint ([`NO_CLASS`] for none since the slots were taken), and
    /// its slot: `allocb` compares the class it computed from the size with it, the free
    /// path a block's class, and when equal they take this slot, whose address depends
    /// neither on that computation nor on a load from the block.
    big_hint: Cell<u8>,
    big_hint_slot: Cell<NonNull<ThreadSlot>>,
}

/// [`Last::big_hint`] when there is none: no class has this number.
const NO_CLASS: u8 = 0xff;

const _: () = assert!(!std::mem::needs_drop::<Last>());

/// [`ThreadSlot::empty`] as stored in [`Last`].
// SAFETY: the address of a static is not null.
const NO_SLOT: NonNull<ThreadSlot> =
    unsafe { NonNull::new_unchecked(std::ptr::from_ref(ThreadSlot::empty()).cast_mut()) };

thread_local! {
    static LAST: Last = const {
        Last {
            key: Cell::new(0),
            env: Cell::new(std::ptr::null()),
            token: Cell::new(0),
            slots: [const { Cell::new(NO_SLOT) }; 8],
            big_hint: Cell::new(NO_CLASS),
            big_hint_slot: Cell::new(NO_SLOT),
        }
    };
}

/// The calling thread's [`Last`].
///
/// # Safety
/// The reference is used only during the current call on this thread (not stored, not kept
/// across a point where the thread could exit).
#[inline(always)]
pub(crate) unsafe fn last_state<'a>() -> &'a Last {
    let p = LAST.with(std::ptr::from_ref);
    // SAFETY: `p` is this thread's own `LAST`, which has no destructor and lives as long as
    // the thread; the caller uses the reference only within the current call (the contract).
    unsafe { &*p }
}

impl Last {
    /// The thread's slot for blocks of `class` of [`Last::env`], if the slots are current
    /// (see [`Last`]); the caller pops or pushes it on this thread within its current call.
    #[inline(always)]
    pub(crate) fn slot(&self, class: DbClass) -> Option<&ThreadSlot> {
        self.slot_at(class as usize)
    }

    /// [`Last::slot`] by the class's number (`DbClass as usize`).
    #[inline(always)]
    pub(crate) fn slot_at(&self, class: usize) -> Option<&ThreadSlot> {
        // (`then`, not `Some(&*ptr)` after a test: the reference is then known not null, and
        // the caller's `if let` is the token test alone.)
        self.is_current().then(|| {
            // SAFETY: the token is unchanged since the slots were taken (`refresh`), so each
            // is the thread's live slot of its cache or the static empty one (ddi-kmem's
            // contract of `kmem_cache_thread_slot`); used within the caller's call.
            unsafe { self.slots[class & 7].get().as_ref() }
        })
    }

    /// The thread's slot for a large combined block of class `class` of [`Last::env`], when
    /// that class is the hinted one ([`Last::hint_big`]) and the slots are current.
    ///
    /// A block's class is known only from a load from the block, an allocation's from the
    /// size (a `bsr`); selecting the slot by it (an indexed load, or a `match` the compiler
    /// turns into one) would make the push wait for that load, and the block's address for
    /// the pop that produced it, or the pop wait for the size's arithmetic, on every
    /// message (measured: `allocb(1024)` + `freeb` about 4.7 ns with the indexed pop, 3.7 to
    /// 4.3 with this one). Here the class is only compared, and the branch predicted: the
    /// slot comes from the thread-local block alone.
    #[inline(always)]
    pub(crate) fn hinted_big_slot(&self, class: DbClass) -> Option<&ThreadSlot> {
        self.hinted_big_slot_at(class as usize)
    }

    /// [`Last::hinted_big_slot`] by the class's number (`DbClass as usize`).
    #[inline(always)]
    pub(crate) fn hinted_big_slot_at(&self, class: usize) -> Option<&ThreadSlot> {
        (class == usize::from(self.big_hint.get()) && self.is_current()).then(|| {
            // SAFETY: `big_hint_slot` is `slots[big_hint]` (set together in `hint_big`, reset
            // in `refresh`), current while the token is (as in `slot_at`).
            unsafe { self.big_hint_slot.get().as_ref() }
        })
    }

    /// Records `class`, a large combined class, as the hinted one (see
    /// [`Last::hinted_big_slot`]); only while the slots are current.
    #[inline]
    pub(crate) fn hint_big(&self, class: DbClass) {
        self.hint_big_at(class as usize);
    }

    /// [`Last::hint_big`] by the class's number (`DbClass as usize`, a large class).
    #[inline]
    pub(crate) fn hint_big_at(&self, class: usize) {
        if self.is_current() {
            self.big_hint.set((class & 7) as u8);
            self.big_hint_slot.set(self.slots[class & 7].get());
        }
    }

    /// Whether the slots are current (see [`Last`]).
    #[inline(always)]
    pub(crate) fn is_current(&self) -> bool {
        self.token.get() == kmem_thread_token()
    }

    /// The environment the slots belong to (when [`Last::slot`] answers), or an environment
    /// that may not be the current arena's any more, or null. Only compared.
    #[inline(always)]
    pub(crate) fn env(&self) -> *const MsgEnv {
        self.env.get()
    }
}

/// Takes the thread's slots of the current environment's caches into [`Last`], so that the
/// next `allocb`/`freeb` finds them current; called when [`Last::slot`] finds them stale.
#[cold]
#[inline(never)]
pub(crate) fn refresh() {
    // The environment first: creating it enters its arena (to make the caches), which
    // changes the token.
    let env = current();
    let token = kmem_thread_token();
    let mut slots = [NO_SLOT; 8];
    // A checking environment's caches have no per-thread fast path anyway; the test keeps
    // the fast paths from skipping its hooks (`born`) whatever ddi-kmem answers.
    if !env.checking {
        slots[DbClass::Fast as usize] = kmem_cache_thread_slot(&env.cache);
        for (i, c) in env.big.iter().enumerate() {
            if let Some(c) = c {
                slots[DbClass::BIG[i] as usize] = kmem_cache_thread_slot(c);
            }
        }
    }
    if kmem_thread_token() != token {
        // A slot went while the others were taken (re-entrant code): try again next time.
        return;
    }
    // SAFETY: used within this call.
    let l = unsafe { last_state() };
    l.key.set(current_arena_id());
    l.env.set(std::ptr::from_ref(env));
    for (c, s) in l.slots.iter().zip(slots) {
        c.set(s);
    }
    l.big_hint.set(NO_CLASS);
    l.big_hint_slot.set(NO_SLOT);
    l.token.set(token);
}

/// The environment of the current thread's arena, created if needed.
#[inline]
pub(crate) fn current() -> &'static MsgEnv {
    // The arena's identity costs one thread-local read; the handle (a reference count) is
    // taken only on the slow path.
    let key = current_arena_id();
    // SAFETY: used within this call.
    let l = unsafe { last_state() };
    if l.key.get() == key {
        // SAFETY: set below from a `&'static MsgEnv` (environments are never freed), for the
        // arena with this id, which is entered, hence open: the environment serves it.
        return unsafe { &*l.env.get() };
    }
    current_slow(key)
}

/// [`current`] when the thread's last environment is not the current arena's.
#[cold]
#[inline(never)]
fn current_slow(key: usize) -> &'static MsgEnv {
    let env = lookup_or_create(current_arena(), key);
    // SAFETY: used within this call.
    let l = unsafe { last_state() };
    // The slots were another environment's: stale until `refresh` (the token has changed
    // already, as the arena has; this keeps `Last` consistent on its own).
    l.token.set(0);
    l.key.set(key);
    l.env.set(std::ptr::from_ref(env));
    env
}

impl Live {
    /// `kmem_alloc` in the environment's arena: through the thread's fast path when that arena
    /// is the current one (the usual case), else through the arena handle.
    #[inline]
    #[track_caller]
    pub(crate) fn kmem_alloc(&self, size: usize, flags: ddi_kmem::KmFlags) -> *mut u8 {
        if current_arena_id() == self.arena.id() {
            ddi_kmem::kmem_alloc(size, flags).cast()
        } else {
            self.arena.alloc(size, flags)
        }
    }

    /// `kmem_free` in the environment's arena, as [`Live::kmem_alloc`].
    ///
    /// # Safety
    /// `buf` came from [`Live::kmem_alloc`] of this environment (or `kmem_alloc` while its
    /// arena was the current one) with `size`, and is freed once.
    #[inline(always)]
    #[track_caller]
    pub(crate) unsafe fn kmem_free(&self, buf: *mut u8, size: usize) {
        if current_arena_id() == self.arena.id() {
            // SAFETY: from this arena (the current one) with `size` (caller).
            unsafe { ddi_kmem::kmem_free(buf.cast(), size) }
        } else {
            // SAFETY: as above, through the arena's handle.
            unsafe { self.arena.free(buf, size) }
        }
    }
}

impl Live {
    /// [`Arena::extent`] for `allocb`'s separate buffers (`size > FASTBUF`): the next power
    /// of two for sizes up to [`EXTENT_CACHED`] when the arena's classes are the powers of
    /// two there (checked once, when the environment is created: the native arenas); others
    /// ask the arena.
    #[inline]
    pub(crate) fn extent(&self, size: usize) -> Option<usize> {
        if size > crate::alloc::FASTBUF && size <= EXTENT_CACHED && self.pow2_classes {
            Some(size.next_power_of_two())
        } else {
            self.arena.extent(size)
        }
    }
}

/// The largest size [`Live::extent`] answers without asking the arena.
const EXTENT_CACHED: usize = 4096;

/// Whether every size in `FASTBUF + 1..=EXTENT_CACHED` has its next power of two as
/// `arena`'s extent: checked at each power of two and the size after the one before
/// (extents are monotonic in the size).
fn pow2_classes(arena: &Arena) -> bool {
    let mut p = 2 * crate::alloc::FASTBUF;
    while p <= EXTENT_CACHED {
        if arena.extent(p) != Some(p) || arena.extent(p / 2 + 1) != Some(p) {
            return false;
        }
        p *= 2;
    }
    true
}

impl Live {
    /// The cache a combined block whose data block has class `class` returns to.
    #[inline]
    pub(crate) fn block_cache(&self, class: crate::dblk::DbClass) -> &KmemCache {
        match class.big_index() {
            Some(i) => self.big_cache(i),
            None => &self.cache,
        }
    }

    /// The cache of large combined class `i`, which exists whenever a block of that class
    /// does (the block was taken from it).
    #[inline]
    pub(crate) fn big_cache(&self, i: usize) -> &KmemCache {
        self.big[i].as_ref().expect("streams: a big combined block without its cache")
    }
}

/// Whether any environment checks: when not, the fast paths skip every checking hook.
#[inline(always)]
pub(crate) fn any_checking() -> bool {
    ANY_CHECKING.load(Ordering::Relaxed)
}

/// The environment of `arena`, if it has allocated messages.
pub(crate) fn of(arena: &Arena) -> Option<&'static MsgEnv> {
    let key = arena.id();
    REGISTRY.lock().iter().find(|(k, _)| *k == key).map(|(_, e)| e.0)
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
        return e.0;
    }
    let arena = arena.dependent();
    // The environment first (its `live` not yet written): the cache's constructor records it
    // in every combined block.
    let env: &'static MsgEnv = match POOL.lock().pop() {
        Some(EnvPtr(env)) => env,
        None => Box::leak(Box::new(MsgEnv {
            live: UnsafeCell::new(MaybeUninit::uninit()),
            errors: Mutex::new(Vec::new()),
            bufcalls: crate::bufcall::Bufcalls::new(),
        })),
    };
    // The arena is entered: kmem_cache_create makes the cache in it.
    let cache = arena.run(|| {
        kmem_cache_create(
            "streams_mdbblock",
            crate::alloc::MDB_SIZE,
            crate::alloc::MDB_ALIGN,
            Some(crate::alloc::mdb_constructor),
            None,
            None,
            std::ptr::from_ref(env).cast_mut().cast(),
            std::ptr::null_mut(),
            0,
        )
    });
    const BIG_CTORS: [ddi_kmem::KmemConstructor; crate::alloc::BIG_CLASSES] = [
        crate::alloc::big_constructor::<0>,
        crate::alloc::big_constructor::<1>,
        crate::alloc::big_constructor::<2>,
        crate::alloc::big_constructor::<3>,
    ];
    let big = std::array::from_fn(|i| {
        let data = crate::alloc::big_data_size(i);
        // A class serves the sizes data/2+1..=data: only when kmem_alloc would give every one
        // of them exactly `data` bytes (extent is monotonic), so db_lim is what it would be
        // with a separate buffer.
        let fits = arena.extent(data / 2 + 1) == Some(data) && arena.extent(data) == Some(data);
        fits.then(|| {
            arena.run(|| {
                kmem_cache_create(
                    crate::alloc::BIG_CACHE_NAMES[i],
                    crate::alloc::HEADER_SIZE + data,
                    crate::alloc::MDB_ALIGN,
                    Some(BIG_CTORS[i]),
                    None,
                    None,
                    std::ptr::from_ref(env).cast_mut().cast(),
                    std::ptr::null_mut(),
                    0,
                )
            })
        })
    });
    let checking = arena.checking().any();
    if checking {
        ANY_CHECKING.store(true, Ordering::Relaxed);
    }
    tracing::debug!(arena = arena.name(), checking, "streams: message environment created");
    let live = Live {
        response: arena.response(),
        arena: arena.clone(),
        cache,
        big,
        checking,
        pow2_classes: pow2_classes(&arena),
    };
    // SAFETY: a pooled or new environment serves no arena: its `live` is not initialised (the
    // close hook dropped it), no block of it is in use, and no thread can reach it until it
    // is published below.
    unsafe { (*env.live.get()).write(live) };
    if arena.on_close(move |_| close(key, env)) {
        reg.push((key, EnvPtr(env)));
    } else {
        // Only a dependent handle reaches a closed arena; what it allocates keeps the
        // environment for the life of the process.
        KEPT.lock().push(EnvPtr(env));
    }
    env
}

/// How many message environments exist, by state ([`message_environments`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EnvCounts {
    /// Serving an open arena.
    pub open: usize,
    /// Released by a closed arena, waiting to serve another.
    pub pooled: usize,
    /// Kept with their arena because it closed with messages still in use.
    pub kept: usize,
}

/// The message environments of the process (one per arena that has allocated messages; see
/// the crate documentation, "Environments"), for leak checks.
pub fn message_environments() -> EnvCounts {
    EnvCounts { open: REGISTRY.lock().len(), pooled: POOL.lock().len(), kept: KEPT.lock().len() }
}

/// The close hook of an environment's arena.
fn close(key: usize, env: &'static MsgEnv) {
    REGISTRY.lock().retain(|(k, _)| *k != key);
    let in_use =
        env.cache.stats().buffers_in_use + env.big.iter().flatten().map(|c| c.stats().buffers_in_use).sum::<usize>();
    if in_use > 0 {
        let name = env.arena.name().to_owned();
        tracing::error!(arena = %name, blocks = in_use, "STREAMS: arena closed with message blocks in use");
        eprintln!(
            "STREAMS: arena '{name}' closed with {in_use} message or data blocks still in use; they and the arena are kept, not freed"
        );
        KEPT.lock().push(EnvPtr(env));
        return;
    }
    let dropped = env.bufcalls.clear();
    if dropped > 0 {
        tracing::warn!(
            arena = env.arena.name(),
            dropped,
            "STREAMS: arena closed with bufcalls waiting; they will not run"
        );
    }
    env.errors.lock().clear();
    // SAFETY: no block of the environment is in use and the arena is closed (no thread has
    // it entered), so nothing reaches `live` until the environment is taken from the pool.
    let live = unsafe { &mut *env.live.get() };
    // SAFETY: initialised (the environment served the arena until now) and dropped once:
    // the next write is by `lookup_or_create`, which takes it from the pool.
    unsafe { live.assume_init_drop() };
    POOL.lock().push(EnvPtr(env));
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
    #[inline(always)]
    pub(crate) fn born(&self, mp: *const crate::Mblk) {
        if self.checking {
            born_slow(mp);
        }
    }
}

#[cold]
fn born_slow(mp: *const crate::Mblk) {
    live().lock().insert(mp.addr());
}

/// The addresses of the message blocks allocated in checking arenas. One set for the
/// process, so a message may be freed on any thread, whichever arena it has entered.
fn live() -> &'static Mutex<HashSet<usize>> {
    static LIVE: OnceLock<Mutex<HashSet<usize>>> = OnceLock::new();
    LIVE.get_or_init(|| Mutex::new(HashSet::new()))
}

/// With checking: fingerprints of the data blocks that are shared (`db_ref > 1`), taken
/// when they became shared, by data block address. One table for the process, as `live`.
fn shared() -> &'static Mutex<std::collections::HashMap<usize, u64>> {
    static SHARED: OnceLock<Mutex<std::collections::HashMap<usize, u64>>> = OnceLock::new();
    SHARED.get_or_init(|| Mutex::new(std::collections::HashMap::new()))
}

/// FNV-1a over the data block's whole buffer, `db_base..db_lim`.
fn fingerprint(d: &crate::Dblk) -> u64 {
    let len = d.db_lim.addr().saturating_sub(d.db_base.addr());
    if d.db_base.is_null() || len == 0 {
        return 0;
    }
    // SAFETY: a live data block's buffer is `db_base..db_lim`, initialised (allocb hands it
    // out from kmem memory, which is initialised; esballoc's caller provides it) and alive
    // while the block is referenced, which the caller's message block does.
    let bytes = unsafe { std::slice::from_raw_parts(d.db_base, len) };
    bytes.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

/// With checking, after `dupb` raised `d`'s reference count to `db_ref`: fingerprints a data
/// block that has just become shared, or checks one that already was.
#[inline(always)]
#[track_caller]
pub(crate) fn shared_dup(call: &'static str, d: &crate::Dblk, db_ref: u32) {
    if ANY_CHECKING.load(Ordering::Relaxed) {
        shared_dup_slow(call, d, db_ref);
    }
}

#[cold]
#[track_caller]
fn shared_dup_slow(call: &'static str, d: &crate::Dblk, db_ref: u32) {
    let Some(env) = checking() else { return };
    let fp = fingerprint(d);
    let mut t = shared().lock();
    match t.get(&std::ptr::from_ref(d).addr()) {
        Some(&old) if db_ref > 2 && old != fp => {
            t.insert(std::ptr::from_ref(d).addr(), fp);
            drop(t);
            env.misuse(StreamsError::WrittenWhileShared {
                call,
                addr: std::ptr::from_ref(d).addr(),
                db_ref: db_ref - 1,
            });
        }
        _ => {
            t.insert(std::ptr::from_ref(d).addr(), fp);
        }
    }
}

/// With checking, before a free lowers `d`'s reference count from `db_ref`: checks that a
/// shared data block was not written while shared, and forgets it when it stops being
/// shared.
#[inline(always)]
#[track_caller]
pub(crate) fn shared_release(call: &'static str, d: &crate::Dblk, db_ref: u32) {
    if ANY_CHECKING.load(Ordering::Relaxed) {
        shared_release_slow(call, d, db_ref);
    }
}

#[cold]
#[track_caller]
fn shared_release_slow(call: &'static str, d: &crate::Dblk, db_ref: u32) {
    let Some(env) = checking() else { return };
    let key = std::ptr::from_ref(d).addr();
    let mut t = shared().lock();
    let Some(&old) = t.get(&key) else { return };
    let fp = fingerprint(d);
    if db_ref <= 2 {
        t.remove(&key);
    } else {
        t.insert(key, fp);
    }
    drop(t);
    if old != fp {
        env.misuse(StreamsError::WrittenWhileShared { call, addr: key, db_ref });
    }
}

/// Forgets a data block whose last reference is gone (when any arena checks).
#[inline(always)]
pub(crate) fn shared_forget(d: &crate::Dblk) {
    if ANY_CHECKING.load(Ordering::Relaxed) {
        shared_forget_slow(d);
    }
}

#[cold]
fn shared_forget_slow(d: &crate::Dblk) {
    shared().lock().remove(&std::ptr::from_ref(d).addr());
}

/// Validates `mp` for a raw call when the current arena checks: false (reported) if it is
/// not an allocated message block.
#[inline(always)]
#[track_caller]
pub(crate) fn check_live(call: &'static str, mp: *const crate::Mblk) -> bool {
    !ANY_CHECKING.load(Ordering::Relaxed) || check_live_slow(call, mp)
}

#[cold]
#[track_caller]
fn check_live_slow(call: &'static str, mp: *const crate::Mblk) -> bool {
    let Some(env) = checking() else { return true };
    if live().lock().contains(&mp.addr()) {
        return true;
    }
    env.misuse(StreamsError::NotAllocated { call, addr: mp.addr() });
    false
}

/// Forgets a message block being freed (when any arena checks).
#[inline(always)]
pub(crate) fn forget(mp: *const crate::Mblk) {
    if ANY_CHECKING.load(Ordering::Relaxed) {
        forget_slow(mp);
    }
}

#[cold]
fn forget_slow(mp: *const crate::Mblk) {
    live().lock().remove(&mp.addr());
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
