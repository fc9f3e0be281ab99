//! Owned descriptors adopted by a registry: closed by the teardown (checked in /proc), handed
//! back open on refusal, and closed at once by `close_fd`.

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;

/// What descriptor `fd` of this process points to now, if it is open.
fn target(fd: i32) -> Option<PathBuf> {
    std::fs::read_link(format!("/proc/self/fd/{fd}")).ok()
}

#[test]
fn an_adopted_descriptor_is_closed_by_the_teardown() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("adopted");
    let file = std::fs::File::create(&path).unwrap();
    let raw = file.as_raw_fd();
    let registry = closeout::Registry::new();
    let guard = closeout_fs::adopt_fd(&registry, "log", OwnedFd::from(file)).unwrap();
    assert_eq!(target(raw).as_deref(), Some(path.as_path()));
    assert_eq!(guard.with(|fd| fd.as_raw_fd()), Some(raw));
    let report = registry.cleanup_all_blocking();
    assert!(report.is_success(), "{report}");
    // Closed: the number is free, or (another test opened something) no longer our file.
    assert_ne!(target(raw).as_deref(), Some(path.as_path()));
    assert!(!guard.is_alive());
}

#[test]
fn a_refused_descriptor_comes_back_open() {
    let registry = closeout::Registry::new();
    registry.register(closeout::Resource::new("log", || ())).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("refused");
    let file = std::fs::File::create(&path).unwrap();
    let raw = file.as_raw_fd();
    let refused = closeout_fs::adopt_fd(&registry, "log", file.into()).unwrap_err();
    let fd = refused.into_value();
    assert_eq!(fd.as_raw_fd(), raw);
    assert_eq!(target(raw).as_deref(), Some(path.as_path()), "still open");
    closeout_fs::close_fd(fd).unwrap();
    assert_ne!(target(raw).as_deref(), Some(path.as_path()));
}
