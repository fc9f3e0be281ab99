//! Tracked tasks, threads, blocking jobs and timers (`Owner`), in scopes and registries: cancel
//! first, one grace period, then abort or detach, with each outcome in the report. Real tokio
//! runtimes and real threads; every wait is bounded.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use closeout::owner::{Abandoned, Aborted, Owner, Spawn, SpawnFailure};
use closeout::{Error, Registry, Resource, Scope, Selection, Status, TeardownOptions};
use common::{Log, within};

const LIMIT: Duration = Duration::from_secs(20);

fn failed_with<E: std::error::Error + 'static>(status: &Status) -> bool {
    matches!(status, Status::Failed(e) if e.get_ref().is::<E>())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn teardown_reports_finished_aborted_and_panicked_tasks() {
    let registry = Registry::new();
    let quick = Spawn::new("stubborn").grace(Duration::from_millis(100));
    registry.spawn("polite", |token| async move { token.cancelled().await }).unwrap();
    registry.spawn(quick, |_token| std::future::pending::<()>()).unwrap();
    let boom = registry.spawn("boom", |_token| async { panic!("task failed") }).unwrap();
    assert!(boom.await.unwrap_err().is_panic(), "the JoinHandle sees the panic as with tokio::spawn");
    // The panicked task kept its entry; the others are live.
    assert_eq!(registry.len(), 3);

    let report = tokio::time::timeout(LIMIT, registry.shutdown()).await.unwrap();
    assert_eq!(report.len(), 3, "{report}");
    assert!(report.get("polite").unwrap().status().is_ok(), "{report}");
    assert!(failed_with::<Aborted>(report.get("stubborn").unwrap().status()), "{report}");
    assert!(
        matches!(report.get("boom").unwrap().status(), Status::Panicked(m) if m == "task failed"),
        "{report}"
    );
    assert!(report.entries().iter().all(|e| *e.category() == closeout::Category::Task));
}

#[tokio::test(flavor = "current_thread")]
async fn finished_tasks_leave_no_entry_behind() {
    let scope = Scope::new();
    let registry = Registry::new();
    for i in 0..100u32 {
        let a = scope.spawn("s", move |_| async move { i }).unwrap();
        let b = registry.spawn("r", move |_| async move { i }).unwrap();
        assert_eq!((a.await.unwrap(), b.await.unwrap()), (i, i));
    }
    assert!(scope.is_empty(), "{} left in the scope", scope.len());
    assert!(registry.is_empty(), "{} left in the registry", registry.len());
}

#[tokio::test(flavor = "current_thread")]
async fn tasks_in_one_scope_share_one_grace_period() {
    let scope = Scope::new();
    let grace = Duration::from_millis(300);
    for _ in 0..5 {
        scope.spawn(Spawn::new("deaf").grace(grace), |_| std::future::pending::<()>()).unwrap();
    }
    let started = Instant::now();
    let report = scope.close_async().await;
    let took = started.elapsed();
    assert_eq!(report.totals().failed, 5, "{report}");
    assert!(report.entries().iter().all(|e| failed_with::<Aborted>(e.status())));
    // One after another, five graces would take 1.5 s; shared, about 0.3 s.
    assert!(took < grace * 4, "took {took:?}: the grace periods were not shared");
}

#[tokio::test(flavor = "current_thread")]
async fn the_token_is_cancelled_before_any_cleanup_runs() {
    let registry = Registry::new();
    let token = registry.token();
    let seen = Log::new();
    let (t, l) = (token.clone(), seen.clone());
    registry
        .register(Resource::new("first", move || l.push(format!("cancelled={}", t.is_cancelled()))))
        .unwrap();
    let report = registry.cleanup_all().await;
    assert!(report.is_success());
    assert_eq!(seen.entries(), ["cancelled=true"]);
    // Still usable: a fresh token for what comes next.
    assert!(!registry.token().is_cancelled());

    let scope = Scope::new();
    let child = scope.child().unwrap();
    let child_token = child.token();
    let (t, l) = (scope.token(), seen.clone());
    scope.defer(move || l.push(format!("scope cancelled={}", t.is_cancelled()))).unwrap();
    drop(scope.close());
    assert!(child_token.is_cancelled(), "a child's token is a child of its parent's");
    assert_eq!(seen.entries()[1], "scope cancelled=true");
    drop(child);
}

#[tokio::test(flavor = "current_thread")]
async fn a_subset_teardown_stops_only_its_own_task() {
    let registry = Registry::new();
    let stopped = Log::new();
    for name in ["a", "b"] {
        let l = stopped.clone();
        registry
            .spawn(name, move |token| async move {
                token.cancelled().await;
                l.push(name);
            })
            .unwrap();
    }
    let report = registry.teardown(Selection::id("a"), TeardownOptions::new()).await;
    assert!(report.get("a").unwrap().status().is_ok(), "{report}");
    assert_eq!(stopped.entries(), ["a"]);
    assert!(registry.contains("b"));
    assert!(!registry.token().is_cancelled());
    registry.shutdown().await;
    assert_eq!(stopped.entries(), ["a", "b"]);
}

#[test]
fn refused_work_is_handed_back_unstarted() {
    // No runtime: tasks and timers cannot start, and say why.
    let scope = Scope::new();
    let err = scope.spawn("t", |_| async { 1 }).unwrap_err();
    assert!(matches!(err.error(), SpawnFailure::NoRuntime));
    let err = scope.set_timeout(Duration::from_millis(1), || ()).unwrap_err();
    assert!(matches!(err.error(), SpawnFailure::NoRuntime));
    assert!(scope.is_empty());

    // Released scope, shut-down registry: the closure comes back uncalled.
    let _ = scope.close_shared();
    let err = scope.spawn_blocking("late", || 5).unwrap_err();
    assert!(matches!(err.error(), SpawnFailure::Released));
    assert_eq!((err.into_inner())(), 5);
    let registry = Registry::new();
    let _ = registry.shutdown_blocking();
    let err = registry.spawn_thread("late", |_stop| 6).unwrap_err();
    assert!(matches!(err.error(), SpawnFailure::Refused(Error::Closed)));

    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let _enter = rt.enter();
    let err = Scope::new().set_interval(Duration::ZERO, || ()).unwrap_err();
    assert!(matches!(err.error(), SpawnFailure::ZeroPeriod));
}

#[test]
fn threads_stop_on_their_flag_and_deaf_ones_are_detached_and_reported() {
    within(LIMIT, || {
        let scope = Scope::new();
        let loops = Arc::new(AtomicUsize::new(0));
        let l = loops.clone();
        let polite = scope
            .spawn_thread("polite", move |stop| {
                while !stop.wait_timeout(Duration::from_secs(60)) {
                    l.fetch_add(1, Ordering::Relaxed);
                }
                "stopped"
            })
            .unwrap();
        scope
            .spawn_thread(Spawn::new("deaf").grace(Duration::from_millis(100)), |_stop| {
                std::thread::sleep(Duration::from_secs(3600))
            })
            .unwrap();
        scope.spawn_thread("panics", |_stop| -> () { panic!("thread failed") }).unwrap();
        scope
            .spawn_blocking(Spawn::new("endless").grace(Duration::from_millis(100)), || {
                std::thread::sleep(Duration::from_secs(3600))
            })
            .unwrap();
        std::thread::sleep(Duration::from_millis(50));
        let report = scope.close(); // no runtime here: closed from plain sync code
        assert_eq!(polite.join().unwrap(), "stopped");
        assert_eq!(loops.load(Ordering::Relaxed), 0, "woken by the flag, not by its 60 s timeout");
        assert!(report.get("polite").unwrap().status().is_ok(), "{report}");
        assert!(failed_with::<Abandoned>(report.get("deaf").unwrap().status()), "{report}");
        assert!(failed_with::<Abandoned>(report.get("endless").unwrap().status()), "{report}");
        assert!(
            matches!(report.get("panics").unwrap().status(), Status::Panicked(m) if m == "thread failed")
        );
    });
}

#[test]
fn a_blocking_job_that_never_returns_does_not_hold_up_the_runtime() {
    within(LIMIT, || {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let registry = Registry::new();
        rt.block_on(async {
            registry
                .spawn_blocking(Spawn::new("endless").grace(Duration::from_millis(50)), || {
                    std::thread::sleep(Duration::from_secs(3600))
                })
                .unwrap();
            let report = registry.shutdown().await;
            assert!(failed_with::<Abandoned>(report.get("endless").unwrap().status()), "{report}");
        });
        // A `spawn_blocking` job would make this wait for an hour.
        drop(rt);
    });
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn timers_fire_once_clear_on_release_and_leave_nothing_behind() {
    let scope = Scope::new();
    let fired = Arc::new(AtomicUsize::new(0));
    for _ in 0..10_000 {
        let f = fired.clone();
        scope
            .set_timeout(Duration::from_millis(10), move || {
                f.fetch_add(1, Ordering::Relaxed);
            })
            .unwrap();
    }
    let f = fired.clone();
    let late = scope.set_timeout(Duration::from_secs(3600), move || {
        f.fetch_add(1_000_000, Ordering::Relaxed);
    });
    assert!(!late.unwrap().is_finished());
    tokio::time::sleep(Duration::from_millis(20)).await;
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert_eq!(fired.load(Ordering::Relaxed), 10_000);
    assert_eq!(scope.len(), 1, "fired timeouts removed their entries; the pending one stays");

    let ticks = Arc::new(AtomicUsize::new(0));
    let t = ticks.clone();
    scope
        .set_interval(Duration::from_millis(10), move || {
            t.fetch_add(1, Ordering::Relaxed);
        })
        .unwrap();
    tokio::time::sleep(Duration::from_millis(55)).await;
    assert_eq!(ticks.load(Ordering::Relaxed), 5);
    let report = scope.close_async().await;
    assert!(report.is_success(), "{report}");
    tokio::time::sleep(Duration::from_secs(7200)).await;
    assert_eq!(fired.load(Ordering::Relaxed), 10_000, "the pending timeout was cleared");
    assert_eq!(ticks.load(Ordering::Relaxed), 5, "the interval was cleared");
}

#[tokio::test(flavor = "current_thread")]
async fn a_panicking_timer_is_reported_and_clear_removes_a_pending_one() {
    let registry = Registry::new();
    registry.set_timeout(Duration::from_millis(1), || panic!("timer failed")).unwrap();
    let pending = registry.set_timeout(Duration::from_secs(3600), || ()).unwrap();
    tokio::time::sleep(Duration::from_millis(30)).await;
    assert_eq!(registry.len(), 2);
    assert!(pending.clear());
    assert_eq!(registry.len(), 1);
    let report = registry.shutdown().await;
    assert!(matches!(report.get("timeout#1").unwrap().status(), Status::Panicked(m) if m == "timer failed"));
    assert_eq!(*report.get("timeout#1").unwrap().category(), closeout::Category::Timer);
}

/// The watchdog: a task past its limit is cancelled while its owner lives, and the owner's
/// teardown reports it as `Overran`; a task within its limit is untouched (its output comes
/// through and its entry goes); both owners, both runtime flavors.
#[test]
fn a_task_past_its_limit_is_cancelled_and_reported() {
    for flavor in ["current_thread", "multi_thread"] {
        let rt = match flavor {
            "current_thread" => tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap(),
            _ => tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap(),
        };
        rt.block_on(async {
            let registry = Registry::new();
            let scope = Scope::new();
            let stuck = |_t| async { tokio::time::sleep(Duration::from_secs(60)).await };
            let limited = |name: &str| Spawn::new(name.to_owned()).limit(Duration::from_millis(30));
            let r_stuck = registry.spawn(limited("r-stuck"), stuck).unwrap();
            let s_stuck = scope.spawn(limited("s-stuck"), stuck).unwrap();
            let r_quick = registry.spawn(limited("r-quick"), |_t| async { 7 }).unwrap();
            let s_quick = scope.spawn(limited("s-quick"), |_t| async { 8 }).unwrap();
            assert_eq!(r_quick.await.unwrap(), 7);
            assert_eq!(s_quick.await.unwrap(), 8);
            let started = std::time::Instant::now();
            assert!(r_stuck.await.unwrap_err().is_cancelled(), "{flavor}");
            assert!(s_stuck.await.unwrap_err().is_cancelled(), "{flavor}");
            assert!(started.elapsed() < Duration::from_secs(5), "cancelled at the limit, not at the end");
            // The finished ones left; the cancelled ones stay for the report.
            assert!(!registry.contains("r-quick") && registry.contains("r-stuck"));
            let report = registry.shutdown().await;
            let overran = |status: &Status| matches!(status, Status::Failed(e) if e.get_ref().is::<closeout::owner::Overran>());
            assert!(overran(report.get("r-stuck").unwrap().status()), "{report}");
            let report = scope.close_async().await;
            assert!(overran(report.get("s-stuck").unwrap().status()), "{report}");
        });
    }
}
