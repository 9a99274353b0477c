//! The C malloc family, exported from the cdylib (feature `c-override`).
//!
//! Each function maps `front_api`'s result to glibc's conventions: NULL plus `errno`
//! (ENOMEM, EINVAL), or an error number returned (posix_memalign). `free` preserves
//! `errno`. Nothing here can panic: there is no code that could.

use crate::os::set_errno;
use crate::API;
use core::ffi::c_void;
use front_api::Error;

#[inline(always)]
fn ret(r: Result<*mut u8, Error>) -> *mut c_void {
    match r {
        Ok(p) => p.cast(),
        Err(e) => {
            set_errno(match e {
                Error::NoMemory => libc::ENOMEM,
                Error::Invalid => libc::EINVAL,
            });
            core::ptr::null_mut()
        }
    }
}

/// Exports one body under each listed C name.
macro_rules! export {
    ($($name:ident),* => fn $args:tt -> $r:ty $body:block) => {
        $( export!(@one $name $args -> $r $body); )*
    };
    (@one $name:ident ($($a:ident: $t:ty),*) -> $r:ty $body:block) => {
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn $name($($a: $t),*) -> $r $body
    };
}

// malloc and free are the facade's fused fast paths (`Alloc::malloc`, `Alloc::free_ptr`),
// which keep `Api::malloc`'s and `Api::free`'s semantics (errno set in the slow path, null
// freed as a no-op) without a frame or a test after the fast path.
export!(malloc, __libc_malloc => fn(size: usize) -> *mut c_void { crate::Alloc::malloc(size).cast() });
export!(calloc, __libc_calloc => fn(n: usize, size: usize) -> *mut c_void { ret(API.calloc(n, size)) });
export!(free, __libc_free, cfree => fn(p: *mut c_void) -> () {
    // SAFETY: the C contract: `p` is null or ours (others are refused with a message).
    unsafe { crate::Alloc::free_ptr(p.cast()) }
});
export!(realloc, __libc_realloc => fn(p: *mut c_void, size: usize) -> *mut c_void {
    // `realloc(NULL, n)` is how some programs allocate everything (Lua's allocator): the
    // fused malloc, as `Api::realloc` would do it, without the detour.
    if p.is_null() {
        return crate::Alloc::malloc(size).cast();
    }
    // SAFETY: the C contract.
    ret(unsafe { API.realloc(p.cast(), size) })
});
export!(reallocarray => fn(p: *mut c_void, n: usize, size: usize) -> *mut c_void {
    // SAFETY: the C contract.
    ret(unsafe { API.reallocarray(p.cast(), n, size) })
});
export!(memalign, __libc_memalign => fn(align: usize, size: usize) -> *mut c_void { ret(API.memalign(align, size)) });
export!(aligned_alloc => fn(align: usize, size: usize) -> *mut c_void { ret(API.aligned_alloc(align, size)) });
export!(valloc, __libc_valloc => fn(size: usize) -> *mut c_void { ret(API.valloc(size)) });
export!(pvalloc, __libc_pvalloc => fn(size: usize) -> *mut c_void { ret(API.pvalloc(size)) });
export!(posix_memalign, __posix_memalign => fn(out: *mut *mut c_void, align: usize, size: usize) -> i32 {
    match API.posix_memalign(align, size) {
        Ok(p) => {
            // SAFETY: the C contract: `out` is writable.
            unsafe { *out = p.cast() };
            0
        }
        Err(Error::Invalid) => libc::EINVAL,
        Err(Error::NoMemory) => libc::ENOMEM,
    }
});
export!(malloc_usable_size => fn(p: *mut c_void) -> usize {
    // SAFETY: the C contract.
    unsafe { API.usable_size(p.cast()) }
});
export!(free_sized => fn(p: *mut c_void, _size: usize) -> () {
    // SAFETY: the C contract.
    unsafe { API.free(p.cast()) }
});
export!(free_aligned_sized => fn(p: *mut c_void, _align: usize, _size: usize) -> () {
    // SAFETY: the C contract.
    unsafe { API.free(p.cast()) }
});
export!(malloc_trim => fn(_pad: usize) -> i32 { (crate::trim() > 0) as i32 });
export!(malloc_stats => fn() -> () { crate::print_stats(false) });
export!(mallinfo2 => fn() -> libc::mallinfo2 {
    let s = crate::stats();
    let in_use = s.bytes_in_use() + s.large_bytes_live;
    let mapped = s.bytes_mapped();
    libc::mallinfo2 {
        arena: (s.segments_live * superslab::SEGMENT_SIZE as u64) as usize,
        ordblks: 0,
        smblks: 0,
        hblks: s.large_allocs.saturating_sub(s.large_frees) as usize,
        hblkhd: s.large_bytes_live as usize,
        usmblks: 0,
        fsmblks: 0,
        uordblks: in_use as usize,
        fordblks: mapped.saturating_sub(in_use) as usize,
        keepcost: 0,
    }
});

/// Totals for C callers of `hakmem_stats` (see `include/hakmem.h`).
#[repr(C)]
pub struct HakmemStats {
    pub allocs: u64,
    pub frees: u64,
    pub cache_hits: u64,
    pub refills: u64,
    pub misses: u64,
    pub remote_frees: u64,
    pub large_allocs: u64,
    pub large_frees: u64,
    pub bytes_mapped: u64,
    pub bytes_in_use: u64,
    pub bytes_purged: u64,
    pub segments_peak: u64,
    pub heaps: u64,
}

export!(hakmem_stats => fn(out: *mut HakmemStats) -> i32 {
    if out.is_null() {
        return -1;
    }
    let s = crate::stats();
    let sum = |f: fn(&crate::ClassStats) -> u64| s.classes.iter().map(f).sum::<u64>();
    let v = HakmemStats {
        allocs: sum(|c| c.allocs),
        frees: sum(|c| c.frees),
        cache_hits: sum(|c| c.cache_hits),
        refills: sum(|c| c.refills),
        misses: sum(|c| c.misses),
        remote_frees: sum(|c| c.remote_frees),
        large_allocs: s.large_allocs,
        large_frees: s.large_frees,
        bytes_mapped: s.bytes_mapped(),
        bytes_in_use: s.bytes_in_use() + s.large_bytes_live,
        bytes_purged: s.bytes_purged,
        segments_peak: s.segments_peak,
        heaps: s.heaps,
    };
    // SAFETY: the C contract: `out` points to a writable hakmem_stats_t.
    unsafe { out.write(v) };
    0
});
