//! [`RunShared`]: one teardown run as the calls that join it see it (single flight): what it
//! covers, and the report it hands to every joiner (invariants T1 and T6, in `teardown`).
//!
//! # Lock order
//!
//! `report` is only locked with the registry's state lock released.

use crate::registry::select::{Selection, TeardownOptions};
use crate::report::Report;
use crate::sync::atomic::AtomicUsize;
use crate::sync::{Arc, Condvar, Mutex};

/// One run, shared with the calls that join it.
pub(crate) struct RunShared {
    selection: Selection,
    opts: TeardownOptions,
    /// Calls that joined and want this run's report. Counted under the state lock, read by
    /// the run's end under the same lock, so the report is copied only when someone joined.
    pub(crate) joiners: AtomicUsize,
    report: Mutex<Option<Report>>,
    cv: Condvar,
    notify: tokio::sync::Notify,
}

impl RunShared {
    pub(crate) fn new(selection: Selection, opts: TeardownOptions) -> Arc<RunShared> {
        Arc::new(RunShared {
            selection,
            opts,
            joiners: AtomicUsize::new(0),
            report: Mutex::new(None),
            cv: Condvar::new(),
            notify: tokio::sync::Notify::new(),
        })
    }

    /// Whether this run also does what a call for `sel` with `opts` asks (invariant T1).
    pub(crate) fn covers(&self, sel: &Selection, opts: &TeardownOptions) -> bool {
        (self.selection == *sel && self.opts == *opts)
            || (self.selection == Selection::All && self.opts.is_unfiltered())
    }

    pub(crate) fn publish(&self, report: Report) {
        *crate::sync::lock(&self.report) = Some(report);
        self.cv.notify_all();
        self.notify.notify_waiters();
    }

    pub(crate) fn get(&self) -> Option<Report> {
        crate::sync::lock(&self.report).clone()
    }

    pub(crate) async fn wait(&self) -> Report {
        loop {
            let notified = self.notify.notified();
            let mut notified = std::pin::pin!(notified);
            notified.as_mut().enable();
            if let Some(r) = self.get() {
                return r;
            }
            notified.await;
        }
    }

    pub(crate) fn wait_blocking(&self) -> Report {
        let mut guard = crate::sync::lock(&self.report);
        loop {
            if let Some(r) = guard.as_ref() {
                return r.clone();
            }
            guard = self.cv.wait(guard).unwrap_or_else(|p| p.into_inner());
        }
    }
}
