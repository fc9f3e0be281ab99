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

/// The daemon's `sleep` argument, to find (and, in the fallback, kill) it by its command line.
const DAEMON: &str = "300.25";

/// Kills the daemons of this test that are still running (the fallback cannot reach them).
fn kill_daemons() {
    let want = format!("sleep\0{DAEMON}\0");
    for pid in
        std::fs::read_dir("/proc").unwrap().filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
    {
        if std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c == want.as_bytes())
            && let Some(p) = rustix::process::Pid::from_raw(pid)
        {
            let _ = rustix::process::kill_process(p, rustix::process::Signal::KILL);
        }
    }
}

#[test]
fn journal_owner_helper() {
    let Ok(state) = std::env::var(HELPER) else { return };
    let journal = Journal::open(&state).unwrap();
    // The daemon clears its environment and starts its own session: in the fallback it is out
    // of reach (no marker, no group) and the test does not count it; in a cgroup it is caught.
    let script = format!("env -i setsid sh -c 'sleep {DAEMON} & sleep {DAEMON}' & sleep 300 & sleep 300");
    let tree = ProcessTree::spawn(
        Command::new("sh").args(["-c", &script]).stdout(Stdio::null()).stderr(Stdio::null()),
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
    let (mut members, cgroups) = common::read_announcement(&mut owner);
    let cgroup = cgroups.first().map(std::path::PathBuf::from);
    assert!(members.len() >= 3, "{members:?}");
    assert_eq!(cgroup.is_none(), fallback || !common::cgroups_available());
    if cgroup.is_none() {
        // The fallback finds members by their marker. The daemon's shell carried it until it
        // ran `env -i`: if the announcement caught it then, it is out of reach now (the
        // documented limit of this mode), so only what still carries the marker counts.
        std::thread::sleep(Duration::from_millis(100));
        members.retain(|p| {
            std::fs::read(format!("/proc/{p}/environ"))
                .is_ok_and(|e| e.split(|&b| b == 0).any(|v| v.starts_with(b"CLOSEOUT_TREE=")))
        });
        assert!(members.len() >= 3, "{members:?}");
    }
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
    if let Some(path) = &cgroup {
        assert!(!path.exists(), "{} was not removed", path.display());
    }
    assert_eq!(std::fs::read_dir(state.path()).unwrap().count(), 0, "the owner's file is still there");
    if cgroup.is_none() {
        kill_daemons();
    }
}

#[test]
fn a_sigkilled_owners_tree_is_reaped_in_a_cgroup() {
    run(false);
}

#[test]
fn a_sigkilled_owners_tree_is_reaped_in_the_fallback() {
    run(true);
}
