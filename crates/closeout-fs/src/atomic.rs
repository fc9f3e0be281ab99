//! [`AtomicFile`]: a file replaced all at once or not at all.

use std::ffi::OsString;
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, Mode, OFlags};

use crate::dir::Dir;
use crate::error::FsError;
use crate::names::{self, Kind};

/// A file being written, replaced atomically on [`commit`](AtomicFile::commit); see the
/// module docs.
///
/// The new content goes to a temp file in the target's own directory (so the rename cannot
/// cross filesystems), created exclusively with the target's permissions. `commit` fsyncs it,
/// renames it over the target and fsyncs the directory, so after a crash the target holds the
/// old content or the new, never a mix. Dropped or failed before the rename, the temp file is
/// removed. A writer killed outright (SIGKILL, power loss) leaves its temp file (or backup)
/// behind: its name carries the writer's pid and start time (see `names`), and [`recover`]
/// removes exactly those whose writer is gone.
///
/// Permissions never widen: the new file gets the permissions of the file it replaces (of the
/// file a symlink points to, not the link's own 0777), or the default 0666 less the umask.
/// Names up to 255 bytes work: temp and backup names are shortened to fit.
///
/// ```
/// use closeout_fs::AtomicFile;
/// use std::io::Write;
/// let dir = tempfile::tempdir()?;
/// let target = dir.path().join("config.toml");
/// std::fs::write(&target, "old")?;
///
/// let mut file = AtomicFile::create(&target)?;
/// file.write_all(b"new")?;
/// drop(file); // not committed: the target is untouched, the temp file is gone
/// assert_eq!(std::fs::read_to_string(&target)?, "old");
///
/// let mut file = AtomicFile::create(&target)?.with_backup();
/// file.write_all(b"new")?;
/// let committed = file.commit()?;
/// assert_eq!(std::fs::read_to_string(&target)?, "new");
/// committed.rollback()?; // the previous version is back
/// assert_eq!(std::fs::read_to_string(&target)?, "old");
/// assert_eq!(std::fs::read_dir(dir.path())?.count(), 1); // no temp or backup left
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct AtomicFile {
    dir: OwnedFd,
    dir_path: PathBuf,
    name: OsString,
    tmp: OsString,
    file: Option<File>,
    backup: bool,
}

impl AtomicFile {
    /// Starts replacing `path` (unconfined).
    ///
    /// # Errors
    ///
    /// [`FsError`] if the directory cannot be opened or the temp file created.
    pub fn create(path: impl AsRef<Path>) -> Result<AtomicFile, FsError> {
        let path = path.as_ref();
        let parent = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let name = path
            .file_name()
            .ok_or_else(|| FsError::Escape { path: path.to_owned(), reason: "no file name" })?;
        AtomicFile::create_in(&Dir::open(parent)?, Path::new(name))
    }

    /// Starts replacing `rel` inside `dir` (beneath it when `dir` is confined).
    ///
    /// # Errors
    ///
    /// [`FsError`] for an escaping path, or if the temp file cannot be created.
    pub fn create_in(dir: &Dir, rel: &Path) -> Result<AtomicFile, FsError> {
        let (parent, name) = dir.parent_of(rel)?;
        let parent = reopen_dir(parent, &dir.path().join(rel))?;
        let dir_path = dir.path().join(rel.parent().unwrap_or(Path::new("")));
        // The target's permissions (through a symlink, those of the file it points to: never a
        // link's own 0777), or the default for a new file (the umask applies).
        let mode = match rustix::fs::statat(&parent, name.as_os_str(), AtFlags::empty()) {
            Ok(st) => Some(Mode::from_raw_mode(st.st_mode) & Mode::from_raw_mode(0o7777)),
            Err(_) => None,
        };
        let tmp = names::make(&name, Kind::Tmp);
        let fd = rustix::fs::openat(
            &parent,
            tmp.as_os_str(),
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::CLOEXEC,
            mode.unwrap_or(Mode::from_raw_mode(0o666)),
        )
        .map_err(|e| FsError::io("create temp file", &dir_path.join(&tmp), e.into()))?;
        if let Some(mode) = mode {
            // Exactly the target's permissions, whatever the umask.
            rustix::fs::fchmod(&fd, mode)
                .map_err(|e| FsError::io("set permissions", &dir_path.join(&tmp), e.into()))?;
        }
        Ok(AtomicFile { dir: parent, dir_path, name, tmp, file: Some(File::from(fd)), backup: false })
    }

    /// A registry resource (category `File`) that abandons this write at teardown: nothing is
    /// committed and the temp file goes. For a write that may be cut short (commit it yourself,
    /// or let the teardown clean it up); a file handed to a registry can no longer be committed.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let file = closeout_fs::AtomicFile::create(dir.path().join("f"))?;
    /// let registry = closeout::Registry::new();
    /// registry.register(file.resource("half-written"))?;
    /// assert!(registry.shutdown_blocking().is_success());
    /// assert_eq!(std::fs::read_dir(dir.path())?.count(), 0); // no temp file left
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn resource(self, id: impl Into<String>) -> closeout::Resource {
        closeout::Resource::new(id, move || drop(self)).category(closeout::Category::File)
    }

    /// Abandons this write when `scope` is released (see [`resource`](AtomicFile::resource)).
    ///
    /// # Errors
    ///
    /// [`Rejected`](closeout::Rejected) with the file, still open, if the scope was released.
    pub fn defer_in(
        self,
        scope: &closeout::Scope,
        name: impl Into<std::borrow::Cow<'static, str>>,
    ) -> Result<(), closeout::Rejected<AtomicFile>> {
        scope.defer_release(name, self, drop).map(drop)
    }

    /// Keeps the previous version until the [`Committed`] handle is dropped, so it can be
    /// [rolled back](Committed::rollback).
    pub fn with_backup(mut self) -> AtomicFile {
        self.backup = true;
        self
    }

    /// The target's path.
    pub fn target(&self) -> PathBuf {
        self.dir_path.join(&self.name)
    }

    /// Makes the new content durable and puts it in place: fsync, rename over the target,
    /// fsync the directory.
    ///
    /// # Errors
    ///
    /// [`FsError`]: the target is unchanged and the temp file removed.
    pub fn commit(mut self) -> Result<Committed, FsError> {
        let target = self.target();
        let file =
            self.file.take().ok_or_else(|| FsError::io("commit", &target, io::ErrorKind::Other.into()))?;
        // fdatasync: the content and what is needed to read it back (the size); the rest of
        // the inode's metadata (times) need not be durable before the rename.
        file.sync_data().map_err(|e| FsError::io("fsync", &target, e))?;
        drop(file);
        let backup = if self.backup { self.make_backup()? } else { Backup::NotKept };
        rustix::fs::renameat(&self.dir, self.tmp.as_os_str(), &self.dir, self.name.as_os_str())
            .map_err(|e| FsError::io("rename into place", &target, e.into()))?;
        // The rename is done: nothing left to remove on drop.
        self.tmp.clear();
        rustix::fs::fsync(&self.dir).map_err(|e| FsError::io("fsync directory", &self.dir_path, e.into()))?;
        let dir = self.dir.try_clone().map_err(|e| FsError::io("keep directory", &self.dir_path, e))?;
        Ok(Committed { dir, dir_path: self.dir_path.clone(), name: self.name.clone(), backup })
    }

    /// Hard-links the current target to a backup name of its own.
    fn make_backup(&self) -> Result<Backup, FsError> {
        let backup = names::make(&self.name, Kind::Bak);
        match rustix::fs::linkat(
            &self.dir,
            self.name.as_os_str(),
            &self.dir,
            backup.as_os_str(),
            AtFlags::empty(),
        ) {
            Ok(()) => Ok(Backup::Previous(backup)),
            Err(rustix::io::Errno::NOENT) => Ok(Backup::NoPrevious), // nothing to back up
            Err(e) => Err(FsError::io("back up", &self.target(), e.into())),
        }
    }
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file.as_mut().ok_or(io::ErrorKind::Other)?.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.as_mut().ok_or(io::ErrorKind::Other)?.flush()
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if !self.tmp.is_empty() {
            let _ = rustix::fs::unlinkat(&self.dir, self.tmp.as_os_str(), AtFlags::empty());
        }
    }
}

/// A committed replacement. Dropping it (or [`finish`](Committed::finish)) removes the backup;
/// [`rollback`](Committed::rollback) puts the previous version back.
#[derive(Debug)]
pub struct Committed {
    dir: OwnedFd,
    dir_path: PathBuf,
    name: OsString,
    backup: Backup,
}

/// What a commit kept of the version it replaced.
#[derive(Debug)]
enum Backup {
    /// Nothing: the writer did not ask for [`AtomicFile::with_backup`].
    NotKept,
    /// Asked for, but there was no file before.
    NoPrevious,
    /// The previous version, hard-linked under this name.
    Previous(OsString),
}

impl Committed {
    /// Restores the previous version (or removes the file if there was none before).
    ///
    /// # Errors
    ///
    /// [`FsError::NoBackup`], changing nothing, if the writer did not ask for
    /// [`with_backup`](AtomicFile::with_backup): there is no previous version to go back to,
    /// and the new one is kept. [`FsError::Io`] if the rename or the removal fails.
    ///
    /// ```
    /// use closeout_fs::{AtomicFile, FsError};
    /// use std::io::Write;
    /// let dir = tempfile::tempdir()?;
    /// let target = dir.path().join("f");
    /// std::fs::write(&target, "old")?;
    /// let mut file = AtomicFile::create(&target)?; // no backup asked for
    /// file.write_all(b"new")?;
    /// let err = file.commit()?.rollback().unwrap_err();
    /// assert!(matches!(err, FsError::NoBackup { .. }));
    /// assert_eq!(std::fs::read_to_string(&target)?, "new"); // kept, not deleted
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn rollback(mut self) -> Result<(), FsError> {
        let target = self.dir_path.join(&self.name);
        match std::mem::replace(&mut self.backup, Backup::NotKept) {
            Backup::NotKept => return Err(FsError::NoBackup { path: target }),
            Backup::Previous(backup) => {
                rustix::fs::renameat(&self.dir, backup.as_os_str(), &self.dir, self.name.as_os_str())
                    .map_err(|e| FsError::io("restore backup", &target, e.into()))?
            }
            Backup::NoPrevious => rustix::fs::unlinkat(&self.dir, self.name.as_os_str(), AtFlags::empty())
                .map_err(|e| FsError::io("remove new file", &target, e.into()))?,
        }
        rustix::fs::fsync(&self.dir).map_err(|e| FsError::io("fsync directory", &self.dir_path, e.into()))
    }

    /// Keeps the new version and removes the backup.
    pub fn finish(self) {}

    /// A registry resource (category `File`) that [finishes](Committed::finish) the commit at
    /// teardown: the new version stays, the backup goes.
    ///
    /// ```
    /// use std::io::Write;
    /// # let dir = tempfile::tempdir()?;
    /// let mut file = closeout_fs::AtomicFile::create(dir.path().join("f"))?.with_backup();
    /// file.write_all(b"new")?;
    /// let registry = closeout::Registry::new();
    /// registry.register(file.commit()?.resource("config"))?;
    /// assert!(registry.shutdown_blocking().is_success());
    /// assert_eq!(std::fs::read_dir(dir.path())?.count(), 1); // no backup left
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn resource(self, id: impl Into<String>) -> closeout::Resource {
        closeout::Resource::new(id, move || self.finish()).category(closeout::Category::File)
    }

    /// Finishes the commit when `scope` is released.
    ///
    /// # Errors
    ///
    /// [`Rejected`](closeout::Rejected) with the commit, backup still kept, if the scope was
    /// released.
    pub fn defer_in(
        self,
        scope: &closeout::Scope,
        name: impl Into<std::borrow::Cow<'static, str>>,
    ) -> Result<(), closeout::Rejected<Committed>> {
        scope.defer_release(name, self, Committed::finish).map(drop)
    }
}

impl Drop for Committed {
    fn drop(&mut self) {
        if let Backup::Previous(backup) = &self.backup {
            let _ = rustix::fs::unlinkat(&self.dir, backup.as_os_str(), AtFlags::empty());
        }
    }
}

/// The directory descriptor `parent_of` gave (`O_PATH`), reopened for reading so it can be
/// fsynced.
fn reopen_dir(fd: OwnedFd, path: &Path) -> Result<OwnedFd, FsError> {
    rustix::fs::openat(&fd, ".", OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
        .map_err(|e| FsError::io("open directory", path, e.into()))
}

/// Removes the temp files and backups left in `dir` by atomic writers that are no longer
/// running (killed before they could clean up), and returns their paths. Only names in the
/// exact format an [`AtomicFile`] makes, whose owner (pid and start time) is gone, are touched:
/// files of live writers, and a user's files whose names merely look similar, are left alone.
/// (A killed writer's backup is the version its commit replaced: the commit stands.)
///
/// # Errors
///
/// [`FsError`] if the directory cannot be read.
///
/// ```
/// let dir = tempfile::tempdir()?;
/// let removed = closeout_fs::recover(dir.path())?;
/// assert!(removed.is_empty());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn recover(dir: impl AsRef<Path>) -> Result<Vec<PathBuf>, FsError> {
    let dir = dir.as_ref();
    let entries = std::fs::read_dir(dir).map_err(|e| FsError::io("read directory", dir, e))?;
    let mut removed = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some((Kind::Tmp | Kind::Bak, owner)) = names::parse(&name) else { continue };
        if owner.is_alive() || !entry.file_type().is_ok_and(|t| t.is_file()) {
            continue; // its writer may still be at work; or not a file we would have made
        }
        let path = entry.path();
        std::fs::remove_file(&path).map_err(|e| FsError::io("remove stale temp file", &path, e))?;
        removed.push(path);
    }
    Ok(removed)
}
