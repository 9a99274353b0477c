//! C++ `operator new` and `operator delete`: the bodies of the 20 replaceable forms (C++17:
//! plain and array, each also nothrow, aligned, aligned nothrow; `delete` also sized, aligned
//! and sized aligned), which [`export_c_symbols!`](crate::export_c_symbols!) exports under
//! their Itanium names (`_Znwm`, `_ZnwmSt11align_val_t`, `_ZdlPvm`, …) on x86-64.
//!
//! A successful `new` is hakmem's `malloc` (or `aligned_alloc`), every `delete` its `free`:
//! the size of a sized `delete` saves nothing (free learns everything from one address-map
//! load), so it is not used, nor is the alignment (aligned blocks are freed like any other).
//! `new(0)` is `malloc(0)`: a unique block.
//!
//! **When `new` fails**, the C++ rules apply: call the installed new-handler and retry until
//! none is installed, then throw `std::bad_alloc` (the handler may throw too); the nothrow
//! forms do the same and return null instead of letting `bad_alloc` out. That needs a C++
//! exception to leave through our frames, and the release profile is `panic = "abort"`,
//! under which a foreign exception unwinding into a Rust frame aborts the process, even
//! through `extern "C-unwind"` (the Rust reference's table; tried: "panic in a function that
//! cannot unwind"). So no Rust frame is on the stack when an exception may be thrown:
//! - a throwing form is a naked function (a few instructions of assembly, with unwind
//!   information): it calls [`new_attempt`] (or [`new_aligned_attempt`]), which returns the
//!   block, or null together with the C++ runtime's own operator of the same form (found
//!   with `dlsym(RTLD_NEXT)` on the first failure); the naked function returns the block,
//!   or restores its arguments and jumps to that operator, which retries through our
//!   `malloc` with the new-handler loop and throws from the runtime's own frames;
//! - a nothrow form (a Rust function: it cannot throw) calls, on failure, the runtime's
//!   nothrow operator of the same form, which calls the throwing one (ours, retrying) inside
//!   a `catch` and returns null when it throws.
//!
//! The runtime is looked up only when an allocation fails, so a program that never uses
//! C++ needs no libstdc++. Without one, a failed throwing `new` writes one line and aborts
//! (there is no way to throw), and a failed nothrow `new` returns null (no new-handler can
//! have been installed).

use crate::os::Line;
use core::ffi::c_void;
use core::sync::atomic::{AtomicUsize, Ordering};

/// The `new` forms that fail over to the C++ runtime's operator of the same form.
#[repr(usize)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Form {
    /// `operator new(size_t)`.
    New,
    /// `operator new[](size_t)`.
    NewArray,
    /// `operator new(size_t, align_val_t)`.
    NewAligned,
    /// `operator new[](size_t, align_val_t)`.
    NewArrayAligned,
    /// `operator new(size_t, const nothrow_t&)`.
    NewNothrow,
    /// `operator new[](size_t, const nothrow_t&)`.
    NewArrayNothrow,
    /// `operator new(size_t, align_val_t, const nothrow_t&)`.
    NewAlignedNothrow,
    /// `operator new[](size_t, align_val_t, const nothrow_t&)`.
    NewArrayAlignedNothrow,
}

/// The Itanium name of each [`Form`], in order.
const NAMES: [&core::ffi::CStr; 8] = [
    c"_Znwm",
    c"_Znam",
    c"_ZnwmSt11align_val_t",
    c"_ZnamSt11align_val_t",
    c"_ZnwmRKSt9nothrow_t",
    c"_ZnamRKSt9nothrow_t",
    c"_ZnwmSt11align_val_tRKSt9nothrow_t",
    c"_ZnamSt11align_val_tRKSt9nothrow_t",
];

/// The runtime's operator of each [`Form`] once looked up (0: not yet, or none).
static RUNTIME: [AtomicUsize; 8] = [const { AtomicUsize::new(0) }; 8];

/// The address of the C++ runtime's operator `form` (the next definition after this
/// object's, `dlsym(RTLD_NEXT)`), or 0 if no C++ runtime is loaded.
#[cold]
#[inline(never)]
fn runtime(form: Form) -> usize {
    let slot = &RUNTIME[form as usize];
    let known = slot.load(Ordering::Relaxed);
    if known != 0 {
        return known;
    }
    // SAFETY: a C string name; dlsym may allocate (an error message), which is allowed here:
    // we are not inside malloc and hold no lock.
    let found = unsafe { libc::dlsym(libc::RTLD_NEXT, NAMES[form as usize].as_ptr()) } as usize;
    slot.store(found, Ordering::Relaxed);
    found
}

/// What a throwing `new`'s attempt returns (in `rax` and `rdx`): the block, or null and the
/// runtime's operator to finish in.
#[repr(C)]
pub struct Attempt {
    /// The block, or null.
    pub block: *mut c_void,
    /// With a null block: the address of the C++ runtime's operator of the same form.
    pub runtime: usize,
}

/// `block` (non-null), or null and the runtime's operator `form` to finish in; aborts with
/// a message if there is none.
#[inline(always)]
fn attempt(block: *mut u8, form: Form, size: usize) -> Attempt {
    Attempt {
        block: block.cast(),
        runtime: if block.is_null() {
            runtime_or_abort(form, size)
        } else {
            0
        },
    }
}

#[cold]
#[inline(never)]
fn runtime_or_abort(form: Form, size: usize) -> usize {
    let f = runtime(form);
    if f == 0 {
        Line::new()
            .text("hakmem: operator new of ")
            .dec(size as u64)
            .text(" bytes failed and no C++ runtime is loaded to throw std::bad_alloc")
            .emit();
        // SAFETY: abort never returns.
        unsafe { libc::abort() }
    }
    f
}

/// The attempt of `operator new(size)` and `operator new[](size)` (`form`): `malloc`'s
/// fast path, else one tail call to the rest.
pub extern "C" fn new_attempt(size: usize, form: Form) -> Attempt {
    match crate::Alloc::malloc_fast(size) {
        Some(p) => Attempt {
            block: p.cast(),
            runtime: 0,
        },
        None => new_attempt_slow(size, form),
    }
}

#[cold]
#[inline(never)]
extern "C" fn new_attempt_slow(size: usize, form: Form) -> Attempt {
    attempt(crate::malloc_slow(size), form, size)
}

/// The attempt of `operator new(size, align)` and `operator new[](size, align)` (`form`).
pub extern "C" fn new_aligned_attempt(size: usize, align: usize, form: Form) -> Attempt {
    // SAFETY: `aligned_alloc` accepts any arguments.
    let block = unsafe { crate::cabi::aligned_alloc(align, size) };
    attempt(block.cast(), form, size)
}

/// `operator new(size, nothrow)` and `operator new[](size, nothrow)` (`form`): null when
/// the allocation fails and the runtime's operator of the same form (the new-handler loop)
/// returns null too.
///
/// # Safety
/// `tag` is the caller's `std::nothrow` (passed on to the runtime).
#[inline(always)]
pub unsafe fn new_nothrow(size: usize, tag: *const c_void, form: Form) -> *mut c_void {
    let p = crate::Alloc::malloc(size);
    if !p.is_null() {
        return p.cast();
    }
    // SAFETY: the caller's contract.
    unsafe { nothrow_failed(form, size, None, tag) }
}

/// `operator new(size, align, nothrow)` and `operator new[](size, align, nothrow)` (`form`).
///
/// # Safety
/// `tag` is the caller's `std::nothrow` (passed on to the runtime).
#[inline(always)]
pub unsafe fn new_aligned_nothrow(
    size: usize,
    align: usize,
    tag: *const c_void,
    form: Form,
) -> *mut c_void {
    // SAFETY: `aligned_alloc` accepts any arguments.
    let p = unsafe { crate::cabi::aligned_alloc(align, size) };
    if !p.is_null() {
        return p;
    }
    // SAFETY: the caller's contract.
    unsafe { nothrow_failed(form, size, Some(align), tag) }
}

/// A nothrow `new` whose allocation failed: the runtime's nothrow operator `form` decides
/// (it runs the new-handler loop through our throwing `new` and catches `bad_alloc`); null
/// without a runtime.
///
/// # Safety
/// `tag` is the caller's `std::nothrow`.
#[cold]
#[inline(never)]
unsafe fn nothrow_failed(
    form: Form,
    size: usize,
    align: Option<usize>,
    tag: *const c_void,
) -> *mut c_void {
    let f = runtime(form);
    if f == 0 {
        return core::ptr::null_mut();
    }
    type Nothrow = extern "C" fn(usize, *const c_void) -> *mut c_void;
    type NothrowAligned = extern "C" fn(usize, usize, *const c_void) -> *mut c_void;
    // SAFETY: `f` is the runtime's operator of this form, whose C++ signature is
    // `void *(size_t[, align_val_t], const nothrow_t &) noexcept`: these C signatures, and it
    // never unwinds (it is noexcept and catches what the throwing form throws).
    unsafe {
        match align {
            None => core::mem::transmute::<usize, Nothrow>(f)(size, tag),
            Some(a) => core::mem::transmute::<usize, NothrowAligned>(f)(size, a, tag),
        }
    }
}

/// Every `operator delete` and `operator delete[]`: `free`.
///
/// # Safety
/// `p` is null or a live block of ours.
#[inline(always)]
pub unsafe fn delete(p: *mut c_void) {
    // SAFETY: the caller's contract.
    unsafe { crate::Alloc::free_ptr(p.cast()) }
}

/// Exports the C++ operators (invoked by [`export_c_symbols!`](crate::export_c_symbols!);
/// x86-64 only: elsewhere the C++ runtime's operators stay, and call `malloc` and `free`).
#[doc(hidden)]
#[macro_export]
macro_rules! export_cxx_operators {
    () => {
        $crate::export_cxx_operators!(@throwing _Znwm New);
        $crate::export_cxx_operators!(@throwing _Znam NewArray);
        $crate::export_cxx_operators!(@throwing_aligned _ZnwmSt11align_val_t NewAligned);
        $crate::export_cxx_operators!(@throwing_aligned _ZnamSt11align_val_t NewArrayAligned);
        $crate::export_cxx_operators!(@nothrow _ZnwmRKSt9nothrow_t NewNothrow new_nothrow
            (size: usize, tag: *const ::core::ffi::c_void));
        $crate::export_cxx_operators!(@nothrow _ZnamRKSt9nothrow_t NewArrayNothrow new_nothrow
            (size: usize, tag: *const ::core::ffi::c_void));
        $crate::export_cxx_operators!(@nothrow _ZnwmSt11align_val_tRKSt9nothrow_t
            NewAlignedNothrow new_aligned_nothrow
            (size: usize, align: usize, tag: *const ::core::ffi::c_void));
        $crate::export_cxx_operators!(@nothrow _ZnamSt11align_val_tRKSt9nothrow_t
            NewArrayAlignedNothrow new_aligned_nothrow
            (size: usize, align: usize, tag: *const ::core::ffi::c_void));
        $crate::export_cxx_operators!(@delete () _ZdlPv _ZdaPv);
        $crate::export_cxx_operators!(@delete (_size: usize) _ZdlPvm _ZdaPvm);
        $crate::export_cxx_operators!(@delete (_tag: *const ::core::ffi::c_void)
            _ZdlPvRKSt9nothrow_t _ZdaPvRKSt9nothrow_t);
        $crate::export_cxx_operators!(@delete (_align: usize)
            _ZdlPvSt11align_val_t _ZdaPvSt11align_val_t);
        $crate::export_cxx_operators!(@delete (_size: usize, _align: usize)
            _ZdlPvmSt11align_val_t _ZdaPvmSt11align_val_t);
        $crate::export_cxx_operators!(@delete (_align: usize, _tag: *const ::core::ffi::c_void)
            _ZdlPvSt11align_val_tRKSt9nothrow_t _ZdaPvSt11align_val_tRKSt9nothrow_t);
    };
    // `operator new(size)`: push the size (which also aligns the stack for the call), pass
    // the form, attempt, restore the size.
    (@throwing $name:ident $form:ident) => {
        $crate::export_cxx_operators!(@throwing_with $name $form new_attempt (_size: usize)
            ["push rdi", ".cfi_adjust_cfa_offset 8", "mov esi, {form}"]
            ["pop rdi", ".cfi_adjust_cfa_offset -8"]);
    };
    // `operator new(size, align)`: the same with two arguments (and a third slot for the
    // stack's alignment).
    (@throwing_aligned $name:ident $form:ident) => {
        $crate::export_cxx_operators!(@throwing_with $name $form new_aligned_attempt
            (_size: usize, _align: usize)
            ["push rdi", ".cfi_adjust_cfa_offset 8", "push rsi", ".cfi_adjust_cfa_offset 8",
             "sub rsp, 8", ".cfi_adjust_cfa_offset 8", "mov edx, {form}"]
            ["add rsp, 8", ".cfi_adjust_cfa_offset -8", "pop rsi", ".cfi_adjust_cfa_offset -8",
             "pop rdi", ".cfi_adjust_cfa_offset -8"]);
    };
    // A throwing form: save the arguments, attempt; return the block, or restore them and
    // jump to the runtime's operator (in `rdx`).
    (@throwing_with $name:ident $form:ident $attempt:ident ($($arg:ident: $ty:ty),*)
        [$($save:literal),*] [$($restore:literal),*]) => {
        #[doc = concat!("C++ `", stringify!($name), "` (see `hakmem::cxx`).")]
        ///
        /// # Safety
        /// The C++ contract of this operator.
        #[cfg(target_arch = "x86_64")]
        #[unsafe(naked)]
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn $name($($arg: $ty),*) -> *mut ::core::ffi::c_void {
            ::core::arch::naked_asm!(
                ".cfi_startproc",
                $($save,)*
                "call {attempt}",
                $($restore,)*
                "test rax, rax",
                "jz 2f",
                "ret",
                "2:",
                "jmp rdx",
                ".cfi_endproc",
                form = const $crate::cxx::Form::$form as usize,
                attempt = sym $crate::cxx::$attempt,
            )
        }
    };
    // A nothrow form: a Rust function (nothing it calls throws).
    (@nothrow $name:ident $form:ident $body:ident ($($arg:ident: $ty:ty),*)) => {
        #[doc = concat!("C++ `", stringify!($name), "` (see `hakmem::cxx`).")]
        ///
        /// # Safety
        /// The C++ contract of this operator.
        #[cfg(target_arch = "x86_64")]
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn $name($($arg: $ty),*) -> *mut ::core::ffi::c_void {
            // SAFETY: the C++ caller passes its `std::nothrow`.
            unsafe { $crate::cxx::$body($($arg,)* $crate::cxx::Form::$form) }
        }
    };
    (@delete $args:tt $($name:ident)+) => {
        $($crate::export_cxx_operators!(@delete_one $name $args);)+
    };
    (@delete_one $name:ident ($($arg:ident: $ty:ty),*)) => {
        #[doc = concat!("C++ `", stringify!($name), "`: `free` (see `hakmem::cxx`).")]
        ///
        /// # Safety
        /// The C++ contract of this operator.
        #[cfg(target_arch = "x86_64")]
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn $name(p: *mut ::core::ffi::c_void, $($arg: $ty),*) {
            // SAFETY: the caller's contract: `p` is null or a block `new` gave.
            unsafe { $crate::cxx::delete(p) }
        }
    };
}
