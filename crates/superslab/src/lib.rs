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
//!   the same load gives its owner and its record ([`OwnerTag`]).
//! - [`Segment`] / [`Slab`]: metadata, out of band (never inside blocks), found from any
//!   block address by masking: `segment = addr & !(SEGMENT_SIZE-1)`, slab by slice index
//!   or by the record offset of its map entry.
//! - [`Slab`]: one LIFO free list per slab ("free-list sharding", as mimalloc's pages):
//!   malloc pops from its class's current slab, every free pushes onto the block's own
//!   slab, and no block ever moves from one list to another.
//! - [`SlabHeap`]: the slabs of one owner (a thread heap): per-class queues of slabs with
//!   blocks to give, full slabs set aside, carving, empty slab and segment recycling.
//! - [`RemoteQueue`]: the lock-free MPSC queue through which other threads hand blocks back
//!   to their owner.
//! - [`SegmentPool`]: the process-wide cache of empty segments.
//!
//! ## Invariants owned here
//! - A segment belongs to exactly one owner; every slab in it has that owner. Only the
//!   owner's thread reads or writes a slab's free list, counters and state, with one
//!   exception: a thread that excludes the owner's `SlabHeap` calls and queue drains may
//!   fill a *full* slab's list from the owner's remote queue
//!   ([`SlabHeap::adopt_remote`]), because the owner's fast paths never touch a full slab
//!   (its map entries send every free to the slow path); the entries say "not full" again
//!   only after the last push (`Release`; the owner's map load is `Acquire`).
//! - A slab's `used` (blocks carved less blocks on its list or parked) counts the blocks
//!   the program holds; a slab is closed only at `used == 0`, so a block being freed pins
//!   its slab (and its slab's owner) until the owner has taken the block back.
//! - A live slab is in exactly one state ([`SlabState`]): current (its owner pops from it),
//!   queued (in its class's queue: it has a free block, blocks to carve or parked blocks),
//!   or full (in no list: nothing to give). Its map entries carry [`FULL_FLAG`] exactly when it is full
//!   or has parked blocks, so a free into it never takes the fast path: the slow path
//!   queues a full slab again, and refuses the free of a parked block (a double free).
//! - Purging ([`SlabHeap::purge`]): a closed slab's slices stay resident ("dirty") until
//!   they have been free for at least the caller's delay (two purge ticks at least a delay
//!   apart), and opening a slab takes resident free slices before purged ones, so closing
//!   and reopening slabs does not fault pages in again. Only whole free slices are purged.
//!   `purge` touches only the segments' slice bitmaps, never a slab: another thread may run
//!   it for an idle owner while it excludes the owner's other `SlabHeap` calls.
//! - Parking ([`SlabHeap::sweep_sparse`], owner's thread only): a queued slab's pages
//!   ([`PAGE`](os_pages::PAGE)) whose carved blocks are all free may be given back to the
//!   OS; the blocks overlapping them are then *parked*: free, on no list, marked by the
//!   slab's page mask ([`Slab::parked_pages`]). No held block overlaps a parked page, and no
//!   uncarved block does. Parked blocks go back on the list, re-initialised as carving
//!   does, only when the slab has nothing else to give (its carve finds nothing to carve).
//! - Block starts: a live slab's record holds the constants of its block-start test
//!   ([`Slab::holds_block`]: true exactly for the starts of its carved blocks; false for
//!   every record of a closed slab). Only blocks it accepts go onto a slab's list (the
//!   facade tests every free), and a link read from free memory is tested before it is
//!   followed: [`Slab::pop`] tests that the list's head lies in the slab's carved part
//!   before it decodes the head's link (a link overwritten after free is reported through
//!   `ptr_conversion::misuse` and the list dropped there; a forged link into the carved
//!   part passes, see `docs/security.md`), the sparse sweep tests the whole list with the
//!   block-start test before walking it, and
//!   [`RemoteQueue::drain`] hands every decoded link to its caller's test first.
//! - No queued slab is empty: the free that takes a queued slab's `used` to 0 closes it
//!   ([`SlabHeap::emptied`]); a current slab may be empty (its owner pops from it next).
//! - The [`SegmentPool`] keeps empty segments resident until its decay purges them: once
//!   no segment has been taken or given back for a tick, or after [`LONG_TICKS`] ticks.
//! - Memory orderings: a segment is fully initialised before its map entry is published
//!   (`Release`), as is a full slab's list before its entries say "not full"; remote pushes are `Release` CASes and the owner's drain is an `Acquire`
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
//!
//! static MAP: AddressMap = AddressMap::new();
//! // Keeps no empty segment: a segment whose slabs all close is unmapped at once.
//! static POOL: SegmentPool<MmapPages> = SegmentPool::new(MmapPages, &MAP, 0);
//!
//! let mut heap = SlabHeap::<Plain>::new();
//! heap.set_owner(1); // any token unique among live owners
//! let c = class_of(64).unwrap();
//! let s = heap.next_slab(&POOL, c).unwrap(); // a new slab, current for class c
//! // SAFETY: `s` is our live slab; only this thread uses the heap.
//! unsafe {
//!     assert_eq!(heap.carve(&POOL, s, 10), 10);
//!     let b = (*s).pop().unwrap(); // malloc
//!     assert_eq!(MAP.region(b.addr()), Region::Segment); // one load: ours
//!     let slab = Segment::<Plain>::slab_of(b.addr());
//!     assert_eq!((slab.owner(), slab.class(), slab.used()), (1, c, 1));
//!     assert!((*s).push(b)); // free: back onto its own slab's list (true: still held, as current)
//!     heap.release_current(&POOL, s); // every block is back: the slab closes
//!     heap.release_empty(&POOL); // its segment goes back
//!     assert!(heap.is_empty());
//!     assert_eq!(MAP.region(b.addr()), Region::Foreign);
//! }
//! ```
#![no_std]
#![warn(missing_docs)]

mod map;
mod remote;
mod segment;

pub use map::{
    owner_tag_bits, slab_record, AddressMap, OwnerTag, Region, ADDRESS_BITS, ENTRY_FOREIGN,
    ENTRY_SEGMENT, FULL_FLAG, LARGE_COUNT_END, MAP_ENTRIES, RECORD_MASK, TAG_UNIT,
};
pub use remote::RemoteQueue;
pub use segment::{
    PoolStats, Segment, SegmentPool, Slab, SlabHeap, SlabState, SpinLock, Sweep, LONG_TICKS,
    RECORD_SHIFT, SHRINKING_EMPTIES,
};

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
