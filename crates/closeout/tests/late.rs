//! Registrations and unregistrations made *while a teardown runs*, against a reference model.
//!
//! Cleanups run scripted operations on their own registry (register resources that depend on
//! queued, running and finished resources, in every phase; unregister others). Every event is
//! logged in the order it happened and replayed against a plain model, which predicts each
//! operation's result and checks, at every cleanup, that nothing still registered depends on
//! what is being torn down.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use closeout::{Error, Priority, Registry, Resource, Selection, TeardownOptions};
use proptest::prelude::*;

const PRIORITIES: [Priority; 4] = [Priority::Critical, Priority::High, Priority::Medium, Priority::Low];

#[derive(Clone, Debug)]
enum LateOp {
    Register { key: u8, prio: u8, deps: Vec<u8>, is_async: bool },
    Unregister { key: u8 },
}

#[derive(Clone, Debug)]
struct Seed {
    key: u8,
    prio: u8,
    deps: Vec<u8>,
    is_async: bool,
    late: Vec<LateOp>,
}

#[derive(Clone, Debug)]
enum Teardown {
    All,
    Shutdown,
    Id(u8),
}

#[derive(Clone, Debug)]
enum Ev {
    Ran { key: u8, generation: u64 },
    Registered { key: u8, prio: u8, deps: Vec<u8>, generation: u64, result: Result<(), Error> },
    Unregistered { key: u8, result: Result<bool, Error> },
}

type EvLog = Arc<Mutex<Vec<Ev>>>;

fn id(key: u8) -> String {
    format!("r{key}")
}

fn late_op() -> impl Strategy<Value = LateOp> {
    prop_oneof![
        4 => (0u8..16, 0u8..4, proptest::collection::vec(0u8..16, 0..3), proptest::bool::weighted(0.2))
            .prop_map(|(key, prio, deps, is_async)| LateOp::Register { key, prio, deps, is_async }),
        1 => (0u8..16).prop_map(|key| LateOp::Unregister { key }),
    ]
}

fn seed() -> impl Strategy<Value = Seed> {
    (
        0u8..8,
        0u8..4,
        proptest::collection::vec(0u8..8, 0..3),
        proptest::bool::weighted(0.2),
        proptest::collection::vec(late_op(), 0..3),
    )
        .prop_map(|(key, prio, deps, is_async, late)| Seed { key, prio, deps, is_async, late })
}

fn teardown() -> impl Strategy<Value = Teardown> {
    prop_oneof![4 => Just(Teardown::All), 1 => Just(Teardown::Shutdown), 2 => (0u8..8).prop_map(Teardown::Id)]
}

/// Builds a resource that logs its run, then performs `late` on `registry`.
/// The registry under test, the event log, and the generation counter, as cleanups see them.
#[derive(Clone)]
struct Ctx {
    registry: Registry,
    log: EvLog,
    next_gen: Arc<Mutex<u64>>,
}

fn resource(
    ctx: &Ctx,
    key: u8,
    prio: u8,
    deps: &[u8],
    is_async: bool,
    late: Vec<LateOp>,
    generation: u64,
) -> Resource {
    let c = ctx.clone();
    let run = move || {
        let (r, l, g) = (&c.registry, &c.log, &c.next_gen);
        l.lock().unwrap().push(Ev::Ran { key, generation });
        for op in late {
            match op {
                LateOp::Register { key, prio, deps, is_async } => {
                    let generation = {
                        let mut g = g.lock().unwrap();
                        *g += 1;
                        *g
                    };
                    let res = resource(&c, key, prio, &deps, is_async, Vec::new(), generation);
                    let result = r.register(res).map_err(|e| e.error().clone());
                    l.lock().unwrap().push(Ev::Registered { key, prio, deps, generation, result });
                }
                LateOp::Unregister { key } => {
                    let result = r.unregister(&id(key)).map(|back| back.is_some());
                    l.lock().unwrap().push(Ev::Unregistered { key, result });
                }
            }
        }
    };
    let res = if is_async {
        Resource::new_async(id(key), async move { run() })
    } else {
        Resource::new(id(key), run)
    };
    res.priority(PRIORITIES[prio as usize]).depends_on(deps.iter().map(|&d| id(d)))
}

#[derive(Clone, Debug)]
struct Live {
    prio: u8,
    deps: BTreeSet<u8>,
    generation: u64,
}

#[derive(Default)]
struct Model {
    live: BTreeMap<u8, Live>,
    closed: bool,
}

impl Model {
    fn effective(&self, key: u8) -> u8 {
        let r = &self.live[&key];
        r.deps.iter().map(|&d| self.effective(d)).fold(r.prio, u8::min)
    }

    fn cascade(&self, mut set: BTreeSet<u8>) -> BTreeSet<u8> {
        loop {
            let more: Vec<u8> = self
                .live
                .iter()
                .filter(|(k, r)| !set.contains(k) && r.deps.iter().any(|d| set.contains(d)))
                .map(|(k, _)| *k)
                .collect();
            if more.is_empty() {
                return set;
            }
            set.extend(more);
        }
    }

    /// What `register` must answer now, with `running` being torn down.
    fn expect_register(&self, key: u8, deps: &[u8], running: Option<u8>) -> Result<(), Error> {
        if self.closed {
            return Err(Error::Closed);
        }
        if self.live.contains_key(&key) || running == Some(key) {
            return Err(Error::DuplicateId(id(key)));
        }
        for &d in deps {
            if running == Some(d) {
                return Err(Error::DependencyClosing { id: id(key), dependency: id(d) });
            }
            if !self.live.contains_key(&d) {
                return Err(Error::UnknownDependency { id: id(key), dependency: id(d) });
            }
        }
        Ok(())
    }
}

/// Replays one teardown's events against the model.
///
/// With `concurrent`, a resource may be claimed by the engine (its slot busy) before its
/// cleanup is first polled and logs `Ran`: then `Busy` and `DependencyClosing` are also right
/// for a resource the model still sees as waiting.
fn replay(
    model: &mut Model,
    events: &[Ev],
    full: bool,
    mut in_run: BTreeSet<u8>,
    report: &closeout::Report,
    concurrent: bool,
) {
    // Incarnations in the run from its start, with their effective priority then.
    let effective: BTreeMap<u64, u8> =
        in_run.iter().map(|&k| (model.live[&k].generation, model.effective(k))).collect();
    let mut running: Option<(u8, Live)> = None;
    let mut ran_initial: Vec<u64> = Vec::new();
    let mut ran = Vec::new();
    for ev in events {
        match ev.clone() {
            Ev::Ran { key, generation } => {
                let live =
                    model.live.remove(&key).unwrap_or_else(|| panic!("{key} ran but is not registered"));
                assert_eq!(live.generation, generation, "the current incarnation of {key} ran");
                // `in_run` holds what the run has yet to start: a key registered again after it
                // ran is a new incarnation, in the run only if it was taken in.
                assert!(in_run.remove(&key), "{key} ran but is not part of this teardown");
                let users: Vec<u8> =
                    model.live.iter().filter(|(_, r)| r.deps.contains(&key)).map(|(k, _)| *k).collect();
                assert!(
                    users.is_empty(),
                    "{key} torn down while {users:?} still depend on it; events {events:?}"
                );
                if effective.contains_key(&generation) {
                    ran_initial.push(generation);
                }
                ran.push((key, generation));
                running = Some((key, live));
            }
            Ev::Registered { key, prio, deps, generation, result } => {
                let now = running.as_ref().map(|(k, _)| *k);
                let expected = model.expect_register(key, &deps, now);
                let claimed = |d: &String| concurrent && model.live.keys().any(|&k| id(k) == *d);
                // Dependencies are checked in order: a claimed one answers first, unless the
                // model's answer concerns the id itself or an earlier dependency.
                let pos = |d: &String| deps.iter().position(|&k| id(k) == *d);
                let later = match &expected {
                    Ok(()) => usize::MAX,
                    Err(
                        Error::DependencyClosing { dependency, .. }
                        | Error::UnknownDependency { dependency, .. },
                    ) => pos(dependency).unwrap_or(0),
                    Err(_) => 0,
                };
                let expected = match &result {
                    Err(Error::DependencyClosing { dependency, .. })
                        if claimed(dependency) && pos(dependency).is_some_and(|p| p < later) =>
                    {
                        result.clone()
                    }
                    _ => expected,
                };
                assert_eq!(
                    result, expected,
                    "late registration of {key} with deps {deps:?}; events {events:?}"
                );
                if result.is_ok() {
                    let joins = full || deps.iter().any(|d| in_run.contains(d) && model.live.contains_key(d));
                    if joins {
                        in_run.insert(key);
                    }
                    model.live.insert(key, Live { prio, deps: deps.into_iter().collect(), generation });
                }
            }
            Ev::Unregistered { key, result } => {
                let now = running.as_ref().map(|(k, _)| *k);
                let mut dependents: Vec<u8> =
                    model.live.iter().filter(|(_, r)| r.deps.contains(&key)).map(|(k, _)| *k).collect();
                if let Some((k, r)) = &running
                    && r.deps.contains(&key)
                {
                    dependents.push(*k);
                }
                match result {
                    Err(Error::Busy(_)) => assert!(
                        now == Some(key) || (concurrent && model.live.contains_key(&key)),
                        "only a running resource is busy"
                    ),
                    Err(Error::HasDependents { .. }) => {
                        assert!(!dependents.is_empty(), "{key} has no dependents")
                    }
                    Ok(false) => assert!(!model.live.contains_key(&key) && now != Some(key)),
                    Ok(true) => {
                        assert!(
                            dependents.is_empty() && now != Some(key),
                            "{key} unregistered with dependents"
                        );
                        assert!(model.live.remove(&key).is_some());
                        in_run.remove(&key);
                    }
                    Err(e) => panic!("unexpected unregister error {e:?}"),
                }
            }
        }
    }
    // Nothing of the run is left registered: late registrations were taken into it.
    let left: Vec<u8> = in_run.iter().copied().filter(|k| model.live.contains_key(k)).collect();
    assert!(left.is_empty(), "{left:?} were part of the run but are still registered: {report}");
    // Each incarnation ran once (a key can run twice: registered again after it ran).
    let distinct: BTreeSet<u64> = ran.iter().map(|&(_, g)| g).collect();
    assert_eq!(distinct.len(), ran.len(), "each incarnation ran once in this run");
    assert_eq!(report.len(), ran.len(), "{report}");
    for (k, _) in &ran {
        assert!(report.get(&id(*k)).is_some_and(|e| e.status().is_ok()), "{k} reported ok: {report}");
    }
    let effs: Vec<u8> = ran_initial.iter().map(|k| effective[k]).collect();
    assert!(effs.windows(2).all(|w| w[0] <= w[1]), "phases by effective priority: {ran_initial:?} {effs:?}");
}

fn run_rounds(rounds: Vec<(Vec<Seed>, Teardown)>, max_concurrency: usize) {
    let registry = Registry::builder().max_concurrency(max_concurrency).build().unwrap();
    let log: EvLog = Arc::default();
    let next_gen = Arc::new(Mutex::new(0u64));
    let mut model = Model::default();
    for (seeds, td) in rounds {
        for s in seeds {
            let generation = {
                let mut g = next_gen.lock().unwrap();
                *g += 1;
                *g
            };
            let expected = model.expect_register(s.key, &s.deps, None);
            let ctx = Ctx { registry: registry.clone(), log: log.clone(), next_gen: next_gen.clone() };
            let res = resource(&ctx, s.key, s.prio, &s.deps, s.is_async, s.late, generation);
            let got = registry.register(res).map_err(|e| e.error().clone());
            assert_eq!(got, expected);
            if got.is_ok() {
                model
                    .live
                    .insert(s.key, Live { prio: s.prio, deps: s.deps.into_iter().collect(), generation });
            }
        }
        let before = log.lock().unwrap().len();
        let (full, in_run, report) = match td {
            Teardown::All => (true, model.live.keys().copied().collect(), registry.cleanup_all_blocking()),
            Teardown::Shutdown => {
                model.closed = true;
                (true, model.live.keys().copied().collect(), registry.shutdown_blocking())
            }
            Teardown::Id(k) => {
                let selected = model.live.keys().copied().filter(|&x| x == k).collect();
                let set = model.cascade(selected);
                (false, set, registry.teardown_blocking(Selection::id(id(k)), TeardownOptions::new()))
            }
        };
        let events = log.lock().unwrap()[before..].to_vec();
        replay(&mut model, &events, full, in_run, &report, max_concurrency > 1);
        assert_eq!(registry.len(), model.live.len(), "registry and model agree on what is left");
    }
    // The registry is still usable and empties completely.
    registry.cleanup_all_blocking();
    assert!(registry.is_empty() || model.closed);
}

/// 300 cases by default; `PROPTEST_CASES` for a longer soak.
fn cases() -> u32 {
    std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(300)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn registrations_during_a_one_at_a_time_teardown_match_the_reference_model(
        rounds in proptest::collection::vec((proptest::collection::vec(seed(), 1..8), teardown()), 1..4)
    ) {
        run_rounds(rounds, 1);
    }

    #[test]
    fn registrations_during_a_concurrent_teardown_keep_dependency_order(
        rounds in proptest::collection::vec((proptest::collection::vec(seed(), 1..8), teardown()), 1..4)
    ) {
        run_rounds(rounds, 4);
    }
}

/// The case the hardening issue names: `b` is queued, a cleanup registers `late` depending on
/// it, and `b` has a dependency of its own that must outlive it.
#[test]
fn a_late_dependent_of_a_queued_resource_runs_before_it_and_it_runs_once() {
    let registry = Registry::builder().max_concurrency(1).build().unwrap();
    let log = common::Log::new();
    registry.register(Resource::new("d", log.rec("d")).priority(Priority::Critical)).unwrap();
    registry
        .register(Resource::new("b", log.rec("b")).priority(Priority::Critical).depends_on(["d"]))
        .unwrap();
    let (r, l) = (registry.clone(), log.clone());
    registry
        .register(
            Resource::new("x", move || {
                l.push("x");
                r.register(Resource::new("late", l.rec("late")).priority(Priority::Low).depends_on(["b"]))
                    .unwrap();
            })
            .priority(Priority::Critical),
        )
        .unwrap();
    let report = common::within(std::time::Duration::from_secs(10), move || registry.cleanup_all_blocking());
    assert!(report.is_success(), "{report}");
    assert_eq!(log.entries(), ["x", "late", "b", "d"]);
}
