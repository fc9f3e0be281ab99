//! Tracked tokio tasks: the task side of [`Owner::spawn`](crate::owner::Owner::spawn).
//!
//! The task is wrapped so that, when it ends, it records how (finished or panicked) in its
//! [`WorkCell`]; its cleanup cancels the task's token, waits for that record until the grace
//! period is over, and aborts the task otherwise.

use std::future::Future;
use std::panic::{AssertUnwindSafe, resume_unwind};
use std::time::Duration;

use futures_util::FutureExt;
use tokio_util::sync::CancellationToken;

use crate::category::Category;
use crate::owner::cell::{self, Core, Ended, Stop};
use crate::owner::error::{SpawnError, SpawnFailure};
use crate::owner::spawn::Spawn;
use crate::runner::panic_text;

/// The error a tracked task is reported with when its watchdog ([`Spawn::limit`]) cancelled it.
///
/// ```
/// let err = closeout::owner::Overran { limit: std::time::Duration::from_secs(5) };
/// assert_eq!(err.to_string(), "ran past its 5s limit and was cancelled by its watchdog");
/// ```
#[derive(Debug, thiserror::Error)]
#[error("ran past its {limit:?} limit and was cancelled by its watchdog")]
pub struct Overran {
    /// The limit it was given.
    pub limit: Duration,
}

/// The error a tracked task is reported with when it did not finish within its grace period
/// and was aborted.
///
/// ```
/// use closeout::{Status};
/// use closeout::owner::{Owner, Spawn};
/// use std::time::Duration;
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let scope = closeout::Scope::new();
/// scope.spawn(Spawn::new("stuck").grace(Duration::ZERO), |_| std::future::pending::<()>())?;
/// let report = scope.close_async().await;
/// let Status::Failed(err) = report.get("stuck").unwrap().status() else { panic!() };
/// assert!(err.get_ref().is::<closeout::owner::Aborted>());
/// # Ok(()) }
/// ```
#[derive(Debug, thiserror::Error)]
#[error("did not finish within its {grace:?} grace period and was aborted")]
pub struct Aborted {
    /// The grace period it was given.
    pub grace: Duration,
}

pub(crate) fn spawn<F, Fut>(
    core: Core<'_>,
    spawn: Spawn,
    f: F,
) -> Result<tokio::task::JoinHandle<Fut::Output>, SpawnError<F>>
where
    F: FnOnce(CancellationToken) -> Fut,
    Fut: Future + Send + 'static,
    Fut::Output: Send + 'static,
{
    let Ok(rt) = tokio::runtime::Handle::try_current() else {
        return Err(SpawnError::new(SpawnFailure::NoRuntime, f));
    };
    let grace = spawn.grace;
    let give_up = move |abort: Option<tokio::task::AbortHandle>| -> crate::cleanup::BoxError {
        if let Some(abort) = abort {
            abort.abort();
        }
        Box::new(Aborted { grace })
    };
    let (mut tracked, f) = cell::track(core, &spawn, Category::Task, Stop::AfterGrace(give_up), f)?;
    let token = tracked.take_token();
    let watch = token.clone();
    let fut = f(token);
    let task_cell = std::sync::Arc::clone(&tracked.cell);
    let work = async move {
        match AssertUnwindSafe(fut).catch_unwind().await {
            Ok(out) => {
                task_cell.ended(Ended::Finished, watch.is_cancelled());
                out
            }
            Err(payload) => {
                task_cell.ended(Ended::Panicked(panic_text(&*payload)), true);
                // The JoinHandle reports the panic exactly as with `tokio::spawn`.
                resume_unwind(payload)
            }
        }
    };
    // Only a task with a watchdog carries its timer: the others keep the smaller future.
    let handle = match spawn.limit {
        None => rt.spawn(work),
        Some(limit) => {
            let (cell, name) = (std::sync::Arc::clone(&tracked.cell), spawn.name.clone());
            rt.spawn(async move {
                let until = crate::clock::saturating_deadline(std::time::Instant::now(), limit);
                match tokio::time::timeout_at(until.into(), work).await {
                    Ok(out) => out,
                    Err(_) => overran(&cell, limit, &name).await,
                }
            })
        }
    };
    tracked.started(Some(handle.abort_handle()));
    Ok(handle)
}

/// The watchdog fired: records it (the entry stays, for the teardown's report), logs it, and
/// cancels this task through its own abort handle, which takes effect at its next turn. The
/// handle is set right after the spawn returns; until then, this waits a turn at a time.
async fn overran<T>(cell: &cell::WorkCell, limit: Duration, name: &str) -> T {
    crate::observer::quietly(|| {
        tracing::warn!(task = name, ?limit, "closeout: task ran past its limit; cancelling it");
    });
    cell.ended(Ended::Overran(limit), true);
    loop {
        if let Some(abort) = cell.abort_handle() {
            abort.abort();
        }
        tokio::task::yield_now().await;
    }
}
