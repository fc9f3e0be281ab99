//! [`LeakReport`]: live tracked objects grouped by kind and by where they were created.

use std::fmt;
use std::time::Duration;

use crate::leak::mode::Mode;
use crate::leak::tracker::{LeakRecord, Tracker};

/// Live tracked objects, grouped.
///
/// A thousand leaked connections from one call site are one finding, not a thousand: records
/// with the same kind and the same creation backtrace form one group, with a count. Groups are
/// listed oldest first, since the oldest live objects are the likeliest leaks.
///
/// ```
/// use closeout::leak::{Mode, Tracker};
/// let tracker = Tracker::new(Mode::Full);
/// let _a = tracker.token_named("socket", "upstream");
/// let _b = tracker.token("socket");
/// let report = tracker.report();
/// assert_eq!(report.total(), 2);
/// assert_eq!(report.groups()[0].count(), 2);
/// assert!(report.to_string().contains("upstream"));
/// ```
#[derive(Clone, Debug, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct LeakReport {
    mode: Option<Mode>,
    total: usize,
    groups: Vec<LeakGroup>,
}

/// Leaked objects of one kind created at one place.
#[derive(Clone, Debug)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct LeakGroup {
    kind: &'static str,
    /// The creation backtrace, in backtrace mode.
    backtrace: Option<String>,
    objects: Vec<LeakedObject>,
}

/// One object of a [`LeakGroup`].
#[derive(Clone, Debug)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct LeakedObject {
    name: String,
    age_ns: u64,
    thread: String,
}

impl LeakedObject {
    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// How long it has been alive.
    pub fn age(&self) -> Duration {
        Duration::from_nanos(self.age_ns)
    }

    /// The thread that created it.
    pub fn thread(&self) -> &str {
        &self.thread
    }
}

impl LeakGroup {
    /// The objects' kind.
    pub fn kind(&self) -> &'static str {
        self.kind
    }

    /// Where they were created, in backtrace mode.
    pub fn backtrace(&self) -> Option<&str> {
        self.backtrace.as_deref()
    }

    /// How many objects.
    pub fn count(&self) -> usize {
        self.objects.len()
    }

    /// The objects, oldest first.
    pub fn objects(&self) -> &[LeakedObject] {
        &self.objects
    }

    /// The age of the oldest.
    pub fn oldest(&self) -> Duration {
        self.objects.first().map_or(Duration::ZERO, LeakedObject::age)
    }
}

impl LeakReport {
    /// Groups `records` (in any order).
    pub(crate) fn new(mut records: Vec<LeakRecord>, mode: Mode) -> LeakReport {
        records.sort_by_key(|r| std::cmp::Reverse(r.age()));
        let total = records.len();
        let mut groups: Vec<LeakGroup> = Vec::new();
        // Keyed by kind and backtrace text.
        let mut index: std::collections::HashMap<(&'static str, Option<String>), usize> = Default::default();
        for r in records {
            let bt = r.backtrace().map(|b| b.to_string());
            let object = LeakedObject {
                name: r.name().into_owned(),
                age_ns: u64::try_from(r.age().as_nanos()).unwrap_or(u64::MAX),
                thread: r.thread(),
            };
            match index.get(&(r.kind(), bt.clone())) {
                Some(&g) => groups[g].objects.push(object),
                None => {
                    index.insert((r.kind(), bt.clone()), groups.len());
                    groups.push(LeakGroup { kind: r.kind(), backtrace: bt, objects: vec![object] });
                }
            }
        }
        LeakReport { mode: Some(mode), total, groups }
    }

    /// How many objects in all.
    pub fn total(&self) -> usize {
        self.total
    }

    /// Whether nothing leaked.
    pub fn is_empty(&self) -> bool {
        self.total == 0
    }

    /// The groups, oldest first.
    pub fn groups(&self) -> &[LeakGroup] {
        &self.groups
    }
}

fn age(d: Duration) -> String {
    if d >= Duration::from_secs(1) {
        format!("{:.1}s", d.as_secs_f64())
    } else {
        format!("{}ms", d.as_millis())
    }
}

impl fmt::Display for LeakReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.mode == Some(Mode::Off) {
            return f.write_str(
                "leak tracking is off: set CLOSEOUT_LEAK=full (or sampled:N, backtrace) to see leaks",
            );
        }
        if self.total == 0 {
            return f.write_str("no leaked objects");
        }
        writeln!(f, "{} leaked object(s) in {} group(s):", self.total, self.groups.len())?;
        for g in &self.groups {
            writeln!(f, "- {} ×{}, oldest {}", g.kind, g.count(), age(g.oldest()))?;
            for o in g.objects.iter().take(10) {
                writeln!(f, "    {} (age {}, thread {})", o.name, age(o.age()), o.thread)?;
            }
            if g.count() > 10 {
                writeln!(f, "    … and {} more", g.count() - 10)?;
            }
            if let Some(bt) = &g.backtrace {
                writeln!(f, "  created at:")?;
                for line in bt.lines() {
                    writeln!(f, "    {line}")?;
                }
            }
        }
        if !matches!(self.mode, Some(Mode::Backtrace)) {
            write!(f, "(set CLOSEOUT_LEAK=backtrace to see where each one was created)")?;
        }
        Ok(())
    }
}

impl Tracker {
    /// The live objects as a [`LeakReport`].
    ///
    /// ```
    /// use closeout::leak::{Mode, Tracker};
    /// let tracker = Tracker::new(Mode::Full);
    /// let _conn = tracker.token("connection");
    /// assert_eq!(tracker.report().total(), 1);
    /// ```
    pub fn report(&self) -> LeakReport {
        LeakReport::new(self.live(), self.mode())
    }
}
