extern crate std;
use super::*;
use core::ptr::NonNull;
use proptest::prelude::*;
use std::collections::VecDeque;
use std::vec::Vec;
use tiny_layout::{Guarded, Plain};

/// 64 test blocks of 32 bytes, 16-aligned.
#[repr(align(16))]
struct Arena([u8; 64 * 32]);

fn block<L: BlockLayout>(a: &mut Arena, i: usize) -> BlockBase<L> {
    // SAFETY: block i of the arena, 32 bytes, 16-aligned.
    unsafe { BlockBase::from_raw(NonNull::new(a.0.as_mut_ptr().add(i * 32)).unwrap()) }
}

#[test]
fn push_pop_is_lifo_and_counts() {
    let mut a = Arena([0; 64 * 32]);
    let mut l = FreeList::<Plain>::new(3);
    for i in 0..3 {
        unsafe { l.push_bounded(block(&mut a, i)).unwrap() };
    }
    assert!(
        unsafe { l.push_bounded(block(&mut a, 3)) }.is_err(),
        "cap respected"
    );
    assert_eq!(l.len(), 3);
    for i in (0..3).rev() {
        assert_eq!(l.pop(), Some(block(&mut a, i)));
    }
    assert_eq!(l.pop(), None);
    assert!(l.is_empty());
}

#[test]
fn caps_can_change_under_a_full_list() {
    let mut a = Arena([0; 64 * 32]);
    let mut l = FreeList::<Plain>::new(4);
    for i in 0..6 {
        // Unbounded pushes overfill the list (a refill batch does).
        unsafe { l.push(block(&mut a, i)) };
    }
    assert_eq!((l.len(), l.cap()), (6, 4));
    assert!(unsafe { l.push_bounded(block(&mut a, 6)) }.is_err());
    l.set_cap(2);
    assert_eq!((l.len(), l.cap()), (6, 2));
    let chain = l.take(5).unwrap();
    assert_eq!((chain.len(), l.len()), (5, 1));
    unsafe { l.push_bounded(block(&mut a, 7)).unwrap() };
    assert!(unsafe { l.push_bounded(block(&mut a, 8)) }.is_err());
    l.set_cap(10);
    l.push_chain(chain);
    assert_eq!(l.len(), 7);
    for _ in 0..3 {
        unsafe { l.push_bounded(block(&mut a, 9)).unwrap() };
        l.pop();
    }
    assert_eq!(l.len(), 7);
    // Caps above MAX_CAP are lowered to it.
    let huge = FreeList::<Plain>::new(u32::MAX);
    assert_eq!((huge.cap(), huge.len()), (FreeList::<Plain>::MAX_CAP, 0));
}

#[test]
fn take_and_splice_move_runs() {
    let mut a = Arena([0; 64 * 32]);
    let mut l = FreeList::<Guarded>::new(100);
    for i in 0..10 {
        unsafe { l.push(block(&mut a, i)) };
    }
    let c = l.take(4).unwrap();
    assert_eq!((c.len(), l.len()), (4, 6));
    let mut other = FreeList::<Guarded>::new(100);
    unsafe { other.push(block(&mut a, 20)) };
    other.push_chain(c);
    assert_eq!(other.len(), 5);
    let order: Vec<_> = core::iter::from_fn(|| other.pop()).collect();
    let expect: Vec<_> = [9, 8, 7, 6, 20]
        .iter()
        .map(|&i| block::<Guarded>(&mut a, i))
        .collect();
    assert_eq!(order, expect);
    let all = l.take_all().unwrap();
    assert_eq!(all.len(), 6);
    assert!(l.is_empty() && l.len() == 0);
    let (first, rest) = all.split_first();
    assert_eq!(first, block(&mut a, 5));
    assert_eq!(rest.unwrap().len(), 5);
}

#[derive(Debug, Clone)]
enum Op {
    Push,
    Pop,
    Take(u32),
    SpliceBack,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        Just(Op::Push),
        Just(Op::Pop),
        (1u32..8).prop_map(Op::Take),
        Just(Op::SpliceBack)
    ]
}

proptest! {
    /// The list behaves like a model stack under random push/pop/take/splice.
    #[test]
    fn matches_a_model_stack(ops in proptest::collection::vec(op(), 1..200)) {
        let mut a = Arena([0; 64 * 32]);
        let mut l = FreeList::<Plain>::new(u32::MAX);
        let mut model: VecDeque<usize> = VecDeque::new(); // front = head
        let mut held: Option<(Chain<Plain>, Vec<usize>)> = None;
        let mut free_ids: Vec<usize> = (0..64).collect();
        for o in ops {
            match o {
                Op::Push => if let Some(i) = free_ids.pop() {
                    unsafe { l.push(block(&mut a, i)) };
                    model.push_front(i);
                },
                Op::Pop => {
                    let got = l.pop();
                    let want = model.pop_front();
                    prop_assert_eq!(got, want.map(|i| block(&mut a, i)));
                    if let Some(i) = want { free_ids.push(i); }
                },
                Op::Take(n) => if held.is_none() {
                    if let Some(c) = l.take(n) {
                        let k = c.len() as usize;
                        let ids: Vec<usize> = model.drain(..k).collect();
                        prop_assert_eq!(k, (n as usize).min(ids.len()).max(1));
                        held = Some((c, ids));
                    } else { prop_assert!(model.is_empty()); }
                },
                Op::SpliceBack => if let Some((c, ids)) = held.take() {
                    l.push_chain(c);
                    for i in ids.into_iter().rev() { model.push_front(i); }
                },
            }
            prop_assert_eq!(l.len() as usize, model.len());
        }
    }
}
