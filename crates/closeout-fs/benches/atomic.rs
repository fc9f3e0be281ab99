//! Atomic write of 4 KiB (temp file, fsync, rename, fsync of the directory) next to a plain
//! write + fsync of the same file, in the same run.
//!
//! Run: `cargo bench -p closeout-fs --bench atomic`

use std::io::Write;

use closeout_fs::AtomicFile;
use criterion::{Criterion, criterion_group, criterion_main};

fn write_4k(c: &mut Criterion) {
    let dir = tempfile::tempdir_in(".").unwrap();
    let target = dir.path().join("data.bin");
    std::fs::write(&target, [0u8; 4096]).unwrap();
    let data = [7u8; 4096];
    let mut g = c.benchmark_group("write_4k");
    g.bench_function("plain_write_fsync", |b| {
        b.iter(|| {
            let mut f = std::fs::OpenOptions::new().write(true).truncate(true).open(&target).unwrap();
            f.write_all(&data).unwrap();
            f.sync_all().unwrap();
        })
    });
    g.bench_function("atomic", |b| {
        b.iter(|| {
            let mut f = AtomicFile::create(&target).unwrap();
            f.write_all(&data).unwrap();
            f.commit().unwrap();
        })
    });
    g.finish();
}

criterion_group!(benches, write_4k);
criterion_main!(benches);
