//! [`Category`] and [`Priority`]: what kind of thing a resource is, and when it is torn down.
//! The built-in categories are defined once, in the `categories!` table below, which makes the
//! enum, its names and its indices.

use std::borrow::Cow;
use std::fmt;

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
