//! Temp directories released by a [`Scope`] or a [`Registry`]: removed at release like every
//! other resource — on return, on error, on panic, and on SIGINT/SIGTERM when
//! [`closeout::hooks`] are installed (tempfile alone removes nothing on Ctrl-C: tempfile#452).

use std::path::PathBuf;

use closeout::{Category, Registry, Resource, Scope};

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

/// Creates a temp directory registered in `registry` as `id` (category `File`).
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
    let resource = Resource::new(id, move || dir.close()).category(Category::File);
    registry.register(resource).map_err(|e| {
        let message = e.error().to_string();
        let _ = e.into_resource().run_now();
        FsError::io("register temp dir", &path, std::io::Error::other(message))
    })?;
    Ok(path)
}

fn new_temp_dir() -> Result<tempfile::TempDir, FsError> {
    tempfile::tempdir().map_err(|e| FsError::io("create temp dir", &std::env::temp_dir(), e))
}
