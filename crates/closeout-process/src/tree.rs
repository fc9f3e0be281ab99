//! [`ProcessTree`]: a child process and everything it starts, stopped as one.

use crate::lock;
use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::process::{Child, Command, ExitStatus};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use closeout::last_action::LastAction;
use closeout::{Category, Resource, Scope};
use closeout_journal::{Entry, Journal, ProcessId, Resource as Record};
use rustix::process::Signal;

use crate::scan;

/// How long a tree may take to exit after SIGTERM before it gets SIGKILL, unless
/// [`TreeOptions::grace`] says otherwise.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(5);

/// How long the ladder waits after SIGKILL before it reports survivors (a process in
/// uninterruptible sleep cannot die sooner).
const KILL_WAIT: Duration = Duration::from_secs(2);

/// Whether a seen member needs nothing more from us (fallback): reaped, or gone for good. A
/// member that is still a zombie, even another process's, is not settled: when its parent (a
/// member too, as a rule) exits, it becomes our child (we are its subreaper), and only we can
/// reap it then.
fn settled(seen: &BTreeMap<u32, Option<u64>>, p: u32) -> bool {
    match seen.get(&p) {
        Some(&Some(start)) => {
            let id = ProcessId { pid: p, start };
            scan::reap_checked(id) && !(scan::state(p) == Some('Z') && ProcessId::of(p) == Some(id))
        }
        _ => true,
    }
}

/// How long the fallback's last step waits for a member's zombie to come to us (its parent, a
/// member too, is exiting): reparenting follows the parent's exit within microseconds.
const REPARENT_WAIT: Duration = Duration::from_millis(100);

/// How often the ladder looks: short, so that it returns within a few milliseconds of the last
/// process exiting.
/// The ladder's first pause between looks at the tree; it doubles up to [`MAX_POLL`], and goes
/// back to the start when the ladder moves on (SIGKILL), so a stop wastes no CPU in a long grace.
const POLL: Duration = Duration::from_millis(1);
const MAX_POLL: Duration = Duration::from_millis(50);
const MAX_KILL_POLL: Duration = Duration::from_millis(5);

/// How a [`ProcessTree`] is started and stopped.
///
/// ```
/// use closeout_process::TreeOptions;
/// use std::time::Duration;
/// let opts = TreeOptions::new().grace(Duration::from_secs(2)).new_session(true).kill_with_parent(true);
/// # let _ = opts;
/// ```
#[derive(Clone, Debug)]
pub struct TreeOptions {
    grace: Duration,
    new_session: bool,
    kill_with_parent: bool,
    cgroup: bool,
    max_pids: Option<u64>,
    max_memory: Option<u64>,
    journal: Option<Journal>,
}

impl Default for TreeOptions {
    fn default() -> Self {
        TreeOptions::new()
    }
}

impl TreeOptions {
    /// A new process group, [`DEFAULT_GRACE`], no new session, no parent-death signal.
    pub fn new() -> TreeOptions {
        TreeOptions {
            grace: DEFAULT_GRACE,
            new_session: false,
            kill_with_parent: false,
            cgroup: true,
            max_pids: None,
            max_memory: None,
            journal: None,
        }
    }

    /// Time between SIGTERM and SIGKILL.
    pub fn grace(mut self, grace: Duration) -> TreeOptions {
        self.grace = grace;
        self
    }

    /// Starts the child in a new session (`setsid`): detached from the terminal, so a Ctrl-C
    /// in the terminal reaches only the parent, which then stops the tree in order.
    pub fn new_session(mut self, yes: bool) -> TreeOptions {
        self.new_session = yes;
        self
    }

    /// Linux: the child gets SIGKILL when its parent dies, even by SIGKILL, so it cannot outlive
    /// an owner that had no chance to stop it. The kernel ties this to the *thread* that spawned
    /// the child: spawn from a thread that lives as long as the owner (such as `main`).
    pub fn kill_with_parent(mut self, yes: bool) -> TreeOptions {
        self.kill_with_parent = yes;
        self
    }

    /// Whether the tree gets a cgroup of its own when a writable cgroup v2 hierarchy is there
    /// (default: yes). `false` forces the fallback (process group and marker), as the
    /// environment variable [`NO_CGROUP_ENV`](crate::NO_CGROUP_ENV) does; see [`Containment`].
    pub fn cgroup(mut self, yes: bool) -> TreeOptions {
        self.cgroup = yes;
        self
    }

    /// At most `n` processes in the tree at once (`pids.max`): a fork beyond it fails in the
    /// tree (`EAGAIN`), so a fork bomb stays bounded. Needs the `pids` controller delegated;
    /// without it (or without a cgroup) the spawn is refused with an
    /// [`Unsupported`](std::io::ErrorKind::Unsupported) error naming what is missing, never
    /// started without its limit.
    ///
    /// ```
    /// use closeout_process::{ProcessTree, TreeOptions};
    /// use std::process::Command;
    /// match ProcessTree::spawn(Command::new("true").arg("x"), TreeOptions::new().max_pids(64)) {
    ///     Ok(tree) => { tree.stop(); }
    ///     Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::Unsupported, "{e}"),
    /// }
    /// ```
    pub fn max_pids(mut self, n: u64) -> TreeOptions {
        self.max_pids = Some(n);
        self
    }

    /// At most `bytes` of memory for the tree (`memory.max`; the kernel reclaims, then
    /// OOM-kills inside the tree). Needs the `memory` controller delegated, as
    /// [`max_pids`](TreeOptions::max_pids) needs `pids`.
    pub fn max_memory(mut self, bytes: u64) -> TreeOptions {
        self.max_memory = Some(bytes);
        self
    }

    /// Records the tree in `journal` (its cgroup, group, marker and root, before the spawn), so
    /// that a `closeout_journal::reap` kills it if this process dies without stopping it.
    /// Without this, trees record themselves in the default journal if one is set
    /// ([`Journal::set_default`]).
    ///
    /// ```
    /// use closeout_journal::Journal;
    /// use closeout_process::{ProcessTree, TreeOptions};
    /// use std::process::Command;
    /// let state = tempfile::tempdir()?;
    /// let journal = Journal::open(state.path())?;
    /// let tree = ProcessTree::spawn(Command::new("sleep").arg("60"), TreeOptions::new().journal(&journal))?;
    /// assert_eq!(journal.live(), 1);
    /// tree.stop();
    /// assert_eq!(journal.live(), 0); // released once the tree is gone
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn journal(mut self, journal: &Journal) -> TreeOptions {
        self.journal = Some(journal.clone());
        self
    }

    fn limits(&self) -> Vec<(&'static str, u64)> {
        let pids = self.max_pids.map(|n| ("pids.max", n));
        let memory = self.max_memory.map(|n| ("memory.max", n));
        pids.into_iter().chain(memory).collect()
    }
}

/// How a tree is contained, which decides what a stop can guarantee.
///
/// - **`Cgroup`**: the tree has a cgroup v2 of its own, joined by the child before it ran
///   anything. Every process it starts is born inside and cannot leave it (leaving needs write
///   access to another cgroup), whatever it does to its environment, process group or session.
///   The stop ends with `cgroup.kill` (atomic, racing forks included) and counts the tree gone
///   only when the kernel reports the cgroup empty (`populated 0`, watched with inotify), then
///   removes it. Cannot catch: a member that moves itself into another cgroup it can write to
///   (root, or a delegated subtree), or one handed to another service (a D-Bus activation,
///   `systemd-run`) — neither was ever the tree's child in the kernel's eyes.
/// - **`Fallback`**: no writable cgroup v2 (a container's read-only `/sys/fs/cgroup`, no
///   delegation, [`NO_CGROUP_ENV`](crate::NO_CGROUP_ENV)), with the reason. Members are the
///   process group plus every process carrying the inherited marker; every signal to a
///   member other than the child is checked against the start time recorded when it was first
///   seen (through a pidfd, so a reused pid is never hit), and the group gets each signal too.
///   Cannot catch: a process that clears its environment *and* leaves the group (`env -i
///   setsid …`), and a process forked and gone between two scans (harmless) or forked after
///   the last one (a fork racing the final SIGKILL). With [`become_subreaper`](crate::become_subreaper)
///   double-forked daemons come back to this process and are reaped.
///
/// In both modes the direct child is held by a pidfd and reaped only when the stop ends, and
/// a forced exit of this process (second signal, a teardown past its deadline — see
/// `closeout::hooks`) kills the tree first through a
/// [`LastAction`](closeout::last_action::LastAction) kept ready since the spawn.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Containment {
    /// The tree's own cgroup, at this path.
    Cgroup(std::path::PathBuf),
    /// Process group and marker, and why cgroups were not used.
    Fallback(String),
}

impl Default for Containment {
    fn default() -> Self {
        Containment::Fallback(String::new())
    }
}

/// How a stop went: the child's exit status and which processes needed SIGKILL.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StopReport {
    /// The direct child's exit status (`None` if it could not be collected).
    pub status: Option<ExitStatus>,
    /// Every process of the tree that was seen during the stop.
    pub seen: Vec<u32>,
    /// Processes that were still running when the grace period ended and got SIGKILL.
    pub killed: Vec<u32>,
    /// Processes still alive after SIGKILL and its wait (uninterruptible sleep): reported, not
    /// waited on.
    pub survivors: Vec<u32>,
    /// How long the stop took, the cgroup's removal included (an `rmdir` of a cgroup waits for
    /// the kernel's RCU grace period: often 10–20 ms).
    pub took: Duration,
    /// When the stop first saw every member gone (in cgroup mode: the kernel reported the
    /// cgroup empty), from its start; `None` if something survived.
    pub gone: Option<Duration>,
    /// How the tree was contained (and so what the stop could guarantee).
    pub containment: Containment,
}

impl StopReport {
    /// One line for a report entry: "stopped 3 process(es), 1 needed SIGKILL" (and how many
    /// survived SIGKILL, if any).
    ///
    /// ```
    /// use closeout_process::{ProcessTree, TreeOptions};
    /// let tree = ProcessTree::spawn(&mut std::process::Command::new("true"), TreeOptions::new())?;
    /// assert!(tree.stop().summary().starts_with("stopped "));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn summary(&self) -> String {
        let mut line = format!("stopped {} process(es)", self.seen.len());
        if !self.killed.is_empty() {
            line.push_str(&format!(", {} needed SIGKILL", self.killed.len()));
        }
        if !self.survivors.is_empty() {
            line.push_str(&format!(", {} survived SIGKILL", self.survivors.len()));
        }
        line
    }

    /// Whether everything exited within the grace period after SIGTERM.
    pub fn is_graceful(&self) -> bool {
        self.killed.is_empty() && self.survivors.is_empty()
    }
}

/// A stop that was not graceful, as the teardown report shows it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StopError {
    /// Some processes ignored SIGTERM for the whole grace period.
    #[error("{} process(es) needed SIGKILL after the {grace:?} grace period: {pids:?}; exit status {status}", pids.len())]
    NeededKill {
        /// The grace period.
        grace: Duration,
        /// Who was killed.
        pids: Vec<u32>,
        /// The child's exit status.
        status: String,
    },
    /// Some processes survived even SIGKILL.
    #[error("{} process(es) survived SIGKILL: {pids:?}", pids.len())]
    Survivors {
        /// Who is still there.
        pids: Vec<u32>,
    },
    /// Signalling failed (permissions).
    #[error("signalling the tree failed: {0}")]
    Signal(#[from] io::Error),
}

/// The direct child, spawned through std or tokio.
enum Root {
    Std(Child),
    Tokio(tokio::process::Child),
}

impl Root {
    /// Collects the exit status (reaps the child), if it exited.
    fn try_wait(&mut self) -> io::Result<Option<ExitStatus>> {
        match self {
            Root::Std(c) => c.try_wait(),
            Root::Tokio(c) => c.try_wait(),
        }
    }
}

/// The tree's state. Locks: `child`, `report` and `last` are each taken alone (never two at
/// once), and none is held across a wait or a signal to the tree.
struct Inner {
    child: Mutex<Root>,
    pid: u32,
    /// The child's pidfd (Linux 5.3): signals and exit checks go through it, so they reach
    /// this child and no process that reused its number. The child itself is reaped only at the
    /// end of a stop, so until then its pid (and the group id) cannot be reused.
    pidfd: Option<OwnedFd>,
    marker: String,
    cgroup: Option<crate::cgroup::TreeCgroup>,
    containment: Containment,
    grace: Duration,
    /// Kept ready while the tree may run: a forced exit of this process kills the tree
    /// (`cgroup.kill`, or SIGKILL to the group). Dropped when a stop ends.
    last: Mutex<Option<LastAction>>,
    /// The tree's journal record, released when a stop leaves nothing behind.
    journal: Mutex<Option<Entry>>,
    /// Members let go from the tree ([`ProcessTree::release_member`], fallback mode): never
    /// signalled by a stop.
    released: Mutex<BTreeSet<u32>>,
    /// The first stop's report: stopping again returns it.
    report: Mutex<Option<StopReport>>,
}

/// A child process, its process group, and every process it starts (found by an inherited
/// environment marker, see [`MARKER`](crate::MARKER)), stopped as one: SIGTERM to all, a grace
/// period, SIGKILL to what is left, and every one of our children reaped.
///
/// Clone it to keep a handle while a [`Registry`](closeout::Registry) or [`Scope`] holds the
/// stop; stopping twice returns the first stop's report.
///
/// ```
/// use closeout_process::{ProcessTree, TreeOptions};
/// use std::process::Command;
///
/// let tree = ProcessTree::spawn(Command::new("sleep").arg("60"), TreeOptions::new())?;
/// let report = tree.stop();
/// assert!(report.is_graceful()); // sleep exits on SIGTERM
/// assert!(!tree.is_running());
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Clone)]
pub struct ProcessTree {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for ProcessTree {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcessTree")
            .field("pid", &self.inner.pid)
            .field("marker", &self.inner.marker)
            .finish()
    }
}

static NEXT_TREE: AtomicU64 = AtomicU64::new(0);

/// What `prepare` set up for one spawn.
struct Prepared {
    marker: String,
    /// The journal's record of the tree (intent written before anything was made).
    entry: Option<Entry>,
    cgroup: Option<crate::cgroup::TreeCgroup>,
    containment: Containment,
    /// The open `cgroup.procs` the child writes itself into; closed once the spawn returned.
    join: Option<std::os::fd::OwnedFd>,
}

/// Marks the command's environment, makes the tree's cgroup (when it can), and sets up the
/// child's group or session.
fn prepare(cmd: &mut Command, opts: &TreeOptions) -> io::Result<Prepared> {
    // Unique among every process of this boot: a reused pid has another start time.
    let me = ProcessId::current();
    let marker = format!("{}.{}-{}", me.pid, me.start, NEXT_TREE.fetch_add(1, Ordering::Relaxed));
    cmd.env(scan::MARKER, &marker);
    let parent =
        if opts.cgroup { crate::cgroup::parent() } else { Err("TreeOptions::cgroup(false)".to_owned()) };
    let planned = parent.as_ref().ok().map(|p| crate::cgroup::TreeCgroup::plan(p, &marker));
    // The intent first: if this process dies from here on, a reap finds the cgroup and marker.
    let entry = match opts.journal.clone().or_else(Journal::current) {
        Some(journal) => {
            let intent = Record::ProcessTree {
                cgroup: planned.clone(),
                marker: marker.clone(),
                pgid: None,
                pids: vec![],
            };
            Some(journal.record(intent).map_err(io::Error::other)?)
        }
        None => None,
    };
    let made = match (parent, planned) {
        (Ok(parent), Some(planned)) => {
            let cg = crate::cgroup::TreeCgroup::create(planned)
                .map_err(|e| format!("creating a cgroup in {}: {e}", parent.display()));
            cg.and_then(|cg| match cg.procs_for_join() {
                Ok(fd) => Ok((cg, fd, parent)),
                Err(e) => {
                    cg.remove();
                    Err(format!("opening {}: {e}", cg.path.join("cgroup.procs").display()))
                }
            })
        }
        (Err(why), _) => Err(why),
        (Ok(_), None) => Err("no cgroup planned".to_owned()),
    };
    let limits = opts.limits();
    let made = match made {
        Ok((cg, fd, parent)) => match cg.limit(&parent, &limits) {
            Ok(()) => Ok((cg, fd)),
            Err(e) => {
                cg.remove();
                release(entry);
                return Err(e);
            }
        },
        Err(why) if !limits.is_empty() => {
            release(entry);
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                format!(
                    "limits ({}) need the tree's own cgroup, and there is none: {why}",
                    limit_names(&limits)
                ),
            ));
        }
        Err(why) => Err(why),
    };
    let (cgroup, join, containment) = match made {
        Ok((cg, fd)) => {
            let at = cg.path.clone();
            (Some(cg), Some(fd), Containment::Cgroup(at))
        }
        Err(why) => (None, None, Containment::Fallback(why)),
    };
    let raw = join.as_ref().map(crate::cgroup::raw);
    if opts.new_session || opts.kill_with_parent || raw.is_some() {
        crate::pre_exec::install(cmd, opts.new_session, opts.kill_with_parent, raw);
    }
    if !opts.new_session {
        std::os::unix::process::CommandExt::process_group(cmd, 0);
    }
    Ok(Prepared { marker, entry, cgroup, containment, join })
}

/// Releases a journal record whose resource is gone (or never came to be). If the release
/// cannot be written, the record stays, and a reap later finds nothing to do for it.
fn release(entry: Option<Entry>) {
    if let Some(entry) = entry
        && let Err(e) = entry.release()
    {
        tracing::warn!(error = %e, "closeout-process: a journal record could not be released");
    }
}

fn limit_names(limits: &[(&'static str, u64)]) -> String {
    limits.iter().map(|(file, n)| format!("{file} = {n}")).collect::<Vec<_>>().join(", ")
}

/// Runs `spawn` for a prepared command: the join descriptor is closed once the child exists,
/// and a spawn that failed leaves no cgroup behind.
fn spawn_prepared<C>(
    mut prepared: Prepared,
    spawn: impl FnOnce() -> io::Result<C>,
) -> io::Result<(C, Prepared)> {
    let spawned = spawn();
    drop(prepared.join.take());
    match spawned {
        Ok(child) => Ok((child, prepared)),
        Err(e) => {
            if let Some(cg) = prepared.cgroup.take() {
                cg.remove();
            }
            release(prepared.entry.take());
            Err(e)
        }
    }
}

impl ProcessTree {
    /// Spawns `cmd` as the root of a new tree (its own process group, or session).
    ///
    /// # Errors
    ///
    /// What spawning returns (program not found, no permission, …).
    pub fn spawn(cmd: &mut Command, opts: TreeOptions) -> io::Result<ProcessTree> {
        let (child, prepared) = spawn_prepared(prepare(cmd, &opts)?, || cmd.spawn())?;
        let pid = child.id();
        Ok(ProcessTree::new(Root::Std(child), pid, prepared, &opts))
    }

    /// [`spawn`](ProcessTree::spawn) for a tokio command (its child is reaped by tokio's
    /// machinery too; the stop works the same).
    ///
    /// # Errors
    ///
    /// What spawning returns.
    ///
    /// ```
    /// use closeout_process::{ProcessTree, TreeOptions};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> std::io::Result<()> {
    /// let mut cmd = tokio::process::Command::new("sleep");
    /// cmd.arg("60");
    /// let tree = ProcessTree::spawn_tokio(&mut cmd, TreeOptions::new())?;
    /// assert!(tree.stop_async().await.is_graceful());
    /// # Ok(()) }
    /// ```
    pub fn spawn_tokio(cmd: &mut tokio::process::Command, opts: TreeOptions) -> io::Result<ProcessTree> {
        let prepared = prepare(cmd.as_std_mut(), &opts)?;
        let (child, prepared) = spawn_prepared(prepared, || cmd.spawn())?;
        let pid = child.id().ok_or_else(|| io::Error::other("the child exited before its pid was read"))?;
        Ok(ProcessTree::new(Root::Tokio(child), pid, prepared, &opts))
    }

    fn new(root: Root, pid: u32, prepared: Prepared, opts: &TreeOptions) -> ProcessTree {
        let Prepared { marker, entry, cgroup, containment, .. } = prepared;
        if let Some(entry) = &entry {
            // What the spawn produced: the group and the root by pid and start time.
            let done = Record::ProcessTree {
                cgroup: cgroup.as_ref().map(|cg| cg.path.clone()),
                marker: marker.clone(),
                pgid: Some(pid),
                pids: ProcessId::of(pid).into_iter().collect(),
            };
            if let Err(e) = entry.complete(done) {
                tracing::warn!(pid, error = %e, "closeout-process: the journal record stays an intent");
            }
        }
        // Opened before anything could reap the child, so it is this child's.
        let pidfd = crate::wait::pidfd(pid).ok();
        let last = match cgroup.as_ref().and_then(|cg| cg.kill_handle()) {
            Some(fd) => LastAction::write_one(fd),
            None => LastAction::kill_process_group(pid),
        };
        let last = last
            .map_err(|e| tracing::warn!(pid, error = %e, "closeout-process: a forced exit will not kill this tree"))
            .ok();
        ProcessTree {
            inner: Arc::new(Inner {
                child: Mutex::new(root),
                pid,
                pidfd,
                marker,
                cgroup,
                containment,
                grace: opts.grace,
                last: Mutex::new(last),
                journal: Mutex::new(entry),
                released: Mutex::new(BTreeSet::new()),
                report: Mutex::new(None),
            }),
        }
    }

    /// Whether the direct child has exited, without reaping it (through its pidfd); where there
    /// is no pidfd, by reaping it (the status stays in the `Child`).
    fn root_exited(&self) -> bool {
        match self.inner.pidfd.as_ref().and_then(|fd| crate::wait::exited(fd.as_fd())) {
            Some(exited) => exited,
            None => self.child().try_wait().ok().flatten().is_some(),
        }
    }

    /// Sends `sig` to the direct child: through its pidfd, else by pid (which is safe as long as
    /// it is not reaped, and it is reaped only at the end of a stop).
    fn signal_root(&self, sig: Signal) {
        match &self.inner.pidfd {
            Some(fd) => {
                let _ = rustix::process::pidfd_send_signal(fd, sig);
            }
            None => {
                if let Some(p) = rustix::process::Pid::from_raw(self.inner.pid as i32) {
                    let _ = rustix::process::kill_process(p, sig);
                }
            }
        }
    }

    /// The child's pid (also its process group id).
    pub fn pid(&self) -> u32 {
        self.inner.pid
    }

    /// The marker every process of this tree carries in `CLOSEOUT_TREE`.
    pub fn marker(&self) -> &str {
        &self.inner.marker
    }

    /// How the tree is contained: its own cgroup, or the fallback and why.
    pub fn containment(&self) -> &Containment {
        &self.inner.containment
    }

    /// Every live process of the tree now, the child included while it runs: the cgroup's
    /// members, or (fallback) every process carrying the marker (less the released ones).
    pub fn members(&self) -> Vec<u32> {
        match &self.inner.cgroup {
            Some(cg) => cg.procs(),
            None => self.marked().into_iter().map(|id| id.pid).collect(),
        }
    }

    /// Fallback: the running processes carrying the marker, less the released ones, each with
    /// the start time read when it was found.
    fn marked(&self) -> Vec<ProcessId> {
        let released = lock(&self.inner.released).clone();
        scan::members(&self.inner.marker).into_iter().filter(|id| !released.contains(&id.pid)).collect()
    }

    /// Waits up to `timeout` for the direct child to exit, sleeping on its pidfd (woken the
    /// moment it exits). It is not reaped: a stop collects its status. True if it exited.
    ///
    /// ```
    /// use closeout_process::{ProcessTree, TreeOptions};
    /// use std::time::Duration;
    /// let tree = ProcessTree::spawn(&mut std::process::Command::new("true"), TreeOptions::new())?;
    /// assert!(tree.wait_exit(Duration::from_secs(10)));
    /// assert_eq!(tree.stop().status.and_then(|s| s.code()), Some(0));
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn wait_exit(&self, timeout: Duration) -> bool {
        if self.root_exited() {
            return true;
        }
        let until = closeout::saturating_deadline(Instant::now(), timeout);
        let mut wake = crate::wait::Wake::new(self.inner.pidfd.as_ref().map(|fd| fd.as_fd()), None);
        loop {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return self.root_exited();
            }
            // Without a pidfd, look every 10 ms.
            let pause = if self.inner.pidfd.is_some() {
                left.min(Duration::from_secs(1))
            } else {
                left.min(Duration::from_millis(10))
            };
            match wake.as_mut() {
                Some(w) => w.wait(pause),
                None => std::thread::sleep(pause),
            }
            if self.root_exited() {
                return true;
            }
        }
    }

    /// Sends signal `sig` (a number, such as `libc::SIGUSR1`) to the direct child, through its
    /// pidfd.
    ///
    /// # Errors
    ///
    /// [`InvalidInput`](io::ErrorKind::InvalidInput) for a number that is not a named signal
    /// (the real-time signals, 34–64, are not forwarded); the OS's error.
    pub fn signal(&self, sig: i32) -> io::Result<()> {
        let sig = to_signal(sig)?;
        self.signal_root(sig);
        Ok(())
    }

    /// Sends signal `sig` to every process of the tree: the cgroup's members, or (fallback) the
    /// group and every marked process, each checked against its start time.
    ///
    /// # Errors
    ///
    /// As [`signal`](ProcessTree::signal).
    pub fn signal_members(&self, sig: i32) -> io::Result<()> {
        let sig = to_signal(sig)?;
        self.signal_root(sig);
        match &self.inner.cgroup {
            Some(cg) => {
                for p in cg.procs() {
                    cg.signal_member(p, sig);
                }
            }
            None => {
                for id in self.marked() {
                    scan::signal_checked(id, sig);
                }
            }
        }
        Ok(())
    }

    /// SIGKILL to every process of the tree at once (`cgroup.kill`; in the fallback, the group
    /// and every marked process), without a grace. A stop afterwards reaps and reports.
    pub fn kill(&self) {
        match &self.inner.cgroup {
            Some(cg) => cg.kill(),
            None => {
                let _ = self.signal_members(Signal::KILL.as_raw());
                if lock(&self.inner.released).is_empty() {
                    let _ = scan::signal_group(self.inner.pid, Signal::KILL);
                }
            }
        }
    }

    /// Lets `pid` go: it is no longer part of the tree, and no stop signals it (for a daemon
    /// the user meant to keep). In cgroup mode it moves to this process's own cgroup; in the
    /// fallback it is left out of every signal. In both, the stop no longer signals the process
    /// group as a whole (the released process may still be in it).
    ///
    /// # Errors
    ///
    /// `pid` is not a member, or the OS refused the move.
    pub fn release_member(&self, pid: u32) -> io::Result<()> {
        if pid == self.inner.pid {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the tree's own child cannot be released",
            ));
        }
        if !self.members().contains(&pid) {
            return Err(io::Error::new(io::ErrorKind::NotFound, format!("pid {pid} is not in the tree")));
        }
        if self.inner.cgroup.is_some() {
            let parent = crate::cgroup::parent().map_err(io::Error::other)?;
            std::fs::write(parent.join("cgroup.procs"), pid.to_string())?;
        }
        // In both modes: it may still be in the tree's process group, which no stop signals as
        // a whole from now on.
        lock(&self.inner.released).insert(pid);
        Ok(())
    }

    /// Whether any process of the tree is still running.
    pub fn is_running(&self) -> bool {
        let populated = self.inner.cgroup.as_ref().is_some_and(|cg| cg.populated());
        populated || !self.root_exited() || !self.members().is_empty()
    }

    /// Freezes every process of the tree (`cgroup.freeze`; in the fallback, SIGSTOP to the
    /// group), for a pause. A stop works on a frozen tree too.
    ///
    /// # Errors
    ///
    /// The OS refused.
    pub fn freeze(&self) -> io::Result<()> {
        match &self.inner.cgroup {
            Some(cg) => cg.freeze(true),
            None => scan::signal_group(self.inner.pid, Signal::STOP),
        }
    }

    /// Thaws a frozen tree (`cgroup.freeze`; in the fallback, SIGCONT to the group).
    ///
    /// # Errors
    ///
    /// The OS refused.
    pub fn thaw(&self) -> io::Result<()> {
        match &self.inner.cgroup {
            Some(cg) => cg.freeze(false),
            None => scan::signal_group(self.inner.pid, Signal::CONT),
        }
    }

    fn child(&self) -> MutexGuard<'_, Root> {
        lock(&self.inner.child)
    }

    /// Stops the tree, blocking: SIGTERM to the group and every member, the grace period,
    /// SIGKILL to whatever is left, then reaps. Returns the report (the first one again if the
    /// tree was stopped before).
    pub fn stop(&self) -> StopReport {
        let mut ladder = Ladder::new(self);
        let mut wake = ladder.wake();
        loop {
            if let Some(report) = ladder.step() {
                return self.finish(report);
            }
            let pause = ladder.pause();
            match wake.as_mut() {
                Some(w) => w.wait(pause),
                None => std::thread::sleep(pause),
            }
        }
    }

    /// [`stop`](ProcessTree::stop) without blocking the thread (needs a tokio runtime with
    /// timers).
    pub async fn stop_async(&self) -> StopReport {
        let mut ladder = Ladder::new(self);
        let mut wake = ladder.wake();
        loop {
            if let Some(report) = ladder.step() {
                return self.finish(report);
            }
            let pause = ladder.pause();
            wake = match wake {
                Some(w) => w.wait_async(pause).await,
                None => {
                    tokio::time::sleep(pause).await;
                    None
                }
            };
        }
    }

    fn finish(&self, report: StopReport) -> StopReport {
        let mut first = lock(&self.inner.report);
        first.get_or_insert(report).clone()
    }

    /// The stop as a cleanup result: `Ok` when graceful, else the [`StopError`].
    async fn stop_for_report(self, detail: closeout::Detail) -> Result<(), StopError> {
        let report = self.stop_async().await;
        detail.set(report.summary());
        let status = report.status.map_or_else(|| "unknown".to_owned(), |s| s.to_string());
        if !report.survivors.is_empty() {
            return Err(StopError::Survivors { pids: report.survivors });
        }
        if !report.killed.is_empty() {
            return Err(StopError::NeededKill { grace: self.inner.grace, pids: report.killed, status });
        }
        Ok(())
    }

    /// A registry resource (category `Process`) whose cleanup stops the tree; its timeout
    /// covers the grace period and the wait after SIGKILL. Its report entry says what the stop
    /// did: "stopped 3 process(es), 1 needed SIGKILL".
    ///
    /// ```
    /// use closeout::Registry;
    /// use closeout_process::{ProcessTree, TreeOptions};
    /// use std::process::Command;
    /// let registry = Registry::new();
    /// let tree = ProcessTree::spawn(Command::new("sleep").arg("60"), TreeOptions::new())?;
    /// registry.register(tree.resource("sleeper"))?;
    /// let report = registry.shutdown_blocking();
    /// assert!(report.get("sleeper").unwrap().status().is_ok());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn resource(&self, id: impl Into<String>) -> Resource {
        // A registry takes timeouts up to `MAX_TIMEOUT`; a longer grace is cut by the registry's
        // deadline anyway, so the timeout saturates there rather than refusing the resource.
        let timeout =
            self.inner.grace.saturating_add(KILL_WAIT + Duration::from_secs(1)).min(closeout::MAX_TIMEOUT);
        let detail = closeout::Detail::new();
        Resource::new_async(id, self.clone().stop_for_report(detail.clone()))
            .category(Category::Process)
            .timeout(timeout)
            .detail(&detail)
    }

    /// Defers the stop in `scope` under `name`.
    ///
    /// # Errors
    ///
    /// [`Rejected`](closeout::Rejected) with a handle to the tree if the scope was released: the
    /// stop is not deferred (stop the tree yourself).
    ///
    /// ```
    /// use closeout::Scope;
    /// use closeout_process::{ProcessTree, TreeOptions};
    /// use std::process::Command;
    /// let scope = Scope::new();
    /// let tree = ProcessTree::spawn(Command::new("sleep").arg("60"), TreeOptions::new())?;
    /// tree.defer_in(&scope, "sleeper")?;
    /// assert!(scope.close().is_success());
    /// assert!(!tree.is_running());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn defer_in(
        &self,
        scope: &Scope,
        name: impl Into<std::borrow::Cow<'static, str>>,
    ) -> Result<(), closeout::Rejected<ProcessTree>> {
        scope
            .defer_release_async(name, self.clone(), |t| t.stop_for_report(closeout::Detail::new()))
            .map(drop)
    }
}

/// A signal number as rustix's `Signal`, refusing numbers that are not signals.
fn to_signal(sig: i32) -> io::Result<Signal> {
    Signal::from_named_raw(sig)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, format!("{sig} is not a signal number")))
}

enum Phase {
    Term,
    Kill(Instant),
}

/// The stop ladder as a state machine, so the blocking and the async stop share it.
struct Ladder<'a> {
    tree: &'a ProcessTree,
    start: Instant,
    phase: Phase,
    root_exited: bool,
    /// Every process of the tree seen so far, with its start time (fallback; `None` in cgroup
    /// mode, whose membership the kernel keeps): a pid is signalled and reaped only while it
    /// still names that process.
    seen: BTreeMap<u32, Option<u64>>,
    /// Seen members that may still need reaping (fallback: daemons reparented to us).
    unreaped: BTreeSet<u32>,
    /// Seen members not known dead yet (fallback).
    dying: BTreeSet<u32>,
    signalled: BTreeSet<u32>,
    killed: Vec<u32>,
    first: bool,
    poll: Duration,
    /// Looks in a row that found the tree empty (the fallback needs two).
    quiet: u32,
}

impl<'a> Ladder<'a> {
    fn new(tree: &'a ProcessTree) -> Ladder<'a> {
        Ladder {
            tree,
            start: Instant::now(),
            phase: Phase::Term,
            root_exited: false,
            seen: BTreeMap::new(),
            unreaped: BTreeSet::new(),
            dying: BTreeSet::new(),
            signalled: BTreeSet::new(),
            killed: Vec::new(),
            first: true,
            poll: POLL,
            quiet: 0,
        }
    }

    /// What the stop sleeps on between looks: the child's pidfd and the cgroup's events.
    fn wake(&self) -> Option<crate::wait::Wake> {
        let inner = &self.tree.inner;
        let events = inner.cgroup.as_ref().map(|cg| cg.path.join("cgroup.events"));
        crate::wait::Wake::new(inner.pidfd.as_ref().map(|fd| fd.as_fd()), events.as_deref())
    }

    /// The pause before the next look (a back-off from 1 ms to 50 ms).
    fn pause(&mut self) -> Duration {
        let now = self.poll;
        // After SIGKILL the end is near and short: look often (at most every 5 ms), so the
        // report comes soon after the kernel empties the tree. During the grace, back off.
        let max = if matches!(self.phase, Phase::Kill(_)) { MAX_KILL_POLL } else { MAX_POLL };
        self.poll = (self.poll * 2).min(max);
        now
    }

    /// The live members now, the child included while it runs. Fallback: records the start
    /// time of each new one, and reaps the seen ones that died (if they are our children).
    fn look(&mut self) -> Vec<u32> {
        let inner = &self.tree.inner;
        let pid = inner.pid;
        if !self.root_exited {
            self.root_exited = self.tree.root_exited();
        }
        let mut alive = match &inner.cgroup {
            // The kernel's list of a cgroup holds no zombies, and an exited process leaves its
            // cgroup at once; membership cannot be faked, so no start times are needed.
            Some(cg) => {
                let members = cg.procs();
                for &p in &members {
                    self.seen.entry(p).or_insert(None);
                }
                members
            }
            None => {
                let members = self.tree.marked();
                for id in &members {
                    if id.pid != pid && !self.seen.contains_key(&id.pid) {
                        // Read by the scan right after the marker matched: if the process had
                        // exited and its number was reused, the start time is the stranger's
                        // and its environment lacks the marker, so it is never found again.
                        self.seen.insert(id.pid, Some(id.start));
                        self.unreaped.insert(id.pid);
                    }
                }
                let mut live: BTreeSet<u32> = members.iter().map(|id| id.pid).collect();
                let seen = &self.seen;
                // A member the scan lost may not be dead yet: an exiting process has no
                // environment to read before it is a zombie. Gone means dead (a zombie, or not
                // there), checked by pid and start time.
                self.dying.retain(|p| {
                    live.contains(p)
                        || matches!(seen.get(p), Some(&Some(start)) if ProcessId { pid: *p, start }.is_running())
                });
                self.dying.extend(live.iter().copied().filter(|&p| p != pid));
                live.extend(self.dying.iter().copied());
                self.unreaped.retain(|p| live.contains(p) || !settled(seen, *p));
                live.into_iter().collect()
            }
        };
        self.seen.insert(pid, None);
        alive.retain(|&p| p != pid);
        if !self.root_exited {
            alive.push(pid);
        }
        alive
    }

    /// Sends `sig` to `p`, a member: the child through its pidfd; others (fallback) only while
    /// their start time still matches; cgroup members only while they are still inside.
    fn signal(&self, p: u32, sig: Signal) {
        if p == self.tree.inner.pid {
            self.tree.signal_root(sig);
            return;
        }
        match (&self.tree.inner.cgroup, self.seen.get(&p)) {
            (Some(cg), _) => cg.signal_member(p, sig),
            (None, Some(&Some(start))) => {
                scan::signal_checked(ProcessId { pid: p, start }, sig);
            }
            // No start time: it was gone before it could be named. Leave it.
            (None, _) => {}
        }
    }

    /// One look at the tree: signals what needs it; `Some` once nothing is left.
    fn step(&mut self) -> Option<StopReport> {
        let released = lock(&self.tree.inner.released).clone();
        let group = released.is_empty();
        if let Some(done) = lock(&self.tree.inner.report).clone() {
            return Some(done);
        }
        let pid = self.tree.inner.pid;
        let cgroup = self.tree.inner.cgroup.as_ref();
        if self.first
            && self.tree.inner.grace.is_zero()
            && let Some(cg) = cgroup
        {
            // No grace: the kill goes first, before even the first look (which reads every
            // member), so the kernel starts on it at once. The look below finds them dying.
            cg.kill();
        }
        let alive = self.look();
        let sig = match self.phase {
            Phase::Term => Signal::TERM,
            Phase::Kill(_) => Signal::KILL,
        };
        // A zero grace means SIGKILL at once: no SIGTERM first (nobody would get to act on it).
        let graceful = !self.tree.inner.grace.is_zero();
        if self.first {
            self.first = false;
            // The group too, so a member that cleared its environment still hears it. The group
            // id is the child's pid, reserved until the child is reaped at the stop's end.
            if graceful && group {
                let _ = scan::signal_group(pid, Signal::TERM);
            }
        }
        for &p in &alive {
            // In the kill phase of a cgroup, `cgroup.kill` has them all already.
            if self.signalled.insert(p)
                && !(cgroup.is_some() && sig == Signal::KILL)
                && (graceful || sig == Signal::KILL)
            {
                self.signal(p, sig);
            }
        }
        // In a cgroup, gone means the kernel says so (`populated 0`), not that our scan is empty.
        // In the fallback, the scan must come back empty twice in a row: a member in the middle
        // of an `exec` has no environment to read for a moment.
        let empty = alive.is_empty() && !cgroup.is_some_and(|cg| cg.populated());
        self.quiet = if empty { self.quiet + 1 } else { 0 };
        if empty && (cgroup.is_some() || self.quiet >= 2) {
            return Some(self.report(Vec::new()));
        }
        if empty {
            // The confirming look comes soon: an `exec` takes well under a millisecond.
            self.poll = Duration::from_micros(200);
        }
        match self.phase {
            Phase::Term if self.start.elapsed() >= self.tree.inner.grace => {
                if group {
                    let _ = scan::signal_group(pid, Signal::KILL);
                }
                match cgroup {
                    // One write kills every member, forks racing included.
                    Some(cg) => cg.kill(),
                    None => {
                        for &p in &alive {
                            self.signal(p, Signal::KILL);
                        }
                    }
                }
                self.killed = alive;
                // Members that appear from now on get SIGKILL straight away.
                self.signalled.clear();
                self.signalled.extend(self.killed.iter().copied());
                self.phase = Phase::Kill(Instant::now());
                self.poll = POLL;
                None
            }
            Phase::Kill(at) => {
                // Whatever forked since: the whole cgroup again (the fallback signals each new
                // member above).
                if let Some(cg) = cgroup {
                    cg.kill();
                }
                (at.elapsed() >= KILL_WAIT).then(|| self.report(alive))
            }
            Phase::Term => None,
        }
    }

    fn report(&mut self, survivors: Vec<u32>) -> StopReport {
        let gone = survivors.is_empty().then(|| self.start.elapsed());
        let inner = &self.tree.inner;
        // Nothing of the tree runs any more (or what does cannot be killed): the forced-exit
        // action goes now, before the child is reaped and its group id can be reused.
        drop(lock(&inner.last).take());
        let mut status = None;
        if !survivors.contains(&inner.pid) {
            // It exited (or is about to): collect it, bounded.
            let until = Instant::now() + Duration::from_secs(1);
            loop {
                status = self.tree.child().try_wait().ok().flatten();
                if status.is_some() || Instant::now() >= until {
                    break;
                }
                std::thread::sleep(POLL);
            }
        }
        match inner.cgroup.as_ref() {
            // Every member is out of the cgroup by now: reap those that came back to us.
            Some(cg) => {
                for &p in self.seen.keys().filter(|&&p| p != inner.pid) {
                    cg.reap_member(p);
                }
            }
            None => {
                // A member that died as the zombie of another member which is exiting too
                // becomes our child (we are its subreaper) only once that parent is gone: a
                // single pass would leave it a zombie. So a member still a zombie, anyone's, is
                // looked at again (`settled`), for a bounded moment.
                let until = Instant::now() + REPARENT_WAIT;
                loop {
                    let seen = &self.seen;
                    self.unreaped.retain(|p| !settled(seen, *p));
                    if self.unreaped.is_empty() || Instant::now() >= until {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        }
        // The cgroup goes once the kernel says it is empty; then the journal record goes, unless
        // something is left for a reap.
        let removed = match inner.cgroup.as_ref() {
            Some(cg) => survivors.is_empty() && !cg.populated() && cg.remove(),
            None => survivors.is_empty(),
        };
        if removed {
            release(lock(&inner.journal).take());
        }
        StopReport {
            status,
            seen: self.seen.keys().copied().collect(),
            killed: std::mem::take(&mut self.killed),
            survivors,
            took: self.start.elapsed(),
            gone,
            containment: inner.containment.clone(),
        }
    }
}
