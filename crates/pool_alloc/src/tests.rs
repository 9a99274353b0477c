use super::*;
use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet};
use std::vec::Vec;

/// Fills a block with a pattern derived from `tag`.
fn fill(p: NonNull<u8>, len: usize, tag: u64) {
    for i in 0..len {
        // SAFETY: `p` is a live block of at least `len` bytes.
        unsafe {
            p.as_ptr()
                .add(i)
                .write((tag as u8) ^ (i as u8).wrapping_mul(31))
        };
    }
}

fn check(p: NonNull<u8>, len: usize, tag: u64) {
    for i in 0..len {
        // SAFETY: as in `fill`.
        let got = unsafe { p.as_ptr().add(i).read() };
        assert_eq!(
            got,
            (tag as u8) ^ (i as u8).wrapping_mul(31),
            "byte {i} of {tag}"
        );
    }
}

#[test]
fn many_objects_keep_their_contents_and_are_aligned() {
    let mut pool = ObjectPool::new(&SEGMENTS, 40).unwrap();
    assert_eq!(pool.block_size(), 48);
    let n = 20_000;
    let mut ptrs = Vec::with_capacity(n);
    for i in 0..n {
        let p = pool.alloc().unwrap();
        assert_eq!(p.as_ptr() as usize % 16, 0);
        fill(p, 40, i as u64);
        ptrs.push(p);
    }
    let distinct: BTreeSet<usize> = ptrs.iter().map(|p| p.as_ptr() as usize).collect();
    assert_eq!(distinct.len(), n);
    assert_eq!(pool.live(), n);
    for (i, p) in ptrs.iter().enumerate() {
        check(*p, 40, i as u64);
    }
    // Free every other one, check the rest survived, then free the rest.
    for p in ptrs.iter().step_by(2) {
        assert!(unsafe { pool.free(*p) });
    }
    for (i, p) in ptrs.iter().enumerate().skip(1).step_by(2) {
        check(*p, 40, i as u64);
    }
    for p in ptrs.iter().skip(1).step_by(2) {
        assert!(unsafe { pool.free(*p) });
    }
    assert_eq!(pool.live(), 0);
}

static REUSE: SegmentPool<MmapPages> = SegmentPool::new(MmapPages, &MAP, 8);

#[test]
fn freed_blocks_are_reused() {
    // A segment pool of its own: with a shared one, a segment this pool empties may be
    // taken by another test's pool before this one needs it again.
    let mut pool = ObjectPool::new(&REUSE, 200).unwrap();
    let a = pool.alloc().unwrap();
    unsafe { pool.free(a) };
    assert_eq!(pool.alloc(), Some(a), "last freed, first reused");

    // A whole generation freed and allocated again reuses the same memory: the current
    // slab's blocks first (most recently freed first), then the other slabs', no new
    // segment.
    let first: Vec<NonNull<u8>> = (0..5000).map(|_| pool.alloc().unwrap()).collect();
    let before: BTreeSet<usize> = first.iter().map(|p| p.as_ptr() as usize).collect();
    for p in &first {
        unsafe { pool.free(*p) };
    }
    let mapped = REUSE.stats().segments_mapped.load(Ordering::Relaxed);
    let second: Vec<NonNull<u8>> = (0..5000).map(|_| pool.alloc().unwrap()).collect();
    assert_eq!(second[0], *first.last().unwrap());
    let after: BTreeSet<usize> = second.iter().map(|p| p.as_ptr() as usize).collect();
    let reused = before.intersection(&after).count();
    // Slabs may be closed and reopened in another order, so a few blocks of a partly
    // carved slab can differ; the memory is the same.
    assert!(
        reused * 10 >= 9 * before.len(),
        "{reused} of {} reused",
        before.len()
    );
    assert_eq!(
        REUSE.stats().segments_mapped.load(Ordering::Relaxed),
        mapped
    );
    for p in second.into_iter().chain([a]) {
        unsafe { pool.free(p) };
    }
}

#[test]
fn ownership_lookup_goes_through_the_address_map() {
    let mut mine = ObjectPool::new(&SEGMENTS, 64).unwrap();
    let mut other = ObjectPool::new(&SEGMENTS, 64).unwrap();
    let mut bigger = ObjectPool::new(&SEGMENTS, 4000).unwrap();
    let p = mine.alloc().unwrap();
    let q = other.alloc().unwrap();
    let r = bigger.alloc().unwrap();

    assert_eq!(MAP.region(p.as_ptr() as usize), Region::Segment);
    assert!(mine.owns(p.as_ptr()));
    assert!(!mine.owns(q.as_ptr()), "same class, other pool");
    assert!(!mine.owns(r.as_ptr()), "other pool, other class");
    assert!(!mine.owns(unsafe { p.as_ptr().add(8) }), "interior pointer");
    let on_heap = std::boxed::Box::new([0u8; 64]);
    assert_eq!(MAP.region(on_heap.as_ptr() as usize), Region::Foreign);
    assert!(!mine.owns(on_heap.as_ptr()));
    let on_stack = 0u64;
    assert!(!mine.owns((&on_stack as *const u64).cast()));
    assert!(!mine.owns(core::ptr::null()));

    // A free of a pointer that is not ours is refused and changes nothing.
    assert!(!unsafe { mine.free(q) });
    assert_eq!(mine.live(), 1);
    // A freed block is still one of ours (free blocks belong to the pool too).
    assert!(unsafe { mine.free(p) });
    assert!(mine.owns(p.as_ptr()));
    assert!(unsafe { other.free(q) });
    assert!(unsafe { bigger.free(r) });
}

#[test]
fn every_class_gives_aligned_distinct_blocks_of_enough_bytes() {
    for c in SizeClass::all().step_by(5) {
        let size = c.block_size() - 1;
        let mut pool = ObjectPool::new(&SEGMENTS, size).unwrap();
        assert_eq!(pool.class(), c);
        let ps: Vec<NonNull<u8>> = (0..20).map(|_| pool.alloc().unwrap()).collect();
        for (i, p) in ps.iter().enumerate() {
            assert_eq!(p.as_ptr() as usize % 16, 0);
            assert!(pool.owns(p.as_ptr()));
            fill(*p, size, i as u64);
        }
        for (i, p) in ps.iter().enumerate() {
            check(*p, size, i as u64);
            unsafe { pool.free(*p) };
        }
    }
    assert!(ObjectPool::new(&SEGMENTS, tiny_layout::MAX_CLASS_SIZE + 1).is_none());
}

// Segment pools of their own (for exact counts), sharing the crate's address map: each
// static AddressMap costs seconds of compile-time evaluation (64 MiB).
static QUIET: SegmentPool<MmapPages> = SegmentPool::new(MmapPages, &MAP, 8);

#[test]
fn dropping_an_empty_pool_returns_its_segments() {
    let mut pool = ObjectPool::new(&QUIET, 1000).unwrap();
    let ps: Vec<NonNull<u8>> = (0..3000).map(|_| pool.alloc().unwrap()).collect();
    let st = QUIET.stats();
    assert!(st.segments_mapped.load(Ordering::Relaxed) >= 1);
    for p in ps {
        unsafe { pool.free(p) };
    }
    drop(pool);
    assert_eq!(
        st.slabs_opened.load(Ordering::Relaxed),
        st.slabs_closed.load(Ordering::Relaxed)
    );
    let live_segments =
        st.segments_mapped.load(Ordering::Relaxed) - st.segments_unmapped.load(Ordering::Relaxed);
    assert_eq!(
        QUIET.cached() as u64,
        live_segments,
        "every segment back in the pool"
    );
    assert!(QUIET.trim() > 0);
    assert_eq!(QUIET.cached(), 0);
}

static REMOTE: SegmentPool<MmapPages> = SegmentPool::new(MmapPages, &MAP, 8);

#[test]
fn other_threads_free_through_the_remote_queue() {
    let queue = RemoteQueue::new();
    let mut pool = ObjectPool::new(&REMOTE, 96).unwrap();
    let n = 4000;
    let ptrs: Vec<usize> = (0..n)
        .map(|i| {
            let p = pool.alloc().unwrap();
            fill(p, 96, i as u64);
            p.as_ptr() as usize
        })
        .collect();
    std::thread::scope(|s| {
        for chunk in ptrs.chunks(n / 4) {
            let queue = &queue;
            s.spawn(move || {
                for &p in chunk {
                    let p = NonNull::new(p as *mut u8).unwrap();
                    // SAFETY: a live block of `pool`, which collects `queue`.
                    unsafe { free_remote(queue, p) };
                }
            });
        }
    });
    assert_eq!(pool.live(), n);
    let mapped = REMOTE.stats().segments_mapped.load(Ordering::Relaxed);
    assert_eq!(unsafe { pool.collect_remote(&queue) }, n as u32);
    assert_eq!(pool.live(), 0);
    assert!(queue.is_empty());
    // The blocks are reused: the new generation needs no new segment.
    let again: BTreeSet<usize> = (0..n)
        .map(|_| pool.alloc().unwrap().as_ptr() as usize)
        .collect();
    let before: BTreeSet<usize> = ptrs.iter().copied().collect();
    let reused = again.intersection(&before).count();
    assert!(reused * 10 >= 9 * n, "{reused} of {n} reused");
    assert_eq!(
        REMOTE.stats().segments_mapped.load(Ordering::Relaxed),
        mapped
    );
    for p in again {
        unsafe { pool.free(NonNull::new(p as *mut u8).unwrap()) };
    }
}

/// Cases per run: 256, or `PROPTEST_CASES` for a longer run.
fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    /// Random alloc/free sequences against a model: contents, counts and ownership.
    #[test]
    fn random_sequences_match_a_model(
        size in 0usize..3000,
        ops in proptest::collection::vec((any::<bool>(), any::<u16>()), 1..400),
    ) {
        let mut pool = ObjectPool::new(&SEGMENTS, size).unwrap();
        let mut live: BTreeMap<usize, u64> = BTreeMap::new();
        let mut just_freed: Option<usize> = None;
        // The slab of the last block allocated: the pool's current slab.
        let mut current_slab = 0;
        // SAFETY: only called with addresses of live blocks the pool handed out.
        let slab_of = |a: usize| unsafe { Segment::<Plain>::slab_of(a) }.start();
        let len = size.min(64);
        for (tag, (is_alloc, pick)) in ops.into_iter().enumerate() {
            if is_alloc || live.is_empty() {
                let p = pool.alloc().unwrap();
                let a = p.as_ptr() as usize;
                prop_assert!(!live.contains_key(&a), "handed out twice");
                prop_assert!(pool.owns(p.as_ptr()));
                // A block just freed into the current slab is the next one out.
                if let Some(f) = just_freed.take() {
                    if slab_of(f) == current_slab {
                        prop_assert_eq!(a, f, "the block just freed is reused first");
                    }
                }
                current_slab = slab_of(a);
                fill(p, len, tag as u64);
                live.insert(a, tag as u64);
            } else {
                let a = *live.keys().nth(pick as usize % live.len()).unwrap();
                let t = live.remove(&a).unwrap();
                let p = NonNull::new(a as *mut u8).unwrap();
                check(p, len, t);
                let ok = unsafe { pool.free(p) };
                prop_assert!(ok);
                just_freed = Some(a);
            }
            prop_assert_eq!(pool.live(), live.len());
        }
        for (a, t) in live {
            let p = NonNull::new(a as *mut u8).unwrap();
            check(p, len, t);
            let ok = unsafe { pool.free(p) };
                prop_assert!(ok);
        }
        prop_assert_eq!(pool.live(), 0);
    }
}
