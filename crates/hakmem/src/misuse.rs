//! What the release build does when a program misuses the heap: a free of a pointer that
//! is not the start of a live block of ours (interior, misaligned, foreign), a double free
//! (the block carries the free mark, see `ptr_conversion`), or a free-list link that does
//! not decode to a block of its slab (a write after free). One line on stderr, then
//! abort (default) or, with `HAKMEM_ON_MISUSE=warn`, nothing more: the caller leaves the
//! block alone (leaked; a corrupted list is cut where it went bad).
//!
//! The checked build reports through `checks` instead (and always aborts).

use crate::config;
use crate::os::Line;
use ptr_conversion::{Corruption, Report};

/// Draws the per-process secret the keys of free-list links and free marks derive from,
/// and installs the handler. Called first thing at process set-up, before any block is
/// linked.
pub fn init() {
    let mut words = [0u64; 2];
    // SAFETY: `words` is a writable buffer of that many bytes; getrandom does not allocate.
    let n = unsafe {
        libc::getrandom(
            words.as_mut_ptr().cast(),
            core::mem::size_of_val(&words),
            libc::GRND_NONBLOCK,
        )
    };
    if n != core::mem::size_of_val(&words) as isize {
        fallback_secrets(&mut words);
    }
    // SAFETY: process set-up, before any block is linked; every later use of the secret
    // happens after `INIT` is published (Release) and seen (Acquire), or after a block
    // handed over by the program from a thread that saw it.
    unsafe { ptr_conversion::set_secret(words) };
    ptr_conversion::set_misuse_handler(handle);
}

/// Without `getrandom`: the kernel's 16 random bytes for this process (`AT_RANDOM`),
/// mixed with the clock and an address (the bytes themselves also seed glibc's stack
/// guard, which must not be readable from a free block).
fn fallback_secrets(words: &mut [u64; 2]) {
    // SAFETY: getauxval has no preconditions; AT_RANDOM points to 16 readable bytes.
    let at = unsafe { libc::getauxval(libc::AT_RANDOM) } as *const [u64; 2];
    let seed = if at.is_null() {
        [0, 0]
    } else {
        // SAFETY: as above.
        unsafe { at.read_unaligned() }
    };
    let mix = crate::os::now_ms() ^ (words as *const _ as u64).rotate_left(32);
    for (i, w) in words.iter_mut().enumerate() {
        *w = splitmix(seed[i] ^ mix.wrapping_add(i as u64));
    }
}

/// A 64-bit finaliser (splitmix64): every input bit affects every output bit.
fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Reports a misuse the facade found at user pointer `addr`, through the installed
/// handler (as the boxes do).
#[cold]
#[inline(never)]
pub fn report(what: Corruption, addr: usize) {
    // A free before any allocation: the set-up (configuration, handler) comes first.
    crate::heap::process_init();
    ptr_conversion::misuse(&Report {
        what,
        addr,
        class: None,
        expected: 0,
        found: 0,
    })
}

/// The handler: `hakmem: <what> at <addr><hint>`, then abort unless the user chose
/// `warn` (the line then ends with what was done instead).
fn handle(r: &Report) {
    let warn = config::ON_MISUSE.get() == 1;
    let mut l = Line::new();
    l.text("hakmem: ")
        .text(r.what.describe())
        .text(" at ")
        .hex(r.addr)
        .text(r.what.hint());
    if warn {
        l.text("; ignored, the block is leaked (HAKMEM_ON_MISUSE=warn)");
    }
    l.emit();
    if !warn {
        // SAFETY: abort never returns.
        unsafe { libc::abort() }
    }
}
