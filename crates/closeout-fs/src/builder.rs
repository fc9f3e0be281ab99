//! [`DirBuilder`]: creates directories and, on rollback, removes exactly those it created.
//!
//! `create_dir_all` followed by `remove_dir_all` on failure is the usual cleanup, and it is
//! wrong twice: it removes directories that existed before, and everything inside them. The
//! builder records each directory it actually created (not the ones that were there already)
//! and rolls back by removing only those, deepest first, and only while they are empty — a
//! file someone else put there is never deleted; such a directory is reported instead.

use std::path::{Component, Path, PathBuf};

use rustix::fs::{AtFlags, Mode};

use crate::dir::Dir;
use crate::error::FsError;

/// Creates directories inside a [`Dir`]; rolls them back unless committed. Dropping it without
/// [`commit`](DirBuilder::commit) rolls back.
///
/// ```
/// use closeout_fs::{Dir, DirBuilder};
/// let tmp = tempfile::tempdir()?;
/// std::fs::create_dir(tmp.path().join("existing"))?;
/// let dir = Dir::confined(tmp.path())?;
/// let mut builder = DirBuilder::new(&dir);
/// builder.create_all("existing/new/deeper")?;
/// assert_eq!(builder.created().len(), 2);
/// builder.rollback()?;
/// assert!(tmp.path().join("existing").is_dir()); // was there before: kept
/// assert!(!tmp.path().join("existing/new").exists());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct DirBuilder<'d> {
    dir: &'d Dir,
    created: Vec<PathBuf>,
    done: bool,
}

impl<'d> DirBuilder<'d> {
    /// A builder inside `dir`.
    pub fn new(dir: &'d Dir) -> DirBuilder<'d> {
        DirBuilder { dir, created: Vec::new(), done: false }
    }

    /// Creates `rel` and any missing parents (mode 0o755, less the umask).
    ///
    /// # Errors
    ///
    /// [`FsError`] for an escaping path or when a component exists and is not a directory;
    /// what was created before stays recorded for rollback.
    pub fn create_all(&mut self, rel: impl AsRef<Path>) -> Result<(), FsError> {
        let rel = rel.as_ref();
        self.dir.check(rel)?;
        let mut prefix = PathBuf::new();
        for c in rel.components() {
            match c {
                Component::Normal(name) => prefix.push(name),
                Component::CurDir => continue,
                _ => {
                    return Err(FsError::Escape {
                        path: rel.to_owned(),
                        reason: "only plain names in a directory path",
                    });
                }
            }
            let (parent, name) = self.dir.parent_of(&prefix)?;
            match rustix::fs::mkdirat(&parent, name.as_os_str(), Mode::from_raw_mode(0o755)) {
                Ok(()) => self.created.push(prefix.clone()),
                Err(rustix::io::Errno::EXIST) => {
                    let st = rustix::fs::statat(&parent, name.as_os_str(), AtFlags::SYMLINK_NOFOLLOW)
                        .map_err(|e| FsError::io("stat", &self.dir.path().join(&prefix), e.into()))?;
                    if rustix::fs::FileType::from_raw_mode(st.st_mode) != rustix::fs::FileType::Directory {
                        return Err(FsError::io(
                            "create directory",
                            &self.dir.path().join(&prefix),
                            std::io::ErrorKind::AlreadyExists.into(),
                        ));
                    }
                }
                Err(e) => {
                    return Err(FsError::io("create directory", &self.dir.path().join(&prefix), e.into()));
                }
            }
        }
        Ok(())
    }

    /// The directories this builder created, in creation order.
    pub fn created(&self) -> &[PathBuf] {
        &self.created
    }

    /// Keeps what was created.
    pub fn commit(mut self) {
        self.done = true;
    }

    /// Removes the directories this builder created, deepest first.
    ///
    /// # Errors
    ///
    /// [`FsError`] for a created directory that is no longer empty (left in place, with the
    /// rest still removed).
    pub fn rollback(mut self) -> Result<(), FsError> {
        self.done = true;
        self.remove_created()
    }

    fn remove_created(&mut self) -> Result<(), FsError> {
        let mut first_error = None;
        for rel in std::mem::take(&mut self.created).into_iter().rev() {
            let result = self.dir.parent_of(&rel).and_then(|(parent, name)| {
                rustix::fs::unlinkat(&parent, name.as_os_str(), AtFlags::REMOVEDIR).map_err(|e| {
                    FsError::io("remove created directory", &self.dir.path().join(&rel), e.into())
                })
            });
            if let Err(e) = result {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

impl Drop for DirBuilder<'_> {
    fn drop(&mut self) {
        if !self.done {
            let _ = self.remove_created();
        }
    }
}
