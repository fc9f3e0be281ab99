//! Cleanup actions and what they return: a sync closure or a future, boxed once
//! ([`Cleanup`]), and [`IntoOutcome`], which turns `()` or `Result<(), E>` into the outcome a
//! report records. Shared by [`Scope`](crate::Scope), [`Registry`](crate::Registry) and the
//! runner; it knows nothing of them.

use std::fmt;
use std::future::Future;
use std::pin::Pin;

/// The error type a cleanup may fail with: any error, boxed.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What one cleanup returned.
pub(crate) type Outcome = Result<(), BoxError>;

/// A boxed cleanup future.
pub(crate) type BoxFuture = Pin<Box<dyn Future<Output = Outcome> + Send + 'static>>;

/// A cleanup action, sync or async, as one thin box: 16 bytes in a slot, and no second
/// allocation when it runs (the box itself becomes the future or the call).
pub(crate) struct Cleanup(Box<dyn CleanupFn>);

// SAFETY: a `Cleanup` gives no shared access to the closure or future it holds. Its only
// `&self` method, `is_async`, returns a constant of the wrapper type and reads nothing of the
// wrapped value; everything else takes the cleanup by value (`into_call`). So sharing a
// `&Cleanup` between threads can never touch a `!Sync` closure concurrently. This is what makes
// `Resource`, and so `RegisterError` and `BatchError`, `Sync`: errors that go into
// `anyhow::Error` and `Box<dyn Error + Send + Sync>` (the `sync_wrapper` argument).
#[allow(unsafe_code)]
unsafe impl Sync for Cleanup {}

/// A cleanup opened for running.
pub(crate) enum Call {
    /// Runs inline, or on a helper thread when it has a timeout.
    Sync(Box<dyn SyncCall>),
    /// Awaited by the teardown; dropped when it times out.
    Async(BoxFuture),
}

trait CleanupFn: Send {
    fn is_async(&self) -> bool;
    fn into_call(self: Box<Self>) -> Call;
}

/// A sync cleanup, callable once.
pub(crate) trait SyncCall: Send {
    fn call(self: Box<Self>) -> Outcome;
}

struct SyncCleanup<F>(F);

impl<F, R> SyncCall for SyncCleanup<F>
where
    F: FnOnce() -> R + Send + 'static,
    R: IntoOutcome,
{
    fn call(self: Box<Self>) -> Outcome {
        (self.0)().into_outcome()
    }
}

impl<F, R> CleanupFn for SyncCleanup<F>
where
    F: FnOnce() -> R + Send + 'static,
    R: IntoOutcome,
{
    fn is_async(&self) -> bool {
        false
    }
    fn into_call(self: Box<Self>) -> Call {
        Call::Sync(self)
    }
}

pin_project_lite::pin_project! {
    struct AsyncCleanup<Fut> {
        #[pin]
        fut: Fut,
    }
}

impl<Fut> Future for AsyncCleanup<Fut>
where
    Fut: Future,
    Fut::Output: IntoOutcome,
{
    type Output = Outcome;
    fn poll(self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<Outcome> {
        self.project().fut.poll(cx).map(IntoOutcome::into_outcome)
    }
}

impl<Fut> CleanupFn for AsyncCleanup<Fut>
where
    Fut: Future + Send + 'static,
    Fut::Output: IntoOutcome,
{
    fn is_async(&self) -> bool {
        true
    }
    fn into_call(self: Box<Self>) -> Call {
        Call::Async(Box::into_pin(self))
    }
}

impl Cleanup {
    pub(crate) fn from_fn<F, R>(f: F) -> Self
    where
        F: FnOnce() -> R + Send + 'static,
        R: IntoOutcome,
    {
        Cleanup(Box::new(SyncCleanup(f)))
    }

    pub(crate) fn from_future<Fut>(fut: Fut) -> Self
    where
        Fut: Future + Send + 'static,
        Fut::Output: IntoOutcome,
    {
        Cleanup(Box::new(AsyncCleanup { fut }))
    }

    #[inline]
    pub(crate) fn is_async(&self) -> bool {
        self.0.is_async()
    }

    #[inline]
    pub(crate) fn into_call(self) -> Call {
        self.0.into_call()
    }
}

impl fmt::Debug for Cleanup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.is_async() { "Cleanup::Async" } else { "Cleanup::Sync" })
    }
}

/// What a cleanup may return: `()` (cannot fail) or `Result<(), E>` for any error `E`.
///
/// # Examples
///
/// ```
/// use closeout::Resource;
///
/// // Infallible cleanup.
/// let a = Resource::new("a", || ());
/// // Fallible cleanup: the error lands in the report.
/// let b = Resource::new("b", || std::fs::remove_file("/nonexistent/closeout-doc"));
/// # let _ = (a, b);
/// ```
pub trait IntoOutcome {
    /// Converts into the cleanup's result.
    fn into_outcome(self) -> Result<(), BoxError>;
}

impl IntoOutcome for () {
    fn into_outcome(self) -> Result<(), BoxError> {
        Ok(())
    }
}

impl<E: Into<BoxError>> IntoOutcome for Result<(), E> {
    fn into_outcome(self) -> Result<(), BoxError> {
        self.map_err(Into::into)
    }
}
