//! The counting allocator's cost (issue 15: ≤ 1.1× the system allocator on an
//! allocation-heavy workload).
//!
//! `alloc_counting/<workload>/{system,counting}`: the same workload through `System` and
//! through a `Counting<System>`, called directly as `GlobalAlloc`s in one group, so the ratio
//! comes from one run and contains only the wrapper's cost:
//! - `churn_1000`: 1,000 blocks of mixed sizes (16 B – 1 KiB) allocated, then freed in
//!   allocation order;
//! - `grow_100`: 100 blocks each grown by reallocation from 16 B to 4 KiB in doublings, then
//!   freed.
//!
//! Run: `cargo bench -p closeout --bench alloc`

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;

use closeout::alloc::Counting;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const SIZES: [usize; 8] = [16, 24, 32, 48, 64, 128, 256, 1024];

static COUNTING: Counting = Counting::system();

fn churn<A: GlobalAlloc>(a: &A, blocks: &mut Vec<(*mut u8, Layout)>) {
    for i in 0..1_000 {
        let layout = Layout::from_size_align(SIZES[i % SIZES.len()], 8).unwrap();
        // SAFETY: the layout has a non-zero size; the block is freed below with it.
        let p = unsafe { a.alloc(layout) };
        assert!(!p.is_null());
        blocks.push((black_box(p), layout));
    }
    for (p, layout) in blocks.drain(..) {
        // SAFETY: allocated above by the same allocator with this layout, freed once.
        unsafe { a.dealloc(p, layout) };
    }
}

fn grow<A: GlobalAlloc>(a: &A) {
    for _ in 0..100 {
        let mut layout = Layout::from_size_align(16, 8).unwrap();
        // SAFETY: non-zero size; reallocated and freed below with the layout it has then.
        let mut p = unsafe { a.alloc(layout) };
        while layout.size() < 4096 {
            let new_size = layout.size() * 2;
            // SAFETY: `p` is live with `layout`; the new size is non-zero and fits `isize`.
            p = unsafe { a.realloc(p, layout, new_size) };
            assert!(!p.is_null());
            layout = Layout::from_size_align(new_size, 8).unwrap();
        }
        // SAFETY: live with `layout`, freed once.
        unsafe { a.dealloc(black_box(p), layout) };
    }
}

fn alloc_counting(c: &mut Criterion) {
    let mut g = c.benchmark_group("alloc_counting");
    g.throughput(Throughput::Elements(1_000));
    let mut blocks = Vec::with_capacity(1_000);
    g.bench_function("churn_1000/system", |b| b.iter(|| churn(&System, &mut blocks)));
    g.bench_function("churn_1000/counting", |b| b.iter(|| churn(&COUNTING, &mut blocks)));
    g.throughput(Throughput::Elements(100));
    g.bench_function("grow_100/system", |b| b.iter(|| grow(&System)));
    g.bench_function("grow_100/counting", |b| b.iter(|| grow(&COUNTING)));
    g.finish();
    assert_eq!(COUNTING.stats().live_bytes, 0, "every block was freed");
}

criterion_group!(benches, alloc_counting);
criterion_main!(benches);
