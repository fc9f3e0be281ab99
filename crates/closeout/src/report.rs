//! What one teardown did: every resource's outcome, timing and totals.
//!
//! A [`Report`] is returned by every release of a [`Scope`](crate::Scope) and every teardown of a
//! [`Registry`](crate::Registry). It keeps every failure, not just the first;
//! [`Report::into_result`] turns it into one error that carries them all.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::category::{Category, Priority};
use crate::cleanup::BoxError;

/// The error a cleanup returned, shareable so reports can be cloned to every waiter.
#[derive(Clone)]
pub struct CleanupError(Arc<dyn std::error::Error + Send + Sync + 'static>);

impl CleanupError {
    pub(crate) fn new(err: BoxError) -> Self {
        CleanupError(Arc::from(err))
    }

    /// The underlying error, to downcast.
    ///
    /// ```
    /// # use closeout::{Registry, Resource, Status};
    /// let registry = Registry::new();
    /// registry.register(Resource::new("f", || Err::<(), _>(std::io::Error::other("disk full"))))?;
    /// let report = registry.cleanup_all_blocking();
    /// let Status::Failed(err) = report.entries()[0].status() else { unreachable!() };
    /// assert!(err.get_ref().downcast_ref::<std::io::Error>().is_some());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn get_ref(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        &*self.0
    }
}

impl fmt::Debug for CleanupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for CleanupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&*self.0, f)
    }
}

impl std::error::Error for CleanupError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

/// Why a resource was not cleaned in this teardown. It stays registered; a later teardown can
/// retry it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
#[non_exhaustive]
pub enum SkipReason {
    /// The overall deadline passed before it could start.
    Deadline,
    /// `stop_on_error` was set and this resource failed first.
    StoppedAfterError {
        /// The resource whose failure stopped the teardown.
        failed: String,
    },
    /// Something that depends on it was skipped or excluded, so it must outlive that.
    DependentRemains {
        /// The dependent that stays registered.
        dependent: String,
    },
    /// The teardown was cancelled (its future dropped) before this started.
    Cancelled,
    /// The teardown had taken in as many registrations made while it ran as one run takes (a
    /// cleanup that registers again each time it runs would otherwise keep it going forever).
    RunLimit {
        /// How many registrations made during the run it took in.
        limit: usize,
    },
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SkipReason::Deadline => f.write_str("overall deadline passed before it started"),
            SkipReason::StoppedAfterError { failed } => {
                write!(f, "teardown stopped after `{failed}` failed")
            }
            SkipReason::DependentRemains { dependent } => {
                write!(f, "`{dependent}` depends on it and stays registered")
            }
            SkipReason::Cancelled => f.write_str("teardown was cancelled before it started"),
            SkipReason::RunLimit { limit } => {
                write!(
                    f,
                    "the teardown took in {limit} registrations made while it ran, as many as one run takes"
                )
            }
        }
    }
}

/// How one cleanup ended.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Status {
    /// Ran and returned `Ok`.
    Ok,
    /// Ran and returned an error.
    Failed(CleanupError),
    /// Panicked; the panic message.
    Panicked(String),
    /// Did not finish within its timeout (or the overall deadline) and was abandoned.
    TimedOut(Duration),
    /// Never started; still registered.
    Skipped(SkipReason),
}

impl Status {
    /// Whether the cleanup ran and succeeded.
    ///
    /// ```
    /// assert!(closeout::Status::Ok.is_ok());
    /// ```
    pub fn is_ok(&self) -> bool {
        matches!(self, Status::Ok)
    }

    /// A short lower-case label: `ok`, `failed`, `panicked`, `timed out`, `skipped`.
    ///
    /// ```
    /// assert_eq!(closeout::Status::Ok.label(), "ok");
    /// ```
    pub fn label(&self) -> &'static str {
        self.kind().label()
    }

    /// Which kind of outcome this is: the one place a status's label, its counter in
    /// [`Totals`] and its place in displays come from.
    pub(crate) fn kind(&self) -> StatusKind {
        match self {
            Status::Ok => StatusKind::Ok,
            Status::Failed(_) => StatusKind::Failed,
            Status::Panicked(_) => StatusKind::Panicked,
            Status::TimedOut(_) => StatusKind::TimedOut,
            Status::Skipped(_) => StatusKind::Skipped,
        }
    }
}

/// The kinds of [`Status`], once: label and order. Adding a status means a variant here, in
/// [`Status`], and a counter in [`Totals`] (all in this file).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum StatusKind {
    Ok,
    Failed,
    Panicked,
    TimedOut,
    Skipped,
}

impl StatusKind {
    pub(crate) const ALL: [StatusKind; 5] =
        [StatusKind::Ok, StatusKind::Failed, StatusKind::Panicked, StatusKind::TimedOut, StatusKind::Skipped];

    pub(crate) fn label(self) -> &'static str {
        match self {
            StatusKind::Ok => "ok",
            StatusKind::Failed => "failed",
            StatusKind::Panicked => "panicked",
            StatusKind::TimedOut => "timed out",
            StatusKind::Skipped => "skipped",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())?;
        match self {
            Status::Ok => Ok(()),
            Status::Failed(e) => write!(f, ": {e}"),
            Status::Panicked(msg) => write!(f, ": {msg}"),
            Status::TimedOut(after) => write!(f, " after {after:?}"),
            Status::Skipped(reason) => write!(f, ": {reason}"),
        }
    }
}

/// One resource's line in a [`Report`].
#[derive(Clone, Debug)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct ReportEntry {
    pub(crate) id: Cow<'static, str>,
    pub(crate) seq: u64,
    pub(crate) category: Category,
    pub(crate) priority: Priority,
    #[cfg_attr(feature = "serde", serde(flatten, with = "serde_impl::status"))]
    pub(crate) status: Status,
    pub(crate) cascaded: bool,
    #[cfg_attr(feature = "serde", serde(rename = "start_ms"))]
    pub(crate) start: Nanos,
    #[cfg_attr(feature = "serde", serde(rename = "duration_ms"))]
    pub(crate) duration: Nanos,
    /// What the cleanup said it did ([`Detail`](crate::Detail)).
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    /// Boxed twice: one pointer in every entry (8 bytes, not a `String`'s 24), and most
    /// entries have none.
    #[allow(clippy::box_collection)]
    pub(crate) detail: Option<Box<String>>,
}

/// A duration in nanoseconds: half the size of `Duration`, which matters when a report holds
/// an entry per resource. 2^64 ns is 584 years.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Nanos(u64);

impl From<Duration> for Nanos {
    fn from(d: Duration) -> Nanos {
        Nanos(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
    }
}

impl From<Nanos> for Duration {
    fn from(n: Nanos) -> Duration {
        Duration::from_nanos(n.0)
    }
}

#[cfg(feature = "serde")]
impl serde::Serialize for Nanos {
    /// As milliseconds, fractional.
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(self.0 as f64 / 1e6)
    }
}

impl ReportEntry {
    /// The resource's id (for a scope action: its name, or `#n` for its position).
    pub fn id(&self) -> &str {
        &self.id
    }
    /// Its registration order: the n-th resource registered (or action deferred) has `n - 1`.
    pub fn seq(&self) -> u64 {
        self.seq
    }
    /// Its category.
    pub fn category(&self) -> &Category {
        &self.category
    }
    /// Its own priority.
    pub fn priority(&self) -> Priority {
        self.priority
    }
    /// How it ended.
    pub fn status(&self) -> &Status {
        &self.status
    }
    /// Whether it was torn down only because it depends on a selected resource.
    pub fn is_cascaded(&self) -> bool {
        self.cascaded
    }
    /// When it started, from the start of the teardown.
    pub fn start(&self) -> Duration {
        self.start.into()
    }
    /// How long its cleanup ran (zero when skipped).
    pub fn duration(&self) -> Duration {
        self.duration.into()
    }
    /// What its cleanup said it did, if it set a [`Detail`](crate::Detail): "drained 12
    /// connections, 1 forced".
    pub fn detail(&self) -> Option<&str> {
        self.detail.as_deref().map(String::as_str)
    }
}

/// Counts of outcomes, overall or for one category.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct Totals {
    /// Entries in all.
    pub total: usize,
    /// Cleaned successfully.
    pub ok: usize,
    /// Returned an error.
    pub failed: usize,
    /// Panicked.
    pub panicked: usize,
    /// Abandoned at a timeout.
    pub timed_out: usize,
    /// Not started; still registered.
    pub skipped: usize,
}

impl Totals {
    /// The counter of one kind of outcome.
    fn counter(&mut self, kind: StatusKind) -> &mut usize {
        match kind {
            StatusKind::Ok => &mut self.ok,
            StatusKind::Failed => &mut self.failed,
            StatusKind::Panicked => &mut self.panicked,
            StatusKind::TimedOut => &mut self.timed_out,
            StatusKind::Skipped => &mut self.skipped,
        }
    }

    pub(crate) fn add(&mut self, status: &Status) {
        self.total += 1;
        *self.counter(status.kind()) += 1;
    }
}

impl fmt::Display for Totals {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ok", self.ok)?;
        let mut counts = self.clone();
        for kind in &StatusKind::ALL[1..] {
            let n = *counts.counter(*kind);
            if n > 0 {
                write!(f, ", {n} {}", kind.label())?;
            }
        }
        Ok(())
    }
}

/// The outcome of one teardown.
///
/// Entries are in the order the cleanups started (skipped ones last). A report is cheap to clone:
/// concurrent teardown calls that shared one run each receive a copy.
///
/// # Examples
///
/// ```
/// use closeout::{Registry, Resource};
///
/// let registry = Registry::new();
/// registry.register(Resource::new("ok", || ()))?;
/// registry.register(Resource::new("bad", || Err::<(), _>(std::io::Error::other("boom"))))?;
/// let report = registry.cleanup_all_blocking();
/// assert_eq!(report.totals().ok, 1);
/// assert_eq!(report.totals().failed, 1);
/// println!("{report}");
/// let err = report.into_result().unwrap_err();
/// assert_eq!(err.failures().len(), 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct Report {
    pub(crate) entries: Vec<ReportEntry>,
    /// Successful unnamed scope actions: counted, not listed (the scope's hot path).
    pub(crate) unlisted_ok: usize,
    #[cfg_attr(feature = "serde", serde(rename = "duration_ms", with = "serde_impl::millis"))]
    pub(crate) duration: Duration,
    pub(crate) reentrant: bool,
}

impl Report {
    pub(crate) fn reentrant() -> Self {
        Report { reentrant: true, ..Report::default() }
    }

    /// The listed entries, in start order: every registry resource; for a scope, every named
    /// action and every action that did not succeed (see [`unlisted_ok`](Report::unlisted_ok)).
    pub fn entries(&self) -> &[ReportEntry] {
        &self.entries
    }

    /// Unnamed scope actions that succeeded. They are counted in [`len`](Report::len) and
    /// [`totals`](Report::totals) but not listed, so a scope's release stays as cheap as
    /// draining a vector of closures.
    pub fn unlisted_ok(&self) -> usize {
        self.unlisted_ok
    }

    /// The entry for `id`, if the report has one.
    pub fn get(&self, id: &str) -> Option<&ReportEntry> {
        self.entries.iter().find(|e| e.id == id)
    }

    /// How many resources or actions the teardown covered, listed or not.
    pub fn len(&self) -> usize {
        self.entries.len() + self.unlisted_ok
    }

    /// Whether nothing was torn down (or skipped).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Wall time of the whole teardown.
    pub fn duration(&self) -> Duration {
        self.duration
    }

    /// True when this report came from a teardown called from inside a cleanup of the same
    /// registry or scope. Such a call returns at once, empty, instead of deadlocking: the outer
    /// teardown covers everything.
    pub fn is_reentrant(&self) -> bool {
        self.reentrant
    }

    /// Whether every entry is [`Status::Ok`]. Skipped entries count as not successful: their
    /// resources are still held.
    pub fn is_success(&self) -> bool {
        self.entries.iter().all(|e| e.status.is_ok())
    }

    /// Counts over all entries.
    pub fn totals(&self) -> Totals {
        let mut t = Totals { total: self.unlisted_ok, ok: self.unlisted_ok, ..Totals::default() };
        for e in &self.entries {
            t.add(&e.status);
        }
        t
    }

    /// Counts per category, sorted by category.
    pub fn by_category(&self) -> Vec<(Category, Totals)> {
        let mut out: Vec<(Category, Totals)> = Vec::new();
        if self.unlisted_ok > 0 {
            let t = Totals { total: self.unlisted_ok, ok: self.unlisted_ok, ..Totals::default() };
            out.push((Category::SCOPE, t));
        }
        for e in &self.entries {
            match out.iter_mut().find(|(c, _)| *c == e.category) {
                Some((_, t)) => t.add(&e.status),
                None => {
                    let mut t = Totals::default();
                    t.add(&e.status);
                    out.push((e.category.clone(), t));
                }
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// The entries that did not end [`Status::Ok`].
    pub fn failures(&self) -> impl Iterator<Item = &ReportEntry> {
        self.entries.iter().filter(|e| !e.status.is_ok())
    }

    /// `Ok(())` when every entry succeeded, else one error carrying every failure.
    ///
    /// # Errors
    ///
    /// [`TeardownError`] listing each entry that failed, panicked, timed out or was skipped.
    pub fn into_result(self) -> Result<(), TeardownError> {
        if self.is_success() {
            return Ok(());
        }
        let failures = self.entries.into_iter().filter(|e| !e.status.is_ok()).collect();
        Err(TeardownError { failures })
    }
}

/// The column heads of the human report, matched to [`write_entry`]'s widths.
const HEADER: &str = "  status         took      start  resource (category, priority): what happened";

fn write_entry(f: &mut fmt::Formatter<'_>, e: &ReportEntry) -> fmt::Result {
    write!(
        f,
        "  {:<9} {:>9} {:>10}  {} ({}, {}){}",
        e.status.label(),
        fmt_duration(e.duration()),
        format!("+{}", fmt_duration(e.start())),
        DisplayId(e),
        e.category,
        e.priority,
        if e.cascaded { " [cascaded]" } else { "" }
    )?;
    match &e.status {
        Status::Ok => {}
        other => write!(f, ": {other}")?,
    }
    match &e.detail {
        Some(detail) if e.status.is_ok() => write!(f, ": {detail}"),
        Some(detail) => write!(f, " ({detail})"),
        None => Ok(()),
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.reentrant {
            return f.write_str("teardown: re-entrant call inside a cleanup; the outer teardown covers it");
        }
        writeln!(
            f,
            "teardown: {} resource(s) in {}: {}",
            self.entries.len(),
            fmt_duration(self.duration),
            self.totals()
        )?;
        if !self.entries.is_empty() {
            writeln!(f, "{HEADER}")?;
        }
        for e in &self.entries {
            write_entry(f, e)?;
            writeln!(f)?;
        }
        if self.unlisted_ok > 0 {
            writeln!(f, "  ok        ({} unnamed scope action(s))", self.unlisted_ok)?;
        }
        let cats = self.by_category();
        if !cats.is_empty() {
            f.write_str("by category:")?;
            for (i, (c, t)) in cats.iter().enumerate() {
                write!(f, "{} {c} {} ({t})", if i == 0 { "" } else { ";" }, t.total)?;
            }
        }
        Ok(())
    }
}

/// Every failure of one teardown, as one error (from [`Report::into_result`]).
///
/// ```
/// # use closeout::Scope;
/// let scope = Scope::new();
/// scope.defer(|| Err::<(), _>(std::io::Error::other("first"))).ok();
/// scope.defer(|| Err::<(), _>(std::io::Error::other("second"))).ok();
/// let err = scope.close().into_result().unwrap_err();
/// assert_eq!(err.failures().len(), 2);
/// assert!(err.to_string().contains("first") && err.to_string().contains("second"));
/// ```
#[derive(Clone, Debug)]
pub struct TeardownError {
    failures: Vec<ReportEntry>,
}

impl TeardownError {
    /// The entries that did not succeed.
    pub fn failures(&self) -> &[ReportEntry] {
        &self.failures
    }
}

impl fmt::Display for TeardownError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} cleanup(s) did not succeed:", self.failures.len())?;
        for e in &self.failures {
            write!(f, " [{}: {}]", DisplayId(e), e.status)?;
        }
        Ok(())
    }
}

impl std::error::Error for TeardownError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.failures.iter().find_map(|e| match &e.status {
            Status::Failed(err) => Some(err as &(dyn std::error::Error + 'static)),
            _ => None,
        })
    }
}

/// An entry's id, or `#n` (its deferral order, from 1) for an unnamed scope action.
struct DisplayId<'a>(&'a ReportEntry);

impl fmt::Display for DisplayId<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.id.is_empty() { write!(f, "#{}", self.0.seq + 1) } else { f.write_str(&self.0.id) }
    }
}

/// Durations in reports: `1.2ms`, `3.40s`, `250µs`.
pub(crate) fn fmt_duration(d: Duration) -> String {
    let micros = d.as_micros();
    if micros < 1_000 {
        format!("{micros}µs")
    } else if micros < 1_000_000 {
        format!("{:.1}ms", d.as_secs_f64() * 1e3)
    } else {
        format!("{:.2}s", d.as_secs_f64())
    }
}

#[cfg(feature = "serde")]
mod serde_impl {
    pub(super) mod millis {
        use std::time::Duration;
        pub(crate) fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
            s.serialize_f64(d.as_secs_f64() * 1e3)
        }
    }

    pub(super) mod status {
        use crate::report::Status;
        use serde::ser::SerializeMap;

        pub(crate) fn serialize<S: serde::Serializer>(st: &Status, s: S) -> Result<S::Ok, S::Error> {
            let mut m = s.serialize_map(None)?;
            m.serialize_entry("status", st.label())?;
            match st {
                Status::Ok => {}
                Status::Failed(e) => m.serialize_entry("error", &e.to_string())?,
                Status::Panicked(msg) => m.serialize_entry("error", msg)?,
                Status::TimedOut(d) => m.serialize_entry("timeout_ms", &(d.as_secs_f64() * 1e3))?,
                Status::Skipped(r) => m.serialize_entry("error", &r.to_string())?,
            }
            m.end()
        }
    }
}

#[cfg(test)]
mod status_table_tests {
    use super::*;

    #[test]
    fn every_status_kind_has_one_label_and_one_counter() {
        let samples = [
            Status::Ok,
            Status::Failed(CleanupError::new("e".into())),
            Status::Panicked("p".into()),
            Status::TimedOut(Duration::from_secs(1)),
            Status::Skipped(SkipReason::Deadline),
        ];
        assert_eq!(samples.len(), StatusKind::ALL.len());
        let mut labels = Vec::new();
        for (status, kind) in samples.iter().zip(StatusKind::ALL) {
            assert_eq!(status.kind(), kind);
            assert!(status.to_string().starts_with(kind.label()), "{status}");
            let mut t = Totals::default();
            t.add(status);
            assert_eq!(*t.counter(kind), 1, "{kind:?} counts into its own counter");
            assert_eq!(t.total, 1);
            labels.push(kind.label());
        }
        labels.sort();
        labels.dedup();
        assert_eq!(labels.len(), StatusKind::ALL.len(), "labels are distinct");
    }
}
