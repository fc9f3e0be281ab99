//! What a teardown covers ([`Selection`]) and how it runs ([`TeardownOptions`]).

use std::time::Duration;

use crate::category::Category;

/// Which resources a teardown starts from. Whatever depends on a selected resource is torn down
/// too, first (a foreground cascade), and marked as cascaded in the report.
///
/// ```
/// use closeout::{Category, Selection};
/// let by_id = Selection::id("db");
/// let by_ids = Selection::ids(["a", "b"]);
/// let by_cat = Selection::Category(Category::Network);
/// let by_tag = Selection::tag("tenant-7");
/// // Combinations: network or database resources of tenant 7, except the audit log.
/// let combined = Selection::all_of([
///     Selection::categories([Category::Network, Category::Database]),
///     Selection::tag("tenant-7"),
/// ])
/// .except(Selection::id("audit-log"));
/// # let _ = (by_id, by_ids, by_cat, by_tag, combined, Selection::All);
/// ```
///
/// Only [`Selection::All`] is a full teardown (it also takes in what is registered while it
/// runs, and cancels the registry's token); any other selection, combinations included, tears
/// down what matches when it starts, plus what depends on that.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Selection {
    /// Everything registered, including what is registered while the teardown runs.
    #[default]
    All,
    /// One resource by id (ignored if not registered).
    Id(String),
    /// Several resources by id (those not registered are ignored).
    Ids(Vec<String>),
    /// Every resource of a category.
    Category(Category),
    /// Every resource of any of these categories.
    Categories(Vec<Category>),
    /// Every resource with a tag.
    Tag(String),
    /// Every resource with any of these tags.
    Tags(Vec<String>),
    /// What any of these selects (a union).
    AnyOf(Vec<Selection>),
    /// What all of these select (an intersection; empty: everything).
    AllOf(Vec<Selection>),
    /// What the first selects and the second does not.
    Except(Box<Selection>, Box<Selection>),
}

impl Selection {
    /// One id.
    pub fn id(id: impl Into<String>) -> Self {
        Selection::Id(id.into())
    }

    /// Several ids.
    pub fn ids<I, S>(ids: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Selection::Ids(ids.into_iter().map(Into::into).collect())
    }

    /// One tag.
    pub fn tag(tag: impl Into<String>) -> Self {
        Selection::Tag(tag.into())
    }

    /// Any of several categories.
    pub fn categories(categories: impl IntoIterator<Item = Category>) -> Self {
        Selection::Categories(categories.into_iter().collect())
    }

    /// Any of several tags.
    pub fn tags<I, S>(tags: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Selection::Tags(tags.into_iter().map(Into::into).collect())
    }

    /// The union of several selections.
    pub fn any_of(selections: impl IntoIterator<Item = Selection>) -> Self {
        Selection::AnyOf(selections.into_iter().collect())
    }

    /// The intersection of several selections.
    pub fn all_of(selections: impl IntoIterator<Item = Selection>) -> Self {
        Selection::AllOf(selections.into_iter().collect())
    }

    /// This selection without what `other` selects.
    #[must_use]
    pub fn except(self, other: Selection) -> Self {
        Selection::Except(Box::new(self), Box::new(other))
    }
}

/// How a teardown runs. The defaults continue past failures, respect dependency order, exclude
/// nothing, and take concurrency and deadline from the registry.
///
/// ```
/// use closeout::{Category, TeardownOptions};
/// use std::time::Duration;
///
/// let opts = TeardownOptions::new()
///     .stop_on_error(true)
///     .exclude_id("audit-log")
///     .exclude_category(Category::Database)
///     .max_concurrency(4)
///     .deadline(Duration::from_secs(10));
/// # let _ = opts;
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TeardownOptions {
    pub(crate) stop_on_error: bool,
    pub(crate) force: bool,
    pub(crate) exclude_ids: Vec<String>,
    pub(crate) exclude_categories: Vec<Category>,
    pub(crate) max_concurrency: Option<usize>,
    pub(crate) deadline: Option<Duration>,
    pub(crate) cleanup_timeout: Option<Duration>,
}

impl TeardownOptions {
    /// The defaults.
    pub fn new() -> Self {
        Self::default()
    }

    /// After the first cleanup that fails, panics or times out, start nothing new: what is
    /// running finishes, the rest is skipped and stays registered.
    #[must_use]
    pub fn stop_on_error(mut self, yes: bool) -> Self {
        self.stop_on_error = yes;
        self
    }

    /// Ignore dependency order: everything selected runs as if independent, by priority phase.
    /// Dependents are still cascaded in, and excluded dependents no longer hold their
    /// dependencies back.
    #[must_use]
    pub fn force(mut self, yes: bool) -> Self {
        self.force = yes;
        self
    }

    /// Leave this resource registered. Whatever it depends on must outlive it, so those are
    /// skipped too unless `force` is set.
    #[must_use]
    pub fn exclude_id(mut self, id: impl Into<String>) -> Self {
        self.exclude_ids.push(id.into());
        self
    }

    /// Leave every resource of this category registered (and, unless `force`, what they
    /// depend on).
    #[must_use]
    pub fn exclude_category(mut self, category: Category) -> Self {
        self.exclude_categories.push(category);
        self
    }

    /// At most `n` cleanups at once (overrides the registry's setting). `1` makes the order
    /// fully deterministic. Zero is treated as one.
    #[must_use]
    pub fn max_concurrency(mut self, n: usize) -> Self {
        self.max_concurrency = Some(n.max(1));
        self
    }

    /// Overall deadline for this teardown (overrides the registry's). What has not started by
    /// then is skipped and stays registered; what is still running is abandoned and reported
    /// as timed out.
    #[must_use]
    pub fn deadline(mut self, deadline: Duration) -> Self {
        self.deadline = Some(deadline);
        self
    }

    /// The timeout of every cleanup of this teardown, in place of each resource's own (and of
    /// the registry's defaults): for a shutdown that must be quick whatever the resources
    /// asked for. Any value works: zero abandons every cleanup at once (each reported as timed
    /// out), and a value past [`MAX_TIMEOUT`](crate::MAX_TIMEOUT) is cut to it. As with every
    /// timeout, a sync cleanup then runs on a helper thread that can be abandoned.
    ///
    /// ```
    /// use closeout::{Registry, Resource, Status, TeardownOptions, Selection};
    /// use std::time::Duration;
    /// let registry = Registry::new();
    /// registry.register(
    ///     Resource::new_async("slow", async { tokio::time::sleep(Duration::from_secs(60)).await })
    ///         .timeout(Duration::from_secs(120)),
    /// )?;
    /// let quick = TeardownOptions::new().cleanup_timeout(Duration::from_millis(20));
    /// let report = registry.teardown_blocking(Selection::All, quick);
    /// assert!(matches!(report.get("slow").unwrap().status(), Status::TimedOut(_)));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn cleanup_timeout(mut self, timeout: Duration) -> Self {
        self.cleanup_timeout = Some(timeout.min(crate::MAX_TIMEOUT));
        self
    }

    /// Whether this run also satisfies a call asking for `other` on `other_sel`: only an
    /// unfiltered full teardown covers other requests.
    pub(crate) fn is_unfiltered(&self) -> bool {
        self.exclude_ids.is_empty()
            && self.exclude_categories.is_empty()
            && !self.stop_on_error
            && self.cleanup_timeout.is_none()
    }
}
