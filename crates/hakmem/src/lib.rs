//! # hakmem: the facade
//!
//! Composes the boxes into an allocator and owns what they leave to it: thread-local
//! state, OS calls (through `libc`), the large tier and the exported interfaces:
//!
//! - [`HakMem`], a [`GlobalAlloc`] for Rust programs (`#[global_allocator]`);
//! - the C malloc family (`malloc`, `free`, …): its bodies in [`cabi`], exported under the
//!   C names by [`export_c_symbols!`], which `crates/hakmem_preload` invokes to make
//!   `libhakmem.so` (the library for `LD_PRELOAD`), and this crate with the feature
//!   `c-override`. Without it this crate defines no C symbol. The same macro exports C++'s
//!   `operator new` and `operator delete` ([`cxx`]).
//!
//! ## How one malloc flows
//! `malloc(n)` → [`Alloc::malloc`] (`front_api::Api::malloc`'s semantics, fused) →
//! `tiny_layout::class_of` → the thread's `tls_sll` list for that class → pop (fast path).
//! Anything else is one tail call to the cold `malloc_slow`: on a miss, `refill` takes a
//! batch from the heap's `superslab` slabs; above the largest class the large tier maps
//! memory directly; failures set `errno`.
//!
//! ## How one free flows
//! `free(p)` → the `superslab` address map classifies `p` with one load → the slab's
//! metadata (found by masking) gives class and owner → same thread: push to the cache
//! list (spill a batch when full); other thread's block: batched per owner in this thread's
//! heap (created for a thread that only frees) and handed over with one CAS per chain;
//! large: unmap; not the start of a live block of ours (foreign, interior, misaligned,
//! already free): reported (`misuse`: abort, or with `HAKMEM_ON_MISUSE=warn` left alone).
//!
//! ## Invariants owned here
//! - Nothing on the malloc/free paths allocates, formats or panics; fatal conditions
//!   write one line with `write(2)` and abort.
//! - Release build: no pointer reaches a free list or a remote batch unless it is the start
//!   of a block carved from its live slab (`Slab::holds_block`) and does not carry the free
//!   mark (`BlockBase::is_marked_free`): every free path tests both first (`refused`).
//!   The free-list secrets are set before the first block is linked (`misuse::init`, the
//!   first thing of the process set-up).
//! - No Rust frame is on the stack while a C++ exception may be thrown (`panic = "abort"`
//!   aborts an unwind into one): the throwing `operator new`s hand a failure to the C++
//!   runtime's own operator by a jump from a naked function ([`cxx`]).
//! - Thread-local state is a const-initialised pointer without destructor, never null (a
//!   static empty heap until the thread's first slow path); thread exit is handled by a
//!   pthread key registered without allocating.
#![cfg_attr(not(test), no_std)]

extern crate std;

#[cfg(feature = "checked")]
mod checks;
mod config;
mod heap;
mod misuse;
pub mod os;
mod purger;
mod stats;

pub use stats::{ClassStats, Stats};

pub mod cabi;
pub mod cxx;
#[cfg(feature = "c-override")]
export_c_symbols!();

use core::alloc::{GlobalAlloc, Layout as RustLayout};
use core::ptr::{null_mut, NonNull};
use front_api::{Api, Backend, MIN_ALIGN};
use heap::CLASS_STRIDE;
use os_pages::PageSource;
use ptr_conversion::{BlockBase, Corruption, UserPtr};
use superslab::{Region, Segment, FULL_FLAG};
use tiny_layout::BlockLayout;
use tiny_layout::{class_of, SizeClass, LOOKUP_MAX, MAX_CLASS_SIZE};

/// The block layout of this build: no per-block header.
#[cfg(not(feature = "checked"))]
pub type Layout = tiny_layout::Plain;
/// The block layout of the checked build: a 16-byte checked header per block.
#[cfg(feature = "checked")]
pub type Layout = tiny_layout::Guarded;

/// Slab starts are aligned to this, so classes whose size is a multiple of an alignment
/// up to it give naturally aligned blocks.
const SLAB_ALIGN: usize = tiny_layout::MIN_SLAB_BYTES;

/// The allocator: a zero-sized handle over the process-wide state.
#[derive(Clone, Copy, Debug, Default)]
pub struct Alloc;

impl Alloc {
    /// `malloc(size)` with C semantics, `errno` included: the fast path (a small size
    /// whose cache list is not empty) has no call, no stack frame and no atomic; anything
    /// else is one tail call to the cold `malloc_slow`.
    #[inline(always)]
    pub fn malloc(size: usize) -> *mut u8 {
        if let Some(p) = Self::malloc_fast(size) {
            return p;
        }
        malloc_slow(size)
    }

    /// `malloc(size)`'s fast path alone: a block if the size is small and its class's
    /// current slab has one.
    #[inline(always)]
    pub(crate) fn malloc_fast(size: usize) -> Option<*mut u8> {
        if size > LOOKUP_MAX {
            return None;
        }
        // One table load gives the class's slot (the bound makes the index valid).
        Self::pop_cached(SLOT_OF_SIZE[size] as usize, size)
    }

    /// A block from the current slab of the class whose slot is at offset `slot`
    /// (`class × CLASS_STRIDE`), if its list has one (on the empty heap of a thread
    /// without a heap, it never has).
    #[inline(always)]
    fn pop_cached(slot: usize, size: usize) -> Option<*mut u8> {
        // SAFETY: `h` is this thread's heap (or the empty heap, whose current slabs are
        // all the detached `no_slab`) and `slot` a class's slot offset; only this thread
        // pops from its current slabs.
        let b = unsafe { (**heap::Heap::slot_at(heap::current(), slot)).pop() }?;
        // In the checked build `slot` is always `class_of(size)`'s (aligned requests take
        // the large tier there), so a small request can use the per-size table.
        #[cfg(feature = "checked")]
        if size <= LOOKUP_MAX {
            checks::on_alloc_small(b, size);
        } else {
            // SAFETY: `slot` is a class's slot offset (see above).
            checks::on_alloc(b, unsafe { class_at(slot) }, size);
        }
        let _ = size;
        Some(b.to_user().as_ptr())
    }

    /// A block of class `c` for `size` bytes: cache pop, else the slow path.
    #[inline(always)]
    fn alloc_class(c: SizeClass, size: usize) -> *mut u8 {
        match Self::pop_cached(c.index() * CLASS_STRIDE, size) {
            Some(p) => p,
            None => Self::alloc_class_slow(c, size),
        }
    }

    #[cold]
    #[inline(never)]
    fn alloc_class_slow(c: SizeClass, size: usize) -> *mut u8 {
        let h = heap::current_or_init();
        if h.is_null() {
            return null_mut();
        }
        // SAFETY: this thread's heap.
        match unsafe { (*h).alloc_slow(c) } {
            Some(b) => {
                #[cfg(feature = "checked")]
                checks::on_alloc(b, c, size);
                let _ = size;
                b.to_user().as_ptr()
            }
            None => null_mut(),
        }
    }

    /// `free(p)` for any pointer, null included (it does nothing); refuses pointers that
    /// are not ours with a message. The fast path (a block of a slab of this thread's heap
    /// that is not full) has no call; everything else is one tail call to the cold
    /// `free_other`. One address-map load decides "ours, of a live slab of this heap, not
    /// full": the entry xor the heap's owner tag is below `FULL_FLAG` exactly then, and is
    /// then the address of the slab's record (see `superslab::OwnerTag`),
    /// onto whose list the block goes. Null needs no test: the map never marks the first
    /// slice.
    ///
    /// # Safety
    /// `p` is null, a live block of ours, or any other pointer (refused, or reported in the
    /// checked build); never a block of ours that is already free.
    #[inline(always)]
    pub unsafe fn free_ptr(p: *mut u8) {
        // SAFETY: any pointer value is accepted; a bad one is reported and aborts.
        #[cfg(feature = "checked")]
        if unsafe { checks::free(p) } {
            return;
        }
        let Some(entry) = heap::Heap::map_entry(p as usize) else {
            // Above user space, or no flat map: nothing to pend from.
            // SAFETY: forwarded.
            return unsafe { free_other_slow(p) };
        };
        // The empty heap's tag matches no entry.
        let x = heap::xor_current_tag(entry);
        if x < FULL_FLAG {
            // SAFETY: the entry is that of a live slab of this heap, not full: `x` is its
            // record's address.
            let s = unsafe { Segment::<Layout>::slab_at(x as usize) };
            // SAFETY: `p` lies in our slab, not null; whether it is a block start is
            // tested next (the checked build verified it already).
            let b = unsafe { UserPtr::<Layout>::from_raw(NonNull::new_unchecked(p)) }.to_base();
            // SAFETY: our slab, in whose memory `b` lies.
            if !<Layout as BlockLayout>::CHECKED
                && unsafe {
                    !(*s).holds_block_as_owner(b.addr()) || b.is_marked_free((*s).list_key())
                }
            {
                // SAFETY: forwarded; the slow path reports it.
                return unsafe { free_other(p, x) };
            }
            // SAFETY: our own slab; the block is free now.
            if unsafe { (*s).push(b) } {
                return;
            }
            // SAFETY: our slab, every block of it back (`push` said so).
            return unsafe { slab_emptied(s) };
        }
        // SAFETY: forwarded.
        unsafe { free_other(p, x) }
    }
}

/// The fast free took the last block of slab `s` back: the heap closes it if it is queued
/// (see `superslab::SlabHeap::emptied`).
///
/// # Safety
/// `s` is a live slab of this thread's heap whose blocks are all back.
#[cold]
#[inline(never)]
unsafe fn slab_emptied(s: *mut superslab::Slab<Layout>) {
    // SAFETY: the fast path matched this heap's tag: a real heap, its slab.
    unsafe { (*heap::current()).slab_emptied(s) }
}

/// Every free but the fast path: a full slab's block, another thread's block, a large
/// block, a pointer that is not ours. Another heap's block that continues this thread's pending
/// batch for that heap is pended here, from the map entry the fast path read (`x`: the entry
/// xor this thread's tag) alone, the common case of a thread freeing blocks another
/// allocated; the rest goes on to [`free_other_slow`].
///
/// # Safety
/// As for [`Alloc::free_ptr`]; `x` is `p`'s map entry xor this thread's owner tag.
#[cold]
#[inline(never)]
pub(crate) unsafe fn free_other(p: *mut u8, x: u64) {
    // `current` is never null: the empty heap, or this thread's.
    let h = heap::current();
    // SAFETY: `h` is this thread's (real) heap; `x` is as it expects.
    if h != heap::empty() && unsafe { (*h).pend_remote(x, p) } {
        return;
    }
    // SAFETY: forwarded.
    unsafe { free_other_slow(p) }
}

/// What [`free_other`] does not pend: a full slab's block, a remote free that starts a new
/// batch, a large block, a pointer that is not ours.
///
/// # Safety
/// As for [`Alloc::free_ptr`].
#[cold]
#[inline(never)]
unsafe fn free_other_slow(p: *mut u8) {
    let addr = p as usize;
    if p.is_null() {
        return;
    }
    match heap::MAP.region(addr) {
        Region::Segment => {
            // SAFETY: the map says `addr` is in a live segment.
            let slab = unsafe { Segment::<Layout>::slab_of(addr) };
            if !slab.is_live() {
                return invalid_free(addr);
            }
            // SAFETY: `p` lies in this live slab, not null; tested next.
            let b = unsafe { UserPtr::<Layout>::from_raw(NonNull::new_unchecked(p)) }.to_base();
            if refused(slab, b) {
                // SAFETY: `b` lies in the slab's memory.
                let what =
                    if slab.holds_block(b.addr()) && unsafe { b.is_marked_free(slab.list_key()) } {
                        Corruption::DoubleFree
                    } else {
                        Corruption::InvalidFree
                    };
                return misuse::report(what, addr);
            }
            let h = heap::current_real();
            if slab.owner() == h as usize {
                // SAFETY: this thread's heap and block: its slab is full, or the fast path
                // could not look (a chunked map, see `superslab::AddressMap`).
                unsafe { (*h).free_slow(b) }
            } else {
                // A thread that only frees (a consumer) gets a heap too, so that its remote
                // frees are batched: one CAS per chain, and chains the owner drains side by
                // side (see `superslab::RemoteQueue`), instead of one push per block.
                let h = if h.is_null() {
                    // free preserves errno; creating a heap may touch it.
                    let saved = os::errno();
                    let h = heap::current_or_init();
                    os::set_errno(saved);
                    h
                } else {
                    h
                };
                if h.is_null() {
                    // SAFETY: the owner token of a live slab is its heap.
                    unsafe { heap::Heap::remote_free(slab.owner(), slab.shared_list_key(), b) };
                } else {
                    // SAFETY: this thread's heap; the owner token of a live slab is its heap.
                    unsafe { (*h).remote_free_batched(slab.owner(), slab.shared_list_key(), b) };
                }
            }
        }
        Region::Large => {
            let saved = os::errno();
            // SAFETY: the map says large blocks live in this granule.
            if !unsafe { heap::LARGE.free(p, os::now_ms()) } {
                invalid_free(addr);
            }
            purger::poke(false);
            os::set_errno(saved);
        }
        Region::Foreign => invalid_free(addr),
    }
}

/// A free of a pointer that is not ours (a double free if it is a large block freed
/// already): reported (see `misuse`: abort, or with
/// `HAKMEM_ON_MISUSE=warn` the pointer is left alone); the checked build reports it and
/// aborts.
#[cold]
fn invalid_free(addr: usize) {
    #[cfg(feature = "checked")]
    checks::fail(Corruption::InvalidFree, addr, None, 0, 0);
    // A large block freed already lies in a range the large tier keeps for reuse.
    #[cfg(not(feature = "checked"))]
    misuse::report(
        if heap::LARGE.in_cache(addr as *mut u8) {
            Corruption::DoubleFree
        } else {
            Corruption::InvalidFree
        },
        addr,
    );
}

/// Whether a free of `b`, which lies in the memory of live slab `s` (of any owner), must be
/// refused: `b` is not a block start carved from `s` (an interior or misaligned pointer),
/// or it carries its slab's free mark (a double free). Never in the checked build, whose
/// `checks::free` made the same checks first.
#[inline(always)]
pub(crate) fn refused(s: &superslab::Slab<Layout>, b: BlockBase<Layout>) -> bool {
    // SAFETY: `b` lies in the mapped memory of a live slab (caller): its first 16 bytes too.
    !<Layout as BlockLayout>::CHECKED
        && (!s.holds_block(b.addr()) || unsafe { b.is_marked_free(s.shared_list_key()) })
}

// SAFETY: blocks come from classes at least `size` large, 16-aligned (tiny_layout), or
// from the large tier (page-aligned); aligned blocks are checked below.
unsafe impl Backend for Alloc {
    const PAGE: usize = os::PAGE;

    #[inline(always)]
    fn alloc(&self, size: usize) -> *mut u8 {
        Self::malloc(size)
    }

    fn alloc_zeroed(&self, size: usize) -> *mut u8 {
        if size > MAX_CLASS_SIZE {
            // Fresh mappings are already zero; a reused cached one is cleared by the tier.
            return alloc_large(size, MIN_ALIGN, true);
        }
        if size >= CALLOC_FROM_SLABS {
            if let Some(c) = class_of(size) {
                return alloc_zeroed_from_slabs(c, size);
            }
        }
        let p = self.alloc(size);
        if !p.is_null() {
            // SAFETY: `p` holds at least `size` bytes.
            unsafe { core::ptr::write_bytes(p, 0, size) };
        }
        p
    }

    fn alloc_aligned(&self, size: usize, align: usize) -> *mut u8 {
        if <Layout as tiny_layout::BlockLayout>::HEADER_SIZE == 0
            && align != 0
            && align <= SLAB_ALIGN
        {
            // A class whose size is a multiple of `align` has naturally aligned blocks;
            // one exists within the doubling of max(size, align), wasting less than `align`.
            if let Some(mut c) = class_of(size.max(align)) {
                while c.block_size() % align != 0 {
                    match SizeClass::new(c.index() + 1) {
                        Some(n) => c = n,
                        None => break,
                    }
                }
                if c.block_size() % align == 0 {
                    return Self::alloc_class(c, size);
                }
            }
        }
        alloc_large(size, align, false)
    }

    #[inline(always)]
    unsafe fn free(&self, p: *mut u8) {
        // SAFETY: forwarded.
        unsafe { Self::free_ptr(p) }
    }

    unsafe fn usable_size(&self, p: *mut u8) -> usize {
        #[cfg(feature = "checked")]
        // SAFETY: `p` is live (caller).
        if let Some(n) = unsafe { checks::requested_size(p) } {
            return n;
        }
        // SAFETY: forwarded.
        unsafe { block_size(p) }
    }

    unsafe fn resize_in_place(&self, p: *mut u8, new_size: usize) -> bool {
        // SAFETY: forwarded.
        let usable = unsafe { block_size(p) };
        let fits = new_size <= usable && new_size >= usable / 2;
        #[cfg(feature = "checked")]
        if fits {
            // SAFETY: `p` is live and holds `new_size` bytes.
            unsafe { checks::on_resize(p, new_size) };
        }
        fits
    }

    unsafe fn resize(&self, p: *mut u8, new_size: usize) -> Option<*mut u8> {
        // A pointer that is not a live block's start: reported as its free would be, and
        // with `HAKMEM_ON_MISUSE=warn` left alone, the realloc failing (null). Moving it
        // instead would free it after the new block is taken: an already free block could
        // be that new block, and be handed out free.
        // SAFETY: any pointer value.
        if unsafe { misused_in_slab(p) } {
            // SAFETY: forwarded: the slow free reports it and touches nothing.
            unsafe { free_other_slow(p) };
            return Some(null_mut());
        }
        // SAFETY: `p` is live (caller).
        if unsafe { self.resize_in_place(p, new_size) } {
            return Some(p);
        }
        // A large block growing or shrinking past half stays large: remap its pages.
        if new_size > MAX_CLASS_SIZE && heap::MAP.region(p as usize) == Region::Large {
            // SAFETY: the map says large blocks live here; `p` is live.
            return unsafe { heap::LARGE.resize(p, new_size) };
        }
        None
    }
}

/// A large block (see `large::LargeHeap::alloc_in`) from this thread's shard of the tier,
/// that of its heap (a thread without a heap gets one: it is on a slow path anyway).
fn alloc_large(size: usize, align: usize, zeroed: bool) -> *mut u8 {
    // SAFETY: a non-null heap pointer from `heap` is a live heap.
    let shard = unsafe { heap::current_or_init().as_ref() }.map_or(0, heap::Heap::large_shard);
    let p = heap::LARGE.alloc_in(shard, size, align, zeroed, os::now_ms());
    purger::start_if_due();
    p
}

/// The bytes a block really spans (its class size, or its mapping for a large one); 0 for
/// a pointer that is not a block start of ours (an interior, misaligned or foreign one).
/// The block itself is not read, so a small block that is already free still counts its
/// class size (as mimalloc's `mi_usable_size` answers): `realloc` refuses such a pointer
/// before it asks ([`misused_in_slab`]), and `malloc_usable_size` of a freed block is the
/// program's mistake, which it cannot turn into a write. Ruby's GC asks for the size of
/// every block it frees: reading the free mark here took the block's cache miss (1.65% of
/// the Ruby script's run in this function), which its free now takes instead.
///
/// # Safety
/// `p` is a live block of ours, or any pointer the program passed in its place.
unsafe fn block_size(p: *mut u8) -> usize {
    let addr = p as usize;
    let entry = heap::MAP.entry(addr);
    if let Some(record) = superslab::slab_record(entry) {
        // SAFETY: a live slab's entry gives its record.
        let s = unsafe { &*Segment::<Layout>::slab_at(record) };
        // SAFETY: `p` lies in that slab (its entry says so), so it is not null.
        let b = unsafe { UserPtr::<Layout>::from_raw(NonNull::new_unchecked(p)) }.to_base();
        // The checked build verified `p` before asking (`checks::requested_size`).
        if !<Layout as BlockLayout>::CHECKED && !s.holds_block(b.addr()) {
            return 0;
        }
        return s.class().block_size();
    }
    match Region::of(entry) {
        // SAFETY: the map vouches for large blocks in this granule.
        Region::Large => unsafe { heap::LARGE.usable_size(p) },
        // Not a live slab, or not ours: not a live block.
        Region::Segment | Region::Foreign => 0,
    }
}

/// Whether `p` lies in a live slab without being the start of a live block of it (an
/// interior, misaligned or already free pointer; never in the checked build, see
/// `refused`).
///
/// # Safety
/// None beyond `p` being a pointer value: only our own metadata is read, and `p`'s first
/// 16 bytes once it is known to be a block start of a live slab.
unsafe fn misused_in_slab(p: *mut u8) -> bool {
    let addr = p as usize;
    superslab::slab_record(heap::MAP.entry(addr)).is_some_and(|record| {
        // SAFETY: a live slab's entry gives its record.
        let s = unsafe { &*Segment::<Layout>::slab_at(record) };
        // SAFETY: `p` lies in that slab (its entry says so), so it is not null.
        let b = unsafe { UserPtr::<Layout>::from_raw(NonNull::new_unchecked(p)) }.to_base();
        refused(s, b)
    })
}

/// From this size on, `calloc` takes blocks straight from the slabs so that blocks carved
/// from fresh pages are not zeroed again (nor their pages touched).
const CALLOC_FROM_SLABS: usize = 16 * 1024;

fn alloc_zeroed_from_slabs(c: SizeClass, size: usize) -> *mut u8 {
    let h = heap::current_or_init();
    if h.is_null() {
        return null_mut();
    }
    // SAFETY: this thread's heap.
    let Some((b, zero)) = (unsafe { (*h).alloc_zeroed_slow(c) }) else {
        return null_mut();
    };
    #[cfg(feature = "checked")]
    checks::on_alloc_keeping(b, c, size);
    let p = b.to_user().as_ptr();
    if !zero {
        // SAFETY: the block holds at least `size` bytes.
        unsafe { core::ptr::write_bytes(p, 0, size) };
    } else {
        // Fresh pages, not touched yet: made writable now, so that the caller's first read
        // does not map the zero page that its first write must then replace.
        let start = p as usize & !(os::PAGE - 1);
        let end = (p as usize + size).next_multiple_of(os::PAGE);
        // SAFETY: the pages hold the block (and maybe free neighbours); contents unchanged.
        unsafe { os::Os.prefault_writable(NonNull::new_unchecked(start as *mut u8), end - start) };
    }
    p
}

/// Every `malloc` but the fast path: an empty cache list, a thread without a heap, a
/// medium or large size, a size no one can serve (null with `ENOMEM`).
#[cold]
#[inline(never)]
pub(crate) fn malloc_slow(size: usize) -> *mut u8 {
    let p = match class_of(size) {
        Some(c) => Alloc::alloc_class(c, size),
        None if size <= isize::MAX as usize => alloc_large(size, MIN_ALIGN, false),
        None => null_mut(),
    };
    if p.is_null() {
        os::set_errno(libc::ENOMEM);
    }
    p
}

/// `size` → the offset of its class's slot in a heap (`class × CLASS_STRIDE`), for every
/// size up to [`LOOKUP_MAX`]: malloc's one table load (2 KiB).
static SLOT_OF_SIZE: [u16; LOOKUP_MAX + 1] = {
    let mut t = [0u16; LOOKUP_MAX + 1];
    let mut size = 0;
    while size <= LOOKUP_MAX {
        let Some(c) = tiny_layout::const_class_of(size) else {
            panic!("sizes up to LOOKUP_MAX have a class")
        };
        t[size] = (c.index() * CLASS_STRIDE) as u16;
        size += 1;
    }
    t
};

/// The class whose slot is at offset `slot`.
///
/// # Safety
/// `slot` is a class's slot offset (from `SLOT_OF_SIZE` or `c.index() × CLASS_STRIDE`).
#[cfg(feature = "checked")]
#[inline(always)]
unsafe fn class_at(slot: usize) -> SizeClass {
    // SAFETY: a slot offset is a class index times CLASS_STRIDE (caller).
    unsafe { SizeClass::new_unchecked(slot / CLASS_STRIDE) }
}

/// The malloc family over hakmem.
pub static API: Api<Alloc> = Api(Alloc);

/// hakmem as a Rust global allocator:
///
/// ```
/// #[global_allocator]
/// static GLOBAL: hakmem::HakMem = hakmem::HakMem;
/// let v: Vec<u64> = (0..1000).collect();
/// assert_eq!(v.iter().sum::<u64>(), 499500);
/// ```
///
/// Using it does not replace the process's C `malloc`; enable the `c-override` feature
/// for that (it exports the C symbols from this crate, see [`export_c_symbols!`]).
#[derive(Clone, Copy, Debug, Default)]
pub struct HakMem;

// SAFETY: every method forwards to the allocator, honouring `Layout`'s size and align.
unsafe impl GlobalAlloc for HakMem {
    #[inline]
    unsafe fn alloc(&self, l: RustLayout) -> *mut u8 {
        if l.align() <= MIN_ALIGN {
            Alloc.alloc(l.size())
        } else {
            Alloc.alloc_aligned(l.size(), l.align())
        }
    }
    #[inline]
    unsafe fn dealloc(&self, p: *mut u8, _l: RustLayout) {
        // SAFETY: `p` was allocated by us (GlobalAlloc contract).
        unsafe { Alloc::free_ptr(p) }
    }
    unsafe fn alloc_zeroed(&self, l: RustLayout) -> *mut u8 {
        if l.align() <= MIN_ALIGN {
            Alloc.alloc_zeroed(l.size())
        } else {
            let p = Alloc.alloc_aligned(l.size(), l.align());
            if !p.is_null() {
                // SAFETY: fresh block of at least `size` bytes.
                unsafe { core::ptr::write_bytes(p, 0, l.size()) };
            }
            p
        }
    }
    unsafe fn realloc(&self, p: *mut u8, l: RustLayout, new_size: usize) -> *mut u8 {
        if l.align() <= MIN_ALIGN {
            // SAFETY: `p` is live (GlobalAlloc contract); new_size > 0.
            return unsafe { API.realloc(p, new_size) }.unwrap_or(null_mut());
        }
        // SAFETY: `p` is live.
        if unsafe { Alloc.resize_in_place(p, new_size) } {
            return p;
        }
        let q = Alloc.alloc_aligned(new_size, l.align());
        if !q.is_null() {
            // SAFETY: both live, distinct; copy the smaller size.
            unsafe {
                core::ptr::copy_nonoverlapping(p, q, l.size().min(new_size));
                Alloc::free_ptr(p);
            }
        }
        q
    }
}

/// Number of empty segments cached process-wide (for tests and statistics).
pub fn cached_segments() -> usize {
    heap::cached_segments()
}

/// A snapshot of the allocator's statistics, merged over all threads.
pub fn stats() -> Stats {
    stats::collect()
}

/// Prints the statistics report to stderr (`json` for the JSON form).
pub fn print_stats(json: bool) {
    stats::print(json)
}

/// Gives every free page this allocator can release back to the OS now: the calling
/// thread's cache and empty slabs, cached empty segments and cached large mappings.
/// Returns the bytes released (what `malloc_trim` reports).
pub fn trim() -> usize {
    heap::trim()
}
