//! [`Category`] and [`Priority`]: what kind of thing a resource is, and when it is torn down.
//! The built-in categories are defined once, in the `categories!` table, which makes the enum,
//! its names and its indices.

use std::borrow::Cow;
use std::fmt;

/// The built-in categories, once: each line makes a variant, its name and its index (its
/// position here). Adding a category is one line.
macro_rules! categories {
    ($( $(#[$doc:meta])* $variant:ident => $name:literal, )*) => {
        /// What kind of thing a resource is. Used for filtering, exclusion and per-category
        /// totals.
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
            $( $(#[$doc])* $variant, )*
            /// Anything else, by name.
            Custom(Cow<'static, str>),
        }

        impl Category {
            /// The built-in categories, in their fixed order.
            pub(crate) const BUILTIN: &'static [Category] = &[$(Category::$variant),*];

            /// A built-in category's position in [`BUILTIN`](Category::BUILTIN); `None` for a
            /// custom one.
            #[inline]
            pub(crate) fn builtin_index(&self) -> Option<u16> {
                let mut i = 0u16;
                $(
                    if matches!(self, Category::$variant) {
                        return Some(i);
                    }
                    i += 1;
                )*
                let _ = i;
                None
            }

            /// The category's name, lower case for the built-in ones.
            ///
            /// ```
            /// assert_eq!(closeout::Category::Network.as_str(), "network");
            /// ```
            pub fn as_str(&self) -> &str {
                match self {
                    $( Category::$variant => $name, )*
                    Category::Custom(name) => name,
                }
            }
        }
    };
}

categories! {
    /// Database connections and pools.
    Database => "database",
    /// Files, directories, locks.
    File => "file",
    /// Child processes.
    Process => "process",
    /// Timers and intervals.
    Timer => "timer",
    /// Sockets, servers, connections.
    Network => "network",
    /// Event listeners and subscriptions.
    Event => "event",
    /// Things whose release matters most.
    Critical => "critical",
    /// Tracked async tasks and blocking jobs.
    Task => "task",
    /// Tracked OS threads.
    Thread => "thread",
}

impl Category {
    /// The category of a scope's actions in a report.
    pub(crate) const SCOPE: Category = Category::Custom(Cow::Borrowed("scope"));

    /// A category with a name of your own.
    ///
    /// ```
    /// assert_eq!(closeout::Category::custom("cache").as_str(), "cache");
    /// ```
    pub fn custom(name: impl Into<Cow<'static, str>>) -> Self {
        Category::Custom(name.into())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_indices_names_and_the_table_agree() {
        for (i, c) in Category::BUILTIN.iter().enumerate() {
            assert_eq!(c.builtin_index(), Some(i as u16), "{c}");
            assert_eq!(
                Category::BUILTIN.iter().filter(|d| d.as_str() == c.as_str()).count(),
                1,
                "{c} named once"
            );
        }
        assert_eq!(Category::custom("database").builtin_index(), None, "a custom name is never built in");
        assert_eq!(Category::SCOPE.builtin_index(), None);
    }
}
