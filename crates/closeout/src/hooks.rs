//! Process hooks: SIGINT, SIGTERM, SIGHUP, SIGQUIT and panics run the teardown once.
//!
//! Why: a service's shutdown is where resources leak and processes hang — a handler that runs
//! twice, a second Ctrl-C that is swallowed, a teardown waiting forever on one stuck cleanup, a
//! panic that skips cleanup entirely. [`install`] sets up one process-wide dispatcher that
//! handles all of these the same way:
//!
//! - **The first signal** starts the teardown of the target ([`Registry`] or [`Scope`]) on its
//!   own thread, within [`Hooks::deadline`]. The target's token is cancelled before any cleanup
//!   runs, and [`shutdown_signal`] resolves, so servers stop accepting first. When the teardown
//!   ends, the report goes to [`Hooks::on_report`] (stderr by default) and the process ends
//!   with the conventional status: the signal is re-raised with its default action, so a parent
//!   sees "killed by SIGTERM" (`128 + n` in a shell).
//! - **A second signal** during the teardown exits at once, after one line on stderr naming
//!   what was still running. A third one is handled in the signal handler itself, in case even
//!   that line cannot be written.
//! - **The deadline** holds even when a cleanup ignores its own timeout: past it (plus
//!   [`SLACK`]), the process exits anyway, naming what was still running.
//! - **A panic on the main thread** runs the teardown once, then the panic hook that was
//!   installed before. A panic in another thread or a tokio task is reported (`tracing` error)
//!   and tears nothing down, since the process goes on; [`PanicPolicy`] offers the other choices
//!   (any thread; off). A panic inside a cleanup is the cleanup's own: it is caught and
//!   reported, and never starts a teardown.
//! - **The normal path**: dropping the [`HookGuard`] at the end of `main` runs the teardown too,
//!   then uninstalls the hooks. [`HookGuard::uninstall`] removes them without a teardown.
//!
//! Built on `signal-hook`, so every other handler in the process (`tokio::signal` included)
//! keeps receiving its signals. Works in a plain program (the dispatcher has its own thread)
//! and under tokio: cleanups run on a runtime of their own, so they progress even while the
//! program's runtime is busy or blocked.
//!
//! # Failure behaviour
//!
//! - Only one set of hooks can be installed at a time ([`HookError::AlreadyInstalled`]); put
//!   everything in one registry, or register scopes and registries in it.
//! - After [`uninstall`](HookGuard::uninstall) the signals get their default action back
//!   (terminate). signal-hook cannot restore a handler installed without it before
//!   [`install`]; such a handler is not called again.
//! - Whenever the hooks end the process after a signal (the teardown done, a second signal,
//!   the deadline passed, a third signal in the handler itself), they first run every
//!   [`last_action`](crate::last_action) still registered: every child process tree that was
//!   not stopped yet is killed (`cgroup.kill`, or SIGKILL to its group), so none is orphaned.
//! - Nothing here runs on SIGKILL, `std::process::exit` or `abort`: no process can.
//!
//! # Invariants
//!
//! H1. The teardown runs at most once per installation: `Dispatch::state` goes `IDLE → RUNNING`
//!     only through one compare-exchange (`claim`), whoever asks (a signal, a panic, the guard),
//!     then `RUNNING → DONE` once, by the claimant.
//! H2. The first signal is recorded (`RECEIVED`, a compare-exchange from 0) and claims the
//!     teardown *before* [`shutdown_signal`] waiters are woken, so code that returns from `main`
//!     after the wake-up always finds the teardown taken and joins it (it cannot run it as the
//!     normal path and end with status 0).
//! H3. Whoever ends the process after a signal (its coordinator thread, or the guard that joined
//!     it) does so only after the teardown's report was published: `done` is set after
//!     `publish`, and both wait on `done`.
//! H4. Once `ARMED` is set (after uninstall, and from a third signal on) the signal handler
//!     itself applies the default action; no thread of ours is needed any more.
//! H5. While `active` is false the panic hook only passes through to the previous hook.
//!
//! # Orderings and lock order
//!
//! Every atomic here is `SeqCst`: they are few, touched a handful of times per process (never
//! on a hot path), and H2 relies on one total order between `RECEIVED`, `state`, `ARMED` and
//! `active` as seen by the signal thread, the panic hook and the thread returning from `main`;
//! weaker orderings would need an argument per pair and buy nothing. Locks: `INSTALLED`, then
//! `DEFAULTS` (install), each alone otherwise; `done.0` and `PREVIOUS_HOOK` are taken alone. No
//! lock is held while the teardown or a user callback runs. Poisoned locks are taken back
//! (`sync::lock`): they guard plain values no user code changes.
//!
//! ```no_run
//! use closeout::{Registry, Resource, hooks};
//! use std::time::Duration;
//!
//! fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let registry = Registry::new();
//!     registry.register(Resource::new("pid-file", || std::fs::remove_file("/tmp/app.pid")))?;
//!     let _hooks = hooks::Hooks::new(registry.clone()).deadline(Duration::from_secs(10)).install()?;
//!     // ... run; Ctrl-C, SIGTERM, a panic or the end of main all tear down once ...
//!     Ok(())
//! }
//! ```

use std::fmt;
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::Duration;

use signal_hook::consts::{SIGHUP, SIGINT, SIGQUIT, SIGTERM};
use signal_hook::iterator::Signals;
use tokio::sync::Notify;

use crate::{Registry, Report, Scope};

/// How long past its deadline a teardown may take before the process exits anyway: enough to
/// collect and print the report of a teardown that ended right at its deadline.
pub const SLACK: Duration = Duration::from_millis(200);

/// The deadline when none is set.
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(30);

/// The signals handled unless [`Hooks::signals`] says otherwise.
pub const DEFAULT_SIGNALS: [Signal; 4] = [Signal::INT, Signal::TERM, Signal::HUP, Signal::QUIT];

/// A signal, displayed by name; the usual ones are constants, so no other crate is needed to
/// name them.
///
/// ```
/// use closeout::hooks::Signal;
/// assert_eq!(Signal::TERM.to_string(), "SIGTERM");
/// assert_eq!(Signal::TERM.number(), 15);
/// assert_eq!(Signal::from(15), Signal::TERM);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Signal(i32);

impl Signal {
    /// SIGINT: Ctrl-C.
    pub const INT: Signal = Signal(SIGINT);
    /// SIGTERM: the polite stop of service managers and `kill`.
    pub const TERM: Signal = Signal(SIGTERM);
    /// SIGHUP: the terminal went away.
    pub const HUP: Signal = Signal(SIGHUP);
    /// SIGQUIT: Ctrl-Backslash.
    pub const QUIT: Signal = Signal(SIGQUIT);
    /// SIGUSR1: for the program's own use.
    pub const USR1: Signal = Signal(signal_hook::consts::SIGUSR1);
    /// SIGUSR2: for the program's own use.
    pub const USR2: Signal = Signal(signal_hook::consts::SIGUSR2);

    /// The signal's number.
    pub fn number(self) -> i32 {
        self.0
    }
}

impl From<i32> for Signal {
    fn from(n: i32) -> Signal {
        Signal(n)
    }
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match signal_hook::low_level::signal_name(self.0) {
            Some(name) => f.write_str(name),
            None => write!(f, "signal {}", self.0),
        }
    }
}

/// Why hooks could not be installed.
///
/// ```
/// use closeout::hooks::{HookError, Hooks};
/// let err = Hooks::new(closeout::Registry::new()).signals(&[]).install().unwrap_err();
/// assert!(matches!(err, HookError::NoSignals));
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HookError {
    /// Hooks are installed already; uninstall the first set before installing another.
    #[error("process hooks are already installed")]
    AlreadyInstalled,
    /// A deadline of zero.
    #[error("the hooks' deadline must not be zero")]
    ZeroDeadline,
    /// No signal to handle.
    #[error("the hooks need at least one signal")]
    NoSignals,
    /// A signal no handler can catch (SIGKILL, SIGSTOP, SIGILL, SIGFPE, SIGSEGV).
    #[error("{0} cannot be handled")]
    Unhandleable(Signal),
    /// The OS refused a handler or the dispatcher thread.
    #[error("{what}")]
    Os {
        /// What was being set up.
        what: &'static str,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

/// What started the teardown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Trigger {
    /// A signal.
    Signal(Signal),
    /// A panic (in any thread).
    Panic,
    /// The [`HookGuard`] was dropped or [`HookGuard::teardown`] was called: the normal path.
    Exit,
}

impl fmt::Display for Trigger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Trigger::Signal(s) => write!(f, "{s}"),
            Trigger::Panic => f.write_str("panic"),
            Trigger::Exit => f.write_str("exit"),
        }
    }
}

/// What the hooks tear down: a [`Registry`] (shut down, so late registrations are refused) or
/// a [`Scope`] (released). Made with `From`.
#[derive(Clone)]
pub struct Target(TargetKind);

#[derive(Clone)]
enum TargetKind {
    Registry(Registry),
    Scope(Arc<Scope>),
}

impl From<Registry> for Target {
    fn from(r: Registry) -> Target {
        Target(TargetKind::Registry(r))
    }
}

impl From<Scope> for Target {
    fn from(s: Scope) -> Target {
        Target(TargetKind::Scope(Arc::new(s)))
    }
}

impl From<Arc<Scope>> for Target {
    fn from(s: Arc<Scope>) -> Target {
        Target(TargetKind::Scope(s))
    }
}

impl fmt::Debug for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            TargetKind::Registry(r) => f.debug_tuple("Target").field(r).finish(),
            TargetKind::Scope(s) => f.debug_tuple("Target").field(s).finish(),
        }
    }
}

impl Target {
    fn run(&self, deadline: Duration) -> Report {
        match &self.0 {
            TargetKind::Registry(r) => r.shutdown_within(deadline),
            TargetKind::Scope(s) => s.close_shared(),
        }
    }

    fn running(&self) -> String {
        match &self.0 {
            TargetKind::Registry(r) => {
                let ids = r.running();
                if ids.is_empty() { "nothing".to_owned() } else { ids.join(", ") }
            }
            TargetKind::Scope(_) => "a scope action".to_owned(),
        }
    }
}

type ReportFn = Box<dyn Fn(&Report, Trigger) + Send + Sync>;

/// Configures the process hooks; [`install`](Hooks::install) sets them up.
///
/// ```
/// use closeout::{Registry, hooks::{Hooks, PanicPolicy, Signal}};
/// use std::time::Duration;
///
/// let registry = Registry::new();
/// let guard = Hooks::new(registry.clone())
///     .deadline(Duration::from_secs(5))
///     .signals(&[Signal::TERM])
///     .panic(PanicPolicy::Off)
///     .on_report(|report, trigger| eprintln!("teardown on {trigger}:\n{report}"))
///     .install()?;
/// guard.uninstall(); // removes the hooks without tearing down
/// # Ok::<(), closeout::hooks::HookError>(())
/// ```
#[must_use = "nothing is installed until `install` is called"]
pub struct Hooks {
    target: Target,
    deadline: Duration,
    signals: Vec<i32>,
    panic: PanicPolicy,
    exit: bool,
    on_report: Option<ReportFn>,
}

/// Which panics start the process-wide teardown.
///
/// Rust's own semantics: a panic in a spawned thread or a tokio task ends only that thread or
/// task, and the process goes on. Tearing down every resource then would leave a running
/// service with nothing, so by default only a panic on the main thread (which ends the
/// process) tears down; others are reported with a `tracing` error and change nothing.
///
/// ```
/// use closeout::hooks::{Hooks, PanicPolicy};
/// let hooks = Hooks::new(closeout::Registry::new()).panic(PanicPolicy::AnyThread);
/// # let _ = hooks;
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum PanicPolicy {
    /// A panic on the main thread, outside any tokio task, tears down (the default). A panic in
    /// another thread or in a task is reported (`tracing` error) and tears nothing down.
    #[default]
    MainThread,
    /// A panic anywhere (any thread, any task) tears down.
    AnyThread,
    /// No panic tears down; the panic hook is not installed.
    Off,
}

impl PanicPolicy {
    /// Whether a panic happening on this thread, now, starts the teardown.
    fn tears_down_here(self) -> bool {
        match self {
            PanicPolicy::AnyThread => true,
            PanicPolicy::Off => false,
            PanicPolicy::MainThread => on_main_thread() && tokio::task::try_id().is_none(),
        }
    }
}

/// Whether this is the process's main thread: on Linux its thread id is the process id.
fn on_main_thread() -> bool {
    #[cfg(target_os = "linux")]
    {
        rustix::thread::gettid() == rustix::process::getpid()
    }
    #[cfg(not(target_os = "linux"))]
    {
        std::thread::current().name() == Some("main")
    }
}

impl fmt::Debug for Hooks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hooks")
            .field("target", &self.target)
            .field("deadline", &self.deadline)
            .field("signals", &self.signals)
            .field("panic", &self.panic)
            .field("exit", &self.exit)
            .finish_non_exhaustive()
    }
}

impl Hooks {
    /// Hooks that tear `target` down, with the defaults: [`DEFAULT_SIGNALS`], panics,
    /// [`DEFAULT_DEADLINE`], exit after a signal's teardown, and the report on stderr.
    pub fn new(target: impl Into<Target>) -> Hooks {
        Hooks {
            target: target.into(),
            deadline: DEFAULT_DEADLINE,
            signals: DEFAULT_SIGNALS.iter().map(|s| s.0).collect(),
            panic: PanicPolicy::MainThread,
            exit: true,
            on_report: None,
        }
    }

    /// The overall deadline of the teardown. A registry skips what has not started by then
    /// (reported); past it plus [`SLACK`] the process exits regardless.
    pub fn deadline(mut self, deadline: Duration) -> Hooks {
        self.deadline = deadline;
        self
    }

    /// Which signals start the teardown.
    pub fn signals(mut self, signals: &[Signal]) -> Hooks {
        self.signals = signals.iter().map(|s| s.0).collect();
        self
    }

    /// Which panics start the teardown (default: [`PanicPolicy::MainThread`]: a panic on the
    /// main thread does; one in another thread or a tokio task is only reported).
    pub fn panic(mut self, policy: PanicPolicy) -> Hooks {
        self.panic = policy;
        self
    }

    /// Whether the process exits once a signal's teardown is done (default: yes). With `false`
    /// the program goes on, and is expected to return from `main` after [`shutdown_signal`];
    /// a further signal still exits at once.
    pub fn exit_on_signal(mut self, yes: bool) -> Hooks {
        self.exit = yes;
        self
    }

    /// Receives every report the hooks produce, instead of the default: print it on stderr
    /// when a signal or a panic triggered it, or when something failed.
    pub fn on_report<F>(mut self, f: F) -> Hooks
    where
        F: Fn(&Report, Trigger) + Send + Sync + 'static,
    {
        self.on_report = Some(Box::new(f));
        self
    }

    /// Installs the hooks.
    ///
    /// # Limits
    ///
    /// A signal that arrives *while* `install` registers the first handler for it can be lost:
    /// signal-hook installs its OS handler a moment before the action that queues the signal
    /// for the dispatcher is published, and a signal in between finds no action. The process
    /// then goes on as if the signal had not come. Once `install` has returned, nothing is lost.
    ///
    /// # Errors
    ///
    /// A [`HookError`]: hooks installed already, an empty signal list, a zero deadline, a
    /// signal that cannot be handled (SIGKILL, SIGSTOP, SIGSEGV…), or the OS refusing a handler
    /// or the dispatcher thread (its `io::Error` as the source).
    pub fn install(self) -> Result<HookGuard, HookError> {
        if self.deadline.is_zero() {
            return Err(HookError::ZeroDeadline);
        }
        if self.signals.is_empty() {
            return Err(HookError::NoSignals);
        }
        if let Some(&sig) = self.signals.iter().find(|s| signal_hook::consts::FORBIDDEN.contains(s)) {
            return Err(HookError::Unhandleable(Signal(sig)));
        }
        let mut installed = lock(&INSTALLED);
        if installed.is_some() {
            return Err(HookError::AlreadyInstalled);
        }
        let dispatch = Arc::new(Dispatch {
            target: self.target,
            deadline: self.deadline,
            exit: self.exit,
            on_report: self.on_report,
            state: AtomicU8::new(IDLE),
            done: (Mutex::new(None), Condvar::new()),
            active: AtomicBool::new(true),
        });
        // A fresh installation starts from nothing (H2, H4), *before* any handler exists: a
        // signal recorded from here on is never erased.
        RECEIVED.store(0, Ordering::SeqCst);
        // The dispatcher's handler first: from the moment the process catches a signal at all,
        // that signal is queued for the dispatcher (a signal arriving before its thread runs
        // waits in the queue). Only then the conditional default, which stays inactive (H4).
        let signals = Signals::new(&self.signals)
            .map_err(|source| HookError::Os { what: "registering signal handlers", source })?;
        arm_defaults(&self.signals)?;
        let handle = signals.handle();
        let thread = {
            let dispatch = Arc::clone(&dispatch);
            std::thread::Builder::new()
                .name("closeout-signals".into())
                .spawn(move || dispatch_signals(signals, &dispatch))
                .map_err(|source| HookError::Os { what: "starting the signal thread", source })?
        };
        let policy = self.panic;
        let panic = (policy != PanicPolicy::Off).then(|| install_panic_hook(&dispatch, policy));
        *installed = Some(Arc::clone(&dispatch));
        Ok(HookGuard { dispatch, signals: Some((handle, thread)), panic, uninstalled: false })
    }
}

/// Installs hooks with the defaults; see [`Hooks`].
///
/// # Errors
///
/// As [`Hooks::install`].
///
/// ```
/// let registry = closeout::Registry::new();
/// let guard = closeout::hooks::install(registry.clone())?;
/// drop(guard); // the end of main: tears the registry down, then uninstalls
/// assert!(registry.is_closed());
/// # Ok::<(), closeout::hooks::HookError>(())
/// ```
pub fn install(target: impl Into<Target>) -> Result<HookGuard, HookError> {
    Hooks::new(target).install()
}

/// Installed hooks. Dropping it runs the teardown (the normal path), waits for one already
/// running, and uninstalls; [`uninstall`](HookGuard::uninstall) skips the teardown.
#[must_use = "dropping the guard tears down and uninstalls at once"]
pub struct HookGuard {
    dispatch: Arc<Dispatch>,
    signals: Option<(signal_hook::iterator::Handle, std::thread::JoinHandle<()>)>,
    panic: Option<usize>,
    uninstalled: bool,
}

impl fmt::Debug for HookGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HookGuard").field("state", &self.dispatch.state.load(Ordering::SeqCst)).finish()
    }
}

impl HookGuard {
    /// Runs the teardown now (once: `None` if something else already ran or is running it, in
    /// which case this waits for it to end), leaving the hooks installed.
    pub fn teardown(&self) -> Option<Report> {
        match self.dispatch.run_once(Trigger::Exit) {
            Some(report) => Some(report),
            None => {
                self.dispatch.wait_done();
                None
            }
        }
    }

    /// Removes the signal handlers and the panic hook without tearing down. The signals get
    /// their default action back.
    pub fn uninstall(mut self) {
        self.remove();
    }

    fn remove(&mut self) {
        if std::mem::replace(&mut self.uninstalled, true) {
            return;
        }
        // H5: the panic hook passes through from here on.
        self.dispatch.active.store(false, Ordering::SeqCst);
        if let Some((handle, thread)) = self.signals.take() {
            handle.close();
            let _ = thread.join();
        }
        if let Some(addr) = self.panic.take() {
            // The hook cannot be changed while this thread unwinds; ours is inactive now and
            // only passes through.
            if !std::thread::panicking() {
                restore_panic_hook(addr);
            }
        }
        if let Some(armed) = ARMED.get() {
            armed.store(true, Ordering::SeqCst);
        }
        *lock(&INSTALLED) = None;
    }
}

impl Drop for HookGuard {
    fn drop(&mut self) {
        if self.uninstalled {
            return;
        }
        if self.dispatch.run_once(Trigger::Exit).is_none() {
            // A signal or a panic got there first: let it finish, and keep its exit status
            // rather than ending with main's.
            if let Some(Trigger::Signal(sig)) = self.dispatch.wait_done()
                && self.dispatch.exit
            {
                exit_with(sig);
            }
        }
        // A first signal that arrived during this teardown joined it: end with its status.
        let sig = RECEIVED.load(Ordering::SeqCst);
        if sig != 0 && self.dispatch.exit {
            exit_with(Signal(sig));
        }
        self.remove();
    }
}

/// Resolves when the installed hooks receive their first signal (at once if they already did),
/// with that signal: the moment for a server to stop accepting. The teardown has begun by then
/// and the target's token is cancelled.
///
/// Without installed hooks it waits until hooks are installed and receive a signal.
///
/// ```no_run
/// # async fn serve() {}
/// # #[tokio::main] async fn main() -> Result<(), closeout::hooks::HookError> {
/// let registry = closeout::Registry::new();
/// let _hooks = closeout::hooks::Hooks::new(registry.clone()).exit_on_signal(false).install()?;
/// tokio::select! {
///     _ = serve() => {}
///     sig = closeout::hooks::shutdown_signal() => eprintln!("stopping on {sig}"),
/// }
/// # Ok(()) }
/// ```
pub async fn shutdown_signal() -> Signal {
    let notify = SIGNALLED.get_or_init(Notify::new);
    loop {
        let notified = notify.notified();
        let mut notified = std::pin::pin!(notified);
        notified.as_mut().enable();
        let sig = RECEIVED.load(Ordering::SeqCst);
        if sig != 0 {
            return Signal(sig);
        }
        notified.await;
    }
}

const IDLE: u8 = 0;
const RUNNING: u8 = 1;
const DONE: u8 = 2;

/// The installed hooks, if any.
static INSTALLED: Mutex<Option<Arc<Dispatch>>> = Mutex::new(None);
/// The first signal received (0: none), for [`shutdown_signal`].
static RECEIVED: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(0);
static SIGNALLED: OnceLock<Notify> = OnceLock::new();
/// When set, the handled signals take their default action right in the signal handler: after
/// uninstall, and from the third signal on.
static ARMED: OnceLock<Arc<AtomicBool>> = OnceLock::new();
/// Signals that already have the conditional default action registered (once per process).
static DEFAULTS: Mutex<Vec<i32>> = Mutex::new(Vec::new());

fn default_flag() -> Arc<AtomicBool> {
    Arc::new(AtomicBool::new(false))
}

use crate::sync::lock_std as lock;

/// The handler of a signal once [`ARMED`] is set: the last actions (a tree's `cgroup.kill`,
/// …), then the signal's default action. Both are async-signal-safe (system calls only).
#[allow(unsafe_code)]
fn register_armed_default(sig: i32, armed: Arc<AtomicBool>) -> std::io::Result<()> {
    let action = move || {
        if armed.load(Ordering::SeqCst) {
            #[cfg(target_os = "linux")]
            crate::last_action::run_all();
            let _ = signal_hook::low_level::emulate_default_handler(sig);
        }
    };
    // SAFETY: the action only loads an atomic and makes system calls (`last_action::run_all`
    // is async-signal-safe by its contract; `emulate_default_handler` is signal-hook's own
    // signal-safe default action); it allocates nothing and takes no lock.
    unsafe { signal_hook::low_level::register(sig, action) }.map(drop)
}

/// Registers, once per signal, the default action that runs when [`ARMED`] is set.
fn arm_defaults(signals: &[i32]) -> Result<(), HookError> {
    let armed = ARMED.get_or_init(default_flag);
    armed.store(false, Ordering::SeqCst);
    let mut done = lock(&DEFAULTS);
    for &sig in signals {
        if !done.contains(&sig) {
            register_armed_default(sig, Arc::clone(armed))
                .map_err(|source| HookError::Os { what: "registering a signal handler", source })?;
            done.push(sig);
        }
    }
    Ok(())
}

struct Dispatch {
    target: Target,
    deadline: Duration,
    exit: bool,
    on_report: Option<ReportFn>,
    state: AtomicU8,
    /// What triggered the teardown, once it is done.
    done: (Mutex<Option<Trigger>>, Condvar),
    /// False once uninstalled: the panic hook passes through.
    active: AtomicBool,
}

impl Dispatch {
    /// Runs the teardown if nothing else has; `None` if something else has or is running it.
    fn run_once(&self, trigger: Trigger) -> Option<Report> {
        if !self.claim() {
            return None;
        }
        self.run_claimed(trigger)
    }

    /// Takes the one teardown for the caller (`IDLE → RUNNING`); false if it is taken.
    fn claim(&self) -> bool {
        // H1: the one way to take the teardown.
        self.state.compare_exchange(IDLE, RUNNING, Ordering::SeqCst, Ordering::SeqCst).is_ok()
    }

    /// Runs the teardown this caller claimed, publishes it and wakes the waiters.
    fn run_claimed(&self, trigger: Trigger) -> Option<Report> {
        let report = self.run_within_deadline(trigger);
        if let Some(report) = &report {
            self.publish(report, trigger);
        }
        self.state.store(DONE, Ordering::SeqCst);
        *lock(&self.done.0) = Some(trigger);
        self.done.1.notify_all();
        report
    }

    /// Waits (bounded by the deadline) for a teardown started elsewhere; returns its trigger.
    fn wait_done(&self) -> Option<Trigger> {
        let limit = self.deadline.saturating_add(SLACK * 2);
        let guard = lock(&self.done.0);
        let (guard, _) =
            self.done.1.wait_timeout_while(guard, limit, |t| t.is_none()).unwrap_or_else(|p| p.into_inner());
        *guard
    }

    /// Runs the teardown on its own thread and waits at most deadline + slack for it; `None`
    /// (after a line on stderr) if it did not end in time.
    fn run_within_deadline(&self, trigger: Trigger) -> Option<Report> {
        tracing::info!(%trigger, deadline = ?self.deadline, "closeout: teardown started by process hooks");
        let (tx, rx) = std::sync::mpsc::channel();
        let target = self.target.clone();
        let deadline = self.deadline;
        let spawned = std::thread::Builder::new().name("closeout-teardown".into()).spawn(move || {
            let _ = tx.send(target.run(deadline));
        });
        if spawned.is_err() {
            // No thread to spare: run here, relying on the registry's own deadline.
            return Some(self.target.run(deadline));
        }
        match rx.recv_timeout(deadline.saturating_add(SLACK)) {
            Ok(report) => Some(report),
            Err(_) => {
                let _ = writeln!(
                    std::io::stderr(),
                    "closeout: teardown (on {trigger}) passed its {deadline:?} deadline; still running: {}",
                    self.target.running()
                );
                None
            }
        }
    }

    fn publish(&self, report: &Report, trigger: Trigger) {
        match &self.on_report {
            Some(f) => {
                if let Err(payload) =
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(report, trigger)))
                {
                    crate::runner::drop_payload(payload);
                }
            }
            None => {
                if trigger != Trigger::Exit || !report.is_success() {
                    let _ = writeln!(std::io::stderr(), "closeout: teardown on {trigger}\n{report}");
                }
            }
        }
    }

    /// The first signal takes the teardown for itself (`claim`) *before* it wakes
    /// [`shutdown_signal`]: so a `main` that returns right after cannot start the teardown as
    /// the normal path and end with status 0; its guard joins the signal's teardown instead. A
    /// first signal that finds a teardown already running (the end of `main`, a panic) joins it
    /// and ends the process with its status once that teardown is done. Only a second signal
    /// exits at once.
    fn on_signal(self: &Arc<Self>, sig: i32) {
        let signal = Signal(sig);
        // H2: record, then claim, then wake.
        let first = RECEIVED.compare_exchange(0, sig, Ordering::SeqCst, Ordering::SeqCst).is_ok();
        if first {
            let ours = self.claim();
            if let Some(n) = SIGNALLED.get() {
                n.notify_waiters();
            }
            let dispatch = Arc::clone(self);
            let coordinator = move || {
                if ours {
                    dispatch.run_claimed(Trigger::Signal(signal));
                } else {
                    // The guard or a panic started it a moment earlier: join it.
                    dispatch.wait_done();
                }
                if dispatch.exit {
                    exit_with(signal);
                }
            };
            if std::thread::Builder::new()
                .name("closeout-shutdown".into())
                .spawn(coordinator.clone())
                .is_err()
            {
                coordinator();
            }
            return;
        }
        match self.state.load(Ordering::SeqCst) {
            RUNNING => {
                // From now on, the signal handler itself ends the process.
                if let Some(armed) = ARMED.get() {
                    armed.store(true, Ordering::SeqCst);
                }
                let _ = writeln!(
                    std::io::stderr(),
                    "closeout: second {signal} during teardown; exiting now (still running: {})",
                    self.target.running()
                );
                exit_with(signal);
            }
            _ => exit_with(signal),
        }
    }
}

fn dispatch_signals(mut signals: Signals, dispatch: &Arc<Dispatch>) {
    for sig in signals.forever() {
        dispatch.on_signal(sig);
    }
}

/// Ends the process as the signal's default action would, so the parent sees the signal; if
/// that action does not end it, exits with `128 + n`.
fn exit_with(signal: Signal) -> ! {
    // A forced exit or not, what is still registered must not outlive us (child trees).
    #[cfg(target_os = "linux")]
    crate::last_action::run_all();
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    let _ = signal_hook::low_level::emulate_default_handler(signal.0);
    std::process::exit(128 + signal.0)
}

type PanicHook = Box<dyn Fn(&std::panic::PanicHookInfo<'_>) + Send + Sync + 'static>;

/// The hook that was installed before ours, restored on uninstall.
static PREVIOUS_HOOK: Mutex<Option<Arc<PanicHook>>> = Mutex::new(None);

/// Chains a panic hook that runs the teardown, then the previous hook. Returns the address of
/// our hook, to recognise it on uninstall.
fn install_panic_hook(dispatch: &Arc<Dispatch>, policy: PanicPolicy) -> usize {
    let previous: Arc<PanicHook> = Arc::new(std::panic::take_hook());
    *lock(&PREVIOUS_HOOK) = Some(Arc::clone(&previous));
    let dispatch = Arc::clone(dispatch);
    let hook: PanicHook = Box::new(move |info| {
        // A panic inside a cleanup is the cleanup's own: caught and reported by the teardown.
        if dispatch.active.load(Ordering::SeqCst) && !crate::runner::in_cleanup() {
            if policy.tears_down_here() {
                dispatch.run_once(Trigger::Panic);
            } else {
                let thread = std::thread::current();
                let location = info.location().map(|l| l.to_string()).unwrap_or_default();
                // Not `observer::quietly`: this thread is already panicking here.
                tracing::error!(
                    thread = thread.name().unwrap_or("<unnamed>"),
                    task = ?tokio::task::try_id(),
                    %location,
                    "closeout: panic outside the main thread; nothing was torn down (PanicPolicy::MainThread)"
                );
            }
        }
        previous(info);
    });
    let addr = &*hook as *const (dyn Fn(&std::panic::PanicHookInfo<'_>) + Send + Sync) as *const () as usize;
    std::panic::set_hook(hook);
    addr
}

/// Puts the previous hook back if ours is still the current one; if another hook was chained
/// on top of ours, leaves it (ours is inactive and only passes through).
fn restore_panic_hook(ours: usize) {
    let current = std::panic::take_hook();
    let addr =
        &*current as *const (dyn Fn(&std::panic::PanicHookInfo<'_>) + Send + Sync) as *const () as usize;
    let previous = lock(&PREVIOUS_HOOK).take();
    match previous {
        Some(previous) if addr == ours => {
            drop(current);
            std::panic::set_hook(Box::new(move |info| previous(info)));
        }
        _ => std::panic::set_hook(current),
    }
}
