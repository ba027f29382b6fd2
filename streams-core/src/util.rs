//! Message utilities: copying, duplicating, linking, sizing, pulling up and trimming.

use crate::alloc::{BPRI_MED, allocb, dblk_release, dupb, freeb, freemsg, new_dblk};
use crate::dblk::{M_DATA, MsgType};
use crate::env;
use crate::mblk::Mblk;
use ddi_kmem::{CACHE_LINE, KM_CACHEALIGN, KM_NOSLEEP};
use std::ptr;

/// The bytes `b_rptr..b_wptr` of a block (0 if negative).
///
/// # Safety
/// `mp` is an allocated message block.
#[inline]
unsafe fn blen(mp: *const Mblk) -> usize {
    // SAFETY: caller.
    unsafe { (*mp).len() }
}

/// The type of a block's data.
///
/// # Safety
/// `mp` is an allocated message block.
#[inline]
unsafe fn btype(mp: *const Mblk) -> MsgType {
    // SAFETY: caller.
    let d = unsafe { (*mp).b_datap };
    // SAFETY: an allocated block refers to a live data block.
    unsafe { (*d).db_type }
}

/// The next block.
///
/// # Safety
/// `mp` is an allocated message block.
#[inline]
unsafe fn next(mp: *const Mblk) -> *mut Mblk {
    // SAFETY: caller.
    unsafe { (*mp).b_cont }
}

/// Copies a message block into a new one.
///
/// # Arguments
/// - `mp`: the block.
///
/// # Return
/// A new block, from `allocb(b_wptr - b_rptr, BPRI_MED)`, holding a copy of the unread
/// bytes, with `mp`'s `db_type`, `b_band`, `b_flag` and `b_csum`; or NULL when memory is
/// short. `b_cont` is not followed.
///
/// # Context
/// Any.
///
/// # Compatibility
/// LfS `copyb(9)` copies only `b_rptr..b_wptr` and does not keep the offset ("Unlike LiS we
/// do not align the copy"); Solaris copies the whole buffer and keeps the offset (illumos.md
/// §3). AIX copies `b_band` but not `b_flag`; old LiS copied neither (§2.8).
///
/// # Safety
/// `mp` is NULL or an allocated message block (a checking arena reports one that is not).
#[track_caller]
pub unsafe fn copyb(mp: *mut Mblk) -> *mut Mblk {
    if mp.is_null() || !env::check_live("copyb", mp) {
        return ptr::null_mut();
    }
    // SAFETY: an allocated block (caller).
    let src = unsafe { &*mp };
    let len = src.len();
    let np = allocb(len, BPRI_MED);
    if np.is_null() {
        return np;
    }
    // SAFETY: `np` was just allocated and is exclusively ours.
    let dst = unsafe { &mut *np };
    if len > 0 {
        // SAFETY: `len` unread bytes of `mp` are readable; the new buffer has at least
        // `len` bytes of room; two distinct buffers.
        unsafe { ptr::copy_nonoverlapping(src.b_rptr, dst.b_wptr, len) };
        dst.b_wptr = dst.b_wptr.wrapping_add(len);
    }
    // SAFETY: the new data block is unshared and ours.
    unsafe { (*dst.b_datap).db_type = src.msg_type() };
    dst.b_band = src.b_band;
    dst.b_flag = src.b_flag;
    dst.b_csum = src.b_csum;
    np
}

/// Copies a whole message.
///
/// # Arguments
/// - `mp`: the first block.
///
/// # Return
/// A new message whose blocks are [`copyb`]s of `mp`'s, or NULL; on failure the partial
/// copy is freed and `mp` is untouched.
///
/// # Context
/// Any.
///
/// # Compatibility
/// LfS `copymsg` (both OS7-2009 and HEAD `stream.h`) calls `freemsg(mp)` on failure,
/// freeing the *original* and leaking the partial copy (lfs-lis.md §2.5). That is a bug and
/// is not reproduced: as Solaris, the partial copy is freed.
///
/// # Safety
/// `mp` is NULL or an allocated message.
#[track_caller]
pub unsafe fn copymsg(mp: *mut Mblk) -> *mut Mblk {
    // SAFETY: forwarded contract.
    unsafe { each_block("copymsg", mp, copyb) }
}

/// Duplicates a whole message: [`dupb`] of every block.
///
/// # Arguments
/// - `mp`: the first block.
///
/// # Return
/// A new message sharing `mp`'s data blocks, or NULL; on failure the partial copy is freed.
///
/// # Context
/// Any.
///
/// # Compatibility
/// LfS `dupmsg(9)`; Solaris is all-or-nothing too.
///
/// # Safety
/// `mp` is NULL or an allocated message.
#[track_caller]
pub unsafe fn dupmsg(mp: *mut Mblk) -> *mut Mblk {
    // SAFETY: forwarded contract.
    unsafe { each_block("dupmsg", mp, dupb) }
}

/// Builds a new message with `f` of every block; all or nothing.
///
/// # Safety
/// `mp` is NULL or an allocated message; `f` is sound for each of its blocks.
unsafe fn each_block(call: &'static str, mp: *mut Mblk, f: unsafe fn(*mut Mblk) -> *mut Mblk) -> *mut Mblk {
    if mp.is_null() || !env::check_live(call, mp) {
        return ptr::null_mut();
    }
    // SAFETY: `mp` is allocated (caller).
    let head = unsafe { f(mp) };
    if head.is_null() {
        return head;
    }
    let mut tail = head;
    // SAFETY: `mp` is allocated.
    let mut src = unsafe { next(mp) };
    while !src.is_null() {
        // SAFETY: `src` is a block of the allocated message.
        let nb = unsafe { f(src) };
        if nb.is_null() {
            tracing::debug!(call, "no memory: freeing the partial copy");
            // SAFETY: the partial copy is ours, allocated above, and not used again.
            unsafe { freemsg(head) };
            return ptr::null_mut();
        }
        // SAFETY: `tail` is a block of the new message, ours.
        unsafe { (*tail).b_cont = nb };
        tail = nb;
        // SAFETY: `src` is a block of the allocated message `mp`.
        src = unsafe { next(src) };
    }
    head
}

/// Appends `mp2` to the end of message `mp1`.
///
/// # Arguments
/// - `mp1`: the message to extend.
/// - `mp2`: the message to append.
///
/// # Return
/// Nothing.
///
/// # Context
/// Any.
///
/// # Compatibility
/// SVR4 `linkb(9)`, the same everywhere.
///
/// # Safety
/// `mp1` is an allocated message and `mp2` an allocated message not part of it; `mp2` is
/// owned by `mp1` afterwards.
pub unsafe fn linkb(mp1: *mut Mblk, mp2: *mut Mblk) {
    if mp1.is_null() || !env::check_live("linkb", mp1) {
        return;
    }
    let mut mp = mp1;
    loop {
        // SAFETY: a block of the allocated message `mp1`.
        let n = unsafe { next(mp) };
        if n.is_null() {
            break;
        }
        mp = n;
    }
    // SAFETY: the last block of `mp1`.
    unsafe { (*mp).b_cont = mp2 };
}

/// Detaches the first block of a message.
///
/// # Arguments
/// - `mp`: the message, or NULL.
///
/// # Return
/// The rest of the message (the old `b_cont`), or NULL. `mp->b_cont` becomes NULL.
///
/// # Context
/// Any.
///
/// # Compatibility
/// SVR4 `unlinkb(9)`; NULL-safe as LfS.
///
/// # Safety
/// `mp` is NULL or an allocated message block.
pub unsafe fn unlinkb(mp: *mut Mblk) -> *mut Mblk {
    if mp.is_null() || !env::check_live("unlinkb", mp) {
        return ptr::null_mut();
    }
    // SAFETY: an allocated block (caller).
    let m = unsafe { &mut *mp };
    std::mem::replace(&mut m.b_cont, ptr::null_mut())
}

/// The value [`rmvb`] returns when the block is not in the message: `(mblk_t *)-1`.
pub fn rmvb_not_found() -> *mut Mblk {
    ptr::without_provenance_mut(usize::MAX)
}

/// Removes one block from a message.
///
/// # Arguments
/// - `mp`: the message.
/// - `bp`: the block to remove.
///
/// # Return
/// The message without `bp` (its new first block, NULL if `bp` was the only block), or
/// [`rmvb_not_found`] (`(mblk_t *)-1`) if `bp` is not in it. `bp` is not freed; its `b_cont`
/// becomes NULL.
///
/// # Context
/// Any.
///
/// # Compatibility
/// SVR4 `rmvb(9)`; LfS and illumos both return `(mblk_t *)-1` when not found.
///
/// # Safety
/// `mp` is an allocated message; `bp` is not dereferenced unless found in it.
pub unsafe fn rmvb(mp: *mut Mblk, bp: *mut Mblk) -> *mut Mblk {
    if mp.is_null() || !env::check_live("rmvb", mp) {
        return rmvb_not_found();
    }
    let mut prev: *mut Mblk = ptr::null_mut();
    let mut cur = mp;
    while !cur.is_null() {
        // SAFETY: a block of the allocated message.
        let n = unsafe { next(cur) };
        if cur == bp {
            // SAFETY: `bp` is a block of the message.
            unsafe { (*bp).b_cont = ptr::null_mut() };
            if prev.is_null() {
                return n;
            }
            // SAFETY: `prev` is a block of the message.
            unsafe { (*prev).b_cont = n };
            return mp;
        }
        prev = cur;
        cur = n;
    }
    rmvb_not_found()
}

/// Sums over a message's blocks.
///
/// # Safety
/// `mp` is NULL or an allocated message.
unsafe fn sum(mp: *const Mblk, mut f: impl FnMut(&Mblk) -> Option<usize>) -> usize {
    let mut n = 0;
    let mut b = mp;
    while !b.is_null() {
        // SAFETY: a block of the allocated message.
        let blk = unsafe { &*b };
        match f(blk) {
            Some(k) => n += k,
            None => break,
        }
        b = blk.b_cont;
    }
    n
}

/// The number of data bytes in a message: unread bytes of its `M_DATA` blocks.
///
/// # Arguments
/// - `mp`: the message, or NULL (0).
///
/// # Return
/// Σ max(0, `b_wptr - b_rptr`) over the `M_DATA` blocks.
///
/// # Context
/// Any.
///
/// # Compatibility
/// LfS, LiS and illumos `msgdsize(9)` count `M_DATA` blocks only.
///
/// # Safety
/// `mp` is NULL or an allocated message.
pub unsafe fn msgdsize(mp: *const Mblk) -> usize {
    if !mp.is_null() && !env::check_live("msgdsize", mp) {
        return 0;
    }
    // SAFETY: every block visited is a block of the allocated message.
    unsafe { sum(mp, |b| Some(if b.msg_type() == M_DATA { b.len() } else { 0 })) }
}

/// The number of unread bytes in a message, over blocks of every type.
///
/// # Arguments
/// - `mp`: the message, or NULL (0).
///
/// # Return
/// Σ max(0, `b_wptr - b_rptr`) over all blocks; what queue accounting counts.
///
/// # Context
/// Any.
///
/// # Compatibility
/// LfS `msgsize(9)`. LiS `lis_msgsize` sums buffer capacities (`db_lim - db_base`) instead,
/// "No other implementation has this bug" (lfs-lis.md §4.2).
///
/// # Safety
/// `mp` is NULL or an allocated message.
pub unsafe fn msgsize(mp: *const Mblk) -> usize {
    if !mp.is_null() && !env::check_live("msgsize", mp) {
        return 0;
    }
    // SAFETY: every block visited is a block of the allocated message.
    unsafe { sum(mp, |b| Some(b.len())) }
}

/// The number of unread bytes in the leading blocks of the first block's type.
///
/// # Arguments
/// - `mp`: the message, or NULL (0).
///
/// # Return
/// Σ max(0, `b_wptr - b_rptr`) until the first block of another type.
///
/// # Context
/// Any.
///
/// # Compatibility
/// LfS and illumos `xmsgsize`.
///
/// # Safety
/// `mp` is NULL or an allocated message.
pub unsafe fn xmsgsize(mp: *const Mblk) -> usize {
    if mp.is_null() || !env::check_live("xmsgsize", mp) {
        return 0;
    }
    // SAFETY: `mp` is allocated.
    let ty = unsafe { btype(mp) };
    // SAFETY: every block visited is a block of the allocated message.
    unsafe { sum(mp, |b| (b.msg_type() == ty).then(|| b.len())) }
}

/// Makes the first `len` bytes of a message contiguous and cache-aligned in its first block.
///
/// # Arguments
/// - `mp`: the message.
/// - `len`: the bytes wanted in the first block; -1 for all the leading bytes of the first
///   block's type.
///
/// # Return
/// 1 on success, 0 on failure: `mp` NULL, `len < -1`, fewer than `len` leading bytes of
/// the first block's type, or no memory (then the message is unchanged).
///
/// On success the first message block (the same `mp`) refers to a new data block holding
/// the bytes, from `kmem_alloc(.., KM_NOSLEEP | KM_CACHEALIGN)`; the old data block loses a
/// reference (its free routine may run). Later blocks whose bytes were all absorbed are
/// unlinked and freed; a partly absorbed block keeps its remaining bytes. Nothing changes if
/// the first block already holds `len` bytes at a cache-aligned `b_rptr`.
///
/// # Context
/// Any.
///
/// # Compatibility
/// LfS `pullupmsg(9)` (lfs-lis.md §2.6): the man page says absorbed blocks get `b_wptr =
/// b_rptr`, its NOTICES that they are freed; they are freed here, as illumos does. Solaris
/// calls `msgpullup` the DKI-compliant replacement; UnixWare warns `pullupmsg` can panic MP.
///
/// # Safety
/// `mp` is NULL or an allocated message, whose first block the caller owns.
#[track_caller]
pub unsafe fn pullupmsg(mp: *mut Mblk, len: isize) -> i32 {
    if mp.is_null() || len < -1 || !env::check_live("pullupmsg", mp) {
        return 0;
    }
    // SAFETY: `mp` is allocated.
    let total = unsafe { xmsgsize(mp) };
    let want = if len == -1 { total } else { len.unsigned_abs() };
    if want > total {
        return 0;
    }
    // SAFETY: `mp` is allocated and the caller's.
    let m = unsafe { &mut *mp };
    let first = m.len();
    if first >= want && (want == 0 || m.b_rptr.addr() % CACHE_LINE == 0) {
        return 1;
    }
    let ty = m.msg_type();
    let size = want.max(first);
    let env = env::current();
    let buf = env.kmem_alloc(size, KM_NOSLEEP | KM_CACHEALIGN);
    if buf.is_null() {
        tracing::debug!(size, "pullupmsg: kmem_alloc failed");
        return 0;
    }
    let Some(nd) = new_dblk(env, KM_NOSLEEP, buf, size) else {
        tracing::debug!(size, "pullupmsg: no block for the data block");
        // SAFETY: `buf` came from this arena's alloc(size) and is unused.
        unsafe { env.kmem_free(buf, size) };
        return 0;
    };
    // SAFETY: the new data block is exclusively ours.
    unsafe { (*nd).db_type = ty };
    // Copy the first block whole, then from the following ones until `size` bytes.
    let mut copied = 0;
    let mut b: *mut Mblk = mp;
    let mut prev: *mut Mblk = ptr::null_mut();
    while copied < size {
        // SAFETY: `b` is a block of the allocated message (the byte count guarantees the
        // chain holds `size` bytes of this type).
        let blk = unsafe { &mut *b };
        let n = blk.len().min(size - copied);
        if n > 0 {
            // SAFETY: `n` unread bytes of `blk`; room for them in the new buffer; distinct
            // buffers.
            unsafe { ptr::copy_nonoverlapping(blk.b_rptr, buf.wrapping_add(copied), n) };
            blk.b_rptr = blk.b_rptr.wrapping_add(n);
            copied += n;
        }
        let after = blk.b_cont;
        if b != mp && blk.is_empty() {
            // Absorbed: unlink and free (prev is the block before, never NULL here).
            // SAFETY: `prev` is a block of the message.
            unsafe { (*prev).b_cont = after };
            blk.b_cont = ptr::null_mut();
            // SAFETY: `b` is unlinked, allocated, and not used again.
            unsafe { freeb(b) };
        } else {
            prev = b;
        }
        b = after;
    }
    // SAFETY: `mp` is allocated and ours; re-derived because the loop above reborrowed it.
    let m = unsafe { &mut *mp };
    let old = m.b_datap;
    m.b_datap = nd;
    m.b_rptr = buf;
    m.b_wptr = buf.wrapping_add(size);
    // SAFETY: `mp` held a reference to `old`, given up here.
    unsafe { dblk_release("pullupmsg", old) };
    1
}

/// Copies the leading bytes of a message into a new message, leaving the original alone.
///
/// # Arguments
/// - `mp`: the message.
/// - `len`: bytes to make contiguous; -1 for all the leading bytes of the first block's
///   type.
///
/// # Return
/// A new message whose first block holds the first `len` bytes (from `allocb(len,
/// BPRI_MED)`), followed by duplicates (`dupb`) of what remains; or NULL if there are fewer
/// than `len` leading bytes of the first block's type, `len < -1`, or memory is short.
///
/// # Context
/// Any.
///
/// # Compatibility
/// LfS `msgpullup(9)` copies exactly `len` bytes; illumos copies all leading same-type bytes
/// and uses `len` only for the check (illumos.md §3). SUPER-UX fails on the same-type rule;
/// AIX, OSF/1 and UXP/V do not document `msgpullup`.
///
/// # Safety
/// `mp` is NULL or an allocated message.
#[track_caller]
pub unsafe fn msgpullup(mp: *mut Mblk, len: isize) -> *mut Mblk {
    if mp.is_null() || len < -1 || !env::check_live("msgpullup", mp) {
        return ptr::null_mut();
    }
    // SAFETY: `mp` is allocated.
    let total = unsafe { xmsgsize(mp) };
    let want = if len == -1 { total } else { len.unsigned_abs() };
    if want > total {
        return ptr::null_mut();
    }
    let np = allocb(want, BPRI_MED);
    if np.is_null() {
        return np;
    }
    // SAFETY: `np` is new and ours.
    let dst = unsafe { &mut *np };
    // SAFETY: `mp` is allocated.
    let src0 = unsafe { &*mp };
    // SAFETY: the new data block is unshared and ours.
    unsafe { (*dst.b_datap).db_type = src0.msg_type() };
    dst.b_band = src0.b_band;
    dst.b_flag = src0.b_flag;
    let mut copied = 0;
    let mut b: *mut Mblk = mp;
    let mut tail = np;
    while copied < want {
        // SAFETY: a block of the leading run of the allocated message (which holds `want`
        // bytes); read only.
        let blk = unsafe { &*b };
        let n = blk.len().min(want - copied);
        if n > 0 {
            // SAFETY: `n` readable bytes; room in the new buffer; distinct buffers.
            unsafe { ptr::copy_nonoverlapping(blk.b_rptr, dst.b_wptr, n) };
            dst.b_wptr = dst.b_wptr.wrapping_add(n);
            copied += n;
        }
        if n < blk.len() {
            // The rest of a partly copied block is shared, not copied.
            // SAFETY: `b` is allocated.
            let d = unsafe { dupb(b) };
            if d.is_null() {
                // SAFETY: the new message is ours.
                unsafe { freemsg(np) };
                return ptr::null_mut();
            }
            // SAFETY: `d` is new and ours.
            let dm = unsafe { &mut *d };
            dm.b_rptr = dm.b_rptr.wrapping_add(n);
            if tail == np {
                dst.b_cont = d;
            } else {
                // SAFETY: `tail` is the last block of the new message, not its head.
                unsafe { (*tail).b_cont = d };
            }
            tail = d;
        }
        b = blk.b_cont;
    }
    if !b.is_null() {
        // SAFETY: `b` is the rest of the allocated message.
        let rest = unsafe { dupmsg(b) };
        if rest.is_null() {
            // SAFETY: the new message is ours.
            unsafe { freemsg(np) };
            return ptr::null_mut();
        }
        // SAFETY: `tail` is the last block of the new message.
        unsafe { (*tail).b_cont = rest };
    }
    np
}

/// Trims bytes from the head (`len > 0`) or the tail (`len < 0`) of a message.
///
/// # Arguments
/// - `mp`: the message.
/// - `len`: bytes to trim; positive from the head, negative from the tail.
///
/// # Return
/// 1 on success (also for `len == 0`); 0 if `mp` is NULL or the message has fewer than
/// `|len|` bytes in the run of blocks of the same type as the block where the trim starts
/// (the first block for the head, the last for the tail). A trim never crosses into a block
/// of another type; blocks emptied are left in place as zero-length blocks.
///
/// # Context
/// Any.
///
/// # Compatibility
/// LfS, IRIX, UnixWare and LiS keep emptied blocks; Solaris "may free" them (illumos frees
/// all but the first); AIX does nothing for `len == 0` (lfs-lis.md §2.6, §2.8).
///
/// # Safety
/// `mp` is NULL or an allocated message whose blocks the caller owns.
pub unsafe fn adjmsg(mp: *mut Mblk, len: isize) -> i32 {
    if len == 0 {
        return 1;
    }
    if mp.is_null() || !env::check_live("adjmsg", mp) {
        return 0;
    }
    let mut n = len.unsigned_abs();
    if len > 0 {
        // SAFETY: `mp` is allocated.
        if unsafe { xmsgsize(mp) } < n {
            return 0;
        }
        let mut b = mp;
        while n > 0 {
            // SAFETY: a block of the leading run, which holds enough bytes.
            let blk = unsafe { &mut *b };
            let k = blk.len().min(n);
            blk.b_rptr = blk.b_rptr.wrapping_add(k);
            n -= k;
            b = blk.b_cont;
        }
        return 1;
    }
    // The tail: the trailing run of the last block's type.
    let mut blocks = Vec::new();
    let mut b = mp;
    while !b.is_null() {
        blocks.push(b);
        // SAFETY: a block of the allocated message.
        b = unsafe { next(b) };
    }
    let last = *blocks.last().expect("mp is not NULL");
    // SAFETY: `last` is allocated.
    let ty = unsafe { btype(last) };
    let mut run = 0;
    for &b in blocks.iter().rev() {
        // SAFETY: every block in `blocks` is allocated.
        if unsafe { btype(b) } != ty {
            break;
        }
        // SAFETY: as above.
        run += unsafe { blen(b) };
    }
    if run < n {
        return 0;
    }
    for &b in blocks.iter().rev() {
        if n == 0 {
            break;
        }
        // SAFETY: a block of the trailing run, owned by the caller.
        let blk = unsafe { &mut *b };
        let k = blk.len().min(n);
        blk.b_wptr = blk.b_wptr.wrapping_sub(k);
        n -= k;
    }
    1
}
