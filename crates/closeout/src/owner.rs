//! [`Owner`]: tracked work — tokio tasks, blocking jobs, threads and timers — owned by a
//! [`Scope`] or a [`Registry`].
//!
//! Spawned work is the resource people most often forget to release: a task nobody awaits, a
//! thread nobody joins, a timer nobody clears. Spawning it through an owner registers its
//! release at the same moment, so it cannot be forgotten, and the teardown report says how each
//! one ended.
//!
//! Every piece of work follows the same rule, in this order:
//! 1. **Cancel first.** The owner's token is cancelled the moment its teardown begins. In a
//!    registry each piece of work also gets its own child token (a
//!    [`StopFlag`](crate::StopFlag) for threads) that its own cleanup cancels, so tearing down
//!    only part of a registry stops only that part; in a scope, work shares the scope's token.
//! 2. **Grace.** The cleanup waits for the work to end by itself, until the grace period
//!    ([`Spawn::grace`]) counted from when the owner's teardown began: many tasks in one scope
//!    share one grace period instead of waiting one after another.
//! 3. **Stop.** A task still running is aborted; a thread or blocking job still running is
//!    detached (Rust cannot stop a thread from outside) and reported; neither holds the process.
//!
//! Work that ends by itself before any teardown removes its own entry, so the owner's memory
//! follows what is live, not what ever ran. Work that panicked keeps its entry until the
//! teardown, so the report names it.

use std::borrow::Cow;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::error::{Error, SpawnError};
use crate::resource::{BoxError, Category, Cleanup, Outcome};
use crate::{Registry, Scope};

/// How long work may take to end by itself after its owner's teardown begins, unless
/// [`Spawn::grace`] says otherwise.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(5);

/// The name of a piece of spawned work and its grace period. A `&'static str` or a `String`
/// converts into one with the default grace.
///
/// ```
/// use closeout::{Owner, Scope, Spawn};
/// use std::time::Duration;
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let scope = Scope::new();
/// scope.spawn("plain", |token| async move { token.cancelled().await })?;
/// scope.spawn(Spawn::new("patient").grace(Duration::from_millis(50)), |token| async move {
///     token.cancelled().await
/// })?;
/// assert!(scope.close_async().await.is_success());
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct Spawn {
    pub(crate) name: Cow<'static, str>,
    pub(crate) grace: Duration,
    pub(crate) depends_on: Vec<String>,
    /// In a registry: registered as `name#n` rather than `name`.
    pub(crate) numbered: bool,
}

impl Spawn {
    /// Work called `name`, with [`DEFAULT_GRACE`]. In a [`Registry`] it is registered under
    /// exactly this id, so `report.get(name)` finds it; a second piece of work with the same id
    /// is refused with [`Error::DuplicateId`], as a resource would be. For many pieces of work
    /// under one name, use [`Spawn::numbered`].
    ///
    /// ```
    /// use closeout::{Error, Owner, Registry, Spawn};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let registry = Registry::new();
    /// registry.spawn(Spawn::new("backend"), |t| async move { t.cancelled().await })?;
    /// let again = registry.spawn(Spawn::new("backend"), |t| async move { t.cancelled().await });
    /// assert!(matches!(again.unwrap_err().error(), Error::DuplicateId(id) if id == "backend"));
    /// let report = registry.shutdown().await;
    /// assert!(report.get("backend").unwrap().status().is_ok());
    /// # Ok(()) }
    /// ```
    pub fn new(name: impl Into<Cow<'static, str>>) -> Spawn {
        Spawn { name: name.into(), grace: DEFAULT_GRACE, depends_on: Vec::new(), numbered: false }
    }

    /// Work registered in a [`Registry`] as `name#n`, `n` counting the registry's spawns from 1:
    /// for many pieces of work under one name. (Timers are always numbered: `timeout#n`,
    /// `interval#n`.) A scope does not name its entries uniquely and ignores this.
    ///
    /// ```
    /// use closeout::{Owner, Registry, Spawn};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let registry = Registry::new();
    /// for _ in 0..3 {
    ///     registry.spawn(Spawn::numbered("worker"), |t| async move { t.cancelled().await })?;
    /// }
    /// assert!(registry.contains("worker#1") && registry.contains("worker#3"));
    /// assert_eq!(registry.shutdown().await.len(), 3);
    /// # Ok(()) }
    /// ```
    pub fn numbered(name: impl Into<Cow<'static, str>>) -> Spawn {
        Spawn { numbered: true, ..Spawn::new(name) }
    }

    /// How long the work may take to end by itself once its owner's teardown began, before it
    /// is aborted (a task) or detached and reported (a thread or blocking job). Zero stops it at
    /// once.
    pub fn grace(mut self, grace: Duration) -> Spawn {
        self.grace = grace;
        self
    }

    /// In a [`Registry`]: resources this work uses, so it is stopped before them (see
    /// [`Resource::depends_on`](crate::Resource::depends_on)). A scope orders by position and
    /// ignores this.
    ///
    /// ```
    /// use closeout::{Owner, Registry, Resource, Spawn};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let registry = Registry::new();
    /// registry.register(Resource::new("pool", || ()))?;
    /// registry.spawn(Spawn::new("server").depends_on(["pool"]), |t| async move { t.cancelled().await })?;
    /// let report = registry.shutdown().await;
    /// let ids: Vec<_> = report.entries().iter().map(|e| e.id()).collect();
    /// assert_eq!(ids, ["server", "pool"]); // the server stops before the pool it uses
    /// # Ok(()) }
    /// ```
    pub fn depends_on<I, S>(mut self, ids: I) -> Spawn
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.depends_on.extend(ids.into_iter().map(Into::into));
        self
    }
}

impl From<&'static str> for Spawn {
    fn from(name: &'static str) -> Spawn {
        Spawn::new(name)
    }
}

impl From<String> for Spawn {
    fn from(name: String) -> Spawn {
        Spawn::new(name)
    }
}

/// Where a piece of work's entry lives, to remove it when the work ends by itself.
pub(crate) enum Link {
    Scope { shared: Weak<crate::scope::Shared>, idx: u32, generation: u32 },
    Registry { inner: Weak<crate::registry::Inner>, id: String },
}

impl Link {
    /// Removes the entry unrun. Does nothing if the owner is gone or already tearing it down.
    pub(crate) fn detach(self) {
        match self {
            Link::Scope { shared, idx, generation } => {
                if let Some(shared) = shared.upgrade() {
                    shared.remove(idx, generation);
                }
            }
            Link::Registry { inner, id } => {
                if let Some(inner) = inner.upgrade() {
                    inner.detach(&id);
                }
            }
        }
    }
}

/// The owner as seen by its work: only what a cleanup needs, without keeping the owner alive.
#[derive(Clone)]
pub(crate) enum OwnerRef {
    Scope(Weak<crate::scope::Shared>),
    Registry(Weak<crate::registry::Inner>),
}

impl OwnerRef {
    /// When the grace period ends: `grace` after the owner's teardown began (or after now, for
    /// work torn down on its own).
    pub(crate) fn grace_end(&self, grace: Duration) -> Instant {
        let began = match self {
            OwnerRef::Scope(s) => s.upgrade().and_then(|s| s.cancelled_at()),
            OwnerRef::Registry(r) => r.upgrade().and_then(|r| r.cancelled_at()),
        };
        crate::clock::saturating_deadline(began.unwrap_or_else(Instant::now), grace)
    }
}

/// Registers `cleanup` with the owner; on refusal, hands it back with the reason.
pub(crate) fn attach(
    core: Core<'_>,
    spawn: &Spawn,
    category: Category,
    cleanup: Cleanup,
) -> Result<(Link, OwnerRef), (Error, Cleanup)> {
    match core {
        Core::Scope(scope) => {
            let handle = scope.attach(spawn.name.clone(), cleanup).map_err(|c| (Error::Released, c))?;
            let (shared, idx, generation) = handle.into_weak();
            let owner = OwnerRef::Scope(shared.clone());
            Ok((Link::Scope { shared, idx, generation }, owner))
        }
        Core::Registry(registry) => {
            let (id, inner) = registry.attach(spawn, category, cleanup)?;
            let owner = OwnerRef::Registry(inner.clone());
            Ok((Link::Registry { inner, id }, owner))
        }
    }
}

/// How a piece of tracked work ended.
#[derive(Debug)]
pub(crate) enum Ended {
    Finished,
    Panicked(String),
}

/// What a piece of work and its cleanup share: the hand-off that lets whichever ends first —
/// the work or the teardown — do the right thing, race-free.
pub(crate) struct WorkCell {
    state: Mutex<CellState>,
    done: Notify,
}

#[derive(Default)]
struct CellState {
    /// Set once the entry exists; taken by whichever side removes it.
    link: Option<Link>,
    owner: Option<OwnerRef>,
    abort: Option<tokio::task::AbortHandle>,
    ended: Option<Ended>,
}

impl WorkCell {
    pub(crate) fn new() -> Arc<WorkCell> {
        Arc::new(WorkCell { state: Mutex::new(CellState::default()), done: Notify::new() })
    }

    fn lock(&self) -> MutexGuard<'_, CellState> {
        // Only plain assignments happen under this lock.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The spawner's half: keeps the link, or removes the entry at once if the work already
    /// finished.
    pub(crate) fn linked(&self, link: Link, owner: OwnerRef, abort: Option<tokio::task::AbortHandle>) {
        let mut st = self.lock();
        st.owner = Some(owner);
        st.abort = abort;
        if matches!(st.ended, Some(Ended::Finished)) {
            drop(st);
            link.detach();
        } else {
            st.link = Some(link);
        }
    }

    /// The work's half: records how it ended. A piece that finished before any teardown
    /// removes its entry; one that panicked, or finished after being told to stop (`stopping`),
    /// keeps it, so the teardown report says how it ended.
    pub(crate) fn ended(&self, how: Ended, stopping: bool) {
        let link = {
            let mut st = self.lock();
            let link = if matches!(how, Ended::Finished) && !stopping { st.link.take() } else { None };
            st.ended = Some(how);
            link
        };
        // `notify_one` stores a permit: a cleanup that starts waiting later still sees it.
        self.done.notify_one();
        if let Some(link) = link {
            link.detach();
        }
    }

    /// Stops the work now (aborts its task) unless it already ended; true if it had not.
    /// `detach` also removes its entry (a timer cleared by hand).
    pub(crate) fn stop_now(&self, detach: bool) -> bool {
        let (abort, link, running) = {
            let mut st = self.lock();
            let running = st.ended.is_none();
            (st.abort.take(), if detach { st.link.take() } else { None }, running)
        };
        if let Some(abort) = abort {
            abort.abort();
        }
        if let Some(link) = link {
            link.detach();
        }
        running
    }

    /// The outcome of work stopped by [`stop_now`](WorkCell::stop_now): a panic it ended with
    /// is reported; otherwise it was cleared, which is a success.
    pub(crate) fn outcome_now(&self) -> Outcome {
        let ended = self.lock().ended.take();
        ended.map_or(Ok(()), report)
    }

    /// Whether the work has ended (and nobody took the record yet).
    pub(crate) fn has_ended(&self) -> bool {
        self.lock().ended.is_some()
    }

    /// When the grace period ends: `grace` after the owner's teardown began.
    fn grace_end(&self, grace: Duration) -> Instant {
        let owner = self.lock().owner.clone();
        match owner {
            Some(owner) => owner.grace_end(grace),
            None => crate::clock::saturating_deadline(Instant::now(), grace),
        }
    }

    /// The cleanup of a task, thread or blocking job: cancels the work's own token (`own`, in a
    /// registry), then [`wind_down`](WorkCell::wind_down).
    pub(crate) fn cleanup<S>(
        self: &Arc<Self>,
        own: Option<CancellationToken>,
        grace: Duration,
        stop: S,
    ) -> Cleanup
    where
        S: FnOnce(Option<tokio::task::AbortHandle>) -> BoxError + Send + 'static,
    {
        let cell = Arc::clone(self);
        Cleanup::from_future(async move {
            if let Some(own) = own {
                own.cancel();
            }
            cell.wind_down(grace, stop).await
        })
    }

    /// The cleanup's half: waits for the work to end until its grace period is over, then
    /// reports it; work still running is stopped by `stop` (abort a task; nothing can stop a
    /// thread) and reported with the error `stop` returns.
    pub(crate) async fn wind_down(
        &self,
        grace: Duration,
        stop: impl FnOnce(Option<tokio::task::AbortHandle>) -> BoxError,
    ) -> Outcome {
        let until = self.grace_end(grace);
        loop {
            if let Some(how) = self.lock().ended.take() {
                return report(how);
            }
            if tokio::time::timeout_at(until.into(), self.done.notified()).await.is_err() {
                break;
            }
        }
        let mut st = self.lock();
        match st.ended.take() {
            Some(how) => report(how),
            None => Err(stop(st.abort.take())),
        }
    }
}

impl std::fmt::Debug for WorkCell {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkCell").field("ended", &self.lock().ended).finish_non_exhaustive()
    }
}

fn report(how: Ended) -> Outcome {
    match how {
        Ended::Finished => Ok(()),
        // Re-raised for the runner, which catches it and reports `Panicked` with this message.
        // `resume_unwind` does not run the panic hook a second time.
        Ended::Panicked(msg) => std::panic::resume_unwind(Box::new(msg)),
    }
}

/// The token a piece of work watches, and a handle to it for the work's cleanup to cancel when
/// it is the work's own. In a registry the work gets its own child of the registry's token, so a
/// teardown of only that resource stops only that work. A scope is only ever released whole,
/// after cancelling its token, so its work shares the scope's token and its cleanup has nothing
/// to cancel: an allocation and several token clones (each a lock) less per spawn.
pub(crate) fn work_token(core: Core<'_>) -> (CancellationToken, Option<CancellationToken>) {
    match core {
        Core::Scope(s) => (s.token(), None),
        Core::Registry(r) => {
            let own = r.token().child_token();
            (own.clone(), Some(own))
        }
    }
}

mod sealed {
    // Public in a private module: nameable by no one outside the crate, which is what seals
    // `Owner`.
    #![allow(unreachable_pub)]

    /// The two owners.
    #[derive(Clone, Copy, Debug)]
    pub enum Core<'a> {
        Scope(&'a crate::Scope),
        Registry(&'a crate::Registry),
    }

    pub trait Sealed {
        fn core(&self) -> Core<'_>;
    }
}

pub(crate) use sealed::Core;

impl sealed::Sealed for Scope {
    fn core(&self) -> Core<'_> {
        Core::Scope(self)
    }
}

impl sealed::Sealed for Registry {
    fn core(&self) -> Core<'_> {
        Core::Registry(self)
    }
}

/// Spawns work that its owner — a [`Scope`] or a [`Registry`] — stops and reports at teardown.
///
/// In a scope the work's entry takes its place in last-in-first-out order under its name; in a
/// registry it is registered under its name, or as `name#n` with [`Spawn::numbered`] (category [`Task`](Category::Task),
/// [`Thread`](Category::Thread) or [`Timer`](Category::Timer)); numbered, several pieces of work may
/// share a name. See the module docs for the cancel → grace → stop sequence.
///
/// ```
/// use closeout::{Owner, Registry};
/// use std::time::Duration;
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let registry = Registry::new();
/// registry.spawn("polite", |token| async move { token.cancelled().await })?;
/// registry.spawn(closeout::Spawn::new("stubborn").grace(Duration::from_millis(20)), |_token| {
///     std::future::pending::<()>()
/// })?;
/// let report = registry.shutdown().await;
/// assert!(report.get("polite").unwrap().status().is_ok());
/// assert!(!report.get("stubborn").unwrap().status().is_ok()); // aborted after its grace
/// # Ok(()) }
/// ```
pub trait Owner: sealed::Sealed {
    /// Spawns a tokio task, tracked. `f` receives a [`CancellationToken`] — cancelled when the
    /// owner's teardown begins, or (in a registry) when only this task is torn down — and
    /// returns the future to run.
    ///
    /// At teardown the task is cancelled, given its grace period, then aborted. The report
    /// says `Ok` for a task that finished, `Failed` (aborted) for one that did not, and
    /// `Panicked` for one that panicked (a panicked task keeps its entry until then). A task
    /// that finishes before any teardown leaves no entry behind. The returned
    /// [`JoinHandle`](tokio::task::JoinHandle) works as with `tokio::spawn`.
    ///
    /// # Errors
    ///
    /// [`SpawnError`] with `f`, uncalled: [`Error::NoRuntime`] outside a tokio runtime,
    /// [`Error::Released`] for a released scope, or the registry's refusal (shut down, full).
    ///
    /// ```
    /// use closeout::Owner;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let scope = closeout::Scope::new();
    /// let handle = scope.spawn("answer", |_token| async { 42 })?;
    /// assert_eq!(handle.await?, 42);
    /// tokio::task::yield_now().await;
    /// assert!(scope.is_empty()); // it finished: no entry left
    /// # Ok(()) }
    /// ```
    fn spawn<F, Fut>(
        &self,
        spawn: impl Into<Spawn>,
        f: F,
    ) -> Result<tokio::task::JoinHandle<Fut::Output>, SpawnError<F>>
    where
        F: FnOnce(CancellationToken) -> Fut,
        Fut: Future + Send + 'static,
        Fut::Output: Send + 'static,
    {
        crate::task::spawn(self.core(), spawn.into(), f)
    }

    /// Runs a blocking job on its own thread, tracked, like `tokio::task::spawn_blocking` but
    /// never holding up a runtime's shutdown: at teardown the job gets its grace period as a
    /// deadline, and one still running after it is reported as abandoned (its thread is
    /// detached). Needs no runtime.
    ///
    /// # Errors
    ///
    /// [`SpawnError`] with `f`, uncalled: [`Error::Released`], the registry's refusal, or
    /// [`Error::Os`] if the OS refused a thread.
    ///
    /// ```
    /// use closeout::Owner;
    /// let scope = closeout::Scope::new();
    /// let job = scope.spawn_blocking("checksum", || (1..=10u32).sum::<u32>())?;
    /// assert_eq!(job.join()?, 55);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    fn spawn_blocking<F, T>(
        &self,
        spawn: impl Into<Spawn>,
        f: F,
    ) -> Result<crate::ThreadHandle<T>, SpawnError<F>>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        crate::thread::spawn(self.core(), spawn.into(), Category::Task, f, |f, _stop| f())
    }

    /// Spawns an OS thread with a [`StopFlag`](crate::StopFlag), tracked. At teardown the flag
    /// is set and the thread is joined with its grace period as timeout; a thread that does not
    /// stop in time is reported and detached, and never keeps the process from exiting. Needs
    /// no runtime.
    ///
    /// # Errors
    ///
    /// As [`spawn_blocking`](Owner::spawn_blocking).
    ///
    /// ```
    /// use closeout::Owner;
    /// use std::time::Duration;
    /// let scope = closeout::Scope::new();
    /// scope.spawn_thread("poller", |stop| {
    ///     while !stop.wait_timeout(Duration::from_millis(10)) { /* poll */ }
    /// })?;
    /// assert!(scope.close().is_success()); // stopped and joined
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    fn spawn_thread<F, T>(
        &self,
        spawn: impl Into<Spawn>,
        f: F,
    ) -> Result<crate::ThreadHandle<T>, SpawnError<F>>
    where
        F: FnOnce(crate::StopFlag) -> T + Send + 'static,
        T: Send + 'static,
    {
        crate::thread::spawn(self.core(), spawn.into(), Category::Thread, f, |f, stop| f(stop))
    }

    /// Runs `f` once after `delay` on the current tokio runtime, unless the owner is torn down
    /// first (which clears it). A timeout that fired leaves nothing behind.
    ///
    /// # Errors
    ///
    /// [`SpawnError`] with `f`: [`Error::NoRuntime`], [`Error::Released`] or the registry's
    /// refusal.
    ///
    /// ```
    /// use closeout::Owner;
    /// use std::time::Duration;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let scope = closeout::Scope::new();
    /// let never = scope.set_timeout(Duration::from_secs(3600), || unreachable!())?;
    /// assert!(!never.is_finished());
    /// scope.close_async().await; // cleared, never runs
    /// # Ok(()) }
    /// ```
    fn set_timeout<F>(&self, delay: Duration, f: F) -> Result<crate::TimerHandle, SpawnError<F>>
    where
        F: FnOnce() + Send + 'static,
    {
        crate::timer::set_timeout(self.core(), delay, f)
    }

    /// Runs `f` every `period` (first after one period) until cleared or the owner is torn
    /// down. Ticks missed while `f` ran late are skipped, not bunched.
    ///
    /// # Errors
    ///
    /// As [`set_timeout`](Owner::set_timeout), plus [`Error::InvalidConfig`] for a zero period.
    ///
    /// ```
    /// use closeout::Owner;
    /// use std::sync::atomic::{AtomicU32, Ordering};
    /// use std::sync::Arc;
    /// use std::time::Duration;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let scope = closeout::Scope::new();
    /// let ticks = Arc::new(AtomicU32::new(0));
    /// let t = ticks.clone();
    /// scope.set_interval(Duration::from_millis(5), move || { t.fetch_add(1, Ordering::Relaxed); })?;
    /// tokio::time::sleep(Duration::from_millis(30)).await;
    /// scope.close_async().await;
    /// let seen = ticks.load(Ordering::Relaxed);
    /// assert!(seen >= 1);
    /// tokio::time::sleep(Duration::from_millis(20)).await;
    /// assert_eq!(ticks.load(Ordering::Relaxed), seen); // cleared: no more ticks
    /// # Ok(()) }
    /// ```
    fn set_interval<F>(&self, period: Duration, f: F) -> Result<crate::TimerHandle, SpawnError<F>>
    where
        F: FnMut() + Send + 'static,
    {
        crate::timer::set_interval(self.core(), period, f)
    }
}

impl Owner for Scope {}
impl Owner for Registry {}
