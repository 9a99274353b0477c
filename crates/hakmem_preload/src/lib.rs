//! # libhakmem.so
//!
//! The C library of hakmem: `cargo build --release` at the workspace root writes it to
//! `target/release/libhakmem.so`, exporting the malloc family (`malloc`, `free`, `calloc`,
//! `realloc`, …, glibc's `__libc_*` aliases), `hakmem_stats` (`include/hakmem.h`) and C++'s
//! `operator new` and `operator delete` (x86-64), for `LD_PRELOAD` or for linking; its soname
//! is `libhakmem.so.<major>` (`build.rs`). Every symbol is the facade's ([`hakmem::export_c_symbols!`]);
//! this crate only chooses to export them, so that the facade stays a plain Rust library
//! (a `#[global_allocator]` does not take over C `malloc` unless asked).
#![no_std]

hakmem::export_c_symbols!();
