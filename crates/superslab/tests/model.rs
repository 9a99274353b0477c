//! Property-based fuzzing of `superslab` against a model: two owners' slab heaps over one
//! segment pool take blocks of random classes (batches and single zeroed blocks), give
//! them back directly or through a `RemoteQueue` filled by another thread (block by block
//! or as one chain), close empty slabs and purge, in random order, in both layouts.
//! Checked after every step: every block handed out is unique, 16-aligned, in a published
//! segment, in a live slab of the right owner and class whose `block_containing` finds
//! it; each slab's `used` equals the blocks the model holds in it; contents survive;
//! zeroed blocks read zero; and at the end every slab opened was closed.
//!
//! `PROPTEST_CASES` raises the number of cases for a longer run.

use core::ptr::NonNull;
use os_pages::MmapPages;
use proptest::prelude::*;
use ptr_conversion::{BlockBase, BlockLayout};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::Ordering;
use superslab::{AddressMap, Region, RemoteQueue, Segment, SegmentPool, SlabHeap, SEGMENT_SIZE};
use tiny_layout::{Guarded, Plain, SizeClass, CLASS_COUNT};
use tls_sll::FreeList;

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
    Take { heap: usize, class: usize, n: u32 },
    TakeZeroed { heap: usize, class: usize },
    Return(usize),
    RemoteReturn { heap: usize, k: usize },
    ReleaseEmpty(usize),
    Purge(usize),
}

fn op() -> impl Strategy<Value = Op> {
    let class = prop_oneof![3 => 0usize..24, 1 => 0usize..CLASS_COUNT];
    prop_oneof![
        4 => (0usize..2, class.clone(), 1u32..64).prop_map(|(heap, class, n)| Op::Take { heap, class, n }),
        1 => (0usize..2, class).prop_map(|(heap, class)| Op::TakeZeroed { heap, class }),
        6 => any::<usize>().prop_map(Op::Return),
        1 => (0usize..2, 1usize..40).prop_map(|(heap, k)| Op::RemoteReturn { heap, k }),
        1 => (0usize..2).prop_map(Op::ReleaseEmpty),
        1 => (0usize..2).prop_map(Op::Purge),
    ]
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

/// Each live slab's `used` equals the blocks the model holds in it.
fn check_used<L: BlockLayout>(held: &[Held<L>]) -> Result<(), TestCaseError> {
    let mut per_slab: BTreeMap<usize, u32> = BTreeMap::new();
    for x in held {
        // SAFETY: a held block pins its slab and segment.
        let slab = unsafe { Segment::<L>::slab_of(x.b.addr()) };
        *per_slab.entry(slab.start()).or_default() += 1;
    }
    for (&start, &n) in &per_slab {
        // SAFETY: as above.
        let slab = unsafe { Segment::<L>::slab_of(start) };
        prop_assert_eq!(slab.used(), n, "slab at {:#x}", start);
        prop_assert!(slab.used() <= slab.capacity());
    }
    Ok(())
}

fn run<L: BlockLayout>(
    pool: &'static SegmentPool<MmapPages>,
    ops: Vec<Op>,
) -> Result<(), TestCaseError> {
    let st = pool.stats();
    let opened0 = st.slabs_opened.load(Ordering::Relaxed);
    let closed0 = st.slabs_closed.load(Ordering::Relaxed);
    let mut heaps = [SlabHeap::<L>::new(), SlabHeap::<L>::new()];
    heaps[0].set_owner(1);
    heaps[1].set_owner(2);
    let mut held: Vec<Held<L>> = Vec::new();
    for (step, o) in ops.into_iter().enumerate() {
        let tag = (step as u8) | 1;
        match o {
            Op::Take { heap, class, n } => {
                let c = SizeClass::new(class).unwrap();
                let mut out = FreeList::<L>::new(u32::MAX);
                let got = heaps[heap].take_blocks(pool, c, n, &mut out);
                // Between 1 and n: a batch opens at most one new slab.
                prop_assert!(got >= 1 && got <= n, "{} of {}", got, n);
                prop_assert_eq!(out.len(), got);
                while let Some(b) = out.pop() {
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
            Op::TakeZeroed { heap, class } => {
                let c = SizeClass::new(class).unwrap();
                let (b, zero) = heaps[heap].take_block_zeroed(pool, c).expect("memory");
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
            Op::Return(pick) => {
                if held.is_empty() {
                    continue;
                }
                let x = held.swap_remove(pick % held.len());
                prop_assert!(reads(x.b, check_len(x.class), x.tag), "contents changed");
                // SAFETY: a block of this heap, handed out by it, free again.
                unsafe { heaps[x.heap].return_block(pool, x.b) };
            }
            Op::RemoteReturn { heap, k } => {
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
                let mut got = FreeList::<L>::new(u32::MAX);
                prop_assert_eq!(queue.take_all(&mut got) as usize, mine.len());
                prop_assert!(queue.is_empty());
                let mut back = BTreeSet::new();
                while let Some(b) = got.pop() {
                    back.insert(b.addr());
                    // SAFETY: the owner takes back its own block from the queue.
                    unsafe { heaps[heap].return_block(pool, b) };
                }
                prop_assert_eq!(back, addrs.iter().copied().collect::<BTreeSet<_>>());
            }
            Op::ReleaseEmpty(h) => heaps[h].release_empty(pool),
            Op::Purge(h) => {
                heaps[h].purge(pool, 0, 0);
            }
        }
        check_used(&held)?;
        for x in &held {
            // Blocks outside the heap are never written by it.
            prop_assert!(reads(x.b, check_len(x.class), x.tag), "contents changed");
        }
    }
    for x in held.drain(..) {
        // SAFETY: as in `Op::Return`.
        unsafe { heaps[x.heap].return_block(pool, x.b) };
    }
    for h in heaps.iter_mut() {
        h.release_empty(pool);
        prop_assert!(h.is_empty(), "a heap with no block out keeps a segment");
    }
    prop_assert_eq!(
        st.slabs_opened.load(Ordering::Relaxed) - opened0,
        st.slabs_closed.load(Ordering::Relaxed) - closed0
    );
    prop_assert!(pool.cached() <= 2);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn plain_slab_heaps_match_a_model(ops in proptest::collection::vec(op(), 1..120)) {
        run::<Plain>(&POOL_PLAIN, ops)?;
    }

    #[test]
    fn guarded_slab_heaps_match_a_model(ops in proptest::collection::vec(op(), 1..120)) {
        run::<Guarded>(&POOL_GUARDED, ops)?;
    }
}

#[test]
fn segments_are_aligned_and_published_until_unmapped() {
    static POOL: SegmentPool<MmapPages> = SegmentPool::new(MmapPages, &MAP, 0);
    let mut heap = SlabHeap::<Plain>::new();
    heap.set_owner(99);
    let c = SizeClass::new(10).unwrap();
    let mut out = FreeList::<Plain>::new(u32::MAX);
    assert_eq!(heap.take_blocks(&POOL, c, 1, &mut out), 1);
    let b = out.pop().unwrap();
    let seg = b.addr() & !(SEGMENT_SIZE - 1);
    assert_eq!(MAP.region(seg), Region::Segment);
    unsafe { heap.return_block(&POOL, b) };
    heap.release_empty(&POOL);
    assert!(heap.is_empty());
    // A pool that caches nothing unmaps the segment and retracts it from the map.
    assert_eq!(MAP.region(seg), Region::Foreign);
    assert_eq!(POOL.cached(), 0);
}
