//! The journal's costs, each against its baseline in the same group:
//! - a resource's record (intent + completion, each durable) vs two plain `fdatasync`'d appends
//!   of the same sizes to a file on the same disk (target ≤ 1.2×);
//! - a release vs one plain durable append (≤ 1.2×);
//! - a reap of 10,000 dead records (paths already gone: no waiting for processes) (≤ 1 s);
//! - heap bytes per live record in the owner's index (≤ 64 B), printed.
//!
//! Files live under `target/` (the repository's disk, not a tmpfs).
//!
//! Run: `cargo bench -p closeout-journal --bench journal`

#[path = "../../closeout/benches/common/counting.rs"]
mod counting;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use closeout_journal::{FileId, FileStore, Journal, PathKind, ReapOptions, Resource, reap};
use criterion::{BatchSize, Criterion, criterion_group};

fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/bench-journal").join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn resource(n: u64, done: bool) -> Resource {
    let path = PathBuf::from(format!("/nonexistent/closeout-bench/dir-{n:08}"));
    Resource::Path { path, what: PathKind::Dir, id: done.then_some(FileId { dev: 2049, ino: 1_000_000 + n }) }
}

/// The sizes of an intent and a completion line, as the journal writes them.
fn line_sizes() -> (usize, usize) {
    let intent =
        serde_json::to_vec(&serde_json::json!({"op": "intent", "id": 0, "resource": resource(0, false)}));
    let done =
        serde_json::to_vec(&serde_json::json!({"op": "complete", "id": 0, "resource": resource(0, true)}));
    (intent.unwrap().len() + 10, done.unwrap().len() + 10)
}

fn record(c: &mut Criterion) {
    let (a, b) = line_sizes();
    let mut g = c.benchmark_group("record");
    g.sample_size(30);
    let dir = scratch("record");
    let plain = dir.join("plain");
    let mut file = std::fs::OpenOptions::new().create(true).append(true).open(&plain).unwrap();
    let (line_a, line_b) = (vec![b'x'; a], vec![b'y'; b]);
    g.bench_function("two_plain_fdatasync_appends_baseline", |bench| {
        bench.iter(|| {
            file.write_all(&line_a).unwrap();
            file.sync_data().unwrap();
            file.write_all(&line_b).unwrap();
            file.sync_data().unwrap();
        });
    });
    let journal = Journal::open(dir.join("state")).unwrap();
    // One record held for the whole run, so no release ever retires (removes) the file.
    let _keep = journal.record(resource(u64::MAX, false)).unwrap();
    let mut n = 0;
    let mut entries = Vec::new();
    g.bench_function("journal_intent_and_completion", |bench| {
        bench.iter(|| {
            n += 1;
            let entry = journal.record(resource(n, false)).unwrap();
            entry.complete(resource(n, true)).unwrap();
            entries.push(entry);
        });
    });
    g.finish();
    drop(entries);
}

fn release(c: &mut Criterion) {
    let (a, _) = line_sizes();
    let mut g = c.benchmark_group("release");
    g.sample_size(30);
    let dir = scratch("release");
    let mut file = std::fs::OpenOptions::new().create(true).append(true).open(dir.join("plain")).unwrap();
    // A release line is shorter than an intent; the baseline appends a release-sized line.
    let line = vec![b'x'; a.min(40)];
    g.bench_function("one_plain_fdatasync_append_baseline", |bench| {
        bench.iter(|| {
            file.write_all(&line).unwrap();
            file.sync_data().unwrap();
        });
    });
    let journal = Journal::open(dir.join("state")).unwrap();
    let _keep = journal.record(resource(u64::MAX, false)).unwrap();
    let mut n = 0;
    g.bench_function("journal_release", |bench| {
        bench.iter_batched(
            || {
                n += 1;
                journal.record(resource(n, false)).unwrap()
            },
            |entry| entry.release().unwrap(),
            BatchSize::SmallInput,
        );
    });
    g.finish();
}

/// Reap of 10,000 dead records: one dead owner's file (written once by a child process that
/// records 10,000 paths and exits without releasing), copied into a fresh state directory for
/// each iteration (outside the measured window).
fn reap_10k(c: &mut Criterion) {
    let dir = scratch("reap");
    let source = dir.join("source");
    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .env("CLOSEOUT_JOURNAL_BENCH_WRITER", &source)
        .status()
        .unwrap();
    assert!(status.success());
    let file = std::fs::read_dir(&source).unwrap().next().unwrap().unwrap().path();
    let name = file.file_name().unwrap().to_owned();
    let mut g = c.benchmark_group("reap");
    g.sample_size(10).measurement_time(Duration::from_secs(5));
    let mut round = 0;
    g.bench_function("reap_10000_dead_records", |bench| {
        bench.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                round += 1;
                let state = dir.join(format!("state-{round}"));
                std::fs::create_dir_all(&state).unwrap();
                std::fs::set_permissions(&state, std::os::unix::fs::PermissionsExt::from_mode(0o700))
                    .unwrap();
                std::fs::copy(&file, state.join(&name)).unwrap();
                let store = FileStore::open(&state).unwrap();
                let start = Instant::now();
                let report = reap(&store, &ReapOptions::new()).unwrap();
                total += start.elapsed();
                assert_eq!(report.records().count(), 10_000);
                assert!(report.is_success());
                std::fs::remove_dir_all(&state).unwrap();
            }
            total
        });
    });
    g.finish();
}

/// Heap bytes per live record in the owner's index: 10,000 records made, their entries kept
/// outside the window (they are the caller's), the journal's growth divided by 10,000.
fn index_memory(_: &mut Criterion) {
    let dir = scratch("memory");
    let journal = Journal::open(dir.join("state")).unwrap();
    let _keep = journal.record(resource(u64::MAX, false)).unwrap();
    let mut entries = Vec::with_capacity(10_000);
    let before = counting::live();
    for n in 0..10_000 {
        entries.push(journal.record(resource(n, false)).unwrap());
    }
    let grown = counting::live() - before;
    println!(
        "index_memory: {:.1} B per live record ({} B for 10,000; the caller's Vec of entries preallocated outside)",
        grown as f64 / 10_000.0,
        grown
    );
    drop(entries);
}

fn writer() -> bool {
    let Some(dir) = std::env::var_os("CLOSEOUT_JOURNAL_BENCH_WRITER") else { return false };
    let journal = Journal::open(dir).unwrap();
    for n in 0..10_000 {
        let entry = journal.record(resource(n, false)).unwrap();
        entry.complete(resource(n, true)).unwrap();
        std::mem::forget(entry);
    }
    true
}

criterion_group!(benches, record, release, reap_10k, index_memory);

fn main() {
    if writer() {
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
