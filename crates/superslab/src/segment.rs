//! Segments, slabs, the per-owner slab heap and the process-wide segment pool.

use crate::map::ENTRY_SEGMENT;
use crate::{AddressMap, OwnerTag, PageSource, SEGMENT_SIZE, SLICES, SLICE_SHIFT, SLICE_SIZE};
use core::cell::UnsafeCell;
use core::ptr::{null_mut, NonNull};
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use ptr_conversion::{BlockBase, BlockLayout, BlockState, Header, SizeClass};
use tiny_layout::CLASS_COUNT;
use tls_sll::FreeList;

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
    /// Set aside with nothing to give: no free block, nothing to carve. Its map entries
    /// carry [`crate::FULL_FLAG`], so the first free of one of its blocks takes the slow
    /// path, which queues the slab again.
    Full,
}

/// Metadata of one slab (or of a slice that is a slab's tail, or free): 64 bytes, one
/// per slice, at the start of the segment.
///
/// The slab's free blocks form one LIFO list: malloc pops from the list of its class's
/// current slab and every free pushes onto the list of the block's own slab, so blocks
/// never move between lists one by one, and a block freed is the next one its slab
/// hands out. Only the owner's thread touches these fields (see the crate invariants);
/// other threads' frees reach the owner through its remote queue. Found from a block's
/// address with [`Segment::slab_of`], or with [`Segment::slab_at`] from the record offset
/// that the slab's map entries carry.
#[repr(C, align(64))]
pub struct Slab<L: BlockLayout> {
    /// The free blocks (its cap is the slab's capacity: `len` never exceeds it). Its
    /// pushes are the blocks carved and the blocks freed, so its pops and pushes are
    /// counted in two words: malloc's pop and free's push never update the same one.
    list: FreeList<L>,
    /// Blocks carved so far (the bump pointer is `start + carved × stride`).
    carved: u32,
    class_: SizeClass,
    /// Index of this slab's first slice (itself for a slab's head or a free slice).
    head: u8,
    /// Slices spanned; 0 when this slice starts no slab.
    slices: u8,
    state: SlabState,
    /// The slab's pages came fresh from the OS (zero until carved).
    fresh: bool,
    next: *mut Slab<L>,
    prev: *mut Slab<L>,
}

/// log2 of a slab record's size: record offsets in map entries are multiples of it.
pub const RECORD_SHIFT: usize = 6;
static_assertions::const_assert!(
    core::mem::size_of::<Slab<tiny_layout::Plain>>() == 1 << RECORD_SHIFT
);
static_assertions::const_assert!(
    core::mem::size_of::<Slab<tiny_layout::Guarded>>() == 1 << RECORD_SHIFT
);

impl<L: BlockLayout> Slab<L> {
    /// A record that belongs to no heap and has no free block: a stand-in for "no current
    /// slab yet", so that a pop from it needs no null test (it finds the list empty).
    pub const fn detached() -> Self {
        Slab {
            list: FreeList::new(0),
            carved: 0,
            // SAFETY: class 0 exists.
            class_: unsafe { SizeClass::new_unchecked(0) },
            head: 0,
            slices: 0,
            state: SlabState::Closed,
            fresh: false,
            next: null_mut(),
            prev: null_mut(),
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
        self.list.pop()
    }

    /// Pushes a block of this slab that is being freed (free's fast path, and the owner's
    /// slow paths): one LIFO push and the statistics count. Does not look at the state:
    /// a full slab's caller must use [`SlabHeap::free_block`], which also queues it.
    ///
    /// # Safety
    /// The caller is the owner; `b` is a block of this slab, carved and handed out, and
    /// now free (in no list).
    #[inline(always)]
    pub unsafe fn push(&mut self, b: BlockBase<L>) {
        // SAFETY: forwarded: a free block of ours, in no list.
        unsafe { self.list.push(b) };
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
    /// list's head, so the slab fills in address order.
    fn carve(&mut self, max: u32) -> u32 {
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
        n
    }

    /// Carves one block for the caller (not through the list), and tells whether its
    /// bytes are known to be zero (fresh pages): for `calloc`.
    /// The caller's list is empty (its pop found nothing).
    fn carve_one(&mut self) -> Option<(BlockBase<L>, bool)> {
        debug_assert!(self.list.is_empty());
        // Through the list, so that its counts stay those of every block carved.
        self.carve(1);
        let b = self.list.pop()?;
        // SAFETY: a block just carved for the caller: the only word carving wrote in its
        // user bytes, its link, reads zero again (a checked header is rewritten anyway).
        unsafe { b.as_ptr().add(L::LINK_OFFSET).cast::<usize>().write(0) };
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

    /// End of the carved part of the slab: every block below it has been handed out at
    /// least once.
    pub fn carved_end(&self) -> usize {
        self.start() + self.carved as usize * L::stride(self.class_)
    }

    /// Blocks currently outside the slab's list (the program's).
    pub fn used(&self) -> u32 {
        self.carved - self.list.len()
    }
    /// Blocks freed into the slab since it opened (its list's intake less the blocks
    /// carved onto it).
    pub fn frees(&self) -> u64 {
        self.list.pushes() - self.carved as u64
    }
    /// Blocks the slab holds in all.
    pub fn capacity(&self) -> u32 {
        self.list.cap()
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

    /// The record at offset `record` of the segment containing `addr`: with the record
    /// offset a live slab's map entry carries (`entry ^ tag`, or [`crate::slab_record`]),
    /// the slab of `addr`, found with no load (the free fast path).
    ///
    /// # Safety
    /// As for [`of`](Self::of); `record` is below [`crate::FULL_FLAG`] and came from the
    /// map entry of `addr`'s slice.
    #[inline(always)]
    pub unsafe fn slab_at(addr: usize, record: usize) -> *mut Slab<L> {
        ((addr & !(SEGMENT_SIZE - 1)) + record) as *mut Slab<L>
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
    let run = if n >= 64 { u64::MAX } else { (1u64 << n) - 1 };
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
        }
    }
    fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }
}

/// The process-wide pool of empty segments, and the only place segments are mapped and
/// unmapped (and published in or retracted from the [`AddressMap`]).
///
/// Shared by every [`SlabHeap`] (it is `Sync` when its page source is); usually a
/// `static`, since it needs a `&'static AddressMap`. See the [crate example](crate).
pub struct SegmentPool<P: PageSource + 'static> {
    pages: P,
    map: &'static AddressMap,
    lock: SpinLock,
    cached: UnsafeCell<(*mut u8, usize)>,
    max_cached: usize,
    stats: PoolStats,
}

// SAFETY: `cached` is only accessed under `lock`.
unsafe impl<P: PageSource + Sync> Sync for SegmentPool<P> {}

impl<P: PageSource + 'static> SegmentPool<P> {
    /// A pool keeping at most `max_cached` empty segments.
    pub const fn new(pages: P, map: &'static AddressMap, max_cached: usize) -> Self {
        SegmentPool {
            pages,
            map,
            lock: SpinLock::new(),
            cached: UnsafeCell::new((null_mut(), 0)),
            max_cached,
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

    /// An empty segment (recycled or freshly mapped and published).
    fn acquire(&self) -> Option<NonNull<u8>> {
        self.lock.lock();
        // SAFETY: under the lock.
        let c = unsafe { &mut *self.cached.get() };
        let top = c.0;
        if !top.is_null() {
            // SAFETY: cached segments store the next one in their first word.
            c.0 = unsafe { top.cast::<*mut u8>().read() };
            c.1 -= 1;
        }
        self.lock.unlock();
        if let Some(p) = NonNull::new(top) {
            return Some(p);
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
        Some(p)
    }

    /// Takes back an empty segment: cached (its data pages purged) or unmapped.
    ///
    /// # Safety
    /// No block of the segment is in use and nothing refers to it any more.
    unsafe fn release(&self, seg: NonNull<u8>) {
        self.lock.lock();
        // SAFETY: under the lock.
        let c = unsafe { &mut *self.cached.get() };
        if c.1 < self.max_cached {
            // SAFETY: the segment is ours and unused; slice 0 keeps the link.
            unsafe {
                self.pages.purge(
                    NonNull::new_unchecked(seg.as_ptr().add(SLICE_SIZE)),
                    SEGMENT_SIZE - SLICE_SIZE,
                );
                seg.as_ptr().cast::<*mut u8>().write(c.0);
                PoolStats::add(&self.stats.bytes_purged, (SEGMENT_SIZE - SLICE_SIZE) as u64);
            }
            c.0 = seg.as_ptr();
            c.1 += 1;
            self.lock.unlock();
            return;
        }
        self.lock.unlock();
        self.map.retract_segment(seg.as_ptr() as usize);
        // SAFETY: the caller guarantees nothing uses the segment.
        unsafe { self.pages.unmap(seg, SEGMENT_SIZE) };
        PoolStats::add(&self.stats.segments_unmapped, 1);
    }

    /// Unmaps every cached segment; returns the bytes released.
    pub fn trim(&self) -> usize {
        let mut released = 0;
        loop {
            self.lock.lock();
            // SAFETY: under the lock.
            let c = unsafe { &mut *self.cached.get() };
            let top = c.0;
            if !top.is_null() {
                // SAFETY: cached segments store the next one in their first word.
                c.0 = unsafe { top.cast::<*mut u8>().read() };
                c.1 -= 1;
            }
            self.lock.unlock();
            let Some(seg) = NonNull::new(top) else {
                return released;
            };
            self.map.retract_segment(seg.as_ptr() as usize);
            // SAFETY: a cached segment is unused.
            unsafe { self.pages.unmap(seg, SEGMENT_SIZE) };
            released += SEGMENT_SIZE;
            PoolStats::add(&self.stats.segments_unmapped, 1);
        }
    }

    /// Empty segments currently cached.
    pub fn cached(&self) -> usize {
        self.lock.lock();
        // SAFETY: under the lock.
        let n = unsafe { (*self.cached.get()).1 };
        self.lock.unlock();
        n
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
/// which queues it again). A queued slab whose blocks have all come back is closed at the
/// next purge tick ([`purge`](Self::purge)) or by [`release_empty`](Self::release_empty).
///
/// The owner token is any `usize` unique among live owners (the facade uses the address
/// of the heap that embeds this). All methods must be called by the owner's thread only.
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
    /// A segment of ours whose slices are all free, kept instead of going back to the pool
    /// (null: none). At most one: a heap whose live blocks shrink below a segment and grow
    /// back (a batch allocated and freed in a loop) would otherwise give a segment back,
    /// have its pages purged, and fault them in again each round. Its slices are purged on
    /// the usual delay like any free slice; `release_empty` gives it back.
    spare: *mut Segment<L>,
    /// Some segment has dirty free slices.
    dirty: bool,
    /// The last purge tick (0: none yet).
    last_tick: u64,
    /// Where the next tick's look for empty queued slabs starts: a segment of ours and a
    /// slice index (null: the first segment).
    scan: (*mut Segment<L>, usize),
}

/// Slab records a purge tick looks at for queued slabs to close: a tick's work is bounded
/// whatever the heap's size, and a whole heap is looked at within a few ticks (4 segments
/// a tick).
const SCAN_PER_TICK: usize = 4 * SLICES;

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
            spare: null_mut(),
            dirty: false,
            last_tick: 0,
            scan: (null_mut(), 0),
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
    pub unsafe fn carve(&mut self, s: *mut Slab<L>, max: u32) -> u32 {
        // SAFETY: (caller) ours, or detached (whose capacity is 0).
        unsafe { (*s).carve(max) }
    }

    /// Carves one block of our live slab `s` for the caller, outside the list, with
    /// whether its bytes are known to be zero (carved from fresh pages: `calloc`).
    ///
    /// # Safety
    /// As for [`carve`](Self::carve).
    pub unsafe fn carve_one(&mut self, s: *mut Slab<L>) -> Option<(BlockBase<L>, bool)> {
        // SAFETY: (caller) ours, or detached (whose capacity is 0).
        unsafe { (*s).carve_one() }
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
        if s.has_free() || s.uncarved() > 0 {
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
        // SAFETY: as above.
        unsafe { (*s).state = SlabState::Current };
        Some(s)
    }

    /// Takes back a block of ours freed on a slow path: a free of a full slab's block, a
    /// block drained from the remote queue, a free the fast path could not take. A full
    /// slab is queued again. Returns the block's class.
    ///
    /// # Safety
    /// `b` is a block of a slab owned by this heap, handed out and now free; the caller is
    /// the owner's thread.
    pub unsafe fn free_block<P: PageSource>(
        &mut self,
        pool: &SegmentPool<P>,
        b: BlockBase<L>,
    ) -> SizeClass {
        // SAFETY: the caller vouches `b` is in one of our live slabs.
        let s = unsafe { Segment::<L>::slab_mut(b.addr()) };
        debug_assert!(s.is_live() && s.owner() == self.owner && s.used() > 0);
        // SAFETY: the block is free and ours.
        unsafe { s.push(b) };
        if s.state == SlabState::Full {
            self.enqueue(s);
            self.publish(pool.map, s);
        }
        s.class()
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
        if s.used() == 0 {
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
        let spare = core::mem::replace(&mut self.spare, null_mut());
        if !spare.is_null() {
            // SAFETY: the spare is a segment of ours with every slice free.
            unsafe { self.release_segment(pool, spare) };
        }
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

    /// Looks at up to `budget` slab records from where the last look ended, closing the
    /// queued slabs whose blocks have all come back.
    fn close_some_empty_slabs<P: PageSource>(&mut self, pool: &SegmentPool<P>, budget: usize) {
        let (mut seg, mut i) = self.scan;
        if seg.is_null() {
            (seg, i) = (self.segments, 0);
        }
        for _ in 0..budget {
            if seg.is_null() {
                break;
            }
            // SAFETY: `scan` only holds a segment of ours (`release_segment` moves it on
            // before giving one back), and `i < SLICES`.
            let (s, next) = unsafe { (&mut (*seg).slabs[i], (*seg).next) };
            (seg, i) = if i + 1 == SLICES {
                (next, 0)
            } else {
                (seg, i + 1)
            };
            // Closing may give the segment back: `seg` has moved on first.
            self.scan = (seg, i);
            if s.state == SlabState::Queued && s.used() == 0 {
                self.dequeue(s);
                // SAFETY: the slab has no block outside it.
                unsafe { self.close_slab(pool, s) };
            }
            (seg, i) = self.scan;
        }
        self.scan = (seg, i);
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

    /// Whether some free slice is still resident (a later [`purge`](Self::purge) has
    /// pages to give back).
    pub fn has_dirty(&self) -> bool {
        self.dirty
    }

    /// Whether a call of [`purge`](Self::purge) at `now_ms` would be a tick.
    pub fn tick_due(&self, now_ms: u64, delay_ms: u64) -> bool {
        delay_ms == 0 || now_ms.saturating_sub(self.last_tick) >= delay_ms
    }

    /// The owner's periodic tidying, at most once per `delay_ms` (every call when 0):
    /// closes the queued slabs whose blocks have all come back (looking at
    /// 256 slab records a tick, round the heap's segments; all of them when
    /// `delay_ms` is 0), and gives the pages of free slices back to the OS once they have
    /// stayed free for at least `delay_ms` (0: every dirty slice at once). Cheap between
    /// ticks. Returns the bytes purged.
    ///
    /// With a delay, a tick purges the slices that were already dirty at the previous
    /// tick and have stayed free since (so each was free for at least one whole delay),
    /// and marks the other dirty ones aged. A slice that is reopened loses both marks, so
    /// a heap that keeps closing and reopening slabs reuses resident pages instead of
    /// purging and faulting them in again; and a slab emptied just before a tick is closed
    /// by it and purged one delay later at the earliest.
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
        if delay_ms == 0 {
            self.close_empty_slabs(pool);
        } else {
            self.close_some_empty_slabs(pool, SCAN_PER_TICK);
        }
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
            let mut d = ripe;
            while d != 0 {
                let first = d.trailing_zeros() as usize;
                let len = (!(d >> first)).trailing_zeros() as usize;
                // SAFETY: these slices are free (no block in use) and in our segment.
                unsafe {
                    let p = NonNull::new_unchecked((seg as *mut u8).add(first << SLICE_SHIFT));
                    pool.pages().purge(p, len << SLICE_SHIFT);
                }
                purged += len << SLICE_SHIFT;
                PoolStats::add(&pool.stats.bytes_purged, (len << SLICE_SHIFT) as u64);
                d &= !(if len >= 64 {
                    u64::MAX
                } else {
                    ((1u64 << len) - 1) << first
                });
            }
            sg.dirty_slices &= !ripe;
            sg.aged_slices = sg.dirty_slices;
            still_dirty |= sg.dirty_slices != 0;
            seg = sg.next;
        }
        self.dirty = still_dirty;
        purged
    }

    /// Writes `s`'s map entries for its state: full or not.
    fn publish(&self, map: &AddressMap, s: &Slab<L>) {
        let entry = match self.tag {
            Some(tag) => tag.entry(
                (s.head as usize) << RECORD_SHIFT,
                s.state == SlabState::Full,
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
        debug_assert_eq!(s.state, SlabState::Queued);
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
                let p = pool.acquire()?.as_ptr().cast::<Segment<L>>();
                // SAFETY: the pool gave us this segment exclusively.
                unsafe {
                    Segment::init(p, self.owner);
                    (*p).next = self.segments;
                    if !self.segments.is_null() {
                        (*self.segments).prev = p;
                    }
                }
                self.segments = p;
                (p, find_run(USABLE_SLICES, n)?)
            }
        };
        if seg == self.spare {
            self.spare = null_mut();
        }
        // SAFETY: `seg` is ours; slices first..first+n are free.
        let sg = unsafe { &mut *seg };
        let run = if n >= 64 { u64::MAX } else { (1u64 << n) - 1 };
        sg.free_slices &= !(run << first);
        // A free slice without its dirty bit was never used, or was purged since: zero.
        let fresh = sg.dirty_slices & (run << first) == 0;
        sg.dirty_slices &= !(run << first);
        sg.aged_slices &= !(run << first);
        for e in sg.slabs.iter_mut().skip(first + 1).take(n - 1) {
            e.head = first as u8;
            e.slices = 0;
        }
        let s = &mut sg.slabs[first & (SLICES - 1)];
        s.list = FreeList::new(L::blocks_per_slab(c) as u32);
        s.carved = 0;
        s.next = null_mut();
        s.prev = null_mut();
        s.class_ = c;
        s.head = first as u8;
        s.slices = n as u8;
        s.state = SlabState::Closed;
        s.fresh = fresh;
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
        self.closed_frees[s.class_index()] += s.frees();
        let start = s.start();
        // Before the slices are free: the owner's fast path must stop seeing them first.
        pool.map.set_slices(start, n, ENTRY_SEGMENT);
        // SAFETY: the slab lives in a segment of ours.
        let seg = unsafe { &mut *Segment::<L>::of(start) };
        for (i, e) in seg.slabs.iter_mut().enumerate().skip(first).take(n) {
            e.head = i as u8;
            e.slices = 0;
            e.state = SlabState::Closed;
            // `owner()` is 0 from now on (`slices` is 0), so a stale free into a closed
            // slab never takes an owner's path.
        }
        let run = if n >= 64 { u64::MAX } else { (1u64 << n) - 1 };
        seg.free_slices |= run << first;
        seg.dirty_slices |= run << first;
        self.dirty = true;
        if seg.free_slices == USABLE_SLICES {
            let seg: *mut Segment<L> = seg;
            if self.spare.is_null() {
                self.spare = seg;
            } else {
                // SAFETY: `seg` is ours with every slice free.
                unsafe { self.release_segment(pool, seg) };
            }
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
            if self.scan.0 == seg {
                self.scan = ((*seg).next, 0);
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
