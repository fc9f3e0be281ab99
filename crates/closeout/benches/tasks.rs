//! Tracked tasks against tokio-util's `TaskTracker`, each baseline in its own row's group so a
//! ratio comes from one run.
//!
//! - `parked_tasks_teardown/<n>`: `n` tasks parked on their cancellation token; timed: the
//!   teardown only (registry `cleanup_all`, scope `close_async`; for the baseline, cancel +
//!   `close` + `wait`).
//! - `async_noop_teardown/<n>`: `n` no-op async cleanups torn down by a registry (registration
//!   outside the timed part), against `n` no-op tasks spawned on a `TaskTracker` and waited for
//!   (spawning is what runs them there, so it is inside the window).
//!
//! Run: `cargo bench --bench tasks`

use std::time::{Duration, Instant};

use closeout::owner::{Owner, Spawn};
use closeout::{Registry, Resource, Scope};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

/// Lets freshly spawned tasks reach their first await (park) before the clock starts.
async fn settle() {
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    tokio::time::sleep(Duration::from_millis(1)).await;
}

fn parked(c: &mut Criterion) {
    let rt = runtime();
    let mut g = c.benchmark_group("parked_tasks_teardown");
    g.sample_size(20);
    for n in [1_000usize, 10_000] {
        g.throughput(Throughput::Elements(n as u64));
        g.bench_with_input(BenchmarkId::new("task_tracker_baseline", n), &n, |b, &n| {
            b.to_async(&rt).iter_custom(|iters| async move {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let tracker = TaskTracker::new();
                    let token = CancellationToken::new();
                    for _ in 0..n {
                        let t = token.clone();
                        tracker.spawn(async move { t.cancelled().await });
                    }
                    settle().await;
                    let start = Instant::now();
                    token.cancel();
                    tracker.close();
                    tracker.wait().await;
                    total += start.elapsed();
                }
                total
            })
        });
        g.bench_with_input(BenchmarkId::new("registry", n), &n, |b, &n| {
            b.to_async(&rt).iter_custom(|iters| async move {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let registry = Registry::new();
                    for _ in 0..n {
                        registry.spawn(Spawn::numbered("t"), |t| async move { t.cancelled().await }).unwrap();
                    }
                    settle().await;
                    let start = Instant::now();
                    let report = registry.cleanup_all().await;
                    total += start.elapsed();
                    assert_eq!(report.totals().ok, n);
                }
                total
            })
        });
        g.bench_with_input(BenchmarkId::new("scope", n), &n, |b, &n| {
            b.to_async(&rt).iter_custom(|iters| async move {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let scope = Scope::new();
                    for _ in 0..n {
                        scope.spawn("t", |t| async move { t.cancelled().await }).unwrap();
                    }
                    settle().await;
                    let start = Instant::now();
                    let report = scope.close_async().await;
                    total += start.elapsed();
                    assert_eq!(report.len(), n);
                }
                total
            })
        });
    }
    g.finish();
}

fn noop_teardown(c: &mut Criterion) {
    let rt = runtime();
    let mut g = c.benchmark_group("async_noop_teardown");
    g.sample_size(20);
    for n in [1_000usize, 10_000] {
        g.throughput(Throughput::Elements(n as u64));
        g.bench_with_input(BenchmarkId::new("task_tracker_baseline", n), &n, |b, &n| {
            b.to_async(&rt).iter_custom(|iters| async move {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let tracker = TaskTracker::new();
                    let start = Instant::now();
                    for _ in 0..n {
                        tracker.spawn(async {});
                    }
                    tracker.close();
                    tracker.wait().await;
                    total += start.elapsed();
                }
                total
            })
        });
        g.bench_with_input(BenchmarkId::new("registry", n), &n, |b, &n| {
            b.to_async(&rt).iter_custom(|iters| async move {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let registry = Registry::new();
                    for i in 0..n {
                        registry.register(Resource::new_async(format!("a{i}"), async {})).unwrap();
                    }
                    let start = Instant::now();
                    let report = registry.cleanup_all().await;
                    total += start.elapsed();
                    assert_eq!(report.totals().ok, n);
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
    targets = parked, noop_teardown
}
criterion_main!(benches);
