//! `Registry`: order rules, subsets and cascade, options, single flight, registration during
//! teardown, unregister, stats, bad input.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use closeout::{
    Category, Error, Event, Priority, Registry, Resource, Selection, SkipReason, Status, TeardownOptions,
};
use common::{Log, boom, bounded};

fn serial() -> Registry {
    Registry::builder().max_concurrency(1).build().unwrap()
}

#[test]
fn dependents_are_torn_down_before_their_dependencies() {
    let log = Log::new();
    let r = serial();
    // Registered in dependency order: db, pool -> db, api -> pool, worker -> pool.
    r.register(Resource::new("db", log.rec("db"))).unwrap();
    r.register(Resource::new("pool", log.rec("pool")).depends_on(["db"])).unwrap();
    r.register(Resource::new("api", log.rec("api")).depends_on(["pool"])).unwrap();
    r.register(Resource::new("worker", log.rec("worker")).depends_on(["pool"])).unwrap();
    let report = r.cleanup_all_blocking();
    assert!(report.is_success());
    // Deterministic with max_concurrency 1: ties last-registered first.
    assert_eq!(log.entries(), ["worker", "api", "pool", "db"]);
    assert_eq!(r.plan().order(), Vec::<&str>::new());
}

#[test]
fn diamond_and_later_edges_respect_order() {
    let log = Log::new();
    let r = serial();
    r.register(Resource::new("base", log.rec("base"))).unwrap();
    r.register(Resource::new("left", log.rec("left")).depends_on(["base"])).unwrap();
    r.register(Resource::new("right", log.rec("right")).depends_on(["base"])).unwrap();
    r.register(Resource::new("top", log.rec("top")).depends_on(["left", "right"])).unwrap();
    r.register(Resource::new("late", log.rec("late"))).unwrap();
    // A later edge: base now also uses `late`, registered after it.
    r.add_dependency("base", "late").unwrap();
    let plan = r.plan().order().into_iter().map(String::from).collect::<Vec<_>>();
    r.cleanup_all_blocking();
    assert_eq!(log.entries(), ["top", "right", "left", "base", "late"]);
    assert_eq!(plan, log.entries(), "the plan is the order that ran");
}

#[test]
fn phases_follow_effective_priority() {
    let log = Log::new();
    let r = serial();
    r.register(Resource::new("low", log.rec("low")).priority(Priority::Low)).unwrap();
    r.register(Resource::new("crit", log.rec("crit")).priority(Priority::Critical)).unwrap();
    // A Low resource that uses a Critical one is pulled into the Critical phase, before it.
    r.register(Resource::new("low-user", log.rec("low-user")).priority(Priority::Low).depends_on(["crit"]))
        .unwrap();
    r.register(Resource::new("high", log.rec("high")).priority(Priority::High)).unwrap();
    r.register(Resource::new("medium", log.rec("medium"))).unwrap();
    // A High resource that uses a Low one keeps its own phase: the Low one simply waits.
    r.register(Resource::new("high-user", log.rec("high-user")).priority(Priority::High).depends_on(["low"]))
        .unwrap();
    let plan = r.plan();
    assert_eq!(plan.phases().len(), 4);
    assert_eq!(plan.phases()[0].priority, Priority::Critical);
    r.cleanup_all_blocking();
    assert_eq!(log.entries(), ["low-user", "crit", "high-user", "high", "medium", "low"]);
}

#[test]
fn ties_inside_a_phase_go_by_priority_then_last_registered_first() {
    let log = Log::new();
    let r = serial();
    r.register(Resource::new("base", log.rec("base")).priority(Priority::Critical)).unwrap();
    // All three are pulled into the Critical phase by their dependency; their own priorities
    // order them.
    r.register(Resource::new("m1", log.rec("m1")).depends_on(["base"])).unwrap();
    r.register(Resource::new("h", log.rec("h")).priority(Priority::High).depends_on(["base"])).unwrap();
    r.register(Resource::new("m2", log.rec("m2")).depends_on(["base"])).unwrap();
    r.cleanup_all_blocking();
    assert_eq!(log.entries(), ["h", "m2", "m1", "base"]);
}

#[tokio::test]
async fn independent_async_resources_run_concurrently() {
    let r = Registry::new();
    let barrier = Arc::new(tokio::sync::Barrier::new(3));
    for i in 0..3 {
        let b = barrier.clone();
        // Each finishes only when all three are running at once.
        r.register(Resource::new_async(format!("r{i}"), async move {
            b.wait().await;
        }))
        .unwrap();
    }
    let report = bounded(Duration::from_secs(10), r.cleanup_all()).await;
    assert!(report.is_success(), "{report}");
}

#[tokio::test]
async fn max_concurrency_is_respected() {
    let r = Registry::builder().max_concurrency(3).build().unwrap();
    let now = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    for i in 0..20 {
        let (now, peak) = (now.clone(), peak.clone());
        r.register(Resource::new_async(format!("r{i}"), async move {
            let n = now.fetch_add(1, Ordering::SeqCst) + 1;
            peak.fetch_max(n, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(2)).await;
            now.fetch_sub(1, Ordering::SeqCst);
        }))
        .unwrap();
    }
    let report = bounded(Duration::from_secs(10), r.cleanup_all()).await;
    assert_eq!(report.totals().ok, 20);
    assert_eq!(peak.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn a_resource_starts_as_soon_as_its_own_dependents_finish_not_level_by_level() {
    let r = Registry::new();
    // `shared` is used only by `fast`; `slow` is an unrelated resource at the same level as fast.
    r.register(Resource::new_async("shared", async {})).unwrap();
    r.register(Resource::new_async("fast", async {}).depends_on(["shared"])).unwrap();
    r.register(Resource::new_async("slow", tokio::time::sleep(Duration::from_millis(300)))).unwrap();
    let report = bounded(Duration::from_secs(10), r.cleanup_all()).await;
    let slow = report.get("slow").unwrap();
    let shared = report.get("shared").unwrap();
    assert!(
        shared.start() < slow.start() + slow.duration(),
        "shared started at {:?}, before slow ended at {:?}",
        shared.start(),
        slow.start() + slow.duration()
    );
    assert!(shared.start() >= report.get("fast").unwrap().start());
}

#[test]
fn subset_teardown_cascades_to_dependents() {
    let log = Log::new();
    let r = serial();
    r.register(Resource::new("server", log.rec("server")).category(Category::Network)).unwrap();
    r.register(Resource::new("conn", log.rec("conn")).depends_on(["server"])).unwrap();
    r.register(Resource::new("sub", log.rec("sub")).depends_on(["conn"])).unwrap();
    r.register(Resource::new("other", log.rec("other"))).unwrap();
    let report = r.teardown_blocking(Selection::id("server"), TeardownOptions::new());
    assert_eq!(log.entries(), ["sub", "conn", "server"]);
    assert!(report.get("conn").unwrap().is_cascaded());
    assert!(report.get("sub").unwrap().is_cascaded());
    assert!(!report.get("server").unwrap().is_cascaded());
    assert!(r.contains("other") && r.len() == 1);
}

#[test]
fn subset_by_ids_category_and_tag() {
    let r = serial();
    let log = Log::new();
    r.register(Resource::new("a", log.rec("a")).category(Category::Database)).unwrap();
    r.register(Resource::new("b", log.rec("b")).category(Category::Database)).unwrap();
    r.register(Resource::new("c", log.rec("c")).tag("t")).unwrap();
    r.register(Resource::new("d", log.rec("d")).tag("t")).unwrap();
    r.register(Resource::new("e", log.rec("e"))).unwrap();
    r.register(Resource::new("f", log.rec("f"))).unwrap();
    assert_eq!(r.teardown_blocking(Selection::Category(Category::Database), TeardownOptions::new()).len(), 2);
    assert_eq!(r.teardown_blocking(Selection::tag("t"), TeardownOptions::new()).len(), 2);
    assert_eq!(r.teardown_blocking(Selection::ids(["e", "missing"]), TeardownOptions::new()).len(), 1);
    assert_eq!(r.teardown_blocking(Selection::id("missing"), TeardownOptions::new()).len(), 0);
    assert_eq!(log.entries(), ["b", "a", "d", "c", "e"]);
    assert_eq!(r.len(), 1);
}

#[test]
fn cleanup_all_leaves_the_registry_usable_and_shutdown_closes_it() {
    let r = Registry::new();
    r.register(Resource::new("a", || ())).unwrap();
    assert_eq!(r.cleanup_all_blocking().len(), 1);
    r.register(Resource::new("a", || ())).unwrap();
    assert_eq!(r.shutdown_blocking().len(), 1);
    assert!(r.is_closed());
    let log = Log::new();
    let err = r.register(Resource::new("late", log.rec("late"))).unwrap_err();
    assert_eq!(err.error(), &Error::Closed);
    err.into_resource().run_now().unwrap();
    assert_eq!(log.entries(), ["late"], "the refused resource was handed back intact");
}

#[test]
fn unregister_hands_back_and_refuses_while_depended_on() {
    let r = Registry::new();
    let log = Log::new();
    r.register(Resource::new("db", log.rec("db")).tag("x").timeout(Duration::from_secs(1))).unwrap();
    r.register(Resource::new("a", || ()).depends_on(["db"])).unwrap();
    r.register(Resource::new("b", || ()).depends_on(["db"])).unwrap();
    let err = r.unregister("db").unwrap_err();
    assert_eq!(err, Error::HasDependents { id: "db".into(), dependents: vec!["a".into(), "b".into()] });
    assert_eq!(err.to_string(), "resource `db` is still needed by a, b");
    assert!(r.unregister("a").unwrap().is_some());
    assert!(r.unregister("b").unwrap().is_some());
    let db = r.unregister("db").unwrap().unwrap();
    assert_eq!(
        (db.get_id(), db.get_tags(), db.get_timeout()),
        ("db", &["x".to_string()][..], Some(Duration::from_secs(1)))
    );
    assert!(log.entries().is_empty(), "unregister does not run");
    assert!(r.unregister("db").unwrap().is_none());
    db.run_now().unwrap();
    assert_eq!(log.entries(), ["db"]);
}

#[test]
fn bad_input_is_a_typed_error_and_nothing_is_half_registered() {
    let r = Registry::new();
    r.register(Resource::new("a", || ())).unwrap();
    let cases: Vec<(Resource, Error)> = vec![
        (Resource::new("", || ()), Error::EmptyId),
        (Resource::new("a", || ()), Error::DuplicateId("a".into())),
        (
            Resource::new("b", || ()).depends_on(["a", "zz"]),
            Error::UnknownDependency { id: "b".into(), dependency: "zz".into() },
        ),
        (Resource::new("c", || ()).timeout(Duration::ZERO), Error::ZeroTimeout("c".into())),
        (
            Resource::new("d", || ()).timeout(Duration::from_secs(1 << 40)),
            Error::TimeoutTooLong {
                id: "d".into(),
                timeout: Duration::from_secs(1 << 40),
                max: closeout::MAX_TIMEOUT,
            },
        ),
    ];
    for (res, expected) in cases {
        let id = res.get_id().to_owned();
        let err = r.register(res).unwrap_err();
        assert_eq!(err.error(), &expected);
        assert_eq!(err.resource().get_id(), id, "handed back");
        assert!(!err.to_string().is_empty());
    }
    assert_eq!(r.len(), 1);
    assert_eq!(r.info("a").unwrap().dependents, 0, "the failed `b` left no edge behind");
    assert!(matches!(Registry::builder().max_concurrency(0).build(), Err(Error::InvalidConfig(_))));
    assert!(matches!(Registry::builder().deadline(Duration::ZERO).build(), Err(Error::ZeroTimeout(_))));
    assert_eq!(r.add_dependency("a", "nope"), Err(Error::NotFound("nope".into())));
}

#[test]
fn max_resources_limits_live_resources() {
    let r = Registry::builder().max_resources(2).build().unwrap();
    r.register(Resource::new("a", || ())).unwrap();
    r.register(Resource::new("b", || ())).unwrap();
    assert_eq!(r.register(Resource::new("c", || ())).unwrap_err().error(), &Error::LimitReached { limit: 2 });
    r.unregister("a").unwrap();
    r.register(Resource::new("c", || ())).unwrap();
}

#[test]
fn register_batch_is_all_or_nothing() {
    let r = Registry::new();
    r.register(Resource::new("existing", || ())).unwrap();
    let err = r
        .register_batch(vec![
            Resource::new("x", || ()),
            Resource::new("y", || ()).depends_on(["x", "existing"]),
            Resource::new("x", || ()),
        ])
        .unwrap_err();
    assert_eq!((err.index(), err.error()), (2, &Error::DuplicateId("x".into())));
    assert_eq!(err.into_resources().len(), 3);
    assert_eq!(r.len(), 1);
    assert_eq!(r.info("existing").unwrap().dependents, 0);
    let log = Log::new();
    r.register_batch(vec![
        Resource::new("x", log.rec("x")),
        Resource::new("y", log.rec("y")).depends_on(["x"]),
    ])
    .unwrap();
    // `x` becomes ready when `y` is done and, registered later than `existing`, goes first.
    assert_eq!(r.plan().order(), ["y", "x", "existing"]);
    let serial = Registry::builder().max_concurrency(1).build().unwrap();
    serial.register(Resource::new("existing", log.rec("existing"))).unwrap();
    serial
        .register_batch(vec![
            Resource::new("x", log.rec("x")),
            Resource::new("y", log.rec("y")).depends_on(["x"]),
        ])
        .unwrap();
    let planned: Vec<String> = serial.plan().order().into_iter().map(String::from).collect();
    serial.cleanup_all_blocking();
    assert_eq!(log.entries(), planned);
}

#[test]
fn stop_on_error_skips_the_rest_and_keeps_it_registered() {
    let r = serial();
    let log = Log::new();
    r.register(Resource::new("last", log.rec("last"))).unwrap();
    r.register(Resource::new("bad", || Err::<(), _>(boom("no")))).unwrap();
    r.register(Resource::new("first", log.rec("first"))).unwrap();
    let report = r.teardown_blocking(Selection::All, TeardownOptions::new().stop_on_error(true));
    assert_eq!(log.entries(), ["first"]);
    assert!(matches!(
        report.get("last").unwrap().status(),
        Status::Skipped(SkipReason::StoppedAfterError { failed }) if failed == "bad"
    ));
    assert!(r.contains("last"));
    assert!(r.cleanup_all_blocking().is_success(), "a later teardown retries what was skipped");
    assert_eq!(log.entries(), ["first", "last"]);
}

#[test]
fn exclusions_hold_back_what_excluded_resources_depend_on_unless_forced() {
    let r = serial();
    let log = Log::new();
    r.register(Resource::new("db", log.rec("db")).category(Category::Database)).unwrap();
    r.register(Resource::new("audit", log.rec("audit")).depends_on(["db"])).unwrap();
    r.register(Resource::new("web", log.rec("web"))).unwrap();
    let report = r.teardown_blocking(Selection::All, TeardownOptions::new().exclude_id("audit"));
    assert_eq!(log.entries(), ["web"]);
    assert!(matches!(
        report.get("db").unwrap().status(),
        Status::Skipped(SkipReason::DependentRemains { dependent }) if dependent == "audit"
    ));
    assert!(report.get("audit").is_none(), "excluded resources are not part of the teardown");
    let plan =
        r.plan_for(&Selection::All, &TeardownOptions::new().exclude_category(Category::custom("other")));
    assert_eq!(plan.len(), 0);
    let report = r.teardown_blocking(Selection::All, TeardownOptions::new().exclude_id("audit").force(true));
    assert_eq!(log.entries(), ["web", "db"]);
    assert!(report.is_success());
    assert!(r.contains("audit"));
}

#[test]
fn force_ignores_dependency_order() {
    let r = serial();
    let log = Log::new();
    r.register(Resource::new("dep", log.rec("dep"))).unwrap();
    r.register(Resource::new("user", log.rec("user")).depends_on(["dep"])).unwrap();
    r.register(Resource::new("newest", log.rec("newest")).depends_on(["dep"])).unwrap();
    r.teardown_blocking(Selection::All, TeardownOptions::new().force(true));
    // Pure last-registered-first, as if independent.
    assert_eq!(log.entries(), ["newest", "user", "dep"]);
}

#[test]
fn clear_forgets_without_running() {
    let r = Registry::new();
    r.register(Resource::new("a", || -> () { panic!("must not run") })).unwrap();
    r.register(Resource::new("b", || -> () { panic!("must not run") }).depends_on(["a"])).unwrap();
    assert_eq!(r.clear(), 2);
    assert!(r.is_empty());
    assert!(r.cleanup_all_blocking().is_empty());
    r.register(Resource::new("a", || ())).unwrap();
}

#[test]
fn stats_and_stale() {
    let r = Registry::new();
    r.register(Resource::new("old", || ()).category(Category::File).priority(Priority::High)).unwrap();
    std::thread::sleep(Duration::from_millis(30));
    r.register(Resource::new("new", || ()).category(Category::File)).unwrap();
    r.register(Resource::new("fails", || Err::<(), _>(boom("x"))).category(Category::Timer)).unwrap();
    let s = r.stats();
    assert_eq!((s.registered, s.by_category(&Category::File), s.by_category(&Category::Timer)), (3, 2, 1));
    assert_eq!((s.by_priority(Priority::High), s.by_priority(Priority::Medium)), (1, 2));
    let stale: Vec<String> = r.stale(Duration::from_millis(25)).into_iter().map(|i| i.id).collect();
    assert_eq!(stale, ["old"]);
    let all: Vec<String> = r.stale(Duration::ZERO).into_iter().map(|i| i.id).collect();
    assert_eq!(all[0], "old", "oldest first");
    r.teardown_blocking(Selection::Category(Category::Timer), TeardownOptions::new());
    let s = r.stats();
    assert_eq!((s.registered, s.total_registered, s.ran.ok, s.ran.total - s.ran.ok), (2, 3, 0, 1));
}

#[test]
fn observer_sees_lifecycle_and_a_panicking_observer_changes_nothing() {
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let s = seen.clone();
    let r = Registry::builder()
        .observer(move |e: &Event<'_>| {
            s.lock().unwrap().push(e.name());
            if matches!(e, Event::Cleaned { .. }) {
                panic!("observer bug");
            }
        })
        .build()
        .unwrap();
    r.register(Resource::new("a", || ())).unwrap();
    r.register(Resource::new("b", || Err::<(), _>(boom("x")))).unwrap();
    r.register(Resource::new("c", || ())).unwrap();
    r.unregister("c").unwrap();
    let report = r.cleanup_all_blocking();
    assert_eq!(report.totals().ok, 1);
    assert_eq!(report.totals().failed, 1);
    let seen = seen.lock().unwrap().clone();
    assert_eq!(
        seen,
        [
            "registered",
            "registered",
            "registered",
            "unregistered",
            "teardown_started",
            "failed",
            "cleaned",
            "teardown_completed"
        ]
    );
}

#[test]
fn report_display_and_totals_per_category() {
    let r = serial();
    r.register(Resource::new("ok", || ()).category(Category::File)).unwrap();
    r.register(Resource::new("bad", || Err::<(), _>(boom("disk on fire"))).category(Category::Database))
        .unwrap();
    let report = r.cleanup_all_blocking();
    let text = report.to_string();
    assert!(text.contains("2 resource(s)"), "{text}");
    assert!(text.contains("bad (database, medium): failed: disk on fire"), "{text}");
    let cats = report.by_category();
    assert_eq!(cats.len(), 2);
    assert_eq!(cats.iter().find(|(c, _)| *c == Category::Database).unwrap().1.failed, 1);
    let err = report.into_result().unwrap_err();
    assert!(err.to_string().contains("disk on fire"));
    assert!(std::error::Error::source(&err).is_some());
}

#[cfg(feature = "serde")]
#[test]
fn report_serializes_to_json() {
    let r = serial();
    r.register(Resource::new("bad", || Err::<(), _>(boom("nope"))).category(Category::Database)).unwrap();
    r.register(
        Resource::new("slow", || std::thread::sleep(Duration::from_secs(5)))
            .timeout(Duration::from_millis(20)),
    )
    .unwrap();
    let report = r.cleanup_all_blocking();
    let json = serde_json::to_value(&report).unwrap();
    let entries = json["entries"].as_array().unwrap();
    let bad = entries.iter().find(|e| e["id"] == "bad").unwrap();
    assert_eq!(bad["status"], "failed");
    assert_eq!(bad["error"], "nope");
    assert_eq!(bad["category"], "database");
    let slow = entries.iter().find(|e| e["id"] == "slow").unwrap();
    assert_eq!(slow["status"], "timed out");
    assert!(json["duration_ms"].as_f64().unwrap() >= 0.0);
    let plan = serde_json::to_value(r.plan()).unwrap();
    assert!(plan["phases"].as_array().unwrap().is_empty());
}

#[test]
fn plan_display_shows_phases_groups_and_timeouts() {
    let r = Registry::new();
    r.register(Resource::new("log", || ()).category(Category::File)).unwrap();
    r.register(Resource::new_async("c1", async {}).timeout(Duration::from_millis(500)).depends_on(["log"]))
        .unwrap();
    r.register(Resource::new_async("c2", async {}).depends_on(["log"])).unwrap();
    r.register(Resource::new("cache", || ()).priority(Priority::Low)).unwrap();
    let plan = r.plan();
    let text = plan.to_string();
    assert!(text.contains("teardown plan: 4 resource(s) in 2 phase(s)"), "{text}");
    assert!(text.contains("group 1 (in parallel)"), "{text}");
    assert!(text.contains("c1 [other, medium, timeout 500.0ms, async]"), "{text}");
    assert!(
        text.contains("log [file, medium] after c1, c2") || text.contains("log [file, medium] after c2, c1"),
        "{text}"
    );
    assert_eq!(plan.phases()[0].groups.len(), 2);
    assert_eq!(r.len(), 4, "planning runs nothing");
}

#[test]
fn teardown_futures_are_send_so_they_can_be_spawned() {
    fn assert_send<T: Send>(_: &T) {}
    let r = Registry::new();
    let scope = closeout::Scope::new();
    let f1 = r.cleanup_all();
    let f2 = r.shutdown();
    let f3 = r.teardown(Selection::All, TeardownOptions::new());
    let f4 = scope.close_shared_async();
    assert_send(&f1);
    assert_send(&f2);
    assert_send(&f3);
    assert_send(&f4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spawned_teardown_runs_on_the_runtime() {
    let r = Registry::new();
    let log = Log::new();
    r.register(Resource::new_async("a", log.rec_after(1, "a"))).unwrap();
    let r2 = r.clone();
    let report =
        bounded(Duration::from_secs(10), tokio::spawn(async move { r2.cleanup_all().await })).await.unwrap();
    assert!(report.is_success());
    assert_eq!(log.entries(), ["a"]);
}

#[test]
fn info_keeps_description_metadata_timeout_and_dependencies() {
    let r = Registry::builder().default_timeout(Duration::from_secs(3)).build().unwrap();
    r.register(Resource::new("db", || ())).unwrap();
    r.register(
        Resource::new_async("api", async {})
            .category(Category::Network)
            .priority(Priority::High)
            .description("public HTTP API")
            .metadata("port", "8080")
            .metadata("proto", "h2")
            .tag("edge")
            .depends_on(["db"]),
    )
    .unwrap();
    let info = r.info("api").unwrap();
    assert_eq!(info.description.as_deref(), Some("public HTTP API"));
    assert_eq!(
        info.metadata,
        [("port".to_string(), "8080".to_string()), ("proto".to_string(), "h2".to_string())]
    );
    assert_eq!(info.timeout, Some(Duration::from_secs(3)), "the registry's default applies");
    assert_eq!(info.depends_on, ["db"]);
    assert_eq!((info.category, info.priority, info.running), (Category::Network, Priority::High, false));
    assert_eq!(r.info("db").unwrap().dependents, 1);
    assert!(r.info("nope").is_none());
}

/// Found by the model test: a dependency outside a subset teardown still sets the phase. `b`
/// uses the `Critical` resource `crit`, so `b` is in the `Critical` phase and goes before the
/// `High` resource `a`, even though `crit` itself is not torn down.
#[test]
fn a_subset_teardown_counts_dependencies_outside_it_for_phases() {
    use closeout::{Priority, Selection, TeardownOptions};
    let registry = Registry::builder().max_concurrency(1).build().unwrap();
    let log = Log::new();
    registry.register(Resource::new("crit", log.rec("crit")).priority(Priority::Critical)).unwrap();
    registry.register(Resource::new("a", log.rec("a")).priority(Priority::High).tag("t")).unwrap();
    registry
        .register(Resource::new("b", log.rec("b")).priority(Priority::Medium).tag("t").depends_on(["crit"]))
        .unwrap();
    let sel = Selection::tag("t");
    let plan = registry.plan_for(&sel, &TeardownOptions::new());
    assert_eq!(plan.order(), ["b", "a"]);
    let report = registry.teardown_blocking(sel, TeardownOptions::new());
    assert!(report.is_success());
    assert_eq!(log.entries(), ["b", "a"]);
    assert!(registry.contains("crit"));
}

/// The human report labels its columns, and a cleanup's detail is shown after its entry, for
/// a success (": detail") and a failure (after the error, in parentheses); JSON carries it as
/// "detail" only where there is one.
#[test]
fn report_labels_its_columns_and_shows_details() {
    let r = serial();
    let (ok_detail, bad_detail) = (closeout::Detail::new(), closeout::Detail::new());
    let (a, b) = (ok_detail.clone(), bad_detail.clone());
    r.register(Resource::new("server", move || a.set("drained 12 connections, 1 forced")).detail(&ok_detail))
        .unwrap();
    r.register(
        Resource::new("tree", move || {
            b.set("stopped 3 processes, 1 needed SIGKILL");
            Err::<(), _>(boom("one survived"))
        })
        .detail(&bad_detail),
    )
    .unwrap();
    r.register(Resource::new("plain", || ())).unwrap();
    let report = r.cleanup_all_blocking();
    let text = report.to_string();
    println!("{text}");
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[1].contains("status") && lines[1].contains("took") && lines[1].contains("start"), "{text}");
    assert!(lines[1].contains("resource (category, priority)"), "{text}");
    assert!(text.contains("server (other, medium): drained 12 connections, 1 forced"), "{text}");
    assert!(text.contains("failed: one survived (stopped 3 processes, 1 needed SIGKILL)"), "{text}");
    assert_eq!(report.get("plain").unwrap().detail(), None);
    assert_eq!(report.get("server").unwrap().detail(), Some("drained 12 connections, 1 forced"));
    // Taken into the report: the detail is not left behind for a later teardown.
    assert_eq!(ok_detail.get(), None);
}

#[cfg(feature = "serde")]
#[test]
fn a_detail_is_in_the_json_entry_only_where_set() {
    let r = serial();
    let detail = closeout::Detail::new();
    let d = detail.clone();
    r.register(Resource::new("tmp", move || d.set("removed 41 files")).detail(&detail)).unwrap();
    r.register(Resource::new("other", || ())).unwrap();
    let json = serde_json::to_value(r.cleanup_all_blocking()).unwrap();
    let entries = json["entries"].as_array().unwrap();
    let tmp = entries.iter().find(|e| e["id"] == "tmp").unwrap();
    assert_eq!(tmp["detail"], "removed 41 files");
    let other = entries.iter().find(|e| e["id"] == "other").unwrap();
    assert!(other.get("detail").is_none(), "{other}");
}

/// Observers come and go: each sees exactly the events that happened while it was added
/// (invariant O3), in order; the builder's observer sees everything.
#[test]
fn observers_added_and_removed_at_runtime_see_their_own_window() {
    use closeout::Event;
    use std::sync::{Arc, Mutex};
    let log = |name: &'static str, into: &Arc<Mutex<Vec<String>>>| {
        let into = into.clone();
        move |e: &Event<'_>| {
            if let Event::Registered { id, .. } = e {
                into.lock().unwrap().push(format!("{name}:{id}"));
            }
        }
    };
    let seen = Arc::new(Mutex::new(Vec::new()));
    let r = Registry::builder().observer(log("always", &seen)).build().unwrap();
    r.register(Resource::new("1", || ())).unwrap();
    let a = r.add_observer(log("a", &seen));
    r.register(Resource::new("2", || ())).unwrap();
    let b = r.add_observer(log("b", &seen));
    r.register(Resource::new("3", || ())).unwrap();
    drop(a);
    r.register(Resource::new("4", || ())).unwrap();
    b.keep();
    r.register(Resource::new("5", || ())).unwrap();
    r.cleanup_all_blocking(); // waits for every event to be observed
    let seen = seen.lock().unwrap().clone();
    assert_eq!(
        seen,
        ["always:1", "always:2", "a:2", "always:3", "a:3", "b:3", "always:4", "b:4", "always:5", "b:5"]
    );
}

/// Four threads add and drop observers while four others register: no
/// deadlock, no lost registration, and every observer's count is at most what happened.
#[test]
fn observers_churning_beside_registrations() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let r = Registry::new();
    let total = Arc::new(AtomicUsize::new(0));
    std::thread::scope(|s| {
        for t in 0..4 {
            let registering = r.clone();
            s.spawn(move || {
                for i in 0..200 {
                    registering.register(Resource::new(format!("r{t}-{i}"), || ())).unwrap();
                }
            });
            let (r, total) = (r.clone(), total.clone());
            s.spawn(move || {
                for _ in 0..200 {
                    let total = total.clone();
                    let h = r.add_observer(move |_: &closeout::Event<'_>| {
                        total.fetch_add(1, Ordering::Relaxed);
                    });
                    std::thread::yield_now();
                    drop(h);
                }
            });
        }
    });
    let report = r.cleanup_all_blocking();
    assert_eq!(report.len(), 800);
    assert!(report.is_success());
    // Each event reaches at most the four observers alive at once.
    assert!(total.load(Ordering::Relaxed) <= 4 * (800 + 800 + 2));
}

/// Category defaults: a resource's own priority and timeout win, then its category's, then
/// the registry's default timeout; the plan and the info show the result.
#[test]
fn category_defaults_fill_in_what_a_resource_leaves_unset() {
    let r = Registry::builder()
        .default_timeout(Duration::from_secs(9))
        .category_priority(Category::Network, Priority::Critical)
        .category_timeout(Category::Network, Duration::from_secs(3))
        .category_priority(Category::Database, Priority::Low)
        .build()
        .unwrap();
    r.register(Resource::new("api", || ()).category(Category::Network)).unwrap();
    r.register(Resource::new("db", || ()).category(Category::Database)).unwrap();
    r.register(
        Resource::new("edge", || ())
            .category(Category::Network)
            .priority(Priority::Low)
            .timeout(Duration::from_secs(1)),
    )
    .unwrap();
    r.register(Resource::new("file", || ()).category(Category::File)).unwrap();
    let info = |id: &str| r.info(id).unwrap();
    assert_eq!(
        (info("api").priority, info("api").timeout),
        (Priority::Critical, Some(Duration::from_secs(3)))
    );
    assert_eq!((info("db").priority, info("db").timeout), (Priority::Low, Some(Duration::from_secs(9))));
    assert_eq!((info("edge").priority, info("edge").timeout), (Priority::Low, Some(Duration::from_secs(1))));
    assert_eq!(
        (info("file").priority, info("file").timeout),
        (Priority::Medium, Some(Duration::from_secs(9)))
    );
    assert_eq!(r.plan().order()[0], "api");
    // A bad category timeout is refused by `build`, naming the category.
    let err = Registry::builder().category_timeout(Category::Network, Duration::ZERO).build().unwrap_err();
    assert!(err.to_string().contains("network"), "{err}");
}

/// A per-teardown cleanup timeout replaces each resource's own, for that teardown only.
#[test]
fn a_teardown_cleanup_timeout_overrides_the_resources_own() {
    let r = serial();
    r.register(
        Resource::new("patient", || std::thread::sleep(Duration::from_millis(300)))
            .timeout(Duration::from_secs(60)),
    )
    .unwrap();
    r.register(Resource::new("quick", || ())).unwrap();
    let started = std::time::Instant::now();
    let report = r
        .teardown_blocking(Selection::All, TeardownOptions::new().cleanup_timeout(Duration::from_millis(30)));
    assert!(
        matches!(report.get("patient").unwrap().status(), Status::TimedOut(d) if *d == Duration::from_millis(30)),
        "{report}"
    );
    assert!(report.get("quick").unwrap().status().is_ok(), "{report}");
    assert!(started.elapsed() < Duration::from_millis(250), "did not wait for the resource's own timeout");
}

mod selections {
    //! Selections, combinations included, against a reference model: a teardown of any
    //! selection removes exactly the resources the model says it matches (no dependencies
    //! here, so nothing cascades).
    use closeout::{Category, Registry, Resource, Selection, TeardownOptions};
    use proptest::prelude::*;

    const CATEGORIES: [Category; 3] = [Category::Network, Category::Database, Category::File];
    const TAGS: [&str; 3] = ["red", "green", "blue"];

    #[derive(Clone, Debug)]
    struct Res {
        id: String,
        category: usize,
        tags: Vec<usize>,
    }

    fn resources() -> impl Strategy<Value = Vec<Res>> {
        proptest::collection::vec((0..3usize, proptest::collection::vec(0..3usize, 0..3)), 0..12).prop_map(
            |v| {
                v.into_iter()
                    .enumerate()
                    .map(|(i, (category, tags))| Res { id: format!("r{i}"), category, tags })
                    .collect()
            },
        )
    }

    fn selection() -> impl Strategy<Value = Selection> {
        let leaf = prop_oneof![
            Just(Selection::All),
            (0..12usize).prop_map(|i| Selection::id(format!("r{i}"))),
            proptest::collection::vec(0..12usize, 0..3)
                .prop_map(|v| Selection::ids(v.into_iter().map(|i| format!("r{i}")))),
            (0..3usize).prop_map(|c| Selection::Category(CATEGORIES[c].clone())),
            proptest::collection::vec(0..3usize, 0..3)
                .prop_map(|v| Selection::categories(v.into_iter().map(|c| CATEGORIES[c].clone()))),
            (0..3usize).prop_map(|t| Selection::tag(TAGS[t])),
            proptest::collection::vec(0..3usize, 0..3)
                .prop_map(|v| Selection::tags(v.into_iter().map(|t| TAGS[t]))),
        ];
        leaf.prop_recursive(3, 12, 3, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..3).prop_map(Selection::any_of),
                proptest::collection::vec(inner.clone(), 0..3).prop_map(Selection::all_of),
                (inner.clone(), inner).prop_map(|(a, b)| a.except(b)),
            ]
        })
    }

    /// The reference: what `sel` matches, written from the variants' docs.
    fn model(r: &Res, sel: &Selection) -> bool {
        match sel {
            Selection::All => true,
            Selection::Id(id) => r.id == *id,
            Selection::Ids(ids) => ids.contains(&r.id),
            Selection::Category(c) => CATEGORIES[r.category] == *c,
            Selection::Categories(cs) => cs.contains(&CATEGORIES[r.category]),
            Selection::Tag(t) => r.tags.iter().any(|&i| TAGS[i] == t),
            Selection::Tags(ts) => r.tags.iter().any(|&i| ts.iter().any(|t| t == TAGS[i])),
            Selection::AnyOf(v) => v.iter().any(|s| model(r, s)),
            Selection::AllOf(v) => v.iter().all(|s| model(r, s)),
            Selection::Except(a, b) => model(r, a) && !model(r, b),
            _ => unreachable!("a variant the model does not know"),
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        #[test]
        fn a_teardown_removes_exactly_what_the_selection_matches(rs in resources(), sel in selection()) {
            let registry = Registry::new();
            for r in &rs {
                let mut res = Resource::new(r.id.clone(), || ()).category(CATEGORIES[r.category].clone());
                for &t in &r.tags {
                    res = res.tag(TAGS[t]);
                }
                registry.register(res).unwrap();
            }
            let mut expected: Vec<&str> = rs.iter().filter(|r| model(r, &sel)).map(|r| r.id.as_str()).collect();
            let mut planned = registry.plan_for(&sel, &TeardownOptions::new()).order().into_iter().map(str::to_owned).collect::<Vec<_>>();
            let report = registry.teardown_blocking(sel.clone(), TeardownOptions::new());
            let mut torn: Vec<&str> = report.entries().iter().map(|e| e.id()).collect();
            expected.sort_unstable();
            torn.sort_unstable();
            planned.sort_unstable();
            prop_assert_eq!(&torn, &expected);
            prop_assert_eq!(planned, expected.iter().map(|s| s.to_string()).collect::<Vec<_>>());
            for r in &rs {
                prop_assert_eq!(registry.contains(&r.id), !model(r, &sel));
            }
        }
    }
}

/// `adopt`: the value is usable through its guard until the teardown hands it to its
/// disposer; a disposer's error or panic is reported; `take` gets it back unregistered; a
/// refusal hands the value back; dropping the guard leaves the value to the teardown.
#[test]
fn adopted_values_are_disposed_of_by_the_teardown_or_taken_back() {
    let r = serial();
    let disposed = Arc::new(std::sync::Mutex::new(Vec::new()));
    let d = disposed.clone();
    let pool = r.adopt("pool", vec![1, 2], move |v: Vec<i32>| d.lock().unwrap().push(v.len())).unwrap();
    pool.with(|v| v.push(3));
    let dropped_guard = r.adopt("dropped", 7u8, |_| Err::<(), _>(boom("flush failed"))).unwrap();
    drop(dropped_guard); // still registered: the teardown disposes of it
    r.adopt("panicky", true, |yes: bool| assert!(!yes, "dispose panicked")).unwrap().keep_registered();
    let taken = r
        .adopt("taken", String::from("mine"), |s: String| assert!(s.is_empty(), "taken back, never disposed"))
        .unwrap();
    assert_eq!(taken.take().as_deref(), Some("mine"));
    assert!(!r.contains("taken"));
    let refused = r.adopt("pool", 42u64, |_| ()).unwrap_err();
    assert!(matches!(refused.error(), Error::DuplicateId(_)));
    assert_eq!(refused.into_value(), 42);

    let report = r.cleanup_all_blocking();
    assert_eq!(*disposed.lock().unwrap(), [3]);
    assert!(report.get("pool").unwrap().status().is_ok(), "{report}");
    assert!(
        matches!(report.get("dropped").unwrap().status(), Status::Failed(e) if e.to_string() == "flush failed")
    );
    assert!(
        matches!(report.get("panicky").unwrap().status(), Status::Panicked(m) if m.contains("dispose panicked"))
    );
    assert_eq!(pool.with(|v| v.len()), None, "disposed");
    assert!(!pool.is_alive());
    assert_eq!(report.len(), 3);
}

/// The process-wide registry: one instance, free functions over it, usable again after
/// `cleanup_all`, closed by `shutdown`. In a process of its own (`common::isolated`): it is
/// process-wide state.
#[test]
fn the_global_registry_is_one_registry_for_the_process() {
    common::isolated("the_global_registry_is_one_registry_for_the_process", || {
        use closeout::global;
        let log = Log::new();
        global::register(Resource::new("a", log.rec("a"))).unwrap();
        assert!(std::ptr::eq(global::registry(), global::registry()));
        let refused = global::register(Resource::new("a", || ())).unwrap_err();
        assert!(matches!(refused.error(), Error::DuplicateId(_)));
        assert!(global::cleanup_all_blocking().is_success());
        global::register(Resource::new("b", log.rec("b"))).unwrap();
        assert!(global::unregister("b").unwrap().is_some());
        global::register(Resource::new("c", log.rec("c"))).unwrap();
        assert_eq!(global::shutdown_blocking().len(), 1);
        assert!(global::register(Resource::new("d", || ())).is_err(), "closed by shutdown");
        assert_eq!(log.entries(), ["a", "c"]);
    });
}

/// Each cleanup runs in a `closeout.cleanup` span with its id and category, so what it logs
/// carries them: sync inline, sync with a timeout (a helper thread) and async; checked with a
/// real `tracing-subscriber` formatter writing into a buffer.
///
/// In a process of its own (`common::isolated`): `tracing` caches each callsite's interest
/// process-wide, and a test thread with no subscriber that reaches a callsite first can leave
/// it cached as uninteresting for this test's thread-local subscriber (a real program sets a
/// global one).
#[test]
fn a_cleanups_own_log_lines_carry_its_id_and_category() {
    common::isolated("a_cleanups_own_log_lines_carry_its_id_and_category", log_lines_body);
}

fn log_lines_body() {
    use std::io::Write;
    #[derive(Clone, Default)]
    struct Buffer(Arc<std::sync::Mutex<Vec<u8>>>);
    impl Write for Buffer {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let buffer = Buffer::default();
    let writer = buffer.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::INFO)
        .finish();
    let _default = tracing::subscriber::set_default(subscriber);
    let r = serial();
    r.register(Resource::new("db", || tracing::info!("closing the pool")).category(Category::Database))
        .unwrap();
    r.register(
        Resource::new_async("ws", async { tracing::info!("sending close frames") })
            .category(Category::Network),
    )
    .unwrap();
    r.register(
        Resource::new("file", || tracing::info!("fsync on a helper thread"))
            .category(Category::File)
            .timeout(Duration::from_secs(5)),
    )
    .unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let report = rt.block_on(r.cleanup_all());
    assert!(report.is_success(), "{report}");
    let text = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
    assert!(
        text.contains("closeout.cleanup{id=db category=database}") && text.contains("closing the pool"),
        "{text}"
    );
    assert!(
        text.contains("closeout.cleanup{id=ws category=network}") && text.contains("sending close frames"),
        "{text}"
    );
    assert!(
        text.contains("closeout.cleanup{id=file category=file}") && text.contains("fsync on a helper thread"),
        "{text}"
    );
    let line = text.lines().find(|l| l.contains("closing the pool")).unwrap();
    assert!(line.contains("id=db"), "the cleanup's own line carries its id: {line}");
}
