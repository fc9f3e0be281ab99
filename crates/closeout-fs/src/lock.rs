//! [`FileLock`]: advisory locks with a timeout, owned by a guard, recording their owner's pid.

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rustix::fs::{FlockOperation, Mode, OFlags};

use crate::dir::Dir;
use crate::error::FsError;

/// A held lock; dropping it unlocks.
///
/// Built on `flock`: the kernel releases a lock when its owner dies, however it dies, so a lock
/// file whose owner was SIGKILLed is free again at once — no stale-pid heuristics. The file
/// records the pid of its exclusive owner; the next owner sees that pid and whether it is still
/// alive ([`FileLock::recovered_from`]). Lock files are never deleted: deleting one races with
/// a process that opened it but has not locked it yet.
///
/// ```
/// use closeout_fs::FileLock;
/// use std::time::Duration;
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("db.lock");
/// let held = FileLock::exclusive(&path, Duration::from_secs(1))?;
/// assert_eq!(FileLock::holder(&path), Some(std::process::id()));
/// drop(held);
/// let a = FileLock::shared(&path, Duration::from_secs(1))?;
/// let b = FileLock::shared(&path, Duration::from_secs(1))?; // shared locks coexist
/// # drop((a, b));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct FileLock {
    file: File,
    path: PathBuf,
    recovered_from: Option<u32>,
    /// Only an exclusive owner wrote its pid, so only it clears the file on release: a shared
    /// holder must not erase a dead exclusive owner's pid (the evidence of its crash).
    exclusive: bool,
}

impl FileLock {
    /// Waits at most `timeout` for an exclusive lock on `path` (created if missing), then
    /// records this process's pid in it.
    ///
    /// # Errors
    ///
    /// [`FsError::LockTimeout`] (naming the holder's pid) or an I/O error.
    pub fn exclusive(path: impl AsRef<Path>, timeout: Duration) -> Result<FileLock, FsError> {
        let path = path.as_ref();
        let file = open_lock_file(path, None)?;
        FileLock::acquire(file, path, true, timeout)
    }

    /// Waits at most `timeout` for a shared lock on `path` (created if missing).
    ///
    /// # Errors
    ///
    /// As [`exclusive`](FileLock::exclusive).
    pub fn shared(path: impl AsRef<Path>, timeout: Duration) -> Result<FileLock, FsError> {
        let path = path.as_ref();
        let file = open_lock_file(path, None)?;
        FileLock::acquire(file, path, false, timeout)
    }

    /// [`exclusive`](FileLock::exclusive) for `rel` inside `dir` (beneath it when confined).
    ///
    /// # Errors
    ///
    /// As [`exclusive`](FileLock::exclusive), plus [`FsError::Escape`].
    pub fn exclusive_in(dir: &Dir, rel: impl AsRef<Path>, timeout: Duration) -> Result<FileLock, FsError> {
        let rel = rel.as_ref();
        let file = open_lock_file(rel, Some(dir))?;
        FileLock::acquire(file, &dir.path().join(rel), true, timeout)
    }

    fn acquire(mut file: File, path: &Path, exclusive: bool, timeout: Duration) -> Result<FileLock, FsError> {
        let op = if exclusive {
            FlockOperation::NonBlockingLockExclusive
        } else {
            FlockOperation::NonBlockingLockShared
        };
        let start = Instant::now();
        let mut pause = Duration::from_millis(1);
        loop {
            match rustix::fs::flock(&file, op) {
                Ok(()) => break,
                Err(rustix::io::Errno::WOULDBLOCK) => {
                    let waited = start.elapsed();
                    if waited >= timeout {
                        return Err(FsError::LockTimeout {
                            path: path.to_owned(),
                            waited,
                            holder: read_pid(&mut file),
                        });
                    }
                    std::thread::sleep(pause.min(timeout - waited));
                    pause = (pause * 2).min(Duration::from_millis(50));
                }
                Err(e) => return Err(FsError::io("lock", path, e.into())),
            }
        }
        let mut recovered_from = None;
        if exclusive {
            let previous = read_pid(&mut file);
            recovered_from = previous.filter(|&pid| pid != std::process::id() && !alive(pid));
            let me = std::process::id().to_string();
            let written =
                file.set_len(0).and_then(|()| file.rewind()).and_then(|()| file.write_all(me.as_bytes()));
            written.map_err(|e| FsError::io("record owner pid", path, e))?;
        }
        Ok(FileLock { file, path: path.to_owned(), recovered_from, exclusive })
    }

    /// The pid recorded in the lock file at `path`: its last exclusive owner.
    pub fn holder(path: impl AsRef<Path>) -> Option<u32> {
        let mut file = File::open(path).ok()?;
        read_pid(&mut file)
    }

    /// When this lock was left by an owner that died without releasing it cleanly (its pid
    /// still in the file), that pid.
    pub fn recovered_from(&self) -> Option<u32> {
        self.recovered_from
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A registry resource (category `File`) that releases the lock at teardown.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let registry = closeout::Registry::new();
    /// let lock = closeout_fs::FileLock::exclusive(dir.path().join("l"), std::time::Duration::ZERO)?;
    /// registry.register(lock.resource("db.lock"))?;
    /// assert!(registry.shutdown_blocking().is_success());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn resource(self, id: impl Into<String>) -> closeout::Resource {
        closeout::Resource::new(id, move || drop(self)).category(closeout::Category::File)
    }

    /// Releases the lock when `scope` is released.
    ///
    /// # Errors
    ///
    /// [`Rejected`](closeout::Rejected) with the lock, still held, if the scope was released.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let scope = closeout::Scope::new();
    /// let lock = closeout_fs::FileLock::exclusive(dir.path().join("l"), std::time::Duration::ZERO)?;
    /// lock.defer_in(&scope, "db.lock")?;
    /// assert!(scope.close().is_success());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn defer_in(
        self,
        scope: &closeout::Scope,
        name: impl Into<std::borrow::Cow<'static, str>>,
    ) -> Result<(), closeout::Rejected<FileLock>> {
        scope.defer_release(name, self, drop).map(drop)
    }
}

impl Drop for FileLock {
    fn drop(&mut self) {
        // An exclusive owner leaves cleanly: clear its pid so the next owner sees no crash.
        if self.exclusive {
            let _ = self.file.set_len(0);
        }
        let _ = rustix::fs::flock(&self.file, FlockOperation::Unlock);
    }
}

fn open_lock_file(path: &Path, dir: Option<&Dir>) -> Result<File, FsError> {
    let flags = OFlags::RDWR | OFlags::CREATE;
    let mode = Mode::from_raw_mode(0o644);
    let fd = match dir {
        Some(dir) => dir.open_at(path, flags, mode)?,
        None => rustix::fs::open(path, flags | OFlags::CLOEXEC, mode)
            .map_err(|e| FsError::io("open lock file", path, e.into()))?,
    };
    Ok(File::from(fd))
}

fn read_pid(file: &mut File) -> Option<u32> {
    let mut s = String::new();
    file.rewind().ok()?;
    file.read_to_string(&mut s).ok()?;
    s.trim().parse().ok()
}

fn alive(pid: u32) -> bool {
    std::fs::metadata(format!("/proc/{pid}")).is_ok()
}
