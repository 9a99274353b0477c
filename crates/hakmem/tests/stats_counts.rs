//! The statistics count every allocation and free exactly, though the fast paths count
//! nothing but a slab's frees (allocations are frees plus the blocks held, see `stats`):
//! alternating pairs, batches that move from slab to slab, remote frees, `calloc` from
//! fresh slab pages, blocks still live, and a thread exit that leaves its current slabs to
//! the next thread.
//! Its own process, with hakmem called directly (not the global allocator), so that
//! nothing else allocates from hakmem while it counts.

use hakmem::{ClassStats, HakMem};
use std::alloc::{GlobalAlloc, Layout};

fn class_of(stats: &hakmem::Stats, size: usize) -> ClassStats {
    *stats
        .classes
        .iter()
        .find(|c| c.block_size as usize >= size)
        .unwrap()
}

#[derive(Clone, Copy)]
struct Block(*mut u8);
// SAFETY: a block handed to another thread to be freed there, nothing else.
unsafe impl Send for Block {}

#[test]
fn every_allocation_and_free_is_counted_exactly() {
    const SIZE: usize = 1400; // 46 blocks a slab: batches of 500 fill several slabs
    const BIG: usize = 20 * 1024; // calloc of this size takes blocks straight from slabs
    let small = Layout::from_size_align(SIZE, 8).unwrap();
    let big = Layout::from_size_align(BIG, 8).unwrap();
    let before = hakmem::stats();

    let live = std::thread::spawn(move || unsafe {
        for _ in 0..10_000 {
            let p = HakMem.alloc(small);
            p.write(1);
            HakMem.dealloc(p, small);
        }
        for _ in 0..10 {
            let v: Vec<*mut u8> = (0..500).map(|_| HakMem.alloc(small)).collect();
            v.iter().rev().for_each(|&p| HakMem.dealloc(p, small));
        }
        for _ in 0..50 {
            let p = HakMem.alloc_zeroed(big);
            assert_eq!(p.read(), 0);
            HakMem.dealloc(p, big);
        }
        let live: Vec<Block> = (0..100).map(|_| Block(HakMem.alloc(small))).collect();
        let remote: Vec<Block> = (0..300).map(|_| Block(HakMem.alloc(small))).collect();
        // Remote frees, from a thread that never allocated, while this one (the owner)
        // lives: once it has exited, a new thread may adopt its heap and free them as
        // its own.
        std::thread::spawn(move || {
            for b in remote {
                // SAFETY: allocated above with this layout, freed once.
                HakMem.dealloc(b.0, small);
            }
        })
        .join()
        .unwrap();
        live
    })
    .join()
    .unwrap();

    let after = hakmem::stats();
    let (s0, s1) = (class_of(&before, SIZE), class_of(&after, SIZE));
    assert_eq!(s1.allocs - s0.allocs, 10_000 + 5_000 + 100 + 300);
    assert_eq!(s1.frees - s0.frees, 10_000 + 5_000 + 300);
    assert_eq!(s1.remote_frees - s0.remote_frees, 300);
    assert!(s1.refills > s0.refills && s1.misses >= s1.refills);
    assert_eq!(
        s1.cache_hits - s0.cache_hits,
        s1.allocs - s0.allocs - (s1.misses - s0.misses)
    );
    let (b0, b1) = (class_of(&before, BIG), class_of(&after, BIG));
    assert_eq!((b1.allocs - b0.allocs, b1.frees - b0.frees), (50, 50));
    assert_eq!(
        after.bytes_in_use() - before.bytes_in_use(),
        100 * s1.block_size
    );
    for b in live {
        // SAFETY: allocated above with this layout, freed once.
        unsafe { HakMem.dealloc(b.0, small) };
    }
    let end = class_of(&hakmem::stats(), SIZE);
    assert_eq!(end.frees - s1.frees, 100);
}
