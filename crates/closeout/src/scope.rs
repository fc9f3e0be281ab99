//! [`Scope`]: a stack of cleanup actions, released last-in-first-out.
//!
//! Like `defer` in Go or Python's `ExitStack`, but every action runs even when others fail or
//! panic, async actions are awaited, and the outcome of each comes back in a [`Report`].

use std::borrow::Cow;
use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::cancel::Cancel;
use crate::cleanup::{Call, Cleanup, IntoOutcome};
use crate::error::Rejected;
use crate::outcomes::Outcomes;
use crate::report::{Report, Status};
use crate::runner;

/// Marks the end of a list in the slab.
const NIL: u32 = u32::MAX;

/// A stack of cleanup actions, released last-in-first-out.
///
/// Dropping a scope releases it; [`close`](Scope::close) does the same and returns the
/// [`Report`]. Every action runs even when an earlier one fails or panics; all errors are kept,
/// in order. Releasing twice is a no-op. An action offered after release is handed back in a
/// [`Rejected`] error, never run behind your back and never dropped.
///
/// # Examples
///
/// ```
/// use closeout::Scope;
///
/// let scope = Scope::new();
/// scope.defer(|| println!("runs second"))?;
/// let handle = scope.defer(|| println!("never runs"))?;
/// scope.defer(|| println!("runs first"))?;
/// assert!(handle.cancel());
/// let report = scope.close(); // cleanup happens here, last-in-first-out
/// assert_eq!(report.len(), 2);
/// assert!(report.is_success());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// Building something in steps, all-or-nothing (the `ExitStack.pop_all` pattern):
///
/// ```
/// use closeout::Scope;
///
/// fn open_both() -> Result<Scope, Box<dyn std::error::Error>> {
///     let mut scope = Scope::new();
///     scope.defer(|| println!("close first"))?;
///     std::fs::metadata(".")?; // if this fails, `scope` drops and closes "first"
///     scope.defer(|| println!("close second"))?;
///     Ok(scope.take()) // success: hand every action to the caller
/// }
/// let owned = open_both()?;
/// assert_eq!(owned.len(), 2);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # What the report lists
///
/// Every action is accounted for in [`Report::len`] and [`Report::totals`]. Named actions
/// ([`defer_named`](Scope::defer_named)) and every action that fails or panics get an entry, in
/// the order they ran; an unnamed failure is labelled `#n` (its deferral order) and is not
/// timed. Successful unnamed actions are only counted ([`Report::unlisted_ok`]): that keeps
/// `defer` + release close to the cost of a vector of boxed closures. Failures are also logged
/// with `tracing` at warn level as they happen.
///
/// # Async actions
///
/// [`defer_async`](Scope::defer_async) stores a future that release awaits in its place in the
/// order. [`close_async`](Scope::close_async) awaits them properly. `Drop` cannot await, so a
/// scope dropped with async actions still runs them, by blocking the dropping thread:
///
/// - without a tokio runtime on the thread, on a temporary current-thread runtime;
/// - inside a multi-thread runtime, through the runtime's handle after handing this worker on
///   (`block_in_place`), so its timers and I/O keep working even when every worker is busy;
/// - inside a current-thread runtime, on a helper thread with a fresh runtime: futures that need
///   I/O registered with the blocked runtime cannot progress (they end at the deadline), so
///   release such scopes with `close_async().await` instead.
///
/// Each time `Drop` has to block for async actions it emits a `tracing` warning naming how many,
/// and every failed action is logged at error level: nothing is silent.
///
/// # Timeouts and the deadline
///
/// A blocking release (`close`, `close_shared`, `Drop`) never waits forever: its async actions share
/// a deadline, [`Scope::DEFAULT_DEADLINE`] (30 s) unless [`Scope::builder`] sets one. Past it,
/// the action running is dropped and every async action left is reported as timed out.
/// `close_async` has a deadline only when one is set. Per action: a timeout of its own
/// ([`defer_async_within`](Scope::defer_async_within)) or the scope's
/// [`action_timeout`](ScopeBuilder::action_timeout). A sync action runs inline and cannot be
/// interrupted, unless it has a timeout: then it runs on a helper thread that is detached if it
/// overruns.
///
/// # Resource leaking
///
/// Like every destructor, `Drop` does not run on `std::process::exit`, `abort`, SIGKILL or
/// `mem::forget`; see the crate docs, section "What cleanup cannot guarantee".
///
/// # Compile-time guarantees
///
/// [`close`](Scope::close) consumes the scope, so nothing can be deferred after it:
///
/// ```compile_fail
/// let scope = closeout::Scope::new();
/// let _ = scope.close();
/// scope.defer(|| ()); // error: use of moved value `scope`
/// ```
///
/// A borrowed [`Handle`] cannot outlive its scope (use [`Handle::into_owned`] for that):
///
/// ```compile_fail
/// let handle = {
///     let scope = closeout::Scope::new();
///     scope.defer(|| ()).unwrap()
/// }; // error: `scope` does not live long enough
/// handle.cancel();
/// ```
///
/// # Comparison to `Registry`
///
/// A scope is anonymous and ordered only by position; a [`Registry`](crate::Registry) names its
/// resources and orders them by dependencies and priority, concurrently, with timeouts. Both
/// produce the same [`Report`].
#[must_use = "dropping a Scope releases its actions at once"]
pub struct Scope {
    shared: Arc<Shared>,
    /// The entry in the parent scope that releases this child, if any.
    parent: Option<OwnedHandle>,
}

pub(crate) struct Shared {
    stack: Mutex<Stack>,
    /// A child's token is a child of its parent's.
    parent: Option<Weak<Shared>>,
    limits: Limits,
}

/// A scope's time limits ([`ScopeBuilder`]); a child scope inherits its parent's.
#[derive(Clone, Copy, Debug, Default)]
struct Limits {
    /// For a whole release.
    deadline: Option<Duration>,
    /// For each action that has no timeout of its own.
    action_timeout: Option<Duration>,
}

impl Limits {
    /// Whether a release must go through the timed (async-capable) path.
    fn timed(&self) -> bool {
        self.action_timeout.is_some()
    }
}

/// A doubly linked list threaded through a slab: push, cancel anywhere and pop are O(1), and
/// cancelled slots are reused, so memory follows the live count.
#[derive(Default)]
struct Stack {
    slots: Vec<Slot>,
    tail: u32,
    free: u32,
    len: usize,
    /// Waiting async actions and child scopes: whether release needs a runtime is O(1) to
    /// answer when there are no children.
    asyncs: usize,
    children: usize,
    next_seq: u32,
    released: bool,
    /// Whether a slot was ever vacated since the slab was made: until then the slab holds the
    /// actions in deferral order, every slot live (what `release_sync`'s fast path relies on).
    vacated: bool,
    cancel: Cancel,
    /// New slots start at this generation: above every generation a dropped slab handed out,
    /// so a handle from before a shrink can never match a slot made after it.
    gen_base: u32,
}

/// A slab this large that empties is freed (see `Stack::remove`): memory follows what is live,
/// not the most that ever was, e.g. after a million timeouts pending at once have all fired.
const SHRINK_AT: usize = 4096;

struct Slot {
    action: Option<Action>,
    /// Out of line and only for named or timed actions: most actions are neither, and a small
    /// slot keeps the hot path close to a plain vector of boxes.
    meta: Option<Box<Meta>>,
    /// Deferral order (wraps after 2^32, used only to label unnamed failures).
    seq: u32,
    prev: u32,
    next: u32,
    generation: u32,
}

enum Action {
    Cleanup(Cleanup),
    Child(Arc<Shared>),
}

/// An action's name and its own timeout.
struct Meta {
    name: Cow<'static, str>,
    timeout: Option<Duration>,
}

impl Meta {
    /// The out-of-line part of a named action; none for an unnamed one.
    #[inline]
    fn named(name: Cow<'static, str>) -> Option<Box<Meta>> {
        (!name.is_empty()).then(|| Box::new(Meta { name, timeout: None }))
    }
}

impl Stack {
    fn new() -> Stack {
        Stack { tail: NIL, free: NIL, ..Stack::default() }
    }

    #[inline]
    fn count(&mut self, action: &Action, delta: isize) {
        match action {
            Action::Cleanup(c) if c.is_async() => self.asyncs = self.asyncs.wrapping_add_signed(delta),
            Action::Child(_) => self.children = self.children.wrapping_add_signed(delta),
            Action::Cleanup(_) => {}
        }
    }

    #[inline]
    fn push(&mut self, action: Action, name: Cow<'static, str>) -> (u32, u32) {
        self.push_meta(action, Meta::named(name))
    }

    #[inline]
    fn push_meta(&mut self, action: Action, meta: Option<Box<Meta>>) -> (u32, u32) {
        self.count(&action, 1);
        let seq = self.next_seq;
        self.next_seq = self.next_seq.wrapping_add(1);
        let prev = self.tail;
        let idx = if self.free != NIL {
            let idx = self.free;
            self.free = self.slots[idx as usize].next;
            idx
        } else {
            let idx = u32::try_from(self.slots.len()).expect("more than 4 billion live actions");
            // An empty slot first, filled in place below as a reused one is: building the
            // whole slot on the stack and copying it in was the costliest step of a defer.
            self.slots.push(Slot {
                action: None,
                meta: None,
                seq: 0,
                prev: NIL,
                next: NIL,
                generation: self.gen_base,
            });
            idx
        };
        let slot = &mut self.slots[idx as usize];
        slot.action = Some(action);
        slot.meta = meta;
        slot.seq = seq;
        slot.prev = prev;
        slot.next = NIL;
        let generation = slot.generation;
        if prev != NIL {
            self.slots[prev as usize].next = idx;
        }
        self.tail = idx;
        self.len += 1;
        (idx, generation)
    }

    /// Unlinks a live slot and puts it on the free list.
    fn remove(&mut self, idx: u32, generation: u32) -> Option<Action> {
        let slot = self.slots.get_mut(idx as usize)?;
        if slot.generation != generation || slot.action.is_none() {
            return None;
        }
        let action = slot.action.take();
        self.vacated = true;
        if let Some(a) = &action {
            self.count(a, -1);
        }
        let slot = &mut self.slots[idx as usize];
        let (prev, next) = (slot.prev, slot.next);
        slot.generation = slot.generation.wrapping_add(1);
        slot.meta = None;
        slot.next = self.free;
        self.free = idx;
        if prev != NIL {
            self.slots[prev as usize].next = next;
        }
        if next != NIL {
            self.slots[next as usize].prev = prev;
        } else {
            self.tail = prev;
        }
        self.len -= 1;
        if self.len == 0 && self.slots.len() >= SHRINK_AT {
            self.shrink();
        }
        action
    }

    /// Puts `child` where the child scope at `idx` was (`Scope::take` on a child keeps its
    /// place in the order); false if that entry is gone.
    fn replace_child(&mut self, idx: u32, generation: u32, child: Arc<Shared>) -> bool {
        match self.slots.get_mut(idx as usize) {
            Some(slot) if slot.generation == generation && matches!(slot.action, Some(Action::Child(_))) => {
                slot.action = Some(Action::Child(child));
                true
            }
            _ => false,
        }
    }

    /// Frees an empty slab.
    #[cold]
    fn shrink(&mut self) {
        let top = self.slots.iter().map(|s| s.generation).max().unwrap_or(0);
        self.gen_base = top.wrapping_add(1);
        self.slots = Vec::new();
        self.free = NIL;
        self.tail = NIL;
        self.vacated = false;
    }

    /// Marks this stack released and returns everything it held, to run outside the lock,
    /// with the token to cancel before any of it runs.
    fn take_all(&mut self) -> (Stack, Option<CancellationToken>) {
        let token = self.cancel.begin();
        let cancel = std::mem::take(&mut self.cancel);
        let gen_base = self.gen_base;
        (std::mem::replace(self, Stack { released: true, cancel, gen_base, ..Stack::new() }), token)
    }
}

impl Shared {
    fn new(parent: Option<Weak<Shared>>, limits: Limits) -> Arc<Shared> {
        Arc::new(Shared { stack: Mutex::new(Stack::new()), parent, limits })
    }

    /// Takes every action out, marks the scope released, and cancels its token before any
    /// action runs (cancel first).
    fn take_all(&self) -> Stack {
        let (stack, token) = self.lock().take_all();
        if let Some(token) = token {
            token.cancel();
        }
        stack
    }

    /// The scope's token; a child's is a child of its parent's. Locks one scope at a time.
    pub(crate) fn token(&self) -> CancellationToken {
        let parent = self.parent.as_ref().and_then(Weak::upgrade).map(|p| p.token());
        self.lock().cancel.token(parent)
    }

    /// When release began, if it did: grace periods count from here.
    pub(crate) fn cancelled_at(&self) -> Option<Instant> {
        self.lock().cancel.cancelled_at()
    }

    /// Removes an action unrun (a tracked task that finished by itself).
    pub(crate) fn remove(&self, idx: u32, generation: u32) -> bool {
        self.lock().remove(idx, generation).is_some()
    }

    #[inline]
    fn lock(&self) -> MutexGuard<'_, Stack> {
        // No user code runs under this lock, so poisoning cannot leave it inconsistent.
        crate::sync::lock_std(&self.stack)
    }

    /// Whether any waiting action, here or in a child scope, is async. Locks one scope at a
    /// time, parent before child, and never two at once.
    fn has_async(&self) -> bool {
        let children: Vec<Arc<Shared>> = {
            let st = self.lock();
            if st.asyncs > 0 {
                return true;
            }
            if st.children == 0 {
                return false;
            }
            let mut children = Vec::new();
            for slot in &st.slots {
                match &slot.action {
                    Some(Action::Cleanup(c)) if c.is_async() => return true,
                    Some(Action::Child(child)) => children.push(Arc::clone(child)),
                    _ => {}
                }
            }
            children
        };
        children.iter().any(|c| c.has_async())
    }
}

/// Walks a taken stack last-in first, handing each action to `f` with its name, seq and own
/// timeout.
fn for_each_lifo(mut stack: Stack, mut f: impl FnMut(Action, Cow<'static, str>, u64, Option<Duration>)) {
    let mut idx = stack.tail;
    while idx != NIL {
        let slot = &mut stack.slots[idx as usize];
        idx = slot.prev;
        if let Some(action) = slot.action.take() {
            let (name, timeout) = slot.meta.take().map_or((Cow::Borrowed(""), None), |m| (m.name, m.timeout));
            f(action, name, u64::from(slot.seq), timeout);
        }
    }
}

/// Releases on this thread. Async actions only reach here if one was added to a child after
/// `has_async` answered (or no runtime could be built); they are run through the blocking path
/// rather than dropped.
fn release_sync(shared: &Shared, out: &mut Outcomes) {
    let _mark = runner::Mark::enter(0);
    let mut stack = shared.take_all();
    if !stack.vacated {
        // No slot was ever vacated: the slab is the stack itself, in deferral order, and is
        // popped from the top without following links.
        let mut slots = std::mem::take(&mut stack.slots);
        while let Some((seq, status)) = run_plain(&mut slots, out) {
            match status {
                Some(status) => out.record(Cow::Borrowed(""), seq, status, None),
                None => {
                    if let Some(slot) = slots.pop() {
                        release_slot(slot, out);
                    }
                }
            }
        }
        return;
    }
    for_each_lifo(stack, |action, name, seq, _timeout| release_action(action, name, seq, out));
}

/// Releases one action of a taken stack, on this thread.
fn release_action(action: Action, name: Cow<'static, str>, seq: u64, out: &mut Outcomes) {
    match action {
        Action::Cleanup(c) => {
            let at = out.clock(&name);
            let status = match c.into_call() {
                Call::Sync(f) => runner::run_unmarked(f),
                Call::Async(fut) => runner::block_on_status(fut),
            };
            out.record(name, seq, status, at);
        }
        Action::Child(child) => release_sync(&child, out),
    }
}

fn release_slot(mut slot: Slot, out: &mut Outcomes) {
    if let Some(action) = slot.action.take() {
        let name = slot.meta.take().map_or(Cow::Borrowed(""), |m| m.name);
        release_action(action, name, u64::from(slot.seq), out);
    }
}

/// Runs the plain actions (unnamed and sync) on top of a dense stack, last first, as one
/// stretch ([`runner::run_stretch`]), and counts the successes: a landing pad, a clock check and
/// a report call per action were most of what a scope cost over a vector of boxes. Stops at the
/// first action that is not plain (returned with no status, still on the stack) or after one
/// that failed or panicked (returned with its deferral number and status). `None` once the
/// stack is empty.
fn run_plain(slots: &mut Vec<Slot>, out: &mut Outcomes) -> Option<(u64, Option<Status>)> {
    let (ok, stopped) = runner::run_stretch(|| {
        let top = slots.last()?;
        if top.meta.is_some() || !matches!(&top.action, Some(Action::Cleanup(c)) if !c.is_async()) {
            return None;
        }
        let Some(Slot { action: Some(Action::Cleanup(c)), seq, .. }) = slots.pop() else { return None };
        match c.into_call() {
            Call::Sync(f) => Some((u64::from(seq), move || f.call())),
            // Not reached: a plain action is sync (checked above).
            Call::Async(_) => None,
        }
    });
    out.count_ok(ok);
    match stopped {
        Some((seq, status)) => Some((seq, Some(status))),
        None => slots.last().map(|top| (u64::from(top.seq), None)),
    }
}

/// Releases, awaiting async actions in their place in the order. An async action gets at most
/// its own timeout (or its scope's `action_timeout`) and never runs past `deadline`: past
/// either it is dropped and reported as timed out. A sync action with a timeout runs on a helper
/// thread that is detached if it overruns; one without runs inline.
fn release_async<'a>(
    shared: &'a Shared,
    out: &'a mut Outcomes,
    deadline: Option<Instant>,
) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send + 'a>> {
    Box::pin(async move {
        let mut actions = Vec::new();
        let stack = shared.take_all();
        for_each_lifo(stack, |a, name, seq, timeout| actions.push((a, name, seq, timeout)));
        for (action, name, seq, timeout) in actions {
            match action {
                Action::Cleanup(c) => {
                    let at = out.clock(&name);
                    let own = timeout.or(shared.limits.action_timeout);
                    let call = c.into_call();
                    let left = match (&call, deadline) {
                        (Call::Async(_), Some(at)) => Some(at.saturating_duration_since(Instant::now())),
                        _ => None,
                    };
                    let limit = match (own, left) {
                        (Some(a), Some(b)) => Some(a.min(b)),
                        (a, b) => a.or(b),
                    };
                    let status = runner::run(0, call, limit).await;
                    out.record(name, seq, status, at);
                }
                Action::Child(child) => release_async(&child, out, deadline).await,
            }
        }
    })
}

fn release_blocking(shared: &Arc<Shared>) -> Report {
    if !shared.has_async() && !shared.limits.timed() {
        let mut out = Outcomes::new();
        release_sync(shared, &mut out);
        return out.into_report();
    }
    let shared2 = Arc::clone(shared);
    // A blocking release always has a deadline (invariant: `Drop` never waits forever).
    let deadline = Some(crate::clock::saturating_deadline(
        Instant::now(),
        shared.limits.deadline.unwrap_or(Scope::DEFAULT_DEADLINE),
    ));
    let result = runner::block_on(async move {
        let mut out = Outcomes::new();
        release_async(&shared2, &mut out, deadline).await;
        out
    });
    match result {
        Ok(out) => out.into_report(),
        Err(e) => {
            tracing::error!(error = %e, "closeout: no runtime for async scope actions; running them one by one");
            let mut out = Outcomes::new();
            release_sync(shared, &mut out);
            out.into_report()
        }
    }
}

/// Configures a [`Scope`]'s time limits.
///
/// ```
/// use closeout::Scope;
/// use std::time::Duration;
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let scope = Scope::builder()
///     .deadline(Duration::from_millis(200)) // for the whole release
///     .action_timeout(Duration::from_millis(50)) // for each action without its own
///     .build()?;
/// scope.defer_async_named("hung", std::future::pending::<()>())?;
/// let report = scope.close_async().await; // returns after 50 ms, not never
/// assert!(matches!(report.get("hung").unwrap().status(), closeout::Status::TimedOut(_)));
/// # Ok(()) }
/// ```
#[derive(Clone, Copy, Debug, Default)]
#[must_use]
pub struct ScopeBuilder {
    limits: Limits,
}

impl ScopeBuilder {
    /// The most a whole release may take for its async actions: past it, the one running is
    /// dropped and reported as timed out, and async actions not started yet are reported as
    /// timed out after one poll. Sync actions without a timeout still run (inline, they cannot
    /// be interrupted). Blocking releases (`close`, `close_shared`, `Drop`) default to
    /// [`Scope::DEFAULT_DEADLINE`]; `close_async` has none unless set here.
    pub fn deadline(mut self, deadline: Duration) -> Self {
        self.limits.deadline = Some(deadline);
        self
    }

    /// The timeout of every action deferred without one of its own. A sync action with a
    /// timeout runs on a helper thread, detached (and reported as timed out) if it overruns.
    pub fn action_timeout(mut self, timeout: Duration) -> Self {
        self.limits.action_timeout = Some(timeout);
        self
    }

    /// Builds the scope.
    ///
    /// # Errors
    ///
    /// [`Error::ZeroTimeout`](crate::Error::ZeroTimeout) or
    /// [`Error::TimeoutTooLong`](crate::Error::TimeoutTooLong) (above
    /// [`MAX_TIMEOUT`](crate::MAX_TIMEOUT)) for either limit.
    pub fn build(self) -> Result<Scope, crate::Error> {
        for (what, limit) in
            [("deadline", self.limits.deadline), ("action_timeout", self.limits.action_timeout)]
        {
            if let Some(t) = limit {
                crate::resource::check_timeout(what, t)?;
            }
        }
        Ok(Scope { shared: Shared::new(None, self.limits), parent: None })
    }
}

impl Scope {
    /// The deadline of a blocking release (`close`, `close_shared`, `Drop`) of a scope built without
    /// one: 30 s. A hung async action is dropped when it passes, and reported as timed out.
    pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(30);

    /// Configures time limits: a deadline for the whole release, a timeout per action.
    pub fn builder() -> ScopeBuilder {
        ScopeBuilder::default()
    }

    /// An empty scope.
    ///
    /// ```
    /// let scope = closeout::Scope::new();
    /// assert!(scope.is_empty());
    /// ```
    pub fn new() -> Scope {
        Scope { shared: Shared::new(None, Limits::default()), parent: None }
    }

    /// The scope's [`CancellationToken`], cancelled the moment release begins, before any
    /// action runs: work that watches it can wind down on its own. A child scope's token is a
    /// child of its parent's, so releasing the parent cancels it too.
    ///
    /// ```
    /// let scope = closeout::Scope::new();
    /// let token = scope.token();
    /// let t = token.clone();
    /// scope.defer(move || assert!(t.is_cancelled()))?; // cancelled before actions run
    /// scope.close();
    /// assert!(token.is_cancelled());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn token(&self) -> CancellationToken {
        self.shared.token()
    }

    /// Adds a prepared cleanup for a tracked task, thread or timer; hands it back if released.
    pub(crate) fn attach(&self, name: Cow<'static, str>, cleanup: Cleanup) -> Result<OwnedHandle, Cleanup> {
        let mut st = self.shared.lock();
        if st.released {
            return Err(cleanup);
        }
        let (idx, generation) = st.push(Action::Cleanup(cleanup), name);
        Ok(OwnedHandle { shared: Arc::clone(&self.shared), idx, generation })
    }

    fn push(&self, action: Action, name: Cow<'static, str>) -> Result<Handle<'_>, Action> {
        let mut st = self.shared.lock();
        if st.released {
            return Err(action);
        }
        let (idx, generation) = st.push(action, name);
        Ok(Handle { shared: &self.shared, idx, generation })
    }

    /// Pushes the cleanup `make` builds from `value`, or hands `value` back if the scope is
    /// released: the one path of every `defer*`.
    #[inline]
    fn push_or_reject<T>(
        &self,
        value: T,
        meta: Option<Box<Meta>>,
        make: impl FnOnce(T) -> Cleanup,
    ) -> Result<Handle<'_>, Rejected<T>> {
        let mut st = self.shared.lock();
        if st.released {
            return Err(Rejected::new(value));
        }
        let (idx, generation) = st.push_meta(Action::Cleanup(make(value)), meta);
        Ok(Handle { shared: &self.shared, idx, generation })
    }

    /// Adds a sync action, run at release. It returns `()` or `Result<(), E>`.
    ///
    /// # Errors
    ///
    /// [`Rejected`] with the closure, unrun, if the scope was already released.
    ///
    /// ```
    /// let scope = closeout::Scope::new();
    /// scope.defer(|| std::fs::remove_file("/tmp/closeout-doc-nonexistent"))?;
    /// let report = scope.close();
    /// assert_eq!(report.totals().failed, 1); // the file did not exist; the error is kept
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn defer<F, R>(&self, f: F) -> Result<Handle<'_>, Rejected<F>>
    where
        F: FnOnce() -> R + Send + 'static,
        R: IntoOutcome,
    {
        self.defer_named(Cow::Borrowed(""), f)
    }

    /// Like [`defer`](Scope::defer), with a name for the report.
    ///
    /// # Errors
    ///
    /// [`Rejected`] with the closure if the scope was already released.
    ///
    /// ```
    /// let scope = closeout::Scope::new();
    /// scope.defer_named("flush", || ())?;
    /// assert_eq!(scope.close().entries()[0].id(), "flush");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn defer_named<F, R>(
        &self,
        name: impl Into<Cow<'static, str>>,
        f: F,
    ) -> Result<Handle<'_>, Rejected<F>>
    where
        F: FnOnce() -> R + Send + 'static,
        R: IntoOutcome,
    {
        self.push_or_reject(f, Meta::named(name.into()), Cleanup::from_fn)
    }

    /// Adds an async action: a future awaited at release, in its place in the order.
    ///
    /// # Errors
    ///
    /// [`Rejected`] with the future, unpolled, if the scope was already released.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let scope = closeout::Scope::new();
    /// scope.defer_async(async { tokio::task::yield_now().await })?;
    /// let report = scope.close_async().await; // awaited here
    /// assert!(report.is_success());
    /// # Ok(()) }
    /// ```
    pub fn defer_async<Fut>(&self, fut: Fut) -> Result<Handle<'_>, Rejected<Fut>>
    where
        Fut: Future + Send + 'static,
        Fut::Output: IntoOutcome,
    {
        self.defer_async_named(Cow::Borrowed(""), fut)
    }

    /// Like [`defer_async`](Scope::defer_async), with a name for the report.
    ///
    /// # Errors
    ///
    /// [`Rejected`] with the future if the scope was already released.
    ///
    /// ```
    /// let scope = closeout::Scope::new();
    /// scope.defer_async_named("drain", async {})?;
    /// assert_eq!(scope.close().entries()[0].id(), "drain");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn defer_async_named<Fut>(
        &self,
        name: impl Into<Cow<'static, str>>,
        fut: Fut,
    ) -> Result<Handle<'_>, Rejected<Fut>>
    where
        Fut: Future + Send + 'static,
        Fut::Output: IntoOutcome,
    {
        self.push_or_reject(fut, Meta::named(name.into()), Cleanup::from_future)
    }

    /// Defers the release of `value` under `name`: at release, `release(value)` runs (a sync
    /// release). Refused for a released scope, it hands `value` itself back, unreleased: the
    /// convention by which every managed type of closeout's sibling crates puts itself into a
    /// scope (`defer_in`).
    ///
    /// # Errors
    ///
    /// [`Rejected`] with `value` if the scope was already released.
    ///
    /// ```
    /// let scope = closeout::Scope::new();
    /// let file = std::fs::File::open("Cargo.toml")?;
    /// scope.defer_release("config file", file, drop)?;
    /// let _ = scope.close_shared();
    /// let back = scope.defer_release("late", 7, |_| ()).unwrap_err().into_inner();
    /// assert_eq!(back, 7);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn defer_release<T, R>(
        &self,
        name: impl Into<Cow<'static, str>>,
        value: T,
        release: fn(T) -> R,
    ) -> Result<Handle<'_>, Rejected<T>>
    where
        T: Send + 'static,
        R: IntoOutcome + 'static,
    {
        self.push_or_reject(value, Meta::named(name.into()), |v| Cleanup::from_fn(move || release(v)))
    }

    /// Like [`defer_release`](Scope::defer_release) with an async release: `release(value)` is
    /// awaited at release.
    ///
    /// # Errors
    ///
    /// [`Rejected`] with `value` if the scope was already released.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let scope = closeout::Scope::new();
    /// scope.defer_release_async("conn", 5u32, |n| async move { assert_eq!(n, 5) })?;
    /// assert!(scope.close_async().await.is_success());
    /// # Ok(()) }
    /// ```
    pub fn defer_release_async<T, Fut>(
        &self,
        name: impl Into<Cow<'static, str>>,
        value: T,
        release: fn(T) -> Fut,
    ) -> Result<Handle<'_>, Rejected<T>>
    where
        T: Send + 'static,
        Fut: Future + Send + 'static,
        Fut::Output: IntoOutcome,
    {
        self.push_or_reject(value, Meta::named(name.into()), |v| {
            Cleanup::from_future(async move { release(v).await })
        })
    }

    /// Like [`defer_async_named`](Scope::defer_async_named), with a timeout of its own: past it
    /// the future is dropped and reported as timed out. Zero drops it after one poll;
    /// `Duration::MAX` saturates.
    ///
    /// # Errors
    ///
    /// [`Rejected`] with the future if the scope was already released.
    ///
    /// ```
    /// use std::time::Duration;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let scope = closeout::Scope::new();
    /// scope.defer_async_within("flush", Duration::from_millis(20), std::future::pending::<()>())?;
    /// let report = scope.close_async().await;
    /// assert!(matches!(report.get("flush").unwrap().status(), closeout::Status::TimedOut(_)));
    /// # Ok(()) }
    /// ```
    pub fn defer_async_within<Fut>(
        &self,
        name: impl Into<Cow<'static, str>>,
        timeout: Duration,
        fut: Fut,
    ) -> Result<Handle<'_>, Rejected<Fut>>
    where
        Fut: Future + Send + 'static,
        Fut::Output: IntoOutcome,
    {
        let meta = Box::new(Meta { name: name.into(), timeout: Some(timeout) });
        self.push_or_reject(fut, Some(meta), Cleanup::from_future)
    }

    /// A child scope, released in this scope's order at the position it was created, before
    /// this scope continues. Releasing the child earlier removes it from this scope.
    ///
    /// # Errors
    ///
    /// [`Rejected`] (holding nothing useful) if this scope was already released.
    ///
    /// ```
    /// use std::sync::{Arc, Mutex};
    /// let log = Arc::new(Mutex::new(Vec::new()));
    /// let parent = closeout::Scope::new();
    /// let l = log.clone();
    /// parent.defer(move || l.lock().unwrap().push("parent first-deferred"))?;
    /// let child = parent.child()?;
    /// let l = log.clone();
    /// child.defer(move || l.lock().unwrap().push("child"))?;
    /// let l = log.clone();
    /// parent.defer(move || l.lock().unwrap().push("parent last-deferred"))?;
    /// parent.close();
    /// assert_eq!(*log.lock().unwrap(), ["parent last-deferred", "child", "parent first-deferred"]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn child(&self) -> Result<Scope, Rejected<()>> {
        let child = Shared::new(Some(Arc::downgrade(&self.shared)), self.shared.limits);
        let handle =
            self.push(Action::Child(Arc::clone(&child)), Cow::Borrowed("")).map_err(|_| Rejected::new(()))?;
        Ok(Scope { shared: child, parent: Some(handle.into_owned()) })
    }

    /// Moves every action into a new scope and leaves this one empty and usable: build up in a
    /// local scope, then hand everything to the owner on success.
    ///
    /// Handles keep working: they follow their actions into the returned scope. The returned
    /// scope is independent (it has no parent); this scope keeps its place in its parent.
    ///
    /// ```
    /// let mut scope = closeout::Scope::new();
    /// let h = scope.defer(|| ())?.into_owned();
    /// let owned = scope.take();
    /// assert!(scope.is_empty());
    /// assert_eq!(owned.len(), 1);
    /// assert!(h.cancel()); // still refers to the action, now in `owned`
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn take(&mut self) -> Scope {
        let fresh = Shared::new(self.shared.parent.clone(), self.shared.limits);
        let taken = std::mem::replace(&mut self.shared, fresh);
        if let Some(link) = &self.parent {
            // The emptied child keeps its place: its entry in the parent now releases the fresh
            // stack, at the same position (one lock, the parent's; the child's is not held).
            let kept = link.shared.lock().replace_child(link.idx, link.generation, Arc::clone(&self.shared));
            if !kept {
                self.parent = None;
            }
        }
        Scope { shared: taken, parent: None }
    }

    /// Number of actions waiting (a child scope counts as one).
    pub fn len(&self) -> usize {
        self.shared.lock().len
    }

    /// Whether no action is waiting.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the scope was closed (released); further actions are rejected.
    pub fn is_closed(&self) -> bool {
        self.shared.lock().released
    }

    /// [`close`](Scope::close) through a shared reference (a scope behind an `Arc`, or inside
    /// one of your own types): runs every action now, last-in-first-out, blocking on async ones
    /// (see "Async actions"), and returns what happened. A second call returns an empty report.
    ///
    /// ```
    /// let scope = closeout::Scope::new();
    /// scope.defer(|| ())?;
    /// assert_eq!(scope.close_shared().len(), 1);
    /// assert!(scope.close_shared().is_empty()); // idempotent
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn close_shared(&self) -> Report {
        let report = release_blocking(&self.shared);
        self.unlink();
        report
    }

    /// Like [`close_shared`](Scope::close_shared), awaiting async actions instead of blocking.
    ///
    /// # Cancel safety
    ///
    /// Actions are taken out of the scope when this future is first polled; dropping it part way
    /// drops the actions that had not run yet.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let scope = closeout::Scope::new();
    /// scope.defer_async(async {})?;
    /// assert_eq!(scope.close_shared_async().await.len(), 1);
    /// # Ok(()) }
    /// ```
    pub async fn close_shared_async(&self) -> Report {
        let mut out = Outcomes::new();
        let deadline =
            self.shared.limits.deadline.map(|d| crate::clock::saturating_deadline(Instant::now(), d));
        release_async(&self.shared, &mut out, deadline).await;
        self.unlink();
        out.into_report()
    }

    /// Releases and consumes the scope, so nothing can be added afterwards.
    ///
    /// ```
    /// let scope = closeout::Scope::new();
    /// scope.defer(|| ())?;
    /// assert!(scope.close().is_success());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn close(self) -> Report {
        self.close_shared()
    }

    /// Releases and consumes the scope, awaiting async actions.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let scope = closeout::Scope::new();
    /// let report = scope.close_async().await;
    /// assert!(report.is_empty());
    /// # }
    /// ```
    pub async fn close_async(self) -> Report {
        self.close_shared_async().await
    }

    /// A released child no longer needs its parent's entry.
    fn unlink(&self) {
        if let Some(link) = &self.parent {
            link.cancel_ref();
        }
    }
}

impl Default for Scope {
    fn default() -> Self {
        Scope::new()
    }
}

impl Drop for Scope {
    fn drop(&mut self) {
        let pending = {
            let st = self.shared.lock();
            if st.released {
                drop(st);
                return self.unlink();
            }
            st.len
        };
        if self.shared.has_async() {
            #[cfg(not(loom))]
            crate::leak::scope_dropped_with_async(pending);
            tracing::warn!(
                pending,
                "closeout: Scope dropped with async actions; blocking this thread to run them (use close_async to await)"
            );
        }
        // Failures are logged as they happen (see `Outcomes::record`).
        let _ = self.close_shared();
    }
}

impl fmt::Debug for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let st = self.shared.lock();
        f.debug_struct("Scope")
            .field("pending", &st.len)
            .field("released", &st.released)
            .field("is_child", &self.parent.is_some())
            .finish()
    }
}

/// Refers to one deferred action, borrowed from its scope; [`cancel`](Handle::cancel) removes
/// it unrun. [`into_owned`](Handle::into_owned) makes a `'static` handle.
///
/// A handle costs nothing to create or drop: it is a reference and two integers.
pub struct Handle<'a> {
    shared: &'a Arc<Shared>,
    idx: u32,
    generation: u32,
}

impl Handle<'_> {
    /// Removes the action without running it. True if it was still waiting; false if it ran,
    /// was cancelled already, or the scope was released. O(1), in any order.
    ///
    /// ```
    /// let scope = closeout::Scope::new();
    /// let h = scope.defer(|| -> () { unreachable!() })?;
    /// assert!(h.cancel());
    /// assert!(scope.close().is_empty());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn cancel(self) -> bool {
        self.shared.lock().remove(self.idx, self.generation).is_some()
    }

    /// A handle that owns a reference to the scope's state, to keep in a struct or send to
    /// another task.
    ///
    /// ```
    /// let scope = closeout::Scope::new();
    /// let h = scope.defer(|| ())?.into_owned();
    /// std::thread::spawn(move || assert!(h.cancel())).join().unwrap();
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn into_owned(self) -> OwnedHandle {
        OwnedHandle { shared: Arc::clone(self.shared), idx: self.idx, generation: self.generation }
    }
}

impl fmt::Debug for Handle<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handle").field("slot", &self.idx).field("generation", &self.generation).finish()
    }
}

/// A [`Handle`] that owns a reference to its scope's state: `'static`, `Send`, `Sync`.
pub struct OwnedHandle {
    shared: Arc<Shared>,
    idx: u32,
    generation: u32,
}

impl OwnedHandle {
    /// The scope's state and the slot, for a tracked task to remove its own entry without
    /// keeping the scope alive.
    pub(crate) fn into_weak(self) -> (Weak<Shared>, u32, u32) {
        (Arc::downgrade(&self.shared), self.idx, self.generation)
    }

    /// Removes the action without running it; see [`Handle::cancel`].
    ///
    /// ```
    /// let scope = closeout::Scope::new();
    /// let h = scope.defer(|| ())?.into_owned();
    /// drop(scope); // the action runs here
    /// assert!(!h.cancel()); // too late: it already ran
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn cancel(self) -> bool {
        self.cancel_ref()
    }

    fn cancel_ref(&self) -> bool {
        self.shared.lock().remove(self.idx, self.generation).is_some()
    }
}

impl fmt::Debug for OwnedHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OwnedHandle").field("slot", &self.idx).field("generation", &self.generation).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slot_is_small() {
        assert!(std::mem::size_of::<Slot>() <= 48, "Slot is {} bytes", std::mem::size_of::<Slot>());
    }

    #[test]
    fn an_emptied_large_slab_is_freed_and_old_handles_never_match_new_slots() {
        let mut st = Stack::new();
        let noop = || Action::Cleanup(Cleanup::from_fn(|| ()));
        let handles: Vec<_> = (0..SHRINK_AT).map(|_| st.push(noop(), "".into())).collect();
        for &(idx, generation) in &handles {
            assert!(st.remove(idx, generation).is_some());
        }
        assert_eq!(st.slots.capacity(), 0, "the empty slab was freed");
        let fresh = st.push(noop(), "".into());
        assert_eq!(fresh.0, handles[0].0, "slot 0 again");
        assert!(st.remove(handles[0].0, handles[0].1).is_none(), "a stale handle does not match");
        assert!(st.remove(fresh.0, fresh.1).is_some());
    }

    #[test]
    fn slab_reuses_cancelled_slots_and_keeps_order() {
        let mut st = Stack::new();
        let noop = || Action::Cleanup(Cleanup::from_fn(|| ()));
        let a = st.push(noop(), "a".into());
        let b = st.push(noop(), "b".into());
        let c = st.push(noop(), "c".into());
        assert!(st.remove(b.0, b.1).is_some());
        assert!(st.remove(b.0, b.1).is_none(), "stale generation");
        let d = st.push(noop(), "d".into());
        assert_eq!(d.0, b.0, "slot reused");
        assert_ne!(d.1, b.1, "generation bumped");
        assert_eq!(st.slots.len(), 3);
        let mut names = Vec::new();
        for_each_lifo(st.take_all().0, |_, n, _, _| names.push(n));
        assert_eq!(names, ["d", "c", "a"]);
        let _ = (a, c);
    }
}
