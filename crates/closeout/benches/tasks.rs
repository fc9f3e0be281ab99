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

/// `iters` rounds of: `setup` (untimed), `measure` on what it made (timed), then `check` on
/// what that returned, which is dropped after the clock stopped (freeing a report of 10,000
/// entries is not part of a teardown's cost).
async fn timed<S, T>(
    iters: u64,
    mut setup: impl AsyncFnMut() -> S,
    mut measure: impl AsyncFnMut(S) -> T,
    check: impl Fn(&T),
) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        let made = setup().await;
        let start = Instant::now();
        let out = measure(made).await;
        total += start.elapsed();
        check(&out);
        drop(out);
    }
    total
}

/// `n` tasks parked on one token, on a `TaskTracker`: the baseline's set-up.
fn park_on_tracker(n: usize) -> (TaskTracker, CancellationToken) {
    let tracker = TaskTracker::new();
    let token = CancellationToken::new();
    for _ in 0..n {
        let t = token.clone();
        tracker.spawn(async move { t.cancelled().await });
    }
    (tracker, token)
}

async fn stop_tracker(
    (tracker, token): (TaskTracker, CancellationToken),
) -> (TaskTracker, CancellationToken) {
    token.cancel();
    tracker.close();
    tracker.wait().await;
    (tracker, token)
}

fn parked(c: &mut Criterion) {
    let rt = runtime();
    let mut g = c.benchmark_group("parked_tasks_teardown");
    g.sample_size(20);
    for n in [1_000usize, 10_000] {
        g.throughput(Throughput::Elements(n as u64));
        g.bench_with_input(BenchmarkId::new("task_tracker_baseline", n), &n, |b, &n| {
            b.to_async(&rt).iter_custom(|iters| {
                timed(
                    iters,
                    async || {
                        let parked = park_on_tracker(n);
                        settle().await;
                        parked
                    },
                    stop_tracker,
                    |_| (),
                )
            })
        });
        g.bench_with_input(BenchmarkId::new("registry", n), &n, |b, &n| {
            b.to_async(&rt).iter_custom(|iters| {
                timed(
                    iters,
                    async || {
                        let registry = Registry::new();
                        for _ in 0..n {
                            registry
                                .spawn(Spawn::numbered("t"), |t| async move { t.cancelled().await })
                                .unwrap();
                        }
                        settle().await;
                        registry
                    },
                    // The registry is handed back, to be dropped after the clock stopped.
                    async |registry| (registry.cleanup_all().await, registry),
                    |(report, _)| assert_eq!(report.totals().ok, n),
                )
            })
        });
        g.bench_with_input(BenchmarkId::new("scope", n), &n, |b, &n| {
            b.to_async(&rt).iter_custom(|iters| {
                timed(
                    iters,
                    async || {
                        let scope = Scope::new();
                        for _ in 0..n {
                            scope.spawn("t", |t| async move { t.cancelled().await }).unwrap();
                        }
                        settle().await;
                        scope
                    },
                    async |scope| scope.close_async().await,
                    |report| assert_eq!(report.len(), n),
                )
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
        // Spawning is what runs the baseline's no-ops, so it is inside the window.
        g.bench_with_input(BenchmarkId::new("task_tracker_baseline", n), &n, |b, &n| {
            b.to_async(&rt).iter_custom(|iters| {
                timed(
                    iters,
                    async || TaskTracker::new(),
                    async |tracker| {
                        for _ in 0..n {
                            tracker.spawn(async {});
                        }
                        tracker.close();
                        tracker.wait().await;
                        tracker
                    },
                    |_| (),
                )
            })
        });
        g.bench_with_input(BenchmarkId::new("registry", n), &n, |b, &n| {
            b.to_async(&rt).iter_custom(|iters| {
                timed(
                    iters,
                    async || {
                        let registry = Registry::new();
                        for i in 0..n {
                            registry.register(Resource::new_async(format!("a{i}"), async {})).unwrap();
                        }
                        registry
                    },
                    // The registry is handed back, to be dropped after the clock stopped.
                    async |registry| (registry.cleanup_all().await, registry),
                    |(report, _)| assert_eq!(report.totals().ok, n),
                )
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
