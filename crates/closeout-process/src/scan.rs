//! Finding every process of a tree in `/proc`, wherever it went.
//!
//! A process group is not enough: a daemon double-forks and calls `setsid`, leaving the group
//! and the session, and its parent dies so it is no longer anyone's descendant. What it keeps
//! is its environment: every process of a tree inherits a marker variable
//! (`CLOSEOUT_TREE=<id>`), so scanning `/proc/*/environ` finds the whole tree. A process that
//! clears its environment on purpose is not found this way; the process group still catches it
//! if it stayed in the group.

use std::io;

use std::os::fd::AsFd;

use closeout_journal::ProcessId;

/// The environment variable that marks every process of a tree.
pub const MARKER: &str = "CLOSEOUT_TREE";

/// The running processes whose environment holds `MARKER=<id>`, excluding this process, each
/// with the start time read when it was found.
pub(crate) fn members(id: &str) -> Vec<ProcessId> {
    closeout_journal::processes_with_env(MARKER, id)
}

/// A process's state letter (`R`, `S`, `Z`, …), or `None` if it is gone.
pub(crate) fn state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.get(stat.rfind(')')? + 1..)?.split_whitespace().next()?.chars().next()
}

/// Sends `sig` to `id` only if it is still that process (a reused pid is never hit). True if it
/// was sent.
pub(crate) fn signal_checked(id: ProcessId, sig: rustix::process::Signal) -> bool {
    id.pidfd().is_some_and(|fd| rustix::process::pidfd_send_signal(&fd, sig).is_ok())
}

/// Reaps `pid` if it is a zombie child of this process (a daemon reparented to us as
/// subreaper) *and* still the process that started at `start`: another tree's child that got
/// a reused number is left alone. True if it is gone for good (reaped, or not there any more).
pub(crate) fn reap_checked(id: ProcessId) -> bool {
    let Some(p) = rustix::process::Pid::from_raw(id.pid as i32) else { return true };
    let Ok(fd) = rustix::process::pidfd_open(p, rustix::process::PidfdFlags::empty()) else { return true };
    // A look that reaps nothing first; the start time is read only for a zombie child of ours.
    match crate::wait::exited(fd.as_fd()) {
        Some(true) => {
            if ProcessId::of(id.pid) == Some(id) {
                crate::wait::reap(fd.as_fd());
            }
            // Else a zombie child of ours, but another process than the one we saw: not ours.
            true
        }
        // Our child, still running.
        Some(false) => false,
        // Not our child (reparented elsewhere): not ours to reap, and not ours to wait for.
        None => !alive(id.pid),
    }
}

/// Whether `pid` exists and is not a zombie.
pub(crate) fn alive(pid: u32) -> bool {
    state(pid).is_some_and(|s| s != 'Z')
}

/// Sends `sig` to a process group, ignoring one that is already gone.
pub(crate) fn signal_group(pgid: u32, sig: rustix::process::Signal) -> io::Result<()> {
    let Some(p) = rustix::process::Pid::from_raw(pgid as i32) else { return Ok(()) };
    match rustix::process::kill_process_group(p, sig) {
        Err(rustix::io::Errno::SRCH) | Ok(()) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A start time that does not match means another process: never signalled, never reaped.
    #[test]
    fn a_pid_whose_start_time_differs_is_left_alone() {
        let mut child = std::process::Command::new("sleep").arg("60").spawn().unwrap();
        let pid = child.id();
        let start = ProcessId::of(pid).expect("a running child has a start time").start;
        for other in [start + 1, start.wrapping_sub(1), 0, u64::MAX] {
            let other = ProcessId { pid, start: other };
            assert!(!signal_checked(other, rustix::process::Signal::KILL));
            assert!(!reap_checked(other) || alive(pid), "reaped as someone else");
        }
        assert!(alive(pid), "signalled although its start time did not match");
        let id = ProcessId { pid, start };
        assert!(signal_checked(id, rustix::process::Signal::KILL));
        let until = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !reap_checked(id) {
            assert!(std::time::Instant::now() < until, "not reaped");
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        // Reaped through its pidfd: the `Child` finds nothing left to wait for.
        assert!(child.try_wait().is_err() || !alive(pid));
    }
}
