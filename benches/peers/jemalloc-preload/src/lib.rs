//! jemalloc as a preloadable C allocator: `LD_PRELOAD=libjemalloc_preload.so prog`.
//! `tikv-jemalloc-sys` builds jemalloc with the `_rjem_` symbol prefix (its default features),
//! so its own symbols never clash with the unprefixed ones exported here.

// The exported functions have the contracts of the C functions they stand for.
#![allow(clippy::missing_safety_doc)]

mod backend {
    use core::ffi::c_void;
    use tikv_jemalloc_sys as je;

    pub unsafe fn malloc(size: usize) -> *mut c_void {
        je::malloc(size)
    }
    pub unsafe fn calloc(n: usize, size: usize) -> *mut c_void {
        je::calloc(n, size)
    }
    pub unsafe fn realloc(p: *mut c_void, size: usize) -> *mut c_void {
        je::realloc(p, size)
    }
    pub unsafe fn free(p: *mut c_void) {
        je::free(p)
    }
    pub unsafe fn aligned(align: usize, size: usize) -> *mut c_void {
        let mut p = core::ptr::null_mut();
        if je::posix_memalign(&mut p, align, size) == 0 {
            p
        } else {
            core::ptr::null_mut()
        }
    }
    pub unsafe fn usable_size(p: *mut c_void) -> usize {
        je::malloc_usable_size(p)
    }
}

include!("../../c_exports.rs");
