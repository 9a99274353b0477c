//! Short-lived threads do not grow the process's memory: hakmem as the
//! `#[global_allocator]` of a test binary of its own, so that the resident set it measures
//! is this test's alone (in a binary shared with other tests, their allocations while it
//! runs counted too, and made it fail now and then).

use hakmem::HakMem;

#[global_allocator]
static GLOBAL: HakMem = HakMem;

#[test]
fn short_lived_threads_do_not_grow_memory_without_bound() {
    // Warm up, then run many threads that each leave blocks for the main thread to free.
    let mut kept = Vec::new();
    for _ in 0..2 {
        for _ in 0..200 {
            kept.push(blocks_from_a_short_lived_thread());
        }
        kept.clear();
    }
    let rss_before = rss_kib();
    for _ in 0..1000 {
        kept.push(blocks_from_a_short_lived_thread());
        if kept.len() > 50 {
            kept.clear();
        }
    }
    let grown = rss_kib().saturating_sub(rss_before);
    assert!(
        grown < 64 * 1024,
        "RSS grew by {grown} KiB over 1000 threads"
    );
}

/// 64 blocks of 100..730 bytes, allocated by a thread that then exits: the caller frees
/// them (remote frees to an abandoned or adopted heap).
fn blocks_from_a_short_lived_thread() -> Vec<Vec<u8>> {
    std::thread::spawn(|| {
        (0..64)
            .map(|i| vec![i as u8; 100 + i * 10])
            .collect::<Vec<_>>()
    })
    .join()
    .unwrap()
}

fn rss_kib() -> usize {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap()
}
