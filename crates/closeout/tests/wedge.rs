//! No wedge: a panic anywhere inside a teardown call leaves the registry or scope usable.
//!
//! A matrix of panic sources × owners × sync/async calls. Sources: a panicking `tracing`
//! subscriber (on events, or on spans too), a panicking observer, a cleanup whose panic payload
//! panics again when dropped, a cleanup error whose `Display` panics. After each: the call
//! returned, every resource ran at most once and is accounted for, a joiner got an answer, and a
//! second teardown runs normally and empties the owner.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use closeout::{Registry, Resource, Scope, Status};
use common::within;

/// A real `tracing` subscriber that panics on every event, and on every span if asked.
struct Panicky {
    spans: bool,
}

impl tracing::Subscriber for Panicky {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        if self.spans {
            panic!("subscriber: new_span");
        }
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, _: &tracing::Event<'_>) {
        panic!("subscriber: event");
    }
    fn enter(&self, _: &tracing::span::Id) {
        if self.spans {
            panic!("subscriber: enter");
        }
    }
    fn exit(&self, _: &tracing::span::Id) {}
}

/// A panic payload whose own destructor panics.
struct Bomb;
impl Drop for Bomb {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            panic!("payload destructor");
        }
    }
}

/// An error whose `Display` panics.
#[derive(Debug)]
struct BadDisplay;
impl std::fmt::Display for BadDisplay {
    fn fmt(&self, _: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        panic!("Display of an error")
    }
}
impl std::error::Error for BadDisplay {}

#[derive(Clone, Copy, Debug)]
enum Source {
    SubscriberEvents,
    SubscriberSpans,
    Observer,
    PayloadDropPanics,
    DisplayPanics,
}

const SOURCES: [Source; 5] = [
    Source::SubscriberEvents,
    Source::SubscriberSpans,
    Source::Observer,
    Source::PayloadDropPanics,
    Source::DisplayPanics,
];

fn with_source<T>(source: Source, f: impl FnOnce() -> T) -> T {
    match source {
        Source::SubscriberEvents => tracing::subscriber::with_default(Panicky { spans: false }, f),
        Source::SubscriberSpans => tracing::subscriber::with_default(Panicky { spans: true }, f),
        _ => f(),
    }
}

/// Five resources; the middle one misbehaves as `source` says. Each counts its runs.
fn registry_for(source: Source, runs: &Arc<AtomicUsize>) -> Registry {
    let mut b = Registry::builder();
    if matches!(source, Source::Observer) {
        b = b.observer(|_| panic!("observer"));
    }
    let r = b.build().unwrap();
    for i in 0..5 {
        let runs = runs.clone();
        let res = Resource::new(format!("r{i}"), move || -> Result<(), BadDisplay> {
            runs.fetch_add(1, Ordering::SeqCst);
            match (i, source) {
                (2, Source::PayloadDropPanics) => std::panic::panic_any(Bomb),
                (2, Source::DisplayPanics) => Err(BadDisplay),
                _ => Ok(()),
            }
        });
        let res = if i > 0 { res.depends_on([format!("r{}", i - 1)]) } else { res };
        r.register(res).unwrap();
    }
    r
}

#[test]
fn a_panic_inside_a_registry_teardown_never_wedges_it() {
    for source in SOURCES {
        for is_async in [false, true] {
            let runs = Arc::new(AtomicUsize::new(0));
            let r = registry_for(source, &runs);
            let r2 = r.clone();
            let first = within(Duration::from_secs(10), move || {
                with_source(source, || {
                    if is_async {
                        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
                        rt.block_on(r2.cleanup_all())
                    } else {
                        r2.cleanup_all_blocking()
                    }
                })
            });
            // Everything is accounted for: ran, or still registered (skipped).
            let ran = runs.load(Ordering::SeqCst);
            assert_eq!(ran + r.len(), 5, "{source:?} async={is_async}: ran {ran}, left {}; {first}", r.len());
            // The registry is not wedged: a joiner-free second teardown runs the rest, once each.
            let second = within(Duration::from_secs(10), {
                let r = r.clone();
                move || r.cleanup_all_blocking()
            });
            assert!(r.is_empty(), "{source:?} async={is_async}: {second}");
            assert_eq!(runs.load(Ordering::SeqCst), 5, "{source:?}: each cleanup ran exactly once");
            if matches!(source, Source::PayloadDropPanics) {
                let e = first.get("r2").expect("the panicking cleanup is reported");
                assert!(matches!(e.status(), Status::Panicked(_)), "{e:?}");
            }
            // And the registry still takes registrations and tears them down.
            r.register(Resource::new("again", || ())).unwrap();
            assert!(r.shutdown_blocking().is_success());
        }
    }
}

#[test]
fn a_joiner_is_answered_when_the_leading_call_is_hit_by_a_panic() {
    for source in [Source::SubscriberSpans, Source::SubscriberEvents] {
        let r = Registry::new();
        let (started_tx, started_rx) = std::sync::mpsc::channel();
        let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
        r.register(Resource::new("slow", move || {
            let _ = started_tx.send(());
            let _ = go_rx.recv_timeout(Duration::from_secs(5));
        }))
        .unwrap();
        let leader = {
            let r = r.clone();
            std::thread::spawn(move || with_source(source, || r.cleanup_all_blocking()))
        };
        // The span source ends the leader's run before `slow` starts; then nothing signals.
        let started = started_rx.recv_timeout(Duration::from_secs(2)).is_ok();
        let joiner = {
            let r = r.clone();
            std::thread::spawn(move || r.cleanup_all_blocking())
        };
        let _ = go_tx.send(());
        let lead = within(Duration::from_secs(10), move || leader.join().unwrap());
        let join = within(Duration::from_secs(10), move || joiner.join().unwrap());
        assert!(lead.len() + join.len() >= 1, "{source:?} started={started}: {lead} / {join}");
        let rest = r.cleanup_all_blocking();
        assert!(r.is_empty(), "{source:?}: {rest}");
    }
}

#[test]
fn a_scope_runs_every_action_whatever_a_panic_payload_or_an_error_does() {
    for source in SOURCES {
        for is_async in [false, true] {
            let runs = Arc::new(AtomicUsize::new(0));
            let scope = Scope::new();
            for i in 0..5 {
                let runs = runs.clone();
                let f = move || -> Result<(), BadDisplay> {
                    runs.fetch_add(1, Ordering::SeqCst);
                    match (i, source) {
                        (2, Source::PayloadDropPanics) => std::panic::panic_any(Bomb),
                        (2, Source::DisplayPanics) => Err(BadDisplay),
                        _ => Ok(()),
                    }
                };
                if is_async {
                    scope.defer_async(async move { f() }).unwrap();
                } else {
                    scope.defer(f).unwrap();
                }
            }
            let report = within(Duration::from_secs(10), move || {
                with_source(source, || {
                    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
                    rt.block_on(scope.close_async())
                })
            });
            assert_eq!(runs.load(Ordering::SeqCst), 5, "{source:?} async={is_async}: every action ran");
            assert_eq!(report.len(), 5);
        }
    }
}

#[test]
fn bad_teardown_options_are_not_a_panic() {
    use closeout::TeardownOptions;
    for deadline in [Duration::ZERO, Duration::from_nanos(1), Duration::from_secs(u64::MAX), Duration::MAX] {
        for mc in [0usize, 1, usize::MAX] {
            let r = Registry::new();
            r.register(Resource::new("a", || ())).unwrap();
            let opts = TeardownOptions::new().deadline(deadline).max_concurrency(mc);
            let report = r.teardown_blocking(closeout::Selection::All, opts);
            assert_eq!(report.len(), 1, "{deadline:?} {mc}: {report}");
            let _ = r.cleanup_all_blocking();
            assert!(r.is_empty());
        }
    }
}
