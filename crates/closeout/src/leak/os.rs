//! What the test guard reads of the OS: this process's threads, open file descriptors and
//! child processes, from `/proc` (Linux). Elsewhere each list is empty, so the guard checks
//! tracked objects and tokio tasks only.

use std::collections::BTreeMap;

/// Process-wide state at one moment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct OsSnapshot {
    /// Thread id → name.
    pub(crate) threads: BTreeMap<u32, String>,
    /// Descriptor → what it points to.
    pub(crate) fds: BTreeMap<u32, String>,
    /// Child pid → (command, state letter).
    pub(crate) children: BTreeMap<u32, (String, char)>,
}

#[cfg(target_os = "linux")]
pub(crate) fn snapshot() -> OsSnapshot {
    OsSnapshot { threads: threads(), fds: fds(), children: children() }
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn snapshot() -> OsSnapshot {
    OsSnapshot::default()
}

#[cfg(target_os = "linux")]
fn numbered_entries(dir: &str) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    entries.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok()).collect()
}

#[cfg(target_os = "linux")]
fn threads() -> BTreeMap<u32, String> {
    numbered_entries("/proc/self/task")
        .into_iter()
        .map(|tid| {
            let name = std::fs::read_to_string(format!("/proc/self/task/{tid}/comm")).unwrap_or_default();
            (tid, name.trim_end().to_owned())
        })
        .collect()
}

#[cfg(target_os = "linux")]
fn fds() -> BTreeMap<u32, String> {
    // Listing the directory opens one descriptor of its own; it points at the listing itself.
    let own = format!("/proc/{}/fd", std::process::id());
    numbered_entries("/proc/self/fd")
        .into_iter()
        .filter_map(|fd| {
            let target = std::fs::read_link(format!("/proc/self/fd/{fd}")).ok()?;
            let target = target.to_string_lossy().into_owned();
            (target != own).then_some((fd, target))
        })
        .collect()
}

#[cfg(target_os = "linux")]
fn children() -> BTreeMap<u32, (String, char)> {
    let me = std::process::id();
    numbered_entries("/proc")
        .into_iter()
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            // "pid (comm) state ppid …": comm may hold spaces and parentheses, so split at the
            // last ')'.
            let close = stat.rfind(')')?;
            let comm = stat.get(stat.find('(')? + 1..close)?.to_owned();
            let mut rest = stat[close + 1..].split_whitespace();
            let state = rest.next()?.chars().next()?;
            let ppid: u32 = rest.next()?.parse().ok()?;
            (ppid == me).then_some((pid, (comm, state)))
        })
        .collect()
}
