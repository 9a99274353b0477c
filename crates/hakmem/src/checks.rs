//! The checked build (feature `checked`): every block carries a 16-byte header
//! (`tiny_layout::Guarded`), free-list links are stored encoded and verified when followed,
//! and malloc/free verify what they hand out and take back. A violation is reported in one
//! line on stderr (`write(2)`) and the process aborts:
//!
//! `hakmem: double free at 0x7f..: class 1 (32 bytes) expected 0xa1 found 0xf1`
//!
//! What is checked, and where:
//! - malloc: the block taken from a free list has the Free tag (else its header was
//!   overwritten while free: the tag is the byte an overflow from below writes first; the
//!   rest of the header, kept by malloc, is checked at the block's free); its header
//!   becomes Allocated with the requested size, and up to 8 bytes after the request (as
//!   many as the block has room for) hold a canary.
//! - free: the pointer is ours and the start of a block (not interior, not a stack or
//!   foreign address); its header checks (else overwritten: overflow from the previous
//!   block); it is Allocated (else double free); its class matches its slab's; the canary
//!   is intact. The header then becomes Free. (An overflow that reaches the next block's
//!   header is caught when that block is next allocated or freed; it is not checked from
//!   here because another thread may be writing that header at the same moment.)
//! - realloc in place: the same checks as free, then the header's requested size and the
//!   canary move.
//! - `malloc_usable_size` reports the requested size, so a program that trusts it never
//!   writes over the canary.
//! - free-list pops: the encoded link checks (else the free block was written: use after
//!   free).
//!
//! Cost: each check has a fast form on the hot paths (the expected header words compared
//! with two loads, one canary word, the Free mark a one-byte store, and for free the
//! release build's one address-map load and this-heap test, which give the slab's record
//! and class; malloc's header word and canary place come from one table entry per
//! requested size) and a full form, [`diagnose`] and `alloc_failed`, which runs only when
//! the fast form fails and names the misuse. See "Checked build cost" in
//! `docs/benchmarks.md` and "The checked build's cost" in `docs/performance.md`.

use crate::os::Line;
use crate::{heap, Layout};
use core::ptr::NonNull;
use ptr_conversion::{
    BlockBase, BlockLayout, BlockState, Corruption, Header, Report, SizeClass, UserPtr,
};
use superslab::{Region, Segment, Slab, ENTRY_FOREIGN, FULL_FLAG};
use tiny_layout::{Guarded, BLOCK_ALIGN, LOOKUP_MAX};

const CANARY: u8 = 0xCA;
const CANARY_WORD: u64 = u64::from_ne_bytes([CANARY; 8]);

/// The canary: the (up to) 8 bytes right after the requested size that the block has
/// room for. Any overflow that runs on from the end of the requested bytes writes the
/// first of them; a block with no room left has the next block's header right after it,
/// whose check catches the overflow instead. They are read and written as one 8-byte word
/// inside the block: at `user + requested`, or, with less than 8 bytes of room, the block's
/// last 8 bytes, of which only the last `room` are canary ([`CANARY_MASKS`]): one load or
/// store, no loop.
#[inline(always)]
const fn canary_word_at(user: usize, requested: usize, block: usize) -> usize {
    let last = block - 8;
    user + if requested < last { requested } else { last }
}

/// `CANARY_MASKS[k]`: the canary bytes of a canary word whose first `k` bytes belong to
/// the user (k = 8 - room, for a room under 8 bytes; all 8 for a block without room).
const CANARY_MASKS: [u64; 9] = {
    let mut m = [0u64; 9];
    let mut k = 0;
    while k < 8 {
        // The word's last 8 - k bytes: its high bytes in little-endian order.
        m[k] = u64::from_le(!0u64 << (8 * k));
        k += 1;
    }
    m
};

/// Writes the canary of a block of `block` bytes at `user` just handed out for
/// `requested` bytes: one store, which may also cover up to 7 of the requested bytes when
/// the room is short (the program has written none of them yet).
///
/// # Safety
/// The caller owns the block; `requested <= block` and `block >= 8`.
#[inline(always)]
unsafe fn write_canary_fresh(user: usize, requested: usize, block: usize) {
    let at = canary_word_at(user, requested, block);
    // SAFETY: `[at, at + 8)` lies inside the block (caller); unaligned access is allowed.
    unsafe { (at as *mut u64).write_unaligned(CANARY_WORD) }
}

/// Writes the canary of a block in use, keeping the program's bytes that share its word
/// (an in-place resize, a zeroed block).
///
/// # Safety
/// As for [`write_canary_fresh`].
#[inline(always)]
unsafe fn write_canary(user: usize, requested: usize, block: usize) {
    let at = canary_word_at(user, requested, block) as *mut u64;
    let mask = CANARY_MASKS[8 - (block - requested).min(8)];
    // SAFETY: as in `write_canary_fresh`.
    unsafe { at.write_unaligned(at.read_unaligned() & !mask | CANARY_WORD & mask) }
}

/// Whether the canary of a block is intact; false for a `requested` above `block`.
///
/// # Safety
/// The block may be read and `block >= 8`.
#[inline(always)]
unsafe fn canary_intact(user: usize, requested: usize, block: usize) -> bool {
    // (`requested` comes from a header's 32 bits: no overflow.)
    if requested + 8 <= block {
        // SAFETY: `[user + requested, + 8)` lies inside the block; unaligned is allowed.
        return unsafe { ((user + requested) as *const u64).read_unaligned() } == CANARY_WORD;
    }
    if requested >= block {
        // No room: no canary (the next block's header follows; its check catches an
        // overflow). Exact-size requests are common.
        return requested == block;
    }
    // 1 to 7 bytes of room: the block's last word, whose first `8 - room` bytes are the
    // program's and whose last `room` bytes (its high bytes) the canary.
    let user_bytes = 8 - (block - requested);
    // SAFETY: the block's last 8 bytes.
    let w = unsafe { ((user + block - 8) as *const u64).read_unaligned() };
    u64::from_le(w ^ CANARY_WORD).wrapping_shr(8 * user_bytes as u32) == 0
}

/// The first damaged canary byte (for the report), if any.
///
/// # Safety
/// As for [`canary_intact`].
unsafe fn canary_damage(user: usize, requested: usize, block: usize) -> Option<u8> {
    let n = (block - requested).min(8);
    // SAFETY: the `n` canary bytes lie inside the block (caller).
    let bytes = unsafe { core::slice::from_raw_parts((user + requested) as *const u8, n) };
    bytes.iter().copied().find(|&x| x != CANARY)
}

/// The bytes from a block's user pointer to the next block's header: the block size
/// plus the layout's spare bytes (blocks above 1 KiB), where the canary may lie.
#[inline(always)]
fn span(c: SizeClass) -> usize {
    Layout::stride(c) - Layout::HEADER_SIZE
}

/// Writes the report line and aborts. A report without a class (from a box that does not
/// know slabs: a damaged free-list link) gets the class of the live slab the address lies
/// in, if any.
pub fn reporter(r: &Report) -> ! {
    let mut l = Line::new();
    l.text("hakmem: ")
        .text(r.what.describe())
        .text(" at ")
        .hex(r.addr);
    let class = match r.class {
        Some(c) => SizeClass::new(c as usize),
        // SAFETY: a live slab's entry gives its record.
        None => superslab::slab_record(heap::MAP.entry(r.addr))
            .map(|rec| unsafe { (*Segment::<Layout>::slab_at(rec)).class() }),
    };
    if let Some(c) = class {
        l.text(": class ")
            .dec(c.index() as u64)
            .text(" (")
            .dec(c.block_size() as u64)
            .text(" bytes)");
    }
    if r.expected != 0 || r.found != 0 {
        l.text(" expected ")
            .hex(r.expected as usize)
            .text(" found ")
            .hex(r.found as usize);
    }
    l.text(r.what.hint()).emit();
    // SAFETY: abort never returns.
    unsafe { libc::abort() }
}

/// Reports directly (not through `ptr_conversion::report`, whose hook is installed at
/// process set-up: a bad free may come before any allocation).
#[cold]
#[inline(never)]
pub fn fail(what: Corruption, addr: usize, class: Option<u8>, expected: u64, found: u64) -> ! {
    reporter(&Report {
        what,
        addr,
        class,
        expected,
        found,
    })
}

/// Verifies a block about to be handed out and marks it Allocated for `requested` bytes
/// (its contents are the program's to fill: the canary store may cover a few of them).
#[inline(always)]
pub fn on_alloc(b: BlockBase<Layout>, c: SizeClass, requested: usize) {
    mark_allocated(b, c, requested);
    // SAFETY: we own the block; the canary lies inside it (requested <= block size).
    unsafe { write_canary_fresh(b.to_user().addr(), requested, span(c)) };
}

/// [`on_alloc`] for malloc's fast path: a request of `size <= LOOKUP_MAX` bytes, served
/// from its own class (`class_of(size)`). The header's first word and the canary's place
/// come from [`SMALL_ALLOC`] (one 4-byte entry per size), so the path has no class
/// arithmetic.
#[inline(always)]
pub fn on_alloc_small(b: BlockBase<Layout>, size: usize) {
    let small = &SMALL_ALLOC[size];
    // SAFETY: `b` is a block of ours just taken from a free list.
    if !unsafe { b.tag_is(BlockState::Free) } {
        alloc_failed_small(b, size)
    }
    // SAFETY: we own the block, its header checked Free; its class is `class_of(size)`
    // (caller), whose header word and canary place the entry holds; the canary lies
    // inside the block.
    unsafe {
        b.mark_allocated_word(small.header_low as u64 | (size as u64) << 32);
        let at = b.to_user().addr() + small.canary_at as usize;
        (at as *mut u64).write_unaligned(CANARY_WORD);
    }
}

/// What malloc's fast path writes for a request of `size <= LOOKUP_MAX` bytes.
#[derive(Clone, Copy)]
#[repr(C, align(4))]
struct SmallAlloc {
    /// The Allocated header's first word but the requested size
    /// ([`Header::allocated_word`] of the size's class and 0).
    header_low: u16,
    /// The canary word's offset from the user pointer ([`canary_word_at`]).
    canary_at: u16,
}

/// [`SmallAlloc`] by requested size (4 KiB).
static SMALL_ALLOC: [SmallAlloc; LOOKUP_MAX + 1] = {
    let mut t = [SmallAlloc {
        header_low: 0,
        canary_at: 0,
    }; LOOKUP_MAX + 1];
    let mut size = 0;
    while size <= LOOKUP_MAX {
        let Some(c) = tiny_layout::const_class_of(size) else {
            panic!("sizes up to LOOKUP_MAX have a class")
        };
        let header = Header::allocated_word(c.index() as u8, 0);
        assert!(header <= u16::MAX as u64);
        let span = Guarded::const_stride(c) - Guarded::HEADER_SIZE;
        t[size] = SmallAlloc {
            header_low: header as u16,
            canary_at: canary_word_at(0, size, span) as u16,
        };
        size += 1;
    }
    t
};

/// [`alloc_failed`] for a block malloc's fast path took for `size` bytes.
#[cold]
#[inline(never)]
fn alloc_failed_small(b: BlockBase<Layout>, size: usize) -> ! {
    match tiny_layout::class_of(size) {
        Some(c) => alloc_failed(b, c),
        None => fail(
            Corruption::HeaderOverwritten,
            b.to_user().addr(),
            None,
            0,
            0,
        ),
    }
}

/// [`on_alloc`] for a block whose contents are already what the program gets (zero).
pub fn on_alloc_keeping(b: BlockBase<Layout>, c: SizeClass, requested: usize) {
    mark_allocated(b, c, requested);
    // SAFETY: as in `on_alloc`.
    unsafe { write_canary(b.to_user().addr(), requested, span(c)) };
}

/// Checks the Free tag of a block taken from a free list and marks it Allocated. The tag
/// is the header byte an overflow from the block below reaches first, so it tells whether
/// one reached this header while the block was free. The check word behind it held the
/// link's complement, and the link in front of the program's bytes was verified against
/// it by the pop; malloc writes the whole Allocated header.
#[inline(always)]
fn mark_allocated(b: BlockBase<Layout>, c: SizeClass, requested: usize) {
    // SAFETY: `b` is a block of ours just taken from a free list.
    if !unsafe { b.tag_is(BlockState::Free) } {
        alloc_failed(b, c)
    }
    // SAFETY: we own the block, its header checked Free of class `c`.
    unsafe { b.mark_allocated(c.index() as u8, requested as u32) };
}

/// Names what is wrong with the header of a block taken from a free list.
#[cold]
#[inline(never)]
fn alloc_failed(b: BlockBase<Layout>, c: SizeClass) -> ! {
    let user = b.to_user().addr();
    // SAFETY: `b` is a block of ours just taken from a free list.
    match unsafe { b.read_header() } {
        Ok(h) => fail(
            Corruption::FreeListCorrupted,
            user,
            Some(c.index() as u8),
            Header::TAG_FREE as u64,
            Header::tag_of(h.state) as u64,
        ),
        Err(e) => fail(
            Corruption::HeaderOverwritten,
            user,
            Some(c.index() as u8),
            Header::TAG_FREE as u64,
            e.found_tag as u64,
        ),
    }
}

/// The checks of free (and of an in-place resize) for a slab block, in their fast form:
/// `p` is 16-aligned, `entry` (its slice's address-map entry) is a live slab's, and its
/// header is the valid Allocated header of that slab's class (which proves `p` is a block
/// start: the check word mixes in the block's own address), with its canary intact. Gives
/// the block and its class; `None` when any of this fails, or for a pointer that is not a
/// slab block: [`diagnose`] then names it.
#[inline(always)]
fn verified(entry: u64, p: *mut u8) -> Option<(BlockBase<Layout>, SizeClass)> {
    let record = superslab::slab_record(entry)?;
    // SAFETY: a live slab's entry (tested above) gives its record.
    unsafe { verified_in(Segment::<Layout>::slab_at(record), p) }
}

/// [`verified`] for a pointer `p` into a slice of the live slab `s`.
///
/// # Safety
/// `s` is the live slab whose map entry `p`'s slice carries.
#[inline(always)]
unsafe fn verified_in(
    s: *const Slab<Layout>,
    p: *mut u8,
) -> Option<(BlockBase<Layout>, SizeClass)> {
    let addr = p as usize;
    if !addr.is_multiple_of(BLOCK_ALIGN) {
        return None;
    }
    // SAFETY: a live slab's record (caller).
    let c = unsafe { (*s).class() };
    // SAFETY: `addr` is non-null (it lies in a slab); whether it is a block start is
    // decided by the header check below.
    let b = unsafe { UserPtr::<Layout>::from_raw(NonNull::new_unchecked(p)) }.to_base();
    // SAFETY: a live slab's slice is never a segment's first (metadata) slice, so
    // `addr - 16` lies in the same segment, past its metadata slice: mapped.
    let requested = unsafe { b.expect_allocated(c.index() as u8) }? as usize;
    // The requested size is behind the tag (an overflow reaching it changed the tag) but
    // outside the check word: `canary_intact` bounds it by the span, which keeps its read
    // inside the block ([`diagnose`] reports a size above the class's).
    // SAFETY: a checked header of this class: the block spans `span(c)` bytes from `addr`.
    if !unsafe { canary_intact(addr, requested, span(c)) } {
        return None;
    }
    Some((b, c))
}

/// Marks a verified block Free (the header a double free finds).
#[inline(always)]
fn mark_free(b: BlockBase<Layout>) {
    // SAFETY: the block was verified live (its header Allocated) and is being freed by
    // its holder.
    unsafe { b.mark_free() };
}

/// The checked free: verifies `p` and marks it Free, then frees it. The fast path is the
/// release build's: one address-map load says "a live slab of this heap, not full" (the
/// entry xor the heap's tag is then below `FULL_FLAG`, and is the slab's record), and the
/// block is verified against that record and pushed onto its list. Anything else
/// (another thread's block, a full slab's, a large block, a pointer the fast checks
/// refuse, a thread without a heap) takes [`free_elsewhere`]. A misuse is reported and
/// aborts. Returns true: `p` is freed (the caller's own free path is not to run).
///
/// # Safety
/// Reads hakmem's metadata for `p`; any pointer value is accepted.
#[inline(always)]
pub unsafe fn free(p: *mut u8) -> bool {
    let Some(entry) = heap::Heap::map_entry(p as usize) else {
        // SAFETY: forwarded.
        return unsafe { free_elsewhere(ENTRY_FOREIGN, p) };
    };
    // The empty heap's tag matches no entry: `record` is below `FULL_FLAG` only on a real
    // heap.
    let record = heap::xor_current_tag(entry) as usize;
    if record < FULL_FLAG as usize {
        // SAFETY: this heap's live slab, not full: `record` is its record's address.
        let s = unsafe { Segment::<Layout>::slab_at(record) };
        // SAFETY: as above.
        if let Some((b, _)) = unsafe { verified_in(s, p) } {
            mark_free(b);
            // SAFETY: this heap's slab; the block is free now and ours.
            if !unsafe { (*s).push(b) } {
                // SAFETY: this thread's heap's slab, every block of it back.
                unsafe { (*heap::current()).slab_emptied(s) };
            }
            return true;
        }
    }
    // SAFETY: forwarded.
    unsafe { free_elsewhere(entry, p) }
}

/// [`free`] for everything but its fast path: verifies `p` (or names the misuse) and
/// marks it Free, then frees it as the release build does ([`free_other`](crate::free_other):
/// another thread's block joins this thread's batch for its owner, a full slab's goes to
/// the slow path), or frees a live large block.
///
/// # Safety
/// As for [`free`]; `entry` is `p`'s slice's map entry as the fast path read it.
#[cold]
#[inline(never)]
unsafe fn free_elsewhere(entry: u64, p: *mut u8) -> bool {
    if p.is_null() {
        return true;
    }
    // SAFETY: forwarded.
    if let Some((b, _)) = verified(entry, p).or_else(|| unsafe { diagnose(p) }) {
        mark_free(b);
    }
    // SAFETY: `p` passed the checks: a live block of ours, now marked Free (a slab block);
    // `entry` is its map entry.
    unsafe { crate::free_other(p, heap::xor_current_tag(entry)) };
    true
}

/// The full checks, for what [`verified`] refused: reports the misuse and aborts, or
/// returns `None` for a live large block (the large tier checks its own header), or the
/// block if it passes after all.
///
/// # Safety
/// As for [`free`].
#[cold]
#[inline(never)]
unsafe fn diagnose(p: *mut u8) -> Option<(BlockBase<Layout>, SizeClass)> {
    let addr = p as usize;
    match heap::MAP.region(addr) {
        Region::Segment => {}
        // SAFETY: the map marks large blocks in this granule.
        Region::Large if unsafe { heap::LARGE.usable_size(p) } != 0 => return None,
        _ => {
            let what = if heap::LARGE.in_cache(p) {
                Corruption::DoubleFree
            } else {
                Corruption::InvalidFree
            };
            fail(what, addr, None, 0, 0)
        }
    }
    // SAFETY: the map says `addr` is in a live segment.
    let slab = unsafe { Segment::<Layout>::slab_of(addr) };
    let c = slab.class();
    let class = Some(c.index() as u8);
    let base = addr.wrapping_sub(Layout::HEADER_SIZE);
    if !slab.is_live() || base < slab.start() || base >= slab.carved_end() {
        fail(Corruption::InvalidFree, addr, None, 0, 0)
    }
    // SAFETY: `addr` is non-null (it lies in a segment); the header read below decides
    // whether it really is a block start.
    let b = unsafe { UserPtr::<Layout>::from_raw(NonNull::new_unchecked(p)) }.to_base();
    // SAFETY: `base` lies in the carved part of a live slab: mapped and readable.
    let h = match unsafe { b.read_header() } {
        Ok(h) => h,
        Err(e) => match slab.block_containing(base) {
            Some(real) if real.addr() == base => fail(
                Corruption::HeaderOverwritten,
                addr,
                class,
                Header::TAG_ALLOCATED as u64,
                e.found_tag as u64,
            ),
            Some(real) => fail(
                Corruption::InvalidFree,
                addr,
                class,
                real.to_user().addr() as u64,
                addr as u64,
            ),
            None => fail(Corruption::InvalidFree, addr, None, 0, 0),
        },
    };
    if h.state == BlockState::Free {
        fail(
            Corruption::DoubleFree,
            addr,
            class,
            Header::TAG_ALLOCATED as u64,
            Header::TAG_FREE as u64,
        );
    }
    if h.class as usize != c.index() {
        fail(
            Corruption::ClassMismatch,
            addr,
            class,
            c.index() as u64,
            h.class as u64,
        );
    }
    let requested = h.requested as usize;
    if requested > c.block_size() {
        fail(
            Corruption::HeaderOverwritten,
            addr,
            class,
            c.block_size() as u64,
            requested as u64,
        );
    }
    // SAFETY: the canary lies inside the block, after the requested bytes.
    if let Some(bad) = unsafe { canary_damage(addr, requested, span(c)) } {
        fail(
            Corruption::CanaryOverwritten,
            addr,
            class,
            CANARY as u64,
            bad as u64,
        );
    }
    Some((b, c))
}

/// The requested size recorded for a live block of a slab (0 if not a slab block).
///
/// # Safety
/// `p` is a live block of ours.
pub unsafe fn requested_size(p: *mut u8) -> Option<usize> {
    if heap::MAP.region(p as usize) != Region::Segment {
        return None;
    }
    // SAFETY: a live block of a live slab (caller): its header is at p - 16, and a header
    // that checks is this block's own (the check word mixes in its address).
    let b = unsafe { UserPtr::<Layout>::from_raw(NonNull::new_unchecked(p)) }.to_base();
    // SAFETY: as above.
    unsafe { b.read_header() }
        .ok()
        .map(|h| h.requested as usize)
}

/// Verifies a block being resized in place (as free would) and records its new requested
/// size, moving its canary.
///
/// # Safety
/// `p` is a live slab block of ours with at least `new_size` usable bytes.
pub unsafe fn on_resize(p: *mut u8, new_size: usize) {
    if heap::MAP.region(p as usize) != Region::Segment {
        return;
    }
    let checked = verified(heap::MAP.entry(p as usize), p);
    // SAFETY: forwarded.
    if let Some((b, c)) = checked.or_else(|| unsafe { diagnose(p) }) {
        // SAFETY: the caller owns the live block; the canary lies inside it.
        unsafe {
            b.write_header(Header {
                state: BlockState::Allocated,
                class: c.index() as u8,
                requested: new_size as u32,
            });
            write_canary(p as usize, new_size, span(c));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[repr(align(16))]
    struct Buf([u8; 96]);

    /// Every block size and requested size up to 64 bytes: a fresh canary checks, any
    /// change to one of its bytes is caught, the program's bytes are not part of it, and a
    /// requested size above the block fails.
    #[test]
    fn canary_covers_exactly_the_room_after_the_request() {
        for block in (16..=64).step_by(8) {
            for requested in 0..=block {
                let canary = requested..block.min(requested + 8);
                for fresh in [true, false] {
                    let mut buf = Buf([0x55; 96]);
                    let user = buf.0.as_mut_ptr() as usize;
                    // SAFETY: `buf` holds `block` bytes at `user`, 16-aligned, owned here;
                    // `buf` is only read through `user` while the closures run.
                    let intact = |r| unsafe { canary_intact(user, r, block) };
                    // SAFETY: as above.
                    let damage = || unsafe { canary_damage(user, requested, block) };
                    // SAFETY: as above; the canary lies inside the block.
                    unsafe {
                        if fresh {
                            write_canary_fresh(user, requested, block)
                        } else {
                            write_canary(user, requested, block)
                        }
                    }
                    assert!(intact(requested) && !intact(block + 1));
                    let at = |i: usize| (user + i) as *mut u8;
                    // SAFETY: `i < block`: inside `buf`.
                    let flip = |i: usize, x: u8| unsafe { *at(i) ^= x };
                    // The program's bytes (and those after the canary) are not checked;
                    // the keeping write leaves them all alone.
                    for i in (0..requested).chain(canary.end..block) {
                        // SAFETY: as for `flip`.
                        let kept = unsafe { *at(i) } == 0x55;
                        assert!(kept || fresh, "{block} {requested} {i}");
                        flip(i, 0xFF);
                        assert!(intact(requested), "{block} {requested} {i}");
                        flip(i, 0xFF);
                    }
                    for i in canary.clone() {
                        flip(i, 1);
                        assert!(!intact(requested), "{block} {requested} {i}");
                        assert_eq!(damage(), Some(CANARY ^ 1));
                        flip(i, 1);
                    }
                }
            }
        }
    }
}
