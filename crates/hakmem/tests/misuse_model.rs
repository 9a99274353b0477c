//! Misused frees against the whole allocator (the release build's guarantees): random
//! sequences of malloc and free over 64 slots, mixed with frees of pointers a program must
//! not free: interior and misaligned pointers into live blocks, and stale pointers (blocks
//! freed before: a double free, unless the block was handed out again since, when the
//! free is the new block's and legitimate). `trim` in between closes slabs and gives
//! segments back, so stale pointers also land in closed slabs, slabs of other classes and
//! unmapped memory.
//!
//! The misuse handler is replaced by one that counts (as `HAKMEM_ON_MISUSE=warn` would,
//! without the lines): every free of a pointer that is not a live block's start must be
//! reported once and change nothing (and the usable size of an interior or misaligned
//! pointer is 0). After every step no two live blocks overlap and the live blocks'
//! contents are intact.
//!
//! Small and medium sizes only (slab blocks); the large tier has its own checks. One
//! thread: a double free of the first block of a remote batch in flight is not detected
//! (see docs/security.md).
//!
//! `cargo xtask test` runs it twice: as is, and with `HAKMEM_PURGE_DELAY_MS=1`, whose
//! purge ticks park the free blocks of sparse slabs between steps, so that stale frees
//! also meet parked blocks (which are on no list).
//!
//! `PROPTEST_CASES` sets the number of cases (proptest reads it over the 64 here). Release
//! build only: the checked build reports through its own checks, and aborts.
#![cfg(not(feature = "checked"))]

mod common;

use proptest::prelude::*;
use std::sync::atomic::{AtomicUsize, Ordering};

const SLOTS: usize = 64;
/// Freed addresses remembered for stale frees.
const STALE: usize = 32;

#[derive(Debug, Clone)]
enum Op {
    Alloc(usize, usize),
    Free(usize),
    /// A free of the block in this slot plus this offset (taken modulo its usable size,
    /// and never 0): an interior or misaligned pointer.
    FreeInterior(usize, usize),
    /// A free of a remembered freed address.
    FreeStale(usize),
    Trim,
}

fn size() -> impl Strategy<Value = usize> {
    prop_oneof![8 => 0usize..300, 3 => 300usize..4000, 1 => 4000usize..70_000]
}

fn op() -> impl Strategy<Value = Op> {
    let slot = 0usize..SLOTS;
    prop_oneof![
        10 => (slot.clone(), size()).prop_map(|(s, n)| Op::Alloc(s, n)),
        6 => slot.clone().prop_map(Op::Free),
        3 => (slot, 1usize..70_000).prop_map(|(s, o)| Op::FreeInterior(s, o)),
        3 => (0usize..STALE).prop_map(Op::FreeStale),
        1 => Just(Op::Trim),
    ]
}

static REPORTS: AtomicUsize = AtomicUsize::new(0);

fn count(_: &ptr_conversion::Report) {
    REPORTS.fetch_add(1, Ordering::Relaxed);
}

struct Live {
    p: *mut u8,
    size: usize,
    tag: u8,
}

fn intact(l: &Live) -> Result<(), TestCaseError> {
    // SAFETY: a live block of `size` bytes.
    let s = unsafe { std::slice::from_raw_parts(l.p, l.size) };
    prop_assert!(
        s.iter().all(|&b| b == l.tag),
        "block {:p} ({} bytes) lost its contents",
        l.p,
        l.size
    );
    Ok(())
}

struct Model {
    slots: Vec<Option<Live>>,
    stale: Vec<usize>,
    tag: u8,
    /// Reports expected so far.
    refused: usize,
}

impl Model {
    fn free(&mut self, s: usize) -> Result<(), TestCaseError> {
        if let Some(l) = self.slots[s].take() {
            intact(&l)?;
            // SAFETY: a live block of ours.
            unsafe { hakmem::API.free(l.p) };
            if self.stale.len() == STALE {
                self.stale.remove(0);
            }
            self.stale.push(l.p as usize);
        }
        Ok(())
    }

    /// Frees `p`, which is not the start of a live block: it must be reported.
    fn free_refused(&mut self, p: usize) {
        // SAFETY: any pointer is accepted; this one is refused (reported, left alone).
        unsafe { hakmem::API.free(p as *mut u8) };
        self.refused += 1;
    }

    fn apply(&mut self, o: Op) -> Result<(), TestCaseError> {
        self.tag = self.tag.wrapping_add(1).max(1);
        match o {
            Op::Alloc(s, n) => {
                self.free(s)?;
                let p = hakmem::API
                    .malloc(n)
                    .map_err(|e| TestCaseError::fail(format!("{e:?}")))?;
                let l = Live {
                    p,
                    size: n,
                    tag: self.tag,
                };
                // SAFETY: a fresh block of `n` bytes.
                unsafe { std::ptr::write_bytes(p, l.tag, n) };
                self.stale.retain(|&a| a != p as usize);
                self.slots[s] = Some(l);
            }
            Op::Free(s) => self.free(s)?,
            Op::FreeInterior(s, off) => {
                if let Some(l) = &self.slots[s] {
                    // SAFETY: a live block of ours.
                    let usable = unsafe { hakmem::API.usable_size(l.p) };
                    let off = off % usable.max(1);
                    if off != 0 {
                        let p = l.p as usize + off;
                        // Not a block start: no size either (and no report).
                        // SAFETY: any pointer value; only metadata is read.
                        let size = unsafe { hakmem::API.usable_size(p as *mut u8) };
                        prop_assert_eq!(size, 0, "usable size of {:#x}", p);
                        self.free_refused(p);
                    }
                }
            }
            Op::FreeStale(k) => {
                if self.stale.is_empty() {
                    return Ok(());
                }
                let a = self.stale[k % self.stale.len()];
                match self
                    .slots
                    .iter()
                    .position(|l| l.as_ref().is_some_and(|l| l.p as usize == a))
                {
                    // Handed out again since: this free is the new block's.
                    Some(s) => self.free(s)?,
                    None => self.free_refused(a),
                }
            }
            Op::Trim => {
                hakmem::trim();
            }
        }
        Ok(())
    }

    /// No two usable ranges overlap; every live block intact; every refused free reported.
    fn check(&self) -> Result<(), TestCaseError> {
        for l in self.slots.iter().flatten() {
            intact(l)?;
        }
        common::no_overlap(self.slots.iter().flatten().map(|l| l.p))?;
        prop_assert_eq!(REPORTS.load(Ordering::Relaxed), self.refused, "reports");
        Ok(())
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]
    #[test]
    fn misused_frees_match_model(ops in proptest::collection::vec(op(), 1..400)) {
        // The allocator's set-up installs its handler; ours replaces it.
        let p = hakmem::API.malloc(1).unwrap();
        // SAFETY: a live block of ours.
        unsafe { hakmem::API.free(p) };
        ptr_conversion::set_misuse_handler(count);
        let mut m = Model {
            slots: (0..SLOTS).map(|_| None).collect(),
            stale: Vec::new(),
            tag: 0,
            refused: REPORTS.load(Ordering::Relaxed),
        };
        for o in ops {
            m.apply(o)?;
            m.check()?;
        }
        for s in 0..SLOTS {
            m.free(s)?;
        }
        m.check()?;
    }
}
