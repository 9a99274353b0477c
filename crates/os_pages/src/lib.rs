//! # os_pages: the operating system's pages, behind one contract
//!
//! The platform layer of hakmem's boxes. Everything above it (segments, slabs, the large
//! tier) gets memory from the OS only through the [`PageSource`] trait defined here, and
//! this crate provides its one Linux implementation, [`MmapPages`]:
//!
//! | operation | Linux call |
//! | --- | --- |
//! | [`map`](PageSource::map) | `mmap(MAP_PRIVATE \| MAP_ANONYMOUS)`; alignment above the page by over-mapping and trimming head and tail with `munmap` |
//! | [`unmap`](PageSource::unmap) | `munmap` |
//! | [`purge`](PageSource::purge) | `madvise(MADV_DONTNEED)`: the pages go back to the OS, the range stays mapped and reads zero |
//! | [`hint_huge_pages`](PageSource::hint_huge_pages) | `madvise(MADV_HUGEPAGE)` |
//! | [`remap`](PageSource::remap) | shrink: `munmap` of the tail; grow in place: `mmap(MAP_FIXED_NOREPLACE)` of the pages after the range; else, when moving is allowed, `mremap(MREMAP_MAYMOVE \| MREMAP_FIXED)` onto an aligned reservation |
//! | [`wait`], [`wake`] | `futex(FUTEX_WAIT_PRIVATE)`, `futex(FUTEX_WAKE_PRIVATE)` |
//! | [`reserve`](PageSource::reserve) | `mmap(PROT_READ, MAP_NORESERVE)`: address space that reads zero, charged nothing |
//! | [`commit`](PageSource::commit) | `mprotect(PROT_READ \| PROT_WRITE)` on part of a reservation |
//!
//! Other page sources (a counting or failing wrapper for tests, another OS) implement the
//! same trait; the boxes are generic over it.
//!
//! The platform's one blocking wait lives here too: [`wait`] and [`wake`] (a `futex` on a
//! 32-bit word), so that a lock of the boxes above can put a waiter to sleep instead of
//! letting it spin while the holder is descheduled.
//!
//! ## Invariants owned here
//! - A range returned by [`PageSource::map`] is fresh, zero-filled, readable and writable,
//!   of at least the asked size, aligned to the asked alignment (and to [`PAGE`]), and used
//!   by nothing else until it is unmapped.
//! - [`MmapPages`] keeps no state: every call is one or a few system calls, it never
//!   allocates, formats or panics in release builds (failures are `None` or ignored
//!   advice), so it is safe to call from inside `malloc`.
//! - The page size is [`PAGE`] (4 KiB), the size on x86-64 and on aarch64 Linux with 4 KiB
//!   pages; a unit test checks it against `sysconf(_SC_PAGESIZE)`.
//!
//! ## Example
//! ```
//! use os_pages::{MmapPages, PageSource, PAGE};
//!
//! let pages = MmapPages;
//! // 64 KiB aligned to 1 MiB: over-mapped, then trimmed to exactly the range.
//! let p = pages.map(64 << 10, 1 << 20).expect("mmap");
//! assert_eq!(p.as_ptr() as usize % (1 << 20), 0);
//! // SAFETY: the range is ours, 64 KiB, readable and writable.
//! unsafe {
//!     assert_eq!(*p.as_ptr(), 0); // fresh pages read zero
//!     p.as_ptr().write_bytes(0xab, 64 << 10);
//!     // The pages go back to the OS; the range stays mapped and reads zero again.
//!     pages.purge(p, 64 << 10);
//!     assert_eq!(*p.as_ptr().add(PAGE), 0);
//!     pages.unmap(p, 64 << 10);
//! }
//! ```
#![no_std]
#![warn(missing_docs)]

use core::ptr::NonNull;
use core::sync::atomic::AtomicU32;

/// Bytes of one page: the granularity of every mapping (x86-64 and aarch64 Linux with
/// 4 KiB pages).
pub const PAGE: usize = 4096;

/// The operating system's pages, as the boxes (segments, the large tier) need them.
///
/// [`MmapPages`] implements it over `mmap`; a wrapper can add counting or failure
/// injection and delegate the mapping itself:
///
/// ```
/// use core::ptr::NonNull;
/// use core::sync::atomic::{AtomicUsize, Ordering::Relaxed};
/// use os_pages::{MmapPages, PageSource};
///
/// /// `MmapPages` that refuses to map more than `limit` ranges.
/// struct Limited {
///     maps: AtomicUsize,
///     limit: usize,
/// }
/// // SAFETY: every range comes from `MmapPages`, which keeps the contract.
/// unsafe impl PageSource for Limited {
///     fn map(&self, size: usize, align: usize) -> Option<NonNull<u8>> {
///         if self.maps.fetch_add(1, Relaxed) >= self.limit {
///             return None;
///         }
///         MmapPages.map(size, align)
///     }
///     unsafe fn unmap(&self, p: NonNull<u8>, size: usize) {
///         // SAFETY: forwarded from our caller.
///         unsafe { MmapPages.unmap(p, size) }
///     }
///     unsafe fn purge(&self, p: NonNull<u8>, size: usize) {
///         // SAFETY: forwarded from our caller.
///         unsafe { MmapPages.purge(p, size) }
///     }
/// }
///
/// let pages = Limited { maps: AtomicUsize::new(0), limit: 1 };
/// let p = pages.map(1 << 16, 1 << 16).unwrap();
/// assert!(pages.map(1 << 16, 1 << 16).is_none());
/// // The defaults: no huge-page hint, no remap.
/// pages.hint_huge_pages(p, 1 << 16);
/// // SAFETY: `p` is a whole mapping of 64 KiB from `map`.
/// assert!(unsafe { pages.remap(p, 1 << 16, 1 << 17, Some(1 << 16)) }.is_none());
/// // SAFETY: nothing uses `p` afterwards.
/// unsafe { pages.unmap(p, 1 << 16) };
/// ```
///
/// # Safety
/// Implementations must return, from [`map`](Self::map), fresh, zero-filled, readable and
/// writable memory of the requested size and alignment that nothing else uses until it
/// is unmapped; [`purge`](Self::purge) must leave the range mapped and reading zero;
/// [`remap`](Self::remap) must keep the contents of the old range (up to the smaller
/// size) and give a range of the new size, zero-filled beyond the old one.
pub unsafe trait PageSource {
    /// Granularity of mappings (the page size).
    const PAGE: usize = PAGE;
    /// Maps `size` bytes (a multiple of the page) aligned to `align` (a power of two);
    /// `None` if the OS refuses.
    fn map(&self, size: usize, align: usize) -> Option<NonNull<u8>>;
    /// Unmaps a range returned by `map` (or a page-aligned part of one).
    ///
    /// # Safety
    /// Nothing may use the range afterwards.
    unsafe fn unmap(&self, p: NonNull<u8>, size: usize);
    /// Gives the pages of a range back to the OS; the range stays mapped and reads as zero.
    ///
    /// # Safety
    /// The range's contents are lost.
    unsafe fn purge(&self, p: NonNull<u8>, size: usize);
    /// Asks for transparent huge pages on a range (a hint; the default does nothing).
    fn hint_huge_pages(&self, p: NonNull<u8>, size: usize) {
        let _ = (p, size);
    }
    /// Makes the pages of a range resident and writable now, as writes would (a hint; the
    /// default does nothing). For memory about to be read before it is written (a
    /// `calloc` block from fresh pages): a read of an untouched page maps the shared zero
    /// page, and the first write must then replace it and flush the old translation from
    /// every CPU that runs the process, an interrupt to each.
    ///
    /// # Safety
    /// `p`/`size` is a page-aligned range of one of this source's mappings; its contents
    /// are unchanged.
    unsafe fn prefault_writable(&self, p: NonNull<u8>, size: usize) {
        let _ = (p, size);
    }
    /// Reserves `size` bytes (a multiple of the page) of address space that reads as zero
    /// and may not be written until [`commit`](Self::commit)ted: no memory is charged for
    /// it, only the pages that are committed and written become resident. For large
    /// sparse tables (the address map). The default reserves with [`MmapPages`].
    fn reserve(&self, size: usize) -> Option<NonNull<u8>> {
        MmapPages.reserve(size)
    }
    /// Makes a page-aligned part of a range from [`reserve`](Self::reserve) writable;
    /// false if the OS refuses. Committing a committed range again does nothing. The
    /// default commits with [`MmapPages`].
    ///
    /// # Safety
    /// `p`/`size` lies inside one range returned by `reserve`.
    unsafe fn commit(&self, p: NonNull<u8>, size: usize) -> bool {
        // SAFETY: forwarded from the caller.
        unsafe { MmapPages.commit(p, size) }
    }
    /// Resizes a mapping, keeping its contents: in place if it can, else, when
    /// `move_align` is `Some(align)`, by moving its pages (not copying them) to a fresh
    /// range aligned to `align` (a power of two), so that a mapping that was aligned for
    /// huge pages stays so; `None` if the OS cannot (the range is then as it was). The
    /// default cannot.
    ///
    /// # Safety
    /// `p`/`old` is a whole mapping from `map`, or adjacent whole mappings together (then
    /// only an in-place resize can succeed); on success the old range must not be used.
    unsafe fn remap(
        &self,
        p: NonNull<u8>,
        old: usize,
        new: usize,
        move_align: Option<usize>,
    ) -> Option<NonNull<u8>> {
        let _ = (p, old, new, move_align);
        None
    }
}

/// Anonymous private `mmap` mappings: the Linux [`PageSource`].
///
/// Alignment above the page is obtained by mapping `size + align - PAGE` bytes and
/// unmapping the unaligned head and the unused tail, so the result is exactly `size`
/// bytes (rounded up to the page) of address space. Stateless and `Copy`: a `static`
/// segment pool or large tier holds it by value.
#[derive(Clone, Copy, Debug, Default)]
pub struct MmapPages;

/// `mmap` of a fresh anonymous private range of `len` bytes with protection `prot` (and
/// extra `flags`).
fn mmap_anonymous(len: usize, prot: libc::c_int, flags: libc::c_int) -> Option<NonNull<u8>> {
    // SAFETY: a new anonymous mapping at an address the kernel picks; no existing memory
    // is affected.
    let p = unsafe {
        libc::mmap(
            core::ptr::null_mut(),
            len,
            prot,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | flags,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        None
    } else {
        NonNull::new(p.cast())
    }
}

/// A fresh anonymous range of `size` bytes (rounded up to the page) aligned to `align`:
/// over-mapped by `align - PAGE` bytes, then the unaligned head and the unused tail are
/// unmapped, so the result is exactly the range.
fn map_aligned(
    size: usize,
    align: usize,
    prot: libc::c_int,
    flags: libc::c_int,
) -> Option<NonNull<u8>> {
    let size = size.checked_add(PAGE - 1)? & !(PAGE - 1);
    let align = align.max(PAGE);
    debug_assert!(align.is_power_of_two());
    // mmap's result is page-aligned, so `align - PAGE` extra bytes always hold an aligned
    // start.
    let extra = align - PAGE;
    let total = size.checked_add(extra)?;
    let p = mmap_anonymous(total, prot, flags)?;
    if extra == 0 {
        return Some(p);
    }
    let start = p.as_ptr() as usize;
    let aligned = (start + (align - 1)) & !(align - 1);
    let head = aligned - start;
    let tail = extra - head;
    // SAFETY: the head and the tail are parts of our fresh mapping that we never hand out;
    // both are page-aligned (start, aligned and size are).
    unsafe {
        if head > 0 {
            munmap(start, head);
        }
        if tail > 0 {
            munmap(aligned + size, tail);
        }
    }
    NonNull::new(aligned as *mut u8)
}

/// `n` rounded up to the page.
fn page_up(n: usize) -> usize {
    (n + PAGE - 1) & !(PAGE - 1)
}

/// Maps `len` fresh read-write bytes exactly at `addr` if nothing is mapped there
/// (`MAP_FIXED_NOREPLACE`); false, and nothing mapped, otherwise.
fn map_fixed_noreplace(addr: usize, len: usize) -> bool {
    // SAFETY: MAP_FIXED_NOREPLACE never replaces an existing mapping; a kernel without it
    // (before 4.17) takes the address as a hint, and a mapping placed elsewhere is undone.
    let q = unsafe {
        libc::mmap(
            addr as *mut libc::c_void,
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED_NOREPLACE,
            -1,
            0,
        )
    };
    if q == libc::MAP_FAILED {
        return false;
    }
    if q as usize != addr {
        // SAFETY: our fresh mapping, never handed out.
        unsafe { munmap(q as usize, len) };
        return false;
    }
    true
}

/// `munmap` of `len` bytes at `addr` (page-aligned).
///
/// # Safety
/// The range is ours and nothing uses it afterwards.
unsafe fn munmap(addr: usize, len: usize) {
    // SAFETY: forwarded from the caller.
    let r = unsafe { libc::munmap(addr as *mut libc::c_void, len) };
    // munmap fails only on arguments that are not page-aligned: a bug of ours.
    debug_assert_eq!(r, 0, "munmap({addr:#x}, {len:#x}) failed");
}

// SAFETY: anonymous private mappings are fresh, zero-filled, readable and writable and used
// by nothing else; `map` trims the over-mapping so the result has the asked alignment;
// MADV_DONTNEED on a private anonymous range drops its pages, and the range reads zero
// afterwards; growth in place maps fresh zero pages after the range, a move (mremap) keeps
// the contents and zero-fills the growth.
unsafe impl PageSource for MmapPages {
    const PAGE: usize = PAGE;

    fn map(&self, size: usize, align: usize) -> Option<NonNull<u8>> {
        map_aligned(size, align, libc::PROT_READ | libc::PROT_WRITE, 0)
    }

    unsafe fn unmap(&self, p: NonNull<u8>, size: usize) {
        // SAFETY: the caller gives up the range.
        unsafe { munmap(p.as_ptr() as usize, size) };
    }

    unsafe fn purge(&self, p: NonNull<u8>, size: usize) {
        // SAFETY: the caller gives up the contents of the range; the range stays mapped.
        unsafe { libc::madvise(p.as_ptr().cast(), size, libc::MADV_DONTNEED) };
    }

    fn hint_huge_pages(&self, p: NonNull<u8>, size: usize) {
        // SAFETY: advice only, on one of our mappings; contents and mapping are unchanged.
        unsafe { libc::madvise(p.as_ptr().cast(), size, libc::MADV_HUGEPAGE) };
    }

    unsafe fn prefault_writable(&self, p: NonNull<u8>, size: usize) {
        // SAFETY: on one of our mappings (caller); populating keeps the contents. Kernels
        // before 5.14 answer EINVAL and nothing happens.
        unsafe { libc::madvise(p.as_ptr().cast(), size, libc::MADV_POPULATE_WRITE) };
    }

    fn reserve(&self, size: usize) -> Option<NonNull<u8>> {
        // Read-only private anonymous memory is not charged against the commit limit
        // (even with `vm.overcommit_memory=2`), and reads of untouched pages map the
        // shared zero page.
        // SAFETY: a new anonymous mapping at an address the kernel picks.
        let p = unsafe {
            libc::mmap(
                core::ptr::null_mut(),
                size,
                libc::PROT_READ,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            None
        } else {
            NonNull::new(p.cast())
        }
    }

    unsafe fn commit(&self, p: NonNull<u8>, size: usize) -> bool {
        // SAFETY: the range is part of one of our reservations (caller); only its
        // protection changes.
        unsafe { libc::mprotect(p.as_ptr().cast(), size, libc::PROT_READ | libc::PROT_WRITE) == 0 }
    }

    unsafe fn remap(
        &self,
        p: NonNull<u8>,
        old: usize,
        new: usize,
        move_align: Option<usize>,
    ) -> Option<NonNull<u8>> {
        let (start, old, new) = (p.as_ptr() as usize, page_up(old), page_up(new));
        if new <= old {
            if new < old {
                // SAFETY: the tail is part of the caller's range, which gives it up.
                unsafe { munmap(start + new, old - new) };
            }
            return Some(p);
        }
        // In place: the pages right after the range, if that address space is free. A
        // mapping of its own (the kernel joins it to its neighbour when it can), so this
        // works for a range made of several adjacent mappings too, where `mremap` fails.
        if map_fixed_noreplace(start + old, new - old) {
            return Some(p);
        }
        let align = move_align?;
        // Where the pages go: a reservation of the new size, aligned (it charges nothing;
        // the move replaces it).
        let dest = map_aligned(new, align, libc::PROT_NONE, libc::MAP_NORESERVE)?;
        // SAFETY: as above; `dest` is our fresh reservation of `new` bytes, which the move
        // replaces (MREMAP_FIXED), and which we unmap if the move fails.
        let q = unsafe {
            libc::mremap(
                p.as_ptr().cast(),
                old,
                new,
                libc::MREMAP_MAYMOVE | libc::MREMAP_FIXED,
                dest.as_ptr(),
            )
        };
        if q == libc::MAP_FAILED {
            // SAFETY: the reservation is ours and unused.
            unsafe { munmap(dest.as_ptr() as usize, new) };
            None
        } else {
            NonNull::new(q.cast())
        }
    }
}

/// Blocks the calling thread while `word` holds `expected`, until a [`wake`] on `word` (or
/// a spurious wake-up, or a signal): the caller re-checks its condition and waits again.
/// Returns at once if `word` no longer holds `expected`. `FUTEX_WAIT` on a process-private
/// word: one system call, nothing allocated.
pub fn wait(word: &AtomicU32, expected: u32) {
    futex_wait(word, expected, None);
}

/// [`wait`] for at most `timeout_ms` milliseconds.
pub fn wait_for(word: &AtomicU32, expected: u32, timeout_ms: u64) {
    let t = libc::timespec {
        tv_sec: (timeout_ms / 1000) as libc::time_t,
        tv_nsec: ((timeout_ms % 1000) * 1_000_000) as libc::c_long,
    };
    futex_wait(word, expected, Some(&t));
}

fn futex_wait(word: &AtomicU32, expected: u32, timeout: Option<&libc::timespec>) {
    let t = timeout.map_or(core::ptr::null(), |t| t as *const libc::timespec);
    // SAFETY: `word` is a live, aligned 32-bit word and `t` null (no bound) or a valid
    // relative timeout, both for the whole call. The kernel compares and sleeps
    // atomically.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG,
            expected,
            t,
        )
    };
}

/// Wakes up to `n` threads blocked in [`wait`] on `word` (`u32::MAX`: all of them).
pub fn wake(word: &AtomicU32, n: u32) {
    let n = n.min(i32::MAX as u32) as i32;
    // SAFETY: `FUTEX_WAKE` only reads the word's address; nothing is written.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG,
            n,
        )
    };
}

#[cfg(test)]
mod tests;
