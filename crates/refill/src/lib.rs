//! # refill: what malloc pops from next
//!
//! A class's blocks are popped from one slab at a time, its **current** slab, whose free
//! list every free of one of its blocks also pushes onto (free-list sharding, as in
//! mimalloc: blocks never move from one list to another one by one). When that list runs
//! empty, this box decides what comes next, through one narrow contract, [`SlabSource`]
//! (the owner's slabs): carve a batch of never-used blocks from the current slab; else set
//! it aside and take the next slab (one with free blocks, else a new one). It owns the
//! policy numbers: how much new memory one carve touches ([`carve_batch`]).
//!
//! ## Invariants owned here
//! - [`refill`] returns a slab whose list has a free block, or `None` only when the source
//!   is out of memory; it never returns a slab it set aside.
//! - A carve makes at most [`carve_batch`] blocks: about [`CARVE_BYTES`] of never-used
//!   memory, and at least [`MIN_CARVE`] blocks (fewer only when the slab has fewer
//!   left), so a slab's pages are touched as its blocks are needed, not all at once.
//!
//! ## Example
//! A toy source: slabs as vectors of block numbers.
//! ```
//! use refill::SlabSource;
//! use tiny_layout::{class_of, SizeClass};
//!
//! struct Toy { slabs: Vec<(Vec<u32>, u32)>, set_aside: Vec<usize> } // (free list, uncarved)
//! impl SlabSource for Toy {
//!     type Slab = usize;
//!     fn has_free(&self, s: usize) -> bool { !self.slabs[s].0.is_empty() }
//!     fn carve(&mut self, s: usize, max: u32) -> u32 {
//!         let n = self.slabs[s].1.min(max);
//!         self.slabs[s].1 -= n;
//!         self.slabs[s].0.extend(0..n);
//!         n
//!     }
//!     fn set_aside(&mut self, s: usize) { self.set_aside.push(s) }
//!     fn next_slab(&mut self, _c: SizeClass) -> Option<usize> {
//!         self.slabs.push((Vec::new(), 1000));
//!         Some(self.slabs.len() - 1)
//!     }
//! }
//!
//! let c = class_of(16).unwrap();
//! let mut toy = Toy { slabs: vec![(Vec::new(), 0)], set_aside: Vec::new() };
//! // Slab 0 is exhausted: it is set aside and a new slab gets its first carve.
//! assert_eq!(refill::refill(&mut toy, c, 0), Some(1));
//! assert_eq!(toy.set_aside, [0]);
//! assert_eq!(toy.slabs[1].0.len() as u32, refill::carve_batch(c));
//! ```
#![no_std]
#![warn(missing_docs)]

use tiny_layout::SizeClass;

/// Bytes of never-used memory one carve aims at (a page).
pub const CARVE_BYTES: usize = 4096;
/// Fewest blocks one carve makes (when the slab has that many left).
pub const MIN_CARVE: u32 = 4;

/// The owner's slabs, as [`refill`] sees them.
///
/// The implementor owns the slabs and their lists; `refill` only asks. A slab handed out
/// by [`next_slab`](Self::next_slab) is the class's current slab until `refill` sets it
/// aside with [`set_aside`](Self::set_aside).
pub trait SlabSource {
    /// A slab (a pointer or an index).
    type Slab: Copy;
    /// Whether `s`'s free list has a block.
    fn has_free(&self, s: Self::Slab) -> bool;
    /// Carves up to `max` never-used blocks of `s` onto its free list; returns how many
    /// (0: none left).
    fn carve(&mut self, s: Self::Slab, max: u32) -> u32;
    /// `s` has no free block and nothing to carve: it is no longer its class's current
    /// slab (the source keeps it until one of its blocks is freed).
    fn set_aside(&mut self, s: Self::Slab);
    /// The next slab of class `c`: one with free blocks or blocks to carve, else a new
    /// one. `None`: out of memory.
    fn next_slab(&mut self, c: SizeClass) -> Option<Self::Slab>;
}

/// Blocks one carve of class `c` makes: [`CARVE_BYTES`] of them, at least [`MIN_CARVE`].
///
/// ```
/// use refill::{carve_batch, MIN_CARVE};
/// use tiny_layout::class_of;
/// assert_eq!(carve_batch(class_of(16).unwrap()), 256);
/// assert_eq!(carve_batch(class_of(1024).unwrap()), MIN_CARVE);
/// assert_eq!(carve_batch(class_of(64 * 1024).unwrap()), MIN_CARVE);
/// ```
pub const fn carve_batch(c: SizeClass) -> u32 {
    let n = CARVE_BYTES / c.block_size();
    if n < MIN_CARVE as usize {
        MIN_CARVE
    } else {
        n as u32
    }
}

/// The class's current slab `current` has an empty free list (malloc found nothing to
/// pop): returns the slab to pop from next. `current` itself if it has a free block (a
/// block freed since the caller looked) or blocks to carve (a batch is carved); otherwise
/// `current` is set aside and the next slab takes its place, carved if it has no free
/// block. `None` only when the source is out of memory.
pub fn refill<S: SlabSource>(src: &mut S, c: SizeClass, current: S::Slab) -> Option<S::Slab> {
    let mut s = current;
    loop {
        if src.has_free(s) || src.carve(s, carve_batch(c)) > 0 {
            return Some(s);
        }
        src.set_aside(s);
        s = src.next_slab(c)?;
    }
}
