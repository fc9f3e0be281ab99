//! `Scope`: LIFO release, failures kept, idempotence, hand-back after release, handles, take,
//! child scopes, Drop with and without a runtime.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use closeout::{Scope, Status};
use common::{Log, boom, within};

#[test]
fn releases_last_in_first_out() {
    let log = Log::new();
    let scope = Scope::new();
    for i in 0..5 {
        scope.defer(log.rec(format!("a{i}"))).unwrap();
    }
    let report = scope.close();
    assert_eq!(log.entries(), ["a4", "a3", "a2", "a1", "a0"]);
    assert_eq!(report.len(), 5);
    assert!(report.is_success());
}

#[test]
fn every_action_runs_when_others_fail_or_panic_and_errors_are_kept_in_order() {
    let log = Log::new();
    let scope = Scope::new();
    scope.defer(log.rec("first-deferred")).unwrap();
    scope.defer_named("fails-1", || Err::<(), _>(boom("one"))).unwrap();
    scope.defer_named("panics", || -> () { panic!("kaboom") }).unwrap();
    scope.defer_named("fails-2", || Err::<(), _>(boom("two"))).unwrap();
    scope.defer(log.rec("last-deferred")).unwrap();
    let report = scope.close();
    assert_eq!(log.entries(), ["last-deferred", "first-deferred"]);
    let failures: Vec<(&str, String)> = report.failures().map(|e| (e.id(), e.status().to_string())).collect();
    assert_eq!(
        failures,
        [
            ("fails-2", "failed: two".to_string()),
            ("panics", "panicked: kaboom".to_string()),
            ("fails-1", "failed: one".to_string())
        ]
    );
    let err = report.into_result().unwrap_err();
    assert_eq!(err.failures().len(), 3);
}

#[test]
fn release_twice_is_a_no_op() {
    let count = Arc::new(AtomicUsize::new(0));
    let scope = Scope::new();
    let c = count.clone();
    scope
        .defer(move || {
            c.fetch_add(1, Ordering::SeqCst);
        })
        .unwrap();
    assert_eq!(scope.close_shared().len(), 1);
    assert!(scope.close_shared().is_empty());
    drop(scope);
    assert_eq!(count.load(Ordering::SeqCst), 1);
}

#[test]
fn defer_after_release_hands_the_action_back_unrun() {
    let log = Log::new();
    let scope = Scope::new();
    let _ = scope.close_shared();
    assert!(scope.is_closed());
    let rejected = scope.defer(log.rec("late")).unwrap_err();
    assert!(log.entries().is_empty(), "not run behind our back");
    (rejected.into_inner())();
    assert_eq!(log.entries(), ["late"], "handed back intact");
    let l = log.clone();
    let fut_back = scope.defer_async(async move { l.push("late-async") }).unwrap_err().into_inner();
    assert_eq!(log.entries(), ["late"]);
    futures_lite_block_on(fut_back);
    assert_eq!(log.entries(), ["late", "late-async"]);
}

fn futures_lite_block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f)
}

#[test]
fn cancel_in_any_order_is_exact() {
    let log = Log::new();
    let scope = Scope::new();
    let mut handles: Vec<_> = (0..10).map(|i| Some(scope.defer(log.rec(format!("{i}"))).unwrap())).collect();
    // Cancel in a scrambled order: 3, 0, 9, 5.
    for i in [3, 0, 9, 5] {
        assert!(handles[i].take().unwrap().cancel());
    }
    assert_eq!(scope.len(), 6);
    // A new action reuses a cancelled slot but still runs first (it is the newest).
    scope.defer(log.rec("new")).unwrap();
    drop(handles);
    scope.close();
    assert_eq!(log.entries(), ["new", "8", "7", "6", "4", "2", "1"]);
}

#[test]
fn cancel_after_release_or_twice_says_false() {
    let scope = Scope::new();
    let a = scope.defer(|| ()).unwrap().into_owned();
    let b = scope.defer(|| ()).unwrap().into_owned();
    assert!(b.cancel());
    let _ = scope.close_shared();
    assert!(!a.cancel(), "already ran");
}

#[test]
fn owned_handle_cancels_from_another_thread() {
    let log = Log::new();
    let scope = Scope::new();
    let h = scope.defer(log.rec("cancelled")).unwrap().into_owned();
    scope.defer(log.rec("kept")).unwrap();
    assert!(std::thread::spawn(move || h.cancel()).join().unwrap());
    scope.close();
    assert_eq!(log.entries(), ["kept"]);
}

#[test]
fn take_moves_everything_and_handles_follow() {
    let log = Log::new();
    let mut scope = Scope::new();
    scope.defer(log.rec("a")).unwrap();
    let h = scope.defer(log.rec("b")).unwrap().into_owned();
    scope.defer(log.rec("c")).unwrap();
    let owned = scope.take();
    assert!(scope.is_empty() && !scope.is_closed(), "the original stays usable");
    scope.defer(log.rec("after-take")).unwrap();
    assert!(h.cancel(), "handle follows its action");
    drop(scope);
    assert_eq!(log.entries(), ["after-take"]);
    owned.close();
    assert_eq!(log.entries(), ["after-take", "c", "a"]);
}

#[test]
fn build_all_or_nothing_releases_partial_work_on_error() {
    let log = Log::new();
    let build = |fail: bool| -> Result<Scope, std::io::Error> {
        let mut scope = Scope::new();
        scope.defer(log.rec("undo-1")).unwrap();
        if fail {
            return Err(boom("step 2 failed"));
        }
        scope.defer(log.rec("undo-2")).unwrap();
        Ok(scope.take())
    };
    assert!(build(true).is_err());
    assert_eq!(log.entries(), ["undo-1"], "partial work undone by Drop");
    let owned = build(false).unwrap();
    assert_eq!(log.entries(), ["undo-1"], "nothing released on success");
    drop(owned);
    assert_eq!(log.entries(), ["undo-1", "undo-2", "undo-1"]);
}

#[test]
fn child_is_released_at_its_position_before_the_parent_continues() {
    let log = Log::new();
    let parent = Scope::new();
    parent.defer(log.rec("p1")).unwrap();
    let child = parent.child().unwrap();
    child.defer(log.rec("c1")).unwrap();
    child.defer(log.rec("c2")).unwrap();
    parent.defer(log.rec("p2")).unwrap();
    let report = parent.close();
    assert_eq!(log.entries(), ["p2", "c2", "c1", "p1"]);
    assert_eq!(report.len(), 4);
    assert!(child.is_closed());
    assert!(child.defer(|| ()).is_err(), "a released child hands actions back");
}

#[test]
fn child_released_early_leaves_the_parent() {
    let log = Log::new();
    let parent = Scope::new();
    let child = parent.child().unwrap();
    child.defer(log.rec("c")).unwrap();
    assert_eq!(parent.len(), 1);
    drop(child);
    assert_eq!(log.entries(), ["c"]);
    assert_eq!(parent.len(), 0, "its parent entry is gone");
    assert!(parent.close().is_empty());
    assert_eq!(log.count("c"), 1);
}

#[test]
fn drop_releases() {
    let log = Log::new();
    {
        let scope = Scope::new();
        scope.defer(log.rec("x")).unwrap();
    }
    assert_eq!(log.entries(), ["x"]);
}

#[test]
fn drop_runs_async_actions_without_a_runtime() {
    let log = Log::new();
    within(Duration::from_secs(10), move || {
        let scope = Scope::new();
        scope.defer(log.rec("sync-first-deferred")).unwrap();
        scope.defer_async(log.rec_after(5, "async")).unwrap();
        scope.defer(log.rec("sync-last-deferred")).unwrap();
        drop(scope);
        assert_eq!(log.entries(), ["sync-last-deferred", "async", "sync-first-deferred"]);
    });
}

/// Drops a scope holding an async action (which needs a timer) inside `rt`: Drop must still
/// drive it to completion.
fn drop_inside(rt: tokio::runtime::Runtime) {
    within(Duration::from_secs(10), move || {
        rt.block_on(async {
            let log = Log::new();
            let scope = Scope::new();
            scope.defer_async(log.rec_after(5, "async")).unwrap();
            drop(scope);
            assert_eq!(log.entries(), ["async"]);
        });
    });
}

#[test]
fn drop_runs_async_actions_inside_a_multi_thread_runtime() {
    drop_inside(tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap());
}

#[test]
fn drop_runs_async_actions_inside_a_current_thread_runtime() {
    drop_inside(tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap());
}

#[tokio::test]
async fn close_async_awaits_in_order_with_sync_actions_between() {
    let log = Log::new();
    let scope = Scope::new();
    scope.defer(log.rec("s1")).unwrap();
    scope.defer_async(log.rec_after(10, "a1")).unwrap();
    scope.defer(log.rec("s2")).unwrap();
    let l = log.clone();
    scope.defer_async_named("fails", async move { Err::<(), _>(boom("async failure")) }).unwrap();
    let l2 = l.clone();
    scope
        .defer_async(async move {
            l2.push("a2");
        })
        .unwrap();
    let report = scope.close_async().await;
    assert_eq!(log.entries(), ["a2", "s2", "a1", "s1"]);
    assert!(matches!(report.get("fails").unwrap().status(), Status::Failed(_)));
    drop(l);
}

#[test]
fn async_action_that_panics_is_reported() {
    let scope = Scope::new();
    scope
        .defer_async_named("p", async {
            if true {
                panic!("async kaboom")
            }
        })
        .unwrap();
    let report = scope.close();
    assert!(matches!(report.get("p").unwrap().status(), Status::Panicked(m) if m == "async kaboom"));
}

#[test]
fn an_action_releasing_its_own_scope_returns_instead_of_deadlocking() {
    within(Duration::from_secs(10), || {
        let scope = Arc::new(Scope::new());
        let inner = Arc::downgrade(&scope);
        let log = Log::new();
        let l = log.clone();
        scope
            .defer(move || {
                let s = inner.upgrade().unwrap();
                assert!(s.close_shared().is_empty(), "re-entrant release is empty");
                // Deferring onto a scope that is being released hands the action back.
                assert!(s.defer(|| ()).is_err());
                l.push("ran");
            })
            .unwrap();
        let report = scope.close_shared();
        assert!(report.is_success(), "{report}");
        assert_eq!(log.entries(), ["ran"]);
    });
}

#[test]
fn scope_and_handles_are_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Scope>();
    assert_send_sync::<closeout::OwnedHandle>();
    assert_send_sync::<closeout::Handle<'static>>();
    assert_send_sync::<closeout::Registry>();
    assert_send_sync::<closeout::Report>();
}

#[test]
fn many_threads_defer_and_cancel_on_one_scope() {
    let scope = Arc::new(Scope::new());
    let ran = Arc::new(AtomicUsize::new(0));
    let kept = within(Duration::from_secs(20), {
        let scope = scope.clone();
        let ran = ran.clone();
        move || {
            let threads: Vec<_> = (0..8)
                .map(|t| {
                    let scope = scope.clone();
                    let ran = ran.clone();
                    std::thread::spawn(move || {
                        let mut kept = 0;
                        for i in 0..2_000 {
                            let r = ran.clone();
                            let h = scope
                                .defer(move || {
                                    r.fetch_add(1, Ordering::Relaxed);
                                })
                                .unwrap();
                            if (i + t) % 3 == 0 {
                                assert!(h.cancel());
                            } else {
                                kept += 1;
                            }
                        }
                        kept
                    })
                })
                .collect();
            threads.into_iter().map(|t| t.join().unwrap()).sum::<usize>()
        }
    });
    let report = scope.close_shared();
    assert_eq!(report.len(), kept);
    assert_eq!(ran.load(Ordering::Relaxed), kept);
}

#[test]
fn unnamed_successes_are_counted_named_actions_and_failures_are_listed() {
    let scope = Scope::new();
    for _ in 0..3 {
        scope.defer(|| ()).unwrap();
    }
    scope.defer_named("named", || std::thread::sleep(Duration::from_millis(5))).unwrap();
    scope.defer(|| Err::<(), _>(boom("unnamed failure"))).unwrap();
    let report = scope.close();
    assert_eq!(report.len(), 5);
    assert_eq!(report.unlisted_ok(), 3);
    assert_eq!(report.entries().len(), 2);
    let t = report.totals();
    assert_eq!((t.total, t.ok, t.failed), (5, 4, 1));
    assert!(report.get("named").unwrap().duration() >= Duration::from_millis(5), "named actions are timed");
    let text = report.to_string();
    assert!(text.contains("#5") && text.contains("unnamed failure"), "{text}");
    assert!(text.contains("3 unnamed scope action(s)"), "{text}");
}

#[test]
fn take_on_a_child_keeps_the_childs_place_in_its_parent() {
    let log = common::Log::new();
    let parent = Scope::new();
    parent.defer(log.rec("parent first")).unwrap();
    let mut child = parent.child().unwrap();
    parent.defer(log.rec("parent last")).unwrap();
    child.defer(log.rec("taken")).unwrap();
    let owned = child.take();
    child.defer(log.rec("child after take")).unwrap();
    assert_eq!(parent.len(), 3, "the child still counts once in its parent");
    let report = parent.close();
    assert_eq!(log.entries(), ["parent last", "child after take", "parent first"], "{report}");
    assert_eq!(owned.close().len(), 1);
    assert_eq!(log.entries().last().map(String::as_str), Some("taken"));
}

#[test]
fn a_scope_times_out_hung_actions_and_its_release_has_a_deadline() {
    use closeout::Status;
    // close_async, a blocking close and Drop, each with a hung async action among good ones.
    for how in ["close_async", "close", "drop"] {
        let log = common::Log::new();
        let scope = Scope::builder().deadline(Duration::from_millis(300)).build().unwrap();
        scope.defer(log.rec("sync first-deferred")).unwrap();
        scope.defer_async_named("hung", std::future::pending::<()>()).unwrap();
        scope
            .defer_async_within("own timeout", Duration::from_millis(50), std::future::pending::<()>())
            .unwrap();
        scope.defer(log.rec("sync last-deferred")).unwrap();
        let started = std::time::Instant::now();
        let report = common::within(Duration::from_secs(10), move || match how {
            "close_async" => {
                let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
                Some(rt.block_on(scope.close_async()))
            }
            "close" => Some(scope.close()),
            _ => {
                drop(scope);
                None
            }
        });
        let took = started.elapsed();
        assert!(took < Duration::from_secs(5), "{how}: bounded by the deadline, took {took:?}");
        assert_eq!(
            log.entries(),
            ["sync last-deferred", "sync first-deferred"],
            "{how}: every other action ran"
        );
        if let Some(report) = report {
            assert!(
                matches!(report.get("own timeout").unwrap().status(), Status::TimedOut(t) if *t == Duration::from_millis(50))
            );
            assert!(matches!(report.get("hung").unwrap().status(), Status::TimedOut(_)), "{report}");
            assert_eq!(report.totals().ok, 2, "{report}");
        }
    }
}

#[test]
fn an_action_timeout_covers_sync_and_async_actions() {
    use closeout::Status;
    let scope = Scope::builder().action_timeout(Duration::from_millis(50)).build().unwrap();
    scope.defer_named("stuck sync", || std::thread::sleep(Duration::from_secs(3))).unwrap();
    scope.defer_async_named("stuck async", std::future::pending::<()>()).unwrap();
    scope.defer_named("fine", || ()).unwrap();
    let report = common::within(Duration::from_secs(10), move || scope.close());
    assert!(matches!(report.get("stuck sync").unwrap().status(), Status::TimedOut(_)), "{report}");
    assert!(matches!(report.get("stuck async").unwrap().status(), Status::TimedOut(_)), "{report}");
    assert!(report.get("fine").unwrap().status().is_ok());
}

#[test]
fn scope_limits_are_validated_when_built() {
    use closeout::Error;
    for d in [Duration::ZERO, closeout::MAX_TIMEOUT + Duration::from_nanos(1), Duration::MAX] {
        assert!(matches!(
            Scope::builder().deadline(d).build(),
            Err(Error::ZeroTimeout(_) | Error::TimeoutTooLong { .. })
        ));
        assert!(matches!(
            Scope::builder().action_timeout(d).build(),
            Err(Error::ZeroTimeout(_) | Error::TimeoutTooLong { .. })
        ));
    }
    // A child inherits its parent's limits.
    let parent = Scope::builder().action_timeout(Duration::from_millis(20)).build().unwrap();
    let child = parent.child().unwrap();
    child.defer_async_named("hung", std::future::pending::<()>()).unwrap();
    let report = common::within(Duration::from_secs(10), move || {
        let _child = child; // released by its parent, in its place
        parent.close()
    });
    assert!(matches!(report.get("hung").unwrap().status(), closeout::Status::TimedOut(_)), "{report}");
}

#[test]
fn a_local_scope_runs_non_send_actions_last_in_first_out_whatever_they_do() {
    use closeout::{LocalScope, Status};
    use std::cell::RefCell;
    use std::rc::Rc;
    let log: Rc<RefCell<Vec<String>>> = Rc::default();
    let scope = Rc::new(LocalScope::new());
    for i in 0..5 {
        let l = Rc::clone(&log);
        let s = Rc::clone(&scope);
        scope
            .defer_named(format!("a{i}"), move || -> Result<(), std::io::Error> {
                l.borrow_mut().push(format!("a{i}"));
                match i {
                    1 => panic!("boom"),
                    2 => Err(std::io::Error::other("failed")),
                    3 => {
                        // Deferring during release is refused and hands the action back.
                        let back = s.defer(|| ()).unwrap_err().into_inner();
                        back();
                        Ok(())
                    }
                    _ => Ok(()),
                }
            })
            .unwrap();
    }
    let cancelled = scope.defer(|| -> () { unreachable!() }).unwrap();
    assert!(cancelled.cancel());
    let report = scope.close_shared();
    assert_eq!(*log.borrow(), ["a4", "a3", "a2", "a1", "a0"]);
    assert!(matches!(report.get("a1").unwrap().status(), Status::Panicked(m) if m == "boom"));
    assert!(matches!(report.get("a2").unwrap().status(), Status::Failed(_)));
    assert_eq!(report.totals().ok, 3);
    assert!(scope.close_shared().is_empty(), "releasing twice is a no-op");
    assert!(scope.defer(|| ()).is_err(), "released: handed back");
}

/// What one action of a generated sequence does.
#[derive(Clone, Copy, Debug)]
enum Act {
    Ok,
    Fail,
    Panic,
    Cancelled,
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

    /// `LocalScope` runs its unnamed actions in batches under one unwind guard; whatever mix of
    /// named, unnamed, failing, panicking and cancelled actions it holds, it runs them in the
    /// same order and reports the same entries and counts as `Scope` (the reference), and the
    /// order is last-in-first-out of what was not cancelled.
    #[test]
    fn a_local_scope_reports_exactly_what_a_scope_does(
        acts in proptest::collection::vec((0u8..4, proptest::bool::ANY), 0..40)
    ) {
        use closeout::LocalScope;
        use std::sync::Mutex;
        let acts: Vec<(Act, bool)> = acts
            .into_iter()
            .map(|(k, named)| ([Act::Ok, Act::Fail, Act::Panic, Act::Cancelled][k as usize], named))
            .collect();
        let action = |log: Arc<Mutex<Vec<usize>>>, i: usize, act: Act| {
            move || -> Result<(), std::io::Error> {
                log.lock().unwrap().push(i);
                match act {
                    Act::Fail => Err(std::io::Error::other(format!("failed {i}"))),
                    Act::Panic => std::panic::panic_any(format!("panicked {i}")),
                    _ => Ok(()),
                }
            }
        };
        let name = |i: usize, named: bool| if named { format!("n{i}") } else { String::new() };

        let scope_log = Arc::new(Mutex::new(Vec::new()));
        let scope = Scope::new();
        let mut cancel = Vec::new();
        for (i, &(act, named)) in acts.iter().enumerate() {
            let h = scope.defer_named(name(i, named), action(Arc::clone(&scope_log), i, act)).unwrap();
            if matches!(act, Act::Cancelled) {
                cancel.push(h);
            }
        }
        for h in cancel {
            assert!(h.cancel());
        }
        let expected = scope.close();

        let local_log = Arc::new(Mutex::new(Vec::new()));
        let local = LocalScope::new();
        let mut cancel = Vec::new();
        for (i, &(act, named)) in acts.iter().enumerate() {
            let h = local.defer_named(name(i, named), action(Arc::clone(&local_log), i, act)).unwrap();
            if matches!(act, Act::Cancelled) {
                cancel.push(h);
            }
        }
        for h in cancel {
            assert!(h.cancel());
        }
        let got = local.close();

        let order: Vec<usize> =
            (0..acts.len()).rev().filter(|&i| !matches!(acts[i].0, Act::Cancelled)).collect();
        proptest::prop_assert_eq!(&*local_log.lock().unwrap(), &order);
        proptest::prop_assert_eq!(&*scope_log.lock().unwrap(), &order);
        let summary = |r: &closeout::Report| -> Vec<(String, u64, String)> {
            r.entries().iter().map(|e| (e.id().to_owned(), e.seq(), e.status().to_string())).collect()
        };
        proptest::prop_assert_eq!(summary(&got), summary(&expected));
        // And both match the model: named actions and every failure are listed, in the order
        // they ran, with their deferral number; unnamed successes are only counted.
        let model: Vec<(String, u64, &str)> = order
            .iter()
            .filter(|&&i| acts[i].1 || !matches!(acts[i].0, Act::Ok))
            .map(|&i| {
                let kind = match acts[i].0 {
                    Act::Fail => "failed",
                    Act::Panic => "panicked",
                    _ => "ok",
                };
                (name(i, acts[i].1), i as u64, kind)
            })
            .collect();
        let listed: Vec<(String, u64, &str)> = got
            .entries()
            .iter()
            .map(|e| {
                let kind = match e.status() {
                    Status::Ok => "ok",
                    Status::Failed(_) => "failed",
                    Status::Panicked(_) => "panicked",
                    _ => "other",
                };
                (e.id().to_owned(), e.seq(), kind)
            })
            .collect();
        proptest::prop_assert_eq!(listed, model);
        let unnamed_ok = order.iter().filter(|&&i| !acts[i].1 && matches!(acts[i].0, Act::Ok)).count();
        proptest::prop_assert_eq!(got.unlisted_ok(), unnamed_ok);
        proptest::prop_assert_eq!(got.unlisted_ok(), expected.unlisted_ok());
        proptest::prop_assert_eq!(got.totals(), expected.totals());
    }
}

/// A slot freed by a cancel and reused by a later `defer` holds a newer action than the slots
/// after it: release must follow the deferral order, not the slab's.
#[test]
fn actions_in_reused_slots_still_run_last_in_first_out() {
    let log = Log::new();
    let scope = Scope::new();
    let a = scope.defer(log.rec("a")).unwrap();
    scope.defer(log.rec("b")).unwrap();
    assert!(a.cancel());
    scope.defer(log.rec("c")).unwrap(); // reuses a's slot
    scope.defer_named("d", log.rec("d")).unwrap();
    let report = scope.close();
    assert_eq!(log.entries(), ["d", "c", "b"]);
    assert_eq!(report.len(), 3);
}
