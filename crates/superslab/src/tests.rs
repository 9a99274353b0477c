//! Unit tests of the superslab box: carving, recycling, owner lookup, the address map,
//! the remote-free queue (with real threads), exhaustion and the guarded layout.
extern crate std;

use crate::{
    AddressMap, OwnerTag, PageSource, Region, RemoteQueue, Segment, SegmentPool, Slab, SlabHeap,
    SlabState, SpinLock, ADDRESS_BITS, ENTRY_SEGMENT, LARGE_COUNT_END, RECORD_SHIFT, SEGMENT_SIZE,
    SLICE_SIZE,
};
use core::ptr::NonNull;
use core::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use os_pages::MmapPages;
use ptr_conversion::{BlockBase, BlockLayout, BlockState, SizeClass};
use std::boxed::Box;
use std::collections::{HashMap, HashSet};
use std::vec::Vec;
use tiny_layout::{class_of, Guarded, Plain};
use tls_sll::FreeList;

// ---- helpers ----

/// `MmapPages` that count what the pool does with them; maps fail (return `None`) once
/// `limit` maps have been made.
struct TestPages {
    maps: AtomicUsize,
    unmaps: AtomicUsize,
    purges: AtomicUsize,
    refused: AtomicUsize,
    limit: usize,
}

// SAFETY: every range comes from `MmapPages`, which keeps the contract; this wrapper only
// counts and refuses.
unsafe impl PageSource for TestPages {
    fn map(&self, size: usize, align: usize) -> Option<NonNull<u8>> {
        if self.maps.load(Relaxed) >= self.limit {
            self.refused.fetch_add(1, Relaxed);
            return None;
        }
        // A real mmap failure is not the refusal the tests inject: fail loudly.
        let p = MmapPages.map(size, align).expect("mmap failed");
        self.maps.fetch_add(1, Relaxed);
        Some(p)
    }
    unsafe fn unmap(&self, p: NonNull<u8>, size: usize) {
        // SAFETY: forwarded; the caller gives the range back.
        unsafe { MmapPages.unmap(p, size) };
        self.unmaps.fetch_add(1, Relaxed);
    }
    unsafe fn purge(&self, p: NonNull<u8>, size: usize) {
        // SAFETY: forwarded; the caller gives the contents up.
        unsafe { MmapPages.purge(p, size) };
        self.purges.fetch_add(1, Relaxed);
    }
}

type Pool = SegmentPool<TestPages>;

/// A private, leaked, zeroed address map: each test has its own, so an address range
/// unmapped by one test and reused by another's mmap cannot confuse either.
fn new_map() -> &'static AddressMap {
    let layout = std::alloc::Layout::new::<AddressMap>();
    // SAFETY: an all-zero AddressMap is the empty map (`AddressMap::new` is `zeroed`).
    let p = unsafe { std::alloc::alloc_zeroed(layout) }.cast::<AddressMap>();
    assert!(!p.is_null());
    // SAFETY: as above; leaked, so 'static.
    unsafe { &*p }
}

/// A leaked pool over a private map, keeping `max_cached` segments, mapping at most
/// `limit` segments in all.
fn pool_with(max_cached: usize, limit: usize) -> &'static Pool {
    let pages = TestPages {
        maps: AtomicUsize::new(0),
        unmaps: AtomicUsize::new(0),
        purges: AtomicUsize::new(0),
        refused: AtomicUsize::new(0),
        limit,
    };
    Box::leak(Box::new(SegmentPool::new(pages, new_map(), max_cached)))
}

fn pool(max_cached: usize) -> &'static Pool {
    pool_with(max_cached, usize::MAX)
}

fn maps(p: &Pool) -> usize {
    p.pages().maps.load(Relaxed)
}
fn unmaps(p: &Pool) -> usize {
    p.pages().unmaps.load(Relaxed)
}
fn open_slabs(p: &Pool) -> u64 {
    p.stats().slabs_opened.load(Relaxed) - p.stats().slabs_closed.load(Relaxed)
}

/// A slab heap's owner as the facade is one: a current slab per class, popped from, and
/// moved on from as `refill` does.
struct Owner<L: BlockLayout> {
    h: SlabHeap<L>,
    current: HashMap<usize, *mut Slab<L>>,
    detached: *mut Slab<L>,
}

impl<L: BlockLayout> core::ops::Deref for Owner<L> {
    type Target = SlabHeap<L>;
    fn deref(&self) -> &SlabHeap<L> {
        &self.h
    }
}
impl<L: BlockLayout> core::ops::DerefMut for Owner<L> {
    fn deref_mut(&mut self) -> &mut SlabHeap<L> {
        &mut self.h
    }
}

impl<L: BlockLayout> Owner<L> {
    fn current(&self, c: SizeClass) -> *mut Slab<L> {
        *self.current.get(&c.index()).unwrap_or(&self.detached)
    }

    /// One block of class `c` (pop, else carve, else the next slab); `None`: out of
    /// memory.
    fn alloc(&mut self, pool: &Pool, c: SizeClass) -> Option<BlockBase<L>> {
        let mut s = self.current(c);
        loop {
            // SAFETY: our current slab, or the detached record.
            unsafe {
                if let Some(b) = (*s).pop() {
                    return Some(b);
                }
                if self.h.carve(pool, s, 4) > 0 {
                    continue;
                }
                self.h.set_full(pool, s);
            }
            let next = self.h.next_slab(pool, c);
            s = next.unwrap_or(self.detached);
            self.current.insert(c.index(), s);
            next?;
        }
    }

    /// A block carved for the caller from a slab that has no free block (`calloc`).
    fn zeroed(&mut self, pool: &Pool, c: SizeClass) -> Option<(BlockBase<L>, bool)> {
        let s = self.current(c);
        // SAFETY: as in `alloc`.
        unsafe {
            if let Some(r) = self.h.carve_one(pool, s) {
                return Some(r);
            }
            self.h.set_full(pool, s);
        }
        let s = self.h.next_slab(pool, c);
        self.current.insert(c.index(), s.unwrap_or(self.detached));
        // SAFETY: as above.
        unsafe { self.h.carve_one(pool, s?) }
    }

    /// Gives back every current slab (queued, or closed if empty).
    fn release_current_slabs(&mut self, pool: &Pool) {
        for (_, s) in self.current.drain() {
            // SAFETY: our current slab.
            unsafe { self.h.release_current(pool, s) };
        }
    }

    /// Everything back: current slabs and empty slabs.
    fn release_empty(&mut self, pool: &Pool) {
        self.release_current_slabs(pool);
        self.h.release_empty(pool);
    }
}

fn heap<L: BlockLayout>(owner: usize) -> Owner<L> {
    let mut h = SlabHeap::new();
    h.set_owner(owner);
    Owner {
        h,
        current: HashMap::new(),
        detached: Box::leak(Box::new(Slab::detached())),
    }
}

/// Takes up to `n` blocks of class `c`, in allocation order.
fn take<L: BlockLayout>(
    heap: &mut Owner<L>,
    pool: &Pool,
    c: SizeClass,
    n: usize,
) -> Vec<BlockBase<L>> {
    let mut v = Vec::with_capacity(n);
    while v.len() < n {
        match heap.alloc(pool, c) {
            Some(b) => v.push(b),
            None => break,
        }
    }
    v
}

/// Returns every block (owner thread).
fn give_back<L: BlockLayout>(heap: &mut Owner<L>, pool: &Pool, blocks: &[BlockBase<L>]) {
    for &b in blocks {
        // SAFETY: blocks of this heap, taken by `take` and not in use.
        unsafe { heap.free_block(pool, b) };
    }
}

fn seg_of(a: usize) -> usize {
    a & !(SEGMENT_SIZE - 1)
}

fn fill(a: usize, len: usize, f: impl Fn(usize) -> u8) {
    for i in 0..len {
        // SAFETY: callers pass a block (or part of one) they own.
        unsafe { ((a + i) as *mut u8).write(f(i)) };
    }
}

fn check(a: usize, from: usize, len: usize, f: impl Fn(usize) -> u8) {
    for i in from..len {
        // SAFETY: as in `fill`.
        let got = unsafe { ((a + i) as *const u8).read() };
        assert_eq!(got, f(i), "byte {i} of block {a:#x}");
    }
}

fn pattern(a: usize) -> impl Fn(usize) -> u8 {
    move |i| ((a >> 4) as u8) ^ (i as u8).wrapping_mul(31) ^ 0x5a
}

const KIB: usize = 1024;
/// 16 B, 1 KiB, 8 KiB, 64 KiB, 256 KiB.
const SIZES: [usize; 5] = [16, KIB, 8 * KIB, 64 * KIB, 256 * KIB];

// ---- 1. carving ----

/// Checks every block of `blocks` (class `c`, heap `owner`) against its segment, slab and
/// neighbours; returns (addr, stride) pairs for the caller's overlap check.
fn check_blocks<L: BlockLayout>(
    pool: &Pool,
    c: SizeClass,
    owner: usize,
    blocks: &[BlockBase<L>],
) -> Vec<(usize, usize)> {
    let stride = L::stride(c);
    assert!(stride >= L::HEADER_SIZE + c.block_size() && stride % 16 == 0);
    blocks
        .iter()
        .map(|b| {
            let a = b.addr();
            assert_eq!(a % 16, 0, "block {a:#x} not 16-aligned");
            assert_eq!(pool.map().region(a), Region::Segment);
            // The whole block is in the same segment, past its metadata slice.
            assert_eq!(seg_of(a), seg_of(a + stride - 1));
            assert!(
                a - seg_of(a) >= SLICE_SIZE,
                "block {a:#x} in the metadata slice"
            );
            // SAFETY: the map says `a` is in a live segment.
            let s = unsafe { Segment::<L>::slab_of(a) };
            assert!(s.is_live());
            assert_eq!((s.class(), s.owner()), (c, owner));
            assert_eq!(s.capacity() as usize, L::blocks_per_slab(c));
            assert!(a >= s.start() && a + stride <= s.start() + s.capacity() as usize * stride);
            assert_eq!((a - s.start()) % stride, 0);
            assert!(s.holds_block(a));
            // Other threads' copy of the list's key is the list's.
            assert_eq!(s.shared_list_key(), s.list_key());
            assert_ne!(s.list_key(), 0);
            // An address above user space whose low 47 bits are this block's is not it.
            for h in [1, 2, 0x8000, 0x1_ffff] {
                assert!(!s.holds_block(a | h << 47), "{a:#x} + {h:#x} << 47");
            }
            // Slabs are aligned to their size (runs of slices aligned to their length).
            assert_eq!(s.start() % c.slab_bytes(), 0);
            assert!(s.used() >= 1);
            for k in [0, 1, 15, stride / 2, stride - 1] {
                assert_eq!(
                    s.block_containing(a + k),
                    Some(*b),
                    "interior {k} of {a:#x}"
                );
                // The slab is the same, whatever slice `a + k` is in.
                // SAFETY: as above.
                assert!(core::ptr::eq(unsafe { Segment::<L>::slab_of(a + k) }, s));
            }
            (a, stride)
        })
        .collect()
}

/// No two blocks overlap, whatever their classes.
fn assert_disjoint(mut spans: Vec<(usize, usize)>) {
    spans.sort_unstable();
    for w in spans.windows(2) {
        assert!(
            w[1].0 >= w[0].0 + w[0].1,
            "blocks {:#x} and {:#x} overlap",
            w[0].0,
            w[1].0
        );
    }
}

#[test]
fn carve_blocks_of_several_classes() {
    let pool = pool(4);
    let owner = 0xA11CE;
    let mut h = heap::<Plain>(owner);
    let mut all = Vec::new();
    let mut spans = Vec::new();
    for size in SIZES {
        let c = class_of(size).unwrap();
        assert_eq!(c.block_size(), size);
        // Two slabs and a bit: every class crosses slab boundaries.
        let n = 2 * Plain::blocks_per_slab(c) + 3;
        let v = take(&mut h, pool, c, n);
        assert_eq!(v.len(), n);
        spans.extend(check_blocks(pool, c, owner, &v));
        all.push((c, v));
    }
    assert_disjoint(spans.clone());
    // Slabs are carved a batch at a time: the uncarved rest, and the slice before the
    // slab, belong to no block.
    for (c, v) in &all {
        for b in v {
            // SAFETY: in a live segment.
            let s = unsafe { Segment::<Plain>::slab_of(b.addr()) };
            assert_eq!(s.block_containing(s.carved_end()), None);
            assert_eq!(s.block_containing(s.start() - 1), None);
            assert!(s.carved_end() <= s.start() + s.capacity() as usize * Plain::stride(*c));
        }
    }
    // Write every byte of every block, then check the metadata is intact.
    for (c, v) in &all {
        for b in v {
            fill(b.addr(), c.block_size(), pattern(b.addr()));
        }
    }
    let mut used: HashMap<usize, u32> = HashMap::new();
    for (c, v) in &all {
        check_blocks(pool, *c, owner, v);
        for b in v {
            // SAFETY: in a live segment.
            *used
                .entry(unsafe { Segment::<Plain>::slab_of(b.addr()) }.start())
                .or_default() += 1;
        }
    }
    for (&start, &n) in &used {
        // SAFETY: a slab start of ours.
        assert_eq!(unsafe { Segment::<Plain>::slab_of(start) }.used(), n);
    }
    // The heap still works: more blocks, distinct from the others, and no old block was
    // touched by carving or linking them.
    for size in SIZES {
        let c = class_of(size).unwrap();
        let v = take(&mut h, pool, c, Plain::blocks_per_slab(c) + 1);
        spans.extend(check_blocks(pool, c, owner, &v));
        all.push((c, v));
    }
    assert_disjoint(spans);
    for (c, v) in &all[..SIZES.len()] {
        for b in v {
            check(b.addr(), 0, c.block_size(), pattern(b.addr()));
        }
    }
}

// ---- 2. free and recycle ----

#[test]
fn returned_blocks_are_reused_lifo_without_new_segments() {
    let pool = pool(4);
    let mut h = heap::<Plain>(7);
    let c = class_of(64).unwrap();
    let v = take(&mut h, pool, c, 100);
    let slab_start = unsafe { Segment::<Plain>::slab_of(v[0].addr()) }.start();
    let slab = || unsafe { Segment::<Plain>::slab_of(slab_start) };
    assert_eq!(slab().used(), 100);
    give_back(&mut h, pool, &v);
    assert_eq!(slab().used(), 0);
    assert!(slab().is_live(), "a class's last slab stays open");
    assert_eq!((maps(pool), unmaps(pool), pool.cached()), (1, 0, 0));

    let again = take(&mut h, pool, c, 100);
    let set = |v: &[BlockBase<Plain>]| v.iter().map(|b| b.addr()).collect::<HashSet<_>>();
    assert_eq!(set(&again), set(&v), "the same blocks come back");
    assert_eq!(slab().used(), 100);
    // LIFO: the block returned last is the next one out.
    let x = again[37];
    unsafe { h.free_block(pool, x) };
    assert_eq!(take(&mut h, pool, c, 1), [x]);
    give_back(&mut h, pool, &again);
    assert_eq!(slab().used(), 0);
    assert_eq!(maps(pool), 1, "no segment was mapped for recycled blocks");

    // A fully carved slab with free blocks keeps giving them before a new slab opens.
    let d = class_of(32 * KIB).unwrap();
    let full = take(&mut h, pool, d, Plain::blocks_per_slab(d));
    let opened = pool.stats().slabs_opened.load(Relaxed);
    give_back(&mut h, pool, &full[..3]);
    for _ in 0..3 {
        let one = take(&mut h, pool, d, 1);
        assert!(full[..3].contains(&one[0]));
    }
    assert_eq!(
        pool.stats().slabs_opened.load(Relaxed),
        opened,
        "no slab opened"
    );
    give_back(&mut h, pool, &full);

    h.release_empty(pool);
    assert!(h.is_empty());
    assert_eq!(pool.cached(), 1);
    assert_eq!(pool.trim(), SEGMENT_SIZE);
    assert_eq!((maps(pool), unmaps(pool)), (1, 1));
}

#[test]
fn empty_slabs_close_and_empty_segments_go_back() {
    // One cached segment at most: the second segment released is unmapped.
    let pool = pool(1);
    let mut h = heap::<Plain>(9);
    let c = class_of(8 * KIB).unwrap(); // 64 KiB slabs of 8 blocks, 63 slabs a segment
    let per_slab = Plain::blocks_per_slab(c);
    assert_eq!((c.slab_bytes(), per_slab), (SLICE_SIZE, 8));
    let per_seg = 63 * per_slab;
    let v = take(&mut h, pool, c, 2 * per_seg + 10);
    assert_eq!(v.len(), 2 * per_seg + 10);
    let segs: HashSet<usize> = v.iter().map(|b| seg_of(b.addr())).collect();
    assert_eq!((segs.len(), maps(pool)), (3, 3));
    assert_eq!(open_slabs(pool), 128);

    give_back(&mut h, pool, &v);
    // Emptied queued slabs stay (Empty) until `close_empty` closes them; the current
    // slab stays (`free_block` never demotes one).
    assert_eq!(open_slabs(pool), 128);
    h.close_empty(pool, true);
    assert_eq!(open_slabs(pool), 1);
    // The two segments left without a slab go back to the pool: it caches the first
    // resident (not purged yet) and, full, unmaps the second.
    assert!(!h.is_empty());
    assert_eq!((pool.cached(), unmaps(pool)), (1, 1));
    assert_eq!(pool.pages().purges.load(Relaxed), 0);
    assert!(pool.has_dirty());
    // Decay: the first tick only ages it; the next, with nothing taken or given back
    // in between, purges it (it stays cached, clean).
    assert_eq!(pool.decay(1000, 10), 0);
    assert_eq!(pool.decay(1005, 10), 0, "not a tick yet");
    assert_eq!(pool.decay(1010, 10), SEGMENT_SIZE - SLICE_SIZE);
    assert_eq!((pool.cached(), pool.pages().purges.load(Relaxed)), (1, 1));
    assert!(!pool.has_dirty());
    let mapped: Vec<usize> = segs
        .iter()
        .copied()
        .filter(|&s| pool.map().region(s) == Region::Segment)
        .collect();
    assert_eq!(mapped.len(), 2);
    // In the segments still mapped, closed slabs are owned by nobody (owner 0, so a stale
    // free cannot take an owner's fast path) and hold no block; one live slab is empty.
    let mut live = HashSet::new();
    for b in v.iter().filter(|b| mapped.contains(&seg_of(b.addr()))) {
        // SAFETY: in a mapped segment (live or cached; slice 0 is never purged).
        let s = unsafe { Segment::<Plain>::slab_of(b.addr()) };
        if s.is_live() {
            assert_eq!((s.used(), s.owner(), s.state()), (0, 9, SlabState::Current));
            live.insert(s.start());
        } else {
            assert_eq!((s.owner(), s.state()), (0, SlabState::Closed));
            assert_eq!(s.block_containing(b.addr()), None);
        }
    }
    assert_eq!(live.len(), 1);

    // The heap's own segment serves first (its 62 free slabs), then the pool's: no new
    // mapping.
    let w = take(&mut h, pool, c, per_seg + 8);
    assert_eq!(w.len(), per_seg + 8);
    assert_eq!((maps(pool), pool.cached()), (3, 0));
    check_blocks(pool, c, 9, &w);
    give_back(&mut h, pool, &w);
    h.close_empty(pool, true);
    assert_eq!(open_slabs(pool), 1);
    assert_eq!(pool.cached(), 1);

    // The last slab closes with the current slabs; its segment goes back (the pool is
    // full: unmapped).
    h.release_empty(pool);
    assert!(h.is_empty());
    assert_eq!(open_slabs(pool), 0);
    pool.trim();
    assert_eq!(pool.cached(), 0);
    assert_eq!(maps(pool), unmaps(pool));
    for b in v.iter().chain(&w) {
        assert_eq!(pool.map().region(b.addr()), Region::Foreign);
    }
}

/// Delayed purging: a closed slab's slices are purged at the first tick that finds them
/// already dirty at the previous one (so after at least a whole delay), reopening prefers
/// resident (dirty) slices to purged ones, and a reopened slice starts its wait again.
#[test]
fn delayed_purge_waits_a_whole_delay_and_reopening_prefers_resident_slices() {
    let pool = pool(4);
    let mut h = heap::<Plain>(11);
    let c = class_of(8 * KIB).unwrap(); // one-slice slabs of 8 blocks
    let per_slab = Plain::blocks_per_slab(c);
    let purges = || pool.pages().purges.load(Relaxed);
    let start = |b: &BlockBase<Plain>| unsafe { Segment::<Plain>::slab_of(b.addr()) }.start();
    let v1 = take(&mut h, pool, c, per_slab);
    let v2 = take(&mut h, pool, c, per_slab);
    // Another class's block keeps the segment from going back to the pool.
    let keep = take(&mut h, pool, class_of(16).unwrap(), 1);
    let (s1, s2) = (start(&v1[0]), start(&v2[0]));
    assert_eq!(s2, s1 + SLICE_SIZE);

    // Slab 1 closes and is purged at once (no delay): its slice is clean again.
    give_back(&mut h, pool, &v1);
    h.close_empty_slabs(pool);
    assert_eq!(h.purge(pool, 0, 0), SLICE_SIZE);
    assert_eq!(purges(), 1);
    // Slab 2 (the current one) is given back and closes: dirty. The first tick only marks
    // it aged; a call before the delay is no tick.
    give_back(&mut h, pool, &v2);
    h.release_current_slabs(pool);
    assert_eq!(h.purge(pool, 1000, 100), 0);
    assert_eq!(h.purge(pool, 1099, 100), 0);
    assert_eq!(purges(), 1);

    // A new slab takes the resident slice 2, not the lower, purged slice 1; reopened, its
    // slice loses its age.
    let (b, zero) = h.zeroed(pool, c).unwrap();
    assert_eq!((start(&b), zero), (s2, false));
    give_back(&mut h, pool, &[b]);
    h.release_current_slabs(pool);
    // Its wait starts again: not purged at the next tick, purged at the one after.
    assert_eq!(h.purge(pool, 1100, 100), 0);
    assert_eq!(h.purge(pool, 1199, 100), 0);
    assert_eq!(h.purge(pool, 1200, 100), SLICE_SIZE);
    assert_eq!(purges(), 2);
    // Nothing dirty is left: purging is a no-op, and both slices read as fresh.
    assert_eq!(h.purge(pool, 5000, 100), 0);
    let (b, zero) = h.zeroed(pool, c).unwrap();
    assert_eq!((start(&b), zero), (s1, true));
    give_back(&mut h, pool, &[b]);
    give_back(&mut h, pool, &keep);
    h.release_empty(pool);
    assert!(h.is_empty());
}

/// Emptied queued slabs become Empty at the front of their class's queue: reused first
/// (their lists intact, nothing carved again), and closed by `close_empty` only once they
/// stayed empty between two calls, or at once with `all`.
#[test]
fn empty_slabs_are_reused_first_and_closed_after_a_whole_tick() {
    let pool = pool(8);
    let mut h = heap::<Plain>(12);
    let c = class_of(8 * KIB).unwrap(); // one-slice slabs of 8 blocks, 63 a segment
    let per_seg = 63 * Plain::blocks_per_slab(c);
    let v = take(&mut h, pool, c, 3 * per_seg);
    assert_eq!((maps(pool), open_slabs(pool)), (3, 189));
    give_back(&mut h, pool, &v);
    // Every slab but the current one is Empty, none closed yet.
    assert_eq!(open_slabs(pool), 189);
    assert!(h.holds_free_memory());
    // Reused first: taking a slab's worth more opens no slab and carves nothing.
    let opened = pool.stats().slabs_opened.load(Relaxed);
    let w = take(&mut h, pool, c, 2 * Plain::blocks_per_slab(c));
    assert_eq!(pool.stats().slabs_opened.load(Relaxed), opened);
    assert!(
        w.iter().all(|b| v.contains(b)),
        "blocks of the emptied slabs, reused"
    );
    give_back(&mut h, pool, &w);
    // The first call only ages them; the next closes those still empty.
    h.close_empty(pool, false);
    assert_eq!(open_slabs(pool), 189);
    h.close_empty(pool, false);
    assert_eq!(open_slabs(pool), 1, "all but the current slab closed");
    // Segments whose slabs all closed went back to the pool.
    assert_eq!(pool.cached(), 2);
    // `all` closes at once.
    let x = take(&mut h, pool, c, per_seg);
    give_back(&mut h, pool, &x);
    assert!(open_slabs(pool) > 1);
    h.close_empty(pool, true);
    assert_eq!(open_slabs(pool), 1);
    h.release_empty(pool);
    assert!(h.is_empty());
}

#[test]
fn a_visitor_takes_back_the_remote_frees_of_full_slabs_only() {
    let pool = pool(8);
    let map = pool.map();
    let tag = OwnerTag::new(7).unwrap();
    let mut h = heap::<Plain>(0x7000);
    h.set_map_tag(tag);
    let c = class_of(8 * KIB).unwrap(); // one-slice slabs of 8 blocks
    let n = Plain::blocks_per_slab(c);
    // Slabs 0-2 full, slab 3 current with two blocks held.
    let v = take(&mut h, pool, c, 3 * n + 2);
    let slab = |i: usize| {
        // SAFETY: a block of a live slab of ours.
        let s = unsafe { Segment::<Plain>::slab_of(v[i * n].addr()) };
        let r = s as *const Slab<Plain> as usize;
        (s, r)
    };
    for i in 0..3 {
        assert_eq!(slab(i).0.state(), SlabState::Full);
    }
    // Another thread frees all of slab 0, half of slab 1 and the current slab's blocks.
    let q = RemoteQueue::<Plain>::new();
    let remote: Vec<usize> = v[..n]
        .iter()
        .chain(&v[n..n + n / 2])
        .chain(&v[3 * n..])
        .map(|b| b.addr())
        .collect();
    std::thread::scope(|t| {
        t.spawn(|| {
            for &a in &remote {
                // SAFETY: each block handed over once.
                unsafe { q.push(BlockBase::from_raw(NonNull::new(a as *mut u8).unwrap())) };
            }
        });
    });
    let mut classes = Vec::new();
    // SAFETY: `q` is the heap's queue; nothing else runs the heap.
    let adopted = unsafe { h.adopt_remote(pool, &q, |_| true, |k| classes.push(k)) };
    assert_eq!(adopted as usize, n + n / 2);
    assert_eq!(classes, std::vec![c; n + n / 2]);
    // Slab 0 came back whole: Empty, closed by the next `close_empty(.., true)`.
    assert_eq!((slab(0).0.state(), slab(0).0.used()), (SlabState::Empty, 0));
    // Slab 1 is queued again, and its entries now let the owner's fast free in.
    let (s1, r1) = slab(1);
    assert_eq!(
        (s1.state(), s1.used() as usize),
        (SlabState::Queued, n - n / 2)
    );
    assert_eq!(map.entry(v[n].addr()), tag.entry(r1, false));
    // Slab 2 stays full; the current slab is the owner's: its blocks wait in the queue.
    assert_eq!(slab(2).0.state(), SlabState::Full);
    assert_eq!(slab(3).0.state(), SlabState::Current);
    assert!(!q.is_empty());
    // Nothing new since: no walk, nothing taken.
    // SAFETY: as above.
    assert_eq!(unsafe { h.adopt_remote(pool, &q, |_| true, |_| ()) }, 0);
    // A new remote free of slab 2 is seen.
    // SAFETY: a block handed over once.
    unsafe { q.push(v[2 * n]) };
    // SAFETY: as above.
    assert_eq!(unsafe { h.adopt_remote(pool, &q, |_| true, |_| ()) }, 1);
    assert_eq!(slab(2).0.state(), SlabState::Queued);
    // The owner takes the rest back itself.
    let mut left = FreeList::<Plain>::new(u32::MAX);
    assert_eq!(q.take_all(&mut left), 2);
    let mut back = Vec::new();
    while let Some(b) = left.pop() {
        back.push(b);
    }
    back.sort_by_key(|b| b.addr());
    let mut current = v[3 * n..].to_vec();
    current.sort_by_key(|b| b.addr());
    assert_eq!(back, current);
    give_back(&mut h, pool, &back);
    give_back(&mut h, pool, &v[n + n / 2..2 * n]);
    give_back(&mut h, pool, &v[2 * n + 1..3 * n]);
    h.close_empty(pool, true);
    h.release_empty(pool);
    assert!(h.is_empty());
}

// ---- 3. owner lookup ----

#[test]
fn owner_lookup_for_two_heaps_and_foreign_addresses() {
    let pool = pool(1);
    let (ta, tb) = (0x1111_0000, 0x2222_0000);
    let mut a = heap::<Plain>(ta);
    let mut b = heap::<Plain>(tb);
    let mut mine = Vec::new();
    for size in [16, 100, 2000, 70_000] {
        let c = class_of(size).unwrap();
        for _ in 0..3 {
            // Interleaved, so neither heap's segments come in one run.
            let va = take(&mut a, pool, c, 50);
            let vb = take(&mut b, pool, c, 50);
            mine.extend(va.iter().map(|x| (x.addr(), ta, c)));
            mine.extend(vb.iter().map(|x| (x.addr(), tb, c)));
        }
    }
    for &(addr, owner, c) in &mine {
        assert_eq!(pool.map().region(addr), Region::Segment);
        let s = unsafe { Segment::<Plain>::slab_of(addr) };
        assert_eq!((s.owner(), s.class()), (owner, c));
    }
    // The two heaps never share a segment.
    let seg_owner: HashMap<usize, usize> = mine.iter().map(|&(a, o, _)| (seg_of(a), o)).collect();
    for &(addr, owner, _) in &mine {
        assert_eq!(seg_owner[&seg_of(addr)], owner);
    }

    let local = 0u64;
    let boxed = Box::new([0u8; 64]);
    for addr in [
        &local as *const u64 as usize,
        boxed.as_ptr() as usize,
        0,
        16,
        1 << ADDRESS_BITS,
        (1 << ADDRESS_BITS) + seg_of(mine[0].0),
        usize::MAX & !15,
    ] {
        assert_eq!(pool.map().region(addr), Region::Foreign, "{addr:#x}");
    }

    // A segment released by `a` and recycled by `b` is `b`'s.
    let c = class_of(48).unwrap();
    let mut x = heap::<Plain>(0x3333_0000);
    let xa = take(&mut x, pool, c, 1);
    give_back(&mut x, pool, &xa);
    x.release_empty(pool);
    assert_eq!(pool.cached(), 1);
    let before = maps(pool);
    let mut y = heap::<Plain>(0x4444_0000);
    let ya = take(&mut y, pool, c, 1);
    assert_eq!((maps(pool), pool.cached()), (before, 0));
    assert_eq!(seg_of(ya[0].addr()), seg_of(xa[0].addr()));
    assert_eq!(
        unsafe { Segment::<Plain>::slab_of(ya[0].addr()) }.owner(),
        0x4444_0000
    );
}

// ---- 4. address map: large blocks ----

#[test]
fn address_map_counts_large_blocks() {
    let map = new_map();
    large_blocks_are_counted(map, &MmapPages);
    assert!(!map.is_chunked() && !map.entries().is_empty());
}

/// `MmapPages` without the flat reservation: what an address-space limit (`ulimit -v`)
/// below 16 GiB does.
struct NoReserve;

// SAFETY: forwards to `MmapPages`, which keeps the contract.
unsafe impl PageSource for NoReserve {
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
    fn reserve(&self, _size: usize) -> Option<NonNull<u8>> {
        None
    }
}

#[test]
fn a_chunked_map_answers_like_the_flat_one() {
    let map = new_map();
    large_blocks_are_counted(map, &NoReserve);
    assert!(map.is_chunked() && map.entries().is_empty());
    // Live slabs' entries, in two chunks (1 GiB of addresses each) far apart.
    let tag = OwnerTag::new(7).unwrap();
    for seg in [0x1000_0000_0000usize, 0x7f00_0000_0000] {
        let record = seg + (1 << RECORD_SHIFT);
        assert!(map.publish_segment(seg, &NoReserve));
        map.set_slices(seg + SLICE_SIZE, 3, tag.entry(record, false));
        assert_eq!(map.entry(seg), ENTRY_SEGMENT);
        assert_eq!(
            map.entry(seg + 2 * SLICE_SIZE + 5),
            tag.entry(record, false)
        );
        assert_eq!(tag.record_of(map.entry(seg + 3 * SLICE_SIZE)), Some(record));
        assert_eq!(map.entry(seg + 4 * SLICE_SIZE), ENTRY_SEGMENT);
        assert_eq!(map.entry(seg + SEGMENT_SIZE), 0);
        map.retract_segment(seg);
        assert_eq!(map.region(seg + SLICE_SIZE), Region::Foreign);
    }
    // A map that can be neither reserved nor chunked stays empty.
    struct Nothing;
    // SAFETY: never hands out memory.
    unsafe impl PageSource for Nothing {
        fn map(&self, _: usize, _: usize) -> Option<NonNull<u8>> {
            None
        }
        unsafe fn unmap(&self, _: NonNull<u8>, _: usize) {}
        unsafe fn purge(&self, _: NonNull<u8>, _: usize) {}
        fn reserve(&self, _: usize) -> Option<NonNull<u8>> {
            None
        }
    }
    let empty = new_map();
    assert!(!empty.publish_segment(0x1000_0000_0000, &Nothing));
    assert!(!empty.add_large(0x1000_0000_0000, &Nothing));
    assert_eq!(empty.region(0x1000_0000_0000), Region::Foreign);
}

#[test]
fn concurrent_first_reservations_agree_on_one_map() {
    // Half the threads cannot have the flat reservation: whichever form wins the one CAS,
    // every thread ends up with it, and publications by all of them are seen by all.
    let map = new_map();
    let handles: Vec<_> = (0..8)
        .map(|t| {
            std::thread::spawn(move || {
                let seg = 0x2000_0000_0000usize + t * SEGMENT_SIZE;
                let ok = if t % 2 == 0 {
                    map.publish_segment(seg, &MmapPages)
                } else {
                    map.publish_segment(seg, &NoReserve)
                };
                assert!(ok);
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    for t in 0..8 {
        assert_eq!(
            map.region(0x2000_0000_0000 + t * SEGMENT_SIZE + 1),
            Region::Segment
        );
    }
    assert_eq!(map.is_chunked(), map.entries().is_empty());
}

fn large_blocks_are_counted(map: &AddressMap, pages: &impl PageSource) {
    let g = 0x5000_0000_0000usize; // a slice (64 KiB-aligned) below 2^47
    assert_eq!(map.region(g), Region::Foreign);
    assert!(map.add_large(g + 4096, pages));
    assert!(map.add_large(g + SLICE_SIZE - 16, pages)); // same slice
    assert!(map.add_large(g + 4096, pages));
    for a in [g, g + 4096, g + SLICE_SIZE - 1] {
        assert_eq!(map.region(a), Region::Large);
    }
    assert_eq!(map.region(g - 1), Region::Foreign);
    assert_eq!(map.region(g + SLICE_SIZE), Region::Foreign);
    map.remove_large(g + 4096);
    map.remove_large(g + 4096);
    assert_eq!(map.region(g), Region::Large);
    map.remove_large(g + SLICE_SIZE - 16);
    assert_eq!(map.region(g), Region::Foreign);
    // No underflow: a stray remove leaves it foreign, and one add counts one again.
    map.remove_large(g);
    assert_eq!(map.region(g), Region::Foreign);
    assert!(map.add_large(g, pages));
    map.remove_large(g);
    assert_eq!(map.region(g), Region::Foreign);

    // Saturation: the count stays below its end (far below any owner tag).
    let mut n = 0;
    while map.add_large(g, pages) {
        n += 1;
        assert!(n < LARGE_COUNT_END as usize);
    }
    assert_eq!(n, LARGE_COUNT_END as usize - 2);
    assert_eq!(map.region(g), Region::Large);
    for _ in 0..n {
        map.remove_large(g);
    }
    assert_eq!(map.region(g), Region::Foreign);

    // A segment's slices count no large blocks and are not changed by a remove.
    let s = g + 8 * SEGMENT_SIZE;
    assert!(map.publish_segment(s, pages));
    assert!(!map.add_large(s + 64, pages));
    map.remove_large(s + 64);
    assert_eq!(map.region(s), Region::Segment);
    assert_eq!(map.region(s + SEGMENT_SIZE - 1), Region::Segment);
    assert_eq!(map.region(s + SEGMENT_SIZE), Region::Foreign);
    map.retract_segment(s);
    assert_eq!(map.region(s), Region::Foreign);
    // Outside the map.
    assert!(!map.add_large(1 << ADDRESS_BITS, pages));
    assert_eq!(map.region(1 << ADDRESS_BITS), Region::Foreign);
}

#[test]
fn owner_tags_mark_live_slabs_with_owner_record_and_fullness() {
    let pool = pool(0);
    let map = pool.map();
    let (ta, tb) = (
        OwnerTag::new(1).unwrap(),
        OwnerTag::new(OwnerTag::MAX_ID).unwrap(),
    );
    assert!(OwnerTag::new(0).is_none() && OwnerTag::new(OwnerTag::MAX_ID + 1).is_none());
    let mut a = heap::<Plain>(0xa000);
    a.set_map_tag(ta);
    let mut b = heap::<Plain>(0xb000);
    b.set_map_tag(tb);
    let record = |x: &BlockBase<Plain>| {
        // SAFETY: a block of a live slab.
        let s = unsafe { Segment::<Plain>::slab_of(x.addr()) };
        let r = s as *const Slab<Plain> as usize;
        // The record address leads back to the slab.
        // SAFETY: as above.
        assert!(core::ptr::eq(unsafe { Segment::<Plain>::slab_at(r) }, s));
        (s, r)
    };
    for c in [
        class_of(16).unwrap(),
        class_of(4000).unwrap(),
        class_of(200_000).unwrap(),
    ] {
        let xs = take(&mut a, pool, c, 3);
        let ys = take(&mut b, pool, c, 3);
        for x in &xs {
            let (slab, r) = record(x);
            let e = map.entry(x.addr());
            assert_eq!(e, ta.entry(r, false));
            assert_eq!(ta.record_of(e), Some(r));
            assert_eq!(crate::slab_record(e), Some(r));
            assert_eq!(tb.record_of(e), None, "another owner's slab");
            // Every slice of the slab carries the entry.
            let last = slab.start() + c.slab_bytes() - 1;
            assert_eq!(map.entry(last), e);
        }
        for y in &ys {
            assert_eq!(tb.record_of(map.entry(y.addr())), Some(record(y).1));
        }
        // SAFETY: blocks taken from these heaps, returned by their owners.
        for x in xs {
            unsafe { a.free_block(pool, x) };
        }
        for y in ys {
            unsafe { b.free_block(pool, y) };
        }
    }
    // A slab with nothing left to give is set aside as full: its entries say so, so that
    // no owner's fast path takes its blocks, and a free queues it again.
    let c = class_of(4000).unwrap();
    let all = take(&mut a, pool, c, Plain::blocks_per_slab(c) + 1);
    let (slab, r) = record(&all[0]);
    assert_eq!(slab.state(), SlabState::Full);
    let e = map.entry(all[0].addr());
    assert_eq!(e, ta.entry(r, true));
    assert_eq!((ta.record_of(e), crate::slab_record(e)), (None, Some(r)));
    assert_eq!(crate::owner_tag_bits(e), ta.get());
    // SAFETY: as above.
    unsafe { a.free_block(pool, all[3]) };
    assert_eq!(slab.state(), SlabState::Queued);
    assert_eq!(map.entry(all[0].addr()), ta.entry(r, false));
    give_back(&mut a, pool, &all[4..]);
    give_back(&mut a, pool, &all[..3]);
    // Closed slabs are plain segment slices again; no tag matches them.
    a.release_empty(pool);
    b.release_empty(pool);
    assert!(a.is_empty() && b.is_empty());
    // A heap without a tag marks its slabs as plain segment slices.
    let mut u = heap::<Plain>(0xc000);
    let c = class_of(64).unwrap();
    let xs = take(&mut u, pool, c, 2);
    assert_eq!(map.entry(xs[0].addr()), ENTRY_SEGMENT);
    assert_eq!(map.region(xs[0].addr()), Region::Segment);
    for x in xs {
        // SAFETY: as above.
        unsafe { u.free_block(pool, x) };
    }
    u.release_empty(pool);
}

// ---- 5. remote frees ----

#[test]
fn take_all_on_an_empty_queue_is_zero() {
    let q = RemoteQueue::<Plain>::new();
    let mut out = FreeList::<Plain>::new(u32::MAX);
    assert!(q.is_empty());
    assert_eq!(q.take_all(&mut out), 0);
    assert!(out.is_empty());
}

/// 4 producers write a pattern into each of `N` blocks and push them (2 one by one, 2 in
/// chains) while the owner drains the queue and returns the blocks to its heap.
fn remote_frees<L: BlockLayout>() {
    const N: usize = 100_000;
    const PRODUCERS: usize = 4;
    let pool = pool(16); // big enough that no segment is unmapped during the test
    let mut h = heap::<L>(0xBEEF);
    let c = class_of(48).unwrap();
    let blocks = take(&mut h, pool, c, N);
    assert_eq!(blocks.len(), N);
    let addrs: Vec<usize> = blocks.iter().map(|b| b.addr()).collect();
    let handed: HashSet<usize> = addrs.iter().copied().collect();
    assert_eq!(handed.len(), N);
    let stride = L::stride(c);
    // The bytes a free block's link (and, unchecked, a chain head's next-chain word after
    // it) may overwrite.
    let link_end = L::LINK_OFFSET + 16;

    let queue = RemoteQueue::<L>::new();
    let mut seen = HashSet::with_capacity(N);
    std::thread::scope(|s| {
        for (t, part) in addrs.chunks(N.div_ceil(PRODUCERS)).enumerate() {
            let queue = &queue;
            s.spawn(move || {
                let base = |a: usize| unsafe {
                    BlockBase::<L>::from_raw(NonNull::new(a as *mut u8).unwrap())
                };
                for batch in part.chunks(if t % 2 == 0 { 1 } else { 7 }) {
                    for &a in batch {
                        fill(a + L::HEADER_SIZE, stride - L::HEADER_SIZE, |i| {
                            pattern(a)(i + L::HEADER_SIZE)
                        });
                    }
                    let (head, tail) = (base(batch[0]), base(batch[batch.len() - 1]));
                    // SAFETY: each block is handed over exactly once, then not touched.
                    unsafe {
                        if batch.len() == 1 {
                            queue.push(head);
                        } else {
                            for w in batch.windows(2) {
                                base(w[0]).set_link(Some(base(w[1])));
                            }
                            queue.push_chain(head, tail);
                        }
                    }
                }
            });
        }
        // The owner: drain and return until every block is back.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
        let mut got = FreeList::<L>::new(u32::MAX);
        let mut round = 0;
        while seen.len() < N {
            round += 1;
            // Odd rounds: `drain`, returning each block (which overwrites its link) before
            // the next is read; even rounds: `take_all`, then return them.
            let n = if round % 2 == 1 {
                queue.drain(
                    |_| true,
                    |b| {
                        let a = b.addr();
                        assert!(handed.contains(&a), "{a:#x} was never handed out");
                        assert!(seen.insert(a), "{a:#x} came back twice");
                        check(a, link_end, stride, pattern(a));
                        unsafe { h.free_block(pool, b) };
                    },
                )
            } else {
                queue.take_all(&mut got)
            };
            assert_eq!(got.len(), if round % 2 == 1 { 0 } else { n });
            if n == 0 {
                assert!(
                    std::time::Instant::now() < deadline,
                    "lost blocks: {}",
                    seen.len()
                );
                std::thread::yield_now();
            }
            while let Some(b) = got.pop() {
                let a = b.addr();
                assert!(handed.contains(&a), "{a:#x} was never handed out");
                assert!(seen.insert(a), "{a:#x} came back twice");
                // Everything the producer wrote is visible (bar the link it overwrote).
                check(a, link_end, stride, pattern(a));
                unsafe { h.free_block(pool, b) };
            }
        }
    });
    assert_eq!(seen.len(), N);
    assert_eq!(queue.take_all(&mut FreeList::new(u32::MAX)), 0);
    assert!(queue.is_empty());
    // Every block is back: once the empty slabs close, the current slab remains, empty.
    h.close_empty_slabs(pool);
    assert_eq!(open_slabs(pool), 1);
    let mut live = 0;
    for start in addrs
        .iter()
        .map(|&a| unsafe { Segment::<L>::slab_of(a) }.start())
        .collect::<HashSet<_>>()
    {
        let s = unsafe { Segment::<L>::slab_of(start) };
        if s.is_live() {
            live += 1;
            assert_eq!(s.used(), 0);
        }
    }
    assert_eq!(live, 1);
    h.release_empty(pool);
    pool.trim();
    assert!(h.is_empty());
    assert_eq!(maps(pool), unmaps(pool));
}

#[test]
fn remote_frees_from_four_threads_plain() {
    remote_frees::<Plain>();
}

#[test]
fn remote_frees_from_four_threads_guarded() {
    remote_frees::<Guarded>();
}

// ---- 6. exhaustion ----

#[test]
fn allocation_fails_cleanly_when_the_os_refuses() {
    let pool = pool_with(0, 0);
    let mut h = heap::<Plain>(1);
    for size in SIZES {
        assert!(h.alloc(pool, class_of(size).unwrap()).is_none());
    }
    assert!(h.zeroed(pool, class_of(32).unwrap()).is_none());
    assert!(h.is_empty());
    assert_eq!(pool.pages().refused.load(Relaxed), SIZES.len() + 1);
    assert_eq!(pool.stats().segments_mapped.load(Relaxed), 0);

    // One segment only: 3 slabs of 256 KiB blocks fit (slices 16, 32, 48), then nothing.
    let pool = pool_with(0, 1);
    let c = class_of(256 * KIB).unwrap();
    let v = take(&mut h, pool, c, 100);
    assert_eq!(v.len(), 3 * Plain::blocks_per_slab(c));
    assert!(h.alloc(pool, c).is_none());
    // Smaller classes still fit in the slices the big slabs left.
    let small = take(&mut h, pool, class_of(64).unwrap(), 10);
    assert_eq!(small.len(), 10);
    // A returned block can be taken again.
    unsafe { h.free_block(pool, v[5]) };
    assert_eq!(take(&mut h, pool, c, 5), [v[5]]);
    assert_eq!(maps(pool), 1);
}

// ---- 7. guarded layout ----

#[test]
fn guarded_blocks_have_a_header_and_a_longer_stride() {
    let pool = pool(2);
    let owner = 0x6A;
    let mut h = heap::<Guarded>(owner);
    let mut spans = Vec::new();
    for size in SIZES {
        let c = class_of(size).unwrap();
        // 16 bytes longer; above 1 KiB rounded up to 64 bytes.
        let stride = if c.block_size() > 1024 {
            (c.block_size() + 16).next_multiple_of(64)
        } else {
            c.block_size() + 16
        };
        assert_eq!(Guarded::stride(c), stride);
        let v = take(&mut h, pool, c, Guarded::blocks_per_slab(c) + 2);
        spans.extend(check_blocks(pool, c, owner, &v));
        let mut by_slab: HashMap<usize, Vec<usize>> = HashMap::new();
        for b in &v {
            assert_eq!(b.addr() % 16, 0);
            assert_eq!(b.to_user().addr(), b.addr() + 16);
            // Carved blocks carry a Free header of their class.
            let hd = unsafe { b.read_header() }.unwrap();
            assert_eq!((hd.state, hd.class as usize), (BlockState::Free, c.index()));
            let s = unsafe { Segment::<Guarded>::slab_of(b.addr()) };
            assert_eq!(s.block_containing(b.to_user().addr()), Some(*b));
            by_slab.entry(s.start()).or_default().push(b.addr());
        }
        // Within a slab, consecutive blocks are exactly one stride apart.
        for mut a in by_slab.into_values() {
            a.sort_unstable();
            for w in a.windows(2) {
                assert_eq!(w[1] - w[0], stride);
            }
        }
        // Returned and retaken blocks keep their headers.
        give_back(&mut h, pool, &v);
        for b in take(&mut h, pool, c, v.len()) {
            assert_eq!(
                unsafe { b.read_header() }.unwrap().class as usize,
                c.index()
            );
        }
    }
    assert_disjoint(spans);
}

#[test]
fn spin_lock_try_lock_fails_while_held_and_excludes_other_threads() {
    static LOCK: SpinLock = SpinLock::new();
    static COUNT: AtomicUsize = AtomicUsize::new(0);
    assert!(LOCK.try_lock());
    assert!(!LOCK.try_lock(), "try_lock took a held lock");
    LOCK.unlock();
    // Two threads increment a plain read-then-write counter under the lock, one with
    // `lock`, one with `try_lock` retries: no increment is lost.
    let t = std::thread::spawn(|| {
        for _ in 0..100_000 {
            while !LOCK.try_lock() {
                core::hint::spin_loop();
            }
            let v = COUNT.load(Relaxed);
            COUNT.store(v + 1, Relaxed);
            LOCK.unlock();
        }
    });
    for _ in 0..100_000 {
        LOCK.lock();
        let v = COUNT.load(Relaxed);
        COUNT.store(v + 1, Relaxed);
        LOCK.unlock();
    }
    t.join().unwrap();
    assert_eq!(COUNT.load(Relaxed), 200_000);
}

/// More threads than this machine has cores (it has 2) take the lock in turns, some with
/// `try_lock`, and the holder sometimes yields its core inside the critical section (as a
/// descheduled holder would): no increment is lost and every thread finishes.
#[test]
fn spin_lock_excludes_under_contention_with_more_threads_than_cores() {
    static LOCK: SpinLock = SpinLock::new();
    static COUNT: AtomicUsize = AtomicUsize::new(0);
    const THREADS: usize = 16;
    const ROUNDS: usize = 20_000;
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            std::thread::spawn(move || {
                for i in 0..ROUNDS {
                    if t % 4 == 0 {
                        while !LOCK.try_lock() {
                            std::thread::yield_now();
                        }
                    } else {
                        LOCK.lock();
                    }
                    let v = COUNT.load(Relaxed);
                    if i % 1000 == t {
                        std::thread::yield_now();
                    }
                    COUNT.store(v + 1, Relaxed);
                    LOCK.unlock();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(COUNT.load(Relaxed), THREADS * ROUNDS);
    assert!(LOCK.try_lock(), "left locked");
    LOCK.unlock();
}

/// CPU time the calling thread has used.
fn thread_cpu_time() -> std::time::Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid out-parameter.
    assert_eq!(
        unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) },
        0
    );
    std::time::Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// A waiter whose holder keeps the lock for 400 ms (asleep, as a descheduled holder
/// would be) spends almost none of that time on a CPU: it sleeps instead of spinning. An
/// unbounded spinner would burn most of the 400 ms.
#[test]
fn spin_lock_waiter_sleeps_while_the_holder_is_away() {
    static LOCK: SpinLock = SpinLock::new();
    LOCK.lock();
    let waiter = std::thread::spawn(|| {
        let t0 = thread_cpu_time();
        LOCK.lock();
        LOCK.unlock();
        thread_cpu_time() - t0
    });
    std::thread::sleep(std::time::Duration::from_millis(400));
    LOCK.unlock();
    let spent = waiter.join().unwrap();
    assert!(
        spent < std::time::Duration::from_millis(50),
        "the waiter used {spent:?} of CPU while the lock was held"
    );
    // After a contended round the lock is free and usable again.
    assert!(LOCK.try_lock());
    LOCK.unlock();
}

// ---- sparse slabs: parking the blocks of all-free pages ----

/// Pages of `len` bytes at `a` that are resident (`mincore`).
fn resident(a: usize, len: usize) -> Vec<bool> {
    let mut v = std::vec![0u8; len / os_pages::PAGE];
    // SAFETY: mincore only reads the page tables; `v` has one entry per page.
    let r = unsafe { libc::mincore(a as *mut libc::c_void, len, v.as_mut_ptr()) };
    assert_eq!(r, 0);
    v.iter().map(|x| x & 1 == 1).collect()
}

/// A slab of class `c` with every block taken and written, then all freed but `keep`
/// (indices): swept twice (a first pass notes the frees, the second sweeps), its all-free
/// pages must be given back and exactly the blocks overlapping them parked; taking every
/// block again hands each one out once, the parked ones last, re-initialised.
fn sweep_parks_all_free_pages<L: BlockLayout>(c: SizeClass, keep: &[usize]) {
    let pool = pool(0);
    let mut h = heap::<L>(1);
    let stride = L::stride(c);
    let cap = L::blocks_per_slab(c);
    let blocks = take(&mut h, pool, c, cap);
    let s = h.current(c);
    // SAFETY: our live slab.
    let (start, pages) = unsafe { ((*s).start(), c.slab_bytes() / os_pages::PAGE) };
    for b in &blocks {
        fill(b.to_user().addr(), c.block_size(), pattern(b.addr()));
    }
    // SAFETY: our current slab, all of it carved and taken: it is set aside as full.
    unsafe { h.set_full(pool, s) };
    h.current.clear();
    let freed: Vec<_> = (0..cap)
        .filter(|i| !keep.contains(i))
        .map(|i| blocks[i])
        .collect();
    give_back(&mut h, pool, &freed);
    // SAFETY: as above (queued now).
    let slab = unsafe { &*s };
    assert_eq!(slab.state(), SlabState::Queued);
    let first = h.sweep_sparse(pool, u32::MAX, u32::MAX);
    assert_eq!((first.bytes, first.swept, first.pass_done), (0, 0, true));
    assert_eq!(slab.parked_pages(), 0);
    // The pages that no kept block overlaps (every block is carved).
    let page_of = |a: usize| (a - start) / os_pages::PAGE;
    let mut want = if pages == 64 {
        u64::MAX
    } else {
        (1u64 << pages) - 1
    };
    for &i in keep {
        let a = blocks[i].addr();
        for p in page_of(a)..=page_of(a + stride - 1) {
            want &= !(1 << p);
        }
    }
    let r = h.sweep_sparse(pool, u32::MAX, u32::MAX);
    assert_eq!(
        (r.bytes, r.swept),
        (want.count_ones() as usize * os_pages::PAGE, 1)
    );
    assert_eq!(pool.stats().bytes_parked.load(Relaxed), r.bytes as u64);
    assert_eq!(pool.stats().bytes_purged.load(Relaxed), r.bytes as u64);
    assert_eq!(slab.parked_pages(), want);
    assert_eq!(slab.used() as usize, keep.len(), "parked blocks are free");
    let res = resident(start, c.slab_bytes());
    for (p, &r) in res.iter().enumerate() {
        assert_eq!(r, want & (1 << p) == 0, "page {p} resident: {r}");
    }
    // Nothing changed since: a third pass sweeps nothing.
    let again = h.sweep_sparse(pool, u32::MAX, u32::MAX);
    assert_eq!((again.bytes, again.swept), (0, 0));
    for &i in keep {
        let b = blocks[i];
        check(b.to_user().addr(), 0, c.block_size(), pattern(b.addr()));
    }
    // Take everything again: each free block once, the parked ones when the list runs
    // out (their pages read zero but for what carving writes).
    let overlaps_parked =
        |a: usize| (page_of(a)..=page_of(a + stride - 1)).any(|p| want & (1 << p) != 0);
    let again = take(&mut h, pool, c, cap - keep.len());
    let mut seen = HashSet::new();
    let mut listed = 0;
    for (k, b) in again.iter().enumerate() {
        assert!(
            seen.insert(b.addr()),
            "block {:#x} handed out twice",
            b.addr()
        );
        assert!(!keep.iter().any(|&i| blocks[i] == *b));
        if overlaps_parked(b.addr()) {
            // A word on a parked page past what unparking writes (header and link).
            let p = (page_of(b.addr())..=page_of(b.addr() + stride - 1))
                .find(|&p| want & (1 << p) != 0)
                .unwrap();
            let a = (b.addr() + 32).max(start + p * os_pages::PAGE);
            assert!(a + 8 <= b.addr() + stride);
            // SAFETY: inside a block of our slab, just handed out: ours to read.
            let word = unsafe { (a as *const u64).read() };
            assert_eq!(word, 0, "a parked block's page was not given back");
        } else {
            assert_eq!(k, listed, "listed blocks first");
            listed += 1;
        }
    }
    assert!(
        core::ptr::eq(h.current(c), s),
        "every block came from the same slab"
    );
    assert_eq!(slab.used() as usize, cap);
    assert!(!slab.has_parked() && !slab.has_free());
    let kept: Vec<_> = keep.iter().map(|&i| blocks[i]).collect();
    give_back(&mut h, pool, &again);
    give_back(&mut h, pool, &kept);
    h.release_empty(pool);
    assert!(h.is_empty());
}

#[test]
fn sweeps_park_the_blocks_of_all_free_pages() {
    // 1 KiB blocks, four to a page: blocks 0 and 21, 22 keep pages 0 and 5.
    sweep_parks_all_free_pages::<Plain>(class_of(1024).unwrap(), &[0, 21, 22]);
    // 576 B blocks straddle pages: block 50 keeps page 7 only, and with it the blocks
    // wholly inside page 7 stay listed; blocks 49 and 56 straddle into parked pages.
    sweep_parks_all_free_pages::<Plain>(class_of(576).unwrap(), &[50]);
    // The last block ends inside the last page: 3 KiB blocks, one kept at each end.
    sweep_parks_all_free_pages::<Plain>(class_of(3000).unwrap(), &[0, 20]);
    sweep_parks_all_free_pages::<Guarded>(class_of(1024).unwrap(), &[0, 21, 22]);
    sweep_parks_all_free_pages::<Guarded>(class_of(576).unwrap(), &[50]);
}

#[test]
fn sweeps_pass_over_busy_dense_and_current_slabs() {
    let pool = pool(0);
    let mut h = heap::<Plain>(1);
    let c = class_of(1024).unwrap();
    let blocks = take(&mut h, pool, c, 64);
    let s = h.current(c);
    // A current slab, even an empty one, is never swept.
    give_back(&mut h, pool, &blocks[1..]);
    for _ in 0..3 {
        assert_eq!(h.sweep_sparse(pool, u32::MAX, u32::MAX).swept, 0);
    }
    // Queued, dense (a third of its blocks held): not swept either.
    let more = take(&mut h, pool, c, 20);
    // SAFETY: our current slab.
    unsafe { h.release_current(pool, s) };
    h.current.clear();
    for _ in 0..3 {
        assert_eq!(h.sweep_sparse(pool, u32::MAX, u32::MAX).swept, 0);
    }
    // Sparse, but a free between the two looks: not quiet yet.
    give_back(&mut h, pool, &more[..10]);
    assert_eq!(h.sweep_sparse(pool, u32::MAX, u32::MAX).swept, 0);
    give_back(&mut h, pool, &more[10..12]);
    assert_eq!(h.sweep_sparse(pool, u32::MAX, u32::MAX).swept, 0);
    let r = h.sweep_sparse(pool, u32::MAX, u32::MAX);
    assert_eq!(r.swept, 1);
    assert!(r.bytes > 0);
    // A bounded walk stops after the slab that uses it up; looks stop before the end.
    assert!(!h.sweep_sparse(pool, 1, u32::MAX).pass_done);
    give_back(&mut h, pool, &more[12..]);
    give_back(&mut h, pool, &blocks[..1]);
    h.release_empty(pool);
    assert!(h.is_empty());
}

// ---- 8. the block-start test ----

/// The block-start test's multiplier, for the stride of every class in both layouts: odd,
/// `e` in `1 ..= 2 × stride`, exact for every offset of a slab's span (every offset `r`
/// within a block maps at or above the limit, with or without `i × e` added, and no block
/// start does), and a block start plus a nonzero multiple of 2^47 maps above the limit.
#[test]
fn the_block_start_test_is_exact_for_every_class() {
    fn check(stride: usize, capacity: usize) {
        let mul = crate::segment::geometry(stride);
        assert_eq!(mul & 1, 1, "stride {stride}");
        let e = mul.wrapping_mul(stride as u64);
        assert!((1..=2 * stride as u64).contains(&e), "stride {stride}");
        let limit = capacity as u64 * e;
        let last = (capacity as u64 - 1) * e;
        for r in 1..stride as u64 {
            let lo = r.wrapping_mul(mul);
            assert!(lo >= limit, "stride {stride}, offset {r}");
            assert!(
                lo.checked_add(last).is_some(),
                "stride {stride}, offset {r} wraps"
            );
        }
        for i in [0, capacity as u64 - 1] {
            for h in [1u64, 2, 3, 1 << 8, 0x1_0000, 0x1_ffff] {
                let v = (i * stride as u64 + (h << 47)).wrapping_mul(mul);
                assert!(v >= limit, "stride {stride}, block {i} + {h} << 47");
            }
        }
    }
    for c in SizeClass::all() {
        check(Plain::stride(c), Plain::blocks_per_slab(c));
        check(Guarded::stride(c), Guarded::blocks_per_slab(c));
    }
}

#[test]
fn every_class_fits_the_used_count() {
    // A slab's used count has 16 bits, which a corrupted list's count (twice the blocks,
    // plus the owner's reference) must not overflow.
    for c in SizeClass::all() {
        assert!(
            Plain::blocks_per_slab(c) <= crate::segment::MAX_CAPACITY,
            "{c:?}"
        );
        assert!(
            Guarded::blocks_per_slab(c) <= crate::segment::MAX_CAPACITY,
            "{c:?}"
        );
    }
}
