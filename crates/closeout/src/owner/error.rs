//! The errors of spawned work: why it was refused ([`SpawnFailure`]), and the refusal that
//! hands the work back unstarted ([`SpawnError`]).

use std::fmt;

/// Why spawned work was refused.
///
/// ```
/// use closeout::owner::{Owner, SpawnFailure};
/// let err = closeout::Scope::new().spawn("t", |_| async {}).unwrap_err(); // no runtime here
/// assert!(matches!(err.error(), SpawnFailure::NoRuntime));
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SpawnFailure {
    /// A tokio task or timer needs a tokio runtime on this thread.
    #[error("no tokio runtime on this thread; spawn from inside one")]
    NoRuntime,
    /// The scope was already released.
    #[error("the scope is already released")]
    Released,
    /// The registry refused the work's entry (shut down, full, or a duplicate id).
    #[error("the registry refused it")]
    Refused(#[source] crate::Error),
    /// An interval's period of zero.
    #[error("an interval's period must not be zero")]
    ZeroPeriod,
    /// The OS refused what the work needs (a thread).
    #[error("{what}")]
    Os {
        /// What was being set up.
        what: &'static str,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

/// Work offered to a [`Scope`](crate::Scope) or [`Registry`](crate::Registry) that could not be
/// tracked: the reason, and the work itself, handed back unstarted.
///
/// ```
/// use closeout::owner::Owner;
/// let scope = closeout::Scope::new();
/// let _ = scope.close_shared();
/// let err = scope.spawn_thread("late", |_stop| 7).unwrap_err();
/// assert!(matches!(err.error(), closeout::owner::SpawnFailure::Released));
/// let work = err.into_inner();
/// assert_eq!(work(closeout::owner::StopFlag::new()), 7); // nothing was lost
/// ```
pub struct SpawnError<F> {
    error: SpawnFailure,
    /// Only ever taken by value, so the error is `Sync` even for `!Sync` work.
    work: sync_wrapper::SyncWrapper<F>,
}

impl<F> SpawnError<F> {
    pub(crate) fn new(error: SpawnFailure, work: F) -> Self {
        SpawnError { error, work: sync_wrapper::SyncWrapper::new(work) }
    }

    /// Why it was refused.
    pub fn error(&self) -> &SpawnFailure {
        &self.error
    }

    /// The work, unstarted.
    pub fn into_inner(self) -> F {
        self.work.into_inner()
    }
}

impl<F> fmt::Debug for SpawnError<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SpawnError").field("error", &self.error).finish_non_exhaustive()
    }
}

impl<F> fmt::Display for SpawnError<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}; the work was handed back unstarted", self.error)
    }
}

impl<F> std::error::Error for SpawnError<F> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}
