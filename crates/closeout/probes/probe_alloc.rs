//! Instruction-count probe for the counting allocator (run under callgrind): one million
//! allocate + free pairs of mixed sizes, through `System` or through a `Counting<System>`,
//! called directly as `GlobalAlloc`s, so the difference is the wrapper's cost.
//!
//! `cargo build --release --example probe_alloc`, then
//! `valgrind --tool=callgrind target/release/examples/probe_alloc system|counting`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;

use closeout::alloc::Counting;

static COUNTING: Counting = Counting::system();

const SIZES: [usize; 8] = [16, 24, 32, 48, 64, 128, 256, 1024];

fn churn<A: GlobalAlloc>(a: &A) {
    let mut blocks = Vec::with_capacity(1_000);
    for _ in 0..1_000 {
        for i in 0..1_000 {
            let layout = Layout::from_size_align(SIZES[i % SIZES.len()], 8).unwrap();
            // SAFETY: a non-zero size; freed below with the same layout.
            blocks.push((black_box(unsafe { a.alloc(layout) }), layout));
        }
        for (p, layout) in blocks.drain(..) {
            // SAFETY: allocated above by `a` with `layout`, freed once.
            unsafe { a.dealloc(p, layout) };
        }
    }
}

fn main() {
    match std::env::args().nth(1).as_deref() {
        Some("system") => churn(&System),
        Some("counting") => churn(&COUNTING),
        _ => eprintln!("usage: probe_alloc system|counting"),
    }
}
