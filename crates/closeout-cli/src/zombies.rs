//! Reaping zombies that are not the command's: as PID 1 (a container's entry point) every
//! orphan of the container comes here, and as a subreaper every orphan of the tree does; each
//! must be waited for, as tini does, or it stays a zombie.
//!
//! The command itself is never reaped here (its status is the run's), so this does not call
//! `waitpid(-1)`: it finds our zombie children in `/proc` and waits for each by pid.

/// Reaps every zombie child of ours except `keep`; returns how many.
pub(crate) fn reap_except(keep: u32) -> usize {
    let me = std::process::id().to_string();
    let Ok(entries) = std::fs::read_dir("/proc") else { return 0 };
    let mut reaped = 0;
    for pid in entries.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok()) {
        if pid == keep {
            continue;
        }
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
        let Some(rest) = stat.rfind(')').and_then(|i| stat.get(i + 2..)) else { continue };
        let mut f = rest.split_whitespace();
        if f.next() == Some("Z")
            && f.next() == Some(me.as_str())
            && let Some(p) = rustix::process::Pid::from_raw(pid as i32)
            && rustix::process::waitpid(Some(p), rustix::process::WaitOptions::NOHANG)
                .is_ok_and(|r| r.is_some())
        {
            reaped += 1;
        }
    }
    reaped
}
