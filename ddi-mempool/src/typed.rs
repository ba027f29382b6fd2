//! The Rust surface: a typed pool whose elements are owned handles.

use crate::error::MempoolError;
use crate::gfp::Gfp;
use crate::pool::{Mempool, MempoolBuilder};
use std::fmt;
use std::marker::PhantomData;
use std::mem::{align_of, size_of};
use std::ops::{Deref, DerefMut};
use std::ptr::NonNull;

/// A mempool of `T` slots: a kmalloc pool of `size_of::<T>()`-byte elements in the creating
/// thread's ddi-kmem arena, with the same reserve guarantee.
///
/// [`alloc`](TypedPool::alloc) moves a value into a slot and returns a [`PoolBox`], which
/// drops the value and gives the slot back with `mempool_free` when it is dropped. A handle
/// borrows its pool, so a pool cannot be destroyed with elements outstanding:
///
/// ```compile_fail
/// use ddi_mempool::{GFP_KERNEL, TypedPool};
/// let pool = TypedPool::<u64>::new(2).unwrap();
/// let b = pool.alloc(GFP_KERNEL, 1).unwrap();
/// drop(pool); // error: `pool` is still borrowed by `b`
/// drop(b);
/// ```
///
/// # Examples
/// ```
/// use ddi_mempool::{GFP_ATOMIC, GFP_KERNEL, TypedPool};
///
/// let pool = TypedPool::<[u32; 8]>::new(2).expect("preallocation");
/// let mut a = pool.alloc(GFP_KERNEL, [0; 8]).expect("process context never fails");
/// a[3] = 7;
/// let b = pool.alloc(GFP_ATOMIC, [1; 8]); // may fail: atomic callers get Err(value) back
/// assert_eq!(a[3], 7);
/// drop((a, b));
/// assert_eq!(pool.curr_nr(), 2);
/// ```
pub struct TypedPool<T> {
    pool: Mempool,
    _slots: PhantomData<fn() -> T>,
}

impl<T> fmt::Debug for TypedPool<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TypedPool").field("type", &std::any::type_name::<T>()).field("pool", &self.pool).finish()
    }
}

impl<T> TypedPool<T> {
    /// The slot size: at least one byte, so zero-sized types get real (distinct) slots.
    const SLOT: usize = if size_of::<T>() == 0 { 1 } else { size_of::<T>() };

    /// A pool guaranteeing `min_nr` slots, with default settings.
    ///
    /// # Panics
    /// If the current arena cannot give `T` its size and alignment (larger than its largest
    /// size class, or a personality whose hidden header breaks the alignment).
    pub fn new(min_nr: usize) -> Result<Self, MempoolError> {
        Self::with(Mempool::builder(min_nr))
    }

    /// A pool with the builder's settings (the builder's `min_nr` included).
    ///
    /// # Panics
    /// As [`TypedPool::new`].
    pub fn with(builder: MempoolBuilder) -> Result<Self, MempoolError> {
        let arena = ddi_kmem::current_arena();
        let align = arena.alignment(Self::SLOT, ddi_kmem::KM_SLEEP);
        assert!(
            align.is_some_and(|a| a >= align_of::<T>()),
            "TypedPool<{}>: arena '{}' gives {:?} alignment for {} bytes, the type needs {}",
            std::any::type_name::<T>(),
            arena.name(),
            align,
            Self::SLOT,
            align_of::<T>()
        );
        let mut pool = Mempool::new();
        builder.init_kmalloc(&mut pool, Self::SLOT)?;
        Ok(TypedPool { pool, _slots: PhantomData })
    }

    /// Moves `value` into a slot: as [`mempool_alloc`](crate::mempool_alloc), it never fails
    /// where `gfp` may sleep in process context; otherwise it may, and gives `value` back.
    pub fn alloc(&self, gfp: Gfp, value: T) -> Result<PoolBox<'_, T>, T> {
        self.place(self.pool.alloc(gfp), value)
    }

    /// Moves `value` into a slot from the reserve only, as
    /// [`mempool_alloc_preallocated`](crate::mempool_alloc_preallocated).
    pub fn alloc_preallocated(&self, value: T) -> Result<PoolBox<'_, T>, T> {
        self.place(self.pool.alloc_preallocated(), value)
    }

    fn place(&self, slot: *mut std::ffi::c_void, value: T) -> Result<PoolBox<'_, T>, T> {
        let Some(slot) = NonNull::new(slot.cast::<T>()) else { return Err(value) };
        // SAFETY: the slot is `SLOT >= size_of::<T>()` bytes from this pool, aligned for `T`
        // (checked against the arena when the pool was made), and ours alone.
        unsafe { slot.write(value) };
        Ok(PoolBox { slot, pool: self })
    }

    /// Changes the guaranteed minimum, as [`mempool_resize`](crate::mempool_resize).
    pub fn resize(&self, new_min_nr: usize) -> Result<(), MempoolError> {
        self.pool.resize(new_min_nr)
    }

    /// Slots in the reserve now.
    pub fn curr_nr(&self) -> usize {
        self.pool.curr_nr()
    }

    /// The guaranteed minimum.
    pub fn min_nr(&self) -> usize {
        self.pool.min_nr()
    }

    /// The untyped pool underneath.
    pub fn as_mempool(&self) -> &Mempool {
        &self.pool
    }
}

/// A `T` in a slot of a [`TypedPool`]; dropping it drops the value and frees the slot to the
/// pool (refilling its reserve first).
pub struct PoolBox<'a, T> {
    slot: NonNull<T>,
    pool: &'a TypedPool<T>,
}

// SAFETY: a `PoolBox` owns its `T` like a `Box` does; sending it sends the `T` (dropped on the
// receiving thread), and the pool it frees to is `Sync`.
unsafe impl<T: Send> Send for PoolBox<'_, T> {}
// SAFETY: `&PoolBox` gives only `&T`.
unsafe impl<T: Sync> Sync for PoolBox<'_, T> {}

impl<T> PoolBox<'_, T> {
    /// Moves the value out and frees the slot.
    pub fn into_inner(this: Self) -> T {
        let this = std::mem::ManuallyDrop::new(this);
        // SAFETY: the slot holds an initialized `T` that nobody else can reach; the handle is
        // not dropped (ManuallyDrop), so the value is read exactly once.
        let value = unsafe { this.slot.read() };
        // SAFETY: the slot came from this pool and is freed once, here.
        unsafe { this.pool.pool.free(this.slot.as_ptr().cast()) };
        value
    }
}

impl<T> Deref for PoolBox<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the slot holds an initialized `T`, shared through `&self`.
        unsafe { self.slot.as_ref() }
    }
}

impl<T> DerefMut for PoolBox<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: the slot holds an initialized `T`, uniquely borrowed through `&mut self`.
        unsafe { self.slot.as_mut() }
    }
}

impl<T: fmt::Debug> fmt::Debug for PoolBox<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

impl<T> Drop for PoolBox<'_, T> {
    fn drop(&mut self) {
        // Free the slot even if `T::drop` panics.
        struct FreeSlot<'p, T>(&'p TypedPool<T>, NonNull<T>);
        impl<T> Drop for FreeSlot<'_, T> {
            fn drop(&mut self) {
                // SAFETY: the slot came from this pool, its value is dropped (or being
                // unwound from), and it is freed once, here.
                unsafe { self.0.pool.free(self.1.as_ptr().cast()) };
            }
        }
        let _free = FreeSlot(self.pool, self.slot);
        // SAFETY: the slot holds an initialized `T`, dropped once, here.
        unsafe { self.slot.drop_in_place() };
    }
}
