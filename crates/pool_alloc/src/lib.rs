//! # pool_alloc: a fixed-size object pool built from hakmem's boxes
//!
//! A second allocator, with a different front end from hakmem's malloc, assembled from
//! the same boxes through their public contracts only (never through the `hakmem`
//! facade):
//!
//! | box | used for |
//! | --- | --- |
//! | `tiny_layout` | the object size's [`SizeClass`] (`class_of`), block size, stride, slab size |
//! | `ptr_conversion` | typed `BlockBase` / [`UserPtr`]: the only BASE ↔ USER conversion |
//! | `tls_sll` | the slabs' free lists (through `superslab`), and the remote drain's list in tests |
//! | `refill` | what the pool pops from next: carve a batch, or move on to the next slab (`SlabSource`) |
//! | `os_pages` | pages from the OS: [`PageSource`], [`MmapPages`] (anonymous `mmap`) |
//! | `superslab` | slabs in 4 MiB segments ([`SlabHeap`], [`SegmentPool`]), ownership lookup ([`AddressMap`], `Segment::slab_of`), cross-thread frees ([`RemoteQueue`]) |
//!
//! An [`ObjectPool`] hands out blocks of one size. It is single-owner (`!Send`, one
//! thread uses it); other threads give blocks back through a [`RemoteQueue`] with
//! [`free_remote`], and the owner takes them back with [`ObjectPool::collect_remote`].
//! Memory comes from a [`SegmentPool`] over a [`PageSource`] (`os_pages`); this crate
//! provides a process-wide pool of segments over `mmap` ([`SEGMENTS`], over
//! [`MmapPages`]), and several object pools may share one segment pool.
//!
//! ```
//! use pool_alloc::{ObjectPool, SEGMENTS};
//!
//! let mut pool = ObjectPool::new(&SEGMENTS, 24).unwrap();
//! let a = pool.alloc().unwrap();
//! // SAFETY: `a` is a fresh block of at least 24 bytes, 16-byte aligned.
//! unsafe { a.as_ptr().cast::<[u64; 3]>().write([1, 2, 3]) };
//! assert!(pool.owns(a.as_ptr()));
//! // SAFETY: `a` came from this pool and is not used afterwards.
//! assert!(unsafe { pool.free(a) });
//! // A slab's list is LIFO: the next allocation reuses the block just freed.
//! assert_eq!(pool.alloc(), Some(a));
//! ```
//!
//! ## Invariants owned here
//! - Every block the pool hands out is a block of a slab whose owner token is the pool's,
//!   of the pool's class, 16-byte aligned, with at least [`ObjectPool::object_size`]
//!   usable bytes.
//! - The pool pops from one slab at a time, its current slab (`refill` picks the next), and
//!   every free pushes onto the block's own slab's list: a block freed is the next one its
//!   slab hands out.
//! - `live()` counts blocks handed out and not yet returned (by [`ObjectPool::free`] or
//!   collected from a remote queue).
#![cfg_attr(not(test), no_std)]
#![warn(missing_docs)]

use core::ptr::NonNull;
use core::sync::atomic::{AtomicUsize, Ordering};
pub use os_pages::{MmapPages, PageSource};
use ptr_conversion::UserPtr;
use refill::SlabSource;
pub use superslab::{AddressMap, Region, RemoteQueue, SegmentPool};
use superslab::{Segment, Slab, SlabHeap};
pub use tiny_layout::{Plain, SizeClass};

/// The address map of the segments of [`SEGMENTS`] (64 MiB of `.bss`, zero until
/// touched: only the pages of granules in use become resident).
pub static MAP: AddressMap = AddressMap::new();

/// A process-wide pool of segments over [`MmapPages`], keeping up to 4 empty segments.
pub static SEGMENTS: SegmentPool<MmapPages> = SegmentPool::new(MmapPages, &MAP, 4);

/// Owner tokens: unique per pool, never 0 (superslab's "closed slab" owner).
static NEXT_TOKEN: AtomicUsize = AtomicUsize::new(1);

/// The record of "no current slab": its list is always empty and nothing writes it (a
/// pop returns before writing; no block belongs to it; `SlabHeap` leaves it alone).
struct NoSlab(core::cell::UnsafeCell<Slab<Plain>>);
// SAFETY: never written (above).
unsafe impl Sync for NoSlab {}
static NO_SLAB: NoSlab = NoSlab(core::cell::UnsafeCell::new(Slab::detached()));

/// The `refill` box's view of the pool's slabs.
struct Slabs<'a, P: PageSource + 'static> {
    heap: &'a mut SlabHeap<Plain>,
    segments: &'static SegmentPool<P>,
}

impl<P: PageSource + 'static> SlabSource for Slabs<'_, P> {
    type Slab = *mut Slab<Plain>;
    fn has_free(&self, s: Self::Slab) -> bool {
        // SAFETY: `refill` only passes slabs this pool gave it: ours, or `NO_SLAB`.
        unsafe { (*s).has_free() }
    }
    fn carve(&mut self, s: Self::Slab, max: u32) -> u32 {
        // SAFETY: as above.
        unsafe { self.heap.carve(self.segments, s, max) }
    }
    fn set_aside(&mut self, s: Self::Slab) {
        // SAFETY: as above; the current slab is in no queue.
        unsafe { self.heap.set_full(self.segments, s) }
    }
    fn next_slab(&mut self, c: SizeClass) -> Option<Self::Slab> {
        self.heap.next_slab(self.segments, c)
    }
}

/// A pool of fixed-size blocks; see the [crate docs](crate).
///
/// Single-owner: it is neither `Send` nor `Sync`. Dropping the pool returns its empty
/// slabs to the [`SegmentPool`]; slabs still holding live blocks are kept (their memory
/// stays valid, and is leaked).
pub struct ObjectPool<P: PageSource + 'static> {
    segments: &'static SegmentPool<P>,
    heap: SlabHeap<Plain>,
    /// The slab blocks are popped from (`NO_SLAB` before the first allocation).
    current: *mut Slab<Plain>,
    class: SizeClass,
    object_size: usize,
    live: usize,
}

impl<P: PageSource + 'static> ObjectPool<P> {
    /// A pool of objects of `object_size` bytes taking segments from `segments`; `None`
    /// when `object_size` exceeds [`tiny_layout::MAX_CLASS_SIZE`].
    ///
    /// ```
    /// use pool_alloc::{ObjectPool, SEGMENTS};
    /// let pool = ObjectPool::new(&SEGMENTS, 100).unwrap();
    /// assert_eq!(pool.block_size(), 112); // the smallest class holding 100 bytes
    /// assert!(ObjectPool::new(&SEGMENTS, 1 << 20).is_none());
    /// ```
    pub fn new(segments: &'static SegmentPool<P>, object_size: usize) -> Option<Self> {
        let class = tiny_layout::class_of(object_size)?;
        let mut heap = SlabHeap::new();
        heap.set_owner(NEXT_TOKEN.fetch_add(1, Ordering::Relaxed));
        Some(ObjectPool {
            segments,
            heap,
            current: NO_SLAB.0.get(),
            class,
            object_size,
            live: 0,
        })
    }

    /// The object size asked for.
    pub fn object_size(&self) -> usize {
        self.object_size
    }
    /// Usable bytes of each block (the class's block size, `>= object_size`).
    pub fn block_size(&self) -> usize {
        self.class.block_size()
    }
    /// The size class of the pool's blocks.
    pub fn class(&self) -> SizeClass {
        self.class
    }
    /// Blocks handed out and not yet returned.
    pub fn live(&self) -> usize {
        self.live
    }
    /// The owner token of the pool's slabs.
    pub fn owner(&self) -> usize {
        self.heap.owner()
    }

    /// A block of [`block_size`](Self::block_size) bytes, 16-byte aligned; `None` when
    /// the page source is exhausted. Blocks come from one slab at a time, the block freed
    /// last into it first.
    pub fn alloc(&mut self) -> Option<NonNull<u8>> {
        // SAFETY: our current slab (or `NO_SLAB`); only this pool's owner pops from it.
        let b = match unsafe { (*self.current).pop() } {
            Some(b) => b,
            None => {
                let mut slabs = Slabs {
                    heap: &mut self.heap,
                    segments: self.segments,
                };
                let next = refill::refill(&mut slabs, self.class, self.current);
                self.current = next.unwrap_or(NO_SLAB.0.get());
                // SAFETY: as above: `refill` gave a slab of ours with a free block.
                unsafe { (*next?).pop() }?
            }
        };
        let p = NonNull::new(b.to_user().as_ptr())?;
        self.live += 1;
        Some(p)
    }

    /// True if `p` is the start of a block of this pool (live or free): the
    /// [`AddressMap`] says `p` is in a segment, and the segment's slab record for `p`
    /// names this pool as owner, this pool's class, and a carved block starting at `p`.
    /// Interior pointers, other pools' blocks and foreign memory give false.
    ///
    /// Other pools sharing the segment pool may be used by other threads; a lookup of a
    /// pointer into *their* slabs reads slab records they may be updating, so call this
    /// with such pointers only when those pools are quiescent.
    pub fn owns(&self, p: *const u8) -> bool {
        let addr = p as usize;
        if self.segments.map().region(addr) != Region::Segment {
            return false;
        }
        // SAFETY: the address map says `addr` lies in a published segment; published
        // segments stay mapped (empty ones are cached with slice 0 intact) until they are
        // retracted from the map.
        let slab = unsafe { Segment::<Plain>::slab_of(addr) };
        slab.owner() == self.heap.owner()
            && slab.class() == self.class
            && slab
                .block_containing(addr)
                .is_some_and(|b| b.to_user().addr() == addr)
    }

    /// Returns a block to the pool; false (and nothing done) if `p` is not a block of
    /// this pool (see [`owns`](Self::owns)).
    ///
    /// # Safety
    /// `p` was returned by [`alloc`](Self::alloc) of this pool, is live (not freed twice),
    /// and is not used afterwards.
    pub unsafe fn free(&mut self, p: NonNull<u8>) -> bool {
        if !self.owns(p.as_ptr()) {
            return false;
        }
        // SAFETY: `owns` established that `p` starts a block of our Plain-layout slabs;
        // the caller gives the live block back: free and ours, in no list.
        unsafe {
            let b = UserPtr::<Plain>::from_raw(p).to_base();
            self.heap.free_block(self.segments, b);
        }
        self.live -= 1;
        true
    }

    /// Takes back every block other threads handed over through `queue` (with
    /// [`free_remote`]); returns how many.
    ///
    /// # Safety
    /// Every block pushed to `queue` was allocated by this pool, and no other pool
    /// collects from `queue`.
    pub unsafe fn collect_remote(&mut self, queue: &RemoteQueue<Plain>) -> u32 {
        let (heap, segments) = (&mut self.heap, self.segments);
        let n = queue.drain(
            |_| true,
            |b| {
                // SAFETY: the caller vouches the block is ours; the queue handed it over.
                unsafe { heap.free_block(segments, b) };
            },
        );
        self.live -= n as usize;
        n
    }

    /// Gives back the current slab and every empty slab to the segment pool, and the
    /// pages of free slices to the OS.
    pub fn trim(&mut self) {
        let s = core::mem::replace(&mut self.current, NO_SLAB.0.get());
        // SAFETY: our current slab (or `NO_SLAB`); nothing pops from it any more.
        unsafe { self.heap.release_current(self.segments, s) };
        self.heap.release_empty(self.segments);
        self.heap.purge(self.segments, 0, 0);
    }
}

impl<P: PageSource + 'static> Drop for ObjectPool<P> {
    fn drop(&mut self) {
        self.trim();
    }
}

/// Hands a block of another thread's pool back to it: pushes it on the queue that pool
/// collects with [`ObjectPool::collect_remote`]. One atomic operation.
///
/// # Safety
/// `p` was returned by `alloc` of the pool that collects `queue`, is live, and is not used
/// afterwards.
///
/// ```
/// use pool_alloc::{free_remote, ObjectPool, RemoteQueue, SEGMENTS};
///
/// let queue = RemoteQueue::new();
/// let mut pool = ObjectPool::new(&SEGMENTS, 64).unwrap();
/// let p = pool.alloc().unwrap().as_ptr() as usize; // raw pointers are not Send
/// std::thread::scope(|s| {
///     s.spawn(|| {
///         let p = std::ptr::NonNull::new(p as *mut u8).unwrap();
///         // SAFETY: a live block of `pool`, which collects `queue`.
///         unsafe { free_remote(&queue, p) };
///     });
/// });
/// // SAFETY: only `pool`'s blocks are pushed to `queue`.
/// assert_eq!(unsafe { pool.collect_remote(&queue) }, 1);
/// assert_eq!(pool.live(), 0);
/// ```
pub unsafe fn free_remote(queue: &RemoteQueue<Plain>, p: NonNull<u8>) {
    // SAFETY: the caller vouches `p` is a live block of a Plain-layout pool; the queue
    // takes ownership of it.
    unsafe { queue.push(UserPtr::<Plain>::from_raw(p).to_base()) }
}

/// `docs/reuse.md`, compiled and run as doc tests so its snippets keep matching the APIs.
#[cfg(doctest)]
#[doc = include_str!("../../../docs/reuse.md")]
pub struct ReuseGuide;

#[cfg(test)]
mod tests;
