//! A journaled tree outlives its SIGKILLed owner only until a reap: the owner (this test binary,
//! re-run as a helper) spawns a tree with a daemon that clears its environment and leaves the
//! group, and is SIGKILLed; `closeout_journal::list` shows it dead with one record, and
//! `reap` kills the tree, removes its cgroup and the owner's file. Both containment modes.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use closeout_journal::{FileStore, Journal, ReapOptions, list, reap};
use closeout_process::{ProcessTree, TreeOptions};

mod common;
use common::alive;

const HELPER: &str = "CLOSEOUT_PROCESS_JOURNAL_HELPER";

#[test]
fn journal_owner_helper() {
    let Ok(state) = std::env::var(HELPER) else { return };
    let journal = Journal::open(&state).unwrap();
    // The daemon clears its environment and starts its own session: in the fallback it is out
    // of reach (no marker, no group) and the test does not count it; in a cgroup it is caught.
    let script = "env -i setsid sh -c 'sleep 300 & sleep 300' & sleep 300 & sleep 300";
    let tree = ProcessTree::spawn(
        Command::new("sh").args(["-c", script]).stdout(Stdio::null()),
        TreeOptions::new().journal(&journal),
    )
    .unwrap();
    common::announce(&[&tree], 3);
    std::thread::sleep(Duration::from_secs(300));
}

fn run(fallback: bool) {
    let state = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["--exact", "journal_owner_helper", "--nocapture", "--test-threads=1"])
        .env(HELPER, state.path())
        .stdout(Stdio::piped());
    if fallback {
        cmd.env(closeout_process::NO_CGROUP_ENV, "1");
    }
    let mut owner = cmd.spawn().unwrap();
    let (members, cgroups) = common::read_announcement(&mut owner);
    let cgroup = cgroups.first().map(std::path::PathBuf::from);
    assert!(members.len() >= 3, "{members:?}");
    assert_eq!(cgroup.is_none(), fallback || !common::cgroups_available());
    owner.kill().unwrap(); // SIGKILL: nothing of the owner runs
    owner.wait().unwrap();
    assert!(members.iter().any(|&p| alive(p)), "the tree should outlive its owner until the reap");
    let store = FileStore::open(state.path()).unwrap();
    let owners = list(&store).unwrap();
    assert_eq!(owners.len(), 1);
    assert!(!owners[0].alive);
    assert_eq!(owners[0].records.len(), 1, "{owners:?}");
    assert!(owners[0].records[0].completed);
    let report = reap(&store, &ReapOptions::new()).unwrap();
    assert!(report.is_success(), "{report}");
    let until = Instant::now() + Duration::from_secs(5);
    loop {
        let left: Vec<u32> = members.iter().copied().filter(|&p| alive(p)).collect();
        if left.is_empty() {
            break;
        }
        assert!(Instant::now() < until, "fallback {fallback}: left {left:?}\n{report}");
        std::thread::sleep(Duration::from_millis(5));
    }
    if let Some(path) = cgroup {
        assert!(!path.exists(), "{} was not removed", path.display());
    }
    assert_eq!(std::fs::read_dir(state.path()).unwrap().count(), 0, "the owner's file is still there");
}

#[test]
fn a_sigkilled_owners_tree_is_reaped_in_a_cgroup() {
    run(false);
}

#[test]
fn a_sigkilled_owners_tree_is_reaped_in_the_fallback() {
    run(true);
}
