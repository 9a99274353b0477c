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
//! - Purging ([`SlabHeap::purge`]): a closed slab's slices stay resident ("dirty") until
//!   they have been free for at least the caller's delay (two purge ticks at least a delay
//!   apart), and opening a slab takes resident free slices before purged ones, so closing
//!   and reopening slabs does not fault pages in again. Only whole free slices are purged.
//! - Memory orderings: a segment is fully initialised before its map entry is published
//!   (`Release`); remote pushes are `Release` CASes and the owner's drain is an `Acquire`
//!   swap, so the block links and chain heads' next-chain words (and everything the
//!   freeing thread wrote before) are visible to the owner. These are the only atomics on block paths.
//!
//! ## Example
//! A slab heap taking blocks from segments of a toy [`PageSource`] (the global allocator;
//! hakmem's and `pool_alloc`'s use `mmap`), an owner lookup from a block's address, and
//! the segment going back when its last slab closes.
//! ```
//! use core::ptr::NonNull;
//! use std::alloc::{alloc_zeroed, dealloc, Layout};
//! use superslab::{AddressMap, PageSource, Region, Segment, SegmentPool, SlabHeap, SEGMENT_SIZE};
//! use tiny_layout::{class_of, Plain};
//! use tls_sll::FreeList;
//!
//! /// Zeroed, segment-aligned memory from the global allocator.
//! struct StdPages;
//! // SAFETY: alloc_zeroed gives fresh zeroed memory of the asked size and alignment;
//! // `purge` zeroes; this pool only maps and unmaps whole segments.
//! unsafe impl PageSource for StdPages {
//!     fn map(&self, size: usize, align: usize) -> Option<NonNull<u8>> {
//!         let layout = Layout::from_size_align(size, align.max(Self::PAGE)).ok()?;
//!         NonNull::new(unsafe { alloc_zeroed(layout) })
//!     }
//!     unsafe fn unmap(&self, p: NonNull<u8>, size: usize) {
//!         let layout = Layout::from_size_align(size, SEGMENT_SIZE).unwrap();
//!         unsafe { dealloc(p.as_ptr(), layout) }
//!     }
//!     unsafe fn purge(&self, p: NonNull<u8>, size: usize) {
//!         unsafe { p.as_ptr().write_bytes(0, size) }
//!     }
//! }
//!
//! static MAP: AddressMap = AddressMap::new();
//! // Keeps no empty segment: a segment whose slabs all close is unmapped at once.
//! static POOL: SegmentPool<StdPages> = SegmentPool::new(StdPages, &MAP, 0);
//!
//! let mut heap = SlabHeap::<Plain>::new();
//! heap.set_owner(1); // any token unique among live owners
//! let c = class_of(64).unwrap();
//! let mut cache = FreeList::<Plain>::new(u32::MAX);
//! assert_eq!(heap.take_blocks(&POOL, c, 10, &mut cache), 10);
//!
//! let b = cache.pop().unwrap();
//! assert_eq!(MAP.region(b.addr()), Region::Segment); // one load: ours
//! // SAFETY: the map says `b` lies in a live segment.
//! let slab = unsafe { Segment::<Plain>::slab_of(b.addr()) };
//! assert_eq!((slab.owner(), slab.class(), slab.used()), (1, c, 10));
//!
//! // SAFETY: blocks taken from this heap, free again, returned by the owner.
//! unsafe { heap.return_block(&POOL, b) };
//! while let Some(b) = cache.pop() {
//!     unsafe { heap.return_block(&POOL, b) };
//! }
//! heap.release_empty(&POOL); // closes the empty slab: its segment goes back
//! assert!(heap.is_empty());
//! assert_eq!(MAP.region(b.addr()), Region::Foreign);
//! ```
#![no_std]
#![warn(missing_docs)]

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
/// The crate example implements one over the global allocator; hakmem's and
/// `pool_alloc`'s implement it over `mmap`, `munmap` and `madvise(MADV_DONTNEED)`.
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
