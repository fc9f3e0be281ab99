//! Reaping: what dead owners left behind, removed — each record once, idempotently, and only
//! while it still names the same thing. Also [`list`]: every owner, alive or dead.
//!
//! Per kind:
//! - **Process tree**: its cgroup is killed (`cgroup.kill`), emptied and removed; processes
//!   recorded by pid and start time, and processes carrying the tree's marker, get SIGKILL
//!   through a pidfd opened *before* their identity is checked, so a reused pid is never hit;
//!   the process group is signalled only while its leader is still the recorded process. A
//!   record from another boot is dropped unsignalled: its processes died with that boot.
//! - **Path**: removed only while it is the recorded object (device and inode); a record that
//!   never completed (the owner died during creation) removes the path only if its name
//!   carries the owner's token (`<pid>.<start>`) and it belongs to us.
//! - **Command**: run with its timeout; a failure is reported and kept for the next reap. A
//!   reaper that dies mid-reap can make the next one run a command again (at least once).

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::error::JournalError;
use crate::identity::{FileId, ProcessId, boot_id};
use crate::record::{Header, Line, PathKind, Record, Resource, replay};
use crate::store::{OwnerKey, Store};

/// How long a reap waits for a killed tree to be gone.
const GONE_WAIT: Duration = Duration::from_secs(5);

/// Reaps one [`Resource::Custom`] record from its data: `Ok` with what it did, or `Err` with
/// why not (the record is then kept for the next reap).
pub type Handler = Arc<dyn Fn(&serde_json::Value) -> Result<String, String> + Send + Sync>;

/// What a reap does.
#[derive(Clone, Default)]
pub struct ReapOptions {
    dry_run: bool,
    same_program: bool,
    handlers: Vec<(String, Handler)>,
}

impl std::fmt::Debug for ReapOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kinds: Vec<&str> = self.handlers.iter().map(|(k, _)| k.as_str()).collect();
        f.debug_struct("ReapOptions")
            .field("dry_run", &self.dry_run)
            .field("same_program", &self.same_program)
            .field("handlers", &kinds)
            .finish()
    }
}

impl ReapOptions {
    /// Reap everything of every dead owner.
    pub fn new() -> ReapOptions {
        ReapOptions::default()
    }

    /// Report what would be reaped, and change nothing.
    pub fn dry_run(mut self, yes: bool) -> ReapOptions {
        self.dry_run = yes;
        self
    }

    /// Only owners that ran this same program (the first word of the command line), for a
    /// service that reaps its own earlier, crashed runs when it starts.
    pub fn same_program(mut self, yes: bool) -> ReapOptions {
        self.same_program = yes;
        self
    }

    /// Reaps [`Resource::Custom`] records of `kind` with `handler`. A custom record whose kind
    /// has no handler fails (and is kept), so a later reap that knows it can finish it.
    ///
    /// ```
    /// use closeout_journal::ReapOptions;
    /// let opts = ReapOptions::new().handler("my-app/queue", |data| Ok(format!("drained {data}")));
    /// # let _ = opts;
    /// ```
    pub fn handler(
        mut self,
        kind: impl Into<String>,
        handler: impl Fn(&serde_json::Value) -> Result<String, String> + Send + Sync + 'static,
    ) -> ReapOptions {
        self.handlers.push((kind.into(), Arc::new(handler)));
        self
    }
}

/// What happened to one record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Outcome {
    /// Cleaned up (or found already gone), and released.
    Reaped {
        /// What was done.
        detail: String,
    },
    /// Not cleaned up; the record stays for the next reap.
    Failed {
        /// Why.
        error: String,
    },
    /// Left alone on purpose, and released (recreated by someone else, another boot).
    Skipped {
        /// Why.
        why: String,
    },
    /// A dry run: what would be done.
    WouldReap,
}

/// One record's reap.
#[derive(Clone, Debug, Serialize)]
pub struct RecordReap {
    /// The record.
    pub record: Record,
    /// What happened.
    pub outcome: Outcome,
}

/// One dead owner's reap.
#[derive(Clone, Debug, Serialize)]
pub struct OwnerReap {
    /// Its log.
    pub key: OwnerKey,
    /// Who it was.
    pub owner: Option<Header>,
    /// Each unreleased record.
    pub records: Vec<RecordReap>,
    /// Whether its log was removed (everything released).
    pub removed: bool,
}

/// A reap's report: per dead owner, per record, what happened.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ReapReport {
    /// Dead owners reaped.
    pub owners: Vec<OwnerReap>,
    /// Owners left alone: alive (or being reaped by someone else right now).
    pub live: Vec<OwnerKey>,
    /// Logs that could not be taken, and why (a symlink where a log should be, an unreadable
    /// file): left as they are.
    pub refused: Vec<(OwnerKey, String)>,
    /// Whether this was a dry run.
    pub dry_run: bool,
    /// Logs of owners that died while making them (no record yet), removed.
    pub swept: usize,
}

impl ReapReport {
    /// Whether no record failed.
    pub fn is_success(&self) -> bool {
        self.refused.is_empty() && self.records().all(|r| !matches!(r.outcome, Outcome::Failed { .. }))
    }

    /// Every record's reap.
    pub fn records(&self) -> impl Iterator<Item = &RecordReap> {
        self.owners.iter().flat_map(|o| o.records.iter())
    }
}

impl std::fmt::Display for ReapReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.records().count();
        writeln!(
            f,
            "reap{}: {} dead owner(s), {n} record(s); {} live owner(s) left alone",
            if self.dry_run { " (dry run)" } else { "" },
            self.owners.len(),
            self.live.len()
        )?;
        for (key, why) in &self.refused {
            writeln!(f, "  {} — refused: {why}", key.0)?;
        }
        for owner in &self.owners {
            let who = owner.owner.as_ref().map_or_else(
                || "unknown owner".to_owned(),
                |h| format!("pid {} ({})", h.owner.pid, h.cmdline.join(" ")),
            );
            writeln!(f, "  {} — {who}", owner.key.0)?;
            for r in &owner.records {
                let (status, text) = match &r.outcome {
                    Outcome::Reaped { detail } => ("reaped", detail.as_str()),
                    Outcome::Failed { error } => ("FAILED", error.as_str()),
                    Outcome::Skipped { why } => ("skipped", why.as_str()),
                    Outcome::WouldReap => ("would reap", ""),
                };
                writeln!(
                    f,
                    "    #{:<4} {:<10} {:<8} {}",
                    r.record.id,
                    kind(&r.record.resource),
                    status,
                    text
                )?;
            }
        }
        Ok(())
    }
}

fn kind(r: &Resource) -> &'static str {
    match r {
        Resource::ProcessTree { .. } => "tree",
        Resource::Path { what: PathKind::Dir, .. } => "dir",
        Resource::Path { what: PathKind::File, .. } => "file",
        Resource::Path { what: PathKind::Socket, .. } => "socket",
        Resource::Command { .. } => "command",
        Resource::Custom { .. } => "custom",
    }
}

/// One owner in the journal, alive or dead.
#[derive(Clone, Debug, Serialize)]
pub struct OwnerListing {
    /// Its log.
    pub key: OwnerKey,
    /// Whether it holds its lock (it runs).
    pub alive: bool,
    /// Who it is.
    pub owner: Option<Header>,
    /// How long ago its log was made, in milliseconds.
    pub age_ms: Option<u64>,
    /// Its records not released yet.
    pub records: Vec<Record>,
}

/// Every owner in `store`, with its unreleased records. Touches nothing.
///
/// # Errors
///
/// The store could not be read.
pub fn list(store: &dyn Store) -> Result<Vec<OwnerListing>, JournalError> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let mut out = Vec::new();
    for key in store.owners()? {
        let Some((alive, lines)) = store.peek(&key)? else { continue };
        let (owner, records) = replay(&lines);
        let age_ms = owner.as_ref().map(|h| now.saturating_sub(h.created_ms));
        out.push(OwnerListing { key, alive, owner, age_ms, records });
    }
    Ok(out)
}

/// Reaps every dead owner in `store`: each unreleased record is cleaned up and released; a
/// log with nothing left is removed. Live owners are listed in the report, never touched.
///
/// # Errors
///
/// The store could not be read. A record that fails is in the report, not an error.
///
/// ```
/// let state = tempfile::tempdir()?;
/// let store = closeout_journal::FileStore::open(state.path())?;
/// let report = closeout_journal::reap(&store, &closeout_journal::ReapOptions::new())?;
/// assert!(report.is_success() && report.owners.is_empty());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn reap(store: &dyn Store, opts: &ReapOptions) -> Result<ReapReport, JournalError> {
    let mut report = ReapReport { dry_run: opts.dry_run, ..ReapReport::default() };
    if !opts.dry_run {
        report.swept = store.sweep()?;
    }
    let me = std::env::args().next().unwrap_or_default();
    let mine = ProcessId::current();
    for key in store.owners()? {
        let mut claim = match store.claim(&key) {
            Ok(Some(claim)) => claim,
            Ok(None) => {
                report.live.push(key);
                continue;
            }
            Err(e) => {
                report.refused.push((key, e.to_string()));
                continue;
            }
        };
        let (owner, records) = replay(claim.lines());
        // Our own log (in this process, the lock is ours already): never a dead owner.
        if owner.as_ref().is_some_and(|h| h.owner == mine) {
            report.live.push(key);
            continue;
        }
        if opts.same_program && owner.as_ref().and_then(|h| h.cmdline.first()) != Some(&me) {
            continue;
        }
        let mut done = OwnerReap { key, owner: owner.clone(), records: Vec::new(), removed: false };
        let mut all_released = true;
        for record in records {
            if opts.dry_run {
                done.records.push(RecordReap { record, outcome: Outcome::WouldReap });
                all_released = false;
                continue;
            }
            let outcome = reap_one(owner.as_ref(), &record, opts);
            let line = match &outcome {
                Outcome::Failed { error } => Line::Failed { id: record.id, error: error.clone() },
                _ => Line::Release { id: record.id },
            };
            // Reaping a tree or a path again is harmless; running a command again may not be.
            let sync = matches!(record.resource, Resource::Command { .. } | Resource::Custom { .. });
            let outcome = match claim.append(&line, sync) {
                Ok(()) => outcome,
                Err(e) => Outcome::Failed { error: format!("{outcome:?}, but recording that failed: {e}") },
            };
            all_released &= !matches!(outcome, Outcome::Failed { .. });
            done.records.push(RecordReap { record, outcome });
        }
        if all_released {
            done.removed = claim.remove().is_ok();
        } else if let Err(e) = claim.sync() {
            report.refused.push((done.key.clone(), format!("syncing the reap's records: {e}")));
        }
        report.owners.push(done);
    }
    Ok(report)
}

fn reap_one(owner: Option<&Header>, record: &Record, opts: &ReapOptions) -> Outcome {
    match &record.resource {
        Resource::ProcessTree { cgroup, marker, pgid, pids } => {
            if owner.is_some_and(|h| h.boot_id != boot_id()) {
                return Outcome::Skipped {
                    why: "recorded in another boot: its processes died with it".into(),
                };
            }
            match kill_tree(cgroup.as_deref(), marker, *pgid, pids) {
                Ok(detail) => Outcome::Reaped { detail },
                Err(error) => Outcome::Failed { error },
            }
        }
        Resource::Path { path, what, id } => reap_path(owner, path, *what, *id, record.completed),
        Resource::Command { program, args, timeout_ms } => {
            match run_command(program, args, Duration::from_millis(*timeout_ms)) {
                Ok(detail) => Outcome::Reaped { detail },
                Err(error) => Outcome::Failed { error },
            }
        }
        Resource::Custom { kind, data } => match opts.handlers.iter().find(|(k, _)| k == kind) {
            Some((_, handler)) => {
                match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| handler(data))) {
                    Ok(Ok(detail)) => Outcome::Reaped { detail },
                    Ok(Err(error)) => Outcome::Failed { error },
                    Err(_) => Outcome::Failed { error: format!("the {kind} handler panicked") },
                }
            }
            None => Outcome::Failed { error: format!("no handler for {kind} records in this reap; kept") },
        },
    }
}

/// The cgroup v2 file system's magic number (`statfs`).
const CGROUP2_MAGIC: u64 = 0x6367_7270;

fn kill_tree(
    cgroup: Option<&Path>,
    marker: &str,
    pgid: Option<u32>,
    pids: &[ProcessId],
) -> Result<String, String> {
    let mut done = Vec::new();
    let mut killed: Vec<ProcessId> = Vec::new();
    if let Some(cg) = cgroup {
        if cg.exists() {
            // Only a cgroup made for a tree, on a real cgroup2 file system.
            let is_cgroup2 = rustix::fs::statfs(cg).is_ok_and(|s| s.f_type as u64 == CGROUP2_MAGIC);
            let named = cg.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("closeout-"));
            if !is_cgroup2 || !named {
                return Err(format!("{} is not a tree's cgroup; left alone", cg.display()));
            }
            if std::fs::write(cg.join("cgroup.kill"), "1").is_err() {
                for pid in procs(cg) {
                    if let Some(id) = ProcessId::of(pid) {
                        kill_exact(id);
                    }
                }
            }
            let until = Instant::now() + GONE_WAIT;
            while populated(cg) {
                if Instant::now() >= until {
                    return Err(format!("{} still populated {GONE_WAIT:?} after cgroup.kill", cg.display()));
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            remove_cgroup(cg).map_err(|e| format!("removing {}: {e}", cg.display()))?;
            done.push(format!("cgroup {} killed and removed", cg.display()));
        } else {
            done.push(format!("cgroup {} already gone", cg.display()));
        }
    }
    for &id in pids {
        if kill_exact(id) {
            killed.push(id);
        }
    }
    // Again until a scan finds no one: a member can fork between a scan and its SIGKILL, and
    // its children carry the marker too (killed members fork no more, so this ends).
    // "Nothing found" must hold three scans in a row, 2 ms apart: a process in the middle of
    // an `exec` has no environment to read for a moment.
    let until = Instant::now() + GONE_WAIT;
    let mut quiet = 0;
    loop {
        let found: Vec<ProcessId> = marked(marker);
        if found.is_empty() {
            quiet += 1;
            if quiet == 3 {
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
            continue;
        }
        quiet = 0;
        if Instant::now() >= until {
            return Err(format!("{} marked process(es) still running after {GONE_WAIT:?}", found.len()));
        }
        for id in found {
            if kill_exact(id) {
                killed.push(id);
            }
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    // The group only while its leader is the recorded process (then the id is the tree's).
    if let Some(g) = pgid
        && pids.iter().any(|p| p.pid == g && p.is_alive())
        && let Some(pg) = rustix::process::Pid::from_raw(g as i32)
    {
        let _ = rustix::process::kill_process_group(pg, rustix::process::Signal::KILL);
    }
    let until = Instant::now() + GONE_WAIT;
    while let Some(left) = killed.iter().find(|p| p.is_running()) {
        if Instant::now() >= until {
            return Err(format!("pid {} survived SIGKILL for {GONE_WAIT:?}", left.pid));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    killed.sort();
    killed.dedup();
    if !killed.is_empty() {
        done.push(format!("{} process(es) killed", killed.len()));
    }
    if done.is_empty() {
        done.push("nothing left running".into());
    }
    Ok(done.join("; "))
}

/// SIGKILL to `id` if it is still that process (through its pidfd). True if sent.
fn kill_exact(id: ProcessId) -> bool {
    id.pidfd()
        .is_some_and(|fd| rustix::process::pidfd_send_signal(&fd, rustix::process::Signal::KILL).is_ok())
}

/// Processes whose environment carries `CLOSEOUT_TREE=<marker>` (the tree's marker).
fn marked(marker: &str) -> Vec<ProcessId> {
    crate::identity::processes_with_env("CLOSEOUT_TREE", marker)
}

fn procs(cg: &Path) -> Vec<u32> {
    std::fs::read_to_string(cg.join("cgroup.procs"))
        .map(|s| s.lines().filter_map(|l| l.trim().parse().ok()).collect())
        .unwrap_or_default()
}

fn populated(cg: &Path) -> bool {
    std::fs::read_to_string(cg.join("cgroup.events"))
        .is_ok_and(|e| e.lines().any(|l| l.trim() == "populated 1"))
}

fn remove_cgroup(cg: &Path) -> std::io::Result<()> {
    let until = Instant::now() + Duration::from_secs(1);
    loop {
        match std::fs::remove_dir(cg) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(_) if Instant::now() < until => std::thread::sleep(Duration::from_millis(2)),
            Err(e) => return Err(e),
        }
    }
}

fn reap_path(
    owner: Option<&Header>,
    path: &Path,
    what: PathKind,
    id: Option<FileId>,
    completed: bool,
) -> Outcome {
    let now = match FileId::of(path) {
        Ok(now) => now,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Outcome::Reaped { detail: format!("{} already gone", path.display()) };
        }
        Err(e) => return Outcome::Failed { error: format!("{}: {e}", path.display()) },
    };
    let ours = match (id, completed) {
        (Some(id), _) => id == now,
        // Created, maybe, but never completed: only a name that carries the owner's token.
        (None, _) => owner.is_some_and(|h| {
            let token = format!("{}.{}", h.owner.pid, h.owner.start);
            let mine = std::fs::symlink_metadata(path).is_ok_and(|m| {
                std::os::unix::fs::MetadataExt::uid(&m) == rustix::process::geteuid().as_raw()
            });
            mine && path.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.contains(&token))
        }),
    };
    if !ours {
        return Outcome::Skipped { why: format!("{} is not the recorded object any more", path.display()) };
    }
    let removed = match what {
        PathKind::Dir => std::fs::remove_dir_all(path),
        PathKind::File | PathKind::Socket => std::fs::remove_file(path),
    };
    match removed {
        Ok(()) => Outcome::Reaped { detail: format!("{} removed", path.display()) },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Outcome::Reaped { detail: format!("{} already gone", path.display()) }
        }
        Err(e) => Outcome::Failed { error: format!("removing {}: {e}", path.display()) },
    }
}

fn run_command(program: &str, args: &[String], timeout: Duration) -> Result<String, String> {
    let mut child = std::process::Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(|e| format!("{program}: {e}"))?;
    let until = Instant::now() + timeout;
    let mut pause = Duration::from_millis(1);
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => return Ok(format!("{program} ran ({status})")),
            Ok(Some(status)) => return Err(format!("{program} failed: {status}")),
            Ok(None) if Instant::now() >= until => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("{program} timed out after {timeout:?} (killed)"));
            }
            Ok(None) => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(50));
            }
            // Someone else in this process waited for every child (a `waitpid(-1)` loop): the
            // status is lost, so the record stays for the next reap.
            Err(e) if e.raw_os_error() == Some(10) => {
                return Err(format!("{program}: its exit status was taken by another wait in this process"));
            }
            Err(e) => return Err(format!("{program}: {e}")),
        }
    }
}
