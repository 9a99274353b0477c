//! The facade defines the C malloc family only when its feature `c-override` asks for it
//! (`libhakmem.so` is `crates/hakmem_preload`'s): this test binary's C `malloc` is glibc's
//! without the feature, and this binary's own (hakmem's) with it, C++'s `operator new` and
//! `operator delete` included.

use std::ffi::CStr;
// Linked in: a crate that is never named is not linked at all.
use hakmem as _;

#[test]
fn c_malloc_is_hakmem_only_with_c_override() {
    // SAFETY: `Dl_info` is plain data; all zeroes is a valid value.
    let mut info: libc::Dl_info = unsafe { core::mem::zeroed() };
    // SAFETY: dladdr only reads the address and fills `info`.
    let found = unsafe { libc::dladdr(libc::malloc as *const libc::c_void, &mut info) };
    assert_ne!(found, 0, "dladdr knows no object holding malloc");
    assert!(!info.dli_fname.is_null());
    // SAFETY: dladdr set `dli_fname` to a NUL-terminated path that lives as long as the
    // object (libc, or this program).
    let file = unsafe { CStr::from_ptr(info.dli_fname) }.to_string_lossy();
    let in_libc = file.contains("libc.so");
    if cfg!(feature = "c-override") {
        assert!(!in_libc, "c-override: malloc still comes from {file}");
    } else {
        assert!(
            in_libc,
            "without c-override, malloc comes from {file}, not glibc"
        );
    }
}

/// With `c-override` the binary's C++ `operator new` and `operator delete` are hakmem's too
/// (they link only if the feature defines them): a thousand `new`s count as a thousand
/// allocations at least, their deletes as frees.
#[cfg(all(feature = "c-override", target_arch = "x86_64"))]
#[test]
fn cxx_operators_are_hakmem_with_c_override() {
    unsafe extern "C" {
        fn _Znwm(size: usize) -> *mut libc::c_void;
        fn _ZdlPvm(p: *mut libc::c_void, size: usize);
    }
    let counts = || {
        let s = hakmem::stats();
        let sum = |f: fn(&hakmem::ClassStats) -> u64| s.classes.iter().map(f).sum::<u64>();
        (sum(|c| c.allocs), sum(|c| c.frees))
    };
    let (allocs, frees) = counts();
    for i in 0..1000 {
        // SAFETY: operator new and sized delete of the same size, on a block of our own.
        unsafe {
            let p = _Znwm(24 + i % 64);
            assert!(!p.is_null());
            p.cast::<u8>().write(1);
            _ZdlPvm(p, 24 + i % 64);
        }
    }
    let (allocs_after, frees_after) = counts();
    assert!(
        allocs_after - allocs >= 1000,
        "{} allocations",
        allocs_after - allocs
    );
    assert!(frees_after - frees >= 1000, "{} frees", frees_after - frees);
}
