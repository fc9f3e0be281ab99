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
//!   used by the free functions here, [`Tracker::new`] makes separate ones.
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
//! let tracker = Tracker::new(Mode::Full); // or leak::Tracker::global()
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

pub use guard::{LeakCheck, Leaks};
pub use mode::{ENV, Mode, ParseModeError};
pub use report::{LeakGroup, LeakReport, LeakedObject};
pub(crate) use stale::{
    StaleResource, StaleSource, note_registration, registry_dropped, scope_dropped_with_async, watch,
};
pub use tracked::Tracked;
pub use tracker::{LeakRecord, LeakToken, Tracker};

/// Tracks one object of `kind` in the global tracker until the token is dropped.
///
/// ```
/// let token = closeout::leak::track("job");
/// drop(token);
/// ```
#[inline]
pub fn track(kind: &'static str) -> LeakToken {
    Tracker::global().token(kind)
}

/// Tracks an `Arc`'s value in the global tracker until its last strong reference is gone.
///
/// ```
/// let cache = std::sync::Arc::new(());
/// closeout::leak::track_arc(&cache, "cache");
/// ```
pub fn track_arc<T: Send + Sync + 'static>(arc: &std::sync::Arc<T>, kind: &'static str) {
    Tracker::global().track_arc(arc, kind);
}

/// Every object live in the global tracker, oldest first.
///
/// ```
/// let _ = closeout::leak::live();
/// ```
pub fn live() -> Vec<LeakRecord> {
    Tracker::global().live()
}

/// The global tracker's report, with the stale resources of watched registries.
///
/// ```
/// println!("{}", closeout::leak::report());
/// ```
pub fn report() -> LeakReport {
    Tracker::global().report()
}

/// Sets the global tracker's mode (overriding `CLOSEOUT_LEAK`).
///
/// ```
/// closeout::leak::set_mode(closeout::leak::Mode::Sampled(128));
/// # closeout::leak::set_mode(closeout::leak::Mode::Full);
/// ```
pub fn set_mode(mode: Mode) {
    Tracker::global().set_mode(mode);
}
