//! Temp directories released by a [`Scope`] or a [`Registry`]: removed at release like every
//! other resource — on return, on error, on panic, and on SIGINT/SIGTERM when
//! [`closeout::hooks`] are installed (tempfile alone removes nothing on Ctrl-C: tempfile#452).
//! With a default journal set ([`closeout_journal::Journal::set_default`]), each one is
//! recorded before it is made, so a reap removes it after a SIGKILL too.

use std::path::PathBuf;

use std::os::unix::fs::DirBuilderExt;

use closeout::{Category, Registry, Resource, Scope};
use closeout_journal::{Entry, FileId, Journal, PathKind, ProcessId, Resource as Record};

use crate::error::FsError;

/// Creates a temp directory whose removal `scope` owns, named `name` in its report.
///
/// # Errors
///
/// [`FsError`] if the directory cannot be created, or, as an I/O error of kind `Other`, if the
/// scope was already released (the directory is then removed at once).
///
/// ```
/// let scope = closeout::Scope::new();
/// let path = closeout_fs::temp_dir(&scope, "work")?;
/// std::fs::write(path.join("f"), b"x")?;
/// assert!(scope.close().is_success());
/// assert!(!path.exists());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn temp_dir(scope: &Scope, name: &'static str) -> Result<PathBuf, FsError> {
    let dir = new_temp_dir()?;
    let path = dir.path().to_owned();
    match scope.defer_named(name, move || dir.close()) {
        Ok(_) => Ok(path),
        Err(rejected) => {
            let _ = (rejected.into_inner())();
            Err(FsError::io(
                "register temp dir",
                &path,
                std::io::Error::other("the scope is already released"),
            ))
        }
    }
}

/// Creates a temp directory registered in `registry` as `id` (category `File`). Its report
/// entry says what its removal took: "removed 41 file(s) and 2 subdirectories".
///
/// # Errors
///
/// [`FsError`] if the directory cannot be created or the registry refuses it (the directory is
/// then removed at once).
///
/// ```
/// let registry = closeout::Registry::new();
/// let path = closeout_fs::temp_dir_in(&registry, "scratch")?;
/// assert!(registry.shutdown_blocking().is_success());
/// assert!(!path.exists());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn temp_dir_in(registry: &Registry, id: impl Into<String>) -> Result<PathBuf, FsError> {
    let dir = new_temp_dir()?;
    let path = dir.path().to_owned();
    let detail = closeout::Detail::new();
    let note = detail.clone();
    let resource = Resource::new(id, move || {
        // Counted before the removal, so the report can say what went.
        let (files, dirs) = count_entries(dir.path());
        dir.close()?;
        note.set(format!(
            "removed {files} file(s) and {dirs} subdirector{}",
            if dirs == 1 { "y" } else { "ies" }
        ));
        Ok::<(), std::io::Error>(())
    })
    .category(Category::File)
    .detail(&detail);
    registry.register(resource).map_err(|e| {
        let message = e.error().to_string();
        let _ = e.into_resource().run_now();
        FsError::io("register temp dir", &path, std::io::Error::other(message))
    })?;
    Ok(path)
}

/// A temp dir: tempfile's, or (with a default journal) one recorded before it was made.
enum TempDir {
    Plain(tempfile::TempDir),
    Journaled { path: PathBuf, entry: Entry },
}

impl TempDir {
    fn path(&self) -> &std::path::Path {
        match self {
            TempDir::Plain(dir) => dir.path(),
            TempDir::Journaled { path, .. } => path,
        }
    }

    /// Removes it (and releases its record once it is gone).
    fn close(self) -> std::io::Result<()> {
        match self {
            TempDir::Plain(dir) => dir.close(),
            TempDir::Journaled { path, entry } => {
                match std::fs::remove_dir_all(&path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    // The record stays: a reap will try again.
                    Err(e) => return Err(e),
                }
                entry.release().map_err(std::io::Error::other)
            }
        }
    }
}

/// Files (anything not a directory, symlinks included, never followed) and subdirectories
/// under `dir`; what cannot be read is not counted.
fn count_entries(dir: &std::path::Path) -> (u64, u64) {
    let (mut files, mut dirs) = (0, 0);
    let mut pending = vec![dir.to_owned()];
    while let Some(next) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&next) else { continue };
        for entry in entries.flatten() {
            match entry.file_type() {
                Ok(t) if t.is_dir() => {
                    dirs += 1;
                    pending.push(entry.path());
                }
                Ok(_) => files += 1,
                Err(_) => {}
            }
        }
    }
    (files, dirs)
}

static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

fn new_temp_dir() -> Result<TempDir, FsError> {
    let base = std::env::temp_dir();
    let Some(journal) = Journal::current() else {
        return tempfile::tempdir().map(TempDir::Plain).map_err(|e| FsError::io("create temp dir", &base, e));
    };
    // The name carries this process's pid and start time, so a reap that finds only the intent
    // (the owner died while making it) can tell the directory is ours.
    let me = ProcessId::current();
    loop {
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = base.join(format!("closeout-{}.{}-{n}", me.pid, me.start));
        let intent = Record::Path { path: path.clone(), what: PathKind::Dir, id: None };
        let entry = journal
            .record(intent)
            .map_err(|e| FsError::io("record temp dir", &path, std::io::Error::other(e)))?;
        match std::fs::DirBuilder::new().mode(0o700).create(&path) {
            Ok(()) => {
                let id = FileId::of(&path).map_err(|e| FsError::io("create temp dir", &path, e))?;
                let done = Record::Path { path: path.clone(), what: PathKind::Dir, id: Some(id) };
                entry
                    .complete(done)
                    .map_err(|e| FsError::io("record temp dir", &path, std::io::Error::other(e)))?;
                return Ok(TempDir::Journaled { path, entry });
            }
            // Someone else's: not ours to record; the next number.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let _ = entry.release();
            }
            Err(e) => {
                let _ = entry.release();
                return Err(FsError::io("create temp dir", &path, e));
            }
        }
    }
}
