//! Property-based fuzzing of `superslab` against a model: two owners (each a slab heap
//! with a current slab per class, one with an owner tag in the map, one without) over one
//! segment pool allocate blocks of random classes (popping, carving, setting full slabs
//! aside, moving on to the next slab, or carving single zeroed blocks), free them through
//! the record their map entry leads to or through a `RemoteQueue` filled by another
//! thread (block by block or as one chain; a visitor first taking back those of full
//! slabs with `adopt_remote`), give back their current slabs, close empty
//! slabs, purge, and sweep sparse slabs (parking the blocks of their all-free pages, which
//! come back when the slab has nothing else to give), in random order, in both layouts. Checked after every step: every
//! block handed out is unique, 16-aligned, in a published segment, in a live slab of the
//! right owner and class whose `block_containing` finds it; each slab's `used` equals the
//! blocks the model holds in it, and each heap's counts per class (blocks held, frees)
//! the model's; no held block lies on a parked page; current slabs are
//! current; map entries carry the owner's tag, the slab's record and its fullness;
//! contents survive; zeroed blocks read zero; and at the end every slab opened was closed.
//!
//! `PROPTEST_CASES` raises the number of cases for a longer run.

use core::ptr::NonNull;
use os_pages::MmapPages;
use proptest::prelude::*;
use proptest::test_runner::TestRunner;
use ptr_conversion::{BlockBase, BlockLayout};
use std::cell::Cell;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::Ordering;
use superslab::{
    AddressMap, OwnerTag, Region, RemoteQueue, Segment, SegmentPool, Slab, SlabHeap, SlabState,
    SEGMENT_SIZE,
};
use tiny_layout::{Guarded, Plain, SizeClass, CLASS_COUNT};

/// Cases per run: 128, or `PROPTEST_CASES` for a longer run.
fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(128)
}

// One map (each static map costs seconds of compile time), one pool per test function so
// their counters are exact.
static MAP: AddressMap = AddressMap::new();
static POOL_PLAIN: SegmentPool<MmapPages> = SegmentPool::new(MmapPages, &MAP, 2);
static POOL_GUARDED: SegmentPool<MmapPages> = SegmentPool::new(MmapPages, &MAP, 2);

#[derive(Clone, Debug)]
enum Op {
    Alloc {
        heap: usize,
        class: usize,
        n: u32,
    },
    AllocZeroed {
        heap: usize,
        class: usize,
    },
    Free(usize),
    FreeMany {
        pick: usize,
        n: usize,
    },
    Sweep {
        heap: usize,
        passes: u32,
    },
    /// Another thread frees `k` of the heap's blocks into a queue; with `adopt`, a
    /// visitor takes back those of full slabs first (`adopt_remote`), the owner the rest.
    RemoteReturn {
        heap: usize,
        k: usize,
        adopt: bool,
    },
    ReleaseCurrent(usize),
    CloseEmpty(usize),
    /// `close_empty`: aged ones only (a tick), or all.
    CloseEmptyAged {
        heap: usize,
        all: bool,
    },
    ReleaseEmpty(usize),
    Purge(usize),
}

fn op() -> impl Strategy<Value = Op> {
    // Classes of 16 B to 512 B, and of 512 B to 4 KiB (whose sparse slabs have all-free
    // pages to park), and any.
    let class = prop_oneof![3 => 0usize..24, 2 => 24usize..48, 1 => 0usize..CLASS_COUNT];
    prop_oneof![
        4 => (0usize..2, class.clone(), 1u32..64).prop_map(|(heap, class, n)| Op::Alloc { heap, class, n }),
        // Enough to use up a slab of 512 B - 4 KiB blocks, parked ones included.
        1 => (0usize..2, 24usize..48, 64u32..256).prop_map(|(heap, class, n)| Op::Alloc { heap, class, n }),
        1 => (0usize..2, class).prop_map(|(heap, class)| Op::AllocZeroed { heap, class }),
        6 => any::<usize>().prop_map(Op::Free),
        1 => (any::<usize>(), 1usize..64).prop_map(|(pick, n)| Op::FreeMany { pick, n }),
        2 => (0usize..2, 1u32..3).prop_map(|(heap, passes)| Op::Sweep { heap, passes }),
        2 => (0usize..2, 1usize..40, any::<bool>()).prop_map(|(heap, k, adopt)| Op::RemoteReturn { heap, k, adopt }),
        1 => (0usize..2).prop_map(Op::ReleaseCurrent),
        1 => (0usize..2).prop_map(Op::CloseEmpty),
        2 => (0usize..2, any::<bool>()).prop_map(|(heap, all)| Op::CloseEmptyAged { heap, all }),
        1 => (0usize..2).prop_map(Op::ReleaseEmpty),
        1 => (0usize..2).prop_map(Op::Purge),
    ]
}

/// An owner as the facade is one: a slab heap and a current slab per class.
struct Owner<L: BlockLayout> {
    h: SlabHeap<L>,
    current: [*mut Slab<L>; CLASS_COUNT],
    detached: *mut Slab<L>,
}

impl<L: BlockLayout> Owner<L> {
    fn new(token: usize, tag: Option<OwnerTag>) -> Self {
        let mut h = SlabHeap::new();
        h.set_owner(token);
        if let Some(t) = tag {
            h.set_map_tag(t);
        }
        let detached: *mut Slab<L> = Box::leak(Box::new(Slab::detached()));
        Owner {
            h,
            current: [detached; CLASS_COUNT],
            detached,
        }
    }

    /// malloc: pop, else carve a batch, else set the slab aside and take the next one.
    fn alloc(&mut self, pool: &SegmentPool<MmapPages>, c: SizeClass) -> BlockBase<L> {
        let mut s = self.current[c.index()];
        loop {
            // SAFETY: our current slab or the detached record.
            unsafe {
                if let Some(b) = (*s).pop() {
                    return b;
                }
                if self.h.carve(pool, s, (4096 / c.block_size()).max(4) as u32) > 0 {
                    continue;
                }
                self.h.set_full(pool, s);
            }
            s = self.h.next_slab(pool, c).expect("memory");
            self.current[c.index()] = s;
        }
    }

    /// calloc's slow path: a free block, else one carved for the caller (maybe zero).
    fn alloc_zeroed(
        &mut self,
        pool: &SegmentPool<MmapPages>,
        c: SizeClass,
    ) -> (BlockBase<L>, bool) {
        let mut s = self.current[c.index()];
        loop {
            // SAFETY: as above.
            unsafe {
                if let Some(b) = (*s).pop() {
                    return (b, false);
                }
                if let Some(r) = self.h.carve_one(pool, s) {
                    return r;
                }
                self.h.set_full(pool, s);
            }
            s = self.h.next_slab(pool, c).expect("memory");
            self.current[c.index()] = s;
        }
    }

    fn release_current(&mut self, pool: &SegmentPool<MmapPages>) {
        for s in self.current.iter_mut() {
            let s = core::mem::replace(s, self.detached);
            // SAFETY: our current slab or the detached record.
            unsafe { self.h.release_current(pool, s) };
        }
    }
}

/// A free by the owner, as the facade's: a block of a slab that is not full is pushed
/// onto its slab's list through the record its address leads to; a full one's takes the
/// slow path, which queues its slab again.
fn free<L: BlockLayout>(o: &mut Owner<L>, pool: &SegmentPool<MmapPages>, b: BlockBase<L>) {
    let a = b.addr();
    // SAFETY: a live block of this owner's slab.
    let slab = unsafe { Segment::<L>::slab_of(a) };
    if slab.state() == SlabState::Full {
        // SAFETY: as above.
        unsafe { o.h.free_block(pool, b) };
    } else {
        let record = slab as *const Slab<L> as usize;
        // SAFETY: as above: the record of `a`'s slab, which is ours and not full.
        let s = unsafe { Segment::<L>::slab_at(record) };
        // SAFETY: as above; an emptied slab goes back to its heap as the facade's would,
        // and a shrinking heap's empty current slabs are demoted.
        unsafe {
            if !(*s).push(b) {
                o.h.emptied(s);
                if o.h.began_shrinking() {
                    for cur in o.current.iter_mut() {
                        o.h.set_full(pool, core::mem::replace(cur, o.detached));
                    }
                }
            }
        }
    }
}

/// A block the model holds: owner heap, class, base, tag written to its user bytes.
struct Held<L: BlockLayout> {
    heap: usize,
    class: SizeClass,
    b: BlockBase<L>,
    tag: u8,
}

/// Bytes written and checked per block (all of small blocks, a sample of big ones).
fn check_len(c: SizeClass) -> usize {
    c.block_size().min(512)
}

fn fill<L: BlockLayout>(b: BlockBase<L>, c: SizeClass, tag: u8) {
    // SAFETY: the model holds the block; its user area has block_size bytes.
    unsafe { core::ptr::write_bytes(b.to_user().as_ptr(), tag, check_len(c)) };
}

fn reads<L: BlockLayout>(b: BlockBase<L>, len: usize, want: u8) -> bool {
    // SAFETY: as in `fill`.
    let s = unsafe { core::slice::from_raw_parts(b.to_user().as_ptr(), len) };
    s.iter().all(|&x| x == want)
}

/// Checks a block just handed out by heap `h` (token `h + 1`) for class `c`.
fn check_new<L: BlockLayout>(
    held: &[Held<L>],
    h: usize,
    c: SizeClass,
    b: BlockBase<L>,
) -> Result<(), TestCaseError> {
    let a = b.addr();
    prop_assert_eq!(b.to_user().addr() % 16, 0);
    prop_assert_eq!(MAP.region(a), Region::Segment);
    prop_assert!(
        !held.iter().any(|x| x.b == b),
        "block {:#x} handed out twice",
        a
    );
    // SAFETY: the map says `a` is in a live segment.
    let slab = unsafe { Segment::<L>::slab_of(a) };
    prop_assert!(slab.is_live());
    prop_assert_eq!(slab.owner(), h + 1);
    prop_assert_eq!(slab.class(), c);
    prop_assert_eq!(slab.block_containing(a), Some(b));
    prop_assert_eq!(slab.block_containing(a + L::stride(c) - 1), Some(b));
    prop_assert!(a >= slab.start() && a + L::stride(c) <= slab.start() + c.slab_bytes());
    Ok(())
}

/// Each current slab is live, of its class and owner, and current; each slab the model
/// holds blocks of has the map entry its owner's tag and state say.
fn check_states<L: BlockLayout>(
    owners: &[Owner<L>; 2],
    tags: [Option<OwnerTag>; 2],
    held: &[Held<L>],
) -> Result<(), TestCaseError> {
    for (h, o) in owners.iter().enumerate() {
        for (c, &s) in o.current.iter().enumerate() {
            if s != o.detached {
                // SAFETY: a current slab of ours is live.
                let s = unsafe { &*s };
                prop_assert_eq!(s.state(), SlabState::Current);
                prop_assert_eq!((s.owner(), s.class().index()), (h + 1, c));
            }
        }
    }
    for x in held {
        // SAFETY: a held block pins its slab.
        let slab = unsafe { Segment::<L>::slab_of(x.b.addr()) };
        prop_assert!(slab.state() != SlabState::Closed);
        let record = slab as *const Slab<L> as usize;
        let want = match tags[x.heap] {
            Some(t) => t.entry(record, slab.state() == SlabState::Full || slab.has_parked()),
            None => superslab::ENTRY_SEGMENT,
        };
        prop_assert_eq!(MAP.entry(x.b.addr()), want);
    }
    Ok(())
}

/// Each live slab's `used` equals the blocks the model holds in it, and no held block
/// overlaps one of its parked pages.
fn check_used<L: BlockLayout>(held: &[Held<L>]) -> Result<(), TestCaseError> {
    let mut per_slab: BTreeMap<usize, u32> = BTreeMap::new();
    for x in held {
        // SAFETY: a held block pins its slab and segment.
        let slab = unsafe { Segment::<L>::slab_of(x.b.addr()) };
        *per_slab.entry(slab.start()).or_default() += 1;
        let first = (x.b.addr() - slab.start()) / os_pages::PAGE;
        let last = (x.b.addr() + L::stride(x.class) - 1 - slab.start()) / os_pages::PAGE;
        // Slabs of more than 64 pages are never swept.
        for p in first..=last.min(63) {
            prop_assert!(
                slab.parked_pages() & (1 << p) == 0,
                "held block {:#x} on parked page {}",
                x.b.addr(),
                p
            );
        }
    }
    for (&start, &n) in &per_slab {
        // SAFETY: as above.
        let slab = unsafe { Segment::<L>::slab_of(start) };
        prop_assert_eq!(slab.used(), n, "slab at {:#x}", start);
        prop_assert!(slab.used() <= slab.capacity());
    }
    Ok(())
}

/// Per heap and class, the blocks held and the frees counted since the start
/// (`SlabHeap::for_each_count`) equal the model's.
fn check_counts<L: BlockLayout>(
    heaps: &[Owner<L>; 2],
    held: &[Held<L>],
    frees: &[[u64; CLASS_COUNT]; 2],
) -> Result<(), TestCaseError> {
    for (h, o) in heaps.iter().enumerate() {
        let (mut used, mut freed) = ([0u64; CLASS_COUNT], [0u64; CLASS_COUNT]);
        o.h.for_each_count(|c, u, f| {
            used[c.index()] += u as u64;
            freed[c.index()] += f;
        });
        let mut want = [0u64; CLASS_COUNT];
        for x in held.iter().filter(|x| x.heap == h) {
            want[x.class.index()] += 1;
        }
        prop_assert_eq!(used, want, "heap {}: blocks held per class", h);
        prop_assert_eq!(freed, frees[h], "heap {}: frees per class", h);
    }
    Ok(())
}

/// Runs one case; returns the bytes its sweeps parked.
fn run<L: BlockLayout>(
    pool: &'static SegmentPool<MmapPages>,
    ops: Vec<Op>,
) -> Result<usize, TestCaseError> {
    let st = pool.stats();
    let opened0 = st.slabs_opened.load(Ordering::Relaxed);
    let closed0 = st.slabs_closed.load(Ordering::Relaxed);
    // Heap 0 marks its slabs with a tag (as the facade's heaps), heap 1 does not.
    let tags = [OwnerTag::new(1), None];
    let mut heaps = [Owner::<L>::new(1, tags[0]), Owner::<L>::new(2, tags[1])];
    let mut held: Vec<Held<L>> = Vec::new();
    let mut frees = [[0u64; CLASS_COUNT]; 2];
    let mut parked = 0;
    for (step, o) in ops.into_iter().enumerate() {
        let tag = (step as u8) | 1;
        match o {
            Op::Alloc { heap, class, n } => {
                let c = SizeClass::new(class).unwrap();
                for _ in 0..n {
                    let b = heaps[heap].alloc(pool, c);
                    check_new(&held, heap, c, b)?;
                    fill(b, c, tag);
                    held.push(Held {
                        heap,
                        class: c,
                        b,
                        tag,
                    });
                }
            }
            Op::AllocZeroed { heap, class } => {
                let c = SizeClass::new(class).unwrap();
                let (b, zero) = heaps[heap].alloc_zeroed(pool, c);
                check_new(&held, heap, c, b)?;
                if zero {
                    prop_assert!(reads(b, c.block_size(), 0), "a zeroed block is not zero");
                }
                fill(b, c, tag);
                held.push(Held {
                    heap,
                    class: c,
                    b,
                    tag,
                });
            }
            Op::Free(pick) => {
                if held.is_empty() {
                    continue;
                }
                let x = held.swap_remove(pick % held.len());
                prop_assert!(reads(x.b, check_len(x.class), x.tag), "contents changed");
                free(&mut heaps[x.heap], pool, x.b);
                frees[x.heap][x.class.index()] += 1;
            }
            Op::FreeMany { pick, n } => {
                for i in 0..n.min(held.len()) {
                    let x = held.swap_remove(pick.wrapping_add(i) % held.len());
                    prop_assert!(reads(x.b, check_len(x.class), x.tag), "contents changed");
                    free(&mut heaps[x.heap], pool, x.b);
                    frees[x.heap][x.class.index()] += 1;
                }
            }
            Op::Sweep { heap, passes } => {
                // A first pass notes each slab's frees, a second one sweeps the quiet ones.
                for _ in 0..passes {
                    let r = heaps[heap].h.sweep_sparse(pool, u32::MAX, u32::MAX);
                    prop_assert!(r.pass_done);
                    parked += r.bytes;
                }
            }
            Op::RemoteReturn { heap, k, adopt } => {
                let mut mine: Vec<Held<L>> = Vec::new();
                let mut i = 0;
                while i < held.len() && mine.len() < k {
                    if held[i].heap == heap {
                        mine.push(held.swap_remove(i));
                    } else {
                        i += 1;
                    }
                }
                for x in &mine {
                    prop_assert!(reads(x.b, check_len(x.class), x.tag), "contents changed");
                    frees[heap][x.class.index()] += 1;
                }
                let queue = RemoteQueue::<L>::new();
                let addrs: Vec<usize> = mine.iter().map(|x| x.b.addr()).collect();
                // Odd k: one push per block; even k: one chain, one CAS (`push_chain`).
                let as_chain = k % 2 == 0;
                std::thread::scope(|s| {
                    let queue = &queue;
                    let addrs = &addrs;
                    s.spawn(move || {
                        let block = |a: usize| -> BlockBase<L> {
                            // SAFETY: a free block of `heap`, handed to this thread.
                            unsafe { BlockBase::from_raw(NonNull::new(a as *mut u8).unwrap()) }
                        };
                        if as_chain && !addrs.is_empty() {
                            for w in addrs.windows(2) {
                                // SAFETY: the blocks are free and this thread's until pushed.
                                unsafe { block(w[0]).set_link(Some(block(w[1]))) };
                            }
                            let (head, tail) = (block(addrs[0]), block(addrs[addrs.len() - 1]));
                            // SAFETY: head … tail are linked, free, handed over once.
                            unsafe { queue.push_chain(head, tail) };
                        } else {
                            for &a in addrs {
                                // SAFETY: handed over once.
                                unsafe { queue.push(block(a)) };
                            }
                        }
                    });
                });
                let mut back = BTreeSet::new();
                let mut n = 0;
                if adopt {
                    let of_full: Vec<usize> = addrs
                        .iter()
                        .copied()
                        // SAFETY: blocks of live slabs of `heap` (in the queue).
                        .filter(|&a| unsafe { Segment::<L>::slab_of(a) }.state() == SlabState::Full)
                        .collect();
                    let mut counted = 0;
                    // SAFETY: the heap's own queue; nothing else runs the heap.
                    let adopted = unsafe {
                        heaps[heap]
                            .h
                            .adopt_remote(pool, &queue, |_| true, |_| counted += 1)
                    };
                    prop_assert_eq!((adopted as usize, counted), (of_full.len(), of_full.len()));
                    // What is left (blocks of current and queued slabs) is not walked again.
                    // SAFETY: as above.
                    prop_assert_eq!(
                        unsafe { heaps[heap].h.adopt_remote(pool, &queue, |_| true, |_| ()) },
                        0
                    );
                    for a in of_full {
                        // SAFETY: a block the visitor put back on its slab: its slab is
                        // live (queued, or Empty if it was its last).
                        let s = unsafe { Segment::<L>::slab_of(a) };
                        prop_assert!(matches!(s.state(), SlabState::Queued | SlabState::Empty));
                        back.insert(a);
                    }
                    n += adopted;
                }
                n += queue.drain(
                    |_| true,
                    |b| {
                        back.insert(b.addr());
                        // SAFETY: the owner takes back its own block from the queue.
                        unsafe { heaps[heap].h.free_block(pool, b) };
                    },
                );
                prop_assert_eq!(n as usize, mine.len());
                prop_assert!(queue.is_empty());
                prop_assert_eq!(back, addrs.iter().copied().collect::<BTreeSet<_>>());
            }
            Op::ReleaseCurrent(h) => heaps[h].release_current(pool),
            Op::CloseEmpty(h) => heaps[h].h.close_empty_slabs(pool),
            Op::CloseEmptyAged { heap, all } => heaps[heap].h.close_empty(pool, all),
            Op::ReleaseEmpty(h) => heaps[h].h.release_empty(pool),
            Op::Purge(h) => {
                heaps[h].h.purge(pool, 0, 0);
            }
        }
        check_used(&held)?;
        check_counts(&heaps, &held, &frees)?;
        check_states(&heaps, tags, &held)?;
        for x in &held {
            // Blocks outside the heap are never written by it.
            prop_assert!(reads(x.b, check_len(x.class), x.tag), "contents changed");
        }
    }
    for x in held.drain(..) {
        free(&mut heaps[x.heap], pool, x.b);
    }
    for h in heaps.iter_mut() {
        h.release_current(pool);
        h.h.release_empty(pool);
        prop_assert!(h.h.is_empty(), "a heap with no block out keeps a segment");
    }
    prop_assert_eq!(
        st.slabs_opened.load(Ordering::Relaxed) - opened0,
        st.slabs_closed.load(Ordering::Relaxed) - closed0
    );
    prop_assert!(pool.cached() <= 2);
    Ok(parked)
}

/// Runs the model's cases in layout `L`; the sweeps of the cases must have parked pages.
fn run_cases<L: BlockLayout>(pool: &'static SegmentPool<MmapPages>) {
    let mut runner = TestRunner::new(ProptestConfig {
        cases: cases(),
        ..ProptestConfig::default()
    });
    let parked = Cell::new(0);
    let ops = proptest::collection::vec(op(), 1..120);
    if let Err(e) = runner.run(&ops, |ops| {
        parked.set(parked.get() + run::<L>(pool, ops)?);
        Ok(())
    }) {
        panic!("{e}");
    }
    assert!(parked.get() > 0, "no case parked a page");
}

#[test]
fn plain_slab_heaps_match_a_model() {
    run_cases::<Plain>(&POOL_PLAIN);
}

#[test]
fn guarded_slab_heaps_match_a_model() {
    run_cases::<Guarded>(&POOL_GUARDED);
}

#[test]
fn segments_are_aligned_and_published_until_unmapped() {
    static POOL: SegmentPool<MmapPages> = SegmentPool::new(MmapPages, &MAP, 0);
    let mut o = Owner::<Plain>::new(99, None);
    let c = SizeClass::new(10).unwrap();
    let b = o.alloc(&POOL, c);
    let seg = b.addr() & !(SEGMENT_SIZE - 1);
    assert_eq!(MAP.region(seg), Region::Segment);
    free(&mut o, &POOL, b);
    o.release_current(&POOL);
    o.h.release_empty(&POOL);
    assert!(o.h.is_empty());
    // A pool that caches nothing unmaps the segment and retracts it from the map.
    assert_eq!(MAP.region(seg), Region::Foreign);
    assert_eq!(POOL.cached(), 0);
}
