//! Timers tied to an owner: [`Owner::set_timeout`](crate::owner::Owner::set_timeout) and
//! [`Owner::set_interval`](crate::owner::Owner::set_interval).
//!
//! A timer is a small tokio task plus one entry in its owner, whose cleanup aborts the task:
//! releasing the owner clears every timer it holds. A timeout that fired removes its own entry,
//! so an owner that fires millions of timeouts keeps only what is still pending.

use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;

use crate::category::Category;
use crate::owner::cell::{self, Core, Ended, Stop, WorkCell};
use crate::owner::error::{SpawnError, SpawnFailure};
use crate::owner::spawn::Spawn;
use crate::runner::panic_message;

/// A pending timer: [`clear`](TimerHandle::clear) it before it fires. Dropping the handle does
/// not clear the timer; its owner still will.
///
/// ```
/// use closeout::owner::Owner;
/// use std::time::Duration;
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let scope = closeout::Scope::new();
/// let timer = scope.set_timeout(Duration::from_secs(60), || println!("too late"))?;
/// assert!(timer.clear()); // it had not fired
/// assert!(scope.is_empty());
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct TimerHandle {
    cell: Arc<WorkCell>,
}

impl TimerHandle {
    /// Stops the timer and removes its entry; true if it was still pending (an interval always
    /// is until cleared).
    pub fn clear(self) -> bool {
        self.cell.stop_now(true)
    }

    /// Whether a timeout has fired (or its callback panicked). An interval never finishes.
    pub fn is_finished(&self) -> bool {
        self.cell.has_ended()
    }
}

pub(crate) fn set_timeout<F>(core: Core<'_>, delay: Duration, f: F) -> Result<TimerHandle, SpawnError<F>>
where
    F: FnOnce() + Send + 'static,
{
    start(core, "timeout", f, move |f| async move {
        tokio::time::sleep(delay).await;
        f();
    })
}

pub(crate) fn set_interval<F>(core: Core<'_>, period: Duration, f: F) -> Result<TimerHandle, SpawnError<F>>
where
    F: FnMut() + Send + 'static,
{
    if period.is_zero() {
        return Err(SpawnError::new(SpawnFailure::ZeroPeriod, f));
    }
    start(core, "interval", f, move |mut f| async move {
        // tokio's clock (it may be paused in tests), saturating past what an `Instant` holds.
        let now = tokio::time::Instant::now().into_std();
        let first = tokio::time::Instant::from_std(crate::clock::saturating_deadline(now, period));
        let mut ticks = tokio::time::interval_at(first, period);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            ticks.tick().await;
            f();
        }
    })
}

fn start<F, Fut>(
    core: Core<'_>,
    name: &'static str,
    f: F,
    body: impl FnOnce(F) -> Fut,
) -> Result<TimerHandle, SpawnError<F>>
where
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let Ok(rt) = tokio::runtime::Handle::try_current() else {
        return Err(SpawnError::new(SpawnFailure::NoRuntime, f));
    };
    // Cleared at once by a sync cleanup: a scope holding only timers releases without a runtime.
    let stop = Stop::<cell::GiveUp>::Now;
    let (tracked, f) = cell::track(core, &Spawn::numbered(name), Category::Timer, stop, f)?;
    let fut = body(f);
    let task_cell = Arc::clone(&tracked.cell);
    let handle = rt.spawn(async move {
        match std::panic::AssertUnwindSafe(fut).catch_unwind().await {
            Ok(()) => task_cell.ended(Ended::Finished, false),
            Err(payload) => task_cell.ended(Ended::Panicked(panic_message(payload)), true),
        }
    });
    let cell = tracked.started(Some(handle.abort_handle()));
    Ok(TimerHandle { cell })
}
