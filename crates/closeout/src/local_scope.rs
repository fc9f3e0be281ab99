//! [`LocalScope`]: a [`Scope`](crate::Scope) for one thread, whose actions need not be `Send`.

use std::borrow::Cow;
use std::cell::RefCell;
use std::fmt;
use std::marker::PhantomData;

use crate::cleanup::{IntoOutcome, Outcome};
use crate::error::Rejected;
use crate::outcomes::Outcomes;
use crate::report::{Report, Status};
use crate::runner;

/// A last-in-first-out stack of cleanup actions owned by one thread.
///
/// Cleanups that hold `Rc`, `Cell` or `RefCell` state cannot go into a `Scope`, which can be
/// shared and released from any thread. A `LocalScope` is `!Send` and `!Sync`, so its actions
/// need not be either, and it costs what a vector of boxed closures costs: no lock, no atomic.
/// Sync actions only: an async cleanup that is not `Send` belongs to a `LocalSet`'s own
/// shutdown.
///
/// It behaves as a [`Scope`](crate::Scope) does: every action runs even when others fail or
/// panic, all errors are kept in the [`Report`], releasing twice is a no-op, and an action
/// offered after release is handed back unrun. Dropping it releases it.
///
/// ```
/// use closeout::LocalScope;
/// use std::cell::RefCell;
/// use std::rc::Rc;
///
/// let log = Rc::new(RefCell::new(Vec::new()));
/// let scope = LocalScope::new();
/// let l = Rc::clone(&log);
/// scope.defer(move || l.borrow_mut().push("second"))?;
/// let l = Rc::clone(&log);
/// let skipped = scope.defer(move || l.borrow_mut().push("never"))?;
/// let l = Rc::clone(&log);
/// scope.defer_named("first", move || l.borrow_mut().push("first"))?;
/// assert!(skipped.cancel());
/// let report = scope.close();
/// assert!(report.is_success());
/// assert_eq!(*log.borrow(), ["first", "second"]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// It cannot leave its thread:
///
/// ```compile_fail
/// let scope = closeout::LocalScope::new();
/// std::thread::spawn(move || drop(scope)); // error: `LocalScope` is not `Send`
/// ```
#[must_use = "dropping a LocalScope releases its actions at once"]
pub struct LocalScope {
    stack: RefCell<Stack>,
    /// `!Send` and `!Sync`, whatever the fields are.
    _local: PhantomData<*const ()>,
}

type Action = Box<dyn FnOnce() -> Outcome>;

#[derive(Default)]
struct Stack {
    /// In deferral order; a cancelled action leaves `None`. Slots are never reused while the
    /// scope lives, so a handle's index alone names its action.
    actions: Vec<Option<Action>>,
    /// Names of named actions, by index: most actions have none.
    names: Vec<(u32, Cow<'static, str>)>,
    live: usize,
    released: bool,
}

impl Stack {
    #[cold]
    fn add_name(&mut self, idx: u32, name: Cow<'static, str>) {
        self.names.push((idx, name));
    }
}

impl LocalScope {
    /// An empty scope.
    ///
    /// ```
    /// assert!(closeout::LocalScope::new().is_empty());
    /// ```
    pub fn new() -> LocalScope {
        LocalScope { stack: RefCell::new(Stack::default()), _local: PhantomData }
    }

    /// Adds an action, run at release. It returns `()` or `Result<(), E>`.
    ///
    /// # Errors
    ///
    /// [`Rejected`] with the closure, unrun, if the scope was already released (also when an
    /// action of this scope defers another while the scope is being released).
    ///
    /// ```
    /// let scope = closeout::LocalScope::new();
    /// let counter = std::rc::Rc::new(std::cell::Cell::new(0));
    /// let c = counter.clone();
    /// scope.defer(move || c.set(c.get() + 1))?;
    /// drop(scope);
    /// assert_eq!(counter.get(), 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[inline]
    pub fn defer<F, R>(&self, f: F) -> Result<LocalHandle<'_>, Rejected<F>>
    where
        F: FnOnce() -> R + 'static,
        R: IntoOutcome,
    {
        self.push(f, None)
    }

    /// Like [`defer`](LocalScope::defer), with a name for the report.
    ///
    /// # Errors
    ///
    /// [`Rejected`] with the closure if the scope was already released.
    ///
    /// ```
    /// let scope = closeout::LocalScope::new();
    /// scope.defer_named("flush", || ())?;
    /// assert_eq!(scope.close().entries()[0].id(), "flush");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn defer_named<F, R>(
        &self,
        name: impl Into<Cow<'static, str>>,
        f: F,
    ) -> Result<LocalHandle<'_>, Rejected<F>>
    where
        F: FnOnce() -> R + 'static,
        R: IntoOutcome,
    {
        self.push(f, Some(name.into()))
    }

    /// The one path of both `defer`s, inlined into the caller: what is left of it beside the
    /// box and the vector push is a borrow flag and two compares.
    #[inline]
    fn push<F, R>(&self, f: F, name: Option<Cow<'static, str>>) -> Result<LocalHandle<'_>, Rejected<F>>
    where
        F: FnOnce() -> R + 'static,
        R: IntoOutcome,
    {
        let Ok(mut st) = self.stack.try_borrow_mut() else { return Err(Rejected::new(f)) };
        if st.released {
            return Err(Rejected::new(f));
        }
        let Ok(idx) = u32::try_from(st.actions.len()) else { return Err(Rejected::new(f)) };
        st.actions.push(Some(Box::new(move || f().into_outcome())));
        if let Some(name) = name.filter(|n| !n.is_empty()) {
            st.add_name(idx, name);
        }
        st.live += 1;
        Ok(LocalHandle { scope: self, idx })
    }

    /// Number of actions waiting.
    pub fn len(&self) -> usize {
        self.stack.borrow().live
    }

    /// Whether no action is waiting.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the scope was released; further actions are rejected.
    pub fn is_closed(&self) -> bool {
        self.stack.borrow().released
    }

    /// [`close`](LocalScope::close) through a shared reference: runs every action now,
    /// last-in-first-out, and returns what happened. A second call returns an empty report.
    ///
    /// ```
    /// let scope = closeout::LocalScope::new();
    /// scope.defer(|| Err::<(), _>(std::io::Error::other("disk full")))?;
    /// scope.defer(|| -> () { panic!("boom") })?;
    /// let report = scope.close_shared();
    /// assert_eq!((report.totals().failed, report.totals().panicked), (1, 1));
    /// assert!(scope.close_shared().is_empty());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn close_shared(&self) -> Report {
        let (mut actions, mut names) = {
            let mut st = self.stack.borrow_mut();
            if st.released {
                return Report::default();
            }
            st.released = true;
            st.live = 0;
            (std::mem::take(&mut st.actions), std::mem::take(&mut st.names))
        };
        let mut out = Outcomes::new();
        let _mark = runner::Mark::enter(0);
        while let Some((idx, status)) = run_unnamed(&mut actions, &names, &mut out) {
            let name = match names.last() {
                Some((i, _)) if *i as usize == idx => names.pop().map_or(Cow::Borrowed(""), |(_, n)| n),
                _ => Cow::Borrowed(""),
            };
            match status {
                Some(status) => out.record(name, idx as u64, status, None),
                // The named action on top (or its empty place, if it was cancelled).
                None => {
                    if let Some(action) = actions.pop().flatten() {
                        let at = out.clock(&name);
                        let status = runner::run_local(action);
                        out.record(name, idx as u64, status, at);
                    }
                }
            }
        }
        out.into_report()
    }

    /// Releases and consumes the scope.
    ///
    /// ```
    /// let scope = closeout::LocalScope::new();
    /// scope.defer(|| ())?;
    /// assert_eq!(scope.close().len(), 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn close(self) -> Report {
        self.close_shared()
    }
}

impl Default for LocalScope {
    fn default() -> Self {
        LocalScope::new()
    }
}

impl Drop for LocalScope {
    fn drop(&mut self) {
        // Failures are logged as they happen (see `Outcomes::record`).
        let _ = self.close_shared();
    }
}

impl fmt::Debug for LocalScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let st = self.stack.borrow();
        f.debug_struct("LocalScope").field("pending", &st.live).field("released", &st.released).finish()
    }
}

/// Runs the unnamed actions on top of `actions`, last first, as one stretch
/// ([`runner::run_stretch`]), and counts the successes. Stops at the next named action
/// (returned with no status, unrun: it is timed and listed by the caller) or after an action
/// that failed or panicked (returned with its status). `None` once every action has run.
fn run_unnamed(
    actions: &mut Vec<Option<Action>>,
    names: &[(u32, Cow<'static, str>)],
    out: &mut Outcomes,
) -> Option<(usize, Option<Status>)> {
    let floor = names.last().map_or(0, |(i, _)| *i as usize + 1);
    let (ok, stopped) = runner::run_stretch(|| {
        while actions.len() > floor {
            let idx = actions.len() - 1;
            if let Some(action) = actions.pop().flatten() {
                return Some((idx as u64, action));
            }
        }
        None
    });
    out.count_ok(ok);
    match stopped {
        Some((idx, status)) => Some((idx as usize, Some(status))),
        None => actions.len().checked_sub(1).map(|named| (named, None)),
    }
}

/// Refers to one action of a [`LocalScope`]; [`cancel`](LocalHandle::cancel) removes it unrun.
pub struct LocalHandle<'a> {
    scope: &'a LocalScope,
    idx: u32,
}

impl LocalHandle<'_> {
    /// Removes the action without running it. True if it was still waiting. O(1).
    ///
    /// ```
    /// let scope = closeout::LocalScope::new();
    /// let h = scope.defer(|| -> () { unreachable!() })?;
    /// assert!(h.cancel());
    /// assert!(scope.close().is_empty());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn cancel(self) -> bool {
        let Ok(mut st) = self.scope.stack.try_borrow_mut() else { return false };
        let removed = st.actions.get_mut(self.idx as usize).and_then(Option::take);
        if removed.is_some() {
            st.live -= 1;
        }
        drop(st);
        // The closure is dropped outside the borrow: its destructor is user code.
        removed.is_some()
    }
}

impl fmt::Debug for LocalHandle<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalHandle").field("slot", &self.idx).finish()
    }
}
