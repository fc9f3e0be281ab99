//! Loom models of the registry's concurrent core: single-flight teardown and registration
//! racing a teardown. Every interleaving (up to the preemption bound) is explored.
//!
//! Run: `RUSTFLAGS="--cfg loom" cargo test --release --test loom --target-dir target/loom`
#![cfg(loom)]

use std::sync::atomic::{AtomicUsize, Ordering};

use closeout::{Registry, Resource};

/// Explores every interleaving up to three preemptions and checks that more than one was
/// explored (a model that runs once proves nothing).
fn model(f: impl Fn() + Sync + Send + 'static) {
    static ITERATIONS: AtomicUsize = AtomicUsize::new(0);
    ITERATIONS.store(0, Ordering::SeqCst);
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(3);
    builder.check(move || {
        ITERATIONS.fetch_add(1, Ordering::SeqCst);
        f();
    });
    let n = ITERATIONS.load(Ordering::SeqCst);
    eprintln!("loom explored {n} interleavings");
    assert!(n > 1, "loom explored only {n} interleaving(s)");
}

fn counted(id: &str, runs: &std::sync::Arc<AtomicUsize>) -> Resource {
    let runs = runs.clone();
    Resource::new(id, move || {
        runs.fetch_add(1, Ordering::SeqCst);
    })
}

/// Invariants 1 and 2: two concurrent teardowns, one run; the cleanup runs exactly once and a
/// caller either shared the run's report or came after it ended.
#[test]
fn concurrent_teardowns_run_each_cleanup_once() {
    model(|| {
        let registry = Registry::new();
        let runs = std::sync::Arc::new(AtomicUsize::new(0));
        registry.register(counted("a", &runs)).unwrap();
        let (other, other_runs) = (registry.clone(), runs.clone());
        let t = loom::thread::spawn(move || {
            let n = other.cleanup_all_blocking().len();
            // Whoever returns, returns after the cleanup it asked for has run.
            assert_eq!(other_runs.load(Ordering::SeqCst), 1, "returned before the shared run ended");
            n
        });
        let mine = registry.cleanup_all_blocking().len();
        assert_eq!(runs.load(Ordering::SeqCst), 1, "returned before the shared run ended");
        let theirs = t.join().unwrap();
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        assert!(mine == 1 || theirs == 1, "someone reports it: {mine} {theirs}");
        assert!(registry.is_empty());
    });
}

/// Invariant 5: a registration racing a teardown is either cleaned by that run (and reported)
/// or stays registered for the next one. Never lost, never run twice.
#[test]
fn a_registration_racing_a_teardown_is_never_lost() {
    model(|| {
        let registry = Registry::new();
        let runs = std::sync::Arc::new(AtomicUsize::new(0));
        registry.register(counted("a", &runs)).unwrap();
        let other = registry.clone();
        let late = counted("b", &runs);
        let t = loom::thread::spawn(move || other.register(late).is_ok());
        let report = registry.cleanup_all_blocking();
        assert!(t.join().unwrap());
        let in_first = report.get("b").is_some();
        assert_eq!(in_first, !registry.contains("b"));
        let second = registry.cleanup_all_blocking();
        assert_eq!(second.get("b").is_some(), !in_first);
        assert_eq!(runs.load(Ordering::SeqCst), 2);
    });
}

/// A shutdown racing a registration: the registration either lands before the registry closes
/// (and is cleaned) or is refused and handed back.
#[test]
fn shutdown_racing_a_registration_hands_back_or_cleans() {
    model(|| {
        let registry = Registry::new();
        let runs = std::sync::Arc::new(AtomicUsize::new(0));
        let other = registry.clone();
        let late = counted("b", &runs);
        let t = loom::thread::spawn(move || other.register(late).map_err(|e| e.into_resource()));
        let report = registry.shutdown_blocking();
        match t.join().unwrap() {
            Ok(()) => {
                assert_eq!(report.len(), 1);
                assert_eq!(runs.load(Ordering::SeqCst), 1);
            }
            Err(back) => {
                assert_eq!(back.get_id(), "b");
                assert_eq!(runs.load(Ordering::SeqCst), 0);
            }
        }
        assert!(registry.is_empty());
    });
}
