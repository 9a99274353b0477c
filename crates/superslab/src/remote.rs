//! The remote-free queue: many threads push, the owner takes everything at once.

use core::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};
use ptr_conversion::{BlockBase, BlockLayout};
use tls_sll::FreeList;

/// Chains [`RemoteQueue::drain`] walks side by side.
pub const LANES: usize = 8;

/// A lock-free multi-producer, single-consumer stack of free blocks, linked through the
/// blocks' own links.
///
/// The stack is made of **chains**: a [`push`](Self::push) adds a chain of one block, a
/// [`push_chain`](Self::push_chain) one of many; a chain's tail links to the head of the
/// chain pushed before it. A chain's head also keeps, in the word after its link (in the
/// smallest class too, in both layouts of `tiny_layout`), the head of the chain below it:
/// the consumer finds every chain with one cache miss per chain, then walks up to `LANES`
/// (8) chains side by side, so that their blocks' cache misses overlap instead of forming
/// one dependent chain of misses per block.
///
/// Ordering contract: [`push`](Self::push) writes the block's link, then publishes the
/// block with a `Release` CAS; [`drain`](Self::drain) (and [`take_all`](Self::take_all),
/// built on it) swaps the head out with `Acquire`. Both words a push writes (the tail's
/// link, the head's next-chain word) are written before its CAS. All pushes are
/// read-modify-writes of one atomic, so the consumer's acquire synchronises with every push before it: it sees every link and every write
/// the freeing threads made to their blocks. One atomic operation per push (a CAS,
/// retried only under contention); no ABA hazard because the consumer never pops one
/// element, it takes the whole stack.
///
/// ```
/// use core::ptr::NonNull;
/// use ptr_conversion::BlockBase;
/// use superslab::RemoteQueue;
/// use tiny_layout::Plain;
/// use tls_sll::FreeList;
///
/// #[repr(align(16))]
/// struct Blocks([[u8; 16]; 8]);
/// let mut mem = Box::new(Blocks([[0; 16]; 8]));
/// let addrs: Vec<usize> = mem.0.iter_mut().map(|b| b.as_mut_ptr() as usize).collect();
/// let queue = RemoteQueue::<Plain>::new();
/// std::thread::scope(|s| {
///     for half in addrs.chunks(4) {
///         let queue = &queue;
///         s.spawn(move || {
///             for &a in half {
///                 let b = NonNull::new(a as *mut u8).unwrap();
///                 // SAFETY: each free block is handed over exactly once.
///                 unsafe { queue.push(BlockBase::from_raw(b)) };
///             }
///         });
///     }
/// });
/// // The owner takes everything with one swap.
/// let mut got = FreeList::<Plain>::new(u32::MAX);
/// assert_eq!(queue.take_all(&mut got), 8);
/// assert!(queue.is_empty());
/// ```
pub struct RemoteQueue<L: BlockLayout> {
    head: AtomicPtr<u8>,
    /// The head of the chain the consumer last [put back](Self::put_back) (0: none since
    /// its last drain): while it is still the head, nothing new was pushed. Consumer only.
    put_back: AtomicUsize,
    _layout: core::marker::PhantomData<L>,
}

// SAFETY: the queue only holds addresses of blocks handed over with the ordering above.
unsafe impl<L: BlockLayout> Sync for RemoteQueue<L> {}
// SAFETY: as above.
unsafe impl<L: BlockLayout> Send for RemoteQueue<L> {}

impl<L: BlockLayout> RemoteQueue<L> {
    /// An empty queue.
    pub const fn new() -> Self {
        RemoteQueue {
            head: AtomicPtr::new(core::ptr::null_mut()),
            put_back: AtomicUsize::new(0),
            _layout: core::marker::PhantomData,
        }
    }

    /// Hands a block to the owner. Overwrites the block's link and the word after it.
    ///
    /// # Safety
    /// The caller gives up `b` (a free block whose owner consumes this queue); nobody
    /// touches it afterwards but the consumer.
    pub unsafe fn push(&self, b: BlockBase<L>) {
        // SAFETY: forwarded; a single block is a chain whose head is its tail.
        unsafe { self.push_chain(b, b) }
    }

    /// Hands a whole chain `head` … `tail` (linked through their links) to the owner with
    /// one CAS: remote frees batched by the freeing thread. Overwrites the tail's link and
    /// the word after the head's link.
    ///
    /// # Safety
    /// The caller gives up every block of the chain, as for [`push`](Self::push).
    pub unsafe fn push_chain(&self, head: BlockBase<L>, tail: BlockBase<L>) {
        let mut old = self.head.load(Ordering::Relaxed);
        loop {
            // SAFETY: we own the chain until the CAS publishes it.
            unsafe {
                tail.set_link(BlockBase::from_raw_opt(old));
                set_next_chain(head, old);
            }
            match self.head.compare_exchange_weak(
                old,
                head.as_ptr(),
                Ordering::Release,
                Ordering::Relaxed,
            ) {
                Ok(_) => return,
                Err(h) => old = h,
            }
        }
    }

    /// True if nothing is queued (a cheap, relaxed hint).
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.head.load(Ordering::Relaxed).is_null()
    }

    /// Hands back to the queue (consumer only) a chain the consumer took but leaves for
    /// a later drain; until something else is pushed, [`has_news`](Self::has_news) is false.
    ///
    /// # Safety
    /// As for [`push_chain`](Self::push_chain): blocks the consumer drained.
    pub unsafe fn put_back(&self, head: BlockBase<L>, tail: BlockBase<L>) {
        // SAFETY: forwarded.
        unsafe { self.push_chain(head, tail) };
        self.put_back.store(head.addr(), Ordering::Relaxed);
    }

    /// Whether blocks were pushed since the consumer's last drain or [`put_back`]
    /// (consumer only; a relaxed hint, exact once pushes have stopped).
    ///
    /// [`put_back`]: Self::put_back
    #[inline]
    pub fn has_news(&self) -> bool {
        let head = self.head.load(Ordering::Relaxed) as usize;
        head != 0 && head != self.put_back.load(Ordering::Relaxed)
    }

    /// Takes every queued block into `out` (consumer only); returns how many.
    pub fn take_all(&self, out: &mut FreeList<L>) -> u32 {
        self.drain(
            |_| true,
            |b| {
                // SAFETY: the block is now exclusively ours.
                unsafe { out.push(b) }
            },
        )
    }

    /// Takes every queued block and hands each to `f`, in one pass over the links
    /// (consumer only); returns how many. Every decoded link and next-chain word is given
    /// to `valid` before it is followed: one it refuses (a write after free into a queued
    /// block) is reported through `ptr_conversion::misuse` and not followed, the blocks
    /// behind it are leaked. `f` owns the block it gets and may overwrite its
    /// link: the next block's address is read before `f` runs, and the block after it is
    /// prefetched meanwhile (the links form a dependent chain of cache lines the freeing
    /// threads wrote last, so each step is usually a cache miss).
    ///
    /// ```
    /// use core::ptr::NonNull;
    /// use ptr_conversion::BlockBase;
    /// use superslab::RemoteQueue;
    /// use tiny_layout::Plain;
    ///
    /// #[repr(align(16))]
    /// struct Blocks([[u8; 16]; 4]);
    /// let mut mem = Blocks([[0; 16]; 4]);
    /// let queue = RemoteQueue::<Plain>::new();
    /// for b in mem.0.iter_mut() {
    ///     let b = NonNull::new(b.as_mut_ptr()).unwrap();
    ///     // SAFETY: each free block is handed over exactly once.
    ///     unsafe { queue.push(BlockBase::from_raw(b)) };
    /// }
    /// let mut seen = Vec::new();
    /// assert_eq!(queue.drain(|_| true, |b| seen.push(b.addr())), 4);
    /// seen.reverse(); // a stack: the last pushed comes first
    /// assert_eq!(seen, mem.0.iter().map(|b| b.as_ptr() as usize).collect::<Vec<_>>());
    /// assert!(queue.is_empty());
    /// ```
    pub fn drain(&self, valid: impl Fn(*mut u8) -> bool, mut f: impl FnMut(BlockBase<L>)) -> u32 {
        if self.is_empty() {
            return 0;
        }
        self.put_back.store(0, Ordering::Relaxed);
        let mut top = self.head.swap(core::ptr::null_mut(), Ordering::Acquire);
        if !chain_index::<L>() {
            return walk(top, core::ptr::null_mut(), &valid, &mut f);
        }
        let mut n = 0;
        while !top.is_null() {
            // Up to LANES chains: their heads, found through the heads' next-chain words
            // (one miss per chain); chain j ends where chain j + 1 begins.
            let mut cur = [core::ptr::null_mut::<u8>(); LANES];
            let mut lanes = 0;
            while lanes < LANES && !top.is_null() {
                cur[lanes] = top;
                // SAFETY: `top` is a chain head published by a push (see above), whose
                // next-chain word was written before that push's CAS.
                let next = unsafe { next_chain::<L>(top) };
                if !next.is_null() && !valid(next) {
                    // The rest of the queue cannot be found: leaked.
                    corrupted(top);
                    top = core::ptr::null_mut();
                } else {
                    top = next;
                }
                lanes += 1;
            }
            let mut end = [core::ptr::null_mut::<u8>(); LANES];
            end[..lanes - 1].copy_from_slice(&cur[1..lanes]);
            end[lanes - 1] = top;
            // One block of each unfinished chain per round: independent loads.
            let mut busy = true;
            while busy {
                busy = false;
                for j in 0..lanes {
                    let p = cur[j];
                    if p == end[j] || p.is_null() {
                        continue;
                    }
                    // SAFETY: `p` is a published block of this chain; its link is read
                    // before `f` takes the block.
                    let b =
                        unsafe { BlockBase::<L>::from_raw(core::ptr::NonNull::new_unchecked(p)) };
                    // SAFETY: `b` was published by a push (or checked by `valid` as it
                    // was decoded): a free block whose link that push wrote.
                    let mut next =
                        unsafe { b.link() }.map_or(core::ptr::null_mut(), |b| b.as_ptr());
                    if next != end[j] && !next.is_null() && !valid(next) {
                        // This chain's rest is lost (leaked); the others go on.
                        corrupted(p);
                        next = core::ptr::null_mut();
                    }
                    prefetch(next);
                    cur[j] = next;
                    busy |= next != end[j] && !next.is_null();
                    f(b);
                    n += 1;
                }
            }
        }
        n
    }
}

/// Walks the blocks from `p` up to (not including) `end`, reading each link before `f`
/// takes the block; returns how many.
fn walk<L: BlockLayout>(
    mut p: *mut u8,
    end: *mut u8,
    valid: &impl Fn(*mut u8) -> bool,
    f: &mut impl FnMut(BlockBase<L>),
) -> u32 {
    let mut n = 0;
    while p != end {
        // SAFETY: (caller) every block up to `end` was published by a push and acquired;
        // its link is the next element. Non-null: the walk stops at `end` or null.
        let Some(b) = (unsafe { BlockBase::<L>::from_raw_opt(p) }) else {
            break;
        };
        // SAFETY: `b` was published by a push, which wrote its link before its Release
        // CAS; our Acquire swap made that write visible.
        p = unsafe { b.link() }.map_or(core::ptr::null_mut(), |n| n.as_ptr());
        if p != end && !p.is_null() && !valid(p) {
            corrupted(b.as_ptr());
            p = end;
        }
        prefetch(p);
        f(b);
        n += 1;
    }
    n
}

/// True if a block of layout `L` has a spare word after its link even in the smallest
/// class, where a chain head keeps the next chain. (The link takes one word of the user
/// area in every layout: a checked layout keeps its complement in the header.)
const fn chain_index<L: BlockLayout>() -> bool {
    L::LINK_OFFSET + 16 <= L::HEADER_SIZE + SMALLEST_BLOCK
}

/// User bytes of the smallest class.
const SMALLEST_BLOCK: usize = match tiny_layout::SizeClass::new(0) {
    Some(c) => c.block_size(),
    None => 0,
};

/// Writes a chain head's next-chain word (nothing in layouts without one), encoded as
/// links are (`ptr_conversion`).
///
/// # Safety
/// The caller owns the free block `b`.
#[inline(always)]
unsafe fn set_next_chain<L: BlockLayout>(b: BlockBase<L>, next: *mut u8) {
    if chain_index::<L>() {
        // SAFETY: the word after the link lies in the block (`chain_index`), 8-aligned.
        unsafe { b.set_spare_word(next as usize) }
    }
}

/// Reads a chain head's next-chain word.
///
/// # Safety
/// `p` is a published chain head and `chain_index::<L>()` holds.
#[inline(always)]
unsafe fn next_chain<L: BlockLayout>(p: *mut u8) -> *mut u8 {
    // SAFETY: as in `set_next_chain`; `p` is a block (non-null).
    unsafe {
        BlockBase::<L>::from_raw(core::ptr::NonNull::new_unchecked(p)).spare_word() as *mut u8
    }
}

/// A decoded link or next-chain word of a queued block (`from`, the block it was read
/// from) does not point to a block `valid` accepts: a write after free. Reported as a
/// misuse; the caller stops following it (the blocks behind it are leaked).
#[cold]
#[inline(never)]
fn corrupted(from: *mut u8) {
    ptr_conversion::misuse(&ptr_conversion::Report {
        what: ptr_conversion::Corruption::FreeListCorrupted,
        addr: from as usize,
        class: None,
        expected: 0,
        found: 0,
    });
}

impl<L: BlockLayout> Default for RemoteQueue<L> {
    fn default() -> Self {
        Self::new()
    }
}

/// A hint to start loading the cache line at `p` (null or a block); no effect on
/// targets without one.
#[inline(always)]
fn prefetch(p: *mut u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch never faults, whatever the address.
    unsafe {
        core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(p as *const i8)
    };
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// Small helper on BlockBase for nullable raw pointers.
trait FromRawOpt<L: BlockLayout>: Sized {
    unsafe fn from_raw_opt(p: *mut u8) -> Option<Self>;
}
impl<L: BlockLayout> FromRawOpt<L> for BlockBase<L> {
    unsafe fn from_raw_opt(p: *mut u8) -> Option<Self> {
        // SAFETY: forwarded: `p` is null or a block base of layout L.
        core::ptr::NonNull::new(p).map(|p| unsafe { BlockBase::from_raw(p) })
    }
}
