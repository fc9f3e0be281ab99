//! Owned file descriptors as registry resources: closed at the teardown with the error of
//! `close(2)` reported, which `OwnedFd`'s `Drop` ignores (NFS reports a failed write-back
//! there; so do some FUSE file systems).

use std::os::fd::{IntoRawFd, OwnedFd};

use closeout::{AdoptError, Adopted, Registry};

/// Closes `fd` and returns what `close(2)` said. The descriptor is gone either way (Linux
/// releases it even when `close` fails; it is never retried, which could close a descriptor
/// another thread just got).
///
/// # Errors
///
/// The error `close(2)` returned (`EIO`, `ENOSPC`, `EDQUOT`, `EINTR`).
///
/// ```
/// let file = std::fs::File::open("/dev/null")?;
/// closeout_fs::close_fd(file.into())?;
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn close_fd(fd: OwnedFd) -> std::io::Result<()> {
    let raw = fd.into_raw_fd();
    // SAFETY: `into_raw_fd` gave us sole ownership of a valid descriptor, so no one else
    // closes it; it is closed exactly once, here, and not used after.
    #[allow(unsafe_code)]
    let closed = unsafe { rustix::io::try_close(raw) };
    closed.map_err(std::io::Error::from)
}

/// Registers `fd` in `registry` as `id`; the teardown closes it with [`close_fd`], so a
/// failed close shows in the report. The guard gives the descriptor to use meanwhile.
///
/// # Errors
///
/// [`AdoptError`] with the descriptor, still open, when the registry refuses it.
///
/// ```
/// use std::os::fd::AsRawFd;
/// let registry = closeout::Registry::new();
/// let log = std::fs::File::create(std::env::temp_dir().join("closeout-doc-fd.log"))?;
/// let fd = closeout_fs::adopt_fd(&registry, "log", log.into())?;
/// assert!(fd.with(|fd| fd.as_raw_fd() >= 0).unwrap());
/// assert!(registry.cleanup_all_blocking().is_success()); // closed, and it said so
/// # std::fs::remove_file(std::env::temp_dir().join("closeout-doc-fd.log"))?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn adopt_fd(
    registry: &Registry,
    id: impl Into<String>,
    fd: OwnedFd,
) -> Result<Adopted<OwnedFd>, AdoptError<OwnedFd>> {
    registry.adopt(id, fd, close_fd)
}
