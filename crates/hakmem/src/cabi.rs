//! The C malloc family: the bodies of the C symbols, and [`export_c_symbols!`](crate::export_c_symbols!), which
//! exports them under their C names from the crate that invokes it.
//!
//! The symbols are exported by `crates/hakmem_preload` (the shared library `libhakmem.so`)
//! and, for a Rust program that wants its C `malloc` replaced too, by this crate with the
//! feature `c-override`; both invoke [`export_c_symbols!`](crate::export_c_symbols!). Without the feature the facade
//! defines no C symbol: a Rust program using [`HakMem`](crate::HakMem) keeps its C `malloc`.
//!
//! Each body maps `front_api`'s result to glibc's conventions: NULL plus `errno` (ENOMEM,
//! EINVAL), or an error number returned (posix_memalign). `free` preserves `errno`. Nothing
//! here can panic: there is no code that could. Each body is `unsafe`, with the C contract
//! of its namesake (a pointer passed in is null or a live block of ours, an out-pointer is
//! writable); those whose namesake has no contract are `unsafe` only so that
//! [`export_c_symbols!`](crate::export_c_symbols!) calls every body alike.

use crate::os::set_errno;
use crate::API;
use core::ffi::c_void;
use front_api::Error;

/// Exports hakmem's C malloc family from the invoking crate under the C names (`malloc`,
/// `free`, …, glibc's `__libc_*` aliases and `hakmem_stats` of `include/hakmem.h`), each a
/// `#[no_mangle] extern "C"` function whose body is the one of this module, and C++'s
/// `operator new` and `operator delete` in every form (their bodies in [`crate::cxx`]).
///
/// Invoke it once, at most, in a program (a second definition of `malloc` does not link).
#[macro_export]
macro_rules! export_c_symbols {
    () => {
        $crate::export_c_symbols! {
            malloc __libc_malloc => malloc(size: usize) -> *mut ::core::ffi::c_void;
            calloc __libc_calloc => calloc(n: usize, size: usize) -> *mut ::core::ffi::c_void;
            free __libc_free cfree => free(p: *mut ::core::ffi::c_void) -> ();
            realloc __libc_realloc =>
                realloc(p: *mut ::core::ffi::c_void, size: usize) -> *mut ::core::ffi::c_void;
            reallocarray => reallocarray(p: *mut ::core::ffi::c_void, n: usize, size: usize)
                -> *mut ::core::ffi::c_void;
            memalign __libc_memalign =>
                memalign(align: usize, size: usize) -> *mut ::core::ffi::c_void;
            aligned_alloc => aligned_alloc(align: usize, size: usize) -> *mut ::core::ffi::c_void;
            valloc __libc_valloc => valloc(size: usize) -> *mut ::core::ffi::c_void;
            pvalloc __libc_pvalloc => pvalloc(size: usize) -> *mut ::core::ffi::c_void;
            posix_memalign __posix_memalign => posix_memalign(
                out: *mut *mut ::core::ffi::c_void, align: usize, size: usize) -> i32;
            malloc_usable_size => malloc_usable_size(p: *mut ::core::ffi::c_void) -> usize;
            free_sized => free_sized(p: *mut ::core::ffi::c_void, size: usize) -> ();
            free_aligned_sized =>
                free_aligned_sized(p: *mut ::core::ffi::c_void, align: usize, size: usize) -> ();
            malloc_trim => malloc_trim(pad: usize) -> i32;
            malloc_stats => malloc_stats() -> ();
            mallinfo2 => mallinfo2() -> $crate::cabi::MallInfo2;
            hakmem_stats => hakmem_stats(out: *mut $crate::cabi::HakmemStats) -> i32;
        }
        $crate::export_cxx_operators!();
    };
    // One line: the C names that share one body, the body (in `hakmem::cabi`), the signature.
    ($($($name:ident)+ => $body:ident $args:tt -> $ret:ty;)+) => {
        $($($crate::export_c_symbols!(@one $name $body $args $ret);)+)+
    };
    (@one $name:ident $body:ident ($($arg:ident: $ty:ty),*) $ret:ty) => {
        #[doc = concat!("C's `", stringify!($name), "`: hakmem's `cabi::", stringify!($body), "`.")]
        ///
        /// # Safety
        /// The C contract of this function.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn $name($($arg: $ty),*) -> $ret {
            // SAFETY: the C caller keeps the C contract of `$name`, which is the body's.
            unsafe { $crate::cabi::$body($($arg),*) }
        }
    };
}

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

// malloc and free are the facade's fused fast paths (`Alloc::malloc`, `Alloc::free_ptr`),
// which keep `Api::malloc`'s and `Api::free`'s semantics (errno set in the slow path, null
// freed as a no-op) without a frame or a test after the fast path.

/// `malloc`.
///
/// # Safety
/// None: any argument is valid.
#[inline(always)]
pub unsafe fn malloc(size: usize) -> *mut c_void {
    crate::Alloc::malloc(size).cast()
}

/// `calloc`.
///
/// # Safety
/// None: any argument is valid.
#[inline(always)]
pub unsafe fn calloc(n: usize, size: usize) -> *mut c_void {
    ret(API.calloc(n, size))
}

/// `free`.
///
/// # Safety
/// `p` is null or a live block of ours (others are refused with a message).
#[inline(always)]
pub unsafe fn free(p: *mut c_void) {
    // SAFETY: the caller's contract.
    unsafe { crate::Alloc::free_ptr(p.cast()) }
}

/// `realloc`.
///
/// # Safety
/// `p` is null or a live block of ours.
#[inline(always)]
pub unsafe fn realloc(p: *mut c_void, size: usize) -> *mut c_void {
    // `realloc(NULL, n)` is how some programs allocate everything (Lua's allocator): the
    // fused malloc, as `Api::realloc` would do it, without the detour.
    if p.is_null() {
        return crate::Alloc::malloc(size).cast();
    }
    // SAFETY: the caller's contract.
    unsafe { realloc_block(p, size) }
}

/// `realloc` of a block: out of line, so that the frame its result and errno need is not
/// set up on `realloc(NULL, n)`, which is then malloc's fast path behind one test.
///
/// # Safety
/// `p` is a live block of ours.
#[inline(never)]
unsafe fn realloc_block(p: *mut c_void, size: usize) -> *mut c_void {
    // SAFETY: the caller's contract.
    ret(unsafe { API.realloc(p.cast(), size) })
}

/// `reallocarray`.
///
/// # Safety
/// `p` is null or a live block of ours.
#[inline(always)]
pub unsafe fn reallocarray(p: *mut c_void, n: usize, size: usize) -> *mut c_void {
    // SAFETY: the caller's contract.
    ret(unsafe { API.reallocarray(p.cast(), n, size) })
}

/// `memalign`.
///
/// # Safety
/// None: any argument is valid.
#[inline(always)]
pub unsafe fn memalign(align: usize, size: usize) -> *mut c_void {
    ret(API.memalign(align, size))
}

/// `aligned_alloc`.
///
/// # Safety
/// None: any argument is valid.
#[inline(always)]
pub unsafe fn aligned_alloc(align: usize, size: usize) -> *mut c_void {
    ret(API.aligned_alloc(align, size))
}

/// `valloc`.
///
/// # Safety
/// None: any argument is valid.
#[inline(always)]
pub unsafe fn valloc(size: usize) -> *mut c_void {
    ret(API.valloc(size))
}

/// `pvalloc`.
///
/// # Safety
/// None: any argument is valid.
#[inline(always)]
pub unsafe fn pvalloc(size: usize) -> *mut c_void {
    ret(API.pvalloc(size))
}

/// `posix_memalign`.
///
/// # Safety
/// `out` is writable.
#[inline(always)]
pub unsafe fn posix_memalign(out: *mut *mut c_void, align: usize, size: usize) -> i32 {
    match API.posix_memalign(align, size) {
        Ok(p) => {
            // SAFETY: the caller's contract: `out` is writable.
            unsafe { *out = p.cast() };
            0
        }
        Err(Error::Invalid) => libc::EINVAL,
        Err(Error::NoMemory) => libc::ENOMEM,
    }
}

/// `malloc_usable_size`.
///
/// # Safety
/// `p` is null or a live block of ours.
#[inline(always)]
pub unsafe fn malloc_usable_size(p: *mut c_void) -> usize {
    // SAFETY: the caller's contract.
    unsafe { API.usable_size(p.cast()) }
}

/// `free_sized` (C23): the size is not needed.
///
/// # Safety
/// `p` is null or a live block of ours.
#[inline(always)]
pub unsafe fn free_sized(p: *mut c_void, _size: usize) {
    // SAFETY: the caller's contract.
    unsafe { API.free(p.cast()) }
}

/// `free_aligned_sized` (C23): neither alignment nor size is needed.
///
/// # Safety
/// `p` is null or a live block of ours.
#[inline(always)]
pub unsafe fn free_aligned_sized(p: *mut c_void, _align: usize, _size: usize) {
    // SAFETY: the caller's contract.
    unsafe { API.free(p.cast()) }
}

/// `malloc_trim`: 1 if memory went back to the OS.
///
/// # Safety
/// None: any argument is valid.
#[inline(always)]
pub unsafe fn malloc_trim(_pad: usize) -> i32 {
    (crate::trim() > 0) as i32
}

/// `malloc_stats`: the text report on stderr.
///
/// # Safety
/// None.
#[inline(always)]
pub unsafe fn malloc_stats() {
    crate::print_stats(false)
}

/// glibc's `struct mallinfo2`.
pub type MallInfo2 = libc::mallinfo2;

/// `mallinfo2`.
///
/// # Safety
/// None.
#[inline(always)]
pub unsafe fn mallinfo2() -> MallInfo2 {
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
}

/// Totals for C callers of `hakmem_stats`: `hakmem_stats_t` of `include/hakmem.h`, where
/// the fields are described.
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
    pub bytes_trimmed: u64,
    pub segments_peak: u64,
    pub heaps: u64,
}

/// `hakmem_stats`: fills `*out`; 0, or -1 if `out` is null.
///
/// # Safety
/// `out` is null or writable.
#[inline(always)]
pub unsafe fn hakmem_stats(out: *mut HakmemStats) -> i32 {
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
        bytes_trimmed: s.bytes_trimmed,
        segments_peak: s.segments_peak,
        heaps: s.heaps,
    };
    // SAFETY: the C contract: `out` points to a writable hakmem_stats_t.
    unsafe { out.write(v) };
    0
}
