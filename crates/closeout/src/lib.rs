//! Guaranteed, ordered, observable cleanup.
//!
//! Rust's `Drop` releases one value at a time: it cannot await, cannot time out, cannot order
//! teardown across objects, and says nothing when a cleanup fails. closeout adds the rest: you
//! register what you acquire, and it is released exactly once, in the right order, within a
//! deadline, with a [`Report`] of what happened.
//!
//! Use closeout when…
//! - a function or object owns several things to release, some async: a [`Scope`];
//! - a service must shut down in dependency order, with per-step timeouts, concurrently where
//!   possible, and tell you what failed or hung: a [`Registry`];
//! - you want to see the teardown order before running it: a [`Plan`];
//! - spawned work — tokio tasks, threads, blocking jobs, timers — must stop with its owner:
//!   [`Owner`](owner::Owner);
//! - SIGINT, SIGTERM, a panic or the end of `main` must run the teardown exactly once, and a
//!   stuck cleanup must never keep the process alive: [`hooks`];
//! - you want to see what leaked, and fail a test that leaks objects, threads, file
//!   descriptors, child processes or tokio tasks: [`leak`]; or let
//!   `#[closeout::test]` (feature `macros`, or [`testing`] by hand) give each
//!   test a registry, tear it down and check, and [`alloc::Counting`] bound its heap growth;
//! - a value's release is a function of it, not its `Drop`: [`Registry::adopt`];
//! - the program wants one registry without passing it around: [`global`];
//! - an exporter should see what was registered, cleaned, failed and how long it took:
//!   `metrics` (feature `metrics`), plus a `closeout.cleanup` tracing span per cleanup.
//!
//! # Scope: a stack of cleanups
//!
//! ```
//! use closeout::Scope;
//!
//! let scope = Scope::new();
//! scope.defer(|| println!("close the file"))?;
//! scope.defer_async(async { /* flush over the network */ })?;
//! let report = scope.close(); // runs both, last-in-first-out
//! assert!(report.is_success());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Registry: a graph of named resources
//!
//! ```
//! use closeout::{Category, Priority, Registry, Resource};
//! use std::time::Duration;
//!
//! let registry = Registry::new();
//! registry.register(Resource::new("log", || ()).category(Category::File))?;
//! registry.register(Resource::new("pool", || ()).category(Category::Database).depends_on(["log"]))?;
//! registry.register(
//!     Resource::new("server", || ())
//!         .category(Category::Network)
//!         .priority(Priority::High)
//!         .timeout(Duration::from_secs(5))
//!         .depends_on(["pool"]),
//! )?;
//! assert_eq!(registry.plan().order(), ["server", "pool", "log"]);
//! let report = registry.shutdown_blocking(); // server, then pool, then log
//! assert!(report.is_success());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Spawned work and process hooks
//!
//! Every scope and registry owns a [`CancellationToken`] that is cancelled the moment its
//! teardown begins, before any cleanup runs (cancel first). Work spawned through [`Owner`](owner::Owner)
//! watches it, gets a grace period, and is then aborted (tasks) or detached and reported
//! (threads, blocking jobs). [`hooks::install`] ties a registry or scope to the process's
//! signals and panics.
//!
//! ```no_run
//! use closeout::{Registry, hooks};
//! use closeout::owner::Owner;
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let registry = Registry::new();
//! registry.spawn("ticker", |token| async move {
//!     while !token.is_cancelled() {
//!         tokio::time::sleep(std::time::Duration::from_secs(1)).await;
//!     }
//! })?;
//! let _hooks = hooks::install(registry.clone())?; // SIGTERM: cancel, wait, report, exit
//! # Ok(()) }
//! ```
//!
//! # Leaks
//!
//! ```
//! use closeout::leak::{LeakCheck, Tracked};
//! let guard = LeakCheck::new().tracked_only(); // a test would check the OS state too
//! let conn = Tracked::named(String::from("db"), "primary connection");
//! drop(conn); // `std::mem::forget(conn)` here and `assert` fails, naming it
//! guard.assert();
//! ```
//!
//! # Design
//!
//! - **One engine, two faces.** [`Scope`] and [`Registry`] share the cleanup runner, the
//!   [`Report`] and the error types. A scope is an anonymous, last-in-first-out registry kept as
//!   lean as a vector of boxed closures.
//! - **Dependencies point from user to used.** `A.depends_on(B)` means A uses B, so A is torn
//!   down first and B outlives it, like systemd's stop order.
//! - **Nothing is lost.** A failed, panicked or timed-out cleanup is reported with its error. A
//!   rejected registration hands the resource back. What a deadline or `stop_on_error` skipped
//!   stays registered for a later teardown.
//! - **No hangs.** Timeouts abandon a cleanup instead of waiting on it; a teardown called from
//!   inside one of its own cleanups returns instead of deadlocking; concurrent teardowns share
//!   one run.
//! - **Observable.** Every teardown is a `tracing` span; a [`Registry`] takes an observer for
//!   lifecycle [`Event`]s; `Report` implements `Display` and, with the `serde` feature,
//!   `Serialize`.
//!
//! # What cleanup cannot guarantee
//!
//! closeout runs cleanups from ordinary code paths, so it cannot run them when that code never
//! runs. What covers each case:
//! - SIGKILL and the OOM killer stop the process without running anything. Covered by the
//!   journal (`closeout-journal`): external resources recorded before they exist are reaped by
//!   any later process (`closeout_journal::reap`) — child process trees killed, temp dirs and
//!   transactions finished, recorded commands run. Not covered: a resource created without a
//!   record (outside closeout, or before a journal was set), and in-process state, which dies
//!   with the process anyway.
//! - A reboot kills every process: the journal drops such records unsignalled (their pids mean
//!   nothing in the new boot) and still removes recorded files.
//! - A forced exit by the [`hooks`] (a second signal, a teardown past its deadline) skips the
//!   remaining cleanups, but first runs every [`last_action`] — each child process tree is
//!   killed, so none is orphaned.
//! - `std::process::exit` and `std::process::abort` skip destructors, pending teardowns and
//!   last actions; the journal's reap still finds what they left;
//! - `std::mem::forget` on a [`Scope`], or a reference cycle holding one, means its `Drop`
//!   never runs;
//! - a panic with `panic = "abort"` ends the process at once;
//! - a sync cleanup without a timeout that blocks forever blocks its teardown: give it a
//!   timeout and it runs on a helper thread that can be abandoned;
//! - an abandoned (timed-out) sync cleanup keeps running on its detached thread until it
//!   returns or the process exits.
//!
//! # Features
//!
//! - `hooks` (default, Unix): the [`hooks`] module (`signal-hook`).
//! - `serde`: `Serialize` for [`Report`], [`Plan`] and [`Stats`].
//! - `metrics`: counters, histograms and gauges through the `metrics` facade (`closeout::metrics`).
//! - `macros`: the [`#[closeout::test]`](test) attribute ([`testing`] works without it).
//! - `full`: everything.

#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]
// The loom build models the teardown core only; the spawned-work parts it leaves out would
// leave their helpers unused there.
#![cfg_attr(loom, allow(dead_code))]
#![deny(unsafe_code)]
#![doc(test(attr(deny(warnings))))]

mod adopt;
pub mod alloc;
mod cancel;
mod category;
mod chunked;
mod cleanup;
mod clock;
mod detail;
mod error;
#[cfg(not(loom))]
pub mod global;
#[cfg(all(feature = "hooks", unix, not(loom)))]
pub mod hooks;
#[cfg(all(target_os = "linux", not(loom)))]
pub mod last_action;
#[cfg(not(loom))]
pub mod leak;
mod local_scope;
#[cfg(feature = "metrics")]
pub mod metrics;
mod observer;
mod outcomes;
#[cfg(not(loom))]
pub mod owner;
mod registry;
mod report;
mod resource;
mod runner;
mod scope;
mod sync;
#[cfg(not(loom))]
pub mod testing;

pub use adopt::{AdoptError, Adopted};
pub use category::{Category, Priority};
pub use cleanup::{BoxError, IntoOutcome};
pub use clock::saturating_deadline;
/// Makes a test with a fresh [`Registry`] that is torn down after the body — also when it
/// panics — and a leak check (feature `macros`).
///
/// The function may take the test's registry as its one argument (`&Registry`, or `Registry`
/// by value: a handle), or reach it with [`testing::registry`]. It may be `async` (it then runs
/// on a tokio runtime, as with `#[tokio::test]`) and may return `Result<(), E>`. The test fails
/// when the body panics or returns an error, when the teardown fails (with its report), when
/// something leaked (with the leak report) and, for async tests, when tokio tasks outlive the
/// teardown. It expands to a call of [`testing::run`] or [`testing::run_async`]; their docs
/// say exactly what is checked.
///
/// Arguments, all optional:
/// - `leaks = "tracked"` (default) checks objects tracked by [`leak`] — each test has a
///   tracker of its own, so tests running in parallel under `cargo test` never see each
///   other's; `"os"` checks threads, file descriptors and child processes too (process-wide:
///   run such tests one per process, as `cargo nextest` does); `"off"` checks the teardown only.
/// - `leak_timeout_ms = N`: how long the leak check retries (default 1,000).
/// - `flavor = "current_thread"` (default) or `"multi_thread"`, and `worker_threads = N` with
///   the latter: the runtime of an async test, as `#[tokio::test]` takes them.
/// - `heap = HEAP, max_heap_growth = N`: also fail when the live heap counted by the static
///   [`alloc::Counting`] global allocator `HEAP` grew by more than `N` bytes (process-wide:
///   one test per process).
///
/// ```
/// # #![allow(unused_imports)] // a doctest is not built with `--test`: the tests are left out
/// use closeout::{Registry, Resource};
/// use closeout::leak::Tracked;
/// use closeout::owner::Owner;
///
/// #[closeout::test]
/// fn releases_what_it_registers(registry: &Registry) {
///     let conn = Tracked::named(vec![0u8; 8], "connection");
///     registry.register(Resource::new("conn", move || drop(conn))).unwrap();
/// } // "conn" is torn down, then nothing tracked is left: the test passes
///
/// #[closeout::test(flavor = "multi_thread", worker_threads = 2)]
/// async fn stops_its_tasks(registry: Registry) -> Result<(), Box<dyn std::error::Error>> {
///     registry.spawn("ticker", |token| async move { token.cancelled().await })?;
///     Ok(())
/// }
///
/// #[closeout::test]
/// #[should_panic(expected = "forgotten")]
/// fn fails_on_a_leak() {
///     std::mem::forget(Tracked::named(1u8, "forgotten"));
/// }
/// # fn main() {}
/// ```
#[cfg(feature = "macros")]
pub use closeout_macros::test;
pub use detail::Detail;
pub use error::{BatchError, Error, RegisterError, Rejected};
pub use local_scope::{LocalHandle, LocalScope};
pub use observer::{Event, ObserverHandle};
pub use registry::{
    Ages, Phase, Plan, PlanStep, Registry, RegistryBuilder, ResourceInfo, Selection, Stats, TeardownOptions,
};
pub use report::{CleanupError, Report, ReportEntry, SkipReason, Status, TeardownError, Totals};
pub use resource::{MAX_TIMEOUT, Resource};
pub use scope::{Handle, OwnedHandle, Scope, ScopeBuilder};
/// The token type of [`Scope::token`] and [`Registry::token`], re-exported from `tokio-util`.
pub use tokio_util::sync::CancellationToken;
