//! Fault injection: cleanups that fail, panic, hang past their timeout (sync and async),
//! re-register, re-enter their own teardown; concurrent registration while tearing down; the
//! overall deadline; a dropped teardown future. Every wait is bounded.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use closeout::{Registry, Resource, Selection, SkipReason, Status, TeardownOptions};
use common::{Log, boom, bounded, within};

#[test]
fn failures_and_panics_are_reported_and_the_teardown_goes_on() {
    let log = Log::new();
    let r = Registry::builder().max_concurrency(1).build().unwrap();
    r.register(Resource::new("a", log.rec("a"))).unwrap();
    r.register(Resource::new("fails", || Err::<(), _>(boom("e1")))).unwrap();
    r.register(Resource::new("panics", || -> () { panic!("p1") })).unwrap();
    r.register(Resource::new_async("async-fails", async { Err::<(), _>(boom("e2")) })).unwrap();
    r.register(Resource::new_async("async-panics", async {
        if true {
            panic!("p2")
        }
    }))
    .unwrap();
    r.register(Resource::new("z", log.rec("z"))).unwrap();
    let report = within(Duration::from_secs(10), move || r.cleanup_all_blocking());
    assert_eq!(log.entries(), ["z", "a"]);
    let t = report.totals();
    assert_eq!((t.ok, t.failed, t.panicked), (2, 2, 2));
    assert!(matches!(report.get("panics").unwrap().status(), Status::Panicked(m) if m == "p1"));
    assert!(matches!(report.get("async-panics").unwrap().status(), Status::Panicked(m) if m == "p2"));
}

#[test]
fn a_sync_cleanup_hanging_past_its_timeout_is_abandoned() {
    let release = Arc::new(AtomicBool::new(false));
    let rel = release.clone();
    let r = Registry::new();
    r.register(
        Resource::new("hangs", move || {
            while !rel.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(5));
            }
        })
        .timeout(Duration::from_millis(100)),
    )
    .unwrap();
    r.register(Resource::new("fine", || ())).unwrap();
    let started = Instant::now();
    let report = within(Duration::from_secs(10), move || r.cleanup_all_blocking());
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(
        matches!(report.get("hangs").unwrap().status(), Status::TimedOut(t) if *t == Duration::from_millis(100))
    );
    assert!(report.get("fine").unwrap().status().is_ok());
    release.store(true, Ordering::SeqCst); // let the detached thread end
}

#[tokio::test]
async fn an_async_cleanup_hanging_forever_is_dropped_at_its_timeout() {
    let dropped = Arc::new(AtomicBool::new(false));
    struct SetOnDrop(Arc<AtomicBool>);
    impl Drop for SetOnDrop {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }
    let guard = SetOnDrop(dropped.clone());
    let r = Registry::new();
    r.register(
        Resource::new_async("hangs", async move {
            let _g = guard;
            std::future::pending::<()>().await;
        })
        .timeout(Duration::from_millis(100)),
    )
    .unwrap();
    for i in 0..100 {
        r.register(Resource::new_async(format!("fast-{i}"), async {})).unwrap();
    }
    let report = bounded(Duration::from_secs(10), r.cleanup_all()).await;
    assert_eq!(report.totals().ok, 100);
    assert!(matches!(report.get("hangs").unwrap().status(), Status::TimedOut(_)));
    assert!(dropped.load(Ordering::SeqCst), "the abandoned future was dropped");
    assert!(r.is_empty());
}

#[tokio::test]
async fn the_overall_deadline_skips_what_has_not_started_and_keeps_it_registered() {
    let r = Registry::builder().max_concurrency(1).build().unwrap();
    r.register(Resource::new_async("second", async {})).unwrap();
    r.register(Resource::new_async("first-hangs", std::future::pending::<()>())).unwrap();
    let opts = TeardownOptions::new().deadline(Duration::from_millis(100));
    let report = bounded(Duration::from_secs(10), r.teardown(Selection::All, opts)).await;
    assert!(matches!(report.get("first-hangs").unwrap().status(), Status::TimedOut(_)));
    assert!(matches!(report.get("second").unwrap().status(), Status::Skipped(SkipReason::Deadline)));
    assert!(r.contains("second") && !r.contains("first-hangs"));
    let retry = bounded(Duration::from_secs(10), r.cleanup_all()).await;
    assert!(retry.is_success() && retry.len() == 1, "a later teardown retries the skipped one");
}

#[test]
fn a_cleanup_that_registers_a_resource_gets_it_cleaned_in_the_same_run() {
    let log = Log::new();
    let r = Registry::new();
    let r2 = r.clone();
    let l = log.clone();
    r.register(Resource::new("spawner", move || {
        l.push("spawner");
        let l2 = l.clone();
        r2.register(Resource::new("spawned", move || l2.push("spawned"))).unwrap();
        let l3 = l.clone();
        r2.register(Resource::new_async("spawned-async", async move { l3.push("spawned-async") })).unwrap();
    }))
    .unwrap();
    let report = within(Duration::from_secs(10), move || r.cleanup_all_blocking());
    assert_eq!(report.len(), 3, "{report}");
    assert!(report.is_success());
    assert_eq!(log.count("spawned"), 1);
    assert_eq!(log.count("spawned-async"), 1);
}

#[tokio::test]
async fn a_registration_during_a_subset_teardown_that_depends_on_it_is_cascaded() {
    let r = Registry::builder().max_concurrency(1).build().unwrap();
    let log = Log::new();
    r.register(Resource::new("target", log.rec("target"))).unwrap();
    let (r2, l) = (r.clone(), log.clone());
    r.register(
        Resource::new_async("user", async move {
            // While "user" is being cleaned, something new starts using "target".
            let l2 = l.clone();
            r2.register(Resource::new("late-user", move || l2.push("late-user")).depends_on(["target"]))
                .unwrap();
            l.push("user");
        })
        .depends_on(["target"]),
    )
    .unwrap();
    r.register(Resource::new("bystander", || ())).unwrap();
    let report =
        bounded(Duration::from_secs(10), r.teardown(Selection::id("target"), TeardownOptions::new())).await;
    assert_eq!(log.entries(), ["user", "late-user", "target"]);
    assert!(report.get("late-user").unwrap().is_cascaded());
    assert!(r.contains("bystander"));
}

#[test]
fn a_cleanup_calling_teardown_on_its_own_registry_returns_instead_of_deadlocking() {
    let r = Registry::new();
    let inner_reports = Arc::new(std::sync::Mutex::new(Vec::new()));
    let (r2, rep) = (r.clone(), inner_reports.clone());
    r.register(Resource::new("sync-reenters", move || {
        let report = r2.cleanup_all_blocking();
        rep.lock().unwrap().push(report.is_reentrant());
        let report = r2.teardown_blocking(Selection::id("x"), TeardownOptions::new());
        rep.lock().unwrap().push(report.is_reentrant());
    }))
    .unwrap();
    let (r3, rep) = (r.clone(), inner_reports.clone());
    r.register(Resource::new_async("async-reenters", async move {
        let report = r3.shutdown().await;
        rep.lock().unwrap().push(report.is_reentrant());
    }))
    .unwrap();
    let report = within(Duration::from_secs(10), move || r.cleanup_all_blocking());
    assert!(report.is_success(), "{report}");
    assert_eq!(*inner_reports.lock().unwrap(), [true, true, true]);
}

#[test]
fn concurrent_teardown_calls_share_one_run() {
    let runs = Arc::new(AtomicUsize::new(0));
    let r = Registry::new();
    for i in 0..50 {
        let runs = runs.clone();
        r.register(Resource::new(format!("r{i}"), move || {
            runs.fetch_add(1, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(2));
        }))
        .unwrap();
    }
    let reports = within(Duration::from_secs(20), move || {
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let r = r.clone();
                std::thread::spawn(move || r.cleanup_all_blocking())
            })
            .collect();
        threads.into_iter().map(|t| t.join().unwrap()).collect::<Vec<_>>()
    });
    assert_eq!(runs.load(Ordering::SeqCst), 50, "every cleanup ran exactly once");
    let sizes: Vec<usize> = reports.iter().map(|r| r.len()).collect();
    // Each caller either joined the run (50 entries) or came after it ended (0 left).
    assert!(sizes.iter().all(|&n| n == 50 || n == 0), "{sizes:?}");
    assert!(sizes.iter().filter(|&&n| n == 50).count() >= 2, "the run was shared: {sizes:?}");
}

#[test]
fn eight_threads_register_and_unregister_while_a_teardown_runs() {
    let r = Registry::new();
    let ran = Arc::new(AtomicUsize::new(0));
    for i in 0..200 {
        let ran = ran.clone();
        r.register(Resource::new(format!("seed-{i}"), move || {
            ran.fetch_add(1, Ordering::SeqCst);
            std::thread::sleep(Duration::from_micros(200));
        }))
        .unwrap();
    }
    let outcome = within(Duration::from_secs(30), {
        let r = r.clone();
        let ran = ran.clone();
        move || {
            let tearer = {
                let r = r.clone();
                std::thread::spawn(move || r.cleanup_all_blocking())
            };
            let workers: Vec<_> = (0..8)
                .map(|t| {
                    let r = r.clone();
                    let ran = ran.clone();
                    std::thread::spawn(move || {
                        let (mut registered, mut unregistered) = (0usize, 0usize);
                        for i in 0..300 {
                            let ran = ran.clone();
                            let id = format!("t{t}-{i}");
                            if r.register(Resource::new(id.clone(), move || {
                                ran.fetch_add(1, Ordering::SeqCst);
                            }))
                            .is_ok()
                            {
                                registered += 1;
                            }
                            if i % 2 == 0 && r.unregister(&id).ok().flatten().is_some() {
                                unregistered += 1;
                            }
                        }
                        (registered, unregistered)
                    })
                })
                .collect();
            let counts: Vec<(usize, usize)> = workers.into_iter().map(|w| w.join().unwrap()).collect();
            let first = tearer.join().unwrap();
            let second = r.cleanup_all_blocking();
            (counts, first, second)
        }
    });
    let (counts, first, second) = outcome;
    let registered: usize = counts.iter().map(|c| c.0).sum::<usize>() + 200;
    let unregistered: usize = counts.iter().map(|c| c.1).sum();
    // Every resource either was handed back by unregister, or ran exactly once.
    assert_eq!(ran.load(Ordering::SeqCst), registered - unregistered);
    assert_eq!(first.len() + second.len(), registered - unregistered);
    assert!(first.is_success() && second.is_success());
    assert!(r.is_empty());
}

#[tokio::test]
async fn dropping_the_teardown_future_leaves_unstarted_resources_registered() {
    let r = Registry::builder().max_concurrency(1).build().unwrap();
    r.register(Resource::new_async("later", async {})).unwrap();
    r.register(Resource::new_async("slow", tokio::time::sleep(Duration::from_secs(60)))).unwrap();
    let result = tokio::time::timeout(Duration::from_millis(50), r.cleanup_all()).await;
    assert!(result.is_err(), "timed out as intended");
    assert!(r.contains("later"), "never started: still registered");
    assert!(!r.contains("slow"), "dropped with the future");
    let report = bounded(Duration::from_secs(10), r.cleanup_all()).await;
    assert_eq!(report.len(), 1);
    assert!(report.is_success());
}

#[tokio::test]
async fn one_hanging_cleanup_among_a_thousand_fast_ones_is_bounded_by_its_timeout() {
    let r = Registry::new();
    r.register(
        Resource::new_async("hangs", std::future::pending::<()>()).timeout(Duration::from_millis(100)),
    )
    .unwrap();
    for i in 0..1000 {
        r.register(Resource::new_async(format!("f{i}"), async {})).unwrap();
    }
    let start = Instant::now();
    let report = bounded(Duration::from_secs(10), r.cleanup_all()).await;
    let took = start.elapsed();
    assert_eq!(report.totals().ok, 1000);
    assert_eq!(report.totals().timed_out, 1);
    // Not a timing assertion on speed: only that the timeout, not the hang, ended it.
    assert!(took < Duration::from_secs(5), "{took:?}");
}

#[test]
fn a_registration_during_teardown_that_is_excluded_stays_registered() {
    // Regression: registrations absorbed into a running teardown ignored its exclusions.
    let r = Registry::new();
    let r2 = r.clone();
    r.register(Resource::new("spawner", move || {
        r2.register(Resource::new("late-db", || ()).category(closeout::Category::Database)).unwrap();
        r2.register(Resource::new("late-other", || ())).unwrap();
    }))
    .unwrap();
    let opts = TeardownOptions::new().exclude_category(closeout::Category::Database);
    let report = within(Duration::from_secs(10), move || {
        let report = r.teardown_blocking(Selection::All, opts);
        assert!(r.contains("late-db") && !r.contains("late-other"));
        report
    });
    assert!(report.get("late-db").is_none());
    assert!(report.get("late-other").unwrap().status().is_ok());
}

/// Eight threads register resources that depend on seeds and on each other while a teardown
/// runs, and unregister some. Every cleanup takes a ticket when it starts and when it ends: a
/// dependent must end before its dependency starts, every resource runs at most once, and what
/// did not run was handed back. Runs in debug builds too (overflow checks on).
#[test]
fn eight_threads_registering_dependents_during_a_teardown_keep_dependency_order() {
    use std::collections::HashMap;
    use std::sync::Mutex;
    type Tickets = Arc<Mutex<HashMap<String, (u64, u64)>>>;
    let clock = Arc::new(AtomicUsize::new(0));
    let tickets: Tickets = Arc::default();
    let make = |id: String, clock: &Arc<AtomicUsize>, tickets: &Tickets, pause: bool| {
        let (clock, tickets) = (clock.clone(), tickets.clone());
        let key = id.clone();
        Resource::new(id, move || {
            let start = clock.fetch_add(1, Ordering::SeqCst) as u64;
            if pause {
                std::thread::sleep(Duration::from_micros(100));
            }
            let end = clock.fetch_add(1, Ordering::SeqCst) as u64;
            let before = tickets.lock().unwrap().insert(key.clone(), (start, end));
            assert!(before.is_none(), "{key} ran twice");
        })
    };
    for round in 0..3 {
        let r = Registry::builder().max_concurrency(if round == 0 { 1 } else { 4 }).build().unwrap();
        for i in 0..100 {
            let mut res = make(format!("r{round}-seed-{i}"), &clock, &tickets, true);
            if i > 0 {
                res = res.depends_on([format!("r{round}-seed-{}", i / 2)]);
            }
            r.register(res).unwrap();
        }
        let edges: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
        let handed_back = Arc::new(AtomicUsize::new(0));
        let registered = Arc::new(AtomicUsize::new(100));
        within(Duration::from_secs(60), {
            let (r, clock, tickets, edges, handed_back, registered) = (
                r.clone(),
                clock.clone(),
                tickets.clone(),
                edges.clone(),
                handed_back.clone(),
                registered.clone(),
            );
            move || {
                let tearer = {
                    let r = r.clone();
                    std::thread::spawn(move || r.cleanup_all_blocking())
                };
                let workers: Vec<_> = (0..8)
                    .map(|t| {
                        let (r, clock, tickets, edges, handed_back, registered) = (
                            r.clone(),
                            clock.clone(),
                            tickets.clone(),
                            edges.clone(),
                            handed_back.clone(),
                            registered.clone(),
                        );
                        std::thread::spawn(move || {
                            for i in 0..150u64 {
                                let id = format!("r{round}-t{t}-{i}");
                                let dep = match i % 3 {
                                    0 => format!("r{round}-seed-{}", (i * 7 + t) % 100),
                                    1 if i > 1 => format!("r{round}-t{t}-{}", i - 1),
                                    _ => format!("r{round}-t{}-{}", (t + 1) % 8, i / 2),
                                };
                                let res = make(id.clone(), &clock, &tickets, false).depends_on([dep.clone()]);
                                if r.register(res).is_ok() {
                                    registered.fetch_add(1, Ordering::SeqCst);
                                    edges.lock().unwrap().push((id.clone(), dep));
                                }
                                if i % 5 == 0 && r.unregister(&id).ok().flatten().is_some() {
                                    handed_back.fetch_add(1, Ordering::SeqCst);
                                }
                            }
                        })
                    })
                    .collect();
                for w in workers {
                    w.join().unwrap();
                }
                let first = tearer.join().unwrap();
                let second = r.cleanup_all_blocking();
                assert!(first.is_success() && second.is_success(), "{first}\n{second}");
                assert!(r.is_empty());
            }
        });
        let tickets = tickets.lock().unwrap();
        let prefix = format!("r{round}-");
        let ran = tickets.keys().filter(|k| k.starts_with(&prefix)).count();
        assert_eq!(
            ran + handed_back.load(Ordering::SeqCst),
            registered.load(Ordering::SeqCst),
            "every resource ran once or was handed back"
        );
        let edges = edges.lock().unwrap();
        assert!(edges.len() > 100, "the workers registered dependents: {}", edges.len());
        for (a, b) in edges.iter() {
            if let (Some(ta), Some(tb)) = (tickets.get(a), tickets.get(b)) {
                assert!(
                    ta.1 < tb.0,
                    "{a} depends on {b} but ended at {} after {b} started at {}",
                    ta.1,
                    tb.0
                );
            }
        }
    }
}

/// A cleanup that registers a fresh resource like itself every time it runs: without a bound,
/// `cleanup_all` would never end. One run takes in a bounded number; the rest stays registered,
/// reported as skipped, for a later teardown. Sync and async cleanups, one at a time and not.
#[test]
fn a_cleanup_that_re_registers_itself_cannot_keep_a_run_going_forever() {
    fn chain(r: &Registry, n: u64, is_async: bool) -> Resource {
        let r2 = r.clone();
        let next = move || {
            let next = chain(&r2, n + 1, is_async);
            let _ = r2.register(next);
        };
        if is_async {
            Resource::new_async(format!("link-{n}"), async move { next() })
        } else {
            Resource::new(format!("link-{n}"), next)
        }
    }
    for is_async in [false, true] {
        for mc in [1, 8] {
            let r = Registry::builder().max_concurrency(mc).build().unwrap();
            r.register(chain(&r, 0, is_async)).unwrap();
            let r2 = r.clone();
            let report = within(Duration::from_secs(30), move || r2.cleanup_all_blocking());
            let skipped: Vec<_> = report
                .entries()
                .iter()
                .filter(|e| matches!(e.status(), Status::Skipped(SkipReason::RunLimit { .. })))
                .collect();
            assert_eq!(skipped.len(), 1, "async={is_async} mc={mc}: {}", report.totals());
            assert_eq!(report.totals().ok, 1 + MIN_LATE_LIMIT, "async={is_async} mc={mc}");
            assert_eq!(r.len(), 1, "the rest stays registered");
            // A later teardown takes it (and the chain goes on, bounded again).
            let again = within(Duration::from_secs(30), {
                let r = r.clone();
                move || r.cleanup_all_blocking()
            });
            assert!(again.totals().ok >= 1);
            r.clear();
        }
    }
}

/// The engine's `MIN_LATE_LIMIT`: the most one run of a one-resource registry takes in.
const MIN_LATE_LIMIT: usize = 16_384;

/// An observer that blocks does not make a teardown overrun its deadline: it runs on a thread
/// of its own, and the teardown waits for it only until the deadline.
#[test]
fn a_blocking_observer_cannot_make_a_teardown_overrun_its_deadline() {
    let seen = Arc::new(AtomicUsize::new(0));
    let s = seen.clone();
    let r = Registry::builder()
        .deadline(Duration::from_millis(150))
        .observer(move |e| {
            if e.name() == "cleaned" {
                std::thread::sleep(Duration::from_millis(400)); // 2 s for the five
            }
            s.fetch_add(1, Ordering::SeqCst);
        })
        .build()
        .unwrap();
    for i in 0..5 {
        r.register(Resource::new(format!("r{i}"), || ())).unwrap();
    }
    let started = Instant::now();
    let report = within(Duration::from_secs(10), move || r.cleanup_all_blocking());
    let took = started.elapsed();
    assert_eq!(report.totals().ok, 5, "every cleanup ran: {report}");
    assert!(took < Duration::from_secs(1), "took {took:?} with a 150 ms deadline");
    // The observer still gets every event, later, in order.
    let until = Instant::now() + Duration::from_secs(20);
    while seen.load(Ordering::SeqCst) < 5 + 5 + 2 {
        assert!(Instant::now() < until, "the observer saw {} events", seen.load(Ordering::SeqCst));
        std::thread::sleep(Duration::from_millis(20));
    }
}
