//! hakmem as the `#[global_allocator]` of this test binary: every std allocation below,
//! including the test harness's own, goes through `HakMem`.

use hakmem::HakMem;
use std::alloc::{GlobalAlloc, Layout};
use std::collections::{BTreeMap, HashMap};
use std::sync::mpsc;

#[global_allocator]
static GLOBAL: HakMem = HakMem;

#[test]
fn std_collections_work() {
    let mut m = HashMap::new();
    for i in 0..100_000u64 {
        m.insert(i, i.to_string());
    }
    let mut b = BTreeMap::new();
    for (k, v) in &m {
        b.insert(v.clone(), *k);
    }
    assert_eq!(b.len(), 100_000);
    assert_eq!(m[&77_777], "77777");
    let v: Vec<Vec<u8>> = (0..2000).map(|i| vec![i as u8; i * 7]).collect();
    for (i, x) in v.iter().enumerate() {
        assert!(x.iter().all(|&b| b == i as u8));
    }
}

#[test]
fn every_layout_alignment_is_honoured() {
    for shift in 0..=21 {
        let align = 1usize << shift;
        for size in [1, 8, 16, 24, 100, 1000, 5000, 70_000, 300_000] {
            let l = Layout::from_size_align(size, align).unwrap();
            unsafe {
                let p = GLOBAL.alloc(l);
                assert!(!p.is_null());
                assert_eq!(p as usize % align, 0, "size {size} align {align}");
                if size >= 16 {
                    assert_eq!(p as usize % 16, 0);
                }
                p.write_bytes(0xAB, size);
                let z = GLOBAL.alloc_zeroed(l);
                assert_eq!(z as usize % align, 0);
                assert!(std::slice::from_raw_parts(z, size).iter().all(|&b| b == 0));
                let q = GLOBAL.realloc(p, l, size * 3);
                assert_eq!(q as usize % align, 0);
                assert!(std::slice::from_raw_parts(q, size)
                    .iter()
                    .all(|&b| b == 0xAB));
                GLOBAL.dealloc(q, Layout::from_size_align(size * 3, align).unwrap());
                GLOBAL.dealloc(z, l);
            }
        }
    }
}

#[test]
fn blocks_move_between_threads() {
    let (tx, rx) = mpsc::channel::<Vec<u32>>();
    let producers: Vec<_> = (0..4u32)
        .map(|t| {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for i in 0..20_000u32 {
                    let n = (i * 31 + t) as usize % 300 + 1;
                    tx.send(vec![t * 1_000_000 + i; n]).unwrap();
                }
            })
        })
        .collect();
    drop(tx);
    let consumer = std::thread::spawn(move || {
        let mut count = 0;
        for v in rx {
            let first = v[0];
            assert!(v.iter().all(|&x| x == first));
            count += 1;
        }
        count
    });
    for p in producers {
        p.join().unwrap();
    }
    assert_eq!(consumer.join().unwrap(), 80_000);
}

#[test]
fn statistics_count_allocations_frees_and_remote_frees() {
    let class = |s: &hakmem::Stats| {
        s.classes
            .iter()
            .find(|c| c.block_size == 112)
            .copied()
            .unwrap()
    };
    let before = class(&hakmem::stats());
    let boxes: Vec<Box<[u8; 100]>> = (0..5000).map(|_| Box::new([7u8; 100])).collect();
    let mid = class(&hakmem::stats());
    assert!(
        mid.allocs >= before.allocs + 5000,
        "allocs {} -> {}",
        before.allocs,
        mid.allocs
    );
    // Free them on another thread: remote frees.
    std::thread::spawn(move || drop(boxes)).join().unwrap();
    let after = class(&hakmem::stats());
    // The remote frees are counted exactly; the frees of the other tests' running threads
    // are read without a snapshot (each off by at most one slow path's moves, either way).
    assert!(
        after.frees + 1000 >= mid.frees + 5000,
        "frees {} -> {}",
        mid.frees,
        after.frees
    );
    assert!(after.remote_frees >= mid.remote_frees + 5000);
    assert!(after.cache_hits <= after.allocs);
    let s = hakmem::stats();
    assert!(s.heaps >= 2 && s.segments_peak >= 1 && s.bytes_mapped() > 0);
}

#[test]
fn statistics_read_while_threads_refill_and_spill_stay_sane() {
    // Another thread's counters are read without a snapshot: its slow paths move blocks
    // in and out of its lists between our loads. The frees derived from them must never
    // come out negative (which wrapped to ~2^64 and overflowed the sum).
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let stop = Arc::new(AtomicBool::new(false));
    let churners: Vec<_> = (0..2)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    // More blocks than any cache holds: refills on the way up, spills down.
                    let v: Vec<Box<[u8; 100]>> = (0..3000).map(|_| Box::new([1; 100])).collect();
                    drop(v);
                }
            })
        })
        .collect();
    for _ in 0..20_000 {
        let s = hakmem::stats();
        for c in &s.classes {
            assert!(
                c.frees < 1 << 48,
                "class {}: frees {}",
                c.block_size,
                c.frees
            );
        }
    }
    stop.store(true, Ordering::Relaxed);
    for c in churners {
        c.join().unwrap();
    }
}

#[test]
fn blocks_freed_by_another_thread_go_back_to_their_owner() {
    // Blocks freed on another thread travel in batches (`Heap::pend_remote`, then one CAS
    // per chain) back to the heap that allocated them, which hands them out again.
    let first: Vec<Box<[u8; 200]>> = (0..4000).map(|_| Box::new([1u8; 200])).collect();
    let addrs: std::collections::HashSet<usize> =
        first.iter().map(|b| &**b as *const _ as usize).collect();
    std::thread::spawn(move || drop(first)).join().unwrap();
    let again: Vec<Box<[u8; 200]>> = (0..4000).map(|_| Box::new([2u8; 200])).collect();
    let reused = again
        .iter()
        .filter(|b| addrs.contains(&(&***b as *const _ as usize)))
        .count();
    assert!(reused >= 3000, "only {reused} of 4000 blocks came back");
    assert!(again.iter().all(|b| b.iter().all(|&x| x == 2)));
}
