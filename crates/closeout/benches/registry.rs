//! Registry teardown: sync register + cleanup_all per resource; async teardown against a plain
//! `JoinSet`; a dependency chain; async overhead with no-op cleanups; one hang among many.
//!
//! Run: `cargo bench --bench registry`

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use closeout::{Category, Registry, Report, Resource};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

const CATEGORIES: [Category; 4] = [Category::Database, Category::File, Category::Network, Category::Timer];

/// register N sync no-op resources with ids and categories, then cleanup_all; ids are built
/// outside the timed part (they are the caller's strings).
fn sync_register_cleanup(c: &mut Criterion) {
    let mut g = c.benchmark_group("registry_register_cleanup_all_sync");
    for n in [1_000usize, 100_000] {
        g.throughput(Throughput::Elements(n as u64));
        g.sample_size(if n > 10_000 { 10 } else { 50 });
        // What a user could write by hand: a locked map of boxed closures with a duplicate
        // check, drained and run at the end (issue 14's baseline, same ids, same window).
        g.bench_with_input(BenchmarkId::new("mutex_hashmap_baseline", n), &n, |b, &n| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let ids: Vec<String> = (0..n).map(|i| format!("res-{i}")).collect();
                    let map: Mutex<HashMap<String, Box<dyn FnOnce() + Send>>> = Mutex::new(HashMap::new());
                    let start = Instant::now();
                    for id in ids {
                        let mut m = map.lock().unwrap();
                        assert!(!m.contains_key(&id), "duplicate id");
                        m.insert(id, Box::new(|| ()));
                    }
                    let all: Vec<_> = map.lock().unwrap().drain().collect();
                    let ran = all.len();
                    for (_, f) in all {
                        f();
                    }
                    total += start.elapsed();
                    assert_eq!(ran, n);
                }
                total
            })
        });
        g.bench_with_input(BenchmarkId::new("registry", n), &n, |b, &n| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let ids: Vec<String> = (0..n).map(|i| format!("res-{i}")).collect();
                    let registry = Registry::new();
                    let start = Instant::now();
                    for (i, id) in ids.into_iter().enumerate() {
                        registry
                            .register(Resource::new(id, || ()).category(CATEGORIES[i % 4].clone()))
                            .unwrap();
                    }
                    let report = registry.cleanup_all_blocking();
                    total += start.elapsed();
                    assert_eq!(report.len(), n);
                    drop(black_box(report));
                }
                total
            })
        });
    }
    g.finish();
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

/// Times only `cleanup_all` of `iters` registries made by `build`; `check` sees every report.
async fn timed_teardowns(iters: u64, build: fn() -> Registry, check: fn(&Report)) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        let registry = build();
        let start = Instant::now();
        let report = registry.cleanup_all().await;
        total += start.elapsed();
        check(&report);
    }
    total
}

/// An async cleanup that sleeps 10 ms from its first poll, so the clock starts with the
/// teardown (a `Sleep` made at registration would already be running).
fn sleep_10ms(id: String) -> Resource {
    Resource::new_async(id, async { tokio::time::sleep(Duration::from_millis(10)).await })
}

const SLEEPERS: usize = 10_000;

/// 10,000 independent resources each awaiting a 10 ms sleep, against the same sleeps on a
/// `JoinSet`; and a chain of 10 dependent 10 ms resources against its 100 ms critical path.
fn async_sleeps(c: &mut Criterion) {
    let rt = runtime();
    let mut g = c.benchmark_group("registry_async_10ms");
    g.sample_size(20);
    g.bench_function("joinset_10000_baseline", |b| {
        b.to_async(&rt).iter(|| async {
            let mut set = tokio::task::JoinSet::new();
            for _ in 0..SLEEPERS {
                set.spawn(tokio::time::sleep(Duration::from_millis(10)));
            }
            while set.join_next().await.is_some() {}
        })
    });
    g.bench_function("registry_10000", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            timed_teardowns(
                iters,
                || {
                    let registry = Registry::new();
                    for i in 0..SLEEPERS {
                        registry.register(sleep_10ms(format!("s{i}"))).unwrap();
                    }
                    registry
                },
                |report| assert_eq!(report.totals().ok, SLEEPERS),
            )
        })
    });
    g.bench_function("registry_chain_10", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            timed_teardowns(
                iters,
                || {
                    let registry = Registry::new();
                    for i in 0..10 {
                        let deps = (i > 0).then(|| format!("c{}", i - 1));
                        registry.register(sleep_10ms(format!("c{i}")).depends_on(deps)).unwrap();
                    }
                    registry
                },
                |report| assert_eq!(report.totals().ok, 10),
            )
        })
    });
    g.finish();
}

fn noops(n: usize) -> Registry {
    let registry = Registry::new();
    for i in 0..n {
        registry.register(Resource::new_async(format!("a{i}"), async {})).unwrap();
    }
    registry
}

/// No-op async cleanups: the engine's own cost per resource (register excluded).
fn async_overhead(c: &mut Criterion) {
    let rt = runtime();
    let mut g = c.benchmark_group("registry_async_noop_teardown");
    g.sample_size(20);
    g.throughput(Throughput::Elements(1_000));
    g.bench_function(BenchmarkId::from_parameter(1_000), |b| {
        b.to_async(&rt).iter_custom(|iters| {
            timed_teardowns(iters, || noops(1_000), |report| assert_eq!(report.totals().ok, 1_000))
        })
    });
    g.throughput(Throughput::Elements(10_000));
    g.bench_function(BenchmarkId::from_parameter(10_000), |b| {
        b.to_async(&rt).iter_custom(|iters| {
            timed_teardowns(iters, || noops(10_000), |report| assert_eq!(report.totals().ok, 10_000))
        })
    });
    g.finish();
}

/// One cleanup that never finishes, with a 100 ms timeout, among 1,000 fast ones.
fn one_hang(c: &mut Criterion) {
    let rt = runtime();
    let mut g = c.benchmark_group("registry_one_hang_100ms_among_1000");
    g.sample_size(10);
    g.bench_function("teardown", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            timed_teardowns(
                iters,
                || {
                    let registry = Registry::new();
                    let hangs = Resource::new_async("hangs", std::future::pending::<()>());
                    registry.register(hangs.timeout(Duration::from_millis(100))).unwrap();
                    for i in 0..1_000 {
                        registry.register(Resource::new_async(format!("f{i}"), async {})).unwrap();
                    }
                    registry
                },
                |report| assert_eq!(report.totals().timed_out, 1),
            )
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(4));
    targets = sync_register_cleanup, async_sleeps, async_overhead, one_hang
}
criterion_main!(benches);
