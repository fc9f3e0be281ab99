//! Lifecycle events of a [`Registry`](crate::Registry), for metrics and logs beyond `tracing`.
//!
//! An observer is called outside the registry's lock, on the thread doing the work. A panic in
//! it is caught and logged; it never disturbs a registration or a teardown.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::time::Duration;

use crate::report::{Report, Status};
use crate::resource::{Category, Priority};

/// One lifecycle event.
///
/// ```
/// use closeout::{Event, Registry, Resource};
/// use std::sync::{Arc, Mutex};
///
/// let seen = Arc::new(Mutex::new(Vec::new()));
/// let s = seen.clone();
/// let registry = Registry::builder()
///     .observer(move |e: &Event<'_>| s.lock().unwrap().push(e.name()))
///     .build()?;
/// registry.register(Resource::new("a", || ()))?;
/// registry.cleanup_all_blocking();
/// assert_eq!(*seen.lock().unwrap(), ["registered", "teardown_started", "cleaned", "teardown_completed"]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum Event<'a> {
    /// A resource was registered.
    Registered {
        /// Its id.
        id: &'a str,
        /// Its category.
        category: &'a Category,
        /// Its priority.
        priority: Priority,
    },
    /// A resource was removed without running (`unregister` or `clear`).
    Unregistered {
        /// Its id.
        id: &'a str,
    },
    /// A teardown began.
    TeardownStarted {
        /// Resources selected (including cascaded ones).
        resources: usize,
    },
    /// A cleanup succeeded.
    Cleaned {
        /// Its id.
        id: &'a str,
        /// How long it ran.
        duration: Duration,
    },
    /// A cleanup failed, panicked or timed out.
    Failed {
        /// Its id.
        id: &'a str,
        /// How it ended.
        status: &'a Status,
    },
    /// A teardown ended.
    TeardownCompleted {
        /// What it did.
        report: &'a Report,
    },
}

impl Event<'_> {
    /// A stable snake_case name for the event kind.
    pub fn name(&self) -> &'static str {
        match self {
            Event::Registered { .. } => "registered",
            Event::Unregistered { .. } => "unregistered",
            Event::TeardownStarted { .. } => "teardown_started",
            Event::Cleaned { .. } => "cleaned",
            Event::Failed { .. } => "failed",
            Event::TeardownCompleted { .. } => "teardown_completed",
        }
    }
}

/// A shared observer callback.
pub(crate) type Observer = Arc<dyn Fn(&Event<'_>) + Send + Sync + 'static>;

/// Runs `f`, which only reports (a `tracing` event formatting a user's error, say), so that a
/// panic in it (a panicking `Display`, a panicking subscriber) cannot interrupt a teardown.
/// Nothing runs while this thread is already unwinding: a second panic there would abort.
pub(crate) fn quietly(f: impl FnOnce()) {
    if std::thread::panicking() {
        return;
    }
    if let Err(payload) = catch_unwind(AssertUnwindSafe(f)) {
        crate::runner::drop_payload(payload);
    }
}

/// Calls the observer, if any; a panic in it is logged and swallowed. Not called while this
/// thread unwinds (see [`quietly`]).
pub(crate) fn notify(observer: Option<&Observer>, event: Event<'_>) {
    if let Some(obs) = observer.filter(|_| !std::thread::panicking()) {
        if let Err(payload) = catch_unwind(AssertUnwindSafe(|| obs(&event))) {
            crate::runner::drop_payload(payload);
            quietly(|| tracing::error!(event = event.name(), "closeout: observer panicked; event dropped"));
        }
    }
}
