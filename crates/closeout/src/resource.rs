//! What a [`Registry`](crate::Registry) holds: a named cleanup with its category, priority,
//! timeout and dependencies.

use std::borrow::Cow;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

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

    pub(crate) fn is_async(&self) -> bool {
        self.0.is_async()
    }

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

/// What kind of thing a resource is. Used for filtering, exclusion and per-category totals.
///
/// # Examples
///
/// ```
/// use closeout::Category;
///
/// assert_eq!(Category::Database.to_string(), "database");
/// assert_eq!(Category::custom("cache").to_string(), "cache");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[cfg_attr(feature = "serde", serde(into = "String"))]
#[non_exhaustive]
pub enum Category {
    /// Database connections and pools.
    Database,
    /// Files, directories, locks.
    File,
    /// Child processes.
    Process,
    /// Timers and intervals.
    Timer,
    /// Sockets, servers, connections.
    Network,
    /// Event listeners and subscriptions.
    Event,
    /// Things whose release matters most.
    Critical,
    /// Tracked async tasks and blocking jobs.
    Task,
    /// Tracked OS threads.
    Thread,
    /// Anything else, by name.
    Custom(Cow<'static, str>),
}

impl Category {
    /// The built-in categories, in their fixed order.
    pub(crate) const BUILTIN: [Category; 9] = [
        Category::Database,
        Category::File,
        Category::Process,
        Category::Timer,
        Category::Network,
        Category::Event,
        Category::Critical,
        Category::Task,
        Category::Thread,
    ];

    /// A category with a name of your own.
    ///
    /// ```
    /// assert_eq!(closeout::Category::custom("cache").as_str(), "cache");
    /// ```
    pub fn custom(name: impl Into<Cow<'static, str>>) -> Self {
        Category::Custom(name.into())
    }

    /// The category's name, lower case for the built-in ones.
    ///
    /// ```
    /// assert_eq!(closeout::Category::Network.as_str(), "network");
    /// ```
    pub fn as_str(&self) -> &str {
        match self {
            Category::Database => "database",
            Category::File => "file",
            Category::Process => "process",
            Category::Timer => "timer",
            Category::Network => "network",
            Category::Event => "event",
            Category::Critical => "critical",
            Category::Task => "task",
            Category::Thread => "thread",
            Category::Custom(name) => name,
        }
    }
}

impl Default for Category {
    /// Resources registered without a category are `Custom("other")`.
    fn default() -> Self {
        Category::Custom(Cow::Borrowed("other"))
    }
}

impl fmt::Display for Category {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<Category> for String {
    fn from(c: Category) -> String {
        c.as_str().to_owned()
    }
}

/// How early a resource is torn down: lower goes first.
///
/// Priority makes phases: all `Critical` resources (and everything that depends on them) are torn
/// down before any `High` one starts, and so on.
///
/// ```
/// use closeout::Priority;
/// assert!(Priority::Critical < Priority::Low);
/// assert_eq!(Priority::default(), Priority::Medium);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[repr(u8)]
pub enum Priority {
    /// Torn down first (0).
    Critical = 0,
    /// Torn down second (1).
    High = 1,
    /// The default (2).
    #[default]
    Medium = 2,
    /// Torn down last (3).
    Low = 3,
}

impl Priority {
    pub(crate) const ALL: [Priority; 4] =
        [Priority::Critical, Priority::High, Priority::Medium, Priority::Low];

    pub(crate) fn from_index(i: u8) -> Priority {
        Priority::ALL[usize::from(i.min(3))]
    }
}

impl fmt::Display for Priority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Priority::Critical => "critical",
            Priority::High => "high",
            Priority::Medium => "medium",
            Priority::Low => "low",
        })
    }
}

/// The largest per-resource timeout or overall deadline accepted: one day. Anything longer is
/// almost certainly a unit mistake, and would overflow `Instant` arithmetic if unbounded.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(24 * 60 * 60);

/// A resource to register: an id, a cleanup, and how to order and bound it.
///
/// Builder methods never fail; [`Registry::register`](crate::Registry::register) validates and,
/// on error, hands the resource back.
///
/// # Examples
///
/// ```
/// use closeout::{Category, Priority, Registry, Resource};
/// use std::time::Duration;
///
/// let registry = Registry::new();
/// registry.register(Resource::new("log-file", || ()).category(Category::File))?;
/// registry.register(
///     Resource::new_async("server", async { /* stop accepting */ })
///         .category(Category::Network)
///         .priority(Priority::High)
///         .timeout(Duration::from_secs(5))
///         .tag("public")
///         .description("HTTP listener on :8080")
///         .metadata("port", "8080")
///         // The server uses the log file: it is torn down first.
///         .depends_on(["log-file"]),
/// )?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Resource {
    pub(crate) id: String,
    pub(crate) cleanup: Cleanup,
    pub(crate) category: Category,
    pub(crate) priority: Priority,
    pub(crate) timeout: Option<Duration>,
    pub(crate) extra: Option<Box<Extra>>,
}

/// The rarely used parts of a resource, kept out of line so a plain resource stays small.
#[derive(Default, Debug, Clone)]
pub(crate) struct Extra {
    pub(crate) tags: Vec<String>,
    pub(crate) description: Option<String>,
    pub(crate) metadata: Vec<(String, String)>,
    pub(crate) depends_on: Vec<String>,
    /// Where it was registered, captured in leak-backtrace mode.
    pub(crate) backtrace: Option<std::sync::Arc<std::backtrace::Backtrace>>,
}

impl Resource {
    /// A resource whose cleanup is a closure, run once at teardown.
    ///
    /// The closure returns `()` or `Result<(), E>`; a returned error or a panic is reported.
    ///
    /// ```
    /// let r = closeout::Resource::new("cache", || println!("flushed"));
    /// assert_eq!(r.id(), "cache");
    /// ```
    pub fn new<F, R>(id: impl Into<String>, cleanup: F) -> Self
    where
        F: FnOnce() -> R + Send + 'static,
        R: IntoOutcome,
    {
        Self::with_cleanup(id.into(), Cleanup::from_fn(cleanup))
    }

    /// A resource whose cleanup is a future, awaited at teardown.
    ///
    /// The future does nothing until the teardown polls it. It is dropped, unfinished, when it
    /// passes its timeout.
    ///
    /// ```
    /// let r = closeout::Resource::new_async("conn", async { Ok::<(), std::io::Error>(()) });
    /// assert!(r.is_async());
    /// ```
    pub fn new_async<Fut>(id: impl Into<String>, cleanup: Fut) -> Self
    where
        Fut: Future + Send + 'static,
        Fut::Output: IntoOutcome,
    {
        Self::with_cleanup(id.into(), Cleanup::from_future(cleanup))
    }

    pub(crate) fn with_cleanup(id: String, cleanup: Cleanup) -> Self {
        Resource {
            id,
            cleanup,
            category: Category::default(),
            priority: Priority::default(),
            timeout: None,
            extra: None,
        }
    }

    pub(crate) fn extra_mut(&mut self) -> &mut Extra {
        self.extra.get_or_insert_with(Box::default)
    }

    /// Sets the category (default `Custom("other")`).
    ///
    /// ```
    /// # use closeout::{Category, Resource};
    /// let r = Resource::new("db", || ()).category(Category::Database);
    /// assert_eq!(r.get_category(), &Category::Database);
    /// ```
    #[must_use]
    pub fn category(mut self, category: Category) -> Self {
        self.category = category;
        self
    }

    /// Sets the priority (default [`Priority::Medium`]).
    ///
    /// ```
    /// # use closeout::{Priority, Resource};
    /// let r = Resource::new("db", || ()).priority(Priority::High);
    /// assert_eq!(r.get_priority(), Priority::High);
    /// ```
    #[must_use]
    pub fn priority(mut self, priority: Priority) -> Self {
        self.priority = priority;
        self
    }

    /// Bounds the cleanup: past `timeout` it is abandoned and reported as timed out.
    ///
    /// An async cleanup is dropped at the timeout. A sync cleanup with a timeout runs on a helper
    /// thread that is detached at the timeout (it cannot be stopped, only left behind); a sync
    /// cleanup without one runs inline and cannot be interrupted.
    ///
    /// Zero and anything above [`MAX_TIMEOUT`] are rejected at registration.
    ///
    /// ```
    /// # use closeout::Resource;
    /// # use std::time::Duration;
    /// let r = Resource::new("db", || ()).timeout(Duration::from_millis(250));
    /// assert_eq!(r.get_timeout(), Some(Duration::from_millis(250)));
    /// ```
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Adds a free-form tag; [`Selection::Tag`](crate::Selection::Tag) tears down by tag.
    ///
    /// ```
    /// # use closeout::Resource;
    /// let r = Resource::new("db", || ()).tag("primary").tag("pool");
    /// assert_eq!(r.tags(), ["primary", "pool"]);
    /// ```
    #[must_use]
    pub fn tag(mut self, tag: impl Into<String>) -> Self {
        self.extra_mut().tags.push(tag.into());
        self
    }

    /// Sets a human description, shown in plans and stale listings.
    ///
    /// ```
    /// # use closeout::Resource;
    /// let r = Resource::new("db", || ()).description("primary pool");
    /// assert_eq!(r.get_description(), Some("primary pool"));
    /// ```
    #[must_use]
    pub fn description(mut self, description: impl Into<String>) -> Self {
        self.extra_mut().description = Some(description.into());
        self
    }

    /// Adds a key–value pair of metadata.
    ///
    /// ```
    /// # use closeout::Resource;
    /// let r = Resource::new("db", || ()).metadata("host", "127.0.0.1");
    /// assert_eq!(r.get_metadata("host"), Some("127.0.0.1"));
    /// ```
    #[must_use]
    pub fn metadata(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.extra_mut().metadata.push((key.into(), value.into()));
        self
    }

    /// Declares that this resource uses each of `ids`: it is torn down **before** them.
    ///
    /// Each id must already be registered when this resource is registered.
    ///
    /// ```
    /// # use closeout::Resource;
    /// let r = Resource::new("conn-1", || ()).depends_on(["server"]);
    /// assert_eq!(r.dependencies(), ["server"]);
    /// ```
    #[must_use]
    pub fn depends_on<I, S>(mut self, ids: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.extra_mut().depends_on.extend(ids.into_iter().map(Into::into));
        self
    }

    /// The resource's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Whether the cleanup is a future.
    pub fn is_async(&self) -> bool {
        self.cleanup.is_async()
    }

    /// The category.
    pub fn get_category(&self) -> &Category {
        &self.category
    }

    /// The priority.
    pub fn get_priority(&self) -> Priority {
        self.priority
    }

    /// The timeout, if one was set.
    pub fn get_timeout(&self) -> Option<Duration> {
        self.timeout
    }

    /// The tags, in the order added.
    pub fn tags(&self) -> &[String] {
        self.extra.as_ref().map_or(&[], |e| &e.tags)
    }

    /// The description, if any.
    pub fn get_description(&self) -> Option<&str> {
        self.extra.as_ref().and_then(|e| e.description.as_deref())
    }

    /// The first metadata value under `key`.
    pub fn get_metadata(&self, key: &str) -> Option<&str> {
        let extra = self.extra.as_ref()?;
        extra.metadata.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    /// The ids this resource depends on.
    pub fn dependencies(&self) -> &[String] {
        self.extra.as_ref().map_or(&[], |e| &e.depends_on)
    }

    /// Runs the cleanup now, outside any registry, and returns its result.
    ///
    /// Useful when a rejected registration hands a resource back and it must be released anyway.
    /// An async cleanup is driven to completion on the current thread (see
    /// [`Scope`](crate::Scope) for how closeout blocks on futures).
    ///
    /// ```
    /// let r = closeout::Resource::new("x", || Err::<(), _>(std::io::Error::other("boom")));
    /// assert!(r.run_now().is_err());
    /// ```
    ///
    /// # Errors
    ///
    /// The cleanup's own error, or the failure to build a runtime for an async cleanup.
    pub fn run_now(self) -> Result<(), crate::CleanupError> {
        let outcome = match self.cleanup.into_call() {
            Call::Sync(f) => f.call(),
            Call::Async(fut) => crate::runner::block_on(fut).unwrap_or_else(|e| Err(Box::new(e))),
        };
        outcome.map_err(crate::CleanupError::new)
    }
}

impl fmt::Debug for Resource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Resource")
            .field("id", &self.id)
            .field("cleanup", &self.cleanup)
            .field("category", &self.category)
            .field("priority", &self.priority)
            .field("timeout", &self.timeout)
            .field("tags", &self.tags())
            .field("depends_on", &self.dependencies())
            .finish()
    }
}

/// Rejects zero and absurd timeouts.
pub(crate) fn check_timeout(id: &str, t: Duration) -> Result<(), crate::Error> {
    if t.is_zero() {
        return Err(crate::Error::ZeroTimeout(id.to_owned()));
    }
    if t > MAX_TIMEOUT {
        return Err(crate::Error::TimeoutTooLong { id: id.to_owned(), timeout: t, max: MAX_TIMEOUT });
    }
    Ok(())
}
