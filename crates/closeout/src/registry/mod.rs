//! [`Registry`]: named resources torn down as a dependency graph, concurrently where independent.

pub(crate) mod graph;
mod plan;
mod run;
pub(crate) mod schedule;
// Only other modules use these, and none of them is part of the loom model.
#[cfg(not(loom))]
mod seams;
mod select;
pub(crate) mod state;
mod stats;
mod teardown;

use crate::sync::{Arc, Mutex, MutexGuard};
use std::fmt;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

pub use plan::{Phase, Plan, PlanStep};
pub use select::{Selection, TeardownOptions};
pub use stats::{Ages, ResourceInfo, Stats};

use crate::category::{Category, Priority};
use crate::error::{BatchError, Error, RegisterError};
use crate::observer::{Event, Observer, notify};
use crate::report::Report;
use crate::resource::Resource;
use state::{State, check_timeout};

/// Named resources with categories, priorities, timeouts and dependencies, torn down as a graph.
///
/// `A.depends_on(B)` means A uses B, so **A is torn down before B**. Priority makes phases (all
/// `Critical` first, then `High`, …); a resource's effective priority is the most urgent of its
/// own and its dependencies', so dependents are pulled into their dependency's phase. Inside a
/// phase, a resource starts the moment everything depending on it has finished; independent ones
/// run concurrently up to `max_concurrency`, ties broken by priority, then last registered
/// first. With `max_concurrency(1)` the order is fully deterministic. [`plan`](Registry::plan)
/// shows the order without running anything.
///
/// Every cleanup runs at most once. Failures, panics and timeouts are reported, never
/// propagated; the teardown carries on. A `Registry` is a cheap handle: clone it to share.
///
/// # Examples
///
/// ```
/// use closeout::{Category, Registry, Resource};
/// use std::time::Duration;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let registry = Registry::new();
/// registry.register(Resource::new("log", || println!("log closed")).category(Category::File))?;
/// registry.register(
///     Resource::new_async("server", async { println!("server stopped") })
///         .category(Category::Network)
///         .timeout(Duration::from_secs(1))
///         .depends_on(["log"]),
/// )?;
/// println!("{}", registry.plan());
/// let report = registry.shutdown().await; // server, then log
/// assert_eq!(report.entries()[0].id(), "server");
/// report.into_result()?;
/// # Ok(()) }
/// ```
///
/// # Errors
///
/// Registration validates everything first and hands the resource back on error
/// ([`RegisterError`]): empty or duplicate id, unknown dependency, zero or absurd timeout,
/// a full registry, or a shut-down one.
///
/// # Timeouts and the deadline
///
/// A cleanup past its timeout is abandoned and reported as timed out: an async one is dropped;
/// a sync one with a timeout runs on a helper thread that is detached (it keeps running, but
/// never holds up the teardown or the process exit). A sync cleanup **without** a timeout runs
/// inline on the teardown's thread and cannot be interrupted. Past the overall deadline,
/// whatever has not started stays registered and is reported as skipped, so a later teardown
/// can retry it.
///
/// # Resource leaking
///
/// Dropping the last `Registry` handle does **not** run its cleanups: a registry outlives
/// scopes and is torn down explicitly (or by process hooks). What is still registered at that
/// point is dropped unrun, with a `tracing` warning naming how many. A cleanup that captures a
/// clone of its own `Registry` keeps the registry alive until that cleanup runs (a reference
/// cycle): such a registry is never dropped unless it is torn down or [`clear`](Registry::clear)ed.
#[derive(Clone)]
pub struct Registry {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    state: Mutex<State>,
    observer: Observer,
    max_concurrency: usize,
    deadline: Option<Duration>,
    /// Numbers tracked work asked to be numbered (`Spawn::numbered`, timers): `name#n`. Not
    /// state the teardown engine reads, so a plain atomic outside the lock.
    spawned: std::sync::atomic::AtomicU64,
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        // No user code runs under this lock, so a poisoned lock's state is still consistent.
        crate::sync::lock(&self.state)
    }

    /// Identifies this registry to the re-entrancy check.
    fn owner(&self) -> usize {
        self as *const Inner as usize
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        let st = self.lock();
        #[cfg(not(loom))]
        crate::leak::registry_dropped(seams::still_registered(&st));
        if st.len > 0 {
            tracing::warn!(
                resources = st.len,
                "closeout: Registry dropped with resources still registered; their cleanups will not run"
            );
        }
    }
}

/// Configures a [`Registry`].
///
/// ```
/// use closeout::Registry;
/// use std::time::Duration;
///
/// let registry = Registry::builder()
///     .max_resources(10_000)
///     .max_concurrency(16)
///     .default_timeout(Duration::from_secs(5))
///     .deadline(Duration::from_secs(30))
///     .build()?;
/// # let _ = registry;
/// # Ok::<(), closeout::Error>(())
/// ```
#[derive(Default)]
pub struct RegistryBuilder {
    max_resources: Option<usize>,
    max_concurrency: Option<usize>,
    default_timeout: Option<Duration>,
    deadline: Option<Duration>,
    observers: Vec<crate::observer::ObserverFn>,
    category_defaults: Vec<state::CategoryDefault>,
}

impl RegistryBuilder {
    /// At most `n` resources registered at once; past it registration fails with
    /// [`Error::LimitReached`], so a runaway loop cannot exhaust memory. Default: unlimited.
    #[must_use]
    pub fn max_resources(mut self, n: usize) -> Self {
        self.max_resources = Some(n);
        self
    }

    /// At most `n` cleanups running at once. Default: unlimited.
    #[must_use]
    pub fn max_concurrency(mut self, n: usize) -> Self {
        self.max_concurrency = Some(n);
        self
    }

    /// The timeout of resources registered without one. Note that it makes every sync cleanup
    /// run on a helper thread (see "Timeouts" on [`Registry`]).
    #[must_use]
    pub fn default_timeout(mut self, timeout: Duration) -> Self {
        self.default_timeout = Some(timeout);
        self
    }

    /// The priority of resources of `category` that set none of their own (the seeds'
    /// per-category table). A resource's own [`priority`](crate::Resource::priority) wins.
    ///
    /// ```
    /// use closeout::{Category, Priority, Registry, Resource};
    /// use std::time::Duration;
    /// let registry = Registry::builder()
    ///     .category_priority(Category::Network, Priority::High)
    ///     .category_timeout(Category::Database, Duration::from_secs(2))
    ///     .build()?;
    /// registry.register(Resource::new("api", || ()).category(Category::Network))?;
    /// registry.register(Resource::new("db", || ()).category(Category::Database))?;
    /// registry.register(Resource::new("log", || ()).category(Category::Network).priority(Priority::Low))?;
    /// assert_eq!(registry.info("api").unwrap().priority, Priority::High);
    /// assert_eq!(registry.info("db").unwrap().timeout, Some(Duration::from_secs(2)));
    /// assert_eq!(registry.info("log").unwrap().priority, Priority::Low); // its own wins
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn category_priority(mut self, category: Category, priority: Priority) -> Self {
        self.category_default(category).priority = Some(priority);
        self
    }

    /// The timeout of resources of `category` that set none of their own; it wins over
    /// [`default_timeout`](RegistryBuilder::default_timeout). Checked by
    /// [`build`](RegistryBuilder::build) like every timeout.
    #[must_use]
    pub fn category_timeout(mut self, category: Category, timeout: Duration) -> Self {
        self.category_default(category).timeout = Some(timeout);
        self
    }

    fn category_default(&mut self, category: Category) -> &mut state::CategoryDefault {
        let i = match self.category_defaults.iter().position(|d| d.category == category) {
            Some(i) => i,
            None => {
                self.category_defaults.push(state::CategoryDefault {
                    category,
                    priority: None,
                    timeout: None,
                });
                self.category_defaults.len() - 1
            }
        };
        &mut self.category_defaults[i]
    }

    /// The overall deadline of every teardown (a teardown's options may override it).
    #[must_use]
    pub fn deadline(mut self, deadline: Duration) -> Self {
        self.deadline = Some(deadline);
        self
    }

    /// Called with every lifecycle [`Event`], for the registry's life; see [`crate::Event`].
    /// Each call adds one more (they are called in the order they were added); observers can
    /// also come and go at runtime ([`Registry::add_observer`]).
    #[must_use]
    pub fn observer<F>(mut self, f: F) -> Self
    where
        F: Fn(&Event<'_>) + Send + Sync + 'static,
    {
        self.observers.push(std::sync::Arc::new(f));
        self
    }

    /// Builds the registry.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] for `max_resources(0)` or `max_concurrency(0)`;
    /// [`Error::ZeroTimeout`] or [`Error::TimeoutTooLong`] for a bad timeout or deadline.
    pub fn build(self) -> Result<Registry, Error> {
        if self.max_resources == Some(0) {
            return Err(Error::InvalidConfig("max_resources must be at least 1"));
        }
        if self.max_concurrency == Some(0) {
            return Err(Error::InvalidConfig("max_concurrency must be at least 1"));
        }
        if let Some(t) = self.default_timeout {
            check_timeout("default_timeout", t)?;
        }
        if let Some(t) = self.deadline {
            check_timeout("deadline", t)?;
        }
        for d in &self.category_defaults {
            if let Some(t) = d.timeout {
                check_timeout(&format!("category_timeout({})", d.category), t)?;
            }
        }
        let mut state = State::new(self.max_resources.unwrap_or(usize::MAX), self.default_timeout);
        state.category_defaults = self.category_defaults;
        let observer = Observer::new();
        for f in self.observers {
            observer.add(f).keep();
        }
        Ok(Registry {
            inner: Arc::new(Inner {
                state: Mutex::new(state),
                observer,
                max_concurrency: self.max_concurrency.unwrap_or(usize::MAX),
                deadline: self.deadline,
                spawned: std::sync::atomic::AtomicU64::new(0),
            }),
        })
    }
}

impl fmt::Debug for RegistryBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegistryBuilder")
            .field("max_resources", &self.max_resources)
            .field("max_concurrency", &self.max_concurrency)
            .field("default_timeout", &self.default_timeout)
            .field("deadline", &self.deadline)
            .field("observers", &self.observers.len())
            .field("category_defaults", &self.category_defaults)
            .finish()
    }
}

impl Registry {
    /// A registry with default settings.
    ///
    /// ```
    /// assert!(closeout::Registry::new().is_empty());
    /// ```
    pub fn new() -> Registry {
        RegistryBuilder::default().build().unwrap_or_else(|_| unreachable!("defaults are valid"))
    }

    /// Configures a registry.
    pub fn builder() -> RegistryBuilder {
        RegistryBuilder::default()
    }

    /// The registry's [`CancellationToken`]: cancelled the moment a teardown of everything
    /// ([`cleanup_all`](Registry::cleanup_all), [`shutdown`](Registry::shutdown)) begins, before
    /// any cleanup runs, so work that watches it can wind down by itself. After a `cleanup_all`
    /// the registry hands out a fresh token; after `shutdown` it stays cancelled.
    ///
    /// ```
    /// let registry = closeout::Registry::new();
    /// let token = registry.token();
    /// let t = token.clone();
    /// registry.register(closeout::Resource::new("check", move || assert!(t.is_cancelled())))?;
    /// assert!(registry.shutdown_blocking().is_success());
    /// assert!(token.is_cancelled());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn token(&self) -> CancellationToken {
        self.lock().cancel.token(None)
    }

    /// Ids of the cleanups running right now (for a message when a teardown has to be cut
    /// short).
    ///
    /// ```
    /// assert!(closeout::Registry::new().running().is_empty());
    /// ```
    pub fn running(&self) -> Vec<String> {
        self.lock().running()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.inner.lock()
    }

    /// Registers a resource. While a teardown runs, a new registration is taken into that same
    /// run (a subset teardown takes it when it depends on something being torn down).
    ///
    /// # Errors
    ///
    /// [`RegisterError`], holding the resource, for an empty or duplicate id, an unknown
    /// dependency or one being torn down, a zero or too long timeout, a full registry, or one
    /// that was shut down. Nothing is half-registered.
    ///
    /// ```
    /// use closeout::{Error, Registry, Resource};
    /// let registry = Registry::new();
    /// let err = registry.register(Resource::new("a", || ()).depends_on(["nope"])).unwrap_err();
    /// assert!(matches!(err.error(), Error::UnknownDependency { .. }));
    /// assert!(registry.is_empty());
    /// ```
    pub fn register(&self, resource: Resource) -> Result<(), RegisterError> {
        #[cfg(not(loom))]
        let mut resource = resource;
        #[cfg(not(loom))]
        crate::leak::note_registration(&mut resource);
        let sid = self.lock().register(resource)?;
        self.announce(&[sid]);
        Ok(())
    }

    /// Registers all or nothing. Entries may depend on earlier entries of the same batch.
    ///
    /// # Errors
    ///
    /// [`BatchError`] with the index of the first bad entry, its error, and every resource
    /// handed back.
    ///
    /// ```
    /// use closeout::{Registry, Resource};
    /// let registry = Registry::new();
    /// registry.register_batch(vec![
    ///     Resource::new("pool", || ()),
    ///     Resource::new("conn", || ()).depends_on(["pool"]),
    /// ])?;
    /// assert_eq!(registry.len(), 2);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn register_batch(&self, resources: Vec<Resource>) -> Result<(), BatchError> {
        let registered = self.lock().register_batch(resources);
        match registered {
            Ok(sids) => {
                self.announce(&sids);
                Ok(())
            }
            Err((index, error, resources)) => Err(BatchError::new(index, error, resources)),
        }
    }

    fn announce(&self, sids: &[state::SlotId]) {
        let observer = &self.inner.observer;
        if observer.is_empty() {
            return;
        }
        let infos: Vec<_> = {
            let st = self.lock();
            sids.iter()
                .filter_map(|&sid| st.slot(sid))
                .map(|s| (s.id.to_string(), st.categories[s.category as usize].clone(), s.priority()))
                .collect()
        };
        for (id, category, priority) in &infos {
            notify(observer, Event::Registered { id, category, priority: *priority });
        }
    }

    /// Adds an observer of this registry's lifecycle [`Event`]s, until the handle is dropped
    /// (see [`ObserverHandle`](crate::ObserverHandle)). Any number can be added; each event goes to the observers
    /// there were when it happened, in the order they were added, on the registry's observer
    /// thread (see [`Event`]).
    ///
    /// ```
    /// use closeout::{Event, Registry, Resource};
    /// use std::sync::atomic::{AtomicUsize, Ordering};
    /// use std::sync::Arc;
    ///
    /// let registry = Registry::new();
    /// let (logs, metrics) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    /// let (l, m) = (logs.clone(), metrics.clone());
    /// let _log = registry.add_observer(move |_: &Event<'_>| { l.fetch_add(1, Ordering::SeqCst); });
    /// let _metrics = registry.add_observer(move |_: &Event<'_>| { m.fetch_add(1, Ordering::SeqCst); });
    /// registry.register(Resource::new("a", || ()))?;
    /// registry.cleanup_all_blocking(); // waits until its events were observed
    /// assert_eq!(logs.load(Ordering::SeqCst), 4);
    /// assert_eq!(metrics.load(Ordering::SeqCst), 4);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn add_observer<F>(&self, f: F) -> crate::ObserverHandle
    where
        F: Fn(&Event<'_>) + Send + Sync + 'static,
    {
        self.inner.observer.add(std::sync::Arc::new(f))
    }

    /// Adds the edge "`dependent` uses `dependency`" between two registered resources.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] for an unknown id; [`Error::Cycle`] with the cycle's path if the edge
    /// would close one; [`Error::Busy`] while a teardown runs.
    ///
    /// ```
    /// use closeout::{Error, Registry, Resource};
    /// let registry = Registry::new();
    /// registry.register(Resource::new("a", || ()))?;
    /// registry.register(Resource::new("b", || ()).depends_on(["a"]))?;
    /// let err = registry.add_dependency("a", "b").unwrap_err();
    /// assert_eq!(err, Error::Cycle(vec!["a".into(), "b".into(), "a".into()]));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn add_dependency(&self, dependent: &str, dependency: &str) -> Result<(), Error> {
        self.lock().add_dependency(dependent, dependency)
    }

    /// Removes a resource without running its cleanup and hands it back; `Ok(None)` if no
    /// such resource is registered.
    ///
    /// # Errors
    ///
    /// [`Error::HasDependents`] naming what still depends on it (the graph stays whole);
    /// [`Error::Busy`] if it is being torn down right now.
    ///
    /// ```
    /// use closeout::{Registry, Resource};
    /// let registry = Registry::new();
    /// registry.register(Resource::new("a", || ()))?;
    /// let back = registry.unregister("a")?.expect("was registered");
    /// assert_eq!(back.get_id(), "a");
    /// assert!(registry.unregister("a")?.is_none());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn unregister(&self, id: &str) -> Result<Option<Resource>, Error> {
        let resource = {
            let mut st = self.lock();
            let Some(idx) = st.find(id) else { return Ok(None) };
            if st.slots[idx as usize].state == state::SlotState::Running {
                return Err(Error::Busy(id.to_owned()));
            }
            if st.slots[idx as usize].dependents() > 0 {
                return Err(Error::HasDependents { id: id.to_owned(), dependents: st.dependents_of(idx) });
            }
            let slot = st.free(idx);
            st.shrink_if_empty();
            st.rebuild(slot)
        };
        notify(&self.inner.observer, Event::Unregistered { id });
        Ok(resource)
    }

    /// Forgets every resource that is not being torn down right now, without running anything,
    /// and returns how many. Their cleanups are dropped.
    ///
    /// ```
    /// use closeout::{Registry, Resource};
    /// let registry = Registry::new();
    /// registry.register(Resource::new("a", || -> () { panic!("never runs") }))?;
    /// assert_eq!(registry.clear(), 1);
    /// assert!(registry.cleanup_all_blocking().is_empty());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn clear(&self) -> usize {
        let removed: Vec<state::Slot> = {
            let mut st = self.lock();
            let live: Vec<u32> = (0..st.slots.len() as u32)
                .filter(|&i| st.slots[i as usize].state == state::SlotState::Registered)
                .collect();
            let freed = live.into_iter().map(|i| st.free(i)).collect();
            st.shrink_if_empty();
            freed
        };
        // Cleanups are dropped here, outside the lock: their destructors are user code.
        for slot in &removed {
            notify(&self.inner.observer, Event::Unregistered { id: &slot.id });
        }
        removed.len()
    }

    /// Whether a resource with this id is registered (or being torn down).
    pub fn contains(&self, id: &str) -> bool {
        self.lock().find(id).is_some()
    }

    /// Number of resources registered (including those being torn down).
    pub fn len(&self) -> usize {
        self.lock().len
    }

    /// Whether nothing is registered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether [`shutdown`](Registry::shutdown) was called: registration is refused for good.
    pub fn is_closed(&self) -> bool {
        self.lock().closed
    }

    /// Describes one resource.
    ///
    /// ```
    /// use closeout::{Registry, Resource};
    /// let registry = Registry::new();
    /// registry.register(Resource::new("a", || ()).tag("t"))?;
    /// assert_eq!(registry.info("a").unwrap().tags, ["t"]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn info(&self, id: &str) -> Option<ResourceInfo> {
        let st = self.lock();
        let idx = st.find(id)?;
        Some(ResourceInfo::of(&st, &st.slots[idx as usize]))
    }

    /// Counts by category and priority, and lifetime totals.
    ///
    /// ```
    /// use closeout::{Category, Registry, Resource};
    /// let registry = Registry::new();
    /// registry.register(Resource::new("a", || ()).category(Category::File))?;
    /// assert_eq!(registry.stats().by_category(&Category::File), 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn stats(&self) -> Stats {
        Stats::of(&self.lock())
    }

    /// Reports this registry's resources registered longer ago than `older_than` as leaks of
    /// the global tracker (kind `closeout::Registry resource (stale)`), for as long as the
    /// registry lives. Watching holds the registry weakly.
    ///
    /// ```
    /// use closeout::{Registry, Resource, leak};
    /// use std::time::Duration;
    /// let registry = Registry::new();
    /// registry.register(Resource::new("cache-entry", || ()))?;
    /// registry.watch_stale(Duration::ZERO);
    /// assert!(leak::live().iter().any(|r| r.name() == "cache-entry"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[cfg(not(loom))]
    pub fn watch_stale(&self, older_than: Duration) {
        let weak: std::sync::Weak<dyn crate::leak::StaleSource> = Arc::downgrade(&self.inner) as _;
        crate::leak::watch(weak, older_than);
    }

    /// The ages of the resources registered now: average, oldest, and how many are at least
    /// `stale_after` old (any `Duration`: zero counts all of them). See [`Ages`](crate::Ages).
    pub fn ages(&self, stale_after: Duration) -> crate::Ages {
        stats::Ages::of(&self.lock(), stale_after)
    }

    /// Resources registered longer ago than `older_than`, oldest first.
    ///
    /// ```
    /// use closeout::{Registry, Resource};
    /// use std::time::Duration;
    /// let registry = Registry::new();
    /// registry.register(Resource::new("a", || ()))?;
    /// assert_eq!(registry.stale(Duration::ZERO).len(), 1);
    /// assert!(registry.stale(Duration::from_secs(3600)).is_empty());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn stale(&self, older_than: Duration) -> Vec<ResourceInfo> {
        let st = self.lock();
        let mut out: Vec<ResourceInfo> = st
            .slots
            .iter()
            .filter(|s| s.state != state::SlotState::Vacant && st.age(s) >= older_than)
            .map(|s| ResourceInfo::of(&st, s))
            .collect();
        out.sort_by_key(|info| std::cmp::Reverse(info.age));
        out
    }

    /// The order [`cleanup_all`](Registry::cleanup_all) would follow, without running anything.
    pub fn plan(&self) -> Plan {
        self.plan_for(&Selection::All, &TeardownOptions::default())
    }

    /// The order a teardown of `selection` with `options` would follow.
    ///
    /// ```
    /// use closeout::{Registry, Resource, Selection, TeardownOptions};
    /// let registry = Registry::new();
    /// registry.register(Resource::new("server", || ()))?;
    /// registry.register(Resource::new("conn", || ()).depends_on(["server"]))?;
    /// let plan = registry.plan_for(&Selection::id("server"), &TeardownOptions::new());
    /// assert_eq!(plan.order(), ["conn", "server"]); // conn is cascaded in
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn plan_for(&self, selection: &Selection, options: &TeardownOptions) -> Plan {
        let st = self.lock();
        let g = graph::build(&st, selection, options);
        Plan::from_graph(&st, g)
    }

    /// Tears everything down and leaves the registry usable.
    ///
    /// Concurrent calls share one run and receive the same report. Called from inside one of
    /// this registry's cleanups, it returns at once with an empty, re-entrant report (the outer
    /// teardown covers everything).
    ///
    /// # Cancel safety
    ///
    /// Dropping the future part way drops the cleanups that were running (reported as failed
    /// to anyone who joined) and leaves the rest registered.
    pub async fn cleanup_all(&self) -> Report {
        self.teardown(Selection::All, TeardownOptions::default()).await
    }

    /// Refuses every later registration (handing the resource back), then tears everything
    /// down. Registrations attempted during this teardown are refused too.
    pub async fn shutdown(&self) -> Report {
        teardown::teardown(&self.inner, Selection::All, TeardownOptions::default(), true).await
    }

    /// Tears down `selection` (plus everything that depends on it) with `options`.
    ///
    /// ```
    /// use closeout::{Category, Registry, Resource, Selection, TeardownOptions};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let registry = Registry::new();
    /// registry.register(Resource::new("db", || ()).category(Category::Database))?;
    /// registry.register(Resource::new("file", || ()).category(Category::File))?;
    /// let report = registry
    ///     .teardown(Selection::Category(Category::Database), TeardownOptions::new())
    ///     .await;
    /// assert_eq!(report.len(), 1);
    /// assert!(registry.contains("file"));
    /// # Ok(()) }
    /// ```
    pub async fn teardown(&self, selection: Selection, options: TeardownOptions) -> Report {
        teardown::teardown(&self.inner, selection, options, false).await
    }

    /// [`cleanup_all`](Registry::cleanup_all) from sync code. Inline when every cleanup is
    /// sync without timeout; otherwise on a tokio runtime (the current one through a helper
    /// thread, or a temporary one).
    pub fn cleanup_all_blocking(&self) -> Report {
        self.teardown_blocking(Selection::All, TeardownOptions::default())
    }

    /// [`shutdown`](Registry::shutdown) from sync code.
    pub fn shutdown_blocking(&self) -> Report {
        teardown::teardown_blocking(&self.inner, Selection::All, TeardownOptions::default(), true)
    }

    /// [`teardown`](Registry::teardown) from sync code.
    pub fn teardown_blocking(&self, selection: Selection, options: TeardownOptions) -> Report {
        teardown::teardown_blocking(&self.inner, selection, options, false)
    }
}

impl Default for Registry {
    fn default() -> Self {
        Registry::new()
    }
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let st = self.lock();
        f.debug_struct("Registry")
            .field("resources", &st.len)
            .field("closed", &st.closed)
            .field("tearing_down", &st.active.is_some())
            .finish()
    }
}
