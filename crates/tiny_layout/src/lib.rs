//! # tiny_layout: size classes and block geometry
//!
//! The single source of truth for every number that describes a small block:
//! size → class, class → block size, stride, header size, free-list link offset,
//! slab size and blocks per slab. No other crate holds a copy of any of them; they
//! ask this crate (through [`BlockLayout`] and the class functions below).
//!
//! ## Invariants owned here (checked at compile time)
//! - Classes are strictly increasing multiples of 16 bytes, so every block start is
//!   16-byte aligned whenever its slab start is (malloc's ABI).
//! - Up to 128 bytes classes are 16 bytes apart; above 128 bytes there are eight classes
//!   per doubling, so a request never wastes more than 12.5% of its size.
//! - `class_of(size)` returns the smallest class whose block holds `size` bytes.
//! - A layout's stride (header + block) is a multiple of 16, its link offset lies inside
//!   the block and after the header, and every slab holds at least one block.
//!
//! ## Two layouts, one table
//! [`Plain`] has no per-block header: the class of a block is known from its slab's
//! metadata. [`Guarded`] (the checked build) puts a 16-byte header before each block.
//! Both share the class table; a pointer type is tied to its layout by the type system
//! (see `ptr_conversion`), so blocks of the two layouts can never be mixed.
//!
//! ## Example
//! ```
//! use tiny_layout::{class_of, BlockLayout, Guarded, Plain, SizeClass, MAX_CLASS_SIZE};
//!
//! let c: SizeClass = class_of(100).unwrap(); // the smallest class holding 100 bytes
//! assert_eq!(c.block_size(), 112);
//! assert_eq!(c.slab_bytes(), 64 * 1024);
//! assert_eq!(Plain::stride(c), 112); // no header
//! assert_eq!(Guarded::stride(c), 128); // 16-byte header
//! assert_eq!(Plain::blocks_per_slab(c), 65536 / 112);
//! assert!(class_of(MAX_CLASS_SIZE + 1).is_none()); // the large tier's
//! ```
#![no_std]
#![warn(missing_docs)]

use static_assertions::const_assert;

/// Number of size classes.
pub const CLASS_COUNT: usize = 96;
/// Largest request served from size classes; larger requests are the large tier's.
pub const MAX_CLASS_SIZE: usize = 256 * 1024;
/// Requests up to this size are classified with one table lookup.
pub const LOOKUP_MAX: usize = 1024;
/// Alignment of every block start (and of every stride).
pub const BLOCK_ALIGN: usize = 16;
/// Smallest slab: slabs are whole multiples of this (64 KiB).
pub const MIN_SLAB_BYTES: usize = 64 * 1024;
/// Largest slab (1 MiB).
pub const MAX_SLAB_BYTES: usize = 1024 * 1024;

/// A size-class index, always `< CLASS_COUNT`.
///
/// The only constructors are [`SizeClass::new`] (checked), [`class_of`] and
/// [`SizeClass::all`], so holding a `SizeClass` proves the index is in range and per-class
/// arrays of [`CLASS_COUNT`] entries can be indexed without a bounds check.
///
/// ```
/// use tiny_layout::{SizeClass, CLASS_COUNT};
/// let c = SizeClass::new(8).unwrap();
/// assert_eq!((c.index(), c.block_size()), (8, 144)); // 128 + 128/8
/// assert!(SizeClass::new(CLASS_COUNT).is_none());
/// assert_eq!(SizeClass::all().count(), CLASS_COUNT);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SizeClass(u8);

impl SizeClass {
    /// The class with index `i`, if it exists.
    #[inline]
    pub const fn new(i: usize) -> Option<SizeClass> {
        if i < CLASS_COUNT {
            Some(SizeClass(i as u8))
        } else {
            None
        }
    }
    /// The class with index `i`, unchecked: for indices that come from a table or a
    /// record built from real classes, on paths where the check is measurable.
    ///
    /// # Safety
    /// `i < CLASS_COUNT`.
    #[inline(always)]
    pub const unsafe fn new_unchecked(i: usize) -> SizeClass {
        SizeClass(i as u8)
    }
    /// The index, `< CLASS_COUNT`.
    #[inline(always)]
    pub const fn index(self) -> usize {
        // SAFETY: every constructor checks `i < CLASS_COUNT` (or derives `i` from the
        // table, which has CLASS_COUNT entries); telling the compiler removes the bounds
        // checks (and their panic paths) from every per-class array access.
        unsafe { core::hint::assert_unchecked((self.0 as usize) < CLASS_COUNT) };
        self.0 as usize
    }
    /// Usable bytes of a block of this class.
    #[inline(always)]
    pub const fn block_size(self) -> usize {
        CLASS_SIZES[self.index()] as usize
    }
    /// Bytes of one slab of this class (a multiple of [`MIN_SLAB_BYTES`]).
    #[inline(always)]
    pub const fn slab_bytes(self) -> usize {
        slab_bytes_for(self.block_size())
    }
    /// Every class, smallest first.
    pub fn all() -> impl Iterator<Item = SizeClass> {
        (0..CLASS_COUNT).map(|i| SizeClass(i as u8))
    }
}

const fn class_size_at(i: usize) -> usize {
    if i < 8 {
        16 * (i + 1)
    } else {
        let k = 7 + (i - 8) / 8; // doubling 2^k .. 2^(k+1)
        let j = (i - 8) % 8 + 1;
        (1 << k) + j * (1 << (k - 3))
    }
}

const fn build_sizes() -> [u32; CLASS_COUNT] {
    let mut t = [0u32; CLASS_COUNT];
    let mut i = 0;
    while i < CLASS_COUNT {
        t[i] = class_size_at(i) as u32;
        i += 1;
    }
    t
}

/// Usable bytes per class.
const CLASS_SIZES: [u32; CLASS_COUNT] = build_sizes();

/// Class by formula (any size up to `MAX_CLASS_SIZE`).
const fn class_by_formula(size: usize) -> usize {
    if size <= 128 {
        if size == 0 {
            0
        } else {
            size.div_ceil(16) - 1
        }
    } else {
        let s = size - 1;
        let k = (usize::BITS - 1 - s.leading_zeros()) as usize; // 2^k <= s < 2^(k+1), k >= 7
        8 + (k - 7) * 8 + ((s >> (k - 3)) & 7)
    }
}

const fn build_lookup() -> [u8; LOOKUP_MAX / 16 + 1] {
    let mut t = [0u8; LOOKUP_MAX / 16 + 1];
    let mut i = 0;
    while i < t.len() {
        t[i] = class_by_formula(i * 16) as u8;
        i += 1;
    }
    t
}

/// `(size + 15) / 16` → class, for sizes up to [`LOOKUP_MAX`]. Every class boundary up
/// to 1 KiB is a multiple of 16, so the granule decides the class exactly.
static CLASS_LOOKUP: [u8; LOOKUP_MAX / 16 + 1] = build_lookup();

/// The smallest class holding `size` bytes (`size` 0 gets the smallest class), or `None`
/// when `size > MAX_CLASS_SIZE`.
///
/// Sizes up to [`LOOKUP_MAX`] take one table load; larger ones a few shifts.
///
/// ```
/// use tiny_layout::{class_of, MAX_CLASS_SIZE};
/// assert_eq!(class_of(0).unwrap().block_size(), 16);
/// assert_eq!(class_of(16).unwrap().block_size(), 16);
/// assert_eq!(class_of(17).unwrap().block_size(), 32);
/// assert_eq!(class_of(1025).unwrap().block_size(), 1152); // 1 KiB + 1 KiB/8
/// assert_eq!(class_of(MAX_CLASS_SIZE).unwrap().block_size(), MAX_CLASS_SIZE);
/// assert_eq!(class_of(MAX_CLASS_SIZE + 1), None);
/// ```
#[inline(always)]
pub fn class_of(size: usize) -> Option<SizeClass> {
    if size <= LOOKUP_MAX {
        // Index <= 64 by the bound just checked (the compiler sees it too).
        Some(SizeClass(CLASS_LOOKUP[(size + 15) >> 4]))
    } else if size <= MAX_CLASS_SIZE {
        Some(SizeClass(class_by_formula(size) as u8))
    } else {
        None
    }
}

/// [`class_of`] computed without its table, usable in `const` context (to build other
/// tables at compile time, such as a thread cache's size → slot table). A unit test checks
/// that both agree on every size up to [`MAX_CLASS_SIZE`] + 1.
///
/// ```
/// use tiny_layout::{class_of, const_class_of};
/// const C: Option<tiny_layout::SizeClass> = const_class_of(100);
/// assert_eq!(C, class_of(100));
/// ```
pub const fn const_class_of(size: usize) -> Option<SizeClass> {
    if size <= MAX_CLASS_SIZE {
        Some(SizeClass(class_by_formula(size) as u8))
    } else {
        None
    }
}

/// The slab size for blocks of `block_size`: at least eight blocks, a power of two
/// between [`MIN_SLAB_BYTES`] and [`MAX_SLAB_BYTES`].
const fn slab_bytes_for(block_size: usize) -> usize {
    let want = (block_size * 8).next_power_of_two();
    if want < MIN_SLAB_BYTES {
        MIN_SLAB_BYTES
    } else if want > MAX_SLAB_BYTES {
        MAX_SLAB_BYTES
    } else {
        want
    }
}

/// How blocks are laid out in memory: the contract other boxes depend on.
///
/// A block occupies `stride(c)` bytes starting at its BASE: `HEADER_SIZE` bytes of
/// header, then the user area of `block_size` bytes (then spare bytes, if the layout's
/// stride is longer). While a block is free, its
/// free-list link (one pointer) lives at `BASE + LINK_OFFSET`.
///
/// Implemented by [`Plain`] and [`Guarded`]; code generic over `L: BlockLayout` gets
/// every offset from `L`, so it cannot disagree with the layout it handles.
///
/// ```
/// use tiny_layout::{BlockLayout, Guarded, Plain, SizeClass};
/// fn user_offset<L: BlockLayout>() -> usize {
///     L::HEADER_SIZE
/// }
/// assert_eq!((user_offset::<Plain>(), user_offset::<Guarded>()), (0, 16));
/// let c = SizeClass::new(0).unwrap(); // 16-byte blocks
/// assert_eq!((Plain::stride(c), Guarded::stride(c)), (16, 32));
/// assert_eq!(Guarded::blocks_per_slab(c), 64 * 1024 / 32);
/// ```
pub trait BlockLayout: Copy + 'static {
    /// Bytes of per-block header before the user area (0 = no header).
    const HEADER_SIZE: usize;
    /// Offset from BASE of the free-list link; never overlaps the header.
    const LINK_OFFSET: usize;
    /// A short name for reports.
    const NAME: &'static str;
    /// Whether blocks carry a checked header and encoded free-list links (checked build).
    const CHECKED: bool;

    /// Bytes from one block's BASE to the next one's.
    #[inline(always)]
    fn stride(c: SizeClass) -> usize {
        Self::HEADER_SIZE + c.block_size()
    }
    /// Blocks in one slab of class `c`.
    #[inline(always)]
    fn blocks_per_slab(c: SizeClass) -> usize {
        c.slab_bytes() / Self::stride(c)
    }
}

/// No per-block header: USER == BASE; the slab's metadata knows the class.
#[derive(Clone, Copy, Debug)]
pub struct Plain;
impl BlockLayout for Plain {
    const HEADER_SIZE: usize = 0;
    const LINK_OFFSET: usize = 0;
    const NAME: &'static str = "plain";
    const CHECKED: bool = false;
}

/// A 16-byte header before each block (checked build): USER == BASE + 16; the link of
/// a free block lives in its user area (two encoded words, so the smallest block's 16
/// user bytes hold it) and the header survives while the block is free.
///
/// Blocks above [`LOOKUP_MAX`] get a stride rounded up to 64 bytes (48 spare bytes after
/// the user area, under 5% of such a block): every user pointer of such a block then has
/// the same offset modulo 64, as in the plain layout. With a 16-byte stride step two
/// blocks are often 16 bytes apart modulo 4 KiB, and `memcpy` between them (`realloc`)
/// runs many times slower (4 KiB aliasing of its loads on its own stores).
///
/// ```
/// use tiny_layout::{class_of, BlockLayout, Guarded};
/// let c = class_of(4096).unwrap();
/// assert_eq!(Guarded::stride(c), 4096 + 64);
/// let small = class_of(1024).unwrap();
/// assert_eq!(Guarded::stride(small), 1024 + 16);
/// ```
#[derive(Clone, Copy, Debug)]
pub struct Guarded;
impl BlockLayout for Guarded {
    const HEADER_SIZE: usize = 16;
    const LINK_OFFSET: usize = 16;
    const NAME: &'static str = "guarded";
    const CHECKED: bool = true;

    #[inline(always)]
    fn stride(c: SizeClass) -> usize {
        Guarded::const_stride(c)
    }
}

impl Guarded {
    /// [`BlockLayout::stride`] in constant expressions (tables built at compile time).
    #[inline(always)]
    pub const fn const_stride(c: SizeClass) -> usize {
        GUARDED_STRIDES[c.index()] as usize
    }
}

/// [`Guarded`]'s strides by class (one load, as for the block size).
const GUARDED_STRIDES: [u32; CLASS_COUNT] = {
    let mut t = [0u32; CLASS_COUNT];
    let mut i = 0;
    while i < CLASS_COUNT {
        t[i] = guarded_stride(CLASS_SIZES[i] as usize) as u32;
        i += 1;
    }
    t
};

/// [`Guarded`]'s stride for blocks of `block_size` bytes.
const fn guarded_stride(block_size: usize) -> usize {
    let s = Guarded::HEADER_SIZE + block_size;
    if block_size > LOOKUP_MAX {
        (s + 63) & !63
    } else {
        s
    }
}

// ---- compile-time checks of the table and both layouts ----
const fn table_ok() -> bool {
    let mut i = 0;
    while i < CLASS_COUNT {
        let s = CLASS_SIZES[i] as usize;
        if !s.is_multiple_of(BLOCK_ALIGN) {
            return false;
        }
        if i > 0 {
            let prev = CLASS_SIZES[i - 1] as usize;
            if s <= prev {
                return false;
            }
            // Worst request of this class is prev + 1: waste s - prev - 1 must be at most
            // 12.5% of it above 128 bytes.
            if prev >= 128 && (s - prev - 1) * 8 > prev + 1 {
                return false;
            }
        }
        if class_by_formula(s) != i
            || (i > 0 && class_by_formula(CLASS_SIZES[i - 1] as usize + 1) != i)
        {
            return false;
        }
        if !slab_bytes_for(s).is_multiple_of(MIN_SLAB_BYTES)
            || slab_bytes_for(s) / guarded_stride(s) == 0
        {
            return false;
        }
        i += 1;
    }
    true
}
const_assert!(table_ok());
const_assert!(CLASS_SIZES[CLASS_COUNT - 1] as usize == MAX_CLASS_SIZE);
const_assert!(CLASS_SIZES[0] as usize == BLOCK_ALIGN);
const_assert!(CLASS_COUNT <= u8::MAX as usize);
/// A layout's header keeps user pointers aligned and its link lies in the user area.
const fn layout_ok<L: BlockLayout>() -> bool {
    L::HEADER_SIZE.is_multiple_of(BLOCK_ALIGN) && L::LINK_OFFSET >= L::HEADER_SIZE
}
const_assert!(layout_ok::<Plain>() && layout_ok::<Guarded>());
// The link and the word after it (a remote chain index) fit in the smallest block's user
// area; a checked layout keeps the link's complement in its header (`ptr_conversion`).
const_assert!(Guarded::LINK_OFFSET - Guarded::HEADER_SIZE + 16 <= 16);
const_assert!(MAX_SLAB_BYTES.is_multiple_of(MIN_SLAB_BYTES));

#[cfg(test)]
mod tests;
