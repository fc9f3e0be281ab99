//! Scope hot path: defer + release of 1,000 and 100,000 actions against a plain
//! `Vec<Box<dyn FnOnce()>>` (and that vector behind a lock taken per push), and
//! `Handle::cancel` at 100,000 live actions in FIFO and LIFO order.
//!
//! Run: `cargo bench --bench scope`

use std::hint::black_box;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use closeout::Scope;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

fn defer_release(c: &mut Criterion) {
    let mut g = c.benchmark_group("scope_defer_release");
    for n in [1_000u64, 100_000] {
        g.throughput(Throughput::Elements(n));
        g.sample_size(if n > 10_000 { 20 } else { 100 });
        // Closures that capture a value (so each is a real heap box), as real cleanups do.
        g.bench_with_input(BenchmarkId::new("vec_box_fnonce_baseline", n), &n, |b, &n| {
            b.iter(|| {
                let mut v: Vec<Box<dyn FnOnce() + Send>> = Vec::new();
                for i in 0..n {
                    v.push(Box::new(move || {
                        black_box(i);
                    }));
                }
                while let Some(f) = v.pop() {
                    f();
                }
            })
        });
        // The floor of any design that takes a lock per `defer` (as a `Send + Sync` scope
        // with O(1) cancel from any thread does today): the baseline plus one uncontended lock
        // each.
        g.bench_with_input(BenchmarkId::new("mutex_vec_floor", n), &n, |b, &n| {
            b.iter(|| {
                let v: Mutex<Vec<Box<dyn FnOnce() + Send>>> = Mutex::new(Vec::new());
                for i in 0..n {
                    v.lock().unwrap().push(Box::new(move || {
                        black_box(i);
                    }));
                }
                let mut v = v.into_inner().unwrap();
                while let Some(f) = v.pop() {
                    f();
                }
            })
        });
        g.bench_with_input(BenchmarkId::new("scope", n), &n, |b, &n| {
            b.iter(|| {
                let scope = Scope::new();
                for i in 0..n {
                    let _ = scope.defer(move || {
                        black_box(i);
                    });
                }
                black_box(scope.close());
            })
        });
        // The non-`Send` scope, same closures.
        g.bench_with_input(BenchmarkId::new("local_scope", n), &n, |b, &n| {
            b.iter(|| {
                let scope = closeout::LocalScope::new();
                for i in 0..n {
                    let _ = scope.defer(move || {
                        black_box(i);
                    });
                }
                black_box(scope.close());
            })
        });
    }
    // Zero-sized closures: the box allocates nothing, so this isolates bookkeeping.
    const N: u64 = 1_000;
    g.throughput(Throughput::Elements(N));
    g.sample_size(100);
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
