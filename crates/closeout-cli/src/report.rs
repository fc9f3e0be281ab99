//! The report of a run: what the command left behind, what was kept, what was removed, and
//! how it ended; as a short table for people and as versioned JSON
//! (`schema/report-v1.json`) for tools.

use std::fmt::Write as _;
use std::path::PathBuf;

use serde::Serialize;

use crate::leftovers::{LeftFile, LeftProcess, LeftSocket};

/// What `--keep` keeps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Keep {
    Pid(u32),
    Port(u16),
    Cmd(String),
    Path(PathBuf),
}

impl std::str::FromStr for Keep {
    type Err = String;

    fn from_str(text: &str) -> Result<Keep, String> {
        let (kind, value) = text
            .split_once(':')
            .ok_or_else(|| format!("`{text}`: expected pid:N, port:N, cmd:TEXT or path:PREFIX"))?;
        match kind {
            "pid" => value.parse().map(Keep::Pid).map_err(|_| format!("`{value}` is not a pid")),
            "port" => value.parse().map(Keep::Port).map_err(|_| format!("`{value}` is not a port (0–65535)")),
            "cmd" if !value.is_empty() => Ok(Keep::Cmd(value.to_owned())),
            "path" if !value.is_empty() => Ok(Keep::Path(PathBuf::from(value))),
            "cmd" | "path" => Err(format!("`{text}`: the {kind} to keep is empty")),
            _ => Err(format!("`{kind}`: expected pid, port, cmd or path")),
        }
    }
}

/// How the command ended.
#[derive(Clone, Debug, Default, Serialize)]
pub(crate) struct Exit {
    /// Its exit code, if it exited.
    pub(crate) code: Option<i32>,
    /// The signal that killed it, if one did.
    pub(crate) signal: Option<i32>,
    /// Whether `--timeout` stopped it.
    pub(crate) timed_out: bool,
    /// closeout's own exit status.
    pub(crate) status: i32,
}

/// Everything left behind.
#[derive(Clone, Debug, Default, Serialize)]
pub(crate) struct LeftBehind {
    pub(crate) processes: Vec<LeftProcess>,
    pub(crate) sockets: Vec<LeftSocket>,
    pub(crate) files: Vec<LeftFile>,
}

impl LeftBehind {
    /// How many things were left and not kept.
    pub(crate) fn leaks(&self) -> usize {
        self.processes.iter().filter(|p| !p.kept).count()
            + self.sockets.iter().filter(|s| !s.kept).count()
            + self.files.iter().filter(|f| !f.kept).count()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.processes.is_empty() && self.sockets.is_empty() && self.files.is_empty()
    }
}

/// A run's report (JSON schema version 1).
#[derive(Clone, Debug, Serialize)]
pub(crate) struct RunReport {
    /// Always 1 for this layout.
    pub(crate) schema_version: u32,
    pub(crate) command: Vec<String>,
    /// `cgroup` or `fallback`.
    pub(crate) containment: String,
    /// Why the fallback, when it was used.
    pub(crate) containment_note: Option<String>,
    pub(crate) exit: Exit,
    pub(crate) left_behind: LeftBehind,
    /// Processes that needed SIGKILL when what was left was stopped.
    pub(crate) killed: Vec<u32>,
    /// Processes still alive after SIGKILL (uninterruptible sleep).
    pub(crate) survivors: Vec<u32>,
    /// Files removed.
    pub(crate) removed_files: usize,
    /// The whole run, in milliseconds.
    pub(crate) duration_ms: u64,
    /// From the moment the command's exit (or the timeout) was seen to the moment nothing it
    /// left was running any more, in microseconds.
    pub(crate) cleanup_us: u64,
    /// Whether the run was in the journal (so a SIGKILL of closeout leaves it for `reap`).
    pub(crate) journaled: bool,
}

impl RunReport {
    /// The short human form: nothing when nothing was left (unless `verbose`).
    pub(crate) fn human(&self, verbose: bool) -> String {
        let mut out = String::new();
        let left = &self.left_behind;
        if left.is_empty() && !verbose {
            return out;
        }
        let how = match (self.exit.code, self.exit.signal, self.exit.timed_out) {
            (_, _, true) => "timed out".to_owned(),
            (Some(c), _, _) => format!("exited {c}"),
            (_, Some(s), _) => format!("killed by signal {s}"),
            _ => "ended".to_owned(),
        };
        let _ = writeln!(
            out,
            "closeout: `{}` {how}; {}",
            self.command.join(" "),
            if left.is_empty() {
                "it left nothing behind".to_owned()
            } else {
                format!(
                    "it left behind {} process(es), {} socket(s), {} file(s)",
                    left.processes.len(),
                    left.sockets.len(),
                    left.files.len()
                )
            }
        );
        let mark = |kept: bool| if kept { "kept" } else { "removed" };
        if !left.processes.is_empty() {
            let _ = writeln!(out, "  {:<8} {:<8} {:>7}  {:<8} command", "pid", "parent", "age", "");
            for p in &left.processes {
                let age = format!("{:.1}s", p.age_ms as f64 / 1000.0);
                let _ = writeln!(
                    out,
                    "  {:<8} {:<8} {:>7}  {:<8} {}",
                    p.pid,
                    p.ppid,
                    age,
                    mark(p.kept),
                    one_line(&p.cmdline)
                );
            }
        }
        for s in &left.sockets {
            let _ = writeln!(
                out,
                "  {} {}:{} held by pid {} ({})",
                s.proto,
                s.address,
                s.port,
                s.pid,
                mark(s.kept)
            );
        }
        for f in &left.files {
            let _ = writeln!(out, "  {} ({} B, {}, {})", f.path.display(), f.size, f.place, mark(f.kept));
        }
        if !self.survivors.is_empty() {
            let _ = writeln!(out, "  survived SIGKILL: {:?}", self.survivors);
        }
        if let Some(note) = &self.containment_note {
            let _ = writeln!(out, "  containment: {} ({note})", self.containment);
        } else if verbose {
            let _ = writeln!(out, "  containment: {}", self.containment);
        }
        out
    }
}

/// A command line on one short line: whitespace runs (newlines of an inline script included)
/// become one space, and more than 100 characters are cut with an ellipsis.
fn one_line(text: &str) -> String {
    let flat = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match flat.char_indices().nth(100) {
        Some((at, _)) => format!("{}…", &flat[..at]),
        None => flat,
    }
}
