//! What the model tests of the whole allocator share.

use proptest::prelude::*;
use std::collections::BTreeMap;

/// Fails if two live blocks' usable ranges overlap (each byte has one owner): `blocks`
/// gives each live block's address.
pub fn no_overlap(blocks: impl Iterator<Item = *mut u8>) -> Result<(), TestCaseError> {
    let mut spans: BTreeMap<usize, usize> = BTreeMap::new();
    for p in blocks {
        // SAFETY: (caller) a live block of ours.
        let usable = unsafe { hakmem::API.usable_size(p) };
        spans.insert(p as usize, usable.max(1));
    }
    let mut end = 0;
    for (&start, &len) in &spans {
        prop_assert!(start >= end, "blocks overlap at {:#x}", start);
        end = start + len;
    }
    Ok(())
}
