//! Every public function of the workspace that takes a `Duration`, a count or a rate, called
//! with zero, the maximum and values in between. Each call either works (saturating where a
//! value is past what a clock holds) or returns a typed error at that call; none panics, none
//! fails later in a background task, and every wait is bounded.
//!
//! The list (keep it complete when adding such a function):
//! - closeout: `Resource::timeout`, `RegistryBuilder::{max_resources, max_concurrency,
//!   default_timeout, deadline, category_timeout}`, `TeardownOptions::{deadline,
//!   max_concurrency, cleanup_timeout}`, `testing::Options::leak_timeout`,
//!   `LeakCheck::max_heap_growth`,
//!   `Registry::{stale, ages}`, `Spawn::{grace, limit}`, `Owner::{set_timeout, set_interval}`, `Hooks::deadline`,
//!   `LeakCheck::timeout`, `Registry::watch_stale`, `Tracker::live_older_than`,
//!   `StopFlag::wait_timeout`, `leak::Mode::Sampled`, `ScopeBuilder::{deadline,
//!   action_timeout}`, `Scope::defer_async_within`, `saturating_deadline`;
//! - closeout-process: `TreeOptions::grace`;
//! - closeout-fs: `FileLock::{exclusive, shared, exclusive_in}`;
//! - closeout-net: `HttpListener::grace`, `wait_until_{accepting, free}{,_blocking}`, `Backoff::new`, `Backoff::delay`, `WsOptions::{heartbeat, timeout,
//!   close_timeout}`, `TcpServer::grace`.

use std::sync::mpsc;
use std::time::Duration;

use closeout::leak::{LeakCheck, Mode, Tracker};
use closeout::owner::{Owner, Spawn};
use closeout::{Error, MAX_TIMEOUT, Registry, Resource, Scope, Selection, TeardownOptions};

/// Zero, the smallest, ordinary, the largest a registry takes, just past it, and past any clock.
const DURATIONS: [Duration; 8] = [
    Duration::ZERO,
    Duration::from_nanos(1),
    Duration::from_millis(1),
    Duration::from_secs(1),
    MAX_TIMEOUT,
    MAX_TIMEOUT.checked_add(Duration::from_nanos(1)).unwrap(),
    Duration::from_secs(u64::MAX),
    Duration::MAX,
];

const COUNTS: [usize; 5] = [0, 1, 2, 1 << 20, usize::MAX];

/// Runs `f` on its own thread and fails if it panics or takes longer than 20 s.
fn bounded<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    let handle = std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(Duration::from_secs(20)) {
        Ok(v) => v,
        Err(_) => match handle.join() {
            Err(p) => std::panic::resume_unwind(p),
            Ok(()) => panic!("{what}: did not return within 20 s"),
        },
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

#[test]
fn closeout_registry_inputs() {
    for d in DURATIONS {
        // Resource::timeout: validated at registration, handed back on refusal.
        let r = Registry::new();
        match r.register(Resource::new("a", || ()).timeout(d)) {
            Ok(()) => assert!(!d.is_zero() && d <= MAX_TIMEOUT, "{d:?} accepted"),
            Err(e) => {
                assert!(
                    matches!(e.error(), Error::ZeroTimeout(_) | Error::TimeoutTooLong { .. }),
                    "{d:?}: {e}"
                );
                assert_eq!(e.into_resource().get_id(), "a", "handed back");
            }
        }
        // RegistryBuilder::default_timeout and ::deadline: validated at build.
        // RegistryBuilder::category_timeout too.
        for built in [
            Registry::builder().default_timeout(d).build(),
            Registry::builder().deadline(d).build(),
            Registry::builder().category_timeout(closeout::Category::Network, d).build(),
        ] {
            match built {
                Ok(_) => assert!(!d.is_zero() && d <= MAX_TIMEOUT, "{d:?} accepted"),
                Err(e) => {
                    assert!(matches!(e, Error::ZeroTimeout(_) | Error::TimeoutTooLong { .. }), "{d:?}: {e}")
                }
            }
        }
        // TeardownOptions::deadline: any value works (zero skips everything; huge is no deadline).
        let r = Registry::new();
        r.register(Resource::new("b", || ())).unwrap();
        let r2 = r.clone();
        let report = bounded("TeardownOptions::deadline", move || {
            r2.teardown_blocking(Selection::All, TeardownOptions::new().deadline(d))
        });
        assert_eq!(report.len(), 1, "{d:?}: {report}");
        let _ = r.cleanup_all_blocking();
        assert!(r.is_empty());
        // TeardownOptions::cleanup_timeout: any value works (zero abandons at once; huge is cut
        // to MAX_TIMEOUT); an async cleanup that ends at once is ok or timed out, never stuck.
        r.register(Resource::new_async("quick", async {})).unwrap();
        r.register(Resource::new("sync", || ())).unwrap();
        let r2 = r.clone();
        let report = bounded("TeardownOptions::cleanup_timeout", move || {
            r2.teardown_blocking(Selection::All, TeardownOptions::new().cleanup_timeout(d))
        });
        assert_eq!(report.len(), 2, "{d:?}: {report}");
        if !d.is_zero() {
            assert!(report.is_success(), "{d:?}: {report}");
        }
        assert!(r.is_empty());
        // Registry::stale.
        r.register(Resource::new("c", || ())).unwrap();
        assert_eq!(r.stale(d).len(), usize::from(d.is_zero()), "{d:?}");
        // Registry::ages.
        let ages = r.ages(d);
        assert_eq!((ages.count, ages.stale), (1, usize::from(d.is_zero())), "{d:?}");
    }
    for n in COUNTS {
        let built = Registry::builder().max_resources(n).build();
        assert_eq!(built.is_err(), n == 0, "max_resources({n})");
        let built = Registry::builder().max_concurrency(n).build();
        assert_eq!(built.is_err(), n == 0, "max_concurrency({n})");
        let r = Registry::new();
        r.register(Resource::new("a", || ())).unwrap();
        let report = r.teardown_blocking(Selection::All, TeardownOptions::new().max_concurrency(n));
        assert!(report.is_success() && r.is_empty(), "TeardownOptions::max_concurrency({n}): {report}");
    }
}

#[test]
fn saturating_deadline_never_overflows() {
    let now = std::time::Instant::now();
    let mut last = now;
    for d in DURATIONS {
        let at = closeout::saturating_deadline(now, d);
        assert!(at >= last, "{d:?}: later durations never give earlier deadlines");
        if let Some(exact) = now.checked_add(d) {
            assert_eq!(at, exact, "{d:?}: exact when it fits");
        } else {
            assert!(at > now + Duration::from_secs(3_000_000_000), "{d:?}: saturates far away");
        }
        last = at;
    }
    assert_eq!(closeout::saturating_deadline(now, Duration::ZERO), now);
}

#[test]
fn closeout_scope_inputs() {
    for d in DURATIONS {
        let ok = !d.is_zero() && d <= MAX_TIMEOUT;
        for built in [Scope::builder().deadline(d).build(), Scope::builder().action_timeout(d).build()] {
            match built {
                Ok(scope) => {
                    assert!(ok, "{d:?} accepted");
                    scope.defer_async(async {}).unwrap();
                    let report = bounded("ScopeBuilder", move || scope.close());
                    assert_eq!(report.len(), 1);
                }
                Err(e) => assert!(
                    !ok && matches!(e, Error::ZeroTimeout(_) | Error::TimeoutTooLong { .. }),
                    "{d:?}: {e}"
                ),
            }
        }
        // defer_async_within: any timeout works (zero: dropped after one poll; huge: saturates).
        let scope = Scope::new();
        scope.defer_async_within("quick", d, async {}).unwrap();
        let report = bounded("defer_async_within", move || scope.close());
        assert!(report.is_success(), "{d:?}: {report}");
    }
}

#[test]
fn closeout_spawned_work_inputs() {
    let rt = runtime();
    for d in DURATIONS {
        // Spawn::grace, in a registry and a scope: work that honours its token ends at once.
        rt.block_on(async {
            let r = Registry::new();
            r.spawn(Spawn::new("w").grace(d), |token| async move { token.cancelled().await }).unwrap();
            let report =
                tokio::time::timeout(Duration::from_secs(20), r.cleanup_all()).await.expect("bounded");
            // A grace shorter than a task needs to see its token may end in an abort: both fine.
            let ended_well = |report: &closeout::Report| {
                report.entries().iter().all(|e| match e.status() {
                    closeout::Status::Ok => true,
                    closeout::Status::Failed(err) => {
                        d < Duration::from_secs(1) && err.to_string().contains("aborted")
                    }
                    _ => false,
                })
            };
            assert!(ended_well(&report), "Spawn::grace({d:?}): {report}");
            let scope = Scope::new();
            scope.spawn(Spawn::new("w").grace(d), |token| async move { token.cancelled().await }).unwrap();
            let report =
                tokio::time::timeout(Duration::from_secs(20), scope.close_async()).await.expect("bounded");
            assert!(ended_well(&report), "Spawn::grace({d:?}) in a scope: {report}");
        });
        // Spawn::limit: a task that finishes at once is never cut short by a limit of 1 ms or
        // more; any limit, zero and past any clock included, ends in a bounded teardown.
        rt.block_on(async {
            let r = Registry::new();
            let job = r.spawn(Spawn::new("limited").limit(d), |_| async { 5 }).unwrap();
            match job.await {
                Ok(v) => assert_eq!(v, 5),
                Err(e) => {
                    assert!(e.is_cancelled() && d < Duration::from_millis(1), "Spawn::limit({d:?}): {e}")
                }
            }
            let stuck =
                r.spawn(Spawn::new("stuck").limit(d).grace(Duration::ZERO), |_| std::future::pending::<()>());
            drop(stuck);
            let report =
                tokio::time::timeout(Duration::from_secs(20), r.cleanup_all()).await.expect("bounded");
            assert!(report.len() <= 2, "Spawn::limit({d:?}): {report}");
        });
        // Owner::set_timeout and ::set_interval: a zero period is refused at the call.
        rt.block_on(async {
            let scope = Scope::new();
            scope.set_timeout(d, || ()).unwrap();
            match scope.set_interval(d, || ()) {
                Ok(_) => assert!(!d.is_zero()),
                Err(e) => {
                    assert!(d.is_zero(), "{d:?}: {e}");
                    let _closure_back = e.into_inner();
                }
            }
            // Let the timers' tasks start (and a huge period be computed) before release.
            tokio::time::sleep(Duration::from_millis(5)).await;
            let report =
                tokio::time::timeout(Duration::from_secs(20), scope.close_async()).await.expect("bounded");
            assert!(report.is_success(), "timers with {d:?}: {report}");
        });
        // StopFlag::wait_timeout: an unstopped flag waits at most `d`; a stopped one returns at once.
        let flag = closeout::owner::StopFlag::new();
        if d <= Duration::from_secs(1) {
            assert!(!flag.wait_timeout(d));
        }
        flag.stop();
        assert!(bounded("StopFlag::wait_timeout", move || flag.wait_timeout(d)));
    }
}

#[test]
fn closeout_leak_and_hook_inputs() {
    // testing::Options::leak_timeout: a clean body passes at once, whatever the timeout; a
    // leaking one fails once a short one passes.
    for d in DURATIONS {
        let options = closeout::testing::Options::new().leak_timeout(d);
        bounded("testing::Options::leak_timeout", move || closeout::testing::run(options, |_| ()));
        if d <= Duration::from_millis(1) {
            let options = closeout::testing::Options::new().leak_timeout(d);
            let failed = bounded("testing::Options::leak_timeout (leaking)", move || {
                std::panic::catch_unwind(|| {
                    closeout::testing::run(options, |_| std::mem::forget(closeout::leak::Tracked::new(1u8)))
                })
                .is_err()
            });
            assert!(failed, "{d:?}");
        }
    }
    // LeakCheck::max_heap_growth: any bound is taken (no counting allocator here: it counts
    // nothing, so nothing grows).
    static NOT_GLOBAL: closeout::alloc::Counting = closeout::alloc::Counting::system();
    for bound in [0, 1, u64::MAX] {
        LeakCheck::new().tracked_only().max_heap_growth(&NOT_GLOBAL, bound).assert();
    }
    for d in DURATIONS {
        // LeakCheck::timeout: nothing leaked returns at once, whatever the timeout.
        let tracker = Tracker::new(Mode::Full);
        let check = LeakCheck::with_tracker(tracker.clone()).tracked_only().timeout(d);
        bounded("LeakCheck::timeout", move || {
            let mut check = check;
            check.check().map_err(|l| l.to_string())
        })
        .unwrap();
        // A leak fails once the timeout passes (only short ones: a long one is the caller's wish).
        if d <= Duration::from_millis(1) {
            let _kept = tracker.token("kept");
            let mut check = LeakCheck::with_tracker(tracker.clone()).tracked_only();
            let leak = tracker.token("leaked");
            check = check.timeout(d);
            assert!(check.check().is_err(), "{d:?}");
            drop(leak);
        }
        // Tracker::live_older_than and Registry::watch_stale.
        let t = tracker.token("old");
        assert_eq!(tracker.live_older_than(d).len(), usize::from(d.is_zero()));
        drop(t);
        Registry::new().watch_stale(d);
        // Hooks::deadline: zero is refused at install; anything else installs and uninstalls.
        let installed = closeout::hooks::Hooks::new(Registry::new()).deadline(d).install();
        match installed {
            Ok(guard) => {
                assert!(!d.is_zero());
                guard.uninstall();
            }
            Err(e) => assert!(d.is_zero(), "{d:?}: {e}"),
        }
    }
    // Mode::Sampled: a rate of zero is refused when parsed and treated as one in code.
    for n in [0u32, 1, 2, u32::MAX] {
        let tracker = Tracker::new(Mode::Sampled(n));
        let tokens: Vec<_> = (0..10).map(|_| tracker.token("s")).collect();
        drop(tokens);
        assert_eq!(format!("sampled:{n}").parse::<Mode>().is_err(), n == 0);
    }
}

#[test]
fn closeout_process_inputs() {
    use closeout_process::{ProcessTree, TreeOptions};
    for d in DURATIONS {
        let tree =
            ProcessTree::spawn(std::process::Command::new("sleep").arg("30"), TreeOptions::new().grace(d))
                .unwrap();
        let registry = Registry::new();
        // The resource's timeout covers the grace and saturates at what a registry takes.
        registry
            .register(tree.resource("sleeper"))
            .unwrap_or_else(|e| panic!("TreeOptions::grace({d:?}): {e}"));
        let report = bounded("TreeOptions::grace", move || registry.shutdown_blocking());
        assert_eq!(report.len(), 1, "{d:?}: {report}");
        assert!(!tree.is_running(), "{d:?}: stopped");
    }
}

#[test]
fn closeout_fs_inputs() {
    use closeout_fs::{Dir, FileLock, FsError};
    let tmp = tempfile::tempdir().unwrap();
    let dir = Dir::open(tmp.path()).unwrap();
    for d in DURATIONS {
        let path = tmp.path().join("lock");
        // Uncontended: every timeout takes the lock at once.
        drop(FileLock::exclusive(&path, d).unwrap());
        drop(FileLock::shared(&path, d).unwrap());
        drop(FileLock::exclusive_in(&dir, "lock2", d).unwrap());
        // Contended: a short timeout gives up with a typed error naming the holder.
        if d <= Duration::from_millis(1) {
            let held = FileLock::exclusive(&path, d).unwrap();
            let p = path.clone();
            let got = std::thread::spawn(move || FileLock::exclusive(&p, d).map(drop)).join().unwrap();
            assert!(matches!(got, Err(FsError::LockTimeout { .. })), "{d:?}: {got:?}");
            drop(held);
        }
    }
}

#[test]
fn closeout_net_inputs() {
    // HttpListener::grace: any grace works; an idle server drains at once whatever it is.
    for d in DURATIONS {
        let rt = runtime();
        let report = rt.block_on(async {
            let server = closeout_net::HttpServer::bind("127.0.0.1:0").await.unwrap().grace(d).serve(Ok200);
            tokio::time::timeout(Duration::from_secs(20), server.shutdown()).await.expect("bounded")
        });
        assert_eq!((report.drained, report.cut), (0, 0), "HttpListener::grace({d:?})");
    }
    // Port waits: any timeout returns within it (plus one attempt); nothing listens on `closed`.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    for d in DURATIONS.into_iter().filter(|d| *d <= Duration::from_millis(1)) {
        assert!(
            bounded("wait_until_accepting_blocking", move || closeout_net::wait_until_accepting_blocking(
                closed, d
            ))
            .is_err()
        );
        bounded("wait_until_free_blocking", move || closeout_net::wait_until_free_blocking(closed, d))
            .unwrap();
        let rt = runtime();
        rt.block_on(async {
            assert!(closeout_net::wait_until_accepting(closed, d).await.is_err());
            closeout_net::wait_until_free(closed, d).await.unwrap();
        });
    }
    // Long timeouts (up to past any clock) return at once when the state is already reached.
    for d in DURATIONS {
        bounded("wait_until_free_blocking", move || closeout_net::wait_until_free_blocking(closed, d))
            .unwrap();
    }
    use closeout_net::{Backoff, Message, TcpServer, WsConn, WsOptions};
    for a in DURATIONS {
        for b in DURATIONS {
            let backoff = Backoff::new(a, b);
            for n in [0u32, 1, 2, 31, 32, 33, u32::MAX] {
                let delay = backoff.delay(n);
                assert!(
                    delay >= Duration::from_millis(1) && delay <= b.max(a).max(Duration::from_millis(1)),
                    "{a:?} {b:?} {n}: {delay:?}"
                );
            }
        }
    }
    let rt = runtime();
    let options = DURATIONS.iter().flat_map(|&d| {
        [
            WsOptions::new().heartbeat(d),
            WsOptions::new().heartbeat(Duration::from_millis(5)).timeout(d),
            WsOptions::new().close_timeout(d),
        ]
    });
    for (i, opts) in options.enumerate() {
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let server = tokio::spawn(async move {
                let (stream, _) = listener.accept().await.unwrap();
                let conn = WsConn::accept(stream, opts).await.unwrap();
                while let Some(msg) = conn.recv().await {
                    if conn.send(msg).await.is_err() {
                        break;
                    }
                }
                conn.closed().await
            });
            let client = WsConn::connect(&format!("ws://{addr}"), opts).await.unwrap();
            let _ = client.send(Message::text("hi")).await;
            let _ = tokio::time::timeout(Duration::from_millis(200), client.recv()).await;
            let closed = tokio::time::timeout(Duration::from_secs(20), client.close()).await;
            assert!(closed.is_ok(), "WsOptions #{i}: close() returned");
            let ended = tokio::time::timeout(Duration::from_secs(20), server).await;
            assert!(
                matches!(ended, Ok(Ok(_))),
                "WsOptions #{i}: the server side ended, its task did not panic"
            );
        });
    }
    for d in DURATIONS {
        rt.block_on(async move {
            let server = TcpServer::bind("127.0.0.1:0").await.unwrap().grace(d);
            let addr = server.local_addr().unwrap();
            let handle = server.serve(|_stream, _peer, token| async move { token.cancelled().await });
            let _client = tokio::net::TcpStream::connect(addr).await.unwrap();
            tokio::time::sleep(Duration::from_millis(20)).await;
            let report =
                tokio::time::timeout(Duration::from_secs(20), handle.shutdown()).await.expect("bounded");
            assert_eq!(report.drained.len() + report.forced.len(), 1, "TcpServer::grace({d:?}): {report:?}");
        });
    }
}

#[test]
fn closeout_journal_inputs() {
    use closeout_journal::{JournalError, MAX_COMMAND_TIMEOUT, Resource};
    for d in DURATIONS {
        let got = Resource::command("true", ["x"], d);
        let valid = !d.is_zero() && d <= MAX_COMMAND_TIMEOUT;
        match got {
            Ok(Resource::Command { timeout_ms, .. }) => {
                assert!(valid, "{d:?} accepted");
                assert_eq!(u128::from(timeout_ms), d.as_millis(), "{d:?}");
            }
            Err(JournalError::Invalid(why)) => assert!(!valid && why.contains("timeout"), "{d:?}: {why}"),
            other => panic!("{d:?}: {other:?}"),
        }
    }
    assert!(matches!(Resource::command("", ["x"], Duration::from_secs(1)), Err(JournalError::Invalid(_))));
}

/// Limits take any count: applied where the controller is delegated, else the spawn is refused
/// with a clear error; never a panic, never a tree started without its limit.
#[test]
fn closeout_process_limit_inputs() {
    use closeout_process::{ProcessTree, TreeOptions};
    for n in [0u64, 1, 64, i64::MAX as u64, u64::MAX] {
        for opts in [
            TreeOptions::new().max_pids(n),
            TreeOptions::new().max_memory(n),
            TreeOptions::new().cgroup(false).max_pids(n),
        ] {
            match ProcessTree::spawn(std::process::Command::new("sleep").arg("30"), opts) {
                Ok(tree) => {
                    tree.stop();
                }
                // Not delegated, no cgroup, or a value the kernel refuses: each names the limit.
                Err(e) => assert!(e.to_string().contains(".max"), "{n}: {e}"),
            }
        }
    }
}

/// `ProcessTree::wait_exit` takes every `Duration` (bounded by the child's exit, never a panic
/// or an overflow), and `signal`/`signal_members` refuse numbers that are not signals.
#[test]
fn closeout_process_wait_and_signal_inputs() {
    use closeout_process::{ProcessTree, TreeOptions};
    for d in DURATIONS {
        let tree =
            ProcessTree::spawn(std::process::Command::new("sleep").arg("0.2"), TreeOptions::new()).unwrap();
        let waited = bounded("ProcessTree::wait_exit", {
            let tree = tree.clone();
            move || {
                let start = std::time::Instant::now();
                (tree.wait_exit(d), start.elapsed())
            }
        });
        // Either it saw the exit, or it gave up after `d` (which is then below the child's life).
        assert!(waited.0 || waited.1 >= d, "{d:?}: {waited:?}");
        if d >= Duration::from_secs(1) {
            assert!(waited.0, "{d:?}: the child exits after 0.2 s");
        }
        tree.stop();
    }
    let tree = ProcessTree::spawn(std::process::Command::new("sleep").arg("30"), TreeOptions::new()).unwrap();
    for sig in [0, -1, 65, 1000, i32::MIN, i32::MAX] {
        for sent in [tree.signal(sig), tree.signal_members(sig)] {
            let err = sent.expect_err("not a signal");
            assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput, "{sig}: {err}");
        }
    }
    assert!(tree.is_running(), "nothing was sent");
    tree.stop();
}

/// A hyper-compatible tower service answering every request with an empty 200 (what an axum
/// `Router` is, without axum).
#[derive(Clone)]
struct Ok200;

type Empty200 = hyper::Response<http_body_util::Empty<hyper::body::Bytes>>;

impl tower_service::Service<hyper::Request<hyper::body::Incoming>> for Ok200 {
    type Response = Empty200;
    type Error = std::convert::Infallible;
    type Future = std::future::Ready<Result<Empty200, std::convert::Infallible>>;
    fn poll_ready(&mut self, _: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }
    fn call(&mut self, _: hyper::Request<hyper::body::Incoming>) -> Self::Future {
        std::future::ready(Ok(hyper::Response::new(http_body_util::Empty::new())))
    }
}
