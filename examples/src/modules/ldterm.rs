//! `ldterm`: a small line discipline, ported the way a C module is ported.
//!
//! This file is written as a porter of a C STREAMS module writes it: a `streamtab` of two
//! `qinit`s with raw procedures, private state in `q_ptr` allocated in `open` with
//! `kmem_zalloc` and freed in `close`, messages as `*mut Mblk` handled with the DDI functions
//! (`allocb`, `freemsg`, `putnext`, `qreply`, `miocack`, `miocnak`, `flushq`). Each block
//! carries, in a comment, the C it stands for. It is registered with a queue-pair perimeter
//! (`D_MTQPAIR`): the read and write sides never run at once, so the state needs no lock —
//! as in the C.
//!
//! What it does (a subset of Solaris `ldterm(4M)` canonical mode):
//! - read side, `M_DATA`: bytes are assembled into a line; the erase character
//!   (`c_cc[VERASE]`, default backspace 0x08) removes the last byte of the line, the kill
//!   character (`c_cc[VKILL]`, default 0x15, `^U`) the whole line; a newline completes the
//!   line, which goes upstream as one `M_DATA` (newline included). A line longer than
//!   [`LDTERM_LINE_MAX`] is sent as it is when full (as `MAX_CANON` overflow).
//! - read side, `M_FLUSH` with `FLUSHR`: the partial line is discarded too.
//! - write side, `M_IOCTL` [`TCGETA`]: acknowledged with the current [`Termio`] (8 bytes of
//!   `c_cc`) in the reply's data; [`TCSETA`]: sets the control characters from the ioctl's
//!   data (`EINVAL` if it is shorter than a `Termio`). Other ioctls pass down (the driver
//!   answers them).
//! - everything else passes through.

use ddi_kmem::{KM_SLEEP, kmem_free, kmem_zalloc};
use std::ffi::c_void;
use std::ptr::null_mut;
use streams_core::{
    BPRI_MED, Cred, Dev, EINVAL, ENOMEM, ENXIO, FLUSHDATA, FLUSHR, FLUSHW, INFPSZ, Iocblk, Kind, M_DATA, M_FLUSH,
    M_IOCTL, MODOPEN, Mblk, ModuleInfo, QInit, Queue, StreamTab, Streams, StreamsError, SyncLevel, WR, allocb, flushq,
    freemsg, miocack, miocnak, msgdsize, putnext, qprocsoff, qprocson,
};

/// `TCGETA`: get the control characters (`('T' << 8) | 1`, as SVR4 `termio.h`).
pub const TCGETA: i32 = (b'T' as i32) << 8 | 1;
/// `TCSETA`: set the control characters.
pub const TCSETA: i32 = (b'T' as i32) << 8 | 2;
/// Index of the erase character in `c_cc` (SVR4 `VERASE`).
pub const VERASE: usize = 2;
/// Index of the kill (erase line) character (SVR4 `VKILL`).
pub const VKILL: usize = 3;
/// Longest line assembled before it is sent as it is (`MAX_CANON`, 256 on SVR4).
pub const LDTERM_LINE_MAX: usize = 256;
/// Default erase character: backspace.
pub const CERASE: u8 = 0x08;
/// Default kill character: `^U`.
pub const CKILL: u8 = 0x15;

/// The `termio` subset this ldterm knows: the control characters (`NCC` = 8).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub struct Termio {
    /// Control characters; [`VERASE`] and [`VKILL`] are used.
    pub c_cc: [u8; 8],
}

/// Per-stream state (C: `struct ldterm_state`, hung off `q_ptr` of both queues).
#[repr(C)]
struct LdtermState {
    /// The control characters.
    t: Termio,
    /// The line being assembled (NULL: none yet).
    line: *mut Mblk,
}

static LDTERM_MINFO: ModuleInfo =
    ModuleInfo { mi_idnum: 5004, mi_idname: "ldterm", mi_minpsz: 0, mi_maxpsz: INFPSZ, mi_hiwat: 5120, mi_lowat: 1024 };

/// C: `static struct qinit ldtermrinit = { ldtermrput, NULL, ldtermopen, ldtermclose, NULL, &ldtermmiinfo };`
static LDTERM_RINIT: QInit = QInit {
    qi_putp: Some(ldtermrput),
    qi_srvp: None,
    qi_qopen: Some(ldtermopen),
    qi_qclose: Some(ldtermclose),
    qi_minfo: &LDTERM_MINFO,
};
/// C: `static struct qinit ldtermwinit = { ldtermwput, NULL, NULL, NULL, NULL, &ldtermmiinfo };`
static LDTERM_WINIT: QInit =
    QInit { qi_putp: Some(ldtermwput), qi_srvp: None, qi_qopen: None, qi_qclose: None, qi_minfo: &LDTERM_MINFO };
/// C: `struct streamtab ldterminfo = { &ldtermrinit, &ldtermwinit };`
pub static LDTERM_INFO: StreamTab = StreamTab { st_rdinit: &LDTERM_RINIT, st_wrinit: &LDTERM_WINIT };

/// Registers `ldterm` with an executive (C: the `fmodsw` entry with `D_MTQPAIR`).
///
/// # Errors
/// As [`Streams::register_raw`].
pub fn register(sx: &Streams) -> Result<(), StreamsError> {
    sx.register_raw(&LDTERM_INFO, Kind::Module, SyncLevel::QueuePair)
}

/// C: `static int ldtermopen(queue_t *q, dev_t *devp, int oflag, int sflag, cred_t *crp)`
unsafe fn ldtermopen(q: *mut Queue, _devp: *mut Dev, _oflag: i32, sflag: i32, _crp: *const Cred) -> i32 {
    // if (sflag != MODOPEN) return (ENXIO);
    if sflag != MODOPEN {
        return ENXIO;
    }
    // tp = kmem_zalloc(sizeof (ldterm_state_t), KM_SLEEP);
    let tp = kmem_zalloc(size_of::<LdtermState>(), KM_SLEEP).cast::<LdtermState>();
    if tp.is_null() {
        return ENOMEM;
    }
    debug_assert!(tp.is_aligned(), "internal: kmem_zalloc returned memory unaligned for the state");
    let mut cc = [0u8; 8];
    cc[VERASE] = CERASE;
    cc[VKILL] = CKILL;
    // tp->t_modes.c_cc[VERASE] = CERASE; ... tp->t_line = NULL;
    // SAFETY: `tp` is a fresh, aligned allocation of the state's size, ours alone.
    unsafe { tp.write(LdtermState { t: Termio { c_cc: cc }, line: null_mut() }) };
    // q->q_ptr = WR(q)->q_ptr = tp;
    // SAFETY: `q` is the read queue of the pair being opened.
    unsafe { (*q).set_ptr(tp.cast::<c_void>()) };
    // SAFETY: as above.
    let wq = unsafe { WR(q) };
    // SAFETY: `wq` is the write queue of the same live pair.
    unsafe { (*wq).set_ptr(tp.cast::<c_void>()) };
    // qprocson(q);
    // SAFETY: the pair being opened; turns its procedures on.
    unsafe { qprocson(q) };
    0
}

/// C: `static int ldtermclose(queue_t *q, int oflag, cred_t *crp)`
unsafe fn ldtermclose(q: *mut Queue, _oflag: i32, _crp: *const Cred) -> i32 {
    // qprocsoff(q);
    // SAFETY: the read queue of the pair being closed.
    unsafe { qprocsoff(q) };
    // SAFETY: as above.
    let tp = unsafe { (*q).ptr() }.cast::<LdtermState>();
    if tp.is_null() {
        return 0;
    }
    // freemsg(tp->t_line);  (freemsg(NULL) is a no-op)
    // SAFETY: `tp` is the state open stored; procedures are off, nobody else uses it.
    let line = unsafe { (*tp).line };
    // SAFETY: the partial line is ours (or NULL).
    unsafe { freemsg(line) };
    // q->q_ptr = WR(q)->q_ptr = NULL; kmem_free(tp, sizeof (ldterm_state_t));
    // SAFETY: the pair being closed.
    unsafe { (*q).set_ptr(null_mut()) };
    // SAFETY: as above.
    let wq = unsafe { WR(q) };
    // SAFETY: as above.
    unsafe { (*wq).set_ptr(null_mut()) };
    // SAFETY: allocated by open with this size, freed once (q_ptr is cleared).
    unsafe { kmem_free(tp.cast::<c_void>(), size_of::<LdtermState>()) };
    0
}

/// Sends the assembled line (if any) upstream. C: `putnext(q, tp->t_line); tp->t_line = NULL;`
///
/// # Safety
/// `q` is ldterm's read queue inside a procedure; `tp` its state.
unsafe fn ldterm_sendline(q: *mut Queue, tp: *mut LdtermState) {
    // SAFETY: caller: the state, exclusive under the queue-pair perimeter.
    let line = unsafe { (*tp).line };
    if line.is_null() {
        return;
    }
    // SAFETY: as above.
    unsafe { (*tp).line = null_mut() };
    // SAFETY: a live read queue with stable plumbing; the line is ours to give away.
    unsafe { putnext(q, line) };
}

/// Canonical processing of one input byte.
///
/// # Safety
/// As [`ldterm_sendline`].
unsafe fn ldterm_byte(q: *mut Queue, tp: *mut LdtermState, c: u8) {
    // SAFETY: caller: the state.
    let st = unsafe { &mut *tp };
    if c == st.t.c_cc[VERASE] {
        // if (tp->t_line && tp->t_line->b_wptr > tp->t_line->b_rptr) tp->t_line->b_wptr--;
        // SAFETY: `line` is NULL or our own unshared message.
        if let Some(bp) = unsafe { st.line.as_mut() } {
            if bp.b_wptr > bp.b_rptr {
                bp.b_wptr = bp.b_wptr.wrapping_sub(1);
            }
        }
        return;
    }
    if c == st.t.c_cc[VKILL] {
        // if (tp->t_line) tp->t_line->b_wptr = tp->t_line->b_rptr;
        // SAFETY: as above.
        if let Some(bp) = unsafe { st.line.as_mut() } {
            bp.b_wptr = bp.b_rptr;
        }
        return;
    }
    if st.line.is_null() {
        // if ((tp->t_line = allocb(LDTERM_LINE_MAX, BPRI_MED)) == NULL) return; /* drop input */
        st.line = allocb(LDTERM_LINE_MAX, BPRI_MED);
        if st.line.is_null() {
            return;
        }
    }
    // SAFETY: non-NULL: our own unshared message of LDTERM_LINE_MAX bytes.
    let bp = unsafe { &mut *st.line };
    // *tp->t_line->b_wptr++ = c;
    // SAFETY: a line is sent before it is full (below), so there is room for one byte.
    unsafe { bp.b_wptr.write(c) };
    bp.b_wptr = bp.b_wptr.wrapping_add(1);
    // if (c == '\n' || MBLKTAIL(tp->t_line) == 0) ldterm_sendline(q, tp);
    if c == b'\n' || bp.tailroom() == 0 {
        // SAFETY: caller.
        unsafe { ldterm_sendline(q, tp) };
    }
}

/// C: `static int ldtermrput(queue_t *q, mblk_t *mp)`
unsafe fn ldtermrput(q: *mut Queue, mp: *mut Mblk) -> i32 {
    // SAFETY: our read queue; q_ptr set by open.
    let tp = unsafe { (*q).ptr() }.cast::<LdtermState>();
    // SAFETY: a put procedure owns its message.
    match unsafe { (*mp).msg_type() } {
        M_DATA => {
            // for (bp = mp; bp != NULL; bp = bp->b_cont)
            //     for (cp = bp->b_rptr; cp < bp->b_wptr; cp++) ldterm_byte(q, tp, *cp);
            let mut bp = mp;
            while !bp.is_null() {
                // SAFETY: a block of our message; its bytes are readable.
                let data = unsafe { (*bp).data() };
                for &c in data {
                    // SAFETY: inside our put procedure, under the perimeter.
                    unsafe { ldterm_byte(q, tp, c) };
                }
                // SAFETY: as above.
                bp = unsafe { (*bp).b_cont };
            }
            // freemsg(mp);
            // SAFETY: the input message is consumed; ours to free.
            unsafe { freemsg(mp) };
        }
        M_FLUSH => {
            // if (*mp->b_rptr & FLUSHR) { flushq(q, FLUSHDATA); freemsg(tp->t_line); tp->t_line = NULL; }
            // SAFETY: an M_FLUSH from the stream head or driver carries its flag byte.
            let flag = unsafe { (*mp).data() }.first().copied().unwrap_or(0);
            if flag & FLUSHR != 0 {
                // SAFETY: our live queue.
                unsafe { flushq(q, FLUSHDATA) };
                // SAFETY: the state; the partial line is ours.
                let line = unsafe { std::mem::replace(&mut (*tp).line, null_mut()) };
                // SAFETY: ours (or NULL).
                unsafe { freemsg(line) };
            }
            // putnext(q, mp);
            // SAFETY: passing the message on.
            unsafe { putnext(q, mp) };
        }
        // default: putnext(q, mp);
        // SAFETY: as above.
        _ => unsafe { putnext(q, mp) },
    }
    0
}

/// `TCGETA`/`TCSETA`. C: `static void ldterm_ioctl(queue_t *q, mblk_t *mp)`
///
/// # Safety
/// `q` is ldterm's write queue inside its put procedure; `mp` an `M_IOCTL` it owns, whose
/// command is `TCGETA` or `TCSETA`.
unsafe fn ldterm_ioctl(q: *mut Queue, mp: *mut Mblk, cmd: i32) {
    // SAFETY: caller: our write queue; q_ptr set by open.
    let tp = unsafe { (*q).ptr() }.cast::<LdtermState>();
    if cmd == TCGETA {
        // if ((datamp = allocb(sizeof (struct termio), BPRI_MED)) == NULL) { miocnak(q, mp, 0, ENOMEM); return; }
        let datamp = allocb(size_of::<Termio>(), BPRI_MED);
        if datamp.is_null() {
            // SAFETY: caller.
            unsafe { miocnak(q, mp, 0, ENOMEM) };
            return;
        }
        // *(struct termio *)datamp->b_wptr = tp->t_modes; datamp->b_wptr += sizeof (struct termio);
        // SAFETY: the state.
        let cc = unsafe { (*tp).t.c_cc };
        // SAFETY: a fresh message of size_of::<Termio>() bytes, ours alone.
        let db = unsafe { &mut *datamp };
        // SAFETY: room for the 8 bytes (allocb size); `cc` is a separate local.
        unsafe { db.b_wptr.copy_from_nonoverlapping(cc.as_ptr(), cc.len()) };
        db.b_wptr = db.b_wptr.wrapping_add(cc.len());
        // if (mp->b_cont) freemsg(mp->b_cont); mp->b_cont = datamp;
        // SAFETY: caller: the M_IOCTL is ours.
        let old = unsafe { std::mem::replace(&mut (*mp).b_cont, datamp) };
        // SAFETY: the old data (or NULL) is ours.
        unsafe { freemsg(old) };
        // miocack(q, mp, sizeof (struct termio), 0);
        // SAFETY: caller.
        unsafe { miocack(q, mp, size_of::<Termio>(), 0) };
        return;
    }
    // TCSETA: if (mp->b_cont == NULL || msgdsize(mp->b_cont) < sizeof (struct termio)) { miocnak(q, mp, 0, EINVAL); return; }
    // SAFETY: caller.
    let datamp = unsafe { (*mp).b_cont };
    // SAFETY: NULL-checked; a message that is part of ours.
    if datamp.is_null() || unsafe { msgdsize(datamp) } < size_of::<Termio>() {
        // SAFETY: caller.
        unsafe { miocnak(q, mp, 0, EINVAL) };
        return;
    }
    // tp->t_modes.c_cc = ((struct termio *)mp->b_cont->b_rptr)->c_cc;  (first block; pulled up if needed)
    let mut cc = [0u8; 8];
    let mut n = 0;
    let mut bp = datamp;
    while !bp.is_null() && n < cc.len() {
        // SAFETY: a block of our message.
        let d = unsafe { (*bp).data() };
        let k = d.len().min(cc.len() - n);
        cc[n..n + k].copy_from_slice(&d[..k]);
        n += k;
        // SAFETY: as above.
        bp = unsafe { (*bp).b_cont };
    }
    // SAFETY: the state, exclusive under the perimeter.
    unsafe { (*tp).t.c_cc = cc };
    // miocack(q, mp, 0, 0);  (no data back: free it as the ack carries a count of 0)
    // SAFETY: caller.
    let old = unsafe { std::mem::replace(&mut (*mp).b_cont, null_mut()) };
    // SAFETY: ours.
    unsafe { freemsg(old) };
    // SAFETY: caller.
    unsafe { miocack(q, mp, 0, 0) };
}

/// C: `static int ldtermwput(queue_t *q, mblk_t *mp)`
unsafe fn ldtermwput(q: *mut Queue, mp: *mut Mblk) -> i32 {
    // SAFETY: a put procedure owns its message.
    match unsafe { (*mp).msg_type() } {
        M_IOCTL => {
            // iocp = (struct iocblk *)mp->b_rptr; switch (iocp->ioc_cmd) { ... }
            // SAFETY: as above.
            let cmd = Iocblk::read(unsafe { &*mp }).map(|i| i.ioc_cmd);
            match cmd {
                // SAFETY: our write queue; the ioctl is ours and is one of the two.
                Some(c @ (TCGETA | TCSETA)) => unsafe { ldterm_ioctl(q, mp, c) },
                // default: putnext(q, mp);  /* the driver answers it */
                // SAFETY: passing the message on.
                _ => unsafe { putnext(q, mp) },
            }
        }
        M_FLUSH => {
            // if (*mp->b_rptr & FLUSHW) flushq(q, FLUSHDATA); putnext(q, mp);
            // SAFETY: an M_FLUSH carries its flag byte.
            let flag = unsafe { (*mp).data() }.first().copied().unwrap_or(0);
            if flag & FLUSHW != 0 {
                // SAFETY: our live queue.
                unsafe { flushq(q, FLUSHDATA) };
            }
            // SAFETY: passing the message on.
            unsafe { putnext(q, mp) };
        }
        // default: putnext(q, mp);
        // SAFETY: as above.
        _ => unsafe { putnext(q, mp) },
    }
    0
}
