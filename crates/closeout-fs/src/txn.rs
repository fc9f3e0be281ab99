//! [`Transaction`]: a batch of writes, copies, moves and deletes, applied all or nothing.
//!
//! Every effect is recorded with its inverse the moment it happens: a replaced or deleted file
//! is first renamed aside (not copied, not removed), a new file is noted for removal. On the
//! first failure the inverses run in reverse order — including those of the failing step's
//! partial effects — and the error names the step. On success the set-aside files are
//! removed. Renames stay within one directory, so nothing crosses filesystems.
//!
//! Not crash-proof: a process killed mid-transaction leaves set-aside files
//! (`.name.closeout-txn.<pid>.<n>`) next to their originals.

use std::ffi::OsString;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use rustix::fs::{AtFlags, Mode, OFlags};

use crate::dir::Dir;
use crate::error::FsError;

static NEXT: AtomicU64 = AtomicU64::new(0);

#[derive(Debug, Clone)]
enum Step {
    Write(PathBuf, Vec<u8>),
    Copy(PathBuf, PathBuf),
    Move(PathBuf, PathBuf),
    Delete(PathBuf),
}

impl Step {
    fn describe(&self) -> String {
        match self {
            Step::Write(p, data) => format!("write {} bytes to `{}`", data.len(), p.display()),
            Step::Copy(a, b) => format!("copy `{}` to `{}`", a.display(), b.display()),
            Step::Move(a, b) => format!("move `{}` to `{}`", a.display(), b.display()),
            Step::Delete(p) => format!("delete `{}`", p.display()),
        }
    }
}

/// How to undo one effect.
enum Undo {
    /// Remove a file this transaction created.
    Remove { dir: OwnedFd, name: OsString },
    /// Rename `from` back to `to` (a file set aside, or a file moved).
    Rename { from_dir: OwnedFd, from: OsString, to_dir: OwnedFd, to: OsString },
}

/// A batch of file operations inside a [`Dir`], applied all or nothing; see the module docs.
///
/// ```
/// use closeout_fs::{Dir, Transaction};
/// let tmp = tempfile::tempdir()?;
/// let dir = Dir::confined(tmp.path())?;
/// dir.write("a.txt", b"A")?;
/// let err = Transaction::new(&dir)
///     .write("b.txt", b"B")
///     .delete("a.txt")
///     .copy("missing.txt", "c.txt") // fails: everything before is undone
///     .apply()
///     .unwrap_err();
/// assert!(err.to_string().contains("step 2"));
/// assert_eq!(dir.read("a.txt")?, b"A");
/// assert!(dir.read("b.txt").is_err());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
#[must_use = "nothing happens until `apply`"]
pub struct Transaction<'d> {
    dir: &'d Dir,
    steps: Vec<Step>,
}

impl<'d> Transaction<'d> {
    /// An empty transaction on paths inside `dir`.
    pub fn new(dir: &'d Dir) -> Transaction<'d> {
        Transaction { dir, steps: Vec::new() }
    }

    /// Writes `data` to `path` (replacing it).
    pub fn write(mut self, path: impl AsRef<Path>, data: impl Into<Vec<u8>>) -> Self {
        self.steps.push(Step::Write(path.as_ref().to_owned(), data.into()));
        self
    }

    /// Copies `from` to `to` (replacing it).
    pub fn copy(mut self, from: impl AsRef<Path>, to: impl AsRef<Path>) -> Self {
        self.steps.push(Step::Copy(from.as_ref().to_owned(), to.as_ref().to_owned()));
        self
    }

    /// Moves `from` to `to` (replacing it).
    pub fn rename(mut self, from: impl AsRef<Path>, to: impl AsRef<Path>) -> Self {
        self.steps.push(Step::Move(from.as_ref().to_owned(), to.as_ref().to_owned()));
        self
    }

    /// Deletes `path`.
    pub fn delete(mut self, path: impl AsRef<Path>) -> Self {
        self.steps.push(Step::Delete(path.as_ref().to_owned()));
        self
    }

    /// How many steps.
    pub fn len(&self) -> usize {
        self.steps.len()
    }

    /// Whether there are no steps.
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// Applies every step in order, or none.
    ///
    /// # Errors
    ///
    /// [`FsError::Step`] naming the failed step after everything was undone, or
    /// [`FsError::UndoFailed`] if undoing failed too.
    pub fn apply(self) -> Result<(), FsError> {
        let mut undo: Vec<Undo> = Vec::new();
        let mut aside: Vec<(OwnedFd, OsString)> = Vec::new();
        for (index, step) in self.steps.iter().enumerate() {
            if let Err(source) = self.run(step, &mut undo, &mut aside) {
                let step = step.describe();
                return match roll_back(undo) {
                    Ok(()) => Err(FsError::Step { index, step, source: Box::new(source) }),
                    Err(undo) => Err(FsError::UndoFailed { index, step, source: Box::new(source), undo }),
                };
            }
        }
        // Done: the set-aside originals go.
        for (dir, name) in aside {
            let _ = rustix::fs::unlinkat(&dir, name.as_os_str(), AtFlags::empty());
        }
        Ok(())
    }

    fn run(
        &self,
        step: &Step,
        undo: &mut Vec<Undo>,
        aside: &mut Vec<(OwnedFd, OsString)>,
    ) -> Result<(), FsError> {
        match step {
            Step::Write(path, data) => {
                self.set_aside(path, undo, aside)?;
                self.create(path, data, undo)
            }
            Step::Copy(from, to) => {
                let data = self.dir.read(from)?;
                self.set_aside(to, undo, aside)?;
                self.create(to, &data, undo)
            }
            Step::Move(from, to) => {
                self.set_aside(to, undo, aside)?;
                let (from_dir, from_name) = self.dir.parent_of(from)?;
                let (to_dir, to_name) = self.dir.parent_of(to)?;
                rustix::fs::renameat(&from_dir, from_name.as_os_str(), &to_dir, to_name.as_os_str())
                    .map_err(|e| FsError::io("move", &self.dir.path().join(from), e.into()))?;
                undo.push(Undo::Rename { from_dir: to_dir, from: to_name, to_dir: from_dir, to: from_name });
                Ok(())
            }
            Step::Delete(path) => {
                if !self.set_aside(path, undo, aside)? {
                    return Err(FsError::io(
                        "delete",
                        &self.dir.path().join(path),
                        std::io::ErrorKind::NotFound.into(),
                    ));
                }
                Ok(())
            }
        }
    }

    /// Renames an existing `path` aside (recording how to put it back); false if it did not
    /// exist.
    fn set_aside(
        &self,
        path: &Path,
        undo: &mut Vec<Undo>,
        aside: &mut Vec<(OwnedFd, OsString)>,
    ) -> Result<bool, FsError> {
        let (dir, name) = self.dir.parent_of(path)?;
        let mut hidden = OsString::from(".");
        hidden.push(&name);
        hidden.push(format!(".closeout-txn.{}.{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed)));
        match rustix::fs::renameat(&dir, name.as_os_str(), &dir, hidden.as_os_str()) {
            Ok(()) => {
                let keep =
                    dir.try_clone().map_err(|e| FsError::io("set aside", &self.dir.path().join(path), e))?;
                let back =
                    dir.try_clone().map_err(|e| FsError::io("set aside", &self.dir.path().join(path), e))?;
                aside.push((keep, hidden.clone()));
                undo.push(Undo::Rename { from_dir: dir, from: hidden, to_dir: back, to: name });
                Ok(true)
            }
            Err(rustix::io::Errno::NOENT) => Ok(false),
            Err(e) => Err(FsError::io("set aside", &self.dir.path().join(path), e.into())),
        }
    }

    /// Creates `path` (which does not exist now) with `data`, recording its removal.
    fn create(&self, path: &Path, data: &[u8], undo: &mut Vec<Undo>) -> Result<(), FsError> {
        use std::io::Write;
        let (dir, name) = self.dir.parent_of(path)?;
        let full = self.dir.path().join(path);
        let fd = rustix::fs::openat(
            &dir,
            name.as_os_str(),
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o644),
        )
        .map_err(|e| FsError::io("create", &full, e.into()))?;
        // Recorded before writing: a partial write is undone too.
        let keep = dir.try_clone().map_err(|e| FsError::io("create", &full, e))?;
        undo.push(Undo::Remove { dir: keep, name });
        let mut file = std::fs::File::from(fd);
        file.write_all(data).and_then(|()| file.sync_all()).map_err(|e| FsError::io("write", &full, e))
    }
}

/// Runs the inverses in reverse order; on failure, says which could not be undone.
fn roll_back(undo: Vec<Undo>) -> Result<(), String> {
    let mut failed = Vec::new();
    for u in undo.into_iter().rev() {
        let result = match &u {
            Undo::Remove { dir, name } => rustix::fs::unlinkat(dir, name.as_os_str(), AtFlags::empty()),
            Undo::Rename { from_dir, from, to_dir, to } => {
                rustix::fs::renameat(from_dir, from.as_os_str(), to_dir, to.as_os_str())
            }
        };
        if let Err(e) = result {
            let what = match &u {
                Undo::Remove { name, .. } => format!("remove `{}`: {e}", name.to_string_lossy()),
                Undo::Rename { from, to, .. } => {
                    format!("rename `{}` back to `{}`: {e}", from.to_string_lossy(), to.to_string_lossy())
                }
            };
            failed.push(what);
        }
    }
    if failed.is_empty() { Ok(()) } else { Err(failed.join("; ")) }
}
