//! The journal against real deaths: helper processes (this test binary, re-run) record real
//! resources and are SIGKILLed at a random step; `reap` then leaves nothing of theirs behind
//! and touches nothing else. Also: torn tails at every byte, live owners left alone, reused
//! pids never signalled, records of another boot, two reapers racing, symlinks refused.

use std::io::{BufRead, BufReader};

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use closeout_journal::{
    FileId, FileStore, Journal, JournalError, Outcome, PathKind, ProcessId, ReapOptions, Resource, list, reap,
};

const HELPER: &str = "CLOSEOUT_JOURNAL_HELPER";

/// Steps of a helper's life, at any of which it can be SIGKILLed.
const BEFORE_INTENT: u32 = 0;
const AFTER_INTENT: u32 = 1;
const AFTER_CREATE: u32 = 2;
const AFTER_COMPLETE: u32 = 3;
const DURING_RELEASE: u32 = 4;

fn die_at(step: u32, at: u32) {
    if step == at {
        let me = rustix::process::getpid();
        let _ = rustix::process::kill_process(me, rustix::process::Signal::KILL);
        std::thread::sleep(Duration::from_secs(60));
    }
}

/// The helper: `CLOSEOUT_JOURNAL_HELPER=<kind>:<step>:<state dir>:<work dir>`. Creates one
/// resource of `kind` in `work dir`, journaled in `state dir`, dying at `step` (5: never, it
/// prints READY and waits to be killed).
#[test]
fn helper() {
    let Ok(spec) = std::env::var(HELPER) else { return };
    let mut parts = spec.splitn(4, ':');
    let (kind, step, state, work) = (
        parts.next().unwrap().to_owned(),
        parts.next().unwrap().parse::<u32>().unwrap(),
        PathBuf::from(parts.next().unwrap()),
        PathBuf::from(parts.next().unwrap()),
    );
    let journal = Journal::open(&state).unwrap();
    let me = ProcessId::current();
    let token = format!("{}.{}", me.pid, me.start);
    die_at(step, BEFORE_INTENT);
    match kind.as_str() {
        "dir" | "file" => {
            let what = if kind == "dir" { PathKind::Dir } else { PathKind::File };
            let path = work.join(format!("{kind}-{token}"));
            let entry = journal.record(Resource::Path { path: path.clone(), what, id: None }).unwrap();
            die_at(step, AFTER_INTENT);
            if kind == "dir" {
                std::fs::create_dir(&path).unwrap();
                std::fs::write(path.join("inside"), b"x").unwrap();
            } else {
                std::fs::write(&path, b"x").unwrap();
            }
            die_at(step, AFTER_CREATE);
            entry
                .complete(Resource::Path { path: path.clone(), what, id: Some(FileId::of(&path).unwrap()) })
                .unwrap();
            die_at(step, AFTER_COMPLETE);
            if kind == "dir" {
                std::fs::remove_dir_all(&path).unwrap();
            } else {
                std::fs::remove_file(&path).unwrap();
            }
            die_at(step, DURING_RELEASE);
            entry.release().unwrap();
        }
        "tree" => {
            let marker = format!("test-{token}");
            let intent =
                Resource::ProcessTree { cgroup: None, marker: marker.clone(), pgid: None, pids: vec![] };
            let entry = journal.record(intent).unwrap();
            die_at(step, AFTER_INTENT);
            // A daemon that leaves the group, and a plain member: both carry the marker.
            let mut child = Command::new("sh")
                .args(["-c", "setsid sleep 300 & sleep 300 & wait"])
                .env("CLOSEOUT_TREE", &marker)
                // Not our stdout: the test reads it to its end.
                .stdout(Stdio::null())
                .process_group(0)
                .spawn()
                .unwrap();
            die_at(step, AFTER_CREATE);
            let root = ProcessId::of(child.id()).unwrap();
            let done =
                Resource::ProcessTree { cgroup: None, marker, pgid: Some(child.id()), pids: vec![root] };
            entry.complete(done).unwrap();
            die_at(step, AFTER_COMPLETE);
            // The owner's own stop: every marked process, the daemon that left the group too.
            let marker = format!("test-{token}");
            loop {
                let left = marked(&marker);
                if left.is_empty() {
                    break;
                }
                for pid in left {
                    let _ = rustix::process::kill_process(
                        rustix::process::Pid::from_raw(pid as i32).unwrap(),
                        rustix::process::Signal::KILL,
                    );
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            let _ = child.wait();
            die_at(step, DURING_RELEASE);
            entry.release().unwrap();
        }
        "command" => {
            // Appends the owner's token to `work/ran` when reaped.
            let out = work.join("ran");
            let script = format!("echo {token} >> {}", out.display());
            let entry = journal
                .record(Resource::command("sh", ["-c", &script], Duration::from_secs(10)).unwrap())
                .unwrap();
            die_at(step, AFTER_INTENT);
            std::mem::forget(entry);
        }
        "reused" => {
            // Names a live process of someone else's, with the wrong start time.
            let pid: u32 = std::fs::read_to_string(work.join("victim")).unwrap().trim().parse().unwrap();
            let wrong = ProcessId { pid, start: ProcessId::of(pid).unwrap().start + 1 };
            let r = Resource::ProcessTree {
                cgroup: None,
                marker: String::new(),
                pgid: Some(pid),
                pids: vec![wrong],
            };
            std::mem::forget(journal.record(r).unwrap());
        }
        other => panic!("unknown kind {other}"),
    }
    println!("READY");
    std::thread::sleep(Duration::from_secs(300));
}

/// A scratch root with `state/` (the journal) and `work/` (where helpers make things).
fn dirs() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let root = tempfile::tempdir().unwrap();
    let (state, work) = (root.path().join("state"), root.path().join("work"));
    std::fs::create_dir_all(&work).unwrap();
    (root, state, work)
}

/// Runs a helper to its step (or to READY), SIGKILLs it if it still runs, and waits for it.
fn run_helper(kind: &str, step: u32, state: &Path, work: &Path) {
    let mut child = spawn_helper(kind, step, state, work);
    // Either READY, or EOF because it killed itself.
    let ready = wait_ready(&mut child);
    assert!(ready || step < 5, "{kind}: the helper died before READY");
    let _ = child.kill();
    let _ = child.wait();
}

/// Reads the helper's output until READY (true) or its end (false: it died).
fn wait_ready(child: &mut Child) -> bool {
    let out = child.stdout.take().unwrap();
    BufReader::new(out).lines().map_while(Result::ok).any(|l| l.contains("READY"))
}

fn spawn_helper(kind: &str, step: u32, state: &Path, work: &Path) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "helper", "--nocapture", "--test-threads=1", "-q"])
        .env(HELPER, format!("{kind}:{step}:{}:{}", state.display(), work.display()))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// Live processes whose marker starts with `marker_prefix`.
fn marked(marker_prefix: &str) -> Vec<u32> {
    let needle = format!("CLOSEOUT_TREE={marker_prefix}");
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/environ"))
                .is_ok_and(|env| env.split(|&b| b == 0).any(|v| v.starts_with(needle.as_bytes())))
                && std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s.contains(") Z "))
        })
        .collect()
}

/// 200 randomised runs per kind (steps and kinds drawn from a seeded generator): after each,
/// `reap` leaves nothing of the run and touches the look-alikes made beforehand.
#[test]
fn an_owner_killed_at_any_step_leaves_nothing_after_a_reap() {
    // No subreaper and no `waitpid(-1)` here: under `cargo test` the other tests of this binary
    // run in this process, and a wait for any child would take their children's statuses
    // (the reap's own commands included). Members of killed trees go to init.
    let runs: u64 = std::env::var("CLOSEOUT_JOURNAL_RUNS").ok().and_then(|v| v.parse().ok()).unwrap_or(200);
    let (_root, state, work) = dirs();
    // Look-alikes: a directory and a file named like the helpers', and a process with a
    // marker like theirs.
    let look_dir = work.join("dir-1.1");
    std::fs::create_dir(&look_dir).unwrap();
    let look_file = work.join("file-1.1");
    std::fs::write(&look_file, b"mine").unwrap();
    let mut look_proc = Command::new("sleep").arg("300").env("CLOSEOUT_TREE", "test-1.1").spawn().unwrap();
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    for kind in ["dir", "file", "tree"] {
        for run in 0..runs {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let step = (seed % 6) as u32;
            run_helper(kind, step, &state, &work);
            let report = reap(&FileStore::open(&state).unwrap(), &ReapOptions::new()).unwrap();
            assert!(report.is_success(), "{kind} run {run} step {step}:\n{report}");
            let left: Vec<_> = std::fs::read_dir(&work)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(kind) && !n.ends_with("-1.1"))
                .collect();
            assert!(left.is_empty(), "{kind} run {run} step {step}: left {left:?}\n{report}");
            let until = Instant::now() + Duration::from_secs(5);
            loop {
                let procs: Vec<u32> = marked("test-").into_iter().filter(|&p| p != look_proc.id()).collect();
                if procs.is_empty() {
                    break;
                }
                assert!(
                    Instant::now() < until,
                    "{kind} run {run} step {step}: processes left {procs:?}\n{report}"
                );
                std::thread::sleep(Duration::from_millis(5));
            }
            assert_eq!(
                std::fs::read_dir(&state).unwrap().count(),
                0,
                "{kind} run {run} step {step}: owner files left"
            );
            if kind == "command" {
                // Recorded (the helper got past its intent) means run by the reap, once.
                let ran = std::fs::read_to_string(work.join("ran")).unwrap_or_default();
                let expected = usize::from(step >= AFTER_INTENT);
                assert_eq!(ran.lines().count(), expected, "command run {run} step {step}: {ran:?}\n{report}");
                let _ = std::fs::remove_file(work.join("ran"));
            }
        }
    }
    assert!(look_dir.is_dir() && std::fs::read(&look_file).unwrap() == b"mine");
    assert!(look_proc.try_wait().unwrap().is_none(), "the look-alike process was killed");
    look_proc.kill().unwrap();
    look_proc.wait().unwrap();
}

/// Cutting the last record at every byte: the reap (here, `list`) keeps every earlier record.
#[test]
fn a_journal_cut_at_any_byte_of_its_last_record_keeps_every_earlier_record() {
    let (root, state, work) = dirs();
    // One command recorded: one intent.
    let mut owner = spawn_helper("command", 5, &state, &work);
    assert!(wait_ready(&mut owner));
    owner.kill().unwrap();
    owner.wait().unwrap();
    let file = std::fs::read_dir(&state).unwrap().next().unwrap().unwrap().path();
    let bytes = std::fs::read(&file).unwrap();
    let full = list(&FileStore::open(&state).unwrap()).unwrap();
    assert_eq!(full[0].records.len(), 1);
    let header_end = bytes.iter().position(|&b| b == b'\n').unwrap() + 1;
    for cut in header_end..bytes.len() {
        let other = root.path().join(format!("cut-{cut}"));
        std::fs::create_dir(&other).unwrap();
        std::fs::write(other.join(file.file_name().unwrap()), &bytes[..cut]).unwrap();
        let owners = list(&FileStore::open(&other).unwrap()).unwrap();
        assert_eq!(owners.len(), 1);
        assert!(
            owners[0].records.is_empty(),
            "cut at {cut}: a torn record was read: {:?}",
            owners[0].records
        );
        assert!(owners[0].owner.is_some(), "cut at {cut}: the header was lost");
        // And a reap of it works: nothing to do, the file goes.
        let report = reap(&FileStore::open(&other).unwrap(), &ReapOptions::new()).unwrap();
        assert!(report.is_success() && report.owners[0].removed, "cut at {cut}: {report}");
        std::fs::remove_dir(&other).unwrap();
    }
}

#[test]
fn a_live_owner_is_listed_and_never_touched() {
    let (_root, state, work) = dirs();
    // A command record stays unreleased while its owner runs.
    let mut owner = spawn_helper("command", 5, &state, &work);
    assert!(wait_ready(&mut owner));
    let store = FileStore::open(&state).unwrap();
    let listed = list(&store).unwrap();
    assert_eq!(listed.len(), 1);
    assert!(listed[0].alive);
    assert_eq!(listed[0].records.len(), 1);
    let report = reap(&store, &ReapOptions::new()).unwrap();
    assert!(report.owners.is_empty() && report.live.len() == 1, "{report}");
    assert!(!work.join("ran").exists(), "a live owner's command was run");
    owner.kill().unwrap();
    owner.wait().unwrap();
    // Dead now: listed as dead, and reaped.
    assert!(list(&store).unwrap().iter().all(|o| !o.alive));
    let report = reap(&store, &ReapOptions::new()).unwrap();
    assert!(report.is_success() && report.owners.len() == 1, "{report}");
    assert!(work.join("ran").exists());
}

#[test]
fn a_reused_pid_is_never_signalled() {
    let (_root, state, work) = dirs();
    let mut victim = Command::new("sleep").arg("300").process_group(0).spawn().unwrap();
    std::fs::write(work.join("victim"), victim.id().to_string()).unwrap();
    run_helper("reused", 5, &state, &work);
    let report = reap(&FileStore::open(&state).unwrap(), &ReapOptions::new()).unwrap();
    assert!(report.is_success(), "{report}");
    std::thread::sleep(Duration::from_millis(100));
    assert!(
        victim.try_wait().unwrap().is_none(),
        "a process with the recorded pid but another start time was killed"
    );
    victim.kill().unwrap();
    victim.wait().unwrap();
}

/// Rewrites an owner file's header, replacing `from` with `to` (and fixing its checksum).
fn rewrite_header(file: &Path, from: &str, to: &str) {
    let text = std::fs::read_to_string(file).unwrap();
    let (header, rest) = text.split_once('\n').unwrap();
    let json = header[9..].replace(from, to);
    assert_ne!(json, header[9..], "{from} is not in the header");
    let line = format!("{:08x} {json}\n", crc32fast::hash(json.as_bytes()));
    std::fs::write(file, format!("{line}{rest}")).unwrap();
}

#[test]
fn a_record_from_another_boot_drops_its_processes_unsignalled() {
    let (_root, state, work) = dirs();
    let mut victim = Command::new("sleep").arg("300").spawn().unwrap();
    std::fs::write(work.join("victim"), victim.id().to_string()).unwrap();
    run_helper("reused", 5, &state, &work);
    let file = std::fs::read_dir(&state).unwrap().next().unwrap().unwrap().path();
    rewrite_header(&file, &closeout_journal::boot_id(), "00000000-0000-0000-0000-000000000000");
    let report = reap(&FileStore::open(&state).unwrap(), &ReapOptions::new()).unwrap();
    let outcome = &report.owners[0].records[0].outcome;
    assert!(matches!(outcome, Outcome::Skipped { why } if why.contains("another boot")), "{report}");
    assert!(report.owners[0].removed);
    assert!(victim.try_wait().unwrap().is_none());
    victim.kill().unwrap();
    victim.wait().unwrap();
}

#[test]
fn two_reapers_racing_over_a_hundred_dead_owners_reap_each_record_once() {
    let (_root, state, work) = dirs();
    let mut owners = Vec::new();
    for _ in 0..100 {
        owners.push(spawn_helper("command", 5, &state, &work));
    }
    for owner in &mut owners {
        assert!(wait_ready(owner));
        owner.kill().unwrap();
        owner.wait().unwrap();
    }
    let reapers: Vec<_> = (0..2)
        .map(|_| {
            let state = state.clone();
            std::thread::spawn(move || reap(&FileStore::open(&state).unwrap(), &ReapOptions::new()).unwrap())
        })
        .collect();
    let reports: Vec<_> = reapers.into_iter().map(|r| r.join().unwrap()).collect();
    let reaped: usize = reports.iter().map(|r| r.records().count()).sum();
    assert_eq!(reaped, 100, "{}\n{}", reports[0], reports[1]);
    let ran = std::fs::read_to_string(work.join("ran")).unwrap();
    let mut lines: Vec<&str> = ran.lines().collect();
    assert_eq!(lines.len(), 100, "commands ran {} times", lines.len());
    lines.sort();
    lines.dedup();
    assert_eq!(lines.len(), 100, "a command ran twice");
    assert_eq!(std::fs::read_dir(&state).unwrap().count(), 0);
}

#[test]
fn symlinks_are_refused_with_a_clear_error() {
    let root = tempfile::tempdir().unwrap();
    let real = root.path().join("real");
    std::fs::create_dir(&real).unwrap();
    let link = root.path().join("link");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let err = Journal::open(&link).unwrap_err();
    assert!(matches!(err, JournalError::Symlink(ref p) if p == &link), "{err}");
    assert!(err.to_string().contains("symlink"), "{err}");
    // An owner file that is a symlink: the reap refuses it, and touches the target not at all.
    let target = root.path().join("target");
    std::fs::write(&target, b"precious").unwrap();
    std::os::unix::fs::symlink(&target, real.join("owner-1.1-0.journal")).unwrap();
    let report = reap(&FileStore::open(&real).unwrap(), &ReapOptions::new()).unwrap();
    assert!(!report.is_success());
    assert!(report.refused.len() == 1 && report.refused[0].1.contains("symlink"), "{report}");
    assert_eq!(std::fs::read(&target).unwrap(), b"precious");
    // A state directory writable by others is refused too.
    let open = root.path().join("open");
    std::fs::create_dir(&open).unwrap();
    std::fs::set_permissions(&open, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    assert!(matches!(Journal::open(&open), Err(JournalError::Unsafe { .. })));
}

/// A restarted service reaps its own crashed runs at open, and leaves other programs' alone.
#[test]
fn open_reaping_own_reaps_this_programs_dead_runs_only() {
    let (_root, state, work) = dirs();
    // A dead run of this same program (the helper is this test binary).
    run_helper("command", 5, &state, &work);
    // A dead owner of another program: its header names another command line.
    run_helper("command", 5, &state, &work);
    let other = std::fs::read_dir(&state).unwrap().map(|e| e.unwrap().path()).max().unwrap();
    let me = serde_json::to_string(&std::env::args().next().unwrap()).unwrap();
    rewrite_header(&other, &me, "\"/usr/bin/some-other-program\"");
    let (journal, report) = Journal::open_reaping_own(&state).unwrap();
    assert!(report.is_success(), "{report}");
    assert_eq!(report.records().count(), 1, "{report}");
    let ran = std::fs::read_to_string(work.join("ran")).unwrap();
    assert_eq!(ran.lines().count(), 1);
    let left = list(&FileStore::open(&state).unwrap()).unwrap();
    assert_eq!(left.len(), 1, "the other program's owner stays");
    assert_eq!(left[0].owner.as_ref().unwrap().cmdline[0], "/usr/bin/some-other-program");
    drop(journal);
}

/// The errors go into `Box<dyn Error + Send + Sync>` (and so `anyhow`) with `?`.
#[test]
fn errors_are_send_sync_and_static() {
    fn check<E: std::error::Error + Send + Sync + 'static>() {}
    check::<JournalError>();
    check::<closeout_journal::ReleaseError>();
    let err: Box<dyn std::error::Error + Send + Sync> = JournalError::Invalid("x".into()).into();
    assert!(err.to_string().contains("invalid argument"));
}
