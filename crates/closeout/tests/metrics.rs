//! Metrics through the `metrics` facade, read back with `metrics-util`'s recording backend
//! (a real recorder, installed as the process's global one): counters by category for every
//! outcome, a duration per cleanup and per teardown, and the live gauges.
#![cfg(feature = "metrics")]

use std::time::Duration;

use closeout::{Category, Registry, Resource, Selection, TeardownOptions};
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use metrics_util::{CompositeKey, MetricKind};

/// One metric: its kind, name, labels and value.
type Metric = (MetricKind, String, Vec<(String, String)>, DebugValue);

/// Every metric now.
fn read(snapshotter: &Snapshotter) -> Vec<Metric> {
    snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, _, _, value): (CompositeKey, _, _, DebugValue)| {
            let (kind, key) = key.into_parts();
            let labels = key.labels().map(|l| (l.key().to_owned(), l.value().to_owned())).collect();
            (kind, key.name().to_owned(), labels, value)
        })
        .collect()
}

fn counter(all: &[Metric], name: &str, category: &str) -> u64 {
    all.iter()
        .filter(|(k, n, l, _)| *k == MetricKind::Counter && n == name && l.iter().any(|(_, v)| v == category))
        .map(|(_, _, _, v)| match v {
            DebugValue::Counter(c) => *c,
            _ => 0,
        })
        .sum()
}

fn gauge(all: &[Metric], name: &str) -> Option<f64> {
    all.iter().find(|(k, n, _, _)| *k == MetricKind::Gauge && n == name).and_then(|(_, _, _, v)| match v {
        DebugValue::Gauge(g) => Some(g.into_inner()),
        _ => None,
    })
}

fn histogram_len(all: &[Metric], name: &str) -> usize {
    all.iter()
        .filter(|(k, n, _, _)| *k == MetricKind::Histogram && n == name)
        .map(|(_, _, _, v)| match v {
            DebugValue::Histogram(h) => h.len(),
            _ => 0,
        })
        .sum()
}

#[test]
fn an_observed_registry_reports_counters_durations_and_gauges() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder.install().expect("the only recorder of this test binary");

    let registry = Registry::new();
    let handle = closeout::metrics::observe(&registry);
    registry.register(Resource::new("db", || ()).category(Category::Database)).unwrap();
    registry
        .register(
            Resource::new("bad", || Err::<(), _>(std::io::Error::other("x"))).category(Category::Database),
        )
        .unwrap();
    registry
        .register(
            Resource::new("slow", || std::thread::sleep(Duration::from_millis(300)))
                .category(Category::Network)
                .timeout(Duration::from_millis(10)),
        )
        .unwrap();
    registry.register(Resource::new("pool", || ()).category(Category::Database)).unwrap();
    registry.register(Resource::new("user", || ()).category(Category::File).depends_on(["pool"])).unwrap();
    registry.register(Resource::new("gone", || ()).category(Category::File)).unwrap();
    registry.unregister("gone").unwrap();
    // The file resources are excluded, so "pool", which "user" uses, is skipped: both stay.
    let report =
        registry.teardown_blocking(Selection::All, TeardownOptions::new().exclude_category(Category::File));
    assert_eq!(report.len(), 4, "{report}");

    let all = read(&snapshotter);
    assert_eq!(counter(&all, "closeout_resources_registered_total", "database"), 3);
    assert_eq!(counter(&all, "closeout_resources_registered_total", "network"), 1);
    assert_eq!(counter(&all, "closeout_resources_registered_total", "file"), 2);
    assert_eq!(counter(&all, "closeout_resources_cleaned_total", "database"), 1);
    assert_eq!(counter(&all, "closeout_resources_failed_total", "database"), 1);
    assert_eq!(counter(&all, "closeout_resources_timed_out_total", "network"), 1);
    assert_eq!(counter(&all, "closeout_resources_skipped_total", "database"), 1);
    assert_eq!(histogram_len(&all, "closeout_cleanup_duration_seconds"), 3);
    assert_eq!(histogram_len(&all, "closeout_teardown_duration_seconds"), 1);
    // 6 registered, 1 unregistered, 3 ran: "pool" and "user" are still live.
    assert_eq!(gauge(&all, "closeout_resources_live"), Some(2.0));
    assert!(gauge(&all, "closeout_leaks_live").is_some());

    // Once the handle is dropped, nothing more is recorded.
    drop(handle);
    registry.register(Resource::new("after", || ()).category(Category::Database)).unwrap();
    registry.cleanup_all_blocking();
    // A snapshot drains the counters: nothing was counted since the last one.
    let all = read(&snapshotter);
    assert_eq!(counter(&all, "closeout_resources_registered_total", "database"), 0);
    assert_eq!(counter(&all, "closeout_resources_cleaned_total", "database"), 0);
}
