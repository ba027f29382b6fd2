//! Misuse checking: the side table, redzones, fill patterns and free-block verification.
//!
//! A checking arena gives every buffer its own block from [`crate::sys`] and records it in a
//! table keyed by address, so "did this arena return this pointer" is answered without
//! touching the pointer's memory. Each block is laid out as
//!
//! ```text
//! | hidden header (personality) | requested size | rest of extent | GUARD |
//!                               ^ returned pointer
//! ```
//!
//! - `redzone`: everything from the requested size to the end of the block is filled with
//!   [`REDZONE_BYTE`] (or zero, where `kmem_zalloc` clears the whole extent) and verified at
//!   free: a write past the requested size is reported (illumos `KMERR_REDZONE`). The `GUARD`
//!   bytes give even a request that fills its class a redzone.
//! - `deadbeef`: `kmem_alloc` memory is filled with [`UNINIT_PATTERN`] (so code relying on
//!   zeroes fails), freed blocks with [`FREE_PATTERN`], verified when the block is reused or
//!   the arena verifies or is dropped (illumos `KMERR_MODIFIED`).
//! - `audit`: the allocating and freeing source line is kept and printed in reports.
//!
//! Freed blocks are not returned to the process allocator: they wait, oldest first, on a
//! free list per layout and are reused from there. So a write after free always lands in
//! memory the arena owns (never undefined behaviour for the program), the window in which a
//! double free is recognised lasts until the block is reused, and memory use is bounded by
//! the peak, as in a real allocator. A block involved in a misuse is never reused ("left out
//! of use") and is released only when the arena is dropped.

use crate::error::{KmemError, Site};
use crate::sync::Mutex;
use crate::sys::{SysBlock, sys_alloc, sys_free};
use std::alloc::Layout;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::ptr::NonNull;

/// Fill of `kmem_alloc` memory in checking mode (illumos `KMEM_UNINITIALIZED_PATTERN`).
pub const UNINIT_PATTERN: u32 = 0xbadd_cafe;
/// Fill of freed memory in checking mode (illumos `KMF_DEADBEEF`).
pub const FREE_PATTERN: u32 = 0xdead_beef;
/// Fill of the redzone (illumos `KMEM_REDZONE_BYTE`).
pub const REDZONE_BYTE: u8 = 0xbb;
/// Redzone bytes after every extent, so that a request filling its class still has one.
pub(crate) const GUARD: usize = 16;

/// Which checks an arena performs; chosen per arena when it is built.
///
/// The defaults follow Solaris `kmem_flags` on DEBUG kernels (AUDIT|DEADBEEF|REDZONE): all on
/// in debug builds (and so in tests), all off in release builds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Checking {
    /// Record where each buffer was allocated and freed, and print it in reports.
    pub audit: bool,
    /// Verify the bytes past the requested size at free.
    pub redzone: bool,
    /// Fill allocated and freed memory with patterns and verify freed memory before reuse.
    pub deadbeef: bool,
}

impl Checking {
    /// No checks: the fast path. See the crate doc for what is still caught.
    pub const OFF: Checking = Checking { audit: false, redzone: false, deadbeef: false };
    /// Every check.
    pub const FULL: Checking = Checking { audit: true, redzone: true, deadbeef: true };

    /// Whether any check is on.
    pub const fn any(self) -> bool {
        self.audit || self.redzone || self.deadbeef
    }
}

impl Default for Checking {
    fn default() -> Self {
        if cfg!(debug_assertions) { Checking::FULL } else { Checking::OFF }
    }
}

/// How a new buffer's user bytes are initialised.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fill {
    /// `kmem_alloc`: garbage (the uninitialised pattern when `deadbeef` is on).
    Garbage,
    /// `kmem_zalloc`: zero the first `n` bytes after the returned pointer.
    Zero(usize),
}

/// What one buffer looks like, for the checked allocator.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Shape {
    /// Bytes of hidden header before the returned pointer.
    pub(crate) header: usize,
    /// The requested size.
    pub(crate) size: usize,
    /// Usable bytes from the returned pointer (class or page rounding).
    pub(crate) extent: usize,
    /// Alignment of the block (the returned pointer is `header` past it).
    pub(crate) align: usize,
    /// The size class index (`None`: page path) and bytes charged to the budget.
    pub(crate) class: Option<usize>,
    pub(crate) charged: usize,
    /// The object cache (id) the buffer belongs to, for `kmem_cache_alloc` buffers.
    pub(crate) cache: Option<usize>,
}

/// Which object cache a buffer belongs to, with its name for reports.
#[derive(Clone, Debug)]
pub(crate) struct CacheTag {
    pub(crate) id: usize,
    pub(crate) name: std::sync::Arc<str>,
}

#[derive(Debug)]
struct Rec {
    block: SysBlock,
    user: NonNull<u8>,
    shape: Shape,
    /// Where the zero fill of `kmem_zalloc` ends (bytes up to here may legitimately be zero
    /// in the redzone).
    zero_end: usize,
    live: bool,
    cache_name: Option<std::sync::Arc<str>>,
    allocated_at: Option<Site>,
    freed_at: Option<Site>,
}

// SAFETY: `user` points into `block`, which the record owns; no thread affinity.
unsafe impl Send for Rec {}

#[derive(Debug, Default)]
struct State {
    /// Every block the arena owns that is live or reusable, by returned address.
    table: BTreeMap<usize, Rec>,
    /// Freed blocks waiting for reuse, oldest first, per block layout.
    free: HashMap<Layout, VecDeque<usize>>,
    /// Blocks left out of use after a misuse.
    kept: Vec<SysBlock>,
}

/// The checked allocator of one arena.
#[derive(Debug)]
pub(crate) struct Checker {
    pub(crate) flags: Checking,
    state: Mutex<State>,
}

/// The result of a checked free.
#[derive(Debug)]
pub(crate) enum Freed {
    /// The buffer is free; return `class`/`charged` to the accounting.
    Ok { class: Option<usize>, charged: usize, error: Option<KmemError> },
    /// The free was refused (the memory stays as it was).
    Refused(KmemError),
}

impl Checker {
    pub(crate) fn new(flags: Checking) -> Self {
        Checker { flags, state: Mutex::new(State::default()) }
    }

    /// Allocates a buffer of `shape`. Returns the pointer, or `None` when the process
    /// allocator refuses, and the misuses found while reusing freed blocks.
    pub(crate) fn alloc(
        &self,
        call: &'static str,
        shape: Shape,
        fill: Fill,
        tag: Option<&CacheTag>,
        site: Site,
    ) -> (Option<NonNull<u8>>, Vec<KmemError>) {
        let layout = Layout::from_size_align(shape.header + shape.extent + GUARD, shape.align)
            .expect("internal: checked layout");
        let mut errors = Vec::new();
        let mut st = self.state.lock();
        let block = loop {
            let Some(addr) = st.free.get_mut(&layout).and_then(VecDeque::pop_front) else {
                break None;
            };
            let rec = st.table.remove(&addr).expect("internal: free list entry not in table");
            match self.modified(&rec) {
                None => break Some(rec.block),
                Some(offset) => {
                    errors.push(modified_error(call, &rec, offset));
                    st.kept.push(rec.block);
                }
            }
        };
        let Some(block) = block.or_else(|| sys_alloc(layout)) else {
            return (None, errors);
        };
        // SAFETY: `header` < block size (the layout adds extent and GUARD after it).
        let user = unsafe { block.ptr.add(shape.header) };
        let zero_end = match fill {
            Fill::Zero(n) => n,
            Fill::Garbage => 0,
        };
        self.paint_new(&block, user, &shape, fill);
        let rec = Rec {
            block,
            user,
            shape,
            zero_end,
            live: true,
            cache_name: tag.map(|t| t.name.clone()),
            allocated_at: self.flags.audit.then_some(site),
            freed_at: None,
        };
        let prev = st.table.insert(user.as_ptr().addr(), rec);
        debug_assert!(prev.is_none(), "internal: block handed out twice");
        (Some(user), errors)
    }

    /// Frees the buffer at `addr`. `size` is what the caller passed, or `None` where the
    /// personality ignores it; `tag` is the object cache the caller frees to (`None`: the
    /// size classes or pages). `destruct` runs on a valid buffer before it is painted, outside
    /// the checker's lock (a destructor may free memory itself).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn free(
        &self,
        call: &'static str,
        arena: &str,
        addr: usize,
        size: Option<usize>,
        tag: Option<&CacheTag>,
        site: Site,
        destruct: impl FnOnce(NonNull<u8>),
    ) -> Freed {
        let (user, class, charged) = {
            let mut st = self.state.lock();
            let passed = size.unwrap_or(0);
            let Some(rec) = st.table.get_mut(&addr) else {
                // Not a buffer start: an interior pointer, or not ours at all.
                if let Some((&base, rec)) = st.table.range(..addr).next_back() {
                    if rec.live && addr < base + rec.shape.extent.max(1) {
                        return Freed::Refused(KmemError::BadBase {
                            call,
                            addr,
                            base,
                            alloc_size: rec.shape.size,
                            allocated_at: rec.allocated_at,
                        });
                    }
                }
                return Freed::Refused(KmemError::InvalidFree { call, arena: arena.to_string(), addr, size: passed });
            };
            if !rec.live {
                return Freed::Refused(KmemError::DuplicateFree {
                    call,
                    addr,
                    size: passed,
                    allocated_at: rec.allocated_at,
                    freed_at: rec.freed_at,
                });
            }
            if rec.shape.cache != tag.map(|t| t.id) {
                let name = |n: Option<&std::sync::Arc<str>>| {
                    n.map_or_else(|| "kmem_alloc".to_string(), |n| format!("cache '{n}'"))
                };
                return Freed::Refused(KmemError::BadCache {
                    call,
                    addr,
                    allocated_from: name(rec.cache_name.as_ref()),
                    freed_to: name(tag.map(|t| &t.name)),
                    allocated_at: rec.allocated_at,
                });
            }
            if let Some(size) = size {
                if size != rec.shape.size {
                    return Freed::Refused(KmemError::BadSize {
                        call,
                        addr,
                        free_size: size,
                        alloc_size: rec.shape.size,
                        allocated_at: rec.allocated_at,
                    });
                }
            }
            // No longer live: a second free from here on is a duplicate.
            rec.live = false;
            rec.freed_at = self.flags.audit.then_some(site);
            (rec.user, rec.shape.class, rec.shape.charged)
        };
        destruct(user);
        let mut st = self.state.lock();
        let rec = st.table.get_mut(&addr).expect("internal: record vanished while freeing");
        let error = if self.flags.redzone { redzone_error(call, rec) } else { None };
        if error.is_some() {
            // Left out of use: the block is neither reused nor released before the arena
            // is dropped.
            let rec = st.table.remove(&addr).expect("present");
            st.kept.push(rec.block);
            return Freed::Ok { class, charged, error };
        }
        if self.flags.deadbeef {
            // SAFETY: the whole block, owned by the checker; its caller has just freed it.
            unsafe { paint(rec.block.ptr, rec.block.layout.size(), &FREE_PATTERN.to_le_bytes()) };
        }
        let layout = rec.block.layout;
        st.free.entry(layout).or_default().push_back(addr);
        Freed::Ok { class, charged, error: None }
    }

    /// Verifies every free block; returns the misuses found. Damaged blocks are left out of use.
    pub(crate) fn verify(&self, call: &'static str) -> Vec<KmemError> {
        let mut st = self.state.lock();
        let damaged: Vec<(usize, usize)> = st
            .table
            .iter()
            .filter(|(_, r)| !r.live)
            .filter_map(|(&a, r)| self.modified(r).map(|off| (a, off)))
            .collect();
        let mut errors = Vec::new();
        for (addr, offset) in damaged {
            let rec = st.table.remove(&addr).expect("present");
            errors.push(modified_error(call, &rec, offset));
            if let Some(q) = st.free.get_mut(&rec.block.layout) {
                q.retain(|&a| a != addr);
            }
            st.kept.push(rec.block);
        }
        errors
    }

    /// Live buffers: (count, first allocation site).
    pub(crate) fn live(&self) -> (usize, Option<Site>) {
        let st = self.state.lock();
        let mut live = st.table.values().filter(|r| r.live);
        let first = live.clone().find_map(|r| r.allocated_at);
        (live.by_ref().count(), first)
    }

    /// Releases every block that is not live; live ones are leaked on purpose (a caller may
    /// still use them). Called when the arena is dropped.
    pub(crate) fn release_all(&self) {
        let mut st = self.state.lock();
        let st = &mut *st;
        st.free.clear();
        let table = std::mem::take(&mut st.table);
        for (_, rec) in table {
            if rec.live {
                rec.block.leak();
            } else {
                // SAFETY: a freed block is owned by the arena alone; the caller freed it.
                unsafe { sys_free(rec.block) };
            }
        }
        for block in st.kept.drain(..) {
            // SAFETY: kept blocks were freed by their callers (or never handed out again).
            unsafe { sys_free(block) };
        }
    }

    fn paint_new(&self, block: &SysBlock, user: NonNull<u8>, shape: &Shape, fill: Fill) {
        let len = block.layout.size();
        // Header and redzone first, then the user bytes over them.
        // SAFETY: the whole block, not yet handed out.
        unsafe { paint(block.ptr, len, &[REDZONE_BYTE]) };
        match fill {
            Fill::Zero(n) => {
                debug_assert!(n <= shape.extent, "internal: zero fill past extent");
                // SAFETY: `user + n` lies within the block (`n <= extent`, and the block holds
                // header + extent + GUARD bytes).
                unsafe { user.as_ptr().write_bytes(0, n) };
            }
            Fill::Garbage => {
                let pattern = if self.flags.deadbeef { &UNINIT_PATTERN.to_le_bytes()[..] } else { &[0][..] };
                // SAFETY: `user .. user + size` lies inside the block (size <= extent).
                unsafe { paint(user, shape.size, pattern) }
            }
        }
    }

    /// The first offset at which a free block no longer holds the free pattern.
    fn modified(&self, rec: &Rec) -> Option<usize> {
        if !self.flags.deadbeef {
            return None;
        }
        first_mismatch(block_bytes(&rec.block), &FREE_BYTES)
    }
}

fn modified_error(call: &'static str, rec: &Rec, block_offset: usize) -> KmemError {
    let pat = FREE_PATTERN.to_le_bytes();
    let header = rec.shape.header;
    KmemError::ModifiedAfterFree {
        call,
        addr: rec.user.as_ptr().addr(),
        size: rec.shape.size,
        offset: block_offset.wrapping_sub(header),
        expected: pat[block_offset % 4],
        found: block_bytes(&rec.block)[block_offset],
        allocated_at: rec.allocated_at,
        freed_at: rec.freed_at,
    }
}

fn redzone_error(call: &'static str, rec: &Rec) -> Option<KmemError> {
    let bytes = block_bytes(&rec.block);
    let h = rec.shape.header;
    let size = rec.shape.size;
    // Past the request: zero up to the end of a `kmem_zalloc` extent fill, then redzone bytes.
    let zero_end = (h + rec.zero_end).clamp(h + size, bytes.len());
    let (offset, expected) = match first_mismatch(&bytes[h + size..zero_end], &ZERO_BYTES) {
        Some(i) => (size + i, 0),
        None => (zero_end - h + first_mismatch(&bytes[zero_end..], &REDZONE_BYTES)?, REDZONE_BYTE),
    };
    Some(KmemError::Redzone {
        call,
        addr: rec.user.as_ptr().addr(),
        size,
        offset,
        found: bytes[h + offset],
        expected,
        allocated_at: rec.allocated_at,
    })
}

/// The whole block as bytes. Every byte of a checked block is written by `paint_new` before
/// it is handed out, so the slice is initialised.
fn block_bytes(block: &SysBlock) -> &[u8] {
    // SAFETY: the block is `layout.size()` bytes owned by the checker, all initialised by
    // `paint_new` (or `paint` at free); the checker's lock is held by every caller, and a
    // caller of the DDI functions that writes to a buffer concurrently with its own free has
    // broken `kmem_free`'s contract.
    unsafe { std::slice::from_raw_parts(block.ptr.as_ptr(), block.layout.size()) }
}

/// Fills `len` bytes at `p` with the repeating `pattern` (one byte, or four).
///
/// Bulk writes, not a byte loop: the patterns cover whole blocks, and Miri runs the test suite.
///
/// # Safety
/// - `p .. p + len` lies inside one block the caller owns and may write.
unsafe fn paint(p: NonNull<u8>, len: usize, pattern: &[u8]) {
    debug_assert!(matches!(pattern.len(), 1 | 4), "internal: pattern period");
    let p = p.as_ptr();
    if let [byte] = pattern {
        // SAFETY: `p .. p + len` is writable (the function's contract).
        unsafe { p.write_bytes(*byte, len) };
        return;
    }
    let mut done = len.min(pattern.len());
    // SAFETY: `done <= len` bytes at `p` are writable; `pattern` is a separate slice.
    unsafe { std::ptr::copy_nonoverlapping(pattern.as_ptr(), p, done) };
    // Double the painted prefix; `done` stays a multiple of the period, so the phase holds.
    while done < len {
        let n = done.min(len - done);
        let dst = p.wrapping_add(done);
        // SAFETY: source `p .. p + n` and destination `p + done .. p + done + n` lie inside
        // the block (`done + n <= len`) and do not overlap (`n <= done`).
        unsafe { std::ptr::copy_nonoverlapping(p, dst, n) };
        done += n;
    }
}

const fn repeated(pattern: [u8; 4]) -> [u8; 256] {
    let mut out = [0; 256];
    let mut i = 0;
    while i < 256 {
        out[i] = pattern[i % 4];
        i += 1;
    }
    out
}

const FREE_BYTES: [u8; 256] = repeated(FREE_PATTERN.to_le_bytes());
const ZERO_BYTES: [u8; 256] = [0; 256];
const REDZONE_BYTES: [u8; 256] = [REDZONE_BYTE; 256];

/// The first index where `bytes` differs from `pattern` repeated from index 0 (a 256-byte run
/// of a pattern whose period divides 256). Whole runs compare as slices (`memcmp`).
fn first_mismatch(bytes: &[u8], pattern: &[u8; 256]) -> Option<usize> {
    bytes.chunks(256).enumerate().find_map(|(i, chunk)| {
        (chunk != &pattern[..chunk.len()])
            .then(|| i * 256 + chunk.iter().zip(pattern).position(|(a, b)| a != b).expect("chunks differ"))
    })
}
