//! A thread-confined executive: [`LocalStreams`] and its streams, [`LocalStream`].

use crate::Dev;
use crate::msg::Msg;
use crate::queue::Queue;
use crate::sched::Streams;
use crate::stream::{IocReply, Stream};
use std::marker::PhantomData;

/// Neither `Send` nor `Sync`.
type NotSend = PhantomData<*const ()>;

/// A STREAMS executive confined to the thread that built it
/// ([`StreamsBuilder::build_local`](crate::StreamsBuilder::build_local)).
///
/// A [`Streams`] executive is shared: its streams may be written, read and re-plumbed from
/// any thread, its service procedures run on worker threads, so every queue operation takes
/// the queue's lock (an atomic compare-and-swap) and every write at the head takes the
/// stream's plumbing lock for reading (two more). On one thread those atomics are all of the
/// synchronization's cost and a large part of a message's: a message through the benchmark
/// pipeline (head, four `nullmod`s, `loopback`, back up) meets four of them.
///
/// A [`LocalStreams`] executive is confined to the thread that built it, as a uniprocessor
/// kernel's STREAMS is (and as a single-threaded async runtime is to its thread): its handles
/// are neither `Send` nor `Sync`, so safe code cannot use its streams anywhere else, and
/// then:
///
/// - its queue locks are taken with a plain load and store (no read-modify-write): each is
///   made confined to the owner thread (`SpinLock::confined`), and taking one on any other
///   thread (raw queue pointers handed over by unsafe code, a bufcall callback run by a free
///   on another thread) panics before it touches the queue;
/// - [`LocalStream::write`] takes no plumbing lock: nothing can re-plumb the stream during
///   the call except a call from inside it (a procedure that kept a handle), which `I_PUSH`,
///   `I_POP` and close refuse on a confined executive ([`EDEADLK`](crate::EDEADLK),
///   [`StreamsError::InsideStream`](crate::StreamsError::InsideStream));
/// - it has no worker threads: service procedures run on its thread, in
///   [`LocalStreams::run_until_idle`] and in the waiting calls (the deterministic mode of a
///   shared executive without workers).
///
/// Modules and drivers are the same: a module registered on the executive
/// ([`LocalStreams::streams`]) runs under either kind unchanged.
///
/// # Examples
/// ```
/// use streams_core::{BPRI_MED, Msg, Streams};
///
/// let sx = Streams::builder().build_local();
/// # struct Echo;
/// # impl streams_core::Module for Echo {
/// #     const INFO: streams_core::ModuleInfo = streams_core::ModuleInfo {
/// #         mi_idnum: 1, mi_idname: "echo", mi_minpsz: 0, mi_maxpsz: streams_core::INFPSZ,
/// #         mi_hiwat: 1024, mi_lowat: 256 };
/// #     fn open(_: streams_core::QRef<'_>, _: &mut streams_core::OpenCtx) -> Result<Self, i32> { Ok(Echo) }
/// #     fn wput(&self, q: streams_core::QRef<'_>, mp: Msg) { q.qreply(mp) }
/// #     fn rput(&self, q: streams_core::QRef<'_>, mp: Msg) { q.putnext(mp) }
/// # }
/// sx.streams().register_driver::<Echo>().unwrap();
/// let s = sx.open("echo", 0).unwrap();
/// let mut m = Msg::alloc(5, BPRI_MED).unwrap();
/// m.extend_from_slice(b"hello").unwrap();
/// s.write(m).map_err(|(e, _)| e).unwrap();
/// assert_eq!(s.read().unwrap().unwrap().data(), b"hello");
/// ```
#[derive(Debug)]
pub struct LocalStreams {
    sx: Streams,
    _not_send: NotSend,
}

impl LocalStreams {
    pub(crate) fn new(sx: Streams) -> Self {
        LocalStreams { sx, _not_send: PhantomData }
    }

    /// The executive, to register modules and drivers, enter it, or take its error reports.
    /// Its calls that run procedures or open streams ([`Streams::open`] refuses a confined
    /// executive: use [`LocalStreams::open`]) panic on another thread.
    pub fn streams(&self) -> &Streams {
        &self.sx
    }

    /// Opens a stream on a registered driver, as [`Streams::open`].
    ///
    /// # Errors
    /// As [`Streams::open`].
    pub fn open(&self, driver: &str, dev: Dev) -> Result<LocalStream, i32> {
        let s = self.sx.open_stream(driver, dev)?;
        Ok(LocalStream { s, _not_send: PhantomData })
    }

    /// Runs service procedures until none is enabled ([`Streams::run_until_idle`]).
    pub fn run_until_idle(&self) {
        self.sx.run_until_idle();
    }
}

/// A stream of a [`LocalStreams`] executive: [`Stream`]'s interface, on the executive's
/// thread only (neither `Send` nor `Sync`); see [`LocalStreams`].
///
/// ```compile_fail
/// fn shared<T: Sync>(_: &T) {}
/// let sx = streams_core::Streams::builder().build_local();
/// shared(&sx);
/// ```
/// ```compile_fail
/// fn sent<T: Send>(_: T) {}
/// let sx = streams_core::Streams::builder().build_local();
/// sent(sx);
/// ```
#[derive(Debug)]
pub struct LocalStream {
    s: Stream,
    _not_send: NotSend,
}

impl LocalStream {
    /// As [`Stream::write`]: takes no lock (see [`LocalStreams`]).
    ///
    /// # Errors
    /// As [`Stream::write`].
    #[inline]
    pub fn write(&self, m: Msg) -> Result<(), (i32, Msg)> {
        self.s.write(m)
    }

    /// As [`Stream::write_wait`] on an executive without workers: runs the service
    /// procedures on this thread when flow control refuses the message.
    ///
    /// # Errors
    /// As [`Stream::write_wait`].
    pub fn write_wait(&self, m: Msg) -> Result<(), (i32, Msg)> {
        self.s.write_wait(m)
    }

    /// As [`Stream::writable`].
    pub fn writable(&self) -> bool {
        self.s.writable()
    }

    /// As [`Stream::read`].
    ///
    /// # Errors
    /// As [`Stream::read`].
    #[inline]
    pub fn read(&self) -> Result<Option<Msg>, i32> {
        self.s.read()
    }

    /// As [`Stream::read_wait`] on an executive without workers: runs the service procedures
    /// on this thread, then reads (it does not wait: no other thread could send anything).
    ///
    /// # Errors
    /// As [`Stream::read_wait`].
    pub fn read_wait(&self) -> Result<Option<Msg>, i32> {
        self.s.read_wait()
    }

    /// As [`Stream::push`] (`I_PUSH`).
    ///
    /// # Errors
    /// As [`Stream::push`]; `EDEADLK` from inside the stream's own procedures.
    pub fn push(&self, name: &str) -> Result<(), i32> {
        self.s.push(name)
    }

    /// As [`Stream::pop`] (`I_POP`).
    ///
    /// # Errors
    /// As [`Stream::pop`]; `EDEADLK` from inside the stream's own procedures.
    pub fn pop(&self) -> Result<(), i32> {
        self.s.pop()
    }

    /// As [`Stream::ioctl`] (`I_STR`).
    ///
    /// # Errors
    /// As [`Stream::ioctl`].
    pub fn ioctl(&self, cmd: i32, data: Option<Msg>) -> Result<IocReply, i32> {
        self.s.ioctl(cmd, data)
    }

    /// As [`Stream::flush`] (`I_FLUSH`).
    ///
    /// # Errors
    /// As [`Stream::flush`].
    pub fn flush(&self, flag: u8) -> Result<(), i32> {
        self.s.flush(flag)
    }

    /// As [`Stream::flushband`] (`I_FLUSHBAND`).
    ///
    /// # Errors
    /// As [`Stream::flushband`].
    pub fn flushband(&self, band: u8, flag: u8) -> Result<(), i32> {
        self.s.flushband(band, flag)
    }

    /// As [`Stream::is_hungup`].
    pub fn is_hungup(&self) -> bool {
        self.s.is_hungup()
    }

    /// As [`Stream::errors`].
    pub fn errors(&self) -> (i32, i32) {
        self.s.errors()
    }

    /// As [`Stream::modules`].
    pub fn modules(&self) -> Vec<&'static str> {
        self.s.modules()
    }

    /// As [`Stream::close`]; from inside the stream's own procedures it is refused
    /// (reported) and left to the drop.
    pub fn close(&self) {
        self.s.close();
    }

    /// The executive.
    pub fn streams(&self) -> &Streams {
        self.s.streams()
    }

    /// As [`Stream::head_rq`] (raw; usable on this thread only).
    pub fn head_rq(&self) -> *mut Queue {
        self.s.head_rq()
    }

    /// As [`Stream::head_wq`] (raw; usable on this thread only).
    pub fn head_wq(&self) -> *mut Queue {
        self.s.head_wq()
    }

    /// As [`Stream::driver_rq`] (raw; usable on this thread only).
    pub fn driver_rq(&self) -> *mut Queue {
        self.s.driver_rq()
    }

    /// As [`Stream::driver_wq`] (raw; usable on this thread only).
    pub fn driver_wq(&self) -> *mut Queue {
        self.s.driver_wq()
    }
}
