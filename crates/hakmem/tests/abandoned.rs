//! What an exited thread leaves in its heap: the next thread to adopt the heap finds its
//! cache warm, and when no thread adopts it, its cache and free pages still go back:
//! at `trim` at once, and otherwise within a few purge delays of another thread's slow
//! paths. Its own process, with hakmem called directly (not the global allocator), so
//! that no other thread adopts the heap, and one test so that the phases run in order.

use hakmem::HakMem;
use std::alloc::{GlobalAlloc, Layout};
use std::time::{Duration, Instant};

#[derive(Clone, Copy)]
struct Block(*mut u8);
// SAFETY: a block handed to another thread to be freed there, nothing else.
unsafe impl Send for Block {}

const SIZE: usize = 512;

fn layout() -> Layout {
    Layout::from_size_align(SIZE, 8).unwrap()
}

fn refills(size: usize) -> u64 {
    hakmem::stats()
        .classes
        .iter()
        .find(|c| c.block_size as usize >= size)
        .unwrap()
        .refills
}

/// On a thread of its own, which then exits: allocates `n` blocks, keeps one per 4 MiB
/// (so that its segments stay mapped, their other slices free but resident) and frees
/// the rest. Returns the blocks it kept.
fn churn_and_exit(n: usize) -> Vec<Block> {
    // SAFETY: every block is allocated with `layout()`, written within it, and freed
    // once (here, or by the caller through `free_all`).
    std::thread::spawn(move || unsafe {
        let all: Vec<Block> = (0..n).map(|_| Block(HakMem.alloc(layout()))).collect();
        let mut kept = Vec::new();
        for (i, b) in all.into_iter().enumerate() {
            b.0.write_bytes(1, SIZE);
            if i % ((4 << 20) / SIZE) == 0 {
                kept.push(b);
            } else {
                HakMem.dealloc(b.0, layout());
            }
        }
        kept
    })
    .join()
    .unwrap()
}

fn free_all(blocks: Vec<Block>) {
    for b in blocks {
        // SAFETY: allocated with this layout, freed once.
        unsafe { HakMem.dealloc(b.0, layout()) };
    }
}

#[test]
fn an_exited_threads_heap_is_adopted_warm_or_given_back() {
    // This thread's own heap exists first, so that it never adopts the others'.
    let two_kib = Layout::from_size_align(2048, 8).unwrap();
    // SAFETY: allocated and freed with the same layout.
    unsafe { HakMem.dealloc(HakMem.alloc(two_kib), two_kib) };

    // 1. Adopted warm: a thread that frees 60 blocks and exits leaves them cached, and
    // the next thread (which adopts its heap) allocates them without a refill.
    let refills_before = refills(SIZE);
    // SAFETY: allocated and freed with the same layout, once.
    std::thread::spawn(|| unsafe {
        let v: Vec<Block> = (0..60).map(|_| Block(HakMem.alloc(layout()))).collect();
        v.iter().for_each(|b| HakMem.dealloc(b.0, layout()));
    })
    .join()
    .unwrap();
    let refills_first = refills(SIZE) - refills_before;
    assert!(refills_first >= 1);
    // SAFETY: allocated with `layout()`; `free_all` frees them once.
    let kept = std::thread::spawn(|| unsafe {
        (0..60)
            .map(|_| Block(HakMem.alloc(layout())))
            .collect::<Vec<_>>()
    })
    .join()
    .unwrap();
    assert_eq!(
        refills(SIZE) - refills_before,
        refills_first,
        "the adopting thread refilled: the exited thread's cache was not handed over"
    );
    free_all(kept);

    // 2. trim gives back what an abandoned heap holds, at once: by the time it returns,
    // most of the 32 MiB are purged (counted from before the thread ran, so that a purge
    // that a slow machine lets happen between the thread's exit and `trim` counts too).
    let before = hakmem::stats().bytes_purged;
    let kept = churn_and_exit(64 * 1024); // 32 MiB
    hakmem::trim();
    let purged = hakmem::stats().bytes_purged - before;
    assert!(
        purged >= 16 << 20,
        "{purged} bytes of an exited thread's 32 MiB purged when trim returned"
    );
    free_all(kept);

    // 3. Without trim: another thread's slow paths give it back within a few delays
    // (50 ms by default) of its exit.
    let kept = churn_and_exit(64 * 1024);
    let before = hakmem::stats().bytes_purged;
    let start = Instant::now();
    let mut purged = 0;
    while start.elapsed() < Duration::from_secs(10) && purged < 16 << 20 {
        // 40 blocks of 2 KiB (a cache of 16): spills and refills, i.e. slow paths.
        // SAFETY: allocated and freed with the same layout, once.
        unsafe {
            let v: Vec<Block> = (0..40).map(|_| Block(HakMem.alloc(two_kib))).collect();
            v.iter().for_each(|b| HakMem.dealloc(b.0, two_kib));
        }
        std::thread::sleep(Duration::from_millis(5));
        purged = hakmem::stats().bytes_purged - before;
    }
    assert!(
        purged >= 16 << 20,
        "10 s after an exited thread left 32 MiB free, {purged} bytes were purged"
    );
    free_all(kept);
}
