//! Real process trees: grandchildren, a daemon that double-forks and calls `setsid`, a script
//! that ignores SIGTERM, an owner that is SIGKILLed. After each stop no process of the tree
//! exists, not even as a zombie. Each test runs in its own process under nextest, so making it
//! a subreaper affects nothing else.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use closeout::{Registry, Status};
use closeout_process::{ProcessTree, StopError, TreeOptions, become_subreaper};

/// Waits (bounded) until the tree has at least `n` live members; returns them.
fn members_at_least(tree: &ProcessTree, n: usize) -> Vec<u32> {
    let start = Instant::now();
    loop {
        let members = tree.members();
        if members.len() >= n {
            return members;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "only {members:?} after 20 s");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// No process with any of these pids exists, running or zombie.
fn assert_all_gone(pids: &[u32]) {
    for &pid in pids {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"));
        assert!(stat.is_err(), "process {pid} still exists: {}", stat.unwrap_or_default());
    }
}

const FAMILY: &str = "
sleep 300 &
sh -c 'sleep 300' &
( setsid sh -c 'sleep 300 & exec sleep 300' & )
wait
";

#[test]
fn grandchildren_and_a_setsid_daemon_are_stopped_and_reaped() {
    become_subreaper().unwrap();
    let tree = ProcessTree::spawn(Command::new("sh").args(["-c", FAMILY]), TreeOptions::new()).unwrap();
    // sh, sleep, sh, sleep, and the daemon's sh (exec'd into sleep) with its sleep.
    let members = members_at_least(&tree, 6);
    let report = tree.stop();
    assert!(report.is_graceful(), "{report:?}");
    for pid in &members {
        assert!(report.seen.contains(pid), "{pid} not seen: {report:?}");
    }
    assert_all_gone(&members);
    assert!(tree.members().is_empty());
    // Stopping again returns the same report.
    assert_eq!(tree.stop(), report);
}

#[test]
fn a_tree_ignoring_sigterm_is_killed_after_its_grace_and_the_report_says_so() {
    become_subreaper().unwrap();
    let script = "trap '' TERM; sleep 300 & sleep 300 & wait";
    let grace = Duration::from_millis(300);
    let tree =
        ProcessTree::spawn(Command::new("sh").args(["-c", script]), TreeOptions::new().grace(grace)).unwrap();
    let members = members_at_least(&tree, 3);
    let registry = Registry::new();
    registry.register(tree.resource("stubborn")).unwrap();
    let report = registry.shutdown_blocking();
    let entry = report.get("stubborn").unwrap();
    assert_eq!(entry.category().as_str(), "process");
    let Status::Failed(err) = entry.status() else { panic!("{report}") };
    let err = err.get_ref().downcast_ref::<StopError>().expect("a StopError");
    match err {
        StopError::NeededKill { pids, status, .. } => {
            assert_eq!(pids.len(), 3, "{err}");
            assert!(status.contains("signal: 9"), "{status}");
        }
        other => panic!("{other}"),
    }
    assert!(entry.duration() >= grace);
    assert_all_gone(&members);
}

#[test]
fn a_new_session_detaches_the_child() {
    let tree =
        ProcessTree::spawn(Command::new("sleep").arg("60"), TreeOptions::new().new_session(true)).unwrap();
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", tree.pid())).unwrap();
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split_whitespace().collect();
    // state, ppid, pgrp, session
    assert_eq!(fields[2], tree.pid().to_string(), "its own group");
    assert_eq!(fields[3], tree.pid().to_string(), "its own session");
    assert!(tree.stop().is_graceful());
}

/// Runs only as the child of the next test: spawns a tree that dies with its parent, prints the
/// tree's pid, and waits to be killed.
#[test]
fn owner_child() {
    if std::env::var("CLOSEOUT_PROCESS_OWNER").is_err() {
        return;
    }
    let tree =
        ProcessTree::spawn(Command::new("sleep").arg("300"), TreeOptions::new().kill_with_parent(true))
            .unwrap();
    if let closeout_process::Containment::Cgroup(path) = tree.containment() {
        println!("CGROUP={}", path.display());
    }
    println!("CHILD={}", tree.pid());
    std::thread::sleep(Duration::from_secs(300));
}

#[test]
fn a_child_dies_with_an_owner_that_was_sigkilled() {
    let mut owner = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "owner_child", "--nocapture", "--test-threads=1"])
        .env("CLOSEOUT_PROCESS_OWNER", "1")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let out = owner.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let (cg_tx, cg_rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            // libtest prints "test owner_child ... " on the same line first.
            if let Some((_, path)) = line.split_once("CGROUP=") {
                let _ = cg_tx.send(path.trim().to_owned());
            }
            if let Some((_, pid)) = line.split_once("CHILD=") {
                let _ = tx.send(pid.trim().parse::<u32>().unwrap());
            }
        }
    });
    let child = rx.recv_timeout(Duration::from_secs(30)).expect("owner did not start its child");
    assert!(std::fs::metadata(format!("/proc/{child}")).is_ok());
    owner.kill().unwrap(); // SIGKILL: the owner gets no chance to stop anything
    owner.wait().unwrap();
    let start = Instant::now();
    // The child is reparented and killed by the kernel; its new parent reaps it.
    while std::fs::read_to_string(format!("/proc/{child}/stat")).is_ok_and(|s| !s.contains(") Z ")) {
        assert!(start.elapsed() < Duration::from_secs(10), "child {child} outlived its SIGKILLed owner");
        std::thread::sleep(Duration::from_millis(10));
    }
    // A SIGKILLed owner cannot remove its tree's (now empty) cgroup: the journal's `reap` will.
    // Here the test does, after checking it is empty.
    if let Ok(path) = cg_rx.try_recv() {
        let until = Instant::now() + Duration::from_secs(10);
        while std::fs::read_to_string(format!("{path}/cgroup.events"))
            .is_ok_and(|e| e.contains("populated 1"))
        {
            assert!(Instant::now() < until, "{path} still populated");
            std::thread::sleep(Duration::from_millis(10));
        }
        std::fs::remove_dir(&path).unwrap();
    }
}

#[tokio::test(flavor = "current_thread")]
async fn the_async_stop_reports_the_exit_status() {
    let tree =
        ProcessTree::spawn(Command::new("sh").args(["-c", "exec sleep 60"]), TreeOptions::new()).unwrap();
    members_at_least(&tree, 1);
    let report = tree.stop_async().await;
    assert!(report.is_graceful());
    let status = report.status.expect("exit status collected");
    assert_eq!(std::os::unix::process::ExitStatusExt::signal(&status), Some(15));
}

#[tokio::test(flavor = "current_thread")]
async fn the_tokio_flavour_stops_the_whole_tree_too() {
    become_subreaper().unwrap();
    let mut cmd = tokio::process::Command::new("sh");
    cmd.args(["-c", FAMILY]);
    let tree = ProcessTree::spawn_tokio(&mut cmd, TreeOptions::new()).unwrap();
    let members = members_at_least(&tree, 6);
    let report = tree.stop_async().await;
    assert!(report.is_graceful(), "{report:?}");
    assert!(report.status.is_some(), "exit status collected");
    assert_all_gone(&members);
}
