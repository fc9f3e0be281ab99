//! Counts over a [`Registry`](crate::Registry) and descriptions of single resources.

use std::time::Duration;

use crate::category::{Category, Priority};
use crate::registry::state::{Slot, State};
use crate::report::Totals;

/// Live counts by category and priority, and lifetime totals.
///
/// ```
/// use closeout::{Priority, Registry, Resource};
/// let registry = Registry::new();
/// registry.register(Resource::new("a", || ()).priority(Priority::High))?;
/// registry.register(Resource::new("b", || Err::<(), _>(std::io::Error::other("x"))))?;
/// registry.cleanup_all_blocking();
/// let stats = registry.stats();
/// assert_eq!((stats.registered, stats.total_registered), (0, 2));
/// assert_eq!((stats.ran.ok, stats.ran.failed), (1, 1)); // the same words as a report's totals
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct Stats {
    /// Registered now (including any being torn down).
    pub registered: usize,
    /// Registered now, per category (categories with none are left out).
    pub categories: Vec<(Category, usize)>,
    /// Registered now, per priority, indexed by `Priority as usize`.
    pub priorities: [usize; 4],
    /// Ever registered.
    pub total_registered: u64,
    /// Every cleanup run over the registry's life, by how it ended: the same [`Totals`] (and
    /// the same words) as a report's, summed over every teardown.
    pub ran: Totals,
}

impl Stats {
    pub(crate) fn of(st: &State) -> Stats {
        let categories = st
            .categories
            .iter()
            .zip(&st.counters.by_category)
            .filter(|(_, n)| **n > 0)
            .map(|(c, n)| (c.clone(), *n))
            .collect();
        Stats {
            registered: st.len,
            categories,
            priorities: st.counters.by_priority,
            total_registered: st.counters.total_registered,
            ran: st.counters.ran.clone(),
        }
    }

    /// Registered now in `category`.
    pub fn by_category(&self, category: &Category) -> usize {
        self.categories.iter().find(|(c, _)| c == category).map_or(0, |(_, n)| *n)
    }

    /// Registered now with `priority`.
    pub fn by_priority(&self, priority: Priority) -> usize {
        self.priorities[priority as usize]
    }
}

/// How long a registry's resources have been registered: the seeds' "average age, oldest,
/// how many are stale" ([`Registry::ages`](crate::Registry::ages)). One pass over the
/// registry, under its lock: for monitoring, not for a hot path.
///
/// ```
/// use closeout::{Registry, Resource};
/// use std::time::Duration;
/// let registry = Registry::new();
/// registry.register(Resource::new("old", || ()))?;
/// std::thread::sleep(Duration::from_millis(20));
/// registry.register(Resource::new("new", || ()))?;
/// let ages = registry.ages(Duration::from_millis(10));
/// assert_eq!((ages.count, ages.stale), (2, 1));
/// assert_eq!(ages.oldest.as_ref().unwrap().0, "old");
/// assert!(ages.average <= ages.oldest.unwrap().1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct Ages {
    /// Resources registered now (being torn down included).
    pub count: usize,
    /// Their mean age (zero when there are none).
    pub average: Duration,
    /// The oldest: its id and age.
    pub oldest: Option<(String, Duration)>,
    /// How many are at least the threshold old.
    pub stale: usize,
    /// The threshold `stale` was counted with.
    pub stale_after: Duration,
}

impl Ages {
    pub(crate) fn of(st: &State, stale_after: Duration) -> Ages {
        let mut ages = Ages { stale_after, ..Ages::default() };
        let mut total: u128 = 0;
        let mut oldest: Option<(&Slot, Duration)> = None;
        for slot in st.slots.iter().filter(|s| s.state != crate::registry::state::SlotState::Vacant) {
            let age = st.age(slot);
            ages.count += 1;
            total += age.as_nanos();
            ages.stale += usize::from(age >= stale_after);
            if oldest.is_none_or(|(_, a)| age > a) {
                oldest = Some((slot, age));
            }
        }
        if ages.count > 0 {
            let mean = total / ages.count as u128;
            ages.average = Duration::from_nanos(u64::try_from(mean).unwrap_or(u64::MAX));
        }
        ages.oldest = oldest.map(|(s, a)| (s.id.to_string(), a));
        ages
    }
}

/// A description of one registered resource.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct ResourceInfo {
    /// Its id.
    pub id: String,
    /// Its category.
    pub category: Category,
    /// Its own priority.
    pub priority: Priority,
    /// Its tags.
    pub tags: Vec<String>,
    /// Its description.
    pub description: Option<String>,
    /// Its metadata.
    pub metadata: Vec<(String, String)>,
    /// Its timeout (its own or the registry's default).
    pub timeout: Option<Duration>,
    /// Ids it depends on.
    pub depends_on: Vec<String>,
    /// How many resources depend on it.
    pub dependents: usize,
    /// Time since registration.
    pub age: Duration,
    /// Whether its cleanup is being run now.
    pub running: bool,
}

impl ResourceInfo {
    pub(crate) fn of(st: &State, slot: &Slot) -> ResourceInfo {
        let extra = slot.extra.as_deref();
        ResourceInfo {
            id: slot.id.to_string(),
            category: st.categories[slot.category as usize].clone(),
            priority: slot.priority(),
            tags: slot.tags().to_vec(),
            description: extra.and_then(|e| e.description.clone()),
            metadata: extra.map_or_else(Vec::new, |e| e.metadata.clone()),
            timeout: slot.timeout(),
            depends_on: slot.deps().iter().filter_map(|&d| st.slot(d)).map(|s| s.id.to_string()).collect(),
            dependents: slot.dependents() as usize,
            age: st.age(slot),
            running: slot.state == crate::registry::state::SlotState::Running,
        }
    }
}
