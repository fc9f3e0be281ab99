//! Nothing lost in files: rollback without a backup, permissions that never widen, deleted
//! directories that leave nothing behind, 255-byte names, a `recover` that removes only what it
//! made, and shared locks that keep a dead owner's pid.

use std::ffi::OsString;
use std::io::Write;
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use closeout_fs::{AtomicFile, Dir, FileLock, FsError, Transaction, recover};

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Replaces `name` in a directory with some content.
type Replace = Box<dyn Fn(&Dir, &str, &[u8])>;

/// Every way to replace a file's content: each keeps the old file's permissions.
fn replacers() -> Vec<(&'static str, Replace)> {
    vec![
        (
            "AtomicFile",
            Box::new(|dir: &Dir, name: &str, data: &[u8]| {
                let mut f = AtomicFile::create(dir.path().join(name)).unwrap();
                f.write_all(data).unwrap();
                f.commit().unwrap().finish();
            }),
        ),
        ("Dir::write", Box::new(|dir: &Dir, name: &str, data: &[u8]| dir.write(name, data).unwrap())),
        (
            "Transaction::write",
            Box::new(|dir: &Dir, name: &str, data: &[u8]| {
                Transaction::new(dir).write(name, data).apply().unwrap()
            }),
        ),
        (
            "Transaction::copy",
            Box::new(|dir: &Dir, name: &str, data: &[u8]| {
                std::fs::write(dir.path().join("source"), data).unwrap();
                Transaction::new(dir).copy("source", name).apply().unwrap();
                std::fs::remove_file(dir.path().join("source")).unwrap();
            }),
        ),
    ]
}

#[test]
fn rolling_back_without_a_backup_is_a_typed_error_that_keeps_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let target = tmp.path().join("f");
    std::fs::write(&target, "old").unwrap();
    let mut file = AtomicFile::create(&target).unwrap();
    file.write_all(b"new").unwrap();
    let err = file.commit().unwrap().rollback().unwrap_err();
    assert!(matches!(err, FsError::NoBackup { .. }), "{err}");
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "new");
    // With a backup, and with a backup of a file that did not exist before.
    let mut file = AtomicFile::create(&target).unwrap().with_backup();
    file.write_all(b"newer").unwrap();
    file.commit().unwrap().rollback().unwrap();
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "new");
    let fresh = tmp.path().join("fresh");
    let mut file = AtomicFile::create(&fresh).unwrap().with_backup();
    file.write_all(b"x").unwrap();
    file.commit().unwrap().rollback().unwrap();
    assert!(!fresh.exists());
    assert_eq!(listing(tmp.path()), ["f"], "no temp or backup left");
}

#[test]
fn replacing_a_file_never_widens_its_permissions() {
    for (what, replace) in replacers() {
        for perms in [0o600, 0o640, 0o400, 0o755] {
            let tmp = tempfile::tempdir().unwrap();
            let dir = Dir::open(tmp.path()).unwrap();
            let target = tmp.path().join("t");
            std::fs::write(&target, "old").unwrap();
            std::fs::set_permissions(&target, std::fs::Permissions::from_mode(perms)).unwrap();
            replace(&dir, "t", b"new");
            assert_eq!(mode(&target), perms, "{what}: {perms:o} kept");
            // Through a symlink: the link's own 0777 is never what the new file gets.
            let real = tmp.path().join("real");
            std::fs::write(&real, "r").unwrap();
            std::fs::set_permissions(&real, std::fs::Permissions::from_mode(perms)).unwrap();
            std::os::unix::fs::symlink(&real, tmp.path().join("link")).unwrap();
            replace(&dir, "link", b"via link");
            assert_eq!(mode(&tmp.path().join("link")), perms, "{what}: through a symlink, {perms:o}");
        }
    }
}

#[test]
fn new_files_honour_the_umask() {
    for (what, replace) in replacers() {
        for (umask, expect) in [(0o022, 0o644), (0o077, 0o600), (0o027, 0o640)] {
            let old = rustix::process::umask(rustix::fs::Mode::from_raw_mode(umask));
            let tmp = tempfile::tempdir().unwrap();
            let dir = Dir::open(tmp.path()).unwrap();
            replace(&dir, "new", b"n");
            rustix::process::umask(old);
            assert_eq!(mode(&tmp.path().join("new")), expect, "{what} with umask {umask:o}");
        }
    }
}

#[test]
fn deleting_a_directory_in_a_transaction_leaves_nothing_hidden() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = Dir::confined(tmp.path()).unwrap();
    std::fs::create_dir_all(tmp.path().join("d/e/f")).unwrap();
    std::fs::write(tmp.path().join("d/e/f/x"), "x").unwrap();
    std::fs::write(tmp.path().join("d/y"), "y").unwrap();
    Transaction::new(&dir).delete("d").write("kept", "k").apply().unwrap();
    assert_eq!(listing(tmp.path()), ["kept"]);
    // And a failed one puts the directory back whole.
    std::fs::create_dir_all(tmp.path().join("d2/sub")).unwrap();
    std::fs::write(tmp.path().join("d2/sub/z"), "z").unwrap();
    assert!(Transaction::new(&dir).delete("d2").copy("missing", "c").apply().is_err());
    assert_eq!(std::fs::read_to_string(tmp.path().join("d2/sub/z")).unwrap(), "z");
    assert_eq!(listing(tmp.path()), ["d2", "kept"]);
}

#[test]
fn names_up_to_255_bytes_work_everywhere() {
    for len in [200usize, 230, 250, 255] {
        let name = "n".repeat(len);
        let tmp = tempfile::tempdir().unwrap();
        let dir = Dir::confined(tmp.path()).unwrap();
        let mut f = AtomicFile::create(tmp.path().join(&name)).unwrap().with_backup();
        f.write_all(b"1").unwrap();
        f.commit().unwrap().finish();
        let mut f = AtomicFile::create(tmp.path().join(&name)).unwrap().with_backup();
        f.write_all(b"2").unwrap();
        f.commit().unwrap().rollback().unwrap();
        dir.write(&name, b"3").unwrap();
        Transaction::new(&dir).write(&name, "4").apply().unwrap();
        assert_eq!(dir.read(&name).unwrap(), b"4", "{len}");
        let other = "m".repeat(len);
        Transaction::new(&dir).rename(&name, &other).delete(&other).apply().unwrap();
        assert!(listing(tmp.path()).is_empty(), "{len}: {:?}", listing(tmp.path()));
    }
}

/// A pid that is surely gone: a child that has exited and been reaped.
fn dead_pid() -> u32 {
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    pid
}

#[test]
fn recover_removes_only_what_it_made_for_a_dead_owner() {
    let tmp = tempfile::tempdir().unwrap();
    let dead = dead_pid();
    let users = [
        "report.closeout-tmp.1-2.3".to_owned(),
        format!(".notes.closeout-tmp.{dead}.7"), // the old format: not ours any more
        format!(".notes.closeout-tmp.{dead}-x.7"),
        format!(".notes.closeout-tmp.{dead}-1.7.orig"),
        "my.closeout-bak".to_owned(),
        format!("data.closeout-tmp.{dead}-5.1"),
    ];
    for name in &users {
        std::fs::write(tmp.path().join(name), "user data").unwrap();
    }
    // Left by a writer that died: a temp file and a backup, in the exact format.
    let theirs = [format!(".data.closeout-tmp.{dead}-12345.0"), format!(".data.closeout-bak.{dead}-12345.1")];
    for name in &theirs {
        std::fs::write(tmp.path().join(name), "left behind").unwrap();
    }
    // A live writer's temp file: this process's, mid-write.
    let mut live = AtomicFile::create(tmp.path().join("busy")).unwrap();
    live.write_all(b"in progress").unwrap();
    let removed = recover(tmp.path()).unwrap();
    let mut removed: Vec<String> =
        removed.iter().map(|p| p.file_name().unwrap().to_string_lossy().into_owned()).collect();
    removed.sort();
    let mut expected = theirs.to_vec();
    expected.sort();
    assert_eq!(removed, expected);
    for name in &users {
        assert!(tmp.path().join(name).exists(), "a user's {name} was kept");
    }
    live.commit().unwrap();
    assert_eq!(std::fs::read_to_string(tmp.path().join("busy")).unwrap(), "in progress");
    // Names that are not UTF-8 are read without trouble.
    std::fs::write(tmp.path().join(OsString::from_vec(b"\xff.closeout-tmp.1-2.3".to_vec())), "x").unwrap();
    recover(tmp.path()).unwrap();
}

#[test]
fn a_dropped_shared_lock_keeps_a_dead_owners_pid() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("lock");
    let dead = dead_pid();
    std::fs::write(&path, dead.to_string()).unwrap();
    for _ in 0..3 {
        let shared = FileLock::shared(&path, Duration::from_secs(1)).unwrap();
        drop(shared);
        assert_eq!(FileLock::holder(&path), Some(dead), "the evidence of the crash stays");
    }
    let exclusive = FileLock::exclusive(&path, Duration::from_secs(1)).unwrap();
    assert_eq!(exclusive.recovered_from(), Some(dead));
    drop(exclusive);
    assert_eq!(FileLock::holder(&path), None, "a clean exclusive release clears it");
}
