//! Statistics: per-thread counters, merged on request.
//!
//! free's fast path counts nothing; malloc's counts the blocks its slab hands out (one
//! increment on the record it writes anyway). A slab knows the blocks the program holds
//! (its count of blocks in use), so its frees are the blocks it handed out less those; a
//! heap's per-class frees and live blocks are sums over its slabs (`SlabHeap::
//! for_each_count`), and its allocations the two added. Slow paths count
//! misses, refills and the remote frees they take back (written by the heap's thread
//! only: relaxed atomics, no read-modify-write instruction). [`collect`] sums every heap
//! (heaps are never freed, so exited threads still count) with the segment pool's and the
//! large tier's counters into a [`Stats`] snapshot: exact for the calling thread's heap
//! and for heaps no thread uses; another running thread's blocks are as it last
//! published them (at its first purge tick after a request, see [`EPOCH`]). Nothing is merged or printed unless asked:
//! `HAKMEM_STATS=1` (text) or `=json` prints at exit, `malloc_stats()` prints now,
//! `mallinfo2()` and `hakmem_stats()` fill structs, [`crate::stats`] returns one.

use core::sync::atomic::{AtomicU64, Ordering::Relaxed};
use tiny_layout::{SizeClass, CLASS_COUNT};

/// Per-class counters of one heap (written by its thread only).
pub struct ClassCounters {
    /// Allocations that found their class's current slab empty (slow paths).
    pub misses: [AtomicU64; CLASS_COUNT],
    /// Of those, the ones that carved blocks or moved on to another slab.
    pub refills: [AtomicU64; CLASS_COUNT],
    /// Blocks other threads freed, taken back from the remote queue.
    pub remote_frees: [AtomicU64; CLASS_COUNT],
    /// Blocks allocated, as last published (see [`collect`]).
    pub allocs: [AtomicU64; CLASS_COUNT],
    /// Blocks freed, as last published.
    pub frees: [AtomicU64; CLASS_COUNT],
}

impl ClassCounters {
    /// All zero.
    pub const fn new() -> Self {
        ClassCounters {
            misses: [const { AtomicU64::new(0) }; CLASS_COUNT],
            refills: [const { AtomicU64::new(0) }; CLASS_COUNT],
            remote_frees: [const { AtomicU64::new(0) }; CLASS_COUNT],
            allocs: [const { AtomicU64::new(0) }; CLASS_COUNT],
            frees: [const { AtomicU64::new(0) }; CLASS_COUNT],
        }
    }
}

/// Statistics requests so far: a running heap publishes its slabs' counts at its first
/// purge tick after a new request (walking its slab records costs a tick nothing unless
/// someone asks).
pub static EPOCH: AtomicU64 = AtomicU64::new(0);

/// Adds one to a counter only its owner thread writes (no atomic read-modify-write).
#[inline(always)]
pub fn bump(c: &AtomicU64) {
    c.store(c.load(Relaxed).wrapping_add(1), Relaxed);
}

/// One size class, all threads.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClassStats {
    /// Usable bytes of the class's blocks.
    pub block_size: u64,
    /// Blocks allocated.
    pub allocs: u64,
    /// Blocks freed (by any thread).
    pub frees: u64,
    /// Allocations served by the fast path (the current slab had a free block).
    pub cache_hits: u64,
    /// Allocations that took the slow path.
    pub misses: u64,
    /// Slow paths that carved blocks or moved on to another slab.
    pub refills: u64,
    /// Frees from a thread other than the block's owner (once the owner took them back).
    pub remote_frees: u64,
}

/// A snapshot of the whole allocator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stats {
    /// Per size class.
    pub classes: [ClassStats; CLASS_COUNT],
    /// Large blocks allocated / freed / served from the mapping cache.
    pub large_allocs: u64,
    pub large_frees: u64,
    pub large_cache_hits: u64,
    /// Bytes of live large mappings, now and at most.
    pub large_bytes_live: u64,
    pub large_bytes_peak: u64,
    /// Segments (4 MiB) mapped now, at most, and cached empty.
    pub segments_live: u64,
    pub segments_peak: u64,
    pub segments_cached: u64,
    /// Slabs opened and closed.
    pub slabs_opened: u64,
    pub slabs_closed: u64,
    /// Bytes given back to the OS by purging.
    pub bytes_purged: u64,
    /// Bytes given back by `malloc_trim` / `hakmem::trim` (purged or unmapped), and
    /// its calls.
    pub bytes_trimmed: u64,
    pub trims: u64,
    /// Resident bytes of the whole process (from /proc/self/statm).
    pub process_resident: u64,
    /// Thread heaps created, and in use by a live thread.
    pub heaps: u64,
    pub heaps_in_use: u64,
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            classes: [ClassStats::default(); CLASS_COUNT],
            large_allocs: 0,
            large_frees: 0,
            large_cache_hits: 0,
            large_bytes_live: 0,
            large_bytes_peak: 0,
            segments_live: 0,
            segments_peak: 0,
            segments_cached: 0,
            slabs_opened: 0,
            slabs_closed: 0,
            bytes_purged: 0,
            bytes_trimmed: 0,
            trims: 0,
            process_resident: 0,
            heaps: 0,
            heaps_in_use: 0,
        }
    }
}

impl Stats {
    /// Bytes mapped for blocks now (segments and large mappings).
    pub fn bytes_mapped(&self) -> u64 {
        self.segments_live * superslab::SEGMENT_SIZE as u64 + self.large_bytes_live
    }
    /// Bytes of small and medium blocks the program holds now.
    pub fn bytes_in_use(&self) -> u64 {
        self.classes
            .iter()
            .map(|c| c.allocs.saturating_sub(c.frees) * c.block_size)
            .sum()
    }
    /// Adds a heap's counters.
    ///
    /// # Safety
    /// `h` is a heap (never freed) and the registry lock is held (`for_each_heap`).
    unsafe fn add_counters(&mut self, h: *mut crate::heap::Heap, in_use: bool) {
        let classes = &mut self.classes;
        // SAFETY: (caller).
        unsafe {
            crate::heap::block_counts(h, in_use, |i, allocs, frees| {
                classes[i].allocs += allocs;
                classes[i].frees += frees;
            })
        };
        // SAFETY: references to the atomics only, never to the rest of the heap.
        let c = unsafe { &(*h).counters };
        for (i, s) in self.classes.iter_mut().enumerate() {
            s.misses += c.misses[i].load(Relaxed);
            s.refills += c.refills[i].load(Relaxed);
            s.remote_frees += c.remote_frees[i].load(Relaxed);
        }
    }
}

/// Merges every heap's counters and the process-wide ones.
pub fn collect() -> Stats {
    EPOCH.fetch_add(1, Relaxed);
    let mut s = Stats::default();
    for (i, c) in s.classes.iter_mut().enumerate() {
        c.block_size = SizeClass::new(i).map_or(0, |c| c.block_size() as u64);
    }
    crate::heap::for_each_heap(|h, in_use| {
        // SAFETY: `for_each_heap` gives heaps, under the registry lock.
        unsafe { s.add_counters(h, in_use) };
        s.heaps += 1;
        s.heaps_in_use += in_use as u64;
    });
    for c in s.classes.iter_mut() {
        c.cache_hits = c.allocs.saturating_sub(c.misses);
    }
    let p = crate::heap::POOL.stats();
    s.segments_live = p
        .segments_mapped
        .load(Relaxed)
        .saturating_sub(p.segments_unmapped.load(Relaxed));
    s.segments_peak = p.segments_peak.load(Relaxed);
    s.segments_cached = crate::heap::POOL.cached() as u64;
    s.slabs_opened = p.slabs_opened.load(Relaxed);
    s.slabs_closed = p.slabs_closed.load(Relaxed);
    s.bytes_purged = p.bytes_purged.load(Relaxed);
    s.bytes_trimmed = crate::heap::TRIMMED.load(Relaxed);
    s.trims = crate::heap::TRIMS.load(Relaxed);
    let l = crate::heap::LARGE.stats();
    s.large_allocs = l.allocs;
    s.large_frees = l.frees;
    s.large_cache_hits = l.cache_hits;
    s.large_bytes_live = l.bytes_live;
    s.large_bytes_peak = l.bytes_peak;
    s.process_resident = crate::os::resident_bytes();
    s
}

/// A byte sink for reports (a fixed buffer flushed to a file descriptor, or a Vec in tests).
pub trait Sink {
    fn put(&mut self, b: &[u8]);
    fn text(&mut self, s: &str) -> &mut Self
    where
        Self: Sized,
    {
        self.put(s.as_bytes());
        self
    }
    fn num(&mut self, v: u64, width: usize) -> &mut Self
    where
        Self: Sized,
    {
        let mut d = [b'0'; 20];
        let mut n = 0;
        let mut x = v;
        // u64::MAX has 20 digits, so `n` stays within the buffer.
        while n < d.len() {
            d[d.len() - 1 - n] = b'0' + (x % 10) as u8;
            n += 1;
            x /= 10;
            if x == 0 {
                break;
            }
        }
        for _ in n..width {
            self.put(b" ");
        }
        self.put(d.get(d.len() - n..).unwrap_or(&[]));
        self
    }
    /// Bytes as `N.N KiB/MiB/GiB`.
    fn bytes(&mut self, v: u64) -> &mut Self
    where
        Self: Sized,
    {
        let (unit, div) = match v {
            v if v >= 1 << 30 => ("GiB", 1u64 << 30),
            v if v >= 1 << 20 => ("MiB", 1 << 20),
            v if v >= 1 << 10 => ("KiB", 1 << 10),
            _ => ("B", 1),
        };
        self.num(v / div, 0);
        if div > 1 {
            self.text(".").num(v % div * 10 / div, 0);
        }
        self.text(" ").text(unit)
    }
}

/// Renders the human-readable report.
pub fn render_text(s: &Stats, o: &mut impl Sink) {
    o.text("hakmem statistics\n");
    o.text("class   block      allocs       frees  cache hits   refills  remote frees\n");
    for (i, c) in s.classes.iter().enumerate() {
        if c.allocs == 0 && c.frees == 0 {
            continue;
        }
        o.num(i as u64, 5)
            .num(c.block_size, 8)
            .num(c.allocs, 12)
            .num(c.frees, 12)
            .num(c.cache_hits, 12);
        o.num(c.refills, 10).num(c.remote_frees, 14).text("\n");
    }
    o.text("large: ")
        .num(s.large_allocs, 0)
        .text(" allocs, ")
        .num(s.large_frees, 0)
        .text(" frees, ");
    o.num(s.large_cache_hits, 0)
        .text(" from the mapping cache; live ")
        .bytes(s.large_bytes_live);
    o.text(", peak ").bytes(s.large_bytes_peak).text("\n");
    o.text("segments: ")
        .num(s.segments_live, 0)
        .text(" mapped (peak ")
        .num(s.segments_peak, 0);
    o.text("), ")
        .num(s.segments_cached, 0)
        .text(" cached empty; slabs: ");
    o.num(s.slabs_opened.saturating_sub(s.slabs_closed), 0)
        .text(" live (")
        .num(s.slabs_opened, 0);
    o.text(" opened, ")
        .num(s.slabs_closed, 0)
        .text(" closed)\n");
    o.text("memory: mapped ")
        .bytes(s.bytes_mapped())
        .text(", in use ")
        .bytes(s.bytes_in_use());
    o.text(", purged ")
        .bytes(s.bytes_purged)
        .text(", trimmed ")
        .bytes(s.bytes_trimmed)
        .text(" (")
        .num(s.trims, 0)
        .text(" calls), process resident ")
        .bytes(s.process_resident)
        .text("\n");
    o.text("heaps: ")
        .num(s.heaps, 0)
        .text(" (")
        .num(s.heaps_in_use, 0)
        .text(" in use)\n");
}

/// Renders the same as one JSON object.
pub fn render_json(s: &Stats, o: &mut impl Sink) {
    o.text("{\"classes\":[");
    let mut first = true;
    for (i, c) in s.classes.iter().enumerate() {
        if c.allocs == 0 && c.frees == 0 {
            continue;
        }
        if !first {
            o.text(",");
        }
        first = false;
        o.text("{\"class\":")
            .num(i as u64, 0)
            .text(",\"block_size\":")
            .num(c.block_size, 0);
        o.text(",\"allocs\":")
            .num(c.allocs, 0)
            .text(",\"frees\":")
            .num(c.frees, 0);
        o.text(",\"cache_hits\":")
            .num(c.cache_hits, 0)
            .text(",\"refills\":")
            .num(c.refills, 0);
        o.text(",\"remote_frees\":")
            .num(c.remote_frees, 0)
            .text("}");
    }
    o.text("],\"large\":{\"allocs\":")
        .num(s.large_allocs, 0)
        .text(",\"frees\":")
        .num(s.large_frees, 0);
    o.text(",\"cache_hits\":")
        .num(s.large_cache_hits, 0)
        .text(",\"bytes_live\":")
        .num(s.large_bytes_live, 0);
    o.text(",\"bytes_peak\":")
        .num(s.large_bytes_peak, 0)
        .text("},\"segments\":{\"live\":")
        .num(s.segments_live, 0);
    o.text(",\"peak\":")
        .num(s.segments_peak, 0)
        .text(",\"cached\":")
        .num(s.segments_cached, 0);
    o.text("},\"slabs\":{\"opened\":")
        .num(s.slabs_opened, 0)
        .text(",\"closed\":")
        .num(s.slabs_closed, 0);
    o.text("},\"bytes\":{\"mapped\":")
        .num(s.bytes_mapped(), 0)
        .text(",\"in_use\":")
        .num(s.bytes_in_use(), 0);
    o.text(",\"purged\":")
        .num(s.bytes_purged, 0)
        .text(",\"trimmed\":")
        .num(s.bytes_trimmed, 0)
        .text(",\"trims\":")
        .num(s.trims, 0)
        .text(",\"process_resident\":")
        .num(s.process_resident, 0);
    o.text("},\"heaps\":{\"created\":")
        .num(s.heaps, 0)
        .text(",\"in_use\":")
        .num(s.heaps_in_use, 0)
        .text("}}\n");
}

/// A 4 KiB buffer written to a file descriptor with `write(2)`.
pub struct FdSink {
    fd: i32,
    buf: [u8; 4096],
    len: usize,
}

impl FdSink {
    pub const fn new(fd: i32) -> Self {
        FdSink {
            fd,
            buf: [0; 4096],
            len: 0,
        }
    }
    pub fn flush(&mut self) {
        let len = self.len.min(self.buf.len());
        let mut off = 0;
        while off < len {
            // SAFETY: `off < len <= buf.len()`: writing the rest of our own buffer.
            let n = unsafe { libc::write(self.fd, self.buf.as_ptr().add(off).cast(), len - off) };
            if n <= 0 {
                break;
            }
            off += n as usize;
        }
        self.len = 0;
    }
}

impl Sink for FdSink {
    fn put(&mut self, b: &[u8]) {
        for &byte in b {
            if self.len >= self.buf.len() {
                self.flush();
            }
            if let Some(slot) = self.buf.get_mut(self.len) {
                *slot = byte;
                self.len += 1;
            }
        }
    }
}

/// Prints the report (text or JSON) to stderr.
pub fn print(json: bool) {
    let s = collect();
    let mut out = FdSink::new(2);
    if json {
        render_json(&s, &mut out);
    } else {
        render_text(&s, &mut out);
    }
    out.flush();
}

/// At exit: print if `HAKMEM_STATS` asks (run from `.fini_array`, no registration needed).
extern "C" fn print_at_exit() {
    match crate::config::STATS.get() {
        1 => print(false),
        2 => print(true),
        _ => {}
    }
}

#[used]
#[unsafe(link_section = ".fini_array")]
static PRINT_AT_EXIT: extern "C" fn() = print_at_exit;

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::vec::Vec;

    impl Sink for Vec<u8> {
        fn put(&mut self, b: &[u8]) {
            self.extend_from_slice(b);
        }
    }

    fn sample() -> Stats {
        let mut s = Stats::default();
        for (i, (a, f)) in [(0usize, (1200u64, 1100u64)), (7, (50, 50)), (40, (3, 1))] {
            let c = &mut s.classes[i];
            c.block_size = SizeClass::new(i).unwrap().block_size() as u64;
            c.allocs = a;
            c.frees = f;
            c.cache_hits = a - a / 10;
            c.refills = a / 10;
            c.remote_frees = f / 3;
        }
        s.large_allocs = 4;
        s.large_frees = 3;
        s.large_cache_hits = 1;
        s.large_bytes_live = 3 << 20;
        s.large_bytes_peak = 9 << 20;
        s.segments_live = 2;
        s.segments_peak = 3;
        s.segments_cached = 1;
        s.slabs_opened = 12;
        s.slabs_closed = 5;
        s.bytes_purged = 1536 * 1024;
        s.bytes_trimmed = 5 << 20;
        s.trims = 2;
        s.process_resident = 7 << 20;
        s.heaps = 3;
        s.heaps_in_use = 2;
        s
    }

    #[test]
    fn text_report_format() {
        let mut v = Vec::new();
        render_text(&sample(), &mut v);
        insta::assert_snapshot!(std::string::String::from_utf8(v).unwrap());
    }

    #[test]
    fn json_report_format() {
        let mut v = Vec::new();
        render_json(&sample(), &mut v);
        insta::assert_snapshot!(std::string::String::from_utf8(v).unwrap());
    }
}
