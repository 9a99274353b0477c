//! # superslab: segments, slabs, owner lookup, remote frees
//!
//! Memory for small and medium blocks comes from **segments**: [`SEGMENT_SIZE`]-aligned
//! regions from the OS (through the [`PageSource`] contract), each cut into 64 **slices**
//! of [`SLICE_SIZE`]. Slice 0 holds the segment's metadata; a **slab** is a run of
//! slices holding blocks of one size class, carved lazily (bump pointer) and recycled
//! through a per-slab free list.
//!
//! - [`AddressMap`]: one entry per segment-sized granule of the address space, so an
//!   address is known to be ours (a segment, or large blocks) with one load.
//! - [`Segment`] / [`Slab`]: metadata, out of band (never inside blocks), found from any
//!   block address by masking: `segment = addr & !(SEGMENT_SIZE-1)`, slab by slice index.
//! - [`SlabHeap`]: the slabs of one owner (a thread heap): per-class partial slabs,
//!   refill batches, block returns, empty slab and segment recycling.
//! - [`RemoteQueue`]: the lock-free MPSC queue through which other threads hand blocks back
//!   to their owner.
//! - [`SegmentPool`]: the process-wide cache of empty segments.
//!
//! ## Invariants owned here
//! - A segment belongs to exactly one owner; every slab in it has that owner. Only the
//!   owner's thread reads or writes a slab's free list, bump pointer and counters.
//! - `slab.used` counts the slab's blocks outside it (in a thread cache or the program's);
//!   a slab is released only at `used == 0`, so a block being freed pins its slab (and
//!   its slab's owner) until the owner has taken the block back.
//! - Memory orderings: a segment is fully initialised before its map entry is published
//!   (`Release`); remote pushes are `Release` CASes and the owner's drain is an `Acquire`
//!   swap, so the block links (and everything the freeing thread wrote before) are
//!   visible to the owner. These are the only atomics on block paths.
#![no_std]

mod map;
mod remote;
mod segment;

pub use map::{AddressMap, Region, ADDRESS_BITS};
pub use remote::RemoteQueue;
pub use segment::{PoolStats, Segment, SegmentPool, Slab, SlabHeap, SpinLock};

/// Bytes of one segment (4 MiB), also its alignment.
pub const SEGMENT_SIZE: usize = 1 << SEGMENT_SHIFT;
/// log2 of [`SEGMENT_SIZE`].
pub const SEGMENT_SHIFT: usize = 22;
/// Bytes of one slice (64 KiB).
pub const SLICE_SIZE: usize = 1 << SLICE_SHIFT;
/// log2 of [`SLICE_SIZE`].
pub const SLICE_SHIFT: usize = 16;
/// Slices per segment.
pub const SLICES: usize = SEGMENT_SIZE / SLICE_SIZE;

static_assertions::const_assert!(SLICES == 64);
static_assertions::const_assert!(tiny_layout::MIN_SLAB_BYTES % SLICE_SIZE == 0);
static_assertions::const_assert!(tiny_layout::MAX_SLAB_BYTES <= SEGMENT_SIZE / 4);

/// The operating system's pages, as superslab (and the large tier) need them.
///
/// # Safety
/// Implementations must return fresh, zero-filled, readable and writable memory of the
/// requested size and alignment that nothing else uses until it is unmapped.
pub unsafe trait PageSource {
    /// Granularity of mappings (the page size).
    const PAGE: usize = 4096;
    /// Maps `size` bytes (a multiple of the page) aligned to `align` (a power of two).
    fn map(&self, size: usize, align: usize) -> Option<core::ptr::NonNull<u8>>;
    /// Unmaps a range returned by `map` (or a page-aligned part of one).
    ///
    /// # Safety
    /// Nothing may use the range afterwards.
    unsafe fn unmap(&self, p: core::ptr::NonNull<u8>, size: usize);
    /// Gives the pages of a range back to the OS; the range stays mapped and reads as zero.
    ///
    /// # Safety
    /// The range's contents are lost.
    unsafe fn purge(&self, p: core::ptr::NonNull<u8>, size: usize);
    /// Asks for transparent huge pages on a range (a hint; the default does nothing).
    fn hint_huge_pages(&self, p: core::ptr::NonNull<u8>, size: usize) {
        let _ = (p, size);
    }
    /// Resizes a mapping, keeping its contents (moving it if `may_move`); `None` if the
    /// OS cannot. The default cannot.
    ///
    /// # Safety
    /// `p`/`old` is a whole mapping from `map`; on success the old range must not be used.
    unsafe fn remap(
        &self,
        p: core::ptr::NonNull<u8>,
        old: usize,
        new: usize,
        may_move: bool,
    ) -> Option<core::ptr::NonNull<u8>> {
        let _ = (p, old, new, may_move);
        None
    }
}

#[cfg(test)]
mod tests;
