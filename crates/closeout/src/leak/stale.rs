//! How the core types report into the leak tracker: a registry's stale resources (watched with
//! [`Registry::watch_stale`](crate::Registry::watch_stale), read through [`StaleSource`]), the
//! resources of a registry dropped without a teardown, and a scope dropped with async actions it
//! had to block on. This side knows nothing of the registry's internals: the registry implements
//! [`StaleSource`] and hands over what it still holds.

use std::backtrace::Backtrace;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use crate::leak::tracker::{LeakRecord, Tracker};

/// The kind of a registry's resource reported as a leak.
pub(crate) const REGISTRY_RESOURCE: &str = "closeout::Registry resource";
/// The kind of a stale resource of a watched registry.
pub(crate) const STALE_RESOURCE: &str = "closeout::Registry resource (stale)";
/// The kind of a scope dropped with async actions.
pub(crate) const SCOPE_ASYNC_DROP: &str = "closeout::Scope dropped with async actions";

/// A resource of a watched registry registered longer ago than its threshold.
pub(crate) struct StaleResource {
    pub(crate) registry: usize,
    pub(crate) seq: u64,
    pub(crate) id: String,
    pub(crate) age: Duration,
    pub(crate) backtrace: Option<Arc<Backtrace>>,
}

/// Something whose long-lived resources the leak tracker reports (a registry).
pub(crate) trait StaleSource: Send + Sync {
    /// Resources registered at least `older_than` ago.
    fn stale_resources(&self, older_than: Duration) -> Vec<StaleResource>;
}

type Watched = (Weak<dyn StaleSource>, Duration);

static WATCHED: Mutex<Vec<Watched>> = Mutex::new(Vec::new());

/// Watches `source` (held weakly) for resources older than `older_than`.
pub(crate) fn watch(source: Weak<dyn StaleSource>, older_than: Duration) {
    crate::leak::tracker::set_global_source(stale_records);
    let mut watched = crate::sync::lock_std(&WATCHED);
    watched.retain(|(w, _)| w.strong_count() > 0);
    watched.push((source, older_than));
}

/// The stale resources of every watched registry, as records.
pub(crate) fn stale_records() -> Vec<LeakRecord> {
    let watched: Vec<Watched> = crate::sync::lock_std(&WATCHED).clone();
    let mut out = Vec::new();
    for (weak, older_than) in watched {
        let Some(source) = weak.upgrade() else { continue };
        let stale = source.stale_resources(older_than);
        if !stale.is_empty() {
            tracing::warn!(
                count = stale.len(),
                ?older_than,
                "closeout: registry resources registered longer than the threshold"
            );
        }
        for r in stale {
            // Bit 63 keeps these ids apart from the tracker's own.
            let id = (1 << 63) | ((r.registry as u64 & 0xffff) << 40) | (r.seq & ((1 << 40) - 1));
            out.push(LeakRecord::synthetic(id, STALE_RESOURCE, r.id, r.age, r.backtrace));
        }
    }
    out
}

/// In backtrace mode, records where a resource is being registered (before the registry's
/// lock is taken: capturing takes microseconds).
#[inline]
pub(crate) fn note_registration(resource: &mut crate::Resource) {
    if Tracker::current().wants_backtraces() {
        resource.extra_mut().backtrace = Some(Arc::new(Backtrace::force_capture()));
    }
}

/// A registry is being dropped: what is still registered (id, age, registration backtrace)
/// will never be cleaned up.
pub(crate) fn registry_dropped(leaked: impl Iterator<Item = (String, Duration, Option<Arc<Backtrace>>)>) {
    let mut leaked = leaked.peekable();
    if leaked.peek().is_none() {
        return;
    }
    let tracker = Tracker::current();
    for (id, age, backtrace) in leaked {
        tracker.record_leaked(REGISTRY_RESOURCE, id, age, backtrace);
    }
}

/// A scope is being dropped with `pending` actions, some async, that `Drop` has to block on.
pub(crate) fn scope_dropped_with_async(pending: usize) {
    let tracker = Tracker::current();
    let backtrace = tracker.wants_backtraces().then(|| Arc::new(Backtrace::force_capture()));
    tracker.record_leaked(
        SCOPE_ASYNC_DROP,
        format!("{pending} action(s) run by Drop instead of close_async (backtrace: where it was dropped)"),
        Duration::ZERO,
        backtrace,
    );
}
