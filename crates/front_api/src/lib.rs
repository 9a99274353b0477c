//! # front_api: the malloc family's semantics
//!
//! malloc, calloc, realloc, reallocarray, posix_memalign, aligned_alloc, memalign, valloc,
//! pvalloc and malloc_usable_size, with glibc's semantics, over any [`Backend`]. This box
//! decides *what* each call means (zero sizes, overflow, alignment rules, what realloc
//! keeps); the backend decides *where* memory comes from. Errors come back as [`Error`];
//! turning them into `errno` is the caller's job (the C ABI layer).
//!
//! ## Invariants owned here
//! - Every pointer returned for a request of 16 bytes or more is 16-byte aligned; an
//!   aligned request returns a pointer aligned to at least its alignment.
//! - No request larger than `isize::MAX` reaches the backend; `calloc` and
//!   `reallocarray` products are overflow-checked.
//! - A failed `realloc` leaves the old block untouched and allocated.
//! - `realloc(p, n)` keeps the first `min(n, usable_size(p))` bytes.
//!
//! ## Example
//! A toy backend over the global allocator (each block remembers its size and alignment
//! in the 16 bytes before it); hakmem's backend is its slabs and large tier.
//! ```
//! use front_api::{Api, Backend, Error};
//! use std::alloc::{alloc, alloc_zeroed, dealloc, Layout};
//! use std::ptr::null_mut;
//!
//! struct Std;
//! fn raw(size: usize, align: usize, zeroed: bool) -> *mut u8 {
//!     let pre = align.max(16);
//!     let Some(total) = size.checked_add(pre) else { return null_mut() };
//!     let Ok(layout) = Layout::from_size_align(total, pre) else { return null_mut() };
//!     // SAFETY: `layout` has a non-zero size.
//!     let base = unsafe { if zeroed { alloc_zeroed(layout) } else { alloc(layout) } };
//!     if base.is_null() {
//!         return base;
//!     }
//!     // SAFETY: `pre >= 16` bytes before the block are ours.
//!     unsafe {
//!         let p = base.add(pre);
//!         p.cast::<usize>().sub(2).write(size);
//!         p.cast::<usize>().sub(1).write(pre);
//!         p
//!     }
//! }
//! // SAFETY: blocks are at least `size` bytes, aligned to max(16, align), exclusively
//! // the caller's; `usable_size` is the size asked for.
//! unsafe impl Backend for Std {
//!     const PAGE: usize = 4096;
//!     fn alloc(&self, size: usize) -> *mut u8 { raw(size, 16, false) }
//!     fn alloc_zeroed(&self, size: usize) -> *mut u8 { raw(size, 16, true) }
//!     fn alloc_aligned(&self, size: usize, align: usize) -> *mut u8 { raw(size, align, false) }
//!     unsafe fn free(&self, p: *mut u8) {
//!         unsafe {
//!             let (size, pre) = (p.cast::<usize>().sub(2).read(), p.cast::<usize>().sub(1).read());
//!             dealloc(p.sub(pre), Layout::from_size_align_unchecked(size + pre, pre));
//!         }
//!     }
//!     unsafe fn usable_size(&self, p: *mut u8) -> usize {
//!         unsafe { p.cast::<usize>().sub(2).read() }
//!     }
//!     unsafe fn resize_in_place(&self, p: *mut u8, new_size: usize) -> bool {
//!         new_size <= unsafe { self.usable_size(p) }
//!     }
//! }
//!
//! let api = Api(Std);
//! let p = api.malloc(0).unwrap(); // a unique, freeable pointer
//! unsafe { api.free(p) };
//! assert_eq!(api.malloc(usize::MAX), Err(Error::NoMemory)); // above isize::MAX
//! assert_eq!(api.calloc(usize::MAX, 2), Err(Error::NoMemory)); // overflow checked
//! assert_eq!(api.posix_memalign(24, 8), Err(Error::Invalid)); // not a power of two
//! let a = api.aligned_alloc(256, 100).unwrap();
//! assert_eq!(a as usize % 256, 0);
//!
//! let p = api.malloc(10).unwrap();
//! unsafe { p.write_bytes(7, 10) };
//! let q = unsafe { api.realloc(p, 1000) }.unwrap(); // moved, contents kept
//! assert_eq!(unsafe { *q.add(9) }, 7);
//! assert_eq!(unsafe { api.realloc(q, 0) }, Ok(null_mut())); // glibc: frees, gives null
//! unsafe { api.free(a) };
//! ```
#![no_std]
#![warn(missing_docs)]

/// Alignment every block has without asking for it.
pub const MIN_ALIGN: usize = 16;

/// Why a call failed (mapped to `errno` by the caller).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// ENOMEM: the request cannot be met.
    NoMemory,
    /// EINVAL: a bad alignment.
    Invalid,
}

/// Where memory comes from: the contract the facade implements over the boxes.
///
/// Only `alloc`, `alloc_zeroed`, `alloc_aligned`, `free`, `usable_size` and
/// `resize_in_place` are required; see the [crate example](crate) for a whole backend.
///
/// # Safety
/// `alloc` must return null or a block of at least `size` usable bytes aligned to
/// [`MIN_ALIGN`]; `alloc_aligned` null or a block aligned to `align`; both exclusively
/// the caller's until freed. `usable_size` must be at least the size requested.
pub unsafe trait Backend {
    /// Page size (valloc, pvalloc).
    const PAGE: usize;
    /// A block of at least `size` bytes (`size <= isize::MAX`), or null.
    fn alloc(&self, size: usize) -> *mut u8;
    /// A zero-filled block of at least `size` bytes, or null.
    fn alloc_zeroed(&self, size: usize) -> *mut u8;
    /// A block of at least `size` bytes aligned to `align` (a power of two above
    /// [`MIN_ALIGN`]), or null.
    fn alloc_aligned(&self, size: usize, align: usize) -> *mut u8;
    /// Frees a block of this backend (non-null).
    ///
    /// # Safety
    /// `p` was returned by this backend and is not used afterwards.
    unsafe fn free(&self, p: *mut u8);
    /// Usable bytes of a live block.
    ///
    /// # Safety
    /// `p` is a live block of this backend.
    unsafe fn usable_size(&self, p: *mut u8) -> usize;
    /// Resizes a live block without moving it if the backend can; true on success.
    ///
    /// # Safety
    /// `p` is a live block of this backend.
    unsafe fn resize_in_place(&self, p: *mut u8, new_size: usize) -> bool;
    /// Resizes a live block in place or by moving it without copying through the program
    /// (the OS remapping pages); `None` if it cannot, and then `p` is unchanged. The
    /// default only resizes in place.
    ///
    /// # Safety
    /// `p` is a live block of this backend; on `Some(q)`, `p` is no longer valid.
    unsafe fn resize(&self, p: *mut u8, new_size: usize) -> Option<*mut u8> {
        // SAFETY: forwarded.
        unsafe { self.resize_in_place(p, new_size) }.then_some(p)
    }
}

/// The malloc family over a backend: each method is one C function's semantics, with
/// errors as [`Error`] instead of `errno` (see the [crate example](crate)).
pub struct Api<B: Backend>(pub B);

#[inline(always)]
fn checked_size(size: usize) -> Result<usize, Error> {
    if size > isize::MAX as usize {
        Err(Error::NoMemory)
    } else {
        Ok(size)
    }
}

#[inline(always)]
fn non_null(p: *mut u8) -> Result<*mut u8, Error> {
    if p.is_null() {
        Err(Error::NoMemory)
    } else {
        Ok(p)
    }
}

impl<B: Backend> Api<B> {
    /// `malloc(size)`: size 0 gives a unique, freeable pointer.
    #[inline(always)]
    pub fn malloc(&self, size: usize) -> Result<*mut u8, Error> {
        non_null(self.0.alloc(checked_size(size)?))
    }

    /// `calloc(n, size)`: zero-filled, product overflow-checked.
    pub fn calloc(&self, n: usize, size: usize) -> Result<*mut u8, Error> {
        let total = n.checked_mul(size).ok_or(Error::NoMemory)?;
        non_null(self.0.alloc_zeroed(checked_size(total)?))
    }

    /// `free(p)`; null does nothing.
    ///
    /// # Safety
    /// `p` is null or a live block of this backend.
    #[inline(always)]
    pub unsafe fn free(&self, p: *mut u8) {
        if !p.is_null() {
            // SAFETY: forwarded from the caller.
            unsafe { self.0.free(p) }
        }
    }

    /// `realloc(p, size)`, glibc semantics: `p` null acts as malloc; size 0 frees `p` and
    /// returns null (`Ok(null)`); on failure the old block is untouched.
    ///
    /// # Safety
    /// `p` is null or a live block of this backend.
    pub unsafe fn realloc(&self, p: *mut u8, size: usize) -> Result<*mut u8, Error> {
        if p.is_null() {
            return self.malloc(size);
        }
        if size == 0 {
            // SAFETY: forwarded from the caller.
            unsafe { self.0.free(p) };
            return Ok(core::ptr::null_mut());
        }
        let size = checked_size(size)?;
        // SAFETY: `p` is live (caller).
        if let Some(q) = unsafe { self.0.resize(p, size) } {
            return Ok(q);
        }
        let q = non_null(self.0.alloc(size))?;
        // SAFETY: `p` is live with `usable_size` bytes; `q` is fresh with >= size bytes;
        // distinct blocks do not overlap.
        unsafe {
            let keep = self.0.usable_size(p).min(size);
            core::ptr::copy_nonoverlapping(p, q, keep);
            self.0.free(p);
        }
        Ok(q)
    }

    /// `reallocarray(p, n, size)`: realloc with an overflow-checked product.
    ///
    /// # Safety
    /// As for [`realloc`](Self::realloc).
    pub unsafe fn reallocarray(&self, p: *mut u8, n: usize, size: usize) -> Result<*mut u8, Error> {
        let total = n.checked_mul(size).ok_or(Error::NoMemory)?;
        // SAFETY: forwarded.
        unsafe { self.realloc(p, total) }
    }

    /// `posix_memalign`: `align` must be a power of two multiple of `size_of::<*const ()>()`.
    pub fn posix_memalign(&self, align: usize, size: usize) -> Result<*mut u8, Error> {
        if !align.is_power_of_two() || !align.is_multiple_of(core::mem::size_of::<*const ()>()) {
            return Err(Error::Invalid);
        }
        self.aligned(align, size)
    }

    /// `aligned_alloc` (C11/C17 as in glibc 2.38+): `align` must be a power of two.
    pub fn aligned_alloc(&self, align: usize, size: usize) -> Result<*mut u8, Error> {
        if !align.is_power_of_two() {
            return Err(Error::Invalid);
        }
        self.aligned(align, size)
    }

    /// `memalign`: glibc rounds a non-power-of-two alignment up to the next power of two.
    pub fn memalign(&self, align: usize, size: usize) -> Result<*mut u8, Error> {
        let align = align.checked_next_power_of_two().ok_or(Error::NoMemory)?;
        self.aligned(align, size)
    }

    /// `valloc`: page-aligned.
    pub fn valloc(&self, size: usize) -> Result<*mut u8, Error> {
        self.aligned(B::PAGE, size)
    }

    /// `pvalloc`: page-aligned, size rounded up to whole pages (0 → one page).
    pub fn pvalloc(&self, size: usize) -> Result<*mut u8, Error> {
        let rounded = size
            .max(1)
            .checked_add(B::PAGE - 1)
            .ok_or(Error::NoMemory)?
            & !(B::PAGE - 1);
        self.aligned(B::PAGE, rounded)
    }

    /// `malloc_usable_size`: 0 for null.
    ///
    /// # Safety
    /// `p` is null or a live block of this backend.
    pub unsafe fn usable_size(&self, p: *mut u8) -> usize {
        if p.is_null() {
            0
        } else {
            // SAFETY: forwarded.
            unsafe { self.0.usable_size(p) }
        }
    }

    fn aligned(&self, align: usize, size: usize) -> Result<*mut u8, Error> {
        let size = checked_size(size)?;
        if align <= MIN_ALIGN {
            return self.malloc(size);
        }
        if align > isize::MAX as usize - size {
            return Err(Error::NoMemory);
        }
        non_null(self.0.alloc_aligned(size, align))
    }
}

#[cfg(test)]
mod tests;
