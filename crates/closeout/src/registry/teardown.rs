//! The teardown engine: runs a [`Graph`] phase by phase, starting each resource as soon as every
//! resource depending on it has finished, with bounded concurrency, timeouts and a deadline.
//!
//! # Invariants
//!
//! T1. Single flight: at most one run per registry (`State::active`). A concurrent call joins it
//!    and receives the same report when the run covers its request, or waits for it to end and
//!    then runs its own.
//! T2. A cleanup is claimed (taken out of its slot) exactly once, under the state lock; from then
//!    on only the run holds it. So a resource is cleaned at most once.
//! T3. A node starts only when [`Schedule::pop`] hands it out: its phase is the current one and
//!    every in-run dependent has finished, including dependents registered during the run
//!    (see `schedule`'s invariants S1–S5). Not level by level: it starts the moment that holds.
//! T4. No lock is held while user code runs (cleanups, observer).
//! T5. A run ends only under the state lock with an empty inbox, so every registration made while
//!    it ran was either taken into it or reported.
//! T6. Whatever way a run ends, including its future being dropped, joiners receive a report and
//!    `State::active` is cleared (`Run`'s `Drop`).
//! T7. A run ends: it takes in a bounded number of late registrations ([`MIN_LATE_LIMIT`], or
//!    four times its size). Past that it starts nothing new; what is left stays registered and
//!    is reported as skipped (`SkipReason::RunLimit`), so a later teardown can take it.
//!
//! # Lock order
//!
//! `Inner::state` alone. `RunShared::report` (in `run`) is only locked with `state` released.

use crate::sync::Arc;
use crate::sync::atomic::Ordering;
use std::pin::Pin;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;

use crate::category::Category;
use crate::cleanup::Call;
use crate::observer::{Event, notify};
use crate::registry::Inner;
use crate::registry::graph::{self, Graph};
use crate::registry::run::RunShared;
use crate::registry::schedule::{Late, Schedule};
use crate::registry::select::{Selection, TeardownOptions};
use crate::registry::state::{SlotId, State};
use crate::report::{CleanupError, Report, ReportEntry, SkipReason, Status};
use crate::runner;

enum Role {
    Lead(Box<Run>),
    Join(Arc<RunShared>),
    Wait(Arc<RunShared>),
}

/// Decides under the lock whether this call leads a new run, joins, or waits (invariant T1).
fn begin(inner: &Arc<Inner>, sel: &Selection, opts: &TeardownOptions, close: bool, mode: Mode) -> Role {
    let mut st = inner.lock();
    if close {
        st.closed = true;
    }
    if let Some(run) = &st.active {
        if !run.covers(sel, opts) {
            return Role::Wait(Arc::clone(run));
        }
        // Relaxed: read back only under the same lock (see `joiners`).
        run.joiners.fetch_add(1, Ordering::Relaxed);
        return Role::Join(Arc::clone(run));
    }
    let graph = graph::build(&st, sel, opts);
    let shared = RunShared::new(sel.clone(), opts.clone());
    st.active = Some(Arc::clone(&shared));
    st.run_active = true;
    st.inbox.clear();
    // Inline only when no cleanup needs a runtime: a per-teardown timeout gives every sync
    // cleanup one.
    let inline = mode == Mode::Blocking && st.needs_runtime == 0 && opts.cleanup_timeout.is_none();
    let mode = if inline { Mode::Inline } else { mode };
    // Cancel first: a teardown of everything cancels the token before any cleanup runs.
    let token = if *sel == Selection::All { st.cancel.begin() } else { None };
    drop(st);
    if let Some(token) = token {
        token.cancel();
    }
    Role::Lead(Box::new(Run::new(Arc::clone(inner), shared, graph, sel, opts, mode)))
}

/// Tears down `sel`, awaiting async cleanups concurrently.
pub(crate) async fn teardown(
    inner: &Arc<Inner>,
    sel: Selection,
    opts: TeardownOptions,
    close: bool,
) -> Report {
    if runner::is_reentrant(inner.owner()) {
        return Report::reentrant();
    }
    loop {
        match begin(inner, &sel, &opts, close, Mode::Async) {
            Role::Lead(run) => return run.drive().await,
            Role::Join(shared) => return shared.wait().await,
            Role::Wait(shared) => {
                shared.wait().await;
            }
        }
    }
}

/// Tears down `sel` from sync code. Runs inline when nothing needs a runtime; otherwise drives
/// the same engine on a runtime (see `runner::block_on`).
pub(crate) fn teardown_blocking(
    inner: &Arc<Inner>,
    sel: Selection,
    opts: TeardownOptions,
    close: bool,
) -> Report {
    if runner::is_reentrant(inner.owner()) {
        return Report::reentrant();
    }
    loop {
        match begin(inner, &sel, &opts, close, Mode::Blocking) {
            Role::Lead(run) => {
                let shared = Arc::clone(&run.shared);
                let result = if run.mode == Mode::Inline {
                    // Inline mode never awaits anything pending, so one poll completes it.
                    futures_util::FutureExt::now_or_never(run.drive())
                } else {
                    runner::block_on(run.drive())
                        .inspect_err(|e| tracing::error!(error = %e, "closeout: no runtime for teardown"))
                        .ok()
                };
                // If the run could not complete here, its Drop published what it did.
                return result.unwrap_or_else(|| shared.wait_blocking());
            }
            Role::Join(shared) => return shared.wait_blocking(),
            Role::Wait(shared) => {
                shared.wait_blocking();
            }
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// Concurrent, on the caller's runtime (or one `block_on` made).
    Async,
    /// Requested from sync code; resolved to `Async` on a runtime, or `Inline`.
    Blocking,
    /// Everything inline on this thread; the rare cleanup that needs a runtime (registered
    /// during the run) blocks on its own.
    Inline,
}

type Running = FuturesUnordered<Pin<Box<dyn std::future::Future<Output = (u32, Status)> + Send>>>;

struct Run {
    inner: Arc<Inner>,
    shared: Arc<RunShared>,
    mode: Mode,
    /// Which node may start, and where each one is: the one state machine `Plan` drains too.
    sched: Schedule,
    node_start: Vec<Duration>,
    max_concurrency: usize,
    start: Instant,
    deadline_at: Option<Instant>,
    halt: Option<SkipReason>,
    /// When the last inline cleanup ended: the next inline one starts then, which saves a
    /// clock read per resource on the sync path.
    last_end: Option<Duration>,
    /// Whether each cleanup runs in a span of its own (`closeout.cleanup`, INFO, with its id
    /// and category): read once per run, so with no subscriber interested a cleanup pays
    /// nothing for it.
    spans: bool,
    /// An inline success whose slot is freed with the next claim (see `finish_deferred`).
    deferred: Option<(u32, Duration)>,
    inbox_dirty: bool,
    /// What the run takes in of registrations made while it runs.
    intake: Intake,
    entries: Vec<ReportEntry>,
    finished: bool,
}

/// Which registrations made during a run it takes in, and how many more it may (invariant T7).
struct Intake {
    /// A teardown of everything takes in all of them; a subset, only what depends on it.
    full: bool,
    opts: TeardownOptions,
    budget: usize,
    limit: usize,
}

/// A run takes in at most this many registrations made while it runs, or four times what it
/// started with if that is more: a cleanup that registers a new resource every time it runs
/// cannot keep a run going forever.
pub(crate) const MIN_LATE_LIMIT: usize = 16_384;

impl Run {
    fn new(
        inner: Arc<Inner>,
        shared: Arc<RunShared>,
        graph: Graph,
        sel: &Selection,
        opts: &TeardownOptions,
        mode: Mode,
    ) -> Run {
        let start = Instant::now();
        let deadline = opts.deadline.or(inner.deadline);
        let n = graph.nodes.len();
        Run {
            sched: Schedule::new(graph),
            node_start: vec![Duration::ZERO; n],
            max_concurrency: opts.max_concurrency.unwrap_or(inner.max_concurrency),
            start,
            // A deadline too far to represent is no deadline at all.
            deadline_at: deadline.and_then(|d| start.checked_add(d)),
            halt: None,
            last_end: None,
            spans: tracing::span_enabled!(tracing::Level::INFO),
            deferred: None,
            inbox_dirty: false,
            intake: Intake {
                full: *sel == Selection::All,
                opts: opts.clone(),
                budget: n.saturating_mul(4).max(MIN_LATE_LIMIT),
                limit: n.saturating_mul(4).max(MIN_LATE_LIMIT),
            },
            entries: Vec::with_capacity(n),
            finished: false,
            inner,
            shared,
            mode,
        }
    }

    /// Runs to the end. A panic inside the engine (an internal bug, a panicking `tracing`
    /// subscriber or observer, a panicking `Display` of an error) never wedges the registry: the
    /// run's `Drop` clears the single-flight state and answers every joiner with what was done,
    /// and the caller gets that report too (invariant T6).
    async fn drive(self) -> Report {
        use futures_util::FutureExt;
        use tracing::Instrument;
        let shared = Arc::clone(&self.shared);
        let fut = async move {
            let span = tracing::debug_span!("closeout.teardown", resources = self.sched.len());
            self.drive_in_span().instrument(span).await
        };
        // A `let`, so the caught future (and the run inside it, whose `Drop` publishes) is gone
        // before the published report is read.
        let result = std::panic::AssertUnwindSafe(fut).catch_unwind().await;
        match result {
            Ok(report) => report,
            Err(payload) => {
                let msg = runner::panic_message(payload);
                crate::observer::quietly(
                    || tracing::error!(panic = %msg, "closeout: teardown interrupted by a panic"),
                );
                shared.get().unwrap_or_default()
            }
        }
    }

    async fn drive_in_span(mut self) -> Report {
        notify(&self.inner.observer, Event::TeardownStarted { resources: self.sched.len() });
        let mut running: Running = FuturesUnordered::new();
        loop {
            if self.inbox_dirty {
                self.absorb();
            }
            std::future::poll_fn(|cx| {
                self.start_ready(&mut running, cx);
                std::task::Poll::Ready(())
            })
            .await;
            if running.is_empty() {
                if self.halt.is_some() {
                    break;
                }
                if self.sched.has_ready() || self.inbox_dirty {
                    continue;
                }
                if self.sched.advance() {
                    continue;
                }
                if self.try_end() {
                    break;
                }
                continue;
            }
            match self.next_completion(&mut running).await {
                Some((n, status)) => self.finish(n, status),
                None => self.abandon(&mut running),
            }
        }
        self.end(false)
    }

    /// Starts ready nodes of the current phase up to the concurrency bound. Sync cleanups
    /// without a timeout run right here.
    fn start_ready(&mut self, running: &mut Running, cx: &mut std::task::Context<'_>) {
        self.start_ready_inner(running, cx);
        // Nothing may stay deferred past this point: the run may await, absorb or end next.
        self.flush_deferred();
    }

    fn start_ready_inner(&mut self, running: &mut Running, cx: &mut std::task::Context<'_>) {
        // Only consecutive inline cleanups may chain their clock reads.
        self.last_end = None;
        while self.halt.is_none() && running.len() < self.max_concurrency {
            if self.deadline_at.is_some_and(|at| Instant::now() >= at) {
                self.halt = Some(SkipReason::Deadline);
                return;
            }
            // One lock per resource: free the last inline success, take in what was registered
            // meanwhile, then pop and claim. Absorbing before popping under the same lock is what
            // keeps a late dependent ahead of its dependency: nothing registered between the
            // pop and the claim can depend on the popped node (its slot is `Running` by then).
            let (popped, freed) = {
                let mut st = self.inner.lock();
                let freed = self
                    .deferred
                    .take()
                    .map(|(m, end)| (m, end, free_slot(&mut st, self.sched.node(m).sid, &Status::Ok)));
                if !st.inbox.is_empty()
                    && absorb(&mut self.sched, &mut self.node_start, &mut self.intake, &mut st)
                {
                    self.halt.get_or_insert(SkipReason::RunLimit { limit: self.intake.limit });
                }
                self.inbox_dirty = false;
                // Past the intake limit nothing new starts (invariant T7).
                let popped = if self.halt.is_some() {
                    None
                } else {
                    self.sched.pop().map(|n| (n, st.claim(self.sched.node(n).sid)))
                };
                (popped, freed)
            };
            if let Some((m, end, freed)) = freed {
                self.record(m, Status::Ok, freed, end);
            }
            let Some((n, claimed)) = popped else { return };
            let Some((cleanup, timeout)) = claimed else {
                // Unregistered or cleared since the run began: nothing to run or report.
                self.sched.complete(n);
                continue;
            };
            let timeout = self.intake.opts.cleanup_timeout.or(timeout);
            self.node_start[n as usize] = self.last_end.take().unwrap_or_else(|| self.start.elapsed());
            let owner = self.inner.owner();
            match (cleanup.into_call(), timeout) {
                // Sync without a timeout: run it here, now.
                (Call::Sync(f), None) => {
                    // The span only while a subscriber wants it: the common case pays a branch.
                    let status = if self.spans {
                        self.in_span(n, || runner::run_inline(owner, f))
                    } else {
                        runner::run_inline(owner, f)
                    };
                    let end = self.start.elapsed();
                    if status.is_ok() {
                        self.finish_deferred(n, end);
                    } else {
                        self.finish_at(n, status, end);
                    }
                    self.last_end = Some(end);
                }
                (call, timeout) if self.mode == Mode::Inline => {
                    let status = runner::block_on(self.instrumented(n, runner::run(owner, call, timeout)))
                        .unwrap_or_else(|e| Status::Failed(CleanupError::new(Box::new(e))));
                    self.finish(n, status);
                }
                // Polled once here first: a cleanup that is done at once (a no-op, a task that
                // already ended) is finished without a node in `running`. One that is not is
                // polled again by `running` with its own waker (a future wakes only the waker of
                // its latest poll), so this poll's waker, the run's, at most wakes it once more.
                (call, timeout) => {
                    let run = self.instrumented(n, runner::run(owner, call, timeout));
                    let mut fut: Pin<Box<dyn std::future::Future<Output = (u32, Status)> + Send>> =
                        Box::pin(async move { (n, run.await) });
                    match fut.as_mut().poll(cx) {
                        std::task::Poll::Ready((n, status)) => self.finish(n, status),
                        std::task::Poll::Pending => running.push(fut),
                    }
                }
            }
        }
    }

    /// The next finished cleanup, or `None` when the overall deadline passed first.
    async fn next_completion(&self, running: &mut Running) -> Option<(u32, Status)> {
        let Some(at) = self.deadline_at else { return running.next().await };
        let sleep = std::pin::pin!(tokio::time::sleep_until(at.into()));
        match futures_util::future::select(running.next(), sleep).await {
            futures_util::future::Either::Left((done, _)) => done,
            futures_util::future::Either::Right(_) => None,
        }
    }

    /// The deadline passed: every running cleanup is dropped and reported as timed out.
    fn abandon(&mut self, running: &mut Running) {
        running.clear();
        let now = self.start.elapsed();
        let abandoned: Vec<u32> = self.sched.running().collect();
        for n in abandoned {
            let ran = now.saturating_sub(self.node_start[n as usize]);
            self.finish(n, Status::TimedOut(ran));
        }
        self.halt = Some(SkipReason::Deadline);
    }

    /// Records a node that finished now, frees its slot and readies what it was holding back.
    fn finish(&mut self, n: u32, status: Status) {
        self.finish_at(n, status, self.start.elapsed());
    }

    /// Like `finish`, for a node whose end the caller already read from the clock.
    fn finish_at(&mut self, n: u32, status: Status, end: Duration) {
        // A deferred success goes first, so events and entries keep the order things ran in.
        self.flush_deferred();
        let freed = {
            let mut st = self.inner.lock();
            self.inbox_dirty = !st.inbox.is_empty();
            free_slot(&mut st, self.sched.node(n).sid, &status)
        };
        self.record(n, status, freed, end);
        self.sched.complete(n);
    }

    /// A sync cleanup that succeeded inline: its dependencies are released now (so ordering
    /// is exactly as with `finish`), but its slot is freed under the lock that claims the next
    /// resource, saving a lock round trip per resource on the sync path.
    fn finish_deferred(&mut self, n: u32, end: Duration) {
        self.flush_deferred();
        self.deferred = Some((n, end));
        self.sched.complete(n);
    }

    /// Frees and records a deferred success with a lock of its own.
    fn flush_deferred(&mut self) {
        if let Some((n, end)) = self.deferred.take() {
            let freed = free_slot(&mut self.inner.lock(), self.sched.node(n).sid, &Status::Ok);
            self.record(n, Status::Ok, freed, end);
        }
    }

    /// The span node `n`'s cleanup runs in: `closeout.cleanup` at INFO with its id and
    /// category, so what the cleanup itself logs carries them. (The slot is `Running`: still
    /// there, under its id.)
    #[cold]
    fn cleanup_span(&self, n: u32) -> Option<tracing::Span> {
        let st = self.inner.lock();
        let slot = st.slot(self.sched.node(n).sid)?;
        let category = &st.categories[slot.category as usize];
        Some(tracing::info_span!("closeout.cleanup", id = %slot.id, category = %category))
    }

    /// `fut` in node `n`'s span while a subscriber wants spans, else as it is.
    fn instrumented<F: std::future::Future>(
        &self,
        n: u32,
        fut: F,
    ) -> futures_util::future::Either<tracing::instrument::Instrumented<F>, F> {
        use futures_util::future::Either;
        match if self.spans { self.cleanup_span(n) } else { None } {
            Some(span) => Either::Left(tracing::Instrument::instrument(fut, span)),
            None => Either::Right(fut),
        }
    }

    /// Runs `f` in node `n`'s span.
    #[cold]
    fn in_span<T>(&self, n: u32, f: impl FnOnce() -> T) -> T {
        let span = self.cleanup_span(n);
        let _entered = span.as_ref().map(tracing::Span::enter);
        f()
    }

    /// Adds the report entry, tells the observer, and halts on a failure if asked to.
    fn record(&mut self, n: u32, status: Status, (id, category, detail): Freed, end: Duration) {
        let duration = end.saturating_sub(self.node_start[n as usize]);
        let observer = &self.inner.observer;
        if status.is_ok() {
            crate::observer::quietly(|| tracing::trace!(id = &*id, ?duration, "closeout: cleaned"));
            notify(observer, Event::Cleaned { id: &id, duration });
        } else {
            crate::observer::quietly(
                || tracing::warn!(id = &*id, %status, "closeout: cleanup did not succeed"),
            );
            notify(observer, Event::Failed { id: &id, status: &status });
            if self.intake.opts.stop_on_error && self.halt.is_none() {
                self.halt = Some(SkipReason::StoppedAfterError { failed: id.clone() });
            }
        }
        let node = self.sched.node(n);
        self.entries.push(ReportEntry {
            id: id.into(),
            seq: node.seq,
            category,
            priority: crate::category::Priority::from_index(node.priority),
            status,
            cascaded: node.cascaded,
            start: self.node_start[n as usize].into(),
            duration: duration.into(),
            detail,
        });
    }

    /// Takes registrations made during the run into it (see [`absorb`]).
    fn absorb(&mut self) {
        let mut st = self.inner.lock();
        self.inbox_dirty = false;
        if absorb(&mut self.sched, &mut self.node_start, &mut self.intake, &mut st) {
            self.halt.get_or_insert(SkipReason::RunLimit { limit: self.intake.limit });
        }
    }

    /// Ends the run if nothing was registered meanwhile (invariant T5).
    fn try_end(&mut self) -> bool {
        let mut st = self.inner.lock();
        if !st.inbox.is_empty() {
            drop(st);
            self.absorb();
            return false;
        }
        st.run_active = false;
        st.shrink_if_empty();
        true
    }

    /// Assembles the report, clears the run and hands the report to every waiter.
    /// `always_publish`: the leader itself will read the published report (its future could
    /// not finish), so publish even when nobody joined.
    fn end(mut self, always_publish: bool) -> Report {
        self.finished = true;
        let mut entries = std::mem::take(&mut self.entries);
        entries.sort_by_key(|e| e.start);
        let joined = {
            let mut st = self.inner.lock();
            st.run_active = false;
            st.active = None;
            if self.intake.full && !st.closed {
                // Still usable: what is spawned from now on gets a fresh token.
                st.cancel.reset();
            }
            let joined = self.shared.joiners.load(Ordering::Relaxed) > 0;
            let reason = self.halt.clone().unwrap_or(SkipReason::Deadline);
            let mut skipped: Vec<(crate::registry::state::SlotId, SkipReason, bool)> =
                self.sched.not_started().map(|node| (node.sid, reason.clone(), node.cascaded)).collect();
            if self.intake.full {
                for sid in std::mem::take(&mut st.inbox) {
                    if !graph::excluded(&st, sid.0 as usize, &self.intake.opts) {
                        skipped.push((sid, reason.clone(), false));
                    }
                }
            }
            skipped.extend(self.sched.held.drain(..).map(|(sid, r)| (sid, r, false)));
            for (sid, why, cascaded) in skipped {
                if let Some(slot) = st.slot(sid) {
                    entries.push(ReportEntry {
                        id: slot.id.to_string().into(),
                        seq: slot.seq,
                        category: st.categories[slot.category as usize].clone(),
                        priority: slot.priority(),
                        status: Status::Skipped(why),
                        cascaded,
                        start: Default::default(),
                        duration: Default::default(),
                        detail: None,
                    });
                }
            }
            // Last, after the skipped ones were read from their slots (invariant R4).
            st.shrink_if_empty();
            joined
        };
        let report = Report { entries, unlisted_ok: 0, duration: self.start.elapsed(), reentrant: false };
        notify(&self.inner.observer, Event::TeardownCompleted { report: &report });
        // The caller may read what the observer saw once this returns, but a blocking observer
        // never keeps the run past its deadline.
        if !std::thread::panicking() {
            self.inner.observer.flush(self.deadline_at);
        }
        crate::observer::quietly(
            || tracing::debug!(totals = %report.totals(), "closeout: teardown completed"),
        );
        // Waiters that did not join only need to wake up; they get an empty report.
        self.shared.publish(if joined || always_publish { report.clone() } else { Report::default() });
        report
    }
}

/// Takes registrations made during the run into it: all of them for a full teardown;
/// otherwise those that depend on something this run has yet to tear down (cascade).
///
/// Takes at most `budget` more (invariant T7); past it the rest stays in the inbox and this
/// returns true: the run then starts nothing new and reports what is left as skipped.
fn absorb(sched: &mut Schedule, node_start: &mut Vec<Duration>, intake: &mut Intake, st: &mut State) -> bool {
    let Intake { full, ref opts, ref mut budget, .. } = *intake;
    let mut inbox = std::mem::take(&mut st.inbox).into_iter();
    while let Some(sid) = inbox.next() {
        if *budget == 0 {
            st.inbox.push(sid);
            st.inbox.extend(inbox);
            return true;
        }
        let Some(slot) = st.slot(sid) else { continue };
        // Excluded resources stay registered, whenever they were registered.
        if graph::excluded(st, sid.0 as usize, opts) {
            continue;
        }
        if !full && !slot.deps().iter().any(|&d| sched.unstarted(d).is_some()) {
            continue;
        }
        let late =
            Late { sid, seq: slot.seq, priority: slot.priority, deps: slot.deps().to_vec(), cascaded: !full };
        sched.add_late(late);
        node_start.push(Duration::ZERO);
        *budget -= 1;
    }
    false
}

/// What a freed slot leaves for its report entry: id, category, and the detail its cleanup set
/// (boxed: one pointer to move around, and most resources have none).
#[allow(clippy::box_collection)]
type Freed = (String, Category, Option<Box<String>>);

/// Frees a finished node's slot and counts the outcome; returns what its entry needs.
fn free_slot(st: &mut State, sid: SlotId, status: &Status) -> Freed {
    let slot = st.free(sid.0);
    st.counters.ran.add(status);
    // The detail's own lock is taken under the state lock, never the other way round (a
    // cleanup sets its detail without any registry lock).
    let detail =
        slot.extra.as_ref().and_then(|e| e.detail.as_ref()).and_then(crate::Detail::take).map(Box::new);
    (slot.id, st.categories[slot.category as usize].clone(), detail)
}

impl Drop for Run {
    /// The run's future was dropped part way (or could not be polled): running cleanups were
    /// dropped with it and are reported as failed; unstarted ones stay registered and are
    /// reported as skipped (invariant T6).
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        // While unwinding, `finish` and `end` run no user code (observer, `tracing`): see
        // `observer::quietly`. A success still deferred is recorded first, so its slot is freed.
        self.flush_deferred();
        let dropped =
            "teardown was cancelled (its future dropped, or a panic ended it) while this cleanup ran";
        let running: Vec<u32> = self.sched.running().collect();
        for n in running {
            self.finish(n, Status::Failed(CleanupError::new(dropped.into())));
        }
        self.halt = Some(SkipReason::Cancelled);
        let shared = Arc::clone(&self.shared);
        let run = std::mem::replace(self, Run::placeholder(Arc::clone(&self.inner), shared));
        run.end(true);
    }
}

impl Run {
    /// An inert, finished run, left behind when `Drop` moves the real one out to end it.
    fn placeholder(inner: Arc<Inner>, shared: Arc<RunShared>) -> Run {
        Run {
            inner,
            shared,
            mode: Mode::Inline,
            sched: Schedule::new(Graph::default()),
            node_start: Vec::new(),
            max_concurrency: 1,
            start: Instant::now(),
            deadline_at: None,
            halt: None,
            last_end: None,
            spans: tracing::span_enabled!(tracing::Level::INFO),
            deferred: None,
            inbox_dirty: false,
            intake: Intake { full: false, opts: TeardownOptions::default(), budget: 0, limit: 0 },
            entries: Vec::new(),
            finished: true,
        }
    }
}
