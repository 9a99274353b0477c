extern crate std;
use super::*;
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
        assert_eq!(p as usize % align.max(4096), 0);
        assert_eq!(MAP.region(p as usize), Region::Large);
        let usable = unsafe { heap.usable_size(p) };
        assert!(usable >= size.max(1) && usable < size + align.max(4096) + 4096);
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
        (300_000..300_000 + 8192).contains(&usable),
        "usable {usable}"
    );
    assert_eq!(heap.cached_bytes(), whole - (usable + 4096));
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

/// `mmap` pages whose mappings can shrink but never grow where they are (as when the
/// address space after a mapping is taken).
struct NoGrowth;

// SAFETY: forwards to `MmapPages`, refusing only some remaps (allowed by the contract).
unsafe impl PageSource for NoGrowth {
    fn map(&self, size: usize, align: usize) -> Option<NonNull<u8>> {
        MmapPages.map(size, align)
    }
    unsafe fn unmap(&self, p: NonNull<u8>, size: usize) {
        // SAFETY: forwarded.
        unsafe { MmapPages.unmap(p, size) }
    }
    unsafe fn purge(&self, p: NonNull<u8>, size: usize) {
        // SAFETY: forwarded.
        unsafe { MmapPages.purge(p, size) }
    }
    unsafe fn remap(
        &self,
        p: NonNull<u8>,
        old: usize,
        new: usize,
        move_align: Option<usize>,
    ) -> Option<NonNull<u8>> {
        // SAFETY: forwarded.
        (new <= old).then(|| unsafe { MmapPages.remap(p, old, new, move_align) })?
    }
}

static MAP4: AddressMap = AddressMap::new();

#[test]
fn a_mapping_that_cannot_grow_stays_cached() {
    let heap = LargeHeap::new(NoGrowth, &MAP4, 64 << 20, 1000);
    let p = heap.alloc(1 << 20, 16, false, 0);
    unsafe { heap.free(p, 0) };
    let cached = heap.cached_bytes();
    assert!(cached > 1 << 20);
    // Larger than anything cached: the cached mapping cannot grow, so a new one is mapped
    // and the cached one is kept for a later request that fits it.
    let big = heap.alloc(3 << 20, 16, false, 10);
    assert!(!big.is_null() && big != p);
    assert_eq!(heap.cached_bytes(), cached);
    let again = heap.alloc(1 << 20, 16, false, 20);
    assert_eq!(again, p, "the kept mapping is reused");
    assert_eq!(heap.cached_bytes(), 0);
    unsafe {
        heap.free(big, 30);
        heap.free(again, 40);
    }
    // A kept mapping still ages from its free, not from the failed growth: `big`'s,
    // freed at 30 and kept at 50, is gone at 1045.
    let bigger = heap.alloc(4 << 20, 16, false, 50); // takes `big`, which cannot grow: kept
    assert!(heap.in_cache(p) && heap.in_cache(big));
    let _ = heap.alloc(6 << 20, 16, false, 1045);
    assert!(!heap.in_cache(big), "expired 1000 ms after its free");
    unsafe { heap.free(bigger, 1045) };
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
        "8 MiB and a header page, in whole huge pages"
    );
    // A small block takes the head, page-granular; a big one the next whole huge pages.
    let small = heap.alloc(1 << 20, 16, false, 10);
    assert_eq!(small, big);
    let mid = heap.alloc(7 << 20, 16, false, 10);
    assert_eq!(mid as usize, big as usize + (1 << 20) + 4096);
    assert_eq!(heap.cached_bytes(), cached - (1 << 20) - 4096 - (8 << 20));
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

static MAP6: AddressMap = AddressMap::new();

#[test]
fn a_smaller_range_grows_with_its_pages() {
    let heap = LargeHeap::new(MmapPages, &MAP6, 64 << 20, 1000);
    let p = heap.alloc(1 << 20, 16, false, 0);
    unsafe { p.write_bytes(0x3c, 1 << 20) };
    unsafe { heap.free(p, 0) };
    // Larger than anything cached: the cached range grows, in place or moved to a range
    // aligned for huge pages; its pages (and so their old bytes) come along.
    let q = heap.alloc(3 << 20, 16, false, 10);
    assert_eq!(heap.cached_bytes(), 0);
    assert_eq!(q as usize % 4096, 0);
    let old = unsafe { core::slice::from_raw_parts(q, 1 << 20) };
    assert!(old.iter().all(|&b| b == 0x3c), "the pages were reused");
    let grown = unsafe { core::slice::from_raw_parts(q.add(1 << 20), 2 << 20) };
    assert!(grown.iter().all(|&b| b == 0), "the growth is fresh");
    assert!(unsafe { heap.usable_size(q) } >= 3 << 20);
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
