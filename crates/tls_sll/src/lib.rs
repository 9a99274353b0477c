//! # tls_sll: per-class intrusive free lists
//!
//! LIFO singly linked lists of free blocks of one class, threaded through the blocks
//! themselves (the link lives where `ptr_conversion` says), with a count and a cap: in
//! hakmem, each slab's free list (`superslab::Slab`), which malloc pops from and free
//! pushes onto. Where a list lives is its user's choice; this crate is plain single-owner
//! data.
//!
//! ## Invariants owned here
//! - `pushes - pops` ([`FreeList::len`]) is exactly the number of blocks reachable from
//!   `head`.
//! - Lists hold [`BlockBase`]s only (never user pointers): the type admits nothing else.
//! - A list never grows past its cap through [`FreeList::push_bounded`]; callers that must
//!   exceed it (a refill batch) use [`FreeList::push`] and the cap is restored by a spill.
//! - Every block in a list is owned by the list's owner: no other thread touches it.
//!
//! ## Example
//! ```
//! use core::ptr::NonNull;
//! use ptr_conversion::BlockBase;
//! use tiny_layout::Plain;
//! use tls_sll::FreeList;
//!
//! #[repr(align(16))]
//! struct Blocks([[u8; 32]; 4]);
//! let mut mem = Blocks([[0; 32]; 4]);
//! // SAFETY: four free, 16-aligned blocks of 32 bytes, owned here.
//! let blocks = mem.0.each_mut().map(|b| unsafe {
//!     BlockBase::<Plain>::from_raw(NonNull::new(b.as_mut_ptr()).unwrap())
//! });
//!
//! let mut list = FreeList::<Plain>::new(3); // cap 3
//! for b in &blocks[..3] {
//!     unsafe { list.push_bounded(*b) }.unwrap();
//! }
//! assert_eq!(unsafe { list.push_bounded(blocks[3]) }, Err(blocks[3])); // full
//! assert_eq!(list.len(), 3);
//! assert_eq!(list.pop(), Some(blocks[2])); // LIFO
//! ```
#![no_std]
#![warn(missing_docs)]

use ptr_conversion::{BlockBase, BlockLayout, SizeClass};
use tiny_layout::CLASS_COUNT;

/// A bare LIFO stack of free blocks: one word, nothing counted. For an owner that counts
/// in its own terms (a slab counts the blocks the program holds); [`FreeList`] is a stack
/// with its counts and cap.
///
/// ```
/// # use core::ptr::NonNull;
/// # use ptr_conversion::BlockBase;
/// # use tiny_layout::Plain;
/// use tls_sll::Stack;
/// # #[repr(align(16))]
/// # struct Blocks([[u8; 32]; 2]);
/// # let mut mem = Blocks([[0; 32]; 2]);
/// # let [a, b] = mem.0.each_mut().map(|b| unsafe {
/// #     BlockBase::<Plain>::from_raw(NonNull::new(b.as_mut_ptr()).unwrap())
/// # });
/// let mut s = Stack::<Plain>::new();
/// // SAFETY: free blocks owned here.
/// unsafe {
///     s.push(a);
///     s.push(b);
/// }
/// assert_eq!((s.pop(), s.pop(), s.pop()), (Some(b), Some(a), None));
/// ```
///
/// With `KEYED`, the stack stores its links XORed with a key of its own
/// ([`with_key`](Self::with_key), `ptr_conversion::BlockBase::link_keyed`: one XOR per
/// link, and the key is the free mark of its blocks: a slab's list); without, as
/// `ptr_conversion::BlockBase::link` does (the link's address and the chain key, no free
/// mark), as chains and other lists of blocks do.
pub struct Stack<L: BlockLayout, const KEYED: bool = false> {
    head: Option<BlockBase<L>>,
    /// What every link is XORed with when `KEYED`.
    key: usize,
}

impl<L: BlockLayout, const KEYED: bool> Stack<L, KEYED> {
    /// An empty stack (key 0).
    pub const fn new() -> Self {
        Self::with_key(0)
    }
    /// An empty stack whose links are stored XORed with `key` when `KEYED` (a slab's list
    /// uses `ptr_conversion::list_key` of its start).
    pub const fn with_key(key: usize) -> Self {
        Stack { head: None, key }
    }
    /// The key its links are XORed with when `KEYED` (a slab's list: also its blocks' free
    /// mark, see `ptr_conversion::BlockBase::set_link_keyed`).
    #[inline(always)]
    pub fn key(&self) -> usize {
        self.key
    }
    /// Empties the stack (its blocks are dropped from it; the key stays).
    pub fn clear(&mut self) {
        self.head = None;
    }
    /// `b`'s link (`b` in this stack).
    ///
    /// # Safety
    /// `b` is in this stack, its link written by this stack.
    #[inline(always)]
    pub unsafe fn next_of(&self, b: BlockBase<L>) -> Option<BlockBase<L>> {
        // SAFETY: (caller).
        unsafe {
            if KEYED {
                b.link_keyed(self.key)
            } else {
                b.link()
            }
        }
    }
    /// Writes `b`'s link (`b` free, owned by this stack's owner).
    ///
    /// # Safety
    /// The caller owns the free block `b`.
    #[inline(always)]
    pub unsafe fn set_next(&self, b: BlockBase<L>, next: Option<BlockBase<L>>) {
        // SAFETY: (caller).
        unsafe {
            if KEYED {
                b.set_link_keyed(next, self.key)
            } else {
                b.set_link(next)
            }
        }
    }
    /// No blocks?
    #[inline(always)]
    pub fn is_empty(&self) -> bool {
        self.head.is_none()
    }
    /// The block [`pop`](Self::pop) would return, left on the stack (a caller that checks
    /// a block before reading its link).
    #[inline(always)]
    pub fn peek(&self) -> Option<BlockBase<L>> {
        self.head
    }
    /// Pops the most recently pushed block.
    #[inline(always)]
    pub fn pop(&mut self) -> Option<BlockBase<L>> {
        let b = self.head?;
        // SAFETY: `b` is in this stack, so it is free, owned by us, and its link was
        // written by `push` (or by whoever built a run given to `adopt`/`push_chain`).
        self.head = unsafe { self.next_of(b) };
        Some(b)
    }
    /// Pushes a free block.
    ///
    /// # Safety
    /// The caller owns `b`, it is free (nobody uses its bytes) and it is in no other list.
    #[inline(always)]
    pub unsafe fn push(&mut self, b: BlockBase<L>) {
        // SAFETY: the caller owns the free block `b`.
        unsafe { self.set_next(b, self.head) };
        self.head = Some(b);
    }
    /// The blocks, most recently pushed first (the stack is not changed).
    pub fn iter(&self) -> impl Iterator<Item = BlockBase<L>> + '_ {
        // SAFETY: as in `pop`: every block reached is in this stack, with its link written.
        core::iter::successors(self.head, |&b| unsafe { self.next_of(b) })
    }
    /// Unlinks every block for which `keep` is false, keeping the others in their order.
    ///
    /// ```
    /// # use core::ptr::NonNull;
    /// # use ptr_conversion::BlockBase;
    /// # use tiny_layout::Plain;
    /// # use tls_sll::Stack;
    /// # #[repr(align(16))]
    /// # struct Blocks([[u8; 32]; 3]);
    /// # let mut mem = Blocks([[0; 32]; 3]);
    /// # let [a, b, c] = mem.0.each_mut().map(|b| unsafe {
    /// #     BlockBase::<Plain>::from_raw(NonNull::new(b.as_mut_ptr()).unwrap())
    /// # });
    /// let mut s = Stack::<Plain>::new();
    /// // SAFETY: free blocks owned here.
    /// unsafe { [a, b, c].into_iter().for_each(|x| s.push(x)) };
    /// s.retain(|x| x != b);
    /// assert!(s.iter().eq([c, a]));
    /// ```
    pub fn retain(&mut self, mut keep: impl FnMut(BlockBase<L>) -> bool) {
        let mut kept: Option<BlockBase<L>> = None;
        let mut next = self.head;
        while let Some(b) = next {
            // SAFETY: `b` is in this stack (as in `pop`).
            next = unsafe { self.next_of(b) };
            if keep(b) {
                match kept {
                    None => self.head = Some(b),
                    // SAFETY: `k` is in this stack, owned by its owner and free.
                    Some(k) => unsafe { self.set_next(k, Some(b)) },
                }
                kept = Some(b);
            }
        }
        match kept {
            None => self.head = None,
            // SAFETY: as above.
            Some(k) => unsafe { self.set_next(k, None) },
        }
    }
}

impl<L: BlockLayout, const KEYED: bool> Default for Stack<L, KEYED> {
    fn default() -> Self {
        Self::new()
    }
}

/// One LIFO free list with its counts and cap (40 bytes): a [`Stack`] that counts.
///
/// The links are threaded through the blocks themselves (`ptr_conversion` says where),
/// so a list needs no memory of its own. See the [crate example](crate) for push and pop.
///
/// The length is kept as two running counts, blocks pushed and blocks popped, each
/// written only by its own operation: a pop right after a push (a `free` then a `malloc`)
/// never waits on a count the push just wrote, and the count of pushes is the list's
/// total intake (a slab's frees).
pub struct FreeList<L: BlockLayout> {
    stack: Stack<L>,
    pushes: u64,
    pops: u64,
    cap: u32,
}

/// A detached run of blocks (`head` … `tail`, `count` long) moving between lists.
///
/// Splicing a chain into a list is O(1) whatever its length, which is what makes batch
/// moves (refills, spills, remote frees) cheap.
///
/// ```
/// # use core::ptr::NonNull;
/// # use ptr_conversion::BlockBase;
/// # use tiny_layout::Plain;
/// use tls_sll::FreeList;
/// # #[repr(align(16))]
/// # struct Blocks([[u8; 32]; 5]);
/// # let mut mem = Blocks([[0; 32]; 5]);
/// # let blocks = mem.0.each_mut().map(|b| unsafe {
/// #     BlockBase::<Plain>::from_raw(NonNull::new(b.as_mut_ptr()).unwrap())
/// # });
/// let mut a = FreeList::<Plain>::new(8);
/// for b in blocks {
///     // SAFETY: free blocks owned here (see the crate example).
///     unsafe { a.push(b) };
/// }
/// let chain = a.take(3).unwrap(); // the three most recently pushed
/// assert_eq!((chain.len(), a.len()), (3, 2));
/// let (first, rest) = chain.split_first();
/// assert_eq!(first, blocks[4]);
/// let mut b = FreeList::<Plain>::new(8);
/// b.push_chain(rest.unwrap()); // O(1) splice
/// assert_eq!(b.len(), 2);
/// assert_eq!(b.pop(), Some(blocks[3]));
/// ```
pub struct Chain<L: BlockLayout> {
    head: BlockBase<L>,
    tail: BlockBase<L>,
    count: u32,
}

impl<L: BlockLayout> Chain<L> {
    /// Blocks in the chain.
    pub fn len(&self) -> u32 {
        self.count
    }
    /// Never true: a chain has at least one block.
    pub fn is_empty(&self) -> bool {
        false
    }
}

impl<L: BlockLayout> FreeList<L> {
    /// The largest cap (caps above it are lowered to it).
    pub const MAX_CAP: u32 = i32::MAX as u32;

    /// An empty list with cap `cap` (at most [`MAX_CAP`](Self::MAX_CAP)).
    pub const fn new(cap: u32) -> Self {
        let cap = if cap > Self::MAX_CAP {
            Self::MAX_CAP
        } else {
            cap
        };
        FreeList {
            stack: Stack::new(),
            pushes: 0,
            pops: 0,
            cap,
        }
    }
    /// Blocks in the list.
    #[inline(always)]
    pub fn len(&self) -> u32 {
        self.pushes.wrapping_sub(self.pops) as u32
    }
    /// Blocks pushed onto the list so far (chains count their blocks).
    #[inline(always)]
    pub fn pushes(&self) -> u64 {
        self.pushes
    }
    /// No blocks?
    #[inline(always)]
    pub fn is_empty(&self) -> bool {
        self.stack.is_empty()
    }
    /// The cap.
    #[inline(always)]
    pub fn cap(&self) -> u32 {
        self.cap
    }
    /// Changes the cap (at most [`MAX_CAP`](Self::MAX_CAP); blocks above it stay until
    /// the next spill).
    pub fn set_cap(&mut self, cap: u32) {
        self.cap = cap.min(Self::MAX_CAP);
    }

    /// Pops the most recently pushed block.
    #[inline(always)]
    pub fn pop(&mut self) -> Option<BlockBase<L>> {
        let b = self.stack.pop()?;
        self.pops = self.pops.wrapping_add(1);
        Some(b)
    }

    /// Pushes a block if the list is below its cap; gives it back otherwise.
    ///
    /// # Safety
    /// As for [`push`](Self::push).
    #[inline(always)]
    pub unsafe fn push_bounded(&mut self, b: BlockBase<L>) -> Result<(), BlockBase<L>> {
        if self.len() < self.cap {
            // SAFETY: forwarded.
            unsafe { self.push(b) };
            Ok(())
        } else {
            Err(b)
        }
    }

    /// Pushes a block regardless of the cap.
    ///
    /// # Safety
    /// The caller owns `b`, it is free (nobody uses its bytes) and it is in no other list.
    #[inline(always)]
    pub unsafe fn push(&mut self, b: BlockBase<L>) {
        // SAFETY: forwarded.
        unsafe { self.stack.push(b) };
        self.pushes = self.pushes.wrapping_add(1);
    }

    /// Detaches up to `n` blocks from the head as a chain; `None` if the list is empty or
    /// `n` is 0.
    pub fn take(&mut self, n: u32) -> Option<Chain<L>> {
        if n == 0 {
            return None;
        }
        let head = self.stack.head?;
        let mut tail = head;
        let mut count = 1;
        while count < n {
            // SAFETY: `tail` is in this list (see `pop`).
            match unsafe { tail.link() } {
                Some(next) => {
                    tail = next;
                    count += 1;
                }
                None => break,
            }
        }
        // SAFETY: as above.
        self.stack.head = unsafe { tail.link() };
        self.pops = self.pops.wrapping_add(count as u64);
        Some(Chain { head, tail, count })
    }

    /// Detaches the whole list as a chain.
    pub fn take_all(&mut self) -> Option<Chain<L>> {
        let n = self.len();
        self.take(n)
    }

    /// Puts a chain in front of the list.
    pub fn push_chain(&mut self, c: Chain<L>) {
        // SAFETY: the chain's blocks are free and ours (a chain only comes from `take`
        // or `Chain::from_raw_parts`, whose caller vouches for them).
        unsafe { c.tail.set_link(self.stack.head) };
        self.stack.head = Some(c.head);
        self.pushes = self.pushes.wrapping_add(c.count as u64);
    }
}

impl<L: BlockLayout> Chain<L> {
    /// Builds a chain from already linked blocks.
    ///
    /// # Safety
    /// `head` … `tail` must be `count` free blocks owned by the caller, linked through
    /// their links, and `tail`'s link may be anything (it is overwritten on splice).
    pub unsafe fn from_raw_parts(head: BlockBase<L>, tail: BlockBase<L>, count: u32) -> Self {
        Chain { head, tail, count }
    }
    /// Pops the first block; `None` when it was the last (the chain is consumed).
    pub fn split_first(self) -> (BlockBase<L>, Option<Chain<L>>) {
        if self.count == 1 {
            (self.head, None)
        } else {
            // SAFETY: count > 1, so head's link is the next block of the chain.
            let next = unsafe { self.head.link() }.expect("chain shorter than its count");
            (
                self.head,
                Some(Chain {
                    head: next,
                    tail: self.tail,
                    count: self.count - 1,
                }),
            )
        }
    }
}

/// One free list per size class: a thread cache's lists, indexed by [`SizeClass`].
///
/// ```
/// use tiny_layout::{class_of, Plain, SizeClass};
/// use tls_sll::ClassLists;
/// let mut cache = ClassLists::<Plain>::new();
/// for c in SizeClass::all() {
///     cache.get(c).set_cap(64);
/// }
/// let c = class_of(48).unwrap();
/// assert!(cache.get(c).is_empty());
/// assert_eq!(cache.get(c).cap(), 64);
/// ```
pub struct ClassLists<L: BlockLayout> {
    lists: [FreeList<L>; CLASS_COUNT],
}

impl<L: BlockLayout> ClassLists<L> {
    /// Empty lists, all with cap 0 (every bounded push overflows until caps are set).
    pub const fn new() -> Self {
        ClassLists {
            lists: [const { FreeList::new(0) }; CLASS_COUNT],
        }
    }
    /// The list of class `c`.
    #[inline(always)]
    pub fn get(&mut self, c: SizeClass) -> &mut FreeList<L> {
        // SAFETY: a SizeClass's index is < CLASS_COUNT (tiny_layout's invariant).
        unsafe { self.lists.get_unchecked_mut(c.index()) }
    }
    /// All lists, smallest class first.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut FreeList<L>> {
        self.lists.iter_mut()
    }
}

impl<L: BlockLayout> Default for ClassLists<L> {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests;
