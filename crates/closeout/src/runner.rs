//! Runs one cleanup and says how it ended: the piece [`Scope`](crate::Scope) and
//! [`Registry`](crate::Registry) share.
//!
//! Panics are caught and reported, never propagated. Timeouts abandon the cleanup: an async one
//! is dropped; a sync one runs on a detached helper thread that is left behind. A thread-local
//! marker records which owner's cleanup is running on this thread, so a teardown called from
//! inside a cleanup of its own owner is recognised and returns instead of deadlocking.

use std::any::Any;
use std::cell::RefCell;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::FutureExt;

use crate::cleanup::{Call, Cleanup, Outcome, SyncCall};
use crate::report::{CleanupError, Status};

#[cfg(not(loom))]
thread_local! {
    /// Owners (scope or registry addresses) whose cleanup is running on this thread right now.
    static RUNNING: RefCell<Vec<usize>> = const { RefCell::new(Vec::new()) };
}

#[cfg(loom)]
loom::thread_local! {
    static RUNNING: RefCell<Vec<usize>> = RefCell::new(Vec::new());
}

/// Whether a cleanup of `owner` is running on this thread (a re-entrant teardown call).
pub(crate) fn is_reentrant(owner: usize) -> bool {
    RUNNING.with(|r| r.borrow().contains(&owner))
}

/// Whether any closeout cleanup is running on this thread: a panic here is a cleanup's, caught
/// and reported, and must not start a process-wide teardown.
#[cfg_attr(any(loom, not(all(feature = "hooks", unix))), allow(dead_code))]
pub(crate) fn in_cleanup() -> bool {
    RUNNING.with(|r| !r.borrow().is_empty())
}

/// Marks `owner` as running on this thread until dropped. A scope marks each release once
/// (owner 0, which no registry address equals) rather than each action, to keep its hot path
/// lean.
pub(crate) struct Mark;

impl Mark {
    pub(crate) fn enter(owner: usize) -> Mark {
        RUNNING.with(|r| r.borrow_mut().push(owner));
        Mark
    }
}

impl Drop for Mark {
    fn drop(&mut self) {
        RUNNING.with(|r| {
            r.borrow_mut().pop();
        });
    }
}

/// A future that carries its owner's mark into every poll.
struct Marked<F> {
    owner: usize,
    fut: F,
}

impl<F: Future + Unpin> Future for Marked<F> {
    type Output = F::Output;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let _mark = Mark::enter(self.owner);
        Pin::new(&mut self.fut).poll(cx)
    }
}

/// The text of a panic payload, which is then dropped safely (see [`drop_payload`]).
pub(crate) fn panic_message(payload: Box<dyn Any + Send>) -> String {
    let msg = panic_text(&*payload);
    drop_payload(payload);
    msg
}

/// The text of a panic payload that is kept (to be resumed, say).
pub(crate) fn panic_text(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_owned()
    }
}

/// Drops a caught panic payload without letting its own `Drop` unwind into closeout: a payload
/// whose destructor panics would otherwise escape the very `catch_unwind` that caught it. The
/// second payload is leaked (its destructor is what panicked; running it again could loop).
pub(crate) fn drop_payload(payload: Box<dyn Any + Send>) {
    if let Err(second) = catch_unwind(AssertUnwindSafe(move || drop(payload))) {
        std::mem::forget(second);
    }
}

#[inline]
pub(crate) fn status_of(result: std::thread::Result<Outcome>) -> Status {
    match result {
        Ok(Ok(())) => Status::Ok,
        Ok(Err(e)) => Status::Failed(CleanupError::new(e)),
        Err(payload) => Status::Panicked(panic_message(payload)),
    }
}

/// Runs a sync cleanup here, now. Cannot be interrupted.
pub(crate) fn run_inline(owner: usize, f: Box<dyn SyncCall>) -> Status {
    let _mark = Mark::enter(owner);
    status_of(catch_unwind(AssertUnwindSafe(|| f.call())))
}

/// Runs the actions `next` hands out, one after another, under one `catch_unwind` for the
/// whole stretch: a landing pad per action was most of what a scope cost over a plain vector of
/// boxes. `next` returns `None` where the stretch ends. Returns how many actions succeeded, and
/// the one that failed or panicked (the number `next` gave it, and its status), which ends the
/// stretch too. Shared by [`Scope`](crate::Scope) and [`LocalScope`](crate::LocalScope).
pub(crate) fn run_stretch<F>(mut next: impl FnMut() -> Option<(u64, F)>) -> (usize, Option<(u64, Status)>)
where
    F: FnOnce() -> Outcome,
{
    let mut ok = 0;
    let mut current = 0;
    let result = catch_unwind(AssertUnwindSafe(|| {
        while let Some((n, f)) = next() {
            current = n;
            if let Err(e) = f() {
                return Some(e);
            }
            ok += 1;
        }
        None
    }));
    let stopped = match result {
        Ok(None) => None,
        Ok(Some(e)) => Some((current, status_of(Ok(Err(e))))),
        Err(payload) => Some((current, status_of(Err(payload)))),
    };
    (ok, stopped)
}

/// Runs a cleanup that is not `Send` (a [`LocalScope`](crate::LocalScope)'s) here, now.
pub(crate) fn run_local(f: impl FnOnce() -> Outcome) -> Status {
    status_of(catch_unwind(AssertUnwindSafe(f)))
}

/// Runs a sync cleanup here, now, without a re-entrancy mark: a scope takes its actions out
/// before running them, so it needs none, and this is its hot path.
pub(crate) fn run_unmarked(f: Box<dyn SyncCall>) -> Status {
    status_of(catch_unwind(AssertUnwindSafe(|| f.call())))
}

/// Whether running this cleanup needs a tokio runtime (a timer or a future).
pub(crate) fn needs_runtime(cleanup: &Cleanup, timeout: Option<Duration>) -> bool {
    cleanup.is_async() || timeout.is_some()
}

/// Runs any opened cleanup to its end or its timeout. Needs a tokio runtime context when
/// [`needs_runtime`] says so.
pub(crate) async fn run(owner: usize, call: Call, timeout: Option<Duration>) -> Status {
    match (call, timeout) {
        (Call::Sync(f), None) => run_inline(owner, f),
        (Call::Sync(f), Some(limit)) => run_on_thread(owner, f, limit).await,
        (Call::Async(fut), limit) => {
            let fut = Marked { owner, fut: AssertUnwindSafe(fut).catch_unwind() };
            match limit {
                None => status_of(fut.await),
                Some(limit) => match tokio::time::timeout(limit, fut).await {
                    Ok(result) => status_of(result),
                    Err(_) => Status::TimedOut(limit),
                },
            }
        }
    }
}

/// A sync cleanup with a timeout runs on its own thread so it can be abandoned. A plain
/// `std::thread` rather than `spawn_blocking`: a runtime waits for its blocking pool on shutdown,
/// and an abandoned cleanup must never hold the process up.
async fn run_on_thread(owner: usize, f: Box<dyn SyncCall>, limit: Duration) -> Status {
    let (tx, rx) = tokio::sync::oneshot::channel();
    // The cleanup's span (if any) and the subscriber in effect here go with it to the helper
    // thread, so what it logs lands where the teardown's own lines do.
    let span = tracing::Span::current();
    let dispatch = tracing::dispatcher::get_default(Clone::clone);
    let spawned = std::thread::Builder::new().name("closeout-cleanup".into()).spawn(move || {
        tracing::dispatcher::with_default(&dispatch, || {
            let _entered = span.enter();
            let _ = tx.send(run_inline(owner, f));
        });
    });
    if let Err(e) = spawned {
        return Status::Failed(CleanupError::new(Box::new(e)));
    }
    match tokio::time::timeout(limit, rx).await {
        Ok(Ok(status)) => status,
        // The thread died without sending: only possible if sending itself failed.
        Ok(Err(_)) => Status::Panicked("cleanup thread ended without a result".into()),
        Err(_) => Status::TimedOut(limit),
    }
}

/// Drives a future to completion from sync code, wherever we are.
///
/// - No runtime on this thread: a temporary current-thread runtime with every driver the
///   program's tokio features enable.
/// - Inside a multi-thread runtime: `block_in_place` first hands this worker's core to a new
///   thread (on a blocking thread it changes nothing), then this thread blocks on the future
///   through the runtime's handle. So the runtime's timers and I/O keep being driven even when
///   every worker is inside such a call (1 worker; 2 workers with 2 calls at once): nothing
///   waits on a worker that is itself waiting.
/// - Inside a current-thread runtime: that runtime cannot make progress while this thread
///   blocks, so a helper thread runs the future on a fresh runtime. Cleanups that need I/O of the
///   blocked runtime will only finish through their timeout.
///
/// Fails only when the OS refuses what a new runtime needs (an fd, a thread).
pub(crate) fn block_on<F>(fut: F) -> std::io::Result<F::Output>
where
    F: Future + Send,
    F::Output: Send,
{
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current() {
        Err(_) => fresh_runtime_block_on(fut),
        #[cfg(not(loom))]
        Ok(handle) if handle.runtime_flavor() == RuntimeFlavor::MultiThread => {
            Ok(tokio::task::block_in_place(move || handle.block_on(fut)))
        }
        Ok(handle) => std::thread::scope(|s| {
            let helper = s.spawn(move || match handle.runtime_flavor() {
                RuntimeFlavor::CurrentThread => fresh_runtime_block_on(fut),
                _ => Ok(handle.block_on(fut)),
            });
            // Cleanups are wrapped in catch_unwind by `run`, so the helper cannot panic through
            // them; if it does anyway, that is a closeout bug and is surfaced, not swallowed.
            helper.join().unwrap_or_else(|payload| std::panic::resume_unwind(payload))
        }),
    }
}

fn fresh_runtime_block_on<F: Future>(fut: F) -> std::io::Result<F::Output> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    Ok(rt.block_on(fut))
}

/// Blocks on one async cleanup (no timeout) and reports how it ended; a runtime that cannot be
/// built is reported as the cleanup's failure, so the cleanup is accounted for either way.
pub(crate) fn block_on_status(fut: crate::cleanup::BoxFuture) -> Status {
    let fut = AssertUnwindSafe(fut).catch_unwind();
    match block_on(fut) {
        Ok(result) => status_of(result),
        Err(e) => Status::Failed(CleanupError::new(Box::new(e))),
    }
}
