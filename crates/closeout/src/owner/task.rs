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
    let handle = rt.spawn(async move {
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
    });
    tracked.started(Some(handle.abort_handle()));
    Ok(handle)
}
