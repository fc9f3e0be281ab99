//! [`Transaction`]: a batch of writes, copies, moves and deletes, applied all or nothing, even
//! across a crash.

use std::ffi::{OsStr, OsString};
use std::io::Write;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, Mode, OFlags};

use crate::dir::Dir;
use crate::error::FsError;
use crate::names::{self, Kind};

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

/// One effect, as the intent record holds it. Paths are relative to the transaction's [`Dir`].
#[derive(Debug, Clone, PartialEq, Eq)]
enum Record {
    /// `rel` is about to be renamed aside to `hidden` (a name in the same directory).
    Aside { rel: PathBuf, hidden: OsString },
    /// `rel` is about to be created.
    Create { rel: PathBuf },
    /// `from` is about to be moved to `to`.
    Move { from: PathBuf, to: PathBuf },
    /// Every step was applied: what was set aside may go.
    Commit,
    /// The undo of record `n` (counting from 0) is done.
    Undone(usize),
}

/// A batch of file operations inside a [`Dir`], applied all or nothing.
///
/// Every effect is written to an intent record, and the record made durable (`fdatasync`),
/// *before* the effect happens: a replaced or deleted file is first renamed aside (not copied,
/// not removed), a new file is noted for removal, a move is noted for moving back. The record is
/// the undo log:
///
/// - on the first failure it is replayed backwards — including the failing step's partial
///   effects — and the error names the step;
/// - on success a commit mark is written, the set-aside originals (files or whole directories)
///   are removed, and the record goes;
/// - after a crash (SIGKILL, power loss), [`Transaction::recover`] finds the records of dead
///   owners and finishes their work: a committed one's set-aside files are removed, any other
///   is rolled back. Each undo is written down as done once it is, and every undo is harmless
///   to repeat, so a crash during recovery (or during an in-process rollback) is recovered too.
///
/// Renames stay within one directory, so nothing crosses filesystems. A replaced file keeps its
/// permissions; a new one gets 0666 less the umask. Names up to 255 bytes work: set-aside names
/// are shortened to fit (see `names`).
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

    /// Writes `data` to `path` (replacing it, and keeping its permissions).
    pub fn write(mut self, path: impl AsRef<Path>, data: impl Into<Vec<u8>>) -> Self {
        self.steps.push(Step::Write(path.as_ref().to_owned(), data.into()));
        self
    }

    /// Copies `from` to `to` (replacing it, and keeping its permissions).
    pub fn copy(mut self, from: impl AsRef<Path>, to: impl AsRef<Path>) -> Self {
        self.steps.push(Step::Copy(from.as_ref().to_owned(), to.as_ref().to_owned()));
        self
    }

    /// Moves `from` to `to` (replacing it).
    pub fn rename(mut self, from: impl AsRef<Path>, to: impl AsRef<Path>) -> Self {
        self.steps.push(Step::Move(from.as_ref().to_owned(), to.as_ref().to_owned()));
        self
    }

    /// Deletes `path`: a file, or a directory with everything in it.
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
    /// [`FsError::UndoFailed`] if undoing failed too (the intent record is then kept, so
    /// [`Transaction::recover`] can finish the undo later). An [`FsError::Io`] before the first
    /// step if the intent record cannot be created.
    pub fn apply(self) -> Result<(), FsError> {
        // With a default journal, the transaction is recorded before its intent file exists, so
        // a reap after a SIGKILL finishes it (`reap_transactions`) without anyone knowing the
        // directory.
        let entry =
            match closeout_journal::Journal::current() {
                Some(journal) => Some(journal.record(journal_record(self.dir.path())).map_err(|e| {
                    FsError::io("record transaction", self.dir.path(), std::io::Error::other(e))
                })?),
                None => None,
            };
        let release = |entry: Option<closeout_journal::Entry>| {
            if let Some(entry) = entry {
                let _ = entry.release();
            }
        };
        let mut log = match Intent::create(self.dir) {
            Ok(log) => log,
            Err(e) => {
                release(entry);
                return Err(e);
            }
        };
        for (index, step) in self.steps.iter().enumerate() {
            if let Err(source) = self.run(step, &mut log) {
                let step = step.describe();
                return match undo(self.dir, &mut log) {
                    Ok(()) => {
                        log.remove();
                        release(entry);
                        Err(FsError::Step { index, step, source: Box::new(source) })
                    }
                    // The intent record stays, and so does the journal's: a reap finishes it.
                    Err(undo) => Err(FsError::UndoFailed { index, step, source: Box::new(source), undo }),
                };
            }
        }
        log.append(Record::Commit)?;
        finish_commit(self.dir, &log.records);
        log.remove();
        release(entry);
        Ok(())
    }

    fn run(&self, step: &Step, log: &mut Intent) -> Result<(), FsError> {
        match step {
            Step::Write(path, data) => {
                let mode = self.set_aside(path, log)?.flatten();
                self.create(path, data, mode, log)
            }
            Step::Copy(from, to) => {
                let data = self.dir.read(from)?;
                let mode = self.set_aside(to, log)?.flatten();
                self.create(to, &data, mode, log)
            }
            Step::Move(from, to) => {
                self.set_aside(to, log)?;
                let (from_dir, from_name) = self.dir.parent_of(from)?;
                let (to_dir, to_name) = self.dir.parent_of(to)?;
                log.append(Record::Move { from: from.clone(), to: to.clone() })?;
                rustix::fs::renameat(&from_dir, from_name.as_os_str(), &to_dir, to_name.as_os_str())
                    .map_err(|e| FsError::io("move", &self.dir.path().join(from), e.into()))
            }
            Step::Delete(path) => match self.set_aside(path, log)? {
                Some(_) => Ok(()),
                None => Err(FsError::io(
                    "delete",
                    &self.dir.path().join(path),
                    std::io::ErrorKind::NotFound.into(),
                )),
            },
        }
    }

    /// Renames an existing `path` aside, after recording it. `None` if it did not exist;
    /// otherwise the permissions a replacement keeps (`None` inside for a dangling symlink).
    fn set_aside(&self, path: &Path, log: &mut Intent) -> Result<Option<Option<Mode>>, FsError> {
        let (dir, name) = self.dir.parent_of(path)?;
        let full = self.dir.path().join(path);
        match rustix::fs::statat(&dir, name.as_os_str(), AtFlags::SYMLINK_NOFOLLOW) {
            Ok(_) => {}
            Err(rustix::io::Errno::NOENT) => return Ok(None),
            Err(e) => return Err(FsError::io("set aside", &full, e.into())),
        }
        // The permissions a replacement keeps: through a symlink, those of the file it points to
        // (never the link's own 0777); a dangling link gives the default.
        let mode = rustix::fs::statat(&dir, name.as_os_str(), AtFlags::empty())
            .ok()
            .map(|st| Mode::from_raw_mode(st.st_mode) & Mode::from_raw_mode(0o7777));
        let hidden = names::make(&name, Kind::Aside);
        log.append(Record::Aside { rel: path.to_owned(), hidden: hidden.clone() })?;
        match rustix::fs::renameat(&dir, name.as_os_str(), &dir, hidden.as_os_str()) {
            Ok(()) => Ok(Some(mode)),
            Err(rustix::io::Errno::NOENT) => Ok(None),
            Err(e) => Err(FsError::io("set aside", &full, e.into())),
        }
    }

    /// Creates `path` (which does not exist now) with `data`, after recording it: with the
    /// permissions of the file it replaces, or 0666 less the umask.
    fn create(&self, path: &Path, data: &[u8], mode: Option<Mode>, log: &mut Intent) -> Result<(), FsError> {
        let (dir, name) = self.dir.parent_of(path)?;
        let full = self.dir.path().join(path);
        log.append(Record::Create { rel: path.to_owned() })?;
        let fd = rustix::fs::openat(
            &dir,
            name.as_os_str(),
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::CLOEXEC,
            mode.unwrap_or(Mode::from_raw_mode(0o666)),
        )
        .map_err(|e| FsError::io("create", &full, e.into()))?;
        if let Some(mode) = mode {
            // Exactly the replaced file's permissions, whatever the umask.
            rustix::fs::fchmod(&fd, mode).map_err(|e| FsError::io("set permissions", &full, e.into()))?;
        }
        let mut file = std::fs::File::from(fd);
        file.write_all(data).and_then(|()| file.sync_all()).map_err(|e| FsError::io("write", &full, e))
    }

    /// Finishes the transactions of owners that died mid-way, in `dir` (the directory they
    /// were applied in): a committed one's set-aside originals are removed, any other is rolled
    /// back to how the tree was before it. Records of live owners are left alone. Returns the
    /// intent records it finished.
    ///
    /// # Errors
    ///
    /// [`FsError`] if the directory cannot be read or a record cannot be undone; the record is
    /// then kept for a later call.
    ///
    /// ```
    /// use closeout_fs::{Dir, Transaction};
    /// let tmp = tempfile::tempdir()?;
    /// let dir = Dir::confined(tmp.path())?;
    /// assert!(Transaction::recover(&dir)?.is_empty()); // nobody died here
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn recover(dir: &Dir) -> Result<Vec<PathBuf>, FsError> {
        let entries =
            std::fs::read_dir(dir.path()).map_err(|e| FsError::io("read directory", dir.path(), e))?;
        let mut done = Vec::new();
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some((Kind::Intent, owner)) = names::parse(&name) else { continue };
            if owner.is_alive() {
                continue;
            }
            let mut log = Intent::open(dir, name)?;
            if log.records.contains(&Record::Commit) {
                finish_commit(dir, &log.records);
            } else {
                undo(dir, &mut log).map_err(|undo| {
                    FsError::io("recover transaction", &log.path, std::io::Error::other(undo))
                })?;
            }
            done.push(log.path.clone());
            log.remove();
        }
        Ok(done)
    }
}

/// The kind of the journal records transactions make ([`reap_transactions`] reaps them).
pub const TRANSACTION_KIND: &str = "closeout-fs/transaction";

fn journal_record(dir: &Path) -> closeout_journal::Resource {
    closeout_journal::Resource::Custom {
        kind: TRANSACTION_KIND.to_owned(),
        data: serde_json::json!({ "dir": dir.to_string_lossy() }),
    }
}

/// The journal's handler for [`TRANSACTION_KIND`] records: [`Transaction::recover`] in the
/// recorded directory (dead owners' transactions only, so it is safe to run twice).
///
/// ```
/// use closeout_journal::ReapOptions;
/// let opts = ReapOptions::new().handler(closeout_fs::TRANSACTION_KIND, closeout_fs::reap_transactions);
/// # let _ = opts;
/// ```
///
/// # Errors
///
/// The record names no directory, or the recovery failed (the record is then kept).
pub fn reap_transactions(data: &serde_json::Value) -> Result<String, String> {
    let dir = data.get("dir").and_then(|d| d.as_str()).ok_or("the record names no directory")?;
    let dir = match Dir::open(dir) {
        Ok(dir) => dir,
        Err(FsError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            return Ok(format!("{dir} is gone: nothing to finish"));
        }
        Err(e) => return Err(e.to_string()),
    };
    let done = Transaction::recover(&dir).map_err(|e| e.to_string())?;
    Ok(format!("{} transaction(s) finished in {}", done.len(), dir.path().display()))
}

/// The intent record of one transaction: an append-only file in the transaction's directory.
struct Intent {
    root: OwnedFd,
    file: std::fs::File,
    name: OsString,
    path: PathBuf,
    records: Vec<Record>,
}

impl Intent {
    /// A new record, durable (the file and its directory entry) before any effect.
    fn create(dir: &Dir) -> Result<Intent, FsError> {
        let name = names::make(OsStr::new("transaction"), Kind::Intent);
        let path = dir.path().join(&name);
        let root = open_root(dir)?;
        let fd = rustix::fs::openat(
            &root,
            name.as_os_str(),
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )
        .map_err(|e| FsError::io("create intent record", &path, e.into()))?;
        rustix::fs::fsync(&root).map_err(|e| FsError::io("fsync directory", dir.path(), e.into()))?;
        Ok(Intent { root, file: std::fs::File::from(fd), name, path, records: Vec::new() })
    }

    /// An existing record, read back; a torn last line (the crash came mid-append, before its
    /// effect) is ignored.
    fn open(dir: &Dir, name: OsString) -> Result<Intent, FsError> {
        let path = dir.path().join(&name);
        let root = open_root(dir)?;
        let bytes = std::fs::read(&path).map_err(|e| FsError::io("read intent record", &path, e))?;
        let mut records = Vec::new();
        let complete = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        for line in bytes[..complete].split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            records.push(decode(line).ok_or_else(|| {
                FsError::io("read intent record", &path, std::io::ErrorKind::InvalidData.into())
            })?);
        }
        let file = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .map_err(|e| FsError::io("open intent record", &path, e))?;
        // Cut a torn tail, so appended records start on a line of their own.
        file.set_len(complete as u64).map_err(|e| FsError::io("open intent record", &path, e))?;
        Ok(Intent { root, file, name, path, records })
    }

    /// Appends `record` and makes it durable before the caller acts on it.
    fn append(&mut self, record: Record) -> Result<(), FsError> {
        let mut line = encode(&record);
        line.push(b'\n');
        self.file
            .write_all(&line)
            .and_then(|()| self.file.sync_data())
            .map_err(|e| FsError::io("write intent record", &self.path, e))?;
        self.records.push(record);
        Ok(())
    }

    /// The transaction is over: the record goes.
    fn remove(self) {
        let _ = rustix::fs::unlinkat(&self.root, self.name.as_os_str(), AtFlags::empty());
        let _ = rustix::fs::fsync(&self.root);
    }
}

fn open_root(dir: &Dir) -> Result<OwnedFd, FsError> {
    rustix::fs::open(dir.path(), OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
        .map_err(|e| FsError::io("open directory", dir.path(), e.into()))
}

/// Undoes every recorded effect not yet undone, newest first, writing each down as done. Every
/// undo is harmless to repeat: it acts only if its effect is still there.
fn undo(dir: &Dir, log: &mut Intent) -> Result<(), String> {
    let done: Vec<usize> =
        log.records.iter().filter_map(|r| if let Record::Undone(n) = r { Some(*n) } else { None }).collect();
    let mut failed = Vec::new();
    for n in (0..log.records.len()).rev() {
        if done.contains(&n) {
            continue;
        }
        let result = match log.records[n].clone() {
            Record::Create { rel } => remove_if_there(dir, &rel),
            Record::Aside { rel, hidden } => restore(dir, &rel, &hidden),
            Record::Move { from, to } => move_back(dir, &from, &to),
            Record::Commit | Record::Undone(_) => continue,
        };
        match result {
            Ok(()) => {
                if let Err(e) = log.append(Record::Undone(n)) {
                    failed.push(e.to_string());
                    break;
                }
            }
            Err(e) => failed.push(e),
        }
    }
    if failed.is_empty() { Ok(()) } else { Err(failed.join("; ")) }
}

/// A created file, removed if it is there (a crash may have come before it was).
fn remove_if_there(dir: &Dir, rel: &Path) -> Result<(), String> {
    let (parent, name) = dir.parent_of(rel).map_err(|e| e.to_string())?;
    match rustix::fs::unlinkat(&parent, name.as_os_str(), AtFlags::empty()) {
        Ok(()) | Err(rustix::io::Errno::NOENT) => Ok(()),
        Err(e) => Err(format!("remove `{}`: {e}", rel.display())),
    }
}

/// A set-aside original, put back if it is aside (the rename may not have happened).
fn restore(dir: &Dir, rel: &Path, hidden: &OsStr) -> Result<(), String> {
    let (parent, name) = dir.parent_of(rel).map_err(|e| e.to_string())?;
    match rustix::fs::renameat(&parent, hidden, &parent, name.as_os_str()) {
        Ok(()) | Err(rustix::io::Errno::NOENT) => Ok(()),
        Err(e) => Err(format!("rename `{}` back to `{}`: {e}", hidden.to_string_lossy(), rel.display())),
    }
}

/// A moved file, moved back if it is at its destination and not at its origin.
fn move_back(dir: &Dir, from: &Path, to: &Path) -> Result<(), String> {
    let (from_dir, from_name) = dir.parent_of(from).map_err(|e| e.to_string())?;
    let (to_dir, to_name) = dir.parent_of(to).map_err(|e| e.to_string())?;
    if rustix::fs::statat(&from_dir, from_name.as_os_str(), AtFlags::SYMLINK_NOFOLLOW).is_ok() {
        return Ok(()); // never moved
    }
    match rustix::fs::renameat(&to_dir, to_name.as_os_str(), &from_dir, from_name.as_os_str()) {
        Ok(()) | Err(rustix::io::Errno::NOENT) => Ok(()),
        Err(e) => Err(format!("move `{}` back to `{}`: {e}", to.display(), from.display())),
    }
}

/// After the commit mark: the set-aside originals go, files and whole directories.
fn finish_commit(dir: &Dir, records: &[Record]) {
    for record in records {
        if let Record::Aside { rel, hidden } = record {
            let Ok((parent, _)) = dir.parent_of(rel) else { continue };
            if let Err(rustix::io::Errno::ISDIR | rustix::io::Errno::PERM) =
                rustix::fs::unlinkat(&parent, hidden.as_os_str(), AtFlags::empty())
            {
                // A deleted directory, with everything in it (std's removal does not follow
                // symlinks inside it).
                let at = dir.path().join(rel.parent().unwrap_or(Path::new(""))).join(hidden);
                let _ = std::fs::remove_dir_all(at);
            }
        }
    }
}

/// A record as one line: a tag and hex-encoded paths (any bytes, newlines included, survive).
fn encode(record: &Record) -> Vec<u8> {
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    let line = match record {
        Record::Aside { rel, hidden } => {
            format!("A {} {}", hex(rel.as_os_str().as_bytes()), hex(hidden.as_bytes()))
        }
        Record::Create { rel } => format!("C {}", hex(rel.as_os_str().as_bytes())),
        Record::Move { from, to } => {
            format!("M {} {}", hex(from.as_os_str().as_bytes()), hex(to.as_os_str().as_bytes()))
        }
        Record::Commit => "K".to_owned(),
        Record::Undone(n) => format!("U {n}"),
    };
    line.into_bytes()
}

fn decode(line: &[u8]) -> Option<Record> {
    let line = std::str::from_utf8(line).ok()?;
    let mut parts = line.split(' ');
    let unhex = |s: &str| -> Option<OsString> {
        if !s.len().is_multiple_of(2) {
            return None;
        }
        let bytes: Option<Vec<u8>> =
            (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok()).collect();
        Some(OsString::from_vec(bytes?))
    };
    let record = match parts.next()? {
        "A" => Record::Aside { rel: unhex(parts.next()?)?.into(), hidden: unhex(parts.next()?)? },
        "C" => Record::Create { rel: unhex(parts.next()?)?.into() },
        "M" => Record::Move { from: unhex(parts.next()?)?.into(), to: unhex(parts.next()?)?.into() },
        "K" => Record::Commit,
        "U" => Record::Undone(parts.next()?.parse().ok()?),
        _ => return None,
    };
    parts.next().is_none().then_some(record)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_survive_encoding_whatever_bytes_their_paths_hold() {
        let odd = OsString::from_vec(b"a b\nc\xff".to_vec());
        for record in [
            Record::Aside { rel: PathBuf::from(&odd), hidden: odd.clone() },
            Record::Create { rel: "dir/x".into() },
            Record::Move { from: "a".into(), to: PathBuf::from(&odd) },
            Record::Commit,
            Record::Undone(42),
        ] {
            let line = encode(&record);
            assert!(!line.contains(&b'\n'));
            assert_eq!(decode(&line), Some(record));
        }
        assert_eq!(decode(b"A 0"), None);
        assert_eq!(decode(b"X"), None);
    }
}
