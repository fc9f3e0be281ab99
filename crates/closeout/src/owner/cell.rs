//! The one path every kind of tracked work takes, and the hand-off between a piece of work and
//! its cleanup.
//!
//! [`track`] does what every kind shares: take the work's token, make its [`WorkCell`], build
//! its cleanup, register that with the owner (handing the work back unstarted on refusal). The
//! kind then starts the work its own way and calls [`Tracked::started`]. A kind keeps only what
//! differs: whether it needs a runtime, how it starts, and how a late piece is stopped.
//!
//! # Invariants
//!
//! W1. The owner's entry for a piece of work is removed at most once: by the work when it
//!    finished by itself before any teardown, by a timer cleared by hand, or by the owner's
//!    teardown (which runs the cleanup instead). `CellState::linked` is true exactly while the
//!    entry may still be removed by the work's side, and is cleared under the cell's lock by
//!    whichever side acts.
//! W2. The work's end is recorded once (`ended`), and `done` keeps a permit (`notify_one`), so a
//!    cleanup that starts waiting after the work ended still sees it.
//! W3. Whichever comes first — the spawner linking the entry, or the work ending — the other
//!    finds what it needs: work that finished before it was linked is detached by `started`.
//!
//! # Lock order
//!
//! `WorkCell::state`, then the owner's own lock (a scope's stack, a registry's state) while
//! detaching; the owner never takes a cell's lock while holding its own (cleanups run outside
//! it). Only plain assignments and the detach happen under the cell's lock.

use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::category::Category;
use crate::cleanup::{BoxError, Cleanup, Outcome};
use crate::owner::error::{SpawnError, SpawnFailure};
use crate::owner::spawn::Spawn;

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

pub(crate) use sealed::{Core, Sealed};

/// A piece of work's owner, held weakly, and where its entry is there: enough to remove the
/// entry when the work ends by itself, and to know when the owner's teardown began.
pub(crate) enum OwnerRef {
    Scope { shared: Weak<crate::scope::Shared>, idx: u32, generation: u32 },
    Registry { inner: Weak<crate::registry::Inner>, id: String },
}

impl OwnerRef {
    /// Removes the entry unrun. Does nothing if the owner is gone or already tearing it down.
    fn detach(&self) {
        match self {
            OwnerRef::Scope { shared, idx, generation } => {
                if let Some(shared) = shared.upgrade() {
                    shared.remove(*idx, *generation);
                }
            }
            OwnerRef::Registry { inner, id } => {
                if let Some(inner) = inner.upgrade() {
                    inner.detach(id);
                }
            }
        }
    }

    /// When the grace period ends: `grace` after the owner's teardown began (or after now, for
    /// work torn down on its own).
    fn grace_end(&self, grace: Duration) -> Instant {
        let began = match self {
            OwnerRef::Scope { shared, .. } => shared.upgrade().and_then(|s| s.cancelled_at()),
            OwnerRef::Registry { inner, .. } => inner.upgrade().and_then(|r| r.cancelled_at()),
        };
        crate::clock::saturating_deadline(began.unwrap_or_else(Instant::now), grace)
    }
}

/// Registers `cleanup` with the owner; on refusal, hands it back with the reason.
fn attach(
    core: Core<'_>,
    spawn: &Spawn,
    category: Category,
    cleanup: Cleanup,
) -> Result<OwnerRef, (SpawnFailure, Cleanup)> {
    match core {
        Core::Scope(scope) => {
            let handle =
                scope.attach(spawn.name.clone(), cleanup).map_err(|c| (SpawnFailure::Released, c))?;
            let (shared, idx, generation) = handle.into_weak();
            Ok(OwnerRef::Scope { shared, idx, generation })
        }
        Core::Registry(registry) => {
            let (id, inner) = registry
                .attach(&spawn.name, spawn.numbered, &spawn.depends_on, category, cleanup)
                .map_err(|(e, c)| (SpawnFailure::Refused(e), c))?;
            Ok(OwnerRef::Registry { inner, id })
        }
    }
}

/// What a kind does to work still running when its grace period is over: abort a task, report a
/// thread it cannot stop. Returns the error the report shows.
pub(crate) type GiveUp = fn(Option<tokio::task::AbortHandle>) -> BoxError;

/// How a kind's cleanup ends work that is still running when the owner tears it down.
pub(crate) enum Stop<S> {
    /// Cancel the work's token, wait for it until the grace period is over, then `S` (abort a
    /// task; a thread cannot be stopped, only reported).
    AfterGrace(S),
    /// Stop it at once, with a sync cleanup that needs no runtime (a timer).
    Now,
}

/// A piece of work registered with its owner, not started yet.
pub(crate) struct Tracked {
    /// What the work watches to know it should wind down, until the kind takes it
    /// ([`Tracked::take_token`]).
    token: Option<CancellationToken>,
    pub(crate) cell: Arc<WorkCell>,
    owner: OwnerRef,
}

/// The one path every kind takes: token, cell, cleanup, registration. On refusal `f` comes back
/// unstarted in the error.
pub(crate) fn track<F, S>(
    core: Core<'_>,
    spawn: &Spawn,
    category: Category,
    stop: Stop<S>,
    f: F,
) -> Result<(Tracked, F), SpawnError<F>>
where
    S: FnOnce(Option<tokio::task::AbortHandle>) -> BoxError + Send + 'static,
{
    let (token, own) = work_token(core);
    let cell = WorkCell::new();
    let cleanup = match stop {
        Stop::AfterGrace(give_up) => cell.after_grace(own, spawn.grace, give_up),
        Stop::Now => {
            let cell = Arc::clone(&cell);
            Cleanup::from_fn(move || {
                cell.stop_now(false);
                cell.outcome_now()
            })
        }
    };
    match attach(core, spawn, category, cleanup) {
        Ok(owner) => Ok((Tracked { token: Some(token), cell, owner }, f)),
        Err((error, _unrun)) => Err(SpawnError::new(error, f)),
    }
}

impl Tracked {
    /// The work's token, moved out for the work: every clone and drop of a token takes its
    /// tree's lock, so the kind gets this one instead of a clone.
    pub(crate) fn take_token(&mut self) -> CancellationToken {
        // Taken once by each kind; a second take would get a fresh, never-cancelled token.
        self.token.take().unwrap_or_default()
    }

    /// The work started (with its task's abort handle, if it is a task): the cell takes the
    /// link to the owner (invariant W3).
    pub(crate) fn started(self, abort: Option<tokio::task::AbortHandle>) -> Arc<WorkCell> {
        let Tracked { cell, owner, .. } = self;
        {
            let mut st = cell.lock();
            st.abort = abort;
            st.linked = !matches!(st.ended, Some(Ended::Finished));
            if !st.linked {
                owner.detach();
            }
            st.owner = Some(owner);
        }
        cell
    }

    /// The work could not be started (the OS refused a thread): its entry goes.
    pub(crate) fn not_started(self) {
        self.owner.detach();
    }
}

/// The token a piece of work watches, and a handle to it for the work's cleanup to cancel when
/// it is the work's own. In a registry the work gets its own child of the registry's token, so a
/// teardown of only that resource stops only that work. A scope is only ever released whole,
/// after cancelling its token, so its work shares the scope's token and its cleanup has nothing
/// to cancel: an allocation and several token clones (each a lock) less per spawn.
fn work_token(core: Core<'_>) -> (CancellationToken, Option<CancellationToken>) {
    match core {
        Core::Scope(s) => (s.token(), None),
        Core::Registry(r) => {
            let own = r.token().child_token();
            (own.clone(), Some(own))
        }
    }
}

/// How a piece of tracked work ended.
#[derive(Debug)]
pub(crate) enum Ended {
    Finished,
    Panicked(String),
    /// Cancelled by its watchdog after running this long.
    Overran(Duration),
}

/// What a piece of work and its cleanup share: the hand-off that lets whichever ends first —
/// the work or the teardown — do the right thing, race-free (see the invariants above).
pub(crate) struct WorkCell {
    state: Mutex<CellState>,
    done: Notify,
}

#[derive(Default)]
struct CellState {
    /// The owner, for the grace period and for removing the entry.
    owner: Option<OwnerRef>,
    /// Whether the work's side may still remove the entry (invariant W1).
    linked: bool,
    abort: Option<tokio::task::AbortHandle>,
    ended: Option<Ended>,
}

impl WorkCell {
    fn new() -> Arc<WorkCell> {
        Arc::new(WorkCell { state: Mutex::new(CellState::default()), done: Notify::new() })
    }

    fn lock(&self) -> MutexGuard<'_, CellState> {
        crate::sync::lock(&self.state)
    }

    /// Removes the entry if the work's side still may (invariant W1), under the cell's lock.
    fn detach_locked(st: &mut CellState) {
        if std::mem::take(&mut st.linked)
            && let Some(owner) = &st.owner
        {
            owner.detach();
        }
    }

    /// The work's half: records how it ended (invariant W2). A piece that finished before any
    /// teardown removes its entry; one that panicked, or finished after being told to stop
    /// (`stopping`), keeps it, so the teardown report says how it ended.
    pub(crate) fn ended(&self, how: Ended, stopping: bool) {
        {
            let mut st = self.lock();
            if matches!(how, Ended::Finished) && !stopping {
                WorkCell::detach_locked(&mut st);
            }
            st.ended = Some(how);
        }
        // `notify_one` stores a permit: a cleanup that starts waiting later still sees it.
        self.done.notify_one();
    }

    /// Stops the work now (aborts its task) unless it already ended; true if it had not.
    /// `detach` also removes its entry (a timer cleared by hand).
    pub(crate) fn stop_now(&self, detach: bool) -> bool {
        let (abort, running) = {
            let mut st = self.lock();
            if detach {
                WorkCell::detach_locked(&mut st);
            }
            (st.abort.take(), st.ended.is_none())
        };
        if let Some(abort) = abort {
            abort.abort();
        }
        running
    }

    /// The outcome of work stopped by [`stop_now`](WorkCell::stop_now): a panic it ended with
    /// is reported; otherwise it was cleared, which is a success.
    pub(crate) fn outcome_now(&self) -> Outcome {
        let ended = self.lock().ended.take();
        ended.map_or(Ok(()), report)
    }

    /// How the work ended, if it has and nobody took the record yet.
    fn take_ended(&self) -> Option<Ended> {
        self.lock().ended.take()
    }

    /// The task's abort handle, if it was started (a copy: the cleanup keeps its own).
    pub(crate) fn abort_handle(&self) -> Option<tokio::task::AbortHandle> {
        self.lock().abort.clone()
    }

    /// Whether the work has ended (and nobody took the record yet).
    pub(crate) fn has_ended(&self) -> bool {
        self.lock().ended.is_some()
    }

    /// When the grace period ends: `grace` after the owner's teardown began.
    fn grace_end(&self, grace: Duration) -> Instant {
        match &self.lock().owner {
            Some(owner) => owner.grace_end(grace),
            None => crate::clock::saturating_deadline(Instant::now(), grace),
        }
    }

    /// The cleanup of a task, thread or blocking job: cancels the work's own token (`own`, in a
    /// registry), then [`wind_down`](WorkCell::wind_down).
    fn after_grace<S>(self: &Arc<Self>, own: Option<CancellationToken>, grace: Duration, stop: S) -> Cleanup
    where
        S: FnOnce(Option<tokio::task::AbortHandle>) -> BoxError + Send + 'static,
    {
        let cell = Arc::clone(self);
        // The waiting future (a timer and a `Notified`, a few hundred bytes) is boxed only when
        // the teardown polls this cleanup: a parked task keeps just these captures until then.
        Cleanup::from_future(async move {
            if let Some(own) = own {
                own.cancel();
            }
            // Fast path: work that watched its token has usually ended by now (cancel first
            // woke it before any cleanup started), and needs no timer.
            if let Some(how) = cell.take_ended() {
                return report(how);
            }
            // Its task may just have been woken and not run yet: one turn of the scheduler
            // usually lets it end, which is far cheaper than arming a timer for the grace.
            tokio::task::yield_now().await;
            if let Some(how) = cell.take_ended() {
                return report(how);
            }
            Box::pin(cell.wind_down(grace, stop)).await
        })
    }

    /// The cleanup's half: waits for the work to end until its grace period is over, then
    /// reports it; work still running is stopped by `stop` (abort a task; nothing can stop a
    /// thread) and reported with the error `stop` returns.
    async fn wind_down(
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
        Ended::Overran(limit) => Err(Box::new(crate::owner::Overran { limit })),
    }
}
