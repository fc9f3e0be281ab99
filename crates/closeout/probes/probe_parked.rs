//! Teardown of parked tracked tasks, for perf: spawns 10,000 tasks parked on their token, then
//! tears them down, `ROUNDS` times; prints the time of the teardowns alone.
//!
//! `probe_parked registry|scope|tracker`
use std::time::{Duration, Instant};

use closeout::owner::{Owner, Spawn};
use closeout::{Registry, Scope};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

const N: usize = 10_000;
/// Rounds, 50 unless `PROBE_ROUNDS` says otherwise (callgrind wants few).
fn rounds() -> usize {
    std::env::var("PROBE_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(50)
}

fn main() {
    let mode = std::env::args().nth(1).unwrap_or_default();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let mut total = Duration::ZERO;
    rt.block_on(async {
        for _ in 0..rounds() {
            let start;
            match mode.as_str() {
                "registry-split" => {
                    let registry = Registry::new();
                    for _ in 0..N {
                        registry.spawn(Spawn::numbered("t"), |t| async move { t.cancelled().await }).unwrap();
                    }
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    let t0 = Instant::now();
                    registry.token().cancel();
                    let cancel = t0.elapsed();
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    start = Instant::now();
                    std::hint::black_box(registry.cleanup_all().await);
                    eprintln!("cancel {cancel:?}, teardown after the tasks ended {:?}", start.elapsed());
                }
                "registry" => {
                    let registry = Registry::new();
                    for _ in 0..N {
                        registry.spawn(Spawn::numbered("t"), |t| async move { t.cancelled().await }).unwrap();
                    }
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    start = Instant::now();
                    std::hint::black_box(registry.cleanup_all().await);
                }
                "scope" => {
                    let scope = Scope::new();
                    for _ in 0..N {
                        scope.spawn("t", |t| async move { t.cancelled().await }).unwrap();
                    }
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    start = Instant::now();
                    std::hint::black_box(scope.close_async().await);
                }
                _ => {
                    let tracker = TaskTracker::new();
                    let token = CancellationToken::new();
                    for _ in 0..N {
                        let t = token.clone();
                        tracker.spawn(async move { t.cancelled().await });
                    }
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    start = Instant::now();
                    token.cancel();
                    tracker.close();
                    tracker.wait().await;
                }
            }
            total += start.elapsed();
        }
    });
    println!("{mode}: {:?} per teardown of {N}", total / rounds() as u32);
}
