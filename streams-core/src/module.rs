//! Modules and drivers: `module_info`, `qinit`, `streamtab`, and the Rust module trait
//! ([`Module`]) with its safe queue handle ([`QRef`]).
//!
//! A C module ports as a [`StreamTab`] of two [`QInit`]s whose procedures take raw
//! pointers, registered with [`Streams::register_raw`]. A Rust module is a type
//! implementing [`Module`]: the type is the instance's private data (C's `q_ptr`, shared by
//! both queues), created by `open`, dropped after `close`, kept in the arena of the stream;
//! its procedures get `&self`, a [`QRef`] and an owned [`Msg`].

use crate::dblk::{M_FLUSH, M_IOCNAK, M_IOCTL, MsgType};
use crate::error::StreamsError;
use crate::mblk::Mblk;
use crate::msg::Msg;
use crate::perim::{Perimeter, SyncLevel};
use crate::queue::{FLUSHDATA, Queue};
use crate::sched::Streams;
use crate::stream::{FLUSHBAND, FLUSHR, FLUSHW};
use ddi_kmem::KM_SLEEP;
use std::ffi::c_void;
use std::marker::PhantomData;
use std::ptr::NonNull;

/// "Infinite" packet size (`INFPSZ`).
pub const INFPSZ: isize = -1;

/// A device number (`dev_t`).
pub type Dev = u32;

/// Credentials (`cred_t`): opaque here; the user-side interface issue fills it in.
#[derive(Debug, Default, Clone, Copy)]
pub struct Cred {
    /// User id.
    pub cr_uid: u32,
    /// Group id.
    pub cr_gid: u32,
}

/// `module_info`: a module's identity, packet sizes and default water marks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ModuleInfo {
    /// Module id number.
    pub mi_idnum: u16,
    /// Module name (what `I_PUSH` names).
    pub mi_idname: &'static str,
    /// Minimum packet size.
    pub mi_minpsz: isize,
    /// Maximum packet size ([`INFPSZ`]: no limit).
    pub mi_maxpsz: isize,
    /// High water mark of each queue.
    pub mi_hiwat: usize,
    /// Low water mark.
    pub mi_lowat: usize,
}

/// A put procedure: called with a queue and a message it now owns. The return value is
/// ignored (SVR4 `int (*qi_putp)()`).
pub type PutProc = unsafe fn(q: *mut Queue, mp: *mut Mblk) -> i32;
/// A service procedure.
pub type SrvProc = unsafe fn(q: *mut Queue) -> i32;
/// An open routine: `(q, devp, oflag, sflag, credp)`; returns 0 or an errno.
pub type OpenProc = unsafe fn(q: *mut Queue, devp: *mut Dev, oflag: i32, sflag: i32, credp: *const Cred) -> i32;
/// A close routine: `(q, oflag, credp)`.
pub type CloseProc = unsafe fn(q: *mut Queue, oflag: i32, credp: *const Cred) -> i32;

/// `qinit`: one queue's procedures and module information.
#[derive(Clone, Copy, Debug)]
pub struct QInit {
    /// The put procedure (required).
    pub qi_putp: Option<PutProc>,
    /// The service procedure, if any.
    pub qi_srvp: Option<SrvProc>,
    /// The open routine (read side's is called).
    pub qi_qopen: Option<OpenProc>,
    /// The close routine (read side's is called).
    pub qi_qclose: Option<CloseProc>,
    /// The module information.
    pub qi_minfo: &'static ModuleInfo,
}

/// `streamtab`: the read and write `qinit` of a module or driver.
#[derive(Clone, Copy, Debug)]
pub struct StreamTab {
    /// Read side.
    pub st_rdinit: &'static QInit,
    /// Write side.
    pub st_wrinit: &'static QInit,
}

/// `sflag` of an open: a driver opened normally.
pub const DRVOPEN: i32 = 0;
/// `sflag`: a module being pushed.
pub const MODOPEN: i32 = 1;
/// `sflag`: a clone open.
pub const CLONEOPEN: i32 = 2;

/// Whether a registration is a module (pushed) or a driver (at the end of a stream).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Pushed with `I_PUSH`.
    Module,
    /// Opened at the end of a stream.
    Driver,
}

/// A registry entry of an executive.
pub(crate) struct Registered {
    pub(crate) name: &'static str,
    pub(crate) kind: Kind,
    pub(crate) sync: SyncLevel,
    pub(crate) rinit: *const QInit,
    pub(crate) winit: *const QInit,
    pub(crate) perim: Perimeter,
    /// The qinits of a Rust module (from `Box::into_raw`, freed on drop), or NULL: queues
    /// point into it, so it is never moved or reborrowed uniquely.
    own: *mut (QInit, QInit),
    /// The Rust module's type (function pointers are not reliable identities).
    type_id: Option<std::any::TypeId>,
}

impl Drop for Registered {
    fn drop(&mut self) {
        if !self.own.is_null() {
            // SAFETY: from Box::into_raw in `register_rust`, freed once; the executive (and
            // so every queue pointing here) is gone.
            drop(unsafe { Box::from_raw(self.own) });
        }
    }
}

// SAFETY: the qinit pointers point to statics or to `own`, immutable after registration.
unsafe impl Send for Registered {}
// SAFETY: as above.
unsafe impl Sync for Registered {}

/// The arguments of a Rust module's or driver's open.
#[derive(Debug)]
pub struct OpenCtx {
    /// The device number; a driver may change it (clone open).
    pub dev: Dev,
    /// The open flags.
    pub oflag: i32,
    /// [`DRVOPEN`], [`MODOPEN`] or [`CLONEOPEN`].
    pub sflag: i32,
}

/// A STREAMS module or driver written in Rust.
///
/// The implementing type is the private data of one instance (one queue pair): `open`
/// creates it, the procedures borrow it, `close` consumes it. Procedures get a [`QRef`] to
/// their queue and own the message they are given: pass it on ([`QRef::putnext`]), queue
/// it ([`QRef::putq`]) or drop it (freed). The defaults are the canonical pass-through
/// procedures ([`default_wput`], [`default_rput`], [`default_srv`]), so a null module is
/// an `open` and a [`ModuleInfo`].
///
/// A module's procedures are called through a trampoline streams-core instantiates for the
/// module (in the crate that registers it), so a short put procedure marked `#[inline]`
/// (as the `examples` crate's `nullmod` and `loopback`) is compiled into it: one call per
/// hop instead of two (8 to 9 instructions fewer per hop in the benchmark pipeline: 41 -> 32
/// for `nullmod`).
///
/// # Examples
/// ```
/// use streams_core::{Module, ModuleInfo, OpenCtx, QRef, INFPSZ};
///
/// /// The pass-through module (LfS `nullmod`).
/// struct Nullmod;
///
/// impl Module for Nullmod {
///     const INFO: ModuleInfo = ModuleInfo {
///         mi_idnum: 5001,
///         mi_idname: "nullmod",
///         mi_minpsz: 0,
///         mi_maxpsz: INFPSZ,
///         mi_hiwat: 5120,
///         mi_lowat: 1024,
///     };
///     fn open(_q: QRef<'_>, _ctx: &mut OpenCtx) -> Result<Self, i32> {
///         Ok(Nullmod)
///     }
/// }
/// ```
pub trait Module: Sized + Send + Sync + 'static {
    /// The module information (name, packet sizes, water marks).
    const INFO: ModuleInfo;
    /// The synchronization level (default: MP-safe, no perimeter).
    const SYNC: SyncLevel = SyncLevel::Mp;
    /// Whether the read queue has a service procedure ([`Module::rsrv`]).
    const RSRV: bool = false;
    /// Whether the write queue has a service procedure ([`Module::wsrv`]).
    const WSRV: bool = false;

    /// Opens an instance on read queue `q`: returns its private data or an errno.
    fn open(q: QRef<'_>, ctx: &mut OpenCtx) -> Result<Self, i32>;

    /// Closes the instance (procedures are still on; they are turned off after).
    fn close(self, q: QRef<'_>) {
        let _ = q;
    }

    /// The write put procedure.
    fn wput(&self, q: QRef<'_>, mp: Msg) {
        default_wput(q, mp);
    }

    /// The read put procedure.
    fn rput(&self, q: QRef<'_>, mp: Msg) {
        default_rput(q, mp);
    }

    /// The write service procedure (called only if [`Module::WSRV`]).
    fn wsrv(&self, q: QRef<'_>) {
        default_srv(q);
    }

    /// The read service procedure (called only if [`Module::RSRV`]).
    fn rsrv(&self, q: QRef<'_>) {
        default_srv(q);
    }
}

/// A safe handle to a queue, valid for the duration of a procedure call.
///
/// Its methods are the queue DDI functions over owned [`Msg`]s. It cannot leave the
/// procedure's thread:
/// ```compile_fail
/// fn assert_send<T: Send>() {}
/// assert_send::<streams_core::QRef<'static>>();
/// ```
#[derive(Clone, Copy)]
pub struct QRef<'a> {
    q: NonNull<Queue>,
    _life: PhantomData<&'a Queue>,
    _not_send: PhantomData<*const ()>,
}

impl std::fmt::Debug for QRef<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QRef").field("q", &self.q).field("read", &self.is_read()).finish()
    }
}

impl<'a> QRef<'a> {
    /// A handle on `q`.
    ///
    /// # Safety
    /// `q` is a live queue whose plumbing is stable for `'a` (inside one of its procedures).
    #[inline]
    pub unsafe fn from_raw(q: *mut Queue) -> QRef<'a> {
        QRef { q: NonNull::new(q).expect("QRef::from_raw: NULL queue"), _life: PhantomData, _not_send: PhantomData }
    }

    /// The raw queue, for the DDI functions.
    #[inline]
    pub fn as_ptr(&self) -> *mut Queue {
        self.q.as_ptr()
    }

    #[inline]
    fn queue(&self) -> &'a Queue {
        // SAFETY: live for 'a (from_raw).
        unsafe { &*self.q.as_ptr() }
    }

    /// Whether this is the read queue.
    pub fn is_read(&self) -> bool {
        self.queue().is_read()
    }

    /// The other queue of the pair (`OTHERQ`).
    pub fn other(&self) -> QRef<'a> {
        let other = self.queue().other_raw();
        // SAFETY: the other queue of a live pair is live as long.
        unsafe { QRef::from_raw(other) }
    }

    /// Whether the queue has a next queue (false for a driver's write queue and the stream
    /// head's read queue).
    pub fn has_next(&self) -> bool {
        !self.queue().next().is_null()
    }

    /// `putnext`: passes the message to the next queue's put procedure.
    #[inline]
    pub fn putnext(&self, mp: Msg) {
        // SAFETY: a live queue with stable plumbing; the message is given away.
        unsafe { crate::stream::putnext_from("putnext", self.queue(), mp.into_raw()) }
    }

    /// `qreply`: sends the message back the other way.
    #[inline]
    pub fn qreply(&self, mp: Msg) {
        // SAFETY: as for putnext, from the other queue of the live pair.
        unsafe { crate::stream::putnext_from("qreply", self.queue().other(), mp.into_raw()) }
    }

    /// `putq`; gives the message back if it could not be queued.
    pub fn putq(&self, mp: Msg) -> Result<(), Msg> {
        let p = mp.into_raw();
        // SAFETY: a live queue; the message is ours.
        if unsafe { crate::queue::putq(self.as_ptr(), p) } == 1 {
            Ok(())
        } else {
            // SAFETY: putq refused it: still ours.
            Err(unsafe { Msg::from_raw(p) }.expect("non-NULL"))
        }
    }

    /// `putbq`; gives the message back if it could not be queued.
    pub fn putbq(&self, mp: Msg) -> Result<(), Msg> {
        let p = mp.into_raw();
        // SAFETY: as for putq.
        if unsafe { crate::queue::putbq(self.as_ptr(), p) } == 1 {
            Ok(())
        } else {
            // SAFETY: refused: still ours.
            Err(unsafe { Msg::from_raw(p) }.expect("non-NULL"))
        }
    }

    /// `getq`.
    pub fn getq(&self) -> Option<Msg> {
        // SAFETY: a live queue; getq hands over the message.
        let p = unsafe { crate::queue::getq(self.as_ptr()) };
        // SAFETY: NULL or a message now ours.
        unsafe { Msg::from_raw(p) }
    }

    /// `canputnext`.
    pub fn canputnext(&self) -> bool {
        // SAFETY: a live queue with stable plumbing.
        unsafe { crate::flow::canputnext(self.as_ptr()) == 1 }
    }

    /// `bcanputnext`.
    pub fn bcanputnext(&self, band: u8) -> bool {
        // SAFETY: as above.
        unsafe { crate::flow::bcanputnext(self.as_ptr(), band) == 1 }
    }

    /// `flushq`.
    pub fn flushq(&self, flag: i32) {
        // SAFETY: a live queue.
        unsafe { crate::queue::flushq(self.as_ptr(), flag) }
    }

    /// `flushband`.
    pub fn flushband(&self, band: u8, flag: i32) {
        // SAFETY: a live queue.
        unsafe { crate::queue::flushband(self.as_ptr(), band, flag) }
    }

    /// `qenable`.
    pub fn qenable(&self) {
        crate::sched::qenable_raw(self.queue());
    }

    /// `noenable`.
    pub fn noenable(&self) {
        crate::queue::set_flag(self.queue(), crate::queue::QNOENB, true);
    }

    /// `enableok`.
    pub fn enableok(&self) {
        crate::queue::set_flag(self.queue(), crate::queue::QNOENB, false);
    }

    /// `qsize`: messages on the queue.
    pub fn qsize(&self) -> usize {
        self.queue().st.lock().msgs
    }

    /// `q_count`.
    pub fn count(&self) -> usize {
        self.queue().count()
    }

    /// `q_flag`.
    pub fn flag(&self) -> u32 {
        self.queue().flag()
    }

    /// `putnextctl1`: sends a one-byte control message of type `t` to the next queue;
    /// false if it could not be allocated.
    pub fn putnextctl1(&self, t: MsgType, param: u8) -> bool {
        // SAFETY: a live queue with stable plumbing.
        unsafe { crate::stream::putnextctl1(self.as_ptr(), t, i32::from(param)) == 1 }
    }

    /// The module instance's raw private pointer (`q_ptr`), for mixed raw code.
    pub fn ptr(&self) -> *mut c_void {
        self.queue().ptr()
    }
}

/// The canonical write put procedure of a pass-through module, and of a driver that
/// handles nothing.
///
/// A module (`q` has a next queue): `M_FLUSH` with `FLUSHW` flushes `q` (data, or one band
/// with `FLUSHBAND`), and every message is passed on with `putnext`. A driver (no next
/// queue): `M_FLUSH` is answered canonically (flush, then reflect `FLUSHR` upstream with
/// `qreply`), `M_IOCTL` is refused with `M_IOCNAK` (`EINVAL`), anything else is freed.
pub fn default_wput(q: QRef<'_>, mp: Msg) {
    if q.has_next() {
        if mp.msg_type() == M_FLUSH {
            flush_side(q, &mp, FLUSHW);
        }
        q.putnext(mp);
        return;
    }
    match mp.msg_type() {
        M_FLUSH => driver_flush(q, mp),
        M_IOCTL => {
            let mut mp = mp;
            // SAFETY: an M_IOCTL message we own; the reply reuses it.
            unsafe { crate::stream::set_ioc_reply(mp.as_ptr(), M_IOCNAK, 0, crate::stream::EINVAL, 0) };
            if mp.set_type(M_IOCNAK).is_ok() {
                q.qreply(mp);
            }
        }
        _ => drop(mp),
    }
}

/// The canonical read put procedure of a pass-through module: `M_FLUSH` with `FLUSHR`
/// flushes `q`, and every message is passed on.
pub fn default_rput(q: QRef<'_>, mp: Msg) {
    if mp.msg_type() == M_FLUSH {
        flush_side(q, &mp, FLUSHR);
    }
    if q.has_next() {
        q.putnext(mp);
    }
}

/// The canonical service procedure: takes messages off the queue and passes them on while
/// the next queue (by band) has room; high-priority messages always go. A message that
/// cannot go is put back (`putbq`) and the procedure returns, to be back-enabled.
pub fn default_srv(q: QRef<'_>) {
    while let Some(mp) = q.getq() {
        if mp.msg_type().is_high_priority() || q.bcanputnext(mp.b_band) {
            q.putnext(mp);
        } else {
            if let Err(mp) = q.putbq(mp) {
                drop(mp);
            }
            return;
        }
    }
}

/// Flushes `q` per an `M_FLUSH` message if its flag has `side` (FLUSHR or FLUSHW): the whole
/// queue's data, or one band with `FLUSHBAND`. The step every module's `M_FLUSH` handling
/// starts with.
pub fn flush_side(q: QRef<'_>, mp: &Msg, side: u8) {
    let d = mp.data();
    let flag = d.first().copied().unwrap_or(0);
    if flag & side == 0 {
        return;
    }
    if flag & FLUSHBAND != 0 {
        q.flushband(d.get(1).copied().unwrap_or(0), FLUSHDATA);
    } else {
        q.flushq(FLUSHDATA);
    }
}

/// The canonical driver `M_FLUSH` handling on its write queue: flush the write side if
/// `FLUSHW`; if `FLUSHR`, flush the read side, clear `FLUSHW` and reflect the message
/// upstream; else free it.
pub fn driver_flush(q: QRef<'_>, mut mp: Msg) {
    flush_side(q, &mp, FLUSHW);
    let flag = mp.data().first().copied().unwrap_or(0);
    if flag & FLUSHR != 0 {
        flush_side(q.other(), &mp, FLUSHR);
        if let Ok(d) = mp.data_mut() {
            d[0] &= !FLUSHW;
        }
        q.qreply(mp);
    }
}

unsafe fn inst_of<M: Module>(q: *mut Queue) -> Option<&'static M> {
    // SAFETY: caller: a live queue.
    let p = unsafe { (*q).shared() }.inst.load(crate::sync::Ordering::Acquire);
    // SAFETY: `inst` is NULL or the instance open stored, which lives until close, after the
    // procedures are turned off. The 'static is a lie bounded by the procedure call.
    unsafe { p.cast::<M>().as_ref() }
}

unsafe fn t_put<M: Module, const READ: bool>(q: *mut Queue, mp: *mut Mblk) -> i32 {
    // SAFETY: the put procedure is called with a message it owns.
    let Some(m) = (unsafe { Msg::from_raw(mp) }) else { return 0 };
    // SAFETY: the put procedure is called on a live queue.
    let Some(inst) = (unsafe { inst_of::<M>(q) }) else {
        put_before_open(M::INFO.mi_idname, m);
        return 0;
    };
    // SAFETY: inside the procedure call.
    let qr = unsafe { QRef::from_raw(q) };
    if READ {
        inst.rput(qr, m)
    } else {
        inst.wput(qr, m)
    }
    0
}

/// A put before the module's open stored its instance: the message is freed (out of line,
/// so the trampoline's frame stays small).
#[cold]
#[inline(never)]
fn put_before_open(module: &'static str, m: Msg) {
    drop(m);
    tracing::warn!(module, "put before open: message freed");
}

unsafe fn t_srv<M: Module, const READ: bool>(q: *mut Queue) -> i32 {
    // SAFETY: called on a live queue.
    let Some(inst) = (unsafe { inst_of::<M>(q) }) else { return 0 };
    // SAFETY: inside the procedure call.
    let qr = unsafe { QRef::from_raw(q) };
    if READ {
        inst.rsrv(qr)
    } else {
        inst.wsrv(qr)
    }
    0
}

unsafe fn t_open<M: Module>(q: *mut Queue, devp: *mut Dev, oflag: i32, sflag: i32, _cr: *const Cred) -> i32 {
    // SAFETY: open is called with a valid device pointer.
    let mut ctx = OpenCtx { dev: unsafe { *devp }, oflag, sflag };
    // SAFETY: open is called on a live read queue.
    let r = M::open(unsafe { QRef::from_raw(q) }, &mut ctx);
    match r {
        Ok(inst) => {
            // SAFETY: as above.
            let shared = unsafe { (*q).shared() };
            let p = kbox_new(&shared.arena, inst);
            if p.is_null() {
                return crate::stream::ENOMEM;
            }
            shared.inst.store(p.cast(), crate::sync::Ordering::Release);
            // SAFETY: as above.
            unsafe { *devp = ctx.dev };
            0
        }
        Err(e) => e,
    }
}

unsafe fn t_close<M: Module>(q: *mut Queue, _oflag: i32, _cr: *const Cred) -> i32 {
    // SAFETY: close is called on a live read queue.
    let shared = unsafe { (*q).shared() };
    let p = shared.inst.swap(std::ptr::null_mut(), crate::sync::Ordering::AcqRel).cast::<M>();
    if p.is_null() {
        return 0;
    }
    // SAFETY: the instance stored by open, taken out once.
    let inst = unsafe { kbox_take(&shared.arena, p) };
    // SAFETY: inside the close call.
    inst.close(unsafe { QRef::from_raw(q) });
    0
}

/// Moves `v` into arena memory (a dangling pointer for a zero-sized type).
fn kbox_new<T>(arena: &ddi_kmem::Arena, v: T) -> *mut T {
    let size = size_of::<T>();
    if size == 0 {
        let p = NonNull::<T>::dangling().as_ptr();
        // SAFETY: a zero-sized write to a dangling, aligned pointer.
        unsafe { p.write(v) };
        return p;
    }
    if let Some(a) = arena.alignment(size, KM_SLEEP) {
        assert!(a >= align_of::<T>(), "module instance alignment {} above kmem's {a}", align_of::<T>());
    }
    let p = arena.alloc(size, KM_SLEEP).cast::<T>();
    if !p.is_null() {
        // SAFETY: a fresh buffer of size_of::<T>() bytes, aligned (asserted).
        unsafe { p.write(v) };
    }
    p
}

/// Moves a value out of arena memory and frees it.
///
/// # Safety
/// `p` came from `kbox_new` on `arena` and is taken once.
unsafe fn kbox_take<T>(arena: &ddi_kmem::Arena, p: *mut T) -> T {
    // SAFETY: caller.
    let v = unsafe { p.read() };
    if size_of::<T>() > 0 {
        // SAFETY: caller: from this arena with this size.
        unsafe { arena.free(p.cast(), size_of::<T>()) };
    }
    v
}

fn qinits_of<M: Module>() -> (QInit, QInit) {
    let r = QInit {
        qi_putp: Some(t_put::<M, true>),
        qi_srvp: if M::RSRV { Some(t_srv::<M, true>) } else { None },
        qi_qopen: Some(t_open::<M>),
        qi_qclose: Some(t_close::<M>),
        qi_minfo: &M::INFO,
    };
    let w = QInit {
        qi_putp: Some(t_put::<M, false>),
        qi_srvp: if M::WSRV { Some(t_srv::<M, false>) } else { None },
        qi_qopen: None,
        qi_qclose: None,
        qi_minfo: &M::INFO,
    };
    (r, w)
}

impl Streams {
    fn register(&self, mut reg: Registered) -> Result<(), StreamsError> {
        let mut r = self.inner.registry.lock();
        let found = r.iter().map(|e| {
            // SAFETY: registry entries live until the executive drops.
            unsafe { &*e.0 }
        });
        if let Some(old) = found.into_iter().find(|e| e.name == reg.name) {
            let same = old.kind == reg.kind
                && old.type_id == reg.type_id
                && (reg.type_id.is_some() || std::ptr::eq(old.rinit, reg.rinit));
            return if same { Ok(()) } else { Err(StreamsError::AlreadyRegistered { name: reg.name }) };
        }
        if !reg.own.is_null() {
            // SAFETY: a live box of qinits; only places are computed.
            reg.rinit = unsafe { &raw const (*reg.own).0 };
            // SAFETY: as above.
            reg.winit = unsafe { &raw const (*reg.own).1 };
        }
        tracing::debug!(name = reg.name, kind = ?reg.kind, "streams: registered");
        r.push(crate::sched::RegPtr(Box::into_raw(Box::new(reg))));
        Ok(())
    }

    /// Registers a Rust module under `M::INFO.mi_idname` for `I_PUSH`.
    ///
    /// # Errors
    /// [`StreamsError::AlreadyRegistered`] if another module has the name (registering the
    /// same type again is a no-op).
    pub fn register_module<M: Module>(&self) -> Result<(), StreamsError> {
        self.register_rust::<M>(Kind::Module)
    }

    /// Registers a Rust driver under `M::INFO.mi_idname` for [`Streams::open`].
    ///
    /// # Errors
    /// As [`Streams::register_module`].
    pub fn register_driver<M: Module>(&self) -> Result<(), StreamsError> {
        self.register_rust::<M>(Kind::Driver)
    }

    fn register_rust<M: Module>(&self, kind: Kind) -> Result<(), StreamsError> {
        self.register(Registered {
            name: M::INFO.mi_idname,
            kind,
            sync: M::SYNC,
            rinit: std::ptr::null(),
            winit: std::ptr::null(),
            perim: Perimeter::new(),
            own: Box::into_raw(Box::new(qinits_of::<M>())),
            type_id: Some(std::any::TypeId::of::<M>()),
        })
    }

    /// Registers a C-style module or driver (a `streamtab` of raw procedures) under its
    /// read side's `mi_idname`, with a synchronization level (LfS's default for modules that
    /// are not MP-safe is [`SyncLevel::Module`]).
    ///
    /// # Errors
    /// As [`Streams::register_module`].
    pub fn register_raw(&self, tab: &'static StreamTab, kind: Kind, sync: SyncLevel) -> Result<(), StreamsError> {
        self.register(Registered {
            name: tab.st_rdinit.qi_minfo.mi_idname,
            kind,
            sync,
            rinit: tab.st_rdinit,
            winit: tab.st_wrinit,
            perim: Perimeter::new(),
            own: std::ptr::null_mut(),
            type_id: None,
        })
    }

    /// Looks up a registration by name: (read qinit, write qinit, sync, perimeter, kind).
    pub(crate) fn lookup(&self, name: &str) -> Option<*const Registered> {
        self.inner
            .registry
            .lock()
            .iter()
            .find(|e| {
                // SAFETY: registry entries live until the executive drops.
                unsafe { (*e.0).name == name }
            })
            .map(|e| e.0.cast_const())
    }
}
