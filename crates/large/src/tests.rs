extern crate std;
use super::*;
use core::sync::atomic::AtomicUsize;
use os_pages::MmapPages;
use superslab::Region;

// One map per test: tests run in parallel and may share granules.
static MAP: AddressMap = AddressMap::new();
static MAP2: AddressMap = AddressMap::new();
static MAP3: AddressMap = AddressMap::new();

#[test]
fn alloc_free_and_alignment() {
    let heap = LargeHeap::new(MmapPages, &MAP, 0, 1000);
    for (size, align) in [
        (300_000, 16),
        (1 << 20, 4096),
        (5000, 65536),
        (100, 1 << 21),
        (0, 4096), // size 0 still has a usable byte: usable_size 0 means "not large"
        (0, 1 << 16),
    ] {
        let p = heap.alloc(size, align, false, 0);
        assert!(!p.is_null());
        assert_eq!(p as usize % align.max(64), 0);
        assert_eq!(MAP.region(p as usize), Region::Large);
        let usable = unsafe { heap.usable_size(p) };
        assert!(usable >= size.max(1) && usable < size + align.max(64) + 4096);
        // The header shares the block's first page when the alignment allows it.
        if align <= 64 {
            assert_eq!(p as usize % 4096, 64);
        }
        unsafe { p.write_bytes(0x5a, usable) };
        assert!(unsafe { heap.free(p, 0) });
        // A second free is stopped by the address map before any header read.
        assert_eq!(MAP.region(p as usize), Region::Foreign);
    }
}

#[test]
fn cache_reuses_mappings_within_bounds() {
    let heap = LargeHeap::new(MmapPages, &MAP2, 8 << 20, 1000);
    let p = heap.alloc(1 << 20, 16, false, 0);
    unsafe { heap.free(p, 10) };
    assert!(heap.cached_bytes() > 0);
    // Cached, the old block's header is dead: a double free would not find it.
    assert!(!unsafe { heap.free(p, 11) });
    unsafe { p.write_bytes(1, 100) };
    let q = heap.alloc(1 << 20, 16, true, 20);
    assert!(
        unsafe { core::slice::from_raw_parts(q, 1 << 20) }
            .iter()
            .all(|&b| b == 0),
        "reused and zeroed"
    );
    assert_eq!(q, p, "the cached mapping is reused, not a new one mapped");
    assert_eq!(heap.cached_bytes(), 0);
    unsafe { heap.free(q, 30) };
    // A much smaller request takes the head of the cached range; the rest stays cached.
    let whole = heap.cached_bytes();
    let small = heap.alloc(300_000, 16, false, 40);
    assert_eq!(small, p, "the head of the cached range");
    let usable = unsafe { heap.usable_size(small) };
    assert!(
        (300_000..300_000 + 4096).contains(&usable),
        "usable {usable}"
    );
    assert_eq!(heap.cached_bytes(), whole - (usable + 64));
    // Freed, it merges with the rest: the whole range serves a request of its size again.
    unsafe { heap.free(small, 40) };
    assert_eq!(heap.cached_bytes(), whole);
    let q = heap.alloc(1 << 20, 16, false, 40);
    assert_eq!(q, p);
    assert_eq!(heap.cached_bytes(), 0);
    unsafe { heap.free(q, 40) };
    // Too old: expired at the next operation.
    let r = heap.alloc(1 << 20, 16, false, 5000);
    assert_eq!(heap.cached_bytes(), 0);
    unsafe { heap.free(r, 5000) };
    assert!(heap.trim() > 0);
    assert_eq!(heap.cached_bytes(), 0);
    // Larger than the byte bound: never cached.
    let big = heap.alloc(16 << 20, 16, false, 0);
    unsafe { heap.free(big, 0) };
    assert_eq!(heap.cached_bytes(), 0);
}

#[test]
fn resize_keeps_contents() {
    let heap = LargeHeap::new(MmapPages, &MAP3, 0, 0);
    let mut p = heap.alloc(300_000, 16, false, 0);
    unsafe { p.write_bytes(7, 300_000) };
    for size in [600_000usize, 5 << 20, 64 << 20, 400_000] {
        p = unsafe { heap.resize(p, size) }.unwrap();
        assert!(unsafe { heap.usable_size(p) } >= size);
        assert_eq!(MAP3.region(p as usize), Region::Large);
        let s = unsafe { core::slice::from_raw_parts(p, 300_000) };
        assert!(s.iter().all(|&b| b == 7));
    }
    assert!(unsafe { heap.free(p, 0) });
}

/// `mmap` pages that can refuse to grow a mapping (as when the address space after it is
/// taken and it may not move), and can count the calls made while a shard lock of a tier
/// is held.
struct TestPages {
    can_grow: bool,
    probed: Option<&'static LargeHeap<TestPages>>,
}

/// Calls to a `TestPages` made while a shard lock of its `probed` tier was held.
static CALLS_UNDER_LOCK: AtomicUsize = AtomicUsize::new(0);

impl TestPages {
    const NO_GROWTH: TestPages = TestPages {
        can_grow: false,
        probed: None,
    };

    fn check(&self) {
        for s in self.probed.iter().flat_map(|h| &h.shards) {
            // Only one test's thread uses the probed tier: a held lock is the caller's.
            if s.lock.try_lock() {
                s.lock.unlock();
            } else {
                CALLS_UNDER_LOCK.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

// SAFETY: forwards to `MmapPages`, refusing only some remaps (allowed by the contract).
unsafe impl PageSource for TestPages {
    fn map(&self, size: usize, align: usize) -> Option<NonNull<u8>> {
        self.check();
        MmapPages.map(size, align)
    }
    unsafe fn unmap(&self, p: NonNull<u8>, size: usize) {
        self.check();
        // SAFETY: forwarded.
        unsafe { MmapPages.unmap(p, size) }
    }
    unsafe fn purge(&self, p: NonNull<u8>, size: usize) {
        self.check();
        // SAFETY: forwarded.
        unsafe { MmapPages.purge(p, size) }
    }
    fn hint_huge_pages(&self, p: NonNull<u8>, size: usize) {
        self.check();
        MmapPages.hint_huge_pages(p, size)
    }
    unsafe fn remap(
        &self,
        p: NonNull<u8>,
        old: usize,
        new: usize,
        move_align: Option<usize>,
    ) -> Option<NonNull<u8>> {
        self.check();
        // SAFETY: forwarded.
        (self.can_grow || new <= old)
            .then(|| unsafe { MmapPages.remap(p, old, new, move_align) })?
    }
}

static MAP4: AddressMap = AddressMap::new();

#[test]
fn a_range_that_cannot_grow_is_given_back() {
    let heap = LargeHeap::new(TestPages::NO_GROWTH, &MAP4, 64 << 20, 1000);
    let p = heap.alloc(1 << 20, 16, false, 0);
    unsafe { heap.free(p, 0) };
    let cached = heap.cached_bytes();
    assert!(cached > 1 << 20);
    // Over twice anything cached: no growth is tried, a new mapping is made and the
    // cached range is kept for a later request that fits it.
    let big = heap.alloc(3 << 20, 16, false, 10);
    assert!(!big.is_null() && big != p);
    assert_eq!(heap.cached_bytes(), cached);
    // Less than twice the cached range: it would grow, but this source cannot, so the
    // range goes (kept, it would stay the largest and be tried again and again) and the
    // block is mapped afresh.
    let mid = heap.alloc(3 << 19, 16, false, 20);
    assert!(!mid.is_null() && mid != p);
    assert!(!heap.in_cache(p));
    assert_eq!(heap.cached_bytes(), 0);
    unsafe {
        heap.free(big, 30);
        heap.free(mid, 30);
    }
    heap.trim();
}

static MAP5: AddressMap = AddressMap::new();

#[test]
fn a_larger_range_is_split_and_merged_back() {
    let heap = LargeHeap::new(MmapPages, &MAP5, 64 << 20, 1000);
    let big = heap.alloc(8 << 20, 16, false, 0);
    unsafe { heap.free(big, 0) };
    let cached = heap.cached_bytes();
    assert_eq!(
        cached,
        10 << 20,
        "8 MiB and its header, in whole huge pages"
    );
    // A smaller block takes the head, page-granular, from the shared shard (its own is
    // empty); the next one the pages after it.
    let small = heap.alloc(1 << 20, 16, false, 10);
    assert_eq!(small, big);
    let mid = heap.alloc(7 << 20, 16, false, 10);
    assert_eq!(mid as usize, big as usize + (1 << 20) + 4096);
    assert_eq!(
        heap.cached_bytes(),
        cached - 2 * ((1 << 20) + 4096) - (6 << 20)
    );
    unsafe {
        heap.free(mid, 20);
        heap.free(small, 20);
    }
    // The three parts are one range again.
    assert_eq!(heap.cached_bytes(), cached);
    let again = heap.alloc(8 << 20, 16, false, 30);
    assert_eq!(again, big);
    assert_eq!(heap.cached_bytes(), 0);
    unsafe { heap.free(again, 30) };
    heap.trim();
}

static MAP_FIT: AddressMap = AddressMap::new();

#[test]
fn a_request_takes_the_lowest_range_that_fits() {
    let heap = LargeHeap::new(MmapPages, &MAP_FIT, 64 << 20, 1000);
    let [a, b, c] = [2 << 20, 1 << 20, 5 << 20].map(|n| heap.alloc(n, 16, false, 0));
    // SAFETY: live blocks of this heap, each freed once.
    unsafe {
        heap.free(a, 0);
        heap.free(c, 0);
    }
    // `b` lies between them: two ranges.
    assert!(heap.in_cache(a) && heap.in_cache(c));
    assert_eq!(heap.cached_bytes(), (7 << 20) + 2 * 4096);
    // Both fit: the head of the lower one, whichever is smaller.
    let d = heap.alloc(1 << 20, 16, false, 10);
    assert_eq!(d, a.min(c));
    // Only (what is left of) the larger one fits.
    let e = heap.alloc(3 << 20, 16, false, 10);
    let head = (1 << 20) + 4096;
    assert_eq!(e, if a < c { c } else { c.wrapping_add(head) });
    // SAFETY: live blocks of this heap, each freed once.
    unsafe {
        heap.free(b, 20);
        heap.free(d, 20);
        heap.free(e, 20);
    }
    heap.trim();
}

static MAP6: AddressMap = AddressMap::new();

#[test]
fn a_smaller_range_grows_with_its_pages() {
    let heap = LargeHeap::new(MmapPages, &MAP6, 64 << 20, 1000);
    let p = heap.alloc(1 << 20, 16, false, 0);
    unsafe { p.write_bytes(0x3c, 1 << 20) };
    unsafe { heap.free(p, 0) };
    // Larger than anything cached, but less than twice it: the cached range grows, in
    // place or moved; its pages (and so their old bytes) come along.
    let q = heap.alloc(3 << 19, 16, false, 10);
    assert_eq!(heap.cached_bytes(), 0);
    assert_eq!(q as usize % 4096, 64);
    let old = unsafe { core::slice::from_raw_parts(q, 1 << 20) };
    assert!(old.iter().all(|&b| b == 0x3c), "the pages were reused");
    let grown = unsafe { core::slice::from_raw_parts(q.add(1 << 20), 1 << 19) };
    assert!(grown.iter().all(|&b| b == 0), "the growth is fresh");
    assert!(unsafe { heap.usable_size(q) } >= 3 << 19);
    unsafe { heap.free(q, 20) };
    heap.trim();
}

static MAP7: AddressMap = AddressMap::new();

#[test]
fn the_cache_keeps_little_once_large_blocks_are_freed() {
    let heap = LargeHeap::new(MmapPages, &MAP7, 64 << 20, 1000);
    let blocks: [*mut u8; 7] = core::array::from_fn(|_| heap.alloc(7 << 20, 16, false, 0));
    let mut most = 0;
    for (i, &b) in blocks.iter().enumerate() {
        unsafe { heap.free(b, i as u64) };
        // Four times the live bytes plus half of the bound (32 MiB), at most 64 MiB; each
        // block's mapping is 8 MiB.
        let live = (blocks.len() - 1 - i) * (8 << 20);
        assert!(
            heap.cached_bytes() <= (4 * live + (32 << 20)).min(64 << 20),
            "after free {i}"
        );
        most = most.max(heap.cached_bytes());
    }
    assert!(most > 32 << 20, "while blocks are live, more is kept");
    assert!(heap.cached_bytes() <= 32 << 20);
    heap.trim();
}

static MAP8: AddressMap = AddressMap::new();

#[test]
fn a_tick_expires_old_ranges_without_a_large_call() {
    let heap = LargeHeap::new(MmapPages, &MAP8, 64 << 20, 1000);
    let a = heap.alloc(1 << 20, 16, false, 0);
    // Live until the end, between `a` and `b` (mmap hands out addresses in order), so that
    // their freed ranges do not touch and merge.
    let spacer = heap.alloc(1 << 20, 16, false, 0);
    let b = heap.alloc(3 << 20, 16, false, 0);
    unsafe {
        heap.free(a, 100);
        heap.free(b, 600);
    }
    let both = heap.cached_bytes();
    heap.tick(1099);
    assert_eq!(heap.cached_bytes(), both, "nothing is a second old yet");
    heap.tick(1100);
    assert!(
        !heap.in_cache(a) && heap.in_cache(b),
        "the older range went first"
    );
    heap.tick(1599);
    assert!(heap.in_cache(b));
    heap.tick(1600);
    assert_eq!(heap.cached_bytes(), 0);
    unsafe { heap.free(spacer, 1600) };
    heap.trim();
}

static MAP9: AddressMap = AddressMap::new();

#[test]
fn ranges_go_back_to_their_shard_whoever_frees_them() {
    static HEAP: LargeHeap<MmapPages> = LargeHeap::new(MmapPages, &MAP9, 64 << 20, 1000);
    let p = HEAP.alloc_in(3, 1 << 20, 16, false, 0) as usize;
    // Freed by another thread: the range still goes to the shard it came from.
    std::thread::spawn(move || assert!(unsafe { HEAP.free(p as *mut u8, 0) }))
        .join()
        .unwrap();
    let shard = 1 + 3 % (SHARDS - 1);
    assert_eq!(
        HEAP.shards[shard].bytes.load(Ordering::Relaxed),
        (1 << 20) + 4096
    );
    // A shard that caches nothing takes a range from the shard that caches the most; the
    // range still belongs there and goes back there when freed.
    let other = HEAP.alloc_in(4, 1 << 20, 16, false, 0);
    assert_eq!(other as usize, p);
    // SAFETY: a live block of this heap, freed once.
    unsafe { HEAP.free(other, 0) };
    assert_eq!(
        HEAP.shards[shard].bytes.load(Ordering::Relaxed),
        (1 << 20) + 4096
    );
    assert_eq!(
        HEAP.shards[1 + 4 % (SHARDS - 1)]
            .bytes
            .load(Ordering::Relaxed),
        0
    );
    let again = HEAP.alloc_in(3, 1 << 20, 16, false, 0);
    assert_eq!(again as usize, p);
    // A big block uses the shared shard 0, and a small request its own shard cannot serve
    // takes the head of a shared range; freed, the head goes back to shard 0 and merges.
    let big = HEAP.alloc_in(3, 9 << 20, 16, false, 0);
    unsafe { HEAP.free(big, 0) };
    assert_eq!(HEAP.shards[0].bytes.load(Ordering::Relaxed), 10 << 20);
    let head = HEAP.alloc_in(5, 2 << 20, 16, false, 0);
    assert_eq!(head, big);
    unsafe { HEAP.free(head, 0) };
    assert_eq!(HEAP.shards[0].bytes.load(Ordering::Relaxed), 10 << 20);
    let s = HEAP.stats();
    assert_eq!((s.allocs, s.frees, s.cache_hits), (5, 4, 3));
    assert_eq!(s.bytes_live, (1 << 20) + 4096);
    // SAFETY: a live block of this heap, freed once.
    unsafe { HEAP.free(again, 0) };
    assert_eq!(HEAP.stats().bytes_live, 0);
    assert!(HEAP.trim() > 0);
    assert_eq!(HEAP.cached_bytes(), 0);
}

static MAP_STARVE: AddressMap = AddressMap::new();

#[test]
fn a_shard_that_caches_nothing_reuses_its_neighbours_ranges() {
    // 8 MiB in all: with no live block the tier may cache 4 MiB (half), all of it in the
    // shard of hint 1, so the byte bound refuses every free of the shard of hint 2.
    static HEAP: LargeHeap<MmapPages> = LargeHeap::new(MmapPages, &MAP_STARVE, 8 << 20, 1000);
    let (a, b) = (1 + 1 % (SHARDS - 1), 1 + 2 % (SHARDS - 1));
    let held: [*mut u8; 4] = core::array::from_fn(|_| HEAP.alloc_in(1, 1 << 20, 16, false, 0));
    for (n, &p) in held.iter().enumerate() {
        // SAFETY: live blocks of this heap, each freed once.
        assert!(unsafe { HEAP.free(p, n as u64) });
    }
    let pool = HEAP.shards[a].bytes.load(Ordering::Relaxed);
    assert!(pool >= 3 * ((1 << 20) + 4096), "shard {a} caches {pool}");
    // Shard b replaces one block again and again: each time it takes a range of shard a
    // (a cache hit, not a fresh mapping), and the free gives it back there.
    let hits = HEAP.stats().cache_hits;
    for n in 0..20u64 {
        let p = HEAP.alloc_in(2, 1 << 20, 16, false, 10 + n);
        assert!(!p.is_null());
        // SAFETY: a live block of 1 MiB of this heap, written whole, then freed once.
        unsafe { p.write_bytes(0x5a, 1 << 20) };
        // SAFETY: as above.
        assert!(unsafe { HEAP.free(p, 10 + n) });
        assert_eq!(HEAP.shards[b].bytes.load(Ordering::Relaxed), 0);
        assert_eq!(HEAP.shards[a].bytes.load(Ordering::Relaxed), pool);
    }
    assert_eq!(
        HEAP.stats().cache_hits - hits,
        20,
        "every request reused a range"
    );
    assert!(HEAP.trim() > 0);
}

static MAP10: AddressMap = AddressMap::new();
static PROBED: LargeHeap<TestPages> = LargeHeap::new(
    TestPages {
        can_grow: true,
        probed: Some(&PROBED),
    },
    &MAP10,
    16 << 20,
    100,
);

#[test]
fn no_system_call_is_made_under_a_shard_lock() {
    // Allocations, frees that evict and are refused for the byte bound, growth, expiry,
    // ticks and a trim, in several shards.
    let mut live = std::vec::Vec::new();
    let mut x = 7usize;
    for n in 0..400u64 {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let size = (256 << 10) + (x >> 20) % (12 << 20);
        let p = PROBED.alloc_in(x >> 60, size, 16, x & 1 == 0, n * 7);
        assert!(!p.is_null());
        live.push(p);
        if live.len() > 6 {
            let q = live.swap_remove((x >> 40) % live.len());
            assert!(unsafe { PROBED.free(q, n * 7) });
        }
        PROBED.tick(n * 7);
    }
    for p in live {
        unsafe { PROBED.free(p, 3000) };
    }
    PROBED.trim();
    assert!(PROBED.stats().cache_hits > 0, "the cache was used");
    assert_eq!(CALLS_UNDER_LOCK.load(Ordering::Relaxed), 0);
}

static MAP11: AddressMap = AddressMap::new();

/// Sixteen threads (more than this machine's cores) allocate, fill, check and free blocks
/// in their own shards and in one another's (through a shared slot array): no block is
/// handed out twice, contents survive, the counts add up.
#[test]
fn threads_share_the_tier_without_losing_blocks() {
    use std::sync::atomic::AtomicPtr;
    static HEAP: LargeHeap<MmapPages> = LargeHeap::new(MmapPages, &MAP11, 64 << 20, 1000);
    static SLOTS: [AtomicPtr<u8>; 32] = [const { AtomicPtr::new(core::ptr::null_mut()) }; 32];
    const ROUNDS: usize = 300;
    let threads: std::vec::Vec<_> = (0..16usize)
        .map(|t| {
            std::thread::spawn(move || {
                let mut x = t * 977 + 1;
                for n in 0..ROUNDS {
                    x = x
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    let size = (256 << 10) + (x >> 24) % (9 << 20);
                    let p = HEAP.alloc_in(t, size, 16, false, n as u64);
                    assert!(!p.is_null());
                    let tag = (x >> 8) as u8 | 1;
                    // First and last bytes, with the size at the start for the checker.
                    unsafe {
                        (p as *mut usize).write(size);
                        p.add(8).write(tag);
                        p.add(size - 1).write(tag);
                    }
                    let old = SLOTS[(x >> 33) % 32].swap(p, Ordering::AcqRel);
                    if !old.is_null() {
                        unsafe {
                            let size = (old as *const usize).read();
                            let tag = old.add(8).read();
                            assert_eq!(old.add(size - 1).read(), tag, "block changed");
                            assert!(HEAP.usable_size(old) >= size);
                            assert!(HEAP.free(old, n as u64));
                        }
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    for s in &SLOTS {
        let p = s.swap(core::ptr::null_mut(), Ordering::AcqRel);
        if !p.is_null() {
            assert!(unsafe { HEAP.free(p, 0) });
        }
    }
    let s = HEAP.stats();
    assert_eq!(s.allocs, 16 * ROUNDS as u64);
    assert_eq!(s.frees, s.allocs);
    assert_eq!(s.bytes_live, 0);
    assert!(s.cache_hits > 0);
    HEAP.trim();
    assert_eq!(HEAP.cached_bytes(), 0);
}
