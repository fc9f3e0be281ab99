//! The `closeout` command against real processes, sockets, files and signals.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn closeout(state: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_closeout"));
    cmd.env("CLOSEOUT_STATE_DIR", state);
    cmd
}

fn run(state: &Path, args: &[&str]) -> Output {
    closeout(state).args(args).output().unwrap()
}

fn alive(pid: u64) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|s| !s.contains(") Z ") && !s.contains(") X "))
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Pids of the report's left-behind processes.
fn left_pids(report: &serde_json::Value) -> Vec<u64> {
    report["left_behind"]["processes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["pid"].as_u64().unwrap())
        .collect()
}

fn assert_gone(pids: &[u64]) {
    let until = Instant::now() + Duration::from_secs(5);
    loop {
        let left: Vec<u64> = pids.iter().copied().filter(|&p| alive(p)).collect();
        if left.is_empty() {
            return;
        }
        assert!(Instant::now() < until, "still alive: {left:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn modes() -> Vec<&'static [&'static str]> {
    vec![&[], &["--no-cgroup"]]
}

#[test]
fn every_exit_status_passes_through() {
    let state = tempfile::tempdir().unwrap();
    for n in 0..=255 {
        let out = run(state.path(), &["run", "--", "sh", "-c", &format!("exit {n}")]);
        assert_eq!(out.status.code(), Some(n), "exit {n}: {}", String::from_utf8_lossy(&out.stderr));
        assert!(out.stderr.is_empty(), "exit {n}: nothing was left, so nothing is printed");
    }
    assert_eq!(std::fs::read_dir(state.path()).unwrap().count(), 0, "the journal is empty after clean runs");
}

#[test]
fn a_signal_death_is_128_plus_n() {
    let state = tempfile::tempdir().unwrap();
    for (name, n) in [("INT", 2), ("TERM", 15), ("KILL", 9), ("SEGV", 11)] {
        let out = run(state.path(), &["run", "--", "sh", "-c", &format!("kill -{name} $$")]);
        assert_eq!(out.status.code(), Some(128 + n), "{name}");
    }
}

fn spawn_closeout(state: &Path, args: &[&str]) -> std::process::Child {
    closeout(state).args(args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap()
}

fn signal(child: &std::process::Child, sig: rustix::process::Signal) {
    rustix::process::kill_process(rustix::process::Pid::from_raw(child.id() as i32).unwrap(), sig).unwrap();
}

fn wait_for(path: &Path) {
    let until = Instant::now() + Duration::from_secs(20);
    while !path.exists() {
        assert!(Instant::now() < until, "{} never appeared", path.display());
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn forwarded_signals_reach_the_command_and_a_second_one_kills_at_once() {
    let state = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (ready, got) = (dir.path().join("ready"), dir.path().join("got"));
    let script = format!(
        "trap 'echo usr1 > {got}; exit 7' USR1; touch {ready}; while :; do sleep 0.02; done",
        got = got.display(),
        ready = ready.display()
    );
    let mut child = spawn_closeout(state.path(), &["run", "--", "sh", "-c", &script]);
    wait_for(&ready);
    signal(&child, rustix::process::Signal::USR1);
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(7));
    assert_eq!(std::fs::read_to_string(&got).unwrap().trim(), "usr1");

    // A command that ignores TERM, with a long grace: the second TERM kills it at once.
    std::fs::remove_file(&ready).unwrap();
    let script = format!("trap '' TERM; touch {}; sleep 300 & wait", ready.display());
    let mut child = spawn_closeout(state.path(), &["run", "--grace", "60s", "--", "sh", "-c", &script]);
    wait_for(&ready);
    let start = Instant::now();
    signal(&child, rustix::process::Signal::TERM);
    std::thread::sleep(Duration::from_millis(200));
    signal(&child, rustix::process::Signal::TERM);
    let status = child.wait().unwrap();
    assert!(start.elapsed() < Duration::from_secs(30), "the second TERM did not kill at once");
    assert_eq!(status.code(), Some(128 + 9), "killed by SIGKILL");
}

#[test]
fn a_timeout_exits_124_and_leaves_nothing() {
    for mode in modes() {
        let state = tempfile::tempdir().unwrap();
        let out_json = state.path().join("report.json");
        let mut args =
            vec!["run", "--timeout", "300ms", "--grace", "100ms", "--json", out_json.to_str().unwrap()];
        args.extend_from_slice(mode);
        args.extend_from_slice(&["--", "sh", "-c", "sleep 300 & sleep 300"]);
        let out = run(state.path(), &args);
        assert_eq!(out.status.code(), Some(124), "{mode:?}: {}", String::from_utf8_lossy(&out.stderr));
        let report = json(&out_json);
        assert_eq!(report["exit"]["timed_out"], true);
        assert_gone(&left_pids(&report));
    }
}

#[test]
fn a_fork_storm_and_setsid_daemons_are_each_named_and_none_survives() {
    let state = tempfile::tempdir().unwrap();
    let out_json = state.path().join("report.json");
    let script = "i=0; while [ $i -lt 1000 ]; do (sleep 300 &); i=$((i+1)); done; \
                  env -i setsid sh -c 'sleep 301 & exec sleep 302' & sleep 0.2";
    let out = run(
        state.path(),
        &["run", "--grace", "0s", "--json", out_json.to_str().unwrap(), "--", "sh", "-c", script],
    );
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let report = json(&out_json);
    assert_eq!(report["containment"], "cgroup", "this machine has a writable cgroup v2");
    let pids = left_pids(&report);
    assert!(pids.len() >= 1000, "{} processes named", pids.len());
    let cmdlines: Vec<&str> = report["left_behind"]["processes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["cmdline"].as_str().unwrap())
        .collect();
    assert!(cmdlines.contains(&"sleep 301") && cmdlines.contains(&"sleep 302"), "the env -i setsid daemons");
    assert!(report["survivors"].as_array().unwrap().is_empty());
    assert_gone(&pids);
    let human = String::from_utf8_lossy(&out.stderr);
    assert!(human.contains("left behind") && human.contains("sleep 302"), "{human}");
}

#[test]
fn a_leaked_listener_and_temp_file_are_named_and_removed() {
    for mode in modes() {
        let state = tempfile::tempdir().unwrap();
        let out_json = state.path().join("report.json");
        let script = "python3 -c 'import socket,time; s=socket.socket(); s.bind((\"127.0.0.1\",0)); s.listen(); time.sleep(300)' & \
                      echo leak > \"$TMPDIR/leak.txt\"; sleep 0.5";
        let mut args = vec!["run", "--json", out_json.to_str().unwrap()];
        args.extend_from_slice(mode);
        args.extend_from_slice(&["--", "sh", "-c", script]);
        let out = run(state.path(), &args);
        assert_eq!(out.status.code(), Some(0), "{mode:?}");
        let report = json(&out_json);
        let sockets = report["left_behind"]["sockets"].as_array().unwrap();
        assert_eq!(sockets.len(), 1, "{mode:?}: {report}");
        let (port, pid) = (sockets[0]["port"].as_u64().unwrap(), sockets[0]["pid"].as_u64().unwrap());
        assert_eq!(sockets[0]["address"], "127.0.0.1");
        assert!(port > 0 && left_pids(&report).contains(&pid));
        let human = String::from_utf8_lossy(&out.stderr);
        assert!(human.contains(&format!("127.0.0.1:{port} held by pid {pid}")), "{human}");
        let files = report["left_behind"]["files"].as_array().unwrap();
        assert_eq!(files.len(), 1);
        let path = PathBuf::from(files[0]["path"].as_str().unwrap());
        assert!(path.ends_with("leak.txt") && files[0]["place"] == "tmpdir");
        assert!(!path.exists() && !path.parent().unwrap().exists(), "the private TMPDIR is removed");
        assert_gone(&left_pids(&report));
    }
}

#[test]
fn watched_files_are_found_and_keep_keeps_what_it_names() {
    let state = tempfile::tempdir().unwrap();
    let watched = tempfile::tempdir().unwrap();
    std::fs::write(watched.path().join("old.txt"), b"before").unwrap();
    let out_json = state.path().join("report.json");
    let script = format!(
        "echo new > {w}/new.txt; mkdir -p {w}/keep; echo k > {w}/keep/k.txt; sleep 301 >/dev/null 2>&1 & sleep 0.1",
        w = watched.path().display()
    );
    let keep_path = format!("path:{}", watched.path().join("keep").display());
    let out = run(
        state.path(),
        &[
            "run",
            "--fail-on-leak",
            "--watch",
            watched.path().to_str().unwrap(),
            "--keep",
            &keep_path,
            "--keep",
            "cmd:sleep 301",
            "--json",
            out_json.to_str().unwrap(),
            "--",
            "sh",
            "-c",
            &script,
        ],
    );
    let report = json(&out_json);
    // Something was left and not kept (new.txt): --fail-on-leak.
    assert_eq!(out.status.code(), Some(100), "{}", String::from_utf8_lossy(&out.stderr));
    let files = report["left_behind"]["files"].as_array().unwrap();
    let named: Vec<&str> = files.iter().map(|f| f["path"].as_str().unwrap()).collect();
    assert_eq!(files.len(), 2, "{named:?}");
    assert!(!watched.path().join("new.txt").exists(), "created during the run: removed");
    assert!(watched.path().join("old.txt").exists(), "there before: neither named nor touched");
    assert!(watched.path().join("keep/k.txt").exists(), "kept");
    let kept = &report["left_behind"]["processes"][0];
    assert_eq!(kept["kept"], true, "{report}");
    let pid = kept["pid"].as_u64().unwrap();
    assert!(alive(pid), "the kept daemon was stopped");
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(pid as i32).unwrap(),
        rustix::process::Signal::KILL,
    )
    .unwrap();
}

#[test]
fn a_sigkilled_closeout_is_listed_dead_and_reaped() {
    for mode in modes() {
        let state = tempfile::tempdir().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let info = dir.path().join("info");
        let script =
            format!("sleep 300 & echo \"$TMPDIR\" > {}.tmp; mv {0}.tmp {0}; sleep 300", info.display());
        let mut args = vec!["run"];
        args.extend_from_slice(mode);
        args.extend_from_slice(&["--", "sh", "-c", &script]);
        let mut child = spawn_closeout(state.path(), &args);
        wait_for(&info);
        let tmpdir = PathBuf::from(std::fs::read_to_string(&info).unwrap().trim());
        // The tree's members: every process with this run's TMPDIR (the shell and two sleeps).
        let until = Instant::now() + Duration::from_secs(20);
        let members = loop {
            let members: Vec<u64> = std::fs::read_dir("/proc")
                .unwrap()
                .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u64>().ok())
                .filter(|p| {
                    std::fs::read(format!("/proc/{p}/environ")).is_ok_and(|e| {
                        String::from_utf8_lossy(&e).contains(&format!("TMPDIR={}", tmpdir.display()))
                    })
                })
                .collect();
            if members.len() >= 3 {
                break members;
            }
            assert!(Instant::now() < until, "{mode:?}: {members:?}");
            std::thread::sleep(Duration::from_millis(5));
        };
        child.kill().unwrap();
        child.wait().unwrap();
        let ls = run(state.path(), &["ls"]);
        let ls = String::from_utf8_lossy(&ls.stdout);
        assert!(ls.contains("DEAD"), "{mode:?}: {ls}");
        let dry = run(state.path(), &["reap", "--dry-run"]);
        assert_eq!(dry.status.code(), Some(0));
        assert!(members.iter().any(|&p| alive(p)), "{mode:?}: a dry run changed something");
        let reap_json = dir.path().join("reap.json");
        let reap = run(state.path(), &["reap", "--json", reap_json.to_str().unwrap()]);
        assert_eq!(reap.status.code(), Some(0), "{}", String::from_utf8_lossy(&reap.stderr));
        let reaped = json(&reap_json);
        let records: Vec<&serde_json::Value> = reaped["owners"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|o| o["records"].as_array().unwrap())
            .collect();
        // The tree and the TMPDIR, each reaped.
        assert_eq!(records.len(), 2, "{mode:?}: {reaped}");
        assert!(records.iter().all(|r| r["outcome"]["status"] == "reaped"), "{mode:?}: {reaped}");
        assert_gone(&members);
        assert!(!tmpdir.exists(), "{mode:?}: the TMPDIR survived the reap");
        assert_eq!(std::fs::read_dir(state.path()).unwrap().count(), 0, "{mode:?}: journal left");
        let cgroups: Vec<String> = std::fs::read_dir(cgroup_root())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(&format!("closeout-{}.", child.id())))
            .collect();
        assert!(cgroups.is_empty(), "{mode:?}: cgroups left {cgroups:?}");
    }
}

fn cgroup_root() -> PathBuf {
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let line =
        mounts.lines().find(|l| l.split(" - ").nth(1).is_some_and(|p| p.starts_with("cgroup2 "))).unwrap();
    PathBuf::from(line.split_whitespace().nth(4).unwrap())
}

#[test]
fn as_pid_1_it_reaps_zombies_and_passes_the_status_through() {
    if Command::new("unshare").arg("--help").output().is_err() {
        eprintln!("no unshare(1) here: skipped");
        return;
    }
    let state = tempfile::tempdir().unwrap();
    // An orphan that exits at once becomes closeout's zombie (PID 1's) until reaped; after a
    // moment the command counts the zombies in its namespace.
    let script = "(sleep 0.05 &); sleep 0.5; grep -l ') Z ' /proc/[0-9]*/stat 2>/dev/null | wc -l; exit 3";
    let out = Command::new("unshare")
        .args([
            "--fork",
            "--pid",
            "--mount-proc",
            env!("CARGO_BIN_EXE_closeout"),
            "run",
            "--no-cgroup",
            "--",
            "sh",
            "-c",
            script,
        ])
        .env("CLOSEOUT_STATE_DIR", state.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "0", "zombies were left for PID 1");
}

#[test]
fn help_and_errors_read_well() {
    let state = tempfile::tempdir().unwrap();
    let help = run(state.path(), &["--help"]);
    assert_eq!(help.status.code(), Some(0));
    let text = String::from_utf8_lossy(&help.stdout);
    assert!(text.contains("closeout run --fail-on-leak --"), "{text}");
    let version = run(state.path(), &["--version"]);
    assert!(String::from_utf8_lossy(&version.stdout).starts_with("closeout "));
    let missing = run(state.path(), &["run", "--", "/nonexistent/program"]);
    assert_eq!(missing.status.code(), Some(127));
    let err = String::from_utf8_lossy(&missing.stderr);
    assert!(err.starts_with("closeout: /nonexistent/program: command not found\n  hint: "), "{err}");
    let plain = state.path().join("not-executable");
    std::fs::write(&plain, "#!/bin/sh\n").unwrap();
    std::fs::set_permissions(&plain, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    for target in [plain.as_path(), state.path()] {
        let not_exec = run(state.path(), &["run", "--", target.to_str().unwrap()]);
        assert_eq!(not_exec.status.code(), Some(126), "{}", String::from_utf8_lossy(&not_exec.stderr));
        assert!(String::from_utf8_lossy(&not_exec.stderr).contains("cannot execute"));
    }
    let bad = run(state.path(), &["run", "--timeout", "soon", "--", "true"]);
    assert_eq!(bad.status.code(), Some(125));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--timeout"));
    let bad_keep = run(state.path(), &["run", "--keep", "pid:x", "--", "true"]);
    assert_eq!(bad_keep.status.code(), Some(125));
}

#[test]
fn the_json_report_validates_against_its_schema() {
    let schema: serde_json::Value = serde_json::from_str(include_str!("../schema/report-v1.json")).unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let state = tempfile::tempdir().unwrap();
    for script in ["true", "sleep 300 & echo x > $TMPDIR/f; exit 4", "kill -TERM $$"] {
        let out_json = state.path().join("r.json");
        run(
            state.path(),
            &["run", "--grace", "0s", "--json", out_json.to_str().unwrap(), "--", "sh", "-c", script],
        );
        let report = json(&out_json);
        let errors: Vec<String> = validator.iter_errors(&report).map(|e| e.to_string()).collect();
        assert!(errors.is_empty(), "{script}: {errors:?}\n{report}");
    }
}

#[test]
fn the_shipped_example_leaves_things_behind_and_closeout_removes_them() {
    let state = tempfile::tempdir().unwrap();
    let out_json = state.path().join("r.json");
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/leaky.sh");
    let out = run(state.path(), &["run", "--json", out_json.to_str().unwrap(), "--", example]);
    assert_eq!(out.status.code(), Some(0));
    let report = json(&out_json);
    assert!(left_pids(&report).len() >= 2, "{report}");
    assert_eq!(report["left_behind"]["sockets"].as_array().unwrap().len(), 1);
    assert_eq!(report["left_behind"]["files"].as_array().unwrap().len(), 1);
    assert_gone(&left_pids(&report));
    let _ = BufReader::new(&out.stderr[..]).lines().count();
}
