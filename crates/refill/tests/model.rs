//! Property-based fuzzing of `refill` against a model source: slabs with free lists and
//! blocks left to carve, a queue of slabs with blocks, slabs set aside when exhausted and
//! queued again when one of their blocks is freed, and a source that sometimes cannot open
//! a new slab. Random allocations (pop from the current slab, `refill` when empty) and
//! frees (onto the block's own slab). Checked at every step: `refill` returns a slab with
//! a free block, never one set aside; it sets aside only exhausted slabs; carves stay
//! within `carve_batch`; it gives up (`None`) only when the source is out of memory; and
//! every block is in exactly one place.
//!
//! `PROPTEST_CASES` raises the number of cases for a longer run.

use proptest::prelude::*;
use refill::{carve_batch, SlabSource};
use std::collections::{BTreeSet, VecDeque};
use tiny_layout::SizeClass;

/// Cases per run: 256, or `PROPTEST_CASES` for a longer run.
fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256)
}

#[derive(Default)]
struct ModelSlab {
    free: Vec<u32>,
    uncarved: u32,
    next_block: u32,
    set_aside: bool,
}

struct Source {
    slabs: Vec<ModelSlab>,
    queue: VecDeque<usize>,
    capacity: u32,
    /// `next_slab` may open no new slab.
    out_of_memory: bool,
    class: SizeClass,
    /// What `refill` asked, for the checks.
    carves: Vec<(usize, u32, u32)>,
    asides: Vec<usize>,
}

impl SlabSource for Source {
    type Slab = usize;
    fn has_free(&self, s: usize) -> bool {
        !self.slabs[s].free.is_empty()
    }
    fn carve(&mut self, s: usize, max: u32) -> u32 {
        let slab = &mut self.slabs[s];
        let n = slab.uncarved.min(max);
        for _ in 0..n {
            slab.free.push(s as u32 * 10_000 + slab.next_block);
            slab.next_block += 1;
        }
        slab.uncarved -= n;
        self.carves.push((s, max, n));
        n
    }
    fn set_aside(&mut self, s: usize) {
        self.asides.push(s);
        self.slabs[s].set_aside = true;
    }
    fn next_slab(&mut self, c: SizeClass) -> Option<usize> {
        assert_eq!(c, self.class);
        if let Some(s) = self.queue.pop_front() {
            return Some(s);
        }
        if self.out_of_memory {
            return None;
        }
        self.slabs.push(ModelSlab {
            uncarved: self.capacity,
            ..ModelSlab::default()
        });
        Some(self.slabs.len() - 1)
    }
}

#[derive(Clone, Debug)]
enum Op {
    Alloc(u32),
    Free(usize),
    OutOfMemory(bool),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (1u32..300).prop_map(Op::Alloc),
        4 => any::<usize>().prop_map(Op::Free),
        1 => any::<bool>().prop_map(Op::OutOfMemory),
    ]
}

fn run(class: usize, capacity: u32, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let c = SizeClass::new(class).unwrap();
    let mut src = Source {
        slabs: vec![ModelSlab::default()], // slab 0: an exhausted stand-in, as `no_slab`
        queue: VecDeque::new(),
        capacity,
        out_of_memory: false,
        class: c,
        carves: Vec::new(),
        asides: Vec::new(),
    };
    let mut current = 0usize;
    let mut held: Vec<(usize, u32)> = Vec::new();
    for o in ops {
        match o {
            Op::Alloc(n) => {
                for _ in 0..n {
                    if let Some(b) = src.slabs[current].free.pop() {
                        held.push((current, b));
                        continue;
                    }
                    src.carves.clear();
                    src.asides.clear();
                    let had_free_slab = !src.queue.is_empty();
                    let got = refill::refill(&mut src, c, current);
                    for &(_, max, n) in &src.carves {
                        prop_assert!(max == carve_batch(c) && n <= max);
                    }
                    for &s in &src.asides {
                        let slab = &src.slabs[s];
                        prop_assert!(slab.free.is_empty() && slab.uncarved == 0);
                    }
                    match got {
                        Some(s) => {
                            prop_assert!(!src.slabs[s].set_aside, "returned a slab set aside");
                            prop_assert!(!src.slabs[s].free.is_empty());
                            current = s;
                            let b = src.slabs[s].free.pop().unwrap();
                            held.push((s, b));
                        }
                        None => {
                            prop_assert!(src.out_of_memory && !had_free_slab);
                            current = 0;
                            break;
                        }
                    }
                }
            }
            Op::Free(pick) => {
                if held.is_empty() {
                    continue;
                }
                let (s, b) = held.swap_remove(pick % held.len());
                src.slabs[s].free.push(b);
                // A slab set aside is queued again by its first free.
                if src.slabs[s].set_aside {
                    src.slabs[s].set_aside = false;
                    src.queue.push_back(s);
                }
            }
            Op::OutOfMemory(v) => src.out_of_memory = v,
        }
        // Every block is in exactly one place.
        let mut all = BTreeSet::new();
        for &(_, b) in &held {
            prop_assert!(all.insert(b), "block {} twice", b);
        }
        for slab in &src.slabs {
            for &b in &slab.free {
                prop_assert!(all.insert(b), "block {} twice", b);
            }
        }
        let carved: u32 = src.slabs.iter().map(|s| s.next_block).sum();
        prop_assert_eq!(all.len() as u32, carved);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn refill_matches_a_model(
        class in 0usize..tiny_layout::CLASS_COUNT,
        capacity in 1u32..600,
        ops in proptest::collection::vec(op(), 1..60),
    ) {
        run(class, capacity, ops)?;
    }
}
