//! mimalloc as a preloadable C allocator: `LD_PRELOAD=libmimalloc_preload.so prog`.
//! Every C entry point forwards to the `mi_*` functions of `libmimalloc-sys`.

// The exported functions have the contracts of the C functions they stand for.
#![allow(clippy::missing_safety_doc)]

mod backend {
    use core::ffi::c_void;
    use libmimalloc_sys as mi;

    pub unsafe fn malloc(size: usize) -> *mut c_void {
        mi::mi_malloc(size)
    }
    pub unsafe fn calloc(n: usize, size: usize) -> *mut c_void {
        mi::mi_calloc(n, size)
    }
    pub unsafe fn realloc(p: *mut c_void, size: usize) -> *mut c_void {
        mi::mi_realloc(p, size)
    }
    pub unsafe fn free(p: *mut c_void) {
        mi::mi_free(p)
    }
    pub unsafe fn aligned(align: usize, size: usize) -> *mut c_void {
        mi::mi_malloc_aligned(size, align)
    }
    pub unsafe fn usable_size(p: *mut c_void) -> usize {
        mi::mi_usable_size(p)
    }
}

include!("../../c_exports.rs");
