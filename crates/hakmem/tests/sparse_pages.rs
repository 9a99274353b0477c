//! The size-drift case: a thread that frees most of its 1 KiB blocks at random and goes on
//! allocating blocks of another class gets the all-free pages of its sparse slabs back to
//! the OS (the sparse sweep of its slow paths), without a `trim`; the blocks it kept are
//! intact, the statistics stay exact, and allocating 1 KiB blocks again hands out the
//! parked blocks, each once. Its own process, with hakmem called directly (not the global
//! allocator).

use hakmem::HakMem;
use std::alloc::{GlobalAlloc, Layout};
use std::collections::HashSet;
use std::time::{Duration, Instant};

const SMALL: usize = 1024;
const OTHER: usize = 3000;
const BYTES: usize = 64 << 20;

fn class_counts(size: usize) -> (u64, u64) {
    let s = hakmem::stats();
    let c = s
        .classes
        .iter()
        .find(|c| c.block_size as usize >= size)
        .unwrap();
    (c.allocs, c.frees)
}

#[test]
fn sparse_slabs_give_back_their_free_pages() {
    let small = Layout::from_size_align(SMALL, 8).unwrap();
    let other = Layout::from_size_align(OTHER, 8).unwrap();
    let n = BYTES / SMALL;
    let (allocs0, frees0) = class_counts(SMALL);
    let all: Vec<usize> = (0..n)
        // SAFETY: a block of `small`, written within it.
        .map(|i| unsafe {
            let p = HakMem.alloc(small);
            p.write_bytes(i as u8, SMALL);
            p as usize
        })
        .collect();
    // Keep one block in ten, picked at random (a fixed LCG).
    let mut seed = 12345u64;
    let mut kept = Vec::new();
    for (i, &p) in all.iter().enumerate() {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        if (seed >> 33).is_multiple_of(10) {
            kept.push((i, p));
        } else {
            // SAFETY: allocated above with `small`, freed once.
            unsafe { HakMem.dealloc(p as *mut u8, small) };
        }
    }
    let before = hakmem::stats();
    // Another class's allocations make slow paths, for a few purge ticks (50 ms).
    let mut others = Vec::new();
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(400) {
        for _ in 0..64 {
            // SAFETY: a block of `other`, written within it.
            let p = unsafe { HakMem.alloc(other) };
            // SAFETY: as above.
            unsafe { p.write_bytes(1, OTHER) };
            others.push(p as usize);
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let after = hakmem::stats();
    // With one block in ten kept, about 0.9^4 of the pages of 4 blocks are all free.
    let purged = after.bytes_purged - before.bytes_purged;
    assert!(
        purged > (BYTES / 2) as u64,
        "purged {} MiB of the {} MiB freed",
        purged >> 20,
        (BYTES * 9 / 10) >> 20
    );
    for &(i, p) in &kept {
        // SAFETY: a kept block, written above.
        let s = unsafe { core::slice::from_raw_parts(p as *const u8, SMALL) };
        assert!(s.iter().all(|&b| b == i as u8), "kept block {i} changed");
    }
    let (allocs, frees) = class_counts(SMALL);
    assert_eq!(allocs - allocs0, n as u64);
    assert_eq!(frees - frees0, (n - kept.len()) as u64);
    // The freed blocks come back, each once (the parked ones re-initialised).
    let kept_set: HashSet<usize> = kept.iter().map(|&(_, p)| p).collect();
    let mut again = HashSet::new();
    for i in 0..n - kept.len() {
        // SAFETY: a block of `small`, written within it.
        let p = unsafe { HakMem.alloc(small) } as usize;
        assert!(
            !kept_set.contains(&p) && again.insert(p),
            "block {p:#x} handed out twice"
        );
        // SAFETY: as above.
        unsafe { (p as *mut u8).write_bytes(i as u8, SMALL) };
    }
    let (allocs, _) = class_counts(SMALL);
    assert_eq!(allocs - allocs0, (2 * n - kept.len()) as u64);
    for p in again.into_iter().chain(kept_set) {
        // SAFETY: allocated with `small`, freed once.
        unsafe { HakMem.dealloc(p as *mut u8, small) };
    }
    for p in others {
        // SAFETY: allocated with `other`, freed once.
        unsafe { HakMem.dealloc(p as *mut u8, other) };
    }
}
