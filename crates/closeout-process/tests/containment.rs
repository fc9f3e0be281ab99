//! Containment in both modes, with real processes: a fork storm stopped while it forks, daemons
//! that clear their environment and leave the group, members that ignore SIGTERM, a frozen
//! tree; after every stop, no member alive, no zombie of ours, and (cgroup mode) no cgroup left.

use std::process::Command;
use std::time::{Duration, Instant};

use closeout_process::{Containment, ProcessTree, TreeOptions, become_subreaper};

fn modes() -> Vec<(&'static str, TreeOptions)> {
    let mut modes = vec![("fallback", TreeOptions::new().cgroup(false))];
    let probe = ProcessTree::spawn(Command::new("true").arg(""), TreeOptions::new()).unwrap();
    let cgroup = matches!(probe.containment(), Containment::Cgroup(_));
    probe.stop();
    if cgroup {
        modes.push(("cgroup", TreeOptions::new()));
    } else {
        eprintln!("no writable cgroup v2 here: {:?}; the cgroup cases are skipped", probe.containment());
    }
    modes
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|s| !s.contains(") Z ") && !s.contains(") X "))
}

/// Our zombie children (a stop must leave none).
fn our_zombies() -> Vec<u32> {
    let me = std::process::id().to_string();
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
                let rest = &s[s.rfind(')').map_or(0, |i| i + 2)..];
                let mut f = rest.split_whitespace();
                f.next() == Some("Z") && f.next() == Some(me.as_str())
            })
        })
        .collect()
}

fn check_after(mode: &str, tree: &ProcessTree, seen: &[u32]) {
    let left: Vec<u32> = seen.iter().copied().filter(|&p| alive(p)).collect();
    assert!(left.is_empty(), "{mode}: still alive after the stop: {left:?}");
    assert!(!tree.is_running(), "{mode}");
    if let Containment::Cgroup(path) = tree.containment() {
        assert!(!path.exists(), "{mode}: {} was not removed", path.display());
    }
    // Zombies of ours among the tree's processes (other tests of this binary may run at the
    // same time, with children of their own).
    let zombies: Vec<u32> = our_zombies().into_iter().filter(|z| seen.contains(z)).collect();
    assert!(zombies.is_empty(), "{mode}: zombies left: {zombies:?}");
}

fn wait_members(tree: &ProcessTree, n: usize) -> Vec<u32> {
    let until = Instant::now() + Duration::from_secs(20);
    loop {
        let members = tree.members();
        if members.len() >= n {
            return members;
        }
        assert!(Instant::now() < until, "only {} members", members.len());
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn a_fork_storm_stopped_while_it_forks_leaves_nothing() {
    become_subreaper().unwrap();
    for (mode, opts) in modes() {
        // Up to 1,000 double-forked sleepers, forked as fast as the shell can.
        let script = "i=0; while [ $i -lt 1000 ]; do (sleep 60 &); i=$((i+1)); done; sleep 60";
        let tree = ProcessTree::spawn(
            Command::new("sh").args(["-c", script]),
            opts.grace(Duration::from_millis(300)),
        )
        .unwrap();
        wait_members(&tree, 50);
        let report = tree.stop();
        assert!(report.survivors.is_empty(), "{mode}: {report:?}");
        check_after(mode, &tree, &report.seen);
    }
}

#[test]
fn daemons_that_clear_their_environment_and_leave_the_group_are_caught_in_a_cgroup() {
    for (mode, opts) in modes().into_iter().filter(|(m, _)| *m == "cgroup") {
        // A daemon that ignores SIGTERM, clears its environment and starts a session of its own.
        let script =
            "env -i setsid sh -c 'trap \"\" TERM; (trap \"\" TERM; exec sleep 60) & sleep 60' & sleep 60";
        let tree = ProcessTree::spawn(
            Command::new("sh").args(["-c", script]),
            opts.grace(Duration::from_millis(200)),
        )
        .unwrap();
        let members = wait_members(&tree, 4);
        let report = tree.stop();
        assert!(!report.is_graceful(), "{mode}: the daemon ignored SIGTERM and needed the kill");
        assert!(report.survivors.is_empty(), "{mode}: {report:?}");
        check_after(mode, &tree, &members);
    }
}

#[test]
fn a_member_ignoring_sigterm_is_killed_at_the_end_of_the_grace_in_both_modes() {
    for (mode, opts) in modes() {
        let grace = Duration::from_millis(300);
        let tree = ProcessTree::spawn(
            Command::new("sh").args(["-c", "trap '' TERM; sleep 60 & wait"]),
            opts.grace(grace),
        )
        .unwrap();
        let members = wait_members(&tree, 2);
        let report = tree.stop();
        assert!(report.took >= grace, "{mode}: killed only after the grace: {report:?}");
        assert!(!report.killed.is_empty(), "{mode}: {report:?}");
        check_after(mode, &tree, &members);
    }
}

#[test]
fn a_frozen_tree_stops_too() {
    for (mode, opts) in modes() {
        let tree = ProcessTree::spawn(
            Command::new("sh").args(["-c", "sleep 60 & sleep 60 & wait"]),
            opts.grace(Duration::from_millis(200)),
        )
        .unwrap();
        let members = wait_members(&tree, 3);
        tree.freeze().unwrap();
        std::thread::sleep(Duration::from_millis(50));
        let report = tree.stop();
        assert!(report.survivors.is_empty(), "{mode}: {report:?}");
        check_after(mode, &tree, &members);
    }
}

#[test]
fn the_report_says_which_mode_ran_and_why() {
    let tree = ProcessTree::spawn(Command::new("true").arg(""), TreeOptions::new().cgroup(false)).unwrap();
    let report = tree.stop();
    assert!(
        matches!(&report.containment, Containment::Fallback(why) if why.contains("cgroup(false)")),
        "{report:?}"
    );
}

/// A limit that cannot be applied refuses the spawn (the command never runs); where the
/// controller is delegated, the limit is in the tree's cgroup before its first process.
#[test]
fn limits_are_applied_or_the_spawn_is_refused() {
    for (mode, opts) in modes() {
        let dir = std::env::temp_dir().join(format!("closeout-limit-{}-{mode}", std::process::id()));
        let _ = std::fs::remove_file(&dir);
        let script = format!("touch {}; sleep 60", dir.display());
        for (what, opts) in
            [("pids", opts.clone().max_pids(32)), ("memory", opts.clone().max_memory(64 << 20))]
        {
            match ProcessTree::spawn(Command::new("sh").args(["-c", &script]), opts) {
                Ok(tree) => {
                    let Containment::Cgroup(path) = tree.containment().clone() else {
                        panic!("{mode}: a limit without a cgroup")
                    };
                    let file = if what == "pids" { "pids.max" } else { "memory.max" };
                    let value = std::fs::read_to_string(path.join(file)).unwrap();
                    assert_eq!(value.trim(), if what == "pids" { "32" } else { "67108864" });
                    tree.stop();
                }
                Err(e) => {
                    assert_eq!(e.kind(), std::io::ErrorKind::Unsupported, "{mode}/{what}: {e}");
                    let text = e.to_string();
                    assert!(text.contains(what) || text.contains("cgroup"), "{mode}/{what}: {text}");
                    std::thread::sleep(Duration::from_millis(50));
                    assert!(!dir.exists(), "{mode}/{what}: the command ran although its limit was refused");
                }
            }
            let _ = std::fs::remove_file(&dir);
        }
    }
}
