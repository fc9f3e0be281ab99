//! Lifecycle events of a [`Registry`](crate::Registry), for metrics and logs beyond `tracing`.
//!
//! An observer runs on a thread of its own, one event after another in the order they
//! happened, never on the thread doing the work: a slow or blocking observer cannot hold up a
//! registration or make a teardown overrun its deadline. A teardown waits for its own events to
//! be observed before it returns, but never past its deadline. A panic in the observer is
//! caught and logged; it never disturbs a registration or a teardown.
//!
//! # Invariants
//!
//! O1. Events reach the observer in the order `notify` was called, one at a time (one channel,
//!    one thread).
//! O2. `Progress::observed` only grows and never passes `sent`; `flush` waits for the count that
//!    was sent when it was called.
//! O3. An event goes to the observers that were added when it was sent (the list is read at
//!    send time and travels with the event): an observer added later never sees an earlier
//!    event, and one removed sees nothing that happens after its removal returned — though
//!    events sent before may still reach it, from the queue.
//!
//! Lock order: `Observers::list` and `Progress::observed` are never held together; neither is
//! held while an observer runs.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock, mpsc};
use std::time::{Duration, Instant};

use crate::category::{Category, Priority};
use crate::report::{Report, Status};

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

/// A user's observer callback.
pub(crate) type ObserverFn = Arc<dyn Fn(&Event<'_>) + Send + Sync + 'static>;

/// The observers of one registry, as of now: replaced whole (copy on write) by each add and
/// remove, so an event can carry the list it was sent to (O3) for the price of one `Arc` clone.
type List = Arc<[(u64, ObserverFn)]>;

/// The observers of one registry, and the thread that calls them (started with the first
/// event that has anyone to go to).
pub(crate) struct Observer {
    observers: Arc<Observers>,
    queue: OnceLock<Option<mpsc::Sender<(List, OwnedEvent)>>>,
    progress: Arc<Progress>,
}

/// The list, and how many are in it (read without the lock on every event: with nobody
/// observing, an event costs one load).
#[derive(Default)]
struct Observers {
    list: Mutex<List>,
    len: AtomicUsize,
    next_id: AtomicU64,
}

impl Observers {
    /// Replaces the list with what `next` makes of it, and its length with the new one's.
    fn replace(&self, next: impl FnOnce(&[(u64, ObserverFn)]) -> Vec<(u64, ObserverFn)>) {
        let mut list = crate::sync::lock_std(&self.list);
        *list = Arc::from(next(&list));
        self.len.store(list.len(), Ordering::SeqCst);
    }
}

#[derive(Default)]
struct Progress {
    sent: AtomicU64,
    observed: Mutex<u64>,
    changed: Condvar,
}

/// An [`Event`] that owns its data, to cross to the observer's thread.
enum OwnedEvent {
    Registered { id: String, category: Category, priority: Priority },
    Unregistered { id: String },
    TeardownStarted { resources: usize },
    Cleaned { id: String, duration: Duration },
    Failed { id: String, status: Status },
    TeardownCompleted { report: Report },
}

impl OwnedEvent {
    fn of(e: &Event<'_>) -> OwnedEvent {
        match *e {
            Event::Registered { id, category, priority } => {
                OwnedEvent::Registered { id: id.to_owned(), category: category.clone(), priority }
            }
            Event::Unregistered { id } => OwnedEvent::Unregistered { id: id.to_owned() },
            Event::TeardownStarted { resources } => OwnedEvent::TeardownStarted { resources },
            Event::Cleaned { id, duration } => OwnedEvent::Cleaned { id: id.to_owned(), duration },
            Event::Failed { id, status } => OwnedEvent::Failed { id: id.to_owned(), status: status.clone() },
            Event::TeardownCompleted { report } => OwnedEvent::TeardownCompleted { report: report.clone() },
        }
    }

    fn event(&self) -> Event<'_> {
        match self {
            OwnedEvent::Registered { id, category, priority } => {
                Event::Registered { id, category, priority: *priority }
            }
            OwnedEvent::Unregistered { id } => Event::Unregistered { id },
            OwnedEvent::TeardownStarted { resources } => Event::TeardownStarted { resources: *resources },
            OwnedEvent::Cleaned { id, duration } => Event::Cleaned { id, duration: *duration },
            OwnedEvent::Failed { id, status } => Event::Failed { id, status },
            OwnedEvent::TeardownCompleted { report } => Event::TeardownCompleted { report },
        }
    }
}

impl Observer {
    pub(crate) fn new() -> Observer {
        Observer { observers: Arc::default(), queue: OnceLock::new(), progress: Arc::default() }
    }

    /// Adds `f`; it sees every event sent from now until its handle removes it.
    pub(crate) fn add(&self, f: ObserverFn) -> ObserverHandle {
        let id = self.observers.next_id.fetch_add(1, Ordering::Relaxed);
        self.observers.replace(|list| list.iter().cloned().chain([(id, f)]).collect());
        ObserverHandle { observers: Some(Arc::downgrade(&self.observers)), id }
    }

    /// Whether anyone observes: one load.
    #[inline]
    pub(crate) fn is_empty(&self) -> bool {
        self.observers.len.load(Ordering::SeqCst) == 0
    }

    /// Hands `event` to the observers' thread (invariants O1, O3); inline if no thread can be
    /// had.
    fn send(&self, event: &Event<'_>) {
        let list = crate::sync::lock_std(&self.observers.list).clone();
        if list.is_empty() {
            return;
        }
        let queue = self.queue.get_or_init(|| {
            let (tx, rx) = mpsc::channel::<(List, OwnedEvent)>();
            let progress = Arc::clone(&self.progress);
            std::thread::Builder::new()
                .name("closeout-observer".into())
                .spawn(move || {
                    for (list, owned) in rx {
                        let event = owned.event();
                        for (_, f) in list.iter() {
                            call(f, &event);
                        }
                        let mut observed = crate::sync::lock_std(&progress.observed);
                        *observed += 1;
                        progress.changed.notify_all();
                    }
                })
                .ok()
                .map(|_| tx)
        });
        match queue {
            Some(tx) => {
                self.progress.sent.fetch_add(1, Ordering::SeqCst);
                let sent = tx.send((list, OwnedEvent::of(event)));
                if sent.is_err() {
                    // The thread is gone: count the event as observed so flushes do not wait.
                    *crate::sync::lock_std(&self.progress.observed) += 1;
                }
            }
            None => {
                for (_, f) in list.iter() {
                    call(f, event);
                }
            }
        }
    }

    /// Waits until every event sent so far was observed, or until `until` (invariant O2).
    /// With nothing sent, or all of it observed, one load and one lock.
    pub(crate) fn flush(&self, until: Option<Instant>) {
        let target = self.progress.sent.load(Ordering::SeqCst);
        if target == 0 {
            return;
        }
        let mut observed = crate::sync::lock_std(&self.progress.observed);
        while *observed < target {
            observed = match until {
                None => self.progress.changed.wait(observed).unwrap_or_else(|p| p.into_inner()),
                Some(at) => {
                    let left = at.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return;
                    }
                    self.progress.changed.wait_timeout(observed, left).unwrap_or_else(|p| p.into_inner()).0
                }
            };
        }
    }
}

/// Calls the observer; a panic in it is logged and swallowed.
fn call(f: &ObserverFn, event: &Event<'_>) {
    if let Err(payload) = catch_unwind(AssertUnwindSafe(|| f(event))) {
        crate::runner::drop_payload(payload);
        quietly(|| tracing::error!(event = event.name(), "closeout: observer panicked; event dropped"));
    }
}

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

/// Hands the event to the observers, if any (see the module docs). Not while this thread
/// unwinds (see [`quietly`]).
#[inline]
pub(crate) fn notify(observer: &Observer, event: Event<'_>) {
    if !observer.is_empty() && !std::thread::panicking() {
        observer.send(&event);
    }
}

/// An observer added to a [`Registry`](crate::Registry) with
/// [`add_observer`](crate::Registry::add_observer): dropping the handle removes it (events
/// that happen after the drop returns never reach it); [`keep`](ObserverHandle::keep) leaves
/// it for the registry's life.
///
/// ```
/// use closeout::{Event, Registry, Resource};
/// use std::sync::{Arc, Mutex};
///
/// let registry = Registry::new();
/// let seen = Arc::new(Mutex::new(Vec::new()));
/// let s = seen.clone();
/// let handle = registry.add_observer(move |e: &Event<'_>| s.lock().unwrap().push(e.name()));
/// registry.register(Resource::new("a", || ()))?;
/// drop(handle); // removed: the teardown's events go to nobody
/// registry.cleanup_all_blocking();
/// assert_eq!(*seen.lock().unwrap(), ["registered"]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[must_use = "the observer is removed when its handle is dropped; call `keep` to keep it"]
pub struct ObserverHandle {
    observers: Option<std::sync::Weak<Observers>>,
    id: u64,
}

impl ObserverHandle {
    /// Keeps the observer for as long as the registry lives.
    ///
    /// ```
    /// let registry = closeout::Registry::new();
    /// registry.add_observer(|e: &closeout::Event<'_>| println!("{}", e.name())).keep();
    /// ```
    pub fn keep(mut self) {
        self.observers = None;
    }
}

impl std::fmt::Debug for ObserverHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObserverHandle").field("id", &self.id).finish()
    }
}

impl Drop for ObserverHandle {
    fn drop(&mut self) {
        let Some(observers) = self.observers.take().and_then(|w| w.upgrade()) else { return };
        observers.replace(|list| list.iter().filter(|(id, _)| *id != self.id).cloned().collect());
    }
}
