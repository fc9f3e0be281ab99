//! A forced exit leaves no tree behind: an owner (this test binary, re-run as a helper) holds
//! two trees whose every member ignores SIGTERM — one registered in its teardown, one not — and
//! is forced out: by a second SIGTERM during its teardown, or by its teardown passing the
//! hooks' deadline. Each time, every member of both trees is dead right after the owner exits,
//! in both containment modes.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use closeout::{Registry, hooks};
use closeout_process::{ProcessTree, TreeOptions, become_subreaper};

mod common;
use common::alive;

/// Every member ignores SIGTERM (an ignored signal stays ignored across fork and exec).
const STUBBORN: &str = "trap '' TERM; sleep 300 & sleep 300 & wait";

/// Runs only as the helper of the tests below.
#[test]
fn owner_helper() {
    let Ok(how) = std::env::var("CLOSEOUT_FORCED_EXIT") else { return };
    let registry = Registry::new();
    let opts = TreeOptions::new().grace(Duration::from_secs(120));
    let registered = ProcessTree::spawn(Command::new("sh").args(["-c", STUBBORN]), opts.clone()).unwrap();
    let held = ProcessTree::spawn(Command::new("sh").args(["-c", STUBBORN]), opts).unwrap();
    registry.register(registered.resource("stubborn")).unwrap();
    let deadline = if how == "deadline" { Duration::from_millis(500) } else { Duration::from_secs(60) };
    let _hooks = hooks::Hooks::new(registry.clone()).deadline(deadline).install().unwrap();
    common::announce(&[&registered, &held], 3);
    std::thread::sleep(Duration::from_secs(300));
}

fn run(how: &str, fallback: bool) {
    // Members reparent to us when the owner dies: we reap them.
    become_subreaper().unwrap();
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["--exact", "owner_helper", "--nocapture", "--test-threads=1"])
        .env("CLOSEOUT_FORCED_EXIT", how)
        .stdout(Stdio::piped());
    if fallback {
        cmd.env(closeout_process::NO_CGROUP_ENV, "1");
    }
    let mut owner = cmd.spawn().unwrap();
    let (members, cgroups) = common::read_announcement(&mut owner);
    // The helper inherits `CLOSEOUT_NO_CGROUP` when the suite runs in the fallback.
    let expected = if fallback || !common::cgroups_available() { 0 } else { 2 };
    assert_eq!(cgroups.len(), expected, "{how}: {cgroups:?}");
    assert!(members.len() >= 6, "{members:?}");
    let pid = rustix::process::Pid::from_raw(owner.id() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    if how == "second-signal" {
        // The teardown is now waiting out the registered tree's 120 s grace.
        std::thread::sleep(Duration::from_millis(300));
        rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    }
    let until = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = owner.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < until, "{how}: the owner did not exit");
        std::thread::sleep(Duration::from_millis(10));
    };
    assert_eq!(std::os::unix::process::ExitStatusExt::signal(&status), Some(15), "{how}: {status:?}");
    // SIGKILL was sent before the owner exited; give the kernel a moment to deliver it.
    let until = Instant::now() + Duration::from_secs(5);
    loop {
        let left: Vec<u32> = members.iter().copied().filter(|&p| alive(p)).collect();
        if left.is_empty() {
            break;
        }
        assert!(Instant::now() < until, "{how} (fallback: {fallback}): members left running: {left:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
    for &p in &members {
        if let Some(p) = rustix::process::Pid::from_raw(p as i32) {
            let _ = rustix::process::waitpid(Some(p), rustix::process::WaitOptions::NOHANG);
        }
    }
    // The owner could not remove the (now empty) cgroups: the journal's reap will. Here the
    // test does, once the kernel says they are empty.
    for path in cgroups {
        let until = Instant::now() + Duration::from_secs(5);
        while std::fs::read_to_string(format!("{path}/cgroup.events"))
            .is_ok_and(|e| e.contains("populated 1"))
        {
            assert!(Instant::now() < until, "{path} still populated");
            std::thread::sleep(Duration::from_millis(5));
        }
        let _ = std::fs::remove_dir(&path);
    }
}

#[test]
fn a_second_signal_kills_every_tree_before_the_owner_exits() {
    run("second-signal", false);
    run("second-signal", true);
}

#[test]
fn a_teardown_past_its_deadline_kills_every_tree_before_the_owner_exits() {
    run("deadline", false);
    run("deadline", true);
}
