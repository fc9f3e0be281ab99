//! What a command left behind, found in `/proc` and on disk: processes still in its tree (with
//! command line, age and parent), the listening TCP and bound UDP sockets they hold (from
//! `/proc/net/*` and their descriptors), files in its private TMPDIR, and files created under
//! the watched directories during the run.

use std::collections::{HashMap, HashSet};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::Serialize;

/// A process left in the tree.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct LeftProcess {
    pub(crate) pid: u32,
    pub(crate) ppid: u32,
    pub(crate) cmdline: String,
    pub(crate) age_ms: u64,
    pub(crate) kept: bool,
}

/// A socket a left process holds.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct LeftSocket {
    pub(crate) proto: &'static str,
    pub(crate) address: String,
    pub(crate) port: u16,
    pub(crate) pid: u32,
    pub(crate) kept: bool,
}

/// A file left behind.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct LeftFile {
    pub(crate) path: PathBuf,
    pub(crate) size: u64,
    /// `tmpdir` or `watch`.
    pub(crate) place: &'static str,
    pub(crate) kept: bool,
}

fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    Some(rest.split_whitespace().map(str::to_owned).collect())
}

fn clock_ticks() -> u64 {
    rustix::param::clock_ticks_per_second().max(1)
}

/// Processes of `pids` with what a reader needs to recognise them.
pub(crate) fn processes(pids: &[u32]) -> Vec<LeftProcess> {
    let uptime_ms = std::fs::read_to_string("/proc/uptime")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(0, |s| (s * 1000.0) as u64);
    let mut out: Vec<LeftProcess> = pids
        .iter()
        .filter_map(|&pid| {
            let f = stat_fields(pid)?;
            // After the state (f[0]): ppid is f[1]; start time is field 22, f[19].
            if f.first().is_some_and(|s| s == "Z" || s == "X") {
                return None;
            }
            let ppid = f.get(1)?.parse().ok()?;
            let start: u64 = f.get(19)?.parse().ok()?;
            let raw = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let cmdline = raw
                .split(|&b| b == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect::<Vec<_>>()
                .join(" ");
            let age_ms = uptime_ms.saturating_sub(start * 1000 / clock_ticks());
            Some(LeftProcess { pid, ppid, cmdline, age_ms, kept: false })
        })
        .collect();
    out.sort_by_key(|p| p.pid);
    out
}

/// The socket inodes each of `pids` holds.
fn socket_inodes(pids: &[u32]) -> HashMap<u64, u32> {
    let mut out = HashMap::new();
    for &pid in pids {
        let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else { continue };
        for fd in fds.flatten() {
            let Ok(target) = std::fs::read_link(fd.path()) else { continue };
            let target = target.to_string_lossy();
            if let Some(inode) = target.strip_prefix("socket:[").and_then(|t| t.strip_suffix(']'))
                && let Ok(inode) = inode.parse()
            {
                out.entry(inode).or_insert(pid);
            }
        }
    }
    out
}

/// Listening TCP and bound UDP sockets held by `pids`.
pub(crate) fn sockets(pids: &[u32]) -> Vec<LeftSocket> {
    let held = socket_inodes(pids);
    if held.is_empty() {
        return Vec::new();
    }
    let mut out = Vec::new();
    // TCP: LISTEN is state 0A. UDP: an unconnected bound socket is 07.
    for (file, proto, state) in
        [("tcp", "tcp", "0A"), ("tcp6", "tcp6", "0A"), ("udp", "udp", "07"), ("udp6", "udp6", "07")]
    {
        let Ok(table) = std::fs::read_to_string(format!("/proc/net/{file}")) else { continue };
        for line in table.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            let (Some(local), Some(st), Some(inode)) = (f.get(1), f.get(3), f.get(9)) else { continue };
            if *st != state {
                continue;
            }
            let Ok(inode) = inode.parse::<u64>() else { continue };
            let Some(&pid) = held.get(&inode) else { continue };
            let Some((addr, port)) = local.split_once(':') else { continue };
            let Ok(port) = u16::from_str_radix(port, 16) else { continue };
            out.push(LeftSocket { proto, address: hex_address(addr), port, pid, kept: false });
        }
    }
    out.sort_by_key(|s| (s.port, s.pid));
    out
}

/// `/proc/net` addresses: 32-bit words in host (little-endian) order.
fn hex_address(hex: &str) -> String {
    let words: Vec<u32> =
        (0..hex.len() / 8).filter_map(|i| u32::from_str_radix(&hex[i * 8..i * 8 + 8], 16).ok()).collect();
    let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
    match bytes.len() {
        4 => std::net::Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3]).to_string(),
        16 => {
            let mut b = [0u8; 16];
            b.copy_from_slice(&bytes);
            std::net::Ipv6Addr::from(b).to_string()
        }
        _ => hex.to_owned(),
    }
}

/// Every file (not directory) under `dir`, with its identity: at most `limit`, depth-first,
/// never following symlinks.
pub(crate) fn files_under(dir: &Path, limit: usize) -> Vec<(PathBuf, u64, (u64, u64))> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for entry in entries.flatten() {
            let Ok(meta) = entry.path().symlink_metadata() else { continue };
            if meta.is_dir() {
                stack.push(entry.path());
            } else {
                out.push((entry.path(), meta.len(), (meta.dev(), meta.ino())));
                if out.len() >= limit {
                    return out;
                }
            }
        }
    }
    out
}

/// What was under the watched directories when the run began.
pub(crate) struct Snapshot(HashSet<(PathBuf, (u64, u64))>);

/// How many files a watched directory may hold before the scan stops (a guard against
/// watching `/`).
pub(crate) const WATCH_LIMIT: usize = 200_000;

impl Snapshot {
    pub(crate) fn take(dirs: &[PathBuf]) -> Snapshot {
        Snapshot(
            dirs.iter().flat_map(|d| files_under(d, WATCH_LIMIT)).map(|(path, _, id)| (path, id)).collect(),
        )
    }

    /// Files under `dirs` now that were not there (as the same file) at the snapshot.
    pub(crate) fn created(&self, dirs: &[PathBuf]) -> Vec<LeftFile> {
        let mut out: Vec<LeftFile> = dirs
            .iter()
            .flat_map(|d| files_under(d, WATCH_LIMIT))
            .filter(|(path, _, id)| !self.0.contains(&(path.clone(), *id)))
            .map(|(path, size, _)| LeftFile { path, size, place: "watch", kept: false })
            .collect();
        out.sort_by(|a, b| a.path.cmp(&b.path));
        out
    }
}
