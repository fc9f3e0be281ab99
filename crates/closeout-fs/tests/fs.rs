//! Files against the real filesystem and real processes: a writer SIGKILLed 200 times, two
//! processes contending for a lock, a lock whose owner was SIGKILLed, path escapes, and a
//! transaction failing at each step in turn.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use closeout_fs::{AtomicFile, Dir, DirBuilder, FileLock, FsError, Transaction, recover};

mod common;

const A: u8 = b'a';
const B: u8 = b'b';
const SIZE: usize = 256 * 1024;

fn helper(name: &str, envs: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["--exact", name, "--nocapture", "--test-threads=1"]).env("CLOSEOUT_FS_HELPER", "1");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd
}

fn is_helper() -> bool {
    std::env::var("CLOSEOUT_FS_HELPER").is_ok()
}

/// The first line of a helper's output that contains `marker` (libtest prints its own lines
/// first), from the marker on.
fn wait_for(lines: &mut impl Iterator<Item = std::io::Result<String>>, marker: &str) -> String {
    for line in lines.by_ref() {
        let line = line.unwrap();
        if let Some(at) = line.find(marker) {
            return line[at..].to_owned();
        }
    }
    panic!("the helper never printed {marker}");
}

/// Helper: rewrites the target with all-`a` or all-`b` content, alternately, forever.
#[test]
fn writer_child() {
    if !is_helper() {
        return;
    }
    let target = std::env::var("TARGET").unwrap();
    println!("READY");
    for i in 0u64.. {
        let byte = if i % 2 == 0 { A } else { B };
        let mut f = AtomicFile::create(&target).unwrap();
        // In pieces, so a kill can land mid-write.
        for _ in 0..16 {
            f.write_all(&[byte; SIZE / 16]).unwrap();
        }
        f.commit().unwrap();
    }
}

#[test]
fn a_writer_killed_at_random_moments_never_leaves_a_mix_and_recovery_leaves_no_temp_file() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("data.bin");
    std::fs::write(&target, vec![A; SIZE]).unwrap();
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    for round in 0..200 {
        let mut child = helper("writer_child", &[("TARGET", target.to_str().unwrap())])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        common::kill_at_a_random_moment(&mut child, &mut seed);
        let content = std::fs::read(&target).unwrap();
        assert_eq!(content.len(), SIZE, "round {round}: torn length");
        let first = content[0];
        assert!(first == A || first == B, "round {round}");
        assert!(content.iter().all(|&b| b == first), "round {round}: a mix of old and new content");
        recover(dir.path()).unwrap();
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(left, ["data.bin"], "round {round}: temp files left after recovery");
    }
}

/// Helper: takes the lock, says so, and holds it until killed.
#[test]
fn lock_holder_child() {
    if !is_helper() {
        return;
    }
    let lock = FileLock::exclusive(std::env::var("LOCK").unwrap(), Duration::from_secs(10)).unwrap();
    println!("HELD {}", std::process::id());
    std::thread::sleep(Duration::from_secs(300));
    drop(lock);
}

#[test]
fn two_processes_contend_for_a_lock_and_a_dead_owners_lock_is_recovered() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("service.lock");
    let mut child = helper("lock_holder_child", &[("LOCK", path.to_str().unwrap())])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = wait_for(&mut lines, "HELD ");
    let pid: u32 = line["HELD ".len()..].trim().parse().unwrap();
    assert_eq!(pid, child.id());

    match FileLock::exclusive(&path, Duration::from_millis(200)) {
        Err(FsError::LockTimeout { holder, waited, .. }) => {
            assert_eq!(holder, Some(pid));
            assert!(waited >= Duration::from_millis(200));
        }
        other => panic!("expected a timeout, got {other:?}"),
    }
    assert!(FileLock::shared(&path, Duration::from_millis(50)).is_err(), "shared waits for exclusive");

    child.kill().unwrap(); // SIGKILL: no chance to unlock
    child.wait().unwrap();
    let lock = FileLock::exclusive(&path, Duration::from_secs(5)).unwrap();
    assert_eq!(lock.recovered_from(), Some(pid), "the dead owner is named");
    assert_eq!(FileLock::holder(&path), Some(std::process::id()));
}

/// A tree outside the root and symlinks that lead to it in every way.
fn escape_fixture() -> (tempfile::TempDir, Dir) {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let outside = tmp.path().join("outside");
    std::fs::create_dir_all(root.join("sub/deeper")).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("secret"), b"s").unwrap();
    std::fs::write(root.join("inside.txt"), b"i").unwrap();
    let link = |target: &Path, name: &str| std::os::unix::fs::symlink(target, root.join(name)).unwrap();
    link(&outside, "to_outside");
    link(Path::new("/etc"), "to_etc");
    link(Path::new(".."), "dotdot");
    link(Path::new("chain2"), "chain1");
    link(Path::new("chain3"), "chain2");
    link(Path::new("../outside"), "chain3");
    link(&outside.join("secret"), "secret_link");
    std::os::unix::fs::symlink("../../../outside", root.join("sub/deeper/up3")).unwrap();
    std::os::unix::fs::symlink("/proc/self/root", root.join("magic")).unwrap();
    let dir = Dir::confined(&root).unwrap();
    (tmp, dir)
}

#[test]
fn at_least_fifty_path_escapes_are_rejected_with_a_clear_error() {
    let (tmp, root) = escape_fixture();
    let escapes = [
        "../x",
        "../../x",
        "../outside/secret",
        "sub/../../x",
        "sub/deeper/../../../x",
        "./../x",
        "/etc/passwd",
        "/tmp/x",
        "to_outside/secret",
        "to_outside/new",
        "to_etc/passwd",
        "to_etc/new",
        "dotdot/outside/secret",
        "dotdot/x",
        "chain1/secret",
        "chain1/new",
        "chain2/secret",
        "chain3/secret",
        "sub/deeper/up3/secret",
        "sub/deeper/up3/new",
        "magic/etc/passwd",
        "secret_link",
    ];
    let mut rejected = 0;
    for path in escapes {
        let mut attempts: Vec<(&str, Result<(), FsError>)> = vec![
            ("read", root.read(path).map(drop)),
            ("lock", FileLock::exclusive_in(&root, path, Duration::from_millis(10)).map(drop)),
        ];
        // Writing replaces the final component itself; for a symlink inside the root that is
        // legitimate (the link is replaced, its target untouched), so only paths that lead
        // out before their last component are write attempts.
        if path != "secret_link" {
            attempts.push(("write", root.write(path, b"x")));
            attempts.push(("transaction", Transaction::new(&root).copy("inside.txt", path).apply()));
        }
        for (op, result) in attempts {
            match result {
                Err(e) => {
                    let msg = e.to_string();
                    assert!(
                        msg.contains("rejected") || msg.contains("outside the root"),
                        "{op} {path}: unclear error: {msg}"
                    );
                    rejected += 1;
                }
                Ok(()) => panic!("{op} {path}: escaped the root"),
            }
        }
    }
    let mut builder = DirBuilder::new(&root);
    for path in ["../made", "to_outside/made", "chain1/made", "/tmp/made", "dotdot/made"] {
        assert!(builder.create_all(path).is_err(), "mkdir {path} escaped");
        rejected += 1;
    }
    builder.commit();
    assert!(rejected >= 50, "{rejected} attempts");
    // Nothing outside was touched.
    let outside: Vec<_> =
        std::fs::read_dir(tmp.path().join("outside")).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(outside, ["secret"]);
    assert_eq!(std::fs::read(tmp.path().join("outside/secret")).unwrap(), b"s");
    // And the legitimate paths work.
    root.write("sub/deeper/ok.txt", b"ok").unwrap();
    assert_eq!(root.read("sub/../sub/deeper/ok.txt").unwrap(), b"ok");
}

/// Every file and directory under `path` with its content.
fn tree(path: &Path) -> BTreeMap<String, Option<Vec<u8>>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![path.to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let entry = entry.unwrap();
            let rel = entry.path().strip_prefix(path).unwrap().display().to_string();
            if entry.file_type().unwrap().is_dir() {
                out.insert(rel, None);
                stack.push(entry.path());
            } else {
                out.insert(rel, Some(std::fs::read(entry.path()).unwrap()));
            }
        }
    }
    out
}

#[test]
fn a_transaction_failing_at_each_step_in_turn_leaves_the_tree_as_it_was() {
    let tmp = tempfile::tempdir().unwrap();
    let root = Dir::confined(tmp.path()).unwrap();
    std::fs::create_dir(tmp.path().join("sub")).unwrap();
    for (name, content) in [("keep.txt", "keep"), ("old.txt", "old"), ("move-me.txt", "m"), ("gone.txt", "g")]
    {
        std::fs::write(tmp.path().join(name), content).unwrap();
    }
    let ops: Vec<fn(Transaction<'_>) -> Transaction<'_>> = vec![
        |t| t.write("new.txt", "new"),
        |t| t.write("old.txt", "replaced"),
        |t| t.copy("keep.txt", "sub/copy.txt"),
        |t| t.rename("move-me.txt", "sub/moved.txt"),
        |t| t.delete("gone.txt"),
        |t| t.write("sub/nested.txt", "nested"),
        |t| t.rename("keep.txt", "old.txt"), // replaces the file written in step 1
    ];
    let failing: Vec<fn(Transaction<'_>) -> Transaction<'_>> = vec![
        |t| t.copy("no-such-file", "x.txt"),
        |t| t.delete("no-such-file"),
        |t| t.rename("no-such-file", "y.txt"),
        |t| t.write("no-such-dir/z.txt", "z"),
    ];
    let before = tree(tmp.path());
    for k in 0..=ops.len() {
        for fail in &failing {
            let mut t = Transaction::new(&root);
            for op in &ops[..k] {
                t = op(t);
            }
            t = fail(t);
            for op in &ops[k..] {
                t = op(t);
            }
            match t.apply() {
                Err(FsError::Step { index, .. }) => assert_eq!(index, k),
                other => panic!("failing at step {k}: {other:?}"),
            }
            assert_eq!(tree(tmp.path()), before, "failing at step {k} changed the tree");
        }
    }
    let mut t = Transaction::new(&root);
    for op in &ops {
        t = op(t);
    }
    t.apply().unwrap();
    let after = tree(tmp.path());
    assert_eq!(after["old.txt"].as_deref(), Some(&b"keep"[..]));
    assert_eq!(after["sub/moved.txt"].as_deref(), Some(&b"m"[..]));
    assert!(!after.contains_key("gone.txt") && !after.contains_key("keep.txt"));
    assert!(after.keys().all(|k| !k.contains("closeout-txn")), "no set-aside files left: {after:?}");
}

#[test]
fn a_dir_builder_removes_exactly_what_it_created() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(tmp.path().join("a/existing")).unwrap();
    let root = Dir::confined(tmp.path()).unwrap();
    let before = tree(tmp.path());
    let mut b = DirBuilder::new(&root);
    b.create_all("a/existing/x/y").unwrap();
    b.create_all("a/z").unwrap();
    b.create_all("a/x-file-parent").unwrap();
    std::fs::write(tmp.path().join("a/x-file-parent/user-file"), b"keep me").unwrap();
    assert_eq!(b.created().len(), 4);
    let err = b.rollback().unwrap_err();
    assert!(err.to_string().contains("x-file-parent"), "{err}");
    let mut expected = before;
    expected.insert("a/x-file-parent".into(), None);
    expected.insert("a/x-file-parent/user-file".into(), Some(b"keep me".to_vec()));
    assert_eq!(tree(tmp.path()), expected, "removed exactly the empty directories it created");
}

/// Helper: a temp dir owned by a registry with process hooks installed; waits for a signal.
#[test]
fn temp_dir_owner_child() {
    if !is_helper() {
        return;
    }
    let registry = closeout::Registry::new();
    let path = closeout_fs::temp_dir_in(&registry, "scratch").unwrap();
    std::fs::write(path.join("work.bin"), b"data").unwrap();
    let _hooks = closeout::hooks::install(registry.clone()).unwrap();
    println!("DIR {}", path.display());
    std::thread::sleep(Duration::from_secs(300));
}

#[test]
fn a_temp_dir_is_removed_on_sigterm_when_hooks_are_installed() {
    let mut child =
        helper("temp_dir_owner_child", &[]).stdout(Stdio::piped()).stderr(Stdio::null()).spawn().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = wait_for(&mut lines, "DIR ");
    let path = std::path::PathBuf::from(line["DIR ".len()..].trim());
    assert!(path.join("work.bin").exists());
    rustix::process::kill_process(rustix::process::Pid::from_child(&child), rustix::process::Signal::TERM)
        .unwrap();
    let status = child.wait().unwrap();
    assert_eq!(std::os::unix::process::ExitStatusExt::signal(&status), Some(15));
    assert!(!path.exists(), "the temp dir outlived the SIGTERM");
}

/// A confined lookup that races a rename elsewhere on the system gets EAGAIN from the kernel
/// (it cannot prove the path stayed beneath the root): the open retries instead of failing.
#[test]
fn confined_opens_survive_renames_racing_elsewhere() {
    let tmp = tempfile::tempdir().unwrap();
    let root = Dir::confined(tmp.path()).unwrap();
    std::fs::create_dir_all(tmp.path().join("a/b")).unwrap();
    root.write("a/b/c.txt", b"x").unwrap();
    // A link whose target climbs (and stays inside): the kernel checks for renames on `..`.
    std::os::unix::fs::symlink("../b", tmp.path().join("a/b/up")).unwrap();
    let other = tempfile::tempdir().unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let renamer = {
        let (dir, stop) = (other.path().to_owned(), stop.clone());
        std::thread::spawn(move || {
            std::fs::write(dir.join("x"), b"").unwrap();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                std::fs::rename(dir.join("x"), dir.join("y")).unwrap();
                std::fs::rename(dir.join("y"), dir.join("x")).unwrap();
            }
        })
    };
    for i in 0..20_000 {
        if let Err(e) = root.read("a/b/up/c.txt") {
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            panic!("read {i}: {e}");
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    renamer.join().unwrap();
}
