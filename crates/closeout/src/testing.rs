//! Test fixtures: a fresh [`Registry`] per test, torn down after the body — also when it
//! panics — and a leak check; the test fails with the report of a failed teardown or with the
//! leak report. `#[closeout::test]` (feature `macros`) writes the call for you;
//! [`run`] and [`run_async`] are what it calls, usable by hand too.
//!
//! ```
//! use closeout::testing::{self, Options};
//! use closeout::Resource;
//!
//! testing::run(Options::new(), |registry| {
//!     registry.register(Resource::new("tmp", || ())).unwrap();
//!     // the fixture tears "tmp" down after the body, then checks for leaks
//! });
//! ```
//!
//! # Which leaks, and parallel tests
//!
//! - [`LeakScope::Tracked`] (the default): objects tracked through
//!   [`leak`](crate::leak) — [`Tracked`](crate::leak::Tracked), tokens, registries dropped with
//!   resources — by the test's thread and by its runtime's threads. Each test gets a
//!   [`Tracker`] of its own, [entered](Tracker::enter) on those threads, so tests under
//!   `cargo test`'s parallel threads never see each other's objects. Threads the body starts
//!   itself record into the global tracker unless they enter the test's tracker
//!   ([`Tracker::current`] at the start of the body gives it).
//! - [`LeakScope::Os`]: the tracked objects, and also threads, file descriptors, child
//!   processes — process-wide state, so another test running beside this one in the same
//!   process looks like this test's leak. Use it with one test per process (`cargo nextest`),
//!   or `--test-threads=1`.
//! - [`LeakScope::Off`]: only the teardown is checked.
//!
//! Async tests also fail when tokio tasks of their runtime are still alive after the teardown
//! (the tasks the registry tracked are stopped by it; these are the others).
//!
//! The tracker records in [`Mode::Full`], or in the mode `CLOSEOUT_LEAK` names (`backtrace`
//! adds where each leaked object was made).

use std::future::Future;
use std::num::NonZeroUsize;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::time::Duration;

use crate::alloc::HeapCounter;
use crate::leak::{LeakCheck, Mode, Tracker};
use crate::{Registry, Report};

/// Which leaks fail a test; see the [module](self) docs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum LeakScope {
    /// No leak check; a failed teardown still fails the test.
    Off,
    /// Objects tracked in the test's own tracker (parallel-safe).
    #[default]
    Tracked,
    /// Tracked objects, and threads, descriptors and child processes of the whole process.
    Os,
}

/// How a fixture checks its test.
///
/// ```
/// use closeout::testing::{LeakScope, Options};
/// use std::time::Duration;
/// let options = Options::new().leaks(LeakScope::Os).leak_timeout(Duration::from_millis(500));
/// # let _ = options;
/// ```
#[derive(Clone, Debug)]
pub struct Options {
    leaks: LeakScope,
    leak_timeout: Duration,
    flavor: Flavor,
    heap: Option<(&'static dyn HeapCounter, u64)>,
}

/// The tokio runtime an async test runs on (as `#[tokio::test]`'s `flavor`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Flavor {
    /// One thread, the test's own (the default, as in `#[tokio::test]`).
    #[default]
    CurrentThread,
    /// A multi-thread runtime with this many workers (`None`: tokio's default, one per core).
    MultiThread(Option<NonZeroUsize>),
}

impl Default for Options {
    fn default() -> Options {
        Options::new()
    }
}

impl Options {
    /// Tracked objects checked, retried for up to 1 s.
    pub fn new() -> Options {
        Options {
            leaks: LeakScope::Tracked,
            leak_timeout: Duration::from_secs(1),
            flavor: Flavor::CurrentThread,
            heap: None,
        }
    }

    /// Also fails the test when the live heap `counter` counts grew by more than
    /// `max_growth_bytes` over the body and the teardown
    /// ([`LeakCheck::max_heap_growth`]: process-wide, so one test per process). Applies with
    /// [`LeakScope::Tracked`] and [`LeakScope::Os`].
    ///
    /// ```
    /// use closeout::alloc::Counting;
    /// use closeout::testing::{self, Options};
    ///
    /// #[global_allocator]
    /// static HEAP: Counting = Counting::system();
    ///
    /// testing::run(Options::new().max_heap_growth(&HEAP, 1 << 20), |_| {
    ///     let buffer = vec![0u8; 4 << 20];
    ///     drop(buffer); // freed: no growth
    /// });
    /// ```
    pub fn max_heap_growth(mut self, counter: &'static dyn HeapCounter, max_growth_bytes: u64) -> Options {
        self.heap = Some((counter, max_growth_bytes));
        self
    }

    /// The runtime [`run_async`] builds (ignored by [`run`]).
    pub fn flavor(mut self, flavor: Flavor) -> Options {
        self.flavor = flavor;
        self
    }

    /// Which leaks fail the test.
    pub fn leaks(mut self, leaks: LeakScope) -> Options {
        self.leaks = leaks;
        self
    }

    /// How long the leak check retries before it fails (asynchronous teardown takes a moment);
    /// any `Duration` is taken, `Duration::MAX` means "until nothing leaks".
    pub fn leak_timeout(mut self, timeout: Duration) -> Options {
        self.leak_timeout = timeout;
        self
    }
}

/// What a test body may return: `()` or a `Result` whose error fails the test.
#[diagnostic::on_unimplemented(
    message = "a closeout test returns `()` or `Result<(), E>` with `E: Debug`, not `{Self}`"
)]
pub trait TestOutcome {
    /// `Err` with the error's `Debug` form when the test failed.
    fn into_failure(self) -> Result<(), String>;
}

impl TestOutcome for () {
    fn into_failure(self) -> Result<(), String> {
        Ok(())
    }
}

impl<E: std::fmt::Debug> TestOutcome for Result<(), E> {
    fn into_failure(self) -> Result<(), String> {
        self.map_err(|e| format!("{e:?}"))
    }
}

/// What the argument of a `#[closeout::test]` function may be: the test's
/// registry, borrowed or as a handle of its own.
#[diagnostic::on_unimplemented(
    message = "a closeout test's argument is its registry (`&Registry` or `Registry`), not `{Self}`"
)]
pub trait RegistryArgument {}

impl RegistryArgument for Registry {}
impl RegistryArgument for &Registry {}

/// Compile-time checks the attribute emits beside a test, so a wrong signature is an error
/// even where tests are not built. Not for direct use.
#[doc(hidden)]
pub const fn __check_signature<A: RegistryArgument, R: TestOutcome>() {}

/// The test's tracker and the leak check, made before the body.
struct Fixture {
    tracker: Tracker,
    check: Option<LeakCheck>,
}

impl Fixture {
    fn new(options: &Options) -> Fixture {
        let mode = match Mode::from_env() {
            Some(Mode::Backtrace) => Mode::Backtrace,
            Some(Mode::Off) => Mode::Off,
            _ => Mode::Full,
        };
        let tracker = Tracker::new(mode);
        let check = match options.leaks {
            LeakScope::Off => None,
            LeakScope::Tracked => {
                Some(LeakCheck::with_tracker(tracker.clone()).tracked_only().timeout(options.leak_timeout))
            }
            LeakScope::Os => Some(LeakCheck::with_tracker(tracker.clone()).timeout(options.leak_timeout)),
        };
        let check = match (check, options.heap) {
            (Some(check), Some((counter, bound))) => Some(check.max_heap_growth(counter, bound)),
            (check, _) => check,
        };
        Fixture { tracker, check }
    }

    /// Judges the test once the body and the teardown have run: the body's panic first (the
    /// teardown's report printed beside it when it failed too), then the body's error, then
    /// the teardown, then the leaks.
    fn judge(self, body: std::thread::Result<Result<(), String>>, report: Report, tasks_left: usize) {
        let Fixture { tracker, mut check } = self;
        let failed_teardown =
            (!report.is_success()).then(|| format!("the test's teardown failed:\n{report}"));
        // A test that already failed is not checked for leaks too.
        if (!matches!(body, Ok(Ok(()))) || failed_teardown.is_some())
            && let Some(check) = check.take()
        {
            check.dismiss();
        }
        match body {
            Err(panic) => {
                if let Some(failed) = failed_teardown {
                    eprintln!("closeout: {failed}");
                }
                resume_unwind(panic);
            }
            Ok(Err(error)) => match failed_teardown {
                Some(failed) => panic!("the test returned an error: {error}\nand {failed}"),
                None => panic!("the test returned an error: {error}"),
            },
            Ok(Ok(())) => {}
        }
        if let Some(failed) = failed_teardown {
            panic!("closeout: {failed}");
        }
        if let Some(mut check) = check
            && let Err(leaks) = check.check()
        {
            panic!("{leaks}");
        }
        if tasks_left > 0 {
            panic!(
                "closeout: {tasks_left} tokio task(s) of the test's runtime still alive after its teardown"
            );
        }
        drop(tracker);
    }
}

/// Runs a sync test body with a fresh [`Registry`], tears the registry down after it (also
/// when it panics, with [`Registry::shutdown_blocking`]) and checks for leaks as `options`
/// says.
///
/// # Panics
///
/// When the body panics (the same panic, after the teardown), returns an error, the teardown
/// fails (with its report) or something leaked (with the leak report).
///
/// ```should_panic
/// use closeout::leak::Tracked;
/// use closeout::testing::{self, Options};
/// testing::run(Options::new(), |_registry| {
///     std::mem::forget(Tracked::named(vec![0u8; 4], "forgotten buffer"));
/// }); // panics: "… forgotten buffer …"
/// ```
pub fn run<R: TestOutcome>(options: Options, body: impl FnOnce(&Registry) -> R) {
    let fixture = Fixture::new(&options);
    let registry = Registry::new();
    worker::enter(&fixture.tracker, &registry);
    let outcome = catch_unwind(AssertUnwindSafe(|| body(&registry).into_failure()));
    let report = registry.shutdown_blocking();
    drop(registry);
    worker::leave();
    fixture.judge(outcome, report, 0);
}

/// Runs an async test body on a runtime of the options' [`Flavor`], with a fresh [`Registry`] (a
/// handle to it: the fixture keeps its own), torn down after the body — also when it panics —
/// with [`Registry::shutdown`]; then waits up to the leak timeout for the runtime's other tasks
/// to end, shuts the runtime down and checks for leaks as `options` says. The test's tracker is
/// entered on every thread of the runtime.
///
/// # Panics
///
/// As [`run`]; also when the runtime cannot be built, and when tokio tasks are still alive
/// after the teardown.
///
/// ```
/// use closeout::testing::{self, Options};
/// use closeout::owner::Owner;
/// testing::run_async(Options::new(), |registry| async move {
///     registry.spawn("ticker", |token| async move { token.cancelled().await }).unwrap();
/// }); // the teardown stops "ticker"
/// ```
pub fn run_async<F, Fut>(options: Options, body: F)
where
    F: FnOnce(Registry) -> Fut,
    Fut: Future,
    Fut::Output: TestOutcome,
{
    let fixture = Fixture::new(&options);
    let registry = Registry::new();
    worker::enter(&fixture.tracker, &registry);
    let (tracker, on_start) = (fixture.tracker.clone(), registry.clone());
    let mut builder = match options.flavor {
        Flavor::CurrentThread => tokio::runtime::Builder::new_current_thread(),
        Flavor::MultiThread(workers) => {
            let mut builder = tokio::runtime::Builder::new_multi_thread();
            if let Some(n) = workers {
                builder.worker_threads(n.get());
            }
            builder
        }
    };
    let runtime = builder
        .enable_all()
        .on_thread_start(move || worker::enter(&tracker, &on_start))
        .on_thread_stop(worker::leave)
        .build()
        .unwrap_or_else(|e| panic!("closeout: the test's tokio runtime could not be built: {e}"));
    let handle = registry.clone();
    let wait = options.leak_timeout;
    let (outcome, report, tasks_left) = runtime.block_on(async move {
        let outcome = futures_util::FutureExt::catch_unwind(AssertUnwindSafe(async move {
            body(handle).await.into_failure()
        }))
        .await;
        let report = registry.shutdown().await;
        drop(registry);
        (outcome, report, alive_tasks_after(wait).await)
    });
    // Bounded: a blocking job that never returns must not hang the test.
    runtime.shutdown_timeout(options.leak_timeout.min(Duration::from_secs(10)));
    worker::leave();
    fixture.judge(outcome, report, tasks_left);
}

/// Tasks of the current runtime still alive after up to `wait` (aborted tasks take a turn to
/// go).
async fn alive_tasks_after(wait: Duration) -> usize {
    let metrics = tokio::runtime::Handle::current().metrics();
    let until = crate::clock::saturating_deadline(std::time::Instant::now(), wait);
    let mut pause = Duration::from_millis(1);
    loop {
        let alive = metrics.num_alive_tasks();
        if alive == 0 || std::time::Instant::now() >= until {
            return alive;
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}

/// The registry of the closeout test running on this thread, if any (for helpers that do not
/// take it as an argument). Set on the test's thread and on its runtime's threads.
///
/// ```
/// use closeout::testing::{self, Options};
/// assert!(testing::registry().is_none()); // not inside a closeout test
/// testing::run(Options::new(), |registry| {
///     registry.register(closeout::Resource::new("db", || ())).unwrap();
///     assert!(testing::registry().is_some_and(|r| r.contains("db")));
/// });
/// ```
pub fn registry() -> Option<Registry> {
    worker::REGISTRY.with(|r| r.borrow().clone())
}

/// The thread-local state of a test's threads: the entered tracker and the registry.
mod worker {
    use std::cell::RefCell;

    use crate::Registry;
    use crate::leak::{Entered, Tracker};

    thread_local! {
        pub(super) static REGISTRY: RefCell<Option<Registry>> = const { RefCell::new(None) };
        static ENTERED: RefCell<Option<Entered>> = const { RefCell::new(None) };
    }

    /// Routes this thread's tracked objects to the test's tracker and makes its registry the
    /// one [`registry`](super::registry) returns, until [`leave`].
    pub(super) fn enter(tracker: &Tracker, registry: &Registry) {
        let entered = tracker.enter();
        ENTERED.with(|e| *e.borrow_mut() = Some(entered));
        REGISTRY.with(|r| *r.borrow_mut() = Some(registry.clone()));
    }

    pub(super) fn leave() {
        let _ = REGISTRY.try_with(|r| r.borrow_mut().take());
        let _ = ENTERED.try_with(|e| e.borrow_mut().take());
    }
}
