//! The combined block, the `allocb` family, `dupb`, and the free path (`freeb`, `freemsg`).

use crate::dblk::{DB_REF_MAX, DbClass, Dblk, Frtn, M_DATA, RefCount};
use crate::env::{self, MsgEnv};
use crate::error::StreamsError;
use crate::mblk::Mblk;
use ddi_kmem::{KM_NOSLEEP, KM_SLEEP, KmFlags, kmem_cache_alloc, kmem_cache_free};
use std::mem::{offset_of, size_of};

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
#[track_caller]
pub fn allocb(size: usize, pri: u32) -> *mut Mblk {
    let env = env::current();
    if pri & 0xff == BPRI_WAITOK && ddi_kmem::in_interrupt() {
        env.misuse(StreamsError::SleepInInterrupt { call: "allocb(BPRI_WAITOK)" });
        return std::ptr::null_mut();
    }
    allocb_in(env, size, pri_flags(pri))
}

pub(crate) fn allocb_in(env: &'static MsgEnv, size: usize, flags: KmFlags) -> *mut Mblk {
    let mp = if size <= FASTBUF {
        new_message(env, flags, |buf| DbInit {
            base: buf,
            lim: buf.wrapping_add(FASTBUF),
            class: DbClass::Fast,
            size,
            frtn: NO_FRTN,
            halves: 2,
        })
    } else {
        let Some(extent) = env.arena.extent(size) else {
            tracing::debug!(size, "allocb: size beyond the largest kmem class: NULL");
            return std::ptr::null_mut();
        };
        // The whole extent is requested, so the slack up to db_lim is the caller's in a
        // checking arena too (its redzone starts after the requested size).
        let buf = env.kmem_alloc(extent, flags);
        if buf.is_null() {
            tracing::debug!(size, "allocb: kmem_alloc failed: NULL");
            return std::ptr::null_mut();
        }
        let mp = new_message(env, flags, |_| DbInit {
            base: buf,
            lim: buf.wrapping_add(extent),
            class: DbClass::Kmem,
            size,
            frtn: NO_FRTN,
            halves: 2,
        });
        if mp.is_null() {
            // SAFETY: `buf` came from this arena's alloc(extent) above and is unused.
            unsafe { env.kmem_free(buf, extent) };
        }
        mp
    };
    if mp.is_null() {
        tracing::debug!(size, "allocb: no memory: NULL");
    }
    mp
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
    let Some(b) = block_alloc(env, KM_NOSLEEP) else {
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
    let unused = DbInit {
        base: std::ptr::null_mut(),
        lim: std::ptr::null_mut(),
        class: DbClass::Unused,
        size: 0,
        frtn: NO_FRTN,
        halves: 1,
    };
    // SAFETY: `b` is fresh from env's cache.
    unsafe { init_dblk(b, env, unused) };
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
    // SAFETY: the block is still allocated; `db_env` is set on every block.
    let env: &MsgEnv = unsafe { (*dblk_of(b)).db_env };
    // SAFETY: `b` came from this environment's cache and is freed once (caller).
    unsafe { kmem_cache_free(&env.cache, b.cast()) };
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
        DbClass::Fast | DbClass::Unused => {}
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

/// Frees one message block; returns the environment to kick bufcalls in, or `None` when a
/// misuse was reported and the free refused.
///
/// # Safety
/// As [`freeb`].
#[track_caller]
pub(crate) unsafe fn free_one(call: &'static str, mp: *mut Mblk) -> Option<&'static MsgEnv> {
    if !env::check_live(call, mp) {
        return None;
    }
    // SAFETY: `mp` is an allocated message block (caller; verified when checking).
    let m = unsafe { &mut *mp };
    let own = mdb_of_mblk(mp);
    // SAFETY: the block is allocated while its message block half is, which `mp` is.
    let own_env: &'static MsgEnv = unsafe { (*dblk_of(own)).db_env };
    if !m.b_next.is_null() || !m.b_prev.is_null() || m.b_pad1 & crate::queue::MBLK_QUEUED != 0 {
        env::checking().unwrap_or(own_env).misuse(StreamsError::StillQueued { call, addr: mp.addr() });
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
#[track_caller]
pub unsafe fn freeb(mp: *mut Mblk) {
    if mp.is_null() {
        return;
    }
    // SAFETY: forwarded contract.
    if let Some(env) = unsafe { free_one("freeb", mp) } {
        env.bufcalls.kick();
    }
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
