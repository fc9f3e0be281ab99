//! What the owner-process tests share: an owner (this test binary, re-run as a helper) tells
//! its parent about its trees on stdout, and the parent reads that back.
#![allow(dead_code, unreachable_pub)]

use std::io::{BufRead, BufReader};
use std::process::Child;
use std::time::{Duration, Instant};

use closeout_process::{Containment, ProcessTree};

/// In the owner: waits until each tree has `n` members, prints their cgroups and members, then
/// READY.
pub fn announce(trees: &[&ProcessTree], n: usize) {
    let until = Instant::now() + Duration::from_secs(20);
    while trees.iter().any(|t| t.members().len() < n) {
        assert!(Instant::now() < until, "the trees did not start");
        std::thread::sleep(Duration::from_millis(5));
    }
    for tree in trees {
        if let Containment::Cgroup(path) = tree.containment() {
            println!("CGROUP={}", path.display());
        }
        let pids: Vec<String> = tree.members().iter().map(u32::to_string).collect();
        println!("MEMBERS={}", pids.join(","));
    }
    println!("READY");
}

/// In the parent: the members and cgroups the owner announced (bounded wait for READY).
pub fn read_announcement(owner: &mut Child) -> (Vec<u32>, Vec<String>) {
    let out = owner.stdout.take().expect("piped stdout");
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let (mut members, mut cgroups) = (Vec::new(), Vec::new());
    loop {
        let line = rx.recv_timeout(Duration::from_secs(30)).expect("the owner did not get ready");
        if let Some((_, list)) = line.split_once("MEMBERS=") {
            members.extend(list.trim().split(',').map(|p| p.parse::<u32>().unwrap()));
        }
        if let Some((_, path)) = line.split_once("CGROUP=") {
            cgroups.push(path.trim().to_owned());
        }
        if line.contains("READY") {
            return (members, cgroups);
        }
    }
}

/// Whether `pid` runs (not a zombie).
pub fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|s| !s.contains(") Z ") && !s.contains(") X "))
}

/// Whether trees get a cgroup here (a writable cgroup v2, and no `CLOSEOUT_NO_CGROUP`).
pub fn cgroups_available() -> bool {
    let probe =
        ProcessTree::spawn(std::process::Command::new("true").arg(""), closeout_process::TreeOptions::new())
            .expect("spawning true");
    let cgroup = matches!(probe.containment(), Containment::Cgroup(_));
    probe.stop();
    cgroup
}
