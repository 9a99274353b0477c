//! The purger: a thread that gives memory back while the program is quiet.
//!
//! Memory the program has freed stays resident for a while, so that a program about to
//! reuse it does not fault its pages in again (see `heap::maintain` for what is given
//! back when). Giving it back needs someone to run once the delay is over; a thread that
//! frees its working set and then sleeps, or a whole program that goes idle, makes no
//! more allocation calls. The purger runs that work for them:
//!
//! - It sleeps on a futex, one purge period at a time while something is left to give
//!   back (a heap's free slices, the pool's dirty segments, cached large mappings, an
//!   abandoned heap), and without a timeout when nothing is: once a quiet process's memory
//!   is back, it makes no wake-up and no system call until memory becomes dirty again.
//! - A slow path that leaves memory to give back wakes it ([`poke`]) only when it sleeps
//!   without a timeout: one `FUTEX_WAKE` per quiet-to-dirty change, none on busy paths.
//! - It starts on a malloc slow path, and only once the process has mapped
//!   [`MIN_FOOTPRINT`] bytes: a smaller process never gets a thread (what it can keep is
//!   less than that). `HAKMEM_BACKGROUND_PURGE=0` never starts it; the same work then runs
//!   only from the allocation calls' slow paths.
//! - It is created with every signal blocked (the program's signals go to its own
//!   threads) and a small stack, detached, named `hakmem-purge`. After `fork` the child
//!   has none; it starts one on its slow paths once it has mapped `MIN_FOOTPRINT` of its
//!   own (a child on its way to `exec` gets no thread). Its work runs under the heap
//!   registry's lock, which `fork` takes first, so a child never copies a half-done
//!   visit.

use crate::config;
use crate::heap;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

/// Bytes of segments and large mappings the process must have mapped before the purger
/// starts.
pub const MIN_FOOTPRINT: u64 = 32 << 20;

static STARTED: AtomicBool = AtomicBool::new(false);
/// The footprint the process had when it forked (0: not a forked child): a child starts
/// its purger only once it has mapped `MIN_FOOTPRINT` of its own, so that a child that
/// calls malloc on its way to `exec` does not create a thread.
static FOOTPRINT_AT_FORK: AtomicU64 = AtomicU64::new(0);
/// The purger sleeps without a timeout (nothing was left to give back).
static SLEEPING: AtomicBool = AtomicBool::new(false);
/// The futex word the purger sleeps on: bumped by every wake-up.
static WAKE: AtomicU32 = AtomicU32::new(0);

/// Starts the purger if it is wanted and not running yet and the process is large
/// enough. For malloc's slow paths, holding no lock of ours (creating a thread allocates).
#[inline]
pub fn start_if_due() {
    if !STARTED.load(Ordering::Relaxed) {
        start_slow();
    }
}

#[cold]
fn start_slow() {
    let base = FOOTPRINT_AT_FORK.load(Ordering::Relaxed);
    if config::BACKGROUND_PURGE.get() == 0 || heap::footprint() < base + MIN_FOOTPRINT {
        return;
    }
    if STARTED.swap(true, Ordering::Relaxed) {
        return;
    }
    // SAFETY: plain pthread and signal calls with valid out-parameters; the attribute and
    // the signal sets live for the whole calls. A failure leaves the purger off (the slow
    // paths still do its work).
    unsafe {
        let mut attr: libc::pthread_attr_t = core::mem::zeroed();
        libc::pthread_attr_init(&mut attr);
        libc::pthread_attr_setstacksize(&mut attr, 64 * 1024);
        libc::pthread_attr_setdetachstate(&mut attr, libc::PTHREAD_CREATE_DETACHED);
        let mut all: libc::sigset_t = core::mem::zeroed();
        let mut old: libc::sigset_t = core::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
        let mut t: libc::pthread_t = 0;
        if libc::pthread_create(&mut t, &attr, run, core::ptr::null_mut()) == 0 {
            libc::pthread_setname_np(t, c"hakmem-purge".as_ptr());
        }
        libc::pthread_sigmask(libc::SIG_SETMASK, &old, core::ptr::null_mut());
        libc::pthread_attr_destroy(&mut attr);
    }
}

/// Wakes the purger if it sleeps without a timeout and memory waits to be given back
/// (`heap_dirty`: the caller's heap has free slices not yet purged). For slow paths,
/// after they release their heap's lock.
#[inline]
pub fn poke(heap_dirty: bool) {
    if heap_dirty {
        heap::note_live_dirty();
    }
    if SLEEPING.load(Ordering::SeqCst) {
        poke_slow();
    }
}

#[cold]
fn poke_slow() {
    if heap::holds_dirty() && SLEEPING.swap(false, Ordering::SeqCst) {
        WAKE.fetch_add(1, Ordering::SeqCst);
        os_pages::wake(&WAKE, 1);
    }
}

/// The purge period: how often the purger looks while something is left to give back
/// (at least every 10 ms, also with a purge delay of 0), and the pool's decay tick (see
/// `heap::maintain`).
pub fn period_ms() -> u64 {
    config::PURGE_DELAY_MS.get().saturating_mul(2)
}

extern "C" fn run(_: *mut libc::c_void) -> *mut libc::c_void {
    loop {
        let seen = WAKE.load(Ordering::SeqCst);
        heap::maintain(crate::os::now_ms(), core::ptr::null_mut());
        if heap::holds_dirty() {
            os_pages::wait_for(&WAKE, seen, period_ms().max(10));
            continue;
        }
        // Nothing left: sleep until a slow path pokes. Announce it first, then look once
        // more, so that memory made dirty meanwhile is seen here or by that path's poke.
        SLEEPING.store(true, Ordering::SeqCst);
        if heap::holds_dirty() {
            SLEEPING.store(false, Ordering::SeqCst);
            continue;
        }
        os_pages::wait(&WAKE, seen);
        SLEEPING.store(false, Ordering::SeqCst);
    }
}

/// In a child after `fork`: there is no purger (it starts again when due, once the child
/// has mapped `MIN_FOOTPRINT` of its own).
pub fn forget_after_fork() {
    FOOTPRINT_AT_FORK.store(heap::footprint(), Ordering::Relaxed);
    STARTED.store(false, Ordering::Relaxed);
    SLEEPING.store(false, Ordering::Relaxed);
}
