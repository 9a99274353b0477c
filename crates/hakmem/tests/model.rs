//! The whole allocator (`hakmem::API`, the malloc family over the boxes) against a
//! model: random sequences of every malloc-family call over 64 slots, with some blocks
//! allocated or freed on other (short-lived) threads, `trim` in between, and `HakMem` as a
//! Rust global allocator (`alloc`, `alloc_zeroed`, `realloc` keeping the alignment). Checked: the
//! contents of every live block (written through it when allocated; its ends after every
//! step, all of it every 16 steps and whenever it is freed or reallocated), alignment,
//! `usable_size` at least the size asked, and after every step that no two live blocks'
//! usable ranges overlap (each byte has one owner).
//!
//! `PROPTEST_CASES` sets the number of cases (proptest reads it over the 64 here).

mod common;

use proptest::prelude::*;
use std::alloc::{GlobalAlloc, Layout};

const SLOTS: usize = 64;

#[derive(Debug, Clone, Copy)]
enum Call {
    Malloc,
    Calloc,
    PosixMemalign(u32),
    AlignedAlloc(u32),
    Memalign(u32),
    Valloc,
    Pvalloc,
}

#[derive(Debug, Clone)]
enum Op {
    Alloc(usize, Call, usize),
    Realloc(usize, usize),
    Reallocarray(usize, usize, usize),
    Free(usize),
    /// Another thread allocates a block (its heap is gone when the block is freed).
    AllocElsewhere(usize, usize),
    /// Another thread frees up to this many blocks (remote frees).
    FreeElsewhere(usize),
    Trim,
    /// `HakMem` as a Rust global allocator: alloc (zeroed or not) with an alignment.
    RustAlloc(usize, u32, usize, bool),
    /// `GlobalAlloc::realloc` of a block keeps its alignment.
    RustRealloc(usize, usize),
}

fn size() -> impl Strategy<Value = usize> {
    prop_oneof![8 => 0usize..1100, 3 => 1100usize..70_000, 1 => 70_000usize..700_000]
}

fn call() -> impl Strategy<Value = Call> {
    prop_oneof![
        6 => Just(Call::Malloc),
        2 => Just(Call::Calloc),
        1 => (3u32..22).prop_map(Call::PosixMemalign),
        1 => (0u32..22).prop_map(Call::AlignedAlloc),
        1 => (0u32..22).prop_map(Call::Memalign),
        1 => Just(Call::Valloc),
        1 => Just(Call::Pvalloc),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    let slot = 0usize..SLOTS;
    prop_oneof![
        8 => (slot.clone(), call(), size()).prop_map(|(s, c, n)| Op::Alloc(s, c, n)),
        3 => (slot.clone(), size()).prop_map(|(s, n)| Op::Realloc(s, n)),
        1 => (slot.clone(), 0usize..300, 0usize..300).prop_map(|(s, n, m)| Op::Reallocarray(s, n, m)),
        5 => slot.clone().prop_map(Op::Free),
        1 => (slot.clone(), size()).prop_map(|(s, n)| Op::AllocElsewhere(s, n)),
        1 => (1usize..20).prop_map(Op::FreeElsewhere),
        1 => Just(Op::Trim),
        2 => (slot.clone(), 0u32..22, size(), any::<bool>()).prop_map(|(s, a, n, z)| Op::RustAlloc(s, a, n, z)),
        1 => (slot, size()).prop_map(|(s, n)| Op::RustRealloc(s, n)),
    ]
}

struct Live {
    p: *mut u8,
    size: usize,
    tag: u8,
    /// The alignment of a block from `HakMem` (`GlobalAlloc`), freed with `dealloc`.
    rust: Option<usize>,
}

/// The `Layout` of a `GlobalAlloc` block (whose size is never 0).
fn rust_layout(size: usize, align: usize) -> Layout {
    Layout::from_size_align(size.max(1), align).unwrap()
}

/// A pointer handed between threads (the block is moved, never shared).
struct Moved(*mut u8);
// SAFETY: the block changes hands whole; only one thread uses it at a time.
unsafe impl Send for Moved {}

fn fill(l: &Live) {
    unsafe { std::ptr::write_bytes(l.p, l.tag, l.size) };
}

fn intact(l: &Live, upto: usize) -> Result<(), TestCaseError> {
    intact_range(l, 0..upto)
}

/// Bytes `r` of the block still hold its tag (slice compares: fast even unoptimised).
fn intact_range(l: &Live, r: std::ops::Range<usize>) -> Result<(), TestCaseError> {
    let s = unsafe { std::slice::from_raw_parts(l.p.add(r.start), r.len()) };
    let want = [l.tag; 4096];
    prop_assert!(
        s.chunks(4096).all(|c| c == &want[..c.len()]),
        "block {:p} ({} bytes) lost its contents in {:?}",
        l.p,
        l.size,
        r
    );
    Ok(())
}

struct Model {
    slots: Vec<Option<Live>>,
    tag: u8,
}

impl Model {
    /// Records a fresh block of `size` bytes aligned to `align` in slot `s`.
    fn put(
        &mut self,
        s: usize,
        p: *mut u8,
        size: usize,
        align: usize,
    ) -> Result<(), TestCaseError> {
        let api = &hakmem::API;
        prop_assert!(!p.is_null());
        prop_assert_eq!(
            p as usize % align.max(16),
            0,
            "{:p} not {}-aligned",
            p,
            align
        );
        let usable = unsafe { api.usable_size(p) };
        prop_assert!(usable >= size, "usable {} < {}", usable, size);
        let l = Live {
            p,
            size,
            tag: self.tag,
            rust: None,
        };
        fill(&l);
        self.slots[s] = Some(l);
        Ok(())
    }

    fn free(&mut self, s: usize) -> Result<(), TestCaseError> {
        if let Some(l) = self.slots[s].take() {
            intact(&l, l.size)?;
            match l.rust {
                Some(a) => unsafe { hakmem::HakMem.dealloc(l.p, rust_layout(l.size, a)) },
                None => unsafe { hakmem::API.free(l.p) },
            }
        }
        Ok(())
    }

    fn realloc(
        &mut self,
        s: usize,
        n: usize,
        got: *mut u8,
        old: Option<Live>,
    ) -> Result<(), TestCaseError> {
        if n == 0 && old.is_some() {
            prop_assert!(got.is_null());
            return Ok(());
        }
        if let Some(l) = &old {
            intact(&Live { p: got, ..*l }, l.size.min(n))?;
        }
        self.put(s, got, n, 16)
    }

    fn apply(&mut self, o: Op) -> Result<(), TestCaseError> {
        let api = &hakmem::API;
        self.tag = self.tag.wrapping_add(1).max(1);
        match o {
            Op::Alloc(s, call, n) => {
                self.free(s)?;
                let (p, align, size) = match call {
                    Call::Malloc => (api.malloc(n), 16, n),
                    Call::Calloc => {
                        // n split into two factors.
                        let (a, b) = if n % 4 == 0 { (4, n / 4) } else { (1, n) };
                        let p = api.calloc(a, b);
                        if let Ok(p) = p {
                            let z = unsafe { std::slice::from_raw_parts(p, n) };
                            prop_assert!(z.iter().all(|&b| b == 0), "calloc not zeroed");
                        }
                        (p, 16, n)
                    }
                    Call::PosixMemalign(a) => (api.posix_memalign(1 << a, n), 1 << a, n),
                    Call::AlignedAlloc(a) => (api.aligned_alloc(1 << a, n), 1 << a, n),
                    Call::Memalign(a) => (api.memalign(1 << a, n), 1 << a, n),
                    Call::Valloc => (api.valloc(n), 4096, n),
                    Call::Pvalloc => (api.pvalloc(n), 4096, n.max(1).next_multiple_of(4096)),
                };
                let p = p.map_err(|e| TestCaseError::fail(format!("{call:?} of {n}: {e:?}")))?;
                self.put(s, p, size, align)?;
            }
            Op::Realloc(s, n) => {
                let old = self.slots[s].take();
                if let Some(l) = &old {
                    intact(l, l.size)?;
                }
                let got =
                    unsafe { api.realloc(old.as_ref().map_or(std::ptr::null_mut(), |l| l.p), n) };
                let got = got.map_err(|e| TestCaseError::fail(format!("realloc to {n}: {e:?}")))?;
                self.realloc(s, n, got, old)?;
            }
            Op::Reallocarray(s, n, m) => {
                let old = self.slots[s].take();
                if let Some(l) = &old {
                    intact(l, l.size)?;
                }
                let p = old.as_ref().map_or(std::ptr::null_mut(), |l| l.p);
                let got = unsafe { api.reallocarray(p, n, m) };
                let got =
                    got.map_err(|e| TestCaseError::fail(format!("reallocarray {n}x{m}: {e:?}")))?;
                self.realloc(s, n * m, got, old)?;
            }
            Op::Free(s) => self.free(s)?,
            Op::AllocElsewhere(s, n) => {
                self.free(s)?;
                let tag = self.tag;
                let got = std::thread::spawn(move || {
                    let p = hakmem::API.malloc(n).expect("malloc on another thread");
                    // The allocating thread writes the contents.
                    unsafe { std::ptr::write_bytes(p, tag, n) };
                    Moved(p)
                })
                .join()
                .expect("the other thread");
                let l = Live {
                    p: got.0,
                    size: n,
                    tag,
                    rust: None,
                };
                intact(&l, n)?;
                let usable = unsafe { api.usable_size(l.p) };
                prop_assert!(usable >= n, "usable {} < {}", usable, n);
                self.slots[s] = Some(l);
            }
            Op::FreeElsewhere(k) => {
                let mut gone = Vec::new();
                for s in self.slots.iter_mut().filter(|s| s.is_some()).take(k) {
                    let l = s.take().unwrap();
                    intact(&l, l.size)?;
                    gone.push(Moved(l.p));
                }
                std::thread::spawn(move || {
                    for p in gone {
                        unsafe { hakmem::API.free(p.0) };
                    }
                })
                .join()
                .expect("the other thread");
            }
            Op::Trim => {
                hakmem::trim();
            }
            Op::RustAlloc(s, a, n, zeroed) => {
                self.free(s)?;
                let layout = rust_layout(n, 1 << a);
                let p = unsafe {
                    if zeroed {
                        hakmem::HakMem.alloc_zeroed(layout)
                    } else {
                        hakmem::HakMem.alloc(layout)
                    }
                };
                prop_assert!(!p.is_null(), "HakMem.alloc({:?})", layout);
                if zeroed {
                    let z = unsafe { std::slice::from_raw_parts(p, n) };
                    prop_assert!(z.iter().all(|&b| b == 0), "alloc_zeroed not zeroed");
                }
                self.put(s, p, n, 1 << a)?;
                self.slots[s].as_mut().unwrap().rust = Some(1 << a);
            }
            Op::RustRealloc(s, n) => {
                let Some(l) = self.slots[s].take() else {
                    return Ok(());
                };
                intact(&l, l.size)?;
                let Some(a) = l.rust else {
                    self.slots[s] = Some(l);
                    return Ok(());
                };
                let q = unsafe { hakmem::HakMem.realloc(l.p, rust_layout(l.size, a), n.max(1)) };
                prop_assert!(!q.is_null(), "HakMem.realloc to {}", n);
                intact(&Live { p: q, ..l }, l.size.min(n))?;
                self.put(s, q, n, a)?;
                self.slots[s].as_mut().unwrap().rust = Some(a);
            }
        }
        Ok(())
    }

    /// No two usable ranges overlap; every live block's first and last 64 bytes intact,
    /// and with `whole` all of its bytes (each block is also checked whole whenever it is
    /// freed or reallocated).
    fn check(&self, whole: bool) -> Result<(), TestCaseError> {
        for l in self.slots.iter().flatten() {
            if whole {
                intact(l, l.size)?;
            } else {
                intact_range(l, 0..l.size.min(64))?;
                intact_range(l, l.size.saturating_sub(64)..l.size)?;
            }
        }
        common::no_overlap(self.slots.iter().flatten().map(|l| l.p))
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]
    #[test]
    fn allocator_matches_model(ops in proptest::collection::vec(op(), 1..400)) {
        let mut m = Model { slots: (0..SLOTS).map(|_| None).collect(), tag: 0 };
        for (step, o) in ops.into_iter().enumerate() {
            m.apply(o)?;
            m.check(step % 16 == 0)?;
        }
        m.check(true)?;
        for s in 0..SLOTS {
            m.free(s)?;
        }
    }
}

#[test]
fn bad_requests_fail_cleanly() {
    let api = &hakmem::API;
    assert_eq!(api.malloc(usize::MAX), Err(front_api_error()));
    assert_eq!(api.calloc(usize::MAX / 2, 3), Err(front_api_error()));
    assert!(api.posix_memalign(24, 10).is_err());
    unsafe { api.free(std::ptr::null_mut()) };
}

fn front_api_error() -> front_api::Error {
    front_api::Error::NoMemory
}
