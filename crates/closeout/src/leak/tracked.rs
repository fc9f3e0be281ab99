//! [`Tracked<T>`]: a value that is tracked for as long as it lives.

use std::borrow::Cow;
use std::fmt;
use std::ops::{Deref, DerefMut};

use crate::leak::tracker::{LeakToken, Tracker};

/// Owns a value and tracks it (kind: the type's name) from creation until drop. Derefs to the
/// value.
///
/// ```
/// use closeout::leak::{Mode, Tracked, Tracker};
/// let tracker = Tracker::new(Mode::Full);
/// let file = Tracked::in_tracker(&tracker, String::from("log"), Some("log file".into()));
/// assert_eq!(file.len(), 3); // derefs to the value
/// assert_eq!(tracker.live()[0].name(), "log file");
/// let value = file.into_inner(); // untracked again
/// assert!(tracker.is_empty());
/// # let _ = value;
/// ```
pub struct Tracked<T> {
    value: T,
    _token: LeakToken,
}

impl<T> Tracked<T> {
    /// Tracks `value` in the [current](Tracker::current) tracker (the global one unless this thread entered another).
    #[inline]
    pub fn new(value: T) -> Tracked<T> {
        Tracked { value, _token: Tracker::current().token(std::any::type_name::<T>()) }
    }

    /// Tracks `value` in the [current](Tracker::current) tracker under `name`.
    pub fn named(value: T, name: impl Into<Cow<'static, str>>) -> Tracked<T> {
        Tracked { value, _token: Tracker::current().token_named(std::any::type_name::<T>(), name) }
    }

    /// Tracks `value` in `tracker`, optionally named.
    pub fn in_tracker(tracker: &Tracker, value: T, name: Option<Cow<'static, str>>) -> Tracked<T> {
        let kind = std::any::type_name::<T>();
        let token = match name {
            Some(name) => tracker.token_named(kind, name),
            None => tracker.token(kind),
        };
        Tracked { value, _token: token }
    }

    /// Stops tracking and returns the value.
    pub fn into_inner(self) -> T {
        self.value
    }
}

impl<T> Deref for Tracked<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.value
    }
}

impl<T> DerefMut for Tracked<T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.value
    }
}

impl<T: fmt::Debug> fmt::Debug for Tracked<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Tracked").field(&self.value).finish()
    }
}
