//! The address map: one entry per 64 KiB slice of the address space, saying whether the
//! slice is ours and, for a slice of a live slab, which owner and class it belongs to.

use crate::{PageSource, SEGMENT_SIZE, SLICES, SLICE_SHIFT};
use core::ptr::{null_mut, NonNull};
use core::sync::atomic::{AtomicPtr, AtomicU32, AtomicU64, Ordering};
use ptr_conversion::SizeClass;
use tiny_layout::CLASS_COUNT;

/// Bits of user-space addresses covered (x86-64 and aarch64 Linux user space: 47).
pub const ADDRESS_BITS: usize = 47;
/// Entries: one per [`crate::SLICE_SIZE`] granule below `1 << ADDRESS_BITS`.
pub const MAP_ENTRIES: usize = 1 << (ADDRESS_BITS - SLICE_SHIFT);
const MAP_BYTES: usize = MAP_ENTRIES * core::mem::size_of::<AtomicU32>();
/// Map bytes made writable at once (one bit of `committed`): covers 1 GiB of addresses.
const COMMIT_CHUNK: usize = 64 << 10;
const COMMIT_WORDS: usize = MAP_BYTES / COMMIT_CHUNK / 64;

/// The entry of a slice that is not ours.
pub const ENTRY_FOREIGN: u32 = 0;
/// The entry of a slice of one of our segments that is not part of a live slab (the
/// metadata slice, a free slice, a closed slab).
pub const ENTRY_SEGMENT: u32 = 1;
/// Owner tags are multiples of this; entries below it are never a live slab's.
pub const TAG_UNIT: u32 = 1 << 12;
/// A live slab's entry is `tag + class index × CLASS_STRIDE`: an owner that keeps a
/// 32-byte record per class at the start of its state gets the record's offset from
/// `entry ^ tag` (see [`OwnerTag`]).
pub const CLASS_STRIDE: u32 = 32;

static_assertions::const_assert!(CLASS_COUNT * CLASS_STRIDE as usize <= TAG_UNIT as usize);
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

/// The map tag of a slab owner: a nonzero multiple of [`TAG_UNIT`], unique among live
/// owners. A live slab of class `c` has the entry `tag + c × CLASS_STRIDE` on every one of
/// its slices, so `entry ^ tag < TAG_UNIT` holds exactly for the owner's live slabs and
/// then gives the class's record offset: one load and one compare prove "ours, live,
/// this class" on the free fast path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OwnerTag(u32);

impl OwnerTag {
    /// Most distinct tags.
    pub const MAX_ID: u32 = u32::MAX / TAG_UNIT;

    /// The tag of owner number `id` (1 ..= [`MAX_ID`](Self::MAX_ID)).
    pub const fn new(id: u32) -> Option<OwnerTag> {
        if id == 0 || id > Self::MAX_ID {
            None
        } else {
            Some(OwnerTag(id * TAG_UNIT))
        }
    }
    /// The tag's value (what entries are compared against).
    pub const fn get(self) -> u32 {
        self.0
    }
    /// The entry of this owner's live slabs of class `c`.
    pub const fn entry(self, c: SizeClass) -> u32 {
        self.0 + c.index() as u32 * CLASS_STRIDE
    }
    /// The class of an entry of this owner's live slab, if `entry` is one.
    pub fn class_of(self, entry: u32) -> Option<SizeClass> {
        let off = entry ^ self.0;
        if off < TAG_UNIT {
            SizeClass::new((off / CLASS_STRIDE) as usize)
        } else {
            None
        }
    }
}

/// The class of a live slab whose slice has map entry `entry`, whoever owns it; `None` for
/// any other entry (foreign, segment, large). Owner tags are multiples of [`TAG_UNIT`], so
/// the class is in the entry's low bits.
///
/// ```
/// use superslab::{slab_class, OwnerTag, ENTRY_SEGMENT};
/// use tiny_layout::SizeClass;
/// let c = SizeClass::new(5).unwrap();
/// assert_eq!(slab_class(OwnerTag::new(3).unwrap().entry(c)), Some(c));
/// assert_eq!(slab_class(ENTRY_SEGMENT), None);
/// ```
#[inline(always)]
pub const fn slab_class(entry: u32) -> Option<SizeClass> {
    if entry >= TAG_UNIT {
        SizeClass::new(((entry % TAG_UNIT) / CLASS_STRIDE) as usize)
    } else {
        None
    }
}

/// One 32-bit entry per 64 KiB slice of the address space:
///
/// | entry | meaning |
/// | --- | --- |
/// | `0` ([`ENTRY_FOREIGN`]) | not ours |
/// | `1` ([`ENTRY_SEGMENT`]) | a slice of one of our segments outside any live slab |
/// | `2 ..` [`TAG_UNIT`] | `1 +` the number of large blocks whose user pointer lies in the slice |
/// | [`OwnerTag::entry`] | a slice of a live slab: its owner's tag plus its class |
///
/// The entries (8 GiB of address space) are reserved on first use with
/// [`PageSource::reserve`]: nothing is charged for them, untouched parts read zero from the
/// shared zero page, and only the 64 KiB pieces that describe our memory are committed
/// (one per GiB of addresses used). A map that cannot be reserved is empty: every lookup
/// says foreign and every publication fails.
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
    entries: AtomicPtr<AtomicU32>,
    /// Bit i: the i-th [`COMMIT_CHUNK`] of the entries is writable.
    committed: [AtomicU64; COMMIT_WORDS],
}

impl AddressMap {
    /// An empty map (all foreign), reserved on first publication.
    pub const fn new() -> Self {
        AddressMap {
            entries: AtomicPtr::new(null_mut()),
            committed: [const { AtomicU64::new(0) }; COMMIT_WORDS],
        }
    }

    /// The entries, once reserved: `entries()[addr >> SLICE_SHIFT]` is `addr`'s entry.
    /// Empty before the first publication (or if the reservation failed). The slice stays
    /// valid for the life of the process, so fast paths may keep a copy of it.
    #[inline(always)]
    pub fn entries(&self) -> &'static [AtomicU32] {
        let p = self.entries.load(Ordering::Acquire);
        if p.is_null() {
            return &[];
        }
        // SAFETY: a reservation of MAP_ENTRIES entries, never unmapped; untouched parts
        // read zero, and atomics of zero are valid.
        unsafe { core::slice::from_raw_parts(p, MAP_ENTRIES) }
    }

    /// Reserves the entries if no one has (idempotent); false if the OS refuses.
    pub fn reserve(&self, pages: &impl PageSource) -> bool {
        if !self.entries.load(Ordering::Acquire).is_null() {
            return true;
        }
        let Some(p) = pages.reserve(MAP_BYTES) else {
            return false;
        };
        if self
            .entries
            .compare_exchange(
                null_mut(),
                p.as_ptr().cast(),
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_err()
        {
            // Another thread reserved first; ours was never used.
            // SAFETY: our own fresh reservation.
            unsafe { pages.unmap(p, MAP_BYTES) };
        }
        true
    }

    /// `addr`'s entry (`ENTRY_FOREIGN` outside the map or before it is reserved).
    #[inline(always)]
    pub fn entry(&self, addr: usize) -> u32 {
        self.entries()
            .get(addr >> SLICE_SHIFT)
            .map_or(ENTRY_FOREIGN, |e| e.load(Ordering::Relaxed))
    }

    /// Classifies an address with one load.
    #[inline(always)]
    pub fn region(&self, addr: usize) -> Region {
        match self.entry(addr) {
            ENTRY_FOREIGN => Region::Foreign,
            e if e == ENTRY_SEGMENT || e >= TAG_UNIT => Region::Segment,
            _ => Region::Large,
        }
    }

    /// The writable entries for slices `first .. first + n`, committing them if needed;
    /// `None` outside the map or if the OS refuses.
    fn writable(&self, first: usize, n: usize, pages: &impl PageSource) -> Option<&[AtomicU32]> {
        if !self.reserve(pages) {
            return None;
        }
        let all = self.entries();
        let range = all.get(first..first.checked_add(n)?)?;
        let per_chunk = COMMIT_CHUNK / core::mem::size_of::<AtomicU32>();
        for chunk in first / per_chunk..=(first + n - 1) / per_chunk {
            let (word, bit) = (&self.committed[chunk / 64], 1u64 << (chunk % 64));
            if word.load(Ordering::Acquire) & bit != 0 {
                continue;
            }
            // SAFETY: the chunk lies inside our reservation (`chunk * per_chunk` is a valid
            // index); committing it twice (a race) is harmless.
            let ok = unsafe {
                let p = NonNull::new_unchecked(all.as_ptr().add(chunk * per_chunk) as *mut u8);
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
    pub fn set_slices(&self, start: usize, n: usize, entry: u32) {
        self.store_slices(start, n, entry);
    }

    fn store_slices(&self, start: usize, n: usize, entry: u32) {
        let first = start >> SLICE_SHIFT;
        if let Some(entries) = self.entries().get(first..first + n) {
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
            v if v > ENTRY_SEGMENT && v < TAG_UNIT - 1 => Some(v + 1),
            _ => None,
        })
        .is_ok()
    }

    /// Counts one large block less in `user`'s slice.
    pub fn remove_large(&self, user: usize) {
        if let Some(e) = self.entries().get(user >> SLICE_SHIFT) {
            let _ = e.fetch_update(Ordering::Release, Ordering::Relaxed, |v| match v {
                v if v == ENTRY_SEGMENT + 1 => Some(ENTRY_FOREIGN),
                v if v > ENTRY_SEGMENT + 1 && v < TAG_UNIT => Some(v - 1),
                _ => None,
            });
        }
    }
}

impl Default for AddressMap {
    fn default() -> Self {
        Self::new()
    }
}
