//! The combined block, the `allocb` family, `dupb`, and the free path (`freeb`, `freemsg`).

use crate::dblk::{DB_REF_MAX, DbClass, Dblk, Frtn, M_DATA, RefCount};
use crate::env::{self, MsgEnv};
use crate::error::StreamsError;
use crate::mblk::Mblk;
use ddi_kmem::{KM_NOSLEEP, KM_SLEEP, KmFlags, kmem_cache_alloc, kmem_cache_free};
use std::ffi::c_void;
use std::mem::{offset_of, size_of};
use std::ptr::NonNull;

/// Bytes of data a small message keeps inside its combined block: `allocb(size)` with
/// `size <= FASTBUF` takes one cache object and no separate buffer.
///
/// 128 is LfS's figure on 64-bit (`FASTBUF` in `strsubr.h`: the mdbblock is
/// `32 * sizeof(ulong)` = 256 bytes, leaving 128 for data after a 128-byte header), which the
/// OpenSS7 pipe paper confirms. Here the header is exactly 128 bytes too: a 64-byte [`Mblk`]
/// and a 64-byte [`Dblk`], so the combined block is 256 bytes and the data buffer starts on
/// a cache line.
pub const FASTBUF: usize = 128;

/// Priority: low (accepted and ignored natively).
pub const BPRI_LO: u32 = 1;
/// Priority: medium (accepted and ignored natively).
pub const BPRI_MED: u32 = 2;
/// Priority: high (accepted and ignored natively).
pub const BPRI_HI: u32 = 3;
/// Priority: fault tolerant (Solaris; accepted and ignored).
pub const BPRI_FT: u32 = 4;
/// Priority: the caller may sleep (OSF/1, HP-UX, LfS): the allocation uses `KM_SLEEP`.
pub const BPRI_WAITOK: u32 = 255;

/// The combined block (LfS `mdbblock`): a message block, a data block, and the data buffer
/// of a small message.
///
/// Ownership: the block has two halves, the message block and the data block. `allocb`
/// uses both (`db_halves` = 2); `dupb` takes a block for its message block only and leaves
/// the data block half unused (`db_halves` = 1); `pullupmsg` takes one for its data block
/// only (`db_halves` = 1). The block returns to its cache when its last live half is
/// released: the message block by `freeb`, the data block at its last reference. When one
/// `freeb` releases both halves of the same block at once (the common, never-duplicated
/// case) the block is freed without touching `db_halves`.
#[repr(C, align(64))]
pub(crate) struct Mdb {
    mblk: Mblk,
    dblk: Dblk,
    buf: [u8; FASTBUF],
}

pub(crate) const MDB_SIZE: usize = size_of::<Mdb>();
pub(crate) const MDB_ALIGN: usize = 64;
/// The message block and data block at the start of every combined block; the data
/// buffer follows.
pub(crate) const HEADER_SIZE: usize = offset_of!(Mdb, buf);

/// The largest `allocb` size served by a large combined block (header and buffer in one
/// cache object, as illumos's `streams_dblk_N` caches), when the arena's `kmem_alloc`
/// classes are the powers of two 256 to 2048 (the native arenas; see
/// `env::lookup_or_create`). Larger sizes, and sizes in an arena whose classes differ,
/// take a separate `kmem_alloc` buffer.
///
/// Why 2048: it covers an Ethernet frame (1514 bytes), the most common large message, with
/// four caches per arena. Each cache keeps at most two magazines of buffers idle per
/// thread (ddi-kmem: at most 32 KiB each), so the classes cost at most 256 KiB of idle
/// memory per thread and arena that allocates large messages. Per message, a combined block
/// of class `D` is `128 + D` bytes (header and buffer), less than the separate layout's
/// 256-byte small block plus a `D`-byte buffer.
pub(crate) const COMBINED_MAX: usize = 2048;
/// How many large combined classes: 256, 512, 1024 and 2048 bytes of data.
pub(crate) const BIG_CLASSES: usize = 4;
/// Cache names of the large combined classes.
pub(crate) const BIG_CACHE_NAMES: [&str; BIG_CLASSES] =
    ["streams_mdbblock_256", "streams_mdbblock_512", "streams_mdbblock_1024", "streams_mdbblock_2048"];

/// The bytes of data of large combined class `i`.
#[inline]
pub(crate) const fn big_data_size(i: usize) -> usize {
    (FASTBUF * 2) << i
}

/// The large combined class serving `size` (`FASTBUF < size <= COMBINED_MAX`): the
/// smallest power of two at least `size`, as an index from 256.
#[inline]
fn big_index_of(size: usize) -> usize {
    // `| FASTBUF` (a no-op for these sizes) tells the compiler the operand is not zero: one
    // `bsr`, without the zero case's extra instructions.
    ((size - 1) | FASTBUF).ilog2() as usize - 7
}

const _: () = assert!(big_data_size(BIG_CLASSES - 1) == COMBINED_MAX);

// Layout assumptions (the header is 128 bytes: the issue's target). Under loom the atomics
// are loom's, whose size differs; the layout is not what loom models.
#[cfg(not(loom))]
const _: () = {
    assert!(size_of::<Mblk>() == 64);
    assert!(size_of::<Dblk>() == 64);
    assert!(size_of::<Mdb>() == 256);
    assert!(offset_of!(Mdb, mblk) == 0);
    assert!(offset_of!(Mdb, buf) == 128);
    assert!(std::mem::align_of::<Mdb>() == MDB_ALIGN);
};

/// The block a message block lives in (the message block is at offset 0).
#[inline]
pub(crate) fn mdb_of_mblk(mp: *mut Mblk) -> *mut Mdb {
    mp.cast()
}

/// The block a data block lives in.
#[inline]
pub(crate) fn mdb_of_dblk(d: *mut Dblk) -> *mut Mdb {
    d.wrapping_byte_sub(offset_of!(Mdb, dblk)).cast()
}

#[inline]
fn mblk_of(b: *mut Mdb) -> *mut Mblk {
    b.cast()
}

#[inline]
fn dblk_of(b: *mut Mdb) -> *mut Dblk {
    b.wrapping_byte_add(offset_of!(Mdb, dblk)).cast()
}

#[inline]
fn buf_of(b: *mut Mdb) -> *mut u8 {
    b.wrapping_byte_add(offset_of!(Mdb, buf)).cast()
}

/// Maps an `allocb` priority to kmem flags: `BPRI_WAITOK` may sleep, anything else may not.
/// Only the low byte counts (LfS passes `pri & 0xff` down).
#[inline]
pub(crate) fn pri_flags(pri: u32) -> KmFlags {
    if pri & 0xff == BPRI_WAITOK { KM_SLEEP } else { KM_NOSLEEP }
}

/// What a new data block holds.
pub(crate) struct DbInit {
    pub(crate) base: *mut u8,
    pub(crate) lim: *mut u8,
    pub(crate) class: DbClass,
    pub(crate) size: usize,
    pub(crate) frtn: Frtn,
    pub(crate) halves: u32,
}

/// A combined block from `env`'s cache, or `None`.
#[inline]
fn block_alloc(env: &MsgEnv, flags: KmFlags) -> Option<*mut Mdb> {
    let p = kmem_cache_alloc(&env.cache, flags).cast::<Mdb>();
    (!p.is_null()).then_some(p)
}

/// A small combined block from `env`'s cache without `KM_SLEEP`, or `None`: from the thread's
/// slot straight from [`env::Last`] when `env` is its environment and the slot is current
/// (as `allocb` takes it), else [`block_alloc`].
#[inline(always)]
fn small_block(env: &'static MsgEnv) -> Option<*mut Mdb> {
    // SAFETY: used within this call.
    let l = unsafe { env::last_state() };
    if std::ptr::eq(l.env(), env) {
        if let Some(slot) = l.slot(DbClass::Fast) {
            // SAFETY: a current slot of this thread (`Last::slot`), of `env.cache`.
            let b = unsafe { slot.alloc() }.cast::<Mdb>();
            if !b.is_null() {
                return Some(b);
            }
        }
    }
    block_alloc(env, KM_NOSLEEP)
}

/// Writes a data block into `b`; returns it.
///
/// # Safety
/// `b` is a block from `env`'s cache whose data block half is not in use.
#[inline]
unsafe fn init_dblk(b: *mut Mdb, env: &'static MsgEnv, init: DbInit) -> *mut Dblk {
    let d = dblk_of(b);
    let frtnp = if init.class == DbClass::External {
        d.wrapping_byte_add(offset_of!(Dblk, frtn)).cast::<Frtn>()
    } else {
        std::ptr::null_mut()
    };
    let dblk = Dblk {
        db_frtnp: frtnp,
        db_base: init.base,
        db_lim: init.lim,
        db_ref: RefCount::new(if init.class == DbClass::Unused { 0 } else { 1 }),
        db_type: M_DATA,
        db_class: init.class,
        db_flag: 0,
        db_size: u32::try_from(init.size).unwrap_or(u32::MAX),
        db_halves: RefCount::new(init.halves),
        frtn: init.frtn,
        db_env: env,
    };
    // SAFETY: `d` is the data block half of a cache object of MDB_SIZE bytes, aligned for
    // Dblk, not in use (caller), so writing a whole value over it is sound.
    unsafe { d.write(dblk) };
    d
}

/// Writes a fresh message block into `b` over `d`; returns it.
///
/// # Safety
/// `b` is a block whose message block half is not in use.
#[inline]
unsafe fn init_mblk(b: *mut Mdb, rptr: *mut u8, d: *mut Dblk) -> *mut Mblk {
    let m = mblk_of(b);
    // SAFETY: the message block half of a cache object, aligned, not in use (caller).
    unsafe { m.write(Mblk::new(rptr, d)) };
    m
}

const NO_FRTN: Frtn = Frtn { free_func: None, free_arg: std::ptr::null_mut() };

/// Allocates a whole message (both halves) over `init`'s buffer, in `env`.
pub(crate) fn new_message(env: &'static MsgEnv, flags: KmFlags, init: impl FnOnce(*mut u8) -> DbInit) -> *mut Mblk {
    let Some(b) = block_alloc(env, flags) else {
        return std::ptr::null_mut();
    };
    let init = init(buf_of(b));
    let base = init.base;
    // SAFETY: `b` was just allocated from env's cache.
    let d = unsafe { init_dblk(b, env, init) };
    // SAFETY: as above; its message block half is not in use.
    let mp = unsafe { init_mblk(b, base, d) };
    env.born(mp);
    mp
}

/// Writes a whole fresh message (both halves) into block `b`: an `M_DATA` message over
/// `base..lim` with `db_ref` 1, as `allocb` returns it; the two headers are written as two
/// whole values (a template copy).
///
/// # Safety
/// `b` is a block of `env`'s cache, no half of it in use; `base..lim` is the buffer `class`
/// implies (the block's own for `DbClass::Fast`).
#[inline(always)]
unsafe fn write_headers(
    b: *mut Mdb,
    env: &'static MsgEnv,
    base: *mut u8,
    lim: *mut u8,
    class: DbClass,
    size: usize,
) -> *mut Mblk {
    let d = dblk_of(b);
    let dblk = Dblk {
        db_frtnp: std::ptr::null_mut(),
        db_base: base,
        db_lim: lim,
        db_ref: RefCount::new(1),
        db_type: M_DATA,
        db_class: class,
        db_flag: 0,
        db_size: u32::try_from(size).unwrap_or(u32::MAX),
        db_halves: RefCount::new(2),
        frtn: NO_FRTN,
        db_env: env,
    };
    // SAFETY: the data block half of a fresh cache object of at least MDB_SIZE bytes,
    // aligned for Dblk, not in use (caller).
    unsafe { d.write(dblk) };
    let m = mblk_of(b);
    // SAFETY: the message block half of the same block, aligned, not in use (caller).
    unsafe { m.write(Mblk::new(base, d)) };
    m
}

/// The constructor of the combined-block cache (Solaris constructed state, as illumos
/// `dblk_constructor`): writes the block as `allocb(0)` would return it, so that `allocb`
/// writes only what varies between messages ([`init_fast`]).
///
/// The invariants of the constructed state, which every path that returns a block to the
/// cache restores ([`restore`], or kept by construction on the fast free path):
/// `b_next`, `b_prev` NULL; `b_datap` the block's own data block; `db_frtnp` NULL,
/// `db_base`/`db_lim` the inline buffer, `db_ref` 1, `db_class` `Fast`, `db_halves` 2,
/// `frtn` empty, `db_env` the cache's environment (`private`). A `dupb` block keeps all of
/// them but `b_datap`, `db_class` (`Unused`) and `db_halves` (1).
pub(crate) fn mdb_constructor(buf: *mut c_void, private: *mut c_void, _kmflag: KmFlags) -> i32 {
    // SAFETY: the cache's private argument is its environment (`env::lookup_or_create`);
    // environments are never freed. Only the reference is stored, its `live` is not read.
    let env: &'static MsgEnv = unsafe { &*private.cast::<MsgEnv>() };
    let b = buf.cast::<Mdb>();
    let base = buf_of(b);
    // SAFETY: the cache hands its constructor a buffer of MDB_SIZE bytes aligned to MDB_ALIGN,
    // not in use.
    unsafe { write_headers(b, env, base, base.wrapping_add(FASTBUF), DbClass::Fast, 0) };
    0
}

/// The constructor of large combined class `I`: as [`mdb_constructor`], with `256 << I`
/// bytes of inline buffer and class `DbClass::BIG[I]`.
pub(crate) fn big_constructor<const I: usize>(buf: *mut c_void, private: *mut c_void, _kmflag: KmFlags) -> i32 {
    // SAFETY: as in `mdb_constructor`.
    let env: &'static MsgEnv = unsafe { &*private.cast::<MsgEnv>() };
    let b = buf.cast::<Mdb>();
    let base = buf_of(b);
    // SAFETY: a buffer of HEADER_SIZE + big_data_size(I) bytes aligned to MDB_ALIGN, not in
    // use; its header is laid out as the small block's.
    unsafe { write_headers(b, env, base, base.wrapping_add(big_data_size(I)), DbClass::BIG[I], 0) };
    0
}

/// Puts a block whose halves are both released back into the constructed state (see
/// [`mdb_constructor`]) before it returns to the cache: its class's, `class` being the
/// class of its data block (a large combined block's stays its class in every state).
///
/// # Safety
/// `b` is a block of `env`'s cache for `class`, no half of it in use.
#[inline]
unsafe fn restore(b: *mut Mdb, env: &'static MsgEnv, class: DbClass) {
    let base = buf_of(b);
    let (class, data) = match class.big_index() {
        Some(i) => (class, big_data_size(i)),
        None => (DbClass::Fast, FASTBUF),
    };
    // SAFETY: forwarded contract.
    unsafe { write_headers(b, env, base, base.wrapping_add(data), class, 0) };
}

/// A small message in a constructed block: writes only the fields that vary between
/// messages, or that a message's user may have changed and the fast free path does not
/// restore (`b_cont`, the read and write pointers, `b_band`/`b_flag`, `b_csum`, `db_type`,
/// `db_flag`, `db_size`). The rest is the constructed state ([`mdb_constructor`]).
///
/// # Safety
/// `b` is a block fresh from `env`'s cache (constructed, no half in use).
#[inline(always)]
unsafe fn init_fast(b: *mut Mdb, env: &'static MsgEnv, size: usize) -> *mut Mblk {
    // SAFETY: forwarded contract; the inline buffer.
    unsafe { init_varying(b, env, buf_of(b), size) }
}

/// [`init_fast`] over the buffer at `base`: the message block's pointers start there.
///
/// # Safety
/// As [`init_fast`]; `base` is the block's inline buffer, or the caller sets `db_base`,
/// `db_lim` and `db_class` for its own buffer afterwards.
#[inline(always)]
unsafe fn init_varying(b: *mut Mdb, env: &'static MsgEnv, base: *mut u8, size: usize) -> *mut Mblk {
    // SAFETY: forwarded contract.
    let mp = unsafe { init_fields(b, base, size) };
    env.born(mp);
    mp
}

/// [`init_varying`] without the checking hook: for a block of an environment that does not
/// check.
///
/// # Safety
/// As [`init_varying`].
#[inline(always)]
unsafe fn init_fields(b: *mut Mdb, base: *mut u8, size: usize) -> *mut Mblk {
    let mp = mblk_of(b);
    // SAFETY: a constructed block: its message block half holds an initialised `Mblk`, not in
    // use (caller).
    let m = unsafe { &mut *mp };
    m.b_cont = std::ptr::null_mut();
    m.b_rptr = base;
    m.b_wptr = base;
    m.b_band = 0;
    m.b_pad1 = 0;
    m.b_flag = 0;
    m._pad = 0;
    m.b_csum = 0;
    // SAFETY: as above, its data block half holds an initialised `Dblk`.
    let d = unsafe { &mut *dblk_of(b) };
    d.db_type = M_DATA;
    d.db_flag = 0;
    d.db_size = u32::try_from(size).unwrap_or(u32::MAX);
    mp
}

/// Allocates a message block of at least `size` bytes.
///
/// # Arguments
/// - `size`: the bytes wanted; 0 is allowed.
/// - `pri`: `BPRI_LO`, `BPRI_MED` or `BPRI_HI` (accepted, ignored), or `BPRI_WAITOK` (the call
///   may sleep until memory is available).
///
/// # Return
/// A message of type `M_DATA` with `b_rptr == b_wptr == db_base`, `db_ref` 1, band and flags
/// 0, `db_lim - db_base >= size`; or NULL when memory is short (never with `BPRI_WAITOK`
/// unless the size is impossible) or `size` exceeds 131072 bytes.
///
/// Sizes up to [`FASTBUF`] come from one combined cache object (message block, data block
/// and buffer); larger ones take a `kmem_alloc` buffer and keep its power-of-two slack up to
/// `db_lim` ([`Arena::extent`](ddi_kmem::Arena::extent)).
///
/// # Context
/// Any with `BPRI_LO/MED/HI`; user context only with `BPRI_WAITOK` (from interrupt context
/// it is reported, [`StreamsError::SleepInInterrupt`], and NULL returned).
///
/// # Compatibility
/// LfS `allocb(9)` (lfs-lis.md §2.4): `allocb(0)` succeeds, above 131072 fails, `db_size` is
/// the requested size. The priority is ignored as by Solaris, LiS, OSF/1, UnixWare and IRIX;
/// AIX and HP-UX refuse low priorities under pressure (`allocb.9.man`, §2.8). `BPRI_SKBUFF`
/// is not supported (treated as its low byte). Solaris `allocb` never sleeps.
///
/// # Examples
/// ```
/// use streams_core::{allocb, freeb, BPRI_MED};
///
/// let mp = allocb(64, BPRI_MED);
/// assert!(!mp.is_null());
/// // SAFETY: allocb returned a message block; it is freed once.
/// unsafe { freeb(mp) };
/// ```
#[inline(always)]
#[track_caller]
pub fn allocb(size: usize, pri: u32) -> *mut Mblk {
    // A message in one combined block (small, or a large combined class) without
    // BPRI_WAITOK, inline at the call site: the environment lookup, a cache pop and the
    // fields that vary.
    if pri & 0xff != BPRI_WAITOK {
        if size <= FASTBUF {
            return allocb_combined(DbClass::Fast as usize, size);
        }
        if size <= COMBINED_MAX {
            return allocb_big(DbClass::Big256 as usize + big_index_of(size), size);
        }
    }
    allocb_other(size, pri)
}

/// [`allocb`] of a message in one combined block of class number `class` (`DbClass as
/// usize`), without `BPRI_WAITOK`: a round from the thread's slot of the class's cache, found
/// from the thread's [`env::Last`] when its slots are current (one comparison), and the
/// fields that vary; anything else (stale slots, an empty magazine, no cache for the class,
/// failure injection) in a separate call.
#[inline(always)]
#[track_caller]
fn allocb_combined(class: usize, size: usize) -> *mut Mblk {
    // SAFETY: used within this call.
    let l = unsafe { env::last_state() };
    if let Some(slot) = l.slot_at(class) {
        // SAFETY: a current slot of this thread (`Last::slot_at`), of `class`'s cache.
        let mp = unsafe { pop_message(slot, size) };
        if !mp.is_null() {
            return mp;
        }
    }
    allocb_miss(size)
}

/// A message of `size` bytes in a block popped from `slot`, or NULL when the slot does not
/// serve.
///
/// # Safety
/// `slot` is a current slot of this thread ([`env::Last`]) of a combined-block cache of the
/// thread's current environment.
#[inline(always)]
unsafe fn pop_message(slot: &ddi_kmem::ThreadSlot, size: usize) -> *mut Mblk {
    // SAFETY: forwarded contract.
    let b = unsafe { slot.alloc() }.cast::<Mdb>();
    if b.is_null() {
        return std::ptr::null_mut();
    }
    // SAFETY: `b` is fresh from a combined-block cache of the thread's current environment,
    // constructed with its inline buffer; that environment does not check (its slots would
    // be empty, `env::refresh`), so `born` has nothing to do.
    unsafe { init_fields(b, buf_of(b), size) }
}

/// [`allocb_combined`] for large combined class number `class`: when it is the large class
/// the thread used last ([`env::Last::hinted_big_slot`]), the slot kept with that hint,
/// whose address does not wait for the class computed from `size` (the compare is a
/// predicted branch); else a separate call, which makes `class` the hint.
#[inline(always)]
#[track_caller]
fn allocb_big(class: usize, size: usize) -> *mut Mblk {
    // SAFETY: used within this call.
    let l = unsafe { env::last_state() };
    if let Some(slot) = l.hinted_big_slot_at(class) {
        // SAFETY: a current slot of this thread, of `class`'s cache (`Last::hinted_big_slot`).
        let mp = unsafe { pop_message(slot, size) };
        return if mp.is_null() { allocb_miss(size) } else { mp };
    }
    allocb_big_unhinted(class, size)
}

/// [`allocb_big`] for a class other than the hinted one: records it as the hint.
#[inline(never)]
#[track_caller]
fn allocb_big_unhinted(class: usize, size: usize) -> *mut Mblk {
    // SAFETY: used within this call.
    unsafe { env::last_state() }.hint_big_at(class);
    allocb_combined(class, size)
}

/// [`allocb_combined`] when the thread's slot did not serve: takes the thread's slots into
/// [`env::Last`] if they were stale, then allocates through the environment.
#[cold]
#[inline(never)]
#[track_caller]
fn allocb_miss(size: usize) -> *mut Mblk {
    // SAFETY: used within this call.
    if !unsafe { env::last_state() }.is_current() {
        env::refresh();
    }
    allocb_in(env::current(), size, KM_NOSLEEP)
}

/// [`allocb`] for every case but a combined-block message without `BPRI_WAITOK`.
#[inline(never)]
#[track_caller]
fn allocb_other(size: usize, pri: u32) -> *mut Mblk {
    let env = env::current();
    if pri & 0xff == BPRI_WAITOK && ddi_kmem::in_interrupt() {
        return sleep_in_interrupt(env);
    }
    allocb_in(env, size, pri_flags(pri))
}

#[cold]
#[inline(never)]
#[track_caller]
fn sleep_in_interrupt(env: &MsgEnv) -> *mut Mblk {
    env.misuse(StreamsError::SleepInInterrupt { call: "allocb(BPRI_WAITOK)" });
    std::ptr::null_mut()
}

#[cold]
#[inline(never)]
fn no_memory(size: usize) -> *mut Mblk {
    tracing::debug!(size, "allocb: no memory: NULL");
    std::ptr::null_mut()
}

/// `allocb` in `env`: a combined block for a small message, else a combined block over a
/// separate `kmem_alloc` buffer.
#[inline(always)]
#[track_caller]
pub(crate) fn allocb_in(env: &'static MsgEnv, size: usize, flags: KmFlags) -> *mut Mblk {
    let cache = if size <= FASTBUF {
        &env.cache
    } else if size <= COMBINED_MAX {
        match &env.big[big_index_of(size)] {
            Some(c) => c,
            None => return allocb_large(env, size, flags),
        }
    } else {
        return allocb_large(env, size, flags);
    };
    let b = kmem_cache_alloc(cache, flags).cast::<Mdb>();
    if b.is_null() {
        return no_memory(size);
    }
    // SAFETY: `b` is fresh from one of env's caches, constructed with its inline buffer.
    unsafe { init_fast(b, env, size) }
}

/// `allocb` with a `kmem_alloc` buffer beside a combined block (its inline buffer unused):
/// two allocations, the buffer first. `env` is the current arena's.
#[inline(always)]
#[track_caller]
fn allocb_large(env: &'static MsgEnv, size: usize, flags: KmFlags) -> *mut Mblk {
    let Some(extent) = env.extent(size) else {
        return too_large(size);
    };
    // The whole extent is requested, so the slack up to db_lim is the caller's in a
    // checking arena too (its redzone starts after the requested size). `env` is the current
    // arena's (from `env::current`), so the thread's kmem fast path serves it.
    let buf = ddi_kmem::kmem_alloc(extent, flags).cast::<u8>();
    if buf.is_null() {
        return no_memory(size);
    }
    let b = kmem_cache_alloc(&env.cache, flags).cast::<Mdb>();
    if b.is_null() {
        // SAFETY: `buf` came from this arena's alloc(extent) above and is unused.
        unsafe { env.kmem_free(buf, extent) };
        return no_memory(size);
    }
    // SAFETY: `b` is fresh from the cache (constructed); the buffer is set just below.
    let mp = unsafe { init_varying(b, env, buf, size) };
    // The constructed state but for the buffer (which `free_kmem_message` restores).
    // SAFETY: the block's data block half holds an initialised `Dblk`, ours alone.
    let d = unsafe { &mut *dblk_of(b) };
    d.db_base = buf;
    d.db_lim = buf.wrapping_add(extent);
    d.db_class = DbClass::Kmem;
    mp
}

#[cold]
#[inline(never)]
fn too_large(size: usize) -> *mut Mblk {
    tracing::debug!(size, "allocb: size beyond the largest kmem class: NULL");
    std::ptr::null_mut()
}

/// Tests whether a message of `size` bytes could be allocated now.
///
/// # Arguments
/// - `size`: the bytes wanted.
/// - `pri`: as for [`allocb`].
///
/// # Return
/// 1 if an `allocb(size, pri)` just made succeeded, else 0. A later `allocb` may still fail.
///
/// # Context
/// As [`allocb`].
///
/// # Compatibility
/// LfS and LiS allocate and free (lfs-lis.md §2.6, §4.2); Solaris compares with
/// `kmem_avail()`. AIX and Solaris ignore `pri`; UnixWare, HP-UX, SUPER-UX and OSF/1 do not.
#[track_caller]
pub fn testb(size: usize, pri: u32) -> i32 {
    let mp = allocb(size, pri);
    if mp.is_null() {
        return 0;
    }
    // SAFETY: just allocated, freed once.
    unsafe { freeb(mp) };
    1
}

/// Wraps a caller's buffer in a message; the free routine runs at the last `freeb`.
///
/// # Arguments
/// - `base`: the buffer.
/// - `size`: its size in bytes.
/// - `pri`: as for [`allocb`] (ignored except `BPRI_WAITOK`).
/// - `frtnp`: the free routine; copied, so it need not outlive the call.
///
/// # Return
/// A message with `b_rptr == b_wptr == db_base == base`, `db_lim == base + size`, or NULL
/// when memory is short. A NULL `base` or `frtnp` is a misuse, reported (LfS panics; LiS
/// returns NULL): NULL is returned when the arena reports instead of panicking.
///
/// # Context
/// As [`allocb`]. The free routine runs in the context of the thread doing the last free,
/// exactly once, after every other reference is gone.
///
/// # Compatibility
/// LfS `esballoc(9)` copies the `frtn_t` into the block and runs the routine synchronously
/// at the last `freeb`, as here; illumos defers it to a task queue (illumos.md §3), where
/// `desballoc` runs it synchronously. The man page's `strmsgsz` limit is not in the LfS code
/// and not here (lfs-lis.md §2.4).
///
/// # Safety
/// - `base..base + size` is valid for reads (and for writes, if the message is written)
///   until the free routine runs, and is not otherwise accessed while the message uses it;
/// - `frtnp` is NULL or points to a valid [`Frtn`] whose `free_func`, called with
///   `free_arg` on any thread, is sound.
#[track_caller]
pub unsafe fn esballoc(base: *mut u8, size: usize, pri: u32, frtnp: *const Frtn) -> *mut Mblk {
    // SAFETY: forwarded contract.
    unsafe { esballoc_call("esballoc", base, size, pri, frtnp) }
}

/// [`esballoc`] under its Solaris name for a synchronous free routine.
///
/// # Arguments
/// As [`esballoc`].
///
/// # Return
/// As [`esballoc`].
///
/// # Context
/// As [`esballoc`]; the free routine runs synchronously in the thread doing the last
/// `freeb`, possibly in interrupt context, and must not sleep.
///
/// # Compatibility
/// LfS treats `desballoc` as `esballoc`; on Solaris the difference is that `esballoc`'s
/// routine is deferred (illumos.md §3).
///
/// # Safety
/// As [`esballoc`].
#[track_caller]
pub unsafe fn desballoc(base: *mut u8, size: usize, pri: u32, frtnp: *const Frtn) -> *mut Mblk {
    // SAFETY: forwarded contract.
    unsafe { esballoc_call("desballoc", base, size, pri, frtnp) }
}

/// # Safety
/// As [`esballoc`].
#[track_caller]
unsafe fn esballoc_call(call: &'static str, base: *mut u8, size: usize, pri: u32, frtnp: *const Frtn) -> *mut Mblk {
    let env = env::current();
    if base.is_null() {
        env.misuse(StreamsError::NullArgument { call, what: "base" });
        return std::ptr::null_mut();
    }
    if frtnp.is_null() {
        env.misuse(StreamsError::NullArgument { call, what: "free routine (frtnp)" });
        return std::ptr::null_mut();
    }
    // SAFETY: `frtnp` is non-NULL and valid (caller).
    let frtn = unsafe { frtnp.read() };
    let mp = new_message(env, pri_flags(pri), |_| DbInit {
        base,
        lim: base.wrapping_add(size),
        class: DbClass::External,
        size,
        frtn,
        halves: 2,
    });
    if mp.is_null() {
        tracing::debug!(call, size, "esballoc: no memory: NULL");
    }
    mp
}

/// Duplicates a message block: a new message block sharing `bp`'s data block.
///
/// # Arguments
/// - `bp`: the message block.
///
/// # Return
/// A message block with `bp`'s `b_rptr`, `b_wptr`, `b_band`, `b_flag` and `b_csum`, whose
/// `b_datap` is `bp`'s (its `db_ref` one higher); or NULL when memory is short or `db_ref` is
/// already 255. `b_cont` is NULL.
///
/// # Context
/// Any.
///
/// # Compatibility
/// LfS `dupb(9)` (lfs-lis.md §2.5); LfS before 0.9.2.3 let `db_ref` wrap to 0, and only
/// Solaris documents the failure at 255. LiS returns NULL for a NULL `bp`; so does this.
///
/// # Safety
/// `bp` is NULL or an allocated message block (a checking arena reports one that is not).
#[track_caller]
pub unsafe fn dupb(bp: *mut Mblk) -> *mut Mblk {
    if bp.is_null() || !env::check_live("dupb", bp) {
        return std::ptr::null_mut();
    }
    let env = env::current();
    let Some(b) = small_block(env) else {
        tracing::debug!("dupb: no memory: NULL");
        return std::ptr::null_mut();
    };
    // SAFETY: `bp` is an allocated message block (caller); read only.
    let src = unsafe { &*bp };
    // SAFETY: `src` holds a reference to its data block, so it is live.
    let shared = unsafe { &*src.b_datap };
    if !shared.db_ref.try_acquire(DB_REF_MAX) {
        tracing::debug!(db_ref = shared.db_ref(), "dupb: db_ref at its limit: NULL");
        // SAFETY: `b` came from env's cache just now and holds nothing.
        unsafe { kmem_cache_free(&env.cache, b.cast()) };
        return std::ptr::null_mut();
    }
    env::shared_dup("dupb", shared, shared.db_ref());
    // The block's data block half stays unused: only its class and the count of live halves
    // change from the constructed state (which `free_dup_block` restores).
    // SAFETY: the data block half of a block fresh from env's cache: constructed (an
    // initialised `Dblk`), not in use.
    let unused = unsafe { &mut *dblk_of(b) };
    unused.db_class = DbClass::Unused;
    unused.db_halves = RefCount::new(1);
    let m = Mblk {
        b_band: src.b_band,
        b_flag: src.b_flag,
        b_csum: src.b_csum,
        b_wptr: src.b_wptr,
        ..Mblk::new(src.b_rptr, src.b_datap)
    };
    let mp = mblk_of(b);
    // SAFETY: the message block half of a fresh cache object.
    unsafe { mp.write(m) };
    env.born(mp);
    mp
}

/// Takes a block for a data block only (`pullupmsg`): the message block half stays unused.
pub(crate) fn new_dblk(env: &'static MsgEnv, flags: KmFlags, base: *mut u8, len: usize) -> Option<*mut Dblk> {
    let b = block_alloc(env, flags)?;
    let init = DbInit { base, lim: base.wrapping_add(len), class: DbClass::Kmem, size: len, frtn: NO_FRTN, halves: 1 };
    // SAFETY: `b` is fresh from env's cache.
    Some(unsafe { init_dblk(b, env, init) })
}

/// Returns a block to its environment's cache.
///
/// # Safety
/// `b` is a block no half of which is in use any more.
unsafe fn block_free(b: *mut Mdb) {
    // SAFETY: the block is still allocated; its data block half is initialised.
    let d = unsafe { &*dblk_of(b) };
    let (env, class): (&'static MsgEnv, DbClass) = (d.db_env, d.db_class);
    // SAFETY: no half of `b` is in use (caller); it came from the cache of `class`.
    unsafe { restore(b, env, class) };
    // SAFETY: `b` came from this environment's cache for `class` and is freed once (caller).
    unsafe { kmem_cache_free(env.block_cache(class), b.cast()) };
}

/// Releases one live half of `b`; frees the block with the last.
///
/// # Safety
/// The caller owned a live half of `b` and does not use it afterwards.
unsafe fn release_half(b: *mut Mdb) {
    // SAFETY: `b` is allocated while any half is live, and the caller holds one.
    let last = unsafe { (*dblk_of(b)).db_halves.release() };
    if last {
        // SAFETY: both halves are released; the Acquire in `release` orders the other
        // half's last use before this free.
        unsafe { block_free(b) };
    }
}

/// Releases the buffer of a data block whose last reference is gone.
///
/// # Safety
/// `d` has no references left and the caller released the last.
unsafe fn free_data(d: *mut Dblk) {
    // SAFETY: the data block is exclusively the caller's now.
    let d = unsafe { &*d };
    env::shared_forget(d);
    match d.db_class {
        DbClass::Fast | DbClass::Unused | DbClass::Big256 | DbClass::Big512 | DbClass::Big1024 | DbClass::Big2048 => {}
        DbClass::Kmem => {
            // SAFETY: a Kmem buffer came from its environment's arena with `db_lim -
            // db_base` bytes and is freed once, at the last reference.
            unsafe { d.db_env.kmem_free(d.db_base, d.capacity()) };
        }
        DbClass::External => {
            if let Some(f) = d.frtn.free_func {
                f(d.frtn.free_arg);
            }
        }
    }
}

/// [`dblk_release`] without the checking hooks (no environment checks).
///
/// # Safety
/// As [`dblk_release`].
#[inline]
unsafe fn dblk_release_unchecked(d: *mut Dblk) {
    // SAFETY: the caller's reference keeps `d` live until the decrement.
    if unsafe { (*d).db_ref.release() } {
        // SAFETY: last reference, now exclusively ours.
        unsafe { free_data(d) };
        // SAFETY: the data block half of its block is no longer used.
        unsafe { release_half(mdb_of_dblk(d)) };
    }
}

/// Drops one reference to `d`, releasing the buffer and the data block half with the last.
///
/// # Safety
/// The caller held a reference to `d` and does not use it afterwards.
#[track_caller]
pub(crate) unsafe fn dblk_release(call: &'static str, d: *mut Dblk) {
    // SAFETY: the caller's reference keeps `d` live until the decrement.
    let dref = unsafe { &*d };
    env::shared_release(call, dref, dref.db_ref());
    if dref.db_ref.release() {
        // SAFETY: last reference, now exclusively ours.
        unsafe { free_data(d) };
        // SAFETY: the data block half of its block is no longer used.
        unsafe { release_half(mdb_of_dblk(d)) };
    }
}

/// The fast path of a free, when no environment checks and the message block is on no
/// queue: a message block holding the only reference to the data block of its own combined
/// block (`allocb`, the buffer inline or `kmem_alloc`'d) frees both at once, and a block of
/// `dupb` drops its reference and frees its block. Returns `None` (having changed nothing)
/// for every other case, which [`free_general`] handles.
///
/// The tests are those of `free_one` for this case, folded: the queue links and mark (a
/// block on a queue still goes to `free_one`, which reports it), and the uniqueness test
/// of `db_ref` ([`RefCount::is_unique`], the first step of [`RefCount::release`]).
///
/// The block's environment is nearly always the thread's last one ([`env::Last`]). When it
/// is, the rest runs with the thread-local block: while its slots are current (one
/// comparison of ddi-kmem's thread token) the block goes straight into the thread's slot of
/// its cache, else through the cache. Either way the slot is found from the thread-local
/// block, independently of the loads from the block being freed, so the free does not wait
/// on a chain of dependent loads (the block, its environment, the cache, the slot) that
/// starts at the magazine pop which produced the block, only on predicted branches (the
/// class compared with the small class, then with the hinted large class (`Last`),
/// else an indirect call by class, [`FREE_OWN`]). The other environment is a separate call,
/// so the compiler cannot merge the two into a conditional move, which would keep the
/// dependency.
///
/// # Safety
/// As [`freeb`], `mp` not NULL.
#[inline(always)]
unsafe fn free_fast(mp: *mut Mblk) -> Option<&'static MsgEnv> {
    if env::any_checking() {
        return None;
    }
    // SAFETY: forwarded contract; no arena checks (tested just above).
    unsafe { free_fast_unchecking(mp) }
}

/// [`free_fast`] once the caller has found that no arena checks.
///
/// # Safety
/// As [`free_fast`], and no environment checks ([`env::any_checking`] was false).
#[inline(always)]
unsafe fn free_fast_unchecking(mp: *mut Mblk) -> Option<&'static MsgEnv> {
    // Read before the block, so that the thread's environment is the one the rest uses.
    // SAFETY: used within this call.
    let l = unsafe { env::last_state() };
    let last = l.env();
    // SAFETY: `mp` is an allocated message block (caller); the block is allocated while its
    // message block half is, and its data block half holds an initialised `Dblk` (the
    // constructor's, or written since).
    let env = unsafe { (*dblk_of(mdb_of_mblk(mp))).db_env };
    if std::ptr::eq(last, env) {
        // SAFETY: `last` is `env`, a `&'static MsgEnv`.
        let env = unsafe { &*last };
        // SAFETY: forwarded contract; `env` is the block's environment, `l`'s.
        unsafe { free_fast_in(mp, env, Some(l)) }
    } else {
        // SAFETY: forwarded contract; `env` is the block's environment.
        unsafe { free_fast_other(mp, env) }
    }
}

/// [`free_fast`] for a block of another environment than the thread's last.
///
/// # Safety
/// As [`free_fast_in`].
#[cold]
#[inline(never)]
unsafe fn free_fast_other(mp: *mut Mblk, env: &'static MsgEnv) -> Option<&'static MsgEnv> {
    // SAFETY: forwarded contract.
    unsafe { free_fast_in(mp, env, None) }
}

/// The body of [`free_fast`], with the block's environment given, and the thread's
/// [`env::Last`] when its environment is `env` (its slots, when current, are then `env`'s).
///
/// # Safety
/// As [`freeb`], `mp` not NULL; `env` is the environment of `mp`'s block; `last`, if given,
/// is the thread's and its environment is `env`.
#[inline(always)]
unsafe fn free_fast_in(mp: *mut Mblk, env: &'static MsgEnv, last: Option<&env::Last>) -> Option<&'static MsgEnv> {
    let b = mdb_of_mblk(mp);
    let own = dblk_of(b);
    // SAFETY: `mp` is an allocated message block (caller; no arena checks, so the caller's
    // word is all there is, as in `free_one`).
    let m = unsafe { &mut *mp };
    if (m.b_next.addr() | m.b_prev.addr()) != 0 || m.b_pad1 & crate::queue::MBLK_QUEUED != 0 {
        return None;
    }
    // SAFETY: the block is allocated while its message block half is, which `mp` is; its data
    // block half holds an initialised `Dblk` (the constructor's, or written since).
    let class = unsafe { (*own).db_class };
    let d = m.b_datap;
    if d == own {
        // The block's own data block (allocb): free both halves at once when `mp` holds its
        // only reference.
        // SAFETY: `mp` holds a reference to `d`, so it is live.
        if !unsafe { (*own).db_ref.is_unique() } {
            return None;
        }
        // The whole block, from `mp` (not from `m`, whose provenance is the message block's).
        // SAFETY: `mp` is not NULL (the contract).
        let block = unsafe { NonNull::new_unchecked(b) }.cast::<c_void>();
        // The small block first, with its own test, the other classes in a separate call:
        // the common case is one compare and a predicted branch (a `match` here compiles to
        // a jump table for every class).
        if class != DbClass::Fast {
            // A large block of the hinted class (`Last`): its slot without the call.
            if let Some(slot) = last.and_then(|l| l.hinted_big_slot(class)) {
                // SAFETY: the block is unused and constructed (as for a small block below), of
                // `env`'s cache of `class`, whose current slot of this thread `slot` is.
                return unsafe { push_own(slot, block, mp, env, class) };
            }
            // SAFETY: forwarded contract; `mp` holds the only reference to its block's own
            // data block, of class `class`.
            return unsafe { FREE_OWN[class as usize & 7](mp, env, last) };
        }
        // The thread's slot of `env.cache` straight from `Last` when current, else the cache.
        if let Some(slot) = last.and_then(|l| l.slot(DbClass::Fast)) {
            // SAFETY: as for `kmem_cache_free` below; the slot is current (`Last::slot`).
            return unsafe { push_own(slot, block, mp, env, class) };
        }
        let cache = &env.cache;
        // The block stays in its constructed state: `b_next`/`b_prev` are NULL and `b_datap`
        // its own (tested above), `db_ref` 1 (unique, and left at 1), `db_halves` 2 (both
        // halves live until now), class `Fast` with the inline buffer (callers never write
        // the other data block fields). LfS clears b_datap here; the constructed state keeps
        // it (a checking arena poisons freed blocks instead).
        // SAFETY: the sole reference to the data block is `mp`'s, given up here with the
        // message block: neither half of the block is in use; it came from `cache`.
        unsafe { kmem_cache_free(cache, b.cast()) };
        return Some(env);
    }
    if class != DbClass::Unused {
        return None;
    }
    // SAFETY: forwarded contract; `mp` is a block of `dupb` on no queue.
    Some(unsafe { free_dup_block(mp, d, env) })
}

/// Pushes `mp`'s whole block (`block`) onto the thread's slot of its cache, or, when the
/// slot's magazine is full, frees it through the cache out of line ([`free_own_full`]).
///
/// # Safety
/// As [`FreeOwn`] for `class` (the block's own class, `Fast` included); `block` is `mp`'s
/// block with `mp`'s provenance; `slot` is the thread's current slot of the block's cache.
#[inline(always)]
unsafe fn push_own(
    slot: &ddi_kmem::ThreadSlot,
    block: NonNull<c_void>,
    mp: *mut Mblk,
    env: &'static MsgEnv,
    class: DbClass,
) -> Option<&'static MsgEnv> {
    // SAFETY: the block is unused and constructed, of the slot's cache (the contract).
    if unsafe { slot.free(block) } {
        return Some(env);
    }
    // SAFETY: forwarded contract.
    unsafe { free_own_full(mp, env, class) }
}

/// [`free_fast_in`] for a block the thread's slot of its cache refused (its magazine is
/// full): through the cache, out of line, so that the push that succeeds is the straight
/// path.
///
/// # Safety
/// As [`FreeOwn`] for `class` (the block's own class, `Fast` included).
#[cold]
#[inline(never)]
unsafe fn free_own_full(mp: *mut Mblk, env: &'static MsgEnv, class: DbClass) -> Option<&'static MsgEnv> {
    if class == DbClass::Fast {
        // SAFETY: as for the small block in `free_fast_in`: neither half of the block is in
        // use; it came from `env.cache`.
        unsafe { kmem_cache_free(&env.cache, mdb_of_mblk(mp).cast()) };
        return Some(env);
    }
    // SAFETY: forwarded contract.
    unsafe { FREE_OWN[class as usize & 7](mp, env, None) }
}

/// How [`free_fast_in`] frees a message whose only reference is to its own block's data
/// block, of a class other than [`DbClass::Fast`]: `None` (nothing changed) to leave it to
/// the general path.
///
/// # Safety
/// As [`freeb`]; `mp` is on no queue, its `b_datap` its own block's data block, of the
/// class the function is listed for, whose only reference is `mp`'s; `env` is the block's
/// environment; the [`env::Last`], if given, is the thread's and its environment is `env`.
type FreeOwn = unsafe fn(*mut Mblk, &'static MsgEnv, Option<&env::Last>) -> Option<&'static MsgEnv>;

/// [`FreeOwn`] by class (`DbClass as usize`). An indirect call through this table, not a
/// `match`: the branch on the class is then the call's predicted target, and each function
/// names its cache (or its slot in [`env::Last`]), so the cache and the thread's slot of it
/// are known without waiting for the class read from the block (a data dependency; see
/// `free_fast`), which a `match` compiled to an indexed lookup would keep. A large class
/// taken here becomes the thread's hint ([`env::Last::hinted_big_slot`]), so a run of
/// messages of one large class frees without the call.
const FREE_OWN: [FreeOwn; 8] = {
    /// Classes the fast path leaves to the general path.
    unsafe fn general(_: *mut Mblk, _: &'static MsgEnv, _: Option<&env::Last>) -> Option<&'static MsgEnv> {
        None
    }
    /// A `kmem_alloc` buffer.
    unsafe fn kmem(mp: *mut Mblk, _: &'static MsgEnv, _: Option<&env::Last>) -> Option<&'static MsgEnv> {
        // SAFETY: forwarded contract (`FreeOwn`, listed for `DbClass::Kmem`).
        Some(unsafe { free_kmem_message(mp) })
    }
    /// A large combined block of class `I`: to the thread's slot of the class's cache
    /// straight from `Last` when it is current, else through the cache.
    unsafe fn big<const I: usize>(
        mp: *mut Mblk,
        env: &'static MsgEnv,
        last: Option<&env::Last>,
    ) -> Option<&'static MsgEnv> {
        if let Some(l) = last {
            l.hint_big(DbClass::BIG[I]);
        }
        if let Some(slot) = last.and_then(|l| l.slot(DbClass::BIG[I])) {
            // SAFETY: `mp` is not NULL (the contract of `free_fast`).
            let b = unsafe { NonNull::new_unchecked(mp) };
            // SAFETY: the block is unused and constructed, of the cache of `env`'s class `I`
            // (the contract), whose current slot of this thread `slot` is (`Last::slot`).
            if unsafe { slot.free(b.cast()) } {
                return Some(env);
            }
        }
        // SAFETY: forwarded contract (`FreeOwn`, listed for large class `I`).
        unsafe { big_through_cache::<I>(mp, env) }
    }
    /// [`big`] through the cache (a separate call, so that `big` needs no stack frame).
    #[inline(never)]
    unsafe fn big_through_cache<const I: usize>(mp: *mut Mblk, env: &'static MsgEnv) -> Option<&'static MsgEnv> {
        // SAFETY: forwarded contract (`FreeOwn`, listed for large class `I`).
        Some(unsafe { free_big::<I>(mdb_of_mblk(mp), env) })
    }
    let mut t: [FreeOwn; 8] = [general; 8];
    t[DbClass::Kmem as usize] = kmem;
    t[DbClass::Big256 as usize] = big::<0>;
    t[DbClass::Big512 as usize] = big::<1>;
    t[DbClass::Big1024 as usize] = big::<2>;
    t[DbClass::Big2048 as usize] = big::<3>;
    t
};

/// Frees a message of large combined class `I` whose only reference is its own message
/// block's (`free_fast`): the block, in its constructed state, back to the class's cache.
///
/// # Safety
/// As [`freeb`]; the block `b` is of `env`'s large combined class `I`, on no queue, its
/// `b_datap` its own data block, whose only reference is the block's message block.
#[inline(always)]
unsafe fn free_big<const I: usize>(b: *mut Mdb, env: &'static MsgEnv) -> &'static MsgEnv {
    let cache = env.big_cache(I);
    // SAFETY: as in `free_fast_in` for a small block: neither half is in use, the block is
    // in its constructed state, and it came from `cache` (the contract).
    unsafe { kmem_cache_free(cache, b.cast()) };
    env
}

/// Frees a message of `allocb` with a `kmem_alloc` buffer whose only reference is `mp`'s
/// (`free_fast`): the buffer, then the block.
///
/// # Safety
/// As [`freeb`]; `mp` is on no queue, its `b_datap` is its own block's data block, of class
/// `DbClass::Kmem`, and `mp` holds its only reference.
#[inline(never)]
unsafe fn free_kmem_message(mp: *mut Mblk) -> &'static MsgEnv {
    let b = mdb_of_mblk(mp);
    let d = dblk_of(b);
    // SAFETY: `mp` is allocated (caller) and its data block exclusively its own.
    let dref = unsafe { &mut *d };
    let (env, base, cap) = (dref.db_env, dref.db_base, dref.capacity());
    // Back to the constructed state: only the buffer and the class differ from it (as in
    // `free_fast`).
    let inline = buf_of(b);
    dref.db_base = inline;
    dref.db_lim = inline.wrapping_add(FASTBUF);
    dref.db_class = DbClass::Fast;
    // SAFETY: a Kmem buffer came from its environment's arena with `db_lim - db_base` bytes
    // and is freed once, at the last reference, which `mp`'s is.
    unsafe { env.kmem_free(base, cap) };
    // SAFETY: neither half of the block is in use any more.
    unsafe { kmem_cache_free(&env.cache, b.cast()) };
    env
}

/// Frees a message block of `dupb` (its own data block half unused) on no queue, when no
/// environment checks.
///
/// # Safety
/// As [`freeb`]; `mp` is on no queue, its block's data block is `DbClass::Unused`, `d` is
/// `mp`'s `b_datap` and `env` its block's environment.
#[inline(never)]
unsafe fn free_dup_block(mp: *mut Mblk, d: *mut Dblk, env: &'static MsgEnv) -> &'static MsgEnv {
    // A block of `dupb`: its data block half is unused (`db_halves` 1, never raised), so the
    // block is `mp`'s alone. Drop `mp`'s reference to the shared data block, as
    // `dblk_release` does, then restore the block (its `b_datap` too) and free it.
    // SAFETY: `mp` held a reference to `d`, given up here and not used afterwards.
    unsafe { dblk_release_unchecked(d) };
    let b = mdb_of_mblk(mp);
    // Back to the constructed state: `dupb` changed the message block's `b_datap` and its
    // unused data block's class and halves (`b_next`/`b_prev` are NULL, tested by
    // `free_fast`; the other message block fields vary and `init_fast` writes them).
    // SAFETY: the block's only live half was `mp`'s message block, released above; both
    // halves hold initialised values.
    let own = unsafe { &mut *dblk_of(b) };
    own.db_class = DbClass::Fast;
    own.db_halves = RefCount::new(2);
    // SAFETY: as above.
    unsafe { (*mp).b_datap = dblk_of(b) };
    // SAFETY: as above; a `dupb` block comes from the small cache.
    unsafe { kmem_cache_free(&env.cache, b.cast()) };
    env
}

/// Frees one message block; returns the environment to kick bufcalls in, or `None` when a
/// misuse was reported and the free refused.
///
/// # Safety
/// As [`freeb`].
#[inline]
#[track_caller]
pub(crate) unsafe fn free_one(call: &'static str, mp: *mut Mblk) -> Option<&'static MsgEnv> {
    // SAFETY: forwarded contract.
    match unsafe { free_fast(mp) } {
        Some(env) => Some(env),
        // SAFETY: forwarded contract.
        None => unsafe { free_general(call, mp) },
    }
}

/// [`free_one`] for every case [`free_fast`] does not take.
///
/// # Safety
/// As [`freeb`].
#[inline(never)]
#[track_caller]
unsafe fn free_general(call: &'static str, mp: *mut Mblk) -> Option<&'static MsgEnv> {
    if !env::check_live(call, mp) {
        return None;
    }
    // SAFETY: `mp` is an allocated message block (caller; verified when checking).
    let m = unsafe { &mut *mp };
    let own = mdb_of_mblk(mp);
    // SAFETY: the block is allocated while its message block half is, which `mp` is.
    let own_env: &'static MsgEnv = unsafe { (*dblk_of(own)).db_env };
    if !m.b_next.is_null() || !m.b_prev.is_null() || m.b_pad1 & crate::queue::MBLK_QUEUED != 0 {
        still_queued(call, mp, own_env);
        return None;
    }
    env::forget(mp);
    let d = m.b_datap;
    // SAFETY: `mp` holds a reference to `d`, so it is live.
    let dref = unsafe { &*d };
    env::shared_release(call, dref, dref.db_ref());
    // LfS marks a message block unused by clearing b_datap.
    m.b_datap = std::ptr::null_mut();
    let d_block = mdb_of_dblk(d);
    // SAFETY: `mp` held a reference to `d`, given up here.
    let last = unsafe { (*d).db_ref.release() };
    if last && d_block == own {
        // Both halves of one block, released together by this thread: nobody else holds
        // either, so the block is freed without touching db_halves.
        // SAFETY: last reference to `d`.
        unsafe { free_data(d) };
        // SAFETY: neither half is in use.
        unsafe { block_free(own) };
    } else {
        // SAFETY: `mp`'s half of its block is released and not used again.
        unsafe { release_half(own) };
        if last {
            // SAFETY: last reference to `d`.
            unsafe { free_data(d) };
            // SAFETY: `d`'s half of its block is released.
            unsafe { release_half(d_block) };
        }
    }
    Some(own_env)
}

#[cold]
#[inline(never)]
#[track_caller]
fn still_queued(call: &'static str, mp: *mut Mblk, own_env: &'static MsgEnv) {
    env::checking().unwrap_or(own_env).misuse(StreamsError::StillQueued { call, addr: mp.addr() });
}

/// Frees a message block, and its data block with the last reference.
///
/// # Arguments
/// - `mp`: the message block, or NULL (ignored).
///
/// # Return
/// Nothing. With the last reference to the data block, its buffer is released (the free
/// routine of an esballoc'd block runs, once) and waiting buffer calls
/// ([`bufcall`](crate::bufcall)) run on this thread.
///
/// # Context
/// Any.
///
/// # Compatibility
/// LfS `freeb(9)` (lfs-lis.md §2.5) decrements `db_ref` under a global spinlock; here it is
/// one atomic decrement (illumos `dblk_decref`). `b_cont` is not followed (see
/// [`freemsg`]). A block still on a queue is always reported (illumos asserts
/// `b_next == b_prev == NULL`); a double free or a foreign block is reported in a checking
/// arena (LfS checks these only in debug builds).
///
/// # Safety
/// Unless the current arena checks: `mp` is NULL or an allocated message block, not used
/// afterwards. A checking arena reports a block that is not allocated and refuses the free
/// (until the same address is reused by a later allocation).
#[inline(always)]
#[track_caller]
pub unsafe fn freeb(mp: *mut Mblk) {
    if mp.is_null() {
        return;
    }
    // SAFETY: forwarded contract.
    match unsafe { free_fast(mp) } {
        Some(env) => env.bufcalls.kick(),
        // SAFETY: forwarded contract.
        None => unsafe { freeb_general(mp) },
    }
}

/// [`freeb`] when [`free_fast`] does not apply.
///
/// # Safety
/// As [`freeb`], `mp` not NULL.
#[inline(never)]
#[track_caller]
unsafe fn freeb_general(mp: *mut Mblk) {
    // SAFETY: forwarded contract.
    if let Some(env) = unsafe { free_general("freeb", mp) } {
        env.bufcalls.kick();
    }
}

/// [`freemsg`] inlined for a one-block message: the fast path of [`freeb`] when the
/// message has no continuation, else the general loop (what a dropped [`Msg`](crate::Msg)
/// calls).
///
/// # Safety
/// As [`freemsg`].
#[inline(always)]
#[track_caller]
pub(crate) unsafe fn freemsg_inline(mp: *mut Mblk) {
    // The continuation is read only once no arena checks: a checking arena verifies `mp`
    // before anything is read from it (in `freemsg`).
    // SAFETY: unless an arena checks, `mp` is an allocated message block (the contract).
    if !mp.is_null() && !env::any_checking() && unsafe { (*mp).b_cont }.is_null() {
        // SAFETY: forwarded contract, no arena checks (tested above); a one-block message is
        // freed as `freeb` frees it.
        if let Some(env) = unsafe { free_fast_unchecking(mp) } {
            env.bufcalls.kick();
            return;
        }
    }
    // SAFETY: forwarded contract.
    unsafe { freemsg(mp) }
}

/// Frees every block of a message (`freeb` along `b_cont`).
///
/// # Arguments
/// - `mp`: the first block, or NULL (ignored).
///
/// # Return
/// Nothing; as [`freeb`] for each block. Buffer calls run once, after the whole message
/// is freed.
///
/// # Context
/// Any.
///
/// # Compatibility
/// LfS `freemsg(9)`, an inline loop of `freeb` in `stream.h`.
///
/// # Safety
/// As [`freeb`], for every block of the message.
#[track_caller]
pub unsafe fn freemsg(mut mp: *mut Mblk) {
    let mut kick: Option<&'static MsgEnv> = None;
    while !mp.is_null() {
        if !env::check_live("freemsg", mp) {
            break;
        }
        // SAFETY: an allocated block (caller; verified when checking).
        let next = unsafe { (*mp).b_cont };
        // SAFETY: forwarded contract.
        match unsafe { free_one("freemsg", mp) } {
            Some(env) => kick = Some(env),
            None => break,
        }
        mp = next;
    }
    if let Some(env) = kick {
        env.bufcalls.kick();
    }
}
