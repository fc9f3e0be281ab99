//! A transaction survives its owner's SIGKILL: a writer applies transactions in a loop (writes,
//! a copy, a move, a delete), is killed at a random moment 200 times, and after each kill
//! `Transaction::recover` leaves the tree at one whole version: no mix of versions, no missing
//! or partly written target, no set-aside file or intent record left.

use std::path::Path;
use std::process::{Command, Stdio};

use closeout_fs::{Dir, Transaction};

mod common;

const SIZE: usize = 64 * 1024;

fn is_child() -> bool {
    std::env::var("CLOSEOUT_TXN_CHILD").is_ok()
}

/// Version `v`'s bytes: `v` modulo an even number, so the byte keeps `v`'s parity.
fn content(v: u64) -> Vec<u8> {
    vec![(v % 250) as u8 + 1; SIZE]
}

/// Version `v` of the tree: a, b, c hold v; `m{v%2}` holds v (moved from the other parity);
/// `x{v%2}` holds v and the other parity's `x` is gone.
fn apply(dir: &Dir, v: u64) {
    let (cur, prev) = (v % 2, (v + 1) % 2);
    Transaction::new(dir)
        .write("a", content(v))
        .write("b", content(v))
        .copy("a", "c")
        .rename(format!("m{prev}"), format!("m{cur}"))
        .write(format!("m{cur}"), content(v))
        .delete(format!("x{prev}"))
        .write(format!("x{cur}"), content(v))
        .apply()
        .unwrap();
}

/// The version the tree holds (modulo 250), checking it is exactly one whole version.
fn version(root: &Path) -> u64 {
    let read = |name: &str| std::fs::read(root.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    let a = read("a");
    assert_eq!(a.len(), SIZE, "a is whole");
    let byte = a[0];
    assert!(a.iter().all(|&x| x == byte), "a is one version");
    for name in ["b", "c"] {
        assert_eq!(read(name), a, "{name} is the same version as a");
    }
    let v = u64::from(byte - 1);
    let cur = v % 2;
    for (name, present) in [
        (format!("m{cur}"), true),
        (format!("m{}", 1 - cur), false),
        (format!("x{cur}"), true),
        (format!("x{}", 1 - cur), false),
    ] {
        assert_eq!(root.join(&name).exists(), present, "{name} (version byte {byte})");
        if present {
            assert_eq!(read(&name), a, "{name} is the same version");
        }
    }
    let mut names: Vec<String> = std::fs::read_dir(root)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names.len(), 5, "nothing else left: {names:?}");
    v
}

/// Applies one version after another in `$ROOT`, forever (the helpers' body).
fn apply_forever() -> ! {
    let root = std::env::var("ROOT").unwrap();
    let dir = Dir::confined(&root).unwrap();
    let mut v = version(Path::new(&root));
    println!("READY");
    loop {
        v += 1;
        apply(&dir, v);
    }
}

/// A directory holding version 0 of the tree.
fn version_zero() -> (tempfile::TempDir, Dir) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = Dir::confined(tmp.path()).unwrap();
    for name in ["a", "b", "c", "m0", "x0"] {
        std::fs::write(tmp.path().join(name), content(0)).unwrap();
    }
    (tmp, dir)
}

/// Helper: applies one version after another, forever.
#[test]
fn txn_child() {
    if !is_child() {
        return;
    }
    apply_forever()
}

#[test]
fn a_transaction_killed_at_random_moments_is_recovered_to_one_whole_version() {
    let (tmp, dir) = version_zero();
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let (mut rolled_back, mut advanced) = (0, 0);
    let mut last = 0;
    for round in 0..200 {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "txn_child", "--nocapture", "--test-threads=1"])
            .env("CLOSEOUT_TXN_CHILD", "1")
            .env("ROOT", tmp.path())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        common::kill_at_a_random_moment(&mut child, &mut seed);
        let finished = Transaction::recover(&dir).unwrap();
        assert!(finished.len() <= 1, "round {round}: at most the one transaction in flight: {finished:?}");
        if finished.is_empty() {
            advanced += 1;
        } else {
            rolled_back += 1;
        }
        let v = version(tmp.path());
        // Versions count modulo 250: a committed one is never lost, so the tree only moves on.
        assert!((v + 250 - last) % 250 < 125, "round {round}: went back from {last} to {v}");
        last = v;
    }
    // The kills landed both between and inside transactions.
    assert!(rolled_back > 0, "no kill landed inside a transaction ({advanced} between)");
    eprintln!(
        "200 kills: {rolled_back} inside a transaction (finished by recover), {advanced} between; last version {last}"
    );
}

/// Helper: as `txn_child`, with a default journal in `STATE`.
#[test]
fn txn_journal_child() {
    let Ok(state) = std::env::var("CLOSEOUT_TXN_JOURNAL") else { return };
    closeout_journal::Journal::open(state).unwrap().set_default();
    apply_forever()
}

/// With a default journal, nobody needs to know the directory: `closeout_journal::reap` (with
/// the transaction handler) finishes what a SIGKILLed owner left, and removes its journal.
#[test]
fn a_journaled_transaction_killed_at_random_moments_is_finished_by_a_reap() {
    let (tmp, dir) = version_zero();
    let state = tempfile::tempdir().unwrap();
    let opts = closeout_journal::ReapOptions::new()
        .handler(closeout_fs::TRANSACTION_KIND, closeout_fs::reap_transactions);
    let mut seed = 0x1234_5678_9abc_def1u64;
    let mut reaped = 0;
    for round in 0..200 {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "txn_journal_child", "--nocapture", "--test-threads=1"])
            .env("CLOSEOUT_TXN_JOURNAL", state.path())
            .env("ROOT", tmp.path())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        common::kill_at_a_random_moment(&mut child, &mut seed);
        let store = closeout_journal::FileStore::open(state.path()).unwrap();
        let report = closeout_journal::reap(&store, &opts).unwrap();
        assert!(report.is_success(), "round {round}:\n{report}");
        reaped += report.records().count();
        version(tmp.path());
        assert_eq!(std::fs::read_dir(state.path()).unwrap().count(), 0, "round {round}: journal left");
    }
    assert!(Transaction::recover(&dir).unwrap().is_empty(), "a reap left a transaction unfinished");
    assert!(reaped > 0, "no kill landed inside a transaction");
    eprintln!("200 kills: {reaped} transaction record(s) reaped");
}
