//! `trim` gives back what live threads hold but do not use: a thread that freed most of
//! its working set and then waits (alive, in no allocation call) keeps nothing resident
//! after another thread's `trim`, which reports what it gave back in the statistics. Its
//! own process, with hakmem called directly (not the global allocator).

use hakmem::HakMem;
use std::alloc::{GlobalAlloc, Layout};
use std::sync::mpsc;

const SIZE: usize = 256;
const BYTES: usize = 64 << 20;

#[test]
fn trim_gives_back_an_idle_live_threads_free_pages() {
    let layout = Layout::from_size_align(SIZE, 8).unwrap();
    let base = hakmem::stats().process_resident;
    let (built, wait_built) = mpsc::channel();
    let (done, wait_done) = mpsc::channel::<()>();
    let worker = std::thread::spawn(move || {
        // SAFETY: blocks of `layout`, written within it, each freed once but for one per
        // 4 MiB, which keeps its segment (and the segment's free slices) with this heap.
        let kept: Vec<usize> = unsafe {
            let all: Vec<*mut u8> = (0..BYTES / SIZE).map(|_| HakMem.alloc(layout)).collect();
            let mut kept = Vec::new();
            for (i, &p) in all.iter().enumerate() {
                p.write_bytes(7, SIZE);
                if i % ((4 << 20) / SIZE) == 0 {
                    kept.push(p as usize);
                } else {
                    HakMem.dealloc(p, layout);
                }
            }
            kept
        };
        built.send(()).unwrap();
        // Alive and idle until the main thread is done.
        wait_done.recv().unwrap();
        for p in kept {
            // SAFETY: allocated above with `layout`, freed once.
            unsafe { HakMem.dealloc(p as *mut u8, layout) };
        }
    });
    wait_built.recv().unwrap();
    let before = hakmem::stats();
    let released = hakmem::trim();
    let after = hakmem::stats();
    assert_eq!(after.trims, before.trims + 1);
    assert_eq!(after.bytes_trimmed, before.bytes_trimmed + released as u64);
    // What stays resident: the kept blocks' slabs, metadata, the test harness.
    let grew = after.process_resident.saturating_sub(base);
    assert!(
        grew < 16 << 20,
        "after trim the process holds {} MiB more than before the worker's {} MiB (trimmed {} MiB)",
        grew >> 20,
        BYTES >> 20,
        released >> 20
    );
    done.send(()).unwrap();
    worker.join().unwrap();
}
