//! # large: blocks above the largest size class
//!
//! Each large block is its own mapping from a [`PageSource`] (or a part of a freed one).
//! Layout:
//!
//! ```text
//! base ─► [ Header | USER … user data … ] ◄─ base + total
//!           64 B     (USER = base + 64, or the next multiple of a larger alignment)
//! ```
//!
//! The header sits at `USER - HEADER_OFFSET`, in the same page as the block's first bytes
//! (a block touched only at its ends costs two pages, not three). The shared
//! [`AddressMap`] counts large user pointers per granule, so `free` knows with one load
//! that a pointer may be large before reading its header; the header's magic (xor'd with
//! the user address) and self-pointer confirm it.
//!
//! Freed blocks' ranges are cached (bounded by count, bytes and age) so that repeated
//! alloc/free of large sizes neither maps and unmaps every time nor faults and zeroes the
//! same pages again. A request takes the lowest-addressed cached range that fits (so
//! blocks pack at the low end, and the high end's pages stay untouched); one larger than
//! the request is split (the rest stays cached), ranges that touch are merged when freed,
//! and a range too small for a request grows with `remap` (in place, else its pages move
//! without being copied); `realloc` resizes a block the same way.
//!
//! The cache is in [`SHARDS`] shards, each with its own lock, so that threads reuse
//! blocks without a process-wide lock: a caller of [`LargeHeap::alloc_in`] names its shard
//! (the facade uses its thread heap's number) for blocks below 8 MiB; blocks from 8 MiB on
//! use shard 0, which all threads share (such a block costs far more to fault and zero
//! than to wait for a lock). A request that its own shard cannot serve takes a range of the
//! other shard that caches the most (shard 0's big ones, or a neighbour's) before mapping
//! afresh. A block's header records the shard its range came from, and `free` gives the
//! range back there, whichever thread frees it, so the pieces of a split range meet again
//! and merge. No system call is made under a
//! shard's lock: ranges to unmap are collected and unmapped after it is released.
//!
//! A block's range may span several of the OS's mappings (after merges); every
//! operation on it either works on any range (`unmap`, the huge-page hint, growth in
//! place) or may fail (a move, which then leaves it as it was).
//!
//! ## Invariants owned here
//! - A live block's header is at `USER - HEADER_OFFSET`, in its range, and `USER` is
//!   counted once in the address map for as long as the block is live.
//! - Cached ranges are not counted in the address map, never overlap a live block or each
//!   other, are in one shard only, and are never handed out twice.
//! - Each shard holds at most [`CACHE_SLOTS`] ranges; all shards together hold at most
//!   `max_bytes` bytes, and after a free no more than four times the live large blocks'
//!   bytes plus half of `max_bytes` (as the freeing shard last looked, at most a
//!   millisecond ago); ranges older than `max_age_ms` are unmapped at their shard's next
//!   operation or [`LargeHeap::tick`].
//!
//! ## Example
//! Over `mmap` pages (`os_pages::MmapPages`, which also gives `remap` with `mremap`):
//! ```
//! use large::LargeHeap;
//! use os_pages::MmapPages;
//! use superslab::{AddressMap, Region};
//!
//! static MAP: AddressMap = AddressMap::new();
//! // Caches up to 8 MiB of freed mappings for up to one second.
//! static LARGE: LargeHeap<MmapPages> = LargeHeap::new(MmapPages, &MAP, 8 << 20, 1000);
//!
//! let p = LARGE.alloc_in(3, 300_000, 16, false, 0); // shard 3
//! assert!(!p.is_null() && p as usize % 64 == 0);
//! assert_eq!(MAP.region(p as usize), Region::Large); // `free` can tell with one load
//! unsafe {
//!     assert!(LARGE.usable_size(p) >= 300_000);
//!     p.write_bytes(7, 300_000);
//!     assert!(LARGE.free(p, 0)); // back to shard 3
//! }
//! assert!(LARGE.in_cache(p) && LARGE.cached_bytes() > 0); // kept for reuse
//! let q = LARGE.alloc_in(3, 300_000, 16, true, 10); // the cached range
//! assert_eq!(q, p);
//! assert_eq!(unsafe { *q }, 0); // `zeroed` clears a reused range
//! unsafe { LARGE.free(q, 20) };
//! assert!(LARGE.trim() > 0);
//! assert_eq!(LARGE.cached_bytes(), 0);
//! ```
#![no_std]
#![warn(missing_docs)]

use core::cell::UnsafeCell;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use os_pages::PageSource;
use superslab::{AddressMap, SpinLock};

/// Huge-page size assumed for the hint (x86-64 and most aarch64 kernels).
const HUGE_PAGE: usize = 2 << 20;
/// Big blocks: from this size on, mappings are huge-page aligned and hinted, and use the
/// shard all threads share (see `LargeHeap::shard_of`). Below it, a block may well be a
/// buffer reserved larger than it is filled, which huge pages would charge 2 MiB for each
/// end it touches.
const HUGE_FROM: usize = 8 << 20;

/// Shards of the cache of freed ranges, each with its own lock: callers name theirs (the
/// facade gives each thread heap one), so threads seldom wait for one another.
pub const SHARDS: usize = 8;
/// Ranges one shard can hold.
pub const CACHE_SLOTS: usize = 32;
const MAGIC: usize = 0x6c61_7267_6568_616b;
const HEADER_OFFSET: usize = 64;

#[repr(C)]
struct Header {
    magic: usize,
    user: usize,
    base: usize,
    total: usize,
    /// The shard the block's range came from, and goes back to.
    shard: usize,
}

#[derive(Clone, Copy)]
struct Cached {
    base: usize,
    total: usize,
    freed_at: u64,
}

struct Cache {
    slots: [Cached; CACHE_SLOTS],
    bytes: usize,
    /// The bytes this shard may hold, leased from the tier's `max_bytes` (see
    /// `LargeHeap::lease`): at least `bytes`.
    credit: usize,
}

/// One shard of the cache: its ranges under its lock, and what may be read without it.
#[repr(align(64))]
struct Shard {
    lock: SpinLock,
    cache: UnsafeCell<Cache>,
    /// The cache's bytes, written under the lock: a look without the lock (is it empty,
    /// how much do all shards hold).
    bytes: AtomicUsize,
    /// No range of this shard expires before this time (u64::MAX: none cached); may be
    /// early, never late. Read without the lock by [`LargeHeap::tick`].
    next_expiry_ms: AtomicU64,
    /// Large blocks allocated from this shard, freed into it, and served from its cache.
    /// Counted on the shard's own cache line (its threads' adds do not bounce a line that
    /// every thread writes), summed by [`LargeHeap::stats`].
    allocs: AtomicU64,
    frees: AtomicU64,
    hits: AtomicU64,
    /// Bytes of the live blocks whose ranges came from this shard (a wrapping count:
    /// read with the other shards' counts, a sum may be taken while a block is resized).
    live: AtomicU64,
    /// The other shards as this shard last looked at them (at most once a millisecond,
    /// see [`LargeHeap::view`]): when, their live bytes, and the bytes they cache.
    view_ms: AtomicU64,
    view_live: AtomicUsize,
    view_others: AtomicUsize,
}

impl Shard {
    const fn new() -> Self {
        Shard {
            lock: SpinLock::new(),
            cache: UnsafeCell::new(Cache {
                slots: [Cached {
                    base: 0,
                    total: 0,
                    freed_at: 0,
                }; CACHE_SLOTS],
                bytes: 0,
                credit: 0,
            }),
            bytes: AtomicUsize::new(0),
            next_expiry_ms: AtomicU64::new(u64::MAX),
            allocs: AtomicU64::new(0),
            frees: AtomicU64::new(0),
            hits: AtomicU64::new(0),
            live: AtomicU64::new(0),
            view_ms: AtomicU64::new(u64::MAX),
            view_live: AtomicUsize::new(0),
            view_others: AtomicUsize::new(0),
        }
    }
}

/// Ranges taken out of a shard under its lock, unmapped after it is released.
struct Doomed {
    ranges: [(usize, usize); CACHE_SLOTS],
    len: usize,
}

impl Doomed {
    fn push(&mut self, base: usize, total: usize) {
        // A critical section removes each of the shard's slots at most once.
        if let Some(r) = self.ranges.get_mut(self.len) {
            *r = (base, total);
            self.len += 1;
        }
    }
}

/// The large tier's counters, summed over its shards by [`LargeHeap::stats`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LargeStats {
    /// Large blocks allocated.
    pub allocs: u64,
    /// Large blocks freed.
    pub frees: u64,
    /// Allocations served from the cache of freed mappings.
    pub cache_hits: u64,
    /// Bytes of live large mappings.
    pub bytes_live: u64,
    /// Most bytes of live large mappings at once, as sampled: at every fresh mapping, at
    /// least once a millisecond while blocks are freed, and by `stats` itself.
    pub bytes_peak: u64,
}

/// The large tier over a page source.
///
/// `Sync` when the page source is; usually a `static` (it needs a `&'static
/// AddressMap`). See the [crate example](crate).
pub struct LargeHeap<P: PageSource + 'static> {
    /// The most live bytes seen (see [`LargeStats::bytes_peak`]).
    peak: AtomicU64,
    pages: P,
    map: &'static AddressMap,
    shards: [Shard; SHARDS],
    max_bytes: usize,
    /// The part of `max_bytes` no shard has leased: the shards' credits and this add up to
    /// `max_bytes`, so all of them together never cache more.
    unleased: AtomicUsize,
    max_age_ms: u64,
}

// SAFETY: a shard's `cache` is only touched under its `lock`; the rest is atomic or
// immutable.
unsafe impl<P: PageSource + Sync> Sync for LargeHeap<P> {}

/// Of the cached ranges `(slot, base, total)`, the one for a block of `need` bytes, and its
/// size: the lowest-addressed of those of at least `need` bytes (address-ordered first fit,
/// as jemalloc's extents: blocks pack at the low end of what a shard holds, so its high
/// end, untouched, costs no resident pages), else the largest (to grow).
fn first_fit(
    ranges: impl Iterator<Item = (usize, usize, usize)>,
    need: usize,
) -> Option<(usize, usize)> {
    let mut best: Option<(usize, usize, usize)> = None;
    for (slot, base, total) in ranges {
        let better = match best {
            None => true,
            Some((_, b, t)) if total >= need => t < need || base < b,
            Some((_, _, t)) => t < need && total > t,
        };
        if better {
            best = Some((slot, base, total));
        }
    }
    best.map(|(slot, _, total)| (slot, total))
}

impl<P: PageSource + 'static> LargeHeap<P> {
    /// A large tier caching at most `max_bytes` of freed mappings (all shards together)
    /// for `max_age_ms`.
    pub const fn new(
        pages: P,
        map: &'static AddressMap,
        max_bytes: usize,
        max_age_ms: u64,
    ) -> Self {
        LargeHeap {
            peak: AtomicU64::new(0),
            pages,
            map,
            shards: [const { Shard::new() }; SHARDS],
            max_bytes,
            unleased: AtomicUsize::new(max_bytes),
            max_age_ms,
        }
    }

    /// The tier's counters, summed over its shards (each shard's are exact; the sum is
    /// not one snapshot while other threads allocate).
    pub fn stats(&self) -> LargeStats {
        let sum = |f: fn(&Shard) -> &AtomicU64| {
            self.shards
                .iter()
                .fold(0u64, |a, s| a.wrapping_add(f(s).load(Ordering::Relaxed)))
        };
        let live = self.live_bytes() as u64;
        LargeStats {
            allocs: sum(|s| &s.allocs),
            frees: sum(|s| &s.frees),
            cache_hits: sum(|s| &s.hits),
            bytes_live: live,
            bytes_peak: self.peak.fetch_max(live, Ordering::Relaxed).max(live),
        }
    }

    /// Bytes of live large mappings: the sum of the shards' counts.
    fn live_bytes(&self) -> usize {
        let live = self
            .shards
            .iter()
            .fold(0u64, |a, s| a.wrapping_add(s.live.load(Ordering::Relaxed)));
        // Counts read while blocks move between shards may sum to a little below zero.
        (live as i64).max(0) as usize
    }

    /// Shard `i`'s view of the whole tier: the live bytes (this shard's exact, the others'
    /// as last looked up) and the bytes the other shards cache (as last looked up). The
    /// other shards are looked up (two loads from each) at most once a millisecond per
    /// shard, so that a free does not read every shard's cache lines, which other threads
    /// write. A block's range goes back to the shard it came from, so a thread freeing
    /// its own blocks sees its shard's live bytes fall at once.
    fn view(&self, i: usize, now_ms: u64) -> (usize, usize) {
        let shard = self.shard(i);
        if shard.view_ms.load(Ordering::Relaxed) != now_ms {
            let others = (1..SHARDS).map(|k| &self.shards[(i + k) % SHARDS]);
            let (live, bytes) = others.fold((0u64, 0), |(l, b), s| {
                (
                    l.wrapping_add(s.live.load(Ordering::Relaxed)),
                    b + s.bytes.load(Ordering::Relaxed),
                )
            });
            shard.view_live.store(live as usize, Ordering::Relaxed);
            shard.view_others.store(bytes, Ordering::Relaxed);
            shard.view_ms.store(now_ms, Ordering::Relaxed);
            self.peak
                .fetch_max(self.live_bytes() as u64, Ordering::Relaxed);
        }
        let own = shard.live.load(Ordering::Relaxed);
        let others_live = shard.view_live.load(Ordering::Relaxed) as u64;
        (
            (own.wrapping_add(others_live) as i64).max(0) as usize,
            shard.view_others.load(Ordering::Relaxed),
        )
    }

    /// Takes every shard's lock (before `fork`: the facade's atfork handler).
    pub fn lock_all(&self) {
        self.shards.iter().for_each(|s| s.lock.lock());
    }

    /// Releases every shard's lock (after `fork`, in the parent).
    pub fn unlock_all(&self) {
        self.shards.iter().for_each(|s| s.lock.unlock());
    }

    /// Forces every shard's lock free: only in a fork child, where the holders are gone.
    pub fn reset_all(&self) {
        self.shards.iter().for_each(|s| s.lock.reset());
    }

    /// The size and alignment of a new mapping of at least `need` bytes. Big mappings start
    /// on a huge-page boundary and ask for huge pages (a large block is usually touched
    /// whole, and one fault per 2 MiB beats 512), in whole huge pages (a partial last one
    /// would fault in 4 KiB pages).
    fn geometry(need: usize) -> (usize, usize) {
        if need >= HUGE_FROM {
            ((need + HUGE_PAGE - 1) & !(HUGE_PAGE - 1), HUGE_PAGE)
        } else {
            (need, P::PAGE)
        }
    }

    /// Mapping bytes needed for `size` bytes at alignment `align` (None on overflow).
    fn mapping_for(size: usize, align: usize) -> Option<usize> {
        // At least one usable byte, so a live block never has a usable size of 0 (which
        // `usable_size` reserves for "not a large block").
        let size = size.max(1);
        let extra = align.max(HEADER_OFFSET);
        let t = size.checked_add(extra + P::PAGE - 1)? & !(P::PAGE - 1);
        (t <= isize::MAX as usize).then_some(t)
    }

    /// A block of at least `size` bytes aligned to `align` (a power of two), or null.
    /// With `zeroed`, its first `size` bytes read as zero: fresh mappings already do, a
    /// reused one is cleared. The caller's shard is 0; see [`alloc_in`](Self::alloc_in).
    pub fn alloc(&self, size: usize, align: usize, zeroed: bool, now_ms: u64) -> *mut u8 {
        self.alloc_in(0, size, align, zeroed, now_ms)
    }

    /// [`alloc`](Self::alloc) for a caller that names its shard (any number; callers
    /// that name numbers equal modulo `SHARDS - 1` share one; blocks from 8 MiB on use
    /// the shard all share). A thread that always names the same number reuses the ranges
    /// of its own blocks below 8 MiB and takes a lock few others take.
    pub fn alloc_in(
        &self,
        shard: usize,
        size: usize,
        align: usize,
        zeroed: bool,
        now_ms: u64,
    ) -> *mut u8 {
        let Some(need) = Self::mapping_for(size, align) else {
            return core::ptr::null_mut();
        };
        let i = Self::shard_of(shard, need);
        let reused = if align <= P::PAGE {
            self.reuse(i, need, now_ms)
        } else {
            None
        };
        let (base, total, home) = match reused {
            Some(r) => r,
            None => {
                let (need, align) = Self::geometry(need);
                match self.pages.map(need, align) {
                    Some(b) => {
                        self.hint_huge_pages(b, need);
                        (b.as_ptr() as usize, need, i)
                    }
                    None => return core::ptr::null_mut(),
                }
            }
        };
        let user = Self::user_of(base, align);
        // SAFETY: `user - HEADER_OFFSET` lies in our mapping (at or after `base`).
        unsafe { Self::write_header(base, total, user, home) };
        if !self.map.add_large(user, &self.pages) {
            self.unmap(base, total);
            return core::ptr::null_mut();
        }
        let s = self.shard(home);
        s.allocs.fetch_add(1, Ordering::Relaxed);
        s.live.fetch_add(total as u64, Ordering::Relaxed);
        if reused.is_some() {
            s.hits.fetch_add(1, Ordering::Relaxed);
        } else {
            // New memory: the moment a peak is made.
            self.peak
                .fetch_max(self.live_bytes() as u64, Ordering::Relaxed);
        }
        if zeroed && reused.is_some() {
            // SAFETY: `size` bytes from `user` lie inside the mapping.
            unsafe { core::ptr::write_bytes(user as *mut u8, 0, size) };
        }
        user as *mut u8
    }

    /// Where the user pointer of a block aligned to `align` goes in a range at `base`: the
    /// first multiple of `align` (at least 64) with room for the header before it. For the
    /// usual alignments that is `base + 64`: the header shares the first page with the
    /// block's first bytes, so a block costs no page of its own for it.
    fn user_of(base: usize, align: usize) -> usize {
        let a = align.max(HEADER_OFFSET);
        (base + HEADER_OFFSET + a - 1) & !(a - 1)
    }

    unsafe fn write_header(base: usize, total: usize, user: usize, shard: usize) {
        // SAFETY: the caller vouches the header's page is mapped and ours.
        unsafe {
            ((user - HEADER_OFFSET) as *mut Header).write(Header {
                magic: MAGIC ^ user,
                user,
                base,
                total,
                shard,
            })
        };
    }

    /// The header of the large block at `p`, if `p` is one.
    ///
    /// # Safety
    /// The address map says `p`'s granule holds large blocks, and `p - HEADER_OFFSET` is
    /// readable when `p` is a multiple of 64 (true for every pointer this tier handed out;
    /// a forged one in such a granule may fault).
    unsafe fn header(p: usize) -> Option<&'static mut Header> {
        if !p.is_multiple_of(HEADER_OFFSET) {
            return None;
        }
        // SAFETY: see the function's contract; magic and self-pointer confirm the header.
        let h = unsafe { &mut *((p - HEADER_OFFSET) as *mut Header) };
        (h.magic == MAGIC ^ p && h.user == p).then_some(h)
    }

    /// Frees a large block, its range back to the shard it came from (where it merges
    /// with the ranges it touches); false if `p` is not a large block (nothing is changed
    /// then).
    ///
    /// # Safety
    /// As for `header`; `p` is not used afterwards.
    pub unsafe fn free(&self, p: *mut u8, now_ms: u64) -> bool {
        // SAFETY: forwarded.
        let Some(h) = (unsafe { Self::header(p as usize) }) else {
            return false;
        };
        let (base, total, i) = (h.base, h.total, h.shard);
        h.magic = 0; // a second free finds no live header
        self.map.remove_large(p as usize);
        self.shard(i).frees.fetch_add(1, Ordering::Relaxed);
        self.shard(i)
            .live
            .fetch_sub(total as u64, Ordering::Relaxed);
        self.release(i, base, total, now_ms);
        true
    }

    /// True if `p` lies in a freed mapping still held by the cache (so a free of `p` is a
    /// double free the checked build can name). Reads only the cache, never `p`'s memory.
    pub fn in_cache(&self, p: *mut u8) -> bool {
        let p = p as usize;
        (0..SHARDS).any(|i| {
            self.locked(i, |c, _| {
                c.slots
                    .iter()
                    .any(|s| s.base != 0 && p > s.base && p < s.base + s.total)
            })
        })
    }

    /// Usable bytes of a large block (0 if `p` is not one).
    ///
    /// # Safety
    /// As for `header`.
    pub unsafe fn usable_size(&self, p: *mut u8) -> usize {
        // SAFETY: forwarded.
        unsafe { Self::header(p as usize) }.map_or(0, |h| h.base + h.total - h.user)
    }

    /// Resizes a large block to hold `new_size` bytes: in place when it fits (shrinking
    /// by at most half), else by remapping (the kernel moves pages, nothing is copied).
    /// `None` if `p` is not large or the OS refused; then `p` is unchanged.
    ///
    /// # Safety
    /// As for `header`; on `Some(q)` with `q != p` the caller must use `q` instead of `p`.
    pub unsafe fn resize(&self, p: *mut u8, new_size: usize) -> Option<*mut u8> {
        // SAFETY: forwarded.
        let h = unsafe { Self::header(p as usize) }?;
        let usable = h.base + h.total - h.user;
        if new_size <= usable && new_size >= usable / 2 {
            return Some(p);
        }
        let offset = h.user - h.base;
        let new_total = new_size.checked_add(offset + P::PAGE - 1)? & !(P::PAGE - 1);
        // `h` is not read after the remap: its page may have moved.
        let (base, total, shard) = (h.base, h.total, h.shard);
        // SAFETY: base/total is the block's whole mapping; on success the old range is gone.
        let nb = unsafe {
            self.pages.remap(
                NonNull::new_unchecked(base as *mut u8),
                total,
                new_total,
                Some(Self::geometry(new_total).1),
            )
        }?;
        let nb = nb.as_ptr() as usize;
        // The pages move whole, so USER keeps its offset in its page (and its alignment,
        // which is at most the page or the move's alignment) and its header moved with it.
        let user = nb + offset;
        self.map.remove_large(p as usize);
        // Counting can fail only above the map's range, when the OS refuses memory for
        // the map, or past 4094 blocks in one 64 KiB slice (impossible for mappings of two
        // pages or more); then a later free is refused (a leak), never a corruption.
        let counted = self.map.add_large(user, &self.pages);
        debug_assert!(counted);
        self.shard(shard).live.fetch_add(
            (new_total as u64).wrapping_sub(total as u64),
            Ordering::Relaxed,
        );
        if new_total > total {
            self.peak
                .fetch_max(self.live_bytes() as u64, Ordering::Relaxed);
        }
        // SAFETY: the header page moved with the mapping.
        unsafe { Self::write_header(nb, new_total, user, shard) };
        Some(user as *mut u8)
    }

    /// Runs `f` on shard `i`'s cache under its lock, then unmaps what `f` put in its
    /// `Doomed` list once the lock is released: no system call is made under a lock.
    fn locked<R>(&self, i: usize, f: impl FnOnce(&mut Cache, &mut Doomed) -> R) -> R {
        let shard = self.shard(i);
        let mut doomed = Doomed {
            ranges: [(0, 0); CACHE_SLOTS],
            len: 0,
        };
        shard.lock.lock();
        // SAFETY: under the shard's lock.
        let c = unsafe { &mut *shard.cache.get() };
        let r = f(c, &mut doomed);
        // Credit well beyond what the shard holds goes back for other shards to lease.
        let chunk = self.lease_chunk();
        if c.credit > c.bytes + 2 * chunk {
            let back = c.credit - c.bytes - chunk;
            c.credit -= back;
            self.unleased.fetch_add(back, Ordering::Relaxed);
        }
        shard.bytes.store(c.bytes, Ordering::Relaxed);
        shard.lock.unlock();
        for &(base, total) in doomed.ranges.iter().take(doomed.len) {
            self.unmap(base, total);
        }
        r
    }

    /// What a shard leases at a time beyond its need, and may keep unused.
    fn lease_chunk(&self) -> usize {
        self.max_bytes / (4 * SHARDS)
    }

    /// Makes shard cache `c`'s credit at least `need` bytes, leasing what it lacks (and a
    /// chunk more, so that a shard whose holdings go up and down leases seldom) from the
    /// tier's unleased bytes; false, and nothing leased, if they do not have what it lacks.
    /// One atomic on a line all shards share, only when a shard's holdings outgrow its
    /// credit: the bound on all shards together is exact without every free reading every
    /// shard.
    fn lease(&self, c: &mut Cache, need: usize) -> bool {
        let Some(lack) = need.checked_sub(c.credit).filter(|&l| l > 0) else {
            return true;
        };
        let mut free = self.unleased.load(Ordering::Relaxed);
        loop {
            if free < lack {
                return false;
            }
            let take = (lack + self.lease_chunk()).min(free);
            match self.unleased.compare_exchange_weak(
                free,
                free - take,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    c.credit += take;
                    return true;
                }
                Err(f) => free = f,
            }
        }
    }

    /// Gives a range nobody uses back to the OS.
    fn unmap(&self, base: usize, total: usize) {
        // SAFETY: callers pass ranges of ours that nothing uses (cached, or never handed out).
        unsafe {
            self.pages
                .unmap(NonNull::new_unchecked(base as *mut u8), total)
        };
    }

    /// Asks for huge pages on a new mapping of `total` bytes at `p` if it is big (see
    /// [`geometry`](Self::geometry)).
    fn hint_huge_pages(&self, p: NonNull<u8>, total: usize) {
        if total >= HUGE_FROM {
            self.pages.hint_huge_pages(p, total);
        }
    }

    /// A cached range for a block of `need` bytes from shard `i`: one that fits there, else
    /// one that fits in the other shard that caches the most (the shared shard 0's big
    /// ranges, or a neighbour's), else shard `i`'s largest range grown. The range keeps
    /// the shard it came from, and goes back there when freed. Taking from a neighbour
    /// keeps a shard that holds nothing from mapping afresh at every request: the tier's
    /// byte bound refuses its frees while the other shards hold their ranges, and with 16
    /// threads replacing blocks of 256 KiB – 4.25 MiB (`large-threads`) such shards
    /// mapped and unmapped at every replacement (1.3 s of the kernel's time against 0.1).
    fn reuse(&self, i: usize, need: usize, now_ms: u64) -> Option<(usize, usize, usize)> {
        let from = |j: usize, grow: bool| Some((self.take_cached(j, need, grow, now_ms)?, j));
        let ((base, total), j) = from(i, false)
            .or_else(|| from(self.richest_other(i), false))
            .or_else(|| from(i, true))?;
        Some((base, total, j))
    }

    /// The shard other than `i` that caches the most bytes, as the shards' counters say
    /// without their locks.
    fn richest_other(&self, i: usize) -> usize {
        (1..SHARDS)
            .map(|k| (i + k) % SHARDS)
            .max_by_key(|&j| self.shard(j).bytes.load(Ordering::Relaxed))
            .unwrap_or(0)
    }

    /// Shard `i` (taken modulo [`SHARDS`], so that no index check can panic: every
    /// caller's `i` is below it already).
    #[inline]
    fn shard(&self, i: usize) -> &Shard {
        &self.shards[i % SHARDS]
    }

    /// The shard for a block of `bytes` of a caller that names `hint`: shard 0, which all
    /// callers share, from [`HUGE_FROM`] on (a block that big costs far more to fault and
    /// zero than to wait for a lock, and its reuse is best shared), else one of the others
    /// by `hint`.
    fn shard_of(hint: usize, bytes: usize) -> usize {
        if bytes >= HUGE_FROM {
            0
        } else {
            1 + hint % (SHARDS - 1)
        }
    }

    /// A range of shard `i` for a block of `need` bytes, and its size. The lowest-addressed
    /// range of at least `need` bytes ([`first_fit`]) is taken whole if it is at most 12.5%
    /// larger, else split: the block takes its head (in whole huge pages for a big block,
    /// so that the rest starts on a huge-page boundary) and the rest stays cached, in the
    /// same slot and with the same age. Failing that, with `grow`, the largest range, if it
    /// is at least half the need, is grown: in place if the address space after it is
    /// free, else moved (its pages, not their bytes) to a fresh range aligned as a new
    /// mapping of that size would be.
    /// Either way its resident pages are reused and only what the block needs beyond them
    /// is faulted and zeroed. `None` if the shard holds nothing of use or the growth fails
    /// (the range then stays cached, still aging from its free).
    fn take_cached(
        &self,
        i: usize,
        need: usize,
        grow: bool,
        now_ms: u64,
    ) -> Option<(usize, usize)> {
        if self.shard(i).bytes.load(Ordering::Relaxed) == 0 {
            return None; // no lock for an empty shard
        }
        let taken = self.locked(i, |c, doomed| {
            self.expire(i, c, now_ms, doomed);
            let ranges = c.slots.iter().enumerate().filter(|(_, s)| s.base != 0);
            let (j, total) = first_fit(ranges.map(|(j, s)| (j, s.base, s.total)), need)?;
            if total < need && (!grow || total < need / 2) {
                return None; // growing it would reuse little and cost a move
            }
            let slot = c.slots.get_mut(j)?;
            let s = *slot;
            let head = Self::geometry(need).0;
            let taken = if total < need || head >= total || total - need <= need / 8 {
                slot.base = 0;
                total
            } else {
                slot.base = s.base + head;
                slot.total = total - head;
                head
            };
            c.bytes -= taken;
            Some(Cached { total: taken, ..s })
        })?;
        if taken.total >= need {
            return Some((taken.base, taken.total));
        }
        let (need, align) = Self::geometry(need);
        // SAFETY: a cached range is ours and unused; on success the old range is gone.
        let grown = unsafe {
            self.pages.remap(
                NonNull::new_unchecked(taken.base as *mut u8),
                taken.total,
                need,
                Some(align),
            )
        };
        match grown {
            Some(nb) => {
                self.hint_huge_pages(nb, need);
                Some((nb.as_ptr() as usize, need))
            }
            None => {
                // It could not grow (a range merged from neighbouring mappings with no free
                // address space after it cannot move whole). It goes: kept, it would stay
                // the largest, too small, range, and the shard would map fresh memory
                // beside it at every such request.
                self.unmap(taken.base, taken.total);
                None
            }
        }
    }

    /// Caches a freed range in shard `i`, merged with the shard's ranges it touches (a
    /// range split by `take_cached` becomes whole again when its block is freed), or
    /// unmaps it. All shards together keep never more than `max_bytes` (each holds no more
    /// than its credit, see [`lease`](Self::lease)), and after a free at most four times
    /// the live large blocks' bytes plus half of `max_bytes`, as the shard last looked (at
    /// most a millisecond ago, see [`view`](Self::view)): when that bound falls below what
    /// they hold, this shard unmaps its oldest ranges, so a program that has freed its
    /// large blocks keeps about half of `max_bytes` of them resident at most even if it
    /// never comes back to this tier (merged ranges are few: the slot count alone does not
    /// bound their bytes).
    fn release(&self, i: usize, base: usize, total: usize, freed_at: u64) {
        let (live, others) = self.view(i, freed_at);
        let bound = self
            .max_bytes
            .min(live.saturating_mul(4).saturating_add(self.max_bytes / 2));
        let cached = self.locked(i, |c, doomed| {
            self.expire(i, c, freed_at, doomed);
            // The bound falls as large blocks are freed: the oldest ranges go first.
            while c.bytes + others > bound {
                let Some(old) = c
                    .slots
                    .iter_mut()
                    .filter(|s| s.base != 0)
                    .min_by_key(|s| s.freed_at)
                else {
                    break;
                };
                doomed.push(old.base, old.total);
                c.bytes -= old.total;
                old.base = 0;
            }
            // No room for it: it goes, the cached ranges stay (freed earlier, they are as
            // likely to be reused, and larger when merged).
            let (mut base, mut total) = (base, total);
            c.bytes + others + total <= bound && self.lease(c, c.bytes + total) && {
                // At most one cached range ends where this one starts and one starts where
                // it ends; merging either leaves the other's test unchanged. The merged
                // range ages from this free.
                for s in c.slots.iter_mut() {
                    if s.base == 0 {
                        continue;
                    }
                    if s.base + s.total == base {
                        base = s.base;
                    } else if base + total != s.base {
                        continue;
                    }
                    total += s.total;
                    c.bytes -= s.total;
                    s.base = 0;
                }
                match c.slots.iter_mut().find(|s| s.base == 0) {
                    Some(s) => {
                        *s = Cached {
                            base,
                            total,
                            freed_at,
                        };
                        c.bytes += total;
                        let due = freed_at.saturating_add(self.max_age_ms);
                        self.shard(i)
                            .next_expiry_ms
                            .fetch_min(due, Ordering::Relaxed);
                        true
                    }
                    // No slot: nothing was merged (a merge frees one).
                    None => false,
                }
            }
        });
        if !cached {
            self.unmap(base, total);
        }
    }

    /// Moves shard `i`'s ranges older than the age limit (all of them with
    /// `now_ms == u64::MAX`) to `doomed`.
    fn expire(&self, i: usize, c: &mut Cache, now_ms: u64, doomed: &mut Doomed) {
        let mut next = u64::MAX;
        for s in c.slots.iter_mut() {
            if s.base == 0 {
                continue;
            }
            if now_ms.saturating_sub(s.freed_at) >= self.max_age_ms {
                doomed.push(s.base, s.total);
                c.bytes -= s.total;
                s.base = 0;
            } else {
                next = next.min(s.freed_at.saturating_add(self.max_age_ms));
            }
        }
        self.shard(i).next_expiry_ms.store(next, Ordering::Relaxed);
    }

    /// Unmaps the cached ranges that have grown too old, if any may have: one relaxed
    /// load per shard when none has. For the allocator's other slow paths, so that a
    /// program that no longer allocates or frees large blocks still gets their memory back.
    pub fn tick(&self, now_ms: u64) {
        for (i, s) in self.shards.iter().enumerate() {
            if now_ms >= s.next_expiry_ms.load(Ordering::Relaxed) {
                self.locked(i, |c, doomed| self.expire(i, c, now_ms, doomed));
            }
        }
    }

    /// The most bytes of live large mappings seen so far (as sampled, see
    /// [`LargeStats::bytes_peak`]): one relaxed load.
    pub fn peak_bytes(&self) -> u64 {
        self.peak.load(Ordering::Relaxed)
    }

    /// The earliest time a cached range expires (`u64::MAX`: nothing is cached). Relaxed
    /// loads, no lock: for a caller deciding when to [`tick`](Self::tick) next.
    pub fn next_expiry_ms(&self) -> u64 {
        self.shards
            .iter()
            .map(|s| s.next_expiry_ms.load(Ordering::Relaxed))
            .min()
            .unwrap_or(u64::MAX)
    }

    /// Unmaps every cached mapping; returns the bytes released.
    pub fn trim(&self) -> usize {
        (0..SHARDS)
            .map(|i| {
                self.locked(i, |c, doomed| {
                    let before = c.bytes;
                    self.expire(i, c, u64::MAX, doomed);
                    before
                })
            })
            .sum()
    }

    /// Bytes of freed mappings currently cached (all shards).
    pub fn cached_bytes(&self) -> usize {
        (0..SHARDS).map(|i| self.locked(i, |c, _| c.bytes)).sum()
    }
}

#[cfg(test)]
mod tests;
