//! Scope hot path: defer + release against a plain `Vec<Box<dyn FnOnce()>>`, and
//! `Handle::cancel` at 100,000 live actions in FIFO and LIFO order.
//!
//! Run: `cargo bench --bench scope`

use std::hint::black_box;
use std::time::{Duration, Instant};

use closeout::Scope;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

const N: u64 = 1_000;

fn defer_release(c: &mut Criterion) {
    let mut g = c.benchmark_group("scope_defer_release");
    g.throughput(Throughput::Elements(N));
    // Closures that capture a value (so each is a real heap box), as real cleanups do.
    g.bench_function("vec_box_fnonce_baseline", |b| {
        b.iter(|| {
            let mut v: Vec<Box<dyn FnOnce() + Send>> = Vec::new();
            for i in 0..N {
                v.push(Box::new(move || {
                    black_box(i);
                }));
            }
            while let Some(f) = v.pop() {
                f();
            }
        })
    });
    g.bench_function("scope", |b| {
        b.iter(|| {
            let scope = Scope::new();
            for i in 0..N {
                let _ = scope.defer(move || {
                    black_box(i);
                });
            }
            black_box(scope.close());
        })
    });
    // The non-`Send` scope, same closures.
    g.bench_function("local_scope", |b| {
        b.iter(|| {
            let scope = closeout::LocalScope::new();
            for i in 0..N {
                let _ = scope.defer(move || {
                    black_box(i);
                });
            }
            black_box(scope.close());
        })
    });
    // Zero-sized closures: the box allocates nothing, so this isolates bookkeeping.
    g.bench_function("vec_box_fnonce_baseline_zst", |b| {
        b.iter(|| {
            let mut v: Vec<Box<dyn FnOnce() + Send>> = Vec::new();
            for _ in 0..N {
                v.push(Box::new(|| {
                    black_box(());
                }));
            }
            while let Some(f) = v.pop() {
                f();
            }
        })
    });
    g.bench_function("scope_zst", |b| {
        b.iter(|| {
            let scope = Scope::new();
            for _ in 0..N {
                let _ = scope.defer(|| {
                    black_box(());
                });
            }
            black_box(scope.close());
        })
    });
    g.finish();
}

/// Time only the cancels: build 100,000 live actions, then cancel them all in one order.
fn cancel(c: &mut Criterion) {
    const LIVE: usize = 100_000;
    let mut g = c.benchmark_group("scope_cancel_100k_live");
    g.throughput(Throughput::Elements(LIVE as u64));
    g.sample_size(20);
    for order in ["fifo", "lifo"] {
        g.bench_with_input(BenchmarkId::from_parameter(order), &order, |b, &order| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let scope = Scope::new();
                    let mut handles: Vec<_> = (0..LIVE).map(|_| scope.defer(|| ()).unwrap()).collect();
                    if order == "lifo" {
                        handles.reverse();
                    }
                    let start = Instant::now();
                    for h in handles {
                        black_box(h.cancel());
                    }
                    total += start.elapsed();
                    assert!(scope.is_empty());
                }
                total
            })
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    targets = defer_release, cancel
}
criterion_main!(benches);
