//! The stop ladder's latency for a child that exits on SIGTERM: from the call to `stop()` to
//! its return, which includes the signal's delivery and the child's exit. The target is that
//! the ladder returns ≤ 5 ms after the child exits; this measures the whole stop, an upper
//! bound of that.
//!
//! Also: a tree spawn (into its cgroup) against `Command::spawn`, the stop of 1,000 processes
//! that ignore SIGTERM, and the CPU a stop uses during a 2 s grace.
//!
//! Run: `cargo bench -p closeout-process --bench stop`

use std::process::Command;
use std::time::{Duration, Instant};

use closeout_process::{ProcessTree, TreeOptions};
use criterion::{Criterion, criterion_group, criterion_main};

fn stop_polite_child(c: &mut Criterion) {
    let mut g = c.benchmark_group("stop");
    g.sample_size(30).measurement_time(Duration::from_secs(10));
    for (name, opts) in [("cgroup", TreeOptions::new()), ("fallback", TreeOptions::new().cgroup(false))] {
        g.bench_function(format!("sleep_exits_on_sigterm/{name}"), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let tree = ProcessTree::spawn(Command::new("sleep").arg("60"), opts.clone()).unwrap();
                    // Let it reach `sleep` (exec done), as a running service would be.
                    std::thread::sleep(Duration::from_millis(5));
                    let start = Instant::now();
                    let report = tree.stop();
                    total += start.elapsed();
                    assert!(report.is_graceful());
                    assert!(report.gone.is_some_and(|g| g <= report.took));
                }
                total
            });
        });
    }
    g.finish();
}

/// A `ProcessTree` spawn (the cgroup's `mkdir` and join included) against a plain
/// `Command::spawn`, in one group so the ratio comes from one run. Only the spawn is timed; the
/// child is stopped outside the window.
fn spawn_vs_plain(c: &mut Criterion) {
    let mut g = c.benchmark_group("spawn");
    g.sample_size(50);
    g.bench_function("plain_command_spawn_baseline", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let start = Instant::now();
                let mut child = Command::new("true").spawn().unwrap();
                total += start.elapsed();
                child.wait().unwrap();
            }
            total
        });
    });
    for (name, opts) in
        [("tree_cgroup", TreeOptions::new()), ("tree_fallback", TreeOptions::new().cgroup(false))]
    {
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let start = Instant::now();
                    let tree = ProcessTree::spawn(&mut Command::new("true"), opts.clone()).unwrap();
                    total += start.elapsed();
                    tree.stop();
                }
                total
            });
        });
    }
    g.finish();
}

/// A tree of 1,000 processes that ignore SIGTERM, grace 0: from the call to `stop()` until
/// every member is gone (the report is only returned once the kernel says the cgroup is empty).
fn stop_a_thousand(c: &mut Criterion) {
    let mut g = c.benchmark_group("stop_1000_ignoring_sigterm");
    // Flat sampling, one stop per sample: each iteration needs 1,000 processes started first
    // (about a second, outside the measured window), so ten stops are what a run can afford.
    g.sample_size(10).measurement_time(Duration::from_secs(1)).warm_up_time(Duration::from_millis(1));
    g.sampling_mode(criterion::SamplingMode::Flat);
    let script = "trap '' TERM; i=0; while [ $i -lt 999 ]; do sh -c \"trap '' TERM; exec sleep 60\" & i=$((i+1)); done; wait";
    // Two clocks per stop, in two functions: until the kernel reports every member gone (the
    // target), and until `stop()` returns (which adds the cgroup's `rmdir`, an RCU wait).
    for (name, opts) in [("cgroup", TreeOptions::new()), ("fallback", TreeOptions::new().cgroup(false))] {
        for clock in ["members_gone", "stop_returned"] {
            g.bench_function(format!("{name}/{clock}"), |b| {
                b.iter_custom(|iters| {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        let tree = ProcessTree::spawn(
                            Command::new("sh").args(["-c", script]),
                            opts.clone().grace(Duration::ZERO),
                        )
                        .unwrap();
                        let until = Instant::now() + Duration::from_secs(60);
                        while tree.members().len() < 1000 && Instant::now() < until {
                            std::thread::sleep(Duration::from_millis(10));
                        }
                        let start = Instant::now();
                        let report = tree.stop();
                        let returned = start.elapsed();
                        assert!(report.survivors.is_empty());
                        total += if clock == "members_gone" { report.gone.unwrap() } else { returned };
                    }
                    total
                });
            });
        }
    }
    g.finish();
}

/// CPU time this thread spends stopping a tree during a 2 s grace (a member ignores SIGTERM),
/// from `/proc/thread-self/schedstat` (nanoseconds on CPU). Not a criterion measurement (one 2 s
/// stop per mode is the point); printed as a share of one core. Target: ≤ 2%.
fn cpu_during_grace() {
    let on_cpu = || -> u64 {
        std::fs::read_to_string("/proc/thread-self/schedstat")
            .ok()
            .and_then(|s| s.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    for (name, opts) in [("cgroup", TreeOptions::new()), ("fallback", TreeOptions::new().cgroup(false))] {
        let tree = ProcessTree::spawn(
            Command::new("sh").args(["-c", "trap '' TERM; sleep 60 & wait"]),
            opts.grace(Duration::from_secs(2)),
        )
        .unwrap();
        std::thread::sleep(Duration::from_millis(50));
        let (cpu0, t0) = (on_cpu(), Instant::now());
        tree.stop();
        let (cpu, wall) = (on_cpu() - cpu0, t0.elapsed());
        println!(
            "cpu_during_2s_grace/{name}: {:.2}% of one core ({:.1} ms on CPU in {:.2} s)",
            cpu as f64 / wall.as_nanos() as f64 * 100.0,
            cpu as f64 / 1e6,
            wall.as_secs_f64()
        );
    }
}

fn cpu(_: &mut Criterion) {
    cpu_during_grace();
}

criterion_group!(benches, stop_polite_child, spawn_vs_plain, stop_a_thousand, cpu);
criterion_main!(benches);
