//! Thread heaps: per class the slab malloc pops from, over the thread's slabs
//! (`superslab`), plus the remote-free queue other threads use to hand blocks back.
//!
//! ## Invariants
//! - A heap is used by at most one thread at a time (its owner). The owner token of its
//!   slabs is the heap's address, which never changes: heaps are never unmapped, only
//!   abandoned at thread exit and adopted by a later thread with its slabs.
//! - `current[c]` is class `c`'s current slab (`SlabState::Current`, owned by this heap),
//!   or the shared detached record [`NO_SLAB`], whose list is always empty: malloc's fast
//!   path pops from it without a null test. A slab is the current slab of at most one
//!   slot.
//! - An abandoned heap is touched only under the registry lock: adopted (taken off the
//!   abandoned list), or visited in place when it is due (`visit_abandoned`): its current
//!   slabs are given back and its free slices purged on the usual delay, so what an exited
//!   thread left goes back within a few purge delays of any thread's slow path, or at
//!   `trim`.
//! - Heaps live in metadata pages of their own, never in memory this allocator hands out,
//!   so creating one cannot recurse into malloc.
//! - A heap's `lock` is held by its owner's slow paths (every `SlabHeap` call) and by
//!   another thread visiting it (`visit_live`), which touches only Empty slabs and slice
//!   bitmaps: what the owner's fast paths (its current slabs, slabs holding the program's
//!   blocks) never touch. Lock order: registry, heaps, pool, large tier; slow paths only
//!   try the registry lock, visitors only try heap locks (trim and fork wait for them).

use crate::config;
use crate::os::Os;
use crate::stats;
use crate::Layout;
use core::cell::Cell;
use core::ptr::null_mut;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use large::LargeHeap;
use ptr_conversion::{BlockBase, SizeClass, UserPtr};
use refill::SlabSource;
use superslab::{
    AddressMap, OwnerTag, PageSource, RemoteQueue, Segment, SegmentPool, Slab, SlabHeap, SpinLock,
    FULL_FLAG, RECORD_MASK, TAG_UNIT,
};
use tiny_layout::CLASS_COUNT;

/// Which granules are ours.
pub static MAP: AddressMap = AddressMap::new();
/// Empty segments, process-wide: at most 256 (1 GiB) cached, resident until the pool's
/// decay purges them (see `maintain`).
pub static POOL: SegmentPool<Os> = SegmentPool::new(Os, &MAP, 256);
/// The large tier: at most 256 MiB of freed mappings cached for at most 1 s, in shards
/// that threads use by their heap's number ([`Heap::large_shard`]).
pub static LARGE: LargeHeap<Os> = LargeHeap::new(Os, &MAP, 256 << 20, 1000);

/// The address map's flat entries (`MAP.entries()`) for free's fast path, and their
/// number: set when the first heap is created, left empty under a chunked map (free's
/// fast path then falls through to `MAP`). Globals rather than fields of the heap, so that
/// free's load of an entry does not wait for the load of the thread's heap pointer.
static FLAT_MAP: AtomicPtr<AtomicU64> = AtomicPtr::new(null_mut());
static FLAT_MAP_LEN: AtomicUsize = AtomicUsize::new(0);

/// The owner tag of the empty heap: [`FULL_FLAG`] with no owner's bits, so an entry xor it
/// is never below `FULL_FLAG` (a live slab's entry keeps its owner's bits, every other
/// entry gains the flag) and every free on the empty heap leaves the fast path.
pub const NO_TAG: u64 = FULL_FLAG;

/// Bytes from one class's slot to the next in a heap (one pointer): malloc's size table
/// holds `class × CLASS_STRIDE`, the offset of the class's slot.
pub const CLASS_STRIDE: usize = core::mem::size_of::<*mut Slab<Layout>>();

/// The record of "no current slab": detached, its list empty and never written (a pop
/// from it returns before writing; no map entry points to it, so no free pushes onto
/// it; `SlabHeap` leaves detached records alone).
struct NoSlab(core::cell::UnsafeCell<Slab<Layout>>);
// SAFETY: never written (above).
unsafe impl Sync for NoSlab {}
static NO_SLAB_RECORD: NoSlab = NoSlab(core::cell::UnsafeCell::new(Slab::detached()));

/// The shared "no current slab" record's address.
#[inline(always)]
pub fn no_slab() -> *mut Slab<Layout> {
    NO_SLAB_RECORD.0.get()
}

/// The heap of threads that have none yet (and of exiting ones): every class's current
/// slab is [`no_slab`] and no slab has it as owner, so every fast path on it falls through
/// to the slow path, which gives the thread a real heap. Never written (see [`current`]).
struct EmptyHeap(core::cell::UnsafeCell<Heap>);
// SAFETY: nothing ever writes the empty heap: pops from its detached records return
// before writing, its tag (`NO_TAG`) matches no map entry so no free takes its fast path
// (and `free_other` pends nothing on it), and every slow path
// replaces it with a real heap (`current_or_init`) or tests for it (`current_real`).
unsafe impl Sync for EmptyHeap {}
static EMPTY: EmptyHeap = EmptyHeap(core::cell::UnsafeCell::new(Heap::new(
    NO_SLAB_RECORD.0.get(),
)));

/// The shared empty heap's address.
#[inline(always)]
pub(crate) fn empty() -> *mut Heap {
    EMPTY.0.get()
}

/// One thread's allocator state: the slots of its classes' current slabs at offset 0.
#[repr(C, align(64))]
pub struct Heap {
    /// Per class, the current slab (malloc pops from its list), or [`no_slab`].
    pub current: [*mut Slab<Layout>; CLASS_COUNT],
    /// The value of this heap's owner tag in the address map, widened so that the fast
    /// path's xor with a (zero-extended) entry needs no extension ([`NO_TAG`] on the empty
    /// heap).
    pub tag: u64,
    /// The slabs this heap owns.
    slabs: SlabHeap<Layout>,
    /// Held by the owner's slow paths (every `SlabHeap` call) and by another thread
    /// purging this heap's free slices while the owner is elsewhere (`visit_live`): the
    /// fast paths never take it (they touch only slab records, which visitors never do).
    lock: SpinLock,
    /// When the owner last ran malloc's slow path (ms; under the lock): a heap quiet for
    /// a while is not using its Empty slabs (see `Visit::Grow`).
    last_alloc_ms: u64,
    /// Next heap in the abandoned list.
    next_abandoned: *mut Heap,
    /// Next heap in the list of all heaps.
    next_all: *mut Heap,
    /// Used by a live thread (false while abandoned).
    in_use: bool,
    /// While abandoned: when its slabs or free slices next need a visit (`u64::MAX`:
    /// nothing left to give back). See [`visit_abandoned`].
    due_ms: u64,
    /// Registered for thread-exit cleanup?
    registered: bool,
    /// A pass of the sparse sweep that has given pages back is under way: slow paths
    /// continue it between purge ticks (see `purge_delayed`).
    sweeping: bool,
    /// The statistics request (`stats::EPOCH`) the counters' `live` and `frees` answer.
    published: u64,
    /// Remote frees waiting to be handed to their owner in one batch.
    pending: Pending,
    /// Statistics counters (written by the owner thread only).
    pub counters: crate::stats::ClassCounters,
    /// Blocks of our slabs freed by other threads (on its own cache line).
    remote: Remote,
}

#[repr(align(64))]
struct Remote(RemoteQueue<Layout>);

/// Aborts the process if dropped, which [`Heap::locked`] lets happen only when a panic
/// unwinds through it (a failed debug assertion in a test; the libraries abort on
/// panic): the heap's lock would stay held, and the thread's next slow path or its exit
/// would wait for it forever (a test run that hangs instead of failing).
struct AbortOnUnwind;

impl Drop for AbortOnUnwind {
    fn drop(&mut self) {
        crate::os::fatal(
            "a panic unwound through a heap's lock; rerun with --nocapture",
            0,
        );
    }
}

/// Most remote frees batched before they are handed over.
const REMOTE_BATCH: u32 = 64;
/// [`Pending`]'s `tag_x` without a pending owner: not a multiple of [`TAG_UNIT`], so no
/// entry's owner bits are ever equal to it.
const NO_PENDING: u64 = u64::MAX;

/// A private chain of blocks freed by this thread that belong to heap `owner`.
struct Pending {
    owner: usize,
    /// The owner's tag in the address map xor this heap's ([`NO_PENDING`] before the
    /// first batch): the owner bits of `entry ^ tag` (what free's fast path computed, see
    /// [`Heap::pend_remote`]) for the entry of a live slab of the owner, and of no other
    /// entry (the owner is another heap, so it is not 0; every other entry's owner bits
    /// are 0 or another owner's).
    tag_x: u64,
    head: Option<BlockBase<Layout>>,
    tail: Option<BlockBase<Layout>>,
    count: u32,
}

/// The sparse sweep (`SlabHeap::sweep_sparse`, see `purge_delayed`): slab records a purge
/// tick looks at (those of 256 segments, 1 GiB: about 200 µs), and free blocks it walks,
/// at most.
const TICK_LOOKS: u32 = 16384;
const TICK_WALK: u32 = 4096;
/// The same for a slow path between ticks while a pass is under way (a few µs).
const STEP_LOOKS: u32 = 128;
const STEP_WALK: u32 = 256;

/// Adapter giving `refill` its source: the heap's slabs and the segment pool.
struct Slabs<'a>(&'a mut SlabHeap<Layout>);

impl SlabSource for Slabs<'_> {
    type Slab = *mut Slab<Layout>;
    fn has_free(&self, s: Self::Slab) -> bool {
        // SAFETY: `refill` only passes slabs this heap gave it: ours, or `no_slab`.
        unsafe { (*s).has_free() }
    }
    fn carve(&mut self, s: Self::Slab, max: u32) -> u32 {
        // SAFETY: as above.
        unsafe { self.0.carve(&POOL, s, max) }
    }
    fn set_aside(&mut self, s: Self::Slab) {
        // SAFETY: as above; the current slab is in no queue.
        unsafe { self.0.set_full(&POOL, s) }
    }
    fn next_slab(&mut self, c: SizeClass) -> Option<Self::Slab> {
        self.0.next_slab(&POOL, c)
    }
}

impl Heap {
    /// A heap whose classes all have the current slab `no_slab`, with the tag [`NO_TAG`].
    const fn new(no_slab: *mut Slab<Layout>) -> Heap {
        Heap {
            current: [no_slab; CLASS_COUNT],
            tag: NO_TAG,
            slabs: SlabHeap::new(),
            lock: SpinLock::new(),
            last_alloc_ms: 0,
            next_abandoned: null_mut(),
            next_all: null_mut(),
            in_use: false,
            due_ms: 0,
            registered: false,
            sweeping: false,
            published: 0,
            pending: Pending {
                owner: 0,
                tag_x: NO_PENDING,
                head: None,
                tail: None,
                count: 0,
            },
            counters: crate::stats::ClassCounters::new(),
            remote: Remote(RemoteQueue::new()),
        }
    }

    /// The large tier's shard this heap's thread allocates from: heaps are
    /// numbered in creation order, so live threads spread over the shards.
    pub fn large_shard(&self) -> usize {
        (self.tag / TAG_UNIT) as usize
    }

    /// Sets up a heap in place with its owner tag (the map must be reserved).
    ///
    /// # Safety
    /// `h` is valid for writes and used by nobody else.
    unsafe fn init(h: *mut Heap, tag: OwnerTag) {
        // SAFETY: (caller); the heap's address is its owner token.
        unsafe {
            h.write(Heap::new(no_slab()));
            (*h).slabs.set_owner(h as usize);
            (*h).slabs.set_map_tag(tag);
            (*h).tag = tag.get();
        }
        let map = MAP.entries();
        if !map.is_empty() {
            FLAT_MAP.store(map.as_ptr().cast_mut(), Ordering::Relaxed);
            FLAT_MAP_LEN.store(map.len(), Ordering::Release);
        }
    }

    /// Class slot at byte offset `off` of heap `h`: where its current slab's address is.
    ///
    /// # Safety
    /// `off` is `c × CLASS_STRIDE` for a class `c` (from malloc's size table), and `h`
    /// is a heap.
    #[inline(always)]
    pub unsafe fn slot_at(h: *mut Heap, off: usize) -> *mut *mut Slab<Layout> {
        // SAFETY: the slots start at offset 0 (repr(C)) and `off` indexes one of them.
        unsafe { h.cast::<u8>().add(off).cast::<*mut Slab<Layout>>() }
    }

    /// The address map's entry for `addr`, read through [`FLAT_MAP`]: `None` above user
    /// space (2^47), and for every address under a chunked map and before the map is
    /// reserved (the caller asks `MAP`). Neither the entry's address nor the bound depends
    /// on the thread's heap, so the load starts while the heap's address is still being
    /// read. The bound test is off the load's path: the entry's address depends on `addr`
    /// alone (masking the address instead, one instruction less, put a load of the mask
    /// before the entry's and cost `sh6bench` 4% of its time).
    ///
    /// `Acquire` (a plain load on x86-64): a full slab's entries are rewritten by
    /// another thread once it has filled the slab's list (`SlabHeap::adopt_remote`, see
    /// [`visit_live`]); the owner that then pushes onto the list must see it.
    #[inline(always)]
    pub fn map_entry(addr: usize) -> Option<u64> {
        let i = addr >> superslab::SLICE_SHIFT;
        if i < FLAT_MAP_LEN.load(Ordering::Acquire) {
            // SAFETY: the length is stored (`Release`, in `init`) after the entries'
            // address and read here (`Acquire`) before it; the entries are never unmapped.
            Some(unsafe { (*FLAT_MAP.load(Ordering::Relaxed).add(i)).load(Ordering::Acquire) })
        } else {
            None
        }
    }

    /// Pops a block of class `c` whose current slab had none: takes back remote frees,
    /// then lets `refill` carve more or move on to the next slab.
    #[inline]
    pub fn alloc_slow(&mut self, c: SizeClass) -> Option<BlockBase<Layout>> {
        let b = self.locked(|h| h.alloc_slow_locked(c));
        crate::purger::start_if_due();
        b
    }

    /// Runs `f` under the heap's lock, then wakes the purger if memory waits to be given
    /// back (see `purger::poke`).
    #[inline]
    fn locked<R>(&mut self, f: impl FnOnce(&mut Self) -> R) -> R {
        self.lock.lock();
        let unwinding = AbortOnUnwind;
        let r = f(self);
        core::mem::forget(unwinding);
        let dirty = self.slabs.holds_free_memory();
        self.lock.unlock();
        crate::purger::poke(dirty);
        r
    }

    fn alloc_slow_locked(&mut self, c: SizeClass) -> Option<BlockBase<Layout>> {
        self.collect_remote();
        self.purge_delayed();
        stats::bump(&self.counters.misses[c.index()]);
        let cur = self.current[c.index()];
        // SAFETY: our current slab (or `no_slab`): only this thread pops from it.
        if let Some(b) = unsafe { (*cur).pop() } {
            return Some(b); // a remote free just landed on it
        }
        stats::bump(&self.counters.refills[c.index()]);
        if !self.slabs.has_queued(c) && POOL.is_empty() && LIVE_DIRTY.load(Ordering::Relaxed) {
            // The refill may have to map memory while quiet heaps hold memory they
            // dropped: have them give it to the pool first (at most once a millisecond).
            let (now, due) = (self.last_alloc_ms, NEXT_GROW_VISIT.load(Ordering::Relaxed));
            if now >= due
                && NEXT_GROW_VISIT
                    .compare_exchange(due, now + 1, Ordering::Relaxed, Ordering::Relaxed)
                    .is_ok()
            {
                let me: *mut Heap = self;
                visit_live(now, config::PURGE_DELAY_MS.get(), me, Visit::Grow);
            }
        }
        let next = refill::refill(&mut Slabs(&mut self.slabs), c, cur);
        let s = next.unwrap_or(no_slab());
        self.current[c.index()] = s;
        // SAFETY: `refill` gave our slab with a free block, or none (`no_slab`).
        unsafe { (*s).pop() }
    }

    /// A block of class `c` for `calloc`, and whether it is known to be zero already
    /// (carved just now from fresh pages): the current slab's free block if it has one,
    /// else a block carved for the caller, moving on to the next slab if needed.
    pub fn alloc_zeroed_slow(&mut self, c: SizeClass) -> Option<(BlockBase<Layout>, bool)> {
        let r = self.locked(|h| h.alloc_zeroed_slow_locked(c));
        crate::purger::start_if_due();
        r
    }

    fn alloc_zeroed_slow_locked(&mut self, c: SizeClass) -> Option<(BlockBase<Layout>, bool)> {
        self.collect_remote();
        stats::bump(&self.counters.misses[c.index()]);
        let mut s = self.current[c.index()];
        loop {
            // SAFETY: our current slab (or `no_slab`).
            if let Some(b) = unsafe { (*s).pop() } {
                return Some((b, false));
            }
            // SAFETY: as above.
            if let Some(r) = unsafe { self.slabs.carve_one(&POOL, s) } {
                return Some(r);
            }
            stats::bump(&self.counters.refills[c.index()]);
            // SAFETY: as above: exhausted, in no queue.
            unsafe { self.slabs.set_full(&POOL, s) };
            let next = self.slabs.next_slab(&POOL, c);
            s = next.unwrap_or(no_slab());
            self.current[c.index()] = s;
            next?;
        }
    }

    /// Takes back a block of ours that the fast free could not: a full slab's block (its
    /// slab is queued again), or any block when the map is chunked.
    ///
    /// # Safety
    /// `b` is a block of our live slab, handed out and being freed.
    pub unsafe fn free_slow(&mut self, b: BlockBase<Layout>) {
        self.locked(|h| {
            // SAFETY: forwarded.
            unsafe { h.slabs.free_block(&POOL, b) };
            h.retire_if_shrinking();
        });
    }

    /// When the heap begins shrinking (a working set being dropped: see
    /// `SlabHeap::began_shrinking`), sets its current slabs aside, so that they empty as
    /// the program frees their blocks and become Empty like the others.
    fn retire_if_shrinking(&mut self) {
        if !self.slabs.began_shrinking() {
            return;
        }
        for c in 0..CLASS_COUNT {
            let s = core::mem::replace(&mut self.current[c], no_slab());
            // SAFETY: our current slab or `no_slab` (left alone); nothing pops from it any
            // more (we are its owner's thread and took it out of its slot).
            unsafe { self.slabs.set_full(&POOL, s) };
        }
    }

    /// The fast free saw the last block of our slab `s` (never a current one) come back:
    /// the slab heap keeps it as Empty (see `SlabHeap::emptied`).
    ///
    /// # Safety
    /// `s` is a live slab of this heap whose blocks are all back.
    pub unsafe fn slab_emptied(&mut self, s: *mut Slab<Layout>) {
        self.locked(|h| {
            // SAFETY: forwarded.
            unsafe { h.slabs.emptied(s) };
            h.retire_if_shrinking();
        });
    }

    /// The slow paths' delayed work: at each purge tick, this heap's free slices purged
    /// and a step of the sparse sweep (free pages of sparse slabs given back), continued
    /// by the slow paths between ticks while it is busy; then the process-wide work of
    /// [`maintain`].
    fn purge_delayed(&mut self) {
        let now = crate::os::now_ms();
        self.last_alloc_ms = now;
        let delay = config::PURGE_DELAY_MS.get();
        if self.slabs.tick_due(now, delay) {
            self.slabs.close_empty(&POOL, delay == 0);
            if delay == 0 {
                // Every slow path is a tick: each takes a step's share.
                self.sweep(STEP_LOOKS, STEP_WALK);
            } else {
                self.sweep(TICK_LOOKS, TICK_WALK);
            }
            self.slabs.purge(&POOL, now, delay);
            let asked = stats::EPOCH.load(Ordering::Relaxed);
            if asked != self.published {
                self.published = asked;
                self.publish_counts();
            }
        } else if self.sweeping {
            self.sweep(STEP_LOOKS, STEP_WALK);
        }
        maintain(now, self as *mut Heap);
    }

    /// A step of the sparse sweep; once a step gives pages back, the slow paths continue
    /// the pass until it ends. A pass that finds nothing to give back goes on at the
    /// ticks' pace only, so a program whose sparse slabs change often, without all-free
    /// pages, pays a tick's step per purge delay at most.
    fn sweep(&mut self, looks: u32, walk: u32) {
        let r = self.slabs.sweep_sparse(&POOL, looks, walk);
        self.sweeping = r.bytes > 0 || (self.sweeping && !r.pass_done);
    }

    /// Takes back the blocks other threads freed into our slabs: each goes onto its own
    /// slab's list (a full slab is queued again).
    pub fn collect_remote(&mut self) {
        self.flush_pending();
        if self.remote.0.is_empty() {
            return;
        }
        let (slabs, counters) = (&mut self.slabs, &self.counters);
        // One pass over the queue's links (see `RemoteQueue::drain`); a link is followed
        // only to a block of a live slab of ours.
        self.remote.0.drain(holds_block_of(self.tag), |b| {
            // SAFETY: only blocks of our live slabs are pushed to our queue, once each.
            let c = unsafe { slabs.free_block(&POOL, b) };
            stats::bump(&counters.remote_frees[c.index()]);
        });
    }

    /// Frees another heap's block from this thread: batched per owner, handed over with
    /// one CAS per [`REMOTE_BATCH`] blocks (or when the owner changes, or at this thread's
    /// next slow path or exit).
    ///
    /// # Safety
    /// `owner` is the owner token of `b`'s slab (not this heap), `key` its list key, and
    /// `b` is being freed.
    pub unsafe fn remote_free_batched(&mut self, owner: usize, key: usize, b: BlockBase<Layout>) {
        if self.pending.owner != owner || self.pending.count >= REMOTE_BATCH {
            self.flush_pending();
            crate::purger::poke(false);
            self.pending.owner = owner;
            // SAFETY: owner tokens are heap addresses (never unmapped); a heap's tag is
            // fixed when it is created.
            self.pending.tag_x = unsafe { (*(owner as *const Heap)).tag } ^ self.tag;
        }
        // SAFETY: forwarded.
        unsafe { self.pend(b, key) }
    }

    /// [`remote_free_batched`](Self::remote_free_batched) for a block whose address-map
    /// entry xor this heap's tag is `x` (as free's fast path computed it), when it
    /// continues the pending batch (a live slab of the pending owner, and room in the
    /// batch): the common case of a thread freeing another's blocks costs no map load of
    /// its own and no slab metadata but the record's second line. Returns false (nothing
    /// done) otherwise.
    ///
    /// # Safety
    /// `p` is being freed (a live block of ours, or any pointer below 2^47 that is not
    /// ours), and `x` is its slice's map entry xor this heap's tag.
    #[inline(always)]
    pub unsafe fn pend_remote(&mut self, x: u64, p: *mut u8) -> bool {
        if superslab::owner_tag_bits(x) != self.pending.tag_x || self.pending.count >= REMOTE_BATCH
        {
            return false;
        }
        // SAFETY: `p` lies in a live slab (its entry says so), not null (the first slice is
        // never ours); whether it is a block start is tested next.
        let b = unsafe { UserPtr::<Layout>::from_raw(NonNull::new_unchecked(p)) }.to_base();
        // SAFETY: a live slab's entry gives its record (the xor changed only owner bits).
        let s = unsafe { &*Segment::<Layout>::slab_at((x & RECORD_MASK) as usize) };
        if crate::refused(s, b) {
            return false; // the slow path reports it
        }
        // SAFETY: `b` is a block of the pending owner's live slab `s`, being freed (caller).
        unsafe { self.pend(b, s.shared_list_key()) };
        true
    }

    /// Adds `b` to the pending chain, with its slab's free mark.
    ///
    /// # Safety
    /// `b` is being freed and belongs to the pending owner's slab, whose list key is `key`.
    #[inline(always)]
    unsafe fn pend(&mut self, b: BlockBase<Layout>, key: usize) {
        // SAFETY: the caller gives up `b`; it joins our private pending chain.
        unsafe {
            b.set_link(self.pending.head);
            b.set_free_mark(key);
        }
        if self.pending.head.is_none() {
            self.pending.tail = Some(b);
        }
        self.pending.head = Some(b);
        self.pending.count += 1;
    }

    /// Hands the pending remote frees to their owner.
    pub fn flush_pending(&mut self) {
        if let (Some(head), Some(tail)) = (self.pending.head.take(), self.pending.tail.take()) {
            // SAFETY: owner tokens are heap addresses (never unmapped); the chain's blocks
            // pin their slabs, so the owner is still theirs.
            unsafe {
                (*(self.pending.owner as *const Heap))
                    .remote
                    .0
                    .push_chain(head, tail)
            };
            // An owner that has gone quiet gets them taken back by a visit (`visit_live`).
            note_live_dirty();
        }
        self.pending.count = 0;
    }

    /// Hands a block to its owner heap from a thread without a heap (no batching).
    ///
    /// # Safety
    /// `owner` is the owner token of `b`'s slab (a heap address), `key` its list key, and
    /// `b` is being freed.
    pub unsafe fn remote_free(owner: usize, key: usize, b: BlockBase<Layout>) {
        // SAFETY: owner tokens are addresses of heaps, which are never unmapped; the
        // block pins its slab (and so its owner) until the owner takes it back; the block
        // is ours to mark until it is pushed.
        unsafe {
            b.set_free_mark(key);
            (*(owner as *const Heap)).remote.0.push(b)
        };
        crate::purger::poke(true);
    }

    /// Gives back every current slab (queued, or closed if empty) and every empty slab
    /// (abandoned heaps, trim), and purges the free slices that have stayed free for
    /// `purge_delay_ms` (0: all of them). Returns the bytes purged.
    fn flush(&mut self, purge_delay_ms: u64) -> usize {
        for c in SizeClass::all() {
            let s = core::mem::replace(&mut self.current[c.index()], no_slab());
            // SAFETY: our current slab (or `no_slab`); nothing pops from it any more.
            unsafe { self.slabs.release_current(&POOL, s) };
        }
        self.leave(purge_delay_ms)
    }

    /// [`flush`](Self::flush) but for the current slabs, which stay as they are (a thread
    /// exit: for the next thread to adopt, see [`visit_abandoned`]): hands our pending
    /// remote frees to their owners, takes back those queued for us, gives back empty
    /// slabs, and purges on the delayed policy. Returns the bytes
    /// purged.
    fn leave(&mut self, purge_delay_ms: u64) -> usize {
        self.collect_remote();
        self.slabs.release_empty(&POOL);
        let purged = self.slabs.purge(&POOL, crate::os::now_ms(), purge_delay_ms);
        // The thread that adopts the heap reports these until its first tick after a
        // statistics request: they must be today's.
        self.publish_counts();
        purged
    }

    /// Whether the heap still holds something to give back: current slabs, or free
    /// slices not yet purged.
    fn holds_spare_memory(&self) -> bool {
        self.slabs.holds_free_memory() || self.current.iter().any(|&s| s != no_slab())
    }

    /// Adds this heap's blocks held by the program and blocks freed, per class, to `f`:
    /// exact, from its slabs; only for its owner, or under the registry lock for a heap
    /// no thread uses.
    fn count_blocks(&self, mut f: impl FnMut(usize, u64, u64)) {
        self.slabs
            .for_each_count(|c, used, frees| f(c.index(), used as u64, frees));
    }

    /// Publishes [`count_blocks`](Self::count_blocks) in the counters, for statistics read
    /// while this heap's thread runs, as allocations and frees: each only grows, so a
    /// reader that sees one of them from this publication and the other from the last
    /// still reads counts that never go down.
    fn publish_counts(&self) {
        let (mut allocs, mut frees) = ([0u64; CLASS_COUNT], [0u64; CLASS_COUNT]);
        self.count_blocks(|c, used, f| {
            allocs[c] += used + f;
            frees[c] += f;
        });
        for c in 0..CLASS_COUNT {
            self.counters.allocs[c].store(allocs[c], Ordering::Relaxed);
            self.counters.frees[c].store(frees[c], Ordering::Relaxed);
        }
    }
}

/// Per-class blocks allocated and blocks freed, of heap `h`: exact if `h` is
/// this thread's heap or no thread uses it (once it has taken back what other threads
/// freed into it), else as its thread last published them (at its first purge tick after
/// a statistics request: see `stats::EPOCH`). For statistics.
///
/// # Safety
/// `h` is a heap, and the caller holds the registry lock (`for_each_heap`).
pub unsafe fn block_counts(h: *mut Heap, in_use: bool, mut f: impl FnMut(usize, u64, u64)) {
    // SAFETY: (caller) a heap; its own thread, or a heap no thread uses while we hold the
    // registry lock (adoption and visits take it), may take back its remote frees and
    // read its slabs.
    unsafe {
        if !in_use || h == current() {
            // Published too: a heap no thread uses may be adopted before the next
            // request, and must not read lower then than it does now.
            (*h).locked(|h| {
                h.collect_remote();
                h.publish_counts();
            });
        }
        let c = &(*h).counters;
        for i in 0..CLASS_COUNT {
            f(
                i,
                c.allocs[i].load(Ordering::Relaxed),
                c.frees[i].load(Ordering::Relaxed),
            );
        }
    }
}

// ---- heap registry: creation, abandonment, adoption ----

struct Registry {
    lock: SpinLock,
    abandoned: Cell<*mut Heap>,
    all: Cell<*mut Heap>,
    arena: Cell<(usize, usize)>,
    /// Heaps created so far (the next heap's owner tag is `OwnerTag::new(count + 1)`).
    count: Cell<u32>,
}
// SAFETY: the cells are only touched under `lock`.
unsafe impl Sync for Registry {}

/// The earliest `due_ms` of the abandoned heaps (`u64::MAX`: none is due ever), so that
/// a slow path tests for a due heap with one relaxed load. Written under the registry lock.
static NEXT_DUE: AtomicU64 = AtomicU64::new(u64::MAX);

static REGISTRY: Registry = Registry {
    lock: SpinLock::new(),
    abandoned: Cell::new(null_mut()),
    all: Cell::new(null_mut()),
    arena: Cell::new((0, 0)),
    count: Cell::new(0),
};
const ARENA_CHUNK: usize = 256 * 1024;

/// A heap for a new thread: an abandoned one (adopted with its slabs) or a fresh one.
fn acquire_heap() -> *mut Heap {
    REGISTRY.lock.lock();
    let h = REGISTRY.abandoned.get();
    if !h.is_null() {
        // SAFETY: heaps in the abandoned list are valid and unused.
        unsafe {
            REGISTRY.abandoned.set((*h).next_abandoned);
            (*h).in_use = true;
        }
        REGISTRY.lock.unlock();
        return h;
    }
    let size = core::mem::size_of::<Heap>();
    // Each heap has its own owner tag (heaps are never freed, so tags are never reused),
    // and the map must exist before a heap can copy it.
    let Some(tag) = OwnerTag::new(REGISTRY.count.get() + 1) else {
        REGISTRY.lock.unlock();
        return null_mut();
    };
    if !MAP.reserve(&Os) {
        REGISTRY.lock.unlock();
        return null_mut();
    }
    let (mut next, mut end) = REGISTRY.arena.get();
    if next + size > end {
        match Os.map(ARENA_CHUNK, crate::os::PAGE) {
            Some(p) => {
                next = p.as_ptr() as usize;
                end = next + ARENA_CHUNK;
            }
            None => {
                REGISTRY.lock.unlock();
                return null_mut();
            }
        }
    }
    REGISTRY.arena.set((next + size, end));
    REGISTRY.count.set(REGISTRY.count.get() + 1);
    let h = next as *mut Heap;
    // SAFETY: fresh memory of ours, aligned for a heap (its size is a multiple of its
    // alignment and the chunk is page-aligned), used by nobody else.
    unsafe {
        Heap::init(h, tag);
        (*h).in_use = true;
        (*h).next_all = REGISTRY.all.get();
    }
    REGISTRY.all.set(h);
    REGISTRY.lock.unlock();
    h
}

/// Puts `h` on the abandoned list, to be visited at `due_ms` (see [`visit_abandoned`]).
fn abandon_heap(h: *mut Heap, due_ms: u64) {
    REGISTRY.lock.lock();
    // SAFETY: the exiting thread gives up `h`.
    unsafe {
        (*h).in_use = false;
        (*h).due_ms = due_ms;
        (*h).next_abandoned = REGISTRY.abandoned.get();
    }
    REGISTRY.abandoned.set(h);
    if due_ms < NEXT_DUE.load(Ordering::Relaxed) {
        NEXT_DUE.store(due_ms, Ordering::Relaxed);
    }
    REGISTRY.lock.unlock();
}

/// Gives back what abandoned heaps hold: called by any thread's slow path once a heap is
/// due, and by `trim` with `now_ms = u64::MAX` (every heap due) and a delay of 0.
///
/// A thread leaves its heap as it is, cache included, so that a thread adopting it soon
/// (a pool's next worker, the next round of short-lived threads) finds its blocks cached
/// and its pages resident. A heap still abandoned when it is due gets its cache flushed to
/// its slabs and its free slices purged on the delay's ticks; it stays due, one delay
/// later, until nothing is left to purge. A slow path visits one due heap (all of them
/// with a delay of 0). Returns the bytes purged.
///
/// The visit runs under the registry lock, like adoption, so no thread adopts the heap
/// mid-flush and `fork` never copies one half flushed. A slow path does not wait for the
/// lock: if another thread holds it (visiting, or creating or abandoning a heap), the
/// heaps stay due for a later slow path.
fn visit_abandoned(now_ms: u64, delay_ms: u64) -> usize {
    if now_ms == u64::MAX {
        REGISTRY.lock.lock();
    } else if !REGISTRY.lock.try_lock() {
        return 0;
    }
    let (mut purged, mut visited, mut next_due) = (0, false, u64::MAX);
    let mut h = REGISTRY.abandoned.get();
    while !h.is_null() {
        // SAFETY: heaps on the abandoned list are valid and unused; we hold the lock, so
        // no thread adopts one while we flush it.
        unsafe {
            if (*h).due_ms <= now_ms && (delay_ms == 0 || !visited) {
                visited = true;
                purged += (*h).flush(delay_ms);
                (*h).due_ms = if (*h).holds_spare_memory() {
                    now_ms.saturating_add(delay_ms.max(1))
                } else {
                    u64::MAX
                };
            }
            next_due = next_due.min((*h).due_ms);
            h = (*h).next_abandoned;
        }
    }
    NEXT_DUE.store(next_due, Ordering::Relaxed);
    REGISTRY.lock.unlock();
    purged
}

/// The earliest time of the next [`visit_live`] (periodic, and for growth).
static NEXT_VISIT: AtomicU64 = AtomicU64::new(0);
static NEXT_GROW_VISIT: AtomicU64 = AtomicU64::new(0);
/// Some live heap may hold memory to give back (free slices not yet purged, Empty slabs,
/// remote frees its owner has not taken back): set by the last [`visit_live`], and by any
/// slow path or remote hand-over that leaves a heap so ([`note_live_dirty`]).
static LIVE_DIRTY: AtomicBool = AtomicBool::new(false);

/// The process-wide part of giving memory back, run by every slow path after its own
/// heap's tick and by the purger (`me` null): each part at most once per its period,
/// whichever thread comes first.
///
/// When memory goes back (who gives it back: this function's callers):
/// - a heap's free slices: once free for a purge delay (its owner's tick, or
///   [`visit_live`] when the owner has not ticked for a delay);
/// - the pool's empty segments: once no segment has been taken or given back for a
///   purge period, or after `superslab::LONG_TICKS` periods (`SegmentPool::decay`);
/// - the large tier's freed mappings: after 1 s;
/// - abandoned heaps: current slabs given back and slices purged on the delay
///   ([`visit_abandoned`]).
pub fn maintain(now: u64, me: *mut Heap) {
    let delay = config::PURGE_DELAY_MS.get();
    LARGE.tick(now);
    POOL.decay(now, crate::purger::period_ms());
    if now >= NEXT_DUE.load(Ordering::Relaxed) {
        visit_abandoned(now, delay);
    }
    let due = NEXT_VISIT.load(Ordering::Relaxed);
    if now >= due
        && NEXT_VISIT
            .compare_exchange(
                due,
                now + delay.max(1),
                Ordering::Relaxed,
                Ordering::Relaxed,
            )
            .is_ok()
    {
        visit_live(now, delay, me, Visit::Idle);
    }
}

/// Whether `p` is a block of a live slab of the heap whose tag is `tag`: what a remote
/// queue's decoded links must be before they are followed (see `RemoteQueue::drain`).
fn holds_block_of(tag: u64) -> impl Fn(*mut u8) -> bool {
    move |p: *mut u8| {
        if <Layout as tiny_layout::BlockLayout>::CHECKED {
            return true; // its links check themselves as they are read
        }
        let entry = MAP.entry(p as usize);
        superslab::owner_tag_bits(entry) == tag
            // SAFETY: our live slab's entry gives its record.
            && unsafe { &*Segment::<Layout>::slab_at((entry & RECORD_MASK) as usize) }
                .holds_block(p as usize)
    }
}

/// Why [`visit_live`] runs.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Visit {
    /// The periodic visit: heaps whose owner has not ticked for a delay (asleep, or
    /// busy without slow paths) get the remote frees of their full slabs taken back
    /// (`SlabHeap::adopt_remote`), their Empty slabs closed and their free slices purged
    /// on the delay.
    Idle,
    /// The caller is about to open a slab with no segment cached in the pool: the Empty
    /// slabs of heaps whose owner has not allocated for a millisecond (a thread that
    /// dropped its working set; busy heaps keep theirs for reuse) are closed first, so
    /// that memory a heap dropped goes to the pool for the growing one instead of the
    /// process growing beside it.
    Grow,
    /// `trim`: every heap, waiting for its lock, gives back all it can.
    Trim,
}

/// Gives back what live heaps other than `me` (the caller's own, whose lock it holds)
/// hold without using (see [`Visit`]): a thread that freed its working set and went to
/// sleep gets its pages back without running. Unless `Trim`, each heap is only tried: one
/// whose owner is in a slow path is left for the next visit, as is everything when
/// another thread holds the registry lock. Returns the bytes purged.
fn visit_live(now: u64, delay: u64, me: *mut Heap, why: Visit) -> usize {
    let wait = why == Visit::Trim;
    if wait {
        REGISTRY.lock.lock();
    } else if !REGISTRY.lock.try_lock() {
        return 0;
    }
    let delay = if wait { 0 } else { delay };
    let mut purged = 0;
    // SAFETY: our own heap, whose lock our caller holds (or none).
    let mut dirty = !me.is_null() && unsafe { (*me).slabs.holds_free_memory() };
    let mut h = REGISTRY.all.get();
    while !h.is_null() {
        // SAFETY: heaps are never freed and `in_use` changes under the registry lock,
        // which we hold. Under a heap's lock its owner makes no `SlabHeap` call and does
        // not drain its remote queue, and its fast paths touch only its current slabs and
        // its queued ones, never a full or Empty slab or the segments' slice bitmaps,
        // which are all that `adopt_remote`, `close_empty` and `purge` touch; the owner
        // bumps its counters only under its lock too. The raw place expressions borrow
        // only the fields they name.
        unsafe {
            if (*h).in_use && h != me {
                if wait {
                    (*h).lock.lock();
                }
                if wait || (*h).lock.try_lock() {
                    let slabs = &mut *core::ptr::addr_of_mut!((*h).slabs);
                    let quiet = match why {
                        Visit::Idle => slabs.tick_due(now, delay),
                        Visit::Grow => now > (*h).last_alloc_ms,
                        Visit::Trim => true,
                    };
                    let remote = &(*h).remote.0;
                    // Only for an owner quiet for a whole delay: one quiet for a
                    // millisecond takes its remote frees back soon enough itself.
                    let adopts = quiet && why != Visit::Grow;
                    if adopts {
                        let counters = &(*h).counters;
                        slabs.adopt_remote(&POOL, remote, holds_block_of((*h).tag), |c| {
                            stats::bump(&counters.remote_frees[c.index()])
                        });
                    }
                    if quiet {
                        slabs.close_empty(&POOL, true);
                    }
                    purged += slabs.purge(&POOL, now, delay);
                    dirty |= slabs.holds_free_memory() || (!adopts && !remote.is_empty());
                    (*h).lock.unlock();
                } else {
                    dirty = true;
                }
            }
            h = (*h).next_all;
        }
    }
    LIVE_DIRTY.store(dirty, Ordering::SeqCst);
    REGISTRY.lock.unlock();
    purged
}

/// A slow path left its heap with free slices not yet purged (see [`LIVE_DIRTY`]).
#[inline]
pub fn note_live_dirty() {
    if !LIVE_DIRTY.load(Ordering::Relaxed) {
        LIVE_DIRTY.store(true, Ordering::SeqCst);
    }
}

/// Whether memory waits to be given back anywhere: a live heap's free slices, the
/// pool's dirty segments, cached large mappings, an abandoned heap still holding some.
pub fn holds_dirty() -> bool {
    LIVE_DIRTY.load(Ordering::SeqCst)
        || POOL.has_dirty()
        || LARGE.next_expiry_ms() != u64::MAX
        || NEXT_DUE.load(Ordering::Relaxed) != u64::MAX
}

/// Bytes of segments mapped now plus the most bytes of large mappings seen.
pub fn footprint() -> u64 {
    let st = POOL.stats();
    let segments =
        st.segments_mapped.load(Ordering::Relaxed) - st.segments_unmapped.load(Ordering::Relaxed);
    segments * superslab::SEGMENT_SIZE as u64 + LARGE.peak_bytes()
}

/// Calls `f` with every heap (to read its counters, which are atomics: the heap's thread
/// may be using the rest of it) and whether a live thread uses it, under the registry
/// lock.
pub fn for_each_heap(mut f: impl FnMut(*mut Heap, bool)) {
    /// Releases the registry lock even if `f` unwinds (a Rust caller's panic must not
    /// leave every later thread exit spinning on it).
    struct Unlock;
    impl Drop for Unlock {
        fn drop(&mut self) {
            REGISTRY.lock.unlock();
        }
    }
    REGISTRY.lock.lock();
    let _unlock = Unlock;
    let mut h = REGISTRY.all.get();
    while !h.is_null() {
        // SAFETY: heaps are never freed; counters are atomics, `in_use` changes only under
        // the registry lock, which we hold.
        unsafe {
            f(h, (*h).in_use);
            h = (*h).next_all;
        }
    }
}

/// Bytes given back by [`trim`] so far, and its calls (statistics).
pub static TRIMMED: AtomicU64 = AtomicU64::new(0);
pub static TRIMS: AtomicU64 = AtomicU64::new(0);

/// See [`crate::trim`].
pub fn trim() -> usize {
    let h = current_real();
    // SAFETY: this thread's heap (if any).
    let own = if h.is_null() {
        0
    } else {
        unsafe { (*h).locked(|h| h.flush(0)) }
    };
    let others = visit_live(crate::os::now_ms(), 0, h, Visit::Trim);
    let total = own + others + visit_abandoned(u64::MAX, 0) + POOL.trim() + LARGE.trim();
    TRIMMED.fetch_add(total as u64, Ordering::Relaxed);
    TRIMS.fetch_add(1, Ordering::Relaxed);
    total
}

// ---- thread-local state and process-wide set-up ----

/// This thread's heap pointer and its owner tag: two words of initial-exec TLS, initially
/// the empty heap and [`NO_TAG`]. free's fast path reads the tag alone (it needs no other
/// field of the heap), so its xor with the map entry waits for two loads, not three.
///
/// A malloc replacement must use static (initial-exec) TLS: glibc's manual asks it of
/// preloaded allocators, and the default model for a cdylib calls `__tls_get_addr` on
/// every access (and may allocate). Stable Rust has no TLS-model switch, so on x86-64 the
/// slot is declared in `.tdata` with `global_asm!` and reached through a GOTTPOFF load plus
/// an `%fs`-relative access, which the linker turns into a static TLS reservation
/// (`DT_FLAGS STATIC_TLS`). Its initial value is the empty heap's address (the dynamic
/// loader relocates the TLS image before copying it for any thread), so the fast paths
/// never test for null. Other targets use `thread_local!`.
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
mod slot {
    use super::{Heap, EMPTY};

    core::arch::global_asm!(
        ".pushsection .tdata,\"awT\",@progbits",
        ".p2align 3",
        ".globl hakmem_thread_heap",
        ".hidden hakmem_thread_heap",
        ".type hakmem_thread_heap,@object",
        ".size hakmem_thread_heap,16",
        "hakmem_thread_heap:",
        ".quad {empty}",
        ".quad {no_tag}",
        ".popsection",
        empty = sym EMPTY,
        no_tag = const super::NO_TAG,
    );

    #[inline(always)]
    fn offset() -> usize {
        let off: usize;
        // SAFETY: reads the linker-resolved TP offset of our own TLS symbol from the GOT.
        unsafe {
            core::arch::asm!("mov {o}, qword ptr [rip + hakmem_thread_heap@GOTTPOFF]", o = out(reg) off,
                options(pure, readonly, nostack, preserves_flags));
        }
        off
    }

    #[inline(always)]
    pub fn get() -> *mut Heap {
        let v: *mut Heap;
        // SAFETY: %fs:offset is this thread's slot (static TLS, always allocated).
        unsafe {
            core::arch::asm!("mov {v}, qword ptr fs:[{o}]", o = in(reg) offset(), v = out(reg) v,
                options(readonly, nostack, preserves_flags));
        }
        v
    }

    /// `x` xor the owner tag of [`get`]'s heap (one instruction with its load).
    #[inline(always)]
    pub fn xor_tag(x: u64) -> u64 {
        let mut v = x;
        // SAFETY: %fs:offset + 8 is this thread's tag word (the slot is 16 bytes).
        unsafe {
            core::arch::asm!("xor {v}, qword ptr fs:[{o} + 8]", o = in(reg) offset(), v = inout(reg) v,
                options(pure, readonly, nostack));
        }
        v
    }

    /// Makes `h` this thread's heap. The tag is [`NO_TAG`](super::NO_TAG) while the
    /// pointer changes, so a free between the stores (a signal handler's) never pairs one
    /// heap's tag with another heap.
    ///
    /// # Safety
    /// `h` is the empty heap or a heap set up with its tag.
    #[inline(always)]
    pub unsafe fn set(h: *mut Heap) {
        // SAFETY: (caller) a heap's tag is fixed once it is set up.
        let tag = unsafe { (*h).tag };
        // SAFETY: as in `get` and `xor_tag`.
        unsafe {
            core::arch::asm!("mov qword ptr fs:[{o} + 8], {n}", "mov qword ptr fs:[{o}], {v}",
                "mov qword ptr fs:[{o} + 8], {t}",
                o = in(reg) offset(), v = in(reg) h, t = in(reg) tag, n = in(reg) super::NO_TAG,
                options(nostack, preserves_flags));
        }
    }
}

#[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
mod slot {
    use super::{Heap, EMPTY};
    use core::cell::Cell;
    std::thread_local! {
        static HEAP: Cell<*mut Heap> = const { Cell::new(EMPTY.0.get()) };
        static TAG: Cell<u64> = const { Cell::new(super::NO_TAG) };
    }
    #[inline(always)]
    pub fn get() -> *mut Heap {
        HEAP.with(|h| h.get())
    }
    #[inline(always)]
    pub fn xor_tag(x: u64) -> u64 {
        x ^ TAG.with(|t| t.get())
    }
    /// # Safety
    /// `h` is the empty heap or a heap set up with its tag.
    #[inline(always)]
    pub unsafe fn set(h: *mut Heap) {
        TAG.with(|t| t.set(super::NO_TAG));
        HEAP.with(|c| c.set(h));
        // SAFETY: (caller).
        TAG.with(|t| t.set(unsafe { (*h).tag }))
    }
}

std::thread_local! {
    /// True while this thread runs the one-time process set-up (cold path only).
    static INITIALIZING: Cell<bool> = const { Cell::new(false) };
}

const UNINIT: u32 = 0;
const RUNNING: u32 = 1;
const DONE: u32 = 2;
/// A 32-bit word so that threads waiting for the set-up can sleep on it (futex).
static INIT: AtomicU32 = AtomicU32::new(UNINIT);
static mut EXIT_KEY: libc::pthread_key_t = 0;

/// This thread's heap for the fast paths: never null, the empty heap before the thread's
/// first allocation (its lists are empty and it owns no slab, so both fast paths fall
/// through to their slow paths).
#[inline(always)]
pub fn current() -> *mut Heap {
    slot::get()
}

/// `entry` xor the owner tag of [`current`]'s heap ([`NO_TAG`] for the empty heap), read
/// from the same TLS slot: free's fast path matches a map entry against this thread's heap
/// without reading the heap.
#[inline(always)]
pub fn xor_current_tag(entry: u64) -> u64 {
    slot::xor_tag(entry)
}

/// This thread's heap, or null if it has none yet (slow paths).
#[inline]
pub fn current_real() -> *mut Heap {
    let h = current();
    if h == empty() {
        null_mut()
    } else {
        h
    }
}

/// This thread's heap, creating or adopting one on first use (null if out of memory).
#[cold]
pub fn current_or_init() -> *mut Heap {
    let mut h = current_real();
    if h.is_null() {
        process_init();
        h = current_real(); // set-up may have allocated on this thread
        if h.is_null() {
            h = acquire_heap();
            if h.is_null() {
                return h;
            }
            // SAFETY: a heap `acquire_heap` set up (or adopted) for this thread.
            unsafe { slot::set(h) };
        }
    }
    // SAFETY: `h` is this thread's heap.
    if unsafe { !(*h).registered } && INIT.load(Ordering::Acquire) == DONE {
        // SAFETY: `h` is ours; the key exists (DONE). Set the flag first: setspecific may
        // allocate and come back here.
        unsafe {
            (*h).registered = true;
            libc::pthread_setspecific(EXIT_KEY, h.cast());
        }
    }
    h
}

/// One-time process set-up: the thread-exit key and the fork handlers. Re-entrant: a
/// nested allocation from inside set-up proceeds without waiting.
pub fn process_init() {
    if INIT.load(Ordering::Acquire) == DONE {
        return;
    }
    if INIT
        .compare_exchange(UNINIT, RUNNING, Ordering::Acquire, Ordering::Acquire)
        .is_ok()
    {
        INITIALIZING.with(|f| f.set(true));
        config::load();
        crate::misuse::init();
        #[cfg(feature = "checked")]
        ptr_conversion::set_reporter(crate::checks::reporter);
        // SAFETY: plain libc calls with valid arguments; EXIT_KEY is written once, here,
        // before INIT becomes DONE (Release) and read only after seeing DONE (Acquire).
        unsafe {
            libc::pthread_key_create(core::ptr::addr_of_mut!(EXIT_KEY), Some(thread_exit));
            libc::pthread_atfork(Some(fork_prepare), Some(fork_parent), Some(fork_child));
        }
        INITIALIZING.with(|f| f.set(false));
        INIT.store(DONE, Ordering::Release);
        os_pages::wake(&INIT, u32::MAX);
        return;
    }
    if INITIALIZING.with(|f| f.get()) {
        return;
    }
    // The set-up makes a few system calls: sleep until it is done rather than spin through
    // the time slices of a thread that may be descheduled.
    while INIT.load(Ordering::Acquire) != DONE {
        os_pages::wait(&INIT, RUNNING);
    }
}

extern "C" fn thread_exit(h: *mut libc::c_void) {
    let h = h.cast::<Heap>();
    if h.is_null() {
        return;
    }
    let delay = config::PURGE_DELAY_MS.get();
    // SAFETY: the key's value is this thread's heap; the thread is exiting.
    unsafe {
        // The cache stays for the next thread to adopt it (see `visit_abandoned`),
        // unless memory is to go back at once.
        (*h).locked(|h| {
            if delay == 0 {
                h.flush(0);
            } else {
                h.leave(delay);
            }
        });
        (*h).registered = false;
    }
    // SAFETY: the empty heap.
    unsafe { slot::set(empty()) };
    abandon_heap(h, crate::os::now_ms() + delay);
}

/// Every heap's lock, so that no heap is copied halfway through a slow path (the order:
/// registry, heaps, pool, large tier, as everywhere a thread holds more than one; a
/// heap's slow path only tries the registry lock).
extern "C" fn fork_prepare() {
    REGISTRY.lock.lock();
    each_heap_lock(SpinLock::lock);
    POOL.lock().lock();
    LARGE.lock_all();
}
extern "C" fn fork_parent() {
    LARGE.unlock_all();
    POOL.lock().unlock();
    each_heap_lock(SpinLock::unlock);
    REGISTRY.lock.unlock();
}
/// Calls `f` with every heap's lock (the registry lock held).
fn each_heap_lock(f: fn(&SpinLock)) {
    let mut h = REGISTRY.all.get();
    while !h.is_null() {
        // SAFETY: heaps are never freed; the list only grows under the registry lock.
        unsafe {
            f(&(*h).lock);
            h = (*h).next_all;
        }
    }
}
/// In the child only the forking thread exists: its locks' holders are gone (reset), and
/// every other thread's heap is abandoned so that the child's new threads adopt them,
/// slabs, cached blocks and all.
extern "C" fn fork_child() {
    LARGE.reset_all();
    POOL.lock().reset();
    each_heap_lock(SpinLock::reset);
    REGISTRY.lock.reset();
    crate::purger::forget_after_fork();
    let me = current_real();
    let mut h = REGISTRY.all.get();
    while !h.is_null() {
        // SAFETY: heaps are never unmapped; in the child no other thread runs.
        unsafe {
            if (*h).in_use && h != me {
                (*h).in_use = false;
                (*h).registered = false;
                (*h).due_ms = 0;
                (*h).next_abandoned = REGISTRY.abandoned.get();
                REGISTRY.abandoned.set(h);
                NEXT_DUE.store(0, Ordering::Relaxed);
            }
            h = (*h).next_all;
        }
    }
}

/// For tests: the segment pool's cached segment count.
pub fn cached_segments() -> usize {
    POOL.cached()
}

// Per-thread state stays small (issue target: at most 16 KiB).
static_assertions::const_assert!(core::mem::size_of::<Heap>() <= 16 * 1024);
