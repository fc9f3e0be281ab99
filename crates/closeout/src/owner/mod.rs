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
//!    [`StopFlag`] for threads) that its own cleanup cancels, so tearing down
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
//!
//! # Where things are
//!
//! - `spawn`: [`Spawn`], the name and grace period work is given.
//! - `cell`: the one path every kind of work takes (register with the owner, start, hand off)
//!   and the `WorkCell` hand-off between the work and its cleanup, with its
//!   invariants.
//! - `task`, `thread`, `timer`: what differs per kind.

mod cell;
mod error;
mod spawn;
mod task;
mod thread;
mod timer;

use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::category::Category;
use crate::{Registry, Scope};
use cell::Core;

pub use error::{SpawnError, SpawnFailure};
pub use spawn::{DEFAULT_GRACE, Spawn};
pub use task::{Aborted, Overran};
pub use thread::{Abandoned, JoinError, StopFlag, ThreadHandle};
pub use timer::TimerHandle;

impl cell::Sealed for Scope {
    fn core(&self) -> Core<'_> {
        Core::Scope(self)
    }
}

impl cell::Sealed for Registry {
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
/// use closeout::{Registry};
/// use closeout::owner::Owner;
/// use std::time::Duration;
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let registry = Registry::new();
/// registry.spawn("polite", |token| async move { token.cancelled().await })?;
/// registry.spawn(closeout::owner::Spawn::new("stubborn").grace(Duration::from_millis(20)), |_token| {
///     std::future::pending::<()>()
/// })?;
/// let report = registry.shutdown().await;
/// assert!(report.get("polite").unwrap().status().is_ok());
/// assert!(!report.get("stubborn").unwrap().status().is_ok()); // aborted after its grace
/// # Ok(()) }
/// ```
pub trait Owner: cell::Sealed {
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
    /// [`SpawnError`] with `f`, uncalled: [`SpawnFailure::NoRuntime`] outside a tokio runtime,
    /// [`SpawnFailure::Released`] for a released scope, or [`SpawnFailure::Refused`] (the registry is shut down, full, or has the id).
    ///
    /// ```
    /// use closeout::owner::Owner;
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
        task::spawn(self.core(), spawn.into(), f)
    }

    /// Runs a blocking job on its own thread, tracked, like `tokio::task::spawn_blocking` but
    /// never holding up a runtime's shutdown: at teardown the job gets its grace period as a
    /// deadline, and one still running after it is reported as abandoned (its thread is
    /// detached). Needs no runtime.
    ///
    /// # Errors
    ///
    /// [`SpawnError`] with `f`, uncalled: [`SpawnFailure::Released`], the registry's refusal, or
    /// [`SpawnFailure::Os`] if the OS refused a thread.
    ///
    /// ```
    /// use closeout::owner::Owner;
    /// let scope = closeout::Scope::new();
    /// let job = scope.spawn_blocking("checksum", || (1..=10u32).sum::<u32>())?;
    /// assert_eq!(job.join()?, 55);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    fn spawn_blocking<F, T>(&self, spawn: impl Into<Spawn>, f: F) -> Result<ThreadHandle<T>, SpawnError<F>>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        thread::spawn(self.core(), spawn.into(), Category::Task, f, |f, _stop| f())
    }

    /// Spawns an OS thread with a [`StopFlag`], tracked. At teardown the flag
    /// is set and the thread is joined with its grace period as timeout; a thread that does not
    /// stop in time is reported and detached, and never keeps the process from exiting. Needs
    /// no runtime.
    ///
    /// # Errors
    ///
    /// As [`spawn_blocking`](Owner::spawn_blocking).
    ///
    /// ```
    /// use closeout::owner::Owner;
    /// use std::time::Duration;
    /// let scope = closeout::Scope::new();
    /// scope.spawn_thread("poller", |stop| {
    ///     while !stop.wait_timeout(Duration::from_millis(10)) { /* poll */ }
    /// })?;
    /// assert!(scope.close().is_success()); // stopped and joined
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    fn spawn_thread<F, T>(&self, spawn: impl Into<Spawn>, f: F) -> Result<ThreadHandle<T>, SpawnError<F>>
    where
        F: FnOnce(StopFlag) -> T + Send + 'static,
        T: Send + 'static,
    {
        thread::spawn(self.core(), spawn.into(), Category::Thread, f, |f, stop| f(stop))
    }

    /// Runs `f` once after `delay` on the current tokio runtime, unless the owner is torn down
    /// first (which clears it). A timeout that fired leaves nothing behind.
    ///
    /// # Errors
    ///
    /// [`SpawnError`] with `f`: [`SpawnFailure::NoRuntime`], [`SpawnFailure::Released`] or the registry's
    /// refusal.
    ///
    /// ```
    /// use closeout::owner::Owner;
    /// use std::time::Duration;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let scope = closeout::Scope::new();
    /// let never = scope.set_timeout(Duration::from_secs(3600), || unreachable!())?;
    /// assert!(!never.is_finished());
    /// scope.close_async().await; // cleared, never runs
    /// # Ok(()) }
    /// ```
    fn set_timeout<F>(&self, delay: Duration, f: F) -> Result<TimerHandle, SpawnError<F>>
    where
        F: FnOnce() + Send + 'static,
    {
        timer::set_timeout(self.core(), delay, f)
    }

    /// Runs `f` every `period` (first after one period) until cleared or the owner is torn
    /// down. Ticks missed while `f` ran late are skipped, not bunched.
    ///
    /// # Errors
    ///
    /// As [`set_timeout`](Owner::set_timeout), plus [`SpawnFailure::ZeroPeriod`].
    ///
    /// ```
    /// use closeout::owner::Owner;
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
    fn set_interval<F>(&self, period: Duration, f: F) -> Result<TimerHandle, SpawnError<F>>
    where
        F: FnMut() + Send + 'static,
    {
        timer::set_interval(self.core(), period, f)
    }
}

impl Owner for Scope {}
impl Owner for Registry {}
