//! The address map: one entry per 64 KiB slice of the address space, saying whether the
//! slice is ours and, for a slice of a live slab, which owner it belongs to and where its
//! record is.

use crate::{PageSource, SEGMENT_SIZE, SLICES, SLICE_SHIFT};
use core::ptr::{null_mut, NonNull};
use core::sync::atomic::{AtomicPtr, AtomicU64, AtomicUsize, Ordering};

/// Bits of user-space addresses covered (x86-64 and aarch64 Linux user space: 47).
pub const ADDRESS_BITS: usize = 47;
/// Entries: one per [`crate::SLICE_SIZE`] granule below `1 << ADDRESS_BITS`.
pub const MAP_ENTRIES: usize = 1 << (ADDRESS_BITS - SLICE_SHIFT);
const MAP_BYTES: usize = MAP_ENTRIES * core::mem::size_of::<AtomicU64>();
/// Map bytes made writable at once (one bit of `committed`): covers 512 MiB of addresses.
const COMMIT_CHUNK: usize = 64 << 10;
const COMMIT_WORDS: usize = MAP_BYTES / COMMIT_CHUNK / 64;
/// Entries per chunk (one chunk describes 512 MiB of addresses).
const CHUNK_ENTRIES: usize = COMMIT_CHUNK / core::mem::size_of::<AtomicU64>();
/// Chunks in the whole map.
const CHUNKS: usize = MAP_ENTRIES / CHUNK_ENTRIES;
// A segment's slices never straddle two chunks.
static_assertions::const_assert!(CHUNK_ENTRIES.is_multiple_of(SLICES));

/// Bytes of the chunked form's table: one pointer per chunk.
const TABLE_BYTES: usize = CHUNKS * core::mem::size_of::<usize>();
/// Set in [`AddressMap`]'s state word when it holds the chunk table (else the flat
/// entries); both are at least page-aligned.
const CHUNKED: usize = 1;

/// The entry of a slice that is not ours.
pub const ENTRY_FOREIGN: u64 = 0;
/// The entry of a slice of one of our segments that is not part of a live slab (the
/// metadata slice, a free slice, a closed slab).
pub const ENTRY_SEGMENT: u64 = 1;
/// Set in the entries of a slab its owner marked full (see [`OwnerTag`]): the bit above
/// every user-space address.
pub const FULL_FLAG: u64 = 1 << ADDRESS_BITS;
/// Owner tags are multiples of this; entries below it are never a live slab's.
pub const TAG_UNIT: u64 = FULL_FLAG << 1;
/// Entries from `ENTRY_SEGMENT + 1` up to below this count the large blocks whose user
/// pointer lies in the slice (at most `LARGE_COUNT_END - 2` of them).
pub const LARGE_COUNT_END: u64 = 1 << 14;
/// The bits of a live slab's entry below [`FULL_FLAG`]: the address of the slab's record
/// (see [`crate::Segment::slab_at`]). Records lie in published segments, all below
/// `1 << ADDRESS_BITS` ([`AddressMap::publish_segment`] refuses others).
pub const RECORD_MASK: u64 = FULL_FLAG - 1;

static_assertions::const_assert!(MAP_BYTES.is_multiple_of(COMMIT_CHUNK * 64));

/// What an address's slice holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Region {
    /// Not ours.
    Foreign,
    /// Inside a segment of ours.
    Segment,
    /// At least one large block's user pointer lies in this slice.
    Large,
}

impl Region {
    /// What a slice whose map entry is `entry` holds.
    #[inline(always)]
    pub const fn of(entry: u64) -> Region {
        match entry {
            ENTRY_FOREIGN => Region::Foreign,
            e if e == ENTRY_SEGMENT || e >= TAG_UNIT => Region::Segment,
            _ => Region::Large,
        }
    }
}

/// The map tag of a slab owner: a nonzero multiple of [`TAG_UNIT`], unique among live
/// owners. Every slice of a live slab has the entry `tag + record`, where `record` is the
/// address of the slab's record (below [`FULL_FLAG`]), plus [`FULL_FLAG`] while the owner
/// has set the slab aside as full or some of its blocks are parked (see
/// `SlabHeap::sweep_sparse`). So `entry ^ tag < FULL_FLAG` holds exactly for the owner's
/// live slabs that are not full, and is then the record's address: one load, one xor and
/// one compare prove "ours, live, not full" on the free fast path and give the slab
/// without touching the segment's metadata first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OwnerTag(u64);

impl OwnerTag {
    /// Most distinct tags (the 16 bits above [`FULL_FLAG`]).
    pub const MAX_ID: u32 = (u64::MAX / TAG_UNIT) as u32;

    /// The tag of owner number `id` (1 ..= [`MAX_ID`](Self::MAX_ID)).
    pub const fn new(id: u32) -> Option<OwnerTag> {
        if id == 0 || id > Self::MAX_ID {
            None
        } else {
            Some(OwnerTag(id as u64 * TAG_UNIT))
        }
    }
    /// The tag's value (what entries are compared against).
    pub const fn get(self) -> u64 {
        self.0
    }
    /// The entry of this owner's live slab whose record is at address `record` (below
    /// [`FULL_FLAG`]), `full` or not.
    pub const fn entry(self, record: usize, full: bool) -> u64 {
        self.0 + (record as u64 & RECORD_MASK) + if full { FULL_FLAG } else { 0 }
    }
    /// The record address of an entry of this owner's live slab that is not full, if
    /// `entry` is one.
    pub const fn record_of(self, entry: u64) -> Option<usize> {
        if entry ^ self.0 < FULL_FLAG {
            Some((entry ^ self.0) as usize)
        } else {
            None
        }
    }
}

/// The record address of a live slab whose slice has map entry `entry`, whoever owns it
/// and full or not; `None` for any other entry (foreign, segment, large).
///
/// ```
/// use superslab::{slab_record, OwnerTag, ENTRY_SEGMENT};
/// let record = 0x7f12_3440_0280;
/// assert_eq!(slab_record(OwnerTag::new(3).unwrap().entry(record, true)), Some(record));
/// assert_eq!(slab_record(ENTRY_SEGMENT), None);
/// ```
#[inline(always)]
pub const fn slab_record(entry: u64) -> Option<usize> {
    if entry >= TAG_UNIT {
        Some((entry & RECORD_MASK) as usize)
    } else {
        None
    }
}

/// The owner tag carried by `entry`: the tag of its slab's owner for a live slab's entry,
/// 0 for any other.
#[inline(always)]
pub const fn owner_tag_bits(entry: u64) -> u64 {
    entry & !(TAG_UNIT - 1)
}

/// One 64-bit entry per 64 KiB slice of the address space:
///
/// | entry | meaning |
/// | --- | --- |
/// | `0` ([`ENTRY_FOREIGN`]) | not ours |
/// | `1` ([`ENTRY_SEGMENT`]) | a slice of one of our segments outside any live slab |
/// | `2 ..` [`LARGE_COUNT_END`] | `1 +` the number of large blocks whose user pointer lies in the slice |
/// | [`OwnerTag::entry`] | a slice of a live slab: its owner's tag plus its record's address |
///
/// The entries (16 GiB of address space) are reserved on first use with
/// [`PageSource::reserve`]: nothing is charged for them, untouched parts read zero from the
/// shared zero page, and only the 64 KiB pieces that describe our memory are committed
/// (one per 512 MiB of addresses used). Where the reservation is refused (an address-space
/// limit below it), the map is *chunked* instead: a 2 MiB table of pointers to the same
/// 64 KiB pieces, each mapped when first written. Lookups work the same through
/// [`entry`](Self::entry) and [`region`](Self::region), but [`entries`](Self::entries) is
/// then empty, so fast paths that index the flat entries fall through to them. A map that
/// can be neither is empty: every lookup says foreign and every publication fails.
///
/// Ordering: entries are published with `Release` after what they describe is ready; a
/// lookup may be `Relaxed` because the pointer being looked up reached the caller
/// through whatever synchronisation handed over the block, which happens after the
/// publication.
///
/// ```
/// use os_pages::MmapPages;
/// use superslab::{AddressMap, Region, ADDRESS_BITS, SEGMENT_SIZE};
/// static MAP: AddressMap = AddressMap::new();
///
/// let seg = 64 * SEGMENT_SIZE; // a segment-aligned address
/// assert!(MAP.publish_segment(seg, &MmapPages));
/// assert_eq!(MAP.region(seg + 12345), Region::Segment);
/// assert_eq!(MAP.region(seg + SEGMENT_SIZE), Region::Foreign);
/// MAP.retract_segment(seg);
/// assert_eq!(MAP.region(seg), Region::Foreign);
///
/// let large = seg + 4096; // a large block's user pointer
/// assert!(MAP.add_large(large, &MmapPages));
/// assert_eq!(MAP.region(seg), Region::Large); // the whole slice may hold large blocks
/// MAP.remove_large(large);
/// assert_eq!(MAP.region(seg), Region::Foreign);
/// assert_eq!(MAP.region(1 << ADDRESS_BITS), Region::Foreign); // outside the map
/// ```
pub struct AddressMap {
    /// 0 before the first reservation; then, set once with one CAS (no lock, nothing to
    /// finish after a `fork`), the flat entries' address, or the chunk table's address
    /// (an array of [`CHUNKS`] pointers to chunks of [`CHUNK_ENTRIES`] entries) with
    /// [`CHUNKED`] set.
    state: AtomicUsize,
    /// Bit i: the i-th [`COMMIT_CHUNK`] of the flat entries is writable.
    committed: [AtomicU64; COMMIT_WORDS],
}

impl AddressMap {
    /// An empty map (all foreign), reserved on first publication.
    pub const fn new() -> Self {
        AddressMap {
            state: AtomicUsize::new(0),
            committed: [const { AtomicU64::new(0) }; COMMIT_WORDS],
        }
    }

    /// Whether the map is chunked (see the type's docs).
    pub fn is_chunked(&self) -> bool {
        self.state.load(Ordering::Acquire) & CHUNKED != 0
    }

    /// The flat entries, once reserved: `entries()[addr >> SLICE_SHIFT]` is `addr`'s
    /// entry. Empty before the first publication, if the reservation failed, and for a
    /// chunked map (whose fast paths must fall back to [`entry`](Self::entry)). The slice
    /// stays valid for the life of the process, so fast paths may keep a copy of it.
    #[inline(always)]
    pub fn entries(&self) -> &'static [AtomicU64] {
        let s = self.state.load(Ordering::Acquire);
        if s == 0 || s & CHUNKED != 0 {
            return &[];
        }
        let p = s as *const AtomicU64;
        // SAFETY: a reservation of MAP_ENTRIES entries, never unmapped; untouched parts
        // read zero, and atomics of zero are valid.
        unsafe { core::slice::from_raw_parts(p, MAP_ENTRIES) }
    }

    /// Reserves the entries if no one has (idempotent): flat, else chunked; false if the
    /// OS refuses both. One CAS decides the form for the life of the map: a thread that
    /// loses the race gives its own reservation back.
    pub fn reserve(&self, pages: &impl PageSource) -> bool {
        if self.state.load(Ordering::Acquire) != 0 {
            return true;
        }
        // Fresh mappings read zero: every entry is foreign, every chunk pointer null.
        let (p, bytes, form) = if let Some(p) = pages.reserve(MAP_BYTES) {
            (p, MAP_BYTES, 0)
        } else if let Some(t) = pages.map(TABLE_BYTES, 4096) {
            (t, TABLE_BYTES, CHUNKED)
        } else {
            return false;
        };
        let won = self.state.compare_exchange(
            0,
            p.as_ptr() as usize | form,
            Ordering::AcqRel,
            Ordering::Acquire,
        );
        if won.is_err() {
            // Another thread reserved first; ours was never used.
            // SAFETY: our own fresh mapping.
            unsafe { pages.unmap(p, bytes) };
        }
        true
    }

    /// `addr`'s entry (`ENTRY_FOREIGN` outside the map or before it is reserved).
    #[inline(always)]
    pub fn entry(&self, addr: usize) -> u64 {
        let i = addr >> SLICE_SHIFT;
        let flat = self.entries();
        if !flat.is_empty() {
            return flat
                .get(i)
                .map_or(ENTRY_FOREIGN, |e| e.load(Ordering::Relaxed));
        }
        self.chunked_entry(i)
    }

    /// [`entry`](Self::entry) of a chunked (or empty) map.
    #[cold]
    #[inline(never)]
    fn chunked_entry(&self, i: usize) -> u64 {
        self.chunk(i, None).map_or(ENTRY_FOREIGN, |c| {
            c[i % CHUNK_ENTRIES].load(Ordering::Relaxed)
        })
    }

    /// The chunk holding entry `i` of a chunked map: mapped from `pages` if it is not yet
    /// and `pages` is given; `None` outside the map, for a flat or empty map, or if the
    /// OS refuses.
    fn chunk(&self, i: usize, pages: Option<&dyn ChunkPages>) -> Option<&'static [AtomicU64]> {
        let s = self.state.load(Ordering::Acquire);
        if s & CHUNKED == 0 || i >= MAP_ENTRIES {
            return None;
        }
        let table = (s & !CHUNKED) as *const AtomicPtr<AtomicU64>;
        // SAFETY: the table holds CHUNKS pointers, never unmapped; `i / CHUNK_ENTRIES` is
        // below CHUNKS.
        let slot = unsafe { &*table.add(i / CHUNK_ENTRIES) };
        let mut c = slot.load(Ordering::Acquire);
        if c.is_null() {
            let fresh = pages?.map_chunk()?;
            c = match slot.compare_exchange(
                null_mut(),
                fresh.as_ptr().cast(),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => fresh.as_ptr().cast(),
                Err(theirs) => {
                    // Another thread mapped this chunk first; ours was never used.
                    // SAFETY: our own fresh mapping.
                    unsafe { pages?.unmap_chunk(fresh) };
                    theirs
                }
            };
        }
        // SAFETY: a chunk of CHUNK_ENTRIES entries (zero when mapped: valid atomics),
        // never unmapped.
        Some(unsafe { core::slice::from_raw_parts(c, CHUNK_ENTRIES) })
    }

    /// The entries of slices `first .. first + n` if they lie in one chunk of the map as
    /// it is (nothing committed or mapped).
    fn existing(&self, first: usize, n: usize) -> Option<&'static [AtomicU64]> {
        let end = first.checked_add(n)?;
        let flat = self.entries();
        if !flat.is_empty() {
            return flat.get(first..end);
        }
        self.chunked_range(first, n, None)
    }

    /// The entries of slices `first .. first + n` of a chunked map if they lie in one chunk,
    /// which is mapped if `pages` is given.
    fn chunked_range(
        &self,
        first: usize,
        n: usize,
        pages: Option<&dyn ChunkPages>,
    ) -> Option<&'static [AtomicU64]> {
        let end = first.checked_add(n)?;
        if n == 0 || first / CHUNK_ENTRIES != (end - 1) / CHUNK_ENTRIES {
            return None;
        }
        let off = first % CHUNK_ENTRIES;
        self.chunk(first, pages)?.get(off..off + n)
    }

    /// Classifies an address with one load (three in a chunked map).
    #[inline(always)]
    pub fn region(&self, addr: usize) -> Region {
        Region::of(self.entry(addr))
    }

    /// The writable entries for slices `first .. first + n`, committing them if needed;
    /// `None` outside the map or if the OS refuses.
    fn writable(&self, first: usize, n: usize, pages: &impl PageSource) -> Option<&[AtomicU64]> {
        if !self.reserve(pages) {
            return None;
        }
        if self.is_chunked() {
            return self.chunked_range(first, n, Some(&pages));
        }
        let all = self.entries();
        let range = all.get(first..first.checked_add(n)?)?;
        for chunk in first / CHUNK_ENTRIES..=(first + n - 1) / CHUNK_ENTRIES {
            let (word, bit) = (&self.committed[chunk / 64], 1u64 << (chunk % 64));
            if word.load(Ordering::Acquire) & bit != 0 {
                continue;
            }
            // SAFETY: the chunk lies inside our reservation (`chunk * CHUNK_ENTRIES` is a valid
            // index); committing it twice (a race) is harmless.
            let ok = unsafe {
                let p = NonNull::new_unchecked(all.as_ptr().add(chunk * CHUNK_ENTRIES) as *mut u8);
                pages.commit(p, COMMIT_CHUNK)
            };
            if !ok {
                return None;
            }
            word.fetch_or(bit, Ordering::AcqRel);
        }
        Some(range)
    }

    /// Marks every slice of the segment at `seg` as a segment slice. False if the map
    /// cannot describe it (out of range, or the OS refused memory for the map).
    pub fn publish_segment(&self, seg: usize, pages: &impl PageSource) -> bool {
        debug_assert!(seg.is_multiple_of(SEGMENT_SIZE));
        let Some(entries) = self.writable(seg >> SLICE_SHIFT, SLICES, pages) else {
            return false;
        };
        for e in entries {
            e.store(ENTRY_SEGMENT, Ordering::Release);
        }
        true
    }

    /// Marks the segment at `seg` as foreign again (before unmapping).
    pub fn retract_segment(&self, seg: usize) {
        self.store_slices(seg, SLICES, ENTRY_FOREIGN);
    }

    /// Sets the entries of the `n` slices from `start` (a published segment's slices) to
    /// `entry`: [`OwnerTag::entry`] when a slab opens, [`ENTRY_SEGMENT`] when it closes.
    pub fn set_slices(&self, start: usize, n: usize, entry: u64) {
        self.store_slices(start, n, entry);
    }

    fn store_slices(&self, start: usize, n: usize, entry: u64) {
        if let Some(entries) = self.existing(start >> SLICE_SHIFT, n) {
            for e in entries {
                e.store(entry, Ordering::Release);
            }
        }
    }

    /// Counts one more large block whose user pointer is `user`. False if the address is
    /// outside the map, in a segment, or the slice cannot count more.
    pub fn add_large(&self, user: usize, pages: &impl PageSource) -> bool {
        let Some(e) = self.writable(user >> SLICE_SHIFT, 1, pages) else {
            return false;
        };
        e[0].fetch_update(Ordering::Release, Ordering::Relaxed, |v| match v {
            ENTRY_FOREIGN => Some(ENTRY_SEGMENT + 1),
            v if v > ENTRY_SEGMENT && v < LARGE_COUNT_END - 1 => Some(v + 1),
            _ => None,
        })
        .is_ok()
    }

    /// Counts one large block less in `user`'s slice.
    pub fn remove_large(&self, user: usize) {
        if let Some(e) = self.existing(user >> SLICE_SHIFT, 1) {
            let _ = e[0].fetch_update(Ordering::Release, Ordering::Relaxed, |v| match v {
                v if v == ENTRY_SEGMENT + 1 => Some(ENTRY_FOREIGN),
                v if v > ENTRY_SEGMENT + 1 && v < LARGE_COUNT_END => Some(v - 1),
                _ => None,
            });
        }
    }
}

/// Maps and unmaps the chunks of a chunked map (object-safe, over any [`PageSource`]).
trait ChunkPages {
    fn map_chunk(&self) -> Option<NonNull<u8>>;
    /// # Safety
    /// `p` came from `map_chunk` and is not in use.
    unsafe fn unmap_chunk(&self, p: NonNull<u8>);
}

impl<P: PageSource> ChunkPages for &P {
    fn map_chunk(&self) -> Option<NonNull<u8>> {
        self.map(COMMIT_CHUNK, 4096)
    }
    unsafe fn unmap_chunk(&self, p: NonNull<u8>) {
        // SAFETY: forwarded.
        unsafe { self.unmap(p, COMMIT_CHUNK) }
    }
}

impl Default for AddressMap {
    fn default() -> Self {
        Self::new()
    }
}
