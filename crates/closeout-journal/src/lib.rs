//! A crash-safe journal of external resources, and `reap` for what a dead owner left behind.
//!
//! Why: cleanup code runs in its owner. When the owner is SIGKILLed or OOM-killed, nothing of
//! it runs: its child process trees keep running, its temp dirs, lock files and socket files
//! stay, and nothing can even list them. The journal closes that gap the way Nix's temp roots,
//! pytest's numbered temp dirs and Kubernetes finalizers do: every external resource is
//! recorded durably **before** it is created, and anyone can reap the records of a dead owner
//! later.
//!
//! - [`Journal`]: the owner's side. [`Journal::record`] writes the *intent* (fsynced) before
//!   the resource exists; [`Entry::complete`] adds what creation produced (pids with their
//!   start times, a cgroup path, a file's device and inode); [`Entry::release`] marks it gone.
//!   When nothing is left unreleased, the owner's file goes away.
//! - Liveness: the owner holds an exclusive lock on its own file (close-on-exec, so children do
//!   not inherit it); the kernel drops it when the owner dies, however it dies. The file's
//!   header names the boot, the owner's pid and start time, and its command line.
//! - [`reap`]: for every owner whose lock can be taken (dead), each unreleased record is
//!   cleaned up — idempotently, and only while it still names the same thing — then released;
//!   a file with nothing left is removed. [`list`] shows every owner, alive or dead.
//! - [`Store`]: the backend, a small trait; [`FileStore`] is one append-only file per owner in
//!   the state directory ([`default_state_dir`]).
//!
//! ```
//! use closeout_journal::{FileStore, Journal, ReapOptions, Resource, reap};
//! use std::time::Duration;
//!
//! let state = tempfile::tempdir()?;
//! let journal = Journal::open(state.path())?;
//! // Something only a command can clean up: recorded before it is started.
//! let entry = journal.record(Resource::command("true", ["cleanup"], Duration::from_secs(5))?)?;
//! // ... the owner runs; if it dies here, `reap` (from any process) runs `true cleanup` ...
//! entry.release()?;
//! let report = reap(&FileStore::open(state.path())?, &ReapOptions::new())?;
//! assert!(report.owners.is_empty()); // nothing was left behind
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Why plain files, not SQLite or redb
//!
//! An owner appends a handful of short lines and fsyncs each; nobody queries. One file per
//! owner makes liveness a `flock` the kernel drops at death, and makes two owners never
//! contend. SQLite in WAL mode with `synchronous=NORMAL` can lose the last commit on power
//! loss (exactly the intent that must not be lost), and `FULL` costs more than one
//! `fdatasync`; redb 2.x refuses a second process, and reapers are other processes.
//!
//! # Failure behaviour and limits
//!
//! - A crash mid-write leaves a torn last line: it is ignored (checksummed lines; the first
//!   bad one ends the file), and every complete line before it counts.
//! - A symlink at the state directory or at an owner file is refused
//!   ([`JournalError::Symlink`]), as is a state directory of another user or writable by
//!   others.
//! - What the reap cannot do: processes that a reboot killed are gone anyway (records from
//!   another boot are dropped unsignalled); a resource created without a record is unknown; a
//!   process of a fallback-mode tree that cleared its environment and whose group leader died
//!   cannot be told from a stranger, and is left alone; a reaper killed mid-reap may make the
//!   next reap run a recorded command again.
#![deny(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]
#![doc(test(attr(deny(warnings))))]

mod dir;
mod error;
mod format;
mod identity;
mod journal;
mod reap;
mod record;
mod store;

pub use dir::{STATE_DIR_ENV, default_state_dir};
pub use error::JournalError;
pub use identity::{FileId, ProcessId, boot_id, processes_with_env};
pub use journal::{Entry, Journal, ReleaseError};
pub use reap::{Handler, Outcome, OwnerListing, OwnerReap, ReapOptions, ReapReport, RecordReap, list, reap};
pub use record::{Header, Line, MAX_COMMAND_TIMEOUT, PathKind, Record, Resource, replay};
pub use store::{Claim, FileStore, OwnerKey, Store};
