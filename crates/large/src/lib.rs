//! # large: blocks above the largest size class
//!
//! Each large block is its own mapping from a [`PageSource`]. Layout:
//!
//! ```text
//! base ─► [ … | Header at USER − 64 ] [ USER … user data … ] ◄─ base + total
//! ```
//!
//! The user pointer is page-aligned (or aligned to the requested alignment), so the
//! header always sits at `USER - HEADER_OFFSET` in the page before it, inside the same
//! mapping. The shared [`AddressMap`] counts large user pointers per granule, so `free`
//! knows with one load that a pointer may be large before reading its header; the header's
//! magic (xor'd with the user address) and self-pointer confirm it.
//!
//! Freed blocks' ranges go to a small cache (bounded by count, bytes and age) so that
//! repeated alloc/free of large sizes neither maps and unmaps every time nor faults and
//! zeroes the same pages again. A cached range larger than a request is split (the rest
//! stays cached), ranges that touch are merged when freed, and a range too small for a
//! request grows with `remap` (mremap), which moves pages without copying; `realloc`
//! resizes a block the same way.
//!
//! A block's range may span several of the OS's mappings (after merges); every
//! operation on it either works on any range (`unmap`, the huge-page hint) or may fail
//! (`remap`, which then leaves it as it was).
//!
//! ## Invariants owned here
//! - A live block's header is at `USER - HEADER_OFFSET`, and `USER` is counted once in the
//!   address map for as long as the block is live.
//! - Cached ranges are not counted in the address map, never overlap a live block or each
//!   other, and are never handed out twice.
//! - The cache holds at most [`CACHE_SLOTS`] ranges and `max_bytes` bytes, and after a
//!   free no more than four times the live large blocks' bytes plus half of `max_bytes`;
//!   entries older than `max_age_ms` are unmapped at the next cache operation or
//!   [`LargeHeap::tick`].
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
//! let p = LARGE.alloc(300_000, 16, false, 0);
//! assert!(!p.is_null() && p as usize % 4096 == 0);
//! assert_eq!(MAP.region(p as usize), Region::Large); // `free` can tell with one load
//! unsafe {
//!     assert!(LARGE.usable_size(p) >= 300_000);
//!     p.write_bytes(7, 300_000);
//!     assert!(LARGE.free(p, 0));
//! }
//! assert!(LARGE.in_cache(p) && LARGE.cached_bytes() > 0); // kept for reuse
//! let q = LARGE.alloc(300_000, 16, true, 10); // same size class: the cached mapping
//! assert_eq!(q, p);
//! assert_eq!(unsafe { *q }, 0); // `zeroed` clears a reused mapping
//! unsafe { LARGE.free(q, 20) };
//! assert!(LARGE.trim() > 0);
//! assert_eq!(LARGE.cached_bytes(), 0);
//! ```
#![no_std]
#![warn(missing_docs)]

use core::cell::UnsafeCell;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicU64, Ordering};
use os_pages::PageSource;
use superslab::{AddressMap, SpinLock};

/// Huge-page size assumed for the hint (x86-64 and most aarch64 kernels).
const HUGE_PAGE: usize = 2 << 20;
/// Mappings from this size on are huge-page aligned and hinted.
const HUGE_FROM: usize = 2 << 20;

/// Mappings the cache can hold.
pub const CACHE_SLOTS: usize = 32;
const MAGIC: usize = 0x6c61_7267_6568_616b;
const HEADER_OFFSET: usize = 64;

#[repr(C)]
struct Header {
    magic: usize,
    user: usize,
    base: usize,
    total: usize,
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
}

/// Counters of the large tier (relaxed atomics), read with [`LargeHeap::stats`].
pub struct LargeStats {
    /// Large blocks allocated.
    pub allocs: AtomicU64,
    /// Large blocks freed.
    pub frees: AtomicU64,
    /// Allocations served from the cache of freed mappings.
    pub cache_hits: AtomicU64,
    /// Bytes of live large mappings.
    pub bytes_live: AtomicU64,
    /// Most bytes of live large mappings at once.
    pub bytes_peak: AtomicU64,
}

/// The large tier over a page source.
///
/// `Sync` when the page source is; usually a `static` (it needs a `&'static
/// AddressMap`). See the [crate example](crate).
pub struct LargeHeap<P: PageSource + 'static> {
    stats: LargeStats,
    pages: P,
    map: &'static AddressMap,
    lock: SpinLock,
    cache: UnsafeCell<Cache>,
    max_bytes: usize,
    max_age_ms: u64,
    /// No cached range expires before this time (u64::MAX: none cached); may be early,
    /// never late. Read without the lock by [`LargeHeap::tick`].
    next_expiry_ms: AtomicU64,
}

// SAFETY: `cache` is only touched under `lock`.
unsafe impl<P: PageSource + Sync> Sync for LargeHeap<P> {}

impl<P: PageSource + 'static> LargeHeap<P> {
    /// A large tier caching at most `max_bytes` of freed mappings for `max_age_ms`.
    pub const fn new(
        pages: P,
        map: &'static AddressMap,
        max_bytes: usize,
        max_age_ms: u64,
    ) -> Self {
        LargeHeap {
            stats: LargeStats {
                allocs: AtomicU64::new(0),
                frees: AtomicU64::new(0),
                cache_hits: AtomicU64::new(0),
                bytes_live: AtomicU64::new(0),
                bytes_peak: AtomicU64::new(0),
            },
            pages,
            map,
            lock: SpinLock::new(),
            cache: UnsafeCell::new(Cache {
                slots: [Cached {
                    base: 0,
                    total: 0,
                    freed_at: 0,
                }; CACHE_SLOTS],
                bytes: 0,
            }),
            max_bytes,
            max_age_ms,
            next_expiry_ms: AtomicU64::new(u64::MAX),
        }
    }

    /// The tier's counters.
    pub fn stats(&self) -> &LargeStats {
        &self.stats
    }

    /// The lock (held across `fork` by the facade).
    pub fn lock(&self) -> &SpinLock {
        &self.lock
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
        let extra = if align > P::PAGE { align } else { P::PAGE };
        let t = size.checked_add(extra + P::PAGE - 1)? & !(P::PAGE - 1);
        (t <= isize::MAX as usize).then_some(t)
    }

    /// A block of at least `size` bytes aligned to `align` (a power of two), or null.
    /// With `zeroed`, its first `size` bytes read as zero: fresh mappings already do, a
    /// reused one is cleared.
    pub fn alloc(&self, size: usize, align: usize, zeroed: bool, now_ms: u64) -> *mut u8 {
        let Some(need) = Self::mapping_for(size, align) else {
            return core::ptr::null_mut();
        };
        let reused = if align <= P::PAGE {
            self.take_cached(need, now_ms)
        } else {
            None
        };
        let (base, total) = match reused {
            Some(r) => r,
            None => {
                let (need, align) = Self::geometry(need);
                match self.pages.map(need, align) {
                    Some(b) => {
                        if need >= HUGE_FROM {
                            self.pages.hint_huge_pages(b, need);
                        }
                        (b.as_ptr() as usize, need)
                    }
                    None => return core::ptr::null_mut(),
                }
            }
        };
        let a = align.max(P::PAGE);
        let user = (base + P::PAGE + a - 1) & !(a - 1);
        // SAFETY: `user - HEADER_OFFSET` lies in the mapped page before `user`, in our mapping.
        unsafe { Self::write_header(base, total, user) };
        if !self.map.add_large(user, &self.pages) {
            // SAFETY: our own mapping, never handed out.
            unsafe {
                self.pages
                    .unmap(NonNull::new_unchecked(base as *mut u8), total)
            };
            return core::ptr::null_mut();
        }
        let st = &self.stats;
        st.allocs.fetch_add(1, Ordering::Relaxed);
        st.cache_hits
            .fetch_add(reused.is_some() as u64, Ordering::Relaxed);
        let live = st.bytes_live.fetch_add(total as u64, Ordering::Relaxed) + total as u64;
        st.bytes_peak.fetch_max(live, Ordering::Relaxed);
        if zeroed && reused.is_some() {
            // SAFETY: `size` bytes from `user` lie inside the mapping.
            unsafe { core::ptr::write_bytes(user as *mut u8, 0, size) };
        }
        user as *mut u8
    }

    unsafe fn write_header(base: usize, total: usize, user: usize) {
        // SAFETY: the caller vouches the header's page is mapped and ours.
        unsafe {
            ((user - HEADER_OFFSET) as *mut Header).write(Header {
                magic: MAGIC ^ user,
                user,
                base,
                total,
            })
        };
    }

    /// The header of the large block at `p`, if `p` is one.
    ///
    /// # Safety
    /// The address map says `p`'s granule holds large blocks, and `p - HEADER_OFFSET` is
    /// readable when `p` is page-aligned (true for every pointer this tier handed out; a
    /// forged page-aligned pointer in such a granule may fault).
    unsafe fn header(p: usize) -> Option<&'static mut Header> {
        if !p.is_multiple_of(P::PAGE) {
            return None;
        }
        // SAFETY: see the function's contract; magic and self-pointer confirm the header.
        let h = unsafe { &mut *((p - HEADER_OFFSET) as *mut Header) };
        (h.magic == MAGIC ^ p && h.user == p).then_some(h)
    }

    /// Frees a large block; false if `p` is not one (nothing is changed then).
    ///
    /// # Safety
    /// As for `header`; `p` is not used afterwards.
    pub unsafe fn free(&self, p: *mut u8, now_ms: u64) -> bool {
        // SAFETY: forwarded.
        let Some(h) = (unsafe { Self::header(p as usize) }) else {
            return false;
        };
        let (base, total) = (h.base, h.total);
        h.magic = 0; // a second free finds no live header
        self.map.remove_large(p as usize);
        self.stats.frees.fetch_add(1, Ordering::Relaxed);
        self.stats
            .bytes_live
            .fetch_sub(total as u64, Ordering::Relaxed);
        self.release(base, total, now_ms);
        true
    }

    /// True if `p` lies in a freed mapping still held by the cache (so a free of `p` is a
    /// double free the checked build can name). Reads only the cache, never `p`'s memory.
    pub fn in_cache(&self, p: *mut u8) -> bool {
        let p = p as usize;
        self.lock.lock();
        // SAFETY: under the lock.
        let c = unsafe { &*self.cache.get() };
        let hit = c
            .slots
            .iter()
            .any(|s| s.base != 0 && p > s.base && p < s.base + s.total);
        self.lock.unlock();
        hit
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
        let (base, total) = (h.base, h.total);
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
        // `offset` is a multiple of the page (USER is page-aligned, so is the mapping), so
        // the new USER is page-aligned and its header moved with the pages.
        let user = nb + offset;
        self.map.remove_large(p as usize);
        // Counting can fail only above the map's range, when the OS refuses memory for
        // the map, or past 4094 blocks in one 64 KiB slice (impossible for mappings of two
        // pages or more); then a later free is refused (a leak), never a corruption.
        let counted = self.map.add_large(user, &self.pages);
        debug_assert!(counted);
        self.stats
            .bytes_live
            .fetch_add(new_total as u64, Ordering::Relaxed);
        self.stats
            .bytes_live
            .fetch_sub(total as u64, Ordering::Relaxed);
        // SAFETY: the header page moved with the mapping.
        unsafe { Self::write_header(nb, new_total, user) };
        Some(user as *mut u8)
    }

    /// A cached range for a block of `need` bytes, and its size. The smallest cached range
    /// of at least `need` bytes is taken whole if it is at most 12.5% larger, else split:
    /// the block takes its head (in whole huge pages for a big block, so that the rest
    /// starts on a huge-page boundary) and the rest stays cached, in the same slot and with
    /// the same age. Failing that, the largest cached range is grown: in place if the
    /// address space after it is free, else moved (its pages, not their bytes) to a fresh
    /// range aligned as a new mapping of that size would be. Either way its resident pages
    /// are reused and only what the block needs beyond them is faulted and zeroed. `None`
    /// if the cache is empty or the growth fails (the range then stays cached, still aging
    /// from its free).
    fn take_cached(&self, need: usize, now_ms: u64) -> Option<(usize, usize)> {
        self.lock.lock();
        // SAFETY: under the lock.
        let c = unsafe { &mut *self.cache.get() };
        self.expire(c, now_ms);
        // Smallest range at least `need`, else the largest one.
        let mut best: Option<usize> = None;
        for (i, s) in c.slots.iter().enumerate() {
            if s.base == 0 {
                continue;
            }
            let better = match best {
                None => true,
                Some(b) => {
                    let t = c.slots[b].total;
                    if t >= need {
                        s.total >= need && s.total < t
                    } else {
                        s.total > t
                    }
                }
            };
            if better {
                best = Some(i);
            }
        }
        let Some(i) = best else {
            self.lock.unlock();
            return None;
        };
        let s = c.slots[i];
        if s.total >= need {
            let head = Self::geometry(need).0;
            let taken = if head >= s.total || s.total - need <= need / 8 {
                c.slots[i].base = 0;
                s.total
            } else {
                c.slots[i].base = s.base + head;
                c.slots[i].total = s.total - head;
                head
            };
            c.bytes -= taken;
            self.lock.unlock();
            return Some((s.base, taken));
        }
        c.slots[i].base = 0;
        c.bytes -= s.total;
        self.lock.unlock();
        let (need, align) = Self::geometry(need);
        // SAFETY: a cached range is ours and unused; on success the old range is gone.
        match unsafe {
            self.pages.remap(
                NonNull::new_unchecked(s.base as *mut u8),
                s.total,
                need,
                Some(align),
            )
        } {
            Some(nb) => {
                if need >= HUGE_FROM {
                    self.pages.hint_huge_pages(nb, need);
                }
                Some((nb.as_ptr() as usize, need))
            }
            None => {
                // It could not grow (a range merged from neighbouring mappings cannot be
                // remapped whole, and the OS may refuse): it stays cached for a later
                // request it fits.
                self.release(s.base, s.total, s.freed_at);
                None
            }
        }
    }

    /// Caches a freed range, merged with the cached ranges it touches (a range split by
    /// `take_cached` becomes whole again when its block is freed), or unmaps it. The cache
    /// keeps at most four times the live large blocks' bytes plus half of `max_bytes`,
    /// and never more than `max_bytes`: when that bound falls below what it holds, it
    /// unmaps its oldest ranges, so a program that has freed its large blocks keeps at
    /// most half of `max_bytes` of them resident even if it never comes back to this
    /// tier (merged ranges are few: the slot count alone no longer bounds their bytes).
    fn release(&self, base: usize, total: usize, now_ms: u64) {
        let live = self.stats.bytes_live.load(Ordering::Relaxed) as usize;
        let bound = self
            .max_bytes
            .min(live.saturating_mul(4).saturating_add(self.max_bytes / 2));
        self.lock.lock();
        // SAFETY: under the lock.
        let c = unsafe { &mut *self.cache.get() };
        self.expire(c, now_ms);
        // The bound falls as large blocks are freed: the oldest ranges go first.
        while c.bytes > bound {
            let Some(old) = c
                .slots
                .iter_mut()
                .filter(|s| s.base != 0)
                .min_by_key(|s| s.freed_at)
            else {
                break;
            };
            // SAFETY: cached ranges are ours and unused.
            unsafe {
                self.pages
                    .unmap(NonNull::new_unchecked(old.base as *mut u8), old.total)
            };
            c.bytes -= old.total;
            old.base = 0;
        }
        // No room for it: it goes, the cached ranges stay (freed earlier, they are as
        // likely to be reused, and larger when merged).
        let (mut base, mut total) = (base, total);
        let cached = c.bytes + total <= bound && {
            // At most one cached range ends where this one starts and one starts where it
            // ends; merging either leaves the other's test unchanged. The merged range
            // ages from this free.
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
                        freed_at: now_ms,
                    };
                    c.bytes += total;
                    self.next_expiry_ms
                        .fetch_min(now_ms.saturating_add(self.max_age_ms), Ordering::Relaxed);
                    true
                }
                // No slot: nothing was merged (a merge frees one).
                None => false,
            }
        };
        self.lock.unlock();
        if !cached {
            // SAFETY: the freed range is ours and unused (nothing was merged into it).
            unsafe {
                self.pages
                    .unmap(NonNull::new_unchecked(base as *mut u8), total)
            };
        }
    }

    /// Unmaps cached mappings older than the age limit (all of them with `now_ms == u64::MAX`).
    fn expire(&self, c: &mut Cache, now_ms: u64) {
        let mut next = u64::MAX;
        for s in c.slots.iter_mut() {
            if s.base == 0 {
                continue;
            }
            if now_ms.saturating_sub(s.freed_at) >= self.max_age_ms {
                // SAFETY: cached mappings are ours and unused.
                unsafe {
                    self.pages
                        .unmap(NonNull::new_unchecked(s.base as *mut u8), s.total)
                };
                c.bytes -= s.total;
                s.base = 0;
            } else {
                next = next.min(s.freed_at.saturating_add(self.max_age_ms));
            }
        }
        self.next_expiry_ms.store(next, Ordering::Relaxed);
    }

    /// Unmaps the cached ranges that have grown too old, if any may have: one relaxed
    /// load when none has. For the allocator's other slow paths, so that a program that
    /// no longer allocates or frees large blocks still gets their memory back.
    pub fn tick(&self, now_ms: u64) {
        if now_ms < self.next_expiry_ms.load(Ordering::Relaxed) {
            return;
        }
        self.lock.lock();
        // SAFETY: under the lock.
        self.expire(unsafe { &mut *self.cache.get() }, now_ms);
        self.lock.unlock();
    }

    /// Unmaps every cached mapping; returns the bytes released.
    pub fn trim(&self) -> usize {
        self.lock.lock();
        // SAFETY: under the lock.
        let c = unsafe { &mut *self.cache.get() };
        let before = c.bytes;
        self.expire(c, u64::MAX);
        self.lock.unlock();
        before
    }

    /// Bytes of freed mappings currently cached.
    pub fn cached_bytes(&self) -> usize {
        self.lock.lock();
        // SAFETY: under the lock.
        let b = unsafe { (*self.cache.get()).bytes };
        self.lock.unlock();
        b
    }
}

#[cfg(test)]
mod tests;
