//! The checked build (feature `checked`): every block carries a 16-byte header
//! (`tiny_layout::Guarded`), free-list links are stored encoded and verified when followed,
//! and malloc/free verify what they hand out and take back. A violation is reported in one
//! line on stderr (`write(2)`) and the process aborts:
//!
//! `hakmem: double free at 0x7f..: class 1 (32 bytes) expected 0xa1 found 0xf1`
//!
//! What is checked, and where:
//! - malloc: the block taken from a free list has a valid Free header (else it was
//!   overwritten while free); its header becomes Allocated with the requested size, and up
//!   to 16 bytes after the request are filled with a canary.
//! - free: the pointer is ours and the start of a block (not interior, not a stack or
//!   foreign address); its header decodes (else overwritten: overflow from the previous
//!   block); it is Allocated (else double free); its class matches its slab's; the canary
//!   is intact. The header then becomes Free. (An overflow that reaches the next block's
//!   header is caught when that block is next allocated or freed; it is not checked from
//!   here because another thread may be writing that header at the same moment.)
//! - realloc in place: the header's requested size and the canary move.
//! - `malloc_usable_size` reports the requested size, so a program that trusts it never
//!   writes over the canary.
//! - free-list pops: the encoded link checks (else the free block was written: use after
//!   free).

use crate::os::Line;
use crate::{heap, Layout};
use core::ptr::NonNull;
use ptr_conversion::{
    BlockBase, BlockLayout, BlockState, Corruption, Header, Report, SizeClass, UserPtr,
};
use superslab::{Region, Segment};

const CANARY: u8 = 0xCA;
const CANARY_BYTES: usize = 16;
const CANARY_WORD: u64 = u64::from_ne_bytes([CANARY; 8]);

/// Writes the canary at `at` (up to 16 bytes, `room` bytes available in the block).
///
/// # Safety
/// `[at, at + min(room, 16))` is inside a block the caller owns.
unsafe fn write_canary(at: usize, room: usize) {
    let n = room.min(CANARY_BYTES);
    // SAFETY: forwarded; unaligned stores stay inside the range.
    unsafe {
        if n == CANARY_BYTES {
            (at as *mut u64).write_unaligned(CANARY_WORD);
            ((at + 8) as *mut u64).write_unaligned(CANARY_WORD);
        } else {
            core::ptr::write_bytes(at as *mut u8, CANARY, n);
        }
    }
}

/// The first damaged canary byte at `at`, if any.
///
/// # Safety
/// As for [`write_canary`].
unsafe fn canary_damage(at: usize, room: usize) -> Option<u8> {
    let n = room.min(CANARY_BYTES);
    // SAFETY: forwarded.
    let bytes = unsafe { core::slice::from_raw_parts(at as *const u8, n) };
    if n == CANARY_BYTES {
        // SAFETY: 16 readable bytes.
        let (a, b) = unsafe {
            (
                (at as *const u64).read_unaligned(),
                ((at + 8) as *const u64).read_unaligned(),
            )
        };
        if a == CANARY_WORD && b == CANARY_WORD {
            return None;
        }
    }
    bytes.iter().copied().find(|&x| x != CANARY)
}

/// Writes the report line and aborts.
pub fn reporter(r: &Report) -> ! {
    let mut l = Line::new();
    l.text("hakmem: ")
        .text(r.what.describe())
        .text(" at ")
        .hex(r.addr);
    if let Some(c) = r.class.and_then(|c| SizeClass::new(c as usize)) {
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
pub fn fail(what: Corruption, addr: usize, class: Option<u8>, expected: u64, found: u64) -> ! {
    reporter(&Report {
        what,
        addr,
        class,
        expected,
        found,
    })
}

/// Verifies a block about to be handed out and marks it Allocated for `requested` bytes.
pub fn on_alloc(b: BlockBase<Layout>, c: SizeClass, requested: usize) {
    let user = b.to_user().addr();
    // SAFETY: `b` is a block of ours just taken from a free list.
    match unsafe { b.read_header() } {
        Ok(h) if h.state == BlockState::Free && h.class as usize == c.index() => {}
        Ok(h) => fail(
            Corruption::FreeListCorrupted,
            user,
            Some(c.index() as u8),
            Header::TAG_FREE as u64,
            tag_of(h) as u64,
        ),
        Err(e) => fail(
            Corruption::HeaderOverwritten,
            user,
            Some(c.index() as u8),
            Header::TAG_FREE as u64,
            e.found_tag as u64,
        ),
    }
    // SAFETY: we own the block; the canary lies inside it (requested <= block size).
    unsafe {
        b.write_header(Header {
            state: BlockState::Allocated,
            class: c.index() as u8,
            requested: requested as u32,
        });
        write_canary(user + requested, c.block_size() - requested);
    }
}

fn tag_of(h: Header) -> u8 {
    match h.state {
        BlockState::Allocated => Header::TAG_ALLOCATED,
        BlockState::Free => Header::TAG_FREE,
    }
}

/// Verifies a pointer being freed; on success its header is marked Free.
///
/// # Safety
/// Reads hakmem's metadata for `p`; any pointer value is accepted.
pub unsafe fn on_free(p: *mut u8) {
    let addr = p as usize;
    match heap::MAP.region(addr) {
        Region::Segment => {}
        // SAFETY: the map marks large blocks in this granule.
        Region::Large if unsafe { heap::LARGE.usable_size(p) } != 0 => return,
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
    // SAFETY: `addr` is non-null (it lies in a segment); converting is the checked path's
    // whole point: the header read below decides whether it really is a block start.
    let b = unsafe { UserPtr::<Layout>::from_raw(NonNull::new_unchecked(p)) }.to_base();
    // A header that checks proves `base` is a block start (its check word mixes in its own
    // address), so the division by the stride is only needed to name a failure.
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
    // SAFETY: the canary lies inside the block, after the requested bytes.
    if let Some(bad) = unsafe { canary_damage(addr + requested, c.block_size() - requested) } {
        fail(
            Corruption::CanaryOverwritten,
            addr,
            class,
            CANARY as u64,
            bad as u64,
        );
    }
    // SAFETY: we own the block being freed.
    unsafe {
        b.write_header(Header {
            state: BlockState::Free,
            class: c.index() as u8,
            requested: 0,
        })
    };
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

/// Records a new requested size for a block resized in place, moving its canary.
///
/// # Safety
/// `p` is a live slab block of ours with at least `new_size` usable bytes.
pub unsafe fn on_resize(p: *mut u8, new_size: usize) {
    if heap::MAP.region(p as usize) != Region::Segment {
        return;
    }
    // SAFETY: as above.
    let slab = unsafe { Segment::<Layout>::slab_of(p as usize) };
    let c = slab.class();
    if let Some(b) = slab.block_containing(p as usize - Layout::HEADER_SIZE) {
        // SAFETY: the caller owns the live block; the canary lies inside it.
        unsafe {
            b.write_header(Header {
                state: BlockState::Allocated,
                class: c.index() as u8,
                requested: new_size as u32,
            });
            write_canary(p as usize + new_size, c.block_size() - new_size);
        }
    }
}
