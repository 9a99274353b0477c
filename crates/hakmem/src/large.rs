//! The large tier: blocks above the largest size class, each its own mapping.
//!
//! Layout: `[mapping start … | header (in the page before USER) | USER … ]`. The user
//! pointer is page-aligned (or aligned to the requested alignment), so the header is
//! always at `USER - HEADER_OFFSET`, in a page of the same mapping. The address map counts
//! large user pointers per granule, so `free` knows with one load that a pointer may be
//! a large block before it reads the header, and the header's magic and self-pointer
//! confirm it.

use crate::os::{Os, PAGE};
use core::ptr::NonNull;
use superslab::{AddressMap, PageSource};

const MAGIC: usize = 0x6c61_7267_6568_616b; // "kahegral"
const HEADER_OFFSET: usize = 64;

#[repr(C)]
struct Header {
    magic: usize,
    user: usize,
    base: usize,
    total: usize,
}

/// A large block of at least `size` bytes aligned to `align` (power of two), or null.
pub fn alloc(map: &AddressMap, size: usize, align: usize) -> *mut u8 {
    let extra = if align > PAGE { align } else { PAGE };
    let Some(total) = size.checked_add(extra + PAGE - 1).map(|t| t & !(PAGE - 1)) else {
        return core::ptr::null_mut();
    };
    if total > isize::MAX as usize {
        return core::ptr::null_mut();
    }
    let Some(base) = Os.map(total, PAGE) else {
        return core::ptr::null_mut();
    };
    let base = base.as_ptr() as usize;
    let user = (base + PAGE + align.max(PAGE) - 1) & !(align.max(PAGE) - 1);
    debug_assert!(user + size <= base + total);
    // SAFETY: the header lies in the mapped page before `user`, inside our new mapping.
    unsafe {
        ((user - HEADER_OFFSET) as *mut Header).write(Header {
            magic: MAGIC ^ user,
            user,
            base,
            total,
        })
    };
    if !map.add_large(user) {
        // SAFETY: our own fresh mapping, never handed out.
        unsafe { Os.unmap(NonNull::new_unchecked(base as *mut u8), total) };
        return core::ptr::null_mut();
    }
    user as *mut u8
}

/// The header of the large block at `p`, if `p` is one.
///
/// # Safety
/// The address map says `p`'s granule holds large blocks.
unsafe fn header(p: usize) -> Option<&'static Header> {
    if p % PAGE != 0 {
        return None;
    }
    // SAFETY: granules marked large hold large user pointers; a page-aligned `p` in such
    // a granule that is not one of them may make this read hit another mapping's page or
    // a hole — which is why the release build only reaches here for pointers the map
    // vouches for. The magic and self-pointer confirm the header.
    let h = unsafe { &*((p - HEADER_OFFSET) as *const Header) };
    (h.magic == MAGIC ^ p && h.user == p).then_some(h)
}

/// Frees a large block; false if `p` is not one.
///
/// # Safety
/// `p` is in a granule the map marks as large.
pub unsafe fn free(map: &AddressMap, p: *mut u8) -> bool {
    // SAFETY: forwarded.
    let Some(h) = (unsafe { header(p as usize) }) else {
        return false;
    };
    let (base, total) = (h.base, h.total);
    map.remove_large(p as usize);
    // SAFETY: the block is being freed; nothing refers to its mapping any more.
    unsafe { Os.unmap(NonNull::new_unchecked(base as *mut u8), total) };
    true
}

/// Usable bytes of a large block (0 if `p` is not one).
///
/// # Safety
/// As for [`free`].
pub unsafe fn usable_size(p: *mut u8) -> usize {
    // SAFETY: forwarded.
    unsafe { header(p as usize) }.map_or(0, |h| h.base + h.total - h.user)
}
