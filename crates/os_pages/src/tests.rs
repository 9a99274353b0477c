//! Unit tests of `MmapPages` against the kernel: alignment, zero fill, trimming, purge,
//! remap, unmap and the huge-page hint, each observed through the kernel (`mincore`,
//! `/proc/self/smaps`), not through our own bookkeeping.
extern crate std;

use super::*;
use std::string::String;
use std::sync::Mutex;
use std::vec::Vec;

/// Every test that maps takes this lock, so no other test of this process maps into a
/// hole one has just made or changes the address space's size while one measures it.
static ADDRESS_SPACE: Mutex<()> = Mutex::new(());

fn lock() -> std::sync::MutexGuard<'static, ()> {
    ADDRESS_SPACE.lock().unwrap_or_else(|e| e.into_inner())
}

/// Whether the page at `addr` is mapped: `mincore` fails with ENOMEM on unmapped pages.
fn is_mapped(addr: usize) -> bool {
    let mut vec = 0u8;
    // SAFETY: mincore only reads the page tables; `vec` holds one entry for one page.
    let r = unsafe { libc::mincore(addr as *mut libc::c_void, PAGE, &mut vec) };
    if r == 0 {
        return true;
    }
    // SAFETY: reading this thread's errno.
    assert_eq!(unsafe { *libc::__errno_location() }, libc::ENOMEM);
    false
}

/// Fills a range with a pattern derived from each word's offset.
///
/// # Safety
/// The range is ours and writable.
unsafe fn fill(p: NonNull<u8>, size: usize, seed: u64) {
    let words = p.as_ptr().cast::<u64>();
    for i in 0..size / 8 {
        // SAFETY: inside the range (caller).
        unsafe { words.add(i).write(seed ^ i as u64) };
    }
}

/// The index of the first word of a range that does not hold `fill`'s pattern.
///
/// # Safety
/// The range is ours and readable.
unsafe fn first_mismatch(p: NonNull<u8>, size: usize, seed: u64) -> Option<usize> {
    let words = p.as_ptr().cast::<u64>();
    // SAFETY: inside the range (caller).
    (0..size / 8).find(|&i| unsafe { words.add(i).read() } != seed ^ i as u64)
}

/// Whether a range reads zero everywhere.
///
/// # Safety
/// The range is ours and readable.
unsafe fn all_zero(p: NonNull<u8>, size: usize) -> bool {
    // SAFETY: inside the range (caller).
    unsafe { core::slice::from_raw_parts(p.as_ptr(), size) }
        .iter()
        .all(|&b| b == 0)
}

#[test]
fn page_constant_is_the_kernel_page_size() {
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    assert_eq!(page as usize, PAGE);
    assert_eq!(<MmapPages as PageSource>::PAGE, PAGE);
}

/// The process's mapped address space in bytes (`VmSize` of `/proc/self/status`).
fn vm_size() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmSize:")).unwrap();
    let kb: usize = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kb * 1024
}

#[test]
fn maps_are_aligned_zeroed_writable_and_trimmed() {
    let _g = lock();
    let pages = MmapPages;
    for align in [1, 16, PAGE, 2 * PAGE, 64 << 10, 1 << 20, 2 << 20, 4 << 20] {
        for size in [PAGE, 3 * PAGE, 64 << 10, 4 << 20] {
            // The address space grows by exactly `size`: head and tail were trimmed. The
            // test harness's own threads may map something meanwhile, so one of three
            // tries must see it exactly (an untrimmed map never does).
            let mut exact = false;
            for _ in 0..3 {
                let before = vm_size();
                let p = pages.map(size, align).expect("mmap");
                // (A harness thread that exits meanwhile shrinks it: no exact reading.)
                exact |= vm_size().checked_sub(before) == Some(size);
                let a = p.as_ptr() as usize;
                assert_eq!(a % align.max(PAGE), 0, "size {size:#x} align {align:#x}");
                assert!(is_mapped(a) && is_mapped(a + size - PAGE));
                // SAFETY: the fresh range of `size` bytes is ours until unmapped.
                unsafe {
                    assert!(all_zero(p, size), "size {size:#x} align {align:#x}");
                    fill(p, size, 7);
                    assert_eq!(first_mismatch(p, size, 7), None);
                    pages.unmap(p, size);
                }
                if exact {
                    break;
                }
            }
            assert!(
                exact,
                "size {size:#x} align {align:#x}: over-mapping left behind"
            );
        }
    }
}

#[test]
fn sizes_are_rounded_up_to_the_page() {
    let _g = lock();
    let pages = MmapPages;
    let p = pages.map(100, 1 << 16).expect("mmap");
    // SAFETY: the whole first page is ours (the size was rounded up to it).
    unsafe {
        fill(p, PAGE, 3);
        assert_eq!(first_mismatch(p, PAGE, 3), None);
        pages.unmap(p, 100);
    }
}

#[test]
fn impossible_requests_fail_without_mapping() {
    let _g = lock();
    let pages = MmapPages;
    assert!(pages.map(usize::MAX, PAGE).is_none()); // the size overflows rounding up
    assert!(pages.map(usize::MAX - PAGE, PAGE).is_none());
    assert!(pages.map(1 << 20, 1 << 62).is_none());
    // More than the 47-bit user address space: the kernel refuses.
    assert!(pages.map(1 << 50, PAGE).is_none());
}

#[test]
fn purge_makes_memory_read_zero_and_keeps_it_mapped() {
    let _g = lock();
    let pages = MmapPages;
    let size = 16 * PAGE;
    let p = pages.map(size, PAGE).expect("mmap");
    // SAFETY: the range is ours throughout.
    unsafe {
        fill(p, size, 0x5a5a);
        // Purge the middle half: only it reads zero afterwards.
        let mid = NonNull::new(p.as_ptr().add(4 * PAGE)).unwrap();
        pages.purge(mid, 8 * PAGE);
        assert!(all_zero(mid, 8 * PAGE));
        assert_eq!(first_mismatch(p, 4 * PAGE, 0x5a5a), None);
        let rest = NonNull::new(p.as_ptr().add(12 * PAGE)).unwrap();
        let words_before = 12 * PAGE / 8;
        let w = rest.as_ptr().cast::<u64>();
        for i in 0..4 * PAGE / 8 {
            assert_eq!(w.add(i).read(), 0x5a5a ^ (words_before + i) as u64);
        }
        // Still mapped and writable.
        fill(mid, 8 * PAGE, 9);
        assert_eq!(first_mismatch(mid, 8 * PAGE, 9), None);
        pages.purge(p, size);
        assert!(all_zero(p, size));
        pages.unmap(p, size);
    }
}

#[test]
fn remap_keeps_contents() {
    let _g = lock();
    let pages = MmapPages;
    let old = 64 << 10;
    let new = 1 << 20;
    let p = pages.map(old, PAGE).expect("mmap");
    // SAFETY: each range is ours while used; the old one is not used after a success.
    unsafe {
        fill(p, old, 11);
        // Growing in place may or may not be possible; either way nothing is lost.
        match pages.remap(p, old, new, None) {
            Some(q) => {
                assert_eq!(q, p, "a remap that may not move moved");
                assert_eq!(first_mismatch(q, old, 11), None);
                let grown = NonNull::new(q.as_ptr().add(old)).unwrap();
                assert!(all_zero(grown, new - old));
                let back = pages.remap(q, new, old, None).expect("shrinking in place");
                assert_eq!(back, p);
            }
            None => assert_eq!(first_mismatch(p, old, 11), None),
        }
        let q = pages
            .remap(p, old, new, Some(PAGE))
            .expect("mremap may move");
        assert_eq!(first_mismatch(q, old, 11), None);
        let grown = NonNull::new(q.as_ptr().add(old)).unwrap();
        assert!(all_zero(grown, new - old));
        fill(q, new, 12);
        let r = pages.remap(q, new, old, Some(PAGE)).expect("shrinking");
        assert_eq!(first_mismatch(r, old, 12), None);
        pages.unmap(r, old);
    }
}

#[test]
fn a_blocked_growth_moves_to_an_aligned_range() {
    let _g = lock();
    let pages = MmapPages;
    let (old, new, align) = (3 << 20, 5 << 20, 2 << 20);
    let p = pages.map(old, align).expect("mmap");
    let a = p.as_ptr() as usize;
    // Take the page after the mapping, so that it cannot grow in place.
    // SAFETY: a new mapping at a fixed address that fails rather than replace anything.
    let blocker = unsafe {
        libc::mmap(
            (a + old) as *mut libc::c_void,
            PAGE,
            libc::PROT_NONE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED_NOREPLACE,
            -1,
            0,
        )
    };
    // SAFETY: each range is ours while used; the old one is not used after the move.
    unsafe {
        fill(p, old, 13);
        assert!(
            pages.remap(p, old, new, None).is_none(),
            "grew into a taken page"
        );
        assert_eq!(
            first_mismatch(p, old, 13),
            None,
            "a failed remap changed the mapping"
        );
        let q = pages
            .remap(p, old, new, Some(align))
            .expect("a move to a fresh range");
        let b = q.as_ptr() as usize;
        assert_ne!(b, a);
        assert_eq!(b % align, 0, "the moved mapping keeps its alignment");
        assert_eq!(
            first_mismatch(q, old, 13),
            None,
            "the pages moved with their contents"
        );
        let grown = NonNull::new(q.as_ptr().add(old)).unwrap();
        assert!(all_zero(grown, new - old));
        assert!(!is_mapped(a), "the old range is gone");
        pages.unmap(q, new);
        if blocker != libc::MAP_FAILED {
            libc::munmap(blocker, PAGE);
        }
    }
}

#[test]
fn unmap_gives_the_range_back() {
    let _g = lock();
    let pages = MmapPages;
    let p = pages.map(3 << 20, 1 << 20).expect("mmap");
    let a = p.as_ptr() as usize;
    // SAFETY: the range is ours; each part is given up once and not used afterwards.
    unsafe {
        // A page-aligned part of a mapping: only it goes.
        let mid = NonNull::new(p.as_ptr().add(1 << 20)).unwrap();
        pages.unmap(mid, 1 << 20);
        assert!(is_mapped(a) && is_mapped(a + (2 << 20)));
        assert!(!is_mapped(a + (1 << 20)) && !is_mapped(a + (2 << 20) - PAGE));
        pages.unmap(p, 1 << 20);
        let tail = NonNull::new(p.as_ptr().add(2 << 20)).unwrap();
        pages.unmap(tail, 1 << 20);
    }
    assert!(!is_mapped(a) && !is_mapped(a + (3 << 20) - PAGE));
}

/// The `VmFlags` line of the mapping that starts at `addr` in `/proc/self/smaps`.
fn vm_flags(addr: usize) -> Option<String> {
    let smaps = std::fs::read_to_string("/proc/self/smaps").ok()?;
    let start = std::format!("{addr:x}-");
    let mut lines = smaps.lines().skip_while(|l| !l.starts_with(&start));
    lines.next()?;
    lines.find(|l| l.starts_with("VmFlags:")).map(String::from)
}

#[test]
fn hint_huge_pages_marks_the_range() {
    if !std::path::Path::new("/sys/kernel/mm/transparent_hugepage").exists() {
        return; // a kernel without THP: the advice is refused and there is nothing to see
    }
    let _g = lock();
    let pages = MmapPages;
    let size = 4 << 20;
    let p = pages.map(size, 2 << 20).expect("mmap");
    let a = p.as_ptr() as usize;
    let before = vm_flags(a).expect("our mapping in smaps");
    assert!(!before.split_whitespace().any(|f| f == "hg"), "{before}");
    pages.hint_huge_pages(p, size);
    let after = vm_flags(a).expect("our mapping in smaps");
    let flags: Vec<&str> = after.split_whitespace().collect();
    assert!(flags.contains(&"hg"), "{after}");
    // SAFETY: the range is ours; a hint changes no contents.
    unsafe {
        fill(p, size, 5);
        assert_eq!(first_mismatch(p, size, 5), None);
        pages.unmap(p, size);
    }
}

/// The `Rss` and protection of the mapping starting at `addr`, from `/proc/self/smaps`.
fn smaps_entry(addr: usize) -> Option<(String, usize)> {
    let smaps = std::fs::read_to_string("/proc/self/smaps").ok()?;
    let start = std::format!("{addr:x}-");
    let mut lines = smaps.lines().skip_while(|l| !l.starts_with(&start));
    let head = lines.next()?;
    let perms = String::from(head.split_whitespace().nth(1)?);
    let rss = lines
        .find(|l| l.starts_with("Rss:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some((perms, rss))
}

#[test]
fn reserve_reads_zero_and_commit_makes_part_writable() {
    let _g = lock();
    let pages = MmapPages;
    let size = 1 << 30; // 1 GiB of address space, nothing resident
    let p = pages.reserve(size).expect("reserve");
    let a = p.as_ptr() as usize;
    let (perms, rss) = smaps_entry(a).expect("our reservation in smaps");
    assert!(perms.starts_with("r--p"), "{perms}");
    assert_eq!(rss, 0);
    // SAFETY: reading our reservation (zero pages); then committing one page of it.
    unsafe {
        assert_eq!(*p.as_ptr().add(size / 2), 0);
        let page = NonNull::new_unchecked(p.as_ptr().add(size / 2));
        assert!(pages.commit(page, PAGE));
        assert!(pages.commit(page, PAGE), "committing twice is harmless");
        page.as_ptr().write(7);
        assert_eq!(*page.as_ptr(), 7);
        // The rest is still read-only: the committed page splits the mapping.
        let (perms, _) = smaps_entry(a).expect("the reservation's head");
        assert!(perms.starts_with("r--p"), "{perms}");
        let (perms, rss) = smaps_entry(a + size / 2).expect("the committed page");
        assert!(perms.starts_with("rw-p"), "{perms}");
        assert_eq!(rss, 4);
        pages.unmap(p, size);
    }
    assert!(!is_mapped(a));
}

/// Pages of `p`/`size` that are resident (`mincore`).
fn resident_pages(p: NonNull<u8>, size: usize) -> usize {
    let mut vec = std::vec![0u8; size / PAGE];
    // SAFETY: mincore only reads the page tables; `vec` has one entry per page.
    let r = unsafe { libc::mincore(p.as_ptr().cast(), size, vec.as_mut_ptr()) };
    assert_eq!(r, 0);
    vec.iter().filter(|&&v| v & 1 != 0).count()
}

#[test]
fn prefault_makes_pages_resident_and_keeps_contents() {
    let _g = lock();
    let pages = MmapPages;
    let size = 16 * PAGE;
    let p = pages.map(size, PAGE).expect("mmap");
    // SAFETY: the range is ours throughout.
    unsafe {
        fill(p, 2 * PAGE, 0x77);
        assert_eq!(resident_pages(p, size), 2);
        pages.prefault_writable(p, size);
        assert_eq!(
            resident_pages(p, size),
            16,
            "MADV_POPULATE_WRITE (Linux 5.14)"
        );
        assert_eq!(first_mismatch(p, 2 * PAGE, 0x77), None);
        let rest = NonNull::new(p.as_ptr().add(2 * PAGE)).unwrap();
        assert!(all_zero(rest, 14 * PAGE));
        pages.unmap(p, size);
    }
}

#[test]
fn wait_sleeps_until_woken_and_returns_at_once_on_another_value() {
    // Its thread's stack is a mapping: not while another test checks what is unmapped.
    let _g = lock();
    use std::sync::atomic::{AtomicU32, Ordering::SeqCst};
    use std::sync::Arc;
    use std::time::{Duration, Instant};
    let word = Arc::new(AtomicU32::new(0));
    // The word does not hold the expected value: no sleep.
    let t0 = Instant::now();
    wait(&word, 1);
    assert!(t0.elapsed() < Duration::from_secs(5));
    // A waiter on 1 sleeps until the word changes and a wake comes.
    word.store(1, SeqCst);
    let woke = Arc::new(AtomicU32::new(0));
    let (w, flag) = (word.clone(), woke.clone());
    let t = std::thread::spawn(move || {
        while w.load(SeqCst) == 1 {
            wait(&w, 1);
        }
        flag.store(1, SeqCst);
    });
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(
        woke.load(SeqCst),
        0,
        "the waiter returned while the word held 1"
    );
    word.store(2, SeqCst);
    wake(&word, u32::MAX);
    t.join().unwrap();
    assert_eq!(woke.load(SeqCst), 1);
}

#[test]
fn wait_for_returns_after_its_timeout() {
    use std::sync::atomic::AtomicU32;
    use std::time::{Duration, Instant};
    let word = AtomicU32::new(1);
    let t0 = Instant::now();
    // No wake comes: the wait ends by its timeout (or a spurious wake-up, which the
    // loop absorbs).
    while t0.elapsed() < Duration::from_millis(30) {
        wait_for(&word, 1, 30);
    }
    assert!(t0.elapsed() < Duration::from_secs(5));
    // Another value: at once.
    let t1 = Instant::now();
    wait_for(&word, 2, 60_000);
    assert!(t1.elapsed() < Duration::from_secs(5));
}

#[test]
fn a_range_of_two_mappings_grows_and_shrinks_in_place() {
    let _g = lock();
    let pages = MmapPages;
    // Address space of 16 pages; the first 8 become two mappings of 4 pages that the
    // kernel keeps apart (the first asks for huge pages), the rest is left free.
    let r = pages.map(16 * PAGE, PAGE).expect("mmap");
    // SAFETY: all ranges below are ours; nothing else maps while the lock is held.
    unsafe {
        pages.unmap(NonNull::new(r.as_ptr().add(8 * PAGE)).unwrap(), 8 * PAGE);
        pages.hint_huge_pages(r, 4 * PAGE);
        fill(r, 8 * PAGE, 21);
        let q = pages
            .remap(r, 8 * PAGE, 12 * PAGE, None)
            .expect("the address space after the range is free");
        assert_eq!(q, r);
        assert_eq!(first_mismatch(q, 8 * PAGE, 21), None);
        assert!(all_zero(
            NonNull::new(q.as_ptr().add(8 * PAGE)).unwrap(),
            4 * PAGE
        ));
        let q = pages
            .remap(q, 12 * PAGE, 6 * PAGE, None)
            .expect("shrinking");
        assert_eq!(q, r);
        assert!(!is_mapped(r.as_ptr() as usize + 6 * PAGE));
        assert_eq!(first_mismatch(q, 6 * PAGE, 21), None);
        pages.unmap(q, 6 * PAGE);
    }
}
