//! [`Spawn`]: the name, grace period and dependencies of a piece of spawned work.

use std::borrow::Cow;
use std::time::Duration;

/// How long work may take to end by itself after its owner's teardown begins, unless
/// [`Spawn::grace`] says otherwise.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(5);

/// The name of a piece of spawned work and its grace period. A `&'static str` or a `String`
/// converts into one with the default grace.
///
/// ```
/// use closeout::{Scope};
/// use closeout::owner::{Owner, Spawn};
/// use std::time::Duration;
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let scope = Scope::new();
/// scope.spawn("plain", |token| async move { token.cancelled().await })?;
/// scope.spawn(Spawn::new("patient").grace(Duration::from_millis(50)), |token| async move {
///     token.cancelled().await
/// })?;
/// assert!(scope.close_async().await.is_success());
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct Spawn {
    pub(crate) name: Cow<'static, str>,
    pub(crate) grace: Duration,
    pub(crate) depends_on: Vec<String>,
    /// In a registry: registered as `name#n` rather than `name`.
    pub(crate) numbered: bool,
    /// A task's watchdog: cancelled when it runs longer ([`Spawn::limit`]).
    pub(crate) limit: Option<Duration>,
}

impl Spawn {
    /// Work called `name`, with [`DEFAULT_GRACE`]. In a [`Registry`](crate::Registry) it is registered under
    /// exactly this id, so `report.get(name)` finds it; a second piece of work with the same id
    /// is refused with [`Error::DuplicateId`](crate::Error::DuplicateId) (in [`SpawnFailure::Refused`](crate::owner::SpawnFailure::Refused)), as a resource would be. For many pieces of work
    /// under one name, use [`Spawn::numbered`].
    ///
    /// ```
    /// use closeout::{Error, Registry};
    /// use closeout::owner::{Owner, Spawn, SpawnFailure};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let registry = Registry::new();
    /// registry.spawn(Spawn::new("backend"), |t| async move { t.cancelled().await })?;
    /// let again = registry.spawn(Spawn::new("backend"), |t| async move { t.cancelled().await });
    /// let refused = again.unwrap_err();
    /// assert!(matches!(refused.error(), SpawnFailure::Refused(Error::DuplicateId(id)) if id == "backend"));
    /// let report = registry.shutdown().await;
    /// assert!(report.get("backend").unwrap().status().is_ok());
    /// # Ok(()) }
    /// ```
    pub fn new(name: impl Into<Cow<'static, str>>) -> Spawn {
        Spawn {
            name: name.into(),
            grace: DEFAULT_GRACE,
            depends_on: Vec::new(),
            numbered: false,
            limit: None,
        }
    }

    /// Work registered in a [`Registry`](crate::Registry) as `name#n`, `n` counting the registry's spawns from 1:
    /// for many pieces of work under one name. (Timers are always numbered: `timeout#n`,
    /// `interval#n`.) A scope does not name its entries uniquely and ignores this.
    ///
    /// ```
    /// use closeout::{Registry};
    /// use closeout::owner::{Owner, Spawn};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let registry = Registry::new();
    /// for _ in 0..3 {
    ///     registry.spawn(Spawn::numbered("worker"), |t| async move { t.cancelled().await })?;
    /// }
    /// assert!(registry.contains("worker#1") && registry.contains("worker#3"));
    /// assert_eq!(registry.shutdown().await.len(), 3);
    /// # Ok(()) }
    /// ```
    pub fn numbered(name: impl Into<Cow<'static, str>>) -> Spawn {
        Spawn { numbered: true, ..Spawn::new(name) }
    }

    /// How long the work may take to end by itself once its owner's teardown began, before it
    /// is aborted (a task) or detached and reported (a thread or blocking job). Zero stops it at
    /// once.
    pub fn grace(mut self, grace: Duration) -> Spawn {
        self.grace = grace;
        self
    }

    /// A watchdog for a task: when it has run for `limit` while its owner is alive, it is
    /// cancelled (aborted: its `JoinHandle` says cancelled), a warning is logged at once, and
    /// its entry stays so the owner's next teardown reports it as failed with
    /// [`Overran`](crate::owner::Overran). Any `Duration` is taken (zero cancels it at its first
    /// turn; one past what the clock holds never fires). Threads and blocking jobs cannot be
    /// stopped from outside, so `spawn_thread` and `spawn_blocking` ignore it.
    ///
    /// ```
    /// use closeout::{Registry, Status};
    /// use closeout::owner::{Overran, Owner, Spawn};
    /// use std::time::Duration;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let registry = Registry::new();
    /// let job = registry.spawn(Spawn::new("report-job").limit(Duration::from_millis(20)), |_token| async {
    ///     tokio::time::sleep(Duration::from_secs(60)).await // stuck
    /// })?;
    /// assert!(job.await.unwrap_err().is_cancelled());
    /// let report = registry.shutdown().await;
    /// let Status::Failed(err) = report.get("report-job").unwrap().status() else { panic!() };
    /// assert!(err.get_ref().is::<Overran>());
    /// # Ok(()) }
    /// ```
    pub fn limit(mut self, limit: Duration) -> Spawn {
        self.limit = Some(limit);
        self
    }

    /// In a [`Registry`](crate::Registry): resources this work uses, so it is stopped before them (see
    /// [`Resource::depends_on`](crate::Resource::depends_on)). A scope orders by position and
    /// ignores this.
    ///
    /// ```
    /// use closeout::{Registry, Resource};
    /// use closeout::owner::{Owner, Spawn};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let registry = Registry::new();
    /// registry.register(Resource::new("pool", || ()))?;
    /// registry.spawn(Spawn::new("server").depends_on(["pool"]), |t| async move { t.cancelled().await })?;
    /// let report = registry.shutdown().await;
    /// let ids: Vec<_> = report.entries().iter().map(|e| e.id()).collect();
    /// assert_eq!(ids, ["server", "pool"]); // the server stops before the pool it uses
    /// # Ok(()) }
    /// ```
    pub fn depends_on<I, S>(mut self, ids: I) -> Spawn
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.depends_on.extend(ids.into_iter().map(Into::into));
        self
    }
}

impl From<&'static str> for Spawn {
    fn from(name: &'static str) -> Spawn {
        Spawn::new(name)
    }
}

impl From<String> for Spawn {
    fn from(name: String) -> Spawn {
        Spawn::new(name)
    }
}
