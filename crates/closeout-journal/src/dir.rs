//! The state directory: where owner files live. Found, made 0700, and checked, never trusted:
//! a symlink (at the directory or at a file in it) is refused, and another user's directory is
//! refused, so nobody can point the journal somewhere else.

use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};

use crate::error::JournalError;

/// The environment variable that names the state directory, first of all choices.
pub const STATE_DIR_ENV: &str = "CLOSEOUT_STATE_DIR";

/// The state directory: `$CLOSEOUT_STATE_DIR`, else `$XDG_STATE_HOME/closeout`, else
/// `~/.local/state/closeout`, else (root without a home) `/var/lib/closeout`. Not a tmpfs
/// by default, so the records survive a reboot (whose processes are gone, but whose files are
/// not).
///
/// ```
/// let dir = closeout_journal::default_state_dir();
/// assert!(dir.is_absolute() || dir.starts_with("."));
/// ```
pub fn default_state_dir() -> PathBuf {
    let var = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(dir) = var(STATE_DIR_ENV) {
        return dir;
    }
    if let Some(state) = var("XDG_STATE_HOME") {
        return state.join("closeout");
    }
    match var("HOME") {
        Some(home) if home != Path::new("/") => home.join(".local/state/closeout"),
        _ if rustix::process::geteuid().is_root() => PathBuf::from("/var/lib/closeout"),
        _ => PathBuf::from(".closeout-state"),
    }
}

/// Makes `dir` (0700, parents as needed) if it is not there, then checks it: a real directory
/// (not a symlink), owned by us, not writable by group or others.
pub(crate) fn prepare(dir: &Path) -> Result<(), JournalError> {
    if std::fs::symlink_metadata(dir).is_err() {
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(|source| {
            JournalError::Io { what: "creating the state directory", path: dir.to_owned(), source }
        })?;
    }
    let meta = std::fs::symlink_metadata(dir).map_err(|source| JournalError::Io {
        what: "reading the state directory",
        path: dir.to_owned(),
        source,
    })?;
    if meta.file_type().is_symlink() {
        return Err(JournalError::Symlink(dir.to_owned()));
    }
    if !meta.is_dir() {
        return Err(JournalError::Unsafe { path: dir.to_owned(), why: "not a directory".into() });
    }
    if meta.uid() != rustix::process::geteuid().as_raw() {
        return Err(JournalError::Unsafe {
            path: dir.to_owned(),
            why: format!("owned by uid {}, not us", meta.uid()),
        });
    }
    if meta.mode() & 0o022 != 0 {
        return Err(JournalError::Unsafe {
            path: dir.to_owned(),
            why: format!("mode {:o}: writable by others", meta.mode() & 0o777),
        });
    }
    Ok(())
}
