// The C malloc family, exported for LD_PRELOAD, over a `backend` module that the including
// crate provides with: malloc, calloc, realloc, free, aligned(align, size) (align a power of two
// >= 16), usable_size. Shared by the peer preload libraries through `include!`.
// The C semantics (alignment checks, errno, overflow) are implemented here once.

use core::ffi::{c_int, c_void};
use core::ptr::null_mut;

const EINVAL: c_int = 22;
const ENOMEM: c_int = 12;
const MIN_ALIGN: usize = 16;

extern "C" {
    fn __errno_location() -> *mut c_int;
    fn sysconf(name: c_int) -> core::ffi::c_long;
}

unsafe fn set_errno(e: c_int) {
    *__errno_location() = e;
}

fn page_size() -> usize {
    const SC_PAGESIZE: c_int = 30; // Linux
    match unsafe { sysconf(SC_PAGESIZE) } {
        n if n > 0 => n as usize,
        _ => 4096,
    }
}

#[no_mangle]
pub unsafe extern "C" fn malloc(size: usize) -> *mut c_void {
    backend::malloc(size)
}

#[no_mangle]
pub unsafe extern "C" fn free(p: *mut c_void) {
    if !p.is_null() {
        backend::free(p)
    }
}

#[no_mangle]
pub unsafe extern "C" fn calloc(n: usize, size: usize) -> *mut c_void {
    if n.checked_mul(size).is_none() {
        set_errno(ENOMEM);
        return null_mut();
    }
    backend::calloc(n, size)
}

#[no_mangle]
pub unsafe extern "C" fn realloc(p: *mut c_void, size: usize) -> *mut c_void {
    backend::realloc(p, size)
}

#[no_mangle]
pub unsafe extern "C" fn reallocarray(p: *mut c_void, n: usize, size: usize) -> *mut c_void {
    match n.checked_mul(size) {
        Some(total) => backend::realloc(p, total),
        None => {
            set_errno(ENOMEM);
            null_mut()
        }
    }
}

unsafe fn aligned(align: usize, size: usize) -> *mut c_void {
    if align <= MIN_ALIGN {
        backend::malloc(size)
    } else {
        backend::aligned(align, size)
    }
}

#[no_mangle]
pub unsafe extern "C" fn posix_memalign(out: *mut *mut c_void, align: usize, size: usize) -> c_int {
    if !align.is_power_of_two() || align < core::mem::size_of::<usize>() {
        return EINVAL;
    }
    let p = aligned(align, size);
    if p.is_null() {
        return ENOMEM;
    }
    *out = p;
    0
}

#[no_mangle]
pub unsafe extern "C" fn aligned_alloc(align: usize, size: usize) -> *mut c_void {
    if !align.is_power_of_two() {
        set_errno(EINVAL);
        return null_mut();
    }
    aligned(align, size)
}

/// glibc's memalign: an alignment that is not a power of two is rounded up to one.
#[no_mangle]
pub unsafe extern "C" fn memalign(align: usize, size: usize) -> *mut c_void {
    match align.checked_next_power_of_two() {
        Some(a) => aligned(a, size),
        None => {
            set_errno(EINVAL);
            null_mut()
        }
    }
}

#[no_mangle]
pub unsafe extern "C" fn valloc(size: usize) -> *mut c_void {
    aligned(page_size(), size)
}

#[no_mangle]
pub unsafe extern "C" fn pvalloc(size: usize) -> *mut c_void {
    let page = page_size();
    match size.max(1).checked_add(page - 1) {
        Some(s) => aligned(page, s & !(page - 1)),
        None => {
            set_errno(ENOMEM);
            null_mut()
        }
    }
}

#[no_mangle]
pub unsafe extern "C" fn malloc_usable_size(p: *mut c_void) -> usize {
    if p.is_null() {
        0
    } else {
        backend::usable_size(p)
    }
}

#[no_mangle]
pub unsafe extern "C" fn __libc_malloc(size: usize) -> *mut c_void {
    malloc(size)
}
#[no_mangle]
pub unsafe extern "C" fn __libc_free(p: *mut c_void) {
    free(p)
}
#[no_mangle]
pub unsafe extern "C" fn __libc_calloc(n: usize, size: usize) -> *mut c_void {
    calloc(n, size)
}
#[no_mangle]
pub unsafe extern "C" fn __libc_realloc(p: *mut c_void, size: usize) -> *mut c_void {
    realloc(p, size)
}
#[no_mangle]
pub unsafe extern "C" fn __libc_memalign(align: usize, size: usize) -> *mut c_void {
    memalign(align, size)
}
#[no_mangle]
pub unsafe extern "C" fn __libc_valloc(size: usize) -> *mut c_void {
    valloc(size)
}
#[no_mangle]
pub unsafe extern "C" fn __libc_pvalloc(size: usize) -> *mut c_void {
    pvalloc(size)
}
