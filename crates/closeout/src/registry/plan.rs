//! [`Plan`]: the order a teardown would follow, computed without running anything, by draining
//! the same [`Schedule`] the engine drains (so the two cannot disagree).

use std::fmt;
use std::time::Duration;

use crate::category::{Category, Priority};
use crate::registry::graph::Graph;
use crate::registry::schedule::Schedule;
use crate::registry::state::State;
use crate::report::SkipReason;

/// The teardown order a [`Registry`](crate::Registry) would follow: phases by effective
/// priority, each a list of parallel groups.
///
/// A group holds resources that may run at the same time; group *n + 1* waits only for the
/// dependents it actually has in earlier groups. (The engine is finer than groups: it starts each
/// resource the moment its own dependents are done; groups are how to read it.)
///
/// # Examples
///
/// ```
/// use closeout::{Priority, Registry, Resource};
/// let registry = Registry::new();
/// registry.register(Resource::new("db", || ()))?;
/// registry.register(Resource::new("cache", || ()).priority(Priority::Low))?;
/// registry.register(Resource::new("api", || ()).priority(Priority::High).depends_on(["db"]))?;
/// let plan = registry.plan();
/// // api (High) goes first, in its own phase; db keeps its Medium phase.
/// assert_eq!(plan.order(), ["api", "db", "cache"]);
/// assert_eq!(plan.phases().len(), 3);
/// // A Low resource that uses a Critical one is pulled forward into the Critical phase.
/// registry.register(Resource::new("audit", || ()).priority(Priority::Critical))?;
/// registry.register(Resource::new("exporter", || ()).priority(Priority::Low).depends_on(["audit"]))?;
/// let plan = registry.plan();
/// assert_eq!(plan.order(), ["exporter", "audit", "api", "db", "cache"]);
/// let exporter = plan.steps().find(|s| s.id == "exporter").unwrap();
/// assert_eq!((exporter.priority, exporter.effective_priority), (Priority::Low, Priority::Critical));
/// assert!(plan.to_string().contains("exporter [other, low → critical]"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct Plan {
    phases: Vec<Phase>,
    /// The exact order of a one-at-a-time teardown. Not the groups flattened: the engine
    /// starts a resource as soon as its own dependents are done, which can put it ahead of
    /// members of an earlier group.
    order: Vec<String>,
    held: Vec<(String, SkipReason)>,
}

/// One priority phase of a [`Plan`].
#[derive(Clone, Debug)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct Phase {
    /// The effective priority of every resource in it.
    pub priority: Priority,
    /// Groups in order; the members of a group may run concurrently.
    pub groups: Vec<Vec<PlanStep>>,
}

/// One resource in a [`Plan`].
#[derive(Clone, Debug)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct PlanStep {
    /// Its id.
    pub id: String,
    /// Its category.
    pub category: Category,
    /// Its own priority.
    pub priority: Priority,
    /// The priority it is torn down at: its phase's. Higher than its own when it uses a
    /// resource of a more urgent phase (a user goes before what it uses, so it is pulled
    /// forward into that phase); the plan's `Display` shows both when they differ
    /// (`low → critical`).
    pub effective_priority: Priority,
    /// Its timeout.
    pub timeout: Option<Duration>,
    /// Whether it is async.
    pub is_async: bool,
    /// Whether it is included only because it depends on a selected resource.
    pub cascaded: bool,
    /// What it waits for: ids of in-plan resources that depend on it.
    pub after: Vec<String>,
}

impl Plan {
    /// Drains a [`Schedule`] one node at a time, exactly as the engine does with
    /// `max_concurrency(1)`: the order is the engine's by construction.
    pub(crate) fn from_graph(st: &State, g: Graph) -> Plan {
        let mut sched = Schedule::new(g);
        let n_nodes = sched.len();
        // Dependents per node, to list what each step waits for.
        let mut after: Vec<Vec<u32>> = vec![Vec::new(); n_nodes];
        for n in 0..n_nodes as u32 {
            for &m in sched.deps_of(n) {
                after[m as usize].push(n);
            }
        }
        // Groups only regroup the order by level: one later than the latest same-phase dependent.
        let mut level = vec![0usize; n_nodes];
        let mut phases: Vec<Phase> = Vec::new();
        let mut order = Vec::with_capacity(n_nodes);
        loop {
            let phase = sched.phase();
            let mut groups: Vec<Vec<PlanStep>> = Vec::new();
            while let Some(n) = sched.pop() {
                let node = sched.node(n);
                let Some(slot) = st.slot(node.sid) else {
                    sched.complete(n);
                    continue;
                };
                let lvl = level[n as usize];
                if groups.len() <= lvl {
                    groups.resize_with(lvl + 1, Vec::new);
                }
                order.push(slot.id.clone());
                groups[lvl].push(PlanStep {
                    id: slot.id.to_string(),
                    category: st.categories[slot.category as usize].clone(),
                    priority: slot.priority(),
                    effective_priority: Priority::from_index(phase),
                    timeout: slot.timeout(),
                    is_async: slot.cleanup.as_ref().is_some_and(|c| c.is_async()),
                    cascaded: node.cascaded,
                    after: after[n as usize]
                        .iter()
                        .filter_map(|&a| st.slot(sched.node(a).sid))
                        .map(|s| s.id.to_string())
                        .collect(),
                });
                for &m in sched.deps_of(n) {
                    if sched.node(m).phase == phase {
                        level[m as usize] = level[m as usize].max(lvl + 1);
                    }
                }
                sched.complete(n);
            }
            if !groups.is_empty() {
                phases.push(Phase { priority: Priority::from_index(phase), groups });
            }
            if !sched.advance() {
                break;
            }
        }
        let held = sched
            .held
            .iter()
            .filter_map(|(sid, why)| st.slot(*sid).map(|s| (s.id.to_string(), why.clone())))
            .collect();
        Plan { phases, order, held }
    }

    /// The phases, most urgent first.
    pub fn phases(&self) -> &[Phase] {
        &self.phases
    }

    /// Every id in the exact order a one-at-a-time teardown (`max_concurrency(1)`) runs them,
    /// if nothing is registered or unregistered meanwhile.
    pub fn order(&self) -> Vec<&str> {
        self.order.iter().map(String::as_str).collect()
    }

    /// Every step, phase by phase, group by group.
    pub fn steps(&self) -> impl Iterator<Item = &PlanStep> {
        self.phases.iter().flat_map(|p| p.groups.iter().flatten())
    }

    /// Selected resources that would be left registered, and why.
    pub fn held(&self) -> &[(String, SkipReason)] {
        &self.held
    }

    /// Number of resources the plan would tear down.
    pub fn len(&self) -> usize {
        self.steps().count()
    }

    /// Whether the plan tears nothing down.
    pub fn is_empty(&self) -> bool {
        self.phases.is_empty()
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "teardown plan: {} resource(s) in {} phase(s)", self.len(), self.phases.len())?;
        for (i, phase) in self.phases.iter().enumerate() {
            writeln!(f, "phase {} ({}):", i + 1, phase.priority)?;
            for (j, group) in phase.groups.iter().enumerate() {
                writeln!(f, "  group {}{}:", j + 1, if group.len() > 1 { " (in parallel)" } else { "" })?;
                for s in group {
                    write!(f, "    {} [{}, {}", s.id, s.category, s.priority)?;
                    if s.effective_priority != s.priority {
                        write!(f, " → {}", s.effective_priority)?;
                    }
                    if let Some(t) = s.timeout {
                        write!(f, ", timeout {}", crate::report::fmt_duration(t))?;
                    }
                    if s.is_async {
                        f.write_str(", async")?;
                    }
                    if s.cascaded {
                        f.write_str(", cascaded")?;
                    }
                    f.write_str("]")?;
                    if !s.after.is_empty() {
                        write!(f, " after {}", s.after.join(", "))?;
                    }
                    writeln!(f)?;
                }
            }
        }
        for (id, why) in &self.held {
            writeln!(f, "held back: {id} ({why})")?;
        }
        Ok(())
    }
}
