//! [`Dir`]: a directory every helper works in, optionally confined so no path escapes it.

use std::ffi::OsString;
use std::os::fd::OwnedFd;
use std::path::{Component, Path, PathBuf};

use rustix::fs::{Mode, OFlags, ResolveFlags};

use crate::error::FsError;

/// A directory that the helpers work in.
///
/// Every helper of this crate works on a directory descriptor and a path relative to it
/// (`openat`, `renameat`, …), never on a path string re-resolved later: what was checked is
/// what is used. A confined `Dir` resolves with Linux's `openat2(RESOLVE_BENEATH |
/// RESOLVE_NO_MAGICLINKS)`, so the kernel itself rejects `..` that climbs out, absolute paths
/// and symlinks (or chains of them) that lead outside; the check is lexical first, for a clear
/// error.
///
/// ```
/// use closeout_fs::Dir;
/// let tmp = tempfile::tempdir()?;
/// let root = Dir::confined(tmp.path())?;
/// assert!(root.write("notes.txt", b"hello").is_ok());
/// assert!(root.write("../outside.txt", b"no").is_err()); // escapes the root
/// assert!(root.write("/etc/passwd", b"no").is_err()); // absolute
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct Dir {
    fd: OwnedFd,
    path: PathBuf,
    confined: bool,
}

impl Dir {
    /// `path`, unconfined: relative paths are resolved as the OS does (`..` and symlinks may
    /// lead anywhere), absolute paths are allowed.
    ///
    /// # Errors
    ///
    /// [`FsError::Io`] if it cannot be opened as a directory.
    pub fn open(path: impl AsRef<Path>) -> Result<Dir, FsError> {
        Dir::new(path.as_ref(), false)
    }

    /// `path` as a root that nothing may escape.
    ///
    /// # Errors
    ///
    /// [`FsError::Io`] if it cannot be opened as a directory.
    pub fn confined(path: impl AsRef<Path>) -> Result<Dir, FsError> {
        Dir::new(path.as_ref(), true)
    }

    fn new(path: &Path, confined: bool) -> Result<Dir, FsError> {
        let fd = rustix::fs::open(path, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
            .map_err(|e| FsError::io("open directory", path, e.into()))?;
        Ok(Dir { fd, path: path.to_owned(), confined })
    }

    /// Where it is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether paths are confined to it.
    pub fn is_confined(&self) -> bool {
        self.confined
    }

    /// Rejects what can be told from the path alone: for a confined root, absolute paths and
    /// `..` that climbs above the root; for any, an empty path or one ending in `..`/`.`.
    pub(crate) fn check(&self, rel: &Path) -> Result<(), FsError> {
        let escape = |reason: &'static str| Err(FsError::Escape { path: rel.to_owned(), reason });
        if rel.as_os_str().is_empty() {
            return escape("empty path");
        }
        if !matches!(rel.components().next_back(), Some(Component::Normal(_))) {
            return escape("the last component must be a name, not `..`, `.` or a root");
        }
        self.check_beneath(rel)
    }

    /// The confinement part of [`check`](Dir::check), for directories (which may be `.`).
    fn check_beneath(&self, rel: &Path) -> Result<(), FsError> {
        let escape = |reason: &'static str| Err(FsError::Escape { path: rel.to_owned(), reason });
        if !self.confined {
            return Ok(());
        }
        let mut depth = 0i32;
        for c in rel.components() {
            match c {
                Component::Prefix(_) | Component::RootDir => return escape("absolute path"),
                Component::ParentDir => depth -= 1,
                Component::Normal(_) => depth += 1,
                Component::CurDir => {}
            }
            if depth < 0 {
                return escape("`..` climbs out of the root");
            }
        }
        Ok(())
    }

    /// Opens `rel` with `flags` (relative to this directory, beneath it when confined).
    pub(crate) fn open_at(&self, rel: &Path, flags: OFlags, mode: Mode) -> Result<OwnedFd, FsError> {
        self.check(rel)?;
        self.open_unchecked(rel, flags, mode)
    }

    /// [`open_at`](Dir::open_at) after only the confinement check: for directories.
    fn open_dir_at(&self, rel: &Path) -> Result<OwnedFd, FsError> {
        self.check_beneath(rel)?;
        self.open_unchecked(rel, OFlags::PATH | OFlags::DIRECTORY, Mode::empty())
    }

    fn open_unchecked(&self, rel: &Path, flags: OFlags, mode: Mode) -> Result<OwnedFd, FsError> {
        let flags = flags | OFlags::CLOEXEC;
        let opened = if self.confined {
            // `openat2` with `RESOLVE_BENEATH` fails with EAGAIN when a rename or a mount
            // anywhere on the system raced the lookup (the kernel cannot prove the path stayed
            // beneath); the man page says to retry. Bounded, so a system renaming without pause
            // gets the error rather than a hang.
            let mut tries = 0;
            loop {
                let got = rustix::fs::openat2(
                    &self.fd,
                    rel,
                    flags,
                    mode,
                    ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS,
                );
                tries += 1;
                match got {
                    Err(rustix::io::Errno::AGAIN) if tries < 1024 => std::thread::yield_now(),
                    other => break other,
                }
            }
        } else {
            rustix::fs::openat(&self.fd, rel, flags, mode)
        };
        opened.map_err(|e| match e {
            rustix::io::Errno::XDEV => FsError::Escape {
                path: rel.to_owned(),
                reason: "resolves outside the root (a symlink or `..`)",
            },
            e => FsError::io("open", &self.path.join(rel), e.into()),
        })
    }

    /// The directory holding `rel`, opened (beneath the root when confined), and `rel`'s last
    /// component.
    pub(crate) fn parent_of(&self, rel: &Path) -> Result<(OwnedFd, OsString), FsError> {
        self.check(rel)?;
        let name = rel.file_name().map(OsString::from).ok_or_else(|| FsError::Escape {
            path: rel.to_owned(),
            reason: "the last component must be a name",
        })?;
        let parent = match rel.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let fd = self.open_dir_at(parent)?;
        Ok((fd, name))
    }

    /// Writes `data` to `rel` atomically (see [`AtomicFile`](crate::AtomicFile)).
    ///
    /// # Errors
    ///
    /// [`FsError`] for an escaping path or an I/O error; the target is then unchanged.
    pub fn write(&self, rel: impl AsRef<Path>, data: &[u8]) -> Result<(), FsError> {
        use std::io::Write;
        let mut file = crate::AtomicFile::create_in(self, rel.as_ref())?;
        file.write_all(data).map_err(|e| FsError::io("write", &self.path.join(rel.as_ref()), e))?;
        file.commit()?;
        Ok(())
    }

    /// Reads `rel` (beneath the root when confined).
    ///
    /// # Errors
    ///
    /// [`FsError`] for an escaping path or an I/O error.
    pub fn read(&self, rel: impl AsRef<Path>) -> Result<Vec<u8>, FsError> {
        use std::io::Read;
        let rel = rel.as_ref();
        let fd = self.open_at(rel, OFlags::RDONLY, Mode::empty())?;
        let mut out = Vec::new();
        std::fs::File::from(fd)
            .read_to_end(&mut out)
            .map_err(|e| FsError::io("read", &self.path.join(rel), e))?;
        Ok(out)
    }
}
