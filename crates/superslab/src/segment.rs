//! Segments, slabs, the per-owner slab heap and the process-wide segment pool.

use crate::map::ENTRY_SEGMENT;
use crate::{AddressMap, OwnerTag, PageSource, SEGMENT_SIZE, SLICES, SLICE_SHIFT, SLICE_SIZE};
use core::cell::UnsafeCell;
use core::ptr::{null_mut, NonNull};
use core::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use os_pages::PAGE;
use ptr_conversion::{BlockBase, BlockLayout, BlockState, Header, SizeClass};
use tiny_layout::CLASS_COUNT;
use tls_sll::Stack;

/// Slices a fresh segment offers (slice 0 holds the metadata).
const USABLE_SLICES: u64 = !1;

/// Where a slab stands with its owner.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum SlabState {
    /// Not a live slab: a free slice, a slab's tail slice, the metadata slice, or a
    /// record that belongs to no heap (an owner's "no slab yet" stand-in).
    Closed,
    /// The slab malloc pops its class's blocks from (the owner's one slab per class).
    Current,
    /// In its class's queue: it has a free block or blocks left to carve.
    Queued,
    /// In its class's queue, at its front, with every block back (none outside it): the
    /// first reused, and closed after a purge delay ([`SlabHeap::close_empty`]). No free
    /// can reach it (no block of it is held), so another thread may close it while it
    /// excludes the owner's `SlabHeap` calls.
    Empty,
    /// Set aside with nothing to give: no free block, nothing to carve. Its map entries
    /// carry [`crate::FULL_FLAG`], so the first free of one of its blocks takes the slow
    /// path, which queues the slab again.
    Full,
}

/// Metadata of one slab (or of a slice that is a slab's tail, or free): 128 bytes, one
/// per slice, at the start of the segment.
///
/// The slab's free blocks form one LIFO list: malloc pops from the list of its class's
/// current slab and every free pushes onto the list of the block's own slab, so blocks
/// never move between lists one by one, and a block freed is the next one its slab
/// hands out. `used`, the blocks the program holds, goes up with a pop and down with a
/// push, and a push that takes it to 0 says so: the slab is empty, and can be closed at
/// once ([`SlabHeap::emptied`]). Only the owner's thread writes these fields (see the crate
/// invariants); other threads read those of the second line to check a block they free,
/// and hand the block to the owner through its remote queue. Found from a block's
/// address with [`Segment::slab_of`], or with [`Segment::slab_at`] from the record address
/// that the slab's map entries carry.
///
/// Two cache lines: the first holds what the owner's pops and pushes write (the list's
/// head, the used and handed-out counts) and its slow paths' fields; the second what
/// other threads read to check and hand over a block they free (the block-start test's
/// words, a copy of the list's key, the class), which the owner writes only when it opens
/// or carves the slab, and the list's bounds. A thread freeing another's block thus reads
/// a line its owner does not keep writing: with both in the first line, `xmalloc`
/// (producers' blocks freed by consumers) took 2–13% longer in paired runs
/// (`docs/performance.md`).
#[repr(C, align(128))]
pub struct Slab<L: BlockLayout> {
    /// The free blocks.
    list: Stack<L, true>,
    /// Two counts in one word, so that a pop updates both with one `add`:
    /// - its low [`USED_BITS`] bits, *used*: the blocks the program holds (carved, not on
    ///   `list`, not parked), plus 1 while the slab is current (its owner's reference): a
    ///   free never takes a current slab's count to 0, so a class whose one block comes
    ///   and goes makes no cold call. A free decrements these bits alone (a 16-bit
    ///   decrement, whose zero flag says "empty"); they never borrow from the rest, as a
    ///   slab holds at most [`MAX_CAPACITY`] blocks.
    /// - the bits above, *handed*: blocks handed out since the slab opened (statistics;
    ///   its frees are these less the blocks used), counted by malloc, not by free:
    ///   counting frees took `sh6bench` 8% longer (0.82 against 0.76 s; two
    ///   read-modify-writes of the record per free).
    counts: u64,
    /// Blocks carved so far (the bump pointer is `start + carved × stride`).
    carved: u32,
    /// Blocks the slab holds in all.
    capacity: u32,
    /// Index of this slab's first slice (itself for a slab's head or a free slice).
    head: u8,
    /// Slices spanned; 0 when this slice starts no slab.
    slices: u8,
    state: SlabState,
    /// The slab's pages came fresh from the OS (zero until carved).
    fresh: bool,
    /// Empty at the last purge tick already (see [`SlabHeap::close_empty`]).
    aged: bool,
    /// The sparse sweep found nothing more to park at `swept_frees` (see
    /// [`SlabHeap::sweep_sparse`]).
    swept: bool,
    /// The low 32 bits of [`frees`](Self::frees) when the sparse sweep last looked at the
    /// slab.
    swept_frees: u32,
    next: *mut Slab<L>,
    prev: *mut Slab<L>,
    /// The block-start test ([`holds_block`](Self::holds_block)): `mul` for the stride,
    /// `base = start × mul`, `limit = carved × (mul × stride mod 2^64)` (0 while closed).
    /// Written by the owner only (atomically: other threads' frees test them too).
    mul: AtomicU64,
    base: AtomicU64,
    limit: AtomicU64,
    /// The list's key (`list.key()`), for other threads: a copy in the second line.
    shared_key: usize,
    /// Bit i set: the slab's page i (of [`PAGE`] bytes) was given back to the OS, and
    /// the carved blocks overlapping it are parked: free, but on no list.
    purged: u64,
    /// Where the list's blocks lie: `[list_lo, list_lo + list_span)`, the carved part of
    /// the slab (span 0 while closed). [`pop`](Self::pop) tests the list's head against it
    /// before it reads the head's link.
    list_lo: usize,
    list_span: usize,
    /// In the second line too: the checked build's free of another thread's block reads it.
    class_: SizeClass,
}

/// Bits of [`Slab`]'s `counts` that hold the blocks used.
const USED_BITS: u32 = 16;
const USED_MASK: u64 = (1 << USED_BITS) - 1;
/// Most blocks in a slab: the used count (twice a slab's blocks after a corrupted list,
/// plus the owner's reference) stays within its bits.
pub(crate) const MAX_CAPACITY: usize = (1 << (USED_BITS - 1)) - 1;

/// log2 of a slab record's size (two cache lines; records are aligned to it).
pub const RECORD_SHIFT: usize = 7;
static_assertions::const_assert!(
    core::mem::size_of::<Slab<tiny_layout::Plain>>() == 1 << RECORD_SHIFT
);
static_assertions::const_assert!(
    core::mem::size_of::<Slab<tiny_layout::Guarded>>() == 1 << RECORD_SHIFT
);
// The owner's writes in the first line, what other threads' frees read in the second.
static_assertions::const_assert!(
    core::mem::offset_of!(Slab<tiny_layout::Plain>, prev) + 8 <= 64
        && core::mem::offset_of!(Slab<tiny_layout::Plain>, mul) == 64
        && core::mem::offset_of!(Slab<tiny_layout::Guarded>, mul) == 64
);

impl<L: BlockLayout> Slab<L> {
    /// A record that belongs to no heap and has no free block: a stand-in for "no current
    /// slab yet", so that a pop from it needs no null test (it finds the list empty).
    pub const fn detached() -> Self {
        Slab {
            list: Stack::new(),
            counts: 0,
            carved: 0,
            mul: AtomicU64::new(0),
            base: AtomicU64::new(0),
            limit: AtomicU64::new(0),
            capacity: 0,
            // SAFETY: class 0 exists.
            class_: unsafe { SizeClass::new_unchecked(0) },
            head: 0,
            slices: 0,
            state: SlabState::Closed,
            fresh: false,
            aged: false,
            swept: false,
            swept_frees: 0,
            next: null_mut(),
            prev: null_mut(),
            purged: 0,
            list_lo: 0,
            list_span: 0,
            shared_key: 0,
        }
    }
    /// The size class of the slab's blocks.
    #[inline(always)]
    pub fn class(&self) -> SizeClass {
        // A zeroed entry holds class 0, which is valid too.
        self.class_
    }
    /// Class index.
    #[inline(always)]
    fn class_index(&self) -> usize {
        self.class_.index()
    }
    /// The owner token of the slab (the owning heap's address, its segment's owner); 0
    /// for a slice that starts no live slab, so `owner() == my_token` alone proves the
    /// slab is live and mine.
    #[inline(always)]
    pub fn owner(&self) -> usize {
        if !self.is_live() {
            return 0;
        }
        let seg = (self as *const Self as usize & !(SEGMENT_SIZE - 1)) as *const Segment<L>;
        // SAFETY: a live slab's record lies in its segment's metadata, which is live.
        unsafe { (*seg).owner }
    }
    /// True if this entry is the head of a live slab.
    #[inline(always)]
    pub fn is_live(&self) -> bool {
        self.slices != 0
    }
    /// Where the slab stands with its owner.
    pub fn state(&self) -> SlabState {
        self.state
    }
    /// The key of the slab's list (`ptr_conversion::list_key` of its start): what its links
    /// are XORed with, and the free mark of its free blocks (`BlockBase::is_marked_free`),
    /// also while they wait in a pending batch or a remote queue.
    #[inline(always)]
    pub fn list_key(&self) -> usize {
        self.list.key()
    }
    /// [`list_key`](Self::list_key) from the record's second line, for other threads.
    #[inline(always)]
    pub fn shared_list_key(&self) -> usize {
        self.shared_key
    }
    /// Address of the slab's first block.
    #[inline(always)]
    pub fn start(&self) -> usize {
        (self as *const Self as usize & !(SEGMENT_SIZE - 1)) + ((self.head as usize) << SLICE_SHIFT)
    }

    /// Pops a free block (malloc's fast path): the list's head, which the last free of
    /// one of its blocks pushed. `None` when the list is empty (and always for
    /// [`detached`](Self::detached)).
    ///
    /// # Safety
    /// The caller is the slab's owner (or the record is a detached one).
    #[inline(always)]
    pub unsafe fn pop(&mut self) -> Option<BlockBase<L>> {
        let b = if L::CHECKED {
            // Checked layouts check their links as they read them.
            self.list.peek()?
        } else {
            // The head came from a link decoded with the slab's key: in the carved part of
            // this slab, unless the link was overwritten after its block was freed. One
            // test says "in this slab" and "not empty": null lies below any slab.
            let head = self.list.peek().map_or(0, |b| b.addr());
            if head.wrapping_sub(self.list_lo) >= self.list_span {
                return self.pop_missed(head);
            }
            // SAFETY: an address in the carved part of this slab (the test above): not null.
            // 16-aligned unless a link was forged with the slab's key, which the test
            // does not catch (nor did a block-start test catch a forged link to a live
            // block); testing the alignment too (a rotate) cost `sh6bench` 6%.
            unsafe { block_at::<L>(head) }
        };
        self.list.pop();
        // SAFETY: `b` was on our list: free and ours, handed out now.
        unsafe { b.clear_free_mark() };
        self.count_handed();
        Some(b)
    }

    /// Whether `addr` is the start of a block of this slab carved so far: one multiply,
    /// one subtract and one compare (no division). `(addr - start) × mul mod 2^64` is
    /// `i × e` for the block start `i × stride` (`e = mul × stride mod 2^64`, in
    /// `1 ..= 2 × stride`), and at least `mul > 2^64 / stride` for any other offset below
    /// 2^20 (see `geometry`), so `< carved × e` holds exactly for carved block starts; a
    /// carved block's start plus a nonzero multiple of 2^47 (an address above user space)
    /// is refused too (`geometry`), but other addresses at or above 2^47 may pass: callers
    /// test addresses below 2^47.
    /// Always false for a record that is not a live slab's. Any thread may ask (the
    /// answer for a slab of another owner is as of that owner's last carve it has seen).
    #[inline(always)]
    pub fn holds_block(&self, addr: usize) -> bool {
        let r = Ordering::Relaxed;
        (addr as u64)
            .wrapping_mul(self.mul.load(r))
            .wrapping_sub(self.base.load(r))
            < self.limit.load(r)
    }

    /// [`holds_block`](Self::holds_block) for the owner's thread: the same test on plain
    /// loads (only the owner writes these fields, so its reads race with nothing), which
    /// the compiler folds into the multiply, subtract and compare.
    ///
    /// # Safety
    /// The caller is the slab's owner (or the record is a detached one).
    #[inline(always)]
    pub unsafe fn holds_block_as_owner(&self, addr: usize) -> bool {
        // SAFETY: only the owner's thread (the caller's) writes these fields.
        let (mul, base, limit) = unsafe {
            (
                *self.mul.as_ptr(),
                *self.base.as_ptr(),
                *self.limit.as_ptr(),
            )
        };
        (addr as u64).wrapping_mul(mul).wrapping_sub(base) < limit
    }

    /// [`pop`](Self::pop)'s head is not in the carved part of the slab: the list is empty
    /// (`head` is 0), or its head is not a block of this slab (reported).
    #[cold]
    #[inline(never)]
    fn pop_missed(&mut self, head: usize) -> Option<BlockBase<L>> {
        if head == 0 {
            return None;
        }
        self.list_corrupted(None)
    }

    /// A link of the list decoded to something that is not a block of this slab (a write
    /// after free): reported (a misuse), and the list dropped from there (its blocks are
    /// leaked: still counted as held, so the slab is never closed under them). `after`
    /// is the block whose link was bad, if known.
    #[cold]
    #[inline(never)]
    fn list_corrupted(&mut self, after: Option<BlockBase<L>>) -> Option<BlockBase<L>> {
        let at = after.map_or(self.start(), |b| b.addr());
        ptr_conversion::misuse(&ptr_conversion::Report {
            what: ptr_conversion::Corruption::FreeListCorrupted,
            addr: at,
            class: Some(self.class_.index() as u8),
            expected: 0,
            found: 0,
        });
        match after {
            // SAFETY: `b` is a valid block of the list (checked before), free and ours.
            Some(b) => unsafe { self.list.set_next(b, None) },
            None => self.list.clear(),
        }
        // The blocks dropped stay counted as held (however many): the count can no
        // longer reach 0, so the slab is never closed, its memory leaked with them.
        self.set_used_raw(self.used_raw() + self.capacity);
        None
    }

    /// Checks every link of the list (before a walk over it): a link that is not a block
    /// of this slab is reported and the list cut there. The owner's slow paths only.
    fn check_list(&mut self) {
        if L::CHECKED {
            return; // checked layouts verify each link as it is read
        }
        let mut prev = None;
        let mut next = self.list.peek();
        while let Some(b) = next {
            // SAFETY: the owner's slow path (this function's contract).
            if !unsafe { self.holds_block_as_owner(b.addr()) } {
                self.list_corrupted(prev);
                return;
            }
            // SAFETY: `b` is a block of this slab on its list.
            next = unsafe { self.list.next_of(b) };
            prev = Some(b);
        }
    }

    /// Pushes a block of this slab that is being freed (free's fast path, and the owner's
    /// slow paths), with the statistics count. Returns false when the slab is now empty
    /// (the caller hands it to [`SlabHeap::emptied`]). Does not look at the state: a full
    /// slab's caller must use [`SlabHeap::free_block`], which also queues it.
    ///
    /// # Safety
    /// The caller is the owner; `b` is a block of this slab, carved and handed out, and
    /// now free (in no list).
    #[inline(always)]
    #[must_use]
    pub unsafe fn push(&mut self, b: BlockBase<L>) -> bool {
        // SAFETY: forwarded: a free block of ours, in no list.
        unsafe { self.list.push(b) };
        self.drop_used() != 0
    }

    /// A free block ready on the list?
    #[inline(always)]
    pub fn has_free(&self) -> bool {
        !self.list.is_empty()
    }

    /// Blocks that can still be carved.
    fn uncarved(&self) -> u32 {
        self.capacity() - self.carved
    }

    /// Carves up to `max` never-used blocks onto the free list (their links written, and
    /// in a checked layout a Free header); returns how many. The first block carved is the
    /// list's head, so the slab fills in address order. With nothing left to carve, the
    /// parked blocks come back instead ([`unpark`](Self::unpark)), all of them.
    fn carve(&mut self, max: u32) -> u32 {
        if self.uncarved() == 0 {
            return self.unpark();
        }
        let n = self.uncarved().min(max);
        let stride = L::stride(self.class_);
        let first = self.start() + self.carved as usize * stride;
        let mut i = n as usize;
        while i > 0 {
            i -= 1;
            // SAFETY: [first, first + n × stride) holds uncarved blocks of this slab.
            let b = unsafe { block_at::<L>(first + i * stride) };
            self.init_carved(b);
            // SAFETY: a fresh block of ours, in no list.
            unsafe { self.list.push(b) };
        }
        self.carved += n;
        self.set_limit();
        n
    }

    /// The block-start test's limit and the list's bounds for the blocks carved so far
    /// (see [`holds_block`] and [`pop`](Self::pop)).
    fn set_limit(&mut self) {
        let stride = L::stride(self.class_);
        let e = self.mul.load(Ordering::Relaxed).wrapping_mul(stride as u64);
        self.limit.store(self.carved as u64 * e, Ordering::Relaxed);
        self.list_lo = self.start();
        self.list_span = self.carved as usize * stride;
    }

    /// Carves one block for the caller (not through the list), and tells whether its
    /// bytes are known to be zero (fresh pages): for `calloc`.
    /// The caller's list is empty (its pop found nothing).
    fn carve_one(&mut self) -> Option<(BlockBase<L>, bool)> {
        if self.uncarved() == 0 {
            self.unpark();
            // SAFETY: our slab (the caller's).
            return unsafe { self.pop() }.map(|b| (b, false));
        }
        let addr = self.start() + self.carved as usize * L::stride(self.class_);
        // SAFETY: the next uncarved block of this slab.
        let b = unsafe { block_at::<L>(addr) };
        self.init_carved(b);
        // SAFETY: a fresh block handed out: stale bytes of a closed slab may look like a
        // free mark.
        unsafe { b.clear_free_mark() };
        self.carved += 1;
        self.set_limit();
        self.count_handed();
        Some((b, self.fresh))
    }

    /// A newly carved block gets a Free header in checked layouts (carved memory may hold
    /// stale bytes of a closed slab).
    fn init_carved(&self, b: BlockBase<L>) {
        if L::CHECKED {
            // SAFETY: a freshly carved block of ours.
            unsafe {
                b.write_header(Header {
                    state: BlockState::Free,
                    class: self.class_.index() as u8,
                    requested: 0,
                })
            };
        }
    }

    /// Whether some blocks are parked on purged pages ([`SlabHeap::sweep_sparse`]).
    pub fn has_parked(&self) -> bool {
        self.purged != 0
    }

    /// The slab's pages given back to the OS with their blocks parked (bit i: the page
    /// at `start() + i × PAGE`): no block overlapping one is held by the program.
    pub fn parked_pages(&self) -> u64 {
        self.purged
    }

    /// Pages of [`PAGE`] bytes the slab spans.
    fn page_count(&self) -> usize {
        (self.slices as usize) << (SLICE_SHIFT - PAGE_SHIFT)
    }

    /// The slab's pages that its block `i` overlaps (bit j: page j).
    fn pages_of_block(&self, i: usize) -> u64 {
        let stride = L::stride(self.class_);
        let first = (i * stride) >> PAGE_SHIFT;
        let last = ((i + 1) * stride - 1) >> PAGE_SHIFT;
        bit_run(first, last + 1 - first)
    }

    /// The carved blocks overlapping page `p` (by index; empty past the carved part).
    fn blocks_of_page(&self, p: usize) -> core::ops::Range<usize> {
        let stride = L::stride(self.class_);
        let first = (p << PAGE_SHIFT) / stride;
        let end = (((p + 1) << PAGE_SHIFT) - 1) / stride + 1;
        first..end.min(self.carved as usize)
    }

    /// Whether sweeping the slab is likely to pay: it is sparse (at most a quarter of its
    /// blocks held), small enough for the page mask and the sweep's block map, and, were
    /// its free blocks spread at random, the pages expected all free would give back at
    /// least [`MIN_YIELD`] bytes per free block walked.
    fn worth_sweeping(&self) -> bool {
        if self.page_count() > 64
            || self.capacity as usize > MAX_SWEPT_BLOCKS
            || self.used_raw() * 4 > self.capacity
            || self.carved == 0
        {
            return false;
        }
        let stride = L::stride(self.class_);
        let free = 1.0 - self.used_raw() as f64 / self.carved as f64;
        let pages = ((self.carved as usize * stride) >> PAGE_SHIFT)
            .saturating_sub(self.purged.count_ones() as usize);
        let expected = (pages * PAGE) as f64 * powi(free, PAGE.div_ceil(stride));
        expected >= ((self.carved - self.used_raw()) as usize * MIN_YIELD) as f64
    }

    /// Parks the blocks of every carved page whose blocks are all free (on the list or
    /// parked already): they leave the list, the page is given back to the OS and marked
    /// in `purged`. Pages that uncarved blocks overlap are left alone (carving must find
    /// its blocks in no list). The used and handed-out counts do not change: parked blocks
    /// are free. Returns the pages given back.
    fn park_free_pages<P: PageSource>(&mut self, pages: &P) -> u32 {
        debug_assert!(self.capacity as usize <= MAX_SWEPT_BLOCKS && self.page_count() <= 64);
        self.check_list();
        let start = self.start();
        let stride = L::stride(self.class_);
        let mut free = [0u64; MAX_SWEPT_BLOCKS / 64];
        // The walk below goes from block to block in free order, a cache miss each:
        // asking for every carved block's link in address order first lets the loads
        // overlap (and the hardware prefetcher stream them).
        for i in 0..self.carved as usize {
            prefetch(start + i * stride + L::LINK_OFFSET);
        }
        for b in self.list.iter() {
            let i = (b.addr() - start) / stride;
            // `get_mut`: a list block lies in the slab, so `i` is in range (no index check
            // may panic here, inside malloc).
            if let Some(w) = free.get_mut(i / 64) {
                *w |= 1 << (i % 64);
            }
        }
        let carved_end = self.carved as usize * stride;
        let all_carved = self.carved == self.capacity;
        let mut new = 0u64;
        for p in 0..self.page_count() {
            let (lo, hi) = (p << PAGE_SHIFT, (p + 1) << PAGE_SHIFT);
            if lo >= carved_end || (hi > carved_end && !all_carved) {
                break;
            }
            if self.purged & (1 << p) == 0
                && self.blocks_of_page(p).all(|i| {
                    free.get(i / 64).is_some_and(|w| w & (1 << (i % 64)) != 0)
                        || self.pages_of_block(i) & self.purged != 0
                })
            {
                new |= 1 << p;
            }
        }
        if new == 0 {
            return 0;
        }
        let mut list = core::mem::take(&mut self.list);
        list.retain(|b| self.pages_of_block((b.addr() - start) / stride) & new == 0);
        self.list = list;
        self.purged |= new;
        each_run(new, |first, len| {
            // SAFETY: every block overlapping these pages is free and in no list now: no
            // byte of them is in use.
            unsafe {
                pages.purge(
                    NonNull::new_unchecked((start + (first << PAGE_SHIFT)) as *mut u8),
                    len << PAGE_SHIFT,
                )
            };
        });
        new.count_ones()
    }

    /// Puts every parked block back on the list, re-initialised as carving does (their
    /// pages read zero now), lowest address first; clears `purged`. Returns how many.
    fn unpark(&mut self) -> u32 {
        if self.purged == 0 {
            // Nothing written: this may be the shared detached record.
            return 0;
        }
        let stride = L::stride(self.class_);
        let start = self.start();
        let mut bits = core::mem::replace(&mut self.purged, 0);
        // Blocks at or above this index are back already (one may straddle two pages).
        let mut pushed_from = usize::MAX;
        let mut n = 0;
        while bits != 0 {
            let p = 63 - bits.leading_zeros() as usize;
            bits &= !(1 << p);
            let blocks = self.blocks_of_page(p);
            for i in (blocks.start..blocks.end.min(pushed_from)).rev() {
                // SAFETY: a carved block of this slab.
                let b = unsafe { block_at::<L>(start + i * stride) };
                self.init_carved(b);
                // SAFETY: a parked block is free, ours, and in no list.
                unsafe { self.list.push(b) };
                n += 1;
            }
            pushed_from = pushed_from.min(blocks.start);
        }
        n
    }

    /// End of the carved part of the slab: every block below it has been handed out at
    /// least once.
    pub fn carved_end(&self) -> usize {
        self.start() + self.carved as usize * L::stride(self.class_)
    }

    /// Blocks the program holds (carved, neither on the list nor parked).
    pub fn used(&self) -> u32 {
        self.used_raw() - (self.state == SlabState::Current) as u32
    }

    /// The used count with the owner's reference (see `counts`).
    #[inline(always)]
    fn used_raw(&self) -> u32 {
        (self.counts & USED_MASK) as u32
    }

    /// Sets the used count (at most [`USED_MASK`]), keeping the handed-out count.
    fn set_used_raw(&mut self, used: u32) {
        self.counts = (self.counts & !USED_MASK) | (used as u64).min(USED_MASK);
    }

    /// Blocks handed out since the slab opened.
    fn handed(&self) -> u64 {
        self.counts >> USED_BITS
    }

    /// One more block handed out and held: one `add` to both counts.
    #[inline(always)]
    fn count_handed(&mut self) {
        self.counts = self.counts.wrapping_add((1 << USED_BITS) + 1);
    }

    /// One block less held; returns the used count left. The count's own 16 bits are
    /// decremented (the handed-out count above them is untouched; the caller holds a
    /// block, so the count is not 0). A pop of the same slab right after it waits for
    /// this store to reach the cache (its 64-bit `add` cannot take a 16-bit store's
    /// value); decrementing the whole word instead cost batch frees more (see
    /// `docs/performance.md`, "The fast paths").
    #[inline(always)]
    fn drop_used(&mut self) -> u16 {
        const LOW: usize = if cfg!(target_endian = "little") { 0 } else { 6 };
        // SAFETY: the used count's bits are the 16-bit word at byte `LOW` of `counts`,
        // which `self` owns (`&mut`).
        let used =
            unsafe { &mut *(core::ptr::addr_of_mut!(self.counts) as *mut u16).byte_add(LOW) };
        *used -= 1;
        *used
    }

    /// Drops the owner's reference of a slab that stops being current; returns whether
    /// the program holds none of its blocks.
    fn leave_current(&mut self) -> bool {
        debug_assert!(self.state == SlabState::Current && self.used_raw() > 0);
        self.drop_used() == 0
    }
    /// Blocks freed into the slab since it opened: those handed out less those the
    /// program holds (0 after a corrupted list, whose lost blocks count as held).
    pub fn frees(&self) -> u64 {
        self.handed().saturating_sub(self.used() as u64)
    }
    /// Blocks the slab holds in all.
    pub fn capacity(&self) -> u32 {
        self.capacity
    }
    /// The BASE of the block containing `addr`, if `addr` lies inside a block that has been
    /// carved from this live slab. Used by the checked build and by aligned frees.
    pub fn block_containing(&self, addr: usize) -> Option<BlockBase<L>> {
        let start = self.start();
        if !self.is_live() || addr < start || addr >= self.carved_end() {
            return None;
        }
        let stride = L::stride(self.class());
        let base = start + (addr - start) / stride * stride;
        // SAFETY: `base` is the start of a carved block of this slab.
        Some(unsafe { block_at::<L>(base) })
    }
}

/// log2 of [`PAGE`], the unit in which a sparse slab's free memory goes back to the OS.
const PAGE_SHIFT: usize = 12;
static_assertions::const_assert!(PAGE == 1 << PAGE_SHIFT);
/// Bytes a sweep expects to give back per free block it walks, at least (a page per 256
/// blocks): in small classes few pages are all free, and walking costs a cache miss a
/// block.
const MIN_YIELD: usize = 16;
/// Most blocks in a slab that [`SlabHeap::sweep_sparse`] looks into (the 16-byte class of
/// the smallest slab has 4096): its map of free blocks lives on the stack.
const MAX_SWEPT_BLOCKS: usize = 4096;

/// Bits `first .. first + len` (`len` ≥ 1) of a slice or page mask.
fn bit_run(first: usize, len: usize) -> u64 {
    (if len >= 64 {
        u64::MAX
    } else {
        (1u64 << len) - 1
    }) << first
}

/// Calls `f(first, len)` for each run of set bits of `bits`, lowest first.
fn each_run(mut bits: u64, mut f: impl FnMut(usize, usize)) {
    while bits != 0 {
        let first = bits.trailing_zeros() as usize;
        let len = (!(bits >> first)).trailing_zeros() as usize;
        f(first, len);
        bits &= !bit_run(first, len);
    }
}

/// Asks for the cache line at `addr` (no effect on memory; a hint only).
#[inline(always)]
fn prefetch(addr: usize) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch never faults and changes no memory, whatever the address.
    unsafe {
        core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(addr as *const i8)
    };
    #[cfg(not(target_arch = "x86_64"))]
    let _ = addr;
}

/// `x` to the power `n`, by squaring (`f64::powi` is not in `core`).
fn powi(mut x: f64, mut n: usize) -> f64 {
    let mut r = 1.0;
    while n > 0 {
        if n & 1 == 1 {
            r *= x;
        }
        x *= x;
        n >>= 1;
    }
    r
}

/// The multiplier of the block-start test ([`Slab::holds_block`]) for blocks `stride`
/// bytes apart: the least odd number above `2^64 / stride`, so that `e = mul × stride mod
/// 2^64` lies in `1 ..= 2 × stride`. For an offset `i × stride + r` (`0 < r < stride`,
/// offset below 2^20, `stride` below 2^19), `r × mul` lies in `[mul, 2^64 − 2^64/stride +
/// 2 × stride]` and adding `i × e < 2^21` cannot wrap it: every such offset maps at or
/// above `mul > 2^44`, every block start `i` to `i × e < 2^21`. Odd, so that a block start
/// plus any nonzero multiple of 2^47 below 2^64 (an address above user space whose low
/// bits are a block's) maps to `i × e + 2^47 × (h × mul mod 2^17)`, at least 2^47: refused.
pub(crate) const fn geometry(stride: usize) -> u64 {
    // `u64::MAX / stride + 1` is `ceil(2^64 / stride)`, or `2^64 / stride` exactly for a
    // power of two (which `| 1` moves above it).
    (u64::MAX / stride as u64 + 1) | 1
}
static_assertions::const_assert!(tiny_layout::MAX_SLAB_BYTES <= 1 << 20);
// `Slab::pop`'s bounds test refuses null: a slab lies above the first segment, which is
// never ours, and spans less than a segment.
static_assertions::const_assert!(tiny_layout::MAX_SLAB_BYTES < SEGMENT_SIZE);

/// The block whose BASE is `addr`.
///
/// # Safety
/// `addr` is a block start inside one of our slabs (non-null).
#[inline(always)]
unsafe fn block_at<L: BlockLayout>(addr: usize) -> BlockBase<L> {
    // SAFETY: forwarded (a slab address is never null).
    unsafe { BlockBase::from_raw(NonNull::new_unchecked(addr as *mut u8)) }
}

/// The metadata at the start of every segment (in slice 0): first the slab records, one
/// per slice (record 0, the metadata slice's, is never live), then the segment's own.
#[repr(C)]
pub struct Segment<L: BlockLayout> {
    slabs: [Slab<L>; SLICES],
    owner: usize,
    next: *mut Segment<L>,
    prev: *mut Segment<L>,
    /// Bit i set: slice i is free.
    free_slices: u64,
    /// Bit i set: slice i is free but its pages were not yet given back (purged).
    dirty_slices: u64,
    /// Bit i set: slice i was already dirty at the owner's previous purge tick (and has
    /// stayed free since), so it has been free for at least the purge delay.
    aged_slices: u64,
}

static_assertions::const_assert!(core::mem::size_of::<Segment<tiny_layout::Plain>>() <= SLICE_SIZE);
// Metadata stays under 1% of the heap: the header (about 4 KiB) is all of slice 0 that is
// ever written, so the rest of the slice reserves address space but never becomes resident.
static_assertions::const_assert!(
    core::mem::size_of::<Segment<tiny_layout::Guarded>>() <= SEGMENT_SIZE / 100
);

impl<L: BlockLayout> Segment<L> {
    /// The segment containing `addr`.
    ///
    /// # Safety
    /// `addr` must lie in a live segment (the [`AddressMap`] said so).
    #[inline(always)]
    pub unsafe fn of(addr: usize) -> *mut Segment<L> {
        (addr & !(SEGMENT_SIZE - 1)) as *mut Segment<L>
    }

    /// The slab whose blocks include `addr`, whatever slice of it `addr` is in.
    ///
    /// # Safety
    /// As for [`of`](Self::of).
    #[inline(always)]
    pub unsafe fn slab_of<'a>(addr: usize) -> &'a Slab<L> {
        // SAFETY: forwarded from the caller.
        unsafe { &*Self::slab_ptr(addr) }
    }

    /// The slab whose record is at address `record`, as a live slab's map entry gives it
    /// (`entry ^ tag`, or [`crate::slab_record`]): the slab of an address found with one
    /// map load and no other (the free fast path).
    ///
    /// # Safety
    /// `record` came from the map entry of a live slab's slice (and is used only while
    /// the caller can rely on the slab's segment staying mapped, as for [`of`](Self::of)).
    #[inline(always)]
    pub unsafe fn slab_at(record: usize) -> *mut Slab<L> {
        record as *mut Slab<L>
    }

    #[inline(always)]
    unsafe fn slab_ptr(addr: usize) -> *mut Slab<L> {
        // SAFETY: the caller vouches `addr` is in a live segment whose metadata is
        // initialised; `head` is always a valid index (< SLICES).
        unsafe {
            let seg = Self::of(addr);
            let idx = (addr >> SLICE_SHIFT) & (SLICES - 1);
            let head = (*seg).slabs[idx].head as usize & (SLICES - 1);
            core::ptr::addr_of_mut!((*seg).slabs[head])
        }
    }

    #[allow(clippy::mut_from_ref)]
    unsafe fn slab_mut<'a>(addr: usize) -> &'a mut Slab<L> {
        // SAFETY: as `slab_of`; the caller is the owner (exclusive access).
        unsafe { &mut *Self::slab_ptr(addr) }
    }

    /// Resets the metadata of a segment about to be (re)used by `owner`.
    unsafe fn init(seg: *mut Segment<L>, owner: usize) {
        // SAFETY: the caller owns the fresh or recycled segment exclusively.
        unsafe {
            core::ptr::write_bytes(seg.cast::<u8>(), 0, core::mem::size_of::<Segment<L>>());
            (*seg).owner = owner;
            (*seg).free_slices = USABLE_SLICES;
            for (i, s) in (*seg).slabs.iter_mut().enumerate() {
                s.head = i as u8;
            }
        }
    }
}

/// Finds a run of `n` free slices aligned to `n` (a power of two) in `free`.
fn find_run(free: u64, n: usize) -> Option<usize> {
    let n = n.clamp(1, SLICES);
    let run = bit_run(0, n);
    let mut i = 0;
    while i + n <= SLICES {
        if (free >> i) & run == run {
            return Some(i);
        }
        i += n;
    }
    None
}

/// A lock for cold, short critical sections (segment pool, heap registry, large tier):
/// it spins for a few microseconds while the holder is likely still running, then sleeps
/// on a futex ([`os_pages::wait`]) until the holder's `unlock` wakes it. A waiter therefore
/// never spins for long while the holder is descheduled, and a process with more threads
/// than cores does not burn its time slices spinning.
///
/// No guard and no poisoning: `lock` and `unlock` must pair up on the same thread, and
/// nothing between them may panic or allocate through the lock's owner.
///
/// ```
/// use superslab::SpinLock;
/// static LOCK: SpinLock = SpinLock::new();
/// LOCK.lock();
/// // ... a short critical section ...
/// LOCK.unlock();
/// ```
pub struct SpinLock {
    /// [`FREE`], [`HELD`], or [`CONTENDED`] (held, and a waiter may be asleep on it).
    state: AtomicU32,
}

const FREE: u32 = 0;
const HELD: u32 = 1;
const CONTENDED: u32 = 2;
/// Pause hints a waiter spins before it sleeps: a few microseconds, about what a short
/// critical section takes when its holder runs.
const SPINS: u32 = 200;

impl SpinLock {
    /// Unlocked.
    pub const fn new() -> Self {
        SpinLock {
            state: AtomicU32::new(FREE),
        }
    }
    /// Acquires (Acquire ordering): at once if free, else after a bounded spin, else
    /// asleep until an `unlock` wakes this thread.
    #[inline]
    pub fn lock(&self) {
        if self
            .state
            .compare_exchange(FREE, HELD, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            self.lock_contended();
        }
    }
    #[cold]
    fn lock_contended(&self) {
        for _ in 0..SPINS {
            match self.state.load(Ordering::Relaxed) {
                FREE if self
                    .state
                    .compare_exchange_weak(FREE, HELD, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok() =>
                {
                    return
                }
                // Others sleep already: spinning would only delay joining them.
                CONTENDED => break,
                _ => {}
            }
            core::hint::spin_loop();
        }
        // Marked contended, so that the holder's unlock wakes a sleeper; taken when the
        // swap finds it free (then still marked contended: a spare wake at worst).
        while self.state.swap(CONTENDED, Ordering::Acquire) != FREE {
            os_pages::wait(&self.state, CONTENDED);
        }
    }
    /// Acquires if free (Acquire ordering) and returns true; false at once if held.
    pub fn try_lock(&self) -> bool {
        self.state.load(Ordering::Relaxed) == FREE
            && self
                .state
                .compare_exchange(FREE, HELD, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
    }
    /// Releases (Release ordering), waking one sleeping waiter if there may be one.
    #[inline]
    pub fn unlock(&self) {
        if self.state.swap(FREE, Ordering::Release) == CONTENDED {
            os_pages::wake(&self.state, 1);
        }
    }
    /// Forces the lock free: only for a fork child, where the holder no longer exists
    /// (nor does any waiter: only the forking thread survives).
    pub fn reset(&self) {
        self.state.store(FREE, Ordering::Relaxed);
    }
}

impl Default for SpinLock {
    fn default() -> Self {
        Self::new()
    }
}

/// Process-wide counters of the segment pool (relaxed atomics, updated on slow paths).
#[derive(Default)]
pub struct PoolStats {
    /// Segments mapped from the OS.
    pub segments_mapped: AtomicU64,
    /// Segments unmapped.
    pub segments_unmapped: AtomicU64,
    /// Most segments mapped at once.
    pub segments_peak: AtomicU64,
    /// Slabs opened.
    pub slabs_opened: AtomicU64,
    /// Slabs closed.
    pub slabs_closed: AtomicU64,
    /// Bytes given back to the OS with `purge`.
    pub bytes_purged: AtomicU64,
    /// Of those, bytes of sparse slabs' free pages ([`SlabHeap::sweep_sparse`]).
    pub bytes_parked: AtomicU64,
}

impl PoolStats {
    const fn new() -> Self {
        PoolStats {
            segments_mapped: AtomicU64::new(0),
            segments_unmapped: AtomicU64::new(0),
            segments_peak: AtomicU64::new(0),
            slabs_opened: AtomicU64::new(0),
            slabs_closed: AtomicU64::new(0),
            bytes_purged: AtomicU64::new(0),
            bytes_parked: AtomicU64::new(0),
        }
    }
    fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }
}

/// The process-wide pool of empty segments, and the only place segments are mapped and
/// unmapped (and published in or retracted from the [`AddressMap`]).
///
/// A segment given back stays resident ("dirty") at first: a program that frees a large
/// structure and builds the next one takes its segments back without faulting their pages
/// in again. [`decay`](Self::decay) purges the dirty ones once the program has stopped
/// taking and giving back segments for a decay period, or after [`LONG_TICKS`] periods in
/// any case; purged ones stay mapped ("clean") for reuse. A heap opening a slab takes
/// the most recently given back dirty segment first, then a clean one, then maps one.
///
/// Shared by every [`SlabHeap`] (it is `Sync` when its page source is); usually a
/// `static`, since it needs a `&'static AddressMap`. See the [crate example](crate).
pub struct SegmentPool<P: PageSource + 'static> {
    pages: P,
    map: &'static AddressMap,
    lock: SpinLock,
    cache: UnsafeCell<PoolCache>,
    max_cached: usize,
    /// Dirty segments cached, and all cached segments (mirrors of the cache's counts,
    /// read without the lock).
    dirty: AtomicUsize,
    cached_count: AtomicUsize,
    /// The earliest time of the next [`decay`](Self::decay) tick.
    next_tick_ms: AtomicU64,
    stats: PoolStats,
}

/// A stack of cached segments, linked through their first word (the second word of a
/// dirty one holds the decay tick at which it was given back).
struct CachedStack {
    top: *mut u8,
    count: usize,
}

struct PoolCache {
    dirty: CachedStack,
    clean: CachedStack,
    /// Decay ticks so far.
    tick: u64,
    /// Segments acquired and released so far, and the same count at the last tick: equal
    /// means the pool has been quiet for a whole tick.
    activity: u64,
    activity_at_tick: u64,
}

/// Decay periods after which a dirty segment is purged even while the pool is busy.
pub const LONG_TICKS: u64 = 20;

impl CachedStack {
    const fn new() -> Self {
        CachedStack {
            top: null_mut(),
            count: 0,
        }
    }
    /// # Safety
    /// `seg` is an unused segment of the pool's (its metadata slice is free to overwrite).
    unsafe fn push(&mut self, seg: *mut u8, tick: u64) {
        // SAFETY: (caller) the segment's first two words are ours to write.
        unsafe {
            seg.cast::<*mut u8>().write(self.top);
            seg.cast::<u64>().add(1).write(tick);
        }
        self.top = seg;
        self.count += 1;
    }
    fn pop(&mut self) -> Option<NonNull<u8>> {
        let top = NonNull::new(self.top)?;
        // SAFETY: cached segments store the next one in their first word.
        self.top = unsafe { top.as_ptr().cast::<*mut u8>().read() };
        self.count -= 1;
        Some(top)
    }
}

// SAFETY: `cache` is only accessed under `lock`.
unsafe impl<P: PageSource + Sync> Sync for SegmentPool<P> {}

impl<P: PageSource + 'static> SegmentPool<P> {
    /// A pool keeping at most `max_cached` empty segments (dirty and clean).
    pub const fn new(pages: P, map: &'static AddressMap, max_cached: usize) -> Self {
        SegmentPool {
            pages,
            map,
            lock: SpinLock::new(),
            cache: UnsafeCell::new(PoolCache {
                dirty: CachedStack::new(),
                clean: CachedStack::new(),
                tick: 0,
                activity: 0,
                activity_at_tick: 0,
            }),
            max_cached,
            dirty: AtomicUsize::new(0),
            cached_count: AtomicUsize::new(0),
            next_tick_ms: AtomicU64::new(0),
            stats: PoolStats::new(),
        }
    }
    /// The page source.
    pub fn pages(&self) -> &P {
        &self.pages
    }
    /// The address map.
    pub fn map(&self) -> &'static AddressMap {
        self.map
    }
    /// The pool's counters.
    pub fn stats(&self) -> &PoolStats {
        &self.stats
    }
    /// The pool's lock (held across `fork` by the facade's atfork handlers).
    pub fn lock(&self) -> &SpinLock {
        &self.lock
    }

    /// Runs `f` on the cache under the lock.
    fn with_cache<R>(&self, f: impl FnOnce(&mut PoolCache) -> R) -> R {
        self.lock.lock();
        // SAFETY: under the lock.
        let r = f(unsafe { &mut *self.cache.get() });
        // SAFETY: as above.
        let c = unsafe { &*self.cache.get() };
        self.dirty.store(c.dirty.count, Ordering::Relaxed);
        self.cached_count
            .store(c.dirty.count + c.clean.count, Ordering::Relaxed);
        self.lock.unlock();
        r
    }

    /// An empty segment (a cached one, dirty first, else freshly mapped and published),
    /// and whether its data pages may be dirty (else they read zero).
    fn acquire(&self) -> Option<(NonNull<u8>, bool)> {
        let cached = self.with_cache(|c| {
            c.activity += 1;
            c.dirty
                .pop()
                .map(|s| (s, true))
                .or_else(|| c.clean.pop().map(|s| (s, false)))
        });
        if cached.is_some() {
            return cached;
        }
        let p = self.pages.map(SEGMENT_SIZE, SEGMENT_SIZE)?;
        if !self.map.publish_segment(p.as_ptr() as usize, &self.pages) {
            // SAFETY: our fresh mapping, never handed out.
            unsafe { self.pages.unmap(p, SEGMENT_SIZE) };
            return None;
        }
        PoolStats::add(&self.stats.segments_mapped, 1);
        let live = self.stats.segments_mapped.load(Ordering::Relaxed)
            - self.stats.segments_unmapped.load(Ordering::Relaxed);
        self.stats.segments_peak.fetch_max(live, Ordering::Relaxed);
        Some((p, false))
    }

    /// Takes back an empty segment: cached dirty (resident), or unmapped when the cache
    /// is full.
    ///
    /// # Safety
    /// No block of the segment is in use and nothing refers to it any more.
    unsafe fn release(&self, seg: NonNull<u8>) {
        let cached = self.with_cache(|c| {
            c.activity += 1;
            if c.dirty.count + c.clean.count >= self.max_cached {
                return false;
            }
            // SAFETY: (caller) the segment is ours and unused.
            unsafe { c.dirty.push(seg.as_ptr(), c.tick) };
            true
        });
        if !cached {
            // SAFETY: (caller) nothing uses the segment.
            unsafe { self.unmap(seg) };
        }
    }

    /// Retracts and unmaps a segment nothing uses.
    ///
    /// # Safety
    /// Nothing uses `seg`, and it is in no stack.
    unsafe fn unmap(&self, seg: NonNull<u8>) {
        self.map.retract_segment(seg.as_ptr() as usize);
        // SAFETY: (caller).
        unsafe { self.pages.unmap(seg, SEGMENT_SIZE) };
        PoolStats::add(&self.stats.segments_unmapped, 1);
    }

    /// Whether no segment is cached (the next one needed is mapped). One relaxed load.
    pub fn is_empty(&self) -> bool {
        self.cached_count.load(Ordering::Relaxed) == 0
    }

    /// Whether some cached segment is still resident (a later [`decay`](Self::decay)
    /// has pages to give back). One relaxed load.
    pub fn has_dirty(&self) -> bool {
        self.dirty.load(Ordering::Relaxed) != 0
    }

    /// One decay tick, if `period_ms` has passed since the last one (else nothing; of
    /// callers racing for a tick, one does it): purges the dirty segments given back
    /// before the previous tick, if no segment was acquired or released since then, and
    /// those given back [`LONG_TICKS`] ticks ago or earlier in any case; a period of 0
    /// purges every dirty segment. They stay cached, clean. The system calls run outside
    /// the lock. Returns the bytes purged.
    pub fn decay(&self, now_ms: u64, period_ms: u64) -> usize {
        let due = self.next_tick_ms.load(Ordering::Relaxed);
        if now_ms < due
            || self
                .next_tick_ms
                .compare_exchange(
                    due,
                    now_ms + period_ms,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_err()
        {
            return 0;
        }
        // Unlink the ripe segments into a private stack.
        let mut ripe = CachedStack::new();
        self.with_cache(|c| {
            c.tick += 1;
            let quiet = c.activity == c.activity_at_tick;
            c.activity_at_tick = c.activity;
            let (mut prev, mut p): (*mut u8, *mut u8) = (null_mut(), c.dirty.top);
            while !p.is_null() {
                // SAFETY: a dirty cached segment: its first words are the link and tick.
                let (next, given) =
                    unsafe { (p.cast::<*mut u8>().read(), p.cast::<u64>().add(1).read()) };
                let age = c.tick - given;
                if period_ms == 0 || (age >= 2 && (quiet || age >= LONG_TICKS)) {
                    if prev.is_null() {
                        c.dirty.top = next;
                    } else {
                        // SAFETY: as above.
                        unsafe { prev.cast::<*mut u8>().write(next) };
                    }
                    c.dirty.count -= 1;
                    // SAFETY: unlinked from the dirty stack: ours alone.
                    unsafe { ripe.push(p, 0) };
                } else {
                    prev = p;
                }
                p = next;
            }
        });
        let mut purged = 0;
        let mut p = ripe.top;
        while !p.is_null() {
            // SAFETY: a segment unlinked above; slice 0 keeps the link.
            unsafe {
                let next = p.cast::<*mut u8>().read();
                self.pages.purge(
                    NonNull::new_unchecked(p.add(SLICE_SIZE)),
                    SEGMENT_SIZE - SLICE_SIZE,
                );
                self.with_cache(|c| c.clean.push(p, 0));
                p = next;
            }
            purged += SEGMENT_SIZE - SLICE_SIZE;
        }
        PoolStats::add(&self.stats.bytes_purged, purged as u64);
        purged
    }

    /// Unmaps every cached segment; returns the bytes released.
    pub fn trim(&self) -> usize {
        let mut released = 0;
        while let Some(seg) = self.with_cache(|c| c.dirty.pop().or_else(|| c.clean.pop())) {
            // SAFETY: a cached segment is unused; it is in no stack any more.
            unsafe { self.unmap(seg) };
            released += SEGMENT_SIZE;
        }
        released
    }

    /// Empty segments currently cached (dirty and clean).
    pub fn cached(&self) -> usize {
        self.with_cache(|c| c.dirty.count + c.clean.count)
    }
}

/// The slabs of one owner: its segments and, per class, the queue of slabs with blocks
/// to give.
///
/// A class's blocks come from its **current** slab (kept by the caller, e.g. in a thread
/// heap's slot, and popped from directly with [`Slab::pop`]); when its list runs empty,
/// [`carve`](Self::carve) adds never-used blocks, [`set_full`](Self::set_full) sets an
/// exhausted one aside and [`next_slab`](Self::next_slab) gives the next one: the front of
/// the class's queue, else a newly opened slab. Frees push onto the block's own slab
/// ([`Slab::push`] on the fast path, [`free_block`](Self::free_block) for a full slab,
/// which queues it again). A queued slab is closed when its last block comes back
/// ([`emptied`](Self::emptied)).
///
/// The owner token is any `usize` unique among live owners (the facade uses the address
/// of the heap that embeds this). All methods must be called by the owner's thread only,
/// except [`purge`](Self::purge), which another thread may call
/// while it excludes the owner's calls.
///
/// See the [crate example](crate) for taking and returning blocks.
pub struct SlabHeap<L: BlockLayout> {
    owner: usize,
    /// The tag written to the address map for our live slabs (none: `ENTRY_SEGMENT`).
    tag: Option<OwnerTag>,
    segments: *mut Segment<L>,
    /// Per class, the queued slabs, oldest first (`queue_tail` is the last).
    queue: [*mut Slab<L>; CLASS_COUNT],
    queue_tail: [*mut Slab<L>; CLASS_COUNT],
    /// Per class, the frees counted by slabs since closed (statistics).
    closed_frees: [u64; CLASS_COUNT],
    /// Some segment has dirty free slices.
    dirty: bool,
    /// Slabs emptied since a slab was last taken (see [`began_shrinking`](Self::began_shrinking)).
    emptied_since_take: u32,
    /// Slabs in state [`SlabState::Empty`].
    empty_slabs: u32,
    /// Where the next [`sweep_sparse`](Self::sweep_sparse) resumes: a segment of ours
    /// (null: the first) and a slice index in it.
    sweep_segment: *mut Segment<L>,
    sweep_slice: usize,
    /// The last purge tick (0: none yet).
    last_tick: u64,
}

/// Slabs a heap empties without taking one before it counts as shrinking (see
/// [`SlabHeap::began_shrinking`]).
pub const SHRINKING_EMPTIES: u32 = 4;

/// What a [`SlabHeap::sweep_sparse`] step did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sweep {
    /// Bytes given back to the OS.
    pub bytes: usize,
    /// Slabs whose free lists it walked.
    pub swept: u32,
    /// It reached the end of the segment list: the next call starts a new pass.
    pub pass_done: bool,
}

impl<L: BlockLayout> SlabHeap<L> {
    /// A heap with no segments; `owner` is set by [`set_owner`](Self::set_owner).
    pub const fn new() -> Self {
        SlabHeap {
            owner: 0,
            tag: None,
            segments: null_mut(),
            queue: [null_mut(); CLASS_COUNT],
            queue_tail: [null_mut(); CLASS_COUNT],
            closed_frees: [0; CLASS_COUNT],
            dirty: false,
            emptied_since_take: 0,
            empty_slabs: 0,
            sweep_segment: null_mut(),
            sweep_slice: 0,
            last_tick: 0,
        }
    }

    /// Sets the owner token (before the first allocation).
    pub fn set_owner(&mut self, owner: usize) {
        debug_assert!(self.segments.is_null());
        self.owner = owner;
    }

    /// Sets the tag the address map gives this heap's live slabs (before the first
    /// allocation), so that one map load tells owner and slab (see [`OwnerTag`]).
    /// Without one, their slices read as plain segment slices.
    pub fn set_map_tag(&mut self, tag: OwnerTag) {
        debug_assert!(self.segments.is_null());
        self.tag = Some(tag);
    }

    /// The owner token.
    pub fn owner(&self) -> usize {
        self.owner
    }

    /// True when the heap holds no segment.
    pub fn is_empty(&self) -> bool {
        self.segments.is_null()
    }

    /// Carves up to `max` never-used blocks of our live slab `s` onto its list; returns how
    /// many (0: nothing left to carve, or `s` is a [`Slab::detached`] stand-in).
    ///
    /// # Safety
    /// `s` is one of our live slabs or a detached record.
    pub unsafe fn carve<P: PageSource>(
        &mut self,
        pool: &SegmentPool<P>,
        s: *mut Slab<L>,
        max: u32,
    ) -> u32 {
        // SAFETY: (caller) ours, or detached (whose capacity is 0).
        let s = unsafe { &mut *s };
        let parked = s.has_parked();
        let n = s.carve(max);
        self.unparked(pool, s, parked);
        n
    }

    /// After a carve of `s`, which had parked blocks (`parked`): if they came back, its map
    /// entries lose the flag they carried for them (see [`publish`](Self::publish)).
    fn unparked<P: PageSource>(&self, pool: &SegmentPool<P>, s: &Slab<L>, parked: bool) {
        if parked && !s.has_parked() {
            self.publish(pool.map, s);
        }
    }

    /// Carves one block of our live slab `s` for the caller, outside the list, with
    /// whether its bytes are known to be zero (carved from fresh pages: `calloc`).
    ///
    /// # Safety
    /// As for [`carve`](Self::carve).
    pub unsafe fn carve_one<P: PageSource>(
        &mut self,
        pool: &SegmentPool<P>,
        s: *mut Slab<L>,
    ) -> Option<(BlockBase<L>, bool)> {
        // SAFETY: (caller) ours, or detached (whose capacity is 0).
        let s = unsafe { &mut *s };
        let parked = s.has_parked();
        let r = s.carve_one();
        self.unparked(pool, s, parked);
        r
    }

    /// Sets aside our current slab `s` when it has nothing left to give (no free block,
    /// nothing to carve): it becomes [`SlabState::Full`] and its map entries say so, so
    /// that the first free of one of its blocks queues it again; it is queued again at
    /// once if it does have a block. A detached record is left alone.
    ///
    /// # Safety
    /// `s` is one of our live slabs or a detached record, and not queued.
    pub unsafe fn set_full<P: PageSource>(&mut self, pool: &SegmentPool<P>, s: *mut Slab<L>) {
        // SAFETY: (caller).
        let s = unsafe { &mut *s };
        if !s.is_live() {
            return;
        }
        let empty = s.leave_current();
        if empty {
            self.push_empty(s);
            return;
        }
        if s.has_free() || s.uncarved() > 0 || s.has_parked() {
            self.enqueue(s);
            return;
        }
        s.state = SlabState::Full;
        self.publish(pool.map, s);
    }

    /// The next slab for class `c`, now [`SlabState::Current`]: the oldest queued one,
    /// else a newly opened one (with nothing carved yet). `None`: out of memory.
    pub fn next_slab<P: PageSource>(
        &mut self,
        pool: &SegmentPool<P>,
        c: SizeClass,
    ) -> Option<*mut Slab<L>> {
        let s = self.queue[c.index()];
        let s = if s.is_null() {
            self.open_slab(pool, c)?
        } else {
            // SAFETY: queued slabs are live and ours.
            self.dequeue(unsafe { &mut *s });
            s
        };
        self.emptied_since_take = 0;
        // SAFETY: as above; the owner's reference (see `Slab::used`).
        unsafe {
            (*s).state = SlabState::Current;
            (*s).set_used_raw((*s).used_raw() + 1);
        }
        Some(s)
    }

    /// Takes back a block of ours freed on a slow path: a free of a full slab's block, a
    /// block drained from the remote queue, a free the fast path could not take. A full
    /// slab is queued again, an emptied one handed to [`emptied`](Self::emptied). A block
    /// on a parked page is free already: that double free is reported and changes
    /// nothing. Returns the block's class.
    ///
    /// # Safety
    /// `b` is a block of a slab owned by this heap, handed out and now free (or parked);
    /// the caller is the owner's thread.
    pub unsafe fn free_block<P: PageSource>(
        &mut self,
        pool: &SegmentPool<P>,
        b: BlockBase<L>,
    ) -> SizeClass {
        // SAFETY: the caller vouches `b` is in one of our live slabs.
        let s = unsafe { Segment::<L>::slab_mut(b.addr()) };
        debug_assert!(s.is_live() && s.owner() == self.owner);
        let c = s.class();
        if s.purged != 0 {
            let i = (b.addr() - s.start()) / L::stride(c);
            if s.pages_of_block(i) & s.purged != 0 {
                // No held block overlaps a parked page: this one is free already (and
                // the slab's used count may be 0: the caller's contract is broken).
                ptr_conversion::misuse(&ptr_conversion::Report {
                    what: ptr_conversion::Corruption::DoubleFree,
                    addr: b.to_user().addr(),
                    class: Some(c.index() as u8),
                    expected: 0,
                    found: 0,
                });
                return c; // left alone
            }
        }
        debug_assert!(s.used() > 0);
        // SAFETY: the block is free and ours.
        let holds = unsafe { s.push(b) };
        if s.state == SlabState::Full {
            self.enqueue(s);
            self.publish(pool.map, s);
        }
        if !holds {
            // SAFETY: our slab, every block of it back.
            unsafe { self.emptied(s) };
        }
        c
    }

    /// Takes back, for an owner that is not taking them back itself (asleep, or busy
    /// without slow paths), the blocks other threads handed to it in `queue` whose slabs
    /// are [`SlabState::Full`]: each goes onto its slab's list, and each such slab is then
    /// queued again, or becomes Empty if every block came back, as
    /// [`free_block`](Self::free_block) does. Blocks of current and queued slabs go back
    /// onto `queue` for the owner: its fast paths touch those slabs without a lock. A full
    /// slab is safe to fill: the owner's fast paths never touch it (its map entries send
    /// every free of its blocks to the slow path), and its entries say "not full" only
    /// once every block is on its list (a `Release` store after the pushes). Skips the
    /// walk when nothing was pushed since the previous call put its remainder back.
    /// `valid` vets each link before it is followed, as for [`RemoteQueue::drain`];
    /// `counted` gets each block's class (statistics). Returns the blocks taken back.
    ///
    /// [`RemoteQueue::drain`]: crate::RemoteQueue::drain
    ///
    /// # Safety
    /// `queue` is this heap's remote queue, holding only blocks of our live slabs; the
    /// caller excludes the owner's `SlabHeap` calls and the owner's draining of `queue`
    /// (the facade's heap lock), as for [`purge`](Self::purge).
    pub unsafe fn adopt_remote<P: PageSource>(
        &mut self,
        pool: &SegmentPool<P>,
        queue: &crate::RemoteQueue<L>,
        valid: impl Fn(*mut u8) -> bool,
        mut counted: impl FnMut(SizeClass),
    ) -> u32 {
        if !queue.has_news() {
            return 0; // empty, or only what the previous call put back
        }
        let mut rest: Option<(BlockBase<L>, BlockBase<L>)> = None;
        // The full slabs that got blocks, linked through `next` (a full slab is in no
        // queue); a full slab has no free block, so its first push tells it joins.
        let mut refilled: *mut Slab<L> = null_mut();
        let mut adopted = 0;
        queue.drain(valid, |b| {
            // SAFETY: (caller) a block of one of our live slabs.
            let s = unsafe { Segment::<L>::slab_mut(b.addr()) };
            if s.state == SlabState::Full {
                if !s.has_free() {
                    s.next = refilled;
                    refilled = s;
                }
                // SAFETY: a free block of our full slab, which no other thread touches
                // (see above). `used` may reach 0: handled below.
                let _ = unsafe { s.push(b) };
                counted(s.class());
                adopted += 1;
            } else {
                // SAFETY: the drain gave us `b`; it joins the chain we put back, with its
                // slab's free mark (a chain head's next-chain word had replaced it).
                unsafe {
                    b.set_link(rest.map(|(head, _)| head));
                    b.set_free_mark(s.list_key());
                }
                rest = Some((b, rest.map_or(b, |(_, tail)| tail)));
            }
        });
        if let Some((head, tail)) = rest {
            // SAFETY: blocks we drained from `queue`, handed back to it.
            unsafe { queue.put_back(head, tail) };
        }
        // Queued again (their entries now say "not full"), or Empty if every block is back.
        while !refilled.is_null() {
            // SAFETY: a slab of ours linked above.
            let s = unsafe { &mut *refilled };
            refilled = s.next;
            self.enqueue(s);
            self.publish(pool.map, s);
            if s.used_raw() == 0 {
                // SAFETY: our slab, every block of it back.
                unsafe { self.emptied(s) };
            }
        }
        adopted
    }

    /// The last block out of our slab `s`, queued or full (never current: see
    /// [`Slab::used`]), came back ([`Slab::push`] said so). It becomes
    /// [`SlabState::Empty`]: moved to the front of its class's queue, reused first, closed
    /// by [`close_empty`](Self::close_empty) once it has stayed empty for a purge delay (or
    /// at once, for an idle owner or a heap that must grow).
    ///
    /// # Safety
    /// `s` is a live slab of ours whose blocks are all back.
    pub unsafe fn emptied(&mut self, s: *mut Slab<L>) {
        // SAFETY: (caller).
        let s = unsafe { &mut *s };
        debug_assert_eq!(s.used(), 0);
        if matches!(s.state, SlabState::Queued | SlabState::Full) {
            if s.state == SlabState::Queued {
                self.dequeue(s);
            }
            self.push_empty(s);
            self.emptied_since_take = self.emptied_since_take.saturating_add(1);
        }
    }

    /// Puts the empty slab `s` (in no queue) at the front of its class's queue.
    fn push_empty(&mut self, s: &mut Slab<L>) {
        let c = s.class_index();
        s.prev = null_mut();
        s.next = self.queue[c];
        if s.next.is_null() {
            self.queue_tail[c] = s;
        } else {
            // SAFETY: a queued slab of ours.
            unsafe { (*s.next).prev = s };
        }
        self.queue[c] = s;
        s.state = SlabState::Empty;
        s.aged = false;
        self.empty_slabs += 1;
    }

    /// Closes the [`SlabState::Empty`] slabs (the front of each class's queue): those that
    /// were empty at the previous call already (each stayed empty for at least the time
    /// between two calls: the owner's purge ticks), or all of them with `all` (an idle
    /// owner, `trim`, a heap that must grow). Their slices become free, dirty; segments
    /// left without a slab go back to the pool. Touches only Empty slabs, which no free
    /// reaches: another thread may call it while it excludes the owner's `SlabHeap` calls.
    pub fn close_empty<P: PageSource>(&mut self, pool: &SegmentPool<P>, all: bool) {
        if self.empty_slabs == 0 {
            return;
        }
        for c in 0..CLASS_COUNT {
            let mut p = self.queue[c];
            while !p.is_null() {
                // SAFETY: slabs in our queues are live and ours.
                let s = unsafe { &mut *p };
                if s.state != SlabState::Empty {
                    break; // the Empty slabs are the queue's front
                }
                p = s.next;
                if all || s.aged {
                    self.dequeue(s);
                    // SAFETY: an Empty slab holds every block.
                    unsafe { self.close_slab(pool, s) };
                } else {
                    s.aged = true;
                }
            }
        }
    }

    /// Whether class `c` has a queued slab (else the next [`next_slab`](Self::next_slab)
    /// opens one).
    pub fn has_queued(&self, c: SizeClass) -> bool {
        !self.queue[c.index()].is_null()
    }

    /// Whether the heap holds memory a later purge tick or [`close_empty`](Self::close_empty)
    /// would give back: dirty free slices or Empty slabs.
    pub fn holds_free_memory(&self) -> bool {
        self.dirty || self.empty_slabs != 0
    }

    /// Gives back our current slab `s` (the caller no longer pops from it: a flush): it
    /// is queued, or closed if all its blocks are free. A detached record is left alone.
    ///
    /// # Safety
    /// `s` is our current slab or a detached record.
    pub unsafe fn release_current<P: PageSource>(
        &mut self,
        pool: &SegmentPool<P>,
        s: *mut Slab<L>,
    ) {
        // SAFETY: (caller).
        let s = unsafe { &mut *s };
        if !s.is_live() {
            return;
        }
        if s.leave_current() {
            // SAFETY: no block of the slab is outside it.
            unsafe { self.close_slab(pool, s) };
        } else {
            self.enqueue(s);
        }
    }

    /// Closes every queued slab whose blocks have all come back and returns every empty
    /// segment (e.g. at thread exit). Current slabs, and slabs still holding blocks, stay.
    pub fn release_empty<P: PageSource>(&mut self, pool: &SegmentPool<P>) {
        self.close_empty_slabs(pool);
    }

    /// Closes the queued slabs whose blocks have all come back (their slices stay resident
    /// until purged).
    pub fn close_empty_slabs<P: PageSource>(&mut self, pool: &SegmentPool<P>) {
        for c in 0..CLASS_COUNT {
            let mut p = self.queue[c];
            while !p.is_null() {
                // SAFETY: slabs in our queues are live and ours.
                let s = unsafe { &mut *p };
                p = s.next;
                if s.used() == 0 {
                    self.dequeue(s);
                    // SAFETY: the slab has no block outside it.
                    unsafe { self.close_slab(pool, s) };
                }
            }
        }
    }

    /// Calls `f(class, used, frees)` for every live slab of ours (blocks held by the
    /// program, blocks freed into it since it opened), then `f(class, 0, frees)` for the
    /// frees of each class's closed slabs: a class's frees and live blocks, for statistics.
    pub fn for_each_count(&self, mut f: impl FnMut(SizeClass, u32, u64)) {
        let mut seg = self.segments;
        while !seg.is_null() {
            // SAFETY: segments in our list are live and ours.
            let sg = unsafe { &*seg };
            for s in sg.slabs.iter().filter(|s| s.is_live()) {
                f(s.class(), s.used(), s.frees());
            }
            seg = sg.next;
        }
        for c in SizeClass::all() {
            f(c, 0, self.closed_frees[c.index()]);
        }
    }

    /// Whether the heap has just begun shrinking: the slab emptied last was the
    /// [`SHRINKING_EMPTIES`]th since it last took a slab (a working set being dropped).
    /// Its owner then sets its current slabs aside ([`set_full`](Self::set_full)), so that
    /// each empties like any other slab, as the program frees its blocks, and becomes
    /// Empty: a thread that drops everything and sleeps leaves only slabs another thread
    /// may close. Its next allocation of a class takes a slab again (the same, often).
    pub fn began_shrinking(&self) -> bool {
        self.emptied_since_take == SHRINKING_EMPTIES
    }

    /// Whether some free slice is still resident (a later [`purge`](Self::purge) has
    /// pages to give back).
    pub fn has_dirty(&self) -> bool {
        self.dirty
    }

    /// Whether a call of [`purge`](Self::purge) at `now_ms` would be a tick.
    pub fn tick_due(&self, now_ms: u64, delay_ms: u64) -> bool {
        delay_ms == 0 || now_ms.saturating_sub(self.last_tick) >= delay_ms
    }

    /// A purge tick, at most once per `delay_ms` (every call when 0): gives the pages of
    /// free slices back to the OS once they have stayed free for at least `delay_ms` (0:
    /// every dirty slice at once). Cheap between ticks. Returns the bytes purged.
    ///
    /// With a delay, a tick purges the slices that were already dirty at the previous
    /// tick and have stayed free since (so each was free for at least one whole delay),
    /// and marks the other dirty ones aged. A slice that is reopened loses both marks, so
    /// a heap that keeps closing and reopening slabs reuses resident pages instead of
    /// purging and faulting them in again.
    ///
    /// It reads and writes only the segments' slice bitmaps, never a slab record or list,
    /// so another thread may run it for an owner that is busy elsewhere or asleep,
    /// provided it excludes the owner's other `SlabHeap` calls (the facade's heap lock;
    /// the owner's fast paths make none).
    pub fn purge<P: PageSource>(
        &mut self,
        pool: &SegmentPool<P>,
        now_ms: u64,
        delay_ms: u64,
    ) -> usize {
        if !self.tick_due(now_ms, delay_ms) {
            return 0;
        }
        self.last_tick = now_ms;
        if !self.dirty {
            return 0;
        }
        let mut purged = 0;
        let mut still_dirty = false;
        let mut seg = self.segments;
        while !seg.is_null() {
            // SAFETY: segments in our list are live and ours.
            let sg = unsafe { &mut *seg };
            let ripe = if delay_ms == 0 {
                sg.dirty_slices
            } else {
                sg.dirty_slices & sg.aged_slices
            };
            each_run(ripe, |first, len| {
                // SAFETY: these slices are free (no block in use) and in our segment.
                unsafe {
                    let p = NonNull::new_unchecked((seg as *mut u8).add(first << SLICE_SHIFT));
                    pool.pages().purge(p, len << SLICE_SHIFT);
                }
                purged += len << SLICE_SHIFT;
                PoolStats::add(&pool.stats.bytes_purged, (len << SLICE_SHIFT) as u64);
            });
            sg.dirty_slices &= !ripe;
            sg.aged_slices = sg.dirty_slices;
            still_dirty |= sg.dirty_slices != 0;
            seg = sg.next;
        }
        self.dirty = still_dirty;
        purged
    }

    /// Gives back the free pages of sparse slabs, a bounded step at a time: looks at up
    /// to `looks` slab records from where the last call stopped (to the end of the segment
    /// list at most, so that each call looks at a slab once), and in the queued slabs that
    /// are sparse and have had no free since the previous look (quiet for a call at
    /// least) and since they were last swept, parks the blocks of every page whose blocks
    /// are all free and gives the page back to the OS (the slab's `purged` mask). It walks
    /// the free lists of such slabs, about `walk` blocks in all at most (it stops after
    /// the slab that reaches it). Parked blocks come back when their slab has nothing
    /// else left to give ([`carve`](Self::carve)). Says how much it gave back, how many
    /// slabs it swept and whether it reached the end of the segment list (the next call
    /// starts a new pass).
    ///
    /// Owner's thread only, unlike [`purge`](Self::purge): it rewrites slab lists, which
    /// the owner's frees push onto without a lock.
    pub fn sweep_sparse<P: PageSource>(
        &mut self,
        pool: &SegmentPool<P>,
        mut looks: u32,
        mut walk: u32,
    ) -> Sweep {
        if self.sweep_segment.is_null() {
            self.sweep_segment = self.segments;
            self.sweep_slice = 0;
        }
        let mut pages = 0;
        let mut swept = 0;
        while looks > 0 && walk > 0 && !self.sweep_segment.is_null() {
            // SAFETY: the cursor is a segment of ours (`release_segment` moves it off one
            // that leaves).
            let sg = unsafe { &mut *self.sweep_segment };
            if self.sweep_slice >= SLICES {
                self.sweep_segment = sg.next;
                self.sweep_slice = 0;
                continue;
            }
            // `% SLICES`: the test above keeps it in range; this keeps index checks out.
            let s = &mut sg.slabs[self.sweep_slice % SLICES];
            self.sweep_slice += (s.slices as usize).max(1);
            looks -= 1;
            if !s.is_live() || s.state != SlabState::Queued || !s.worth_sweeping() {
                continue;
            }
            let frees = s.frees() as u32;
            if frees != s.swept_frees {
                (s.swept_frees, s.swept) = (frees, false);
            } else if !s.swept {
                s.swept = true;
                swept += 1;
                walk = walk.saturating_sub(s.carved - s.used_raw());
                let parked = s.park_free_pages(pool.pages());
                if parked > 0 {
                    // Frees of its blocks now take the slow path, which tells a double
                    // free of a parked block (see `free_block`).
                    self.publish(pool.map, s);
                }
                pages += parked as usize;
            }
        }
        let bytes = pages << PAGE_SHIFT;
        PoolStats::add(&pool.stats.bytes_purged, bytes as u64);
        PoolStats::add(&pool.stats.bytes_parked, bytes as u64);
        Sweep {
            bytes,
            swept,
            pass_done: self.sweep_segment.is_null(),
        }
    }

    /// Writes `s`'s map entries for its state: flagged full while it is full or has
    /// parked pages (so that frees of its blocks take the slow path).
    fn publish(&self, map: &AddressMap, s: &Slab<L>) {
        let entry = match self.tag {
            Some(tag) => tag.entry(
                s as *const Slab<L> as usize,
                s.state == SlabState::Full || s.purged != 0,
            ),
            None => ENTRY_SEGMENT,
        };
        map.set_slices(s.start(), s.slices as usize, entry);
    }

    /// Queues `s` last in its class's queue.
    fn enqueue(&mut self, s: &mut Slab<L>) {
        let c = s.class_index();
        s.next = null_mut();
        s.prev = self.queue_tail[c];
        if s.prev.is_null() {
            self.queue[c] = s;
        } else {
            // SAFETY: a queued slab of ours.
            unsafe { (*s.prev).next = s };
        }
        self.queue_tail[c] = s;
        s.state = SlabState::Queued;
    }

    fn dequeue(&mut self, s: &mut Slab<L>) {
        debug_assert!(matches!(s.state, SlabState::Queued | SlabState::Empty));
        if s.state == SlabState::Empty {
            self.empty_slabs -= 1;
        }
        let c = s.class_index();
        // SAFETY: neighbours in our queue are live slabs of ours.
        unsafe {
            if s.prev.is_null() {
                self.queue[c] = s.next;
            } else {
                (*s.prev).next = s.next;
            }
            if s.next.is_null() {
                self.queue_tail[c] = s.prev;
            } else {
                (*s.next).prev = s.prev;
            }
        }
        s.next = null_mut();
        s.prev = null_mut();
    }

    fn open_slab<P: PageSource>(
        &mut self,
        pool: &SegmentPool<P>,
        c: SizeClass,
    ) -> Option<*mut Slab<L>> {
        let n = c.slab_bytes() / SLICE_SIZE;
        // Resident (dirty) free slices first: reusing them costs no page faults.
        let mut found = None;
        if self.dirty {
            found = self.find_slices(n, |sg| sg.free_slices & sg.dirty_slices);
        }
        if found.is_none() {
            found = self.find_slices(n, |sg| sg.free_slices);
        }
        let (seg, first) = match found {
            Some(f) => f,
            None => {
                let (p, dirty) = pool.acquire()?;
                let p = p.as_ptr().cast::<Segment<L>>();
                // SAFETY: the pool gave us this segment exclusively.
                unsafe {
                    Segment::init(p, self.owner);
                    if dirty {
                        // Its pages hold what the last owner left: not zero, and not
                        // purged yet (the delay applies as to any free slice).
                        (*p).dirty_slices = USABLE_SLICES;
                        self.dirty = true;
                    }
                    (*p).next = self.segments;
                    if !self.segments.is_null() {
                        (*self.segments).prev = p;
                    }
                }
                self.segments = p;
                (p, find_run(USABLE_SLICES, n)?)
            }
        };
        // SAFETY: `seg` is ours; slices first..first+n are free.
        let sg = unsafe { &mut *seg };
        let run = bit_run(first, n);
        sg.free_slices &= !run;
        // A free slice without its dirty bit was never used, or was purged since: zero.
        let fresh = sg.dirty_slices & run == 0;
        sg.dirty_slices &= !run;
        sg.aged_slices &= !run;
        for e in sg.slabs.iter_mut().skip(first + 1).take(n - 1) {
            e.head = first as u8;
            e.slices = 0;
        }
        let s = &mut sg.slabs[first & (SLICES - 1)];
        let start = seg as usize + (first << SLICE_SHIFT);
        s.list = Stack::with_key(ptr_conversion::list_key(start));
        s.shared_key = s.list.key();
        s.counts = 0;
        debug_assert!(L::blocks_per_slab(c) <= MAX_CAPACITY);
        s.capacity = L::blocks_per_slab(c) as u32;
        s.carved = 0;
        s.next = null_mut();
        s.prev = null_mut();
        s.class_ = c;
        s.head = first as u8;
        s.slices = n as u8;
        s.state = SlabState::Closed;
        s.fresh = fresh;
        s.purged = 0;
        s.swept = false;
        // Unlike any count of frees: the first look only notes the count.
        s.swept_frees = u32::MAX;
        let mul = geometry(L::stride(c));
        s.mul.store(mul, Ordering::Relaxed);
        s.base
            .store((s.start() as u64).wrapping_mul(mul), Ordering::Relaxed);
        s.set_limit();
        self.publish(pool.map, s);
        PoolStats::add(&pool.stats.slabs_opened, 1);
        Some(s)
    }

    /// The first segment (and slice index) with a run of `n` slices among those `pick`
    /// selects.
    fn find_slices(
        &self,
        n: usize,
        pick: impl Fn(&Segment<L>) -> u64,
    ) -> Option<(*mut Segment<L>, usize)> {
        let mut seg = self.segments;
        while !seg.is_null() {
            // SAFETY: segments in our list are live and ours.
            let sg = unsafe { &*seg };
            if let Some(i) = find_run(pick(sg), n) {
                return Some((seg, i));
            }
            seg = sg.next;
        }
        None
    }

    /// Marks a slab's slices free; returns the segment to the pool when all are free.
    unsafe fn close_slab<P: PageSource>(&mut self, pool: &SegmentPool<P>, s: &mut Slab<L>) {
        let first = s.head as usize;
        let n = s.slices as usize;
        PoolStats::add(&pool.stats.slabs_closed, 1);
        // Every block handed out has come back (`used` is 0; the state may still say
        // Current, see `release_current`).
        self.closed_frees[s.class_index()] += s.handed();
        let start = s.start();
        // Before the slices are free: the owner's fast path must stop seeing them first.
        pool.map.set_slices(start, n, ENTRY_SEGMENT);
        // SAFETY: the slab lives in a segment of ours.
        let seg = unsafe { &mut *Segment::<L>::of(start) };
        for (i, e) in seg.slabs.iter_mut().enumerate().skip(first).take(n) {
            e.head = i as u8;
            e.slices = 0;
            e.state = SlabState::Closed;
            e.limit.store(0, Ordering::Relaxed);
            e.list_span = 0;
            // `owner()` is 0 from now on (`slices` is 0), so a stale free into a closed
            // slab never takes an owner's path.
        }
        let run = bit_run(first, n);
        seg.free_slices |= run;
        seg.dirty_slices |= run;
        self.dirty = true;
        if seg.free_slices == USABLE_SLICES {
            // To the pool, resident: this heap or another takes it back without faults
            // while the program is busy.
            // SAFETY: `seg` is ours with every slice free.
            unsafe { self.release_segment(pool, seg) };
        }
    }

    /// Unlinks a segment with every slice free and gives it back to the pool.
    ///
    /// # Safety
    /// `seg` is in our segment list and no slab of it is live.
    unsafe fn release_segment<P: PageSource>(
        &mut self,
        pool: &SegmentPool<P>,
        seg: *mut Segment<L>,
    ) {
        // SAFETY: neighbours in our segment list are ours (caller).
        unsafe {
            if self.sweep_segment == seg {
                self.sweep_segment = (*seg).next;
                self.sweep_slice = 0;
            }
            if (*seg).prev.is_null() {
                self.segments = (*seg).next;
            } else {
                (*(*seg).prev).next = (*seg).next;
            }
            if !(*seg).next.is_null() {
                (*(*seg).next).prev = (*seg).prev;
            }
            pool.release(NonNull::new_unchecked(seg.cast::<u8>()));
        }
    }
}

impl<L: BlockLayout> Default for SlabHeap<L> {
    fn default() -> Self {
        Self::new()
    }
}
