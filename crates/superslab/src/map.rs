//! The address map: which granules of the address space hold our memory.

use crate::SEGMENT_SHIFT;
use core::sync::atomic::{AtomicU16, Ordering};

/// Bits of user-space addresses covered (x86-64 and aarch64 Linux user space: 47).
pub const ADDRESS_BITS: usize = 47;
const ENTRIES: usize = 1 << (ADDRESS_BITS - SEGMENT_SHIFT);
const SEGMENT: u16 = u16::MAX;

/// What an address's granule holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Region {
    /// Not ours.
    Foreign,
    /// Inside a segment of ours.
    Segment,
    /// At least one large block's user pointer lies in this granule.
    Large,
}

/// One 16-bit entry per [`crate::SEGMENT_SIZE`] granule of the address space: `0` not
/// ours, `u16::MAX` a segment, otherwise the number of large blocks whose user pointer
/// lies in the granule. 64 MiB of virtual memory, zero until touched (a static in `.bss`
/// is enough: only the pages of granules we use become resident).
///
/// Ordering: entries are published with `Release` after what they describe is ready; a
/// lookup may be `Relaxed` because the pointer being looked up reached the caller
/// through whatever synchronisation handed over the block, which happens after the
/// publication.
///
/// ```
/// use superslab::{AddressMap, Region, ADDRESS_BITS, SEGMENT_SIZE};
/// static MAP: AddressMap = AddressMap::new();
///
/// let seg = 64 * SEGMENT_SIZE; // a segment-aligned address
/// MAP.publish_segment(seg);
/// assert_eq!(MAP.region(seg + 12345), Region::Segment);
/// assert_eq!(MAP.region(seg + SEGMENT_SIZE), Region::Foreign);
/// MAP.retract_segment(seg);
/// assert_eq!(MAP.region(seg), Region::Foreign);
///
/// let large = seg + 4096; // a large block's user pointer
/// assert!(MAP.add_large(large));
/// assert_eq!(MAP.region(seg), Region::Large); // the whole granule may hold large blocks
/// MAP.remove_large(large);
/// assert_eq!(MAP.region(seg), Region::Foreign);
/// assert_eq!(MAP.region(1 << ADDRESS_BITS), Region::Foreign); // outside the map
/// ```
pub struct AddressMap {
    entries: [AtomicU16; ENTRIES],
}

impl AddressMap {
    /// An empty map (all foreign).
    pub const fn new() -> Self {
        // SAFETY: an array of AtomicU16 is valid when all-zero.
        unsafe { core::mem::zeroed() }
    }

    #[inline(always)]
    fn entry(&self, addr: usize) -> Option<&AtomicU16> {
        self.entries.get(addr >> SEGMENT_SHIFT)
    }

    /// Classifies an address with one load.
    #[inline(always)]
    pub fn region(&self, addr: usize) -> Region {
        match self.entry(addr).map_or(0, |e| e.load(Ordering::Relaxed)) {
            0 => Region::Foreign,
            SEGMENT => Region::Segment,
            _ => Region::Large,
        }
    }

    /// Marks the granule of the segment at `seg` as a segment.
    pub fn publish_segment(&self, seg: usize) {
        if let Some(e) = self.entry(seg) {
            e.store(SEGMENT, Ordering::Release);
        }
    }

    /// Marks the granule of the segment at `seg` as foreign again (before unmapping).
    pub fn retract_segment(&self, seg: usize) {
        if let Some(e) = self.entry(seg) {
            e.store(0, Ordering::Release);
        }
    }

    /// Counts one more large block whose user pointer is `user`. False if the address is
    /// outside the map or the granule cannot count more.
    pub fn add_large(&self, user: usize) -> bool {
        let Some(e) = self.entry(user) else {
            return false;
        };
        e.fetch_update(Ordering::Release, Ordering::Relaxed, |v| {
            if v < SEGMENT - 1 {
                Some(v + 1)
            } else {
                None
            }
        })
        .is_ok()
    }

    /// Counts one large block less in `user`'s granule.
    pub fn remove_large(&self, user: usize) {
        if let Some(e) = self.entry(user) {
            let _ = e.fetch_update(Ordering::Release, Ordering::Relaxed, |v| {
                if v > 0 && v < SEGMENT {
                    Some(v - 1)
                } else {
                    None
                }
            });
        }
    }
}

impl Default for AddressMap {
    fn default() -> Self {
        Self::new()
    }
}
