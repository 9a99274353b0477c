//! The library's soname: `libhakmem.so.<MAJOR>` (`libhakmem_checked.so.<MAJOR>` with the
//! feature `checked`), so that a program linked with `-lhakmem` records the major version it
//! was built against (`cargo xtask install` writes the versioned file and its symlinks).

fn main() {
    let name = if std::env::var_os("CARGO_FEATURE_CHECKED").is_some() {
        "libhakmem_checked"
    } else {
        "libhakmem"
    };
    let major = std::env::var("CARGO_PKG_VERSION_MAJOR").expect("cargo sets the version");
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,{name}.so.{major}");
    println!("cargo:rerun-if-changed=build.rs");
}
