//! Property-based fuzzing of `refill` against a model: random sequences of allocations
//! (pop, refill on a miss), frees (bounded push, spill on overflow), flushes and cap
//! changes over a source that hands out real blocks, sometimes fewer than asked. Checked
//! after every step: batch sizes, the cache's exact contents and order, block ownership
//! (each block in exactly one place) and the contents of every block the "program" holds.
//!
//! `PROPTEST_CASES` raises the number of cases for a longer run.

use core::ptr::NonNull;
use proptest::prelude::*;
use ptr_conversion::BlockBase;
use refill::{BlockSink, BlockSource, MAX_BATCH};
use std::collections::BTreeSet;
use tiny_layout::{Plain, SizeClass};
use tls_sll::FreeList;

const BLOCKS: usize = 256;

/// Cases per run: 256, or `PROPTEST_CASES` for a longer run.
fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256)
}

/// A source/sink owning `BLOCKS` real blocks of one class in a 16-aligned arena.
struct Source {
    mem: Vec<u128>,
    stride: usize,
    class: SizeClass,
    /// Blocks the source holds, as indices; handed out from the back.
    free: Vec<usize>,
    /// At most this many blocks per `take_blocks` (a stingy slab heap).
    stingy: u32,
    /// (asked, given) of the last `take_blocks`.
    last_take: Option<(u32, u32)>,
    returned: Vec<usize>,
}

impl Source {
    fn new(class: SizeClass, stingy: u32) -> Source {
        let stride = class.block_size();
        Source {
            mem: vec![0u128; BLOCKS * stride / 16],
            stride,
            class,
            free: (0..BLOCKS).rev().collect(),
            stingy,
            last_take: None,
            returned: Vec::new(),
        }
    }
    fn block(&mut self, i: usize) -> BlockBase<Plain> {
        let p = self
            .mem
            .as_mut_ptr()
            .cast::<u8>()
            .wrapping_add(i * self.stride);
        // SAFETY: block `i` of the arena: 16-aligned, `stride` bytes, Plain layout.
        unsafe { BlockBase::from_raw(NonNull::new(p).unwrap()) }
    }
    fn index(&self, b: BlockBase<Plain>) -> usize {
        let off = b.addr() - self.mem.as_ptr() as usize;
        assert_eq!(off % self.stride, 0, "not a block start");
        let i = off / self.stride;
        assert!(i < BLOCKS, "not a block of this source");
        i
    }
}

impl BlockSource<Plain> for Source {
    fn take_blocks(&mut self, c: SizeClass, max: u32, out: &mut FreeList<Plain>) -> u32 {
        assert_eq!(c, self.class);
        let mut n = 0;
        while n < max.min(self.stingy) {
            let Some(i) = self.free.pop() else { break };
            let b = self.block(i);
            // SAFETY: a block the source held: free and now the list's.
            unsafe { out.push(b) };
            n += 1;
        }
        self.last_take = Some((max, n));
        n
    }
}

impl BlockSink<Plain> for Source {
    fn return_block(&mut self, c: SizeClass, b: BlockBase<Plain>) {
        assert_eq!(c, self.class);
        let i = self.index(b);
        assert!(!self.free.contains(&i), "block {i} returned twice");
        self.free.push(i);
        self.returned.push(i);
    }
}

fn fill(b: BlockBase<Plain>, len: usize, tag: u8) {
    // SAFETY: the program holds the block, `len` <= its size.
    unsafe { core::ptr::write_bytes(b.to_user().as_ptr(), tag, len) };
}

fn intact(b: BlockBase<Plain>, len: usize, tag: u8) -> bool {
    // SAFETY: as in `fill`.
    let s = unsafe { core::slice::from_raw_parts(b.to_user().as_ptr(), len) };
    // Slice compares: fast even in an unoptimised test build.
    let want = [tag; 256];
    s.chunks(256).all(|c| c == &want[..c.len()])
}

#[derive(Clone, Debug)]
enum Op {
    Alloc,
    Free(usize),
    Flush,
    SetCap(u32),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => Just(Op::Alloc),
        5 => any::<usize>().prop_map(Op::Free),
        1 => Just(Op::Flush),
        1 => (0u32..200).prop_map(Op::SetCap),
    ]
}

/// Classes whose arenas stay small (blocks up to 4 KiB).
fn small_class() -> impl Strategy<Value = SizeClass> {
    (0usize..40).prop_map(|i| SizeClass::new(i).unwrap())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn refill_spill_flush_match_a_model(
        class in small_class(),
        stingy in prop_oneof![Just(u32::MAX), 1u32..20],
        ops in proptest::collection::vec(op(), 1..300),
    ) {
        let mut src = Source::new(class, stingy);
        let mut cache = FreeList::<Plain>::new(refill::cache_cap(class));
        let mut model: Vec<usize> = Vec::new(); // the cache, top = last
        let mut held: Vec<(usize, u8)> = Vec::new(); // the program's blocks and tags
        let len = class.block_size();
        for (step, o) in ops.into_iter().enumerate() {
            let tag = step as u8;
            match o {
                Op::Alloc => {
                    let b = match cache.pop() {
                        Some(b) => {
                            let want = model.pop();
                            prop_assert_eq!(Some(src.index(b)), want);
                            Some(b)
                        }
                        None => {
                            prop_assert!(model.is_empty());
                            let available = src.free.len() as u32;
                            // The source hands out from the back of `free`, in this order.
                            let upcoming: Vec<usize> = src.free.iter().rev().copied().collect();
                            src.last_take = None;
                            let got = refill::refill(&mut cache, class, &mut src);
                            let (asked, given) = src.last_take.expect("refill asks the source");
                            prop_assert_eq!(asked, refill::refill_batch(class));
                            prop_assert!((1..=MAX_BATCH).contains(&asked));
                            prop_assert_eq!(given, asked.min(available).min(stingy));
                            prop_assert_eq!(got.is_some(), given > 0);
                            prop_assert_eq!(cache.len(), given.saturating_sub(1));
                            if given > 0 {
                                // The last block pushed is the one popped for the caller;
                                // the rest stay cached, newest on top.
                                let g = given as usize;
                                prop_assert_eq!(got.map(|b| src.index(b)), Some(upcoming[g - 1]));
                                model = upcoming[..g - 1].to_vec();
                            }
                            got
                        }
                    };
                    if let Some(b) = b {
                        let i = src.index(b);
                        prop_assert!(!held.iter().any(|h| h.0 == i), "handed out twice");
                        prop_assert!(!src.free.contains(&i));
                        fill(b, len, tag);
                        held.push((i, tag));
                    } else {
                        prop_assert!(src.free.is_empty());
                    }
                }
                Op::Free(pick) => {
                    if held.is_empty() { continue; }
                    let (i, t) = held.swap_remove(pick % held.len());
                    let b = src.block(i);
                    prop_assert!(intact(b, len, t), "contents of block {} changed", i);
                    // SAFETY: the program gives the block back: free, ours, in no list.
                    match unsafe { cache.push_bounded(b) } {
                        Ok(()) => model.push(i),
                        Err(b) => {
                            let cap = cache.cap();
                            let before = cache.len();
                            src.returned.clear();
                            refill::spill(&mut cache, class, &mut src);
                            let keep = (cap / 2) as usize;
                            prop_assert_eq!(cache.len() as usize, keep.min(before as usize));
                            // The most recently cached blocks went back, newest first.
                            let spilled: Vec<usize> = model.drain(keep.min(model.len())..).rev().collect();
                            prop_assert_eq!(&src.returned, &spilled);
                            unsafe { cache.push(b) };
                            model.push(i);
                        }
                    }
                }
                Op::Flush => {
                    src.returned.clear();
                    refill::flush(&mut cache, class, &mut src);
                    prop_assert!(cache.is_empty());
                    let all: Vec<usize> = model.drain(..).rev().collect();
                    prop_assert_eq!(&src.returned, &all);
                }
                Op::SetCap(c) => cache.set_cap(c),
            }
            prop_assert_eq!(cache.len() as usize, model.len());
            // Refills, spills and flushes never touch the program's blocks.
            for &(i, t) in &held {
                prop_assert!(intact(src.block(i), len, t), "block {} changed while held", i);
            }
            // Conservation: every block is in exactly one place.
            let mut seen = BTreeSet::new();
            for &i in src.free.iter().chain(model.iter()).chain(held.iter().map(|h| &h.0)) {
                prop_assert!(seen.insert(i), "block {} in two places", i);
            }
            prop_assert_eq!(seen.len(), BLOCKS);
        }
    }
}

#[test]
fn caps_and_batches_hold_for_every_class() {
    for c in SizeClass::all() {
        let cap = refill::cache_cap(c);
        let batch = refill::refill_batch(c);
        assert!((1..=refill::MAX_CACHED).contains(&cap));
        assert!((1..=MAX_BATCH).contains(&batch) && batch <= cap);
        assert!(
            cap == 1
                || (cap == refill::MAX_CACHED && c.block_size() <= refill::SMALL_MAX)
                || cap as usize * c.block_size() <= refill::CACHE_BYTES_PER_CLASS
                || (cap == refill::MEDIUM_MIN_CACHED && c.block_size() <= refill::MEDIUM_MAX),
            "class {}",
            c.index()
        );
    }
}
