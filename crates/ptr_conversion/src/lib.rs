//! # ptr_conversion: BASE and USER pointers
//!
//! A block has two addresses: its BASE (where the block, header included, starts; what
//! free lists and slabs hold) and its USER pointer (what the program sees). The C
//! allocator this design comes from confused the two and corrupted headers; here they are
//! distinct types, [`BlockBase`] and [`UserPtr`], each tied to a [`BlockLayout`], and this
//! crate is the only code that converts between them, reads or writes a block header, or
//! reads or writes a free block's link.
//!
//! ## Invariants owned here
//! - `UserPtr<L> == BlockBase<L> + L::HEADER_SIZE`, always, in every build: the offset
//!   comes from the layout type, never from a literal, and a pointer of one layout cannot
//!   be converted with another layout's offsets (they are different types).
//! - Both types are `#[repr(transparent)]` over `NonNull<u8>`: zero cost in every build.
//! - A free block's link lives at `BASE + L::LINK_OFFSET`; only [`BlockBase::link`] and
//!   [`BlockBase::set_link`] touch it, and it is always stored encoded. In checked layouts
//!   its complement takes the header's check word while the block is free (see
//!   [`Header`]): the link's two words are one in the user area and one in the header,
//!   which leaves the user area's second word free even in the smallest class.
//! - Plain layouts (the release build) protect links with keys derived one-way from a
//!   per-process secret ([`set_secret`], a SipHash key that is never stored in user
//!   memory). A list with a key of its own (a slab's list: [`BlockBase::link_keyed`], one
//!   XOR on malloc's and free's fast paths) stores `next ^ key`, with `key =
//!   list_key(start)` the SipHash of the list's address under the secret (as mimalloc's
//!   secure mode keys each page: a link copied within its slab decodes to a block of that
//!   slab, elsewhere to garbage); other chains of blocks (a freeing thread's batches, the
//!   remote queue: [`BlockBase::link`]) store `next ^ addr ^ chain_key` (`addr` the word's
//!   own address; `chain_key` the SipHash of a constant under the secret). Anyone who
//!   reads a free block learns at most its slab's key (its tail link stores it) or the
//!   chain key, and from either neither the secret nor another slab's key.
//! - A free block of a plain layout carries its slab's key in the word after its link, the
//!   *free mark*, from the moment it is freed until it is handed out again: the list
//!   writes it with the link ([`BlockBase::set_link_keyed`]), a chain's owner with
//!   [`BlockBase::set_free_mark`] (a chain's link, [`BlockBase::set_link`], leaves it);
//!   [`BlockBase::is_marked_free`] tests it against the key of the block's slab (a free of
//!   a block that carries it is a double free, with a false positive probability of 2^-63
//!   for a live block's data) and [`BlockBase::clear_free_mark`] erases it when the block
//!   is handed out. Whoever follows a decoded link checks that it is a block of the same
//!   slab before touching it (`superslab`).
//! - The secret is set once, before any block is linked, and never changes; so do the
//!   keys derived from it.
//! - The header ([`Header`], 16 bytes, only in layouts with `HEADER_SIZE == 16`) is only
//!   encoded and decoded here.
//!
//! ## Example
//! ```
//! use core::ptr::NonNull;
//! use ptr_conversion::{BlockBase, UserPtr};
//! use tiny_layout::{Guarded, Plain};
//!
//! #[repr(align(16))]
//! struct Block([u8; 64]);
//! let mut block = Block([0; 64]);
//! let p = NonNull::new(block.0.as_mut_ptr()).unwrap();
//!
//! // SAFETY: `block` is a 16-aligned block of 64 bytes, used in one layout at a time.
//! let plain: BlockBase<Plain> = unsafe { BlockBase::from_raw(p) };
//! assert_eq!(plain.to_user().addr(), plain.addr()); // no header: USER == BASE
//! let guarded: BlockBase<Guarded> = unsafe { BlockBase::from_raw(p) };
//! let user: UserPtr<Guarded> = guarded.to_user();
//! assert_eq!(user.addr(), guarded.addr() + 16); // USER == BASE + HEADER_SIZE
//! assert_eq!(user.to_base(), guarded);
//! // `user.to_user()` or `plain == guarded` do not compile: different types.
//! ```
#![no_std]
#![warn(missing_docs)]

use core::marker::PhantomData;
use core::ptr::NonNull;
pub use tiny_layout::{BlockLayout, SizeClass};

/// The start of a block (header included). Free lists and slabs hold these.
///
/// `Copy`, `Eq` and pointer-sized (`Option<BlockBase<L>>` too). Made only by
/// [`from_raw`](Self::from_raw) (whose caller vouches for the layout) or by
/// [`UserPtr::to_base`].
#[repr(transparent)]
pub struct BlockBase<L: BlockLayout>(NonNull<u8>, PhantomData<L>);

/// The address handed to the program: `BASE + L::HEADER_SIZE`.
///
/// Made only by [`BlockBase::to_user`] or [`from_raw`](Self::from_raw) (for a pointer
/// the program hands back, once the owner lookup has established its layout).
#[repr(transparent)]
pub struct UserPtr<L: BlockLayout>(NonNull<u8>, PhantomData<L>);

macro_rules! pointer_basics {
    ($t:ident) => {
        impl<L: BlockLayout> Clone for $t<L> {
            #[inline(always)]
            fn clone(&self) -> Self {
                *self
            }
        }
        impl<L: BlockLayout> Copy for $t<L> {}
        impl<L: BlockLayout> PartialEq for $t<L> {
            #[inline(always)]
            fn eq(&self, o: &Self) -> bool {
                self.0 == o.0
            }
        }
        impl<L: BlockLayout> Eq for $t<L> {}
        impl<L: BlockLayout> core::fmt::Debug for $t<L> {
            fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                write!(f, concat!(stringify!($t), "({:p})"), self.0)
            }
        }
        impl<L: BlockLayout> $t<L> {
            /// The address as a raw pointer.
            #[inline(always)]
            pub const fn as_ptr(self) -> *mut u8 {
                self.0.as_ptr()
            }
            /// The address as an integer.
            #[inline(always)]
            pub fn addr(self) -> usize {
                self.0.as_ptr() as usize
            }
        }
    };
}
pointer_basics!(BlockBase);
pointer_basics!(UserPtr);

impl<L: BlockLayout> BlockBase<L> {
    /// Wraps the start of a block.
    ///
    /// # Safety
    /// `p` must be the BASE of a block laid out with `L` (the slab carving it says so).
    #[inline(always)]
    pub const unsafe fn from_raw(p: NonNull<u8>) -> Self {
        BlockBase(p, PhantomData)
    }

    /// The USER pointer of this block.
    #[inline(always)]
    pub fn to_user(self) -> UserPtr<L> {
        // SAFETY: BASE + HEADER_SIZE stays inside the block (the stride includes the
        // header and at least 16 user bytes), so it is non-null and in bounds.
        UserPtr(unsafe { self.0.add(L::HEADER_SIZE) }, PhantomData)
    }

    /// Reads the free-list link of this free block. In checked layouts the link is stored
    /// encoded, and its complement in the header's check word; a mismatch (a write after
    /// free, an overflow into a free block's header) is reported through [`report`]
    /// instead of followed.
    ///
    /// ```
    /// # use core::ptr::NonNull;
    /// use ptr_conversion::BlockBase;
    /// use tiny_layout::Guarded;
    /// #[repr(align(16))]
    /// struct Two([[u8; 32]; 2]);
    /// let mut t = Two([[0; 32]; 2]);
    /// let [a, b] = t.0.each_mut().map(|b| NonNull::new(b.as_mut_ptr()).unwrap());
    /// // SAFETY: two free 16-aligned blocks of 32 bytes, owned here.
    /// let (a, b) = unsafe { (BlockBase::<Guarded>::from_raw(a), BlockBase::from_raw(b)) };
    /// unsafe {
    ///     a.set_link(Some(b)); // a -> b
    ///     b.set_link(None);
    ///     assert_eq!(a.link(), Some(b));
    ///     assert_eq!(b.link(), None);
    /// }
    /// ```
    ///
    /// # Safety
    /// The block must be free and owned by the caller's list, its link written by
    /// [`set_link`](Self::set_link) (or the caller must otherwise know it is valid).
    #[inline(always)]
    pub unsafe fn link(self) -> Option<BlockBase<L>> {
        // SAFETY: LINK_OFFSET + 8 <= stride (checked in tiny_layout); blocks are
        // 16-aligned and LINK_OFFSET a multiple of 8: aligned and in bounds.
        let slot = unsafe { self.0.add(L::LINK_OFFSET).cast::<usize>() };
        let raw = if L::CHECKED {
            // SAFETY: as above; checked layouts have a 16-byte header (tiny_layout), whose
            // check word is at BASE + 8.
            let (a, b) = unsafe { (slot.read(), self.link_check().read()) };
            if a != !b {
                link_corrupted::<L>(self.addr());
            }
            a ^ self.addr() ^ LINK_KEY
        } else {
            // SAFETY: as above.
            decode(unsafe { slot.read() }, slot.as_ptr() as usize)
        };
        NonNull::new(raw as *mut u8).map(|p| BlockBase(p, PhantomData))
    }

    /// Writes the free-list link of this (now free) block, encoded (plain layouts: with the
    /// chain key and the word's address). Leaves the free mark as it is: a chain's owner
    /// writes it with [`set_free_mark`](Self::set_free_mark).
    ///
    /// # Safety
    /// The caller owns the block and it is free (its user bytes are no longer in use).
    #[inline(always)]
    pub unsafe fn set_link(self, next: Option<BlockBase<L>>) {
        let raw = next.map_or(0, |n| n.addr());
        // SAFETY: as in `link`; the caller owns the block.
        unsafe {
            let slot = self.0.add(L::LINK_OFFSET).cast::<usize>();
            if L::CHECKED {
                let enc = raw ^ self.addr() ^ LINK_KEY;
                slot.write(enc);
                self.link_check().write(!enc);
            } else {
                slot.write(encode(raw, slot.as_ptr() as usize));
            }
        }
    }

    /// [`link`](Self::link) for a list whose links are encoded with its own `key` (a
    /// slab's list, see [`list_key`]): in plain layouts the stored word is `next ^ key`,
    /// one XOR with a word the list's owner already has in hand; checked layouts ignore
    /// `key` and encode as [`link`](Self::link) does.
    ///
    /// # Safety
    /// As for [`link`](Self::link), the link written by
    /// [`set_link_keyed`](Self::set_link_keyed) with the same key.
    #[inline(always)]
    pub unsafe fn link_keyed(self, key: usize) -> Option<BlockBase<L>> {
        if L::CHECKED {
            // SAFETY: forwarded.
            return unsafe { self.link() };
        }
        // SAFETY: as in `link`. Unaligned: a slab's list head is tested to lie in its slab,
        // not to be aligned (a link forged with the key may be neither; the same `mov`).
        let raw = unsafe { self.0.add(L::LINK_OFFSET).cast::<usize>().read_unaligned() } ^ key;
        NonNull::new(raw as *mut u8).map(|p| BlockBase(p, PhantomData))
    }

    /// [`set_link`](Self::set_link) for a list whose links are encoded with its own `key`
    /// (see [`link_keyed`](Self::link_keyed)), and the block's free mark: the key itself
    /// (a slab's list key is the mark of its blocks; one word in hand for both).
    ///
    /// # Safety
    /// As for [`set_link`](Self::set_link).
    #[inline(always)]
    pub unsafe fn set_link_keyed(self, next: Option<BlockBase<L>>, key: usize) {
        if L::CHECKED {
            // SAFETY: forwarded.
            return unsafe { self.set_link(next) };
        }
        let raw = next.map_or(0, |n| n.addr());
        // SAFETY: as in `set_link`; the caller owns the block.
        unsafe {
            self.0.add(L::LINK_OFFSET).cast::<usize>().write(raw ^ key);
            self.mark_slot().write(key);
        }
    }

    /// Whether this block carries the free mark of its slab, whose list key is `key`
    /// (plain layouts; always false in checked layouts, whose header says Free instead): a
    /// block being freed that carries it is already free (in its slab's list, a pending
    /// batch or a remote queue), except with probability 2^-63.
    ///
    /// # Safety
    /// BASE points into mapped memory of a slab laid out with `L`.
    #[inline(always)]
    pub unsafe fn is_marked_free(self, key: usize) -> bool {
        // SAFETY: (caller) the block's first 16 bytes are mapped.
        !L::CHECKED && unsafe { self.mark_slot().read() } == key
    }

    /// Writes the free mark of a block that joins a chain (whose links,
    /// [`set_link`](Self::set_link), carry none): `key` is the list key of the block's
    /// slab (plain layouts; no-op in checked layouts).
    ///
    /// # Safety
    /// The caller owns the free block.
    #[inline(always)]
    pub unsafe fn set_free_mark(self, key: usize) {
        if !L::CHECKED {
            // SAFETY: (caller) our block, at least 16 bytes.
            unsafe { self.mark_slot().write(key) }
        }
    }

    /// Erases the free mark of a block being handed out (plain layouts; no-op in checked
    /// layouts).
    ///
    /// # Safety
    /// The caller owns the block.
    #[inline(always)]
    pub unsafe fn clear_free_mark(self) {
        if !L::CHECKED {
            // SAFETY: (caller) our block, at least 16 bytes. Unaligned: see `link_keyed`.
            unsafe { self.mark_slot().write_unaligned(0) }
        }
    }

    /// Writes `value` into the word after this free block's link (a remote queue's
    /// next-chain word), encoded as the link is (plain layouts; stored as it is in checked
    /// layouts, whose links are checked by their header). Replaces the free mark.
    ///
    /// # Safety
    /// The caller owns the free block, whose stride has room for a word after the link.
    #[inline(always)]
    pub unsafe fn set_spare_word(self, value: usize) {
        // SAFETY: (caller) 8-aligned and in the block.
        unsafe {
            let slot = self.0.add(L::LINK_OFFSET + 8).cast::<usize>();
            slot.write(if L::CHECKED {
                value
            } else {
                encode(value, slot.as_ptr() as usize)
            })
        }
    }

    /// Reads what [`set_spare_word`](Self::set_spare_word) wrote.
    ///
    /// # Safety
    /// As for `set_spare_word`, and the word was written by it.
    #[inline(always)]
    pub unsafe fn spare_word(self) -> usize {
        // SAFETY: (caller).
        unsafe {
            let slot = self.0.add(L::LINK_OFFSET + 8).cast::<usize>();
            let v = slot.read();
            if L::CHECKED {
                v
            } else {
                decode(v, slot.as_ptr() as usize)
            }
        }
    }

    /// Where a plain layout keeps a free block's free mark: the word after its link.
    #[inline(always)]
    fn mark_slot(self) -> *mut usize {
        // SAFETY: every block is at least 16 bytes (tiny_layout) and 16-aligned.
        unsafe { self.0.add(L::LINK_OFFSET + 8).cast::<usize>().as_ptr() }
    }

    /// Where a checked layout keeps the complement of a free block's encoded link: the
    /// header's check word, which a free block's header does not need (its link checks it).
    #[inline(always)]
    fn link_check(self) -> *mut usize {
        const { assert!(!L::CHECKED || L::HEADER_SIZE == Header::SIZE) };
        // SAFETY: BASE + 8 lies in the 16-byte header of a checked layout (asserted).
        unsafe { self.0.add(Header::CHECK_OFFSET).cast::<usize>().as_ptr() }
    }

    /// Writes the header of this block (no-op in a layout without header).
    ///
    /// # Safety
    /// The caller owns the block.
    #[inline(always)]
    pub unsafe fn write_header(self, h: Header) {
        if L::HEADER_SIZE == Header::SIZE {
            // SAFETY: the layout reserves HEADER_SIZE == 16 bytes at BASE, 16-aligned.
            unsafe { self.0.cast::<[u64; 2]>().write(h.encode(self.addr())) }
        }
    }

    /// Marks the checked Free header of a block of class `class` Allocated for `requested`
    /// bytes: both words (a free block's check word held its link's complement). No-op in a
    /// layout without header.
    ///
    /// ```
    /// # use core::ptr::NonNull;
    /// use ptr_conversion::{BlockBase, BlockState, Header};
    /// use tiny_layout::Guarded;
    /// #[repr(align(16))]
    /// struct Block([u8; 48]);
    /// let mut block = Block([0; 48]);
    /// let p = NonNull::new(block.0.as_mut_ptr()).unwrap();
    /// // SAFETY: a 16-aligned block of 48 bytes, owned here.
    /// let b = unsafe { BlockBase::<Guarded>::from_raw(p) };
    /// unsafe { b.write_header(Header { state: BlockState::Free, class: 1, requested: 0 }) };
    /// unsafe { b.mark_allocated(1, 20) };
    /// let h = Header { state: BlockState::Allocated, class: 1, requested: 20 };
    /// assert_eq!(unsafe { b.read_header() }, Ok(h));
    /// ```
    ///
    /// # Safety
    /// The caller owns the block, whose header was checked Free of class `class`.
    #[inline(always)]
    pub unsafe fn mark_allocated(self, class: u8, requested: u32) {
        // SAFETY: forwarded.
        unsafe { self.mark_allocated_word(Header::allocated_word(class, requested)) }
    }

    /// [`mark_allocated`](Self::mark_allocated) with the header's first word given, as
    /// [`Header::allocated_word`] makes it (a table of them per requested size saves
    /// malloc's fast path the encoding). No-op in a layout without header.
    ///
    /// # Safety
    /// As for [`mark_allocated`](Self::mark_allocated); `w0` is an `allocated_word`.
    #[inline(always)]
    pub unsafe fn mark_allocated_word(self, w0: u64) {
        if L::HEADER_SIZE == Header::SIZE {
            // SAFETY: the layout reserves HEADER_SIZE == 16 bytes at BASE, 16-aligned.
            unsafe {
                self.0
                    .cast::<[u64; 2]>()
                    .write([w0, Header::check_word(self.addr())])
            }
        }
    }

    /// Marks the checked header of an Allocated block Free with one byte store (the tag;
    /// class and requested size stay; the check word stays until [`set_link`](Self::set_link)
    /// puts the link's complement there). No-op in a layout without header.
    ///
    /// ```
    /// # use core::ptr::NonNull;
    /// use ptr_conversion::{BlockBase, BlockState, Header};
    /// use tiny_layout::Guarded;
    /// #[repr(align(16))]
    /// struct Block([u8; 48]);
    /// let mut block = Block([0; 48]);
    /// let p = NonNull::new(block.0.as_mut_ptr()).unwrap();
    /// // SAFETY: a 16-aligned block of 48 bytes, owned here.
    /// let b = unsafe { BlockBase::<Guarded>::from_raw(p) };
    /// let h = Header { state: BlockState::Allocated, class: 1, requested: 20 };
    /// unsafe { b.write_header(h) };
    /// unsafe { b.mark_free() };
    /// let free = Header { state: BlockState::Free, ..h };
    /// assert_eq!(unsafe { b.read_header() }, Ok(free));
    /// unsafe { b.set_link(None) }; // the check word now checks the link
    /// assert_eq!(unsafe { b.read_header() }, Ok(free));
    /// ```
    ///
    /// # Safety
    /// The caller owns the block, whose header was checked Allocated.
    #[inline(always)]
    pub unsafe fn mark_free(self) {
        if L::HEADER_SIZE == Header::SIZE {
            // SAFETY: the tag is the header's first byte (little-endian word 0).
            unsafe { self.0.write(Header::TAG_FREE) }
        }
    }

    /// Whether this block's header tag (its first byte) is that of `state`: the byte any
    /// overflow from the block below writes first, so the cheapest check that such an
    /// overflow has not reached the header. The rest of the header is for
    /// [`expect_allocated`](Self::expect_allocated) and [`read_header`](Self::read_header).
    /// Layouts without a header: always true.
    ///
    /// # Safety
    /// As for [`read_header`](Self::read_header).
    #[inline(always)]
    pub unsafe fn tag_is(self, state: BlockState) -> bool {
        if L::HEADER_SIZE != Header::SIZE {
            return true;
        }
        // SAFETY: the tag is the header's first byte, inside the block (caller).
        unsafe { self.0.read() == Header::tag_of(state) }
    }

    /// Checks, without decoding, that this block's header is the valid header of an
    /// Allocated block of class `class`, and returns its requested size. The fast form of
    /// [`read_header`](Self::read_header) for the checked paths: two loads and two
    /// compares; on `None` the caller decodes with `read_header` to name the failure.
    /// Layouts without a header get `Some(0)`.
    ///
    /// ```
    /// # use core::ptr::NonNull;
    /// use ptr_conversion::{BlockBase, BlockState, Header};
    /// use tiny_layout::Guarded;
    /// #[repr(align(16))]
    /// struct Block([u8; 48]);
    /// let mut block = Block([0; 48]);
    /// let p = NonNull::new(block.0.as_mut_ptr()).unwrap();
    /// // SAFETY: a 16-aligned block of 48 bytes, owned here.
    /// let b = unsafe { BlockBase::<Guarded>::from_raw(p) };
    /// unsafe { b.write_header(Header { state: BlockState::Allocated, class: 1, requested: 20 }) };
    /// assert_eq!(unsafe { b.expect_allocated(1) }, Some(20));
    /// assert_eq!(unsafe { b.expect_allocated(2) }, None); // wrong class
    /// unsafe { b.mark_free() };
    /// assert_eq!(unsafe { b.expect_allocated(1) }, None); // wrong state
    /// ```
    ///
    /// # Safety
    /// As for [`read_header`](Self::read_header).
    #[inline(always)]
    pub unsafe fn expect_allocated(self, class: u8) -> Option<u32> {
        if L::HEADER_SIZE != Header::SIZE {
            return Some(0);
        }
        // SAFETY: as in `write_header`.
        let [w0, w1] = unsafe { self.0.cast::<[u64; 2]>().read() };
        let low = Header::TAG_ALLOCATED as u32 | (class as u32) << 8;
        if w0 as u32 == low && w1 == Header::check_word(self.addr()) {
            Some((w0 >> 32) as u32)
        } else {
            None
        }
    }

    /// Reads and checks the header of this block. Layouts without a header get `Ok`
    /// with `Header::NONE`.
    ///
    /// ```
    /// # use core::ptr::NonNull;
    /// use ptr_conversion::{BlockBase, BlockState, Header};
    /// use tiny_layout::Guarded;
    /// #[repr(align(16))]
    /// struct Block([u8; 48]);
    /// let mut block = Block([0; 48]);
    /// let p = NonNull::new(block.0.as_mut_ptr()).unwrap();
    /// // SAFETY: a 16-aligned block of 48 bytes, owned here.
    /// let b = unsafe { BlockBase::<Guarded>::from_raw(p) };
    /// let h = Header { state: BlockState::Allocated, class: 1, requested: 20 };
    /// unsafe { b.write_header(h) };
    /// assert_eq!(unsafe { b.read_header() }, Ok(h));
    /// block.0[0] = 0x31; // an overflow from the previous block hits the tag
    /// let err = unsafe { b.read_header() }.unwrap_err();
    /// assert_eq!(err.found_tag, 0x31);
    /// ```
    ///
    /// # Safety
    /// BASE must point into mapped memory of a slab laid out with `L`.
    #[inline(always)]
    pub unsafe fn read_header(self) -> Result<Header, HeaderError> {
        if L::HEADER_SIZE == Header::SIZE {
            // SAFETY: as in `write_header` and `link`.
            let (words, link) = unsafe {
                let link = self.0.add(L::LINK_OFFSET).cast::<u64>().read();
                (self.0.cast::<[u64; 2]>().read(), link)
            };
            Header::decode(words, link, self.addr())
        } else {
            Ok(Header::NONE)
        }
    }
}

impl<L: BlockLayout> UserPtr<L> {
    /// Wraps a pointer the program handed back.
    ///
    /// # Safety
    /// `p` must be the USER pointer of a block laid out with `L`, as established by the
    /// owner lookup (slab metadata) before calling this.
    #[inline(always)]
    pub const unsafe fn from_raw(p: NonNull<u8>) -> Self {
        UserPtr(p, PhantomData)
    }

    /// The BASE of this block: the one USER → BASE conversion.
    #[inline(always)]
    pub fn to_base(self) -> BlockBase<L> {
        // SAFETY: by construction USER = BASE + HEADER_SIZE, so subtracting stays in the block.
        BlockBase(
            unsafe { NonNull::new_unchecked(self.0.as_ptr().sub(L::HEADER_SIZE)) },
            PhantomData,
        )
    }
}

/// Mixed into encoded links (checked layouts).
const LINK_KEY: usize = 0x5a17_c0de_d00d_f00d;

/// The per-process secret of plain layouts (see the crate invariants): a SipHash key,
/// and the chain key derived from it.
struct SecretCell(core::cell::UnsafeCell<Secret>);
// SAFETY: written once by `set_secret`, whose caller makes that write happen before any
// read (see there); read-only afterwards.
unsafe impl Sync for SecretCell {}

#[derive(Clone, Copy)]
struct Secret {
    key: [u64; 2],
    chain_key: usize,
}

impl Secret {
    const fn new(key: [u64; 2]) -> Secret {
        Secret {
            key,
            chain_key: siphash24(key, CHAIN_INPUT) as usize,
        }
    }
}

/// What the chain key is the hash of: no slab starts at address 0, so no list key is it.
const CHAIN_INPUT: u64 = 0;

/// Until [`set_secret`] runs (tests of the boxes alone), a fixed key.
static SECRET: SecretCell = SecretCell(core::cell::UnsafeCell::new(Secret::new([
    0x3c6e_f372_fe94_f82b,
    0xa54f_f53a_5f1d_36f1,
])));

#[inline(always)]
fn secret() -> Secret {
    // SAFETY: see `SecretCell`: no write races with this read.
    unsafe { *SECRET.0.get() }
}

/// Sets the per-process secret of plain layouts, the key every list key and the chain key
/// are derived from (see the crate invariants; it should be random).
///
/// # Safety
/// Called at most once, before any block of a plain layout is linked or tested and any
/// list key is made, and before any other thread can use this crate (or with a
/// happens-before edge to every later use, as a process set-up published with
/// Release/Acquire gives).
pub unsafe fn set_secret(key: [u64; 2]) {
    // SAFETY: (caller) nobody reads the secret concurrently.
    unsafe { *SECRET.0.get() = Secret::new(key) }
}

/// The key of a list of blocks starting at `start` (a slab's list; computed when the
/// slab opens): the SipHash-2-4 of `start` under the per-process secret, never 0 (the
/// word a handed-out block holds where a free one holds its mark). One-way: a key read
/// from a free block gives neither the secret nor the key of any other list.
pub fn list_key(start: usize) -> usize {
    siphash24(secret().key, start as u64) as usize | 1
}

/// SipHash-2-4 (Aumasson and Bernstein) of the 8 bytes of `m` (little-endian) under `key`.
const fn siphash24(key: [u64; 2], m: u64) -> u64 {
    const fn rounds(mut v: [u64; 4], n: usize) -> [u64; 4] {
        let mut i = 0;
        while i < n {
            v[0] = v[0].wrapping_add(v[1]);
            v[1] = v[1].rotate_left(13) ^ v[0];
            v[0] = v[0].rotate_left(32);
            v[2] = v[2].wrapping_add(v[3]);
            v[3] = v[3].rotate_left(16) ^ v[2];
            v[0] = v[0].wrapping_add(v[3]);
            v[3] = v[3].rotate_left(21) ^ v[0];
            v[2] = v[2].wrapping_add(v[1]);
            v[1] = v[1].rotate_left(17) ^ v[2];
            v[2] = v[2].rotate_left(32);
            i += 1;
        }
        v
    }
    let mut v = [
        key[0] ^ 0x736f_6d65_7073_6575,
        key[1] ^ 0x646f_7261_6e64_6f6d,
        key[0] ^ 0x6c79_6765_6e65_7261,
        key[1] ^ 0x7465_6462_7974_6573,
    ];
    // One 8-byte block, then the final block: the length (8) in the top byte.
    let last = 8u64 << 56;
    v[3] ^= m;
    v = rounds(v, 2);
    v[0] ^= m;
    v[3] ^= last;
    v = rounds(v, 2);
    v[0] ^= last;
    v[2] ^= 0xff;
    v = rounds(v, 4);
    v[0] ^ v[1] ^ v[2] ^ v[3]
}

/// A word stored at address `at` for `value` (plain layouts' chain links and spare words).
#[inline(always)]
fn encode(value: usize, at: usize) -> usize {
    value ^ at ^ secret().chain_key
}

/// The value a word stored at `at` holds (the inverse of `encode`).
#[inline(always)]
fn decode(stored: usize, at: usize) -> usize {
    stored ^ at ^ secret().chain_key
}

/// What the checked build found wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Corruption {
    /// A block header does not decode: overwritten, most likely by an overflow of the
    /// previous block.
    HeaderOverwritten,
    /// Bytes past the requested size were changed (an overflow within the block).
    CanaryOverwritten,
    /// The block is already free.
    DoubleFree,
    /// The pointer is not the start of a block (interior pointer) or not ours.
    InvalidFree,
    /// The header's class disagrees with its slab's.
    ClassMismatch,
    /// A free block's encoded link does not check (write after free).
    FreeListCorrupted,
}

impl Corruption {
    /// One line of explanation.
    pub const fn describe(self) -> &'static str {
        match self {
            Corruption::HeaderOverwritten => "header overwritten",
            Corruption::CanaryOverwritten => {
                "overflow past the requested size (canary overwritten)"
            }
            Corruption::DoubleFree => "double free",
            Corruption::InvalidFree => {
                "free of a pointer hakmem did not allocate (interior, stack or foreign)"
            }
            Corruption::ClassMismatch => "class mismatch between header and slab",
            Corruption::FreeListCorrupted => "free list corrupted",
        }
    }
    /// A hint at the likely cause, if any.
    pub const fn hint(self) -> &'static str {
        match self {
            Corruption::HeaderOverwritten => " (overflow from the previous block?)",
            Corruption::FreeListCorrupted => " (a write to the block after it was freed?)",
            _ => "",
        }
    }
}

/// One detected corruption, for the reporter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Report {
    /// What was found.
    pub what: Corruption,
    /// The user pointer concerned.
    pub addr: usize,
    /// The block's class, if known.
    pub class: Option<u8>,
    /// The value expected (a tag or check word).
    pub expected: u64,
    /// The value found.
    pub found: u64,
}

static REPORTER: core::sync::atomic::AtomicPtr<()> =
    core::sync::atomic::AtomicPtr::new(core::ptr::null_mut());

/// Installs the function that reports a corruption and never returns (the facade's writes
/// one line to stderr and aborts). Without one, [`report`] panics.
///
/// ```should_panic
/// use ptr_conversion::{report, set_reporter, Corruption, Report};
/// fn reporter(r: &Report) -> ! {
///     panic!("{} at {:#x}{}", r.what.describe(), r.addr, r.what.hint());
/// }
/// set_reporter(reporter);
/// report(&Report {
///     what: Corruption::DoubleFree,
///     addr: 0x1000,
///     class: Some(3),
///     expected: 0,
///     found: 0,
/// });
/// ```
pub fn set_reporter(f: fn(&Report) -> !) {
    REPORTER.store(f as *mut (), core::sync::atomic::Ordering::Release);
}

/// Reports a corruption through the installed reporter.
#[cold]
pub fn report(r: &Report) -> ! {
    let f = REPORTER.load(core::sync::atomic::Ordering::Acquire);
    if f.is_null() {
        panic!("hakmem: {} at {:#x}", r.what.describe(), r.addr);
    }
    // SAFETY: only `set_reporter` stores here, always a `fn(&Report) -> !`.
    let f: fn(&Report) -> ! = unsafe { core::mem::transmute(f) };
    f(r)
}

static MISUSE_HANDLER: core::sync::atomic::AtomicPtr<()> =
    core::sync::atomic::AtomicPtr::new(core::ptr::null_mut());

/// Installs the function that handles a misuse the release build detects (a double or
/// invalid free, a corrupted free list): the facade's prints one line, then aborts or,
/// if the user asked for it, returns, and the caller leaves the block alone (leaks it).
///
/// ```
/// use ptr_conversion::{misuse, set_misuse_handler, Corruption, Report};
/// use core::sync::atomic::{AtomicUsize, Ordering};
/// static SEEN: AtomicUsize = AtomicUsize::new(0);
/// fn count(r: &Report) {
///     SEEN.store(r.addr, Ordering::Relaxed);
/// }
/// set_misuse_handler(count);
/// misuse(&Report { what: Corruption::DoubleFree, addr: 0x1000, class: None, expected: 0, found: 0 });
/// assert_eq!(SEEN.load(Ordering::Relaxed), 0x1000);
/// ```
pub fn set_misuse_handler(f: fn(&Report)) {
    MISUSE_HANDLER.store(f as *mut (), core::sync::atomic::Ordering::Release);
}

/// Hands a detected misuse to the installed handler; returns if it returns (without a
/// handler, at once: the caller's recovery, leaving the block alone, is all that happens).
#[cold]
#[inline(never)]
pub fn misuse(r: &Report) {
    let f = MISUSE_HANDLER.load(core::sync::atomic::Ordering::Acquire);
    if !f.is_null() {
        // SAFETY: only `set_misuse_handler` stores here, always a `fn(&Report)`.
        let f: fn(&Report) = unsafe { core::mem::transmute(f) };
        f(r)
    }
}

/// Reports a free-list link whose two words disagree, naming an overflow into the
/// header apart from a write after free (out of line: the pop that checks it keeps no
/// stack frame).
#[cold]
#[inline(never)]
fn link_corrupted<L: BlockLayout>(base: usize) -> ! {
    // SAFETY: `base` is a free block of a checked layout whose link was just read.
    let b = unsafe { BlockBase::<L>::from_raw(NonNull::new_unchecked(base as *mut u8)) };
    // SAFETY: as above: the header and the link word are readable.
    let (tag, check, link) = unsafe {
        let link = b.0.add(L::LINK_OFFSET).cast::<u64>().read();
        (b.0.read(), b.link_check().read() as u64, link)
    };
    // The tag is the first byte an overflow from the block below reaches, before the
    // check word: a tag still Free means the link word was written (a write after free).
    let (what, expected, found) = if tag == Header::TAG_FREE {
        (Corruption::FreeListCorrupted, !check, link)
    } else {
        (
            Corruption::HeaderOverwritten,
            Header::TAG_FREE as u64,
            tag as u64,
        )
    };
    report(&Report {
        what,
        addr: b.to_user().addr(),
        class: None,
        expected,
        found,
    })
}

/// Whether a block is allocated or free, as recorded in its header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlockState {
    /// Handed to the program.
    Allocated,
    /// In a free list.
    Free,
}

/// The 16-byte block header of guarded layouts.
///
/// Encoding (little-endian words): word 0 = `tag | class << 8 | requested << 32`, where
/// `tag` is [`Header::TAG_ALLOCATED`] or [`Header::TAG_FREE`] and bits 16..32 are zero;
/// word 1, the check word, = the block's own address xor [`Header::KEY`], so a header
/// copied from elsewhere, shifted by an overflow or forged by user data does not check
/// (the class byte is checked against the slab's class by the header's users). An overflow from the previous block reaches word 0's tag
/// byte first, which must be one of the two values; the requested size behind it is
/// bounded by the block's span by its users.
///
/// While a block is free and linked, its check word holds the complement of its encoded
/// link instead ([`BlockBase::set_link`]): the link is checked by its two words, one in
/// the header, one in the user area, and the user area's second word stays free (the
/// remote queue keeps a chain index there, even in the smallest class). A Free header
/// checks with either word. [`BlockBase::mark_free`] writes the tag only (one byte store);
/// [`BlockBase::mark_allocated`] writes both words.
///
/// Headers are written and read only through [`BlockBase::write_header`] and
/// [`BlockBase::read_header`] (see the example there); both are no-ops for layouts
/// without a header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// Allocated or free.
    pub state: BlockState,
    /// Size class index.
    pub class: u8,
    /// The size the program asked for (for canaries and reports).
    pub requested: u32,
}

/// Why a header did not check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeaderError {
    /// The tag byte that was expected in the first header byte, if the class is known.
    pub found_tag: u8,
    /// The raw first word found.
    pub found: u64,
    /// True when the tag is valid but the check word does not match.
    pub check_failed: bool,
}

impl Header {
    /// Header bytes.
    pub const SIZE: usize = 16;
    /// Offset of the check word (word 1) from BASE.
    pub const CHECK_OFFSET: usize = 8;
    /// First byte of an allocated block's header.
    pub const TAG_ALLOCATED: u8 = 0xA1;
    /// First byte of a free block's header.
    pub const TAG_FREE: u8 = 0xF1;
    /// Mixed into the check word.
    pub const KEY: u64 = 0x6861_6B6D_656D_2D31; // "hakmem-1"
    /// What `read_header` reports for headerless layouts.
    pub const NONE: Header = Header {
        state: BlockState::Allocated,
        class: 0,
        requested: 0,
    };

    /// The tag byte of a state.
    #[inline(always)]
    pub const fn tag_of(state: BlockState) -> u8 {
        match state {
            BlockState::Allocated => Self::TAG_ALLOCATED,
            BlockState::Free => Self::TAG_FREE,
        }
    }

    #[inline(always)]
    fn encode(self, addr: usize) -> [u64; 2] {
        [
            Self::word0(self.state, self.class, self.requested),
            Self::check_word(addr),
        ]
    }

    /// The first word of a header.
    #[inline(always)]
    const fn word0(state: BlockState, class: u8, requested: u32) -> u64 {
        Self::tag_of(state) as u64 | (class as u64) << 8 | (requested as u64) << 32
    }

    /// The first word of the header of a block of class `class` allocated for `requested`
    /// bytes (for [`BlockBase::mark_allocated_word`]).
    pub const fn allocated_word(class: u8, requested: u32) -> u64 {
        Self::word0(BlockState::Allocated, class, requested)
    }

    /// The check word of a header at `addr`: one xor from the address (malloc writes it,
    /// free compares it).
    #[inline(always)]
    fn check_word(addr: usize) -> u64 {
        addr as u64 ^ Self::KEY
    }

    /// Decodes a header whose block's link word (a free block's encoded link) is `link`.
    fn decode(w: [u64; 2], link: u64, addr: usize) -> Result<Header, HeaderError> {
        let tag = w[0] as u8;
        let state = match tag {
            Self::TAG_ALLOCATED => BlockState::Allocated,
            Self::TAG_FREE => BlockState::Free,
            _ => {
                return Err(HeaderError {
                    found_tag: tag,
                    found: w[0],
                    check_failed: false,
                })
            }
        };
        let check = Self::check_word(addr);
        // A free block in a list has its link's complement for check word (see `Header`).
        let linked = state == BlockState::Free && w[1] == !link;
        if !(w[1] == check || linked) || (w[0] >> 16) as u16 != 0 {
            return Err(HeaderError {
                found_tag: tag,
                found: w[0],
                check_failed: true,
            });
        }
        Ok(Header {
            state,
            class: (w[0] >> 8) as u8,
            requested: (w[0] >> 32) as u32,
        })
    }
}

static_assertions::assert_eq_size!(BlockBase<tiny_layout::Plain>, *mut u8);
static_assertions::assert_eq_size!(UserPtr<tiny_layout::Guarded>, *mut u8);
static_assertions::assert_eq_size!(Option<BlockBase<tiny_layout::Plain>>, *mut u8);

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use tiny_layout::{Guarded, Plain};

    #[repr(align(16))]
    struct Block([u8; 64]);

    fn base<L: BlockLayout>(b: &mut Block) -> BlockBase<L> {
        // SAFETY: test block of 64 bytes, 16-aligned, used as one block.
        unsafe { BlockBase::from_raw(NonNull::new(b.0.as_mut_ptr()).unwrap()) }
    }

    #[test]
    fn round_trips_in_both_layouts() {
        let mut b = Block([0; 64]);
        let p = base::<Plain>(&mut b);
        assert_eq!(p.to_user().addr(), p.addr());
        assert_eq!(p.to_user().to_base(), p);
        let g = base::<Guarded>(&mut b);
        assert_eq!(g.to_user().addr(), g.addr() + 16);
        assert_eq!(g.to_user().to_base(), g);
    }

    #[test]
    fn link_lives_after_the_header() {
        let mut b = Block([0; 64]);
        let mut other = Block([0; 64]);
        let g = base::<Guarded>(&mut b);
        let n = base::<Guarded>(&mut other);
        unsafe {
            g.write_header(Header {
                state: BlockState::Free,
                class: 3,
                requested: 40,
            });
            g.set_link(Some(n));
            assert_eq!(g.link(), Some(n));
            // The header survives the link write.
            assert_eq!(g.read_header().unwrap().class, 3);
            g.set_link(None);
            assert_eq!(g.link(), None);
        }
    }

    #[test]
    fn header_detects_overwrite_and_relocation() {
        let mut b = Block([0; 64]);
        let g = base::<Guarded>(&mut b);
        let h = Header {
            state: BlockState::Allocated,
            class: 1,
            requested: 17,
        };
        unsafe {
            g.write_header(h);
            assert_eq!(g.read_header(), Ok(h));
            b.0[0] = 0x31; // user data where the tag was
            let e = base::<Guarded>(&mut b).read_header().unwrap_err();
            assert_eq!(e.found_tag, 0x31);
            assert!(!e.check_failed);
        }
        // A valid header copied to another address does not check.
        let mut b2 = Block([0; 64]);
        let g2 = base::<Guarded>(&mut b2);
        unsafe {
            g2.write_header(h);
            let words = g2.as_ptr().cast::<[u64; 2]>().read();
            b.0.as_mut_ptr().cast::<[u64; 2]>().write(words);
            assert!(
                base::<Guarded>(&mut b)
                    .read_header()
                    .unwrap_err()
                    .check_failed
            );
        }
    }

    #[test]
    #[should_panic(expected = "free list corrupted")]
    fn guarded_links_are_verified_when_followed() {
        let mut b = Block([0; 64]);
        let mut other = Block([0; 64]);
        let g = base::<Guarded>(&mut b);
        let n = base::<Guarded>(&mut other);
        unsafe {
            g.write_header(FREE);
            g.set_link(Some(n));
            // Stored encoded: the raw word is not the pointer.
            assert_ne!(b.0.as_ptr().add(16).cast::<usize>().read(), n.addr());
            assert_eq!(base::<Guarded>(&mut b).link(), Some(n));
            b.0[16] ^= 0x40; // a write after free
            base::<Guarded>(&mut b).link(); // panics: no reporter installed in tests
        }
    }

    const FREE: Header = Header {
        state: BlockState::Free,
        class: 1,
        requested: 0,
    };

    /// An overflow from the block below that reaches a free block's check word (the
    /// link's complement) went through its tag first: named as such, not as a write after
    /// free.
    #[test]
    #[should_panic(expected = "header overwritten")]
    fn an_overflow_into_a_linked_header_is_named() {
        let mut b = Block([0; 64]);
        let g = base::<Guarded>(&mut b);
        unsafe {
            g.write_header(FREE);
            g.set_link(None);
            assert_eq!(base::<Guarded>(&mut b).read_header(), Ok(FREE));
            b.0[..16].fill(0x31);
            base::<Guarded>(&mut b).link();
        }
    }

    #[test]
    fn siphash_is_the_reference_siphash_2_4() {
        #[allow(deprecated)]
        fn reference(key: [u64; 2], m: u64) -> u64 {
            use core::hash::{Hasher, SipHasher};
            let mut h = SipHasher::new_with_keys(key[0], key[1]);
            h.write(&m.to_le_bytes());
            h.finish()
        }
        // The paper's test vector: key 00 01 .. 0f, message 00 01 .. 07.
        let key = [0x0706_0504_0302_0100, 0x0f0e_0d0c_0b0a_0908];
        assert_eq!(siphash24(key, 0x0706_0504_0302_0100), 0x93f5_f579_9a93_2462);
        for (i, m) in [0u64, 1, 0x7f12_3456_0000, u64::MAX]
            .into_iter()
            .enumerate()
        {
            let key = [0x3c6e_f372_fe94_f82b ^ i as u64, 0xa54f_f53a_5f1d_36f1];
            assert_eq!(siphash24(key, m), reference(key, m), "message {m:#x}");
        }
    }

    #[test]
    fn list_keys_are_distinct_odd_and_not_the_chain_key() {
        let keys: std::vec::Vec<usize> = (1..=64).map(|i| list_key(i << 16)).collect();
        for (i, &k) in keys.iter().enumerate() {
            assert_eq!(k & 1, 1);
            assert_ne!(k, secret().chain_key);
            assert!(
                keys[..i].iter().all(|&o| o != k),
                "slab {} repeats a key",
                i + 1
            );
        }
    }

    /// A slab's list writes its key as the free mark with each link; a chain's link leaves
    /// the mark to the chain's owner.
    #[test]
    fn the_free_mark_is_the_list_key() {
        let (mut b, mut other) = (Block([0; 64]), Block([0; 64]));
        let (p, n) = (base::<Plain>(&mut b), base::<Plain>(&mut other));
        let key = list_key(0x7f00_0001_0000);
        // SAFETY: `p` and `n` are blocks of this test's own buffers, free and unshared.
        unsafe {
            p.set_link_keyed(Some(n), key);
            assert!(p.is_marked_free(key));
            assert!(!p.is_marked_free(list_key(0x7f00_0002_0000)));
            assert_eq!(p.link_keyed(key), Some(n));
            p.clear_free_mark();
            assert!(!p.is_marked_free(key));
            p.set_link(Some(n));
            assert!(!p.is_marked_free(key));
            assert_eq!(p.link(), Some(n));
            p.set_free_mark(key);
            assert!(p.is_marked_free(key));
            assert_eq!(p.link(), Some(n));
        }
        // The chain link's word is neither the address nor the slab key mixed in.
        // SAFETY: `p`'s first word lies in its 64-byte buffer, aligned.
        let raw = unsafe { p.as_ptr().cast::<usize>().read() };
        assert_ne!(raw, n.addr() ^ key);
        assert_eq!(raw, n.addr() ^ p.addr() ^ secret().chain_key);
    }

    #[test]
    fn plain_layout_has_no_header() {
        let mut b = Block([0x55; 64]);
        let p = base::<Plain>(&mut b);
        unsafe {
            p.write_header(Header {
                state: BlockState::Allocated,
                class: 9,
                requested: 1,
            });
            assert_eq!(b.0[0], 0x55);
            assert_eq!(base::<Plain>(&mut b).read_header(), Ok(Header::NONE));
        }
    }
}
