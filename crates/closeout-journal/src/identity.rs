//! Naming things so that a later, different thing with the same name is never taken for them:
//! a process by its pid *and* start time, a file by its device and inode, a boot by its id.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// A process, exactly: its pid and its start time (clock ticks since boot, field 22 of
/// `/proc/<pid>/stat`). A reused pid has a later start time, so it is a different process.
///
/// ```
/// use closeout_journal::ProcessId;
/// let me = ProcessId::current();
/// assert!(me.is_alive());
/// assert_eq!(ProcessId::of(me.pid), Some(me));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ProcessId {
    /// The pid.
    pub pid: u32,
    /// Its start time, in clock ticks since boot.
    pub start: u64,
}

impl ProcessId {
    /// The running process `pid` (zombies included), if there is one.
    pub fn of(pid: u32) -> Option<ProcessId> {
        start_time(pid).map(|start| ProcessId { pid, start })
    }

    /// This process.
    pub fn current() -> ProcessId {
        static ME: std::sync::OnceLock<ProcessId> = std::sync::OnceLock::new();
        *ME.get_or_init(|| {
            let pid = std::process::id();
            ProcessId { pid, start: start_time(pid).unwrap_or(0) }
        })
    }

    /// Whether this process still exists (as itself, not a reuse of its pid), zombie or not.
    pub fn is_alive(self) -> bool {
        start_time(self.pid) == Some(self.start)
    }

    /// Whether this process still runs: it exists as itself and is not a zombie (one read of
    /// `/proc/<pid>/stat`).
    ///
    /// ```
    /// assert!(closeout_journal::ProcessId::current().is_running());
    /// ```
    pub fn is_running(self) -> bool {
        stat(self.pid).is_some_and(|(state, start)| start == self.start && !matches!(state, 'Z' | 'X'))
    }

    /// A pidfd for this exact process: opened first, identity checked second, so the
    /// descriptor is this process and not one that reused its pid. `None` if it is gone.
    ///
    /// ```
    /// assert!(closeout_journal::ProcessId::current().pidfd().is_some());
    /// ```
    pub fn pidfd(self) -> Option<std::os::fd::OwnedFd> {
        let p = rustix::process::Pid::from_raw(i32::try_from(self.pid).ok()?)?;
        let fd = rustix::process::pidfd_open(p, rustix::process::PidfdFlags::empty()).ok()?;
        self.is_alive().then_some(fd)
    }
}

/// A process's state letter and start time, `None` if it is gone.
fn stat(pid: u32) -> Option<(char, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces: skip past its end, to
    // the state (field 3); field 22 is the 20th after it.
    let mut fields = stat.get(stat.rfind(')')? + 1..)?.split_whitespace();
    let state = fields.next()?.chars().next()?;
    Some((state, fields.nth(18)?.parse().ok()?))
}

/// A process's start time, `None` if it is gone.
fn start_time(pid: u32) -> Option<u64> {
    stat(pid).map(|(_, start)| start)
}

/// Every other running process (zombies left out) whose environment holds `var=value` exactly:
/// how a tree's members are found by the marker they inherit (`CLOSEOUT_TREE`), by its owner's
/// stop and by a reap alike. Each start time is read right after the environment matched. An
/// empty `value` finds nothing.
///
/// ```
/// use closeout_journal::processes_with_env;
/// assert!(processes_with_env("CLOSEOUT_DOC_MARKER", "").is_empty());
/// ```
pub fn processes_with_env(var: &str, value: &str) -> Vec<ProcessId> {
    if value.is_empty() {
        return Vec::new();
    }
    let needle = format!("{var}={value}\0");
    let me = std::process::id();
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| pid != me)
        .filter_map(|pid| {
            let env = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
            // An entry starts the buffer or follows a NUL, so `XCLOSEOUT_TREE=` never matches.
            let found = env.starts_with(needle.as_bytes())
                || env.windows(needle.len() + 1).any(|w| w[0] == 0 && &w[1..] == needle.as_bytes());
            let (state, start) = if found { stat(pid)? } else { return None };
            (!matches!(state, 'Z' | 'X')).then_some(ProcessId { pid, start })
        })
        .collect()
}

/// A file system object, exactly: device and inode, read without following a symlink.
///
/// ```
/// use closeout_journal::FileId;
/// let dir = tempfile::tempdir()?;
/// let id = FileId::of(dir.path())?;
/// assert_eq!(FileId::of(dir.path())?, id);
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct FileId {
    /// The device.
    pub dev: u64,
    /// The inode.
    pub ino: u64,
}

impl FileId {
    /// The object at `path` (a symlink itself, not its target).
    ///
    /// # Errors
    ///
    /// What `lstat` returns.
    pub fn of(path: &Path) -> std::io::Result<FileId> {
        let meta = std::fs::symlink_metadata(path)?;
        Ok(FileId { dev: meta.dev(), ino: meta.ino() })
    }
}

/// This boot's id (`/proc/sys/kernel/random/boot_id`): records from another boot name
/// processes that a reboot killed already, and pids that mean nothing now.
///
/// ```
/// assert_eq!(closeout_journal::boot_id().len(), 36);
/// ```
pub fn boot_id() -> String {
    static BOOT: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    BOOT.get_or_init(|| {
        std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
            .map(|s| s.trim().to_owned())
            .unwrap_or_default()
    })
    .clone()
}
