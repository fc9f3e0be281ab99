//! Finding every process of a tree in `/proc`, wherever it went.
//!
//! A process group is not enough: a daemon double-forks and calls `setsid`, leaving the group
//! and the session, and its parent dies so it is no longer anyone's descendant. What it keeps
//! is its environment: every process of a tree inherits a marker variable
//! (`CLOSEOUT_TREE=<id>`), so scanning `/proc/*/environ` finds the whole tree. A process that
//! clears its environment on purpose is not found this way; the process group still catches it
//! if it stayed in the group.

use std::io;

/// The environment variable that marks every process of a tree.
pub const MARKER: &str = "CLOSEOUT_TREE";

/// The pids whose environment holds `MARKER=<id>` and that are not zombies, excluding this
/// process.
pub(crate) fn members(id: &str) -> Vec<u32> {
    let needle = format!("{MARKER}={id}\0");
    let me = std::process::id();
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| pid != me)
        .filter(|&pid| {
            std::fs::read(format!("/proc/{pid}/environ"))
                .is_ok_and(|env| env.windows(needle.len()).any(|w| w == needle.as_bytes()))
        })
        .filter(|&pid| state(pid).is_some_and(|s| s != 'Z'))
        .collect()
}

/// A process's state letter (`R`, `S`, `Z`, …), or `None` if it is gone.
pub(crate) fn state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.get(stat.rfind(')')? + 1..)?.split_whitespace().next()?.chars().next()
}

/// Whether `pid` exists and is not a zombie.
pub(crate) fn alive(pid: u32) -> bool {
    state(pid).is_some_and(|s| s != 'Z')
}

/// Reaps `pid` if it is a zombie child of this process (a daemon reparented to us as
/// subreaper); other processes are left alone.
pub(crate) fn reap_if_ours(pid: u32) {
    if let Some(p) = rustix::process::Pid::from_raw(pid as i32) {
        let _ = rustix::process::waitpid(Some(p), rustix::process::WaitOptions::NOHANG);
    }
}

/// Sends `sig` to one process, ignoring one that is already gone.
pub(crate) fn signal(pid: u32, sig: rustix::process::Signal) -> io::Result<()> {
    let Some(p) = rustix::process::Pid::from_raw(pid as i32) else { return Ok(()) };
    match rustix::process::kill_process(p, sig) {
        Err(rustix::io::Errno::SRCH) | Ok(()) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Sends `sig` to a process group, ignoring one that is already gone.
pub(crate) fn signal_group(pgid: u32, sig: rustix::process::Signal) -> io::Result<()> {
    let Some(p) = rustix::process::Pid::from_raw(pgid as i32) else { return Ok(()) };
    match rustix::process::kill_process_group(p, sig) {
        Err(rustix::io::Errno::SRCH) | Ok(()) => Ok(()),
        Err(e) => Err(e.into()),
    }
}
