//! What a scope's release produced, collected into a [`Report`]: the one piece `Scope` and
//! `LocalScope` share (the registry builds its entries in its engine).

use std::borrow::Cow;
use std::time::Instant;

use crate::category::{Category, Priority};
use crate::report::{Report, ReportEntry, Status};

/// Collects a scope's outcome (a [`Scope`](crate::Scope)'s or a
/// [`LocalScope`](crate::LocalScope)'s). Named actions and failures get entries; successful unnamed
/// actions are only counted, and only named actions are timed: the hot path reads no clock.
pub(crate) struct Outcomes {
    start: Instant,
    entries: Vec<ReportEntry>,
    unlisted_ok: usize,
}

impl Outcomes {
    pub(crate) fn new() -> Outcomes {
        Outcomes { start: Instant::now(), entries: Vec::new(), unlisted_ok: 0 }
    }

    /// When a named action starts; unnamed ones are not timed.
    pub(crate) fn clock(&self, name: &str) -> Option<Instant> {
        (!name.is_empty()).then(Instant::now)
    }

    #[inline]
    pub(crate) fn record(&mut self, name: Cow<'static, str>, seq: u64, status: Status, at: Option<Instant>) {
        if at.is_none() && status.is_ok() {
            self.unlisted_ok += 1;
        } else {
            self.list(name, seq, status, at);
        }
    }

    /// Counts `n` unnamed actions that succeeded.
    #[inline]
    pub(crate) fn count_ok(&mut self, n: usize) {
        self.unlisted_ok += n;
    }

    #[cold]
    fn list(&mut self, name: Cow<'static, str>, seq: u64, status: Status, at: Option<Instant>) {
        if !status.is_ok() {
            crate::observer::quietly(|| {
                tracing::warn!(action = %name, seq, %status, "closeout: scope action did not succeed");
            });
        }
        let now = Instant::now();
        // An unnamed failure was not timed: it carries the offset at which it ended.
        let at = at.unwrap_or(now);
        self.entries.push(ReportEntry {
            id: name,
            seq,
            category: Category::SCOPE,
            priority: Priority::Medium,
            status,
            cascaded: false,
            start: (at - self.start).into(),
            duration: (now - at).into(),
            detail: None,
        });
    }

    pub(crate) fn into_report(self) -> Report {
        Report {
            entries: self.entries,
            unlisted_ok: self.unlisted_ok,
            duration: self.start.elapsed(),
            reentrant: false,
        }
    }
}
