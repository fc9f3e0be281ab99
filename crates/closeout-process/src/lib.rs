//! Child process trees that stop completely.
//!
//! Why: killing a child is easy; stopping everything it started is not. Shell scripts start
//! grandchildren, servers fork workers, daemons double-fork and `setsid` away from their
//! group, some processes ignore SIGTERM, and every child that is not waited for stays a zombie.
//! `Child::kill` handles none of that (process-wrap#6: kill-on-drop ignores the group).
//!
//! A [`ProcessTree`] starts the child in its own process group (or session) with an inherited
//! marker in its environment, so at stop time every process of the tree is found in `/proc` —
//! grandchildren, and daemons that left the group. Stopping is a ladder: SIGTERM to the group
//! and every member, a grace period, SIGKILL to whatever is left, every one of our children
//! reaped. The [`StopReport`] says what exited, what needed SIGKILL and what survived; as a
//! [`closeout`] resource the same goes into the teardown report (category `Process`).
//!
//! ```
//! use closeout::Registry;
//! use closeout_process::{ProcessTree, TreeOptions};
//! use std::process::Command;
//! use std::time::Duration;
//!
//! let registry = Registry::new();
//! let tree = ProcessTree::spawn(
//!     Command::new("sh").args(["-c", "sleep 60 & sleep 60 & wait"]),
//!     TreeOptions::new().grace(Duration::from_secs(2)),
//! )?;
//! registry.register(tree.resource("workers"))?;
//! let report = registry.shutdown_blocking(); // SIGTERM, wait, SIGKILL if needed, reap
//! assert!(report.is_success());
//! assert!(tree.members().is_empty());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Failure behaviour and limits
//!
//! - Linux only. Two modes (see [`Containment`]; every [`StopReport`] says which ran and why):
//!   - **cgroup** (a writable cgroup v2 hierarchy, found through `/proc/self/mountinfo`): the
//!     tree has its own cgroup, joined by the child before it runs anything, so nothing it
//!     starts can escape — environment cleared, group or session left, daemonized or not; the
//!     stop ends with `cgroup.kill` and waits for the kernel to report the cgroup empty, then
//!     removes it. A SIGKILLed owner leaves an empty cgroup behind (the journal's reap, to come,
//!     removes it).
//!   - **fallback** (no writable cgroup v2, [`TreeOptions::cgroup`]`(false)`, or
//!     [`NO_CGROUP_ENV`]): the process group plus the inherited marker found in `/proc`, each
//!     pid checked against its start time before it is signalled; a process that clears its
//!     environment *and* leaves the group cannot be found.
//! - No busy wait: a stop sleeps on the child's pidfd and (cgroup mode) an inotify watch on
//!   `cgroup.events`, and rescans with a back-off from 1 ms to 50 ms.
//! - A forced exit (a second signal, a teardown past its deadline, with `closeout::hooks`)
//!   still kills every tree that was not stopped: each keeps a
//!   [`LastAction`](closeout::last_action::LastAction) ready from its spawn.
//! - Limits: [`TreeOptions::max_pids`] and [`TreeOptions::max_memory`] need the controller
//!   delegated; without it the spawn is refused, never started unlimited.
//! - Daemons reparent to the nearest subreaper (often PID 1). Call [`become_subreaper`] to
//!   have them reparent to this process, so that they are reaped here and no zombie is left
//!   behind in a container whose PID 1 does not reap.
//! - [`TreeOptions::kill_with_parent`] covers the case where the owner itself is SIGKILLed:
//!   the kernel then kills the direct child (not its descendants, which the ladder would have
//!   stopped).
//! - A process in uninterruptible sleep survives even SIGKILL for a while; it is reported as a
//!   survivor after a bounded wait, never waited on forever.
#![deny(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]
#![doc(test(attr(deny(warnings))))]

mod cgroup;
mod pre_exec;
mod scan;
mod tree;
mod wait;

pub use cgroup::NO_CGROUP_ENV;
pub use scan::MARKER;
pub use tree::{Containment, DEFAULT_GRACE, ProcessTree, StopError, StopReport, TreeOptions};

/// Makes this process the subreaper of its descendants (Linux `PR_SET_CHILD_SUBREAPER`):
/// orphans, such as double-forked daemons, are reparented to it instead of PID 1, so a
/// [`ProcessTree`] stop reaps them. Process-wide and permanent; other orphans of descendants
/// come here too and should be reaped (a stop of their tree does).
///
/// # Errors
///
/// The OS refused (not Linux, or a seccomp policy).
///
/// ```
/// closeout_process::become_subreaper()?;
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn become_subreaper() -> std::io::Result<()> {
    rustix::process::set_child_subreaper(Some(rustix::process::getpid()))?;
    Ok(())
}

/// Locks `m`, taking the guard back if a panic poisoned it: every lock in this crate guards
/// plain values that no user code changes while it is held, so the state is still consistent.
pub(crate) fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
