//! Last actions: what must still happen when the process is forced out — a second Ctrl-C, a
//! teardown past its deadline, a third signal handled in the signal handler itself.
//!
//! Why: a forced exit cannot run cleanups (that is what made it forced), yet some things must
//! not outlive the process: a child process tree left running is an orphan that nobody will
//! stop. A [`LastAction`] is kept ready *in advance*, as plain data (a process group to
//! SIGKILL, an open descriptor to write `1` to — a cgroup's `cgroup.kill`), so that running it
//! needs nothing but system calls: no allocation, no lock, nothing a signal handler may not do.
//! [`run_all`] runs every registered one; the [`hooks`](crate::hooks) call it right before they
//! end the process, and a program that exits on its own terms can call it too.
//!
//! ```
//! use closeout::last_action::LastAction;
//! let child = std::process::Command::new("sleep").arg("60").process_group(0).spawn()?;
//! # use std::os::unix::process::CommandExt;
//! // Kept ready from now on: a forced exit kills the child's group.
//! let last = LastAction::kill_process_group(child.id())?;
//! // ... the normal path stops the child itself, then drops the action:
//! # let mut child = child; child.kill()?; child.wait()?;
//! drop(last);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Limits
//!
//! - At most [`CAPACITY`] actions at once; one more is refused ([`LastActionError::Full`],
//!   with its descriptor handed back).
//! - Nothing runs on SIGKILL of this process (no process can act then): that is the journal's
//!   job.
//!
//! # Invariants
//!
//! L1. A slot holds `0` (free) or one encoded action; it goes free → taken only by the
//!     compare-exchange in `LastAction::new`, and taken → free only by a `swap(0)`.
//! L2. Whoever's `swap(0)` returns the action owns it: [`run_all`] runs it; the guard's `Drop`
//!     closes its descriptor. So a descriptor is never written after it was closed (a reused
//!     number could be someone else's file), and one taken by `run_all` is left open — the
//!     process is ending.
//!
//! Every atomic is `SeqCst`: they are touched once per registration, never on a hot path, and
//! the signal handler must see a slot's latest value. No lock exists here.

use std::os::fd::{IntoRawFd, OwnedFd};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// How many last actions can be registered at once.
pub const CAPACITY: usize = 4096;

const KIND_SHIFT: u32 = 32;
const KILL_GROUP: u64 = 1;
const WRITE_ONE: u64 = 2;

#[allow(clippy::declare_interior_mutable_const)]
const FREE: AtomicU64 = AtomicU64::new(0);
static SLOTS: [AtomicU64; CAPACITY] = [FREE; CAPACITY];
/// Where the next registration starts looking: spreads registrations, so a free slot is found
/// in one or two tries unless the table is nearly full.
static HINT: AtomicUsize = AtomicUsize::new(0);

/// Why a last action was not registered.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LastActionError {
    /// [`CAPACITY`] actions are registered already; the descriptor, if any, is handed back.
    #[error("{CAPACITY} last actions are registered already")]
    Full(Option<OwnedFd>),
    /// A process group id of 0 or 1, or above `i32::MAX`: 0 would be this process's own group,
    /// 1 would mean every process (`kill(-1)`), and larger ones do not exist.
    #[error("process group {0} cannot be a last action's target (0 is our own group, 1 means every process)")]
    InvalidGroup(u32),
}

/// One registered last action; dropping it unregisters it (and closes its descriptor).
#[derive(Debug)]
#[must_use = "dropping it unregisters the action at once"]
pub struct LastAction {
    slot: usize,
    fd: Option<OwnedFd>,
}

impl LastAction {
    /// SIGKILL to the process group `pgid` on a forced exit.
    ///
    /// # Errors
    ///
    /// [`LastActionError::InvalidGroup`] for 0, 1 and ids above `i32::MAX`;
    /// [`LastActionError::Full`].
    ///
    /// ```
    /// use closeout::last_action::{LastAction, LastActionError};
    /// assert!(matches!(LastAction::kill_process_group(1), Err(LastActionError::InvalidGroup(1))));
    /// ```
    pub fn kill_process_group(pgid: u32) -> Result<LastAction, LastActionError> {
        if pgid <= 1 || pgid > i32::MAX as u32 {
            return Err(LastActionError::InvalidGroup(pgid));
        }
        LastAction::new(KILL_GROUP << KIND_SHIFT | u64::from(pgid), None)
    }

    /// Writes the byte `1` to `fd` on a forced exit: given a cgroup's `cgroup.kill`, opened for
    /// writing, that kills every process in the cgroup at once. The action owns `fd`.
    ///
    /// # Errors
    ///
    /// [`LastActionError::Full`], with `fd` handed back.
    ///
    /// ```
    /// use closeout::last_action::LastAction;
    /// let file = tempfile::tempfile()?;
    /// let last = LastAction::write_one(file.into())?;
    /// drop(last); // closes the descriptor; nothing was written
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn write_one(fd: OwnedFd) -> Result<LastAction, LastActionError> {
        use std::os::fd::AsRawFd;
        // Descriptors are non-negative `i32`s.
        let raw = fd.as_raw_fd() as u32;
        LastAction::new(WRITE_ONE << KIND_SHIFT | u64::from(raw), Some(fd))
    }

    fn new(action: u64, fd: Option<OwnedFd>) -> Result<LastAction, LastActionError> {
        let start = HINT.fetch_add(1, Ordering::SeqCst);
        for i in 0..CAPACITY {
            let slot = (start + i) % CAPACITY;
            // L1: free → taken, here only.
            if SLOTS[slot].compare_exchange(0, action, Ordering::SeqCst, Ordering::SeqCst).is_ok() {
                return Ok(LastAction { slot, fd });
            }
        }
        Err(LastActionError::Full(fd))
    }
}

impl Drop for LastAction {
    fn drop(&mut self) {
        // L2: the slot's owner is whoever empties it.
        let taken = SLOTS[self.slot].swap(0, Ordering::SeqCst);
        if taken == 0
            && let Some(fd) = self.fd.take()
        {
            // `run_all` took it and may be writing to it right now: leave the descriptor open.
            let _ = fd.into_raw_fd();
        }
    }
}

/// How many last actions are registered now.
///
/// ```
/// let _ = closeout::last_action::registered();
/// ```
pub fn registered() -> usize {
    SLOTS.iter().filter(|s| s.load(Ordering::SeqCst) != 0).count()
}

/// Runs every registered last action, once each (a taken action is gone from the table), and
/// returns how many ran. Async-signal-safe: system calls only, no allocation, no lock; a signal
/// handler may call it.
///
/// ```
/// // Nothing registered in this example: nothing runs.
/// assert_eq!(closeout::last_action::run_all(), 0);
/// ```
pub fn run_all() -> usize {
    let mut ran = 0;
    for slot in &SLOTS {
        // L2: taken here, so never closed by its guard.
        let action = slot.swap(0, Ordering::SeqCst);
        if action == 0 {
            continue;
        }
        let value = (action & u64::from(u32::MAX)) as i32;
        match action >> KIND_SHIFT {
            KILL_GROUP => {
                if let Some(pgid) = rustix::process::Pid::from_raw(value) {
                    let _ = rustix::process::kill_process_group(pgid, rustix::process::Signal::KILL);
                }
            }
            WRITE_ONE => write_one_to(value),
            _ => {}
        }
        ran += 1;
    }
    ran
}

#[allow(unsafe_code)]
fn write_one_to(raw: i32) {
    // SAFETY: `raw` came from an `OwnedFd` that L2 keeps open: its guard closes it only if it
    // emptied the slot itself, and this function runs only for an action `run_all` emptied.
    let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(raw) };
    let _ = rustix::io::write(fd, b"1");
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One test, so that nothing else in this process registers while the table is full.
    #[test]
    fn invalid_groups_are_refused_and_a_full_table_hands_the_descriptor_back() {
        for bad in [0, 1, i32::MAX as u32 + 1, u32::MAX] {
            assert!(
                matches!(LastAction::kill_process_group(bad), Err(LastActionError::InvalidGroup(b)) if b == bad)
            );
        }
        // A group that cannot exist (above any pid_max): registered, and harmless.
        let before = registered();
        let one = LastAction::kill_process_group(i32::MAX as u32).unwrap();
        assert_eq!(registered(), before + 1);
        drop(one);
        assert_eq!(registered(), before);
        let mut held = Vec::new();
        loop {
            match LastAction::kill_process_group(i32::MAX as u32) {
                Ok(a) => held.push(a),
                Err(LastActionError::Full(None)) => break,
                Err(e) => panic!("{e}"),
            }
            assert!(held.len() <= CAPACITY);
        }
        assert_eq!(held.len(), CAPACITY - before);
        match LastAction::write_one(dev_null()) {
            Err(LastActionError::Full(Some(fd))) => drop(fd),
            other => panic!("{other:?}"),
        }
        drop(held);
        assert_eq!(registered(), before);
        drop(LastAction::write_one(dev_null()).unwrap());
    }

    #[test]
    fn the_error_is_send_sync_and_static() {
        fn check<E: std::error::Error + Send + Sync + 'static>() {}
        check::<LastActionError>();
    }

    fn dev_null() -> OwnedFd {
        std::fs::File::open("/dev/null").unwrap().into()
    }
}
