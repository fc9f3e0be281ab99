//! Tracked OS threads and blocking jobs: the thread side of
//! [`Owner::spawn_thread`](crate::owner::Owner::spawn_thread) and
//! [`Owner::spawn_blocking`](crate::owner::Owner::spawn_blocking).
//!
//! Rust cannot stop a thread from outside, so a thread is asked to stop (its [`StopFlag`]) and
//! given its grace period to do so. One that does not is reported and detached: it is a plain
//! `std::thread`, never part of a runtime's blocking pool, so it holds up neither a runtime's
//! shutdown nor the process's exit (threads die with the process when `main` returns).

use std::pin::{Pin, pin};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::category::Category;
use crate::owner::cell::{self, Core, Ended, Stop};
use crate::owner::error::{SpawnError, SpawnFailure};
use crate::owner::spawn::Spawn;
use crate::runner::panic_message;

/// Tells a tracked thread to stop. Set when its owner's teardown begins (it is built on the
/// owner's token) or when its own cleanup runs; the thread checks it, or sleeps on it with
/// [`wait_timeout`](StopFlag::wait_timeout) so that stopping wakes it at once.
///
/// ```
/// use closeout::owner::StopFlag;
/// use std::time::Duration;
/// let stop = StopFlag::new();
/// assert!(!stop.wait_timeout(Duration::from_millis(1)));
/// stop.stop();
/// assert!(stop.is_stopped());
/// assert!(stop.wait_timeout(Duration::from_secs(60))); // returns at once
/// ```
#[derive(Clone, Debug, Default)]
pub struct StopFlag {
    token: CancellationToken,
}

impl StopFlag {
    /// A flag of its own, not tied to any owner.
    pub fn new() -> StopFlag {
        StopFlag::default()
    }

    /// Whether the thread was asked to stop.
    pub fn is_stopped(&self) -> bool {
        self.token.is_cancelled()
    }

    /// Asks the thread to stop.
    pub fn stop(&self) {
        self.token.cancel();
    }

    /// Sleeps until asked to stop or `timeout` passes; true if asked to stop. Use it in place
    /// of `thread::sleep` so a stop request is seen at once.
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        let until = Instant::now().checked_add(timeout);
        block_until(pin!(self.token.cancelled()), until).is_some()
    }

    /// The token behind the flag, to hand to async code.
    pub fn token(&self) -> &CancellationToken {
        &self.token
    }
}

/// Wakes a thread parked in [`block_until`].
struct Unpark(std::thread::Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

/// Polls `fut` on this thread, parking between polls, until it is ready or `until` passes
/// (`None`: no limit). Needs no runtime: the futures used here (a token, a oneshot) are woken
/// by whoever completes them.
fn block_until<F: std::future::Future>(mut fut: Pin<&mut F>, until: Option<Instant>) -> Option<F::Output> {
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    loop {
        if let Poll::Ready(out) = fut.as_mut().poll(&mut cx) {
            return Some(out);
        }
        match until {
            None => std::thread::park(),
            Some(until) => {
                let left = until.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return None;
                }
                std::thread::park_timeout(left);
            }
        }
    }
}

/// A tracked thread or blocking job did not end within its grace period; its thread was
/// detached and may still be running.
#[derive(Debug, thiserror::Error)]
#[error("still running after its {grace:?} grace period; its thread was detached")]
pub struct Abandoned {
    /// The grace period it was given.
    pub grace: Duration,
}

/// How a tracked thread or blocking job failed to produce its value.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JoinError {
    /// It panicked, with this message.
    #[error("thread panicked: {0}")]
    Panicked(String),
}

/// The result of a tracked thread or blocking job: [`join`](ThreadHandle::join) it from sync
/// code or `.await` it from async code. Dropping the handle detaches nothing: the owner still
/// tracks the thread.
///
/// ```
/// use closeout::owner::Owner;
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let scope = closeout::Scope::new();
/// let job = scope.spawn_blocking("hash", || 6 * 7)?;
/// assert_eq!(job.await?, 42);
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct ThreadHandle<T> {
    rx: tokio::sync::oneshot::Receiver<Result<T, JoinError>>,
}

impl<T> ThreadHandle<T> {
    /// Blocks until the thread ends and returns its value. Works with or without a runtime.
    ///
    /// # Errors
    ///
    /// [`JoinError::Panicked`] if the thread panicked.
    pub fn join(self) -> Result<T, JoinError> {
        let rx = pin!(self.rx);
        block_until(rx, None).map_or_else(|| Err(lost()), |r| r.unwrap_or_else(|_| Err(lost())))
    }

    /// Whether the thread has ended.
    pub fn is_finished(&self) -> bool {
        !self.rx.is_empty() || self.rx.is_terminated()
    }
}

fn lost() -> JoinError {
    JoinError::Panicked("thread ended without a result".into())
}

impl<T> std::future::Future for ThreadHandle<T> {
    type Output = Result<T, JoinError>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.rx).poll(cx).map(|r| r.unwrap_or_else(|_| Err(lost())))
    }
}

/// Spawns `f` on a tracked thread; `run` calls it (with the stop flag for threads).
pub(crate) fn spawn<F, T>(
    core: Core<'_>,
    spawn: Spawn,
    category: Category,
    f: F,
    run: fn(F, StopFlag) -> T,
) -> Result<ThreadHandle<T>, SpawnError<F>>
where
    F: Send + 'static,
    T: Send + 'static,
{
    let grace = spawn.grace;
    let give_up = move |_: Option<tokio::task::AbortHandle>| -> crate::cleanup::BoxError {
        Box::new(Abandoned { grace })
    };
    let (mut tracked, f) = cell::track(core, &spawn, category, Stop::AfterGrace(give_up), f)?;
    let stop = StopFlag { token: tracked.take_token() };
    let (tx, rx) = tokio::sync::oneshot::channel();
    // `f` goes to the thread through a slot so that, if the OS refuses the thread, it can be
    // taken back and returned unstarted.
    let slot = Arc::new(std::sync::Mutex::new(Some(f)));
    let thread_slot = Arc::clone(&slot);
    let thread_cell = Arc::clone(&tracked.cell);
    let thread_stop = stop.clone();
    let spawned = std::thread::Builder::new().name(spawn.name.to_string()).spawn(move || {
        let Some(f) = crate::sync::lock_std(&thread_slot).take() else { return };
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(f, stop)));
        let result = match result {
            Ok(value) => {
                thread_cell.ended(Ended::Finished, thread_stop.is_stopped());
                Ok(value)
            }
            Err(payload) => {
                let msg = panic_message(payload);
                thread_cell.ended(Ended::Panicked(msg.clone()), true);
                Err(JoinError::Panicked(msg))
            }
        };
        let _ = tx.send(result);
    });
    if let Err(e) = spawned {
        tracked.not_started();
        let f = crate::sync::lock_std(&slot).take();
        return match f {
            Some(f) => Err(SpawnError::new(SpawnFailure::Os { what: "spawning a thread", source: e }, f)),
            None => unreachable!("the thread was never started, so it cannot have taken the work"),
        };
    }
    tracked.started(None);
    Ok(ThreadHandle { rx })
}
