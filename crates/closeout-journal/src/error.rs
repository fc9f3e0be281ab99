//! The journal's errors.

use std::path::PathBuf;

/// What went wrong with the journal.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JournalError {
    /// A file operation failed.
    #[error("{what} {}: {source}", path.display())]
    Io {
        /// What was being done.
        what: &'static str,
        /// On which path.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The state directory or an owner file is a symlink: refused, since it could point the
    /// journal (and the reap) anywhere.
    #[error("{} is a symlink; the journal refuses symlinks", .0.display())]
    Symlink(PathBuf),
    /// The state directory is not safe to use.
    #[error("{} cannot hold a journal: {why}", path.display())]
    Unsafe {
        /// The directory.
        path: PathBuf,
        /// Why.
        why: String,
    },
    /// A record was refused: its resource is handed back.
    #[error("the record was not written ({why}); nothing may be created for it")]
    Refused {
        /// Why.
        why: String,
        /// The resource that was not recorded.
        resource: Box<crate::Resource>,
    },
    /// A bad argument (a zero or overflowing timeout, …), refused at the call.
    #[error("invalid argument: {0}")]
    Invalid(String),
}
