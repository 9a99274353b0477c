//! malloc+free pairs through `GlobalAlloc`: hakmem, `std::alloc::System` (glibc), mimalloc and
//! jemalloc, per size, in two patterns: alternating (allocate one, free it) and batch
//! (allocate BATCH, then free them in order). Each object gets one byte written, as a caller
//! would. Run: `cargo bench --manifest-path benches/Cargo.toml -p micro [-- FILTER]`.

use criterion::measurement::WallTime;
use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion, Throughput};
use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::time::Duration;

const SIZES: [usize; 6] = [16, 64, 256, 1024, 4096, 32768];
const BATCH: usize = 128;

fn alloc_one<A: GlobalAlloc>(a: &A, layout: Layout) -> *mut u8 {
    // SAFETY: the layout has a non-zero size; the pointer is checked before use.
    let p = unsafe { a.alloc(layout) };
    assert!(!p.is_null(), "allocation of {} bytes failed", layout.size());
    unsafe { p.write(1) };
    black_box(p)
}

/// One benchmark: alternating (one allocation, then its free) or a batch of BATCH.
fn bench<A: GlobalAlloc>(
    g: &mut BenchmarkGroup<WallTime>,
    name: &str,
    a: &A,
    layout: Layout,
    batched: bool,
) {
    let mut ptrs = [std::ptr::null_mut::<u8>(); BATCH];
    let n = if batched { BATCH } else { 1 };
    g.bench_function(name, |b| {
        b.iter(|| {
            for p in ptrs[..n].iter_mut() {
                *p = alloc_one(a, layout);
            }
            for &p in ptrs[..n].iter() {
                // SAFETY: p came from this allocator with this layout.
                unsafe { a.dealloc(p, layout) }
            }
        })
    });
}

fn pairs(c: &mut Criterion) {
    for size in SIZES {
        let layout = Layout::from_size_align(size, 8).unwrap();
        for (pattern, per_iter) in [("alternating", 1), ("batch", BATCH)] {
            let mut g = c.benchmark_group(format!("{pattern}/{size}"));
            g.throughput(Throughput::Elements(per_iter as u64));
            g.measurement_time(Duration::from_secs(2))
                .warm_up_time(Duration::from_millis(500));
            let batched = per_iter > 1;
            bench(&mut g, "hakmem", &hakmem::HakMem, layout, batched);
            bench(&mut g, "system", &System, layout, batched);
            bench(&mut g, "mimalloc", &mimalloc::MiMalloc, layout, batched);
            bench(
                &mut g,
                "jemalloc",
                &tikv_jemallocator::Jemalloc,
                layout,
                batched,
            );
            g.finish();
        }
    }
}

criterion_group!(benches, pairs);
criterion_main!(benches);
