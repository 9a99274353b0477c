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
    // A much smaller request takes the cached mapping shrunk to fit (waste bound kept).
    let small = heap.alloc(300_000, 16, false, 40);
    assert_eq!(heap.cached_bytes(), 0);
    let usable = unsafe { heap.usable_size(small) };
    assert!(
        (300_000..300_000 + 8192).contains(&usable),
        "usable {usable}"
    );
    unsafe { heap.free(small, 40) };
    // Too old: expired at the next operation.
    let r = heap.alloc(2 << 20, 16, false, 5000);
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
        may_move: bool,
    ) -> Option<NonNull<u8>> {
        // SAFETY: forwarded.
        (new <= old).then(|| unsafe { MmapPages.remap(p, old, new, may_move) })?
    }
}

static MAP4: AddressMap = AddressMap::new();

#[test]
fn a_mapping_that_cannot_grow_stays_cached() {
    let heap = LargeHeap::new(NoGrowth, &MAP4, 8 << 20, 1000);
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
fn a_much_larger_mapping_is_kept_for_a_larger_request() {
    let heap = LargeHeap::new(MmapPages, &MAP5, 64 << 20, 1000);
    let big = heap.alloc(8 << 20, 16, false, 0);
    unsafe { heap.free(big, 0) };
    let cached = heap.cached_bytes();
    // More than SHRINK_RATIO times the request: not cut down, a new mapping is made.
    let small = heap.alloc(1 << 20, 16, false, 10);
    assert_ne!(small, big);
    assert_eq!(heap.cached_bytes(), cached);
    // A request near its size takes it.
    let again = heap.alloc(7 << 20, 16, false, 20);
    assert_eq!(again, big);
    assert_eq!(heap.cached_bytes(), 0);
    unsafe {
        heap.free(small, 30);
        heap.free(again, 30);
    }
    heap.trim();
}
