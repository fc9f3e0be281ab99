//! A temp dir made with a default journal outlives its SIGKILLed owner only until a reap.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

#[test]
fn temp_dir_owner() {
    let Ok(state) = std::env::var("CLOSEOUT_TEMP_JOURNAL") else { return };
    closeout_journal::Journal::open(state).unwrap().set_default();
    let registry = closeout::Registry::new();
    let path = closeout_fs::temp_dir_in(&registry, "scratch").unwrap();
    std::fs::write(path.join("data"), b"x").unwrap();
    println!("PATH={}", path.display());
    println!("READY");
    std::thread::sleep(std::time::Duration::from_secs(300));
}

#[test]
fn a_sigkilled_owners_temp_dir_is_removed_by_a_reap_and_a_normal_release_leaves_no_record() {
    let state = tempfile::tempdir().unwrap();
    let mut owner = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "temp_dir_owner", "--nocapture", "--test-threads=1"])
        .env("CLOSEOUT_TEMP_JOURNAL", state.path())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut path = None;
    for line in BufReader::new(owner.stdout.take().unwrap()).lines().map_while(Result::ok) {
        if let Some((_, p)) = line.split_once("PATH=") {
            path = Some(std::path::PathBuf::from(p.trim()));
        }
        if line.contains("READY") {
            break;
        }
    }
    let path = path.expect("the owner printed its temp dir");
    owner.kill().unwrap();
    owner.wait().unwrap();
    assert!(path.join("data").exists(), "left behind by the SIGKILL");
    let store = closeout_journal::FileStore::open(state.path()).unwrap();
    let report = closeout_journal::reap(&store, &closeout_journal::ReapOptions::new()).unwrap();
    assert!(report.is_success() && report.records().count() == 1, "{report}");
    assert!(!path.exists(), "{} survived the reap", path.display());
    assert_eq!(std::fs::read_dir(state.path()).unwrap().count(), 0);

    // The normal path, in this process: the release removes the dir and its record.
    let journal = closeout_journal::Journal::open(state.path()).unwrap();
    journal.set_default();
    let registry = closeout::Registry::new();
    let path = closeout_fs::temp_dir_in(&registry, "scratch").unwrap();
    assert_eq!(journal.live(), 1);
    assert!(registry.shutdown_blocking().is_success());
    closeout_journal::Journal::clear_default();
    assert!(!path.exists());
    assert_eq!(journal.live(), 0);
    assert_eq!(std::fs::read_dir(state.path()).unwrap().count(), 0);
}
