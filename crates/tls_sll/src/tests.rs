extern crate std;
use super::*;
use core::ptr::NonNull;
use proptest::prelude::*;
use ptr_conversion::Header;
use std::vec::Vec;
use tiny_layout::{Guarded, Plain};

/// 64 test blocks of 32 bytes, 16-aligned.
#[repr(align(16))]
struct Arena([u8; 64 * 32]);

fn block<L: BlockLayout>(a: &mut Arena, i: usize) -> BlockBase<L> {
    // SAFETY: block i of the arena, 32 bytes, 16-aligned.
    unsafe { BlockBase::from_raw(NonNull::new(a.0.as_mut_ptr().add(i * 32)).unwrap()) }
}

#[test]
fn push_pop_is_lifo_and_counts() {
    let mut a = Arena([0; 64 * 32]);
    let mut l = FreeList::<Plain>::new(3);
    for i in 0..3 {
        unsafe { l.push_bounded(block(&mut a, i)).unwrap() };
    }
    assert!(
        unsafe { l.push_bounded(block(&mut a, 3)) }.is_err(),
        "cap respected"
    );
    assert_eq!((l.len(), l.pushes()), (3, 3));
    for i in (0..3).rev() {
        assert_eq!(l.pop(), Some(block(&mut a, i)));
    }
    assert_eq!(l.pop(), None);
    assert!(l.is_empty());
}

#[test]
fn a_keyed_stack_stores_each_link_xored_with_its_key() {
    let mut a = Arena([0; 64 * 32]);
    let key = 0x5a5a_1234_9876_f00d;
    let mut s = Stack::<Plain, true>::with_key(key);
    let blocks: Vec<BlockBase<Plain>> = (0..4).map(|i| block(&mut a, i)).collect();
    for &b in &blocks {
        // SAFETY: free blocks of the test's arena, each pushed once.
        unsafe { s.push(b) };
    }
    // Top first: 3 -> 2 -> 1 -> 0 -> end; each word is the next address XOR the key.
    for i in (0..4).rev() {
        let next = if i == 0 { 0 } else { blocks[i - 1].addr() };
        // SAFETY: the arena's memory.
        let raw = unsafe { blocks[i].as_ptr().cast::<usize>().read() };
        assert_eq!(raw, next ^ key, "block {i}");
        // SAFETY: as above.
        assert!(unsafe { blocks[i].is_marked_free(key) });
        assert_eq!(s.key(), key);
    }
    assert!(s.iter().eq(blocks.iter().rev().copied()));
    // A stack of another key reads the same words as other addresses.
    let other = Stack::<Plain, true>::with_key(key ^ 0x10);
    // SAFETY: reads the arena's memory only.
    assert_eq!(
        unsafe { other.next_of(blocks[3]) }.map(|b| b.addr()),
        Some(blocks[2].addr() ^ 0x10)
    );
    s.retain(|b| b != blocks[2]);
    assert!(s.iter().eq([blocks[3], blocks[1], blocks[0]]));
    assert_eq!(s.pop(), Some(blocks[3]));
    assert_eq!(s.pop(), Some(blocks[1]));
    // Checked layouts ignore the key (their links check themselves).
    let mut g = Stack::<Guarded, true>::with_key(key);
    let (x, y) = (block::<Guarded>(&mut a, 8), block::<Guarded>(&mut a, 12));
    // SAFETY: as above.
    unsafe {
        g.push(x);
        g.push(y);
        assert_eq!(y.link(), Some(x));
    }
    assert_eq!((g.pop(), g.pop(), g.pop()), (Some(y), Some(x), None));
}

#[test]
fn caps_can_change_under_a_full_list() {
    let mut a = Arena([0; 64 * 32]);
    let mut l = FreeList::<Plain>::new(4);
    for i in 0..6 {
        // Unbounded pushes overfill the list (a refill batch does).
        unsafe { l.push(block(&mut a, i)) };
    }
    assert_eq!((l.len(), l.cap()), (6, 4));
    assert!(unsafe { l.push_bounded(block(&mut a, 6)) }.is_err());
    l.set_cap(2);
    assert_eq!((l.len(), l.cap()), (6, 2));
    let chain = l.take(5).unwrap();
    assert_eq!((chain.len(), l.len()), (5, 1));
    unsafe { l.push_bounded(block(&mut a, 7)).unwrap() };
    assert!(unsafe { l.push_bounded(block(&mut a, 8)) }.is_err());
    l.set_cap(10);
    l.push_chain(chain);
    assert_eq!(l.len(), 7);
    for _ in 0..3 {
        unsafe { l.push_bounded(block(&mut a, 9)).unwrap() };
        l.pop();
    }
    assert_eq!(l.len(), 7);
    // Caps above MAX_CAP are lowered to it.
    let huge = FreeList::<Plain>::new(u32::MAX);
    assert_eq!((huge.cap(), huge.len()), (FreeList::<Plain>::MAX_CAP, 0));
}

#[test]
fn take_and_splice_move_runs() {
    let mut a = Arena([0; 64 * 32]);
    let mut l = FreeList::<Guarded>::new(100);
    for i in 0..10 {
        unsafe { l.push(block(&mut a, i)) };
    }
    let c = l.take(4).unwrap();
    assert_eq!((c.len(), l.len()), (4, 6));
    let mut other = FreeList::<Guarded>::new(100);
    unsafe { other.push(block(&mut a, 20)) };
    other.push_chain(c);
    assert_eq!(other.len(), 5);
    let order: Vec<_> = core::iter::from_fn(|| other.pop()).collect();
    let expect: Vec<_> = [9, 8, 7, 6, 20]
        .iter()
        .map(|&i| block::<Guarded>(&mut a, i))
        .collect();
    assert_eq!(order, expect);
    let all = l.take_all().unwrap();
    assert_eq!(all.len(), 6);
    assert!(l.is_empty() && l.is_empty());
    let (first, rest) = all.split_first();
    assert_eq!(first, block(&mut a, 5));
    assert_eq!(rest.unwrap().len(), 5);
}

// ---- property test against a model ----
//
// Three lists (those of three classes of a `ClassLists`), detached chains and a "program"
// move 48 real blocks around at random. After every step the model checks: each list's
// exact contents and order (walked through the links) and its count; each chain's blocks,
// tail and count; that every block is in exactly one place (free pool, program, a list or
// a chain: ownership); and contents: blocks the program holds keep every byte written
// through them, blocks in lists and chains every byte but their link.

/// Blocks in the model's arena and their stride (a 16-byte header and 48 user bytes in
/// the guarded layout).
const BLOCKS: usize = 48;
const STRIDE: usize = 64;
const LISTS: usize = 3;
/// The classes whose lists the model uses: the first, the second and the last.
const CLASSES: [usize; LISTS] = [0, 1, tiny_layout::CLASS_COUNT - 1];

#[repr(align(16))]
struct Blocks([u8; BLOCKS * STRIDE]);

/// Found by the model: `take(0)` detached one block (a chain is never empty, and the loop
/// started at one).
#[test]
fn take_zero_takes_nothing() {
    let mut a = Arena([0; 64 * 32]);
    let mut l = FreeList::<Plain>::new(8);
    assert!(l.take(0).is_none());
    unsafe { l.push(block(&mut a, 0)) };
    assert!(l.take(0).is_none());
    assert_eq!(l.len(), 1);
    assert_eq!(l.take(1).map(|c| c.len()), Some(1));
    assert!(l.is_empty());
}

#[derive(Debug, Clone)]
enum Op {
    /// The program takes a block from the free pool and writes through it.
    Alloc,
    /// The program frees one of its blocks into a list (bounded: respecting the cap).
    Push {
        pick: usize,
        list: usize,
        bounded: bool,
    },
    Pop(usize),
    Take {
        list: usize,
        n: u32,
    },
    TakeAll(usize),
    /// Splices a detached chain into a list.
    Splice {
        chain: usize,
        list: usize,
    },
    /// Splits a chain's first block off into the program's hands.
    SplitFirst(usize),
    SetCap {
        list: usize,
        cap: u32,
    },
    /// The program gives a block back to the free pool.
    Release(usize),
}

fn op() -> impl Strategy<Value = Op> {
    let list = 0..LISTS;
    prop_oneof![
        4 => Just(Op::Alloc),
        6 => (any::<usize>(), list.clone(), any::<bool>())
            .prop_map(|(pick, list, bounded)| Op::Push { pick, list, bounded }),
        4 => list.clone().prop_map(Op::Pop),
        2 => (list.clone(), 0u32..10).prop_map(|(list, n)| Op::Take { list, n }),
        1 => list.clone().prop_map(Op::TakeAll),
        2 => (any::<usize>(), list.clone()).prop_map(|(chain, list)| Op::Splice { chain, list }),
        2 => any::<usize>().prop_map(Op::SplitFirst),
        1 => (list, 0u32..12).prop_map(|(list, cap)| Op::SetCap { list, cap }),
        1 => any::<usize>().prop_map(Op::Release),
    ]
}

/// Where a block is: the model's answer to "who owns it".
#[derive(Clone, Copy, Debug, PartialEq)]
enum Place {
    Pool,
    Program,
    List(usize),
    Chain,
}

struct Model<L: BlockLayout> {
    mem: std::boxed::Box<Blocks>,
    lists: ClassLists<L>,
    /// Each list's blocks, bottom first (the head is the last).
    want: [Vec<usize>; LISTS],
    /// Detached chains with their blocks, head first.
    chains: Vec<(Chain<L>, Vec<usize>)>,
    program: Vec<usize>,
    pool: Vec<usize>,
    /// The byte written through each block when the program last held it.
    tag: [u8; BLOCKS],
}

impl<L: BlockLayout> Model<L> {
    fn new() -> Self {
        Model {
            mem: std::boxed::Box::new(Blocks([0; BLOCKS * STRIDE])),
            lists: ClassLists::new(),
            want: Default::default(),
            chains: Vec::new(),
            program: Vec::new(),
            pool: (0..BLOCKS).rev().collect(),
            tag: [0; BLOCKS],
        }
    }
    fn list(&mut self, i: usize) -> &mut FreeList<L> {
        self.lists.get(SizeClass::new(CLASSES[i]).unwrap())
    }
    fn block(&mut self, i: usize) -> BlockBase<L> {
        // SAFETY: block i of the arena: 16-aligned, STRIDE bytes.
        unsafe {
            BlockBase::from_raw(NonNull::new(self.mem.0.as_mut_ptr().add(i * STRIDE)).unwrap())
        }
    }
    fn index(&self, b: BlockBase<L>) -> usize {
        let off = b.addr() - self.mem.0.as_ptr() as usize;
        assert!(
            off.is_multiple_of(STRIDE) && off / STRIDE < BLOCKS,
            "{:#x} is not a block",
            b.addr()
        );
        off / STRIDE
    }
    /// The link's bytes within a block: left alone by the content check of free blocks
    /// (checked layouts: the header's check word, then the encoded link).
    fn link_bytes() -> core::ops::Range<usize> {
        if L::CHECKED {
            Header::CHECK_OFFSET..L::LINK_OFFSET + 8
        } else {
            // The encoded link (and the word after it, a free mark's place).
            L::LINK_OFFSET..L::LINK_OFFSET + 16
        }
    }
    fn bytes(&self, i: usize) -> &[u8] {
        &self.mem.0[i * STRIDE..(i + 1) * STRIDE]
    }
    /// The program writes through block `i`.
    fn write(&mut self, i: usize, tag: u8) {
        self.tag[i] = tag;
        self.mem.0[i * STRIDE..(i + 1) * STRIDE].fill(tag);
    }
    /// The block's bytes are as the program left them (but the link, if it is free).
    fn intact(&self, i: usize, free: bool) -> bool {
        let (b, want) = (self.bytes(i), [self.tag[i]; STRIDE]);
        if !free {
            return b == want;
        }
        // Slice compares: fast even in an unoptimised test build.
        let link = Self::link_bytes();
        b[..link.start] == want[..link.start] && b[link.end..] == want[link.end..]
    }

    fn apply(&mut self, o: Op, tag: u8) -> Result<(), TestCaseError> {
        match o {
            Op::Alloc => {
                if let Some(i) = self.pool.pop() {
                    self.write(i, tag);
                    self.program.push(i);
                }
            }
            Op::Push {
                pick,
                list,
                bounded,
            } => {
                if self.program.is_empty() {
                    return Ok(());
                }
                let i = self.program.swap_remove(pick % self.program.len());
                let b = self.block(i);
                let (len, cap) = (self.list(list).len(), self.list(list).cap());
                if bounded {
                    // SAFETY: the program frees a block it holds: free, ours, in no list.
                    match unsafe { self.list(list).push_bounded(b) } {
                        Ok(()) => {
                            prop_assert!(len < cap, "pushed past the cap {}", cap);
                            self.want[list].push(i);
                        }
                        Err(back) => {
                            prop_assert!(len >= cap, "refused below the cap {}", cap);
                            prop_assert_eq!(back, b);
                            self.program.push(i);
                        }
                    }
                } else {
                    // SAFETY: as above.
                    unsafe { self.list(list).push(b) };
                    self.want[list].push(i);
                }
            }
            Op::Pop(list) => {
                let got = self.list(list).pop().map(|b| self.index(b));
                prop_assert_eq!(got, self.want[list].pop());
                if let Some(i) = got {
                    prop_assert!(self.intact(i, true), "block {} changed in a list", i);
                    self.write(i, tag);
                    self.program.push(i);
                }
            }
            Op::Take { list, n } => {
                let got = self.list(list).take(n);
                let len = self.want[list].len();
                let k = (n as usize).min(len);
                prop_assert_eq!(got.as_ref().map(|c| c.len() as usize), (k > 0).then_some(k));
                if let Some(c) = got {
                    let ids = self.want[list].drain(len - k..).rev().collect();
                    self.chains.push((c, ids));
                }
            }
            Op::TakeAll(list) => {
                let got = self.list(list).take_all();
                prop_assert!(self.list(list).is_empty());
                prop_assert_eq!(self.list(list).len(), 0);
                let ids: Vec<usize> = self.want[list].drain(..).rev().collect();
                prop_assert_eq!(
                    got.as_ref().map(|c| c.len() as usize),
                    (!ids.is_empty()).then_some(ids.len())
                );
                if let Some(c) = got {
                    self.chains.push((c, ids));
                }
            }
            Op::Splice { chain, list } => {
                if self.chains.is_empty() {
                    return Ok(());
                }
                let (c, ids) = self.chains.swap_remove(chain % self.chains.len());
                self.list(list).push_chain(c);
                self.want[list].extend(ids.into_iter().rev());
            }
            Op::SplitFirst(chain) => {
                if self.chains.is_empty() {
                    return Ok(());
                }
                let at = chain % self.chains.len();
                let (c, mut ids) = self.chains.swap_remove(at);
                let (first, rest) = c.split_first();
                prop_assert_eq!(self.index(first), ids.remove(0));
                prop_assert_eq!(rest.is_none(), ids.is_empty());
                let i = self.index(first);
                prop_assert!(self.intact(i, true), "block {} changed in a chain", i);
                self.write(i, tag);
                self.program.push(i);
                if let Some(r) = rest {
                    self.chains.push((r, ids));
                }
            }
            Op::SetCap { list, cap } => {
                self.list(list).set_cap(cap);
                prop_assert_eq!(self.list(list).cap(), cap);
            }
            Op::Release(pick) => {
                if !self.program.is_empty() {
                    let i = self.program.swap_remove(pick % self.program.len());
                    prop_assert!(
                        self.intact(i, false),
                        "block {} changed in the program's hands",
                        i
                    );
                    self.pool.push(i);
                }
            }
        }
        Ok(())
    }

    /// Walks every list and chain through the links and checks them, the places of all
    /// blocks and the contents of those the program holds or the lists keep.
    fn check(&mut self) -> Result<(), TestCaseError> {
        let mut place = [None; BLOCKS];
        let mut put = |i: usize, p: Place| -> Result<(), TestCaseError> {
            prop_assert!(
                place[i].is_none(),
                "block {} in two places: {:?} and {:?}",
                i,
                place[i],
                p
            );
            place[i] = Some(p);
            Ok(())
        };
        for l in 0..LISTS {
            let mut walked = Vec::new();
            let mut at = self.list(l).stack.head;
            while let Some(b) = at {
                prop_assert!(walked.len() < BLOCKS, "list {} has a cycle", l);
                walked.push(self.index(b));
                // SAFETY: `b` is in the list: free, ours, its link written by the list.
                at = unsafe { b.link() };
                // Stored encoded: the raw word is never the next block's address (nor
                // null at the end). (The free mark is the business of the block's slab.)
                // SAFETY: `b`'s first word is in the test's memory.
                let raw = unsafe { b.as_ptr().add(L::LINK_OFFSET).cast::<usize>().read() };
                prop_assert_ne!(raw, at.map_or(0, |n| n.addr()));
            }
            let want: Vec<usize> = self.want[l].iter().rev().copied().collect();
            prop_assert_eq!(&walked, &want, "list {}", l);
            prop_assert_eq!(self.list(l).len() as usize, want.len());
            prop_assert_eq!(self.list(l).is_empty(), want.is_empty());
            for i in walked {
                put(i, Place::List(l))?;
            }
        }
        for (c, ids) in &self.chains {
            prop_assert_eq!(c.len() as usize, ids.len());
            let mut walked = std::vec![self.index(c.head)];
            let mut b = c.head;
            for _ in 1..c.len() {
                // SAFETY: every block of a chain but the tail links to the next one.
                b = unsafe { b.link() }.expect("a chain shorter than its count");
                walked.push(self.index(b));
            }
            prop_assert_eq!(b, c.tail);
            prop_assert_eq!(&walked, ids);
            for &i in ids {
                put(i, Place::Chain)?;
            }
        }
        for &i in &self.program {
            put(i, Place::Program)?;
            prop_assert!(
                self.intact(i, false),
                "block {} changed in the program's hands",
                i
            );
        }
        for &i in &self.pool {
            put(i, Place::Pool)?;
        }
        for (i, p) in place.iter().enumerate() {
            prop_assert!(p.is_some(), "block {} lost", i);
            if matches!(p, Some(Place::List(_) | Place::Chain)) {
                prop_assert!(self.intact(i, true), "free block {} changed", i);
            }
        }
        Ok(())
    }
}

fn run_model<L: BlockLayout>(caps: [u32; LISTS], ops: Vec<Op>) -> Result<(), TestCaseError> {
    let mut m = Model::<L>::new();
    for (l, cap) in caps.into_iter().enumerate() {
        m.list(l).set_cap(cap);
    }
    for (step, o) in ops.into_iter().enumerate() {
        m.apply(o, (step as u8) | 1)?;
        m.check()?;
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Plain layout: the link (encoded) and the free mark are the block's first two words.
    #[test]
    fn plain_lists_match_a_model(
        caps in proptest::array::uniform3(0u32..12),
        ops in proptest::collection::vec(op(), 1..300),
    ) {
        run_model::<Plain>(caps, ops)?;
    }

    /// Guarded layout: the link is two encoded words after the header.
    #[test]
    fn guarded_lists_match_a_model(
        caps in proptest::array::uniform3(0u32..12),
        ops in proptest::collection::vec(op(), 1..300),
    ) {
        run_model::<Guarded>(caps, ops)?;
    }
}

#[test]
fn list_sizes_are_as_documented() {
    // A slab's list sits in its 128-byte record next to the fields free's fast path reads.
    assert_eq!(core::mem::size_of::<Stack<Plain, true>>(), 16);
    assert_eq!(core::mem::size_of::<FreeList<Plain>>(), 40);
}
