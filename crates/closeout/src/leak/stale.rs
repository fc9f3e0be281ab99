//! How the core types report into the leak tracker: a registry's stale resources (watched with
//! [`watch_stale`]), the resources of a registry dropped without a teardown, and a scope
//! dropped with async actions it had to block on.

use std::backtrace::Backtrace;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use crate::Registry;
use crate::leak::tracker::{LeakRecord, Tracker};
use crate::registry::state::{SlotState, State};

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

type Watched = (Weak<crate::registry::Inner>, Duration);

static WATCHED: Mutex<Vec<Watched>> = Mutex::new(Vec::new());

/// Reports `registry`'s resources registered longer ago than `older_than` as leaks of the
/// global tracker (kind `closeout::Registry resource (stale)`), for as long as the registry
/// lives. Watching holds the registry weakly.
///
/// ```
/// use closeout::{Registry, Resource, leak};
/// use std::time::Duration;
/// let registry = Registry::new();
/// registry.register(Resource::new("cache-entry", || ()))?;
/// leak::watch_stale(&registry, Duration::ZERO);
/// assert!(leak::live().iter().any(|r| r.name() == "cache-entry"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn watch_stale(registry: &Registry, older_than: Duration) {
    let mut watched = WATCHED.lock().unwrap_or_else(|p| p.into_inner());
    watched.retain(|(w, _)| w.strong_count() > 0);
    watched.push((registry.downgrade(), older_than));
}

/// The stale resources of every watched registry, as records.
pub(crate) fn stale_records() -> Vec<LeakRecord> {
    let watched: Vec<Watched> = WATCHED.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let mut out = Vec::new();
    for (weak, older_than) in watched {
        let Some(registry) = Registry::upgrade(&weak) else { continue };
        let stale = registry.stale_for_leaks(older_than);
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
pub(crate) fn note_registration(mut resource: crate::Resource) -> crate::Resource {
    if Tracker::global().wants_backtraces() {
        resource.extra_mut().backtrace = Some(Arc::new(Backtrace::force_capture()));
    }
    resource
}

/// A registry is being dropped: what is still registered will never be cleaned up.
pub(crate) fn registry_dropped(st: &State) {
    if st.len == 0 {
        return;
    }
    let tracker = Tracker::global();
    for slot in st.slots.iter().filter(|s| s.state == SlotState::Registered) {
        let backtrace = slot.extra.as_ref().and_then(|e| e.backtrace.clone());
        tracker.record_leaked(REGISTRY_RESOURCE, slot.id.clone(), st.age(slot), backtrace);
    }
}

/// A scope is being dropped with `pending` actions, some async, that `Drop` has to block on.
pub(crate) fn scope_dropped_with_async(pending: usize) {
    let tracker = Tracker::global();
    let backtrace = tracker.wants_backtraces().then(|| Arc::new(Backtrace::force_capture()));
    tracker.record_leaked(
        SCOPE_ASYNC_DROP,
        format!("{pending} action(s) run by Drop instead of close_async (backtrace: where it was dropped)"),
        Duration::ZERO,
        backtrace,
    );
}
