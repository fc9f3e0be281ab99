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
