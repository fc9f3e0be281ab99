//! The registry's errors, and the refusals that hand back what they refused: nothing is lost.

use std::fmt;
use std::time::Duration;

use crate::resource::Resource;

/// What went wrong with a registry call or a scope's or registry's settings. Spawned work has
/// its own error ([`owner::SpawnFailure`](crate::owner::SpawnFailure)), and so do the process
/// hooks ([`hooks::HookError`](crate::hooks::HookError)) and leak modes.
///
/// ```
/// use closeout::{Error, Registry, Resource};
///
/// let registry = Registry::new();
/// let err = registry.register(Resource::new("", || ())).unwrap_err();
/// assert!(matches!(err.error(), Error::EmptyId));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The id was empty.
    #[error("resource id is empty")]
    EmptyId,
    /// Another resource already has this id.
    #[error("resource `{0}` is already registered")]
    DuplicateId(String),
    /// A dependency is not registered.
    #[error("resource `{id}` depends on `{dependency}`, which is not registered")]
    UnknownDependency {
        /// The resource being registered.
        id: String,
        /// The missing dependency.
        dependency: String,
    },
    /// A dependency is being torn down right now; nothing new may come to depend on it.
    #[error("resource `{id}` depends on `{dependency}`, which is being torn down")]
    DependencyClosing {
        /// The resource being registered.
        id: String,
        /// The dependency under teardown.
        dependency: String,
    },
    /// The edge would close a cycle; the path runs from the new dependent back to itself.
    #[error("dependency would form a cycle: {}", .0.join(" -> "))]
    Cycle(Vec<String>),
    /// A timeout of zero.
    #[error("timeout of `{0}` is zero")]
    ZeroTimeout(String),
    /// A timeout longer than [`MAX_TIMEOUT`](crate::MAX_TIMEOUT).
    #[error("timeout of `{id}` is {timeout:?}, above the maximum of {max:?}")]
    TimeoutTooLong {
        /// The resource (or `"deadline"` for a registry's overall deadline).
        id: String,
        /// What was asked for.
        timeout: Duration,
        /// The maximum.
        max: Duration,
    },
    /// The registry was shut down.
    #[error("registry is shut down")]
    Closed,
    /// `max_resources` would be exceeded.
    #[error("registry is full: {limit} resources")]
    LimitReached {
        /// The configured maximum.
        limit: usize,
    },
    /// No resource has this id.
    #[error("resource `{0}` is not registered")]
    NotFound(String),
    /// Others still depend on it; unregister them first.
    #[error("resource `{id}` is still needed by {}", .dependents.join(", "))]
    HasDependents {
        /// The resource to remove.
        id: String,
        /// Who depends on it.
        dependents: Vec<String>,
    },
    /// The resource is being torn down now.
    #[error("resource `{0}` is being torn down")]
    Busy(String),
    /// An invalid setting, such as `max_concurrency(0)`.
    #[error("invalid setting: {0}")]
    InvalidConfig(&'static str),
}

/// A rejected registration: the error and the resource, handed back.
///
/// # Examples
///
/// ```
/// use closeout::{Error, Registry, Resource};
///
/// let registry = Registry::new();
/// registry.register(Resource::new("db", || ()))?;
/// let err = registry.register(Resource::new("db", || ())).unwrap_err();
/// assert_eq!(err.error(), &Error::DuplicateId("db".into()));
/// // The cleanup was not lost: run it or register it under another name.
/// err.into_resource().run_now()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct RegisterError {
    error: Error,
    resource: Box<Resource>,
}

impl RegisterError {
    pub(crate) fn new(error: Error, resource: Resource) -> Self {
        RegisterError { error, resource: Box::new(resource) }
    }

    /// What went wrong.
    pub fn error(&self) -> &Error {
        &self.error
    }

    /// The resource that was not registered.
    pub fn resource(&self) -> &Resource {
        &self.resource
    }

    /// Takes the resource back.
    pub fn into_resource(self) -> Resource {
        *self.resource
    }

    /// Splits into the error and the resource.
    pub fn into_parts(self) -> (Error, Resource) {
        (self.error, *self.resource)
    }
}

impl fmt::Debug for RegisterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegisterError")
            .field("error", &self.error)
            .field("resource", &self.resource.get_id())
            .finish()
    }
}

impl fmt::Display for RegisterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.error, f)
    }
}

impl std::error::Error for RegisterError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}

/// A rejected [`register_batch`](crate::Registry::register_batch): nothing was registered.
///
/// ```
/// use closeout::{Registry, Resource};
///
/// let registry = Registry::new();
/// let err = registry
///     .register_batch(vec![Resource::new("a", || ()), Resource::new("", || ())])
///     .unwrap_err();
/// assert_eq!(err.index(), 1);
/// assert_eq!(err.into_resources().len(), 2);
/// assert!(registry.is_empty());
/// ```
pub struct BatchError {
    index: usize,
    error: Error,
    resources: Vec<Resource>,
}

impl BatchError {
    pub(crate) fn new(index: usize, error: Error, resources: Vec<Resource>) -> Self {
        BatchError { index, error, resources }
    }

    /// Position of the first bad entry.
    pub fn index(&self) -> usize {
        self.index
    }

    /// What was wrong with it.
    pub fn error(&self) -> &Error {
        &self.error
    }

    /// Every resource of the batch, in order, handed back.
    pub fn into_resources(self) -> Vec<Resource> {
        self.resources
    }
}

impl fmt::Debug for BatchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BatchError")
            .field("index", &self.index)
            .field("error", &self.error)
            .field("resources", &self.resources.len())
            .finish()
    }
}

impl fmt::Display for BatchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "batch entry {}: {}; nothing was registered", self.index, self.error)
    }
}

impl std::error::Error for BatchError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}

/// An action offered to a [`Scope`](crate::Scope) that was already released: handed back, never
/// run and never dropped silently.
///
/// ```
/// let scope = closeout::Scope::new();
/// let _ = scope.close_shared();
/// let rejected = scope.defer(|| println!("late")).unwrap_err();
/// let action = rejected.into_inner();
/// action(); // run it yourself, or keep it
/// ```
pub struct Rejected<F> {
    /// Only ever taken by value, so the error is `Sync` even for a `!Sync` closure.
    action: sync_wrapper::SyncWrapper<F>,
}

impl<F> Rejected<F> {
    /// Hands `action` back as refused by a released scope: for types that put their own
    /// release into a scope and give themselves back when it is refused.
    ///
    /// ```
    /// let back = closeout::Rejected::new(5).into_inner();
    /// assert_eq!(back, 5);
    /// ```
    pub fn new(action: F) -> Self {
        Rejected { action: sync_wrapper::SyncWrapper::new(action) }
    }

    /// The action, unrun.
    pub fn into_inner(self) -> F {
        self.action.into_inner()
    }
}

impl<F> fmt::Debug for Rejected<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Rejected(..)")
    }
}

impl<F> fmt::Display for Rejected<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("scope is already released; the action was handed back unrun")
    }
}

impl<F> std::error::Error for Rejected<F> {}
