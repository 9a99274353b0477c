//! The facade defines the C malloc family only when its feature `c-override` asks for it
//! (`libhakmem.so` is `crates/hakmem_preload`'s): this test binary's C `malloc` is glibc's
//! without the feature, and this binary's own (hakmem's) with it.

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
