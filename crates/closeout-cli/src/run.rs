//! `closeout run`: the command in its own cgroup (or the fallback) with a private TMPDIR,
//! journaled before it starts; signals forwarded; when it ends (or on `--timeout`), what it
//! left behind is listed, stopped and removed, and reported.

use std::process::Command;
use std::time::{Duration, Instant};

use closeout_journal::Journal;
use closeout_process::{Containment, ProcessTree, TreeOptions};
use signal_hook::consts::{SIGCHLD, SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGUSR1, SIGUSR2, SIGWINCH};

use crate::RunArgs;
use crate::exit::{CliError, LEAK_STATUS, NOT_EXECUTABLE, NOT_FOUND, TIMEOUT_STATUS};
use crate::leftovers::{self, LeftFile, Snapshot};
use crate::report::{Exit, Keep, LeftBehind, RunReport};

/// How often the supervisor looks at signals while it waits (the child's exit wakes it at
/// once through its pidfd).
const TICK: Duration = Duration::from_millis(20);

/// The signals forwarded to the command.
const FORWARDED: [i32; 7] = [SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGWINCH];

pub(crate) fn run(args: RunArgs) -> Result<i32, CliError> {
    let started = Instant::now();
    let journal = if args.no_journal {
        None
    } else {
        let journal = Journal::open_default().map_err(|e| {
            CliError::new(format!("cannot open the journal: {e}"))
                .hint("set CLOSEOUT_STATE_DIR to a directory of yours, or pass --no-journal")
        })?;
        // The tree and the TMPDIR record themselves in it before they exist.
        journal.set_default();
        Some(journal)
    };
    // Registered before the spawn, so that no signal meant for the command is lost.
    let mut signals = signal_hook::iterator::Signals::new(FORWARDED.iter().copied().chain([SIGCHLD]))
        .map_err(|e| CliError::new(format!("cannot handle signals: {e}")))?;
    // Orphans of the tree (double-forked daemons) come back to us, to be found and reaped.
    let _ = closeout_process::become_subreaper();
    let registry = closeout::Registry::new();
    let tmp = closeout_fs::temp_dir_in(&registry, "tmpdir")
        .map_err(|e| CliError::new(format!("cannot make the private TMPDIR: {e}")))?;
    let snapshot = Snapshot::take(&args.watch);
    let program = args.command[0].clone();
    let mut cmd = Command::new(&program);
    cmd.args(&args.command[1..]).env("TMPDIR", &tmp);
    let opts = TreeOptions::new().grace(args.grace).cgroup(!args.no_cgroup);
    let tree = match ProcessTree::spawn(&mut cmd, opts) {
        Ok(tree) => tree,
        Err(e) => {
            let _ = registry.shutdown_blocking();
            let name = program.to_string_lossy();
            return Err(match e.kind() {
                std::io::ErrorKind::NotFound => CliError::new(format!("{name}: command not found"))
                    .hint("check the name, or give its full path")
                    .with_status(NOT_FOUND),
                std::io::ErrorKind::PermissionDenied => CliError::new(format!("{name}: cannot execute: {e}"))
                    .hint("is it executable (chmod +x) and not a directory?")
                    .with_status(NOT_EXECUTABLE),
                _ => CliError::new(format!("{name}: cannot start: {e}")).with_status(NOT_EXECUTABLE),
            });
        }
    };

    // Supervise: forward signals, reap orphans, watch the clock, until the command exits.
    let deadline = args.timeout.map(|t| closeout::saturating_deadline(started, t));
    let mut stops = 0;
    let mut timed_out = false;
    loop {
        if tree.wait_exit(TICK) {
            break;
        }
        for sig in signals.pending() {
            match sig {
                SIGCHLD => {
                    crate::zombies::reap_except(tree.pid());
                }
                SIGINT | SIGTERM => {
                    stops += 1;
                    if stops >= 2 {
                        // A second INT or TERM: everything, at once.
                        tree.kill();
                    } else {
                        forward(&tree, sig, args.signal_tree);
                    }
                }
                other => forward(&tree, other, args.signal_tree),
            }
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            timed_out = true;
            break;
        }
    }

    // What it left: the tree's members (the command is gone), their sockets, files.
    let ended = Instant::now();
    let mut left = LeftBehind::default();
    let pids = tree.members();
    left.processes = leftovers::processes(&pids);
    left.sockets = leftovers::sockets(&pids);
    left.files = leftovers::files_under(&tmp, leftovers::WATCH_LIMIT)
        .into_iter()
        .map(|(path, size, _)| LeftFile { path, size, place: "tmpdir", kept: false })
        .collect();
    left.files.extend(snapshot.created(&args.watch));
    apply_keep(&mut left, &args.keep, &tree);

    // Stop what is left, on its own thread, while this one shows progress and still listens:
    // a second INT or TERM kills everything at once.
    let stop_started = Instant::now();
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    {
        let tree = tree.clone();
        std::thread::spawn(move || {
            let _ = done_tx.send(tree.stop());
        });
    }
    let progress = Progress::new(args.grace, left.processes.iter().filter(|p| !p.kept).count());
    let stopped = loop {
        // Returns the moment the stop is done; else looks at signals every tick.
        match done_rx.recv_timeout(TICK) {
            Ok(report) => break report,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                return Err(CliError::new("the stop panicked"));
            }
        }
        for sig in signals.pending() {
            if sig == SIGINT || sig == SIGTERM {
                stops += 1;
                if stops >= 2 || timed_out {
                    tree.kill();
                }
            }
        }
        progress.tick(|| tree.members().len());
    };
    progress.finish();
    // Until the kernel said the tree was empty (not counting the cgroup's removal).
    let cleanup = stopped
        .gone
        .map_or_else(|| ended.elapsed(), |gone| (stop_started + gone).saturating_duration_since(ended));
    crate::zombies::reap_except(0);

    let mut removed_files = 0;
    for f in left.files.iter().filter(|f| f.place == "watch" && !f.kept) {
        if std::fs::remove_file(&f.path).is_ok() {
            removed_files += 1;
        }
    }
    removed_files += left.files.iter().filter(|f| f.place == "tmpdir").count();
    let teardown = registry.shutdown_blocking();
    if !teardown.is_success() {
        eprintln!("closeout: removing the private TMPDIR failed:\n{teardown}");
    }

    let mut exit = Exit { timed_out, ..Exit::default() };
    if let Some(status) = stopped.status {
        exit.code = status.code();
        exit.signal = std::os::unix::process::ExitStatusExt::signal(&status);
    }
    let mut code = match (timed_out, exit.code, exit.signal) {
        (true, _, _) => TIMEOUT_STATUS,
        (_, Some(c), _) => c,
        (_, _, Some(s)) => 128 + s,
        _ => crate::exit::OWN_FAILURE,
    };
    if args.fail_on_leak && code == 0 && left.leaks() > 0 {
        code = LEAK_STATUS;
    }
    exit.status = code;
    let (containment, containment_note) = match &stopped.containment {
        Containment::Cgroup(_) => ("cgroup".to_owned(), None),
        Containment::Fallback(why) => ("fallback".to_owned(), Some(why.clone())),
    };
    let report = RunReport {
        schema_version: 1,
        command: args.command.iter().map(|a| a.to_string_lossy().into_owned()).collect(),
        containment,
        containment_note,
        exit,
        left_behind: left,
        killed: stopped.killed.clone(),
        survivors: stopped.survivors.clone(),
        removed_files,
        duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        cleanup_us: u64::try_from(cleanup.as_micros()).unwrap_or(u64::MAX),
        journaled: journal.is_some(),
    };
    eprint!("{}", report.human(args.verbose));
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&report).map_err(|e| CliError::new(format!("JSON: {e}")))?;
        std::fs::write(path, text + "\n")
            .map_err(|e| CliError::new(format!("writing the report to {}: {e}", path.display())))?;
    }
    Ok(code)
}

fn forward(tree: &ProcessTree, sig: i32, whole_tree: bool) {
    let sent = if whole_tree { tree.signal_members(sig) } else { tree.signal(sig) };
    if let Err(e) = sent {
        eprintln!("closeout: forwarding signal {sig}: {e}");
    }
}

/// Marks what `--keep` names, and lets kept processes go from the tree (they are not stopped).
fn apply_keep(left: &mut LeftBehind, keep: &[Keep], tree: &ProcessTree) {
    let kept_ports: Vec<u16> =
        keep.iter().filter_map(|k| if let Keep::Port(p) = k { Some(*p) } else { None }).collect();
    let port_pids: Vec<u32> =
        left.sockets.iter().filter(|s| kept_ports.contains(&s.port)).map(|s| s.pid).collect();
    for p in &mut left.processes {
        p.kept = port_pids.contains(&p.pid)
            || keep.iter().any(|k| match k {
                Keep::Pid(pid) => *pid == p.pid,
                Keep::Cmd(text) => p.cmdline.contains(text.as_str()),
                _ => false,
            });
        if p.kept
            && let Err(e) = tree.release_member(p.pid)
        {
            eprintln!("closeout: cannot keep pid {}: {e}", p.pid);
            p.kept = false;
        }
    }
    let kept_pids: Vec<u32> = left.processes.iter().filter(|p| p.kept).map(|p| p.pid).collect();
    for s in &mut left.sockets {
        s.kept = kept_pids.contains(&s.pid);
    }
    for f in &mut left.files {
        f.kept = f.place == "watch"
            && keep.iter().any(|k| matches!(k, Keep::Path(prefix) if f.path.starts_with(prefix)));
    }
}

/// The progress line while a stop waits out its grace: on a terminal only.
struct Progress {
    bar: Option<indicatif::ProgressBar>,
    until: Instant,
}

impl Progress {
    fn new(grace: Duration, processes: usize) -> Progress {
        let tty = rustix::termios::isatty(std::io::stderr());
        let bar = (tty && processes > 0 && !grace.is_zero()).then(|| {
            let bar = indicatif::ProgressBar::new_spinner();
            bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
            bar
        });
        Progress { bar, until: closeout::saturating_deadline(Instant::now(), grace) }
    }

    /// Redraws the line; `alive` is only asked when there is a line to draw (counting the
    /// members is a `/proc` scan in the fallback).
    fn tick(&self, alive: impl FnOnce() -> usize) {
        if let Some(bar) = &self.bar {
            let alive = alive();
            let left = self.until.saturating_duration_since(Instant::now());
            bar.set_message(format!(
                "stopping what was left: {alive} process(es) alive, SIGKILL in {:.1}s",
                left.as_secs_f64()
            ));
            bar.tick();
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
