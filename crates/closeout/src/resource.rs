//! What a [`Registry`](crate::Registry) holds: a named cleanup with its category, priority,
//! timeout and dependencies.

use std::fmt;
use std::time::Duration;

use crate::category::{Category, Priority};
use crate::cleanup::{Call, Cleanup, IntoOutcome};

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
    /// `None`: not set, so the registry's default for its category applies (else `Medium`).
    pub(crate) priority: Option<Priority>,
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
    /// What its cleanup says it did, read into its report entry.
    pub(crate) detail: Option<crate::Detail>,
}

impl Resource {
    /// A resource whose cleanup is a closure, run once at teardown.
    ///
    /// The closure returns `()` or `Result<(), E>`; a returned error or a panic is reported.
    ///
    /// ```
    /// let r = closeout::Resource::new("cache", || println!("flushed"));
    /// assert_eq!(r.get_id(), "cache");
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
        Resource { id, cleanup, category: Category::default(), priority: None, timeout: None, extra: None }
    }

    pub(crate) fn extra_mut(&mut self) -> &mut Extra {
        self.extra.get_or_insert_with(Box::default)
    }

    /// Attaches a [`Detail`](crate::Detail): the line its cleanup sets there is shown in its
    /// report entry.
    ///
    /// ```
    /// let detail = closeout::Detail::new();
    /// let r = closeout::Resource::new("tmp", || ()).detail(&detail);
    /// # let _ = r;
    /// ```
    pub fn detail(mut self, detail: &crate::Detail) -> Self {
        self.extra_mut().detail = Some(detail.clone());
        self
    }

    /// Sets the category (default `Custom("other")`).
    ///
    /// ```
    /// # use closeout::{Category, Resource};
    /// let r = Resource::new("db", || ()).category(Category::Database);
    /// assert_eq!(r.get_category(), &Category::Database);
    /// ```
    #[must_use]
    #[inline]
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
    #[inline]
    pub fn priority(mut self, priority: Priority) -> Self {
        self.priority = Some(priority);
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
    #[inline]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Adds a free-form tag; [`Selection::Tag`](crate::Selection::Tag) tears down by tag.
    ///
    /// ```
    /// # use closeout::Resource;
    /// let r = Resource::new("db", || ()).tag("primary").tag("pool");
    /// assert_eq!(r.get_tags(), ["primary", "pool"]);
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
    /// assert_eq!(r.get_dependencies(), ["server"]);
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

    /// The resource's id. Accessors are `get_*`, as `std::process::Command`'s are: the plain
    /// names are the builder methods.
    ///
    /// ```
    /// use closeout::{Category, Resource};
    /// let r = Resource::new("db", || ()).category(Category::Database).tag("primary");
    /// assert_eq!((r.get_id(), r.get_category(), r.get_tags()), ("db", &Category::Database, &["primary".to_owned()][..]));
    /// ```
    pub fn get_id(&self) -> &str {
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

    /// The priority (`Medium` unless set; a registry may give an unset one its category's
    /// default, [`RegistryBuilder::category_priority`](crate::RegistryBuilder::category_priority)).
    pub fn get_priority(&self) -> Priority {
        self.priority.unwrap_or_default()
    }

    /// The timeout, if one was set.
    pub fn get_timeout(&self) -> Option<Duration> {
        self.timeout
    }

    /// The tags, in the order added.
    pub fn get_tags(&self) -> &[String] {
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
    pub fn get_dependencies(&self) -> &[String] {
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
            .field("tags", &self.get_tags())
            .field("depends_on", &self.get_dependencies())
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
