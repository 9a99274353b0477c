extern crate std;
use super::*;
use std::fmt::Write;
use std::string::String;

#[test]
fn every_size_gets_the_smallest_fitting_class() {
    for size in 0..=MAX_CLASS_SIZE {
        let c = class_of(size).unwrap();
        assert_eq!(const_class_of(size), Some(c), "size {size}");
        assert!(c.block_size() >= size, "size {size}");
        if c.index() > 0 {
            let below = SizeClass::new(c.index() - 1).unwrap();
            assert!(
                below.block_size() < size.max(1),
                "size {size} could use class {}",
                below.index()
            );
        }
    }
    assert_eq!(class_of(MAX_CLASS_SIZE + 1), None);
    assert_eq!(class_of(usize::MAX), None);
    assert_eq!(const_class_of(MAX_CLASS_SIZE + 1), None);
    assert_eq!(const_class_of(usize::MAX), None);
}

#[test]
fn waste_is_at_most_an_eighth_above_128_bytes() {
    for size in 129..=MAX_CLASS_SIZE {
        let b = class_of(size).unwrap().block_size();
        assert!((b - size) * 8 <= size, "size {size} -> {b}");
    }
}

#[test]
fn strides_keep_16_byte_alignment_and_slabs_hold_blocks() {
    for c in SizeClass::all() {
        for (stride, per) in [
            (Plain::stride(c), Plain::blocks_per_slab(c)),
            (Guarded::stride(c), Guarded::blocks_per_slab(c)),
        ] {
            assert_eq!(stride % 16, 0);
            assert!(per >= 1 && per * stride <= c.slab_bytes());
        }
        if c.block_size() <= 32 * 1024 {
            assert!(Plain::blocks_per_slab(c) >= 8, "class {}", c.index());
        }
    }
}

#[test]
fn class_table_snapshot() {
    let mut s = String::new();
    writeln!(s, "class  block  slab_KiB  blocks(plain)  blocks(guarded)").unwrap();
    for c in SizeClass::all() {
        writeln!(
            s,
            "{:>5} {:>6} {:>9} {:>14} {:>16}",
            c.index(),
            c.block_size(),
            c.slab_bytes() / 1024,
            Plain::blocks_per_slab(c),
            Guarded::blocks_per_slab(c)
        )
        .unwrap();
    }
    insta::assert_snapshot!(s);
}
