//! Memory after 1,000,000 fired `set_timeout`s on one scope: resident set size (from
//! `/proc/self/statm`) and live heap (a counting allocator), before and after.
//!
//! Two shapes: in waves of 10,000 pending at a time (a busy service), and all 1,000,000
//! pending at once (the worst case: everything pending is held at the peak). Each shape first
//! runs up to ten waves to warm up, so "before" includes the runtime's and the allocator's one-off
//! growth; the delta is what 1,000,000 further fired timeouts leave behind. Prints a table; it
//! is not a criterion timing benchmark.
//!
//! Run: `cargo bench --bench timers`

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use closeout::Scope;
use closeout::owner::Owner;

#[path = "common/counting.rs"]
mod counting;
use counting::live;

fn rss_kib() -> i64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: i64 = statm.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    pages * 4
}

/// How many timeouts fire after the warm-up: 1,000,000, or `CLOSEOUT_TIMERS` to check that the
/// delta does not grow with the count.
fn total() -> usize {
    std::env::var("CLOSEOUT_TIMERS").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000)
}

async fn warm_up(scope: &Scope, wave: usize) {
    fire_n(scope, wave, (wave * 10).min(total())).await;
}

async fn fire(scope: &Scope, wave: usize) {
    fire_n(scope, wave, total()).await;
}

async fn fire_n(scope: &Scope, wave: usize, total: usize) {
    let fired = Arc::new(AtomicUsize::new(0));
    let mut done = 0;
    while done < total {
        let n = wave.min(total - done);
        for _ in 0..n {
            let f = Arc::clone(&fired);
            scope
                .set_timeout(Duration::from_millis(1), move || {
                    f.fetch_add(1, Ordering::Relaxed);
                })
                .unwrap();
        }
        done += n;
        while fired.load(Ordering::Relaxed) < done {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    // Let the finished tasks be freed.
    for _ in 0..100 {
        tokio::task::yield_now().await;
    }
    assert_eq!(scope.len(), 0, "fired timeouts left entries behind");
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    println!(
        "{:<28} {:>12} {:>12} {:>12} {:>14}",
        "shape", "rss before", "rss after", "rss delta", "heap delta"
    );
    for (label, wave) in [("waves of 10,000", 10_000usize), ("all at once", total())] {
        rt.block_on(async {
            let scope = Scope::new();
            // Warm up with one wave of the same shape, so the runtime's and the allocator's
            // one-off growth is in "before": what is measured is what 1,000,000 more leave.
            warm_up(&scope, wave).await;
            let (rss0, heap0) = (rss_kib(), live());
            fire(&scope, wave).await;
            let (rss1, heap1) = (rss_kib(), live());
            println!(
                "{:<28} {:>9} KiB {:>9} KiB {:>9} KiB {:>11} B",
                label,
                rss0,
                rss1,
                rss1 - rss0,
                heap1 - heap0
            );
        });
    }
}
