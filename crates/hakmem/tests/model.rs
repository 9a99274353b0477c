//! The whole allocator (`hakmem::API`, the malloc family over the boxes) against a
//! model: random malloc/calloc/realloc/memalign/free sequences; contents, alignment
//! and non-overlap checked after every step.

use proptest::prelude::*;
use std::collections::BTreeMap;

#[derive(Debug, Clone)]
enum Op {
    Malloc(usize),
    Calloc(usize),
    Realloc(usize, usize),
    Memalign(u32, usize),
    Free(usize),
}

fn size() -> impl Strategy<Value = usize> {
    prop_oneof![8 => 0usize..1100, 3 => 1100usize..70_000, 1 => 70_000usize..700_000]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => size().prop_map(Op::Malloc),
        1 => size().prop_map(Op::Calloc),
        2 => (0usize..64, size()).prop_map(|(s, n)| Op::Realloc(s, n)),
        1 => (3u32..22, 0usize..20_000).prop_map(|(a, n)| Op::Memalign(a, n)),
        3 => (0usize..64).prop_map(Op::Free),
    ]
}

struct Live {
    p: *mut u8,
    size: usize,
    tag: u8,
}

fn fill(l: &Live) {
    unsafe { std::ptr::write_bytes(l.p, l.tag, l.size) };
}

fn check(l: &Live, upto: usize) {
    let s = unsafe { std::slice::from_raw_parts(l.p, upto) };
    assert!(
        s.iter().all(|&b| b == l.tag),
        "block {:p} lost its contents",
        l.p
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]
    #[test]
    fn allocator_matches_model(ops in proptest::collection::vec(op(), 1..400)) {
        let api = &hakmem::API;
        let mut slots: Vec<Option<Live>> = (0..64).map(|_| None).collect();
        let mut tag = 1u8;
        for o in ops {
            tag = tag.wrapping_add(1).max(1);
            match o {
                Op::Malloc(n) | Op::Calloc(n) | Op::Memalign(_, n) => {
                    let free_slot = slots.iter().position(|s| s.is_none());
                    let Some(i) = free_slot else { continue };
                    let (p, align) = match o {
                        Op::Malloc(_) => (api.malloc(n).unwrap(), 16),
                        Op::Calloc(_) => {
                            let p = api.calloc(1, n).unwrap();
                            let z = unsafe { std::slice::from_raw_parts(p, n) };
                            prop_assert!(z.iter().all(|&b| b == 0), "calloc not zeroed");
                            (p, 16)
                        }
                        Op::Memalign(a, _) => (api.memalign(1 << a, n).unwrap(), 1usize << a),
                        _ => unreachable!(),
                    };
                    if n >= 16 || align > 16 { prop_assert_eq!(p as usize % align.max(16), 0); }
                    let usable = unsafe { api.usable_size(p) };
                    prop_assert!(usable >= n, "usable {} < {}", usable, n);
                    let l = Live { p, size: n, tag };
                    fill(&l);
                    slots[i] = Some(l);
                }
                Op::Realloc(i, n) => {
                    let Some(l) = slots[i].take() else { continue };
                    check(&l, l.size);
                    let q = unsafe { api.realloc(l.p, n) }.unwrap();
                    if n == 0 { prop_assert!(q.is_null()); continue; }
                    let nl = Live { p: q, size: n, tag: l.tag };
                    check(&nl, l.size.min(n));
                    let nl = Live { tag, ..nl };
                    fill(&nl);
                    slots[i] = Some(nl);
                }
                Op::Free(i) => if let Some(l) = slots[i].take() {
                    check(&l, l.size);
                    unsafe { api.free(l.p) };
                },
            }
            // No two live blocks overlap.
            let mut spans: BTreeMap<usize, usize> = BTreeMap::new();
            for l in slots.iter().flatten() {
                spans.insert(l.p as usize, l.size.max(1));
            }
            let mut end = 0;
            for (&start, &len) in &spans {
                prop_assert!(start >= end, "blocks overlap at {:#x}", start);
                end = start + len;
            }
        }
        for l in slots.iter().flatten() {
            check(l, l.size);
            unsafe { api.free(l.p) };
        }
    }
}

#[test]
fn bad_requests_fail_cleanly() {
    let api = &hakmem::API;
    assert_eq!(api.malloc(usize::MAX), Err(front_api_error()));
    assert_eq!(api.calloc(usize::MAX / 2, 3), Err(front_api_error()));
    assert!(api.posix_memalign(24, 10).is_err());
    unsafe { api.free(std::ptr::null_mut()) };
}

fn front_api_error() -> front_api::Error {
    front_api::Error::NoMemory
}
