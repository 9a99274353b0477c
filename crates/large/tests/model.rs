//! Property-based fuzzing of `large` against a model: blocks of random sizes on both
//! sides of the shared-shard threshold (8 MiB), some aligned, some zeroed, allocated from
//! random shards, freed (by this thread or another), resized, with ticks across the age
//! limit and trims, in random order. Checked after every step: live blocks are aligned,
//! counted in the address map, never overlap, keep their contents and usable sizes, are
//! never reported as cached; zeroed blocks read zero; the cache stays within its byte
//! bound; the counters match the model (allocations, frees, live bytes); after a trim
//! nothing is cached, and at the end nothing is live.
//!
//! `PROPTEST_CASES` raises the number of cases for a longer run.

use large::{LargeHeap, SHARDS};
use os_pages::MmapPages;
use proptest::prelude::*;
use std::collections::BTreeMap;
use superslab::{AddressMap, Region};

/// Cases per run: 64, or `PROPTEST_CASES` for a longer run.
fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64)
}

static MAP: AddressMap = AddressMap::new();
/// The byte bound of the tiers under test.
const MAX_BYTES: usize = 48 << 20;
const PAGE: usize = 4096;

#[derive(Clone, Debug)]
enum Op {
    Alloc {
        shard: usize,
        size: usize,
        align_log: u32,
        zeroed: bool,
    },
    Free {
        k: usize,
        remote: bool,
    },
    Resize {
        k: usize,
        size: usize,
    },
    Tick(u64),
    Trim,
}

fn size() -> impl Strategy<Value = usize> {
    prop_oneof![
        6 => (256usize << 10)..(5 << 20),
        2 => (5usize << 20)..(12 << 20),
        1 => 1usize..(256 << 10),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    let align_log = prop_oneof![4 => Just(4u32), 1 => 4u32..17];
    prop_oneof![
        6 => (0usize..2 * SHARDS, size(), align_log, any::<bool>()).prop_map(
            |(shard, size, align_log, zeroed)| Op::Alloc { shard, size, align_log, zeroed }
        ),
        5 => (any::<usize>(), any::<bool>()).prop_map(|(k, remote)| Op::Free { k, remote }),
        1 => (any::<usize>(), size()).prop_map(|(k, size)| Op::Resize { k, size }),
        2 => (0u64..700).prop_map(Op::Tick),
        1 => Just(Op::Trim),
    ]
}

/// A live block: its requested size, alignment, the tag written to its sampled bytes,
/// and the least and most its user pointer can lie after the start of its range (its
/// header's 64 bytes, or the alignment: exactly, up to the page, as the range starts on
/// a page; at most the alignment above it).
struct Live {
    size: usize,
    align: usize,
    tag: u8,
    offset: (usize, usize),
}

/// Offsets of a block's sampled bytes: the first, the last, and two in between.
fn samples(size: usize) -> [usize; 4] {
    [0, size / 3, size / 2, size - 1]
}

fn fill(p: usize, size: usize, tag: u8) {
    for i in samples(size) {
        // SAFETY: `p` is a live block of at least `size` bytes held by the model.
        unsafe { ((p + i) as *mut u8).write(tag) };
    }
}

fn usable(heap: &LargeHeap<MmapPages>, p: usize) -> usize {
    // SAFETY: the model only asks about its live blocks.
    unsafe { heap.usable_size(p as *mut u8) }
}

fn check_all(heap: &LargeHeap<MmapPages>, live: &BTreeMap<usize, Live>) {
    let (mut end, mut lo, mut hi) = (0, 0, 0);
    for (&p, b) in live {
        assert_eq!(p % b.align.max(64), 0, "alignment");
        assert_eq!(MAP.region(p), Region::Large);
        let u = usable(heap, p);
        assert!(u >= b.size, "usable {u} < {}", b.size);
        assert!(p >= end, "blocks overlap at {p:#x}");
        end = p + u;
        lo += u + b.offset.0;
        hi += u + b.offset.1;
        assert!(
            !heap.in_cache(p as *mut u8),
            "a live block is reported cached"
        );
        for i in samples(b.size) {
            // SAFETY: `p` is live.
            assert_eq!(
                unsafe { *((p + i) as *const u8) },
                b.tag,
                "contents changed"
            );
        }
    }
    assert!(heap.cached_bytes() <= MAX_BYTES);
    let s = heap.stats();
    assert_eq!(s.allocs - s.frees, live.len() as u64);
    let bytes = s.bytes_live as usize;
    assert!(
        lo <= bytes && bytes <= hi,
        "live bytes {bytes} not in {lo}..={hi}"
    );
    assert!(s.bytes_peak >= s.bytes_live);
}

fn run(ops: &[Op]) {
    // A tier of its own per case (leaked: a tier is 'static, like the address map).
    let heap: &'static LargeHeap<MmapPages> =
        Box::leak(Box::new(LargeHeap::new(MmapPages, &MAP, MAX_BYTES, 1000)));
    let mut live: BTreeMap<usize, Live> = BTreeMap::new();
    let mut now = 0u64;
    let mut n = 0u8;
    for op in ops {
        match *op {
            Op::Alloc {
                shard,
                size,
                align_log,
                zeroed,
            } => {
                let align = 1usize << align_log;
                let p = heap.alloc_in(shard, size, align, zeroed, now) as usize;
                assert_ne!(p, 0);
                if zeroed {
                    for i in samples(size) {
                        // SAFETY: a fresh block of `size` bytes.
                        assert_eq!(unsafe { *((p + i) as *const u8) }, 0, "not zeroed");
                    }
                }
                n = n.wrapping_add(1);
                let tag = n | 1;
                fill(p, size, tag);
                let a = align.max(64);
                let offset = if a <= PAGE { (a, a) } else { (64, a) };
                live.insert(
                    p,
                    Live {
                        size,
                        align,
                        tag,
                        offset,
                    },
                );
            }
            Op::Free { k, remote } if !live.is_empty() => {
                let p = *live.keys().nth(k % live.len()).unwrap();
                live.remove(&p);
                let t = now;
                // SAFETY: live, and given up by the model.
                let free = move || assert!(unsafe { heap.free(p as *mut u8, t) });
                if remote {
                    std::thread::spawn(free).join().unwrap();
                } else {
                    free();
                }
            }
            Op::Resize { k, size } if !live.is_empty() => {
                let p = *live.keys().nth(k % live.len()).unwrap();
                // SAFETY: `p` is live; on success the model uses the result instead.
                let Some(q) = (unsafe { heap.resize(p as *mut u8, size) }) else {
                    continue;
                };
                let b = live.remove(&p).unwrap();
                let kept = b.size.min(size);
                for i in samples(b.size).into_iter().filter(|&i| i < kept) {
                    // SAFETY: `q` is live with at least `kept` bytes.
                    assert_eq!(unsafe { *(q.add(i)) }, b.tag, "resize lost contents");
                }
                fill(q as usize, size, b.tag);
                // The pages move whole: the offset in the range stays, the alignment
                // above the page need not.
                let align = b.align.min(PAGE);
                live.insert(q as usize, Live { size, align, ..b });
            }
            Op::Tick(dt) => {
                now += dt;
                heap.tick(now);
            }
            Op::Trim => {
                heap.trim();
                assert_eq!(heap.cached_bytes(), 0);
            }
            Op::Free { .. } | Op::Resize { .. } => {}
        }
        check_all(heap, &live);
    }
    for &p in live.keys() {
        // SAFETY: live.
        assert!(unsafe { heap.free(p as *mut u8, now) });
    }
    let s = heap.stats();
    assert_eq!(s.allocs, s.frees);
    assert_eq!(s.bytes_live, 0);
    heap.trim();
    assert_eq!(heap.cached_bytes(), 0);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn the_large_tier_matches_its_model(ops in prop::collection::vec(op(), 1..120)) {
        run(&ops);
    }
}
