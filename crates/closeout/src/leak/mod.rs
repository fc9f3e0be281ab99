//! Leak detection: what is still alive that should not be, and where it came from.
//!
//! Why: Rust programs leak what `Drop` never sees — a value kept alive by an `Arc` cycle or a
//! forgotten handle, a registry dropped with resources still in it, a thread, task or child
//! process that outlives the code that started it. This module makes those visible: cheap
//! enough to leave on (sampled) in production, detailed in development, fatal in tests.
//!
//! - [`Tracked<T>`] and [`LeakToken`] record an object from creation to drop;
//!   [`track_arc`] records an `Arc`'s value until its last strong reference goes.
//! - A [`Tracker`] holds the records, sharded so threads do not contend; the global one is
//!   used by the free functions here, [`Tracker::new`] makes separate ones, and
//!   [`Tracker::enter`] routes a thread's objects into one of those (a test of its own).
//! - [`Mode`] sets the cost: off, sampled, full, or full with backtraces; `CLOSEOUT_LEAK`
//!   sets it from the environment.
//! - [`LeakReport`] groups what is live by kind and creation site, oldest first.
//! - [`LeakCheck`] fails a test that leaked tracked objects, threads, file descriptors, child
//!   processes or tokio tasks.
//! - A [`Registry`](crate::Registry) dropped with resources still registered records each one
//!   here (kind `closeout::Registry resource`; with its registration backtrace in backtrace
//!   mode), as does a [`Scope`](crate::Scope) dropped with async actions it had to block on;
//!   [`Registry::watch_stale`](crate::Registry::watch_stale) reports a registry's resources registered for longer than a threshold.
//!
//! ```
//! use closeout::leak::{Mode, Tracked, Tracker};
//! let tracker = Tracker::new(Mode::Full); // or leak::Tracker::current()
//! let conn = Tracked::in_tracker(&tracker, vec![0u8; 16], Some("upstream".into()));
//! std::mem::forget(conn); // a leak
//! let report = tracker.report();
//! assert_eq!(report.total(), 1);
//! println!("{report}");
//! ```
//!
//! # Failure behaviour
//!
//! Tracking never fails and never panics: in `Off` mode, or for objects a sample skips, a token
//! is inert. Records live in memory only; nothing is written anywhere unless you print a report.

mod guard;
mod mode;
mod os;
mod report;
mod stale;
mod tracked;
mod tracker;

pub use guard::{HeapGrowth, LeakCheck, Leaks};
pub use mode::{ENV, Mode, ParseModeError};
pub use report::{LeakGroup, LeakReport, LeakedObject};
pub(crate) use stale::{
    StaleResource, StaleSource, note_registration, registry_dropped, scope_dropped_with_async, watch,
};
pub use tracked::Tracked;
pub use tracker::{Entered, LeakRecord, LeakToken, Tracker};

/// Tracks one object of `kind` in the current tracker ([`Tracker::current`]: the global one unless this thread entered another) until the token is dropped.
///
/// ```
/// let token = closeout::leak::track("job");
/// drop(token);
/// ```
#[inline]
pub fn track(kind: &'static str) -> LeakToken {
    Tracker::current().token(kind)
}

/// Tracks an `Arc`'s value in the current tracker ([`Tracker::current`]: the global one unless this thread entered another) until its last strong reference is gone.
///
/// ```
/// let cache = std::sync::Arc::new(());
/// closeout::leak::track_arc(&cache, "cache");
/// ```
pub fn track_arc<T: Send + Sync + 'static>(arc: &std::sync::Arc<T>, kind: &'static str) {
    Tracker::current().track_arc(arc, kind);
}

/// Every object live in the current tracker ([`Tracker::current`]: the global one unless this thread entered another), oldest first.
///
/// ```
/// let _ = closeout::leak::live();
/// ```
pub fn live() -> Vec<LeakRecord> {
    Tracker::current().live()
}

/// The current tracker's report ([`Tracker::current`]); the global one's includes the stale
/// resources of watched registries.
///
/// ```
/// println!("{}", closeout::leak::report());
/// ```
pub fn report() -> LeakReport {
    Tracker::current().report()
}

/// Sets the current tracker's mode (the global one's overrides `CLOSEOUT_LEAK`).
///
/// ```
/// closeout::leak::set_mode(closeout::leak::Mode::Sampled(128));
/// # closeout::leak::set_mode(closeout::leak::Mode::Full);
/// ```
pub fn set_mode(mode: Mode) {
    Tracker::current().set_mode(mode);
}
