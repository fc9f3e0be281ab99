//! A process-wide default [`Registry`] and free functions over it, for programs that want one
//! place to register everything without passing a registry around.
//!
//! Opt-in: the registry is made on first use, and nothing here runs unless called (it is not
//! tied to signals or to the end of `main` until you do so: [`hooks::install`](crate::hooks)
//! with [`registry`]).
//!
//! # The trade-off
//!
//! A global registry is convenient and hidden. Prefer passing a [`Registry`] (or a
//! [`Scope`](crate::Scope)) where you can:
//! - every part of the program, and every library it links that uses this module, shares one
//!   teardown: ids must be unique process-wide, and one [`shutdown`] stops everything;
//! - tests that run in one process share it too, so one test's teardown tears down another's
//!   resources (use a registry per test — [`testing`](crate::testing) gives one);
//! - it lives until the process ends: it is never dropped, so what is registered and never
//!   torn down is not reported by a registry's `Drop` either (use
//!   [`Registry::watch_stale`] or [`Registry::stale`] on [`registry`]).
//!
//! ```
//! use closeout::{Resource, global};
//! global::register(Resource::new("metrics-flusher", || println!("flushed")))?;
//! let report = global::cleanup_all_blocking(); // runs "metrics-flusher" once
//! assert!(!global::registry().contains("metrics-flusher"));
//! println!("{report}");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::sync::OnceLock;

use crate::error::RegisterError;
use crate::registry::Registry;
use crate::report::Report;
use crate::resource::Resource;

static GLOBAL: OnceLock<Registry> = OnceLock::new();

/// The process-wide registry, made with default settings on first use.
///
/// ```
/// let registry = closeout::global::registry();
/// assert_eq!(registry.len(), closeout::global::registry().len()); // always the same one
/// ```
pub fn registry() -> &'static Registry {
    GLOBAL.get_or_init(Registry::new)
}

/// Registers `resource` in the process-wide registry ([`Registry::register`]).
///
/// # Errors
///
/// As [`Registry::register`]: the resource is handed back in the error.
///
/// ```
/// closeout::global::register(closeout::Resource::new("global-doc-register", || ()))?;
/// # closeout::global::unregister("global-doc-register")?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn register(resource: Resource) -> Result<(), RegisterError> {
    registry().register(resource)
}

/// Removes `id` from the process-wide registry unrun and hands it back
/// ([`Registry::unregister`]).
///
/// # Errors
///
/// As [`Registry::unregister`].
///
/// ```
/// closeout::global::register(closeout::Resource::new("temp-global", || ()))?;
/// let back = closeout::global::unregister("temp-global")?; // `None` if a teardown ran it first
/// # let _ = back;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn unregister(id: &str) -> Result<Option<Resource>, crate::Error> {
    registry().unregister(id)
}

/// Tears down everything registered in the process-wide registry; it stays usable
/// ([`Registry::cleanup_all`]).
///
/// ```no_run
/// # #[tokio::main] async fn main() {
/// println!("{}", closeout::global::cleanup_all().await);
/// # }
/// ```
pub async fn cleanup_all() -> Report {
    registry().cleanup_all().await
}

/// [`cleanup_all`] from sync code ([`Registry::cleanup_all_blocking`]).
///
/// ```no_run
/// println!("{}", closeout::global::cleanup_all_blocking());
/// ```
pub fn cleanup_all_blocking() -> Report {
    registry().cleanup_all_blocking()
}

/// Refuses every later registration and tears everything down: for the end of the program
/// ([`Registry::shutdown`]).
///
/// ```no_run
/// # #[tokio::main] async fn main() {
/// let report = closeout::global::shutdown().await;
/// println!("{report}");
/// # }
/// ```
pub async fn shutdown() -> Report {
    registry().shutdown().await
}

/// [`shutdown`] from sync code ([`Registry::shutdown_blocking`]).
///
/// ```no_run
/// println!("{}", closeout::global::shutdown_blocking());
/// ```
pub fn shutdown_blocking() -> Report {
    registry().shutdown_blocking()
}
