//! The remote-free queue: many threads push, the owner takes everything at once.

use core::sync::atomic::{AtomicPtr, Ordering};
use ptr_conversion::{BlockBase, BlockLayout};
use tls_sll::FreeList;

/// A lock-free multi-producer, single-consumer stack of free blocks, linked through the
/// blocks' own links.
///
/// Ordering contract: [`push`](Self::push) writes the block's link, then publishes the
/// block with a `Release` CAS; [`drain`](Self::drain) (and [`take_all`](Self::take_all),
/// built on it) swaps the head out with `Acquire`. All pushes are read-modify-writes of one atomic, so the consumer's
/// acquire synchronises with every push before it: it sees every link and every write
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
            _layout: core::marker::PhantomData,
        }
    }

    /// Hands a block to the owner.
    ///
    /// # Safety
    /// The caller gives up `b` (a free block whose owner consumes this queue); nobody
    /// touches it afterwards but the consumer.
    pub unsafe fn push(&self, b: BlockBase<L>) {
        let mut head = self.head.load(Ordering::Relaxed);
        loop {
            // SAFETY: we own `b` until the CAS publishes it.
            unsafe { b.set_link(BlockBase::from_raw_opt(head)) };
            match self.head.compare_exchange_weak(
                head,
                b.as_ptr(),
                Ordering::Release,
                Ordering::Relaxed,
            ) {
                Ok(_) => return,
                Err(h) => head = h,
            }
        }
    }

    /// Hands a whole chain `head` … `tail` (linked through their links) to the owner with
    /// one CAS: remote frees batched by the freeing thread.
    ///
    /// # Safety
    /// The caller gives up every block of the chain, as for [`push`](Self::push).
    pub unsafe fn push_chain(&self, head: BlockBase<L>, tail: BlockBase<L>) {
        let mut old = self.head.load(Ordering::Relaxed);
        loop {
            // SAFETY: we own the chain until the CAS publishes it.
            unsafe { tail.set_link(BlockBase::from_raw_opt(old)) };
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

    /// Takes every queued block into `out` (consumer only); returns how many.
    pub fn take_all(&self, out: &mut FreeList<L>) -> u32 {
        self.drain(|b| {
            // SAFETY: the block is now exclusively ours.
            unsafe { out.push(b) }
        })
    }

    /// Takes every queued block and hands each to `f`, in one pass over the links
    /// (consumer only); returns how many. `f` owns the block it gets and may overwrite its
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
    /// assert_eq!(queue.drain(|b| seen.push(b.addr())), 4);
    /// seen.reverse(); // a stack: the last pushed comes first
    /// assert_eq!(seen, mem.0.iter().map(|b| b.as_ptr() as usize).collect::<Vec<_>>());
    /// assert!(queue.is_empty());
    /// ```
    pub fn drain(&self, mut f: impl FnMut(BlockBase<L>)) -> u32 {
        if self.is_empty() {
            return 0;
        }
        let mut p = self.head.swap(core::ptr::null_mut(), Ordering::Acquire);
        let mut n = 0;
        // SAFETY: every pointer in the stack is a block pushed by `push`/`push_chain`,
        // published with Release and acquired by the swap above; its link is the next
        // element. The link is read before `f` takes the block.
        while let Some(b) = unsafe { BlockBase::<L>::from_raw_opt(p) } {
            p = unsafe { b.link() }.map_or(core::ptr::null_mut(), |n| n.as_ptr());
            prefetch(p);
            f(b);
            n += 1;
        }
        n
    }
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
