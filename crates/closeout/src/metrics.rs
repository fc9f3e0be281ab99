//! Metrics through the [`metrics`](https://docs.rs/metrics) facade (feature `metrics`): any
//! exporter (Prometheus, StatsD, OpenTelemetry…) installed as the `metrics` recorder gets
//! them. A registry reports once it is [observed](observe); the observer runs on the
//! registry's observer thread, so recording never slows a registration or a cleanup.
//!
//! | name | kind | labels | what |
//! |---|---|---|---|
//! | `closeout_resources_registered_total` | counter | `category` | resources registered |
//! | `closeout_resources_cleaned_total` | counter | `category` | cleanups that succeeded |
//! | `closeout_resources_failed_total` | counter | `category` | cleanups that failed or panicked |
//! | `closeout_resources_timed_out_total` | counter | `category` | cleanups abandoned at a timeout |
//! | `closeout_resources_skipped_total` | counter | `category` | resources a teardown skipped (still registered) |
//! | `closeout_cleanup_duration_seconds` | histogram | `category` | how long each cleanup ran |
//! | `closeout_teardown_duration_seconds` | histogram | | how long each teardown took |
//! | `closeout_resources_live` | gauge | | resources registered now, over every observed registry |
//! | `closeout_leaks_live` | gauge | | objects live in the global leak tracker, at each teardown's end |
//!
//! ```
//! use closeout::{Registry, Resource};
//! let registry = Registry::new();
//! closeout::metrics::observe(&registry).keep(); // for the registry's life
//! registry.register(Resource::new("db", || ()))?;
//! registry.cleanup_all_blocking(); // with a recorder installed: registered 1, cleaned 1, …
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use crate::observer::{Event, ObserverHandle};
use crate::registry::Registry;
use crate::report::Status;

/// Starts reporting `registry`'s metrics, until the handle is dropped (or for the registry's
/// life, with [`ObserverHandle::keep`]).
pub fn observe(registry: &Registry) -> ObserverHandle {
    registry.add_observer(record)
}

/// Records one event (the observer [`observe`] adds).
fn record(event: &Event<'_>) {
    match event {
        Event::Registered { category, .. } => {
            metrics::counter!("closeout_resources_registered_total", "category" => category.to_string())
                .increment(1);
            metrics::gauge!("closeout_resources_live").increment(1.0);
        }
        Event::Unregistered { .. } => metrics::gauge!("closeout_resources_live").decrement(1.0),
        // Counted from the report at the end, where each entry has its category.
        Event::TeardownStarted { .. } | Event::Cleaned { .. } | Event::Failed { .. } => {}
        Event::TeardownCompleted { report } => {
            let mut ran = 0.0;
            for entry in report.entries() {
                let category = entry.category().to_string();
                let counter = match entry.status() {
                    Status::Ok => "closeout_resources_cleaned_total",
                    Status::Failed(_) | Status::Panicked(_) => "closeout_resources_failed_total",
                    Status::TimedOut(_) => "closeout_resources_timed_out_total",
                    Status::Skipped(_) => "closeout_resources_skipped_total",
                };
                metrics::counter!(counter, "category" => category.clone()).increment(1);
                if !matches!(entry.status(), Status::Skipped(_)) {
                    ran += 1.0;
                    metrics::histogram!("closeout_cleanup_duration_seconds", "category" => category)
                        .record(entry.duration().as_secs_f64());
                }
            }
            // Scope-like unnamed entries do not occur in a registry's report.
            metrics::gauge!("closeout_resources_live").decrement(ran);
            metrics::histogram!("closeout_teardown_duration_seconds").record(report.duration().as_secs_f64());
            #[cfg(not(loom))]
            metrics::gauge!("closeout_leaks_live").set(crate::leak::Tracker::global().len() as f64);
        }
    }
}
