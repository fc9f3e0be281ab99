//! [`FsError`]: every failure names the path and what was being done.

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// What went wrong, with the path it concerns.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FsError {
    /// A path that would leave its confined root (or is not a usable name).
    #[error("path `{}` rejected: {reason}", path.display())]
    Escape {
        /// The path as given.
        path: PathBuf,
        /// Why.
        reason: &'static str,
    },
    /// An I/O error.
    #[error("{op} `{}`: {source}", path.display())]
    Io {
        /// What was being done.
        op: &'static str,
        /// On what.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// A lock was not acquired within its timeout.
    #[error("lock on `{}` not acquired within {waited:?}{}", path.display(), holder.map(|p| format!(" (held by pid {p})")).unwrap_or_default())]
    LockTimeout {
        /// The lock file.
        path: PathBuf,
        /// How long it waited.
        waited: Duration,
        /// The pid recorded in a lock file, when there is one.
        holder: Option<u32>,
    },
    /// [`Committed::rollback`](crate::Committed::rollback) without a backup: nothing was changed,
    /// the new version is kept.
    #[error("cannot roll back `{}`: no backup was kept (use AtomicFile::with_backup); the new version stays", path.display())]
    NoBackup {
        /// The target.
        path: PathBuf,
    },
    /// A transaction step failed; everything done before it was undone.
    #[error("transaction step {index} ({step}) failed: {source}; all earlier steps were undone")]
    Step {
        /// The step's position, from 0.
        index: usize,
        /// The step, described.
        step: String,
        /// Why it failed.
        #[source]
        source: Box<FsError>,
    },
    /// A transaction step failed and undoing it failed too: the tree may be half-changed.
    #[error("transaction step {index} ({step}) failed: {source}; undoing failed as well: {undo}")]
    UndoFailed {
        /// The step's position.
        index: usize,
        /// The step, described.
        step: String,
        /// Why it failed.
        #[source]
        source: Box<FsError>,
        /// What could not be undone.
        undo: String,
    },
}

impl FsError {
    pub(crate) fn io(op: &'static str, path: &Path, source: io::Error) -> FsError {
        FsError::Io { op, path: path.to_owned(), source }
    }
}
