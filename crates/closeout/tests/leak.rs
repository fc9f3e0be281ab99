//! Leak detection: for every kind of leak, a test that leaks it on purpose and checks that the
//! guard's message names it, next to one that does the same work correctly and passes. Each
//! test runs in its own process (nextest's, or `common::isolated`'s under `cargo test`), so the
//! OS checks see only this test.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use closeout::leak::{self, LeakCheck, Mode, Tracked, Tracker};
use closeout::{Registry, Resource, Scope};

const SHORT: Duration = Duration::from_millis(200);

fn message(guard: LeakCheck) -> String {
    let mut guard = guard.timeout(SHORT);
    guard.check().expect_err("the guard should have found a leak").to_string()
}

#[test]
fn a_forgotten_tracked_object_is_named_and_a_dropped_one_passes() {
    common::isolated("a_forgotten_tracked_object_is_named_and_a_dropped_one_passes", || {
        leak::set_mode(Mode::Full);
        let guard = LeakCheck::new();
        std::mem::forget(Tracked::named(vec![0u8; 8], "upstream connection"));
        let msg = message(guard);
        assert!(msg.contains("alloc::vec::Vec<u8>") && msg.contains("upstream connection"), "{msg}");
        assert!(msg.contains("CLOSEOUT_LEAK=backtrace"), "says how to see more: {msg}");

        let guard = LeakCheck::new();
        drop(Tracked::named(vec![0u8; 8], "closed connection"));
        guard.assert();
    });
}

#[test]
fn an_arc_cycle_is_found_through_its_weak_reference() {
    common::isolated("an_arc_cycle_is_found_through_its_weak_reference", || {
        struct Node {
            next: Mutex<Option<Arc<Node>>>,
        }
        leak::set_mode(Mode::Full);
        let guard = LeakCheck::new();
        let a = Arc::new(Node { next: Mutex::new(None) });
        let b = Arc::new(Node { next: Mutex::new(Some(a.clone())) });
        *a.next.lock().unwrap() = Some(b.clone());
        leak::track_arc(&a, "node");
        drop((a, b)); // each keeps the other alive
        let msg = message(guard);
        assert!(msg.contains("node ×1"), "{msg}");

        let guard = LeakCheck::new();
        let a = Arc::new(Node { next: Mutex::new(None) });
        leak::track_arc(&a, "node");
        drop(a);
        guard.assert();
    });
}

#[test]
fn a_thread_still_running_is_named() {
    common::isolated("a_thread_still_running_is_named", || {
        let guard = LeakCheck::new();
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let worker =
            std::thread::Builder::new().name("stray-worker".into()).spawn(move || rx.recv()).unwrap();
        let msg = message(guard);
        assert!(msg.contains("thread") && msg.contains("\"stray-worker\""), "{msg}");

        drop(tx);
        let _ = worker.join();
        let guard = LeakCheck::new();
        std::thread::Builder::new().name("joined".into()).spawn(|| ()).unwrap().join().unwrap();
        guard.assert();
    });
}

#[test]
fn an_open_file_descriptor_is_named_with_its_target() {
    common::isolated("an_open_file_descriptor_is_named_with_its_target", || {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("left-open.txt");
        let guard = LeakCheck::new();
        let file = std::fs::File::create(&path).unwrap();
        let msg = message(guard);
        assert!(msg.contains("left-open.txt") && msg.contains("still open"), "{msg}");
        drop(file);

        let guard = LeakCheck::new();
        std::fs::write(dir.path().join("closed.txt"), b"x").unwrap();
        guard.assert();
    });
}

#[test]
fn child_processes_running_or_unreaped_are_named() {
    common::isolated("child_processes_running_or_unreaped_are_named", || {
        let guard = LeakCheck::new();
        let mut sleeper = std::process::Command::new("sleep").arg("30").spawn().unwrap();
        let mut zombie = std::process::Command::new("true").spawn().unwrap();
        std::thread::sleep(Duration::from_millis(100)); // `true` exits; nobody waits for it yet
        let msg = message(guard);
        assert!(msg.contains("(sleep): still running"), "{msg}");
        assert!(msg.contains("(true): exited but never waited for (zombie)"), "{msg}");
        sleeper.kill().unwrap();
        sleeper.wait().unwrap();
        zombie.wait().unwrap();

        let guard = LeakCheck::new();
        std::process::Command::new("true").status().unwrap();
        guard.assert();
    });
}

#[test]
fn tokio_tasks_still_alive_are_counted() {
    common::isolated("tokio_tasks_still_alive_are_counted", || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let guard = LeakCheck::new();
            let stray = tokio::spawn(std::future::pending::<()>());
            let msg = message(guard);
            assert!(msg.contains("tokio tasks: 1 alive, 0 before"), "{msg}");
            stray.abort();
            let _ = stray.await;

            let guard = LeakCheck::new();
            tokio::spawn(async {}).await.unwrap();
            guard.assert();
        });
    });
}

#[test]
fn a_registry_dropped_with_resources_reports_each_with_where_it_was_registered() {
    common::isolated("a_registry_dropped_with_resources_reports_each_with_where_it_was_registered", || {
        leak::set_mode(Mode::Backtrace);
        let guard = LeakCheck::new();
        let registry = Registry::new();
        registry.register(Resource::new("db-pool", || ())).unwrap();
        drop(registry);
        let msg = message(guard);
        assert!(msg.contains("closeout::Registry resource ×1") && msg.contains("db-pool"), "{msg}");
        assert!(
            msg.contains("created at:") && msg.contains("tests/leak.rs"),
            "backtrace of the registration: {msg}"
        );
        leak::Tracker::global().clear();

        let guard = LeakCheck::new();
        let registry = Registry::new();
        registry.register(Resource::new("db-pool", || ())).unwrap();
        assert!(registry.shutdown_blocking().is_success());
        drop(registry);
        guard.assert();
    });
}

#[test]
fn a_scope_dropped_with_async_actions_is_reported() {
    common::isolated("a_scope_dropped_with_async_actions_is_reported", || {
        leak::set_mode(Mode::Full);
        let guard = LeakCheck::new().ignore_thread("tokio");
        let scope = Scope::new();
        scope.defer_async(async {}).unwrap();
        drop(scope); // blocks to run it: works, but is a misuse worth a finding
        let msg = message(guard);
        assert!(msg.contains("closeout::Scope dropped with async actions"), "{msg}");
        leak::Tracker::global().clear();

        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let guard = LeakCheck::new();
        let scope = Scope::new();
        scope.defer_async(async {}).unwrap();
        rt.block_on(scope.close_async());
        guard.assert();
    });
}

#[test]
fn stale_resources_of_a_watched_registry_are_reported() {
    common::isolated("stale_resources_of_a_watched_registry_are_reported", || {
        leak::set_mode(Mode::Full);
        let registry = Registry::new();
        let guard = LeakCheck::new();
        registry.register(Resource::new("session-42", || ())).unwrap();
        registry.watch_stale(Duration::from_millis(20));
        std::thread::sleep(Duration::from_millis(50));
        let msg = message(guard);
        assert!(msg.contains("(stale)") && msg.contains("session-42"), "{msg}");

        let guard = LeakCheck::new();
        registry.register(Resource::new("fresh", || ())).unwrap();
        assert!(registry.cleanup_all_blocking().is_success());
        guard.assert();
    });
}

#[test]
fn ignore_filters_leave_out_what_they_name() {
    common::isolated("ignore_filters_leave_out_what_they_name", || {
        leak::set_mode(Mode::Full);
        let dir = tempfile::tempdir().unwrap();
        let guard = LeakCheck::new().ignore_kind("known").ignore_name("expected").ignore_fd("keep-open");
        std::mem::forget(leak::track("known"));
        std::mem::forget(Tracked::named(1u8, "expected"));
        let file = std::fs::File::create(dir.path().join("keep-open.log")).unwrap();
        guard.assert();
        drop(file);
    });
}

#[test]
fn eight_threads_tracking_and_dropping_at_once() {
    common::isolated("eight_threads_tracking_and_dropping_at_once", || {
        let tracker = Tracker::new(Mode::Full);
        let kept = Arc::new(Mutex::new(Vec::new()));
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let (tracker, kept) = (tracker.clone(), kept.clone());
                std::thread::spawn(move || {
                    for i in 0..20_000 {
                        let token = tracker.token("item");
                        if i % 1000 == 0 {
                            kept.lock().unwrap().push(token); // 20 kept per thread
                        }
                    }
                    t
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(tracker.len(), 160);
        let live = tracker.live();
        assert_eq!(live.len(), 160);
        let ids: std::collections::HashSet<u64> = live.iter().map(|r| r.id()).collect();
        assert_eq!(ids.len(), 160, "ids are unique");
        kept.lock().unwrap().clear();
        assert!(tracker.is_empty());
    });
}

#[test]
fn sampled_mode_tracks_one_in_n() {
    common::isolated("sampled_mode_tracks_one_in_n", || {
        let tracker = Tracker::new(Mode::Sampled(4));
        let tokens: Vec<_> = (0..400).map(|_| tracker.token("x")).collect();
        assert_eq!(tokens.iter().filter(|t| t.is_tracked()).count(), 100);
        assert_eq!(tracker.len(), 100);
        let off = Tracker::new(Mode::Off);
        assert!(!off.token("x").is_tracked());
        assert!(off.report().is_empty());
    });
}

/// Runs only as the child of `the_environment_variable_sets_the_mode`.
#[test]
fn mode_child() {
    if std::env::var("CLOSEOUT_LEAK_TEST_CHILD").is_err() {
        return;
    }
    let token = leak::track("probe");
    println!("MODE={} TRACKED={}", Tracker::global().mode(), token.is_tracked());
}

#[test]
fn the_environment_variable_sets_the_mode() {
    let exe = std::env::current_exe().unwrap();
    for (value, expect) in [
        ("off", "MODE=off TRACKED=false"),
        ("full", "MODE=full TRACKED=true"),
        ("sampled:1", "MODE=sampled:1 TRACKED=true"),
        ("backtrace", "MODE=backtrace TRACKED=true"),
    ] {
        let out = std::process::Command::new(&exe)
            .args(["--exact", "mode_child", "--nocapture", "--test-threads=1"])
            .env("CLOSEOUT_LEAK_TEST_CHILD", "1")
            .env("CLOSEOUT_LEAK", value)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(stdout.contains(expect), "CLOSEOUT_LEAK={value}: {stdout}");
    }
}

#[cfg(feature = "serde")]
#[test]
fn the_report_serializes_to_json_and_says_when_tracking_is_off() {
    common::isolated("the_report_serializes_to_json_and_says_when_tracking_is_off", || {
        let tracker = Tracker::new(Mode::Full);
        let _a = tracker.token_named("socket", "s1");
        let _b = tracker.token_named("socket", "s2");
        let json = serde_json::to_value(tracker.report()).unwrap();
        assert_eq!(json["total"], 2);
        assert_eq!(json["groups"][0]["kind"], "socket");
        assert_eq!(json["groups"][0]["objects"].as_array().unwrap().len(), 2);
        let off = Tracker::new(Mode::Off);
        assert!(off.report().to_string().contains("set CLOSEOUT_LEAK=full"));
    });
}

#[test]
fn empty_kinds_and_names_never_corrupt_the_table() {
    common::isolated("empty_kinds_and_names_never_corrupt_the_table", || {
        use closeout::leak::{Mode, Tracker};
        let tracker = Tracker::new(Mode::Full);
        for round in 0..3 {
            let tokens: Vec<_> = (0..100)
                .map(|i| match i % 3 {
                    0 => tracker.token(""),
                    1 => tracker.token_named("", ""),
                    _ => tracker.token_named("conn", ""),
                })
                .collect();
            assert_eq!(tracker.len(), 100, "round {round}");
            for r in tracker.live() {
                assert!(!r.kind().is_empty(), "an empty kind is recorded as a placeholder");
                assert!(!r.name().is_empty(), "an empty name falls back to the generated one");
            }
            drop(tokens);
            assert_eq!(tracker.len(), 0, "round {round}: every record went away");
            assert!(tracker.live().is_empty());
        }
    });
}

#[test]
fn live_is_strictly_oldest_first_even_when_slots_are_reused() {
    common::isolated("live_is_strictly_oldest_first_even_when_slots_are_reused", || {
        use closeout::leak::{Mode, Tracker};
        let tracker = Tracker::new(Mode::Full);
        let mut tokens: Vec<Option<closeout::leak::LeakToken>> =
            (0..200).map(|i| Some(tracker.token_named("obj", format!("first-{i}")))).collect();
        // Free every other slot, then fill them again: new objects land in old, lower slots.
        for t in tokens.iter_mut().step_by(2) {
            *t = None;
        }
        let mut expected: Vec<String> =
            (0..200).filter(|i| i % 2 == 1).map(|i| format!("first-{i}")).collect();
        for i in 0..100 {
            tokens.push(Some(tracker.token_named("obj", format!("second-{i}"))));
            expected.push(format!("second-{i}"));
        }
        let order: Vec<String> = tracker.live().iter().map(|r| r.name().into_owned()).collect();
        assert_eq!(order, expected);
    });
}

/// Eight threads each enter a tracker of their own and leak a different number of objects
/// while the others run: each tracker holds exactly its own thread's objects, the global
/// tracker none of them, and after every guard is gone objects go to the global tracker again.
#[test]
fn entered_trackers_keep_each_threads_objects_apart() {
    // Isolated: it counts the global tracker, which other tests of this binary use.
    common::isolated("entered_trackers_keep_each_threads_objects_apart", entered_trackers_body);
}

fn entered_trackers_body() {
    let global_before = Tracker::global().len();
    let trackers: Vec<Tracker> = (0..8).map(|_| Tracker::new(Mode::Full)).collect();
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(8));
    let handles: Vec<_> = trackers
        .iter()
        .cloned()
        .enumerate()
        .map(|(i, tracker)| {
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                let _entered = tracker.enter();
                barrier.wait();
                for n in 0..=i {
                    std::mem::forget(Tracked::named(n, format!("thread {i}")));
                    let _dropped = Tracked::new(n);
                }
                closeout::leak::track_arc(&std::sync::Arc::new(()), "gone");
                let check = LeakCheck::new().tracked_only();
                assert_eq!(check.leaks_now().tracked().total(), 0, "the check was made after the leaks");
                barrier.wait();
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    for (i, tracker) in trackers.iter().enumerate() {
        let live = tracker.live();
        assert_eq!(live.len(), i + 1, "tracker {i}: {live:?}");
        assert!(live.iter().all(|r| r.name() == format!("thread {i}")));
    }
    assert_eq!(Tracker::global().len(), global_before);
    // Nobody is routed now: a new object goes to the global tracker.
    let token = closeout::leak::LeakToken::new("after");
    assert_eq!(Tracker::current().live_of_kind("after").len(), usize::from(token.is_tracked()));
}

/// Guards nest: the inner tracker is current until its guard goes, then the outer one again;
/// a mode set while routed changes the entered tracker, never the global one.
#[test]
fn entered_trackers_nest_and_restore() {
    let outer = Tracker::new(Mode::Full);
    let inner = Tracker::new(Mode::Full);
    let global_mode = Tracker::global().mode();
    let a = outer.enter();
    let x = closeout::leak::track("outer-1");
    {
        let _b = inner.enter();
        let y = closeout::leak::track("inner-1");
        Tracker::current().set_mode(Mode::Backtrace);
        assert_eq!(inner.mode(), Mode::Backtrace);
        assert_eq!(Tracker::global().mode(), global_mode);
        assert_eq!(inner.live_of_kind("inner-1").len(), 1);
        drop(y);
    }
    let z = closeout::leak::track("outer-2");
    assert_eq!(outer.len(), 2);
    assert!(inner.is_empty());
    drop((x, z, a));
    assert!(outer.is_empty());
    assert_eq!(Tracker::global().mode(), global_mode);
}

/// The leak-record of a registry dropped with resources goes to the tracker the dropping
/// thread entered, so a per-test check sees it.
#[test]
fn a_registry_dropped_while_routed_is_recorded_in_the_entered_tracker() {
    let tracker = Tracker::new(Mode::Full);
    let _entered = tracker.enter();
    let check = LeakCheck::new().tracked_only().timeout(Duration::from_millis(10));
    let registry = closeout::Registry::new();
    registry.register(closeout::Resource::new("left-behind", || ())).unwrap();
    drop(registry);
    let leaks = check.leaks_now();
    assert_eq!(leaks.tracked().total(), 1, "{leaks}");
    assert!(leaks.to_string().contains("left-behind"), "{leaks}");
    std::mem::forget(check);
}
