//! Model-based property tests: random operation sequences run against the real `Registry` and
//! `Scope` and against a plain reference model, compared after every step.
//!
//! Checked: every action runs exactly once or is reported skipped, cancelled or handed back —
//! never twice; no resource is cleaned before anything that depends on it; phases go by
//! effective priority; errors are the ones the model predicts.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use closeout::{Category, Error, Priority, Registry, Resource, Scope, Selection, Status, TeardownOptions};
use proptest::prelude::*;

const KEYS: u8 = 10;

#[derive(Clone, Debug)]
enum Op {
    Register { key: u8, prio: u8, deps: Vec<u8>, cat: u8, tagged: bool, fails: bool, is_async: bool },
    Unregister { key: u8 },
    AddDep { a: u8, b: u8 },
    TeardownAll,
    TeardownId { key: u8 },
    TeardownCategory { cat: u8 },
    TeardownTag,
    Shutdown,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0..KEYS, 0u8..4, proptest::collection::vec(0..KEYS, 0..3), 0u8..3, any::<bool>(), proptest::bool::weighted(0.2), proptest::bool::weighted(0.2))
            .prop_map(|(key, prio, deps, cat, tagged, fails, is_async)| Op::Register { key, prio, deps, cat, tagged, fails, is_async }),
        2 => (0..KEYS).prop_map(|key| Op::Unregister { key }),
        2 => (0..KEYS, 0..KEYS).prop_map(|(a, b)| Op::AddDep { a, b }),
        1 => Just(Op::TeardownAll),
        2 => (0..KEYS).prop_map(|key| Op::TeardownId { key }),
        1 => (0u8..3).prop_map(|cat| Op::TeardownCategory { cat }),
        1 => Just(Op::TeardownTag),
        1 => Just(Op::Shutdown),
    ]
}

fn id(key: u8) -> String {
    format!("r{key}")
}

fn category(cat: u8) -> Category {
    [Category::Database, Category::Network, Category::custom("misc")][cat as usize].clone()
}

#[derive(Clone, Debug)]
struct ModelRes {
    prio: u8,
    deps: BTreeSet<u8>,
    cat: u8,
    tagged: bool,
    fails: bool,
    /// Registration number: identifies this incarnation in the run log.
    generation: u64,
}

#[derive(Default)]
struct Model {
    live: BTreeMap<u8, ModelRes>,
    closed: bool,
}

impl Model {
    fn dependents(&self, key: u8) -> BTreeSet<u8> {
        self.live.iter().filter(|(_, r)| r.deps.contains(&key)).map(|(k, _)| *k).collect()
    }

    fn reaches(&self, from: u8, to: u8) -> bool {
        let mut stack = vec![from];
        let mut seen = BTreeSet::new();
        while let Some(n) = stack.pop() {
            if n == to {
                return true;
            }
            if seen.insert(n) {
                stack.extend(self.live[&n].deps.iter().copied());
            }
        }
        false
    }

    /// Selected keys plus everything that transitively depends on them.
    fn cascade(&self, selected: BTreeSet<u8>) -> BTreeSet<u8> {
        let mut out = selected.clone();
        let mut stack: Vec<u8> = selected.into_iter().collect();
        while let Some(n) = stack.pop() {
            for d in self.dependents(n) {
                if out.insert(d) {
                    stack.push(d);
                }
            }
        }
        out
    }

    fn effective(&self, key: u8) -> u8 {
        let r = &self.live[&key];
        r.deps.iter().map(|&d| self.effective(d)).fold(r.prio, u8::min)
    }
}

type RunLog = Arc<Mutex<Vec<(u8, u64)>>>;

fn check_teardown(
    model: &mut Model,
    report: &closeout::Report,
    log: &RunLog,
    before: usize,
    set: BTreeSet<u8>,
) {
    let ran: Vec<(u8, u64)> = log.lock().unwrap()[before..].to_vec();
    let ran_keys: Vec<u8> = ran.iter().map(|(k, _)| *k).collect();
    let ran_set: BTreeSet<u8> = ran_keys.iter().copied().collect();
    assert_eq!(ran_set, set, "ran exactly the selection plus its dependents");
    assert_eq!(ran_keys.len(), set.len(), "each exactly once");
    assert_eq!(report.len(), set.len(), "{report}");
    for &(k, generation) in &ran {
        assert_eq!(model.live[&k].generation, generation, "ran the current incarnation of {k}");
        let entry = report.get(&id(k)).expect("reported");
        let expect_fail = model.live[&k].fails;
        assert_eq!(matches!(entry.status(), Status::Failed(_)), expect_fail, "{entry:?}");
        assert_eq!(!matches!(entry.status(), Status::Failed(_)), entry.status().is_ok());
    }
    let pos = |k: u8| ran_keys.iter().position(|&x| x == k).unwrap();
    for &a in &set {
        for &b in &model.live[&a].deps {
            if set.contains(&b) {
                assert!(pos(a) < pos(b), "{a} depends on {b}: must be cleaned first; order {ran_keys:?}");
            }
        }
    }
    let effs: Vec<u8> = ran_keys.iter().map(|&k| model.effective(k)).collect();
    assert!(effs.windows(2).all(|w| w[0] <= w[1]), "phases by effective priority: {ran_keys:?} {effs:?}");
    for k in set {
        model.live.remove(&k);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn registry_matches_the_reference_model(ops in proptest::collection::vec(op(), 1..40)) {
        let registry = Registry::builder().max_concurrency(1).build().unwrap();
        let log: RunLog = Arc::default();
        let mut model = Model::default();
        let mut generation = 0u64;
        let mut handed_back = 0usize;
        for op in ops {
            match op {
                Op::Register { key, prio, deps, cat, tagged, fails, is_async } => {
                    generation += 1;
                    let g = generation;
                    let l = log.clone();
                    let run = move || {
                        l.lock().unwrap().push((key, g));
                        if fails { Err(std::io::Error::other("planned failure")) } else { Ok(()) }
                    };
                    let mut res = if is_async {
                        Resource::new_async(id(key), async move { run() })
                    } else {
                        Resource::new(id(key), run)
                    };
                    res = res.priority(Priority::ALL_FOR_TESTS[prio as usize]).category(category(cat))
                        .depends_on(deps.iter().map(|&d| id(d)));
                    if tagged {
                        res = res.tag("t");
                    }
                    let expected = if model.closed {
                        Some(Error::Closed)
                    } else if model.live.contains_key(&key) {
                        Some(Error::DuplicateId(id(key)))
                    } else {
                        deps.iter().find(|d| !model.live.contains_key(d))
                            .map(|&d| Error::UnknownDependency { id: id(key), dependency: id(d) })
                    };
                    match (registry.register(res), expected) {
                        (Ok(()), None) => {
                            let deps = deps.into_iter().collect();
                            model.live.insert(key, ModelRes { prio, deps, cat, tagged, fails, generation: g });
                        }
                        (Err(e), Some(exp)) => {
                            prop_assert_eq!(e.error(), &exp);
                            let back = e.into_resource();
                            prop_assert_eq!(back.get_id(), id(key));
                            handed_back += 1;
                        }
                        (got, exp) => prop_assert!(false, "register {key}: got {got:?}, expected {exp:?}"),
                    }
                }
                Op::Unregister { key } => {
                    let got = registry.unregister(&id(key));
                    match model.live.get(&key) {
                        None => prop_assert!(matches!(got, Ok(None))),
                        Some(_) => {
                            let dependents = model.dependents(key);
                            if dependents.is_empty() {
                                prop_assert!(matches!(&got, Ok(Some(r)) if r.get_id() == id(key)));
                                model.live.remove(&key);
                                handed_back += 1;
                            } else {
                                let Err(Error::HasDependents { dependents: named, .. }) = got else {
                                    panic!("expected HasDependents, got {got:?}")
                                };
                                let named: BTreeSet<String> = named.into_iter().collect();
                                let want: BTreeSet<String> = dependents.into_iter().map(id).collect();
                                prop_assert_eq!(named, want);
                            }
                        }
                    }
                }
                Op::AddDep { a, b } => {
                    let got = registry.add_dependency(&id(a), &id(b));
                    if !model.live.contains_key(&a) {
                        prop_assert_eq!(got, Err(Error::NotFound(id(a))));
                    } else if !model.live.contains_key(&b) {
                        prop_assert_eq!(got, Err(Error::NotFound(id(b))));
                    } else if model.reaches(b, a) {
                        let Err(Error::Cycle(path)) = got else { panic!("expected a cycle, got {got:?}") };
                        prop_assert_eq!(path.first(), Some(&id(a)));
                        prop_assert_eq!(path.last(), Some(&id(a)));
                    } else {
                        prop_assert_eq!(got, Ok(()));
                        model.live.get_mut(&a).unwrap().deps.insert(b);
                    }
                }
                Op::TeardownAll | Op::Shutdown | Op::TeardownId { .. } | Op::TeardownCategory { .. } | Op::TeardownTag => {
                    let (sel, selected): (Selection, BTreeSet<u8>) = match op {
                        Op::TeardownId { key } => (Selection::id(id(key)), model.live.keys().copied().filter(|&k| k == key).collect()),
                        Op::TeardownCategory { cat } => (
                            Selection::Category(category(cat)),
                            model.live.iter().filter(|(_, r)| r.cat == cat).map(|(k, _)| *k).collect(),
                        ),
                        Op::TeardownTag => (Selection::tag("t"), model.live.iter().filter(|(_, r)| r.tagged).map(|(k, _)| *k).collect()),
                        _ => (Selection::All, model.live.keys().copied().collect()),
                    };
                    let set = model.cascade(selected);
                    let plan: Vec<String> =
                        registry.plan_for(&sel, &TeardownOptions::new()).order().into_iter().map(String::from).collect();
                    let before = log.lock().unwrap().len();
                    let report = if matches!(op, Op::Shutdown) {
                        model.closed = true;
                        registry.shutdown_blocking()
                    } else {
                        registry.teardown_blocking(sel, TeardownOptions::new())
                    };
                    let ran: Vec<String> = log.lock().unwrap()[before..].iter().map(|(k, _)| id(*k)).collect();
                    prop_assert_eq!(&plan, &ran, "with max_concurrency 1 the plan is the order that runs");
                    check_teardown(&mut model, &report, &log, before, set);
                }
            }
            prop_assert_eq!(registry.len(), model.live.len());
        }
        let before = log.lock().unwrap().len();
        let report = registry.cleanup_all_blocking();
        let rest: BTreeSet<u8> = model.live.keys().copied().collect();
        check_teardown(&mut model, &report, &log, before, rest);
        // Every incarnation ran at most once; together with hand-backs, all are accounted for.
        let runs = log.lock().unwrap().clone();
        let distinct: BTreeSet<u64> = runs.iter().map(|(_, g)| *g).collect();
        prop_assert_eq!(distinct.len(), runs.len(), "nothing ran twice");
        prop_assert_eq!(runs.len() + handed_back, generation as usize);
    }

    #[test]
    fn scope_matches_the_reference_model(ops in proptest::collection::vec(scope_op(), 1..60)) {
        let scope = Scope::new();
        let ran: Arc<Mutex<Vec<usize>>> = Arc::default();
        let mut model: Vec<(usize, bool)> = Vec::new(); // (token, still pending)
        let mut handles = Vec::new();
        let mut released = false;
        for op in ops {
            match op {
                ScopeOp::Defer => {
                    let token = model.len();
                    let r = ran.clone();
                    let got = scope.defer(move || r.lock().unwrap().push(token));
                    if released {
                        prop_assert!(got.is_err());
                        model.push((token, false));
                        handles.push(None);
                    } else {
                        handles.push(Some(got.unwrap().into_owned()));
                        model.push((token, true));
                    }
                }
                ScopeOp::Cancel(i) => {
                    if handles.is_empty() { continue; }
                    let i = i % handles.len();
                    if let Some(h) = handles[i].take() {
                        let expected = model[i].1 && !released;
                        prop_assert_eq!(h.cancel(), expected);
                        model[i].1 = false;
                    }
                }
                ScopeOp::Release => {
                    let before = ran.lock().unwrap().len();
                    let report = scope.close_shared();
                    let now: Vec<usize> = ran.lock().unwrap()[before..].to_vec();
                    let expected: Vec<usize> = if released {
                        Vec::new()
                    } else {
                        model.iter().rev().filter(|(_, p)| *p).map(|(t, _)| *t).collect()
                    };
                    prop_assert_eq!(&now, &expected, "LIFO, cancelled ones skipped");
                    prop_assert_eq!(report.len(), expected.len());
                    for m in &mut model { m.1 = false; }
                    released = true;
                }
            }
            let pending = model.iter().filter(|(_, p)| *p).count();
            prop_assert_eq!(scope.len(), pending);
        }
        drop(scope);
        let runs = ran.lock().unwrap().clone();
        let distinct: BTreeSet<usize> = runs.iter().copied().collect();
        prop_assert_eq!(distinct.len(), runs.len(), "no action ran twice");
    }
}

#[derive(Clone, Debug)]
enum ScopeOp {
    Defer,
    Cancel(usize),
    Release,
}

fn scope_op() -> impl Strategy<Value = ScopeOp> {
    prop_oneof![6 => Just(ScopeOp::Defer), 3 => any::<usize>().prop_map(ScopeOp::Cancel), 1 => Just(ScopeOp::Release)]
}

trait AllForTests {
    const ALL_FOR_TESTS: [Priority; 4];
}

impl AllForTests for Priority {
    const ALL_FOR_TESTS: [Priority; 4] =
        [Priority::Critical, Priority::High, Priority::Medium, Priority::Low];
}
