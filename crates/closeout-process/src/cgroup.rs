//! cgroup v2 containment: a tree's own cgroup, which the kernel keeps whole (every process
//! the tree starts is born in it, whatever it does to its environment, group or session) and
//! kills whole (`cgroup.kill`, racing forks included).
//!
//! The hierarchy is found, never assumed: the `cgroup2` mount in `/proc/self/mountinfo` (on a
//! hybrid layout it sits beside the v1 controllers, at `/sys/fs/cgroup/unified` say) and this
//! process's own cgroup from the `0::` line of `/proc/self/cgroup`. Trees get child cgroups of
//! that one: creating children and moving processes into them needs neither controllers nor a
//! change to our own cgroup, so the v2 rule "no processes in an inner node with controllers"
//! is never ours to break.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rustix::fs::{Mode, OFlags};

/// Forces the fallback (process group and marker) when set to anything but `0`: for tests and
/// for systems whose cgroups should not be touched. Read once, at the process's first spawn.
pub const NO_CGROUP_ENV: &str = "CLOSEOUT_NO_CGROUP";

/// Where this process's trees go: its own cgroup in the v2 hierarchy. Found once per process
/// (reading `/proc` on every spawn would only find the same answer).
pub(crate) fn parent() -> Result<PathBuf, String> {
    static PARENT: std::sync::OnceLock<Result<PathBuf, String>> = std::sync::OnceLock::new();
    PARENT.get_or_init(discover).clone()
}

fn discover() -> Result<PathBuf, String> {
    if std::env::var(NO_CGROUP_ENV).is_ok_and(|v| v != "0") {
        return Err(format!("{NO_CGROUP_ENV} is set"));
    }
    let mountinfo =
        std::fs::read_to_string("/proc/self/mountinfo").map_err(|e| format!("/proc/self/mountinfo: {e}"))?;
    // Fields: id parent major:minor root mountpoint options ... - fstype source super-options.
    let (root, mountpoint) = mountinfo
        .lines()
        .find_map(|line| {
            let (pre, post) = line.split_once(" - ")?;
            (post.split_whitespace().next()? == "cgroup2").then(|| {
                let mut f = pre.split_whitespace();
                let root = f.nth(3)?.to_owned();
                let mountpoint = f.next()?.to_owned();
                Some((root, mountpoint))
            })?
        })
        .ok_or("no cgroup2 hierarchy is mounted")?;
    let own = std::fs::read_to_string("/proc/self/cgroup").map_err(|e| format!("/proc/self/cgroup: {e}"))?;
    let path =
        own.lines().find_map(|l| l.strip_prefix("0::")).ok_or("this process has no cgroup v2 membership")?;
    // Our cgroup as seen inside the mount (whose root may itself be a sub-cgroup).
    let rel = path.strip_prefix(root.trim_end_matches('/')).unwrap_or(path).trim_start_matches('/');
    let dir = Path::new(&mountpoint).join(rel);
    if !dir.join("cgroup.procs").exists() {
        return Err(format!("{} is not a cgroup directory", dir.display()));
    }
    if rustix::fs::access(&dir, rustix::fs::Access::WRITE_OK).is_err() {
        return Err(format!("{} is not writable (no delegation)", dir.display()));
    }
    Ok(dir)
}

/// A tree's own cgroup. Removed when the tree is stopped (after the kernel says it is empty).
#[derive(Debug)]
pub(crate) struct TreeCgroup {
    pub(crate) path: PathBuf,
}

impl TreeCgroup {
    /// Where the tree whose marker is `marker` gets its cgroup: `closeout-<marker>`, unique to
    /// this process (the marker holds its pid and start time) and known before it is made, so
    /// a journal can record it first.
    pub(crate) fn plan(parent: &Path, marker: &str) -> PathBuf {
        parent.join(format!("closeout-{marker}"))
    }

    /// Makes the planned cgroup.
    pub(crate) fn create(path: PathBuf) -> io::Result<TreeCgroup> {
        std::fs::create_dir(&path)?;
        Ok(TreeCgroup { path })
    }

    /// `cgroup.procs`, opened for the child to write itself into before it runs anything.
    pub(crate) fn procs_for_join(&self) -> io::Result<OwnedFd> {
        let path =
            CString::new(self.path.join("cgroup.procs").as_os_str().as_bytes()).map_err(io::Error::other)?;
        Ok(rustix::fs::open(path.as_c_str(), OFlags::WRONLY | OFlags::CLOEXEC, Mode::empty())?)
    }

    /// The processes in it now (the kernel's list: no zombies, no strangers).
    pub(crate) fn procs(&self) -> Vec<u32> {
        std::fs::read_to_string(self.path.join("cgroup.procs"))
            .map(|s| s.lines().filter_map(|l| l.trim().parse().ok()).collect())
            .unwrap_or_default()
    }

    /// Whether the kernel counts a live process in it (`populated 1` in `cgroup.events`).
    pub(crate) fn populated(&self) -> bool {
        match std::fs::read_to_string(self.path.join("cgroup.events")) {
            Ok(events) => events.lines().any(|l| l.trim() == "populated 1"),
            // Gone already (removed): nothing can be in it.
            Err(_) => false,
        }
    }

    /// SIGKILL to every member at once, forks racing included (`cgroup.kill`, Linux 5.14).
    /// Before 5.14 there is no `cgroup.kill`: each listed member gets SIGKILL, repeated by the
    /// caller until the cgroup is empty.
    pub(crate) fn kill(&self) {
        if std::fs::write(self.path.join("cgroup.kill"), "1").is_err() {
            for pid in self.procs() {
                self.signal_member(pid, rustix::process::Signal::KILL);
            }
        }
    }

    /// A pidfd for `pid` if it is (or, as a zombie, was) a member of this cgroup: opened first,
    /// checked second, so a member that exited and whose number was reused outside is never
    /// taken for it. (A zombie still names the cgroup it died in.)
    fn pin_member(&self, pid: u32) -> Option<OwnedFd> {
        let p = rustix::process::Pid::from_raw(pid as i32)?;
        let fd = rustix::process::pidfd_open(p, rustix::process::PidfdFlags::empty()).ok()?;
        self.in_cgroup(pid).then_some(fd)
    }

    /// Whether `/proc/<pid>/cgroup` names this cgroup.
    fn in_cgroup(&self, pid: u32) -> bool {
        let (Ok(own), Some(name)) = (
            std::fs::read_to_string(format!("/proc/{pid}/cgroup")),
            self.path.file_name().and_then(|n| n.to_str()),
        ) else {
            return false;
        };
        own.lines().any(|l| l.starts_with("0::") && l.strip_suffix(name).is_some_and(|l| l.ends_with('/')))
    }

    /// Sends `sig` to `pid` if it is still in this cgroup (see `pin_member`).
    pub(crate) fn signal_member(&self, pid: u32, sig: rustix::process::Signal) {
        if let Some(fd) = self.pin_member(pid) {
            let _ = rustix::process::pidfd_send_signal(&fd, sig);
        }
    }

    /// Reaps `pid` if it is a zombie child of ours (a member reparented to us as subreaper) that
    /// died in this cgroup; anything else is left alone.
    pub(crate) fn reap_member(&self, pid: u32) {
        let Some(p) = rustix::process::Pid::from_raw(pid as i32) else { return };
        // Cheap checks first (most members were reaped by their own parents, or are not our
        // children): only a zombie child of ours gets its cgroup read.
        let Ok(fd) = rustix::process::pidfd_open(p, rustix::process::PidfdFlags::empty()) else { return };
        if crate::wait::exited(fd.as_fd()) == Some(true) && self.in_cgroup(pid) {
            crate::wait::reap(fd.as_fd());
        }
    }

    /// `cgroup.kill`, opened for writing ahead of time: the forced-exit last action writes `1`
    /// to it (one system call, async-signal-safe). `None` before Linux 5.14 (no such file).
    pub(crate) fn kill_handle(&self) -> Option<OwnedFd> {
        let path = CString::new(self.path.join("cgroup.kill").as_os_str().as_bytes()).ok()?;
        rustix::fs::open(path.as_c_str(), OFlags::WRONLY | OFlags::CLOEXEC, Mode::empty()).ok()
    }

    /// Applies the limits (`pids.max`, `memory.max`) before anything joins. Each needs its
    /// controller delegated: listed in the parent's `cgroup.controllers` and enabled in its
    /// `cgroup.subtree_control` (enabled here if it is not yet).
    pub(crate) fn limit(&self, parent: &Path, limits: &[(&'static str, u64)]) -> io::Result<()> {
        for &(file, value) in limits {
            let controller = file.split('.').next().unwrap_or(file);
            let available = std::fs::read_to_string(parent.join("cgroup.controllers")).unwrap_or_default();
            if !available.split_whitespace().any(|c| c == controller) {
                return Err(io::Error::new(
                    io::ErrorKind::Unsupported,
                    format!(
                        "{file} needs the {controller} controller, which is not delegated to {} (it has: {})",
                        parent.display(),
                        if available.trim().is_empty() { "none" } else { available.trim() }
                    ),
                ));
            }
            let enabled = std::fs::read_to_string(parent.join("cgroup.subtree_control")).unwrap_or_default();
            if !enabled.split_whitespace().any(|c| c == controller) {
                std::fs::write(parent.join("cgroup.subtree_control"), format!("+{controller}")).map_err(|e| {
                    io::Error::new(
                        e.kind(),
                        format!(
                            "enabling {controller} in {}: {e} (a cgroup with processes of its own cannot enable domain controllers)",
                            parent.join("cgroup.subtree_control").display()
                        ),
                    )
                })?;
            }
            std::fs::write(self.path.join(file), value.to_string())
                .map_err(|e| io::Error::new(e.kind(), format!("writing {value} to {file}: {e}")))?;
        }
        Ok(())
    }

    /// Freezes (`true`) or thaws every member (`cgroup.freeze`).
    pub(crate) fn freeze(&self, yes: bool) -> io::Result<()> {
        std::fs::write(self.path.join("cgroup.freeze"), if yes { "1" } else { "0" })
    }

    /// Removes the (empty) cgroup, retrying briefly while the kernel finishes with the last
    /// exits. False if it is still there.
    pub(crate) fn remove(&self) -> bool {
        let until = Instant::now() + Duration::from_secs(1);
        let mut pause = Duration::from_millis(1);
        loop {
            match std::fs::remove_dir(&self.path) {
                Ok(()) => return true,
                Err(e) if e.kind() == io::ErrorKind::NotFound => return true,
                Err(_) if Instant::now() < until => {
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_millis(20));
                }
                Err(_) => return false,
            }
        }
    }
}

/// The raw descriptor the child writes `0` (itself) to, between `fork` and `exec`.
pub(crate) fn raw(fd: &OwnedFd) -> i32 {
    fd.as_raw_fd()
}
