//! # refill: batches between a thread cache and its slabs
//!
//! A thread cache (a `tls_sll` list per class) misses or overflows; this box moves a
//! bounded batch of blocks between it and whatever holds the slabs, through two narrow
//! contracts: [`BlockSource`] (give me up to n blocks of class c) and [`BlockSink`] (take
//! this block back). It owns the policy numbers: how many blocks a class caches and how
//! many move per batch.
//!
//! ## Invariants owned here
//! - A refill moves at least 1 and at most [`MAX_BATCH`] blocks; a spill leaves the list
//!   at half its cap, so a list oscillating around its cap does not spill every push.
//! - Caps bound a thread cache's bytes per class by about [`CACHE_BYTES_PER_CLASS`]
//!   (at least one block), so an idle thread holds a bounded amount of memory. Classes of
//!   at most [`MEDIUM_MAX`] bytes cache at least [`MEDIUM_MIN_CACHED`] blocks (so at most
//!   `MEDIUM_MIN_CACHED * MEDIUM_MAX` = 128 KiB per class): with a cap of 1 or 2, a
//!   program replacing 16..32 KiB objects at random went to the slabs on about every
//!   other call (a refill or a spill), and a slab whose last block came back was closed
//!   and a new one opened soon after.
//!
//! ## Example
//! A toy source and sink over a static buffer of blocks; a real one is a slab heap
//! (`superslab::SlabHeap`, adapted by hakmem's facade or `pool_alloc`).
//! ```
//! use core::ptr::NonNull;
//! use ptr_conversion::BlockBase;
//! use refill::{BlockSink, BlockSource};
//! use tiny_layout::{class_of, Plain, SizeClass};
//! use tls_sll::FreeList;
//!
//! #[repr(align(16))]
//! struct Mem([[u8; 16]; 256]);
//! struct Toy { mem: Box<Mem>, next: usize, returned: usize }
//! impl BlockSource<Plain> for Toy {
//!     fn take_blocks(&mut self, _c: SizeClass, max: u32, out: &mut FreeList<Plain>) -> u32 {
//!         let mut n = 0;
//!         while n < max && self.next < self.mem.0.len() {
//!             let p = NonNull::new(self.mem.0[self.next].as_mut_ptr()).unwrap();
//!             // SAFETY: an unused 16-aligned block of the toy's buffer.
//!             unsafe { out.push(BlockBase::from_raw(p)) };
//!             self.next += 1;
//!             n += 1;
//!         }
//!         n
//!     }
//! }
//! impl BlockSink<Plain> for Toy {
//!     fn return_block(&mut self, _c: SizeClass, _b: BlockBase<Plain>) {
//!         self.returned += 1;
//!     }
//! }
//!
//! let c = class_of(16).unwrap();
//! let mut toy = Toy { mem: Box::new(Mem([[0; 16]; 256])), next: 0, returned: 0 };
//! let mut cache = FreeList::<Plain>::new(refill::cache_cap(c));
//! let b = refill::refill(&mut cache, c, &mut toy).unwrap(); // a miss: one batch
//! assert_eq!(toy.next as u32, refill::refill_batch(c));
//! assert_eq!(cache.len(), refill::refill_batch(c) - 1);
//! unsafe { cache.push(b) };
//! refill::flush(&mut cache, c, &mut toy); // thread exit: everything back
//! assert_eq!((cache.len(), toy.returned), (0, toy.next));
//! ```
#![no_std]
#![warn(missing_docs)]

use ptr_conversion::{BlockBase, BlockLayout, SizeClass};
use tls_sll::FreeList;

/// Most blocks moved by one refill.
pub const MAX_BATCH: u32 = 64;
/// Most blocks cached per class.
pub const MAX_CACHED: u32 = 128;
/// Byte budget of one class's cache, for classes above [`SMALL_MAX`].
pub const CACHE_BYTES_PER_CLASS: usize = 32 * 1024;
/// Largest block size cached by count alone: [`MAX_CACHED`] blocks (at most 128 KiB for
/// the largest such class), so that a burst of that many small blocks freed and allocated
/// again stays in the thread cache instead of spilling to the slabs and refilling (as
/// jemalloc's thread cache holds up to 200 blocks of each small class).
pub const SMALL_MAX: usize = 1024;
/// Fewest blocks cached per class for blocks of at most [`MEDIUM_MAX`] bytes.
pub const MEDIUM_MIN_CACHED: u32 = 4;
/// Largest block size given at least [`MEDIUM_MIN_CACHED`] cached blocks.
pub const MEDIUM_MAX: usize = 32 * 1024;

/// Where refills take blocks from (a slab heap).
///
/// The contract between a cache and whatever holds the slabs: implementors push the
/// blocks they hand over onto `out` (with `FreeList::push`, ignoring its cap), and the
/// blocks become the cache's. See the [crate example](crate).
pub trait BlockSource<L: BlockLayout> {
    /// Moves between 1 and `max` blocks of class `c` into `out`; returns how many (0 only
    /// when memory is exhausted).
    fn take_blocks(&mut self, c: SizeClass, max: u32, out: &mut FreeList<L>) -> u32;
}

/// Where spills return blocks to.
///
/// The block handed to [`return_block`](Self::return_block) was obtained from the
/// matching [`BlockSource`] and is free; the sink owns it from then on.
pub trait BlockSink<L: BlockLayout> {
    /// Takes back one block of class `c` that the cache owned.
    fn return_block(&mut self, c: SizeClass, b: BlockBase<L>);
}

/// The cache cap of class `c`.
///
/// ```
/// use refill::{cache_cap, MAX_CACHED};
/// use tiny_layout::{class_of, MAX_CLASS_SIZE};
/// assert_eq!(cache_cap(class_of(16).unwrap()), MAX_CACHED); // small: by count
/// assert_eq!(cache_cap(class_of(1024).unwrap()), MAX_CACHED); // small: by count
/// assert_eq!(cache_cap(class_of(2048).unwrap()), 16); // 32 KiB / 2 KiB
/// assert_eq!(cache_cap(class_of(16 * 1024).unwrap()), 4); // medium: at least 4
/// assert_eq!(cache_cap(class_of(32 * 1024).unwrap()), 4);
/// assert_eq!(cache_cap(class_of(MAX_CLASS_SIZE).unwrap()), 1); // at least one block
/// ```
pub const fn cache_cap(c: SizeClass) -> u32 {
    let by_bytes = CACHE_BYTES_PER_CLASS / c.block_size();
    if c.block_size() <= SMALL_MAX {
        MAX_CACHED
    } else if by_bytes < MEDIUM_MIN_CACHED as usize && c.block_size() <= MEDIUM_MAX {
        MEDIUM_MIN_CACHED
    } else if by_bytes == 0 {
        1
    } else if by_bytes > MAX_CACHED as usize {
        MAX_CACHED
    } else {
        by_bytes as u32
    }
}

/// Blocks moved by one refill of class `c`: half the cap, at most [`MAX_BATCH`].
///
/// ```
/// use refill::{refill_batch, MAX_BATCH};
/// use tiny_layout::class_of;
/// assert_eq!(refill_batch(class_of(16).unwrap()), MAX_BATCH);
/// assert_eq!(refill_batch(class_of(1024).unwrap()), MAX_BATCH);
/// assert_eq!(refill_batch(class_of(4096).unwrap()), 4); // cap 8
/// ```
pub const fn refill_batch(c: SizeClass) -> u32 {
    let half = cache_cap(c).div_ceil(2);
    if half > MAX_BATCH {
        MAX_BATCH
    } else {
        half
    }
}

/// Refills an empty `list` of class `c` from `src` and pops one block for the caller.
/// `None` means memory is exhausted.
pub fn refill<L: BlockLayout, S: BlockSource<L>>(
    list: &mut FreeList<L>,
    c: SizeClass,
    src: &mut S,
) -> Option<BlockBase<L>> {
    let want = refill_batch(c);
    src.take_blocks(c, want, list);
    list.pop()
}

/// Spills blocks from `list` (class `c`) to `sink` until it holds half its cap.
///
/// The most recently pushed blocks go back to the sink; a list already at or below half
/// its cap is left alone. Returns how many blocks went back.
pub fn spill<L: BlockLayout, S: BlockSink<L>>(
    list: &mut FreeList<L>,
    c: SizeClass,
    sink: &mut S,
) -> u32 {
    let n = list.len().saturating_sub(list.cap() / 2);
    give_back(list, n, c, sink)
}

/// Returns every block of `list` to `sink` (thread exit, trim); returns how many.
pub fn flush<L: BlockLayout, S: BlockSink<L>>(
    list: &mut FreeList<L>,
    c: SizeClass,
    sink: &mut S,
) -> u32 {
    give_back(list, list.len(), c, sink)
}

/// Hands up to `n` blocks from the top of `list` to `sink`; returns how many.
fn give_back<L: BlockLayout, S: BlockSink<L>>(
    list: &mut FreeList<L>,
    n: u32,
    c: SizeClass,
    sink: &mut S,
) -> u32 {
    let mut moved = 0;
    while moved < n {
        let Some(b) = list.pop() else { break };
        sink.return_block(c, b);
        moved += 1;
    }
    moved
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use core::ptr::NonNull;
    use std::vec::Vec;
    use tiny_layout::Plain;

    /// A model slab: a pool of 16-byte-aligned blocks, tracking what is out.
    struct Pool {
        mem: Vec<u128>,
        next: usize,
        returned: Vec<usize>,
        limit: usize,
    }
    impl Pool {
        fn new(limit: usize) -> Pool {
            Pool {
                mem: std::vec![0; limit * 4],
                next: 0,
                returned: Vec::new(),
                limit,
            }
        }
        fn at(&mut self, i: usize) -> BlockBase<Plain> {
            unsafe {
                BlockBase::from_raw(NonNull::new(self.mem.as_mut_ptr().add(i * 4).cast()).unwrap())
            }
        }
    }
    impl BlockSource<Plain> for Pool {
        fn take_blocks(&mut self, _c: SizeClass, max: u32, out: &mut FreeList<Plain>) -> u32 {
            let mut n = 0;
            while n < max && self.next < self.limit {
                let b = self.at(self.next);
                unsafe { out.push(b) };
                self.next += 1;
                n += 1;
            }
            n
        }
    }
    impl BlockSink<Plain> for Pool {
        fn return_block(&mut self, _c: SizeClass, b: BlockBase<Plain>) {
            self.returned.push(b.addr());
        }
    }

    #[test]
    fn caps_and_batches_are_bounded_for_every_class() {
        for c in SizeClass::all() {
            let cap = cache_cap(c);
            assert!((1..=MAX_CACHED).contains(&cap));
            let budget = if c.block_size() <= SMALL_MAX {
                MAX_CACHED as usize * c.block_size()
            } else if c.block_size() <= MEDIUM_MAX {
                CACHE_BYTES_PER_CLASS.max(MEDIUM_MIN_CACHED as usize * c.block_size())
            } else {
                CACHE_BYTES_PER_CLASS.max(c.block_size())
            };
            assert!(cap as usize * c.block_size() <= budget);
            // Small classes keep MAX_CACHED blocks, medium ones at least MEDIUM_MIN_CACHED.
            if c.block_size() <= SMALL_MAX {
                assert_eq!(cap, MAX_CACHED);
            }
            if c.block_size() <= MEDIUM_MAX {
                assert!(cap >= MEDIUM_MIN_CACHED);
            }
            let b = refill_batch(c);
            assert!((1..=MAX_BATCH).contains(&b) && b <= cap);
        }
    }

    #[test]
    fn refill_moves_one_batch_and_spill_halves() {
        let c = SizeClass::new(0).unwrap();
        let mut pool = Pool::new(1000);
        let mut list = FreeList::<Plain>::new(cache_cap(c));
        let got = refill(&mut list, c, &mut pool).unwrap();
        assert_eq!(pool.next as u32, refill_batch(c));
        assert_eq!(list.len(), refill_batch(c) - 1);
        unsafe { list.push(got) };
        while list.len() < list.cap() + 1 {
            let mut extra = FreeList::new(1);
            pool.take_blocks(c, 1, &mut extra);
            unsafe { list.push(extra.pop().unwrap()) };
        }
        spill(&mut list, c, &mut pool);
        assert_eq!(list.len(), list.cap() / 2);
        flush(&mut list, c, &mut pool);
        assert!(list.is_empty());
        assert_eq!(pool.returned.len(), pool.next);
    }

    #[test]
    fn exhausted_source_gives_none() {
        let c = SizeClass::new(5).unwrap();
        let mut pool = Pool::new(0);
        let mut list = FreeList::<Plain>::new(8);
        assert!(refill(&mut list, c, &mut pool).is_none());
    }
}
