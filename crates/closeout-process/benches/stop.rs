//! The stop ladder's latency for a child that exits on SIGTERM: from the call to `stop()` to
//! its return, which includes the signal's delivery and the child's exit. The target is that
//! the ladder returns ≤ 5 ms after the child exits; this measures the whole stop, an upper
//! bound of that.
//!
//! Run: `cargo bench -p closeout-process --bench stop`

use std::process::Command;
use std::time::{Duration, Instant};

use closeout_process::{ProcessTree, TreeOptions};
use criterion::{Criterion, criterion_group, criterion_main};

fn stop_polite_child(c: &mut Criterion) {
    let mut g = c.benchmark_group("stop");
    g.sample_size(30).measurement_time(Duration::from_secs(15));
    g.bench_function("sleep_exits_on_sigterm", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let tree = ProcessTree::spawn(Command::new("sleep").arg("60"), TreeOptions::new()).unwrap();
                // Let it reach `sleep` (exec done), as a running service would be.
                std::thread::sleep(Duration::from_millis(5));
                let start = Instant::now();
                let report = tree.stop();
                total += start.elapsed();
                assert!(report.is_graceful());
            }
            total
        });
    });
    g.finish();
}

criterion_group!(benches, stop_polite_child);
criterion_main!(benches);
