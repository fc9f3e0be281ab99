//! `#[closeout::test]` through the public API: each test here is one of the attribute's
//! promises. Tests that must fail say so with `should_panic(expected = …)`, so a passing run
//! means the attribute failed them with the right message. They run in parallel under
//! `cargo test`: the tests that leak on purpose must not fail the others (each test has a
//! tracker of its own).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use closeout::leak::{LeakToken, Tracked};
use closeout::owner::Owner;
use closeout::testing::{self, LeakScope, Options};
use closeout::{Registry, Resource};

#[closeout::test]
fn a_sync_test_gets_a_registry_by_reference(registry: &Registry) {
    let conn = Tracked::named(vec![0u8; 8], "connection");
    registry.register(Resource::new("conn", move || drop(conn))).unwrap();
    assert!(registry.contains("conn"));
}

#[closeout::test]
fn a_sync_test_gets_a_registry_by_value(registry: Registry) {
    registry.register(Resource::new("a", || ())).unwrap();
}

#[closeout::test]
fn a_test_without_an_argument_reaches_its_registry() {
    let registry = testing::registry().expect("inside a closeout test");
    registry.register(Resource::new("reached", || ())).unwrap();
}

#[closeout::test]
fn a_test_may_return_ok() -> Result<(), std::io::Error> {
    Ok(())
}

#[closeout::test]
#[should_panic(expected = "the test returned an error: Custom")]
fn a_test_that_returns_an_error_fails_with_it() -> Result<(), std::io::Error> {
    Err(std::io::Error::other("broken"))
}

#[closeout::test]
#[should_panic(expected = "forgotten buffer")]
fn a_forgotten_tracked_object_fails_the_test() {
    std::mem::forget(Tracked::named(vec![0u8; 4], "forgotten buffer"));
}

#[closeout::test]
#[should_panic(expected = "teardown failed")]
fn a_failing_cleanup_fails_the_test(registry: &Registry) {
    registry.register(Resource::new("flaky", || Err::<(), _>(std::io::Error::other("disk gone")))).unwrap();
}

#[closeout::test]
#[should_panic(expected = "registry-left")]
fn a_registry_dropped_with_resources_fails_the_test() {
    let inner = Registry::new();
    inner.register(Resource::new("registry-left", || ())).unwrap();
    drop(inner);
}

#[closeout::test(leaks = "off")]
fn leaks_off_checks_the_teardown_only() {
    std::mem::forget(Tracked::named(1u8, "ignored on purpose"));
}

#[closeout::test(leak_timeout_ms = 2000)]
fn a_cleanup_that_ends_late_is_waited_for(registry: &Registry) {
    let token = LeakToken::new("released on a thread");
    registry
        .register(Resource::new("late", move || {
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(50));
                drop(token);
            });
        }))
        .unwrap();
}

#[closeout::test]
async fn an_async_test_runs_on_a_current_thread_runtime(registry: Registry) {
    let thread = std::thread::current().id();
    registry.spawn("ticker", |token| async move { token.cancelled().await }).unwrap();
    tokio::task::yield_now().await;
    assert_eq!(std::thread::current().id(), thread);
}

#[closeout::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_async_test_runs_on_a_multi_thread_runtime(
    registry: Registry,
) -> Result<(), Box<dyn std::error::Error>> {
    let handle = tokio::runtime::Handle::current();
    assert_eq!(handle.metrics().num_workers(), 2);
    registry.spawn("worker", |token| async move { token.cancelled().await })?;
    registry.register(Resource::new_async("flush", async {
        tokio::time::sleep(Duration::from_millis(5)).await
    }))?;
    Ok(())
}

#[closeout::test(flavor = "multi_thread", worker_threads = 2)]
#[should_panic(expected = "made on a worker")]
async fn an_object_leaked_on_a_runtime_worker_fails_the_test() {
    tokio::spawn(async { std::mem::forget(Tracked::named(2u8, "made on a worker")) }).await.unwrap();
}

#[closeout::test]
#[should_panic(expected = "tokio task(s) of the test's runtime still alive")]
async fn a_task_outliving_the_teardown_fails_the_test() {
    tokio::spawn(std::future::pending::<()>());
}

#[closeout::test(leak_timeout_ms = 100)]
#[should_panic(expected = "the body's own panic")]
async fn an_async_body_that_panics_fails_with_its_panic(registry: Registry) {
    registry.register(Resource::new("still torn down", || ())).unwrap();
    panic!("the body's own panic");
}

/// The teardown runs when the body panics, and the test fails with the body's panic, not
/// something else: observed from outside the fixture.
#[test]
fn the_registry_is_torn_down_after_a_panicking_body() {
    static TORN_DOWN: AtomicUsize = AtomicUsize::new(0);
    let panic = std::panic::catch_unwind(|| {
        testing::run(Options::new(), |registry| {
            registry
                .register(Resource::new("x", || {
                    TORN_DOWN.fetch_add(1, Ordering::SeqCst);
                }))
                .unwrap();
            if registry.contains("x") {
                panic!("body panicked");
            }
        })
    })
    .unwrap_err();
    assert_eq!(panic.downcast_ref::<&str>(), Some(&"body panicked"));
    assert_eq!(TORN_DOWN.load(Ordering::SeqCst), 1);

    let panic = std::panic::catch_unwind(|| {
        testing::run_async(Options::new(), |registry| async move {
            registry
                .register(Resource::new("y", || {
                    TORN_DOWN.fetch_add(1, Ordering::SeqCst);
                }))
                .unwrap();
            if registry.contains("y") {
                panic!("async body panicked");
            }
        })
    })
    .unwrap_err();
    assert_eq!(panic.downcast_ref::<&str>(), Some(&"async body panicked"));
    assert_eq!(TORN_DOWN.load(Ordering::SeqCst), 2);
}

/// Sixteen tests' worth of fixtures at once on sixteen threads, half of them leaking: exactly
/// the leaking half fail, each naming only its own object.
#[test]
fn parallel_fixtures_see_only_their_own_objects() {
    let threads: Vec<_> = (0..16)
        .map(|i| {
            std::thread::spawn(move || {
                std::panic::catch_unwind(|| {
                    testing::run(Options::new().leak_timeout(Duration::from_millis(50)), |registry| {
                        for n in 0..100 {
                            let t = Tracked::named(n, format!("object of {i}"));
                            if i % 2 == 0 && n == 7 {
                                std::mem::forget(t);
                            }
                        }
                        registry.register(Resource::new("r", || ())).unwrap();
                    })
                })
                .map_err(|p| p.downcast_ref::<String>().cloned().unwrap_or_default())
            })
        })
        .collect();
    for (i, t) in threads.into_iter().enumerate() {
        match t.join().unwrap() {
            Ok(()) => assert!(i % 2 == 1, "fixture {i} leaked and passed"),
            Err(message) => {
                assert!(i % 2 == 0, "fixture {i} did not leak and failed: {message}");
                assert!(message.contains(&format!("object of {i}")), "{message}");
                assert_eq!(message.matches("object of").count(), 1, "only its own object: {message}");
            }
        }
    }
}

#[test]
fn the_options_say_which_leaks() {
    // Off: a forgotten object passes; Tracked: it fails.
    testing::run(Options::new().leaks(LeakScope::Off), |_| std::mem::forget(Tracked::new(1u8)));
    let failed = std::panic::catch_unwind(|| {
        testing::run(Options::new().leak_timeout(Duration::ZERO), |_| std::mem::forget(Tracked::new(1u8)))
    });
    assert!(failed.is_err());
}

#[test]
fn compile_errors_name_the_misuse() {
    trybuild::TestCases::new().compile_fail("tests/ui/*.rs");
}
