//! [`Detail`]: a short line a cleanup leaves for its report entry ("drained 12 connections, 1
//! forced"). It knows nothing of registries or reports; [`Resource::detail`](crate::Resource::detail)
//! attaches one, and the teardown reads it into the entry.

use std::fmt;
use std::sync::{Arc, Mutex};

/// A short line a cleanup writes about what it did, shown in its report entry — in `Display`
/// and in JSON (`"detail"`). Attach it with [`Resource::detail`](crate::Resource::detail), move
/// a clone into the cleanup, and [`set`](Detail::set) it there; a cleanup that fails or times
/// out keeps whatever it set before. The managed resources of `closeout-net`,
/// `closeout-process` and `closeout-fs` fill theirs in.
///
/// ```
/// use closeout::{Detail, Registry, Resource};
/// let registry = Registry::new();
/// let detail = Detail::new();
/// let note = detail.clone();
/// registry.register(Resource::new("cache", move || note.set("flushed 3 pages")).detail(&detail))?;
/// let report = registry.cleanup_all_blocking();
/// assert_eq!(report.get("cache").unwrap().detail(), Some("flushed 3 pages"));
/// assert!(report.to_string().contains("flushed 3 pages"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Default)]
pub struct Detail(Arc<Mutex<Option<String>>>);

impl Detail {
    /// An empty detail.
    pub fn new() -> Detail {
        Detail::default()
    }

    /// Sets the line (replacing an earlier one).
    pub fn set(&self, line: impl Into<String>) {
        *crate::sync::lock_std(&self.0) = Some(line.into());
    }

    /// The line, if one was set.
    ///
    /// ```
    /// let d = closeout::Detail::new();
    /// assert_eq!(d.get(), None);
    /// d.set("removed 41 files");
    /// assert_eq!(d.get().as_deref(), Some("removed 41 files"));
    /// ```
    pub fn get(&self) -> Option<String> {
        crate::sync::lock_std(&self.0).clone()
    }

    /// Takes the line out, for the report entry.
    pub(crate) fn take(&self) -> Option<String> {
        crate::sync::lock_std(&self.0).take()
    }
}

impl fmt::Debug for Detail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Detail").field(&self.get()).finish()
    }
}
