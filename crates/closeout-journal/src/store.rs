//! Where owner logs live, and how a dead owner is told from a live one: the [`Store`] trait,
//! and [`FileStore`], one append-only file per owner in the state directory.
//!
//! The trait is small so that a distributed backend can implement it later (etcd, say:
//! liveness is a key on a lease that dies with its owner, records are keys without one).
//!
//! # Files
//!
//! `owner-<pid>.<start>-<n>.journal`, mode 0600, opened with `O_NOFOLLOW` (a symlink is
//! refused) and `O_CLOEXEC` (children never inherit it). The owner holds an exclusive `flock`
//! on its file for as long as it lives; the kernel drops it when the owner dies, however it
//! dies, and that is what a reaper looks for. A file is made under a dot-name, locked, given
//! its header and synced, and only then renamed into view, so no reaper can find a file whose
//! owner has not locked it yet. A file whose owner released everything is unlinked while still
//! locked; a reaper that opened it just before finds it unlinked (no links) and leaves it.
//!
//! # Invariants
//!
//! J1. A visible owner file is locked by its live owner, or its owner is dead.
//! J2. Only the holder of a file's lock appends to it or unlinks it.
//! J3. Every line an owner writes is durable (`fdatasync`) before the call that wrote it
//!     returns. A reaper's releases of idempotent records (trees, paths) are synced once per
//!     owner (or made moot by the file's removal); a crash of the reaper before that makes the
//!     next reaper do them again, harmlessly. Releases of commands and custom records, which
//!     may not be idempotent, are synced one by one.
//! J4. Only records whose reap is idempotent (trees, paths) may be left unreleased in a file
//!     whose owner is removing it: the last release of such a record is not written, and the
//!     removal is not synced, since a reap of a resource that is gone finds it gone.

use std::io::Write;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use rustix::fs::{FlockOperation, Mode, OFlags};

use crate::error::JournalError;
use crate::format;
use crate::identity::ProcessId;
use crate::record::{Header, Line};

/// An owner log's name in its store.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub struct OwnerKey(pub String);

/// A backend for owner logs.
pub trait Store: Send + Sync + 'static {
    /// Appends `line` durably to this process's log, making the log (with `header` as its
    /// first line) if it does not exist.
    ///
    /// # Errors
    ///
    /// The log could not be made or written.
    fn append(&self, header: &Header, line: &Line) -> Result<(), JournalError>;

    /// Removes this process's log: everything in it is released, or left only as records
    /// whose reap is idempotent (J4). Need not be durable.
    ///
    /// # Errors
    ///
    /// The log could not be removed.
    fn retire(&self) -> Result<(), JournalError>;

    /// Every owner log in the store.
    ///
    /// # Errors
    ///
    /// The store could not be read.
    fn owners(&self) -> Result<Vec<OwnerKey>, JournalError>;

    /// Reads a log without taking it, with whether its owner is alive.
    ///
    /// # Errors
    ///
    /// The log could not be read (or is a symlink).
    fn peek(&self, key: &OwnerKey) -> Result<Option<(bool, Vec<Line>)>, JournalError>;

    /// Takes a dead owner's log for reaping, exclusively. `None` if the owner is alive, another
    /// reaper holds it, or it is gone.
    ///
    /// # Errors
    ///
    /// The log could not be opened or read.
    fn claim(&self, key: &OwnerKey) -> Result<Option<Box<dyn Claim>>, JournalError>;

    /// Removes what owners that died while making their log left (a log never put in view,
    /// which holds no record yet); returns how many. Nothing by default.
    ///
    /// # Errors
    ///
    /// The store could not be read.
    fn sweep(&self) -> Result<usize, JournalError> {
        Ok(0)
    }
}

/// A dead owner's log, held exclusively by one reaper.
pub trait Claim: Send {
    /// The complete lines of the log.
    fn lines(&self) -> &[Line];

    /// Appends `line` (a release, a failure): durably before it returns if `sync`, else by the
    /// next synced append, [`sync`](Claim::sync) or removal.
    ///
    /// # Errors
    ///
    /// The write failed.
    fn append(&mut self, line: &Line, sync: bool) -> Result<(), JournalError>;

    /// Makes every line appended so far durable.
    ///
    /// # Errors
    ///
    /// The sync failed.
    fn sync(&mut self) -> Result<(), JournalError>;

    /// Removes the log (everything in it is released).
    ///
    /// # Errors
    ///
    /// The removal failed.
    fn remove(self: Box<Self>) -> Result<(), JournalError>;
}

/// One append-only file per owner in a directory.
#[derive(Debug)]
pub struct FileStore {
    dir: PathBuf,
    /// This process's own log, once made. Lock order: taken alone.
    own: std::sync::Mutex<Option<OwnFile>>,
}

#[derive(Debug)]
struct OwnFile {
    file: std::fs::File,
    path: PathBuf,
}

static GENERATION: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

fn io<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> JournalError + 'a {
    move |source| JournalError::Io { what, path: path.to_owned(), source }
}

fn open(path: &Path, flags: OFlags, mode: u32) -> Result<std::fs::File, JournalError> {
    match rustix::fs::open(path, flags | OFlags::NOFOLLOW | OFlags::CLOEXEC, Mode::from_raw_mode(mode)) {
        Ok(fd) => Ok(std::fs::File::from(fd)),
        Err(rustix::io::Errno::LOOP) => Err(JournalError::Symlink(path.to_owned())),
        Err(e) => Err(JournalError::Io { what: "opening", path: path.to_owned(), source: e.into() }),
    }
}

fn sync_dir(dir: &Path) -> Result<(), JournalError> {
    let d = open(dir, OFlags::RDONLY | OFlags::DIRECTORY, 0)?;
    d.sync_all().map_err(io("syncing", dir))
}

fn write_line(file: &mut std::fs::File, path: &Path, line: &Line) -> Result<(), JournalError> {
    file.write_all(&format::encode(line)).map_err(io("appending to", path))?;
    // J3.
    file.sync_data().map_err(io("syncing", path))
}

impl FileStore {
    /// A store in `dir`, made 0700 if it is not there; a symlink, a directory of another user or
    /// one writable by others is refused.
    ///
    /// # Errors
    ///
    /// [`JournalError::Symlink`], [`JournalError::Unsafe`], or the I/O error.
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// let store = closeout_journal::FileStore::open(dir.path().join("state"))?;
    /// # let _ = store;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn open(dir: impl Into<PathBuf>) -> Result<FileStore, JournalError> {
        let dir = dir.into();
        crate::dir::prepare(&dir)?;
        Ok(FileStore { dir, own: std::sync::Mutex::new(None) })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn own(&self) -> std::sync::MutexGuard<'_, Option<OwnFile>> {
        self.own.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Makes this process's log: a dot-name, locked, the header synced, then renamed into view
    /// (J1).
    fn create(&self, header: &Header, first: &Line) -> Result<OwnFile, JournalError> {
        let me = ProcessId::current();
        let n = GENERATION.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!("owner-{}.{}-{n}.journal", me.pid, me.start);
        let hidden = self.dir.join(format!(".{name}.new"));
        let path = self.dir.join(&name);
        let mut file = open(&hidden, OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY | OFlags::APPEND, 0o600)?;
        rustix::fs::flock(file.as_fd(), FlockOperation::NonBlockingLockExclusive)
            .map_err(|e| JournalError::Io { what: "locking", path: hidden.clone(), source: e.into() })?;
        // The header and the first line in one write and one sync. A crash before the rename
        // is durable leaves a dot-file whose first record was never acted on (this call had not
        // returned), which `sweep` removes.
        let mut both = format::encode(&Line::Owner(header.clone()));
        both.extend_from_slice(&format::encode(first));
        file.write_all(&both).map_err(io("writing", &hidden))?;
        file.sync_data().map_err(io("syncing", &hidden))?;
        std::fs::rename(&hidden, &path).map_err(io("renaming", &hidden))?;
        sync_dir(&self.dir)?;
        Ok(OwnFile { file, path })
    }

    fn path_of(&self, key: &OwnerKey) -> PathBuf {
        self.dir.join(&key.0)
    }
}

impl Store for FileStore {
    fn append(&self, header: &Header, line: &Line) -> Result<(), JournalError> {
        let mut own = self.own();
        match own.as_mut() {
            Some(f) => write_line(&mut f.file, &f.path, line),
            None => {
                *own = Some(self.create(header, line)?);
                Ok(())
            }
        }
    }

    fn retire(&self) -> Result<(), JournalError> {
        let mut own = self.own();
        if let Some(f) = own.take() {
            // J2: unlinked while locked; the lock goes with the descriptor, after. Not synced:
            // a file that comes back after a power loss holds only records whose resources are
            // gone, which a reap finds gone (J4).
            std::fs::remove_file(&f.path).map_err(io("removing", &f.path))?;
        }
        Ok(())
    }

    fn owners(&self) -> Result<Vec<OwnerKey>, JournalError> {
        let mut keys = Vec::new();
        for entry in std::fs::read_dir(&self.dir).map_err(io("reading", &self.dir))? {
            let entry = entry.map_err(io("reading", &self.dir))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with("owner-") && name.ends_with(".journal") {
                keys.push(OwnerKey(name));
            }
        }
        keys.sort();
        Ok(keys)
    }

    fn peek(&self, key: &OwnerKey) -> Result<Option<(bool, Vec<Line>)>, JournalError> {
        let path = self.path_of(key);
        let file = match open(&path, OFlags::RDONLY, 0) {
            Ok(f) => f,
            Err(JournalError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                return Ok(None);
            }
            Err(e) => return Err(e),
        };
        let alive = match rustix::fs::flock(file.as_fd(), FlockOperation::NonBlockingLockShared) {
            Ok(()) => {
                let _ = rustix::fs::flock(file.as_fd(), FlockOperation::Unlock);
                false
            }
            Err(_) => true,
        };
        let bytes = std::fs::read(&path).map_err(io("reading", &path))?;
        Ok(Some((alive, format::decode(&bytes).0)))
    }

    fn sweep(&self) -> Result<usize, JournalError> {
        let mut removed = 0;
        for entry in std::fs::read_dir(&self.dir).map_err(io("reading", &self.dir))? {
            let entry = entry.map_err(io("reading", &self.dir))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if !(name.starts_with(".owner-") && name.ends_with(".journal.new")) {
                continue;
            }
            let path = entry.path();
            // A symlink or a vanished file: not ours to touch.
            let Ok(file) = open(&path, OFlags::RDONLY, 0) else { continue };
            // Locked: its owner is making it right now.
            if rustix::fs::flock(file.as_fd(), FlockOperation::NonBlockingLockExclusive).is_ok()
                && std::fs::remove_file(&path).is_ok()
            {
                removed += 1;
            }
        }
        Ok(removed)
    }

    fn claim(&self, key: &OwnerKey) -> Result<Option<Box<dyn Claim>>, JournalError> {
        let path = self.path_of(key);
        let mut file = match open(&path, OFlags::RDWR | OFlags::APPEND, 0) {
            Ok(f) => f,
            Err(JournalError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                return Ok(None);
            }
            Err(e) => return Err(e),
        };
        // Alive, or another reaper has it.
        if rustix::fs::flock(file.as_fd(), FlockOperation::NonBlockingLockExclusive).is_err() {
            return Ok(None);
        }
        // Retired or reaped between our open and our lock.
        let meta = file.metadata().map_err(io("reading", &path))?;
        if std::os::unix::fs::MetadataExt::nlink(&meta) == 0 {
            return Ok(None);
        }
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut file, &mut bytes).map_err(io("reading", &path))?;
        let (lines, good) = format::decode(&bytes);
        if good < bytes.len() {
            // A torn tail: cut it, so what we append is not glued to it.
            file.set_len(good as u64).map_err(io("truncating", &path))?;
        }
        Ok(Some(Box::new(FileClaim { file, path, dir: self.dir.clone(), lines })))
    }
}

struct FileClaim {
    file: std::fs::File,
    path: PathBuf,
    dir: PathBuf,
    lines: Vec<Line>,
}

impl Claim for FileClaim {
    fn lines(&self) -> &[Line] {
        &self.lines
    }

    fn append(&mut self, line: &Line, sync: bool) -> Result<(), JournalError> {
        if sync {
            write_line(&mut self.file, &self.path, line)?;
        } else {
            self.file.write_all(&format::encode(line)).map_err(io("appending to", &self.path))?;
        }
        self.lines.push(line.clone());
        Ok(())
    }

    fn sync(&mut self) -> Result<(), JournalError> {
        self.file.sync_data().map_err(io("syncing", &self.path))
    }

    fn remove(self: Box<Self>) -> Result<(), JournalError> {
        std::fs::remove_file(&self.path).map_err(io("removing", &self.path))?;
        sync_dir(&self.dir)
    }
}
