//! Bytes per registered resource, counted by a counting global allocator.
//!
//! Registers 1,000 and 100,000 sync resources with ids like `res-12345`, a category and no
//! tags, and reports the live heap growth per resource. The closures are zero-sized, so the
//! figure is everything *beyond* the closure: slot, id, index. Also reports the same for scope
//! actions and for objects tracked by the leak tracker in full mode. Prints a table; it is not a
//! criterion timing benchmark.
//!
//! Run: `cargo bench --bench memory`

use closeout::leak::{LeakToken, Mode, Tracker};
use closeout::{Category, Registry, Resource, Scope};

#[path = "common/counting.rs"]
mod counting;
use counting::live;

fn main() {
    // `cargo bench` passes `--bench`; ignore arguments.
    println!("{:<34} {:>10} {:>14}", "what", "count", "bytes/each");
    for n in [1_000usize, 100_000] {
        let registry = Registry::new();
        // Before the caller's ids exist: at the end they are all freed again.
        let empty = live();
        let mut ids: Vec<String> = (0..n).map(|i| format!("res-{i}")).collect();
        let id_bytes: usize = ids.iter().map(|s| s.capacity()).sum();
        let before = live();
        // `drain` moves each id in and keeps the caller's vector allocated until after the
        // count: consuming the vector would free its buffer (24 B per id) inside the window
        // and hide that much of the registry's growth.
        for id in ids.drain(..) {
            registry.register(Resource::new(id, || ()).category(Category::Database)).unwrap();
        }
        // The ids were allocated before `before`; they moved in, so add them back.
        let grown = live() - before + id_bytes as isize;
        drop(ids);
        println!("{:<34} {:>10} {:>14.1}", "registry resource (incl. id)", n, grown as f64 / n as f64);
        let report = registry.cleanup_all_blocking();
        assert_eq!(report.len(), n);
        drop(report);
        // What the registry still holds after a teardown of everything, while it lives.
        let held = live() - empty;
        println!("{:<34} {:>10} {:>14.1}", "held after cleanup_all", n, held as f64 / n as f64);
        drop(registry);
    }
    for n in [1_000usize, 100_000, 1_000_000] {
        let tracker = Tracker::new(Mode::Full);
        let before = live();
        let tokens: Vec<LeakToken> = (0..n).map(|_| tracker.token("object")).collect();
        // The tokens' own vector is the caller's memory, not the tracker's.
        let grown = live() - before - (tokens.capacity() * std::mem::size_of::<LeakToken>()) as isize;
        println!("{:<34} {:>10} {:>14.1}", "tracked object (full mode)", n, grown as f64 / n as f64);
        drop(tokens);
    }
    parked_tasks();
    for n in [1_000usize, 100_000] {
        let scope = Scope::new();
        let before = live();
        for _ in 0..n {
            scope.defer(|| ()).unwrap();
        }
        let grown = live() - before;
        println!("{:<34} {:>10} {:>14.1}", "scope action", n, grown as f64 / n as f64);
        drop(scope);
    }
}

/// `n` tasks parked on one token, on a `TaskTracker`; stopped by [`stop_tracker`].
fn park_on_tracker(n: usize) -> (tokio_util::task::TaskTracker, tokio_util::sync::CancellationToken) {
    let tracker = tokio_util::task::TaskTracker::new();
    let token = tokio_util::sync::CancellationToken::new();
    for _ in 0..n {
        let t = token.clone();
        tracker.spawn(async move { t.cancelled().await });
    }
    (tracker, token)
}

async fn stop_tracker(
    (tracker, token): (tokio_util::task::TaskTracker, tokio_util::sync::CancellationToken),
) {
    token.cancel();
    tracker.close();
    tracker.wait().await;
}

/// Lets freshly spawned tasks reach their first await.
async fn settle() {
    for _ in 0..4 {
        tokio::task::yield_now().await;
    }
}

/// Prints the live heap that `park` added per task, once its tasks are parked.
async fn per_parked_task<T>(label: &str, n: usize, park: impl FnOnce() -> T) -> T {
    let before = live();
    let parked = park();
    settle().await;
    let grown = live() - before;
    println!("{:<34} {:>10} {:>14.1}", label, n, grown as f64 / n as f64);
    parked
}

/// Live heap per parked task: 10,000 tasks waiting on their token, spawned by a registry, a
/// scope and (the baseline) a `TaskTracker` sharing one token, on a current-thread runtime
/// that is warmed up first (its own one-off growth is not counted).
fn parked_tasks() {
    use closeout::owner::{Owner, Spawn};
    const N: usize = 10_000;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        // Warm-up: the runtime's task lists and the allocator's arenas.
        let warm = park_on_tracker(N);
        settle().await;
        stop_tracker(warm).await;

        let parked = per_parked_task("parked task (TaskTracker)", N, || park_on_tracker(N)).await;
        stop_tracker(parked).await;

        let registry = Registry::new();
        per_parked_task("parked task (registry)", N, || {
            for _ in 0..N {
                registry.spawn(Spawn::numbered("t"), |t| async move { t.cancelled().await }).unwrap();
            }
        })
        .await;
        assert_eq!(registry.cleanup_all().await.totals().ok, N);

        let scope = Scope::new();
        per_parked_task("parked task (scope)", N, || {
            for _ in 0..N {
                scope.spawn("t", |t| async move { t.cancelled().await }).unwrap();
            }
        })
        .await;
        assert_eq!(scope.close_async().await.len(), N);
    });
}
