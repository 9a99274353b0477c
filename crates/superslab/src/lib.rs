//! # superslab: segments, slabs, owner lookup, remote frees
//!
//! Memory for small and medium blocks comes from **segments**: [`SEGMENT_SIZE`]-aligned
//! regions from the OS (through the [`PageSource`] contract), each cut into 64 **slices**
//! of [`SLICE_SIZE`]. Slice 0 holds the segment's metadata; a **slab** is a run of
//! slices holding blocks of one size class, carved lazily (bump pointer) and recycled
//! through a per-slab free list.
//!
//! - [`AddressMap`]: one entry per slice of the address space, so an address is known to
//!   be ours (a segment, or large blocks) with one load, and for a live slab's slice
//!   the same load gives owner and class ([`OwnerTag`]).
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
//! A slab heap taking blocks from segments of `mmap` pages (`os_pages::MmapPages`), an
//! owner lookup from a block's address, and the segment going back to the OS when its
//! last slab closes.
//! ```
//! use os_pages::MmapPages;
//! use superslab::{AddressMap, Region, Segment, SegmentPool, SlabHeap};
//! use tiny_layout::{class_of, Plain};
//! use tls_sll::FreeList;
//!
//! static MAP: AddressMap = AddressMap::new();
//! // Keeps no empty segment: a segment whose slabs all close is unmapped at once.
//! static POOL: SegmentPool<MmapPages> = SegmentPool::new(MmapPages, &MAP, 0);
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

pub use map::{
    owner_tag_bits, slab_class, slab_class_unchecked, AddressMap, OwnerTag, Region, ADDRESS_BITS,
    CLASS_STRIDE, ENTRY_FOREIGN, ENTRY_SEGMENT, MAP_ENTRIES, TAG_UNIT,
};
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
static_assertions::const_assert!(tiny_layout::MIN_SLAB_BYTES.is_multiple_of(SLICE_SIZE));
static_assertions::const_assert!(tiny_layout::MAX_SLAB_BYTES <= SEGMENT_SIZE / 4);

/// The page contract segments are made of, from the `os_pages` box (re-exported because
/// it is part of this crate's API: [`SegmentPool`] is generic over it, and a user who
/// implements or names it gets exactly the trait this crate was built with).
pub use os_pages::PageSource;

#[cfg(test)]
mod tests;
