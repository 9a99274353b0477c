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

/// Metadata of one slab (or of a slice that is a slab's tail, or free).
///
/// Only the owner's thread touches these fields (see the crate invariants). Found from a
/// block's address with [`Segment::slab_of`] (see the [crate example](crate)).
#[repr(C)]
pub struct Slab<L: BlockLayout> {
    free: Option<BlockBase<L>>,
    bump: usize,
    end: usize,
    next: *mut Slab<L>,
    prev: *mut Slab<L>,
    owner: usize,
    used: u32,
    capacity: u32,
    class_: SizeClass,
    /// Index of this slab's first slice (itself for a slab's head or a free slice).
    head: u8,
    /// Slices spanned; 0 when this slice starts no slab.
    slices: u8,
    in_partial: bool,
    /// The slab's pages came fresh from the OS (zero until carved).
    fresh: bool,
}

impl<L: BlockLayout> Slab<L> {
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
    /// The owner token of the slab (the owning heap's address); 0 for a slice that starts
    /// no live slab, so `owner() == my_token` alone proves the slab is live and mine.
    #[inline(always)]
    pub fn owner(&self) -> usize {
        self.owner
    }
    /// True if this entry is the head of a live slab.
    #[inline(always)]
    pub fn is_live(&self) -> bool {
        self.slices != 0
    }
    /// Address of the slab's first block.
    #[inline(always)]
    pub fn start(&self) -> usize {
        (self as *const Self as usize & !(SEGMENT_SIZE - 1)) + ((self.head as usize) << SLICE_SHIFT)
    }
    /// Takes one block: from the free list, else carved from the bump pointer. The flag
    /// tells whether the block's user bytes are known zero (carved from fresh pages).
    fn take_one(&mut self, c: SizeClass) -> Option<(BlockBase<L>, bool)> {
        if let Some(b) = self.free {
            // SAFETY: `b` is in the slab's free list: free and owned by us.
            self.free = unsafe { b.link() };
            self.used += 1;
            return Some((b, false));
        }
        if self.bump >= self.end {
            return None;
        }
        // SAFETY: [bump, bump + stride) is an uncarved block inside the slab.
        let b = unsafe { BlockBase::from_raw(NonNull::new_unchecked(self.bump as *mut u8)) };
        self.bump += L::stride(c);
        self.used += 1;
        if L::CHECKED {
            // SAFETY: a freshly carved block is ours. Checked layouts get a Free header:
            // carved memory may hold stale bytes of a closed slab.
            unsafe {
                b.write_header(Header {
                    state: BlockState::Free,
                    class: c.index() as u8,
                    requested: 0,
                })
            };
        }
        Some((b, self.fresh))
    }

    /// No free block and nothing left to carve.
    fn is_exhausted(&self) -> bool {
        self.free.is_none() && self.bump >= self.end
    }

    /// End of the carved part of the slab: every block below it has been handed out at
    /// least once.
    pub fn carved_end(&self) -> usize {
        self.bump
    }

    /// Blocks currently outside the slab.
    pub fn used(&self) -> u32 {
        self.used
    }
    /// Blocks the slab holds in all.
    pub fn capacity(&self) -> u32 {
        self.capacity
    }
    /// The BASE of the block containing `addr`, if `addr` lies inside a block that has been
    /// carved from this live slab. Used by the checked build and by aligned frees.
    pub fn block_containing(&self, addr: usize) -> Option<BlockBase<L>> {
        let start = self.start();
        if !self.is_live() || addr < start || addr >= self.bump {
            return None;
        }
        let stride = L::stride(self.class());
        let base = start + (addr - start) / stride * stride;
        // SAFETY: `base` is the start of a carved block of this slab.
        Some(unsafe { BlockBase::from_raw(NonNull::new_unchecked(base as *mut u8)) })
    }
}

/// The metadata at the start of every segment (in slice 0).
#[repr(C)]
pub struct Segment<L: BlockLayout> {
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
    slabs: [Slab<L>; SLICES],
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

    /// The record of the slice containing `addr`: for any slice of a live slab its
    /// `owner()` and `class()` are the slab's (copied to every slice when the slab opens;
    /// owner 0 once it closes). One load less than [`slab_of`](Self::slab_of), for the
    /// free fast path; use `slab_of` for anything else.
    ///
    /// # Safety
    /// As for [`of`](Self::of).
    #[inline(always)]
    pub unsafe fn slice_of<'a>(addr: usize) -> &'a Slab<L> {
        // SAFETY: the caller vouches for the segment; the index is masked in range.
        unsafe {
            &*core::ptr::addr_of!((*Self::of(addr)).slabs[(addr >> SLICE_SHIFT) & (SLICES - 1)])
        }
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

/// The slabs of one owner: its segments and, per class, the slabs with blocks to give.
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
    partial: [*mut Slab<L>; CLASS_COUNT],
    /// A segment of ours whose slices are all free, kept instead of going back to the pool
    /// (null: none). At most one: a heap whose live blocks shrink below a segment and grow
    /// back (a batch allocated and freed in a loop) would otherwise give a segment back,
    /// have its pages purged, and fault them in again each round. Its slices are purged on
    /// the usual delay like any free slice; `release_empty` gives it back.
    spare: *mut Segment<L>,
    /// Some segment has dirty free slices.
    dirty: bool,
    /// The last purge tick (0: none since the heap last had nothing dirty).
    last_tick: u64,
}

impl<L: BlockLayout> SlabHeap<L> {
    /// A heap with no segments; `owner` is set by [`set_owner`](Self::set_owner).
    pub const fn new() -> Self {
        SlabHeap {
            owner: 0,
            tag: None,
            segments: null_mut(),
            spare: null_mut(),
            partial: [null_mut(); CLASS_COUNT],
            dirty: false,
            last_tick: 0,
        }
    }

    /// Sets the owner token (before the first allocation).
    pub fn set_owner(&mut self, owner: usize) {
        debug_assert!(self.segments.is_null());
        self.owner = owner;
    }

    /// Sets the tag the address map gives this heap's live slabs (before the first
    /// allocation), so that one map load tells owner and class (see [`OwnerTag`]).
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

    /// Moves up to `max` blocks of class `c` into `out`; opens a new slab only when no
    /// partial slab has any. Returns how many moved (0: out of memory).
    pub fn take_blocks<P: PageSource>(
        &mut self,
        pool: &SegmentPool<P>,
        c: SizeClass,
        max: u32,
        out: &mut FreeList<L>,
    ) -> u32 {
        let mut n = 0;
        while n < max {
            let Some(s) = self.partial_slab(pool, c, n == 0) else {
                break;
            };
            while n < max {
                let Some((b, _)) = s.take_one(c) else { break };
                // SAFETY: `b` was just taken from our slab: free and ours.
                unsafe { out.push(b) };
                n += 1;
            }
            if s.is_exhausted() {
                self.unlink_partial(s);
            }
        }
        n
    }

    /// Takes one block of class `c` (opening a slab if needed) and tells whether its user
    /// bytes are known to read as zero: true for a block carved from a slab whose pages
    /// came fresh from the OS (never used, or purged since). For `calloc`.
    pub fn take_block_zeroed<P: PageSource>(
        &mut self,
        pool: &SegmentPool<P>,
        c: SizeClass,
    ) -> Option<(BlockBase<L>, bool)> {
        let s = self.partial_slab(pool, c, true)?;
        let r = s.take_one(c);
        if s.is_exhausted() {
            self.unlink_partial(s);
        }
        r
    }

    /// The first partial slab of class `c`, opening one if there is none and `open`.
    fn partial_slab<'a, P: PageSource>(
        &mut self,
        pool: &SegmentPool<P>,
        c: SizeClass,
        open: bool,
    ) -> Option<&'a mut Slab<L>> {
        let slab = self.partial[c.index()];
        let slab = if slab.is_null() {
            if !open {
                return None;
            }
            self.open_slab(pool, c)?
        } else {
            slab
        };
        // SAFETY: slabs in our partial lists are live and ours; only the owner thread
        // touches them, and the caller holds `&mut self` (the owner).
        Some(unsafe { &mut *slab })
    }

    /// Takes back a block of ours (from a thread cache or a remote queue).
    ///
    /// # Safety
    /// `b` is a block of a slab owned by this heap, handed out by `take_blocks` and now
    /// free; the caller is the owner's thread.
    pub unsafe fn return_block<P: PageSource>(&mut self, pool: &SegmentPool<P>, b: BlockBase<L>) {
        // SAFETY: the caller vouches `b` is in one of our live slabs.
        let s = unsafe { Segment::<L>::slab_mut(b.addr()) };
        debug_assert!(s.is_live() && s.owner == self.owner && s.used > 0);
        // SAFETY: the block is free and ours.
        unsafe { b.set_link(s.free) };
        s.free = Some(b);
        s.used -= 1;
        if !s.in_partial {
            self.link_partial(s);
        }
        if s.used == 0 {
            let c = s.class_index();
            // Keep the class's last slab to avoid opening and closing one per free.
            let alone = core::ptr::eq(self.partial[c], s) && s.next.is_null();
            if !alone {
                self.unlink_partial(s);
                // SAFETY: no block of the slab is outside it.
                unsafe { self.close_slab(pool, s) };
            }
        }
    }

    /// Closes every empty slab and returns every empty segment (e.g. at thread exit).
    /// Slabs still holding blocks stay.
    pub fn release_empty<P: PageSource>(&mut self, pool: &SegmentPool<P>) {
        for c in 0..CLASS_COUNT {
            let mut p = self.partial[c];
            while !p.is_null() {
                // SAFETY: slabs in our partial lists are live and ours.
                let s = unsafe { &mut *p };
                p = s.next;
                if s.used == 0 {
                    self.unlink_partial(s);
                    // SAFETY: the slab has no block outside it.
                    unsafe { self.close_slab(pool, s) };
                }
            }
        }
        let spare = core::mem::replace(&mut self.spare, null_mut());
        if !spare.is_null() {
            // SAFETY: the spare is a segment of ours with every slice free.
            unsafe { self.release_segment(pool, spare) };
        }
    }

    /// Whether some free slice is still resident (a later [`purge`](Self::purge) has
    /// pages to give back).
    pub fn has_dirty(&self) -> bool {
        self.dirty
    }

    /// Gives the pages of closed slabs back to the OS once they have stayed free for at
    /// least `delay_ms` (0: every dirty slice at once). Cheap when nothing is pending.
    /// Returns the bytes purged.
    ///
    /// With a delay, purging goes by ticks at least `delay_ms` apart: a tick purges the
    /// slices that were already dirty at the previous tick and have stayed free since
    /// (so each was free for at least one whole delay), and marks the other dirty ones
    /// aged. A slice that is reopened loses both marks, so a heap that keeps closing and
    /// reopening slabs reuses resident pages instead of purging and faulting them in again.
    pub fn purge<P: PageSource>(
        &mut self,
        pool: &SegmentPool<P>,
        now_ms: u64,
        delay_ms: u64,
    ) -> usize {
        if !self.dirty {
            return 0;
        }
        if delay_ms > 0 {
            if self.last_tick == 0 {
                self.last_tick = now_ms.max(1);
                return 0;
            }
            if now_ms.saturating_sub(self.last_tick) < delay_ms {
                return 0;
            }
            self.last_tick = now_ms.max(1);
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
        if !still_dirty {
            self.last_tick = 0;
        }
        purged
    }

    fn link_partial(&mut self, s: &mut Slab<L>) {
        let c = s.class_index();
        s.prev = null_mut();
        s.next = self.partial[c];
        if !s.next.is_null() {
            // SAFETY: a live slab of ours.
            unsafe { (*s.next).prev = s };
        }
        self.partial[c] = s;
        s.in_partial = true;
    }

    fn unlink_partial(&mut self, s: &mut Slab<L>) {
        if !s.in_partial {
            return;
        }
        // SAFETY: neighbours in our partial list are live slabs of ours.
        unsafe {
            if s.prev.is_null() {
                self.partial[s.class_index()] = s.next;
            } else {
                (*s.prev).next = s.next;
            }
            if !s.next.is_null() {
                (*s.next).prev = s.prev;
            }
        }
        s.next = null_mut();
        s.prev = null_mut();
        s.in_partial = false;
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
            // Tail slices carry the slab's owner and class for `Segment::slice_of`.
            e.owner = self.owner;
            e.class_ = c;
        }
        let start = seg as usize + (first << SLICE_SHIFT);
        let capacity = L::blocks_per_slab(c);
        let s = &mut sg.slabs[first & (SLICES - 1)];
        s.free = None;
        s.bump = start;
        s.end = start + capacity * L::stride(c);
        s.next = null_mut();
        s.prev = null_mut();
        s.owner = self.owner;
        s.used = 0;
        s.capacity = capacity as u32;
        s.class_ = c;
        s.head = first as u8;
        s.slices = n as u8;
        s.in_partial = false;
        s.fresh = fresh;
        let entry = self.tag.map_or(ENTRY_SEGMENT, |t| t.entry(c));
        pool.map.set_slices(start, n, entry);
        PoolStats::add(&pool.stats.slabs_opened, 1);
        self.link_partial(s);
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
        let start = s.start();
        // Before the slices are free: the owner's fast path must stop seeing them first.
        pool.map.set_slices(start, n, ENTRY_SEGMENT);
        // SAFETY: the slab lives in a segment of ours.
        let seg = unsafe { &mut *Segment::<L>::of(start) };
        for (i, e) in seg.slabs.iter_mut().enumerate().skip(first).take(n) {
            e.head = i as u8;
            e.slices = 0;
            // No heap matches owner 0, so a stale free into a closed slab never takes an
            // owner's fast path (see `Slab::owner`).
            e.owner = 0;
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
