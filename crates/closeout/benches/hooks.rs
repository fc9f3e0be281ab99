//! Process hooks and tracked tasks.
//!
//! - `signal_to_first_cleanup`: a real signal (SIGUSR1, raised in this process) to the moment
//!   the first cleanup starts. Each sample installs hooks over a fresh registry, raises, and
//!   measures until the cleanup records its start; the hooks are then uninstalled.
//! - `spawn_and_complete`: a tracked task spawn + normal completion (awaited), next to a plain
//!   `tokio::spawn` in the same run, on a current-thread and a 2-worker runtime.
//!
//! Run: `cargo bench --bench hooks`

use std::time::{Duration, Instant};

use closeout::hooks::Hooks;
use closeout::owner::Owner;
use closeout::{Registry, Resource, Scope};
use criterion::{Criterion, criterion_group, criterion_main};

fn signal_to_first_cleanup(c: &mut Criterion) {
    let mut g = c.benchmark_group("hooks");
    g.sample_size(30).measurement_time(Duration::from_secs(10));
    g.bench_function("signal_to_first_cleanup", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let registry = Registry::new();
                let (tx, rx) = std::sync::mpsc::channel();
                registry.register(Resource::new("first", move || tx.send(Instant::now()))).unwrap();
                let guard = Hooks::new(registry)
                    .signals(&[closeout::hooks::Signal::USR1])
                    .panic(closeout::hooks::PanicPolicy::Off)
                    .exit_on_signal(false)
                    .on_report(|_, _| ())
                    .install()
                    .unwrap();
                let sent = Instant::now();
                signal_hook::low_level::raise(signal_hook::consts::SIGUSR1).unwrap();
                let started = rx.recv_timeout(Duration::from_secs(10)).expect("cleanup did not start");
                total += started - sent;
                drop(guard);
            }
            total
        });
    });
    g.finish();
}

fn spawn_and_complete(c: &mut Criterion) {
    for (flavor, rt) in [
        ("current_thread", tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()),
        (
            "multi_thread_2",
            tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap(),
        ),
    ] {
        let mut g = c.benchmark_group(format!("spawn_and_complete/{flavor}"));
        g.bench_function("tokio_spawn", |b| {
            b.to_async(&rt).iter(|| async { tokio::spawn(async { 1u32 }).await.unwrap() });
        });
        let scope = Scope::new();
        g.bench_function("scope_spawn", |b| {
            b.to_async(&rt).iter(|| async { scope.spawn("t", |_| async { 1u32 }).unwrap().await.unwrap() });
        });
        let registry = Registry::new();
        g.bench_function("registry_spawn", |b| {
            b.to_async(&rt)
                .iter(|| async { registry.spawn("t", |_| async { 1u32 }).unwrap().await.unwrap() });
        });
        g.finish();
        rt.block_on(async {
            assert!(scope.is_empty() && registry.is_empty(), "finished tasks left entries");
        });
    }
}

criterion_group!(benches, signal_to_first_cleanup, spawn_and_complete);
criterion_main!(benches);
