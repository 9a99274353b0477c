extern crate std;

use super::*;
use core::cell::{Cell, RefCell};
use core::ptr::null_mut;
use proptest::prelude::*;
use std::alloc::{alloc, alloc_zeroed, dealloc, Layout};
use std::collections::{BTreeMap, HashMap};
use std::vec::Vec;

const PAGE: usize = 4096;

/// A checking backend over the global allocator: a side table of live blocks
/// (address → layout, usable), poisoned fresh/freed memory, a call counter, and
/// allocations of more than `fail_above` bytes refused.
struct ModelBackend {
    live: RefCell<HashMap<usize, (Layout, usize)>>,
    calls: Cell<usize>,
    fail_above: Cell<usize>,
}

impl ModelBackend {
    fn new() -> Self {
        Self {
            live: RefCell::new(HashMap::new()),
            calls: Cell::new(0),
            fail_above: Cell::new(usize::MAX),
        }
    }
    fn live_blocks(&self) -> usize {
        self.live.borrow().len()
    }
    fn is_live(&self, p: *mut u8) -> bool {
        self.live.borrow().contains_key(&(p as usize))
    }
    /// The alignment the block was allocated with.
    fn align_of(&self, p: *mut u8) -> usize {
        self.live.borrow()[&(p as usize)].0.align()
    }
    fn lookup(&self, p: *mut u8) -> (Layout, usize) {
        match self.live.borrow().get(&(p as usize)) {
            Some(&e) => e,
            None => panic!("backend got {p:p}, which it did not hand out or already freed"),
        }
    }
    fn raw(&self, size: usize, align: usize, zeroed: bool) -> *mut u8 {
        self.calls.set(self.calls.get() + 1);
        assert!(
            size <= isize::MAX as usize,
            "request above isize::MAX reached the backend"
        );
        if size > self.fail_above.get() {
            return null_mut();
        }
        let usable = size.max(1).next_multiple_of(16);
        let layout = Layout::from_size_align(usable, align).unwrap();
        // SAFETY: `layout` has a non-zero size.
        let p = unsafe {
            if zeroed {
                alloc_zeroed(layout)
            } else {
                alloc(layout)
            }
        };
        assert!(!p.is_null(), "host allocator out of memory");
        if !zeroed {
            // SAFETY: fresh block of `usable` bytes; garbage, so a missing zeroing shows.
            unsafe { p.write_bytes(0xA5, usable) };
        }
        assert!(self
            .live
            .borrow_mut()
            .insert(p as usize, (layout, usable))
            .is_none());
        p
    }
}

// SAFETY: blocks come from the global allocator with a layout of >= size bytes (rounded
// to 16) and alignment max(16, align); usable is that rounded size.
unsafe impl Backend for ModelBackend {
    const PAGE: usize = PAGE;
    fn alloc(&self, size: usize) -> *mut u8 {
        self.raw(size, MIN_ALIGN, false)
    }
    fn alloc_zeroed(&self, size: usize) -> *mut u8 {
        self.raw(size, MIN_ALIGN, true)
    }
    fn alloc_aligned(&self, size: usize, align: usize) -> *mut u8 {
        assert!(
            align.is_power_of_two() && align > MIN_ALIGN,
            "bad align {align} reached the backend"
        );
        self.raw(size, align, false)
    }
    unsafe fn free(&self, p: *mut u8) {
        self.calls.set(self.calls.get() + 1);
        let (layout, usable) = self.lookup(p);
        self.live.borrow_mut().remove(&(p as usize));
        // SAFETY: `p` was allocated with `layout` and is live (checked above).
        unsafe {
            p.write_bytes(0xDD, usable);
            dealloc(p, layout);
        }
    }
    unsafe fn usable_size(&self, p: *mut u8) -> usize {
        self.calls.set(self.calls.get() + 1);
        self.lookup(p).1
    }
    unsafe fn resize_in_place(&self, p: *mut u8, new_size: usize) -> bool {
        self.calls.set(self.calls.get() + 1);
        let usable = self.lookup(p).1;
        new_size <= usable && new_size >= usable / 2
    }
}

fn api() -> Api<ModelBackend> {
    Api(ModelBackend::new())
}

/// The 256-byte period of the pattern `seed + i` written through a block.
fn pattern(seed: u8) -> [u8; 256] {
    core::array::from_fn(|i| seed.wrapping_add(i as u8))
}

fn fill(p: *mut u8, n: usize, seed: u8) {
    // SAFETY: callers pass a live block of >= n bytes.
    let s = unsafe { core::slice::from_raw_parts_mut(p, n) };
    let pat = pattern(seed);
    // Whole-slice copies and compares: fast even in an unoptimised test build.
    for c in s.chunks_mut(256) {
        c.copy_from_slice(&pat[..c.len()]);
    }
}

fn check(p: *const u8, n: usize, seed: u8) -> bool {
    // SAFETY: callers pass a live block of >= n bytes.
    let s = unsafe { core::slice::from_raw_parts(p, n) };
    let pat = pattern(seed);
    s.chunks(256).all(|c| c == &pat[..c.len()])
}

#[test]
fn malloc_zero_is_unique_and_freeable() {
    let a = api();
    let (p, q) = (a.malloc(0).unwrap(), a.malloc(0).unwrap());
    assert!(!p.is_null() && p != q);
    assert_eq!(a.0.live_blocks(), 2);
    unsafe { a.free(p) };
    unsafe { a.free(q) };
    assert_eq!(a.0.live_blocks(), 0);
}

#[test]
fn oversized_requests_never_reach_the_backend() {
    let a = api();
    assert_eq!(a.malloc(usize::MAX), Err(Error::NoMemory));
    assert_eq!(a.malloc(isize::MAX as usize + 1), Err(Error::NoMemory));
    assert_eq!(a.calloc(usize::MAX / 2, 3), Err(Error::NoMemory));
    assert_eq!(a.calloc(1 << 32, 1 << 31), Err(Error::NoMemory)); // 2^63: no overflow, too big
    assert_eq!(
        a.posix_memalign(64, isize::MAX as usize - 10),
        Err(Error::NoMemory)
    );
    assert_eq!(a.memalign(usize::MAX, 1), Err(Error::NoMemory));
    assert_eq!(a.pvalloc(usize::MAX), Err(Error::NoMemory));
    assert_eq!(a.valloc(isize::MAX as usize), Err(Error::NoMemory));
    assert_eq!(a.0.calls.get(), 0);
}

#[test]
fn huge_alignment_is_refused_not_overflowed() {
    // align = 2^63 (a power of two, a multiple of 8): size + align exceeds isize::MAX.
    let a = api();
    let top = 1usize << (usize::BITS - 1);
    assert_eq!(a.posix_memalign(top, 1), Err(Error::NoMemory));
    assert_eq!(a.aligned_alloc(top, 0), Err(Error::NoMemory));
    assert_eq!(a.memalign(top / 2 + 1, 0), Err(Error::NoMemory));
    assert_eq!(a.0.calls.get(), 0);
}

#[test]
fn calloc_is_zeroed() {
    let a = api();
    let p = a.calloc(100, 7).unwrap();
    assert!((0..700).all(|i| unsafe { *p.add(i) } == 0));
    assert_eq!(p as usize % 16, 0);
    unsafe { a.free(p) };
    let z = a.calloc(0, 5).unwrap();
    assert!(!z.is_null());
    unsafe { a.free(z) };
    assert_eq!(a.0.live_blocks(), 0);
}

#[test]
fn realloc_null_and_zero() {
    let a = api();
    let p = unsafe { a.realloc(null_mut(), 40) }.unwrap();
    assert!(a.0.is_live(p) && unsafe { a.usable_size(p) } >= 40);
    assert_eq!(unsafe { a.realloc(p, 0) }, Ok(null_mut()));
    assert!(!a.0.is_live(p));
    let z = unsafe { a.realloc(null_mut(), 0) }.unwrap(); // = malloc(0)
    assert!(!z.is_null());
    unsafe { a.free(z) };
    assert_eq!(a.0.live_blocks(), 0);
}

#[test]
fn realloc_grow_and_shrink_keep_contents() {
    let a = api();
    let p = a.malloc(100).unwrap();
    fill(p, 100, 3);
    let q = unsafe { a.realloc(p, 60) }.unwrap(); // 60 within [112/2, 112]: in place
    assert_eq!(q, p);
    assert!(check(q, 60, 3));
    let r = unsafe { a.realloc(q, 5000) }.unwrap(); // moves
    assert!(r != q && !a.0.is_live(q));
    assert!(check(r, 100, 3)); // whole usable size of the old block kept (>= 60 asked)
    let s = unsafe { a.realloc(r, 10) }.unwrap(); // too small to stay: moves
    assert!(s != r && check(s, 10, 3));
    unsafe { a.free(s) };
    assert_eq!(a.0.live_blocks(), 0);
}

#[test]
fn failed_realloc_leaves_old_block_intact() {
    let a = api();
    let p = a.malloc(100).unwrap();
    fill(p, 100, 9);
    a.0.fail_above.set(1000);
    assert_eq!(unsafe { a.realloc(p, 5000) }, Err(Error::NoMemory));
    assert_eq!(
        unsafe { a.realloc(p, isize::MAX as usize + 1) },
        Err(Error::NoMemory)
    );
    assert_eq!(
        unsafe { a.reallocarray(p, usize::MAX / 2, 3) },
        Err(Error::NoMemory)
    );
    assert_eq!(unsafe { a.reallocarray(p, 100, 50) }, Err(Error::NoMemory));
    assert!(a.0.is_live(p) && a.0.live_blocks() == 1 && check(p, 100, 9));
    let q = unsafe { a.reallocarray(p, 10, 50) }.unwrap();
    assert!(check(q, 100, 9));
    unsafe { a.free(q) };
    assert_eq!(a.0.live_blocks(), 0);
}

#[test]
fn failed_allocations_report_no_memory() {
    let a = api();
    a.0.fail_above.set(0);
    assert_eq!(a.malloc(1), Err(Error::NoMemory));
    assert_eq!(a.calloc(1, 1), Err(Error::NoMemory));
    assert_eq!(a.posix_memalign(64, 1), Err(Error::NoMemory));
    assert_eq!(a.valloc(1), Err(Error::NoMemory));
    assert_eq!(a.0.live_blocks(), 0);
}

#[test]
fn posix_memalign_alignment_rules() {
    let a = api();
    for bad in [0, 3, 4, 24, 48, usize::MAX] {
        assert_eq!(a.posix_memalign(bad, 8), Err(Error::Invalid), "align {bad}");
    }
    for shift in 3..=21 {
        let align = 1usize << shift;
        let p = a.posix_memalign(align, 100).unwrap();
        assert_eq!(p as usize % align.max(16), 0, "align {align}");
        fill(p, 100, 1);
        unsafe { a.free(p) };
    }
    assert_eq!(a.0.live_blocks(), 0);
}

#[test]
fn aligned_alloc_memalign_valloc_pvalloc() {
    let a = api();
    for bad in [0, 3, 24, 100] {
        assert_eq!(a.aligned_alloc(bad, 8), Err(Error::Invalid), "align {bad}");
    }
    let p = a.aligned_alloc(4, 10).unwrap(); // below 8 is fine for aligned_alloc
    assert_eq!(p as usize % 16, 0);
    let m = a.memalign(24, 10).unwrap();
    assert_eq!((m as usize % 32, a.0.align_of(m)), (0, 32));
    let v = a.valloc(10).unwrap();
    assert_eq!((v as usize % PAGE, a.0.align_of(v)), (0, PAGE));
    let mut blocks = std::vec![p, m, v];
    for size in [0, 1, PAGE, PAGE + 1] {
        let b = a.pvalloc(size).unwrap();
        assert_eq!(b as usize % PAGE, 0);
        assert!(unsafe { a.usable_size(b) } >= size.max(1).next_multiple_of(PAGE));
        blocks.push(b);
    }
    for b in blocks {
        unsafe { a.free(b) };
    }
    assert_eq!(a.0.live_blocks(), 0);
}

#[test]
fn null_is_harmless() {
    let a = api();
    assert_eq!(unsafe { a.usable_size(null_mut()) }, 0);
    unsafe { a.free(null_mut()) };
    assert_eq!(a.0.calls.get(), 0);
}

// ---- property test against a model ----
//
// Random sequences of every malloc-family call over 64 slots, with the backend sometimes
// refusing large requests. Checked after every step: each slot's contents (written through
// it when it was allocated), alignment and usable size; no two live blocks overlap;
// ownership: the backend's live blocks are exactly the slots' blocks (nothing leaked,
// nothing freed that a slot still holds); a failed call changes nothing.

const SLOTS: usize = 64;

/// The aligned allocation calls.
#[derive(Clone, Copy, Debug)]
enum AlignedCall {
    PosixMemalign,
    AlignedAlloc,
    Memalign,
    Valloc,
    Pvalloc,
}

#[derive(Clone, Debug)]
enum Op {
    Malloc(usize, usize),
    Calloc(usize, usize, usize),
    Realloc(usize, usize),
    Reallocarray(usize, usize, usize),
    Aligned(usize, AlignedCall, usize, usize),
    Free(usize),
    /// The backend refuses requests above this many bytes from now on (`None`: never).
    FailAbove(Option<usize>),
}

fn op() -> impl Strategy<Value = Op> {
    let slot = 0..SLOTS;
    let size = prop_oneof![4 => 0..1100usize, 1 => 0..9000usize];
    // Mostly powers of two (1 .. 8 KiB), sometimes anything (invalid for some calls).
    let align = prop_oneof![3 => (0..=13u32).prop_map(|s| 1usize << s), 1 => 0..5000usize];
    let call = prop_oneof![
        Just(AlignedCall::PosixMemalign),
        Just(AlignedCall::AlignedAlloc),
        Just(AlignedCall::Memalign),
        Just(AlignedCall::Valloc),
        Just(AlignedCall::Pvalloc),
    ];
    prop_oneof![
        4 => (slot.clone(), size.clone()).prop_map(|(s, n)| Op::Malloc(s, n)),
        1 => (slot.clone(), 0..64usize, 0..128usize).prop_map(|(s, n, m)| Op::Calloc(s, n, m)),
        3 => (slot.clone(), size.clone()).prop_map(|(s, n)| Op::Realloc(s, n)),
        1 => (slot.clone(), 0..100usize, 0..100usize).prop_map(|(s, n, m)| Op::Reallocarray(s, n, m)),
        2 => (slot.clone(), call, align, size).prop_map(|(s, c, a, n)| Op::Aligned(s, c, a, n)),
        3 => slot.prop_map(Op::Free),
        1 => prop_oneof![Just(None), (0..6000usize).prop_map(Some)].prop_map(Op::FailAbove),
    ]
}

/// A live block of the model: pointer, bytes asked for, pattern seed.
#[derive(Clone, Copy)]
struct Block {
    p: *mut u8,
    size: usize,
    seed: u8,
}

struct Model {
    api: Api<ModelBackend>,
    slots: [Option<Block>; SLOTS],
    /// Live intervals: start → end (start + usable).
    spans: BTreeMap<usize, usize>,
    generation: u8,
}

impl Model {
    fn new() -> Self {
        Model {
            api: api(),
            slots: [None; SLOTS],
            spans: BTreeMap::new(),
            generation: 0,
        }
    }

    fn seed(&mut self, slot: usize) -> u8 {
        self.generation = self.generation.wrapping_add(1);
        (slot as u8).wrapping_mul(37) ^ self.generation.wrapping_mul(101)
    }

    /// Whether the backend refuses a block of `size` bytes now.
    fn refused(&self, size: usize) -> bool {
        size > self.api.0.fail_above.get()
    }

    /// Takes the slot's block out of the model after verifying its contents.
    fn take(&mut self, slot: usize) -> Option<Block> {
        let b = self.slots[slot].take()?;
        assert!(check(b.p, b.size, b.seed), "slot {slot} contents corrupted");
        self.spans.remove(&(b.p as usize)).unwrap();
        Some(b)
    }

    /// Records a fresh block: alignment, usable size, no overlap, then fills it.
    fn put(&mut self, slot: usize, p: *mut u8, size: usize, align: usize) {
        assert!(!p.is_null());
        let want = if size >= 16 { align.max(16) } else { align };
        assert_eq!(
            p as usize % want,
            0,
            "{p:p} not {want}-aligned (size {size})"
        );
        let (start, end) = (p as usize, p as usize + unsafe { self.api.usable_size(p) });
        assert!(end - start >= size);
        if let Some((_, &prev_end)) = self.spans.range(..=start).next_back() {
            assert!(prev_end <= start, "overlap below {p:p}");
        }
        if let Some((&next, _)) = self.spans.range(start..).next() {
            assert!(end <= next, "overlap above {p:p}");
        }
        self.spans.insert(start, end);
        let seed = self.seed(slot);
        fill(p, size, seed);
        self.slots[slot] = Some(Block { p, size, seed });
    }

    fn free(&mut self, slot: usize) {
        if let Some(b) = self.take(slot) {
            unsafe { self.api.free(b.p) };
        }
    }

    /// A fresh allocation of `size` bytes into slot `s`: refused exactly when the backend
    /// refuses `backend_size` bytes.
    fn fresh(
        &mut self,
        s: usize,
        got: Result<*mut u8, Error>,
        size: usize,
        backend_size: usize,
        align: usize,
    ) {
        if self.refused(backend_size) {
            assert_eq!(
                got,
                Err(Error::NoMemory),
                "a refused block of {backend_size} bytes"
            );
        } else {
            let p = got.expect("an allocation the backend grants");
            self.put(s, p, size, align);
        }
    }

    /// realloc of slot `s` to `n` bytes (`n` None: the product overflowed).
    fn realloc(
        &mut self,
        s: usize,
        got: Result<*mut u8, Error>,
        old: Option<Block>,
        n: Option<usize>,
    ) {
        let Some(n) = n else {
            assert_eq!(got, Err(Error::NoMemory), "reallocarray overflow");
            if let Some(b) = old {
                self.restore(s, b);
            }
            return;
        };
        let q = match got {
            Ok(q) => q,
            Err(e) => {
                // Only a refused new block fails, and the old block stays as it was.
                assert_eq!(e, Error::NoMemory);
                assert!(
                    self.refused(n),
                    "realloc to {n} failed with the backend willing"
                );
                if let Some(b) = old {
                    assert!(self.api.0.is_live(b.p), "a failed realloc freed the block");
                    self.restore(s, b);
                }
                return;
            }
        };
        if let Some(b) = old {
            assert!(!self.api.0.is_live(b.p) || q == b.p, "old block leaked");
            if q != b.p {
                assert!(!self.refused(n), "realloc moved to a refused size");
            }
        }
        if n == 0 && old.is_some() {
            assert!(q.is_null());
            return;
        }
        if let Some(b) = old {
            let keep = b.size.min(n);
            assert!(
                check(q, keep, b.seed),
                "realloc lost the first {keep} bytes"
            );
        }
        self.put(s, q, n, 1);
    }

    /// Puts a block back in its slot after a failed call (contents already checked).
    fn restore(&mut self, s: usize, b: Block) {
        let end = b.p as usize + unsafe { self.api.usable_size(b.p) };
        self.spans.insert(b.p as usize, end);
        self.slots[s] = Some(b);
    }

    fn apply(&mut self, op: Op) {
        match op {
            Op::Malloc(s, n) => {
                self.free(s);
                let got = self.api.malloc(n);
                self.fresh(s, got, n, n, 1);
            }
            Op::Calloc(s, n, m) => {
                self.free(s);
                let got = self.api.calloc(n, m);
                if let Ok(p) = got {
                    assert!(
                        unsafe { core::slice::from_raw_parts(p, n * m) }
                            .iter()
                            .all(|&b| b == 0),
                        "calloc not zeroed"
                    );
                }
                self.fresh(s, got, n * m, n * m, 1);
            }
            Op::Aligned(s, call, align, n) => {
                self.free(s);
                let pow2 = align.is_power_of_two();
                let (got, valid, eff, size) = match call {
                    AlignedCall::PosixMemalign => (
                        self.api.posix_memalign(align, n),
                        pow2 && align % 8 == 0,
                        align,
                        n,
                    ),
                    AlignedCall::AlignedAlloc => (self.api.aligned_alloc(align, n), pow2, align, n),
                    AlignedCall::Memalign => (
                        self.api.memalign(align, n),
                        true,
                        align.next_power_of_two(),
                        n,
                    ),
                    AlignedCall::Valloc => (self.api.valloc(n), true, PAGE, n),
                    AlignedCall::Pvalloc => (
                        self.api.pvalloc(n),
                        true,
                        PAGE,
                        n.max(1).next_multiple_of(PAGE),
                    ),
                };
                if !valid {
                    assert_eq!(got, Err(Error::Invalid), "{call:?} with align {align}");
                    return;
                }
                if let Ok(p) = got {
                    if eff > MIN_ALIGN {
                        assert_eq!(
                            self.api.0.align_of(p),
                            eff,
                            "backend asked for the wrong alignment"
                        );
                    }
                }
                self.fresh(s, got, size, size, eff);
            }
            Op::Free(s) => self.free(s),
            Op::Realloc(s, n) => {
                let old = self.take(s);
                let got = unsafe { self.api.realloc(old.map_or(null_mut(), |b| b.p), n) };
                self.realloc(s, got, old, Some(n));
            }
            Op::Reallocarray(s, n, m) => {
                let old = self.take(s);
                let got = unsafe { self.api.reallocarray(old.map_or(null_mut(), |b| b.p), n, m) };
                self.realloc(s, got, old, n.checked_mul(m));
            }
            Op::FailAbove(limit) => self.api.0.fail_above.set(limit.unwrap_or(usize::MAX)),
        }
    }

    /// Ownership and contents: the backend holds exactly the slots' blocks, each intact.
    fn check_all(&self) {
        let mut mine: Vec<usize> = self.slots.iter().flatten().map(|b| b.p as usize).collect();
        let mut live: Vec<usize> = self.api.0.live.borrow().keys().copied().collect();
        mine.sort_unstable();
        live.sort_unstable();
        assert_eq!(
            mine, live,
            "the backend's live blocks are not the slots' blocks"
        );
        for (s, b) in self.slots.iter().enumerate() {
            if let Some(b) = b {
                assert!(check(b.p, b.size, b.seed), "slot {s} contents corrupted");
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn random_ops_match_model(ops in proptest::collection::vec(op(), 1..300)) {
        let mut m = Model::new();
        for op in ops {
            m.apply(op);
            m.check_all();
        }
        for s in 0..SLOTS {
            m.free(s);
        }
        prop_assert_eq!(m.api.0.live_blocks(), 0);
        prop_assert!(m.spans.is_empty());
    }
}
